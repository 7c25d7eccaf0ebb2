//! Signed requests against an agent started with `REQUIRE_SIGNED_REQUESTS=true`:
//! the client's signed requests are accepted; unsigned, stale, replayed-with-another-
//! body and tampered ones are refused with 401 AUTH_ERROR; /health and /metrics stay open.

mod common;

use client::sign::{now_unix, signature};
use client::{AgentClient, AgentConfig, ClientError, Value};
use common::*;

fn signed_headers(method: &str, path: &str, ts: u64, body: &[u8]) -> (String, String) {
    (ts.to_string(), signature(TOKEN, method, path, ts, body))
}

fn post(a: &Agent, path: &str, ts: &str, sig: &str, body: &[u8]) -> Resp {
    raw(
        a.addr,
        "POST",
        path,
        &[
            ("X-Agent-Token", TOKEN),
            ("X-Agent-Timestamp", ts),
            ("X-Agent-Signature", sig),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .unwrap()
}

fn assert_auth_error(r: &Resp) {
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["code"], "AUTH_ERROR");
}

#[test]
fn signatures_are_required_and_checked() {
    let a = Agent::start(&[
        ("REQUIRE_SIGNED_REQUESTS", "true"),
        ("SIGNATURE_MAX_SKEW", "30s"),
    ]);
    let rt = runtime();
    rt.block_on(async {
        let mut cfg = AgentConfig::new("a", &a.url(), TOKEN);
        cfg.sign_requests = true;
        let signed = AgentClient::new(cfg).unwrap();
        // The whole lifecycle (submit, long-poll, pages, delete), every call signed.
        let rows = signed
            .run("SELECT 5 AS x", after(PATIENCE))
            .await
            .expect("signed run");
        assert_eq!(rows.collect().await.unwrap(), vec![vec![Value::Int(5)]]);
        let unsigned = AgentClient::new(AgentConfig::new("a", &a.url(), TOKEN)).unwrap();
        let e = unsigned.run("SELECT 5", after(PATIENCE)).await.unwrap_err();
        assert!(matches!(e, ClientError::Auth { .. }), "{e:?}");
    });

    let body = br#"{"sql":"SELECT 1"}"#;
    let now = now_unix();
    let (ts, sig) = signed_headers("POST", "/execute", now, body);
    assert_eq!(post(&a, "/execute", &ts, &sig, body).status, 200);
    // Missing signature.
    let r = raw(
        a.addr,
        "POST",
        "/execute",
        &[("X-Agent-Token", TOKEN)],
        body,
    )
    .unwrap();
    assert_auth_error(&r);
    // Stale: signed correctly, but 10 minutes ago (and 10 minutes ahead).
    for t in [now - 600, now + 600] {
        let (ts, sig) = signed_headers("POST", "/execute", t, body);
        assert_auth_error(&post(&a, "/execute", &ts, &sig, body));
    }
    // Replayed with another body.
    assert_auth_error(&post(
        &a,
        "/execute",
        &ts,
        &sig,
        br#"{"sql":"DROP TABLE x"}"#,
    ));
    // Replayed on another path.
    assert_auth_error(&post(&a, "/queries", &ts, &sig, body));
    // Tampered signature, and a timestamp changed after signing.
    let mut bad = sig.clone().into_bytes();
    bad[10] = if bad[10] == b'a' { b'b' } else { b'a' };
    assert_auth_error(&post(
        &a,
        "/execute",
        &ts,
        std::str::from_utf8(&bad).unwrap(),
        body,
    ));
    assert_auth_error(&post(&a, "/execute", &(now + 1).to_string(), &sig, body));
    assert_auth_error(&post(&a, "/execute", "yesterday", &sig, body));
    // The right signature with the wrong token is still refused.
    let r = raw(
        a.addr,
        "POST",
        "/execute",
        &[
            ("X-Agent-Token", "wrong"),
            ("X-Agent-Timestamp", &ts),
            ("X-Agent-Signature", &sig),
        ],
        body,
    )
    .unwrap();
    assert_auth_error(&r);
    // Scrape endpoints stay open.
    assert_eq!(raw(a.addr, "GET", "/health", &[], b"").unwrap().status, 200);
    assert_eq!(
        raw(a.addr, "GET", "/metrics", &[], b"").unwrap().status,
        200
    );
}

#[test]
fn signatures_are_ignored_when_not_required() {
    let a = Agent::start(&[]);
    let body = br#"{"sql":"SELECT 1"}"#;
    // Unsigned and even wrongly signed requests pass: the default changes nothing.
    assert_eq!(
        raw(
            a.addr,
            "POST",
            "/execute",
            &[("X-Agent-Token", TOKEN)],
            body
        )
        .unwrap()
        .status,
        200
    );
    assert_eq!(post(&a, "/execute", "1", "00", body).status, 200);
}
