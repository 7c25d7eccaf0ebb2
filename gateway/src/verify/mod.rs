//! The binder check: the second, independent line of the policy. Before a
//! rewritten statement is cached or sent, DuckDB binds it (without running
//! it) against a shadow catalog that holds the same tables as the engine,
//! empty, and the bound plan must prove the policy:
//!
//! - exactly one statement, and a query (every logical operator in the plan
//!   is on [`plan::ALLOWED_OPERATORS`]);
//! - every base-table scan is of a table the principal is granted, and sits
//!   at the bottom of exactly the subtree that table's derived query binds
//!   to on its own (its filter, its masked projection): nothing reads the
//!   table but through its policy, and nothing outside that subtree reads
//!   the scan's columns raw;
//! - no other scan than the table functions the allow list admits in FROM
//!   (no system view, no file, no catalog function);
//! - every function, aggregate and operator the binder bound (macros
//!   expanded) is on the allow list ([`crate::functions`]).
//!
//! DuckDB's binder, not the rewriter's walk, says which tables a statement
//! reads: a rewriter bug (a CTE scope, a name, a function it let through)
//! shows up here as a mismatch and the statement is refused.
//!
//! Owns the shadow database ([`Shadow`]) and the proof ([`plan`]). It never
//! runs a user's statement (only `json_serialize_plan` over it, unoptimized,
//! in a database with no rows, no file access and locked settings), and it
//! is only ever called off the async runtime's threads (it blocks on DuckDB).

pub mod plan;
mod shadow;

pub use shadow::{catalog_ddl, Shadow, ShadowTable};

/// Why the binder check refused a statement.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The engine cannot bind the statement: DuckDB's own message (the
    /// caller strips what it must not show).
    #[error("{0}")]
    Bind(String),
    /// The bound plan does not prove the policy: a policy-engine error, the
    /// rewriter let through something the binder reads otherwise.
    #[error("the bound plan does not prove the policy: {0}")]
    Mismatch(String),
    /// The shadow itself failed (it could not be built or queried).
    #[error("the binder check could not run: {0}")]
    Shadow(String),
}
