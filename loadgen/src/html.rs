//! Self-contained HTML reports: inline CSS and inline SVG charts, no script
//! and no external resource, so the page can be attached to a capacity review
//! and opened offline.
//!
//! Owns: page structure and which series each chart shows. Charts are drawn
//! by `plot`; numbers come from the report unchanged.

use crate::capacity::CapacityReport;
use crate::plot::{line_chart, Series};
use crate::report::RunReport;
use std::fmt::Write;

pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}\
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th{background:#f3f3f3}td.l,th.l{text-align:left}.pass{color:#1a7f37;font-weight:bold}.fail{color:#c62828;font-weight:bold}\
.na{color:#777}figure{margin:12px 0}figcaption{font-size:13px;color:#555;max-width:760px}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n{body}</body></html>\n",
        escape(title)
    )
}

fn figure(svg: String, caption: &str) -> String {
    format!(
        "<figure>{svg}<figcaption>{}</figcaption></figure>\n",
        escape(caption)
    )
}

fn class(status: &str) -> &'static str {
    match status {
        "PASS" => "pass",
        "FAIL" => "fail",
        _ => "na",
    }
}

fn run_body(r: &RunReport, heading: &str) -> String {
    let mut b = String::new();
    let s = &r.settings;
    let _ = writeln!(b, "<h2>{}</h2>", escape(heading));
    let _ = writeln!(
        b,
        "<p>{} &middot; scenario <b>{}</b> &middot; {} loop{} &middot; {} connections &middot; {} threads &middot; {}s measured after {}s warm-up &middot; seed {}</p>",
        escape(&s.target),
        escape(&s.scenario),
        escape(&s.mode),
        s.offered_rate.map(|x| format!(" at {x}/s")).unwrap_or_default(),
        s.connections,
        s.threads,
        s.duration_s,
        s.warmup_s,
        s.seed
    );
    let _ = writeln!(
        b,
        "<p>Operations: sent {} = succeeded {} + failed {}. Sent rate {:.1}/s, throughput {:.1}/s, goodput {:.1}/s.</p>",
        r.ops.sent, r.ops.succeeded, r.ops.failed, r.sent_rate, r.throughput, r.goodput
    );
    if !r.answered_by.is_empty() {
        let by: Vec<String> = r
            .answered_by
            .iter()
            .map(|(k, n)| format!("{} {n}", escape(k)))
            .collect();
        let _ = writeln!(b, "<p>Gateway answers by endpoint: {}.</p>", by.join(", "));
    }
    b.push_str("<table><tr><th class=l>SLO</th><th class=l>objective</th><th class=l>measured</th><th class=l>source</th></tr>\n");
    for v in &r.slos {
        let st = v.status.as_str();
        let _ = writeln!(
            b,
            "<tr><td class=\"l {}\">{}</td><td class=l>{}</td><td class=l>{}</td><td class=l>{}</td></tr>",
            class(st),
            st,
            escape(&v.objective),
            escape(&v.measured),
            escape(&v.source)
        );
    }
    b.push_str("</table>\n<table><tr><th class=l>latency (ms)</th><th>count</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>\n");
    let mut row = |name: String, p: &crate::stats::Percentiles| {
        let _ = writeln!(
            b,
            "<tr><td class=l>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            escape(&name),
            p.count,
            p.p50_ms,
            p.p90_ms,
            p.p95_ms,
            p.p99_ms,
            p.p999_ms,
            p.max_ms
        );
    };
    for (k, v) in &r.ops.by_kind {
        row(format!("{k} (from intended start)"), &v.latency);
        row(format!("{k} (uncorrected)"), &v.latency_uncorrected);
    }
    for (k, p) in &r.phases {
        row(format!("lifecycle phase {k}"), p);
    }
    for (k, v) in &r.requests {
        row(format!("request {k}"), &v.latency);
    }
    b.push_str("</table>\n<table><tr><th class=l>outcome</th><th>count</th></tr>\n");
    for (route, v) in &r.requests {
        for (o, n) in &v.by_outcome {
            let _ = writeln!(
                b,
                "<tr><td class=l>{} &rarr; {}</td><td>{n}</td></tr>",
                escape(route),
                escape(o)
            );
        }
    }
    for (k, n) in &r.ops.failed_by {
        let _ = writeln!(
            b,
            "<tr><td class=l>failed operation: {}</td><td>{n}</td></tr>",
            escape(k)
        );
    }
    b.push_str("</table>\n");

    let tl = &r.timeline;
    let pick = |f: fn(&crate::report::TimelinePoint) -> f64| {
        tl.iter().map(|p| (p.t_s, f(p))).collect::<Vec<_>>()
    };
    // An interval in which nothing completed has no latency, not zero latency.
    let pick_lat = |f: fn(&crate::report::TimelinePoint) -> f64| {
        tl.iter()
            .filter(|p| p.completed_per_s > 0.0)
            .map(|p| (p.t_s, f(p)))
            .collect::<Vec<_>>()
    };
    b.push_str(&figure(
        line_chart(
            "Latency percentiles over time (from intended start)",
            "seconds into the measured window",
            "latency (ms)",
            &[
                Series { name: "p50".into(), points: pick_lat(|p| p.p50_ms) },
                Series { name: "p90".into(), points: pick_lat(|p| p.p90_ms) },
                Series { name: "p99".into(), points: pick_lat(|p| p.p99_ms) },
                Series { name: "max".into(), points: pick_lat(|p| p.max_ms) },
            ],
        ),
        "Latency of operations completing in each interval, measured from when each operation should have started. \
         A rising line while the offered rate is constant means the agent is falling behind.",
    ));
    b.push_str(&figure(
        line_chart(
            "Throughput over time",
            "seconds into the measured window",
            "operations per second",
            &[
                Series { name: "completed".into(), points: pick(|p| p.completed_per_s) },
                Series { name: "started".into(), points: pick(|p| p.started_per_s) },
                Series { name: "failed".into(), points: pick(|p| p.failed_per_s) },
            ],
        ),
        "Operations started and completed per second. Completed below started means work is piling up; any failed line above zero is lost availability.",
    ));
    let samples = &r.agent.health_samples;
    let hs = |f: fn(&crate::sampler::HealthSample) -> Option<f64>| {
        samples
            .iter()
            .filter_map(|s| f(s).map(|v| (s.t, v)))
            .collect::<Vec<_>>()
    };
    b.push_str(&figure(
        line_chart(
            "Agent queue depth and stored jobs (GET /health)",
            "seconds into the measured window (negative: warm-up)",
            "jobs",
            &[
                Series { name: "queued_jobs".into(), points: hs(|s| s.queued_jobs) },
                Series { name: "running_jobs".into(), points: hs(|s| s.running_jobs) },
                Series { name: "stored_jobs".into(), points: hs(|s| s.stored_jobs) },
            ],
        ),
        "queued_jobs should hover near zero below capacity; stored_jobs must stay flat (the boundedness SLO fits a slope over the measured window).",
    ));
    if let Some(k) = r.ops.by_kind.values().max_by_key(|k| k.sent) {
        let spectrum = |p: &crate::stats::Percentiles| {
            vec![
                (50.0, p.p50_ms),
                (90.0, p.p90_ms),
                (95.0, p.p95_ms),
                (99.0, p.p99_ms),
                (99.9, p.p999_ms),
                (100.0, p.max_ms),
            ]
        };
        b.push_str(&figure(
            line_chart(
                "Latency by percentile: corrected vs. uncorrected",
                "percentile",
                "latency (ms)",
                &[
                    Series { name: "from intended start".into(), points: spectrum(&k.latency) },
                    Series { name: "from actual send".into(), points: spectrum(&k.latency_uncorrected) },
                ],
            ),
            "The gap between the two lines is the queueing a closed-loop tool would hide (coordinated omission).",
        ));
    }
    b
}

