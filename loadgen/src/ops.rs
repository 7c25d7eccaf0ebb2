//! The operations of each scenario, run on a worker's connection pool.
//!
//! Owns: the request sequence of health, execute, lifecycle and status
//! operations against an agent and of gateway queries (`POST /v1/query`,
//! bearer token), what counts as success, and recording every request's
//! outcome by route and status/error code (and each failed operation's
//! times, for the failure log). Every operation ends in exactly one success
//! or one labelled failure, so sent = succeeded + failed holds. Speaks the
//! servers' HTTP contracts only: no crate of the agent or the gateway.
//! Never blocks the thread (all waits are async) and never retries a request:
//! a retry would hide the failure it answers.

use crate::http::request::{build, encode_query_value, Auth, RequestBytes};
use crate::http::{HttpError, Pool, Target};
use crate::scenario::Kind;
use crate::stats::{record, FailureEvent, Recorder};
use crate::workload::Workload;
use serde::Deserialize;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const ROUTE_HEALTH: &str = "GET /health";
pub const ROUTE_EXECUTE: &str = "POST /execute";
pub const ROUTE_SUBMIT: &str = "POST /queries";
pub const ROUTE_STATUS: &str = "GET /queries/{id}";
pub const ROUTE_RESULTS: &str = "GET /queries/{id}/results";
pub const ROUTE_DELETE: &str = "DELETE /queries/{id}";
/// The gateway's one-shot query route.
pub const ROUTE_GATEWAY_QUERY: &str = "POST /v1/query";

/// Whether the agent honours `?wait_ms=` on GET /queries/{id}.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LongPollMode {
    /// Try it; fall back to polling once the agent is seen to ignore it.
    Auto,
    On,
    Off,
}

/// Long-poll support as learned during the run (shared by all workers).
#[derive(Debug, Default)]
pub struct LongPoll {
    /// 0 unknown, 1 supported, 2 unsupported.
    state: AtomicU8,
    early_returns: AtomicU32,
}

/// Early non-terminal returns seen before concluding the agent ignores wait_ms.
const EARLY_RETURNS_TO_GIVE_UP: u32 = 3;

impl LongPoll {
    pub fn new(mode: LongPollMode) -> LongPoll {
        let state = match mode {
            LongPollMode::Auto => 0,
            LongPollMode::On => 1,
            LongPollMode::Off => 2,
        };
        LongPoll {
            state: AtomicU8::new(state),
            early_returns: AtomicU32::new(0),
        }
    }
    fn use_wait(&self) -> bool {
        self.state.load(Ordering::Relaxed) != 2
    }
    fn held(&self) {
        let _ = self
            .state
            .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed);
    }
    fn returned_early(&self) {
        if self.early_returns.fetch_add(1, Ordering::Relaxed) + 1 >= EARLY_RETURNS_TO_GIVE_UP {
            let _ = self
                .state
                .compare_exchange(0, 2, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
    pub fn describe(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            1 => "supported",
            2 => "unsupported (polling)",
            _ => "not observed (every wait ended at a terminal status)",
        }
    }
}

/// What every operation needs, shared read-only by all workers.
pub struct OpEnv {
    pub target: Target,
    /// Sent as `X-Agent-Token` to an agent, as `Authorization: Bearer` to a
    /// gateway (`gateway` operations).
    pub token: Option<String>,
    pub workload: Workload,
    /// Per-request timeout (long-polls get their wait on top).
    pub timeout: Duration,
    /// Give up on a lifecycle job that is not terminal after this long.
    pub job_timeout: Duration,
    pub poll_interval: Duration,
    pub wait_ms: u64,
    pub long_poll: LongPoll,
    pub page_size: usize,
    pub delete_jobs: bool,
    /// Jobs the `status` scenario reads; set once before the workers start.
    pub status_ids: std::sync::OnceLock<Vec<String>>,
    pub run_nonce: String,
    pub health_request: RequestBytes,
}

/// Where the measured window is, for placing results on the timeline.
#[derive(Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
    pub tick: Duration,
}

/// One operation to run.
pub struct OpSpec {
    pub kind: Kind,
    pub intended: Instant,
    pub measured: bool,
    /// Index into the workload's statements (execute, lifecycle).
    pub statement: usize,
    /// Index into `status_ids` (status).
    pub status_index: usize,
    pub seq: u64,
    pub worker: usize,
    /// Unique among the run's operations: replaces `{seq}` in the SQL.
    pub unique: u64,
}

/// A failed request: its route and outcome label.
struct Fail {
    route: &'static str,
    label: String,
}

