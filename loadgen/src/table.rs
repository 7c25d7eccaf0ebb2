//! Plain-text rendering of reports for a terminal or a CI log.
//!
//! Owns: layout only. Writes into a String so callers choose the stream.

use crate::capacity::CapacityReport;
use crate::report::RunReport;
use crate::stats::Percentiles;
use std::fmt::Write;

fn pct_row(out: &mut String, name: &str, p: &Percentiles) {
    let _ = writeln!(
        out,
        "  {name:<28} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
        p.count, p.p50_ms, p.p90_ms, p.p95_ms, p.p99_ms, p.p999_ms, p.max_ms
    );
}

fn pct_header(out: &mut String, title: &str) {
    let _ = writeln!(
        out,
        "{title}\n  {:<28} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "(ms)", "count", "p50", "p90", "p95", "p99", "p99.9", "max"
    );
}

pub fn run(r: &RunReport) -> String {
    let mut o = String::new();
    let s = &r.settings;
    let _ = writeln!(
        o,
        "loadgen {} scenario={} mode={}{} connections={} threads={} duration={}s warmup={}s seed={}",
        s.target,
        s.scenario,
        s.mode,
        s.offered_rate.map(|x| format!(" rate={x}/s")).unwrap_or_default(),
        s.connections,
        s.threads,
        s.duration_s,
        s.warmup_s,
        s.seed
    );
    let _ = writeln!(
        o,
        "operations: sent={} succeeded={} failed={}   sent rate={:.1}/s throughput={:.1}/s goodput={:.1}/s",
        r.ops.sent, r.ops.succeeded, r.ops.failed, r.sent_rate, r.throughput, r.goodput
    );
    for (k, n) in &r.ops.failed_by {
        let _ = writeln!(o, "  failed {k}: {n}");
    }
    if !r.answered_by.is_empty() {
        let by: Vec<String> = r
            .answered_by
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let _ = writeln!(o, "  answered by endpoint: {}", by.join(", "));
    }
    pct_header(
        &mut o,
        "\nlatency per operation (corrected = from intended start)",
    );
    for (k, v) in &r.ops.by_kind {
        pct_row(&mut o, &format!("{k} corrected"), &v.latency);
        pct_row(&mut o, &format!("{k} uncorrected"), &v.latency_uncorrected);
    }
    if !r.phases.is_empty() || r.client_queued.is_some() {
        pct_header(&mut o, "\nlifecycle phases");
        for (k, p) in &r.phases {
            pct_row(&mut o, k, p);
        }
        if let Some(p) = &r.client_queued {
            pct_row(&mut o, "queued (client, upper bound)", p);
        }
    }
    pct_header(&mut o, "\nrequests by route");
    for (route, v) in &r.requests {
        pct_row(&mut o, route, &v.latency);
        let outcomes: Vec<String> = v
            .by_outcome
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let _ = writeln!(o, "      {}", outcomes.join(", "));
    }
    if let Some(l) = &r.schedule_lag {
        let _ = writeln!(
            o,
            "\nschedule lag (actual - intended start): p50={:.2}ms p99={:.2}ms max={:.2}ms",
            l.p50_ms, l.p99_ms, l.max_ms
        );
    }
    let a = &r.agent;
    let _ = writeln!(
        o,
        "\nserver: {} health samples ({} errors), /metrics {}{}",
        a.health_samples.len(),
        a.health_sample_errors,
        if a.metrics_present {
            "present"
        } else {
            "absent"
        },
        // Long-poll is a lifecycle matter; other runs never try it.
        if r.settings.mix.iter().any(|(k, _)| k == "lifecycle") {
            format!(", long-poll {}", a.long_poll)
        } else {
            String::new()
        }
    );
    if let (Some(max), Some(mean)) = (a.queued_jobs_max, a.queued_jobs_mean) {
        let _ = writeln!(o, "  queued_jobs: mean {mean:.1}, max {max}");
    }
    if let (Some(name), Some(p95)) = (&a.queue_wait_metric, a.queue_wait_p95_s) {
        let _ = writeln!(o, "  queue wait ({name}): p95 {}", crate::slo::fmt_dur(p95));
    }
    let _ = writeln!(o, "\nSLOs");
    for v in &r.slos {
        let _ = writeln!(
            o,
            "  [{:<4}] {:<62} measured {}  ({})",
            v.status.as_str(),
            v.objective,
            v.measured,
            v.source
        );
    }
    let _ = writeln!(o, "result: {}", if r.passed { "PASS" } else { "FAIL" });
    o
}

pub fn capacity(c: &CapacityReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "capacity search: {} steps", c.steps.len());
    let _ = writeln!(
        o,
        "  {:>10} {:>6} {:>11} {:>10} {:>10} {:>10}  failing SLOs",
        "rate/s", "SLOs", "thru/s", "p50 ms", "p95 ms", "p99 ms"
    );
    let mut steps: Vec<_> = c.steps.iter().collect();
    steps.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    for s in steps {
        let _ = writeln!(
            o,
            "  {:>10.1} {:>6} {:>11.1} {:>10.2} {:>10.2} {:>10.2}  {}",
            s.rate,
            if s.passed { "PASS" } else { "FAIL" },
            s.throughput,
            s.latency.p50_ms,
            s.latency.p95_ms,
            s.latency.p99_ms,
            s.failing.join(", ")
        );
    }
    let _ = writeln!(
        o,
        "highest passing rate: {}   lowest failing rate: {}",
        c.lower_bound
            .map_or("none (fails at the start rate)".into(), |x| format!(
                "{x:.1}/s"
            )),
        c.upper_bound
            .map_or("none (passes at the max rate)".into(), |x| format!(
                "{x:.1}/s"
            )),
    );
    let _ = writeln!(o, "capacity: {}", c.summary);
    o
}
