//! Each SQL form the rewriter handles, escape attempts, refusals, hostile input.

use super::*;

fn s(v: &[&[&str]]) -> Vec<Vec<String>> {
    let mut r: Vec<Vec<String>> = v
        .iter()
        .map(|row| row.iter().map(|x| x.to_string()).collect())
        .collect();
    r.sort();
    r
}

fn denied(sql: &str, table: &str) {
    let p = policy();
    match rw(sql) {
        Err(RewriteError::NotGranted(k)) => assert_eq!(k, p.key(table).unwrap(), "{sql}"),
        other => panic!("{sql}: expected a denial on {table}, got {other:?}"),
    }
}

#[test]
fn plain_select_gets_filter_and_masks() {
    let r = rw("SELECT * FROM users").unwrap();
    assert_eq!(
        r.sql,
        "SELECT * FROM (SELECT \"id\", \"name\", '***' AS \"email\", \"region\" FROM \"memory\".\"main\".\"users\" WHERE (region = 'EU')) AS users"
    );
    assert_eq!(r.tables, vec![policy().key("users").unwrap()]);
    assert_eq!(
        run_as_ann("SELECT * FROM users"),
        s(&[&["1", "alice", "***", "EU"], &["3", "carol", "***", "EU"]])
    );
}

#[test]
fn filters_of_user_and_group_combine_with_or() {
    let r = rw("SELECT id FROM orders").unwrap();
    assert!(
        r.sql.contains(
            "SELECT * FROM \"memory\".\"main\".\"orders\" WHERE (region = 'EU') OR (amount > 350)"
        ),
        "{}",
        r.sql
    );
    assert_eq!(
        run_as_ann("SELECT id FROM orders"),
        s(&[&["10"], &["12"], &["13"]])
    );
}

#[test]
fn or_1_eq_1_stays_inside_the_filter() {
    let rows = run_as_ann("SELECT name FROM users WHERE region = 'US' OR 1=1");
    assert_eq!(rows, s(&[&["alice"], &["carol"]]));
    run_as_ann("SELECT name FROM users WHERE 1=1 OR region = 'US' --");
}

#[test]
fn aliasing_a_masked_column_keeps_the_mask() {
    assert_eq!(
        run_as_ann("SELECT email AS e, u.email AS f FROM users u WHERE id = 1"),
        s(&[&["***", "***"]])
    );
    // Renaming columns keeps the mask: in a CTE's column list and in a table
    // alias's column list (the alias list renames the masked projection).
    assert_eq!(
        run_as_ann("WITH t(a, b, x, d) AS (SELECT * FROM users) SELECT t.x FROM t WHERE a = 1"),
        s(&[&["***"]])
    );
    assert_eq!(
        run_as_ann("SELECT t.x FROM users AS t(a, b, x, d) WHERE a = 1"),
        s(&[&["***"]])
    );
}

#[test]
fn masked_columns_in_subqueries_ctes_and_unions() {
    for sql in [
        "SELECT (SELECT max(email) FROM users) AS m",
        "SELECT * FROM (SELECT email FROM users) AS t",
        "SELECT * FROM (SELECT * FROM (SELECT email, id FROM users) a) b",
        "WITH x AS (SELECT email FROM users) SELECT * FROM x",
        "WITH x AS (SELECT * FROM users), y AS (SELECT email FROM x) SELECT * FROM y",
        "SELECT region FROM orders UNION SELECT email FROM users",
        "SELECT email FROM users UNION ALL SELECT email FROM users EXCEPT SELECT 'z'",
        "SELECT name FROM users WHERE email IN (SELECT email FROM users)",
        "SELECT count(*) AS n FROM users GROUP BY region HAVING max(email) LIKE '%secret%'",
        "SELECT name FROM users ORDER BY (SELECT min(email) FROM users)",
    ] {
        run_as_ann(sql);
    }
    // Filtering on a masked value sees the mask, not the secret.
    assert_eq!(
        run_as_ann("SELECT count(*) FROM users WHERE email LIKE 'alice%'"),
        s(&[&["0"]])
    );
}

