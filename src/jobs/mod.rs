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
    /// Tells the workers started with these settings to stop ([`Workers::stop`]).
    pub stop: Stop,
}

/// A stop request the workers look at between batches and while they wait.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    requested: Arc<std::sync::atomic::AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
}

impl Stop {
    fn request(&self) {
        self.requested.store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    fn requested(&self) -> bool {
        self.requested.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sleeps for `pause`, or less when a stop is requested meanwhile.
    async fn pause(&self, pause: Duration) {
        let woken = self.wake.notified();
        if !self.requested() {
            let _ = tokio::time::timeout(pause, woken).await;
        }
    }
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
            stop: Stop::default(),
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
    for (i, group) in jobs.chunks(at_once).enumerate() {
        if settings.stop.requested() {
            // Stopping: what has not started goes back to the queue now, not
            // when its lease runs out.
            for job in &jobs[i * at_once..] {
                store.release_job(job.id, worker).await?;
            }
            break;
        }
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

/// Claims, runs, and polls again when idle, until the task is dropped or a stop
/// is requested (then it returns after the batch in hand).
pub async fn work(store: Store, registry: Registry, worker: String, settings: WorkerSettings) {
    let mut hold = Hold::default();
    while !settings.stop.requested() && !store.is_closed() {
        if hold.wait(settings.foreground.busy(), std::time::Instant::now()) {
            settings.stop.pause(foreground::HOLD_STEP).await;
            continue;
        }
        match run_once(&store, &registry, &worker, &settings).await {
            Ok(0) => {
                hold.drained();
                settings.stop.pause(settings.idle_poll).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, worker = %worker, "job worker could not reach the queue");
                settings.stop.pause(settings.idle_poll).await;
            }
        }
    }
}

/// This process's job workers.
pub struct Workers {
    handles: Vec<tokio::task::JoinHandle<()>>,
    stop: Stop,
}

impl Workers {
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Asks every worker to stop and waits until each has finished the jobs in
    /// its hands, up to `within`; a worker still busy then is stopped where it
    /// is (its jobs are claimed again when their lease runs out). A server stops
    /// its workers before it closes the database pool, so that a job is not cut
    /// off between its effect (an e-mail sent) and recording it, and then done
    /// again.
    pub async fn stop(self, within: Duration) {
        self.stop.request();
        let aborts: Vec<_> = self.handles.iter().map(|h| h.abort_handle()).collect();
        if tokio::time::timeout(within, futures_util::future::join_all(self.handles)).await.is_err() {
            let busy: Vec<_> = aborts.into_iter().filter(|a| !a.is_finished()).collect();
            tracing::warn!(workers = busy.len(), "job workers still busy at shutdown; their jobs run again after the lease");
            for a in busy {
                a.abort();
            }
        }
    }

    /// Stops every worker where it is.
    pub fn abort(self) {
        for h in self.handles {
            h.abort();
        }
    }
}

/// Starts `count` workers named after this process.
pub fn spawn_workers(store: &Store, registry: &Registry, count: usize, settings: &WorkerSettings) -> Workers {
    let host = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple());
    let handles = (0..count)
        .map(|i| tokio::spawn(work(store.clone(), registry.clone(), format!("{host}-{i}"), settings.clone())))
        .collect();
    Workers { handles, stop: settings.stop.clone() }
}

/// Publishes queue depth and age as gauges, every `every`.
pub fn spawn_queue_metrics(store: Store, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        while !store.is_closed() {
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
