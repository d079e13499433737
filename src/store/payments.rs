//! Payment records and the webhook inbox. An incoming provider event is stored
//! (by its event id) in the same transaction that applies it, so a redelivery
//! finds it already there and changes nothing.

use serde::Serialize;
use uuid::Uuid;

use super::orders::{insert_outbox, lock_order};
use super::rows::{id, int, opt_text, text};
use super::{Store, StoreError, StoreResult, new_id, now};
use crate::domain::order_status::OrderStatus;

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
    /// `started`, `succeeded`, `authorized` (held on the card until it ships), `capturing`,
    /// `voided` (a hold released), `declined`, `pending`, `unknown` (the provider could not
    /// be reached; a `payment.retry` job asks again), `failed`, `refund_required`.
    pub status: String,
    pub amount: i64,
    pub currency: String,
}

/// Only an open payment changes status: a final answer is never overwritten by a
/// later, older one. A reference is kept once known.
pub(super) async fn record_payment_status(
    conn: &mut sqlx::AnyConnection,
    order_id: Uuid,
    status: &str,
    provider_ref: Option<&str>,
) -> StoreResult<()> {
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
    .execute(&mut *conn)
    .await?;
    Ok(())
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
        let mut conn = self.pool.acquire().await?;
        record_payment_status(&mut conn, order_id, status, provider_ref).await
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

    /// A held payment was released.
    pub async fn release_hold(&self, order_id: Uuid) -> StoreResult<()> {
        sqlx::query("UPDATE payments SET status = 'voided', updated_at = $1 WHERE order_id = $2 AND status = 'authorized'")
            .bind(now())
            .bind(order_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A held payment's release was refused (it may have been taken after all):
    /// a person must look, so the payment is `refund_required`, announced once.
    pub async fn hold_release_refused(&self, order_id: Uuid) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let changed = sqlx::query(
            "UPDATE payments SET status = 'refund_required', updated_at = $1 WHERE order_id = $2 AND status = 'authorized'",
        )
        .bind(now())
        .bind(order_id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 1 {
            insert_outbox(
                &mut tx,
                "payment.refund_required",
                serde_json::json!({"order_id": order_id, "reason": "hold release refused"}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks a held payment `capturing` under the order's lock, if the order may
    /// still ship: a cancel (which takes the same lock) then waits for the
    /// capture's outcome instead of releasing a hold being taken.
    pub async fn begin_capture(&self, order_id: Uuid) -> StoreResult<CaptureStart> {
        let mut tx = self.begin().await?;
        let order = lock_order(&mut tx, self.dialect, order_id).await?;
        let payment = sqlx::query("SELECT provider, provider_ref, amount, status FROM payments WHERE order_id = $1")
            .bind(order_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(payment) = payment else { return Ok(CaptureStart::NotHeld) };
        let start = match text(&payment, "status")?.as_str() {
            "capturing" => CaptureStart::InProgress,
            "authorized" if matches!(order.status, OrderStatus::Paid | OrderStatus::Fulfilling) => {
                sqlx::query("UPDATE payments SET status = 'capturing', updated_at = $1 WHERE order_id = $2")
                    .bind(now())
                    .bind(order_id.to_string())
                    .execute(&mut *tx)
                    .await?;
                CaptureStart::Started {
                    provider: text(&payment, "provider")?,
                    reference: opt_text(&payment, "provider_ref")?.unwrap_or_default(),
                    amount: int(&payment, "amount")?,
                }
            }
            _ => CaptureStart::NotHeld,
        };
        tx.commit().await?;
        Ok(start)
    }

    /// The capture's outcome: taken (`succeeded`), or still held (`authorized`:
    /// refused or unknown, to be tried again under the same key).
    pub async fn finish_capture(&self, order_id: Uuid, captured: bool) -> StoreResult<()> {
        sqlx::query("UPDATE payments SET status = $1, updated_at = $2 WHERE order_id = $3 AND status = 'capturing'")
            .bind(if captured { "succeeded" } else { "authorized" })
            .bind(now())
            .bind(order_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Whether a shipment must first take a held payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureStart {
    /// Nothing held (money already taken, or never held).
    NotHeld,
    /// Another request is taking it now.
    InProgress,
    /// This request takes it.
    Started { provider: String, reference: String, amount: i64 },
}
