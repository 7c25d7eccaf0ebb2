//! `loadgen capacity`: the highest offered rate at which every SLO holds.
//!
//! Owns: the search. It steps the rate up geometrically from `start` until a
//! step fails (or `max` passes), then bisects between the highest passing
//! and the lowest failing rate until they are within `precision` of each
//! other or the step budget is spent. The answer is always reported as the
//! bracket [highest pass, lowest fail]: one noisy step must not be mistaken
//! for a sharp edge. Never runs load itself; the caller supplies `run_at`.

use crate::report::RunReport;
use crate::stats::Percentiles;
use serde::Serialize;

#[derive(Debug, Clone, Copy)]
pub struct SearchConfig {
    pub start: f64,
    pub max: f64,
    /// Multiplier while stepping up (> 1).
    pub factor: f64,
    /// Stop bisecting when (fail - pass) / pass <= precision.
    pub precision: f64,
    pub max_steps: usize,
}

/// One tried rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Tried<T> {
    pub rate: f64,
    pub passed: bool,
    pub data: T,
}

pub struct Outcome<T> {
    pub steps: Vec<Tried<T>>,
    pub highest_pass: Option<f64>,
    pub lowest_fail: Option<f64>,
}

pub fn search<T, E>(
    cfg: &SearchConfig,
    mut run_at: impl FnMut(f64) -> Result<(bool, T), E>,
) -> Result<Outcome<T>, E> {
    let mut steps = Vec::new();
    let (mut lo, mut hi): (Option<f64>, Option<f64>) = (None, None);
    let mut rate = cfg.start.min(cfg.max);
    // Phase 1: step up until something fails or the ceiling passes.
    while steps.len() < cfg.max_steps {
        let (passed, data) = run_at(rate)?;
        steps.push(Tried { rate, passed, data });
        if !passed {
            hi = Some(rate);
            break;
        }
        lo = Some(rate);
        if rate >= cfg.max {
            break;
        }
        rate = (rate * cfg.factor).min(cfg.max);
    }
    // Phase 2: bisect the bracket.
    while let (Some(l), Some(h)) = (lo, hi) {
        if steps.len() >= cfg.max_steps || (h - l) / l <= cfg.precision {
            break;
        }
        let mid = (l + h) / 2.0;
        let (passed, data) = run_at(mid)?;
        steps.push(Tried {
            rate: mid,
            passed,
            data,
        });
        if passed {
            lo = Some(mid);
        } else {
            hi = Some(mid);
        }
    }
    Ok(Outcome {
        steps,
        highest_pass: lo,
        lowest_fail: hi,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub rate: f64,
    pub passed: bool,
    pub failing: Vec<String>,
    pub throughput: f64,
    /// The completion-latency distribution the SLO looks at.
    pub latency: Percentiles,
    pub report: RunReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct CapacityReport {
    pub steps: Vec<Step>,
    pub lower_bound: Option<f64>,
    pub upper_bound: Option<f64>,
    /// The highest rate at which every SLO held (= lower_bound).
    pub capacity: Option<f64>,
    /// Which SLO broke first at the lowest failing rate.
    pub first_failing: Vec<String>,
    pub summary: String,
    pub passed: bool,
}

/// The latency the completion SLO judges, for the curve.
pub fn completion_latency(r: &RunReport) -> Percentiles {
    if let Some(p) = r.phases.get("completion") {
        return p.clone();
    }
    r.ops
        .by_kind
        .values()
        .max_by_key(|k| k.sent)
        .map(|k| k.latency.clone())
        .unwrap_or_else(|| Percentiles::of(&crate::stats::new_histogram(3)))
}

pub fn step_of(rate: f64, r: RunReport) -> Step {
    Step {
        rate,
        passed: r.passed,
        failing: r
            .slos
            .iter()
            .filter(|v| v.status == crate::slo::Status::Fail)
            .map(|v| v.id.to_string())
            .collect(),
        throughput: r.throughput,
        latency: completion_latency(&r),
        report: r,
    }
}

pub fn assemble(o: Outcome<RunReport>) -> CapacityReport {
    let steps: Vec<Step> = o
        .steps
        .into_iter()
        .map(|t| step_of(t.rate, t.data))
        .collect();
    let first_failing = o
        .lowest_fail
        .and_then(|h| steps.iter().find(|s| s.rate == h))
        .map(|s| s.failing.clone())
        .unwrap_or_default();
    let summary = match (o.highest_pass, o.lowest_fail) {
        (Some(l), Some(h)) => format!(
            "{l:.1}/s (every SLO holds at {l:.1}/s; {} fails at {h:.1}/s)",
            first_failing.join(", ")
        ),
        (Some(l), None) => format!(">= {l:.1}/s (every SLO held up to the highest rate tried)"),
        (None, Some(h)) => format!(
            "< {h:.1}/s ({} fails already at the lowest rate tried)",
            first_failing.join(", ")
        ),
        (None, None) => "no step completed".to_string(),
    };
    CapacityReport {
        passed: o.highest_pass.is_some(),
        capacity: o.highest_pass,
        lower_bound: o.highest_pass,
        upper_bound: o.lowest_fail,
        first_failing,
        summary,
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SearchConfig {
        SearchConfig {
            start: 10.0,
            max: 10_000.0,
            factor: 2.0,
            precision: 0.05,
            max_steps: 30,
        }
    }

    #[test]
    fn brackets_a_sharp_edge() {
        let o = search(&cfg(), |r| Ok::<_, ()>((r <= 333.0, ()))).unwrap();
        let (l, h) = (o.highest_pass.unwrap(), o.lowest_fail.unwrap());
        assert!(l <= 333.0 && h > 333.0 && (h - l) / l <= 0.05, "{l} {h}");
        assert!(o.steps.iter().all(|s| s.passed == (s.rate <= 333.0)));
    }

    #[test]
    fn all_pass_stops_at_max_and_first_fail_stops_at_once() {
        let o = search(&cfg(), |_| Ok::<_, ()>((true, ()))).unwrap();
        assert_eq!((o.highest_pass, o.lowest_fail), (Some(10_000.0), None));
        let o = search(&cfg(), |_| Ok::<_, ()>((false, ()))).unwrap();
        assert_eq!(
            (o.highest_pass, o.lowest_fail, o.steps.len()),
            (None, Some(10.0), 1)
        );
    }

    #[test]
    fn step_budget_is_respected() {
        let c = SearchConfig {
            max_steps: 4,
            ..cfg()
        };
        let o = search(&c, |r| Ok::<_, ()>((r <= 333.0, ()))).unwrap();
        assert_eq!(o.steps.len(), 4);
        assert_eq!((o.highest_pass, o.lowest_fail), (Some(80.0), None));
        let c = SearchConfig {
            max_steps: 8,
            ..cfg()
        };
        let o = search(&c, |r| Ok::<_, ()>((r <= 333.0, ()))).unwrap();
        assert_eq!(o.steps.len(), 8);
        assert_eq!((o.highest_pass, o.lowest_fail), (Some(320.0), Some(480.0)));
    }
}
