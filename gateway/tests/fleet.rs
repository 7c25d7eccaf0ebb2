//! A fleet under failure, end to end: the real `compute-gateway` in front of
//! two real `compute-agent` processes, one user assigned to both (no
//! fallback to local compute, so nothing hides a routing failure), callers
//! sending queries without pause while one agent is SIGKILLed, or SIGSTOPped
//! and later continued.
//!
//! What must hold (issue 19, items 1 and 2): a query that never started on
//! the failed agent moves to the other one at once (the failed agent is
//! suspect for every later query from the first failure on); only queries
//! that may have started there fail, each with an error naming the agent,
//! none hangs past the first-byte deadline; a continued agent serves again
//! once the prober has seen it good. Counts are asserted; times only with
//! the slack a busy machine needs (the tight figures are loadgen's).

mod harness;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::{json, Value};

/// Callers sending queries back to back.
const CALLERS: usize = 4;

/// One query's fate.
#[derive(Debug, Clone)]
struct Outcome {
    started: Instant,
    took: Duration,
    status: u16,
    endpoint: String,
    body: String,
}

struct Fleet {
    _dir: std::path::PathBuf,
    gw: Proc,
    agents: Vec<Proc>,
    token: String,
}

fn fleet(extra: &[(&str, &str)]) -> Fleet {
    let dir = scratch_dir("fleet");
    let db = make_db(&dir);
    let url = format!("sqlite:{}", dir.join("gateway.db").display());
    let gw = start_gateway(&url, &db, extra);
    let agents = vec![start_agent(&db, &[]), start_agent(&db, &[])];
    let a = Caller {
        gw: &gw,
        token: ADMIN_TOKEN.into(),
    };
    a.admin("PUT", "/admin/users/ops", json!({}));
    let token = a.admin("POST", "/admin/tokens", json!({ "user": "ops" }))["token"]
        .as_str()
        .unwrap()
        .to_string();
    for (i, agent) in agents.iter().enumerate() {
        let name = format!("a{}", i + 1);
        a.admin(
            "POST",
            "/compute-endpoints",
            json!({"name": name, "url": agent.url(), "type": "REMOTE", "auth_token": AGENT_TOKEN}),
        );
        a.admin(
            "POST",
            &format!("/compute-endpoints/{name}/assignments"),
            json!({"principal": "ops", "principal_type": "user", "is_default": true, "fallback_local": false}),
        );
    }
    a.admin(
        "POST",
        "/admin/grants",
        json!({"principal": "ops", "principal_type": "user", "table": "people"}),
    );
    Fleet {
        _dir: dir,
        gw,
        agents,
        token,
    }
}

impl Fleet {
    fn caller(&self) -> Caller<'_> {
        Caller {
            gw: &self.gw,
            token: self.token.clone(),
        }
    }

    /// Both agents have answered a query (routing spreads over both).
    fn wait_both_used(&self) {
        let c = self.caller();
        let mut seen = std::collections::HashSet::new();
        let deadline = Instant::now() + PATIENCE;
        while seen.len() < 2 {
            assert!(Instant::now() < deadline, "never saw both agents used");
            let r = c.query("SELECT count(*) FROM people");
            assert_eq!(r.status, 200, "{}", r.text());
            seen.insert(r.json()["endpoint"].as_str().unwrap().to_string());
        }
    }
}

/// Runs `n` threads sending `sql(caller, n-th query)` as `token` until
/// `stop`; their outcomes.
fn spawn_callers(
    gw: &Proc,
    token: &str,
    n: usize,
    stop: Arc<AtomicBool>,
    sql: Arc<dyn Fn(usize, u64) -> String + Send + Sync>,
) -> Vec<std::thread::JoinHandle<Vec<Outcome>>> {
    (0..n)
        .map(|i| {
            let addr = gw.addr;
            let auth = format!("Bearer {token}");
            let stop = stop.clone();
            let sql = sql.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    k += 1;
                    let body = serde_json::to_vec(&json!({ "sql": sql(i, k) })).unwrap();
                    let started = Instant::now();
                    let r = raw(
                        addr,
                        "POST",
                        "/v1/query",
                        &[
                            ("Authorization", auth.as_str()),
                            ("Content-Type", "application/json"),
                        ],
                        &body,
                    );
                    let took = started.elapsed();
                    let (status, body) = match r {
                        Ok(r) => (r.status, r.text()),
                        Err(e) => (0, format!("no answer: {e}")),
                    };
                    let endpoint = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|v| v["endpoint"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    out.push(Outcome {
                        started,
                        took,
                        status,
                        endpoint,
                        body,
                    });
                }
                out
            })
        })
        .collect()
}

