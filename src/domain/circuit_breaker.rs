//! A circuit breaker's state machine, with time passed in (as the time since any
//! fixed origin), so every transition can be tested without a clock.
//!
//! Closed: calls go through; `threshold` consecutive failures open it.
//! Open: calls are refused at once until `cooldown` has passed.
//! Half-open: exactly one trial call goes through; its success closes the circuit,
//! its failure opens it for another cooldown. Results of calls let through before
//! the circuit opened say nothing about the provider now and are ignored.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    /// For the gauge: 0 closed, 1 half-open, 2 open.
    pub fn as_gauge(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        }
    }
}

/// What a caller was allowed: a normal call, or the one trial of a half-open circuit.
/// It must be handed back with the call's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Permit {
    Normal,
    Trial,
}

/// The circuit is open: the call must fail without reaching the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed {
        failures: u32,
    },
    Open {
        until: Duration,
    },
    /// `trial_since`: when the trial was let through, if one is out.
    HalfOpen {
        trial_since: Option<Duration>,
    },
}

#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    phase: Phase,
}

impl CircuitBreaker {
    /// `threshold` is at least 1 (0 is taken as 1).
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self { threshold: threshold.max(1), cooldown, phase: Phase::Closed { failures: 0 } }
    }

    pub fn state(&self, now: Duration) -> CircuitState {
        match self.phase {
            Phase::Closed { .. } => CircuitState::Closed,
            Phase::Open { until } if now < until => CircuitState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Asks to make a call at `now`.
    pub fn permit(&mut self, now: Duration) -> Result<Permit, Rejected> {
        match self.phase {
            Phase::Closed { .. } => Ok(Permit::Normal),
            Phase::Open { until } if now < until => Err(Rejected),
            Phase::Open { .. } => {
                self.phase = Phase::HalfOpen { trial_since: Some(now) };
                Ok(Permit::Trial)
            }
            // A trial whose caller vanished without reporting (its future was
            // dropped) must not keep the circuit half-open for ever: after a
            // cooldown another trial may go.
            Phase::HalfOpen { trial_since: Some(since) } if now < since.saturating_add(self.cooldown) => Err(Rejected),
            Phase::HalfOpen { .. } => {
                self.phase = Phase::HalfOpen { trial_since: Some(now) };
                Ok(Permit::Trial)
            }
        }
    }

    pub fn on_success(&mut self, permit: Permit) {
        match (self.phase, permit) {
            (Phase::Closed { .. }, _) | (Phase::HalfOpen { .. }, Permit::Trial) => self.phase = Phase::Closed { failures: 0 },
            _ => {}
        }
    }

    pub fn on_failure(&mut self, permit: Permit, now: Duration) {
        match (self.phase, permit) {
            (Phase::Closed { failures }, _) => {
                let failures = failures.saturating_add(1);
                self.phase = if failures >= self.threshold {
                    Phase::Open { until: now.saturating_add(self.cooldown) }
                } else {
                    Phase::Closed { failures }
                };
            }
            (Phase::HalfOpen { .. }, Permit::Trial) => self.phase = Phase::Open { until: now.saturating_add(self.cooldown) },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const COOLDOWN: Duration = Duration::from_secs(30);

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let mut cb = CircuitBreaker::new(3, COOLDOWN);
        for _ in 0..2 {
            let p = cb.permit(s(0)).unwrap();
            cb.on_failure(p, s(0));
        }
        // A success in between resets the count.
        let p = cb.permit(s(0)).unwrap();
        cb.on_success(p);
        for _ in 0..2 {
            let p = cb.permit(s(1)).unwrap();
            cb.on_failure(p, s(1));
        }
        assert_eq!(cb.state(s(1)), CircuitState::Closed);
        let p = cb.permit(s(1)).unwrap();
        cb.on_failure(p, s(1));
        assert_eq!(cb.state(s(1)), CircuitState::Open);
        assert_eq!(cb.permit(s(30)), Err(Rejected));
    }

    #[test]
    fn half_open_lets_one_trial_through_and_its_result_decides() {
        let mut cb = CircuitBreaker::new(1, COOLDOWN);
        let p = cb.permit(s(0)).unwrap();
        cb.on_failure(p, s(0));
        assert_eq!(cb.state(s(31)), CircuitState::HalfOpen);
        let trial = cb.permit(s(31)).unwrap();
        assert_eq!(trial, Permit::Trial);
        assert_eq!(cb.permit(s(32)), Err(Rejected), "one trial at a time");
        cb.on_failure(trial, s(33));
        assert_eq!(cb.state(s(34)), CircuitState::Open);
        assert_eq!(cb.permit(s(62)), Err(Rejected));
        let trial = cb.permit(s(63)).unwrap();
        cb.on_success(trial);
        assert_eq!(cb.state(s(63)), CircuitState::Closed);
        assert_eq!(cb.permit(s(63)), Ok(Permit::Normal));
    }

    #[test]
    fn late_results_of_calls_from_before_the_opening_are_ignored() {
        let mut cb = CircuitBreaker::new(1, COOLDOWN);
        let early = cb.permit(s(0)).unwrap();
        let failing = cb.permit(s(0)).unwrap();
        cb.on_failure(failing, s(0));
        cb.on_success(early);
        assert_eq!(cb.state(s(1)), CircuitState::Open);
        let trial = cb.permit(s(40)).unwrap();
        cb.on_success(early);
        cb.on_failure(early, s(40));
        assert_eq!(cb.state(s(40)), CircuitState::HalfOpen);
        cb.on_success(trial);
        assert_eq!(cb.state(s(40)), CircuitState::Closed);
    }

    #[test]
    fn an_abandoned_trial_is_replaced_after_a_cooldown() {
        let mut cb = CircuitBreaker::new(1, COOLDOWN);
        let p = cb.permit(s(0)).unwrap();
        cb.on_failure(p, s(0));
        let _lost = cb.permit(s(30)).unwrap();
        assert_eq!(cb.permit(s(59)), Err(Rejected));
        assert_eq!(cb.permit(s(60)), Ok(Permit::Trial));
    }

    #[derive(Debug, Clone)]
    enum Step {
        Call { ok: bool },
        Wait(u64),
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        proptest::collection::vec(
            prop_oneof![any::<bool>().prop_map(|ok| Step::Call { ok }), (0u64..40).prop_map(Step::Wait)],
            0..200,
        )
    }

    proptest! {
        /// Whatever happens, an open circuit refuses until its cooldown is over, a
        /// closed one never refuses, and a closed one has seen fewer than `threshold`
        /// failures in a row.
        #[test]
        fn the_state_machine_keeps_its_promises(threshold in 1u32..6, steps in steps()) {
            let mut cb = CircuitBreaker::new(threshold, COOLDOWN);
            let mut now = Duration::ZERO;
            let mut failures_in_a_row = 0u32;
            let mut opened_at: Option<Duration> = None;
            for step in steps {
                match step {
                    Step::Wait(secs) => now += s(secs),
                    Step::Call { ok } => {
                        let before = cb.state(now);
                        match cb.permit(now) {
                            Err(Rejected) => {
                                prop_assert_ne!(before, CircuitState::Closed);
                                if before == CircuitState::Open {
                                    prop_assert!(now < opened_at.unwrap() + COOLDOWN);
                                }
                            }
                            Ok(permit) => {
                                prop_assert_ne!(before, CircuitState::Open);
                                prop_assert_eq!(permit == Permit::Trial, before == CircuitState::HalfOpen);
                                if ok {
                                    cb.on_success(permit);
                                    failures_in_a_row = 0;
                                    prop_assert_eq!(cb.state(now), CircuitState::Closed);
                                } else {
                                    cb.on_failure(permit, now);
                                    failures_in_a_row += 1;
                                    let opens = permit == Permit::Trial || failures_in_a_row >= threshold;
                                    prop_assert_eq!(cb.state(now) == CircuitState::Open, opens);
                                    if opens {
                                        opened_at = Some(now);
                                        failures_in_a_row = 0;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }

        /// Once open, exactly one caller gets through per cooldown until one succeeds.
        #[test]
        fn half_open_admits_one_trial_per_cooldown(threshold in 1u32..6, callers in 1usize..20) {
            let mut cb = CircuitBreaker::new(threshold, COOLDOWN);
            for _ in 0..threshold {
                let p = cb.permit(Duration::ZERO).unwrap();
                cb.on_failure(p, Duration::ZERO);
            }
            let later = COOLDOWN + s(1);
            let admitted = (0..callers).filter(|_| cb.permit(later).is_ok()).count();
            prop_assert_eq!(admitted, 1);
        }
    }
}
