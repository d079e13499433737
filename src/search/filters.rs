//! Search filters (category, brand, attribute, price range, stock) as bitsets
//! cached per segment, as Lucene's query cache does. A segment never changes once
//! written (an update is a deletion plus a document in a new segment, and the
//! collectors skip deleted documents), so the documents a filter matches in a
//! segment are worked out once: later searches with that filter AND a few
//! bitsets instead of walking its postings beside every candidate document.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tantivy::index::SegmentId;
use tantivy::query::{ConstScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{BitSet, DocId, DocSet, Score, Searcher, SearcherGeneration, SegmentReader, TERMINATED, Warmer};
use tantivy_common::{ReadOnlyBitSet, TinySet};

/// Memory the cached bitsets may take (one bit per document per filter and segment).
const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// A segment, and what is cached for it.
pub(crate) type Key = (SegmentId, Arc<str>);

/// The bitsets of filters used recently, by segment and filter.
#[derive(Clone)]
pub struct FilterCache {
    bitsets: moka::sync::Cache<Key, Arc<ReadOnlyBitSet>>,
}

impl Default for FilterCache {
    fn default() -> Self {
        let bitsets = moka::sync::Cache::builder()
            .max_capacity(MAX_BYTES)
            .weigher(|_: &Key, bits: &Arc<ReadOnlyBitSet>| u32::try_from(bits.num_bytes().get_bytes()).unwrap_or(u32::MAX))
            .support_invalidation_closures()
            .build();
        Self { bitsets }
    }
}

impl FilterCache {
    #[cfg(test)]
    fn entries(&self) -> u64 {
        self.bitsets.run_pending_tasks();
        self.bitsets.entry_count()
    }
}

/// Kept current by the index reader: the bitsets of segments no searcher holds
/// any more (merged away, or a rebuilt index) are dropped at once instead of
/// taking room from the live ones until they age out.
impl Warmer for FilterCache {
    fn warm(&self, _: &Searcher) -> tantivy::Result<()> {
        Ok(())
    }

    fn garbage_collect(&self, live: &[&SearcherGeneration]) {
        drop_removed_segments(&self.bitsets, live, "filter bitsets");
    }
}

/// Drops the entries of a per-segment cache whose segment no searcher holds.
pub(crate) fn drop_removed_segments<V>(cache: &moka::sync::Cache<Key, V>, live: &[&SearcherGeneration], what: &str)
where
    V: Clone + Send + Sync + 'static,
{
    let alive: BTreeSet<SegmentId> = live.iter().flat_map(|g| g.segments().keys().copied()).collect();
    if let Err(e) = cache.invalidate_entries_if(move |(segment, _), _| !alive.contains(segment)) {
        tracing::warn!(error = %e, "could not drop the {what} of removed segments");
    }
}

/// The documents matching every filter, scoring nothing. Each filter is a key
/// naming exactly what it matches (two filters with one key must match the same
/// documents) and the query that finds them the first time.
pub struct Filters {
    cache: FilterCache,
    filters: Vec<(Arc<str>, Box<dyn Query>)>,
    /// Every filter ANDed, per segment, shared by the clones of this query:
    /// the text query intersects each of its terms with the filters, so one
    /// search asks for the same combination several times.
    combined: Arc<Mutex<HashMap<SegmentId, Arc<BitSet>>>>,
}

impl Clone for Filters {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            filters: self.filters.iter().map(|(k, q)| (k.clone(), q.box_clone())).collect(),
            combined: self.combined.clone(),
        }
    }
}

impl std::fmt::Debug for Filters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.filters.iter().map(|(key, _)| key)).finish()
    }
}

impl Filters {
    pub fn new(cache: &FilterCache) -> Self {
        Self { cache: cache.clone(), filters: Vec::new(), combined: Arc::default() }
    }

