//! The one query path every door goes through (HTTP's `POST /v1/query` and
//! jobs, the PostgreSQL wire, Flight SQL): authenticate, the policy of the
//! store's snapshot, the resolver's routing decision, the engine's catalog,
//! the rewrite and the binder check, the run with its fallback to local
//! compute, the audit line (with the door named), the metrics.
//!
//! Owns the order of those steps and what a failure of each means
//! ([`QueryError`], which each door maps to its own protocol in one place).
//! It never speaks a protocol: rows leave as the engine's [`QueryRows`], or
//! as the engine's own Arrow export ([`QueryService::execute_arrow`], with
//! parameters bound as values, see [`params`]), for the door to encode. It never runs SQL the rewriter did not produce and
//! the binder check did not prove, never blocks a runtime thread on DuckDB
//! or the store, and reads the store's in-memory snapshot (an `Arc` clone,
//! no database round trip per query).

pub mod admission;
pub mod audit;
pub mod catalog;
pub mod error;
pub mod granted;
pub mod history;
pub mod metrics;
pub mod params;

pub use error::{Denial, ErrorKind, QueryError};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::resolver::{Decision, Left, Resolver, Target};
use client::rows::BoxFuture;

use crate::drain::Drain;
use client::{ArrowBatches, ClientError, Executor, LocalExecutor, Param, QueryRows, Value};

use crate::access::{AccessControl, Principal};
use crate::disclose::{self, PolicyText};
use crate::policy::Policy;
use crate::rewrite::{RewriteError, Rewritten};
use crate::rewrite_cache::{Generation, Lookup, RewriteCache, DEFAULT_REWRITE_CACHE_BYTES};
use crate::store::{AuthedPrincipal, Store};
use crate::verify::VerifyError;
use audit::Audit;
use catalog::{Catalogs, EngineCatalog};
use metrics::Metrics;

/// Which door a query came through (the audit line's `door`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// The HTTP/JSON API (`POST /v1/query`, `/v1/queries`).
    Http,
    /// The PostgreSQL wire protocol.
    Pgwire,
    /// Arrow Flight SQL.
    Flight,
}

impl Door {
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Http => "http",
            Door::Pgwire => "pgwire",
            Door::Flight => "flight",
        }
    }
}

/// The query path's shared state; one per process, shared by every door.
pub struct QueryService {
    pub store: Store,
    pub resolver: Arc<Resolver>,
    pub local: Arc<LocalExecutor>,
    pub catalogs: Catalogs,
    pub metrics: Metrics,
    /// The catalog unqualified names belong to.
    pub default_catalog: String,
    /// How long a query may take, from its first step to its last row.
    query_timeout: Duration,
    /// The policy built from the snapshot of this revision (built once per
    /// store change, not per query).
    policy: Mutex<Option<(i64, Arc<PolicyAt>)>>,
    /// Rewrites already made (and proven), by policy and catalog generation,
    /// principal and text.
    rewrites: Arc<RewriteCache>,
    /// Queries in flight, and whether the gateway is shutting down.
    pub drain: Arc<Drain>,
    /// Slots on agents and the queue for them.
    pub admission: Arc<admission::Admission>,
}

/// A query routed and rewritten, ready to run.
pub struct Prepared {
    pub decision: Decision,
    engine: Arc<dyn Executor>,
    /// The user's SQL (rewritten again if the query falls back to local).
    user_sql: String,
    pub audit: Audit,
    /// The rewrite sent, and what an engine error may show of it.
    scope: ErrorScope,
    /// Values bound to the statement's placeholders, sent beside it.
    params: Vec<Param>,
    deadline: Instant,
    /// The endpoints the query already left (never chosen again for it).
    left: Vec<Left>,
    /// Where the query waits in the admission queue, for a door that shows
    /// it (a job's status); `None`: nobody asks.
    pub queue_place: Option<Arc<admission::Place>>,
}

impl Prepared {
    /// Binds values to the statement's placeholders (`$1`, ...): they travel
    /// to the engine beside the rewritten text, never spliced into it.
    pub fn bind(mut self, params: Vec<Param>) -> Prepared {
        self.params = params;
        self
    }
}

/// A granted table as its principal may see it: its key and its columns
/// with their DuckDB type names (masked columns keep their declared type),
/// as the binder check's shadow holds every table.
pub type VisibleTable = crate::verify::ShadowTable;

/// A query running, its rows streaming: typed rows ([`QueryService::execute`])
/// or Arrow batches ([`QueryService::execute_arrow`]).
pub struct Started<R = QueryRows> {
    pub decision: Decision,
    pub rows: R,
    pub audit: Audit,
    pub scope: ErrorScope,
}

