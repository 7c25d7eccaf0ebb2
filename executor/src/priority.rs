//! CPU priority of the threads that run DuckDB.
//!
//! Owns one decision: a thread that runs SQL (a shard's worker, and DuckDB's
//! own scheduler threads, which inherit the nice value of the thread that
//! opens the database) runs at a lower priority than the reactors, so that
//! `/health`, status polls and result pages are answered promptly while every
//! core is busy with a long query. It never raises a priority (that needs
//! privileges) and never touches a reactor thread.

/// The nice value given to SQL threads; reactors stay at the process's own (0).
pub(crate) const SQL_THREAD_NICE: libc::c_int = 10;

/// Lowers the calling thread's priority to [`SQL_THREAD_NICE`]. On Linux the
/// nice value belongs to the thread, and threads it creates inherit it.
/// Failure only costs latency, so it is ignored.
pub(crate) fn lower_current_thread() {
    // SAFETY: gettid has no preconditions; setpriority on our own thread id
    // only reads its arguments.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        if current < SQL_THREAD_NICE {
            libc::setpriority(libc::PRIO_PROCESS, tid, SQL_THREAD_NICE);
        }
    }
}
