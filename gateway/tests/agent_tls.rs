//! TLS from the gateway to an agent, end to end: a real `compute-agent`
//! behind a TLS-terminating proxy started by the test (the deployment the
//! runbook describes: the agent speaks plain HTTP on its host, the proxy
//! terminates TLS), an `https://` endpoint, and the real `compute-gateway`
//! trusting only the CA file it is given (`AGENT_CA_FILE`). A gateway that
//! does not trust the proxy's certificate never sends it a query.

mod harness;

use std::net::SocketAddr;
use std::sync::Arc;

use harness::*;
use serde_json::json;

/// A self-signed certificate for `localhost`: (cert PEM, key PEM).
fn certificate() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Terminates TLS on a loopback port and forwards each connection's bytes to
/// `to`; runs until the process ends (the test's threads die with it).
fn tls_proxy(cert_pem: &str, key_pem: &str, to: SocketAddr) -> SocketAddr {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut agent) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut agent).await;
                });
            }
        });
    });
    addr
}

#[test]
fn an_https_agent_behind_a_tls_proxy_answers_and_an_untrusted_one_is_never_sent_a_query() {
    let dir = scratch_dir("agent-tls");
    let db = make_db(&dir);
    let agent = start_agent(&db, &[]);
    let (cert, key) = certificate();
    let proxy = tls_proxy(&cert, &key, agent.addr);
    let ca = dir.join("agent-ca.pem");
    std::fs::write(&ca, &cert).unwrap();
    let store = format!("sqlite:{}", dir.join("gateway.db").display());
    let gw = start_gateway(&store, &db, &[("AGENT_CA_FILE", &ca.display().to_string())]);
    let a = Caller {
        gw: &gw,
        token: ADMIN_TOKEN.into(),
    };
    a.admin(
        "POST",
        "/compute-endpoints",
        json!({"name": "a1", "url": format!("https://localhost:{}", proxy.port()), "type": "REMOTE", "auth_token": AGENT_TOKEN}),
    );
    a.admin("PUT", "/admin/users/ops", json!({}));
    a.admin(
        "POST",
        "/compute-endpoints/a1/assignments",
        json!({"principal": "ops", "principal_type": "user", "is_default": true, "fallback_local": false}),
    );
    a.admin(
        "POST",
        "/admin/grants",
        json!({"principal": "ops", "principal_type": "user", "table": "people"}),
    );
    let token = a.admin("POST", "/admin/tokens", json!({ "user": "ops" }))["token"]
        .as_str()
        .unwrap()
        .to_string();
    let ops = Caller {
        gw: &gw,
        token: token.clone(),
    };
    let r = ops.rows("SELECT count(*) AS n FROM people");
    assert_eq!(r["endpoint"], "a1", "{r}");
    assert_eq!(r["rows"], json!([[4]]));
    // The job lifecycle too (submit, poll, page, delete over the same TLS).
    let r = ops.rows("SELECT id FROM people ORDER BY id");
    assert_eq!(r["rows"], json!([[1], [2], [3], [4]]));
    drop(ops);
    drop(gw);

    // A gateway that does not trust the proxy's certificate (the system
    // bundle) refuses the handshake: an error naming the agent, no answer.
    let gw = start_gateway(&store, &db, &[]);
    let ops = Caller { gw: &gw, token };
    let r = ops.query("SELECT count(*) AS n FROM people");
    assert!(
        r.status == 502 || r.status == 503,
        "{} {}",
        r.status,
        r.text()
    );
    let text = r.text();
    assert!(text.contains("a1"), "{text}");
    assert!(
        text.contains("unreachable") && text.to_lowercase().contains("certificate"),
        "{text}"
    );
}
