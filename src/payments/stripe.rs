//! Stripe, through its PaymentIntents and Refunds APIs. A payment is one
//! PaymentIntent created and confirmed in one call with the storefront's
//! PaymentMethod id (card data never reaches us); the idempotency key derived
//! from the order makes Stripe answer a retry with the first call's result.
//!
//! Every answer is mapped to what it means for the order: money taken, held
//! (with capture on shipment: authorized now, captured when the order ships,
//! released if it is cancelled first), refused, still in progress (settled later
//! by webhook), or unknown (`Unavailable`: retry with the same key).

use std::time::Duration;

use serde::Deserialize;

use super::{
    HoldAction, HoldOutcome, HoldRequest, PaymentProvider, PaymentRequest, PaymentStart, ProviderError, ProviderFuture,
    RefundOutcome, RefundRequest, Started,
};
use crate::config::Secret;

pub const NAME: &str = "stripe";
pub const SIGNATURE_HEADER: &str = "stripe-signature";
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

pub struct StripeProvider {
    client: reqwest::Client,
    base: String,
    secret_key: Secret,
    /// Authorize at checkout and capture when the order ships, instead of at once.
    capture_on_shipment: bool,
}

impl StripeProvider {
    pub fn new(secret_key: Secret, base: &str, capture_on_shipment: bool) -> anyhow::Result<Self> {
        // The guard around every provider owns the overall timeout; this only stops
        // a dead connection attempt from using all of it.
        let client = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build()?;
        Ok(Self { client, base: base.trim_end_matches('/').to_owned(), secret_key, capture_on_shipment })
    }

    async fn post(&self, path: &str, idempotency_key: &str, form: &[(&str, String)]) -> Result<(u16, String), ProviderError> {
        self.send(self.client.post(format!("{}{path}", self.base)).header("idempotency-key", idempotency_key).form(form)).await
    }

    async fn get(&self, path: &str) -> Result<(u16, String), ProviderError> {
        self.send(self.client.get(format!("{}{path}", self.base))).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, String), ProviderError> {
        let response = request
            .bearer_auth(self.secret_key.expose())
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("stripe not reached: {}", transport_failure(&e))))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("stripe answer cut off: {}", transport_failure(&e))))?;
        Ok((status, body))
    }
}

/// What went wrong on the wire, in a word (reqwest's own messages are long).
fn transport_failure(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    kind.to_owned()
}

impl PaymentProvider for StripeProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn start<'a>(&'a self, request: &'a PaymentRequest) -> Started<'a> {
        Box::pin(async move {
            let mut form = vec![
                ("amount", request.amount.to_string()),
                ("currency", request.currency.to_ascii_lowercase()),
                ("payment_method", request.token.clone()),
                ("confirm", "true".to_owned()),
                // Confirmed by the server with no page to come back to, so only
                // methods that need no redirect may be offered; without these two
                // Stripe asks for a `return_url`.
                ("automatic_payment_methods[enabled]", "true".to_owned()),
                ("automatic_payment_methods[allow_redirects]", "never".to_owned()),
                ("metadata[order_id]", request.order_id.to_string()),
            ];
            if self.capture_on_shipment {
                form.push(("capture_method", "manual".to_owned()));
            }
            let (status, body) = self.post("/v1/payment_intents", &request.idempotency_key(), &form).await?;
            map_start(status, &body)
        })
    }

    fn refund<'a>(&'a self, request: &'a RefundRequest) -> ProviderFuture<'a, RefundOutcome> {
        Box::pin(async move {
            let form = [
                ("payment_intent", request.payment_reference.clone()),
                ("amount", request.amount.to_string()),
                ("metadata[refund_id]", request.refund_id.to_string()),
            ];
            let (status, body) = self.post("/v1/refunds", &request.idempotency_key(), &form).await?;
            map_refund(status, &body)
        })
    }

    fn finish_hold<'a>(&'a self, request: &'a HoldRequest) -> ProviderFuture<'a, HoldOutcome> {
        Box::pin(async move {
            let (path, form) = match request.action {
                HoldAction::Capture => ("capture", vec![("amount_to_capture", request.amount.to_string())]),
                HoldAction::Void => ("cancel", vec![("cancellation_reason", "requested_by_customer".to_owned())]),
            };
            let path = format!("/v1/payment_intents/{}/{path}", request.payment_reference);
            let (status, body) = self.post(&path, &request.idempotency_key(), &form).await?;
            let outcome = map_hold(request.action, status, &body)?;
            // Stripe refuses to capture what is already captured (an earlier call
            // whose answer was lost, past its key's memory): look before calling
            // it refused.
            if request.action == HoldAction::Capture
                && matches!(&outcome, HoldOutcome::Refused { reason } if reason == "payment_intent_unexpected_state")
            {
                let (status, body) = self.get(&format!("/v1/payment_intents/{}", request.payment_reference)).await?;
                if (200..300).contains(&status) && parse::<PaymentIntent>(&body)?.status == IntentStatus::Succeeded {
                    return Ok(HoldOutcome::Done);
                }
            }
            Ok(outcome)
        })
    }
}

