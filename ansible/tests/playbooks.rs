//! The roles and playbooks, checked and run for real on this machine.
//!
//! - `ansible-lint` (production profile, `.ansible-lint`) and
//!   `ansible-playbook --syntax-check` of every playbook with both
//!   inventories.
//! - A local site: a gateway and two node "hosts", each a folder of its
//!   own with its own ports, reached with `ansible_connection: local`; no
//!   systemd (the node-agents run the ticketing app as their child), the
//!   twins sharing a fresh PostgreSQL database. `site.yml` installs it
//!   (units rendered and checked by `systemd-analyze verify`, keepalived's
//!   config by `keepalived --config-test`), a second run changes nothing,
//!   `rolling-upgrade.yml` moves both nodes to 1.1.0 while kiosks and
//!   browsers use the portal through the gateway — zero failed requests —,
//!   then an upgrade to a release that never gets ready stops the play on
//!   the first node, rolled back and drained, the second untouched.
//!   `reload-config.yml` and `gateway-upgrade.yml` run last.

use devtools::harness::ticketing as tk;

use devtools::{free_addr, TempDir};
use serde_json::Value;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use twinport_ansible::{ansible, playbook, text};

const ADMIN: &str = "site-admin-token-0123456789abcdef";
const AGENT: &str = "site-agent-token-0123456789abcdef";
const KIOSK: &str = "site-kiosk-token-0123456789abcdef";
const PLAYBOOKS: [&str; 4] = [
    "site.yml",
    "rolling-upgrade.yml",
    "gateway-upgrade.yml",
    "reload-config.yml",
];

#[test]
fn ansible_lint_production_profile_and_syntax_check_pass() {
    let lint = ansible("ansible-lint", &["--nocolor"]);
    assert!(lint.status.success(), "ansible-lint:\n{}", text(&lint));
    for inventory in [
        "inventories/two-node-site/hosts.yml",
        "inventories/local/hosts.yml",
    ] {
        for p in PLAYBOOKS {
            let out = ansible("ansible-playbook", &["--syntax-check", "-i", inventory, p]);
            assert!(
                out.status.success(),
                "{p} with {inventory}:\n{}",
                text(&out)
            );
        }
    }
}

/// One simulated host's ports.
struct NodePorts {
    app: SocketAddr,
    metrics: SocketAddr,
    ready: SocketAddr,
    control: SocketAddr,
}

/// The local site: its root folder, ports, and the processes the
/// playbooks started (stopped when the test ends, passed or not).
struct Site {
    root: TempDir,
    inventory: PathBuf,
    http: SocketAddr,
    admin: SocketAddr,
    nodes: [NodePorts; 2],
}

