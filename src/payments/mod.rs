//! Payment providers behind one trait, chosen by the `provider` a checkout names.
//! Calls happen outside any database transaction; the provider's idempotency key
//! is derived from the order id, so a retried start never charges twice.

pub mod test_provider;

use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

pub struct PaymentRequest {
    pub order_id: Uuid,
    pub amount: i64,
    pub currency: String,
    /// The payment method token from the storefront (never card data).
    pub token: String,
}

impl PaymentRequest {
    /// The key under which the provider deduplicates starts of this order's payment.
    pub fn idempotency_key(&self) -> String {
        format!("order-{}", self.order_id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentStart {
    /// Money confirmed now.
    Succeeded { reference: String },
    /// Refused now (card declined, ...).
    Declined { reference: String, reason: String },
    /// Accepted; the outcome arrives later by webhook.
    Pending { reference: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("unknown payment token")]
    InvalidToken,
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
}

pub type Started<'a> = Pin<Box<dyn Future<Output = Result<PaymentStart, ProviderError>> + Send + 'a>>;

pub trait PaymentProvider: Send + Sync {
    fn name(&self) -> &'static str;
    fn start<'a>(&'a self, request: &'a PaymentRequest) -> Started<'a>;
}
