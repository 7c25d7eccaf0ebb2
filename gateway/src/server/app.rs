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
use client::resolver::{Decision, Resolver, Rule, Target};
use client::{ClientError, Executor, LocalExecutor, QueryRows, Via};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde::{Deserialize, Serialize};

use super::audit::{self, Audit};
use super::catalog::{Catalogs, EngineCatalog};
use super::config::Config;
use super::http::{self as h, ApiError, Body};
use super::jobs::{self, JobState, Jobs, PageError, Results};
use super::metrics::Metrics;
use super::rows_json;
use crate::access::{AccessControl, Principal};
use crate::disclose::{self, PolicyText};
use crate::policy::Policy;
use crate::rewrite::{RewriteError, Rewritten};
use crate::rewrite_cache::{Generation, Lookup, RewriteCache, DEFAULT_REWRITE_CACHE_BYTES};
use crate::store::{AuthedPrincipal, Store};
use crate::verify::VerifyError;

/// The whole gateway.
pub struct App {
    pub cfg: Config,
    pub store: Store,
    pub resolver: Arc<Resolver>,
    pub local: Arc<LocalExecutor>,
    pub catalogs: Catalogs,
    pub jobs: Arc<Jobs>,
    pub metrics: Metrics,
    /// The catalog unqualified names belong to.
    pub default_catalog: String,
    /// The policy built from the snapshot of this revision (built once per
    /// store change, not per query).
    policy: std::sync::Mutex<Option<(i64, Arc<PolicyAt>)>>,
    /// Rewrites already made (and proven), by policy and catalog generation,
    /// principal and text.
    rewrites: Arc<RewriteCache>,
    started: Instant,
}

/// `POST /v1/query` and `POST /v1/queries` bodies.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    sql: String,
}

/// A query routed and rewritten, ready to run.
struct Prepared {
    decision: Decision,
    engine: Arc<dyn Executor>,
    /// The user's SQL (rewritten again if the query falls back to local).
    user_sql: String,
    audit: Audit,
    /// The rewrite sent, and what an engine error may show of it.
    scope: ErrorScope,
    deadline: Instant,
}

/// A policy built from one store snapshot, and the process-unique number the
/// rewrite cache knows it by.
pub(super) struct PolicyAt {
    generation: u64,
    policy: Policy,
}

/// What a query was rewritten under, kept beside it so that an engine error
/// raised while it runs (at once, mid-stream, or on a later page) is shown
/// to its user without the policy ([`crate::disclose`]). Cheap to clone:
/// only `Arc`s and the principal.
#[derive(Clone)]
pub(super) struct ErrorScope {
    policy: Arc<PolicyAt>,
    principal: Principal,
    catalog: Arc<EngineCatalog>,
    rewritten: Arc<Rewritten>,
}

impl ErrorScope {
    /// The text an error of this query must not show.
    fn policy_text(&self) -> PolicyText {
        disclose::policy_text(
            &self.policy.policy,
            &self.principal,
            &self.rewritten.tables,
            &*self.catalog,
        )
    }

    /// A client error as this query's user reads it.
    pub(super) fn user_error(&self, e: ClientError) -> ApiError {
        match e {
            ClientError::Execution { code, message } => {
                let message = disclose::engine_message(&message, &self.policy_text());
                client_error(ClientError::Execution { code, message })
            }
            e => client_error(e),
        }
    }
}

/// The next [`PolicyAt::generation`].
static NEXT_POLICY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A query running, its rows streaming.
struct Started {
    decision: Decision,
    rows: QueryRows,
    audit: Audit,
    scope: ErrorScope,
}

