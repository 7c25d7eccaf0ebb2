//! The engine: one DuckDB database, a pool of connections per shard, shared
//! counters and the settings that may change while the agent runs.
//!
//! Owns opening DuckDB (settings, init SQL, version), handing each shard its
//! connections (each with its baseline session) and channel-mesh slot, the
//! per-shard counter blocks that [`Engine::stats`] sums, the request-id
//! index every shard's job table shares (`request_index.rs`), the retention
//! settings (TTL and cleanup interval, changeable at run time), the
//! background refresher that publishes slow facts (memory) with `arc-swap`,
//! and joining worker threads at shutdown. `stats()` never touches DuckDB and
//! never takes a lock.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::Sender;
use crossbeam_utils::CachePadded;
use duckdb_icu::TimeZone;
use glommio::channels::channel_mesh::{Full, MeshBuilder};

use crate::duckdb::{self, Connection, Database, InterruptHandle};
use crate::error::EngineError;
use crate::feed::Feed;
use crate::request_index::RequestIndex;
use crate::session::Baseline;
use crate::shard::{Msg, Shard};
use crate::sqlcheck::SqlRejected;
use crate::stats::{gauge, ShardCounters, Stats};
use crate::worker::{self, Seat, Task};

/// Default `QUERY_RESULT_TTL`.
pub const DEFAULT_RESULT_TTL: Duration = Duration::from_secs(600);
/// Default `QUERY_CLEANUP_INTERVAL`.
pub const DEFAULT_CLEANUP_INTERVAL: Duration = Duration::from_secs(60);
/// Default `MAX_QUEUED_JOBS` (agent total, spread over shards).
pub const DEFAULT_MAX_QUEUED_JOBS: usize = 10_000;
/// Default `MAX_RESULT_BYTES`.
pub const DEFAULT_MAX_RESULT_BYTES: usize = 1 << 30;
/// Statements each shard may run at once unless `MAX_CONCURRENT_QUERIES` says
/// otherwise: 4 (8 on a 2-core agent, the reference agent's cap). A long scan
/// then holds a quarter of its shard, not all of it, and DuckDB's own threads
/// still parallelise inside each statement (docs/benchmarks.md, "Executor v2").
pub const DEFAULT_QUERIES_PER_SHARD: usize = 4;

