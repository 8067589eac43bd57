//! `disk-full`: the tmpfs that holds the SQLite file filled up, freed
//! after the hold. Failures only while it was full, each the clear 507
//! `storage_full`, and tickets issued again after it.

use super::{Finished, Running, Scenario, Settings, Setup, Times};
use crate::appliance::Store;
use crate::env::SmallDisk;
use async_trait::async_trait;
use std::time::Duration;

#[derive(Default)]
pub struct DiskFull {
    disk: Option<SmallDisk>,
    dir: Option<devtools::TempDir>,
    /// Bytes written to fill it.
    filled: u64,
}

impl DiskFull {
    fn disk(&self) -> &SmallDisk {
        self.disk.as_ref().expect("mounted by set_up")
    }
}

#[async_trait]
impl Scenario for DiskFull {
    fn name(&self) -> &'static str {
        "disk-full"
    }

    fn summary(&self) -> &'static str {
        "the SQLite file's tmpfs filled up, freed after the hold"
    }

    async fn set_up(&mut self, _s: &Settings) -> anyhow::Result<Setup> {
        let dir = devtools::TempDir::new("chaos-disk");
        let disk = SmallDisk::mount(&dir.path().join("disk"), 16)?;
        let store = Store::Sqlite(Some(disk.dir.clone()));
        self.disk = Some(disk);
        self.dir = Some(dir);
        Ok(Setup {
            store,
            proxied: false,
        })
    }

    async fn fault(&mut self, _run: &mut Running, s: &Settings) -> anyhow::Result<()> {
        self.filled = self.disk().fill();
        tokio::time::sleep(s.hold()).await;
        Ok(())
    }

    async fn heal(&mut self, run: &mut Running, _s: &Settings) -> anyhow::Result<Duration> {
        self.disk().free();
        Ok(run.now())
    }

    /// A hold, so tickets are issued again well after the disk was freed.
    async fn recover(&mut self, _run: &Running, s: &Settings) {
        tokio::time::sleep(s.hold()).await;
    }

    fn bounds(&mut self, f: &mut Finished, _s: &Settings, t: Times) {
        f.r.notes.push(format!(
            "{} KiB written to fill the disk",
            self.filled / 1024
        ));
        f.r.bound(
            f.r.failed > 0,
            "no request failed: the disk never filled up",
        );
        f.store_outage(
            t.at,
            t.lifted,
            "the full disk",
            |r| r.failure.as_deref() == Some("status 507 storage_full"),
            "the clear 507 storage_full",
        );
    }

    async fn tear_down(&mut self) {
        self.disk = None;
        self.dir = None;
    }
}