/// `CALLERS` threads sending distinct trivial statements (each one a
/// statement of its own) until `stop`.
fn load(
    gw: &Proc,
    token: &str,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<Outcome>>> {
    spawn_callers(
        gw,
        token,
        CALLERS,
        stop,
        Arc::new(|i, k| format!("SELECT count(*) + {i} * 0 + {k} * 0 AS c FROM people")),
    )
}

fn collect(handles: Vec<std::thread::JoinHandle<Vec<Outcome>>>) -> Vec<Outcome> {
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

fn summary(all: &[Outcome]) -> String {
    let failed: Vec<&Outcome> = all.iter().filter(|o| o.status != 200).collect();
    let mut by = std::collections::BTreeMap::<String, usize>::new();
    for o in all.iter().filter(|o| o.status == 200) {
        *by.entry(o.endpoint.clone()).or_default() += 1;
    }
    format!(
        "{} queries, {} failed, answered by {by:?}; failures: {:?}",
        all.len(),
        failed.len(),
        failed
            .iter()
            .take(8)
            .map(|o| (o.status, &o.body))
            .collect::<Vec<_>>()
    )
}

#[test]
fn a_killed_agent_fails_only_what_was_in_flight_there() {
    let f = fleet(&[]);
    f.wait_both_used();
    let stop = Arc::new(AtomicBool::new(false));
    let handles = load(&f.gw, &f.token, stop.clone());
    std::thread::sleep(Duration::from_millis(800));
    let killed_at = Instant::now();
    let mut agents = f.agents;
    agents[0].kill();
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    let all = collect(handles);
    let text = summary(&all);
    eprintln!("{text}");

    // Both agents took queries until the kill (this process's own running
    // queries weigh in the choice, so callers spread).
    assert!(
        all.iter()
            .any(|o| o.started < killed_at && o.endpoint == "a1"),
        "a1 took nothing before the kill: {text}"
    );
    let after: Vec<&Outcome> = all.iter().filter(|o| o.started >= killed_at).collect();
    assert!(after.len() > 20, "too few queries after the kill: {text}");
    // Only queries in flight on a1 at the kill may fail: at most one per
    // caller; every failure names a1 and came within the moment of the kill.
    let failed: Vec<&Outcome> = all.iter().filter(|o| o.status != 200).collect();
    assert!(failed.len() <= CALLERS, "{text}");
    for o in &failed {
        assert!(o.status == 502 || o.status == 503, "{text}");
        assert!(
            o.body.contains("a1"),
            "a failure must name the agent: {text}"
        );
        assert!(
            o.started < killed_at + Duration::from_secs(1),
            "a query sent well after the kill failed: {text}"
        );
    }
    // After the kill everything lands on a2; a1 is suspect, not retried per query.
    let late: Vec<&&Outcome> = after
        .iter()
        .filter(|o| o.started > killed_at + Duration::from_secs(1))
        .collect();
    assert!(
        !late.is_empty() && late.iter().all(|o| o.status == 200 && o.endpoint == "a2"),
        "{text}"
    );
}

#[test]
fn a_dead_agent_nobody_noticed_yet_costs_no_query() {
    // Killed while idle: the next query chosen for a1 finds it unreachable
    // (nothing sent), moves to a2 and is answered; a1 is suspect from then on.
    // Probed once only, so both agents keep the same load and queries take
    // them in turn: one of the next two is chosen for a1.
    let f = fleet(&[("HEALTH_INTERVAL", "1h")]);
    f.wait_both_used();
    let mut agents = f.agents;
    agents[0].kill();
    // A query sent in the very moment of the crash, on a pooled connection the
    // crash is closing, may meet a reset after its request went out: that one
    // may have started and fails (the kill test above counts those). Give the
    // gateway's pool the moment to see its connections closed.
    std::thread::sleep(Duration::from_millis(300));
    let c = Caller {
        gw: &f.gw,
        token: f.token.clone(),
    };
    for _ in 0..20 {
        let r = c.query("SELECT count(*) FROM people");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["endpoint"], "a2", "{}", r.text());
    }
    // The audit says which endpoint the moved query left, and why.
    let line = f.gw.wait_log("audit", |v| {
        v["left"]
            .as_str()
            .is_some_and(|l| l.starts_with("a1: unreachable"))
    });
    assert_eq!(line["endpoint"], "a2", "{line}");
    assert_eq!(line["outcome"], "answered", "{line}");
    let m = raw(f.gw.addr, "GET", "/metrics", &[], b"").unwrap().text();
    assert!(
        m.contains("gateway_failovers_total{endpoint=\"a1\",kind=\"unreachable\"} 1"),
        "{m}"
    );
}

#[test]
fn a_stopped_agent_costs_one_first_byte_deadline_and_serves_again_when_continued() {
    let f = fleet(&[
        ("AGENT_FIRST_BYTE_TIMEOUT", "1s"),
        ("AGENT_LONG_POLL", "500ms"),
        ("HEALTH_INTERVAL", "200ms"),
        ("HEALTH_TIMEOUT", "300ms"),
    ]);
    f.wait_both_used();
    let stop = Arc::new(AtomicBool::new(false));
    let handles = load(&f.gw, &f.token, stop.clone());
    std::thread::sleep(Duration::from_millis(800));
    let stopped_at = Instant::now();
    f.agents[0].signal("STOP");
    std::thread::sleep(Duration::from_millis(4000));
    stop.store(true, Ordering::Relaxed);
    let all = collect(handles);
    f.agents[0].signal("CONT");
    let text = summary(&all);
    eprintln!("{text}");

    assert!(
        all.iter()
            .any(|o| o.started < stopped_at && o.endpoint == "a1"),
        "a1 took nothing before the stop: {text}"
    );
    // Nothing hangs: every query got its answer within the hold (500ms) and
    // the first-byte deadline (1s) of the one call that met the stopped agent,
    // with slack for a busy machine.
    let slowest = all.iter().map(|o| o.took).max().unwrap();
    assert!(
        slowest < Duration::from_secs(8),
        "slowest {slowest:?}: {text}"
    );
    // Only queries sent to a1 before it was found hung fail (at most one per
    // caller), each naming a1 as not answering.
    let failed: Vec<&Outcome> = all.iter().filter(|o| o.status != 200).collect();
    assert!(failed.len() <= CALLERS, "{text}");
    for o in &failed {
        assert!(
            o.body.contains("a1") && o.body.contains("no answer"),
            "{text}"
        );
        assert!(o.started < stopped_at + Duration::from_secs(3), "{text}");
    }
    let after: Vec<&Outcome> = all
        .iter()
        .filter(|o| o.started > stopped_at + Duration::from_secs(3))
        .collect();
    assert!(
        !after.is_empty() && after.iter().all(|o| o.status == 200 && o.endpoint == "a2"),
        "{text}"
    );

    // Continued, a1 is probed good and takes queries again.
    let c = f.caller();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r = c.query("SELECT count(*) FROM people");
        assert_eq!(r.status, 200, "{}", r.text());
        if r.json()["endpoint"] == "a1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a1 never served again after SIGCONT"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_agent_refusing_with_503_sends_the_query_to_the_other_one() {
    // An agent that is draining answers 503 SHUTTING_DOWN (and refuses new
    // connections): nothing started there, so the query runs on the other
    // agent.
    let f = fleet(&[]);
    f.wait_both_used();
    let mut agents = f.agents;
    agents[0].signal("TERM");
    let c = Caller {
        gw: &f.gw,
        token: f.token.clone(),
    };
    // The signal lands at once or a moment later; from then on a2 answers
    // everything. Known limit: the drain closes a1's idle keep-alive
    // connections at once, and a query sent on one in that instant meets a
    // close after its request went out, which may have started it (the
    // client cannot tell), so it fails naming a1 rather than run again: at
    // most one per pooled connection, only at the moment of the signal.
    let mut endpoints = Vec::new();
    let mut failed = Vec::new();
    for i in 0..60 {
        let r = c.query("SELECT count(*) FROM people");
        if r.status == 200 {
            endpoints.push(r.json()["endpoint"].as_str().unwrap().to_string());
        } else {
            assert!(
                r.status == 502 && r.text().contains("a1: transport error"),
                "{}",
                r.text()
            );
            failed.push(i);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        failed.len() <= 2 && failed.iter().all(|i| *i < 20),
        "{failed:?}"
    );
    assert!(
        endpoints[endpoints.len() - 40..].iter().all(|e| e == "a2"),
        "{endpoints:?}"
    );
    let _ = agents[0].wait_exit(PATIENCE);
}

/// `n` threads sending `sql` as `token` until `stop`.
fn callers(
    gw: &Proc,
    token: &str,
    sql: &'static str,
    n: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<Outcome>>> {
    spawn_callers(gw, token, n, stop, Arc::new(move |_, _| sql.to_string()))
}

#[test]
fn a_full_agent_queues_fairly_between_users_and_refuses_with_429_past_the_queue_timeout() {
    // One agent, two slots from this gateway. heavy keeps eight queries
    // going, light two: first come first served would give light a fifth of
    // the answers; turns per user give it about half.
    let dir = scratch_dir("fleet-queue");
    let db = make_db(&dir);
    let url = format!("sqlite:{}", dir.join("gateway.db").display());
    let gw = start_gateway(
        &url,
        &db,
        &[("AGENT_MAX_RUNNING", "2"), ("QUEUE_TIMEOUT", "30s")],
    );
    let agent = start_agent(&db, &[]);
    let a = Caller {
        gw: &gw,
        token: ADMIN_TOKEN.into(),
    };
    a.admin(
        "POST",
        "/compute-endpoints",
        json!({"name": "a1", "url": agent.url(), "type": "REMOTE", "auth_token": AGENT_TOKEN}),
    );
    let mut tokens = Vec::new();
    for u in ["heavy", "light"] {
        a.admin("PUT", &format!("/admin/users/{u}"), json!({}));
        a.admin(
            "POST",
            "/compute-endpoints/a1/assignments",
            json!({"principal": u, "principal_type": "user", "is_default": true, "fallback_local": false}),
        );
        a.admin(
            "POST",
            "/admin/grants",
            json!({"principal": u, "principal_type": "user", "table": "big"}),
        );
        tokens.push(
            a.admin("POST", "/admin/tokens", json!({ "user": u }))["token"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // Tens of milliseconds of work on the agent per query.
    const SLOW: &str = "SELECT sum(x.n * y.n % 7) FROM big x, big y WHERE x.n < 200";
    // Hundreds of milliseconds.
    const SLOWER: &str = "SELECT sum(x.n * y.n % 7) FROM big x, big y WHERE x.n < 8000";
    let c = Caller {
        gw: &gw,
        token: tokens[0].clone(),
    };
    assert_eq!(c.query(SLOW).status, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let heavy = callers(&gw, &tokens[0], SLOW, 8, stop.clone());
    let light = callers(&gw, &tokens[1], SLOW, 2, stop.clone());
    std::thread::sleep(Duration::from_secs(1));
    // A job submitted now waits in the queue, and its status says so.
    let lc = Caller {
        gw: &gw,
        token: tokens[1].clone(),
    };
    let r = lc.req("POST", "/v1/queries", Some(json!({ "sql": SLOW })));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["query_id"].as_str().unwrap().to_string();
    let st = lc.req("GET", &format!("/v1/queries/{id}"), None).json();
    assert_eq!(st["status"], "QUEUED", "{st}");
    let pos = st["queue_position"].as_u64().unwrap();
    assert!((1..=10).contains(&pos), "{st}");
    let st = lc
        .req("GET", &format!("/v1/queries/{id}?wait_ms=20000"), None)
        .json();
    assert_eq!(st["status"], "SUCCEEDED", "{st}");
    assert!(st.get("queue_position").is_none(), "{st}");
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let heavy = collect(heavy);
    let light = collect(light);
    let ok = |v: &[Outcome]| v.iter().filter(|o| o.status == 200).count();
    let text = format!(
        "heavy {} answered of {}, light {} of {}",
        ok(&heavy),
        heavy.len(),
        ok(&light),
        light.len()
    );
    eprintln!("{text}");
    // No 5xx, nothing refused: the queue held what the agent could not take.
    assert!(
        heavy.iter().chain(&light).all(|o| o.status == 200),
        "{text}"
    );
    let share = ok(&light) as f64 / (ok(&light) + ok(&heavy)) as f64;
    assert!(ok(&light) + ok(&heavy) >= 10, "{text}");
    assert!(share >= 0.35, "light's share {share:.2}: {text}");
    let m = raw(gw.addr, "GET", "/metrics", &[], b"").unwrap().text();
    assert!(m.contains("gateway_queue_wait_seconds_count"), "{m}");
    assert!(!m.contains("gateway_queue_wait_seconds_count 0\n"), "{m}");

    // A queue timeout is a 429 with Retry-After, never a 5xx. Agent full
    // (two slow queries held), one more waits its 200ms and is refused.
    drop(gw);
    let gw = start_gateway(
        &format!("sqlite:{}", dir.join("gateway.db").display()),
        &db,
        &[("AGENT_MAX_RUNNING", "1"), ("QUEUE_TIMEOUT", "200ms")],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let hold = callers(&gw, &tokens[0], SLOWER, 2, stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let auth = format!("Bearer {}", tokens[1]);
    let mut refused = None;
    for _ in 0..50 {
        let r = raw(
            gw.addr,
            "POST",
            "/v1/query",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            &serde_json::to_vec(&json!({ "sql": SLOWER })).unwrap(),
        )
        .unwrap();
        assert!(
            r.status == 200 || r.status == 429,
            "{} {}",
            r.status,
            r.text()
        );
        if r.status == 429 {
            refused = Some(r);
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in hold {
        h.join().unwrap();
    }
    let r = refused.expect("never refused past the queue timeout");
    assert_eq!(r.json()["code"], "QUEUE_TIMEOUT", "{}", r.text());
    assert!(r.text().contains("a1"), "{}", r.text());
}
