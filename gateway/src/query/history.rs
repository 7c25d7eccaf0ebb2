//! The query history's writer: every query's audit record, as it ends, into
//! the store (`gw_query_history`), off the query path, in batches, pruned
//! to the retention.
//!
//! Owns the bounded queue between the query path and the store, the
//! batching, the pruning schedule and the flush on shutdown. The query path
//! only offers a record ([`offer`]: a non-blocking send); a writer task takes
//! what has queued up (at most [`BATCH_ROWS`] per transaction) and appends
//! it. The queue is bounded ([`QUEUE_RECORDS`]) so that a slow store is
//! never the query path's bottleneck: a record that finds it full is counted
//! as lost (`gateway_history_lost_total`), never waited for. On a graceful
//! shutdown [`History::close`] writes everything queued before it returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::store::history::HistoryRecord;
use crate::store::Store;

/// Records the queue holds; past this, records are lost (and counted).
pub const QUEUE_RECORDS: usize = 65_536;
/// Most records one transaction appends.
pub const BATCH_ROWS: usize = 2_000;
/// How long the writer lets records gather before a write (fewer, larger
/// transactions under load; a record reaches the store within this when idle).
pub const GATHER: Duration = Duration::from_millis(100);

/// The process's history writer, once [`History::start`] ran.
static HISTORY: OnceLock<Arc<History>> = OnceLock::new();

/// The writer's handle.
pub struct History {
    tx: Mutex<Option<mpsc::Sender<HistoryRecord>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    written: AtomicU64,
    lost: AtomicU64,
}

/// What the history did, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryFigures {
    pub on: bool,
    pub written: u64,
    pub lost: u64,
}

impl History {
    /// Starts the writer on the current runtime: records go to `store` and
    /// are deleted once older than `retention`. Once per process; a second
    /// call returns the first writer.
    pub fn start(store: Store, retention: Duration) -> Arc<History> {
        HISTORY
            .get_or_init(|| {
                let (tx, rx) = mpsc::channel(QUEUE_RECORDS);
                let h = Arc::new(History {
                    tx: Mutex::new(Some(tx)),
                    task: Mutex::new(None),
                    written: AtomicU64::new(0),
                    lost: AtomicU64::new(0),
                });
                let task = tokio::spawn(write_loop(store, retention, rx, Arc::downgrade(&h)));
                *h.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
                h
            })
            .clone()
    }

    /// Stops taking records and writes every one queued; returns when done.
    pub async fn close(&self) {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }

    fn offer(&self, r: HistoryRecord) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let sent = tx.as_ref().is_some_and(|tx| tx.try_send(r).is_ok());
        if !sent {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether a writer runs (records are worth building).
pub fn on() -> bool {
    HISTORY.get().is_some()
}

/// Offers one record to the writer (nothing when the history is off).
pub fn offer(r: HistoryRecord) {
    if let Some(h) = HISTORY.get() {
        h.offer(r);
    }
}

/// The writer's figures.
pub fn figures() -> HistoryFigures {
    match HISTORY.get() {
        None => HistoryFigures::default(),
        Some(h) => HistoryFigures {
            on: true,
            written: h.written.load(Ordering::Relaxed),
            lost: h.lost.load(Ordering::Relaxed),
        },
    }
}

/// How often records past the retention are deleted.
fn prune_every(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

async fn write_loop(
    store: Store,
    retention: Duration,
    mut rx: mpsc::Receiver<HistoryRecord>,
    me: std::sync::Weak<History>,
) {
    let mut pruned = Instant::now();
    let every = prune_every(retention);
    loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = tokio::time::sleep_until((pruned + every).into()) => {
                prune(&store, retention).await;
                pruned = Instant::now();
                continue;
            }
        };
        let Some(first) = first else {
            break;
        };
        let mut batch = vec![first];
        // Let more gather, unless the queue is being closed.
        tokio::time::sleep(GATHER).await;
        while batch.len() < BATCH_ROWS {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        match store.append_history(batch).await {
            Ok(()) => {
                if let Some(h) = me.upgrade() {
                    h.written.fetch_add(n, Ordering::Relaxed);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, records = n, "cannot write query history");
                if let Some(h) = me.upgrade() {
                    h.lost.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
        if pruned.elapsed() >= every {
            prune(&store, retention).await;
            pruned = Instant::now();
        }
    }
}

async fn prune(store: &Store, retention: Duration) {
    let before = crate::store::now_ms() - retention.as_millis().min(i64::MAX as u128) as i64;
    match store.prune_history(before).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(records = n, "query history pruned"),
        Err(e) => tracing::warn!(error = %e, "cannot prune query history"),
    }
}
