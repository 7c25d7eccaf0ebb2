//! Hostile requests, generated (issue 19, item 7): thousands of requests to
//! the real `compute-gateway` over raw TCP, built from the real routes with
//! their paths, query strings, headers and bodies mutated byte by byte
//! (percent-escapes cut short or followed by multi-byte characters, invalid
//! UTF-8, NULs, long and repeated parameters, JSON cut, nested or of the
//! wrong types, numbers out of range, wrong and missing tokens, admin bodies
//! with junk). Every request whose head is well-formed HTTP must get an
//! answer below 500; a malformed head may be answered 4xx or closed; the
//! process never dies and keeps serving everyone else (checked between
//! batches). Seeded and reproducible: `FUZZ_SEED=<n>` and `FUZZ_REQUESTS=<n>`
//! replay or extend a run; the seed is printed on failure.

mod harness;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use harness::*;
use serde_json::json;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    fn chance(&mut self, in_n: usize) -> bool {
        self.below(in_n) == 0
    }
}

/// Byte strings that decoders trip on.
const NASTY: &[&[u8]] = &[
    b"%",
    b"%a",
    b"%a\xc3\xa9",
    b"%\xc3\xa9",
    b"%ff%fe",
    b"%00",
    b"%C3",
    b"%2",
    b"\xf0\x90\x8d\x88%2",
    b"\xc3",
    b"\xff\xfe",
    b"..",
    b"../../etc/passwd",
    b"%2e%2e%2f",
    b"+",
    b"=",
    b"&&",
    b"?",
    b"#",
    b"//",
    b";",
    b"'",
    b"\"",
    b"\\",
    b"\x00",
    b"MTA=",
    b"-1",
    b"18446744073709551616",
    b"1e308",
    b"NaN",
    b"9999999999999999999999",
];

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/query"),
    ("POST", "/v1/queries"),
    ("GET", "/v1/queries/{id}"),
    ("GET", "/v1/queries/{id}/results"),
    ("POST", "/v1/queries/{id}/cancel"),
    ("DELETE", "/v1/queries/{id}"),
    ("GET", "/v1/history"),
    ("GET", "/admin/queries"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/compute-endpoints"),
    ("POST", "/compute-endpoints"),
    ("GET", "/compute-endpoints/{id}/health"),
    ("POST", "/compute-endpoints/{id}/assignments"),
    ("PUT", "/admin/users/{id}"),
    ("POST", "/admin/tokens"),
    ("POST", "/admin/grants"),
    ("POST", "/admin/row-filters"),
    ("POST", "/admin/column-masks"),
    ("DELETE", "/admin/grants/{id}"),
];

const PARAMS: &[&str] = &[
    "wait_ms",
    "page_token",
    "max_results",
    "since",
    "outcome",
    "limit",
    "user",
];

const BODIES: &[&str] = &[
    r#"{"sql": "SELECT 1"}"#,
    r#"{"sql": "SELECT id, email FROM people"}"#,
    r#"{"sql": 5}"#,
    r#"{"sql": null}"#,
    r#"{"sql": "SELECT 1", "extra": true}"#,
    r#"{"name": "x", "url": "http://127.0.0.1:1", "type": "REMOTE", "auth_token": "t"}"#,
    r#"{"principal": "eve", "principal_type": "user", "table": "people"}"#,
    r#"{"principal": "eve", "principal_type": "user", "table": "people", "predicate": "1=1"}"#,
    r#"{"principal": "eve", "principal_type": "user", "table": "people", "column": "email", "expression": "'x'"}"#,
    r#"{"user": "eve"}"#,
    r#"{"principal": "eve", "principal_type": "user", "is_default": true}"#,
    "[]",
    "",
];

/// Longest mutated piece.
const MAX_PIECE: usize = 16 << 10;

/// One mutated byte string: a real piece, with nasty bytes spliced in,
/// cut, or repeated.
fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..=rng.below(3) {
        match rng.below(5) {
            0 => {
                let at = rng.below(v.len() + 1);
                let n: &[u8] = rng.pick(NASTY);
                v.splice(at..at, n.iter().copied());
            }
            1 if !v.is_empty() => {
                let at = rng.below(v.len());
                v.truncate(at);
            }
            2 if !v.is_empty() => {
                let at = rng.below(v.len());
                v[at] = rng.next() as u8;
            }
            3 => {
                // Repeated, up to a bound (long, not memory-eating).
                let times = 1 + rng.below(50);
                let piece = v.clone();
                for _ in 0..times {
                    if v.len() + piece.len() > MAX_PIECE {
                        break;
                    }
                    v.extend_from_slice(&piece);
                }
            }
            _ => {}
        }
    }
    v
}

