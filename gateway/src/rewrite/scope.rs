//! CTE scopes: which names of a statement are common table expressions at a
//! given point of the walk, exactly as DuckDB's binder sees them, so that a
//! name the rewriter leaves alone as a CTE is never one that the engine
//! reads as a table.
//!
//! Owns DuckDB's visibility rules (checked against the engine in
//! `tests/escapes.rs` and by the binder check at run time):
//! - a CTE is visible in the body of the query that declares it, in the
//!   CTEs declared after it in the same `WITH`, and in every subquery of
//!   those, until an inner `WITH` declares the same name;
//! - there are no forward references: a CTE never sees the ones declared
//!   after it, recursive `WITH` or not;
//! - in a `WITH RECURSIVE`, a CTE sees itself only in the recursive term of
//!   a body that is a `UNION [ALL]` (the right side of the top-level union,
//!   `ORDER BY`/`LIMIT` refused by DuckDB there); its anchor (the left side),
//!   a body of any other shape, and a `UNION BY NAME` read the real table.
//!
//! Names compare folded ([`crate::access::fold`]). Only an unqualified name
//! can mean a CTE. It never decides what a table name means otherwise:
//! that is [`super::names`].

use sqlparser::ast::{ObjectName, ObjectNamePart, Query, SetExpr, SetOperator, SetQuantifier};

use crate::access::fold;

/// The CTE names in scope, innermost last.
#[derive(Debug, Default)]
pub(super) struct Scopes {
    names: Vec<String>,
}

impl Scopes {
    /// A mark to return to when the query that declared names is left.
    pub(super) fn mark(&self) -> usize {
        self.names.len()
    }

    pub(super) fn leave(&mut self, mark: usize) {
        self.names.truncate(mark);
    }

    /// Brings a CTE name into scope.
    pub(super) fn declare(&mut self, name: &str) {
        self.names.push(fold(name));
    }

    /// Whether `name`, written in a FROM clause here, is a CTE in scope.
    pub(super) fn is_cte(&self, name: &ObjectName) -> bool {
        match name.0.as_slice() {
            [ObjectNamePart::Identifier(id)] => {
                let n = fold(&id.value);
                self.names.iter().rev().any(|c| *c == n)
            }
            _ => false,
        }
    }
}

/// How DuckDB reads the body of a CTE declared in a `WITH RECURSIVE`.
pub(super) enum RecursiveBody {
    /// `anchor UNION [ALL] recursive`: the CTE sees itself in the right side
    /// only.
    Union,
    /// Any other shape: the body never sees the CTE itself.
    Plain,
}

/// The shape of a CTE body under `WITH RECURSIVE`, by DuckDB's rule: a
/// body whose top is a `UNION` or `UNION ALL` set operation (not `BY NAME`)
/// is recursive, its own `WITH` visible on both sides; anything else is a
/// plain query. (DuckDB refuses `ORDER BY`, `LIMIT` and `OFFSET` on a
/// recursive union; such a body is walked as plain, which can only make
/// more names tables, and the engine refuses the text anyway.)
pub(super) fn recursive_body(q: &Query) -> RecursiveBody {
    let Query {
        with,
        body,
        order_by,
        limit_clause,
        fetch,
        locks,
        for_clause,
        settings,
        format_clause,
        pipe_operators,
    } = q;
    let _ = with;
    let plain_query = order_by.is_none()
        && limit_clause.is_none()
        && fetch.is_none()
        && locks.is_empty()
        && for_clause.is_none()
        && settings.is_none()
        && format_clause.is_none()
        && pipe_operators.is_empty();
    match body.as_ref() {
        SetExpr::SetOperation {
            op: SetOperator::Union,
            set_quantifier: SetQuantifier::None | SetQuantifier::All | SetQuantifier::Distinct,
            left: _,
            right: _,
        } if plain_query => RecursiveBody::Union,
        _ => RecursiveBody::Plain,
    }
}
