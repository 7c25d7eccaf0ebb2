//! The per-shard request handler: route, authenticate, call the shard, answer.
//!
//! Owns request-level concerns: request ids (header, else body), auth, query-parameter
//! validation, metrics and request logs. Requests that will be refused (unknown path,
//! wrong method, missing or wrong token) are answered in `admit`, from the head alone,
//! before net reads or budgets their body. It awaits the executor's futures and never
//! blocks the reactor; every DuckDB call happens on the executor's worker threads.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use executor::{JobError, QueryId, ResultFormat, RunOptions, Shard, Waited};
use net::{Admission, Request, Response};

use crate::auth::token_matches;
use crate::body::{self, Rejected};
use crate::metrics::RouteMetrics;
use crate::page_token;
use crate::reply;
use crate::routes::{self, Route, RouteKind, Unmatched};
use crate::state::Shared;

/// Longest long-poll; larger `wait_ms` values are capped to it.
pub const MAX_WAIT_MS: u64 = executor::MAX_STATUS_WAIT.as_millis() as u64;

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
    /// Answers from the head alone what will be refused anyway (404, 405, 401), so
    /// an unauthenticated client never makes net read, buffer or budget a body. The
    /// request id echoed is `X-Request-ID`, else the body's `request_id` when the
    /// whole body already arrived with the head (small bodies); a body still on its
    /// way is never waited for.
    fn admit(&self, req: &mut Request<'_>) -> Admission {
        let start = Instant::now();
        let Err((kind, refusal)) = self.route(req) else {
            return Admission::Accept;
        };
        let mut rid = header_request_id(req);
        if rid.is_none() && req.body_available() {
            rid = body::request_id_only(req.body_mut());
        }
        let resp = refusal.reply(rid.as_deref());
        Admission::Reject(self.finish(kind, req, rid.as_deref(), start, resp))
    }

    async fn handle(&self, req: &mut Request<'_>) -> Response {
        let start = Instant::now();
        let mut rid: Option<String> = header_request_id(req);
        // `admit` has already answered refusals; this stays as a second line.
        let route = match self.route(req) {
            Ok(route) => route,
            Err((kind, refusal)) => {
                let resp = refusal.reply(rid.as_deref());
                return self.finish(kind, req, rid.as_deref(), start, resp);
            }
        };
        let kind = route.kind();
        // The signature covers the body, so it is checked here, once the body
        // is in (the token was checked in `admit`, before it was read).
        if route.needs_auth() && !self.signed(req, rid.as_deref()) {
            let resp = reply::unauthorized(rid.as_deref());
            return self.finish(kind, req, rid.as_deref(), start, resp);
        }
        let resp = self.dispatch(route, req, &mut rid).await;
        self.finish(kind, req, rid.as_deref(), start, resp)
    }

    async fn shutdown(&self) {
        // net calls this once every shard's in-flight requests have been answered (or
        // at its drain deadline): nobody waits on what is left, so queued jobs end
        // CANCELED with SHUTTING_DOWN and what still runs is interrupted at once.
        self.shard.shutdown(Duration::ZERO).await;
    }
}

/// Why a request is answered from its head alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NotFound,
    MethodNotAllowed { allow: &'static str },
    Unauthorized,
}

impl Refusal {
    fn reply(self, rid: Option<&str>) -> Response {
        match self {
            Refusal::NotFound => reply::error(404, "NOT_FOUND", "not found", rid),
            Refusal::MethodNotAllowed { allow } => {
                reply::error(405, "METHOD_NOT_ALLOWED", "method not allowed", rid)
                    .header("Allow", allow)
            }
            Refusal::Unauthorized => reply::unauthorized(rid),
        }
    }
}

