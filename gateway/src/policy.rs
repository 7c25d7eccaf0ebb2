//! The policy model: grants, row filters and column masks, held in memory,
//! and the implementation of [`AccessControl`], the one lookup the rewriter
//! and the binder check make (for a principal and a table: is it granted,
//! the combined row filter, the column masks).
//!
//! Owns what the admin API's names mean (`catalog.schema.table`,
//! `schema.table` or `table`, any case: one [`TableKey`], by
//! [`crate::rewrite::dotted_key`]). It must never grant by default: a table
//! is readable only through an explicit grant, and a filter or mask
//! expression that does not parse, holds a subquery or calls a function off
//! the allow list is refused when it is added, never at query time. The
//! store keeps the policy; this module only holds one snapshot of it.

use std::collections::HashMap;

use sqlparser::ast::Expr;
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::Parser;

use crate::access::fold;
pub use crate::access::{AccessControl, Mask, Principal, TableAccess, TableKey};
use crate::rewrite::{dotted_key, table_key};

/// Errors in building a policy.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// A table or schema name that is empty or has too many parts.
    #[error("bad name {0:?}: expected [catalog.][schema.]table")]
    BadName(String),
    /// A filter or mask expression that does not parse as one SQL expression.
    #[error("policy expression {expr:?} does not parse: {reason}")]
    BadExpression { expr: String, reason: String },
    /// A filter or mask expression the rewriter would not accept (subqueries,
    /// table functions, unknown constructs).
    #[error("policy expression {expr:?} refused: {reason}")]
    RefusedExpression { expr: String, reason: String },
}

/// Whether `who` is (or is in) `grantee`.
fn is(who: &Principal, grantee: &Grantee) -> bool {
    match grantee {
        Grantee::User(u) => *u == who.user,
        Grantee::Group(g) => who.groups.iter().any(|m| m == g),
    }
}

/// Whom a grant, filter or mask applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Grantee {
    User(String),
    Group(String),
}

impl Grantee {
    pub fn user(name: &str) -> Self {
        Grantee::User(name.to_lowercase())
    }
    pub fn group(name: &str) -> Self {
        Grantee::Group(name.to_lowercase())
    }
}

/// What a grant opens: one table, or every table of a schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum GrantTarget {
    Table(TableKey),
    Schema { catalog: String, schema: String },
}

/// The whole policy, in memory.
#[derive(Debug, Clone)]
pub struct Policy {
    default_catalog: String,
    grants: Vec<(Grantee, GrantTarget)>,
    filters: HashMap<TableKey, Vec<(Grantee, Expr, Vec<String>)>>,
    masks: HashMap<TableKey, Vec<(Grantee, Mask)>>,
}

impl Policy {
    /// An empty policy (nothing granted). `default_catalog` is the catalog
    /// an unqualified or schema-qualified name belongs to (DuckDB: the
    /// database's name, e.g. `memory`).
    pub fn new(default_catalog: &str) -> Self {
        Policy {
            default_catalog: fold(default_catalog),
            grants: Vec::new(),
            filters: HashMap::new(),
            masks: HashMap::new(),
        }
    }

    pub fn default_catalog(&self) -> &str {
        &self.default_catalog
    }

    /// Canonical key of a dotted name such as `Main.Users` (no quoting: the
    /// admin side names tables plainly).
    pub fn key(&self, name: &str) -> Result<TableKey, PolicyError> {
        dotted_key(&self.default_catalog, name)
            .ok_or_else(|| PolicyError::BadName(name.to_string()))
    }

    /// Canonical key of a parsed table name; `None` when it cannot be read.
    pub fn key_of(&self, name: &sqlparser::ast::ObjectName) -> Option<TableKey> {
        table_key(&self.default_catalog, name)
    }

    /// Grants SELECT on one table.
    pub fn grant_table(&mut self, to: Grantee, table: &str) -> Result<(), PolicyError> {
        let key = self.key(table)?;
        self.grants.push((to, GrantTarget::Table(key)));
        Ok(())
    }

