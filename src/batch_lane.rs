//! A queue drained in batches by one task at a time: the shape of group commit
//! (`ops::order_batches`) and group reads (`store::read_batches`).
//!
//! While a batch is being worked on, new items queue; when it is done, everything
//! queued (up to a maximum) makes the next batch. So a quiet lane handles each
//! item at once, alone, and a busy one batches exactly as much as the load asks for.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct BatchLane<T> {
    queue: Mutex<Vec<T>>,
    busy: AtomicBool,
}

impl<T> Default for BatchLane<T> {
    fn default() -> Self {
        Self { queue: Mutex::new(Vec::new()), busy: AtomicBool::new(false) }
    }
}

impl<T> BatchLane<T> {
    /// Queues `item`. True when no task is draining the lane: the caller must start one.
    pub fn push(&self, item: T) -> bool {
        lock(&self.queue).push(item);
        !self.busy.swap(true, Ordering::SeqCst)
    }

    /// The next batch (at most `max` items) for the draining task, or `None` when
    /// the lane is empty and the task must stop.
    pub fn next_batch(&self, max: usize) -> Option<Vec<T>> {
        loop {
            {
                let mut queue = lock(&self.queue);
                if !queue.is_empty() {
                    let n = queue.len().min(max);
                    return Some(queue.drain(..n).collect());
                }
            }
            self.busy.store(false, Ordering::SeqCst);
            // An item queued between the look and the store above found the lane
            // busy and left it to this task.
            if lock(&self.queue).is_empty() || self.busy.swap(true, Ordering::SeqCst) {
                return None;
            }
        }
    }

    /// Guards a draining task: if it panics, the queued items are dropped (their
    /// callers see their answer channels close) and the next push starts a new task.
    pub fn guard(&self) -> PanicGuard<'_, T> {
        PanicGuard(self)
    }
}

pub struct PanicGuard<'a, T>(&'a BatchLane<T>);

impl<T> Drop for PanicGuard<'_, T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock(&self.0.queue).clear();
            self.0.busy.store(false, Ordering::SeqCst);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
