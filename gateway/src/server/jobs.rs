//! The gateway's own query jobs: ids (never an agent's), owners, states,
//! long-polled status, paged rows, caps and expiry.
//!
//! Owns per-user isolation (a job is visible to its owner only: any other
//! user gets the same 404 as for an unknown id) and bounded memory: at most
//! `max_jobs_per_user` and `max_jobs_total` jobs; a job holds its stream of
//! rows ([`QueryRows`], fed page by page by the agent client or the local
//! DuckDB thread through a bounded channel) and a window of the rows already
//! pulled, as JSON, at most [`REREAD_BYTES_PER_JOB`] besides the page being
//! cut, so pages can be read at any offset and read again, as the agent's
//! can, while the window holds them. Jobs untouched for the TTL are dropped,
//! which cancels and deletes their work on the agent. It never materializes a
//! whole result.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::wire::page_token;
use client::{ClientError, QueryRows};
use tokio::sync::watch;

use super::rows_json;
use crate::query::audit::{Audit, Ending, StopReason, EXPIRED};

/// Rows per results page when the caller does not say.
pub const DEFAULT_PAGE_ROWS: usize = 1000;
/// Most rows per results page.
pub const MAX_PAGE_ROWS: usize = 5000;
/// Longest a status long-poll waits.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// A job's state on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "RUNNING",
            JobState::Succeeded => "SUCCEEDED",
            JobState::Failed => "FAILED",
            JobState::Canceled => "CANCELED",
        }
    }
    pub fn is_terminal(self) -> bool {
        self != JobState::Running
    }
}

/// Bytes of already-read rows a job keeps (as their JSON) so that a page
/// can be read again, as the agent allows; older rows are dropped first,
/// and a page token naming one of them is answered 410 `PAGE_GONE`.
pub const REREAD_BYTES_PER_JOB: usize = 4 << 20;

/// What a row held for re-reading costs besides its JSON (the slice's handle).
const ROW_OVERHEAD_BYTES: usize = std::mem::size_of::<Bytes>();

/// Where a job's rows stand: a window of rows pulled from the engine, as
/// their JSON, from `window_start` to `pulled_end`, which pages are cut
/// from, at any offset the window holds, in any order.
pub struct Results {
    pub columns: Vec<String>,
    pub column_types: Vec<String>,
    /// Total rows when known (remote results; local once fully read).
    pub row_count: Option<u64>,
    rows: Option<QueryRows>,
    /// The window: one JSON array per row, `window[0]` is row `window_start`.
    window: VecDeque<Bytes>,
    window_start: u64,
    /// What the window holds, by [`REREAD_BYTES_PER_JOB`]'s count.
    window_bytes: usize,
    pub audit: Audit,
    /// What an engine error on a later page may show.
    pub(super) scope: crate::query::ErrorScope,
}

/// What [`Results::page`] hands back.
pub struct PageOut {
    /// The page's rows, each a JSON array.
    pub rows: Vec<Bytes>,
    /// `None` on the last page.
    pub next_offset: Option<u64>,
    pub row_count: Option<u64>,
}

/// Why a page cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("page_token names row {offset}, no longer held: the gateway keeps the last {REREAD_BYTES_PER_JOB} bytes of a query's rows for re-reading, from row {first_held}")]
    Gone { offset: u64, first_held: u64 },
    #[error(transparent)]
    Engine(#[from] ClientError),
}

impl Results {
    pub(super) fn new(rows: QueryRows, audit: Audit, scope: crate::query::ErrorScope) -> Results {
        Results {
            columns: rows.columns.clone(),
            column_types: rows.column_types.clone(),
            row_count: rows.row_count,
            rows: Some(rows),
            window: VecDeque::new(),
            window_start: 0,
            window_bytes: 0,
            audit,
            scope,
        }
    }

    /// The row after the last one pulled from the engine.
    fn pulled_end(&self) -> u64 {
        self.window_start + self.window.len() as u64
    }

