//! Storage with sqlx: one set of portable SQL statements through sqlx's
//! `Any` driver, on SQLite (the embedded default, WAL mode, shared by both
//! twins on one host) or PostgreSQL (twins on two hosts).
//!
//! Every change is one transaction that begins by bumping its branch's
//! row in `branch_state`. That first write takes the branch's lock at once
//! (in PostgreSQL the row lock, in SQLite the database's write lock, with
//! no read-to-write upgrade that could deadlock), so a branch's changes
//! happen one at a time: a number is taken from `counters` and its ticket
//! written in the same transaction, numbers are contiguous per branch,
//! service and day, and a desk never calls a ticket another desk called.
//!
//! Issuing is exactly-once per `Idempotency-Key`: the key is inserted
//! first (`ON CONFLICT DO NOTHING`); if it was there, the ticket it names
//! is returned and nothing else is written. A retry on the other twin
//! meets the same row. Desk actions remember their key in their own
//! transaction the same way. A key is kept with what it asked for (its
//! request, e.g. `issue A` or `transfer desk 2`): the same key with another
//! request is refused ([`StoreError::KeyReused`]). Keys are namespaced by
//! the caller (the API prefixes `kiosk:` or `desk:{id}:`) and purged by the
//! day close once older than the retention.
//!
//! Every queue query is restricted to the branch's current local day
//! (index `tickets_queue` on branch, status, day, service), and the day
//! close ([`day`]) ends every day that is over.
//!
//! | module | what |
//! | --- | --- |
//! | this one | the pool, the branch's transaction (`Store::begin`), idempotency keys, the ticket row and its mapping, the queue rules' inputs |
//! | `issue` | issuing and booking check-in |
//! | `desk` | call next, desk actions, transfer, open and close |
//! | `bookings` | create and cancel bookings |
//! | `views` | reads for views, gauges and statistics |
//! | [`day`] | the day close |

mod bookings;
pub mod day;
mod desk;
mod issue;
mod views;

pub use bookings::Booking;
pub use desk::{DeskAction, TransferTo};
pub use issue::IssueRequest;

use crate::calendar::Millis;
use crate::config::Branch;
use crate::queue::{Rules, Targets, Waiting};
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Connection, Row};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    NotFound(String),
    /// The request is understood but the state does not allow it.
    #[error("{0}")]
    Conflict(String),
    /// The request cannot be carried out as given.
    #[error("{0}")]
    Invalid(String),
    /// An `Idempotency-Key` used again with another request.
    #[error("{0}")]
    KeyReused(String),
}

type Result<T> = std::result::Result<T, StoreError>;

