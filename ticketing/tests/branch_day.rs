//! The branch day with an injected clock, on SQLite and on PostgreSQL: the
//! library's store and views exactly as the service uses them, with the
//! time set by the test. A day ends at closing time (or midnight), what
//! was left becomes `not_served`, the next day starts clean (also after a
//! restart that missed the close, and on both DST days of 2026), both
//! twins may close at once, keys are purged after the retention, and
//! transfers never strand a visitor.

use chrono::TimeZone;
use devtools::harness::ticketing::*;
use devtools::{free_addr, TempDir};
use serde_json::Value;
use std::sync::Arc;
use ticketing::app::{App, Clock};
use ticketing::calendar::Millis;
use ticketing::store::{DeskAction, IssueRequest, Store, StoreError, TransferTo};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn warsaw(y: i32, m: u32, d: u32, h: u32, min: u32) -> Millis {
    chrono_tz::Europe::Warsaw
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .earliest()
        .expect("a local time that exists")
        .timestamp_millis()
}

/// The test branch (`devtools::harness::ticketing::config`) open 08:00-18:00 on weekdays,
/// 00:00-24:00 at weekends.
fn branch_config(dir: &TempDir, database: &str) -> ticketing::config::Config {
    write_tokens(dir);
    let text = config("a", free_addr(), free_addr(), database).replace(
        "    booking_window: 15m\n",
        "    booking_window: 15m\n    transfer_max_wait: 10m\n    opening_hours: { mon: 08:00-18:00, tue: 08:00-18:00, wed: 08:00-18:00, thu: 08:00-18:00, fri: 08:00-18:00, sat: 00:00-24:00, sun: 00:00-24:00 }\n",
    );
    let path = dir.path().join("branch-day.yaml");
    std::fs::write(&path, &text).unwrap();
    ticketing::config::parse(&path, &text).expect("a valid config")
}

/// One twin: the store and the app's views, at a time the test sets.
async fn twin(dir: &TempDir, database: &str, at: Millis) -> Arc<App> {
    let config = branch_config(dir, database);
    let store = Store::connect(&config.database, 4).await.unwrap();
    Arc::new(App::new(config, store, Clock::fixed(at)))
}

/// The stores every case runs on, each case on a database of its own.
#[derive(Clone, Copy)]
enum Kind {
    Sqlite,
    Postgres,
}

async fn database(kind: Kind, dir: &TempDir, case: &str) -> Option<String> {
    match kind {
        Kind::Sqlite => Some(format!(
            "sqlite://{}",
            dir.path().join(format!("{case}.db")).display()
        )),
        Kind::Postgres => postgres_db(&format!("day_{case}")).await,
    }
}

/// The idempotency keys the store holds for the branch.
async fn keys(app: &App) -> Vec<String> {
    use sqlx::{Connection, Row};
    let mut c = sqlx::AnyConnection::connect(&app.config.database)
        .await
        .unwrap();
    sqlx::query("SELECT key FROM idempotency WHERE branch = 'centrum'")
        .fetch_all(&mut c)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("key"))
        .collect()
}

async fn issue(app: &App, service: &str, key: &str) -> ticketing::store::Ticket {
    let b = app.branch("centrum").unwrap();
    let req = IssueRequest::Service {
        service: service.into(),
        priority_group: None,
    };
    app.store.issue(b, &req, key, app.now()).await.unwrap().0
}

async fn call_next(app: &App, desk: &str) -> Option<ticketing::store::Ticket> {
    let b = app.branch("centrum").unwrap();
    let d = b.desk(desk).unwrap();
    app.store
        .call_next(b, d, None, app.now())
        .await
        .unwrap()
        .map(|(t, _)| t)
}

async fn stats(app: &App, day: &str) -> Value {
    let b = app.branch("centrum").unwrap();
    serde_json::to_value(app.stats_view(b, day).await.unwrap()).unwrap()
}

