//! The `compute-gateway` server: the users' query API, the admin API, routing
//! through the resolver, audit and metrics. The binary
//! (`src/bin/compute-gateway.rs`) parses the [`config::Config`], opens the
//! store and local DuckDB, and calls [`app::App::start`].
//!
//! This module owns the HTTP surface and the query path; policy decisions
//! are the rewriter's ([`crate::rewrite`]), routing decisions the resolver's
//! (`client::resolver`), persistence the store's ([`crate::store`]). It never
//! runs SQL the rewriter did not produce, and never blocks a runtime thread on
//! DuckDB or the store's database.

pub mod admin;
pub mod app;
pub mod audit;
pub mod catalog;
pub mod config;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod rows_json;
