//! Facet counts over the matching documents in the same pass as the hits:
//! brand, category (with ancestors) and attribute terms by their dictionary
//! ordinals, prices by bucket in the requested currency, and in stock.
//!
//! Reading five columns per match was most of a search's time, so each segment's
//! facet values are decoded once into flat arrays (`SegmentTable`), when the
//! reader first sees the segment (a tantivy `Warmer`, so no search waits for it):
//! counting a match is then a few array reads. Segments never change; a table
//! lives as long as its segment is searchable.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::index::SegmentId;
use tantivy::{DocId, Score, Searcher, SearcherGeneration, SegmentOrdinal, SegmentReader, Warmer};

use crate::domain::money::Currency;
use crate::domain::price_band;

/// Counted terms of one string field, by value.
pub type TermCounts = HashMap<String, u64>;

#[derive(Debug, Default)]
pub struct FacetCounts {
    pub brand: TermCounts,
    pub category: TermCounts,
    pub attribute: TermCounts,
    /// One count per bucket of `FacetCounter::bucket_floors`.
    pub price: Vec<u64>,
    pub in_stock: u64,
}

/// The string fields counted by term, in the order of their slots.
const TERM_FIELDS: [&str; 3] = ["brand", "category", "attribute"];

/// One segment's facet values, decoded.
pub struct SegmentTable {
    /// Each slot's value (a dictionary lookup per counted value and search was a
    /// large part of a search on a many-segment index).
    names: Vec<String>,
    /// Where each field's ordinals start among the slots (and, last, their number).
    offsets: [u32; TERM_FIELDS.len() + 1],
    /// Document `d`'s slots are `slots[starts[d]..starts[d + 1]]`.
    starts: Vec<u32>,
    slots: Vec<u32>,
    /// Document `d`'s encoded prices (`price_band`) are `prices[price_starts[d]..price_starts[d + 1]]`.
    price_starts: Vec<u32>,
    prices: Vec<u64>,
    in_stock: Vec<bool>,
    /// One price of each currency the segment has prices in.
    currencies: Vec<u64>,
    /// Per currency and price buckets: one byte per document, its bucket (or
    /// `UNPRICED`) and `IN_STOCK`; made the first time a search asks for them,
    /// kept for the segment's currencies only (any three letters are a valid
    /// currency to ask for). A search reads a byte per match instead of its
    /// prices (a few bytes of cache per document instead of sixteen or more).
    marks: RwLock<HashMap<Buckets, Arc<Vec<u8>>>>,
    /// The bytes for a currency the segment has no price in: stock only.
    unpriced: std::sync::OnceLock<Arc<Vec<u8>>>,
}

/// Bucket sets kept per segment (one per currency the shop prices in, as the
/// storefront asks); others are worked out per search and not kept.
const MAX_MARKS: usize = 16;

/// A currency and the lower bounds of its price buckets.
type Buckets = (Currency, Vec<i64>);

const UNPRICED: u8 = 0x7f;
const IN_STOCK: u8 = 0x80;

