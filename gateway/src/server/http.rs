//! HTTP plumbing: the accept loop (hyper's HTTP/1.1 server on tokio), reading
//! a request body under a size cap and a deadline, JSON responses, the error
//! type every handler returns, and bearer-token extraction.
//!
//! Why hyper directly and not a framework: the agent client already runs on
//! tokio and hyper, so the gateway adds no second HTTP implementation or
//! runtime; a dozen routes need no router crate; and the query path (the
//! gateway's overhead over a direct agent call is a benchmark goal) then has
//! no middleware layers. Owns status codes and the error body's shape
//! (`{"error", "code"}`). It never holds a whole unbounded body: bodies past
//! the cap are refused with 413 as soon as the cap is crossed, and a client
//! that sends too slowly is cut off at the request deadline.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;

/// The HTTP status of each kind of query-path failure (the one place the
/// HTTP door maps them; the code and message carry over as they are).
impl From<crate::query::QueryError> for ApiError {
    fn from(e: crate::query::QueryError) -> ApiError {
        use crate::query::ErrorKind as K;
        let status = match e.kind {
            K::Unauthorized => StatusCode::UNAUTHORIZED,
            K::AccessDenied => StatusCode::FORBIDDEN,
            K::Refused | K::Engine => StatusCode::BAD_REQUEST,
            K::Timeout => StatusCode::GATEWAY_TIMEOUT,
            K::Canceled => StatusCode::CONFLICT,
            K::Overloaded | K::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            K::TooManyQueries => StatusCode::TOO_MANY_REQUESTS,
            K::Unreachable => StatusCode::BAD_GATEWAY,
            K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code, e.message)
    }
}

/// The response body type: a whole buffer, or a stream of chunks (results).
pub type Body = BoxBody<Bytes, std::io::Error>;

/// An error answered to the caller: status, stable code, human text.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "a valid bearer token is required (Authorization: Bearer <token>)",
        )
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", message)
    }

    pub fn into_response(self) -> Response<Body> {
        #[derive(Serialize)]
        struct ErrorBody<'a> {
            error: &'a str,
            code: &'a str,
        }
        let mut r = json_response(
            self.status,
            &ErrorBody {
                error: &self.message,
                code: self.code,
            },
        );
        // Busy or going away: worth retrying, soon (the wire contract's
        // agents say the same on their 429 and 503).
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            r.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from_static("1"),
            );
        }
        r
    }
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// A JSON response.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(v) => bytes_response(status, "application/json", v),
        Err(e) => bytes_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/json",
            format!("{{\"error\":\"cannot encode the answer: {e}\",\"code\":\"INTERNAL\"}}"),
        ),
    }
}

pub fn bytes_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The bearer token of the request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// Reads the whole body, refusing more than `max` bytes (413) and a body that
/// has not arrived by the deadline (408).
pub async fn read_body(body: Incoming, max: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    let limited = Limited::new(body, max);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            format!("the request body did not arrive within {timeout:?}"),
        )),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    format!("the request body is larger than {max} bytes"),
                ))
            } else {
                Err(ApiError::bad_request(format!("cannot read the body: {e}")))
            }
        }
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// Parses a JSON body into `T` (whose unknown fields are refused by its
/// `deny_unknown_fields`).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "PARSE_ERROR",
            format!("bad JSON body: {e}"),
        )
    })
}

/// One query-string parameter (no percent-decoding beyond what tokens need).
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// Serves `handler` on every connection accepted on `listener` until the
/// process ends, over TLS when `tls` is given (the handshake must finish
/// within the header-read timeout too). Each connection gets the header-read
/// timeout; keep-alive is on.
pub async fn serve<H, F>(
    listener: tokio::net::TcpListener,
    header_timeout: Duration,
    tls: Option<Arc<crate::tls::Tls>>,
    handler: Arc<H>,
) where
    H: Fn(http::Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait a little, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let acceptor = tls.as_ref().map(|t| t.http());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let fut = handler(req, peer);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            let builder = {
                let mut b = hyper::server::conn::http1::Builder::new();
                b.timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .max_buf_size(64 * 1024);
                b
            };
            let result = match acceptor {
                None => builder.serve_connection(TokioIo::new(stream), svc).await,
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            builder
                                .serve_connection(TokioIo::new(tls_stream), svc)
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
