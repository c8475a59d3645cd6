//! Bootstrap jobs (`bootstrap_jobs`): one per (ServerID, device), created idempotently, picked
//! when due (a crashed worker's job comes back when its lease ends), moved through `JobState`.

use sqlx::FromRow;
use sqlx::sqlite::SqliteConnection;
use tracing::instrument;

use super::{Store, StoreError, check_limit, count_u32, count_u64, next_cursor, parse_stored};
use crate::domain::{
    BootstrapJob, CreatedJob, JobCounts, JobFilter, JobId, JobState, JobUpdate, MAX_ERROR_LEN,
    Millis, NewJob, Page, Paged, Workflow, check_url, truncate_text,
};

#[derive(Debug, FromRow)]
struct JobRow {
    id: i64,
    server_id: String,
    dev_id: String,
    workflow: i64,
    bootstrap_url: Option<String>,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

const COLUMNS: &str = "id, server_id, dev_id, workflow, bootstrap_url, state, attempts, \
                       next_attempt_at, last_error, created_at, updated_at";

fn to_job(r: JobRow) -> Result<BootstrapJob, StoreError> {
    Ok(BootstrapJob {
        id: JobId(r.id),
        workflow: Workflow::from_number(r.workflow).ok_or_else(|| {
            StoreError::corrupt(
                "bootstrap_jobs.workflow",
                format!("{} is not 1 or 2", r.workflow),
            )
        })?,
        state: parse_stored("bootstrap_jobs.state", &r.state, JobState::parse)?,
        attempts: count_u32("bootstrap_jobs.attempts", r.attempts)?,
        server_id: r.server_id,
        dev_id: r.dev_id,
        bootstrap_url: r.bootstrap_url,
        next_attempt_at: Millis(r.next_attempt_at),
        last_error: r.last_error,
        created_at: Millis(r.created_at),
        updated_at: Millis(r.updated_at),
    })
}

fn to_jobs(rows: Vec<JobRow>) -> Result<Vec<BootstrapJob>, StoreError> {
    rows.into_iter().map(to_job).collect()
}

/// Create the job for (server_id, dev_id) as `pending`, or return the existing one unchanged
/// (`created: false`), whatever its state.
#[instrument(skip_all, fields(server_id = %job.server_id, dev_id = %job.dev_id, workflow = job.workflow.number()))]
pub async fn create_or_get(
    conn: &mut SqliteConnection,
    job: &NewJob,
) -> Result<CreatedJob, StoreError> {
    job.validate()?;
    let now = Millis::now();
    let insert_sql = format!(
        "INSERT INTO bootstrap_jobs (server_id, dev_id, workflow, bootstrap_url, state, \
                                     attempts, next_attempt_at, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?6, ?6) \
         ON CONFLICT (server_id, dev_id) DO NOTHING RETURNING {COLUMNS}"
    );
    let inserted: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(insert_sql))
        .bind(&job.server_id)
        .bind(&job.dev_id)
        .bind(job.workflow.number())
        .bind(job.bootstrap_url.as_deref())
        .bind(job.next_attempt_at.0)
        .bind(now.0)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = inserted {
        return Ok(CreatedJob {
            job: to_job(row)?,
            created: true,
        });
    }
    let sql = format!("SELECT {COLUMNS} FROM bootstrap_jobs WHERE server_id = ?1 AND dev_id = ?2");
    let row: JobRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&job.server_id)
        .bind(&job.dev_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(CreatedJob {
        job: to_job(row)?,
        created: false,
    })
}

/// Open jobs (pending, in progress, awaiting push) due at `now`, earliest first, at most
/// `limit`.
#[instrument(skip_all, fields(now = now.0, limit = limit))]
pub async fn due(
    conn: &mut SqliteConnection,
    now: Millis,
    limit: u32,
) -> Result<Vec<BootstrapJob>, StoreError> {
    let limit = check_limit(limit)?;
    let sql = format!(
        "SELECT {COLUMNS} FROM bootstrap_jobs \
         WHERE state IN ('pending', 'in_progress', 'awaiting_push') AND next_attempt_at <= ?1 \
         ORDER BY next_attempt_at, id LIMIT ?2"
    );
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(now.0)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    to_jobs(rows)
}

