//! Storefront search and autocomplete, and the staff's index rebuild.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;

use super::AppState;
use super::cache::cached_json;
use super::extract::{Staff, perm};
use crate::cache::Kind;
use crate::domain::search_request::{SearchRequest, SuggestRequest};
use crate::error::{ApiError, ApiResult, Problem};
use crate::ops::search::{self as ops, SearchAnswer, Suggestions};

fn pairs(raw: Option<&str>) -> ApiResult<Vec<(String, String)>> {
    serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|_| ApiError::bad_request("invalid_query", "the query string is not valid URL encoding"))
}

/// Full-text search of published products with filters and facet counts.
///
/// Words match the title (weighted higher) or the description, exactly or
/// within one edit (words of 4-7 letters) or two (8 or more). Every word must
/// match. Without `q`, every product matches (browse with facets).
#[utoipa::path(
    get, path = "/v1/search", tag = "storefront",
    params(
        ("q" = Option<String>, Query, description = "Words to look for, at most 200 characters"),
        ("category" = Option<String>, Query, description = "Category id or slug; its whole branch matches"),
        ("brand" = Option<String>, Query, description = "Brand, repeatable (any of them)"),
        ("attr.{name}" = Option<String>, Query, description = "Attribute value, repeatable: `attr.colour=red&attr.colour=navy`"),
        ("currency" = Option<String>, Query, description = "ISO 4217 code for prices, price filters, buckets and sorts"),
        ("price_min" = Option<i64>, Query, description = "Lowest 'from' price, minor units"),
        ("price_max" = Option<i64>, Query, description = "Highest 'from' price, minor units"),
        ("in_stock" = Option<bool>, Query, description = "Only products with (or without) stock"),
        ("sort" = Option<String>, Query, description = "relevance (default with q), price_asc, price_desc, newest (default without q)"),
        ("facets" = Option<String>, Query, description = "Comma-separated: category, brand, price, attributes, attr.<name> (default: all)"),
        ("limit" = Option<usize>, Query, description = "1-100, default 24"),
        ("offset" = Option<usize>, Query, description = "offset + limit at most 1000"),
    ),
    responses((status = 200, body = SearchAnswer), (status = 400, body = Problem), (status = 422, body = Problem))
)]
pub async fn search(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let request = SearchRequest::parse(&pairs(query.as_deref())?).map_err(ApiError::Validation)?;
    let key = format!("{}:{}", state.catalog.search.position(), query.as_deref().unwrap_or(""));
    cached_json(&state, &headers, Kind::Search, key, async {
        let categories = state.catalog.categories.get(&state.store, state.store.versions()).await?;
        ops::search(&state.catalog.search, &categories, request, state.default_currency).await
    })
    .await
}

/// Products whose titles complete what is being typed (the last word as a prefix).
#[utoipa::path(
    get, path = "/v1/search/suggest", tag = "storefront",
    params(
        ("q" = String, Query, description = "The text typed so far"),
        ("limit" = Option<usize>, Query, description = "1-20, default 8"),
    ),
    responses((status = 200, body = Suggestions), (status = 400, body = Problem), (status = 422, body = Problem))
)]
pub async fn suggest(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let request = SuggestRequest::parse(&pairs(query.as_deref())?).map_err(ApiError::Validation)?;
    let key = format!("{}:{}", state.catalog.search.position(), query.as_deref().unwrap_or(""));
    cached_json(&state, &headers, Kind::Suggest, key, ops::suggest(&state.catalog.search, request)).await
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Reindexed {
    /// Products in the index.
    pub documents: u64,
    /// The catalog change-log position the index reflects.
    pub position: u64,
}

/// Rebuilds this instance's search index from the catalog (searches keep
/// answering from the old index until the new one is complete).
#[utoipa::path(post, path = "/v1/admin/search/reindex", tag = "admin-catalog",
    responses((status = 200, body = Reindexed)), security(("staff_token" = ["catalog:write"])))]
pub async fn reindex(staff: Staff<perm::CatalogWrite>, State(state): State<AppState>) -> ApiResult<Json<Reindexed>> {
    let index = &state.catalog.search;
    let documents = crate::ops::catalog_feed::rebuild(&state.store, index, &indicatif::ProgressBar::hidden())
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    tracing::info!(staff.id = %staff.id, documents, "search index rebuilt");
    Ok(Json(Reindexed { documents, position: index.position() }))
}
