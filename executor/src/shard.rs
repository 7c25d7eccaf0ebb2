//! One shard: its job table, work FIFO, worker, expiry queue and waiters.
//!
//! Owns the jobs whose id hashes to this shard and every state transition of
//! them; requests for other shards' jobs are forwarded over the channel mesh
//! and answered on a oneshot. Lives on one glommio executor (`!Send`); all
//! state is in a `RefCell` that is never borrowed across an `.await`. It never
//! calls DuckDB (the worker thread does) and never blocks the reactor.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};
use hashbrown::HashMap;

use crate::duckdb::{Connection, InterruptHandle};
use crate::engine::Engine;
use crate::error::{EngineError, JobError};
use crate::expiry::ExpiryQueue;
use crate::job::{Failure, Job, JobStatus, Status, Submitted};
use crate::result::{Page, QueryResult};
use crate::route;
use crate::stats::{ShardCounters, Stats};
use crate::worker::{self, ExecFailure, Outcome, Task};
use crate::{QueryId, MAX_STATUS_WAIT};

type Reply<T> = oneshot::Sender<Result<T, JobError>>;

/// A request for the shard that owns a job (or a request id).
pub(crate) enum Msg {
    Submit {
        sql: String,
        request_id: String,
        reply: Reply<Submitted>,
    },
    Status {
        id: QueryId,
        wait: Option<Duration>,
        reply: Reply<JobStatus>,
    },
    Page {
        id: QueryId,
        offset: usize,
        max: usize,
        reply: Reply<Page>,
    },
    Cancel {
        id: QueryId,
        reply: Reply<JobStatus>,
    },
    Delete {
        id: QueryId,
        reply: Reply<JobStatus>,
    },
}

/// Work waiting for the worker.
enum Work {
    Job(QueryId),
    Execute {
        seq: u64,
        sql: String,
        enqueued: Instant,
        reply: Reply<Arc<QueryResult>>,
    },
}

/// What a statement handed to the worker belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Busy {
    Job(QueryId),
    Execute(u64),
}

/// A statement handed to the worker.
struct Flight {
    busy: Busy,
    /// The worker reports this token in `current` while it executes the statement.
    token: u64,
    canceled: Arc<AtomicBool>,
}

/// How many `/execute` statements the worker may hold at once: the next one
/// waits in its channel so it never idles while the reactor turns around.
/// Jobs are never handed over behind anything (so `RUNNING` means running).
const EXECUTE_PIPELINE: usize = 2;

struct State {
    jobs: HashMap<QueryId, Job>,
    by_request: HashMap<Box<str>, QueryId>,
    queue: VecDeque<Work>,
    /// Statements handed to the worker, oldest (executing) first; see `pump`.
    in_flight: VecDeque<Flight>,
    expiry: ExpiryQueue,
    closed: bool,
}

struct Inner {
    index: usize,
    count: usize,
    engine: Arc<Engine>,
    senders: Senders<Msg>,
    worker: RefCell<Option<mpsc::Sender<Task>>>,
    worker_exited: RefCell<Option<oneshot::Receiver<()>>>,
    interrupt: InterruptHandle,
    /// The token of the statement the worker is executing (0: none).
    current: Arc<AtomicU64>,
    state: RefCell<State>,
    next_seq: Cell<u64>,
}

/// A shard's handle, used by the agent on that shard's executor. `!Send`.
/// Cloning is cheap (a reference count).
#[derive(Clone)]
pub struct Shard {
    inner: Rc<Inner>,
}

