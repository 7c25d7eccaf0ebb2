//! The `gateway` scenario against the real compute-gateway in front of real
//! agents: queries go out as `POST /v1/query` with the bearer token, answers
//! are counted by the endpoint that ran them, refusals by status and code,
//! and a failure's times in the failure log line up with an agent killed at
//! a known wall-clock moment.

mod common;

use common::{assert_counts_add_up, run_json, Agent, Gateway, GATEWAY_USER_TOKEN};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const LIMIT: Duration = Duration::from_secs(60);

fn args<'a>(url: &'a str, token: &'a str, wl: &'a str, duration: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--scenario",
        "gateway",
        "--url",
        url,
        "--token",
        token,
        "--workload",
        wl,
        "--rate",
        "40",
        "--duration",
        duration,
        "--warmup",
        "300ms",
        "--connections",
        "8",
        "--sample-interval",
        "100ms",
    ]
}

fn workload(name: &str, text: &str) -> String {
    let p = common::tmp_path(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn gateway_queries_are_counted_by_endpoint_and_refusals_by_code() {
    let _turn = common::serial();
    let agent = Agent::start(&[]);
    let gw = Gateway::start(&[&agent]);
    let url = gw.url();
    // Every text its own ({seq}), and one statement the policy refuses.
    let wl = workload(
        "gateway.toml",
        "[[statement]]\nname = \"own-text\"\nsql = \"SELECT {seq} AS n\"\nweight = 3\n\n\
         [[statement]]\nname = \"not-granted\"\nsql = \"SELECT * FROM no_such_table\"\nweight = 1\n",
    );
    let (code, r, stdout) = run_json(&args(&url, GATEWAY_USER_TOKEN, &wl, "1500ms"), LIMIT);
    assert!(code == 0 || code == 1, "exit {code}: {stdout}");
    assert_counts_add_up(&r);
    let ops = &r["ops"];
    let sent = ops["sent"].as_u64().unwrap();
    assert!((50..=70).contains(&sent), "sent {sent}");
    let ok = ops["succeeded"].as_u64().unwrap();
    let refused = ops["failed_by"]["gateway: POST /v1/query 403 ACCESS_DENIED"]
        .as_u64()
        .unwrap_or(0);
    assert!(ok > 0 && refused > 0, "{}", ops);
    assert_eq!(refused, ops["failed"].as_u64().unwrap(), "{}", ops);
    let route = &r["requests"]["POST /v1/query"]["by_outcome"];
    assert_eq!(route["200"].as_u64().unwrap(), ok, "{route}");
    assert_eq!(route["403 ACCESS_DENIED"].as_u64().unwrap(), refused);
    // Each answer came from the one agent and carried its one row.
    assert_eq!(
        r["answered_by"]["a1"].as_u64().unwrap(),
        ok,
        "{}",
        r["answered_by"]
    );
    assert_eq!(r["rows_fetched"].as_u64().unwrap(), ok);
    assert_eq!(r["failure_log"].as_array().unwrap().len() as u64, refused);
    let avail = &r["slos"][0];
    assert_eq!(avail["source"], "POST /v1/query responses", "{avail}");
    assert!(stdout.contains("answered by endpoint: a1"), "{stdout}");

    // A token the gateway does not know: every query refused, and counted so.
    let (code, r, _) = run_json(&args(&url, "not-a-user-token", &wl, "1s"), LIMIT);
    assert_eq!(code, 1, "availability must fail");
    assert_counts_add_up(&r);
    let sent = r["ops"]["sent"].as_u64().unwrap();
    assert!(sent > 0);
    assert_eq!(
        r["ops"]["failed_by"]["gateway: POST /v1/query 401 UNAUTHORIZED"]
            .as_u64()
            .unwrap(),
        sent
    );
}

#[test]
fn failure_log_times_line_up_with_a_killed_agent() {
    let _turn = common::serial();
    let mut agent = Agent::start(&[]);
    let gw = Gateway::start(&[&agent]);
    let url = gw.url();
    let wl = workload(
        "answer.toml",
        "[[statement]]\nname = \"n\"\nsql = \"SELECT {seq} AS n\"\n",
    );
    let args = args(&url, GATEWAY_USER_TOKEN, &wl, "2s");
    let run = std::thread::scope(|s| {
        let h = s.spawn(|| run_json(&args, LIMIT));
        // The window opens ~0.35 s after loadgen starts; kill well inside it.
        std::thread::sleep(Duration::from_millis(1300));
        let killed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        agent.kill();
        (h.join().unwrap(), killed.as_secs_f64() * 1e3)
    });
    let ((code, r, _), killed_unix_ms) = run;
    assert_eq!(code, 1, "the only agent died: availability fails");
    assert_counts_add_up(&r);
    let killed_ms = killed_unix_ms - r["window_start_unix_ms"].as_f64().unwrap();
    assert!(
        (0.0..2000.0).contains(&killed_ms),
        "the kill at {killed_ms} ms is not inside the window"
    );
    let log = r["failure_log"].as_array().unwrap();
    assert_eq!(log.len() as u64, r["ops"]["failed"].as_u64().unwrap());
    assert!(!log.is_empty());
    let mut last = f64::MIN;
    for e in log {
        let intended = e["intended_ms"].as_f64().unwrap();
        let done = e["done_ms"].as_f64().unwrap();
        assert!(intended >= last, "log is by intended start");
        last = intended;
        assert!(done >= intended, "{e}");
        assert_eq!(e["kind"], "gateway", "{e}");
        // With the only agent gone nothing can succeed, and nothing failed
        // before it went (a little slack for the two clocks' readings).
        assert!(done >= killed_ms - 50.0, "failed before the kill: {e}");
        let label = e["label"].as_str().unwrap();
        assert!(label.starts_with("POST /v1/query 5"), "{e}");
    }
    // Everything sent well after the kill failed.
    let after: u64 = log
        .iter()
        .filter(|e| e["intended_ms"].as_f64().unwrap() > killed_ms + 100.0)
        .count() as u64;
    assert!(after > 10, "{after} failures logged after the kill");
}
