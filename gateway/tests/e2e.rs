//! End to end: the real `compute-gateway` binary in front of real
//! `compute-agent` processes over loopback, with one DuckDB file that the
//! agents and the gateway's local DuckDB all open read-only. Users with
//! different filters and masks, remote and local routing, an agent killed
//! mid-test, admin changes on the next query, refusals with their audit
//! lines, the job lifecycle and its isolation, authentication, hostile input.

mod harness;

use harness::*;
use serde_json::{json, Value};

struct Setup {
    _dir: std::path::PathBuf,
    db: std::path::PathBuf,
    gw: Proc,
}

fn setup(extra: &[(&str, &str)]) -> Setup {
    let dir = scratch_dir("e2e");
    let db = make_db(&dir);
    let url = format!("sqlite:{}", dir.join("gateway.db").display());
    let gw = start_gateway(&url, &db, extra);
    Setup { _dir: dir, db, gw }
}

fn admin(gw: &Proc) -> Caller<'_> {
    Caller {
        gw,
        token: ADMIN_TOKEN.into(),
    }
}

/// Creates `user` in `groups` with a token; the caller.
fn user<'a>(gw: &'a Proc, name: &str, groups: &[&str]) -> Caller<'a> {
    let a = admin(gw);
    a.admin("PUT", &format!("/admin/users/{name}"), json!({}));
    for g in groups {
        a.admin(
            "PUT",
            &format!("/admin/groups/{g}/members/{name}"),
            Value::Null,
        );
    }
    let t = a.admin("POST", "/admin/tokens", json!({ "user": name }));
    Caller {
        gw,
        token: t["token"].as_str().unwrap().to_string(),
    }
}

fn ids(v: &Value) -> Vec<i64> {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_i64().unwrap())
        .collect()
}

fn col(v: &Value, i: usize) -> Vec<String> {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[i].as_str().unwrap_or("null").to_string())
        .collect()
}

fn add_endpoint(a: &Caller, name: &str, agent: &Proc) {
    a.admin(
        "POST",
        "/compute-endpoints",
        json!({"name": name, "url": agent.url(), "type": "REMOTE", "auth_token": AGENT_TOKEN}),
    );
}

fn assign(a: &Caller, endpoint: &str, user: &str, fallback_local: bool) -> i64 {
    a.admin(
        "POST",
        &format!("/compute-endpoints/{endpoint}/assignments"),
        json!({"principal": user, "principal_type": "user", "is_default": true, "fallback_local": fallback_local}),
    )["id"]
        .as_i64()
        .unwrap()
}

