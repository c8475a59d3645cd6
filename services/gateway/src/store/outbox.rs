//! The alert outbox (`alert_outbox`): one row per device x server x alert, enqueued idempotently
//! by correlator, picked when due, marked delivered or failed in batches. Survives restarts.

use sqlx::FromRow;
use sqlx::sqlite::SqliteConnection;
use tracing::instrument;

use super::{
    Store, StoreError, check_limit, count_u32, count_u64, json_ids, next_cursor, parse_stored,
};
use crate::domain::{
    AlertCounts, AlertFilter, AlertId, AlertRow, AlertState, EnqueuedAlert, MAX_ERROR_LEN, Millis,
    NewAlert, Page, Paged, check_batch, truncate_text,
};

#[derive(Debug, FromRow)]
struct OutboxRow {
    id: i64,
    dev_id: String,
    server_id: String,
    alert_type: String,
    correlator: String,
    data: Option<String>,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
    created_at: i64,
    delivered_at: Option<i64>,
}

const COLUMNS: &str = "id, dev_id, server_id, alert_type, correlator, data, state, attempts, \
                       next_attempt_at, last_error, created_at, delivered_at";

fn to_alert(r: OutboxRow) -> Result<AlertRow, StoreError> {
    Ok(AlertRow {
        id: AlertId(r.id),
        state: parse_stored("alert_outbox.state", &r.state, AlertState::parse)?,
        attempts: count_u32("alert_outbox.attempts", r.attempts)?,
        dev_id: r.dev_id,
        server_id: r.server_id,
        alert_type: r.alert_type,
        correlator: r.correlator,
        data: r.data,
        next_attempt_at: Millis(r.next_attempt_at),
        last_error: r.last_error,
        created_at: Millis(r.created_at),
        delivered_at: r.delivered_at.map(Millis),
    })
}

fn to_alerts(rows: Vec<OutboxRow>) -> Result<Vec<AlertRow>, StoreError> {
    rows.into_iter().map(to_alert).collect()
}

/// Enqueue alerts as `pending`. A correlator already in the outbox is a no-op that returns the
/// stored row (`created: false`); the same correlator for another device, server or alert type
/// is a `Conflict`. Results are in input order.
#[instrument(skip_all, fields(count = alerts.len()))]
pub async fn enqueue(
    conn: &mut SqliteConnection,
    alerts: &[NewAlert],
) -> Result<Vec<EnqueuedAlert>, StoreError> {
    check_batch("alerts", alerts.len())?;
    for a in alerts {
        a.validate()?;
    }
    let now = Millis::now();
    let insert_sql = format!(
        "INSERT INTO alert_outbox (dev_id, server_id, alert_type, correlator, data, state, \
                                   attempts, next_attempt_at, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?7) \
         ON CONFLICT (correlator) DO NOTHING RETURNING {COLUMNS}"
    );
    let select_sql = format!("SELECT {COLUMNS} FROM alert_outbox WHERE correlator = ?1");
    let mut out = Vec::with_capacity(alerts.len());
    for a in alerts {
        let inserted: Option<OutboxRow> = sqlx::query_as(sqlx::AssertSqlSafe(insert_sql.as_str()))
            .bind(&a.dev_id)
            .bind(&a.server_id)
            .bind(&a.alert_type)
            .bind(&a.correlator)
            .bind(a.data.as_deref())
            .bind(a.next_attempt_at.0)
            .bind(now.0)
            .fetch_optional(&mut *conn)
            .await?;
        let (row, created) = match inserted {
            Some(row) => (row, true),
            None => {
                let row: OutboxRow = sqlx::query_as(sqlx::AssertSqlSafe(select_sql.as_str()))
                    .bind(&a.correlator)
                    .fetch_one(&mut *conn)
                    .await?;
                if row.dev_id != a.dev_id
                    || row.server_id != a.server_id
                    || row.alert_type != a.alert_type
                {
                    return Err(StoreError::Conflict {
                        what: "alert correlator",
                        key: a.correlator.clone(),
                    });
                }
                (row, false)
            }
        };
        out.push(EnqueuedAlert {
            alert: to_alert(row)?,
            created,
        });
    }
    Ok(out)
}

/// Pending alerts due at `now` (`next_attempt_at <= now`), earliest first, at most `limit`.
#[instrument(skip_all, fields(now = now.0, limit = limit))]
pub async fn due(
    conn: &mut SqliteConnection,
    now: Millis,
    limit: u32,
) -> Result<Vec<AlertRow>, StoreError> {
    let limit = check_limit(limit)?;
    let sql = format!(
        "SELECT {COLUMNS} FROM alert_outbox \
         WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2"
    );
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(now.0)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    to_alerts(rows)
}

