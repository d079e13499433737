//! The storefront catalog: published products and the category tree, cacheable.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use uuid::Uuid;

use super::AppState;
use super::cache::cached_json;
use crate::cache::Kind;
use crate::domain::catalog::ProductStatus;
use crate::error::{ApiError, ApiResult, Problem};
use crate::ops::catalog::{self as ops, CategoryNode, ListParams};
use crate::store::catalog::{Product, ProductSummary};

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProductPage {
    pub items: Vec<ProductSummary>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CategoryList {
    pub items: Vec<CategoryNode>,
}

/// Published products, filtered and sorted, one page at a time.
#[utoipa::path(
    get, path = "/v1/products", tag = "storefront",
    params(
        ("category" = Option<String>, Query, description = "Category id or slug; its whole branch matches"),
        ("currency" = Option<String>, Query, description = "ISO 4217 code for prices, price filters and price sorts"),
        ("price_min" = Option<i64>, Query, description = "Lowest 'from' price, minor units"),
        ("price_max" = Option<i64>, Query, description = "Highest 'from' price, minor units"),
        ("attr.{name}" = Option<String>, Query, description = "Attribute filter, repeatable: `attr.colour=red&attr.colour=navy`"),
        ("sort" = Option<String>, Query, description = "newest (default), price_asc, price_desc, title_asc"),
        ("limit" = Option<i64>, Query, description = "1-100, default 24"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses((status = 200, body = ProductPage), (status = 400, body = Problem), (status = 404, body = Problem))
)]
pub async fn list_products(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let params = ListParams::parse(query.as_deref(), false)?;
    let key = format!("{}:{}", state.store.versions().catalog(), query.as_deref().unwrap_or(""));
    cached_json(&state, &headers, Kind::List, key, async {
        let page = ops::list_products(&state.store, &params, state.default_currency, true).await?;
        Ok(ProductPage { items: page.items, next_cursor: page.next_cursor })
    })
    .await
}

/// One published product with its variants and prices, by id or slug.
#[utoipa::path(
    get, path = "/v1/products/{id_or_slug}", tag = "storefront",
    params(("id_or_slug" = String, Path)),
    responses((status = 200, body = Product), (status = 404, body = Problem))
)]
pub async fn get_product(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id_or_slug): Path<String>,
) -> ApiResult<Response> {
    let versions = state.store.versions();
    let product_id = match Uuid::parse_str(&id_or_slug) {
        Ok(id) => id,
        // A slug names a product as of the catalog version: resolved (and cached) once per version.
        Err(_) => {
            let key = format!("{}:{id_or_slug}", versions.catalog());
            let found = state
                .catalog
                .cache
                .get_or_load(Kind::Slug, key, async {
                    let product = state.store.product_id_by_slug(&id_or_slug).await?.ok_or(ApiError::NotFound("product"))?;
                    Ok(product.to_string().into_bytes())
                })
                .await?;
            std::str::from_utf8(&found.body)
                .ok()
                .and_then(|id| Uuid::parse_str(id).ok())
                .ok_or_else(|| anyhow::anyhow!("cached product id is not a UUID"))?
        }
    };
    let key = format!("{product_id}:{}", versions.product(product_id));
    cached_json(&state, &headers, Kind::Product, key, async {
        state
            .store
            .product(product_id)
            .await?
            .filter(|p| p.status == ProductStatus::Published)
            .ok_or(ApiError::NotFound("product"))
    })
    .await
}

/// The category tree.
#[utoipa::path(get, path = "/v1/categories", tag = "storefront", responses((status = 200, body = CategoryList)))]
pub async fn list_categories(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let key = state.store.versions().catalog().to_string();
    cached_json(&state, &headers, Kind::Categories, key, async {
        let categories = state.store.categories().await?;
        Ok(CategoryList { items: ops::category_tree(&categories) })
    })
    .await
}
