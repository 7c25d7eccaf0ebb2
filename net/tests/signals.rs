//! Process-level graceful shutdown: the `net-hello` binary, sent SIGTERM
//! while a request is in flight, answers it, stops listening and exits 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child if the test fails before it exits.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(shards: &str) -> (ChildGuard, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_net-hello"))
        .args(["--addr", "127.0.0.1:0", "--shards", shards, "--no-pin"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn net-hello");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("announces its address")
        .parse()
        .unwrap();
    (ChildGuard(child), addr)
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let until = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < until, "process did not exit in {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let (mut child, addr) = start("2");
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut first = vec![0u8; 4096];
    let n = c.read(&mut first).unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));

    c.write_all(b"GET /slow?ms=700 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);

    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    let rest = String::from_utf8(rest).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest}");
    assert!(rest.contains("Connection: close\r\n"), "{rest}");
    assert!(rest.ends_with("slept 700"), "{rest}");

    let status = wait_exit(&mut child.0, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn sigint_on_an_idle_server_exits_zero() {
    let (mut child, _) = start("1");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) }, 0);
    let status = wait_exit(&mut child.0, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_second_signal_stops_at_once() {
    let (mut child, addr) = start("1");
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"GET /slow?ms=30000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    // Still draining (the request has 30 s to go and the deadline is 10 s).
    assert!(child.0.try_wait().unwrap().is_none());
    let started = Instant::now();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) }, 0);
    let status = wait_exit(&mut child.0, Duration::from_secs(5));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!status.success(), "{status:?}");
}
