//! The audit trail: one structured JSON log line per query (target `audit`),
//! written when the query ends, whatever the end: denied, failed, answered
//! (all rows read), canceled, deleted or expired with rows unread. Lines go
//! through a bounded, never lossy queue to a writer thread that formats and
//! writes them in batches ([`start_sink`]), so the query path neither
//! formats JSON nor wakes a thread per line.
//!
//! Owns the line's fields: `query_id` (the gateway's), `door` (`http`,
//! `pgwire`, `flight`), `user`, `groups`,
//! `tables`, `decision` (`allowed` | `denied`), `reason` (why denied, or why
//! it failed), `endpoint` and `rule` and `routing` (the resolver's decision in
//! words), `left` (every endpoint the query tried and left before the one that
//! answered, each with why), `fallback`, `outcome`, `rows`, `duration_ms`. It never logs SQL
//! text or values (they may hold what a mask hides) and never a token.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use client::resolver::{Decision, Rule, Target};

/// How a query ends when its work is stopped from outside (a job's cancel,
/// delete or expiry) while the record is held by the task that runs it: the
/// stopper says so here, then aborts the task, and the record's drop logs
/// this outcome instead of `abandoned`.
#[derive(Clone, Default)]
pub struct StopReason(Arc<OnceLock<Ending>>);

/// An outcome and its reason, for [`StopReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    pub outcome: &'static str,
    pub reason: &'static str,
}

/// Every `outcome` a line can have (`refused`: the admission queue's 429).
pub const OUTCOMES: &[&str] = &[
    "answered",
    "denied",
    "failed",
    "refused",
    "canceled",
    "deleted",
    "abandoned",
];

/// Canceled by its user (`POST /v1/queries/{id}/cancel`).
pub const CANCELED: Ending = Ending {
    outcome: "canceled",
    reason: "canceled by its user",
};
/// Deleted by its user before every row was read (`DELETE /v1/queries/{id}`).
pub const DELETED: Ending = Ending {
    outcome: "deleted",
    reason: "deleted by its user before all rows were read",
};
/// Dropped by the reaper: untouched for `JOB_TTL`.
pub const EXPIRED: Ending = Ending {
    outcome: "abandoned",
    reason: "expired: untouched for JOB_TTL before all rows were read",
};

impl StopReason {
    /// Records why the work stops; the first reason given wins.
    pub fn set(&self, e: Ending) {
        let _ = self.0.set(e);
    }
    pub fn get(&self) -> Option<Ending> {
        self.0.get().copied()
    }
}

/// A query's audit record, logged once: by [`Audit::finish`], or on drop.
pub struct Audit {
    pub query_id: String,
    /// The door the query came through.
    pub door: &'static str,
    pub user: String,
    pub groups: Vec<String>,
    pub tables: Vec<String>,
    pub endpoint: Option<String>,
    pub rule: Option<&'static str>,
    pub routing: Option<String>,
    /// Endpoints tried and left, in order ("name: why").
    pub left: Vec<String>,
    pub fallback: bool,
    pub rows: u64,
    /// What the drop of an unfinished record logs, when its stopper said.
    pub stop: StopReason,
    started: Instant,
    done: bool,
    /// The query's place in the shutdown count (see [`crate::drain`]): held
    /// as long as the record, which every door keeps to its answer's end.
    pub in_flight: Option<crate::drain::DrainGuard>,
    /// The query's count on the endpoint it runs on (the resolver weighs it
    /// when it routes others), held as long as the record.
    pub running: Option<client::resolver::Running>,
    /// The query's slot on its agent (the admission queue's), held as long
    /// as the record: its drop hands the slot to the next waiter.
    pub slot: Option<super::admission::Slot>,
    /// Time spent waiting in the admission queue.
    pub queued: Duration,
}

impl Audit {
    pub fn new(query_id: &str, user: &str, groups: &[String], door: &'static str) -> Audit {
        Audit {
            query_id: query_id.to_string(),
            door,
            user: user.to_string(),
            groups: groups.to_vec(),
            tables: Vec::new(),
            endpoint: None,
            rule: None,
            routing: None,
            left: Vec::new(),
            fallback: false,
            rows: 0,
            stop: StopReason::default(),
            started: Instant::now(),
            done: false,
            in_flight: None,
            running: None,
            slot: None,
            queued: Duration::ZERO,
        }
    }

