//! Bounded memory and honest load: TTL cleanup with sub-second Go durations, 429
//! OVERLOADED with Retry-After, RESULT_TOO_LARGE for oversized results.

mod common;

use common::*;
use serde_json::json;

#[test]
fn ttl_cleanup_with_subsecond_durations() {
    let agent = Agent::start(&[
        ("QUERY_RESULT_TTL", "300ms"),
        ("QUERY_CLEANUP_INTERVAL", "100ms"),
    ]);
    let h = agent.health();
    // The contract's integer: whole seconds, rounded down.
    assert_eq!(h["query_result_ttl_seconds"].to_string(), "0");
    assert_eq!(h["cleaned_jobs"], 0);
    let mut c = agent.client();
    let ids: Vec<String> = (0..6)
        .map(|i| c.submit(&format!("SELECT {i} AS i")))
        .collect();
    for id in &ids {
        // The job may already have expired by the time we look: that is also fine.
        let r = c.get(&format!("/queries/{id}?wait_ms=5000"));
        assert!(r.status == 200 || r.status == 404, "{}", r.text());
    }
    eventually("expired jobs cleaned", || {
        let h = agent.health();
        (h["cleaned_jobs"] == 6 && h["stored_jobs"] == 0 && h["completed_jobs"] == 0).then_some(())
    });
    for id in &ids {
        c.get(&format!("/queries/{id}"))
            .expect_error(404, "NOT_FOUND");
    }
    // A resubmit after expiry makes a new job.
    let r = c.request(
        "POST",
        "/queries",
        &[("X-Request-ID", "ttl-r")],
        Some(br#"{"sql":"SELECT 1"}"#),
    );
    let first = r.json()["query_id"].as_str().unwrap().to_string();
    eventually("ttl-r expired", || {
        (agent.health()["cleaned_jobs"] == 7).then_some(())
    });
    let r = c.request(
        "POST",
        "/queries",
        &[("X-Request-ID", "ttl-r")],
        Some(br#"{"sql":"SELECT 1"}"#),
    );
    assert_ne!(r.json()["query_id"].as_str().unwrap(), first);
}

#[test]
fn overload_is_refused_with_429() {
    let agent = Agent::start(&[
        ("SHARDS", "1"),
        ("DUCKDB_THREADS", "1"),
        ("MAX_QUEUED_JOBS", "2"),
        // One worker: the long query holds it, so the others queue.
        ("MAX_CONCURRENT_QUERIES", "1"),
    ]);
    let mut c = agent.client();
    let running = c.submit(LONG_SQL);
    eventually("long query running", || {
        (agent.health()["running_jobs"] == 1).then_some(())
    });
    let mut accepted = vec![running];
    let mut refused = None;
    for i in 0..10 {
        let r = c.request(
            "POST",
            "/queries",
            &[("X-Request-ID", &format!("ov-{i}"))],
            Some(br#"{"sql":"SELECT 1"}"#),
        );
        match r.status {
            202 => accepted.push(r.json()["query_id"].as_str().unwrap().to_string()),
            429 => {
                refused = Some(r);
                break;
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    let r = refused.expect("a submit beyond MAX_QUEUED_JOBS is refused");
    let v = r.expect_error(429, "OVERLOADED");
    assert!(v["request_id"].as_str().unwrap().starts_with("ov-"));
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After seconds");
    assert!(retry >= 1);
    assert_eq!(
        accepted.len(),
        3,
        "the running job plus MAX_QUEUED_JOBS queued ones"
    );
    assert_eq!(agent.health()["queued_jobs"], 2);
    // Nothing was lost: cancelling the long query lets the queued ones finish.
    c.request(
        "POST",
        &format!("/queries/{}/cancel", accepted[0]),
        &[],
        None,
    );
    for id in &accepted[1..] {
        assert_eq!(c.wait_terminal(id)["status"], "SUCCEEDED");
    }
    // And submits are accepted again.
    assert_eq!(c.post("/queries", &json!({"sql": "SELECT 2"})).status, 202);
}

#[test]
fn result_too_large_fails_the_job_not_the_agent() {
    let agent = Agent::start(&[("MAX_RESULT_BYTES", "20000")]);
    let mut c = agent.client();
    let big = "SELECT i, repeat('x', 50) AS s FROM range(100000) t(i)";
    let v = c
        .request(
            "POST",
            "/execute",
            &[("X-Request-ID", "big")],
            Some(serde_json::to_vec(&json!({"sql": big})).unwrap().as_slice()),
        )
        .expect_error(500, "RESULT_TOO_LARGE");
    assert_eq!(v["request_id"], "big");
    assert!(v["error"].as_str().unwrap().contains("20000"), "{v}");

    let id = c.submit(big);
    let st = c.wait_terminal(&id);
    assert_eq!(st["status"], "FAILED");
    assert_eq!(st["error_code"], "RESULT_TOO_LARGE");
    c.get(&format!("/queries/{id}/results"))
        .expect_error(409, "QUERY_NOT_AVAILABLE");
    // Small results are fine, and nothing big is retained.
    assert_eq!(c.execute("SELECT 1 AS one")["rows"], json!([[1]]));
    assert_eq!(agent.health()["active_queries"], 0);
}