impl Api {
    /// The route, or what the request is refused with, decided from its head alone:
    /// unknown path, wrong method, or a missing/wrong token on an authenticated route.
    fn route<'a>(&self, req: &Request<'a>) -> Result<Route<'a>, (RouteKind, Refusal)> {
        match routes::resolve(req.method(), req.path(), self.shared.cursor_mode) {
            Err(Unmatched::NotFound) => Err((RouteKind::Unmatched, Refusal::NotFound)),
            Err(Unmatched::MethodNotAllowed { allow }) => {
                Err((RouteKind::Unmatched, Refusal::MethodNotAllowed { allow }))
            }
            Ok(route)
                if route.needs_auth()
                    && !token_matches(&self.shared.token, req.header("x-agent-token")) =>
            {
                Err((route.kind(), Refusal::Unauthorized))
            }
            Ok(route) => Ok(route),
        }
    }

    /// Records metrics and the debug request line, and passes the response on.
    fn finish(
        &self,
        kind: RouteKind,
        req: &Request<'_>,
        rid: Option<&str>,
        start: Instant,
        resp: Response,
    ) -> Response {
        let elapsed = start.elapsed();
        let status = resp.status();
        self.metrics.record(kind, status, elapsed);
        // One line per request at debug; failures worth an operator's attention get
        // their own line (with DuckDB's message) where they happen.
        tracing::debug!(
            method = req.method(),
            path = req.path(),
            status,
            request_id = rid.unwrap_or(""),
            elapsed_us = elapsed.as_micros() as u64,
            "request"
        );
        resp
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

/// `wait_ms`: absent, empty or 0 = no wait; digits = milliseconds, capped at
/// [`MAX_WAIT_MS`] (also when they overflow, like `max_results`); anything else
/// (sign, spaces, letters) is an error.
fn parse_wait_ms(v: Option<&str>) -> Result<Option<Duration>, ()> {
    let v = match v {
        None | Some("") => return Ok(None),
        Some(v) => v,
    };
    if !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    let ms = v.parse::<u64>().unwrap_or(MAX_WAIT_MS).min(MAX_WAIT_MS);
    Ok((ms > 0).then(|| Duration::from_millis(ms)))
}

/// The request's `wait_ms` (status long-poll, waiting submit), or its 400.
fn wait_param(req: &Request<'_>, rid: Option<&str>) -> Result<Option<Duration>, Response> {
    parse_wait_ms(req.query_param("wait_ms").as_deref())
        .map_err(|()| validation("invalid wait_ms: expected milliseconds (0 to 30000)", rid))
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
            Route::Settings => crate::settings::handle(&self.shared, req, rid.as_deref()),
            Route::Execute => self.execute(req, rid).await,
            Route::Submit => self.submit(req, rid).await,
            Route::Status(id) => {
                let Some(id) = parse_id(id) else {
                    return not_found(rid.as_deref());
                };
                let wait = match wait_param(req, rid.as_deref()) {
                    Ok(w) => w,
                    Err(resp) => return resp,
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
                    Ok(page) if page.result.arrow().is_some() => {
                        crate::arrow_reply::page(id, &page, rid.as_deref())
                    }
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
        let accepts_arrow = crate::arrow_reply::accepts_arrow(req.header("accept"));
        let q = match body::parse_query(req.body_mut()) {
            Ok(q) => q,
            Err(e) => return body_error(e, rid),
        };
        if rid.is_none() {
            *rid = q.request_id.map(Cow::into_owned);
        }
        let format = crate::arrow_reply::execute_format(q.format, accepts_arrow);
        let opts = RunOptions {
            timeout: q.timeout,
            format,
            params: q.params.clone(),
        };
        match self.shard.execute_with(&q.sql, opts).await {
            Ok(result) if result.arrow().is_some() => {
                crate::arrow_reply::executed(result, rid.as_deref())
            }
            Ok(result) => reply::executed(result, rid.as_deref()),
            Err(e) => {
                tracing::info!(request_id = rid.as_deref().unwrap_or(""), code = e.code(), error = %e, "execute failed");
                reply::job_error(&e, rid.as_deref())
            }
        }
    }

    async fn submit(&self, req: &mut Request<'_>, rid: &mut Option<String>) -> Response {
        // Optional: wait for the job like a status long-poll and answer its first page
        // inline (one round trip for short queries). Checked before anything is queued.
        let wait = match wait_param(req, rid.as_deref()) {
            Ok(w) => w,
            Err(resp) => return resp,
        };
        let max = match page_token::page_size(req.query_param("max_results").as_deref()) {
            Ok(m) => m,
            Err(e) => return validation(&e.to_string(), rid.as_deref()),
        };
        let consume = match req.query_param("consume").as_deref() {
            None | Some("" | "false" | "0") => false,
            Some("true" | "1") => true,
            Some(_) => {
                return validation("invalid consume: expected true or false", rid.as_deref())
            }
        };
        let q = match body::parse_query(req.body_mut()) {
            Ok(q) => q,
            Err(e) => return body_error(e, rid),
        };
        if rid.is_none() {
            *rid = q.request_id.map(Cow::into_owned);
        }
        let format = q.format.unwrap_or_default();
        let opts = RunOptions {
            timeout: q.timeout,
            format,
            params: q.params.clone(),
        };
        let sql = q.sql.into_owned();
        // The inline first page is JSON; an Arrow job answers 202 and serves
        // its pages as Arrow (docs/api.md "Arrow results").
        let wait = if format == ResultFormat::Arrow {
            None
        } else {
            wait
        };
        let answer = match wait {
            None => self
                .shard
                .submit_with(sql, rid.clone(), opts)
                .await
                .map(Waited::Pending),
            Some(w) => {
                self.shard
                    .submit_and_wait(sql, rid.clone(), opts, w, max, consume)
                    .await
            }
        };
        match answer {
            Ok(Waited::Pending(s)) => {
                tracing::debug!(request_id = rid.as_deref().unwrap_or(""), query_id = %s.id, existing = s.existing, "submitted");
                reply::submitted(s.id, s.status.as_str(), rid.as_deref())
            }
            Ok(Waited::Ended {
                status,
                first,
                consumed,
            }) => match first {
                Some(page) => reply::finished_with_page(&status, &page, consumed, rid.as_deref()),
                None => reply::ended(&status, consumed, rid.as_deref()),
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_ms_is_capped_even_when_it_overflows() {
        let ms = |n: u64| Ok(Some(Duration::from_millis(n)));
        assert_eq!(parse_wait_ms(None), Ok(None));
        assert_eq!(parse_wait_ms(Some("")), Ok(None));
        assert_eq!(parse_wait_ms(Some("0")), Ok(None));
        assert_eq!(parse_wait_ms(Some("250")), ms(250));
        assert_eq!(parse_wait_ms(Some("30001")), ms(MAX_WAIT_MS));
        assert_eq!(
            parse_wait_ms(Some("99999999999999999999999")),
            ms(MAX_WAIT_MS)
        );
        assert_eq!(parse_wait_ms(Some("-1")), Err(()));
        assert_eq!(parse_wait_ms(Some("+5")), Err(()));
        assert_eq!(parse_wait_ms(Some("1.5")), Err(()));
    }
}
