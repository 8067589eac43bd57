//! The short chaos suite, as CI runs it: every scenario once, its bounds
//! asserted (zero failed requests where the issue asks for it, the
//! detection bound for a hang and a blackhole, no ticket lost or doubled
//! anywhere). And the proof that the bounds bite: with the gateway's
//! health checks switched off, the hang scenario fails.

use chaos_tests::appliance::HealthCheck;
use chaos_tests::report::{table, ScenarioResult};
use chaos_tests::scenarios::{list, run, Settings};

fn settings(health: HealthCheck) -> Settings {
    let bin_dir = devtools::bin("gateway")
        .parent()
        .expect("the binaries' folder")
        .to_path_buf();
    for b in ["node-agent", "ticketing", "twinctl"] {
        devtools::bin(b);
    }
    Settings {
        full: false,
        bin_dir,
        health,
    }
}

async fn scenario(name: &str) -> ScenarioResult {
    let r = run(name, &settings(HealthCheck::default()))
        .await
        .unwrap_or_else(|e| panic!("scenario {name} could not run: {e:#}"));
    print!("{}", table(std::slice::from_ref(&r)));
    for n in &r.notes {
        println!("  {name}: {n}");
    }
    r
}

macro_rules! scenario_tests {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() {
                let r = scenario($name).await;
                assert!(r.passed(), "{}", table(std::slice::from_ref(&r)));
            }
        )*

        /// Every scenario the suite lists has a test here.
        #[test]
        fn every_scenario_has_a_test() {
            let tested = [$($name),*];
            let listed = list();
            for (name, _) in &listed {
                assert!(tested.contains(name), "scenario {name} has no test");
            }
            assert_eq!(tested.len(), listed.len());
        }
    };
}

scenario_tests! {
    crash_primary => "crash-primary",
    crash_standby => "crash-standby",
    hang_primary => "hang-primary",
    slow_primary => "slow-primary",
    blackhole_primary => "blackhole-primary",
    flapping => "flapping",
    drain_primary => "drain-primary",
    switchover => "switchover",
    reload_100 => "reload-100",
    invalid_config => "invalid-config",
    binary_upgrade => "binary-upgrade",
    rolling_upgrade => "rolling-upgrade",
    pg_restart => "pg-restart",
    disk_full => "disk-full",
    gateway_crash => "gateway-crash",
}

/// The bounds can fail: without active health checks the gateway does not
/// notice a hung primary, and the hang scenario breaks its bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_health_checks_the_hang_scenario_fails() {
    let off = HealthCheck {
        enabled: false,
        ..HealthCheck::default()
    };
    let r = run("hang-primary", &settings(off))
        .await
        .expect("the scenario runs");
    print!("{}", table(std::slice::from_ref(&r)));
    assert!(!r.passed(), "the bounds held without health checks: {r:?}");
    assert!(
        r.violations
            .iter()
            .any(|v| v.contains("never took the node out") || v.contains("detected after")),
        "{:?}",
        r.violations
    );
    assert!(
        r.violations.iter().any(|v| v.contains("slowest request")),
        "{:?}",
        r.violations
    );
}