impl Shard {
    pub(crate) fn start(
        engine: Arc<Engine>,
        index: usize,
        senders: Senders<Msg>,
        mut receivers: Receivers<Msg>,
        conn: Connection,
    ) -> Result<(Shard, JoinHandle<()>), EngineError> {
        let interrupt = conn.interrupt_handle();
        let (exit_tx, exit_rx) = oneshot::channel();
        let current = Arc::new(AtomicU64::new(0));
        let cfg = worker::Config {
            max_result_bytes: engine.cfg.max_result_bytes,
            keywords: engine.keywords.clone(),
            stop: engine.stop.clone(),
            current: current.clone(),
            cpus: engine.sql_cpus,
            nice: engine.cfg.sql_thread_nice,
        };
        let (tx, handle) = worker::spawn(index, conn, cfg, exit_tx)
            .map_err(|e| EngineError::Thread(e.to_string()))?;
        let count = engine.cfg.shards;
        let inner = Rc::new(Inner {
            index,
            count,
            engine,
            senders,
            worker: RefCell::new(Some(tx)),
            worker_exited: RefCell::new(Some(exit_rx)),
            interrupt,
            current,
            state: RefCell::new(State {
                jobs: HashMap::new(),
                by_request: HashMap::new(),
                queue: VecDeque::new(),
                in_flight: VecDeque::new(),
                expiry: ExpiryQueue::default(),
                closed: false,
            }),
            next_seq: Cell::new(0),
        });
        // Peers' requests: one loop per peer, each request handled in its own
        // task so a long-poll never holds up the others. Loops hold a Weak so
        // dropping every Shard handle lets the shard (and its worker) go.
        for (_, rx) in receivers.streams() {
            let weak = Rc::downgrade(&inner);
            glommio::spawn_local(async move {
                while let Some(msg) = rx.recv().await {
                    let Some(me) = weak.upgrade() else { break };
                    glommio::spawn_local(async move { me.handle(msg).await }).detach();
                }
            })
            .detach();
        }
        let weak = Rc::downgrade(&inner);
        let every = inner.engine.cfg.cleanup_interval;
        glommio::spawn_local(async move { sweep_loop(weak, every).await }).detach();
        Ok((Shard { inner }, handle))
    }

    /// This shard's index in `0..shard_count` (its place in the channel mesh).
    pub fn index(&self) -> usize {
        self.inner.index
    }

