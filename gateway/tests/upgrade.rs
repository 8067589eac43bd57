//! Zero-downtime upgrade of the gateway binary with pingora's mechanism:
//! a new process started with `--upgrade` receives the listening sockets
//! when the old one gets SIGQUIT; the old one drains and exits.

use devtools::harness::gateway::*;
use devtools::{bin, Proc};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn read_pid(path: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn binary_upgrade_under_load_fails_no_request() {
    let (dir, a, b) = twins("upgrade");
    // The old process lets what it took in finish (as configs/demo does).
    let opts = GwOpts {
        grace_period: "2s",
        ..GwOpts::default()
    };
    let mut old = Gateway::start(&dir, &[&a, &b], &opts);
    let pid_file = dir.path().join("gateway.pid");
    assert!(devtools::eventually(Duration::from_secs(5), || read_pid(
        &pid_file
    ) == Some(
        old.proc.pid()
    )));

    // Keep-alive workers and workers with a new connection per request.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load_mixed_until(
        old.url(""),
        6,
        Duration::from_secs(60),
        1_000_000,
        stop.clone(),
        true,
    ));
    tokio::time::sleep(Duration::from_millis(700)).await;

    // The new binary waits for the sockets; the old one hands them over.
    let mut cmd = Command::new(bin("gateway"));
    cmd.arg("--config").arg(&old.config).arg("--upgrade");
    let new = Proc::spawn(
        "gateway (new)",
        cmd,
        Some(&dir.path().join("gateway-new.log")),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    old.proc.signal("QUIT");
    // The old process serves for pingora's 5 s hand-over window, then drains
    // and exits.
    let code = old.proc.wait_exit(Duration::from_secs(15));
    assert!(code.is_some(), "the old gateway exited");
    assert!(devtools::eventually(Duration::from_secs(5), || read_pid(
        &pid_file
    ) == Some(
        new.pid()
    )));
    // Traffic goes on through the new process only.
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let out = load.await.unwrap();

    let refused = out
        .iter()
        .filter(|o| o.error.contains("onnection refused"))
        .count();
    assert_eq!(refused, 0, "{}", summary(&out));
    // A connection the old process accepted just before it stopped is
    // served too (the gateway waits for its request, `accept.rs`): not
    // one request fails.
    let failed: Vec<_> = out.iter().filter(|o| !o.ok).collect();
    assert!(
        failed.is_empty(),
        "{} failed: {}",
        failed.len(),
        summary(&out)
    );
    assert!(out.len() > 1000, "{}", summary(&out));
    // The metrics listener moved too, and the new process serves it.
    let gen = old.metric("twinport_config_generation").await;
    assert_eq!(gen, Some(1.0));
    let log = std::fs::read_to_string(dir.path().join("gateway-new.log")).unwrap();
    assert!(log.contains("initial checks done"), "{log}");
    println!("binary upgrade: {}", summary(&out));
    old.proc = new;
}
