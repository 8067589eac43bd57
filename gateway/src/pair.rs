//! The gateway pair: one operator state for both gateways.
//!
//! Two gateway hosts share a virtual IP (keepalived, VRRP); whichever holds
//! it serves. What an operator decides — a drain, maintenance, the chosen
//! primary — must hold on both, and survive the restart of either, or a
//! move of the VIP would send traffic to a node drained for an upgrade.
//!
//! ```text
//!  admin API ─▶ Controller ─▶ OperatorState ─┬─▶ state file (atomic rename, fsync)
//!               ▲   (one entry per key,      └─▶ sync task ── HTTPS, mutual TLS, bearer ──▶ peer
//!               │    newest version wins)                     POST /v1/pair/state
//!               └──────────── the peer's answer: its state, merged ◀──┘
//! ```
//!
//! Design, against the anchors: HAProxy's `peers` pushes each stick-table
//! update over a dedicated TCP link and resends everything when a peer
//! reconnects; nginx Plus's `zone_sync` streams zone changes to every node
//! over (optionally mutual) TLS. Both exist for tables that change
//! thousands of times a second. Ours changes a few times a day and has a
//! handful of keys, so the whole state goes each way on every exchange:
//! there is no resend logic to get wrong, a peer that missed anything has
//! it after one exchange, and a restarted gateway asks before it serves.
//! The link is the admin API's own listener (HTTPS with the peer's client
//! certificate checked, as any remote admin call) with a token of its own
//! that allows nothing but this exchange. `twinctl` fanning out to both
//! gateways was rejected as the only mechanism: a gateway that was down
//! during the change would never learn it.
//!
//! Every key holds one [`Entry`] stamped with a Lamport version (greater
//! than any the writer had seen) and its origin; a merge keeps, per key,
//! the entry with the greater `(version, origin)`, so both sides reach the
//! same state whatever the order of exchanges (last writer wins, per key).
//! A switchover is the one change two gateways must not make apart (the
//! twins would get two primaries): it is refused while the peer cannot be
//! reached, unless forced.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// The key of node `name`'s operator state.
pub fn node_key(name: &str) -> String {
    format!("node/{name}")
}

/// The key of node `name`'s operator weight (`config`: none).
pub fn weight_key(name: &str) -> String {
    format!("weight/{name}")
}

/// The key of the operator's chosen primary.
pub const PRIMARY_KEY: &str = "primary";

/// The operator's state of the pair: key → newest entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorState {
    /// `node/<name>`: `active`, `drain`, `soft-drain` or `maintenance`;
    /// `weight/<name>`: an operator's weight, or `config`;
    /// `primary`: the name of the node an operator switched over to.
    pub entries: BTreeMap<String, Entry>,
}

/// One decision, and who made it when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub value: String,
    /// Greater than every version its writer had seen (a Lamport clock).
    pub version: u64,
    /// The gateway where the operator made it.
    pub origin: String,
    /// Wall-clock time of the change, for people; never compared.
    pub at: String,
}

impl Entry {
    fn supersedes(&self, other: &Entry) -> bool {
        (self.version, &self.origin) > (other.version, &other.origin)
    }
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot read the operator state {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("the operator state {path} is not valid: {reason} (move it away to start with every node active)")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot write the operator state {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

impl OperatorState {
    /// The highest version in the state.
    pub fn clock(&self) -> u64 {
        self.entries.values().map(|e| e.version).max().unwrap_or(0)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(|e| e.value.as_str())
    }

    /// Records a change made on this gateway (`origin`). A change is
    /// stamped with a new version even when the value is the same: the
    /// operator's latest word wins over a concurrent one on the peer.
    pub fn set(&mut self, key: &str, value: &str, origin: &str) {
        let entry = Entry {
            value: value.to_string(),
            version: self.clock() + 1,
            origin: origin.to_string(),
            at: crate::status::timestamp(SystemTime::now()),
        };
        self.entries.insert(key.to_string(), entry);
    }

    /// Takes every entry of `other` newer than ours; answers the keys
    /// whose value changed.
    pub fn merge(&mut self, other: &OperatorState) -> Vec<String> {
        let mut changed = Vec::new();
        for (key, theirs) in &other.entries {
            let take = self
                .entries
                .get(key)
                .is_none_or(|ours| theirs.supersedes(ours));
            if take {
                let old = self.entries.insert(key.clone(), theirs.clone());
                if old.is_none_or(|o| o.value != theirs.value) {
                    changed.push(key.clone());
                }
            }
        }
        changed
    }

    /// The state kept in `path`; none yet when the file does not exist.
    pub fn load(path: &Path) -> Result<OperatorState, StateFileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(StateFileError::Read {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })
            }
        };
        let file: StateFile = serde_json::from_str(&text).map_err(|e| StateFileError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if file.format != STATE_FORMAT {
            return Err(StateFileError::Invalid {
                path: path.to_path_buf(),
                reason: format!("format {} (this gateway reads {STATE_FORMAT})", file.format),
            });
        }
        Ok(file.state)
    }

    /// Writes the state to `path`: a temporary file beside it, synced,
    /// then renamed over it and the directory synced, so that a crash
    /// leaves the old state or the new, never half of one.
    pub fn save(&self, path: &Path) -> Result<(), StateFileError> {
        use std::io::Write;
        let fail = |e: std::io::Error| StateFileError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let dir = dir.unwrap_or(Path::new("."));
        let body = serde_json::to_vec_pretty(&StateFile {
            format: STATE_FORMAT,
            state: self.clone(),
        })
        .map_err(|e| fail(std::io::Error::other(e)))?;
        // Named after this process: during a binary upgrade two gateways
        // may write at once, each through its own file.
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&body).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(fail(e));
        }
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(fail)
    }
}