    /// The engine this shard belongs to.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.inner.engine
    }

    /// Shorthand for `engine().stats()`.
    pub fn stats(&self) -> Stats {
        self.inner.engine.stats()
    }

    /// Runs `sql` on this shard's worker (same FIFO as jobs) and returns the
    /// encoded result. Dropping the future interrupts the statement.
    pub async fn execute(&self, sql: &str) -> Result<Arc<QueryResult>, JobError> {
        let me = &self.inner;
        let (seq, rx) = {
            let mut st = me.state.borrow_mut();
            if st.closed {
                return Err(JobError::ShuttingDown);
            }
            me.check_overload()?;
            let seq = me.next_seq.get();
            me.next_seq.set(seq + 1);
            let (tx, rx) = oneshot::channel();
            st.queue.push_back(Work::Execute {
                seq,
                sql: sql.to_owned(),
                enqueued: Instant::now(),
                reply: tx,
            });
            ShardCounters::add(&me.counters().queued_executes, 1);
            (seq, rx)
        };
        let guard = ExecuteGuard {
            inner: me,
            seq,
            done: false,
        };
        me.pump();
        let r = rx.await.unwrap_or(Err(JobError::ShuttingDown));
        let mut guard = guard;
        guard.done = true;
        r
    }

    /// Creates a job (or, with a request id seen before, returns that job).
    pub async fn submit(
        &self,
        sql: String,
        request_id: Option<String>,
    ) -> Result<Submitted, JobError> {
        let me = &self.inner;
        match request_id.filter(|r| !r.is_empty()) {
            None => me.create(sql, None),
            Some(rid) => {
                let owner = route::owner_of_request(&rid, me.count);
                if owner == me.index {
                    me.create(sql, Some(rid))
                } else {
                    me.forward(owner, |reply| Msg::Submit {
                        sql,
                        request_id: rid,
                        reply,
                    })
                    .await
                }
            }
        }
    }

    /// The job's status; with `wait`, answers as soon as the job is terminal or
    /// the wait (capped at [`MAX_STATUS_WAIT`]) ends.
    pub async fn status(&self, id: QueryId, wait: Option<Duration>) -> Result<JobStatus, JobError> {
        let me = &self.inner;
        let owner = route::owner_of_query(id, me.count);
        if owner == me.index {
            me.clone().status_local(id, wait).await
        } else {
            me.forward(owner, |reply| Msg::Status { id, wait, reply })
                .await
        }
    }

    /// Rows `offset .. offset + max` of a succeeded job (clamped to the result).
    pub async fn page(&self, id: QueryId, offset: usize, max: usize) -> Result<Page, JobError> {
        let me = &self.inner;
        let owner = route::owner_of_query(id, me.count);
        if owner == me.index {
            me.page_local(id, offset, max)
        } else {
            me.forward(owner, |reply| Msg::Page {
                id,
                offset,
                max,
                reply,
            })
            .await
        }
    }

    /// Cancels a queued or running job (a terminal job keeps its status).
    pub async fn cancel(&self, id: QueryId) -> Result<JobStatus, JobError> {
        let me = &self.inner;
        let owner = route::owner_of_query(id, me.count);
        if owner == me.index {
            me.cancel_local(id)
        } else {
            me.forward(owner, |reply| Msg::Cancel { id, reply }).await
        }
    }

    /// Cancels if needed and drops the job; the id is unknown afterwards.
    /// The answer's status is `CANCELED`.
    pub async fn delete(&self, id: QueryId) -> Result<JobStatus, JobError> {
        let me = &self.inner;
        let owner = route::owner_of_query(id, me.count);
        if owner == me.index {
            me.delete_local(id)
        } else {
            me.forward(owner, |reply| Msg::Delete { id, reply }).await
        }
    }

    /// Stops taking work: queued work fails with `ShuttingDown` (jobs become
    /// `CANCELED` with code `SHUTTING_DOWN`), the running statement is
    /// interrupted, and the worker thread is told to exit; resolves when it has
    /// (or after `deadline`).
    pub async fn shutdown(&self, deadline: Duration) {
        let me = &self.inner;
        {
            let mut st = me.state.borrow_mut();
            st.closed = true;
            let queue: Vec<Work> = st.queue.drain(..).collect();
            for w in queue {
                match w {
                    Work::Execute { reply, .. } => {
                        ShardCounters::add(&me.counters().queued_executes, -1);
                        let _ = reply.send(Err(JobError::ShuttingDown));
                    }
                    Work::Job(id) => {
                        if let Some(job) = st.jobs.get_mut(&id) {
                            if job.status == Status::Queued {
                                ShardCounters::add(&me.counters().queued_jobs, -1);
                                ShardCounters::add(&me.counters().completed_jobs, 1);
                                job.finish(
                                    Status::Canceled,
                                    None,
                                    Some(Failure {
                                        code: "SHUTTING_DOWN",
                                        message: "the agent is shutting down".into(),
                                    }),
                                );
                                st.expiry
                                    .push(Instant::now() + me.engine.cfg.result_ttl, id);
                            }
                        }
                    }
                }
            }
            let flights: Vec<Busy> = st.in_flight.iter().map(|f| f.busy).collect();
            drop(st);
            for busy in flights {
                me.stop_running(busy);
            }
        }
        me.worker.borrow_mut().take();
        let end = Instant::now() + deadline;
        let exited = me.worker_exited.borrow_mut().take();
        if let Some(rx) = exited {
            let _ = glommio::timer::timeout(deadline, async move {
                let _ = rx.await;
                Ok(())
            })
            .await;
        }
        // The last statement's answer and the exit signal wake different
        // tasks; wait until the answer has been applied to the job table.
        while !me.state.borrow().in_flight.is_empty() && Instant::now() < end {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Interrupts an `/execute` statement whose caller went away.
struct ExecuteGuard<'a> {
    inner: &'a Rc<Inner>,
    seq: u64,
    done: bool,
}

impl Drop for ExecuteGuard<'_> {
    fn drop(&mut self) {
        let handed_over = self
            .inner
            .state
            .borrow()
            .in_flight
            .iter()
            .any(|f| f.busy == Busy::Execute(self.seq));
        if !self.done && handed_over {
            self.inner.stop_running(Busy::Execute(self.seq));
        }
        // A still-queued execute is skipped by `pump` (its reply is closed).
    }
}

