//! The queue rules, apart from storage and time: which waiting ticket a
//! desk calls next, and how long a visitor is likely to wait. This is the
//! one place the rules are written; [`sim`] plays whole branch days with
//! them.
//!
//! # Which ticket a desk calls
//!
//! A desk calls, among the tickets it may serve, the one of the highest
//! class, and within a class the one with the highest key:
//!
//! | class | tickets | key (highest first) |
//! | --- | --- | --- |
//! | 3 | transferred to this very desk | longest waiting |
//! | 2 | escalated: `waited + boost` past their service's `max_wait` | furthest past its `max_wait` |
//! | 1 | a checked-in booking inside the window around its slot | score |
//! | 0 | everyone else | score |
//!
//! - `waited` counts from when the visitor began to wait (kept across a
//!   transfer); `boost` is the extra waiting time a priority group counts
//!   for, the same in escalation as in the score.
//! - `score = (waited + boost) / service target × preference`, where
//!   preference is 1 for the desk's first service, 1/2 for its second, 1/3
//!   for the third and so on: a desk's later services are served too, only
//!   later (fair interleaving, no starvation).
//! - Escalated tickets are ranked by how far they are past their own limit,
//!   whatever the desk's preference: the one whose limit ran out first goes
//!   first (earliest deadline first), which with equal limits is the one
//!   that has waited longest. So once a visitor's `max_wait` is reached,
//!   only transfers to the desk and visitors even further past their limit
//!   go before them: while a desk that serves their service is open and the
//!   desks keep up with the arrivals, nobody waits longer than `max_wait`
//!   plus one service time (tested over simulated days in [`sim`]).
//! - A ticket transferred to a desk is that desk's alone for
//!   `transfer_max_wait` after the transfer; then every desk serving its
//!   service may call it (with its waiting time kept, it is usually
//!   escalated). When its desk closes it goes back to its service's queue
//!   at once (the store does that).
//! - Ties go to the ticket that has waited longest, then the smaller
//!   number (two tickets issued in the same millisecond), then the id.
//!
//! # Estimated wait
//!
//! See [`estimate_wait`]: none while no open desk serves the service;
//! otherwise the visitors ahead divided by the share of the open desks'
//! time that goes to the service, times the recent service time.

pub mod sim;

use crate::calendar::Millis;

/// A waiting ticket, as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub id: String,
    /// Its number (the order of issue, for ties).
    pub number: i64,
    pub service: String,
    /// Since when it waits (kept across a transfer).
    pub queued_since: Millis,
    /// Extra waiting time its priority group counts for (ms).
    pub boost: i64,
    /// The slot of the booking it was checked in for.
    pub booking_slot: Option<Millis>,
    /// A desk it was transferred to, and when.
    pub assigned_desk: Option<String>,
    pub transferred_at: Option<Millis>,
}

/// A service's waiting-time rules (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Targets {
    pub target_wait: i64,
    pub max_wait: i64,
}

/// The branch-wide rules (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// A booking goes first from this long before its slot to this long after.
    pub booking_window: i64,
    /// How long a ticket transferred to a desk is that desk's alone.
    pub transfer_max_wait: i64,
}

/// Whether `w` has waited (boost counted) past its service's `max_wait`.
pub fn escalated(w: &Waiting, t: Targets, now: Millis) -> bool {
    overdue(w, t, now) > 0
}

/// How far past its `max_wait` `w` is (ms; negative: still within it).
fn overdue(w: &Waiting, t: Targets, now: Millis) -> i64 {
    (now - w.queued_since).max(0) + w.boost - t.max_wait
}

