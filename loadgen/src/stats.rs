//! Measurements of one run: latency histograms (HDR), outcome counts, a
//! per-second timeline, and a log of failed operations with their times.
//!
//! Owns: recording on a worker thread without locks (one `Recorder` per
//! worker) and merging the workers' recorders at the end. Latencies are in
//! microseconds. The failure log is bounded (`FAILURE_LOG_CAP`; the rest are
//! counted, never silently lost). Never decides pass/fail; that is `slo`'s job.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Highest latency tracked: one hour, in microseconds.
const MAX_US: u64 = 3_600_000_000;

pub fn new_histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, sigfig).expect("static bounds are valid")
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, MAX_US);
    h.record(us).expect("value clamped into range");
}

/// Most failed operations the failure log keeps per run; later ones are
/// only counted (`failure_log_dropped`).
pub const FAILURE_LOG_CAP: usize = 10_000;

/// One failed (measured) operation and when it happened, in milliseconds
/// since the measured window began: what lines failures up with events
/// outside loadgen (an agent killed at a known wall-clock time).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FailureEvent {
    pub kind: &'static str,
    pub label: String,
    /// Its intended start (the schedule's, in open loop).
    pub intended_ms: f64,
    /// When its first request was written (none when not known: it never
    /// got that far, or was still running at the end and charged unfinished).
    pub sent_ms: Option<f64>,
    /// When it ended (failed, or was charged as unfinished).
    pub done_ms: f64,
}

/// Percentiles of one distribution, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let q = |x: f64| h.value_at_quantile(x) as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean_ms: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: h.max() as f64 / 1000.0,
        }
    }
}

/// Counts of one operation kind or route, by outcome label.
#[derive(Debug, Clone, Default)]
pub struct Outcomes {
    pub succeeded: u64,
    /// Failure label ("500 EXECUTION_ERROR", "timeout", ...) -> count.
    pub failed: BTreeMap<String, u64>,
}

impl Outcomes {
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }
    fn merge(&mut self, o: &Outcomes) {
        self.succeeded += o.succeeded;
        for (k, v) in &o.failed {
            *self.failed.entry(k.clone()).or_default() += v;
        }
    }
}

/// One operation kind's measurements.
pub struct OpStats {
    pub outcomes: Outcomes,
    /// From the intended start (coordinated-omission corrected).
    pub corrected: Histogram<u64>,
    /// From the moment the first request was written.
    pub uncorrected: Histogram<u64>,
}

/// One route's requests: every response by status (and error code).
pub struct RouteStats {
    /// "200", "404 NOT_FOUND", "timeout", ... -> count.
    pub by_outcome: BTreeMap<String, u64>,
    pub latency: Histogram<u64>,
}

/// One second of the measured window (by completion time).
pub struct Tick {
    pub completed: u64,
    pub failed: u64,
    /// Operations whose first request was sent in this second.
    pub started: u64,
    pub latency: Histogram<u64>,
}

impl Tick {
    fn new() -> Tick {
        Tick {
            completed: 0,
            failed: 0,
            started: 0,
            latency: new_histogram(2),
        }
    }
}

#[derive(Default)]
pub struct Recorder {
    pub ops: BTreeMap<&'static str, OpStats>,
    pub routes: BTreeMap<&'static str, RouteStats>,
    pub phases: BTreeMap<&'static str, Histogram<u64>>,
    pub ticks: Vec<Tick>,
    /// How late operations began relative to their intended start.
    pub schedule_lag: Option<Histogram<u64>>,
    /// Client-side time spent QUEUED (lifecycle, poll granularity).
    pub client_queued: Option<Histogram<u64>>,
    pub rows_fetched: u64,
    /// Operations (warm-up ones included) that completed inside the window.
    pub completed_in_window: u64,
    /// Operations whose first request went out inside the window.
    pub started_in_window: u64,
    /// Gateway answers by the `endpoint` that ran them.
    pub answered_by: BTreeMap<String, u64>,
    /// Failed measured operations, at most `FAILURE_LOG_CAP`.
    pub failures: Vec<FailureEvent>,
    /// Failed operations beyond the cap, counted only.
    pub failures_dropped: u64,
}

impl Recorder {
    pub fn op(&mut self, kind: &'static str) -> &mut OpStats {
        self.ops.entry(kind).or_insert_with(|| OpStats {
            outcomes: Outcomes::default(),
            corrected: new_histogram(3),
            uncorrected: new_histogram(3),
        })
    }

    pub fn request(&mut self, route: &'static str, outcome: &str, latency: Option<Duration>) {
        let r = self.routes.entry(route).or_insert_with(|| RouteStats {
            by_outcome: BTreeMap::new(),
            latency: new_histogram(3),
        });
        // Look up before inserting: the common outcome exists already, and
        // this runs once per request, so avoid allocating its key each time.
        match r.by_outcome.get_mut(outcome) {
            Some(n) => *n += 1,
            None => {
                r.by_outcome.insert(outcome.to_string(), 1);
            }
        }
        if let Some(d) = latency {
            record(&mut r.latency, d);
        }
    }