async fn sweep_loop(weak: Weak<Inner>, every: Duration) {
    loop {
        glommio::timer::sleep(every).await;
        let Some(me) = weak.upgrade() else { return };
        if me.state.borrow().closed {
            return;
        }
        me.sweep(Instant::now());
    }
}

impl Inner {
    fn counters(&self) -> &ShardCounters {
        &self.engine.counters[self.index]
    }

    fn check_overload(&self) -> Result<(), JobError> {
        let max = self.engine.cfg.max_queued_jobs;
        if max == 0 {
            return Ok(());
        }
        let queued = self.engine.queued_work();
        if queued < max {
            return Ok(());
        }
        self.counters()
            .rejected_overloaded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Rough time to drain what is queued ahead, from the mean execution time.
        let h = self.counters().execution.snapshot();
        let mean_s = if h.count > 0 {
            h.sum_us as f64 / h.count as f64 / 1e6
        } else {
            0.0
        };
        let per_shard = queued as f64 / self.count as f64;
        let retry_after_s = (per_shard * mean_s).ceil().clamp(1.0, 60.0) as u32;
        Err(JobError::Overloaded { retry_after_s })
    }

    async fn forward<T>(
        &self,
        owner: usize,
        make: impl FnOnce(Reply<T>) -> Msg,
    ) -> Result<T, JobError> {
        let (tx, rx) = oneshot::channel();
        if self.senders.send_to(owner, make(tx)).await.is_err() {
            return Err(JobError::ShuttingDown);
        }
        rx.await.unwrap_or(Err(JobError::ShuttingDown))
    }

    async fn handle(self: Rc<Self>, msg: Msg) {
        // A requester that went away has dropped its receiver; sends then fail quietly.
        match msg {
            Msg::Submit {
                sql,
                request_id,
                reply,
            } => {
                let _ = reply.send(self.create(sql, Some(request_id)));
            }
            Msg::Status { id, wait, reply } => {
                let r = self.status_local(id, wait).await;
                let _ = reply.send(r);
            }
            Msg::Page {
                id,
                offset,
                max,
                reply,
            } => {
                let _ = reply.send(self.page_local(id, offset, max));
            }
            Msg::Cancel { id, reply } => {
                let _ = reply.send(self.cancel_local(id));
            }
            Msg::Delete { id, reply } => {
                let _ = reply.send(self.delete_local(id));
            }
        }
    }

    fn create(
        self: &Rc<Self>,
        sql: String,
        request_id: Option<String>,
    ) -> Result<Submitted, JobError> {
        {
            let mut st = self.state.borrow_mut();
            if st.closed {
                return Err(JobError::ShuttingDown);
            }
            if let Some(rid) = request_id.as_deref() {
                if let Some(&id) = st.by_request.get(rid) {
                    if let Some(job) = st.jobs.get(&id) {
                        return Ok(Submitted {
                            id,
                            status: job.status,
                            existing: true,
                        });
                    }
                }
            }
            self.check_overload()?;
            let id = route::new_id_for(self.index, self.count);
            let rid: Option<Box<str>> = request_id.map(String::into_boxed_str);
            if let Some(r) = &rid {
                st.by_request.insert(r.clone(), id);
            }
            st.jobs.insert(id, Job::new(sql, rid));
            st.queue.push_back(Work::Job(id));
            let c = self.counters();
            ShardCounters::add(&c.queued_jobs, 1);
            ShardCounters::add(&c.stored_jobs, 1);
            c.submitted_jobs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            drop(st);
            self.pump();
            Ok(Submitted {
                id,
                status: Status::Queued,
                existing: false,
            })
        }
    }