impl Fail {
    fn op_label(&self) -> String {
        format!("{} {}", self.route, self.label)
    }
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow)]
    code: Option<&'a str>,
}

fn status_label(status: u16, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.code)
    {
        Some(code) => format!("{status} {code}"),
        None => status.to_string(),
    }
}

#[derive(Deserialize)]
struct Submitted {
    query_id: String,
}

#[derive(Deserialize)]
struct JobStatus<'a> {
    #[serde(borrow)]
    status: &'a str,
}

/// The parts of a gateway's `POST /v1/query` answer loadgen keeps. The whole
/// body must parse as JSON: a stream the engine cut after the head went out
/// ends without its closing brace (docs/gateway.md), so it is never taken
/// for an answer.
#[derive(Deserialize)]
struct GatewayAnswer {
    endpoint: Option<String>,
    row_count: Option<u64>,
}

#[derive(Deserialize)]
struct ResultsPage {
    rows: Vec<serde::de::IgnoredAny>,
    row_count: u64,
    next_page_token: Option<String>,
}

/// The label of a success, without allocating for the usual codes.
fn ok_label(status: u16) -> std::borrow::Cow<'static, str> {
    match status {
        200 => "200".into(),
        202 => "202".into(),
        other => other.to_string().into(),
    }
}

fn terminal(s: &str) -> bool {
    matches!(s, "SUCCEEDED" | "FAILED" | "CANCELED")
}

/// One worker's context for running operations.
pub struct Worker {
    pub env: Arc<OpEnv>,
    pub pool: Rc<Pool>,
    pub rec: Rc<RefCell<Recorder>>,
    pub window: Window,
}

struct OpRun<'w> {
    w: &'w Worker,
    measured: bool,
    first_send: Option<Instant>,
}

impl OpRun<'_> {
    /// One request/response on a pooled connection. `expect` is the success
    /// status; `parse` turns a successful body into the value the operation
    /// needs (a parse failure is a failed request labelled "bad-body").
    async fn exchange<T>(
        &mut self,
        route: &'static str,
        req: &RequestBytes,
        expect: u16,
        extra_wait: Duration,
        parse: impl FnOnce(&[u8]) -> Option<T>,
    ) -> Result<T, Fail> {
        let timeout = self.w.env.timeout + extra_wait;
        let result = async {
            let mut lease = self.w.pool.acquire().await?;
            let sent = Instant::now();
            self.first_send.get_or_insert(sent);
            let resp = match tokio::time::timeout(timeout, lease.conn().send(&req.bytes, req.head))
                .await
            {
                Ok(r) => r?,
                Err(_) => return Err(HttpError::Timeout),
            };
            let elapsed = sent.elapsed();
            if resp.status == expect {
                Ok((Ok(parse(resp.body)), elapsed))
            } else {
                Ok((Err(status_label(resp.status, resp.body)), elapsed))
            }
        }
        .await;
        let (outcome, latency, value) = match result {
            Ok((Ok(Some(v)), d)) => (ok_label(expect), Some(d), Ok(v)),
            Ok((Ok(None), d)) => {
                let l = format!("{expect} bad-body");
                (l.clone().into(), Some(d), Err(Fail { route, label: l }))
            }
            Ok((Err(l), d)) => (l.clone().into(), Some(d), Err(Fail { route, label: l })),
            Err(e) => {
                let l = e.kind().to_string();
                (l.clone().into(), None, Err(Fail { route, label: l }))
            }
        };
        if self.measured {
            self.w.rec.borrow_mut().request(route, &outcome, latency);
        }
        value
    }

    /// A request to an agent (`X-Agent-Token`).
    fn req(
        &self,
        method: &str,
        path: &str,
        rid: Option<&str>,
        body: Option<&[u8]>,
    ) -> RequestBytes {
        build(
            &self.w.env.target,
            method,
            path,
            self.w.env.token.as_deref().map(Auth::Agent),
            rid,
            body,
        )
    }
}

