//! One search as the storefront runs it (a title word, one in five misspelt, two
//! filters, every facet, the first page): `cargo bench --bench search`.
//!
//! The index holds `MERCATO_BENCH_SEARCH_PRODUCTS` (default 200,000) products
//! shaped like the demo catalog (its words): 20 adjectives × 24 nouns in the
//! titles (so a word matches about 5 % of the catalog), 8 brands, 25 categories
//! in 5 branches, material and colour attributes, EUR and USD prices, 9 in 10 in
//! stock. The queries are a
//! fixed, seeded draw, so runs compare.

use std::sync::OnceLock;

use mercato::domain::category_tree::Tree;
use mercato::domain::money::Currency;
use mercato::domain::search_request::SearchRequest;
use mercato::ops::demo::{ADJECTIVES, BRANDS, COLOURS, MATERIALS, nouns};
use mercato::search::SearchIndex;
use mercato::search::query;
use mercato::store::search_documents::SearchDocument;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tantivy::collector::Count;
use uuid::Uuid;

fn main() {
    divan::main();
}

const QUERIES: usize = 256;

/// A query's words (analysed), request and category filter.
type Query = (Vec<String>, SearchRequest, Option<String>);

struct Fixture {
    index: SearchIndex,
    /// (category id per branch, leaf ids per branch)
    branches: Vec<(Uuid, Vec<Uuid>)>,
    queries: Vec<Query>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let products: usize = std::env::var("MERCATO_BENCH_SEARCH_PRODUCTS").ok().and_then(|n| n.parse().ok()).unwrap_or(200_000);
        let mut rng = StdRng::seed_from_u64(7);
        let branches: Vec<(Uuid, Vec<Uuid>)> = (0..5u128)
            .map(|b| (Uuid::from_u128(1 + b), (0..4u128).map(|l| Uuid::from_u128(100 + b * 10 + l)).collect()))
            .collect();
        let tree = Tree::new(branches.iter().flat_map(|(root, leaves)| {
            std::iter::once((*root, None)).chain(leaves.iter().map(move |leaf| (*leaf, Some(*root))))
        }));
        // One fixed place, emptied first: a run leaves one index behind, not one per run.
        let dir = std::env::temp_dir().join("mercato-search-bench-index");
        let _ = std::fs::remove_dir_all(&dir);
        let index = SearchIndex::open(&dir).expect("index");
        let nouns: Vec<&str> = nouns().collect();
        let mut docs = Vec::with_capacity(10_000);
        for n in 0..products {
            let (adjective, noun) = (ADJECTIVES[rng.random_range(0..ADJECTIVES.len())], nouns[n % nouns.len()]);
            let (brand, material) = (BRANDS[rng.random_range(0..BRANDS.len())], MATERIALS[rng.random_range(0..MATERIALS.len())]);
            // Five nouns per department, as in the demo.
            let branch = &branches[(n % nouns.len() / 5).min(branches.len() - 1)];
            let price = rng.random_range(9..=399) * 100 + 99;
            let mut attributes = vec![("material".to_owned(), material.to_owned())];
            for _ in 0..2 {
                attributes.push(("colour".to_owned(), COLOURS[rng.random_range(0..COLOURS.len())].to_owned()));
            }
            docs.push(SearchDocument {
                id: Uuid::from_u128(1_000_000 + n as u128),
                slug: format!("product-{n}"),
                title: format!("{adjective} {noun} {}", n + 1),
                description: format!("A {} {} by {brand}, made of {material}.", adjective.to_lowercase(), noun.to_lowercase()),
                brand: Some(brand.to_owned()),
                category_ids: vec![branch.1[rng.random_range(0..4)]],
                attributes,
                prices: vec![("EUR".into(), price, price + 400), ("USD".into(), price * 108 / 100, (price + 400) * 108 / 100)],
                in_stock: rng.random_range(0..10) != 0,
                image: None,
                created_at: "2026-11-01T12:00:00Z".into(),
            });
            if docs.len() == 10_000 {
                index.stage(&tree, &[], &docs).expect("stage");
                docs.clear();
            }
        }
        index.stage(&tree, &[], &docs).expect("stage");
        index.commit(1).expect("commit");

