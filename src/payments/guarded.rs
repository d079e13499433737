//! Resilience around any provider: every call has a timeout, an `Unavailable`
//! answer is retried a few times at once (safe: the retry carries the same
//! idempotency key, so the provider answers it as the same call), and a circuit
//! breaker stops calling a provider that keeps failing, so checkouts fail fast
//! instead of each waiting out the timeout.
//!
//! Only `Unavailable` counts as a failure: a decline or an unknown token is the
//! provider working.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    HoldOutcome, HoldRequest, PaymentProvider, PaymentRequest, PaymentStart, ProviderError, ProviderFuture, RefundOutcome,
    RefundRequest, Started,
};
use crate::domain::circuit_breaker::{CircuitBreaker, CircuitState, Permit};

#[derive(Debug, Clone, Copy)]
pub struct GuardSettings {
    /// Longest wait for one call.
    pub timeout: Duration,
    /// Further attempts after an `Unavailable` answer.
    pub retries: u32,
    /// Pause before the first retry; doubled before each next one.
    pub retry_pause: Duration,
    pub failure_threshold: u32,
    pub cooldown: Duration,
}

impl GuardSettings {
    /// The longest a guarded call can take: every attempt timing out, plus the pauses.
    pub fn worst_case(&self) -> Duration {
        let pauses: Duration = (0..self.retries).map(|i| self.retry_pause.saturating_mul(1 << i.min(16))).sum();
        self.timeout.saturating_mul(self.retries + 1) + pauses
    }
}

pub struct Guarded {
    inner: Arc<dyn PaymentProvider>,
    settings: GuardSettings,
    breaker: Mutex<CircuitBreaker>,
    /// The origin of the times handed to the breaker.
    origin: Instant,
}

impl Guarded {
    pub fn new(inner: Arc<dyn PaymentProvider>, settings: GuardSettings) -> Self {
        let breaker = Mutex::new(CircuitBreaker::new(settings.failure_threshold, settings.cooldown));
        let guarded = Self { inner, settings, breaker, origin: Instant::now() };
        guarded.publish_state(CircuitState::Closed);
        guarded
    }

    pub fn circuit_state(&self) -> CircuitState {
        let now = self.origin.elapsed();
        self.breaker.lock().unwrap_or_else(|e| e.into_inner()).state(now)
    }

    fn publish_state(&self, state: CircuitState) {
        metrics::gauge!("payment_provider_circuit_state", "provider" => self.inner.name()).set(state.as_gauge());
    }

    /// Runs `call` under the timeout, the retries and the breaker.
    async fn guard<'a, T, F>(&'a self, operation: &'static str, call: F) -> Result<T, ProviderError>
    where
        F: Fn() -> ProviderFuture<'a, T>,
        T: Outcome,
    {
        let mut pause = self.settings.retry_pause;
        let mut attempt = 0;
        loop {
            let result = self.attempt(operation, &call).await;
            match result {
                Err(ProviderError::Unavailable(ref why)) if attempt < self.settings.retries && why != CIRCUIT_OPEN => {
                    tracing::warn!(provider = self.inner.name(), operation, attempt, error = %why, "payment provider unavailable; retrying");
                    tokio::time::sleep(pause).await;
                    pause = pause.saturating_mul(2);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn attempt<'a, T, F>(&'a self, operation: &'static str, call: &F) -> Result<T, ProviderError>
    where
        F: Fn() -> ProviderFuture<'a, T>,
        T: Outcome,
    {
        let provider = self.inner.name();
        let permit = {
            let mut breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
            let permit = breaker.permit(self.origin.elapsed());
            self.publish_state(breaker.state(self.origin.elapsed()));
            permit
        };
        let Ok(permit) = permit else {
            metrics::counter!("payment_provider_calls_total", "provider" => provider, "operation" => operation, "outcome" => "circuit_open")
                .increment(1);
            return Err(ProviderError::Unavailable(CIRCUIT_OPEN.into()));
        };
        let result = match tokio::time::timeout(self.settings.timeout, call()).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::Unavailable(format!("no answer within {:?}", self.settings.timeout))),
        };
        let outcome = match &result {
            Ok(r) => r.label(),
            Err(ProviderError::InvalidToken) => "invalid_token",
            Err(ProviderError::Unavailable(_)) => "unavailable",
        };
        metrics::counter!("payment_provider_calls_total", "provider" => provider, "operation" => operation, "outcome" => outcome)
            .increment(1);
        self.report(permit, matches!(result, Err(ProviderError::Unavailable(_))));
        result
    }

    fn report(&self, permit: Permit, failed: bool) {
        let mut breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.origin.elapsed();
        let before = breaker.state(now);
        if failed {
            breaker.on_failure(permit, now);
        } else {
            breaker.on_success(permit);
        }
        let after = breaker.state(now);
        if before != after {
            match after {
                CircuitState::Open => tracing::error!(
                    provider = self.inner.name(),
                    "payment circuit opened: calls fail at once until the cooldown ends"
                ),
                CircuitState::Closed => tracing::info!(provider = self.inner.name(), "payment circuit closed again"),
                CircuitState::HalfOpen => {}
            }
        }
        self.publish_state(after);
    }
}

/// The message of the error a call gets while the circuit is open.
pub const CIRCUIT_OPEN: &str = "circuit open";

/// A metrics label for a provider's answer.
trait Outcome {
    fn label(&self) -> &'static str;
}

impl Outcome for PaymentStart {
    fn label(&self) -> &'static str {
        match self {
            PaymentStart::Succeeded { .. } => "succeeded",
            PaymentStart::Declined { .. } => "declined",
            PaymentStart::Pending { .. } => "pending",
            PaymentStart::Authorized { .. } => "authorized",
        }
    }
}

impl Outcome for HoldOutcome {
    fn label(&self) -> &'static str {
        match self {
            HoldOutcome::Done => "done",
            HoldOutcome::Refused { .. } => "refused",
        }
    }
}

