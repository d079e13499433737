//! Carts and checkout for guests (`X-Cart-Token`) and customers (bearer token).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::extract::{ApiJson, ApiQuery, PathId, PathIds, ShopperAuth};
use crate::domain::shipping::parse_country;
use crate::error::{ApiError, ApiResult, Problem};
use crate::ops::carts::{self as ops, AddItemInput, CartView, Destination, NewCartInput, SetQuantityInput};
use crate::ops::checkout::{self, CheckoutAnswer, CheckoutInput};

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct QuoteParams {
    /// ISO country to quote shipping and tax for.
    pub country: Option<String>,
    pub region: Option<String>,
}

fn destination(p: QuoteParams) -> ApiResult<Destination> {
    let country =
        p.country.map(|c| parse_country(&c).map_err(|e| ApiError::bad_field(e.code, "country", e.message))).transpose()?;
    Ok(Destination { country, region: p.region.unwrap_or_default() })
}

/// Creates a cart. A guest gets a `cart_token` to send back as `X-Cart-Token`; a
/// signed-in customer gets their open cart (a new one if they have none).
#[utoipa::path(post, path = "/v1/carts", tag = "carts", request_body = NewCartInput,
    responses((status = 201, body = CartView), (status = 422, body = Problem)))]
pub async fn create_cart(
    State(state): State<AppState>,
    ShopperAuth(shopper): ShopperAuth,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<CartView>)> {
    let input: NewCartInput = if body.is_empty() { NewCartInput::default() } else { super::extract::parse_json(&body)? };
    Ok((StatusCode::CREATED, Json(ops::create(&state.store, &shopper, &input, &state.shop.carts).await?)))
}

/// The cart, priced now; with `country` also shipping and tax.
#[utoipa::path(get, path = "/v1/carts/{id}", tag = "carts", params(("id" = uuid::Uuid, Path), QuoteParams),
    responses((status = 200, body = CartView), (status = 404, body = Problem)))]
pub async fn get_cart(
    State(state): State<AppState>,
    ShopperAuth(shopper): ShopperAuth,
    PathId(id): PathId,
    ApiQuery(q): ApiQuery<QuoteParams>,
) -> ApiResult<Json<CartView>> {
    let cart = ops::authorize(&state.store, id, &shopper).await?;
    Ok(Json(ops::view(&state.store, &cart, &destination(q)?, &state.shop.carts, None).await?))
}

/// Adds a variant (by `sku` or `variant_id`); quantities of the same variant add up.
#[utoipa::path(post, path = "/v1/carts/{id}/items", tag = "carts", params(("id" = uuid::Uuid, Path)), request_body = AddItemInput,
    responses((status = 201, body = CartView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 410, body = Problem), (status = 422, body = Problem)))]
pub async fn add_item(
    State(state): State<AppState>,
    ShopperAuth(shopper): ShopperAuth,
    PathId(id): PathId,
    ApiJson(input): ApiJson<AddItemInput>,
) -> ApiResult<(StatusCode, Json<CartView>)> {
    let cart = ops::authorize_open(&state.store, id, &shopper).await?;
    ops::add_item(&state.store, &cart, &input, &state.shop.carts).await?;
    Ok((StatusCode::CREATED, Json(ops::view(&state.store, &cart, &Destination::default(), &state.shop.carts, None).await?)))
}

/// Changes a line's quantity.
#[utoipa::path(patch, path = "/v1/carts/{id}/items/{item_id}", tag = "carts",
    params(("id" = uuid::Uuid, Path), ("item_id" = uuid::Uuid, Path)), request_body = SetQuantityInput,
    responses((status = 200, body = CartView), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn set_item(
    State(state): State<AppState>,
    ShopperAuth(shopper): ShopperAuth,
    PathIds(id, item): PathIds,
    ApiJson(input): ApiJson<SetQuantityInput>,
) -> ApiResult<Json<CartView>> {
    let cart = ops::authorize_open(&state.store, id, &shopper).await?;
    ops::set_quantity(&state.store, &cart, item, &input, &state.shop.carts).await?;
    Ok(Json(ops::view(&state.store, &cart, &Destination::default(), &state.shop.carts, None).await?))
}

/// Removes a line.
#[utoipa::path(delete, path = "/v1/carts/{id}/items/{item_id}", tag = "carts",
    params(("id" = uuid::Uuid, Path), ("item_id" = uuid::Uuid, Path)),
    responses((status = 200, body = CartView), (status = 404, body = Problem)))]
pub async fn remove_item(
    State(state): State<AppState>,
    ShopperAuth(shopper): ShopperAuth,
    PathIds(id, item): PathIds,
) -> ApiResult<Json<CartView>> {
    let cart = ops::authorize_open(&state.store, id, &shopper).await?;
    ops::remove_item(&state.store, &cart, item).await?;
    Ok(Json(ops::view(&state.store, &cart, &Destination::default(), &state.shop.carts, None).await?))
}

/// Turns the cart into an order: reprices it, reserves the stock, starts the
/// payment. Requires an `Idempotency-Key`: the same key and body replay the first
/// answer; another body is `422 idempotency_key_reused`; a key still running is
/// `409 idempotency_key_in_use`. When the payment provider cannot be reached the
/// answer is `503 payment_unavailable`, or, with `MERCATO_PAYMENT_UNAVAILABLE=queue`,
/// `202` with the order still waiting for its payment, which is retried later.
#[utoipa::path(post, path = "/v1/carts/{id}/checkout", tag = "carts", params(("id" = uuid::Uuid, Path),
        ("Idempotency-Key" = String, Header, description = "unique per checkout attempt, e.g. a UUID")),
    request_body = CheckoutInput,
    responses((status = 201, body = CheckoutAnswer),
        (status = 202, body = CheckoutAnswer, description = "the provider could not be reached; the payment is retried"),
        (status = 400, body = Problem), (status = 402, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 410, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem)))]
pub async fn checkout(
    State(state): State<AppState>,
    ShopperAuth(shopper): ShopperAuth,
    PathId(id): PathId,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let key = headers.get("idempotency-key").map(|v| v.to_str().unwrap_or("\u{0}").to_owned());
    // Run to the end even if the client hangs up: a checkout stopped between the
    // provider's answer and the order's update would leave the two disagreeing.
    let (status, body) = tokio::spawn(async move {
        let _in_flight = state.foreground.enter();
        let ctx = state.checkout_context();
        checkout::checkout(&ctx, id, &shopper, key.as_deref(), &body).await
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("checkout task failed: {e}")))??;
    let content_type = if status.is_success() { "application/json" } else { "application/problem+json" };
    Ok((status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response())
}