impl SegmentTable {
    fn build(segment: &SegmentReader) -> tantivy::Result<Self> {
        let fast = segment.fast_fields();
        let columns = TERM_FIELDS.iter().map(|name| fast.str(name)).collect::<tantivy::Result<Vec<_>>>()?;
        let mut offsets = [0u32; TERM_FIELDS.len() + 1];
        for (i, column) in columns.iter().enumerate() {
            offsets[i + 1] = offsets[i] + column.as_ref().map_or(0, |c| c.num_terms() as u32);
        }
        let price = fast.column_opt::<u64>("price")?;
        let in_stock = fast.column_opt::<bool>("in_stock")?;
        let max_doc = segment.max_doc();
        let mut names = Vec::with_capacity(offsets[TERM_FIELDS.len()] as usize);
        for column in &columns {
            let Some(column) = column else { continue };
            let mut terms = column.dictionary().stream()?;
            while terms.advance() {
                names.push(String::from_utf8_lossy(terms.key()).into_owned());
            }
        }
        if names.len() != offsets[TERM_FIELDS.len()] as usize {
            return Err(tantivy::TantivyError::InternalError("a facet dictionary with another number of terms".into()));
        }
        let mut table = SegmentTable {
            names,
            offsets,
            starts: Vec::with_capacity(max_doc as usize + 1),
            slots: Vec::new(),
            price_starts: Vec::with_capacity(max_doc as usize + 1),
            prices: Vec::new(),
            in_stock: Vec::with_capacity(max_doc as usize),
            currencies: Vec::new(),
            marks: RwLock::default(),
            unpriced: std::sync::OnceLock::new(),
        };
        for doc in 0..max_doc {
            table.starts.push(offset(&table.slots)?);
            for (column, offset) in columns.iter().zip(offsets) {
                if let Some(column) = column {
                    table.slots.extend(column.term_ords(doc).map(|ord| offset + ord as u32));
                }
            }
            table.price_starts.push(offset(&table.prices)?);
            if let Some(price) = &price {
                for value in price.values_for_doc(doc) {
                    if !table.currencies.iter().any(|c| price_band::same_currency(*c, value)) {
                        table.currencies.push(value);
                    }
                    table.prices.push(value);
                }
            }
            table.in_stock.push(in_stock.as_ref().and_then(|c| c.first(doc)).unwrap_or(false));
        }
        table.starts.push(offset(&table.slots)?);
        table.price_starts.push(offset(&table.prices)?);
        Ok(table)
    }
}

impl SegmentTable {
    /// Each document's byte for prices in `currency` by the buckets starting at `floors`.
    fn marks(&self, currency: Currency, floors: &[i64]) -> tantivy::Result<Arc<Vec<u8>>> {
        if floors.len() >= usize::from(UNPRICED) {
            return Err(tantivy::TantivyError::InvalidArgument(format!("{} price buckets", floors.len())));
        }
        let stock = |doc: usize| if self.in_stock[doc] { IN_STOCK } else { 0 };
        if !self.currencies.iter().any(|v| price_band::decode_in(currency, *v).is_some()) {
            return Ok(self
                .unpriced
                .get_or_init(|| Arc::new((0..self.in_stock.len()).map(|d| UNPRICED | stock(d)).collect()))
                .clone());
        }
        let key = (currency, floors.to_vec());
        if let Some(marks) = self.marks.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(marks.clone());
        }
        let marks: Vec<u8> = (0..self.in_stock.len())
            .map(|doc| {
                let prices = &self.prices[self.price_starts[doc] as usize..self.price_starts[doc + 1] as usize];
                let bucket = prices
                    .iter()
                    .find_map(|v| price_band::decode_in(currency, *v))
                    .map_or(UNPRICED, |amount| floors.partition_point(|floor| *floor <= amount).saturating_sub(1) as u8);
                bucket | stock(doc)
            })
            .collect();
        let marks = Arc::new(marks);
        let mut kept = self.marks.write().unwrap_or_else(|p| p.into_inner());
        if kept.len() < MAX_MARKS {
            kept.insert(key, marks.clone());
        }
        Ok(marks)
    }
}

fn offset<T>(values: &[T]) -> tantivy::Result<u32> {
    u32::try_from(values.len()).map_err(|_| tantivy::TantivyError::InternalError("a segment with over 4G facet values".into()))
}

/// The tables of the searchable segments, kept by the index reader.
#[derive(Default)]
pub struct FacetTables {
    tables: RwLock<HashMap<SegmentId, Arc<SegmentTable>>>,
}

impl FacetTables {
    fn get(&self, segment: &SegmentReader) -> tantivy::Result<Arc<SegmentTable>> {
        if let Some(table) = self.tables.read().unwrap_or_else(|p| p.into_inner()).get(&segment.segment_id()) {
            return Ok(table.clone());
        }
        // Not warmed (a reader that does not use these tables as its warmer).
        let table = Arc::new(SegmentTable::build(segment)?);
        self.tables.write().unwrap_or_else(|p| p.into_inner()).insert(segment.segment_id(), table.clone());
        Ok(table)
    }

