//! What the workspace's integration tests share to run real processes on
//! loopback: today, handing out ports.
//!
//! Owns the one place a test picks a port, so that no two tests of a process
//! are ever given the same one. Test-only: no crate depends on it outside
//! `[dev-dependencies]`, and it never starts or stops a process itself.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// A 127.0.0.1 port the kernel considers free right now that no other test
/// of this process has been given. Why the bookkeeping: the agent binds with
/// SO_REUSEPORT (its shards share one port), so two agents started on the
/// same port by parallel tests would both start and split each other's
/// connections, and a test could talk to another test's agent. A port can
/// still be taken by another process between this call and the bind; callers
/// that start a server retry on a fresh port when it fails to bind.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind 127.0.0.1:0")
            .local_addr()
            .expect("local address")
            .port();
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_are_never_handed_out_twice() {
        let ports: Vec<u16> = (0..200).map(|_| super::free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
    }
}
