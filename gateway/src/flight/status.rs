//! The one place a query-path failure becomes a gRPC status for Flight SQL
//! clients: [`status`] maps each [`ErrorKind`] to a tonic [`Code`], keeps
//! the query path's stable code in front of the message (`ACCESS_DENIED:
//! access denied: no grant on ...`) and in the `x-error-code` metadata, so
//! a client can tell refusals apart without parsing text.
//!
//! It never adds to the message: what the query path hands over is already
//! cut of anything that would show the policy.

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use crate::query::{ErrorKind, QueryError};

/// The gRPC code of each kind of failure.
pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::Unauthorized => Code::Unauthenticated,
        ErrorKind::AccessDenied => Code::PermissionDenied,
        ErrorKind::Refused | ErrorKind::Engine => Code::InvalidArgument,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::Canceled => Code::Cancelled,
        ErrorKind::Overloaded | ErrorKind::Unavailable | ErrorKind::Unreachable => {
            Code::Unavailable
        }
        ErrorKind::TooManyQueries => Code::ResourceExhausted,
        ErrorKind::Internal => Code::Internal,
    }
}

/// A query-path failure as a Flight SQL client reads it.
pub fn status(e: &QueryError) -> Status {
    let mut md = MetadataMap::new();
    md.insert("x-error-code", MetadataValue::from_static(e.code));
    Status::with_metadata(code(e.kind), format!("{}: {}", e.code, e.message), md)
}

impl From<QueryError> for Status {
    fn from(e: QueryError) -> Status {
        status(&e)
    }
}

/// A request this door refuses before the query path sees it (a bad
/// ticket, parameters it cannot bind): `INVALID_ARGUMENT` with the reason.
pub fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_code_and_the_stable_code_travels() {
        let s = status(&QueryError::unauthorized());
        assert_eq!(s.code(), Code::Unauthenticated);
        assert!(s.message().starts_with("UNAUTHORIZED: "));
        assert_eq!(s.metadata().get("x-error-code").unwrap(), "UNAUTHORIZED");
        let e = QueryError::new(ErrorKind::AccessDenied, "ACCESS_DENIED", "no grant on x");
        assert_eq!(status(&e).code(), Code::PermissionDenied);
        assert_eq!(code(ErrorKind::TooManyQueries), Code::ResourceExhausted);
        assert_eq!(code(ErrorKind::Timeout), Code::DeadlineExceeded);
    }
}