/// Claim the open jobs due at `now`, at most `limit`, earliest first: a pending job becomes
/// `in_progress`, and every claimed job's `next_attempt_at` moves to `lease_until` (a job whose
/// worker crashes is due again when the lease ends; an `awaiting_push` job whose deadline
/// passed keeps its state for the worker to decide). Run it in a write transaction.
#[instrument(skip_all, fields(now = now.0, lease_until = lease_until.0, limit = limit))]
pub async fn claim_due(
    conn: &mut SqliteConnection,
    now: Millis,
    lease_until: Millis,
    limit: u32,
) -> Result<Vec<BootstrapJob>, StoreError> {
    if lease_until <= now {
        return Err(StoreError::Invalid {
            field: "lease_until",
            reason: "must be after now".into(),
        });
    }
    let due = due(conn, now, limit).await?;
    let ids = super::json_ids(due.iter().map(|j| j.id.0));
    let sql = format!(
        "UPDATE bootstrap_jobs \
         SET state = CASE state WHEN 'pending' THEN 'in_progress' ELSE state END, \
             next_attempt_at = ?2, updated_at = ?3 \
         WHERE id IN (SELECT value FROM json_each(?1)) RETURNING {COLUMNS}"
    );
    let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(ids)
        .bind(lease_until.0)
        .bind(Millis::now().0)
        .fetch_all(&mut *conn)
        .await?;
    let mut claimed = to_jobs(rows)?;
    // Keep the due order (RETURNING order is unspecified).
    let order: std::collections::BTreeMap<JobId, usize> =
        due.iter().enumerate().map(|(i, j)| (j.id, i)).collect();
    claimed.sort_by_key(|j| order.get(&j.id).copied());
    Ok(claimed)
}

/// The job `id`.
#[instrument(skip_all, fields(id = id.0))]
pub async fn get(conn: &mut SqliteConnection, id: JobId) -> Result<BootstrapJob, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM bootstrap_jobs WHERE id = ?1");
    let row: JobRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("bootstrap job", &id.0.to_string()))?;
    to_job(row)
}

/// Apply `update` to job `id`: `Invalid` when the state change is not allowed
/// (`JobState::can_become`). Returns the job as stored.
#[instrument(skip_all, fields(id = id.0, state = %update.state, count_attempt = update.count_attempt))]
pub async fn update(
    conn: &mut SqliteConnection,
    id: JobId,
    update: &JobUpdate,
) -> Result<BootstrapJob, StoreError> {
    if let Some(url) = &update.bootstrap_url {
        check_url("bootstrap_url", url)?;
    }
    let current = get(conn, id).await?;
    if !current.state.can_become(update.state) {
        return Err(StoreError::Invalid {
            field: "state",
            reason: format!("a {} job cannot become {}", current.state, update.state),
        });
    }
    let sql = format!(
        "UPDATE bootstrap_jobs SET state = ?2, attempts = attempts + ?3, last_error = ?4, \
                next_attempt_at = ?5, bootstrap_url = COALESCE(?6, bootstrap_url), \
                updated_at = ?7 \
         WHERE id = ?1 RETURNING {COLUMNS}"
    );
    let row: JobRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id.0)
        .bind(update.state.as_str())
        .bind(i64::from(update.count_attempt))
        .bind(
            update
                .last_error
                .as_deref()
                .map(|e| truncate_text(e, MAX_ERROR_LEN)),
        )
        .bind(update.next_attempt_at.0)
        .bind(update.bootstrap_url.as_deref())
        .bind(Millis::now().0)
        .fetch_one(&mut *conn)
        .await?;
    to_job(row)
}

/// A page of jobs in creation order, filtered.
#[instrument(skip_all, fields(limit = page.limit(), after = page.after()))]
pub async fn list(
    conn: &mut SqliteConnection,
    filter: &JobFilter,
    page: &Page,
) -> Result<Paged<BootstrapJob>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM bootstrap_jobs \
         WHERE id > ?1 AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR server_id = ?3) \
         ORDER BY id LIMIT ?4"
    );
    let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(page.after().unwrap_or(i64::MIN))
        .bind(filter.state.map(JobState::as_str))
        .bind(filter.server_id.as_deref())
        .bind(i64::from(page.limit()))
        .fetch_all(&mut *conn)
        .await?;
    let next_after = next_cursor(page, rows.len(), rows.last().map(|r| r.id));
    Ok(Paged {
        items: to_jobs(rows)?,
        next_after,
    })
}

