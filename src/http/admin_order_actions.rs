//! What staff do with an order after it is paid: ship it (in one or more
//! parcels), record its delivery, cancel it, refund it, take it back. Each route
//! names its permission; a step the order's state does not allow is a 409 that
//! lists what it does allow.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::extract::{ApiJson, Customer, PathId, PathIds, Staff, perm};
use crate::domain::identifiers::parse_idempotency_key;
use crate::domain::order_status::{OrderEvent, transition};
use crate::domain::rbac::refund_limit;
use crate::domain::validation::FieldErrors;
use crate::error::{ApiError, ApiResult, Problem};
use crate::ops::refunds;
use crate::store::audit::Actor;
use crate::store::fulfilment::{FulfilmentError, LineQuantity, NewShipment, Return, Shipment};
use crate::store::orders::Order;
use crate::store::refunds::{Refund, RefundAsk, Settlement};

/// An order with everything that happened to it after checkout.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OrderDetail {
    #[serde(flatten)]
    pub order: Order,
    pub shipments: Vec<Shipment>,
    pub refunds: Vec<Refund>,
    pub returns: Vec<Return>,
}

pub async fn order_detail(state: &AppState, id: uuid::Uuid) -> ApiResult<OrderDetail> {
    let order = state.store.order(id).await?.ok_or(ApiError::NotFound("order"))?;
    Ok(OrderDetail {
        order,
        shipments: state.store.shipments(id).await?,
        refunds: state.store.refunds(id).await?,
        returns: state.store.returns(id).await?,
    })
}

fn fulfilment_error(e: FulfilmentError) -> ApiError {
    match e {
        FulfilmentError::Order(o) => crate::ops::checkout::order_error(o),
        FulfilmentError::Lines(errors) => ApiError::Validation(errors),
        FulfilmentError::NothingToShip => ApiError::conflict("nothing_to_ship", None, "every unit of this order has shipped"),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipmentInput {
    /// e.g. `DHL`, `UPS`.
    pub carrier: String,
    pub tracking_number: String,
    /// Where the customer can follow the parcel (http or https).
    pub tracking_url: Option<String>,
    /// The lines and units in this parcel; every unshipped unit when absent.
    pub lines: Option<Vec<LineQuantity>>,
}

fn check_text(errors: &mut FieldErrors, field: &str, value: &str, max: usize) {
    if value.trim().is_empty() || value.chars().count() > max {
        errors.push(field, "invalid", format!("1 to {max} characters"));
    }
}

/// Ships all or some of a paid order's lines, with carrier and tracking number.
/// The order becomes `fulfilling` while units are left, `shipped` when none are.
/// A payment held on the card is captured first (`409 capture_failed` if the
/// provider refuses, `503 payment_unavailable` if it cannot be reached; nothing
/// ships then).
#[utoipa::path(post, path = "/v1/admin/orders/{id}/shipments", tag = "admin-orders", params(("id" = uuid::Uuid, Path)),
    request_body = ShipmentInput,
    responses((status = 201, body = Shipment), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("staff_token" = ["orders:fulfil"])))]
pub async fn create_shipment(
    staff: Staff<perm::OrdersFulfil>,
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(input): ApiJson<ShipmentInput>,
) -> ApiResult<(StatusCode, Json<Shipment>)> {
    let mut errors = FieldErrors::new();
    check_text(&mut errors, "carrier", &input.carrier, 100);
    check_text(&mut errors, "tracking_number", &input.tracking_number, 100);
    if let Some(url) = &input.tracking_url
        && (!(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2000)
    {
        errors.push("tracking_url", "invalid_url", "an http(s) URL of at most 2000 characters");
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors.into_vec()));
    }
    // A payment held on the card is taken before the first parcel leaves; only an
    // order that may ship gets that far.
    let order = state.store.order(id).await?.ok_or(ApiError::NotFound("order"))?;
    transition(order.status, OrderEvent::Ship { complete: false }).map_err(ApiError::InvalidTransition)?;
    crate::ops::holds::capture_if_held(&state.store, &state.providers, id).await?;
    let shipment = NewShipment {
        carrier: input.carrier.trim().to_owned(),
        tracking_number: input.tracking_number.trim().to_owned(),
        tracking_url: input.tracking_url,
        lines: input.lines,
    };
    let created = state.store.ship(id, &shipment, &staff.actor()).await.map_err(fulfilment_error)?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Records that every parcel of a shipped order arrived.
