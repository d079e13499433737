//! Pure types and rules. Nothing in here performs I/O or knows about HTTP or SQL,
//! so every rule can be unit- and property-tested in isolation.

pub mod address;
pub mod allocation;
pub mod backoff;
pub mod catalog;
pub mod category_tree;
pub mod circuit_breaker;
pub mod cursor;
pub mod email;
pub mod identifiers;
pub mod money;
pub mod order_status;
pub mod price_band;
pub mod pricing;
pub mod promotions;
pub mod rbac;
pub mod search_request;
pub mod shipping;
pub mod signature;
pub mod slug;
pub mod validation;
pub mod variant_matrix;
