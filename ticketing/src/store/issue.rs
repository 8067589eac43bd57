//! Issuing a ticket, or checking a booking in, exactly once per
//! `Idempotency-Key`: the number is taken and the ticket written in the
//! transaction that claims the key.

use super::{same_request, Result, Store, StoreError, Ticket, TICKET_COLUMNS};
use crate::calendar::{day_of, Millis};
use crate::config::Branch;
use sqlx::Row;

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

fn display(prefix: &str, number: i64) -> String {
    format!("{prefix}{number:03}")
}

/// What a ticket is issued for, once a request is resolved: its service,
/// priority group and the booking (code, slot) it checks in.
struct Resolved {
    service: String,
    priority_group: Option<String>,
    booking: Option<(String, i64)>,
}

impl Store {
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
            return Ok((self.issued_before(b, key, &request).await?, true));
        }
        let day = day_of(b.tz, now);
        let r = resolve(&mut tx, b, req, &day).await?;
        let number = next_number(&mut tx, &b.id, &r.service, &day).await?;
        let t = Ticket {
            id: uuid::Uuid::new_v4().simple().to_string(),
            branch: b.id.clone(),
            service: r.service.clone(),
            number_service: r.service.clone(),
            day,
            number,
            display: display(&r.service, number),
            priority_group: r.priority_group,
            booking_code: r.booking.as_ref().map(|(c, _)| c.clone()),
            booking_slot: r.booking.as_ref().map(|(_, s)| *s),
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
        insert(&mut tx, &t).await?;
        sqlx::query("UPDATE idempotency SET ticket_id = $1 WHERE branch = $2 AND key = $3")
            .bind(&t.id)
            .bind(&b.id)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        if let Some((code, _)) = &r.booking {
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

    /// The ticket `key` issued before, if it asked for the same `request`.
    async fn issued_before(&self, b: &Branch, key: &str, request: &str) -> Result<Ticket> {
        let row = sqlx::query(
            "SELECT ticket_id, request FROM idempotency WHERE branch = $1 AND key = $2",
        )
        .bind(&b.id)
        .bind(key)
        .fetch_one(&self.pool)
        .await?;
        same_request(&row.try_get::<String, _>("request")?, request)?;
        let id: String = row.try_get("ticket_id")?;
        self.ticket(&id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("ticket {id}")))
    }
}

/// The service, group and booking of `req`; a booking must be for today
/// and neither cancelled nor checked in already.
async fn resolve(
    tx: &mut sqlx::AnyConnection,
    b: &Branch,
    req: &IssueRequest,
    day: &str,
) -> Result<Resolved> {
    let code = match req {
        IssueRequest::Service {
            service,
            priority_group,
        } => {
            return Ok(Resolved {
                service: service.clone(),
                priority_group: priority_group.clone(),
                booking: None,
            })
        }
        IssueRequest::Booking { code } => code,
    };
    let row = sqlx::query(
        "SELECT service, slot, day, status, ticket_id FROM bookings WHERE branch = $1 AND code = $2",
    )
    .bind(&b.id)
    .bind(code)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("no booking with code {code} in this branch")))?;
    let (bday, status): (String, String) = (row.try_get("day")?, row.try_get("status")?);
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
    Ok(Resolved {
        service: row.try_get("service")?,
        priority_group: None,
        booking: Some((code.clone(), row.try_get("slot")?)),
    })
}

/// The next number of (branch, service, day), taken in the transaction
/// that writes its ticket: numbers are contiguous.
async fn next_number(
    tx: &mut sqlx::AnyConnection,
    branch: &str,
    service: &str,
    day: &str,
) -> Result<i64> {
    sqlx::query("INSERT INTO counters (branch, service, day, last_number) VALUES ($1, $2, $3, 0) ON CONFLICT (branch, service, day) DO NOTHING")
        .bind(branch)
        .bind(service)
        .bind(day)
        .execute(&mut *tx)
        .await?;
    Ok(sqlx::query("UPDATE counters SET last_number = last_number + 1 WHERE branch = $1 AND service = $2 AND day = $3 RETURNING last_number")
        .bind(branch)
        .bind(service)
        .bind(day)
        .fetch_one(&mut *tx)
        .await?
        .try_get("last_number")?)
}

/// Writes a new ticket row.
async fn insert(tx: &mut sqlx::AnyConnection, t: &Ticket) -> Result<()> {
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
    Ok(())
}
