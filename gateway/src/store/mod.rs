//! The gateway's state in a real database: compute endpoints and their
//! assignments, users, groups, API tokens, grants, row filters and column
//! masks; and the in-memory [`Snapshot`] of it that routing and the policy
//! read on the query path.
//!
//! Owns the schema and its migrations (run at [`Store::open`]), validation
//! of every write (names, enums, sizes; filters and masks parsed with
//! [`crate::policy`], as the rewriter parses them), the revision number
//! (bumped in the same transaction as every write), and freshness: a write
//! through a [`Store`] installs a new snapshot before it returns, and
//! [`Store::spawn_refresh`] polls the revision so other gateways' writes to
//! a shared PostgreSQL arrive within the poll interval. It must never hand
//! an endpoint's `auth_token` to a serializable row, never store an API
//! token (only its SHA-256), and never block an async thread: every driver
//! call runs on tokio's blocking pool, and no lock is held across an await.
//!
//! ## Drivers
//! SQLite through `rusqlite` (bundled: nothing to install; the same
//! `rusqlite`/`libsqlite3-sys` the rewriter's property test already links,
//! where sqlx would bring a second, conflicting `libsqlite3-sys`), and
//! PostgreSQL through `postgres` (the synchronous face of `tokio-postgres`).
//! Both are blocking, so both run on `spawn_blocking` behind one small
//! synchronous trait (`db::Conn`) and every transaction is written once for
//! both backends; the statements are portable SQL (`$n` placeholders,
//! `RETURNING`, `ON CONFLICT`). Admin writes are rare and the query path reads
//! the snapshot only, so the blocking hop costs nothing where it matters.
//!
//! ## URLs
//! `sqlite:<path>` (or `sqlite://<path>`), `sqlite::memory:` (one
//! connection, gone with the store: tests), `postgres://…` or
//! `postgresql://…` (libpq-style URL; no TLS).

mod db;
pub mod history;
mod migrations;
pub mod model;
mod snapshot;

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};

use client::resolver::{ConfigError, ConfigSource, ResolverConfig, RolloutDefaults};

pub use db::Backend;
pub use model::*;
pub use snapshot::Snapshot;

use db::{in_tx, Conn, DbError, Pool, Target, Val};
use snapshot::*;

/// How often [`Store::spawn_refresh`] polls by default.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_millis(250);

/// What the HTTP layer makes of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is wrong (a name, a value, a filter).
    Invalid,
    /// 404.
    NotFound,
    /// 409: the row exists already.
    Conflict,
    /// 500: the database or the store.
    Internal,
}

impl ErrorKind {
    /// The HTTP status the admin API answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Invalid => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Internal => 500,
        }
    }
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A filter, mask or table name the policy refuses.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error("{what} {key} not found")]
    NotFound { what: &'static str, key: String },
    #[error("{what} {key} already exists")]
    Conflict { what: &'static str, key: String },
    #[error("bad database URL {0}")]
    BadUrl(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Invalid { .. } | StoreError::Policy(_) => ErrorKind::Invalid,
            StoreError::NotFound { .. } => ErrorKind::NotFound,
            StoreError::Conflict { .. } => ErrorKind::Conflict,
            StoreError::BadUrl(_)
            | StoreError::Database(_)
            | StoreError::Migration(_)
            | StoreError::Corrupt(_) => ErrorKind::Internal,
        }
    }

    fn not_found(what: &'static str, key: impl std::fmt::Display) -> StoreError {
        StoreError::NotFound {
            what,
            key: clip(&key.to_string()),
        }
    }

    fn conflict(what: &'static str, key: impl std::fmt::Display) -> StoreError {
        StoreError::Conflict {
            what,
            key: clip(&key.to_string()),
        }
    }
}

