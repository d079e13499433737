//! The documents each searched word matches in a segment, with their scores,
//! cached. A word's clause (title or description, exact or another spelling)
//! walks the postings of several terms in two fields, unions them and scores
//! every match; for the words shoppers type most, that was most of a search.
//! Segments never change once written, so the matches of a word in a segment
//! are worked out once and later searches walk a list, testing each document
//! against the filters' cached bitsets (a bit each) on the way.
//!
//! Scores depend on collection statistics (document counts, term frequencies
//! across segments), which move a little with every commit. A cached list
//! keeps the statistics of when it was made for at most `TIME_TO_LIVE`, and
//! only while the number of searchable documents stays within `DRIFT` of what
//! it was then (a bulk import or publication scores the lists again); a rebuild
//! or merge replaces the segments (and their lists).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{DocId, DocSet, Score, Searcher, SearcherGeneration, SegmentReader, TERMINATED, Warmer};
use tantivy_common::ReadOnlyBitSet;

use super::filters::{Filters, FiltersWeight, Key, drop_removed_segments};

/// Memory the cached lists may take (8 bytes per matching document).
const MAX_BYTES: u64 = 128 * 1024 * 1024;
/// How long a list may keep the collection statistics it was scored with.
const TIME_TO_LIVE: Duration = Duration::from_secs(300);
/// How far (a fraction) the searchable documents may have moved since a list
/// was scored before it is scored again.
const DRIFT: f64 = 0.05;

/// One word's matches in one segment, in document order.
struct Matches {
    docs: Vec<DocId>,
    scores: Vec<Score>,
    /// Searchable documents (every segment) when the scores were computed.
    documents: u64,
}

/// The matches of words searched recently, by segment and word.
#[derive(Clone)]
pub struct WordCache {
    lists: moka::sync::Cache<Key, Arc<Matches>>,
}

impl Default for WordCache {
    fn default() -> Self {
        let lists = moka::sync::Cache::builder()
            .max_capacity(MAX_BYTES)
            .weigher(|_: &Key, m: &Arc<Matches>| u32::try_from(m.docs.len() * 8 + 64).unwrap_or(u32::MAX))
            .time_to_live(TIME_TO_LIVE)
            .support_invalidation_closures()
            .build();
        Self { lists }
    }
}

impl WordCache {
    #[cfg(test)]
    pub(crate) fn entries(&self) -> u64 {
        self.lists.run_pending_tasks();
        self.lists.entry_count()
    }
}

/// Kept current by the index reader: lists of segments no searcher holds any
/// more are dropped at once.
impl Warmer for WordCache {
    fn warm(&self, _: &Searcher) -> tantivy::Result<()> {
        Ok(())
    }

    fn garbage_collect(&self, live: &[&SearcherGeneration]) {
        drop_removed_segments(&self.lists, live, "word lists");
    }
}

/// A word's clause answered from the cache, restricted to `filters`. `key`
/// names exactly what the clause matches and how it scores (two clauses with
/// one key must be equal); the filters are not part of it.
#[derive(Clone)]
pub struct CachedWord {
    cache: WordCache,
    key: Arc<str>,
    /// Shared, not copied, by every weight: most searches never run it.
    clause: Arc<dyn Query>,
    filters: Option<Filters>,
}

impl CachedWord {
    pub fn new(cache: &WordCache, key: String, clause: Box<dyn Query>, filters: Option<&Filters>) -> Self {
        Self { cache: cache.clone(), key: key.into(), clause: clause.into(), filters: filters.cloned() }
    }
}

impl std::fmt::Debug for CachedWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CachedWord").field(&self.key).finish()
    }
}

impl Query for CachedWord {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        // Lists hold scores, so they are made with the searcher's statistics
        // even when this search ignores scores (a price sort).
        let Some(searcher) = scoring.searcher() else {
            // No statistics to score a list with: the clause as it is.
            return self.clause.weight(scoring);
        };
        Ok(Box::new(CachedWordWeight {
            cache: self.cache.clone(),
            key: self.key.clone(),
            clause: self.clause.clone(),
            filters: self.filters.as_ref().map(|f| f.unscored_weight(scoring.schema())).transpose()?,
            documents: searcher.num_docs(),
            searcher: searcher.clone(),
            scored: OnceLock::new(),
        }))
    }
}

struct CachedWordWeight {
    cache: WordCache,
    key: Arc<str>,
    clause: Arc<dyn Query>,
    filters: Option<FiltersWeight>,
    /// Searchable documents in `searcher`.
    documents: u64,
    searcher: Searcher,
    /// The clause's weight, made only when a segment's list is missing (it
    /// builds the typo automaton and reads term statistics).
    scored: OnceLock<Box<dyn Weight>>,
}

impl CachedWordWeight {
    fn scored(&self) -> tantivy::Result<&dyn Weight> {
        if let Some(w) = self.scored.get() {
            return Ok(w.as_ref());
        }
        let weight = self.clause.weight(EnableScoring::enabled_from_searcher(&self.searcher))?;
        Ok(self.scored.get_or_init(|| weight).as_ref())
    }

    fn matches(&self, reader: &SegmentReader) -> tantivy::Result<Arc<Matches>> {
        let key = (reader.segment_id(), self.key.clone());
        if let Some(matches) = self.cache.lists.get(&key) {
            if drifted(matches.documents, self.documents) <= DRIFT {
                metrics::counter!("mercato_search_word_lists_total", "result" => "hit").increment(1);
                return Ok(matches);
            }
            self.cache.lists.invalidate(&key);
        }
        let mut walked = false;
        let matches = self
            .cache
            .lists
            .try_get_with(key, || {
                walked = true;
                matching(self.scored()?, reader, self.documents)
            })
            .map_err(|e| tantivy::TantivyError::InternalError(format!("word {}: {e}", self.key)))?;
        metrics::counter!("mercato_search_word_lists_total", "result" => if walked { "miss" } else { "hit" }).increment(1);
        Ok(matches)
    }
}

