//! Why a query did not answer, in words every door can map to its own
//! protocol: an HTTP status and code, a PostgreSQL SQLSTATE, a gRPC status.
//!
//! Owns the kinds and their stable codes (the HTTP API's `code` strings,
//! which existing clients read). It never decides an HTTP status or a
//! SQLSTATE itself: each door maps [`ErrorKind`] in one place.

use client::ClientError;

use crate::rewrite::RewriteError;
use crate::verify::VerifyError;

/// The kinds of failure a door tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No credential, or one that names no principal.
    Unauthorized,
    /// A table the principal is not granted.
    AccessDenied,
    /// SQL the policy path refuses (rewriter or binder check).
    Refused,
    /// The engine's own error about the statement (bind, run).
    Engine,
    /// The query's deadline passed.
    Timeout,
    /// Canceled (by its user, or the engine shutting down).
    Canceled,
    /// The chosen engine is overloaded.
    Overloaded,
    /// The principal has too many queries open.
    TooManyQueries,
    /// The chosen endpoint cannot serve and there is no fallback.
    Unavailable,
    /// The engine could not be reached or answered out of contract.
    Unreachable,
    /// A bug, a broken store, a failed thread.
    Internal,
}

/// A failure of the query path: its kind, its stable code, and the message a
/// user may read (already cut of anything that would show the policy).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct QueryError {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
}

impl QueryError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> QueryError {
        QueryError {
            kind,
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized() -> QueryError {
        QueryError::new(
            ErrorKind::Unauthorized,
            "UNAUTHORIZED",
            "a valid bearer token is required (Authorization: Bearer <token>)",
        )
    }

    pub fn internal(message: impl Into<String>) -> QueryError {
        QueryError::new(ErrorKind::Internal, "INTERNAL", message)
    }

    pub fn too_many(message: impl Into<String>) -> QueryError {
        QueryError::new(ErrorKind::TooManyQueries, "TOO_MANY_QUERIES", message)
    }
}

impl From<ClientError> for QueryError {
    fn from(e: ClientError) -> QueryError {
        let msg = e.to_string();
        let (kind, code) = match e {
            ClientError::Execution { .. } | ClientError::BadRequest { .. } => {
                (ErrorKind::Engine, "EXECUTION_ERROR")
            }
            ClientError::Timeout => (ErrorKind::Timeout, "QUERY_TIMEOUT"),
            ClientError::Canceled { .. } => (ErrorKind::Canceled, "CANCELED"),
            ClientError::Overloaded { .. } => (ErrorKind::Overloaded, "ENGINE_OVERLOADED"),
            ClientError::Unavailable { .. } => (ErrorKind::Unavailable, "ENDPOINT_UNAVAILABLE"),
            ClientError::Transport { .. }
            | ClientError::Unreachable { .. }
            | ClientError::Unresponsive { .. }
            | ClientError::Protocol { .. }
            | ClientError::Auth { .. }
            | ClientError::NotFound { .. }
            | ClientError::NotReady { .. } => (ErrorKind::Unreachable, "ENGINE_UNREACHABLE"),
            ClientError::Config(_) | ClientError::Local(_) => (ErrorKind::Internal, "INTERNAL"),
        };
        QueryError::new(kind, code, msg)
    }
}

/// Why a statement was refused: by the rewriter, or by the binder check.
#[derive(Debug)]
pub enum Denial {
    Rewrite(RewriteError),
    Verify(VerifyError),
}

impl From<RewriteError> for Denial {
    fn from(e: RewriteError) -> Denial {
        Denial::Rewrite(e)
    }
}

impl Denial {
    /// The refusal's metric label and answer.
    pub fn answer(&self) -> (&'static str, QueryError) {
        match self {
            Denial::Rewrite(e) => rewrite_answer(e),
            Denial::Verify(VerifyError::Bind(m)) => (
                "engine_bind",
                QueryError::new(ErrorKind::Engine, "EXECUTION_ERROR", m.clone()),
            ),
            Denial::Verify(VerifyError::Mismatch(_)) => (
                "policy_engine",
                QueryError::new(
                    ErrorKind::Refused,
                    "SQL_REFUSED",
                    "the statement failed the policy engine's check of its bound plan",
                ),
            ),
            Denial::Verify(VerifyError::Shadow(_)) => (
                "policy_engine",
                QueryError::internal("the policy engine could not check the statement"),
            ),
        }
    }
}

/// A rewriter refusal's metric label and answer.
fn rewrite_answer(e: &RewriteError) -> (&'static str, QueryError) {
    let kind = match e {
        RewriteError::NotGranted(_) => "not_granted",
        RewriteError::TooLarge { .. } => "too_large",
        RewriteError::Parse(_) => "parse",
        RewriteError::Empty => "empty",
        RewriteError::MultipleStatements(_) => "multiple_statements",
        RewriteError::NotAQuery(_) => "not_a_query",
        RewriteError::TableFunction(_) => "table_function",
        RewriteError::Function { .. } => "function",
        RewriteError::Unsupported(_) => "unsupported",
        RewriteError::TooDeep(_) => "too_deep",
        RewriteError::BadName(_) => "bad_name",
        RewriteError::UnknownTable(_) => "unknown_table",
        RewriteError::MaskOnUnknownColumn { .. } | RewriteError::PolicyUsesUnknownColumn { .. } => {
            "bad_policy"
        }
    };
    let err = match e {
        RewriteError::NotGranted(_) => {
            QueryError::new(ErrorKind::AccessDenied, "ACCESS_DENIED", e.to_string())
        }
        _ => QueryError::new(ErrorKind::Refused, "SQL_REFUSED", e.to_string()),
    };
    (kind, err)
}
