//! The compute resolver: decides per user and groups where a query runs (a remote
//! agent or local DuckDB), says why, and hands back the executor to run it on.
//!
//! Owns the resolution order (the user's default assignment, a default assignment of
//! one of the user's groups, any other assignment; among usable endpoints of one rule,
//! the least loaded by `/health` plus the queries this process runs there; else
//! local), what a query that left an endpoint may try next, passive health (a
//! query's report makes an endpoint suspect), the rollout controls, local fallback by
//! the caller's own assignment, the cache of one [`AgentClient`] per endpoint
//! (rebuilt when its URL, token or client settings change), reloads on change or
//! SIGHUP (a bad configuration is refused and the last good one kept), and the
//! background health prober. It never probes on the query path: decisions read the
//! health table only.

pub mod config;
pub mod health;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::agent::{AgentClient, AgentConfig};
use crate::error::ClientError;
use crate::rows::{Executor, QueryRows};

pub use config::{
    Assignment, ConfigError, ConfigSource, Endpoint, EndpointKind, EndpointStatus, Principal,
    ResolverConfig, Rollout, RolloutDefaults, TomlFile,
};
pub use health::{EndpointHealth, HealthTable};

/// Which rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `FEATURE_REMOTE_ROUTING` is off: everyone runs locally.
    RoutingOff,
    /// Canary lists are set and the user is in neither.
    NotCanary,
    /// The user's own default assignment.
    UserDefault,
    /// A default assignment of one of the user's groups.
    GroupDefault,
    /// Another (non-default) assignment of the user or a group.
    OtherAssignment,
    /// No usable assignment (none at all, or only inactive endpoints).
    NoAssignment,
    /// The chosen endpoint is down or overloaded and the caller's assignment allows
    /// local fallback.
    FallbackLocal,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::RoutingOff => "routing-off",
            Rule::NotCanary => "not-canary",
            Rule::UserDefault => "user-default",
            Rule::GroupDefault => "group-default",
            Rule::OtherAssignment => "other-assignment",
            Rule::NoAssignment => "no-assignment",
            Rule::FallbackLocal => "fallback-local",
        }
    }
}

/// Where the query runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Remote { endpoint: String },
    Local,
}

/// A routing decision and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub target: Target,
    pub rule: Rule,
    /// The assignment the decision rests on, if any.
    pub assignment: Option<Assignment>,
    /// Human-readable detail (load figures, skipped endpoints).
    pub detail: String,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            Target::Remote { endpoint } => write!(f, "remote {endpoint}")?,
            Target::Local => f.write_str("local")?,
        }
        write!(f, " (rule {}", self.rule.as_str())?;
        if let Some(a) = &self.assignment {
            write!(
                f,
                "; assignment {} -> {}{}{}",
                a.principal,
                a.endpoint,
                if a.is_default { ", default" } else { "" },
                if a.fallback_local {
                    ", fallback_local"
                } else {
                    ""
                }
            )?;
        }
        if !self.detail.is_empty() {
            write!(f, "; {}", self.detail)?;
        }
        f.write_str(")")
    }
}

/// Queries running per endpoint in this process.
#[derive(Default)]
struct InFlight(Mutex<HashMap<String, Arc<std::sync::atomic::AtomicU64>>>);

