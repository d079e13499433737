//! Refunds. A refund is written `pending` under the order's lock before the
//! provider is called, so concurrent refunds count it against what is left and
//! can never together exceed what was paid; it then settles `succeeded` (the
//! order's `refunded_total` grows, in the same transaction) or `failed` (the
//! amount is free again). Settling twice changes nothing.

use serde::Serialize;
use uuid::Uuid;

use super::audit::Actor;
use super::orders::{LockedOrder, OrderError, apply_transition, insert_outbox, lock_order, record_event};
use super::rows::{id, int, opt_text, text};
use super::{Store, StoreError, StoreResult, Tx, new_id, now};
use crate::domain::order_status::{OrderEvent, OrderStatus, RefundError as RefundRule, TransitionError, check_refund};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Refund {
    pub id: Uuid,
    pub order_id: Uuid,
    pub amount: i64,
    pub currency: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub reason: String,
    pub provider: String,
    pub provider_ref: Option<String>,
    /// Why the provider refused it.
    pub failure: Option<String>,
    pub created_at: String,
}

/// A pending refund with what the provider needs to carry it out.
#[derive(Debug, Clone)]
pub struct RefundTicket {
    pub refund: Refund,
    pub payment_reference: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error(transparent)]
    Rule(#[from] RefundRule),
    /// The staff member may bring the order's refunds up to `limit` only.
    #[error("refunds on this order may reach {limit} with your role; ask an owner")]
    LimitExceeded { limit: i64 },
    #[error("this idempotency key was used for a different refund")]
    KeyReused,
    #[error("this order has no captured payment to refund")]
    NoPayment,
    #[error("the payment is held on the card, not taken yet: cancel the order to release it")]
    NotCaptured,
    #[error("the order's payment is being taken for a shipment; try again shortly")]
    CaptureInProgress,
}

impl From<StoreError> for RefundError {
    fn from(e: StoreError) -> Self {
        RefundError::Order(OrderError::Store(e))
    }
}

impl From<sqlx::Error> for RefundError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from_db(e).into()
    }
}

/// How the provider answered.
#[derive(Debug, Clone)]
pub enum Settlement {
    Succeeded { reference: String },
    Pending { reference: String },
    Failed { reason: String },
}

/// The job that carries out a pending refund if the request that began it could not.
pub const EXECUTE_JOB: &str = "refund.execute";

const REFUND_COLUMNS: &str = "id, order_id, amount, currency, status, reason, provider, provider_ref, failure, created_at";

fn refund_row(r: &sqlx::any::AnyRow) -> StoreResult<Refund> {
    Ok(Refund {
        id: id(r, "id")?,
        order_id: id(r, "order_id")?,
        amount: int(r, "amount")?,
        currency: text(r, "currency")?,
        status: text(r, "status")?,
        reason: text(r, "reason")?,
        provider: text(r, "provider")?,
        provider_ref: opt_text(r, "provider_ref")?,
        failure: opt_text(r, "failure")?,
        created_at: text(r, "created_at")?,
    })
}

pub struct RefundAsk<'a> {
    pub amount: i64,
    pub reason: &'a str,
    /// The same key on the same order answers with the same refund. Clients' keys
    /// are stored as `key:<key>`, so they never meet the shop's own (`cancel`).
    pub idempotency_key: Option<&'a str>,
    /// Highest total of refunds on the order this actor may reach (`None`: any).
    pub limit: Option<i64>,
}

