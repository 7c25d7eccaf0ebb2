//! Hardening over real sockets: admission before the body, the per-shard
//! body budget, the whole-body deadline, absolute-form targets, segmented
//! (vectored) response bodies, and closes that never reset an answer.

mod common;

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::{config, TestServer};
use net::{Limits, ServerConfig};

#[test]
fn admit_refuses_before_the_body_and_keeps_the_connection_when_it_can() {
    let server = TestServer::start(config(1));
    let mut c = server.connect();
    // A small body already here with the head: it is handed to admit, then
    // skipped, and the connection stays usable.
    c.send(b"POST /guarded HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    let r = c.read_response();
    assert_eq!(r.status, 401);
    assert_eq!(r.text(), "refused; body available: true; body: hello");
    assert_eq!(r.header("connection"), None);
    assert_eq!(c.get("/echo?again").text(), "again");

    // A large announced body is refused with no body byte sent: the answer
    // arrives at once and the connection closes.
    let started = Instant::now();
    c.send(b"POST /guarded HTTP/1.1\r\nHost: t\r\nContent-Length: 16000000\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 401);
    assert_eq!(r.text(), "refused; body available: false; body: ");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(c.is_closed());

    // Expect: 100-continue gets the refusal instead of 100 Continue.
    let mut c = server.connect();
    c.send(
        b"POST /guarded HTTP/1.1\r\nHost: t\r\nContent-Length: 300\r\nExpect: 100-continue\r\n\r\n",
    );
    let r = c.read_response();
    assert_eq!(r.status, 401);

    // With the key, the body is read and handled as usual.
    let mut c = server.connect();
    c.send(b"POST /guarded HTTP/1.1\r\nHost: t\r\nX-Key: k\r\nContent-Length: 3\r\n\r\nabc");
    let r = c.read_response();
    assert_eq!((r.status, r.text()), (200, "welcome".to_string()));
    assert_eq!(r.header("x-body-len"), Some("3"));
}

#[test]
fn the_body_budget_turns_away_what_does_not_fit_and_comes_back() {
    let server = TestServer::start(ServerConfig {
        limits: Limits {
            max_body_bytes: 1 << 20,
            body_budget_per_shard: 1 << 20,
            body_budget_wait: Duration::from_millis(300),
            ..Limits::default()
        },
        ..config(1)
    });
    let body = vec![b'x'; 800_000];
    // A holds 800 KB of budget while its body trickles in.
    let mut a = server.connect();
    a.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 800000\r\n\r\n");
    a.send(&body[..1000]);
    thread::sleep(Duration::from_millis(200));
    // B does not fit next to it: 503 after the short wait, and a close.
    let mut b = server.connect();
    let started = Instant::now();
    b.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 800000\r\n\r\n");
    let r = b.read_response();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(started.elapsed() >= Duration::from_millis(250));
    // Small bodies need no budget and pass meanwhile.
    let mut s = server.connect();
    s.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(s.read_response().text(), "ok");
    // A finishes; its budget is given back and C fits.
    a.send(&body[1000..]);
    let r = a.read_response();
    assert_eq!(r.body.len(), 800_000);
    let mut c = server.connect();
    let mut req = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 800000\r\n\r\n".to_vec();
    req.extend_from_slice(&body);
    c.send(&req);
    assert_eq!(c.read_response().body.len(), 800_000);
    // Chunked bodies are budgeted as they grow.
    let mut req = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in body[..600_000].chunks(50_000) {
        req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    c.send(&req);
    assert_eq!(c.read_response().body.len(), 600_000);
}

#[test]
fn a_body_that_trickles_past_its_deadline_is_cut() {
    let server = TestServer::start(ServerConfig {
        limits: Limits {
            body_timeout: Duration::from_millis(600),
            idle_timeout: Duration::from_secs(30),
            ..Limits::default()
        },
        ..config(1)
    });
    let mut c = server.connect();
    let started = Instant::now();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\n\r\n");
    // One byte every 100 ms: never idle long, but the whole body would take 4 s.
    let mut cut = false;
    for _ in 0..40 {
        if c.stream.write_all(b"x").is_err() {
            cut = true;
            break;
        }
        thread::sleep(Duration::from_millis(100));
        let _ = c.stream.set_nonblocking(true);
        let mut b = [0u8; 1];
        let eof = matches!(c.stream.read(&mut b), Ok(0) | Err(_))
            && !matches!(c.stream.read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock);
        let _ = c.stream.set_nonblocking(false);
        if eof {
            cut = true;
            break;
        }
    }
    assert!(cut, "the connection outlived its body deadline");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(3000), "{took:?}");
    // Chunked too.
    let mut c = server.connect();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    let started = Instant::now();
    let mut cut = false;
    for _ in 0..40 {
        if c.stream.write_all(b"1\r\nx\r\n").is_err() {
            cut = true;
            break;
        }
        thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_millis(1500) {
            break;
        }
    }
    // The server has closed by now: reading ends.
    let _ = cut;
    assert!(c.is_closed());
}

#[test]
fn absolute_form_targets_are_served_like_origin_form() {
    let server = TestServer::start(config(1));
    let mut c = server.connect();
    let addr = server.addr;
    c.send(format!("GET http://{addr}/echo?x=1 HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
    let r = c.read_response();
    assert_eq!((r.status, r.text()), (200, "x=1".to_string()));
    c.send(format!("GET HTTP://{addr}/hello HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
    assert_eq!(c.read_response().status, 200);
    // No path at all reads as "/".
    c.send(format!("GET http://{addr} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
    assert_eq!(c.read_response().status, 404);
}

#[test]
fn segmented_bodies_arrive_whole_and_in_order_even_pipelined() {
    let server = TestServer::start(config(1));
    let mut c = server.connect();
    let expect = |n: usize| {
        let mut v = b"<".to_vec();
        v.extend((0..n).map(|i| b'a' + (i % 26) as u8));
        v.push(b'>');
        v
    };
    let r = c.get("/segments?n=3000000");
    assert_eq!(r.header("content-length"), Some("3000002"));
    assert_eq!(r.body, expect(3_000_000));
    // Small and large segmented answers between plain ones, in one pipeline.
    let mut batch = Vec::new();
    let sizes = [10usize, 20_000, 0, 300_000, 5];
    for (i, n) in sizes.iter().enumerate() {
        batch.extend_from_slice(
            format!("GET /segments?n={n} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
        );
        batch.extend_from_slice(format!("GET /echo?i={i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    batch.extend_from_slice(b"HEAD /segments?n=100000 HTTP/1.1\r\nHost: t\r\n\r\n");
    c.send(&batch);
    for (i, n) in sizes.iter().enumerate() {
        assert_eq!(c.read_response().body, expect(*n));
        assert_eq!(c.read_response().text(), format!("i={i}"));
    }
    let r = c.read_response_to(true);
    assert_eq!(r.header("content-length"), Some("100002"));
    assert!(r.body.is_empty());
    assert_eq!(c.get("/echo?end").text(), "end");
}

#[test]
fn a_closing_answer_is_never_turned_into_a_reset() {
    let server = TestServer::start(config(1));
    // The client asks for a close and keeps sending after its request: the
    // answer must arrive whole, followed by a clean end of stream.
    for _ in 0..5 {
        let mut c = server.connect();
        let mut req =
            b"GET /segments?n=200000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec();
        req.extend_from_slice(&vec![b'z'; 100_000]);
        c.send(&req);
        let r = c.read_response();
        assert_eq!(r.body.len(), 200_002);
        let mut rest = Vec::new();
        let end = c.stream.read_to_end(&mut rest);
        assert!(end.is_ok(), "{end:?}");
        assert!(rest.is_empty());
    }
}
