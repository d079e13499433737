//! Recording answers cheaply while the load runs. Hundreds of concurrent buyers
//! cannot each own a full HDR histogram per operation and per second (about
//! 170 KB each), so answers go to a few shards, each behind a mutex held only for
//! the few hundred nanoseconds of a record; the shards are merged once, at the
//! end. Live progress reads plain atomics.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest latency told apart (10 minutes, in µs); slower answers count as this.
const MAX_MICROS: u64 = 600_000_000;

/// One kind of request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Cart,
    AddItem,
    Checkout,
    Products,
    FilteredProducts,
    Product,
    Categories,
    Search,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Cart => "cart",
            Op::AddItem => "add_item",
            Op::Checkout => "checkout",
            Op::Products => "products",
            Op::FilteredProducts => "filtered_products",
            Op::Product => "product",
            Op::Categories => "categories",
            Op::Search => "search",
        }
    }
}

/// Why a request did not succeed: the HTTP status and the problem `type`, or no
/// status and what went wrong on the way (`timeout`, `connect`, `transport`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ErrorKey {
    pub status: Option<u16>,
    #[serde(rename = "type")]
    pub kind: String,
}

impl ErrorKey {
    pub fn transport(e: &reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect"
        } else {
            "transport"
        };
        ErrorKey { status: None, kind: kind.into() }
    }
}

/// A checkout answered with an order.
#[derive(Clone, Debug)]
pub struct AnsweredOrder {
    pub id: String,
    /// Index of the variant bought, in the run's stocked variants.
    pub variant: usize,
    pub step: usize,
    pub at: time::OffsetDateTime,
}

/// Counters the progress line reads while the run goes on.
#[derive(Default)]
pub struct Live {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub orders: AtomicU64,
    pub in_flight: AtomicU64,
    pub dropped: AtomicU64,
    /// Work units done in the current step (buyers served, for flash-sale).
    pub step_done: AtomicU64,
}

/// Latencies and errors of one operation in one step.
pub struct Cell {
    /// Every answer.
    pub latency: Histogram<u64>,
    /// Successful answers alone: in a flash sale the buyers who got an order,
    /// whose path is much longer than a refusal's.
    pub ok_latency: Histogram<u64>,
    /// Failures by status and problem type, each with its own latencies.
    pub errors: BTreeMap<ErrorKey, Histogram<u64>>,
}

fn latencies() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid bounds")
}

impl Cell {
    fn new() -> Self {
        Cell { latency: latencies(), ok_latency: latencies(), errors: BTreeMap::new() }
    }

    pub fn failed(&self) -> u64 {
        self.errors.values().map(Histogram::len).sum()
    }
}

/// Every answer completed within one second of the run.
pub struct Second {
    pub latency: Histogram<u64>,
    pub errors: u64,
    pub orders: u64,
}

impl Second {
    fn new() -> Self {
        // Two significant figures are plenty for a chart and keep each second small.
        Second { latency: Histogram::new_with_bounds(1, MAX_MICROS, 2).expect("valid bounds"), errors: 0, orders: 0 }
    }
}

#[derive(Default)]
struct Shard {
    cells: HashMap<(usize, Op), Cell>,
    seconds: Vec<Second>,
    orders: Vec<AnsweredOrder>,
    dropped: HashMap<usize, u64>,
}

impl Shard {
    fn second(&mut self, at: Duration) -> &mut Second {
        let s = at.as_secs() as usize;
        if self.seconds.len() <= s {
            self.seconds.resize_with(s + 1, Second::new);
        }
        &mut self.seconds[s]
    }
}

pub struct Recorder {
    start: Instant,
    shards: Box<[Mutex<Shard>]>,
    pub live: Live,
}

