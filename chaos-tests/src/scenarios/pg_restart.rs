//! `pg-restart`: the PostgreSQL server both twins share, restarted (fast)
//! while tickets are issued. Failures only during the restart, each a
//! clear 503, and tickets issued again after it.

use super::{Finished, Running, Scenario, Settings, Setup, Times};
use crate::appliance::Store;
use crate::env::Postgres;
use async_trait::async_trait;
use std::time::Duration;

#[derive(Default)]
pub struct PgRestart {
    /// A server of the scenario's own, in `dir`.
    pg: Option<Postgres>,
    dir: Option<devtools::TempDir>,
    /// The server answered again.
    back: Duration,
}

#[async_trait]
impl Scenario for PgRestart {
    fn name(&self) -> &'static str {
        "pg-restart"
    }

    fn summary(&self) -> &'static str {
        "PostgreSQL restarted (fast) while tickets are issued"
    }

    async fn set_up(&mut self, _s: &Settings) -> anyhow::Result<Setup> {
        let dir = devtools::TempDir::new("chaos-pg");
        let pg = tokio::task::block_in_place(|| Postgres::start(dir.path()))?;
        let store = Store::Postgres(pg.url());
        self.pg = Some(pg);
        self.dir = Some(dir);
        Ok(Setup {
            store,
            proxied: false,
        })
    }

    async fn fault(&mut self, run: &mut Running, _s: &Settings) -> anyhow::Result<()> {
        let pg = self.pg.as_ref().expect("started by set_up");
        tokio::task::block_in_place(|| pg.restart())?;
        self.back = run.now();
        Ok(())
    }

    /// The restart was the whole fault; the load runs a hold on.
    async fn heal(&mut self, _run: &mut Running, s: &Settings) -> anyhow::Result<Duration> {
        tokio::time::sleep(s.hold()).await;
        Ok(self.back)
    }

    /// The hold was the recovery.
    async fn recover(&mut self, _run: &Running, _s: &Settings) {}

    fn bounds(&mut self, f: &mut Finished, _s: &Settings, t: Times) {
        f.r.notes.push(format!(
            "PostgreSQL was down for {} ms",
            (t.lifted - t.at).as_millis()
        ));
        f.store_outage(
            t.at,
            t.lifted,
            "the restart",
            |r| r.status == 503,
            "a clear 503 (the store is unavailable)",
        );
    }

    async fn tear_down(&mut self) {
        self.pg = None;
        self.dir = None;
    }
}
