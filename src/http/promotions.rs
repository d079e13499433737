//! Promotions: staff define them and their codes (`/v1/admin/promotions`);
//! shoppers put codes on carts (`/v1/carts/{id}/promotions`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use super::extract::{ApiJson, ApiQuery, PathId, ShopperAuth, Staff, perm};
use crate::domain::promotions::rules::PromotionRules;
use crate::error::{ApiError, ApiResult, Problem};
use crate::ops::carts::{self as carts, CartView, Destination};
use crate::ops::promotions::{self as ops, ApplyCodeInput, CollectionInput, NewCodesAnswer, NewCodesInput, Segments};
use crate::store::collections::Collection;
use crate::store::promotions::{PromotionCode, PromotionRecord, Redemption};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// 1 to 100 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    fn parse(&self) -> ApiResult<(i64, Option<Uuid>)> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::bad_field("invalid_limit", "limit", "limit must be between 1 and 100"));
        }
        let cursor = self
            .cursor
            .as_deref()
            .map(|c| {
                Uuid::parse_str(c).map_err(|_| ApiError::bad_field("invalid_cursor", "cursor", "not a cursor from this list"))
            })
            .transpose()?;
        Ok((limit, cursor))
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PromotionList {
    pub items: Vec<PromotionRecord>,
    pub next_cursor: Option<String>,
}

/// Promotions, newest first.
#[utoipa::path(get, path = "/v1/admin/promotions", tag = "admin-promotions", params(PageParams),
    responses((status = 200, body = PromotionList), (status = 400, body = Problem)), security(("staff_token" = ["promotions:read"])))]
pub async fn list_promotions(
    _staff: Staff<perm::PromotionsRead>,
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<PromotionList>> {
    let (limit, before) = p.parse()?;
    let items = state.store.list_promotions(before, limit).await?;
    let next_cursor = (items.len() as i64 == limit).then(|| items.last().map(|p| p.id.to_string())).flatten();
    Ok(Json(PromotionList { items, next_cursor }))
}

/// Creates a promotion: automatic, or redeemed by codes added afterwards.
#[utoipa::path(post, path = "/v1/admin/promotions", tag = "admin-promotions", request_body = PromotionRules,
    responses((status = 201, body = PromotionRecord), (status = 422, body = Problem)), security(("staff_token" = ["promotions:manage"])))]
pub async fn create_promotion(
    staff: Staff<perm::PromotionsManage>,
    State(state): State<AppState>,
    ApiJson(rules): ApiJson<PromotionRules>,
) -> ApiResult<(StatusCode, Json<PromotionRecord>)> {
    Ok((StatusCode::CREATED, Json(ops::create(&state.store, rules, &staff.actor()).await?)))
}

#[utoipa::path(get, path = "/v1/admin/promotions/{id}", tag = "admin-promotions", params(("id" = Uuid, Path)),
    responses((status = 200, body = PromotionRecord), (status = 404, body = Problem)), security(("staff_token" = ["promotions:read"])))]
pub async fn get_promotion(
    _staff: Staff<perm::PromotionsRead>,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<Json<PromotionRecord>> {
    Ok(Json(state.store.promotion(id).await?.ok_or(ApiError::NotFound("promotion"))?))
}

/// Replaces a promotion's rules (switch it off with `"active": false`). Orders
/// placed before keep the discounts they got.
#[utoipa::path(put, path = "/v1/admin/promotions/{id}", tag = "admin-promotions", params(("id" = Uuid, Path)),
    request_body = PromotionRules,
    responses((status = 200, body = PromotionRecord), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("staff_token" = ["promotions:manage"])))]
pub async fn update_promotion(
    staff: Staff<perm::PromotionsManage>,
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(rules): ApiJson<PromotionRules>,
) -> ApiResult<Json<PromotionRecord>> {
    Ok(Json(ops::update(&state.store, id, rules, &staff.actor()).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CodeList {
    pub items: Vec<PromotionCode>,
}

/// A promotion's codes; with `Accept: text/csv`, as a CSV file.
#[utoipa::path(get, path = "/v1/admin/promotions/{id}/codes", tag = "admin-promotions", params(("id" = Uuid, Path)),
    responses((status = 200, body = CodeList, content_type = "application/json"),
        (status = 200, body = String, content_type = "text/csv", description = "code,single_use,redemptions,created_at"),
        (status = 404, body = Problem)),
    security(("staff_token" = ["promotions:read"])))]
pub async fn list_codes(
    _staff: Staff<perm::PromotionsRead>,
    State(state): State<AppState>,
    PathId(id): PathId,
    headers: axum::http::HeaderMap,
) -> ApiResult<axum::response::Response> {
    let csv = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/csv"));
    if csv {
        let body = ops::codes_csv(&state.store, id).await?;
        let disposition = format!("attachment; filename=\"promotion-{id}-codes.csv\"");
        return Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
            body,
        )
            .into_response());
    }
    state.store.promotion(id).await?.ok_or(ApiError::NotFound("promotion"))?;
    Ok(Json(CodeList { items: state.store.promotion_codes(id).await? }).into_response())
}

/// Adds one shared code (`code`) or generates a batch of unique single-use codes (`generate`).
#[utoipa::path(post, path = "/v1/admin/promotions/{id}/codes", tag = "admin-promotions", params(("id" = Uuid, Path)),
    request_body = NewCodesInput,
    responses((status = 201, body = NewCodesAnswer), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)),
    security(("staff_token" = ["promotions:manage"])))]
