//! Drives one load run: worker threads, each with its own current-thread
//! tokio runtime and connection pool, open-loop (a fixed schedule of intended
//! start times) or closed-loop (N operations always in flight).
//!
//! Owns: the schedule, the warm-up and measured window, draining in-flight
//! operations at the end, and setting up/tearing down the jobs the `status`
//! scenario reads. Workers share nothing mutable but a few atomic counters for
//! the progress bar, so no worker ever waits on another.

use crate::http::request::{build, Auth};
use crate::http::{Conn, Pool, Target};
use crate::ops::{OpEnv, OpSpec, Window, Worker};
use crate::prom::Metrics;
use crate::rng::Rng;
use crate::sampler::{self, HealthSample};
use crate::scenario::{Kind, Mix};
use crate::stats::Recorder;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Operations start on a fixed schedule at this many per second.
    Open { rate: f64 },
    /// `connections` operations are always in flight.
    Closed,
}

pub struct RunConfig {
    pub env: Arc<OpEnv>,
    pub mix: Mix,
    pub mode: Mode,
    /// Cap on connections (open loop) or the concurrency (closed loop).
    pub connections: usize,
    pub threads: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub seed: u64,
    pub sample_interval: Duration,
    pub drain_timeout: Duration,
    /// Jobs to create for the `status` scenario.
    pub status_jobs: usize,
}

#[derive(Debug, Error)]
pub enum RunError {
    #[error("agent at {addr} is not reachable: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("could not prepare jobs for the status scenario: {0}")]
    StatusSetup(String),
    #[error("invalid run settings: {0}")]
    Settings(String),
}

/// Live counters for the progress bar.
#[derive(Default)]
pub struct Live {
    pub done: AtomicU64,
    pub failed: AtomicU64,
}

pub struct RunOutput {
    pub recorder: Recorder,
    pub tick: Duration,
    pub samples: Vec<HealthSample>,
    pub sample_errors: u64,
    pub metrics_start: Option<Metrics>,
    pub metrics_end: Option<Metrics>,
    pub connects: u64,
    pub wall: Duration,
    /// Wall-clock time (ms since the Unix epoch) the measured window began,
    /// to line the report's times up with events outside loadgen.
    pub window_start_unix_ms: f64,
}

/// Timeline resolution: about 60 points per run, between 100 ms and 1 s.
pub fn tick_for(duration: Duration) -> Duration {
    (duration / 60).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

pub fn run(
    cfg: &RunConfig,
    live: &Arc<Live>,
    on_tick: &mut dyn FnMut(Duration),
) -> Result<RunOutput, RunError> {
    if cfg.threads == 0 || cfg.connections == 0 {
        return Err(RunError::Settings(
            "threads and connections must be at least 1".into(),
        ));
    }
    if let Mode::Open { rate } = cfg.mode {
        if !(rate > 0.0 && rate.is_finite()) {
            return Err(RunError::Settings(format!(
                "rate must be positive, got {rate}"
            )));
        }
    }
    let target = cfg.env.target.clone();
    preflight(&target)?;
    let env = cfg.env.clone();
    let created = if cfg.mix.contains(Kind::Status) && env.status_ids.get().is_none() {
        let ids = setup_status_jobs(&env, cfg.status_jobs)?;
        let _ = env.status_ids.set(ids.clone());
        ids
    } else {
        Vec::new()
    };
    let threads = cfg.threads.min(cfg.connections);
    let t0 = Instant::now() + Duration::from_millis(50);
    let tick = tick_for(cfg.duration);
    let window = Window {
        start: t0 + cfg.warmup,
        end: t0 + cfg.warmup + cfg.duration,
        tick,
    };
    let window_start_unix_ms = {
        let (now, wall) = (Instant::now(), std::time::SystemTime::now());
        let unix = wall
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        (unix + window.start.saturating_duration_since(now).as_secs_f64()) * 1e3
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sampler::spawn(
        target.clone(),
        cfg.sample_interval,
        window.start,
        stop.clone(),
    );
    let mut handles = Vec::with_capacity(threads);
    for w in 0..threads {
        let env = env.clone();
        let mix = cfg.mix.clone();
        let live = live.clone();
        // Split the connection budget as evenly as possible.
        let conns = cfg.connections / threads + usize::from(w < cfg.connections % threads);
        let spec = WorkerSpec {
            index: w,
            threads,
            mode: cfg.mode,
            connections: conns,
            seed: cfg.seed,
            t0,
            window,
            drain: cfg.drain_timeout,
        };
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadgen-w{w}"))
                .spawn(move || worker_main(spec, env, mix, live))
                .expect("spawn worker thread"),
        );
    }
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        on_tick(t0.elapsed());
    }
    let mut recorder = Recorder::default();
    let mut connects = 0;
    for h in handles {
        let (rec, c) = h.join().expect("worker thread panicked");
        recorder.merge(rec);
        connects += c;
    }
    let wall = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let s = sampler.join().expect("sampler thread panicked");
    let metrics_end = block_on(async {
        let mut c = None;
        sampler::scrape(&mut c, &target).await
    });
    if !created.is_empty() {
        teardown_jobs(&env, &created);
    }
    Ok(RunOutput {
        recorder,
        tick,
        samples: s.samples,
        sample_errors: s.errors,
        metrics_start: s.metrics_at_start,
        metrics_end,
        connects,
        wall,
        window_start_unix_ms,
    })
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

fn preflight(target: &Target) -> Result<(), RunError> {
    let r = block_on(async {
        let mut c = None;
        sampler::get(&mut c, target, "/health", Duration::from_secs(5)).await
    });
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err(RunError::Unreachable {
            addr: target.addr.to_string(),
            reason: e.to_string(),
        }),
    }
}

