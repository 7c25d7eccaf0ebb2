//! A shard's DuckDB worker: one OS thread that owns one connection.
//!
//! Owns running SQL and encoding its result (off the reactor), and the
//! connection's statement cache. It takes one task at a time from its shard
//! and answers on the task's oneshot. It never touches shard state: the shard
//! decides what runs next, so `QUEUED` means "in the shard's FIFO" and
//! `RUNNING` means "handed to this thread".

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use hashbrown::HashMap;

use crate::duckdb::{Connection, Prepared};
use crate::priority::CpuSet;
use crate::result::QueryResult;
use crate::stream::{self, Encoder};

/// One statement for the worker.
pub(crate) struct Task {
    pub sql: String,
    /// Published in `Config::current` while this statement executes.
    pub token: u64,
    /// Set by the shard when the statement is canceled; checked before it starts.
    pub canceled: Arc<AtomicBool>,
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
    Interrupted,
    TooLarge,
    Failed(String),
}

pub(crate) struct Config {
    pub max_result_bytes: usize,
    pub keywords: Arc<HashSet<String>>,
    /// Set by `Engine::shutdown`: stop even if the shard never closed its queue.
    pub stop: Arc<AtomicBool>,
    /// The token of the task being executed (0: none), read by the shard to
    /// aim its interrupts.
    pub current: Arc<AtomicU64>,
    /// Where the worker may run; `None` leaves the inherited affinity.
    pub cpus: Option<CpuSet>,
    /// The worker's nice value.
    pub nice: i32,
}

/// Starts the worker thread for shard `index`. It exits when the task sender
/// is dropped or `stop` is set, then signals `exited`.
pub(crate) fn spawn(
    index: usize,
    conn: Connection,
    cfg: Config,
    exited: oneshot::Sender<()>,
) -> std::io::Result<(mpsc::Sender<Task>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<Task>();
    let handle = std::thread::Builder::new()
        .name(format!("duckdb-worker-{index}"))
        .stack_size(crate::engine::SQL_THREAD_STACK_BYTES)
        .spawn(move || {
            crate::priority::lower_current_thread(cfg.nice);
            if let Some(cpus) = &cfg.cpus {
                cpus.apply_to_current_thread();
            }
            run(conn, cfg, rx);
            let _ = exited.send(());
        })?;
    Ok((tx, handle))
}

fn run(mut conn: Connection, cfg: Config, rx: mpsc::Receiver<Task>) {
    let mut cache = StatementCache::new(PREPARED_CAPACITY, SEEN_CAPACITY);
    loop {
        let task = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(t) => t,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if cfg.stop.load(Ordering::Relaxed) {
                    break;
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let start = Instant::now();
        // Publish the token before reading the flag (both SeqCst), and the
        // shard sets the flag before reading the token: either we see the
        // cancel and skip, or the shard sees us running and interrupts.
        cfg.current.store(task.token, Ordering::SeqCst);
        let mut result = Err(ExecFailure::Interrupted);
        for _ in 0..3 {
            if task.canceled.load(Ordering::SeqCst) || cfg.stop.load(Ordering::SeqCst) {
                result = Err(ExecFailure::Interrupted);
                break;
            }
            result = execute(&mut conn, &mut cache, &task.sql, &cfg);
            // An interrupt aimed at the previous statement can land on this
            // one; DuckDB rolled it back, so run it again (a real cancel sets
            // the flag and ends the loop above).
            if !matches!(result, Err(ExecFailure::Interrupted)) {
                break;
            }
        }
        cfg.current.store(0, Ordering::SeqCst);
        // The shard may have stopped listening (job deleted); nothing to do then.
        let _ = task.reply.send(Outcome {
            result,
            exec: start.elapsed(),
        });
    }
    // Prepared statements go before their connection.
    drop(cache);
    drop(conn);
}

fn execute(
    conn: &mut Connection,
    cache: &mut StatementCache,
    sql: &str,
    cfg: &Config,
) -> Result<QueryResult, ExecFailure> {
    let enc = Encoder {
        limit: cfg.max_result_bytes,
        keywords: &cfg.keywords,
    };
    cache.run(conn, sql, &enc)
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