/// What the engine needs to start. The agent fills it from its environment.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Database file; `None` = in-memory.
    pub duckdb_path: Option<PathBuf>,
    /// Shards (glommio executors) that will call [`Engine::join_shard`]; >= 1.
    pub shards: usize,
    /// DuckDB's `threads` setting; `None` = DuckDB's default (all cores).
    pub duckdb_threads: Option<usize>,
    /// DuckDB's `max_memory`, in GB; `None` = DuckDB's default (80% of RAM).
    pub max_memory_gb: Option<f64>,
    /// SQL run on every shard connection at open (ATTACH / SET / LOAD).
    /// It runs once per connection, so use `ATTACH IF NOT EXISTS`.
    pub init_sql: Option<String>,
    /// How long terminal jobs are retained.
    pub result_ttl: Duration,
    /// How often each shard drops expired jobs.
    pub cleanup_interval: Duration,
    /// Queued work (jobs + `/execute`) across all shards above which new work
    /// is refused with `Overloaded`; 0 = unlimited.
    pub max_queued_jobs: usize,
    /// Largest encoded result (JSON bytes); 0 = unlimited.
    pub max_result_bytes: usize,
    /// Statements running at once, agent total, spread over shards (each gets
    /// its share of DuckDB connections and worker threads); 0 = the default,
    /// [`DEFAULT_QUERIES_PER_SHARD`] per shard. At least one per shard.
    pub max_concurrent_queries: usize,
    /// Longest a statement may take, queue time included; `None` = no limit.
    /// A request's own timeout is capped by it.
    pub query_timeout: Option<Duration>,
    /// Total bytes of retained job results; 0 = unlimited. When full, new
    /// submits are refused (429) and a job whose result does not fit fails
    /// with `RESULT_TOO_LARGE`.
    pub max_retained_bytes: usize,
    /// Nice value of every thread that runs SQL (shard workers, DuckDB's own
    /// threads, the facts refresher); a value below the process's is ignored.
    pub sql_thread_nice: i32,
    /// Scheduling policy of the same threads.
    pub sql_thread_policy: crate::priority::SqlThreadPolicy,
    /// Longest SQL text [`Engine::check_sql`] accepts; 0 = unlimited.
    pub max_sql_bytes: usize,
    /// Deepest bracket nesting (literals included) [`Engine::check_sql`]
    /// accepts; 0 = unlimited.
    pub max_sql_nesting: usize,
    /// Files and directories SQL may read and write (DuckDB's
    /// `allowed_paths` / `allowed_directories`); everything else outside the
    /// database is refused: DuckDB's `enable_external_access` is turned off
    /// once the init SQL has run. A path ending in `/` or naming an existing
    /// directory allows everything below it; any other names one file.
    pub allowed_paths: Vec<PathBuf>,
    /// DuckDB's `TimeZone` (icu's): the zone `TIMESTAMPTZ` values are shown
    /// in and `current_date` / `date_trunc` / casts compute in; UTC by
    /// default. Set globally right after the database opens, before the init
    /// SQL (which may still change it) and the lock.
    pub time_zone: TimeZone,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            duckdb_path: None,
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            duckdb_threads: None,
            max_memory_gb: None,
            init_sql: None,
            result_ttl: DEFAULT_RESULT_TTL,
            cleanup_interval: DEFAULT_CLEANUP_INTERVAL,
            max_queued_jobs: DEFAULT_MAX_QUEUED_JOBS,
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
            max_concurrent_queries: 0,
            query_timeout: None,
            max_retained_bytes: 0,
            sql_thread_nice: crate::priority::DEFAULT_SQL_THREAD_NICE,
            sql_thread_policy: crate::priority::DEFAULT_SQL_THREAD_POLICY,
            max_sql_bytes: crate::sqlcheck::DEFAULT_MAX_SQL_BYTES,
            max_sql_nesting: crate::sqlcheck::DEFAULT_MAX_SQL_NESTING,
            allowed_paths: Vec::new(),
            time_zone: TimeZone::utc(),
        }
    }
}

/// Facts that are slow to read, refreshed off the hot path.
#[derive(Debug, Default)]
struct Facts {
    memory_used_mb: u64,
    duckdb_memory_mb: u64,
}

/// Retention settings in force; the operator may change them at run time.
#[derive(Debug)]
struct Retention {
    ttl_ns: AtomicU64,
    interval_ns: AtomicU64,
}

/// The opened engine. `Send + Sync`; share it with `Arc`.
pub struct Engine {
    pub(crate) cfg: EngineConfig,
    version: String,
    pub(crate) counters: Box<[CachePadded<ShardCounters>]>,
    /// Request id -> job, for every retained job that has one, on any shard.
    pub(crate) request_ids: Arc<RequestIndex>,
    facts: Arc<ArcSwap<Facts>>,
    /// Each shard's workers (started with the engine) waiting for their
    /// shard, as the senders of their feed, indexed by mesh peer id.
    feeds: Mutex<Vec<Option<Vec<Sender<Task>>>>>,
    retention: Retention,
    /// Mesh builders cloned on the opening thread (glommio's builder must be
    /// cloned on one thread), one per shard.
    meshes: Mutex<Vec<MeshBuilder<Msg, Full>>>,
    interrupts: Vec<InterruptHandle>,
    pub(crate) stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    refresher_stop: Mutex<Option<mpsc::Sender<()>>>,
    // Dropped last: connections and shards reference the instance.
    _db: Arc<Database>,
}

