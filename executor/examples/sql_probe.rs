//! Measurement tool for the SQL bounds in `docs/runbook.md` ("SQL bounds"):
//! runs SQL on an in-memory DuckDB, on a thread with a chosen stack, and
//! reports each statement's outcome and how much of the stack it touched.
//!
//! It owns nothing the agent uses; it never listens on a socket.
//!
//! ```sh
//! # depth sweep of one shape (stack touched per depth), on a 1 GiB stack:
//! sql_probe depth parens 100 1000 5000
//! # any statements, one after the other, on one connection:
//! sql_probe run "SET lock_configuration = true" "SET threads = 1"
//! ```
//! Shapes: parens, typestr, not, neg, plus, case, subquery, union, join,
//! list, struct, json, cte. `STACK_MB` sets the stack (default 1024).
//! `LOCKED=1` locks the configuration first (as the agent does).

use std::ffi::{c_char, CStr, CString};
use std::ptr;

use libduckdb_sys as ffi;

fn shape(name: &str, n: usize) -> String {
    match name {
        "parens" => format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)),
        "typestr" => format!(
            "SELECT from_json('{{}}', '\"{}INTEGER{}\"')",
            "STRUCT(a ".repeat(n),
            ")".repeat(n)
        ),
        "cast" => format!(
            "SELECT NULL::{}INTEGER{}",
            "STRUCT(a ".repeat(n),
            ")".repeat(n)
        ),
        "castlist" => format!("SELECT NULL::INTEGER{}", "[]".repeat(n)),
        "not" => format!("SELECT {}true", "NOT ".repeat(n)),
        "neg" => format!("SELECT {}1", "- ".repeat(n)),
        "plus" => format!("SELECT 1{}", " + 1".repeat(n)),
        "concat" => format!("SELECT 'a'{}", " || 'a'".repeat(n)),
        "case" => format!(
            "SELECT {}1{}",
            "CASE WHEN true THEN ".repeat(n),
            " END".repeat(n)
        ),
        "subquery" => format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n)),
        "from" => format!("SELECT * FROM {}SELECT 1{}", "(".repeat(n), ") t".repeat(n)),
        "union" => format!("SELECT 1{}", " UNION ALL SELECT 1".repeat(n)),
        "join" => format!(
            "SELECT count(*) FROM (SELECT 1 a) t0{}",
            (1..=n)
                .map(|i| format!(" JOIN (SELECT 1 a) t{i} ON true"))
                .collect::<String>()
        ),
        "comma" => format!(
            "SELECT count(*) FROM {}",
            (0..=n)
                .map(|i| format!("range(1) t{i}"))
                .collect::<Vec<_>>()
                .join(",")
        ),
        "list" => format!("SELECT {}1{}", "[".repeat(n), "]".repeat(n)),
        "struct" => format!("SELECT {}1{}", "{'a': ".repeat(n), "}".repeat(n)),
        "json" => format!(
            "SELECT json_structure('{}1{}')",
            "[".repeat(n),
            "]".repeat(n)
        ),
        "jsonrt" => format!("SELECT json_structure(repeat('[', {n}) || '1' || repeat(']', {n}))"),
        "cte" => {
            let mut s = String::from("WITH t0 AS (SELECT 1 a)");
            for i in 1..=n {
                s.push_str(&format!(", t{i} AS (SELECT a FROM t{})", i - 1));
            }
            s.push_str(&format!(" SELECT * FROM t{n}"));
            s
        }
        "inlist" => format!(
            "SELECT 1 IN ({})",
            (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
        ),
        "bigstr" => format!("SELECT length('{}')", "x".repeat(n)),
        other => panic!("unknown shape {other}"),
    }
}

/// Bytes resident in the mapping that holds `addr` (this thread's stack).
fn stack_rss(addr: usize) -> usize {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((a, b)) = range.split_once('-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                {
                    inside = a <= addr && addr < b;
                    continue;
                }
            }
        }
        if inside {
            if let Some(v) = line.strip_prefix("Rss:") {
                let kb: usize = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                return kb * 1024;
            }
        }
    }
    0
}

struct Db {
    db: ffi::duckdb_database,
    conn: ffi::duckdb_connection,
}

