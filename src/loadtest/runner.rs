//! Driving the steps. Closed model: N workers, each sending its next visit when
//! the last is answered. Open model: visits arrive on a clock whatever the
//! answers do, latency counts from when each was due (so a stalled shop cannot
//! hide behind a slowed-down sender), in-flight visits are capped and arrivals
//! past the cap are counted as dropped. Flash sale: every cart is built first,
//! then all checkouts are released at one moment.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{Barrier, Notify, Semaphore};

use super::plan::{Load, Scenario, Step, StepKind, arrival_offset, arrivals_due};
use super::scenarios::{Cart, Shopper, Slot};
use super::stats::Recorder;

/// Ctrl-C (or a test) asks the run to stop sending; what is in flight finishes.
#[derive(Default)]
pub struct Stop {
    flag: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub fn stop(&self) {
        self.flag.store(true, Ordering::Relaxed);
        self.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    pub async fn stopped(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.is_stopped() {
            notified.await;
        }
    }
}

/// When a step ran, from the start of the run.
#[derive(Clone, Copy, Debug)]
pub struct StepRun {
    pub started: Duration,
    pub elapsed: Duration,
}

pub struct Runner {
    pub shopper: Arc<Shopper>,
    pub recorder: Arc<Recorder>,
    pub stop: Arc<Stop>,
    pub scenario: Scenario,
    /// flash-sale: buyers per sale.
    pub buyers: usize,
    pub progress: bool,
}

impl Runner {
    /// Runs the steps in order until the last or a stop; returns when each ran.
    pub async fn run(&self, steps: &[Step]) -> Vec<StepRun> {
        let progress = Progress::new(self.progress, self.recorder.clone());
        let mut runs = Vec::new();
        let mut carts = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            if self.stop.is_stopped() {
                break;
            }
            self.recorder.live.step_done.store(0, Ordering::Relaxed);
            let started = Instant::now();
            match (step.kind, step.load) {
                (StepKind::Timed(length), Load::Closed { concurrency }) => {
                    progress.step(&step.name, length.as_secs(), false);
                    self.closed(i, concurrency, started + length).await;
                }
                (StepKind::Timed(length), Load::Open { rate, max_in_flight }) => {
                    progress.step(&step.name, length.as_secs(), false);
                    self.open(i, rate, max_in_flight, length).await;
                }
                (StepKind::Carts { sale }, Load::Closed { concurrency }) => {
                    progress.step(&step.name, self.buyers as u64, true);
                    carts = self.build_carts(i, sale, concurrency).await;
                }
                (StepKind::Storm { .. }, _) => {
                    progress.step(&step.name, self.buyers as u64, true);
                    self.storm(i, std::mem::take(&mut carts)).await;
                }
                (StepKind::Carts { .. }, Load::Open { .. }) => unreachable!("refused by Options::validate"),
            }
            runs.push(StepRun { started: started - self.recorder.start(), elapsed: started.elapsed() });
        }
        progress.finish();
        runs
    }

