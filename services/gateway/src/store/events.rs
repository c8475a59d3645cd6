//! The event log (`events`): what happened to each device, appended in batches, read newest
//! first. Details are JSON and never hold secrets.

use sqlx::FromRow;
use sqlx::sqlite::SqliteConnection;
use tracing::instrument;

use super::{Store, StoreError, check_limit};
use crate::domain::{Event, EventId, Millis, NewEvent, check_batch};

#[derive(Debug, FromRow)]
struct EventRow {
    id: i64,
    dev_id: Option<String>,
    kind: String,
    detail: String,
    at: i64,
}

fn to_event(r: EventRow) -> Result<Event, StoreError> {
    let detail = serde_json::from_str(&r.detail)
        .map_err(|e| StoreError::corrupt("events.detail", e.to_string()))?;
    Ok(Event {
        id: EventId(r.id),
        dev_id: r.dev_id,
        kind: r.kind,
        detail,
        at: Millis(r.at),
    })
}

/// Append events, in order. Returns their ids.
#[instrument(skip_all, fields(count = events.len()))]
pub async fn log(
    conn: &mut SqliteConnection,
    events: &[NewEvent],
) -> Result<Vec<EventId>, StoreError> {
    check_batch("events", events.len())?;
    let details = events
        .iter()
        .map(NewEvent::validate)
        .collect::<Result<Vec<String>, _>>()?;
    let mut ids = Vec::with_capacity(events.len());
    for (e, detail) in events.iter().zip(details) {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO events (dev_id, kind, detail, at) VALUES (?1, ?2, ?3, ?4) RETURNING id",
        )
        .bind(e.dev_id.as_deref())
        .bind(&e.kind)
        .bind(detail)
        .bind(e.at.0)
        .fetch_one(&mut *conn)
        .await?;
        ids.push(EventId(id));
    }
    Ok(ids)
}

/// The latest `limit` events of `dev_id`, newest first.
#[instrument(skip_all, fields(dev_id = %dev_id, limit = limit))]
pub async fn for_device(
    conn: &mut SqliteConnection,
    dev_id: &str,
    limit: u32,
) -> Result<Vec<Event>, StoreError> {
    let limit = check_limit(limit)?;
    let rows: Vec<EventRow> = sqlx::query_as(
        "SELECT id, dev_id, kind, detail, at FROM events WHERE dev_id = ?1 \
         ORDER BY id DESC LIMIT ?2",
    )
    .bind(dev_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(to_event).collect()
}

/// When the device's current onboarding began: its latest `discovered` event.
pub async fn onboarding_started(
    conn: &mut SqliteConnection,
    dev_id: &str,
) -> Result<Option<Millis>, StoreError> {
    let at: Option<(i64,)> = sqlx::query_as(
        "SELECT at FROM events WHERE dev_id = ?1 AND kind = 'discovered' ORDER BY id DESC LIMIT 1",
    )
    .bind(dev_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(at.map(|(at,)| Millis(at)))
}

impl Store {
    /// When the device's current onboarding began (see [`onboarding_started`]); `None` also when
    /// the store cannot say (the onboarding-latency metric then skips the device).
    pub async fn onboarding_started(&self, dev_id: &str) -> Option<Millis> {
        let mut conn = self.conn().await.ok()?;
        onboarding_started(&mut conn, dev_id).await.ok().flatten()
    }

    /// Append events in one transaction (see [`log`]).
    #[instrument(skip_all, fields(count = events.len()))]
    pub async fn log_events(&self, events: &[NewEvent]) -> Result<Vec<EventId>, StoreError> {
        let mut tx = self.begin().await?;
        let out = log(&mut tx, events).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// The latest events of a device, newest first (see [`for_device`]).
    #[instrument(skip_all, fields(dev_id = %dev_id, limit = limit))]
    pub async fn device_events(&self, dev_id: &str, limit: u32) -> Result<Vec<Event>, StoreError> {
        let mut conn = self.conn().await?;
        for_device(&mut conn, dev_id, limit).await
    }
}
