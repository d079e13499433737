//! Which variants are sold out, remembered so that on a sale day the thousands of
//! buyers who arrive after the last unit are answered without a transaction.
//!
//! A flag is only a shortcut for a refusal the database would give anyway, so a
//! missing flag costs a database round trip and nothing else. A flag that stayed
//! after stock came back would refuse a sale, so forgetting is strict:
//!
//! - A batch of reservations reads the forget *generation* of its variants before
//!   its transaction, and marks a variant sold out after commit only if nothing
//!   returned stock to it meanwhile (the generation did not move).
//! - Every transaction that returns stock (a release, a restock, a receipt)
//!   forgets its variants after it commits: the flag goes, the generation moves.
//!
//! In one process that is exact. A flag also expires (see below); the first buyer
//! after an expiry goes to the database while the others keep the old answer
//! ([`SoldOut::probe`]), and that buyer's batch marks the variant again or clears
//! the flag.
//!
//! With Redis (`REDIS_URL`), the generation and
//! the flags live in Redis, and every instance keeps a local copy of the flags
//! that a pub/sub channel keeps current; the copy also expires after a while, in
//! case a message was missed. Without Redis, several instances on one database
//! each learn and forget on their own, and a flag set by one instance outlives a
//! restock done on another by at most [`LOCAL_TTL`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

mod redis_backend;
pub use redis_backend::RedisSoldOut;

/// How long an instance trusts a flag without hearing from Redis (or, without
/// Redis, at all).
pub const LOCAL_TTL: Duration = Duration::from_secs(1);
/// With Redis, the local copy is kept current by pub/sub; this only bounds a missed message.
pub const LOCAL_TTL_WITH_REDIS: Duration = Duration::from_secs(30);
/// How long the other buyers keep a stale flag while one buyer asks the database.
pub const PROBE_WINDOW: Duration = Duration::from_millis(250);

/// What an instance knows about one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    None,
    /// Sold out, as far as anyone here knows.
    Fresh,
    /// Was sold out; time someone asked the database again.
    Stale,
}

#[derive(Default)]
struct Local {
    flags: HashMap<Uuid, Instant>,
    generations: HashMap<Uuid, u64>,
}

/// The forget generations of some variants, read before a reservation batch.
#[derive(Debug, Clone, Default)]
pub struct Generations(HashMap<Uuid, u64>);

pub struct SoldOut {
    local: Mutex<Local>,
    redis: Option<RedisSoldOut>,
}

impl Default for SoldOut {
    fn default() -> Self {
        Self::in_process()
    }
}

impl SoldOut {
    pub fn in_process() -> Self {
        Self { local: Mutex::new(Local::default()), redis: None }
    }

    pub fn with_redis(redis: RedisSoldOut) -> Self {
        Self { local: Mutex::new(Local::default()), redis: Some(redis) }
    }

