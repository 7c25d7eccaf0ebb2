//! The gateway's state and its query path: authenticate, route, read the
//! engine's catalog, rewrite, run, stream the rows back; the users' routes
//! (`POST /v1/query`, the `/v1/queries` lifecycle), `GET /health`,
//! `GET /metrics`, and the dispatch to the admin routes ([`super::admin`]).
//!
//! Owns the order of the query path and the mapping of its failures to HTTP:
//! no or unknown token 401; a table not granted 403 naming it; SQL the
//! rewriter refuses 400 naming the reason; an endpoint that cannot serve and
//! no fallback 503; the engine's own error 400 with its code; the deadline
//! 504. The path reads the store's in-memory snapshot (an `Arc` clone, no
//! database round trip), rewrites once, and never copies a result whole: rows
//! go from the engine's pages to the response body page by page.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::Via;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde::{Deserialize, Serialize};

use super::config::Config;
use super::http::{self as h, ApiError, Body};
use super::jobs::{self, JobState, Jobs, PageError, Results};
use super::rows_json;
use crate::query::audit;
use crate::query::{Door, QueryService, Started};
use crate::store::AuthedPrincipal;

/// The HTTP door: its configuration, the query path it shares with the
/// other doors, and the jobs of its `/v1/queries` lifecycle.
pub struct App {
    pub cfg: Config,
    pub query: Arc<QueryService>,
    pub jobs: Arc<Jobs>,
    started: Instant,
}

/// `POST /v1/query` and `POST /v1/queries` bodies.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    sql: String,
}

impl App {
    pub fn new(cfg: Config, query: Arc<QueryService>) -> Arc<App> {
        Arc::new(App {
            jobs: Arc::new(Jobs::new(
                cfg.max_jobs_per_user,
                cfg.max_jobs_total,
                cfg.job_ttl,
            )),
            cfg,
            query,
            started: Instant::now(),
        })
    }

