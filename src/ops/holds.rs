//! Payments held on the customer's card (Stripe with `MERCATO_STRIPE_CAPTURE=
//! on_shipment`): the order is paid for at checkout, the money is taken when its
//! first parcel leaves, and released if it is cancelled before. Both calls carry
//! a key derived from the order (`capture-<id>`, `void-<id>`), so asking twice
//! takes or releases once.

use std::sync::Arc;

use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::jobs::{JobFuture, JobHandler};
use crate::payments::{HoldAction, HoldOutcome, HoldRequest, PaymentProvider, ProviderError};
use crate::store::jobs::Job;
use crate::store::{Store, StoreResult};

pub use crate::store::payments::VOID_JOB;

/// Queues the release of an order's hold (once per order).
pub async fn queue_void(store: &Store, order_id: Uuid) -> StoreResult<()> {
    store
        .enqueue_unique_job(VOID_JOB, serde_json::json!({"order_id": order_id}), &crate::store::payments::void_key(order_id))
        .await?;
    Ok(())
}

/// Takes a held payment before the order's first parcel leaves; nothing to do
/// for money already taken.
pub async fn capture_if_held(store: &Store, providers: &[Arc<dyn PaymentProvider>], order_id: Uuid) -> ApiResult<()> {
    let Some((provider, request)) = held(store, providers, order_id, HoldAction::Capture).await? else { return Ok(()) };
    match provider.finish_hold(&request).await {
        Ok(HoldOutcome::Done) => {
            store.settle_hold(order_id, "succeeded").await?;
            Ok(())
        }
        Ok(HoldOutcome::Refused { reason }) => {
            tracing::error!(order.id = %order_id, reason = %reason, "the held payment could not be captured");
            Err(ApiError::conflict(
                "capture_failed",
                None,
                format!("the payment held for this order could not be taken ({reason}); nothing was shipped"),
            ))
        }
        Err(e) => {
            tracing::warn!(order.id = %order_id, error = %e, "capture deferred: the payment provider is unavailable");
            Err(ApiError::PaymentUnavailable)
        }
    }
}

/// Releases a held payment; `Ok` once nothing is held any more.
pub async fn void_if_held(store: &Store, providers: &[Arc<dyn PaymentProvider>], order_id: Uuid) -> Result<(), String> {
    let held = held(store, providers, order_id, HoldAction::Void).await.map_err(|e| e.to_string())?;
    let Some((provider, request)) = held else { return Ok(()) };
    match provider.finish_hold(&request).await {
        Ok(HoldOutcome::Done) => store.settle_hold(order_id, "voided").await.map_err(|e| e.to_string()),
        Ok(HoldOutcome::Refused { reason }) => {
            // Released or expired at the provider already: nothing is held either way.
            tracing::warn!(order.id = %order_id, reason = %reason, "the provider refused to release a hold; marked released");
            store.settle_hold(order_id, "voided").await.map_err(|e| e.to_string())
        }
        Err(ProviderError::Unavailable(why)) => Err(why),
        Err(ProviderError::InvalidToken) => Err("the provider does not know this payment".into()),
    }
}

async fn held<'p>(
    store: &Store,
    providers: &'p [Arc<dyn PaymentProvider>],
    order_id: Uuid,
    action: HoldAction,
) -> ApiResult<Option<(&'p Arc<dyn PaymentProvider>, HoldRequest)>> {
    let Some(payment) = store.payment_of(order_id).await?.filter(|p| p.status == "authorized") else { return Ok(None) };
    let provider = providers
        .iter()
        .find(|p| p.name() == payment.provider)
        .ok_or_else(|| anyhow::anyhow!("payment provider {} is not configured", payment.provider))?;
    let request =
        HoldRequest { order_id, payment_reference: payment.provider_ref.unwrap_or_default(), amount: payment.amount, action };
    Ok(Some((provider, request)))
}

/// `payment.void`: releases the hold of a cancelled order.
pub struct VoidHold {
    pub providers: Arc<[Arc<dyn PaymentProvider>]>,
}

impl JobHandler for VoidHold {
    fn run<'a>(&'a self, store: &'a Store, job: &'a Job) -> JobFuture<'a> {
        Box::pin(async move {
            let order_id: Uuid = crate::jobs::payload_id(job, "order_id")?;
            void_if_held(store, &self.providers, order_id).await.map_err(Into::into)
        })
    }
}
