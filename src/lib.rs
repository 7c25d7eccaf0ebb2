//! compute-agent: the worker half of the distributed SQL platform. A gateway sends
//! already-rewritten SQL; the agent runs it on DuckDB (the `executor` crate) behind a
//! sharded HTTP/1.1 server (the `net` crate) and answers with the wire contract's JSON.
//!
//! This crate owns configuration, routing, auth, response bodies, health, metrics and
//! logs. It never runs SQL itself and never blocks a reactor thread.

pub mod api;
pub mod app;
pub mod arrow_reply;
pub mod auth;
pub mod body;
pub mod config;
pub mod duration;
pub mod health;
pub mod json;
pub mod logging;
pub mod metrics;
pub mod page_token;
pub mod reply;
pub mod routes;
pub mod settings;
pub mod signature;
pub mod state;
pub mod timefmt;