    /// Pulls one engine page into the window; `false` at the end of the stream.
    async fn pull(&mut self, keep_from: u64) -> Result<bool, ClientError> {
        let Some(rows) = self.rows.as_mut() else {
            return Ok(false);
        };
        match rows.next_page().await {
            Ok(Some(p)) => {
                let mut buf = Vec::with_capacity(p.len() * 32);
                let mut ends = Vec::with_capacity(p.len());
                for r in &p {
                    rows_json::write_rows(&mut buf, std::slice::from_ref(r), true);
                    ends.push(buf.len());
                }
                drop(p);
                let buf = Bytes::from(buf);
                let mut start = 0;
                for end in ends {
                    self.window_bytes += end - start + ROW_OVERHEAD_BYTES;
                    self.window.push_back(buf.slice(start..end));
                    start = end;
                }
                // Drop the oldest rows over the budget, never the page being cut.
                while self.window_bytes > REREAD_BYTES_PER_JOB && self.window_start < keep_from {
                    let Some(old) = self.window.pop_front() else {
                        break;
                    };
                    self.window_bytes -= old.len() + ROW_OVERHEAD_BYTES;
                    self.window_start += 1;
                }
                let pulled = self.pulled_end();
                if self.row_count == Some(pulled) {
                    // Every row the engine announced is here: no empty last page.
                    self.close_stream();
                }
                self.audit.rows = self.audit.rows.max(pulled);
                Ok(true)
            }
            Ok(None) => {
                self.close_stream();
                Ok(false)
            }
            Err(e) => {
                self.rows = None;
                self.audit.finish(None, "failed", Some(&e.to_string()));
                Err(e)
            }
        }
    }

    /// Ends the engine's stream (closing it off the caller's path); the row
    /// count is then known.
    fn close_stream(&mut self) {
        if let Some(r) = self.rows.take() {
            tokio::spawn(r.close());
        }
        self.row_count = Some(self.pulled_end());
    }

    /// Up to `max` rows from `offset`: any offset, as the agent's pages. Rows
    /// are pulled from the engine as far as the page needs; rows read before
    /// are cut from the window while it holds them.
    pub async fn page(&mut self, offset: u64, max: usize) -> Result<PageOut, PageError> {
        if offset < self.window_start {
            return Err(PageError::Gone {
                offset,
                first_held: self.window_start,
            });
        }
        let want = offset.saturating_add(max as u64);
        // Pulling keeps every row from `offset` on, so the window still
        // starts at or before it afterwards.
        while self.pulled_end() < want && self.pull(offset).await? {}
        let end = want.min(self.pulled_end());
        let rows: Vec<Bytes> = (offset.min(end)..end)
            .map(|o| self.window[(o - self.window_start) as usize].clone())
            .collect();
        let last = self.rows.is_none() && end >= self.pulled_end();
        if last && offset <= end {
            self.audit.finish(None, "answered", None);
        }
        Ok(PageOut {
            rows,
            next_offset: (!last).then_some(end),
            row_count: self.row_count,
        })
    }
}

/// One job.
pub struct Job {
    pub id: String,
    pub owner: String,
    pub created: Instant,
    pub state: watch::Sender<JobState>,
    pub inner: tokio::sync::Mutex<JobInner>,
    last_touch: Mutex<Instant>,
    /// The task running the query (aborted on cancel/delete/expiry).
    pub task: Mutex<Option<tokio::task::AbortHandle>>,
    /// Shared with the running task's audit record: set before the task is
    /// aborted, so the record logs `canceled` / `deleted`, not `abandoned`.
    pub stop: StopReason,
    /// Where its query waits in the admission queue, while it does (the
    /// status then says `QUEUED` and its position).
    pub queue_place: Arc<crate::query::admission::Place>,
}

/// A job's mutable part.
#[derive(Default)]
pub struct JobInner {
    pub results: Option<Results>,
    /// Code and message, when failed or canceled.
    pub error: Option<(String, String)>,
    /// The endpoint and the routing decision in words, once routed.
    pub routing: Option<(String, String)>,
}

impl Job {
    pub fn touch(&self) {
        *self.last_touch.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
    fn idle(&self) -> Duration {
        self.last_touch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }
    pub fn state(&self) -> JobState {
        *self.state.borrow()
    }
    /// Moves a running job to `to`; a job canceled meanwhile stays canceled.
    pub fn finish_running(&self, to: JobState) {
        self.state.send_if_modified(|s| {
            let running = *s == JobState::Running;
            if running {
                *s = to;
            }
            running
        });
    }
    /// Waits until the job is terminal or `wait` passed.
    pub async fn wait(&self, wait: Duration) -> JobState {
        let mut rx = self.state.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|s| s.is_terminal())).await;
        self.state()
    }
    /// Stops the work: aborts the running task, drops the rows (which cancels
    /// and deletes the agent's job); the audit line says `why`. Terminal
    /// states stay.
    pub async fn cancel(&self, why: Ending) -> JobState {
        let stopped = self.state.send_if_modified(|s| {
            if *s == JobState::Running {
                *s = JobState::Canceled;
                true
            } else {
                false
            }
        });
        if stopped {
            // Before the abort: the task's record reads it when dropped.
            self.stop.set(why);
        }
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
        if stopped {
            let mut inner = self.inner.lock().await;
            if let Some(mut r) = inner.results.take() {
                r.audit.finish(None, why.outcome, Some(why.reason));
            }
            if inner.error.is_none() {
                inner.error = Some(("CANCELED".into(), why.reason.into()));
            }
        }
        self.state()
    }
}

