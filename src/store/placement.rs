//! Placing orders: the one write checkout must do before it answers, for a batch
//! of concurrent checkouts in one transaction.
//!
//! Under a flash sale every buyer wants the same stock row, and a transaction per
//! buyer is capped by how fast the database can update that one row. A batch
//! instead locks the rows once, shares them out in arrival order
//! ([`crate::domain::allocation`]), writes one conditional update per row and
//! commits once; every order still gets its own answer. A batch of one is the
//! plain single checkout.
//!
//! Order of work: close the carts (their rows are not contended), lock and read
//! the stock rows in (variant, location priority) order — the order every writer
//! of stock uses, so batches cannot deadlock each other — allocate, update, and
//! write the winners' rows with multi-row statements so the locks are held for a
//! handful of statements whatever the batch size.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::audit::Actor;
use super::inventory::Shortage;
use super::orders::{NewOrder, Placed};
use super::rows::{id, int, text, to_json};
use super::{Arg, Dialect, SqlBuilder, Store, StoreError, StoreResult, Tx, new_id, now};
use crate::domain::allocation::{Available, allocate_gated};
use crate::domain::order_status::OrderStatus;
use crate::domain::promotions::usage::{Claim, Refusal};

/// One checkout's order, with its idempotency record and who placed it.
pub struct Placement<'a> {
    pub order: &'a NewOrder,
    /// The idempotency record (scope, key) to link to the order.
    pub idempotency: (&'a str, &'a str),
    pub actor: &'a Actor,
}

/// What a batch did: one outcome per placement, in order, and what it saw of
/// its variants' stock.
pub struct Placements {
    pub placed: Vec<Placed>,
    pub sold_out: Vec<Uuid>,
    /// Variants it found stock left for.
    pub in_stock: Vec<Uuid>,
}

/// Bound values per multi-row statement (PostgreSQL allows 65,535, SQLite 32,766).
const VALUES_PER_STATEMENT: usize = 10_000;

