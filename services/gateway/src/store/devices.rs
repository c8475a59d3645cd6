//! The Device Inventory: `devices` and the ServerIDs each device reported (`device_servers`)
//! with their match state. Batched upserts and state changes for the Inventory actor.

use std::collections::{BTreeMap, BTreeSet};

use omadm::mo::DeviceState;
use sqlx::FromRow;
use sqlx::sqlite::SqliteConnection;
use tracing::instrument;

use super::{Store, StoreError, count_u64, json_ids, next_cursor, parse_stored};
use crate::domain::{
    DeviceFilter, DeviceUpsert, DeviceView, MAX_SERVERS_PER_DEVICE, Millis, Page, Paged,
    ServerReport, ServerView, StateChange, UpsertedDevice, ValidationError, check_batch,
    check_dev_id, check_id,
};

#[derive(Debug, FromRow)]
struct DeviceRow {
    id: i64,
    dev_id: String,
    man: Option<String>,
    model: Option<String>,
    dev_type: Option<String>,
    dm_v: Option<String>,
    lang: Option<String>,
    address: Option<String>,
    state: String,
    first_seen: i64,
    last_seen: i64,
    updated_at: i64,
}

const DEVICE_COLUMNS: &str = "id, dev_id, man, model, dev_type, dm_v, lang, address, state, \
                              first_seen, last_seen, updated_at";

#[derive(Debug, FromRow)]
struct ServerRow {
    device_id: i64,
    server_id: String,
    matched: bool,
    bootstrap_url: Option<String>,
    reported_at: i64,
}

fn to_view(row: DeviceRow, servers: Vec<ServerView>) -> Result<DeviceView, StoreError> {
    Ok(DeviceView {
        state: parse_stored("devices.state", &row.state, DeviceState::parse)?,
        dev_id: row.dev_id,
        man: row.man,
        model: row.model,
        dev_type: row.dev_type,
        dm_v: row.dm_v,
        lang: row.lang,
        address: row.address,
        first_seen: Millis(row.first_seen),
        last_seen: Millis(row.last_seen),
        updated_at: Millis(row.updated_at),
        servers,
    })
}

/// Attach the reported servers to device rows (one query for the whole set).
async fn views_of(
    conn: &mut SqliteConnection,
    rows: Vec<DeviceRow>,
) -> Result<Vec<DeviceView>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids = json_ids(rows.iter().map(|r| r.id));
    let servers: Vec<ServerRow> = sqlx::query_as(
        "SELECT device_id, server_id, matched, bootstrap_url, reported_at FROM device_servers \
         WHERE device_id IN (SELECT value FROM json_each(?1)) ORDER BY device_id, position",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_device: BTreeMap<i64, Vec<ServerView>> = BTreeMap::new();
    for s in servers {
        by_device.entry(s.device_id).or_default().push(ServerView {
            server_id: s.server_id,
            matched: s.matched,
            bootstrap_url: s.bootstrap_url,
            reported_at: Millis(s.reported_at),
        });
    }
    rows.into_iter()
        .map(|r| {
            let servers = by_device.remove(&r.id).unwrap_or_default();
            to_view(r, servers)
        })
        .collect()
}

async fn device_id(conn: &mut SqliteConnection, dev_id: &str) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT id FROM devices WHERE dev_id = ?1")
        .bind(dev_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("device", dev_id))
}

