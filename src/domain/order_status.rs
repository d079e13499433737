//! The order state machine. An order waits for its payment, is paid, shipped in
//! one or more parcels, delivered, and may be returned; it can fail, expire or be
//! cancelled before it ships, and be refunded in part or in full while it holds
//! money. Transitions are named events checked by one pure function; nothing else
//! may change a status.
//!
//! Money returned is tracked beside the status (`refunded_total`): a partial
//! refund leaves the lifecycle where it was (a paid order can still ship), and the
//! order reads `partially_refunded` in its refund status. Refunding everything
//! that was paid ends the order in `refunded` — except while a return is on its
//! way back, which stays open so the goods can still be received.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    /// Some lines shipped, some not yet.
    Fulfilling,
    /// Every line shipped.
    Shipped,
    Delivered,
    ReturnRequested,
    Returned,
    Refunded,
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
    /// A shipment left; `complete` when it leaves nothing unshipped.
    Ship {
        complete: bool,
    },
    Deliver,
    RequestReturn,
    /// The returned goods arrived.
    ReceiveReturn,
    /// Money went back; `complete` when nothing paid is left.
    Refund {
        complete: bool,
    },
}

impl OrderEvent {
    pub fn name(self) -> &'static str {
        match self {
            OrderEvent::PaymentSucceeded => "payment_succeeded",
            OrderEvent::PaymentFailed => "payment_failed",
            OrderEvent::ReservationExpired => "reservation_expired",
            OrderEvent::Cancel => "cancel",
            OrderEvent::Ship { .. } => "ship",
            OrderEvent::Deliver => "deliver",
            OrderEvent::RequestReturn => "request_return",
            OrderEvent::ReceiveReturn => "receive_return",
            OrderEvent::Refund { .. } => "refund",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {} cannot {}", from.as_str(), event.name())]
pub struct TransitionError {
    pub from: OrderStatus,
    pub event: OrderEvent,
}

impl TransitionError {
    /// What the order could do instead, for the answer.
    pub fn allowed(&self) -> Vec<&'static str> {
        allowed_events(self.from)
    }
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 11] = [
        OrderStatus::PendingPayment,
        OrderStatus::Paid,
        OrderStatus::Fulfilling,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::ReturnRequested,
        OrderStatus::Returned,
        OrderStatus::Refunded,
        OrderStatus::PaymentFailed,
        OrderStatus::Expired,
        OrderStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "pending_payment",
            OrderStatus::Paid => "paid",
            OrderStatus::Fulfilling => "fulfilling",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::ReturnRequested => "return_requested",
            OrderStatus::Returned => "returned",
            OrderStatus::Refunded => "refunded",
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

    /// Whether the shop holds the customer's money (some of which may be refunded).
    pub fn holds_money(self) -> bool {
        matches!(
            self,
            OrderStatus::Paid
                | OrderStatus::Fulfilling
                | OrderStatus::Shipped
                | OrderStatus::Delivered
                | OrderStatus::ReturnRequested
                | OrderStatus::Returned
        )
    }

    /// No event moves the order any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, OrderStatus::Refunded | OrderStatus::PaymentFailed | OrderStatus::Expired | OrderStatus::Cancelled)
    }
}

/// The status after `event`, or why it cannot happen.
pub fn transition(from: OrderStatus, event: OrderEvent) -> Result<OrderStatus, TransitionError> {
    use OrderEvent as E;
    use OrderStatus as S;
    let to = match (from, event) {
        (S::PendingPayment, E::PaymentSucceeded) => S::Paid,
        (S::PendingPayment, E::PaymentFailed) => S::PaymentFailed,
        (S::PendingPayment, E::ReservationExpired) => S::Expired,
        // Before anything ships; a paid order's money goes back with it.
        (S::PendingPayment | S::Paid, E::Cancel) => S::Cancelled,
        (S::Paid | S::Fulfilling, E::Ship { complete: false }) => S::Fulfilling,
        (S::Paid | S::Fulfilling, E::Ship { complete: true }) => S::Shipped,
        (S::Shipped, E::Deliver) => S::Delivered,
        (S::Shipped | S::Delivered, E::RequestReturn) => S::ReturnRequested,
        (S::ReturnRequested, E::ReceiveReturn) => S::Returned,
        // The goods are on their way back: the return stays open to receive them.
        (S::ReturnRequested, E::Refund { .. }) => S::ReturnRequested,
        (s, E::Refund { complete: true }) if s.holds_money() => S::Refunded,
        (s, E::Refund { complete: false }) if s.holds_money() => s,
        _ => return Err(TransitionError { from, event }),
    };
    Ok(to)
}

/// The events an order in `from` accepts (by name), for a 409's explanation.
pub fn allowed_events(from: OrderStatus) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = EVENTS.iter().filter(|e| transition(from, **e).is_ok()).map(|e| e.name()).collect();
    names.dedup();
    names
}

const EVENTS: [OrderEvent; 11] = [
    OrderEvent::PaymentSucceeded,
    OrderEvent::PaymentFailed,
    OrderEvent::ReservationExpired,
    OrderEvent::Cancel,
    OrderEvent::Ship { complete: false },
    OrderEvent::Ship { complete: true },
    OrderEvent::Deliver,
    OrderEvent::RequestReturn,
    OrderEvent::ReceiveReturn,
    OrderEvent::Refund { complete: false },
    OrderEvent::Refund { complete: true },
];

