//! The gateway's policy enforcement, as a library: the policy model
//! ([`policy`]), the SQL rewriter that applies it ([`rewrite`]) and the
//! store that keeps endpoints, assignments, principals and the policy in a
//! database ([`store`]).
//!
//! This crate owns deciding what SQL may reach an engine for a principal. The
//! policy and the rewriter never call an engine (the store links the `client`
//! crate only for the resolver's types) and never let a statement through
//! that they have not fully understood. The HTTP API and routing come later
//! (issue 11).

pub mod policy;
pub mod rewrite;
pub mod rewrite_cache;
pub mod store;

pub use policy::{Grantee, Policy, PolicyError, Principal, TableAccess, TableKey};
pub use rewrite::{rewrite, Catalog, RewriteError, Rewritten};
pub use rewrite_cache::{RewriteCache, DEFAULT_REWRITE_CACHE_BYTES};

#[cfg(test)]
mod tests;
