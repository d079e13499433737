//! A queue drained in batches by a few tasks at a time: the shape of group
//! commit (`ops::order_batches`, `ops::payment_batches`) and group reads
//! (`store::read_batches`).
//!
//! While the lane's drainers are all busy, new items queue; when one finishes a
//! batch, everything queued (up to a maximum) makes its next one. So a quiet lane
//! handles each item at once, alone, and a busy one batches exactly as much as
//! the load asks for. A lane with one drainer also keeps its batches in order
//! (placing orders for one hot variant); reads allow a few at once, so that under
//! moderate load a request rarely waits for someone else's statement to finish.

use std::sync::Mutex;

pub struct BatchLane<T> {
    state: Mutex<State<T>>,
    /// The most tasks draining at once.
    parallel: usize,
}

struct State<T> {
    items: Vec<T>,
    drainers: usize,
}

impl<T> Default for BatchLane<T> {
    fn default() -> Self {
        Self::new(1)
    }
}

impl<T> BatchLane<T> {
    pub fn new(parallel: usize) -> Self {
        Self { state: Mutex::new(State { items: Vec::new(), drainers: 0 }), parallel: parallel.max(1) }
    }

    /// Queues `item`. True when the caller must start a draining task.
    pub fn push(&self, item: T) -> bool {
        let mut state = self.lock();
        state.items.push(item);
        if state.drainers < self.parallel {
            state.drainers += 1;
            return true;
        }
        false
    }

    /// Queues `item`; when a drainer may start, runs the first batch (usually
    /// holding `item`, unless more than `max` were queued or another drainer took
    /// it first) right here in the caller's task, so a lane that is not saturated
    /// costs no hop to another task, and leaves any further batches to a task
    /// started by `spawn_drainer`. If the caller is cancelled meanwhile, its slot
    /// is given back (and, if it was the last, the queue dropped: those callers
    /// see their answer channels close and fall back as after a failed batch).
    pub async fn submit<Fut: Future<Output = ()>>(
        &self,
        item: T,
        max: usize,
        work: impl FnOnce(Vec<T>) -> Fut,
        spawn_drainer: impl FnOnce(),
    ) {
        if !self.push(item) {
            return;
        }
        let mut slot = Inline { lane: self, held: true };
        gather().await;
        let batch = {
            let mut state = self.lock();
            let n = state.items.len().min(max);
            state.items.drain(..n).collect::<Vec<T>>()
        };
        if !batch.is_empty() {
            work(batch).await;
        }
        slot.held = false;
        let mut state = self.lock();
        if state.items.is_empty() {
            state.drainers -= 1;
        } else {
            drop(state);
            spawn_drainer();
        }
    }

    /// The next batch (at most `max` items) for a draining task, or `None` when
    /// the lane is empty and the task must stop (its slot is given back).
    fn next_batch(&self, max: usize) -> Option<Vec<T>> {
        let mut state = self.lock();
        if state.items.is_empty() {
            state.drainers -= 1;
            return None;
        }
        let n = state.items.len().min(max);
        Some(state.items.drain(..n).collect())
    }

    /// A draining task's handle on the lane. If the task stops before the lane
    /// is empty (it panicked, or it was dropped at shutdown), its slot is given
    /// back, and when it was the last one the queued items are dropped (their
    /// callers see their answer channels close) so nobody waits for a task that
    /// is gone.
    pub fn drainer(&self) -> Drainer<'_, T> {
        Drainer { lane: self, done: false }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct Drainer<'a, T> {
    lane: &'a BatchLane<T>,
    done: bool,
}

impl<T> Drainer<'_, T> {
    /// The next batch (at most `max` items), or `None` when the lane is empty
    /// and the task must stop.
    pub fn next_batch(&mut self, max: usize) -> Option<Vec<T>> {
        let batch = self.lane.next_batch(max);
        self.done = batch.is_none();
        batch
    }
}

impl<T> Drop for Drainer<'_, T> {
    fn drop(&mut self) {
        if !self.done {
            self.lane.release();
        }
    }
}

/// Lets the tasks that were woken together with the one about to take a batch
/// reach the lane first. Requests move through checkout in groups — a batch's
/// answers wake all of its callers at once, and they go on to the next step
/// together — so without this the first of them to get there takes a batch of
/// one (and a second drainer another), and the rest wait for those to finish
/// before their own batch can start.
pub async fn gather() {
    tokio::task::yield_now().await;
}

