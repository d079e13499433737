//! The built-in `test` provider: a simulated gateway that behaves like a real
//! one's test mode. `tok_ok` succeeds, `tok_decline` declines, `tok_async` is
//! accepted and confirmed later by a signed webhook sent to this shop's own
//! `POST /v1/payments/webhooks/test`, after a configurable latency; `tok_pending`
//! is accepted and stays pending until someone sends that webhook.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    PaymentProvider, PaymentRequest, PaymentStart, ProviderError, ProviderFuture, RefundOutcome, RefundRequest, Started,
};
use crate::domain::signature;

pub const NAME: &str = "test";
pub const SIGNATURE_HEADER: &str = "mercato-signature";

/// The webhook body the test provider sends.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TestEvent {
    /// Unique per event; redeliveries repeat it.
    pub id: String,
    /// `payment.succeeded` or `payment.failed`.
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    pub data: TestEventData,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TestEventData {
    /// The provider's payment reference.
    pub reference: String,
    pub amount: i64,
    pub currency: String,
}

pub struct TestProvider {
    secret: Arc<[u8]>,
    latency: Duration,
    /// Where webhooks go; known once the server has bound its port.
    base_url: Arc<OnceLock<String>>,
    client: reqwest::Client,
}

impl TestProvider {
    pub fn new(secret: &str, latency: Duration, base_url: Arc<OnceLock<String>>) -> Self {
        Self { secret: Arc::from(secret.as_bytes()), latency, base_url, client: reqwest::Client::new() }
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Signs and posts an event, retrying a few times like a real gateway would.
    fn deliver_later(&self, event: TestEvent) {
        let (secret, base, client, latency) = (self.secret.clone(), self.base_url.clone(), self.client.clone(), self.latency);
        tokio::spawn(async move {
            tokio::time::sleep(latency).await;
            let Some(base) = base.get() else {
                tracing::error!("test payment webhook has no address to go to");
                return;
            };
            let body = serde_json::to_vec(&event).unwrap_or_default();
            for attempt in 0..5u32 {
                let header = signature::sign(&secret, time::OffsetDateTime::now_utc().unix_timestamp(), &body);
                let sent = client
                    .post(format!("{base}/v1/payments/webhooks/test"))
                    .header("content-type", "application/json")
                    .header(SIGNATURE_HEADER, header)
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) => tracing::warn!(status = %r.status(), attempt, "test payment webhook refused"),
                    Err(e) => tracing::warn!(error = %e, attempt, "test payment webhook not delivered"),
                }
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
            }
        });
    }
}

impl PaymentProvider for TestProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn start<'a>(&'a self, request: &'a PaymentRequest) -> Started<'a> {
        Box::pin(async move {
            // Deterministic per order, like a gateway answering the same idempotency key.
            let reference = format!("pay_{}", request.order_id.simple());
            match request.token.as_str() {
                "tok_ok" => Ok(PaymentStart::Succeeded { reference }),
                // Accepted, with the outcome left to a webhook the caller sends (like a
                // bank transfer still processing): lets tests and demos drive it.
                "tok_pending" => Ok(PaymentStart::Pending { reference }),
                "tok_decline" => Ok(PaymentStart::Declined { reference, reason: "card_declined".into() }),
                "tok_async" => {
                    self.deliver_later(TestEvent {
                        id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
                        kind: "payment.succeeded".into(),
                        created: time::OffsetDateTime::now_utc().unix_timestamp(),
                        data: TestEventData {
                            reference: reference.clone(),
                            amount: request.amount,
                            currency: request.currency.clone(),
                        },
                    });
                    Ok(PaymentStart::Pending { reference })
                }
                _ => Err(ProviderError::InvalidToken),
            }
        })
    }

    fn refund<'a>(&'a self, request: &'a RefundRequest) -> ProviderFuture<'a, RefundOutcome> {
        Box::pin(async move {
            // Deterministic per refund, like a gateway answering the same idempotency key.
            Ok(RefundOutcome::Succeeded { reference: format!("re_{}", request.refund_id.simple()) })
        })
    }
}
