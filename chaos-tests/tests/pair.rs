//! The gateway pair for real (issue: no single point of failure in front
//! of the twins): network namespaces of their own, keepalived's VRRP, two
//! gateways with one operator state, the twins behind them. Needs root, as
//! CI has; fails loudly without it.

use chaos_tests::appliance::node_field;
use chaos_tests::load::{self, Plan};
use chaos_tests::pair::{classify_failures, in_client_namespace, vip_moves_to, Net, PairLab};
use chaos_tests::tickets;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn bin_dir() -> std::path::PathBuf {
    for b in ["node-agent", "ticketing", "twinctl"] {
        devtools::bin(b);
    }
    devtools::bin("gateway")
        .parent()
        .expect("the binaries' folder")
        .to_path_buf()
}

/// Runs `scenario` against a fresh lab, on a runtime in the client
/// namespace.
fn with_lab<F, Fut>(tag: &str, scenario: F)
where
    F: FnOnce(Arc<Net>, PairLab) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let net = Arc::new(Net::create(tag).unwrap_or_else(|e| panic!("{e:#}")));
    let bin = bin_dir();
    let n = net.clone();
    let result = in_client_namespace(&net, move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(3)
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let lab = PairLab::start(&n, &bin).await?;
            scenario(n, lab).await
        })
    })
    .expect("the client namespace");
    if let Err(e) = result {
        panic!("{e:#}");
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn the_vip_follows_a_killed_master_gateway_ten_times_under_load() {
    with_lab("k", |net, mut lab| async move {
        let t0 = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let plan = Plan {
            browsers: 2,
            kiosks: 3,
            desks: 1,
            duration: Duration::from_secs(150),
            max_per_worker: 200_000,
            settle: Duration::from_secs(20),
        };
        let load = tokio::spawn(load::run(lab.base(), plan, t0, stop.clone()));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut kills = Vec::new();
        for trial in 0..10 {
            let k = lab.kill_master(&net, t0).await?;
            println!(
                "trial {trial}: MASTER gateway killed, VIP moved after {:?}",
                k.moved
            );
            kills.push(k);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let out = load.await?;
        let failed = out.records.iter().filter(|r| !r.ok).count();
        let [in_flight, gap, after] = classify_failures(&out.records, &kills);
        let mut moves: Vec<Duration> = kills.iter().map(|k| k.moved).collect();
        let max = *moves.iter().max().unwrap();
        let med = median(&mut moves);
        println!(
            "VIP move after kill -9 of the MASTER gateway, 10 trials: median {med:?}, max {max:?}"
        );
        println!(
            "{} requests, {} failed: {in_flight} on connections to the gateway that died, {gap} new connections refused before the move, {after} after the move",
            out.records.len(),
            failed
        );
        let stored = tickets::read(&lab.database, chaos_tests::appliance::BRANCH).await?;
        let audit = tickets::audit(&stored, &out.acks);
        println!(
            "tickets: {audit:?}; abandoned touches {}",
            out.abandoned.len()
        );
        anyhow::ensure!(max < Duration::from_secs(1), "a move took {max:?}");
        anyhow::ensure!(after == 0, "{after} requests sent after a move failed");
        anyhow::ensure!(gap == 0, "{gap} new connections were refused before a move");
        anyhow::ensure!(audit.lost == 0 && audit.doubled == 0, "{audit:?}");
        anyhow::ensure!(out.abandoned.is_empty() && out.conflicting.is_empty());
        anyhow::ensure!(out.acks.len() > 50, "the kiosks printed {}", out.acks.len());
        Ok(())
    });
}

fn requests_of(status: &Value, node: &str) -> u64 {
    status["nodes"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["name"] == node))
        .map(|n| {
            n["requests"]
                .as_object()
                .map(|m| m.values().filter_map(Value::as_u64).sum())
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Some GETs to the VIP, all answered.
async fn browse(lab: &PairLab, n: usize) -> anyhow::Result<()> {
    let c = reqwest::Client::builder().no_proxy().build()?;
    for _ in 0..n {
        let r = c
            .get(lab.url(&format!(
                "/api/v1/branches/{}/board",
                chaos_tests::appliance::BRANCH
            )))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "{}", r.status());
    }
    Ok(())
}

/// An operator acts through the MASTER, the MASTER dies; the other
/// gateway takes the VIP and honours the decision: drain, maintenance and
/// switchover in turn.
#[test]
fn an_operator_decision_outlives_the_gateway_it_was_made_on() {
    with_lab("o", |net, mut lab| async move {
        let steps: [(&str, Option<Value>, &str, &str); 3] = [
            ("/v1/nodes/a/drain", None, "a", "drain"),
            ("/v1/nodes/a/maintenance", None, "a", "maintenance"),
            (
                "/v1/switchover",
                Some(json!({ "to": "b" })),
                "a",
                "switchover",
            ),
        ];
        for (path, body, avoided, what) in steps {
            let master = net.vip_holders()[0];
            let other = 1 - master;
            lab.wait_status(other, Duration::from_secs(10), |s| {
                s["pair"]["peer"]["reachable"] == true
            })
            .await?;
            let (code, answer) = lab.admin_call(master, "POST", path, body).await?;
            anyhow::ensure!(code == 200, "{what}: {code} {answer}");
            anyhow::ensure!(answer["pair"]["synced"] == true, "{what}: {answer}");
            lab.gateways[master].kill_gateway()?;
            anyhow::ensure!(
                vip_moves_to(&net, other, Instant::now()).await.is_some(),
                "{what}: the VIP did not move"
            );
            let before = lab.status(other).await?;
            browse(&lab, 50).await?;
            let after = lab.status(other).await?;
            anyhow::ensure!(
                requests_of(&after, avoided) == requests_of(&before, avoided),
                "{what}: gateway {} sent requests to {avoided}",
                other + 1
            );
            anyhow::ensure!(after["primary"] == "b", "{what}: {after}");
            println!(
                "{what} through gateway {}: gateway {} kept it after the failover",
                master + 1,
                other + 1
            );
            // Back to normal for the next step, through the survivor.
            lab.gateways[master].start_gateway(&lab.bin_dir);
            lab.wait_serving(master, Duration::from_secs(30)).await?;
            let s = lab.status(master).await?;
            anyhow::ensure!(
                node_field(&s, "a", "admin") == node_field(&after, "a", "admin")
                    && s["primary"] == after["primary"],
                "{what}: the restarted gateway {} disagrees: {s}",
                master + 1
            );
            let (code, _) = lab
                .admin_call(other, "POST", "/v1/nodes/a/undrain", None)
                .await?;
            anyhow::ensure!(code == 200);
            let (code, _) = lab
                .admin_call(other, "POST", "/v1/switchover", Some(json!({ "to": "a" })))
                .await?;
            anyhow::ensure!(code == 200);
            lab.wait_status(master, Duration::from_secs(2), |s| {
                s["primary"] == "a" && node_field(s, "a", "admin") == Some("active")
            })
            .await?;
        }
        Ok(())
    });
}

/// The link between the two gateway hosts is cut: both take the VIP
/// (split brain). What clients see and what each gateway does is measured;
/// the twins never get two different primaries from the operator state
/// (a switchover is refused on both while they cannot reach each other).
#[test]
fn a_split_brain_is_measured_and_gives_the_twins_one_primary() {
    with_lab("s", |net, lab| async move {
        net.cut_between_gateways()?;
        let t = Instant::now();
        while net.vip_holders().len() < 2 && t.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let both = t.elapsed();
        let holders = net.vip_holders();
        println!("link cut: VIP held by {holders:?} after {both:?}");
        anyhow::ensure!(
            holders == vec![0, 1],
            "both should hold the VIP: {holders:?}"
        );
        for i in 0..2 {
            lab.wait_vrrp(i, "MASTER", Duration::from_secs(5)).await?;
            lab.wait_status(i, Duration::from_secs(5), |s| {
                s["pair"]["peer"]["reachable"] == false
            })
            .await?;
        }
        // Clients: the VIP answers (whichever host the bridge's ARP entry
        // names); count what they see.
        let c = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let (mut ok, mut failed) = (0, 0);
        for _ in 0..100 {
            match c
                .get(lab.url("/api/v1/branches/centrum/board"))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => ok += 1,
                _ => failed += 1,
            }
        }
        println!("during the split: {ok} of 100 requests answered, {failed} failed");
        let mut primaries = Vec::new();
        for i in 0..2 {
            let (code, body) = lab
                .admin_call(i, "POST", "/v1/switchover", Some(json!({ "to": "b" })))
                .await?;
            anyhow::ensure!(
                code == 409 && body["error"] == "peer_unreachable",
                "gateway {}: {code} {body}",
                i + 1
            );
            primaries.push(lab.status(i).await?["primary"].clone());
        }
        anyhow::ensure!(primaries[0] == primaries[1], "{primaries:?}");
        println!("both gateways keep primary {}", primaries[0]);
        net.heal_between_gateways()?;
        let t = Instant::now();
        while net.vip_holders().len() != 1 && t.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!(
            "healed: VIP held by {:?} after {:?}",
            net.vip_holders(),
            t.elapsed()
        );
        anyhow::ensure!(net.vip_holders().len() == 1);
        // A connection opened to the host that gave the address up is
        // reset by the other; new connections go to the holder.
        let mut failed_after = Vec::new();
        for i in 0..100 {
            if !answers(&c, &lab).await {
                failed_after.push(i);
            }
        }
        println!(
            "after the heal: {} of 100 requests failed (at {failed_after:?})",
            failed_after.len()
        );
        anyhow::ensure!(failed_after.iter().all(|&i| i < 10), "{failed_after:?}");
        Ok(())
    });
}

async fn answers(c: &reqwest::Client, lab: &PairLab) -> bool {
    c.get(lab.url("/api/v1/branches/centrum/board"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// A rolling upgrade of the twins driven through the pair (`twinctl` with
/// both gateways; the agents ask both whether they still route to their
/// node), then the pair's own binary upgrade, BACKUP first, each gateway
/// in place: under the mixed load through the VIP, nothing fails.
#[test]
fn upgrades_of_the_twins_and_of_the_gateway_pair_under_load_fail_nothing() {
    with_lab("u", |net, mut lab| async move {
        let t0 = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let plan = Plan {
            browsers: 2,
            kiosks: 2,
            desks: 1,
            duration: Duration::from_secs(240),
            max_per_worker: 200_000,
            settle: Duration::from_secs(20),
        };
        let load = tokio::spawn(load::run(lab.base(), plan, t0, stop.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;

        let args = chaos_tests::appliance::Appliance::rolling_upgrade_args(
            &lab.bin_dir,
            lab.dir.path(),
            &lab.nodes,
            "2.0.0",
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out) = tokio::task::block_in_place(|| lab.twinctl(&args));
        anyhow::ensure!(code == Some(0), "twinctl rolling-upgrade: {code:?}\n{out}");
        for i in 0..2 {
            lab.wait_status(i, Duration::from_secs(10), |s| {
                ["a", "b"]
                    .iter()
                    .all(|n| node_field(s, n, "version") == Some("2.0.0"))
            })
            .await?;
        }
        // Each agent waited until neither gateway routed to its node.
        let c = reqwest::Client::new();
        for n in &lab.nodes {
            let record = c
                .get(format!("http://{}/v1/upgrade", n.control))
                .bearer_auth(chaos_tests::appliance::AGENT_TOKEN)
                .send()
                .await?
                .text()
                .await?;
            anyhow::ensure!(
                record.contains("the gateway routes nothing to the node"),
                "node {}: {record}",
                n.name
            );
        }
        println!("twins upgraded to 2.0.0 through the pair");

        let master = net.vip_holders()[0];
        for i in [1 - master, master] {
            tokio::task::block_in_place(|| lab.gateways[i].upgrade_gateway(&lab.bin_dir))?;
            lab.wait_serving(i, Duration::from_secs(30)).await?;
            println!("gateway {} upgraded in place", i + 1);
        }
        anyhow::ensure!(net.vip_holders() == vec![master], "the VIP moved");
        lab.wait_vrrp(master, "MASTER", Duration::from_secs(2))
            .await?;
        lab.wait_vrrp(1 - master, "BACKUP", Duration::from_secs(2))
            .await?;
        let (code, out) = tokio::task::block_in_place(|| lab.twinctl(&["status"]));
        anyhow::ensure!(code == Some(0) && out.contains("views agree"), "{out}");

        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, Ordering::Relaxed);
        let out = load.await?;
        let failed: Vec<_> = out.records.iter().filter(|r| !r.ok).collect();
        println!(
            "{} requests through the VIP, {} failed",
            out.records.len(),
            failed.len()
        );
        anyhow::ensure!(
            failed.is_empty(),
            "failed: {:?}",
            &failed[..failed.len().min(5)]
        );
        let stored = tickets::read(&lab.database, chaos_tests::appliance::BRANCH).await?;
        let audit = tickets::audit(&stored, &out.acks);
        anyhow::ensure!(audit.lost == 0 && audit.doubled == 0, "{audit:?}");
        Ok(())
    });
}
