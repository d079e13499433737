//! Marking paid orders paid, many in one transaction: the second write of a
//! checkout, grouped like the first ([`super::placement`]).
//!
//! After a flash sale's placing batch, hundreds of payments come back from the
//! provider within milliseconds, and each used to take its own transaction of
//! ten statements (lock the order, record the payment, move the order, sell its
//! reservations, history, outbox, the stored answer). Here every step is one
//! statement for the lot. It does for each order exactly what
//! [`Store::settle_payment`] does for a payment that succeeded (or was
//! authorized) on an order still waiting for it; an order that moved on
//! meanwhile (expired, cancelled, paid by its webhook) is left untouched and
//! reported, for the single path to judge as before.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::audit::Actor;
use super::idempotency::KeyAnswer;
use super::orders::order_status;
use super::rows::id;
use super::{Arg, Dialect, SqlBuilder, Store, StoreResult, new_id, now};
use crate::domain::order_status::OrderStatus;

/// An order whose payment the provider accepted.
pub struct Paying<'a> {
    pub order_id: Uuid,
    /// `succeeded`, or `authorized` (held on the card, taken when it ships).
    pub status: &'a str,
    pub reference: Option<&'a str>,
    /// Why, for the order's history: what the provider said.
    pub reason: &'a str,
    /// The checkout's answer, stored under its key as the order becomes paid.
    pub answer: KeyAnswer<'a>,
}

impl Store {
    /// Marks paid every order of `paying` still waiting for its payment, in one
    /// transaction; returns, in order, whether each was.
    pub async fn pay_orders(&self, paying: &[Paying<'_>], actor: &Actor) -> StoreResult<Vec<bool>> {
        let mut tx = self.begin().await?;
        let ids: BTreeSet<String> = paying.iter().map(|p| p.order_id.to_string()).collect();
        let mut q = SqlBuilder::new("SELECT id, status FROM orders WHERE id IN (");
        // Locked in id order, as every batch does, so two batches cannot deadlock.
        q.bind_list(ids).push(") ORDER BY id");
        if self.dialect == Dialect::Postgres {
            q.push(" FOR UPDATE");
        }
        let mut waiting: BTreeSet<Uuid> = BTreeSet::new();
        for r in q.build().fetch_all(&mut *tx).await? {
            if order_status(&r)? == OrderStatus::PendingPayment {
                waiting.insert(id(&r, "id")?);
            }
        }
        // The same key twice would be one order paid twice: only the first goes.
        let mut seen = BTreeSet::new();
        let paid: Vec<bool> = paying.iter().map(|p| waiting.contains(&p.order_id) && seen.insert(p.order_id)).collect();
        let these: Vec<&Paying<'_>> = paying.iter().zip(&paid).filter(|(_, p)| **p).map(|(p, _)| p).collect();
        if these.is_empty() {
            tx.rollback().await?;
            return Ok(paid);
        }
        let ts = now();
        let order_ids = || these.iter().map(|p| p.order_id.to_string());

        let mut q = SqlBuilder::new(
            "UPDATE payments SET
                status = CASE WHEN payments.status IN ('started', 'pending', 'unknown') THEN v.column2 ELSE payments.status END,
                provider_ref = COALESCE(payments.provider_ref, v.column3), updated_at = ",
        );
        q.bind(ts.as_str()).push(" FROM (VALUES ");
        q.bind_rows(
            these
                .iter()
                .map(|p| vec![p.order_id.to_string().into(), p.status.into(), Arg::OptText(p.reference.map(str::to_owned))]),
        );
        q.push(") AS v WHERE payments.order_id = v.column1");
        q.build().execute(&mut *tx).await?;

        let mut q = SqlBuilder::new("UPDATE orders SET status = 'paid', updated_at = ");
        q.bind(ts.as_str()).push(" WHERE status = 'pending_payment' AND id IN (");
        q.bind_list(order_ids()).push(")");
        q.build().execute(&mut *tx).await?;

        // Sold: the reservations stay until the sales folder takes them off on-hand.
        let mut q = SqlBuilder::new("UPDATE reservations SET status = 'sold' WHERE status = 'held' AND order_id IN (");
        q.bind_list(order_ids()).push(")");
        q.build().execute(&mut *tx).await?;

        let mut q = SqlBuilder::new(
            "INSERT INTO order_events (id, order_id, from_status, to_status, actor_type, actor_id, reason, created_at) VALUES ",
        );
        q.bind_rows(these.iter().map(|p| {
            vec![
                new_id().to_string().into(),
                p.order_id.to_string().into(),
                OrderStatus::PendingPayment.as_str().into(),
                OrderStatus::Paid.as_str().into(),
                actor.kind.into(),
                Arg::OptText(actor.id.map(|a| a.to_string())),
                p.reason.into(),
                ts.as_str().into(),
            ]
        }));
        q.build().execute(&mut *tx).await?;

        let events: Vec<(&str, serde_json::Value)> =
            these.iter().map(|p| ("order.paid", serde_json::json!({"order_id": p.order_id}))).collect();
        super::jobs::enqueue_many_in(&mut tx, &events).await?;

        let mut q = SqlBuilder::new(
            "UPDATE idempotency_keys SET state = 'done', response_status = v.column3, response_body = v.column4
             FROM (VALUES ",
        );
        q.bind_rows(these.iter().map(|p| {
            let a = &p.answer;
            vec![a.scope.into(), a.key.into(), i64::from(a.status).into(), a.body.into()]
        }));
        q.push(
            ") AS v WHERE idempotency_keys.scope = v.column1 AND idempotency_keys.idem_key = v.column2
               AND idempotency_keys.state = 'running'",
        );
        q.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(paid)
    }
}
