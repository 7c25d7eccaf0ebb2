//! The gateway: the access-control interface ([`access`]) and the policy
//! model behind it ([`policy`]), the SQL rewriter that applies it
//! ([`rewrite`], with the function allow list [`functions`]), the binder
//! check that proves each rewrite on the engine ([`verify`]), the store that
//! keeps endpoints, assignments, principals and the policy in a database
//! ([`store`]), the one query path every door shares ([`query`]: routing
//! through the resolver, audit, metrics), and the doors (the HTTP API,
//! [`server`]; Arrow Flight SQL, [`flight`]).
//!
//! This crate owns deciding what SQL may reach an engine for a principal and
//! never lets a statement through that it has not fully understood. The
//! policy model and the rewriter never touch an engine (the store links the
//! `client` crate only for the resolver's types); the server reaches engines
//! only through the `client` crate (agents over HTTP, local DuckDB).

pub mod access;
pub mod disclose;
pub mod drain;
pub mod flight;
pub mod functions;
pub mod pgwire;
pub mod policy;
pub mod query;
pub mod rewrite;
pub mod rewrite_cache;
mod rewrite_shape;
pub mod server;
pub mod store;
pub mod tls;
pub mod verify;

pub use access::{AccessControl, Principal, TableAccess, TableKey};
pub use policy::{Grantee, Policy, PolicyError};
pub use rewrite::{rewrite, Catalog, RewriteError, Rewritten};
pub use rewrite_cache::{Generation, RewriteCache, DEFAULT_REWRITE_CACHE_BYTES};

#[cfg(test)]
mod tests;