#[test]
fn ungranted_tables_anywhere_are_denied() {
    for sql in [
        "SELECT * FROM secrets",
        "WITH x AS (SELECT * FROM secrets) SELECT * FROM x",
        "SELECT name FROM users UNION SELECT payload FROM secrets",
        "SELECT name FROM users u JOIN secrets s ON s.id = u.id",
        "SELECT name FROM users WHERE id IN (SELECT id FROM secrets)",
        "SELECT name FROM users WHERE EXISTS (SELECT 1 FROM secrets)",
        "SELECT (SELECT payload FROM secrets) FROM users",
        "SELECT name FROM users u JOIN orders o ON o.id IN (SELECT id FROM secrets)",
        "SELECT count(*) FROM users GROUP BY region HAVING count(*) > (SELECT count(*) FROM secrets)",
        "SELECT * FROM users, LATERAL (SELECT * FROM secrets WHERE secrets.id = users.id) s",
        "SELECT * FROM (SELECT * FROM (SELECT * FROM secrets) a) b",
        "SELECT * FROM \"SECRETS\"",
        "SELECT * FROM Main.Secrets",
        "SELECT * FROM memory.main.secrets",
        "SELECT name FROM users ORDER BY (SELECT 1 FROM secrets)",
        "VALUES ((SELECT payload FROM secrets))",
        "SELECT * FROM (users JOIN secrets USING (id))",
        "SELECT * FROM users NATURAL JOIN secrets",
        "SELECT * FROM users LIMIT (SELECT count(*) FROM secrets)",
    ] {
        denied(sql, "secrets");
    }
    // A table of another catalog is another table.
    denied("SELECT * FROM other.main.users", "other.main.users");
    denied("SELECT * FROM public.users", "public.users");
}

#[test]
fn cte_names_shadow_tables_only_in_scope() {
    // A CTE named like an ungranted table is the CTE, not the table.
    let r = rw("WITH secrets AS (SELECT 1 AS a) SELECT * FROM secrets").unwrap();
    assert!(r.tables.is_empty(), "{r:?}");
    // Out of its scope the name is the table again.
    denied(
        "SELECT * FROM (WITH secrets AS (SELECT 1 AS a) SELECT * FROM secrets) t, secrets",
        "secrets",
    );
    denied(
        "WITH a AS (SELECT * FROM b), b AS (SELECT 1 AS x) SELECT * FROM a",
        "b",
    );
    // A qualified name never means a CTE.
    denied(
        "WITH secrets AS (SELECT 1 AS a) SELECT * FROM main.secrets",
        "secrets",
    );
    // A non-recursive CTE's reference to its own name is the real table.
    let rows = run_as_ann("WITH users AS (SELECT * FROM users) SELECT email, name FROM users");
    assert_eq!(rows, s(&[&["***", "alice"], &["***", "carol"]]));
    // Recursive CTEs see themselves.
    let rows = run_as_ann(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) SELECT i FROM n",
    );
    assert_eq!(rows, s(&[&["1"], &["2"], &["3"]]));
}

#[test]
fn quoted_qualified_and_case_changed_names() {
    for sql in [
        "SELECT * FROM USERS",
        "SELECT * FROM \"users\"",
        "SELECT * FROM \"Users\"",
        "SELECT * FROM main.users",
        "SELECT * FROM \"MAIN\".\"USERS\"",
        "SELECT * FROM Memory.Main.Users",
    ] {
        let r = rw(sql).unwrap();
        assert_eq!(r.tables, vec![policy().key("users").unwrap()], "{sql}");
        assert_eq!(run_as_ann(sql).len(), 2, "{sql}");
    }
    // Columns qualified with the name as written still resolve.
    run_as_ann("SELECT Users.email FROM Users");
    run_as_ann("SELECT users.email FROM main.users");
}

#[test]
fn comments_and_literals_that_look_like_tables() {
    let r = rw("SELECT 'secrets' AS s, \"name\" FROM users -- FROM secrets\n/* JOIN secrets */")
        .unwrap();
    assert_eq!(r.tables, vec![policy().key("users").unwrap()]);
    assert!(!r.sql.contains("/*") && !r.sql.contains("--"));
    run_as_ann("SELECT 'secrets' AS s FROM users /* ; SELECT * FROM secrets */");
    run_as_ann("SELECT 'x; SELECT * FROM secrets' FROM users");
}

