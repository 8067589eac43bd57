//! A branch day played with the queue rules: visitors arrive at random
//! (a Poisson process per service), desks call by [`pick_next`] and serve
//! for a random time around their service's mean, and every visitor's
//! estimate at the kiosk ([`estimate_wait`], fed as the service feeds it:
//! waiting counts, open desks, the mean of the service's last 20 visits) is
//! kept beside the wait they got. The queue tests check the rules' promises
//! on such days; `bench/ticketing-queue` reports the estimate's error.
//! Deterministic for a seed.

use super::{estimate_wait, pick_next, Rules, Targets, Waiting};
use crate::calendar::Millis;
use std::collections::{HashMap, VecDeque};

const SECOND: Millis = 1000;

/// A service of the simulated branch.
#[derive(Debug, Clone)]
pub struct Service {
    pub prefix: String,
    pub targets: Targets,
    /// Mean service time (ms); each visit takes 0.5 to 1.5 times it.
    pub service_time: i64,
    /// Mean arrivals per hour.
    pub per_hour: f64,
}

/// A desk: its services in order of preference, and when it is open.
#[derive(Debug, Clone)]
pub struct Desk {
    pub id: String,
    pub services: Vec<String>,
    pub open: (Millis, Millis),
}

#[derive(Debug, Clone)]
pub struct Day {
    pub services: Vec<Service>,
    pub desks: Vec<Desk>,
    pub rules: Rules,
    /// Visitors arrive during `[0, length)`; desks go on until the queue
    /// is empty or they close.
    pub length: Millis,
    pub seed: u64,
}

/// One visitor's day.
#[derive(Debug, Clone, PartialEq)]
pub struct Visit {
    pub id: String,
    pub service: String,
    pub issued_at: Millis,
    /// Visitors of the same service before them at the kiosk.
    pub ahead: usize,
    /// What the kiosk promised (ms); `None`: no desk open for the service.
    pub estimate: Option<i64>,
    pub called_at: Option<Millis>,
    pub desk: Option<String>,
    /// How long the visit at the desk took (ms).
    pub service_time: i64,
}

impl Visit {
    pub fn waited(&self) -> Option<i64> {
        Some(self.called_at? - self.issued_at)
    }
}

/// SplitMix64: a small, well-known generator; plenty for a simulation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Exponential with mean `mean`.
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

/// Plays `day`, one second at a time; every visitor who arrived, in order
/// of arrival.
pub fn run(day: &Day) -> Vec<Visit> {
    let mut rng = Rng(day.seed);
    // Arrivals, drawn up front per service.
    let mut arrivals: Vec<(Millis, usize)> = Vec::new();
    for (i, s) in day.services.iter().enumerate() {
        let mean_gap = 3_600_000.0 / s.per_hour;
        let mut t = rng.exp(mean_gap);
        while (t as Millis) < day.length {
            arrivals.push((t as Millis / SECOND * SECOND, i));
            t += rng.exp(mean_gap);
        }
    }
    arrivals.sort();
    let targets = |p: &str| {
        day.services
            .iter()
            .find(|s| s.prefix == p)
            .map(|s| s.targets)
            .expect("a service of the day")
    };
    let mut visits: Vec<Visit> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut waiting: Vec<Waiting> = Vec::new();
    let mut busy_until: Vec<Millis> = vec![0; day.desks.len()];
    let mut recent: HashMap<String, VecDeque<i64>> = HashMap::new();
    let mut next = 0;
    let mut now: Millis = 0;
    let last_close = day.desks.iter().map(|d| d.open.1).max().unwrap_or(0);
    while now < last_close && (next < arrivals.len() || !waiting.is_empty() || now < day.length) {
        while next < arrivals.len() && arrivals[next].0 <= now {
            let s = &day.services[arrivals[next].1];
            let id = format!("{}{:04}", s.prefix, visits.len());
            let open: Vec<&[String]> = day
                .desks
                .iter()
                .filter(|d| (d.open.0..d.open.1).contains(&now))
                .map(|d| d.services.as_slice())
                .collect();
            let count = |p: &str| waiting.iter().filter(|w| w.service == p).count();
            let mean = |p: &str| {
                recent.get(p).filter(|r| !r.is_empty()).map_or_else(
                    || {
                        day.services
                            .iter()
                            .find(|x| x.prefix == p)
                            .map_or(1, |x| x.service_time)
                    },
                    |r| r.iter().sum::<i64>() / r.len() as i64,
                )
            };
            let ahead = count(&s.prefix);
            let estimate = estimate_wait(&s.prefix, ahead, &open, count, mean);
            let service_time = (s.service_time as f64 * (0.5 + rng.unit())) as i64;
            index.insert(id.clone(), visits.len());
            visits.push(Visit {
                id: id.clone(),
                service: s.prefix.clone(),
                issued_at: now,
                ahead,
                estimate,
                called_at: None,
                desk: None,
                service_time,
            });
            waiting.push(Waiting {
                id,
                number: visits.len() as i64,
                service: s.prefix.clone(),
                queued_since: now,
                boost: 0,
                booking_slot: None,
                assigned_desk: None,
                transferred_at: None,
            });
            next += 1;
        }
        for (d, desk) in day.desks.iter().enumerate() {
            if busy_until[d] > now || !(desk.open.0..desk.open.1).contains(&now) {
                continue;
            }
            let Some(w) = pick_next(&desk.id, &desk.services, &waiting, targets, day.rules, now)
            else {
                continue;
            };
            let id = w.id.clone();
            waiting.retain(|x| x.id != id);
            let v = &mut visits[index[&id]];
            v.called_at = Some(now);
            v.desk = Some(desk.id.clone());
            busy_until[d] = now + v.service_time;
            let r = recent.entry(v.service.clone()).or_default();
            r.push_back(v.service_time);
            if r.len() > 20 {
                r.pop_front();
            }
        }
        now += SECOND;
    }
    visits
}

