//! Bookings: a code for a service at a slot, cancelled or checked in at
//! the kiosk (see [`Store::issue`]). A booking keeps what the visit needs
//! and nothing personal.

use super::{Result, Store, StoreError};
use crate::calendar::{day_of, Millis};
use crate::config::Branch;
use serde::Serialize;
use sqlx::Row;

/// A booked visit: a code and a slot, no personal data.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Booking {
    /// What the visitor types at a kiosk.
    #[schema(example = "K7M2QX9P")]
    pub code: String,
    pub service: String,
    /// Unix ms.
    pub slot: i64,
    /// The branch-local day, YYYY-MM-DD.
    pub day: String,
    /// `booked`, `checked_in` or `cancelled`.
    pub status: String,
    /// The ticket it checked in as.
    pub ticket_id: Option<String>,
}

/// Booking codes: 8 characters without look-alikes (0/O, 1/I/L).
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

impl Store {
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