impl Worker {
    /// Runs one operation to its end and records it; true on success.
    pub async fn run(&self, spec: OpSpec) -> bool {
        let mut op = OpRun {
            w: self,
            measured: spec.measured,
            first_send: None,
        };
        let result = match spec.kind {
            Kind::Health => op
                .exchange(
                    ROUTE_HEALTH,
                    &self.env.health_request,
                    200,
                    Duration::ZERO,
                    |_| Some(()),
                )
                .await
                .map_err(|f| f.op_label()),
            Kind::Execute => {
                let stmt = &self.env.workload.statements[spec.statement];
                let body = stmt.body_for(spec.unique);
                let req = op.req("POST", "/execute", None, Some(&body));
                op.exchange(ROUTE_EXECUTE, &req, 200, Duration::ZERO, |_| Some(()))
                    .await
                    .map_err(|f| f.op_label())
            }
            Kind::Status => match self
                .env
                .status_ids
                .get()
                .and_then(|ids| ids.get(spec.status_index))
            {
                Some(id) => {
                    let req = op.req("GET", &format!("/queries/{id}"), None, None);
                    op.exchange(ROUTE_STATUS, &req, 200, Duration::ZERO, |_| Some(()))
                        .await
                        .map_err(|f| f.op_label())
                }
                None => Err("no status jobs available".to_string()),
            },
            Kind::Lifecycle => self.lifecycle(&mut op, &spec).await,
            Kind::Gateway => self.gateway(&mut op, &spec).await,
        };
        let done = Instant::now();
        let win = self.window;
        let first = op.first_send.unwrap_or(done);
        let mut rec = self.rec.borrow_mut();
        // Rates count every operation that started or completed inside the
        // window, warm-up ones included, so a window not much longer than
        // one operation is not under-counted at its end.
        if first >= win.start && first < win.end {
            rec.started_in_window += 1;
            rec.tick(slot(first, win)).started += 1;
        }
        if done >= win.start {
            if done < win.end {
                rec.completed_in_window += 1;
            }
            let t = rec.tick(slot(done, win));
            t.completed += 1;
            if result.is_err() {
                t.failed += 1;
            }
            if spec.measured {
                record(
                    &mut t.latency,
                    done.saturating_duration_since(spec.intended),
                );
            }
        }
        if !spec.measured {
            return result.is_ok();
        }
        if let Err(label) = &result {
            let ms = |t: Instant| crate::sampler::signed_secs(t, win.start) * 1e3;
            rec.failure(FailureEvent {
                kind: spec.kind.name(),
                label: label.clone(),
                intended_ms: ms(spec.intended),
                sent_ms: op.first_send.map(ms),
                done_ms: ms(done),
            });
        }
        rec.lag(first.saturating_duration_since(spec.intended));
        let stats = rec.op(spec.kind.name());
        match &result {
            Ok(()) => stats.outcomes.succeeded += 1,
            Err(label) => *stats.outcomes.failed.entry(label.clone()).or_default() += 1,
        }
        record(
            &mut stats.corrected,
            done.saturating_duration_since(spec.intended),
        );
        record(
            &mut stats.uncorrected,
            done.saturating_duration_since(first),
        );
        result.is_ok()
    }

    /// `POST /v1/query` to a gateway: success is 200 with a whole JSON
    /// answer; which endpoint answered and its row count are kept.
    async fn gateway(&self, op: &mut OpRun<'_>, spec: &OpSpec) -> Result<(), String> {
        let env = &self.env;
        let body = env.workload.statements[spec.statement].body_for(spec.unique);
        let req = build(
            &env.target,
            "POST",
            "/v1/query",
            env.token.as_deref().map(Auth::Bearer),
            None,
            Some(&body),
        );
        let answer = op
            .exchange(ROUTE_GATEWAY_QUERY, &req, 200, Duration::ZERO, |b| {
                serde_json::from_slice::<GatewayAnswer>(b).ok()
            })
            .await
            .map_err(|f| f.op_label())?;
        if op.measured {
            let mut rec = self.rec.borrow_mut();
            rec.rows_fetched += answer.row_count.unwrap_or(0);
            rec.answered_by(answer.endpoint.as_deref().unwrap_or("(none)"));
        }
        Ok(())
    }

