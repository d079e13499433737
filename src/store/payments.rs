//! Payment records and the webhook inbox. An incoming provider event is stored
//! (by its event id) in the same transaction that applies it, so a redelivery
//! finds it already there and changes nothing.

use serde::Serialize;
use uuid::Uuid;

use super::rows::{id, int, opt_text, text};
use super::{Store, StoreError, StoreResult, new_id, now};

/// The job that releases a cancelled order's held payment.
pub const VOID_JOB: &str = "payment.void";

/// One release per order, however often it is asked for.
pub fn void_key(order_id: Uuid) -> String {
    format!("{VOID_JOB}:{order_id}")
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Payment {
    pub id: Uuid,
    pub order_id: Uuid,
    pub provider: String,
    pub provider_ref: Option<String>,
    /// `started`, `succeeded`, `declined`, `pending`, `unknown` (the provider could not be
    /// reached; a `payment.retry` job asks again), `failed`, `refund_required`.
    pub status: String,
    pub amount: i64,
    pub currency: String,
}

impl Store {
    /// Records that a payment for the order is being started (at most one per order).
    pub async fn start_payment(&self, order_id: Uuid, provider: &str, amount: i64, currency: &str) -> StoreResult<()> {
        let ts = now();
        sqlx::query(
            "INSERT INTO payments (id, order_id, provider, status, amount, currency, created_at, updated_at)
             VALUES ($1, $2, $3, 'started', $4, $5, $6, $6) ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(new_id().to_string())
        .bind(order_id.to_string())
        .bind(provider)
        .bind(amount)
        .bind(currency)
        .bind(ts)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_db)?;
        Ok(())
    }

    pub async fn set_payment_status(&self, order_id: Uuid, status: &str, provider_ref: Option<&str>) -> StoreResult<()> {
        // Only an open payment changes status: a final answer is never overwritten by
        // a later, older one. A reference is kept once known.
        sqlx::query(
            "UPDATE payments SET
                status = CASE WHEN status IN ('started', 'pending', 'unknown') THEN $1 ELSE status END,
                provider_ref = COALESCE(provider_ref, $2), updated_at = $3
             WHERE order_id = $4",
        )
        .bind(status)
        .bind(provider_ref)
        .bind(now())
        .bind(order_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks the payment's outcome unknown and enqueues the job that asks the
    /// provider again, in one transaction: a payment left unknown always has a retry.
    pub async fn queue_payment_retry(&self, order_id: Uuid, kind: &str, payload: serde_json::Value) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE payments SET status = 'unknown', updated_at = $1 WHERE order_id = $2 AND status IN ('started', 'pending')",
        )
        .bind(now())
        .bind(order_id.to_string())
        .execute(&mut *tx)
        .await?;
        super::jobs::enqueue(&mut tx, kind, payload).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records the provider's reference of a payment whose start never told us one
    /// (it timed out); false when the order has no such payment or it already has
    /// another reference.
    pub async fn link_payment_reference(&self, order_id: Uuid, provider: &str, provider_ref: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE payments SET provider_ref = $1, updated_at = $2 WHERE order_id = $3 AND provider = $4 AND provider_ref IS NULL",
        )
        .bind(provider_ref)
        .bind(now())
        .bind(order_id.to_string())
        .bind(provider)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn payment_of(&self, order_id: Uuid) -> StoreResult<Option<Payment>> {
        let row = sqlx::query(
            "SELECT id, order_id, provider, provider_ref, status, amount, currency FROM payments WHERE order_id = $1",
        )
        .bind(order_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Payment {
                id: id(&r, "id")?,
                order_id: id(&r, "order_id")?,
                provider: text(&r, "provider")?,
                provider_ref: opt_text(&r, "provider_ref")?,
                status: text(&r, "status")?,
                amount: int(&r, "amount")?,
                currency: text(&r, "currency")?,
            })
        })
        .transpose()
    }

    pub async fn payment_by_ref(&self, provider: &str, provider_ref: &str) -> StoreResult<Option<Uuid>> {
        let row = sqlx::query("SELECT order_id FROM payments WHERE provider = $1 AND provider_ref = $2")
            .bind(provider)
            .bind(provider_ref)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| id(&r, "order_id")).transpose()
    }

    /// A held payment was taken (`succeeded`) or released (`voided`).
    pub async fn settle_hold(&self, order_id: Uuid, to: &str) -> StoreResult<()> {
        sqlx::query("UPDATE payments SET status = $1, updated_at = $2 WHERE order_id = $3 AND status = 'authorized'")
            .bind(to)
            .bind(now())
            .bind(order_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
