//! One shard: the public facade the agent calls, and the core that moves
//! work between the shard's job table and its feed.
//!
//! Owns routing each operation to the shard that owns its job, where it runs
//! as a closure sent over the channel mesh (`Msg`), so a new job operation is
//! one method here, not a message type plus a handler; placing new work (on
//! this shard while it has a free worker, else where one is free, whether or
//! not a submit has a request id: a repeated request id is found in the
//! engine's request-id index, not by routing); and the transitions that span
//! the table and the feed (start, land, cancel, delete, deadlines,
//! shutdown). Lives on one glommio executor (`!Send`); state sits in
//! `RefCell`s never borrowed across an `.await`. It never calls DuckDB (the
//! workers do) and never blocks the reactor.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};

use crate::arrow::ResultFormat;
use crate::engine::Engine;
use crate::error::JobError;
use crate::feed::{Feed, Flight, Owner, Work};
use crate::job::{Job, JobStatus, Status, Submitted};
use crate::result::{Page, QueryResult};
use crate::route;
use crate::stats::{ShardCounters, Stats};
use crate::table::JobTable;
use crate::worker::{ExecFailure, Outcome, StopReason, Ticket};
use crate::{QueryId, MAX_STATUS_WAIT};

/// An operation run on the shard that owns its job: sent over the mesh from
/// any other shard, run there with that shard's core.
pub(crate) struct Msg(Box<dyn FnOnce(Rc<Core>) -> LocalOp + Send>);

/// An operation's future on its owner shard (`!Send`: it uses the shard's `Rc`s).
type LocalOp = Pin<Box<dyn Future<Output = ()>>>;

/// What [`Shard::submit_and_wait`] found when its wait ended.
#[derive(Debug)]
pub enum Waited {
    /// Still queued or running (or a request id's job, as it stands).
    Pending(Submitted),
    /// Ended within the wait.
    Ended {
        status: JobStatus,
        /// The first rows, once succeeded.
        first: Option<Page>,
        /// Dropped by the agent shortly (`consume`): no delete needed.
        consumed: bool,
    },
}

/// Per-statement options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOptions {
    /// The caller's timeout (`timeout_ms`); capped by `QUERY_TIMEOUT` when set.
    pub timeout: Option<Duration>,
    /// How the result is kept and served (`format`, JSON by default).
    pub format: ResultFormat,
    /// Values bound to the statement's placeholders (`params`).
    pub params: crate::params::Params,
}

/// How often stopped statements are interrupted again until they answer.
const REINTERRUPT_EVERY: Duration = Duration::from_millis(5);
/// Longest sleep of the deadline watcher: the resolution of timeouts.
const DEADLINE_TICK: Duration = Duration::from_millis(10);
/// Longest sleep of the expiry sweep, so a new cleanup interval applies soon.
const SWEEP_TICK: Duration = Duration::from_millis(250);
/// Tries a submit makes to either find its request id's job or create one.
/// A try fails only when the job the index named left its table before it
/// was read, or another submit of the same request id won the claim: each
/// failure means another job of that request id came or went meanwhile.
const MAX_SUBMIT_TRIES: usize = 8;

/// What [`Core::create`] did.
enum Created {
    /// A new `QUEUED` job on this shard.
    New(QueryId),
    /// The request id names a job already (or just got claimed by another
    /// submit): nothing was created; the SQL comes back for another try.
    RequestIdTaken(String),
}

pub(crate) struct Core {
    index: usize,
    count: usize,
    engine: Arc<Engine>,
    senders: Senders<Msg>,
    table: RefCell<JobTable>,
    feed: RefCell<Feed>,
    closed: Cell<bool>,
    deadline_watcher: Cell<bool>,
    reinterrupter: Cell<bool>,
}

/// A shard's handle, used by the agent on that shard's executor. `!Send`.
/// Cloning is cheap (a reference count).
#[derive(Clone)]
pub struct Shard {
    core: Rc<Core>,
}

