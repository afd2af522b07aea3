//! Events copied in from another store ([`EventStore::import`]): inserted as
//! deliveries are (`catalog_insert_events`: each product's lock, ready when
//! the product has no other pending event, a known id skipped), then given
//! the dispatch state they had there, in one transaction, so that no
//! replica's dispatcher sees an imported event before its attempts and due
//! time are its own.
//!
//! [`EventStore::import`]: crate::store::EventStore::import

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;

use super::insert_batch::insert_events;
use crate::store::{NewEvent, StoredEvent};

/// Imports `events` in the order given; for each, whether it was stored.
pub(super) async fn import(
    pool: &PgPool,
    events: &[StoredEvent],
) -> Result<Vec<bool>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let new: Vec<&NewEvent> = events.iter().map(|e| &e.event).collect();
    // No lock timeout: a copy waits for live replicas' batches of the same
    // products rather than fail.
    let inserted = insert_events(&mut *tx, &new, None).await?;
    let stored: Vec<&StoredEvent> = events
        .iter()
        .zip(&inserted)
        .filter_map(|(e, &inserted)| inserted.then_some(e))
        .collect();
    if !stored.is_empty() {
        sqlx::query(
            "UPDATE events e SET attempts = u.attempts, last_error = u.last_error, \
             next_attempt_at = u.next_attempt_at \
             FROM unnest($1::text[], $2::integer[], $3::text[], $4::timestamptz[]) \
               AS u(id, attempts, last_error, next_attempt_at) \
             WHERE e.id = u.id",
        )
        .bind(
            stored
                .iter()
                .map(|e| e.event.id.clone())
                .collect::<Vec<String>>(),
        )
        .bind(
            stored
                .iter()
                .map(|e| i32::try_from(e.attempts).unwrap_or(i32::MAX))
                .collect::<Vec<i32>>(),
        )
        .bind(
            stored
                .iter()
                .map(|e| e.last_error.clone())
                .collect::<Vec<Option<String>>>(),
        )
        .bind(
            stored
                .iter()
                .map(|e| e.next_attempt_at)
                .collect::<Vec<DateTime<Utc>>>(),
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(inserted)
}
