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
/// `filters` restrict every term before the terms are combined: a union of
/// terms only ever advances (a seek into a union costs a refill of its window),
/// and each term meets the filters' bitset by seeking the smaller of the two.
pub fn text_query(fields: &Fields, terms: &[String], prefix_last: bool, filters: Option<&Filters>) -> Box<dyn Query> {
    let restricted = |q: Box<dyn Query>| -> Box<dyn Query> {
        match filters {
            Some(f) => Box::new(BooleanQuery::new(vec![(Occur::Must, q), (Occur::Must, Box::new(f.clone()))])),
            None => q,
        }
    };
    let clauses: Vec<(Occur, Box<dyn Query>)> = terms
        .iter()
        .enumerate()
        .map(|(i, word)| {
            let prefix = prefix_last && i + 1 == terms.len();
            let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for (field, boost) in [(fields.title, TITLE_BOOST), (fields.description, 1.0)] {
                let exact =
                    restricted(Box::new(TermQuery::new(Term::from_field_text(field, word), IndexRecordOption::WithFreqs)));
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
            (Occur::Must, Box::new(BooleanQuery::new(alternatives)) as Box<dyn Query>)
        })
        .collect();
    match (clauses.is_empty(), filters) {
        (true, None) => Box::new(AllQuery),
        (true, Some(f)) => Box::new(f.clone()),
        (false, _) => Box::new(BooleanQuery::new(clauses)),
    }
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
    text_query(fields, terms, false, Some(&filters).filter(|f| !f.is_empty()))
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
        let q = text_query(index.fields(), &[word.to_owned()], false, None);
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
}
