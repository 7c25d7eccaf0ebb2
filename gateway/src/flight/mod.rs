//! The Arrow Flight SQL door of `compute-gateway` (`FLIGHT_ADDR`): users'
//! Arrow-native tools (ADBC, JDBC/ODBC through Flight SQL, `pyarrow.flight`)
//! run queries through the same query path as `POST /v1/query` and read the
//! engine's own Arrow record batches back, with no JSON in between.
//!
//! Owns the Flight SQL surface: the gRPC server (tonic, arrow-flight's Flight
//! SQL server trait, [`service`]), credentials on its calls ([`auth`]), the
//! mapping of query-path failures to gRPC statuses ([`status`]), what it holds
//! between calls (tickets and prepared statements, [`held`]) and parameter
//! values ([`params`]). Authentication, policy, routing, rewrite, binder
//! check, limits and audit are [`crate::query`]'s: this door never runs SQL
//! that path did not rewrite and prove, never splices a parameter into SQL
//! text, and never blocks a runtime thread on DuckDB.

pub mod auth;
pub mod held;
pub mod params;
pub mod service;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use tonic::transport::server::TcpIncoming;

use crate::query::QueryService;
use crate::tls::Tls;
use held::Held;
use service::FlightSql;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// The door's settings, from [`crate::server::config::Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlightSettings {
    /// Where the Flight SQL server listens.
    pub addr: SocketAddr,
    /// Queries one user may hold at once (running, or with a ticket not read
    /// to its end), and in all: `MAX_JOBS_PER_USER`, `MAX_JOBS_TOTAL`.
    pub max_queries_per_user: usize,
    pub max_queries_total: usize,
    /// A ticket not redeemed, or a prepared statement not used, this long is
    /// dropped (`JOB_TTL`).
    pub ttl: Duration,
    /// Largest gRPC message a client may send (`MAX_BODY_BYTES`): a statement's
    /// text, a parameter batch.
    pub max_message_bytes: usize,
}

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS connection, as tonic serves one.
pub struct TlsConn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl Connected for TlsConn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// The listener's connections after their TLS handshakes, each on a task of
/// its own (a slow or hostile handshake holds up no other connection, and
/// fails after [`HANDSHAKE_TIMEOUT`]).
fn tls_incoming(
    listener: tokio::net::TcpListener,
    tls: Arc<Tls>,
) -> impl futures::Stream<Item = std::io::Result<TlsConn>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<TlsConn>>(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "Flight SQL accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if tx.is_closed() {
                return;
            }
            let acceptor = tls.grpc();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => {
                        let _ = tx.send(Ok(TlsConn(s))).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "Flight SQL TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(%peer, "Flight SQL TLS handshake timed out"),
                }
            });
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}

/// HTTP/2 streams one client connection may have open at once.
const MAX_STREAMS_PER_CONNECTION: u32 = 64;

/// The bound listener and the service, ready to serve.
pub struct Flight {
    listener: tokio::net::TcpListener,
    settings: FlightSettings,
    query: Arc<QueryService>,
}

impl Flight {
    /// Binds `settings.addr` now, so a bad address stops start-up.
    pub async fn bind(
        settings: FlightSettings,
        query: Arc<QueryService>,
    ) -> Result<Flight, String> {
        let listener = tokio::net::TcpListener::bind(settings.addr)
            .await
            .map_err(|e| format!("cannot listen on FLIGHT_ADDR {}: {e}", settings.addr))?;
        Ok(Flight {
            listener,
            settings,
            query,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves Flight SQL until the returned task is aborted (or the process
    /// ends); the held tickets' reaper runs beside it. With `tls`, only over
    /// TLS (the certificate in use when each connection arrives).
    pub fn spawn(self, tls: Option<Arc<Tls>>) -> Result<tokio::task::JoinHandle<()>, String> {
        let s = self.settings;
        let held = Held::new(s.max_queries_per_user, s.max_queries_total, s.ttl);
        let reaper = held.spawn_reaper();
        let door = FlightSql::new(self.query, held)?;
        let svc = FlightServiceServer::new(door)
            .max_decoding_message_size(s.max_message_bytes.max(64 << 10));
        let listener = self.listener;
        Ok(tokio::spawn(async move {
            let server = tonic::transport::Server::builder()
                .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .add_service(svc);
            let r = match tls {
                None => {
                    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                    server.serve_with_incoming(incoming).await
                }
                Some(tls) => {
                    server
                        .serve_with_incoming(tls_incoming(listener, tls))
                        .await
                }
            };
            reaper.abort();
            if let Err(e) = r {
                tracing::error!(error = %e, "the Flight SQL server stopped");
            }
        }))
    }
}
