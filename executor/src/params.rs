//! Statement parameters: values a caller binds to a statement's
//! placeholders (`$1`, `?`), sent beside the SQL text, never spliced into it.
//!
//! Owns the value kinds the HTTP contract carries (JSON's scalars). It never
//! formats a value into SQL: the worker binds each to the prepared
//! statement (`crate::duckdb::Prepared::bind`), and DuckDB casts it to the
//! placeholder's type as it would a typed literal.

use std::sync::Arc;

/// One parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// A statement's parameters, shared between the queue and the worker.
pub type Params = Arc<[Param]>;
