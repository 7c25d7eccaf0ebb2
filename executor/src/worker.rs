//! A shard's DuckDB workers: a small pool of OS threads, each owning one
//! connection, taking statements from the shard's feed.
//!
//! Owns running SQL and encoding its result (off the reactor), each
//! connection's statement cache, and putting a connection back to its
//! baseline session after a statement that may have changed it
//! (`session.rs`). A worker never touches shard state: the shard hands a
//! statement over only when a worker is free, so `QUEUED` means "in the
//! shard's feed" and `RUNNING` means "handed to a worker".
//!
//! Interrupts are aimed through the statement's [`Ticket`], never through a
//! connection directly: the shard can only interrupt the connection that is
//! running *that* statement, and a worker does not start its next statement
//! while an interrupt aimed at the previous one is still being delivered.
//! An interrupt that lands after DuckDB returned is cleared by DuckDB itself
//! when the next statement begins, so a statement is never run twice.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use futures_channel::oneshot;
use hashbrown::HashMap;

use crate::arrow::ResultFormat;
use crate::duckdb::{Connection, InterruptHandle, Prepared};
use crate::result::QueryResult;
use crate::session::{self, Baseline};
use crate::stream::{self, Encoder};

/// Why the shard stopped a statement; the first reason given wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum StopReason {
    /// Cancel or delete of its job.
    Canceled = 1,
    /// Its deadline (`QUERY_TIMEOUT` or the request's `timeout_ms`) passed.
    Deadline = 2,
    /// The agent is shutting down and the drain deadline passed.
    Shutdown = 3,
    /// The `/execute` caller went away.
    CallerGone = 4,
}

impl StopReason {
    fn from_u8(v: u8) -> Option<StopReason> {
        match v {
            1 => Some(StopReason::Canceled),
            2 => Some(StopReason::Deadline),
            3 => Some(StopReason::Shutdown),
            4 => Some(StopReason::CallerGone),
            _ => None,
        }
    }
}

const HANDED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;

/// The meeting point of one statement's worker and its shard.
///
/// The worker publishes `RUNNING` (and its connection's interrupt handle) before it reads
/// `stop`; the shard stores `stop` before it reads the phase (all SeqCst): so
/// either the worker sees the stop and skips the statement, or the shard sees
/// it running and interrupts its connection. `interrupters` counts shard
/// calls between "saw RUNNING" and "interrupt delivered"; the worker waits
/// for it to drop to zero after `DONE` before taking its next statement.
pub(crate) struct Ticket {
    phase: AtomicU8,
    stop: AtomicU8,
    interrupters: AtomicU32,
    /// The interrupt handle of the connection running the statement.
    handle: OnceLock<InterruptHandle>,
}

impl Ticket {
    pub fn new() -> Arc<Ticket> {
        Arc::new(Ticket {
            phase: AtomicU8::new(HANDED),
            stop: AtomicU8::new(0),
            interrupters: AtomicU32::new(0),
            handle: OnceLock::new(),
        })
    }

    /// Records `reason` (unless one is recorded) and interrupts the statement
    /// if it is running. Never waits: safe on a reactor thread.
    pub fn stop(&self, reason: StopReason) {
        let _ = self.stop.compare_exchange(0, reason as u8, SeqCst, SeqCst);
        self.interrupt();
    }

    /// Interrupts the statement again if it is still running (DuckDB drops an
    /// interrupt that lands just before a statement begins).
    pub fn interrupt(&self) {
        self.interrupters.fetch_add(1, SeqCst);
        if self.phase.load(SeqCst) == RUNNING {
            if let Some(h) = self.handle.get() {
                h.interrupt();
            }
        }
        self.interrupters.fetch_sub(1, SeqCst);
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        StopReason::from_u8(self.stop.load(SeqCst))
    }

    pub fn is_done(&self) -> bool {
        self.phase.load(SeqCst) == DONE
    }
}

/// One statement for a worker.
pub(crate) struct Task {
    pub sql: String,
    pub ticket: Arc<Ticket>,
    /// Largest encoded result this statement may produce (0: unlimited).
    pub max_bytes: usize,
    /// How its result is encoded.
    pub format: ResultFormat,
    /// Values bound to its placeholders.
    pub params: crate::params::Params,
    pub reply: oneshot::Sender<Outcome>,
}

