//! What this instance knows of the catalog's change log (`catalog_events`), as
//! version numbers for cache keys.
//!
//! A cached catalog answer is keyed by the version it was read at: the log
//! position for answers that may show any product (lists, categories), the last
//! change of the product for its page. A version only grows, and every value
//! stored under version `v` was read from the database after the change `v` had
//! committed, so an answer found under the current version is never older than
//! what this instance knows. That holds for a key found in a second cache layer
//! (Redis) written by another instance too, so instances can share one; their
//! keys differ at times (each starts from its own position), which only costs
//! hits. No entry is ever invalidated: a change moves the key, and the old entry
//! ages out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

/// Past this many products changed since start the per-product map is folded
/// into the base version (every product page gets a new key once).
const MAX_TRACKED_PRODUCTS: usize = 100_000;

#[derive(Debug, Default)]
pub struct CatalogVersions {
    /// Highest log position known (the tail's position, or a later one this
    /// instance wrote itself: anything read after its own commit includes every
    /// change numbered before it).
    latest: AtomicU64,
    products: Mutex<Products>,
}

#[derive(Debug, Default)]
struct Products {
    /// The version of every product not in `changed`.
    base: u64,
    changed: HashMap<Uuid, u64>,
}

impl CatalogVersions {
    /// Versions starting at log position `position` (what the instance has read
    /// when it starts serving).
    pub fn starting_at(position: u64) -> Self {
        Self { latest: AtomicU64::new(position), products: Mutex::new(Products { base: position, changed: HashMap::new() }) }
    }

    /// Version of answers that may show any product.
    pub fn catalog(&self) -> u64 {
        self.latest.load(Ordering::Acquire)
    }

    /// Version of one product's page.
    pub fn product(&self, product: Uuid) -> u64 {
        let products = self.lock();
        products.changed.get(&product).copied().unwrap_or(products.base).max(products.base)
    }

    /// Changes `seq` of the log touched `product` (None: the whole catalog).
    pub fn note(&self, seq: u64, product: Option<Uuid>) {
        let mut products = self.lock();
        // Under the lock, so a fold below always lifts the base past this change.
        self.latest.fetch_max(seq, Ordering::AcqRel);
        if let Some(product) = product {
            if products.changed.len() >= MAX_TRACKED_PRODUCTS {
                let highest = products.changed.values().copied().max().unwrap_or(0);
                products.base = products.base.max(highest).max(self.latest.load(Ordering::Acquire));
                products.changed.clear();
            }
            let entry = products.changed.entry(product).or_insert(seq);
            *entry = (*entry).max(seq);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Products> {
        // The map holds plain numbers: a panic elsewhere cannot leave it half-written.
        self.products.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_change_moves_only_its_product_and_the_catalog() {
        let v = CatalogVersions::starting_at(10);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!((v.catalog(), v.product(a), v.product(b)), (10, 10, 10));
        v.note(12, Some(a));
        assert_eq!((v.catalog(), v.product(a), v.product(b)), (12, 12, 10));
        v.note(13, None);
        assert_eq!((v.catalog(), v.product(a), v.product(b)), (13, 12, 10));
    }

    #[test]
    fn a_late_older_change_does_not_move_a_version_back() {
        let v = CatalogVersions::starting_at(0);
        let a = Uuid::now_v7();
        v.note(20, Some(a));
        v.note(15, Some(a));
        assert_eq!((v.catalog(), v.product(a)), (20, 20));
    }

    proptest! {
        /// Versions never go down, and each product's version covers every change
        /// noted for it.
        #[test]
        fn versions_only_grow(changes in proptest::collection::vec((1u64..1000, 0usize..4), 1..200)) {
            let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
            let v = CatalogVersions::starting_at(0);
            let mut seen = [0u64; 4];
            let mut catalog = 0;
            for (seq, p) in changes {
                let before: Vec<u64> = ids.iter().map(|id| v.product(*id)).collect();
                v.note(seq, Some(ids[p]));
                seen[p] = seen[p].max(seq);
                for (i, id) in ids.iter().enumerate() {
                    prop_assert!(v.product(*id) >= before[i]);
                    prop_assert!(v.product(*id) >= seen[i]);
                }
                prop_assert!(v.catalog() >= catalog);
                catalog = v.catalog();
            }
        }
    }
}
