//! Mercato: a headless commerce engine that does not break on sale day.
//!
//! Layers, top to bottom: `http` (routes, extractors, error mapping, OpenAPI) →
//! `ops` (use cases) → `domain` (pure rules) → `store` (SQL). See
//! `ARCHITECTURE.md` in the README for the map.

pub mod auth;
pub mod batch_lane;
pub mod cache;
pub mod catalog_versions;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod jobs;
pub mod loadtest;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod payments;
pub mod search;
pub mod sold_out;
pub mod startup;
pub mod store;
pub mod telemetry;
