//! `mercato loadtest queue`: the job queue's throughput, in this process against
//! the configured database (no HTTP).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// `mercato loadtest queue`: enqueues `jobs` no-op jobs at once, then lets
/// `workers` workers drain them, and reports jobs/s and the pick-up latency
/// (from enqueue to a worker starting the job).
pub async fn run(store: &crate::store::Store, jobs: usize, workers: usize, batch: i64) -> anyhow::Result<()> {
    use crate::jobs::{JobFuture, JobHandler, Registry, WorkerSettings, spawn_workers};
    use crate::store::jobs::Job;

    struct Noop(Arc<Mutex<Histogram<u64>>>, Arc<AtomicU64>);
    impl JobHandler for Noop {
        fn run<'a>(&'a self, _store: &'a crate::store::Store, job: &'a Job) -> JobFuture<'a> {
            Box::pin(async move {
                let queued = time::OffsetDateTime::parse(&job.run_at, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| e.to_string())?;
                let waited = (time::OffsetDateTime::now_utc() - queued).whole_microseconds().max(1) as u64;
                let _ = self.0.lock().await.record(waited);
                self.1.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
        }
    }

    let kind = format!("bench.noop.{}", uuid::Uuid::now_v7().simple());
    let payloads: Vec<Value> = (0..jobs).map(|i| json!({"i": i})).collect();
    let t = Instant::now();
    store.enqueue_many(&kind, &payloads).await?;
    eprintln!("enqueued {jobs} jobs in {:.1} s", t.elapsed().as_secs_f64());
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?));
    let done = Arc::new(AtomicU64::new(0));
    let registry = Registry::default().with(&kind, Arc::new(Noop(latency.clone(), done.clone())));
    let settings = WorkerSettings { batch, idle_poll: Duration::from_millis(50), ..WorkerSettings::default() };
    let started = Instant::now();
    let running = spawn_workers(store, &registry, workers, &settings);
    while (done.load(Ordering::Relaxed) as usize) < jobs {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    running.abort();
    let h = latency.lock().await;
    let secs = |q: f64| h.value_at_quantile(q) as f64 / 1e6;
    println!(
        "{jobs} jobs, {workers} workers, claim batch {batch}: drained in {elapsed:.1} s = {:.0} jobs/s",
        jobs as f64 / elapsed
    );
    println!("pick-up latency s: p50 {:.2}  p99 {:.2}  max {:.2}", secs(0.5), secs(0.99), h.max() as f64 / 1e6);
    Ok(())
}
