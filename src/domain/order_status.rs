//! The order state machine, as far as checkout drives it: an order waits for its
//! payment, then is paid, fails, expires or is cancelled. Transitions are named
//! events checked by one pure function; nothing else may change a status.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    PaymentFailed,
    Expired,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    /// The provider confirmed the money.
    PaymentSucceeded,
    /// The provider declined or the payment failed.
    PaymentFailed,
    /// The reservation ran out before the payment arrived.
    ReservationExpired,
    Cancel,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {from:?} cannot take {event:?}")]
pub struct TransitionError {
    pub from: OrderStatus,
    pub event: OrderEvent,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::PendingPayment,
        OrderStatus::Paid,
        OrderStatus::PaymentFailed,
        OrderStatus::Expired,
        OrderStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "pending_payment",
            OrderStatus::Paid => "paid",
            OrderStatus::PaymentFailed => "payment_failed",
            OrderStatus::Expired => "expired",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Whether the order still holds reserved stock.
    pub fn holds_reservation(self) -> bool {
        self == OrderStatus::PendingPayment
    }
}

/// The status after `event`, or why it cannot happen.
pub fn transition(from: OrderStatus, event: OrderEvent) -> Result<OrderStatus, TransitionError> {
    use OrderEvent as E;
    use OrderStatus as S;
    match (from, event) {
        (S::PendingPayment, E::PaymentSucceeded) => Ok(S::Paid),
        (S::PendingPayment, E::PaymentFailed) => Ok(S::PaymentFailed),
        (S::PendingPayment, E::ReservationExpired) => Ok(S::Expired),
        (S::PendingPayment, E::Cancel) => Ok(S::Cancelled),
        _ => Err(TransitionError { from, event }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EVENTS: [OrderEvent; 4] =
        [OrderEvent::PaymentSucceeded, OrderEvent::PaymentFailed, OrderEvent::ReservationExpired, OrderEvent::Cancel];

    #[test]
    fn a_pending_order_is_paid_once() {
        let paid = transition(OrderStatus::PendingPayment, OrderEvent::PaymentSucceeded).unwrap();
        assert_eq!(paid, OrderStatus::Paid);
        assert!(transition(paid, OrderEvent::PaymentSucceeded).is_err());
        assert!(transition(paid, OrderEvent::ReservationExpired).is_err());
    }

    proptest! {
        /// Any sequence of events changes a status at most once: every status
        /// other than pending_payment is final as far as checkout goes.
        #[test]
        fn at_most_one_transition_happens(events in proptest::collection::vec(0usize..4, 0..10)) {
            let mut status = OrderStatus::PendingPayment;
            let mut changes = 0;
            for e in events {
                if let Ok(next) = transition(status, EVENTS[e]) {
                    status = next;
                    changes += 1;
                }
            }
            prop_assert!(changes <= 1);
            prop_assert_eq!(status.holds_reservation(), changes == 0);
        }
    }

    #[test]
    fn names_round_trip() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
    }
}