/// Writes a pending refund for a locked order, checked against what was paid
/// and what is already refunded or being refunded.
pub(super) async fn insert_pending_refund(
    tx: &mut Tx,
    order: &LockedOrder,
    ask: &RefundAsk<'_>,
    actor: &Actor,
) -> Result<RefundTicket, RefundError> {
    let payment = sqlx::query("SELECT provider, provider_ref, status FROM payments WHERE order_id = $1")
        .bind(order.id.to_string())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(RefundError::NoPayment)?;
    match text(&payment, "status")?.as_str() {
        "succeeded" => {}
        "authorized" => return Err(RefundError::NotCaptured),
        _ => return Err(RefundError::NoPayment),
    }
    let reference = opt_text(&payment, "provider_ref")?.ok_or(RefundError::NoPayment)?;
    let pending = sqlx::query(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS n FROM refunds WHERE order_id = $1 AND status = 'pending'",
    )
    .bind(order.id.to_string())
    .fetch_one(&mut **tx)
    .await?;
    let committed = order.refunded_total + int(&pending, "n")?;
    check_refund(order.grand_total, committed, ask.amount)?;
    if let Some(limit) = ask.limit
        && committed + ask.amount > limit
    {
        return Err(RefundError::LimitExceeded { limit });
    }
    let refund_id = new_id();
    let ts = now();
    let provider = text(&payment, "provider")?;
    sqlx::query(
        "INSERT INTO refunds (id, order_id, amount, currency, status, reason, provider, idem_key, actor_type, actor_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $10)",
    )
    .bind(refund_id.to_string())
    .bind(order.id.to_string())
    .bind(ask.amount)
    .bind(order.currency.as_str())
    .bind(ask.reason)
    .bind(provider.as_str())
    .bind(ask.idempotency_key)
    .bind(actor.kind)
    .bind(actor.id.map(|i| i.to_string()))
    .bind(ts.as_str())
    .execute(&mut **tx)
    .await?;
    let job = serde_json::json!({"refund_id": refund_id});
    super::jobs::enqueue_after(tx, EXECUTE_JOB, job, std::time::Duration::from_secs(60)).await?;
    let refund = Refund {
        id: refund_id,
        order_id: order.id,
        amount: ask.amount,
        currency: order.currency.clone(),
        status: "pending".into(),
        reason: ask.reason.to_owned(),
        provider,
        provider_ref: None,
        failure: None,
        created_at: ts,
    };
    Ok(RefundTicket { refund, payment_reference: reference })
}