const STATE_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct StateFile {
    format: u32,
    state: OperatorState,
}

/// What keepalived last told this gateway (its notify hook).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Vrrp {
    /// No word from keepalived (not configured, or not yet).
    #[default]
    Unknown,
    Master,
    Backup,
    Fault,
    Stop,
}

impl Vrrp {
    pub const ALL: [Vrrp; 5] = [
        Vrrp::Unknown,
        Vrrp::Master,
        Vrrp::Backup,
        Vrrp::Fault,
        Vrrp::Stop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Vrrp::Unknown => "UNKNOWN",
            Vrrp::Master => "MASTER",
            Vrrp::Backup => "BACKUP",
            Vrrp::Fault => "FAULT",
            Vrrp::Stop => "STOP",
        }
    }

    pub fn parse(s: &str) -> Option<Vrrp> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// Where the last VRRP state is kept, beside the operator state file.
pub fn vrrp_file(state_file: &Path) -> PathBuf {
    state_file.with_extension("vrrp")
}

/// The VRRP state a previous process of this gateway was told last.
pub fn kept_vrrp(state_file: &Path) -> Option<Vrrp> {
    std::fs::read_to_string(vrrp_file(state_file))
        .ok()
        .and_then(|s| Vrrp::parse(&s))
}

/// One side of an exchange: what each gateway sends the other.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exchange {
    /// The sender's name in the pair.
    pub from: String,
    pub state: OperatorState,
    /// The twin the sender sends traffic to as primary (active-standby).
    pub primary: Option<String>,
    pub vrrp: Vrrp,
}

/// What this gateway knows of its peer, for the status and for the
/// switchover guard.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerView {
    pub name: Option<String>,
    pub url: String,
    /// The last exchange succeeded, within three sync intervals.
    pub reachable: bool,
    /// When the last exchange succeeded.
    pub last_exchange: Option<String>,
    pub last_error: Option<String>,
    /// The peer's primary and VRRP state as of the last exchange.
    pub primary: Option<String>,
    pub vrrp: Vrrp,
    /// Both hold the same operator state (as of the last exchange).
    pub same_state: Option<bool>,
}

/// The pair's live facts, shared by the controller, the sync task and the
/// admin API.
#[derive(Debug, Default)]
pub struct PairShared {
    pub vrrp: Mutex<Vrrp>,
    peer: Mutex<PeerView>,
    last_ok: Mutex<Option<tokio::time::Instant>>,
}

impl PairShared {
    pub fn vrrp(&self) -> Vrrp {
        *self.vrrp.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_vrrp(&self, v: Vrrp) {
        *self.vrrp.lock().unwrap_or_else(|e| e.into_inner()) = v;
        crate::metrics::metrics().set_vrrp(v);
    }

    /// The peer as last seen; `reachable` judged against `sync_interval`.
    pub fn peer(&self, sync_interval: std::time::Duration) -> PeerView {
        let mut v = self.peer.lock().unwrap_or_else(|e| e.into_inner()).clone();
        v.reachable = self.reachable(sync_interval);
        v
    }

    /// The last exchange succeeded, within the last three sync intervals.
    pub fn reachable(&self, sync_interval: std::time::Duration) -> bool {
        let last = *self.last_ok.lock().unwrap_or_else(|e| e.into_inner());
        last.is_some_and(|t| t.elapsed() <= 3 * sync_interval)
    }

    fn exchanged(&self, url: &str, theirs: &Exchange, ours: &OperatorState) {
        *self.last_ok.lock().unwrap_or_else(|e| e.into_inner()) = Some(tokio::time::Instant::now());
        crate::metrics::metrics()
            .pair_peer_up
            .with_label_values(&[url])
            .set(1);
        let mut p = self.peer.lock().unwrap_or_else(|e| e.into_inner());
        *p = PeerView {
            name: Some(theirs.from.clone()),
            url: url.to_string(),
            reachable: true,
            last_exchange: Some(crate::status::timestamp(SystemTime::now())),
            last_error: None,
            primary: theirs.primary.clone(),
            vrrp: theirs.vrrp,
            same_state: Some(&theirs.state == ours),
        };
    }

    fn failed(&self, url: &str, why: String) {
        // The last exchange failed: not reachable, however recent the one
        // before.
        *self.last_ok.lock().unwrap_or_else(|e| e.into_inner()) = None;
        crate::metrics::metrics()
            .pair_peer_up
            .with_label_values(&[url])
            .set(0);
        let mut p = self.peer.lock().unwrap_or_else(|e| e.into_inner());
        p.url = url.to_string();
        p.last_error = Some(why);
    }
}

/// Why an exchange with the peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("the peer {url} cannot be reached: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the peer {url} refused the exchange: HTTP {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
}