#[test]
fn joins_of_every_kind() {
    for sql in [
        "SELECT u.name, o.amount FROM users u JOIN orders o ON o.user_id = u.id",
        "SELECT u.name, o.amount FROM users u LEFT JOIN orders o ON o.user_id = u.id",
        "SELECT u.name, o.amount FROM orders o LEFT OUTER JOIN users u ON o.user_id = u.id",
        "SELECT * FROM users CROSS JOIN orders",
        "SELECT * FROM users, orders WHERE users.id = orders.user_id",
        "SELECT * FROM users JOIN orders USING (id)",
        "SELECT * FROM users NATURAL JOIN orders",
        "SELECT * FROM (users u JOIN orders o ON u.id = o.user_id)",
        "SELECT u.name FROM users u JOIN orders o ON o.user_id = u.id AND o.id IN (SELECT id FROM orders)",
    ] {
        let r = rw(sql).unwrap();
        assert_eq!(r.tables.len(), 2, "{sql}");
        run_as_ann(sql);
    }
    // Lateral joins: the lateral subquery is rewritten too.
    assert_eq!(
        run_as_ann("SELECT u.name, l.amount FROM users u, LATERAL (SELECT amount FROM orders o WHERE o.user_id = u.id) l"),
        s(&[&["alice", "100"], &["carol", "300"]])
    );
}

#[test]
fn exists_in_and_scalar_subqueries() {
    assert_eq!(
        run_as_ann(
            "SELECT name FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id)"
        ),
        s(&[&["alice"], &["carol"]])
    );
    assert_eq!(
        run_as_ann(
            "SELECT name, (SELECT count(*) FROM orders o WHERE o.user_id = u.id) AS n FROM users u"
        ),
        s(&[&["alice", "1"], &["carol", "1"]])
    );
    assert_eq!(
        run_as_ann("SELECT (SELECT count(*) FROM users) AS n"),
        s(&[&["2"]])
    );
    run_as_ann("SELECT name FROM users WHERE NOT EXISTS (SELECT 1 FROM users x WHERE x.email = 'bob@secret.us')");
}

#[test]
fn set_operations_values_and_derived_tables() {
    run_as_ann("SELECT id FROM users UNION SELECT id FROM orders INTERSECT SELECT id FROM orders");
    run_as_ann("VALUES (1, 'a'), (2, 'b')");
    run_as_ann("SELECT * FROM (VALUES (1)) AS v");
    run_as_ann("SELECT * FROM (SELECT id, email FROM users ORDER BY id LIMIT 1 OFFSET 1) AS t");
    run_as_ann("SELECT DISTINCT region FROM users ORDER BY region");
    run_as_ann("SELECT CASE WHEN email = '***' THEN name ELSE email END FROM users");
    run_as_ann(
        "SELECT name FROM users WHERE id BETWEEN 1 AND 3 AND name LIKE 'a%' AND email IS NOT NULL",
    );
    run_as_ann("SELECT CAST(id AS TEXT), coalesce(email, 'x'), count(*) OVER (PARTITION BY region ORDER BY id) FROM users");
    let r = rw("SELECT * FROM sales.products p JOIN sales.items i ON i.product_id = p.id").unwrap();
    assert_eq!(r.tables.len(), 2);
}

