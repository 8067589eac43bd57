//! The gateway pair on one host: two real gateways in front of the same
//! twins, each the other's peer (plain HTTP on loopback, which the config
//! allows only there). One operator state for both: a change made through
//! either holds on the other within a second, a restarted gateway comes
//! back with what it missed before it serves, and a switchover is not
//! made on one gateway alone.

use devtools::harness::gateway::*;
use devtools::TempDir;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const PAIR_TOKEN: &str = "pair-token-0123456789abcdef";

/// Gateway `i` of a pair whose admin listeners are at `admins`; `swap`
/// lists the nodes b, a (so b is its configured primary).
struct Member {
    dir: TempDir,
    opts: GwOpts,
    targets: [(String, String, String); 2],
}

impl Member {
    fn new(i: usize, admins: [SocketAddr; 2], a: &Node, b: &Node, swap: bool) -> Member {
        Member::with_tls(i, admins, a, b, swap, None)
    }

    /// `pki`: the admin listeners and the peer link over mutual TLS with
    /// the certificates `gw1`/`gw2` of this PKI folder.
    fn with_tls(
        i: usize,
        admins: [SocketAddr; 2],
        a: &Node,
        b: &Node,
        swap: bool,
        pki: Option<&std::path::Path>,
    ) -> Member {
        let dir = TempDir::new(&format!("pair-gw{}", i + 1));
        devtools::write_secret(&dir.path().join("pair.token"), PAIR_TOKEN);
        let me = format!("gw{}", i + 1);
        let (scheme, admin_extra, tls) = match pki {
            None => ("http", String::new(), String::new()),
            Some(p) => (
                "https",
                format!(
                    "  tls:\n    certificate: {p}/{me}.crt\n    key: {p}/{me}.key\n    client_ca: {p}/ca.crt\n",
                    p = p.display()
                ),
                format!(
                    "  ca: {p}/ca.crt\n  client_certificate: {p}/{me}.crt\n  client_key: {p}/{me}.key\n",
                    p = p.display()
                ),
            ),
        };
        let opts = GwOpts {
            admin: Some(admins[i]),
            state_file: true,
            admin_extra,
            extra: format!(
                "pair:\n  name: {me}\n  peer: {scheme}://{}\n  token_file: pair.token\n  sync_interval: 200ms\n  start_timeout: 1500ms\n{tls}",
                admins[1 - i]
            ),
            ..GwOpts::default()
        };
        let t = |n: &Node| (n.name.clone(), n.app.to_string(), n.agent.to_string());
        let targets = if swap { [t(b), t(a)] } else { [t(a), t(b)] };
        Member { dir, opts, targets }
    }

    fn start(&self) -> Gateway {
        Gateway::start_with(&self.dir, self.targets.clone(), &self.opts, "")
    }
}

fn pair(tag: &str, swap_second: bool) -> (TempDir, Node, Node, [Member; 2]) {
    let (dir, a, b) = twins(tag);
    let admins = [devtools::free_addr(), devtools::free_addr()];
    let members = [
        Member::new(0, admins, &a, &b, false),
        Member::new(1, admins, &a, &b, swap_second),
    ];
    (dir, a, b, members)
}

async fn peer_reachable(gw: &Gateway) -> Value {
    gw.wait_status(Duration::from_secs(5), |s| {
        s["pair"]["peer"]["reachable"] == true
    })
    .await
}