impl Shard {
    pub(crate) fn start(
        engine: Arc<Engine>,
        index: usize,
        senders: Senders<Msg>,
        mut receivers: Receivers<Msg>,
        feed: Feed,
    ) -> Shard {
        let count = engine.cfg.shards;
        engine.counters[index]
            .slots
            .store(feed.slots() as i64, Relaxed);
        let table = JobTable::new(engine.request_ids.clone());
        let core = Rc::new(Core {
            index,
            count,
            engine,
            senders,
            table: RefCell::new(table),
            feed: RefCell::new(feed),
            closed: Cell::new(false),
            deadline_watcher: Cell::new(false),
            reinterrupter: Cell::new(false),
        });
        // Peers' requests: one loop per peer, each request run in its own task
        // so a long-poll never holds up the others. Loops hold a Weak so
        // dropping every Shard handle lets the shard go.
        for (_, rx) in receivers.streams() {
            let weak = Rc::downgrade(&core);
            glommio::spawn_local(async move {
                while let Some(Msg(op)) = rx.recv().await {
                    let Some(me) = weak.upgrade() else { break };
                    glommio::spawn_local(op(me)).detach();
                }
            })
            .detach();
        }
        let weak = Rc::downgrade(&core);
        glommio::spawn_local(async move { sweep_loop(weak).await }).detach();
        Shard { core }
    }

    /// This shard's index in `0..shard_count` (its place in the channel mesh).
    pub fn index(&self) -> usize {
        self.core.index
    }

