//! Executor benchmarks against in-process DuckDB references, same run,
//! alternating A/B/... rounds (see docs/benchmarks.md, "Executor").
//!
//! 1. Statements/s on 2 connections: the executor's fresh path (unique
//!    `SELECT <n>`) and cached path (same text repeated) against the C API's
//!    prepare + execute per statement, `duckdb_query` per statement, and a
//!    reused prepared statement.
//! 2. Encoding 1M (BIGINT, VARCHAR) rows to JSON against DuckDB's own
//!    `COPY ... TO ... (FORMAT JSON, ARRAY true)`.
//! 3. Memory: resident bytes per JSON byte of retained results.
//!
//! Run: `CARGO_TARGET_DIR=$HOME/.cache/compute-agent-target cargo bench -p executor --bench executor_bench`
//! Env: `BENCH_SECS` (per measurement, default 2), `BENCH_ROUNDS` (default 3).

use std::ffi::CString;
use std::future::Future;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use executor::{Engine, EngineConfig, QueryResult, Shard};
use glommio::{LocalExecutorBuilder, Placement};
use libduckdb_sys as ffi;

const CONNS: usize = 2;
const IN_FLIGHT: usize = 8;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config() -> EngineConfig {
    EngineConfig {
        shards: CONNS,
        duckdb_threads: Some(2),
        max_queued_jobs: 0,
        max_result_bytes: 0,
        // The encoder section's COPY reference writes a file here.
        allowed_paths: vec![std::env::temp_dir()],
        ..Default::default()
    }
}

/// Runs `body` on every shard of a fresh engine and sums what the bodies return.
fn on_shards<F, Fut>(body: F) -> u64
where
    F: Fn(Shard) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = u64> + 'static,
{
    let engine = Engine::open(config()).expect("open");
    let body = Arc::new(body);
    let handles: Vec<_> = (0..CONNS)
        .map(|i| {
            let engine = engine.clone();
            let body = body.clone();
            LocalExecutorBuilder::new(Placement::Unbound)
                .io_memory(256 * 1024)
                .spawn(move || async move {
                    let shard = engine.join_shard(i, CONNS).await.expect("join");
                    let n = body(shard.clone()).await;
                    shard.shutdown(Duration::from_secs(10)).await;
                    n
                })
                .expect("executor")
        })
        .collect();
    let total = handles.into_iter().map(|h| h.join().expect("shard")).sum();
    engine.shutdown(Duration::from_secs(10));
    total
}

