//! `reload-100`: 100 config reloads alternating two valid configs. Every
//! one accepted, the generation up by 100, zero failed requests.

use super::{Finished, Running, Scenario, Settings, Times};
use crate::appliance::Variant;
use async_trait::async_trait;
use std::time::Duration;

const RELOADS: u64 = 100;

#[derive(Default)]
pub struct Reload {
    before: Option<u64>,
    after: Option<u64>,
    refused: Vec<String>,
}

#[async_trait]
impl Scenario for Reload {
    fn name(&self) -> &'static str {
        "reload-100"
    }

    fn summary(&self) -> &'static str {
        "100 config reloads alternating two valid configs"
    }

    async fn fault(&mut self, run: &mut Running, _s: &Settings) -> anyhow::Result<()> {
        self.before = run.app.status().await?["config_generation"].as_u64();
        for i in 0..RELOADS {
            let v = if i % 2 == 0 {
                Variant::Second
            } else {
                Variant::First
            };
            run.app.write_gateway_config(v)?;
            let (code, body) = run.app.admin_call("POST", "/v1/config/reload").await?;
            if code != 200 {
                self.refused.push(format!("reload {i}: {code} {body}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn heal(&mut self, run: &mut Running, _s: &Settings) -> anyhow::Result<Duration> {
        self.after = run.app.status().await?["config_generation"].as_u64();
        Ok(run.now())
    }

    fn bounds(&mut self, f: &mut Finished, _s: &Settings, _t: Times) {
        let (before, after) = (self.before, self.after);
        f.r.bound(
            self.refused.is_empty(),
            format!("reloads refused: {:?}", self.refused),
        );
        f.r.bound(
            before.zip(after).is_some_and(|(b, a)| a == b + RELOADS),
            format!("config generation {before:?} → {after:?}, expected +{RELOADS}"),
        );
        f.r.notes.push(format!(
            "config generation {} → {}",
            before.unwrap_or(0),
            after.unwrap_or(0)
        ));
        f.zero_failed();
    }
}