    /// Every request.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        _peer: SocketAddr,
    ) -> Response<Body> {
        match self.route(req).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        }
    }

    async fn route(self: &Arc<Self>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
        let path = req.uri().path().to_string();
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = req.method().clone();
        match (segs.as_slice(), &method) {
            (["health"], &Method::GET) => Ok(self.health()),
            (["metrics"], &Method::GET) => Ok(h::bytes_response(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.query.metrics.render(
                    self.jobs.len(),
                    self.query.rewrites(),
                    &self.query.admission.figures(),
                ),
            )),
            (["v1", "query"], &Method::POST) => {
                let who = self.authenticate(req.headers())?;
                let body = self.body::<QueryBody>(req).await?;
                self.query_sync(who, body.sql).await
            }
            (["v1", "queries"], &Method::POST) => {
                let who = self.authenticate(req.headers())?;
                let body = self.body::<QueryBody>(req).await?;
                self.submit(who, body.sql).await
            }
            (["v1", "history"], &Method::GET) => {
                // A user's own queries, never another's.
                let who = self.authenticate(req.headers())?;
                let mut f = super::admin::history_filter(req.uri().query(), false)?;
                f.user = Some(who.user.clone());
                let rows = self.query.store.history(f).await.map_err(|e| {
                    ApiError::internal(format!("cannot read the query history: {e}"))
                })?;
                Ok(h::json_response(StatusCode::OK, &rows))
            }
            (["v1", "queries", id], &Method::GET) => {
                let who = self.authenticate(req.headers())?;
                let wait = h::query_param(req.uri().query(), "wait_ms")
                    .map(|v| {
                        v.parse::<u64>().map_err(|_| {
                            ApiError::bad_request("wait_ms must be a whole number of milliseconds")
                        })
                    })
                    .transpose()?
                    .map(Duration::from_millis)
                    .unwrap_or(Duration::ZERO)
                    .min(jobs::MAX_WAIT);
                self.status(&who, id, wait).await
            }
            (["v1", "queries", id, "results"], &Method::GET) => {
                let who = self.authenticate(req.headers())?;
                let q = req.uri().query();
                let offset = match h::query_param(q, "page_token").filter(|t| !t.is_empty()) {
                    None => 0,
                    Some(t) => jobs::parse_page_token(&percent_decode(t))
                        .ok_or_else(|| ApiError::bad_request("bad page_token"))?,
                };
                let max = match h::query_param(q, "max_results") {
                    None | Some("") => jobs::DEFAULT_PAGE_ROWS,
                    Some(v) => v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            ApiError::bad_request("max_results must be a positive integer")
                        })?
                        .min(jobs::MAX_PAGE_ROWS),
                };
                self.results(&who, id, offset, max).await
            }
            (["v1", "queries", id, "cancel"], &Method::POST) => {
                let who = self.authenticate(req.headers())?;
                let job = self.jobs.get(id, &who.user).ok_or_else(|| not_found(id))?;
                let st = job.cancel(audit::CANCELED).await;
                Ok(h::json_response(
                    StatusCode::OK,
                    &IdStatus {
                        query_id: &job.id,
                        status: st.as_str(),
                    },
                ))
            }
            (["v1", "queries", id], &Method::DELETE) => {
                let who = self.authenticate(req.headers())?;
                let job = self
                    .jobs
                    .remove(id, &who.user)
                    .ok_or_else(|| not_found(id))?;
                let st = job.cancel(audit::DELETED).await;
                // Drop the rows now: their stream's end cancels and deletes the agent's job.
                if let Some(mut r) = job.inner.lock().await.results.take() {
                    r.audit
                        .finish(None, audit::DELETED.outcome, Some(audit::DELETED.reason));
                }
                Ok(h::json_response(
                    StatusCode::OK,
                    &IdStatus {
                        query_id: &job.id,
                        status: st.as_str(),
                    },
                ))
            }
            (["compute-endpoints", ..], _) | (["admin", ..], _) => {
                let who = self.authenticate(req.headers())?;
                if !who.is_admin {
                    return Err(ApiError::forbidden(format!(
                        "{} is not an admin: admin routes need an admin principal",
                        who.user
                    )));
                }
                super::admin::route(self, req, &segs, &method).await
            }
            _ => Err(ApiError::not_found(format!("no route {method} {path}"))),
        }
    }

    /// Reads and parses a JSON body under the caps.
    pub async fn body<T: serde::de::DeserializeOwned>(
        &self,
        req: Request<Incoming>,
    ) -> Result<T, ApiError> {
        let b = h::read_body(
            req.into_body(),
            self.cfg.max_body_bytes,
            self.cfg.request_timeout,
        )
        .await?;
        h::parse_json(&b)
    }

    /// The caller's principal, from its bearer token.
    fn authenticate(&self, headers: &http::HeaderMap) -> Result<AuthedPrincipal, ApiError> {
        Ok(self.query.authenticate(h::bearer(headers))?)
    }

    fn health(&self) -> Response<Body> {
        #[derive(Serialize)]
        struct Health {
            status: &'static str,
            uptime_seconds: u64,
            jobs: usize,
            default_catalog: String,
            endpoints: usize,
            resolver_reload_error: Option<String>,
        }
        // Draining: 503, so a load balancer stops sending new queries here.
        let draining = self.query.drain.is_draining();
        h::json_response(
            if draining {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            },
            &Health {
                status: if draining { "draining" } else { "ok" },
                uptime_seconds: self.started.elapsed().as_secs(),
                jobs: self.jobs.len(),
                default_catalog: self.query.default_catalog.clone(),
                endpoints: self.query.resolver.config().endpoints.len(),
                resolver_reload_error: self.query.resolver.last_reload_error(),
            },
        )
    }

    /// `POST /v1/query`: runs and streams the rows in one answer.
    async fn query_sync(
        self: &Arc<Self>,
        who: AuthedPrincipal,
        sql: String,
    ) -> Result<Response<Body>, ApiError> {
        let id = jobs::new_query_id();
        let Started {
            decision,
            mut rows,
            mut audit,
            scope,
        } = self.query.run(&who, &sql, &id, Door::Http).await?;
        // The first page before the status line, so an early failure is still an error status.
        let first = match rows.next_page().await {
            Ok(p) => p,
            Err(e) => {
                let err = scope.user_error(e);
                audit.finish(None, "failed", Some(&err.message));
                return Err(err.into());
            }
        };
        let mut head = Vec::with_capacity(4096);
        head.extend_from_slice(b"{\"query_id\":");
        let _ = serde_json::to_writer(&mut head, &id);
        head.extend_from_slice(b",\"endpoint\":");
        let _ = serde_json::to_writer(&mut head, audit.endpoint.as_deref().unwrap_or(""));
        head.extend_from_slice(b",\"rule\":");
        let _ = serde_json::to_writer(&mut head, decision.rule.as_str());
        head.extend_from_slice(b",\"columns\":");
        let _ = serde_json::to_writer(&mut head, &rows.columns);
        head.extend_from_slice(b",\"column_types\":");
        let _ = serde_json::to_writer(&mut head, &rows.column_types);
        head.extend_from_slice(b",\"rows\":[");
        let mut n: u64 = 0;
        if let Some(p) = &first {
            rows_json::write_rows(&mut head, p, true);
            n += p.len() as u64;
        }
        audit.rows = n;
        if first.is_none() || rows.row_count == Some(n) {
            // Everything is here: one buffer, no stream.
            head.extend_from_slice(format!("],\"row_count\":{n}}}").as_bytes());
            audit.finish(None, "answered", None);
            if rows.via != Via::Execute {
                // A stream's producer deletes the agent's job: off the answer's path.
                // An `/execute` answer has nothing behind it to close.
                tokio::spawn(rows.close());
            }
            return Ok(h::bytes_response(StatusCode::OK, "application/json", head));
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(2);
        tokio::spawn(async move {
            if tx.send(Ok(Frame::data(Bytes::from(head)))).await.is_err() {
                audit.finish(None, "abandoned", Some("the client went away"));
                return;
            }
            loop {
                match rows.next_page().await {
                    Ok(Some(p)) => {
                        let mut buf = Vec::with_capacity(p.len() * 32);
                        rows_json::write_rows(&mut buf, &p, n == 0);
                        n += p.len() as u64;
                        audit.rows = n;
                        if tx.send(Ok(Frame::data(Bytes::from(buf)))).await.is_err() {
                            audit.finish(None, "abandoned", Some("the client went away"));
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // The status line is gone: say why in the body, leave the
                        // JSON unclosed and abort the chunked stream (no last
                        // chunk), so no client can take the rows for the result.
                        let err = scope.user_error(e);
                        audit.finish(None, "failed", Some(&err.message));
                        let _ = tx.send(Ok(Frame::data(failed_tail(err.into())))).await;
                        // hyper drops what it has not written when the body fails: let
                        // the tail be taken and flushed first (bounded wait).
                        let until = Instant::now() + TAIL_FLUSH_WAIT;
                        while tx.capacity() < tx.max_capacity()
                            && !tx.is_closed()
                            && Instant::now() < until
                        {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        let _ = tx
                            .send(Err(std::io::Error::other("the engine failed mid-stream")))
                            .await;
                        return;
                    }
                }
            }
            let _ = tx
                .send(Ok(Frame::data(Bytes::from(format!(
                    "],\"row_count\":{n}}}"
                )))))
                .await;
            audit.finish(None, "answered", None);
            rows.close().await;
        });
        let stream = FrameStream { rx };
        let mut r = Response::new(StreamBody::new(stream).boxed());
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        Ok(r)
    }

    /// `POST /v1/queries`: refusals answer the submit; the query runs in a task.
    async fn submit(
        self: &Arc<Self>,
        who: AuthedPrincipal,
        sql: String,
    ) -> Result<Response<Body>, ApiError> {
        // Reserve the job first, so a user over the cap costs no engine work.
        let job = match self.jobs.create(&who.user) {
            Ok(j) => j,
            Err(e) => {
                self.query.metrics.rejected_busy();
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOO_MANY_QUERIES",
                    e.to_string(),
                ));
            }
        };
        let mut prepared = match self.query.prepare(&who, &sql, &job.id, Door::Http).await {
            Ok(p) => p,
            Err(e) => {
                self.jobs.remove(&job.id, &job.owner);
                return Err(e.into());
            }
        };
        // A cancel or delete while the query runs aborts the task that holds
        // this record: it then logs why, not `abandoned`.
        prepared.audit.stop = job.stop.clone();
        prepared.queue_place = Some(job.queue_place.clone());
        job.inner.lock().await.routing = Some((
            prepared.audit.endpoint.clone().unwrap_or_default(),
            prepared.decision.to_string(),
        ));
        let me = self.clone();
        let j = job.clone();
        let task = tokio::spawn(async move {
            match me.query.execute(prepared).await {
                Ok(Started {
                    decision,
                    rows,
                    audit,
                    scope,
                }) => {
                    let mut inner = j.inner.lock().await;
                    if j.state() != JobState::Running {
                        // Canceled meanwhile: the rows' drop stops the work, and
                        // the record logs the stopper's reason.
                        return;
                    }
                    inner.routing = Some((
                        audit.endpoint.clone().unwrap_or_default(),
                        decision.to_string(),
                    ));
                    inner.results = Some(Results::new(rows, audit, scope));
                    drop(inner);
                    j.finish_running(JobState::Succeeded);
                }
                Err(e) => {
                    j.inner.lock().await.error = Some((e.code.to_string(), e.message.clone()));
                    j.finish_running(JobState::Failed);
                }
            }
        });
        *job.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
        Ok(h::json_response(
            StatusCode::ACCEPTED,
            &IdStatus {
                query_id: &job.id,
                status: job.state().as_str(),
            },
        ))
    }

    async fn status(
        &self,
        who: &AuthedPrincipal,
        id: &str,
        wait: Duration,
    ) -> Result<Response<Body>, ApiError> {
        let job = self.jobs.get(id, &who.user).ok_or_else(|| not_found(id))?;
        let st = if wait.is_zero() {
            job.state()
        } else {
            job.wait(wait).await
        };
        let inner = job.inner.lock().await;
        // Running, but still waiting for a slot on its agent: say so, and where.
        let queue_position = match st {
            JobState::Running => self.query.admission.position(&job.queue_place),
            _ => None,
        };
        #[derive(Serialize)]
        struct Status<'a> {
            query_id: &'a str,
            status: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            queue_position: Option<usize>,
            #[serde(skip_serializing_if = "Option::is_none")]
            endpoint: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            routing: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            columns: Option<&'a [String]>,
            #[serde(skip_serializing_if = "Option::is_none")]
            column_types: Option<&'a [String]>,
            #[serde(skip_serializing_if = "Option::is_none")]
            row_count: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            error_code: Option<&'a str>,
        }
        let r = inner.results.as_ref();
        Ok(h::json_response(
            StatusCode::OK,
            &Status {
                query_id: &job.id,
                status: if queue_position.is_some() {
                    "QUEUED"
                } else {
                    st.as_str()
                },
                queue_position,
                endpoint: inner.routing.as_ref().map(|(e, _)| e.as_str()),
                routing: inner.routing.as_ref().map(|(_, d)| d.as_str()),
                columns: r.map(|r| r.columns.as_slice()),
                column_types: r.map(|r| r.column_types.as_slice()),
                row_count: r.and_then(|r| r.row_count),
                error: inner.error.as_ref().map(|(_, m)| m.as_str()),
                error_code: inner.error.as_ref().map(|(c, _)| c.as_str()),
            },
        ))
    }

    async fn results(
        &self,
        who: &AuthedPrincipal,
        id: &str,
        offset: u64,
        max: usize,
    ) -> Result<Response<Body>, ApiError> {
        let job = self.jobs.get(id, &who.user).ok_or_else(|| not_found(id))?;
        match job.state() {
            JobState::Running => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "QUERY_NOT_READY",
                    "the query is still running",
                ))
            }
            JobState::Failed | JobState::Canceled => {
                let inner = job.inner.lock().await;
                let msg = inner
                    .error
                    .as_ref()
                    .map(|(c, m)| format!("{c}: {m}"))
                    .unwrap_or_default();
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "QUERY_NOT_AVAILABLE",
                    msg,
                ));
            }
            JobState::Succeeded => {}
        }
        let mut inner = job.inner.lock().await;
        let Some(res) = inner.results.as_mut() else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "QUERY_NOT_AVAILABLE",
                "the results are gone",
            ));
        };
        let page = match res.page(offset, max).await {
            Ok(p) => p,
            Err(e @ PageError::Gone { .. }) => {
                return Err(ApiError::new(StatusCode::GONE, "PAGE_GONE", e.to_string()))
            }
            Err(PageError::Engine(e)) => {
                let err: ApiError = res.scope.user_error(e).into();
                inner.results = None;
                inner.error = Some((err.code.to_string(), err.message.clone()));
                drop(inner);
                job.state.send_replace(JobState::Failed);
                return Err(err);
            }
        };
        let rows_len: usize = page.rows.iter().map(|r| r.len() + 1).sum();
        let mut out = Vec::with_capacity(256 + rows_len);
        out.extend_from_slice(b"{\"query_id\":");
        let _ = serde_json::to_writer(&mut out, &job.id);
        out.extend_from_slice(b",\"columns\":");
        let _ = serde_json::to_writer(&mut out, &res.columns);
        out.extend_from_slice(b",\"column_types\":");
        let _ = serde_json::to_writer(&mut out, &res.column_types);
        out.extend_from_slice(b",\"rows\":[");
        for (i, r) in page.rows.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(r);
        }
        out.push(b']');
        if let Some(n) = page.row_count {
            out.extend_from_slice(format!(",\"row_count\":{n}").as_bytes());
        }
        if let Some(next) = page.next_offset {
            out.extend_from_slice(b",\"next_page_token\":");
            let _ = serde_json::to_writer(&mut out, &jobs::token(next));
        }
        out.push(b'}');
        Ok(h::bytes_response(StatusCode::OK, "application/json", out))
    }
}

