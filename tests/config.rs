//! Start-up configuration through the real binary: bad values stop it with exit code 2
//! and one line naming the variable; --help lists everything; flags and Go durations
//! work; SIGTERM drains and exits 0.

mod common;

use common::*;

#[test]
fn bad_values_exit_2_naming_the_variable() {
    let cases = [
        ("QUERY_RESULT_TTL", "5"),
        ("QUERY_RESULT_TTL", "ten minutes"),
        ("QUERY_CLEANUP_INTERVAL", "-1s"),
        ("QUERY_CLEANUP_INTERVAL", "1d"),
        ("LISTEN_ADDR", "nonsense"),
        ("LISTEN_ADDR", ":99999"),
        ("MAX_MEMORY_GB", "lots"),
        ("SHARDS", "0"),
        ("DUCKDB_THREADS", "x"),
        ("MAX_QUEUED_JOBS", "-1"),
        ("MAX_RESULT_BYTES", "1e6"),
        ("FEATURE_CURSOR_MODE", "maybe"),
        ("DUCKDB_INIT_SQL", "/nonexistent/dir/init.sql"),
        ("REACTOR_PRIORITY", "urgent"),
        ("SQL_THREAD_NICE", "-1"),
        ("SQL_THREAD_NICE", "low"),
        ("DUCKDB_TIME_ZONE", "Europe/Amst'erdam"),
    ];
    for (var, value) in cases {
        let out = Agent::run_to_exit(&[(var, value)], &[]);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {}", out.stderr);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line for {var}={value}: {}", out.stderr);
        assert!(lines[0].contains(var), "{var}: {}", lines[0]);
    }
}

#[test]
fn missing_token_refuses_to_start() {
    for envs in [&[("AGENT_TOKEN", UNSET)], &[("AGENT_TOKEN", "")]] {
        let out = Agent::run_to_exit(envs, &[]);
        assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
        assert!(out.stderr.contains("AGENT_TOKEN"), "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1);
    }
}

#[test]
fn help_lists_every_setting_with_defaults() {
    let out = Agent::run_to_exit(&[], &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    // clap prints help on stdout; our harness discards stdout, so ask again capturing it.
    let help = std::process::Command::new(BIN)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    let text = String::from_utf8(help.stdout).unwrap();
    for var in [
        "AGENT_TOKEN",
        "LISTEN_ADDR",
        "MAX_MEMORY_GB",
        "QUERY_RESULT_TTL",
        "QUERY_CLEANUP_INTERVAL",
        "DUCKDB_PATH",
        "SHARDS",
        "DUCKDB_THREADS",
        "MAX_QUEUED_JOBS",
        "MAX_RESULT_BYTES",
        "DUCKDB_INIT_SQL",
        "FEATURE_CURSOR_MODE",
        "REACTOR_PRIORITY",
        "SQL_THREAD_NICE",
    ] {
        assert!(
            text.contains(&format!("env: {var}")),
            "{var} missing from --help:\n{text}"
        );
    }
    for default in [
        "[default: :9443]",
        "[default: 10m]",
        "[default: 1m]",
        "[default: true]",
        "[default: auto]",
    ] {
        assert!(text.contains(default), "{default} missing:\n{text}");
    }
    // The token's value is never shown.
    let help = std::process::Command::new(BIN)
        .arg("--help")
        .env_clear()
        .env("AGENT_TOKEN", "s3cret-value")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("s3cret-value"));
}

#[test]
fn flags_and_go_durations() {
    // Flags override the environment; Go's duration forms are accepted.
    let agent = Agent::start_with_args(
        &[("QUERY_RESULT_TTL", "10m")],
        &[
            "--query-result-ttl",
            "1.5h",
            "--query-cleanup-interval=2h45m10.5s",
        ],
    );
    assert_eq!(agent.health()["query_result_ttl_seconds"], 5400);
    let agent = Agent::start(&[
        ("QUERY_RESULT_TTL", "1500us"),
        ("QUERY_CLEANUP_INTERVAL", "300ms"),
        ("FEATURE_CURSOR_MODE", "0"),
    ]);
    // Whole seconds, rounded down: an integer, as the contract fixes it.
    assert_eq!(agent.health()["query_result_ttl_seconds"], 0);
    agent
        .client()
        .post("/queries", &serde_json::json!({"sql": "SELECT 1"}))
        .expect_error(404, "NOT_FOUND");
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let agent = Agent::start(&[]);
    assert_eq!(
        agent.client().execute("SELECT 1 AS x")["rows"],
        serde_json::json!([[1]])
    );
    // Structured start-up line with the config summary. It is written after
    // the listeners serve, through the non-blocking log writer: wait for it.
    let start = eventually("the start-up log line", || {
        agent
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "compute-agent listening")
    });
    assert_eq!(start["level"], "INFO");
    assert_eq!(start["shards"], 2);
    assert_eq!(start["feature_cursor_mode"], true);
    assert!(
        !agent.log().contains(TOKEN),
        "the token must never be logged"
    );
    let status = agent.terminate();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn logs_are_json_lines_with_request_ids() {
    let agent = Agent::start(&[("LOG_LEVEL", "debug")]);
    let mut c = agent.client();
    let r = c.request(
        "POST",
        "/execute",
        &[("X-Request-ID", "log-rid-1")],
        Some(br#"{"sql":"SELECT * FROM nope_tbl"}"#),
    );
    assert_eq!(r.status, 500);
    let line = eventually("request log line", || {
        agent
            .log()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l)
                    .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"))
            })
            .find(|v| v["request_id"] == "log-rid-1" && v["status"] == 500)
    });
    assert_eq!(line["path"], "/execute");
    assert_eq!(line["level"], "DEBUG");
    assert!(line["timestamp"].is_string());
    // The failure itself is logged at info with DuckDB's message and the request id.
    let failed = agent
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "execute failed" && v["request_id"] == "log-rid-1")
        .expect("execute failed line");
    assert_eq!(failed["level"], "INFO");
    assert_eq!(failed["code"], "EXECUTION_ERROR");
    assert!(
        failed["error"].as_str().unwrap().contains("nope_tbl"),
        "{failed}"
    );
}

