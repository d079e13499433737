//! `Idempotency-Key` records. A key is claimed (inserted) before any work starts;
//! the answer is stored when the work ends. The primary key on `(scope, idem_key)`
//! is what makes two concurrent requests with one key see one winner.

use std::collections::BTreeSet;

use tokio::sync::oneshot;
use uuid::Uuid;

use super::rows::{opt_id, opt_int, opt_text, text};
use super::{SqlBuilder, Store, StoreError, StoreResult, format_time, now};
use crate::batch_lane::BatchLane;
use crate::domain::order_status::OrderStatus;

/// How long a running request holds its key before another may take it over
/// (a crashed instance must not block the key for its whole lifetime).
pub const LEASE_SECS: i64 = 60;
/// How long answers are kept for replay.
pub const KEEP_SECS: i64 = 24 * 3600;

#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First use: go ahead.
    Fresh,
    /// Done before: answer this again.
    Replay { status: u16, body: String },
    /// Same key, different request.
    Mismatch,
    /// Another request with this key is running now.
    InFlight,
    /// A request with this key died after placing `order_id`: continue from there.
    Resume { order_id: Option<Uuid> },
}

/// A checkout's answer, stored under its key by the transaction that settles the
/// order's payment (one commit fewer per order) if the order reaches `when`;
/// otherwise the checkout answers differently and stores that itself.
pub struct KeyAnswer<'a> {
    pub scope: &'a str,
    pub key: &'a str,
    pub when: OrderStatus,
    pub status: u16,
    pub body: &'a str,
}

/// Stores the final answer for replay, once: a request that outlived its lease
/// cannot overwrite the answer of the one that took its key over.
pub(super) async fn store_answer(
    conn: &mut sqlx::AnyConnection,
    scope: &str,
    key: &str,
    status: u16,
    body: &str,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET state = 'done', response_status = $1, response_body = $2
         WHERE scope = $3 AND idem_key = $4 AND state = 'running'",
    )
    .bind(i64::from(status))
    .bind(body)
    .bind(scope)
    .bind(key)
    .execute(conn)
    .await?;
    Ok(())
}

/// The most keys one statement claims.
const MAX_CLAIMS: usize = 256;

/// A key to claim, and where to say whether this caller inserted it.
struct NewKey {
    scope: String,
    key: String,
    request_hash: String,
    /// `Some(true)`: inserted for this caller; `Some(false)`: it was there (or a
    /// caller earlier in the batch had it); `None`: the batch failed.
    inserted: oneshot::Sender<Option<bool>>,
}

/// Group claims: keys that arrive together are inserted by one statement and
/// one commit ([`crate::batch_lane`]). Only the first insert of a key claims
/// it, so two requests with one key still see one winner.
pub(super) struct ClaimBatches {
    lane: BatchLane<NewKey>,
}

impl Default for ClaimBatches {
    fn default() -> Self {
        Self { lane: BatchLane::new(super::read_batches::PARALLEL) }
    }
}

impl ClaimBatches {
    /// Whether this call inserted the key (`None`: ask alone).
    async fn insert(self: &std::sync::Arc<Self>, store: &Store, scope: &str, key: &str, request_hash: &str) -> Option<bool> {
        let (inserted, answer) = oneshot::channel();
        let new = NewKey { scope: scope.to_owned(), key: key.to_owned(), request_hash: request_hash.to_owned(), inserted };
        let drainer = || {
            let (this, store) = (self.clone(), store.clone());
            tokio::spawn(async move { this.drain(&store).await });
        };
        self.lane.submit(new, MAX_CLAIMS, |batch| Self::claim_batch(store, batch), drainer).await;
        answer.await.ok().flatten()
    }

    async fn drain(&self, store: &Store) {
        let mut drainer = self.lane.drainer();
        while let Some(batch) = drainer.next_batch(MAX_CLAIMS) {
            Self::claim_batch(store, batch).await;
        }
    }