/// A value quoted for an error message, cut to 80 bytes.
pub(crate) fn clip(s: &str) -> String {
    let mut end = s.len().min(80);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() {
        format!("{:?}…", &s[..end])
    } else {
        format!("{s:?}")
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// SHA-256 of an API token, lower-case hex: what the store keeps.
pub fn token_sha256(token: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(token.as_bytes());
    let mut s = String::with_capacity(64);
    for b in digest.iter() {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

struct Inner {
    pool: Arc<Pool>,
    current: RwLock<Arc<Snapshot>>,
}

impl Inner {
    /// Installs `s` unless a newer snapshot is in already.
    fn install(&self, s: Snapshot) {
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        if s.revision >= cur.revision {
            *cur = Arc::new(s);
        }
    }
}

/// The store. Cheap to clone; share it freely.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .field("revision", &self.snapshot().revision)
            .finish()
    }
}

/// Aborts the refresh task when dropped.
#[derive(Debug)]
pub struct RefreshHandle(tokio::task::JoinHandle<()>);

impl Drop for RefreshHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The store as the resolver's [`ConfigSource`]: the fingerprint is the
/// revision, a load is the current snapshot's [`Snapshot::resolver_config`].
/// Both are in-memory reads; call `Resolver::reload_if_changed` as often as
/// you like (e.g. before each routing decision).
#[derive(Clone, Debug)]
pub struct StoreConfigSource {
    store: Store,
    /// The gateway's own settings for probing and calling agents (they are
    /// not stored: each gateway is configured at start).
    links: Option<AgentLinks>,
}

/// How a gateway probes and calls its agents: its settings, laid over the
/// stored routing configuration. Its clients never wait out an agent's 429
/// (the gateway routes the query elsewhere first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentLinks {
    pub health: client::resolver::config::HealthSettings,
    pub connect_timeout: std::time::Duration,
    pub first_byte_timeout: std::time::Duration,
    pub long_poll: std::time::Duration,
    /// PEM of the CA file `https://` agents must chain to; `None`: the
    /// system bundle.
    pub ca_pem: Option<Arc<Vec<u8>>>,
}

impl ConfigSource for StoreConfigSource {
    fn describe(&self) -> String {
        format!("gateway store ({:?})", self.store.backend())
    }

    fn fingerprint(&self) -> Option<u64> {
        Some(self.store.snapshot().revision as u64)
    }

    fn load(&self, defaults: &RolloutDefaults) -> Result<ResolverConfig, ConfigError> {
        let mut cfg = self.store.snapshot().resolver_config(defaults)?;
        if let Some(l) = &self.links {
            cfg.health = l.health.clone();
            cfg.client.connect_timeout = l.connect_timeout;
            cfg.client.first_byte_timeout = l.first_byte_timeout;
            cfg.client.long_poll = l.long_poll;
            cfg.client.wait_on_overload = false;
            cfg.client.ca_pem = l.ca_pem.clone();
        }
        Ok(cfg)
    }
}

/// A classified driver error → a store error naming the row.
fn on_write(what: &'static str, key: impl std::fmt::Display) -> impl FnOnce(DbError) -> StoreError {
    move |e| match e {
        DbError::Unique => StoreError::conflict(what, key),
        DbError::ForeignKey => StoreError::not_found(what, key),
        other => other.into(),
    }
}

/// Bumps the revision; first statement of every write transaction (on
/// PostgreSQL its row lock serializes writers from every gateway).
fn bump(c: &mut dyn Conn) -> Result<i64, StoreError> {
    let rows = c.query(
        "UPDATE gw_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision",
        &[],
    )?;
    rows.into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .ok_or_else(|| StoreError::Corrupt("gw_revision has no row".into()))?
        .int()
}

fn one<T>(
    rows: Vec<Vec<Val>>,
    f: impl FnOnce(Vec<Val>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    f(rows
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::Corrupt("a write returned no row".into()))?)
}

impl Store {
    /// Opens (creating when needed) the database at `url` and applies the
    /// migrations. See the module doc for URLs.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let target = Target::parse(url)?;
        let pool = Pool::open(target).await?;
        let snap = pool.run(|c| in_tx(c, false, Snapshot::load)).await?;
        Ok(Store {
            inner: Arc::new(Inner {
                pool,
                current: RwLock::new(Arc::new(snap)),
            }),
        })
    }

    pub fn backend(&self) -> Backend {
        self.inner.pool.backend()
    }

    fn pool(&self) -> &Arc<Pool> {
        &self.inner.pool
    }

    /// The current snapshot: an `Arc` clone, no database round trip.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The resolver's configuration source, reading this store's snapshots.
    pub fn config_source(&self) -> StoreConfigSource {
        StoreConfigSource {
            store: self.clone(),
            links: None,
        }
    }

    /// [`Self::config_source`] with a gateway's own agent settings laid over.
    pub fn config_source_with(&self, links: AgentLinks) -> StoreConfigSource {
        StoreConfigSource {
            store: self.clone(),
            links: Some(links),
        }
    }

    /// The database's revision now (one round trip).
    pub async fn revision(&self) -> Result<i64, StoreError> {
        self.inner.pool.run(read_revision).await
    }

    /// Reloads the snapshot when the database's revision differs from the
    /// current one (another gateway wrote). Returns whether it reloaded.
    pub async fn refresh(&self) -> Result<bool, StoreError> {
        Self::refresh_inner(&self.inner).await
    }

    async fn refresh_inner(inner: &Arc<Inner>) -> Result<bool, StoreError> {
        let have = inner
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .revision;
        let snap = inner
            .pool
            .run(move |c| {
                if read_revision(c)? == have {
                    return Ok(None);
                }
                in_tx(c, false, Snapshot::load).map(Some)
            })
            .await?;
        Ok(match snap {
            Some(s) => {
                inner.install(s);
                true
            }
            None => false,
        })
    }

    /// Polls the revision every `every` (e.g. [`DEFAULT_REFRESH_INTERVAL`])
    /// and reloads on change, on the current tokio runtime. Stops when the
    /// handle is dropped or the store is gone. Errors are logged and retried.
    pub fn spawn_refresh(&self, every: Duration) -> RefreshHandle {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        RefreshHandle(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                match Self::refresh_inner(&inner).await {
                    Ok(_) => {
                        if failing {
                            tracing::info!("store refresh recovered");
                        }
                        failing = false;
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "store refresh failed; keeping the last snapshot");
                        }
                        failing = true;
                    }
                }
            }
        }))
    }

    /// Runs a write transaction (revision bumped first), then loads and
    /// installs the snapshot it produced before returning.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send + 'static,
    {
        let (out, snap) = self
            .inner
            .pool
            .run(move |c| {
                let out = in_tx(c, true, |c| {
                    bump(c)?;
                    f(c)
                })?;
                let snap = in_tx(c, false, Snapshot::load)?;
                Ok((out, snap))
            })
            .await?;
        self.inner.install(snap);
        Ok(out)
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.pool.run(move |c| in_tx(c, false, f)).await
    }

    // ------------------------------------------------------------- auth

    /// Who holds `token`, from the current snapshot (no round trip); `None`
    /// for an unknown token. A token revoked on another gateway stops working
    /// here within the refresh interval.
    pub async fn authenticate(&self, token: &str) -> Result<Option<AuthedPrincipal>, StoreError> {
        Ok(self.authenticate_now(token))
    }

    /// [`Self::authenticate`] without the `async`.
    pub fn authenticate_now(&self, token: &str) -> Option<AuthedPrincipal> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        self.snapshot().token_owner(&token_sha256(token))
    }

    /// Makes `user` an administrator holding `token` (creating either as
    /// needed). Idempotent; a token held by another user is a conflict.
    pub async fn ensure_admin(&self, user: &str, token: &str) -> Result<(), StoreError> {
        let user = principal_name("user", user)?;
        api_token(token)?;
        let hash = token_sha256(token);
        if let Some(p) = self.authenticate_now(token) {
            if p.user == user && p.is_admin {
                return Ok(());
            }
        }
        self.write(move |c| {
            let now = now_ms();
            c.exec(
                "INSERT INTO gw_users (name, is_admin, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET is_admin = excluded.is_admin",
                &[user.as_str().into(), true.into(), now.into()],
            )?;
            let owner = c.query(
                "SELECT user_name FROM gw_tokens WHERE sha256 = $1",
                &[hash.as_str().into()],
            )?;
            match owner.into_iter().next() {
                Some(r) => {
                    let owner = r.into_iter().next().map(Val::text).transpose()?;
                    if owner.as_deref() != Some(user.as_str()) {
                        return Err(StoreError::conflict("token", "given for the admin"));
                    }
                }
                None => {
                    c.exec(
                        "INSERT INTO gw_tokens (sha256, user_name, created_at) VALUES ($1, $2, $3)",
                        &[hash.into(), user.as_str().into(), now.into()],
                    )?;
                }
            }
            Ok(())
        })
        .await
    }

    // -------------------------------------------------------- endpoints

    pub async fn list_endpoints(&self) -> Result<Vec<EndpointRow>, StoreError> {
        let rows = self.read(|c| select_endpoints(c, None)).await?;
        Ok(rows.into_iter().map(|e| e.row).collect())
    }

    /// `NotFound` when there is none.
    pub async fn get_endpoint(&self, name: &str) -> Result<EndpointRow, StoreError> {
        let name = endpoint_name(name)?;
        self.read(move |c| get_endpoint(c, &name).map(|e| e.row))
            .await
    }

    /// `Conflict` when the name is taken.
    pub async fn create_endpoint(&self, e: NewEndpoint) -> Result<EndpointRow, StoreError> {
        let name = endpoint_name(&e.name)?;
        let token = e.auth_token.unwrap_or_default();
        endpoint(&name, &e.url, e.kind, &token)?;
        self.write(move |c| {
            let now = now_ms();
            c.exec(
                "INSERT INTO gw_endpoints (name, url, kind, status, auth_token, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
                &[
                    name.as_str().into(),
                    e.url.into(),
                    e.kind.as_str().into(),
                    e.status.as_str().into(),
                    token.into(),
                    now.into(),
                ],
            )
            .map_err(on_write("endpoint", &name))?;
            get_endpoint(c, &name).map(|e| e.row)
        })
        .await
    }

    /// Changes the given fields; the result is validated whole (e.g. a LOCAL
    /// endpoint turned REMOTE needs a URL and a token).
    pub async fn update_endpoint(
        &self,
        name: &str,
        p: EndpointPatch,
    ) -> Result<EndpointRow, StoreError> {
        let name = endpoint_name(name)?;
        if let Some(n) = &p.name {
            if *n != name {
                return Err(StoreError::Invalid {
                    field: "name",
                    reason: "an endpoint cannot be renamed".into(),
                });
            }
        }
        if let Some(u) = &p.url {
            if u.len() > MAX_URL_BYTES {
                return Err(StoreError::Invalid {
                    field: "url",
                    reason: format!("longer than {MAX_URL_BYTES} bytes"),
                });
            }
        }
        self.write(move |c| {
            let old = get_endpoint(c, &name)?;
            let url = p.url.unwrap_or(old.row.url);
            let kind = p.kind.unwrap_or(old.row.kind);
            let status = p.status.unwrap_or(old.row.status);
            let token = p.auth_token.unwrap_or(old.auth_token);
            endpoint(&name, &url, kind, &token)?;
            c.exec(
                "UPDATE gw_endpoints SET url = $2, kind = $3, status = $4, auth_token = $5, \
                 updated_at = $6 WHERE name = $1",
                &[
                    name.as_str().into(),
                    url.into(),
                    kind.as_str().into(),
                    status.as_str().into(),
                    token.into(),
                    now_ms().into(),
                ],
            )?;
            get_endpoint(c, &name).map(|e| e.row)
        })
        .await
    }

    /// Deletes the endpoint and its assignments.
    pub async fn delete_endpoint(&self, name: &str) -> Result<(), StoreError> {
        let name = endpoint_name(name)?;
        self.write(move |c| {
            // Explicitly, not only by the foreign key's cascade.
            c.exec(
                "DELETE FROM gw_assignments WHERE endpoint = $1",
                &[name.as_str().into()],
            )?;
            if c.exec(
                "DELETE FROM gw_endpoints WHERE name = $1",
                &[name.as_str().into()],
            )? == 0
            {
                return Err(StoreError::not_found("endpoint", &name));
            }
            Ok(())
        })
        .await
    }

    // ------------------------------------------------------ assignments

    /// `NotFound` when the endpoint does not exist.
    pub async fn list_assignments(&self, endpoint: &str) -> Result<Vec<AssignmentRow>, StoreError> {
        let name = endpoint_name(endpoint)?;
        self.read(move |c| {
            get_endpoint(c, &name)?;
            select_assignments(c, Some(&name))
        })
        .await
    }

    /// `NotFound` without the endpoint; `Conflict` when the principal is
    /// assigned to it already.
    pub async fn create_assignment(
        &self,
        endpoint: &str,
        a: NewAssignment,
    ) -> Result<AssignmentRow, StoreError> {
        let name = endpoint_name(endpoint)?;
        let principal = principal_name("principal", &a.principal)?;
        self.write(move |c| {
            get_endpoint(c, &name)?;
            let key = format!("{} {principal} on {name}", a.principal_type.as_str());
            let rows = c
                .query(
                    "INSERT INTO gw_assignments (endpoint, principal, principal_type, \
                     is_default, fallback_local, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
                     RETURNING id, endpoint, principal, principal_type, is_default, \
                     fallback_local, created_at",
                    &[
                        name.as_str().into(),
                        principal.as_str().into(),
                        a.principal_type.as_str().into(),
                        a.is_default.into(),
                        a.fallback_local.into(),
                        now_ms().into(),
                    ],
                )
                .map_err(on_write("assignment", key))?;
            one(rows, assignment_row)
        })
        .await
    }

    /// `NotFound` unless assignment `id` is on `endpoint`.
    pub async fn delete_assignment(&self, endpoint: &str, id: i64) -> Result<(), StoreError> {
        let name = endpoint_name(endpoint)?;
        self.write(move |c| {
            let n = c.exec(
                "DELETE FROM gw_assignments WHERE id = $1 AND endpoint = $2",
                &[id.into(), name.as_str().into()],
            )?;
            if n == 0 {
                return Err(StoreError::not_found(
                    "assignment",
                    format!("{id} on {name}"),
                ));
            }
            Ok(())
        })
        .await
    }

    // ------------------------------------------------ users and groups

    /// Creates the user or sets its admin flag.
    pub async fn upsert_user(&self, name: &str, is_admin: bool) -> Result<UserRow, StoreError> {
        let name = principal_name("user", name)?;
        self.write(move |c| {
            c.exec(
                "INSERT INTO gw_users (name, is_admin, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET is_admin = excluded.is_admin",
                &[name.as_str().into(), is_admin.into(), now_ms().into()],
            )?;
            get_user(c, &name)
        })
        .await
    }

    /// Deletes the user, its memberships and its tokens (grants, filters,
    /// masks and assignments naming it stay: they apply again if the name
    /// comes back).
    pub async fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        let name = principal_name("user", name)?;
        self.write(move |c| {
            for sql in [
                "DELETE FROM gw_tokens WHERE user_name = $1",
                "DELETE FROM gw_group_members WHERE user_name = $1",
            ] {
                c.exec(sql, &[name.as_str().into()])?;
            }
            if c.exec(
                "DELETE FROM gw_users WHERE name = $1",
                &[name.as_str().into()],
            )? == 0
            {
                return Err(StoreError::not_found("user", &name));
            }
            Ok(())
        })
        .await
    }

    pub async fn list_users(&self) -> Result<Vec<UserRow>, StoreError> {
        self.read(select_users).await
    }

    /// `NotFound` for an unknown user.
    pub async fn get_user(&self, name: &str) -> Result<UserRow, StoreError> {
        let name = principal_name("user", name)?;
        self.read(move |c| get_user(c, &name)).await
    }

    pub async fn list_groups(&self) -> Result<Vec<GroupRow>, StoreError> {
        self.read(select_groups).await
    }

    /// Adds `user` (which must exist) to `group`; `Conflict` if it is in.
    pub async fn add_member(&self, group: &str, user: &str) -> Result<(), StoreError> {
        let group = principal_name("group", group)?;
        let user = principal_name("user", user)?;
        self.write(move |c| {
            get_user(c, &user)?;
            c.exec(
                "INSERT INTO gw_group_members (group_name, user_name, created_at) \
                 VALUES ($1, $2, $3)",
                &[group.as_str().into(), user.as_str().into(), now_ms().into()],
            )
            .map_err(on_write("membership", format!("{user} in {group}")))?;
            Ok(())
        })
        .await
    }

    /// `NotFound` unless `user` is in `group`.
    pub async fn remove_member(&self, group: &str, user: &str) -> Result<(), StoreError> {
        let group = principal_name("group", group)?;
        let user = principal_name("user", user)?;
        self.write(move |c| {
            let n = c.exec(
                "DELETE FROM gw_group_members WHERE group_name = $1 AND user_name = $2",
                &[group.as_str().into(), user.as_str().into()],
            )?;
            if n == 0 {
                return Err(StoreError::not_found(
                    "membership",
                    format!("{user} in {group}"),
                ));
            }
            Ok(())
        })
        .await
    }

    // ----------------------------------------------------------- tokens

    /// Stores the SHA-256 of `token` for `user` (which must exist).
    pub async fn create_token(&self, user: &str, token: &str) -> Result<TokenRow, StoreError> {
        let user = principal_name("user", user)?;
        api_token(token)?;
        let hash = token_sha256(token);
        self.write(move |c| {
            get_user(c, &user)?;
            let now = now_ms();
            c.exec(
                "INSERT INTO gw_tokens (sha256, user_name, created_at) VALUES ($1, $2, $3)",
                &[hash.as_str().into(), user.as_str().into(), now.into()],
            )
            .map_err(on_write("token", &hash[..12]))?;
            Ok(TokenRow {
                user,
                fingerprint: hash[..12].to_string(),
                created_at: rfc3339(now),
            })
        })
        .await
    }

    /// Forgets `token`; `NotFound` when it is not stored.
    pub async fn revoke_token(&self, token: &str) -> Result<(), StoreError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(StoreError::not_found("token", "given"));
        }
        let hash = token_sha256(token);
        self.write(move |c| {
            if c.exec("DELETE FROM gw_tokens WHERE sha256 = $1", &[hash.into()])? == 0 {
                return Err(StoreError::not_found("token", "given"));
            }
            Ok(())
        })
        .await
    }

    /// A user's tokens, as fingerprints.
    pub async fn list_tokens(&self, user: &str) -> Result<Vec<TokenRow>, StoreError> {
        let user = principal_name("user", user)?;
        self.read(move |c| {
            get_user(c, &user)?;
            c.query(
                "SELECT sha256, created_at FROM gw_tokens WHERE user_name = $1 ORDER BY created_at",
                &[user.as_str().into()],
            )?
            .into_iter()
            .map(|r| {
                let mut r = r.into_iter();
                let hash = r.next().unwrap_or(Val::Null).text()?;
                let at = r.next().unwrap_or(Val::Null).int()?;
                Ok(TokenRow {
                    user: user.clone(),
                    fingerprint: hash.chars().take(12).collect(),
                    created_at: rfc3339(at),
                })
            })
            .collect()
        })
        .await
    }

    // ----------------------------------------------------------- grants

    /// `Conflict` for the same grant twice.
    pub async fn create_grant(&self, g: NewGrant) -> Result<GrantRow, StoreError> {
        let principal = principal_name("principal", &g.principal)?;
        let (target_type, target) = match (&g.table, &g.schema) {
            (Some(t), None) => ("table", table_name(t)?),
            (None, Some(s)) => ("schema", schema_name(s)?),
            _ => {
                return Err(StoreError::Invalid {
                    field: "table",
                    reason: "give exactly one of table and schema".into(),
                })
            }
        };
        self.write(move |c| {
            let key = format!(
                "{} {principal} on {target_type} {target}",
                g.principal_type.as_str()
            );
            let rows = c
                .query(
                    &format!(
                        "INSERT INTO gw_grants (principal, principal_type, target_type, target, \
                         created_at) VALUES ($1, $2, $3, $4, $5) RETURNING {GRANT_COLUMNS}"
                    ),
                    &[
                        principal.as_str().into(),
                        g.principal_type.as_str().into(),
                        target_type.into(),
                        target.as_str().into(),
                        now_ms().into(),
                    ],
                )
                .map_err(on_write("grant", key))?;
            one(rows, grant_row)
        })
        .await
    }

    pub async fn list_grants(&self) -> Result<Vec<GrantRow>, StoreError> {
        self.read(select_grants).await
    }

    pub async fn delete_grant(&self, id: i64) -> Result<(), StoreError> {
        self.delete_by_id("gw_grants", "grant", id).await
    }

    async fn delete_by_id(
        &self,
        table: &'static str,
        what: &'static str,
        id: i64,
    ) -> Result<(), StoreError> {
        self.write(move |c| {
            if c.exec(&format!("DELETE FROM {table} WHERE id = $1"), &[id.into()])? == 0 {
                return Err(StoreError::not_found(what, id));
            }
            Ok(())
        })
        .await
    }

    // ---------------------------------------------------- row filters

    /// The predicate is parsed as the rewriter parses it; one it would refuse
    /// is [`StoreError::Policy`].
    pub async fn create_row_filter(&self, f: NewRowFilter) -> Result<RowFilterRow, StoreError> {
        let principal = principal_name("principal", &f.principal)?;
        let table = table_name(&f.table)?;
        predicate(&table, &f.predicate)?;
        self.write(move |c| {
            let key = format!("{} {principal} on {table}", f.principal_type.as_str());
            let rows = c
                .query(
                    &format!(
                        "INSERT INTO gw_row_filters (principal, principal_type, table_name, \
                         predicate, created_at) VALUES ($1, $2, $3, $4, $5) \
                         RETURNING {FILTER_COLUMNS}"
                    ),
                    &[
                        principal.as_str().into(),
                        f.principal_type.as_str().into(),
                        table.as_str().into(),
                        f.predicate.into(),
                        now_ms().into(),
                    ],
                )
                .map_err(on_write("row filter", key))?;
            one(rows, row_filter_row)
        })
        .await
    }

    pub async fn list_row_filters(&self) -> Result<Vec<RowFilterRow>, StoreError> {
        self.read(select_row_filters).await
    }

    pub async fn delete_row_filter(&self, id: i64) -> Result<(), StoreError> {
        self.delete_by_id("gw_row_filters", "row filter", id).await
    }

    // --------------------------------------------------- column masks

    /// One mask per principal, table and column (`Conflict` otherwise); the
    /// expression is parsed as the rewriter parses it.
    pub async fn create_column_mask(&self, m: NewColumnMask) -> Result<ColumnMaskRow, StoreError> {
        let principal = principal_name("principal", &m.principal)?;
        let table = table_name(&m.table)?;
        let column = column_name(&m.column)?;
        mask_expression(&table, &column, &m.expression)?;
        self.write(move |c| {
            let key = format!(
                "{} {principal} on {table}.{column}",
                m.principal_type.as_str()
            );
            let rows = c
                .query(
                    &format!(
                        "INSERT INTO gw_column_masks (principal, principal_type, table_name, \
                         column_name, expression, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
                         RETURNING {MASK_COLUMNS}"
                    ),
                    &[
                        principal.as_str().into(),
                        m.principal_type.as_str().into(),
                        table.as_str().into(),
                        column.as_str().into(),
                        m.expression.into(),
                        now_ms().into(),
                    ],
                )
                .map_err(on_write("column mask", key))?;
            one(rows, column_mask_row)
        })
        .await
    }

    pub async fn list_column_masks(&self) -> Result<Vec<ColumnMaskRow>, StoreError> {
        self.read(select_column_masks).await
    }

    pub async fn delete_column_mask(&self, id: i64) -> Result<(), StoreError> {
        self.delete_by_id("gw_column_masks", "column mask", id)
            .await
    }
}

