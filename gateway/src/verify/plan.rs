//! The proof read off a bound plan, as `json_serialize_plan` writes it (the
//! logical operators of one statement, bound and not optimized, columns
//! resolved to positions in their child's output).
//!
//! Owns what a plan may hold: the logical operators a query is made of
//! ([`ALLOWED_OPERATORS`]), the expression classes the binder produces for
//! one ([`ALLOWED_EXPRESSIONS`]), functions only from the allow list, and
//! base-table scans only at the bottom of the subtree their table's derived
//! query binds to on its own ([`Reference`]). Anything it does not know is a
//! mismatch: it never guesses that an unknown operator is harmless.

use serde_json::Value;

use super::VerifyError;
use crate::access::{fold, TableKey};
use crate::functions::{self, FunctionUse};

/// The logical operators a read-only query binds to.
pub const ALLOWED_OPERATORS: &[&str] = &[
    "LOGICAL_PROJECTION",
    "LOGICAL_FILTER",
    "LOGICAL_AGGREGATE_AND_GROUP_BY",
    "LOGICAL_WINDOW",
    "LOGICAL_UNNEST",
    "LOGICAL_LIMIT",
    "LOGICAL_ORDER_BY",
    "LOGICAL_TOP_N",
    "LOGICAL_DISTINCT",
    "LOGICAL_GET",
    "LOGICAL_DELIM_GET",
    "LOGICAL_EXPRESSION_GET",
    "LOGICAL_DUMMY_SCAN",
    "LOGICAL_EMPTY_RESULT",
    "LOGICAL_CTE_REF",
    "LOGICAL_COMPARISON_JOIN",
    "LOGICAL_ANY_JOIN",
    "LOGICAL_CROSS_PRODUCT",
    "LOGICAL_POSITIONAL_JOIN",
    "LOGICAL_ASOF_JOIN",
    "LOGICAL_DELIM_JOIN",
    "LOGICAL_DEPENDENT_JOIN",
    "LOGICAL_UNION",
    "LOGICAL_EXCEPT",
    "LOGICAL_INTERSECT",
    "LOGICAL_RECURSIVE_CTE",
    "LOGICAL_MATERIALIZED_CTE",
];

/// The bound expression classes a query's expressions are made of.
pub const ALLOWED_EXPRESSIONS: &[&str] = &[
    "BOUND_REF",
    "BOUND_COLUMN_REF",
    "BOUND_CONSTANT",
    "BOUND_FUNCTION",
    "BOUND_AGGREGATE",
    "BOUND_WINDOW",
    "BOUND_CASE",
    "BOUND_CAST",
    "BOUND_COMPARISON",
    "BOUND_CONJUNCTION",
    "BOUND_OPERATOR",
    "BOUND_BETWEEN",
    "BOUND_LAMBDA",
    "BOUND_LAMBDA_REF",
    "BOUND_UNNEST",
    "BOUND_PARAMETER",
];

/// Keys whose values depend on where a subtree sits in its statement (the
/// binder's numbering, the text positions), not on what it computes.
const POSITIONAL_KEYS: &[&str] = &["table_index", "query_location", "query_location_length"];

fn mismatch(m: impl Into<String>) -> VerifyError {
    VerifyError::Mismatch(m.into())
}

/// DuckDB's message for a bind or parse failure, as its own errors read
/// (`Binder Error: ...`).
pub fn error_text(kind: &str, message: &str) -> String {
    if kind.is_empty() {
        return message.to_string();
    }
    let mut k = String::with_capacity(kind.len());
    let mut upper = true;
    for c in kind.chars() {
        if c == '_' {
            k.push(' ');
            upper = true;
        } else if upper {
            k.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            k.push(c);
        }
    }
    format!("{k} Error: {message}")
}

/// The subtree a granted table's derived query binds to on its own, with
/// its position-dependent keys removed, and how deep its scan sits.
#[derive(Debug)]
pub struct Reference {
    normal: Value,
    depth: usize,
}

impl Reference {
    /// The reference of a derived query's one plan: a chain of single-child
    /// operators ending in the table's scan.
    pub fn of(plan: Value) -> Result<Reference, VerifyError> {
        let mut depth = 0;
        let mut node = &plan;
        loop {
            if op_type(node) == Some("LOGICAL_GET") {
                break;
            }
            match children(node) {
                [only] => node = only,
                _ => {
                    return Err(mismatch(
                        "a derived query is not a chain ending in its scan",
                    ))
                }
            }
            depth += 1;
        }
        let mut normal = plan;
        normalize(&mut normal);
        Ok(Reference { normal, depth })
    }
}

fn op_type(node: &Value) -> Option<&str> {
    node.get("type").and_then(Value::as_str)
}

