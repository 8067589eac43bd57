//! The queue rules, apart from storage and time: which waiting ticket a
//! desk calls next, and how long a visitor is likely to wait.
//!
//! A desk calls, among the tickets it may serve, the one with the highest
//! `(class, score)`:
//!
//! | class | tickets |
//! | --- | --- |
//! | 3 | transferred to this very desk |
//! | 2 | escalated: waiting longer than their service's `max_wait` |
//! | 1 | a checked-in booking inside the window around its slot |
//! | 0 | everyone else |
//!
//! `score = (waited + priority boost) / service target × preference`,
//! where preference is 1 for the desk's first service, 1/2 for its second,
//! 1/3 for the third and so on. Because the score of a waiting ticket grows
//! without bound while it waits, a desk's later services are served too,
//! only later (fair interleaving, no starvation); `max_wait` escalation
//! bounds the wait of every ticket once its service's limit is reached.
//! Ties go to the ticket that has waited longest.

use crate::calendar::Millis;

/// A waiting ticket, as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub id: String,
    pub service: String,
    /// Since when it waits (kept across a transfer).
    pub queued_since: Millis,
    /// Extra waiting time its priority group counts for (ms).
    pub boost: i64,
    /// The slot of the booking it was checked in for.
    pub booking_slot: Option<Millis>,
    /// A desk it was transferred to.
    pub assigned_desk: Option<String>,
}

/// A service's waiting-time rules (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Targets {
    pub target_wait: i64,
    pub max_wait: i64,
}

/// Picks the ticket `desk` calls next among `waiting`. `services` lists
/// what the desk serves, in its order of preference; `targets(service)`
/// gives a service's rules; `window` is the booking window (ms either side
/// of the slot).
pub fn pick_next<'a>(
    desk: &str,
    services: &[String],
    waiting: &'a [Waiting],
    targets: impl Fn(&str) -> Targets,
    window: i64,
    now: Millis,
) -> Option<&'a Waiting> {
    let rank = |w: &Waiting| -> Option<(u8, f64)> {
        let waited = (now - w.queued_since).max(0);
        let t = targets(&w.service);
        let pref = services.iter().position(|s| *s == w.service);
        let in_window = |slot: Millis| (slot - window..=slot + window).contains(&now);
        let class = match (&w.assigned_desk, pref) {
            (Some(d), _) if d == desk => 3,
            (Some(_), _) | (None, None) => return None,
            _ if waited > t.max_wait => 2,
            _ if w.booking_slot.is_some_and(in_window) => 1,
            _ => 0,
        };
        let preference = (pref.unwrap_or(0) + 1) as f64;
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
                .then(b.id.cmp(&a.id))
        })
        .map(|(_, w)| w)
}

/// Estimated wait (ms) for a visitor with `ahead` tickets before them in
/// their service, served by `open_desks` desks taking `service_time` each.
pub fn estimate_wait(ahead: usize, open_desks: usize, service_time: i64) -> i64 {
    let desks = open_desks.max(1);
    let rounds = ahead.div_ceil(desks) as i64;
    rounds * service_time
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn t(id: &str, service: &str, queued_since: Millis) -> Waiting {
        Waiting {
            id: id.into(),
            service: service.into(),
            queued_since,
            boost: 0,
            booking_slot: None,
            assigned_desk: None,
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

    fn pick(desk: &str, services: &[&str], w: &[Waiting], now: Millis) -> Option<String> {
        pick_next(desk, &svc(services), w, targets, 15 * MIN, now).map(|w| w.id.clone())
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
            match pick_next("1", &desks, &waiting, targets, 15 * MIN, now).cloned() {
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

    #[test]
    fn the_estimate_counts_rounds_of_the_open_desks() {
        assert_eq!(estimate_wait(0, 2, 5 * MIN), 0);
        assert_eq!(estimate_wait(1, 2, 5 * MIN), 5 * MIN);
        assert_eq!(estimate_wait(4, 2, 5 * MIN), 10 * MIN);
        assert_eq!(estimate_wait(5, 2, 5 * MIN), 15 * MIN);
        assert_eq!(
            estimate_wait(3, 0, 5 * MIN),
            15 * MIN,
            "no desk open: as if one"
        );
    }
}