/// One exchange: sends ours, answers theirs (already merged with ours by
/// the peer).
pub async fn exchange(pair: &crate::config::Pair, ours: &Exchange) -> Result<Exchange, PeerError> {
    let url = format!("{}/v1/pair/state", pair.peer);
    let unreachable = |e: reqwest::Error| PeerError::Unreachable {
        url: pair.peer.clone(),
        reason: error_chain(&e),
    };
    let token = String::from_utf8_lossy(&pair.token).into_owned();
    let response = pair
        .client
        .post(&url)
        .bearer_auth(token)
        .json(ours)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(PeerError::Refused {
            url: pair.peer.clone(),
            status: status.as_u16(),
            body: body.chars().take(300).collect(),
        });
    }
    response.json().await.map_err(unreachable)
}

/// An error with its causes, on one line (reqwest hides the useful part,
/// such as the TLS alert, in its sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// One exchange with the peer now, its result applied here: `Ok(peer's
/// name)` or why it failed. The admin API calls it after every change, so
/// that its answer says whether the peer holds the change too.
pub async fn sync_now(
    shared: &crate::controller::Shared,
    pair: &crate::config::Pair,
) -> Result<String, String> {
    let ours = shared.exchange_of(&pair.name);
    match exchange(pair, &ours).await {
        Ok(theirs) => {
            let state = shared
                .peer_state(theirs.clone())
                .await
                .map_err(|e| e.to_string())?;
            shared.pair.exchanged(&pair.peer, &theirs, &state);
            Ok(theirs.from)
        }
        Err(e) => {
            let why = e.to_string();
            shared.pair.failed(&pair.peer, why.clone());
            Err(why)
        }
    }
}

/// Keeps the pair in step until `shutdown`: an exchange at once when the
/// operator state changes here, and every `pair.sync_interval` otherwise.
pub async fn run(
    shared: std::sync::Arc<crate::controller::Shared>,
    mut changes: tokio::sync::watch::Receiver<std::sync::Arc<OperatorState>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut last_error: Option<String> = None;
    loop {
        let config = shared.snapshot.load().config.clone();
        let wait = match &config.pair {
            None => std::time::Duration::from_secs(1),
            Some(pair) => {
                match sync_now(&shared, pair).await {
                    Ok(_) => {
                        if last_error.take().is_some() {
                            tracing::info!(peer = %pair.peer, "the peer gateway answers again");
                        }
                    }
                    Err(why) => {
                        if last_error.as_ref() != Some(&why) {
                            tracing::warn!(error = %why, "cannot keep the operator state in step with the peer gateway");
                        }
                        last_error = Some(why);
                    }
                }
                pair.sync_interval
            }
        };
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The value of the keepalived track file: `0` lets this gateway hold the
/// virtual IP, `-254` puts its VRRP instance in FAULT (the peer takes the
/// address within a few advert intervals).
pub fn track_value(healthy: bool, stopping: bool) -> &'static str {
    if healthy && !stopping {
        "0\n"
    } else {
        "-254\n"
    }
}

/// Keeps `pair.vrrp_track_file` (if set) in step with this gateway's own
/// health, checked every 100 ms, until `shutdown`; a gateway that stops
/// writes `-254` first, so the VIP leaves before its listeners close.
///
/// A binary upgrade must not move the VIP: the new process writes nothing
/// until it has been healthy once (the old one's `0` stands meanwhile),
/// and the old one, handing over, writes nothing when it ends.
pub async fn vrrp_track(
    shared: std::sync::Arc<crate::controller::Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut written: Option<(PathBuf, &'static str)> = None;
    let mut was_healthy = false;
    let stopping = || shared.stopping.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        let config = shared.snapshot.load().config.clone();
        if let Some(path) = config.pair.as_ref().and_then(|p| p.vrrp_track_file.clone()) {
            let healthy = shared.self_health.verdict().healthy;
            was_healthy |= healthy;
            let value = track_value(healthy, stopping());
            let due = was_healthy || stopping();
            if due && written.as_ref() != Some(&(path.clone(), value)) {
                // In place: keepalived reads the file on each change it is
                // told of (inotify).
                match std::fs::write(&path, value) {
                    Ok(()) => {
                        tracing::info!(file = %path.display(), value = value.trim(), "VRRP track file written");
                        written = Some((path, value));
                    }
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "cannot write the VRRP track file")
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    if let (Some((path, _)), true) = (written, stopping()) {
                        let _ = std::fs::write(path, track_value(false, true));
                    }
                    return;
                }
            }
        }
    }
}