    pub fn push(&mut self, key: String, query: Box<dyn Query>) {
        self.filters.push((key.into(), query));
        // Another set of filters: nothing combined before holds for it.
        self.combined = Arc::default();
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// The filters' weight, for a caller that tests documents one by one
    /// against each filter's bitset (`FiltersWeight::each`).
    pub(crate) fn unscored_weight(&self, schema: &tantivy::schema::Schema) -> tantivy::Result<FiltersWeight> {
        let unscored = EnableScoring::disabled_from_schema(schema);
        let weights =
            self.filters.iter().map(|(key, q)| Ok((key.clone(), q.weight(unscored)?))).collect::<tantivy::Result<Vec<_>>>()?;
        Ok(FiltersWeight { cache: self.cache.clone(), weights, combined: self.combined.clone() })
    }
}

impl Query for Filters {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.unscored_weight(scoring.schema())?))
    }
}

pub(crate) struct FiltersWeight {
    cache: FilterCache,
    weights: Vec<(Arc<str>, Box<dyn Weight>)>,
    combined: Arc<Mutex<HashMap<SegmentId, Arc<BitSet>>>>,
}

impl FiltersWeight {
    fn bitset(&self, reader: &SegmentReader) -> tantivy::Result<Arc<BitSet>> {
        if let Some(bits) = self.combined.lock().unwrap_or_else(|p| p.into_inner()).get(&reader.segment_id()) {
            return Ok(bits.clone());
        }
        let mut all = BitSet::with_max_value_and_full(reader.max_doc());
        for bits in self.each(reader)? {
            all.intersect_update(&bits);
        }
        let all = Arc::new(all);
        self.combined.lock().unwrap_or_else(|p| p.into_inner()).insert(reader.segment_id(), all.clone());
        Ok(all)
    }
}

impl FiltersWeight {
    /// Each filter's documents in `reader`'s segment.
    pub(crate) fn each(&self, reader: &SegmentReader) -> tantivy::Result<Vec<Arc<ReadOnlyBitSet>>> {
        self.weights
            .iter()
            .map(|(key, weight)| {
                self.cache
                    .bitsets
                    .try_get_with((reader.segment_id(), key.clone()), || matching(weight.as_ref(), reader))
                    .map_err(|e| tantivy::TantivyError::InternalError(format!("filter {key}: {e}")))
            })
            .collect()
    }
}

/// Walks a filter's postings once.
fn matching(weight: &dyn Weight, reader: &SegmentReader) -> tantivy::Result<Arc<ReadOnlyBitSet>> {
    let mut bits = BitSet::with_max_value(reader.max_doc());
    let mut docs = weight.scorer(reader, 1.0)?;
    let mut doc = docs.doc();
    while doc != TERMINATED {
        bits.insert(doc);
        doc = docs.advance();
    }
    Ok(Arc::new(ReadOnlyBitSet::from(&bits)))
}

