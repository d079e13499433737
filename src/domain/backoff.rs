//! Retry delays for failed jobs: exponential from a base, capped, with jitter so
//! that jobs failing together (a provider outage) do not retry together.

use std::time::Duration;

/// The delay before attempt `attempt + 1`, after `attempt` failures (1-based).
/// `jitter` in `[0, 1)` picks a point in the upper half of the window
/// ("equal jitter"): never less than half the exponential delay.
pub fn retry_delay(attempt: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)));
    let window = exp.min(cap);
    let half = window / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubles_then_caps() {
        let base = Duration::from_secs(2);
        let cap = Duration::from_secs(60);
        assert_eq!(retry_delay(1, base, cap, 1.0), Duration::from_secs(2));
        assert_eq!(retry_delay(2, base, cap, 1.0), Duration::from_secs(4));
        assert_eq!(retry_delay(3, base, cap, 0.0), Duration::from_secs(4));
        assert_eq!(retry_delay(20, base, cap, 1.0), cap);
    }

    proptest! {
        #[test]
        fn always_between_half_the_window_and_the_cap(attempt in 1u32..100, jitter in 0.0f64..1.0) {
            let (base, cap) = (Duration::from_millis(500), Duration::from_secs(3600));
            let d = retry_delay(attempt, base, cap, jitter);
            prop_assert!(d <= cap);
            let window = base.saturating_mul(2u32.saturating_pow((attempt - 1).min(30))).min(cap);
            prop_assert!(d >= window / 2);
        }

        #[test]
        fn never_shrinks_as_attempts_grow(attempt in 1u32..60) {
            let (base, cap) = (Duration::from_secs(1), Duration::from_secs(3600));
            prop_assert!(retry_delay(attempt + 1, base, cap, 0.0) >= retry_delay(attempt, base, cap, 0.0));
        }
    }
}
