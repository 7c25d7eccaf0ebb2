//! Harness for the gateway's end-to-end tests: starts the real
//! `compute-gateway` and `compute-agent` binaries of this workspace on free
//! loopback ports (killed on drop), builds the shared DuckDB file both open
//! read-only, and a raw blocking HTTP/1.1 client (chunked bodies included).
//!
//! Binaries are found next to the test executable's directory
//! (`target/release/`, built by `cargo test --release --workspace`), or at
//! `$COMPUTE_GATEWAY_BIN` / `$COMPUTE_AGENT_BIN`. Never talks to anything but
//! 127.0.0.1.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const AGENT_TOKEN: &str = "gateway-e2e-agent-token";
pub const ADMIN_TOKEN: &str = "gateway-e2e-admin-token";
pub const PATIENCE: Duration = Duration::from_secs(60);

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// The `compute-gateway` binary the tests run.
pub fn gateway_bin() -> PathBuf {
    bin("compute-gateway", "COMPUTE_GATEWAY_BIN")
}

fn bin(name: &str, var: &str) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let b = dir.join(name);
    assert!(
        b.exists(),
        "{} not found: build the workspace first (cargo test --release --workspace), or set {var}",
        b.display()
    );
    b
}

pub fn scratch_dir(tag: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("gw-e2e-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub use testkit::free_port;

/// A child process on a loopback port; SIGKILLed on drop.
pub struct Proc {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub log_path: PathBuf,
}

/// Whether a server on this address answers its readiness probe.
pub type Ready<'a> = &'a dyn Fn(SocketAddr) -> bool;

/// The plain probe: `GET /health` answers 200.
fn health_ok(addr: SocketAddr) -> bool {
    raw(addr, "GET", "/health", &[], b"").is_ok_and(|r| r.status == 200)
}

impl Proc {
    fn spawn(bin: PathBuf, envs: &[(String, String)], tag: &str, ready: Ready) -> Option<Proc> {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log_path = scratch_dir(tag).join("log");
        let log = File::create(&log_path).unwrap();
        let mut cmd = Command::new(bin);
        cmd.env_clear();
        for key in ["PATH", "HOME", "TMPDIR"] {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        cmd.env("LISTEN_ADDR", addr.to_string());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let child = cmd.spawn().expect("spawn");
        let mut p = Proc {
            child: Some(child),
            addr,
            log_path,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if p.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                eprintln!("{tag} exited early: {}", p.log());
                p.child = None;
                return None;
            }
            if ready(p.addr) {
                return Some(p);
            }
            assert!(Instant::now() < deadline, "{tag} not ready: {}", p.log());
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    fn start(bin: PathBuf, envs: &[(String, String)], tag: &str, ready: Ready) -> Proc {
        for _ in 0..5 {
            if let Some(p) = Proc::spawn(bin.clone(), envs, tag, ready) {
                return p;
            }
        }
        panic!("{tag} did not start");
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends a signal by name (`TERM`, `STOP`, ...).
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let ok = Command::new("kill")
                .args(["-s", sig, &c.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill -s {sig} failed");
        }
    }

    /// Waits up to `within` for the process to exit: its status.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            let c = self.child.as_mut()?;
            if let Some(st) = c.try_wait().unwrap() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: dies without draining (a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The log's JSON lines whose `target` is `target`.
    pub fn log_lines(&self, target: &str) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == target)
            .collect()
    }

    /// Waits until a log line of `target` satisfies `f`, and returns it.
    pub fn wait_log(&self, target: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = self.log_lines(target).into_iter().find(|v| f(v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no such {target} line in: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An agent that opens `db` read-only (attached under its file stem, made the
/// default catalog, as the gateway's local DuckDB names it), with `extra` env.
pub fn start_agent(db: &Path, extra: &[(&str, &str)]) -> Proc {
    let dir = scratch_dir("agent-init");
    let stem = db.file_stem().unwrap().to_str().unwrap();
    let init = dir.join("init.sql");
    std::fs::write(
        &init,
        format!(
            "ATTACH IF NOT EXISTS '{}' AS {stem} (READ_ONLY); USE {stem};",
            db.display()
        ),
    )
    .unwrap();
    let mut envs: Vec<(String, String)> = vec![
        ("AGENT_TOKEN".into(), AGENT_TOKEN.into()),
        ("SHARDS".into(), "1".into()),
        ("LOG_LEVEL".into(), "info".into()),
        ("REACTOR_PRIORITY".into(), "normal".into()),
        ("DUCKDB_INIT_SQL".into(), init.display().to_string()),
    ];
    envs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Proc::start(
        bin("compute-agent", "COMPUTE_AGENT_BIN"),
        &envs,
        "agent",
        &health_ok,
    )
}

/// A gateway on `database_url` whose local DuckDB opens `db` read-only.
pub fn start_gateway(database_url: &str, db: &Path, extra: &[(&str, &str)]) -> Proc {
    start_gateway_ready(database_url, db, extra, &health_ok)
}

/// The environment of a test gateway on `database_url` over `db`, with `extra`.
fn gateway_envs(database_url: &str, db: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut envs: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), database_url.into()),
        ("DUCKDB_PATH".into(), db.display().to_string()),
        ("DUCKDB_READ_ONLY".into(), "true".into()),
        ("GATEWAY_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
        ("FEATURE_REMOTE_ROUTING".into(), "true".into()),
        ("STORE_REFRESH".into(), "200ms".into()),
        ("LOG_LEVEL".into(), "info".into()),
    ];
    envs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    envs
}

/// As [`start_gateway`], ready when `ready` says so (a TLS probe, say).
pub fn start_gateway_ready(
    database_url: &str,
    db: &Path,
    extra: &[(&str, &str)],
    ready: Ready,
) -> Proc {
    let envs = gateway_envs(database_url, db, extra);
    Proc::start(gateway_bin(), &envs, "gateway", ready)
}

/// A gateway as [`start_gateway`] does, with its Flight SQL door on a free
/// loopback port too (`FLIGHT_ADDR`); the port is drawn again on each try.
pub fn start_gateway_flight(
    database_url: &str,
    db: &Path,
    extra: &[(&str, &str)],
) -> (Proc, SocketAddr) {
    for _ in 0..5 {
        let flight: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut envs = gateway_envs(database_url, db, extra);
        envs.push(("FLIGHT_ADDR".into(), flight.to_string()));
        if let Some(p) = Proc::spawn(gateway_bin(), &envs, "gateway", &health_ok) {
            return (p, flight);
        }
    }
    panic!("gateway with Flight SQL did not start");
}

/// Builds the shared database file: `people(id, name, email, region)`.
pub fn make_db(dir: &Path) -> PathBuf {
    let path = dir.join("shared.duckdb");
    let c = duckdb::Connection::open(&path).unwrap();
    c.execute_batch(
        "CREATE TABLE people (id INTEGER, name VARCHAR, email VARCHAR, region VARCHAR);
         INSERT INTO people VALUES
           (1, 'ann', 'ann@example.com', 'EU'),
           (2, 'bob', 'bob@example.com', 'US'),
           (3, 'cat', 'cat@example.com', 'EU'),
           (4, 'dan', 'dan@example.com', 'US');
         CREATE TABLE secrets (k VARCHAR);
         INSERT INTO secrets VALUES ('launch codes');
         CREATE TABLE big AS SELECT i AS n FROM range(25000) t(i);
         CHECKPOINT;",
    )
    .unwrap();
    drop(c);
    path
}

/// One raw response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (Content-Length or chunked answers).
pub fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(PATIENCE))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut len = 0usize;
    let mut chunked = false;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
            if k.eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n];
            r.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            line.clear();
            r.read_line(&mut line)?;
        }
    } else {
        body = vec![0; len];
        r.read_exact(&mut body)?;
    }
    Ok(Resp { status, body })
}

/// A gateway caller with a bearer token.
pub struct Caller<'a> {
    pub gw: &'a Proc,
    pub token: String,
}

impl Caller<'_> {
    pub fn req(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let auth = format!("Bearer {}", self.token);
        let b = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        raw(self.gw.addr, method, path, &[("Authorization", &auth)], &b).unwrap()
    }
    /// `POST /v1/query`.
    pub fn query(&self, sql: &str) -> Resp {
        self.req("POST", "/v1/query", Some(json!({ "sql": sql })))
    }
    /// `POST /v1/query`, asserting 200: the JSON answer.
    pub fn rows(&self, sql: &str) -> Value {
        let r = self.query(sql);
        assert_eq!(r.status, 200, "{sql}: {}", r.text());
        r.json()
    }
    /// An admin call, asserting a 2xx status.
    pub fn admin(&self, method: &str, path: &str, body: Value) -> Value {
        let body = if body.is_null() { None } else { Some(body) };
        let r = self.req(method, path, body);
        assert!(
            (200..300).contains(&r.status),
            "{method} {path}: {} {}",
            r.status,
            r.text()
        );
        r.json()
    }
}

/// Waits until `f` holds.
pub fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
