//! Carrying out refunds through the payment provider. The refund is written
//! `pending` first (so it counts against what is left), then the provider is
//! called with a key derived from the refund's id, so calling again — from a
//! retried request or from the queue — never refunds twice. A `refund.execute`
//! job is queued with the pending refund, due a minute later: if the request
//! dies or the provider cannot be reached, the queue carries the refund out,
//! retrying with backoff.

use std::sync::Arc;

use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::jobs::{JobError, JobFuture, JobHandler};
use crate::payments::{PaymentProvider, ProviderError, RefundOutcome, RefundRequest};
use crate::store::Store;
use crate::store::audit::Actor;
use crate::store::jobs::Job;
use crate::store::orders::OrderError;
pub use crate::store::refunds::EXECUTE_JOB;
use crate::store::refunds::{Refund, RefundAsk, RefundError, RefundTicket, Settlement};

/// What happened when the provider was asked.
pub enum Executed {
    Settled(Refund),
    /// The provider could not be reached; the refund is still pending.
    Deferred(Refund),
}

pub async fn refund(
    store: &Store,
    providers: &[Arc<dyn PaymentProvider>],
    order_id: Uuid,
    ask: &RefundAsk<'_>,
    actor: &Actor,
) -> ApiResult<Refund> {
    let (ticket, fresh) = store.begin_refund(order_id, ask, actor).await.map_err(refund_error)?;
    if !fresh && ticket.refund.status != "pending" {
        return Ok(ticket.refund);
    }
    Ok(match execute(store, providers, &ticket).await? {
        Executed::Settled(r) | Executed::Deferred(r) => r,
    })
}

/// Cancels an order that has not shipped, refunding a paid one in full.
pub async fn cancel(
    store: &Store,
    providers: &[Arc<dyn PaymentProvider>],
    order_id: Uuid,
    reason: &str,
    limit: Option<i64>,
    actor: &Actor,
) -> ApiResult<Option<Refund>> {
    match store.cancel_order(order_id, reason, limit, actor).await.map_err(refund_error)? {
        None => {
            // A held payment is released now if the provider answers; its queued
            // job does it otherwise.
            if let Err(why) = super::holds::void_if_held(store, providers, order_id).await {
                tracing::warn!(order.id = %order_id, error = %why, "releasing the held payment left to the queue");
            }
            Ok(None)
        }
        Some(ticket) => Ok(Some(match execute(store, providers, &ticket).await? {
            Executed::Settled(r) | Executed::Deferred(r) => r,
        })),
    }
}

/// Asks the provider to refund a pending refund and records the answer; an
/// unreachable provider leaves it pending for its queued job.
pub async fn execute(store: &Store, providers: &[Arc<dyn PaymentProvider>], ticket: &RefundTicket) -> ApiResult<Executed> {
    let refund = &ticket.refund;
    let provider = providers
        .iter()
        .find(|p| p.name() == refund.provider)
        .ok_or_else(|| anyhow::anyhow!("payment provider {} is not configured", refund.provider))?;
    let request = RefundRequest {
        refund_id: refund.id,
        order_id: refund.order_id,
        payment_reference: ticket.payment_reference.clone(),
        amount: refund.amount,
        currency: refund.currency.clone(),
    };
    let settlement = match provider.refund(&request).await {
        Ok(RefundOutcome::Succeeded { reference }) => Settlement::Succeeded { reference },
        Ok(RefundOutcome::Pending { reference }) => Settlement::Pending { reference },
        Ok(RefundOutcome::Failed { reason }) => Settlement::Failed { reason },
        Err(e @ (ProviderError::Unavailable(_) | ProviderError::InvalidToken)) => {
            tracing::warn!(refund.id = %refund.id, order.id = %refund.order_id, error = %e, "refund left to the queue");
            metrics::counter!("refunds_deferred_total", "provider" => refund.provider.clone()).increment(1);
            return Ok(Executed::Deferred(refund.clone()));
        }
    };
    let system = Actor { kind: "provider", id: None, request_id: None };
    let settled = store.settle_refund(refund.id, &settlement, &system).await.map_err(refund_error)?;
    metrics::counter!("refunds_total", "provider" => refund.provider.clone(), "status" => settled.status.clone()).increment(1);
    Ok(Executed::Settled(settled))
}