#[test]
fn two_users_see_their_rows_and_masks_one_remote_one_local() {
    let s = setup(&[]);
    let agent = start_agent(&s.db, &[]);
    let a = admin(&s.gw);
    let alice = user(&s.gw, "alice", &["analysts"]);
    let bob = user(&s.gw, "bob", &[]);
    add_endpoint(&a, "a1", &agent);
    assign(&a, "a1", "alice", false);
    a.admin(
        "POST",
        "/admin/grants",
        json!({"principal": "analysts", "principal_type": "group", "table": "people"}),
    );
    a.admin(
        "POST",
        "/admin/grants",
        json!({"principal": "bob", "principal_type": "user", "table": "people"}),
    );
    a.admin("POST", "/admin/row-filters", json!({"principal": "alice", "principal_type": "user", "table": "people", "predicate": "region = 'EU'"}));
    a.admin("POST", "/admin/row-filters", json!({"principal": "bob", "principal_type": "user", "table": "people", "predicate": "region = 'US'"}));
    let alice_mask = a.admin("POST", "/admin/column-masks", json!({"principal": "analysts", "principal_type": "group", "table": "people", "column": "email", "expression": "'***'"}));
    a.admin("POST", "/admin/column-masks", json!({"principal": "bob", "principal_type": "user", "table": "people", "column": "email", "expression": "left(email, 2) || '…'"}));

    let sql = "SELECT id, name, email FROM people ORDER BY id";
    let r = alice.rows(sql);
    assert_eq!(ids(&r), vec![1, 3], "{r}");
    assert_eq!(col(&r, 2), vec!["***", "***"]);
    assert_eq!(r["endpoint"], "a1");
    assert_eq!(r["rule"], "user-default");
    assert_eq!(r["column_types"], json!(["INTEGER", "VARCHAR", "VARCHAR"]));
    assert_eq!(r["row_count"], 2);
    let r = bob.rows(sql);
    assert_eq!(ids(&r), vec![2, 4], "{r}");
    assert_eq!(col(&r, 2), vec!["bo…", "da…"]);
    assert_eq!(r["endpoint"], "local");
    assert_eq!(r["rule"], "no-assignment");

    // The user's own conditions are AND-ed with the filter; aliases and
    // subqueries do not unmask.
    let r = alice.rows("SELECT p.id, p.email AS e FROM (SELECT * FROM people) p WHERE 1=1 OR p.region = 'US' ORDER BY 1");
    assert_eq!(ids(&r), vec![1, 3]);
    assert_eq!(col(&r, 1), vec!["***", "***"]);

    // Refusals: ungranted table, a file reader, several statements, not a query.
    let r = alice.query("SELECT * FROM secrets");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["code"], "ACCESS_DENIED");
    assert!(r.json()["error"].as_str().unwrap().contains("secrets"));
    let r = alice.query("SELECT * FROM read_csv('/etc/passwd')");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["code"], "SQL_REFUSED");
    assert!(r.text().contains("read_csv"), "{}", r.text());
    let r = alice.query("SELECT 1; SELECT 2");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("2 statements"), "{}", r.text());
    let r = bob.query("DROP TABLE people");
    assert_eq!(r.status, 400);
    // A literal the printer would write back unclosed (DuckDB would then run
    // the second literal's text as SQL): refused on both the remote and the
    // local path, and a quote written the ordinary way still reads back.
    for who in [&alice, &bob] {
        let r = who
            .query(r"SELECT 'x\''', ' UNION ALL SELECT id, payload FROM secrets --' FROM people");
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["code"], "SQL_REFUSED");
        assert!(!r.text().contains("payload\""), "{}", r.text());
        let r = who.rows("SELECT 'it''s' AS v FROM people ORDER BY id LIMIT 1");
        assert_eq!(col(&r, 0), vec!["it's"]);
    }
    let denied = s.gw.wait_log("audit", |v| {
        v["decision"] == "denied" && v["reason"].as_str().unwrap_or("").contains("secrets")
    });
    assert_eq!(denied["user"], "alice");
    assert_eq!(denied["door"], "http");
    let allowed = s.gw.wait_log("audit", |v| {
        v["decision"] == "allowed" && v["user"] == "bob" && v["outcome"] == "answered"
    });
    assert_eq!(allowed["endpoint"], "local");
    assert_eq!(allowed["tables"], "shared.main.people");
    assert_eq!(allowed["rows"], 2);
    assert!(allowed["query_id"].as_str().unwrap().len() >= 32);
    s.gw.wait_log("audit", |v| {
        v["decision"] == "denied" && v["reason"].as_str().unwrap_or("").contains("read_csv")
    });

    // Admin changes apply on the next query: unmask alice's email, and turn
    // her endpoint off (she then runs locally, having no other assignment).
    a.admin(
        "DELETE",
        &format!("/admin/column-masks/{}", alice_mask["id"]),
        Value::Null,
    );
    let r = alice.rows(sql);
    assert_eq!(col(&r, 2), vec!["ann@example.com", "cat@example.com"]);
    a.admin(
        "PATCH",
        "/compute-endpoints/a1",
        json!({"status": "INACTIVE"}),
    );
    let r = alice.rows(sql);
    assert_eq!(r["endpoint"], "local", "{r}");
    assert_eq!(ids(&r), vec![1, 3]);

    // Metrics name the endpoints, the denials and the latencies.
    let m = raw(s.gw.addr, "GET", "/metrics", &[], b"").unwrap().text();
    assert!(
        m.contains("gateway_queries_routed_total{endpoint=\"a1\",rule=\"user-default\"}"),
        "{m}"
    );
    assert!(
        m.contains("gateway_queries_denied_total{reason=\"not_granted\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("gateway_query_duration_seconds_count{endpoint=\"local\"}"),
        "{m}"
    );

    // One shape with new literals: from the second sight on a template answers,
    // with the same rows a full rewrite gives.
    let fills = |m: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix("gateway_rewrite_template_fills_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no template fills in {m}"))
    };
    let before = fills(&raw(s.gw.addr, "GET", "/metrics", &[], b"").unwrap().text());
    for (n, want) in [(0, vec![1, 3]), (1, vec![3]), (2, vec![3]), (3, vec![])] {
        let r = alice.rows(&format!("SELECT id FROM people WHERE id > {n} ORDER BY id"));
        assert_eq!(ids(&r), want, "id > {n}");
    }
    let after = fills(&raw(s.gw.addr, "GET", "/metrics", &[], b"").unwrap().text());
    assert_eq!(
        after - before,
        2,
        "the third and fourth statements were filled"
    );
}