/// What the worker reports back.
pub(crate) struct Outcome {
    pub result: Result<QueryResult, ExecFailure>,
    /// Time spent executing and encoding.
    pub exec: Duration,
}

#[derive(Debug)]
pub(crate) enum ExecFailure {
    /// Interrupted: by the shard (see the ticket's stop reason) or, with no
    /// reason recorded, by DuckDB itself (`max_execution_time`).
    Interrupted,
    TooLarge,
    Failed(String),
    /// The worker's own code failed (a bug); the statement was abandoned and
    /// the connection replaced.
    Panicked(String),
}

/// What every worker of the engine shares.
pub(crate) struct Config {
    pub keywords: Arc<HashSet<String>>,
    /// Set by `Engine::shutdown`: stop even if the shard never closed its feed.
    pub stop: Arc<AtomicBool>,
    /// Opens a replacement connection (with the init SQL run on it) when a
    /// connection cannot be put back to its baseline.
    pub reconnect: Arc<dyn Fn() -> Result<Connection, String> + Send + Sync>,
}

/// A worker's connection with what it needs to start every job clean.
pub(crate) struct Seat {
    pub conn: Connection,
    pub baseline: Baseline,
}

/// Starts worker `index` of shard `shard`, taking tasks from `rx`. It exits
/// when every sender of the feed is dropped or `stop` is set.
///
/// Call it on the engine's lowered opening thread: the worker is born with
/// that thread's nice value, scheduling policy and CPU set (the process's,
/// not a reactor's pin). A worker that lowered itself after starting was,
/// for as long as a busy machine kept it from running its first lines, a
/// normal-priority thread (seen in CI: a whole shard's workers at nice 10
/// but still `SCHED_OTHER`).
pub(crate) fn spawn(
    shard: usize,
    index: usize,
    seat: Seat,
    cfg: Arc<Config>,
    rx: Receiver<Task>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("duckdb-worker-{shard}.{index}"))
        .stack_size(crate::engine::SQL_THREAD_STACK_BYTES)
        .spawn(move || run(seat, &cfg, rx))
}

/// A worker's own channel: the feed hands it one statement at a time.
pub(crate) fn feed_channel() -> (Sender<Task>, Receiver<Task>) {
    crossbeam_channel::unbounded()
}

