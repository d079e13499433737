//! Keeps this instance's search index and catalog versions current by tailing
//! the catalog's change log, and builds the index from the catalog when it is
//! missing, outdated or from another database.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use uuid::Uuid;

use crate::catalog_versions::CatalogVersions;
use crate::domain::category_tree::Tree;
use crate::search::{SearchError, SearchIndex};
use crate::store::{Store, StoreError};

/// Changes read (and indexed in one commit) per step.
const EVENTS_PER_STEP: i64 = 2_000;
/// Products read from the database per query.
const PRODUCTS_PER_READ: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Search(#[from] SearchError),
}

/// Whether the index must be rebuilt before it can follow the log: never
/// built, ahead of the log (another database), or behind what the log still holds.
pub async fn needs_rebuild(store: &Store, index: &SearchIndex) -> Result<bool, FeedError> {
    let (oldest, newest) = store.catalog_log_bounds().await?;
    let at = index.position();
    Ok(!index.is_built() || at > newest || (oldest > 0 && at + 1 < oldest))
}

/// Indexes every published product, then makes the result searchable at once.
/// Changes logged meanwhile are applied by the feed afterwards.
pub async fn rebuild(store: &Store, index: &Arc<SearchIndex>, progress: &ProgressBar) -> Result<u64, FeedError> {
    let _writing = index.writing.lock().await;
    // Everything logged up to here is committed, so the pages read below show it.
    let (_, position) = store.catalog_log_bounds().await?;
    let tree = category_tree(store).await?;
    progress.set_length(store.count_published_products().await?);
    index.stage_clear()?;
    let mut after = None;
    let mut indexed = 0;
    loop {
        let docs = store.search_documents_page(after, PRODUCTS_PER_READ as i64).await?;
        let Some(last) = docs.last() else { break };
        after = Some(last.id);
        index.stage(&tree, &[], &docs)?;
        indexed += docs.len() as u64;
        progress.inc(docs.len() as u64);
    }
    let committing = index.clone();
    tokio::task::spawn_blocking(move || committing.commit(position))
        .await
        .map_err(|e| SearchError::Directory(format!("commit task: {e}")))??;
    progress.finish();
    Ok(indexed)
}

/// Applies the next changes of the log; returns how many were read.
pub async fn step(store: &Store, index: &Arc<SearchIndex>, versions: &CatalogVersions) -> Result<usize, FeedError> {
    let _writing = index.writing.lock().await;
    let events = store.catalog_events_after(index.position(), EVENTS_PER_STEP).await?;
    let Some(last) = events.last().map(|e| e.seq) else { return Ok(0) };
    let changed: Vec<Uuid> = events.iter().filter_map(|e| e.product_id).collect::<BTreeSet<_>>().into_iter().collect();
    if !changed.is_empty() {
        let tree = category_tree(store).await?;
        for chunk in changed.chunks(PRODUCTS_PER_READ) {
            let docs = store.search_documents(chunk).await?;
            index.stage(&tree, chunk, &docs)?;
        }
    }
    let committing = index.clone();
    tokio::task::spawn_blocking(move || committing.commit(last))
        .await
        .map_err(|e| SearchError::Directory(format!("commit task: {e}")))??;
    let now = time::OffsetDateTime::now_utc();
    for e in &events {
        versions.note(e.seq, e.product_id);
        if let Ok(at) = time::OffsetDateTime::parse(&e.at, &time::format_description::well_known::Rfc3339) {
            metrics::histogram!("mercato_search_index_lag_seconds").record((now - at).as_seconds_f64().max(0.0));
        }
    }
    metrics::gauge!("mercato_search_index_position").set(last as f64);
    metrics::gauge!("mercato_search_documents").set(index.len() as f64);
    Ok(events.len())
}

/// Follows the log every `poll` for as long as the process runs.
pub fn spawn(store: Store, index: Arc<SearchIndex>, versions: Arc<CatalogVersions>, poll: Duration) {
    tokio::spawn(async move {
        let mut failing_since: Option<Instant> = None;
        loop {
            match step(&store, &index, &versions).await {
                // A full step means more is waiting: go on at once.
                Ok(n) if n as i64 == EVENTS_PER_STEP => continue,
                Ok(_) => failing_since = None,
                Err(e) => {
                    if failing_since.is_none() {
                        tracing::warn!(error = %e, "search feed: cannot apply catalog changes; retrying");
                        failing_since = Some(Instant::now());
                    }
                }
            }
            tokio::time::sleep(if failing_since.is_some() { poll * 4 } else { poll }).await;
        }
    });
}

async fn category_tree(store: &Store) -> Result<Tree, StoreError> {
    Ok(Tree::new(store.categories().await?.into_iter().map(|c| (c.id, c.parent_id))))
}
