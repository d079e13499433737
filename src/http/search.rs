//! Storefront search and autocomplete, and the staff's index rebuild.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
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
    // The category names of facets come from the catalog, the rest from the index.
    let key =
        format!("{}:{}:{}", state.catalog.search.position(), state.store.versions().catalog(), query.as_deref().unwrap_or(""));
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
pub struct IndexStatus {
    /// Products searchable now.
    pub documents: u64,
    /// The catalog change-log position the index reflects.
    pub position: u64,
    /// A rebuild is running (searches answer from the previous index meanwhile).
    pub rebuilding: bool,
}

fn status(index: &crate::search::SearchIndex) -> IndexStatus {
    IndexStatus { documents: index.documents(), position: index.position(), rebuilding: index.is_rebuilding() }
}

/// This instance's search index: size, position and whether a rebuild runs.
#[utoipa::path(get, path = "/v1/admin/search", tag = "admin-catalog",
    responses((status = 200, body = IndexStatus)), security(("staff_token" = ["catalog:read"])))]
pub async fn index_status(_staff: Staff<perm::CatalogRead>, State(state): State<AppState>) -> Json<IndexStatus> {
    Json(status(&state.catalog.search))
}

/// Starts a rebuild of this instance's search index from the catalog, in the
/// background; searches keep answering from the old index until the new one
/// is complete. Follow it with `GET /v1/admin/search`.
#[utoipa::path(post, path = "/v1/admin/search/reindex", tag = "admin-catalog",
    responses((status = 202, body = IndexStatus), (status = 409, body = Problem)), security(("staff_token" = ["catalog:write"])))]
pub async fn reindex(
    staff: Staff<perm::CatalogWrite>,
    State(state): State<AppState>,
) -> ApiResult<(StatusCode, Json<IndexStatus>)> {
    let index = state.catalog.search.clone();
    if !index.start_rebuild() {
        return Err(ApiError::conflict("reindex_running", None, "a rebuild of the search index is already running"));
    }
    let (store, running) = (state.store.clone(), index.clone());
    let staff_id = staff.id;
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        match crate::ops::catalog_feed::rebuild(&store, &running, &indicatif::ProgressBar::hidden()).await {
            Ok(documents) => {
                tracing::info!(staff.id = %staff_id, documents, elapsed_ms = started.elapsed().as_millis() as u64, "search index rebuilt")
            }
            Err(e) => tracing::error!(staff.id = %staff_id, error = %e, "search index rebuild failed; the previous index stays"),
        }
        running.finish_rebuild();
    });
    Ok((StatusCode::ACCEPTED, Json(status(&index))))
}
