//! Memory before the body: many connections announcing the largest body and
//! sending almost none of it must not make the server allocate the
//! announced sizes. Alone in its own test binary, so the process's resident
//! memory is this test's.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{config, TestServer};
use net::{Limits, ServerConfig};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn announced_bodies_do_not_allocate_before_their_bytes_arrive() {
    // A budget large enough to admit every request: only buffer growth is
    // under test here (the budget has its own test).
    let server = TestServer::start(ServerConfig {
        limits: Limits {
            body_budget_per_shard: 1 << 40,
            ..Limits::default()
        },
        ..config(1)
    });
    let before = rss_kib();
    let mut conns = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 16777216\r\n\r\n")
            .unwrap();
        s.write_all(&[b'x'; 100]).unwrap();
        conns.push(s);
    }
    std::thread::sleep(Duration::from_millis(1000));
    let grown = rss_kib().saturating_sub(before);
    // Announced: 200 x 16 MiB = 3.2 GiB. Allowed: a few MiB of buffers.
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
    drop(conns);
}
