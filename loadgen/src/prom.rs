//! A tolerant reader of the Prometheus text format, for the agent's
//! histograms (queue wait above all).
//!
//! Owns: parsing `*_bucket{le=..}` series into cumulative histograms (summed
//! over all other labels, e.g. per shard), differencing two scrapes, and
//! `histogram_quantile`-style interpolation. Unknown lines are skipped, never
//! fatal: the agent's metric names may change and a scrape must not abort a run.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// (upper bound `le`, cumulative count), sorted by bound; may end in +Inf.
    pub buckets: Vec<(f64, f64)>,
    /// Multiply a bound by this to get seconds (from the metric's unit suffix).
    pub to_seconds: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    pub histograms: BTreeMap<String, Histogram>,
}

fn unit_scale(name: &str) -> f64 {
    if name.ends_with("_milliseconds") || name.ends_with("_ms") {
        1e-3
    } else if name.ends_with("_microseconds") || name.ends_with("_us") {
        1e-6
    } else if name.ends_with("_nanoseconds") || name.ends_with("_ns") {
        1e-9
    } else {
        1.0
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Returns the value of label `key` in a `{a="x",b="y"}` block.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = labels;
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].trim().trim_start_matches(',').trim();
        let after = rest[eq + 1..].trim_start();
        let after = after.strip_prefix('"')?;
        // Label values may contain escaped quotes.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end?;
        if name == key {
            return Some(&after[..end]);
        }
        rest = &after[end + 1..];
    }
    None
}

pub fn parse(text: &str) -> Metrics {
    let mut raw: BTreeMap<String, BTreeMap<u64, (f64, f64)>> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, rest) = match line.find('{') {
            Some(i) => match line[i..].rfind('}') {
                Some(j) => (&line[..i], (Some(&line[i + 1..i + j]), &line[i + j + 1..])),
                None => continue,
            },
            None => match line.split_once(char::is_whitespace) {
                Some((n, r)) => (n, (None, r)),
                None => continue,
            },
        };
        let (labels, value_part) = rest;
        let Some(base) = series.strip_suffix("_bucket") else {
            continue;
        };
        let Some(le) = labels.and_then(|l| label(l, "le")).and_then(parse_value) else {
            continue;
        };
        let Some(v) = value_part.split_whitespace().next().and_then(parse_value) else {
            continue;
        };
        let entry = raw.entry(base.to_string()).or_default();
        // Key by the bound's bits so equal bounds from different label sets sum.
        let slot = entry.entry(le.to_bits()).or_insert((le, 0.0));
        slot.1 += v;
    }
    let histograms = raw
        .into_iter()
        .map(|(name, b)| {
            let mut buckets: Vec<(f64, f64)> = b.into_values().collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let to_seconds = unit_scale(&name);
            (
                name,
                Histogram {
                    buckets,
                    to_seconds,
                },
            )
        })
        .collect();
    Metrics { histograms }
}

impl Metrics {
    /// The agent's queue-wait histogram: the first whose name mentions both
    /// "queue" and "wait" (e.g. `agent_queue_wait_seconds`).
    pub fn queue_wait(&self) -> Option<(&str, &Histogram)> {
        self.histograms
            .iter()
            .find(|(n, _)| {
                let n = n.to_ascii_lowercase();
                n.contains("queue") && n.contains("wait")
            })
            .map(|(n, h)| (n.as_str(), h))
    }
}

impl Histogram {
    pub fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.1)
    }

    /// Observations made between `earlier` and `self` (same bucket layout;
    /// bounds missing from `earlier` count from zero).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|&(le, c)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|b| b.0 == le)
                    .map_or(0.0, |b| b.1);
                (le, (c - before).max(0.0))
            })
            .collect();
        Histogram {
            buckets,
            to_seconds: self.to_seconds,
        }
    }

    /// Quantile `q` in seconds, interpolated linearly inside the bucket as
    /// Prometheus' `histogram_quantile` does. The bool is true when the rank
    /// falls in the +Inf bucket, so the value is only a lower bound.
    pub fn quantile_seconds(&self, q: f64) -> Option<(f64, bool)> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut prev_le = 0.0;
        let mut prev_c = 0.0;
        for &(le, c) in &self.buckets {
            if c >= rank && c > prev_c {
                if le.is_infinite() {
                    return Some((prev_le * self.to_seconds, true));
                }
                let frac = (rank - prev_c) / (c - prev_c);
                return Some(((prev_le + (le - prev_le) * frac) * self.to_seconds, false));
            }
            prev_le = if le.is_finite() { le } else { prev_le };
            prev_c = c;
        }
        Some((prev_le * self.to_seconds, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = r#"# HELP agent_queue_wait_seconds Time jobs spent QUEUED.
# TYPE agent_queue_wait_seconds histogram
agent_queue_wait_seconds_bucket{shard="0",le="0.001"} 5
agent_queue_wait_seconds_bucket{shard="0",le="0.01"} 8
agent_queue_wait_seconds_bucket{shard="0",le="+Inf"} 10
agent_queue_wait_seconds_bucket{shard="1",le="0.001"} 5
agent_queue_wait_seconds_bucket{shard="1",le="0.01"} 8
agent_queue_wait_seconds_bucket{shard="1",le="+Inf"} 10
agent_queue_wait_seconds_sum 0.5
agent_queue_wait_seconds_count 20
agent_request_duration_ms_bucket{route="GET /health",le="1"} 3
agent_stored_jobs 4
garbage line without value
weird{le="oops"} 1
"#;

    #[test]
    fn sums_label_sets_and_finds_queue_wait() {
        let m = parse(SCRAPE);
        let (name, h) = m.queue_wait().unwrap();
        assert_eq!(name, "agent_queue_wait_seconds");
        assert_eq!(
            h.buckets,
            vec![(0.001, 10.0), (0.01, 16.0), (f64::INFINITY, 20.0)]
        );
        assert_eq!(m.histograms["agent_request_duration_ms"].to_seconds, 1e-3);
        assert!(!m.histograms.contains_key("weird"));
    }

    #[test]
    fn quantiles_interpolate_and_flag_inf() {
        let h = parse(SCRAPE).queue_wait().unwrap().1.clone();
        let (p25, inf) = h.quantile_seconds(0.25).unwrap();
        assert!(!inf);
        assert!((p25 - 0.0005).abs() < 1e-12, "{p25}");
        let (p95, inf) = h.quantile_seconds(0.95).unwrap();
        assert!(inf);
        assert_eq!(p95, 0.01);
    }

    #[test]
    fn difference_of_two_scrapes() {
        let a = parse("q_wait_bucket{le=\"1\"} 2\nq_wait_bucket{le=\"+Inf\"} 2\n");
        let b = parse("q_wait_bucket{le=\"1\"} 2\nq_wait_bucket{le=\"+Inf\"} 7\n");
        let d = b.histograms["q_wait"].since(&a.histograms["q_wait"]);
        assert_eq!(d.buckets, vec![(1.0, 0.0), (f64::INFINITY, 5.0)]);
        assert_eq!(d.quantile_seconds(0.5), Some((1.0, true)));
        assert_eq!(parse("").queue_wait(), None);
    }
}
