//! Test support: start the real compute-agent binary (and, for the gateway
//! scenario, the real compute-gateway in front of it) on free loopback
//! ports, run the real loadgen binary against them, and a tiny blocking
//! HTTP client for setting up conditions (stalls, a gateway's users and
//! endpoints) from the test itself.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "loadgen-test-token";

/// Load tests in one binary take turns: run side by side on a 2-core machine
/// they would measure each other instead of the agent.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The agent binary: $COMPUTE_AGENT_BIN, else next to this test's target dir
/// (`cargo test --release --workspace` builds it there before tests run).
pub fn agent_bin() -> PathBuf {
    workspace_bin("compute-agent", "COMPUTE_AGENT_BIN")
}

/// The gateway binary: $COMPUTE_GATEWAY_BIN, else beside the agent's.
pub fn gateway_bin() -> PathBuf {
    workspace_bin("compute-gateway", "COMPUTE_GATEWAY_BIN")
}

fn workspace_bin(name: &str, var: &str) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .expect("deps dir")
        .parent()
        .expect("profile dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{name} binary not found at {} (set {var} or run `cargo test --release --workspace`)",
        p.display()
    );
    p
}

pub use testkit::free_port;

/// A running agent, killed on drop.
pub struct Agent {
    child: Child,
    pub addr: SocketAddr,
}

impl Agent {
    pub fn start(extra_env: &[(&str, &str)]) -> Agent {
        // A port picked by binding :0 can be taken before the agent binds it;
        // retry a few times on a different port when start-up fails.
        for _ in 0..3 {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let mut cmd = Command::new(agent_bin());
            cmd.env("AGENT_TOKEN", TOKEN)
                .env("LISTEN_ADDR", addr.to_string())
                .env("SHARDS", "2")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            for (k, v) in extra_env {
                cmd.env(k, v);
            }
            let child = cmd.spawn().expect("spawn compute-agent");
            let mut agent = Agent { child, addr };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = agent.child.try_wait() {
                    break;
                }
                if let Ok((200, _)) = http(addr, "GET", "/health", None) {
                    return agent;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("compute-agent did not become healthy");
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL: the agent dies at once, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request on a fresh connection (Connection: close), blocking.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    http_as(addr, ("X-Agent-Token", TOKEN), method, path, body)
}

/// As [`http`], with `credential` (header name, value) instead of the
/// agent's token.
pub fn http_as(
    addr: SocketAddr,
    credential: (&str, &str),
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    let (name, value) = credential;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{name}: {value}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The gateway's admin token in tests, and the token of its user `u`.
pub const GATEWAY_ADMIN_TOKEN: &str = "loadgen-test-admin-token";
pub const GATEWAY_USER_TOKEN: &str = "loadgen-test-user-token";

/// A running compute-gateway (SQLite store in a scratch folder, in-memory
/// local DuckDB) that routes user `u` (token [`GATEWAY_USER_TOKEN`]) to
/// the given agents only (no fallback to local compute); killed on drop.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
}

impl Gateway {
    pub fn start(agents: &[&Agent]) -> Gateway {
        let mut started = None;
        for attempt in 0..3 {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let db = tmp_path(&format!("gateway-{port}-{attempt}.db"));
            let child = Command::new(gateway_bin())
                .env("DATABASE_URL", format!("sqlite:{}", db.display()))
                .env("GATEWAY_ADMIN_TOKEN", GATEWAY_ADMIN_TOKEN)
                .env("FEATURE_REMOTE_ROUTING", "true")
                .env("LISTEN_ADDR", addr.to_string())
                .env("LOG_LEVEL", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn compute-gateway");
            let mut gw = Gateway { child, addr };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = gw.child.try_wait() {
                    break;
                }
                if let Ok((200, _)) = http(addr, "GET", "/health", None) {
                    started = Some(gw);
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if started.is_some() {
                break;
            }
        }
        let gw = started.expect("compute-gateway did not become healthy");
        gw.admin("PUT", "/admin/users/u", "{}");
        gw.admin(
            "POST",
            "/admin/tokens",
            &format!(r#"{{"user":"u","token":"{GATEWAY_USER_TOKEN}"}}"#),
        );
        for (i, a) in agents.iter().enumerate() {
            let name = format!("a{}", i + 1);
            gw.admin(
                "POST",
                "/compute-endpoints",
                &format!(
                    r#"{{"name":"{name}","url":"{}","type":"REMOTE","auth_token":"{TOKEN}"}}"#,
                    a.url()
                ),
            );
            gw.admin(
                "POST",
                &format!("/compute-endpoints/{name}/assignments"),
                r#"{"principal":"u","principal_type":"user","is_default":true,"fallback_local":false}"#,
            );
        }
        gw
    }

    /// An admin call; panics unless it answers 2xx.
    pub fn admin(&self, method: &str, path: &str, body: &str) -> String {
        let auth = format!("Bearer {GATEWAY_ADMIN_TOKEN}");
        let (status, text) = http_as(
            self.addr,
            ("Authorization", &auth),
            method,
            path,
            Some(body),
        )
        .expect("gateway admin call");
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {text}"
        );
        text
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn health(addr: SocketAddr) -> serde_json::Value {
    let (_, b) = http(addr, "GET", "/health", None).expect("health");
    serde_json::from_str(&b).expect("health json")
}

/// Runs the loadgen binary with a hard time limit; kills it on overrun.
pub fn loadgen(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .env_remove("AGENT_TOKEN")
        .env_remove("LOADGEN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn loadgen");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "loadgen {args:?} ran past {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn tmp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    dir.join(name)
}

/// Runs loadgen with `--json <file>` and returns (exit code, report, stdout).
pub fn run_json(args: &[&str], limit: Duration) -> (i32, serde_json::Value, String) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = tmp_path(&format!("report-{n}.json"));
    let mut all: Vec<&str> = args.to_vec();
    let p = path.to_str().unwrap().to_string();
    all.extend(["--json", &p, "--no-progress"]);
    let out = loadgen(&all, limit);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status.code()
        )
    });
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON report parses");
    (out.status.code().unwrap_or(-1), v, stdout)
}

/// Checks sent = succeeded + failed everywhere, and failures by code sum up.
pub fn assert_counts_add_up(r: &serde_json::Value) {
    let ops = &r["ops"];
    let sum = |v: &serde_json::Value| {
        v.as_object()
            .unwrap()
            .values()
            .map(|x| x.as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(
        ops["sent"].as_u64().unwrap(),
        ops["succeeded"].as_u64().unwrap() + ops["failed"].as_u64().unwrap()
    );
    assert_eq!(ops["failed"].as_u64().unwrap(), sum(&ops["failed_by"]));
    for (kind, k) in ops["by_kind"].as_object().unwrap() {
        assert_eq!(
            k["sent"].as_u64().unwrap(),
            k["succeeded"].as_u64().unwrap() + k["failed"].as_u64().unwrap(),
            "kind {kind}"
        );
        assert_eq!(
            k["failed"].as_u64().unwrap(),
            sum(&k["failed_by"]),
            "kind {kind}"
        );
        assert_eq!(
            k["latency"]["count"].as_u64().unwrap(),
            k["sent"].as_u64().unwrap(),
            "kind {kind}"
        );
    }
    for (route, v) in r["requests"].as_object().unwrap() {
        assert_eq!(
            v["total"].as_u64().unwrap(),
            sum(&v["by_outcome"]),
            "route {route}"
        );
    }
}
