//! The HTTP client against a real socket: a std TcpListener server that
//! answers with the framings a server may use (Content-Length in pieces,
//! chunked, close-delimited), so keep-alive reuse and framing are proven on
//! real TCP, and loadgen's handling of an unreachable target.

mod common;

use loadgen::http::{Conn, HttpError};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn read_request(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut b).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Serves one connection: each request's path picks the framing.
fn serve(listener: TcpListener) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut served = 0;
        while let Some(req) = read_request(&mut s) {
            served += 1;
            let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
            let pieces: Vec<&[u8]> = match path.as_str() {
                "/length" => vec![
                    b"HTTP/1.1 200 OK\r\nContent-Le",
                    b"ngth: 11\r\n\r\nhello",
                    b" world",
                ],
                "/chunked" => vec![
                    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe",
                    b"llo\r\n6\r\n world\r\n0\r\n",
                    b"\r\n",
                ],
                "/continue" => vec![
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                ],
                _ => vec![b"HTTP/1.0 200 OK\r\n\r\nuntil close"],
            };
            for p in pieces {
                s.write_all(p).unwrap();
                s.flush().unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
            if path == "/close" {
                break;
            }
        }
        served
    })
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

#[test]
fn keep_alive_framings_over_real_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve(listener);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = Conn::connect(addr).await.unwrap();
        for _ in 0..2 {
            let r = c.send(&get("/length"), false).await.unwrap();
            assert_eq!((r.status, r.body), (200, &b"hello world"[..]));
            let r = c.send(&get("/chunked"), false).await.unwrap();
            assert_eq!((r.status, r.body), (201, &b"hello world"[..]));
            let r = c.send(&get("/continue"), false).await.unwrap();
            assert_eq!((r.status, r.body), (200, &b"ok"[..]));
            assert!(c.is_open());
        }
        let r = c.send(&get("/close"), false).await.unwrap();
        assert_eq!(r.body, b"until close");
        assert!(
            !c.is_open(),
            "a close-delimited response ends the connection"
        );
        assert!(matches!(
            c.send(&get("/length"), false).await,
            Err(HttpError::Closed)
        ));
    });
    assert_eq!(
        server.join().unwrap(),
        7,
        "every request went over the one connection"
    );
}

#[test]
fn server_hanging_up_mid_response_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        read_request(&mut s);
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
            .unwrap();
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = Conn::connect(addr).await.unwrap();
        let e = c.send(&get("/"), false).await.unwrap_err();
        assert!(matches!(e, HttpError::Closed), "{e:?}");
        assert!(!c.is_open());
    });
    t.join().unwrap();
}

#[test]
fn unreachable_agent_exits_3_with_a_clear_message() {
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let out = common::loadgen(
        &[
            "run",
            "--scenario",
            "health",
            "--url",
            &url,
            "--duration",
            "1s",
            "--no-progress",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not reachable"), "{err}");
}

#[test]
fn bad_flags_exit_2_before_any_load() {
    for args in [
        &["run", "--rate", "-5", "--url", "http://127.0.0.1:1"][..],
        &["run", "--duration", "soon"][..],
        &["run", "--url", "https://x:1"][..],
        &["run", "--scenario", "mixed", "--mix", "health=1,bogus=2"][..],
        &["capacity", "--start-rate", "100", "--max-rate", "10"][..],
    ] {
        let out = common::loadgen(args, Duration::from_secs(30));
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty());
    }
}
