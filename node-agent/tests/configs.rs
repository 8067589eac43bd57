//! Every node-agent file shipped in configs/ passes `node-agent --check`
//! once the token files it names exist (written as an installer would,
//! mode 600; absolute paths are moved under a temporary directory).

use devtools::TempDir;
use std::path::{Path, PathBuf};

fn agent_configs(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            agent_configs(&p, out);
        } else if name.starts_with("node-") && name.ends_with(".yaml") {
            out.push(p);
        }
    }
}

#[test]
fn shipped_agent_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut files = Vec::new();
    agent_configs(&root, &mut files);
    assert!(files.len() >= 3, "found {files:?}");
    for file in files {
        let dir = TempDir::new("agent-shipped");
        let text = std::fs::read_to_string(&file)
            .unwrap()
            .replace(" /etc/", &format!(" {}/etc/", dir.path().display()));
        let copy = dir.path().join("conf/node.yaml");
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::write(&copy, &text).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let tokens = [&v["control"]["token_file"], &v["gateway"]["token_file"]];
        for t in tokens.into_iter().filter_map(|t| t.as_str()) {
            devtools::write_secret(
                &copy.parent().unwrap().join(t),
                "a-generated-token-0123456789\n",
            );
        }
        let (code, text) = devtools::check_config("node-agent", &copy);
        assert_eq!(code, Some(0), "{}: {text}", file.display());
    }
}
