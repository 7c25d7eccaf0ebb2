//! Unit tests of the rewriter: each SQL form, escape attempts, refusals and
//! hostile input, and a property test that runs rewritten queries.
//!
//! Every statement runs on DuckDB, the engine the agents run (the same
//! bundled build): what these tests prove is how the engine reads the
//! printed text. The oracle is a database that holds only what the user may
//! see ([`ann_db`]). Connections are opened once per test thread.

mod binder;
mod escapes;
mod evaluation;
mod property;
mod quoting;
mod shapes;

use std::collections::HashMap;

use duckdb::Connection;

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
CREATE SCHEMA sales;
CREATE TABLE sales.products (id INTEGER, title TEXT);
CREATE TABLE sales.items (order_id INTEGER, product_id INTEGER);
";

/// The full data, as the engine holds it.
pub(crate) const FULL_DATA: &str = "
INSERT INTO users VALUES
  (1, 'alice', 'alice@secret.eu', 'EU'), (2, 'bob', 'bob@secret.us', 'US'),
  (3, 'carol', 'carol@secret.eu', 'EU'), (4, 'dave', 'dave@secret.us', 'US');
INSERT INTO orders VALUES
  (10, 1, 100, 'EU'), (11, 2, 200, 'US'), (12, 3, 300, 'EU'), (13, 4, 400, 'US');
INSERT INTO secrets VALUES (1, 'launch codes');
INSERT INTO sales.products VALUES (1, 'widget'), (2, 'gadget');
INSERT INTO sales.items VALUES (10, 1), (12, 2);
";

thread_local! {
    static FULL: Connection = {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA).unwrap();
        c.execute_batch(FULL_DATA).unwrap();
        c
    };
    static ANN: Connection = {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA).unwrap();
        c.execute_batch(
            "INSERT INTO users VALUES (1, 'alice', '***', 'EU'), (3, 'carol', '***', 'EU');
             INSERT INTO orders VALUES (10, 1, 100, 'EU'), (12, 3, 300, 'EU'), (13, 4, 400, 'US');
             INSERT INTO sales.products VALUES (1, 'widget'), (2, 'gadget');
             INSERT INTO sales.items VALUES (10, 1), (12, 2);",
        )
        .unwrap();
        c
    };
}

/// Runs `f` on the full data: the engine's view (this thread's connection).
pub(crate) fn on_full_db<T>(f: impl FnOnce(&Connection) -> T) -> T {
    FULL.with(f)
}

/// Runs `f` on what ann may see, materialised: the oracle (this thread's
/// connection).
pub(crate) fn on_ann_db<T>(f: impl FnOnce(&Connection) -> T) -> T {
    ANN.with(f)
}

/// Runs SQL and returns the rows as strings, sorted.
pub(crate) fn run(c: &Connection, sql: &str) -> duckdb::Result<Vec<Vec<String>>> {
    let mut st = c.prepare(sql)?;
    let mut out = Vec::new();
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let n = r.as_ref().column_count();
        let mut row = Vec::with_capacity(n);
        for i in 0..n {
            let v: duckdb::types::Value = r.get(i)?;
            row.push(text_of(v));
        }
        out.push(row);
    }
    out.sort();
    Ok(out)
}

/// One DuckDB value as the tests compare it.
pub(crate) fn text_of(v: duckdb::types::Value) -> String {
    use duckdb::types::Value as V;
    match v {
        V::Null => "NULL".to_string(),
        V::Text(t) => t,
        V::Boolean(b) => b.to_string(),
        V::TinyInt(i) => i.to_string(),
        V::SmallInt(i) => i.to_string(),
        V::Int(i) => i.to_string(),
        V::BigInt(i) => i.to_string(),
        V::HugeInt(i) => i.to_string(),
        V::UTinyInt(i) => i.to_string(),
        V::USmallInt(i) => i.to_string(),
        V::UInt(i) => i.to_string(),
        V::UBigInt(i) => i.to_string(),
        V::Double(f) => f.to_string(),
        V::Float(f) => f.to_string(),
        V::List(items) => format!(
            "[{}]",
            items
                .into_iter()
                .map(text_of)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => format!("{other:?}"),
    }
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
    let rows = on_full_db(|c| run(c, &r.sql)).unwrap_or_else(|e| panic!("{}: {e}", r.sql));
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
