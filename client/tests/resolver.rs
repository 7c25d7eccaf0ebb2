//! The compute resolver with real agents: resolution rules and reasons, health from
//! background probes (an agent killed and brought back), least-loaded choice, canary
//! and kill switch, reloads on change and SIGHUP, a bad file refused.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::resolver::{Resolver, RolloutDefaults, Rule, Target, TomlFile};
use client::{ClientError, LocalExecutor, Value, Via};
use common::*;

fn write(path: &Path, text: &str) {
    // Write then rename, as an operator's tooling would, so no reader sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn resolver(path: &Path) -> Arc<Resolver> {
    Resolver::new(
        Box::new(TomlFile::new(path)),
        RolloutDefaults::default(),
        LocalExecutor::open(None).unwrap(),
    )
    .expect("resolver")
}

const FAST_HEALTH: &str = "[health]\ninterval = \"50ms\"\ntimeout = \"500ms\"\njitter = \"10ms\"\ndown_after = 2\nup_after = 2\n";

fn endpoint(name: &str, url: &str, status: &str) -> String {
    format!("[[endpoint]]\nname = \"{name}\"\nurl = \"{url}\"\ntoken = \"{TOKEN}\"\nkind = \"REMOTE\"\nstatus = \"{status}\"\n")
}

fn assign(who: &str, name: &str, endpoint: &str, default: bool, fallback: bool) -> String {
    format!("[[assignment]]\n{who} = \"{name}\"\nendpoint = \"{endpoint}\"\nis_default = {default}\nfallback_local = {fallback}\n")
}

fn groups(g: &[&str]) -> Vec<String> {
    g.iter().map(|s| s.to_string()).collect()
}

/// Waits until `f` holds for the resolver.
fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn resolution_order_and_reasons() {
    let dir = scratch_dir("order");
    let file = dir.join("resolver.toml");
    // Endpoints are never probed here (no background tasks): all count as healthy.
    let text = [
        "[rollout]\nremote_routing = true\n".to_string(),
        endpoint("u", "http://127.0.0.1:1", "ACTIVE"),
        endpoint("g", "http://127.0.0.1:2", "ACTIVE"),
        endpoint("o", "http://127.0.0.1:3", "ACTIVE"),
        endpoint("off", "http://127.0.0.1:4", "INACTIVE"),
        "[[endpoint]]\nname = \"here\"\nkind = \"LOCAL\"\n".into(),
        assign("user", "alice", "u", true, false),
        assign("group", "eng", "g", true, false),
        assign("user", "carol", "o", false, false),
        assign("user", "dave", "off", true, true),
        assign("group", "ops", "here", true, false),
    ]
    .concat();
    write(&file, &text);
    let r = resolver(&file);
    let d = r.resolve("alice", &groups(&["eng"])).unwrap();
    assert_eq!(
        d.target,
        Target::Remote {
            endpoint: "u".into()
        }
    );
    assert_eq!(d.rule, Rule::UserDefault);
    let d = r.resolve("bob", &groups(&["eng"])).unwrap();
    assert_eq!(
        d.target,
        Target::Remote {
            endpoint: "g".into()
        }
    );
    assert_eq!(d.rule, Rule::GroupDefault);
    assert!(d.to_string().contains("group eng -> g"), "{d}");
    let d = r.resolve("carol", &[]).unwrap();
    assert_eq!(
        (d.target, d.rule),
        (
            Target::Remote {
                endpoint: "o".into()
            },
            Rule::OtherAssignment
        )
    );
    let d = r.resolve("nobody", &groups(&["nogroup"])).unwrap();
    assert_eq!((d.target, d.rule), (Target::Local, Rule::NoAssignment));
    // An inactive endpoint is skipped; nothing else: local, and the reason says why.
    let d = r.resolve("dave", &[]).unwrap();
    assert_eq!(
        (d.target.clone(), d.rule),
        (Target::Local, Rule::NoAssignment)
    );
    assert!(d.detail.contains("off inactive"), "{d}");
    // An inactive user default falls through to the group's default.
    let d = r.resolve("dave", &groups(&["eng"])).unwrap();
    assert_eq!(
        d.target,
        Target::Remote {
            endpoint: "g".into()
        }
    );
    // A LOCAL endpoint assignment.
    let d = r.resolve("erin", &groups(&["ops"])).unwrap();
    assert_eq!((d.target, d.rule), (Target::Local, Rule::GroupDefault));
}

