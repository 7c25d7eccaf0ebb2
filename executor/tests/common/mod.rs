//! Test harness: a real engine on real glommio executors (one thread each).
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use executor::{Engine, EngineConfig, QueryResult, Shard};
use glommio::{LocalExecutorBuilder, Placement};

/// A small engine: in-memory, `shards` shards, DuckDB on 2 threads.
/// One worker per shard (the executor's own tests check queueing behind a
/// busy worker; the agent's tests cover pools of several).
pub fn config(shards: usize) -> EngineConfig {
    EngineConfig {
        shards,
        max_concurrent_queries: shards,
        duckdb_threads: Some(2),
        max_memory_gb: Some(2.0),
        ..EngineConfig::default()
    }
}

pub fn open(cfg: EngineConfig) -> Arc<Engine> {
    Engine::open(cfg).expect("engine opens")
}

/// Decrements the "still working" count even when the test body panics, so
/// the other shards stop waiting and the panic surfaces from `join`.
struct Finished(Arc<AtomicUsize>);
impl Drop for Finished {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Starts one glommio executor per shard, joins each to `engine`, runs
/// `body(shard)` on every one, keeps all shards serving until every body has
/// finished, then shuts the shards and the engine down. Panics in a body fail
/// the test.
pub fn run_shards<F, Fut>(engine: &Arc<Engine>, body: F)
where
    F: Fn(Shard) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let n = engine.config().shards;
    let finished = Arc::new(AtomicUsize::new(0));
    let body = Arc::new(body);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let engine = engine.clone();
            let body = body.clone();
            let finished = finished.clone();
            LocalExecutorBuilder::new(Placement::Unbound)
                .name(&format!("test-shard-{i}"))
                .io_memory(256 * 1024)
                .ring_depth(64)
                .spawn(move || async move {
                    let shard = engine.join_shard(i, n).await.expect("shard joins");
                    {
                        let _done = Finished(finished.clone());
                        body(shard.clone()).await;
                    }
                    let deadline = Instant::now() + Duration::from_secs(300);
                    while finished.load(Ordering::SeqCst) < n && Instant::now() < deadline {
                        glommio::timer::sleep(Duration::from_millis(2)).await;
                    }
                    shard.shutdown(Duration::from_secs(10)).await;
                })
                .expect("executor starts")
        })
        .collect();
    let mut panicked = None;
    for h in handles {
        if let Err(e) = h.join() {
            panicked.get_or_insert(e.to_string());
        }
    }
    assert!(
        engine.shutdown(Duration::from_secs(10)),
        "worker threads did not stop"
    );
    if let Some(e) = panicked {
        panic!("a shard failed: {e}");
    }
}

/// Runs `body` on shard 0 of a one-shard engine.
pub fn run_one<F, Fut>(cfg: EngineConfig, body: F)
where
    F: Fn(Shard) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let engine = open(cfg);
    run_shards(&engine, body);
}

/// All rows of a result as JSON text `[[...],...]`.
pub fn rows_text(r: &QueryResult) -> String {
    let mut out = Vec::new();
    r.write_rows(0..r.row_count(), &mut out);
    String::from_utf8(out).expect("rows are UTF-8")
}

/// Parses strictly (serde_json rejects NaN, bare control characters, ...).
pub fn parse(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// Polls `cond` every few milliseconds until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    cond()
}