    /// The engine this shard belongs to.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.core.engine
    }

    /// Shorthand for `engine().stats()`.
    pub fn stats(&self) -> Stats {
        self.core.engine.stats()
    }

    /// [`Shard::execute_with`] with default options.
    pub async fn execute(&self, sql: &str) -> Result<Arc<QueryResult>, JobError> {
        self.execute_with(sql, RunOptions::default()).await
    }

    /// Runs `sql` and returns the encoded result. Runs here when this shard
    /// has a free worker, else on a shard that has one, else waits here.
    /// Dropping the future stops the statement (or takes it out of the queue).
    pub async fn execute_with(
        &self,
        sql: &str,
        opts: RunOptions,
    ) -> Result<Arc<QueryResult>, JobError> {
        self.check_sql(sql)?;
        let sql = sql.to_owned();
        let target = self.core.engine.shard_for_new_work(self.core.index);
        self.on_owner(target, move |core| core.execute_local(sql, opts))
            .await
    }

    /// [`Shard::submit_with`] with default options.
    pub async fn submit(
        &self,
        sql: String,
        request_id: Option<String>,
    ) -> Result<Submitted, JobError> {
        self.submit_with(sql, request_id, RunOptions::default())
            .await
    }

    /// Creates a job (or, with a request id seen before, returns that job,
    /// wherever it lives). A new job is created where a worker is free,
    /// preferring this shard, with or without a request id.
    pub async fn submit_with(
        &self,
        sql: String,
        request_id: Option<String>,
        opts: RunOptions,
    ) -> Result<Submitted, JobError> {
        self.check_sql(&sql)?;
        let rid = request_id.filter(|r| !r.is_empty()).map(Arc::<str>::from);
        let mut sql = sql;
        for _ in 0..MAX_SUBMIT_TRIES {
            if let Some(x) = self.job_of_request(rid.as_deref()) {
                match self
                    .on_job(x, move |core| async move { core.existing_local(x) })
                    .await
                {
                    // It left its table meanwhile: the request id is free again.
                    Err(JobError::NotFound) => {}
                    found => return found,
                }
            }
            let target = self.core.engine.shard_for_new_work(self.core.index);
            let rid = rid.clone();
            let opts = opts.clone();
            let created = self
                .on_owner(
                    target,
                    move |core| async move { core.create(sql, rid, opts) },
                )
                .await?;
            match created {
                Created::New(id) => {
                    return Ok(Submitted {
                        id,
                        status: Status::Queued,
                        existing: false,
                    })
                }
                Created::RequestIdTaken(back) => sql = back,
            }
        }
        Err(contended())
    }

    /// [`Shard::submit_with`], then waits (up to `wait`, capped at
    /// [`MAX_STATUS_WAIT`]) for the job to end, all in one visit to the job's
    /// shard (for a new job, the shard that created it: this one while it has
    /// a free worker). A job that ended comes back with its status and, once
    /// succeeded, its rows `0 .. max`; with `consume`, one whose whole result (or failure) is in
    /// that answer is dropped after a short grace ([`crate::CONSUMED_GRACE`]) instead
    /// of waiting for the caller's delete; a submit retried with its request id
    /// within the grace gets the same answer, not a second run.
    pub async fn submit_and_wait(
        &self,
        sql: String,
        request_id: Option<String>,
        opts: RunOptions,
        wait: Duration,
        max: usize,
        consume: bool,
    ) -> Result<Waited, JobError> {
        self.check_sql(&sql)?;
        let rid = request_id.filter(|r| !r.is_empty()).map(Arc::<str>::from);
        let mut sql = sql;
        for _ in 0..MAX_SUBMIT_TRIES {
            if let Some(x) = self.job_of_request(rid.as_deref()) {
                match self
                    .on_job(x, move |core| core.wait_local(x, true, wait, max, consume))
                    .await
                {
                    // It left its table meanwhile: the request id is free again.
                    Err(JobError::NotFound) => {}
                    found => return found,
                }
            }
            let target = self.core.engine.shard_for_new_work(self.core.index);
            let rid = rid.clone();
            let opts = opts.clone();
            let waited = self
                .on_owner(target, move |core| async move {
                    match core.create(sql, rid, opts)? {
                        Created::New(id) => {
                            core.wait_local(id, false, wait, max, consume).await.map(Ok)
                        }
                        Created::RequestIdTaken(back) => Ok(Err(back)),
                    }
                })
                .await?;
            match waited {
                Ok(w) => return Ok(w),
                Err(back) => sql = back,
            }
        }
        Err(contended())
    }

    /// The job's status; with `wait`, answers as soon as the job is terminal or
    /// the wait (capped at [`MAX_STATUS_WAIT`]) ends.
    pub async fn status(&self, id: QueryId, wait: Option<Duration>) -> Result<JobStatus, JobError> {
        self.on_job(id, move |core| core.status_local(id, wait))
            .await
    }

    /// Rows `offset .. offset + max` of a succeeded job (clamped to the result).
    pub async fn page(&self, id: QueryId, offset: usize, max: usize) -> Result<Page, JobError> {
        self.on_job(
            id,
            move |core| async move { core.page_local(id, offset, max) },
        )
        .await
    }

    /// Cancels a queued or running job (a terminal job keeps its status).
    pub async fn cancel(&self, id: QueryId) -> Result<JobStatus, JobError> {
        self.on_job(id, move |core| async move { core.cancel_local(id) })
            .await
    }

    /// Cancels if needed and drops the job; the id is unknown afterwards.
    /// The answer's status is `CANCELED`.
    pub async fn delete(&self, id: QueryId) -> Result<JobStatus, JobError> {
        self.on_job(id, move |core| async move { core.delete_local(id) })
            .await
    }

    /// Stops taking work (new work gets `ShuttingDown`) and lets what is queued
    /// and running finish until `deadline`; then stops the rest (jobs end
    /// `CANCELED` with code `SHUTTING_DOWN`) and tells the workers to exit.
    pub async fn shutdown(&self, deadline: Duration) {
        let me = &self.core;
        me.closed.set(true);
        let end = Instant::now() + deadline;
        while !me.feed.borrow().is_empty() && Instant::now() < end {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        let queued = me.feed.borrow_mut().drain_queue();
        for (_, work) in queued {
            me.end_queued(work, JobError::ShuttingDown);
        }
        let flying = me.feed.borrow().flight_keys();
        for seq in flying {
            me.feed.borrow().stop(seq, StopReason::Shutdown);
        }
        me.ensure_reinterrupter();
        // Statements answer within milliseconds of an interrupt; give them a
        // moment to land so their jobs are recorded.
        let grace = Instant::now() + Duration::from_secs(2);
        while me.feed.borrow().in_flight() > 0 && Instant::now() < grace {
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
        me.feed.borrow_mut().close_workers();
    }

    /// The retained job a request id created, on any shard (a lock-free read
    /// of the engine's index).
    fn job_of_request(&self, rid: Option<&str>) -> Option<QueryId> {
        rid.and_then(|r| self.core.engine.request_ids.get(r))
    }

    /// SQL size and nesting bounds, before anything is queued or forwarded.
    fn check_sql(&self, sql: &str) -> Result<(), JobError> {
        self.core
            .engine
            .check_sql(sql)
            .map_err(|e| JobError::Invalid(e.to_string()))
    }

    async fn on_job<T, F, Fut>(&self, id: QueryId, f: F) -> Result<T, JobError>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Core>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, JobError>> + 'static,
    {
        self.on_owner(route::owner_of_query(id, self.core.count), f)
            .await
    }

    /// Runs `f` on shard `owner`: here, or there over the mesh with the
    /// answer coming back on a oneshot. If this side stops waiting, the
    /// remote operation is dropped too (an `/execute` there stops).
    async fn on_owner<T, F, Fut>(&self, owner: usize, f: F) -> Result<T, JobError>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Core>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, JobError>> + 'static,
    {
        if owner == self.core.index {
            return f(self.core.clone()).await;
        }
        let (mut tx, rx) = oneshot::channel();
        let msg = Msg(Box::new(move |core: Rc<Core>| {
            Box::pin(async move {
                let mut op = std::pin::pin!(f(core));
                let answer = std::future::poll_fn(|cx| {
                    if let Poll::Ready(r) = op.as_mut().poll(cx) {
                        return Poll::Ready(Some(r));
                    }
                    if tx.poll_canceled(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                    Poll::Pending
                })
                .await;
                if let Some(r) = answer {
                    let _ = tx.send(r);
                }
            }) as LocalOp
        }));
        if self.core.senders.send_to(owner, msg).await.is_err() {
            return Err(JobError::ShuttingDown);
        }
        rx.await.unwrap_or(Err(JobError::ShuttingDown))
    }
}

/// Takes an `/execute` whose caller went away out of the queue, or stops it.
struct ExecuteGuard {
    core: Rc<Core>,
    seq: u64,
    done: bool,
}

impl Drop for ExecuteGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let me = &self.core;
        let removed = me.feed.borrow_mut().remove_queued(self.seq);
        if removed.is_some() {
            ShardCounters::add(&me.counters().queued_executes, -1);
        } else if me.feed.borrow().stop(self.seq, StopReason::CallerGone) {
            me.ensure_reinterrupter();
        }
    }
}

