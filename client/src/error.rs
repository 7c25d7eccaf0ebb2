//! The client's errors, one variant per thing a caller decides on differently.
//!
//! Owns the mapping from an agent's HTTP status and error body to a typed error. It
//! never retries or logs; callers (and `agent.rs`) decide that.

use std::time::Duration;

/// Everything that can go wrong running a query or talking to an agent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// 401: wrong token or a refused signature.
    #[error("{endpoint}: authentication refused (token or request signature)")]
    Auth { endpoint: String },
    /// 404 for a job id (deleted, expired, or never there).
    #[error("{endpoint}: not found: {what}")]
    NotFound { endpoint: String, what: String },
    /// 409 QUERY_NOT_READY: results asked for while the job still runs.
    #[error("{endpoint}: query not ready ({message})")]
    NotReady { endpoint: String, message: String },
    /// 429 OVERLOADED (or 503 SHUTTING_DOWN) and the caller's deadline left no time
    /// to retry after `retry_after`.
    #[error("{endpoint}: overloaded ({code}), retry after {retry_after:?}")]
    Overloaded {
        endpoint: String,
        code: String,
        retry_after: Option<Duration>,
    },
    /// The SQL failed: the agent's (or local DuckDB's) code and message, e.g.
    /// `EXECUTION_ERROR`, `RESULT_TOO_LARGE`, `QUERY_NOT_AVAILABLE`.
    #[error("{code}: {message}")]
    Execution { code: String, message: String },
    /// 400: the agent refused the request itself (`PARSE_ERROR`, `VALIDATION_ERROR`).
    #[error("{endpoint}: request refused ({code}): {message}")]
    BadRequest {
        endpoint: String,
        code: String,
        message: String,
    },
    /// The job was canceled (by someone else, or the agent shutting down).
    #[error("query canceled: {message}")]
    Canceled { message: String },
    /// The caller's deadline passed; the job was canceled and deleted on the agent.
    #[error("deadline exceeded")]
    Timeout,
    /// Reset or closed after the request may have reached the agent (mid-answer,
    /// or before an answer): the statement may have started there.
    #[error("{endpoint}: transport error: {message}")]
    Transport { endpoint: String, message: String },
    /// No connection could be made (refused, connect timeout, no route): nothing
    /// was sent, so the statement certainly did not start there.
    #[error("{endpoint}: unreachable: {message}")]
    Unreachable { endpoint: String, message: String },
    /// The request was sent and no answer began within what the call allows (what
    /// it asked the agent to hold, plus the first-byte deadline): the agent may be
    /// hung, and the statement may have started there.
    #[error(
        "{endpoint}: no answer within {waited:?} (first-byte deadline; the agent may be hung)"
    )]
    Unresponsive { endpoint: String, waited: Duration },
    /// The agent answered something the contract does not allow (bad JSON, an
    /// unknown status, a body over the size limit).
    #[error("{endpoint}: bad answer: {message}")]
    Protocol { endpoint: String, message: String },
    /// The resolver chose an endpoint it cannot use and the caller's assignment does
    /// not allow local fallback.
    #[error("endpoint {endpoint} unavailable: {reason}")]
    Unavailable { endpoint: String, reason: String },
    /// A client or endpoint setting that cannot work (a URL that is not `http://host:port`,
    /// a token that is not a valid header value).
    #[error("configuration: {0}")]
    Config(String),
    /// Local execution could not start (DuckDB would not open, a thread failed).
    #[error("local executor: {0}")]
    Local(String),
}

impl ClientError {
    /// A short stable name for logs and exit codes.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Auth { .. } => "auth",
            ClientError::NotFound { .. } => "not_found",
            ClientError::NotReady { .. } => "not_ready",
            ClientError::Overloaded { .. } => "overloaded",
            ClientError::Execution { .. } => "execution",
            ClientError::BadRequest { .. } => "bad_request",
            ClientError::Canceled { .. } => "canceled",
            ClientError::Timeout => "timeout",
            ClientError::Transport { .. } => "transport",
            ClientError::Unreachable { .. } => "unreachable",
            ClientError::Unresponsive { .. } => "unresponsive",
            ClientError::Protocol { .. } => "protocol",
            ClientError::Unavailable { .. } => "unavailable",
            ClientError::Config(_) => "config",
            ClientError::Local(_) => "local",
        }
    }

    /// Whether this proves the statement never started on the endpoint (nothing
    /// was sent, or the agent refused it before queuing: 429 or 503), so it may
    /// run elsewhere without running twice.
    pub fn never_started(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. } | ClientError::Overloaded { .. }
        )
    }

    /// This error as met after the statement was queued (a status poll, a
    /// page): whatever the call says, the statement had started, so an
    /// unreachable or refusing agent is a broken transport, never
    /// [`Self::never_started`].
    pub fn after_queued(self) -> ClientError {
        match self {
            ClientError::Unreachable { endpoint, message } => ClientError::Transport {
                endpoint,
                message: format!("unreachable after the statement was queued: {message}"),
            },
            ClientError::Overloaded { endpoint, code, .. } => ClientError::Transport {
                endpoint,
                message: format!("refused a call ({code}) after the statement was queued"),
            },
            e => e,
        }
    }

    /// Whether this says the endpoint itself is failing (unreachable, broken
    /// connections, hung, or draining), as opposed to the statement or the
    /// caller's deadline: the resolver marks it suspect at once.
    pub fn endpoint_failing(&self) -> bool {
        match self {
            ClientError::Unreachable { .. }
            | ClientError::Transport { .. }
            | ClientError::Unresponsive { .. } => true,
            ClientError::Overloaded { code, .. } => code == SHUTTING_DOWN,
            _ => false,
        }
    }
}

/// The agent's error code of a 503 while it drains (it will not come back soon:
/// no point waiting for its `Retry-After`).
pub const SHUTTING_DOWN: &str = "SHUTTING_DOWN";