/// Picks the ticket `desk` calls next among `waiting`. `services` lists
/// what the desk serves, in its order of preference; `targets(service)`
/// gives a service's rules.
pub fn pick_next<'a>(
    desk: &str,
    services: &[String],
    waiting: &'a [Waiting],
    targets: impl Fn(&str) -> Targets,
    rules: Rules,
    now: Millis,
) -> Option<&'a Waiting> {
    let rank = |w: &Waiting| -> Option<(u8, f64)> {
        let waited = (now - w.queued_since).max(0);
        if w.assigned_desk.as_deref() == Some(desk) {
            return Some((3, waited as f64));
        }
        let reserved = w.assigned_desk.is_some()
            && w.transferred_at
                .is_none_or(|at| now - at <= rules.transfer_max_wait);
        let pref = services.iter().position(|s| *s == w.service)?;
        if reserved {
            return None;
        }
        let t = targets(&w.service);
        let over = overdue(w, t, now);
        if over > 0 {
            return Some((2, over as f64));
        }
        let window = rules.booking_window;
        let in_window = |slot: Millis| (slot - window..=slot + window).contains(&now);
        let class = u8::from(w.booking_slot.is_some_and(in_window));
        let preference = (pref + 1) as f64;
        let score = (waited + w.boost) as f64 / t.target_wait.max(1) as f64 / preference;
        Some((class, score))
    };
    waiting
        .iter()
        .filter_map(|w| rank(w).map(|r| (r, w)))
        .max_by(|((ca, sa), a), ((cb, sb), b)| {
            ca.cmp(cb)
                .then(sa.total_cmp(sb))
                .then(b.queued_since.cmp(&a.queued_since))
                .then(b.number.cmp(&a.number))
                .then(b.id.cmp(&a.id))
        })
        .map(|(_, w)| w)
}

