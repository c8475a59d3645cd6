//! `device_traces`: the `traceparent` of each device's current onboarding, so the spans of later
//! steps (other requests, actors, after a restart) join the same trace.

use std::collections::HashMap;

use sqlx::sqlite::SqliteConnection;
use tracing::instrument;

use super::{Store, StoreError};

/// Record the trace of an onboarding. `new_onboarding` replaces what is stored (the device starts
/// over); otherwise an existing row is kept (a re-announcement continues the same onboarding).
#[instrument(skip_all, fields(new_onboarding))]
pub async fn begin(
    conn: &mut SqliteConnection,
    dev_id: &str,
    traceparent: &str,
    new_onboarding: bool,
) -> Result<(), StoreError> {
    let sql = if new_onboarding {
        "INSERT INTO device_traces (dev_id, traceparent) VALUES (?1, ?2) \
         ON CONFLICT (dev_id) DO UPDATE SET traceparent = excluded.traceparent"
    } else {
        "INSERT INTO device_traces (dev_id, traceparent) VALUES (?1, ?2) \
         ON CONFLICT (dev_id) DO NOTHING"
    };
    sqlx::query(sql)
        .bind(dev_id)
        .bind(traceparent)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The onboarding `traceparent` of several devices (devices without one are absent).
pub async fn of(
    conn: &mut SqliteConnection,
    dev_ids: &[&str],
) -> Result<HashMap<String, String>, StoreError> {
    let mut out = HashMap::with_capacity(dev_ids.len());
    for chunk in dev_ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql =
            format!("SELECT dev_id, traceparent FROM device_traces WHERE dev_id IN ({marks})");
        let mut q = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql));
        for d in chunk {
            q = q.bind(*d);
        }
        out.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

/// Forget a device's trace (the device was deleted).
pub async fn forget(conn: &mut SqliteConnection, dev_id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM device_traces WHERE dev_id = ?1")
        .bind(dev_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// The onboarding `traceparent` of several devices.
    pub async fn onboarding_traces(
        &self,
        dev_ids: &[&str],
    ) -> Result<HashMap<String, String>, StoreError> {
        let mut conn = self.conn().await?;
        of(&mut conn, dev_ids).await
    }
}