/// Longest a failed stream waits for its error tail to reach the socket
/// before it is aborted.
const TAIL_FLUSH_WAIT: Duration = Duration::from_secs(1);

/// What a streamed `POST /v1/query` answer ends with when the engine fails
/// after the rows began: the error and its code after the rows, and no
/// closing brace: the body is never valid JSON, and the stream is then
/// aborted (docs/gateway.md).
fn failed_tail(err: ApiError) -> Bytes {
    let mut out = Vec::with_capacity(64 + err.message.len());
    out.extend_from_slice(b"],\"error\":");
    let _ = serde_json::to_writer(&mut out, &err.message);
    out.extend_from_slice(b",\"code\":");
    let _ = serde_json::to_writer(&mut out, err.code);
    Bytes::from(out)
}

#[derive(Serialize)]
struct IdStatus<'a> {
    query_id: &'a str,
    status: &'static str,
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no query {id}"))
}

/// `page_token` values arrive URL-encoded (`=` as `%3D`, form style, so `+`
/// is a space). Any byte sequence decodes (a bad escape stays as it is,
/// invalid UTF-8 becomes U+FFFD) and is then refused by the token's parser.
fn percent_decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// The receiving end of a response's frames, as the body's `Stream`.
struct FrameStream {
    rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
}

impl futures_core::Stream for FrameStream {
    type Item = Result<Frame<Bytes>, std::io::Error>;
    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_decode_takes_any_text() {
        assert_eq!(percent_decode("MTAwMDI%3D"), "MTAwMDI=");
        assert_eq!(percent_decode("a+b%2B"), "a b+");
        // Every escape prefix before every kind of character, the case that
        // sliced a multi-byte character in two.
        let tails = ["", "é", "aé", "%", "%é", "€x", "\u{10348}", "a", "zz", "4"];
        for tail in tails {
            for head in ["%", "%a", "%A", "%4", "x%", "%%", "%g"] {
                let s = format!("{head}{tail}");
                let _ = percent_decode(&s);
            }
        }
        assert_eq!(percent_decode("%aé"), "%aé");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}