pub fn refund_error(e: RefundError) -> ApiError {
    use crate::domain::order_status::RefundError as Rule;
    match e {
        RefundError::Order(OrderError::Transition(t)) => ApiError::InvalidTransition(t),
        RefundError::Order(OrderError::Store(s)) => s.into(),
        RefundError::Rule(rule @ Rule::NotPositive) => ApiError::invalid_field("amount", "invalid_amount", rule.to_string()),
        RefundError::Rule(rule @ Rule::ExceedsPaid { .. }) => {
            ApiError::invalid_field("amount", "refund_exceeds_paid", rule.to_string())
        }
        RefundError::LimitExceeded { limit } => ApiError::RefundLimitExceeded { limit },
        RefundError::KeyReused => ApiError::Unprocessable { code: "idempotency_key_reused", detail: e.to_string() },
        RefundError::NoPayment => ApiError::conflict("no_payment", None, e.to_string()),
        RefundError::NotCaptured => ApiError::conflict("payment_not_captured", None, e.to_string()),
        RefundError::CaptureInProgress => ApiError::conflict("capture_in_progress", None, e.to_string()),
    }
}

/// How long a refund may be asked for again under its key: under the day a
/// provider remembers idempotency keys.
const KEY_MEMORY: std::time::Duration = std::time::Duration::from_secs(23 * 3600);

fn older_than(stored_time: &str, age: std::time::Duration) -> bool {
    time::OffsetDateTime::parse(stored_time, &time::format_description::well_known::Rfc3339)
        .is_ok_and(|t| time::OffsetDateTime::now_utc() - t > age)
}

/// `refund.execute`: retries a refund the provider could not take at the time.
pub struct ExecuteRefund {
    pub providers: Arc<[Arc<dyn PaymentProvider>]>,
}

impl JobHandler for ExecuteRefund {
    fn run<'a>(&'a self, store: &'a Store, job: &'a Job) -> JobFuture<'a> {
        Box::pin(async move {
            let refund_id: Uuid = crate::jobs::payload_id(job, "refund_id")?;
            let ticket = store.refund_ticket(refund_id).await.map_err(|e| e.to_string())?;
            // Settled meanwhile (by the request, an earlier run or a webhook).
            let Some(ticket) = ticket.filter(|t| t.refund.status == "pending" && t.refund.provider_ref.is_none()) else {
                return Ok(());
            };
            // Providers forget idempotency keys after a day (Stripe: 24 h). Past
            // that, asking again could refund twice if an earlier call did get
            // through: a person must look at the provider's records first.
            if older_than(&ticket.refund.created_at, KEY_MEMORY) {
                tracing::error!(refund.id = %refund_id, order.id = %ticket.refund.order_id, "refund pending for too long to retry safely; check the provider");
                return Err(JobError::permanent(format!(
                    "refund {refund_id} is older than the provider's idempotency memory; check the provider's records before retrying"
                )));
            }
            match execute(store, &self.providers, &ticket).await {
                Ok(Executed::Settled(_)) => Ok(()),
                Ok(Executed::Deferred(_)) => Err("the payment provider is unavailable".into()),
                Err(e) => Err(e.to_string().into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refunds_older_than_a_providers_key_memory_are_not_retried() {
        assert!(older_than("2026-01-01T00:00:00.000000Z", KEY_MEMORY));
        assert!(!older_than(&crate::store::now(), KEY_MEMORY));
        assert!(!older_than("not a time", KEY_MEMORY));
    }
}
