//! From a checked request to a tantivy query. User text only ever becomes terms
//! (through the index's analyzer), never query syntax, so nothing a shopper
//! types can fail to parse or reach another field.

use std::ops::Bound;

use tantivy::Term;
use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::tokenizer::TextAnalyzer;

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
pub fn text_query(fields: &Fields, terms: &[String], prefix_last: bool) -> Box<dyn Query> {
    let clauses: Vec<(Occur, Box<dyn Query>)> = terms
        .iter()
        .enumerate()
        .map(|(i, word)| {
            let prefix = prefix_last && i + 1 == terms.len();
            let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for (field, boost) in [(fields.title, TITLE_BOOST), (fields.description, 1.0)] {
                let term = Term::from_field_text(field, word);
                let exact: Box<dyn Query> = Box::new(TermQuery::new(term.clone(), IndexRecordOption::WithFreqs));
                alternatives.push((Occur::Should, Box::new(BoostQuery::new(exact, boost * EXACT_BOOST))));
                let distance = fuzziness(word);
                if distance > 0 || prefix {
                    let fuzzy = if prefix {
                        FuzzyTermQuery::new_prefix(term, distance, true)
                    } else {
                        FuzzyTermQuery::new(term, distance, true)
                    };
                    alternatives.push((Occur::Should, Box::new(BoostQuery::new(Box::new(fuzzy), boost))));
                }
            }
            (Occur::Must, Box::new(BooleanQuery::new(alternatives)) as Box<dyn Query>)
        })
        .collect();
    if clauses.is_empty() { Box::new(AllQuery) } else { Box::new(BooleanQuery::new(clauses)) }
}

/// The text query restricted by the request's filters (which do not score).
/// `categories`: the category filter resolved to an id.
pub fn search_query(
    fields: &Fields,
    terms: &[String],
    request: &SearchRequest,
    category: Option<&str>,
    currency: Currency,
) -> Box<dyn Query> {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, text_query(fields, terms, false))];
    let mut filter = |q: Box<dyn Query>| clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(q, 0.0))));
    let term = |t: Term| -> Box<dyn Query> { Box::new(TermQuery::new(t, IndexRecordOption::Basic)) };
    if let Some(c) = category {
        filter(term(Term::from_field_text(fields.category, c)));
    }
    if !request.brands.is_empty() {
        filter(any_of(request.brands.iter().map(|b| term(Term::from_field_text(fields.brand, b)))));
    }
    for (name, values) in &request.attributes {
        filter(any_of(
            values.iter().map(|v| term(Term::from_field_text(fields.attribute, &format!("{name}{ATTRIBUTE_SEPARATOR}{v}")))),
        ));
    }
    if request.price_min.is_some() || request.price_max.is_some() {
        let (lo, hi) = price_band::range(currency, request.price_min, request.price_max);
        filter(Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_u64(fields.price, lo)),
            Bound::Included(Term::from_field_u64(fields.price, hi)),
        )));
    }
    if let Some(in_stock) = request.in_stock {
        filter(term(Term::from_field_bool(fields.in_stock, in_stock)));
    }
    Box::new(BooleanQuery::new(clauses))
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