impl InFlight {
    fn begin(&self, endpoint: &str) -> Running {
        let counter = {
            let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
            match m.get(endpoint) {
                Some(c) => c.clone(),
                None => m.entry(endpoint.to_string()).or_default().clone(),
            }
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Running(counter)
    }

    fn count(&self, endpoint: &str) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(endpoint)
            .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// One query counted as running on an endpoint ([`Resolver::begin`]); the
/// count drops with it.
#[derive(Debug)]
pub struct Running(Arc<std::sync::atomic::AtomicU64>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An endpoint a query left, and why (the audit line shows each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    pub endpoint: String,
    pub why: String,
}

/// The loaded configuration and its clients.
struct State {
    config: ResolverConfig,
    clients: HashMap<String, AgentClient>,
}

/// The resolver. Share it as `Arc<Resolver>`.
pub struct Resolver {
    source: Box<dyn ConfigSource>,
    defaults: RolloutDefaults,
    state: RwLock<Arc<State>>,
    health: HealthTable,
    /// Queries this process has running on each endpoint (added to the probe's
    /// load, which is stale between probes).
    in_flight: InFlight,
    /// Which of several equally loaded endpoints is next.
    turn: std::sync::atomic::AtomicU64,
    local: Arc<dyn Executor>,
    last_fingerprint: Mutex<Option<u64>>,
    last_error: Mutex<Option<String>>,
}

impl Resolver {
    /// Loads the first configuration (which must be good) and builds the clients.
    pub fn new(
        source: Box<dyn ConfigSource>,
        defaults: RolloutDefaults,
        local: Arc<dyn Executor>,
    ) -> Result<Arc<Resolver>, ConfigError> {
        let fp = source.fingerprint();
        let config = source.load(&defaults)?;
        let clients = build_clients(&config, &HashMap::new(), &HashMap::new());
        Ok(Arc::new(Resolver {
            source,
            defaults,
            state: RwLock::new(Arc::new(State { config, clients })),
            health: HealthTable::default(),
            in_flight: InFlight::default(),
            turn: std::sync::atomic::AtomicU64::new(0),
            local,
            last_fingerprint: Mutex::new(fp),
            last_error: Mutex::new(None),
        }))
    }

    fn state(&self) -> Arc<State> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The configuration in force.
    pub fn config(&self) -> ResolverConfig {
        self.state().config.clone()
    }

    /// Why the last reload was refused (cleared by a good one).
    pub fn last_reload_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn health(&self) -> &HealthTable {
        &self.health
    }

    /// Re-reads the source. A bad configuration is refused (logged, remembered in
    /// [`Self::last_reload_error`]) and the last good one stays. Clients whose URL,
    /// token or settings changed are replaced, and their health starts over.
    pub fn reload(&self) -> Result<(), ConfigError> {
        *self
            .last_fingerprint
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = self.source.fingerprint();
        let config = match self.source.load(&self.defaults) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(source = %self.source.describe(), error = %e, "configuration refused; keeping the last good one");
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                return Err(e);
            }
        };
        let mut guard = self.state.write().unwrap_or_else(|p| p.into_inner());
        let old = guard.clone();
        let old_cfgs: HashMap<String, AgentConfig> = old
            .clients
            .iter()
            .map(|(k, c)| (k.clone(), c.config().clone()))
            .collect();
        let clients = build_clients(&config, &old.clients, &old_cfgs);
        let names: Vec<String> = config.endpoints.iter().map(|e| e.name.clone()).collect();
        let reset: Vec<String> = clients
            .iter()
            .filter(|(k, c)| old_cfgs.get(*k).is_some_and(|o| o != c.config()))
            .map(|(k, _)| k.clone())
            .collect();
        self.health.retain(&names, &reset);
        *guard = Arc::new(State { config, clients });
        drop(guard);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        tracing::info!(source = %self.source.describe(), replaced_clients = reset.len(), "configuration reloaded");
        Ok(())
    }

    /// Reloads when the source's fingerprint changed since the last load.
    pub fn reload_if_changed(&self) -> bool {
        let fp = self.source.fingerprint();
        let changed = *self
            .last_fingerprint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            != fp;
        if changed {
            let _ = self.reload();
        }
        changed
    }

    /// Where `user` (member of `groups`) runs, and why; an error names an endpoint
    /// that cannot serve the user when the user's assignment forbids local fallback.
    pub fn resolve(&self, user: &str, groups: &[String]) -> Result<Decision, ClientError> {
        self.resolve_excluding(user, groups, &[])
    }

    /// A query found `endpoint` failing with `e`: when the error says the endpoint
    /// itself fails ([`ClientError::endpoint_failing`]), it is suspect at once for
    /// every caller, until the prober sees it good `up_after` times in a row.
    pub fn report(&self, endpoint: &str, e: &ClientError) {
        if e.endpoint_failing() {
            self.health.suspect(endpoint, &e.to_string());
        }
    }

    /// [`Self::resolve`] for a query that already left the endpoints of `left`
    /// (each with why): they are never chosen again, so the query moves to the
    /// next usable endpoint of the same rule, then down the rules, then to local
    /// compute where its assignment allows `fallback_local`. An endpoint a query
    /// found failing is avoided while anything else can take the query, and
    /// tried as the last resort when nothing else can (better than refusing on
    /// one blip).
    pub fn resolve_excluding(
        &self,
        user: &str,
        groups: &[String],
        left: &[Left],
    ) -> Result<Decision, ClientError> {
        let st = self.state();
        let cfg = &st.config;
        let r = &cfg.rollout;
        let local = |rule, assignment, detail: String| Decision {
            target: Target::Local,
            rule,
            assignment,
            detail,
        };
        if !r.remote_routing {
            return Ok(local(
                Rule::RoutingOff,
                None,
                "FEATURE_REMOTE_ROUTING is off".into(),
            ));
        }
        if (!r.canary_users.is_empty() || !r.canary_groups.is_empty())
            && !r.canary_users.iter().any(|u| u == user)
            && !groups.iter().any(|g| r.canary_groups.contains(g))
        {
            return Ok(local(
                Rule::NotCanary,
                None,
                "not in the canary users or groups".into(),
            ));
        }
        let is_user = |a: &Assignment| matches!(&a.principal, Principal::User(u) if u == user);
        let is_group =
            |a: &Assignment| matches!(&a.principal, Principal::Group(g) if groups.contains(g));
        let tiers: [(Rule, Vec<&Assignment>); 3] = [
            (
                Rule::UserDefault,
                cfg.assignments
                    .iter()
                    .filter(|a| a.is_default && is_user(a))
                    .collect(),
            ),
            (Rule::GroupDefault, {
                // In the order the caller lists its groups.
                let mut v = Vec::new();
                for g in groups {
                    v.extend(cfg.assignments.iter().filter(|a| {
                        a.is_default && matches!(&a.principal, Principal::Group(x) if x == g)
                    }));
                }
                v
            }),
            (
                Rule::OtherAssignment,
                cfg.assignments
                    .iter()
                    .filter(|a| !a.is_default && (is_user(a) || is_group(a)))
                    .collect(),
            ),
        ];
        // The caller's first assignment whose endpoint is ACTIVE but cannot serve.
        let mut blocked: Option<(&Assignment, String)> = None;
        // The first endpoint skipped only because a query found it failing.
        let mut last_resort: Option<(Rule, &Assignment)> = None;
        let mut skipped: Vec<String> = Vec::new();
        for (rule, list) in &tiers {
            // Usable endpoints of this rule with their load.
            let mut usable: Vec<(&Assignment, u64)> = Vec::new();
            let mut local_choice: Option<&Assignment> = None;
            for a in list {
                let Some(ep) = cfg.endpoint(&a.endpoint) else {
                    continue;
                };
                if ep.status == EndpointStatus::Inactive {
                    skipped.push(format!("{} inactive", ep.name));
                    continue;
                }
                if ep.kind == EndpointKind::Local {
                    local_choice.get_or_insert(a);
                    continue;
                }
                let h = self.health.get(&ep.name);
                let why = if let Some(l) = left.iter().find(|l| l.endpoint == ep.name) {
                    Some(format!("left by this query: {}", l.why))
                } else if !h.up {
                    Some(format!(
                        "down after {} failed probes ({})",
                        h.consecutive_failures,
                        h.last_error.as_deref().unwrap_or("no answer")
                    ))
                } else if h.overloaded(&cfg.health) {
                    Some(format!("overloaded ({} queued jobs)", h.load()))
                } else if let Some(s) = &h.suspect {
                    last_resort.get_or_insert((*rule, *a));
                    Some(format!("suspect ({s})"))
                } else {
                    None
                };
                if let Some(why) = why {
                    skipped.push(format!("{} {why}", ep.name));
                    if blocked.is_none() {
                        blocked = Some((a, why));
                    }
                    continue;
                }
                let load = h.load() + self.in_flight.count(&ep.name);
                usable.push((a, load));
            }
            // The least loaded; among equals, each in turn (so an idle fleet
            // spreads its queries instead of warming only the first agent).
            let best = usable.iter().map(|(_, l)| *l).min().map(|min| {
                let tied: Vec<&(&Assignment, u64)> =
                    usable.iter().filter(|(_, l)| *l == min).collect();
                let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                *tied[turn as usize % tied.len()]
            });
            if let Some((a, load)) = best {
                let mut detail = format!("load {load}");
                if list.len() > 1 {
                    detail.push_str(&format!(", least loaded of {}", list.len()));
                }
                if !skipped.is_empty() {
                    detail.push_str(&format!("; skipped: {}", skipped.join(", ")));
                }
                return Ok(Decision {
                    target: Target::Remote {
                        endpoint: a.endpoint.clone(),
                    },
                    rule: *rule,
                    assignment: Some((*a).clone()),
                    detail,
                });
            }
            if let Some(a) = local_choice {
                return Ok(local(
                    *rule,
                    Some(a.clone()),
                    format!("endpoint {} is LOCAL", a.endpoint),
                ));
            }
        }
        if let Some((a, why)) = blocked {
            if a.fallback_local {
                return Ok(local(
                    Rule::FallbackLocal,
                    Some(a.clone()),
                    format!("endpoint {} {why}", a.endpoint),
                ));
            }
            if let Some((rule, a)) = last_resort {
                return Ok(Decision {
                    target: Target::Remote {
                        endpoint: a.endpoint.clone(),
                    },
                    rule,
                    assignment: Some(a.clone()),
                    detail: format!(
                        "the last resort: every usable endpoint is suspect; skipped: {}",
                        skipped.join(", ")
                    ),
                });
            }
            return Err(ClientError::Unavailable {
                endpoint: a.endpoint.clone(),
                reason: format!(
                    "{why}; the assignment of {} does not allow fallback_local",
                    a.principal
                ),
            });
        }
        let detail = if skipped.is_empty() {
            "no assignment for the user or its groups".to_string()
        } else {
            format!("no usable assignment; skipped: {}", skipped.join(", "))
        };
        Ok(local(Rule::NoAssignment, None, detail))
    }

    /// Counts a query as running on the endpoint `d` names until the returned
    /// guard is dropped (`None` for local compute): later decisions add it to
    /// the endpoint's probed load.
    pub fn begin(&self, d: &Decision) -> Option<Running> {
        match &d.target {
            Target::Remote { endpoint } => Some(self.in_flight.begin(endpoint)),
            Target::Local => None,
        }
    }

    /// The executor a decision names.
    pub fn executor(&self, d: &Decision) -> Result<Arc<dyn Executor>, ClientError> {
        match &d.target {
            Target::Local => Ok(self.local.clone()),
            Target::Remote { endpoint } => self
                .state()
                .clients
                .get(endpoint)
                .map(|c| Arc::new(c.clone()) as Arc<dyn Executor>)
                .ok_or_else(|| ClientError::Unavailable {
                    endpoint: endpoint.clone(),
                    reason: "no longer configured".into(),
                }),
        }
    }

    /// The cached client of an endpoint (invalidated when its URL or token changes).
    pub fn client(&self, endpoint: &str) -> Option<AgentClient> {
        self.state().clients.get(endpoint).cloned()
    }

    /// Resolves and runs: the decision and the rows.
    pub async fn run(
        &self,
        user: &str,
        groups: &[String],
        sql: &str,
        deadline: Instant,
    ) -> Result<(Decision, QueryRows), ClientError> {
        let d = self.resolve(user, groups)?;
        tracing::debug!(user, decision = %d, "routing");
        let ex = self.executor(&d)?;
        let rows = ex.run(sql, deadline).await?;
        Ok((d, rows))
    }

    /// One probe of every ACTIVE remote endpoint (the prober's round; also for tools).
    pub async fn probe_once(&self) {
        let st = self.state();
        let clients: Vec<(String, AgentClient)> = st
            .config
            .endpoints
            .iter()
            .filter(|e| e.kind == EndpointKind::Remote && e.status == EndpointStatus::Active)
            .filter_map(|e| st.clients.get(&e.name).map(|c| (e.name.clone(), c.clone())))
            .collect();
        health::probe_round(&self.health, clients, &st.config.health).await;
    }

    /// Starts the background tasks on the current tokio runtime: the health prober,
    /// the file watcher (every `watch_every`) and the SIGHUP handler. They stop when
    /// the returned handle is dropped.
    pub fn spawn_background(self: &Arc<Self>, watch_every: Duration) -> Background {
        let me = Arc::downgrade(self);
        let prober = tokio::spawn(async move {
            loop {
                let Some(r) = me.upgrade() else { return };
                r.probe_once().await;
                let s = r.state().config.health.clone();
                drop(r);
                tokio::time::sleep(s.interval + health::jitter(s.jitter)).await;
            }
        });
        let me = Arc::downgrade(self);
        // Registered before returning, so a SIGHUP sent right after is not lost.
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let watcher = tokio::spawn(async move {
            loop {
                let signalled = match hup.as_mut() {
                    Some(h) => tokio::select! {
                        _ = tokio::time::sleep(watch_every) => false,
                        _ = h.recv() => true,
                    },
                    None => {
                        tokio::time::sleep(watch_every).await;
                        false
                    }
                };
                let Some(r) = me.upgrade() else { return };
                if signalled {
                    tracing::info!("SIGHUP: reloading the resolver configuration");
                    let _ = r.reload();
                } else {
                    r.reload_if_changed();
                }
            }
        });
        Background {
            tasks: vec![prober, watcher],
        }
    }
}

/// The resolver's background tasks; aborted on drop.
pub struct Background {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// One client per REMOTE endpoint, reusing an old one whose settings are unchanged.
fn build_clients(
    cfg: &ResolverConfig,
    old: &HashMap<String, AgentClient>,
    old_cfgs: &HashMap<String, AgentConfig>,
) -> HashMap<String, AgentClient> {
    let mut out = HashMap::new();
    for e in cfg
        .endpoints
        .iter()
        .filter(|e| e.kind == EndpointKind::Remote)
    {
        let mut ac = AgentConfig::new(&e.name, &e.url, &e.token);
        ac.sign_requests = cfg.client.sign_requests;
        ac.cursor_mode = cfg.rollout.cursor_mode;
        ac.page_size = cfg.client.page_size;
        ac.lifecycle_recheck = cfg.client.lifecycle_recheck;
        ac.max_response_bytes = cfg.client.max_response_bytes;
        ac.connect_timeout = cfg.client.connect_timeout;
        ac.first_byte_timeout = cfg.client.first_byte_timeout;
        ac.long_poll = cfg.client.long_poll;
        ac.wait_on_overload = cfg.client.wait_on_overload;
        ac.ca_pem = cfg.client.ca_pem.clone();
        if old_cfgs.get(&e.name) == Some(&ac) {
            if let Some(c) = old.get(&e.name) {
                out.insert(e.name.clone(), c.clone());
                continue;
            }
        }
        // Validated at load, so this only fails on a bug; skip rather than panic.
        match AgentClient::new(ac) {
            Ok(c) => {
                out.insert(e.name.clone(), c);
            }
            Err(err) => tracing::error!(endpoint = %e.name, error = %err, "cannot build a client"),
        }
    }
    out
}