async fn sweep_loop(weak: Weak<Core>) {
    let mut last = Instant::now();
    loop {
        let every = match weak.upgrade() {
            Some(me) => me.engine.cleanup_interval(),
            None => return,
        };
        glommio::timer::sleep(every.min(SWEEP_TICK)).await;
        let Some(me) = weak.upgrade() else { return };
        if me.closed.get() {
            return;
        }
        let now = Instant::now();
        if now.duration_since(last) >= me.engine.cleanup_interval() {
            last = now;
            let ttl = me.engine.result_ttl();
            me.table.borrow_mut().sweep(me.counters(), now, ttl);
        } else {
            // Consumed jobs leave at the end of their grace, whatever the
            // cleanup interval (their owners already have every row).
            me.table.borrow_mut().drop_consumed(me.counters(), now);
        }
    }
}

impl Core {
    fn counters(&self) -> &ShardCounters {
        &self.engine.counters[self.index]
    }

    fn check_open(&self) -> Result<(), JobError> {
        if self.closed.get() {
            return Err(JobError::ShuttingDown);
        }
        Ok(())
    }

    /// Overload is per shard: its queue against its share of `MAX_QUEUED_JOBS`,
    /// with `Retry-After` from how long its own queue takes to drain. A job
    /// (whose result is retained) is also refused while retained results
    /// fill `MAX_RETAINED_BYTES`.
    fn check_overload(&self, retains: bool) -> Result<(), JobError> {
        let max = self.engine.max_queued_per_shard();
        let queued = self.feed.borrow().queued();
        let retained_full = retains && self.engine.retained_full();
        if (max == 0 || queued < max) && !retained_full {
            return Ok(());
        }
        let c = self.counters();
        c.rejected_overloaded.fetch_add(1, Relaxed);
        let h = c.execution.snapshot();
        let mean_s = if h.count > 0 {
            h.sum_us as f64 / h.count as f64 / 1e6
        } else {
            0.0
        };
        let slots = self.feed.borrow().slots().max(1) as f64;
        let retry_after_s = (queued as f64 * mean_s / slots).ceil().clamp(1.0, 60.0) as u32;
        Err(JobError::Overloaded { retry_after_s })
    }

