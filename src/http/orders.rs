//! Reading an order: its customer, or a guest holding the order's access token.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;

use super::AppState;
use super::extract::{PathId, ShopperAuth};
use crate::auth::tokens::hash_refresh_token;
use crate::error::{ApiError, ApiResult, Problem};
use crate::store::orders::Order;

/// One order. Customers read their own; guests send the `order_token` from the
/// checkout answer as `X-Order-Token`. Anyone else gets 404.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "carts",
    params(("id" = uuid::Uuid, Path), ("X-Order-Token" = Option<String>, Header)),
    responses((status = 200, body = Order), (status = 404, body = Problem)))]
pub async fn get_order(
    State(state): State<AppState>,
    ShopperAuth(shopper): ShopperAuth,
    PathId(id): PathId,
    headers: HeaderMap,
) -> ApiResult<Json<Order>> {
    let (order, token_hash) = state.store.order_with_token_hash(id).await?.ok_or(ApiError::NotFound("order"))?;
    let by_customer = order.customer_id.is_some() && order.customer_id == shopper.customer_id;
    let by_token =
        headers.get("x-order-token").and_then(|v| v.to_str().ok()).is_some_and(|t| hash_refresh_token(t) == token_hash);
    if by_customer || by_token { Ok(Json(order)) } else { Err(ApiError::NotFound("order")) }
}
