//! Executor v2 through the real binary: several statements at once per shard,
//! truthful counters, cancel that hits only its own statement, every job on a
//! clean session, timeouts (setting, body, queue, DuckDB's own), a vanished
//! `/execute` caller freeing its worker, and retention changed while running.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn status(c: &mut Client, id: &str) -> Value {
    let r = c.get(&format!("/queries/{id}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn wait_status(c: &mut Client, id: &str, want: &str) -> Value {
    eventually(&format!("job {id} {want}"), || {
        let v = status(c, id);
        (v["status"] == want).then_some(v)
    })
}

fn cancel(c: &mut Client, id: &str) {
    let r = c.post(&format!("/queries/{id}/cancel"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
}

/// One value from a one-row, one-column `/execute`.
fn scalar(c: &mut Client, sql: &str) -> Value {
    c.execute(sql)["rows"][0][0].clone()
}

#[test]
fn short_statements_answer_while_long_scans_fill_a_shard() {
    // Two shards of two workers: three long scans fill one shard and half the other.
    let agent = Agent::start(&[("SHARDS", "2"), ("MAX_CONCURRENT_QUERIES", "4")]);
    let mut c = agent.client();
    assert_eq!(agent.health()["max_concurrent_queries"], 4);
    let longs: Vec<String> = (0..3).map(|_| c.submit(LONG_SQL)).collect();
    for id in &longs {
        wait_status(&mut c, id, "RUNNING");
    }
    let h = agent.health();
    assert_eq!(h["running_jobs"], 3, "{h}");
    assert_eq!(h["active_queries"], 3, "{h}");
    assert_eq!(h["queued_jobs"], 0, "{h}");
    // Trivial statements from many connections (so from both shards) answer at
    // once: a full shard hands them to the one with a free worker.
    for i in 0..12 {
        let mut fresh = agent.client();
        let t = Instant::now();
        assert_eq!(scalar(&mut fresh, &format!("SELECT {i} + 1")), json!(i + 1));
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let id = fresh.submit(&format!("SELECT {i} AS v"));
        assert_eq!(fresh.wait_terminal(&id)["status"], "SUCCEEDED");
    }
    // The long scans are still running, untouched.
    for id in &longs {
        assert_eq!(status(&mut c, id)["status"], "RUNNING");
    }
    // A fourth and fifth long scan fill every worker; more work queues and
    // the counters say so.
    let more: Vec<String> = (0..2).map(|_| c.submit(LONG_SQL)).collect();
    let queued = c.submit("SELECT 7");
    eventually("counters with a queued job", || {
        let h = agent.health();
        (h["running_jobs"] == 4 && h["queued_jobs"] == 2 && h["active_queries"] == 4).then_some(())
    });
    assert_eq!(status(&mut c, &queued)["status"], "QUEUED");
    for id in longs.iter().chain(&more) {
        cancel(&mut c, id);
    }
    assert_eq!(c.wait_terminal(&queued)["status"], "SUCCEEDED");
    eventually("all idle", || {
        let h = agent.health();
        (h["running_jobs"] == 0 && h["active_queries"] == 0 && h["queued_jobs"] == 0).then_some(())
    });
}

#[test]
fn cancel_interrupts_exactly_its_own_statement() {
    let agent = Agent::start(&[("SHARDS", "1"), ("MAX_CONCURRENT_QUERIES", "3")]);
    let mut c = agent.client();
    let ids: Vec<String> = (0..3).map(|_| c.submit(LONG_SQL)).collect();
    for id in &ids {
        wait_status(&mut c, id, "RUNNING");
    }
    for (k, victim) in ids.iter().enumerate() {
        cancel(&mut c, victim);
        let v = c.wait_terminal(victim);
        assert_eq!(v["status"], "CANCELED");
        // The worker really stopped: one fewer statement active.
        eventually("the canceled statement stops", || {
            (agent.health()["active_queries"] == json!(ids.len() - k - 1)).then_some(())
        });
        std::thread::sleep(Duration::from_millis(300));
        for other in &ids[k + 1..] {
            assert_eq!(
                status(&mut c, other)["status"],
                "RUNNING",
                "neighbour of {victim}"
            );
        }
    }
    // Cancel racing completion: many short jobs canceled as they finish never
    // disturb a neighbour, and every one ends terminal.
    let keeper = c.submit("SELECT count(*) AS n FROM range(20000000)");
    for i in 0..40 {
        let id = c.submit(&format!("SELECT {i}"));
        cancel(&mut c, &id);
        let st = c.wait_terminal(&id)["status"].clone();
        assert!(st == "CANCELED" || st == "SUCCEEDED", "{st}");
    }
    let k = c.wait_terminal(&keeper);
    assert_eq!(k["status"], "SUCCEEDED", "{k}");
}

#[test]
fn every_job_starts_on_a_clean_session() {
    let dir = scratch_dir("clean-session");
    let init = dir.join("init.sql");
    std::fs::write(
        &init,
        "ATTACH ':memory:' AS other; CREATE TABLE other.main.only_other AS SELECT 1 AS x; \
         SET SESSION default_null_order = 'nulls_first_on_asc_last_on_desc';",
    )
    .unwrap();
    let init = init.display().to_string();
    // One shard with one worker: every job runs on the same connection.
    let agent = Agent::start(&[
        ("SHARDS", "1"),
        ("MAX_CONCURRENT_QUERIES", "1"),
        ("DUCKDB_INIT_SQL", &init),
    ]);
    let mut c = agent.client();
    let null_order = "SELECT current_setting('default_null_order')";
    let baseline_order = scalar(&mut c, null_order);
    assert_eq!(baseline_order, "NULLS_FIRST_ON_ASC_LAST_ON_DESC");
    let baseline_db = scalar(&mut c, "SELECT current_database()");

    // Each (state changer, probe, expected probe answer afterwards).
    let cases: Vec<(&str, String, Value)> =
        vec![
        (
            "BEGIN; CREATE TABLE in_tx AS SELECT 1 AS a",
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'in_tx'".into(),
            json!(0),
        ),
        ("USE other", "SELECT current_database()".into(), baseline_db.clone()),
        (
            "SET search_path = 'other.main'",
            "SELECT count(*) FROM (SELECT 1) WHERE current_setting('search_path') LIKE '%other%'"
                .into(),
            json!(0),
        ),
        (
            "CREATE TEMP TABLE tmp_t AS SELECT 42 AS v",
            "SELECT count(*) FROM duckdb_tables() WHERE temporary".into(),
            json!(0),
        ),
        (
            "CREATE TEMP VIEW tmp_v AS SELECT 1",
            "SELECT count(*) FROM duckdb_views() WHERE temporary AND NOT internal".into(),
            json!(0),
        ),
        (
            "PREPARE leaked AS SELECT 1",
            "SELECT count(*) FROM duckdb_prepared_statements() WHERE name NOT LIKE 'duckdb_prepare_internal_%'".into(),
            json!(0),
        ),
        (
            "SET VARIABLE leaked_var = 42",
            "SELECT getvariable('leaked_var') IS NULL".into(),
            json!(true),
        ),
    ];
    for (changer, probe, want) in &cases {
        for via_job in [false, true] {
            if via_job {
                let id = c.submit(changer);
                let v = c.wait_terminal(&id);
                assert_eq!(v["status"], "SUCCEEDED", "{changer}: {v}");
            } else {
                let r = c.post("/execute", &json!({ "sql": changer }));
                assert_eq!(r.status, 200, "{changer}: {}", r.text());
            }
            assert_eq!(&scalar(&mut c, probe), want, "after {changer:?}: {probe}");
        }
    }
    // Other session settings cannot change at all: the configuration is
    // locked after the init SQL (only schema/search_path stay settable), so
    // the init SQL's session setting survives every attempt.
    for changer in [
        "SET SESSION default_null_order = 'nulls_last'",
        "RESET SESSION default_null_order",
        "SET progress_bar_time = 5",
    ] {
        let r = c.post("/execute", &json!({ "sql": changer }));
        let v = r.expect_error(500, "EXECUTION_ERROR");
        assert!(v["error"].as_str().unwrap().contains("locked"), "{v}");
        assert_eq!(
            scalar(&mut c, null_order),
            baseline_order,
            "after {changer:?}"
        );
    }
    // A failed statement inside an explicit transaction leaves nothing either.
    let r = c.post(
        "/execute",
        &json!({"sql": "BEGIN; CREATE TABLE half AS SELECT 1; SELECT * FROM no_such_table"}),
    );
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(
        scalar(
            &mut c,
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'half'"
        ),
        json!(0)
    );
    // Shared by design: a committed table is visible to the next job.
    c.execute("CREATE TABLE shared_t AS SELECT 5 AS v");
    assert_eq!(scalar(&mut c, "SELECT v FROM shared_t"), json!(5));
    // The init SQL's database and objects are still there.
    assert_eq!(
        scalar(&mut c, "SELECT x FROM other.main.only_other"),
        json!(1)
    ); // Every reset restored the session in place (none fell back to a
       // replacement connection, which could not carry the locked settings).
    assert!(
        !agent.log().contains("could not be reset"),
        "{}",
        agent.log()
    );
}

#[test]
fn timeouts_from_the_setting_and_the_body() {
    let agent = Agent::start(&[("SHARDS", "1"), ("QUERY_TIMEOUT", "400ms")]);
    let mut c = agent.client();
    // The setting, while running: a job and an /execute.
    let t = Instant::now();
    let id = c.submit(LONG_SQL);
    let v = c.wait_terminal(&id);
    assert_eq!(v["status"], "FAILED", "{v}");
    assert_eq!(v["error_code"], "QUERY_TIMEOUT", "{v}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let r = c.post("/execute", &json!({ "sql": LONG_SQL }));
    r.expect_error(504, "QUERY_TIMEOUT");
    // A larger timeout_ms is capped by the setting.
    let r = c.post(
        "/execute",
        &json!({ "sql": LONG_SQL, "timeout_ms": 600000 }),
    );
    r.expect_error(504, "QUERY_TIMEOUT");
    // A short statement is untouched.
    assert_eq!(scalar(&mut c, "SELECT 3"), json!(3));
    let h = agent.health();
    assert!(h["active_queries"] == 0, "{h}");
    drop(c);
    drop(agent);

    // No setting: the body's timeout_ms alone, and queue time counts.
    let agent = Agent::start(&[("SHARDS", "1"), ("MAX_CONCURRENT_QUERIES", "1")]);
    let mut c = agent.client();
    let r = c.post("/execute", &json!({ "sql": LONG_SQL, "timeout_ms": 300 }));
    r.expect_error(504, "QUERY_TIMEOUT");
    let blocker = c.submit(LONG_SQL);
    wait_status(&mut c, &blocker, "RUNNING");
    let r = c.post("/queries", &json!({ "sql": "SELECT 1", "timeout_ms": 300 }));
    assert_eq!(r.status, 202, "{}", r.text());
    let queued = r.json()["query_id"].as_str().unwrap().to_string();
    let v = c.wait_terminal(&queued);
    assert_eq!(v["status"], "FAILED", "{v}");
    assert_eq!(v["error_code"], "QUERY_TIMEOUT");
    let r = c.post("/execute", &json!({ "sql": "SELECT 1", "timeout_ms": 300 }));
    r.expect_error(504, "QUERY_TIMEOUT");
    // The blocker is still running: a deadline never hits a neighbour.
    assert_eq!(status(&mut c, &blocker)["status"], "RUNNING");
    cancel(&mut c, &blocker);
    assert_eq!(agent.health()["queued_jobs"], 0);
    for bad in [json!(-1), json!(0), json!("100"), json!(1.5)] {
        let r = c.post("/execute", &json!({ "sql": "SELECT 1", "timeout_ms": bad }));
        r.expect_error(400, "VALIDATION_ERROR");
    }
}

#[test]
fn duckdb_own_deadline_is_a_timeout_and_nothing_runs_twice() {
    let dir = scratch_dir("max-exec-time");
    let init = dir.join("init.sql");
    std::fs::write(&init, "SET max_execution_time = 300;").unwrap();
    let init = init.display().to_string();
    let agent = Agent::start(&[("SHARDS", "1"), ("DUCKDB_INIT_SQL", &init)]);
    let mut c = agent.client();
    c.execute("CREATE TABLE ins_t (i INTEGER)");
    let id = c.submit(&format!("INSERT INTO ins_t VALUES (1); {LONG_SQL}"));
    let v = c.wait_terminal(&id);
    assert_eq!(v["status"], "FAILED", "{v}");
    assert_eq!(v["error_code"], "QUERY_TIMEOUT", "{v}");
    // The INSERT ran once (not once per retry).
    assert_eq!(scalar(&mut c, "SELECT count(*) FROM ins_t"), json!(1));
}

#[test]
fn a_vanished_execute_caller_frees_its_worker() {
    let agent = Agent::start(&[("SHARDS", "1"), ("MAX_CONCURRENT_QUERIES", "1")]);
    let body = serde_json::to_vec(&json!({ "sql": LONG_SQL })).unwrap();
    for _ in 0..3 {
        let mut s = TcpStream::connect(agent.addr).unwrap();
        write!(
            s,
            "POST /execute HTTP/1.1\r\nHost: x\r\nX-Agent-Token: {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(&body).unwrap();
        eventually("the long statement runs", || {
            (agent.health()["active_queries"] == 1).then_some(())
        });
        drop(s);
        // The only worker is free again at once: a new statement runs.
        let t = Instant::now();
        let mut c = agent.client();
        assert_eq!(scalar(&mut c, "SELECT 9"), json!(9));
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
    // A caller that leaves while queued is dropped from the queue too.
    let mut c = agent.client();
    let blocker = c.submit(LONG_SQL);
    wait_status(&mut c, &blocker, "RUNNING");
    {
        let mut s = TcpStream::connect(agent.addr).unwrap();
        let b = br#"{"sql":"SELECT 1"}"#;
        write!(
            s,
            "POST /execute HTTP/1.1\r\nHost: x\r\nX-Agent-Token: {TOKEN}\r\nContent-Length: {}\r\n\r\n",
            b.len()
        )
        .unwrap();
        s.write_all(b).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    cancel(&mut c, &blocker);
    eventually("idle", || {
        let h = agent.health();
        (h["active_queries"] == 0).then_some(())
    });
}

#[test]
fn retention_settings_change_on_a_running_agent() {
    let agent = Agent::start(&[("QUERY_RESULT_TTL", "1h"), ("QUERY_CLEANUP_INTERVAL", "1h")]);
    let mut c = agent.client();
    let ids: Vec<String> = (0..4).map(|i| c.submit(&format!("SELECT {i}"))).collect();
    for id in &ids {
        assert_eq!(c.wait_terminal(id)["status"], "SUCCEEDED");
    }
    assert_eq!(agent.health()["stored_jobs"], 4);
    assert_eq!(agent.health()["query_result_ttl_seconds"], 3600);

    // Authenticated route.
    let mut anon = agent.client();
    anon.token = None;
    anon.request("PATCH", "/admin/settings", &[], Some(b"{}"))
        .expect_error(401, "AUTH_ERROR");

    // Bad values are refused and nothing changes.
    for bad in [
        r#"{"query_result_ttl":"-1s"}"#,
        r#"{"query_result_ttl":"0s"}"#,
        r#"{"query_cleanup_interval":"soon"}"#,
        r#"{"query_result_ttl":"1s","query_cleanup_interval":"0ms"}"#,
        r#"{"query_result_tll":"1s"}"#,
        r#"{}"#,
        "not json",
    ] {
        c.request("PATCH", "/admin/settings", &[], Some(bad.as_bytes()))
            .expect_error(400, "VALIDATION_ERROR");
    }
    let r = c.get("/admin/settings");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["query_result_ttl_ms"], 3_600_000);
    assert_eq!(r.json()["query_cleanup_interval_ms"], 3_600_000);
    assert_eq!(agent.health()["stored_jobs"], 4);

    // Lowered: the jobs already retained expire on the new schedule.
    let t = Instant::now();
    let r = c.request(
        "PATCH",
        "/admin/settings",
        &[],
        Some(br#"{"query_result_ttl":"2s","query_cleanup_interval":"100ms"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["query_result_ttl_ms"], 2000);
    assert_eq!(agent.health()["query_result_ttl_seconds"], 2);
    eventually("retained jobs expire under the new TTL", || {
        (agent.health()["stored_jobs"] == 0).then_some(())
    });
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(agent.health()["cleaned_jobs"], 4);
    for id in &ids {
        c.get(&format!("/queries/{id}"))
            .expect_error(404, "NOT_FOUND");
    }
}
