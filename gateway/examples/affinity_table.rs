//! What session affinity costs in memory and time, for `bench/affinity`:
//! the application-cookie table fed with 1,000,000 distinct sessions at
//! two bounds, and the per-request work (checking a gateway cookie, a
//! table lookup). Prints Markdown table rows.
#![forbid(unsafe_code)]

use gateway::affinity::{unix_now, CookieCodec, Table};
use std::time::{Duration, Instant};

/// This process's resident set size in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn per_op(start: Instant, n: u64) -> f64 {
    start.elapsed().as_nanos() as f64 / n as f64
}

fn table_row(max_entries: u32, sessions: u32) {
    let before = rss_kib();
    let table = Table::default();
    let start = Instant::now();
    for i in 0..sessions {
        let key = table.key(&format!("node-a.{i}.session-id-of-a-visitor"));
        table.bind(key, (i % 2) as usize, max_entries);
    }
    let insert_ns = per_op(start, u64::from(sessions));
    let held = table.len();
    let grown = rss_kib().saturating_sub(before);
    let start = Instant::now();
    let mut found = 0u64;
    let probes = 1_000_000u32;
    for i in 0..probes {
        let key = table.key(&format!(
            "node-a.{}.session-id-of-a-visitor",
            sessions - 1 - (i % sessions)
        ));
        found += u64::from(table.lookup(key, Duration::from_secs(1800)).is_some());
    }
    let lookup_ns = per_op(start, u64::from(probes));
    let start = Instant::now();
    let counts = table.sweep(Duration::from_secs(1800));
    let sweep_ms = start.elapsed().as_secs_f64() * 1000.0;
    println!(
        "| {max_entries} | {sessions} | {held} | {:.1} | {insert_ns:.0} | {lookup_ns:.0} ({:.0} % found) | {sweep_ms:.1} | {} / {} |",
        grown as f64 / 1024.0,
        found as f64 * 100.0 / f64::from(probes),
        counts[0],
        counts[1]
    );
    drop(table);
}

fn main() {
    println!("| max_entries | distinct sessions fed | entries held | memory growth (MiB) | ns per insert | ns per lookup | sweep (ms) | sessions a / b |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    table_row(100_000, 1_000_000);
    table_row(1_000_000, 1_000_000);
    println!();

    let codec = CookieCodec::new(b"bench-affinity-key-0123456789abcdef0123");
    let now = unix_now();
    let n = 200_000u64;
    let start = Instant::now();
    let mut last = String::new();
    for _ in 0..n {
        last = codec.encode("b", now + 3600);
    }
    let encode_ns = per_op(start, n);
    let start = Instant::now();
    let mut ok = 0u64;
    for _ in 0..n {
        ok += u64::from(codec.decode(&last, ["a", "b"], now).is_ok());
    }
    let decode_ns = per_op(start, n);
    let forged = "A".repeat(last.len());
    let start = Instant::now();
    for _ in 0..n {
        ok += u64::from(codec.decode(&forged, ["a", "b"], now).is_ok());
    }
    let forged_ns = per_op(start, n);
    assert_eq!(ok, n, "every good cookie checks, no forged one does");
    println!("| gateway cookie | ns per operation |");
    println!("| --- | --- |");
    println!("| issue a new cookie (random nonce, HMAC-SHA256) | {encode_ns:.0} |");
    println!("| check a cookie for the second node (two HMACs) | {decode_ns:.0} |");
    println!("| reject a forged cookie (two HMACs) | {forged_ns:.0} |");
}