impl StoreError {
    /// The database's disk is full (SQLite `SQLITE_FULL`, PostgreSQL
    /// `53100 disk_full`, or `ENOSPC` from the file system): the change
    /// was not made, and will succeed once space is freed.
    pub fn is_storage_full(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(e)) => {
                let code = e.code();
                matches!(code.as_deref(), Some("13") | Some("53100"))
                    || e.message().contains("disk is full")
            }
            StoreError::Db(sqlx::Error::Io(e)) => e.raw_os_error() == Some(28),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ticket {
    pub id: String,
    pub branch: String,
    pub service: String,
    pub number_service: String,
    pub day: String,
    pub number: i64,
    pub display: String,
    pub priority_group: Option<String>,
    pub booking_code: Option<String>,
    pub booking_slot: Option<i64>,
    pub issued_at: i64,
    pub queued_since: i64,
    pub status: String,
    pub desk: Option<String>,
    pub assigned_desk: Option<String>,
    /// When it was transferred to `assigned_desk`.
    pub transferred_at: Option<i64>,
    pub called_at: Option<i64>,
    pub recalls: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

const TICKET_COLUMNS: &str = "id, branch, service, number_service, day, number, display, priority_group, \
    booking_code, booking_slot, issued_at, queued_since, status, desk, assigned_desk, transferred_at, called_at, \
    recalls, started_at, finished_at";

fn ticket(r: &AnyRow) -> std::result::Result<Ticket, sqlx::Error> {
    Ok(Ticket {
        id: r.try_get("id")?,
        branch: r.try_get("branch")?,
        service: r.try_get("service")?,
        number_service: r.try_get("number_service")?,
        day: r.try_get("day")?,
        number: r.try_get("number")?,
        display: r.try_get("display")?,
        priority_group: r.try_get("priority_group")?,
        booking_code: r.try_get("booking_code")?,
        booking_slot: r.try_get("booking_slot")?,
        issued_at: r.try_get("issued_at")?,
        queued_since: r.try_get("queued_since")?,
        status: r.try_get("status")?,
        desk: r.try_get("desk")?,
        assigned_desk: r.try_get("assigned_desk")?,
        transferred_at: r.try_get("transferred_at")?,
        called_at: r.try_get("called_at")?,
        recalls: r.try_get("recalls")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

fn tickets(rows: &[AnyRow]) -> Result<Vec<Ticket>> {
    Ok(rows
        .iter()
        .map(ticket)
        .collect::<std::result::Result<_, _>>()?)
}

/// The queue rules of a branch, from its configuration.
pub fn rules(b: &Branch) -> Rules {
    Rules {
        booking_window: b.booking_window.as_millis() as i64,
        transfer_max_wait: b.transfer_max_wait.as_millis() as i64,
    }
}

/// A service's waiting-time rules (ms).
pub fn targets(b: &Branch, service: &str) -> Targets {
    b.service(service).map_or(
        Targets {
            target_wait: 600_000,
            max_wait: 1_800_000,
        },
        |s| Targets {
            target_wait: s.target_wait.as_millis() as i64,
            max_wait: s.max_wait.as_millis() as i64,
        },
    )
}

/// The queue rules' view of a waiting ticket.
pub fn waiting(b: &Branch, t: &Ticket) -> Waiting {
    Waiting {
        id: t.id.clone(),
        number: t.number,
        service: t.service.clone(),
        queued_since: t.queued_since,
        boost: t
            .priority_group
            .as_deref()
            .and_then(|g| b.priority_group(g))
            .map_or(0, |g| g.boost.as_millis() as i64),
        booking_slot: t.booking_slot,
        assigned_desk: t.assigned_desk.clone(),
        transferred_at: t.transferred_at,
    }
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

/// Refuses a key used again with another request than its first.
fn same_request(first: &str, now: &str) -> Result<()> {
    // Keys remembered before requests were kept have none: a replay.
    if first.is_empty() || first == now {
        return Ok(());
    }
    Err(StoreError::KeyReused(format!(
        "this Idempotency-Key was used for another request ({first}); use a new key for {now}"
    )))
}

/// How long PostgreSQL lets a session sit inside a transaction between
/// two statements before it ends the session (and frees its locks).
pub const IDLE_IN_TRANSACTION: Duration = Duration::from_millis(500);

impl Store {
    /// Connects and brings the schema up to date (both twins may do it at
    /// once: sqlx's migrator takes a lock).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // WAL: readers never block the writer; both twins
                        // may share the file. Wait for the other writer
                        // instead of failing at once.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = FULL")
                            .execute(&mut *conn)
                            .await?;
                    } else {
                        // Every change holds its branch's row lock for a
                        // few milliseconds. A twin that hangs inside one
                        // (SIGSTOP, a frozen VM) would hold it, and stall
                        // the other twin, until it resumed: the server
                        // ends such a session instead.
                        sqlx::query(&format!(
                            "SET idle_in_transaction_session_timeout = {}",
                            IDLE_IN_TRANSACTION.as_millis()
                        ))
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            // A connection goes back to the pool only outside any
            // transaction. After a failed statement (a full disk, above
            // all) SQLite may roll the transaction back by itself; sqlx's
            // own ROLLBACK then fails and sqlx still counts the
            // transaction as open, so the next `begin` on that connection
            // would open a mere savepoint, whose "commit" commits nothing
            // and whose locks stall the other twin. Such a connection is
            // closed instead (which ends whatever it still held).
            .after_release(|conn, _| {
                Box::pin(async move {
                    // Runs the rollback sqlx queued when a transaction was
                    // dropped, so the count below is the real one.
                    conn.ping().await?;
                    let clean = !conn.is_in_transaction();
                    if !clean {
                        tracing::warn!("closing a database connection left inside a transaction");
                    }
                    Ok(clean)
                })
            })
            .connect(url)
            .await?;
        // PostgreSQL's migrator takes an advisory lock; SQLite's takes
        // none, so two twins starting on a new file may race: the loser's
        // transaction rolls back, and a second look finds it applied.
        let mut attempt = 0;
        loop {
            match sqlx::migrate!("./migrations").run(&pool).await {
                Ok(()) => break,
                Err(e) if attempt < 10 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "schema migration failed; trying again");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Store { pool })
    }

    /// A cheap check that the database answers (for `/ready`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Begins a change of `branch`: the transaction holds the branch's
    /// lock from its first statement on.
    async fn begin(&self, branch: &str) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.pool.begin().await?;
        let bumped = sqlx::query("UPDATE branch_state SET version = version + 1 WHERE branch = $1")
            .bind(branch)
            .execute(&mut *tx)
            .await?;
        if bumped.rows_affected() == 0 {
            sqlx::query("INSERT INTO branch_state (branch, version) VALUES ($1, 1) ON CONFLICT (branch) DO UPDATE SET version = branch_state.version + 1")
                .bind(branch)
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// What `key` already did (the ticket it acted on; empty for a desk
    /// opened or closed): `Some` for a replay of the same `request`, an
    /// error for the key used with another one.
    async fn replayed(
        tx: &mut sqlx::AnyConnection,
        branch: &str,
        key: Option<&str>,
        request: &str,
    ) -> Result<Option<String>> {
        let Some(key) = key else { return Ok(None) };
        let row = sqlx::query(
            "SELECT ticket_id, request FROM idempotency WHERE branch = $1 AND key = $2",
        )
        .bind(branch)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let first: String = r.try_get("request")?;
        same_request(&first, request)?;
        Ok(Some(r.try_get("ticket_id")?))
    }

    /// Remembers, in the action's own transaction, that `key` asked for
    /// `request` and acted on `ticket`: a repeat of the same press gets the
    /// same answer.
    async fn remember(
        tx: &mut sqlx::AnyConnection,
        branch: &str,
        key: Option<&str>,
        request: &str,
        ticket: &str,
        now: Millis,
    ) -> Result<()> {
        let Some(key) = key else { return Ok(()) };
        sqlx::query(
            "INSERT INTO idempotency (branch, key, ticket_id, created_at, request) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(branch)
        .bind(key)
        .bind(ticket)
        .bind(now)
        .bind(request)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn branch() -> Branch {
        let text = crate::config::tests::GOOD;
        let d = crate::config::tests::dir_with_tokens("store");
        crate::config::parse(&d.join("t.yaml"), text)
            .unwrap()
            .branches["centrum"]
            .clone()
    }

    fn warsaw(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> Millis {
        chrono_tz::Europe::Warsaw
            .with_ymd_and_hms(y, m, d, h, min, s)
            .earliest()
            .unwrap()
            .timestamp_millis()
    }

    /// Numbers restart at the branch's local midnight, on the days the
    /// clocks change too, and a replayed key gives the first ticket.
    #[tokio::test]
    async fn numbers_restart_at_local_midnight_including_dst_days() {
        let dir = std::env::temp_dir().join(format!("twinport-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
        let store = Store::connect(&url, 2).await.unwrap();
        let b = branch();
        let a = IssueRequest::Service {
            service: "A".into(),
            priority_group: None,
        };
        let mut n = 0;
        let mut issue = |at: Millis| {
            n += 1;
            let key = format!("k{n}");
            let (store, b, a) = (store.clone(), b.clone(), a.clone());
            async move { store.issue(&b, &a, &key, at).await.unwrap().0.display }
        };
        // Fall back (25 October 2026): 23:59:59 and 00:00:00 local.
        assert_eq!(issue(warsaw(2026, 10, 24, 23, 59, 58)).await, "A001");
        assert_eq!(issue(warsaw(2026, 10, 24, 23, 59, 59)).await, "A002");
        assert_eq!(issue(warsaw(2026, 10, 25, 0, 0, 0)).await, "A001");
        // The repeated hour (02:00-03:00 twice) is the same day.
        assert_eq!(issue(warsaw(2026, 10, 25, 2, 30, 0)).await, "A002");
        assert_eq!(issue(warsaw(2026, 10, 25, 23, 59, 59)).await, "A003");
        assert_eq!(issue(warsaw(2026, 10, 26, 0, 0, 0)).await, "A001");
        // Spring forward (29 March 2026).
        assert_eq!(issue(warsaw(2026, 3, 29, 0, 0, 1)).await, "A001");
        assert_eq!(issue(warsaw(2026, 3, 29, 3, 0, 0)).await, "A002");
        assert_eq!(issue(warsaw(2026, 3, 30, 0, 0, 0)).await, "A001");
        // 23:30 UTC on 25 November is already the 26th in Warsaw.
        let utc = chrono::Utc
            .with_ymd_and_hms(2026, 11, 25, 23, 30, 0)
            .unwrap()
            .timestamp_millis();
        let t = store.issue(&b, &a, "utc", utc).await.unwrap().0;
        assert_eq!((t.day.as_str(), t.display.as_str()), ("2026-11-26", "A001"));
        let (again, replayed) = store.issue(&b, &a, "utc", utc + 5).await.unwrap();
        assert!(replayed);
        assert_eq!(again.id, t.id);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
