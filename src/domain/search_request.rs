//! The storefront search request: every parameter checked and bounded before the
//! index sees it. User text is kept as text here; the search module turns it
//! into terms with the index's own analyzer (never through a query parser).

use std::collections::{BTreeMap, BTreeSet};

use super::money::Currency;
use super::validation::{FieldError, FieldErrors};

/// Longest query text accepted (characters).
pub const MAX_QUERY_CHARS: usize = 200;
/// Deepest result reachable by paging: offset + limit.
pub const MAX_DEPTH: usize = 1_000;
pub const MAX_LIMIT: usize = 100;
pub const DEFAULT_LIMIT: usize = 24;
const MAX_VALUES_PER_FILTER: usize = 20;
const MAX_ATTRIBUTE_FILTERS: usize = 10;
pub const MAX_SUGGESTIONS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchSort {
    Relevance,
    PriceAsc,
    PriceDesc,
    Newest,
}

/// Which facet counts the answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacetSelection {
    pub category: bool,
    pub brand: bool,
    pub price: bool,
    /// None: every attribute; Some: only these names.
    pub attributes: Option<BTreeSet<String>>,
}

impl FacetSelection {
    pub fn all() -> Self {
        Self { category: true, brand: true, price: true, attributes: None }
    }

    pub fn wants_attribute(&self, name: &str) -> bool {
        self.attributes.as_ref().is_none_or(|names| names.contains(name))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    pub text: String,
    /// Category id or slug; its whole branch matches.
    pub category: Option<String>,
    pub brands: Vec<String>,
    /// Attribute name → accepted values (any of them).
    pub attributes: BTreeMap<String, Vec<String>>,
    /// None: the shop's default currency.
    pub currency: Option<Currency>,
    pub price_min: Option<i64>,
    pub price_max: Option<i64>,
    pub in_stock: Option<bool>,
    pub sort: SearchSort,
    pub limit: usize,
    pub offset: usize,
    pub facets: FacetSelection,
}

impl SearchRequest {
    /// Parses the decoded query pairs of `GET /v1/search`, reporting every bad one.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        let mut r = SearchRequest {
            text: String::new(),
            category: None,
            brands: Vec::new(),
            attributes: BTreeMap::new(),
            currency: None,
            price_min: None,
            price_max: None,
            in_stock: None,
            sort: SearchSort::Relevance,
            limit: DEFAULT_LIMIT,
            offset: 0,
            facets: FacetSelection::all(),
        };
        let mut sort = None;
        for (key, value) in pairs {
            match key.as_str() {
                "q" => r.text = query_text(value, MAX_QUERY_CHARS, &mut errors),
                "category" => r.category = Some(value.clone()).filter(|c| !c.is_empty()),
                "brand" => r.brands.push(value.clone()),
                "currency" => match Currency::parse(value) {
                    Ok(c) => r.currency = Some(c),
                    Err(e) => errors.push("currency", e.code, e.message),
                },
                "price_min" => r.price_min = amount("price_min", value, &mut errors),
                "price_max" => r.price_max = amount("price_max", value, &mut errors),
                "in_stock" => match value.as_str() {
                    "true" => r.in_stock = Some(true),
                    "false" => r.in_stock = Some(false),
                    _ => errors.push("in_stock", "invalid", "in_stock must be true or false"),
                },
                "sort" => match value.as_str() {
                    "relevance" => sort = Some(SearchSort::Relevance),
                    "price_asc" => sort = Some(SearchSort::PriceAsc),
                    "price_desc" => sort = Some(SearchSort::PriceDesc),
                    "newest" => sort = Some(SearchSort::Newest),
                    _ => errors.push("sort", "invalid_sort", "sort must be one of relevance, price_asc, price_desc, newest"),
                },
                "limit" => match value.parse::<usize>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => r.limit = n,
                    _ => errors.push("limit", "invalid_limit", format!("limit must be between 1 and {MAX_LIMIT}")),
                },
                "offset" => match value.parse::<usize>() {
                    Ok(n) => r.offset = n,
                    Err(_) => errors.push("offset", "invalid_offset", "offset must be a non-negative integer"),
                },
                "facets" => r.facets = facets(value, &mut errors),
                other => match other.strip_prefix("attr.") {
                    Some(name) if !name.is_empty() => r.attributes.entry(name.to_owned()).or_default().push(value.clone()),
                    _ => errors.push(other, "unknown_parameter", format!("`{other}` is not a parameter of search")),
                },
            }
        }
        if r.brands.len() > MAX_VALUES_PER_FILTER {
            errors.push("brand", "too_many", format!("at most {MAX_VALUES_PER_FILTER} brands"));
        }
        if r.attributes.len() > MAX_ATTRIBUTE_FILTERS {
            errors.push("attr", "too_many", format!("at most {MAX_ATTRIBUTE_FILTERS} attribute filters"));
        }
        for (name, values) in &r.attributes {
            if values.len() > MAX_VALUES_PER_FILTER {
                errors.push(format!("attr.{name}"), "too_many", format!("at most {MAX_VALUES_PER_FILTER} values per attribute"));
            }
        }
        if let (Some(lo), Some(hi)) = (r.price_min, r.price_max)
            && lo > hi
        {
            errors.push("price_min", "invalid_range", "price_min must not be above price_max");
        }
        if r.offset.saturating_add(r.limit) > MAX_DEPTH {
            errors.push(
                "offset",
                "past_cap",
                format!("results are reachable up to {MAX_DEPTH} deep (offset + limit); narrow the search instead"),
            );
        }
        // Without words there is no relevance to rank by: newest first.
        r.sort = sort.unwrap_or(if r.text.is_empty() { SearchSort::Newest } else { SearchSort::Relevance });
        errors.finish(|| r)
    }
}

