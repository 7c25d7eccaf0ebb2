//! Hardening of the SQL side, through the real binary: deep and huge SQL of
//! several shapes answered with an error while the agent keeps serving; the
//! configuration locked against jobs; file access by SQL only inside
//! `ALLOWED_PATHS` (and `DUCKDB_INIT_SQL`'s attachments still working); the
//! token unreadable; the peak memory of an over-cap result near the cap.

mod common;

use common::*;
use serde_json::json;

/// The agent answers a trivial statement and /health.
fn serving(agent: &Agent) {
    let mut c = agent.client();
    assert_eq!(c.execute("SELECT 42 AS x")["rows"], json!([[42]]));
    assert_eq!(agent.health()["status"], "ok");
}

fn post_sql(c: &mut Client, route: &str, sql: &str) -> Resp {
    c.post(route, &json!({ "sql": sql }))
}

/// `sql` is refused with 400 VALIDATION_ERROR on both routes.
fn refused(agent: &Agent, what: &str, sql: &str) {
    let mut c = agent.client();
    for route in ["/execute", "/queries"] {
        let r = post_sql(&mut c, route, sql);
        let v = r.expect_error(400, "VALIDATION_ERROR");
        let msg = v["error"].as_str().unwrap();
        assert!(
            msg.contains("MAX_SQL_NESTING") || msg.contains("MAX_SQL_BYTES"),
            "{what} on {route}: {msg}"
        );
    }
    serving(agent);
}

/// `sql` reaches DuckDB and fails (or runs); either way the agent answers
/// and keeps serving. Returns the status.
fn answered(agent: &Agent, what: &str, sql: &str) -> u16 {
    let mut c = agent.client();
    let r = post_sql(&mut c, "/execute", sql);
    assert!(
        r.status == 200 || r.status == 500,
        "{what}: {} {}",
        r.status,
        r.text()
    );
    if r.status == 500 {
        r.expect_error(500, "EXECUTION_ERROR");
    }
    serving(agent);
    r.status
}

fn nest(open: &str, inner: &str, close: &str, n: usize) -> String {
    format!("{}{inner}{}", open.repeat(n), close.repeat(n))
}

#[test]
fn deep_and_huge_sql_is_refused_before_duckdb_and_the_agent_keeps_serving() {
    let agent = Agent::start(&[]);
    let n = 5000;
    refused(
        &agent,
        "parentheses",
        &format!("SELECT {}", nest("(", "1", ")", n)),
    );
    refused(
        &agent,
        "type string",
        &format!(
            "SELECT from_json('{{}}', '\"{}\"')",
            nest("STRUCT(a ", "INTEGER", ")", n)
        ),
    );
    refused(
        &agent,
        "lists",
        &format!("SELECT {}", nest("[", "1", "]", n)),
    );
    refused(
        &agent,
        "structs",
        &format!("SELECT {}", nest("{'a': ", "1", "}", n)),
    );
    refused(
        &agent,
        "subqueries",
        &format!("SELECT {}", nest("(SELECT ", "1", ")", n)),
    );
    refused(
        &agent,
        "JSON literal",
        &format!("SELECT json_structure('{}')", nest("[", "1", "]", n)),
    );
    // Closing brackets hidden in literals do not hide the nesting.
    refused(
        &agent,
        "closers in literals",
        &format!("SELECT {}')))', $$)))$$, 1{}", "(".repeat(n), ")".repeat(n)),
    );
    // A string literal larger than MAX_SQL_BYTES (256 KiB).
    refused(
        &agent,
        "huge literal",
        &format!("SELECT length('{}')", "x".repeat(2 << 20)),
    );
    // An IN list larger than MAX_SQL_BYTES.
    let list: Vec<String> = (0..300_000).map(|i| i.to_string()).collect();
    refused(
        &agent,
        "long IN list",
        &format!("SELECT 1 IN ({})", list.join(",")),
    );
}

