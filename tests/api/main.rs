//! Behaviour tests: the real server on a random port, driven over HTTP, against
//! SQLite and PostgreSQL alike (`on_both_databases!`).

#[macro_use]
mod helpers;

mod auth;
mod catalog;
mod checkout;
mod cli;
mod concurrency;
mod import;
mod jobs;
mod lifecycle;
mod loadtest;
mod notifications;
mod operations;
mod promotions;
mod rbac;
mod search;
mod sold_out;
mod stripe;
mod webhooks;