fn children(node: &Value) -> &[Value] {
    node.get("children")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Removes the position-dependent keys everywhere in `v`.
fn normalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in POSITIONAL_KEYS {
                m.remove(*k);
            }
            for x in m.values_mut() {
                normalize(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

/// Whether `actual` equals `normal` once its position-dependent keys are
/// ignored (without copying `actual`).
fn same(actual: &Value, normal: &Value) -> bool {
    match (actual, normal) {
        (Value::Object(a), Value::Object(n)) => {
            let mut seen = 0;
            for (k, x) in a {
                if POSITIONAL_KEYS.contains(&k.as_str()) {
                    continue;
                }
                match n.get(k) {
                    Some(y) if same(x, y) => seen += 1,
                    _ => return false,
                }
            }
            seen == n.len()
        }
        (Value::Array(a), Value::Array(n)) => {
            a.len() == n.len() && a.iter().zip(n).all(|(x, y)| same(x, y))
        }
        (a, n) => a == n,
    }
}

/// The folded last part of a function's qualified name (`qname.path`).
fn function_name(qname: &Value) -> Option<String> {
    qname
        .get("path")
        .and_then(Value::as_array)
        .and_then(|p| p.last())
        .and_then(Value::as_str)
        .map(fold)
}

/// The table a `seq_scan` reads.
fn scanned_table(get: &Value) -> Option<TableKey> {
    let d = get.get("function_data")?;
    let part = |k: &str| d.get(k).and_then(Value::as_str);
    if let Some(path) = d
        .get("qualified_name")
        .and_then(|q| q.get("path"))
        .and_then(Value::as_array)
    {
        // A nested schema path is a name the rewriter never writes.
        if path.len() != 3 {
            return None;
        }
    }
    Some(TableKey::new(
        part("catalog")?,
        part("schema")?,
        part("table")?,
    ))
}

/// Proves one bound plan: see the module doc. `reference` gives the
/// reference subtree of a table the principal is granted (and `None` for
/// any other table).
pub fn prove(
    plan: &Value,
    reference: &dyn Fn(&TableKey) -> Option<std::sync::Arc<Reference>>,
) -> Result<(), VerifyError> {
    let mut path: Vec<&Value> = Vec::with_capacity(32);
    operator(plan, &mut path, reference)
}

#[recursive::recursive]
fn operator<'a>(
    node: &'a Value,
    path: &mut Vec<&'a Value>,
    reference: &dyn Fn(&TableKey) -> Option<std::sync::Arc<Reference>>,
) -> Result<(), VerifyError> {
    let kind = op_type(node).ok_or_else(|| mismatch("an operator without a type"))?;
    if !ALLOWED_OPERATORS.contains(&kind) {
        return Err(mismatch(format!("the plan holds a {kind} operator")));
    }
    if kind == "LOGICAL_GET" {
        scan(node, path, reference)?;
    }
    let Value::Object(fields) = node else {
        return Err(mismatch("an operator that is not an object"));
    };
    for (k, v) in fields {
        match k.as_str() {
            "children" => {}
            // The scan's own function was checked by `scan`.
            "qname" if kind == "LOGICAL_GET" => {}
            _ => expressions(v)?,
        }
    }
    path.push(node);
    for c in children(node) {
        operator(c, path, reference)?;
    }
    path.pop();
    Ok(())
}

/// A scan: a base table read only through its derived query, or a table
/// function the allow list admits in FROM.
fn scan(
    get: &Value,
    path: &[&Value],
    reference: &dyn Fn(&TableKey) -> Option<std::sync::Arc<Reference>>,
) -> Result<(), VerifyError> {
    let name = get
        .get("qname")
        .and_then(function_name)
        .ok_or_else(|| mismatch("a scan without a function"))?;
    if name != "seq_scan" {
        return functions::check(&name, FunctionUse::Table)
            .map_err(|why| mismatch(format!("the plan scans {name}: {why}")));
    }
    let key = scanned_table(get).ok_or_else(|| mismatch("a table scan without its table"))?;
    let r = reference(&key).ok_or_else(|| {
        mismatch(format!(
            "the plan reads {key}, which the rewrite did not grant"
        ))
    })?;
    let top = path
        .len()
        .checked_sub(r.depth)
        .and_then(|i| path.get(i))
        .ok_or_else(|| mismatch(format!("{key} is read outside its derived query")))?;
    // The chain from that ancestor down to this scan must be single-child
    // (the subtree compared below is then exactly the derived query).
    if !same(top, &r.normal) {
        return Err(mismatch(format!(
            "{key} is read other than through its policy's derived query"
        )));
    }
    Ok(())
}

/// Checks every expression under `v` (any JSON below an operator's field).
#[recursive::recursive]
fn expressions(v: &Value) -> Result<(), VerifyError> {
    match v {
        Value::Object(m) => {
            if let Some(class) = m.get("expression_class").and_then(Value::as_str) {
                if !ALLOWED_EXPRESSIONS.contains(&class) {
                    return Err(mismatch(format!("the plan holds a {class} expression")));
                }
            }
            if let Some(q) = m.get("qname") {
                let name = function_name(q).ok_or_else(|| mismatch("a function without a name"))?;
                functions::check_bound(&name)
                    .map_err(|why| mismatch(format!("the plan calls {name}: {why}")))?;
            }
            for x in m.values() {
                expressions(x)?;
            }
            Ok(())
        }
        Value::Array(a) => a.iter().try_for_each(expressions),
        _ => Ok(()),
    }
}