/// Whether this process may use SCHED_FIFO, from the kernel's own records:
/// CAP_SYS_NICE in the effective set, or a real-time priority rlimit >= 1.
fn realtime_permitted() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    const CAP_SYS_NICE: u32 = 23;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let rtprio = limits
        .lines()
        .find(|l| l.starts_with("Max realtime priority"))
        .and_then(|l| l.split_whitespace().nth(3))
        .map(|soft| soft.parse::<u64>().unwrap_or(u64::MAX))
        .unwrap();
    cap_eff & (1 << CAP_SYS_NICE) != 0 || rtprio >= 1
}

/// (thread name, scheduling policy, nice) of every thread of `pid`, from /proc.
fn thread_policies(pid: u32) -> Vec<(String, u32, i32)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = t.unwrap().path();
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue; // the thread exited meanwhile
        };
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        // Fields after the ")" that ends the name: nice is field 19 overall,
        // policy field 41.
        let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let nice: i32 = rest[16].parse().unwrap();
        let policy: u32 = rest[38].parse().unwrap();
        out.push((name.trim().to_string(), policy, nice));
    }
    out
}

#[test]
fn reactors_run_real_time_when_permitted_and_sql_threads_never_do() {
    const SCHED_FIFO: u32 = 1;
    let permitted = realtime_permitted();
    for (setting, want_rt) in [("auto", permitted), ("normal", false)] {
        let agent = Agent::start(&[("REACTOR_PRIORITY", setting), ("SHARDS", "2")]);
        // Run SQL so every worker thread and DuckDB's own threads exist.
        let mut c = agent.client();
        for n in 0..8 {
            assert_eq!(c.execute(&format!("SELECT {n} AS v"))["rows"][0][0], n);
        }
        let log = agent.log();
        assert!(
            log.contains(&format!("\"reactor_realtime\":{want_rt}")),
            "{setting}: start-up line should say reactor_realtime={want_rt}:\n{log}"
        );
        let threads = thread_policies(agent.pid());
        let fifo: Vec<&String> = threads
            .iter()
            .filter(|(_, p, _)| *p == SCHED_FIFO)
            .map(|(n, _, _)| n)
            .collect();
        if want_rt {
            // One reactor per shard; glommio names its helper threads like the
            // reactor, and those must stay normal.
            assert_eq!(fifo.len(), 2, "{setting}: {threads:?}");
            assert!(
                fifo.iter().all(|n| n.starts_with("net-shard-")),
                "{threads:?}"
            );
        } else {
            assert!(fifo.is_empty(), "{setting}: {threads:?}");
        }
        assert!(
            threads
                .iter()
                .any(|(n, _, _)| n.starts_with("duckdb-worker")),
            "{threads:?}"
        );
    }
}