/// Stack of every thread of ours that calls DuckDB (shard workers, the thread
/// that opens the database and runs the init SQL, the facts refresher).
/// DuckDB parses, binds and plans on the calling thread and recurses per
/// nesting level, up to `max_expression_depth` (1000, locked) levels: measured
/// up to 2.8 KiB of stack per level (nested subqueries, joins), 1.4 MiB at
/// the deepest shapes DuckDB accepts, which Rust's 2 MiB default barely held;
/// with the limit lifted, 1000 nested subqueries aborted the process. 64 MiB
/// leaves a margin of 40x over that and fits [`MAX_EXPRESSION_DEPTH_CEILING`]
/// levels. The size is address space: pages a thread never touches cost no
/// memory. Measurements: `docs/runbook.md`, "SQL bounds".
pub(crate) const SQL_THREAD_STACK_BYTES: usize = 64 << 20;

/// The highest `max_expression_depth` the init SQL may set (the stack above
/// fits it at 2.8 KiB per level with a 2x margin); start-up refuses more.
pub const MAX_EXPRESSION_DEPTH_CEILING: u64 = 10_000;

/// Capacity of each cross-shard channel in the mesh.
const MESH_CHANNEL_SIZE: usize = 1024;

impl Engine {
    /// Opens DuckDB, creates one connection per shard and runs the init SQL on
    /// each. Call on an ordinary thread (it blocks on DuckDB).
    pub fn open(cfg: EngineConfig) -> Result<Arc<Engine>, EngineError> {
        if cfg.shards == 0 {
            return Err(EngineError::Config("shards must be at least 1".into()));
        }
        if cfg.cleanup_interval.is_zero() {
            return Err(EngineError::Config(
                "cleanup interval must be positive".into(),
            ));
        }
        let mut settings = Vec::new();
        if let Some(gb) = cfg.max_memory_gb {
            if !(gb.is_finite() && gb > 0.0) {
                return Err(EngineError::Config(format!(
                    "max_memory_gb must be positive, got {gb}"
                )));
            }
            settings.push((
                "max_memory",
                format!("{}MiB", ((gb * 1024.0).round() as u64).max(1)),
            ));
        }
        if let Some(t) = cfg.duckdb_threads {
            if t == 0 {
                return Err(EngineError::Config(
                    "duckdb_threads must be at least 1".into(),
                ));
            }
            settings.push(("threads", t.to_string()));
        }
        // Every thread of ours that runs SQL starts on one lowered thread:
        // DuckDB's scheduler threads (started while the database opens), the
        // shards' workers and the facts refresher are all born with its nice
        // value, scheduling policy and CPU set, so none runs a single line
        // at normal priority or pinned to a reactor's core. DuckDB's threads
        // also inherit its name: "duckdb-pool" makes them recognisable in
        // top, perf and /proc instead of looking like the main thread. The
        // init SQL runs there too, on a SQL-sized stack.
        let facts = Arc::new(ArcSwap::from_pointee(Facts::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let started = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("duckdb-pool".into())
                .stack_size(SQL_THREAD_STACK_BYTES)
                .spawn_scoped(s, || {
                    crate::priority::lower_current_thread(
                        cfg.sql_thread_nice,
                        cfg.sql_thread_policy,
                    );
                    let opened = open_database(&cfg, &settings)?;
                    start_sql_threads(opened, stop.clone(), facts.clone())
                })
                .map(|h| h.join())
        })
        .map_err(|e| EngineError::Thread(e.to_string()))?
        .map_err(|_| EngineError::Thread("the thread opening DuckDB panicked".into()))?;
        let Started {
            db,
            feeds,
            interrupts,
            threads,
            refresher_stop,
        } = started?;
        let mesh = MeshBuilder::<Msg, Full>::full(cfg.shards, MESH_CHANNEL_SIZE);
        let meshes = (0..cfg.shards).map(|_| mesh.clone()).collect();
        drop(mesh);

        Ok(Arc::new(Engine {
            version: duckdb::library_version(),
            counters: (0..cfg.shards)
                .map(|_| CachePadded::new(ShardCounters::default()))
                .collect(),
            request_ids: Arc::new(RequestIndex::new()),
            facts,
            feeds: Mutex::new(feeds.into_iter().map(Some).collect()),
            retention: Retention {
                ttl_ns: AtomicU64::new(duration_ns(cfg.result_ttl)),
                interval_ns: AtomicU64::new(duration_ns(cfg.cleanup_interval)),
            },
            meshes: Mutex::new(meshes),
            interrupts,
            stop,
            threads: Mutex::new(threads),
            refresher_stop: Mutex::new(Some(refresher_stop)),
            _db: db,
            cfg,
        }))
    }

