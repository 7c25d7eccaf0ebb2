//! A per-worker-thread pool of keep-alive connections with a hard cap.
//!
//! Owns: how many connections a worker may hold and handing idle ones out.
//! When every connection is busy an operation waits for one; that wait is
//! part of its (intended-start) latency, which is what an open-loop client
//! must show. Never shared across threads (Rc, current-thread runtime).

use super::{Conn, HttpError};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Pool {
    addr: SocketAddr,
    idle: RefCell<Vec<Conn>>,
    permits: Arc<Semaphore>,
    connects: Cell<u64>,
}

/// A connection on loan; it goes back to the pool on drop if still usable.
pub struct Lease<'p> {
    pool: &'p Pool,
    conn: Option<Conn>,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    pub fn new(addr: SocketAddr, cap: usize) -> Pool {
        Pool {
            addr,
            idle: RefCell::new(Vec::with_capacity(cap)),
            permits: Arc::new(Semaphore::new(cap.max(1))),
            connects: Cell::new(0),
        }
    }

    /// Number of TCP connects made so far (reconnects after errors included).
    pub fn connects(&self) -> u64 {
        self.connects.get()
    }

    pub async fn acquire(&self) -> Result<Lease<'_>, HttpError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("pool semaphore is never closed");
        let idle = self.idle.borrow_mut().pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                self.connects.set(self.connects.get() + 1);
                Conn::connect(self.addr).await?
            }
        };
        Ok(Lease {
            pool: self,
            conn: Some(conn),
            _permit: permit,
        })
    }
}

impl Lease<'_> {
    pub fn conn(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("lease holds a connection until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            if c.is_open() {
                self.pool.idle.borrow_mut().push(c);
            }
        }
    }
}
