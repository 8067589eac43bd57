//! Live views across both twins: every instance polls the branches'
//! versions in the shared store (one small query every 200 ms) and, for
//! each branch whose version moved, wakes that branch's subscribers (board,
//! desk and tracking streams), which then read a fresh view. A change made
//! through either twin reaches every open board within a poll.

use crate::app::App;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often the versions are read.
pub const POLL: Duration = Duration::from_millis(200);

pub async fn run(app: Arc<App>) {
    let mut seen: HashMap<String, i64> = HashMap::new();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let versions = match app.store.versions().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read branch versions");
                continue;
            }
        };
        for (branch, version) in versions {
            if seen.insert(branch.clone(), version) != Some(version) {
                if let Some(tx) = app.changes.get(&branch) {
                    let _ = tx.send(());
                }
            }
        }
    }
}
