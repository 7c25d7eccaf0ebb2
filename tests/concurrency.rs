//! Many connections at once: idempotent submits racing across connections (and so
//! across shards) running their statement once, request ids reused after their
//! job left, hostile request ids, hundreds of concurrent jobs with none lost,
//! prompt cancel of a long query, and long-polls that return as soon as the job
//! is terminal.

mod common;

use common::*;
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

#[test]
fn idempotent_submits_race_on_many_connections() {
    let agent = Agent::start(&[]);
    const CONNS: usize = 24;
    for (round, via_header) in [(0, true), (1, false)] {
        let rid = format!("same-request-{round}");
        let barrier = Arc::new(Barrier::new(CONNS));
        let handles: Vec<_> = (0..CONNS)
            .map(|_| {
                let barrier = barrier.clone();
                let mut c = agent.client();
                let rid = rid.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let r = if via_header {
                        let b = serde_json::to_vec(&json!({"sql": "SELECT 11 AS v"})).unwrap();
                        c.request("POST", "/queries", &[("X-Request-ID", &rid)], Some(&b))
                    } else {
                        c.post(
                            "/queries",
                            &json!({"sql": "SELECT 11 AS v", "request_id": rid}),
                        )
                    };
                    assert_eq!(r.status, 202, "{}", r.text());
                    let v = r.json();
                    assert_eq!(v["request_id"], rid.as_str());
                    v["query_id"].as_str().unwrap().to_string()
                })
            })
            .collect();
        let ids: HashSet<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(ids.len(), 1, "one job for one request id: {ids:?}");
        let id = ids.into_iter().next().unwrap();
        let mut c = agent.client();
        assert_eq!(c.wait_terminal(&id)["status"], "SUCCEEDED");
        // A later resubmit still finds it, with its current status.
        let r = c.request(
            "POST",
            "/queries",
            &[("X-Request-ID", &rid)],
            Some(br#"{"sql":"SELECT 11 AS v"}"#),
        );
        assert_eq!(r.status, 202);
        assert_eq!(r.json()["query_id"], id.as_str());
        assert_eq!(r.json()["status"], "SUCCEEDED");
    }
    // Exactly two jobs exist; a new request id makes a new one.
    assert_eq!(agent.health()["stored_jobs"], 2);
    let mut c = agent.client();
    let r = c.request(
        "POST",
        "/queries",
        &[("X-Request-ID", "different")],
        Some(br#"{"sql":"SELECT 1"}"#),
    );
    assert_eq!(r.status, 202);
    assert_eq!(agent.health()["stored_jobs"], 3);
}

/// Sixteen connections (so both shards receive some) submit one request id at
/// the same moment, half as a plain submit, half as a waiting submit with
/// `consume`, round after round: each round's INSERT runs exactly once, and
/// every answer of a round names the same job.
#[test]
fn one_request_id_from_many_connections_runs_its_statement_once() {
    let agent = Agent::start(&[("SHARDS", "2")]);
    agent
        .client()
        .execute("CREATE TABLE once_t (round INTEGER)");
    const CONNS: usize = 16;
    const ROUNDS: usize = 25;
    let barrier = Arc::new(Barrier::new(CONNS));
    let handles: Vec<_> = (0..CONNS)
        .map(|i| {
            let barrier = barrier.clone();
            let mut c = agent.client();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for round in 0..ROUNDS {
                    let rid = format!("once-{round}");
                    let body = json!({"sql": format!("INSERT INTO once_t VALUES ({round})")});
                    let body = serde_json::to_vec(&body).unwrap();
                    let path = if i % 2 == 0 {
                        "/queries"
                    } else {
                        "/queries?wait_ms=5000&consume=true"
                    };
                    barrier.wait();
                    let r = c.request("POST", path, &[("X-Request-ID", &rid)], Some(&body));
                    assert!(matches!(r.status, 200 | 202), "{}", r.text());
                    let v = r.json();
                    assert_eq!(v["request_id"], rid.as_str());
                    if r.status == 200 {
                        assert_eq!(v["status"], "SUCCEEDED", "{v}");
                    }
                    ids.push(v["query_id"].as_str().unwrap().to_string());
                }
                ids
            })
        })
        .collect();
    let per_conn: Vec<Vec<String>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut c = agent.client();
    for round in 0..ROUNDS {
        let ids: HashSet<&String> = per_conn.iter().map(|ids| &ids[round]).collect();
        assert_eq!(
            ids.len(),
            1,
            "round {round}: one job for one request id: {ids:?}"
        );
        let id = ids.into_iter().next().unwrap();
        // Within the consumed grace (5 s) the job is still there.
        assert_eq!(c.wait_terminal(id)["status"], "SUCCEEDED");
    }
    let v = c.execute("SELECT count(*) AS n, count(DISTINCT round) AS rounds FROM once_t");
    assert_eq!(
        v["rows"],
        json!([[ROUNDS, ROUNDS]]),
        "every round's INSERT ran exactly once"
    );
}

