//! The per-shard request handler: route, authenticate, call the shard, answer.
//!
//! Owns request-level concerns: request ids (header, else body), auth, query-parameter
//! validation, metrics and request logs. It awaits the executor's futures and never
//! blocks the reactor; every DuckDB call happens on the executor's worker threads.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use executor::{JobError, QueryId, Shard};
use net::{Request, Response};

use crate::auth::token_matches;
use crate::body::{self, Rejected};
use crate::metrics::RouteMetrics;
use crate::page_token;
use crate::reply;
use crate::routes::{self, Route, RouteKind, Unmatched};
use crate::state::Shared;

/// Longest long-poll; larger `wait_ms` values are capped to it.
pub const MAX_WAIT_MS: u64 = 30_000;

/// How long a shard's worker may take to stop once shutdown begins.
const SHARD_DRAIN: Duration = Duration::from_secs(5);

/// One shard's router.
pub struct Api {
    shard: Shard,
    shared: Arc<Shared>,
    metrics: Arc<RouteMetrics>,
}

impl Api {
    pub fn new(shard: Shard, shared: Arc<Shared>, shard_id: usize) -> Api {
        let metrics = shared.route_metrics[shard_id].clone();
        Api {
            shard,
            shared,
            metrics,
        }
    }
}

impl net::Handler for Api {
    async fn handle(&self, req: &mut Request<'_>) -> Response {
        let start = Instant::now();
        let method = req.method();
        let path = req.path();
        let mut rid: Option<String> = header_request_id(req);
        let (kind, resp) = match routes::resolve(method, path, self.shared.cursor_mode) {
            Err(Unmatched::NotFound) => (
                RouteKind::Unmatched,
                reply::error(404, "NOT_FOUND", "not found", rid.as_deref()),
            ),
            Err(Unmatched::MethodNotAllowed { allow }) => (
                RouteKind::Unmatched,
                reply::error(
                    405,
                    "METHOD_NOT_ALLOWED",
                    "method not allowed",
                    rid.as_deref(),
                )
                .header("Allow", allow),
            ),
            Ok(route) => {
                let kind = route.kind();
                let resp = if route.needs_auth()
                    && (!token_matches(&self.shared.token, req.header("x-agent-token"))
                        || !self.signed(req, rid.as_deref()))
                {
                    reply::unauthorized(rid.as_deref())
                } else {
                    self.dispatch(route, req, &mut rid).await
                };
                (kind, resp)
            }
        };
        let elapsed = start.elapsed();
        let status = resp.status();
        self.metrics.record(kind, status, elapsed);
        // One line per request at debug; failures worth an operator's attention get
        // their own line (with DuckDB's message) where they happen.
        tracing::debug!(
            method,
            path,
            status,
            request_id = rid.as_deref().unwrap_or(""),
            elapsed_us = elapsed.as_micros() as u64,
            "request"
        );
        resp
    }

    async fn shutdown(&self) {
        // Queued work fails with SHUTTING_DOWN, the running statement is interrupted.
        self.shard.shutdown(SHARD_DRAIN).await;
    }
}

impl Api {
    /// The request's signature passes `REQUIRE_SIGNED_REQUESTS` (always true when off).
    fn signed(&self, req: &Request<'_>, rid: Option<&str>) -> bool {
        match self.shared.signature.check(
            &self.shared.token,
            req.method(),
            req.path(),
            req.body(),
            req.header("x-agent-timestamp"),
            req.header("x-agent-signature"),
        ) {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(request_id = rid.unwrap_or(""), reason = %e, "signature refused");
                false
            }
        }
    }
}

