//! Typed errors: what can go wrong starting the server, and what can be wrong
//! with a request. Owns the mapping from a request error to its HTTP status;
//! never performs I/O.

use std::net::SocketAddr;

/// Why the server could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("shard count must be at least 1")]
    NoShards,
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start shard {shard}: {message}")]
    Executor { shard: usize, message: String },
    #[error("shard {shard} panicked")]
    ShardPanicked { shard: usize },
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("reactors cannot run real-time (SCHED_FIFO): {0}; it needs root, CAP_SYS_NICE or RLIMIT_RTPRIO >= 1")]
    Realtime(#[source] std::io::Error),
}

/// Why a request was rejected before it reached the handler. Each variant
/// names the status it is answered with (see [`RequestError::status`]); every
/// one of them closes the connection, because after bad framing the server
/// cannot know where the next request starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed request line")]
    BadRequestLine,
    #[error("malformed header line")]
    BadHeader,
    #[error("obsolete line folding in header")]
    ObsFold,
    #[error("too many headers")]
    TooManyHeaders,
    #[error("header block larger than the limit")]
    HeadersTooLarge,
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    #[error("missing or repeated Host header")]
    BadHost,
    #[error("invalid Content-Length")]
    BadContentLength,
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthAndTransferEncoding,
    #[error("unsupported transfer coding")]
    UnsupportedTransferEncoding,
    #[error("malformed Transfer-Encoding")]
    BadTransferEncoding,
    #[error("malformed chunked body")]
    BadChunk,
    #[error("request body larger than the limit")]
    BodyTooLarge,
    #[error("unsupported expectation")]
    UnsupportedExpectation,
    #[error("too many request bodies in progress on this shard; retry")]
    BodyBudgetExhausted,
}

impl RequestError {
    /// The status this error is answered with.
    pub fn status(self) -> u16 {
        match self {
            RequestError::HeadersTooLarge | RequestError::TooManyHeaders => 431,
            RequestError::UnsupportedVersion => 505,
            RequestError::UnsupportedTransferEncoding => 501,
            RequestError::BodyTooLarge => 413,
            RequestError::UnsupportedExpectation => 417,
            RequestError::BodyBudgetExhausted => 503,
            RequestError::BadRequestLine
            | RequestError::BadHeader
            | RequestError::ObsFold
            | RequestError::BadHost
            | RequestError::BadContentLength
            | RequestError::ContentLengthAndTransferEncoding
            | RequestError::BadTransferEncoding
            | RequestError::BadChunk => 400,
        }
    }
}