#[test]
fn deep_sql_within_the_bounds_runs_or_fails_cleanly() {
    let agent = Agent::start(&[]);
    // Under the bounds, DuckDB runs them.
    let mut c = agent.client();
    assert_eq!(
        c.execute(&format!("SELECT {} AS v", nest("(", "1", ")", 250)))["rows"],
        json!([[1]])
    );
    assert_eq!(
        c.execute(&format!(
            "SELECT typeof(from_json('{{}}', '\"{}\"')) IS NOT NULL AS t",
            nest("STRUCT(a ", "INTEGER", ")", 120)
        ))["rows"],
        json!([[true]])
    );
    let list: Vec<String> = (0..30_000).map(|i| i.to_string()).collect();
    assert_eq!(
        c.execute(&format!("SELECT 29999 IN ({}) AS hit", list.join(",")))["rows"],
        json!([[true]])
    );
    assert_eq!(
        c.execute(&format!("SELECT length('{}') AS n", "x".repeat(250_000)))["rows"],
        json!([[250_000]])
    );
    // Deep without brackets: DuckDB's max_expression_depth (locked) answers.
    for (what, sql) in [
        ("NOT chain", format!("SELECT {}true", "NOT ".repeat(20_000))),
        ("minus chain", format!("SELECT {}1", "- ".repeat(20_000))),
        ("plus chain", format!("SELECT 1{}", " + 1".repeat(50_000))),
        (
            "CASE chain",
            format!(
                "SELECT {}1{}",
                "CASE WHEN true THEN ".repeat(5_000),
                " END".repeat(5_000)
            ),
        ),
        (
            "UNION chain",
            format!("SELECT 1{}", " UNION ALL SELECT 1".repeat(2_000)),
        ),
    ] {
        answered(&agent, what, &sql);
    }
    // A job cannot lift DuckDB's own bound first.
    let mut c = agent.client();
    let r = post_sql(&mut c, "/execute", "SET max_expression_depth = 100000");
    let v = r.expect_error(500, "EXECUTION_ERROR");
    assert!(v["error"].as_str().unwrap().contains("locked"), "{v}");
    answered(
        &agent,
        "NOT chain after SET",
        &format!(
            "SET max_expression_depth = 100000; SELECT {}true",
            "NOT ".repeat(20_000)
        ),
    );
}

#[test]
fn the_configuration_is_locked_but_everyday_session_statements_work() {
    let agent = Agent::start(&[("SHARDS", "1")]);
    let mut c = agent.client();
    for sql in [
        "SET threads = 1",
        "SET memory_limit = '100GB'",
        "SET enable_external_access = true",
        "SET allowed_directories = ['/']",
        "RESET max_expression_depth",
        "PRAGMA threads = 1",
    ] {
        let r = post_sql(&mut c, "/execute", sql);
        let v = r.expect_error(500, "EXECUTION_ERROR");
        assert!(
            v["error"].as_str().unwrap().contains("locked"),
            "{sql}: {v}"
        );
    }
    c.execute("CREATE SCHEMA s1");
    c.execute("CREATE TABLE s1.t AS SELECT 5 AS v");
    // Allowed under the lock; each lasts for its own job (every job starts
    // on a clean session), so it is used in the same text.
    c.execute("SET search_path = 's1'");
    post_sql(&mut c, "/execute", "SELECT v FROM t").expect_error(500, "EXECUTION_ERROR");
    assert_eq!(
        c.execute("SET search_path = 's1'; SELECT v FROM t")["rows"],
        json!([[5]])
    );
    c.execute("USE memory.main");
    assert_eq!(
        c.execute("SET VARIABLE x = 7; SELECT getvariable('x') AS x")["rows"],
        json!([[7]])
    );
    c.execute("BEGIN; INSERT INTO s1.t VALUES (6); COMMIT");
    assert_eq!(c.execute("SELECT count(*) FROM s1.t")["rows"], json!([[2]]));
}

