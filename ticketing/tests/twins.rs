//! Exactly-once across twins: two ticketing instances on one PostgreSQL
//! behind the real gateway; the primary is killed (SIGKILL) while kiosks
//! issue tickets, each retrying with its Idempotency-Key. Every key maps
//! to exactly one ticket, and no number is lost or doubled.

use devtools::harness::gateway as gw;

use devtools::harness::ticketing::*;
use devtools::TempDir;
use gw::{Gateway, GwOpts};
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

const KIOSKS: usize = 8;
const PER_KIOSK: usize = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_primary_loses_and_doubles_no_ticket() {
    let Some(db) = postgres_db("twins").await else {
        return;
    };
    let dir = TempDir::new("tk-twins");
    let a = Ticketing::start(&dir, "a", Some(&db));
    let b = Ticketing::start(&dir, "b", Some(&db));
    let targets = [("a", &a), ("b", &b)]
        .map(|(n, t)| (n.to_string(), t.addr.to_string(), t.addr.to_string()));
    let gw = Gateway::start_with(&dir, targets, &GwOpts::default(), "");
    let up = devtools::eventually(Duration::from_secs(10), || {
        std::process::Command::new("curl")
            .args([
                "-s",
                "-H",
                &format!("Authorization: Bearer {}", gw.token),
                &format!("http://{}/v1/status", gw.admin),
            ])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .matches("\"health\":\"up\"")
                    .count()
                    == 2
            })
            .unwrap_or(false)
    });
    assert!(up, "both twins up at the gateway");
    let (_, status) = gw.admin_call("GET", "/v1/status", None).await;
    assert_eq!(status["primary"], "a");

    let url = gw.url("/api/v1/branches/centrum/tickets");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..KIOSKS {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            // (key, ticket, when its touch was first sent since the start)
            let mut answers: Vec<(String, String, Duration)> = Vec::new();
            let mut retries = 0;
            for i in 0..PER_KIOSK {
                let key = format!("twins-{k}-{i}");
                let body = format!(r#"{{"service":"{}"}}"#, ["A", "B"][i % 2]);
                let sent = started.elapsed();
                // Bounded: a kiosk tries a touch at most 30 times.
                for attempt in 0..30 {
                    let r = c
                        .post(&url)
                        .bearer_auth(KIOSK)
                        .header("idempotency-key", &key)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match r {
                        Ok(resp) if resp.status().is_success() => {
                            let v: serde_json::Value = resp.json().await.unwrap();
                            answers.push((
                                key.clone(),
                                v["id"].as_str().unwrap().to_string(),
                                sent,
                            ));
                            break;
                        }
                        _ => {
                            retries += 1;
                            assert!(attempt < 29, "key {key} never succeeded");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
            (answers, retries)
        }));
    }
    // Kill the primary while the kiosks run.
    tokio::time::sleep(Duration::from_millis(800)).await;
    a.proc.signal("KILL");
    let killed_at = started.elapsed();
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    let mut retries = 0;
    let mut after_kill = 0;
    for t in tasks {
        let (answers, r) = t.await.unwrap();
        retries += r;
        for (k, id, sent) in answers {
            after_kill += usize::from(sent > killed_at);
            by_key.entry(k).or_default().push(id);
        }
    }
    assert_eq!(by_key.len(), KIOSKS * PER_KIOSK, "every touch got a ticket");
    let (_, status) = gw.admin_call("GET", "/v1/status", None).await;
    assert_eq!(status["primary"], "b", "the twin took over");
    println!(
        "killed a at {killed_at:?}; {} tickets, {after_kill} asked for after the kill, {retries} retries",
        by_key.len()
    );
    // The kill struck while the kiosks were still at work.
    assert!(
        retries > 0 || after_kill > 0,
        "the kiosks had finished before the kill: the test proved nothing"
    );
    // Ticketing's metrics are not on the public path.
    let (s, v) = call(
        &reqwest::Client::new(),
        "GET",
        &gw.url("/metrics"),
        None,
        None,
        None,
    )
    .await;
    assert_eq!(s, 404, "{v}");
    assert!(b
        .metrics_text()
        .await
        .contains("twinport_ticketing_tickets_issued_total"));

    // The store: one ticket per key, the one the kiosk was told; numbers
    // 1..n per service.
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect(&db).await.unwrap();
    let keys = sqlx::query("SELECT key, ticket_id FROM idempotency WHERE branch = 'centrum'")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), KIOSKS * PER_KIOSK);
    for r in &keys {
        let (key, id): (String, String) = (r.get("key"), r.get("ticket_id"));
        let key = key.strip_prefix("kiosk:").expect("a kiosk's key");
        assert_eq!(by_key[key], vec![id.clone()], "key {key}");
    }
    let tickets =
        sqlx::query("SELECT id, number_service, number FROM tickets WHERE branch = 'centrum'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        tickets.len(),
        KIOSKS * PER_KIOSK,
        "no ticket without a key, none twice"
    );
    let mut numbers: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in &tickets {
        numbers
            .entry(r.get("number_service"))
            .or_default()
            .push(r.get("number"));
    }
    for (s, mut n) in numbers {
        n.sort_unstable();
        assert_eq!(
            n,
            (1..=n.len() as i64).collect::<Vec<_>>(),
            "service {s}: lost or doubled numbers"
        );
    }
}