    /// Checks a SQL text against `max_sql_bytes` and `max_sql_nesting` before
    /// it is queued. Cheap (one pass over the text, no allocation): call it
    /// on the reactor and answer a refusal as the client's error.
    pub fn check_sql(&self, sql: &str) -> Result<(), SqlRejected> {
        crate::sqlcheck::check_sql(sql, self.cfg.max_sql_bytes, self.cfg.max_sql_nesting)
    }

    /// DuckDB's version string, e.g. `v2.0.0`.
    pub fn duckdb_version(&self) -> &str {
        &self.version
    }

    /// The configuration the engine was opened with (retention settings may
    /// have changed since: see [`Engine::result_ttl`]).
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The result TTL in force.
    pub fn result_ttl(&self) -> Duration {
        Duration::from_nanos(self.retention.ttl_ns.load(Relaxed))
    }

    /// The cleanup interval in force.
    pub fn cleanup_interval(&self) -> Duration {
        Duration::from_nanos(self.retention.interval_ns.load(Relaxed))
    }

    /// Changes the retention settings on a running engine. They apply at once
    /// to every job already retained (expiry is `completed + ttl`, evaluated
    /// at each sweep) and every shard's sweep picks up the new interval within
    /// a quarter second. A zero interval is refused and nothing changes.
    pub fn set_retention(
        &self,
        ttl: Option<Duration>,
        interval: Option<Duration>,
    ) -> Result<(), EngineError> {
        if interval.is_some_and(|i| i.is_zero()) {
            return Err(EngineError::Config(
                "cleanup interval must be positive".into(),
            ));
        }
        if let Some(t) = ttl {
            self.retention.ttl_ns.store(duration_ns(t), Relaxed);
        }
        if let Some(i) = interval {
            self.retention.interval_ns.store(duration_ns(i), Relaxed);
        }
        Ok(())
    }

    /// The timeout that applies to a statement whose caller asked for
    /// `requested`: the smaller of it and `QUERY_TIMEOUT`.
    pub fn effective_timeout(&self, requested: Option<Duration>) -> Option<Duration> {
        match (requested, self.cfg.query_timeout) {
            (Some(r), Some(max)) => Some(r.min(max)),
            (r, max) => r.or(max),
        }
    }

    /// Each shard's share of `MAX_QUEUED_JOBS` (0: unlimited).
    pub(crate) fn max_queued_per_shard(&self) -> usize {
        self.cfg.max_queued_jobs.div_ceil(self.cfg.shards)
    }

    /// Where new work that may run on any shard goes: `here` while it has a
    /// free worker, else the shard with the most free workers, else `here`
    /// (where it queues). Reads only atomics.
    pub(crate) fn shard_for_new_work(&self, here: usize) -> usize {
        let free = |c: &ShardCounters| {
            c.slots.load(Relaxed)
                - c.active_queries.load(Relaxed)
                - c.queued_jobs.load(Relaxed)
                - c.queued_executes.load(Relaxed)
        };
        if free(&self.counters[here]) > 0 {
            return here;
        }
        let (best, room) = self
            .counters
            .iter()
            .enumerate()
            .map(|(i, c)| (i, free(c)))
            .max_by_key(|&(_, f)| f)
            .unwrap_or((here, 0));
        if room > 0 {
            best
        } else {
            here
        }
    }

