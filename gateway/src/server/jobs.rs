//! The gateway's own query jobs: ids (never an agent's), owners, states,
//! long-polled status, rows read forward page by page, caps and expiry.
//!
//! Owns per-user isolation (a job is visible to its owner only: any other
//! user gets the same 404 as for an unknown id) and bounded memory: at most
//! `max_jobs_per_user` and `max_jobs_total` jobs; a job holds its stream of
//! rows ([`QueryRows`], fed page by page by the agent client or the local
//! DuckDB thread through a bounded channel), the rows of one agent page not
//! yet handed out, and the last page it served (so a retried request gets the
//! same page). Jobs untouched for the TTL are dropped, which cancels and
//! deletes their work on the agent. It never materializes a whole result.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::wire::page_token;
use client::{ClientError, QueryRows, Row};
use tokio::sync::watch;

use super::audit::Audit;

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

/// Where a job's rows stand.
pub struct Results {
    pub columns: Vec<String>,
    pub column_types: Vec<String>,
    /// Total rows when known (remote results; local once fully read).
    pub row_count: Option<u64>,
    rows: Option<QueryRows>,
    /// Rows received but not yet handed out.
    pending: VecDeque<Row>,
    /// Offset of the next row to hand out.
    next_offset: u64,
    /// The last page served: its offset and encoded body, for retries.
    last_page: Option<(u64, Bytes)>,
    pub audit: Audit,
}

/// What [`Results::page`] hands back.
pub struct PageOut {
    pub offset: u64,
    pub rows: Vec<Row>,
    /// `None` on the last page.
    pub next_offset: Option<u64>,
    pub row_count: Option<u64>,
}

impl Results {
    pub fn new(rows: QueryRows, audit: Audit) -> Results {
        Results {
            columns: rows.columns.clone(),
            column_types: rows.column_types.clone(),
            row_count: rows.row_count,
            rows: Some(rows),
            pending: VecDeque::new(),
            next_offset: 0,
            last_page: None,
            audit,
        }
    }

    /// A page served before, when `offset` names it again.
    pub fn replay(&self, offset: u64) -> Option<Bytes> {
        self.last_page
            .as_ref()
            .filter(|(o, _)| *o == offset)
            .map(|(_, b)| b.clone())
    }

    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The next `max` rows from `offset`, which must be the next unread one.
    pub async fn page(&mut self, offset: u64, max: usize) -> Result<PageOut, ClientError> {
        debug_assert_eq!(offset, self.next_offset);
        while self.pending.len() < max {
            let Some(rows) = self.rows.as_mut() else {
                break;
            };
            match rows.next_page().await {
                Ok(Some(p)) => self.pending.extend(p),
                Ok(None) => {
                    // The stream is done; close it off the caller's path.
                    if let Some(r) = self.rows.take() {
                        tokio::spawn(r.close());
                    }
                }
                Err(e) => {
                    self.rows = None;
                    self.audit.finish(None, "failed", Some(&e.to_string()));
                    return Err(e);
                }
            }
        }
        let n = max.min(self.pending.len());
        let page: Vec<Row> = self.pending.drain(..n).collect();
        self.next_offset += n as u64;
        if self.pending.is_empty() && self.row_count == Some(self.next_offset) {
            // Every row the engine announced is out: no empty last page.
            if let Some(r) = self.rows.take() {
                tokio::spawn(r.close());
            }
        }
        self.audit.rows = self.next_offset;
        let done = self.rows.is_none() && self.pending.is_empty();
        if done {
            self.row_count = Some(self.next_offset);
            self.audit.finish(None, "answered", None);
        }
        Ok(PageOut {
            offset,
            rows: page,
            next_offset: (!done).then_some(self.next_offset),
            row_count: self.row_count,
        })
    }

    /// Remembers the encoded body of the page at `offset`.
    pub fn remember(&mut self, offset: u64, body: Bytes) {
        self.last_page = Some((offset, body));
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
    /// Waits until the job is terminal or `wait` passed.
    pub async fn wait(&self, wait: Duration) -> JobState {
        let mut rx = self.state.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|s| s.is_terminal())).await;
        self.state()
    }
    /// Stops the work: aborts the running task, drops the rows (which cancels
    /// and deletes the agent's job). Terminal states stay.
    pub async fn cancel(&self) -> JobState {
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
        self.state.send_if_modified(|s| {
            if *s == JobState::Running {
                *s = JobState::Canceled;
                true
            } else {
                false
            }
        });
        if self.state() == JobState::Canceled {
            let mut inner = self.inner.lock().await;
            if let Some(mut r) = inner.results.take() {
                r.audit
                    .finish(None, "canceled", Some("canceled by its user"));
            }
            if inner.error.is_none() {
                inner.error = Some(("CANCELED".into(), "canceled by its user".into()));
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
        let id = uuid::Uuid::new_v4().to_string();
        let job = Arc::new(Job {
            id: id.clone(),
            owner: owner.to_string(),
            created: Instant::now(),
            state: watch::Sender::new(JobState::Running),
            inner: tokio::sync::Mutex::new(JobInner::default()),
            last_touch: Mutex::new(Instant::now()),
            task: Mutex::new(None),
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
                    j.cancel().await;
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
