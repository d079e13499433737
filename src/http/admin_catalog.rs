//! Catalog management for staff. Every write needs `catalog:write` and is audited
//! by the store in the transaction of the change.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::Serialize;

use super::AppState;
use super::catalog::ProductPage;
use super::extract::{ApiJson, PathId, Staff, perm};
use crate::domain::catalog::{ProductInput, VariantInput};
use crate::error::{ApiError, ApiResult, Problem};
use crate::ops::catalog::{self as ops, CategoryInput, CategoryPatchInput, ListParams, ProductPatchInput, VariantPatchInput};
use crate::store::catalog::{Category, Product};

use axum::Json;

/// All products, any status, with the storefront filters plus `status`.
#[utoipa::path(
    get, path = "/v1/admin/products", tag = "admin-catalog",
    params(
        ("status" = Option<String>, Query, description = "draft, published or archived"),
        ("category" = Option<String>, Query), ("currency" = Option<String>, Query), ("sort" = Option<String>, Query),
        ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query),
    ),
    responses((status = 200, body = ProductPage), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("staff_token" = ["catalog:read"]))
)]
pub async fn list_products(
    _staff: Staff<perm::CatalogRead>,
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<ProductPage>> {
    let params = ListParams::parse(q.as_deref(), true)?;
    let page = ops::list_products(&state.store, &params, state.default_currency, false).await?;
    Ok(Json(ProductPage { items: page.items, next_cursor: page.next_cursor }))
}

/// Creates a product with its variants and prices in one request.
#[utoipa::path(
    post, path = "/v1/admin/products", tag = "admin-catalog", request_body = ProductInput,
    responses((status = 201, body = Product), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("staff_token" = ["catalog:write"]))
)]
pub async fn create_product(
    staff: Staff<perm::CatalogWrite>,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<ProductInput>,
) -> ApiResult<(StatusCode, Json<Product>)> {
    let product = ops::create_product(&state.store, &input, &staff.actor()).await?;
    Ok((StatusCode::CREATED, Json(product)))
}

/// A product in any status.
#[utoipa::path(
    get, path = "/v1/admin/products/{id}", tag = "admin-catalog", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Product), (status = 404, body = Problem)),
    security(("staff_token" = ["catalog:read"]))
)]
pub async fn get_product(
    _staff: Staff<perm::CatalogRead>,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<Json<Product>> {
    Ok(Json(state.store.product(id).await?.ok_or(ApiError::NotFound("product"))?))
}

/// Changes a product's own fields (publish, rename, recategorise...).
#[utoipa::path(
    patch, path = "/v1/admin/products/{id}", tag = "admin-catalog", params(("id" = uuid::Uuid, Path)), request_body = ProductPatchInput,
    responses((status = 200, body = Product), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("staff_token" = ["catalog:write"]))
)]
pub async fn update_product(
    staff: Staff<perm::CatalogWrite>,
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(input): ApiJson<ProductPatchInput>,
) -> ApiResult<Json<Product>> {
    Ok(Json(ops::update_product(&state.store, id, &input, &staff.actor()).await?))
}

/// Adds a variant; its options must be one value of every product option.
#[utoipa::path(
    post, path = "/v1/admin/products/{id}/variants", tag = "admin-catalog", params(("id" = uuid::Uuid, Path)), request_body = VariantInput,
    responses((status = 201, body = Product), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("staff_token" = ["catalog:write"]))
)]
pub async fn add_variant(
    staff: Staff<perm::CatalogWrite>,
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(input): ApiJson<VariantInput>,
) -> ApiResult<(StatusCode, Json<Product>)> {
    Ok((StatusCode::CREATED, Json(ops::add_variant(&state.store, id, &input, &staff.actor()).await?)))
}

/// Changes a variant's SKU, prices, weight or barcode.
#[utoipa::path(
    patch, path = "/v1/admin/variants/{id}", tag = "admin-catalog", params(("id" = uuid::Uuid, Path)), request_body = VariantPatchInput,
    responses((status = 200, body = Product), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("staff_token" = ["catalog:write"]))
)]
pub async fn update_variant(
    staff: Staff<perm::CatalogWrite>,
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(input): ApiJson<VariantPatchInput>,
) -> ApiResult<Json<Product>> {
    Ok(Json(ops::update_variant(&state.store, id, &input, &staff.actor()).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AdminCategoryList {
    pub items: Vec<Category>,
}

/// Every category, flat, with parent ids.
#[utoipa::path(
    get, path = "/v1/admin/categories", tag = "admin-catalog",
    responses((status = 200, body = AdminCategoryList)),
    security(("staff_token" = ["catalog:read"]))
)]
pub async fn list_categories(
    _staff: Staff<perm::CatalogRead>,
    State(state): State<AppState>,
) -> ApiResult<Json<AdminCategoryList>> {
    Ok(Json(AdminCategoryList { items: state.store.categories().await? }))
}

/// Creates a category, optionally under a parent.
#[utoipa::path(
    post, path = "/v1/admin/categories", tag = "admin-catalog", request_body = CategoryInput,
    responses((status = 201, body = Category), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("staff_token" = ["catalog:write"]))
)]
pub async fn create_category(
    staff: Staff<perm::CatalogWrite>,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<CategoryInput>,
) -> ApiResult<(StatusCode, Json<Category>)> {
    Ok((StatusCode::CREATED, Json(ops::create_category(&state.store, &input, &staff.actor()).await?)))
}

/// Renames or moves a category; a move that would create a cycle is refused.
#[utoipa::path(
    patch, path = "/v1/admin/categories/{id}", tag = "admin-catalog", params(("id" = uuid::Uuid, Path)), request_body = CategoryPatchInput,
    responses((status = 200, body = Category), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("staff_token" = ["catalog:write"]))
)]
pub async fn update_category(
    staff: Staff<perm::CatalogWrite>,
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(input): ApiJson<CategoryPatchInput>,
) -> ApiResult<Json<Category>> {
    Ok(Json(ops::update_category(&state.store, id, &input, &staff.actor()).await?))
}

/// Deletes a category with no subcategories and no products.
#[utoipa::path(
    delete, path = "/v1/admin/categories/{id}", tag = "admin-catalog", params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("staff_token" = ["catalog:write"]))
)]
pub async fn delete_category(
    staff: Staff<perm::CatalogWrite>,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    state.store.delete_category(id, &staff.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}
