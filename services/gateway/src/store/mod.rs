//! The gateway's persistence: SQLite through sqlx (runtime queries), WAL, foreign keys, embedded
//! migrations. `Store` methods are one transaction each; the per-table functions compose in one.
//!
//! # Batching and transactions
//! Every table module (`accounts`, `devices`, `outbox`, `jobs`, `events`) exposes its operations
//! twice:
//! - as free functions taking `&mut SqliteConnection` (e.g. [`devices::upsert`]). They never
//!   begin or commit, so a caller composes any number of them in one transaction:
//!   ```no_run
//!   # async fn f(store: &gateway::store::Store, batch: &[gateway::domain::DeviceUpsert],
//!   #            events: &[gateway::domain::NewEvent]) -> Result<(), gateway::store::StoreError> {
//!   use gateway::store::{devices, events};
//!   let mut tx = store.begin().await?;          // BEGIN IMMEDIATE
//!   devices::upsert(&mut tx, batch).await?;
//!   events::log(&mut tx, events).await?;
//!   tx.commit().await?;                          // one commit for all of it
//!   # Ok(()) }
//!   ```
//! - as `Store` methods (e.g. [`Store::upsert_devices`]), each its own transaction, for callers
//!   that write one thing at a time (the admin API).
//!
//! Write transactions start with `BEGIN IMMEDIATE`: the write lock is taken up front (waiting up
//! to the busy timeout), so a transaction never fails half-way when upgrading from read to write.
//! Reads that need more than one statement run in a deferred transaction (one WAL snapshot).

pub mod accounts;
pub mod devices;
pub mod events;
pub mod jobs;
pub mod lan;
pub mod outbox;
pub mod traces;
pub mod tree_view;

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use thiserror::Error;
use tracing::instrument;

use crate::domain::{MAX_BATCH, Page, ValidationError};

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// A write transaction on the store (`BEGIN IMMEDIATE`); pass `&mut tx` to the per-table
/// functions, then `tx.commit()`. Dropped without commit, it rolls back.
pub type Tx = Transaction<'static, Sqlite>;

/// Why a store operation failed. No variant ever carries a secret.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The keyed item does not exist (HTTP 404).
    #[error("{what} {key:?} not found")]
    NotFound {
        /// What was looked for, e.g. `account`.
        what: &'static str,
        /// Its key, e.g. the ServerID.
        key: String,
    },
    /// A unique key is taken (HTTP 409).
    #[error("{what} {key:?} already exists")]
    Conflict {
        /// What collided, e.g. `account` or `account node`.
        what: &'static str,
        /// The key that is taken.
        key: String,
    },
    /// An input breaks a domain rule (HTTP 400/422).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A stored row that cannot be read back (HTTP 500).
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// The table or column, e.g. `alert_outbox.state`.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The database failed (HTTP 500).
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration could not be applied (start-up failure).
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<ValidationError> for StoreError {
    fn from(e: ValidationError) -> StoreError {
        StoreError::Invalid {
            field: e.field,
            reason: e.reason,
        }
    }
}

impl StoreError {
    /// A `Corrupt` error for `what`.
    pub(crate) fn corrupt(what: &'static str, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            what,
            reason: reason.into(),
        }
    }

    /// A `NotFound` error for `what` keyed `key` (a bounded excerpt of it).
    pub(crate) fn not_found(what: &'static str, key: &str) -> StoreError {
        StoreError::NotFound {
            what,
            key: excerpt(key, 128),
        }
    }
}

/// The constraint a UNIQUE violation names (`UNIQUE constraint failed: accounts.server_id`), if
/// `e` is one.
pub(crate) fn unique_violation(e: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    if !db.is_unique_violation() {
        return None;
    }
    let msg = db.message();
    Some(
        msg.split_once(':')
            .map_or(msg, |(_, cols)| cols)
            .trim()
            .to_owned(),
    )
}

/// Map a UNIQUE violation on one of `constraints` (`table.column` text) to `Conflict`.
pub(crate) fn map_unique(e: sqlx::Error, constraints: &[(&str, &'static str, &str)]) -> StoreError {
    if let Some(cols) = unique_violation(&e)
        && let Some((_, what, key)) = constraints.iter().find(|(c, _, _)| *c == cols)
    {
        return StoreError::Conflict {
            what,
            key: (*key).to_owned(),
        };
    }
    StoreError::Database(e)
}

/// A list of ids as the JSON array text `json_each(?)` expands in SQL (one bound parameter for
/// any batch size).
pub(crate) fn json_ids(ids: impl IntoIterator<Item = i64>) -> String {
    let mut out = String::from("[");
    for (i, id) in ids.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&id.to_string());
    }
    out.push(']');
    out
}

/// The cursor after a page of `len` rows whose last id is `last`: `None` when the page is short.
pub(crate) fn next_cursor(page: &Page, len: usize, last: Option<i64>) -> Option<i64> {
    if u32::try_from(len).is_ok_and(|n| n >= page.limit()) {
        last
    } else {
        None
    }
}

/// A query limit for the batch readers (`due_alerts`, `due_jobs`, ...): 1..=`MAX_BATCH`.
pub(crate) fn check_limit(limit: u32) -> Result<i64, StoreError> {
    if limit == 0 || usize::try_from(limit).map_or(true, |l| l > MAX_BATCH) {
        return Err(StoreError::Invalid {
            field: "limit",
            reason: format!("must be 1..={MAX_BATCH}"),
        });
    }
    Ok(i64::from(limit))
}