    pub fn phase(&mut self, name: &'static str, d: Duration) {
        record(
            self.phases.entry(name).or_insert_with(|| new_histogram(3)),
            d,
        );
    }

    pub fn tick(&mut self, second: usize) -> &mut Tick {
        while self.ticks.len() <= second {
            self.ticks.push(Tick::new());
        }
        &mut self.ticks[second]
    }

    pub fn failure(&mut self, e: FailureEvent) {
        if self.failures.len() < FAILURE_LOG_CAP {
            self.failures.push(e);
        } else {
            self.failures_dropped += 1;
        }
    }

    pub fn answered_by(&mut self, endpoint: &str) {
        match self.answered_by.get_mut(endpoint) {
            Some(n) => *n += 1,
            None => {
                self.answered_by.insert(endpoint.to_string(), 1);
            }
        }
    }

    pub fn lag(&mut self, d: Duration) {
        record(self.schedule_lag.get_or_insert_with(|| new_histogram(3)), d);
    }

    pub fn queued(&mut self, d: Duration) {
        record(
            self.client_queued.get_or_insert_with(|| new_histogram(3)),
            d,
        );
    }

    pub fn merge(&mut self, other: Recorder) {
        for (k, o) in other.ops {
            let s = self.op(k);
            s.outcomes.merge(&o.outcomes);
            s.corrected.add(&o.corrected).expect("same bounds");
            s.uncorrected.add(&o.uncorrected).expect("same bounds");
        }
        for (k, r) in other.routes {
            let mine = self.routes.entry(k).or_insert_with(|| RouteStats {
                by_outcome: BTreeMap::new(),
                latency: new_histogram(3),
            });
            for (o, n) in r.by_outcome {
                *mine.by_outcome.entry(o).or_default() += n;
            }
            mine.latency.add(&r.latency).expect("same bounds");
        }
        for (k, h) in other.phases {
            self.phases
                .entry(k)
                .or_insert_with(|| new_histogram(3))
                .add(&h)
                .expect("same bounds");
        }
        for (i, t) in other.ticks.into_iter().enumerate() {
            let mine = self.tick(i);
            mine.completed += t.completed;
            mine.failed += t.failed;
            mine.started += t.started;
            mine.latency.add(&t.latency).expect("same bounds");
        }
        if let Some(h) = other.schedule_lag {
            self.schedule_lag
                .get_or_insert_with(|| new_histogram(3))
                .add(&h)
                .expect("same bounds");
        }
        if let Some(h) = other.client_queued {
            self.client_queued
                .get_or_insert_with(|| new_histogram(3))
                .add(&h)
                .expect("same bounds");
        }
        self.rows_fetched += other.rows_fetched;
        self.completed_in_window += other.completed_in_window;
        self.started_in_window += other.started_in_window;
        for (k, n) in other.answered_by {
            *self.answered_by.entry(k).or_default() += n;
        }
        self.failures_dropped += other.failures_dropped;
        for e in other.failures {
            self.failure(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_histograms() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        a.op("health").outcomes.succeeded = 3;
        record(&mut a.op("health").corrected, Duration::from_millis(2));
        b.op("health").outcomes.failed.insert("timeout".into(), 2);
        record(&mut b.op("health").corrected, Duration::from_millis(100));
        b.request("GET /health", "200", Some(Duration::from_millis(1)));
        b.tick(3).completed = 4;
        a.merge(b);
        let h = &a.ops["health"];
        assert_eq!((h.outcomes.succeeded, h.outcomes.failed_total()), (3, 2));
        let p = Percentiles::of(&h.corrected);
        assert_eq!(p.count, 2);
        assert!((99.0..101.0).contains(&p.max_ms));
        assert_eq!(a.routes["GET /health"].by_outcome["200"], 1);
        assert_eq!(a.ticks.len(), 4);
        assert_eq!(a.ticks[3].completed, 4);
    }

    #[test]
    fn failure_log_is_bounded_and_counts_the_rest() {
        let ev = |i: usize| FailureEvent {
            kind: "gateway",
            label: "POST /v1/query 502 ENGINE_UNREACHABLE".into(),
            intended_ms: i as f64,
            sent_ms: Some(i as f64),
            done_ms: i as f64 + 1.0,
        };
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        for i in 0..FAILURE_LOG_CAP - 1 {
            a.failure(ev(i));
        }
        for i in 0..3 {
            b.failure(ev(i));
        }
        b.answered_by("a1");
        b.answered_by("a1");
        a.answered_by("a2");
        a.merge(b);
        assert_eq!(a.failures.len(), FAILURE_LOG_CAP);
        assert_eq!(a.failures_dropped, 2);
        assert_eq!(a.answered_by["a1"], 2);
        assert_eq!(a.answered_by["a2"], 1);
    }
}