    /// Drops the record without a line: for work that ran nothing on an
    /// engine (a statement only described).
    pub fn discard(&mut self) {
        self.done = true;
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Records the routing decision.
    pub fn routed(&mut self, d: &Decision) {
        self.endpoint = Some(match &d.target {
            Target::Remote { endpoint } => endpoint.clone(),
            Target::Local => "local".to_string(),
        });
        self.rule = Some(d.rule.as_str());
        self.fallback = d.rule == Rule::FallbackLocal;
        self.routing = Some(d.to_string());
    }

    /// Logs the line: `denied` is the refusal's reason (the query never ran);
    /// otherwise `outcome` says how it ended and `reason` why, when it failed.
    pub fn finish(&mut self, denied: Option<&str>, outcome: &str, reason: Option<&str>) {
        if self.done {
            return;
        }
        self.done = true;
        let duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let decision = if denied.is_some() {
            "denied"
        } else {
            "allowed"
        };
        let reason = denied.or(reason).unwrap_or("");
        if super::history::on() {
            super::history::offer(self.history_record(decision, outcome, reason, duration_ms));
        }
        if let Some(sink) = SINK.get() {
            // Formatted and written by the sink's thread: the query pays for
            // moving its fields into the queue, not for the JSON or the write.
            sink.send(Line {
                at: SystemTime::now(),
                query_id: std::mem::take(&mut self.query_id),
                door: self.door,
                user: std::mem::take(&mut self.user),
                groups: std::mem::take(&mut self.groups),
                tables: std::mem::take(&mut self.tables),
                decision,
                reason: reason.to_string(),
                endpoint: self.endpoint.take().unwrap_or_default(),
                rule: self.rule.unwrap_or(""),
                routing: self.routing.take().unwrap_or_default(),
                left: std::mem::take(&mut self.left),
                fallback: self.fallback,
                outcome: outcome.to_string(),
                rows: self.rows,
                duration_ms,
            });
            return;
        }
        tracing::info!(
            target: "audit",
            query_id = %self.query_id,
            door = self.door,
            user = %self.user,
            groups = %self.groups.join(","),
            tables = %self.tables.join(","),
            decision,
            reason,
            endpoint = self.endpoint.as_deref().unwrap_or(""),
            rule = self.rule.unwrap_or(""),
            routing = self.routing.as_deref().unwrap_or(""),
            left = %self.left.join("; "),
            fallback = self.fallback,
            outcome,
            rows = self.rows,
            duration_ms,
            "query"
        );
    }
}

impl Audit {
    /// The record the query history keeps of this line.
    fn history_record(
        &self,
        decision: &str,
        outcome: &str,
        reason: &str,
        duration_ms: f64,
    ) -> crate::store::history::HistoryRecord {
        crate::store::history::HistoryRecord {
            at_ms: crate::store::now_ms(),
            query_id: self.query_id.clone(),
            user: self.user.clone(),
            groups: self.groups.join(","),
            door: self.door.to_string(),
            tables: self.tables.join(","),
            decision: decision.to_string(),
            outcome: outcome.to_string(),
            reason: reason.to_string(),
            endpoint: self.endpoint.clone().unwrap_or_default(),
            rule: self.rule.unwrap_or("").to_string(),
            left: self.left.join("; "),
            rows: self.rows.min(i64::MAX as u64) as i64,
            duration_us: (duration_ms * 1000.0) as i64,
            queued_us: self.queued.as_micros().min(i64::MAX as u128) as i64,
        }
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        if !self.done {
            match self.stop.get() {
                Some(e) => self.finish(None, e.outcome, Some(e.reason)),
                None => self.finish(
                    None,
                    "abandoned",
                    Some("dropped before its rows were read (the client went away)"),
                ),
            }
        }
    }
}

/// Audit lines the sink's queue holds; a query that finds it full waits for
/// room (the line is never dropped).
pub const AUDIT_QUEUE_LINES: usize = 65_536;

/// How often the sink's thread writes what has queued up: the queries never
/// wake it (no wake-up per line), and a line reaches stderr within this.
pub const AUDIT_FLUSH_EVERY: Duration = Duration::from_millis(20);

/// The process's audit sink, once [`start_sink`] ran; without one, lines
/// go through `tracing` (same shape).
static SINK: OnceLock<Sink> = OnceLock::new();

struct Sink {
    tx: SyncSender<Line>,
}

impl Sink {
    fn send(&self, line: Line) {
        // A full queue blocks the caller until the writer has made room:
        // back-pressure, never a lost line. An error means the writer is
        // gone (the process is stopping): say so on stderr, never silently.
        if let Err(e) = self.tx.send(line) {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&e.0.to_json());
            let _ = err.write_all(b"\n");
        }
    }
}