impl Weight for FiltersWeight {
    fn scorer(&self, reader: &SegmentReader, _boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(Box::new(ConstScorer::new(SharedBits::new(self.bitset(reader)?), 0.0)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        if self.bitset(reader)?.contains(doc) {
            Ok(Explanation::new("filters", 0.0))
        } else {
            Err(tantivy::TantivyError::InvalidArgument(format!("document {doc} does not match the filters")))
        }
    }
}

/// tantivy's `BitSetDocSet` over a bitset shared by every term of the query
/// (which owns its bitset, and copying one per term and segment cost megabytes
/// per search on a large index).
struct SharedBits {
    bits: Arc<BitSet>,
    bucket: u32,
    rest: TinySet,
    doc: DocId,
}

impl SharedBits {
    fn new(bits: Arc<BitSet>) -> Self {
        let rest = if bits.max_value() == 0 { TinySet::empty() } else { bits.tinyset(0) };
        let mut docs = Self { bits, bucket: 0, rest, doc: 0 };
        docs.advance();
        docs
    }

    fn go_to_bucket(&mut self, bucket: u32) {
        self.bucket = bucket;
        self.rest = self.bits.tinyset(bucket);
    }
}

impl DocSet for SharedBits {
    fn advance(&mut self) -> DocId {
        if let Some(lower) = self.rest.pop_lowest() {
            self.doc = (self.bucket * 64) | lower;
            return self.doc;
        }
        match self.bits.first_non_empty_bucket(self.bucket + 1) {
            Some(bucket) => {
                self.go_to_bucket(bucket);
                let lower = self.rest.pop_lowest().unwrap_or(0);
                self.doc = (bucket * 64) | lower;
            }
            None => self.doc = TERMINATED,
        }
        self.doc
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if target >= self.bits.max_value() {
            self.doc = TERMINATED;
            return TERMINATED;
        }
        let bucket = target / 64;
        if bucket > self.bucket {
            self.go_to_bucket(bucket);
            self.rest = self.rest.intersect(TinySet::range_greater_or_equal(target % 64));
            return self.advance();
        }
        let mut doc = self.doc;
        while doc < target {
            doc = self.advance();
        }
        doc
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.bits.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::collector::Count;
    use tantivy::query::TermQuery;
    use tantivy::schema::{IndexRecordOption, STRING, Schema};
    use tantivy::{Index, IndexWriter, Term, doc};

    fn term(field: tantivy::schema::Field, value: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(Term::from_field_text(field, value), IndexRecordOption::Basic))
    }

    #[test]
    fn cached_filters_follow_new_segments_and_deletions() {
        let mut schema = Schema::builder();
        let (brand, colour) = (schema.add_text_field("brand", STRING), schema.add_text_field("colour", STRING));
        let index = Index::create_in_ram(schema.build());
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for i in 0..100 {
            let b = if i % 2 == 0 { "acme" } else { "lumen" };
            let c = if i % 5 == 0 { "red" } else { "blue" };
            writer.add_document(doc!(brand => b, colour => c)).unwrap();
        }
        writer.commit().unwrap();
        let reader = index.reader().unwrap();
        let cache = FilterCache::default();
        let count = |filters: &[(&str, tantivy::schema::Field, &str)]| {
            let mut f = Filters::new(&cache);
            for (key, field, value) in filters {
                f.push((*key).to_owned(), term(*field, value));
            }
            reader.searcher().search(&f, &Count).unwrap()
        };
        let red_acme = [("brand:acme", brand, "acme"), ("colour:red", colour, "red")];
        assert_eq!(count(&red_acme), 10);
        assert_eq!(count(&red_acme), 10, "the same answer from the cache");
        assert_eq!(count(&[("brand:lumen", brand, "lumen")]), 50);
        assert_eq!(cache.entries(), 3);

        // A new segment and a deletion: the old segment's bitsets stay right
        // (deleted documents are skipped by the collector), the new one gets its own.
        writer.delete_term(Term::from_field_text(colour, "red"));
        for _ in 0..7 {
            writer.add_document(doc!(brand => "acme", colour => "red")).unwrap();
        }
        writer.commit().unwrap();
        reader.reload().unwrap();
        assert_eq!(count(&red_acme), 7);
        assert_eq!(count(&[("brand:acme", brand, "acme")]), 47);
        assert!(cache.entries() > 3);
    }

    proptest::proptest! {
        /// Walks and seeks exactly like tantivy's own bitset doc set.
        #[test]
        fn shared_bits_walk_like_tantivys_bitset(
            docs in proptest::collection::btree_set(0u32..700, 0..120),
            seeks in proptest::collection::vec(1u32..90, 0..12),
        ) {
            let mut bits = BitSet::with_max_value(700);
            for d in &docs {
                bits.insert(*d);
            }
            let mut ours = SharedBits::new(Arc::new(bits.clone()));
            let mut theirs = tantivy::query::BitSetDocSet::from(bits);
            proptest::prop_assert_eq!(ours.size_hint(), docs.len() as u32);
            for step in seeks {
                proptest::prop_assert_eq!(ours.doc(), theirs.doc());
                if ours.doc() == TERMINATED {
                    break;
                }
                let target = ours.doc() + step;
                proptest::prop_assert_eq!(ours.seek(target), theirs.seek(target));
                proptest::prop_assert_eq!(ours.advance(), theirs.advance());
            }
        }
    }
}
