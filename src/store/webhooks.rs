//! Outgoing webhook subscriptions: the shop's own systems ask to be told about
//! order events. Deliveries are jobs (`webhook.deliver`), one per event and
//! subscription, created under a de-duplication key so an event fanned out
//! twice is delivered once.

use serde::Serialize;
use uuid::Uuid;

use super::rows::{id, int, json, text, to_json};
use super::{Store, StoreResult, Tx, new_id, now};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Subscription {
    pub id: Uuid,
    pub url: String,
    pub event_types: Vec<String>,
    pub active: bool,
    pub created_at: String,
}

/// The job that posts one event to one subscriber.
pub const DELIVER_JOB: &str = "webhook.deliver";

fn subscription_row(r: &sqlx::any::AnyRow) -> StoreResult<Subscription> {
    Ok(Subscription {
        id: id(r, "id")?,
        url: text(r, "url")?,
        event_types: json(r, "event_types")?,
        active: int(r, "active")? != 0,
        created_at: text(r, "created_at")?,
    })
}

impl Store {
    pub async fn create_subscription(&self, url: &str, event_types: &[String], secret: &str) -> StoreResult<Subscription> {
        let (sub_id, ts) = (new_id(), now());
        sqlx::query(
            "INSERT INTO webhook_subscriptions (id, url, event_types, secret, active, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 1, $5, $5)",
        )
        .bind(sub_id.to_string())
        .bind(url)
        .bind(to_json(&event_types))
        .bind(secret)
        .bind(ts.as_str())
        .execute(&self.pool)
        .await?;
        Ok(Subscription { id: sub_id, url: url.to_owned(), event_types: event_types.to_vec(), active: true, created_at: ts })
    }

    pub async fn subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        let rows = sqlx::query("SELECT id, url, event_types, active, created_at FROM webhook_subscriptions ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(subscription_row).collect()
    }

    /// Removes a subscription; deliveries still queued for it are dropped when they run.
    pub async fn delete_subscription(&self, sub_id: Uuid) -> StoreResult<bool> {
        let gone = sqlx::query("DELETE FROM webhook_subscriptions WHERE id = $1")
            .bind(sub_id.to_string())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(gone == 1)
    }

    /// An active subscription with its signing secret.
    pub async fn subscription_secret(&self, sub_id: Uuid) -> StoreResult<Option<(Subscription, String)>> {
        let row = sqlx::query(
            "SELECT id, url, event_types, active, created_at, secret FROM webhook_subscriptions WHERE id = $1 AND active = 1",
        )
        .bind(sub_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((subscription_row(&r)?, text(&r, "secret")?))).transpose()
    }
}

/// Queues a delivery of the event to every active subscriber of its type, in the
/// caller's transaction.
pub async fn fan_out(tx: &mut Tx, event_id: Uuid, event_type: &str, data: &serde_json::Value) -> StoreResult<usize> {
    let rows = sqlx::query("SELECT id, url, event_types, active, created_at FROM webhook_subscriptions WHERE active = 1")
        .fetch_all(&mut **tx)
        .await?;
    let mut queued = 0;
    for r in &rows {
        let sub = subscription_row(r)?;
        if !sub.event_types.iter().any(|t| t == event_type || t == "*") {
            continue;
        }
        let payload = serde_json::json!({
            "subscription_id": sub.id, "event_id": event_id, "type": event_type, "data": data,
        });
        let key = format!("{DELIVER_JOB}:{event_id}:{}", sub.id);
        queued += usize::from(super::jobs::enqueue_unique(tx, DELIVER_JOB, payload, &key).await?);
    }
    Ok(queued)
}
