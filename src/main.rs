//! The `compute-agent` binary: parse configuration at the edge, set up logs, run.
//!
//! Exit codes: 0 after a graceful shutdown, 2 for a bad setting (one line on stderr
//! naming the variable), 1 when the engine or server fails.

use std::process::ExitCode;

use compute_agent::config::{Args, Config};
use compute_agent::{app, logging};

// jemalloc for Rust and (unprefixed) for DuckDB's C++ allocations alike.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's built-in options (`MALLOC_CONF` in the environment still wins).
/// Several statements run at once now, each worker thread allocating from
/// its own arena; without a background purger the pages they free stay
/// resident until that arena allocates again, which an idle agent never
/// does: 2.6 resident bytes per retained result byte after 10 concurrent
/// results, 1.4 with this (docs/benchmarks.md, "Executor v2").
#[allow(non_upper_case_globals)]
#[export_name = "malloc_conf"]
pub static malloc_conf: &[u8; 59] = b"background_thread:true,dirty_decay_ms:250,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    let config = match Config::from_args(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("compute-agent: {e}");
            return ExitCode::from(2);
        }
    };
    // Read once, gone from the environment before any thread starts.
    compute_agent::config::scrub_token_from_environment();
    let guard = logging::init(config.log_level);
    let code = match app::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "compute-agent failed");
            ExitCode::from(1)
        }
    };
    // Flush queued log lines before the process exits.
    drop(guard);
    code
}