/// Pending alerts to `server_id` due at `now`, earliest first, at most `limit` (one DM session
/// carries them together).
#[instrument(skip_all, fields(server_id = %server_id, now = now.0, limit = limit))]
pub async fn due_for_server(
    conn: &mut SqliteConnection,
    server_id: &str,
    now: Millis,
    limit: u32,
) -> Result<Vec<AlertRow>, StoreError> {
    let limit = check_limit(limit)?;
    let sql = format!(
        "SELECT {COLUMNS} FROM alert_outbox \
         WHERE server_id = ?1 AND state = 'pending' AND next_attempt_at <= ?2 \
         ORDER BY next_attempt_at, id LIMIT ?3"
    );
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(server_id)
        .bind(now.0)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    to_alerts(rows)
}

/// Claim the pending alerts due at `now` (all servers, or only `server_id`), at most `limit`,
/// earliest first: their `next_attempt_at` moves to `lease_until`, so no other worker picks
/// them meanwhile, and a worker that crashes before `mark_delivered`/`record_failure` leaves
/// them due again once the lease ends. Run it in a write transaction (`Store::begin`).
#[instrument(skip_all, fields(now = now.0, lease_until = lease_until.0, limit = limit))]
pub async fn claim_due(
    conn: &mut SqliteConnection,
    server_id: Option<&str>,
    now: Millis,
    lease_until: Millis,
    limit: u32,
) -> Result<Vec<AlertRow>, StoreError> {
    if lease_until <= now {
        return Err(StoreError::Invalid {
            field: "lease_until",
            reason: "must be after now".into(),
        });
    }
    let limit = check_limit(limit)?;
    let sql = format!(
        "SELECT {COLUMNS} FROM alert_outbox \
         WHERE state = 'pending' AND next_attempt_at <= ?1 AND (?2 IS NULL OR server_id = ?2) \
         ORDER BY next_attempt_at, id LIMIT ?3"
    );
    let rows: Vec<OutboxRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(now.0)
        .bind(server_id)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE alert_outbox SET next_attempt_at = ?2 \
         WHERE id IN (SELECT value FROM json_each(?1))",
    )
    .bind(json_ids(rows.iter().map(|r| r.id)))
    .bind(lease_until.0)
    .execute(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|mut r| {
            r.next_attempt_at = lease_until.0;
            to_alert(r)
        })
        .collect()
}

/// Mark alerts delivered at `now` (pending or failed ones; delivered ones are left as they
/// are). Returns how many changed.
#[instrument(skip_all, fields(count = ids.len()))]
pub async fn mark_delivered(
    conn: &mut SqliteConnection,
    ids: &[AlertId],
    now: Millis,
) -> Result<u64, StoreError> {
    check_batch("ids", ids.len())?;
    let done = sqlx::query(
        "UPDATE alert_outbox SET state = 'delivered', delivered_at = ?2 \
         WHERE id IN (SELECT value FROM json_each(?1)) AND state <> 'delivered'",
    )
    .bind(json_ids(ids.iter().map(|i| i.0)))
    .bind(now.0)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// Record a failed delivery of pending alerts: one more attempt, `error` kept (truncated to
/// `MAX_ERROR_LEN`), next try at `next_attempt_at`, or `failed` for good when `give_up`.
/// Returns how many changed.
#[instrument(skip_all, fields(count = ids.len(), next_attempt_at = next_attempt_at.0, give_up = give_up))]
pub async fn record_failure(
    conn: &mut SqliteConnection,
    ids: &[AlertId],
    error: &str,
    next_attempt_at: Millis,
    give_up: bool,
) -> Result<u64, StoreError> {
    check_batch("ids", ids.len())?;
    let state = if give_up {
        AlertState::Failed
    } else {
        AlertState::Pending
    };
    let done = sqlx::query(
        "UPDATE alert_outbox SET attempts = attempts + 1, last_error = ?2, \
                next_attempt_at = ?3, state = ?4 \
         WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'pending'",
    )
    .bind(json_ids(ids.iter().map(|i| i.0)))
    .bind(truncate_text(error, MAX_ERROR_LEN))
    .bind(next_attempt_at.0)
    .bind(state.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// The alert `id`.
#[instrument(skip_all, fields(id = id.0))]
pub async fn get(conn: &mut SqliteConnection, id: AlertId) -> Result<AlertRow, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM alert_outbox WHERE id = ?1");
    let row: OutboxRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("alert", &id.0.to_string()))?;
    to_alert(row)
}

/// A page of alerts in enqueue order, filtered.
#[instrument(skip_all, fields(limit = page.limit(), after = page.after()))]
pub async fn list(
    conn: &mut SqliteConnection,
    filter: &AlertFilter,
    page: &Page,
) -> Result<Paged<AlertRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM alert_outbox \
         WHERE id > ?1 AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR server_id = ?3) \
           AND (?4 IS NULL OR dev_id = ?4) \
         ORDER BY id LIMIT ?5"
    );
    let rows: Vec<OutboxRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(page.after().unwrap_or(i64::MIN))
        .bind(filter.state.map(AlertState::as_str))
        .bind(filter.server_id.as_deref())
        .bind(filter.dev_id.as_deref())
        .bind(i64::from(page.limit()))
        .fetch_all(&mut *conn)
        .await?;
    let next_after = next_cursor(page, rows.len(), rows.last().map(|r| r.id));
    Ok(Paged {
        items: to_alerts(rows)?,
        next_after,
    })
}