    /// Grants SELECT on every table of a schema (`schema` or `catalog.schema`).
    pub fn grant_schema(&mut self, to: Grantee, schema: &str) -> Result<(), PolicyError> {
        let parts: Vec<&str> = schema.split('.').map(str::trim).collect();
        let (catalog, schema_name) = match parts.as_slice() {
            [s] if !s.is_empty() => (self.default_catalog.clone(), fold(s)),
            [c, s] if !c.is_empty() && !s.is_empty() => (fold(c), fold(s)),
            _ => return Err(PolicyError::BadName(schema.to_string())),
        };
        self.grants.push((
            to,
            GrantTarget::Schema {
                catalog,
                schema: schema_name,
            },
        ));
        Ok(())
    }

    /// Adds a row filter (a SQL predicate over the table's own columns).
    pub fn add_row_filter(
        &mut self,
        to: Grantee,
        table: &str,
        predicate: &str,
    ) -> Result<(), PolicyError> {
        let key = self.key(table)?;
        let (expr, uses) = parse_policy_expr(predicate)?;
        self.filters.entry(key).or_default().push((to, expr, uses));
        Ok(())
    }

    /// Adds a column mask (a SQL expression over the table's own columns
    /// whose value replaces the column's).
    pub fn add_column_mask(
        &mut self,
        to: Grantee,
        table: &str,
        column: &str,
        expression: &str,
    ) -> Result<(), PolicyError> {
        let key = self.key(table)?;
        let column = fold(column.trim());
        if column.is_empty() {
            return Err(PolicyError::BadName(column));
        }
        let (expr, uses) = parse_policy_expr(expression)?;
        self.masks
            .entry(key)
            .or_default()
            .push((to, Mask { column, expr, uses }));
        Ok(())
    }

    /// Whether `who` may read `table`.
    pub fn is_granted(&self, who: &Principal, table: &TableKey) -> bool {
        self.grants.iter().any(|(g, target)| {
            is(who, g)
                && match target {
                    GrantTarget::Table(k) => k == table,
                    GrantTarget::Schema { catalog, schema } => {
                        *catalog == table.catalog && *schema == table.schema
                    }
                }
        })
    }

    /// What `who` may see of `table`; `None` when it is not granted.
    ///
    /// Filters: all of the principal's filters on the table (its user's and
    /// its groups'), OR-ed. Masks: a user's own mask on a column wins over a
    /// group's; among groups, the first mask added wins. A column masked by
    /// any applicable rule is never left unmasked.
    pub fn access(&self, who: &Principal, table: &TableKey) -> Option<TableAccess> {
        if !self.is_granted(who, table) {
            return None;
        }
        let mut uses: Vec<String> = Vec::new();
        let filter = self.filters.get(table).and_then(|fs| {
            fs.iter()
                .filter(|(g, _, _)| is(who, g))
                .map(|(_, e, u)| {
                    uses.extend(u.iter().cloned());
                    Expr::Nested(Box::new(e.clone()))
                })
                .reduce(|a, b| Expr::BinaryOp {
                    left: Box::new(a),
                    op: sqlparser::ast::BinaryOperator::Or,
                    right: Box::new(b),
                })
        });
        let mut masks: Vec<Mask> = Vec::new();
        if let Some(ms) = self.masks.get(table) {
            // The user's own masks first, so they win.
            let users = ms.iter().filter(|(g, _)| matches!(g, Grantee::User(_)));
            let groups = ms.iter().filter(|(g, _)| matches!(g, Grantee::Group(_)));
            for (g, m) in users.chain(groups) {
                if is(who, g) && !masks.iter().any(|x| x.column == m.column) {
                    uses.extend(m.uses.iter().cloned());
                    masks.push(m.clone());
                }
            }
        }
        Some(TableAccess {
            filter,
            masks,
            uses,
        })
    }
}

impl AccessControl for Policy {
    fn default_catalog(&self) -> &str {
        &self.default_catalog
    }

    fn access(&self, who: &Principal, table: &TableKey) -> Option<TableAccess> {
        Policy::access(self, who, table)
    }
}

