//! Session affinity: a visitor's requests stay on the twin that holds their
//! session.
//!
//! Two ways of knowing which twin that is (`affinity.mode`):
//!
//! - **`cookie`**: the gateway inserts its own cookie naming the node. The
//!   value is opaque and signed: `base64url(expiry ‖ nonce ‖
//!   HMAC-SHA256(key, node ‖ expiry ‖ nonce))` with a random nonce per
//!   visitor (so that sessions are told apart and counted), so a client
//!   can neither read which twin it is on nor forge or extend a cookie; a forged, expired or malformed cookie is
//!   ignored (the request goes by weight and gets a fresh cookie), never an
//!   error. Both gateways of a pair share the key and honour each other's
//!   cookies; nothing is kept in memory to route, so a restart or a binary
//!   upgrade keeps every affinity.
//! - **`app-cookie`**: the gateway follows the application's own session
//!   cookie (`JSESSIONID`). It learns which node created a session from
//!   that node's `Set-Cookie` (never from what a client sends, so a client
//!   cannot fill the table) and keeps it in a bounded [`Table`], forgotten
//!   after `idle_timeout` without a request; a restarted gateway starts
//!   with an empty table.
//!
//! The same [`Table`] counts, per node, the distinct sessions seen within
//! `idle_timeout` (in `cookie` mode it only counts): that is what status
//! shows as sessions bound to a node, and what ends a soft drain early.

