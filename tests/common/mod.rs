//! Test harness: starts the real `compute-agent` binary on a free loopback port, waits
//! for /health, and kills it on drop; plus a small blocking HTTP/1.1 client over
//! `std::net::TcpStream` and strict JSON parsing (serde_json rejects NaN, bare
//! control characters and trailing garbage).
//!
//! Never talks to anything but 127.0.0.1.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use serde_json::Value;

/// Pass as a variable's value to leave the variable out of the agent's environment.
pub const UNSET: &str = "\0unset";
pub const TOKEN: &str = "test-token-123";
pub const BIN: &str = env!("CARGO_BIN_EXE_compute-agent");

/// How long a test waits for things that should be quick on a quiet machine; the
/// machine is noisy, so this is generous and never a speed assertion.
pub const PATIENCE: Duration = Duration::from_secs(60);

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A scratch directory unique to this process and call, removed by the caller at will.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "compute-agent-test-{}-{tag}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub use testkit::free_port;

/// A running agent process; killed (and reaped) on drop.
pub struct Agent {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub log_path: PathBuf,
}

/// Outcome of a start-up that is expected to fail.
pub struct Exited {
    pub status: ExitStatus,
    pub stderr: String,
}

fn command(envs: &[(&str, &str)], log: &File) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear();
    // Keep PATH/HOME so DuckDB behaves normally; nothing else leaks in.
    for key in ["PATH", "HOME", "TMPDIR"] {
        if let Ok(v) = std::env::var(key) {
            cmd.env(key, v);
        }
    }
    // Normal CPU priority unless a test asks for real time: the default
    // (`auto`: SCHED_FIFO where the process may, as root here) lets several
    // agents started at once by parallel tests starve every normal thread
    // of a two-core machine, their own start-up and logging included (seen
    // as agents silent for 60 s). The tests of the priority set it.
    cmd.env("AGENT_TOKEN", TOKEN)
        .env("SHARDS", "2")
        .env("REACTOR_PRIORITY", "normal")
        .env("LOG_LEVEL", "debug");
    for (k, v) in envs {
        if *v == UNSET {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.try_clone().unwrap());
    cmd
}

impl Agent {
    /// Starts an agent with the test token, 2 shards and these extra variables
    /// (an empty value removes a default, e.g. `("AGENT_TOKEN", "")`).
    pub fn start(envs: &[(&str, &str)]) -> Agent {
        Agent::start_with_args(envs, &[])
    }

    /// Like [`Agent::start`], with command-line arguments too.
    pub fn start_with_args(envs: &[(&str, &str)], args: &[&str]) -> Agent {
        let mut last = String::new();
        // The free port can be taken between our probe and the agent's bind: retry.
        for _ in 0..5 {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let listen = addr.to_string();
            let mut all: Vec<(&str, &str)> = vec![("LISTEN_ADDR", listen.as_str())];
            all.extend_from_slice(envs);
            let dir = scratch_dir("log");
            let log_path = dir.join("agent.log");
            let log = File::create(&log_path).unwrap();
            let child = command(&all, &log)
                .args(args)
                .spawn()
                .expect("spawn compute-agent");
            let mut agent = Agent {
                child: Some(child),
                addr,
                log_path,
            };
            match agent.wait_ready() {
                Ok(()) => return agent,
                Err(e) => {
                    last = format!("{e}\n--- agent log ---\n{}", agent.log());
                    if !last.contains("in use") {
                        break;
                    }
                }
            }
        }
        panic!("agent did not start: {last}");
    }

