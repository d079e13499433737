//! Group commit for the paid transition: the payments that come back from the
//! provider at the same moment are recorded together ([`Store::pay_orders`]),
//! one transaction and one commit for the lot, each checkout still answered on
//! its own. The orders are distinct rows, locked in id order, so batches (a few
//! at once here, and in other processes) never wait on each other for long and
//! cannot deadlock.

use std::sync::Arc;

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::batch_lane::BatchLane;
use crate::domain::order_status::OrderStatus;
use crate::store::audit::Actor;
use crate::store::idempotency::KeyAnswer;
use crate::store::paying::Paying;
use crate::store::{Store, StoreError, StoreResult};

/// The most orders one transaction marks paid.
pub const MAX_BATCH: usize = 256;
/// Batches in flight at once.
const PARALLEL: usize = 2;

struct Waiting {
    order_id: Uuid,
    status: &'static str,
    reference: Option<String>,
    reason: String,
    scope: String,
    key: String,
    answer_status: u16,
    body: String,
    paid: oneshot::Sender<StoreResult<bool>>,
}

impl Waiting {
    fn paying(&self) -> Paying<'_> {
        Paying {
            order_id: self.order_id,
            status: self.status,
            reference: self.reference.as_deref(),
            reason: &self.reason,
            answer: KeyAnswer {
                scope: &self.scope,
                key: &self.key,
                when: OrderStatus::Paid,
                status: self.answer_status,
                body: &self.body,
            },
        }
    }
}

/// What the provider said about one order's payment.
pub struct Accepted<'a> {
    pub order_id: Uuid,
    /// `succeeded` or `authorized`.
    pub status: &'static str,
    pub reference: Option<&'a str>,
    pub reason: &'a str,
}

#[derive(Clone)]
pub struct PaymentBatches {
    store: Store,
    lane: Arc<BatchLane<Waiting>>,
}

impl PaymentBatches {
    pub fn new(store: Store) -> Self {
        Self { store, lane: Arc::new(BatchLane::new(PARALLEL)) }
    }

    /// Marks the order paid in the next batch, with `answer` stored under its
    /// key. `false` when the order was no longer waiting for its payment.
    pub async fn pay(&self, accepted: Accepted<'_>, answer: &KeyAnswer<'_>) -> StoreResult<bool> {
        debug_assert_eq!(answer.when, OrderStatus::Paid, "only a paid order's answer is stored here");
        let (paid, outcome) = oneshot::channel();
        let waiting = Waiting {
            order_id: accepted.order_id,
            status: accepted.status,
            reference: accepted.reference.map(str::to_owned),
            reason: accepted.reason.to_owned(),
            scope: answer.scope.to_owned(),
            key: answer.key.to_owned(),
            answer_status: answer.status,
            body: answer.body.to_owned(),
            paid,
        };
        if self.lane.push(waiting) {
            // Its own task: a buyer who hangs up must not stop the others' batch.
            let this = self.clone();
            tokio::spawn(async move { this.drain().await });
        }
        outcome.await.unwrap_or_else(|_| Err(StoreError::Corrupt("the payment batch stopped before answering".into())))
    }

    async fn drain(&self) {
        let mut drainer = self.lane.drainer();
        crate::batch_lane::gather().await;
        while let Some(batch) = drainer.next_batch(MAX_BATCH) {
            self.run(batch).await;
        }
    }

    async fn run(&self, batch: Vec<Waiting>) {
        metrics::histogram!("mercato_payment_batch_size").record(batch.len() as f64);
        let provider = Actor { kind: "provider", id: None, request_id: None };
        let paying: Vec<Paying<'_>> = batch.iter().map(Waiting::paying).collect();
        match self.store.pay_orders(&paying, &provider).await {
            Ok(paid) => {
                drop(paying);
                for (w, paid) in batch.into_iter().zip(paid) {
                    let _ = w.paid.send(Ok(paid));
                }
            }
            Err(e) if batch.len() > 1 => {
                // One bad row (or a deadlock) must not fail the others.
                tracing::warn!(error = %e, orders = batch.len(), "payment batch failed; recording its orders one by one");
                drop(paying);
                for w in batch {
                    let paid = self.store.pay_orders(&[w.paying()], &provider).await.map(|p| p.first() == Some(&true));
                    let _ = w.paid.send(paid);
                }
            }
            Err(e) => {
                drop(paying);
                if let Some(w) = batch.into_iter().next() {
                    let _ = w.paid.send(Err(e));
                }
            }
        }
    }
}