    async fn claim_batch(store: &Store, mut batch: Vec<NewKey>) {
        // Rows in key order, as every writer of several keys: two batches holding
        // the same keys cannot deadlock on the unique index.
        batch.sort_by(|a, b| (&a.scope, &a.key).cmp(&(&b.scope, &b.key)));
        let (ts, lease, keep) = (now(), later(LEASE_SECS), later(KEEP_SECS));
        let mut q = SqlBuilder::new(
            "INSERT INTO idempotency_keys (scope, idem_key, request_hash, state, locked_until, created_at, expires_at) VALUES ",
        );
        q.bind_rows(batch.iter().map(|k| {
            vec![
                k.scope.as_str().into(),
                k.key.as_str().into(),
                k.request_hash.as_str().into(),
                "running".into(),
                lease.as_str().into(),
                ts.as_str().into(),
                keep.as_str().into(),
            ]
        }));
        q.push(" ON CONFLICT (scope, idem_key) DO NOTHING RETURNING scope, idem_key");
        let inserted = q.build().fetch_all(&store.pool).await.map_err(StoreError::from).and_then(|rows| {
            rows.iter().map(|r| Ok((text(r, "scope")?, text(r, "idem_key")?))).collect::<StoreResult<BTreeSet<_>>>()
        });
        match inserted {
            Ok(mut inserted) => {
                for k in batch {
                    // The first caller of a key in the batch has it; a repeat finds it taken.
                    let mine = inserted.remove(&(k.scope, k.key));
                    let _ = k.inserted.send(Some(mine));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, keys = batch.len(), "batched key claim failed; its callers claim alone");
                for k in batch {
                    let _ = k.inserted.send(None);
                }
            }
        }
    }
}

fn later(secs: i64) -> String {
    format_time(time::OffsetDateTime::now_utc() + time::Duration::seconds(secs))
}

impl Store {
    pub async fn claim_idempotency_key(&self, scope: &str, key: &str, request_hash: &str) -> StoreResult<Claim> {
        // Claimed with the keys arriving at the same moment; a key that was there
        // already (or a failed batch) is judged alone.
        if self.claims.insert(self, scope, key, request_hash).await == Some(true) {
            return Ok(Claim::Fresh);
        }
        self.claim_alone(scope, key, request_hash).await
    }

    async fn claim_alone(&self, scope: &str, key: &str, request_hash: &str) -> StoreResult<Claim> {
        let ts = now();
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (scope, idem_key, request_hash, state, locked_until, created_at, expires_at)
             VALUES ($1, $2, $3, 'running', $4, $5, $6) ON CONFLICT (scope, idem_key) DO NOTHING",
        )
        .bind(scope)
        .bind(key)
        .bind(request_hash)
        .bind(later(LEASE_SECS))
        .bind(ts.as_str())
        .bind(later(KEEP_SECS))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(Claim::Fresh);
        }
        let Some(row) = sqlx::query(
            "SELECT request_hash, state, order_id, response_status, response_body, locked_until
             FROM idempotency_keys WHERE scope = $1 AND idem_key = $2",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?
        else {
            // Purged between the insert and the read: a fresh start is correct.
            return Box::pin(self.claim_alone(scope, key, request_hash)).await;
        };
        if text(&row, "request_hash")? != request_hash {
            return Ok(Claim::Mismatch);
        }
        if text(&row, "state")? == "done" {
            return Ok(Claim::Replay {
                status: opt_int(&row, "response_status")?.unwrap_or(500) as u16,
                body: opt_text(&row, "response_body")?.unwrap_or_default(),
            });
        }
        let locked_until = text(&row, "locked_until")?;
        if locked_until > ts {
            return Ok(Claim::InFlight);
        }
        // The holder's lease ran out: take the key over, unless someone else just did.
        let taken = sqlx::query(
            "UPDATE idempotency_keys SET locked_until = $1 WHERE scope = $2 AND idem_key = $3 AND state = 'running' AND locked_until = $4",
        )
        .bind(later(LEASE_SECS))
        .bind(scope)
        .bind(key)
        .bind(locked_until.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if taken == 0 {
            return Ok(Claim::InFlight);
        }
        Ok(Claim::Resume { order_id: opt_id(&row, "order_id")? })
    }

    /// Stores the final answer for replay.
    pub async fn finish_idempotency_key(&self, scope: &str, key: &str, status: u16, body: &str) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        store_answer(&mut conn, scope, key, status, body).await
    }

    /// Gives up a key after a server-side failure, so the client's retry with the
    /// same key runs again at once: forgotten when nothing was placed under it,
    /// otherwise its lease ends now and the retry resumes from the order.
    pub async fn release_idempotency_key(&self, scope: &str, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND idem_key = $2 AND state = 'running' AND order_id IS NULL")
            .bind(scope)
            .bind(key)
            .execute(&self.pool)
            .await?;
        sqlx::query("UPDATE idempotency_keys SET locked_until = $1 WHERE scope = $2 AND idem_key = $3 AND state = 'running'")
            .bind(format_time(time::OffsetDateTime::now_utc() - time::Duration::seconds(1)))
            .bind(scope)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes answers older than their 24 hours.
    pub async fn purge_idempotency_keys(&self) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM idempotency_keys WHERE expires_at < $1")
            .bind(now())
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
