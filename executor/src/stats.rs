//! Counters and histograms: lock-free, written by one shard, summed by anyone.
//!
//! Owns [`AtomicHistogram`] (fixed buckets, relaxed atomics; the agent reuses it
//! for per-route request latency), the per-shard counter block and the
//! [`Stats`] snapshot that `/health` and `/metrics` read. Nothing here ever
//! touches DuckDB or takes a lock.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds, in microseconds, of the default latency buckets (an implicit
/// `+Inf` bucket follows). Roughly 1-2.5-5 steps from 25 µs to 60 s: fine enough
/// to read a p95 off for the runbook's SLOs, small enough to copy per scrape.
pub const DEFAULT_LATENCY_BOUNDS_US: &[u64] = &[
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// A fixed-bucket histogram of durations that any thread may record into.
///
/// Recording is two relaxed `fetch_add`s plus a bucket search over a short
/// static slice; reading copies the counters. Readers may see a recording half
/// applied (count before sum); for monitoring that is harmless.
#[derive(Debug)]
pub struct AtomicHistogram {
    bounds_us: &'static [u64],
    /// One counter per bound plus the `+Inf` bucket.
    buckets: Box<[AtomicU64]>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        Self::new(DEFAULT_LATENCY_BOUNDS_US)
    }
}

impl AtomicHistogram {
    /// `bounds_us` must be strictly increasing.
    pub fn new(bounds_us: &'static [u64]) -> Self {
        debug_assert!(bounds_us.windows(2).all(|w| w[0] < w[1]));
        AtomicHistogram {
            bounds_us,
            buckets: (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn record(&self, d: Duration) {
        self.record_us(d.as_micros().min(u64::MAX as u128) as u64);
    }

    pub fn record_us(&self, us: u64) {
        let idx = self.bounds_us.partition_point(|&b| b < us);
        self.buckets[idx].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds_us: self.bounds_us,
            counts: self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
            sum_us: self.sum_us.load(Relaxed),
            count: self.count.load(Relaxed),
        }
    }
}

/// A copy of a histogram's counters (per-bucket, not cumulative).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub bounds_us: &'static [u64],
    /// `counts[i]` counts values `<= bounds_us[i]` and `> bounds_us[i-1]`; the
    /// last entry counts values above every bound.
    pub counts: Vec<u64>,
    pub sum_us: u64,
    pub count: u64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        HistogramSnapshot {
            bounds_us: DEFAULT_LATENCY_BOUNDS_US,
            counts: vec![0; DEFAULT_LATENCY_BOUNDS_US.len() + 1],
            sum_us: 0,
            count: 0,
        }
    }
}

impl HistogramSnapshot {
    /// Adds another snapshot taken with the same bounds.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        assert_eq!(
            self.bounds_us, other.bounds_us,
            "merging histograms with different buckets"
        );
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum_us += other.sum_us;
        self.count += other.count;
    }

    /// The upper bound (µs) of the bucket holding the `q` quantile (0..=1), or
    /// `None` when empty or when it falls in the `+Inf` bucket.
    pub fn quantile_upper_bound_us(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return self.bounds_us.get(i).copied();
            }
        }
        None
    }
}

/// The counters one shard writes (only its own thread writes them; any thread
/// reads). Gauges are signed so that a transient read across shards can never
/// wrap.
#[derive(Debug, Default)]
pub(crate) struct ShardCounters {
    /// SQL statements executing on the worker right now (jobs and `/execute`).
    pub active_queries: AtomicI64,
    /// Lifecycle jobs waiting for the worker.
    pub queued_jobs: AtomicI64,
    /// `/execute` requests waiting for the worker (counted for overload only).
    pub queued_executes: AtomicI64,
    /// Lifecycle jobs executing.
    pub running_jobs: AtomicI64,
    /// Terminal jobs retained.
    pub completed_jobs: AtomicI64,
    /// All jobs retained.
    pub stored_jobs: AtomicI64,
    /// Jobs dropped by expiry (cumulative).
    pub cleaned_jobs: AtomicU64,
    /// Jobs accepted (cumulative).
    pub submitted_jobs: AtomicU64,
    /// `/execute` statements run (cumulative).
    pub executed_statements: AtomicU64,
    /// Submits and executes refused with `Overloaded` (cumulative).
    pub rejected_overloaded: AtomicU64,
    /// Bytes of retained results (sum of `QueryResult::retained_bytes`).
    pub result_bytes: AtomicI64,
    /// Statements this shard may run at once (its share of `MAX_CONCURRENT_QUERIES`).
    pub slots: AtomicI64,
    /// Jobs and `/execute` statements stopped by their deadline (cumulative).
    pub timeouts: AtomicU64,
    pub queue_wait: AtomicHistogram,
    pub execution: AtomicHistogram,
}

impl ShardCounters {
    pub fn add(gauge: &AtomicI64, delta: i64) {
        gauge.fetch_add(delta, Relaxed);
    }
}

/// Engine-wide numbers for `/health` and `/metrics`, summed over shards.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub active_queries: u64,
    pub queued_jobs: u64,
    pub running_jobs: u64,
    pub completed_jobs: u64,
    pub stored_jobs: u64,
    pub cleaned_jobs: u64,
    pub submitted_jobs: u64,
    pub executed_statements: u64,
    pub rejected_overloaded: u64,
    /// Bytes held by retained job results.
    pub result_bytes: u64,
    /// Statements the agent may run at once (`MAX_CONCURRENT_QUERIES`).
    pub max_concurrent_queries: u64,
    /// Statements stopped by their deadline (cumulative).
    pub query_timeouts: u64,
    /// Resident memory of the process (refreshed in the background, ~1 s old).
    pub memory_used_mb: u64,
    /// Memory DuckDB's buffer manager reports in use (refreshed in the background).
    pub duckdb_memory_mb: u64,
    /// Time jobs spent `QUEUED` (and `/execute` spent waiting for the worker).
    pub queue_wait: HistogramSnapshot,
    /// Time statements spent executing and encoding on the worker.
    pub execution: HistogramSnapshot,
}

pub(crate) fn gauge(v: &AtomicI64) -> u64 {
    v.load(Relaxed).max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_quantiles_and_merge() {
        let h = AtomicHistogram::default();
        for us in [10, 30, 30, 900, 2_000_000, 100_000_000] {
            h.record_us(us);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 6);
        assert_eq!(s.sum_us, 10 + 30 + 30 + 900 + 2_000_000 + 100_000_000);
        assert_eq!(s.counts[0], 1); // <= 25
        assert_eq!(s.counts[1], 2); // <= 50
        assert_eq!(*s.counts.last().unwrap(), 1); // +Inf
        assert_eq!(s.quantile_upper_bound_us(0.5), Some(50));
        assert_eq!(s.quantile_upper_bound_us(1.0), None);
        let mut merged = HistogramSnapshot::default();
        merged.merge(&s);
        merged.merge(&s);
        assert_eq!(merged.count, 12);
    }
}