/// `X-Request-ID`, when present and not empty.
fn header_request_id(req: &Request<'_>) -> Option<String> {
    let h = req.header("x-request-id")?;
    let s = String::from_utf8_lossy(h);
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

fn validation(msg: &str, rid: Option<&str>) -> Response {
    reply::error(400, "VALIDATION_ERROR", msg, rid)
}

/// Query ids are UUIDs; anything else cannot name a job, so it is simply unknown.
fn parse_id(id: &str) -> Option<QueryId> {
    QueryId::try_parse(id).ok()
}

fn not_found(rid: Option<&str>) -> Response {
    reply::job_error(&JobError::NotFound, rid)
}

impl Api {
    async fn dispatch(
        &self,
        route: Route<'_>,
        req: &mut Request<'_>,
        rid: &mut Option<String>,
    ) -> Response {
        match route {
            Route::Health => Response::json(200, crate::health::render(&self.shared)),
            Route::Metrics => Response::new(200)
                .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                .body(crate::metrics::render(&self.shared)),
            Route::Execute => self.execute(req, rid).await,
            Route::Submit => self.submit(req, rid).await,
            Route::Status(id) => {
                let Some(id) = parse_id(id) else {
                    return not_found(rid.as_deref());
                };
                let wait = match req.query_param("wait_ms") {
                    None => None,
                    Some(v) if v.is_empty() => None,
                    Some(v) => match v.parse::<u64>() {
                        Ok(0) => None,
                        Ok(ms) => Some(Duration::from_millis(ms.min(MAX_WAIT_MS))),
                        Err(_) => {
                            return validation(
                                "invalid wait_ms: expected milliseconds (0 to 30000)",
                                rid.as_deref(),
                            )
                        }
                    },
                };
                match self.shard.status(id, wait).await {
                    Ok(st) => reply::status(&st, rid.as_deref()),
                    Err(e) => reply::job_error(&e, rid.as_deref()),
                }
            }
            Route::Results(id) => {
                let Some(id) = parse_id(id) else {
                    return not_found(rid.as_deref());
                };
                let token = req.query_param("page_token");
                let offset = match page_token::decode(token.as_deref()) {
                    Ok(o) => o,
                    Err(e) => return validation(&e.to_string(), rid.as_deref()),
                };
                let max = match page_token::page_size(req.query_param("max_results").as_deref()) {
                    Ok(m) => m,
                    Err(e) => return validation(&e.to_string(), rid.as_deref()),
                };
                match self.shard.page(id, offset, max).await {
                    Ok(page) if offset > page.result.row_count() => validation(
                        "invalid page_token: past the end of the result",
                        rid.as_deref(),
                    ),
                    Ok(page) => reply::page(id, &page, rid.as_deref()),
                    Err(e) => reply::job_error(&e, rid.as_deref()),
                }
            }
            Route::Cancel(id) => {
                if rid.is_none() {
                    *rid = body::request_id_only(req.body_mut());
                }
                let Some(id) = parse_id(id) else {
                    return not_found(rid.as_deref());
                };
                match self.shard.cancel(id).await {
                    Ok(st) => reply::id_status(id, st.status.as_str(), rid.as_deref()),
                    Err(e) => reply::job_error(&e, rid.as_deref()),
                }
            }
            Route::Delete(id) => {
                let Some(id) = parse_id(id) else {
                    return not_found(rid.as_deref());
                };
                match self.shard.delete(id).await {
                    // The contract fixes the answer: the job is gone, reported as CANCELED.
                    Ok(_) => reply::id_status(id, "CANCELED", rid.as_deref()),
                    Err(e) => reply::job_error(&e, rid.as_deref()),
                }
            }
        }
    }

    async fn execute(&self, req: &mut Request<'_>, rid: &mut Option<String>) -> Response {
        let q = match body::parse_query(req.body_mut()) {
            Ok(q) => q,
            Err(e) => return body_error(e, rid),
        };
        if rid.is_none() {
            *rid = q.request_id.map(Cow::into_owned);
        }
        match self.shard.execute(&q.sql).await {
            Ok(result) => reply::executed(&result, rid.as_deref()),
            Err(e) => {
                tracing::info!(request_id = rid.as_deref().unwrap_or(""), code = e.code(), error = %e, "execute failed");
                reply::job_error(&e, rid.as_deref())
            }
        }
    }

    async fn submit(&self, req: &mut Request<'_>, rid: &mut Option<String>) -> Response {
        let q = match body::parse_query(req.body_mut()) {
            Ok(q) => q,
            Err(e) => return body_error(e, rid),
        };
        if rid.is_none() {
            *rid = q.request_id.map(Cow::into_owned);
        }
        match self.shard.submit(q.sql.into_owned(), rid.clone()).await {
            Ok(s) => {
                tracing::debug!(request_id = rid.as_deref().unwrap_or(""), query_id = %s.id, existing = s.existing, "submitted");
                reply::submitted(s.id, s.status.as_str(), rid.as_deref())
            }
            Err(e) => {
                tracing::info!(request_id = rid.as_deref().unwrap_or(""), code = e.code(), error = %e, "submit refused");
                reply::job_error(&e, rid.as_deref())
            }
        }
    }
}

fn body_error(e: Rejected, rid: &mut Option<String>) -> Response {
    if rid.is_none() {
        *rid = e.request_id;
    }
    reply::error(400, e.error.code(), &e.error.to_string(), rid.as_deref())
}