fn get_endpoint(c: &mut dyn Conn, name: &str) -> Result<StoredEndpoint, StoreError> {
    select_endpoints(c, Some(name))?
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::not_found("endpoint", name))
}

fn get_user(c: &mut dyn Conn, name: &str) -> Result<UserRow, StoreError> {
    // Small tables: the whole list, filtered, keeps one reader of users.
    select_users(c)?
        .into_iter()
        .find(|u| u.name == name)
        .ok_or_else(|| StoreError::not_found("user", name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_is_sha256_hex() {
        assert_eq!(
            token_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn database_urls() {
        assert!(matches!(
            Target::parse("sqlite::memory:"),
            Ok(Target::SqliteMemory)
        ));
        assert!(matches!(
            Target::parse("sqlite:/tmp/x.db"),
            Ok(Target::SqliteFile(p)) if p == std::path::Path::new("/tmp/x.db")
        ));
        assert!(matches!(
            Target::parse("sqlite://rel/x.db"),
            Ok(Target::SqliteFile(p)) if p == std::path::Path::new("rel/x.db")
        ));
        assert!(matches!(
            Target::parse("postgres://u@127.0.0.1:5/db"),
            Ok(Target::Postgres(_))
        ));
        for bad in [
            "",
            "sqlite:",
            "mysql://x",
            "/tmp/x.db",
            "postgres://u@h:notaport/db",
        ] {
            let e = Target::parse(bad).err().unwrap_or_else(|| panic!("{bad}"));
            assert_eq!(e.kind(), ErrorKind::Internal, "{bad}");
        }
        let huge = format!("postgres://{}", "x".repeat(10_000));
        assert!(Target::parse(&huge).err().unwrap().to_string().len() < 300);
    }

    #[test]
    fn error_messages_clip_keys() {
        let e = StoreError::not_found("user", "u".repeat(10_000));
        assert!(e.to_string().len() < 120, "{e}");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.kind().http_status(), 404);
    }
}
