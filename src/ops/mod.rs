//! Use cases. Each function combines the domain rules with the store and the
//! other collaborators; handlers and the CLI call these, never the store directly
//! for writes.

pub mod carts;
pub mod catalog;
pub mod catalog_feed;
pub mod checkout;
pub mod customers;
pub mod demo;
pub mod events;
pub mod holds;
pub mod housekeeping;
pub mod import;
pub mod order_batches;
pub mod password_reset;
pub mod payment_batches;
pub mod payments;
pub mod promotions;
pub mod refunds;
pub mod search;
pub mod sessions;
pub mod staff;
pub mod stock;
pub mod webhooks;
