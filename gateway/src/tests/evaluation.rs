//! Evaluation order, proven on the engine: no user predicate, join
//! condition or projection is evaluated on a row the policy's filter drops.
//!
//! DuckDB's optimizer pushes filters down and reorders them; what keeps a
//! user's expression that can raise (a failing cast, an overflow, a bad
//! pattern) off the rows the filter removes is the engine's own rule (this
//! DuckDB build marks such expressions as fallible and never moves them
//! below the projection of the derived table, nor ahead of the filters
//! beside them). These tests hold the engine to that: each statement raises
//! an error on a hidden row and on no visible row, runs rewritten on the
//! full data, and must answer exactly as on the visible data. The filters
//! here are deliberately not simple column comparisons (those become scan
//! filters, evaluated first anyway), so that they meet the user's
//! expressions in the same filter operator.

use super::*;

/// ann's policy with filters the scan cannot take as its own.
fn opaque_policy() -> Policy {
    let mut p = Policy::new("memory");
    let ann = Grantee::user("ann");
    p.grant_table(ann.clone(), "users").unwrap();
    p.grant_table(ann.clone(), "orders").unwrap();
    p.add_row_filter(
        ann.clone(),
        "users",
        "CASE WHEN lower(region) = 'eu' THEN true ELSE false END",
    )
    .unwrap();
    p.add_column_mask(ann.clone(), "users", "email", "'***'")
        .unwrap();
    p.add_row_filter(ann, "orders", "length(region) = 2 AND region LIKE 'E%'")
        .unwrap();
    p
}

/// Statements whose every visible row evaluates fine and whose hidden
/// rows (bob and dave, region US; orders 11 and 13) make them raise.
const RAISING: &[&str] = &[
    "SELECT name FROM users WHERE CAST(CASE WHEN region = 'US' THEN 'x' ELSE '1' END AS INTEGER) = 1",
    "SELECT name FROM users WHERE id + CASE WHEN region = 'US' THEN 2147483647 ELSE 0 END > 0",
    "SELECT name FROM users WHERE regexp_matches(name, CASE WHEN region = 'US' THEN '(' ELSE 'a' END)",
    "SELECT name FROM users WHERE make_date(2020, CASE WHEN region = 'US' THEN 13 ELSE 1 END, 1) IS NOT NULL",
    "SELECT name FROM users WHERE chr(CASE WHEN region = 'US' THEN 99999999 ELSE 65 END) <> ''",
    "SELECT * FROM (SELECT name, CAST(CASE WHEN region = 'US' THEN 'x' ELSE '1' END AS INTEGER) AS c FROM users) t WHERE c = 1",
    "SELECT CAST(CASE WHEN region = 'US' THEN 'x' ELSE '1' END AS INTEGER) AS c FROM users WHERE c = 1",
    "SELECT k, count(*) FROM (SELECT CAST(CASE WHEN region = 'US' THEN 'x' ELSE '1' END AS INTEGER) AS k FROM users) GROUP BY k HAVING k = 1",
    "SELECT name FROM users QUALIFY CAST(CASE WHEN region = 'US' THEN 'x' ELSE '1' END AS INTEGER) = row_number() OVER (PARTITION BY region ORDER BY id)",
    "SELECT u.name FROM users u JOIN orders o ON o.user_id = u.id AND CAST(CASE WHEN u.region = 'US' THEN 'x' ELSE '1' END AS INTEGER) = 1",
    "SELECT o.id FROM orders o JOIN users u ON u.id = o.user_id WHERE CAST(CASE WHEN o.amount = 400 THEN 'x' ELSE '1' END AS INTEGER) = 1",
    "SELECT id FROM orders WHERE CAST(CASE WHEN amount IN (200, 400) THEN 'x' ELSE '1' END AS INTEGER) = 1",
    "SELECT id FROM orders WHERE amount * CASE WHEN region = 'US' THEN 100000000 ELSE 1 END > 0",
    "SELECT name FROM users WHERE id IN (SELECT user_id FROM orders WHERE CAST(CASE WHEN region = 'US' THEN 'x' ELSE '1' END AS INTEGER) = 1)",
    "SELECT name FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND CAST(CASE WHEN o.region = 'US' THEN 'x' ELSE '1' END AS INTEGER) = 1)",
    "SELECT name, sum(CAST(CASE WHEN region = 'US' THEN 'x' ELSE '1' END AS INTEGER)) OVER () FROM users",
    "SELECT c FROM (SELECT CAST(CASE WHEN region = 'US' THEN 'x' ELSE '1' END AS INTEGER) AS c FROM users UNION ALL SELECT 1) WHERE c = 1",
    "SELECT l.v FROM orders o, LATERAL (SELECT CAST(CASE WHEN u.region = 'US' THEN 'x' ELSE '1' END AS INTEGER) AS v FROM users u WHERE u.id = o.user_id) l",
    "SELECT name FROM users WHERE strptime(CASE WHEN region = 'US' THEN 'bad' ELSE '2020-01-01' END, '%Y-%m-%d') IS NOT NULL",
];

/// What ann may see under [`opaque_policy`]: the oracle.
fn oracle(sql: &str) -> duckdb::Result<Vec<Vec<String>>> {
    let c = Connection::open_in_memory().unwrap();
    c.execute_batch(SCHEMA).unwrap();
    c.execute_batch(
        "INSERT INTO users VALUES (1, 'alice', '***', 'EU'), (3, 'carol', '***', 'EU');
         INSERT INTO orders VALUES (10, 1, 100, 'EU'), (12, 3, 300, 'EU');",
    )
    .unwrap();
    run(&c, sql)
}

#[test]
fn no_user_expression_raises_on_a_row_the_filter_drops() {
    let p = opaque_policy();
    let cat = catalog(&p);
    for sql in RAISING {
        let want = oracle(sql).unwrap_or_else(|e| panic!("oracle {sql}: {e}"));
        // The full data, unrewritten, does raise: the statement is a real probe.
        assert!(
            on_full_db(|c| run(c, sql)).is_err(),
            "{sql} raises on no hidden row"
        );
        let r = rewrite(sql, &p, &ann(), &cat).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let got = on_full_db(|c| run(c, &r.sql))
            .unwrap_or_else(|e| panic!("{sql} raised on a hidden row as {}: {e}", r.sql));
        assert_eq!(got, want, "{sql} rewritten as {}", r.sql);
    }
}
