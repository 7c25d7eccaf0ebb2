//! Request metrics per route (latency histogram and responses by status class) and the
//! `GET /metrics` Prometheus text.
//!
//! Each shard records into its own [`RouteMetrics`] (relaxed atomics, no locks, no
//! sharing of hot cache lines between shards); a scrape sums them. Never touches DuckDB:
//! engine numbers come from `Engine::stats()`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use executor::stats::{AtomicHistogram, HistogramSnapshot};

use crate::routes::RouteKind;
use crate::state::Shared;

const ROUTES: usize = RouteKind::ALL.len();
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One shard's request metrics.
#[derive(Debug)]
pub struct RouteMetrics {
    latency: [AtomicHistogram; ROUTES],
    responses: [[AtomicU64; CLASSES.len()]; ROUTES],
}

impl Default for RouteMetrics {
    fn default() -> Self {
        RouteMetrics {
            latency: std::array::from_fn(|_| AtomicHistogram::default()),
            responses: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

impl RouteMetrics {
    /// Records one answered request.
    pub fn record(&self, route: RouteKind, status: u16, elapsed: Duration) {
        let r = route.index();
        self.latency[r].record(elapsed);
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.responses[r][class].fetch_add(1, Relaxed);
    }
}

fn gauge(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// Renders the Prometheus text exposition (format 0.0.4).
pub fn render(shared: &Shared) -> Vec<u8> {
    let s = shared.engine.stats();
    let mut out = String::with_capacity(16 * 1024);
    let _ = writeln!(
        out,
        "# HELP compute_agent_info Build and engine versions.\n# TYPE compute_agent_info gauge\n\
         compute_agent_info{{version=\"{}\",duckdb_version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        label_escape(shared.engine.duckdb_version())
    );
    gauge(
        &mut out,
        "compute_agent_uptime_seconds",
        "gauge",
        "Seconds since start.",
        shared.started.elapsed().as_secs_f64(),
    );
    gauge(
        &mut out,
        "compute_agent_shards",
        "gauge",
        "Shards (reactor threads, each with its pool of DuckDB connections).",
        shared.shards,
    );
    gauge(
        &mut out,
        "compute_agent_query_result_ttl_seconds",
        "gauge",
        "Retention of terminal jobs.",
        shared.engine.result_ttl().as_secs_f64(),
    );
    gauge(
        &mut out,
        "compute_agent_active_queries",
        "gauge",
        "SQL statements executing now.",
        s.active_queries,
    );
    gauge(
        &mut out,
        "compute_agent_max_concurrent_queries",
        "gauge",
        "Statements the agent may run at once (MAX_CONCURRENT_QUERIES over all shards).",
        s.max_concurrent_queries,
    );
    gauge(
        &mut out,
        "compute_agent_query_cleanup_interval_seconds",
        "gauge",
        "How often expired jobs are dropped (the value in force).",
        shared.engine.cleanup_interval().as_secs_f64(),
    );
    gauge(
        &mut out,
        "compute_agent_query_timeouts_total",
        "counter",
        "Statements stopped by their deadline (QUERY_TIMEOUT or timeout_ms).",
        s.query_timeouts,
    );
    gauge(
        &mut out,
        "compute_agent_queued_jobs",
        "gauge",
        "Lifecycle jobs accepted but not started.",
        s.queued_jobs,
    );
    gauge(
        &mut out,
        "compute_agent_running_jobs",
        "gauge",
        "Lifecycle jobs executing.",
        s.running_jobs,
    );
    gauge(
        &mut out,
        "compute_agent_completed_jobs",
        "gauge",
        "Terminal jobs retained.",
        s.completed_jobs,
    );
    gauge(
        &mut out,
        "compute_agent_stored_jobs",
        "gauge",
        "All jobs retained in memory.",
        s.stored_jobs,
    );
    gauge(
        &mut out,
        "compute_agent_cleaned_jobs_total",
        "counter",
        "Jobs dropped by TTL expiry.",
        s.cleaned_jobs,
    );
    gauge(
        &mut out,
        "compute_agent_submitted_jobs_total",
        "counter",
        "Lifecycle jobs accepted.",
        s.submitted_jobs,
    );
    gauge(
        &mut out,
        "compute_agent_executed_statements_total",
        "counter",
        "POST /execute statements run.",
        s.executed_statements,
    );
    gauge(
        &mut out,
        "compute_agent_overloaded_total",
        "counter",
        "Requests refused with 429 OVERLOADED.",
        s.rejected_overloaded,
    );
    gauge(
        &mut out,
        "compute_agent_result_bytes",
        "gauge",
        "Encoded bytes of retained job results.",
        s.result_bytes,
    );
    gauge(
        &mut out,
        "compute_agent_memory_used_mb",
        "gauge",
        "Resident memory of the process in MiB.",
        s.memory_used_mb,
    );
    gauge(
        &mut out,
        "compute_agent_duckdb_memory_mb",
        "gauge",
        "Memory DuckDB's buffer manager reports in use, MiB.",
        s.duckdb_memory_mb,
    );
    histogram(
        &mut out,
        "compute_agent_queue_wait_seconds",
        "Time spent QUEUED before the worker started the SQL.",
        &[("", &s.queue_wait)],
    );
    histogram(
        &mut out,
        "compute_agent_execution_seconds",
        "Time the worker spent executing and encoding SQL.",
        &[("", &s.execution)],
    );

    // Request metrics: sum every shard's block per route.
    let mut latency: Vec<HistogramSnapshot> = Vec::with_capacity(ROUTES);
    let mut responses = [[0u64; CLASSES.len()]; ROUTES];
    for kind in RouteKind::ALL {
        let r = kind.index();
        let mut total: Option<HistogramSnapshot> = None;
        for shard in &shared.route_metrics {
            let snap = shard.latency[r].snapshot();
            match &mut total {
                Some(t) => t.merge(&snap),
                None => total = Some(snap),
            }
            for (c, n) in shard.responses[r].iter().enumerate() {
                responses[r][c] += n.load(Relaxed);
            }
        }
        latency.push(total.unwrap_or_default());
    }
    let labels: Vec<String> = RouteKind::ALL
        .iter()
        .map(|k| format!("route=\"{}\"", k.label()))
        .collect();
    let series: Vec<(&str, &HistogramSnapshot)> = labels
        .iter()
        .map(String::as_str)
        .zip(latency.iter())
        .collect();
    histogram(
        &mut out,
        "compute_agent_request_duration_seconds",
        "Time from parsed request to response, per route.",
        &series,
    );
    let _ = writeln!(
        out,
        "# HELP compute_agent_http_responses_total Responses per route and status class.\n\
         # TYPE compute_agent_http_responses_total counter"
    );
    for kind in RouteKind::ALL {
        for (c, class) in CLASSES.iter().enumerate() {
            let n = responses[kind.index()][c];
            if n > 0 {
                let _ = writeln!(
                    out,
                    "compute_agent_http_responses_total{{route=\"{}\",class=\"{class}\"}} {n}",
                    kind.label()
                );
            }
        }
    }
    out.into_bytes()
}

fn histogram(out: &mut String, name: &str, help: &str, series: &[(&str, &HistogramSnapshot)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (labels, snap) in series {
        write_histogram(out, snap, name, labels);
    }
}

/// Escapes a Prometheus label value (backslash, quote, newline).
fn label_escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends this histogram in Prometheus text format, in seconds:
/// `name_bucket{labels,le="..."}`, `name_sum{labels}`, `name_count{labels}`.
/// `labels` is either empty or `key="value",...` without braces. The caller
/// writes the `# HELP` / `# TYPE` lines once per metric name.
fn write_histogram(out: &mut String, snap: &HistogramSnapshot, name: &str, labels: &str) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (i, c) in snap.counts.iter().enumerate() {
        cumulative += c;
        match snap.bounds_us.get(i) {
            Some(b) => {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cumulative}",
                    *b as f64 / 1e6
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
                );
            }
        }
    }
    let braces = |s: &str| {
        if s.is_empty() {
            String::new()
        } else {
            format!("{{{s}}}")
        }
    };
    let _ = writeln!(
        out,
        "{name}_sum{} {}",
        braces(labels),
        snap.sum_us as f64 / 1e6
    );
    let _ = writeln!(out, "{name}_count{} {}", braces(labels), snap.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_text_is_cumulative_in_seconds() {
        let h = AtomicHistogram::default();
        for us in [10, 30, 30, 100_000_000] {
            h.record_us(us);
        }
        let mut merged = HistogramSnapshot::default();
        merged.merge(&h.snapshot());
        merged.merge(&h.snapshot());
        let mut text = String::new();
        write_histogram(&mut text, &merged, "x_seconds", "route=\"a\"");
        assert!(
            text.contains("x_seconds_bucket{route=\"a\",le=\"0.000025\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{route=\"a\",le=\"0.00005\"} 6\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{route=\"a\",le=\"+Inf\"} 8\n"),
            "{text}"
        );
        assert!(text.contains("x_seconds_count{route=\"a\"} 8\n"), "{text}");
        let mut bare = String::new();
        write_histogram(&mut bare, &merged, "y", "");
        assert!(bare.contains("y_bucket{le=\"+Inf\"} 8\n"), "{bare}");
        assert!(bare.contains("y_count 8\n"), "{bare}");
    }
}