/// How well the kiosk's estimates matched, over the visitors who had at
/// least `min_ahead` before them and were called.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EstimateError {
    pub visitors: usize,
    /// Mean absolute error (ms).
    pub mean_absolute_error: f64,
    /// Mean actual wait (ms).
    pub mean_wait: f64,
}

impl EstimateError {
    /// The mean absolute error as a share of the mean actual wait.
    pub fn relative(&self) -> f64 {
        if self.mean_wait > 0.0 {
            self.mean_absolute_error / self.mean_wait
        } else {
            0.0
        }
    }
}

pub fn estimate_error(visits: &[Visit], min_ahead: usize) -> EstimateError {
    let pairs: Vec<(f64, f64)> = visits
        .iter()
        .filter(|v| v.ahead >= min_ahead)
        .filter_map(|v| Some((v.estimate? as f64, v.waited()? as f64)))
        .collect();
    let n = pairs.len().max(1) as f64;
    EstimateError {
        visitors: pairs.len(),
        mean_absolute_error: pairs.iter().map(|(e, a)| (e - a).abs()).sum::<f64>() / n,
        mean_wait: pairs.iter().map(|(_, a)| a).sum::<f64>() / n,
    }
}

/// A branch like the demo's: three desks sharing A (ID cards) and B
/// (passports), A and B with different targets, open eight hours; the
/// desks keep up on average (80 % busy: 14 A an hour at 6 min, 5 B at
/// 12 min, for three desks).
pub fn typical_day(seed: u64) -> Day {
    const MIN: i64 = 60_000;
    let svc = |prefix: &str, target: i64, max: i64, st: i64, per_hour: f64| Service {
        prefix: prefix.into(),
        targets: Targets {
            target_wait: target * MIN,
            max_wait: max * MIN,
        },
        service_time: st * MIN,
        per_hour,
    };
    let desk = |id: &str, services: &[&str]| Desk {
        id: id.into(),
        services: services.iter().map(|s| s.to_string()).collect(),
        open: (0, 10 * 60 * MIN),
    };
    Day {
        services: vec![svc("A", 10, 30, 6, 14.0), svc("B", 20, 45, 12, 5.0)],
        desks: vec![
            desk("1", &["A", "B"]),
            desk("2", &["B", "A"]),
            desk("3", &["A"]),
        ],
        rules: Rules {
            booking_window: 15 * MIN,
            transfer_max_wait: 10 * MIN,
        },
        length: 8 * 60 * MIN,
        seed,
    }
}
