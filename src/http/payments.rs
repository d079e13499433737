//! Incoming payment webhooks. The signature and its timestamp are checked first;
//! the event is then stored in the inbox and applied in one transaction, so a
//! redelivery (or a replay) changes nothing.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;

use super::AppState;
use crate::domain::order_status::OrderEvent;
use crate::domain::signature::{self, SignatureError};
use crate::error::{ApiError, ApiResult, Problem};
use crate::payments::test_provider::{NAME, SIGNATURE_HEADER, TestEvent};
use crate::store::audit::Actor;
use crate::store::orders::{Applied, InboxEntry, OrderError};

/// How far a webhook's signed timestamp may be from now.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookAnswer {
    /// `applied`, `duplicate` (seen before), `refund_required` (money for an order
    /// that had expired or failed: recorded and announced for a refund) or `ignored`.
    pub status: &'static str,
}

/// Events of the built-in `test` provider, signed with `Mercato-Signature`.
#[utoipa::path(post, path = "/v1/payments/webhooks/test", tag = "payments", request_body = TestEvent,
    responses((status = 200, body = WebhookAnswer), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn test_webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Json<WebhookAnswer>> {
    let header = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    signature::verify(&state.shop.test_payment_secret, header, &body, now, TOLERANCE_SECS).map_err(|e| match e {
        SignatureError::Malformed | SignatureError::Mismatch => ApiError::bad_request("invalid_signature", e.to_string()),
        SignatureError::Stale => ApiError::bad_request("stale_signature", e.to_string()),
    })?;
    let event: TestEvent = super::extract::parse_json(&body)?;
    let transition = match event.kind.as_str() {
        "payment.succeeded" => OrderEvent::PaymentSucceeded,
        "payment.failed" => OrderEvent::PaymentFailed,
        other => {
            return Err(ApiError::bad_field("unknown_event_type", "type", format!("events of type `{other}` are not handled")));
        }
    };
    let order_id = state.store.payment_by_ref(NAME, &event.data.reference).await?.ok_or(ApiError::NotFound("payment"))?;
    let payload = String::from_utf8_lossy(&body);
    let inbox = InboxEntry { provider: NAME, event_id: &event.id, event_type: &event.kind, payload: &payload };
    let actor = Actor { kind: "provider", id: None, request_id: None };
    match state.store.apply_provider_event(order_id, transition, &actor, inbox).await {
        Ok(Applied::Done(_)) => {
            let status = if transition == OrderEvent::PaymentSucceeded { "succeeded" } else { "failed" };
            state.store.set_payment_status(order_id, status, None).await?;
            Ok(Json(WebhookAnswer { status: "applied" }))
        }
        Ok(Applied::Duplicate) => Ok(Json(WebhookAnswer { status: "duplicate" })),
        Err(OrderError::Transition(t)) => {
            // E.g. a success after the reservation expired: the order must not come
            // back to life, but the money must not be forgotten either.
            // Money for an order that expired or failed must go back; another success
            // for a paid order is just a repeat.
            let succeeded =
                transition == OrderEvent::PaymentSucceeded && t.from != crate::domain::order_status::OrderStatus::Paid;
            if !state.store.record_late_payment_event(order_id, succeeded, inbox).await? {
                return Ok(Json(WebhookAnswer { status: "duplicate" }));
            }
            tracing::warn!(order.id = %order_id, error = %t, event = %event.id, refund_required = succeeded, "payment event for an order that moved on");
            Ok(Json(WebhookAnswer { status: if succeeded { "refund_required" } else { "ignored" } }))
        }
        Err(OrderError::Store(e)) => Err(e.into()),
    }
}