use crate::failover::NodeId;
use base64::Engine;
use ring::hmac;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why a gateway cookie was ignored (`twinport_affinity_cookies_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Not a value this gateway ever wrote.
    Malformed,
    /// Well formed, but the signature matches no node (forged, another
    /// key, or a node renamed since).
    Forged,
    /// Signed, but past its expiry.
    Expired,
}

impl Rejected {
    pub const ALL: [Rejected; 3] = [Rejected::Malformed, Rejected::Forged, Rejected::Expired];
    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::Malformed => "malformed",
            Rejected::Forged => "forged",
            Rejected::Expired => "expired",
        }
    }
}

const DOMAIN: &[u8] = b"twinport-affinity-1\0";
/// Expiry (8 bytes), nonce (8 bytes) and the full HMAC-SHA256 tag (32 bytes).
const RAW_LEN: usize = 8 + 8 + 32;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Signs and checks the gateway's affinity cookie.
pub struct CookieCodec {
    key: hmac::Key,
    rng: ring::rand::SystemRandom,
}

impl CookieCodec {
    pub fn new(secret: &[u8]) -> Self {
        CookieCodec {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            rng: ring::rand::SystemRandom::new(),
        }
    }

    /// What the tag covers: the node's name and the expiry and nonce.
    fn message(node: &str, head: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(DOMAIN.len() + node.len() + 1 + head.len());
        m.extend_from_slice(DOMAIN);
        m.extend_from_slice(node.as_bytes());
        m.push(0);
        m.extend_from_slice(head);
        m
    }

    /// A new cookie value naming `node`, valid until `expires` (Unix
    /// seconds).
    pub fn encode(&self, node: &str, expires: u64) -> String {
        use ring::rand::SecureRandom;
        let mut raw = [0u8; RAW_LEN];
        raw[..8].copy_from_slice(&expires.to_be_bytes());
        // Without randomness the value is still valid, only not unique.
        let _ = self.rng.fill(&mut raw[8..16]);
        let tag = hmac::sign(&self.key, &Self::message(node, &raw[..16]));
        raw[16..].copy_from_slice(tag.as_ref());
        B64.encode(raw)
    }

    /// The node a cookie value names and its expiry, checked against the
    /// node names in force at `now` (Unix seconds).
    pub fn decode(
        &self,
        value: &str,
        names: [&str; 2],
        now: u64,
    ) -> Result<(NodeId, u64), Rejected> {
        let mut raw = [0u8; RAW_LEN];
        match B64.decode_slice(value.as_bytes(), &mut raw) {
            Ok(RAW_LEN) => {}
            _ => return Err(Rejected::Malformed),
        }
        let expires = u64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
        let node = (0..2)
            .find(|&n| {
                hmac::verify(&self.key, &Self::message(names[n], &raw[..16]), &raw[16..]).is_ok()
            })
            .ok_or(Rejected::Forged)?;
        if expires <= now {
            return Err(Rejected::Expired);
        }
        Ok((node, expires))
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The value of cookie `name` in a request's `Cookie` headers (the first
/// one, as servlet containers read it).
pub fn request_cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .and_then(|c| c.value_raw())
}

/// What a response's `Set-Cookie` headers do to cookie `name`: `None`
/// nothing, `Some(Some(value))` set it, `Some(None)` delete it (empty, or
/// `Max-Age=0`, or an expiry in the past). The last one wins.
pub fn response_cookie(headers: &http::HeaderMap, name: &str) -> Option<Option<String>> {
    headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| cookie::Cookie::parse(v).ok())
        .rfind(|c| c.name() == name)
        .map(|c| {
            let expired = c.max_age().is_some_and(|a| a.whole_seconds() <= 0)
                || c.expires_datetime()
                    .is_some_and(|t| t.unix_timestamp() <= unix_now() as i64);
            (!c.value().is_empty() && !expired).then(|| c.value().to_string())
        })
}

/// The `Set-Cookie` value for the gateway's cookie: a session cookie (the
/// signed expiry bounds it), `HttpOnly`, `SameSite=Lax`, `Secure` on HTTPS.
pub fn set_cookie(name: &str, value: &str, secure: bool) -> String {
    cookie::Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(cookie::SameSite::Lax)
        .build()
        .to_string()
}

/// Shards of the table: a request locks one, for a hash-map operation.
const SHARDS: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Entry {
    node: u8,
    /// Seconds since the table was made, when a request last carried it.
    seen: u32,
}

/// Sessions by the hash of their cookie value (the value itself, a secret
/// of the visitor's, is never kept): which node holds each, and when it was
/// last seen. Bounded: a full shard drops its least recently seen eighth.
pub struct Table {
    shards: Box<[Mutex<HashMap<u64, Entry>>]>,
    hasher: RandomState,
    epoch: Instant,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            epoch: Instant::now(),
        }
    }
}

impl Table {
    /// The key of a cookie value (keyed SipHash, random per process).
    pub fn key(&self, value: &str) -> u64 {
        self.hasher.hash_one(value)
    }

    fn now(&self) -> u32 {
        self.epoch.elapsed().as_secs().min(u64::from(u32::MAX)) as u32
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        // The low bits pick the bucket inside the map; the high ones the shard.
        let i = (key >> 58) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node of session `key` if it was seen within `idle`; marks it seen.
    pub fn lookup(&self, key: u64, idle: Duration) -> Option<NodeId> {
        let now = self.now();
        let mut shard = self.shard(key);
        let e = shard.get_mut(&key)?;
        if u64::from(now.saturating_sub(e.seen)) > idle.as_secs() {
            return None;
        }
        e.seen = now;
        Some(NodeId::from(e.node))
    }

    /// Session `key` is on `node` (new, moved or seen again); the table
    /// holds at most `max_entries` (per shard, its share).
    pub fn bind(&self, key: u64, node: NodeId, max_entries: u32) {
        let now = self.now();
        let cap = (max_entries as usize / SHARDS).max(1);
        let mut shard = self.shard(key);
        if shard.len() >= cap && !shard.contains_key(&key) {
            evict_oldest_eighth(&mut shard);
        }
        shard.insert(
            key,
            Entry {
                node: node as u8,
                seen: now,
            },
        );
    }

    pub fn forget(&self, key: u64) {
        self.shard(key).remove(&key);
    }

    /// Drops the sessions not seen within `idle` and counts the rest per
    /// node.
    pub fn sweep(&self, idle: Duration) -> [u64; 2] {
        let now = self.now();
        let mut counts = [0u64; 2];
        for s in self.shards.iter() {
            let mut shard = s.lock().unwrap_or_else(|e| e.into_inner());
            shard.retain(|_, e| {
                let live = u64::from(now.saturating_sub(e.seen)) <= idle.as_secs();
                if live {
                    counts[usize::from(e.node).min(1)] += 1;
                }
                live
            });
        }
        counts
    }

    /// Sessions held, expired ones included until the next sweep.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every session (the mode or the cookie changed).
    pub fn clear(&self) {
        for s in self.shards.iter() {
            s.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}

/// Removes the least recently seen eighth of a full shard: one pass, so a
/// flood of new sessions costs O(1) per insert on average.
fn evict_oldest_eighth(shard: &mut HashMap<u64, Entry>) {
    let mut seen: Vec<u32> = shard.values().map(|e| e.seen).collect();
    let k = seen.len() / 8;
    let (_, &mut cut, _) = seen.select_nth_unstable(k);
    let mut dropped = 0;
    let target = k.max(1);
    shard.retain(|_, e| {
        if dropped < target && e.seen <= cut {
            dropped += 1;
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> CookieCodec {
        CookieCodec::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn a_cookie_names_its_node_until_it_expires() {
        let c = codec();
        let v = c.encode("b", 1_000);
        assert_eq!(c.decode(&v, ["a", "b"], 999), Ok((1, 1_000)));
        assert_eq!(c.decode(&v, ["a", "b"], 1_000), Err(Rejected::Expired));
        // Opaque: the value is the expiry, a nonce and the tag, no name;
        // two visitors never share one.
        assert_eq!(B64.decode(&v).unwrap().len(), RAW_LEN);
        assert_ne!(c.encode("b", 1_000), v);
    }

    #[test]
    fn forged_and_foreign_cookies_are_rejected() {
        let c = codec();
        let v = c.encode("a", 5_000);
        // Another key, a renamed node, an extended expiry, garbage.
        let other = CookieCodec::new(b"another key that is long enough!!");
        assert_eq!(other.decode(&v, ["a", "b"], 1), Err(Rejected::Forged));
        assert_eq!(c.decode(&v, ["x", "b"], 1), Err(Rejected::Forged));
        let mut raw = B64.decode(&v).unwrap();
        raw[7] ^= 1;
        assert_eq!(
            c.decode(&B64.encode(&raw), ["a", "b"], 1),
            Err(Rejected::Forged)
        );
        for bad in ["", "a", "!!!!", &v[..v.len() - 1], &format!("{v}AA")] {
            assert_eq!(
                c.decode(bad, ["a", "b"], 1),
                Err(Rejected::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_named_cookie_is_found_among_others() {
        let mut h = http::HeaderMap::new();
        h.append("cookie", "x=1; JSESSIONID=abc.def; y=2".parse().unwrap());
        h.append("cookie", "JSESSIONID=second".parse().unwrap());
        assert_eq!(request_cookie(&h, "JSESSIONID"), Some("abc.def"));
        assert_eq!(request_cookie(&h, "y"), Some("2"));
        assert_eq!(request_cookie(&h, "jsessionid"), None);
        assert_eq!(request_cookie(&http::HeaderMap::new(), "x"), None);
    }

    #[test]
    fn set_cookie_sets_and_deletes() {
        let mut h = http::HeaderMap::new();
        h.append("set-cookie", "other=1; Path=/".parse().unwrap());
        assert_eq!(response_cookie(&h, "JSESSIONID"), None);
        h.append(
            "set-cookie",
            "JSESSIONID=s1; Path=/; HttpOnly".parse().unwrap(),
        );
        assert_eq!(response_cookie(&h, "JSESSIONID"), Some(Some("s1".into())));
        let mut d = http::HeaderMap::new();
        d.append("set-cookie", "JSESSIONID=s1; Max-Age=0".parse().unwrap());
        assert_eq!(response_cookie(&d, "JSESSIONID"), Some(None));
        let mut e = http::HeaderMap::new();
        e.append(
            "set-cookie",
            "JSESSIONID=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
                .parse()
                .unwrap(),
        );
        assert_eq!(response_cookie(&e, "JSESSIONID"), Some(None));
    }

    #[test]
    fn the_inserted_cookie_is_http_only_and_lax() {
        let s = set_cookie("TWINPORT_AFFINITY", "v", true);
        for part in [
            "TWINPORT_AFFINITY=v",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/",
        ] {
            assert!(s.contains(part), "{s}");
        }
        assert!(!set_cookie("T", "v", false).contains("Secure"));
    }

    #[test]
    fn the_table_remembers_moves_and_forgets() {
        let t = Table::default();
        let k = t.key("session-1");
        assert_eq!(t.lookup(k, Duration::from_secs(60)), None);
        t.bind(k, 0, 1000);
        assert_eq!(t.lookup(k, Duration::from_secs(60)), Some(0));
        t.bind(k, 1, 1000);
        assert_eq!(t.lookup(k, Duration::from_secs(60)), Some(1));
        t.bind(t.key("session-2"), 1, 1000);
        assert_eq!(t.sweep(Duration::from_secs(60)), [0, 2]);
        t.forget(k);
        assert_eq!(t.lookup(k, Duration::from_secs(60)), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn the_table_stays_within_its_bound() {
        let t = Table::default();
        let max = 6_400;
        for i in 0..50_000u32 {
            t.bind(t.key(&format!("s{i}")), (i % 2) as usize, max);
        }
        assert!(t.len() <= max as usize, "{} entries", t.len());
        assert!(t.len() >= max as usize * 3 / 4, "{} entries", t.len());
        // The newest are kept.
        assert_eq!(t.lookup(t.key("s49999"), Duration::from_secs(60)), Some(1));
    }
}