/// How a prepared query's result is fetched from its engine: the one thing
/// [`QueryService::execute`] and [`QueryService::execute_arrow`] differ in.
trait Fetch {
    type Out;
    fn run<'a>(
        &'a self,
        engine: &'a dyn Executor,
        sql: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Self::Out, ClientError>>;
}

/// Typed rows, with these parameter values bound ([`Executor::run_params`]).
struct Rows<'p>(&'p [Param]);

impl Fetch for Rows<'_> {
    type Out = QueryRows;
    fn run<'a>(
        &'a self,
        engine: &'a dyn Executor,
        sql: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<QueryRows, ClientError>> {
        engine.run_params(sql, self.0, deadline)
    }
}

/// The engine's Arrow export, with these parameter values bound
/// ([`Executor::run_arrow`]).
struct Arrow<'p>(&'p [Value]);

impl Fetch for Arrow<'_> {
    type Out = ArrowBatches;
    fn run<'a>(
        &'a self,
        engine: &'a dyn Executor,
        sql: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<ArrowBatches, ClientError>> {
        engine.run_arrow(sql, self.0, deadline)
    }
}

/// A policy built from one store snapshot, and the process-unique number the
/// rewrite cache knows it by.
pub struct PolicyAt {
    generation: u64,
    policy: Policy,
}

/// The next [`PolicyAt::generation`].
static NEXT_POLICY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// What a query was rewritten under, kept beside it so that an engine error
/// raised while it runs (at once, mid-stream, or on a later page) is shown
/// to its user without the policy ([`crate::disclose`]). Cheap to clone:
/// only `Arc`s and the principal.
#[derive(Clone)]
pub struct ErrorScope {
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
    pub fn user_error(&self, e: ClientError) -> QueryError {
        match e {
            ClientError::Execution { code, message } => {
                let message = disclose::engine_message(&message, &self.policy_text());
                ClientError::Execution { code, message }.into()
            }
            e => e.into(),
        }
    }

    /// The rewritten statement (what the engine runs).
    pub fn sql(&self) -> &str {
        &self.rewritten.sql
    }
}

impl QueryService {
    pub fn new(
        store: Store,
        resolver: Arc<Resolver>,
        local: Arc<LocalExecutor>,
        default_catalog: String,
        query_timeout: Duration,
        catalog_ttl: Duration,
        admission: admission::AdmissionSettings,
    ) -> QueryService {
        QueryService {
            store,
            resolver,
            local,
            catalogs: Catalogs::new(catalog_ttl),
            metrics: Metrics::default(),
            default_catalog,
            query_timeout,
            policy: Mutex::new(None),
            rewrites: Arc::new(RewriteCache::new(DEFAULT_REWRITE_CACHE_BYTES)),
            drain: Arc::new(Drain::default()),
            admission: admission::Admission::new(admission),
        }
    }

    /// The rewrite cache (for `/metrics`).
    pub fn rewrites(&self) -> &RewriteCache {
        &self.rewrites
    }

    /// The principal a bearer token (an API token) names.
    pub fn authenticate(&self, token: Option<&str>) -> Result<AuthedPrincipal, QueryError> {
        match token.and_then(|t| self.store.authenticate_now(t)) {
            Some(p) => Ok(p),
            None => {
                self.metrics.unauthorized();
                Err(QueryError::unauthorized())
            }
        }
    }

    /// The principal of `user` when `token` is one of that user's API tokens
    /// (a door whose protocol sends a user name and a password: the token is
    /// the password). Another user's token is refused like a wrong one.
    pub fn authenticate_user(
        &self,
        user: &str,
        token: &str,
    ) -> Result<AuthedPrincipal, QueryError> {
        match self.store.authenticate_now(token) {
            Some(p) if p.user == user.to_lowercase() => Ok(p),
            _ => {
                self.metrics.unauthorized();
                Err(QueryError::unauthorized())
            }
        }
    }

    /// The tables `who` is granted on the engine its queries are routed to,
    /// and the (policy, catalog) generation they were read under.
    pub async fn visible_tables(
        &self,
        who: &AuthedPrincipal,
    ) -> Result<((u64, u64), Vec<VisibleTable>), QueryError> {
        let policy = self.policy()?;
        let deadline = Instant::now() + self.query_timeout;
        let principal = Principal {
            user: who.user.clone(),
            groups: who.groups.clone(),
        };
        let catalog = self.routed_catalog(&principal, deadline).await?;
        let out = catalog.table_columns(|k| policy.policy.access(&principal, k).is_some());
        Ok(((policy.generation, catalog.version), out))
    }

