//! The gateway's Prometheus metrics: queries by endpoint and routing rule,
//! local fallbacks, denials by reason, failures by kind, latency histograms
//! per target, and the rewrite cache's size and template fills, rendered as
//! Prometheus text for `GET /metrics`.
//!
//! Owns the series names and the bucket bounds. Recording is a short,
//! uncontended lock or an atomic add; it never does I/O.

use crate::rewrite_cache::RewriteCache;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A Prometheus histogram over [`LATENCY_BUCKETS`].
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, secs: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; LATENCY_BUCKETS.len()];
        }
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// All series.
#[derive(Default)]
pub struct Metrics {
    /// endpoint -> rule -> queries routed (nested, so a query's count is
    /// found by its borrowed names, no allocation per query).
    routed: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
    fallbacks: AtomicU64,
    /// reason -> denied queries.
    denied: Mutex<BTreeMap<String, u64>>,
    /// (endpoint, kind) -> failed queries.
    failed: Mutex<BTreeMap<(String, String), u64>>,
    /// (endpoint, kind) -> queries that left the endpoint for another place
    /// (it failed before their statement started there).
    failovers: Mutex<BTreeMap<(String, String), u64>>,
    /// endpoint -> latency of answered queries (submit to last row).
    latency: Mutex<BTreeMap<String, Histogram>>,
    unauthorized: AtomicU64,
    rejected_busy: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    pub fn routed(&self, endpoint: &str, rule: &str) {
        let mut routed = lock(&self.routed);
        if let Some(rules) = routed.get_mut(endpoint) {
            match rules.get_mut(rule) {
                Some(n) => *n += 1,
                None => {
                    rules.insert(rule.to_string(), 1);
                }
            }
        } else {
            routed.insert(
                endpoint.to_string(),
                BTreeMap::from([(rule.to_string(), 1)]),
            );
        }
        if rule == client::resolver::Rule::FallbackLocal.as_str() {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn denied(&self, reason: &str) {
        *lock(&self.denied).entry(reason.to_string()).or_default() += 1;
    }

    pub fn failed(&self, endpoint: &str, kind: &str) {
        *lock(&self.failed)
            .entry((endpoint.to_string(), kind.to_string()))
            .or_default() += 1;
    }

    /// A query left `endpoint` for another place after an error of `kind`.
    pub fn failover(&self, endpoint: &str, kind: &str) {
        *lock(&self.failovers)
            .entry((endpoint.to_string(), kind.to_string()))
            .or_default() += 1;
    }

    pub fn latency(&self, endpoint: &str, d: Duration) {
        let mut m = lock(&self.latency);
        match m.get_mut(endpoint) {
            Some(h) => h.observe(d.as_secs_f64()),
            None => {
                let mut h = Histogram::default();
                h.observe(d.as_secs_f64());
                m.insert(endpoint.to_string(), h);
            }
        }
    }

    pub fn unauthorized(&self) {
        self.unauthorized.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected_busy(&self) {
        self.rejected_busy.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition; `jobs` is the number of jobs held now.
    pub fn render(
        &self,
        jobs: usize,
        rewrites: &RewriteCache,
        queue: &crate::query::admission::QueueFigures,
    ) -> String {
        let mut out = String::with_capacity(4096);
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        out.push_str("# HELP gateway_queries_routed_total Queries routed, by endpoint (local for local compute) and resolver rule.\n# TYPE gateway_queries_routed_total counter\n");
        for (e, rules) in lock(&self.routed).iter() {
            for (r, n) in rules {
                let _ = writeln!(
                    out,
                    "gateway_queries_routed_total{{endpoint=\"{}\",rule=\"{}\"}} {n}",
                    esc(e),
                    esc(r)
                );
            }
        }
        out.push_str("# HELP gateway_fallbacks_total Queries run locally because their endpoint was down or overloaded and the assignment allows fallback_local.\n# TYPE gateway_fallbacks_total counter\n");
        let _ = writeln!(
            out,
            "gateway_fallbacks_total {}",
            self.fallbacks.load(Ordering::Relaxed)
        );
        out.push_str("# HELP gateway_queries_denied_total Queries refused before running, by reason.\n# TYPE gateway_queries_denied_total counter\n");
        for (r, n) in lock(&self.denied).iter() {
            let _ = writeln!(
                out,
                "gateway_queries_denied_total{{reason=\"{}\"}} {n}",
                esc(r)
            );
        }
        out.push_str("# HELP gateway_queries_failed_total Queries that failed on their engine or could not reach it, by endpoint and error kind.\n# TYPE gateway_queries_failed_total counter\n");
        for ((e, k), n) in lock(&self.failed).iter() {
            let _ = writeln!(
                out,
                "gateway_queries_failed_total{{endpoint=\"{}\",kind=\"{}\"}} {n}",
                esc(e),
                esc(k)
            );
        }
        out.push_str("# HELP gateway_failovers_total Queries that left an endpoint for the next place (another endpoint, or local compute where allowed) because it failed before their statement started there, by endpoint and error kind.\n# TYPE gateway_failovers_total counter\n");
        for ((e, k), n) in lock(&self.failovers).iter() {
            let _ = writeln!(
                out,
                "gateway_failovers_total{{endpoint=\"{}\",kind=\"{}\"}} {n}",
                esc(e),
                esc(k)
            );
        }
        out.push_str("# HELP gateway_query_duration_seconds Time from a query's arrival to its result being ready (first page), by endpoint.\n# TYPE gateway_query_duration_seconds histogram\n");
        for (e, h) in lock(&self.latency).iter() {
            let e = esc(e);
            for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "gateway_query_duration_seconds_bucket{{endpoint=\"{e}\",le=\"{b}\"}} {}",
                    h.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "gateway_query_duration_seconds_bucket{{endpoint=\"{e}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "gateway_query_duration_seconds_sum{{endpoint=\"{e}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "gateway_query_duration_seconds_count{{endpoint=\"{e}\"}} {}",
                h.count
            );
        }
        out.push_str("# HELP gateway_queue_waiting Queries waiting for a slot on a full agent (the admission queue).\n# TYPE gateway_queue_waiting gauge\n");
        let _ = writeln!(out, "gateway_queue_waiting {}", queue.waiting);
        out.push_str("# HELP gateway_agent_slots_in_use Queries this gateway runs on agents now, all agents (AGENT_MAX_RUNNING each).\n# TYPE gateway_agent_slots_in_use gauge\n");
        let _ = writeln!(out, "gateway_agent_slots_in_use {}", queue.running);
        out.push_str("# HELP gateway_queue_timeouts_total Queries answered 429 after waiting QUEUE_TIMEOUT (or their deadline) in the queue.\n# TYPE gateway_queue_timeouts_total counter\n");
        let _ = writeln!(out, "gateway_queue_timeouts_total {}", queue.timeouts);
        out.push_str("# HELP gateway_queue_refused_total Queries answered 429 at once because QUEUE_MAX queries were waiting.\n# TYPE gateway_queue_refused_total counter\n");
        let _ = writeln!(out, "gateway_queue_refused_total {}", queue.refused_full);
        out.push_str("# HELP gateway_queue_wait_seconds How long admitted queries waited in the queue.\n# TYPE gateway_queue_wait_seconds histogram\n");
        let h = &queue.waited;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            let n = h.buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "gateway_queue_wait_seconds_bucket{{le=\"{b}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "gateway_queue_wait_seconds_bucket{{le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "gateway_queue_wait_seconds_sum {}", h.sum);
        let _ = writeln!(out, "gateway_queue_wait_seconds_count {}", h.count);
        let h = crate::query::history::figures();
        if h.on {
            out.push_str("# HELP gateway_history_written_total Query history records written to the store.\n# TYPE gateway_history_written_total counter\n");
            let _ = writeln!(out, "gateway_history_written_total {}", h.written);
            out.push_str("# HELP gateway_history_lost_total Query history records lost: the writer's queue was full (the store too slow) or a write failed.\n# TYPE gateway_history_lost_total counter\n");
            let _ = writeln!(out, "gateway_history_lost_total {}", h.lost);
        }
        out.push_str("# HELP gateway_unauthorized_total Requests refused for a missing or unknown token.\n# TYPE gateway_unauthorized_total counter\n");
        let _ = writeln!(
            out,
            "gateway_unauthorized_total {}",
            self.unauthorized.load(Ordering::Relaxed)
        );
        out.push_str("# HELP gateway_rejected_busy_total Queries refused with 429 because the job caps were reached.\n# TYPE gateway_rejected_busy_total counter\n");
        let _ = writeln!(
            out,
            "gateway_rejected_busy_total {}",
            self.rejected_busy.load(Ordering::Relaxed)
        );
        out.push_str("# HELP gateway_jobs Jobs held now (running or with unread results).\n# TYPE gateway_jobs gauge\n");
        let _ = writeln!(out, "gateway_jobs {jobs}");
        out.push_str("# HELP gateway_rewrite_cache_entries Rewrites held for texts sent again.\n# TYPE gateway_rewrite_cache_entries gauge\n");
        let _ = writeln!(out, "gateway_rewrite_cache_entries {}", rewrites.len());
        out.push_str("# HELP gateway_rewrite_cache_shapes Statement shapes held, with their proven template or marked as having none.\n# TYPE gateway_rewrite_cache_shapes gauge\n");
        let _ = writeln!(
            out,
            "gateway_rewrite_cache_shapes {}",
            rewrites.shapes_len()
        );
        out.push_str("# HELP gateway_rewrite_cache_bytes Bytes the rewrite cache holds, by its own weighing.\n# TYPE gateway_rewrite_cache_bytes gauge\n");
        let _ = writeln!(out, "gateway_rewrite_cache_bytes {}", rewrites.bytes());
        out.push_str("# HELP gateway_rewrite_template_fills_total Statements rewritten by filling their shape's template.\n# TYPE gateway_rewrite_template_fills_total counter\n");
        let _ = writeln!(
            out,
            "gateway_rewrite_template_fills_total {}",
            rewrites.filled()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.routed("a1", "user-default");
        m.routed("local", "fallback-local");
        m.denied("not_granted");
        m.latency("a1", Duration::from_millis(3));
        let t = m.render(2, &RewriteCache::new(1024), &Default::default());
        assert!(
            t.contains("gateway_queries_routed_total{endpoint=\"a1\",rule=\"user-default\"} 1"),
            "{t}"
        );
        assert!(t.contains("gateway_fallbacks_total 1"));
        assert!(t.contains("gateway_queries_denied_total{reason=\"not_granted\"} 1"));
        assert!(t.contains("gateway_query_duration_seconds_bucket{endpoint=\"a1\",le=\"0.005\"} 1"));
        assert!(
            t.contains("gateway_query_duration_seconds_bucket{endpoint=\"a1\",le=\"0.0025\"} 0")
        );
        assert!(t.contains("gateway_jobs 2"));
    }
}
