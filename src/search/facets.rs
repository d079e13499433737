//! Facet counts over the matching documents in the same pass as the hits:
//! brand, category (with ancestors) and attribute terms by their dictionary
//! ordinals, prices by bucket in the requested currency, and in stock.

use std::collections::HashMap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

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

pub struct FacetCounter {
    pub currency: Currency,
    /// Lower bounds (minor units, ascending, the first 0) of the price buckets;
    /// each runs to the next one's bound.
    pub bucket_floors: Vec<i64>,
}

pub struct SegmentFacets {
    brand: Option<(StrColumn, Vec<u64>)>,
    category: Option<(StrColumn, Vec<u64>)>,
    attribute: Option<(StrColumn, Vec<u64>)>,
    price: Option<Column<u64>>,
    in_stock: Option<Column<bool>>,
    currency: Currency,
    floors: Vec<i64>,
    counts: FacetCounts,
}

fn str_column(segment: &SegmentReader, name: &str) -> tantivy::Result<Option<(StrColumn, Vec<u64>)>> {
    Ok(segment.fast_fields().str(name)?.map(|c| {
        let n = c.num_terms();
        (c, vec![0; n])
    }))
}

impl Collector for FacetCounter {
    type Fruit = FacetCounts;
    type Child = SegmentFacets;

    fn for_segment(&self, _: SegmentOrdinal, segment: &SegmentReader) -> tantivy::Result<SegmentFacets> {
        Ok(SegmentFacets {
            brand: str_column(segment, "brand")?,
            category: str_column(segment, "category")?,
            attribute: str_column(segment, "attribute")?,
            price: segment.fast_fields().column_opt::<u64>("price")?,
            in_stock: segment.fast_fields().column_opt::<bool>("in_stock")?,
            currency: self.currency,
            floors: self.bucket_floors.clone(),
            counts: FacetCounts { price: vec![0; self.bucket_floors.len()], ..FacetCounts::default() },
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<FacetCounts>) -> tantivy::Result<FacetCounts> {
        let mut total = FacetCounts { price: vec![0; self.bucket_floors.len()], ..FacetCounts::default() };
        for f in fruits {
            for (into, from) in
                [(&mut total.brand, f.brand), (&mut total.category, f.category), (&mut total.attribute, f.attribute)]
            {
                for (k, n) in from {
                    *into.entry(k).or_default() += n;
                }
            }
            for (into, n) in total.price.iter_mut().zip(f.price) {
                *into += n;
            }
            total.in_stock += f.in_stock;
        }
        Ok(total)
    }
}

impl SegmentCollector for SegmentFacets {
    type Fruit = FacetCounts;

    fn collect(&mut self, doc: DocId, _: Score) {
        for (column, counts) in [&mut self.brand, &mut self.category, &mut self.attribute].into_iter().flatten() {
            for ord in column.term_ords(doc) {
                counts[ord as usize] += 1;
            }
        }
        if let Some(price) = &self.price
            && let Some(amount) = price.values_for_doc(doc).find_map(|v| price_band::decode_in(self.currency, v))
        {
            let bucket = self.floors.partition_point(|floor| *floor <= amount).saturating_sub(1);
            self.counts.price[bucket] += 1;
        }
        if self.in_stock.as_ref().and_then(|c| c.first(doc)).unwrap_or(false) {
            self.counts.in_stock += 1;
        }
    }

    fn harvest(mut self) -> FacetCounts {
        let named = |column: Option<(StrColumn, Vec<u64>)>| {
            let mut out = TermCounts::new();
            if let Some((column, counts)) = column {
                for (ord, n) in counts.into_iter().enumerate().filter(|(_, n)| *n > 0) {
                    let mut value = String::new();
                    if column.ord_to_str(ord as u64, &mut value).unwrap_or(false) {
                        out.insert(value, n);
                    }
                }
            }
            out
        };
        self.counts.brand = named(self.brand.take());
        self.counts.category = named(self.category.take());
        self.counts.attribute = named(self.attribute.take());
        self.counts
    }
}
