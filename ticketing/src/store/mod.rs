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

pub mod day;

use crate::calendar::{day_of, Millis};
use crate::config::{Branch, Desk};
use crate::queue::{self, Rules, Targets, Waiting};
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

/// What a kiosk asks for: a service (with an optional priority group), or
/// the check-in of a booking.
#[derive(Debug, Clone)]
pub enum IssueRequest {
    Service {
        service: String,
        priority_group: Option<String>,
    },
    Booking {
        code: String,
    },
}

impl IssueRequest {
    /// What the request asks for, kept with its key.
    fn fingerprint(&self) -> String {
        match self {
            IssueRequest::Service {
                service,
                priority_group,
            } => match priority_group {
                Some(g) => format!("issue {service} {g}"),
                None => format!("issue {service}"),
            },
            IssueRequest::Booking { code } => format!("check-in {code}"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Booking {
    pub code: String,
    pub service: String,
    pub slot: i64,
    pub day: String,
    pub status: String,
    pub ticket_id: Option<String>,
}

/// What a desk does to its current ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeskAction {
    Recall,
    Start,
    Finish,
    NoShow,
}

impl DeskAction {
    fn allowed_from(self) -> &'static [&'static str] {
        match self {
            DeskAction::Recall | DeskAction::NoShow => &["called"],
            DeskAction::Start => &["called"],
            DeskAction::Finish => &["serving", "called"],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeskAction::Recall => "recall",
            DeskAction::Start => "start",
            DeskAction::Finish => "finish",
            DeskAction::NoShow => "no-show",
        }
    }
}

/// Where a transfer sends a ticket.
#[derive(Debug, Clone)]
pub enum TransferTo {
    Service(String),
    Desk(String),
}

impl TransferTo {
    fn fingerprint(&self) -> String {
        match self {
            TransferTo::Service(s) => format!("transfer service {s}"),
            TransferTo::Desk(d) => format!("transfer desk {d}"),
        }
    }
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

/// Booking codes: 8 characters without look-alikes (0/O, 1/I/L).
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

fn display(prefix: &str, number: i64) -> String {
    format!("{prefix}{number:03}")
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

    /// The version of every branch (changes since the last look mean a
    /// fresh view is due).
    pub async fn versions(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT branch, version FROM branch_state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("branch")?, r.try_get("version")?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Issues a ticket (or checks a booking in), exactly once per `key`.
    /// Returns the ticket and whether it was issued before (a replay).
    pub async fn issue(
        &self,
        b: &Branch,
        req: &IssueRequest,
        key: &str,
        now: Millis,
    ) -> Result<(Ticket, bool)> {
        let mut tx = self.begin(&b.id).await?;
        let request = req.fingerprint();
        let fresh = sqlx::query("INSERT INTO idempotency (branch, key, ticket_id, created_at, request) VALUES ($1, $2, '', $3, $4) ON CONFLICT (branch, key) DO NOTHING")
            .bind(&b.id)
            .bind(key)
            .bind(now)
            .bind(&request)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !fresh {
            tx.rollback().await?;
            let row = sqlx::query(
                "SELECT ticket_id, request FROM idempotency WHERE branch = $1 AND key = $2",
            )
            .bind(&b.id)
            .bind(key)
            .fetch_one(&self.pool)
            .await?;
            same_request(&row.try_get::<String, _>("request")?, &request)?;
            let id: String = row.try_get("ticket_id")?;
            let t = self
                .ticket(&id)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("ticket {id}")))?;
            return Ok((t, true));
        }
        let day = day_of(b.tz, now);
        let (service, priority_group, booking) = match req {
            IssueRequest::Service {
                service,
                priority_group,
            } => (service.clone(), priority_group.clone(), None),
            IssueRequest::Booking { code } => {
                let row = sqlx::query("SELECT service, slot, day, status, ticket_id FROM bookings WHERE branch = $1 AND code = $2")
                    .bind(&b.id)
                    .bind(code)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("no booking with code {code} in this branch")))?;
                let (bday, status): (String, String) =
                    (row.try_get("day")?, row.try_get("status")?);
                if bday != day {
                    return Err(StoreError::Invalid(format!(
                        "booking {code} is for {bday}, not today ({day})"
                    )));
                }
                match status.as_str() {
                    "cancelled" => {
                        return Err(StoreError::Conflict(format!(
                            "booking {code} was cancelled"
                        )))
                    }
                    "checked_in" => {
                        return Err(StoreError::Conflict(format!(
                            "booking {code} is already checked in"
                        )))
                    }
                    _ => {}
                }
                let slot: i64 = row.try_get("slot")?;
                (row.try_get("service")?, None, Some((code.clone(), slot)))
            }
        };
        sqlx::query("INSERT INTO counters (branch, service, day, last_number) VALUES ($1, $2, $3, 0) ON CONFLICT (branch, service, day) DO NOTHING")
            .bind(&b.id)
            .bind(&service)
            .bind(&day)
            .execute(&mut *tx)
            .await?;
        let number: i64 = sqlx::query("UPDATE counters SET last_number = last_number + 1 WHERE branch = $1 AND service = $2 AND day = $3 RETURNING last_number")
            .bind(&b.id)
            .bind(&service)
            .bind(&day)
            .fetch_one(&mut *tx)
            .await?
            .try_get("last_number")?;
        let t = Ticket {
            id: uuid::Uuid::new_v4().simple().to_string(),
            branch: b.id.clone(),
            service: service.clone(),
            number_service: service.clone(),
            day,
            number,
            display: display(&service, number),
            priority_group,
            booking_code: booking.as_ref().map(|(c, _)| c.clone()),
            booking_slot: booking.as_ref().map(|(_, s)| *s),
            issued_at: now,
            queued_since: now,
            status: "waiting".into(),
            desk: None,
            assigned_desk: None,
            transferred_at: None,
            called_at: None,
            recalls: 0,
            started_at: None,
            finished_at: None,
        };
        sqlx::query(&format!("INSERT INTO tickets ({TICKET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"))
            .bind(&t.id)
            .bind(&t.branch)
            .bind(&t.service)
            .bind(&t.number_service)
            .bind(&t.day)
            .bind(t.number)
            .bind(&t.display)
            .bind(t.priority_group.clone())
            .bind(t.booking_code.clone())
            .bind(t.booking_slot)
            .bind(t.issued_at)
            .bind(t.queued_since)
            .bind(&t.status)
            .bind(t.desk.clone())
            .bind(t.assigned_desk.clone())
            .bind(t.transferred_at)
            .bind(t.called_at)
            .bind(t.recalls)
            .bind(t.started_at)
            .bind(t.finished_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE idempotency SET ticket_id = $1 WHERE branch = $2 AND key = $3")
            .bind(&t.id)
            .bind(&b.id)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        if let Some((code, _)) = &booking {
            sqlx::query("UPDATE bookings SET status = 'checked_in', ticket_id = $1 WHERE branch = $2 AND code = $3")
                .bind(&t.id)
                .bind(&b.id)
                .bind(code)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((t, false))
    }

    pub async fn ticket(&self, id: &str) -> Result<Option<Ticket>> {
        let row = sqlx::query(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(ticket).transpose()?)
    }

    /// How many wait for each service of `branch` on its local `day`.
    pub async fn waiting_counts(
        &self,
        branch: &str,
        day: &str,
    ) -> Result<std::collections::HashMap<String, usize>> {
        let rows = sqlx::query("SELECT service, COUNT(*) AS n FROM tickets WHERE branch = $1 AND day = $2 AND status = 'waiting' GROUP BY service")
            .bind(branch)
            .bind(day)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("service")?, r.try_get::<i64, _>("n")? as usize)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Per service, since when (ms) the visitor who has waited longest on
    /// the local `day` waits.
    pub async fn oldest_waiting(
        &self,
        branch: &str,
        day: &str,
    ) -> Result<std::collections::HashMap<String, i64>> {
        let rows = sqlx::query("SELECT service, MIN(queued_since) AS since FROM tickets WHERE branch = $1 AND day = $2 AND status = 'waiting' GROUP BY service")
            .bind(branch)
            .bind(day)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("service")?, r.try_get::<i64, _>("since")?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// How many of the same service and day wait before `t`.
    pub async fn ahead_of(&self, t: &Ticket) -> Result<usize> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM tickets WHERE branch = $1 AND day = $6 AND status = 'waiting' AND service = $2 AND (queued_since < $3 OR (queued_since = $4 AND id < $5))")
            .bind(&t.branch)
            .bind(&t.service)
            .bind(t.queued_since)
            .bind(t.queued_since)
            .bind(&t.id)
            .bind(&t.day)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(n as usize)
    }

    /// Tickets of `branch` issued on `day`.
    pub async fn tickets_of_day(&self, branch: &str, day: &str) -> Result<Vec<Ticket>> {
        let rows = sqlx::query(&format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE branch = $1 AND day = $2 ORDER BY issued_at, id"))
            .bind(branch)
            .bind(day)
            .fetch_all(&self.pool)
            .await?;
        tickets(&rows)
    }

    /// The most recently called tickets of `branch` on its local `day`
    /// (for boards).
    pub async fn recent_calls(&self, branch: &str, day: &str, limit: i64) -> Result<Vec<Ticket>> {
        let rows = sqlx::query(&format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE branch = $1 AND day = $2 AND status IN ('called', 'serving') AND called_at IS NOT NULL ORDER BY called_at DESC LIMIT $3"))
            .bind(branch)
            .bind(day)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        tickets(&rows)
    }

    /// The ticket a desk is handling (called or serving), if any, read
    /// through `e` (the pool, or a transaction that holds the branch).
    async fn current_in<'e, E>(e: E, branch: &str, desk: &str) -> Result<Option<Ticket>>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let row = sqlx::query(&format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE branch = $1 AND desk = $2 AND status IN ('called', 'serving')"))
            .bind(branch)
            .bind(desk)
            .fetch_optional(e)
            .await?;
        Ok(row.as_ref().map(ticket).transpose()?)
    }

    pub async fn current(&self, branch: &str, desk: &str) -> Result<Option<Ticket>> {
        Self::current_in(&self.pool, branch, desk).await
    }

    /// Calls the next visitor of the branch's current day to `desk` by the
    /// queue rules; `None` if nobody waits for what it serves. Refused
    /// while the desk still has one. With a `key` (the desk's
    /// `Idempotency-Key`, namespaced by the caller) the call happens once:
    /// a repeat returns the ticket the first one called, marked replayed.
    pub async fn call_next(
        &self,
        b: &Branch,
        desk: &Desk,
        key: Option<&str>,
        now: Millis,
    ) -> Result<Option<(Ticket, bool)>> {
        const REQUEST: &str = "call-next";
        let mut tx = self.begin(&b.id).await?;
        if let Some(id) = Self::replayed(&mut tx, &b.id, key, REQUEST).await? {
            tx.rollback().await?;
            return Ok(self.ticket(&id).await?.map(|t| (t, true)));
        }
        if let Some(cur) = Self::current_in(&mut *tx, &b.id, &desk.id).await? {
            return Err(StoreError::Conflict(format!(
                "desk {} still has {} ({}): finish it, mark it a no-show or transfer it first",
                desk.id, cur.display, cur.status
            )));
        }
        let rows = sqlx::query(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE branch = $1 AND day = $2 AND status = 'waiting'"
        ))
        .bind(&b.id)
        .bind(day_of(b.tz, now))
        .fetch_all(&mut *tx)
        .await?;
        let waiting = tickets(&rows)?;
        let queue: Vec<Waiting> = waiting.iter().map(|t| self::waiting(b, t)).collect();
        let targets = |s: &str| targets(b, s);
        let Some(pick) = queue::pick_next(&desk.id, &desk.services, &queue, targets, rules(b), now)
        else {
            tx.rollback().await?;
            return Ok(None);
        };
        let escalated = i64::from(queue::escalated(pick, targets(&pick.service), now));
        sqlx::query("UPDATE tickets SET status = 'called', desk = $1, called_at = $2, escalated = $3 WHERE id = $4 AND status = 'waiting'")
            .bind(&desk.id)
            .bind(now)
            .bind(escalated)
            .bind(&pick.id)
            .execute(&mut *tx)
            .await?;
        // Calling opens the desk (since now, if it was closed).
        sqlx::query("INSERT INTO desks (branch, desk, open, changed_at) VALUES ($1, $2, 1, $3) ON CONFLICT (branch, desk) DO UPDATE SET open = 1, changed_at = CASE WHEN desks.open = 1 THEN desks.changed_at ELSE excluded.changed_at END")
            .bind(&b.id)
            .bind(&desk.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let mut called = waiting
            .into_iter()
            .find(|t| t.id == pick.id)
            .expect("picked from these");
        Self::remember(&mut tx, &b.id, key, REQUEST, &called.id, now).await?;
        tx.commit().await?;
        called.status = "called".into();
        called.desk = Some(desk.id.clone());
        called.called_at = Some(now);
        Ok(Some((called, false)))
    }

    /// Recall, start, finish or no-show on the desk's current ticket;
    /// once per `key`, like [`Store::call_next`] (true: a replay).
    pub async fn desk_action(
        &self,
        b: &Branch,
        desk: &str,
        action: DeskAction,
        key: Option<&str>,
        now: Millis,
    ) -> Result<(Ticket, bool)> {
        let mut tx = self.begin(&b.id).await?;
        if let Some(id) = Self::replayed(&mut tx, &b.id, key, action.as_str()).await? {
            tx.rollback().await?;
            let t = self.ticket(&id).await?;
            return t.map(|t| (t, true)).ok_or(StoreError::NotFound(id));
        }
        let cur = Self::current_in(&mut *tx, &b.id, desk)
            .await?
            .ok_or_else(|| {
                StoreError::Conflict(format!(
                    "desk {desk} has no called ticket to {}",
                    action.as_str()
                ))
            })?;
        if !action.allowed_from().contains(&cur.status.as_str()) {
            return Err(StoreError::Conflict(format!(
                "cannot {} {}: it is {}",
                action.as_str(),
                cur.display,
                cur.status
            )));
        }
        let sql = match action {
            DeskAction::Recall => {
                "UPDATE tickets SET recalls = recalls + 1, called_at = $1 WHERE id = $2"
            }
            DeskAction::Start => {
                "UPDATE tickets SET status = 'serving', started_at = $1 WHERE id = $2"
            }
            DeskAction::Finish => {
                "UPDATE tickets SET status = 'done', finished_at = $1 WHERE id = $2"
            }
            DeskAction::NoShow => {
                "UPDATE tickets SET status = 'no_show', finished_at = $1 WHERE id = $2"
            }
        };
        sqlx::query(sql)
            .bind(now)
            .bind(&cur.id)
            .execute(&mut *tx)
            .await?;
        if action == DeskAction::Finish && cur.started_at.is_none() {
            sqlx::query("UPDATE tickets SET started_at = called_at WHERE id = $1")
                .bind(&cur.id)
                .execute(&mut *tx)
                .await?;
        }
        Self::remember(&mut tx, &b.id, key, action.as_str(), &cur.id, now).await?;
        tx.commit().await?;
        let t = self.ticket(&cur.id).await?;
        t.map(|t| (t, false)).ok_or(StoreError::NotFound(cur.id))
    }

    /// Sends the desk's current ticket back to the queue of another
    /// service, or to another (open) desk, keeping its waiting time; once
    /// per `key` like [`Store::call_next`] (true: a replay).
    pub async fn transfer(
        &self,
        b: &Branch,
        desk: &str,
        to: &TransferTo,
        key: Option<&str>,
        now: Millis,
    ) -> Result<(Ticket, bool)> {
        let request = to.fingerprint();
        let mut tx = self.begin(&b.id).await?;
        if let Some(id) = Self::replayed(&mut tx, &b.id, key, &request).await? {
            tx.rollback().await?;
            let t = self.ticket(&id).await?;
            return t.map(|t| (t, true)).ok_or(StoreError::NotFound(id));
        }
        let cur = Self::current_in(&mut *tx, &b.id, desk)
            .await?
            .ok_or_else(|| {
                StoreError::Conflict(format!("desk {desk} has no ticket to transfer"))
            })?;
        let (service, assigned, at) = match to {
            TransferTo::Service(s) => (s.clone(), None, None),
            TransferTo::Desk(d) => {
                // A ticket sent to a closed desk would wait for nobody.
                if !Self::desk_open_in(&mut tx, &b.id, d).await? {
                    return Err(StoreError::Conflict(format!(
                        "desk {d} is closed: transfer to an open desk or to a service"
                    )));
                }
                (cur.service.clone(), Some(d.clone()), Some(now))
            }
        };
        sqlx::query("UPDATE tickets SET status = 'waiting', service = $1, assigned_desk = $2, transferred_at = $3, desk = NULL, called_at = NULL, started_at = NULL WHERE id = $4")
            .bind(&service)
            .bind(assigned)
            .bind(at)
            .bind(&cur.id)
            .execute(&mut *tx)
            .await?;
        Self::remember(&mut tx, &b.id, key, &request, &cur.id, now).await?;
        tx.commit().await?;
        let t = self.ticket(&cur.id).await?;
        t.map(|t| (t, false)).ok_or(StoreError::NotFound(cur.id))
    }

    async fn desk_open_in(tx: &mut sqlx::AnyConnection, branch: &str, desk: &str) -> Result<bool> {
        let row = sqlx::query("SELECT open FROM desks WHERE branch = $1 AND desk = $2")
            .bind(branch)
            .bind(desk)
            .fetch_optional(&mut *tx)
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64, _>("open")? == 1,
            None => false,
        })
    }

    /// Sends the tickets waiting for `desk` (transferred to it) back to
    /// their services' queues, keeping their waiting time.
    async fn release_transfers(
        tx: &mut sqlx::AnyConnection,
        branch: &str,
        desk: &str,
    ) -> Result<u64> {
        Ok(sqlx::query("UPDATE tickets SET assigned_desk = NULL, transferred_at = NULL WHERE branch = $1 AND assigned_desk = $2 AND status = 'waiting'")
            .bind(branch)
            .bind(desk)
            .execute(&mut *tx)
            .await?
            .rows_affected())
    }

    /// Opens or closes a desk (open desks count in the wait estimates);
    /// closing it sends the tickets transferred to it back to their queues.
    /// Once per `key` (true: a replay, nothing changed).
    pub async fn set_desk_open(
        &self,
        b: &Branch,
        desk: &str,
        open: bool,
        key: Option<&str>,
        now: Millis,
    ) -> Result<bool> {
        let request = if open { "open" } else { "close" };
        let mut tx = self.begin(&b.id).await?;
        if Self::replayed(&mut tx, &b.id, key, request)
            .await?
            .is_some()
        {
            tx.rollback().await?;
            return Ok(true);
        }
        sqlx::query("INSERT INTO desks (branch, desk, open, changed_at) VALUES ($1, $2, $3, $4) ON CONFLICT (branch, desk) DO UPDATE SET open = excluded.open, changed_at = excluded.changed_at")
            .bind(&b.id)
            .bind(desk)
            .bind(i64::from(open))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if !open {
            Self::release_transfers(&mut tx, &b.id, desk).await?;
        }
        Self::remember(&mut tx, &b.id, key, request, "", now).await?;
        tx.commit().await?;
        Ok(false)
    }

    pub async fn open_desks(&self, branch: &str) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT desk FROM desks WHERE branch = $1 AND open = 1 ORDER BY desk")
                .bind(branch)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| r.try_get("desk"))
            .collect::<std::result::Result<_, _>>()
            .map_err(Into::into)
    }

    /// Mean service time (ms) of the service's last 20 visits today, if any.
    pub async fn recent_service_time(
        &self,
        branch: &str,
        service: &str,
        day: &str,
    ) -> Result<Option<i64>> {
        let rows = sqlx::query("SELECT started_at, finished_at FROM tickets WHERE branch = $1 AND service = $2 AND day = $3 AND status = 'done' AND started_at IS NOT NULL ORDER BY finished_at DESC LIMIT 20")
            .bind(branch)
            .bind(service)
            .bind(day)
            .fetch_all(&self.pool)
            .await?;
        let times: Vec<i64> = rows
            .iter()
            .filter_map(|r| {
                Some(
                    r.try_get::<i64, _>("finished_at").ok()?
                        - r.try_get::<i64, _>("started_at").ok()?,
                )
            })
            .collect();
        Ok((!times.is_empty()).then(|| times.iter().sum::<i64>() / times.len() as i64))
    }

    /// Creates a booking for `service` at `slot`; its code.
    pub async fn create_booking(
        &self,
        b: &Branch,
        service: &str,
        slot: Millis,
        now: Millis,
    ) -> Result<Booking> {
        let mut tx = self.begin(&b.id).await?;
        let day = day_of(b.tz, slot);
        let mut code = String::new();
        for _ in 0..5 {
            let raw = uuid::Uuid::new_v4();
            code = raw.as_bytes()[..8]
                .iter()
                .map(|x| CODE_ALPHABET[*x as usize % CODE_ALPHABET.len()] as char)
                .collect();
            let inserted = sqlx::query("INSERT INTO bookings (branch, code, service, slot, day, status, ticket_id, created_at) VALUES ($1, $2, $3, $4, $5, 'booked', NULL, $6) ON CONFLICT (branch, code) DO NOTHING")
                .bind(&b.id)
                .bind(&code)
                .bind(service)
                .bind(slot)
                .bind(&day)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if inserted == 1 {
                tx.commit().await?;
                return Ok(Booking {
                    code,
                    service: service.into(),
                    slot,
                    day,
                    status: "booked".into(),
                    ticket_id: None,
                });
            }
        }
        Err(StoreError::Conflict(format!(
            "could not find a free booking code (last tried {code})"
        )))
    }

    pub async fn cancel_booking(&self, b: &Branch, code: &str) -> Result<()> {
        let mut tx = self.begin(&b.id).await?;
        let n = sqlx::query("UPDATE bookings SET status = 'cancelled' WHERE branch = $1 AND code = $2 AND status = 'booked'")
            .bind(&b.id)
            .bind(code)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            let exists = sqlx::query("SELECT status FROM bookings WHERE branch = $1 AND code = $2")
                .bind(&b.id)
                .bind(code)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(match exists {
                None => StoreError::NotFound(format!("no booking with code {code} in this branch")),
                Some(r) => StoreError::Conflict(format!(
                    "booking {code} is {}",
                    r.try_get::<String, _>("status")?
                )),
            });
        }
        tx.commit().await?;
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