/// What an answer to a capture or a cancel of a held PaymentIntent means.
fn map_hold(action: HoldAction, status: u16, body: &str) -> Result<HoldOutcome, ProviderError> {
    if (200..300).contains(&status) {
        let intent: PaymentIntent = parse(body)?;
        return match (action, intent.status) {
            (HoldAction::Capture, IntentStatus::Succeeded) | (HoldAction::Void, IntentStatus::Canceled) => Ok(HoldOutcome::Done),
            (_, other) => {
                tracing::error!(payment.reference = %intent.id, status = ?other, ?action, "stripe answered a held payment in an unexpected status");
                Err(ProviderError::Unavailable("unexpected payment intent status".into()))
            }
        };
    }
    let error = error_of(status, body)?;
    match status {
        // Expired, already released, unknown...: final.
        400 | 402 | 404 => Ok(HoldOutcome::Refused { reason: error.code.unwrap_or_else(|| "refused".into()) }),
        _ => Err(ProviderError::Unavailable(format!("stripe answered {status}"))),
    }
}

#[derive(Debug, Deserialize)]
struct PaymentIntent {
    id: String,
    status: IntentStatus,
    last_payment_error: Option<StripeError>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum IntentStatus {
    Succeeded,
    Processing,
    RequiresAction,
    RequiresCapture,
    RequiresPaymentMethod,
    RequiresConfirmation,
    Canceled,
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: StripeError,
}

#[derive(Debug, Deserialize)]
struct StripeError {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    decline_code: Option<String>,
    param: Option<String>,
    payment_intent: Option<IntentRef>,
}

#[derive(Debug, Deserialize)]
struct IntentRef {
    id: String,
}

#[derive(Debug, Deserialize)]
struct Refund {
    id: String,
    status: RefundStatus,
    failure_reason: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RefundStatus {
    Succeeded,
    Pending,
    RequiresAction,
    Failed,
    Canceled,
    #[serde(other)]
    Other,
}

impl StripeError {
    /// The most specific reason Stripe gives: the issuer's decline code, else the error code.
    fn reason(&self) -> String {
        self.decline_code.clone().or_else(|| self.code.clone()).unwrap_or_else(|| "declined".into())
    }