#[test]
fn auth_admin_and_hostile_input() {
    // Also the multi-threaded runtime (the default is one thread).
    let s = setup(&[("MAX_BODY_BYTES", "65536"), ("WORKER_THREADS", "2")]);
    let r = raw(
        s.gw.addr,
        "POST",
        "/v1/query",
        &[],
        br#"{"sql":"SELECT 1"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 401);
    let r = raw(
        s.gw.addr,
        "GET",
        "/compute-endpoints",
        &[("Authorization", "Bearer nope-nope-nope")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 401);
    let eve = user(&s.gw, "eve", &[]);
    let r = eve.req("GET", "/compute-endpoints", None);
    assert_eq!(r.status, 403, "{}", r.text());
    let r = eve.req(
        "POST",
        "/admin/grants",
        Some(json!({"principal": "eve", "principal_type": "user", "table": "secrets"})),
    );
    assert_eq!(r.status, 403);
    // Unknown fields, bad JSON, oversize bodies and SQL.
    let r = eve.req(
        "POST",
        "/v1/query",
        Some(json!({"sql": "SELECT 1", "as_user": "admin"})),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("as_user"));
    let auth = format!("Bearer {}", eve.token);
    let r = raw(
        s.gw.addr,
        "POST",
        "/v1/query",
        &[("Authorization", &auth)],
        b"{\"sql\":",
    )
    .unwrap();
    assert_eq!(r.status, 400);
    let big = json!({ "sql": format!("SELECT '{}'", "x".repeat(70_000)) });
    let r = eve.req("POST", "/v1/query", Some(big));
    assert_eq!(r.status, 413, "{}", r.text());
    let a = admin(&s.gw);
    let r = a.req("POST", "/compute-endpoints", Some(json!({"name": "x", "url": "http://127.0.0.1:1", "type": "REMOTE", "auth_token": "t", "secret": 1})));
    assert_eq!(r.status, 400, "{}", r.text());
    // The endpoint's token is never returned.
    a.admin("POST", "/compute-endpoints", json!({"name": "x", "url": "http://127.0.0.1:1", "type": "REMOTE", "auth_token": "sekrit-token"}));
    let r = a.req("GET", "/compute-endpoints/x", None);
    assert_eq!(r.status, 200);
    assert!(!r.text().contains("sekrit"), "{}", r.text());
    let r = a.req("GET", "/compute-endpoints/nope", None);
    assert_eq!(r.status, 404);
    let h = a.admin("GET", "/compute-endpoints/x/health", Value::Null);
    assert!(h["probe"]["error"].is_string(), "{h}");
    // A query with no table runs anywhere; a query nobody granted does not.
    let r = eve.rows("SELECT 40 + 2 AS answer");
    assert_eq!(r["rows"], json!([[42]]));
    assert_eq!(eve.query("SELECT * FROM people").status, 403);

    // Hostile query strings and paths: every one a 4xx (or an answer), the
    // server unhurt.
    let job = eve.req("POST", "/v1/queries", Some(json!({"sql": "SELECT 1"})));
    assert!((200..300).contains(&job.status), "{}", job.text());
    let id = job.json()["query_id"].as_str().unwrap().to_string();
    for q in [
        "page_token=%a\u{e9}",
        "page_token=%\u{e9}",
        "page_token=\u{e9}%",
        "page_token=%ff%fe",
        "page_token=%00",
        "page_token=%C3",
        "page_token=\u{10348}%2",
        "max_results=%a\u{e9}",
        "wait_ms=\u{e9}",
        "page_token=MTA%3D&page_token=%",
    ] {
        for path in [
            format!("/v1/queries/{id}/results?{q}"),
            format!("/v1/queries/{id}?{q}"),
            format!("/v1/queries/%a\u{e9}/results?{q}"),
        ] {
            let r = raw(s.gw.addr, "GET", &path, &[("Authorization", &auth)], b"").unwrap();
            assert!(
                (400..500).contains(&r.status) || r.status == 200,
                "{path}: {} {}",
                r.status,
                r.text()
            );
        }
    }
    assert_eq!(eve.rows("SELECT 1 AS still")["rows"], json!([[1]]));
}

#[test]
fn lifecycle_pages_cancel_delete_and_isolation() {
    let s = setup(&[]);
    let agent = start_agent(&s.db, &[]);
    let a = admin(&s.gw);
    let alice = user(&s.gw, "alice", &[]);
    let bob = user(&s.gw, "bob", &[]);
    add_endpoint(&a, "a1", &agent);
    assign(&a, "a1", "alice", false);
    a.admin(
        "POST",
        "/admin/grants",
        json!({"principal": "alice", "principal_type": "user", "table": "big"}),
    );

    let r = alice.req(
        "POST",
        "/v1/queries",
        Some(json!({"sql": "SELECT n FROM big ORDER BY n"})),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["query_id"].as_str().unwrap().to_string();
    let st = alice
        .req("GET", &format!("/v1/queries/{id}?wait_ms=20000"), None)
        .json();
    assert_eq!(st["status"], "SUCCEEDED", "{st}");
    assert_eq!(st["endpoint"], "a1");
    assert_eq!(st["row_count"], 25000);
    // Another user's id is not found, whatever the route.
    assert_eq!(
        bob.req("GET", &format!("/v1/queries/{id}"), None).status,
        404
    );
    assert_eq!(
        bob.req("GET", &format!("/v1/queries/{id}/results"), None)
            .status,
        404
    );
    assert_eq!(
        bob.req("POST", &format!("/v1/queries/{id}/cancel"), None)
            .status,
        404
    );
    assert_eq!(
        bob.req("DELETE", &format!("/v1/queries/{id}"), None).status,
        404
    );
    // Pages in order; a retried page is the same page.
    let mut next: Option<String> = None;
    let mut seen = 0i64;
    let mut pages = 0;
    loop {
        let path = match &next {
            None => format!("/v1/queries/{id}/results?max_results=7000"),
            Some(t) => format!("/v1/queries/{id}/results?max_results=7000&page_token={t}"),
        };
        let r = alice.req("GET", &path, None);
        assert_eq!(r.status, 200, "{}", r.text());
        if pages == 1 {
            let again = alice.req("GET", &path, None);
            assert_eq!(again.body, r.body);
        }
        let p = r.json();
        assert!(p.to_string().find(&agent.addr.to_string()).is_none());
        let rows = p["rows"].as_array().unwrap();
        assert!(rows.len() <= 5000);
        for row in rows {
            assert_eq!(row[0].as_i64().unwrap(), seen);
            seen += 1;
        }
        pages += 1;
        match p["next_page_token"].as_str() {
            Some(t) => next = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, 25000);
    assert_eq!(pages, 5);
    // As on the agent, any page can be read again, in any order: the token
    // is the row offset ("OTk5OQ==" is row 9999).
    let r = alice.req(
        "GET",
        &format!("/v1/queries/{id}/results?page_token=OTk5OQ%3D%3D&max_results=3"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let p = r.json();
    assert_eq!(p["rows"], json!([[9999], [10000], [10001]]), "{p}");
    assert_eq!(p["row_count"], 25000);
    assert_eq!(p["next_page_token"], "MTAwMDI=");
    let first = alice
        .req(
            "GET",
            &format!("/v1/queries/{id}/results?max_results=2"),
            None,
        )
        .json();
    assert_eq!(first["rows"], json!([[0], [1]]), "{first}");
    let last = alice
        .req(
            "GET",
            &format!("/v1/queries/{id}/results?page_token=MjQ5OTk%3D"),
            None,
        )
        .json();
    assert_eq!(last["rows"], json!([[24999]]), "{last}");
    assert!(last.get("next_page_token").is_none(), "{last}");
    // A token that is not an offset is refused.
    let r = alice.req(
        "GET",
        &format!("/v1/queries/{id}/results?page_token=nope"),
        None,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        alice
            .req("DELETE", &format!("/v1/queries/{id}"), None)
            .status,
        200
    );
    assert_eq!(
        alice.req("GET", &format!("/v1/queries/{id}"), None).status,
        404
    );
    s.gw.wait_log("audit", |v| {
        v["query_id"] == id.as_str() && v["outcome"] == "answered" && v["rows"] == 25000
    });

    // Cancel a long query: CANCELED, no results; the agent's job goes away.
    let r = alice.req(
        "POST",
        "/v1/queries",
        Some(json!({"sql": "SELECT sum(hash(a.n * b.n + c.n)) FROM big a, big b, big c"})),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["query_id"].as_str().unwrap().to_string();
    let st = alice
        .req("GET", &format!("/v1/queries/{id}?wait_ms=300"), None)
        .json();
    assert_eq!(st["status"], "RUNNING", "{st}");
    assert_eq!(
        alice
            .req("GET", &format!("/v1/queries/{id}/results"), None)
            .status,
        409
    );
    let c = alice
        .req("POST", &format!("/v1/queries/{id}/cancel"), None)
        .json();
    assert_eq!(c["status"], "CANCELED");
    let r = alice.req("GET", &format!("/v1/queries/{id}/results"), None);
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["code"], "QUERY_NOT_AVAILABLE");
    eventually("the agent's job is canceled and gone", || {
        let h = raw(agent.addr, "GET", "/health", &[], b"").unwrap().json();
        h["active_queries"] == 0 && h["queued_jobs"] == 0
    });
    // The audit line says canceled (the running task was aborted), not abandoned.
    let line = s.gw.wait_log("audit", |v| v["query_id"] == id.as_str());
    assert_eq!(line["outcome"], "canceled", "{line}");
    assert_eq!(line["decision"], "allowed");
    assert_eq!(
        s.gw.log_lines("audit")
            .iter()
            .filter(|v| v["query_id"] == id.as_str())
            .count(),
        1
    );
    // Deleting a running job says deleted.
    let r = alice.req(
        "POST",
        "/v1/queries",
        Some(json!({"sql": "SELECT sum(hash(a.n * b.n + c.n)) FROM big a, big b, big c"})),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let gone = r.json()["query_id"].as_str().unwrap().to_string();
    assert_eq!(
        alice
            .req("DELETE", &format!("/v1/queries/{gone}"), None)
            .status,
        200
    );
    let line = s.gw.wait_log("audit", |v| v["query_id"] == gone.as_str());
    assert_eq!(line["outcome"], "deleted", "{line}");
    // Denials answer the submit itself.
    let r = alice.req(
        "POST",
        "/v1/queries",
        Some(json!({"sql": "SELECT * FROM secrets"})),
    );
    assert_eq!(r.status, 403);
}

#[test]
fn an_agent_killed_mid_test_falls_back_or_fails_as_assigned() {
    let s = setup(&[]);
    let mut agent = start_agent(&s.db, &[]);
    let a = admin(&s.gw);
    let carl = user(&s.gw, "carl", &["staff"]);
    let dora = user(&s.gw, "dora", &["staff"]);
    add_endpoint(&a, "a1", &agent);
    assign(&a, "a1", "carl", true);
    assign(&a, "a1", "dora", false);
    a.admin(
        "POST",
        "/admin/grants",
        json!({"principal": "staff", "principal_type": "group", "schema": "main"}),
    );
    let sql = "SELECT count(*) AS n FROM people";
    assert_eq!(carl.rows(sql)["endpoint"], "a1");
    assert_eq!(dora.rows(sql)["endpoint"], "a1");
    agent.kill();
    // A query sent in the very moment of the crash may go out on a pooled
    // connection the crash is closing: it may have started, so it fails
    // rather than run again (tests/fleet.rs). A moment later the pool knows.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let r = carl.rows(sql);
    assert_eq!(r["endpoint"], "local", "{r}");
    assert_eq!(r["rule"], "fallback-local");
    assert_eq!(r["rows"], json!([[4]]));
    let r = dora.query(sql);
    assert!(
        r.status == 502 || r.status == 503,
        "{} {}",
        r.status,
        r.text()
    );
    assert!(r.text().contains("a1"), "{}", r.text());
    let line =
        s.gw.wait_log("audit", |v| v["user"] == "carl" && v["fallback"] == true);
    assert_eq!(line["endpoint"], "local");
    assert!(line["routing"].as_str().unwrap().contains("a1"), "{line}");
    s.gw.wait_log("audit", |v| v["user"] == "dora" && v["outcome"] == "failed");
    let m = raw(s.gw.addr, "GET", "/metrics", &[], b"").unwrap().text();
    assert!(!m.contains("gateway_fallbacks_total 0"), "{m}");
}

/// 5M rows: far more than the gateway, the agent client and the sockets
/// buffer between the agent and a caller that has read only the start.
const MANY_ROWS: &str = "SELECT a.n AS a, b.n AS b FROM big a, big b WHERE b.n < 200";

#[test]
fn pages_are_reread_within_the_window_and_gone_beyond_it() {
    let s = setup(&[]);
    let agent = start_agent(&s.db, &[]);
    let a = admin(&s.gw);
    let fay = user(&s.gw, "fay", &[]);
    add_endpoint(&a, "a1", &agent);
    assign(&a, "a1", "fay", false);
    a.admin(
        "POST",
        "/admin/grants",
        json!({"principal": "fay", "principal_type": "user", "table": "big"}),
    );
    let r = fay.req("POST", "/v1/queries", Some(json!({ "sql": MANY_ROWS })));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["query_id"].as_str().unwrap().to_string();
    let st = fay
        .req("GET", &format!("/v1/queries/{id}?wait_ms=60000"), None)
        .json();
    assert_eq!(st["status"], "SUCCEEDED", "{st}");
    assert_eq!(st["row_count"], 5_000_000);
    // Skip ahead to row 1,000,000 ("MTAwMDAwMA=="): the rows before it are
    // pulled through, and only the last few MiB of them are kept.
    let p = fay
        .req(
            "GET",
            &format!("/v1/queries/{id}/results?page_token=MTAwMDAwMA%3D%3D&max_results=2"),
            None,
        )
        .json();
    assert_eq!(p["rows"].as_array().unwrap().len(), 2, "{p}");
    assert_eq!(p["next_page_token"], "MTAwMDAwMg==");
    // Re-reading a recent row works; row 0 is gone, and the answer says so.
    let again = fay.req(
        "GET",
        &format!("/v1/queries/{id}/results?page_token=OTk5OTk5&max_results=1"),
        None,
    );
    assert_eq!(again.status, 200, "{}", again.text());
    let r = fay.req("GET", &format!("/v1/queries/{id}/results"), None);
    assert_eq!(r.status, 410, "{}", r.text());
    assert_eq!(r.json()["code"], "PAGE_GONE");
    assert!(r.text().contains("no longer held"), "{}", r.text());
    assert_eq!(
        fay.req("DELETE", &format!("/v1/queries/{id}"), None).status,
        200
    );
    let line = s.gw.wait_log("audit", |v| v["query_id"] == id.as_str());
    assert_eq!(line["outcome"], "deleted", "{line}");
}

#[test]
fn a_stream_cut_by_the_engine_is_never_a_valid_answer() {
    use std::io::{BufRead, BufReader, Read, Write};
    let s = setup(&[]);
    let mut agent = start_agent(&s.db, &[]);
    let a = admin(&s.gw);
    let gus = user(&s.gw, "gus", &[]);
    add_endpoint(&a, "a1", &agent);
    assign(&a, "a1", "gus", false);
    a.admin(
        "POST",
        "/admin/grants",
        json!({"principal": "gus", "principal_type": "user", "table": "big"}),
    );
    let body = serde_json::to_vec(&json!({ "sql": MANY_ROWS })).unwrap();
    let mut conn = std::net::TcpStream::connect(s.gw.addr).unwrap();
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        conn,
        "POST /v1/query HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
        gus.token,
        body.len()
    )
    .unwrap();
    conn.write_all(&body).unwrap();
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut chunked = false;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.trim_end().is_empty() {
            break;
        }
        chunked |= line
            .to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked");
    }
    assert!(chunked, "a streamed answer is chunked");
    // Read the first chunk (the head and the first rows), then the engine dies.
    let mut text = Vec::new();
    let read_chunk =
        |r: &mut BufReader<std::net::TcpStream>, text: &mut Vec<u8>| -> Option<usize> {
            let mut size = String::new();
            if r.read_line(&mut size).ok()? == 0 {
                return None;
            }
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            text.extend_from_slice(&chunk[..n]);
            Some(n)
        };
    assert!(read_chunk(&mut r, &mut text).is_some_and(|n| n > 0));
    agent.kill();
    let mut last_chunk = false;
    while let Some(n) = read_chunk(&mut r, &mut text) {
        if n == 0 {
            last_chunk = true;
            break;
        }
    }
    let text = String::from_utf8_lossy(&text).into_owned();
    assert!(!last_chunk, "the chunked stream must be aborted, not ended");
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "a cut answer must not parse: ...{}",
        &text[text.len().saturating_sub(300)..]
    );
    assert!(text.starts_with("{\"query_id\":"), "{}", &text[..100]);
    assert!(
        !text.contains("\"row_count\""),
        "no row count: the rows are not all there"
    );
    // The body ends with why, after the rows (and no closing brace).
    let tail = &text[text.len().saturating_sub(600)..];
    assert!(tail.contains("],\"error\":"), "{tail}");
    assert!(tail.ends_with("\"code\":\"ENGINE_UNREACHABLE\""), "{tail}");
    let line = s.gw.wait_log("audit", |v| v["user"] == "gus");
    assert_eq!(line["outcome"], "failed", "{line}");
}

#[test]
fn local_compute_answers_the_functions_the_agent_answers() {
    let s = setup(&[]);
    let agent = start_agent(&s.db, &[]);
    let a = admin(&s.gw);
    let rita = user(&s.gw, "rita", &[]);
    let lou = user(&s.gw, "lou", &[]);
    add_endpoint(&a, "a1", &agent);
    assign(&a, "a1", "rita", false);
    // Both engines link DuckDB's icu extension (duckdb-icu/), loaded although
    // neither may load an extension from disk or the network, and both run
    // in UTC (DUCKDB_TIME_ZONE's default on each): the same answers, row for
    // row, for the current date, time zones, TIMESTAMPTZ casts and
    // arithmetic, date_trunc, collations and icu's table functions.
    for sql in [
        "SELECT current_date, today(), current_date = CAST(now() AS DATE)",
        "SELECT now() IS NOT NULL, strftime(now(), '%Y') >= '2024'",
        "SELECT now() AT TIME ZONE 'Europe/Amsterdam' > now() AT TIME ZONE 'UTC'",
        "SELECT TIMESTAMPTZ '2026-01-15 23:30:00+00' AT TIME ZONE 'Europe/Amsterdam'",
        "SELECT TIMESTAMPTZ '2026-01-15 12:00:00+00'::VARCHAR, (TIMESTAMPTZ '2026-01-15 23:30:00+00')::DATE",
        "SELECT date_trunc('day', TIMESTAMPTZ '2026-01-15 23:30:00+00'), date_trunc('month', TIMESTAMP '2026-01-15 23:30:00')",
        "SELECT TIMESTAMPTZ '2026-03-28 11:00:00+00' + INTERVAL 1 DAY",
        "SELECT w FROM (VALUES ('zebra'), ('Äpfel'), ('apfel'), ('Zucker')) t(w) ORDER BY w COLLATE de",
        "SELECT name, abbrev FROM pg_timezone_names() WHERE name = 'Europe/Amsterdam'",
        "SELECT count(*) > 5 FROM icu_calendar_names()",
    ] {
        let remote = rita.query(sql);
        let local = lou.query(sql);
        assert_eq!(remote.status, 200, "{sql}: remote {}", remote.text());
        assert_eq!(local.status, 200, "{sql}: local {}", local.text());
        let (remote, local) = (remote.json(), local.json());
        assert_eq!(remote["endpoint"], "a1");
        assert_eq!(local["endpoint"], "local");
        assert_eq!(remote["rows"], local["rows"], "{sql}");
        assert_eq!(remote["column_types"], local["column_types"], "{sql}");
    }
    // What icu computes, checked once (both engines agreed above): 23:30 UTC
    // is already the next day in Amsterdam, not in the engines' UTC.
    let r = rita.rows(
        "SELECT TIMESTAMPTZ '2026-01-15 23:30:00+00' AT TIME ZONE 'Europe/Amsterdam', \
         (TIMESTAMPTZ '2026-01-15 23:30:00+00')::DATE",
    );
    assert_eq!(r["rows"], json!([["2026-01-16T00:30:00", "2026-01-15"]]));
    let r = lou
        .rows("SELECT w FROM (VALUES ('zebra'), ('Äpfel'), ('apfel')) t(w) ORDER BY w COLLATE de");
    assert_eq!(r["rows"], json!([["apfel"], ["Äpfel"], ["zebra"]]));
    // The statement of the issue answers on both (the two runs' clocks
    // differ, so only the date is compared).
    let sql = "SELECT current_date, now() AT TIME ZONE 'Europe/Amsterdam'";
    let (remote, local) = (rita.rows(sql), lou.rows(sql));
    assert_eq!(remote["rows"][0][0], local["rows"][0][0]);
    assert_eq!(remote["column_types"], json!(["DATE", "TIMESTAMP"]));
    assert_eq!(local["column_types"], remote["column_types"]);
}

/// DUCKDB_TIME_ZONE on the gateway's local compute and on an agent: both
/// compute and render in Amsterdam's zone, identically.
#[test]
fn the_time_zone_setting_applies_to_local_compute_and_agents_alike() {
    let s = setup(&[("DUCKDB_TIME_ZONE", "Europe/Amsterdam")]);
    let agent = start_agent(&s.db, &[("DUCKDB_TIME_ZONE", "Europe/Amsterdam")]);
    let a = admin(&s.gw);
    let rita = user(&s.gw, "rita", &[]);
    let lou = user(&s.gw, "lou", &[]);
    add_endpoint(&a, "a1", &agent);
    assign(&a, "a1", "rita", false);
    let sql = "SELECT TIMESTAMPTZ '2026-01-15 12:00:00+00'::VARCHAR, \
               TIMESTAMPTZ '2026-07-15 12:00:00+00'::VARCHAR, \
               (TIMESTAMPTZ '2026-01-15 23:30:00+00')::DATE, \
               date_trunc('day', TIMESTAMPTZ '2026-01-15 23:30:00+00'), \
               TIMESTAMP '2026-07-01 12:00:00'::TIMESTAMPTZ";
    let want = json!([[
        "2026-01-15 13:00:00+01",
        "2026-07-15 14:00:00+02",
        "2026-01-16",
        "2026-01-15T23:00:00Z",
        "2026-07-01T10:00:00Z"
    ]]);
    let remote = rita.rows(sql);
    let local = lou.rows(sql);
    assert_eq!(remote["endpoint"], "a1");
    assert_eq!(local["endpoint"], "local");
    assert_eq!(remote["rows"], want, "agent");
    assert_eq!(local["rows"], want, "local compute");
    // A statement cannot move either engine to another zone: both are locked.
    for c in [&rita, &lou] {
        let r = c.query("SET TimeZone = 'UTC'");
        assert_ne!(r.status, 200, "{}", r.text());
        let r = c.rows("SELECT TIMESTAMPTZ '2026-01-15 12:00:00+00'::VARCHAR");
        assert_eq!(r["rows"], json!([["2026-01-15 13:00:00+01"]]));
    }
}

/// An engine whose own catalog defines a macro named like an allowed
/// function (here a temporary `lower` that reads `secrets`, which DuckDB
/// resolves before the built-in) never has that name called through the
/// gateway: the catalog read lists the engine's own functions, and the
/// rewriter refuses a call that could reach one. The same text on an agent
/// without the macro answers.
#[test]
fn an_engines_own_macro_never_stands_in_for_an_allowed_function() {
    let s = setup(&[]);
    let dir = scratch_dir("macro-init");
    let init = dir.join("init.sql");
    std::fs::write(
        &init,
        format!(
            "ATTACH IF NOT EXISTS '{}' AS shared (READ_ONLY); USE shared; \
             CREATE TEMP MACRO lower(x) AS (SELECT max(k) FROM shared.main.secrets);",
            s.db.display()
        ),
    )
    .unwrap();
    let rogue = start_agent(&s.db, &[("DUCKDB_INIT_SQL", init.to_str().unwrap())]);
    let plain = start_agent(&s.db, &[]);
    let a = admin(&s.gw);
    add_endpoint(&a, "rogue", &rogue);
    add_endpoint(&a, "plain", &plain);
    let rita = user(&s.gw, "rita", &[]);
    let pete = user(&s.gw, "pete", &[]);
    assign(&a, "rogue", "rita", false);
    assign(&a, "plain", "pete", false);
    for who in ["rita", "pete"] {
        a.admin(
            "POST",
            "/admin/grants",
            json!({"principal": who, "principal_type": "user", "table": "people"}),
        );
    }
    // The macro is really there: the agent itself answers the secret.
    let direct = raw(
        rogue.addr,
        "POST",
        "/execute",
        &[("X-Agent-Token", AGENT_TOKEN)],
        br#"{"sql":"SELECT lower('X') AS v"}"#,
    )
    .unwrap();
    assert!(direct.text().contains("launch codes"), "{}", direct.text());
    let sql = "SELECT lower(name) AS v FROM people ORDER BY id";
    let r = rita.query(sql);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["code"], "SQL_REFUSED", "{}", r.text());
    assert!(r.text().contains("lower"), "{}", r.text());
    assert!(!r.text().contains("launch"), "{}", r.text());
    let r = pete.rows(sql);
    assert_eq!(col(&r, 0), vec!["ann", "bob", "cat", "dan"]);
}

#[test]
fn null_typed_columns_answer_whole_on_local_compute_and_through_an_agent() {
    // DuckDB types a bare NULL as its own NULL type, which duckdb-rs cannot
    // read: local compute once answered such a result with no rows at all.
    let s = setup(&[]);
    let agent = start_agent(&s.db, &[]);
    let a = admin(&s.gw);
    let rita = user(&s.gw, "rita", &[]);
    let lou = user(&s.gw, "lou", &[]);
    add_endpoint(&a, "a1", &agent);
    assign(&a, "a1", "rita", false);
    for (sql, rows) in [
        ("SELECT NULL AS x, 1 AS y", json!([[null, 1]])),
        (
            "SELECT x, n FROM (VALUES (NULL, 1), (NULL, 2)) t(x, n) ORDER BY n",
            json!([[null, 1], [null, 2]]),
        ),
        (
            "SELECT NULL AS x FROM range(5000)",
            Value::Array(vec![json!([null]); 5000]),
        ),
    ] {
        let remote = rita.rows(sql);
        let local = lou.rows(sql);
        assert_eq!(remote["endpoint"], "a1");
        assert_eq!(local["endpoint"], "local");
        assert_eq!(remote["rows"], rows, "{sql}");
        assert_eq!(local["rows"], rows, "{sql}");
    }
}

#[test]
fn sigterm_drains_streams_in_flight_refuses_new_queries_and_exits_zero() {
    use std::io::{Read, Write};
    let mut s = setup(&[("SHUTDOWN_GRACE", "30s")]);
    let dora = user(&s.gw, "dora", &[]);
    // A large streamed answer, read slowly: in flight when SIGTERM comes.
    let rows = 2_000_000u64;
    let body = serde_json::to_vec(&json!({
        "sql": format!("SELECT i FROM range({rows}) t(i)")
    }))
    .unwrap();
    let mut stream = std::net::TcpStream::connect(s.gw.addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST /v1/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        dora.token,
        body.len()
    )
    .unwrap();
    stream.write_all(&body).unwrap();
    let mut got = vec![0u8; 64 * 1024];
    let n = stream.read(&mut got).unwrap();
    got.truncate(n);
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    s.gw.signal("TERM");
    // New queries: 503, and /health says draining; the process is still up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = dora.query("SELECT 1");
        if r.status == 503 {
            assert_eq!(r.json()["code"], "SHUTTING_DOWN", "{}", r.text());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never refused: {}",
            r.text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let h = raw(s.gw.addr, "GET", "/health", &[], b"").unwrap();
    assert_eq!(h.status, 503);
    assert_eq!(h.json()["status"], "draining");
    assert!(s
        .gw
        .wait_exit(std::time::Duration::from_millis(300))
        .is_none());

    // The stream in flight finishes whole.
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    got.extend_from_slice(&rest);
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.trim_end()
            .ends_with(&format!("\"row_count\":{rows}}}"))
            || text.contains(&format!("\"row_count\":{rows}}}")),
        "the stream was cut: ...{}",
        &text[text.len().saturating_sub(200)..]
    );
    // Then the gateway exits, 0.
    let st =
        s.gw.wait_exit(std::time::Duration::from_secs(20))
            .expect("the gateway did not exit after draining");
    assert_eq!(st.code(), Some(0), "{st:?}");
}