pub fn run_page(r: &RunReport) -> String {
    let verdict = if r.passed { "PASS" } else { "FAIL" };
    page(
        "loadgen report",
        &format!(
            "<h1>loadgen report: <span class={}>{verdict}</span></h1>\n{}",
            class(verdict),
            run_body(r, "Run")
        ),
    )
}

pub fn capacity_page(c: &CapacityReport) -> String {
    let mut b = String::new();
    let _ = writeln!(b, "<h1>Capacity: {}</h1>", escape(&c.summary));
    let mut steps: Vec<_> = c.steps.iter().collect();
    steps.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let curve = |f: fn(&crate::capacity::Step) -> f64| {
        steps.iter().map(|s| (s.rate, f(s))).collect::<Vec<_>>()
    };
    b.push_str(&figure(
        line_chart(
            "Completion latency vs. offered rate",
            "offered rate (operations per second)",
            "latency (ms)",
            &[
                Series { name: "p50".into(), points: curve(|s| s.latency.p50_ms) },
                Series { name: "p95".into(), points: curve(|s| s.latency.p95_ms) },
                Series { name: "p99".into(), points: curve(|s| s.latency.p99_ms) },
            ],
        ),
        "Each point is one step of the search. The knee, where p95 leaves the flat part, is the agent's practical capacity.",
    ));
    b.push_str(&figure(
        line_chart(
            "Achieved throughput vs. offered rate",
            "offered rate (operations per second)",
            "operations per second",
            &[
                Series { name: "offered".into(), points: curve(|s| s.rate) },
                Series { name: "completed in window".into(), points: curve(|s| s.throughput) },
            ],
        ),
        "Below capacity the two lines coincide; past it completed throughput flattens while latency climbs.",
    ));
    b.push_str("<table><tr><th>rate/s</th><th class=l>SLOs</th><th>throughput/s</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th class=l>failing</th></tr>\n");
    for s in &steps {
        let st = if s.passed { "PASS" } else { "FAIL" };
        let _ = writeln!(
            b,
            "<tr><td>{:.1}</td><td class=\"l {}\">{st}</td><td>{:.1}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td class=l>{}</td></tr>",
            s.rate,
            class(st),
            s.throughput,
            s.latency.p50_ms,
            s.latency.p95_ms,
            s.latency.p99_ms,
            escape(&s.failing.join(", "))
        );
    }
    b.push_str("</table>\n");
    if let Some(s) = c
        .lower_bound
        .and_then(|l| c.steps.iter().find(|s| s.rate == l))
    {
        b.push_str(&run_body(
            &s.report,
            &format!("Highest passing step: {:.1}/s", s.rate),
        ));
    }
    if let Some(s) = c
        .upper_bound
        .and_then(|h| c.steps.iter().find(|s| s.rate == h))
    {
        b.push_str(&run_body(
            &s.report,
            &format!("Lowest failing step: {:.1}/s", s.rate),
        ));
    }
    page("loadgen capacity report", &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }
}
