//! Support for the tests of the Ansible roles and playbooks (`tests/`):
//! where the Ansible folder is and how to run a playbook from it. The
//! roles, playbooks and inventories themselves are the YAML around this
//! crate; see `ansible/README.md`.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `ansible/` folder.
pub fn ansible_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An `ansible-*` command run from the Ansible folder with its
/// `ansible.cfg`, without colours, its output captured.
pub fn ansible(program: &str, args: &[&str]) -> Output {
    let dir = ansible_dir();
    Command::new(program)
        .args(args)
        .current_dir(&dir)
        .env("ANSIBLE_CONFIG", dir.join("ansible.cfg"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env("ANSIBLE_LOCAL_TEMP", std::env::temp_dir().join("twinport-ansible-tmp"))
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} cannot run ({e}): install Debian's ansible and ansible-lint (scripts/test does)")
        })
}

/// Runs `playbook` against `inventory` with `extra` variables (`-e k=v`).
pub fn playbook(inventory: &Path, playbook: &str, extra: &[(&str, &str)]) -> Output {
    let inv = inventory.display().to_string();
    let mut args = vec!["-i", inv.as_str(), playbook];
    let pairs: Vec<String> = extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for p in &pairs {
        args.push("-e");
        args.push(p);
    }
    ansible("ansible-playbook", &args)
}

/// Output as one text, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
