//! Measurements that only mean something against a real agent under real
//! stress: coordinated-omission correction during a stall, SLO verdicts
//! flipping with their thresholds (and with a real leak of stored jobs), and
//! the capacity search bracketing a rate.

mod common;

use common::{http, run_json, Agent, TOKEN};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

fn slo<'a>(r: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    r["slos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == id)
        .unwrap()
}

/// While both shards' only workers are busy with a long query (one worker
/// per shard, so a stall is certain), an open-loop client on one connection
/// keeps scheduling work. Latency from the intended start must
/// show the stall; latency from the actual send must not (only the one
/// request in flight waited). That gap is coordinated omission.
#[test]
fn coordinated_omission_is_visible_during_a_stall() {
    let _turn = common::serial();
    let agent = Agent::start(&[("DUCKDB_THREADS", "1"), ("MAX_CONCURRENT_QUERIES", "2")]);
    let url = agent.url();
    let addr = agent.addr;
    let stall = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let mut ids = Vec::new();
        let long = r#"{"sql": "SELECT count(*) FROM range(1000000000000) t(i) WHERE i % 7 = 3"}"#;
        for _ in 0..16 {
            let (code, body) = http(addr, "POST", "/queries", Some(long)).unwrap();
            assert_eq!(code, 202, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            ids.push(v["query_id"].as_str().unwrap().to_string());
            std::thread::sleep(Duration::from_millis(100));
            if common::health(addr)["running_jobs"].as_u64().unwrap_or(0) >= 2 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(1500));
        for id in &ids {
            http(addr, "DELETE", &format!("/queries/{id}"), None).unwrap();
        }
        ids.len()
    });
    let (_, r, _) = run_json(
        &[
            "run",
            "--scenario",
            "execute",
            "--sql",
            "SELECT 1",
            "--url",
            &url,
            "--token",
            TOKEN,
            "--rate",
            "50",
            "--duration",
            "5s",
            "--warmup",
            "500ms",
            "--connections",
            "1",
            "--threads",
            "1",
        ],
        LIMIT,
    );
    stall.join().unwrap();
    common::assert_counts_add_up(&r);
    let k = &r["ops"]["by_kind"]["execute"];
    let c99 = k["latency"]["p99_ms"].as_f64().unwrap();
    let cmax = k["latency"]["max_ms"].as_f64().unwrap();
    let u99 = k["latency_uncorrected"]["p99_ms"].as_f64().unwrap();
    let u90 = k["latency_uncorrected"]["p90_ms"].as_f64().unwrap();
    let c90 = k["latency"]["p90_ms"].as_f64().unwrap();
    assert!(
        cmax >= 1000.0,
        "corrected max {cmax} ms should include the ~1.5 s stall"
    );
    assert!(c99 >= 700.0, "corrected p99 {c99} ms");
    assert!(
        c99 > 5.0 * u99,
        "corrected p99 {c99} ms vs uncorrected {u99} ms"
    );
    assert!(c90 > u90, "corrected p90 {c90} vs uncorrected {u90}");
}

#[test]
fn slo_verdicts_flip_with_thresholds() {
    let _turn = common::serial();
    let agent = Agent::start(&[]);
    let url = agent.url();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--scenario",
            "lifecycle",
            "--sql",
            "SELECT 1",
            "--url",
            &url,
            "--token",
            TOKEN,
            "--rate",
            "20",
            "--duration",
            "2s",
            "--warmup",
            "300ms",
            "--sample-interval",
            "100ms",
        ];
        args.extend_from_slice(extra);
        run_json(&args, LIMIT)
    };
    // Generous thresholds (and stored-jobs slack: a stall of a loaded machine
    // piles up in-flight jobs for a moment, which is not a leak) all pass.
    let (code, r, out) = run(&[
        "--slo-completion-p95",
        "10s",
        "--slo-queue-p95",
        "5s",
        "--slo-stored-slack",
        "1000",
    ]);
    assert_eq!(code, 0, "{out}");
    for id in [
        "availability",
        "queue_p95",
        "completion_p95",
        "stored_jobs_bounded",
    ] {
        assert_eq!(slo(&r, id)["status"], "pass", "{id}: {}", slo(&r, id));
    }
    assert!(slo(&r, "queue_p95")["source"]
        .as_str()
        .unwrap()
        .contains("/metrics"));

    // Thresholds below what was just measured: the same load now fails.
    let (code, r, _) = run(&["--slo-completion-p95", "1us", "--slo-queue-p95", "1ns"]);
    assert_eq!(code, 1);
    assert_eq!(slo(&r, "completion_p95")["status"], "fail");
    assert_eq!(slo(&r, "queue_p95")["status"], "fail");
    assert_eq!(slo(&r, "availability")["status"], "pass");
    assert_eq!(r["passed"], false);

    // A real leak: jobs kept instead of deleted make stored_jobs climb.
    let (code, r, _) = run(&[
        "--keep-jobs",
        "--slo-stored-slack",
        "10",
        "--slo-completion-p95",
        "10s",
        "--slo-queue-p95",
        "5s",
    ]);
    let s = slo(&r, "stored_jobs_bounded");
    assert_eq!(code, 1, "{s} {}", r["agent"]["health_samples"]);
    assert_eq!(s["status"], "fail", "{s}");
    assert!(r["agent"]["stored_jobs"]["slope_per_s"].as_f64().unwrap() > 5.0);
}

#[test]
fn capacity_search_terminates_between_its_bounds() {
    let _turn = common::serial();
    let agent = Agent::start(&[("DUCKDB_THREADS", "1")]);
    let url = agent.url();
    // ~10-30 ms of DuckDB work per statement on one thread per shard: a
    // capacity of tens of operations per second, reached within a few steps.
    let (code, r, out) = run_json(
        &[
            "capacity",
            "--scenario",
            "execute",
            "--sql",
            "SELECT sum(i * i) FROM range(3000000) t(i)",
            "--url",
            &url,
            "--token",
            TOKEN,
            "--start-rate",
            "5",
            "--max-rate",
            "1280",
            "--factor",
            "4",
            "--precision",
            "0.5",
            "--max-steps",
            "6",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--drain-timeout",
            "3s",
            "--slo-completion-p95",
            "250ms",
            "--connections",
            "256",
            "--settle-timeout",
            "10s",
        ],
        LIMIT,
    );
    assert!(code == 0 || code == 1, "{out}");
    let steps = r["steps"].as_array().unwrap();
    assert!(!steps.is_empty() && steps.len() <= 6);
    let lower = r["lower_bound"].as_f64();
    let upper = r["upper_bound"].as_f64();
    assert!(lower.is_some() || upper.is_some());
    assert_eq!(r["capacity"].as_f64(), lower);
    if let (Some(l), Some(u)) = (lower, upper) {
        assert!(l < u, "{l} < {u}");
    }
    for s in steps {
        let rate = s["rate"].as_f64().unwrap();
        if s["passed"].as_bool().unwrap() {
            assert!(
                rate <= lower.unwrap(),
                "passing step {rate} above lower bound"
            );
        } else {
            assert!(
                rate >= upper.unwrap(),
                "failing step {rate} below upper bound"
            );
            assert!(!s["failing"].as_array().unwrap().is_empty());
        }
        common::assert_counts_add_up(&s["report"]);
    }
    assert!(out.contains("capacity:"), "{out}");
}