pub async fn add_codes(
    staff: Staff<perm::PromotionsManage>,
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(input): ApiJson<NewCodesInput>,
) -> ApiResult<(StatusCode, Json<NewCodesAnswer>)> {
    Ok((StatusCode::CREATED, Json(ops::add_codes(&state.store, id, &input, &staff.actor()).await?)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RedemptionList {
    pub items: Vec<Redemption>,
    pub next_cursor: Option<String>,
}

/// The orders that used a promotion, newest first (released ones included,
/// marked). Order data: needs `orders:read`.
#[utoipa::path(get, path = "/v1/admin/promotions/{id}/redemptions", tag = "admin-promotions",
    params(("id" = Uuid, Path), PageParams),
    responses((status = 200, body = RedemptionList), (status = 404, body = Problem)),
    security(("staff_token" = ["orders:read"])))]
pub async fn redemptions(
    _staff: Staff<perm::OrdersRead>,
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<RedemptionList>> {
    let (limit, before) = p.parse()?;
    state.store.promotion(id).await?.ok_or(ApiError::NotFound("promotion"))?;
    let page = state.store.redemptions(id, before, limit).await?;
    let next_cursor = (page.len() as i64 == limit).then(|| page.last().map(|(k, _)| k.to_string())).flatten();
    Ok(Json(RedemptionList { items: page.into_iter().map(|(_, r)| r).collect(), next_cursor }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CollectionList {
    pub items: Vec<Collection>,
}

/// Collections: hand-picked product sets that promotions can include or exclude.
#[utoipa::path(get, path = "/v1/admin/collections", tag = "admin-catalog",
    responses((status = 200, body = CollectionList)), security(("staff_token" = ["catalog:read"])))]
pub async fn list_collections(
    _staff: Staff<perm::CatalogRead>,
    State(state): State<AppState>,
) -> ApiResult<Json<CollectionList>> {
    Ok(Json(CollectionList { items: state.store.collections().await? }))
}

#[utoipa::path(post, path = "/v1/admin/collections", tag = "admin-catalog", request_body = CollectionInput,
    responses((status = 201, body = Collection), (status = 422, body = Problem)), security(("staff_token" = ["catalog:write"])))]
pub async fn create_collection(
    staff: Staff<perm::CatalogWrite>,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<CollectionInput>,
) -> ApiResult<(StatusCode, Json<Collection>)> {
    Ok((StatusCode::CREATED, Json(ops::put_collection(&state.store, None, &input, &staff.actor()).await?)))
}

/// Renames a collection and replaces its products.
#[utoipa::path(put, path = "/v1/admin/collections/{id}", tag = "admin-catalog", params(("id" = Uuid, Path)),
    request_body = CollectionInput,
    responses((status = 200, body = Collection), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("staff_token" = ["catalog:write"])))]
pub async fn update_collection(
    staff: Staff<perm::CatalogWrite>,
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(input): ApiJson<CollectionInput>,
) -> ApiResult<Json<Collection>> {
    Ok(Json(ops::put_collection(&state.store, Some(id), &input, &staff.actor()).await?))
}

/// Replaces the segments a customer belongs to, which promotions can be limited to
/// (`conditions.segments`).
#[utoipa::path(put, path = "/v1/admin/customers/{id}/segments", tag = "admin-promotions", params(("id" = Uuid, Path)),
    request_body = Segments,
    responses((status = 200, body = Segments), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("staff_token" = ["customers:manage"])))]
pub async fn set_segments(
    staff: Staff<perm::CustomersManage>,
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(input): ApiJson<Segments>,
) -> ApiResult<Json<Segments>> {
    Ok(Json(ops::set_segments(&state.store, id, &input, &staff.actor()).await?))
}

/// Applies a coupon code to the cart. The answer is the cart, repriced, with
/// the code's effect or why it does not apply (yet).
#[utoipa::path(post, path = "/v1/carts/{id}/promotions", tag = "carts", params(("id" = Uuid, Path)), request_body = ApplyCodeInput,
    responses((status = 200, body = CartView), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn apply_code(
    State(state): State<AppState>,
    ShopperAuth(shopper): ShopperAuth,
    PathId(id): PathId,
    ApiJson(input): ApiJson<ApplyCodeInput>,
) -> ApiResult<Json<CartView>> {
    let cart = carts::authorize_open(&state.store, id, &shopper).await?;
    let applied = ops::apply_code(&state.store, &cart, &input).await;
    if matches!(&applied, Err(ApiError::Validation(e)) if e.iter().any(|f| f.code == "unknown_code")) {
        metrics::counter!("mercato_promotion_code_misses_total").increment(1);
    }
    applied?;
    Ok(Json(carts::view(&state.store, &cart, &Destination::default(), &state.shop.carts, None).await?))
}

/// Takes a code off the cart.
#[utoipa::path(delete, path = "/v1/carts/{id}/promotions/{code}", tag = "carts",
    params(("id" = Uuid, Path), ("code" = String, Path)),
    responses((status = 200, body = CartView), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn remove_code(
    State(state): State<AppState>,
    ShopperAuth(shopper): ShopperAuth,
    Path((id, code)): Path<(String, String)>,
) -> ApiResult<Json<CartView>> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("cart"))?;
    let cart = carts::authorize_open(&state.store, id, &shopper).await?;
    ops::remove_code(&state.store, &cart, &code).await?;
    Ok(Json(carts::view(&state.store, &cart, &Destination::default(), &state.shop.carts, None).await?))
}
