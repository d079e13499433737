//! `payment.retry`: asks the provider again about a payment whose outcome was
//! unknown at checkout (the provider was unavailable and the shop queues such
//! payments). The same idempotency key makes a repeat harmless, so the job may
//! run any number of times; while the provider still cannot say, the job fails
//! and the queue tries again later, with backoff.

use std::sync::Arc;

use super::{JobFuture, JobHandler};
use crate::ops::checkout::{RetryError, RetryPayment, retry_payment};
use crate::payments::PaymentProvider;
use crate::store::Store;
use crate::store::jobs::Job;

pub use crate::ops::checkout::RETRY_PAYMENT as KIND;

pub struct RetryPaymentHandler {
    providers: Arc<[Arc<dyn PaymentProvider>]>,
}

impl RetryPaymentHandler {
    pub fn new(providers: Arc<[Arc<dyn PaymentProvider>]>) -> Self {
        Self { providers }
    }
}

impl JobHandler for RetryPaymentHandler {
    fn run<'a>(&'a self, store: &'a Store, job: &'a Job) -> JobFuture<'a> {
        Box::pin(async move {
            let retry: RetryPayment =
                serde_json::from_value(job.payload.clone()).map_err(|e| format!("unreadable payment.retry payload: {e}"))?;
            match retry_payment(store, &self.providers, &retry).await {
                Ok(()) => Ok(()),
                Err(e @ RetryError::Unavailable(_)) => Err(e.to_string().into()),
                Err(e) => {
                    tracing::error!(order.id = %retry.order_id, error = %e, "queued payment could not be retried");
                    Err(e.to_string().into())
                }
            }
        })
    }
}
