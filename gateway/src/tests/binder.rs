//! The binder check ([`crate::verify`]) against the engine: every rewrite
//! the rewriter produces binds and is proven; every statement that reads a
//! table other than through its derived query, scans a system table
//! function, calls a refused function, or is more than one statement is
//! refused, whatever the rewriter would have said.

use std::sync::Arc;

use super::*;
use crate::access::AccessControl;
use crate::verify::{Shadow, ShadowTable, VerifyError};

thread_local! {
    static SHADOW: Arc<Shadow> = {
        let p = policy();
        let cat = catalog(&p);
        let mut tables: Vec<ShadowTable> = cat
            .iter()
            .map(|(k, cols)| ShadowTable {
                key: k.clone(),
                columns: cols
                    .iter()
                    .map(|c| {
                        let ty = if c == "id" || c.ends_with("_id") || c == "amount" {
                            "INTEGER"
                        } else {
                            "VARCHAR"
                        };
                        (c.clone(), ty.to_string())
                    })
                    .collect(),
            })
            .collect();
        tables.sort_by(|a, b| a.key.cmp(&b.key));
        Arc::new(Shadow::build("memory", &tables).unwrap())
    };
}

/// The derived queries of `tables` for ann.
fn derived(tables: &[TableKey]) -> Vec<(TableKey, String)> {
    let p = policy();
    let cat = catalog(&p);
    tables
        .iter()
        .map(|k| {
            let d = crate::rewrite::derived_sql(&p as &dyn AccessControl, &ann(), k, &cat)
                .unwrap()
                .unwrap();
            (k.clone(), d)
        })
        .collect()
}

/// Rewrites for ann and runs the binder check on the result.
pub(crate) fn checked(sql: &str) -> Result<Rewritten, String> {
    let r = rw(sql).map_err(|e| format!("rewrite: {e}"))?;
    SHADOW
        .with(|s| s.check(&r.sql, &derived(&r.tables)))
        .map_err(|e| format!("check: {e}"))?;
    Ok(r)
}

/// The check on a statement as given (as if the rewriter had produced it),
/// claiming it reads `tables`.
fn check_raw(sql: &str, tables: &[&str]) -> Result<(), VerifyError> {
    let p = policy();
    let keys: Vec<TableKey> = tables.iter().map(|t| p.key(t).unwrap()).collect();
    SHADOW.with(|s| s.check(sql, &derived(&keys)))
}

