//! From a checked request to a tantivy query. User text only ever becomes terms
//! (through the index's analyzer), never query syntax, so nothing a shopper
//! types can fail to parse or reach another field.

use std::ops::Bound;

use tantivy::Term;
use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::tokenizer::TextAnalyzer;

use super::filters::{FilterCache, Filters};
use super::fuzzy::{OtherSpellings, PlusConstant};
use super::schema::{ATTRIBUTE_SEPARATOR, Fields};
use super::words::{CachedWord, WordCache};
use crate::domain::money::Currency;
use crate::domain::price_band;
use crate::domain::search_request::SearchRequest;

/// Words beyond this many are ignored (a 200-character query has few more).
const MAX_TERMS: usize = 16;
const TITLE_BOOST: f32 = 3.0;
const EXACT_BOOST: f32 = 2.0;

/// The terms of `text` as the index stores them.
pub fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while let Some(token) = stream.next() {
        if !out.contains(&token.text) {
            out.push(token.text.clone());
        }
        if out.len() == MAX_TERMS {
            break;
        }
    }
    out
}

/// Edits a word may be away from what it matches: none for short words (every
/// three-letter word is one edit from dozens of others), one from four letters,
/// two from eight.
pub fn fuzziness(term: &str) -> u8 {
    match term.chars().count() {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

/// Every word must match in the title or the description, exactly or within
/// its fuzziness; exact beats fuzzy and the title beats the description.
/// `prefix_last`: the last word may also be the start of a longer word (typing).
/// With `words`, each word's matches come from (and go to) that cache and are
/// tested against each filter's bitset on the way; without it, `filters` restrict every term before
/// the terms are combined: a union of terms only ever advances (a seek into a
/// union costs a refill of its window), and each term meets the filters'
/// bitset by seeking the smaller of the two.
pub fn text_query(
    fields: &Fields,
    terms: &[String],
    prefix_last: bool,
    filters: Option<&Filters>,
    words: Option<&WordCache>,
) -> Box<dyn Query> {
    let below = if words.is_some() { None } else { filters };
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = terms
        .iter()
        .enumerate()
        .map(|(i, word)| {
            let prefix = prefix_last && i + 1 == terms.len();
            let clause = word_clause(fields, word, prefix, below);
            let clause: Box<dyn Query> = match words {
                Some(cache) => {
                    let key = format!("{word}{}", if prefix { "*" } else { "" });
                    Box::new(CachedWord::new(cache, key, clause, filters))
                }
                None => clause,
            };
            (Occur::Must, clause)
        })
        .collect();
    match (clauses.len(), filters) {
        (0, None) => Box::new(AllQuery),
        (0, Some(f)) => Box::new(f.clone()),
        (1, _) => clauses.pop().map_or_else(|| Box::new(AllQuery) as Box<dyn Query>, |(_, q)| q),
        _ => Box::new(BooleanQuery::new(clauses)),
    }
}

/// One word in the title or the description, exactly (BM25) or as another
/// spelling (a constant), each term restricted by `filters` when given.
fn word_clause(fields: &Fields, word: &str, prefix: bool, filters: Option<&Filters>) -> Box<dyn Query> {
    let restricted = |q: Box<dyn Query>| -> Box<dyn Query> {
        match filters {
            Some(f) => Box::new(BooleanQuery::new(vec![(Occur::Must, q), (Occur::Must, Box::new(f.clone()))])),
            None => q,
        }
    };
    let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for (field, boost) in [(fields.title, TITLE_BOOST), (fields.description, 1.0)] {
        let exact = restricted(Box::new(TermQuery::new(Term::from_field_text(field, word), IndexRecordOption::WithFreqs)));
        let distance = fuzziness(word);
        if distance == 0 && !prefix {
            alternatives.push((Occur::Should, Box::new(BoostQuery::new(exact, boost * EXACT_BOOST))));
            continue;
        }
        // BM25 × 2 for the word itself, plus one constant for matching
        // it or any other spelling (the constant is added once per field).
        let others = restricted(Box::new(OtherSpellings::new(field, word, distance, prefix)));
        let either: Box<dyn Query> = Box::new(BooleanQuery::new(vec![
            (Occur::Should, Box::new(BoostQuery::new(exact, EXACT_BOOST))),
            (Occur::Should, Box::new(ConstScoreQuery::new(others, 0.0))),
        ]));
        alternatives.push((Occur::Should, Box::new(BoostQuery::new(Box::new(PlusConstant::new(either, 1.0)), boost))));
    }
    Box::new(BooleanQuery::new(alternatives))
}

/// The text query restricted by the request's filters (which do not score,
/// and whose documents are cached per segment). `category`: the category
/// filter resolved to an id.
pub fn search_query(
    fields: &Fields,
    terms: &[String],
    request: &SearchRequest,
    category: Option<&str>,
    currency: Currency,
    cache: &FilterCache,
    words: Option<&WordCache>,
) -> Box<dyn Query> {
    let mut filters = Filters::new(cache);
    let term = |t: Term| -> Box<dyn Query> { Box::new(TermQuery::new(t, IndexRecordOption::Basic)) };
    if let Some(c) = category {
        filters.push(format!("category:{}", key(&c)), term(Term::from_field_text(fields.category, c)));
    }
    if !request.brands.is_empty() {
        let brands = distinct(&request.brands);
        filters
            .push(format!("brand:{}", key(&brands)), any_of(brands.iter().map(|b| term(Term::from_field_text(fields.brand, b)))));
    }
    for (name, values) in &request.attributes {
        let values = distinct(values);
        filters.push(
            format!("attr:{}", key(&(name, &values))),
            any_of(
                values.iter().map(|v| term(Term::from_field_text(fields.attribute, &format!("{name}{ATTRIBUTE_SEPARATOR}{v}")))),
            ),
        );
    }
    if request.price_min.is_some() || request.price_max.is_some() {
        let (lo, hi) = price_band::range(currency, request.price_min, request.price_max);
        filters.push(
            format!("price:{lo}-{hi}"),
            Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_u64(fields.price, lo)),
                Bound::Included(Term::from_field_u64(fields.price, hi)),
            )),
        );
    }
    if let Some(in_stock) = request.in_stock {
        filters.push(format!("in_stock:{in_stock}"), term(Term::from_field_bool(fields.in_stock, in_stock)));
    }
    text_query(fields, terms, false, Some(&filters).filter(|f| !f.is_empty()), words)
}