    /// The catalog of the engine `who`'s queries are routed to; when it
    /// cannot be reached, the next place's, as a query moves on.
    pub(crate) async fn routed_catalog(
        &self,
        who: &Principal,
        deadline: Instant,
    ) -> Result<Arc<EngineCatalog>, QueryError> {
        self.resolver.reload_if_changed();
        let mut decision = self.resolver.resolve(&who.user, &who.groups)?;
        // Metadata, not a query: no audit line, but the same moves.
        let mut scratch = Audit::new("", &who.user, &who.groups, "metadata");
        scratch.discard();
        let mut left = Vec::new();
        loop {
            let engine = self.resolver.executor(&decision)?;
            match self.catalogs.get(&*engine, deadline).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    decision = self
                        .move_on(
                            &decision,
                            who,
                            e,
                            Step::Catalog,
                            deadline,
                            &mut scratch,
                            &mut left,
                        )
                        .await?;
                }
            }
        }
    }

    /// The columns (names, DuckDB type names) a prepared query will answer,
    /// without running it on its engine: the shadow of its engine's catalog
    /// runs the proven rewrite under `LIMIT 0`, `params` placeholders bound
    /// to NULL. The query is not run and leaves no audit line.
    pub async fn describe(
        &self,
        p: Prepared,
        params: usize,
    ) -> Result<Vec<(String, String)>, QueryError> {
        let Prepared {
            mut audit, scope, ..
        } = p;
        audit.discard();
        let default_catalog = self.default_catalog.clone();
        tokio::task::spawn_blocking(move || {
            let shadow = scope.catalog.shadow(&default_catalog)?;
            shadow.describe(&scope.rewritten.sql, params)
        })
        .await
        .map_err(|e| QueryError::internal(format!("the describe task failed: {e}")))?
        .map_err(|e| match e {
            VerifyError::Bind(m) => QueryError::new(ErrorKind::Engine, "EXECUTION_ERROR", m),
            e => QueryError::internal(e.to_string()),
        })
    }

    /// [`Self::prepare`] then [`Self::execute`].
    pub async fn run(
        &self,
        who: &AuthedPrincipal,
        sql: &str,
        query_id: &str,
        door: Door,
    ) -> Result<Started, QueryError> {
        let p = self.prepare(who, sql, query_id, door).await?;
        self.execute(p).await
    }

    /// The policy of the store's current snapshot.
    pub fn policy(&self) -> Result<Arc<PolicyAt>, QueryError> {
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
            QueryError::internal(format!("the stored policy does not load: {e}"))
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
    pub async fn prepare(
        &self,
        who: &AuthedPrincipal,
        sql: &str,
        query_id: &str,
        door: Door,
    ) -> Result<Prepared, QueryError> {
        let mut audit = Audit::new(query_id, &who.user, &who.groups, door.as_str());
        // Counted from here to its answer's last byte; none once draining.
        match self.drain.enter() {
            Some(guard) => audit.in_flight = Some(guard),
            None => {
                audit.discard();
                return Err(QueryError::new(
                    ErrorKind::Unavailable,
                    "SHUTTING_DOWN",
                    "the gateway is shutting down: retry on another gateway",
                ));
            }
        }
        let deadline = audit.started() + self.query_timeout;
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
        let decision = match self.resolver.resolve(&who.user, &who.groups) {
            Ok(d) => d,
            Err(e) => {
                self.metrics.failed("none", e.kind());
                audit.finish(None, "failed", Some(&e.to_string()));
                return Err(e.into());
            }
        };
        let mut left = Vec::new();
        match self
            .place(
                decision, &policy, &principal, sql, deadline, &mut audit, &mut left,
            )
            .await
        {
            Ok((decision, engine, scope)) => Ok(Prepared {
                decision,
                engine,
                user_sql: sql.to_string(),
                audit,
                scope,
                params: Vec::new(),
                deadline,
                left,
                queue_place: None,
            }),
            Err(Attempt::Denied(e)) => Err(self.denied(e, &principal, &mut audit)),
            Err(Attempt::Failed(e)) => {
                audit.finish(None, "failed", Some(&e.to_string()));
                Err(e.into())
            }
        }
    }

    /// Runs a prepared query; when the agent cannot be reached and the
    /// assignment allows it, once more on local compute.
    pub async fn execute(&self, mut p: Prepared) -> Result<Started, QueryError> {
        let params = std::mem::take(&mut p.params);
        self.execute_with(p, Rows(&params)).await
    }

    /// [`Self::execute`], the result fetched as the engine's own Arrow
    /// export (an agent's Arrow pages, local DuckDB's Arrow export: no JSON
    /// in between), with `params` bound to the statement's placeholders as
    /// values (`$1` is `params[0]`), never written into its text. The
    /// statement is the one [`Self::prepare`] rewrote and proved; the policy
    /// adds no placeholder of its own (the store refuses one in a filter or
    /// a mask), so every parameter is the user's. Engine errors, at once or
    /// mid-stream, reach the user through [`ErrorScope::user_error`].
    pub async fn execute_arrow(
        &self,
        p: Prepared,
        params: &[Value],
    ) -> Result<Started<ArrowBatches>, QueryError> {
        self.execute_with(p, Arrow(params)).await
    }

    /// Runs a prepared query, its result fetched by `fetch`; the fallback to
    /// local compute as [`Self::execute`] says.
    async fn execute_with<F: Fetch>(
        &self,
        p: Prepared,
        fetch: F,
    ) -> Result<Started<F::Out>, QueryError> {
        let Prepared {
            mut decision,
            mut engine,
            user_sql,
            mut audit,
            mut scope,
            params: _,
            deadline,
            mut left,
            queue_place,
        } = p;
        loop {
            // A slot on the agent, waiting for one in the queue when it is full.
            if let (Target::Remote { endpoint }, None) = (&decision.target, &audit.slot) {
                let asked = Instant::now();
                let admitted = self
                    .admission
                    .admit(
                        endpoint,
                        &scope.principal.user,
                        deadline,
                        queue_place.as_deref(),
                    )
                    .await;
                audit.queued += asked.elapsed();
                match admitted {
                    Ok(slot) => audit.slot = slot,
                    Err(r) => {
                        let e = Attempt::busy(endpoint, &r);
                        self.metrics.rejected_busy();
                        audit.finish(None, "refused", Some(&e.message));
                        return Err(e);
                    }
                }
            }
            let e = match fetch.run(&*engine, &scope.rewritten.sql, deadline).await {
                Ok(rows) => {
                    let endpoint = audit.endpoint.clone().unwrap_or_default();
                    self.metrics.routed(&endpoint, decision.rule.as_str());
                    self.metrics.latency(&endpoint, audit.started().elapsed());
                    return Ok(Started {
                        decision,
                        rows,
                        audit,
                        scope,
                    });
                }
                Err(e) => e,
            };
            let endpoint = audit.endpoint.clone().unwrap_or_default();
            self.metrics.failed(&endpoint, e.kind());
            let principal = scope.principal.clone();
            let next = match self
                .move_on(
                    &decision,
                    &principal,
                    e,
                    Step::Run,
                    deadline,
                    &mut audit,
                    &mut left,
                )
                .await
            {
                Ok(next) => next,
                Err(e) => {
                    let err = scope.user_error(e);
                    audit.finish(None, "failed", Some(&err.message));
                    return Err(err);
                }
            };
            let policy = scope.policy.clone();
            match self
                .place(
                    next, &policy, &principal, &user_sql, deadline, &mut audit, &mut left,
                )
                .await
            {
                Ok((d, en, sc)) => (decision, engine, scope) = (d, en, sc),
                Err(Attempt::Denied(e)) => return Err(self.denied(e, &principal, &mut audit)),
                Err(Attempt::Failed(e)) => {
                    let err = scope.user_error(e);
                    audit.finish(None, "failed", Some(&err.message));
                    return Err(err);
                }
            }
        }
    }

    /// The engine of `decision`, its catalog and the proven rewrite of `sql`
    /// for it; when the engine cannot be reached for its catalog (the user's
    /// statement was sent nowhere yet), the next place [`Self::move_on`]
    /// finds, until one answers or none is left.
    #[allow(clippy::too_many_arguments)]
    async fn place(
        &self,
        mut decision: Decision,
        policy: &Arc<PolicyAt>,
        principal: &Principal,
        sql: &str,
        deadline: Instant,
        audit: &mut Audit,
        left: &mut Vec<Left>,
    ) -> Result<(Decision, Arc<dyn Executor>, ErrorScope), Attempt> {
        loop {
            audit.routed(&decision);
            match self
                .plan(&decision, policy, principal, sql, deadline, audit)
                .await
            {
                Ok((engine, scope)) => {
                    // The previous place's slot, if the query moved, is freed
                    // here; the new one is taken when it runs.
                    audit.slot = None;
                    audit.running = self.resolver.begin(&decision);
                    return Ok((decision, engine, scope));
                }
                Err(Attempt::Failed(e)) => {
                    let endpoint = audit.endpoint.clone().unwrap_or_default();
                    self.metrics.failed(&endpoint, e.kind());
                    decision = self
                        .move_on(
                            &decision,
                            principal,
                            e,
                            Step::Catalog,
                            deadline,
                            audit,
                            left,
                        )
                        .await
                        .map_err(Attempt::Failed)?;
                }
                Err(denied) => return Err(denied),
            }
        }
    }

    /// Where a query goes after `e` on the engine of `decision` at `step`: the
    /// endpoint is reported to the resolver (a failing one is suspect at once
    /// for every query), and when the query provably never started there (see
    /// [`Step`]), the next place the resolver finds without the endpoints it
    /// left: another endpoint of the same rule, then down the rules, then
    /// local compute where the assignment allows `fallback_local`. An
    /// overloaded agent with nowhere else to go is waited for (its
    /// `Retry-After`, within the deadline) and tried again. Otherwise `e`.
    #[allow(clippy::too_many_arguments)]
    async fn move_on(
        &self,
        decision: &Decision,
        who: &Principal,
        e: ClientError,
        step: Step,
        deadline: Instant,
        audit: &mut Audit,
        left: &mut Vec<Left>,
    ) -> Result<Decision, ClientError> {
        let Target::Remote { endpoint } = &decision.target else {
            return Err(e);
        };
        self.resolver.report(endpoint, &e);
        let never_started = match step {
            // The catalog read is the gateway's own question: the user's
            // statement was not sent anywhere yet, whatever broke.
            Step::Catalog => matches!(
                e,
                ClientError::Unreachable { .. }
                    | ClientError::Transport { .. }
                    | ClientError::Unresponsive { .. }
                    | ClientError::Overloaded { .. }
                    | ClientError::Protocol { .. }
            ),
            Step::Run => e.never_started(),
        };
        if !never_started || Instant::now() >= deadline {
            return Err(e);
        }
        let why = e.to_string();
        self.metrics.failover(endpoint, e.kind());
        // Every error that moves a query names its endpoint.
        audit.left.push(why.clone());
        left.push(Left {
            endpoint: endpoint.clone(),
            why,
        });
        match self
            .resolver
            .resolve_excluding(&who.user, &who.groups, left)
        {
            Ok(next) => Ok(next),
            Err(_) => match &e {
                ClientError::Overloaded {
                    code, retry_after, ..
                } if code != client::SHUTTING_DOWN => {
                    let wait = retry_after
                        .unwrap_or(Duration::from_secs(1))
                        .max(OVERLOAD_PAUSE_MIN);
                    if Instant::now() + wait >= deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(wait).await;
                    // Busy, not failing: it may take the query now.
                    left.retain(|l| &l.endpoint != endpoint);
                    Ok(decision.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// A refusal: counted, audited, answered; a binder-check mismatch is
    /// logged as a policy-engine error (the rewriter let through something
    /// the engine's binder reads otherwise).
    fn denied(&self, d: Denial, who: &Principal, audit: &mut Audit) -> QueryError {
        let (kind, err) = d.answer();
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
}

/// The shortest pause before an overloaded agent with nowhere else to go is
/// tried again (a `Retry-After: 0` must not spin).
const OVERLOAD_PAUSE_MIN: Duration = Duration::from_millis(50);

/// Where in a query's life an engine failed, which decides what proves the
/// statement never started there.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Reading the engine's catalog, before the statement is sent: any
    /// failure to get an answer leaves the statement unsent.
    Catalog,
    /// Running the statement: only an error that proves nothing was queued
    /// ([`ClientError::never_started`]); a statement that may have started is
    /// never run a second time, here or anywhere.
    Run,
}

/// Why one try failed.
enum Attempt {
    Denied(Denial),
    Failed(ClientError),
}

impl Attempt {
    /// A refusal by the admission queue (the agent stayed full for as long as
    /// the query could wait, or too many queries wait already), as its user
    /// reads it.
    fn busy(endpoint: &str, r: &admission::Refused) -> QueryError {
        match r {
            admission::Refused::QueueFull => QueryError::new(
                ErrorKind::TooManyQueries,
                "QUEUE_FULL",
                format!("{endpoint} is full and the queue for agents is full: retry later"),
            ),
            admission::Refused::Timeout(waited) => QueryError::new(
                ErrorKind::TooManyQueries,
                "QUEUE_TIMEOUT",
                format!(
                    "{endpoint} stayed full for {:.1}s, as long as the query could wait: retry later",
                    waited.as_secs_f64()
                ),
            ),
        }
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