impl Recorder {
    pub fn new(start: Instant) -> Self {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
        Recorder { start, shards: (0..n).map(|_| Mutex::default()).collect(), live: Live::default() }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    fn shard(&self, n: usize) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[n % self.shards.len()].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One answer (or failure) to a request meant to go out at `since`.
    pub fn record(&self, shard: usize, step: usize, op: Op, since: Instant, error: Option<ErrorKey>) {
        let now = Instant::now();
        let micros = (now.saturating_duration_since(since).as_micros() as u64).max(1);
        self.live.requests.fetch_add(1, Ordering::Relaxed);
        if error.is_some() {
            self.live.errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut s = self.shard(shard);
        let second = s.second(now - self.start);
        second.latency.saturating_record(micros);
        second.errors += u64::from(error.is_some());
        let cell = s.cells.entry((step, op)).or_insert_with(Cell::new);
        cell.latency.saturating_record(micros);
        match error {
            None => cell.ok_latency.saturating_record(micros),
            Some(e) => cell.errors.entry(e).or_insert_with(latencies).saturating_record(micros),
        }
    }

    pub fn order(&self, shard: usize, order: AnsweredOrder) {
        self.live.orders.fetch_add(1, Ordering::Relaxed);
        let mut s = self.shard(shard);
        s.second(Instant::now() - self.start).orders += 1;
        s.orders.push(order);
    }

    /// An open-model arrival that could not be sent: too many requests were in flight.
    pub fn dropped(&self, shard: usize, step: usize) {
        self.live.dropped.fetch_add(1, Ordering::Relaxed);
        *self.shard(shard).dropped.entry(step).or_default() += 1;
    }

    /// Takes what the shards hold, merged.
    pub fn finish(&self) -> Tally {
        let mut tally = Tally::default();
        for n in 0..self.shards.len() {
            let shard = std::mem::take(&mut *self.shard(n));
            for (key, cell) in shard.cells {
                tally.add_cell(key, cell);
            }
            for (i, s) in shard.seconds.into_iter().enumerate() {
                if tally.seconds.len() <= i {
                    tally.seconds.resize_with(i + 1, Second::new);
                }
                let t = &mut tally.seconds[i];
                t.latency.add(&s.latency).expect("same bounds");
                t.errors += s.errors;
                t.orders += s.orders;
            }
            tally.orders.extend(shard.orders);
            for (step, n) in shard.dropped {
                *tally.dropped.entry(step).or_default() += n;
            }
        }
        tally
    }
}

/// Everything recorded, merged.
#[derive(Default)]
pub struct Tally {
    pub cells: BTreeMap<(usize, Op), Cell>,
    pub seconds: Vec<Second>,
    pub orders: Vec<AnsweredOrder>,
    pub dropped: BTreeMap<usize, u64>,
}

impl Tally {
    fn add_cell(&mut self, key: (usize, Op), cell: Cell) {
        match self.cells.get_mut(&key) {
            None => {
                self.cells.insert(key, cell);
            }
            Some(t) => {
                t.latency.add(&cell.latency).expect("same bounds");
                t.ok_latency.add(&cell.ok_latency).expect("same bounds");
                for (e, h) in cell.errors {
                    t.errors.entry(e).or_insert_with(latencies).add(&h).expect("same bounds");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_merge_into_one_tally_per_step_and_operation() {
        let start = Instant::now();
        let r = Recorder::new(start);
        let out_of_stock = ErrorKey { status: Some(409), kind: "out_of_stock".into() };
        for shard in 0..10 {
            r.record(shard, 1, Op::Checkout, Instant::now(), None);
            r.record(shard, 1, Op::Checkout, Instant::now(), Some(out_of_stock.clone()));
            r.record(shard, 0, Op::Cart, Instant::now(), None);
        }
        r.record(3, 1, Op::Checkout, Instant::now(), Some(ErrorKey { status: None, kind: "timeout".into() }));
        r.dropped(5, 1);
        r.dropped(6, 1);
        r.order(2, AnsweredOrder { id: "o1".into(), variant: 0, step: 1, at: time::OffsetDateTime::now_utc() });
        assert_eq!(r.live.requests.load(Ordering::Relaxed), 31);
        assert_eq!(r.live.errors.load(Ordering::Relaxed), 11);
        let t = r.finish();
        let checkout = &t.cells[&(1, Op::Checkout)];
        assert_eq!(checkout.latency.len(), 21);
        assert_eq!(checkout.ok_latency.len(), 10);
        assert_eq!(checkout.errors[&out_of_stock].len(), 10);
        assert_eq!(checkout.failed(), 11);
        assert_eq!(t.cells[&(0, Op::Cart)].latency.len(), 10);
        assert_eq!(t.dropped[&1], 2);
        assert_eq!(t.orders.len(), 1);
        assert_eq!(t.seconds.iter().map(|s| s.latency.len()).sum::<u64>(), 31);
        assert_eq!(t.seconds.iter().map(|s| s.errors).sum::<u64>(), 11);
    }

    #[test]
    fn latency_counts_from_the_intended_send_time() {
        let r = Recorder::new(Instant::now());
        // Meant to go out 200 ms ago (an open-model arrival that waited): the wait counts.
        r.record(0, 0, Op::Products, Instant::now() - Duration::from_millis(200), None);
        let t = r.finish();
        assert!(t.cells[&(0, Op::Products)].latency.min() >= 199_000, "HDR keeps three significant figures");
    }
}
