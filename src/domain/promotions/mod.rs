//! Promotions: rules staff write, the pure evaluator that turns a cart and the
//! promotions on offer into discounts, coupon codes, and the usage limits shared
//! out at checkout.

pub mod codes;
pub mod evaluate;
pub mod rules;
pub mod usage;