/// Values in a filter's cache key, as JSON so that no two lists share one.
fn key(values: &impl serde::Serialize) -> String {
    serde_json::to_string(values).unwrap_or_default()
}

/// The values sorted and once each, so that equal filters share a cache key.
fn distinct(values: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = values.iter().map(String::as_str).collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn any_of(queries: impl Iterator<Item = Box<dyn Query>>) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(queries.map(|q| (Occur::Should, q)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_words_match_exactly_and_long_ones_loosely() {
        assert_eq!(fuzziness("tee"), 0);
        assert_eq!(fuzziness("linen"), 1);
        assert_eq!(fuzziness("headphones"), 2);
    }

    #[test]
    fn query_syntax_is_only_words() {
        let index = tantivy::Index::create_in_ram(super::super::schema::build().0);
        super::super::schema::register_analyzer(&index);
        let mut analyzer = index.tokenizers().get(super::super::schema::ANALYZER).unwrap();
        assert_eq!(
            terms(&mut analyzer, r#"title:"Lin*en" AND (shirt^3 OR -Crème) ~2"#),
            ["title", "lin", "en", "and", "shirt", "3", "or", "creme", "2"]
        );
        assert!(terms(&mut analyzer, "+-&&||!(){}[]^\"~*?:\\/").is_empty());
    }

    fn ranked(titles: &[&str], word: &str) -> Vec<String> {
        let dir = std::env::temp_dir().join(format!("mercato-ranking-{}", uuid::Uuid::now_v7()));
        let index = crate::search::SearchIndex::open(&dir).unwrap();
        let docs: Vec<_> = titles
            .iter()
            .enumerate()
            .map(|(n, title)| crate::store::search_documents::SearchDocument {
                id: uuid::Uuid::from_u128(n as u128 + 1),
                slug: format!("p-{n}"),
                title: (*title).to_owned(),
                description: String::new(),
                brand: None,
                category_ids: Vec::new(),
                attributes: Vec::new(),
                prices: Vec::new(),
                in_stock: true,
                image: None,
                created_at: "2026-11-01T12:00:00Z".into(),
            })
            .collect();
        index.stage(&crate::domain::category_tree::Tree::new([]), &[], &docs).unwrap();
        index.commit(1).unwrap();
        let eur = Currency::parse("EUR").unwrap();
        let q = text_query(index.fields(), &[word.to_owned()], false, None, None);
        let sort = crate::domain::search_request::SearchSort::Relevance;
        let hits = index.search(q.as_ref(), sort, eur, 0, 20, index.facet_counter(eur, vec![0])).unwrap();
        drop(index);
        let _ = std::fs::remove_dir_all(dir);
        hits.items.into_iter().map(|s| s.title).collect()
    }

    #[test]
    fn an_exact_match_outranks_every_other_spelling() {
        // "linen" in most titles: its BM25 is tiny, yet the exact matches keep
        // the constant a match of another spelling scores.
        let found = ranked(&["Linen", "Linen", "Linen", "Linen", "Linen", "Linen", "Linens x y z"], "linen");
        assert_eq!(found.len(), 7);
        assert_eq!(found.last().map(String::as_str), Some("Linens x y z"));
        // Holding another spelling as well adds nothing: the shorter title wins.
        assert_eq!(ranked(&["Linen linens", "Linen", "Wool"], "linen"), ["Linen", "Linen linens"]);
    }

    /// One shop's search answered with and without the word cache: ids (in
    /// order when nothing changed since the lists were made), totals, facets.
    #[test]
    fn cached_words_answer_like_the_index() {
        use crate::domain::search_request::SearchRequest;
        use crate::store::search_documents::SearchDocument;
        use uuid::Uuid;

        let dir = std::env::temp_dir().join(format!("mercato-words-{}", Uuid::now_v7()));
        let index = crate::search::SearchIndex::open(&dir).unwrap();
        let (root, leaves) = (Uuid::from_u128(9_000), [Uuid::from_u128(9_001), Uuid::from_u128(9_002)]);
        let tree = crate::domain::category_tree::Tree::new([(root, None), (leaves[0], Some(root)), (leaves[1], Some(root))]);
        let adjectives = ["linen", "classic", "summer", "nordic"];
        let nouns = ["shirt", "trousers", "sweater", "headphones", "mug"];
        let product = |n: u128, brand: &str| SearchDocument {
            id: Uuid::from_u128(n),
            slug: format!("p-{n}"),
            title: format!("{} {} {n}", adjectives[n as usize % 4], nouns[n as usize % 5]),
            description: format!("{} in the demo shop", nouns[(n as usize / 3) % 5]),
            brand: Some(brand.to_owned()),
            category_ids: vec![leaves[n as usize % 2]],
            attributes: vec![("colour".to_owned(), ["navy", "sand", "red"][n as usize % 3].to_owned())],
            prices: vec![("EUR".into(), 500 + (n as i64 * 731) % 20_000, 30_000)],
            in_stock: !n.is_multiple_of(7),
            image: None,
            created_at: format!("2026-11-01T12:{:02}:00Z", n % 60),
        };
        // Two segments.
        for part in [0..300u128, 300..500] {
            let docs: Vec<_> = part.map(|n| product(n, ["Acme", "Lumen", "Atlas"][n as usize % 3])).collect();
            index.stage(&tree, &[], &docs).unwrap();
            index.commit(1).unwrap();
        }
        let eur = Currency::parse("EUR").unwrap();
        let requests: Vec<Vec<(&str, String)>> = vec![
            vec![("q", "shirt".into())],
            vec![("q", "shrit".into()), ("brand", "Acme".into())],
            vec![("q", "linen".into()), ("attr.colour", "navy".into()), ("in_stock", "true".into())],
            vec![("q", "sweater".into()), ("category", leaves[1].to_string()), ("price_min", "1000".into())],
            vec![("q", "classic headphnes".into()), ("sort", "price_asc".into())],
            vec![("q", "mug".into()), ("sort", "newest".into()), ("brand", "Lumen".into()), ("price_max", "9000".into())],
            vec![("q", "nordic".into()), ("in_stock", "false".into()), ("offset", "5".into()), ("limit", "7".into())],
        ];
        let query = |pairs: &[(&str, String)], cached: bool| {
            let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
            let request = SearchRequest::parse(&pairs).unwrap();
            let terms = index.terms(&request.text);
            let words = cached.then(|| index.word_cache());
            let q = search_query(index.fields(), &terms, &request, request.category.as_deref(), eur, index.filter_cache(), words);
            (q, request)
        };
        // Every match with its score, best first.
        let scored = |pairs: &[(&str, String)], cached: bool| {
            let top = tantivy::collector::TopDocs::with_limit(1_000).order_by_score();
            index.searcher().search(query(pairs, cached).0.as_ref(), &top).unwrap()
        };
        let search = |pairs: &[(&str, String)], cached: bool| {
            let (q, request) = query(pairs, cached);
            let counter = index.facet_counter(eur, vec![0, 1_000, 5_000, 10_000]);
            index.search(q.as_ref(), request.sort, eur, request.offset, request.limit, counter).unwrap()
        };
        let same = |pairs: &[(&str, String)], ordered: bool| {
            let (plain, cached) = (search(pairs, false), search(pairs, true));
            assert!(plain.total > 0, "{pairs:?} matches nothing");
            let ids = |h: &crate::search::Hits| h.items.iter().map(|s| s.id).collect::<Vec<_>>();
            let (mut a, mut b) = (ids(&plain), ids(&cached));
            if !ordered {
                a.sort();
                b.sort();
            }
            assert_eq!(a, b, "{pairs:?}");
            assert_eq!(plain.total, cached.total, "{pairs:?}");
            let (f, g) = (&plain.facets, &cached.facets);
            assert_eq!((&f.brand, &f.category, &f.attribute), (&g.brand, &g.category, &g.attribute), "{pairs:?}");
            assert_eq!((&f.price, f.in_stock), (&g.price, g.in_stock), "{pairs:?}");
        };
        for pairs in &requests {
            same(pairs, true);
            same(pairs, true); // from the lists now
            assert_eq!(scored(pairs, true), scored(pairs, false), "{pairs:?}");
        }
        assert!(index.word_cache().entries() > 0);

        // Changed products: deleted from the old segments (whose lists stay and
        // must skip them), written to a new one.
        let changed: Vec<Uuid> = (0..500u128).step_by(4).map(Uuid::from_u128).collect();
        let docs: Vec<_> = (0..500u128).step_by(4).map(|n| product(n, "Kestrel")).collect();
        index.stage(&tree, &changed, &docs).unwrap();
        index.commit(2).unwrap();
        for pairs in &requests {
            // Pages can differ where scores tie across segments; compare whole answers.
            let mut everything = pairs.clone();
            everything.retain(|(k, _)| *k != "offset" && *k != "limit");
            everything.push(("limit", "100".into()));
            same(&everything, false);
        }
        let kestrel = search(&[("q", "shirt".into()), ("brand", "Kestrel".into())], true);
        assert_eq!(kestrel.total, search(&[("q", "shirt".into()), ("brand", "Kestrel".into())], false).total);
        assert!(kestrel.total > 0);

        // A fifth more products: the lists are scored again with the new
        // statistics, so every score is exactly what the index computes.
        let docs: Vec<_> = (500..600u128).map(|n| product(n, "Atlas")).collect();
        index.stage(&tree, &[], &docs).unwrap();
        index.commit(3).unwrap();
        for pairs in &requests {
            assert_eq!(scored(pairs, true), scored(pairs, false), "{pairs:?}");
        }
        drop(index);
        let _ = std::fs::remove_dir_all(dir);
    }
}
