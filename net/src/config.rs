//! Server configuration and limits, with their defaults. Owns no behaviour.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::ReactorPriority;

/// How the server is laid out: address, shards, memory, limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Port 0: the first listener picks a port, every other shard binds the same one.
    pub addr: SocketAddr,
    /// Number of shards (executors, listeners); at least 1.
    pub shards: usize,
    /// Pin shard `i` to the `i`-th CPU the process may run on.
    pub pin_to_cores: bool,
    /// OS scheduling of the reactor threads (see [`ReactorPriority`]).
    pub reactor_priority: ReactorPriority,
    /// glommio `io_memory` per shard. net does no DMA file I/O, so this stays
    /// small: several servers in one test process must fit `ulimit -l` 8 MiB.
    pub io_memory: usize,
    pub limits: Limits,
    /// How long in-flight requests may run after shutdown begins.
    pub shutdown_deadline: Duration,
}

/// Per-connection and per-shard limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Request line + headers, including the blank line; 431 when exceeded.
    pub max_header_bytes: usize,
    /// Decoded body bytes; 413, decided from Content-Length before reading.
    pub max_body_bytes: usize,
    /// Time from the first byte of a request to the end of its header block
    /// (slowloris defence: the connection is closed).
    pub header_timeout: Duration,
    /// Time a keep-alive connection may sit with no request in progress.
    pub idle_timeout: Duration,
    /// Connections one shard serves at once; beyond it, new connections get
    /// 503 and are closed.
    pub max_connections_per_shard: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections_per_shard: 10_000,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            shards: crate::default_shards(),
            pin_to_cores: true,
            reactor_priority: ReactorPriority::Normal,
            io_memory: 512 * 1024,
            limits: Limits::default(),
            shutdown_deadline: Duration::from_secs(10),
        }
    }
}