#[test]
fn every_rewrite_of_the_escape_tests_passes_the_check() {
    for sql in [
        "SELECT * FROM users",
        "SELECT id FROM orders",
        "SELECT u.name, o.amount FROM users u JOIN orders o ON o.user_id = u.id",
        "SELECT name FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id)",
        "SELECT name, (SELECT count(*) FROM orders o WHERE o.user_id = u.id) AS n FROM users u",
        "SELECT u.name, l.amount FROM users u, LATERAL (SELECT amount FROM orders o WHERE o.user_id = u.id) l",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) SELECT i FROM n",
        "WITH users AS (SELECT * FROM users) SELECT email, name FROM users",
        "WITH RECURSIVE users AS (SELECT * FROM users) SELECT * FROM users",
        "SELECT region, count(*) FROM users GROUP BY ALL ORDER BY ALL",
        "SELECT name, row_number() OVER (PARTITION BY region ORDER BY id) FROM users QUALIFY row_number() OVER (PARTITION BY region ORDER BY id) = 1",
        "SELECT * EXCLUDE (email) FROM users",
        "SELECT COLUMNS('^(id|name)$') FROM users",
        "SELECT unnest([1, 2, 3]) AS x, generate_series(1, 3) AS g",
        "SELECT * FROM range(3) t(i)",
        "SELECT * FROM sales.products p JOIN sales.items i ON i.product_id = p.id",
        "SELECT list_transform([1, 2], lambda x: x + 1), {'a': 1}, [1, 2][1]",
        "SELECT upper(name), length(email), strftime(DATE '2024-01-01', '%Y') FROM users",
        "SELECT id FROM users UNION SELECT id FROM orders INTERSECT SELECT id FROM orders",
        "VALUES (1, 'a'), (2, 'b')",
    ] {
        checked(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

#[test]
fn a_table_read_other_than_through_its_derived_query_is_refused() {
    let cases: &[(&str, &[&str])] = &[
        // The raw table, no rewrite at all.
        ("SELECT * FROM users", &["users"]),
        // The right derived query elsewhere, but the raw table too.
        (
            "SELECT * FROM (SELECT \"id\", \"name\", '***' AS \"email\", \"region\" FROM \"memory\".\"main\".\"users\" WHERE (region = 'EU')) AS u, users",
            &["users"],
        ),
        // The filter dropped.
        (
            "SELECT * FROM (SELECT \"id\", \"name\", '***' AS \"email\", \"region\" FROM \"memory\".\"main\".\"users\") AS u",
            &["users"],
        ),
        // The mask dropped.
        (
            "SELECT * FROM (SELECT \"id\", \"name\", \"email\", \"region\" FROM \"memory\".\"main\".\"users\" WHERE (region = 'EU')) AS u",
            &["users"],
        ),
        // Another filter.
        (
            "SELECT * FROM (SELECT \"id\", \"name\", '***' AS \"email\", \"region\" FROM \"memory\".\"main\".\"users\" WHERE (region = 'US')) AS u",
            &["users"],
        ),
        // The filter weakened inside the derived query.
        (
            "SELECT * FROM (SELECT \"id\", \"name\", '***' AS \"email\", \"region\" FROM \"memory\".\"main\".\"users\" WHERE (region = 'EU') OR true) AS u",
            &["users"],
        ),
        // A table the rewrite did not claim.
        ("SELECT * FROM secrets", &[]),
        // A recursive CTE whose anchor reads the real table.
        (
            "WITH RECURSIVE users AS (SELECT * FROM users) SELECT * FROM users",
            &["users"],
        ),
    ];
    for (sql, tables) in cases {
        match check_raw(sql, tables) {
            Err(VerifyError::Mismatch(_)) => {}
            other => panic!("{sql}: expected a mismatch, got {other:?}"),
        }
    }
}

#[test]
fn system_tables_files_settings_and_refused_functions_are_refused() {
    for sql in [
        "SELECT * FROM duckdb_tables()",
        "SELECT * FROM duckdb_settings()",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM duckdb_views",
        "SELECT current_setting('threads')",
        "SELECT json_serialize_plan('SELECT 1')",
        "SELECT * FROM glob('*')",
        "SELECT current_query()",
        "SELECT * FROM pragma_table_info('users')",
        "SELECT * FROM histogram_values(users, id)",
        "SELECT pg_get_viewdef(1)",
    ] {
        match check_raw(sql, &[]) {
            Err(VerifyError::Mismatch(_)) | Err(VerifyError::Bind(_)) => {}
            other => panic!("{sql}: expected a refusal, got {other:?}"),
        }
    }
}

/// A function the binder folds to a constant (`getvariable`) leaves no trace
/// in the plan: the rewriter's allow list is its only line, and refuses it.
#[test]
fn functions_folded_at_bind_are_the_rewriters_to_refuse() {
    assert!(check_raw("SELECT getvariable('x')", &[]).is_ok());
    assert!(matches!(
        rw("SELECT getvariable('x')"),
        Err(RewriteError::Function { .. })
    ));
}

#[test]
fn more_than_one_statement_or_a_statement_that_is_no_query_is_refused() {
    for sql in [
        "SELECT 1; SELECT 2",
        "CREATE TABLE t AS SELECT 1",
        "SET threads = 1",
        "PRAGMA version",
        "INSERT INTO secrets VALUES (2, 'x')",
        "ATTACH ':memory:' AS other",
        "COPY secrets TO '/tmp/x.csv'",
    ] {
        match check_raw(sql, &[]) {
            Err(VerifyError::Mismatch(_)) | Err(VerifyError::Bind(_)) => {}
            other => panic!("{sql}: expected a refusal, got {other:?}"),
        }
    }
}

#[test]
fn a_bind_error_is_the_engines_message() {
    match check_raw("SELECT nme FROM users", &["users"]) {
        Err(VerifyError::Bind(m)) => assert!(m.starts_with("Binder Error"), "{m}"),
        other => panic!("{other:?}"),
    }
}