/// Writes the operator state to `path` whenever it changes, until
/// `shutdown` (the state at that moment is written too).
pub async fn persist(
    path: PathBuf,
    mut changes: tokio::sync::watch::Receiver<std::sync::Arc<OperatorState>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let state = changes.borrow_and_update().clone();
        let p = path.clone();
        match tokio::task::spawn_blocking(move || state.save(&p)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "operator state not kept"),
            Err(e) => tracing::error!(error = %e, "operator state not kept"),
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &str, version: u64, origin: &str) -> Entry {
        Entry {
            value: value.into(),
            version,
            origin: origin.into(),
            at: String::new(),
        }
    }

    #[test]
    fn a_change_gets_a_version_above_everything_seen() {
        let mut s = OperatorState::default();
        s.entries.insert("node/b".into(), entry("drain", 7, "gw2"));
        s.set("node/a", "maintenance", "gw1");
        assert_eq!(s.entries["node/a"].version, 8);
        assert_eq!(s.get("node/a"), Some("maintenance"));
    }

    #[test]
    fn merging_keeps_the_newest_entry_per_key_in_any_order() {
        let mut one = OperatorState::default();
        one.entries
            .insert("node/a".into(), entry("drain", 3, "gw1"));
        one.entries.insert("primary".into(), entry("a", 1, "gw1"));
        let mut two = OperatorState::default();
        two.entries
            .insert("node/a".into(), entry("active", 2, "gw2"));
        two.entries.insert("primary".into(), entry("b", 4, "gw2"));
        two.entries
            .insert("node/b".into(), entry("maintenance", 1, "gw2"));

        let mut x = one.clone();
        let changed = x.merge(&two);
        assert_eq!(changed, vec!["node/b".to_string(), "primary".to_string()]);
        let mut y = two.clone();
        let changed = y.merge(&one);
        assert_eq!(changed, vec!["node/a".to_string()]);
        assert_eq!(x, y, "both sides reach the same state");
        assert_eq!(x.get("node/a"), Some("drain"));
        assert_eq!(x.get("primary"), Some("b"));
        assert!(
            x.clone().merge(&y).is_empty(),
            "merging again changes nothing"
        );
    }

    #[test]
    fn equal_versions_are_decided_by_origin_on_both_sides() {
        let mut one = OperatorState::default();
        one.entries.insert("primary".into(), entry("a", 5, "gw1"));
        let mut two = OperatorState::default();
        two.entries.insert("primary".into(), entry("b", 5, "gw2"));
        let (mut x, mut y) = (one.clone(), two.clone());
        x.merge(&two);
        y.merge(&one);
        assert_eq!(x, y);
        assert_eq!(x.get("primary"), Some("b"));
    }

    #[test]
    fn the_state_file_round_trips_and_a_bad_one_is_named() {
        let dir = std::env::temp_dir().join(format!("twinport-pair-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        assert_eq!(
            OperatorState::load(&path).unwrap(),
            OperatorState::default()
        );
        let mut s = OperatorState::default();
        s.set("node/a", "drain", "gw1");
        s.set("primary", "b", "gw1");
        s.save(&path).unwrap();
        assert_eq!(OperatorState::load(&path).unwrap(), s);
        std::fs::write(&path, "{\"format\":1,\"state\":").unwrap();
        let err = OperatorState::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("state.json") && err.contains("not valid"),
            "{err}"
        );
        std::fs::write(&path, "{\"format\":9,\"state\":{\"entries\":{}}}").unwrap();
        let err = OperatorState::load(&path).unwrap_err().to_string();
        assert!(err.contains("format 9"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn vrrp_states_parse_as_keepalived_names_them() {
        assert_eq!(Vrrp::parse("MASTER"), Some(Vrrp::Master));
        assert_eq!(Vrrp::parse("backup\n"), Some(Vrrp::Backup));
        assert_eq!(Vrrp::parse("LEADER"), None);
        assert_eq!(serde_json::to_string(&Vrrp::Fault).unwrap(), "\"FAULT\"");
    }
}