#[utoipa::path(post, path = "/v1/admin/orders/{id}/deliver", tag = "admin-orders", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = OrderDetail), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("staff_token" = ["orders:fulfil"])))]
pub async fn deliver(
    staff: Staff<perm::OrdersFulfil>,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<Json<OrderDetail>> {
    state.store.mark_delivered(id, &staff.actor()).await.map_err(crate::ops::checkout::order_error)?;
    Ok(Json(order_detail(&state, id).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonInput {
    #[serde(default)]
    pub reason: String,
}

/// Cancels an order that has not shipped. An unpaid order's reservation is
/// released; a paid order's goods go back to stock and its money is refunded in
/// full through the provider (within the role's refund limit).
#[utoipa::path(post, path = "/v1/admin/orders/{id}/cancel", tag = "admin-orders", params(("id" = uuid::Uuid, Path)),
    request_body = ReasonInput,
    responses((status = 200, body = OrderDetail), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("staff_token" = ["orders:refund"])))]
pub async fn cancel(
    staff: Staff<perm::OrdersRefund>,
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(input): ApiJson<ReasonInput>,
) -> ApiResult<Json<OrderDetail>> {
    let reason = if input.reason.trim().is_empty() { "cancelled by staff" } else { input.reason.trim() };
    let limit = refund_limit(staff.role, state.shop.support_refund_limit);
    refunds::cancel(&state.store, &state.providers, id, reason, limit, &staff.actor()).await?;
    Ok(Json(order_detail(&state, id).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundInput {
    /// Minor units of the order's currency; at most what is left to refund.
    pub amount: i64,
    #[serde(default)]
    pub reason: String,
}

/// Refunds all or part of what was paid, through the payment provider. Needs an
/// `Idempotency-Key`: the same key answers with the same refund. `201` when the
/// provider settled it, `202` while it is pending (the queue or the provider's
/// webhook finishes it), `409 refund_failed` when the provider refused it.
#[utoipa::path(post, path = "/v1/admin/orders/{id}/refunds", tag = "admin-orders",
    params(("id" = uuid::Uuid, Path), ("Idempotency-Key" = String, Header, description = "unique per refund, e.g. a UUID")),
    request_body = RefundInput,
    responses((status = 201, body = Refund), (status = 202, body = Refund), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("staff_token" = ["orders:refund"])))]
pub async fn create_refund(
    staff: Staff<perm::OrdersRefund>,
    State(state): State<AppState>,
    PathId(id): PathId,
    headers: HeaderMap,
    ApiJson(input): ApiJson<RefundInput>,
) -> ApiResult<(StatusCode, Json<Refund>)> {
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or("\u{0}"))
        .ok_or_else(|| {
            ApiError::bad_field("idempotency_key_required", "Idempotency-Key", "a refund needs an Idempotency-Key header")
        })
        .and_then(|k| parse_idempotency_key(k).map_err(|e| ApiError::bad_field(e.code, "Idempotency-Key", e.message)))?;
    if input.reason.chars().count() > 500 {
        return Err(ApiError::invalid_field("reason", "too_long", "at most 500 characters"));
    }
    let key = format!("key:{key}");
    let ask = RefundAsk {
        amount: input.amount,
        reason: input.reason.trim(),
        idempotency_key: Some(&key),
        limit: refund_limit(staff.role, state.shop.support_refund_limit),
    };
    let refund = refunds::refund(&state.store, &state.providers, id, &ask, &staff.actor()).await?;
    if refund.status == "failed" {
        let why = refund.failure.as_deref().unwrap_or("no reason given");
        return Err(ApiError::conflict(
            "refund_failed",
            None,
            format!("the payment provider refused refund {}: {why}", refund.id),
        ));
    }
    let status = if refund.status == "pending" { StatusCode::ACCEPTED } else { StatusCode::CREATED };
    Ok((status, Json(refund)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundResolution {
    Succeeded,
    Failed,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRefundInput {
    /// What the provider's own records say happened.
    pub outcome: RefundResolution,
    /// The provider's refund reference, when it succeeded.
    pub reference: Option<String>,
    /// Why (kept in the order's history).
    pub reason: String,
}

/// Settles a refund stuck `pending` (its provider never said, or it is too old to
/// ask again safely) as its provider's records show it: `succeeded` adds it to the
/// order's refunded total, `failed` frees the amount. Only a pending refund.
#[utoipa::path(post, path = "/v1/admin/orders/{id}/refunds/{refund_id}/resolve", tag = "admin-orders",
    params(("id" = uuid::Uuid, Path), ("refund_id" = uuid::Uuid, Path)), request_body = ResolveRefundInput,
    responses((status = 200, body = Refund), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("staff_token" = ["orders:refund"])))]
pub async fn resolve_refund(
    staff: Staff<perm::OrdersRefund>,
    State(state): State<AppState>,
    PathIds(id, refund_id): PathIds,
    ApiJson(input): ApiJson<ResolveRefundInput>,
) -> ApiResult<Json<Refund>> {
    let reason = input.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::invalid_field("reason", "invalid", "say why, in 1 to 500 characters"));
    }
    let ticket =
        state.store.refund_ticket(refund_id).await?.filter(|t| t.refund.order_id == id).ok_or(ApiError::NotFound("refund"))?;
    if ticket.refund.status != "pending" {
        return Err(ApiError::conflict("refund_not_pending", None, format!("this refund is already {}", ticket.refund.status)));
    }
    let settlement = match input.outcome {
        RefundResolution::Succeeded => Settlement::Succeeded {
            reference: input.reference.filter(|r| !r.trim().is_empty()).unwrap_or_else(|| format!("manual:{refund_id}")),
        },
        RefundResolution::Failed => Settlement::Failed { reason: format!("resolved by staff: {reason}") },
    };
    let settled = state.store.settle_refund(refund_id, &settlement, &staff.actor()).await.map_err(refunds::refund_error)?;
    tracing::warn!(refund.id = %refund_id, order.id = %id, staff.id = %staff.id, status = %settled.status, reason, "refund resolved by hand");
    Ok(Json(settled))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnInput {
    /// The units coming back; every shipped unit when absent.
    pub lines: Option<Vec<LineQuantity>>,
    #[serde(default)]
    pub reason: String,
}

fn return_reason(input: &ReturnInput) -> ApiResult<&str> {
    if input.reason.chars().count() > 500 {
        return Err(ApiError::invalid_field("reason", "too_long", "at most 500 characters"));
    }
    Ok(input.reason.trim())
}

/// Opens a return for a shipped or delivered order.
#[utoipa::path(post, path = "/v1/admin/orders/{id}/returns", tag = "admin-orders", params(("id" = uuid::Uuid, Path)),
    request_body = ReturnInput,
    responses((status = 201, body = Return), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("staff_token" = ["orders:fulfil"])))]
pub async fn request_return(
    staff: Staff<perm::OrdersFulfil>,
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(input): ApiJson<ReturnInput>,
) -> ApiResult<(StatusCode, Json<Return>)> {
    let reason = return_reason(&input)?;
    let created =
        state.store.request_return(id, input.lines.as_deref(), reason, &staff.actor()).await.map_err(fulfilment_error)?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiveInput {
    /// Put the units back on hand (false for damaged goods).
    pub restock: bool,
}

/// The returned parcel arrived: the order is `returned`, the units restocked if
/// asked. Refund with `POST /v1/admin/orders/{id}/refunds`.
#[utoipa::path(post, path = "/v1/admin/orders/{id}/returns/{return_id}/receive", tag = "admin-orders",
    params(("id" = uuid::Uuid, Path), ("return_id" = uuid::Uuid, Path)), request_body = ReceiveInput,
    responses((status = 200, body = Return), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("staff_token" = ["orders:fulfil"])))]
