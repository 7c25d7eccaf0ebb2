//! Property test: random queries from a small grammar over `users` and
//! `orders`, rewritten for ann, proven by the binder check and run on the
//! full data (DuckDB), return exactly what the same query returns on a
//! database that holds only what ann may see (her rows, her masks applied),
//! and never a hidden row or unmasked value. The grammar holds recursive
//! WITH (self-references, anchors, forward references), names in every
//! spelling (case, quotes, catalog-qualified, Unicode look-alikes), and
//! functions from the allow list.

use proptest::prelude::*;

use super::*;

/// Ways to name `users` (every one must also run unrewritten on the
/// oracle's database).
fn users_src() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("users"),
        Just("USERS"),
        Just("main.users"),
        Just("memory.main.users"),
        Just("\"MEMORY\".\"Main\".\"users\""),
        Just("\"Users\""),
        Just("\"main\".\"USERS\""),
        // A CTE named like the table, recursive or not, whose body reads
        // the table: DuckDB reads the real table there (no UNION).
        Just("(WITH RECURSIVE users AS (SELECT * FROM users) SELECT * FROM users)"),
        Just("(WITH users AS (SELECT * FROM users) SELECT * FROM users)"),
        // The anchor of a recursive union reads the real table.
        Just("(WITH RECURSIVE users AS (SELECT * FROM users UNION ALL SELECT * FROM users WHERE false) SELECT * FROM users)"),
        // A CTE whose name only looks like the table (Kelvin sign, long s)
        // hides nothing: the table is still rewritten.
        Just("(WITH u\u{17f}ers AS (SELECT 1 AS id) SELECT * FROM users)"),
        Just("(WITH \"USERS\" AS (SELECT * FROM users) SELECT * FROM users)"),
        Just("(SELECT * FROM users)"),
        Just("(SELECT id, name, email, region FROM users WHERE 1=1)"),
        Just("(SELECT * FROM users WHERE region = 'US' OR 1=1)"),
        Just("(SELECT * FROM users UNION ALL SELECT * FROM users)"),
    ]
    .prop_map(str::to_string)
}

/// A predicate over the `users` row aliased `t`.
fn cond() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        (0..5i32).prop_map(|n| format!("t.id > {n}")),
        Just("t.region = 'US'".to_string()),
        Just("t.region = 'US' OR 1=1".to_string()),
        Just("t.email LIKE '%secret%'".to_string()),
        Just("t.email = '***'".to_string()),
        Just("t.email = 'bob@secret.us'".to_string()),
        Just("t.name IN (SELECT name FROM users)".to_string()),
        Just("t.name IN (SELECT 'bob')".to_string()),
        Just("EXISTS (SELECT 1 FROM orders o WHERE o.user_id = t.id)".to_string()),
        (0..500i32)
            .prop_map(|n| format!("t.id IN (SELECT user_id FROM orders WHERE amount > {n})")),
        Just("NOT EXISTS (SELECT 1 FROM users x WHERE x.id = t.id + 1)".to_string()),
        Just("length(t.name) > 3".to_string()),
        Just("lower(t.region) = 'eu'".to_string()),
        Just("coalesce(t.email, 'x') <> 'y'".to_string()),
        Just("t.id IN (WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 4) SELECT n FROM r)".to_string()),
        Just("t.id < (WITH RECURSIVE users AS (SELECT * FROM users) SELECT max(id) FROM users)".to_string()),
        Just("(SELECT count(*) FROM users) > 1".to_string()),
        Just("1=1".to_string()),
    ];
    leaf.prop_recursive(2, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) AND ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) OR ({b})")),
            inner.prop_map(|a| format!("NOT ({a})")),
        ]
    })
}

/// One text column named `c` from the `users` row aliased `t`.
fn column() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("t.email"),
        Just("t.name"),
        Just("upper(t.email)"),
        Just("md5(t.email)"),
        Just("concat(left(t.name, 2), right(t.email, 1))"),
        Just("replace(reverse(t.name), 'a', 'b')"),
        Just("(WITH RECURSIVE users AS (SELECT * FROM users) SELECT max(email) FROM users)"),
        Just("t.name || t.email"),
        Just("(SELECT max(email) FROM users)"),
        Just("(SELECT max(name) FROM users x WHERE x.id > t.id)"),
        Just("CAST(t.id AS TEXT)"),
        Just("CAST((SELECT max(amount) FROM orders o WHERE o.user_id = t.id) AS TEXT)"),
    ]
    .prop_map(str::to_string)
}