#[test]
fn refusals_name_their_reason() {
    use RewriteError::*;
    type Check = fn(&RewriteError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("SELECT 1; SELECT 2", |e| matches!(e, MultipleStatements(2))),
        ("SELECT * FROM users; DROP TABLE users", |e| {
            matches!(e, MultipleStatements(2))
        }),
        ("", |e| matches!(e, Empty)),
        ("   -- nothing", |e| matches!(e, Empty)),
        ("SELEC 1", |e| matches!(e, Parse(_))),
        ("INSERT INTO users VALUES (1)", |e| {
            matches!(e, NotAQuery(_))
        }),
        ("DELETE FROM users", |e| matches!(e, NotAQuery(_))),
        ("UPDATE users SET email = 'x'", |e| {
            matches!(e, NotAQuery(_))
        }),
        ("CREATE TABLE t AS SELECT * FROM users", |e| {
            matches!(e, NotAQuery(_))
        }),
        ("DROP TABLE users", |e| matches!(e, NotAQuery(_))),
        ("COPY users TO 'out.csv'", |e| {
            matches!(e, NotAQuery(_) | Parse(_))
        }),
        ("PRAGMA table_info('users')", |e| {
            matches!(e, NotAQuery(_) | Parse(_))
        }),
        ("SET threads = 1", |e| matches!(e, NotAQuery(_))),
        ("ATTACH 'other.db' AS other", |e| {
            matches!(e, NotAQuery(_) | Parse(_))
        }),
        ("DETACH other", |e| matches!(e, NotAQuery(_) | Parse(_))),
        ("INSTALL httpfs", |e| matches!(e, NotAQuery(_) | Parse(_))),
        ("LOAD httpfs", |e| matches!(e, NotAQuery(_) | Parse(_))),
        ("EXPLAIN SELECT * FROM users", |e| matches!(e, NotAQuery(_))),
        ("DESCRIBE users", |e| matches!(e, NotAQuery(_))),
        ("SELECT * INTO t2 FROM users", |e| matches!(e, NotAQuery(_))),
        ("SELECT * FROM read_parquet('x.parquet')", |e| {
            matches!(e, TableFunction(_))
        }),
        ("SELECT * FROM read_csv('/etc/passwd')", |e| {
            matches!(e, TableFunction(_))
        }),
        ("SELECT * FROM glob('*')", |e| matches!(e, TableFunction(_))),
        ("SELECT * FROM query('SELECT * FROM secrets')", |e| {
            matches!(e, TableFunction(_))
        }),
        ("SELECT * FROM repeat_row(1, num_rows := 3)", |e| {
            matches!(e, TableFunction(_))
        }),
        ("SELECT * FROM duckdb_settings()", |e| {
            matches!(e, TableFunction(_))
        }),
        ("SELECT current_setting('threads')", |e| {
            matches!(e, Function { .. })
        }),
        ("SELECT json_serialize_plan('SELECT 1')", |e| {
            matches!(e, Function { .. })
        }),
        ("SELECT stats(id) FROM users", |e| {
            matches!(e, Function { .. })
        }),
        ("SELECT main.lower(name) FROM users", |e| {
            matches!(e, Function { .. })
        }),
        ("SELECT * FROM 'x.parquet'", |e| {
            matches!(e, BadName(_) | TableFunction(_) | Parse(_))
        }),
        ("SELECT read_text('/etc/passwd')", |e| {
            matches!(e, Function { .. })
        }),
        ("SELECT getenv('HOME')", |e| matches!(e, Function { .. })),
        (
            "SELECT * FROM users WHERE id IN (SELECT * FROM read_csv('x'))",
            |e| matches!(e, TableFunction(_)),
        ),
        ("SELECT * FROM users TABLESAMPLE 10%", |e| {
            matches!(e, Unsupported(_) | Parse(_))
        }),
    ];
    for (sql, ok) in cases {
        let e = rw(sql).expect_err(sql);
        assert!(ok(&e), "{sql}: unexpected {e:?}");
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn tables_must_be_in_the_catalog() {
    let p = policy();
    let who = ann();
    let empty: HashMap<TableKey, Vec<String>> = HashMap::new();
    for sql in [
        "SELECT * FROM users",
        "SELECT * FROM orders",
        "SELECT * FROM sales.products",
    ] {
        assert!(
            matches!(
                rewrite(sql, &p, &who, &empty),
                Err(RewriteError::UnknownTable(_))
            ),
            "{sql}"
        );
    }
    // A schema grant covers names that are no table: still refused, so a
    // file-like name never reaches the engine's replacement scans.
    assert!(matches!(
        rw("SELECT * FROM sales.\"data.csv\""),
        Err(RewriteError::UnknownTable(_))
    ));
    let mut stale = catalog(&p);
    stale.insert(
        p.key("users").unwrap(),
        vec!["id".into(), "name".into(), "region".into()],
    );
    assert!(matches!(
        rewrite("SELECT * FROM users", &p, &who, &stale),
        Err(RewriteError::MaskOnUnknownColumn { .. })
    ));
}

#[test]
fn hostile_input_is_refused_without_panic() {
    let deep_parens = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    assert!(matches!(
        rw(&deep_parens),
        Err(RewriteError::Parse(_) | RewriteError::TooDeep(_))
    ));
    let deep_sub = format!(
        "{}SELECT 1{}",
        "SELECT * FROM (".repeat(300),
        ") t".repeat(300)
    );
    assert!(rw(&deep_sub).is_err());
    let deep_in = format!(
        "SELECT 1 WHERE 1 IN {}(SELECT 1){}",
        "(SELECT 1 WHERE 1 IN ".repeat(200),
        ")".repeat(200)
    );
    assert!(rw(&deep_in).is_err());
    let long_or = format!("SELECT 1 WHERE {}", vec!["1=1"; 20_000].join(" OR "));
    assert!(matches!(rw(&long_or), Err(RewriteError::TooDeep(_))));
    // A realistic long condition list is fine.
    let many = format!(
        "SELECT name FROM users WHERE {}",
        (0..100)
            .map(|i| format!("id <> {i}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    );
    assert!(rw(&many).is_ok());
    let huge = format!("SELECT '{}'", "a".repeat(300_000));
    assert!(matches!(rw(&huge), Err(RewriteError::TooLarge { .. })));
    for junk in [
        "\0\0\0",
        "SELECT \"",
        "SELECT '",
        "/*",
        "SELECT * FROM \"\"",
        "SELECT * FROM a.b.c.d",
        ";;;;",
        "SELECT ))))",
        "WITH RECURSIVE",
        "SELECT * FROM users u(",
        "\u{feff}SELECT 1",
        "SELECT '\u{1F600}' FROM users",
    ] {
        let _ = rw(junk);
    }
    // A long but flat query within limits still works.
    let wide = format!(
        "SELECT {} FROM users",
        (0..500)
            .map(|i| format!("id + {i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(rw(&wide).is_ok());
}

/// A filter naming a column the table lacks would bind to a column of an
/// outer query, which the user controls: refused.
#[test]
fn policy_columns_must_belong_to_the_table() {
    let mut p = policy();
    p.add_row_filter(Grantee::user("ann"), "sales.items", "region = 'EU'")
        .unwrap();
    let err = rewrite(
        "SELECT (SELECT count(*) FROM sales.items) FROM (SELECT 'EU' AS region) AS x",
        &p,
        &ann(),
        &catalog(&p),
    )
    .unwrap_err();
    assert!(
        matches!(err, RewriteError::PolicyUsesUnknownColumn { ref column, .. } if column == "region"),
        "{err:?}"
    );
}

/// The worked example in docs/gateway.md.
#[test]
fn worked_example_in_docs() {
    let r = rw(
        "SELECT u.name, u.email, o.amount FROM Users u JOIN orders o ON o.user_id = u.id \
         WHERE o.amount > 10 OR 1=1",
    )
    .unwrap();
    assert_eq!(
        r.sql,
        "SELECT u.name, u.email, o.amount \
         FROM (SELECT \"id\", \"name\", '***' AS \"email\", \"region\" FROM \"memory\".\"main\".\"users\" WHERE (region = 'EU')) u \
         JOIN (SELECT * FROM \"memory\".\"main\".\"orders\" WHERE (region = 'EU') OR (amount > 350)) o \
         ON o.user_id = u.id WHERE o.amount > 10 OR 1 = 1"
    );
    let keys: Vec<String> = r.tables.iter().map(|k| k.to_string()).collect();
    assert_eq!(keys, ["memory.main.orders", "memory.main.users"]);
    assert_eq!(
        run_as_ann(
            "SELECT u.name, u.email, o.amount FROM Users u JOIN orders o ON o.user_id = u.id \
             WHERE o.amount > 10 OR 1=1"
        ),
        s(&[&["alice", "***", "100"], &["carol", "***", "300"]])
    );
}
