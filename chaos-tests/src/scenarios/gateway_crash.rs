//! `gateway-crash`: the gateway pair (two gateway hosts on network
//! namespaces of their own, keepalived moving the virtual IP, the load
//! through the VIP), kill -9 of the MASTER gateway, which comes back as
//! BACKUP. Bounds: the VIP moves within 1 s; the only failed requests are
//! those in flight on the dead gateway or sent before the VIP moved; no
//! ticket lost or doubled.
//!
//! It does not fit [`super::Scenario`]: its appliance is a
//! [`crate::pair::PairLab`] and everything that talks to it runs in the
//! lab's client namespace.

use super::Settings;
use crate::appliance::BRANCH;
use crate::load;
use crate::pair::{classify_failures, in_client_namespace, Net, PairLab};
use crate::report::ScenarioResult;
use crate::tickets;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const NAME: &str = "gateway-crash";
pub const SUMMARY: &str =
    "kill -9 of the MASTER gateway of the pair, the load through the virtual IP; it restarts as BACKUP";

/// The bound on the VIP's move after the kill.
const MOVE_BOUND: Duration = Duration::from_secs(1);

pub async fn run(s: &Settings) -> anyhow::Result<ScenarioResult> {
    let s = s.clone();
    tokio::task::spawn_blocking(move || {
        let net = Arc::new(Net::create("gc")?);
        let n = net.clone();
        in_client_namespace(&net, move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(3)
                .enable_all()
                .build()?;
            rt.block_on(in_lab(n, s))
        })?
    })
    .await?
}

async fn in_lab(net: Arc<Net>, s: Settings) -> anyhow::Result<ScenarioResult> {
    let mut lab = PairLab::start(&net, &s.bin_dir).await?;
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load::run(lab.base(), s.plan(), t0, stop.clone()));
    tokio::time::sleep(s.warmup()).await;
    let mut kills = Vec::new();
    for _ in 0..(if s.full { 3 } else { 1 }) {
        kills.push(lab.kill_master(&net, t0).await?);
        tokio::time::sleep(s.hold()).await;
    }
    tokio::time::sleep(s.cooldown()).await;
    stop.store(true, Ordering::Relaxed);
    let out = load.await?;
    let stored = tickets::read(&lab.database, BRANCH).await?;
    let mut r = ScenarioResult {
        scenario: NAME.into(),
        fault: SUMMARY.into(),
        ..ScenarioResult::default()
    };
    r.count(&out.records);
    r.resent_by_kiosks = out.records.iter().filter(|x| x.resend).count();
    r.tickets = tickets::audit(&stored, &out.acks);
    let worst = kills.iter().map(|k| k.moved).max().unwrap_or_default();
    r.detection_ms = Some((worst.as_secs_f64() * 1000.0).round());
    let [in_flight, gap, after] = classify_failures(&out.records, &kills);
    r.notes.push(format!(
        "VIP moved {} after the kill (bound {} ms); failed: {in_flight} on connections to the gateway that died, {gap} new connections refused before the move, {after} after it",
        kills
            .iter()
            .map(|k| format!("{} ms", k.moved.as_millis()))
            .collect::<Vec<_>>()
            .join(", "),
        MOVE_BOUND.as_millis()
    ));
    r.bound(
        worst <= MOVE_BOUND,
        format!("the VIP took {} ms to move", worst.as_millis()),
    );
    r.bound(
        after == 0,
        format!("{after} requests sent after the VIP moved failed"),
    );
    r.bound(
        gap == 0,
        format!("{gap} new connections were refused before the VIP moved"),
    );
    super::run::ticket_bounds(&mut r, &out);
    Ok(r)
}