/// How far `now` is from `then`, as a fraction of the larger.
fn drifted(then: u64, now: u64) -> f64 {
    then.abs_diff(now) as f64 / then.max(now).max(1) as f64
}

/// Walks the clause's postings once, scoring every match (deleted documents
/// too: the collectors skip them).
fn matching(weight: &dyn Weight, reader: &SegmentReader, documents: u64) -> tantivy::Result<Arc<Matches>> {
    let mut scorer = weight.scorer(reader, 1.0)?;
    let mut matches = Matches { docs: Vec::new(), scores: Vec::new(), documents };
    let mut doc = scorer.doc();
    while doc != TERMINATED {
        matches.docs.push(doc);
        matches.scores.push(scorer.score());
        doc = scorer.advance();
    }
    matches.docs.shrink_to_fit();
    matches.scores.shrink_to_fit();
    Ok(Arc::new(matches))
}

impl Weight for CachedWordWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let filters = match &self.filters {
            Some(f) => f.each(reader)?,
            None => Vec::new(),
        };
        Ok(Box::new(ListScorer::new(self.matches(reader)?, boost, filters)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        if let Some(f) = &self.filters
            && !f.each(reader)?.iter().all(|bits| bits.contains(doc))
        {
            return Err(tantivy::TantivyError::InvalidArgument(format!("document {doc} does not match the filters")));
        }
        self.scored()?.explain(reader, doc)
    }
}

/// Walks a cached list, skipping documents outside any of `filters`.
struct ListScorer {
    matches: Arc<Matches>,
    at: usize,
    boost: Score,
    filters: Vec<Arc<ReadOnlyBitSet>>,
}

impl ListScorer {
    fn new(matches: Arc<Matches>, boost: Score, filters: Vec<Arc<ReadOnlyBitSet>>) -> Self {
        let mut scorer = Self { matches, at: 0, boost, filters };
        scorer.skip_filtered();
        scorer
    }

    fn skip_filtered(&mut self) {
        while let Some(doc) = self.matches.docs.get(self.at)
            && !self.filters.iter().all(|bits| bits.contains(*doc))
        {
            self.at += 1;
        }
    }
}

impl DocSet for ListScorer {
    fn advance(&mut self) -> DocId {
        self.at = (self.at + 1).min(self.matches.docs.len());
        self.skip_filtered();
        self.doc()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        // Galloping: targets are usually near (a dense filter) and sometimes far.
        let docs = &self.matches.docs;
        let mut step = 1;
        let mut low = self.at;
        while low + step < docs.len() && docs[low + step] < target {
            low += step;
            step *= 2;
        }
        let high = (low + step + 1).min(docs.len());
        self.at = low + docs[low..high].partition_point(|d| *d < target);
        self.skip_filtered();
        self.doc()
    }

    fn doc(&self) -> DocId {
        self.matches.docs.get(self.at).copied().unwrap_or(TERMINATED)
    }

    fn size_hint(&self) -> u32 {
        u32::try_from(self.matches.docs.len()).unwrap_or(u32::MAX)
    }
}

impl Scorer for ListScorer {
    fn score(&mut self) -> Score {
        self.matches.scores.get(self.at).map_or(0.0, |s| s * self.boost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::BitSet;

    proptest::proptest! {
        /// Seeks and advances like a walk of the list's documents that are in
        /// every filter, scoring each with its boosted score.
        #[test]
        fn a_list_seeks_like_a_walk_of_its_filtered_documents(
            docs in proptest::collection::btree_set(0u32..5_000, 0..300),
            filters in proptest::collection::vec(proptest::collection::btree_set(0u32..5_000, 0..3_000), 0..3),
            steps in proptest::collection::vec((0u32..400, proptest::bool::ANY), 0..40),
        ) {
            let bitsets: Vec<Arc<ReadOnlyBitSet>> = filters
                .iter()
                .map(|f| {
                    let mut bits = BitSet::with_max_value(5_000);
                    for d in f {
                        bits.insert(*d);
                    }
                    Arc::new(ReadOnlyBitSet::from(&bits))
                })
                .collect();
            let kept: Vec<DocId> = docs.iter().copied().filter(|d| filters.iter().all(|f| f.contains(d))).collect();
            let all: Vec<DocId> = docs.into_iter().collect();
            let scores = all.iter().map(|d| *d as Score).collect();
            let mut scorer = ListScorer::new(Arc::new(Matches { docs: all, scores, documents: 0 }), 2.0, bitsets);
            let mut at = 0usize;
            proptest::prop_assert_eq!(scorer.doc(), kept.first().copied().unwrap_or(TERMINATED));
            for (step, seek) in steps {
                if scorer.doc() == TERMINATED {
                    break;
                }
                let found = if seek {
                    let target = scorer.doc() + step;
                    at = kept.partition_point(|d| *d < target);
                    scorer.seek(target)
                } else {
                    at = (at + 1).min(kept.len());
                    scorer.advance()
                };
                proptest::prop_assert_eq!(found, kept.get(at).copied().unwrap_or(TERMINATED));
                if found != TERMINATED {
                    proptest::prop_assert_eq!(scorer.score(), found as Score * 2.0);
                }
            }
        }
    }
}
