//! `GET /health` and `GET /metrics`: every runbook field with the right type and value.

mod common;

use common::*;

#[test]
fn health_reports_every_field() {
    let agent = Agent::start(&[("MAX_MEMORY_GB", "2"), ("QUERY_RESULT_TTL", "1m30s")]);
    let mut anon = Client::connect(agent.addr).unwrap();
    let r = anon.get("/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let h = r.json();
    assert_eq!(h["status"], "ok");
    for field in [
        "uptime_seconds",
        "memory_used_mb",
        "active_queries",
        "queued_jobs",
        "running_jobs",
        "completed_jobs",
        "stored_jobs",
        "cleaned_jobs",
        "query_result_ttl_seconds",
        "shards",
    ] {
        assert!(
            h[field].is_u64(),
            "{field} must be a non-negative integer: {h}"
        );
    }
    assert!(
        h["duckdb_version"]
            .as_str()
            .is_some_and(|v| v.starts_with('v')),
        "{h}"
    );
    assert_eq!(h["max_memory_gb"].as_f64(), Some(2.0));
    assert_eq!(h["query_result_ttl_seconds"], 90);
    assert_eq!(h["shards"], 2);
    assert_eq!(h["stored_jobs"], 0);
    eventually("memory_used_mb published", || {
        (agent.health()["memory_used_mb"].as_u64().unwrap() > 0).then_some(())
    });

    // Counters follow the jobs.
    let mut c = agent.client();
    let a = c.submit("SELECT 1");
    let b = c.submit("SELECT 2");
    c.wait_terminal(&a);
    c.wait_terminal(&b);
    let h = agent.health();
    assert_eq!(h["stored_jobs"], 2);
    assert_eq!(h["completed_jobs"], 2);
    assert_eq!(h["queued_jobs"], 0);
    assert_eq!(h["running_jobs"], 0);
    assert_eq!(h["active_queries"], 0);
    c.delete(&format!("/queries/{a}"));
    assert_eq!(agent.health()["stored_jobs"], 1);
    let up = agent.health()["uptime_seconds"].as_u64().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(agent.health()["uptime_seconds"].as_u64().unwrap() > up);
}

#[test]
fn defaults_in_health() {
    let agent = Agent::start(&[]);
    let h = agent.health();
    assert_eq!(
        h["query_result_ttl_seconds"], 600,
        "QUERY_RESULT_TTL defaults to 10m"
    );
    assert_eq!(
        h["max_memory_gb"].as_f64(),
        Some(0.0),
        "unset: DuckDB's own default"
    );
}

#[test]
fn metrics_in_prometheus_text() {
    let agent = Agent::start(&[]);
    let mut c = agent.client();
    c.execute("SELECT 1");
    let id = c.submit("SELECT 2");
    c.wait_terminal(&id);
    c.get("/nope");
    let r = Client::connect(agent.addr).unwrap().get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(value("compute_agent_stored_jobs"), 1.0);
    assert_eq!(value("compute_agent_completed_jobs"), 1.0);
    assert_eq!(value("compute_agent_queued_jobs"), 0.0);
    assert_eq!(value("compute_agent_cleaned_jobs_total"), 0.0);
    assert_eq!(
        value("compute_agent_queue_wait_seconds_count"),
        2.0,
        "one execute + one job waited"
    );
    assert_eq!(value("compute_agent_execution_seconds_count"), 2.0);
    assert_eq!(
        value(r#"compute_agent_request_duration_seconds_count{route="POST /execute"}"#),
        1.0
    );
    assert_eq!(
        value(r#"compute_agent_request_duration_seconds_count{route="POST /queries"}"#),
        1.0
    );
    assert_eq!(
        value(r#"compute_agent_request_duration_seconds_count{route="unmatched"}"#),
        1.0
    );
    assert_eq!(
        value(r#"compute_agent_http_responses_total{route="unmatched",class="4xx"}"#),
        1.0
    );
    assert!(text.contains("# TYPE compute_agent_queue_wait_seconds histogram"));
    assert!(
        text.contains(r#"compute_agent_queue_wait_seconds_bucket{le="+Inf"} 2"#),
        "{text}"
    );
    // Every line is a comment or `name{labels} value`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let v = line.rsplit(' ').next().unwrap();
        assert!(v.parse::<f64>().is_ok(), "bad sample line {line:?}");
    }
}