/// How many alerts are in each state.
#[instrument(skip_all)]
pub async fn counts(conn: &mut SqliteConnection) -> Result<AlertCounts, StoreError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM alert_outbox GROUP BY state")
            .fetch_all(&mut *conn)
            .await?;
    let mut counts = AlertCounts::default();
    for (state, n) in rows {
        let n = count_u64("alert_outbox count", n)?;
        match parse_stored("alert_outbox.state", &state, AlertState::parse)? {
            AlertState::Pending => counts.pending = n,
            AlertState::Delivered => counts.delivered = n,
            AlertState::Failed => counts.failed = n,
        }
    }
    Ok(counts)
}

/// How many alerts of `alert_type` about `dev_id` were ever enqueued for `server_id`, whatever their
/// state (the attach/detach epoch that makes correlators deterministic).
#[instrument(skip_all, fields(dev_id, server_id, alert_type))]
pub async fn count_for(
    conn: &mut SqliteConnection,
    dev_id: &str,
    server_id: &str,
    alert_type: &str,
) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM alert_outbox WHERE dev_id = ?1 AND server_id = ?2 AND alert_type = ?3",
    )
    .bind(dev_id)
    .bind(server_id)
    .bind(alert_type)
    .fetch_one(&mut *conn)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// When the earliest pending alert is due (the outbox worker's next wake-up), if any.
#[instrument(skip_all)]
pub async fn earliest_pending(conn: &mut SqliteConnection) -> Result<Option<Millis>, StoreError> {
    let at: Option<i64> =
        sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM alert_outbox WHERE state = 'pending'")
            .fetch_one(&mut *conn)
            .await?;
    Ok(at.map(Millis))
}

impl Store {
    /// Enqueue alerts in one transaction (see [`enqueue`]).
    #[instrument(skip_all, fields(count = alerts.len()))]
    pub async fn enqueue_alerts(
        &self,
        alerts: &[NewAlert],
    ) -> Result<Vec<EnqueuedAlert>, StoreError> {
        let mut tx = self.begin().await?;
        let out = enqueue(&mut tx, alerts).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Alerts due at `now` (see [`due`]).
    #[instrument(skip_all, fields(now = now.0, limit = limit))]
    pub async fn due_alerts(&self, now: Millis, limit: u32) -> Result<Vec<AlertRow>, StoreError> {
        let mut conn = self.conn().await?;
        due(&mut conn, now, limit).await
    }

    /// Alerts to one server due at `now` (see [`due_for_server`]).
    #[instrument(skip_all, fields(server_id = %server_id, now = now.0, limit = limit))]
    pub async fn due_alerts_for_server(
        &self,
        server_id: &str,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<AlertRow>, StoreError> {
        let mut conn = self.conn().await?;
        due_for_server(&mut conn, server_id, now, limit).await
    }

    /// Claim due alerts in one transaction (see [`claim_due`]).
    #[instrument(skip_all, fields(now = now.0, limit = limit))]
    pub async fn claim_due_alerts(
        &self,
        server_id: Option<&str>,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<AlertRow>, StoreError> {
        let mut tx = self.begin().await?;
        let out = claim_due(&mut tx, server_id, now, lease_until, limit).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Mark alerts delivered in one transaction (see [`mark_delivered`]).
    #[instrument(skip_all, fields(count = ids.len()))]
    pub async fn mark_delivered(&self, ids: &[AlertId], now: Millis) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let out = mark_delivered(&mut tx, ids, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Record a failed delivery in one transaction (see [`record_failure`]).
    #[instrument(skip_all, fields(count = ids.len(), give_up = give_up))]
    pub async fn record_failure(
        &self,
        ids: &[AlertId],
        error: &str,
        next_attempt_at: Millis,
        give_up: bool,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let out = record_failure(&mut tx, ids, error, next_attempt_at, give_up).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// The alert `id`.
    #[instrument(skip_all, fields(id = id.0))]
    pub async fn alert(&self, id: AlertId) -> Result<AlertRow, StoreError> {
        let mut conn = self.conn().await?;
        get(&mut conn, id).await
    }

    /// A page of alerts (see [`list`]).
    #[instrument(skip_all)]
    pub async fn list_alerts(
        &self,
        filter: &AlertFilter,
        page: &Page,
    ) -> Result<Paged<AlertRow>, StoreError> {
        let mut conn = self.conn().await?;
        list(&mut conn, filter, page).await
    }

    /// Alerts per state (for metrics).
    #[instrument(skip_all)]
    pub async fn alert_counts(&self) -> Result<AlertCounts, StoreError> {
        let mut conn = self.conn().await?;
        counts(&mut conn).await
    }

    /// When the earliest pending alert is due.
    #[instrument(skip_all)]
    pub async fn earliest_pending(&self) -> Result<Option<Millis>, StoreError> {
        let mut conn = self.conn().await?;
        earliest_pending(&mut conn).await
    }
}