        let filters: Vec<(String, String)> = BRANDS
            .iter()
            .map(|b| ("brand".to_owned(), (*b).to_owned()))
            .chain(branches.iter().flat_map(|(root, leaves)| {
                std::iter::once(*root).chain(leaves.iter().copied()).map(|c| ("category".to_owned(), c.to_string()))
            }))
            .chain(MATERIALS.iter().map(|m| ("attr.material".to_owned(), (*m).to_owned())))
            .chain(COLOURS.iter().map(|c| ("attr.colour".to_owned(), (*c).to_owned())))
            .chain([("price_min".to_owned(), "10099".to_owned()), ("price_max".to_owned(), "20099".to_owned())])
            .chain([("in_stock".to_owned(), "true".to_owned())])
            .collect();
        let words: Vec<String> = ADJECTIVES.iter().chain(&nouns).flat_map(|w| w.split(' ')).map(str::to_lowercase).collect();
        let queries = (0..QUERIES)
            .map(|_| {
                let mut word: Vec<char> = words[rng.random_range(0..words.len())].chars().collect();
                if word.len() > 4 && rng.random_range(0..5) == 0 {
                    let i = rng.random_range(1..word.len() - 1);
                    word.swap(i, i + 1);
                }
                let mut pairs = vec![("q".to_owned(), word.into_iter().collect::<String>())];
                while pairs.len() < 3 {
                    let f = &filters[rng.random_range(0..filters.len())];
                    if !pairs.iter().any(|(k, _)| *k == f.0) {
                        pairs.push(f.clone());
                    }
                }
                let request = SearchRequest::parse(&pairs).expect("valid request");
                (index.terms(&request.text), request.clone(), request.category.clone())
            })
            .collect();
        let fixture = Fixture { index, branches, queries };
        // A server in its steady state: every filter's bitsets and every
        // word's matches cached.
        for i in 0..QUERIES {
            run(&fixture, i, true);
        }
        fixture
    })
}

fn run(f: &Fixture, i: usize, cached_words: bool) -> usize {
    let (terms, request, category) = &f.queries[i % QUERIES];
    let eur = eur();
    let words = cached_words.then(|| f.index.word_cache());
    let q = query::search_query(f.index.fields(), terms, request, category.as_deref(), eur, f.index.filter_cache(), words);
    let counter = f.index.facet_counter(eur, [0, 10, 25, 50, 100, 250, 500, 1000].map(|f| f * 100).to_vec());
    let hits = f.index.search(q.as_ref(), request.sort, eur, request.offset, request.limit, counter).expect("search");
    hits.total + hits.items.len()
}

/// The whole search: query, hits, total, facets, stored fields of the page.
/// `cached_words`: each word's matches from the cache, as the server searches;
/// else walked in the index every time.
#[divan::bench(args = [true, false], sample_count = 512)]
fn word_two_filters_and_facets(bencher: divan::Bencher, cached_words: bool) {
    let f = fixture();
    assert!(f.branches.len() == 5 && f.index.documents() > 0);
    let mut i = 0;
    bencher.bench_local(|| {
        i += 1;
        run(f, i, cached_words)
    });
}

/// Counts every match of the query `part` builds for each fixed query in turn.
fn count_matches(bencher: divan::Bencher, part: impl Fn(&Fixture, &Query) -> Box<dyn tantivy::query::Query>) {
    let f = fixture();
    let mut i = 0;
    bencher.bench_local(|| {
        i += 1;
        let q = part(f, &f.queries[i % QUERIES]);
        f.index.searcher().search(q.as_ref(), &Count).expect("search")
    });
}

/// The parts of it, for where the time goes: the word alone, every match counted.
#[divan::bench(sample_count = 512)]
fn part_word_only_count(bencher: divan::Bencher) {
    count_matches(bencher, |f, (terms, _, _)| query::text_query(f.index.fields(), terms, false, None, None));
}

/// The two filters alone (from the bitset cache), every match counted.
#[divan::bench(sample_count = 512)]
fn part_filters_only_count(bencher: divan::Bencher) {
    count_matches(bencher, |f, (_, request, category)| {
        query::search_query(f.index.fields(), &[], request, category.as_deref(), eur(), f.index.filter_cache(), None)
    });
}

/// Word and filters, every match counted: no scoring, facets or stored fields.
#[divan::bench(args = [true, false], sample_count = 512)]
fn part_word_and_filters_count(bencher: divan::Bencher, cached_words: bool) {
    count_matches(bencher, |f, (terms, request, category)| {
        let words = cached_words.then(|| f.index.word_cache());
        query::search_query(f.index.fields(), terms, request, category.as_deref(), eur(), f.index.filter_cache(), words)
    });
}

fn eur() -> Currency {
    Currency::parse("EUR").expect("currency")
}
