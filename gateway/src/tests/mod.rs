//! Unit tests of the rewriter: each SQL form, escape attempts, refusals and
//! hostile input, and a property test that runs rewritten queries.
//!
//! Most SQL here runs on SQLite (rusqlite, a dev-dependency), which reads
//! these queries, filters and masks as DuckDB does and opens in no time; the
//! quoting tests ([`quoting`]) run on DuckDB itself (the `duckdb`
//! dev-dependency the end-to-end tests build their database file with),
//! because what they prove is how the engine reads the printed text.

mod escapes;
mod property;
mod quoting;
mod shapes;

use std::collections::HashMap;

use rusqlite::Connection;

use crate::policy::{Grantee, Policy, Principal, TableKey};
use crate::rewrite::{rewrite, RewriteError, Rewritten};

pub(crate) fn catalog(p: &Policy) -> HashMap<TableKey, Vec<String>> {
    let mut c = HashMap::new();
    for (t, cols) in [
        ("users", &["id", "name", "email", "region"][..]),
        ("orders", &["id", "user_id", "amount", "region"][..]),
        ("secrets", &["id", "payload"][..]),
        ("sales.products", &["id", "title"][..]),
        ("sales.items", &["order_id", "product_id"][..]),
    ] {
        c.insert(
            p.key(t).unwrap(),
            cols.iter().map(|s| s.to_string()).collect(),
        );
    }
    c
}

/// ann (group `analysts`): users (EU rows, email masked), orders (EU rows
/// OR amount > 350: her filter and her group's), every table of `sales`.
/// Never `secrets`.
pub(crate) fn policy() -> Policy {
    let mut p = Policy::new("memory");
    let ann = Grantee::user("ann");
    let analysts = Grantee::group("analysts");
    p.grant_table(ann.clone(), "users").unwrap();
    p.grant_table(analysts.clone(), "main.orders").unwrap();
    p.grant_schema(analysts.clone(), "sales").unwrap();
    p.add_row_filter(ann.clone(), "users", "region = 'EU'")
        .unwrap();
    p.add_column_mask(analysts.clone(), "users", "email", "'***'")
        .unwrap();
    p.add_row_filter(ann, "orders", "region = 'EU'").unwrap();
    p.add_row_filter(analysts, "orders", "amount > 350")
        .unwrap();
    p
}

pub(crate) fn ann() -> Principal {
    Principal::new("ann", &["analysts"])
}

pub(crate) fn rw(sql: &str) -> Result<Rewritten, RewriteError> {
    let p = policy();
    rewrite(sql, &p, &ann(), &catalog(&p))
}

pub(crate) const SCHEMA: &str = "
CREATE TABLE users (id INTEGER, name TEXT, email TEXT, region TEXT);
CREATE TABLE orders (id INTEGER, user_id INTEGER, amount INTEGER, region TEXT);
CREATE TABLE secrets (id INTEGER, payload TEXT);
";

/// The full data: the engine's view.
pub(crate) fn full_db() -> Connection {
    let c = Connection::open_in_memory().unwrap();
    c.execute_batch(SCHEMA).unwrap();
    c.execute_batch(FULL_DATA).unwrap();
    c
}

/// The full data, in SQL both engines accept.
pub(crate) const FULL_DATA: &str = "
INSERT INTO users VALUES
  (1, 'alice', 'alice@secret.eu', 'EU'), (2, 'bob', 'bob@secret.us', 'US'),
  (3, 'carol', 'carol@secret.eu', 'EU'), (4, 'dave', 'dave@secret.us', 'US');
INSERT INTO orders VALUES
  (10, 1, 100, 'EU'), (11, 2, 200, 'US'), (12, 3, 300, 'EU'), (13, 4, 400, 'US');
INSERT INTO secrets VALUES (1, 'launch codes');
";

/// What ann may see, materialised: the oracle for the property test.
pub(crate) fn ann_db() -> Connection {
    let c = Connection::open_in_memory().unwrap();
    c.execute_batch(SCHEMA).unwrap();
    c.execute_batch(
        "INSERT INTO users VALUES (1, 'alice', '***', 'EU'), (3, 'carol', '***', 'EU');
         INSERT INTO orders VALUES (10, 1, 100, 'EU'), (12, 3, 300, 'EU'), (13, 4, 400, 'US');",
    )
    .unwrap();
    c
}

/// Runs SQL and returns the rows as strings, sorted.
pub(crate) fn run(c: &Connection, sql: &str) -> rusqlite::Result<Vec<Vec<String>>> {
    let mut st = c.prepare(sql)?;
    let n = st.column_count();
    let mut rows = st
        .query_map([], |r| {
            (0..n)
                .map(|i| {
                    r.get_ref(i).map(|v| match v {
                        rusqlite::types::ValueRef::Null => "NULL".to_string(),
                        rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                        rusqlite::types::ValueRef::Real(f) => f.to_string(),
                        rusqlite::types::ValueRef::Text(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                        rusqlite::types::ValueRef::Blob(_) => "<blob>".to_string(),
                    })
                })
                .collect::<rusqlite::Result<Vec<String>>>()
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.sort();
    Ok(rows)
}

/// Values ann must never see: unmasked emails, hidden users' names, the
/// hidden order's amount, anything from `secrets`.
pub(crate) fn leaks(rows: &[Vec<String>]) -> Option<String> {
    rows.iter().flatten().find_map(|v| {
        let l = v.to_lowercase();
        (l.contains("@secret")
            || l.contains("bob")
            || l.contains("dave")
            || l.contains("launch")
            || l == "200")
            .then(|| v.clone())
    })
}

/// Rewrites, runs on the full data, and checks nothing leaks.
pub(crate) fn run_as_ann(sql: &str) -> Vec<Vec<String>> {
    let r = rw(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let rows = run(&full_db(), &r.sql).unwrap_or_else(|e| panic!("{}: {e}", r.sql));
    if let Some(v) = leaks(&rows) {
        panic!("leak {v:?} from {sql} rewritten as {}", r.sql);
    }
    rows
}

/// Text of up to `max_len` characters from those that matter to quoting
/// and comments: hostile literals and names for the property tests.
pub(crate) fn hostile_text(max_len: usize) -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    proptest::collection::vec(
        prop_oneof![
            Just('\''),
            Just('\\'),
            Just('"'),
            Just('$'),
            Just('-'),
            Just('/'),
            Just('*'),
            Just(';'),
            Just(' '),
            Just('\n'),
            Just('a'),
            Just('7'),
            Just('é'),
        ],
        0..max_len,
    )
    .prop_map(|v| v.into_iter().collect())
}
