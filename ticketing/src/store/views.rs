//! Reads for the views, the gauges and the statistics: a ticket, the
//! queue of the branch's day (counts, the oldest waiting, positions, the
//! board's calls), a day's tickets and recent service times.

use super::{ticket, tickets, Result, Store, Ticket, TICKET_COLUMNS};
use sqlx::Row;

impl Store {
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
}
