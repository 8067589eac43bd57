//! 50 kiosks issue 10,000 tickets at once: per service the numbers are
//! 1..n with no duplicate and no gap, on SQLite and on PostgreSQL.

use devtools::harness::ticketing::*;
use devtools::TempDir;
use std::collections::BTreeMap;

const KIOSKS: usize = 50;
const PER_KIOSK: usize = 200;

async fn fifty_kiosks(t: &Ticketing) {
    let url = t.url("/api/v1/branches/centrum/tickets");
    let mut tasks = Vec::new();
    for k in 0..KIOSKS {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut got = Vec::new();
            for i in 0..PER_KIOSK {
                let service = ["A", "B", "C"][(k + i) % 3];
                let key = format!("kiosk-{k}-{i}");
                let body = format!(r#"{{"service":"{service}"}}"#);
                let (status, v) =
                    call(&c, "POST", &url, Some(KIOSK), Some(&key), Some(&body)).await;
                assert_eq!(status, 201, "{v}");
                got.push((
                    v["service"].as_str().unwrap().to_string(),
                    v["display"].as_str().unwrap().to_string(),
                ));
            }
            got
        }));
    }
    let mut numbers: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for t in tasks {
        for (service, display) in t.await.unwrap() {
            numbers
                .entry(service.clone())
                .or_default()
                .push(display[service.len()..].parse().unwrap());
        }
    }
    let total: usize = numbers.values().map(Vec::len).sum();
    assert_eq!(total, KIOSKS * PER_KIOSK);
    for (service, mut n) in numbers {
        n.sort_unstable();
        let want: Vec<u64> = (1..=n.len() as u64).collect();
        assert_eq!(
            n,
            want,
            "service {service}: numbers are not 1..{} without gaps or duplicates",
            n.len()
        );
    }
    // The manager's statistics agree.
    let (_, stats) = call(
        &reqwest::Client::new(),
        "GET",
        &t.url("/api/v1/branches/centrum/stats"),
        Some(MANAGER),
        None,
        None,
    )
    .await;
    let issued: u64 = stats["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["issued"].as_u64().unwrap())
        .sum();
    assert_eq!(issued as usize, KIOSKS * PER_KIOSK, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_kiosks_on_sqlite_get_contiguous_numbers() {
    let dir = TempDir::new("tk-conc-sqlite");
    let t = Ticketing::start(&dir, "a", None);
    fifty_kiosks(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_kiosks_on_postgresql_get_contiguous_numbers() {
    let Some(db) = postgres_db("conc").await else {
        return;
    };
    let dir = TempDir::new("tk-conc-pg");
    let t = Ticketing::start(&dir, "a", Some(&db));
    fifty_kiosks(&t).await;
}
