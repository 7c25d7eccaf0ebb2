//! Is `stored_jobs` bounded? A least-squares slope over the steady part of
//! the run, projected over that window.
//!
//! Owns: the boundedness test only. A steady workload that deletes (or lets
//! TTL expire) its jobs keeps `stored_jobs` flat; a leak shows up as a
//! positive trend. Noise must not flip the verdict, so the projected growth is
//! compared with a tolerance of max(`abs_slack` jobs, `rel_slack` x mean).

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Boundedness {
    pub samples: usize,
    /// Jobs per second, least squares.
    pub slope_per_s: f64,
    /// slope x window: how much the trend added over the steady part.
    pub projected_growth: f64,
    pub tolerance: f64,
    pub mean: f64,
    pub bounded: bool,
}

/// `points` are (seconds, stored_jobs) from the steady part of the run.
/// Returns `None` with fewer than 3 points: no honest verdict is possible.
pub fn boundedness(points: &[(f64, f64)], abs_slack: f64, rel_slack: f64) -> Option<Boundedness> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_t) * (p.1 - mean_y)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let window = points.last().unwrap().0 - points[0].0;
    let growth = slope * window;
    let tolerance = abs_slack.max(rel_slack * mean_y);
    Some(Boundedness {
        samples: points.len(),
        slope_per_s: slope,
        projected_growth: growth,
        tolerance,
        mean: mean_y,
        bounded: growth <= tolerance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_noisy_series_is_bounded() {
        let pts: Vec<(f64, f64)> = (0..40)
            .map(|i| (f64::from(i) * 0.25, 20.0 + f64::from(i % 3) * 2.0))
            .collect();
        let b = boundedness(&pts, 10.0, 0.1).unwrap();
        assert!(b.bounded, "{b:?}");
    }

    #[test]
    fn linear_growth_is_unbounded() {
        let pts: Vec<(f64, f64)> = (0..40)
            .map(|i| (f64::from(i) * 0.25, f64::from(i) * 5.0))
            .collect();
        let b = boundedness(&pts, 10.0, 0.1).unwrap();
        assert!(!b.bounded);
        assert!((b.slope_per_s - 20.0).abs() < 1e-9);
    }

    #[test]
    fn too_few_points_give_no_verdict() {
        assert_eq!(boundedness(&[(0.0, 1.0), (1.0, 2.0)], 1.0, 0.1), None);
    }
}
