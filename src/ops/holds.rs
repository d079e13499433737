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
use crate::store::payments::CaptureStart;
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
/// for money already taken. The payment is `capturing` (under the order's lock)
/// while the provider is asked, so a cancel cannot release it meanwhile.
pub async fn capture_if_held(store: &Store, providers: &[Arc<dyn PaymentProvider>], order_id: Uuid) -> ApiResult<()> {
    let (provider_name, reference, amount) = match store.begin_capture(order_id).await? {
        CaptureStart::NotHeld => return Ok(()),
        CaptureStart::InProgress => {
            return Err(ApiError::conflict(
                "capture_in_progress",
                None,
                "this order's payment is being taken; try again shortly",
            ));
        }
        CaptureStart::Started { provider, reference, amount } => (provider, reference, amount),
    };
    let Some(provider) = providers.iter().find(|p| p.name() == provider_name) else {
        store.finish_capture(order_id, false).await?;
        return Err(anyhow::anyhow!("payment provider {provider_name} is not configured").into());
    };
    let request = HoldRequest { order_id, payment_reference: reference, amount, action: HoldAction::Capture };
    let outcome = provider.finish_hold(&request).await;
    store.finish_capture(order_id, matches!(outcome, Ok(HoldOutcome::Done))).await?;
    match outcome {
        Ok(HoldOutcome::Done) => Ok(()),
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

/// Releases a held payment; `Ok` once nothing is held any more. A release the
/// provider refuses may mean the money was taken after all: the payment is then
/// `refund_required`, for a person to check, never taken as released.
pub async fn void_if_held(store: &Store, providers: &[Arc<dyn PaymentProvider>], order_id: Uuid) -> Result<(), String> {
    let Some(payment) = store.payment_of(order_id).await.map_err(|e| e.to_string())?.filter(|p| p.status == "authorized") else {
        return Ok(());
    };
    let provider = providers
        .iter()
        .find(|p| p.name() == payment.provider)
        .ok_or_else(|| format!("payment provider {} is not configured", payment.provider))?;
    let request = HoldRequest {
        order_id,
        payment_reference: payment.provider_ref.unwrap_or_default(),
        amount: payment.amount,
        action: HoldAction::Void,
    };
    match provider.finish_hold(&request).await {
        Ok(HoldOutcome::Done) => store.release_hold(order_id).await.map_err(|e| e.to_string()),
        Ok(HoldOutcome::Refused { reason }) => {
            tracing::error!(order.id = %order_id, reason = %reason, "the provider refused to release a hold; refund_required");
            store.hold_release_refused(order_id).await.map_err(|e| e.to_string())
        }
        Err(ProviderError::Unavailable(why)) => Err(why),
        Err(ProviderError::InvalidToken) => Err("the provider does not know this payment".into()),
    }
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
