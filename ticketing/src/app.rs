//! The service's shared state and the views every surface shows: what a
//! kiosk prints, what a tracking page, a board and a desk see, and the
//! branch statistics. Views are computed from the store, so both twins
//! show the same thing. Every view is of the branch's current local day,
//! by the app's [`Clock`] (the system's, or one a test sets).

use crate::calendar::{day_of, now_ms, Millis};
use crate::config::{Branch, Config, Tokens};
use crate::metrics::Metrics;
use crate::queue;
use crate::store::{Store, StoreError, Ticket};
pub use crate::views::TicketView;
use crate::views::{
    BoardCall, BoardView, BranchView, DeskQueue, DeskServices, DeskView, HourStats,
    PriorityGroupView, ServiceName, ServiceQueue, ServiceStats, StatsView,
};
use chrono::{TimeZone, Timelike};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use twinport_ops::config::ConfigError;

/// Where the app reads the time: the system clock, or a fixed moment a
/// test moves.
#[derive(Debug, Default)]
pub struct Clock(Option<AtomicI64>);

impl Clock {
    pub fn system() -> Clock {
        Clock(None)
    }

    pub fn fixed(at: Millis) -> Clock {
        Clock(Some(AtomicI64::new(at)))
    }

    pub fn now(&self) -> Millis {
        match &self.0 {
            Some(t) => t.load(Ordering::Relaxed),
            None => now_ms(),
        }
    }

    /// Moves a fixed clock (a system clock ignores it).
    pub fn set(&self, at: Millis) {
        if let Some(t) = &self.0 {
            t.store(at, Ordering::Relaxed);
        }
    }
}

/// How often, at most, a scrape reads the gauges from the store.
pub const GAUGE_REFRESH: Duration = Duration::from_secs(1);

pub struct App {
    pub config: Config,
    pub clock: Clock,
    /// The branches' tokens: from the config at start, re-read on SIGHUP.
    pub tokens: arc_swap::ArcSwap<BTreeMap<String, Tokens>>,
    pub store: Store,
    pub metrics: Metrics,
    /// Per branch: a message after every change seen in the store.
    pub changes: HashMap<String, broadcast::Sender<()>>,
    /// Ticket requests per (branch, kiosk address) in the current second.
    pub kiosk_rate: pingora_limits::rate::Rate,
    /// When the gauges were last read from the store.
    gauges_read: tokio::sync::Mutex<Option<Instant>>,
}

