//! Follows the catalog's change log: one tail moves this instance's catalog
//! versions (cache keys), another keeps its search index current; and builds
//! the index from the catalog when it is missing, outdated or from another
//! database. The two tails are separate so that a long rebuild of the index
//! never holds the caches back.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use uuid::Uuid;

use crate::catalog_versions::CatalogVersions;
use crate::domain::category_tree::Tree;
use crate::search::{SearchError, SearchIndex};
use crate::store::search_documents::SearchDocument;
use crate::store::{Store, StoreError};

/// Changes read per step.
const EVENTS_PER_STEP: i64 = 2_000;
/// Products read from the database per query.
const PRODUCTS_PER_READ: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error("indexing task: {0}")]
    Task(String),
    /// Changes after the index's position were purged from the log.
    #[error("the search index is older than the catalog's change log")]
    Behind,
}

/// Whether the index must be rebuilt before it can follow the log: never
/// built, ahead of the log (it was built from another database), or behind
/// what the log still holds (the changes it missed were purged).
pub async fn needs_rebuild(store: &Store, index: &SearchIndex) -> Result<bool, FeedError> {
    let (oldest, newest) = store.catalog_log_bounds().await?;
    let at = index.position();
    Ok(!index.is_built() || at > newest || (oldest > 0 && at + 1 < oldest))
}

/// Indexes every published product, then makes the result searchable at once;
/// until then searches answer from the old index. Changes logged meanwhile are
/// applied by the feed afterwards. On failure nothing of it is kept.
pub async fn rebuild(store: &Store, index: &Arc<SearchIndex>, progress: &ProgressBar) -> Result<u64, FeedError> {
    let _writing = index.writing.lock().await;
    let outcome = rebuild_locked(store, index, progress).await;
    if outcome.is_err() {
        let _ = index.rollback();
    }
    outcome
}

async fn rebuild_locked(store: &Store, index: &Arc<SearchIndex>, progress: &ProgressBar) -> Result<u64, FeedError> {
    // Everything logged up to here is committed, so the pages read below show it.
    let (_, position) = store.catalog_log_bounds().await?;
    let tree = Arc::new(category_tree(store).await?);
    progress.set_length(store.count_published_products().await?);
    index.rollback()?;
    index.stage_clear()?;
    let mut after = None;
    let mut indexed = 0;
    loop {
        let docs = store.search_documents_page(after, PRODUCTS_PER_READ as i64).await?;
        let Some(last) = docs.last() else { break };
        after = Some(last.id);
        indexed += docs.len() as u64;
        progress.inc(docs.len() as u64);
        stage(index, &tree, Vec::new(), docs).await?;
    }
    commit(index, position).await?;
    progress.finish();
    Ok(indexed)
}

/// Applies the next changes of the log to the index; returns how many were read.
pub async fn step(store: &Store, index: &Arc<SearchIndex>) -> Result<usize, FeedError> {
    let _writing = index.writing.lock().await;
    let position = index.position();
    let events = store.catalog_events_after(position, EVENTS_PER_STEP).await?;
    let Some(last) = events.last().map(|e| e.seq) else { return Ok(0) };
    // A gap is usually a rolled-back append; it is a purge when the log starts after it.
    if events[0].seq > position + 1 && store.catalog_log_bounds().await?.0 > position + 1 {
        return Err(FeedError::Behind);
    }
    let outcome = async {
        let changed: Vec<Uuid> = events.iter().filter_map(|e| e.product_id).collect::<BTreeSet<_>>().into_iter().collect();
        if !changed.is_empty() {
            let tree = Arc::new(category_tree(store).await?);
            for chunk in changed.chunks(PRODUCTS_PER_READ) {
                let docs = store.search_documents(chunk).await?;
                stage(index, &tree, chunk.to_vec(), docs).await?;
            }
        }
        commit(index, last).await
    }
    .await;
    if outcome.is_err() {
        let _ = index.rollback();
    }
    outcome?;
    let now = time::OffsetDateTime::now_utc();
    for e in &events {
        if let Ok(at) = time::OffsetDateTime::parse(&e.at, &time::format_description::well_known::Rfc3339) {
            metrics::histogram!("mercato_search_index_lag_seconds").record((now - at).as_seconds_f64().max(0.0));
        }
    }
    metrics::gauge!("mercato_search_index_position").set(last as f64);
    metrics::gauge!("mercato_search_documents").set(index.documents() as f64);
    Ok(events.len())
}