/// One audit line, moved out of the query's [`Audit`] and formatted by the
/// sink's thread as the `tracing` JSON layer formats the other logs.
struct Line {
    at: SystemTime,
    query_id: String,
    door: &'static str,
    user: String,
    groups: Vec<String>,
    tables: Vec<String>,
    decision: &'static str,
    reason: String,
    endpoint: String,
    rule: &'static str,
    routing: String,
    left: Vec<String>,
    fallback: bool,
    outcome: String,
    rows: u64,
    duration_ms: f64,
}

impl Line {
    fn to_json(&self) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            timestamp: String,
            level: &'static str,
            message: &'static str,
            target: &'static str,
            query_id: &'a str,
            door: &'a str,
            user: &'a str,
            groups: String,
            tables: String,
            decision: &'a str,
            reason: &'a str,
            endpoint: &'a str,
            rule: &'a str,
            routing: &'a str,
            left: String,
            fallback: bool,
            outcome: &'a str,
            rows: u64,
            duration_ms: f64,
        }
        let timestamp = chrono::DateTime::<chrono::Utc>::from(self.at)
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        serde_json::to_vec(&Out {
            timestamp,
            level: "INFO",
            message: "query",
            target: "audit",
            query_id: &self.query_id,
            door: self.door,
            user: &self.user,
            groups: self.groups.join(","),
            tables: self.tables.join(","),
            decision: self.decision,
            reason: &self.reason,
            endpoint: &self.endpoint,
            rule: self.rule,
            routing: &self.routing,
            left: self.left.join("; "),
            fallback: self.fallback,
            outcome: &self.outcome,
            rows: self.rows,
            duration_ms: self.duration_ms,
        })
        .unwrap_or_else(|e| format!("{{\"level\":\"ERROR\",\"target\":\"audit\",\"message\":\"cannot encode an audit line: {e}\"}}").into_bytes())
    }
}

/// Stops the sink's thread when dropped, after it wrote every queued line.
pub struct SinkGuard {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SinkGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Starts the audit sink (once per process; the binary calls it when audit
/// lines are on, i.e. at log level info or finer): a thread that writes the
/// queued lines to stderr every [`AUDIT_FLUSH_EVERY`], in one write per
/// batch. `None` when a sink runs already or the thread cannot start (lines
/// then go through `tracing`).
pub fn start_sink() -> Option<SinkGuard> {
    let (tx, rx) = std::sync::mpsc::sync_channel(AUDIT_QUEUE_LINES);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("gateway-audit".into())
        .spawn(move || write_lines(rx, &flag))
        .ok()?;
    if SINK.set(Sink { tx }).is_err() {
        stop.store(true, Ordering::Release);
        thread.thread().unpark();
        let _ = thread.join();
        return None;
    }
    Some(SinkGuard {
        stop,
        thread: Some(thread),
    })
}

/// The sink's thread: sleeps, then writes everything queued in one batch;
/// after the stop flag, one last batch.
fn write_lines(rx: Receiver<Line>, stop: &AtomicBool) {
    let mut buf = Vec::with_capacity(64 << 10);
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let mut gone = false;
        loop {
            match rx.try_recv() {
                Ok(line) => {
                    buf.extend_from_slice(&line.to_json());
                    buf.push(b'\n');
                    if buf.len() >= 1 << 20 {
                        let _ = std::io::stderr().lock().write_all(&buf);
                        buf.clear();
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    gone = true;
                    break;
                }
            }
        }
        if !buf.is_empty() {
            let _ = std::io::stderr().lock().write_all(&buf);
            buf.clear();
        }
        if stopping || gone {
            return;
        }
        std::thread::park_timeout(AUDIT_FLUSH_EVERY);
    }
}
