//! Workers for the durable job queue. A worker claims due jobs with a lease,
//! runs each through the handler registered for its kind, and records the
//! outcome; a job whose worker dies mid-run is claimed again when its lease runs
//! out. A job can therefore run more than once, never zero times: handlers must
//! be idempotent (an effect keyed by the job's id or by the thing it acts on).

pub mod foreground;
pub mod retry_payment;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

pub use foreground::Foreground;
use foreground::Hold;

use crate::domain::backoff::retry_delay;
use crate::store::Store;
use crate::store::jobs::Job;

pub type JobFuture<'a> = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send + 'a>>;

/// Why a job did not finish. Most failures may pass (the job runs again after a
/// backoff); a permanent one cannot, so the job goes to the dead letters at once
/// instead of spending its attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub message: String,
    pub permanent: bool,
}

impl JobError {
    pub fn retry(message: impl Into<String>) -> Self {
        Self { message: message.into(), permanent: false }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self { message: message.into(), permanent: true }
    }
}

impl From<String> for JobError {
    fn from(message: String) -> Self {
        Self::retry(message)
    }
}

impl From<&str> for JobError {
    fn from(message: &str) -> Self {
        Self::retry(message)
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The id a job's payload names under `field`.
pub fn payload_id(job: &Job, field: &str) -> Result<uuid::Uuid, JobError> {
    job.payload
        .get(field)
        .and_then(|v| v.as_str())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| JobError::permanent(format!("the payload of this {} job has no {field}", job.kind)))
}

/// What to do for one kind of job.
pub trait JobHandler: Send + Sync {
    fn run<'a>(&'a self, store: &'a Store, job: &'a Job) -> JobFuture<'a>;
}

/// Handlers by job kind. Kinds with no handler are events nobody subscribes to
/// yet: they are acknowledged (marked done) so the queue does not grow.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn JobHandler>>,
}

impl Registry {
    pub fn with(mut self, kind: &str, handler: Arc<dyn JobHandler>) -> Self {
        self.handlers.insert(kind.to_owned(), handler);
        self
    }
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// How long a claimed job is this worker's before others may take it over.
    pub lease: Duration,
    /// Pause between polls when the queue is empty.
    pub idle_poll: Duration,
    pub batch: i64,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// This process's checkouts, which the worker makes way for ([`foreground`]).
    pub foreground: Arc<Foreground>,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            // An idle poll is one index probe; a short pause keeps an order's
            // e-mail from waiting on it when the queue runs dry between checkouts.
            idle_poll: Duration::from_millis(100),
            batch: 10,
            retry_base: Duration::from_secs(2),
            retry_cap: Duration::from_secs(3600),
            foreground: Arc::default(),
        }
    }
}

/// Jobs a worker runs at once (on PostgreSQL).
const JOBS_AT_ONCE: usize = 10;

/// Claims and runs one batch; returns how many jobs it ran.
pub async fn run_once(store: &Store, registry: &Registry, worker: &str, settings: &WorkerSettings) -> anyhow::Result<usize> {
    let jobs = store.claim_jobs(worker, settings.batch, settings.lease).await?;
    // The jobs of a batch are independent and mostly wait on the network (a mail
    // server, a gateway, a subscriber): run them together, not one after another.
    // On SQLite, where writers queue for one lock while holding a connection the
    // API also needs, only a couple at a time.
    let at_once = if store.writers_queue() { 2 } else { JOBS_AT_ONCE };
    for group in jobs.chunks(at_once) {
        let outcomes =
            futures_util::future::join_all(group.iter().map(|job| run_one(store, registry, worker, settings, job))).await;
        outcomes.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    }
    Ok(jobs.len())
}

async fn run_one(store: &Store, registry: &Registry, worker: &str, settings: &WorkerSettings, job: &Job) -> anyhow::Result<()> {
    let outcome = match registry.handlers.get(&job.kind) {
        Some(handler) => handler.run(store, job).await,
        None => {
            tracing::debug!(job.id = %job.id, kind = %job.kind, "no handler for this event; acknowledged");
            Ok(())
        }
    };
    match outcome {
        Ok(()) => {
            store.complete_job(job.id, worker).await?;
            metrics::counter!("jobs_completed_total", "kind" => job.kind.clone()).increment(1);
        }
        Err(error) if error.permanent => {
            tracing::warn!(job.id = %job.id, kind = %job.kind, attempt = job.attempts, error = %error, "job failed for good");
            metrics::counter!("jobs_failed_total", "kind" => job.kind.clone()).increment(1);
            metrics::counter!("jobs_dead_lettered_total", "kind" => job.kind.clone()).increment(1);
            store.bury_job(job.id, worker, &error.message).await?;
        }
        Err(error) => {
            let delay = retry_delay(job.attempts as u32, settings.retry_base, settings.retry_cap, rand::rng().random());
            tracing::warn!(job.id = %job.id, kind = %job.kind, attempt = job.attempts, error = %error, "job failed");
            metrics::counter!("jobs_failed_total", "kind" => job.kind.clone()).increment(1);
            store.fail_job(job.id, worker, &error.message, delay).await?;
        }
    }
    Ok(())
}

/// Runs until the task is dropped: claim, run, and poll again when idle.
pub async fn work(store: Store, registry: Registry, worker: String, settings: WorkerSettings) {
    let mut hold = Hold::default();
    loop {
        if hold.wait(settings.foreground.busy(), std::time::Instant::now()) {
            tokio::time::sleep(foreground::HOLD_STEP).await;
            continue;
        }
        match run_once(&store, &registry, &worker, &settings).await {
            Ok(0) => {
                hold.drained();
                tokio::time::sleep(settings.idle_poll).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, worker = %worker, "job worker could not reach the queue");
                tokio::time::sleep(settings.idle_poll).await;
            }
        }
    }
}

/// Starts `count` workers named after this process.
pub fn spawn_workers(
    store: &Store,
    registry: &Registry,
    count: usize,
    settings: &WorkerSettings,
) -> Vec<tokio::task::JoinHandle<()>> {
    let host = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple());
    (0..count).map(|i| tokio::spawn(work(store.clone(), registry.clone(), format!("{host}-{i}"), settings.clone()))).collect()
}

/// Publishes queue depth and age as gauges, every `every`.
pub fn spawn_queue_metrics(store: Store, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Ok(s) = store.queue_stats().await {
                metrics::gauge!("jobs_queued").set(s.queued as f64);
                metrics::gauge!("jobs_running").set(s.running as f64);
                metrics::gauge!("jobs_dead").set(s.dead as f64);
                metrics::gauge!("jobs_oldest_due_age_seconds").set(s.oldest_due_age_secs as f64);
            }
        }
    });
}
