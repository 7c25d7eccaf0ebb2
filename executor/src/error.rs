//! Error types the crate hands to its callers.
//!
//! Owns the mapping from failures to the wire contract's error codes
//! (`JobError::code`). It never formats HTTP bodies: that is the agent's job.

use std::fmt;

use crate::job::Status;

/// Why [`crate::Engine::open`] failed. Each variant carries DuckDB's own message
/// where DuckDB produced one, so the operator sees the real cause at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// The configuration cannot work (e.g. zero shards).
    Config(String),
    /// DuckDB could not open or create the database.
    Open(String),
    /// A `SET` of max_memory / threads was refused.
    Setting {
        setting: &'static str,
        message: String,
    },
    /// A connection could not be created.
    Connect(String),
    /// The init SQL failed on a shard connection (DuckDB's message).
    InitSql { shard: usize, message: String },
    /// A worker thread could not be spawned.
    Thread(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Config(m) => write!(f, "invalid engine configuration: {m}"),
            EngineError::Open(m) => write!(f, "cannot open DuckDB database: {m}"),
            EngineError::Setting { setting, message } => {
                write!(f, "cannot set DuckDB {setting}: {message}")
            }
            EngineError::Connect(m) => write!(f, "cannot connect to DuckDB: {m}"),
            EngineError::InitSql { shard, message } => {
                write!(f, "init SQL failed on shard {shard}: {message}")
            }
            EngineError::Thread(m) => write!(f, "cannot start a worker thread: {m}"),
        }
    }
}

impl std::error::Error for EngineError {}

/// Why a shard operation did not produce what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// No job with that id (never existed, deleted, or expired).
    NotFound,
    /// Results asked for while the job is still `QUEUED` or `RUNNING`.
    NotReady(Status),
    /// Results asked for a `FAILED` or `CANCELED` job; `message` is its error.
    NotAvailable { status: Status, message: String },
    /// Too much work is queued; try again after `retry_after_s` seconds.
    Overloaded { retry_after_s: u32 },
    /// DuckDB refused or failed the SQL (its message, verbatim).
    Execution(String),
    /// The encoded result would exceed `max_result_bytes`.
    ResultTooLarge { limit: usize },
    /// The statement was interrupted by a cancel (only `/execute` sees this).
    Canceled,
    /// The engine is shutting down and takes no more work.
    ShuttingDown,
    /// The statement's deadline passed (queued or running); `limit` is the
    /// timeout that applied, or `None` when DuckDB's own `max_execution_time`
    /// stopped it.
    Timeout { limit: Option<std::time::Duration> },
    /// The worker running the statement failed (a bug); the statement was
    /// abandoned, never retried.
    WorkerFailed(String),
    /// Retained results already use the `MAX_RETAINED_BYTES` budget.
    RetainedFull { limit: usize },
    /// The SQL text is refused before DuckDB sees it (size or nesting bound).
    Invalid(String),
}

impl JobError {
    /// The wire contract's error code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            JobError::NotFound => "NOT_FOUND",
            JobError::NotReady(_) => "QUERY_NOT_READY",
            JobError::NotAvailable { .. } => "QUERY_NOT_AVAILABLE",
            JobError::Overloaded { .. } => "OVERLOADED",
            JobError::Execution(_) => "EXECUTION_ERROR",
            JobError::ResultTooLarge { .. } => "RESULT_TOO_LARGE",
            JobError::Canceled => "CANCELED",
            JobError::ShuttingDown => "SHUTTING_DOWN",
            JobError::Timeout { .. } => "QUERY_TIMEOUT",
            JobError::WorkerFailed(_) => "INTERNAL_ERROR",
            JobError::RetainedFull { .. } => "RESULT_TOO_LARGE",
            JobError::Invalid(_) => "VALIDATION_ERROR",
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::NotFound => f.write_str("query not found"),
            JobError::NotReady(s) => write!(f, "query is {}; results are not ready", s.as_str()),
            JobError::NotAvailable { status, message } => {
                write!(f, "query {}: {message}", status.as_str())
            }
            JobError::Overloaded { retry_after_s } => {
                write!(f, "too many queued jobs; retry after {retry_after_s}s")
            }
            JobError::Execution(m) => f.write_str(m),
            JobError::ResultTooLarge { limit } => {
                write!(f, "result exceeds the limit of {limit} encoded bytes")
            }
            JobError::Canceled => f.write_str("query was canceled"),
            JobError::ShuttingDown => f.write_str("the agent is shutting down"),
            JobError::Timeout { limit: Some(d) } => {
                write!(f, "query exceeded its timeout of {} ms", d.as_millis())
            }
            JobError::Timeout { limit: None } => f.write_str(
                "query exceeded DuckDB's max_execution_time (set by DUCKDB_INIT_SQL)",
            ),
            JobError::WorkerFailed(m) => write!(
                f,
                "internal error while running the statement ({m}); it was abandoned and not retried"
            ),
            JobError::Invalid(m) => f.write_str(m),
            JobError::RetainedFull { limit } => write!(
                f,
                "retained results would exceed MAX_RETAINED_BYTES ({limit} bytes); fetch and delete finished jobs, or retry later"
            ),
        }
    }
}

impl std::error::Error for JobError {}