    fn run_options(&self, opts: &RunOptions, now: Instant) -> (Option<Duration>, Option<Instant>) {
        let timeout = self.engine.effective_timeout(opts.timeout);
        (timeout, timeout.map(|t| now + t))
    }

    async fn execute_local(
        self: Rc<Self>,
        sql: String,
        opts: RunOptions,
    ) -> Result<Arc<QueryResult>, JobError> {
        self.check_open()?;
        self.check_overload(false)?;
        let now = Instant::now();
        let (timeout, deadline) = self.run_options(&opts, now);
        let (tx, rx) = oneshot::channel();
        let seq = self.feed.borrow_mut().push(Work {
            owner: Owner::Execute { sql, reply: tx },
            enqueued: now,
            timeout,
            deadline,
            format: opts.format,
            params: opts.params,
        });
        ShardCounters::add(&self.counters().queued_executes, 1);
        let mut guard = ExecuteGuard {
            core: self.clone(),
            seq,
            done: false,
        };
        self.pump();
        self.ensure_deadline_watcher();
        let r = rx.await.unwrap_or(Err(JobError::ShuttingDown));
        guard.done = true;
        r
    }

    /// Creates a job on this shard, unless its request id names a job
    /// already (checked first, so a repeat is answered even when this shard is
    /// overloaded, and claimed atomically when the job is added).
    fn create(
        self: &Rc<Self>,
        sql: String,
        request_id: Option<Arc<str>>,
        opts: RunOptions,
    ) -> Result<Created, JobError> {
        self.check_open()?;
        if let Some(rid) = request_id.as_deref() {
            if self.engine.request_ids.get(rid).is_some() {
                return Ok(Created::RequestIdTaken(sql));
            }
        }
        self.check_overload(true)?;
        let id = route::new_id_for(self.index, self.count);
        let mut job = Job::new(sql, request_id);
        job.format = opts.format;
        if let Err(lost) = self.table.borrow_mut().insert(self.counters(), id, job) {
            // Another submit of the request id won the claim: this job never
            // ran and was never counted.
            return Ok(Created::RequestIdTaken(lost.sql.unwrap_or_default()));
        }
        let now = Instant::now();
        let (timeout, deadline) = self.run_options(&opts, now);
        let seq = self.feed.borrow_mut().push(Work {
            owner: Owner::Job(id),
            enqueued: now,
            timeout,
            deadline,
            format: opts.format,
            params: opts.params,
        });
        if let Some(job) = self.table.borrow_mut().get_mut(&id) {
            job.feed_seq = Some(seq);
        }
        self.pump();
        self.ensure_deadline_watcher();
        Ok(Created::New(id))
    }