/// Estimated wait (ms) for a visitor of `service` with `ahead` visitors of
/// the same service before them; `None` while no open desk serves the
/// service (a promise of minutes would be a lie).
///
/// `open_desks` are the services of each open desk, `waiting(s)` how many
/// wait for `s` now, `service_time(s)` its recent mean service time (ms).
/// A desk that serves several services shares its time among them in
/// proportion to the work waiting for each (visitors × service time), so
/// the service has `n` desks' worth of time, `n` the sum of those shares;
/// the visitor is called after the `ahead` visitors before them plus, on
/// average, half of one service already under way:
/// `(ahead + ½) × service time / n`.
pub fn estimate_wait(
    service: &str,
    ahead: usize,
    open_desks: &[&[String]],
    waiting: impl Fn(&str) -> usize,
    service_time: impl Fn(&str) -> i64,
) -> Option<i64> {
    let work = |s: &str| {
        let n = if s == service {
            waiting(s).max(ahead + 1)
        } else {
            waiting(s)
        };
        n as f64 * service_time(s).max(1) as f64
    };
    let desks: f64 = open_desks
        .iter()
        .filter(|d| d.iter().any(|s| s == service))
        .map(|d| work(service) / d.iter().map(|s| work(s)).sum::<f64>())
        .sum();
    if desks <= 0.0 {
        return None;
    }
    let st = service_time(service).max(1) as f64;
    Some(((ahead as f64 + 0.5) * st / desks).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn t(id: &str, service: &str, queued_since: Millis) -> Waiting {
        Waiting {
            id: id.into(),
            number: 0,
            service: service.into(),
            queued_since,
            boost: 0,
            booking_slot: None,
            assigned_desk: None,
            transferred_at: None,
        }
    }

    fn targets(_: &str) -> Targets {
        Targets {
            target_wait: 10 * MIN,
            max_wait: 30 * MIN,
        }
    }

    fn svc(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    const RULES: Rules = Rules {
        booking_window: 15 * MIN,
        transfer_max_wait: 10 * MIN,
    };

    fn pick(desk: &str, services: &[&str], w: &[Waiting], now: Millis) -> Option<String> {
        pick_next(desk, &svc(services), w, targets, RULES, now).map(|w| w.id.clone())
    }

    #[test]
    fn the_longest_waiting_goes_first_and_priorities_count_as_waiting_time() {
        let now = 100 * MIN;
        let mut w = vec![t("A001", "A", now - 5 * MIN), t("A002", "A", now - 4 * MIN)];
        assert_eq!(pick("1", &["A"], &w, now).as_deref(), Some("A001"));
        // A visitor of a priority group (boost 10 min) goes ahead.
        w[1].boost = 10 * MIN;
        assert_eq!(pick("1", &["A"], &w, now).as_deref(), Some("A002"));
        // A desk only calls what it serves.
        assert_eq!(pick("1", &["B"], &w, now), None);
    }

    #[test]
    fn bookings_go_ahead_of_walk_ins_inside_their_window_only() {
        let now = 100 * MIN;
        let walk_in = t("A001", "A", now - 20 * MIN);
        let mut booked = t("A002", "A", now - MIN);
        booked.booking_slot = Some(now + 10 * MIN);
        let w = vec![walk_in.clone(), booked.clone()];
        assert_eq!(
            pick("1", &["A"], &w, now).as_deref(),
            Some("A002"),
            "10 min before its slot, inside the 15 min window"
        );
        booked.booking_slot = Some(now + 40 * MIN);
        let w = vec![walk_in.clone(), booked.clone()];
        assert_eq!(
            pick("1", &["A"], &w, now).as_deref(),
            Some("A001"),
            "too early: a walk-in for now"
        );
        booked.booking_slot = Some(now - 20 * MIN);
        let w = vec![walk_in, booked];
        assert_eq!(
            pick("1", &["A"], &w, now).as_deref(),
            Some("A001"),
            "too late: a walk-in for now"
        );
    }

    #[test]
    fn escalated_tickets_and_desk_transfers_come_first() {
        let now = 100 * MIN;
        let mut booked = t("A001", "A", now - MIN);
        booked.booking_slot = Some(now);
        let escalated = t("B001", "B", now - 31 * MIN);
        let w = vec![booked.clone(), escalated.clone()];
        // B is the desk's second preference, but over its max wait.
        assert_eq!(pick("1", &["A", "B"], &w, now).as_deref(), Some("B001"));
        let mut transferred = t("C001", "C", now);
        transferred.assigned_desk = Some("1".into());
        let w = vec![booked, escalated, transferred.clone()];
        assert_eq!(pick("1", &["A", "B"], &w, now).as_deref(), Some("C001"));
        // Another desk does not take a ticket transferred to desk 1.
        assert_eq!(pick("2", &["C"], &[transferred], now), None);
    }

    #[test]
    fn a_transfer_keeps_the_waiting_time() {
        let now = 100 * MIN;
        // Moved from service A to B: it keeps queued_since, so it goes
        // ahead of B's newer tickets.
        let moved = t("A007", "B", now - 25 * MIN);
        let w = vec![t("B001", "B", now - 10 * MIN), moved];
        assert_eq!(pick("1", &["B"], &w, now).as_deref(), Some("A007"));
    }

    /// One desk serving A (first) and B, over a day where A alone would
    /// keep it busy: B is still served, and no visitor of either waits far
    /// beyond the max wait.
    #[test]
    fn no_service_starves_over_a_simulated_day() {
        let service_time = 4 * MIN;
        let day = 8 * 60 * MIN;
        let mut arrivals: Vec<Waiting> = Vec::new();
        for i in 0..day / (5 * MIN) {
            arrivals.push(t(&format!("A{i:03}"), "A", i * 5 * MIN));
        }
        for i in 0..day / (15 * MIN) {
            arrivals.push(t(&format!("B{i:03}"), "B", i * 15 * MIN + 1));
        }
        arrivals.sort_by_key(|w| w.queued_since);
        let desks = svc(&["A", "B"]);
        let (mut waiting, mut next_arrival) = (Vec::<Waiting>::new(), 0);
        let (mut now, mut served) = (0, Vec::<(String, i64)>::new());
        while now < day + 6 * 60 * MIN && served.len() < arrivals.len() {
            while next_arrival < arrivals.len() && arrivals[next_arrival].queued_since <= now {
                waiting.push(arrivals[next_arrival].clone());
                next_arrival += 1;
            }
            match pick_next("1", &desks, &waiting, targets, RULES, now).cloned() {
                Some(w) => {
                    served.push((w.service.clone(), now - w.queued_since));
                    waiting.retain(|x| x.id != w.id);
                    now += service_time;
                }
                None => now += MIN,
            }
        }
        let max_wait = |s: &str| {
            served
                .iter()
                .filter(|(x, _)| x == s)
                .map(|(_, w)| *w)
                .max()
                .unwrap_or(0)
        };
        let count = |s: &str| served.iter().filter(|(x, _)| x == s).count();
        assert_eq!(
            count("B"),
            arrivals.iter().filter(|a| a.service == "B").count(),
            "every B visitor served"
        );
        assert_eq!(
            count("A"),
            arrivals.iter().filter(|a| a.service == "A").count(),
            "every A visitor served"
        );
        // The desk is overloaded (A alone fills 80 % of it), so waits
        // grow; but B, the second preference, is never left behind A.
        assert!(
            max_wait("B") <= max_wait("A") + service_time,
            "B {} min vs A {} min",
            max_wait("B") / MIN,
            max_wait("A") / MIN
        );
        // While the desk keeps up (first two hours), nobody passes max_wait + one service.
        let early: Vec<_> = served.iter().take(20).collect();
        assert!(
            early.iter().all(|(_, w)| *w <= 30 * MIN + service_time),
            "{early:?}"
        );
    }

    /// The example: equal targets, a desk serving B second. B at
    /// 60 min is further past its limit than A at 31 min, so B goes first
    /// whatever the preference; a priority boost counts in escalation too.
    #[test]
    fn escalated_tickets_go_by_how_far_past_their_limit_they_are() {
        let now = 100 * MIN;
        let a = t("A001", "A", now - 31 * MIN);
        let b = t("B001", "B", now - 60 * MIN);
        let w = vec![a.clone(), b.clone()];
        assert_eq!(pick("1", &["A", "B"], &w, now).as_deref(), Some("B001"));
        // Different limits: A (max 30) at 40 min is 10 past; B (max 60,
        // below) at 65 is 5 past: A first although B waited longer.
        let limits = |s: &str| Targets {
            target_wait: 10 * MIN,
            max_wait: if s == "A" { 30 * MIN } else { 60 * MIN },
        };
        let w = vec![
            t("A001", "A", now - 40 * MIN),
            t("B001", "B", now - 65 * MIN),
        ];
        let got = pick_next("1", &svc(&["B", "A"]), &w, limits, RULES, now);
        assert_eq!(got.map(|w| w.id.as_str()), Some("A001"));
        // A priority visitor (boost 15 min) at 20 min has counted 35: it
        // is escalated, and goes before a plain one 2 min past the limit.
        let mut p = t("A002", "A", now - 20 * MIN);
        p.boost = 15 * MIN;
        assert!(escalated(&p, targets("A"), now));
        let w = vec![t("A001", "A", now - 32 * MIN), p];
        assert_eq!(pick("1", &["A"], &w, now).as_deref(), Some("A002"));
    }

    /// A ticket transferred to desk 2 is desk 2's alone for
    /// `transfer_max_wait`; then any desk serving its service may call it,
    /// and being past its limit it goes first there.
    #[test]
    fn a_transfer_nobody_calls_returns_to_its_queue_after_its_own_limit() {
        let now = 100 * MIN;
        let mut moved = t("A007", "A", now - 25 * MIN);
        moved.assigned_desk = Some("2".into());
        moved.transferred_at = Some(now - 5 * MIN);
        let w = vec![t("A010", "A", now - 2 * MIN), moved.clone()];
        assert_eq!(pick("1", &["A"], &w, now).as_deref(), Some("A010"));
        assert_eq!(pick("2", &["B"], &w, now).as_deref(), Some("A007"));
        // 11 min after the transfer (limit 10): desk 1 takes it, first.
        let later = now + 6 * MIN;
        assert_eq!(pick("1", &["A"], &w, later).as_deref(), Some("A007"));
        // A transfer whose time is unknown (made by an older release)
        // counts as just made.
        moved.transferred_at = None;
        let w = vec![moved];
        assert_eq!(pick("1", &["A"], &w, later), None);
    }

    /// Simulated days (random arrivals and service times, three desks
    /// sharing A and B with different targets and limits): every visitor
    /// is called, and nobody waits longer than their service's `max_wait`
    /// plus one service time while a desk serving it is open.
    #[test]
    fn over_simulated_days_nobody_waits_past_max_wait_plus_one_service() {
        for seed in 1..=20 {
            let day = sim::typical_day(seed);
            let visits = sim::run(&day);
            assert!(visits.len() > 100, "seed {seed}: {} visitors", visits.len());
            let longest_service = day
                .services
                .iter()
                .map(|s| s.service_time * 3 / 2)
                .max()
                .unwrap();
            for v in &visits {
                let waited = v
                    .waited()
                    .unwrap_or_else(|| panic!("seed {seed}: {} never called", v.id));
                let limit = targets_of(&day, &v.service).max_wait + longest_service;
                assert!(
                    waited <= limit,
                    "seed {seed}: {} waited {} min (limit {} min)",
                    v.id,
                    waited / MIN,
                    limit / MIN
                );
            }
        }
    }

    /// The same days with escalation switched off (limits out of reach,
    /// so the desks' preference alone decides) break the bound: the test
    /// above can fail, and escalation is what keeps the promise.
    #[test]
    fn without_escalation_the_same_days_break_the_bound() {
        let mut worst = 0;
        for seed in 1..=20 {
            let day = sim::typical_day(seed);
            let longest_service = day
                .services
                .iter()
                .map(|s| s.service_time * 3 / 2)
                .max()
                .unwrap();
            let mut lax = day.clone();
            for s in &mut lax.services {
                s.targets.max_wait = i64::MAX / 4;
            }
            for v in sim::run(&lax) {
                let limit = targets_of(&day, &v.service).max_wait + longest_service;
                worst = worst.max(v.waited().unwrap_or(i64::MAX / 4) - limit);
            }
        }
        assert!(
            worst > 0,
            "without escalation someone should wait past max_wait + one service"
        );
    }

    fn targets_of(day: &sim::Day, service: &str) -> Targets {
        day.services
            .iter()
            .find(|s| s.prefix == service)
            .unwrap()
            .targets
    }

    #[test]
    fn the_estimate_shares_desks_by_work_and_says_nothing_without_a_desk() {
        let st = |_: &str| 5 * MIN;
        let a_b = svc(&["A", "B"]);
        let only_a = svc(&["A"]);
        let only_b = svc(&["B"]);
        // Two desks serving A only, 4 ahead: (4 + ½) × 5 min / 2.
        let desks = [only_a.as_slice(), only_a.as_slice()];
        let est = estimate_wait("A", 4, &desks, |_| 5, st);
        assert_eq!(est, Some(45 * MIN / 4));
        // One desk shared with B, which has as much work waiting: half a desk.
        let desks = [a_b.as_slice()];
        let est = estimate_wait("A", 4, &desks, |_| 5, st);
        assert_eq!(est, Some(45 * MIN));
        // Nobody waits for B: the whole desk.
        let est = estimate_wait("A", 4, &desks, |s| usize::from(s == "A") * 5, st);
        assert_eq!(est, Some(45 * MIN / 2));
        // No open desk serves A: no promise.
        let desks = [only_b.as_slice()];
        assert_eq!(estimate_wait("A", 50, &desks, |_| 5, st), None);
        assert_eq!(estimate_wait("A", 0, &[], |_| 0, st), None);
    }

    /// The kiosk's promise over simulated days: within 25 % of the actual
    /// wait on average for visitors with at least 5 before them
    /// (`bench/ticketing-queue` prints the figures).
    #[test]
    fn the_estimate_is_within_a_quarter_of_the_actual_wait_on_simulated_days() {
        let visits: Vec<sim::Visit> = (1..=20)
            .flat_map(|s| sim::run(&sim::typical_day(s)))
            .collect();
        let e = sim::estimate_error(&visits, 5);
        assert!(e.visitors > 50, "{e:?}");
        assert!(e.relative() <= 0.25, "{e:?}: {:.0} %", e.relative() * 100.0);
    }
}
