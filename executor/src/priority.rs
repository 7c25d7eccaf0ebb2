//! CPU priority of the threads that run DuckDB.
//!
//! Owns one decision about a thread that runs SQL (a shard's worker, the
//! facts refresher and DuckDB's own scheduler threads): it runs at a lower
//! priority than the reactors, so that `/health`, status polls and result
//! pages are answered promptly while every core is busy with a long query:
//! a nice value, and optionally Linux's `SCHED_IDLE` policy
//! ([`SqlThreadPolicy`]). The engine lowers one thread, the one that opens
//! the database, and starts every other SQL thread from it: they inherit its
//! priority, policy and CPU set from their first instruction (the process's
//! CPUs, never a reactor's pin: a worker pinned to its reactor's core was
//! preempted by that reactor on every answer it handed back, while another
//! core sat idle; free to move it measured 1.00-1.16x the `/execute` rate).
//!
//! It never raises a priority (that needs privileges) and never touches a
//! reactor thread.

/// The default nice value of SQL threads; reactors stay at the process's own.
pub const DEFAULT_SQL_THREAD_NICE: i32 = 10;

/// How the kernel schedules the threads that run SQL.
///
/// Why `Idle` exists: with Linux's EEVDF scheduler a task that wakes up
/// (a health checker, a reactor at normal priority, the gateway on the same
/// host) may wait for the running task's time slice to end, about 1.5 ms on
/// two CPUs, however low that task's nice value. A `SCHED_IDLE` task is
/// preempted at once by any normal task that wakes, and still gets every
/// CPU cycle nothing else wants. The price: a CPU-bound normal process on
/// the same host (a batch job) takes the CPU from SQL almost entirely,
/// where a nice value would leave SQL its weighted share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlThreadPolicy {
    /// `SCHED_OTHER` at the configured nice value.
    Normal,
    /// `SCHED_IDLE` (the nice value then only orders SQL threads among themselves).
    Idle,
}

impl SqlThreadPolicy {
    /// Every policy with its setting name.
    pub const ALL: [SqlThreadPolicy; 2] = [SqlThreadPolicy::Normal, SqlThreadPolicy::Idle];

    /// The name the `SQL_THREAD_POLICY` setting uses.
    pub const fn name(self) -> &'static str {
        match self {
            SqlThreadPolicy::Normal => "normal",
            SqlThreadPolicy::Idle => "idle",
        }
    }
}

/// The default scheduling policy of SQL threads.
pub const DEFAULT_SQL_THREAD_POLICY: SqlThreadPolicy = SqlThreadPolicy::Normal;

/// Lowers the calling thread's priority to `nice` (never raises it) and, for
/// [`SqlThreadPolicy::Idle`], moves it to `SCHED_IDLE`. On Linux both belong
/// to the thread, and threads it creates inherit them. Failure only costs
/// latency, so it is ignored.
pub(crate) fn lower_current_thread(nice: i32, policy: SqlThreadPolicy) {
    // SAFETY: gettid has no preconditions; setpriority and sched_setscheduler
    // on our own thread only read their arguments.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        if current < nice {
            libc::setpriority(libc::PRIO_PROCESS, tid, nice);
        }
        if policy == SqlThreadPolicy::Idle {
            // Lowering a thread's own policy needs no privilege.
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
        }
    }
}
