//! What happens after a business event. Every event is a job written in the
//! transaction of the change it announces (the outbox); its handler fans it out,
//! in one transaction: one `webhook.deliver` job per subscriber, under a key made
//! of the event id (handling an event twice queues nothing twice), and the
//! customer's e-mail for the events that have one, under a key naming what it is
//! about (`order_shipped:<shipment id>`), which the sender never sends twice.

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use crate::domain::order_status::OrderStatus;
use crate::domain::rbac::Permission;
use crate::jobs::{JobFuture, JobHandler, Registry};
use crate::notify::{Template, enqueue_email};
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
            let mut emails: Vec<Email> =
                customer_email(store, &job.kind, &job.payload).await.map_err(|e| e.to_string())?.into_iter().collect();
            if job.kind == LOW_STOCK {
                emails.extend(staff_alerts(store, job).await.map_err(|e| e.to_string())?);
            }
            let mut tx = store.begin().await.map_err(|e| e.to_string())?;
            let queued = fan_out(&mut tx, job.id, &job.kind, &job.payload).await.map_err(|e| e.to_string())?;
            for e in &emails {
                enqueue_email(&mut tx, e.template, &e.to, e.context.clone(), &e.dedupe_key).await.map_err(|e| e.to_string())?;
            }
            tx.commit().await.map_err(|e| e.to_string())?;
            tracing::debug!(event = %job.kind, event.id = %job.id, deliveries = queued, emails = emails.len(), "event fanned out");
            Ok(())
        })
    }
}

struct Email {
    template: Template,
    to: String,
    context: serde_json::Value,
    dedupe_key: String,
}

/// The e-mail the customer gets for an event, if any, with what it shows.
async fn customer_email(store: &Store, kind: &str, payload: &serde_json::Value) -> anyhow::Result<Option<Email>> {
    let id = |name: &str| payload.get(name).and_then(|v| v.as_str()).and_then(|v| v.parse::<Uuid>().ok());
    let template = match kind {
        "order.paid" => Template::OrderConfirmed,
        "shipment.created" => Template::OrderShipped,
        "order.delivered" => Template::OrderDelivered,
        "refund.succeeded" => Template::OrderRefunded,
        _ => return Ok(None),
    };
    let Some(order) = (match id("order_id") {
        Some(order_id) => store.order(order_id).await?,
        None => None,
    }) else {
        return Ok(None);
    };
    let (context, about) = match template {
        Template::OrderShipped => {
            let shipment_id = id("shipment_id").ok_or_else(|| anyhow::anyhow!("shipment.created without shipment_id"))?;
            let shipment = store.shipments(order.id).await?.into_iter().find(|s| s.id == shipment_id);
            let Some(shipment) = shipment else { return Ok(None) };
            let lines: Vec<serde_json::Value> = shipment
                .lines
                .iter()
                .filter_map(|l| order.lines.iter().find(|o| o.id == l.line_id).map(|o| (o, l.quantity)))
                .map(|(o, quantity)| json!({"title": o.title, "sku": o.sku, "quantity": quantity}))
                .collect();
            let partial = order.lines.iter().any(|l| l.shipped_quantity < l.quantity);
            let shipment = json!({
                "carrier": shipment.carrier, "tracking_number": shipment.tracking_number,
                "tracking_url": shipment.tracking_url, "partial": partial, "lines": lines,
            });
            (json!({"order": order, "shipment": shipment}), shipment_id.to_string())
        }
        Template::OrderRefunded => {
            let refund_id = id("refund_id").ok_or_else(|| anyhow::anyhow!("refund.succeeded without refund_id"))?;
            let refund = json!({
                "amount": payload.get("amount"), "currency": payload.get("currency"),
                "partial": payload.get("partial").and_then(|v| v.as_bool()).unwrap_or(false),
            });
            (json!({"order": order, "refund": refund}), refund_id.to_string())
        }
        _ => (json!({"order": order}), order.id.to_string()),
    };
    let dedupe_key = format!("{}:{about}", template.as_str());
    Ok(Some(Email { template, to: order.email.clone(), context, dedupe_key }))
}

/// A low-stock alert for every active staff member who looks after stock. The
/// event is made once a day per variant; the key (event id and recipient) keeps
/// a re-handled event from mailing anyone twice.
async fn staff_alerts(store: &Store, job: &Job) -> anyhow::Result<Vec<Email>> {
    let staff = store.list_staff().await?;
    let field = |name: &str| job.payload.get(name).cloned().unwrap_or(serde_json::Value::Null);
    Ok(staff
        .into_iter()
        .filter(|m| m.active && m.role.grants(Permission::InventoryWrite))
        .map(|m| Email {
            template: Template::LowStock,
            context: json!({"name": if m.name.is_empty() { &m.email } else { &m.name }, "sku": field("sku"), "available": field("available"), "threshold": field("threshold")}),
            dedupe_key: format!("low_stock:{}:{}", job.id, m.id),
            to: m.email,
        })
        .collect())
}

/// Registers the fan-out for every event type.
pub fn register(mut registry: Registry) -> Registry {
    let handler: Arc<dyn JobHandler> = Arc::new(FanOut);
    for kind in event_types() {
        registry = registry.with(&kind, handler.clone());
    }
    registry
}
