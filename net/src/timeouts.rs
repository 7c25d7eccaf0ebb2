//! Connection timeouts without a timer per read: each connection publishes a
//! coarse deadline in a `Cell` while it waits for bytes, and one sweeper task
//! per shard cuts (shutdown(2)) the connections whose deadline has passed, so
//! their pending read ends. Arming costs two cell writes and a vDSO clock
//! read; a per-read glommio timeout cost a timer-map insert and removal, a
//! precise clock read and a waker clone. Never blocks and never allocates on
//! the request path.

use std::cell::Cell;
use std::os::fd::RawFd;
use std::time::Duration;

/// Milliseconds on a coarse monotonic clock (vDSO, a few ns, ~4 ms steps).
pub(crate) fn coarse_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC_COARSE is
    // always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Where a connection is, as the drain on shutdown needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Phase {
    /// Reading, handling or writing a request: the drain waits for it.
    #[default]
    Busy,
    /// Waiting for the first byte of the next request, nothing unanswered.
    Idle,
    /// Accepted and waiting for the first byte of its first request: the
    /// client connected to send one, so the drain gives it a moment to
    /// arrive before sending a FIN (see `server::FRESH_GRACE`).
    Fresh,
    /// Was idle when the drain began and got a FIN; closes when the client does.
    FinSent,
    /// Answered its last request; half-closed, discarding what still arrives.
    Closing,
}

/// One connection's deadline (0 means none: not waiting, or busy in a
/// handler) and its phase.
#[derive(Debug, Default)]
pub(crate) struct Deadline {
    at_ms: Cell<u64>,
    fd: Cell<RawFd>,
    phase: Cell<Phase>,
}

impl Deadline {
    pub(crate) fn new(fd: RawFd) -> Deadline {
        Deadline {
            at_ms: Cell::new(0),
            fd: Cell::new(fd),
            phase: Cell::new(Phase::Busy),
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase.get()
    }

    pub(crate) fn set_phase(&self, p: Phase) {
        self.phase.set(p);
    }

    /// Waits from now on must end by `at_ms` (on the [`coarse_ms`] clock).
    #[inline]
    pub(crate) fn arm_at(&self, at_ms: u64) {
        self.at_ms.set(at_ms.max(1));
    }

    #[inline]
    pub(crate) fn disarm(&self) {
        self.at_ms.set(0);
    }

    /// Cuts the connection if its deadline has passed. Returns whether it did.
    pub(crate) fn expire(&self, now_ms: u64) -> bool {
        let at = self.at_ms.get();
        if at != 0 && at <= now_ms {
            self.at_ms.set(0);
            self.shutdown(libc::SHUT_RDWR);
            return true;
        }
        false
    }

    /// shutdown(2) on the connection's socket: `SHUT_WR` sends FIN (the
    /// peer sees end-of-stream, our reads go on); `SHUT_RDWR` also ends our
    /// pending and future reads (a cut: only for timeouts and past the
    /// shutdown deadline, since unread input then turns the close into a
    /// reset). net never uses `SHUT_RD` alone.
    pub(crate) fn shutdown(&self, how: libc::c_int) {
        // SAFETY: the fd belongs to a live connection: a Deadline is reached
        // through the shard registry only while its connection's guard lives,
        // and the guard drops before the socket closes (or, in tests, is -1).
        unsafe { libc::shutdown(self.fd.get(), how) };
    }
}

/// How often the sweeper looks: a quarter of the shortest timeout, within
/// 10 ms..1 s, so a timeout fires at most ~25% late.
pub(crate) fn sweep_interval(timeouts: &[Duration]) -> Duration {
    let shortest = timeouts
        .iter()
        .min()
        .copied()
        .unwrap_or(Duration::from_secs(1));
    (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_is_bounded() {
        let s = Duration::from_secs;
        assert_eq!(sweep_interval(&[s(10), s(75)]), s(1));
        assert_eq!(
            sweep_interval(&[Duration::from_millis(700)]),
            Duration::from_millis(175)
        );
        assert_eq!(
            sweep_interval(&[Duration::from_millis(1)]),
            Duration::from_millis(10)
        );
    }

    #[test]
    fn deadline_fires_once_and_only_when_due() {
        // fd -1: shutdown(2) fails harmlessly with EBADF.
        let d = Deadline::new(-1);
        assert!(!d.expire(100));
        d.arm_at(50);
        assert!(!d.expire(49));
        assert!(d.expire(50));
        assert!(!d.expire(1000));
        d.arm_at(10);
        d.disarm();
        assert!(!d.expire(1000));
    }
}