    fn retained_bytes(&self) -> usize {
        self.counters
            .iter()
            .map(|c| gauge(&c.result_bytes) as usize)
            .sum()
    }

    /// True when retained results fill `MAX_RETAINED_BYTES`.
    pub(crate) fn retained_full(&self) -> bool {
        let max = self.cfg.max_retained_bytes;
        max != 0 && self.retained_bytes() >= max
    }

    /// What is left of `MAX_RETAINED_BYTES` (`None`: unlimited).
    pub(crate) fn retained_room(&self) -> Option<usize> {
        let max = self.cfg.max_retained_bytes;
        (max != 0).then(|| max.saturating_sub(self.retained_bytes()))
    }

    /// True when retaining `bytes` more would pass `MAX_RETAINED_BYTES`.
    pub(crate) fn retained_would_overflow(&self, bytes: usize) -> bool {
        let max = self.cfg.max_retained_bytes;
        max != 0 && self.retained_bytes().saturating_add(bytes) > max
    }

    /// Request ids the engine remembers: one per retained job submitted with
    /// one (bounded by the jobs retained). Lock-free.
    pub fn retained_request_ids(&self) -> usize {
        self.request_ids.len()
    }

    /// Engine-wide counters summed over shards. Lock-free; never touches DuckDB.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for c in self.counters.iter() {
            s.active_queries += gauge(&c.active_queries);
            s.queued_jobs += gauge(&c.queued_jobs);
            s.running_jobs += gauge(&c.running_jobs);
            s.completed_jobs += gauge(&c.completed_jobs);
            s.stored_jobs += gauge(&c.stored_jobs);
            s.cleaned_jobs += c.cleaned_jobs.load(Relaxed);
            s.submitted_jobs += c.submitted_jobs.load(Relaxed);
            s.executed_statements += c.executed_statements.load(Relaxed);
            s.rejected_overloaded += c.rejected_overloaded.load(Relaxed);
            s.result_bytes += gauge(&c.result_bytes);
            s.max_concurrent_queries += gauge(&c.slots);
            s.query_timeouts += c.timeouts.load(Relaxed);
            s.queue_wait.merge(&c.queue_wait.snapshot());
            s.execution.merge(&c.execution.snapshot());
        }
        let f = self.facts.load();
        s.memory_used_mb = f.memory_used_mb;
        s.duckdb_memory_mb = f.duckdb_memory_mb;
        s
    }

    /// Joins the calling glommio executor as one shard. Every shard must call
    /// this concurrently (the channel mesh completes when all have joined).
    /// `shard_count` must equal the configured shard count.
    pub async fn join_shard(
        self: &Arc<Self>,
        shard_id: usize,
        shard_count: usize,
    ) -> Result<Shard, EngineError> {
        if shard_count != self.cfg.shards || shard_id >= shard_count {
            return Err(EngineError::Config(format!(
                "shard {shard_id} of {shard_count} joined an engine opened for {} shards",
                self.cfg.shards
            )));
        }
        let mesh = self
            .meshes
            .lock()
            .map_err(|_| EngineError::Config("engine state poisoned".into()))?
            .pop()
            .ok_or_else(|| EngineError::Config("more shards joined than configured".into()))?;
        let (senders, receivers) = mesh
            .join()
            .await
            .map_err(|_| EngineError::Config("cannot join the channel mesh".into()))?;
        // Routing uses the mesh's peer index (join order is glommio's, not
        // ours), so the connection is picked by it too.
        let peer = senders.peer_id();
        let to_workers = self
            .feeds
            .lock()
            .map_err(|_| EngineError::Config("engine state poisoned".into()))?
            .get_mut(peer)
            .and_then(Option::take)
            .ok_or_else(|| EngineError::Config(format!("shard seat {peer} already taken")))?;
        let shard = Shard::start(
            self.clone(),
            peer,
            senders,
            receivers,
            Feed::new(to_workers),
        );
        Ok(shard)
    }

    /// Stops the engine: workers finish (running statements are interrupted),
    /// the refresher stops, and their threads are joined, waiting at most
    /// `deadline`. Call after the shards have shut down (or stopped).
    /// Returns false if some thread was still running at the deadline.
    pub fn shutdown(&self, deadline: Duration) -> bool {
        self.stop.store(true, Relaxed);
        for i in &self.interrupts {
            i.interrupt();
        }
        if let Ok(mut s) = self.refresher_stop.lock() {
            s.take();
        }
        let threads: Vec<JoinHandle<()>> = match self.threads.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => return false,
        };
        let end = Instant::now() + deadline;
        let mut all = true;
        for t in threads {
            while !t.is_finished() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                all = false;
            }
        }
        all
    }
}