/// Statements/s through `Shard::execute`, IN_FLIGHT concurrent callers per shard.
fn executor_rate(secs: u64, unique: bool) -> f64 {
    let t = Instant::now();
    let n = on_shards(move |shard| async move {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let counter = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|k| {
                let shard = shard.clone();
                let counter = counter.clone();
                glommio::spawn_local(async move {
                    let mut i = 0u64;
                    while Instant::now() < deadline {
                        let sql = if unique {
                            format!(
                                "SELECT {}",
                                (shard.index() as u64) << 40 | (k as u64) << 32 | i
                            )
                        } else {
                            "SELECT 1".to_string()
                        };
                        shard.execute(&sql).await.expect("execute");
                        i += 1;
                    }
                    counter.fetch_add(i, Ordering::Relaxed);
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        counter.load(Ordering::Relaxed)
    });
    n as f64 / t.elapsed().as_secs_f64().max(secs as f64)
}

#[derive(Clone, Copy, PartialEq)]
enum RefMode {
    PrepareExecute,
    Query,
    PreparedReuse,
}

/// Statements/s straight on the C API: one thread per connection.
fn reference_rate(secs: u64, mode: RefMode) -> f64 {
    struct Db(ffi::duckdb_database);
    // SAFETY: a DuckDB database handle may be connected to from any thread.
    unsafe impl Send for Db {}
    unsafe impl Sync for Db {}
    let mut db: ffi::duckdb_database = ptr::null_mut();
    let mut cfg: ffi::duckdb_config = ptr::null_mut();
    // SAFETY: plain C API set-up with out-pointers to locals; config destroyed after open.
    unsafe {
        ffi::duckdb_create_config(&mut cfg);
        let (k, v) = (CString::new("threads").unwrap(), CString::new("2").unwrap());
        ffi::duckdb_set_config(cfg, k.as_ptr(), v.as_ptr());
        let mut err = ptr::null_mut();
        assert_eq!(
            ffi::duckdb_open_ext(ptr::null(), &mut db, cfg, &mut err),
            ffi::DuckDBSuccess
        );
        ffi::duckdb_destroy_config(&mut cfg);
    }
    let db = Arc::new(Db(db));
    let start = Instant::now();
    let threads: Vec<_> = (0..CONNS)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut conn: ffi::duckdb_connection = ptr::null_mut();
                // SAFETY: valid database; each thread uses its own connection only.
                unsafe { assert_eq!(ffi::duckdb_connect(db.0, &mut conn), ffi::DuckDBSuccess) };
                let deadline = Instant::now() + Duration::from_secs(secs);
                let mut reused: ffi::duckdb_prepared_statement = ptr::null_mut();
                if mode == RefMode::PreparedReuse {
                    let sql = CString::new("SELECT 1").unwrap();
                    // SAFETY: valid connection, NUL-terminated SQL.
                    unsafe {
                        assert_eq!(
                            ffi::duckdb_prepare(conn, sql.as_ptr(), &mut reused),
                            ffi::DuckDBSuccess
                        )
                    };
                }
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let sql = CString::new(format!("SELECT {}", (t as u64) << 40 | i)).unwrap();
                    // SAFETY: standard prepare/execute/query sequence on this
                    // thread's connection; every handle is destroyed before the next.
                    unsafe {
                        let mut res: ffi::duckdb_result = std::mem::zeroed();
                        match mode {
                            RefMode::PrepareExecute => {
                                let mut st: ffi::duckdb_prepared_statement = ptr::null_mut();
                                assert_eq!(
                                    ffi::duckdb_prepare(conn, sql.as_ptr(), &mut st),
                                    ffi::DuckDBSuccess
                                );
                                assert_eq!(
                                    ffi::duckdb_execute_prepared(st, &mut res),
                                    ffi::DuckDBSuccess
                                );
                                ffi::duckdb_destroy_prepare(&mut st);
                            }
                            RefMode::Query => {
                                assert_eq!(
                                    ffi::duckdb_query(conn, sql.as_ptr(), &mut res),
                                    ffi::DuckDBSuccess
                                );
                            }
                            RefMode::PreparedReuse => {
                                assert_eq!(
                                    ffi::duckdb_execute_prepared(reused, &mut res),
                                    ffi::DuckDBSuccess
                                );
                            }
                        }
                        // Read the value, as any client must.
                        let mut chunk = ffi::duckdb_fetch_chunk(res);
                        assert!(!chunk.is_null());
                        ffi::duckdb_destroy_data_chunk(&mut chunk);
                        ffi::duckdb_destroy_result(&mut res);
                    }
                    i += 1;
                }
                // SAFETY: destroyed once, before the connection.
                unsafe {
                    if !reused.is_null() {
                        ffi::duckdb_destroy_prepare(&mut reused);
                    }
                    ffi::duckdb_disconnect(&mut conn);
                }
                i
            })
        })
        .collect();
    let n: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let mut db = Arc::try_unwrap(db).ok().expect("threads joined").0;
    // SAFETY: every connection is closed; close once.
    unsafe { ffi::duckdb_close(&mut db) };
    rate
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn spread(v: &[f64]) -> (f64, f64) {
    (
        v.iter().cloned().fold(f64::MAX, f64::min),
        v.iter().cloned().fold(f64::MIN, f64::max),
    )
}

fn report_ratio(name: &str, ratios: &[f64]) {
    let (lo, hi) = spread(ratios);
    println!(
        "  {name}: median {:.2}x (min {:.2}x, max {:.2}x)",
        median(ratios.to_vec()),
        lo,
        hi
    );
}

fn bench_statements(secs: u64, rounds: usize) {
    println!("## Statements/s, {CONNS} connections (executor: {IN_FLIGHT} callers per shard)");
    let mut rows: Vec<(&str, Vec<f64>)> = vec![
        ("C API prepare+execute (fresh)", vec![]),
        ("C API duckdb_query (fresh)", vec![]),
        ("executor unique SQL (fresh path)", vec![]),
        ("C API reused prepared statement", vec![]),
        ("executor repeated SQL (cached path)", vec![]),
    ];
    for round in 0..rounds {
        let r = [
            reference_rate(secs, RefMode::PrepareExecute),
            reference_rate(secs, RefMode::Query),
            executor_rate(secs, true),
            reference_rate(secs, RefMode::PreparedReuse),
            executor_rate(secs, false),
        ];
        println!(
            "  round {round}: {}",
            r.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(" / ")
        );
        for (row, v) in rows.iter_mut().zip(r) {
            row.1.push(v);
        }
    }
    println!("| path | median stmts/s | min | max |\n|---|---|---|---|");
    for (name, v) in &rows {
        let (lo, hi) = spread(v);
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            median(v.clone()),
            lo,
            hi
        );
    }
    let ratio = |a: usize, b: usize| -> Vec<f64> {
        rows[a]
            .1
            .iter()
            .zip(&rows[b].1)
            .map(|(x, y)| x / y)
            .collect()
    };
    report_ratio("executor fresh / C API prepare+execute", &ratio(2, 0));
    report_ratio("executor fresh / C API duckdb_query", &ratio(2, 1));
    report_ratio("executor cached / C API reused prepared", &ratio(4, 3));
    report_ratio("executor cached / executor fresh", &ratio(4, 2));
}

const ROWS_SQL: &str = "SELECT i, 'value-' || i AS s FROM range(1000000) t(i)";

