//! Orders for staff: the filtered list, one order, its history.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use super::admin_order_actions::OrderDetail;
use super::extract::{ApiQuery, PathId, Staff, perm};
use crate::domain::cursor;
use crate::domain::email::Email;
use crate::domain::order_status::OrderStatus;
use crate::error::{ApiError, ApiResult, Problem};
use crate::store::orders::{OrderFilter, OrderHistoryEntry, OrderSummary};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OrderListParams {
    /// e.g. `paid`, `pending_payment`.
    pub status: Option<String>,
    /// The customer's e-mail, exactly.
    pub email: Option<String>,
    /// RFC 3339, inclusive.
    pub created_from: Option<String>,
    /// RFC 3339, exclusive.
    pub created_to: Option<String>,
    /// Grand total bounds, minor units.
    pub total_min: Option<i64>,
    pub total_max: Option<i64>,
    /// 1-100, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OrderList {
    pub items: Vec<OrderSummary>,
    pub next_cursor: Option<String>,
}

fn parse_time(field: &str, value: &str) -> ApiResult<String> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).map(crate::store::format_time).map_err(
        |_| ApiError::bad_field("invalid_time", field, format!("{field} must be an RFC 3339 time such as 2026-11-23T00:00:00Z")),
    )
}

/// Orders, newest first, filtered by status, customer e-mail, creation time and total.
#[utoipa::path(get, path = "/v1/admin/orders", tag = "admin-orders", params(OrderListParams),
    responses((status = 200, body = OrderList), (status = 400, body = Problem)), security(("staff_token" = ["orders:read"])))]
pub async fn list_orders(
    _staff: Staff<perm::OrdersRead>,
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<OrderListParams>,
) -> ApiResult<Json<OrderList>> {
    let limit = p.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_field("invalid_limit", "limit", "limit must be between 1 and 100"));
    }
    let status = p
        .status
        .as_deref()
        .map(|s| {
            OrderStatus::parse(s)
                .ok_or_else(|| ApiError::bad_field("invalid_status", "status", format!("unknown order status `{s}`")))
        })
        .transpose()?;
    let email = p
        .email
        .as_deref()
        .map(|e| {
            Email::parse(e).map(|e| e.as_str().to_owned()).map_err(|err| ApiError::bad_field(err.code, "email", err.message))
        })
        .transpose()?;
    let before = p
        .cursor
        .as_deref()
        .map(|c| cursor::decode::<Uuid>("admin-orders", c))
        .transpose()
        .map_err(|_| ApiError::bad_field("invalid_cursor", "cursor", "the cursor is not valid for this list"))?;
    let filter = OrderFilter {
        status,
        email,
        created_from: p.created_from.as_deref().map(|t| parse_time("created_from", t)).transpose()?,
        created_to: p.created_to.as_deref().map(|t| parse_time("created_to", t)).transpose()?,
        total_min: p.total_min,
        total_max: p.total_max,
        before,
        limit: limit + 1,
    };
    let mut items = state.store.list_orders(&filter).await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|o| cursor::encode("admin-orders", &o.id))
    } else {
        None
    };
    Ok(Json(OrderList { items, next_cursor }))
}

/// One order with its lines, totals, shipments, refunds and returns.
#[utoipa::path(get, path = "/v1/admin/orders/{id}", tag = "admin-orders", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = OrderDetail), (status = 404, body = Problem)), security(("staff_token" = ["orders:read"])))]
pub async fn get_order(
    _staff: Staff<perm::OrdersRead>,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<Json<OrderDetail>> {
    Ok(Json(super::admin_order_actions::order_detail(&state, id).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OrderHistory {
    pub items: Vec<OrderHistoryEntry>,
}

/// Every status change of an order: from, to, who, why, when.
#[utoipa::path(get, path = "/v1/admin/orders/{id}/history", tag = "admin-orders", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = OrderHistory), (status = 404, body = Problem)), security(("staff_token" = ["orders:read"])))]
pub async fn order_history(
    _staff: Staff<perm::OrdersRead>,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<Json<OrderHistory>> {
    state.store.order(id).await?.ok_or(ApiError::NotFound("order"))?;
    Ok(Json(OrderHistory { items: state.store.order_history(id).await? }))
}