/// Which node answers `n` GETs through `gw`.
async fn served_by(gw: &Gateway, n: usize) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for _ in 0..n {
        let r = client.get(gw.url("/")).send().await.expect("answered");
        assert_eq!(r.status(), 200);
        out.push(r.headers()["x-twinport-node"].to_str().unwrap().to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_through_either_gateway_holds_on_the_other_within_a_second() {
    let (_dir, _a, _b, m) = pair("pair-sync", false);
    let gw1 = m[0].start();
    let gw2 = m[1].start();
    let s = peer_reachable(&gw1).await;
    assert_eq!(s["pair"]["peer"]["name"], "gw2", "{s}");
    peer_reachable(&gw2).await;

    // Drain through gw1: gw2 holds it within a second.
    let (code, body) = gw1.admin_call("POST", "/v1/nodes/a/drain", None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["pair"], json!({ "peer": "gw2", "synced": true }));
    let t = Instant::now();
    let s = gw2
        .wait_status(Duration::from_secs(3), |s| {
            node_status(s, "a")["admin"] == "drain"
        })
        .await;
    let took = t.elapsed();
    assert_eq!(node_status(&s, "a")["admin"], "drain", "{s}");
    assert!(took < Duration::from_secs(1), "seen on gw2 after {took:?}");
    println!("drain through gw1 seen on gw2 after {took:?}");
    assert_eq!(s["primary"], "b");
    assert!(served_by(&gw2, 20).await.iter().all(|n| n == "b"));
    let entry = &s["pair"]["operator_state"]["entries"]["node/a"];
    assert_eq!(entry["value"], "drain");
    assert_eq!(entry["origin"], "gw1");

    // Undrain and maintenance through gw2: gw1 follows.
    let (code, _) = gw2.admin_call("POST", "/v1/nodes/a/undrain", None).await;
    assert_eq!(code, 200);
    let (code, _) = gw2
        .admin_call("POST", "/v1/nodes/b/maintenance", None)
        .await;
    assert_eq!(code, 200);
    let s = gw1
        .wait_status(Duration::from_secs(1), |s| {
            node_status(s, "a")["admin"] == "active"
                && node_status(s, "b")["admin"] == "maintenance"
        })
        .await;
    assert_eq!(node_status(&s, "b")["admin"], "maintenance", "{s}");
    assert_eq!(node_status(&s, "a")["admin"], "active", "{s}");
    let (code, _) = gw1.admin_call("POST", "/v1/nodes/b/undrain", None).await;
    assert_eq!(code, 200);

    // A switchover through gw2: gw1 sends to b too.
    let (code, body) = gw2
        .admin_call("POST", "/v1/switchover", Some(json!({ "to": "b" })))
        .await;
    assert_eq!(code, 200, "{body}");
    let s = gw1
        .wait_status(Duration::from_secs(1), |s| s["primary"] == "b")
        .await;
    assert_eq!(s["primary"], "b", "{s}");
    assert!(served_by(&gw1, 20).await.iter().all(|n| n == "b"));
    let s = gw1
        .wait_status(Duration::from_secs(2), |s| {
            s["pair"]["peer"]["same_state"] == true
        })
        .await;
    assert_eq!(s["pair"]["peer"]["same_state"], true, "{s}");
    assert!(
        gw1.metric("twinport_pair_changes_applied_total").await >= Some(3.0),
        "changes from gw2 counted on gw1"
    );

    // An operator's weight through gw1: gw2 holds it.
    let (code, body) = gw1
        .admin_call("POST", "/v1/nodes/b/weight", Some(json!({ "weight": 50 })))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["pair"]["synced"], true, "{body}");
    let s = gw2
        .wait_status(Duration::from_secs(1), |s| {
            node_status(s, "b")["operator_weight"] == 50
        })
        .await;
    assert_eq!(node_status(&s, "b")["effective_weight"], 50, "{s}");

    // The exchange needs the pair's token; the operator's is not it.
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/pair/state", gw1.admin))
        .bearer_auth(&gw1.token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_gateway_comes_back_with_the_state_it_missed() {
    let (_dir, _a, _b, m) = pair("pair-restart", false);
    let gw1 = m[0].start();
    let mut gw2 = m[1].start();
    peer_reachable(&gw1).await;

    gw2.proc.kill();
    // Without its peer, gw1 takes drains (and says the peer does not have
    // them yet) but not a switchover.
    let (code, body) = gw1.admin_call("POST", "/v1/nodes/a/drain", None).await;
    assert_eq!(code, 200);
    assert_eq!(body["pair"]["synced"], false, "{body}");
    assert!(
        body["pair"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("cannot be reached"),
        "{body}"
    );
    gw1.wait_status(Duration::from_secs(3), |s| {
        s["pair"]["peer"]["reachable"] == false
    })
    .await;
    let (code, body) = gw1
        .admin_call("POST", "/v1/switchover", Some(json!({ "to": "b" })))
        .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error"], "peer_unreachable", "{body}");
    let (code, _) = gw1.admin_call("POST", "/v1/nodes/a/undrain", None).await;
    assert_eq!(code, 200);
    let (code, body) = gw1
        .admin_call(
            "POST",
            "/v1/switchover",
            Some(json!({ "to": "b", "force": true })),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = gw1
        .admin_call("POST", "/v1/nodes/a/maintenance", None)
        .await;
    assert_eq!(code, 200);

    // gw2 starts again: before its listeners open it has what it missed,
    // so its very first answers come from b.
    let gw2 = m[1].start();
    let (_, s) = gw2.admin_call("GET", "/v1/status", None).await;
    assert_eq!(node_status(&s, "a")["admin"], "maintenance", "{s}");
    assert_eq!(s["primary"], "b", "{s}");
    assert!(served_by(&gw2, 20).await.iter().all(|n| n == "b"));

    // Both stop; gw1 starts alone and keeps the state from its file.
    drop(gw2);
    let mut gw1 = gw1;
    gw1.proc.kill();
    let gw1 = m[0].start();
    let (_, s) = gw1.admin_call("GET", "/v1/status", None).await;
    assert_eq!(node_status(&s, "a")["admin"], "maintenance", "{s}");
    assert_eq!(s["primary"], "b", "{s}");
    assert!(gw1.log_text().contains("operator state restored"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_starting_gateway_takes_the_primary_its_peer_serves_with() {
    // gw2's file names b as primary: alone it would send to b. It starts
    // after gw1, which serves with a: a move of the VIP to gw2 must not
    // move the role.
    let (_dir, _a, _b, m) = pair("pair-follow", true);
    let gw1 = m[0].start();
    let gw2 = m[1].start();
    let (_, s) = gw2.admin_call("GET", "/v1/status", None).await;
    assert_eq!(s["primary"], "a", "{s}");
    assert_eq!(
        gw2.metric(r#"twinport_role_changes_total{reason="pair"}"#)
            .await,
        Some(1.0)
    );
    assert!(served_by(&gw2, 10).await.iter().all(|n| n == "a"));

    // keepalived's notify hook tells each gateway what it is.
    assert_eq!(s["vrrp"], "UNKNOWN");
    for (gw, state) in [(&gw1, "MASTER"), (&gw2, "BACKUP")] {
        let (code, body) = gw
            .admin_call("POST", "/v1/pair/vrrp", Some(json!({ "state": state })))
            .await;
        assert_eq!(code, 200, "{body}");
    }
    let (code, _) = gw1
        .admin_call("POST", "/v1/pair/vrrp", Some(json!({ "state": "LEADER" })))
        .await;
    assert_eq!(code, 422);
    for (state, want) in [("MASTER", 1.0), ("UNKNOWN", 0.0)] {
        let sample = format!(r#"twinport_gateway_vrrp_state{{state="{state}"}}"#);
        assert_eq!(gw1.metric(&sample).await, Some(want), "{sample}");
    }
    let s = gw2
        .wait_status(Duration::from_secs(2), |s| {
            s["pair"]["peer"]["vrrp"] == "MASTER"
        })
        .await;
    assert_eq!(s["vrrp"], "BACKUP", "{s}");
    assert_eq!(s["pair"]["peer"]["vrrp"], "MASTER", "{s}");
    assert!(s["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["event"] == "VRRP BACKUP"));

    // The status page says what this gateway is and how its peer stands.
    let browser = devtools::browser::Browser::start(&m[1].dir).await;
    browser
        .go(&format!("http://{}/#token={}", gw2.admin, gw2.token))
        .await;
    devtools::browser::wait_for_text(
        &browser,
        "vrrp",
        "gw2 BACKUP · peer gw1 MASTER, in step",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    drop(gw1);
    devtools::browser::wait_for_text(
        &browser,
        "vrrp",
        "gw2 BACKUP · peer gw1 NOT REACHABLE",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
}

/// The admin API over mutual TLS, as the peer or an operator reaches it.
async fn tls_status(client: &reqwest::Client, gw: &Gateway) -> Value {
    client
        .get(format!("https://{}/v1/status", gw.admin))
        .bearer_auth(&gw.token)
        .send()
        .await
        .expect("admin API answers")
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_peer_link_is_mutual_tls_and_refuses_a_stranger() {
    let (dir, a, b) = twins("pair-tls");
    let pki = dir.path().join("pki");
    let names = ["127.0.0.1".to_string(), "localhost".to_string()];
    devtools::write_test_pki(
        &pki,
        &[
            ("gw1", &names[..]),
            ("gw2", &names[..]),
            ("ops", &names[..]),
        ],
    )
    .unwrap();
    let admins = [devtools::free_addr(), devtools::free_addr()];
    let m = [0, 1].map(|i| Member::with_tls(i, admins, &a, &b, false, Some(&pki)));
    let gw1 = m[0].start();
    let gw2 = m[1].start();
    let pem = |f: &str| std::fs::read(pki.join(f)).unwrap();
    let mut id = pem("ops.crt");
    id.extend(pem("ops.key"));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem("ca.crt")).unwrap())
        .identity(reqwest::Identity::from_pem(&id).unwrap())
        .build()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while tls_status(&client, &gw1).await["pair"]["peer"]["reachable"] != true
        && Instant::now() < end
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = client
        .post(format!("https://{}/v1/nodes/a/drain", gw1.admin))
        .bearer_auth(&gw1.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let end = Instant::now() + Duration::from_secs(1);
    let mut s = tls_status(&client, &gw2).await;
    while node_status(&s, "a")["admin"] != "drain" && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
        s = tls_status(&client, &gw2).await;
    }
    assert_eq!(node_status(&s, "a")["admin"], "drain", "{s}");
    assert_eq!(s["pair"]["peer"]["reachable"], true, "{s}");

    // A gateway whose certificate another CA signed is no peer: gw2's
    // exchanges with it fail, and gw2 says why.
    drop(gw1);
    let other = dir.path().join("other-pki");
    devtools::write_test_pki(&other, &[("gw1", &names[..])]).unwrap();
    std::fs::copy(other.join("gw1.crt"), pki.join("gw1.crt")).unwrap();
    std::fs::copy(other.join("gw1.key"), pki.join("gw1.key")).unwrap();
    let gw1 = m[0].start();
    // Its listeners are open: a peer it could reach would be reachable
    // again within a sync interval (200 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = tls_status(&client, &gw2).await;
    assert_eq!(s["pair"]["peer"]["reachable"], false, "{s}");
    let why = s["pair"]["peer"]["last_error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    println!("gw2 on a stranger: {why}");
    assert!(why.contains("certificate"), "{why}");
    drop(gw1);
}

/// `twinctl` with both gateways' admin URLs.
fn twinctl(gws: &[&Gateway], args: &[&str]) -> (i32, String) {
    let admins: Vec<String> = gws.iter().map(|g| format!("http://{}", g.admin)).collect();
    let out = std::process::Command::new(devtools::bin("twinctl"))
        .arg("--admin")
        .arg(admins.join(","))
        .env("TWINPORT_TOKEN", &gws[0].token)
        .env_remove("TWINPORT_TOKEN_FILE")
        .env_remove("TWINPORT_ADMIN")
        .args(args)
        .output()
        .expect("twinctl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twinctl_shows_the_pair_and_changes_both_gateways() {
    let (_dir, _a, _b, m) = pair("pair-twinctl", false);
    let gw1 = m[0].start();
    let mut gw2 = m[1].start();
    peer_reachable(&gw1).await;
    peer_reachable(&gw2).await;

    let (code, out) = tokio::task::block_in_place(|| twinctl(&[&gw1, &gw2], &["status"]));
    assert_eq!(code, 0, "{out}");
    let g1 = out
        .lines()
        .find(|l| l.contains(&gw1.admin.to_string()))
        .unwrap();
    assert!(g1.contains("gw1") && g1.contains("reachable"), "{out}");
    assert!(out.contains("views agree"), "{out}");

    let (code, out) = tokio::task::block_in_place(|| twinctl(&[&gw1, &gw2], &["drain", "a"]));
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("node a: admin state drain").count(), 2, "{out}");
    assert!(out.contains("holds it too"), "{out}");

    // A file listing both; gw2 gone: the change holds on gw1, gw2 is
    // named as not reached, and the exit code is still 0.
    gw2.proc.kill();
    let list = m[0].dir.path().join("gateways.txt");
    std::fs::write(
        &list,
        format!(
            "# the pair\nhttp://{}\nhttp://{}  # gw2\n",
            gw1.admin, gw2.admin
        ),
    )
    .unwrap();
    let file = list.display().to_string();
    let (code, out) =
        tokio::task::block_in_place(|| twinctl(&[&gw1], &["--gateways", &file, "undrain", "a"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("node a: admin state active"), "{out}");
    assert!(out.contains("not reached"), "{out}");
    let (code, out) =
        tokio::task::block_in_place(|| twinctl(&[&gw1], &["--gateways", &file, "switchover", "b"]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("peer gateway cannot be reached"), "{out}");
    let (code, out) = tokio::task::block_in_place(|| {
        twinctl(
            &[&gw1],
            &["--gateways", &file, "switchover", "--force", "b"],
        )
    });
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("primary is now b"), "{out}");
    let (code, out) =
        tokio::task::block_in_place(|| twinctl(&[&gw1], &["--gateways", &file, "status"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("unreachable"), "{out}");
    assert!(out.contains("not every gateway answered"), "{out}");
}
