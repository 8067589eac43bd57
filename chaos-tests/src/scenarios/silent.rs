//! `hang-primary` (SIGSTOP of the primary's app and agent) and
//! `blackhole-primary` (its links forward nothing and close nothing): a
//! node that stops answering without closing anything. Detected within the
//! health check's bound; only requests under way before detection may fail.

use super::{Finished, Running, Scenario, Settings, Setup, Times};
use crate::appliance::Store;
use crate::env::Database;
use crate::fault::Fault;
use async_trait::async_trait;
use std::time::Duration;

pub struct Silent {
    /// SIGSTOP (true) or a blackhole on the links (false).
    hang: bool,
    db: Option<Database>,
}

impl Silent {
    pub fn hang() -> Silent {
        Silent {
            hang: true,
            db: None,
        }
    }
    pub fn blackhole() -> Silent {
        Silent {
            hang: false,
            db: None,
        }
    }
}

#[async_trait]
impl Scenario for Silent {
    fn name(&self) -> &'static str {
        if self.hang {
            "hang-primary"
        } else {
            "blackhole-primary"
        }
    }

    fn summary(&self) -> &'static str {
        if self.hang {
            "SIGSTOP of the primary's app and agent, SIGCONT after the hold"
        } else {
            "the primary's links forward nothing and close nothing, then heal"
        }
    }

    /// PostgreSQL, as in production: a twin stopped inside a write would
    /// hold a shared SQLite file's lock until it resumed (RESULTS.md);
    /// PostgreSQL ends such a session after 500 ms.
    async fn set_up(&mut self, _s: &Settings) -> anyhow::Result<Setup> {
        let db = Database::create(self.name()).await?;
        let store = Store::Postgres(db.url.clone());
        self.db = Some(db);
        Ok(Setup {
            store,
            // A blackhole needs our proxy on the links; a hang does not.
            proxied: !self.hang,
        })
    }

    async fn fault(&mut self, run: &mut Running, s: &Settings) -> anyhow::Result<()> {
        if self.hang {
            run.app.nodes[0].signal("STOP");
        } else {
            run.app.nodes[0].set_link(Fault::Blackhole);
        }
        tokio::time::sleep(s.long_hold()).await;
        Ok(())
    }

    async fn heal(&mut self, run: &mut Running, _s: &Settings) -> anyhow::Result<Duration> {
        if self.hang {
            run.app.nodes[0].signal("CONT");
        } else {
            run.app.nodes[0].set_link(Fault::Pass);
        }
        Ok(run.now())
    }

    async fn recover(&mut self, run: &Running, s: &Settings) {
        run.wait_up(0, Duration::from_secs(30)).await;
        tokio::time::sleep(s.cooldown()).await;
    }

    fn bounds(&mut self, f: &mut Finished, s: &Settings, t: Times) {
        f.node_fault(0, t);
        let bound = s.health.detection_bound();
        let slack = Duration::from_millis(1000);
        // A twin stopped inside a write holds the branch's row lock;
        // PostgreSQL frees it after IDLE_IN_TRANSACTION, and each of the
        // node's writes queued behind it may take it once more.
        let writers = (s.plan().kiosks + s.plan().desks) as u32;
        let stall = ticketing::store::IDLE_IN_TRANSACTION * writers;
        f.detection_bounds(t.at, bound, slack + stall);
        f.r.notes.push(format!(
            "detection bound from the health check: {}; \
             slowest request bound: that + {} ms slack + {} writers × {} ms (the store's lock timeout)",
            s.health.explain_bound(),
            slack.as_millis(),
            writers,
            ticketing::store::IDLE_IN_TRANSACTION.as_millis()
        ));
    }

    async fn tear_down(&mut self) {
        if let Some(db) = self.db.take() {
            db.drop_now().await;
        }
    }
}
