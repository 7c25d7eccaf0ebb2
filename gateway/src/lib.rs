//! The gateway's policy enforcement, as a library: the policy model
//! ([`policy`]) and the SQL rewriter that applies it ([`rewrite`]).
//!
//! This crate owns deciding what SQL may reach an engine for a principal. It
//! must never depend on an engine (no DuckDB here: the agent crates own it)
//! and never lets a statement through that it has not fully understood. The
//! HTTP API, the policy's storage and routing come later (issue 11).

pub mod policy;
pub mod rewrite;
pub mod rewrite_cache;

pub use policy::{Grantee, Policy, PolicyError, Principal, TableAccess, TableKey};
pub use rewrite::{rewrite, Catalog, RewriteError, Rewritten};
pub use rewrite_cache::{RewriteCache, DEFAULT_REWRITE_CACHE_BYTES};

#[cfg(test)]
mod tests;