/// A caller draining its first batch itself, until it is done with it.
struct Inline<'a, T> {
    lane: &'a BatchLane<T>,
    held: bool,
}

impl<T> Drop for Inline<'_, T> {
    fn drop(&mut self) {
        if self.held {
            self.lane.release();
        }
    }
}

impl<T> BatchLane<T> {
    /// A drainer went away without finishing.
    fn release(&self) {
        let mut state = self.lock();
        state.drainers = state.drainers.saturating_sub(1);
        if state.drainers == 0 {
            state.items.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_queue_while_every_drainer_is_busy_and_the_last_one_out_stops() {
        let lane = BatchLane::new(2);
        assert!(lane.push(1), "a quiet lane starts a drainer at once");
        assert!(lane.push(2), "and a second while one is busy");
        assert!(!lane.push(3), "both busy: the item waits for a batch");
        assert!(!lane.push(4));
        assert_eq!(lane.next_batch(3), Some(vec![1, 2, 3]));
        assert_eq!(lane.next_batch(3), Some(vec![4]));
        assert_eq!(lane.next_batch(3), None, "the first drainer stops");
        assert!(lane.push(5), "a slot is free again");
        assert!(!lane.push(6));
        assert_eq!(lane.next_batch(3), Some(vec![5, 6]));
        assert_eq!(lane.next_batch(3), None);
        assert_eq!(lane.next_batch(3), None, "the last drainer stops");
        assert!(lane.push(7), "nobody drains: the next item starts a drainer");
    }

    #[tokio::test]
    async fn the_first_batch_runs_in_the_callers_task_and_the_rest_in_a_drainer() {
        let lane = BatchLane::new(1);
        let mut spawned = false;
        let mut seen = Vec::new();
        lane.submit(
            1,
            10,
            |b| {
                seen.push(b);
                async {}
            },
            || spawned = true,
        )
        .await;
        assert_eq!(seen, [vec![1]]);
        assert!(!spawned, "nothing else queued: no drainer task");
        assert!(lane.push(2), "the slot was given back");
        assert!(!lane.push(3));
        let mut later = Vec::new();
        lane.submit(
            4,
            10,
            |b| {
                later.push(b);
                async {}
            },
            || spawned = true,
        )
        .await;
        assert!(later.is_empty(), "the slot is busy: the item waits in the queue");
        assert!(!spawned, "and no second drainer starts");
        assert_eq!(lane.next_batch(10), Some(vec![2, 3, 4]));

        // An item that arrives during the caller's batch is left to a drainer task.
        let busy = BatchLane::new(1);
        busy.submit(
            1,
            10,
            |_| {
                assert!(!busy.push(2));
                async {}
            },
            || spawned = true,
        )
        .await;
        assert!(spawned, "a drainer takes over what arrived meanwhile");
        assert_eq!(busy.next_batch(10), Some(vec![2]));
    }

    #[tokio::test]
    async fn callers_woken_together_meet_in_one_batch() {
        let lane = std::sync::Arc::new(BatchLane::new(2));
        let go = std::sync::Arc::new(tokio::sync::Notify::new());
        let batches = std::sync::Arc::new(Mutex::new(Vec::new()));
        let callers: Vec<_> = (0..50)
            .map(|i| {
                let (lane, go, batches) = (lane.clone(), go.clone(), batches.clone());
                tokio::spawn(async move {
                    go.notified().await;
                    let work = |b: Vec<i32>| {
                        batches.lock().unwrap().push(b.len());
                        async {}
                    };
                    lane.submit(i, 100, work, || {}).await;
                })
            })
            .collect();
        tokio::task::yield_now().await;
        // Every caller wakes at once, as a batch's answers wake its callers.
        go.notify_waiters();
        for caller in callers {
            caller.await.unwrap();
        }
        let batches = batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 50, "{batches:?}");
        assert!(batches.iter().all(|n| *n > 1), "nobody took a batch of one ahead of the rest: {batches:?}");
    }

    #[tokio::test]
    async fn a_cancelled_caller_gives_its_slot_back() {
        let lane = BatchLane::new(1);
        let pending = lane.submit(1, 10, |_| std::future::pending::<()>(), || {});
        let _ = tokio::time::timeout(std::time::Duration::from_millis(10), pending).await;
        assert!(lane.push(2), "the cancelled caller's slot is free");
    }
}