    fn is(&self, kind: &str) -> bool {
        self.kind.as_deref() == Some(kind)
    }
}

/// What an answer to `POST /v1/payment_intents` means for the order.
fn map_start(status: u16, body: &str) -> Result<PaymentStart, ProviderError> {
    if (200..300).contains(&status) {
        let intent: PaymentIntent = parse(body)?;
        let reference = intent.id;
        return match intent.status {
            IntentStatus::Succeeded => Ok(PaymentStart::Succeeded { reference }),
            IntentStatus::RequiresCapture => Ok(PaymentStart::Authorized { reference }),
            IntentStatus::Processing | IntentStatus::RequiresAction => Ok(PaymentStart::Pending { reference }),
            IntentStatus::RequiresPaymentMethod => {
                let reason = intent.last_payment_error.map(|e| e.reason()).unwrap_or_else(|| "declined".into());
                Ok(PaymentStart::Declined { reference, reason })
            }
            IntentStatus::Canceled => Ok(PaymentStart::Declined { reference, reason: "canceled".into() }),
            // Confirmation was asked for; anything else is an answer we cannot read.
            IntentStatus::RequiresConfirmation | IntentStatus::Other => {
                tracing::error!(payment.reference = %reference, "stripe answered a payment intent in an unexpected status");
                Err(ProviderError::Unavailable("unexpected payment intent status".into()))
            }
        };
    }
    let error = error_of(status, body)?;
    match status {
        402 => Ok(PaymentStart::Declined {
            reference: error.payment_intent.as_ref().map(|p| p.id.clone()).unwrap_or_default(),
            reason: error.reason(),
        }),
        400 | 404 if error.is("idempotency_error") => {
            tracing::error!(code = ?error.code, "stripe refused the idempotency key: the same key was sent with other parameters");
            Err(ProviderError::Unavailable("idempotency key conflict".into()))
        }
        400 | 404 if error.code.as_deref() == Some("resource_missing") || error.param.as_deref() == Some("payment_method") => {
            Err(ProviderError::InvalidToken)
        }
        // Stripe refused the request itself (an amount below its minimum, an unsupported
        // currency...): retrying cannot help, so the payment is refused, and loudly,
        // because the shop's setup is at fault rather than the shopper.
        400 if error.is("invalid_request_error") || error.is("card_error") => {
            tracing::error!(code = ?error.code, param = ?error.param, "stripe refused the payment request");
            Ok(PaymentStart::Declined {
                reference: error.payment_intent.as_ref().map(|p| p.id.clone()).unwrap_or_default(),
                reason: error.code.clone().unwrap_or_else(|| "invalid_request".into()),
            })
        }
        _ => Err(ProviderError::Unavailable(format!("stripe answered {status}"))),
    }
}

/// What an answer to `POST /v1/refunds` means.
fn map_refund(status: u16, body: &str) -> Result<RefundOutcome, ProviderError> {
    if (200..300).contains(&status) {
        let refund: Refund = parse(body)?;
        return match refund.status {
            RefundStatus::Succeeded => Ok(RefundOutcome::Succeeded { reference: refund.id }),
            RefundStatus::Pending | RefundStatus::RequiresAction => Ok(RefundOutcome::Pending { reference: refund.id }),
            RefundStatus::Failed | RefundStatus::Canceled => Ok(RefundOutcome::Failed {
                reason: refund.failure_reason.unwrap_or_else(|| format!("{:?}", refund.status).to_ascii_lowercase()),
            }),
            RefundStatus::Other => {
                tracing::error!(refund.reference = %refund.id, "stripe answered a refund in an unexpected status");
                Err(ProviderError::Unavailable("unexpected refund status".into()))
            }
        };
    }
    let error = error_of(status, body)?;
    match status {
        400 | 404 if error.is("idempotency_error") => {
            tracing::error!("stripe refused the refund's idempotency key: the same key was sent with other parameters");
            Err(ProviderError::Unavailable("idempotency key conflict".into()))
        }
        // Already refunded, more than is left, unknown payment...: final.
        400 | 402 | 404 => Ok(RefundOutcome::Failed { reason: error.code.unwrap_or_else(|| "refused".into()) }),
        _ => Err(ProviderError::Unavailable(format!("stripe answered {status}"))),
    }
}

/// The error of a non-2xx answer. Authentication failures are the operator's to
/// fix, so they are logged as errors (naming no key); every status whose outcome
/// is unknown or may change on a retry is `Unavailable`.
fn error_of(status: u16, body: &str) -> Result<StripeError, ProviderError> {
    match status {
        401 | 403 => {
            tracing::error!(status, "stripe refused the API key: check STRIPE_SECRET_KEY and its permissions");
            Err(ProviderError::Unavailable(format!("stripe refused the API key ({status})")))
        }
        // 409: a concurrent request with the same key; 429: rate limited; 5xx: Stripe's
        // trouble. Stripe stores a 500 it answered under the key and replays it to
        // retries for 24 h; a payment that went through all the same is then settled
        // by its webhook, which finds the order by `metadata[order_id]`.
        409 | 429 | 500.. => Err(ProviderError::Unavailable(format!("stripe answered {status}"))),
        _ => Ok(parse::<ErrorEnvelope>(body)?.error),
    }
}

fn parse<'a, T: Deserialize<'a>>(body: &'a str) -> Result<T, ProviderError> {
    serde_json::from_str(body).map_err(|e| ProviderError::Unavailable(format!("unreadable stripe answer: {e}")))
}

/// A Stripe event as delivered to the webhook, with the fields Mercato reads.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct StripeEvent {
    /// Unique per event (`evt_...`); redeliveries repeat it.
    pub id: String,
    /// `payment_intent.succeeded`, `payment_intent.payment_failed` and `charge.refunded`
    /// are handled; every other type is acknowledged and ignored.
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    pub data: StripeEventData,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct StripeEventData {
    /// What the event is about: a PaymentIntent (`id`, `metadata.order_id`) or a Charge.
    #[schema(value_type = Object)]
    pub object: serde_json::Value,
}

/// What an event means to the shop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    Payment {
        /// The PaymentIntent id: the reference `start` returned.
        reference: String,
        /// `metadata[order_id]`, sent with the start.
        order_id: Option<uuid::Uuid>,
        succeeded: bool,
    },
    ChargeRefunded(ChargeRefunded),
    /// `refund.updated` / `charge.refund.updated`: a refund's own object, the way
    /// a refund Stripe first answered `pending` reaches its end (current API
    /// versions no longer list refunds on the charge of `charge.refunded`).
    RefundUpdated(RefundUpdated),
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundUpdated {
    /// `re_...`.
    pub id: String,
    pub amount: i64,
    /// `succeeded`, `failed`, `canceled`, `pending`, `requires_action`.
    pub status: String,
    /// `metadata[refund_id]`: our refund, as sent with the request.
    pub refund_id: Option<uuid::Uuid>,
    pub failure_reason: Option<String>,
}

#[derive(Deserialize)]
struct RefundObject {
    id: String,
    amount: i64,
    status: String,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
    failure_reason: Option<String>,
}

/// A `charge.refunded` event: some or all of a charge went back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRefunded {
    pub charge: String,
    /// The PaymentIntent the charge belongs to: the payment's reference.
    pub payment_intent: Option<String>,
    /// Refunded so far, over every refund of the charge.
    pub amount_refunded: i64,
    /// The newest refund, when the event carries the charge's refund list.
    pub latest_refund: Option<RefundSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RefundSummary {
    /// `re_...`: the reference `refund` returned.
    pub id: String,
    pub amount: i64,
}

#[derive(Deserialize)]
struct IntentObject {
    id: String,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
}

#[derive(Deserialize)]
struct ChargeObject {
    id: String,
    payment_intent: Option<String>,
    amount_refunded: i64,
    refunds: Option<RefundList>,
}

#[derive(Deserialize)]
struct RefundList {
    #[serde(default)]
    data: Vec<RefundSummary>,
}

impl StripeEvent {
    pub fn meaning(&self) -> Result<WebhookEvent, serde_json::Error> {
        let object = &self.data.object;
        Ok(match self.kind.as_str() {
            "payment_intent.succeeded" | "payment_intent.payment_failed" => {
                let intent = IntentObject::deserialize(object)?;
                WebhookEvent::Payment {
                    order_id: intent.metadata.get("order_id").and_then(|id| id.parse().ok()),
                    reference: intent.id,
                    succeeded: self.kind == "payment_intent.succeeded",
                }
            }
            "charge.refunded" => {
                let charge = ChargeObject::deserialize(object)?;
                WebhookEvent::ChargeRefunded(ChargeRefunded {
                    charge: charge.id,
                    payment_intent: charge.payment_intent,
                    amount_refunded: charge.amount_refunded,
                    // Stripe lists refunds newest first.
                    latest_refund: charge.refunds.and_then(|r| r.data.into_iter().next()),
                })
            }
            "refund.updated" | "charge.refund.updated" => {
                let refund = RefundObject::deserialize(object)?;
                WebhookEvent::RefundUpdated(RefundUpdated {
                    refund_id: refund.metadata.get("refund_id").and_then(|id| id.parse().ok()),
                    id: refund.id,
                    amount: refund.amount,
                    status: refund.status,
                    failure_reason: refund.failure_reason,
                })
            }
            _ => WebhookEvent::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(status: u16, body: &str) -> Result<PaymentStart, ProviderError> {
        map_start(status, body)
    }

    fn unavailable<T: std::fmt::Debug>(r: Result<T, ProviderError>) -> bool {
        matches!(r, Err(ProviderError::Unavailable(_)))
    }

    #[test]
    fn captures_and_releases_of_holds_map_to_outcomes() {
        let intent = |status: &str| format!(r#"{{"id":"pi_1","object":"payment_intent","status":"{status}"}}"#);
        assert_eq!(map_hold(HoldAction::Capture, 200, &intent("succeeded")).unwrap(), HoldOutcome::Done);
        assert_eq!(map_hold(HoldAction::Void, 200, &intent("canceled")).unwrap(), HoldOutcome::Done);
        assert!(unavailable(map_hold(HoldAction::Capture, 200, &intent("canceled"))));
        let expired = r#"{"error":{"type":"invalid_request_error","code":"charge_expired_for_capture"}}"#;
        assert_eq!(
            map_hold(HoldAction::Capture, 400, expired).unwrap(),
            HoldOutcome::Refused { reason: "charge_expired_for_capture".into() }
        );
        assert!(unavailable(map_hold(HoldAction::Void, 503, "{}")));
    }

    #[test]
    fn intent_statuses_map_to_payment_outcomes() {
        let intent = |status: &str| format!(r#"{{"id":"pi_1","object":"payment_intent","status":"{status}","amount":100}}"#);
        assert_eq!(started(200, &intent("succeeded")).unwrap(), PaymentStart::Succeeded { reference: "pi_1".into() });
        for pending in ["processing", "requires_action"] {
            assert_eq!(started(200, &intent(pending)).unwrap(), PaymentStart::Pending { reference: "pi_1".into() }, "{pending}");
        }
        assert_eq!(started(200, &intent("requires_capture")).unwrap(), PaymentStart::Authorized { reference: "pi_1".into() });
        assert_eq!(
            started(200, &intent("canceled")).unwrap(),
            PaymentStart::Declined { reference: "pi_1".into(), reason: "canceled".into() }
        );
        assert!(unavailable(started(200, &intent("requires_confirmation"))));
        assert!(unavailable(started(200, &intent("something_new"))));
    }

    #[test]
    fn a_failed_confirmation_is_a_decline_with_the_most_specific_reason() {
        let body = r#"{"id":"pi_2","status":"requires_payment_method",
            "last_payment_error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds"}}"#;
        assert_eq!(
            started(200, body).unwrap(),
            PaymentStart::Declined { reference: "pi_2".into(), reason: "insufficient_funds".into() }
        );
        let body = r#"{"id":"pi_3","status":"requires_payment_method","last_payment_error":{"type":"card_error","code":"expired_card"}}"#;
        assert_eq!(
            started(200, body).unwrap(),
            PaymentStart::Declined { reference: "pi_3".into(), reason: "expired_card".into() }
        );
    }

    #[test]
    fn card_errors_are_declines_that_keep_the_intent_reference() {
        let body = r#"{"error":{"type":"card_error","code":"card_declined","decline_code":"generic_decline",
            "message":"Your card was declined.","payment_intent":{"id":"pi_4","status":"requires_payment_method"}}}"#;
        assert_eq!(
            started(402, body).unwrap(),
            PaymentStart::Declined { reference: "pi_4".into(), reason: "generic_decline".into() }
        );
        let bare = r#"{"error":{"type":"card_error","code":"incorrect_cvc"}}"#;
        assert_eq!(
            started(402, bare).unwrap(),
            PaymentStart::Declined { reference: String::new(), reason: "incorrect_cvc".into() }
        );
    }

    #[test]
    fn an_unknown_payment_method_is_an_invalid_token() {
        let missing = r#"{"error":{"type":"invalid_request_error","code":"resource_missing","param":"payment_method",
            "message":"No such PaymentMethod: 'pm_nope'"}}"#;
        assert!(matches!(started(400, missing), Err(ProviderError::InvalidToken)));
        let other = r#"{"error":{"type":"invalid_request_error","param":"payment_method","message":"bad"}}"#;
        assert!(matches!(started(400, other), Err(ProviderError::InvalidToken)));
        let small = r#"{"error":{"type":"invalid_request_error","code":"amount_too_small","param":"amount"}}"#;
        assert_eq!(
            started(400, small).unwrap(),
            PaymentStart::Declined { reference: String::new(), reason: "amount_too_small".into() }
        );
    }

