//! The PostgreSQL wire door (`PGWIRE_ADDR`): psql, DBeaver, psycopg, JDBC,
//! Metabase and every other PostgreSQL client reach the query path through
//! it, on the `pgwire` crate (the protocol is not hand-written here).
//!
//! Owns the protocol's mapping onto the query path: startup and
//! authentication ([`auth`]), simple and extended queries with bound
//! parameters and streamed rows, typed row descriptions ([`types`]), the
//! catalog queries clients send ([`sandbox`]), harmless session commands
//! (`SET`, `SHOW`, transaction control) answered by the door itself, and
//! `CancelRequest`. Every statement a user sends goes through
//! [`QueryService`](crate::query::QueryService) exactly as `POST /v1/query`
//! does (authentication, policy, rewrite, binder check, routing, limits,
//! audit with the door named `pgwire`): the door adds no way around the
//! policy. It never blocks a runtime thread and never panics on a client's
//! bytes (the crate frames and bounds the messages).

mod auth;
mod handler;
pub mod sandbox;
pub mod types;

use std::sync::Arc;

use crate::query::QueryService;
use crate::tls::Tls;

pub use handler::PgDoor;

/// The `server_version` a client reads at startup (PostgreSQL clients look
/// at the major version to choose what they send).
pub const SERVER_VERSION: &str = "16.0";

/// What `SELECT version()` answers through this door.
pub const VERSION_STRING: &str =
    "PostgreSQL 16.0 (compute-gateway; the engine is DuckDB) on x86_64-pc-linux-gnu";

/// Serves the door on `listener` until the process ends: TLS (when `tls` is
/// given) negotiated by the client's `SSLRequest`, each connection on a task
/// of its own.
pub async fn serve(
    listener: tokio::net::TcpListener,
    query: Arc<QueryService>,
    tls: Option<Arc<Tls>>,
    plain_loopback: bool,
) {
    let door = Arc::new(PgDoor::new(query, plain_loopback));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "pgwire accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let door = door.clone();
        let acceptor = tls
            .as_ref()
            .map(|t| pgwire::tokio::TlsAcceptor::from(t.postgres()));
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(stream, acceptor, door).await {
                tracing::debug!(%peer, error = %e, "pgwire connection ended with an error");
            }
        });
    }
}