/// How much of an order's money went back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    None,
    PartiallyRefunded,
    Refunded,
}

pub fn refund_status(paid: i64, refunded: i64) -> RefundStatus {
    match refunded {
        r if r <= 0 => RefundStatus::None,
        r if r >= paid => RefundStatus::Refunded,
        _ => RefundStatus::PartiallyRefunded,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundError {
    #[error("a refund must be a positive amount")]
    NotPositive,
    #[error("{requested} is more than the {left} left to refund")]
    ExceedsPaid { requested: i64, left: i64 },
}

/// Checks a refund of `amount` against what was paid and what is already
/// refunded or being refunded; says whether it returns everything that is left.
pub fn check_refund(paid: i64, committed: i64, amount: i64) -> Result<bool, RefundError> {
    let left = (paid - committed).max(0);
    if amount <= 0 {
        return Err(RefundError::NotPositive);
    }
    if amount > left {
        return Err(RefundError::ExceedsPaid { requested: amount, left });
    }
    Ok(amount == left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_pending_order_is_paid_once() {
        let paid = transition(OrderStatus::PendingPayment, OrderEvent::PaymentSucceeded).unwrap();
        assert_eq!(paid, OrderStatus::Paid);
        assert!(transition(paid, OrderEvent::PaymentSucceeded).is_err());
        assert!(transition(paid, OrderEvent::ReservationExpired).is_err());
    }

    #[test]
    fn the_happy_path_ends_delivered() {
        let mut s = OrderStatus::PendingPayment;
        for e in [
            OrderEvent::PaymentSucceeded,
            OrderEvent::Ship { complete: false },
            OrderEvent::Ship { complete: true },
            OrderEvent::Deliver,
        ] {
            s = transition(s, e).unwrap();
        }
        assert_eq!(s, OrderStatus::Delivered);
    }

    #[test]
    fn a_partial_refund_keeps_the_lifecycle_and_a_full_one_ends_it() {
        assert_eq!(transition(OrderStatus::Shipped, OrderEvent::Refund { complete: false }), Ok(OrderStatus::Shipped));
        assert_eq!(transition(OrderStatus::Returned, OrderEvent::Refund { complete: true }), Ok(OrderStatus::Refunded));
        assert!(transition(OrderStatus::PendingPayment, OrderEvent::Refund { complete: false }).is_err());
    }

    #[test]
    fn a_shipped_order_cannot_be_cancelled_and_says_what_it_can_do() {
        let err = transition(OrderStatus::Fulfilling, OrderEvent::Cancel).unwrap_err();
        assert_eq!(err.allowed(), vec!["ship", "refund"]);
        assert_eq!(err.to_string(), "an order that is fulfilling cannot cancel");
    }

    #[test]
    fn refunds_are_checked_against_what_is_left() {
        assert_eq!(check_refund(1000, 0, 1000), Ok(true));
        assert_eq!(check_refund(1000, 400, 500), Ok(false));
        assert_eq!(check_refund(1000, 400, 601), Err(RefundError::ExceedsPaid { requested: 601, left: 600 }));
        assert_eq!(check_refund(1000, 0, 0), Err(RefundError::NotPositive));
        assert_eq!(refund_status(1000, 0), RefundStatus::None);
        assert_eq!(refund_status(1000, 1), RefundStatus::PartiallyRefunded);
        assert_eq!(refund_status(1000, 1000), RefundStatus::Refunded);
    }

    #[test]
    fn names_round_trip() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
    }

    fn any_event() -> impl Strategy<Value = OrderEvent> {
        (0..EVENTS.len()).prop_map(|i| EVENTS[i])
    }

    proptest! {
        /// Nothing leaves a terminal state.
        #[test]
        fn terminal_states_stay(e in any_event()) {
            for s in OrderStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
                prop_assert!(transition(s, e).is_err());
            }
        }

        /// Along any path: nothing ships before it is paid, reservations are held
        /// only before the payment, and refunds never exceed what was paid.
        #[test]
        fn any_path_keeps_the_rules(events in proptest::collection::vec((any_event(), 1i64..600), 0..30)) {
            let paid = 1000;
            let mut status = OrderStatus::PendingPayment;
            let mut refunded = 0;
            let mut was_paid = false;
            for (event, amount) in events {
                let event = match event {
                    // Refund events are only asked for through the refund check.
                    OrderEvent::Refund { .. } => match check_refund(paid, refunded, amount) {
                        Ok(complete) => OrderEvent::Refund { complete },
                        Err(_) => continue,
                    },
                    e => e,
                };
                let Ok(next) = transition(status, event) else { continue };
                if let OrderEvent::Refund { .. } = event {
                    refunded += amount;
                }
                if let OrderEvent::Ship { .. } = event {
                    prop_assert!(was_paid, "shipped before payment");
                }
                was_paid |= next == OrderStatus::Paid;
                status = next;
                prop_assert!(refunded <= paid);
                if status == OrderStatus::Refunded {
                    prop_assert_eq!(refunded, paid);
                }
                if refunded == paid {
                    prop_assert!(matches!(status, OrderStatus::Refunded | OrderStatus::ReturnRequested | OrderStatus::Returned));
                }
                prop_assert!(!status.holds_reservation() || !was_paid);
            }
        }
    }
}