/// One request's bytes, and whether its head is well-formed HTTP/1.1.
fn request(rng: &mut Rng, addr: SocketAddr, tokens: &[String]) -> (Vec<u8>, bool) {
    let (method, route) = rng.pick(ROUTES);
    let id =
        String::from_utf8_lossy(&mutate(rng, b"6f1c2d3e-0000-4000-8000-000000000000")).into_owned();
    let mut path = route.replace("{id}", "").into_bytes();
    if route.contains("{id}") {
        let at = route.find("{id}").unwrap();
        path = route.as_bytes()[..at].to_vec();
        path.extend_from_slice(&mutate(rng, id.as_bytes()));
        path.extend_from_slice(&route.as_bytes()[at + 4..]);
    }
    if rng.chance(4) {
        path = mutate(rng, &path);
    }
    if rng.chance(2) {
        path.push(b'?');
        for i in 0..=rng.below(4) {
            if i > 0 {
                path.push(b'&');
            }
            path.extend_from_slice(rng.pick(PARAMS).as_bytes());
            path.push(b'=');
            let nasty: &[u8] = rng.pick(NASTY);
            let v = mutate(rng, nasty);
            path.extend_from_slice(&v);
        }
    }
    let method = if rng.chance(20) {
        mutate(rng, method.as_bytes())
    } else {
        method.as_bytes().to_vec()
    };
    let body = if rng.chance(8) {
        let depth = 1 + rng.below(5000);
        let mut b = "[".repeat(depth).into_bytes();
        b.extend("]".repeat(depth).into_bytes());
        b
    } else {
        let b: &str = rng.pick(BODIES);
        mutate(rng, b.as_bytes())
    };
    let token = match rng.below(4) {
        0 => String::new(),
        1 => "Bearer gw_not-a-token".to_string(),
        _ => format!("Bearer {}", tokens[rng.below(tokens.len())]),
    };
    // Bytes a request line or header may not hold make the head malformed.
    let clean = |b: &[u8]| b.iter().all(|&c| c > 0x20 && c < 0x7f);
    let well_formed = clean(&method) && clean(&path);
    let mut head = Vec::new();
    head.extend_from_slice(&method);
    head.push(b' ');
    head.extend_from_slice(&path);
    head.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").as_bytes(),
    );
    if !token.is_empty() {
        head.extend_from_slice(format!("Authorization: {token}\r\n").as_bytes());
    }
    if rng.chance(3) {
        head.extend_from_slice(b"Content-Type: application/json\r\n");
    }
    head.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    head.extend_from_slice(&body);
    (head, well_formed)
}

/// The answer's status, or `None` when the server closed without one.
fn send(addr: SocketAddr, bytes: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = s.write_all(bytes);
    let mut first = [0u8; 12];
    let mut got = 0;
    while got < first.len() {
        match s.read(&mut first[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let line = String::from_utf8_lossy(&first[..got]).into_owned();
    line.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
}

#[test]
fn generated_hostile_requests_get_4xx_or_an_answer_and_the_gateway_keeps_serving() {
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0019);
    let requests: usize = std::env::var("FUZZ_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let dir = scratch_dir("fuzz");
    let db = make_db(&dir);
    let gw = start_gateway(
        &format!("sqlite:{}", dir.join("gateway.db").display()),
        &db,
        &[("LOG_LEVEL", "warn")],
    );
    let admin = Caller {
        gw: &gw,
        token: ADMIN_TOKEN.into(),
    };
    admin.admin("PUT", "/admin/users/eve", json!({}));
    let eve = admin.admin("POST", "/admin/tokens", json!({"user": "eve"}))["token"]
        .as_str()
        .unwrap()
        .to_string();
    let tokens = vec![eve, ADMIN_TOKEN.to_string()];
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..requests {
        let (bytes, well_formed) = request(&mut rng, gw.addr, &tokens);
        let status = send(gw.addr, &bytes);
        let shown = || String::from_utf8_lossy(&bytes[..bytes.len().min(600)]).into_owned();
        match status {
            Some(s) => {
                assert!(s < 500, "seed {seed}, request {i}: {s} for\n{}", shown());
                *statuses.entry(s.to_string()).or_default() += 1;
            }
            None => {
                assert!(
                    !well_formed,
                    "seed {seed}, request {i}: no answer to a well-formed head:\n{}",
                    shown()
                );
                *statuses.entry("closed".into()).or_default() += 1;
            }
        }
        if i % 250 == 249 {
            // Everyone else is still served.
            let r = raw(gw.addr, "GET", "/health", &[], b"").unwrap();
            assert_eq!(r.status, 200, "seed {seed}, after request {i}");
            assert_eq!(admin.rows("SELECT 41 + 1 AS x")["rows"], json!([[42]]));
        }
    }
    eprintln!("seed {seed}, {requests} requests: {statuses:?}");
    assert!(statuses.keys().any(|k| k.starts_with('2')), "{statuses:?}");
    assert!(statuses.keys().any(|k| k.starts_with('4')), "{statuses:?}");
}
