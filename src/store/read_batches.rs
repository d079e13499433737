//! Group reads: concurrent requests that need the same kind of read share one
//! statement, the way concurrent checkouts share one placing transaction
//! (`ops::order_batches`).
//!
//! On a sale day hundreds of checkouts arrive in the same millisecond, and each
//! used to read its cart on its own. A round trip costs the database far more in
//! parsing, planning, scheduling and the socket than in the rows it returns, so
//! the reads are grouped: up to [`PARALLEL`] batches of a kind are read at once;
//! while they all are, new keys queue, and when one comes back everything queued
//! goes in its next batch (up to [`MAX_KEYS`] distinct keys; [`crate::batch_lane`]).
//! A quiet shop reads each key at once, alone; a busy one reads as many per
//! statement as arrived during the last one.
//!
//! A caller is only ever answered by a read that *started after it queued*, so a
//! grouped read sees every write committed before the request asked — the same
//! as reading alone. When a batch fails, each of its callers reads alone, so an
//! error is reported to the request it belongs to, as before.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::{Store, StoreResult};
use crate::batch_lane::BatchLane;

/// The most keys one batched read asks for.
pub const MAX_KEYS: usize = 256;

/// A read that can be asked for many keys at once.
pub trait BatchedRead: Send + Sync + 'static {
    type Key: Clone + Eq + Hash + Send + Sync + 'static;
    type Value: Clone + Send + Sync + 'static;

    /// Reads `keys` (distinct) in one go: the value of every key found.
    fn read(store: &Store, keys: &[Self::Key]) -> impl Future<Output = StoreResult<HashMap<Self::Key, Self::Value>>> + Send;
}

/// `Some(value or none)` from a batch, `None` when the batch failed.
type Answer<V> = oneshot::Sender<Option<Option<V>>>;
/// A key waiting for the next batch, and where to send its value.
type Waiting<R> = (<R as BatchedRead>::Key, Answer<<R as BatchedRead>::Value>);

/// The queue of one kind of read.
pub struct ReadBatches<R: BatchedRead> {
    lane: BatchLane<Waiting<R>>,
}

/// Batches of one kind of read in flight at once.
pub const PARALLEL: usize = 4;

impl<R: BatchedRead> Default for ReadBatches<R> {
    fn default() -> Self {
        Self { lane: BatchLane::new(PARALLEL) }
    }
}

impl<R: BatchedRead> ReadBatches<R> {
    /// Reads `key` in the next batch.
    pub async fn load(self: &Arc<Self>, store: &Store, key: R::Key) -> StoreResult<Option<R::Value>> {
        let (answer, value) = oneshot::channel();
        let drainer = || {
            // Further batches in their own task: a caller that goes away must not
            // leave the others waiting.
            let (this, store) = (self.clone(), store.clone());
            tokio::spawn(async move { this.drain(&store).await });
        };
        self.lane.submit((key.clone(), answer), MAX_KEYS, |batch| self.read_batch(store, batch), drainer).await;
        match value.await {
            Ok(Some(value)) => Ok(value),
            // The batch failed or stopped: read alone, for this request's own answer.
            _ => Ok(R::read(store, std::slice::from_ref(&key)).await?.remove(&key)),
        }
    }

    async fn drain(&self, store: &Store) {
        let mut drainer = self.lane.drainer();
        while let Some(batch) = drainer.next_batch(MAX_KEYS) {
            self.read_batch(store, batch).await;
        }
    }

    async fn read_batch(&self, store: &Store, batch: Vec<Waiting<R>>) {
        let mut seen = std::collections::HashSet::with_capacity(batch.len());
        let keys: Vec<R::Key> = batch.iter().filter(|(k, _)| seen.insert(k)).map(|(k, _)| k.clone()).collect();
        metrics::histogram!("mercato_read_batch_size", "read" => short_name::<R>()).record(keys.len() as f64);
        match R::read(store, &keys).await {
            Ok(values) => {
                for (k, answer) in batch {
                    let _ = answer.send(Some(values.get(&k).cloned()));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, keys = keys.len(), "batched read failed; its callers read alone");
                for (_, answer) in batch {
                    let _ = answer.send(None);
                }
            }
        }
    }
}