    /// Runs the binary expecting it to exit by itself (config errors); kills it after
    /// `PATIENCE` if it does not.
    pub fn run_to_exit(envs: &[(&str, &str)], args: &[&str]) -> Exited {
        let dir = scratch_dir("exit");
        let log_path = dir.join("agent.log");
        let log = File::create(&log_path).unwrap();
        let port = free_port().to_string();
        let listen = format!("127.0.0.1:{port}");
        let mut all: Vec<(&str, &str)> = vec![("LISTEN_ADDR", listen.as_str())];
        all.extend_from_slice(envs);
        let mut cmd = command(&all, &log);
        cmd.args(args);
        let mut child = cmd.spawn().expect("spawn compute-agent");
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "agent did not exit: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Exited {
            status,
            stderr: std::fs::read_to_string(&log_path).unwrap_or_default(),
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("agent exited early: {st}"));
            }
            if let Ok(mut c) = Client::connect(self.addr) {
                if let Ok(r) = c.try_request("GET", "/health", &[], None) {
                    if r.status == 200 {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err("timed out waiting for /health".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The agent's stderr so far (JSON log lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// A fresh keep-alive connection that sends the right token.
    pub fn client(&self) -> Client {
        let mut c = Client::connect(self.addr).expect("connect to agent");
        c.token = Some(TOKEN.to_string());
        c
    }

    /// GET /health as JSON.
    pub fn health(&self) -> Value {
        let r = self.client().get("/health");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// Sends SIGTERM and waits for the process to exit, returning its status.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("agent ignored SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Strict JSON parse of the body; panics with the body on failure.
    pub fn json(&self) -> Value {
        let text = std::str::from_utf8(&self.body)
            .unwrap_or_else(|_| panic!("body is not UTF-8: {:?}", self.body));
        serde_json::from_str(text).unwrap_or_else(|e| panic!("invalid JSON ({e}): {text}"))
    }

    /// Asserts the contract's error shape and returns the parsed body.
    pub fn expect_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "status for {}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{}",
            self.text()
        );
        let v = self.json();
        assert_eq!(v["code"], code, "{v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
        v
    }
}

/// A blocking HTTP/1.1 client on one keep-alive connection; reconnects after the
/// server closes it.
pub struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    pub token: Option<String>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let mut c = Client {
            addr,
            conn: None,
            token: None,
        };
        c.ensure()?;
        Ok(c)
    }

    fn ensure(&mut self) -> std::io::Result<&mut BufReader<TcpStream>> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(10))?;
            s.set_read_timeout(Some(PATIENCE * 2))?;
            s.set_nodelay(true)?;
            self.conn = Some(BufReader::new(s));
        }
        Ok(self.conn.as_mut().unwrap())
    }

    /// The raw stream, for tests that write malformed bytes.
    pub fn raw(&mut self) -> &mut TcpStream {
        self.ensure().unwrap().get_mut()
    }

    pub fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> std::io::Result<Resp> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        if let Some(t) = &self.token {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("x-agent-token"))
            {
                req.push_str(&format!("X-Agent-Token: {t}\r\n"));
            }
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        if let Some(b) = body {
            bytes.extend_from_slice(b);
        }
        let conn = self.ensure()?;
        conn.get_mut().write_all(&bytes)?;
        let resp = read_response(conn);
        match &resp {
            Ok(r)
                if r.header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close")) =>
            {
                self.conn = None
            }
            Err(_) => self.conn = None,
            _ => {}
        }
        resp
    }

    /// Writes `bytes` as they are (a whole request, for bytes `request` cannot
    /// put in a header) and reads one response.
    pub fn raw_request(&mut self, bytes: &[u8]) -> Resp {
        let conn = self.ensure().unwrap();
        conn.get_mut().write_all(bytes).unwrap();
        let resp = read_response(conn).unwrap();
        if resp
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            self.conn = None;
        }
        resp
    }

    /// Sends a request; on a connection the server had already closed, retries once.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        match self.try_request(method, path, headers, body) {
            Ok(r) => r,
            Err(_) => self
                .try_request(method, path, headers, body)
                .unwrap_or_else(|e| panic!("{method} {path}: {e}")),
        }
    }

    pub fn get(&mut self, path: &str) -> Resp {
        self.request("GET", path, &[], None)
    }

    pub fn delete(&mut self, path: &str) -> Resp {
        self.request("DELETE", path, &[], None)
    }

    pub fn post(&mut self, path: &str, body: &Value) -> Resp {
        let b = serde_json::to_vec(body).unwrap();
        self.request("POST", path, &[], Some(&b))
    }

    /// POST /execute of `sql`, asserting 200; returns the body.
    pub fn execute(&mut self, sql: &str) -> Value {
        let r = self.post("/execute", &serde_json::json!({ "sql": sql }));
        assert_eq!(r.status, 200, "{sql}: {}", r.text());
        r.json()
    }

    /// POST /queries, asserting 202; returns the query id.
    pub fn submit(&mut self, sql: &str) -> String {
        let r = self.post("/queries", &serde_json::json!({ "sql": sql }));
        assert_eq!(r.status, 202, "{sql}: {}", r.text());
        r.json()["query_id"].as_str().unwrap().to_string()
    }

    /// Long-polls until the job is terminal; returns the status body.
    pub fn wait_terminal(&mut self, id: &str) -> Value {
        let deadline = Instant::now() + PATIENCE * 2;
        loop {
            let r = self.get(&format!("/queries/{id}?wait_ms=5000"));
            assert_eq!(r.status, 200, "{}", r.text());
            let v = r.json();
            if matches!(
                v["status"].as_str(),
                Some("SUCCEEDED" | "FAILED" | "CANCELED")
            ) {
                return v;
            }
            assert!(Instant::now() < deadline, "job {id} never finished: {v}");
        }
    }
}

fn read_response(conn: &mut BufReader<TcpStream>) -> std::io::Result<Resp> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if version != "HTTP/1.1" {
        return Err(bad(&format!("bad status line {line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').ok_or_else(|| bad("bad header"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                line.clear();
                conn.read_line(&mut line)?;
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            conn.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            conn.read_exact(&mut crlf)?;
        }
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        body.resize(len, 0);
        conn.read_exact(&mut body)?;
    } else if status != 204 && status != 304 {
        return Err(bad("response without length"));
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// Waits until `f` returns Some, polling every 20 ms, up to `PATIENCE`.
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Parses an RFC 3339 UTC timestamp ("2026-11-26T12:43:00.5Z") into seconds since the
/// epoch, strictly: the shape must be exactly that, with a 'Z' offset.
pub fn parse_rfc3339_utc(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || !s.ends_with('Z')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let frac = &s[19..s.len() - 1];
    let frac: f64 = if frac.is_empty() {
        0.0
    } else {
        if !frac.starts_with('.')
            || frac.len() < 2
            || !frac[1..].bytes().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        format!("0{frac}").parse().ok()?
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // days_from_civil (proleptic Gregorian).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + se) as f64 + frac)
}

/// Seconds since the epoch, now.
pub fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// SQL that keeps a DuckDB worker busy for far longer than any test (until interrupted).
pub const LONG_SQL: &str = "SELECT sum(hash(i)) FROM range(0, 1000000000000) t(i)";
