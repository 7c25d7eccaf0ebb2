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
    /// How long in-flight requests may run after shutdown begins (then what
    /// is left is cut, and `Handler::shutdown` runs).
    pub shutdown_deadline: Duration,
}

/// Per-connection and per-shard limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Request line + headers, including the blank line; 431 when exceeded.
    pub max_header_bytes: usize,
    /// Decoded body bytes; 413, decided from Content-Length before reading.
    pub max_body_bytes: usize,
    /// Body bytes one shard may hold for requests in progress (bodies larger
    /// than the connection's standing 8 KiB buffer count against it from the
    /// moment they are admitted until their handler returns; a chunked body
    /// counts as it grows). A request that cannot get its share within
    /// `body_budget_wait` is answered 503 with `Retry-After: 1` and the
    /// connection closes. Must be at least `max_body_bytes` to admit the
    /// largest body.
    pub body_budget_per_shard: usize,
    /// How long a request waits for body budget before the 503.
    pub body_budget_wait: Duration,
    /// Time from the end of the head to the last body byte (slow-body
    /// defence: the connection is closed without an answer).
    pub body_timeout: Duration,
    /// Time from the first byte of a request to the end of its header block
    /// (slowloris defence: the connection is closed).
    pub header_timeout: Duration,
    /// Time a keep-alive connection may sit with no request in progress.
    pub idle_timeout: Duration,
    /// Connections one shard serves at once; beyond it, new connections get
    /// 503 and are closed. See [`Limits::for_memory`] and
    /// [`CONNECTION_WORST_BYTES`] for sizing it from memory.
    pub max_connections_per_shard: usize,
}

/// What one connection can make net hold at worst, without a body budget:
/// a head at the 16 KiB header limit plus a small body in the read buffer
/// (16 KiB + 8 KiB + 2 KiB read slack), a batch of pipelined responses
/// before it is flushed (64 KiB + one small response) and the task and
/// bookkeeping (~2 KiB). An idle keep-alive connection holds ~18 KiB (two
/// 8 KiB buffers). Kernel socket buffers come on top and are the kernel's.
pub const CONNECTION_WORST_BYTES: usize = 112 * 1024;

impl Limits {
    /// Limits sized so that net's worst case per shard (every connection at
    /// [`CONNECTION_WORST_BYTES`] plus a full body budget) stays within
    /// `net_share / shards` bytes: a quarter of the share goes to the body
    /// budget (between `max_body_bytes` and 64 MiB), the rest to
    /// connections (between 64 and 10,000 per shard). The agent passes an
    /// eighth of the memory it may use. Other fields keep their defaults.
    pub fn for_memory(net_share: u64, shards: usize) -> Limits {
        let d = Limits::default();
        let per_shard = (net_share / shards.max(1) as u64) as usize;
        let budget = (per_shard / 4).clamp(d.max_body_bytes, 64 * 1024 * 1024);
        let conns = (per_shard.saturating_sub(budget) / CONNECTION_WORST_BYTES).clamp(64, 10_000);
        Limits {
            body_budget_per_shard: budget,
            max_connections_per_shard: conns,
            ..d
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
            body_budget_per_shard: 64 * 1024 * 1024,
            body_budget_wait: Duration::from_secs(1),
            body_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            // 4096 x CONNECTION_WORST_BYTES = 448 MiB per shard at worst; the
            // agent sizes it from memory (`Limits::for_memory`).
            max_connections_per_shard: 4096,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_sized_from_memory_keep_the_worst_case_within_the_share() {
        let mib = 1u64 << 20;
        for (share, shards) in [(1024 * mib, 2), (128 * mib, 2), (64 << 30, 16), (mib, 1)] {
            let l = Limits::for_memory(share, shards);
            assert!(l.body_budget_per_shard >= l.max_body_bytes);
            assert!(l.body_budget_per_shard <= 64 * mib as usize);
            assert!((64..=10_000).contains(&l.max_connections_per_shard));
            let worst =
                l.max_connections_per_shard * CONNECTION_WORST_BYTES + l.body_budget_per_shard;
            // Within the share, unless the floors (64 connections, one
            // largest body) are what exceeds it.
            let per_shard = (share / shards as u64) as usize;
            assert!(
                worst <= per_shard.max(64 * CONNECTION_WORST_BYTES + l.max_body_bytes),
                "{share} {shards}: {worst}"
            );
        }
        let l = Limits::for_memory(1 << 30, 2);
        assert_eq!(
            (l.body_budget_per_shard, l.max_connections_per_shard),
            (64 << 20, 4096)
        );
    }
}