/// What the opening thread hands back.
struct Opened {
    db: Arc<Database>,
    /// Per shard, its pool of connections (init SQL run, baseline taken).
    seats: Vec<Vec<Seat>>,
    interrupts: Vec<InterruptHandle>,
    refresher_conn: Connection,
    keywords: HashSet<String>,
}

/// Opens the database, makes each shard's pool of connections and runs the
/// init SQL on each, then closes SQL's way out of the database (see
/// [`lock_down`]) and records each connection's session as its baseline.
/// Runs on the opening thread.
fn open_database(cfg: &EngineConfig, settings: &[(&str, String)]) -> Result<Opened, EngineError> {
    let total = match cfg.max_concurrent_queries {
        0 => DEFAULT_QUERIES_PER_SHARD * cfg.shards,
        n if n < cfg.shards => {
            return Err(EngineError::Config(format!(
                "max_concurrent_queries ({n}) must be at least the shard count ({})",
                cfg.shards
            )))
        }
        n => n,
    };
    let db = Database::open(cfg.duckdb_path.as_deref(), settings).map_err(|m| {
        // Tell a bad setting apart from a bad file: both arrive as a message.
        if m.starts_with("invalid setting") {
            EngineError::Setting {
                setting: "max_memory/threads",
                message: m,
            }
        } else {
            EngineError::Open(m)
        }
    })?;
    let db = Arc::new(db);
    set_time_zone(&db, &cfg.time_zone)?;
    let init_sql = cfg.init_sql.as_deref().filter(|s| !s.trim().is_empty());
    let mut pools: Vec<Vec<Connection>> = Vec::with_capacity(cfg.shards);
    for shard in 0..cfg.shards {
        let slots = total / cfg.shards + usize::from(shard < total % cfg.shards);
        let mut pool = Vec::with_capacity(slots);
        for _ in 0..slots {
            let mut c = db.connect().map_err(EngineError::Connect)?;
            if let Some(sql) = init_sql {
                c.query(sql).map_err(|e| EngineError::InitSql {
                    shard,
                    message: match e {
                        duckdb::DbError::Failed(m) => m,
                        duckdb::DbError::Interrupted => "interrupted".into(),
                    },
                })?;
            }
            let depth = query_u64(
                &mut c,
                "SELECT current_setting('max_expression_depth')::UBIGINT",
            );
            if depth.is_none_or(|d| d > MAX_EXPRESSION_DEPTH_CEILING) {
                return Err(EngineError::Setting {
                    setting: "max_expression_depth",
                    message: format!(
                        "{} (set by the init SQL?) is above {MAX_EXPRESSION_DEPTH_CEILING}, the depth the SQL threads' stack is sized for",
                        depth.map_or("unknown".to_string(), |d| d.to_string())
                    ),
                });
            }
            pool.push(c);
        }
        pools.push(pool);
    }
    lock_down(&mut pools[0][0], &cfg.allowed_paths)?;
    let refresher_conn = db.connect().map_err(EngineError::Connect)?;
    let keywords = load_keywords(&mut pools[0][0]);
    let mut interrupts = Vec::with_capacity(total);
    let mut seats = Vec::with_capacity(cfg.shards);
    for pool in pools {
        let mut shard_seats = Vec::with_capacity(pool.len());
        for mut conn in pool {
            let baseline = Baseline::capture(&mut conn).map_err(EngineError::Connect)?;
            interrupts.push(conn.interrupt_handle());
            shard_seats.push(Seat { conn, baseline });
        }
        seats.push(shard_seats);
    }
    Ok(Opened {
        db,
        seats,
        interrupts,
        refresher_conn,
        keywords,
    })
}