fn rfc3339(ms: Millis) -> String {
    chrono::Utc
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

impl App {
    pub fn new(config: Config, store: Store, clock: Clock) -> App {
        let changes = config
            .branches
            .keys()
            .map(|b| (b.clone(), broadcast::channel(16).0))
            .collect::<HashMap<_, _>>();
        let metrics = Metrics::new(&config.node);
        for b in config.branches.values() {
            metrics.init_branch(b);
        }
        App {
            tokens: arc_swap::ArcSwap::from_pointee(App::tokens_of(&config)),
            kiosk_rate: pingora_limits::rate::Rate::new(Duration::from_secs(1)),
            gauges_read: tokio::sync::Mutex::new(None),
            metrics,
            store,
            changes,
            clock,
            config,
        }
    }

    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// The branch-local day now.
    pub fn today(&self, b: &Branch) -> String {
        day_of(b.tz, self.now())
    }

    pub fn branch(&self, id: &str) -> Result<&Branch, StoreError> {
        self.config
            .branches
            .get(id)
            .ok_or_else(|| StoreError::NotFound(format!("no branch `{id}`")))
    }

    /// The kiosk's address: the peer, or the `X-Real-IP` a trusted proxy
    /// (the gateway) set.
    pub fn client(&self, peer: std::net::IpAddr, real_ip: Option<&str>) -> std::net::IpAddr {
        let trusted = twinport_ops::net::trusted(peer, &self.config.trusted_proxies);
        match real_ip.and_then(|v| v.trim().parse().ok()) {
            Some(ip) if trusted => ip,
            _ => peer,
        }
    }

    /// Counts one ticket request of `client` in `branch`; false when over
    /// `kiosk_rate_limit` per second.
    pub fn kiosk_allowed(&self, branch: &str, client: std::net::IpAddr) -> bool {
        let limit = self.config.kiosk_rate_limit;
        limit == 0 || self.kiosk_rate.observe(&(branch, client), 1) <= limit as isize
    }

    /// Every branch's tokens, as the config holds them.
    pub fn tokens_of(config: &Config) -> BTreeMap<String, Tokens> {
        config
            .branches
            .iter()
            .map(|(id, b)| (id.clone(), b.tokens.clone()))
            .collect()
    }

    /// Re-reads the token files named by the config file at `path`
    /// (SIGHUP). The file is validated whole first; if it is invalid,
    /// nothing changes. Settings other than tokens are not applied: the
    /// answer says whether any differ from those running (they take effect
    /// at the next restart).
    pub fn reload_tokens(&self, path: &std::path::Path) -> Result<bool, ConfigError> {
        let new = crate::config::load(path)?;
        // Debug output leaves token contents out (Tokens redacts them).
        let settings = |c: &Config| {
            format!(
                "{} {} {:?} {} {} {} {:?} {:?} {} {:?}",
                c.node,
                c.listen,
                c.metrics_listen,
                c.database,
                c.max_connections,
                c.public_url,
                c.idempotency_retention,
                c.trusted_proxies,
                c.kiosk_rate_limit,
                c.branches
            )
        };
        let other_changes = settings(&new) != settings(&self.config);
        let mut tokens = Self::tokens_of(&self.config);
        for (id, t) in Self::tokens_of(&new) {
            // A branch added in the file needs a restart, like any setting.
            if let Some(slot) = tokens.get_mut(&id) {
                *slot = t;
            }
        }
        self.tokens.store(std::sync::Arc::new(tokens));
        Ok(other_changes)
    }

    /// Mean service time (ms) per service of `b`: measured today, else
    /// configured.
    async fn service_times(&self, b: &Branch) -> Result<HashMap<String, i64>, StoreError> {
        let day = self.today(b);
        let mut times = HashMap::new();
        for s in &b.services {
            let t = self
                .store
                .recent_service_time(&b.id, &s.prefix, &day)
                .await?
                .unwrap_or(s.service_time.as_millis() as i64);
            times.insert(s.prefix.clone(), t);
        }
        Ok(times)
    }

    /// What the wait estimates of `b` need now: the open desks' services,
    /// the waiting counts and the service times.
    async fn workload(&self, b: &Branch) -> Result<Workload, StoreError> {
        let open = self.store.open_desks(&b.id).await?;
        Ok(Workload {
            desks: b
                .desks
                .iter()
                .filter(|d| open.contains(&d.id))
                .map(|d| d.services.clone())
                .collect(),
            waiting: self.store.waiting_counts(&b.id, &self.today(b)).await?,
            service_times: self.service_times(b).await?,
        })
    }

    pub async fn ticket_view(&self, t: &Ticket) -> Result<TicketView, StoreError> {
        let b = self.branch(&t.branch)?;
        let s = b
            .service(&t.service)
            .ok_or_else(|| StoreError::NotFound(format!("service {}", t.service)))?;
        let (position, wait) = if t.status == "waiting" {
            let ahead = self.store.ahead_of(t).await?;
            let w = self.workload(b).await?;
            (ahead, w.estimate(&t.service, ahead))
        } else {
            (0, None)
        };
        Ok(TicketView {
            id: t.id.clone(),
            branch: t.branch.clone(),
            display: t.display.clone(),
            service: t.service.clone(),
            service_name: s.name.clone(),
            status: t.status.clone(),
            desk: t.desk.clone(),
            position,
            estimated_wait_seconds: wait,
            issued_at: rfc3339(t.issued_at),
            tracking_url: format!("{}/t/{}", self.config.public_url, t.id),
        })
    }

    /// What a kiosk shows before a touch: services with their queues (an
    /// estimate only where an open desk serves the service).
    pub async fn branch_view(&self, b: &Branch) -> Result<BranchView, StoreError> {
        let w = self.workload(b).await?;
        let services = b
            .services
            .iter()
            .map(|s| {
                let n = w.waiting_for(&s.prefix);
                ServiceQueue {
                    prefix: s.prefix.clone(),
                    name: s.name.clone(),
                    waiting: n,
                    desks_open: w.desks.iter().filter(|d| d.contains(&s.prefix)).count(),
                    estimated_wait_seconds: w.estimate(&s.prefix, n),
                    target_wait_seconds: s.target_wait.as_secs(),
                }
            })
            .collect();
        Ok(BranchView {
            id: b.id.clone(),
            name: b.name.clone(),
            time_zone: b.tz.name().to_string(),
            open: b.hours.is_open(b.tz, self.now()),
            services,
            priority_groups: b
                .priority_groups
                .iter()
                .map(|g| PriorityGroupView {
                    id: g.id.clone(),
                    name: g.name.clone(),
                })
                .collect(),
            desks: b
                .desks
                .iter()
                .map(|d| DeskServices {
                    id: d.id.clone(),
                    services: d.services.clone(),
                })
                .collect(),
        })
    }

    /// The display board: recent calls (no personal data: numbers and
    /// desks only) and how many wait per service.
    pub async fn board_view(&self, b: &Branch) -> Result<BoardView, StoreError> {
        let calls = self
            .store
            .recent_calls(&b.id, &self.today(b), 8)
            .await?
            .into_iter()
            .map(|t| BoardCall {
                display: t.display,
                desk: t.desk,
                called_at: t.called_at,
                recalls: t.recalls,
                status: t.status,
            })
            .collect();
        let waiting = self.store.waiting_counts(&b.id, &self.today(b)).await?;
        let waiting = b
            .services
            .iter()
            .map(|s| {
                let n = waiting.get(&s.prefix).copied().unwrap_or(0);
                (s.prefix.clone(), n)
            })
            .collect();
        Ok(BoardView {
            branch: b.id.clone(),
            name: b.name.clone(),
            calls,
            waiting,
        })
    }

    /// A desk's console: its current ticket and the queues it serves.
    pub async fn desk_view(&self, b: &Branch, desk: &str) -> Result<DeskView, StoreError> {
        let d = b.desk(desk).ok_or_else(|| {
            StoreError::NotFound(format!("no desk `{desk}` in branch `{}`", b.id))
        })?;
        let current = match self.store.current(&b.id, desk).await? {
            Some(t) => Some(self.ticket_view(&t).await?),
            None => None,
        };
        let waiting = self.store.waiting_counts(&b.id, &self.today(b)).await?;
        let queues = d
            .services
            .iter()
            .map(|s| DeskQueue {
                service: s.clone(),
                waiting: waiting.get(s).copied().unwrap_or(0),
            })
            .collect();
        let open = self.store.open_desks(&b.id).await?.contains(&d.id);
        Ok(DeskView {
            branch: b.id.clone(),
            desk: desk.to_string(),
            open,
            current,
            queues,
            transfer_services: b
                .services
                .iter()
                .map(|s| ServiceName {
                    prefix: s.prefix.clone(),
                    name: s.name.clone(),
                })
                .collect(),
            transfer_desks: b
                .desks
                .iter()
                .map(|x| x.id.clone())
                .filter(|x| x != desk)
                .collect(),
        })
    }

    /// Statistics of one branch-local day: per service and per hour.
    pub async fn stats_view(&self, b: &Branch, day: &str) -> Result<StatsView, StoreError> {
        let tickets = self.store.tickets_of_day(&b.id, day).await?;
        let mut services = Vec::new();
        for s in &b.services {
            // Issued counts where the number was given; the rest counts
            // where the visitor was called (after any transfer).
            let issued = tickets
                .iter()
                .filter(|t| t.number_service == s.prefix)
                .count();
            let mine: Vec<&Ticket> = tickets.iter().filter(|t| t.service == s.prefix).collect();
            let waits: Vec<i64> = mine
                .iter()
                .filter_map(|t| Some(t.called_at? - t.queued_since))
                .collect();
            let unserved: Vec<&&Ticket> =
                mine.iter().filter(|t| t.status == "not_served").collect();
            // A visitor not served waited until called, or until the day ended.
            let unserved_waits: Vec<i64> = unserved
                .iter()
                .filter_map(|t| Some(t.called_at.or(t.finished_at)? - t.queued_since))
                .collect();
            let served: Vec<i64> = mine
                .iter()
                .filter(|t| t.status == "done")
                .filter_map(|t| Some(t.finished_at? - t.started_at?))
                .collect();
            let target = s.target_wait.as_millis() as i64;
            let mean = |v: &[i64]| {
                if v.is_empty() {
                    None
                } else {
                    Some(v.iter().sum::<i64>() / v.len() as i64 / 1000)
                }
            };
            services.push(ServiceStats {
                service: s.prefix.clone(),
                name: s.name.clone(),
                issued,
                served: mine.iter().filter(|t| t.status == "done").count(),
                no_shows: mine.iter().filter(|t| t.status == "no_show").count(),
                not_served: unserved.len(),
                not_served_mean_wait_seconds: mean(&unserved_waits),
                waiting_now: mine.iter().filter(|t| t.status == "waiting").count(),
                mean_wait_seconds: mean(&waits),
                max_wait_seconds: waits.iter().max().map(|w| w / 1000),
                mean_service_seconds: mean(&served),
                within_target_share: if waits.is_empty() {
                    None
                } else {
                    Some(waits.iter().filter(|w| **w <= target).count() as f64 / waits.len() as f64)
                },
                target_wait_seconds: s.target_wait.as_secs(),
            });
        }
        let mut hours: BTreeMap<u32, (usize, usize, usize)> = BTreeMap::new();
        for t in &tickets {
            let h =
                b.tz.timestamp_millis_opt(t.issued_at)
                    .single()
                    .map(|x| x.hour())
                    .unwrap_or(0);
            hours.entry(h).or_default().0 += 1;
            if t.status == "no_show" {
                hours.entry(h).or_default().1 += 1;
            }
            if t.status == "not_served" {
                hours.entry(h).or_default().2 += 1;
            }
        }
        let per_hour = hours
            .into_iter()
            .map(|(hour, (issued, no_shows, not_served))| HourStats {
                hour,
                issued,
                no_shows,
                not_served,
            })
            .collect();
        let closed = self.store.day_closed(&b.id, day).await?;
        Ok(StatsView {
            branch: b.id.clone(),
            day: day.to_string(),
            closed,
            services,
            per_hour,
        })
    }

    /// Reads the gauges of every branch from the store (waiting visitors
    /// and the longest wait per service, open desks), at most once per
    /// [`GAUGE_REFRESH`] however often Prometheus scrapes.
    pub async fn refresh_gauges(&self) -> Result<(), StoreError> {
        let mut last = self.gauges_read.lock().await;
        if last.is_some_and(|t| t.elapsed() < GAUGE_REFRESH) {
            return Ok(());
        }
        *last = Some(Instant::now());
        for b in self.config.branches.values() {
            self.refresh_branch_gauges(b).await?;
        }
        Ok(())
    }

    async fn refresh_branch_gauges(&self, b: &Branch) -> Result<(), StoreError> {
        let day = self.today(b);
        let waiting = self.store.waiting_counts(&b.id, &day).await?;
        let oldest = self.store.oldest_waiting(&b.id, &day).await?;
        let now = self.now();
        for s in &b.services {
            let l = [b.id.as_str(), s.prefix.as_str()];
            let n = waiting.get(&s.prefix).copied().unwrap_or(0);
            self.metrics.waiting.with_label_values(&l).set(n as i64);
            let longest = oldest
                .get(&s.prefix)
                .map(|since| (now - since).max(0) / 1000)
                .unwrap_or(0);
            self.metrics.longest_wait.with_label_values(&l).set(longest);
        }
        let open = self.store.open_desks(&b.id).await?.len();
        self.metrics
            .desks_open
            .with_label_values(&[&b.id])
            .set(open as i64);
        Ok(())
    }

    /// Closes every branch's day that has ended and is still open (see
    /// [`crate::store::day`]); counts and logs what a close did.
    pub async fn close_ended_days(&self) -> Result<(), StoreError> {
        let retention = self.config.idempotency_retention.as_millis() as i64;
        for b in self.config.branches.values() {
            if let Some(c) = self.store.close_ended_day(b, retention, self.now()).await? {
                tracing::info!(
                    branch = %b.id, day = %c.day, not_served = c.not_served,
                    desks_closed = c.desks_closed, keys_purged = c.keys_purged,
                    "closed the branch day"
                );
                self.metrics.day_closes.with_label_values(&[&b.id]).inc();
                self.metrics
                    .not_served
                    .with_label_values(&[&b.id])
                    .inc_by(c.not_served);
            }
        }
        Ok(())
    }
}

/// What the open desks of a branch have to do now, for wait estimates.
struct Workload {
    /// The services of each open desk.
    desks: Vec<Vec<String>>,
    waiting: HashMap<String, usize>,
    service_times: HashMap<String, i64>,
}

impl Workload {
    fn waiting_for(&self, service: &str) -> usize {
        self.waiting.get(service).copied().unwrap_or(0)
    }

    /// Estimated wait (s) with `ahead` before; `None` with no desk open.
    fn estimate(&self, service: &str, ahead: usize) -> Option<i64> {
        let desks: Vec<&[String]> = self.desks.iter().map(|d| d.as_slice()).collect();
        queue::estimate_wait(
            service,
            ahead,
            &desks,
            |s| self.waiting_for(s),
            |s| self.service_times.get(s).copied().unwrap_or(1),
        )
        .map(|ms| ms / 1000)
    }
}
