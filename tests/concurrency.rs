//! Many connections at once: idempotent submits racing across connections (and so
//! across shards), hundreds of concurrent jobs with none lost, prompt cancel of a
//! long query, and long-polls that return as soon as the job is terminal.

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