    /// A repeated submit's answer: the job its request id created, as it stands.
    fn existing_local(&self, id: QueryId) -> Result<Submitted, JobError> {
        let table = self.table.borrow();
        let job = table.get(&id).ok_or(JobError::NotFound)?;
        Ok(Submitted {
            id,
            status: job.status,
            existing: true,
        })
    }

    /// The waiting submit's wait on the job's shard: waits up to `wait` for
    /// the job to end; then its status and first `max` rows, dropped after
    /// [`crate::CONSUMED_GRACE`] with `consume` when that answer holds it all.
    /// `NotFound` only when the job is not here at the start.
    async fn wait_local(
        self: Rc<Self>,
        id: QueryId,
        existing: bool,
        wait: Duration,
        max: usize,
        consume: bool,
    ) -> Result<Waited, JobError> {
        let status = self
            .table
            .borrow()
            .get(&id)
            .map(|j| j.status)
            .ok_or(JobError::NotFound)?;
        let submitted = Submitted {
            id,
            status,
            existing,
        };
        let status = match self.clone().status_local(id, Some(wait)).await {
            Ok(st) if st.status.is_terminal() => st,
            Ok(st) => {
                return Ok(Waited::Pending(Submitted {
                    status: st.status,
                    ..submitted
                }))
            }
            // Deleted meanwhile by another request: the submit itself stands.
            Err(_) => return Ok(Waited::Pending(submitted)),
        };
        let first = match status.result {
            Some(_) => self.page_local(id, 0, max).ok(),
            None => None,
        };
        let whole = first.as_ref().is_none_or(|p| !p.has_more());
        let consumed = consume && whole;
        if consumed {
            self.table
                .borrow_mut()
                .consume(self.counters(), &id, Instant::now());
        }
        Ok(Waited::Ended {
            status,
            first,
            consumed,
        })
    }