/// Moves the catalog versions past the next changes of the log from `after`;
/// returns the new position.
async fn note_versions(store: &Store, versions: &CatalogVersions, after: u64) -> Result<(u64, usize), FeedError> {
    let events = store.catalog_events_after(after, EVENTS_PER_STEP).await?;
    for e in &events {
        versions.note(e.seq, e.product_id);
    }
    Ok((events.last().map_or(after, |e| e.seq), events.len()))
}

/// Follows the log every `poll` for as long as the process runs. `position`:
/// where `versions` start (the log's end when the instance started).
pub fn spawn(store: Store, index: Arc<SearchIndex>, versions: Arc<CatalogVersions>, position: u64, poll: Duration) {
    let versions_store = store.clone();
    tokio::spawn(async move {
        let at = AtomicU64::new(position);
        follow("catalog versions", poll, &versions_store, || {
            let (store, versions, at) = (&versions_store, &versions, &at);
            async move {
                let (next, read) = note_versions(store, versions, at.load(Ordering::Relaxed)).await?;
                at.store(next, Ordering::Relaxed);
                Ok(read)
            }
        })
        .await
    });
    tokio::spawn(async move {
        follow("search index", poll, &store, || {
            let (store, index) = (&store, &index);
            async move {
                if index.is_rebuilding() {
                    return Ok(0); // staff asked for a rebuild; it holds the writer
                }
                match step(store, index).await {
                    Err(FeedError::Behind) if index.start_rebuild() => {
                        tracing::warn!("search index: changes it missed were purged from the log; rebuilding");
                        let rebuilt = rebuild(store, index, &ProgressBar::hidden()).await;
                        index.finish_rebuild();
                        rebuilt.map(|_| 0)
                    }
                    other => other,
                }
            }
        })
        .await
    });
}

/// Runs `step` every `poll`, at once again while it reads full batches, and
/// logs a failure once per outage; ends when the store is closed.
async fn follow<F, Fut>(what: &'static str, poll: Duration, store: &Store, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize, FeedError>>,
{
    let mut failing_since: Option<Instant> = None;
    while !store.is_closed() {
        match step().await {
            Ok(n) if n as i64 == EVENTS_PER_STEP => continue,
            Ok(_) => {
                if failing_since.take().is_some() {
                    tracing::info!(what, "catalog feed recovered");
                }
            }
            // Stopping: the pool closed under the step.
            Err(_) if store.is_closed() => return,
            Err(e) => {
                if failing_since.is_none() {
                    tracing::warn!(what, error = %e, "catalog feed: cannot apply catalog changes; retrying");
                    failing_since = Some(Instant::now());
                }
            }
        }
        tokio::time::sleep(if failing_since.is_some() { poll * 4 } else { poll }).await;
    }
}

/// Stages documents off the async threads (building them is CPU work and the
/// writer may block when its queue is full).
async fn stage(
    index: &Arc<SearchIndex>,
    tree: &Arc<Tree>,
    changed: Vec<Uuid>,
    docs: Vec<SearchDocument>,
) -> Result<(), FeedError> {
    let (index, tree) = (index.clone(), tree.clone());
    tokio::task::spawn_blocking(move || index.stage(&tree, &changed, &docs))
        .await
        .map_err(|e| FeedError::Task(e.to_string()))??;
    Ok(())
}

async fn commit(index: &Arc<SearchIndex>, position: u64) -> Result<(), FeedError> {
    let index = index.clone();
    tokio::task::spawn_blocking(move || index.commit(position)).await.map_err(|e| FeedError::Task(e.to_string()))??;
    Ok(())
}

async fn category_tree(store: &Store) -> Result<Tree, StoreError> {
    Ok(Tree::new(store.categories().await?.into_iter().map(|c| (c.id, c.parent_id))))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A stopping server closes the pool under the feed: the tail ends instead of
    /// retrying (and warning) forever.
    #[tokio::test]
    async fn a_tail_ends_when_the_store_closes() {
        let store = Store::connect("sqlite::memory:", 1, Duration::from_secs(5)).await.expect("an in-memory store");
        let steps = AtomicUsize::new(0);
        let tail = follow("test", Duration::from_millis(1), &store, || {
            let (store, steps) = (&store, &steps);
            async move {
                if steps.fetch_add(1, Ordering::Relaxed) == 2 {
                    store.close().await;
                }
                store.catalog_log_bounds().await?;
                Ok(0)
            }
        });
        tokio::time::timeout(Duration::from_secs(10), tail).await.expect("the tail ended once the store closed");
        assert_eq!(steps.load(Ordering::Relaxed), 3, "it stepped until the close and no further");
    }
}
