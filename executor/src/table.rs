//! A shard's job table: its jobs and their expiry.
//!
//! Owns every state transition of the jobs whose id hashes to this shard and
//! the job counters that `/health` reads (queued, running, completed, stored,
//! retained result bytes): `insert` for a new `QUEUED` job, `start` for
//! `QUEUED -> RUNNING`, one `finish` for every terminal transition (success,
//! failure, cancel, timeout, shutdown), `remove` for delete, `sweep` for
//! expiry (and `consume`, which shortens a delivered job's stay to
//! [`CONSUMED_GRACE`]). It is the only writer of the engine's request-id
//! index (`request_index.rs`) for its jobs: `insert` claims a job's request id
//! before the job is added (a lost claim adds nothing), and every way out of
//! the table (delete, expiry, consumed drop, the table's drop at shutdown)
//! releases it if it still names that job. It never calls DuckDB, never
//! touches the feed (the shard moves work between the two), and lives on one
//! reactor thread.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hashbrown::HashMap;

use crate::error::JobError;
use crate::expiry::ExpiryQueue;
use crate::job::{Job, JobStatus, Status};
use crate::request_index::RequestIndex;
use crate::result::QueryResult;
use crate::stats::ShardCounters;
use crate::QueryId;

/// How long a consumed job stays after its answer (unless the TTL is shorter):
/// long enough that a submit retried after a lost answer finds it (the client
/// retries within a second), short enough that a busy agent holds few of them.
pub const CONSUMED_GRACE: Duration = Duration::from_secs(5);

pub(crate) struct JobTable {
    jobs: HashMap<QueryId, Job>,
    /// The engine's request-id index, shared with every shard's table.
    request_ids: Arc<RequestIndex>,
    expiry: ExpiryQueue,
    /// Consumed jobs, due [`CONSUMED_GRACE`] after their answer.
    consumed: ExpiryQueue,
}

impl JobTable {
    pub fn new(request_ids: Arc<RequestIndex>) -> JobTable {
        JobTable {
            jobs: HashMap::new(),
            request_ids,
            expiry: ExpiryQueue::default(),
            consumed: ExpiryQueue::default(),
        }
    }

    /// Adds a new `QUEUED` job, unless its request id already names a job (on
    /// any shard, one claimed at the same moment included): then nothing is
    /// added or counted and the job comes back untouched. The claim is made
    /// just before the job is added, on this shard's thread with no `.await`
    /// between, so whoever finds `id` in the index and asks this shard for
    /// it is served after the job is in the table.
    pub fn insert(&mut self, c: &ShardCounters, id: QueryId, job: Job) -> Result<(), Box<Job>> {
        if let Some(r) = &job.request_id {
            if self.request_ids.claim(r.clone(), id).is_err() {
                return Err(Box::new(job));
            }
        }
        self.jobs.insert(id, job);
        ShardCounters::add(&c.queued_jobs, 1);
        ShardCounters::add(&c.stored_jobs, 1);
        c.submitted_jobs.fetch_add(1, Relaxed);
        Ok(())
    }

    pub fn get(&self, id: &QueryId) -> Option<&Job> {
        self.jobs.get(id)
    }

    pub fn get_mut(&mut self, id: &QueryId) -> Option<&mut Job> {
        self.jobs.get_mut(id)
    }

    /// `QUEUED -> RUNNING`: hands out the SQL; `None` if the job is not queued.
    pub fn start(&mut self, c: &ShardCounters, id: &QueryId) -> Option<String> {
        let job = self
            .jobs
            .get_mut(id)
            .filter(|j| j.status == Status::Queued)?;
        let sql = job.sql.take()?;
        job.status = Status::Running;
        c.queue_wait.record(job.submitted.elapsed());
        ShardCounters::add(&c.queued_jobs, -1);
        ShardCounters::add(&c.running_jobs, 1);
        Some(sql)
    }

