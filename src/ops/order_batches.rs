//! Group commit for checkout: concurrent checkouts are placed together, one
//! transaction and one commit for the lot ([`Store::place_orders`]), each request
//! still answered on its own.
//!
//! A lane places one batch at a time. While it is busy, new checkouts queue; when
//! it finishes, everything queued (up to [`MAX_BATCH`]) goes in the next batch.
//! So a quiet shop places each order at once, alone, and a busy one batches
//! exactly as much as the load asks for: a batch closes when the one before it
//! has committed (a few milliseconds) or when it is full. Orders are spread over
//! lanes by their first variant, so every buyer of a hot variant meets in one lane
//! while unrelated orders are placed in parallel (orders that use a limited
//! promotion go by the promotion instead, for the same reason). Across processes, batches of
//! the same variant serialise on its stock row lock, which is what keeps them correct.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::batch_lane::BatchLane;
use crate::store::audit::Actor;
use crate::store::orders::{NewOrder, Placed};
use crate::store::placement::Placement;
use crate::store::{Store, StoreError, StoreResult};

/// The most orders one transaction places.
pub const MAX_BATCH: usize = 512;

struct Waiting {
    order: Arc<NewOrder>,
    scope: String,
    key: String,
    actor: Actor,
    answer: oneshot::Sender<StoreResult<Placed>>,
}

#[derive(Clone)]
pub struct OrderBatches {
    store: Store,
    lanes: Arc<Vec<BatchLane<Waiting>>>,
}

impl OrderBatches {
    /// One lane on SQLite, where every write transaction takes the same lock;
    /// `lanes` on PostgreSQL.
    pub fn new(store: Store, lanes: usize) -> Self {
        let lanes = if store.writers_queue() { 1 } else { lanes.max(1) };
        Self { store, lanes: Arc::new((0..lanes).map(|_| BatchLane::default()).collect()) }
    }

    /// Places `order` in the next batch of its lane and waits for its outcome.
    pub async fn place(&self, order: Arc<NewOrder>, idempotency: (&str, &str), actor: &Actor) -> StoreResult<Placed> {
        // Orders that take a limited promotion's use meet in its lane, so its
        // counter is locked once per batch, like a hot variant's stock row.
        let limited = order.discounts.iter().filter(|d| d.limited || d.single_use).map(|d| d.promotion_id).min();
        let first = limited.or_else(|| order.lines.iter().map(|l| l.variant_id).min()).unwrap_or_default();
        let lane = (first.as_u128() % self.lanes.len() as u128) as usize;
        let (answer, outcome) = oneshot::channel();
        let waiting =
            Waiting { order, scope: idempotency.0.to_owned(), key: idempotency.1.to_owned(), actor: actor.clone(), answer };
        if self.lanes[lane].push(waiting) {
            // The batch runs in its own task: a buyer who hangs up must not take
            // the other buyers' orders down with their request.
            let this = self.clone();
            tokio::spawn(async move { this.drain(lane).await });
        }
        outcome.await.unwrap_or_else(|_| Err(StoreError::Corrupt("the order batch stopped before answering".into())))
    }

    async fn drain(&self, lane: usize) {
        let lane = &self.lanes[lane];
        let mut drainer = lane.drainer();
        crate::batch_lane::gather().await;
        while let Some(batch) = drainer.next_batch(MAX_BATCH) {
            self.run(batch).await;
        }
    }

    async fn run(&self, batch: Vec<Waiting>) {
        metrics::histogram!("mercato_order_batch_size").record(batch.len() as f64);
        let variants: Vec<Uuid> =
            batch.iter().flat_map(|w| w.order.lines.iter().map(|l| l.variant_id)).collect::<BTreeSet<_>>().into_iter().collect();
        let sold_out = self.store.sold_out();
        let seen = sold_out.generations(&variants).await;
        let placements: Vec<Placement<'_>> =
            batch.iter().map(|w| Placement { order: &w.order, idempotency: (&w.scope, &w.key), actor: &w.actor }).collect();
        match self.store.place_orders(&placements).await {
            Ok(done) => {
                drop(placements);
                sold_out.observed_in_stock(&done.in_stock);
                for (w, placed) in batch.into_iter().zip(done.placed) {
                    let _ = w.answer.send(Ok(placed));
                }
                // After the answers: with Redis this is a network round trip.
                sold_out.mark(&seen, &done.sold_out).await;
            }
            Err(e) if batch.len() > 1 => {
                // One bad order (or a deadlock) must not fail the others: place
                // each alone.
                tracing::warn!(error = %e, orders = batch.len(), "order batch failed; placing its orders one by one");
                drop(placements);
                for w in batch {
                    let placed = self.place_alone(&w).await;
                    let _ = w.answer.send(placed);
                }
            }
            Err(e) => {
                drop(placements);
                if let Some(w) = batch.into_iter().next() {
                    let _ = w.answer.send(Err(e));
                }
            }
        }
    }

    async fn place_alone(&self, w: &Waiting) -> StoreResult<Placed> {
        let one = [Placement { order: &w.order, idempotency: (&w.scope, &w.key), actor: &w.actor }];
        let placed = self.store.place_orders(&one).await.map(|mut d| d.placed.remove(0))?;
        // The batch's commit may have gone through although it reported an error
        // (a connection lost at COMMIT): then this cart is closed by this very order.
        if matches!(placed, Placed::CartClosed) && self.store.order(w.order.id).await?.is_some() {
            return Ok(Placed::Order);
        }
        Ok(placed)
    }
}