/// A non-negative count from SQL as `u32`.
pub(crate) fn count_u32(what: &'static str, n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| StoreError::corrupt(what, format!("count {n} out of range")))
}

/// A non-negative count from SQL as `u64`.
pub(crate) fn count_u64(what: &'static str, n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::corrupt(what, format!("count {n} out of range")))
}

/// A stored text enum, `Corrupt` when unknown.
pub(crate) fn parse_stored<T>(
    what: &'static str,
    text: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    parse(text)
        .ok_or_else(|| StoreError::corrupt(what, format!("unknown value {:?}", excerpt(text, 32))))
}

/// A bounded excerpt of a stored value for an error message (never used on secret columns).
fn excerpt(text: &str, max_chars: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max_chars)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// How to open the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long a connection waits for a lock before failing with "database is locked".
    pub busy_timeout: Duration,
    /// Most connections in the pool (at least 1).
    pub max_connections: u32,
    /// How long to wait for a free connection.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            busy_timeout: Duration::from_secs(5),
            max_connections: 4,
            acquire_timeout: Duration::from_secs(30),
        }
    }
}

/// The gateway's store: a pool of SQLite connections. Cheap to clone (clones share the pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Open (creating the folder and the file if missing) the database at `path`, with WAL,
    /// foreign keys, `synchronous=NORMAL` and the busy timeout, and apply pending migrations.
    #[instrument(skip_all, fields(path = %path.display(), max_connections = opts.max_connections))]
    pub async fn open(path: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
        if opts.max_connections == 0 {
            return Err(StoreError::Invalid {
                field: "max_connections",
                reason: "must be at least 1".into(),
            });
        }
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(opts.busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect)
            .await?;
        MIGRATOR.run(&pool).await?;
        tracing::info!(migrations = MIGRATOR.iter().count(), "store open");
        Ok(Store { pool })
    }

    /// The connection pool (for callers that run their own reads).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Begin a write transaction (`BEGIN IMMEDIATE`).
    #[instrument(skip_all)]
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Begin a read transaction (deferred: one consistent snapshot, no write lock).
    pub(crate) async fn begin_read(&self) -> Result<Tx, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// A connection from the pool, for single-statement reads.
    pub(crate) async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Sqlite>, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    /// Devices whose reported ServerIDs were recorded but whose matching may not have finished
    /// (provisioned, or waiting for a bootstrap): re-matched at start-up, which is idempotent.
    pub async fn devices_to_rematch(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT d.dev_id FROM devices d JOIN device_servers s ON s.device_id = d.id \
             WHERE d.state IN ('discovered', 'consented', 'provisioned', 'waiting_bootstrap') \
             ORDER BY d.dev_id",
        )
        .fetch_all(&mut *conn)
        .await?)
    }

    /// At start-up, nothing of this process is in flight: pending alerts and in-progress jobs
    /// leased by a previous run (stopped or crashed mid-delivery) become due now instead of waiting
    /// for their lease to end. Returns how many alerts and jobs were released.
    pub async fn release_leases(
        &self,
        now: crate::domain::Millis,
    ) -> Result<(u64, u64), StoreError> {
        let mut tx = self.begin().await?;
        let alerts = sqlx::query(
            "UPDATE alert_outbox SET next_attempt_at = ?1 WHERE state = 'pending' AND next_attempt_at > ?1",
        )
        .bind(now.0)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let jobs = sqlx::query(
            "UPDATE bootstrap_jobs SET state = 'pending', next_attempt_at = ?1, updated_at = ?1 \
             WHERE state = 'in_progress'",
        )
        .bind(now.0)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok((alerts, jobs))
    }

    /// Readiness: the database answers a query.
    #[instrument(skip_all)]
    pub async fn ping(&self) -> Result<(), StoreError> {
        let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&self.pool).await?;
        if one == 1 {
            Ok(())
        } else {
            Err(StoreError::corrupt("ping", "SELECT 1 did not return 1"))
        }
    }

    /// Close every connection (waits for those in use to be returned). Clones are closed too.
    #[instrument(skip_all)]
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_id_lists() {
        assert_eq!(json_ids([]), "[]");
        assert_eq!(json_ids([1, -2, 3]), "[1,-2,3]");
    }

    #[test]
    fn cursors_and_limits() {
        let page = Page::new(2, None).unwrap();
        assert_eq!(next_cursor(&page, 2, Some(9)), Some(9));
        assert_eq!(next_cursor(&page, 1, Some(9)), None);
        assert!(check_limit(0).is_err());
        assert_eq!(check_limit(10).unwrap(), 10);
        assert!(check_limit(u32::MAX).is_err());
    }

    #[test]
    fn excerpts_are_bounded() {
        assert_eq!(excerpt("abc", 2), "ab…");
        assert_eq!(excerpt("a\nb", 5), "a b");
    }

    #[test]
    fn stored_values() {
        assert_eq!(count_u32("x", 3).unwrap(), 3);
        assert!(matches!(
            count_u32("x", -1),
            Err(StoreError::Corrupt { what: "x", .. })
        ));
        assert!(count_u64("x", i64::MAX).is_ok());
        assert!(parse_stored("t.c", "nope", crate::domain::AlertState::parse).is_err());
    }

    #[test]
    fn errors_display() {
        let e = StoreError::Conflict {
            what: "account",
            key: "s1".into(),
        };
        assert_eq!(e.to_string(), "account \"s1\" already exists");
        let e: StoreError = ValidationError::new("limit", "too big").into();
        assert!(matches!(e, StoreError::Invalid { field: "limit", .. }));
    }
}