/// Insert new devices (first seen at `seen_at`, state `discovered` unless given) and update
/// known ones (last seen, the identity fields and address given, the state if given), all in
/// the caller's transaction. Returns each device as stored, in input order.
#[instrument(skip_all, fields(count = batch.len()))]
pub async fn upsert(
    conn: &mut SqliteConnection,
    batch: &[DeviceUpsert],
) -> Result<Vec<UpsertedDevice>, StoreError> {
    check_batch("devices", batch.len())?;
    for d in batch {
        d.validate()?;
    }
    let now = Millis::now();
    let update_sql = format!(
        "UPDATE devices SET man = COALESCE(?2, man), model = COALESCE(?3, model), \
                dev_type = COALESCE(?4, dev_type), dm_v = COALESCE(?5, dm_v), \
                lang = COALESCE(?6, lang), address = COALESCE(?7, address), \
                state = COALESCE(?8, state), last_seen = MAX(last_seen, ?9), updated_at = ?10 \
         WHERE dev_id = ?1 RETURNING {DEVICE_COLUMNS}"
    );
    let insert_sql = format!(
        "INSERT INTO devices (dev_id, man, model, dev_type, dm_v, lang, address, state, \
                              first_seen, last_seen, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, COALESCE(?8, 'discovered'), ?9, ?9, ?10) \
         RETURNING {DEVICE_COLUMNS}"
    );
    let mut rows = Vec::with_capacity(batch.len());
    let mut created = Vec::with_capacity(batch.len());
    for d in batch {
        let state = d.state.map(DeviceState::as_str);
        let updated: Option<DeviceRow> = sqlx::query_as(sqlx::AssertSqlSafe(update_sql.as_str()))
            .bind(&d.dev_id)
            .bind(d.man.as_deref())
            .bind(d.model.as_deref())
            .bind(d.dev_type.as_deref())
            .bind(d.dm_v.as_deref())
            .bind(d.lang.as_deref())
            .bind(d.address.as_deref())
            .bind(state)
            .bind(d.seen_at.0)
            .bind(now.0)
            .fetch_optional(&mut *conn)
            .await?;
        let (row, new) = match updated {
            Some(row) => (row, false),
            None => {
                let row: DeviceRow = sqlx::query_as(sqlx::AssertSqlSafe(insert_sql.as_str()))
                    .bind(&d.dev_id)
                    .bind(d.man.as_deref())
                    .bind(d.model.as_deref())
                    .bind(d.dev_type.as_deref())
                    .bind(d.dm_v.as_deref())
                    .bind(d.lang.as_deref())
                    .bind(d.address.as_deref())
                    .bind(state)
                    .bind(d.seen_at.0)
                    .bind(now.0)
                    .fetch_one(&mut *conn)
                    .await?;
                (row, true)
            }
        };
        rows.push(row);
        created.push(new);
    }
    let views = views_of(conn, rows).await?;
    Ok(views
        .into_iter()
        .zip(created)
        .map(|(device, created)| UpsertedDevice { device, created })
        .collect())
}

/// Set the state of several devices; unknown DevIds are skipped. Returns how many changed.
#[instrument(skip_all, fields(count = changes.len()))]
pub async fn set_states(
    conn: &mut SqliteConnection,
    changes: &[StateChange],
) -> Result<u64, StoreError> {
    check_batch("state changes", changes.len())?;
    for c in changes {
        check_dev_id(&c.dev_id)?;
    }
    let now = Millis::now();
    let mut changed = 0u64;
    for c in changes {
        let done = sqlx::query("UPDATE devices SET state = ?2, updated_at = ?3 WHERE dev_id = ?1")
            .bind(&c.dev_id)
            .bind(c.state.as_str())
            .bind(now.0)
            .execute(&mut *conn)
            .await?;
        changed = changed.saturating_add(done.rows_affected());
    }
    Ok(changed)
}

