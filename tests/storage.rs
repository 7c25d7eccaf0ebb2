//! Real files: a DuckDB database file that survives a restart, DUCKDB_INIT_SQL run on
//! every shard connection (and a bad one failing start-up), Parquet written by COPY
//! and read back, JSON functions.

mod common;

use common::*;
use serde_json::json;

#[test]
fn duckdb_path_persists_across_restarts() {
    let dir = scratch_dir("db");
    let db = dir.join("agent.duckdb");
    let db_s = db.to_str().unwrap();
    {
        let agent = Agent::start(&[("DUCKDB_PATH", db_s)]);
        let mut c = agent.client();
        c.execute("CREATE TABLE kept AS SELECT i, 'v' || i AS s FROM range(100) t(i)");
        assert_eq!(
            c.execute("SELECT count(*) AS n FROM kept")["rows"],
            json!([[100]])
        );
        assert_eq!(agent.terminate().code(), Some(0));
    }
    assert!(db.exists());
    let agent = Agent::start(&[("DUCKDB_PATH", db_s)]);
    let v = agent
        .client()
        .execute("SELECT count(*) AS n, max(s) AS m FROM kept");
    assert_eq!(v["rows"], json!([[100, "v99"]]));
    drop(agent);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn init_sql_runs_on_every_shard_connection() {
    let dir = scratch_dir("init");
    let init = dir.join("init.sql");
    std::fs::write(
        &init,
        "SET VARIABLE not_used = 1;\n\
         CREATE TABLE IF NOT EXISTS init_t AS SELECT 42 AS v;\n\
         -- a temporary macro exists only on the connection that ran this file\n\
         CREATE TEMP MACRO add_one(x) AS x + 1;\n",
    )
    .unwrap();
    let agent = Agent::start(&[("DUCKDB_INIT_SQL", init.to_str().unwrap()), ("SHARDS", "2")]);
    // Many connections land on both shards; each must see the table and the macro.
    for _ in 0..16 {
        let mut c = agent.client();
        assert_eq!(
            c.execute("SELECT add_one(v) AS w FROM init_t")["rows"],
            json!([[43]])
        );
        let id = c.submit("SELECT add_one(1) AS two");
        assert_eq!(c.wait_terminal(&id)["status"], "SUCCEEDED");
    }
    drop(agent);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_init_sql_fails_startup_with_duckdbs_message() {
    let dir = scratch_dir("badinit");
    let init = dir.join("init.sql");
    std::fs::write(&init, "SELEC nonsense FROM;\n").unwrap();
    let out = Agent::run_to_exit(&[("DUCKDB_INIT_SQL", init.to_str().unwrap())], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("init SQL"), "{}", out.stderr);
    assert!(
        out.stderr.to_lowercase().contains("syntax error"),
        "DuckDB's message: {}",
        out.stderr
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn parquet_and_json_extensions_are_built_in() {
    let dir = scratch_dir("parquet");
    let file = dir.join("t.parquet");
    let f = file.to_str().unwrap();
    // File access by SQL is off outside ALLOWED_PATHS.
    let allowed = format!("{}/", dir.display());
    let agent = Agent::start(&[("ALLOWED_PATHS", allowed.as_str())]);
    let mut c = agent.client();
    c.execute(&format!(
        "COPY (SELECT i AS id, 'name-' || i AS name, i / 4 AS q FROM range(5000) t(i)) TO '{f}' (FORMAT PARQUET)"
    ));
    assert!(std::fs::metadata(&file).unwrap().len() > 0);
    let v = c.execute(&format!(
        "SELECT count(*) AS n, sum(id)::BIGINT AS s, max(name) AS m FROM read_parquet('{f}')"
    ));
    assert_eq!(v["rows"], json!([[5000, 12497500, "name-999"]]));
    let id = c.submit(&format!(
        "SELECT id, name FROM '{f}' WHERE id BETWEEN 10 AND 12 ORDER BY id"
    ));
    assert_eq!(c.wait_terminal(&id)["status"], "SUCCEEDED");
    assert_eq!(
        c.get(&format!("/queries/{id}/results")).json()["rows"],
        json!([[10, "name-10"], [11, "name-11"], [12, "name-12"]])
    );
    let v = c.execute(r#"SELECT json_extract_string('{"a":{"b":"deep"}}', '$.a.b') AS j, json_array_length('[1,2,3]') AS n"#);
    assert_eq!(v["rows"], json!([["deep", 3]]));
    drop(agent);
    let _ = std::fs::remove_dir_all(dir);
}
