//! From a checked request to a tantivy query. User text only ever becomes terms
//! (through the index's analyzer), never query syntax, so nothing a shopper
//! types can fail to parse or reach another field.

use std::ops::Bound;

use tantivy::Term;
use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, Occur, Query, RangeQuery, TermQuery};
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
                // Exact: BM25 × 2, plus the constant every other spelling scores.
                let exact =
                    restricted(Box::new(TermQuery::new(Term::from_field_text(field, word), IndexRecordOption::WithFreqs)));
                let exact = Box::new(PlusConstant::new(exact, 1.0 / EXACT_BOOST));
                alternatives.push((Occur::Should, Box::new(BoostQuery::new(exact, boost * EXACT_BOOST))));
                let distance = fuzziness(word);
                if distance > 0 || prefix {
                    let others = restricted(Box::new(OtherSpellings::new(field, word, distance, prefix)));
                    alternatives.push((Occur::Should, Box::new(BoostQuery::new(others, boost))));
                }
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
}
