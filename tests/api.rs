//! Every route of the wire contract against the real binary: statuses, error codes,
//! field names, request-id echo, auth, 404/405, feature flag, malformed HTTP.

mod common;

use common::*;
use serde_json::json;
use std::io::Write;

#[test]
fn routing_404_405_and_auth() {
    let agent = Agent::start(&[]);
    let mut c = agent.client();

    let r = c.get("/nope");
    r.expect_error(404, "NOT_FOUND");
    c.get("/queries/").expect_error(404, "NOT_FOUND");
    c.get("/queries/x/y").expect_error(404, "NOT_FOUND");

    for (method, path, allow) in [
        ("GET", "/execute", "POST"),
        ("GET", "/queries", "POST"),
        ("PUT", "/queries/abc", "GET, HEAD, DELETE"),
        ("POST", "/queries/abc", "GET, HEAD, DELETE"),
        ("POST", "/queries/abc/results", "GET, HEAD"),
        ("GET", "/queries/abc/cancel", "POST"),
        ("POST", "/health", "GET, HEAD"),
        ("DELETE", "/metrics", "GET, HEAD"),
    ] {
        let r = c.request(method, path, &[], None);
        r.expect_error(405, "METHOD_NOT_ALLOWED");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }

    // Auth: missing or wrong token, on every authenticated route.
    let mut anon = Client::connect(agent.addr).unwrap();
    let body = serde_json::to_vec(&json!({"sql": "SELECT 1"})).unwrap();
    let id = "6f1c3a52-0000-4000-8000-000000000000";
    let routes: Vec<(&str, String, Option<&[u8]>)> = vec![
        ("POST", "/execute".into(), Some(&body)),
        ("POST", "/queries".into(), Some(&body)),
        ("GET", format!("/queries/{id}"), None),
        ("GET", format!("/queries/{id}/results"), None),
        ("POST", format!("/queries/{id}/cancel"), None),
        ("DELETE", format!("/queries/{id}"), None),
    ];
    for (m, p, b) in &routes {
        let r = anon.request(m, p, &[("X-Request-ID", "rid-401")], *b);
        let v = r.expect_error(401, "AUTH_ERROR");
        assert_eq!(v["error"], "unauthorized");
        assert_eq!(v["request_id"], "rid-401");
        let r = anon.request(m, p, &[("X-Agent-Token", "test-token-12")], *b);
        r.expect_error(401, "AUTH_ERROR");
        let r = anon.request(m, p, &[("X-Agent-Token", "test-token-1234")], *b);
        r.expect_error(401, "AUTH_ERROR");
    }
    // Nothing was queued by the refused submits.
    assert_eq!(agent.health()["stored_jobs"], 0);
    // /health and /metrics need no token.
    assert_eq!(anon.get("/health").status, 200);
    assert_eq!(anon.get("/metrics").status, 200);
}