/// The read's type name without its path, as a metric label.
fn short_name<R>() -> &'static str {
    let name = std::any::type_name::<R>();
    name.rsplit("::").next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::store::StoreError;

    async fn store() -> Store {
        Store::connect("sqlite::memory:", 1, Duration::from_secs(5)).await.expect("an in-memory store")
    }

    /// Keys below 100 exist (value: ten times the key); every read is counted.
    struct Tens;
    static TENS_READS: AtomicUsize = AtomicUsize::new(0);
    static TENS_LARGEST: AtomicUsize = AtomicUsize::new(0);

    impl BatchedRead for Tens {
        type Key = u32;
        type Value = u32;
        async fn read(_: &Store, keys: &[u32]) -> StoreResult<HashMap<u32, u32>> {
            TENS_READS.fetch_add(1, Ordering::SeqCst);
            TENS_LARGEST.fetch_max(keys.len(), Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(keys.iter().filter(|k| **k < 100).map(|k| (*k, k * 10)).collect())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_loads_share_reads_and_each_gets_its_own_value() {
        let (store, lane) = (store().await, Arc::new(ReadBatches::<Tens>::default()));
        let loads: Vec<_> = (0..64u32)
            .map(|i| {
                let (store, lane) = (store.clone(), lane.clone());
                let key = if i % 16 == 0 { 1000 + i } else { i % 8 };
                tokio::spawn(async move { (key, lane.load(&store, key).await) })
            })
            .collect();
        for load in loads {
            let (key, value) = load.await.expect("the load ran");
            assert_eq!(value.expect("no error"), (key < 100).then_some(key * 10), "key {key}");
        }
        let reads = TENS_READS.load(Ordering::SeqCst);
        assert!(reads < 64, "64 concurrent loads took {reads} reads");
        assert!(TENS_LARGEST.load(Ordering::SeqCst) > 1, "no read asked for more than one key");
        // Distinct keys only: 8 present and 4 missing at most.
        assert!(TENS_LARGEST.load(Ordering::SeqCst) <= 12);
    }

    /// Fails whenever asked for more than one key.
    struct Picky;
    static PICKY_ALONE: AtomicUsize = AtomicUsize::new(0);

    impl BatchedRead for Picky {
        type Key = u32;
        type Value = u32;
        async fn read(_: &Store, keys: &[u32]) -> StoreResult<HashMap<u32, u32>> {
            tokio::time::sleep(Duration::from_millis(2)).await;
            if keys.len() > 1 {
                return Err(StoreError::Corrupt("one at a time".into()));
            }
            PICKY_ALONE.fetch_add(1, Ordering::SeqCst);
            if keys[0] == 7 {
                return Err(StoreError::NotFound("seven"));
            }
            Ok(keys.iter().map(|k| (*k, k + 1)).collect())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_batch_lets_each_caller_read_alone_and_keep_its_own_error() {
        let (store, lane) = (store().await, Arc::new(ReadBatches::<Picky>::default()));
        let loads: Vec<_> = (0..20u32)
            .map(|k| {
                let (store, lane) = (store.clone(), lane.clone());
                tokio::spawn(async move { (k, lane.load(&store, k).await) })
            })
            .collect();
        for load in loads {
            match load.await.expect("the load ran") {
                (7, Err(StoreError::NotFound("seven"))) => {}
                (7, other) => panic!("key 7 should fail on its own, got {other:?}"),
                (k, value) => assert_eq!(value.expect("no error"), Some(k + 1)),
            }
        }
        assert!(PICKY_ALONE.load(Ordering::SeqCst) >= 20 - 1, "some callers were never answered alone");
    }

    /// Answers with how many reads had started when this one did, and holds the
    /// first read until told to go on.
    struct Numbered;
    static NUMBERED_STARTED: AtomicUsize = AtomicUsize::new(0);
    static NUMBERED_GO: tokio::sync::Notify = tokio::sync::Notify::const_new();
    static NUMBERED_HELD: tokio::sync::Notify = tokio::sync::Notify::const_new();

    impl BatchedRead for Numbered {
        type Key = ();
        type Value = usize;
        async fn read(_: &Store, _: &[()]) -> StoreResult<HashMap<(), usize>> {
            let n = NUMBERED_STARTED.fetch_add(1, Ordering::SeqCst) + 1;
            if n == 1 {
                NUMBERED_HELD.notify_one();
                NUMBERED_GO.notified().await;
            }
            Ok(HashMap::from([((), n)]))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_load_is_answered_by_a_read_that_started_after_it() {
        let (store, lane) = (store().await, Arc::new(ReadBatches::<Numbered>::default()));
        let first = {
            let (store, lane) = (store.clone(), lane.clone());
            tokio::spawn(async move { lane.load(&store, ()).await })
        };
        NUMBERED_HELD.notified().await;
        // The first read is held: a load now must neither wait for it nor take its
        // (older) answer. The timeout only turns a hang into a failure.
        let second = tokio::time::timeout(Duration::from_secs(10), lane.load(&store, ()))
            .await
            .expect("answered while the first read is held")
            .expect("no error");
        assert_eq!(second, Some(2));
        NUMBERED_GO.notify_one();
        assert_eq!(first.await.expect("ran").expect("no error"), Some(1));
    }
}