/// The `GET /v1/search/suggest` request: a prefix being typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuggestRequest {
    pub text: String,
    pub limit: usize,
}

impl SuggestRequest {
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        let mut r = SuggestRequest { text: String::new(), limit: 8 };
        for (key, value) in pairs {
            match key.as_str() {
                "q" => r.text = query_text(value, MAX_QUERY_CHARS, &mut errors),
                "limit" => match value.parse::<usize>() {
                    Ok(n) if (1..=MAX_SUGGESTIONS).contains(&n) => r.limit = n,
                    _ => errors.push("limit", "invalid_limit", format!("limit must be between 1 and {MAX_SUGGESTIONS}")),
                },
                other => errors.push(other, "unknown_parameter", format!("`{other}` is not a parameter of suggest")),
            }
        }
        errors.finish(|| r)
    }
}

fn query_text(value: &str, max: usize, errors: &mut FieldErrors) -> String {
    let text = value.trim();
    if text.chars().count() > max {
        errors.push("q", "too_long", format!("q may be at most {max} characters"));
        return String::new();
    }
    text.to_owned()
}

fn amount(field: &str, value: &str, errors: &mut FieldErrors) -> Option<i64> {
    match value.parse::<i64>() {
        Ok(n) if n >= 0 => Some(n),
        _ => {
            errors.push(field, "invalid_price", format!("{field} must be a non-negative integer in minor units"));
            None
        }
    }
}

fn facets(value: &str, errors: &mut FieldErrors) -> FacetSelection {
    let mut selection = FacetSelection { category: false, brand: false, price: false, attributes: Some(BTreeSet::new()) };
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "category" => selection.category = true,
            "brand" => selection.brand = true,
            "price" => selection.price = true,
            "attributes" => selection.attributes = None,
            other => match other.strip_prefix("attr.") {
                Some(attr) if !attr.is_empty() => {
                    if let Some(names) = selection.attributes.as_mut() {
                        names.insert(attr.to_owned());
                    }
                }
                _ => errors.push(
                    "facets",
                    "unknown_facet",
                    format!("`{other}` is not a facet; use category, brand, price, attributes or attr.<name>"),
                ),
            },
        }
    }
    selection
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn pairs(raw: &[(&str, &str)]) -> Vec<(String, String)> {
        raw.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn defaults_sort_by_relevance_with_words_and_newest_without() {
        assert_eq!(SearchRequest::parse(&pairs(&[("q", "linen shirt")])).unwrap().sort, SearchSort::Relevance);
        assert_eq!(SearchRequest::parse(&pairs(&[])).unwrap().sort, SearchSort::Newest);
        assert_eq!(SearchRequest::parse(&pairs(&[("q", "  ")])).unwrap().text, "");
    }

    #[test]
    fn every_bad_parameter_is_named() {
        let errors = SearchRequest::parse(&pairs(&[
            ("currency", "euro"),
            ("price_min", "-1"),
            ("limit", "0"),
            ("sort", "popular"),
            ("facets", "brand,colour"),
            ("in_stock", "yes"),
            ("color", "red"),
        ]))
        .unwrap_err();
        assert_eq!(fields(errors), ["currency", "price_min", "limit", "sort", "facets", "in_stock", "color"]);
    }

    #[test]
    fn a_long_query_and_a_page_past_the_cap_are_refused() {
        let long = "a".repeat(MAX_QUERY_CHARS + 1);
        assert_eq!(fields(SearchRequest::parse(&pairs(&[("q", &long)])).unwrap_err()), ["q"]);
        assert_eq!(fields(SearchRequest::parse(&pairs(&[("offset", "990"), ("limit", "24")])).unwrap_err()), ["offset"]);
        assert!(SearchRequest::parse(&pairs(&[("offset", "976"), ("limit", "24")])).is_ok());
    }

    #[test]
    fn an_inverted_price_range_is_refused() {
        let errors = SearchRequest::parse(&pairs(&[("price_min", "500"), ("price_max", "100")])).unwrap_err();
        assert_eq!(fields(errors), ["price_min"]);
    }

    #[test]
    fn filters_and_facets_are_collected() {
        let r = SearchRequest::parse(&pairs(&[
            ("brand", "Acme"),
            ("brand", "Lumen"),
            ("attr.colour", "red"),
            ("attr.colour", "navy"),
            ("facets", "price,attr.colour"),
        ]))
        .unwrap();
        assert_eq!(r.brands, ["Acme", "Lumen"]);
        assert_eq!(r.attributes["colour"], ["red", "navy"]);
        assert!(r.facets.price && !r.facets.brand && r.facets.wants_attribute("colour") && !r.facets.wants_attribute("size"));
    }

    proptest! {
        /// Whatever the client sends, parsing answers (never panics), and an
        /// accepted request stays inside every bound.
        #[test]
        fn accepted_requests_are_bounded(
            raw in proptest::collection::vec(("(q|limit|offset|price_min|price_max|sort|facets|brand|attr\\.[a-z]{0,3}|x)", ".{0,12}"), 0..8)
        ) {
            let raw: Vec<(String, String)> = raw;
            if let Ok(r) = SearchRequest::parse(&raw) {
                prop_assert!(r.limit >= 1 && r.limit <= MAX_LIMIT);
                prop_assert!(r.offset + r.limit <= MAX_DEPTH);
                prop_assert!(r.text.chars().count() <= MAX_QUERY_CHARS);
                prop_assert!(r.price_min.unwrap_or(0) >= 0);
            }
        }
    }
}
