//! Customer accounts: registration, sessions, the address book and order history.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use super::extract::{ApiJson, ApiQuery, Customer, PathId};
use crate::domain::address::Address;
use crate::domain::cursor;
use crate::error::{ApiError, ApiResult, Problem};
use crate::ops::carts::{self as cart_ops, Shopper};
use crate::ops::customers::{self as ops, RegisterInput};
use crate::ops::password_reset::{self, PasswordResetConfirm, PasswordResetRequest};
use crate::ops::sessions::{LoginInput, RefreshInput, TokenPair};
use crate::store::customers::{Customer as CustomerView, SavedAddress};
use crate::store::orders::Order;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Session {
    pub customer: CustomerView,
    pub tokens: TokenPair,
    /// The customer's cart after a guest cart was merged into it at login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cart_id: Option<Uuid>,
}

/// Creates a customer account and signs it in.
#[utoipa::path(post, path = "/v1/auth/register", tag = "customers", request_body = RegisterInput,
    responses((status = 201, body = Session), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<RegisterInput>,
) -> ApiResult<(StatusCode, Json<Session>)> {
    let (customer, tokens) = ops::register(&state.store, &state.tokens, input).await?;
    Ok((StatusCode::CREATED, Json(Session { customer, tokens, cart_id: None })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerLoginInput {
    pub email: String,
    pub password: String,
    /// A guest cart to merge into the customer's (send its `X-Cart-Token` too).
    pub guest_cart_id: Option<Uuid>,
}

/// Signs a customer in; a guest cart named in the body is merged into theirs.
#[utoipa::path(post, path = "/v1/auth/login", tag = "customers", request_body = CustomerLoginInput,
    params(("X-Cart-Token" = Option<String>, Header, description = "token of the guest cart to merge")),
    responses((status = 200, body = Session), (status = 401, body = Problem), (status = 429, body = Problem)))]
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<CustomerLoginInput>,
) -> ApiResult<Json<Session>> {
    let (customer, tokens) =
        ops::login(&state.store, &state.tokens, &LoginInput { email: input.email, password: input.password }).await?;
    let mut cart_id = None;
    if let Some(guest) = input.guest_cart_id {
        let token = headers.get("x-cart-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let guest_shopper = Shopper { customer_id: None, cart_token: token };
        // A cart the caller cannot prove is theirs is ignored, not an error: the login stands.
        if let Ok(cart) = cart_ops::authorize_open(&state.store, guest, &guest_shopper).await {
            cart_id = state.store.merge_guest_cart(cart.id, customer.id, state.shop.carts.max_line_quantity).await?;
        }
    }
    Ok(Json(Session { customer, tokens, cart_id }))
}

/// Exchanges a refresh token (once) for a new pair.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "customers", request_body = RefreshInput,
    responses((status = 200, body = TokenPair), (status = 401, body = Problem)))]
pub async fn refresh(State(state): State<AppState>, ApiJson(input): ApiJson<RefreshInput>) -> ApiResult<Json<TokenPair>> {
    Ok(Json(ops::refresh(&state.store, &state.tokens, input).await?))
}

/// Ends the session of a refresh token.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "customers", request_body = RefreshInput, responses((status = 204)))]
pub async fn logout(State(state): State<AppState>, ApiJson(input): ApiJson<RefreshInput>) -> ApiResult<StatusCode> {
    ops::logout(&state.store, input).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Asks for a password reset e-mail.
///
/// Always 202, whether or not an account has this address (no account
/// enumeration); the link in the e-mail works once, for an hour. Rate-limited
/// like logins.
#[utoipa::path(post, path = "/v1/customers/password-reset", tag = "customers", request_body = PasswordResetRequest,
    responses((status = 202), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn request_password_reset(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<PasswordResetRequest>,
) -> ApiResult<StatusCode> {
    password_reset::request(&state.store, &state.shop.reset_key, &input).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Sets a new password with the token from a reset e-mail.
///
/// The token is spent and every session of the account ends (its refresh tokens
/// are revoked).
#[utoipa::path(post, path = "/v1/customers/password-reset/confirm", tag = "customers", request_body = PasswordResetConfirm,
    responses((status = 204), (status = 400, body = Problem, description = "`invalid_reset_token`: unknown, expired or used"),
        (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn confirm_password_reset(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<PasswordResetConfirm>,
) -> ApiResult<StatusCode> {
    password_reset::confirm(&state.store, input).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in customer.
#[utoipa::path(get, path = "/v1/me", tag = "customers", responses((status = 200, body = CustomerView), (status = 401, body = Problem)),
    security(("customer_token" = [])))]
pub async fn me(customer: Customer, State(state): State<AppState>) -> ApiResult<Json<CustomerView>> {
    Ok(Json(state.store.customer_by_id(customer.id).await?.ok_or(ApiError::Unauthorized("invalid_token"))?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AddressList {
    pub items: Vec<SavedAddress>,
}

/// The customer's saved addresses.
#[utoipa::path(get, path = "/v1/me/addresses", tag = "customers", responses((status = 200, body = AddressList)),
    security(("customer_token" = [])))]
pub async fn list_addresses(customer: Customer, State(state): State<AppState>) -> ApiResult<Json<AddressList>> {
    Ok(Json(AddressList { items: state.store.addresses(customer.id).await? }))
}

/// Saves an address.
#[utoipa::path(post, path = "/v1/me/addresses", tag = "customers", request_body = Address,
    responses((status = 201, body = SavedAddress), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("customer_token" = [])))]
pub async fn add_address(
    customer: Customer,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<Address>,
) -> ApiResult<(StatusCode, Json<SavedAddress>)> {
    Ok((StatusCode::CREATED, Json(ops::add_address(&state.store, customer.id, &input).await?)))
}

/// Deletes one of the customer's addresses.
#[utoipa::path(delete, path = "/v1/me/addresses/{id}", tag = "customers", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("customer_token" = [])))]
pub async fn delete_address(customer: Customer, State(state): State<AppState>, PathId(id): PathId) -> ApiResult<StatusCode> {
    if state.store.delete_address(customer.id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("address"))
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// 1-100, default 20.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OrderPage {
    pub items: Vec<Order>,
    pub next_cursor: Option<String>,
}

/// The customer's own orders, newest first.
#[utoipa::path(get, path = "/v1/me/orders", tag = "customers", params(PageParams),
    responses((status = 200, body = OrderPage), (status = 400, body = Problem)), security(("customer_token" = [])))]
pub async fn my_orders(
    customer: Customer,
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<OrderPage>> {
    let limit = p.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_field("invalid_limit", "limit", "limit must be between 1 and 100"));
    }
    let before = p
        .cursor
        .as_deref()
        .map(|c| cursor::decode::<Uuid>("orders", c))
        .transpose()
        .map_err(|_| ApiError::bad_field("invalid_cursor", "cursor", "the cursor is not valid for this list"))?;
    let mut items = state.store.orders_of_customer(customer.id, before, limit + 1).await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|o| cursor::encode("orders", &o.id))
    } else {
        None
    };
    Ok(Json(OrderPage { items, next_cursor }))
}
