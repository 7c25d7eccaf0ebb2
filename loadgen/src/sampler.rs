//! Samples the agent's own signals through a run: GET /health at a fixed
//! interval, and GET /metrics (when the agent has it) at the start and the
//! end of the measured window.
//!
//! Owns: its one connection and thread, and tolerant parsing of the health
//! fields (a missing field is `None`, never an error). It never adds load
//! beyond one request per interval.

use crate::http::request::build;
use crate::http::{Conn, HttpError, Target};
use crate::prom::{self, Metrics};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HealthSample {
    /// Seconds since the measured window began (negative during warm-up).
    pub t: f64,
    pub queued_jobs: Option<f64>,
    pub running_jobs: Option<f64>,
    pub active_queries: Option<f64>,
    pub stored_jobs: Option<f64>,
    pub completed_jobs: Option<f64>,
    pub memory_used_mb: Option<f64>,
}

pub fn parse_health(t: f64, body: &[u8]) -> Option<HealthSample> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let f = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
    Some(HealthSample {
        t,
        queued_jobs: f("queued_jobs"),
        running_jobs: f("running_jobs"),
        active_queries: f("active_queries"),
        stored_jobs: f("stored_jobs"),
        completed_jobs: f("completed_jobs"),
        memory_used_mb: f("memory_used_mb"),
    })
}

/// One GET on a fresh or kept connection; reconnects once on a stale one.
pub async fn get(
    conn: &mut Option<Conn>,
    target: &Target,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), HttpError> {
    let req = build(target, "GET", path, None, None, None);
    for attempt in 0..2 {
        if conn.as_ref().is_none_or(|c| !c.is_open()) {
            *conn = Some(Conn::connect(target.addr).await?);
        }
        let c = conn.as_mut().expect("just connected");
        match tokio::time::timeout(timeout, c.send(&req.bytes, false)).await {
            Ok(Ok(r)) => return Ok((r.status, r.body.to_vec())),
            Ok(Err(e)) if attempt == 0 && matches!(e, HttpError::Closed | HttpError::Io(_)) => {
                *conn = None;
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(HttpError::Timeout),
        }
    }
    Err(HttpError::Closed)
}

/// Fetches and parses /metrics; `None` when the agent has none (404) or the
/// scrape fails. A sampler must never abort a run.
pub async fn scrape(conn: &mut Option<Conn>, target: &Target) -> Option<Metrics> {
    match get(conn, target, "/metrics", Duration::from_secs(5)).await {
        Ok((200, body)) => Some(prom::parse(&String::from_utf8_lossy(&body))),
        _ => None,
    }
}

pub struct SamplerOutput {
    pub samples: Vec<HealthSample>,
    pub errors: u64,
    pub metrics_at_start: Option<Metrics>,
}

/// Runs on its own thread until `stop` is set.
pub fn spawn(
    target: Target,
    interval: Duration,
    window_start: Instant,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<SamplerOutput> {
    std::thread::Builder::new()
        .name("loadgen-sampler".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let mut conn = None;
                let mut out = SamplerOutput {
                    samples: Vec::new(),
                    errors: 0,
                    metrics_at_start: None,
                };
                let mut scraped = false;
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if !scraped && now >= window_start {
                        out.metrics_at_start = scrape(&mut conn, &target).await;
                        scraped = true;
                    }
                    let t = signed_secs(Instant::now(), window_start);
                    match get(&mut conn, &target, "/health", Duration::from_secs(5)).await {
                        Ok((200, body)) => match parse_health(t, &body) {
                            Some(s) => out.samples.push(s),
                            None => out.errors += 1,
                        },
                        _ => out.errors += 1,
                    }
                    next += interval;
                    let now = Instant::now();
                    if next < now {
                        next = now;
                    }
                    // Sleep in short steps so a stop is noticed promptly.
                    while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                        let left = next.saturating_duration_since(Instant::now());
                        tokio::time::sleep(left.min(Duration::from_millis(20))).await;
                    }
                }
                out
            })
        })
        .expect("spawn sampler thread")
}

pub fn signed_secs(t: Instant, origin: Instant) -> f64 {
    if t >= origin {
        (t - origin).as_secs_f64()
    } else {
        -(origin - t).as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_fields_are_optional() {
        let s = parse_health(1.5, br#"{"status":"ok","queued_jobs":3,"stored_jobs":10}"#).unwrap();
        assert_eq!(s.queued_jobs, Some(3.0));
        assert_eq!(s.stored_jobs, Some(10.0));
        assert_eq!(s.running_jobs, None);
        assert!(parse_health(0.0, b"not json").is_none());
    }
}
