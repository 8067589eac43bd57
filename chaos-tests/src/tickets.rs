//! Tickets issued (what the store holds) against tickets acknowledged
//! (what the kiosks printed): none lost, none doubled.

use crate::load::Ack;
use serde::Serialize;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};

/// One ticket as the store holds it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: String,
    pub display: String,
    pub day: String,
    /// The Idempotency-Key it was issued under.
    pub key: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Audit {
    /// Tickets in the store.
    pub issued: usize,
    /// Tickets the kiosks printed.
    pub acknowledged: usize,
    /// Printed, but not in the store.
    pub lost: usize,
    /// One touch that became two tickets, one number given twice, or two
    /// touches printed with the same ticket.
    pub doubled: usize,
    /// In the store under a key no kiosk printed (a kiosk gave up), or
    /// under no key at all.
    pub unacknowledged: usize,
    /// The first few lost or doubled tickets, to look into.
    pub examples: Vec<String>,
}

/// Compares the store with the kiosks' acknowledgements.
pub fn audit(stored: &[Stored], acks: &[Ack]) -> Audit {
    let by_id: BTreeMap<&str, &Stored> = stored.iter().map(|t| (t.id.as_str(), t)).collect();
    let mut examples = Vec::new();
    let lost = acks
        .iter()
        .filter(|a| {
            by_id
                .get(a.id.as_str())
                .is_none_or(|t| t.display != a.display)
        })
        .inspect(|a| {
            let held = by_id.get(a.id.as_str()).map(|t| t.display.as_str());
            examples.push(format!(
                "lost: {} printed {} ({}), the store has {held:?}",
                a.key, a.display, a.id
            ));
        })
        .count();
    let mut doubled = 0;
    // The same number twice on one day.
    let mut numbers = BTreeSet::new();
    for t in stored {
        if !numbers.insert((t.day.as_str(), t.display.as_str())) {
            doubled += 1;
            examples.push(format!("doubled: number {} twice", t.display));
        }
    }
    // One key, two tickets.
    let mut keys = BTreeSet::new();
    for k in stored.iter().filter_map(|t| t.key.as_deref()) {
        if !keys.insert(k) {
            doubled += 1;
        }
    }
    // Two touches, one ticket printed twice.
    let mut printed = BTreeSet::new();
    for a in acks {
        if !printed.insert(a.id.as_str()) {
            doubled += 1;
        }
    }
    let acked: BTreeSet<&str> = acks.iter().map(|a| a.key.as_str()).collect();
    let unacknowledged = stored
        .iter()
        .filter(|t| t.key.as_deref().is_none_or(|k| !acked.contains(k)))
        .count();
    Audit {
        issued: stored.len(),
        acknowledged: acks.len(),
        lost,
        doubled,
        unacknowledged,
        examples: examples.into_iter().take(5).collect(),
    }
}

/// Reads every ticket of `branch` with the key it was issued under (the
/// kiosk's own key: the store keeps it as `kiosk:{key}`).
pub async fn read(database: &str, branch: &str) -> anyhow::Result<Vec<Stored>> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(database)
        .await?;
    let rows = sqlx::query(
        "SELECT t.id, t.display, t.day, i.key FROM tickets t \
         LEFT JOIN idempotency i ON i.branch = t.branch AND i.ticket_id = t.id \
         AND i.key LIKE 'kiosk:%' WHERE t.branch = $1",
    )
    .bind(branch)
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    rows.iter()
        .map(|r| {
            Ok(Stored {
                id: r.try_get("id")?,
                display: r.try_get("display")?,
                day: r.try_get("day")?,
                key: r
                    .try_get::<Option<String>, _>("key")?
                    .map(|k| k.strip_prefix("kiosk:").unwrap_or(&k).to_string()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: &str, display: &str, key: &str) -> Stored {
        Stored {
            id: id.into(),
            display: display.into(),
            day: "2026-11-25".into(),
            key: Some(key.into()),
        }
    }

    fn ack(key: &str, id: &str, display: &str) -> Ack {
        Ack {
            key: key.into(),
            id: id.into(),
            display: display.into(),
        }
    }

    #[test]
    fn a_clean_run_has_nothing_lost_or_doubled() {
        let s = [stored("1", "A001", "k1"), stored("2", "A002", "k2")];
        let a = [ack("k1", "1", "A001"), ack("k2", "2", "A002")];
        let r = audit(&s, &a);
        assert_eq!(
            (
                r.issued,
                r.acknowledged,
                r.lost,
                r.doubled,
                r.unacknowledged
            ),
            (2, 2, 0, 0, 0)
        );
    }

    #[test]
    fn lost_doubled_and_unacknowledged_tickets_are_counted() {
        // k1 printed but missing; k2 issued twice; A003 given twice;
        // k9 in the store but never printed.
        let s = [
            stored("2", "A002", "k2"),
            stored("3", "A003", "k2"),
            stored("4", "A003", "k3"),
            stored("9", "A009", "k9"),
        ];
        let a = [
            ack("k1", "1", "A001"),
            ack("k2", "2", "A002"),
            ack("k3", "4", "A003"),
        ];
        let r = audit(&s, &a);
        assert_eq!(r.lost, 1);
        assert_eq!(r.doubled, 2);
        assert_eq!(r.unacknowledged, 1);
        // A printed number that differs from the store's is lost too.
        let r = audit(&[stored("1", "A001", "k1")], &[ack("k1", "1", "A002")]);
        assert_eq!(r.lost, 1);
    }
}
