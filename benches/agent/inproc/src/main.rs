//! In-process DuckDB reference for the agent's `/execute` benchmark.
//!
//! Owns: running trivial statements on one DuckDB connection per thread, all
//! cloned from one in-memory database (the agent's shape, minus HTTP), and
//! printing the rate as one JSON line. It must never share a connection
//! between threads or time anything but the statement loop.
//!
//! Modes (how a statement is run):
//! - `prepare`: `duckdb_prepare` + `duckdb_execute_prepared` per statement,
//!   what duckdb-rs's `prepare` + `query` does;
//! - `query`: `duckdb_query` per statement, the leanest fresh-statement path
//!   of the C API (no separate prepared-statement object);
//! - `reuse`: prepare once per thread, execute it every time (what a
//!   per-connection statement cache gives repeated SQL text); `repeat` only.
//!
//! SQL: `repeat` runs `SELECT 1`; `unique` runs `SELECT <n>` with a fresh n
//! each time (no two statements share text across threads).
//!
//! `--separate-db` gives every thread its own in-memory database instead of a
//! connection to the shared one (what Python's one-process-per-core does).
//!
//! Usage: agent-inproc-bench <prepare|query|reuse> <repeat|unique> [--threads N] [--seconds S] [--duckdb-threads N] [--separate-db]

use libduckdb_sys as ffi;
use std::ffi::{CStr, CString};
use std::process::ExitCode;
use std::ptr;
use std::sync::Barrier;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Prepare,
    Query,
    Reuse,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Sql {
    Repeat,
    Unique,
}

struct Args {
    mode: Mode,
    sql: Sql,
    threads: usize,
    seconds: f64,
    duckdb_threads: Option<usize>,
    separate_db: bool,
}

#[derive(Debug)]
enum BenchError {
    Usage(String),
    DuckDb(String),
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchError::Usage(m) => write!(f, "usage: {m}"),
            BenchError::DuckDb(m) => write!(f, "duckdb: {m}"),
        }
    }
}

fn parse_args() -> Result<Args, BenchError> {
    let mut it = std::env::args().skip(1);
    let mode = match it.next().as_deref() {
        Some("prepare") => Mode::Prepare,
        Some("query") => Mode::Query,
        Some("reuse") => Mode::Reuse,
        other => {
            return Err(BenchError::Usage(format!(
                "mode prepare|query|reuse, got {other:?}"
            )))
        }
    };
    let sql = match it.next().as_deref() {
        Some("repeat") => Sql::Repeat,
        Some("unique") => Sql::Unique,
        other => {
            return Err(BenchError::Usage(format!(
                "sql repeat|unique, got {other:?}"
            )))
        }
    };
    if mode == Mode::Reuse && sql == Sql::Unique {
        return Err(BenchError::Usage(
            "reuse only makes sense with repeat".into(),
        ));
    }
    let mut args = Args {
        mode,
        sql,
        threads: 2,
        seconds: 4.0,
        duckdb_threads: None,
        separate_db: false,
    };
    while let Some(flag) = it.next() {
        if flag == "--separate-db" {
            args.separate_db = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| BenchError::Usage(format!("{flag} needs a value")))?;
        let bad = || BenchError::Usage(format!("bad value for {flag}: {value}"));
        match flag.as_str() {
            "--threads" => args.threads = value.parse().map_err(|_| bad())?,
            "--seconds" => args.seconds = value.parse().map_err(|_| bad())?,
            "--duckdb-threads" => args.duckdb_threads = Some(value.parse().map_err(|_| bad())?),
            _ => return Err(BenchError::Usage(format!("unknown flag {flag}"))),
        }
    }
    Ok(args)
}

/// The database handle, shared read-only by the threads that each connect to it.
struct Db(ffi::duckdb_database);
// SAFETY: duckdb_database is thread-safe for duckdb_connect; each thread makes its own connection.
unsafe impl Send for Db {}
unsafe impl Sync for Db {}

fn open(duckdb_threads: Option<usize>) -> Result<Db, BenchError> {
    unsafe {
        let mut config: ffi::duckdb_config = ptr::null_mut();
        if ffi::duckdb_create_config(&mut config) != ffi::DuckDBSuccess {
            return Err(BenchError::DuckDb("create_config".into()));
        }
        if let Some(n) = duckdb_threads {
            let name = CString::new("threads").unwrap();
            let value = CString::new(n.to_string()).unwrap();
            ffi::duckdb_set_config(config, name.as_ptr(), value.as_ptr());
        }
        let mut db: ffi::duckdb_database = ptr::null_mut();
        let mut err: *mut std::os::raw::c_char = ptr::null_mut();
        let state = ffi::duckdb_open_ext(ptr::null(), &mut db, config, &mut err);
        ffi::duckdb_destroy_config(&mut config);
        if state != ffi::DuckDBSuccess {
            let msg = if err.is_null() {
                "open failed".into()
            } else {
                CStr::from_ptr(err).to_string_lossy().into_owned()
            };
            return Err(BenchError::DuckDb(msg));
        }
        Ok(Db(db))
    }
}

/// Reads the single value of a one-row, one-column integer result, so the
/// statement's result is really produced and consumed, as the agent must.
unsafe fn consume(result: &mut ffi::duckdb_result) -> Result<i64, BenchError> {
    let ty = ffi::duckdb_column_type(result, 0);
    let chunk = ffi::duckdb_fetch_chunk(*result);
    if chunk.is_null() {
        return Err(BenchError::DuckDb("no chunk".into()));
    }
    let data = ffi::duckdb_vector_get_data(ffi::duckdb_data_chunk_get_vector(chunk, 0));
    let v = match ty {
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_INTEGER => *(data as *const i32) as i64,
        ffi::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT => *(data as *const i64),
        other => return Err(BenchError::DuckDb(format!("unexpected type {other}"))),
    };
    let mut chunk = chunk;
    ffi::duckdb_destroy_data_chunk(&mut chunk);
    Ok(v)
}