    #[cfg(test)]
    pub(crate) fn segments(&self) -> usize {
        self.tables.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Bucket sets kept, over every segment.
    #[cfg(test)]
    pub(crate) fn marks_kept(&self) -> usize {
        self.tables.read().unwrap_or_else(|p| p.into_inner()).values().map(|t| t.marks.read().unwrap().len()).sum()
    }
}

impl Warmer for FacetTables {
    fn warm(&self, searcher: &Searcher) -> tantivy::Result<()> {
        for segment in searcher.segment_readers() {
            self.get(segment)?;
        }
        Ok(())
    }

    fn garbage_collect(&self, live: &[&SearcherGeneration]) {
        let alive: BTreeSet<SegmentId> = live.iter().flat_map(|g| g.segments().keys().copied()).collect();
        self.tables.write().unwrap_or_else(|p| p.into_inner()).retain(|id, _| alive.contains(id));
    }
}

pub struct FacetCounter {
    pub currency: Currency,
    /// Lower bounds (minor units, ascending, the first 0) of the price buckets;
    /// each runs to the next one's bound.
    pub bucket_floors: Vec<i64>,
    pub tables: Arc<FacetTables>,
}

pub struct SegmentFacets {
    counts: SegmentCounts,
    marks: Arc<Vec<u8>>,
}

/// One segment's counts, by slot: named only when the segments are merged, so
/// a value counted in every segment costs one name, not one per segment.
pub struct SegmentCounts {
    table: Arc<SegmentTable>,
    terms: Vec<u64>,
    price: Vec<u64>,
    in_stock: u64,
}

impl Collector for FacetCounter {
    type Fruit = FacetCounts;
    type Child = SegmentFacets;