#[test]
fn required_real_time_without_permission_stops_start_up() {
    if realtime_permitted() {
        // Nothing to refuse here; the other branch runs where it is refused.
        let agent = Agent::start(&[("REACTOR_PRIORITY", "realtime")]);
        // The start-up line is written after the listeners serve /health,
        // through the non-blocking log writer: wait for it.
        eventually("the start-up log line", || {
            agent
                .log()
                .contains("\"reactor_realtime\":true")
                .then_some(())
        });
        return;
    }
    let out = Agent::run_to_exit(&[("REACTOR_PRIORITY", "realtime")], &[]);
    assert_ne!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("CAP_SYS_NICE"), "{}", out.stderr);
}

#[test]
fn sql_threads_run_at_the_configured_nice_value_and_reactors_do_not() {
    for (setting, want) in [(None, 10), (Some("3"), 3), (Some("0"), 0)] {
        let envs: Vec<(&str, &str)> = setting
            .map(|v| ("SQL_THREAD_NICE", v))
            .into_iter()
            .collect();
        let agent = Agent::start(&envs);
        let mut c = agent.client();
        assert_eq!(c.execute("SELECT 42 AS v")["rows"][0][0], 42);
        let threads = thread_policies(agent.pid());
        let workers: Vec<i32> = threads
            .iter()
            .filter(|(n, _, _)| {
                n.starts_with("duckdb-worker") || n == "executor-facts" || n == "duckdb-pool"
            })
            .map(|(_, _, nice)| *nice)
            .collect();
        // DuckDB's own threads inherit name and nice from the thread that
        // opened the database.
        assert!(
            threads.iter().any(|(n, _, _)| n == "duckdb-pool"),
            "{threads:?}"
        );
        assert!(!workers.is_empty(), "{threads:?}");
        assert!(
            workers.iter().all(|n| *n == want),
            "{setting:?}: {threads:?}"
        );
        assert!(
            threads
                .iter()
                .filter(|(n, _, _)| n.starts_with("net-shard-"))
                .all(|(_, _, nice)| *nice == 0),
            "reactors keep the process's nice value: {threads:?}"
        );
    }
}

#[test]
fn sql_threads_follow_the_configured_scheduling_policy_and_reactors_do_not() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_IDLE: u32 = 5;
    for (setting, want) in [("idle", SCHED_IDLE), ("normal", SCHED_OTHER)] {
        let agent = Agent::start(&[("SQL_THREAD_POLICY", setting), ("SHARDS", "2")]);
        let mut c = agent.client();
        for n in 0..8 {
            assert_eq!(c.execute(&format!("SELECT {n} AS v"))["rows"][0][0], n);
        }
        let threads = thread_policies(agent.pid());
        let sql: Vec<&(String, u32, i32)> = threads
            .iter()
            .filter(|(n, _, _)| {
                n.starts_with("duckdb-worker") || n == "executor-facts" || n == "duckdb-pool"
            })
            .collect();
        // Workers, the facts refresher and DuckDB's own threads (which
        // inherit the opener's policy) all follow the setting.
        assert!(sql.len() >= 3, "{threads:?}");
        assert!(
            sql.iter().all(|(_, p, _)| *p == want),
            "{setting}: {threads:?}"
        );
        assert!(
            threads
                .iter()
                .filter(|(n, _, _)| n.starts_with("net-shard-"))
                .all(|(_, p, _)| *p != SCHED_IDLE),
            "reactors never run SCHED_IDLE: {threads:?}"
        );
    }
    // A policy that does not exist stops start-up, naming the setting.
    let out = Agent::run_to_exit(&[("SQL_THREAD_POLICY", "batch")], &[]);
    assert_ne!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("SQL_THREAD_POLICY"), "{}", out.stderr);
}