/// Why a job could not be created.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("{user} already holds {max} queries: read, cancel or delete some first")]
    UserFull { user: String, max: usize },
    #[error("the gateway holds {max} queries, its limit: try again later")]
    Full { max: usize },
}

/// All jobs.
pub struct Jobs {
    max_per_user: usize,
    max_total: usize,
    ttl: Duration,
    map: Mutex<HashMap<String, Arc<Job>>>,
}

impl Jobs {
    pub fn new(max_per_user: usize, max_total: usize, ttl: Duration) -> Jobs {
        Jobs {
            max_per_user,
            max_total,
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A new running job for `owner`, within the caps.
    pub fn create(&self, owner: &str) -> Result<Arc<Job>, JobsError> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max_total {
            return Err(JobsError::Full {
                max: self.max_total,
            });
        }
        if map.values().filter(|j| j.owner == owner).count() >= self.max_per_user {
            return Err(JobsError::UserFull {
                user: owner.to_string(),
                max: self.max_per_user,
            });
        }
        let id = new_query_id();
        let job = Arc::new(Job {
            id: id.clone(),
            owner: owner.to_string(),
            created: Instant::now(),
            state: watch::Sender::new(JobState::Running),
            inner: tokio::sync::Mutex::new(JobInner::default()),
            last_touch: Mutex::new(Instant::now()),
            task: Mutex::new(None),
            stop: StopReason::default(),
            queue_place: Arc::default(),
        });
        map.insert(id, job.clone());
        Ok(job)
    }

    /// The job, when `user` owns it (else `None`, as for an unknown id).
    pub fn get(&self, id: &str, user: &str) -> Option<Arc<Job>> {
        let j = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .filter(|j| j.owner == user)
            .cloned()?;
        j.touch();
        Some(j)
    }

    /// Removes the job when `user` owns it.
    pub fn remove(&self, id: &str, user: &str) -> Option<Arc<Job>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(id).is_some_and(|j| j.owner == user) {
            map.remove(id)
        } else {
            None
        }
    }

    /// Drops jobs idle for longer than the TTL; returns them (the caller
    /// cancels them off the lock).
    pub fn expire(&self) -> Vec<Arc<Job>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let old: Vec<String> = map
            .values()
            .filter(|j| j.idle() > self.ttl)
            .map(|j| j.id.clone())
            .collect();
        old.iter().filter_map(|id| map.remove(id)).collect()
    }

    /// Starts the expiry task: every second or so, drops expired jobs.
    pub fn spawn_reaper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(jobs) = me.upgrade() else { return };
                for j in jobs.expire() {
                    tracing::info!(query_id = %j.id, user = %j.owner, "job expired");
                    j.cancel(EXPIRED).await;
                    if let Some(mut r) = j.inner.lock().await.results.take() {
                        r.audit.finish(None, EXPIRED.outcome, Some(EXPIRED.reason));
                    }
                }
            }
        })
    }
}

/// Parses a results page token (the agent's form: base64 of the decimal offset).
pub fn parse_page_token(token: &str) -> Option<u64> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    std::str::from_utf8(&raw).ok()?.parse().ok()
}

/// A page token for `offset`.
pub fn token(offset: u64) -> String {
    page_token(offset)
}

/// A new query id: a version-4 UUID whose 122 random bits come from SipHash,
/// keyed once per process from the OS's randomness (std's `RandomState`),
/// over a counter. As unpredictable to a caller as `Uuid::new_v4` without
/// the key, and no `getrandom` system call per query (~1% of the gateway's
/// CPU per query in the overhead bench's profile).
pub fn new_query_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let key = KEY.get_or_init(std::collections::hash_map::RandomState::new);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let half = |lane: u64| {
        let mut h = key.build_hasher();
        h.write_u64(n);
        h.write_u64(lane);
        h.finish()
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&half(0).to_le_bytes());
    bytes[8..].copy_from_slice(&half(1).to_le_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_ids_are_distinct_v4_uuids() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_query_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            let u = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(u.get_version_num(), 4, "{id}");
            assert_eq!(u.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
        // Not a counter in disguise: consecutive ids share no long prefix.
        let a = new_query_id();
        let b = new_query_id();
        assert_ne!(a[..8], b[..8]);
    }
}