/// The SQL threads started on the opening thread, and what the engine keeps
/// of them.
struct Started {
    db: Arc<Database>,
    /// Per shard, the feed senders of its workers.
    feeds: Vec<Vec<Sender<Task>>>,
    interrupts: Vec<InterruptHandle>,
    /// The workers' and the refresher's, joined at shutdown.
    threads: Vec<JoinHandle<()>>,
    refresher_stop: mpsc::Sender<()>,
}

/// Starts every shard's workers (each owning one connection, waiting for its
/// shard to join) and the facts refresher. Runs on the lowered opening
/// thread, whose priority and CPU set they inherit. A failure drops the
/// senders made so far, so workers already started exit.
fn start_sql_threads(
    opened: Opened,
    stop: Arc<AtomicBool>,
    facts: Arc<ArcSwap<Facts>>,
) -> Result<Started, EngineError> {
    let Opened {
        db,
        seats,
        interrupts,
        refresher_conn,
        keywords,
    } = opened;
    let replacement_db = db.clone();
    let cfg = Arc::new(worker::Config {
        keywords: Arc::new(keywords),
        stop,
        // The configuration is locked by now, so the init SQL cannot run
        // again: a replacement starts from a plain connection and the
        // worker restores the baseline session on it (what the lock
        // refuses to set again is reported by the worker).
        reconnect: Arc::new(move || replacement_db.connect()),
    });
    let mut threads = Vec::with_capacity(interrupts.len() + 1);
    let mut feeds = Vec::with_capacity(seats.len());
    for (shard, shard_seats) in seats.into_iter().enumerate() {
        let mut senders = Vec::with_capacity(shard_seats.len());
        for (i, seat) in shard_seats.into_iter().enumerate() {
            let (tx, rx) = worker::feed_channel();
            threads.push(
                worker::spawn(shard, i, seat, cfg.clone(), rx)
                    .map_err(|e| EngineError::Thread(e.to_string()))?,
            );
            senders.push(tx);
        }
        feeds.push(senders);
    }
    let (refresher_stop, stop_rx) = mpsc::channel();
    threads.push(
        std::thread::Builder::new()
            .name("executor-facts".into())
            .stack_size(SQL_THREAD_STACK_BYTES)
            .spawn(move || refresh_facts(refresher_conn, facts, stop_rx))
            .map_err(|e| EngineError::Thread(e.to_string()))?,
    );
    Ok(Started {
        db,
        feeds,
        interrupts,
        threads,
        refresher_stop,
    })
}

/// A SQL string literal.
fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Sets icu's `TimeZone` for the whole database (every connection, those
/// already open included, reads the global value), before the init SQL runs
/// and before [`lock_down`]. DuckDB checks the name: an unknown zone stops
/// start-up with its message, which suggests the nearest names.
fn set_time_zone(db: &Database, zone: &TimeZone) -> Result<(), EngineError> {
    let fail = |message: String| EngineError::Setting {
        setting: "TimeZone",
        message,
    };
    let mut conn = db.connect().map_err(EngineError::Connect)?;
    conn.query(&zone.set_global_sql())
        .map(drop)
        .map_err(|e| match e {
            duckdb::DbError::Failed(m) => fail(m),
            duckdb::DbError::Interrupted => fail("interrupted".into()),
        })
}

