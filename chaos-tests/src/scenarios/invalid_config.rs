//! `invalid-config`: 10 invalid configs pushed and reloaded. Each refused
//! with 422 naming the field, the generation unchanged, zero failed
//! requests.

use super::{Finished, Running, Scenario, Settings, Times};
use crate::appliance::{write_atomically, Variant};
use async_trait::async_trait;
use std::time::Duration;

#[derive(Default)]
pub struct InvalidConfig {
    before: Option<u64>,
    after: Option<u64>,
    pushed: usize,
    wrong: Vec<String>,
}

/// The broken configs: the field the error must name, and the file.
fn broken(good: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "mode",
            good.replace("mode: active-standby", "mode: sideways"),
        ),
        (
            "health_check.interval",
            good.replace("interval: 250ms", "interval: soon"),
        ),
        (
            "health_check.interval",
            good.replace("interval: 250ms", "interval: 1ms"),
        ),
        (
            "failback.hold_down",
            good.replace("hold_down: 30s", "hold_down: -1s"),
        ),
        ("primary", good.replace("primary: a", "primary: c")),
        (
            "passive.error_limit",
            good.replace("error_limit: 5", "error_limit: many"),
        ),
        ("health_check.rise", good.replace("rise: 2", "rise: 0")),
        (
            "timeouts.connect",
            good.replace("connect: 500ms", "connect: 0ms"),
        ),
        ("nodes", good.replace("  - name: b\n", "  - name: a\n")),
        ("surprise", good.to_string() + "surprise: true\n"),
    ]
}

#[async_trait]
impl Scenario for InvalidConfig {
    fn name(&self) -> &'static str {
        "invalid-config"
    }

    fn summary(&self) -> &'static str {
        "10 invalid configs pushed and reloaded"
    }

    async fn fault(&mut self, run: &mut Running, _s: &Settings) -> anyhow::Result<()> {
        let good = run.app.gateway_yaml(Variant::First);
        self.before = run.app.status().await?["config_generation"].as_u64();
        let broken = broken(&good);
        self.pushed = broken.len();
        for (field, text) in &broken {
            write_atomically(&run.app.gateway_config, text)?;
            let (code, body) = run.app.admin_call("POST", "/v1/config/reload").await?;
            let named = body.to_string().contains(field);
            if code != 422 || !named {
                self.wrong.push(format!("{field}: {code} {body}"));
            }
        }
        Ok(())
    }

    async fn heal(&mut self, run: &mut Running, _s: &Settings) -> anyhow::Result<Duration> {
        run.app.write_gateway_config(Variant::First)?;
        self.after = run.app.status().await?["config_generation"].as_u64();
        Ok(run.now())
    }

    fn bounds(&mut self, f: &mut Finished, _s: &Settings, _t: Times) {
        let (before, after) = (self.before, self.after);
        f.r.bound(
            self.wrong.is_empty(),
            format!(
                "invalid configs not refused with the field named: {:?}",
                self.wrong
            ),
        );
        f.r.bound(
            before == after,
            format!("config generation moved: {before:?} → {after:?}"),
        );
        f.r.notes.push(format!(
            "{} invalid configs refused (422, field named), generation unchanged",
            self.pushed
        ));
        f.zero_failed();
    }
}