    async fn status_local(
        self: Rc<Self>,
        id: QueryId,
        wait: Option<Duration>,
    ) -> Result<JobStatus, JobError> {
        let wait = wait.unwrap_or_default().min(MAX_STATUS_WAIT);
        let rx = {
            let mut st = self.state.borrow_mut();
            let job = st.jobs.get_mut(&id).ok_or(JobError::NotFound)?;
            if job.status.is_terminal() || wait.is_zero() {
                return Ok(job.snapshot(id));
            }
            job.waiters.retain(|w| !w.is_canceled());
            let (tx, rx) = oneshot::channel();
            job.waiters.push(tx);
            rx
        };
        // Woken when terminal or dropped; otherwise the wait simply ends.
        let _ = glommio::timer::timeout(wait, async move {
            let _ = rx.await;
            Ok(())
        })
        .await;
        let st = self.state.borrow();
        st.jobs
            .get(&id)
            .map(|j| j.snapshot(id))
            .ok_or(JobError::NotFound)
    }

    fn page_local(&self, id: QueryId, offset: usize, max: usize) -> Result<Page, JobError> {
        let st = self.state.borrow();
        let job = st.jobs.get(&id).ok_or(JobError::NotFound)?;
        match job.status {
            Status::Queued | Status::Running => Err(JobError::NotReady(job.status)),
            Status::Failed | Status::Canceled => Err(JobError::NotAvailable {
                status: job.status,
                message: job
                    .failure
                    .as_ref()
                    .map_or_else(String::new, |f| f.message.clone()),
            }),
            Status::Succeeded => {
                let result = job.result.clone().ok_or(JobError::NotFound)?;
                let n = result.row_count();
                let offset = offset.min(n);
                let end = offset.saturating_add(max).min(n);
                Ok(Page {
                    result,
                    offset,
                    end,
                })
            }
        }
    }

    fn cancel_local(self: &Rc<Self>, id: QueryId) -> Result<JobStatus, JobError> {
        let mut st = self.state.borrow_mut();
        let ttl = self.engine.cfg.result_ttl;
        let job = st.jobs.get_mut(&id).ok_or(JobError::NotFound)?;
        let c = self.counters();
        let message = match job.status {
            Status::Queued => {
                ShardCounters::add(&c.queued_jobs, -1);
                "query was canceled before it started"
            }
            Status::Running => {
                ShardCounters::add(&c.running_jobs, -1);
                "query was canceled"
            }
            _ => return Ok(job.snapshot(id)),
        };
        let was_running = job.status == Status::Running;
        ShardCounters::add(&c.completed_jobs, 1);
        job.finish(
            Status::Canceled,
            None,
            Some(Failure {
                code: "CANCELED",
                message: message.into(),
            }),
        );
        let snap = job.snapshot(id);
        st.expiry.push(Instant::now() + ttl, id);
        drop(st);
        if was_running {
            self.stop_running(Busy::Job(id));
        }
        Ok(snap)
    }

    fn delete_local(self: &Rc<Self>, id: QueryId) -> Result<JobStatus, JobError> {
        let mut st = self.state.borrow_mut();
        let job = st.jobs.remove(&id).ok_or(JobError::NotFound)?;
        let c = self.counters();
        match job.status {
            Status::Queued => ShardCounters::add(&c.queued_jobs, -1),
            Status::Running => ShardCounters::add(&c.running_jobs, -1),
            _ => ShardCounters::add(&c.completed_jobs, -1),
        }
        self.forget(&mut st, &job);
        drop(st);
        if job.status == Status::Running {
            self.stop_running(Busy::Job(id));
        }
        // Dropping the job drops its waiters' senders: they wake and see NotFound.
        Ok(JobStatus {
            id,
            status: Status::Canceled,
            completed_at: job.completed_at.or_else(|| Some(SystemTime::now())),
            error: None,
            error_code: None,
            result: None,
        })
    }

    /// Bookkeeping shared by delete and expiry for a job already removed from the table.
    fn forget(&self, st: &mut State, job: &Job) {
        let c = self.counters();
        ShardCounters::add(&c.stored_jobs, -1);
        if let Some(r) = &job.result {
            ShardCounters::add(&c.result_bytes, -(r.retained_bytes() as i64));
        }
        if let Some(rid) = &job.request_id {
            st.by_request.remove(rid);
        }
    }

