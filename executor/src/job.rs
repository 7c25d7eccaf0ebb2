//! One job's state machine: `QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELED`.
//!
//! Owns the per-job record kept in a shard's table and the public snapshots of
//! it ([`JobStatus`], [`Submitted`]). It never touches DuckDB, timers or other
//! shards; transitions are plain method calls made by the owning shard.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures_channel::oneshot;

use crate::arrow::ResultFormat;
use crate::error::JobError;
use crate::result::QueryResult;
use crate::QueryId;

/// Lifecycle status, as the wire contract spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl Status {
    /// `"QUEUED"`, `"RUNNING"`, `"SUCCEEDED"`, `"FAILED"` or `"CANCELED"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "QUEUED",
            Status::Running => "RUNNING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::Canceled => "CANCELED",
        }
    }

    /// True for `SUCCEEDED`, `FAILED` and `CANCELED`.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Canceled)
    }
}

/// A point-in-time view of a job, as `GET /queries/{id}` reports it.
#[derive(Debug, Clone)]
pub struct JobStatus {
    pub id: QueryId,
    pub status: Status,
    /// Set once terminal.
    pub completed_at: Option<SystemTime>,
    /// The failure text for `FAILED` / `CANCELED`.
    pub error: Option<String>,
    /// The machine-readable reason for `FAILED` / `CANCELED`: the
    /// [`JobError::code`] of why it ended (`EXECUTION_ERROR`, `QUERY_TIMEOUT`,
    /// `RESULT_TOO_LARGE`, `CANCELED`, `SHUTTING_DOWN`, ...).
    pub error_code: Option<&'static str>,
    /// The result of a `SUCCEEDED` job (columns, types, row count, rows).
    pub result: Option<Arc<QueryResult>>,
    /// The result format the job asked for.
    pub format: ResultFormat,
}

/// The answer to a submit.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub id: QueryId,
    /// `QUEUED` for a new job; the existing job's status for a repeated request id.
    pub status: Status,
    /// True when the request id matched an existing job (nothing new was queued).
    pub existing: bool,
}

/// The record a shard keeps per job. Its transitions belong to the job table.
pub(crate) struct Job {
    pub status: Status,
    /// The SQL, held only while queued (taken when a worker starts it).
    pub sql: Option<String>,
    /// Shared with the engine's request-id index, which keys this job by it.
    pub request_id: Option<Arc<str>>,
    pub submitted: Instant,
    pub completed_at: Option<SystemTime>,
    /// When it turned terminal, for expiry.
    pub completed: Option<Instant>,
    pub result: Option<Arc<QueryResult>>,
    /// Why a `FAILED` / `CANCELED` job ended.
    pub failure: Option<JobError>,
    /// The job's place in its shard's feed while queued or running.
    pub feed_seq: Option<u64>,
    /// Long-poll waiters, woken when the job turns terminal (or is dropped).
    pub waiters: Vec<oneshot::Sender<()>>,
    /// The result format the job asked for.
    pub format: ResultFormat,
}

impl Job {
    pub fn new(sql: String, request_id: Option<Arc<str>>) -> Self {
        Job {
            status: Status::Queued,
            sql: Some(sql),
            request_id,
            submitted: Instant::now(),
            completed_at: None,
            completed: None,
            result: None,
            failure: None,
            feed_seq: None,
            waiters: Vec::new(),
            format: ResultFormat::Json,
        }
    }

    pub fn snapshot(&self, id: QueryId) -> JobStatus {
        JobStatus {
            id,
            status: self.status,
            completed_at: self.completed_at,
            error: self.failure.as_ref().map(|f| f.to_string()),
            error_code: self.failure.as_ref().map(|f| f.code()),
            result: self.result.clone(),
            format: self.format,
        }
    }
}