/// Submits `n` jobs and waits for each to be terminal, so `status` reads hit
/// settled jobs the way a gateway's repeated polls of finished work do.
fn setup_status_jobs(env: &OpEnv, n: usize) -> Result<Vec<String>, RunError> {
    let fail = |s: String| RunError::StatusSetup(s);
    block_on(async {
        let mut conn = Some(
            Conn::connect(env.target.addr)
                .await
                .map_err(|e| fail(e.to_string()))?,
        );
        let mut ids = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let stmt = &env.workload.statements[i % env.workload.statements.len()];
            let req = build(
                &env.target,
                "POST",
                "/queries",
                env.token.as_deref().map(Auth::Agent),
                None,
                Some(&stmt.body_for(i as u64)),
            );
            let c = conn.as_mut().expect("connected");
            let r = c
                .send(&req.bytes, false)
                .await
                .map_err(|e| fail(e.to_string()))?;
            if r.status != 202 {
                return Err(fail(format!(
                    "POST /queries answered {}: {}",
                    r.status,
                    String::from_utf8_lossy(r.body)
                )));
            }
            let v: serde_json::Value =
                serde_json::from_slice(r.body).map_err(|e| fail(e.to_string()))?;
            let id = v["query_id"]
                .as_str()
                .ok_or_else(|| fail("no query_id in submit response".into()))?;
            ids.push(id.to_string());
        }
        let deadline = Instant::now() + env.job_timeout;
        for id in &ids {
            loop {
                let req = build(
                    &env.target,
                    "GET",
                    &format!("/queries/{id}"),
                    env.token.as_deref().map(Auth::Agent),
                    None,
                    None,
                );
                let c = conn.as_mut().expect("connected");
                let r = c
                    .send(&req.bytes, false)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let v: serde_json::Value =
                    serde_json::from_slice(r.body).map_err(|e| fail(e.to_string()))?;
                if matches!(
                    v["status"].as_str(),
                    Some("SUCCEEDED" | "FAILED" | "CANCELED")
                ) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(fail(format!(
                        "job {id} not terminal within {:?}",
                        env.job_timeout
                    )));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(ids)
    })
}

fn teardown_jobs(env: &OpEnv, ids: &[String]) {
    block_on(async {
        let mut conn = None;
        for id in ids {
            if conn.as_ref().is_none_or(|c: &Conn| !c.is_open()) {
                conn = Conn::connect(env.target.addr).await.ok();
            }
            let Some(c) = conn.as_mut() else { return };
            let req = build(
                &env.target,
                "DELETE",
                &format!("/queries/{id}"),
                env.token.as_deref().map(Auth::Agent),
                None,
                None,
            );
            // Best effort: jobs left behind expire by TTL anyway.
            let _ = tokio::time::timeout(Duration::from_secs(5), c.send(&req.bytes, false)).await;
        }
    });
}

/// Draws each operation's kind and statement from the worker's seeded RNG.
struct Planner {
    rng: Rng,
    seq: u64,
    worker: usize,
    threads: usize,
}

impl Planner {
    fn next(&mut self, mix: &Mix, env: &OpEnv, intended: Instant, measured: bool) -> OpSpec {
        let kind = mix.pick(&mut self.rng);
        let statement = match kind {
            Kind::Execute | Kind::Lifecycle | Kind::Gateway => {
                env.workload.pick_index(&mut self.rng)
            }
            _ => 0,
        };
        let n_status = env.status_ids.get().map_or(0, Vec::len);
        let status_index = if kind == Kind::Status && n_status > 0 {
            self.rng.below(n_status as u64) as usize
        } else {
            0
        };
        self.seq += 1;
        OpSpec {
            kind,
            intended,
            measured,
            statement,
            status_index,
            seq: self.seq,
            worker: self.worker,
            // Worker w numbers w, w+T, w+2T, ...: no two workers collide.
            unique: self.seq * self.threads as u64 + self.worker as u64,
        }
    }
}

struct WorkerSpec {
    index: usize,
    threads: usize,
    mode: Mode,
    connections: usize,
    seed: u64,
    t0: Instant,
    window: Window,
    drain: Duration,
}

/// Operations in flight on this worker, so anything still running at the
/// drain deadline is counted as a failure (with the time it had been
/// waiting) instead of vanishing.
#[derive(Default)]
struct InFlight {
    total: Cell<u64>,
    /// Measured operations in flight: (worker seq) -> (kind, intended start).
    measured: RefCell<HashMap<u64, (Kind, Instant)>>,
}

impl InFlight {
    /// Called before an operation is spawned, so a drain that starts
    /// before the task first runs still waits for (or counts) it.
    fn begin(&self, op: &OpSpec) {
        self.total.set(self.total.get() + 1);
        if op.measured {
            self.measured
                .borrow_mut()
                .insert(op.seq, (op.kind, op.intended));
        }
    }

    /// Runs an operation begun with `begin` and updates the counters.
    async fn run(&self, worker: &Worker, live: &Live, op: OpSpec) {
        let (seq, measured) = (op.seq, op.measured);
        let ok = worker.run(op).await;
        self.total.set(self.total.get() - 1);
        if measured {
            self.measured.borrow_mut().remove(&seq);
            live.done.fetch_add(1, Ordering::Relaxed);
            if !ok {
                live.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Charges every operation still running to the recorder: a failure
    /// `unfinished at end of run`, with its latency so far (a lower bound)
    /// in the corrected histogram, so the percentiles cannot hide it, and
    /// in the failure log.
    fn charge_unfinished(&self, rec: &mut Recorder, window_start: Instant) {
        const LABEL: &str = "unfinished at end of run";
        let now = Instant::now();
        let ms = |t: Instant| crate::sampler::signed_secs(t, window_start) * 1e3;
        for (_, (kind, intended)) in self.measured.borrow_mut().drain() {
            let s = rec.op(kind.name());
            *s.outcomes.failed.entry(LABEL.into()).or_default() += 1;
            crate::stats::record(&mut s.corrected, now.saturating_duration_since(intended));
            rec.failure(crate::stats::FailureEvent {
                kind: kind.name(),
                label: LABEL.into(),
                intended_ms: ms(intended),
                sent_ms: None,
                done_ms: ms(now),
            });
        }
    }
}

fn worker_main(spec: WorkerSpec, env: Arc<OpEnv>, mix: Mix, live: Arc<Live>) -> (Recorder, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let pool = Rc::new(Pool::new(env.target.addr, spec.connections));
    let rec = Rc::new(RefCell::new(Recorder::default()));
    let worker = Rc::new(Worker {
        env: env.clone(),
        pool: pool.clone(),
        rec: rec.clone(),
        window: spec.window,
    });
    let inflight = Rc::new(InFlight::default());
    let planner = Rc::new(RefCell::new(Planner {
        rng: Rng::for_worker(spec.seed, spec.index),
        seq: 0,
        worker: spec.index,
        threads: spec.threads,
    }));
    local.block_on(&rt, async {
        let next_spec = |intended: Instant, measured: bool| {
            planner.borrow_mut().next(&mix, &env, intended, measured)
        };
        tokio::time::sleep_until(spec.t0.into()).await;
        match spec.mode {
            Mode::Open { rate } => {
                // Worker w owns every threads-th slot of one global schedule,
                // so the union of all workers is evenly spaced at `rate`.
                let interval = 1.0 / rate;
                let mut k: u64 = 0;
                loop {
                    let slot = k * spec.threads as u64 + spec.index as u64;
                    let intended = spec.t0 + Duration::from_secs_f64(slot as f64 * interval);
                    if intended >= spec.window.end {
                        break;
                    }
                    if intended > Instant::now() {
                        tokio::time::sleep_until(intended.into()).await;
                    }
                    let op = next_spec(intended, intended >= spec.window.start);
                    inflight.begin(&op);
                    let (worker, inflight, live) = (worker.clone(), inflight.clone(), live.clone());
                    tokio::task::spawn_local(async move { inflight.run(&worker, &live, op).await });
                    k += 1;
                }
            }
            Mode::Closed => {
                // Each slot starts its next operation as soon as its last one
                // ends: `connections` operations always in flight.
                for _ in 0..spec.connections {
                    let worker = worker.clone();
                    let inflight = inflight.clone();
                    let live = live.clone();
                    let planner = planner.clone();
                    let mix = mix.clone();
                    let env = env.clone();
                    let end = spec.window.end;
                    let start = spec.window.start;
                    tokio::task::spawn_local(async move {
                        loop {
                            let now = Instant::now();
                            if now >= end {
                                break;
                            }
                            let op = planner.borrow_mut().next(&mix, &env, now, now >= start);
                            inflight.begin(&op);
                            inflight.run(&worker, &live, op).await;
                        }
                    });
                }
                tokio::time::sleep_until(spec.window.end.into()).await;
            }
        }
        let deadline = Instant::now() + spec.drain;
        while inflight.total.get() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let mut r = rec.borrow_mut();
    inflight.charge_unfinished(&mut r, spec.window.start);
    drop(r);
    let connects = pool.connects();
    drop(local);
    drop(worker);
    let rec = Rc::try_unwrap(rec)
        .map(RefCell::into_inner)
        .unwrap_or_else(|rc| std::mem::take(&mut *rc.borrow_mut()));
    (rec, connects)
}
