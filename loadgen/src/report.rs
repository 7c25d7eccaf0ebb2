//! The report of one run: a serializable summary built from the raw
//! measurements, with the SLO verdicts. `--json` writes exactly this.
//!
//! Owns: turning `RunOutput` into numbers (rates, percentiles, timeline,
//! agent signals) and choosing each SLO's input. Never prints; `table` and
//! `html` render it.

use crate::driver::{Mode, RunOutput};
use crate::ops;
use crate::prom::Histogram as PromHistogram;
use crate::sampler::HealthSample;
use crate::slo::{self, Inputs, Thresholds, Verdict};
use crate::slope::{self, Boundedness};
use crate::stats::{FailureEvent, Percentiles};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct RunSettings {
    pub target: String,
    pub scenario: String,
    pub mix: Vec<(String, u64)>,
    pub statements: Vec<String>,
    /// "open" or "closed".
    pub mode: String,
    pub offered_rate: Option<f64>,
    pub connections: usize,
    pub threads: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KindSummary {
    pub sent: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub failed_by: BTreeMap<String, u64>,
    /// From each operation's intended start (coordinated-omission corrected).
    pub latency: Percentiles,
    /// From the moment its first request was written.
    pub latency_uncorrected: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpsSummary {
    pub sent: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub failed_by: BTreeMap<String, u64>,
    pub by_kind: BTreeMap<String, KindSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteSummary {
    pub total: u64,
    pub by_outcome: BTreeMap<String, u64>,
    pub latency: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelinePoint {
    /// Start of the interval, seconds since the measured window began.
    pub t_s: f64,
    pub completed_per_s: f64,
    pub failed_per_s: f64,
    pub started_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentSignals {
    pub health_samples: Vec<HealthSample>,
    pub health_sample_errors: u64,
    pub metrics_present: bool,
    pub queue_wait_metric: Option<String>,
    pub queue_wait_count: Option<f64>,
    pub queue_wait_p95_s: Option<f64>,
    pub queue_wait_p99_s: Option<f64>,
    pub queued_jobs_max: Option<f64>,
    pub queued_jobs_mean: Option<f64>,
    pub stored_jobs: Option<Boundedness>,
    pub long_poll: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub settings: RunSettings,
    pub measured_s: f64,
    /// Wall-clock start of the measured window, ms since the Unix epoch:
    /// `failure_log` and `timeline` times are relative to it.
    pub window_start_unix_ms: f64,
    pub ops: OpsSummary,
    pub requests: BTreeMap<String, RouteSummary>,
    /// Lifecycle phases: submit, to_terminal, completion, fetch, delete.
    pub phases: BTreeMap<String, Percentiles>,
    /// Client-side time from submit to the first non-QUEUED status seen
    /// (poll granularity: an upper bound, exact only when polling).
    pub client_queued: Option<Percentiles>,
    /// How late operations actually started relative to their schedule.
    pub schedule_lag: Option<Percentiles>,
    /// Operations whose first request went out in the window, per second.
    pub sent_rate: f64,
    /// Operations completed inside the window, per second (whenever they
    /// were scheduled: the agent's steady output rate).
    pub throughput: f64,
    pub goodput: f64,
    /// Rows received: lifecycle pages fetched, gateway answers' `row_count`.
    pub rows_fetched: u64,
    pub connects: u64,
    /// Gateway answers by the `endpoint` that ran them (empty otherwise).
    pub answered_by: BTreeMap<String, u64>,
    /// Every failed measured operation with its times, by intended start
    /// (at most `stats::FAILURE_LOG_CAP`; the rest are counted below).
    pub failure_log: Vec<FailureEvent>,
    pub failure_log_dropped: u64,
    pub timeline: Vec<TimelinePoint>,
    pub agent: AgentSignals,
    pub slos: Vec<Verdict>,
    pub passed: bool,
}

fn queue_wait_delta(out: &RunOutput) -> Option<(String, PromHistogram)> {
    let end = out.metrics_end.as_ref()?;
    let (name, h_end) = end.queue_wait()?;
    let delta = match out
        .metrics_start
        .as_ref()
        .and_then(|m| m.histograms.get(name))
    {
        Some(h0) => h_end.since(h0),
        None => h_end.clone(),
    };
    Some((name.to_string(), delta))
}

pub fn build(
    settings: RunSettings,
    out: &RunOutput,
    th: &Thresholds,
    long_poll: &str,
) -> RunReport {
    let rec = &out.recorder;
    let dur = settings.duration_s.max(1e-9);
    let mut ops = OpsSummary {
        sent: 0,
        succeeded: 0,
        failed: 0,
        failed_by: BTreeMap::new(),
        by_kind: BTreeMap::new(),
    };
    for (kind, s) in &rec.ops {
        let failed = s.outcomes.failed_total();
        let sent = s.outcomes.succeeded + failed;
        ops.sent += sent;
        ops.succeeded += s.outcomes.succeeded;
        ops.failed += failed;
        for (k, n) in &s.outcomes.failed {
            *ops.failed_by.entry(format!("{kind}: {k}")).or_default() += n;
        }
        ops.by_kind.insert(
            kind.to_string(),
            KindSummary {
                sent,
                succeeded: s.outcomes.succeeded,
                failed,
                failed_by: s.outcomes.failed.clone(),
                latency: Percentiles::of(&s.corrected),
                latency_uncorrected: Percentiles::of(&s.uncorrected),
            },
        );
    }
    let requests: BTreeMap<String, RouteSummary> = rec
        .routes
        .iter()
        .map(|(r, s)| {
            (
                r.to_string(),
                RouteSummary {
                    total: s.by_outcome.values().sum(),
                    by_outcome: s.by_outcome.clone(),
                    latency: Percentiles::of(&s.latency),
                },
            )
        })
        .collect();
    let phases = rec
        .phases
        .iter()
        .map(|(k, h)| (k.to_string(), Percentiles::of(h)))
        .collect::<BTreeMap<_, _>>();
    let tick = out.tick.as_secs_f64();
    let timeline = rec
        .ticks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let p = Percentiles::of(&t.latency);
            TimelinePoint {
                t_s: i as f64 * tick,
                completed_per_s: t.completed as f64 / tick,
                failed_per_s: t.failed as f64 / tick,
                started_per_s: t.started as f64 / tick,
                p50_ms: p.p50_ms,
                p90_ms: p.p90_ms,
                p99_ms: p.p99_ms,
                max_ms: p.max_ms,
            }
        })
        .collect();

    // Agent signals over the measured window only (no warm-up, no drain).
    let steady: Vec<&HealthSample> = out
        .samples
        .iter()
        .filter(|s| s.t >= 0.0 && s.t <= dur)
        .collect();
    let queued: Vec<f64> = steady.iter().filter_map(|s| s.queued_jobs).collect();
    let stored_pts: Vec<(f64, f64)> = steady
        .iter()
        .filter_map(|s| s.stored_jobs.map(|v| (s.t, v)))
        .collect();
    let stored = slope::boundedness(&stored_pts, th.stored_abs_slack, th.stored_rel_slack);
    let qw = queue_wait_delta(out);
    let qw_count = qw.as_ref().map(|(_, h)| h.count());
    let qw_p95 = qw.as_ref().and_then(|(_, h)| h.quantile_seconds(0.95));
    let qw_p99 = qw.as_ref().and_then(|(_, h)| h.quantile_seconds(0.99));
    let agent = AgentSignals {
        health_samples: out.samples.clone(),
        health_sample_errors: out.sample_errors,
        metrics_present: out.metrics_end.is_some(),
        queue_wait_metric: qw.as_ref().map(|(n, _)| n.clone()),
        queue_wait_count: qw_count,
        queue_wait_p95_s: qw_p95.map(|x| x.0),
        queue_wait_p99_s: qw_p99.map(|x| x.0),
        queued_jobs_max: queued.iter().copied().reduce(f64::max),
        queued_jobs_mean: (!queued.is_empty())
            .then(|| queued.iter().sum::<f64>() / queued.len() as f64),
        stored_jobs: stored.clone(),
        long_poll: long_poll.to_string(),
    };

    let availability = [
        ops::ROUTE_SUBMIT,
        ops::ROUTE_EXECUTE,
        ops::ROUTE_GATEWAY_QUERY,
    ]
    .iter()
    .find_map(|r| requests.get(*r).map(|s| (r, s)))
    .map(|(r, s)| {
        let ok_code = if *r == ops::ROUTE_SUBMIT {
            "202"
        } else {
            "200"
        };
        (
            s.by_outcome.get(ok_code).copied().unwrap_or(0),
            s.total,
            format!("{r} responses"),
        )
    })
    .or_else(|| (ops.sent > 0).then(|| (ops.succeeded, ops.sent, "all operations".to_string())));
    let queue_p95 = match (&qw, qw_p95, qw_count) {
        (Some((name, _)), Some((p, lower)), Some(c)) if c > 0.0 => {
            Some((p, lower, format!("agent /metrics {name}")))
        }
        _ => rec
            .client_queued
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| {
                (
                    h.value_at_quantile(0.95) as f64 / 1e6,
                    false,
                    "client-side status transitions (poll granularity)".to_string(),
                )
            }),
    };
    let completion_p95 = if let Some(p) = phases.get("completion") {
        Some((
            p.p95_ms / 1e3,
            "lifecycle: intended start -> terminal status".to_string(),
        ))
    } else {
        ["execute", "gateway"].iter().find_map(|name| {
            ops.by_kind
                .get(*name)
                .filter(|k| k.latency.count > 0)
                .map(|k| {
                    (
                        k.latency.p95_ms / 1e3,
                        format!("{name}: intended start -> response"),
                    )
                })
        })
    };
    let slos = slo::evaluate(
        th,
        &Inputs {
            availability,
            queue_p95,
            completion_p95,
            stored,
        },
    );
    let passed = slo::passed(&slos);
    let mut failure_log = rec.failures.clone();
    failure_log.sort_by(|a, b| a.intended_ms.total_cmp(&b.intended_ms));
    RunReport {
        measured_s: settings.duration_s,
        window_start_unix_ms: out.window_start_unix_ms,
        answered_by: rec.answered_by.clone(),
        failure_log,
        failure_log_dropped: rec.failures_dropped,
        sent_rate: rec.started_in_window as f64 / dur,
        throughput: rec.completed_in_window as f64 / dur,
        goodput: ops.succeeded as f64 / dur,
        rows_fetched: rec.rows_fetched,
        connects: out.connects,
        client_queued: rec.client_queued.as_ref().map(Percentiles::of),
        schedule_lag: rec.schedule_lag.as_ref().map(Percentiles::of),
        settings,
        ops,
        requests,
        phases,
        timeline,
        agent,
        slos,
        passed,
    }
}

pub fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Open { .. } => "open",
        Mode::Closed => "closed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::RunOutput;
    use crate::stats::{record, Recorder};
    use std::time::Duration;

    fn settings() -> RunSettings {
        RunSettings {
            target: "http://x".into(),
            scenario: "lifecycle".into(),
            mix: vec![("lifecycle".into(), 1)],
            statements: vec![],
            mode: "open".into(),
            offered_rate: Some(10.0),
            connections: 1,
            threads: 1,
            duration_s: 2.0,
            warmup_s: 0.0,
            seed: 1,
        }
    }

    fn output(rec: Recorder, metrics: Option<(&str, &str)>) -> RunOutput {
        RunOutput {
            recorder: rec,
            tick: Duration::from_millis(100),
            samples: (0..10)
                .map(|i| crate::sampler::HealthSample {
                    t: f64::from(i) * 0.2,
                    queued_jobs: Some(1.0),
                    running_jobs: Some(0.0),
                    active_queries: None,
                    stored_jobs: Some(5.0),
                    completed_jobs: None,
                    memory_used_mb: None,
                })
                .collect(),
            sample_errors: 0,
            metrics_start: metrics.map(|m| crate::prom::parse(m.0)),
            metrics_end: metrics.map(|m| crate::prom::parse(m.1)),
            connects: 1,
            wall: Duration::from_secs(2),
            window_start_unix_ms: 1.7e12,
        }
    }

    fn lifecycle_recorder() -> Recorder {
        let mut rec = Recorder::default();
        for i in 0..1000 {
            let outcome = if i == 0 { "500 INTERNAL" } else { "202" };
            rec.request(
                crate::ops::ROUTE_SUBMIT,
                outcome,
                Some(Duration::from_millis(1)),
            );
            rec.phase(
                "completion",
                Duration::from_millis(if i < 900 { 10 } else { 300 }),
            );
            rec.queued(Duration::from_millis(40));
        }
        let op = rec.op("lifecycle");
        op.outcomes.succeeded = 999;
        op.outcomes
            .failed
            .insert("POST /queries 500 INTERNAL".into(), 1);
        record(&mut op.corrected, Duration::from_millis(10));
        rec
    }

    #[test]
    fn slo_inputs_come_from_the_right_measurements() {
        let th = Thresholds::default();
        let r = build(
            settings(),
            &output(lifecycle_recorder(), None),
            &th,
            "supported",
        );
        let v = |id: &str| r.slos.iter().find(|s| s.id == id).unwrap().clone();
        // 999 of 1000 submits answered 202: exactly the 99.9% objective.
        assert_eq!(v("availability").status, crate::slo::Status::Pass);
        assert!(v("availability").measured.contains("999/1000"));
        // No agent metrics: the queue SLO falls back to client transitions.
        assert!(v("queue_p95").source.contains("client"));
        assert!(
            v("queue_p95").measured.starts_with("40."),
            "{}",
            v("queue_p95").measured
        );
        // p95 of the completion phase is in the slow 10%.
        assert!(
            v("completion_p95").measured.starts_with("300"),
            "{}",
            v("completion_p95").measured
        );
        assert_eq!(v("stored_jobs_bounded").status, crate::slo::Status::Pass);
        assert_eq!(r.ops.sent, r.ops.succeeded + r.ops.failed);
        assert!(r.passed);
    }

    #[test]
    fn agent_queue_histogram_wins_and_only_this_run_counts() {
        let before = "compute_agent_queue_wait_seconds_bucket{le=\"0.5\"} 0\ncompute_agent_queue_wait_seconds_bucket{le=\"2\"} 100\ncompute_agent_queue_wait_seconds_bucket{le=\"+Inf\"} 100\n";
        let after = "compute_agent_queue_wait_seconds_bucket{le=\"0.5\"} 50\ncompute_agent_queue_wait_seconds_bucket{le=\"2\"} 150\ncompute_agent_queue_wait_seconds_bucket{le=\"+Inf\"} 150\n";
        let th = Thresholds::default();
        let r = build(
            settings(),
            &output(lifecycle_recorder(), Some((before, after))),
            &th,
            "supported",
        );
        let q = r.slos.iter().find(|s| s.id == "queue_p95").unwrap();
        // The 100 slow waits happened before the window; the 50 new ones were all <= 0.5 s.
        assert!(
            q.source.contains("compute_agent_queue_wait_seconds"),
            "{}",
            q.source
        );
        assert_eq!(q.status, crate::slo::Status::Pass);
        assert_eq!(r.agent.queue_wait_count, Some(50.0));
    }
}
