//! Outgoing webhook subscriptions for the shop's own systems (ERP, warehouse,
//! analytics). The signing secret is shown once, when the subscription is made.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::extract::{ApiJson, PathId, Staff, perm};
use crate::domain::signature;
use crate::domain::validation::FieldErrors;
use crate::error::{ApiError, ApiResult, Problem};
use crate::ops::events::event_types;
use crate::store::webhooks::Subscription;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionInput {
    /// Where events are POSTed (http or https).
    pub url: String,
    /// e.g. `["order.paid", "order.shipped"]`; `["*"]` for every type.
    pub event_types: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedSubscription {
    #[serde(flatten)]
    pub subscription: Subscription,
    /// Verifies `Mercato-Signature`; shown only now.
    pub secret: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SubscriptionList {
    pub items: Vec<Subscription>,
    /// Every event type that can be subscribed to.
    pub event_types: Vec<String>,
}

/// Subscribes a URL to event types. Each event is POSTed as JSON signed with
/// `Mercato-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, and
/// retried with backoff until the receiver answers 2xx.
#[utoipa::path(post, path = "/v1/admin/webhooks", tag = "admin-settings", request_body = SubscriptionInput,
    responses((status = 201, body = CreatedSubscription), (status = 422, body = Problem)),
    security(("staff_token" = ["settings:manage"])))]
pub async fn create_subscription(
    _staff: Staff<perm::SettingsManage>,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<SubscriptionInput>,
) -> ApiResult<(StatusCode, Json<CreatedSubscription>)> {
    let mut errors = FieldErrors::new();
    let url_ok = (input.url.starts_with("https://") || input.url.starts_with("http://")) && input.url.len() <= 2000;
    if !url_ok || reqwest::Url::parse(&input.url).is_err() {
        errors.push("url", "invalid_url", "an http(s) URL of at most 2000 characters");
    }
    let known = event_types();
    if input.event_types.is_empty() {
        errors.push("event_types", "required", "name at least one event type, or `*`");
    }
    for (i, t) in input.event_types.iter().enumerate() {
        if t != "*" && !known.contains(t) {
            errors.push(format!("event_types[{i}]"), "unknown_event_type", format!("`{t}` is not an event type"));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors.into_vec()));
    }
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let secret = format!("whsec_{}", signature::hex(&raw));
    let subscription = state.store.create_subscription(&input.url, &input.event_types, &secret).await?;
    Ok((StatusCode::CREATED, Json(CreatedSubscription { subscription, secret })))
}

#[utoipa::path(get, path = "/v1/admin/webhooks", tag = "admin-settings",
    responses((status = 200, body = SubscriptionList)), security(("staff_token" = ["settings:manage"])))]
pub async fn list_subscriptions(
    _staff: Staff<perm::SettingsManage>,
    State(state): State<AppState>,
) -> ApiResult<Json<SubscriptionList>> {
    Ok(Json(SubscriptionList { items: state.store.subscriptions().await?, event_types: event_types() }))
}

/// Ends a subscription; deliveries still queued for it are dropped.
#[utoipa::path(delete, path = "/v1/admin/webhooks/{id}", tag = "admin-settings", params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("staff_token" = ["settings:manage"])))]
pub async fn delete_subscription(
    _staff: Staff<perm::SettingsManage>,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    if state.store.delete_subscription(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("webhook subscription"))
    }
}