async fn gauge(app: &App, name: &str, service: &str) -> String {
    // Gauges are read at most once a second: wait out the last read.
    tokio::time::sleep(ticketing::app::GAUGE_REFRESH).await;
    app.refresh_gauges().await.unwrap();
    let text = app.metrics.render();
    text.lines()
        .find(|l| {
            l.starts_with(&format!("twinport_ticketing_{name}{{"))
                && l.contains(&format!("service=\"{service}\""))
                && l.contains("branch=\"centrum\"")
        })
        .unwrap_or_else(|| panic!("no {name} for {service} in\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string()
}

/// Monday 23 November 2026: tickets left at closing time, a called one
/// too, are not served; Tuesday starts with nobody waiting and A001.
async fn the_day_closes_at_closing_time(database: &str, dir: &TempDir) {
    let app = twin(dir, database, warsaw(2026, 11, 23, 10, 0)).await;
    let b = app.branch("centrum").unwrap().clone();
    for i in 0..4 {
        issue(&app, "A", &format!("mon-{i}")).await;
    }
    issue(&app, "B", "mon-b").await;
    app.clock.set(warsaw(2026, 11, 23, 10, 5));
    let called = call_next(&app, "1").await.expect("A001 called");
    assert_eq!(called.display, "A001");
    app.store
        .desk_action(&b, "1", DeskAction::Finish, None, app.now())
        .await
        .unwrap();
    assert_eq!(call_next(&app, "1").await.unwrap().display, "A002");

    // 17:59: the day is still on.
    app.clock.set(warsaw(2026, 11, 23, 17, 59));
    app.close_ended_days().await.unwrap();
    assert_eq!(gauge(&app, "waiting", "A").await, "2");
    // 18:00: closed, by whichever twin first; a second look does nothing.
    app.clock.set(warsaw(2026, 11, 23, 18, 0));
    let closed = app
        .store
        .close_ended_day(&b, 48 * HOUR, app.now())
        .await
        .unwrap()
        .expect("the day closes at 18:00");
    assert_eq!(closed.day, "2026-11-23");
    assert_eq!(closed.not_served, 4, "A002 (called), A003, A004, B001");
    assert_eq!(closed.desks_closed, 1, "desk 1, opened by its calls");
    assert_eq!(
        app.store
            .close_ended_day(&b, 48 * HOUR, app.now())
            .await
            .unwrap(),
        None
    );
    assert_eq!(gauge(&app, "waiting", "A").await, "0");
    assert_eq!(gauge(&app, "longest_wait_seconds", "A").await, "0");
    let board = serde_json::to_value(app.board_view(&b).await.unwrap()).unwrap();
    assert_eq!(board["calls"], serde_json::json!([]), "{board}");
    assert_eq!(board["waiting"]["A"], 0, "{board}");
    assert!(app.store.open_desks("centrum").await.unwrap().is_empty());

    // Tuesday 08:00: A001 again, the only one waiting.
    app.clock.set(warsaw(2026, 11, 24, 8, 0));
    app.close_ended_days().await.unwrap();
    let t = issue(&app, "A", "tue-0").await;
    assert_eq!((t.day.as_str(), t.display.as_str()), ("2026-11-24", "A001"));
    assert_eq!(gauge(&app, "waiting", "A").await, "1");
    let view = app.ticket_view(&t).await.unwrap();
    assert_eq!(view.position, 0);
    assert_eq!(
        view.estimated_wait_seconds, None,
        "no desk open yet: no promise of minutes"
    );
    let info = serde_json::to_value(app.branch_view(&b).await.unwrap()).unwrap();
    assert_eq!(info["services"][0]["waiting"], 1, "{info}");
    assert_eq!(info["services"][0]["estimated_wait_seconds"], Value::Null);
    app.store
        .set_desk_open(&b, "1", true, None, app.now())
        .await
        .unwrap();
    let view = app.ticket_view(&t).await.unwrap();
    assert!(view.estimated_wait_seconds.is_some(), "{view:?}");
    assert_eq!(call_next(&app, "1").await.unwrap().id, t.id);

    // Monday's statistics keep Monday: 5 issued, 1 served, 4 not served
    // with their waiting time (until called, or until 18:00).
    let s = stats(&app, "2026-11-23").await;
    assert_eq!(s["closed"], true, "{s}");
    let a = &s["services"][0];
    assert_eq!(
        (
            &a["issued"],
            &a["served"],
            &a["not_served"],
            &a["waiting_now"]
        ),
        (&4.into(), &1.into(), &3.into(), &0.into()),
        "{s}"
    );
    // A002 waited 5 min (called at 10:05), A003 and A004 8 h (to 18:00).
    let mean = a["not_served_mean_wait_seconds"].as_i64().unwrap();
    assert_eq!(mean, (5 * 60 + 2 * 8 * 3600) / 3, "{s}");
    assert_eq!(s["services"][1]["not_served"], 1, "{s}");
    let hours: i64 = s["per_hour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["not_served"].as_i64().unwrap())
        .sum();
    assert_eq!(hours, 4, "{s}");
}

/// A branch down at closing time: the tickets of Monday are still waiting
/// when a twin starts on Tuesday; it closes Monday before anything else.
async fn a_missed_close_is_done_at_start(database: &str, dir: &TempDir) {
    {
        let app = twin(dir, database, warsaw(2026, 11, 23, 16, 0)).await;
        issue(&app, "A", "missed-0").await;
        issue(&app, "A", "missed-1").await;
        let b = app.branch("centrum").unwrap().clone();
        app.store
            .set_desk_open(&b, "2", true, None, app.now())
            .await
            .unwrap();
    }
    // Restarted Tuesday 09:00; a clerk opened desk 1 at 08:30 already,
    // before this twin started: that desk stays open.
    let app = twin(dir, database, warsaw(2026, 11, 24, 8, 30)).await;
    let b = app.branch("centrum").unwrap().clone();
    app.store
        .set_desk_open(&b, "1", true, None, app.now())
        .await
        .unwrap();
    app.clock.set(warsaw(2026, 11, 24, 9, 0));
    let board = serde_json::to_value(app.board_view(&b).await.unwrap()).unwrap();
    assert_eq!(
        board["waiting"]["A"], 0,
        "Monday's tickets are not Tuesday's queue, even before the close: {board}"
    );
    app.close_ended_days().await.unwrap();
    let monday = app
        .store
        .tickets_of_day("centrum", "2026-11-23")
        .await
        .unwrap();
    assert_eq!(monday.len(), 2);
    for t in &monday {
        assert_eq!(t.status, "not_served", "{t:?}");
        assert_eq!(t.finished_at, Some(warsaw(2026, 11, 23, 18, 0)), "{t:?}");
    }
    assert_eq!(
        app.store.open_desks("centrum").await.unwrap(),
        vec!["1".to_string()],
        "Monday's desk 2 closed, Tuesday's desk 1 open"
    );
    assert_eq!(
        call_next(&app, "1").await,
        None,
        "nobody from Monday is called"
    );
    let t = issue(&app, "A", "tue-1").await;
    assert_eq!(t.display, "A001");
}

/// Both DST days of 2026 (23 and 25 hours long), the branch open until
/// 24:00: the day ends at local midnight, not 24 hours after it began.
async fn dst_days_close_at_local_midnight(database: &str, dir: &TempDir) {
    for (y, m, d, next) in [(2026, 3, 29, 30), (2026, 10, 25, 26)] {
        let app = twin(dir, database, warsaw(y, m, d, 23, 0)).await;
        let b = app.branch("centrum").unwrap().clone();
        let t = issue(&app, "C", &format!("dst-{m}")).await;
        app.clock.set(warsaw(y, m, next, 0, 0) - 1);
        app.close_ended_days().await.unwrap();
        assert_eq!(
            app.store.ticket(&t.id).await.unwrap().unwrap().status,
            "waiting"
        );
        app.clock.set(warsaw(y, m, next, 0, 0));
        let closed = app
            .store
            .close_ended_day(&b, 48 * HOUR, app.now())
            .await
            .unwrap()
            .expect("closed at midnight");
        assert_eq!(closed.day, format!("{y}-{m:02}-{d:02}"));
        let t = app.store.ticket(&t.id).await.unwrap().unwrap();
        assert_eq!(t.status, "not_served");
        let day_length = warsaw(y, m, next, 0, 0) - warsaw(y, m, d, 0, 0);
        assert_eq!(day_length, if m == 3 { 23 } else { 25 } * HOUR);
        let t = issue(&app, "C", &format!("dst-next-{m}")).await;
        assert_eq!(t.display, "C001");
    }
}

/// Both twins close at the same moment: one does it, the other finds it
/// done; nothing is closed twice.
async fn both_twins_close_at_once(database: &str, dir: &TempDir) {
    let at = warsaw(2026, 11, 25, 12, 0);
    let a = twin(dir, database, at).await;
    let b_twin = twin(dir, database, at).await;
    for i in 0..3 {
        issue(&a, "A", &format!("race-{i}")).await;
    }
    let b = a.branch("centrum").unwrap().clone();
    let end = warsaw(2026, 11, 25, 18, 0);
    let (x, y) = tokio::join!(
        a.store.close_ended_day(&b, 48 * HOUR, end),
        b_twin.store.close_ended_day(&b, 48 * HOUR, end)
    );
    let done: Vec<_> = [x.unwrap(), y.unwrap()].into_iter().flatten().collect();
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].not_served, 3);
}

/// Keys older than the retention are purged by the close; a replay within
/// it still gets its ticket, and a reused key with another request is
/// refused.
async fn keys_are_kept_for_the_retention_only(database: &str, dir: &TempDir) {
    let app = twin(dir, database, warsaw(2026, 11, 26, 10, 0)).await;
    let b = app.branch("centrum").unwrap().clone();
    let first = issue(&app, "A", "kiosk:old").await;
    let reused = app
        .store
        .issue(
            &b,
            &IssueRequest::Service {
                service: "B".into(),
                priority_group: None,
            },
            "kiosk:old",
            app.now(),
        )
        .await;
    assert!(
        matches!(reused, Err(StoreError::KeyReused(_))),
        "{reused:?}"
    );
    app.clock.set(warsaw(2026, 11, 27, 10, 0));
    let young = issue(&app, "A", "kiosk:young").await;
    // Friday's close (Thursday 10:00 + 48 h is Saturday 10:00): both kept.
    app.clock.set(warsaw(2026, 11, 27, 18, 0));
    app.close_ended_days().await.unwrap();
    let (again, replayed) = app
        .store
        .issue(
            &b,
            &IssueRequest::Service {
                service: "A".into(),
                priority_group: None,
            },
            "kiosk:old",
            app.now(),
        )
        .await
        .unwrap();
    assert!(replayed);
    assert_eq!(again.id, first.id);
    // Saturday's close (open until 24:00): Thursday's key is 62 h old.
    app.clock.set(warsaw(2026, 11, 29, 0, 0));
    let closed = app
        .store
        .close_ended_day(&b, 48 * HOUR, app.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(closed.day, "2026-11-28");
    assert_eq!(closed.keys_purged, 1, "{closed:?}");
    let keys = keys(&app).await;
    assert!(keys.contains(&"kiosk:young".to_string()), "{keys:?}");
    assert!(!keys.contains(&"kiosk:old".to_string()), "{keys:?}");
    drop(young);
}

/// A transfer to a desk: that desk's alone for 10 minutes, then any desk
/// of its service calls it first; closing its desk returns it to its queue
/// at once; a closed desk takes no transfer.
async fn transfers_are_never_stranded(database: &str, dir: &TempDir) {
    let app = twin(dir, database, warsaw(2026, 11, 30, 9, 0)).await;
    let b = app.branch("centrum").unwrap().clone();
    let open = |desk: &'static str, yes: bool| {
        let (app, b) = (app.clone(), b.clone());
        async move {
            app.store
                .set_desk_open(&b, desk, yes, None, app.now())
                .await
                .unwrap()
        }
    };
    let b1 = issue(&app, "B", "tr-1").await;
    issue(&app, "B", "tr-2").await;
    assert_eq!(call_next(&app, "2").await.unwrap().id, b1.id);
    // Desk 1 is closed: no transfer to it.
    let refused = app
        .store
        .transfer(&b, "2", &TransferTo::Desk("1".into()), None, app.now())
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    open("1", true).await;
    app.store
        .transfer(&b, "2", &TransferTo::Desk("1".into()), None, app.now())
        .await
        .unwrap();
    // Desk 2 (serving B first) does not take it back within 10 min...
    app.clock.set(warsaw(2026, 11, 30, 9, 5));
    let next = call_next(&app, "2").await.unwrap();
    assert_eq!(next.display, "B002");
    app.store
        .desk_action(&b, "2", DeskAction::Finish, None, app.now())
        .await
        .unwrap();
    assert_eq!(call_next(&app, "2").await, None);
    // ...but after them it does, first.
    app.clock.set(warsaw(2026, 11, 30, 9, 11));
    issue(&app, "B", "tr-3").await;
    assert_eq!(call_next(&app, "2").await.unwrap().id, b1.id);
    // Sent to desk 1 again; desk 1 closes: back in B's queue at once.
    app.store
        .transfer(&b, "2", &TransferTo::Desk("1".into()), None, app.now())
        .await
        .unwrap();
    open("1", false).await;
    let t = app.store.ticket(&b1.id).await.unwrap().unwrap();
    assert_eq!((t.assigned_desk, t.status.as_str()), (None, "waiting"));
    assert_eq!(
        call_next(&app, "2").await.unwrap().id,
        b1.id,
        "it kept its waiting time: before B003"
    );
}

async fn every_case(kind: Kind) {
    let dir = TempDir::new("tk-day");
    macro_rules! case {
        ($f:ident) => {
            let Some(db) = database(kind, &dir, stringify!($f)).await else {
                return;
            };
            $f(&db, &dir).await;
        };
    }
    case!(the_day_closes_at_closing_time);
    case!(a_missed_close_is_done_at_start);
    case!(dst_days_close_at_local_midnight);
    case!(both_twins_close_at_once);
    case!(keys_are_kept_for_the_retention_only);
    case!(transfers_are_never_stranded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_branch_day_on_sqlite() {
    every_case(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_branch_day_on_postgresql() {
    every_case(Kind::Postgres).await;
}
