//! Reference side of benchmark 1 of issue 12 (benches/agent/bench_arrow.py):
//! DuckDB exporting a result to Arrow record batches in-process, through
//! duckdb-rs `query_arrow` on the same DuckDB build (and default settings) as
//! the agent. Prints `ARROWREF {"seconds":[...],"rows":N}` for the script;
//! it times nothing else and starts nothing.
//!
//! Usage: arrow_ref-<hash> --sql "<SELECT>" [--runs N]

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    // `cargo bench` runs bench targets with --bench: nothing to do without a statement.
    let Some(sql) = arg("--sql") else {
        eprintln!("arrow_ref: --sql is required (run by benches/agent/bench_arrow.py)");
        return;
    };
    let runs: usize = arg("--runs").and_then(|r| r.parse().ok()).unwrap_or(5);
    let conn = duckdb::Connection::open_in_memory().expect("open DuckDB");
    let mut seconds = Vec::with_capacity(runs);
    let mut rows = 0;
    for _ in 0..runs {
        let t0 = Instant::now();
        let mut stmt = conn.prepare(&sql).expect("prepare");
        let batches: Vec<_> = stmt.query_arrow([]).expect("query_arrow").collect();
        seconds.push(t0.elapsed().as_secs_f64());
        rows = batches.iter().map(|b| b.num_rows()).sum::<usize>();
    }
    let list: Vec<String> = seconds.iter().map(|s| format!("{s:.6}")).collect();
    println!(
        "ARROWREF {{\"seconds\":[{}],\"rows\":{rows}}}",
        list.join(",")
    );
}