impl Store {
    /// Starts a refund: checks and writes it `pending` (or, for a key seen before,
    /// finds the refund it started). Returns the ticket and whether it is new.
    pub async fn begin_refund(
        &self,
        order_id: Uuid,
        ask: &RefundAsk<'_>,
        actor: &Actor,
    ) -> Result<(RefundTicket, bool), RefundError> {
        let mut tx = self.begin().await?;
        let order = lock_order(&mut tx, self.dialect, order_id).await?;
        if let Some(key) = ask.idempotency_key {
            let mut q = super::SqlBuilder::new("SELECT ");
            q.push(REFUND_COLUMNS).push(" FROM refunds WHERE order_id = ").bind(order_id.to_string());
            q.push(" AND idem_key = ").bind(key);
            if let Some(r) = q.build().fetch_optional(&mut *tx).await? {
                let refund = refund_row(&r)?;
                if refund.amount != ask.amount {
                    return Err(RefundError::KeyReused);
                }
                let payment = sqlx::query("SELECT provider_ref FROM payments WHERE order_id = $1")
                    .bind(order_id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
                let reference = payment.map(|p| opt_text(&p, "provider_ref")).transpose()?.flatten().unwrap_or_default();
                return Ok((RefundTicket { refund, payment_reference: reference }, false));
            }
        }
        // A cancelled order may still hold money whose refund failed: it can be sent again.
        if !order.status.holds_money() && order.status != OrderStatus::Cancelled {
            let event = OrderEvent::Refund { complete: false };
            return Err(OrderError::Transition(TransitionError { from: order.status, event }).into());
        }
        let ticket = insert_pending_refund(&mut tx, &order, ask, actor).await?;
        tx.commit().await?;
        Ok((ticket, true))
    }

    /// Cancels an order that has not shipped. Unpaid: its reservation is released.
    /// Paid: its goods go back on hand and a pending refund of everything not yet
    /// refunded is written in the same transaction, for the caller to carry out.
    pub async fn cancel_order(
        &self,
        order_id: Uuid,
        reason: &str,
        limit: Option<i64>,
        actor: &Actor,
    ) -> Result<Option<RefundTicket>, RefundError> {
        let mut tx = self.begin().await?;
        let order = lock_order(&mut tx, self.dialect, order_id).await?;
        let pending = sqlx::query(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS n FROM refunds WHERE order_id = $1 AND status = 'pending'",
        )
        .bind(order_id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let left = order.grand_total - order.refunded_total - int(&pending, "n")?;
        let payment_status = sqlx::query("SELECT status FROM payments WHERE order_id = $1")
            .bind(order_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| text(&r, "status"))
            .transpose()?;
        if payment_status.as_deref() == Some("capturing") {
            return Err(RefundError::CaptureInProgress);
        }
        let held = payment_status.as_deref() == Some("authorized");
        let ticket = if held {
            // Nothing was taken: the hold is released instead (now by the caller,
            // or by this job if the caller cannot).
            let job = serde_json::json!({"order_id": order_id});
            super::jobs::enqueue_unique(&mut tx, super::payments::VOID_JOB, job, &super::payments::void_key(order_id)).await?;
            None
        } else if order.status.holds_money() && left > 0 {
            let ask = RefundAsk { amount: left, reason, idempotency_key: Some("cancel"), limit };
            Some(insert_pending_refund(&mut tx, &order, &ask, actor).await?)
        } else {
            None
        };
        apply_transition(&mut tx, &order, OrderEvent::Cancel, actor, reason).await?;
        tx.commit().await?;
        Ok(ticket)
    }

    /// Records the provider's answer. A success adds to the order's refunded total
    /// and, when nothing paid is left, makes the order `refunded`.
    pub async fn settle_refund(&self, refund_id: Uuid, settlement: &Settlement, actor: &Actor) -> Result<Refund, RefundError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT order_id FROM refunds WHERE id = $1")
            .bind(refund_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("refund"))?;
        let order = lock_order(&mut tx, self.dialect, id(&row, "order_id")?).await?;
        let (status, reference, failure) = match settlement {
            Settlement::Succeeded { reference } => ("succeeded", Some(reference.as_str()), None),
            Settlement::Pending { reference } => ("pending", Some(reference.as_str()), None),
            Settlement::Failed { reason } => ("failed", None, Some(reason.as_str())),
        };
        let changed = sqlx::query(
            "UPDATE refunds SET status = $1, provider_ref = COALESCE($2, provider_ref), failure = $3, updated_at = $4
             WHERE id = $5 AND status = 'pending'",
        )
        .bind(status)
        .bind(reference)
        .bind(failure)
        .bind(now())
        .bind(refund_id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 1 && status == "succeeded" {
            let refund = self.refund_in(&mut tx, refund_id).await?;
            let total = order.refunded_total + refund.amount;
            sqlx::query("UPDATE orders SET refunded_total = $1, updated_at = $2 WHERE id = $3")
                .bind(total)
                .bind(now())
                .bind(order.id.to_string())
                .execute(&mut *tx)
                .await?;
            let reason = format!("refund {} of {} {}", refund.id, refund.amount, refund.currency);
            if order.status.holds_money() {
                let complete = total >= order.grand_total;
                apply_transition(&mut tx, &order, OrderEvent::Refund { complete }, actor, &reason).await?;
            } else {
                // A cancelled order's money going back: history, no status change.
                record_event(&mut tx, order.id, Some(order.status), order.status, actor, &reason).await?;
            }
            let payload = serde_json::json!({
                "order_id": order.id, "refund_id": refund.id, "amount": refund.amount,
                "currency": refund.currency, "partial": total < order.grand_total,
            });
            insert_outbox(&mut tx, "refund.succeeded", payload).await?;
        }
        let refund = self.refund_in(&mut tx, refund_id).await?;
        tx.commit().await?;
        Ok(refund)
    }

    async fn refund_in(&self, tx: &mut Tx, refund_id: Uuid) -> StoreResult<Refund> {
        let mut q = super::SqlBuilder::new("SELECT ");
        q.push(REFUND_COLUMNS).push(" FROM refunds WHERE id = ").bind(refund_id.to_string());
        refund_row(&q.build().fetch_one(&mut **tx).await?)
    }

    pub async fn refunds(&self, order_id: Uuid) -> StoreResult<Vec<Refund>> {
        let mut q = super::SqlBuilder::new("SELECT ");
        q.push(REFUND_COLUMNS).push(" FROM refunds WHERE order_id = ").bind(order_id.to_string()).push(" ORDER BY id");
        q.build().fetch_all(&self.pool).await?.iter().map(refund_row).collect()
    }

    /// A refund with the payment reference the provider needs for it.
    pub async fn refund_ticket(&self, refund_id: Uuid) -> StoreResult<Option<RefundTicket>> {
        let mut q = super::SqlBuilder::new("SELECT ");
        q.push(REFUND_COLUMNS).push(" FROM refunds WHERE id = ").bind(refund_id.to_string());
        let Some(row) = q.build().fetch_optional(&self.pool).await? else { return Ok(None) };
        let refund = refund_row(&row)?;
        let reference = self.payment_of(refund.order_id).await?.and_then(|p| p.provider_ref).unwrap_or_default();
        Ok(Some(RefundTicket { refund, payment_reference: reference }))
    }

    /// The refund a provider knows by `reference`.
    pub async fn refund_by_ref(&self, provider: &str, reference: &str) -> StoreResult<Option<Uuid>> {
        let row = sqlx::query("SELECT id FROM refunds WHERE provider = $1 AND provider_ref = $2")
            .bind(provider)
            .bind(reference)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| id(&r, "id")).transpose()
    }
}