/// A request id is remembered only while its job is retained: after a delete,
/// and after the TTL expired the job, the same request id starts a new job
/// (which runs), and the agent keeps no trace of the old ones.
#[test]
fn a_request_id_reused_after_its_job_left_starts_a_new_job() {
    let agent = Agent::start(&[
        ("SHARDS", "2"),
        ("QUERY_RESULT_TTL", "1s"),
        ("QUERY_CLEANUP_INTERVAL", "100ms"),
    ]);
    let mut c = agent.client();
    c.execute("CREATE TABLE reuse_t (k INTEGER)");
    let submit = |c: &mut Client| {
        let r = c.request(
            "POST",
            "/queries",
            &[("X-Request-ID", "reused")],
            Some(br#"{"sql":"INSERT INTO reuse_t VALUES (1)"}"#),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        r.json()["query_id"].as_str().unwrap().to_string()
    };
    let a = submit(&mut c);
    assert_eq!(c.wait_terminal(&a)["status"], "SUCCEEDED");
    assert_eq!(submit(&mut c), a, "a repeat while retained is the same job");
    assert_eq!(c.delete(&format!("/queries/{a}")).status, 200);
    let b = submit(&mut c);
    assert_ne!(b, a, "after a delete: a new job");
    assert_eq!(c.wait_terminal(&b)["status"], "SUCCEEDED");
    // Expiry: the job and its request id go after the TTL.
    eventually("the TTL expires the job", || {
        (c.get(&format!("/queries/{b}")).status == 404).then_some(())
    });
    let d = submit(&mut c);
    assert!(d != a && d != b, "after expiry: a new job");
    assert_eq!(c.wait_terminal(&d)["status"], "SUCCEEDED");
    assert_eq!(
        c.execute("SELECT count(*) FROM reuse_t")["rows"],
        json!([[3]])
    );
    let h = agent.health();
    assert_eq!(h["stored_jobs"], 1, "{h}");
}

/// Hostile request ids get what they got before the request-id index: too
/// large for the head → 431; a control byte → 400 from the parser; bytes that
/// are not UTF-8 are read lossily and still name one job; a 512 KiB body
/// `request_id` full of escapes is accepted and a repeat finds its job.
#[test]
fn hostile_request_ids_get_clear_answers() {
    let agent = Agent::start(&[("SHARDS", "2")]);
    let mut c = agent.client();
    let huge = "h".repeat(32 * 1024);
    c.request(
        "POST",
        "/queries",
        &[("X-Request-ID", &huge)],
        Some(br#"{"sql":"SELECT 1"}"#),
    )
    .expect_error(431, "HEADERS_TOO_LARGE");
    let mut c = agent.client();
    let raw = |c: &mut Client, rid: &[u8]| {
        let body = br#"{"sql":"SELECT 7"}"#;
        let mut req = format!(
            "POST /queries HTTP/1.1\r\nHost: a\r\nX-Agent-Token: {TOKEN}\r\nContent-Length: {}\r\nX-Request-ID: ",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(rid);
        req.extend_from_slice(b"\r\n\r\n");
        req.extend_from_slice(body);
        c.raw_request(&req)
    };
    raw(&mut c, b"ctl-\x01-id").expect_error(400, "BAD_REQUEST");
    let mut c = agent.client();
    let first = raw(&mut c, b"odd-\xff\xfe-\x80");
    assert_eq!(first.status, 202, "{}", first.text());
    let again = raw(&mut agent.client(), b"odd-\xff\xfe-\x80");
    assert_eq!(again.status, 202, "{}", again.text());
    assert_eq!(first.json()["query_id"], again.json()["query_id"]);
    assert_eq!(first.json()["request_id"], "odd-\u{fffd}\u{fffd}-\u{fffd}");
    // A body request id of 512 KiB with quotes, escapes and a NUL.
    let big: String = "\"\\\u{0}é✓".repeat(512 * 1024 / 8);
    let body = serde_json::to_vec(&json!({"sql": "SELECT 8", "request_id": big})).unwrap();
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let r = agent.client().request("POST", "/queries", &[], Some(&body));
            assert_eq!(r.status, 202, "{}", &r.text()[..200.min(r.text().len())]);
            assert_eq!(r.json()["request_id"], big.as_str());
            r.json()["query_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(agent.health()["stored_jobs"], 2);
}

#[test]
fn hundreds_of_concurrent_jobs_none_lost() {
    let agent = Agent::start(&[("SHARDS", "2")]);
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 40;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let mut c = agent.client();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for k in 0..PER_THREAD {
                    let n = t * 1000 + k;
                    let r = c.post("/queries", &json!({"sql": format!("SELECT {n} AS n, {n} * 2 AS d"), "request_id": format!("job-{n}")}));
                    assert_eq!(r.status, 202, "{}", r.text());
                    mine.push((n, r.json()["query_id"].as_str().unwrap().to_string()));
                }
                for (n, id) in &mine {
                    let st = c.wait_terminal(id);
                    assert_eq!(st["status"], "SUCCEEDED", "{st}");
                    let v = c.get(&format!("/queries/{id}/results")).json();
                    assert_eq!(v["rows"], json!([[n, n * 2]]), "job {n}");
                }
                mine
            })
        })
        .collect();
    let all: Vec<(u64, String)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let ids: HashSet<&String> = all.iter().map(|(_, id)| id).collect();
    assert_eq!(
        ids.len() as u64,
        THREADS * PER_THREAD,
        "every job has its own id"
    );
    let h = agent.health();
    assert_eq!(h["stored_jobs"], THREADS * PER_THREAD);
    assert_eq!(h["completed_jobs"], THREADS * PER_THREAD);
    assert_eq!(h["queued_jobs"], 0);
    assert_eq!(h["running_jobs"], 0);
    // Every job is reachable from any connection (cross-shard routing).
    let mut c = agent.client();
    for (_, id) in all.iter().step_by(7) {
        assert_eq!(
            c.get(&format!("/queries/{id}")).json()["status"],
            "SUCCEEDED"
        );
    }
    // Deleting them all empties the tables.
    for (_, id) in &all {
        assert_eq!(c.delete(&format!("/queries/{id}")).status, 200);
    }
    assert_eq!(agent.health()["stored_jobs"], 0);
}

#[test]
fn cancel_of_long_query_frees_the_engine_promptly() {
    let agent = Agent::start(&[("DUCKDB_THREADS", "1")]);
    let mut c = agent.client();
    let id = c.submit(LONG_SQL);
    eventually("query running", || {
        let h = agent.health();
        (h["active_queries"] == 1 && h["running_jobs"] == 1).then_some(())
    });
    // A long-poll on another connection is woken by the cancel.
    let mut poller = agent.client();
    let pid = id.clone();
    let poll = std::thread::spawn(move || {
        let t = Instant::now();
        let v = poller.get(&format!("/queries/{pid}?wait_ms=30000")).json();
        (v, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(200));
    let r = c.request("POST", &format!("/queries/{id}/cancel"), &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "CANCELED");
    let t = Instant::now();
    eventually("active_queries back to 0", || {
        (agent.health()["active_queries"] == 0).then_some(())
    });
    let freed = t.elapsed();
    let h = agent.health();
    assert_eq!(h["running_jobs"], 0);
    assert_eq!(h["completed_jobs"], 1);
    // Generous bound: an uninterrupted scan of 10^12 rows would take hours.
    assert!(
        freed < Duration::from_secs(20),
        "engine freed after {freed:?}"
    );
    let (v, waited) = poll.join().unwrap();
    assert_eq!(v["status"], "CANCELED");
    assert!(
        waited < Duration::from_secs(25),
        "long-poll returned after {waited:?}"
    );
}

#[test]
fn long_poll_returns_early_and_honours_short_waits() {
    let agent = Agent::start(&[("DUCKDB_THREADS", "1")]);
    let mut c = agent.client();

    // Terminal long before the 30 s wait ends.
    let id = c.submit("SELECT 3 AS x");
    let t = Instant::now();
    let v = c.get(&format!("/queries/{id}?wait_ms=30000")).json();
    assert_eq!(v["status"], "SUCCEEDED");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    // Values above the cap are accepted (and capped).
    assert_eq!(
        c.get(&format!("/queries/{id}?wait_ms=999999")).json()["status"],
        "SUCCEEDED"
    );

    // A running job: the wait ends and the current status comes back.
    let long = c.submit(LONG_SQL);
    let t = Instant::now();
    let v = c.get(&format!("/queries/{long}?wait_ms=400")).json();
    assert!(
        matches!(v["status"].as_str(), Some("QUEUED" | "RUNNING")),
        "{v}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(350),
        "returned after {:?}",
        t.elapsed()
    );
    for bad in ["abc", "-1", "1.5"] {
        c.get(&format!("/queries/{long}?wait_ms={bad}"))
            .expect_error(400, "VALIDATION_ERROR");
    }
    assert_eq!(c.delete(&format!("/queries/{long}")).status, 200);
    eventually("engine idle", || {
        (agent.health()["active_queries"] == 0).then_some(())
    });
}
