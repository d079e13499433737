//! Staff sessions, staff accounts and the audit log.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use super::extract::{ApiJson, ApiQuery, PathId, Staff, perm};
use crate::domain::cursor;
use crate::error::{ApiError, ApiResult, Problem};
use crate::ops::sessions::{LoginInput, RefreshInput, TokenPair};
use crate::ops::staff::{self as ops, NewStaffInput, StaffPatchInput};
use crate::store::audit::{AuditEntry, AuditQuery};
use crate::store::staff::StaffMember;

use axum::Json;

/// Exchanges e-mail and password for an access token and a refresh token.
#[utoipa::path(
    post, path = "/v1/admin/auth/login", tag = "admin-auth", request_body = LoginInput,
    responses((status = 200, body = TokenPair), (status = 401, body = Problem), (status = 429, body = Problem))
)]
pub async fn login(State(state): State<AppState>, ApiJson(input): ApiJson<LoginInput>) -> ApiResult<Json<TokenPair>> {
    Ok(Json(ops::login(&state.store, &state.tokens, input).await?))
}

/// Exchanges a refresh token (once) for a new pair. Reusing a spent token revokes the session.
#[utoipa::path(
    post, path = "/v1/admin/auth/refresh", tag = "admin-auth", request_body = RefreshInput,
    responses((status = 200, body = TokenPair), (status = 401, body = Problem))
)]
pub async fn refresh(State(state): State<AppState>, ApiJson(input): ApiJson<RefreshInput>) -> ApiResult<Json<TokenPair>> {
    Ok(Json(ops::refresh(&state.store, &state.tokens, input).await?))
}

/// Ends the session the refresh token belongs to.
#[utoipa::path(
    post, path = "/v1/admin/auth/logout", tag = "admin-auth", request_body = RefreshInput,
    responses((status = 204))
)]
pub async fn logout(State(state): State<AppState>, ApiJson(input): ApiJson<RefreshInput>) -> ApiResult<StatusCode> {
    ops::logout(&state.store, input).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct StaffList {
    pub items: Vec<StaffMember>,
}

/// Every staff account.
#[utoipa::path(
    get, path = "/v1/admin/staff", tag = "admin-staff",
    responses((status = 200, body = StaffList), (status = 403, body = Problem)),
    security(("staff_token" = ["staff:manage"]))
)]
pub async fn list_staff(_staff: Staff<perm::StaffManage>, State(state): State<AppState>) -> ApiResult<Json<StaffList>> {
    Ok(Json(StaffList { items: state.store.list_staff().await? }))
}

/// Creates a staff account with a role.
#[utoipa::path(
    post, path = "/v1/admin/staff", tag = "admin-staff", request_body = NewStaffInput,
    responses((status = 201, body = StaffMember), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("staff_token" = ["staff:manage"]))
)]
pub async fn create_staff(
    staff: Staff<perm::StaffManage>,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<NewStaffInput>,
) -> ApiResult<(StatusCode, Json<StaffMember>)> {
    Ok((StatusCode::CREATED, Json(ops::create_staff(&state.store, input, &staff.actor()).await?)))
}

/// Changes a staff member's role or deactivates them; takes effect on their next request.
#[utoipa::path(
    patch, path = "/v1/admin/staff/{id}", tag = "admin-staff", params(("id" = Uuid, Path)), request_body = StaffPatchInput,
    responses((status = 200, body = StaffMember), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("staff_token" = ["staff:manage"]))
)]
pub async fn update_staff(
    staff: Staff<perm::StaffManage>,
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(input): ApiJson<StaffPatchInput>,
) -> ApiResult<Json<StaffMember>> {
    if id == staff.id {
        return Err(ApiError::conflict(
            "cannot_change_self",
            None,
            "staff cannot change their own role or deactivate themselves",
        ));
    }
    Ok(Json(state.store.update_staff(id, input.role, input.active, &staff.actor()).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// e.g. `product`, `category`, `staff`.
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub actor_id: Option<Uuid>,
    /// 1-200, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

/// Every admin write, newest first: who, what, when, before and after.
#[utoipa::path(
    get, path = "/v1/admin/audit-log", tag = "admin-staff", params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("staff_token" = ["audit:read"]))
)]
pub async fn audit_log(
    _staff: Staff<perm::AuditRead>,
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> ApiResult<Json<AuditPage>> {
    let limit = p.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_field("invalid_limit", "limit", "limit must be between 1 and 200"));
    }
    let before_id = p
        .cursor
        .as_deref()
        .map(|c| cursor::decode::<Uuid>("audit", c))
        .transpose()
        .map_err(|_| ApiError::bad_field("invalid_cursor", "cursor", "the cursor is not valid for this list"))?;
    let mut items = state
        .store
        .audit_log(&AuditQuery {
            entity_type: p.entity_type,
            entity_id: p.entity_id,
            actor_id: p.actor_id,
            before_id,
            limit: limit + 1,
        })
        .await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|e| cursor::encode("audit", &e.id))
    } else {
        None
    };
    Ok(Json(AuditPage { items, next_cursor }))
}
