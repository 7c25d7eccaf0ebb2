//! The engine: one DuckDB database, one connection per shard, shared counters.
//!
//! Owns opening DuckDB (settings, init SQL, version), handing each shard its
//! connection and channel-mesh slot, the per-shard counter blocks that
//! [`Engine::stats`] sums, the background refresher that publishes slow facts
//! (memory) with `arc-swap`, and joining worker threads at shutdown.
//! `stats()` never touches DuckDB and never takes a lock.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;
use glommio::channels::channel_mesh::{Full, MeshBuilder};

use crate::duckdb::{self, Connection, Database, InterruptHandle};
use crate::error::EngineError;
use crate::priority::CpuSet;
use crate::shard::{Msg, Shard};
use crate::sqlcheck::SqlRejected;
use crate::stats::{gauge, ShardCounters, Stats};

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
    /// Nice value of every thread that runs SQL (shard workers, DuckDB's own
    /// threads, the facts refresher); a value below the process's is ignored.
    pub sql_thread_nice: i32,
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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            duckdb_path: None,
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            duckdb_threads: None,
            max_memory_gb: None,
            init_sql: None,
            result_ttl: Duration::from_secs(600),
            cleanup_interval: Duration::from_secs(60),
            max_queued_jobs: 10_000,
            max_result_bytes: 1 << 30,
            sql_thread_nice: crate::priority::DEFAULT_SQL_THREAD_NICE,
            max_sql_bytes: crate::sqlcheck::DEFAULT_MAX_SQL_BYTES,
            max_sql_nesting: crate::sqlcheck::DEFAULT_MAX_SQL_NESTING,
            allowed_paths: Vec::new(),
        }
    }
}

/// Facts that are slow to read, refreshed off the hot path.
#[derive(Debug, Default)]
struct Facts {
    memory_used_mb: u64,
    duckdb_memory_mb: u64,
}

/// What a shard picks up when it joins.
struct Seat {
    conn: Connection,
}

/// The opened engine. `Send + Sync`; share it with `Arc`.
pub struct Engine {
    pub(crate) cfg: EngineConfig,
    version: String,
    pub(crate) counters: Box<[CachePadded<ShardCounters>]>,
    pub(crate) keywords: Arc<HashSet<String>>,
    facts: Arc<ArcSwap<Facts>>,
    /// Connections waiting for their shard, indexed by mesh peer id.
    seats: Mutex<Vec<Option<Seat>>>,
    /// Mesh builders cloned on the opening thread (glommio's builder must be
    /// cloned on one thread), one per shard.
    meshes: Mutex<Vec<MeshBuilder<Msg, Full>>>,
    interrupts: Vec<InterruptHandle>,
    pub(crate) stop: Arc<AtomicBool>,
    /// The CPUs SQL threads may run on (the process's, taken at open).
    pub(crate) sql_cpus: Option<CpuSet>,
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
        // DuckDB starts its scheduler threads while the database opens, and
        // they inherit the opener's priority: open it on a lowered thread.
        // DuckDB's threads also inherit the opener's name: "duckdb-pool" makes
        // them recognisable in top, perf and /proc instead of looking like
        // the main thread. The init SQL runs there too, on a SQL-sized stack.
        let opened = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("duckdb-pool".into())
                .stack_size(SQL_THREAD_STACK_BYTES)
                .spawn_scoped(s, || {
                    crate::priority::lower_current_thread(cfg.sql_thread_nice);
                    open_database(&cfg, &settings)
                })
                .map(|h| h.join())
        })
        .map_err(|e| EngineError::Thread(e.to_string()))?
        .map_err(|_| EngineError::Thread("the thread opening DuckDB panicked".into()))?;
        let Opened {
            db,
            conns,
            refresher_conn,
            keywords,
        } = opened?;
        let keywords = Arc::new(keywords);
        let interrupts = conns.iter().map(|c| c.interrupt_handle()).collect();
        let mesh = MeshBuilder::<Msg, Full>::full(cfg.shards, MESH_CHANNEL_SIZE);
        let meshes = (0..cfg.shards).map(|_| mesh.clone()).collect();
        drop(mesh);

        let facts = Arc::new(ArcSwap::from_pointee(Facts::default()));
        let (stop_tx, stop_rx) = mpsc::channel();
        let refresher = {
            let facts = facts.clone();
            let nice = cfg.sql_thread_nice;
            std::thread::Builder::new()
                .name("executor-facts".into())
                .stack_size(SQL_THREAD_STACK_BYTES)
                .spawn(move || {
                    crate::priority::lower_current_thread(nice);
                    refresh_facts(refresher_conn, facts, stop_rx)
                })
                .map_err(|e| EngineError::Thread(e.to_string()))?
        };

        Ok(Arc::new(Engine {
            version: duckdb::library_version(),
            counters: (0..cfg.shards)
                .map(|_| CachePadded::new(ShardCounters::default()))
                .collect(),
            keywords,
            facts,
            seats: Mutex::new(conns.into_iter().map(|conn| Some(Seat { conn })).collect()),
            meshes: Mutex::new(meshes),
            interrupts,
            stop: Arc::new(AtomicBool::new(false)),
            sql_cpus: CpuSet::of_current_thread(),
            threads: Mutex::new(vec![refresher]),
            refresher_stop: Mutex::new(Some(stop_tx)),
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

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
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
            s.queue_wait.merge(&c.queue_wait.snapshot());
            s.execution.merge(&c.execution.snapshot());
        }
        let f = self.facts.load();
        s.memory_used_mb = f.memory_used_mb;
        s.duckdb_memory_mb = f.duckdb_memory_mb;
        s
    }

    /// Work queued on all shards (jobs and `/execute`), for the overload check.
    pub(crate) fn queued_work(&self) -> usize {
        self.counters
            .iter()
            .map(|c| (gauge(&c.queued_jobs) + gauge(&c.queued_executes)) as usize)
            .sum()
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
        let seat = self
            .seats
            .lock()
            .map_err(|_| EngineError::Config("engine state poisoned".into()))?
            .get_mut(peer)
            .and_then(Option::take)
            .ok_or_else(|| EngineError::Config(format!("shard seat {peer} already taken")))?;
        let (shard, worker) = Shard::start(self.clone(), peer, senders, receivers, seat.conn)?;
        if let Ok(mut t) = self.threads.lock() {
            t.push(worker);
        }
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
    /// One per shard, init SQL run.
    conns: Vec<Connection>,
    refresher_conn: Connection,
    keywords: HashSet<String>,
}

/// Opens the database, makes one connection per shard and runs the init SQL
/// on each, then closes SQL's way out of the database (see [`lock_down`]).
/// Runs on the opening thread.
fn open_database(cfg: &EngineConfig, settings: &[(&str, String)]) -> Result<Opened, EngineError> {
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
    let mut conns = Vec::with_capacity(cfg.shards);
    for shard in 0..cfg.shards {
        let mut c = db.connect().map_err(EngineError::Connect)?;
        if let Some(sql) = cfg.init_sql.as_deref().filter(|s| !s.trim().is_empty()) {
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
        conns.push(c);
    }
    lock_down(&mut conns[0], &cfg.allowed_paths)?;
    let refresher_conn = db.connect().map_err(EngineError::Connect)?;
    let keywords = load_keywords(&mut conns[0]);
    Ok(Opened {
        db,
        conns,
        refresher_conn,
        keywords,
    })
}

/// A SQL string literal.
fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
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
