//! The product search index (tantivy), one per instance: a read model of the
//! published catalog, fed from the catalog's change log (`ops::catalog_feed`).
//! Its commit payload records the log position it reflects, so a restart goes on
//! from there and a missing, outdated or foreign index is rebuilt.

pub mod facets;
pub mod filters;
pub mod fuzzy;
pub mod query;
pub mod schema;
pub mod words;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::Query;
use tantivy::schema::Value;
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Searcher, TantivyDocument, Term};
use uuid::Uuid;

use crate::domain::category_tree::Tree;
use crate::domain::money::Currency;
use crate::domain::search_request::SearchSort;
use crate::store::search_documents::SearchDocument;
use facets::{FacetCounter, FacetCounts};
use schema::{Fields, SCHEMA_VERSION, Stored};

/// Memory the writer buffers before it writes a segment.
const WRITER_HEAP_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("the search index at {path} is in use by another process; give each instance its own MERCATO_SEARCH_PATH")]
    Locked { path: PathBuf },
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("search index directory: {0}")]
    Directory(String),
}

/// What the last commit reflects.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    schema: u32,
    position: u64,
}

/// A page of hits reads the stored fields of 24 documents spread over the
/// index: small blocks make each read decompress little besides its document.
const DOCSTORE_BLOCK_BYTES: usize = 2048;

fn settings() -> tantivy::IndexSettings {
    tantivy::IndexSettings { docstore_blocksize: DOCSTORE_BLOCK_BYTES, ..tantivy::IndexSettings::default() }
}

pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    /// Log position of the last commit (0: nothing indexed yet).
    position: AtomicU64,
    /// False until the first commit: the index must be built before it is used.
    built: std::sync::atomic::AtomicBool,
    /// Held by whoever writes to the index (the feed, a rebuild), so a rebuild's
    /// many pages are never committed half-way by the feed.
    pub(crate) writing: tokio::sync::Mutex<()>,
    rebuilding: std::sync::atomic::AtomicBool,
    /// Filter bitsets, word matches and decoded facet values per segment: all
    /// kept current by the reader (its warmers).
    filters: Arc<filters::FilterCache>,
    words: Arc<words::WordCache>,
    facet_tables: Arc<facets::FacetTables>,
}

/// One page of hits with its total and facet counts.
pub struct Hits {
    pub total: usize,
    pub items: Vec<Stored>,
    pub facets: FacetCounts,
}

impl SearchIndex {
    /// Opens the index at `path` (creating it if missing or built by another
    /// schema version; such an index reports `needs_build`).
    pub fn open(path: &Path) -> Result<Self, SearchError> {
        std::fs::create_dir_all(path).map_err(|e| SearchError::Directory(format!("{}: {e}", path.display())))?;
        let (schema, fields) = schema::build();
        let dir = MmapDirectory::open(path).map_err(|e| SearchError::Directory(format!("{}: {e}", path.display())))?;
        let existing = Index::exists(&dir).unwrap_or(false);
        let settings = settings();
        let reusable = if existing {
            Index::open(dir.clone()).ok().filter(|i| i.schema() == schema && *i.settings() == settings)
        } else {
            None
        };
        let index = match reusable {
            Some(index) => index,
            None => {
                if existing {
                    // Another schema version or settings: start over in the same place.
                    for entry in std::fs::read_dir(path).map_err(|e| SearchError::Directory(e.to_string()))?.flatten() {
                        let _ = if entry.path().is_dir() {
                            std::fs::remove_dir_all(entry.path())
                        } else {
                            std::fs::remove_file(entry.path())
                        };
                    }
                }
                let dir = MmapDirectory::open(path).map_err(|e| SearchError::Directory(e.to_string()))?;
                Index::create(dir, schema, settings)?
            }
        };
        schema::register_analyzer(&index);
        let writer = index.writer_with_num_threads(1, WRITER_HEAP_BYTES).map_err(|e| match e {
            tantivy::TantivyError::LockFailure(..) => SearchError::Locked { path: path.to_owned() },
            other => SearchError::Index(other),
        })?;
        let facet_tables = Arc::new(facets::FacetTables::default());
        let filters = Arc::new(filters::FilterCache::default());
        let words = Arc::new(words::WordCache::default());
        let warmers: [Arc<dyn tantivy::Warmer>; 3] = [facet_tables.clone(), filters.clone(), words.clone()];
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .warmers(warmers.iter().map(Arc::downgrade).collect())
            .try_into()?;
        let payload: Option<Payload> = index
            .load_metas()?
            .payload
            .and_then(|p| serde_json::from_str(&p).ok())
            .filter(|p: &Payload| p.schema == SCHEMA_VERSION);
        Ok(Self {
            index,
            reader,
            writer: Mutex::new(writer),
            fields,
            position: AtomicU64::new(payload.as_ref().map_or(0, |p| p.position)),
            built: payload.is_some().into(),
            writing: tokio::sync::Mutex::new(()),
            rebuilding: false.into(),
            filters,
            words,
            facet_tables,
        })
    }

