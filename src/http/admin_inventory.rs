//! Stock for staff: locations, adjustments and receipts (each in the ledger),
//! levels per SKU, low-stock alerts and the ledger reconciliation.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::extract::{ApiJson, Staff, perm};
use crate::domain::validation::{FieldErrors, required_text};
use crate::error::{ApiError, ApiResult, Problem};
use crate::store::inventory::{InventoryError, Location, LowStock, Reconciliation, StockLevel};

pub const MAX_ADJUSTMENT: i64 = 1_000_000;

impl From<InventoryError> for ApiError {
    fn from(e: InventoryError) -> Self {
        match e {
            InventoryError::UnknownSku => ApiError::invalid_field("sku", "unknown_sku", "no variant has this SKU"),
            InventoryError::UnknownLocation => ApiError::invalid_field(
                "location",
                "unknown_location",
                "no stock location has this code (or, when none is named, the main location was removed: name one)",
            ),
            InventoryError::Insufficient { on_hand, reserved } => ApiError::conflict(
                "insufficient_stock",
                Some("delta"),
                format!("on hand {on_hand}, reserved {reserved}: stock cannot go below what is reserved"),
            ),
            InventoryError::Store(s) => s.into(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LocationList {
    pub items: Vec<Location>,
}

/// Stock locations (warehouses), in reservation priority.
#[utoipa::path(get, path = "/v1/admin/inventory/locations", tag = "admin-inventory",
    responses((status = 200, body = LocationList)), security(("staff_token" = ["inventory:read"])))]
pub async fn list_locations(_staff: Staff<perm::InventoryRead>, State(state): State<AppState>) -> ApiResult<Json<LocationList>> {
    Ok(Json(LocationList { items: state.store.locations().await? }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationInput {
    /// Short unique code, e.g. `berlin`.
    pub code: String,
    pub name: String,
    /// Lower is reserved from first.
    #[serde(default)]
    pub priority: i64,
}

/// Adds a stock location.
#[utoipa::path(post, path = "/v1/admin/inventory/locations", tag = "admin-inventory", request_body = LocationInput,
    responses((status = 201, body = Location), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("staff_token" = ["inventory:write"])))]
pub async fn create_location(
    staff: Staff<perm::InventoryWrite>,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<LocationInput>,
) -> ApiResult<(StatusCode, Json<Location>)> {
    let mut errors = FieldErrors::new();
    let code = errors.check("code", crate::domain::slug::Slug::parse(&input.code));
    let name = errors.check("name", required_text(&input.name, 100));
    let (Some(code), Some(name)) = (code, name) else { return Err(ApiError::Validation(errors.into_vec())) };
    Ok((StatusCode::CREATED, Json(state.store.create_location(code.as_str(), &name, input.priority, &staff.actor()).await?)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentInput {
    pub sku: String,
    /// Location code; the main location when absent.
    pub location: Option<String>,
    /// Units to add (receipt, found) or remove (damaged, counted short); never 0.
    pub delta: i64,
    /// Why, in words: kept in the ledger.
    pub reason: String,
    /// `receipt` or `adjustment` (default).
    pub kind: Option<String>,
}

/// Receives or corrects stock; every change lands in the ledger.
#[utoipa::path(post, path = "/v1/admin/inventory/adjustments", tag = "admin-inventory", request_body = AdjustmentInput,
    responses((status = 201, body = StockLevel), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("staff_token" = ["inventory:write"])))]
pub async fn adjust(
    staff: Staff<perm::InventoryWrite>,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<AdjustmentInput>,
) -> ApiResult<(StatusCode, Json<StockLevel>)> {
    let mut errors = FieldErrors::new();
    if input.delta == 0 || input.delta.abs() > MAX_ADJUSTMENT {
        errors.push("delta", "out_of_range", format!("must be non-zero and at most {MAX_ADJUSTMENT} either way"));
    }
    let reason = errors.check("reason", required_text(&input.reason, 200));
    let kind = input.kind.as_deref().unwrap_or("adjustment");
    if !matches!(kind, "receipt" | "adjustment") {
        errors.push("kind", "invalid", "kind is receipt or adjustment");
    }
    if kind == "receipt" && input.delta < 0 {
        errors.push("delta", "out_of_range", "a receipt adds stock");
    }
    let Some(reason) = reason.filter(|_| errors.is_empty()) else { return Err(ApiError::Validation(errors.into_vec())) };
    let level =
        state.store.adjust_stock(input.sku.trim(), input.location.as_deref(), input.delta, kind, &reason, &staff.actor()).await?;
    Ok((StatusCode::CREATED, Json(level)))
}

/// On hand, reserved and available for a SKU, in total and per location.
#[utoipa::path(get, path = "/v1/admin/inventory/{sku}", tag = "admin-inventory", params(("sku" = String, Path)),
    responses((status = 200, body = StockLevel), (status = 404, body = Problem)), security(("staff_token" = ["inventory:read"])))]
pub async fn level(
    _staff: Staff<perm::InventoryRead>,
    State(state): State<AppState>,
    Path(sku): Path<String>,
) -> ApiResult<Json<StockLevel>> {
    Ok(Json(state.store.stock_level(&sku).await?.ok_or(ApiError::NotFound("sku"))?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdInput {
    /// Alert when available stock is at or below this; `null` turns the alert off.
    pub low_stock_threshold: Option<i64>,
}

/// Sets a SKU's low-stock threshold.
#[utoipa::path(patch, path = "/v1/admin/inventory/{sku}", tag = "admin-inventory", params(("sku" = String, Path)),
    request_body = ThresholdInput, responses((status = 200, body = StockLevel), (status = 422, body = Problem)),
    security(("staff_token" = ["inventory:write"])))]
pub async fn set_threshold(
    _staff: Staff<perm::InventoryWrite>,
    State(state): State<AppState>,
    Path(sku): Path<String>,
    ApiJson(input): ApiJson<ThresholdInput>,
) -> ApiResult<Json<StockLevel>> {
    if input.low_stock_threshold.is_some_and(|t| !(0..=MAX_ADJUSTMENT).contains(&t)) {
        return Err(ApiError::invalid_field("low_stock_threshold", "out_of_range", "must be between 0 and 1000000"));
    }
    Ok(Json(state.store.set_low_stock_threshold(&sku, input.low_stock_threshold).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LowStockList {
    pub items: Vec<LowStock>,
}

/// SKUs at or below their threshold.
#[utoipa::path(get, path = "/v1/admin/inventory/low-stock", tag = "admin-inventory",
    responses((status = 200, body = LowStockList)), security(("staff_token" = ["inventory:read"])))]
pub async fn low_stock(_staff: Staff<perm::InventoryRead>, State(state): State<AppState>) -> ApiResult<Json<LowStockList>> {
    Ok(Json(LowStockList { items: state.store.low_stock().await? }))
}

/// Checks every stock level against the sum of its ledger movements.
#[utoipa::path(get, path = "/v1/admin/inventory/reconciliation", tag = "admin-inventory",
    responses((status = 200, body = Reconciliation)), security(("staff_token" = ["inventory:read"])))]
pub async fn reconcile(_staff: Staff<perm::InventoryRead>, State(state): State<AppState>) -> ApiResult<Json<Reconciliation>> {
    Ok(Json(state.store.reconcile_stock().await?))
}