/// Files, the token and init SQL: one agent with an allowed directory, an
/// attached database from the init SQL and a file database.
#[test]
fn sql_reaches_files_only_inside_allowed_paths() {
    let dir = scratch_dir("files");
    let allowed = dir.join("allowed");
    let outside = dir.join("outside");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    for d in [&allowed, &outside] {
        std::fs::write(d.join("t.csv"), "a,b\n1,x\n2,y\n").unwrap();
    }
    let attached = dir.join("side.duckdb");
    let init = dir.join("init.sql");
    std::fs::write(
        &init,
        format!(
            "ATTACH IF NOT EXISTS '{}' AS side;\n\
             CREATE TABLE IF NOT EXISTS side.kept AS SELECT 11 AS v;\n",
            attached.display()
        ),
    )
    .unwrap();
    let db = dir.join("main.duckdb");
    let allowed_s = format!("{}/", allowed.display());
    let agent = Agent::start(&[
        ("ALLOWED_PATHS", allowed_s.as_str()),
        ("DUCKDB_INIT_SQL", init.to_str().unwrap()),
        ("DUCKDB_PATH", db.to_str().unwrap()),
        ("MAX_MEMORY_GB", "0.1"),
    ]);
    let mut c = agent.client();
    let a = allowed.display().to_string();
    let o = outside.display().to_string();

    // Inside: every reader works, and COPY TO writes.
    assert_eq!(
        c.execute(&format!("SELECT count(*) FROM read_csv('{a}/t.csv')"))["rows"],
        json!([[2]])
    );
    assert_eq!(
        c.execute(&format!(
            "SELECT length(content) FROM read_text('{a}/t.csv')"
        ))["rows"],
        json!([[12]])
    );
    assert_eq!(
        c.execute(&format!("SELECT size FROM read_blob('{a}/t.csv')"))["rows"],
        json!([[12]])
    );
    assert_eq!(
        c.execute(&format!("SELECT count(*) FROM glob('{a}/*.csv')"))["rows"],
        json!([[1]])
    );
    c.execute(&format!("COPY (SELECT 1 AS one) TO '{a}/out.csv'"));
    assert!(allowed.join("out.csv").exists());

    // Outside, and the process's own files: refused.
    for sql in [
        format!("SELECT * FROM read_csv('{o}/t.csv')"),
        format!("SELECT * FROM read_text('{o}/t.csv')"),
        format!("SELECT * FROM read_blob('{o}/t.csv')"),
        format!("SELECT * FROM glob('{o}/*')"),
        format!("COPY (SELECT 1) TO '{o}/out.csv'"),
        format!("SELECT * FROM read_csv('{a}/../outside/t.csv')"),
        "SELECT content FROM read_text('/proc/self/environ')".to_string(),
        "SELECT * FROM read_text('/etc/passwd')".to_string(),
        format!("ATTACH '{o}/new.duckdb' AS n2"),
        "INSTALL httpfs".to_string(),
    ] {
        let r = post_sql(&mut c, "/execute", &sql);
        assert_eq!(r.status, 500, "{sql}: {}", r.text());
        assert!(!r.text().contains(TOKEN), "{sql}");
    }
    assert!(!outside.join("out.csv").exists());

    // The init SQL's attachment and the database file keep working.
    assert_eq!(c.execute("SELECT v FROM side.kept")["rows"], json!([[11]]));
    c.execute("CREATE TABLE IF NOT EXISTS main_t AS SELECT 3 AS v");
    c.execute("INSERT INTO side.kept VALUES (12)");
    assert_eq!(
        c.execute("SELECT count(*) FROM side.kept")["rows"],
        json!([[2]])
    );
    // A sort larger than the memory limit spills to DuckDB's temp directory.
    let v = c.execute(
        "SELECT count(*) FROM (SELECT i, repeat('x', 100) AS s FROM range(3000000) t(i) ORDER BY s, i DESC)",
    );
    assert_eq!(v["rows"], json!([[3_000_000]]));

    // The token is gone from the environment the process sees and from its
    // initial environment block.
    let environ = std::fs::read(format!("/proc/{}/environ", agent.pid())).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(!environ.contains(TOKEN), "{environ}");
    drop(agent);
    let _ = std::fs::remove_dir_all(dir);
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn an_over_cap_result_peaks_near_the_cap() {
    const CAP: u64 = 64 << 20;
    let cap = CAP.to_string();
    let agent = Agent::start(&[
        ("SHARDS", "1"),
        ("DUCKDB_THREADS", "2"),
        ("MAX_RESULT_BYTES", cap.as_str()),
    ]);
    let mut c = agent.client();
    // Warm up: a result just under the cap sets the baseline peak.
    c.execute("SELECT repeat('x', 1000) AS s FROM range(1000) t(i)");
    let base = vm_hwm_kib(agent.pid()) << 10;
    for sql in [
        // 1 GB of rows: stops at the cap while DuckDB streams.
        "SELECT repeat('x', 1000) || i AS s FROM range(1000000) t(i)",
        // Escapes grow 6x: 12 MB of control characters are 72 MB of JSON, over
        // the cap, and never written (DuckDB itself holds a few copies of the
        // 12 MB value while it builds and hands it over).
        "SELECT repeat(chr(1), 12000000) AS s",
        // Many rows of escapes.
        "SELECT repeat(chr(1), 1000) AS s FROM range(1000000) t(i)",
    ] {
        let r = post_sql(&mut c, "/execute", sql);
        r.expect_error(500, "RESULT_TOO_LARGE");
        let peak = vm_hwm_kib(agent.pid()) << 10;
        let grew = peak.saturating_sub(base);
        eprintln!(
            "{sql}: VmHWM {} MiB, {} MiB over the baseline, cap {} MiB",
            peak >> 20,
            grew >> 20,
            CAP >> 20
        );
        assert!(grew < 2 * CAP, "{sql}: peak grew {} MiB", grew >> 20);
    }
    serving(&agent);
}