unsafe fn result_error(result: &mut ffi::duckdb_result) -> BenchError {
    let p = ffi::duckdb_result_error(result);
    let msg = if p.is_null() {
        "query failed".into()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    };
    BenchError::DuckDb(msg)
}

/// One statement through the chosen path; returns its value.
unsafe fn run_once(
    con: ffi::duckdb_connection,
    mode: Mode,
    sql: &CStr,
    reused: ffi::duckdb_prepared_statement,
) -> Result<i64, BenchError> {
    let mut result: ffi::duckdb_result = std::mem::zeroed();
    match mode {
        Mode::Query => {
            if ffi::duckdb_query(con, sql.as_ptr(), &mut result) != ffi::DuckDBSuccess {
                let e = result_error(&mut result);
                ffi::duckdb_destroy_result(&mut result);
                return Err(e);
            }
        }
        Mode::Prepare => {
            let mut stmt: ffi::duckdb_prepared_statement = ptr::null_mut();
            if ffi::duckdb_prepare(con, sql.as_ptr(), &mut stmt) != ffi::DuckDBSuccess {
                let p = ffi::duckdb_prepare_error(stmt);
                let msg = if p.is_null() {
                    "prepare failed".into()
                } else {
                    CStr::from_ptr(p).to_string_lossy().into_owned()
                };
                ffi::duckdb_destroy_prepare(&mut stmt);
                return Err(BenchError::DuckDb(msg));
            }
            let state = ffi::duckdb_execute_prepared(stmt, &mut result);
            ffi::duckdb_destroy_prepare(&mut stmt);
            if state != ffi::DuckDBSuccess {
                let e = result_error(&mut result);
                ffi::duckdb_destroy_result(&mut result);
                return Err(e);
            }
        }
        Mode::Reuse => {
            if ffi::duckdb_execute_prepared(reused, &mut result) != ffi::DuckDBSuccess {
                let e = result_error(&mut result);
                ffi::duckdb_destroy_result(&mut result);
                return Err(e);
            }
        }
    }
    let v = consume(&mut result);
    ffi::duckdb_destroy_result(&mut result);
    v
}

fn worker(
    db: &Db,
    args: &Args,
    tid: usize,
    start: &Barrier,
) -> Result<(u64, Duration), BenchError> {
    unsafe {
        let mut con: ffi::duckdb_connection = ptr::null_mut();
        if ffi::duckdb_connect(db.0, &mut con) != ffi::DuckDBSuccess {
            return Err(BenchError::DuckDb("connect".into()));
        }
        let repeat = CString::new("SELECT 1").unwrap();
        let mut reused: ffi::duckdb_prepared_statement = ptr::null_mut();
        if args.mode == Mode::Reuse
            && ffi::duckdb_prepare(con, repeat.as_ptr(), &mut reused) != ffi::DuckDBSuccess
        {
            return Err(BenchError::DuckDb("prepare".into()));
        }
        // Unique values: thread t uses 1000 + t, 1000 + t + threads, ...
        let mut n: u64 = 1000 + tid as u64;
        let mut text = String::with_capacity(32);
        // Warm-up outside the timed loop (first statement plans the catalog lookups).
        run_once(con, args.mode, &repeat, reused)?;
        start.wait();
        let began = Instant::now();
        let deadline = began + Duration::from_secs_f64(args.seconds);
        let mut ops: u64 = 0;
        loop {
            let value = match args.sql {
                Sql::Repeat => run_once(con, args.mode, &repeat, reused)?,
                Sql::Unique => {
                    use std::fmt::Write;
                    text.clear();
                    write!(text, "SELECT {n}").unwrap();
                    let c = CString::new(text.as_bytes()).unwrap();
                    let v = run_once(con, args.mode, &c, reused)?;
                    if v as u64 != n {
                        return Err(BenchError::DuckDb(format!("SELECT {n} returned {v}")));
                    }
                    n += args.threads as u64;
                    v
                }
            };
            std::hint::black_box(value);
            ops += 1;
            if ops.is_multiple_of(64) && Instant::now() >= deadline {
                break;
            }
        }
        let elapsed = began.elapsed();
        if !reused.is_null() {
            ffi::duckdb_destroy_prepare(&mut reused);
        }
        ffi::duckdb_disconnect(&mut con);
        Ok((ops, elapsed))
    }
}

fn run(args: Args) -> Result<(), BenchError> {
    let db = open(args.duckdb_threads)?;
    let start = Barrier::new(args.threads);
    let results: Vec<Result<(u64, Duration), BenchError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.threads)
            .map(|t| {
                let (db, args, start) = (&db, &args, &start);
                s.spawn(move || worker(db, args, t, start))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect()
    });
    let mut total_ops = 0u64;
    let mut rate = 0.0f64;
    for r in results {
        let (ops, elapsed) = r?;
        total_ops += ops;
        rate += ops as f64 / elapsed.as_secs_f64();
    }
    let version = unsafe {
        CStr::from_ptr(ffi::duckdb_library_version())
            .to_string_lossy()
            .into_owned()
    };
    println!(
        "{{\"mode\":\"{:?}\",\"sql\":\"{:?}\",\"threads\":{},\"ops\":{},\"rate\":{:.1},\"duckdb\":\"{}\"}}",
        args.mode, args.sql, args.threads, total_ops, rate, version
    );
    let mut db = db;
    unsafe { ffi::duckdb_close(&mut db.0) };
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent-inproc-bench: {e}");
            ExitCode::from(2)
        }
    }
}