    async fn lifecycle(&self, op: &mut OpRun<'_>, spec: &OpSpec) -> Result<(), String> {
        let env = &self.env;
        let body = env.workload.statements[spec.statement].body_for(spec.unique);
        let rid = format!("lg-{}-{}-{}", env.run_nonce, spec.worker, spec.seq);
        let req = op.req("POST", "/queries", Some(&rid), Some(&body));
        let t_submit = Instant::now();
        let id = op
            .exchange(ROUTE_SUBMIT, &req, 202, Duration::ZERO, |b| {
                serde_json::from_slice::<Submitted>(b)
                    .ok()
                    .map(|s| s.query_id)
            })
            .await
            .map_err(|f| f.op_label())?;
        let accepted = Instant::now();
        let mut phases: Vec<(&'static str, Duration)> = vec![("submit", accepted - t_submit)];
        let outcome = self.wait_fetch(op, spec, &id, accepted, &mut phases).await;
        if env.delete_jobs {
            let t = Instant::now();
            let req = op.req("DELETE", &format!("/queries/{id}"), None, None);
            let del = op
                .exchange(ROUTE_DELETE, &req, 200, Duration::ZERO, |_| Some(()))
                .await;
            phases.push(("delete", t.elapsed()));
            if let (Ok(()), Err(f)) = (&outcome, del) {
                return self.finish(op, phases, Err(f.op_label()));
            }
        }
        self.finish(op, phases, outcome)
    }

    fn finish(
        &self,
        op: &OpRun<'_>,
        phases: Vec<(&'static str, Duration)>,
        r: Result<(), String>,
    ) -> Result<(), String> {
        if op.measured {
            let mut rec = self.rec.borrow_mut();
            for (name, d) in phases {
                rec.phase(name, d);
            }
        }
        r
    }

    /// Waits for the job to finish (long-poll or poll), then pages through
    /// its results. Pushes the phase timings it measured.
    async fn wait_fetch(
        &self,
        op: &mut OpRun<'_>,
        spec: &OpSpec,
        id: &str,
        accepted: Instant,
        phases: &mut Vec<(&'static str, Duration)>,
    ) -> Result<(), String> {
        let env = &self.env;
        let mut last = "QUEUED".to_string();
        let mut left_queue: Option<Instant> = None;
        let final_status = loop {
            let wait = env.long_poll.use_wait();
            let path = if wait {
                format!("/queries/{id}?wait_ms={}", env.wait_ms)
            } else {
                format!("/queries/{id}")
            };
            let extra = if wait {
                Duration::from_millis(env.wait_ms)
            } else {
                Duration::ZERO
            };
            let req = op.req("GET", &path, None, None);
            let t = Instant::now();
            let status = op
                .exchange(ROUTE_STATUS, &req, 200, extra, |b| {
                    serde_json::from_slice::<JobStatus>(b)
                        .ok()
                        .map(|s| s.status.to_string())
                })
                .await
                .map_err(|f| f.op_label())?;
            let now = Instant::now();
            if status != "QUEUED" && left_queue.is_none() {
                left_queue = Some(now);
            }
            if terminal(&status) {
                break status;
            }
            if wait {
                let held = now - t;
                if held >= extra / 2 {
                    env.long_poll.held();
                } else if status == last {
                    // Came back at once with nothing new: the agent may ignore
                    // wait_ms. Pace ourselves like a poller meanwhile.
                    env.long_poll.returned_early();
                    tokio::time::sleep(env.poll_interval).await;
                }
            } else {
                tokio::time::sleep(env.poll_interval).await;
            }
            last = status;
            if accepted.elapsed() > env.job_timeout {
                return Err("job timeout".to_string());
            }
        };
        let terminal_at = Instant::now();
        phases.push(("to_terminal", terminal_at - accepted));
        phases.push((
            "completion",
            terminal_at.saturating_duration_since(spec.intended),
        ));
        if op.measured {
            if let Some(q) = left_queue {
                self.rec.borrow_mut().queued(q - accepted);
            }
        }
        if final_status != "SUCCEEDED" {
            return Err(format!("job {final_status}"));
        }
        let mut token: Option<String> = None;
        let mut rows = 0u64;
        let t = Instant::now();
        let expected = loop {
            let mut path = format!("/queries/{id}/results?max_results={}", env.page_size);
            if let Some(tok) = &token {
                path.push_str("&page_token=");
                path.push_str(&encode_query_value(tok));
            }
            let req = op.req("GET", &path, None, None);
            let page = op
                .exchange(ROUTE_RESULTS, &req, 200, Duration::ZERO, |b| {
                    serde_json::from_slice::<ResultsPage>(b).ok()
                })
                .await
                .map_err(|f| f.op_label())?;
            rows += page.rows.len() as u64;
            match page.next_page_token {
                Some(next) if !page.rows.is_empty() => token = Some(next),
                _ => break page.row_count,
            }
        };
        phases.push(("fetch", t.elapsed()));
        if op.measured {
            self.rec.borrow_mut().rows_fetched += rows;
        }
        if rows != expected {
            return Err(format!("rows fetched {rows} != row_count {expected}"));
        }
        Ok(())
    }
}

fn slot(t: Instant, w: Window) -> usize {
    let since = t.saturating_duration_since(w.start);
    (since.as_nanos() / w.tick.as_nanos().max(1)) as usize
}
