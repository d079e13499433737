//! What happens after a business event. Every event is a job written in the
//! transaction of the change it announces (the outbox); its handler fans it out
//! to the shop's subscribers — one `webhook.deliver` job each, under a key made
//! of the event id, so handling an event twice queues nothing twice.

use std::sync::Arc;

use crate::domain::order_status::OrderStatus;
use crate::jobs::{JobFuture, JobHandler, Registry};
use crate::store::Store;
use crate::store::jobs::Job;
use crate::store::webhooks::fan_out;

/// Every event type subscribers can ask for.
pub fn event_types() -> Vec<String> {
    let mut types: Vec<String> = ["order.placed", "shipment.created", "refund.succeeded", "payment.refund_required", LOW_STOCK]
        .into_iter()
        .map(str::to_owned)
        .collect();
    // `order.<status>` for each status an order moves into after it is placed.
    types.extend(OrderStatus::ALL.iter().filter(|s| **s != OrderStatus::PendingPayment).map(|s| format!("order.{}", s.as_str())));
    types
}

pub const LOW_STOCK: &str = "inventory.low_stock";

struct FanOut;

impl JobHandler for FanOut {
    fn run<'a>(&'a self, store: &'a Store, job: &'a Job) -> JobFuture<'a> {
        Box::pin(async move {
            let mut tx = store.begin().await.map_err(|e| e.to_string())?;
            let queued = fan_out(&mut tx, job.id, &job.kind, &job.payload).await.map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
            tracing::debug!(event = %job.kind, event.id = %job.id, deliveries = queued, "event fanned out");
            Ok(())
        })
    }
}

/// Registers the fan-out for every event type.
pub fn register(mut registry: Registry) -> Registry {
    let handler: Arc<dyn JobHandler> = Arc::new(FanOut);
    for kind in event_types() {
        registry = registry.with(&kind, handler.clone());
    }
    registry
}