#[test]
fn execute_contract() {
    let agent = Agent::start(&[]);
    let mut c = agent.client();

    let r = c.post("/execute", &json!({"sql": "SELECT 42 AS answer, 'x' AS s"}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["columns"], json!(["answer", "s"]));
    assert_eq!(v["column_types"], json!(["INTEGER", "VARCHAR"]));
    assert_eq!(v["rows"], json!([[42, "x"]]));
    assert_eq!(v["row_count"], 1);
    assert!(
        v.get("request_id").is_none(),
        "no request id, no field: {v}"
    );

    // Request id: header, else body; the header wins.
    let b = serde_json::to_vec(&json!({"sql": "SELECT 1", "request_id": "body-rid"})).unwrap();
    assert_eq!(
        c.request("POST", "/execute", &[], Some(&b)).json()["request_id"],
        "body-rid"
    );
    let r = c.request("POST", "/execute", &[("X-Request-ID", "hdr-rid")], Some(&b));
    assert_eq!(r.json()["request_id"], "hdr-rid");

    // No rows: columns still present, rows empty.
    let v = c.execute("SELECT 1 AS a, 'b' AS b WHERE false");
    assert_eq!(v["columns"], json!(["a", "b"]));
    assert_eq!(v["rows"], json!([]));
    assert_eq!(v["row_count"], 0);

    // DuckDB's message on failure.
    let r = c.request(
        "POST",
        "/execute",
        &[("X-Request-ID", "e1")],
        Some(br#"{"sql":"SELECT * FROM no_such_table"}"#),
    );
    let v = r.expect_error(500, "EXECUTION_ERROR");
    assert!(
        v["error"].as_str().unwrap().contains("no_such_table"),
        "{v}"
    );
    assert_eq!(v["request_id"], "e1");

    // Bodies.
    for bad in ["", "{", "not json", r#"{"sql":"SELECT 1"} x"#] {
        c.request("POST", "/execute", &[], Some(bad.as_bytes()))
            .expect_error(400, "PARSE_ERROR");
    }
    for bad in [
        "{}",
        r#"{"sql":""}"#,
        r#"{"sql":"   "}"#,
        r#"{"sql":1}"#,
        "[1]",
    ] {
        c.request("POST", "/execute", &[], Some(bad.as_bytes()))
            .expect_error(400, "VALIDATION_ERROR");
    }
    // A validation error still echoes the body's request id.
    let v = c
        .request(
            "POST",
            "/execute",
            &[],
            Some(br#"{"sql":"","request_id":"v1"}"#),
        )
        .expect_error(400, "VALIDATION_ERROR");
    assert_eq!(v["request_id"], "v1");

    // The connection and the agent keep serving after all of that.
    assert_eq!(c.execute("SELECT 7 AS seven")["rows"], json!([[7]]));
}

#[test]
fn lifecycle_contract() {
    let agent = Agent::start(&[]);
    let mut c = agent.client();

    // Submit.
    let r = c.request(
        "POST",
        "/queries",
        &[("X-Request-ID", "life-1")],
        Some(br#"{"sql":"SELECT 1 AS one, 2 AS two"}"#),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let v = r.json();
    assert_eq!(v["request_id"], "life-1");
    let id = v["query_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "uuid: {id}");
    assert!(
        matches!(
            v["status"].as_str(),
            Some("QUEUED" | "RUNNING" | "SUCCEEDED")
        ),
        "{v}"
    );

    // Status, once terminal.
    let st = c.wait_terminal(&id);
    assert_eq!(st["status"], "SUCCEEDED");
    assert_eq!(st["query_id"], id.as_str());
    assert_eq!(st["columns"], json!(["one", "two"]));
    assert_eq!(st["column_types"], json!(["INTEGER", "INTEGER"]));
    assert_eq!(st["row_count"], 1);
    assert!(st.get("error").is_none());
    let done =
        parse_rfc3339_utc(st["completed_at"].as_str().unwrap()).expect("RFC 3339 UTC completed_at");
    assert!(
        (done - now_epoch()).abs() < 600.0,
        "completed_at {done} far from now"
    );
    let r = c.request(
        "GET",
        &format!("/queries/{id}"),
        &[("X-Request-ID", "s-1")],
        None,
    );
    assert_eq!(r.json()["request_id"], "s-1");
    // The completion time is fixed once set.
    assert_eq!(
        c.get(&format!("/queries/{id}")).json()["completed_at"],
        st["completed_at"]
    );

    // Results.
    let v = c.get(&format!("/queries/{id}/results")).json();
    assert_eq!(v["query_id"], id.as_str());
    assert_eq!(v["columns"], json!(["one", "two"]));
    assert_eq!(v["column_types"], json!(["INTEGER", "INTEGER"]));
    assert_eq!(v["rows"], json!([[1, 2]]));
    assert_eq!(v["row_count"], 1);
    assert!(v.get("next_page_token").is_none());

    // Cancel of a terminal job keeps its status.
    let r = c.request(
        "POST",
        &format!("/queries/{id}/cancel"),
        &[("X-Request-ID", "c-1")],
        None,
    );
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["status"], "SUCCEEDED");
    assert_eq!(v["query_id"], id.as_str());
    assert_eq!(v["request_id"], "c-1");

    // Delete, then the id is gone everywhere.
    let r = c.delete(&format!("/queries/{id}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"query_id": id, "status": "CANCELED"}));
    c.get(&format!("/queries/{id}"))
        .expect_error(404, "NOT_FOUND");
    c.get(&format!("/queries/{id}/results"))
        .expect_error(404, "NOT_FOUND");
    c.request("POST", &format!("/queries/{id}/cancel"), &[], None)
        .expect_error(404, "NOT_FOUND");
    c.delete(&format!("/queries/{id}"))
        .expect_error(404, "NOT_FOUND");

    // Unknown and malformed ids.
    for bad in ["6f1c3a52-0000-4000-8000-000000000000", "not-a-uuid"] {
        c.get(&format!("/queries/{bad}"))
            .expect_error(404, "NOT_FOUND");
        c.get(&format!("/queries/{bad}/results"))
            .expect_error(404, "NOT_FOUND");
        c.request("POST", &format!("/queries/{bad}/cancel"), &[], None)
            .expect_error(404, "NOT_FOUND");
        c.delete(&format!("/queries/{bad}"))
            .expect_error(404, "NOT_FOUND");
    }

    // Submit validation.
    c.request("POST", "/queries", &[], Some(b"{nope"))
        .expect_error(400, "PARSE_ERROR");
    c.request("POST", "/queries", &[], Some(br#"{"request_id":"x"}"#))
        .expect_error(400, "VALIDATION_ERROR");
    c.request("POST", "/queries", &[], Some(br#"{"sql":""}"#))
        .expect_error(400, "VALIDATION_ERROR");
    assert_eq!(
        agent.health()["stored_jobs"],
        0,
        "rejected submits create no job"
    );
}

#[test]
fn failed_and_canceled_jobs() {
    let agent = Agent::start(&[("DUCKDB_THREADS", "1")]);
    let mut c = agent.client();

    let id = c.submit("SELECT * FROM missing_tbl");
    let st = c.wait_terminal(&id);
    assert_eq!(st["status"], "FAILED");
    let err = st["error"].as_str().unwrap();
    assert!(err.contains("missing_tbl"), "{st}");
    assert_eq!(st["error_code"], "EXECUTION_ERROR");
    assert!(parse_rfc3339_utc(st["completed_at"].as_str().unwrap()).is_some());
    assert!(st.get("columns").is_none());
    let v = c
        .get(&format!("/queries/{id}/results"))
        .expect_error(409, "QUERY_NOT_AVAILABLE");
    assert!(v["error"].as_str().unwrap().contains("missing_tbl"), "{v}");

    // A running job: results not ready; cancel interrupts it.
    let id = c.submit(LONG_SQL);
    eventually("job running", || {
        let v = c.get(&format!("/queries/{id}")).json();
        (v["status"] == "RUNNING").then_some(())
    });
    let v = c
        .get(&format!("/queries/{id}/results"))
        .expect_error(409, "QUERY_NOT_READY");
    assert!(v["error"].as_str().unwrap().contains("RUNNING"), "{v}");
    let r = c.request("POST", &format!("/queries/{id}/cancel"), &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "CANCELED");
    let st = c.wait_terminal(&id);
    assert_eq!(st["status"], "CANCELED");
    assert!(st["completed_at"].is_string());
    c.get(&format!("/queries/{id}/results"))
        .expect_error(409, "QUERY_NOT_AVAILABLE");
}

#[test]
fn cursor_mode_off_hides_lifecycle_routes() {
    let agent = Agent::start(&[("FEATURE_CURSOR_MODE", "false")]);
    let mut c = agent.client();
    c.post("/queries", &json!({"sql": "SELECT 1"}))
        .expect_error(404, "NOT_FOUND");
    c.get("/queries/6f1c3a52-0000-4000-8000-000000000000")
        .expect_error(404, "NOT_FOUND");
    c.request("POST", "/queries/x/cancel", &[], None)
        .expect_error(404, "NOT_FOUND");
    c.delete("/queries/x").expect_error(404, "NOT_FOUND");
    // The gateway's fallback still works.
    assert_eq!(c.execute("SELECT 5 AS five")["rows"], json!([[5]]));
    assert_eq!(agent.health()["status"], "ok");
}

#[test]
fn malformed_http_gets_400_and_agent_keeps_serving() {
    let agent = Agent::start(&[]);
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /execute HTTP/1.1\r\nContent-Length: zz\r\n\r\n",
    ] {
        let mut c = Client::connect(agent.addr).unwrap();
        c.raw().write_all(garbage).unwrap();
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(c.raw(), &mut buf);
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.starts_with("HTTP/1.1 400") || text.starts_with("HTTP/1.1 505"),
            "{garbage:?} -> {text}"
        );
    }
    // Others are unaffected.
    let mut c = agent.client();
    assert_eq!(c.execute("SELECT 1 AS x")["rows"], json!([[1]]));
}

/// `POST /queries?wait_ms=`: a job that ends within the wait comes back 200 with its
/// status and first page in one answer (and stays a normal job); one that outlives
/// the wait gets the plain 202; a failure brings its error; bad parameters are
/// refused before anything is queued; a repeated request id answers the same job.
#[test]
fn submit_with_wait_answers_the_first_page() {
    let agent = Agent::start(&[("DUCKDB_THREADS", "1"), ("QUERY_CLEANUP_INTERVAL", "1s")]);
    let mut c = agent.client();

    let sql = br#"{"sql":"SELECT i, 'v' || i AS s FROM range(5) t(i) ORDER BY i"}"#;
    let r = c.request(
        "POST",
        "/queries?wait_ms=5000&max_results=2",
        &[("X-Request-ID", "wait-1")],
        Some(sql),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "SUCCEEDED", "{v}");
    assert_eq!(v["request_id"], "wait-1");
    assert_eq!(v["columns"], json!(["i", "s"]));
    assert_eq!(v["column_types"], json!(["BIGINT", "VARCHAR"]));
    assert_eq!(v["rows"], json!([[0, "v0"], [1, "v1"]]));
    assert_eq!(v["row_count"], 5);
    assert!(parse_rfc3339_utc(v["completed_at"].as_str().unwrap()).is_some());
    let id = v["query_id"].as_str().unwrap().to_string();
    // The rest pages on as after any submit.
    let token = v["next_page_token"].as_str().unwrap();
    let p = c
        .get(&format!(
            "/queries/{id}/results?page_token={token}&max_results=10"
        ))
        .json();
    assert_eq!(p["rows"], json!([[2, "v2"], [3, "v3"], [4, "v4"]]));
    assert!(p.get("next_page_token").is_none());
    // The same request id again: the same job, answered the same way.
    let again = c
        .request(
            "POST",
            "/queries?wait_ms=5000&max_results=2",
            &[("X-Request-ID", "wait-1")],
            Some(sql),
        )
        .json();
    assert_eq!(again["query_id"], id.as_str());
    assert_eq!(again["rows"], v["rows"]);
    assert_eq!(agent.health()["stored_jobs"], 1);

    // A whole small result: no next token.
    let v = c
        .request(
            "POST",
            "/queries?wait_ms=5000",
            &[],
            Some(br#"{"sql":"SELECT 42 AS x"}"#),
        )
        .json();
    assert_eq!(v["rows"], json!([[42]]));
    assert!(v.get("next_page_token").is_none(), "{v}");

    // A failure within the wait: 200 with the status and its error.
    let r = c.request(
        "POST",
        "/queries?wait_ms=5000",
        &[],
        Some(br#"{"sql":"SELECT * FROM missing_tbl"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "FAILED");
    assert_eq!(v["error_code"], "EXECUTION_ERROR");
    assert!(v["error"].as_str().unwrap().contains("missing_tbl"), "{v}");
    assert!(v.get("rows").is_none());

    // Outliving the wait: the plain 202, and the job runs on.
    let body = format!(r#"{{"sql":{}}}"#, json!(LONG_SQL));
    let asked = std::time::Instant::now();
    let r = c.request("POST", "/queries?wait_ms=300", &[], Some(body.as_bytes()));
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(asked.elapsed() >= std::time::Duration::from_millis(250));
    let v = r.json();
    assert!(
        matches!(v["status"].as_str(), Some("QUEUED" | "RUNNING")),
        "{v}"
    );
    assert!(v.get("rows").is_none());
    let long = v["query_id"].as_str().unwrap().to_string();
    assert_eq!(
        c.get(&format!("/queries/{long}")).json()["status"],
        "RUNNING"
    );
    c.delete(&format!("/queries/{long}"));

    // consume=true: a job whose whole result (or failure) is in the answer is
    // left to the agent, which drops it after a short grace (no delete needed); a
    // submit retried with the same request id within the grace gets the same
    // answer, not a second run. A job with rows left is kept for paging.
    let before = agent.health()["stored_jobs"].as_u64().unwrap();
    let consume = |c: &mut Client, rid: &str, sql: &[u8]| {
        c.request(
            "POST",
            "/queries?wait_ms=5000&consume=true&max_results=2",
            &[("X-Request-ID", rid)],
            Some(sql),
        )
        .json()
    };
    let v = consume(&mut c, "consume-1", br#"{"sql":"SELECT 42 AS x"}"#);
    assert_eq!(v["rows"], json!([[42]]));
    assert_eq!(v["consumed"], true, "{v}");
    let retried = consume(&mut c, "consume-1", br#"{"sql":"SELECT 42 AS x"}"#);
    assert_eq!(retried["query_id"], v["query_id"]);
    assert_eq!(retried["rows"], json!([[42]]));
    let v = consume(
        &mut c,
        "consume-2",
        br#"{"sql":"SELECT * FROM missing_tbl"}"#,
    );
    assert_eq!(v["status"], "FAILED");
    assert_eq!(v["consumed"], true, "{v}");
    let v = consume(&mut c, "consume-3", br#"{"sql":"SELECT * FROM range(3)"}"#);
    assert!(v.get("consumed").is_none(), "rows remain: {v}");
    assert!(v["next_page_token"].is_string());
    c.delete(&format!("/queries/{}", v["query_id"].as_str().unwrap()));
    assert_eq!(agent.health()["stored_jobs"].as_u64().unwrap(), before + 2);
    eventually("consumed jobs dropped after their grace", || {
        (agent.health()["stored_jobs"].as_u64() == Some(before)).then_some(())
    });

    // Bad parameters: refused, nothing queued.
    let before = agent.health()["stored_jobs"].clone();
    for q in [
        "wait_ms=-1",
        "wait_ms=x",
        "wait_ms=10&max_results=0",
        "max_results=abc",
        "wait_ms=10&consume=yes",
    ] {
        c.request(
            "POST",
            &format!("/queries?{q}"),
            &[],
            Some(br#"{"sql":"SELECT 1"}"#),
        )
        .expect_error(400, "VALIDATION_ERROR");
    }
    assert_eq!(agent.health()["stored_jobs"], before);
}

/// A caller that vanishes in the middle of a waiting submit: the agent keeps
/// serving everyone else at once, and the job it accepted is not lost (it runs
/// on as after any submit, and can be found by its request id and deleted).
#[test]
fn a_caller_vanishing_mid_wait_leaves_a_findable_job() {
    let agent = Agent::start(&[]);
    let body = format!(r#"{{"sql":{},"request_id":"gone-1"}}"#, json!(LONG_SQL));
    let mut raw = std::net::TcpStream::connect(agent.addr).unwrap();
    write!(
        raw,
        "POST /queries?wait_ms=30000 HTTP/1.1\r\nHost: x\r\nX-Agent-Token: {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut c = agent.client();
    eventually("the job running", || {
        (agent.health()["running_jobs"] == 1).then_some(())
    });
    drop(raw);
    let asked = std::time::Instant::now();
    assert_eq!(c.execute("SELECT 1")["rows"], json!([[1]]));
    assert!(asked.elapsed() < std::time::Duration::from_secs(5));
    // The same request id finds the job; deleting it stops the statement.
    let r = c.request(
        "POST",
        "/queries",
        &[("X-Request-ID", "gone-1")],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["query_id"].as_str().unwrap().to_string();
    assert_eq!(c.delete(&format!("/queries/{id}")).status, 200);
    eventually("nothing left", || {
        let h = agent.health();
        (h["stored_jobs"] == 0 && h["active_queries"] == 0).then_some(())
    });
}

/// `params`: values bound to the statement's placeholders on `/execute` and
/// on a submitted job, never spliced into the text (a value that reads like
/// SQL stays a value); a body whose params are not an array of scalars is
/// refused.
#[test]
fn params_are_bound_as_values() {
    let agent = Agent::start(&[]);
    let mut c = agent.client();
    let r = c.post(
        "/execute",
        &json!({"sql": "SELECT $1::INTEGER + 1 AS a, $2 AS b, $3 AS c, $4 IS NULL AS d, $5 AS e",
                "params": [41, "x'; SELECT 1; --", true, null, 2.5]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["rows"],
        json!([[42, "x'; SELECT 1; --", true, true, 2.5]])
    );
    // A text value cast by the placeholder's use, as a literal would be.
    let r = c.post(
        "/execute",
        &json!({"sql": "SELECT i FROM range(10) t(i) WHERE i > $1 ORDER BY i", "params": ["7"]}),
    );
    assert_eq!(r.json()["rows"], json!([[8], [9]]), "{}", r.text());
    // On the job lifecycle too.
    let r = c.post(
        "/queries",
        &json!({"sql": "SELECT $1 || $2 AS s", "params": ["a", "b"]}),
    );
    let id = r.json()["query_id"].as_str().unwrap().to_string();
    let st = c.wait_terminal(&id);
    assert_eq!(st["status"], "SUCCEEDED", "{st}");
    let rows = c.get(&format!("/queries/{id}/results")).json();
    assert_eq!(rows["rows"], json!([["ab"]]));
    // Missing or extra parameters are the engine's error; bad shapes are refused.
    c.post("/execute", &json!({"sql": "SELECT $1 + $2", "params": [1]}))
        .expect_error(500, "EXECUTION_ERROR");
    for bad in [json!({"a": 1}), json!([[1]]), json!([{"x": 1}]), json!("1")] {
        c.post("/execute", &json!({"sql": "SELECT $1", "params": bad}))
            .expect_error(400, "VALIDATION_ERROR");
    }
}
