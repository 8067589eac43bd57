use super::*;
use crate::config::{FlapDamping, Mode};
use std::time::Duration;

const A: NodeId = 0;
const B: NodeId = 1;

fn rules(mode: Mode) -> Rules {
    Rules {
        mode,
        preferred: A,
        rise: 2,
        fall: 2,
        preempt: false,
        hold_down: Duration::from_secs(30),
        flap: FlapDamping {
            window: Duration::from_secs(60),
            threshold: 3,
            hold: Duration::from_secs(10),
            max_hold: Duration::from_secs(300),
        },
        interval: Duration::from_millis(250),
    }
}

fn ok() -> Observation {
    Observation::CheckPassed {
        weight_percent: 100,
    }
}

fn fail() -> Observation {
    Observation::CheckFailed {
        reason: "timeout".into(),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Both nodes pass their first check at `t0`.
fn started(r: Rules, t0: Instant) -> Cluster {
    let mut c = Cluster::new(r);
    c.observe(A, ok(), t0);
    c.observe(B, ok(), t0);
    c
}

fn failovers(ts: &[Transition]) -> usize {
    ts.iter()
        .filter(|t| matches!(t, Transition::Primary { failover: true, .. }))
        .count()
}

#[test]
fn first_checks_choose_the_configured_primary_without_a_failover() {
    let t0 = Instant::now();
    let mut c = Cluster::new(rules(Mode::ActiveStandby));
    let ts = c.observe(B, ok(), t0);
    // Only b is known to be up: it serves rather than nobody, but the role
    // waits up to two check intervals for a, not checked yet.
    assert_eq!(c.serving_order(), vec![B]);
    assert_eq!(c.primary(), None);
    assert_eq!(failovers(&ts), 0);
    assert_eq!(c.next_deadline(), Some(t0 + ms(500)));
    // a's first check of the round arrives a moment later: a takes it.
    let ts = c.observe(A, ok(), t0 + ms(30));
    assert_eq!(c.primary(), Some(A));
    assert_eq!(failovers(&ts), 0);
    assert_eq!(c.serving_order(), vec![A, B]);

    // a does not answer within the wait: b takes the role then, and
    // (non-preemptive) keeps it when a comes up.
    let mut c = Cluster::new(rules(Mode::ActiveStandby));
    c.observe(B, ok(), t0);
    assert!(c.tick(t0 + ms(400)).is_empty());
    c.tick(t0 + ms(500));
    assert_eq!(c.primary(), Some(B));
    let ts = c.observe(A, ok(), t0 + ms(510));
    assert_eq!(c.primary(), Some(B));
    assert!(ts.iter().all(|t| !matches!(t, Transition::Primary { .. })));

    // a's check failed: nothing to wait for, b takes the role at once.
    let mut c = Cluster::new(rules(Mode::ActiveStandby));
    c.observe(A, fail(), t0);
    c.observe(B, ok(), t0);
    assert_eq!(c.primary(), Some(B));

    let c = started(rules(Mode::ActiveStandby), t0);
    assert_eq!(c.primary(), Some(A));
    assert_eq!(c.role(A), Role::Primary);
    assert_eq!(c.role(B), Role::Standby);
    assert_eq!(c.serving_order(), vec![A, B]);
}

/// Both twins come back from a failed start (rise 2) in the same round of
/// checks, b a few milliseconds ahead each time: the configured primary
/// still takes the role (the demo once printed "a (primary)" while b had it).
#[test]
fn twins_rising_in_the_same_round_give_the_role_to_the_configured_primary() {
    let t0 = Instant::now();
    let mut c = Cluster::new(rules(Mode::ActiveStandby));
    c.observe(B, fail(), t0);
    c.observe(A, fail(), t0);
    for round in 1..=2u64 {
        c.observe(B, ok(), t0 + ms(250 * round));
        c.observe(A, ok(), t0 + ms(250 * round + 5));
    }
    assert_eq!(c.primary(), Some(A));
    assert_eq!(c.role(B), Role::Standby);
}

#[test]
fn primary_fails_after_fall_checks_and_the_standby_takes_over() {
    let t0 = Instant::now();
    let mut c = started(rules(Mode::ActiveStandby), t0);
    let ts = c.observe(A, fail(), t0 + ms(250));
    assert!(ts.is_empty(), "one failure is below fall: {ts:?}");
    assert_eq!(c.primary(), Some(A));
    let ts = c.observe(A, fail(), t0 + ms(500));
    assert_eq!(c.node(A).health, Health::Down);
    assert_eq!(c.primary(), Some(B));
    assert_eq!(failovers(&ts), 1);
    let reason = ts
        .iter()
        .find_map(|t| match t {
            Transition::Primary { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .unwrap();
    assert!(reason.contains("readiness checks failed"), "{reason}");
    assert_eq!(c.serving_order(), vec![B]);
}

#[test]
fn a_passive_hard_failure_takes_the_node_down_at_once() {
    let t0 = Instant::now();
    let mut c = started(rules(Mode::ActiveStandby), t0);
    let ts = c.observe(
        A,
        Observation::PassiveFailure {
            reason: "connection refused".into(),
        },
        t0 + ms(1),
    );
    assert_eq!(c.node(A).health, Health::Down);
    assert_eq!(c.primary(), Some(B));
    assert_eq!(failovers(&ts), 1);
    // It needs `rise` passed checks to come back, not one.
    c.observe(A, ok(), t0 + ms(250));
    assert_eq!(c.node(A).health, Health::Down);
    c.observe(A, ok(), t0 + ms(500));
    assert_eq!(c.node(A).health, Health::Up);
}

#[test]
fn non_preemptive_failback_keeps_traffic_on_the_new_primary() {
    let t0 = Instant::now();
    let mut c = started(rules(Mode::ActiveStandby), t0);
    c.observe(A, fail(), t0 + ms(250));
    c.observe(A, fail(), t0 + ms(500));
    c.observe(A, ok(), t0 + ms(750));
    c.observe(A, ok(), t0 + ms(1000));
    assert_eq!(c.node(A).health, Health::Up);
    let ts = c.tick(t0 + Duration::from_secs(3600));
    assert!(ts.is_empty());
    assert_eq!(c.primary(), Some(B));
    assert_eq!(c.next_deadline(), None);
}

#[test]
fn preemptive_failback_waits_for_the_hold_down() {
    let t0 = Instant::now();
    let mut r = rules(Mode::ActiveStandby);
    r.preempt = true;
    let mut c = started(r, t0);
    c.observe(A, fail(), t0 + ms(250));
    c.observe(A, fail(), t0 + ms(500));
    assert_eq!(c.primary(), Some(B));
    c.observe(A, ok(), t0 + ms(750));
    let back = t0 + ms(1000);
    c.observe(A, ok(), back);
    assert_eq!(c.primary(), Some(B), "not before the hold-down");
    assert_eq!(c.next_deadline(), Some(back + Duration::from_secs(30)));
    assert!(c.tick(back + Duration::from_secs(29)).is_empty());
    // A failure during the hold-down restarts it.
    c.observe(A, fail(), back + Duration::from_secs(29));
    c.observe(A, fail(), back + Duration::from_secs(29) + ms(250));
    c.observe(A, ok(), back + Duration::from_secs(30));
    let again = back + Duration::from_secs(30) + ms(250);
    c.observe(A, ok(), again);
    assert!(c.tick(back + Duration::from_secs(31)).is_empty());
    assert_eq!(c.primary(), Some(B));
    let ts = c.tick(again + Duration::from_secs(30));
    assert_eq!(c.primary(), Some(A));
    assert_eq!(failovers(&ts), 0, "a failback is planned, not a failover");
    assert!(matches!(
        &ts[..],
        [Transition::Primary {
            from: Some(B),
            to: Some(A),
            failover: false,
            ..
        }]
    ));
}

#[test]
fn flapping_node_is_held_down_and_the_hold_grows() {
    let t0 = Instant::now();
    let mut r = rules(Mode::ActiveStandby);
    r.rise = 1;
    r.fall = 1;
    let mut c = started(r, t0);
    let mut t = t0;
    // Two failures: below the threshold, the node comes straight back.
    for _ in 0..2 {
        t += ms(300);
        c.observe(A, fail(), t);
        t += ms(300);
        c.observe(A, ok(), t);
        assert_eq!(c.node(A).health, Health::Up);
    }
    // The third failure in the window makes it flapping: held for 10 s.
    t += ms(300);
    c.observe(A, fail(), t);
    let failed_at = t;
    t += ms(300);
    let ts = c.observe(A, ok(), t);
    assert_eq!(c.node(A).health, Health::Down);
    assert!(matches!(ts[..], [Transition::Damped { node: A, .. }]));
    assert_eq!(c.next_deadline(), Some(failed_at + Duration::from_secs(10)));
    assert!(c.tick(failed_at + Duration::from_secs(9)).is_empty());
    c.tick(failed_at + Duration::from_secs(10));
    assert_eq!(c.node(A).health, Health::Up);
    // The fourth failure doubles the hold.
    t = failed_at + Duration::from_secs(11);
    c.observe(A, fail(), t);
    c.observe(A, ok(), t + ms(300));
    assert_eq!(c.node(A).held_until(), Some(t + Duration::from_secs(20)));
    // Failures leave the window: the node is no longer flapping.
    let later = t + Duration::from_secs(3600);
    c.tick(later);
    assert_eq!(c.node(A).health, Health::Up);
    c.observe(A, fail(), later);
    c.observe(A, ok(), later + ms(300));
    assert_eq!(c.node(A).health, Health::Up);
}

#[test]
fn both_down_leaves_no_primary_and_the_first_back_serves() {
    let t0 = Instant::now();
    let mut r = rules(Mode::ActiveStandby);
    r.fall = 1;
    r.rise = 1;
    let mut c = started(r, t0);
    c.observe(A, fail(), t0 + ms(100));
    assert_eq!(c.primary(), Some(B));
    let ts = c.observe(B, fail(), t0 + ms(200));
    assert_eq!(c.primary(), None);
    assert!(c.serving_order().is_empty());
    assert_eq!(failovers(&ts), 0);
    let ts = c.observe(B, ok(), t0 + ms(300));
    assert_eq!(c.primary(), Some(B));
    assert_eq!(failovers(&ts), 0, "b comes back to the role it had");
}

#[test]
fn draining_primary_hands_traffic_to_its_twin() {
    let t0 = Instant::now();
    let mut c = started(rules(Mode::ActiveStandby), t0);
    let ts = c.observe(A, Observation::CheckDraining, t0 + ms(250));
    assert_eq!(c.node(A).health, Health::Up);
    assert_eq!(c.primary(), Some(B));
    assert_eq!(failovers(&ts), 0, "a drain is planned, not a failover");
    assert!(format!("{ts:?}").contains("draining"));
}

#[test]
fn active_active_counts_a_node_leaving_while_its_twin_serves() {
    let t0 = Instant::now();
    let mut r = rules(Mode::ActiveActive);
    r.fall = 1;
    let mut c = started(r, t0);
    assert_eq!(c.role(A), Role::Active);
    assert_eq!(c.serving_order(), vec![A, B]);
    let ts = c.observe(B, fail(), t0 + ms(100));
    assert!(matches!(
        ts[..],
        [_, Transition::ActiveLost { node: B, .. }]
    ));
    assert_eq!(c.serving_order(), vec![A]);
    // The last node leaving is an outage, not a failover.
    let ts = c.observe(A, fail(), t0 + ms(200));
    assert!(!ts
        .iter()
        .any(|t| matches!(t, Transition::ActiveLost { .. })));
}

#[test]
fn operator_drain_and_maintenance_take_a_node_out_without_a_failover() {
    let t0 = Instant::now();
    let mut c = started(rules(Mode::ActiveStandby), t0);
    let ts = c.set_admin(A, AdminState::Drain, t0 + ms(1));
    assert_eq!(c.primary(), Some(B));
    assert_eq!(failovers(&ts), 0);
    assert!(matches!(
        ts[0],
        Transition::Admin {
            node: A,
            to: AdminState::Drain,
            ..
        }
    ));
    // Maintenance on b too: nobody serves, and a's health alone does not
    // bring traffic back onto a node in maintenance.
    c.set_admin(B, AdminState::Maintenance, t0 + ms(2));
    assert_eq!(c.primary(), None);
    c.observe(B, ok(), t0 + ms(250));
    assert!(c.serving_order().is_empty());
    c.set_admin(A, AdminState::Active, t0 + ms(300));
    assert_eq!(c.primary(), Some(A));
    assert_eq!(c.serving_order(), vec![A]);
}

#[test]
fn switchover_moves_the_role_and_is_refused_onto_a_node_that_cannot_serve() {
    let t0 = Instant::now();
    let mut r = rules(Mode::ActiveStandby);
    r.preempt = true;
    let mut c = started(r, t0);
    let ts = c.switchover(B, t0 + ms(1)).unwrap();
    assert_eq!(c.primary(), Some(B));
    assert_eq!(failovers(&ts), 0);
    // The target became the configured primary: no preemption back to a.
    assert!(c.tick(t0 + Duration::from_secs(3600)).is_empty());
    assert_eq!(c.primary(), Some(B));
    // Onto a node that is down: refused, nothing changes.
    c.observe(A, fail(), t0 + ms(300));
    c.observe(A, fail(), t0 + ms(600));
    let err = c.switchover(A, t0 + ms(700)).unwrap_err();
    assert!(
        matches!(err, SwitchoverError::NotEligible(ref why) if why.contains("down")),
        "{err}"
    );
    assert_eq!(c.primary(), Some(B));
    // Onto itself: nothing to do.
    assert!(c.switchover(B, t0 + ms(800)).unwrap().is_empty());
    let mut aa = started(rules(Mode::ActiveActive), t0);
    assert_eq!(aa.switchover(A, t0), Err(SwitchoverError::NotActiveStandby));
}

#[test]
fn reconfigure_keeps_the_health_of_unchanged_nodes() {
    let t0 = Instant::now();
    let mut c = started(rules(Mode::ActiveStandby), t0);
    c.set_admin(B, AdminState::Drain, t0);
    c.reconfigure(rules(Mode::ActiveStandby), [false, true], t0 + ms(10));
    assert_eq!(c.node(A).health, Health::Up);
    assert_eq!(c.node(B).health, Health::Unknown);
    assert_eq!(
        c.node(B).admin,
        AdminState::Drain,
        "operator state survives"
    );
    assert_eq!(c.primary(), Some(A));
    c.reconfigure(rules(Mode::ActiveActive), [false, false], t0 + ms(20));
    assert_eq!(c.role(A), Role::Active);
}
