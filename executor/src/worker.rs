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

use crate::duckdb::{Connection, DbError, Prepared, QueryOutput};
use crate::encode::{encode, EncodeError};
use crate::priority::CpuSet;
use crate::result::QueryResult;

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
    let mut output = cache.run(conn, sql).map_err(|e| match e {
        DbError::Interrupted => ExecFailure::Interrupted,
        DbError::Failed(m) => ExecFailure::Failed(m),
    })?;
    encode(&mut output, cfg.max_result_bytes, &cfg.keywords).map_err(|e| match e {
        EncodeError::Db(DbError::Interrupted) => ExecFailure::Interrupted,
        EncodeError::Db(DbError::Failed(m)) => ExecFailure::Failed(m),
        EncodeError::TooLarge => ExecFailure::TooLarge,
        EncodeError::Unsupported { column, type_name } => ExecFailure::Failed(format!(
            "column \"{column}\" has type {type_name}, which has no JSON form here; cast it (for example to VARCHAR)"
        )),
    })
}

/// Prepared statements kept per connection.
const PREPARED_CAPACITY: usize = 256;
/// SQL texts remembered (as hashes) to spot the second sighting.
const SEEN_CAPACITY: usize = 16_384;

/// Chooses, per SQL text, between the fresh path (`duckdb_query`: parse, plan
/// and run in one call, no separate prepare) and a cached prepared statement.
/// A text is prepared on its second sighting, so one-off statements never pay
/// for a prepare and repeated ones skip parsing and planning.
pub(crate) struct StatementCache {
    prepared: HashMap<Box<str>, (Prepared, u64)>,
    seen: HashSet<u64>,
    /// Texts that cannot be prepared (e.g. several statements): always fresh.
    unpreparable: HashSet<u64>,
    tick: u64,
    prepared_cap: usize,
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
        StatementCache {
            prepared: HashMap::new(),
            seen: HashSet::new(),
            unpreparable: HashSet::new(),
            tick: 0,
            prepared_cap,
            seen_cap,
        }
    }

    pub fn run(&mut self, conn: &mut Connection, sql: &str) -> Result<QueryOutput, DbError> {
        self.tick += 1;
        if let Some((stmt, last)) = self.prepared.get_mut(sql) {
            *last = self.tick;
            return stmt.execute();
        }
        let h = text_hash(sql);
        if self.unpreparable.contains(&h) || self.seen.insert(h) {
            if self.seen.len() > self.seen_cap {
                // Forget old sightings wholesale: cheap, and the cost of
                // forgetting is one more fresh run of a repeated text.
                self.seen.clear();
            }
            return conn.query(sql);
        }
        match conn.prepare(sql) {
            Ok(stmt) => {
                if self.prepared.len() >= self.prepared_cap {
                    // Evict the least recently used; O(capacity) but only when a
                    // new text is prepared, never on a cache hit.
                    if let Some(k) = self
                        .prepared
                        .iter()
                        .min_by_key(|(_, (_, t))| *t)
                        .map(|(k, _)| k.clone())
                    {
                        self.prepared.remove(&k);
                    }
                }
                let entry = self.prepared.entry(sql.into()).or_insert((stmt, self.tick));
                entry.0.execute()
            }
            Err(_) => {
                if self.unpreparable.len() > self.seen_cap {
                    self.unpreparable.clear();
                }
                self.unpreparable.insert(h);
                conn.query(sql)
            }
        }
    }
}
