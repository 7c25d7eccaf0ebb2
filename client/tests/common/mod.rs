//! Test harness: starts the real `compute-agent` binary of this workspace on a free
//! loopback port (killed on drop), a raw blocking HTTP/1.1 helper for requests the
//! client would never send (unsigned, stale, tampered), and a tokio runtime.
//!
//! The agent binary is found next to the test executable's directory
//! (`target/release/compute-agent`, built by `cargo test --release --workspace`), or
//! at `$COMPUTE_AGENT_BIN`. Never talks to anything but 127.0.0.1.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "client-test-token";
pub const PATIENCE: Duration = Duration::from_secs(60);

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// The agent binary built by the workspace.
pub fn agent_bin() -> PathBuf {
    if let Ok(p) = std::env::var("COMPUTE_AGENT_BIN") {
        return PathBuf::from(p);
    }
    // target/release/deps/<test>-<hash> -> target/release/compute-agent
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("compute-agent");
    assert!(
        bin.exists(),
        "{} not found: build the workspace first (cargo test --release --workspace), or set COMPUTE_AGENT_BIN",
        bin.display()
    );
    bin
}

pub fn scratch_dir(tag: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("client-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub use testkit::free_port;

/// A running agent; killed on drop.
pub struct Agent {
    child: Option<Child>,
    pub addr: SocketAddr,
    envs: Vec<(String, String)>,
    log_path: PathBuf,
}

impl Agent {
    /// An agent with the test token, 2 shards, and these extra variables.
    pub fn start(envs: &[(&str, &str)]) -> Agent {
        for _ in 0..5 {
            if let Some(a) = Agent::try_start_on(free_port(), envs) {
                return a;
            }
        }
        panic!("agent did not start");
    }

    /// Starts on a given port (to bring an agent back where its clients expect it).
    pub fn try_start_on(port: u16, envs: &[(&str, &str)]) -> Option<Agent> {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log_path = scratch_dir("agent").join("agent.log");
        let log = File::create(&log_path).unwrap();
        let mut cmd = Command::new(agent_bin());
        cmd.env_clear();
        for key in ["PATH", "HOME", "TMPDIR"] {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        cmd.env("AGENT_TOKEN", TOKEN)
            .env("SHARDS", "2")
            .env("LOG_LEVEL", "info")
            .env("REACTOR_PRIORITY", "normal")
            .env("LISTEN_ADDR", addr.to_string());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let child = cmd.spawn().expect("spawn compute-agent");
        let mut a = Agent {
            child: Some(child),
            addr,
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log_path,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(_st) = a.child.as_mut().unwrap().try_wait().unwrap() {
                eprintln!("agent exited early: {}", a.log());
                a.child = None;
                return None;
            }
            if raw(a.addr, "GET", "/health", &[], b"").is_ok_and(|r| r.status == 200) {
                return Some(a);
            }
            if Instant::now() > deadline {
                panic!("agent not ready: {}", a.log());
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL: the agent dies without draining (a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the agent again on the same port with the same settings.
    pub fn restart(&mut self) {
        self.kill();
        let envs: Vec<(String, String)> = self.envs.clone();
        let refs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(mut a) = Agent::try_start_on(self.addr.port(), &refs) {
                self.child = a.child.take();
                self.log_path = a.log_path.clone();
                return;
            }
            assert!(Instant::now() < deadline, "agent did not restart");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `/health` as JSON.
    pub fn health(&self) -> serde_json::Value {
        let r = raw(self.addr, "GET", "/health", &[], b"").expect("health");
        serde_json::from_slice(&r.body).unwrap()
    }

    /// One sample of `/metrics` by exact series name (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        let r = raw(self.addr, "GET", "/metrics", &[], b"").expect("metrics");
        let text = String::from_utf8_lossy(&r.body).into_owned();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// POST /execute with the token, asserting 200; the JSON body.
    pub fn execute(&self, sql: &str) -> serde_json::Value {
        let body = serde_json::to_vec(&serde_json::json!({ "sql": sql })).unwrap();
        let r = raw(
            self.addr,
            "POST",
            "/execute",
            &[("X-Agent-Token", TOKEN)],
            &body,
        )
        .unwrap();
        assert_eq!(r.status, 200, "{sql}: {}", String::from_utf8_lossy(&r.body));
        serde_json::from_slice(&r.body).unwrap()
    }

    /// Waits until `f(health)` holds (a few seconds on a noisy machine).
    pub fn wait_health(&self, what: &str, f: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let h = self.health();
            if f(&h) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: {h}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One raw response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One request on a fresh connection.
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
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Resp { status, body })
}

/// A multi-threaded tokio runtime for one test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A deadline `d` from now.
pub fn after(d: Duration) -> Instant {
    Instant::now() + d
}

/// A statement that runs for a long time (interruptible).
pub const SLOW_SQL: &str = "SELECT sum(hash(i)) FROM range(100000000000) r(i)";
