//! `GET /health`: readiness and load signals, every field the runbook lists.
//!
//! Reads only published numbers (`Engine::stats()`, the cached DuckDB version), so it
//! answers in microseconds even while every shard runs a long query. Never waits on
//! DuckDB, never needs auth.

use crate::json::Obj;
use crate::state::Shared;

/// The health body.
pub fn render(shared: &Shared) -> Vec<u8> {
    let s = shared.engine.stats();
    let mut out = Vec::with_capacity(512);
    let ttl = shared.result_ttl;
    Obj::new(&mut out)
        .str("status", "ok")
        .u64("uptime_seconds", shared.started.elapsed().as_secs())
        .str("duckdb_version", shared.engine.duckdb_version())
        .u64("memory_used_mb", s.memory_used_mb)
        // 0 when unset: DuckDB then applies its own default (80% of RAM).
        .f64("max_memory_gb", shared.max_memory_gb.unwrap_or(0.0))
        .u64("active_queries", s.active_queries)
        .u64("queued_jobs", s.queued_jobs)
        .u64("running_jobs", s.running_jobs)
        .u64("completed_jobs", s.completed_jobs)
        .u64("stored_jobs", s.stored_jobs)
        .u64("cleaned_jobs", s.cleaned_jobs)
        // The contract: an integer, whole seconds rounded down (gateways decode it
        // into an integer field), so a 300 ms TTL reads 0.
        .u64("query_result_ttl_seconds", ttl.as_secs())
        .u64("shards", shared.shards as u64)
        .u64("result_bytes", s.result_bytes)
        .str("version", env!("CARGO_PKG_VERSION"))
        .finish();
    out
}