fn run(seat: Seat, cfg: &Config, rx: Receiver<Task>) {
    let Seat { conn, baseline } = seat;
    let mut handle = conn.interrupt_handle();
    let mut conn = Some(conn);
    let mut cache = StatementCache::new(PREPARED_CAPACITY, SEEN_CAPACITY);
    loop {
        let task = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(t) => t,
            Err(RecvTimeoutError::Timeout) => {
                if cfg.stop.load(SeqCst) {
                    break;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let Some(c) = conn.as_mut() else { break };
        let start = Instant::now();
        let ticket = &task.ticket;
        let _ = ticket.handle.set(handle.clone());
        ticket.phase.store(RUNNING, SeqCst);
        let result = if ticket.stop.load(SeqCst) != 0 || cfg.stop.load(SeqCst) {
            Err(ExecFailure::Interrupted)
        } else {
            catch_unwind(AssertUnwindSafe(|| {
                execute(
                    c,
                    &mut cache,
                    &task.sql,
                    &task.params,
                    task.max_bytes,
                    task.format,
                    &cfg.keywords,
                )
            }))
            .unwrap_or_else(|p| {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(ExecFailure::Panicked(what))
            })
        };
        ticket.phase.store(DONE, SeqCst);
        while ticket.interrupters.load(SeqCst) != 0 {
            std::hint::spin_loop();
        }
        // Every job starts clean: put the session back before the next one.
        let dirty =
            matches!(result, Err(ExecFailure::Panicked(_))) || session::may_leave_state(&task.sql);
        let exec = start.elapsed();
        // The shard may have stopped listening (job deleted); nothing to do then.
        let _ = task.reply.send(Outcome { result, exec });
        if dirty {
            // Prepared statements belong to the connection: drop them with it
            // if it must go, and after a reset they may name dropped objects.
            cache = StatementCache::new(PREPARED_CAPACITY, SEEN_CAPACITY);
            if let Err(e) = baseline.restore(c) {
                conn = replace_connection(cfg, &baseline, e);
                if let Some(c) = &conn {
                    handle = c.interrupt_handle();
                }
            }
        }
    }
    // Prepared statements go before their connection.
    drop(cache);
    drop(conn);
}

/// A connection that could not be put back is replaced by a fresh one; if
/// even that fails the worker stops (its shard's other workers go on).
fn replace_connection(
    cfg: &Config,
    baseline: &Baseline,
    why: session::ResetFailed,
) -> Option<Connection> {
    match (cfg.reconnect)() {
        Ok(mut fresh) => {
            if let Err(e) = baseline.restore(&mut fresh) {
                eprintln!(
                    "compute-agent: a worker's connection could not be reset ({}); its replacement differs from the baseline too ({})",
                    why.0, e.0
                );
            }
            Some(fresh)
        }
        Err(e) => {
            eprintln!(
                "compute-agent: a worker's connection could not be reset ({}) nor replaced ({e}); the worker stops",
                why.0
            );
            None
        }
    }
}

fn execute(
    conn: &mut Connection,
    cache: &mut StatementCache,
    sql: &str,
    params: &[crate::params::Param],
    max_bytes: usize,
    format: ResultFormat,
    keywords: &HashSet<String>,
) -> Result<QueryResult, ExecFailure> {
    let enc = Encoder {
        limit: max_bytes,
        keywords,
        format,
    };
    if params.is_empty() {
        return cache.run(conn, sql, &enc);
    }
    // Parameters need one prepared statement to bind to: prepared here, once,
    // outside the cache (whose plans are shared by parameterless texts).
    let mut stmt = conn.prepare(sql).map_err(ExecFailure::Failed)?;
    for (i, p) in params.iter().enumerate() {
        stmt.bind(i + 1, p).map_err(ExecFailure::Failed)?;
    }
    stream::run_prepared(&mut stmt, &enc)
}

/// Prepared statements kept per connection.
const PREPARED_CAPACITY: usize = 256;
/// SQL text bytes of the prepared statements kept per connection (their keys;
/// DuckDB's plans grow with the text). With [`PREPARED_CAPACITY`] this bounds
/// the cache: the least recently used statements go until both fit.
const PREPARED_BYTES: usize = 4 << 20;
/// A longer text is never prepared for reuse (it always takes the fresh
/// path), so one text cannot take the whole byte budget.
const PREPARED_MAX_TEXT: usize = PREPARED_BYTES / 16;
/// SQL texts remembered (as hashes) to spot the second sighting.
const SEEN_CAPACITY: usize = 16_384;

/// Chooses, per SQL text, between the fresh path (the text parsed and each of
/// its statements prepared and run once, streaming) and a cached prepared
/// statement. A text is prepared for reuse on its second sighting, so
/// one-off statements never pay for keeping a plan and repeated ones skip
/// parsing and planning. The cache is bounded by count ([`PREPARED_CAPACITY`])
/// and by SQL text bytes ([`PREPARED_BYTES`]).
pub(crate) struct StatementCache {
    prepared: HashMap<Box<str>, (Prepared, u64)>,
    /// Bytes of the keys of `prepared`.
    prepared_bytes: usize,
    seen: HashSet<u64>,
    /// Texts that cannot be prepared (e.g. several statements): always fresh.
    unpreparable: HashSet<u64>,
    tick: u64,
    prepared_cap: usize,
    prepared_bytes_cap: usize,
    seen_cap: usize,
}

fn text_hash(sql: &str) -> u64 {
    // SipHash with fixed keys: deterministic, and collisions only make a text
    // be prepared one sighting early, which is harmless.
    let mut h = std::hash::DefaultHasher::new();
    sql.hash(&mut h);
    h.finish()
}

impl StatementCache {
    pub fn new(prepared_cap: usize, seen_cap: usize) -> Self {
        Self::with_bytes(prepared_cap, PREPARED_BYTES, seen_cap)
    }

    pub fn with_bytes(prepared_cap: usize, prepared_bytes_cap: usize, seen_cap: usize) -> Self {
        StatementCache {
            prepared: HashMap::new(),
            prepared_bytes: 0,
            seen: HashSet::new(),
            unpreparable: HashSet::new(),
            tick: 0,
            prepared_cap,
            prepared_bytes_cap,
            seen_cap,
        }
    }

    /// Prepared statements kept, and the bytes of their SQL texts.
    #[cfg(test)]
    pub fn usage(&self) -> (usize, usize) {
        (self.prepared.len(), self.prepared_bytes)
    }

    pub fn run(
        &mut self,
        conn: &mut Connection,
        sql: &str,
        enc: &Encoder<'_>,
    ) -> Result<QueryResult, ExecFailure> {
        self.tick += 1;
        if let Some((stmt, last)) = self.prepared.get_mut(sql) {
            *last = self.tick;
            return stream::run_prepared(stmt, enc);
        }
        let h = text_hash(sql);
        let max_text = PREPARED_MAX_TEXT.min(self.prepared_bytes_cap);
        if sql.len() > max_text || self.unpreparable.contains(&h) || self.seen.insert(h) {
            if self.seen.len() > self.seen_cap {
                // Forget old sightings wholesale: cheap, and the cost of
                // forgetting is one more fresh run of a repeated text.
                self.seen.clear();
            }
            return stream::run_text(conn, sql, enc);
        }
        match conn.prepare(sql) {
            Ok(stmt) => {
                // Evict the least recently used until both bounds hold; O(capacity)
                // per eviction, only when a new text is prepared, never on a hit.
                while !self.prepared.is_empty()
                    && (self.prepared.len() >= self.prepared_cap
                        || self.prepared_bytes + sql.len() > self.prepared_bytes_cap)
                {
                    let Some(k) = self
                        .prepared
                        .iter()
                        .min_by_key(|(_, (_, t))| *t)
                        .map(|(k, _)| k.clone())
                    else {
                        break;
                    };
                    self.prepared.remove(&k);
                    self.prepared_bytes -= k.len();
                }
                if self.prepared_cap == 0 {
                    let mut stmt = stmt;
                    return stream::run_prepared(&mut stmt, enc);
                }
                self.prepared_bytes += sql.len();
                let entry = self.prepared.entry(sql.into()).or_insert((stmt, self.tick));
                stream::run_prepared(&mut entry.0, enc)
            }
            Err(_) => {
                if self.unpreparable.len() > self.seen_cap {
                    self.unpreparable.clear();
                }
                self.unpreparable.insert(h);
                stream::run_text(conn, sql, enc)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duckdb::Database;

    #[test]
    fn the_statement_cache_is_bounded_by_count_and_by_bytes() {
        let db = Database::open(None, &[]).unwrap();
        let mut conn = db.connect().unwrap();
        let kw = HashSet::new();
        let enc = Encoder {
            limit: 0,
            keywords: &kw,
            format: ResultFormat::Json,
        };
        // At most 4 statements and 300 bytes of SQL text.
        let mut cache = StatementCache::with_bytes(4, 300, 1000);
        let text = |i: usize, pad: usize| format!("SELECT {i} AS v{}", " ".repeat(pad));
        for i in 0..10 {
            for _ in 0..2 {
                // The second sighting prepares.
                let r = cache.run(&mut conn, &text(i, 0), &enc).unwrap();
                assert_eq!(r.row_count(), 1);
            }
        }
        let (n, bytes) = cache.usage();
        assert_eq!(n, 4);
        assert!(bytes <= 300);
        // Long texts: the byte bound evicts before the count does.
        for i in 0..10 {
            for _ in 0..2 {
                cache.run(&mut conn, &text(i, 90), &enc).unwrap();
            }
        }
        let (n, bytes) = cache.usage();
        assert!(n <= 3 && bytes <= 300, "{n} {bytes}");
        // A text longer than the whole budget is never kept.
        let mut cache = StatementCache::with_bytes(4, 160, 1000);
        for _ in 0..3 {
            cache.run(&mut conn, &text(1, 200), &enc).unwrap();
        }
        assert_eq!(cache.usage().0, 0);
    }
}
