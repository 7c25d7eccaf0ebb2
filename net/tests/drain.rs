//! Shutdown drain through real sockets: in-flight requests finish and are
//! written whole (even when the client keeps sending), idle keep-alive
//! connections get a clean end of stream, and `Handler::shutdown` runs only
//! once nothing is in flight on any shard.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use net::{Handler, Request, Response, Server, ServerConfig};

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// In-flight requests the shutdown hook saw, plus one (0: not called).
static SEEN_BY_SHUTDOWN: AtomicUsize = AtomicUsize::new(0);

struct Slow;

impl Handler for Slow {
    async fn handle(&self, req: &mut Request<'_>) -> Response {
        let ms: u64 = req
            .query_param("ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        glommio::timer::sleep(Duration::from_millis(ms)).await;
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        Response::new(200).body(vec![b'r'; 500_000])
    }

    async fn shutdown(&self) {
        SEEN_BY_SHUTDOWN.fetch_max(IN_FLIGHT.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
    }
}

fn read_all(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    s.read_to_end(&mut v).map(|_| v)
}

#[test]
fn drain_answers_in_flight_work_then_shuts_the_handler_down() {
    let server = Server::start(
        ServerConfig {
            shards: 2,
            pin_to_cores: false,
            shutdown_deadline: Duration::from_secs(10),
            ..ServerConfig::default()
        },
        |_| async { Slow },
    )
    .unwrap();
    let addr = server.local_addr();
    let connect = || {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    };
    // Idle keep-alive connections (having been served once).
    let mut idle: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect();
            s.write_all(b"GET /x?ms=0 HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            let mut buf = vec![0u8; 600_000];
            let mut got = 0;
            while !buf[..got].ends_with(&[b'r'; 16]) || got < 500_000 {
                got += s.read(&mut buf[got..]).unwrap();
            }
            s
        })
        .collect();
    // Busy ones; one keeps sending after its request while shutdown runs.
    let mut busy: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect();
            s.write_all(b"GET /x?ms=1200 HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    server.shutdown();
    busy[0]
        .write_all(b"GET /x?ms=0 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Idle connections see a clean end of stream promptly.
    for s in &mut idle {
        let rest = read_all(s).expect("clean EOF, not a reset");
        assert!(rest.is_empty());
    }
    assert!(started.elapsed() < Duration::from_millis(1000));
    // Busy ones get their whole answer, marked close, then a clean end.
    for s in &mut busy {
        let all = read_all(s).expect("whole answer, not a reset");
        let text = String::from_utf8_lossy(&all[..200]).to_string();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(all.ends_with(&[b'r'; 1000]));
        let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(all.len() - head_end, 500_000, "exactly one answer");
    }
    server.join().expect("clean join");
    assert_eq!(
        SEEN_BY_SHUTDOWN.load(Ordering::SeqCst),
        1,
        "the handler's shutdown ran, after every in-flight request"
    );
    assert!(TcpStream::connect(addr).is_err());
}