    #[test]
    fn answers_whose_outcome_is_unknown_are_unavailable() {
        let err = r#"{"error":{"type":"api_error"}}"#;
        for status in [401, 403, 409, 429, 500, 502, 503] {
            assert!(unavailable(started(status, err)), "{status}");
            assert!(unavailable(map_refund(status, err)), "{status}");
        }
        assert!(unavailable(started(200, "<html>gateway</html>")));
        assert!(unavailable(started(402, "not json")));
        assert!(unavailable(started(200, r#"{"status":"succeeded"}"#)), "no id");
        let idem = r#"{"error":{"type":"idempotency_error","message":"Keys for idempotent requests can only be used with the same parameters"}}"#;
        assert!(unavailable(started(400, idem)));
        assert!(unavailable(map_refund(400, idem)));
    }

    fn event(kind: &str, object: serde_json::Value) -> StripeEvent {
        serde_json::from_value(serde_json::json!({"id": "evt_1", "type": kind, "created": 1, "data": {"object": object}}))
            .unwrap()
    }

    #[test]
    fn webhook_events_are_read_into_what_they_mean() {
        let order = uuid::Uuid::now_v7();
        let intent = serde_json::json!({"id": "pi_9", "object": "payment_intent", "metadata": {"order_id": order.to_string()}});
        assert_eq!(
            event("payment_intent.succeeded", intent.clone()).meaning().unwrap(),
            WebhookEvent::Payment { reference: "pi_9".into(), order_id: Some(order), succeeded: true }
        );
        assert_eq!(
            event("payment_intent.payment_failed", serde_json::json!({"id": "pi_9"})).meaning().unwrap(),
            WebhookEvent::Payment { reference: "pi_9".into(), order_id: None, succeeded: false }
        );
        let charge = serde_json::json!({"id": "ch_1", "payment_intent": "pi_9", "amount_refunded": 500,
            "refunds": {"object": "list", "data": [{"id": "re_2", "amount": 300}, {"id": "re_1", "amount": 200}]}});
        assert_eq!(
            event("charge.refunded", charge).meaning().unwrap(),
            WebhookEvent::ChargeRefunded(ChargeRefunded {
                charge: "ch_1".into(),
                payment_intent: Some("pi_9".into()),
                amount_refunded: 500,
                latest_refund: Some(RefundSummary { id: "re_2".into(), amount: 300 }),
            })
        );
        assert_eq!(event("customer.created", serde_json::json!({"id": "cus_1"})).meaning().unwrap(), WebhookEvent::Other);
        assert!(event("payment_intent.succeeded", serde_json::json!({"status": "succeeded"})).meaning().is_err());
    }

    #[test]
    fn refund_statuses_map_to_refund_outcomes() {
        let refund = |status: &str| format!(r#"{{"id":"re_1","object":"refund","status":"{status}","amount":100}}"#);
        assert_eq!(map_refund(200, &refund("succeeded")).unwrap(), RefundOutcome::Succeeded { reference: "re_1".into() });
        assert_eq!(map_refund(200, &refund("pending")).unwrap(), RefundOutcome::Pending { reference: "re_1".into() });
        assert_eq!(map_refund(200, &refund("requires_action")).unwrap(), RefundOutcome::Pending { reference: "re_1".into() });
        assert_eq!(map_refund(200, &refund("canceled")).unwrap(), RefundOutcome::Failed { reason: "canceled".into() });
        let failed = r#"{"id":"re_2","status":"failed","failure_reason":"expired_or_canceled_card"}"#;
        assert_eq!(map_refund(200, failed).unwrap(), RefundOutcome::Failed { reason: "expired_or_canceled_card".into() });
        let already = r#"{"error":{"type":"invalid_request_error","code":"charge_already_refunded"}}"#;
        assert_eq!(map_refund(400, already).unwrap(), RefundOutcome::Failed { reason: "charge_already_refunded".into() });
        assert!(unavailable(map_refund(200, "{")));
    }
}