    async fn status_local(
        self: Rc<Self>,
        id: QueryId,
        wait: Option<Duration>,
    ) -> Result<JobStatus, JobError> {
        let wait = wait.unwrap_or_default().min(MAX_STATUS_WAIT);
        let rx = {
            let mut table = self.table.borrow_mut();
            let job = table.get_mut(&id).ok_or(JobError::NotFound)?;
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
        let table = self.table.borrow();
        table
            .get(&id)
            .map(|j| j.snapshot(id))
            .ok_or(JobError::NotFound)
    }

    fn page_local(&self, id: QueryId, offset: usize, max: usize) -> Result<Page, JobError> {
        let table = self.table.borrow();
        let job = table.get(&id).ok_or(JobError::NotFound)?;
        match job.status {
            Status::Queued | Status::Running => Err(JobError::NotReady(job.status)),
            Status::Failed | Status::Canceled => Err(JobError::NotAvailable {
                status: job.status,
                message: job
                    .failure
                    .as_ref()
                    .map_or_else(String::new, |f| f.to_string()),
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
        let seq = {
            let table = self.table.borrow();
            let job = table.get(&id).ok_or(JobError::NotFound)?;
            if job.status.is_terminal() {
                return Ok(job.snapshot(id));
            }
            job.feed_seq
        };
        let snap = self
            .table
            .borrow_mut()
            .finish(self.counters(), &id, Err(JobError::Canceled))
            .ok_or(JobError::NotFound)?;
        if let Some(seq) = seq {
            self.unfeed(seq);
        }
        Ok(snap)
    }

    fn delete_local(self: &Rc<Self>, id: QueryId) -> Result<JobStatus, JobError> {
        let job = self
            .table
            .borrow_mut()
            .remove(self.counters(), &id)
            .ok_or(JobError::NotFound)?;
        if let (false, Some(seq)) = (job.status.is_terminal(), job.feed_seq) {
            self.unfeed(seq);
        }
        // Dropping the job drops its waiters' senders: they wake and see NotFound.
        Ok(JobStatus {
            id,
            status: Status::Canceled,
            completed_at: job
                .completed_at
                .or_else(|| Some(std::time::SystemTime::now())),
            error: None,
            error_code: None,
            result: None,
            format: job.format,
        })
    }

    /// Takes a job's entry out of the queue at once, or stops its statement.
    fn unfeed(self: &Rc<Self>, seq: u64) {
        let removed = self.feed.borrow_mut().remove_queued(seq);
        if removed.is_none() && self.feed.borrow().stop(seq, StopReason::Canceled) {
            self.ensure_reinterrupter();
        }
    }

    /// Ends work that never started (deadline, shutdown).
    fn end_queued(&self, work: Work, err: JobError) {
        let c = self.counters();
        match work.owner {
            Owner::Job(id) => {
                self.table.borrow_mut().finish(c, &id, Err(err));
            }
            Owner::Execute { reply, .. } => {
                ShardCounters::add(&c.queued_executes, -1);
                if matches!(err, JobError::Timeout { .. }) {
                    c.timeouts.fetch_add(1, Relaxed);
                }
                let _ = reply.send(Err(err));
            }
        }
    }

    /// The result cap for the next statement: `MAX_RESULT_BYTES`, and for a
    /// job also what is left of `MAX_RETAINED_BYTES`.
    fn result_cap(&self, is_job: bool) -> usize {
        let cap = self.engine.cfg.max_result_bytes;
        if !is_job {
            return cap;
        }
        match self.engine.retained_room() {
            None => cap,
            Some(room) if cap == 0 => room.max(1),
            Some(room) => cap.min(room.max(1)),
        }
    }

    /// Hands queued work to free workers, oldest first.
    fn pump(self: &Rc<Self>) {
        loop {
            let Some((seq, work)) = self.feed.borrow_mut().pop_ready() else {
                return;
            };
            let c = self.counters();
            let (job, sql, reply) = match work.owner {
                Owner::Job(id) => {
                    let Some(sql) = self.table.borrow_mut().start(c, &id) else {
                        continue; // not queued any more
                    };
                    (Some(id), sql, None)
                }
                Owner::Execute { sql, reply } => {
                    ShardCounters::add(&c.queued_executes, -1);
                    if reply.is_canceled() {
                        continue; // the caller went away while queued
                    }
                    c.queue_wait.record(work.enqueued.elapsed());
                    c.executed_statements.fetch_add(1, Relaxed);
                    (None, sql, Some(reply))
                }
            };
            ShardCounters::add(&c.active_queries, 1);
            let flight = Flight {
                job,
                ticket: Ticket::new(),
                timeout: work.timeout,
                deadline: work.deadline,
                max_bytes: self.result_cap(job.is_some()),
                format: work.format,
                params: work.params.clone(),
                worker: None,
                reply,
            };
            let rx = self.feed.borrow_mut().hand_over(seq, sql, flight);
            // A worker whose thread is gone left the rotation: keep the free
            // slots other shards read for their placement decisions true.
            c.slots.store(self.feed.borrow().slots() as i64, Relaxed);
            let me = self.clone();
            glommio::spawn_local(async move {
                let outcome = rx.await.ok();
                me.on_done(seq, outcome);
            })
            .detach();
        }
    }

    fn on_done(self: &Rc<Self>, seq: u64, outcome: Option<Outcome>) {
        let Some(flight) = self.feed.borrow_mut().land(seq) else {
            return;
        };
        let c = self.counters();
        ShardCounters::add(&c.active_queries, -1);
        let result = match outcome {
            None => Err(if self.closed.get() {
                JobError::ShuttingDown
            } else {
                JobError::WorkerFailed("the worker stopped".into())
            }),
            Some(o) => {
                c.execution.record(o.exec);
                match o.result {
                    Ok(r) => Ok(Arc::new(r)),
                    Err(ExecFailure::Interrupted) => Err(match flight.ticket.stop_reason() {
                        Some(StopReason::Canceled | StopReason::CallerGone) => JobError::Canceled,
                        Some(StopReason::Deadline) => JobError::Timeout {
                            limit: flight.timeout,
                        },
                        Some(StopReason::Shutdown) => JobError::ShuttingDown,
                        // Nobody here asked: DuckDB's own max_execution_time.
                        None => JobError::Timeout { limit: None },
                    }),
                    Err(ExecFailure::TooLarge) => Err(self.too_large(&flight)),
                    Err(ExecFailure::Failed(m)) => Err(JobError::Execution(m)),
                    Err(ExecFailure::Panicked(m)) => Err(JobError::WorkerFailed(m)),
                }
            }
        };
        match (flight.job, flight.reply) {
            (Some(id), _) => {
                let result = match result {
                    Ok(r) if self.engine.retained_would_overflow(r.retained_bytes()) => {
                        Err(JobError::RetainedFull {
                            limit: self.engine.cfg.max_retained_bytes,
                        })
                    }
                    other => other,
                };
                // A job canceled or deleted meanwhile is left as it is (its
                // result, if any, is dropped here).
                self.table.borrow_mut().finish(c, &id, result);
            }
            (None, Some(reply)) => {
                if matches!(result, Err(JobError::Timeout { .. })) {
                    c.timeouts.fetch_add(1, Relaxed);
                }
                let _ = reply.send(result);
            }
            (None, None) => {}
        }
        self.pump();
    }

    fn too_large(&self, flight: &Flight) -> JobError {
        let limit = self.engine.cfg.max_result_bytes;
        if flight.job.is_some() && (limit == 0 || flight.max_bytes < limit) {
            JobError::RetainedFull {
                limit: self.engine.cfg.max_retained_bytes,
            }
        } else {
            JobError::ResultTooLarge { limit }
        }
    }

    /// Ends or stops whatever passed its deadline.
    fn expire_due(self: &Rc<Self>, now: Instant) {
        let due = self.feed.borrow_mut().take_due(now);
        let mut stopped = false;
        for seq in due {
            let queued = self.feed.borrow_mut().remove_queued(seq);
            match queued {
                Some(work) => {
                    let limit = work.timeout;
                    self.end_queued(work, JobError::Timeout { limit });
                }
                None => stopped |= self.feed.borrow().stop(seq, StopReason::Deadline),
            }
        }
        if stopped {
            self.ensure_reinterrupter();
        }
    }

    /// One task per shard watches deadlines while any are pending.
    fn ensure_deadline_watcher(self: &Rc<Self>) {
        if self.deadline_watcher.get() || self.feed.borrow().next_deadline().is_none() {
            return;
        }
        self.deadline_watcher.set(true);
        let weak = Rc::downgrade(self);
        glommio::spawn_local(async move {
            loop {
                let Some(me) = weak.upgrade() else { return };
                let next = me.feed.borrow().next_deadline();
                drop(me);
                let Some(next) = next else {
                    if let Some(me) = weak.upgrade() {
                        me.deadline_watcher.set(false);
                    }
                    return;
                };
                let now = Instant::now();
                if next > now {
                    glommio::timer::sleep((next - now).min(DEADLINE_TICK)).await;
                }
                let Some(me) = weak.upgrade() else { return };
                me.expire_due(Instant::now());
            }
        })
        .detach();
    }

    /// One task per shard interrupts stopped statements again until they answer.
    fn ensure_reinterrupter(self: &Rc<Self>) {
        if self.reinterrupter.get() {
            return;
        }
        self.reinterrupter.set(true);
        let weak = Rc::downgrade(self);
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(REINTERRUPT_EVERY).await;
                let Some(me) = weak.upgrade() else { return };
                if !me.feed.borrow().reinterrupt_stopped() {
                    me.reinterrupter.set(false);
                    return;
                }
            }
        })
        .detach();
    }
}

/// A submit whose request id kept changing hands ([`MAX_SUBMIT_TRIES`] times):
/// try again shortly.
fn contended() -> JobError {
    JobError::Overloaded { retry_after_s: 1 }
}