    fn sweep(&self, now: Instant) {
        let mut st = self.state.borrow_mut();
        let mut cleaned = 0;
        while let Some(id) = st.expiry.pop_due(now) {
            let terminal = st.jobs.get(&id).is_some_and(|j| j.status.is_terminal());
            if !terminal {
                continue; // deleted earlier
            }
            if let Some(job) = st.jobs.remove(&id) {
                ShardCounters::add(&self.counters().completed_jobs, -1);
                self.forget(&mut st, &job);
                cleaned += 1;
            }
        }
        if cleaned > 0 {
            self.counters()
                .cleaned_jobs
                .fetch_add(cleaned, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Stops the statement handed to the worker for `busy`: flags it (the
    /// worker skips it if it has not started) and interrupts DuckDB while the
    /// worker reports executing it — again every few milliseconds until it
    /// answers, because DuckDB drops an interrupt that lands just before a
    /// statement begins. If the worker moves on to the next statement between
    /// the check and the interrupt, that statement sees an interrupt nobody
    /// asked for; the worker retries such statements (see `worker.rs`).
    fn stop_running(self: &Rc<Self>, busy: Busy) {
        let token = {
            let st = self.state.borrow();
            let Some(f) = st.in_flight.iter().find(|f| f.busy == busy) else {
                return;
            };
            f.canceled.store(true, Ordering::SeqCst);
            f.token
        };
        if self.current.load(Ordering::SeqCst) == token {
            self.interrupt.interrupt();
        }
        let weak = Rc::downgrade(self);
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(5)).await;
                let Some(me) = weak.upgrade() else { return };
                if !me.state.borrow().in_flight.iter().any(|f| f.token == token) {
                    return;
                }
                if me.current.load(Ordering::SeqCst) == token {
                    me.interrupt.interrupt();
                }
            }
        })
        .detach();
    }

    /// Hands queued work to the worker: a job only to an idle worker, an
    /// `/execute` also behind other `/execute`s (up to `EXECUTE_PIPELINE`).
    fn pump(self: &Rc<Self>) {
        loop {
            let mut st = self.state.borrow_mut();
            let job_in_flight = st.in_flight.iter().any(|f| matches!(f.busy, Busy::Job(_)));
            if job_in_flight || st.in_flight.len() >= EXECUTE_PIPELINE {
                return;
            }
            let idle = st.in_flight.is_empty();
            match st.queue.front() {
                None => return,
                Some(Work::Job(_)) if !idle => return,
                _ => {}
            }
            let Some(work) = st.queue.pop_front() else {
                return;
            };
            let c = self.counters();
            match work {
                Work::Job(id) => {
                    let Some(job) = st.jobs.get_mut(&id) else {
                        continue;
                    };
                    if job.status != Status::Queued {
                        continue; // canceled while queued
                    }
                    let Some(sql) = job.sql.take() else { continue };
                    job.status = Status::Running;
                    c.queue_wait.record(job.submitted.elapsed());
                    ShardCounters::add(&c.queued_jobs, -1);
                    ShardCounters::add(&c.running_jobs, 1);
                    ShardCounters::add(&c.active_queries, 1);
                    drop(st);
                    self.dispatch(sql, Busy::Job(id), None);
                }
                Work::Execute {
                    seq,
                    sql,
                    enqueued,
                    reply,
                } => {
                    ShardCounters::add(&c.queued_executes, -1);
                    if reply.is_canceled() {
                        continue; // the caller went away while queued
                    }
                    c.queue_wait.record(enqueued.elapsed());
                    c.executed_statements
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    ShardCounters::add(&c.active_queries, 1);
                    drop(st);
                    self.dispatch(sql, Busy::Execute(seq), Some(reply));
                }
            }
        }
    }

