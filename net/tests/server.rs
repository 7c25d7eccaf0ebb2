//! The server over real sockets on real glommio executors: keep-alive,
//! pipelining, partial delivery, bodies, 100-continue, bad input, limits,
//! timeouts, many connections across shards, cross-shard work, shutdown.

mod common;

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::{config, Client, TestServer, HELLO};
use net::{Limits, ServerConfig};

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let server = TestServer::start(config(1));
    let mut c = server.connect();
    for i in 0..50 {
        let r = c.get(&format!("/echo?i={i}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("i={i}"));
        assert_eq!(r.header("connection"), None);
        assert!(r.header("date").unwrap().ends_with(" GMT"));
    }
    let r = c.get("/hello");
    assert_eq!(r.body, HELLO);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("content-length"),
        Some(HELLO.len().to_string().as_str())
    );
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let server = TestServer::start(config(1));
    let mut c = server.connect();
    let mut batch = Vec::new();
    for i in 0..200 {
        if i % 10 == 5 {
            // A body in the middle of the pipeline, chunked.
            batch.extend_from_slice(
                format!("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nb{:02}\r\n0\r\n\r\n", i % 100)
                    .as_bytes(),
            );
        } else {
            batch.extend_from_slice(
                format!("GET /echo?i={i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
            );
        }
    }
    c.send(&batch);
    for i in 0..200 {
        let r = c.read_response();
        assert_eq!(r.status, 200);
        if i % 10 == 5 {
            assert_eq!(r.text(), format!("b{:02}", i % 100));
        } else {
            assert_eq!(r.text(), format!("i={i}"));
        }
    }
}

#[test]
fn a_slow_handler_delays_only_its_own_connection_and_keeps_order() {
    let server = TestServer::start(config(1));
    let mut c = server.connect();
    // A fast request, a 3 s one and a fast one, pipelined: answered in order,
    // and the answer before the slow one is not held back by it.
    let started = Instant::now();
    c.send(b"GET /echo?a HTTP/1.1\r\nHost: t\r\n\r\nGET /slow?ms=3000 HTTP/1.1\r\nHost: t\r\n\r\nGET /echo?c HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().text(), "a");
    let first_took = started.elapsed();
    // Another connection is answered while the slow handler runs.
    let mut other = server.connect();
    assert_eq!(other.get("/echo?other").text(), "other");
    let other_took = started.elapsed();
    assert_eq!(c.read_response().text(), "slept 3000");
    assert!(started.elapsed() >= Duration::from_millis(3000));
    assert_eq!(c.read_response().text(), "c");
    // Generous margins: these only fail if the slow handler blocked them.
    assert!(first_took < Duration::from_millis(2500), "{first_took:?}");
    assert!(other_took < Duration::from_millis(2500), "{other_took:?}");
}

#[test]
fn a_request_delivered_one_byte_at_a_time_is_parsed() {
    let server = TestServer::start(config(1));
    let mut c = server.connect();
    let req = b"POST /echo?x=1 HTTP/1.1\r\nHost: t\r\nX-Long-Header: abcdefghijklmnopqrstuvwxyz\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\n";
    for &b in req.iter() {
        c.send(&[b]);
        thread::sleep(Duration::from_millis(1));
    }
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "wikipedia");
    // And a Content-Length body the same way, on the same connection.
    for &b in b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello".iter() {
        c.send(&[b]);
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(c.read_response().text(), "hello");
}

#[test]
fn bodies_by_length_and_chunked_including_large_ones() {
    let server = TestServer::start(config(1));
    let mut c = server.connect();
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut req = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    req.extend_from_slice(&big);
    c.send(&req);
    let r = c.read_response();
    assert_eq!(r.header("x-body-len"), Some("300000"));
    assert_eq!(r.body, big);

    // The same bytes in uneven chunks.
    let mut req = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in big.chunks(7001) {
        req.extend_from_slice(format!("{:X}\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    c.send(&req);
    let r = c.read_response();
    assert_eq!(r.body, big);

    // In-place mutation through body_mut.
    c.send(b"POST /upper HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n{\"a\":\"bc\"}\n");
    assert_eq!(c.read_response().text(), "{\"A\":\"BC\"}\n");
}

#[test]
fn expect_100_continue_is_answered_before_the_body_is_read() {
    let server = TestServer::start(config(1));
    let mut c = server.connect();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.read_head_raw(), "HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"data");
    let r = c.read_response();
    assert_eq!((r.status, r.text()), (200, "data".to_string()));

    // Chunked, too.
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.read_head_raw(), "HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"2\r\nok\r\n0\r\n\r\n");
    assert_eq!(c.read_response().text(), "ok");

    // Over the body limit: 413 at once, no 100, and the body is never awaited.
    let server = TestServer::start(ServerConfig {
        limits: Limits {
            max_body_bytes: 10,
            ..Limits::default()
        },
        ..config(1)
    });
    let mut c = server.connect();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 413);
    assert_eq!(r.header("connection"), Some("close"));
}

/// Every bad-input case: its status, a JSON error, and the connection closed.
#[test]
fn bad_input_gets_its_status_and_the_connection_closes() {
    let server = TestServer::start(config(1));
    let cases: &[(&[u8], u16)] = &[
        (b"GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n", 400),
        (b"GET\t/ HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost t\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n  folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", 400),
        // chunked must be the final coding (RFC 9112 §6.3)...
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
        // ...and any other coding is not implemented.
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"GET / HTTP/0.9\r\n\r\n", 505),
    ];
    for (req, status) in cases {
        let mut c = server.connect();
        c.send(req);
        let r = c.read_response();
        let shown = String::from_utf8_lossy(req);
        assert_eq!(r.status, *status, "{shown}");
        assert_eq!(r.header("connection"), Some("close"), "{shown}");
        assert!(r.text().contains("\"error\""), "{shown}");
        assert!(c.is_closed(), "{shown}: connection left open");
    }
    // The shard is still serving everyone else.
    assert_eq!(server.connect().get("/hello").body, HELLO);
}

#[test]
fn header_and_body_limits() {
    let server = TestServer::start(ServerConfig {
        limits: Limits {
            max_header_bytes: 1024,
            max_body_bytes: 1000,
            ..Limits::default()
        },
        ..config(1)
    });
    // Just under the header limit works.
    let mut c = server.connect();
    let pad = "x".repeat(900);
    let r = c.get(&format!("/echo?{pad}"));
    assert_eq!(r.status, 200);
    // Over it, complete or not: 431.
    for complete in [true, false] {
        let mut c = server.connect();
        let pad = "x".repeat(2000);
        let end = if complete { "\r\n\r\n" } else { "" };
        c.send(format!("GET /echo HTTP/1.1\r\nHost: t\r\nX-Pad: {pad}{end}").as_bytes());
        let r = c.read_response();
        assert_eq!(r.status, 431);
        assert!(c.is_closed());
    }
    // Too many headers: 431.
    let mut req = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..150 {
        req.push_str(&format!("H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let server2 = TestServer::start(config(1));
    let mut c2 = server2.connect();
    c2.send(req.as_bytes());
    assert_eq!(c2.read_response().status, 431);

    // Body: exactly at the limit works, one over is refused from the
    // Content-Length alone (the body is never sent).
    let mut c = server.connect();
    let mut req = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n".to_vec();
    req.extend_from_slice(&[b'b'; 1000]);
    c.send(&req);
    assert_eq!(c.read_response().body.len(), 1000);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 413);
    assert!(c.is_closed());
    // Chunked over the limit: 413 as soon as the chunk size says so.
    let mut c = server.connect();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3E9\r\n");
    assert_eq!(c.read_response().status, 413);
}

#[test]
fn slowloris_and_idle_connections_are_closed() {
    let server = TestServer::start(ServerConfig {
        limits: Limits {
            header_timeout: Duration::from_millis(700),
            idle_timeout: Duration::from_millis(1500),
            ..Limits::default()
        },
        ..config(1)
    });
    // A head trickled one byte every 100 ms never completes in time.
    let mut c = server.connect();
    let started = Instant::now();
    let mut closed = false;
    for &b in b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n".iter() {
        if c.stream.write_all(&[b]).is_err() {
            closed = true;
            break;
        }
        thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    if !closed {
        closed = c.is_closed();
    }
    assert!(closed, "slowloris connection still open");
    assert!(started.elapsed() < Duration::from_secs(15));

    // An idle keep-alive connection is closed after the idle timeout, not before
    // the header timeout would have fired.
    let mut c = server.connect();
    assert_eq!(c.get("/hello").status, 200);
    let idle_started = Instant::now();
    assert!(c.is_closed());
    assert!(idle_started.elapsed() >= Duration::from_millis(1000));
    // A connection that never sends anything is idle too.
    let mut c = server.connect();
    assert!(c.is_closed());
}

#[test]
fn http10_keep_alive_only_on_request_and_connection_close_honoured() {
    let server = TestServer::start(config(1));
    let mut c = server.connect();
    c.send(b"GET /echo?a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.header("connection"), Some("keep-alive"));
    c.send(b"GET /echo?b HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.text(), "b");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed());

    let mut c = server.connect();
    c.send(b"GET /echo?x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /echo?never HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response();
    assert_eq!(
        (r.text().as_str(), r.header("connection")),
        ("x", Some("close"))
    );
    assert!(c.is_closed());
}

#[test]
fn head_query_params_headers_and_streams() {
    let server = TestServer::start(config(1));
    let mut c = server.connect();
    c.send(b"HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response_to(true);
    assert_eq!(
        r.header("content-length"),
        Some(HELLO.len().to_string().as_str())
    );
    // The next response follows directly: no body was sent for HEAD.
    let r = c.get("/param?name=q&q=a%20b+c%2Fd%zz&other=1");
    assert_eq!(r.text(), "a b c/d%zz");
    let r = c.get("/param?name=k%C3%A9y&k%C3%A9y=%E2%9C%93");
    assert_eq!(r.text(), "\u{2713}");
    assert_eq!(c.get("/param?name=missing").status, 404);
    c.send(b"GET /header?name=x-custom-HEADER HTTP/1.1\r\nHost: t\r\nX-Custom-Header:   spaced value  \r\n\r\n");
    assert_eq!(c.read_response().text(), "spaced value");
    // 204: no Content-Length, no body, and the connection goes on.
    c.send(b"DELETE /thing HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response();
    assert_eq!((r.status, r.header("content-length")), (204, None));
    let r = c.get("/stream");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.text(), "one,two,three");
    // A streamed response to HTTP/1.0 ends with the connection.
    let mut c = server.connect();
    c.send(b"GET /stream HTTP/1.0\r\n\r\n");
    let mut all = Vec::new();
    c.stream.read_to_end(&mut all).unwrap();
    let all = String::from_utf8(all).unwrap();
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(all.ends_with("\r\n\r\none,two,three"), "{all}");
}

#[test]
fn many_concurrent_connections_across_shards() {
    let server = TestServer::start(config(2));
    let addr = server.addr;
    assert_ne!(addr.port(), 0);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            thread::spawn(move || {
                let mut clients: Vec<Client> = (0..25).map(|_| Client::connect(addr)).collect();
                let mut shards = [0usize; 2];
                for round in 0..4 {
                    for (i, c) in clients.iter_mut().enumerate() {
                        c.send(format!("GET /echo?{t}-{i}-{round} HTTP/1.1\r\nHost: t\r\n\r\nGET /shard HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
                    }
                    for (i, c) in clients.iter_mut().enumerate() {
                        assert_eq!(c.read_response().text(), format!("{t}-{i}-{round}"));
                        let shard: usize = c.read_response().text().parse().unwrap();
                        shards[shard] += 1;
                    }
                }
                shards
            })
        })
        .collect();
    let mut total = [0usize; 2];
    for t in threads {
        let s = t.join().unwrap();
        total[0] += s[0];
        total[1] += s[1];
    }
    assert_eq!(total[0] + total[1], 8 * 25 * 4);
    assert!(
        total[0] > 0 && total[1] > 0,
        "both shards served: {total:?}"
    );
}

#[test]
fn connections_over_the_per_shard_limit_get_503() {
    let server = TestServer::start(ServerConfig {
        limits: Limits {
            max_connections_per_shard: 2,
            ..Limits::default()
        },
        ..config(1)
    });
    let mut a = server.connect();
    let mut b = server.connect();
    assert_eq!(a.get("/hello").status, 200);
    assert_eq!(b.get("/hello").status, 200);
    let mut c = server.connect();
    let r = c.read_response();
    assert_eq!(r.status, 503);
    assert!(c.is_closed());
    drop(a);
    // Once one closes, a new connection is served again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut d = server.connect();
        d.send(b"GET /echo?ok HTTP/1.1\r\nHost: t\r\n\r\n");
        if d.read_response().status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never admitted again");
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.get("/hello").status, 200);
}

#[test]
fn handlers_can_hand_work_to_another_shard() {
    let server = TestServer::start_with_mesh(config(2));
    for i in 0..20 {
        let mut c = server.connect();
        let r = c.get(&format!("/cross?n{i}"));
        let text = r.text();
        // The peer shard answered for the shard that took the request.
        let (peer, from) = (
            text.as_bytes()[6] - b'0',
            text.as_bytes()[text.len() - 1] - b'0',
        );
        assert_ne!(peer, from, "{text}");
        assert!(text.contains(&format!("answered n{i}")), "{text}");
    }
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests_and_refuses_new_ones() {
    let server = TestServer::start(config(2));
    let addr = server.addr;
    let mut idle = server.connect();
    assert_eq!(idle.get("/hello").status, 200);
    let mut busy = server.connect();
    busy.send(b"GET /slow?ms=800 HTTP/1.1\r\nHost: t\r\n\r\n");
    thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    server.handle().shutdown();
    // The in-flight request completes, with Connection: close.
    let r = busy.read_response();
    assert_eq!(r.text(), "slept 800");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(busy.is_closed());
    // The idle keep-alive connection is closed.
    assert!(idle.is_closed());
    server.stop().expect("clean join");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Nobody listens any more.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn a_connection_accepted_before_shutdown_gets_its_first_request_answered() {
    let server = TestServer::start(config(2));
    // Accepted (the shard accepts at once; 200 ms is ample), nothing sent yet:
    // the client connected to send a request and is about to.
    let mut late = server.connect();
    let mut silent = server.connect();
    thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    server.handle().shutdown();
    thread::sleep(Duration::from_millis(50));
    late.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = late.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
    assert!(late.is_closed());
    // One that never sends is closed cleanly after the grace, not kept.
    assert!(silent.is_closed());
    server.stop().expect("clean join");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn hundreds_of_silent_or_vanishing_connections_cannot_hold_shutdown() {
    let server = TestServer::start(config(2));
    // An attacker's pattern at shutdown: many connections that connect and
    // never speak (each would be owed the fresh grace), some that send half
    // a head and some that vanish right after connecting.
    let mut silent: Vec<_> = (0..300).map(|_| server.connect()).collect();
    let mut half: Vec<_> = (0..20)
        .map(|_| {
            let mut c = server.connect();
            c.send(b"GET /hello HTTP/1.1\r\nHo");
            c
        })
        .collect();
    for _ in 0..50 {
        drop(server.connect());
    }
    let mut late = server.connect();
    thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    server.handle().shutdown();
    late.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = late.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
    // Every silent one is closed after one shared grace, not one grace each.
    for c in &mut silent {
        assert!(c.is_closed());
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "silent connections held shutdown for {:?}",
        started.elapsed()
    );
    server.stop().expect("clean join");
    // Half heads are cut by the header timeout or the shutdown deadline.
    for c in &mut half {
        assert!(c.is_closed());
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn shutdown_deadline_bounds_slow_requests() {
    let server = TestServer::start(ServerConfig {
        shutdown_deadline: Duration::from_millis(300),
        ..config(1)
    });
    let mut busy = server.connect();
    busy.send(b"GET /slow?ms=30000 HTTP/1.1\r\nHost: t\r\n\r\n");
    thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    server.stop().expect("clean join");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(busy.is_closed());
}

#[test]
fn port_in_use_is_a_typed_error() {
    let server = TestServer::start(config(1));
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    let err = net::Server::start(
        ServerConfig {
            addr: taken,
            ..config(1)
        },
        |shard| common::Router::new(shard, None),
    )
    .err()
    .expect("bind must fail");
    assert!(matches!(err, net::ServerError::Bind { .. }), "{err}");
    let err = net::Server::start(
        ServerConfig {
            shards: 0,
            ..config(1)
        },
        |shard| common::Router::new(shard, None),
    )
    .err()
    .unwrap();
    assert!(matches!(err, net::ServerError::NoShards));
    drop(server);
}

#[test]
fn a_panicking_handler_gets_500_and_the_shard_keeps_serving() {
    let server = TestServer::start(config(1));
    let mut c = server.connect();
    let r = c.get("/panic");
    assert_eq!(r.status, 500);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed());
    for _ in 0..3 {
        assert_eq!(server.connect().get("/hello").body, HELLO);
    }
}

#[test]
fn a_factory_that_panics_fails_start_with_a_typed_error() {
    let err = net::Server::start(config(2), |shard| async move {
        if shard.id == 1 {
            panic!("factory refuses shard 1");
        }
        common::Router::new(shard, None).await
    })
    .err()
    .expect("start must fail");
    assert!(
        matches!(err, net::ServerError::ShardPanicked { shard: 1 }),
        "{err}"
    );
}