    async fn closed(&self, step: usize, concurrency: usize, deadline: Instant) {
        let visits = Arc::new(AtomicU64::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..concurrency {
            let (shopper, recorder, stop, visits) =
                (self.shopper.clone(), self.recorder.clone(), self.stop.clone(), visits.clone());
            let scenario = self.scenario;
            workers.spawn(async move {
                let slot = Slot { recorder: &recorder, shard: w, step };
                while Instant::now() < deadline && !stop.is_stopped() {
                    shopper.visit(scenario, slot, visits.fetch_add(1, Ordering::Relaxed), Instant::now()).await;
                    recorder.live.step_done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        workers.join_all().await;
    }

    async fn open(&self, step: usize, rate: f64, max_in_flight: usize, length: Duration) {
        let permits = Arc::new(Semaphore::new(max_in_flight));
        let start = Instant::now();
        let mut sent = 0u64;
        loop {
            // One reading of the clock for both: the pass that sees the step's end
            // has sent every arrival of the step.
            let now = start.elapsed();
            let due = arrivals_due(now, rate, length);
            while sent < due {
                let intended = start + arrival_offset(sent, rate);
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let (shopper, recorder, scenario) = (self.shopper.clone(), self.recorder.clone(), self.scenario);
                        recorder.live.in_flight.fetch_add(1, Ordering::Relaxed);
                        let n = sent;
                        tokio::spawn(async move {
                            shopper.visit(scenario, Slot { recorder: &recorder, shard: n as usize, step }, n, intended).await;
                            recorder.live.in_flight.fetch_sub(1, Ordering::Relaxed);
                            recorder.live.step_done.fetch_add(1, Ordering::Relaxed);
                            drop(permit);
                        });
                    }
                    Err(_) => self.recorder.dropped(sent as usize, step),
                }
                sent += 1;
            }
            if now >= length || self.stop.is_stopped() {
                break;
            }
            let next = start + arrival_offset(sent, rate).min(length);
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => {}
                _ = self.stop.stopped() => {}
            }
        }
        // The step ends when its last visit is answered.
        let _ = permits.acquire_many(max_in_flight as u32).await;
    }

    /// Every buyer of the sale builds a cart with its variant; worker `w` keeps
    /// the carts of buyers `w`, `w + c`, `w + 2c`... for the storm.
    async fn build_carts(&self, step: usize, variant: usize, concurrency: usize) -> Vec<Vec<Cart>> {
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..concurrency.min(self.buyers) {
            let (shopper, recorder, stop, buyers) = (self.shopper.clone(), self.recorder.clone(), self.stop.clone(), self.buyers);
            workers.spawn(async move {
                let slot = Slot { recorder: &recorder, shard: w, step };
                let mut carts = Vec::new();
                for buyer in (w..buyers).step_by(concurrency) {
                    if stop.is_stopped() {
                        break;
                    }
                    carts.extend(shopper.build_cart(slot, buyer as u64, variant, Instant::now()).await);
                    recorder.live.step_done.fetch_add(1, Ordering::Relaxed);
                }
                carts
            });
        }
        workers.join_all().await
    }

    /// The checkout storm: one worker per cart-building worker, all waiting at a
    /// barrier until every one is ready, then released together.
    async fn storm(&self, step: usize, carts: Vec<Vec<Cart>>) {
        let gate = Arc::new(Barrier::new(carts.len() + 1));
        let mut workers = tokio::task::JoinSet::new();
        for (w, carts) in carts.into_iter().enumerate() {
            let (shopper, recorder, stop, gate) = (self.shopper.clone(), self.recorder.clone(), self.stop.clone(), gate.clone());
            workers.spawn(async move {
                let slot = Slot { recorder: &recorder, shard: w, step };
                gate.wait().await;
                for cart in &carts {
                    if stop.is_stopped() {
                        break;
                    }
                    shopper.checkout(slot, cart, Instant::now()).await;
                    recorder.live.step_done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        gate.wait().await;
        workers.join_all().await;
    }
}

/// The live line on stderr, redrawn four times a second from the recorder's
/// counters; hidden when stderr is not a terminal.
struct Progress {
    bar: ProgressBar,
    counting: Arc<AtomicBool>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn new(enabled: bool, recorder: Arc<Recorder>) -> Self {
        use std::io::IsTerminal;
        let counting = Arc::new(AtomicBool::new(false));
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress { bar: ProgressBar::hidden(), counting, ticker: None };
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{prefix:>16} [{bar:24}] {pos}/{len} {msg}").expect("valid template");
        bar.set_style(style.progress_chars("=> "));
        let (b, c) = (bar.clone(), counting.clone());
        let ticker = tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let live = &recorder.live;
                let requests = live.requests.load(Ordering::Relaxed);
                let per_second = (requests - last.1) as f64 / last.0.elapsed().as_secs_f64().max(1e-3);
                last = (Instant::now(), requests);
                b.set_position(if c.load(Ordering::Relaxed) {
                    live.step_done.load(Ordering::Relaxed)
                } else {
                    b.elapsed().as_secs()
                });
                b.set_message(format!(
                    "{requests} req ({per_second:.0}/s) · {} errors · {} orders · {} in flight · {} dropped",
                    live.errors.load(Ordering::Relaxed),
                    live.orders.load(Ordering::Relaxed),
                    live.in_flight.load(Ordering::Relaxed),
                    live.dropped.load(Ordering::Relaxed),
                ));
            }
        });
        Progress { bar, counting, ticker: Some(ticker) }
    }

    /// A new step: a bar of `len` seconds, or of `len` buyers when `counting`.
    fn step(&self, name: &str, len: u64, counting: bool) {
        self.counting.store(counting, Ordering::Relaxed);
        self.bar.reset();
        self.bar.set_length(len);
        self.bar.set_prefix(name.to_owned());
    }

    fn finish(self) {
        if let Some(t) = self.ticker {
            t.abort();
        }
        self.bar.finish_and_clear();
    }
}