/// A query with one column `c`.
fn one_column_query() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        (column(), users_src(), cond())
            .prop_map(|(p, s, c)| format!("SELECT {p} AS c FROM {s} AS t WHERE {c}")),
        (0..500i32).prop_map(|n| format!(
            "SELECT CAST(o.amount AS TEXT) AS c FROM orders o WHERE o.amount > {n}"
        )),
        (column(), users_src(), cond()).prop_map(|(p, s, c)| format!(
            "SELECT {p} AS c FROM {s} AS t WHERE {c} UNION SELECT name FROM users EXCEPT SELECT 'x'"
        )),
        Just("SELECT u.email AS c FROM orders o JOIN users u ON u.id = o.user_id".to_string()),
        Just("SELECT u.name AS c FROM users u LEFT JOIN orders o ON o.user_id = u.id".to_string()),
        Just(
            "SELECT CAST(o.amount AS TEXT) AS c FROM users u JOIN orders o USING (region)"
                .to_string()
        ),
    ];
    leaf.prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!(
                "SELECT c FROM ({a}) AS l UNION ALL SELECT c FROM ({b}) AS r"
            )),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!(
                "SELECT c FROM ({a}) AS l UNION SELECT c FROM ({b}) AS r"
            )),
            inner
                .clone()
                .prop_map(|a| format!("WITH w AS ({a}) SELECT c FROM w")),
            inner
                .clone()
                .prop_map(|a| format!("WITH secrets AS ({a}) SELECT c FROM secrets")),
            inner.prop_map(|a| format!("SELECT d.c FROM ({a}) AS d")),
        ]
    })
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => one_column_query(),
        1 => (users_src(), cond()).prop_map(|(s, c)| format!("SELECT * FROM {s} AS t WHERE {c}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn rewritten_queries_see_only_what_the_policy_allows(sql in query()) {
        let r = super::binder::checked(&sql).map_err(|e| TestCaseError::fail(format!("{sql}: {e}")))?;
        let got = on_full_db(|c| run(c, &r.sql))
            .map_err(|e| TestCaseError::fail(format!("{}: {e}", r.sql)))?;
        prop_assert!(leaks(&got).is_none(), "leak from {} as {}: {:?}", sql, r.sql, got);
        let want = on_ann_db(|c| run(c, &sql))
            .map_err(|e| TestCaseError::fail(format!("oracle {sql}: {e}")))?;
        prop_assert_eq!(got, want, "{} rewritten as {}", sql, r.sql);
    }
}

/// SQL-ish token soup: the rewriter answers every input, never panics, and
/// whatever it accepts names only granted tables and parses again.
fn token_soup() -> impl Strategy<Value = String> {
    let tok = prop::sample::select(vec![
        "SELECT",
        "*",
        "FROM",
        "users",
        "orders",
        "secrets",
        "WHERE",
        "(",
        ")",
        ",",
        "AS",
        "u",
        "t",
        "JOIN",
        "ON",
        "=",
        "1",
        "'x'",
        "\"users\"",
        "main",
        ".",
        "UNION",
        "ALL",
        "WITH",
        "RECURSIVE",
        "EXISTS",
        "IN",
        "LATERAL",
        "OR",
        "AND",
        "NOT",
        "email",
        "id",
        "read_csv",
        "glob",
        "ORDER",
        "BY",
        "LIMIT",
        "GROUP",
        "HAVING",
        "count",
        ";",
        "--",
        "/*",
        "*/",
        "VALUES",
        "CASE",
        "WHEN",
        "THEN",
        "END",
        "->",
        "[",
        "]",
        "::",
        "$1",
    ]);
    prop::collection::vec(tok, 0..60).prop_map(|v| v.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn hostile_token_soup_never_panics(sql in token_soup()) {
        if let Ok(r) = rw(&sql) {
            let p = policy();
            for t in &r.tables {
                prop_assert!(p.is_granted(&ann(), t), "{} touched {}", sql, t);
            }
            prop_assert!(
                sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::DuckDbDialect {}, &r.sql).is_ok(),
                "{} rewritten as {} does not parse", sql, r.sql
            );
        }
    }

    #[test]
    fn arbitrary_text_never_panics(sql in ".{0,300}") {
        let _ = rw(&sql);
    }
}
