//! What a desk does: call the next visitor by the queue rules, act on its
//! current ticket (recall, start, finish, no-show, transfer), open and
//! close. Every action is one transaction under the branch's lock, once
//! per `Idempotency-Key`.

use super::{rules, targets, ticket, tickets, Result, Store, StoreError, Ticket, TICKET_COLUMNS};
use crate::calendar::{day_of, Millis};
use crate::config::{Branch, Desk};
use crate::queue::{self, Waiting};
use sqlx::Row;

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

impl Store {
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
        let queue: Vec<Waiting> = waiting.iter().map(|t| super::waiting(b, t)).collect();
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
            return self.acted_on(id, true).await;
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
        self.acted_on(cur.id, false).await
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
            return self.acted_on(id, true).await;
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
        self.acted_on(cur.id, false).await
    }

    /// The ticket a desk action acted on, as it is now, and whether the
    /// answer is a replay.
    async fn acted_on(&self, id: String, replayed: bool) -> Result<(Ticket, bool)> {
        match self.ticket(&id).await? {
            Some(t) => Ok((t, replayed)),
            None => Err(StoreError::NotFound(id)),
        }
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
    pub(super) async fn release_transfers(
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
}