impl Outcome for RefundOutcome {
    fn label(&self) -> &'static str {
        match self {
            RefundOutcome::Succeeded { .. } => "succeeded",
            RefundOutcome::Pending { .. } => "pending",
            RefundOutcome::Failed { .. } => "failed",
        }
    }
}

impl PaymentProvider for Guarded {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn start<'a>(&'a self, request: &'a PaymentRequest) -> Started<'a> {
        Box::pin(self.guard("start", move || self.inner.start(request)))
    }

    fn refund<'a>(&'a self, request: &'a RefundRequest) -> ProviderFuture<'a, RefundOutcome> {
        Box::pin(self.guard("refund", move || self.inner.refund(request)))
    }

    fn finish_hold<'a>(&'a self, request: &'a HoldRequest) -> ProviderFuture<'a, HoldOutcome> {
        Box::pin(self.guard("finish_hold", move || self.inner.finish_hold(request)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Answers `Unavailable` for the first `failures` calls, then succeeds.
    struct Flaky {
        failures: u32,
        calls: AtomicU32,
    }

    impl PaymentProvider for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }

        fn start<'a>(&'a self, request: &'a PaymentRequest) -> Started<'a> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                if n < self.failures {
                    Err(ProviderError::Unavailable("503".into()))
                } else {
                    Ok(PaymentStart::Succeeded { reference: request.idempotency_key() })
                }
            })
        }

        fn refund<'a>(&'a self, _: &'a RefundRequest) -> ProviderFuture<'a, RefundOutcome> {
            Box::pin(async { Ok(RefundOutcome::Failed { reason: "not here".into() }) })
        }
    }

    fn settings(retries: u32, threshold: u32) -> GuardSettings {
        GuardSettings {
            timeout: Duration::from_secs(5),
            retries,
            retry_pause: Duration::from_millis(1),
            failure_threshold: threshold,
            cooldown: Duration::from_secs(3600),
        }
    }

    fn request() -> PaymentRequest {
        PaymentRequest { order_id: uuid::Uuid::nil(), amount: 100, currency: "EUR".into(), token: "pm".into() }
    }

    #[tokio::test]
    async fn retries_unavailable_with_the_same_request_then_succeeds() {
        let inner = Arc::new(Flaky { failures: 2, calls: AtomicU32::new(0) });
        let guarded = Guarded::new(inner.clone(), settings(2, 10));
        let started = guarded.start(&request()).await.unwrap();
        assert_eq!(started, PaymentStart::Succeeded { reference: request().idempotency_key() });
        assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_open_circuit_fails_without_calling_the_provider() {
        let inner = Arc::new(Flaky { failures: u32::MAX, calls: AtomicU32::new(0) });
        let guarded = Guarded::new(inner.clone(), settings(5, 2));
        // Two failures open the circuit; the retries stop there.
        let err = guarded.start(&request()).await.unwrap_err();
        assert!(matches!(err, ProviderError::Unavailable(ref m) if m == CIRCUIT_OPEN), "{err}");
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
        assert_eq!(guarded.circuit_state(), CircuitState::Open);
        assert!(guarded.start(&request()).await.is_err());
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_worst_case_counts_every_attempt_and_pause() {
        let s = GuardSettings { timeout: Duration::from_secs(10), retry_pause: Duration::from_millis(100), ..settings(2, 1) };
        assert_eq!(s.worst_case(), Duration::from_millis(30_300));
    }
}
