//! Both twins on one new SQLite file, started at the same moment (as the
//! demo's agents start them): both migrate and serve, and a ticket issued
//! through one is called through the other.

use devtools::harness::ticketing::*;
use devtools::{bin, free_addr, wait_for_port, Proc, TempDir};
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_twins_start_together_on_one_new_sqlite_file() {
    let dir = TempDir::new("tk-sqlite-twins");
    write_tokens(&dir);
    let mut procs = Vec::new();
    let mut addrs = Vec::new();
    for node in ["a", "b"] {
        let addr = free_addr();
        let cfg = dir.path().join(format!("ticketing-{node}.yaml"));
        std::fs::write(&cfg, config(node, addr, free_addr(), "sqlite://shared.db")).unwrap();
        let mut cmd = Command::new(bin("ticketing"));
        cmd.arg("--config").arg(&cfg);
        procs.push(Proc::spawn(
            node,
            cmd,
            Some(&dir.path().join(format!("{node}.log"))),
        ));
        addrs.push(addr);
    }
    for (a, node) in addrs.iter().zip(["a", "b"]) {
        let log =
            || std::fs::read_to_string(dir.path().join(format!("{node}.log"))).unwrap_or_default();
        assert!(
            wait_for_port(*a, Duration::from_secs(20)),
            "twin {node} did not start: {}",
            log()
        );
    }
    let c = reqwest::Client::new();
    let base = |i: usize| format!("http://{}/api/v1/branches/centrum", addrs[i]);
    let (s, t) = call(
        &c,
        "POST",
        &format!("{}/tickets", base(0)),
        Some(KIOSK),
        Some("k"),
        Some(r#"{"service":"A"}"#),
    )
    .await;
    assert_eq!((s, t["display"].as_str()), (201, Some("A001")), "{t}");
    let (s, v) = call(
        &c,
        "POST",
        &format!("{}/tickets", base(1)),
        Some(KIOSK),
        Some("k"),
        Some(r#"{"service":"A"}"#),
    )
    .await;
    assert_eq!(
        (s, &v["id"]),
        (200, &t["id"]),
        "the same key on the other twin: the same ticket"
    );
    let (_, v) = call(
        &c,
        "POST",
        &format!("{}/desks/1/call-next", base(1)),
        Some(DESK),
        None,
        None,
    )
    .await;
    assert_eq!(v["called"]["id"], t["id"]);
    drop(procs);
}
