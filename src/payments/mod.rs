//! Payment providers behind one trait, chosen by the `provider` a checkout names.
//! Calls happen outside any database transaction; every call carries an
//! idempotency key derived from what it is for (the order, the refund), so a
//! retried call never charges or refunds twice.

pub mod guarded;
pub mod stripe;
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
    /// The money is held on the customer's card, to be captured when the order
    /// ships (or released if it is cancelled first).
    Authorized { reference: String },
}

pub struct RefundRequest {
    /// Our refund's id: the provider's idempotency key is derived from it.
    pub refund_id: Uuid,
    pub order_id: Uuid,
    /// The provider's reference of the payment being refunded.
    pub payment_reference: String,
    pub amount: i64,
    pub currency: String,
}

impl RefundRequest {
    pub fn idempotency_key(&self) -> String {
        format!("refund-{}", self.refund_id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    /// The money is on its way back.
    Succeeded { reference: String },
    /// Accepted; the outcome arrives later by webhook.
    Pending { reference: String },
    /// Refused for good (nothing left to refund, payment disputed, ...).
    Failed { reason: String },
}

/// What to do with money held by an authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldAction {
    /// Take it (the order ships).
    Capture,
    /// Release it (the order is cancelled before shipping).
    Void,
}

pub struct HoldRequest {
    pub order_id: Uuid,
    pub payment_reference: String,
    pub amount: i64,
    pub action: HoldAction,
}

impl HoldRequest {
    /// One capture and one release per order, whoever asks and however often.
    pub fn idempotency_key(&self) -> String {
        match self.action {
            HoldAction::Capture => format!("capture-{}", self.order_id),
            HoldAction::Void => format!("void-{}", self.order_id),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldOutcome {
    Done,
    /// Refused for good (the authorization expired, was released, ...).
    Refused {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("unknown payment token")]
    InvalidToken,
    /// The outcome is unknown (timeout, 5xx, unreadable answer, circuit open):
    /// the same call with the same idempotency key may be retried.
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
}

pub type ProviderFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ProviderError>> + Send + 'a>>;
pub type Started<'a> = ProviderFuture<'a, PaymentStart>;

pub trait PaymentProvider: Send + Sync {
    fn name(&self) -> &'static str;
    fn start<'a>(&'a self, request: &'a PaymentRequest) -> Started<'a>;
    fn refund<'a>(&'a self, request: &'a RefundRequest) -> ProviderFuture<'a, RefundOutcome>;

    /// Captures or releases an authorization (`PaymentStart::Authorized`).
    /// Providers that take money at once never hold any.
    fn finish_hold<'a>(&'a self, _request: &'a HoldRequest) -> ProviderFuture<'a, HoldOutcome> {
        Box::pin(async { Ok(HoldOutcome::Refused { reason: "this provider holds no payments".into() }) })
    }
}