    fn dispatch(self: &Rc<Self>, sql: String, busy: Busy, reply: Option<Reply<Arc<QueryResult>>>) {
        let (tx, rx) = oneshot::channel();
        let canceled = Arc::new(AtomicBool::new(false));
        let token = self.next_seq.get() + 1;
        self.next_seq.set(token);
        self.state.borrow_mut().in_flight.push_back(Flight {
            busy,
            token,
            canceled: canceled.clone(),
        });
        if let Some(w) = self.worker.borrow().as_ref() {
            // If the worker is gone the task (and `tx`) drops and `rx` reports it.
            let _ = w.send(Task {
                sql,
                token,
                canceled,
                reply: tx,
            });
        }
        let me = self.clone();
        glommio::spawn_local(async move {
            let outcome = rx.await.ok();
            me.on_done(token, busy, outcome, reply);
        })
        .detach();
    }

    fn on_done(
        self: &Rc<Self>,
        token: u64,
        busy: Busy,
        outcome: Option<Outcome>,
        reply: Option<Reply<Arc<QueryResult>>>,
    ) {
        {
            let mut st = self.state.borrow_mut();
            st.in_flight.retain(|f| f.token != token);
            let c = self.counters();
            ShardCounters::add(&c.active_queries, -1);
            if let Some(o) = &outcome {
                c.execution.record(o.exec);
            }
            let closed = st.closed;
            let result = match outcome {
                Some(o) => o.result,
                None => Err(ExecFailure::Failed(String::new())),
            };
            match busy {
                Busy::Execute(_) => {
                    let r = match result {
                        Ok(r) => Ok(Arc::new(r)),
                        Err(ExecFailure::Interrupted) if closed => Err(JobError::ShuttingDown),
                        Err(ExecFailure::Interrupted) => Err(JobError::Canceled),
                        Err(ExecFailure::TooLarge) => Err(JobError::ResultTooLarge {
                            limit: self.engine.cfg.max_result_bytes,
                        }),
                        Err(ExecFailure::Failed(m)) if m.is_empty() => Err(JobError::ShuttingDown),
                        Err(ExecFailure::Failed(m)) => Err(JobError::Execution(m)),
                    };
                    if let Some(reply) = reply {
                        let _ = reply.send(r);
                    }
                }
                Busy::Job(id) => {
                    let ttl = self.engine.cfg.result_ttl;
                    let limit = self.engine.cfg.max_result_bytes;
                    if let Some(job) = st.jobs.get_mut(&id).filter(|j| j.status == Status::Running)
                    {
                        ShardCounters::add(&c.running_jobs, -1);
                        ShardCounters::add(&c.completed_jobs, 1);
                        match result {
                            Ok(r) => {
                                let r = Arc::new(r);
                                ShardCounters::add(&c.result_bytes, r.retained_bytes() as i64);
                                job.finish(Status::Succeeded, Some(r), None);
                            }
                            Err(e) => {
                                let (status, code, message) = match e {
                                    ExecFailure::Interrupted if closed => (
                                        Status::Canceled,
                                        "SHUTTING_DOWN",
                                        "the agent is shutting down".to_string(),
                                    ),
                                    ExecFailure::Interrupted => (
                                        Status::Canceled,
                                        "CANCELED",
                                        "query was canceled".to_string(),
                                    ),
                                    ExecFailure::TooLarge => (
                                        Status::Failed,
                                        "RESULT_TOO_LARGE",
                                        JobError::ResultTooLarge { limit }.to_string(),
                                    ),
                                    ExecFailure::Failed(m) if m.is_empty() => (
                                        Status::Failed,
                                        "SHUTTING_DOWN",
                                        "the agent is shutting down".to_string(),
                                    ),
                                    ExecFailure::Failed(m) => {
                                        (Status::Failed, "EXECUTION_ERROR", m)
                                    }
                                };
                                job.finish(status, None, Some(Failure { code, message }));
                            }
                        }
                        st.expiry.push(Instant::now() + ttl, id);
                    }
                    // Otherwise the job was canceled or deleted while running:
                    // its result is dropped here.
                }
            }
        }
        self.pump();
    }
}