/// Parses one policy expression and checks that the rewriter accepts it
/// with no table reference in it.
fn parse_policy_expr(sql: &str) -> Result<(Expr, Vec<String>), PolicyError> {
    let dialect = DuckDbDialect {};
    // The rewriter's tokenizer, so the expression meets the same quoting
    // rules as a user's SQL (it is printed into the same statements).
    let tokens = crate::rewrite::tokenize(sql).map_err(|e| PolicyError::BadExpression {
        expr: sql.to_string(),
        reason: e.to_string(),
    })?;
    let mut parser = Parser::new(&dialect)
        .with_recursion_limit(crate::rewrite::MAX_DEPTH)
        .with_tokens_with_locations(tokens);
    let expr = parser
        .parse_expr()
        .map_err(|e| PolicyError::BadExpression {
            expr: sql.to_string(),
            reason: e.to_string(),
        })?;
    if parser.peek_token().token != sqlparser::tokenizer::Token::EOF {
        return Err(PolicyError::BadExpression {
            expr: sql.to_string(),
            reason: "trailing input after the expression".into(),
        });
    }
    let uses =
        crate::rewrite::check_policy_expr(&expr).map_err(|e| PolicyError::RefusedExpression {
            expr: sql.to_string(),
            reason: e.to_string(),
        })?;
    Ok((expr, uses))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_one_key() {
        let p = Policy::new("memory");
        let k = p.key("users").unwrap();
        assert_eq!(p.key("MAIN.Users").unwrap(), k);
        assert_eq!(p.key("memory.main.USERS").unwrap(), k);
        assert_ne!(p.key("other.main.users").unwrap(), k);
        assert!(p.key("a.b.c.d").is_err());
        assert!(p.key("a..b").is_err());
        assert_eq!(k.to_string(), "memory.main.users");
    }

    #[test]
    fn grants_filters_and_masks() {
        let mut p = Policy::new("memory");
        p.grant_table(Grantee::user("ann"), "users").unwrap();
        p.grant_schema(Grantee::group("analysts"), "sales").unwrap();
        p.add_row_filter(Grantee::user("ann"), "users", "region = 'EU'")
            .unwrap();
        p.add_row_filter(Grantee::group("ops"), "users", "id < 10")
            .unwrap();
        p.add_column_mask(Grantee::group("ops"), "users", "email", "'***'")
            .unwrap();
        p.add_column_mask(Grantee::user("ann"), "users", "Email", "'x'")
            .unwrap();
        let ann = Principal::new("Ann", &["ops"]);
        let users = p.key("users").unwrap();
        let a = p.access(&ann, &users).unwrap();
        assert_eq!(
            a.filter.unwrap().to_string(),
            "(region = 'EU') OR (id < 10)"
        );
        assert_eq!(a.masks.len(), 1);
        assert_eq!(a.masks[0].expr.to_string(), "'x'");
        assert!(p.access(&ann, &p.key("sales.orders").unwrap()).is_none());
        let bob = Principal::new("bob", &["analysts"]);
        let orders = p.access(&bob, &p.key("Sales.Orders").unwrap()).unwrap();
        assert!(orders.filter.is_none() && orders.masks.is_empty());
        assert!(p.access(&bob, &users).is_none());
    }

    #[test]
    fn bad_policy_expressions_are_refused() {
        let mut p = Policy::new("memory");
        let u = Grantee::user("a");
        assert!(p.add_row_filter(u.clone(), "t", "a = ").is_err());
        assert!(p
            .add_row_filter(u.clone(), "t", "a = 1; DROP TABLE t")
            .is_err());
        assert!(matches!(
            p.add_row_filter(u.clone(), "t", "a IN (SELECT a FROM secrets)"),
            Err(PolicyError::RefusedExpression { .. })
        ));
        assert!(p
            .add_column_mask(u.clone(), "t", "c", "(SELECT 1)")
            .is_err());
        assert!(p.add_row_filter(u, "t", "t.a = 1").is_err());
    }
}
