//! net's request-head parser against httparse on the same realistic requests:
//! a status poll with typical gateway headers and a 2 KiB JSON POST. net is
//! measured twice: the head alone, and the head plus framing (Content-Length /
//! Transfer-Encoding / Connection / Host / Expect rules), which is the work the
//! connection loop really does per request. httparse does no framing checks.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const POLL: &[u8] = b"GET /queries/5b3c8a4e-9f1d-4c2e-8a7b-3d6f0e1c2b4a?wait=30s HTTP/1.1\r\n\
Host: agent-3.compute.internal:9443\r\n\
User-Agent: sql-gateway/2.14.1 (linux; amd64)\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip, deflate\r\n\
X-Agent-Token: 6f1c2d3e4b5a69788796a5b4c3d2e1f0a1b2c3d4e5f60718\r\n\
X-Request-ID: 0b6a1f0e-3c2d-4e5f-8a9b-1c2d3e4f5a6b\r\n\
X-Forwarded-For: 10.12.4.19\r\n\
Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
Connection: keep-alive\r\n\r\n";

fn post_2k() -> Vec<u8> {
    let mut body = String::from(r#"{"sql":"SELECT "#);
    while body.len() < 2048 - 40 {
        body.push_str("col_a, col_b, sum(col_c) AS total, ");
    }
    body.push_str(r#"1 FROM t","request_id":"r-1"}"#);
    let mut req = format!(
        "POST /queries HTTP/1.1\r\n\
Host: agent-3.compute.internal:9443\r\n\
User-Agent: sql-gateway/2.14.1 (linux; amd64)\r\n\
Content-Type: application/json\r\n\
Accept: application/json\r\n\
X-Agent-Token: 6f1c2d3e4b5a69788796a5b4c3d2e1f0a1b2c3d4e5f60718\r\n\
X-Request-ID: 0b6a1f0e-3c2d-4e5f-8a9b-1c2d3e4f5a6b\r\n\
Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body.as_bytes());
    req
}

fn bench(c: &mut Criterion) {
    let post = post_2k();
    for (name, req) in [("status_poll", POLL), ("post_2k", &post[..])] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(req.len() as u64));
        g.bench_function("net_head", |b| {
            let mut headers = Vec::with_capacity(32);
            b.iter(|| {
                let head = net::parse::parse_head(black_box(req), &mut headers, 100)
                    .unwrap()
                    .unwrap();
                black_box((head.len, headers.len()))
            })
        });
        g.bench_function("net_head_and_framing", |b| {
            let mut headers = Vec::with_capacity(32);
            b.iter(|| {
                let req = black_box(req);
                let head = net::parse::parse_head(req, &mut headers, 100)
                    .unwrap()
                    .unwrap();
                let framing = net::parse::framing(req, &head, &headers).unwrap();
                black_box((head.len, framing))
            })
        });
        g.bench_function("httparse", |b| {
            b.iter(|| {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut r = httparse::Request::new(&mut headers);
                let status = r.parse(black_box(req)).unwrap();
                black_box((status.unwrap(), r.headers.len()))
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