impl Db {
    fn open() -> Db {
        let mut db = ptr::null_mut();
        let mut conn = ptr::null_mut();
        // SAFETY: out-pointers to locals; in-memory database.
        unsafe {
            assert_eq!(ffi::duckdb_open(ptr::null(), &mut db), ffi::DuckDBSuccess);
            assert_eq!(ffi::duckdb_connect(db, &mut conn), ffi::DuckDBSuccess);
        }
        Db { db, conn }
    }

    /// Runs `sql`; Ok(first value as text, if any) or Err(DuckDB's message).
    fn run(&self, sql: &str) -> Result<String, String> {
        let c = CString::new(sql).map_err(|e| e.to_string())?;
        // SAFETY: zeroed result struct is what the C API expects to fill.
        let mut res: ffi::duckdb_result = unsafe { std::mem::zeroed() };
        // SAFETY: valid connection, NUL-terminated SQL, result destroyed below.
        let st = unsafe { ffi::duckdb_query(self.conn, c.as_ptr(), &mut res) };
        let out = if st == ffi::DuckDBSuccess {
            // SAFETY: successful result; value text is ours to free.
            unsafe {
                if ffi::duckdb_column_count(&mut res) > 0 && ffi::duckdb_row_count(&mut res) > 0 {
                    let v = ffi::duckdb_value_varchar(&mut res, 0, 0);
                    let s = if v.is_null() {
                        "NULL".to_string()
                    } else {
                        CStr::from_ptr(v).to_string_lossy().into_owned()
                    };
                    ffi::duckdb_free(v.cast());
                    Ok(s)
                } else {
                    Ok(String::new())
                }
            }
        } else {
            // SAFETY: the message belongs to the result.
            let p: *const c_char = unsafe { ffi::duckdb_result_error(&mut res) };
            Err(if p.is_null() {
                "unknown error".into()
            } else {
                // SAFETY: NUL-terminated, alive until destroy.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            })
        };
        // SAFETY: destroyed once.
        unsafe { ffi::duckdb_destroy_result(&mut res) };
        out
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // SAFETY: opened above, closed once.
        unsafe {
            ffi::duckdb_disconnect(&mut self.conn);
            ffi::duckdb_close(&mut self.db);
        }
    }
}

fn short(s: &str) -> String {
    let one = s.replace('\n', " ");
    if one.len() > 110 {
        format!("{}...", &one[..110])
    } else {
        one
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stack_mb: usize = std::env::var("STACK_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let locked = std::env::var("LOCKED").is_ok_and(|v| v == "1");
    let t = std::thread::Builder::new()
        .stack_size(stack_mb << 20)
        .spawn(move || {
            let marker = 0u8;
            let here = &marker as *const u8 as usize;
            let db = Db::open();
            if locked {
                db.run("SET lock_configuration = true").unwrap();
            }
            if let Ok(pre) = std::env::var("PRE_SQL") {
                println!("pre: {:?}", db.run(&pre));
            }
            match args.first().map(String::as_str) {
                Some("depth") => {
                    let name = &args[1];
                    for n in &args[2..] {
                        let n: usize = n.parse().unwrap();
                        let sql = shape(name, n);
                        let before = stack_rss(here);
                        let t0 = std::time::Instant::now();
                        let r = db.run(&sql);
                        let ms = t0.elapsed().as_secs_f64() * 1e3;
                        let after = stack_rss(here);
                        println!(
                            "{name} n={n} sql_bytes={} stack_touched_kib={} (+{} KiB) {ms:.1} ms: {}",
                            sql.len(),
                            after / 1024,
                            after.saturating_sub(before) / 1024,
                            match r {
                                Ok(v) => format!("ok {}", short(&v)),
                                Err(e) => format!("error {}", short(&e)),
                            }
                        );
                    }
                }
                Some("run") => {
                    for sql in &args[1..] {
                        match db.run(sql) {
                            Ok(v) => println!("ok    | {} | {}", short(sql), short(&v)),
                            Err(e) => println!("error | {} | {}", short(sql), short(&e)),
                        }
                    }
                }
                _ => eprintln!("usage: sql_probe depth SHAPE N... | sql_probe run SQL..."),
            }
        })
        .unwrap();
    t.join().unwrap();
}
