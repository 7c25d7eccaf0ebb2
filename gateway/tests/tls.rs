//! TLS on the HTTP door, end to end: the real `compute-gateway` with a
//! certificate made by the test, a client that trusts only that
//! certificate, a plain request refused, and the certificate replaced on
//! disk (taken up without a restart) or broken (the previous one stays).

mod harness;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::*;
use rustls::pki_types::{CertificateDer, ServerName};

/// A self-signed certificate for `localhost` and 127.0.0.1: (cert PEM, key PEM, cert DER).
fn certificate() -> (String, String, CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().clone())
}

fn write_pair(dir: &Path, cert: &str, key: &str) {
    // Written aside and renamed, as an operator's tooling would: the
    // gateway never reads a half-written file.
    std::fs::write(dir.join("cert.tmp"), cert).unwrap();
    std::fs::write(dir.join("key.tmp"), key).unwrap();
    std::fs::rename(dir.join("key.tmp"), dir.join("key.pem")).unwrap();
    std::fs::rename(dir.join("cert.tmp"), dir.join("cert.pem")).unwrap();
}

/// `GET /health` over TLS, trusting only `trusted`: the status, or the
/// handshake's error.
fn https_health(addr: SocketAddr, trusted: &CertificateDer<'static>) -> Result<u16, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).map_err(|e| e.to_string())?;
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .map_err(|e| e.to_string())?;
    let tcp =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut r = BufReader::new(tls);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))
}

#[test]
fn the_http_door_serves_tls_and_takes_up_a_new_certificate_without_a_restart() {
    let dir = scratch_dir("tls");
    let (cert1, key1, der1) = certificate();
    write_pair(&dir, &cert1, &key1);
    let db = make_db(&dir);
    let cert_path = dir.join("cert.pem").display().to_string();
    let key_path = dir.join("key.pem").display().to_string();
    let probe = |addr: SocketAddr| https_health(addr, &der1) == Ok(200);
    let gw = start_gateway_ready(
        &format!("sqlite:{}", dir.join("gateway.db").display()),
        &db,
        &[
            ("TLS_CERT", &cert_path),
            ("TLS_KEY", &key_path),
            ("TLS_RELOAD", "100ms"),
        ],
        &probe,
    );
    assert_eq!(https_health(gw.addr, &der1), Ok(200));
    // A plain HTTP request on the TLS port gets no HTTP answer.
    let plain = raw(gw.addr, "GET", "/health", &[], b"");
    assert!(
        plain.as_ref().map_or(true, |r| r.status != 200),
        "{plain:?}"
    );
    // A client that does not trust the certificate is refused.
    let (_, _, other) = certificate();
    assert!(https_health(gw.addr, &other).is_err());

    // A new certificate on disk is served within the reload interval.
    let (cert2, key2, der2) = certificate();
    write_pair(&dir, &cert2, &key2);
    let deadline = Instant::now() + Duration::from_secs(20);
    while https_health(gw.addr, &der2) != Ok(200) {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(https_health(gw.addr, &der1).is_err());

    // A broken file is refused and the current certificate stays in use.
    std::fs::write(dir.join("cert.pem"), "not a certificate").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(https_health(gw.addr, &der2), Ok(200));
    gw.wait_log("gateway::tls", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("TLS reload failed"))
    });
}

#[test]
fn a_bad_certificate_path_stops_the_gateway_at_start() {
    let dir = scratch_dir("tls-bad");
    let db = make_db(&dir);
    let out = std::process::Command::new(gateway_bin())
        .env_clear()
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env(
            "DATABASE_URL",
            format!("sqlite:{}", dir.join("g.db").display()),
        )
        .env("DUCKDB_PATH", db.display().to_string())
        .env("DUCKDB_READ_ONLY", "true")
        .env("TLS_CERT", dir.join("missing.pem"))
        .env("TLS_KEY", dir.join("missing.key"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TLS_CERT"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