    fn for_segment(&self, _: SegmentOrdinal, segment: &SegmentReader) -> tantivy::Result<SegmentFacets> {
        let table = self.tables.get(segment)?;
        Ok(SegmentFacets {
            marks: table.marks(self.currency, &self.bucket_floors)?,
            counts: SegmentCounts {
                terms: vec![0; table.offsets[TERM_FIELDS.len()] as usize],
                table,
                price: vec![0; self.bucket_floors.len()],
                in_stock: 0,
            },
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<SegmentCounts>) -> tantivy::Result<FacetCounts> {
        let mut named: [HashMap<&str, u64>; TERM_FIELDS.len()] = Default::default();
        let mut total = FacetCounts { price: vec![0; self.bucket_floors.len()], ..FacetCounts::default() };
        for f in &fruits {
            let t = &f.table;
            for (field, into) in named.iter_mut().enumerate() {
                for slot in t.offsets[field] as usize..t.offsets[field + 1] as usize {
                    if f.terms[slot] > 0 {
                        *into.entry(t.names[slot].as_str()).or_default() += f.terms[slot];
                    }
                }
            }
            for (into, n) in total.price.iter_mut().zip(&f.price) {
                *into += n;
            }
            total.in_stock += f.in_stock;
        }
        let [brand, category, attribute] = named.map(|m| m.into_iter().map(|(k, n)| (k.to_owned(), n)).collect());
        (total.brand, total.category, total.attribute) = (brand, category, attribute);
        Ok(total)
    }
}

impl SegmentCollector for SegmentFacets {
    type Fruit = SegmentCounts;

    fn collect(&mut self, doc: DocId, _: Score) {
        let c = &mut self.counts;
        let t = &c.table;
        let doc = doc as usize;
        for slot in &t.slots[t.starts[doc] as usize..t.starts[doc + 1] as usize] {
            c.terms[*slot as usize] += 1;
        }
        let mark = self.marks[doc];
        if let Some(n) = c.price.get_mut(usize::from(mark & !IN_STOCK)) {
            *n += 1;
        }
        c.in_stock += u64::from(mark >> 7);
    }

    fn harvest(self) -> SegmentCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use crate::domain::category_tree::Tree;
    use crate::domain::money::Currency;
    use crate::search::SearchIndex;
    use crate::store::search_documents::SearchDocument;

    fn product(n: u128, brand: &str, colours: &[&str], price: i64, in_stock: bool) -> SearchDocument {
        SearchDocument {
            id: Uuid::from_u128(n),
            slug: format!("p-{n}"),
            title: format!("Linen shirt {n}"),
            description: String::new(),
            brand: Some(brand.to_owned()),
            category_ids: vec![Uuid::from_u128(1_001)],
            attributes: colours.iter().map(|c| ("colour".to_owned(), (*c).to_owned())).collect(),
            prices: vec![("EUR".into(), price, price)],
            in_stock,
            image: None,
            created_at: "2026-11-01T12:00:00Z".into(),
        }
    }

    #[test]
    fn counts_follow_updates_and_tables_follow_the_searchable_segments() {
        let dir = std::env::temp_dir().join(format!("mercato-facets-{}", Uuid::now_v7()));
        let index = SearchIndex::open(&dir).unwrap();
        let tree = Tree::new([(Uuid::from_u128(1_000), None), (Uuid::from_u128(1_001), Some(Uuid::from_u128(1_000)))]);
        let eur = Currency::parse("EUR").unwrap();
        let count = |index: &SearchIndex| {
            let q = crate::search::query::text_query(index.fields(), &["linen".to_owned()], false, None, None);
            let counter = index.facet_counter(eur, vec![0, 1_000, 5_000]);
            index.search(q.as_ref(), crate::domain::search_request::SearchSort::Relevance, eur, 0, 10, counter).unwrap().facets
        };
        index
            .stage(
                &tree,
                &[],
                &[
                    product(1, "Acme", &["navy", "sand"], 2_999, true),
                    product(2, "Acme", &["navy"], 500, false),
                    product(3, "Lumen", &[], 9_999, true),
                ],
            )
            .unwrap();
        index.commit(1).unwrap();
        let f = count(&index);
        assert_eq!((f.brand["Acme"], f.brand["Lumen"]), (2, 1));
        assert_eq!(f.category.len(), 2, "the category and its ancestor: {:?}", f.category);
        assert!(f.category.values().all(|n| *n == 3));
        assert_eq!((f.attribute["colour\u{1f}navy"], f.attribute["colour\u{1f}sand"]), (2, 1));
        assert_eq!((f.price.clone(), f.in_stock), (vec![1, 1, 1], 2));
        assert_eq!(index.facet_tables.segments(), 1);
        // No price in another currency: no bucket counts them; stock is stock.
        let usd = Currency::parse("USD").unwrap();
        let q = crate::search::query::text_query(index.fields(), &["linen".to_owned()], false, None, None);
        let counter = index.facet_counter(usd, vec![0, 1_000]);
        let f =
            index.search(q.as_ref(), crate::domain::search_request::SearchSort::Relevance, usd, 0, 10, counter).unwrap().facets;
        assert_eq!((f.price, f.in_stock), (vec![0, 0], 2));
        // Only the currency the segment has prices in keeps its bucket bytes.
        assert_eq!(index.facet_tables.marks_kept(), 1);

        // Product 2 changes brand, price and stock: its new version is in a new
        // segment, the old one deleted and no longer counted.
        index.stage(&tree, &[Uuid::from_u128(2)], &[product(2, "Lumen", &["sand"], 7_000, true)]).unwrap();
        index.commit(2).unwrap();
        let f = count(&index);
        assert_eq!((f.brand["Acme"], f.brand["Lumen"]), (1, 2));
        assert_eq!((f.attribute["colour\u{1f}navy"], f.attribute["colour\u{1f}sand"]), (1, 2));
        assert_eq!((f.price.clone(), f.in_stock), (vec![0, 1, 2], 3));
        assert_eq!(index.facet_tables.segments(), index.searcher().segment_readers().len());
        drop(index);
        let _ = std::fs::remove_dir_all(dir);
    }
}