impl Site {
    fn new(database: &str, postgres_port: u16) -> Site {
        let root = TempDir::new("ansible-site");
        let (http, metrics, admin) = (free_addr(), free_addr(), free_addr());
        let nodes = [0, 1].map(|_| NodePorts {
            app: free_addr(),
            metrics: free_addr(),
            ready: free_addr(),
            control: free_addr(),
        });
        let bin = devtools::bin("gateway");
        let bin_dir = bin.parent().unwrap();
        let node = |n: &str, p: &NodePorts| {
            format!(
                "        node-{n}:
          twinport_root: {root}/node-{n}
          node_agent_name: {n}
          node_agent_address: 127.0.0.1
          node_agent_port: {ready}
          node_agent_control_port: {control}
          ticketing_port: {app}
          ticketing_listen: 127.0.0.1:{app}
          ticketing_metrics_listen: {metrics}
",
                root = root.path().display(),
                ready = p.ready.port(),
                control = p.control.port(),
                app = p.app.port(),
                metrics = p.metrics,
            )
        };
        let inventory = format!(
            "all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: \"{{{{ ansible_playbook_python }}}}\"
    twinport_become: false
    twinport_service_manager: process
    twinport_render_units: true
    twinport_manage_packages: false
    twinport_bin_src: {bin_dir}
    twinport_release_version: \"1.0.0\"
    twinport_release_src: {bin_dir}/ticketing
    twinport_admin_token: {ADMIN}
    twinport_agent_token: {AGENT}
    ticketing_branch_tokens:
      centrum: {{ kiosk: {KIOSK}, desk: site-desk-token-0123456789abcdef, manager: site-manager-token-0123456789abcdef }}
    ticketing_kiosk_rate_limit: 0         # the test's one kiosk issues as fast as it can
    ticketing_branches:
      - id: centrum
        name: Warszawa Centrum
        time_zone: Europe/Warsaw
        opening_hours: {{ mon: 00:00-24:00, tue: 00:00-24:00, wed: 00:00-24:00, thu: 00:00-24:00, fri: 00:00-24:00, sat: 00:00-24:00, sun: 00:00-24:00 }}
        services:
          - {{ prefix: A, name: {{ pl: Dowody, en: ID cards }}, target_wait: 10m }}
        desks:
          - {{ id: \"1\", services: [A] }}
    gateway_public_url: http://{http}
    postgresql_client_host: 127.0.0.1
    postgresql_client_port: {postgres_port}
    postgresql_client_user: postgres
    postgresql_client_database: {database}
    postgresql_client_check: false
    keepalived_virtual_ip: 198.51.100.10/24
    keepalived_interface: \"{{{{ ansible_default_ipv4.interface | default('eth0') }}}}\"
    keepalived_manage_service: false
    node_agent_gateway_admin: http://{admin}
    node_agent_start_timeout: 8s
  children:
    twinport_gateways:
      hosts:
        gw:
          twinport_root: {root}/gw
          gateway_http_listen: {http}
          gateway_https_listen: \"\"
          gateway_metrics_listen: {metrics}
          gateway_admin_listen: {admin}
          gateway_health_rise: 2
          gateway_threads: 2
          gateway_grace_period: 0s
          gateway_graceful_shutdown_timeout: 5s
          keepalived_priority: 150
    twinport_nodes:
      hosts:
{a}{b}",
            bin_dir = bin_dir.display(),
            root = root.path().display(),
            a = node("a", &nodes[0]),
            b = node("b", &nodes[1]),
        );
        let path = root.path().join("inventory.yml");
        std::fs::write(&path, inventory).unwrap();
        Site {
            inventory: path,
            root,
            http,
            admin,
            nodes,
        }
    }

    fn run(&self, book: &str, extra: &[(&str, &str)]) -> (bool, String) {
        let out = playbook(&self.inventory, book, extra);
        (out.status.success(), text(&out))
    }

    fn pid_files(&self) -> Vec<PathBuf> {
        let r = self.root.path();
        vec![
            r.join("gw/run/twinport/gateway.pid"),
            r.join("node-a/run/twinport/node-agent.pid"),
            r.join("node-b/run/twinport/node-agent.pid"),
        ]
    }

    async fn status(&self) -> Value {
        reqwest::Client::new()
            .get(format!("http://{}/v1/status", self.admin))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("the gateway's admin API answers")
            .json()
            .await
            .unwrap()
    }

    /// (health, admin state, version) of each node as the gateway sees it.
    async fn nodes(&self) -> Vec<(String, String, String)> {
        let s = self.status().await;
        s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["health"].as_str().unwrap_or("").to_string(),
                    n["admin"].as_str().unwrap_or("").to_string(),
                    n["version"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// The nodes as the gateway sees them once they show `want`, or as they
    /// are after 15 s. A play can end before the gateway's next health
    /// checks: a rolled-back node restarts, and the gateway counts it up
    /// only after `rise` good checks.
    async fn nodes_settled(&self, want: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let nodes = self.nodes().await;
            let same = nodes.len() == want.len()
                && nodes
                    .iter()
                    .zip(want)
                    .all(|(n, w)| (n.0.as_str(), n.1.as_str(), n.2.as_str()) == *w);
            if same || tokio::time::Instant::now() >= deadline {
                return nodes;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn agent(&self, node: usize, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("http://{}{path}", self.nodes[node].control))
            .bearer_auth(AGENT)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let helper = self
            .root
            .path()
            .join("gw/usr/local/lib/twinport/bin/twinport-service");
        for pid in self.pid_files() {
            let _ = std::process::Command::new(&helper)
                .arg("stop")
                .arg(&pid)
                .arg("10")
                .output();
        }
    }
}

/// The PLAY RECAP's `changed=` count of `host`.
fn changed(output: &str, host: &str) -> Option<u32> {
    let recap = output.rsplit("PLAY RECAP").next()?;
    let line = recap
        .lines()
        .find(|l| l.split_whitespace().next() == Some(host))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("changed="))
        .and_then(|n| n.parse().ok())
}

/// A release that starts and never opens its port.
fn bad_release(dir: &Path) -> PathBuf {
    let d = dir.join("bad-release");
    std::fs::create_dir_all(&d).unwrap();
    let f = d.join("ticketing");
    std::fs::write(
        &f,
        "#!/bin/sh\necho this release never gets ready\nexec sleep 600\n",
    )
    .unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn site_then_a_rolling_upgrade_under_load_then_a_failed_upgrade_stops_the_play() {
    let Some(db) = tk::postgres_db("ansible").await else {
        return;
    };
    let database = db.rsplit('/').next().unwrap().to_string();
    // The server scripts/test points the tests at (TWINPORT_POSTGRES).
    let port = db
        .split('@')
        .nth(1)
        .and_then(|h| h.split('/').next())
        .and_then(|h| h.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432);
    let site = Arc::new(Site::new(&database, port));

    // Install.
    let s = site.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || s.run("site.yml", &[]))
        .await
        .unwrap();
    assert!(ok, "site.yml:\n{out}");
    let nodes = site
        .nodes_settled(&[("up", "active", "1.0.0"), ("up", "active", "1.0.0")])
        .await;
    assert_eq!(
        nodes,
        vec![
            ("up".into(), "active".into(), "1.0.0".into()),
            ("up".into(), "active".into(), "1.0.0".into())
        ],
        "{out}"
    );
    let units = site.root.path().join("node-a/etc/systemd/system");
    assert!(units.join("twinport-node-agent.service").is_file());
    assert!(units.join("twinport-ticketing.service").is_file());
    assert!(site
        .root
        .path()
        .join("gw/etc/systemd/system/twinport-gateway@.service")
        .is_file());
    let keepalived =
        std::fs::read_to_string(site.root.path().join("gw/etc/keepalived/keepalived.conf"))
            .unwrap();
    same_vrrp_as_the_pair_tests(&keepalived);
    let guard =
        std::fs::read_to_string(site.root.path().join("gw/etc/nftables.d/twinport-vip.nft"))
            .unwrap();
    let guard: String = guard
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        guard,
        chaos_tests::pair::vip_guard_nft("198.51.100.10".parse().unwrap(), &[site.http.port()]),
        "the role's VIP guard is the one the pair tests load"
    );

    // Converged: a second run changes nothing.
    let s = site.clone();
    let (ok, again) = tokio::task::spawn_blocking(move || s.run("site.yml", &[]))
        .await
        .unwrap();
    assert!(ok, "site.yml again:\n{again}");
    for host in ["gw", "node-a", "node-b"] {
        assert_eq!(
            changed(&again, host),
            Some(0),
            "{host} changed on the second run:\n{again}"
        );
    }

    // Traffic through the gateway during the roll-out: browsing and
    // kiosks issuing tickets (each touch once, with its key).
    let stop = Arc::new(AtomicBool::new(false));
    let base = format!("http://{}", site.http);
    let mut load = Vec::new();
    for w in 0..3 {
        let (stop, base) = (stop.clone(), base.clone());
        load.push(tokio::spawn(async move {
            let c = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let (mut sent, mut failed) = (0u32, Vec::new());
            // Bounded: at most 4000 requests or 120 s per worker.
            let end = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && sent < 4000 && Instant::now() < end {
                let r = if w == 0 {
                    c.post(format!("{base}/api/v1/branches/centrum/tickets"))
                        .bearer_auth(KIOSK)
                        .header("idempotency-key", format!("roll-{sent}"))
                        .header("content-type", "application/json")
                        .body(r#"{"service":"A"}"#)
                        .send()
                        .await
                } else {
                    c.get(format!("{base}/api/v1/branches/centrum"))
                        .send()
                        .await
                };
                sent += 1;
                match r {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => failed.push(format!("status {}", r.status())),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (sent, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = site.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        s.run(
            "rolling-upgrade.yml",
            &[("twinport_release_version", "1.1.0")],
        )
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut sent, mut failed) = (0, Vec::new());
    for l in load {
        let (s, f) = l.await.unwrap();
        sent += s;
        failed.extend(f);
    }
    assert!(ok, "rolling-upgrade.yml:\n{out}");
    println!(
        "rolling upgrade under load: {sent} requests, {} failed",
        failed.len()
    );
    assert!(sent > 100, "the load ran ({sent} requests)");
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(
        site.nodes().await,
        vec![
            ("up".into(), "active".into(), "1.1.0".into()),
            ("up".into(), "active".into(), "1.1.0".into())
        ]
    );
    for n in 0..2 {
        assert_eq!(site.agent(n, "/v1/status").await["version"], "1.1.0");
    }

    // A release that never gets ready: the play stops at the first node.
    let bad = bad_release(site.root.path());
    let bad = bad.display().to_string();
    let s = site.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        s.run(
            "rolling-upgrade.yml",
            &[
                ("twinport_release_version", "1.2.0"),
                ("twinport_release_src", &bad),
            ],
        )
    })
    .await
    .unwrap();
    assert!(!ok, "the play must fail:\n{out}");
    assert!(out.contains("ended rolled_back"), "{out}");
    let nodes = site
        .nodes_settled(&[("up", "drain", "1.1.0"), ("up", "active", "1.1.0")])
        .await;
    assert_eq!(
        nodes[0],
        ("up".into(), "drain".into(), "1.1.0".into()),
        "node a rolled back and left drained: {nodes:?}"
    );
    assert_eq!(
        nodes[1],
        ("up".into(), "active".into(), "1.1.0".into()),
        "node b untouched: {nodes:?}"
    );
    assert_eq!(site.agent(0, "/v1/upgrade").await["result"], "rolled_back");
    let b_upgrade = site.agent(1, "/v1/upgrade").await;
    assert_eq!(
        b_upgrade["to"], "1.1.0",
        "b's last upgrade is the good one: {b_upgrade}"
    );
    assert!(
        !site
            .root
            .path()
            .join("node-b/var/lib/twinport/incoming/1.2.0")
            .exists(),
        "nothing of 1.2.0 reached node b"
    );
    assert_eq!(site.status().await["primary"], "b");

    // Put a back, then a config change through reload-config.yml.
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/nodes/a/undrain", site.admin))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let before = site.status().await["config_generation"].as_u64().unwrap();
    let s = site.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        s.run("reload-config.yml", &[("gateway_health_rise", "3")])
    })
    .await
    .unwrap();
    assert!(ok, "reload-config.yml:\n{out}");
    assert_eq!(
        site.status().await["config_generation"].as_u64().unwrap(),
        before + 1
    );

    // And the gateway's own binary, replaced without a restart.
    let pid_file = site.root.path().join("gw/run/twinport/gateway.pid");
    let old = std::fs::read_to_string(&pid_file).unwrap();
    let s = site.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || s.run("gateway-upgrade.yml", &[]))
        .await
        .unwrap();
    assert!(ok, "gateway-upgrade.yml:\n{out}");
    let new = std::fs::read_to_string(&pid_file).unwrap();
    assert_ne!(old.trim(), new.trim(), "a new gateway process");
    assert_eq!(site.status().await["nodes"].as_array().unwrap().len(), 2);
}

/// The keepalived configuration the role writes behaves as the one the
/// gateway pair's tests run (chaos-tests/tests/pair.rs): every directive
/// of theirs but those naming this host's paths, addresses and priority.
fn same_vrrp_as_the_pair_tests(rendered: &str) {
    let rendered: Vec<&str> = rendered.lines().map(str::trim).collect();
    let lab = chaos_tests::pair::keepalived_conf(0, std::path::Path::new("/lab"));
    let host_specific = ["router_id", "priority", "/lab", "dev eth0", "interface"];
    for line in lab.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if host_specific.iter().any(|h| line.contains(h)) {
            continue;
        }
        assert!(
            rendered.contains(&line),
            "the role's keepalived.conf lacks `{line}` that the pair tests run with:\n{}",
            rendered.join("\n")
        );
    }
    for directive in ["script", "file", "notify"] {
        assert!(
            rendered.iter().any(|l| l.starts_with(directive)),
            "{directive}"
        );
    }
}
