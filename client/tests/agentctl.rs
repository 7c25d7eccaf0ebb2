//! `agentctl` as a script would use it, against a real agent: output formats, the job
//! commands, resolve, and the documented exit codes.

mod common;

use std::process::{Command, Output};

use common::*;

fn ctl(a: Option<&Agent>, token: &str, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agentctl"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    if let Some(a) = a {
        c.env("AGENT_URL", a.url()).env("AGENT_TOKEN", token);
    }
    c.args(args).output().expect("run agentctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn run_formats_job_commands_and_exit_codes() {
    let a = Agent::start(&[]);
    let o = ctl(
        Some(&a),
        TOKEN,
        &[
            "run",
            "SELECT 1 AS a, 'x,y' AS b UNION ALL SELECT 2, NULL ORDER BY a",
            "--format",
            "csv",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(stdout(&o), "a,b\n1,\"x,y\"\n2,\n");
    let o = ctl(
        Some(&a),
        TOKEN,
        &["run", "SELECT 1 AS a, [1,2] AS l", "--format", "jsonl"],
    );
    assert_eq!(stdout(&o).trim(), r#"{"a":1,"l":[1,2]}"#);
    let o = ctl(Some(&a), TOKEN, &["run", "SELECT 42 AS answer"]);
    assert!(
        stdout(&o).contains("answer") && stdout(&o).contains("42"),
        "{}",
        stdout(&o)
    );

    // submit / status / results / delete.
    let o = ctl(
        Some(&a),
        TOKEN,
        &["submit", "SELECT 7 AS x", "--request-id", "ctl-1"],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let id = stdout(&o).split('\t').next().unwrap().to_string();
    let o = ctl(Some(&a), TOKEN, &["status", &id, "--wait", "10s"]);
    assert!(stdout(&o).contains("SUCCEEDED"), "{}", stdout(&o));
    let o = ctl(
        Some(&a),
        TOKEN,
        &["results", &id, "--format", "csv", "--all"],
    );
    assert_eq!(stdout(&o), "x\n7\n");
    assert_eq!(
        ctl(Some(&a), TOKEN, &["delete", &id]).status.code(),
        Some(0)
    );
    assert_eq!(
        ctl(Some(&a), TOKEN, &["status", &id]).status.code(),
        Some(4),
        "deleted: not found"
    );

    // Exit codes.
    assert_eq!(
        ctl(Some(&a), TOKEN, &["run", "SELECT * FROM nope"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        ctl(Some(&a), "wrong", &["run", "SELECT 1"]).status.code(),
        Some(3)
    );
    assert_eq!(
        ctl(None, TOKEN, &["run", "SELECT 1"]).status.code(),
        Some(2),
        "no URL"
    );
    assert_eq!(
        ctl(Some(&a), TOKEN, &["--timeout", "300ms", "run", SLOW_SQL])
            .status
            .code(),
        Some(6)
    );
    let o = Command::new(env!("CARGO_BIN_EXE_agentctl"))
        .args([
            "--url",
            &format!("http://127.0.0.1:{}", free_port()),
            "--token",
            "t",
            "health",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    let o = ctl(Some(&a), TOKEN, &["health"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("ok"), "{}", stdout(&o));
    a.wait_health("clean", |h| h["stored_jobs"] == 0);
}

#[test]
fn resolve_and_health_from_a_resolver_file() {
    let a = Agent::start(&[]);
    let dir = scratch_dir("ctl");
    let file = dir.join("r.toml");
    std::fs::write(
        &file,
        format!(
            "[rollout]\nremote_routing = true\n[health]\ninterval = \"50ms\"\ndown_after = 1\nup_after = 1\n\
             [[endpoint]]\nname = \"up\"\nurl = \"{}\"\ntoken = \"{TOKEN}\"\nkind = \"REMOTE\"\n\
             [[endpoint]]\nname = \"gone\"\nurl = \"http://127.0.0.1:{}\"\ntoken = \"t\"\nkind = \"REMOTE\"\n\
             [[assignment]]\nuser = \"alice\"\nendpoint = \"up\"\nis_default = true\n\
             [[assignment]]\nuser = \"bob\"\nendpoint = \"gone\"\nis_default = true\n\
             [[assignment]]\ngroup = \"g\"\nendpoint = \"gone\"\nis_default = true\nfallback_local = true\n",
            a.url(),
            free_port()
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let o = ctl(None, "", &["resolve", "alice", "--resolver", f]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        stdout(&o).contains("remote up (rule user-default"),
        "{}",
        stdout(&o)
    );
    let o = ctl(None, "", &["resolve", "bob", "--resolver", f]);
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    assert!(
        stdout(&o).contains("endpoint gone unavailable"),
        "{}",
        stdout(&o)
    );
    let o = ctl(
        None,
        "",
        &["resolve", "carol", "--groups", "g", "--resolver", f],
    );
    assert!(
        stdout(&o).contains("local (rule fallback-local"),
        "{}",
        stdout(&o)
    );
    let o = ctl(None, "", &["health", "--resolver", f]);
    assert_eq!(o.status.code(), Some(5), "one endpoint is down: {o:?}");
    assert!(stdout(&o).contains("DOWN"), "{}", stdout(&o));
    std::fs::write(&file, "not [toml").unwrap();
    assert_eq!(
        ctl(None, "", &["resolve", "alice", "--resolver", f])
            .status
            .code(),
        Some(2)
    );
}
