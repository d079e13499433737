//! Checkouts first: while a sale's checkouts crowd this process, its job workers
//! hold back for a moment, so the buyers get the cores and the database and the
//! order events (webhooks, confirmation e-mails) follow a moment later.
//!
//! The queue is durable and its work is allowed to lag; a checkout is someone
//! waiting. A worker holds back only while at least [`BUSY_AT`] checkouts are in
//! flight here, and for at most [`MAX_HOLD`] in a row: after that it runs until
//! the queue is empty before it may hold back again, so under sustained load the
//! queue still drains and an event waits at most about [`MAX_HOLD`] longer.
//! Only this process's checkouts count; workers in other processes (or
//! `mercato worker`) run as usual.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Checkouts in flight from which the workers hold back.
pub const BUSY_AT: usize = 16;
/// The longest a worker holds back in a row.
pub const MAX_HOLD: Duration = Duration::from_secs(1);
/// How often a holding worker looks again.
pub const HOLD_STEP: Duration = Duration::from_millis(20);

/// How many checkouts are running in this process.
#[derive(Debug, Default)]
pub struct Foreground {
    running: AtomicUsize,
}

impl Foreground {
    /// Counts a checkout until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.running.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    pub fn busy(&self) -> bool {
        self.running.load(Ordering::Relaxed) >= BUSY_AT
    }
}

/// One checkout under way.
pub struct InFlight(Arc<Foreground>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A worker's holding back: since when it has been holding, if it is.
#[derive(Debug, Default)]
pub struct Hold {
    since: Option<Instant>,
    /// Held for [`MAX_HOLD`]: runs until the queue is empty.
    catching_up: bool,
}

impl Hold {
    /// Whether the worker should wait instead of claiming jobs now. The hold is
    /// counted from the first wait after the queue was last found empty, so a
    /// load that dips below the mark now and then cannot stretch it.
    pub fn wait(&mut self, busy: bool, now: Instant) -> bool {
        if !busy || self.catching_up {
            return false;
        }
        let since = *self.since.get_or_insert(now);
        if now.duration_since(since) < MAX_HOLD {
            return true;
        }
        self.catching_up = true;
        false
    }

    /// The queue was found empty: the worker may hold back again.
    pub fn drained(&mut self) {
        self.since = None;
        self.catching_up = false;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_busy_process_holds_its_workers_for_at_most_the_bound_then_they_drain_the_queue() {
        let t0 = Instant::now();
        let mut hold = Hold::default();
        assert!(!hold.wait(false, t0), "never holds when checkouts are few");
        assert!(hold.wait(true, t0));
        assert!(!hold.wait(false, t0 + MAX_HOLD / 4), "a dip: the worker runs a batch");
        assert!(hold.wait(true, t0 + MAX_HOLD / 2), "and holds again, counted from the first wait");
        assert!(!hold.wait(true, t0 + MAX_HOLD), "held as long as it may");
        assert!(!hold.wait(true, t0 + MAX_HOLD * 2), "catching up: runs while the queue has jobs");
        hold.drained();
        assert!(hold.wait(true, t0 + MAX_HOLD * 3), "holds again once the queue was empty");
    }

    proptest! {
        /// Whatever the load and the queue do, a worker never waits when the
        /// process is not busy, and between two moments it finds the queue empty
        /// it waits for at most MAX_HOLD in all, however the load dips meanwhile.
        #[test]
        fn never_holds_longer_than_the_bound(steps in prop::collection::vec((any::<bool>(), any::<bool>(), 0u64..300), 1..200)) {
            let mut now = Instant::now();
            let mut hold = Hold::default();
            let mut first_wait: Option<Instant> = None;
            for (busy, empty, ms) in steps {
                let waits = hold.wait(busy, now);
                prop_assert!(busy || !waits);
                if waits {
                    let since = *first_wait.get_or_insert(now);
                    prop_assert!(now.duration_since(since) < MAX_HOLD);
                } else if empty {
                    hold.drained();
                    first_wait = None;
                }
                now += Duration::from_millis(ms);
            }
        }
    }
}