#[test]
fn killed_agent_goes_local_where_allowed_errors_where_not_and_recovers() {
    let mut a = Agent::start(&[]);
    let dir = scratch_dir("kill");
    let file = dir.join("resolver.toml");
    write(
        &file,
        &[
            "[rollout]\nremote_routing = true\n".to_string(),
            FAST_HEALTH.into(),
            endpoint("a", &a.url(), "ACTIVE"),
            assign("user", "alice", "a", true, true),
            assign("user", "bob", "a", true, false),
            // Another user's fallback on the same endpoint must not help bob.
            assign("user", "carol", "a", true, true),
        ]
        .concat(),
    );
    let rt = runtime();
    rt.block_on(async {
        let r = resolver(&file);
        let _bg = r.spawn_background(Duration::from_secs(3600));
        let (d, rows) = r.run("alice", &[], "SELECT 1 AS x", after(PATIENCE)).await.unwrap();
        assert_eq!(d.target, Target::Remote { endpoint: "a".into() });
        assert_eq!(rows.via, Via::Lifecycle);

        // A query in flight when the agent dies gets a transport error, not a hang.
        let r2 = r.clone();
        let inflight = tokio::spawn(async move { r2.run("bob", &[], SLOW_SQL, after(PATIENCE)).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(300)).await;
        a.kill();
        let e = inflight.await.unwrap().unwrap_err();
        // It had started: never "unreachable" (which would let a caller run it
        // elsewhere), whichever call met the dead agent.
        assert!(matches!(e, ClientError::Transport { .. }) && !e.never_started(), "{e:?}");

        let r3 = r.clone();
        tokio::task::spawn_blocking(move || wait_until("marked down", || !r3.health().get("a").up)).await.unwrap();
        let d = r.resolve("alice", &[]).unwrap();
        assert_eq!((d.target.clone(), d.rule), (Target::Local, Rule::FallbackLocal));
        assert!(d.detail.contains("down"), "{d}");
        let (_, rows) = r.run("alice", &[], "SELECT 7 AS x", after(PATIENCE)).await.unwrap();
        assert_eq!(rows.via, Via::Local);
        assert_eq!(rows.collect().await.unwrap(), vec![vec![Value::Int(7)]]);
        let e = r.resolve("bob", &[]).unwrap_err();
        assert!(matches!(&e, ClientError::Unavailable { endpoint, reason } if endpoint == "a" && reason.contains("fallback_local")), "{e:?}");
        assert!(e.to_string().contains("endpoint a"), "{e}");

        // Keep the restarted agent alive (returned from the closure) until the end.
        let _a = tokio::task::spawn_blocking(move || {
            a.restart();
            a
        })
        .await
        .unwrap();
        let r4 = r.clone();
        tokio::task::spawn_blocking(move || {
            wait_until("marked up", || r4.health().get("a").up);
        })
        .await
        .unwrap();
        let d = r.resolve("bob", &[]).unwrap();
        assert_eq!(d.target, Target::Remote { endpoint: "a".into() });
        let (_, rows) = r.run("bob", &[], "SELECT 8 AS x", after(PATIENCE)).await.unwrap();
        assert_eq!(rows.collect().await.unwrap(), vec![vec![Value::Int(8)]]);
    });
}

#[test]
fn least_loaded_endpoint_wins() {
    // One worker on the busy agent, so its extra jobs queue.
    let busy = Agent::start(&[("SHARDS", "1"), ("MAX_CONCURRENT_QUERIES", "1")]);
    let idle = Agent::start(&[("SHARDS", "1")]);
    let dir = scratch_dir("load");
    let file = dir.join("resolver.toml");
    write(
        &file,
        &[
            "[rollout]\nremote_routing = true\n".to_string(),
            FAST_HEALTH.into(),
            endpoint("busy", &busy.url(), "ACTIVE"),
            endpoint("idle", &idle.url(), "ACTIVE"),
            assign("group", "eng", "busy", true, false),
            assign("group", "eng", "idle", true, false),
        ]
        .concat(),
    );
    let rt = runtime();
    rt.block_on(async {
        let r = resolver(&file);
        let c = r.client("busy").unwrap();
        for i in 0..3 {
            c.submit(SLOW_SQL, &format!("load-{i}"), after(PATIENCE))
                .await
                .unwrap();
        }
        busy.wait_health("busy loaded", |h| h["queued_jobs"] == 2);
        r.probe_once().await;
        assert!(r.health().get("busy").load() >= 3);
        let d = r.resolve("bob", &groups(&["eng"])).unwrap();
        assert_eq!(
            d.target,
            Target::Remote {
                endpoint: "idle".into()
            }
        );
        assert!(d.detail.contains("least loaded of 2"), "{d}");
    });
    // With an overload threshold, the busy endpoint alone is overloaded: the caller's
    // own assignment decides between local and an error naming it.
    write(
        &file,
        &[
            "[rollout]\nremote_routing = true\n".to_string(),
            FAST_HEALTH.replace(
                "up_after = 2\n",
                "up_after = 2\noverloaded_queued_jobs = 2\n",
            ),
            endpoint("busy", &busy.url(), "ACTIVE"),
            assign("user", "alice", "busy", true, true),
            assign("user", "bob", "busy", true, false),
        ]
        .concat(),
    );
    rt.block_on(async {
        let r = resolver(&file);
        r.probe_once().await;
        let d = r.resolve("alice", &[]).unwrap();
        assert_eq!(
            (d.target.clone(), d.rule),
            (Target::Local, Rule::FallbackLocal)
        );
        assert!(d.detail.contains("overloaded"), "{d}");
        let e = r.resolve("bob", &[]).unwrap_err();
        assert!(
            matches!(&e, ClientError::Unavailable { endpoint, .. } if endpoint == "busy"),
            "{e:?}"
        );
    });
}

#[test]
fn canary_and_kill_switch_follow_the_file() {
    let a = Agent::start(&[]);
    let dir = scratch_dir("canary");
    let file = dir.join("resolver.toml");
    let body = [
        endpoint("a", &a.url(), "ACTIVE"),
        assign("user", "alice", "a", true, true),
        assign("user", "bob", "a", true, true),
        assign("group", "beta", "a", true, true),
    ]
    .concat();
    write(&file, &format!("[rollout]\nremote_routing = true\ncanary_users = [\"alice\"]\ncanary_groups = [\"beta\"]\n{body}"));
    let rt = runtime();
    rt.block_on(async {
        let r = resolver(&file);
        let _bg = r.spawn_background(Duration::from_millis(20));
        assert_eq!(
            r.resolve("alice", &[]).unwrap().target,
            Target::Remote {
                endpoint: "a".into()
            }
        );
        let d = r.resolve("bob", &[]).unwrap();
        assert_eq!((d.target, d.rule), (Target::Local, Rule::NotCanary));
        assert_eq!(
            r.resolve("bob", &groups(&["beta"])).unwrap().target,
            Target::Remote {
                endpoint: "a".into()
            }
        );
        // Kill switch: the file changes, the watcher reloads, everyone goes local.
        write(&file, &format!("[rollout]\nremote_routing = false\n{body}"));
        let r2 = r.clone();
        tokio::task::spawn_blocking(move || {
            wait_until("kill switch", || {
                r2.resolve("alice", &[]).unwrap().rule == Rule::RoutingOff
            })
        })
        .await
        .unwrap();
        let (d, rows) = r
            .run("alice", &[], "SELECT 1 AS x", after(PATIENCE))
            .await
            .unwrap();
        assert_eq!((d.target, rows.via), (Target::Local, Via::Local));
        // Widening: no canary lists, routing on: bob goes remote too.
        write(&file, &format!("[rollout]\nremote_routing = true\n{body}"));
        let r3 = r.clone();
        tokio::task::spawn_blocking(move || {
            wait_until("widened", || {
                r3.resolve("bob", &[]).unwrap().target
                    == Target::Remote {
                        endpoint: "a".into(),
                    }
            })
        })
        .await
        .unwrap();
    });
}

#[test]
fn rollout_defaults_come_from_the_environment_and_cursor_mode_off_uses_execute() {
    let a = Agent::start(&[]);
    let dir = scratch_dir("env");
    let file = dir.join("resolver.toml");
    write(
        &file,
        &[
            endpoint("a", &a.url(), "ACTIVE"),
            assign("user", "alice", "a", true, true),
        ]
        .concat(),
    );
    let defaults = RolloutDefaults::from_lookup(|k| match k {
        "FEATURE_REMOTE_ROUTING" => Some("true".into()),
        "FEATURE_CURSOR_MODE" => Some("false".into()),
        "REMOTE_CANARY_USERS" => Some("alice".into()),
        _ => None,
    })
    .unwrap();
    let r = Resolver::new(
        Box::new(TomlFile::new(&file)),
        defaults,
        LocalExecutor::open(None).unwrap(),
    )
    .unwrap();
    let rt = runtime();
    rt.block_on(async {
        let (d, rows) = r
            .run("alice", &[], "SELECT 1 AS x", after(PATIENCE))
            .await
            .unwrap();
        assert_eq!(
            d.target,
            Target::Remote {
                endpoint: "a".into()
            }
        );
        assert_eq!(rows.via, Via::Execute);
    });
    assert_eq!(a.metric("compute_agent_submitted_jobs_total"), 0.0);
}

#[test]
fn a_changed_file_takes_effect_and_a_bad_one_is_refused() {
    let a = Agent::start(&[]);
    let b = Agent::start(&[]);
    a.execute("CREATE TABLE whoami AS SELECT 'a' AS name");
    b.execute("CREATE TABLE whoami AS SELECT 'b' AS name");
    let dir = scratch_dir("reload");
    let file = dir.join("resolver.toml");
    let text = |url: &str, token: &str| {
        format!(
            "[rollout]\nremote_routing = true\n[[endpoint]]\nname = \"x\"\nurl = \"{url}\"\ntoken = \"{token}\"\nkind = \"REMOTE\"\n{}",
            assign("user", "alice", "x", true, false)
        )
    };
    write(&file, &text(&a.url(), TOKEN));
    let rt = runtime();
    rt.block_on(async {
        let r = resolver(&file);
        let _bg = r.spawn_background(Duration::from_millis(20));
        let who = |r: Arc<Resolver>| async move {
            let (_, rows) = r
                .run("alice", &[], "SELECT name FROM whoami", after(PATIENCE))
                .await?;
            Ok::<_, ClientError>(rows.collect().await?[0][0].clone())
        };
        assert_eq!(who(r.clone()).await.unwrap(), Value::Text("a".into()));
        let before = r.client("x").unwrap();

        // The URL changes: the cached client is replaced, queries go to b.
        write(&file, &text(&b.url(), TOKEN));
        let r2 = r.clone();
        let b_url = b.url();
        tokio::task::spawn_blocking(move || {
            wait_until("new url", || r2.client("x").unwrap().config().url == b_url)
        })
        .await
        .unwrap();
        assert_eq!(who(r.clone()).await.unwrap(), Value::Text("b".into()));
        assert_ne!(before.config().url, r.client("x").unwrap().config().url);

        // A bad file is refused; the last good one stays in force.
        write(
            &file,
            "[[endpoint]]\nname = \"x\"\nkind = \"REMOTE\"\nurl = \"not a url\"\n",
        );
        let r3 = r.clone();
        tokio::task::spawn_blocking(move || {
            wait_until("refused", || r3.last_reload_error().is_some())
        })
        .await
        .unwrap();
        assert_eq!(who(r.clone()).await.unwrap(), Value::Text("b".into()));
        write(&file, "this is [not toml");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(who(r.clone()).await.unwrap(), Value::Text("b".into()));

        // A changed token takes effect too (a wrong one is refused by the agent).
        write(&file, &text(&b.url(), "wrong-token"));
        let r4 = r.clone();
        tokio::task::spawn_blocking(move || {
            wait_until("new token", || {
                r4.client("x").unwrap().config().token == "wrong-token"
            })
        })
        .await
        .unwrap();
        assert!(r.last_reload_error().is_none());
        let e = who(r.clone()).await.unwrap_err();
        assert!(matches!(e, ClientError::Auth { .. }), "{e:?}");
    });
}

#[test]
fn sighup_reloads() {
    let a = Agent::start(&[]);
    let dir = scratch_dir("hup");
    let file = dir.join("resolver.toml");
    let body = [
        endpoint("a", &a.url(), "ACTIVE"),
        assign("user", "alice", "a", true, true),
    ]
    .concat();
    write(&file, &format!("[rollout]\nremote_routing = true\n{body}"));
    let rt = runtime();
    rt.block_on(async {
        let r = resolver(&file);
        // The watcher would take an hour: only SIGHUP can reload in time.
        let _bg = r.spawn_background(Duration::from_secs(3600));
        tokio::time::sleep(Duration::from_millis(100)).await;
        write(&file, &format!("[rollout]\nremote_routing = false\n{body}"));
        assert_eq!(r.resolve("alice", &[]).unwrap().rule, Rule::UserDefault);
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let r2 = r.clone();
        tokio::task::spawn_blocking(move || {
            wait_until("SIGHUP reload", || {
                r2.resolve("alice", &[]).unwrap().rule == Rule::RoutingOff
            })
        })
        .await
        .unwrap();
    });
}
