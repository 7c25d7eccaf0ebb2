//! Start-up and shutdown glue: open the engine, start the sharded HTTP server with one
//! router per shard, serve until SIGTERM/SIGINT, drain, return.
//!
//! Owns the order of things and the start-up log line. Runs on the main thread only;
//! it never handles a request itself.

use std::sync::Arc;
use std::time::Instant;

use executor::{Engine, EngineConfig, EngineError};
use net::{Limits, Server, ServerConfig, ServerError};

use crate::api::Api;
use crate::config::Config;
use crate::metrics::RouteMetrics;
use crate::state::Shared;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot open DuckDB: {0}")]
    Engine(#[from] EngineError),
    #[error("HTTP server failed: {0}")]
    Server(#[from] ServerError),
}

/// Runs the agent to completion (until a signal has drained it).
pub fn run(config: Config) -> Result<(), AppError> {
    let started = Instant::now();
    let engine = Engine::open(EngineConfig {
        duckdb_path: config.duckdb_path.clone(),
        shards: config.shards,
        duckdb_threads: config.duckdb_threads,
        max_memory_gb: config.max_memory_gb,
        init_sql: config.init_sql.as_ref().map(|i| i.sql.clone()),
        result_ttl: config.result_ttl,
        cleanup_interval: config.cleanup_interval,
        max_queued_jobs: config.max_queued_jobs,
        max_result_bytes: config.max_result_bytes,
        max_concurrent_queries: config.max_concurrent_queries.unwrap_or(0),
        query_timeout: config.query_timeout,
        max_retained_bytes: config.max_retained_bytes,
        sql_thread_nice: config.sql_thread_nice,
        sql_thread_policy: config.sql_thread_policy,
        max_sql_bytes: config.max_sql_bytes,
        max_sql_nesting: config.max_sql_nesting,
        allowed_paths: config.allowed_paths.clone(),
        time_zone: config.time_zone.clone(),
    })?;
    let shared = Arc::new(Shared {
        token: config.agent_token.as_bytes().into(),
        cursor_mode: config.cursor_mode,
        signature: config.signature,
        started,
        engine: engine.clone(),
        max_memory_gb: config.max_memory_gb,
        shards: config.shards,
        route_metrics: (0..config.shards)
            .map(|_| Arc::new(RouteMetrics::default()))
            .collect(),
    });
    // Connection limits and the body budget from the memory the agent may use: net
    // gets an eighth of it at worst (docs/runbook.md, "Connections and memory").
    let memory = memory_bytes();
    let limits = match memory {
        Some(m) => Limits::for_memory(m / 8, config.shards),
        None => Limits::default(),
    };
    let server_config = ServerConfig {
        addr: config.listen_addr,
        shards: config.shards,
        reactor_priority: config.reactor_priority,
        limits,
        ..ServerConfig::default()
    };
    let (max_connections_per_shard, body_budget_per_shard) = (
        server_config.limits.max_connections_per_shard,
        server_config.limits.body_budget_per_shard,
    );
    let drain = server_config.shutdown_deadline;
    let factory_shared = shared.clone();
    let handle = Server::start(server_config, move |info| {
        let shared = factory_shared.clone();
        async move {
            match shared.engine.join_shard(info.id, info.count).await {
                Ok(shard) => Api::new(shard, shared, info.id),
                Err(e) => {
                    // Only a shard-count mismatch gets here: a bug, not an input error.
                    // A shard without its executor cannot serve, so stop the process.
                    tracing::error!(shard = info.id, error = %e, "shard cannot join the engine");
                    eprintln!(
                        "compute-agent: shard {} cannot join the engine: {e}",
                        info.id
                    );
                    std::process::exit(1);
                }
            }
        }
    })?;
    handle.shutdown_on_signals();
    tracing::info!(
        listen_addr = %handle.local_addr(),
        shards = config.shards,
        duckdb_version = engine.duckdb_version(),
        duckdb_path = config.duckdb_path.as_ref().map_or("(in-memory)".to_string(), |p| p.display().to_string()),
        duckdb_threads = config.duckdb_threads.unwrap_or(0),
        duckdb_time_zone = %config.time_zone,
        max_memory_gb = config.max_memory_gb.unwrap_or(0.0),
        query_result_ttl = ?config.result_ttl,
        query_cleanup_interval = ?config.cleanup_interval,
        max_queued_jobs = config.max_queued_jobs,
        max_result_bytes = config.max_result_bytes,
        max_concurrent_queries = engine.stats().max_concurrent_queries,
        query_timeout = ?config.query_timeout,
        max_retained_bytes = config.max_retained_bytes,
        max_sql_bytes = config.max_sql_bytes,
        max_sql_nesting = config.max_sql_nesting,
        allowed_paths = ?config.allowed_paths,
        duckdb_init_sql = config.init_sql.as_ref().map_or(String::new(), |i| i.path.display().to_string()),
        feature_cursor_mode = config.cursor_mode,
        require_signed_requests = config.signature.required,
        reactor_priority = ?config.reactor_priority,
        reactor_realtime = handle.reactor_realtime(),
        sql_thread_nice = config.sql_thread_nice,
        sql_thread_policy = config.sql_thread_policy.name(),
        memory_mb = memory.unwrap_or(0) >> 20,
        max_connections_per_shard,
        body_budget_per_shard,
        startup_ms = started.elapsed().as_millis() as u64,
        "compute-agent listening"
    );
    let joined = handle.join();
    // Shards have stopped: interrupt what is left and reap the worker threads.
    if !engine.shutdown(drain) {
        tracing::warn!("some DuckDB worker threads were still busy at the shutdown deadline");
    }
    joined?;
    tracing::info!(
        uptime_s = started.elapsed().as_secs(),
        "compute-agent stopped"
    );
    Ok(())
}

/// The memory this process may use: the cgroup v2 limit when one is set, else the
/// machine's `MemTotal`. Read once at start-up, on the main thread.
fn memory_bytes() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
    });
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}
