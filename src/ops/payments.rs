//! Applying a provider's verified payment event to its order, the same way for
//! every provider: the event goes into the inbox in the transaction that applies
//! it (a redelivery changes nothing), events may come in any order (a failure
//! after a success leaves the order paid), and money for an order that has moved
//! on is recorded as `refund_required`, never lost.

use uuid::Uuid;

use crate::domain::order_status::OrderEvent;
use crate::error::ApiResult;
use crate::store::Store;
use crate::store::audit::Actor;
use crate::store::orders::{Applied, InboxEntry, OrderError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentOutcome {
    Succeeded,
    Failed,
}

/// A provider event about a payment, its signature already checked.
pub struct PaymentEvent<'a> {
    pub provider: &'a str,
    /// Unique per event; redeliveries repeat it.
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub outcome: PaymentOutcome,
    /// The provider's reference of the payment, as its start returned it.
    pub reference: &'a str,
    /// The order the provider says the payment is for (metadata we sent with the
    /// start). Finds the order of a payment whose start timed out before we
    /// learnt its reference.
    pub order_hint: Option<Uuid>,
    /// The body as received, kept in the inbox.
    pub payload: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventResult {
    Applied,
    /// Seen before.
    Duplicate,
    /// Money for an order that expired or failed: recorded and announced for a refund.
    RefundRequired,
    /// Nothing to do (another event for an order already settled).
    Ignored,
    /// No payment of ours has this reference.
    UnknownPayment,
}

impl EventResult {
    pub fn as_str(self) -> &'static str {
        match self {
            EventResult::Applied => "applied",
            EventResult::Duplicate => "duplicate",
            EventResult::RefundRequired => "refund_required",
            EventResult::Ignored | EventResult::UnknownPayment => "ignored",
        }
    }
}

pub async fn apply_payment_event(store: &Store, event: PaymentEvent<'_>) -> ApiResult<EventResult> {
    let Some(order_id) = order_of(store, &event).await? else {
        return Ok(EventResult::UnknownPayment);
    };
    let transition = match event.outcome {
        PaymentOutcome::Succeeded => OrderEvent::PaymentSucceeded,
        PaymentOutcome::Failed => OrderEvent::PaymentFailed,
    };
    let inbox =
        InboxEntry { provider: event.provider, event_id: event.event_id, event_type: event.event_type, payload: event.payload };
    let actor = Actor { kind: "provider", id: None, request_id: None };
    match store.apply_provider_event(order_id, transition, &actor, inbox).await {
        Ok(Applied::Done(_)) => {
            let status = if transition == OrderEvent::PaymentSucceeded { "succeeded" } else { "failed" };
            store.set_payment_status(order_id, status, Some(event.reference)).await?;
            Ok(EventResult::Applied)
        }
        Ok(Applied::Duplicate) => Ok(EventResult::Duplicate),
        Err(OrderError::Transition(t)) => {
            // E.g. a success after the reservation expired: the order must not come
            // back to life, but the money must not be forgotten either. Another
            // success for an order that was paid (and perhaps shipped since) is a repeat.
            let succeeded = transition == OrderEvent::PaymentSucceeded;
            let Some(refund_required) = store.record_late_payment_event(order_id, succeeded, inbox).await? else {
                return Ok(EventResult::Duplicate);
            };
            tracing::warn!(order.id = %order_id, error = %t, event = %event.event_id, refund_required, "payment event for an order that moved on");
            Ok(if refund_required { EventResult::RefundRequired } else { EventResult::Ignored })
        }
        Err(OrderError::Store(e)) => Err(e.into()),
    }
}

async fn order_of(store: &Store, event: &PaymentEvent<'_>) -> ApiResult<Option<Uuid>> {
    if let Some(order_id) = store.payment_by_ref(event.provider, event.reference).await? {
        return Ok(Some(order_id));
    }
    match event.order_hint {
        Some(order_id) if store.link_payment_reference(order_id, event.provider, event.reference).await? => Ok(Some(order_id)),
        _ => Ok(None),
    }
}