/// The reports with duplicates removed (the first report of a ServerID wins), validated.
pub fn dedupe_reports(servers: &[ServerReport]) -> Result<Vec<&ServerReport>, ValidationError> {
    if servers.len() > MAX_SERVERS_PER_DEVICE {
        return Err(ValidationError::new(
            "server_ids",
            format!(
                "{} reported, the limit is {MAX_SERVERS_PER_DEVICE}",
                servers.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(servers.len());
    for s in servers {
        s.validate()?;
        if seen.insert(s.server_id.as_str()) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Replace the ServerIDs `dev_id` reported (step 1-4) with `servers`, in report order, each
/// marked matched when an account with that ServerID exists now (same transaction). Duplicate
/// ServerIDs are kept once. Returns the device as stored.
#[instrument(skip_all, fields(dev_id = %dev_id, count = servers.len()))]
pub async fn report_servers(
    conn: &mut SqliteConnection,
    dev_id: &str,
    servers: &[ServerReport],
) -> Result<DeviceView, StoreError> {
    check_dev_id(dev_id)?;
    let servers = dedupe_reports(servers)?;
    let id = device_id(conn, dev_id).await?;
    let now = Millis::now();
    sqlx::query("DELETE FROM device_servers WHERE device_id = ?1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    for (position, s) in (1i64..).zip(servers) {
        sqlx::query(
            "INSERT INTO device_servers (device_id, server_id, matched, bootstrap_url, position, \
                                         reported_at) \
             VALUES (?1, ?2, EXISTS (SELECT 1 FROM accounts WHERE server_id = ?2), ?3, ?4, ?5)",
        )
        .bind(id)
        .bind(&s.server_id)
        .bind(s.bootstrap_url.as_deref())
        .bind(position)
        .bind(now.0)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("UPDATE devices SET updated_at = ?2 WHERE id = ?1")
        .bind(id)
        .bind(now.0)
        .execute(&mut *conn)
        .await?;
    get(conn, dev_id).await
}

/// Mark the given ServerIDs of `dev_id` matched. Returns how many reports changed.
#[instrument(skip_all, fields(dev_id = %dev_id, count = server_ids.len()))]
pub async fn set_matched(
    conn: &mut SqliteConnection,
    dev_id: &str,
    server_ids: &[String],
) -> Result<u64, StoreError> {
    check_batch("server_ids", server_ids.len())?;
    let id = device_id(conn, dev_id).await?;
    let list = serde_json::to_string(server_ids).map_err(|e| StoreError::Invalid {
        field: "server_ids",
        reason: e.to_string(),
    })?;
    let done = sqlx::query(
        "UPDATE device_servers SET matched = 1 \
         WHERE device_id = ?1 AND matched = 0 AND server_id IN (SELECT value FROM json_each(?2))",
    )
    .bind(id)
    .bind(list)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// The DevIds of devices that reported `server_id` and are not yet matched to it (waiting for
/// a bootstrap), oldest device first.
#[instrument(skip_all, fields(server_id = %server_id))]
pub async fn waiting_on(
    conn: &mut SqliteConnection,
    server_id: &str,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT d.dev_id FROM device_servers s JOIN devices d ON d.id = s.device_id \
         WHERE s.server_id = ?1 AND s.matched = 0 ORDER BY d.id",
    )
    .bind(server_id)
    .fetch_all(&mut *conn)
    .await?)
}

/// Re-match after an account for `server_id` appeared: mark every unmatched report of it
/// matched, if the account exists. Returns the DevIds that became matched.
#[instrument(skip_all, fields(server_id = %server_id))]
pub async fn rematch_server(
    conn: &mut SqliteConnection,
    server_id: &str,
) -> Result<Vec<String>, StoreError> {
    check_id("server_id", server_id)?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "UPDATE device_servers SET matched = 1 \
         WHERE server_id = ?1 AND matched = 0 \
           AND EXISTS (SELECT 1 FROM accounts WHERE server_id = ?1) \
         RETURNING device_id",
    )
    .bind(server_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(sqlx::query_scalar(
        "SELECT dev_id FROM devices WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id",
    )
    .bind(json_ids(ids))
    .fetch_all(&mut *conn)
    .await?)
}

/// The device `dev_id` with its reported servers.
#[instrument(skip_all, fields(dev_id = %dev_id))]
pub async fn get(conn: &mut SqliteConnection, dev_id: &str) -> Result<DeviceView, StoreError> {
    let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE dev_id = ?1");
    let row: DeviceRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(dev_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("device", dev_id))?;
    views_of(conn, vec![row])
        .await?
        .pop()
        .ok_or_else(|| StoreError::not_found("device", dev_id))
}

/// A page of devices in first-seen order, optionally only those in one state.
#[instrument(skip_all, fields(limit = page.limit(), after = page.after()))]
pub async fn list(
    conn: &mut SqliteConnection,
    filter: &DeviceFilter,
    page: &Page,
) -> Result<Paged<DeviceView>, StoreError> {
    let sql = format!(
        "SELECT {DEVICE_COLUMNS} FROM devices \
         WHERE id > ?1 AND (?2 IS NULL OR state = ?2) ORDER BY id LIMIT ?3"
    );
    let rows: Vec<DeviceRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(page.after().unwrap_or(i64::MIN))
        .bind(filter.state.map(DeviceState::as_str))
        .bind(i64::from(page.limit()))
        .fetch_all(&mut *conn)
        .await?;
    let next_after = next_cursor(page, rows.len(), rows.last().map(|r| r.id));
    Ok(Paged {
        items: views_of(conn, rows).await?,
        next_after,
    })
}

/// Every device, in first-seen order (for the management tree).
#[instrument(skip_all)]
pub async fn all(conn: &mut SqliteConnection) -> Result<Vec<DeviceView>, StoreError> {
    let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY id");
    let rows: Vec<DeviceRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?;
    views_of(conn, rows).await
}

/// Delete the device `dev_id` and its reports. Its outbox alerts, jobs and events stay.
#[instrument(skip_all, fields(dev_id = %dev_id))]
pub async fn delete(conn: &mut SqliteConnection, dev_id: &str) -> Result<(), StoreError> {
    let done = sqlx::query("DELETE FROM devices WHERE dev_id = ?1")
        .bind(dev_id)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::not_found("device", dev_id));
    }
    Ok(())
}

/// How many devices are in each state: every state, in `DeviceState::ALL` order, zeros included.
#[instrument(skip_all)]
pub async fn counts(conn: &mut SqliteConnection) -> Result<Vec<(DeviceState, u64)>, StoreError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM devices GROUP BY state")
            .fetch_all(&mut *conn)
            .await?;
    let mut counts: Vec<(DeviceState, u64)> = DeviceState::ALL.iter().map(|s| (*s, 0)).collect();
    for (state, n) in rows {
        let n = count_u64("devices count", n)?;
        let state = parse_stored("devices.state", &state, DeviceState::parse)?;
        if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == state) {
            slot.1 = n;
        }
    }
    Ok(counts)
}

impl Store {
    /// Upsert a batch of devices in one transaction (see [`upsert`]).
    #[instrument(skip_all, fields(count = batch.len()))]
    pub async fn upsert_devices(
        &self,
        batch: &[DeviceUpsert],
    ) -> Result<Vec<UpsertedDevice>, StoreError> {
        let mut tx = self.begin().await?;
        let out = upsert(&mut tx, batch).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Set device states in one transaction (see [`set_states`]).
    #[instrument(skip_all, fields(count = changes.len()))]
    pub async fn set_device_states(&self, changes: &[StateChange]) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let out = set_states(&mut tx, changes).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Record the ServerIDs a device reported, in one transaction (see [`report_servers`]).
    #[instrument(skip_all, fields(dev_id = %dev_id, count = servers.len()))]
    pub async fn report_servers(
        &self,
        dev_id: &str,
        servers: &[ServerReport],
    ) -> Result<DeviceView, StoreError> {
        let mut tx = self.begin().await?;
        let out = report_servers(&mut tx, dev_id, servers).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Mark ServerIDs of a device matched (see [`set_matched`]).
    #[instrument(skip_all, fields(dev_id = %dev_id, count = server_ids.len()))]
    pub async fn set_matched(
        &self,
        dev_id: &str,
        server_ids: &[String],
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let out = set_matched(&mut tx, dev_id, server_ids).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// DevIds waiting on `server_id` (see [`waiting_on`]).
    #[instrument(skip_all, fields(server_id = %server_id))]
    pub async fn devices_waiting_on(&self, server_id: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn().await?;
        waiting_on(&mut conn, server_id).await
    }

    /// Re-match the reports of `server_id` (see [`rematch_server`]).
    #[instrument(skip_all, fields(server_id = %server_id))]
    pub async fn rematch_server(&self, server_id: &str) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin().await?;
        let out = rematch_server(&mut tx, server_id).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// The device `dev_id` with its servers.
    #[instrument(skip_all, fields(dev_id = %dev_id))]
    pub async fn device(&self, dev_id: &str) -> Result<DeviceView, StoreError> {
        let mut tx = self.begin_read().await?;
        let out = get(&mut tx, dev_id).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// A page of devices.
    #[instrument(skip_all)]
    pub async fn list_devices(
        &self,
        filter: &DeviceFilter,
        page: &Page,
    ) -> Result<Paged<DeviceView>, StoreError> {
        let mut tx = self.begin_read().await?;
        let out = list(&mut tx, filter, page).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Devices per state (for metrics; see [`counts`]).
    #[instrument(skip_all)]
    pub async fn device_counts(&self) -> Result<Vec<(DeviceState, u64)>, StoreError> {
        let mut conn = self.conn().await?;
        counts(&mut conn).await
    }

    /// Delete a device (see [`delete`]).
    #[instrument(skip_all, fields(dev_id = %dev_id))]
    pub async fn delete_device(&self, dev_id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        delete(&mut tx, dev_id).await?;
        super::traces::forget(&mut tx, dev_id).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str) -> ServerReport {
        ServerReport {
            server_id: id.into(),
            bootstrap_url: None,
        }
    }

    #[test]
    fn reports_are_deduplicated_in_order() {
        let mut first = report("b");
        first.bootstrap_url = Some("https://bs/1".into());
        let input = vec![first, report("a"), report("b")];
        let out = dedupe_reports(&input).unwrap();
        let ids: Vec<&str> = out.iter().map(|s| s.server_id.as_str()).collect();
        assert_eq!(ids, ["b", "a"]);
        assert_eq!(out[0].bootstrap_url.as_deref(), Some("https://bs/1"));
    }

    #[test]
    fn reports_are_bounded_and_checked() {
        let many: Vec<ServerReport> = (0..=MAX_SERVERS_PER_DEVICE)
            .map(|i| report(&format!("s{i}")))
            .collect();
        assert!(dedupe_reports(&many).is_err());
        assert!(dedupe_reports(&[report("")]).is_err());
        let mut bad = report("s");
        bad.bootstrap_url = Some("not a url".into());
        assert_eq!(dedupe_reports(&[bad]).unwrap_err().field, "bootstrap_url");
    }
}
