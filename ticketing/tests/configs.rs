//! Every ticketing file shipped in configs/ passes `ticketing --check` once
//! the token files it names exist (written as an installer would, mode 600;
//! absolute paths are moved under a temporary directory).

use devtools::TempDir;
use std::path::Path;

#[test]
fn shipped_ticketing_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut checked = 0;
    for dir in std::fs::read_dir(&root).unwrap().flatten() {
        for file in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = file.file_name().to_string_lossy().to_string();
            if !(name.starts_with("ticketing") && name.ends_with(".yaml")) {
                continue;
            }
            let tmp = TempDir::new("tk-shipped");
            let text = std::fs::read_to_string(file.path())
                .unwrap()
                .replace(" /etc/", &format!(" {}/etc/", tmp.path().display()));
            let copy = tmp.path().join("conf/ticketing.yaml");
            std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
            std::fs::write(&copy, &text).unwrap();
            let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            for b in v["branches"].as_sequence().unwrap() {
                for (i, (_, t)) in b["tokens"].as_mapping().unwrap().iter().enumerate() {
                    let p = copy.parent().unwrap().join(t.as_str().unwrap());
                    devtools::write_secret(&p, &format!("a-generated-token-{i}-0123456789\n"));
                }
            }
            let (code, text) = devtools::check_config("ticketing", &copy);
            assert_eq!(code, Some(0), "{}: {text}", file.path().display());
            checked += 1;
        }
    }
    assert!(checked >= 2, "found {checked} ticketing configs");
}