pub async fn receive_return(
    staff: Staff<perm::OrdersFulfil>,
    State(state): State<AppState>,
    PathIds(id, return_id): PathIds,
    ApiJson(input): ApiJson<ReceiveInput>,
) -> ApiResult<Json<Return>> {
    let received = state.store.receive_return(id, return_id, input.restock, &staff.actor()).await.map_err(fulfilment_error)?;
    Ok(Json(received))
}

/// A customer asks to send back a shipped or delivered order of theirs.
#[utoipa::path(post, path = "/v1/me/orders/{id}/returns", tag = "customers", params(("id" = uuid::Uuid, Path)),
    request_body = ReturnInput,
    responses((status = 201, body = Return), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("customer_token" = [])))]
pub async fn customer_return(
    customer: Customer,
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(input): ApiJson<ReturnInput>,
) -> ApiResult<(StatusCode, Json<Return>)> {
    let order = state.store.order(id).await?;
    // Someone else's order is indistinguishable from no order.
    if order.and_then(|o| o.customer_id) != Some(customer.id) {
        return Err(ApiError::NotFound("order"));
    }
    let reason = return_reason(&input)?;
    let actor = Actor { kind: "customer", id: Some(customer.id), request_id: None };
    let created = state.store.request_return(id, input.lines.as_deref(), reason, &actor).await.map_err(fulfilment_error)?;
    Ok((StatusCode::CREATED, Json(created)))
}