    /// The log position the searchable index reflects.
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    /// Whether the index was ever committed (else it must be built from the catalog).
    pub fn is_built(&self) -> bool {
        self.built.load(Ordering::Acquire)
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, IndexWriter> {
        self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the documents of `changed` products: those in `docs` are
    /// (re)indexed, the others removed. Not visible until `commit`.
    pub fn stage(&self, tree: &Tree, changed: &[Uuid], docs: &[SearchDocument]) -> Result<(), SearchError> {
        let writer = self.writer();
        for id in changed {
            writer.delete_term(Term::from_field_text(self.fields.id, &id.to_string()));
        }
        for doc in docs {
            writer.add_document(schema::document(&self.fields, tree, doc))?;
        }
        Ok(())
    }

    /// Removes every document (a rebuild starts with this). Not visible until `commit`.
    pub fn stage_clear(&self) -> Result<(), SearchError> {
        self.writer().delete_all_documents()?;
        Ok(())
    }

    /// Makes the staged changes searchable as of log `position`. Blocking (it
    /// writes and syncs segments): call it off the async threads.
    pub fn commit(&self, position: u64) -> Result<(), SearchError> {
        let mut writer = self.writer();
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&serde_json::to_string(&Payload { schema: SCHEMA_VERSION, position }).unwrap_or_default());
        prepared.commit()?;
        drop(writer);
        self.reader.reload()?;
        self.position.store(position, Ordering::Release);
        self.built.store(true, Ordering::Release);
        Ok(())
    }

    /// Drops every change staged since the last commit (after a failed step
    /// or rebuild, so a later commit cannot publish half of it).
    pub fn rollback(&self) -> Result<(), SearchError> {
        self.writer().rollback()?;
        Ok(())
    }

    /// Number of documents searchable now.
    pub fn documents(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Claims the index for a rebuild; false when one is already running.
    pub fn start_rebuild(&self) -> bool {
        !self.rebuilding.swap(true, Ordering::AcqRel)
    }

    pub fn finish_rebuild(&self) {
        self.rebuilding.store(false, Ordering::Release);
    }

    pub fn is_rebuilding(&self) -> bool {
        self.rebuilding.load(Ordering::Acquire)
    }

    /// Size of the index files on disk.
    pub fn size_bytes(&self) -> u64 {
        self.reader.searcher().space_usage().map(|u| u.total().get_bytes()).unwrap_or(0)
    }

    /// The index's analyzer applied to user text.
    pub fn terms(&self, text: &str) -> Vec<String> {
        match self.index.tokenizers().get(schema::ANALYZER) {
            Some(mut analyzer) => query::terms(&mut analyzer, text),
            None => Vec::new(),
        }
    }

    /// The index as of the last commit (benchmarks take it apart).
    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// Counts facets of this index's matches in `currency`, by the buckets starting at `bucket_floors`.
    pub fn facet_counter(&self, currency: Currency, bucket_floors: Vec<i64>) -> FacetCounter {
        FacetCounter { currency, bucket_floors, tables: self.facet_tables.clone() }
    }

    /// The filter bitsets of this index's segments.
    pub fn filter_cache(&self) -> &filters::FilterCache {
        &self.filters
    }

    /// The matches of words searched recently, in this index's segments.
    pub fn word_cache(&self) -> &words::WordCache {
        &self.words
    }

    /// One page of `query`'s hits in `sort` order (prices in `currency`), the
    /// total, and facet counts. Blocking (CPU): call it off the async threads.
    pub fn search(
        &self,
        query: &dyn Query,
        sort: SearchSort,
        currency: Currency,
        offset: usize,
        limit: usize,
        facets: FacetCounter,
    ) -> Result<Hits, SearchError> {
        let searcher = self.reader.searcher();
        let top = TopDocs::with_limit(limit).and_offset(offset);
        let (addresses, total, facets): (Vec<DocAddress>, usize, FacetCounts) = match sort {
            SearchSort::Relevance => {
                let (hits, total, facets) = searcher.search(query, &(top.order_by_score(), Count, facets))?;
                (hits.into_iter().map(|(_, a)| a).collect(), total, facets)
            }
            SearchSort::Newest => {
                let (hits, total, facets) =
                    searcher.search(query, &(top.order_by_fast_field::<u64>("created", Order::Desc), Count, facets))?;
                (hits.into_iter().map(|(_, a)| a).collect(), total, facets)
            }
            SearchSort::PriceAsc | SearchSort::PriceDesc => {
                let ascending = sort == SearchSort::PriceAsc;
                // Larger keys rank first; products without a price in the currency come last.
                let by_price = top.tweak_score(move |segment: &tantivy::SegmentReader| {
                    let prices = segment.fast_fields().column_opt::<u64>("price").ok().flatten();
                    move |doc: tantivy::DocId, _score: tantivy::Score| -> u64 {
                        let amount = prices
                            .as_ref()
                            .and_then(|c| c.values_for_doc(doc).find_map(|v| crate::domain::price_band::decode_in(currency, v)));
                        match amount {
                            None => 0,
                            Some(a) if ascending => u64::MAX - a as u64,
                            Some(a) => a as u64 + 1,
                        }
                    }
                });
                let (hits, total, facets) = searcher.search(query, &(by_price, Count, facets))?;
                (hits.into_iter().map(|(_, a)| a).collect(), total, facets)
            }
        };
        Ok(Hits { total, items: self.stored(&searcher, &addresses)?, facets })
    }

    /// Titles of the best matches of a phrase being typed. Blocking.
    pub fn suggest(&self, terms: &[String], limit: usize) -> Result<Vec<Stored>, SearchError> {
        let searcher = self.reader.searcher();
        let q = query::text_query(&self.fields, terms, true, None, None);
        let hits = searcher.search(&q, &TopDocs::with_limit(limit).order_by_score())?;
        self.stored(&searcher, &hits.into_iter().map(|(_, a)| a).collect::<Vec<_>>())
    }

    fn stored(&self, searcher: &Searcher, addresses: &[DocAddress]) -> Result<Vec<Stored>, SearchError> {
        let mut out = Vec::with_capacity(addresses.len());
        for address in addresses {
            let doc: TantivyDocument = searcher.doc(*address)?;
            if let Some(stored) =
                doc.get_first(self.fields.stored).and_then(|v| v.as_str()).and_then(|s| serde_json::from_str(s).ok())
            {
                out.push(stored);
            }
        }
        Ok(out)
    }
}