    /// Every terminal transition: a queued or running job ends with `outcome`
    /// (a result, or why it failed or was canceled). Wakes its long-poll
    /// waiters and schedules its expiry. Returns the job's snapshot, or `None`
    /// when it is unknown or already terminal (which is then left as it is).
    pub fn finish(
        &mut self,
        c: &ShardCounters,
        id: &QueryId,
        outcome: Result<Arc<QueryResult>, JobError>,
    ) -> Option<JobStatus> {
        let job = self.jobs.get_mut(id)?;
        match job.status {
            Status::Queued => ShardCounters::add(&c.queued_jobs, -1),
            Status::Running => ShardCounters::add(&c.running_jobs, -1),
            _ => return None,
        }
        ShardCounters::add(&c.completed_jobs, 1);
        let status = match &outcome {
            Ok(_) => Status::Succeeded,
            Err(JobError::Canceled | JobError::ShuttingDown) => Status::Canceled,
            Err(_) => Status::Failed,
        };
        job.status = status;
        job.sql = None;
        job.feed_seq = None;
        match outcome {
            Ok(r) => {
                ShardCounters::add(&c.result_bytes, r.retained_bytes() as i64);
                job.result = Some(r);
            }
            Err(e) => {
                if matches!(e, JobError::Timeout { .. }) {
                    c.timeouts.fetch_add(1, Relaxed);
                }
                job.failure = Some(e);
            }
        }
        job.completed_at = Some(SystemTime::now());
        let now = Instant::now();
        job.completed = Some(now);
        for w in job.waiters.drain(..) {
            // A waiter that gave up has dropped its receiver; nothing to do then.
            let _ = w.send(());
        }
        let snap = job.snapshot(*id);
        self.expiry.push(now, *id);
        Some(snap)
    }

    /// Deletes a job in any state; the caller stops its statement if it was
    /// queued or running. Dropping the job wakes its waiters (they see NotFound).
    pub fn remove(&mut self, c: &ShardCounters, id: &QueryId) -> Option<Job> {
        let job = self.jobs.remove(id)?;
        match job.status {
            Status::Queued => ShardCounters::add(&c.queued_jobs, -1),
            Status::Running => ShardCounters::add(&c.running_jobs, -1),
            _ => ShardCounters::add(&c.completed_jobs, -1),
        }
        self.forget(c, id, &job);
        Some(job)
    }

    /// Bookkeeping shared by delete and expiry for a job already out of the table.
    fn forget(&mut self, c: &ShardCounters, id: &QueryId, job: &Job) {
        ShardCounters::add(&c.stored_jobs, -1);
        if let Some(r) = &job.result {
            ShardCounters::add(&c.result_bytes, -(r.retained_bytes() as i64));
        }
        if let Some(rid) = &job.request_id {
            self.request_ids.release(rid, *id);
        }
    }

    /// Marks a terminal job whose whole result was delivered: it is dropped
    /// [`CONSUMED_GRACE`] from now (or at its TTL, if sooner) without waiting for
    /// a delete. Also drops the consumed jobs already due, so a busy shard keeps
    /// only a grace period's worth of them between sweeps.
    pub fn consume(&mut self, c: &ShardCounters, id: &QueryId, now: Instant) {
        if self.jobs.get(id).is_some_and(|j| j.status.is_terminal()) {
            self.consumed.push(now, *id);
        }
        self.drop_consumed(c, now);
    }

    /// Drops consumed jobs past their grace; O(due).
    pub fn drop_consumed(&mut self, c: &ShardCounters, now: Instant) {
        let mut cleaned = 0;
        while let Some(id) = self.consumed.pop_due(now, CONSUMED_GRACE) {
            cleaned += self.drop_terminal(c, &id);
        }
        if cleaned > 0 {
            c.cleaned_jobs.fetch_add(cleaned, Relaxed);
        }
    }

    /// Drops terminal jobs completed at least `ttl` ago, and consumed jobs past
    /// their grace; O(expired).
    pub fn sweep(&mut self, c: &ShardCounters, now: Instant, ttl: Duration) {
        let mut cleaned = 0;
        while let Some(id) = self.expiry.pop_due(now, ttl) {
            cleaned += self.drop_terminal(c, &id);
        }
        if cleaned > 0 {
            c.cleaned_jobs.fetch_add(cleaned, Relaxed);
        }
        self.drop_consumed(c, now);
    }

    /// Drops one expired job: 1 when it was still there and terminal, 0 when it
    /// was deleted (or dropped) earlier.
    fn drop_terminal(&mut self, c: &ShardCounters, id: &QueryId) -> u64 {
        if !self.jobs.get(id).is_some_and(|j| j.status.is_terminal()) {
            return 0;
        }
        match self.jobs.remove(id) {
            Some(job) => {
                ShardCounters::add(&c.completed_jobs, -1);
                self.forget(c, id, &job);
                1
            }
            None => 0,
        }
    }
}

impl Drop for JobTable {
    /// A table dropped with its shard (shutdown) releases its jobs' request
    /// ids: the index, owned by the engine, may outlive the shards.
    fn drop(&mut self) {
        for (id, job) in &self.jobs {
            if let Some(rid) = &job.request_id {
                self.request_ids.release(rid, *id);
            }
        }
    }
}
