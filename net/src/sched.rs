//! How the OS schedules the shard reactor threads.
//!
//! Owns one decision: whether reactors run under `SCHED_FIFO` (lowest
//! real-time priority) so that a request wakes its reactor at once even when
//! every core is busy with a long computation started by the application.
//! Under the default fair scheduler a woken reactor can wait a whole tick
//! (4 ms at HZ=250) behind a CPU-bound thread, whatever its nice value.
//! It never raises the priority of any other thread: reactors are switched
//! with `SCHED_RESET_ON_FORK`, so threads they create (the application's
//! worker threads, glommio's helpers) start under the normal policy.

use std::io;

/// The reactors' scheduling policy, chosen in [`crate::ServerConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReactorPriority {
    /// The process's own policy and nice value.
    #[default]
    Normal,
    /// Real-time when the process may use it (root, `CAP_SYS_NICE`, or
    /// `RLIMIT_RTPRIO` ≥ 1), otherwise [`Normal`](Self::Normal).
    RealtimeIfPermitted,
    /// Real-time, or [`crate::Server::start`] fails with
    /// [`crate::ServerError::Realtime`].
    Realtime,
}

/// The `SCHED_FIFO` priority reactors get: the lowest, so any real-time
/// thread the operator runs (audio, watchdogs, the kernel's own) comes first.
const REACTOR_RT_PRIORITY: libc::c_int = 1;

/// Linux's `SCHED_RESET_ON_FORK` flag (not exported by the libc crate).
const SCHED_RESET_ON_FORK: libc::c_int = 0x4000_0000;

/// Resolves `priority` into "make reactors real-time or not", testing the
/// permission once on a short-lived thread so that no shard has to fail
/// half-way through start-up.
pub(crate) fn decide(priority: ReactorPriority) -> io::Result<bool> {
    match priority {
        ReactorPriority::Normal => Ok(false),
        ReactorPriority::RealtimeIfPermitted => Ok(probe().is_ok()),
        ReactorPriority::Realtime => probe().map(|()| true),
    }
}

/// Switches the calling thread to the reactor real-time policy.
pub(crate) fn make_current_thread_realtime() -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: REACTOR_RT_PRIORITY,
    };
    // SAFETY: pid 0 is the calling thread; `param` outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO | SCHED_RESET_ON_FORK, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Tries the switch on a throw-away thread, so the caller's own policy is
/// left alone.
fn probe() -> io::Result<()> {
    std::thread::Builder::new()
        .name("net-rt-probe".into())
        .spawn(make_current_thread_realtime)?
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("real-time probe thread panicked")))
}
