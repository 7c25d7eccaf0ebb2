//! The feed's limits through the real binary: the retained-results budget,
//! submit + delete churn behind a long query, per-shard overload (a busy
//! shard never turns away work an idle one can run), and a SIGTERM drain that
//! answers every `/execute` in flight.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn submit_rid(c: &mut Client, sql: &str, rid: &str) -> Resp {
    c.post("/queries", &json!({ "sql": sql, "request_id": rid }))
}

#[test]
fn retained_results_stay_within_their_budget() {
    const BUDGET: u64 = 400_000;
    let agent = Agent::start(&[("MAX_RETAINED_BYTES", "400000")]);
    let mut c = agent.client();
    // ~60 KB of JSON each: the budget holds about six.
    let sql = "SELECT i, repeat('x', 1000) AS s FROM range(60) t(i)";
    let (mut ok, mut too_large, mut refused) = (0, 0, 0);
    for _ in 0..20 {
        let r = c.post("/queries", &json!({ "sql": sql }));
        match r.status {
            202 => {
                let id = r.json()["query_id"].as_str().unwrap().to_string();
                let v = c.wait_terminal(&id);
                match v["status"].as_str() {
                    Some("SUCCEEDED") => ok += 1,
                    Some("FAILED") => {
                        assert_eq!(v["error_code"], "RESULT_TOO_LARGE", "{v}");
                        assert!(v["error"].as_str().unwrap().contains("MAX_RETAINED_BYTES"));
                        too_large += 1;
                    }
                    _ => panic!("{v}"),
                }
            }
            429 => {
                r.expect_error(429, "OVERLOADED");
                assert!(r.header("retry-after").is_some());
                refused += 1;
            }
            s => panic!("{s}: {}", r.text()),
        }
        let held = agent.health()["result_bytes"].as_u64().unwrap();
        assert!(held <= BUDGET, "{held} retained over a budget of {BUDGET}");
    }
    assert!(ok >= 3, "ok {ok}");
    assert!(too_large + refused > 0, "the budget never bit");
    // /execute results are not retained: they still run.
    assert_eq!(c.execute("SELECT 1 AS one")["rows"], json!([[1]]));
}

#[test]
fn submit_delete_churn_behind_a_long_query_keeps_the_queue_empty() {
    let agent = Agent::start(&[
        ("SHARDS", "1"),
        ("MAX_CONCURRENT_QUERIES", "1"),
        ("MAX_QUEUED_JOBS", "50"),
    ]);
    let mut c = agent.client();
    let blocker = c.submit(LONG_SQL);
    eventually("blocker runs", || {
        (agent.health()["running_jobs"] == 1).then_some(())
    });
    for i in 0..600 {
        let id = c.submit(&format!("SELECT {i}"));
        let r = c.delete(&format!("/queries/{id}"));
        assert_eq!(r.status, 200, "{}", r.text());
        if i % 100 == 0 {
            let h = agent.health();
            assert_eq!(h["queued_jobs"], 0, "{h}");
            assert_eq!(h["stored_jobs"], 1, "{h}");
        }
    }
    // Never counted against MAX_QUEUED_JOBS: 50 more queue fine.
    for i in 0..50 {
        c.submit(&format!("SELECT {i}"));
    }
    c.post("/queries", &json!({"sql": "SELECT 1"}))
        .expect_error(429, "OVERLOADED");
    c.delete(&format!("/queries/{blocker}"));
}

#[test]
fn a_busy_shard_does_not_turn_away_work_an_idle_shard_can_run() {
    let agent = Agent::start(&[
        ("SHARDS", "2"),
        ("MAX_CONCURRENT_QUERIES", "2"),
        ("MAX_QUEUED_JOBS", "2"),
    ]);
    // One connection, so one receiving shard. Jobs with request ids go where
    // a worker is free like any other work: the second long job runs on the
    // other shard instead of queueing behind the first.
    let mut c = agent.client();
    let long0 = submit_rid(&mut c, LONG_SQL, "busy-0");
    assert_eq!(long0.status, 202);
    let long1 = submit_rid(&mut c, LONG_SQL, "busy-1");
    assert_eq!(long1.status, 202);
    eventually("both shards running", || {
        (agent.health()["running_jobs"] == 2).then_some(())
    });
    // Both busy: the next queues on the receiving shard (its share of
    // MAX_QUEUED_JOBS is one), the one after is refused.
    let queued = submit_rid(&mut c, "SELECT 1", "busy-2");
    assert_eq!(queued.status, 202, "{}", queued.text());
    let r = submit_rid(&mut c, "SELECT 1", "busy-3");
    r.expect_error(429, "OVERLOADED");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // A repeated request id is not new work: answered even now.
    let again = submit_rid(&mut c, LONG_SQL, "busy-0");
    assert_eq!(again.status, 202);
    assert_eq!(again.json()["query_id"], long0.json()["query_id"]);
    assert_eq!(again.json()["status"], "RUNNING");
    // Free one shard (the queued job and one long job go): work from any
    // connection, with a request id or without, runs on the idle one at once.
    for r in [&queued, &long1] {
        let id = r.json()["query_id"].as_str().unwrap().to_string();
        assert_eq!(c.delete(&format!("/queries/{id}")).status, 200);
    }
    // Placement reads the shards' counters: wait until the interrupted
    // statement has handed its worker back.
    eventually("one statement left", || {
        (agent.health()["active_queries"] == 1).then_some(())
    });
    for i in 0..6 {
        let mut fresh = agent.client();
        let t = Instant::now();
        let id = if i % 2 == 0 {
            fresh.submit(&format!("SELECT {i} AS v"))
        } else {
            let r = submit_rid(
                &mut fresh,
                &format!("SELECT {i} AS v"),
                &format!("idle-{i}"),
            );
            assert_eq!(r.status, 202, "{}", r.text());
            r.json()["query_id"].as_str().unwrap().to_string()
        };
        assert_eq!(fresh.wait_terminal(&id)["status"], "SUCCEEDED");
        assert_eq!(fresh.execute("SELECT 2 AS two")["rows"], json!([[2]]));
        assert!(t.elapsed() < Duration::from_secs(10));
    }
    let h = agent.health();
    assert_eq!(
        (h["queued_jobs"].as_u64(), h["running_jobs"].as_u64()),
        (Some(0), Some(1)),
        "{h}"
    );
}

#[test]
fn sigterm_answers_every_execute_in_flight() {
    let agent = Agent::start(&[("SHARDS", "2")]);
    // Statements of about a second each, in flight when the signal arrives.
    let sql = "SELECT count(*) AS n FROM range(150000000) t(i) WHERE hash(i) % 7 = 0";
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let mut c = agent.client();
            std::thread::spawn(move || c.post("/execute", &json!({ "sql": sql })))
        })
        .collect();
    eventually("statements running", || {
        (agent.health()["active_queries"].as_u64() >= Some(2)).then_some(())
    });
    let status = agent.terminate();
    assert!(status.success(), "{status:?}");
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["row_count"], 1);
    }
}
