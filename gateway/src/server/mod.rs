//! The HTTP door of `compute-gateway`: the users' query API (`POST
//! /v1/query`, the `/v1/queries` job lifecycle), the admin API, `/health` and
//! `/metrics`. The binary (`src/bin/compute-gateway.rs`) parses the
//! [`config::Config`], opens the store and local DuckDB, builds the shared
//! [`crate::query::QueryService`] and serves [`app::App`].
//!
//! This module owns the HTTP surface: routes, JSON bodies and answers, the
//! mapping of the query path's failures to HTTP statuses, and the jobs of
//! the lifecycle API. The query path itself (authenticate, policy, routing,
//! rewrite, binder check, run, fallback, audit) is [`crate::query`]'s, shared
//! with the other doors; it never runs SQL that path did not produce, and
//! never blocks a runtime thread on DuckDB or the store's database.

pub mod admin;
pub mod app;
pub mod config;
pub mod http;
pub mod jobs;
pub mod rows_json;