    fn ttl(&self) -> Duration {
        if self.redis.is_some() { LOCAL_TTL_WITH_REDIS } else { LOCAL_TTL }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `variant` is known to be sold out right now. Never touches the network.
    pub fn is_sold_out(&self, variant: Uuid) -> bool {
        self.check(variant) == Flag::Fresh
    }

    /// What this instance knows of `variant`, without changing anything.
    pub fn check(&self, variant: Uuid) -> Flag {
        match self.lock().flags.get(&variant) {
            Some(until) if *until > Instant::now() => Flag::Fresh,
            Some(_) => Flag::Stale,
            None => Flag::None,
        }
    }

    /// Lets the caller ask the database about variants whose flags are stale,
    /// while everyone else keeps the old answer for [`PROBE_WINDOW`]: an expiry
    /// sends one buyer to the stock row, not all of them. That buyer's batch marks
    /// the variant again or clears the flag (`observed_in_stock`); if it never
    /// gets that far, the next buyer after the window asks again.
    pub fn probe(&self, variants: &[Uuid]) {
        let until = Instant::now() + PROBE_WINDOW;
        let mut local = self.lock();
        for v in variants {
            if let Some(flag) = local.flags.get_mut(v) {
                *flag = until;
            }
        }
    }

    /// A batch read these variants' stock under lock and found some left: any local
    /// flag is out of date.
    pub fn observed_in_stock(&self, variants: &[Uuid]) {
        if variants.is_empty() {
            return;
        }
        let mut local = self.lock();
        for v in variants {
            local.flags.remove(v);
        }
    }

    /// The Redis key prefix, when backed by Redis.
    pub fn redis_prefix(&self) -> Option<&str> {
        self.redis.as_ref().map(|r| r.prefix())
    }

    /// Whether any variant is flagged at all: a quiet shop skips the lookup.
    pub fn any(&self) -> bool {
        !self.lock().flags.is_empty()
    }

    /// The generations to hand to [`SoldOut::mark`] after a read of the stock.
    pub async fn generations(&self, variants: &[Uuid]) -> Generations {
        if let Some(redis) = &self.redis {
            match redis.generations(variants).await {
                Ok(g) => return Generations(g),
                // Without the shared generation no flag may be set: an empty
                // observation makes `mark` do nothing.
                Err(e) => {
                    tracing::warn!(error = %e, "sold-out memory: Redis unavailable");
                    return Generations::default();
                }
            }
        }
        let local = self.lock();
        Generations(variants.iter().map(|v| (*v, local.generations.get(v).copied().unwrap_or(0))).collect())
    }

    /// Remembers `variants` as sold out, unless stock came back to them since
    /// `seen` was read.
    pub async fn mark(&self, seen: &Generations, variants: &[Uuid]) {
        let variants: Vec<(Uuid, u64)> = variants.iter().filter_map(|v| seen.0.get(v).map(|g| (*v, *g))).collect();
        if variants.is_empty() {
            return;
        }
        if let Some(redis) = &self.redis {
            // The local copy follows the channel, this instance's own marks included:
            // a mark and a later forget then arrive in the order Redis ran them.
            if let Err(e) = redis.mark(&variants).await {
                tracing::warn!(error = %e, "sold-out memory: Redis unavailable");
            }
            return;
        }
        let until = Instant::now() + self.ttl();
        let mut local = self.lock();
        for (v, g) in variants {
            if local.generations.get(&v).copied().unwrap_or(0) == g {
                local.flags.insert(v, until);
            }
        }
    }

    /// Stock came back to `variants` (committed): forget that they were sold out.
    pub async fn forget(&self, variants: &[Uuid]) {
        self.forget_local(variants);
        if let Some(redis) = &self.redis {
            // In a task of its own: the request that returned the stock may be
            // dropped (its client hung up) and the other instances must still hear.
            let (redis, variants) = (redis.clone(), variants.to_vec());
            let told = tokio::spawn(async move {
                for attempt in 1..=3u64 {
                    match redis.forget(&variants).await {
                        Ok(()) => return,
                        Err(e) if attempt == 3 => {
                            // Other instances keep their copy until it expires.
                            tracing::warn!(error = %e, "sold-out memory: could not tell Redis that stock came back");
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(50 * attempt)).await,
                    }
                }
            });
            let _ = told.await;
        }
    }

    fn set_local(&self, variants: &[Uuid]) {
        let until = Instant::now() + self.ttl();
        let mut local = self.lock();
        for v in variants {
            local.flags.insert(*v, until);
        }
    }

    fn forget_local(&self, variants: &[Uuid]) {
        let mut local = self.lock();
        for v in variants {
            local.flags.remove(v);
            *local.generations.entry(*v).or_insert(0) += 1;
        }
    }

    /// Applies a message from another instance.
    fn heard(&self, message: &redis_backend::Message) {
        match message {
            redis_backend::Message::Marked(v) => self.set_local(&[*v]),
            redis_backend::Message::Forgotten(v) => self.forget_local(&[*v]),
        }
    }

    /// Follows the other instances through Redis until the process ends (no-op without Redis).
    pub fn follow(self: &std::sync::Arc<Self>) {
        if let Some(redis) = &self.redis {
            redis.follow(std::sync::Arc::downgrade(self));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flag_set_after_a_concurrent_restock_is_not_kept() {
        let memory = SoldOut::in_process();
        let v = Uuid::now_v7();
        let seen = memory.generations(&[v]).await;
        // Stock came back between the batch's read and its mark.
        memory.forget(&[v]).await;
        memory.mark(&seen, &[v]).await;
        assert!(!memory.is_sold_out(v));
        let seen = memory.generations(&[v]).await;
        memory.mark(&seen, &[v]).await;
        assert!(memory.is_sold_out(v));
        memory.forget(&[v]).await;
        assert!(!memory.is_sold_out(v));
    }

    #[tokio::test]
    async fn an_expired_flag_sends_one_caller_to_the_database() {
        let memory = SoldOut::in_process();
        let v = Uuid::now_v7();
        let seen = memory.generations(&[v]).await;
        memory.mark(&seen, &[v]).await;
        memory.lock().flags.insert(v, Instant::now() - Duration::from_millis(1));
        assert_eq!(memory.check(v), Flag::Stale);
        memory.probe(&[v]);
        assert_eq!(memory.check(v), Flag::Fresh, "the others keep the answer while one caller asks");
        memory.observed_in_stock(&[v]);
        assert_eq!(memory.check(v), Flag::None);
    }

    #[tokio::test]
    async fn only_observed_variants_are_marked() {
        let memory = SoldOut::in_process();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let seen = memory.generations(&[a]).await;
        memory.mark(&seen, &[a, b]).await;
        assert!(memory.is_sold_out(a) && !memory.is_sold_out(b));
    }
}
