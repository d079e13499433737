//! Storefront search: a checked request in, a page of hits with facet counts
//! out. The index answers everything (no database read per query); category
//! names come from a snapshot refreshed when the catalog version moves.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use uuid::Uuid;

use crate::catalog_versions::CatalogVersions;
use crate::domain::catalog::Image;
use crate::domain::money::Currency;
use crate::domain::search_request::{SearchRequest, SuggestRequest};
use crate::domain::validation::FieldError;
use crate::error::{ApiError, ApiResult};
use crate::search::facets::{FacetCounts, TermCounts};
use crate::search::schema::{ATTRIBUTE_SEPARATOR, Stored};
use crate::search::{SearchIndex, query};
use crate::store::Store;
use crate::store::catalog::{Category, PriceRange};

/// Lower bounds of the price buckets, in major units of the currency.
const PRICE_FLOORS: [i64; 8] = [0, 10, 25, 50, 100, 250, 500, 1000];
const MAX_BRANDS: usize = 50;
const MAX_ATTRIBUTE_VALUES: usize = 30;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchAnswer {
    pub items: Vec<SearchItem>,
    /// Every product that matches (beyond this page too).
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    /// The currency of prices, price filters and price buckets.
    pub currency: String,
    pub facets: Facets,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchItem {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub brand: Option<String>,
    /// Lowest and highest variant price in the currency; absent when unpriced there.
    pub price: Option<PriceRange>,
    pub image: Option<Image>,
    pub in_stock: bool,
    pub created_at: String,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Facets {
    /// Categories holding matches (a product counts once in each ancestor too).
    pub category: Vec<CategoryCount>,
    pub brand: Vec<ValueCount>,
    pub price: Vec<PriceBucket>,
    /// Attribute name → its values among the matches.
    pub attributes: BTreeMap<String, Vec<ValueCount>>,
    /// Matches with stock.
    pub in_stock: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CategoryCount {
    pub id: Uuid,
    pub parent_id: Option<Uuid>,
    pub slug: String,
    pub name: String,
    pub count: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ValueCount {
    pub value: String,
    pub count: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PriceBucket {
    /// Minor units, inclusive.
    pub min: i64,
    /// Minor units, exclusive; absent for the last bucket.
    pub max: Option<i64>,
    pub count: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Suggestions {
    pub items: Vec<Suggestion>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Suggestion {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
}

/// The category list as of a catalog version, re-read only when it moves.
#[derive(Default)]
pub struct CategorySnapshot {
    at: RwLock<Option<(u64, Arc<Vec<Category>>)>>,
}

impl CategorySnapshot {
    pub async fn get(&self, store: &Store, versions: &CatalogVersions) -> ApiResult<Arc<Vec<Category>>> {
        let version = versions.catalog();
        if let Some((at, list)) = self.at.read().unwrap_or_else(|p| p.into_inner()).as_ref()
            && *at == version
        {
            return Ok(list.clone());
        }
        let list = Arc::new(store.categories().await?);
        *self.at.write().unwrap_or_else(|p| p.into_inner()) = Some((version, list.clone()));
        Ok(list)
    }
}

pub async fn search(
    index: &Arc<SearchIndex>,
    categories: &[Category],
    request: SearchRequest,
    default_currency: Currency,
) -> ApiResult<SearchAnswer> {
    let currency = request.currency.unwrap_or(default_currency);
    let category = match request.category.as_deref() {
        None => None,
        Some(c) => Some(
            categories
                .iter()
                .find(|cat| cat.slug == c || cat.id.to_string() == c)
                .ok_or_else(|| {
                    ApiError::Validation(vec![FieldError {
                        field: "category".into(),
                        code: "unknown_category".into(),
                        message: format!("no category has the id or slug `{c}`"),
                    }])
                })?
                .id,
        ),
    };
    let terms = index.terms(&request.text);
    if terms.is_empty() && !request.text.is_empty() {
        // Only punctuation: nothing can match.
        return Ok(SearchAnswer {
            items: Vec::new(),
            total: 0,
            offset: request.offset,
            limit: request.limit,
            currency: currency.as_str().to_owned(),
            facets: Facets::default(),
        });
    }
    let unit = 10i64.pow(currency.exponent());
    let floors: Vec<i64> = PRICE_FLOORS.iter().map(|f| f * unit).collect();
    let running = index.clone();
    let (req, floors_for_search) = (request.clone(), floors.clone());
    let hits = tokio::task::spawn_blocking(move || {
        let q = query::search_query(
            running.fields(),
            &terms,
            &req,
            category.map(|c| c.to_string()).as_deref(),
            currency,
            running.filter_cache(),
            Some(running.word_cache()),
        );
        running.search(q.as_ref(), req.sort, currency, req.offset, req.limit, running.facet_counter(currency, floors_for_search))
    })
    .await
    .map_err(|e| anyhow::anyhow!("search task: {e}"))?
    .map_err(|e| anyhow::anyhow!(e))?;
    Ok(SearchAnswer {
        items: hits.items.into_iter().map(|s| item(s, currency)).collect(),
        total: hits.total,
        offset: request.offset,
        limit: request.limit,
        currency: currency.as_str().to_owned(),
        facets: facets(hits.facets, &request, categories, &floors),
    })
}

pub async fn suggest(index: &Arc<SearchIndex>, request: SuggestRequest) -> ApiResult<Suggestions> {
    let terms = index.terms(&request.text);
    if terms.is_empty() {
        return Ok(Suggestions { items: Vec::new() });
    }
    let running = index.clone();
    let hits = tokio::task::spawn_blocking(move || running.suggest(&terms, request.limit))
        .await
        .map_err(|e| anyhow::anyhow!("suggest task: {e}"))?
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(Suggestions { items: hits.into_iter().map(|s| Suggestion { id: s.id, slug: s.slug, title: s.title }).collect() })
}

fn item(s: Stored, currency: Currency) -> SearchItem {
    let price = s.prices.iter().find(|(c, _, _)| c == currency.as_str()).map(|(c, min, max)| PriceRange {
        currency: c.clone(),
        min: *min,
        max: *max,
    });
    SearchItem {
        id: s.id,
        slug: s.slug,
        title: s.title,
        brand: s.brand,
        price,
        image: s.image,
        in_stock: s.in_stock,
        created_at: s.created_at,
    }
}

fn facets(counts: FacetCounts, request: &SearchRequest, categories: &[Category], floors: &[i64]) -> Facets {
    let selection = &request.facets;
    let mut out = Facets { in_stock: counts.in_stock, ..Facets::default() };
    if selection.category {
        out.category = categories
            .iter()
            .filter_map(|c| {
                counts.category.get(&c.id.to_string()).map(|n| CategoryCount {
                    id: c.id,
                    parent_id: c.parent_id,
                    slug: c.slug.clone(),
                    name: c.name.clone(),
                    count: *n,
                })
            })
            .collect();
        out.category.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    }
    if selection.brand {
        out.brand = ranked(counts.brand, MAX_BRANDS);
    }
    if selection.price {
        out.price = floors
            .iter()
            .enumerate()
            .map(|(i, min)| PriceBucket { min: *min, max: floors.get(i + 1).copied(), count: counts.price[i] })
            .collect();
    }
    let mut by_name: BTreeMap<String, TermCounts> = BTreeMap::new();
    for (term, n) in counts.attribute {
        if let Some((name, value)) = term.split_once(ATTRIBUTE_SEPARATOR)
            && selection.wants_attribute(name)
        {
            by_name.entry(name.to_owned()).or_default().insert(value.to_owned(), n);
        }
    }
    out.attributes = by_name.into_iter().map(|(name, values)| (name, ranked(values, MAX_ATTRIBUTE_VALUES))).collect();
    out
}

/// Most frequent first (then by value), at most `max`.
fn ranked(counts: TermCounts, max: usize) -> Vec<ValueCount> {
    let mut values: Vec<ValueCount> = counts.into_iter().map(|(value, count)| ValueCount { value, count }).collect();
    values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    values.truncate(max);
    values
}
