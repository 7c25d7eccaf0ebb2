//! SLO verdicts from the operators' runbook, with thresholds from flags.
//!
//! Owns: which measurement feeds each SLO and the pass/fail decision.
//! Runbook SLOs: availability of POST /queries >= 99.9%; p95 time in QUEUED
//! < 1 s; p95 completion latency under the workload's target; stored_jobs
//! bounded under steady traffic. An SLO with no data is "n/a", never a pass
//! dressed up: it does not fail the run, and the report says why it is n/a.

use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Percent of successful responses required.
    pub availability_pct: f64,
    pub queue_p95: Duration,
    pub completion_p95: Duration,
    /// stored_jobs may grow by max(abs, rel x mean) over the steady window.
    pub stored_abs_slack: f64,
    pub stored_rel_slack: f64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            availability_pct: 99.9,
            queue_p95: Duration::from_secs(1),
            completion_p95: Duration::from_secs(2),
            stored_abs_slack: 10.0,
            stored_rel_slack: 0.1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    #[serde(rename = "n/a")]
    NotApplicable,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::NotApplicable => "n/a",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    /// Stable id: availability, queue_p95, completion_p95, stored_jobs_bounded.
    pub id: &'static str,
    pub objective: String,
    pub measured: String,
    /// Where the measurement came from.
    pub source: String,
    pub status: Status,
}

/// What the SLOs are computed from (all optional: scenarios differ).
pub struct Inputs {
    /// (successes, total, what was counted).
    pub availability: Option<(u64, u64, String)>,
    /// (p95 seconds, is lower bound, source).
    pub queue_p95: Option<(f64, bool, String)>,
    /// (p95 seconds, source).
    pub completion_p95: Option<(f64, String)>,
    pub stored: Option<crate::slope::Boundedness>,
}

pub fn evaluate(th: &Thresholds, i: &Inputs) -> Vec<Verdict> {
    let mut v = Vec::with_capacity(4);
    let na = |id, objective: String, why: &str| Verdict {
        id,
        objective,
        measured: "-".into(),
        source: why.into(),
        status: Status::NotApplicable,
    };
    let obj = format!("availability >= {}%", th.availability_pct);
    v.push(match &i.availability {
        Some((ok, total, what)) if *total > 0 => {
            let pct = *ok as f64 * 100.0 / *total as f64;
            Verdict {
                id: "availability",
                objective: obj,
                measured: format!("{pct:.3}% ({ok}/{total})"),
                source: what.clone(),
                status: if pct >= th.availability_pct {
                    Status::Pass
                } else {
                    Status::Fail
                },
            }
        }
        _ => na("availability", obj, "no requests to measure"),
    });
    let obj = format!(
        "p95 time in QUEUED < {}",
        fmt_dur(th.queue_p95.as_secs_f64())
    );
    v.push(match &i.queue_p95 {
        Some((s, lower, src)) => Verdict {
            id: "queue_p95",
            objective: obj,
            measured: format!("{}{}", if *lower { ">= " } else { "" }, fmt_dur(*s)),
            source: src.clone(),
            status: if *s < th.queue_p95.as_secs_f64()
                && !(*lower && *s >= th.queue_p95.as_secs_f64())
            {
                Status::Pass
            } else {
                Status::Fail
            },
        },
        None => na(
            "queue_p95",
            obj,
            "no queue-wait data (no lifecycle jobs, no agent metrics)",
        ),
    });
    let obj = format!(
        "p95 completion latency < {}",
        fmt_dur(th.completion_p95.as_secs_f64())
    );
    v.push(match &i.completion_p95 {
        Some((s, src)) => Verdict {
            id: "completion_p95",
            objective: obj,
            measured: fmt_dur(*s),
            source: src.clone(),
            status: if *s < th.completion_p95.as_secs_f64() {
                Status::Pass
            } else {
                Status::Fail
            },
        },
        None => na("completion_p95", obj, "no completed SQL operations"),
    });
    let obj = format!(
        "stored_jobs bounded (trend adds <= max({}, {}% of mean))",
        th.stored_abs_slack,
        th.stored_rel_slack * 100.0
    );
    v.push(match &i.stored {
        Some(b) => Verdict {
            id: "stored_jobs_bounded",
            objective: obj,
            measured: format!(
                "{:+.2} jobs/s, {:+.1} over the window (mean {:.1})",
                b.slope_per_s, b.projected_growth, b.mean
            ),
            source: format!("GET /health, {} samples in the measured window", b.samples),
            status: if b.bounded {
                Status::Pass
            } else {
                Status::Fail
            },
        },
        None => na(
            "stored_jobs_bounded",
            obj,
            "fewer than 3 health samples with stored_jobs",
        ),
    });
    v
}

pub fn fmt_dur(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{secs:.3}s")
    } else if secs >= 1e-3 {
        format!("{:.2}ms", secs * 1e3)
    } else {
        format!("{:.0}us", secs * 1e6)
    }
}

pub fn passed(verdicts: &[Verdict]) -> bool {
    verdicts.iter().all(|v| v.status != Status::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            availability: Some((999, 1000, "POST /queries".into())),
            queue_p95: Some((0.2, false, "agent".into())),
            completion_p95: Some((0.5, "lifecycle".into())),
            stored: None,
        }
    }

    #[test]
    fn verdicts_flip_with_thresholds() {
        let th = Thresholds::default();
        let v = evaluate(&th, &inputs());
        assert_eq!(
            v.iter().map(|x| x.status).collect::<Vec<_>>(),
            [
                Status::Pass,
                Status::Pass,
                Status::Pass,
                Status::NotApplicable
            ]
        );
        assert!(passed(&v));
        let strict = Thresholds {
            availability_pct: 99.95,
            queue_p95: Duration::from_millis(100),
            completion_p95: Duration::from_millis(400),
            ..th
        };
        let v = evaluate(&strict, &inputs());
        assert!(v[..3].iter().all(|x| x.status == Status::Fail));
        assert!(!passed(&v));
    }

    #[test]
    fn lower_bound_at_threshold_fails() {
        let mut i = inputs();
        i.queue_p95 = Some((1.0, true, "agent".into()));
        let v = evaluate(&Thresholds::default(), &i);
        assert_eq!(v[1].status, Status::Fail);
        assert!(v[1].measured.starts_with(">= "));
    }
}
