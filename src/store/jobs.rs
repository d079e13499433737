//! The job queue's persistence. A job is claimed by setting a lease
//! (`locked_until`) and an owner (`locked_by`) in one statement; only the owner
//! may finish it, and only while its lease holds. On PostgreSQL the claim skips
//! rows other workers are claiming (`FOR UPDATE SKIP LOCKED`); on SQLite the
//! write lock taken by `BEGIN IMMEDIATE` serialises claims.

use serde::Serialize;
use uuid::Uuid;

use super::rows::{id, int, opt_text, text};
use super::{Dialect, SqlBuilder, Store, StoreResult, Tx, format_time, new_id, now};

/// Attempts before a job goes to the dead letters.
pub const DEFAULT_MAX_ATTEMPTS: i64 = 8;

/// Attempts for a kind. Work that reaches outside the shop must outlast an
/// outage of whatever it reaches: with the backoff (2 s doubling, at most an
/// hour apart) 12 attempts span about 1.5 hours, 16 about 5, 20 about 9.
pub fn max_attempts(kind: &str) -> i64 {
    match kind {
        "refund.execute" | "payment.void" => 20,
        "webhook.deliver" => 16,
        "email.send" => 12,
        _ => DEFAULT_MAX_ATTEMPTS,
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Job {
    pub id: Uuid,
    pub kind: String,
    pub payload: serde_json::Value,
    /// `queued`, `running`, `done` or `dead`.
    pub status: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: String,
    pub last_error: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueueStats {
    pub queued: i64,
    pub running: i64,
    pub dead: i64,
    /// Seconds the oldest due, unclaimed job has waited (0 when none).
    pub oldest_due_age_secs: i64,
}

/// Enqueues a job inside the caller's transaction, so it exists exactly when the
/// change that asks for it does.
pub async fn enqueue(tx: &mut Tx, kind: &str, payload: serde_json::Value) -> StoreResult<Uuid> {
    enqueue_after(tx, kind, payload, std::time::Duration::ZERO).await
}

/// Enqueues a job unless one with the same `dedupe_key` exists already (done or
/// not): a schedule slot fired by several instances, or one event fanned out
/// twice, makes one job. Returns whether this call created it.
pub async fn enqueue_unique(tx: &mut Tx, kind: &str, payload: serde_json::Value, dedupe_key: &str) -> StoreResult<bool> {
    let ts = now();
    let created = sqlx::query(
        "INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_at, created_at, updated_at, dedupe_key)
         VALUES ($1, $2, $3, 'queued', 0, $4, $5, $5, $5, $6) ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(new_id().to_string())
    .bind(kind)
    .bind(payload.to_string())
    .bind(max_attempts(kind))
    .bind(ts.as_str())
    .bind(dedupe_key)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(created == 1)
}

/// Enqueues a job due `delay` from now (a safety net behind work tried at once).
pub async fn enqueue_after(tx: &mut Tx, kind: &str, payload: serde_json::Value, delay: std::time::Duration) -> StoreResult<Uuid> {
    let job_id = new_id();
    let ts = now();
    sqlx::query(
        "INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_at, created_at, updated_at)
         VALUES ($1, $2, $3, 'queued', 0, $4, $5, $6, $6)",
    )
    .bind(job_id.to_string())
    .bind(kind)
    .bind(payload.to_string())
    .bind(max_attempts(kind))
    .bind(later(delay))
    .bind(ts.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(job_id)
}

/// Enqueues many jobs due now inside the caller's transaction, 200 per statement.
pub async fn enqueue_many_in(tx: &mut Tx, jobs: &[(&str, serde_json::Value)]) -> StoreResult<()> {
    let ts = now();
    for chunk in jobs.chunks(200) {
        let mut q = SqlBuilder::new(
            "INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_at, created_at, updated_at) VALUES ",
        );
        q.bind_rows(chunk.iter().map(|(kind, payload)| {
            vec![
                super::Arg::from(new_id().to_string()),
                (*kind).into(),
                payload.to_string().into(),
                "queued".into(),
                0i64.into(),
                max_attempts(kind).into(),
                ts.as_str().into(),
                ts.as_str().into(),
                ts.as_str().into(),
            ]
        }));
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

const JOB_COLUMNS: &str = "id, kind, payload, status, attempts, max_attempts, run_at, last_error, created_at, finished_at";

fn job_row(r: &sqlx::any::AnyRow) -> StoreResult<Job> {
    Ok(Job {
        id: id(r, "id")?,
        kind: text(r, "kind")?,
        payload: serde_json::from_str(&text(r, "payload")?).unwrap_or(serde_json::Value::Null),
        status: text(r, "status")?,
        attempts: int(r, "attempts")?,
        max_attempts: int(r, "max_attempts")?,
        run_at: text(r, "run_at")?,
        last_error: opt_text(r, "last_error")?,
        created_at: text(r, "created_at")?,
        finished_at: opt_text(r, "finished_at")?,
    })
}

fn later(d: std::time::Duration) -> String {
    format_time(time::OffsetDateTime::now_utc() + d)
}

impl Store {
    /// Enqueues a job on its own (outside any other change).
    /// See [`enqueue_unique`].
    pub async fn enqueue_unique_job(&self, kind: &str, payload: serde_json::Value, dedupe_key: &str) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let created = enqueue_unique(&mut tx, kind, payload, dedupe_key).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn enqueue_job(&self, kind: &str, payload: serde_json::Value) -> StoreResult<Uuid> {
        let mut tx = self.begin().await?;
        let job_id = enqueue(&mut tx, kind, payload).await?;
        tx.commit().await?;
        Ok(job_id)
    }

    /// Enqueues many jobs of one kind at once (multi-row inserts), e.g. for a
    /// queue benchmark or a backfill.
    pub async fn enqueue_many(&self, kind: &str, payloads: &[serde_json::Value]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let jobs: Vec<(&str, serde_json::Value)> = payloads.iter().map(|p| (kind, p.clone())).collect();
        enqueue_many_in(&mut tx, &jobs).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Claims up to `limit` due jobs for `worker`: queued ones whose time has come,
    /// and running ones whose lease ran out (their worker died).
    pub async fn claim_jobs(&self, worker: &str, limit: i64, lease: std::time::Duration) -> StoreResult<Vec<Job>> {
        let ts = now();
        let mut tx = self.begin().await?;
        // Jobs whose worker died go back to the queue first. Kept apart from the
        // claim below so that each statement walks the (status, run_at) index in
        // order instead of scanning every due row.
        let mut revive = SqlBuilder::new(
            "UPDATE jobs SET status = 'queued', locked_until = NULL WHERE id IN (SELECT id FROM jobs WHERE status = 'running' AND locked_until < ",
        );
        revive.bind(ts.as_str()).push(match self.dialect {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED)",
            Dialect::Sqlite => ")",
        });
        revive.build().execute(&mut *tx).await?;
        let mut q = SqlBuilder::new("UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = ");
        q.bind(worker)
            .push(", locked_until = ")
            .bind(later(lease))
            .push(", updated_at = ")
            .bind(ts.as_str())
            .push(" WHERE id IN (SELECT id FROM jobs WHERE status = 'queued' AND run_at <= ")
            .bind(ts.as_str())
            .push(" ORDER BY run_at LIMIT ")
            .bind(limit);
        q.push(match self.dialect {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED) RETURNING ",
            Dialect::Sqlite => ") RETURNING ",
        });
        q.push(JOB_COLUMNS);
        let rows = q.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(job_row).collect()
    }

    /// Marks a job done, if `worker` still holds it.
    pub async fn complete_job(&self, job_id: Uuid, worker: &str) -> StoreResult<bool> {
        let ts = now();
        let done = sqlx::query(
            "UPDATE jobs SET status = 'done', finished_at = $1, updated_at = $1, locked_until = NULL
             WHERE id = $2 AND locked_by = $3 AND status = 'running'",
        )
        .bind(ts.as_str())
        .bind(job_id.to_string())
        .bind(worker)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// Gives back a job `worker` claimed but did not start (it is stopping): queued
    /// again at once, its claim not counted as an attempt.
    pub async fn release_job(&self, job_id: Uuid, worker: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE jobs SET status = 'queued', attempts = attempts - 1, locked_by = NULL, locked_until = NULL, updated_at = $1
             WHERE id = $2 AND locked_by = $3 AND status = 'running'",
        )
        .bind(now())
        .bind(job_id.to_string())
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a failure: the job runs again after `retry_in`, or goes to the dead
    /// letters once it has used its attempts.
    pub async fn fail_job(&self, job_id: Uuid, worker: &str, error: &str, retry_in: std::time::Duration) -> StoreResult<()> {
        let ts = now();
        sqlx::query(
            "UPDATE jobs SET
                status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
                finished_at = CASE WHEN attempts >= max_attempts THEN $1 ELSE NULL END,
                run_at = $2, last_error = $3, locked_until = NULL, updated_at = $1
             WHERE id = $4 AND locked_by = $5 AND status = 'running'",
        )
        .bind(ts.as_str())
        .bind(later(retry_in))
        .bind(error.chars().take(2000).collect::<String>())
        .bind(job_id.to_string())
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets jobs done more than `age` ago (dead letters stay until dealt with).
    pub async fn purge_finished_jobs(&self, age: std::time::Duration) -> StoreResult<u64> {
        let cutoff = format_time(time::OffsetDateTime::now_utc() - age);
        Ok(sqlx::query("DELETE FROM jobs WHERE status = 'done' AND finished_at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Sends a job straight to the dead letters, if `worker` still holds it: its
    /// handler knows that no retry can succeed (a recipient refused for good).
    pub async fn bury_job(&self, job_id: Uuid, worker: &str, error: &str) -> StoreResult<()> {
        let ts = now();
        sqlx::query(
            "UPDATE jobs SET status = 'dead', finished_at = $1, last_error = $2, locked_until = NULL, updated_at = $1
             WHERE id = $3 AND locked_by = $4 AND status = 'running'",
        )
        .bind(ts.as_str())
        .bind(error.chars().take(2000).collect::<String>())
        .bind(job_id.to_string())
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Puts a dead job back in the queue with fresh attempts.
    pub async fn retry_job(&self, job_id: Uuid) -> StoreResult<Option<Job>> {
        let ts = now();
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', attempts = 0, run_at = $1, finished_at = NULL, updated_at = $1
             WHERE id = $2 AND status = 'dead'",
        )
        .bind(ts.as_str())
        .bind(job_id.to_string())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(None);
        }
        self.job(job_id).await
    }

    pub async fn job(&self, job_id: Uuid) -> StoreResult<Option<Job>> {
        let mut q = SqlBuilder::new("SELECT ");
        q.push(JOB_COLUMNS).push(" FROM jobs WHERE id = ").bind(job_id.to_string());
        q.build().fetch_optional(&self.pool).await?.as_ref().map(job_row).transpose()
    }

    /// Jobs newest first, by status and kind, keyset-paged.
    pub async fn list_jobs(
        &self,
        status: Option<&str>,
        kind: Option<&str>,
        before: Option<Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<Job>> {
        let mut q = SqlBuilder::new("SELECT ");
        q.push(JOB_COLUMNS).push(" FROM jobs WHERE 1 = 1");
        if let Some(s) = status {
            q.push(" AND status = ").bind(s);
        }
        if let Some(k) = kind {
            q.push(" AND kind = ").bind(k);
        }
        if let Some(b) = before {
            q.push(" AND id < ").bind(b.to_string());
        }
        q.push(" ORDER BY id DESC LIMIT ").bind(limit);
        q.build().fetch_all(&self.pool).await?.iter().map(job_row).collect()
    }

    pub async fn queue_stats(&self) -> StoreResult<QueueStats> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) AS n FROM jobs WHERE status IN ('queued', 'running', 'dead') GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
        let mut stats = QueueStats { queued: 0, running: 0, dead: 0, oldest_due_age_secs: 0 };
        for r in &rows {
            let n = int(r, "n")?;
            match text(r, "status")?.as_str() {
                "queued" => stats.queued = n,
                "running" => stats.running = n,
                _ => stats.dead = n,
            }
        }
        let ts = now();
        let oldest = sqlx::query("SELECT MIN(run_at) AS oldest FROM jobs WHERE status = 'queued' AND run_at <= $1")
            .bind(ts.as_str())
            .fetch_one(&self.pool)
            .await?;
        if let Some(o) = opt_text(&oldest, "oldest")? {
            let parsed = time::OffsetDateTime::parse(&o, &time::format_description::well_known::Rfc3339).ok();
            stats.oldest_due_age_secs = parsed.map_or(0, |t| (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0));
        }
        Ok(stats)
    }
}
