//! Background housekeeping. Purges and low-stock alerts run from the job queue:
//! a scheduler in every `serve` and `worker` process enqueues each task once per
//! period under a key naming the period's slot, so however many instances run,
//! each slot runs once, on whichever worker claims it. Releasing expired
//! reservations does not wait in the queue (on a sale day it is deep, and held
//! stock is stock nobody can buy): every process sweeps on its own timer, which
//! is safe because each expiry is a compare-and-set on the order.

use std::sync::Arc;
use std::time::Duration;

use crate::jobs::{JobFuture, JobHandler, Registry};
use crate::store::Store;
use crate::store::jobs::Job;

pub const PURGE: &str = "housekeeping.purge";
pub const LOW_STOCK_SCAN: &str = "housekeeping.low_stock";

/// How long finished jobs are kept for inspection.
const KEEP_FINISHED_JOBS: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long catalog changes stay in the log: an instance (its search index)
/// down for longer rebuilds its index from the catalog when it starts.
const KEEP_CATALOG_EVENTS: Duration = Duration::from_secs(7 * 24 * 3600);

/// Each queued task and how often it runs.
pub fn schedule() -> Vec<(&'static str, Duration)> {
    vec![(PURGE, Duration::from_secs(3600)), (LOW_STOCK_SCAN, Duration::from_secs(900))]
}

/// Every `every`: releases the stock of orders whose payment never came.
pub fn spawn_expiry_sweeper(store: Store, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
        loop {
            tick.tick().await;
            if store.is_closed() {
                return;
            }
            match super::checkout::expire_due(&store, &crate::store::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(orders = n, "expired unpaid orders and released their stock"),
                Err(_) if store.is_closed() => return,
                Err(e) => tracing::warn!(error = %e, "releasing expired reservations failed"),
            }
        }
    });
}

/// Every `every`: takes the units sold since the last round off on-hand stock,
/// all of a variant's sales in one update (`Store::settle_all_sales`). Not
/// queued, like the expiry sweep: it must not wait behind a sale day's queue,
/// and several processes folding at once is safe (a sale is folded by whichever
/// takes it first).
pub fn spawn_sales_folder(store: Store, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if store.is_closed() {
                return;
            }
            if let Err(e) = store.settle_all_sales().await
                && !store.is_closed()
            {
                tracing::warn!(error = %e, "folding sales into on-hand stock failed");
            }
        }
    })
}

/// How often sold units are taken off on-hand stock.
pub const FOLD_SALES_EVERY: Duration = Duration::from_secs(1);

/// The key of the slot `now` falls in: the same for every instance.
pub fn slot_key(kind: &str, period: Duration, unix_now: i64) -> String {
    let period = period.as_secs().max(1) as i64;
    format!("{kind}:{}", unix_now.div_euclid(period))
}

/// Enqueues each task once per slot, checking a few times per period.
pub fn spawn_scheduler(store: Store, schedule: Vec<(&'static str, Duration)>) {
    let tick = schedule.iter().map(|(_, p)| *p / 2).min().unwrap_or(Duration::from_secs(1)).max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        loop {
            interval.tick().await;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            for (kind, period) in &schedule {
                if store.is_closed() {
                    return;
                }
                if let Err(e) = store.enqueue_unique_job(kind, serde_json::json!({}), &slot_key(kind, *period, now)).await
                    && !store.is_closed()
                {
                    tracing::warn!(error = %e, task = kind, "could not schedule housekeeping");
                }
            }
        }
    });
}

struct Purge;

impl JobHandler for Purge {
    fn run<'a>(&'a self, store: &'a Store, _job: &'a Job) -> JobFuture<'a> {
        Box::pin(async move {
            let keys = store.purge_idempotency_keys().await.map_err(|e| e.to_string())?;
            let jobs = store.purge_finished_jobs(KEEP_FINISHED_JOBS).await.map_err(|e| e.to_string())?;
            let catalog_events = store.purge_catalog_events(KEEP_CATALOG_EVENTS).await.map_err(|e| e.to_string())?;
            tracing::info!(idempotency_keys = keys, jobs, catalog_events, "purged old records");
            Ok(())
        })
    }
}

/// Announces each variant at or under its low-stock threshold, at most once a
/// day per variant, as an `inventory.low_stock` event for staff and subscribers.
struct LowStockScan;

impl JobHandler for LowStockScan {
    fn run<'a>(&'a self, store: &'a Store, _job: &'a Job) -> JobFuture<'a> {
        Box::pin(async move {
            let day = crate::store::now()[..10].to_owned();
            for low in store.low_stock().await.map_err(|e| e.to_string())? {
                let payload = serde_json::json!({
                    "variant_id": low.variant_id, "sku": low.sku, "available": low.available, "threshold": low.low_stock_threshold,
                });
                let key = format!("{}:{}:{day}", super::events::LOW_STOCK, low.variant_id);
                store.enqueue_unique_job(super::events::LOW_STOCK, payload, &key).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }
}

pub fn register(registry: Registry) -> Registry {
    registry.with(PURGE, Arc::new(Purge)).with(LOW_STOCK_SCAN, Arc::new(LowStockScan))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_agree_on_the_slot_and_slots_change_with_the_period() {
        let minute = Duration::from_secs(60);
        assert_eq!(slot_key("t", minute, 120), slot_key("t", minute, 179));
        assert_ne!(slot_key("t", minute, 179), slot_key("t", minute, 180));
        assert_eq!(slot_key("t", Duration::ZERO, 5), "t:5");
    }
}