fn bench_encoder(rounds: usize) {
    println!("\n## 1M (BIGINT, VARCHAR) rows to JSON (executor shard vs DuckDB COPY ... FORMAT JSON, ARRAY true)");
    let path = std::env::temp_dir().join(format!("executor-bench-{}.json", std::process::id()));
    let path_s = path.to_string_lossy().to_string();
    let out = Arc::new(Mutex::new(Vec::<(f64, f64, usize, u64)>::new()));
    let out2 = out.clone();
    on_shards(move |shard| {
        let out = out2.clone();
        let path_s = path_s.clone();
        async move {
            if shard.index() != 0 {
                return 0;
            }
            let copy = format!("COPY ({ROWS_SQL}) TO '{path_s}' (FORMAT JSON, ARRAY true)");
            for _ in 0..rounds {
                let t = Instant::now();
                let r = shard.execute(ROWS_SQL).await.expect("select");
                let ours = t.elapsed().as_secs_f64();
                let json_len = r.rows_json_len(0..r.row_count());
                drop(r);
                let t = Instant::now();
                shard.execute(&copy).await.expect("copy");
                let theirs = t.elapsed().as_secs_f64();
                let file_len = std::fs::metadata(&path_s).map(|m| m.len()).unwrap_or(0);
                out.lock().unwrap().push((ours, theirs, json_len, file_len));
            }
            0
        }
    });
    let _ = std::fs::remove_file(&path);
    let v = out.lock().unwrap().clone();
    println!("| round | executor s | COPY s | ratio | executor JSON bytes | COPY file bytes |\n|---|---|---|---|---|---|");
    for (i, (a, b, j, f)) in v.iter().enumerate() {
        println!("| {i} | {a:.3} | {b:.3} | {:.2}x | {j} | {f} |", a / b);
    }
    report_ratio(
        "executor / COPY time",
        &v.iter().map(|(a, b, _, _)| a / b).collect::<Vec<_>>(),
    );
}

extern "C" {
    /// glibc: return free heap memory to the OS, so RSS shows live memory.
    fn malloc_trim(pad: usize) -> i32;
}

fn trimmed_rss_bytes() -> u64 {
    // SAFETY: glibc's malloc_trim has no preconditions.
    unsafe { malloc_trim(0) };
    rss_bytes()
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn bench_memory() {
    println!("\n## Memory: resident bytes per JSON byte of retained results (5 x 1M rows held; RSS read after malloc_trim)");
    let held: Arc<Mutex<Vec<Arc<QueryResult>>>> = Arc::new(Mutex::new(Vec::new()));
    let stats = Arc::new(Mutex::new((0u64, 0u64, 0usize, 0usize)));
    let (h2, s2) = (held.clone(), stats.clone());
    on_shards(move |shard| {
        let held = h2.clone();
        let stats = s2.clone();
        async move {
            if shard.index() != 0 {
                return 0;
            }
            // Warm the allocator and DuckDB's buffers first, then measure the delta.
            drop(shard.execute(ROWS_SQL).await.expect("warm"));
            glommio::timer::sleep(Duration::from_millis(200)).await;
            let before = trimmed_rss_bytes();
            let (mut json, mut retained) = (0usize, 0usize);
            for _ in 0..5 {
                let r = shard.execute(ROWS_SQL).await.expect("select");
                json += r.rows_json_len(0..r.row_count());
                retained += r.retained_bytes();
                held.lock().unwrap().push(r);
            }
            glommio::timer::sleep(Duration::from_millis(200)).await;
            *stats.lock().unwrap() = (before, trimmed_rss_bytes(), json, retained);
            0
        }
    });
    let (before, after, json, retained) = *stats.lock().unwrap();
    println!("| JSON bytes held | QueryResult::retained_bytes | RSS delta | retained/JSON | RSS delta/JSON |\n|---|---|---|---|---|");
    println!(
        "| {json} | {retained} | {} | {:.3} | {:.3} |",
        after.saturating_sub(before),
        retained as f64 / json as f64,
        after.saturating_sub(before) as f64 / json as f64
    );
    drop(held);
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument picks one section.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_default();
    let secs = env_num("BENCH_SECS", 2);
    let rounds = env_num("BENCH_ROUNDS", 3) as usize;
    println!(
        "DuckDB {}; {} CPUs visible",
        executor_version(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // Profiling aids: one path alone for BENCH_SECS.
    if filter == "exec-fresh" || filter == "exec-cached" {
        println!("{:.0} stmts/s", executor_rate(secs, filter == "exec-fresh"));
        return;
    }
    if filter == "ref-query" {
        println!("{:.0} stmts/s", reference_rate(secs, RefMode::Query));
        return;
    }
    if filter.is_empty() || filter == "statements" {
        bench_statements(secs, rounds);
    }
    if filter.is_empty() || filter == "encoder" {
        bench_encoder(rounds);
    }
    if filter.is_empty() || filter == "memory" {
        bench_memory();
    }
}

fn executor_version() -> String {
    Engine::open(EngineConfig {
        shards: 1,
        ..config()
    })
    .map(|e| e.duckdb_version().to_string())
    .unwrap_or_default()
}