impl App {
    pub fn new(
        cfg: Config,
        store: Store,
        resolver: Arc<Resolver>,
        local: Arc<LocalExecutor>,
        default_catalog: String,
    ) -> Arc<App> {
        Arc::new(App {
            catalogs: Catalogs::new(cfg.catalog_ttl),
            jobs: Arc::new(Jobs::new(
                cfg.max_jobs_per_user,
                cfg.max_jobs_total,
                cfg.job_ttl,
            )),
            metrics: Metrics::default(),
            cfg,
            store,
            resolver,
            local,
            default_catalog,
            policy: std::sync::Mutex::new(None),
            rewrites: Arc::new(RewriteCache::new(DEFAULT_REWRITE_CACHE_BYTES)),
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
                self.metrics.render(self.jobs.len(), &self.rewrites),
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
        let who = h::bearer(headers).and_then(|t| self.store.authenticate_now(t));
        match who {
            Some(p) => Ok(p),
            None => {
                self.metrics.unauthorized();
                Err(ApiError::unauthorized())
            }
        }
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
        h::json_response(
            StatusCode::OK,
            &Health {
                status: "ok",
                uptime_seconds: self.started.elapsed().as_secs(),
                jobs: self.jobs.len(),
                default_catalog: self.default_catalog.clone(),
                endpoints: self.resolver.config().endpoints.len(),
                resolver_reload_error: self.resolver.last_reload_error(),
            },
        )
    }

    /// The policy of the store's current snapshot.
    fn policy(&self) -> Result<Arc<PolicyAt>, ApiError> {
        let snapshot = self.store.snapshot();
        let mut cache = self.policy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((rev, p)) = cache.as_ref() {
            if *rev == snapshot.revision {
                return Ok(p.clone());
            }
        }
        // The store validated every expression on write: a failure here is a bug
        // or a hand-edited database; refuse every query rather than guess.
        let policy = snapshot.policy(&self.default_catalog).map_err(|e| {
            tracing::error!(error = %e, revision = snapshot.revision, "the stored policy does not load");
            ApiError::internal(format!("the stored policy does not load: {e}"))
        })?;
        let p = Arc::new(PolicyAt {
            generation: NEXT_POLICY.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            policy,
        });
        *cache = Some((snapshot.revision, p.clone()));
        Ok(p)
    }

    /// Authenticated principal -> routed and rewritten for its engine (or
    /// refused). Falls back to local compute, once, when the chosen agent
    /// cannot be reached for its catalog and the caller's assignment allows
    /// `fallback_local`.
    async fn prepare(
        &self,
        who: &AuthedPrincipal,
        sql: &str,
        query_id: &str,
    ) -> Result<Prepared, ApiError> {
        let mut audit = Audit::new(query_id, &who.user, &who.groups);
        let deadline = audit.started() + self.cfg.query_timeout;
        let principal = Principal {
            user: who.user.clone(),
            groups: who.groups.clone(),
        };
        let policy = match self.policy() {
            Ok(p) => p,
            Err(e) => {
                audit.finish(None, "failed", Some(&e.message));
                return Err(e);
            }
        };
        self.resolver.reload_if_changed();
        let mut decision = match self.resolver.resolve(&who.user, &who.groups) {
            Ok(d) => d,
            Err(e) => {
                self.metrics.failed("none", e.kind());
                audit.finish(None, "failed", Some(&e.to_string()));
                return Err(client_error(e));
            }
        };
        let mut fell_back = false;
        loop {
            audit.routed(&decision);
            match self
                .plan(&decision, &policy, &principal, sql, deadline, &mut audit)
                .await
            {
                Ok((engine, scope)) => {
                    return Ok(Prepared {
                        decision,
                        engine,
                        user_sql: sql.to_string(),
                        audit,
                        scope,
                        deadline,
                    })
                }
                Err(Attempt::Denied(e)) => return Err(self.denied(e, &principal, &mut audit)),
                Err(Attempt::Failed(e)) => {
                    let endpoint = audit.endpoint.clone().unwrap_or_default();
                    self.metrics.failed(&endpoint, e.kind());
                    if !fell_back && may_fall_back(&decision, &e) {
                        fell_back = true;
                        decision = fallback(&decision, &endpoint, &e);
                        continue;
                    }
                    audit.finish(None, "failed", Some(&e.to_string()));
                    return Err(client_error(e));
                }
            }
        }
    }

    /// Runs a prepared query; when the agent cannot be reached and the
    /// assignment allows it, once more on local compute.
    async fn execute(&self, p: Prepared) -> Result<Started, ApiError> {
        let Prepared {
            mut decision,
            engine,
            user_sql,
            mut audit,
            mut scope,
            deadline,
        } = p;
        let mut result = engine.run(&scope.rewritten.sql, deadline).await;
        if let Err(e) = &result {
            let endpoint = audit.endpoint.clone().unwrap_or_default();
            self.metrics.failed(&endpoint, e.kind());
            if may_fall_back(&decision, e) {
                decision = fallback(&decision, &endpoint, e);
                audit.routed(&decision);
                let (policy, principal) = (scope.policy.clone(), scope.principal.clone());
                result = match self
                    .plan(
                        &decision, &policy, &principal, &user_sql, deadline, &mut audit,
                    )
                    .await
                {
                    Ok((local, local_scope)) => {
                        scope = local_scope;
                        local.run(&scope.rewritten.sql, deadline).await
                    }
                    Err(Attempt::Failed(e)) => Err(e),
                    Err(Attempt::Denied(e)) => {
                        return Err(self.denied(e, &principal, &mut audit));
                    }
                };
                if let Err(e) = &result {
                    self.metrics.failed("local", e.kind());
                }
            }
        }
        match result {
            Ok(rows) => {
                let endpoint = audit.endpoint.clone().unwrap_or_default();
                self.metrics.routed(&endpoint, decision.rule.as_str());
                self.metrics.latency(&endpoint, audit.started().elapsed());
                Ok(Started {
                    decision,
                    rows,
                    audit,
                    scope,
                })
            }
            Err(e) => {
                let err = scope.user_error(e);
                audit.finish(None, "failed", Some(&err.message));
                Err(err)
            }
        }
    }

    /// A refusal: counted, audited, answered; a binder-check mismatch is
    /// logged as a policy-engine error (the rewriter let through something
    /// the engine's binder reads otherwise).
    fn denied(&self, d: Denial, who: &Principal, audit: &mut Audit) -> ApiError {
        let (kind, err) = denial_error(&d);
        if let Denial::Verify(VerifyError::Mismatch(m) | VerifyError::Shadow(m)) = &d {
            tracing::error!(
                target: "policy_engine",
                user = %who.user,
                query_id = %audit.query_id,
                error = %m,
                "the binder check refused a rewritten statement"
            );
        }
        self.metrics.denied(kind);
        audit.finish(Some(&err.message), "denied", None);
        err
    }

    /// The decided engine, its catalog, and the proven rewrite for it.
    async fn plan(
        &self,
        decision: &Decision,
        policy: &Arc<PolicyAt>,
        principal: &Principal,
        sql: &str,
        deadline: Instant,
        audit: &mut Audit,
    ) -> Result<(Arc<dyn Executor>, ErrorScope), Attempt> {
        let engine: Arc<dyn Executor> =
            self.resolver.executor(decision).map_err(Attempt::Failed)?;
        let mut catalog = self
            .catalogs
            .get(&*engine, deadline)
            .await
            .map_err(Attempt::Failed)?;
        let rewritten = match self.rewrite(&catalog, policy, principal, sql).await {
            Err(Denial::Rewrite(RewriteError::UnknownTable(_))) => {
                // A table created since the catalog was read: read it again, once.
                catalog = self
                    .catalogs
                    .refresh(&*engine, deadline)
                    .await
                    .map_err(Attempt::Failed)?;
                self.rewrite(&catalog, policy, principal, sql).await
            }
            r => r,
        }
        .map_err(Attempt::Denied)?;
        audit.tables = rewritten.tables.iter().map(|t| t.to_string()).collect();
        Ok((
            engine,
            ErrorScope {
                policy: policy.clone(),
                principal: principal.clone(),
                catalog,
                rewritten,
            },
        ))
    }

    /// The rewrite of `sql` for `principal` on the engine of `catalog`: from
    /// the cache or a template on this thread; else rewritten and proven by
    /// the binder check on the blocking pool (it binds in DuckDB), and only
    /// then cached.
    async fn rewrite(
        &self,
        catalog: &Arc<EngineCatalog>,
        policy: &Arc<PolicyAt>,
        principal: &Principal,
        sql: &str,
    ) -> Result<Arc<Rewritten>, Denial> {
        let generation = Generation {
            policy: policy.generation,
            catalog: catalog.version,
        };
        let miss = match self.rewrites.lookup(generation, sql, principal)? {
            Lookup::Hit(r) => return Ok(r),
            Lookup::Miss(m) => m,
        };
        let cache = self.rewrites.clone();
        let catalog = catalog.clone();
        let policy = policy.clone();
        let principal = principal.clone();
        let sql = sql.to_string();
        let default_catalog = self.default_catalog.clone();
        tokio::task::spawn_blocking(move || {
            let access: &dyn AccessControl = &policy.policy;
            cache.complete(miss, generation, &sql, access, &principal, &*catalog, |r| {
                prove(&catalog, &default_catalog, access, &principal, r)
            })
        })
        .await
        .map_err(|e| Denial::Verify(VerifyError::Shadow(format!("the check's task failed: {e}"))))?
    }

    /// `POST /v1/query`: runs and streams the rows in one answer.
    async fn query_sync(
        self: &Arc<Self>,
        who: AuthedPrincipal,
        sql: String,
    ) -> Result<Response<Body>, ApiError> {
        let id = jobs::new_query_id();
        let prepared = self.prepare(&who, &sql, &id).await?;
        let Started {
            decision,
            mut rows,
            mut audit,
            scope,
        } = self.execute(prepared).await?;
        // The first page before the status line, so an early failure is still an error status.
        let first = match rows.next_page().await {
            Ok(p) => p,
            Err(e) => {
                let err = scope.user_error(e);
                audit.finish(None, "failed", Some(&err.message));
                return Err(err);
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
                        let _ = tx.send(Ok(Frame::data(failed_tail(err)))).await;
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
                self.metrics.rejected_busy();
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOO_MANY_QUERIES",
                    e.to_string(),
                ));
            }
        };
        let mut prepared = match self.prepare(&who, &sql, &job.id).await {
            Ok(p) => p,
            Err(e) => {
                self.jobs.remove(&job.id, &job.owner);
                return Err(e);
            }
        };
        // A cancel or delete while the query runs aborts the task that holds
        // this record: it then logs why, not `abandoned`.
        prepared.audit.stop = job.stop.clone();
        job.inner.lock().await.routing = Some((
            prepared.audit.endpoint.clone().unwrap_or_default(),
            prepared.decision.to_string(),
        ));
        let me = self.clone();
        let j = job.clone();
        let task = tokio::spawn(async move {
            match me.execute(prepared).await {
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
        #[derive(Serialize)]
        struct Status<'a> {
            query_id: &'a str,
            status: &'static str,
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
                status: st.as_str(),
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
                let err = res.scope.user_error(e);
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

/// Whether a failure on the decided engine may move the query to local
/// compute: the agent could not be reached or is overloaded, and the caller's
/// assignment allows `fallback_local`.
fn may_fall_back(d: &Decision, e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Transport { .. } | ClientError::Overloaded { .. }
    ) && matches!(d.target, Target::Remote { .. })
        && d.assignment.as_ref().is_some_and(|a| a.fallback_local)
}

/// The local decision that replaces `d` after `e`.
fn fallback(d: &Decision, endpoint: &str, e: &ClientError) -> Decision {
    Decision {
        target: Target::Local,
        rule: Rule::FallbackLocal,
        assignment: d.assignment.clone(),
        detail: format!("endpoint {endpoint} failed: {e}"),
    }
}

/// Why one try failed.
enum Attempt {
    Denied(Denial),
    Failed(ClientError),
}

/// Why a statement was refused: by the rewriter, or by the binder check.
#[derive(Debug)]
enum Denial {
    Rewrite(RewriteError),
    Verify(VerifyError),
}

impl From<RewriteError> for Denial {
    fn from(e: RewriteError) -> Denial {
        Denial::Rewrite(e)
    }
}

/// The binder check of one rewrite (see [`crate::verify`]): the shadow of
/// the engine's catalog binds it, and the plan must read each table only
/// through the derived query the policy gives it. A bind error comes back
/// as the engine's own message, cut of what would show the policy.
fn prove(
    catalog: &EngineCatalog,
    default_catalog: &str,
    access: &dyn AccessControl,
    who: &Principal,
    r: &Rewritten,
) -> Result<(), Denial> {
    let shadow = catalog.shadow(default_catalog).map_err(Denial::Verify)?;
    let mut derived = Vec::with_capacity(r.tables.len());
    for key in &r.tables {
        match crate::rewrite::derived_sql(access, who, key, catalog)? {
            Some(text) => derived.push((key.clone(), text)),
            None => {
                return Err(Denial::Verify(VerifyError::Mismatch(format!(
                    "{key} is not granted"
                ))))
            }
        }
    }
    shadow.check(&r.sql, &derived).map_err(|e| match e {
        VerifyError::Bind(m) => {
            let text = disclose::policy_text(access, who, &r.tables, catalog);
            Denial::Verify(VerifyError::Bind(disclose::engine_message(&m, &text)))
        }
        e => Denial::Verify(e),
    })
}

#[derive(Serialize)]
struct IdStatus<'a> {
    query_id: &'a str,
    status: &'static str,
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no query {id}"))
}

/// A refusal's metric label and answer.
fn denial_error(d: &Denial) -> (&'static str, ApiError) {
    match d {
        Denial::Rewrite(e) => rewrite_error(e),
        Denial::Verify(VerifyError::Bind(m)) => (
            "engine_bind",
            ApiError::new(StatusCode::BAD_REQUEST, "EXECUTION_ERROR", m.clone()),
        ),
        Denial::Verify(VerifyError::Mismatch(_)) => (
            "policy_engine",
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "SQL_REFUSED",
                "the statement failed the policy engine's check of its bound plan",
            ),
        ),
        Denial::Verify(VerifyError::Shadow(_)) => (
            "policy_engine",
            ApiError::internal("the policy engine could not check the statement"),
        ),
    }
}

/// A rewriter refusal's metric label and answer.
fn rewrite_error(e: &RewriteError) -> (&'static str, ApiError) {
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
            ApiError::new(StatusCode::FORBIDDEN, "ACCESS_DENIED", e.to_string())
        }
        _ => ApiError::new(StatusCode::BAD_REQUEST, "SQL_REFUSED", e.to_string()),
    };
    (kind, err)
}

/// A client error as the caller's answer.
pub fn client_error(e: ClientError) -> ApiError {
    let msg = e.to_string();
    match e {
        ClientError::Execution { .. } | ClientError::BadRequest { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "EXECUTION_ERROR", msg)
        }
        ClientError::Timeout => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "QUERY_TIMEOUT", msg),
        ClientError::Canceled { .. } => ApiError::new(StatusCode::CONFLICT, "CANCELED", msg),
        ClientError::Overloaded { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ENGINE_OVERLOADED", msg)
        }
        ClientError::Unavailable { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ENDPOINT_UNAVAILABLE", msg)
        }
        ClientError::Transport { .. }
        | ClientError::Protocol { .. }
        | ClientError::Auth { .. }
        | ClientError::NotFound { .. }
        | ClientError::NotReady { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "ENGINE_UNREACHABLE", msg)
        }
        ClientError::Config(_) | ClientError::Local(_) => ApiError::internal(msg),
    }
}

/// `page_token` values arrive URL-encoded (`=` as `%3D`).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
