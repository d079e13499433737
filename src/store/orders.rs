//! Orders: reading them and moving them through their states (each change a
//! compare-and-set on the status plus a history row). Placing them is
//! `placement`'s.

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;

use super::audit::Actor;
use super::idempotency::KeyAnswer;
use super::inventory::{self, Shortage};
use super::rows::{id, int, json, opt_id, opt_text, text};
use super::{SqlBuilder, Store, StoreError, StoreResult, Tx, new_id, now};
use crate::domain::address::Address;
use crate::domain::order_status::{OrderEvent, OrderStatus, RefundStatus, TransitionError, refund_status, transition};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderLine {
    pub id: Uuid,
    pub variant_id: Uuid,
    pub sku: String,
    pub title: String,
    pub options: BTreeMap<String, String>,
    pub quantity: i64,
    pub unit_price: i64,
    pub line_total: i64,
    /// This line's share of the order's discounts.
    pub discount: i64,
    pub tax: i64,
    pub shipped_quantity: i64,
    pub returned_quantity: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Order {
    pub id: Uuid,
    /// Short human-readable number, e.g. `M-7K3P9QX2B4TD`.
    pub number: String,
    pub status: OrderStatus,
    pub customer_id: Option<Uuid>,
    pub email: String,
    pub currency: String,
    /// `inclusive` or `exclusive`: whether line prices contain the tax.
    pub tax_mode: String,
    pub subtotal: i64,
    pub shipping_total: i64,
    /// Everything the promotions took off: `grand_total` = `subtotal` +
    /// `shipping_total` − `discount_total` (+ `tax_total` when prices exclude tax).
    pub discount_total: i64,
    /// One entry per promotion the order used.
    pub discounts: Vec<OrderDiscount>,
    pub tax_total: i64,
    pub grand_total: i64,
    /// Money given back so far.
    pub refunded_total: i64,
    pub refund_status: RefundStatus,
    pub shipping_option_id: Option<Uuid>,
    pub shipping_address: Address,
    pub billing_address: Address,
    /// Until when the stock is held for payment.
    pub reserved_until: String,
    pub lines: Vec<OrderLine>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderDiscount {
    pub promotion_id: Uuid,
    pub code: Option<String>,
    pub name: String,
    /// `order`, `lines` or `shipping`.
    pub target: String,
    pub amount: i64,
}

pub struct NewOrderLine {
    pub id: Uuid,
    pub variant_id: Uuid,
    pub sku: String,
    pub title: String,
    pub options: BTreeMap<String, String>,
    pub quantity: i64,
    pub unit_price: i64,
    pub line_total: i64,
    /// This line's share of the order's discounts.
    pub discount: i64,
    pub tax: i64,
}

pub struct NewOrder {
    pub id: Uuid,
    pub number: String,
    pub cart_id: Uuid,
    /// The cart's `updated_at` when it was priced.
    pub cart_seen: String,
    pub customer_id: Option<Uuid>,
    pub email: String,
    pub currency: String,
    pub tax_mode: &'static str,
    pub subtotal: i64,
    pub shipping_total: i64,
    pub discount_total: i64,
    pub tax_total: i64,
    pub grand_total: i64,
    pub shipping_option_id: Option<Uuid>,
    pub shipping_address: Address,
    pub billing_address: Address,
    pub access_token_hash: String,
    pub discounts: Vec<super::promotions::NewDiscount>,
    /// Whose per-customer promotion limits apply: the customer id, or `email:` and a guest's address.
    pub customer_key: String,
    pub reserved_until: String,
    pub lines: Vec<NewOrderLine>,
    /// The provider asked for the payment: its `started` payment row is written with the order.
    pub payment_provider: String,
    pub created_at: String,
}

impl NewOrder {
    /// The order as placing it stores it (waiting for payment, nothing refunded),
    /// so that checkout need not read it back.
    pub fn placed(&self) -> Order {
        let mut lines: Vec<OrderLine> = self
            .lines
            .iter()
            .map(|l| OrderLine {
                id: l.id,
                variant_id: l.variant_id,
                sku: l.sku.clone(),
                title: l.title.clone(),
                options: l.options.clone(),
                quantity: l.quantity,
                unit_price: l.unit_price,
                line_total: l.line_total,
                discount: l.discount,
                tax: l.tax,
                shipped_quantity: 0,
                returned_quantity: 0,
            })
            .collect();
        sort_lines(&mut lines);
        Order {
            id: self.id,
            number: self.number.clone(),
            status: OrderStatus::PendingPayment,
            customer_id: self.customer_id,
            email: self.email.clone(),
            currency: self.currency.clone(),
            tax_mode: self.tax_mode.to_owned(),
            subtotal: self.subtotal,
            shipping_total: self.shipping_total,
            discount_total: self.discount_total,
            discounts: self
                .discounts
                .iter()
                .map(|d| OrderDiscount {
                    promotion_id: d.promotion_id,
                    code: d.code.clone(),
                    name: d.name.clone(),
                    target: d.target.to_owned(),
                    amount: d.amount,
                })
                .collect(),
            tax_total: self.tax_total,
            grand_total: self.grand_total,
            refunded_total: 0,
            refund_status: refund_status(self.grand_total, 0),
            shipping_option_id: self.shipping_option_id,
            shipping_address: self.shipping_address.clone(),
            billing_address: self.billing_address.clone(),
            reserved_until: self.reserved_until.clone(),
            lines,
            created_at: self.created_at.clone(),
        }
    }
}

/// A provider event as received, for the inbox.
#[derive(Debug, Clone, Copy)]
pub struct InboxEntry<'a> {
    pub provider: &'a str,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub payload: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied; the order's new status.
    Done(OrderStatus),
    /// The event was applied before.
    Duplicate,
}

pub enum Placed {
    Order,
    OutOfStock(Vec<Shortage>),
    /// A promotion it uses ran out (or this buyer or code used it up) first.
    PromotionUnavailable(crate::domain::promotions::usage::Refusal),
    /// The cart was checked out by another request meanwhile.
    CartClosed,
    /// The cart's lines changed after it was priced for this checkout.
    CartChanged,
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for OrderError {
    fn from(e: sqlx::Error) -> Self {
        OrderError::Store(StoreError::from_db(e))
    }
}

const SELECT_ORDER: &str = "SELECT id, number, status, customer_id, email, currency, tax_mode, subtotal, shipping_total,
    discount_total, tax_total,
    grand_total, refunded_total, shipping_option_id, shipping_address, billing_address, reserved_until, created_at, access_token_hash FROM orders";

/// Stores a provider event by its id; false when it was stored before.
async fn store_in_inbox(tx: &mut Tx, e: InboxEntry<'_>) -> StoreResult<bool> {
    let fresh = sqlx::query(
        "INSERT INTO webhook_inbox (provider, event_id, event_type, payload, received_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (provider, event_id) DO NOTHING",
    )
    .bind(e.provider)
    .bind(e.event_id)
    .bind(e.event_type)
    .bind(e.payload)
    .bind(now())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(fresh == 1)
}

/// Announces an order event: a job in the queue, in the caller's transaction.
pub(super) async fn insert_outbox(tx: &mut Tx, topic: &str, payload: serde_json::Value) -> StoreResult<()> {
    super::jobs::enqueue(tx, topic, payload).await?;
    Ok(())
}

pub(super) async fn record_event(
    tx: &mut Tx,
    order_id: Uuid,
    from: Option<OrderStatus>,
    to: OrderStatus,
    actor: &Actor,
    reason: &str,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO order_events (id, order_id, from_status, to_status, actor_type, actor_id, reason, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new_id().to_string())
    .bind(order_id.to_string())
    .bind(from.map(|s| s.as_str()))
    .bind(to.as_str())
    .bind(actor.kind)
    .bind(actor.id.map(|i| i.to_string()))
    .bind(reason)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An order row, locked for the rest of the transaction: `FOR UPDATE` on
/// PostgreSQL; on SQLite the transaction already holds the write lock.
pub(super) struct LockedOrder {
    pub id: Uuid,
    pub status: OrderStatus,
    pub cart_id: String,
    pub currency: String,
    pub grand_total: i64,
    pub refunded_total: i64,
}

pub(super) async fn lock_order(tx: &mut Tx, dialect: super::Dialect, order_id: Uuid) -> StoreResult<LockedOrder> {
    let sql = match dialect {
        super::Dialect::Postgres => {
            "SELECT status, cart_id, currency, grand_total, refunded_total FROM orders WHERE id = $1 FOR UPDATE"
        }
        super::Dialect::Sqlite => "SELECT status, cart_id, currency, grand_total, refunded_total FROM orders WHERE id = $1",
    };
    let row =
        sqlx::query(sql).bind(order_id.to_string()).fetch_optional(&mut **tx).await?.ok_or(StoreError::NotFound("order"))?;
    Ok(LockedOrder {
        id: order_id,
        status: order_status(&row)?,
        cart_id: text(&row, "cart_id")?,
        currency: text(&row, "currency")?,
        grand_total: int(&row, "grand_total")?,
        refunded_total: int(&row, "refunded_total")?,
    })
}

/// Moves a locked order on by `event` and writes everything that goes with the
/// move in the same transaction: stock (reservations settled, a cancelled sale
/// restocked), the cart, the history row and the outbox event.
pub(super) async fn apply_transition(
    tx: &mut Tx,
    order: &LockedOrder,
    event: OrderEvent,
    actor: &Actor,
    reason: &str,
) -> Result<OrderStatus, OrderError> {
    let (from, to) = (order.status, transition(order.status, event)?);
    if to != from {
        sqlx::query("UPDATE orders SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4")
            .bind(to.as_str())
            .bind(now())
            .bind(order.id.to_string())
            .bind(from.as_str())
            .execute(&mut **tx)
            .await?;
    }
    if from.holds_reservation() && !to.holds_reservation() {
        inventory::settle_reservations(tx, order.id, to == OrderStatus::Paid, to.as_str(), actor).await?;
    }
    // The payment row says `succeeded` exactly when the order is paid: refunds and
    // late provider events rely on it.
    if to == OrderStatus::Paid && from == OrderStatus::PendingPayment {
        sqlx::query(
            "UPDATE payments SET status = 'succeeded', updated_at = $1
             WHERE order_id = $2 AND status IN ('started', 'pending', 'unknown')",
        )
        .bind(now())
        .bind(order.id.to_string())
        .execute(&mut **tx)
        .await?;
    }
    if from == OrderStatus::Paid && to == OrderStatus::Cancelled {
        inventory::restock_order(tx, order.id, None, "cancelled", actor).await?;
    }
    // Refunded in full before everything left: what never shipped is back on hand.
    if matches!(from, OrderStatus::Paid | OrderStatus::Fulfilling) && to == OrderStatus::Refunded {
        let rows = sqlx::query("SELECT variant_id, quantity - shipped_quantity AS left FROM order_lines WHERE order_id = $1")
            .bind(order.id.to_string())
            .fetch_all(&mut **tx)
            .await?;
        let mut unshipped = Vec::new();
        for r in &rows {
            unshipped.push((id(r, "variant_id")?, int(r, "left")?));
        }
        inventory::restock_order(tx, order.id, Some(&unshipped), "refunded before shipping", actor).await?;
    }
    // The goods went back to stock without a sale: give the shopper their cart
    // back, so coming back later to pay is one checkout away.
    if from == OrderStatus::PendingPayment
        && matches!(to, OrderStatus::PaymentFailed | OrderStatus::Expired | OrderStatus::Cancelled)
    {
        sqlx::query("UPDATE carts SET status = 'open', updated_at = $1 WHERE id = $2 AND status = 'checked_out'")
            .bind(now())
            .bind(order.cart_id.as_str())
            .execute(&mut **tx)
            .await?;
    }
    // The sale did not happen: its promotion uses go back.
    if to != from && matches!(to, OrderStatus::PaymentFailed | OrderStatus::Expired | OrderStatus::Cancelled) {
        super::promotions::release_discounts(tx, order.id).await?;
    }
    record_event(tx, order.id, Some(from), to, actor, reason).await?;
    if to != from {
        insert_outbox(tx, &format!("order.{}", to.as_str()), serde_json::json!({"order_id": order.id})).await?;
    }
    Ok(to)
}

impl Store {
    pub async fn order(&self, order_id: Uuid) -> StoreResult<Option<Order>> {
        Ok(self.order_with_token_hash(order_id).await?.map(|(o, _)| o))
    }

    /// The order and the hash of its guest access token.
    pub async fn order_with_token_hash(&self, order_id: Uuid) -> StoreResult<Option<(Order, String)>> {
        let mut q = SqlBuilder::new(SELECT_ORDER);
        q.push(" WHERE id = ").bind(order_id.to_string());
        let Some(r) = q.build().fetch_optional(&self.pool).await? else { return Ok(None) };
        let mut lines = sqlx::query(
            "SELECT id, variant_id, sku, title, options, quantity, unit_price, line_total, discount, tax, shipped_quantity,
                returned_quantity
             FROM order_lines WHERE order_id = $1",
        )
        .bind(order_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|l| {
            Ok(OrderLine {
                id: id(l, "id")?,
                variant_id: id(l, "variant_id")?,
                sku: text(l, "sku")?,
                title: text(l, "title")?,
                options: json(l, "options")?,
                quantity: int(l, "quantity")?,
                unit_price: int(l, "unit_price")?,
                line_total: int(l, "line_total")?,
                discount: int(l, "discount")?,
                tax: int(l, "tax")?,
                shipped_quantity: int(l, "shipped_quantity")?,
                returned_quantity: int(l, "returned_quantity")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        sort_lines(&mut lines);
        let discounts = sqlx::query(
            "SELECT promotion_id, code, name, target, amount FROM order_discounts WHERE order_id = $1 ORDER BY created_at, id",
        )
        .bind(order_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|d| {
            Ok(OrderDiscount {
                promotion_id: id(d, "promotion_id")?,
                code: opt_text(d, "code")?,
                name: text(d, "name")?,
                target: text(d, "target")?,
                amount: int(d, "amount")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        let mut order = order_row(&r, lines)?;
        order.discounts = discounts;
        Ok(Some((order, text(&r, "access_token_hash")?)))
    }

    /// Orders for staff, newest first, filtered and keyset-paged by id.
    pub async fn list_orders(&self, f: &OrderFilter) -> StoreResult<Vec<OrderSummary>> {
        let mut q =
            SqlBuilder::new("SELECT id, number, status, email, currency, grand_total, created_at FROM orders WHERE 1 = 1");
        if let Some(s) = f.status {
            q.push(" AND status = ").bind(s.as_str());
        }
        if let Some(e) = &f.email {
            q.push(" AND email = ").bind(e.as_str());
        }
        if let Some(from) = &f.created_from {
            q.push(" AND created_at >= ").bind(from.as_str());
        }
        if let Some(to) = &f.created_to {
            q.push(" AND created_at < ").bind(to.as_str());
        }
        if let Some(min) = f.total_min {
            q.push(" AND grand_total >= ").bind(min);
        }
        if let Some(max) = f.total_max {
            q.push(" AND grand_total <= ").bind(max);
        }
        if let Some(before) = f.before {
            q.push(" AND id < ").bind(before.to_string());
        }
        q.push(" ORDER BY id DESC LIMIT ").bind(f.limit);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(OrderSummary {
                    id: id(r, "id")?,
                    number: text(r, "number")?,
                    status: order_status(r)?,
                    email: text(r, "email")?,
                    currency: text(r, "currency")?,
                    grand_total: int(r, "grand_total")?,
                    created_at: text(r, "created_at")?,
                })
            })
            .collect()
    }

    /// A customer's orders, newest first, keyset-paged by id.
    pub async fn orders_of_customer(&self, customer_id: Uuid, before: Option<Uuid>, limit: i64) -> StoreResult<Vec<Order>> {
        let mut q = SqlBuilder::new("SELECT id FROM orders WHERE customer_id = ");
        q.bind(customer_id.to_string());
        if let Some(b) = before {
            q.push(" AND id < ").bind(b.to_string());
        }
        q.push(" ORDER BY id DESC LIMIT ").bind(limit);
        let ids = q.build().fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(ids.len());
        for r in &ids {
            if let Some(o) = self.order(id(r, "id")?).await? {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// Applies a named event to an order. The status update is a compare-and-set,
    /// so of two concurrent events only one applies; the loser sees the new status
    /// and is judged against it. Leaving `pending_payment` settles the reservations:
    /// committed when paid, released otherwise (and then the cart reopens, so the
    /// shopper can try again).
    pub async fn apply_order_event(
        &self,
        order_id: Uuid,
        event: OrderEvent,
        actor: &Actor,
        reason: &str,
    ) -> Result<OrderStatus, OrderError> {
        match self.apply_event(order_id, event, actor, reason, None).await? {
            Applied::Done(status) => Ok(status),
            // Only an inbox entry can be a duplicate, and none was given.
            Applied::Duplicate => Err(OrderError::Store(StoreError::Corrupt("a duplicate without an inbox entry".into()))),
        }
    }

    /// Records a provider's answer on the payment and moves the order on by
    /// `event`, in one transaction, with the checkout's `answer` when the order
    /// reaches the status it was written for. A refused transition changes
    /// nothing (the caller decides what the answer means for an order that moved on).
    pub async fn settle_payment(
        &self,
        order_id: Uuid,
        (status, reference): (&str, Option<&str>),
        event: OrderEvent,
        actor: &Actor,
        reason: &str,
        answer: Option<&KeyAnswer<'_>>,
    ) -> Result<OrderStatus, OrderError> {
        let mut tx = self.begin().await?;
        let order = lock_order(&mut tx, self.dialect, order_id).await?;
        super::payments::record_payment_status(&mut tx, order_id, status, reference).await?;
        let to = apply_transition(&mut tx, &order, event, actor, reason).await?;
        if let Some(a) = answer.filter(|a| a.when == to) {
            super::idempotency::store_answer(&mut tx, a.scope, a.key, a.status, a.body).await?;
        }
        tx.commit().await?;
        Ok(to)
    }

    /// Applies a provider's event exactly once: the event id goes into the inbox in
    /// the same transaction as its effect, so a redelivery is a no-op.
    pub async fn apply_provider_event(
        &self,
        order_id: Uuid,
        event: OrderEvent,
        actor: &Actor,
        inbox: InboxEntry<'_>,
    ) -> Result<Applied, OrderError> {
        // The history names the provider's event, so it can be found in its records.
        let reason = format!("{} {}", inbox.event_type, inbox.event_id);
        self.apply_event(order_id, event, actor, &reason, Some(inbox)).await
    }

    async fn apply_event(
        &self,
        order_id: Uuid,
        event: OrderEvent,
        actor: &Actor,
        reason: &str,
        inbox: Option<InboxEntry<'_>>,
    ) -> Result<Applied, OrderError> {
        let mut tx = self.begin().await?;
        if let Some(e) = inbox
            && !store_in_inbox(&mut tx, e).await?
        {
            return Ok(Applied::Duplicate);
        }
        let order = lock_order(&mut tx, self.dialect, order_id).await?;
        let to = apply_transition(&mut tx, &order, event, actor, reason).await?;
        tx.commit().await?;
        Ok(Applied::Done(to))
    }

    /// A provider event for an order that has already moved on. Stored once in
    /// the inbox (`None` for a redelivery). A success for an order that was paid
    /// (and perhaps shipped or cancelled since) is a repeat of what its history
    /// shows: a payment still held (`authorized`, `capturing`) is now known taken
    /// (`Some(false)`). A success for an order that was never paid (it expired or
    /// failed meanwhile) marks the payment `refund_required` and announces it on
    /// the outbox, in one transaction, so the money is never forgotten
    /// (`Some(true)`). A failure changes nothing.
    pub async fn record_late_payment_event(
        &self,
        order_id: Uuid,
        succeeded: bool,
        inbox: InboxEntry<'_>,
    ) -> StoreResult<Option<bool>> {
        let mut tx = self.begin().await?;
        if !store_in_inbox(&mut tx, inbox).await? {
            return Ok(None);
        }
        if !succeeded {
            tx.commit().await?;
            return Ok(Some(false));
        }
        let was_paid = sqlx::query("SELECT 1 AS paid FROM order_events WHERE order_id = $1 AND to_status = 'paid'")
            .bind(order_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        let refund_required = if was_paid {
            sqlx::query(
                "UPDATE payments SET status = 'succeeded', updated_at = $1 WHERE order_id = $2 AND status IN ('authorized', 'capturing')",
            )
            .bind(now())
            .bind(order_id.to_string())
            .execute(&mut *tx)
            .await?;
            false
        } else {
            let changed = sqlx::query(
                "UPDATE payments SET status = 'refund_required', updated_at = $1 WHERE order_id = $2 AND status <> 'refund_required'",
            )
            .bind(now())
            .bind(order_id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            changed == 1
        };
        if refund_required {
            insert_outbox(
                &mut tx,
                "payment.refund_required",
                serde_json::json!({"order_id": order_id, "event_id": inbox.event_id}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Some(refund_required))
    }

    /// Orders still waiting for payment whose reservation ran out before `now`.
    pub async fn orders_due_for_expiry(&self, now: &str, limit: i64) -> StoreResult<Vec<Uuid>> {
        let rows = sqlx::query(
            "SELECT id FROM orders WHERE status = 'pending_payment' AND reserved_until < $1 ORDER BY reserved_until LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| id(r, "id")).collect()
    }

    /// The order's history, oldest first.
    pub async fn order_history(&self, order_id: Uuid) -> StoreResult<Vec<OrderHistoryEntry>> {
        let rows = sqlx::query(
            "SELECT from_status, to_status, actor_type, actor_id, reason, created_at FROM order_events WHERE order_id = $1 ORDER BY id",
        )
        .bind(order_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OrderHistoryEntry {
                    from: opt_text(r, "from_status")?,
                    to: text(r, "to_status")?,
                    actor_type: text(r, "actor_type")?,
                    actor_id: opt_id(r, "actor_id")?,
                    reason: text(r, "reason")?,
                    at: text(r, "created_at")?,
                })
            })
            .collect()
    }
}

/// Filters of the staff order list; every field narrows it.
#[derive(Debug, Default, Clone)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub email: Option<String>,
    /// Stored-format times (see `store::format_time`): `created_from <= created_at < created_to`.
    pub created_from: Option<String>,
    pub created_to: Option<String>,
    pub total_min: Option<i64>,
    pub total_max: Option<i64>,
    pub before: Option<Uuid>,
    pub limit: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderSummary {
    pub id: Uuid,
    pub number: String,
    pub status: OrderStatus,
    pub email: String,
    pub currency: String,
    pub grand_total: i64,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderHistoryEntry {
    pub from: Option<String>,
    pub to: String,
    pub actor_type: String,
    pub actor_id: Option<Uuid>,
    pub reason: String,
    pub at: String,
}

/// The `status` column of an order row.
pub(super) fn order_status(r: &sqlx::any::AnyRow) -> StoreResult<OrderStatus> {
    let status = text(r, "status")?;
    OrderStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("order status {status}")))
}

/// An order's lines by SKU, byte for byte (the same whatever the database's collation).
fn sort_lines(lines: &mut [OrderLine]) {
    lines.sort_by(|a, b| a.sku.cmp(&b.sku));
}

fn order_row(r: &sqlx::any::AnyRow, lines: Vec<OrderLine>) -> StoreResult<Order> {
    Ok(Order {
        id: id(r, "id")?,
        number: text(r, "number")?,
        status: order_status(r)?,
        customer_id: opt_id(r, "customer_id")?,
        email: text(r, "email")?,
        currency: text(r, "currency")?,
        tax_mode: text(r, "tax_mode")?,
        subtotal: int(r, "subtotal")?,
        shipping_total: int(r, "shipping_total")?,
        discount_total: int(r, "discount_total")?,
        discounts: Vec::new(),
        tax_total: int(r, "tax_total")?,
        grand_total: int(r, "grand_total")?,
        refunded_total: int(r, "refunded_total")?,
        refund_status: refund_status(int(r, "grand_total")?, int(r, "refunded_total")?),
        shipping_option_id: opt_id(r, "shipping_option_id")?,
        shipping_address: json(r, "shipping_address")?,
        billing_address: json(r, "billing_address")?,
        reserved_until: text(r, "reserved_until")?,
        lines,
        created_at: text(r, "created_at")?,
    })
}
