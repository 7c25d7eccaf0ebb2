//! TLS for every door (the HTTP API, the PostgreSQL wire, Flight SQL): one
//! certificate chain and key (`TLS_CERT`, `TLS_KEY`, PEM files), rustls on
//! the `ring` provider, reloaded without a restart when either file changes
//! (polled) or the process gets SIGHUP.
//!
//! Owns the loaded server configurations, one per protocol (they differ in
//! ALPN only), published atomically: a connection accepted after a reload
//! gets the new certificate, one already open keeps its own. A reload that
//! fails (a half-written file, a key that does not match) keeps the previous
//! configuration and says why in the log: a bad file never takes TLS down.
//! It never logs key material.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    #[error("{0} holds no PEM private key")]
    NoKey(PathBuf),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(String),
}

/// The configurations of one load, per protocol.
struct Configs {
    http: Arc<ServerConfig>,
    grpc: Arc<ServerConfig>,
    postgres: Arc<ServerConfig>,
}

/// See the module doc.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<Configs>,
    /// The files' modification times at the last load.
    loaded: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn read(p: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(p).map_err(|e| TlsError::Read {
        path: p.to_path_buf(),
        reason: e.to_string(),
    })
}

/// One server configuration from a chain and key, with these ALPN protocols.
fn config(
    certs: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    // ring, not aws-lc-rs: aws-lc's C build (cmake) would add minutes to a
    // cold build already at 25-40 minutes, for post-quantum key exchange
    // that rustls deprecates ring's provider over; revisit when the
    // workspace links aws-lc for another reason.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs.to_vec(), key.clone_key())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(c))
}

fn load_configs(cert: &Path, key: &Path) -> Result<Configs, TlsError> {
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey(key.to_path_buf()))?;
    Ok(Configs {
        http: config(&certs, &key_der, &[b"http/1.1"])?,
        grpc: config(&certs, &key_der, &[b"h2"])?,
        postgres: config(&certs, &key_der, &[b"postgresql"])?,
    })
}

impl Tls {
    /// Loads the chain and key; an error here stops the gateway's start.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Tls>, TlsError> {
        let stamps = (modified(cert), modified(key));
        let configs = load_configs(cert, key)?;
        Ok(Arc::new(Tls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: ArcSwap::from_pointee(configs),
            loaded: Mutex::new(stamps),
        }))
    }

    /// The acceptor for HTTP/1.1 connections.
    pub fn http(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load().http.clone())
    }

    /// The acceptor for gRPC (HTTP/2) connections: Flight SQL.
    pub fn grpc(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load().grpc.clone())
    }

    /// The server configuration for PostgreSQL wire connections.
    pub fn postgres(&self) -> Arc<ServerConfig> {
        self.current.load().postgres.clone()
    }

    /// Loads the files again when either changed since the last load (or
    /// always, with `force`); `Ok(true)` when a new configuration is in use.
    pub fn reload(&self, force: bool) -> Result<bool, TlsError> {
        let stamps = (modified(&self.cert), modified(&self.key));
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if !force && *loaded == stamps {
            return Ok(false);
        }
        let configs = load_configs(&self.cert, &self.key)?;
        self.current.store(Arc::new(configs));
        *loaded = stamps;
        Ok(true)
    }

    /// Reloads on SIGHUP and whenever the files change (checked every
    /// `every`), off the query path. Failures are logged; the previous
    /// configuration stays in use.
    pub fn spawn_watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let force = tokio::select! {
                    _ = tick.tick() => false,
                    Some(()) = async {
                        match hup.as_mut() {
                            Some(h) => h.recv().await,
                            None => std::future::pending().await,
                        }
                    } => true,
                };
                // Reading two small files: on the blocking pool, as any file I/O.
                let t = tls.clone();
                match tokio::task::spawn_blocking(move || t.reload(force)).await {
                    Ok(Ok(true)) => tracing::info!(
                        cert = %tls.cert.display(),
                        "TLS certificate reloaded"
                    ),
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => tracing::error!(
                        error = %e,
                        "TLS reload failed; the previous certificate stays in use"
                    ),
                    Err(e) => tracing::error!(error = %e, "TLS reload task failed"),
                }
            }
        })
    }
}
