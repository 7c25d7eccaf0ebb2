//! Graceful shutdown: the count of queries in flight through every door, and
//! the draining flag SIGTERM raises.
//!
//! Owns when a query may start (never once draining: the door answers it
//! 503 / `SHUTTING_DOWN`, and `/health` says `draining` so a load balancer
//! stops sending) and when the process may exit (no query in flight, or the
//! grace period spent). A query holds a [`DrainGuard`] from its prepare to
//! the end of its answer's stream (it lives in the query's audit record,
//! which every door carries to the end); dropping the guard is the only way
//! to leave. It never blocks: waiting is async.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// See the module doc.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// One query in flight; see [`Drain::enter`].
#[derive(Debug)]
pub struct DrainGuard {
    drain: Arc<Drain>,
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        if self.drain.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drain.idle.notify_waiters();
        }
    }
}

impl Drain {
    /// A query starting: its guard, or `None` once draining.
    pub fn enter(self: &Arc<Self>) -> Option<DrainGuard> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = DrainGuard {
            drain: self.clone(),
        };
        // Checked after counting, so a query either is counted before the
        // drain starts (and waited for) or sees the flag and is refused.
        if self.draining.load(Ordering::Acquire) {
            return None;
        }
        Some(guard)
    }

    /// Refuses every query from now on.
    pub fn start(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Queries in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Waits until no query is in flight, or `grace` has passed; whether
    /// every query finished.
    pub async fn wait_idle(&self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            // Registered before the check, so no wake-up is lost between them.
            idle.as_mut().enable();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.in_flight() == 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queries_counted_before_the_drain_are_waited_for_and_later_ones_refused() {
        let d = Arc::new(Drain::default());
        let g = d.enter().unwrap();
        d.start();
        assert!(d.enter().is_none());
        assert_eq!(d.in_flight(), 1);
        assert!(!d.wait_idle(Duration::from_millis(20)).await);
        let waiter = {
            let d = d.clone();
            tokio::spawn(async move { d.wait_idle(Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(g);
        assert!(waiter.await.unwrap());
        assert_eq!(d.in_flight(), 0);
    }
}
