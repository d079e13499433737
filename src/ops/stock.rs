//! Stock work that runs from the queue.

use crate::jobs::{JobFuture, JobHandler};
use crate::store::Store;
use crate::store::jobs::Job;

/// Takes paid-for goods off on-hand stock (`stock.settle_sales`): the jobs queued
/// per paid order before the sales folder (`housekeeping::spawn_sales_folder`)
/// took over.
pub struct SettleSales;

impl JobHandler for SettleSales {
    fn run<'a>(&'a self, store: &'a Store, job: &'a Job) -> JobFuture<'a> {
        Box::pin(async move {
            let variants: Vec<String> = serde_json::from_value(job.payload["variant_ids"].clone()).map_err(|e| e.to_string())?;
            store.settle_sales(&variants).await.map_err(|e| e.to_string())?;
            Ok(())
        })
    }
}