impl Store {
    pub async fn place_orders(&self, batch: &[Placement<'_>]) -> StoreResult<Placements> {
        let mut tx = self.begin().await?;
        let mut outcome: Vec<Option<Placed>> = batch.iter().map(|_| None).collect();

        // One checkout per cart tries to close it: the one that priced its newest
        // version (the others priced a version that is gone: `CartChanged`), the
        // first of them when several did (the rest: `CartClosed`, as if they came
        // just after).
        let mut candidate: BTreeMap<Uuid, usize> = BTreeMap::new();
        for (i, p) in batch.iter().enumerate() {
            let best = candidate.entry(p.order.cart_id).or_insert(i);
            if p.order.cart_seen > batch[*best].order.cart_seen {
                *best = i;
            }
        }
        let trying: Vec<usize> = candidate.values().copied().collect();
        let closed = close_carts(&mut tx, batch, &trying).await?;
        for (i, p) in batch.iter().enumerate() {
            let first = candidate[&p.order.cart_id];
            if i == first {
                if !closed.contains(&p.order.cart_id) {
                    outcome[i] = Some(Placed::CartChanged);
                }
            } else if p.order.cart_seen == batch[first].order.cart_seen && closed.contains(&p.order.cart_id) {
                outcome[i] = Some(Placed::CartClosed);
            } else {
                outcome[i] = Some(Placed::CartChanged);
            }
        }
        let refused: Vec<usize> = (0..batch.len()).filter(|i| outcome[*i].is_some()).collect();
        if !refused.is_empty() {
            let carts: Vec<String> = refused.iter().map(|i| batch[*i].order.cart_id.to_string()).collect();
            let mut q = SqlBuilder::new("SELECT id, status FROM carts WHERE id IN (");
            q.bind_list(carts).push(")");
            let open: BTreeSet<Uuid> = q
                .build()
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .filter(|r| text(r, "status").is_ok_and(|s| s == "open"))
                .filter_map(|r| id(r, "id").ok())
                .collect();
            for i in refused {
                if matches!(outcome[i], Some(Placed::CartChanged)) && !open.contains(&batch[i].order.cart_id) {
                    outcome[i] = Some(Placed::CartClosed);
                }
            }
        }

        let live: Vec<usize> = (0..batch.len()).filter(|i| outcome[*i].is_none()).collect();
        let variants: BTreeSet<Uuid> = live.iter().flat_map(|i| batch[*i].order.lines.iter().map(|l| l.variant_id)).collect();
        let stock = lock_stock(&mut tx, &variants).await?;
        // Promotion counters after the stock rows: the order cancellations take them in.
        let claims: Vec<Vec<Claim>> =
            live.iter().map(|i| super::promotions::claims(&batch[*i].order.discounts, &batch[*i].order.customer_key)).collect();
        let mut usage = super::promotions::lock_usage(&mut tx, &claims.iter().flatten().collect::<Vec<_>>()).await?;
        let wanted: Vec<Vec<(Uuid, i64)>> =
            live.iter().map(|i| batch[*i].order.lines.iter().map(|l| (l.variant_id, l.quantity)).collect()).collect();
        let mut refusals: BTreeMap<usize, Refusal> = BTreeMap::new();
        let allocation = allocate_gated(stock, &wanted, |k| match usage.take(&claims[k]) {
            Ok(()) => true,
            Err(refusal) => {
                refusals.insert(k, refusal);
                false
            }
        });
        for ((variant, location), quantity) in allocation.totals() {
            // Under the lock this cannot miss; the condition (and the CHECK behind
            // it) is what guarantees no oversell even if it somehow did.
            let done = sqlx::query(
                "UPDATE stock_levels SET reserved = reserved + $1
                 WHERE variant_id = $2 AND location_id = $3 AND on_hand - reserved >= $1",
            )
            .bind(quantity)
            .bind(variant.to_string())
            .bind(location.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done != 1 {
                tx.rollback().await?;
                return Err(StoreError::Corrupt(format!("stock of {variant} changed under its lock")));
            }
        }

        let mut winners = Vec::new();
        let mut losers = Vec::new();
        for (k, (i, result)) in live.iter().zip(&allocation.orders).enumerate() {
            match result {
                Ok(grants) => winners.push((*i, grants)),
                Err(_) if refusals.contains_key(&k) => {
                    outcome[*i] = refusals.remove(&k).map(Placed::PromotionUnavailable);
                    losers.push(*i);
                }
                Err(shorts) => {
                    let shortages = shorts
                        .iter()
                        .map(|s| Shortage { variant_id: s.variant, requested: s.requested, available: s.available })
                        .collect();
                    outcome[*i] = Some(Placed::OutOfStock(shortages));
                    losers.push(*i);
                }
            }
        }
        // Search shows whether a product is in stock: log the variants this batch emptied.
        for variant in allocation.sold_out() {
            if winners.iter().any(|(_, grants)| grants.iter().any(|g| g.variant == variant)) {
                tx.stock_changed(variant);
            }
        }
        reopen_carts(&mut tx, batch, &losers).await?;
        if !winners.is_empty() {
            write_orders(&mut tx, batch, &winners).await?;
            let discounts: Vec<(Uuid, &str, &[super::promotions::NewDiscount])> = winners
                .iter()
                .map(|(i, _)| (batch[*i].order.id, batch[*i].order.customer_key.as_str(), batch[*i].order.discounts.as_slice()))
                .filter(|(_, _, d)| !d.is_empty())
                .collect();
            let limited = usage.counters.iter().filter(|(_, c)| c.usage_limit.is_some()).map(|(id, _)| *id).collect();
            super::promotions::record_discounts(&mut tx, &discounts, &limited).await?;
        }
        tx.commit().await?;
        for (i, _) in &winners {
            outcome[*i] = Some(Placed::Order);
        }
        Ok(Placements {
            placed: outcome.into_iter().map(|o| o.unwrap_or(Placed::CartChanged)).collect(),
            sold_out: allocation.sold_out().collect(),
            in_stock: allocation.in_stock().collect(),
        })
    }
}

/// Closes the carts of `which` (one entry per cart) that are still open and
/// unchanged since they were priced; returns those closed.
async fn close_carts(tx: &mut Tx, batch: &[Placement<'_>], which: &[usize]) -> StoreResult<BTreeSet<Uuid>> {
    let mut q = SqlBuilder::new("UPDATE carts SET status = 'checked_out', updated_at = ");
    q.bind(now()).push(" FROM (VALUES ");
    q.bind_rows(
        which.iter().map(|i| vec![batch[*i].order.cart_id.to_string().into(), batch[*i].order.cart_seen.as_str().into()]),
    );
    q.push(
        ") AS seen WHERE carts.id = seen.column1 AND carts.status = 'open' AND carts.updated_at = seen.column2
         RETURNING carts.id",
    );
    q.build().fetch_all(&mut **tx).await?.iter().map(|r| id(r, "id")).collect()
}

/// Gives the carts of refused orders back as they were.
async fn reopen_carts(tx: &mut Tx, batch: &[Placement<'_>], which: &[usize]) -> StoreResult<()> {
    if which.is_empty() {
        return Ok(());
    }
    let mut q = SqlBuilder::new("UPDATE carts SET status = 'open', updated_at = seen.column2 FROM (VALUES ");
    q.bind_rows(
        which.iter().map(|i| vec![batch[*i].order.cart_id.to_string().into(), batch[*i].order.cart_seen.as_str().into()]),
    );
    q.push(") AS seen WHERE carts.id = seen.column1");
    q.build().execute(&mut **tx).await?;
    Ok(())
}

/// Locks the stock rows of `variants` and reads what each location can give,
/// locations in reservation order. Every writer that changes several stock rows
/// locks them through this, so all take them in one order.
pub(super) async fn lock_stock(tx: &mut Tx, variants: &BTreeSet<Uuid>) -> StoreResult<BTreeMap<Uuid, Vec<Available>>> {
    let mut stock: BTreeMap<Uuid, Vec<Available>> = BTreeMap::new();
    if variants.is_empty() {
        return Ok(stock);
    }
    let mut q = SqlBuilder::new(
        "SELECT s.variant_id, s.location_id, s.on_hand - s.reserved AS available
         FROM stock_levels s JOIN stock_locations l ON l.id = s.location_id WHERE s.variant_id IN (",
    );
    q.bind_list(variants.iter().map(|v| v.to_string())).push(") ORDER BY s.variant_id, l.priority, l.id");
    // SQLite: the transaction holds the database's write lock already.
    if tx.dialect() == Dialect::Postgres {
        q.push(" FOR UPDATE OF s");
    }
    for r in q.build().fetch_all(&mut **tx).await? {
        stock
            .entry(id(&r, "variant_id")?)
            .or_default()
            .push(Available { location: id(&r, "location_id")?, quantity: int(&r, "available")? });
    }
    Ok(stock)
}

/// The winners' orders, lines, started payments, reservations, ledger
/// movements, first history rows, `order.placed` events and idempotency links.
async fn write_orders(
    tx: &mut Tx,
    batch: &[Placement<'_>],
    winners: &[(usize, &Vec<crate::domain::allocation::Grant>)],
) -> StoreResult<()> {
    let ts = now();
    let pending = OrderStatus::PendingPayment.as_str();
    for chunk in winners.chunks(VALUES_PER_STATEMENT / 20) {
        let mut q = SqlBuilder::new(
            "INSERT INTO orders (id, number, customer_id, cart_id, email, status, currency, tax_mode, subtotal, shipping_total,
                discount_total, tax_total, grand_total, shipping_option_id, shipping_address, billing_address, access_token_hash,
                reserved_until, created_at, updated_at) VALUES ",
        );
        q.bind_rows(chunk.iter().map(|(i, _)| {
            let o = batch[*i].order;
            vec![
                o.id.to_string().into(),
                o.number.as_str().into(),
                o.customer_id.map(|c| c.to_string()).into(),
                o.cart_id.to_string().into(),
                o.email.as_str().into(),
                pending.into(),
                o.currency.as_str().into(),
                o.tax_mode.into(),
                o.subtotal.into(),
                o.shipping_total.into(),
                o.discount_total.into(),
                o.tax_total.into(),
                o.grand_total.into(),
                o.shipping_option_id.map(|s| s.to_string()).into(),
                to_json(&o.shipping_address).into(),
                to_json(&o.billing_address).into(),
                o.access_token_hash.as_str().into(),
                o.reserved_until.as_str().into(),
                o.created_at.as_str().into(),
                o.created_at.as_str().into(),
            ]
        }));
        q.build().execute(&mut **tx).await.map_err(StoreError::from_db)?;
    }
    let lines: Vec<Vec<Arg>> = winners
        .iter()
        .flat_map(|(i, _)| {
            let o = batch[*i].order;
            o.lines.iter().map(move |l| {
                vec![
                    l.id.to_string().into(),
                    o.id.to_string().into(),
                    l.variant_id.to_string().into(),
                    l.sku.as_str().into(),
                    l.title.as_str().into(),
                    to_json(&l.options).into(),
                    l.quantity.into(),
                    l.unit_price.into(),
                    l.line_total.into(),
                    l.discount.into(),
                    l.tax.into(),
                ]
            })
        })
        .collect();
    insert_rows(
        tx,
        "INSERT INTO order_lines (id, order_id, variant_id, sku, title, options, quantity, unit_price, line_total, discount, tax)
         VALUES ",
        lines,
    )
    .await?;
    // The payment is being started: recorded with the order, so checkout goes
    // from placing straight to the provider.
    let payments: Vec<Vec<Arg>> = winners
        .iter()
        .map(|(i, _)| {
            let o = batch[*i].order;
            vec![
                new_id().to_string().into(),
                o.id.to_string().into(),
                o.payment_provider.as_str().into(),
                o.grand_total.into(),
                o.currency.as_str().into(),
                ts.as_str().into(),
            ]
        })
        .collect();
    insert_rows(
        tx,
        "INSERT INTO payments (id, order_id, provider, status, amount, currency, created_at, updated_at)
         SELECT column1, column2, column3, 'started', CAST(column4 AS BIGINT), column5, column6, column6 FROM (VALUES ",
        payments,
    )
    .await?;
    let mut reservations = Vec::new();
    let mut movements = Vec::new();
    for (i, grants) in winners {
        let p = &batch[*i];
        for g in grants.iter() {
            reservations.push(vec![
                new_id().to_string().into(),
                p.order.id.to_string().into(),
                g.variant.to_string().into(),
                g.location.to_string().into(),
                g.quantity.into(),
                p.order.reserved_until.as_str().into(),
                ts.as_str().into(),
            ]);
            movements.push(vec![
                new_id().to_string().into(),
                g.variant.to_string().into(),
                g.location.to_string().into(),
                g.quantity.into(),
                p.order.id.to_string().into(),
                p.actor.kind.into(),
                p.actor.id.map(|a| a.to_string()).into(),
                ts.as_str().into(),
            ]);
        }
    }
    insert_rows(
        tx,
        "INSERT INTO reservations (id, order_id, variant_id, location_id, quantity, status, expires_at, created_at)
         SELECT column1, column2, column3, column4, CAST(column5 AS BIGINT), 'held', column6, column7 FROM (VALUES ",
        reservations,
    )
    .await?;
    insert_rows(
        tx,
        "INSERT INTO stock_movements
            (id, variant_id, location_id, kind, delta_on_hand, delta_reserved, reason, order_id, actor_type, actor_id, created_at)
         SELECT column1, column2, column3, 'reserve', 0, CAST(column4 AS BIGINT), 'checkout', column5, column6, column7, column8 FROM (VALUES ",
        movements,
    )
    .await?;
    let events: Vec<Vec<Arg>> = winners
        .iter()
        .map(|(i, _)| {
            let p = &batch[*i];
            vec![
                new_id().to_string().into(),
                p.order.id.to_string().into(),
                p.actor.kind.into(),
                p.actor.id.map(|a| a.to_string()).into(),
                ts.as_str().into(),
            ]
        })
        .collect();
    insert_rows(
        tx,
        "INSERT INTO order_events (id, order_id, from_status, to_status, actor_type, actor_id, reason, created_at)
         SELECT column1, column2, NULL, 'pending_payment', column3, column4, 'checkout', column5 FROM (VALUES ",
        events,
    )
    .await?;
    let outbox: Vec<(&str, serde_json::Value)> = winners
        .iter()
        .map(|(i, _)| ("order.placed", serde_json::json!({"order_id": batch[*i].order.id, "number": batch[*i].order.number})))
        .collect();
    super::jobs::enqueue_many_in(tx, &outbox).await?;
    let mut q = SqlBuilder::new("UPDATE idempotency_keys SET order_id = seen.column1 FROM (VALUES ");
    q.bind_rows(winners.iter().map(|(i, _)| {
        let p = &batch[*i];
        vec![p.order.id.to_string().into(), p.idempotency.0.into(), p.idempotency.1.into()]
    }));
    q.push(") AS seen WHERE idempotency_keys.scope = seen.column2 AND idempotency_keys.idem_key = seen.column3");
    q.build().execute(&mut **tx).await?;
    Ok(())
}

/// Runs `prefix` followed by the rows, as many per statement as fit. A prefix
/// ending in `FROM (VALUES ` is closed with `) AS v`.
async fn insert_rows(tx: &mut Tx, prefix: &'static str, rows: Vec<Vec<Arg>>) -> StoreResult<()> {
    for chunk in rows.chunks(VALUES_PER_STATEMENT / rows.first().map_or(1, Vec::len).max(1)) {
        let mut q = SqlBuilder::new(prefix);
        q.bind_rows(chunk.iter().cloned());
        if prefix.ends_with("FROM (VALUES ") {
            q.push(") AS v");
        }
        q.build().execute(&mut **tx).await.map_err(StoreError::from_db)?;
    }
    Ok(())
}
