//! Delivering events to the shop's own systems. Each delivery is a signed POST:
//! `Mercato-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with
//! the subscription's secret, the scheme payment providers use, so receivers can
//! check the sender and reject replays. A non-2xx answer or no answer fails the
//! job, and the queue retries it with backoff until it goes to the dead letters.
//! Receivers must expect a delivery more than once (same `id`).

use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use crate::domain::signature;
use crate::jobs::{JobFuture, JobHandler};
use crate::store::Store;
use crate::store::jobs::Job;

pub const SIGNATURE_HEADER: &str = "mercato-signature";

/// The body every subscriber receives.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookEvent<'a> {
    /// The event's id; the same on every retry of its delivery.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// Ids of what changed (`order_id`, `shipment_id`, `refund_id`, ...).
    #[schema(value_type = Object)]
    pub data: &'a serde_json::Value,
}

pub struct Deliver {
    client: reqwest::Client,
}

impl Deliver {
    pub fn new(timeout: Duration) -> Self {
        let client = reqwest::Client::builder().timeout(timeout).build().unwrap_or_default();
        Self { client }
    }
}

impl JobHandler for Deliver {
    fn run<'a>(&'a self, store: &'a Store, job: &'a Job) -> JobFuture<'a> {
        Box::pin(async move {
            let field = |name: &str| job.payload.get(name).and_then(|v| v.as_str()).map(str::to_owned);
            let (Some(sub_id), Some(event_id), Some(kind)) = (field("subscription_id"), field("event_id"), field("type")) else {
                return Err("payload lacks subscription_id, event_id or type".into());
            };
            let sub_id: Uuid = sub_id.parse().map_err(|_| "bad subscription_id")?;
            let Some((sub, secret)) = store.subscription_secret(sub_id).await.map_err(|e| e.to_string())? else {
                // Deleted or paused since: nobody to deliver to.
                return Ok(());
            };
            let data = job.payload.get("data").cloned().unwrap_or(serde_json::Value::Null);
            let event = WebhookEvent { id: event_id.parse().map_err(|_| "bad event_id")?, kind: &kind, data: &data };
            let body = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
            let header = signature::sign(secret.as_bytes(), time::OffsetDateTime::now_utc().unix_timestamp(), &body);
            let sent = self
                .client
                .post(&sub.url)
                .header("content-type", "application/json")
                .header(SIGNATURE_HEADER, header)
                .header("mercato-event-id", event_id.as_str())
                .body(body)
                .send()
                .await;
            let outcome = match &sent {
                Ok(r) if r.status().is_success() => "delivered",
                Ok(_) => "refused",
                Err(_) => "unreachable",
            };
            metrics::counter!("webhook_deliveries_total", "type" => kind.clone(), "outcome" => outcome).increment(1);
            match sent {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("{} answered {}", sub.url, r.status()).into()),
                Err(e) => Err(format!("{} unreachable: {e}", sub.url).into()),
            }
        })
    }
}
