//! Incoming payment webhooks. The signature and its timestamp are checked first;
//! the event is then stored in the inbox and applied in one transaction, so a
//! redelivery (or a replay) changes nothing. Both providers' events go through
//! `ops::payments::apply_payment_event`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;

use super::AppState;
use crate::domain::signature::{self, SignatureError};
use crate::error::{ApiError, ApiResult, Problem};
use crate::ops::payments::{EventResult, PaymentEvent, PaymentOutcome, apply_payment_event};
use crate::payments::stripe::{self, StripeEvent, WebhookEvent};
use crate::payments::test_provider::{self, TestEvent};
use crate::store::audit::Actor;
use crate::store::refunds::Settlement;

/// How far a webhook's signed timestamp may be from now.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookAnswer {
    /// `applied`, `duplicate` (seen before), `refund_required` (money for an order
    /// that had expired or failed: recorded and announced for a refund) or `ignored`.
    pub status: &'static str,
}

fn verify(secret: &[u8], headers: &HeaderMap, header_name: &str, body: &[u8]) -> ApiResult<()> {
    let header = headers.get(header_name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    signature::verify(secret, header, body, now, TOLERANCE_SECS).map_err(|e| match e {
        SignatureError::Malformed | SignatureError::Mismatch => ApiError::bad_request("invalid_signature", e.to_string()),
        SignatureError::Stale => ApiError::bad_request("stale_signature", e.to_string()),
    })
}

/// Events of the built-in `test` provider, signed with `Mercato-Signature`.
#[utoipa::path(post, path = "/v1/payments/webhooks/test", tag = "payments", request_body = TestEvent,
    responses((status = 200, body = WebhookAnswer), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn test_webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Json<WebhookAnswer>> {
    if !state.shop.test_payments {
        return Err(ApiError::NotFound("route"));
    }
    verify(&state.shop.test_payment_secret, &headers, test_provider::SIGNATURE_HEADER, &body)?;
    let event: TestEvent = super::extract::parse_json(&body)?;
    let outcome = match event.kind.as_str() {
        "payment.succeeded" => PaymentOutcome::Succeeded,
        "payment.failed" => PaymentOutcome::Failed,
        other => {
            return Err(ApiError::bad_field("unknown_event_type", "type", format!("events of type `{other}` are not handled")));
        }
    };
    let payload = String::from_utf8_lossy(&body);
    let result = apply_payment_event(
        &state.store,
        PaymentEvent {
            provider: test_provider::NAME,
            event_id: &event.id,
            event_type: &event.kind,
            outcome,
            reference: &event.data.reference,
            order_hint: None,
            payload: &payload,
        },
    )
    .await?;
    if result == EventResult::UnknownPayment {
        return Err(ApiError::NotFound("payment"));
    }
    Ok(Json(WebhookAnswer { status: result.as_str() }))
}

/// Stripe's events, signed with `Stripe-Signature` by the endpoint's secret
/// (`STRIPE_WEBHOOK_SECRET`). Stripe redelivers anything not answered 2xx, so
/// every verified event is answered 200, `ignored` when it needs nothing;
/// 404 when Stripe is not configured.
#[utoipa::path(post, path = "/v1/payments/webhooks/stripe", tag = "payments", request_body = StripeEvent,
    params(("Stripe-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">`")),
    responses((status = 200, body = WebhookAnswer), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn stripe_webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Json<WebhookAnswer>> {
    let Some(secret) = &state.shop.stripe_webhook_secret else {
        return Err(ApiError::NotFound("route"));
    };
    verify(secret.expose().as_bytes(), &headers, stripe::SIGNATURE_HEADER, &body)?;
    let event: StripeEvent = super::extract::parse_json(&body)?;
    let meaning = event.meaning().map_err(|e| ApiError::bad_field("invalid_event", "data.object", e.to_string()))?;
    let payload = String::from_utf8_lossy(&body);
    match meaning {
        WebhookEvent::Payment { reference, order_id, succeeded } => {
            let result = apply_payment_event(
                &state.store,
                PaymentEvent {
                    provider: stripe::NAME,
                    event_id: &event.id,
                    event_type: &event.kind,
                    outcome: if succeeded { PaymentOutcome::Succeeded } else { PaymentOutcome::Failed },
                    reference: &reference,
                    order_hint: order_id,
                    payload: &payload,
                },
            )
            .await?;
            if result == EventResult::UnknownPayment {
                // Not one of ours (another integration on the same Stripe account):
                // a 404 would only make Stripe redeliver it for days.
                tracing::warn!(event = %event.id, payment.reference = %reference, "stripe event for an unknown payment ignored");
            }
            Ok(Json(WebhookAnswer { status: result.as_str() }))
        }
        WebhookEvent::ChargeRefunded(refunded) => {
            let (reference, amount) = match (refunded.latest_refund, refunded.payment_intent) {
                (Some(refund), _) => (RefundReference::Refund(refund.id), refund.amount),
                (None, Some(payment)) => (RefundReference::Payment(payment), refunded.amount_refunded),
                (None, None) => (RefundReference::Payment(refunded.charge), refunded.amount_refunded),
            };
            apply_refund_event(&state, stripe::NAME, reference, amount, &event.id).await.map(Json)
        }
        WebhookEvent::RefundUpdated(r) => {
            let settlement = match r.status.as_str() {
                "succeeded" => Settlement::Succeeded { reference: r.id.clone() },
                "failed" | "canceled" => Settlement::Failed { reason: r.failure_reason.clone().unwrap_or(r.status.clone()) },
                _ => return Ok(Json(WebhookAnswer { status: "ignored" })),
            };
            let refund_id = match r.refund_id {
                Some(id) => Some(id),
                None => state.store.refund_by_ref(stripe::NAME, &r.id).await?,
            };
            let Some(refund_id) = refund_id else {
                tracing::warn!(refund.reference = %r.id, event = %event.id, "refund event for a refund this shop did not make; ignored");
                return Ok(Json(WebhookAnswer { status: "ignored" }));
            };
            settle_from_provider(&state, refund_id, settlement, &event.id).await.map(Json)
        }
        WebhookEvent::Other => Ok(Json(WebhookAnswer { status: "ignored" })),
    }
}

/// How a provider names the refund an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundReference {
    /// The provider's refund reference (Stripe `re_...`), as `refund` returned it.
    Refund(String),
    /// Only the payment is known (Stripe `pi_...`, or a charge `ch_...` without one);
    /// the amount is then the total refunded so far.
    Payment(String),
}

/// A provider says money went back. A refund this shop started (known by the
/// provider's refund reference) is settled `succeeded` — once: settling is a
/// compare-and-set on `pending`, so a redelivery is a `duplicate`. Refunds made
/// outside the shop (the provider's dashboard) are logged and ignored: the
/// shop's books only hold refunds it made.
pub async fn apply_refund_event(
    state: &AppState,
    provider: &str,
    reference: RefundReference,
    amount: i64,
    event_id: &str,
) -> ApiResult<WebhookAnswer> {
    let refund_id = match &reference {
        RefundReference::Refund(r) => state.store.refund_by_ref(provider, r).await?,
        RefundReference::Payment(_) => None,
    };
    let Some(refund_id) = refund_id else {
        tracing::warn!(
            provider,
            ?reference,
            amount,
            event = event_id,
            "refund event for a refund this shop did not make; ignored"
        );
        return Ok(WebhookAnswer { status: "ignored" });
    };
    let RefundReference::Refund(reference) = reference else { unreachable!("only refund references are looked up") };
    settle_from_provider(state, refund_id, Settlement::Succeeded { reference }, event_id).await
}

/// Settles one of the shop's refunds as the provider reports it; a refund no
/// longer pending is a `duplicate` (settling is a compare-and-set on `pending`).
async fn settle_from_provider(
    state: &AppState,
    refund_id: uuid::Uuid,
    settlement: Settlement,
    event_id: &str,
) -> ApiResult<WebhookAnswer> {
    let Some(ticket) = state.store.refund_ticket(refund_id).await? else { return Ok(WebhookAnswer { status: "ignored" }) };
    if ticket.refund.provider != stripe::NAME {
        tracing::warn!(refund.id = %refund_id, event = event_id, "a stripe event names a refund made through another provider; ignored");
        return Ok(WebhookAnswer { status: "ignored" });
    }
    if ticket.refund.status != "pending" {
        if ticket.refund.status == "succeeded" && matches!(settlement, Settlement::Failed { .. }) {
            // The books say the money went back; the provider now says it did not.
            tracing::error!(refund.id = %refund_id, order.id = %ticket.refund.order_id, event = event_id, "a refund recorded as succeeded failed at the provider; check it");
            metrics::counter!("refunds_reversed_total").increment(1);
        }
        return Ok(WebhookAnswer { status: "duplicate" });
    }
    let actor = Actor { kind: "provider", id: None, request_id: None };
    let settled = state.store.settle_refund(refund_id, &settlement, &actor).await.map_err(crate::ops::refunds::refund_error)?;
    tracing::info!(refund.id = %settled.id, order.id = %settled.order_id, status = %settled.status, event = event_id, "refund settled by the provider");
    Ok(WebhookAnswer { status: "applied" })
}