/// After the init SQL (whose ATTACH and LOAD keep working): SQL may touch
/// only the database and `allowed` (DuckDB's `enable_external_access =
/// false`, with `allowed_directories` / `allowed_paths`), and no statement
/// may change a setting again (`lock_configuration`), so a job cannot lift
/// `max_expression_depth` or the memory limit, or widen file access.
/// `SET schema`, `SET search_path` and `USE` stay allowed (DuckDB's own
/// exception), as do settings an operator's init SQL lists in
/// `allowed_configs`. What the lock refuses is listed in `docs/runbook.md`.
fn lock_down(conn: &mut Connection, allowed: &[PathBuf]) -> Result<(), EngineError> {
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for p in allowed {
        let text = p.to_string_lossy();
        if text.ends_with('/') || p.is_dir() {
            dirs.push(sql_literal(&text));
        } else {
            files.push(sql_literal(&text));
        }
    }
    let mut sql = String::new();
    if !dirs.is_empty() {
        sql.push_str(&format!(
            "SET GLOBAL allowed_directories = [{}];\n",
            dirs.join(", ")
        ));
    }
    if !files.is_empty() {
        sql.push_str(&format!(
            "SET GLOBAL allowed_paths = [{}];\n",
            files.join(", ")
        ));
    }
    sql.push_str(
        "SET GLOBAL enable_external_access = false;\nSET GLOBAL lock_configuration = true;\n",
    );
    conn.query(&sql)
        .map(drop)
        .map_err(|e| EngineError::Setting {
            setting: "allowed_paths/enable_external_access/lock_configuration",
            message: match e {
                duckdb::DbError::Failed(m) => m,
                duckdb::DbError::Interrupted => "interrupted".into(),
            },
        })
}

/// DuckDB's keywords, for printing struct field names the way DuckDB does.
fn load_keywords(conn: &mut Connection) -> HashSet<String> {
    let mut set = HashSet::new();
    let Ok(mut out) = conn.query("SELECT keyword_name FROM duckdb_keywords()") else {
        return set;
    };
    if let Ok(r) = crate::encode::encode(&mut out, 0, &set) {
        let mut rows = Vec::new();
        r.write_rows(0..r.row_count(), &mut rows);
        // rows = [["a"],["b"],...]: keywords are plain ASCII words, never escaped.
        for part in rows.split(|&b| b == b'"').skip(1).step_by(2) {
            set.insert(String::from_utf8_lossy(part).into_owned());
        }
    }
    set
}

/// The first value of `sql`'s result as an unsigned integer.
fn query_u64(conn: &mut Connection, sql: &str) -> Option<u64> {
    let mut out = conn.query(sql).ok()?;
    let r = crate::encode::encode(&mut out, 0, &HashSet::new()).ok()?;
    let mut rows = Vec::new();
    r.write_rows(0..1, &mut rows);
    let digits: String = rows
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    digits.parse().ok()
}

/// Resident set size of this process in MiB (from /proc/self/status).
fn rss_mb() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// Publishes memory facts every second until `stop` closes.
/// Nanoseconds, saturating (584 years).
fn duration_ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

fn refresh_facts(mut conn: Connection, facts: Arc<ArcSwap<Facts>>, stop: mpsc::Receiver<()>) {
    let keywords = HashSet::new();
    loop {
        let duckdb_memory_mb = conn
            .query("SELECT CAST(COALESCE(SUM(memory_usage_bytes), 0) // 1048576 AS BIGINT) FROM duckdb_memory()")
            .ok()
            .and_then(|mut out| crate::encode::encode(&mut out, 0, &keywords).ok())
            .and_then(|r| {
                let mut rows = Vec::new();
                r.write_rows(0..1, &mut rows);
                let digits: String = rows.iter().filter(|b| b.is_ascii_digit()).map(|&b| b as char).collect();
                digits.parse().ok()
            })
            .unwrap_or(0);
        facts.store(Arc::new(Facts {
            memory_used_mb: rss_mb(),
            duckdb_memory_mb,
        }));
        match stop.recv_timeout(Duration::from_secs(1)) {
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            _ => break,
        }
    }
}