/// Every job for `server_id` (one per device that reported it), in creation order.
#[instrument(skip_all, fields(server_id = %server_id))]
pub async fn for_server(
    conn: &mut SqliteConnection,
    server_id: &str,
) -> Result<Vec<BootstrapJob>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM bootstrap_jobs WHERE server_id = ?1 ORDER BY id");
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(server_id)
        .fetch_all(&mut *conn)
        .await?;
    to_jobs(rows)
}

/// How many jobs are in each state.
#[instrument(skip_all)]
pub async fn counts(conn: &mut SqliteConnection) -> Result<JobCounts, StoreError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM bootstrap_jobs GROUP BY state")
            .fetch_all(&mut *conn)
            .await?;
    let mut counts = JobCounts::default();
    for (state, n) in rows {
        let n = count_u64("bootstrap_jobs count", n)?;
        match parse_stored("bootstrap_jobs.state", &state, JobState::parse)? {
            JobState::Pending => counts.pending = n,
            JobState::InProgress => counts.in_progress = n,
            JobState::AwaitingPush => counts.awaiting_push = n,
            JobState::Done => counts.done = n,
            JobState::Failed => counts.failed = n,
        }
    }
    Ok(counts)
}

impl Store {
    /// Create or get a bootstrap job in its own transaction (see [`create_or_get`]).
    #[instrument(skip_all, fields(server_id = %job.server_id, dev_id = %job.dev_id))]
    pub async fn create_or_get_job(&self, job: &NewJob) -> Result<CreatedJob, StoreError> {
        let mut tx = self.begin().await?;
        let out = create_or_get(&mut tx, job).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Jobs due at `now` (see [`due`]).
    #[instrument(skip_all, fields(now = now.0, limit = limit))]
    pub async fn due_jobs(&self, now: Millis, limit: u32) -> Result<Vec<BootstrapJob>, StoreError> {
        let mut conn = self.conn().await?;
        due(&mut conn, now, limit).await
    }

    /// Claim due jobs in one transaction (see [`claim_due`]).
    #[instrument(skip_all, fields(now = now.0, limit = limit))]
    pub async fn claim_due_jobs(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<BootstrapJob>, StoreError> {
        let mut tx = self.begin().await?;
        let out = claim_due(&mut tx, now, lease_until, limit).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// The job `id`.
    #[instrument(skip_all, fields(id = id.0))]
    pub async fn job(&self, id: JobId) -> Result<BootstrapJob, StoreError> {
        let mut conn = self.conn().await?;
        get(&mut conn, id).await
    }

    /// Update a job in its own transaction (see [`update`]).
    #[instrument(skip_all, fields(id = id.0, state = %change.state))]
    pub async fn update_job(
        &self,
        id: JobId,
        change: &JobUpdate,
    ) -> Result<BootstrapJob, StoreError> {
        let mut tx = self.begin().await?;
        let out = update(&mut tx, id, change).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// A page of jobs (see [`list`]).
    #[instrument(skip_all)]
    pub async fn list_jobs(
        &self,
        filter: &JobFilter,
        page: &Page,
    ) -> Result<Paged<BootstrapJob>, StoreError> {
        let mut conn = self.conn().await?;
        list(&mut conn, filter, page).await
    }

    /// Every job for `server_id`.
    #[instrument(skip_all, fields(server_id = %server_id))]
    pub async fn jobs_for_server(&self, server_id: &str) -> Result<Vec<BootstrapJob>, StoreError> {
        let mut conn = self.conn().await?;
        for_server(&mut conn, server_id).await
    }

    /// Jobs per state (for metrics).
    #[instrument(skip_all)]
    pub async fn job_counts(&self) -> Result<JobCounts, StoreError> {
        let mut conn = self.conn().await?;
        counts(&mut conn).await
    }
}
