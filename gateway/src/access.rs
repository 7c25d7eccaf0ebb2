//! The access-control interface: who is asking ([`Principal`]), which table
//! a name means ([`TableKey`]), and what one principal may see of one table
//! ([`TableAccess`]: granted or not, its row filter, its column masks). The
//! rewriter ([`crate::rewrite`]) and the binder check ([`crate::verify`])
//! read the policy only through [`AccessControl`]; the policy model
//! ([`crate::policy`]) implements it.
//!
//! Owns identifier folding ([`fold`]): DuckDB compares identifiers
//! case-insensitively over ASCII letters only, so every name the gateway
//! compares (tables, schemas, catalogs, CTEs, functions) is folded the same
//! way, never with Unicode rules (under which the Kelvin sign would equal
//! `k`, a name DuckDB tells apart). It must never import the rewriter or the
//! policy model: the arrows point into this module.

use std::fmt;

use sqlparser::ast::Expr;

/// A SQL identifier as DuckDB compares it: ASCII letters lower-cased,
/// every other character kept as it is.
pub fn fold(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// The canonical name of a table: catalog, schema and table, each folded
/// with [`fold`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableKey {
    pub catalog: String,
    pub schema: String,
    pub table: String,
}

impl TableKey {
    /// A key from three names, folded.
    pub fn new(catalog: &str, schema: &str, table: &str) -> TableKey {
        TableKey {
            catalog: fold(catalog),
            schema: fold(schema),
            table: fold(table),
        }
    }
}

impl fmt::Display for TableKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.catalog, self.schema, self.table)
    }
}

/// Who is asking: a user and the groups the user belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub groups: Vec<String>,
}

impl Principal {
    pub fn new(user: &str, groups: &[&str]) -> Self {
        Principal {
            user: user.to_lowercase(),
            groups: groups.iter().map(|g| g.to_lowercase()).collect(),
        }
    }
}

/// A column mask: the column and the expression that replaces its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    /// The column's name, folded.
    pub column: String,
    pub expr: Expr,
    /// Column names the expression uses, folded.
    pub uses: Vec<String>,
}

/// What one principal may see of one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableAccess {
    /// The principal's row filters combined with OR; `None`: every row.
    pub filter: Option<Expr>,
    /// At most one mask per column.
    pub masks: Vec<Mask>,
    /// Column names (folded) the filter and masks use: the rewriter checks
    /// that each is a column of the table.
    pub uses: Vec<String>,
}

/// The one lookup the rewriter and the binder check make of a policy.
pub trait AccessControl: Send + Sync {
    /// The catalog an unqualified or schema-qualified table name belongs to
    /// (DuckDB: the default database's name, e.g. `memory`), folded.
    fn default_catalog(&self) -> &str;

    /// What `who` may see of `table`; `None` when it is not granted.
    fn access(&self, who: &Principal, table: &TableKey) -> Option<TableAccess>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_is_ascii_only() {
        assert_eq!(fold("Users"), "users");
        assert_eq!(fold("MAIN"), "main");
        // The Kelvin sign lower-cases to `k` under Unicode rules; DuckDB
        // keeps it apart from `k`, and so does the gateway.
        assert_ne!(fold("wor\u{212A}ers"), "workers");
        assert_eq!(fold("wor\u{212A}ers"), "wor\u{212A}ers");
        assert_eq!(fold("ÄB"), "Äb");
    }
}
