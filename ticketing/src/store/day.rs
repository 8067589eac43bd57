//! The day close: at the end of a branch's local day (its closing time, or
//! midnight when it is open until 24:00 or closed that day), every ticket
//! of that day or before still waiting, called or being served becomes
//! `not_served` (its `finished_at` the end of its own day, so statistics
//! keep its waiting time), the desks opened before the end are closed,
//! tickets transferred to them go back to their queues, and idempotency
//! keys older than the retention are deleted.
//!
//! Whichever twin gets there first closes the day: the close is one
//! transaction under the branch's lock that first looks for the day's row
//! in `day_closes`, so the second finds it and does nothing. A twin that
//! starts closes any ended day left open (a branch that was down at its
//! closing time); closing the newest ended day closes every earlier one
//! with it.

use super::{Result, Store};
use crate::calendar::Millis;
use crate::config::Branch;
use sqlx::Row;

/// What a close did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayClosed {
    /// The branch-local day closed (`YYYY-MM-DD`).
    pub day: String,
    /// Tickets that became `not_served`.
    pub not_served: u64,
    /// Desks closed.
    pub desks_closed: u64,
    /// Idempotency keys purged.
    pub keys_purged: u64,
}

impl Store {
    /// Closes the newest day of `b` that has ended at `now`, unless that
    /// was done already (`None`). Keys older than `retention` (ms) are
    /// purged.
    pub async fn close_ended_day(
        &self,
        b: &Branch,
        retention: i64,
        now: Millis,
    ) -> Result<Option<DayClosed>> {
        let (day, end) = b.hours.last_ended_day(b.tz, now);
        // The usual answer, without taking the branch's lock.
        if self.day_closed(&b.id, &day).await? {
            return Ok(None);
        }
        let mut tx = self.begin(&b.id).await?;
        let done = sqlx::query("SELECT day FROM day_closes WHERE branch = $1 AND day = $2")
            .bind(&b.id)
            .bind(&day)
            .fetch_optional(&mut *tx)
            .await?;
        if done.is_some() {
            tx.rollback().await?;
            return Ok(None);
        }
        // Every day up to this one with tickets left unfinished, each
        // ended at its own end.
        let days: Vec<String> = sqlx::query("SELECT DISTINCT day FROM tickets WHERE branch = $1 AND day <= $2 AND status IN ('waiting', 'called', 'serving')")
            .bind(&b.id)
            .bind(&day)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get("day"))
            .collect::<std::result::Result<_, _>>()?;
        let mut not_served = 0;
        for d in &days {
            let ended = b.hours.day_end(b.tz, d).unwrap_or(end).min(now);
            not_served += sqlx::query("UPDATE tickets SET status = 'not_served', finished_at = $1 WHERE branch = $2 AND day = $3 AND status IN ('waiting', 'called', 'serving')")
                .bind(ended)
                .bind(&b.id)
                .bind(d)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        // Desks opened before the end; one opened since (the first clerk
        // of the morning, before this twin started) stays open.
        let desks: Vec<String> = sqlx::query(
            "SELECT desk FROM desks WHERE branch = $1 AND open = 1 AND changed_at < $2",
        )
        .bind(&b.id)
        .bind(end)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("desk"))
        .collect::<std::result::Result<_, _>>()?;
        for d in &desks {
            sqlx::query(
                "UPDATE desks SET open = 0, changed_at = $1 WHERE branch = $2 AND desk = $3",
            )
            .bind(end)
            .bind(&b.id)
            .bind(d)
            .execute(&mut *tx)
            .await?;
            Self::release_transfers(&mut tx, &b.id, d).await?;
        }
        let keys_purged =
            sqlx::query("DELETE FROM idempotency WHERE branch = $1 AND created_at < $2")
                .bind(&b.id)
                .bind(now - retention)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        sqlx::query("INSERT INTO day_closes (branch, day, closed_at, not_served) VALUES ($1, $2, $3, $4) ON CONFLICT (branch, day) DO NOTHING")
            .bind(&b.id)
            .bind(&day)
            .bind(now)
            .bind(not_served as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(DayClosed {
            day,
            not_served,
            desks_closed: desks.len() as u64,
            keys_purged,
        }))
    }

    /// Whether the branch's `day` was closed.
    pub async fn day_closed(&self, branch: &str, day: &str) -> Result<bool> {
        Ok(
            sqlx::query("SELECT day FROM day_closes WHERE branch = $1 AND day = $2")
                .bind(branch)
                .bind(day)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }
}
