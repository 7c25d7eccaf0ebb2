//! The two database backends behind one small synchronous interface
//! ([`Conn`]), a bounded pool of connections, and the versioned migrations.
//!
//! Owns connecting (URL parsing, per-connection settings), the mapping of
//! driver errors to [`DbError`] (unique and foreign-key violations are told
//! apart from the rest), transactions ([`in_tx`]) and applying the schema
//! migrations exactly once, also when several gateways start at once on one
//! PostgreSQL. Every call into a driver blocks, so this module must only ever
//! be entered from the blocking pool ([`Pool::run`] does that): never from
//! an async task or a glommio reactor.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::migrations::{Migration, MIGRATIONS};
use super::StoreError;

/// One parameter or column value. The store's schema only uses these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
}

impl Val {
    pub(crate) fn int(&self) -> Result<i64, StoreError> {
        match self {
            Val::Int(i) => Ok(*i),
            other => Err(StoreError::Corrupt(format!(
                "expected an integer, got {other:?}"
            ))),
        }
    }

    pub(crate) fn text(self) -> Result<String, StoreError> {
        match self {
            Val::Text(s) => Ok(s),
            other => Err(StoreError::Corrupt(format!("expected text, got {other:?}"))),
        }
    }

    /// SQLite keeps booleans as 0/1 integers, PostgreSQL as `BOOLEAN`.
    pub(crate) fn boolean(&self) -> Result<bool, StoreError> {
        match self {
            Val::Bool(b) => Ok(*b),
            Val::Int(0) => Ok(false),
            Val::Int(1) => Ok(true),
            other => Err(StoreError::Corrupt(format!(
                "expected a boolean, got {other:?}"
            ))),
        }
    }
}

impl From<&str> for Val {
    fn from(s: &str) -> Val {
        Val::Text(s.to_string())
    }
}
impl From<String> for Val {
    fn from(s: String) -> Val {
        Val::Text(s)
    }
}
impl From<i64> for Val {
    fn from(i: i64) -> Val {
        Val::Int(i)
    }
}
impl From<bool> for Val {
    fn from(b: bool) -> Val {
        Val::Bool(b)
    }
}

/// A driver error, classified.
#[derive(Debug)]
pub(crate) enum DbError {
    /// A UNIQUE or PRIMARY KEY constraint refused the row.
    Unique,
    /// A FOREIGN KEY constraint refused the row.
    ForeignKey,
    Other(String),
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> StoreError {
        match e {
            DbError::Unique => StoreError::Database("unexpected unique violation".into()),
            DbError::ForeignKey => StoreError::Database("unexpected foreign key violation".into()),
            DbError::Other(m) => StoreError::Database(m),
        }
    }
}

/// Which backend a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One open connection. Statements use `$1`, `$2`, … placeholders on both
/// backends (rewritten to SQLite's `?1` form).
pub(crate) trait Conn: Send {
    fn backend(&self) -> Backend;
    /// Runs statements without parameters (DDL, transaction control).
    fn batch(&mut self, sql: &str) -> Result<(), DbError>;
    /// Runs one statement; the number of rows it changed.
    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, DbError>;
    /// Runs one query; its rows.
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>, DbError>;
    /// Starts a transaction that will write: it takes the write lock at once
    /// (SQLite) or reads the latest committed rows (PostgreSQL).
    fn begin_write(&mut self) -> Result<(), DbError>;
    /// Starts a read-only transaction that sees one consistent state.
    fn begin_read(&mut self) -> Result<(), DbError>;
    /// The server closed the connection; it goes back to no pool.
    fn is_broken(&self) -> bool;
}

/// Runs `f` in a transaction: committed when it returns `Ok`, rolled back
/// otherwise.
pub(crate) fn in_tx<T>(
    c: &mut dyn Conn,
    write: bool,
    f: impl FnOnce(&mut dyn Conn) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    if write {
        c.begin_write()?;
    } else {
        c.begin_read()?;
    }
    match f(c) {
        Ok(v) => {
            c.batch("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            let _ = c.batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Where the database is, parsed from the URL given to `Store::open`.
#[derive(Clone)]
pub(crate) enum Target {
    SqliteFile(std::path::PathBuf),
    SqliteMemory,
    Postgres(Box<postgres::Config>),
}

/// How long a SQLite connection waits for another writer's lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to PostgreSQL may take.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections per store (SQLite file, PostgreSQL). An in-memory SQLite
/// database lives in its one connection, so it gets one.
const POOL_SIZE: usize = 4;
/// Key of the PostgreSQL advisory lock that serializes migrations.
const MIGRATION_LOCK_KEY: i64 = 0x6777_5f73_746f_7265; // "gw_store"

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Target, StoreError> {
        let bad = |why: &str| StoreError::BadUrl(format!("{}: {why}", super::clip(url)));
        if url.len() > 4096 {
            return Err(bad("longer than 4096 bytes"));
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path == ":memory:" {
                return Ok(Target::SqliteMemory);
            }
            if path.is_empty() {
                return Err(bad("no file path after sqlite:"));
            }
            return Ok(Target::SqliteFile(path.into()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut cfg: postgres::Config = url
                .parse()
                .map_err(|e: postgres::Error| bad(&e.to_string()))?;
            if cfg.get_connect_timeout().is_none() {
                cfg.connect_timeout(PG_CONNECT_TIMEOUT);
            }
            if cfg.get_application_name().is_none() {
                cfg.application_name("compute-gateway");
            }
            return Ok(Target::Postgres(Box::new(cfg)));
        }
        Err(bad(
            "expected sqlite:<path>, sqlite::memory: or postgres://user@host:port/db",
        ))
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Target::SqliteFile(_) | Target::SqliteMemory => Backend::Sqlite,
            Target::Postgres(_) => Backend::Postgres,
        }
    }

    fn pool_size(&self) -> usize {
        match self {
            Target::SqliteMemory => 1,
            _ => POOL_SIZE,
        }
    }

    fn connect(&self) -> Result<Box<dyn Conn>, StoreError> {
        match self {
            Target::SqliteFile(path) => Ok(Box::new(SqliteConn::open(Some(path))?)),
            Target::SqliteMemory => Ok(Box::new(SqliteConn::open(None)?)),
            Target::Postgres(cfg) => {
                let client = cfg.connect(postgres::NoTls).map_err(|e| {
                    StoreError::Database(format!("cannot connect to PostgreSQL: {e}"))
                })?;
                Ok(Box::new(PgConn { client }))
            }
        }
    }
}

/// A bounded pool of connections, used from the blocking thread pool.
pub(crate) struct Pool {
    target: Target,
    idle: Mutex<Vec<Box<dyn Conn>>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    /// Connects once (so a bad URL or a down server fails here) and applies
    /// the migrations.
    pub(crate) async fn open(target: Target) -> Result<Arc<Pool>, StoreError> {
        let pool = Arc::new(Pool {
            permits: Arc::new(Semaphore::new(target.pool_size())),
            target,
            idle: Mutex::new(Vec::new()),
        });
        pool.run(migrate).await?;
        Ok(pool)
    }

    pub(crate) fn backend(&self) -> Backend {
        self.target.backend()
    }

    /// Runs `f` on a pooled connection on tokio's blocking pool. At most the
    /// pool's size run at once; others wait for a permit (asynchronously).
    pub(crate) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Database("the store is closed".into()))?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut conn = match idle {
                Some(c) => c,
                None => pool.target.connect()?,
            };
            let out = f(conn.as_mut());
            if !conn.is_broken() {
                pool.idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Database(format!("store task failed: {e}")))?
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // A PostgreSQL connection owns a small tokio runtime, which must not be
        // dropped on an async task's thread: close them on a plain thread.
        let conns = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        if !conns.is_empty() && self.target.backend() == Backend::Postgres {
            let _ = std::thread::Builder::new()
                .name("gw-store-close".into())
                .spawn(move || drop(conns));
        }
    }
}

/// Applies the migrations this build knows and the database lacks, in one
/// transaction, under a lock that makes concurrent starts wait for each other.
fn migrate(c: &mut dyn Conn) -> Result<(), StoreError> {
    let backend = c.backend();
    let err = |e: DbError| StoreError::Migration(format!("{e:?}"));
    match backend {
        // IMMEDIATE: the write lock before reading which versions exist.
        Backend::Sqlite => c.batch("BEGIN IMMEDIATE").map_err(err)?,
        Backend::Postgres => {
            c.batch("BEGIN").map_err(err)?;
            c.query(
                "SELECT pg_advisory_xact_lock($1)",
                &[Val::Int(MIGRATION_LOCK_KEY)],
            )
            .map_err(err)?;
        }
    }
    let out = (|| {
        c.batch(
            "CREATE TABLE IF NOT EXISTS gw_schema_migrations (
                version BIGINT PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at BIGINT NOT NULL)",
        )
        .map_err(err)?;
        let applied: Vec<i64> = c
            .query(
                "SELECT version FROM gw_schema_migrations ORDER BY version",
                &[],
            )
            .map_err(err)?
            .into_iter()
            .map(|r| r[0].int())
            .collect::<Result<_, _>>()?;
        let known = MIGRATIONS.last().map_or(0, |m| m.version);
        if let Some(newer) = applied.iter().find(|v| **v > known) {
            return Err(StoreError::Migration(format!(
                "the database has schema version {newer}, newer than this gateway's {known}: \
                 upgrade the gateway"
            )));
        }
        for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
            apply(c, m).map_err(|e| {
                StoreError::Migration(format!("version {} ({}): {e:?}", m.version, m.name))
            })?;
        }
        Ok(())
    })();
    match out {
        Ok(()) => c.batch("COMMIT").map_err(err),
        Err(e) => {
            let _ = c.batch("ROLLBACK");
            Err(e)
        }
    }
}

fn apply(c: &mut dyn Conn, m: &Migration) -> Result<(), DbError> {
    c.batch(match c.backend() {
        Backend::Sqlite => m.sqlite,
        Backend::Postgres => m.postgres,
    })?;
    c.exec(
        "INSERT INTO gw_schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        &[
            Val::Int(m.version),
            Val::Text(m.name.into()),
            Val::Int(super::now_ms()),
        ],
    )?;
    Ok(())
}

// ---------------------------------------------------------------- SQLite

struct SqliteConn {
    conn: rusqlite::Connection,
}

impl SqliteConn {
    fn open(path: Option<&std::path::Path>) -> Result<SqliteConn, StoreError> {
        let conn = match path {
            Some(p) => rusqlite::Connection::open(p),
            None => rusqlite::Connection::open_in_memory(),
        }
        .map_err(|e| StoreError::Database(format!("cannot open SQLite database: {e}")))?;
        conn.busy_timeout(SQLITE_BUSY_TIMEOUT)
            .map_err(|e| StoreError::Database(format!("cannot set up SQLite: {e}")))?;
        // Switching a fresh file to WAL needs it exclusively, and SQLite
        // answers BUSY at once there instead of calling the busy handler when
        // another process or store opens the same file at the same moment;
        // so retry within the busy timeout, like every other statement waits.
        let deadline = std::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
        loop {
            // WAL: readers never wait for the writer; NORMAL is durable
            // across a process crash (an OS crash may lose the last commit).
            match conn.execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA foreign_keys = ON;",
            ) {
                Ok(()) => break,
                Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    return Err(StoreError::Database(format!("cannot set up SQLite: {e}")));
                }
            }
        }
        Ok(SqliteConn { conn })
    }
}

/// `$1` → `?1` (SQLite's numbered parameter). The store's statements hold no
/// `$` inside string literals.
fn sqlite_sql(sql: &str) -> std::borrow::Cow<'_, str> {
    if sql.contains('$') {
        sql.replace('$', "?").into()
    } else {
        sql.into()
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

fn sqlite_err(e: rusqlite::Error) -> DbError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        match f.extended_code {
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => return DbError::Unique,
            rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => return DbError::ForeignKey,
            _ => {}
        }
    }
    DbError::Other(format!("SQLite: {e}"))
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Owned(Value::Null),
            Val::Int(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            Val::Bool(b) => ToSqlOutput::Owned(Value::Integer(*b as i64)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

impl Conn for SqliteConn {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.conn.execute_batch(sql).map_err(sqlite_err)
    }

    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, DbError> {
        let mut st = self
            .conn
            .prepare_cached(&sqlite_sql(sql))
            .map_err(sqlite_err)?;
        st.execute(rusqlite::params_from_iter(params))
            .map(|n| n as u64)
            .map_err(sqlite_err)
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>, DbError> {
        use rusqlite::types::ValueRef;
        let mut st = self
            .conn
            .prepare_cached(&sqlite_sql(sql))
            .map_err(sqlite_err)?;
        let n = st.column_count();
        let mut rows = st
            .query(rusqlite::params_from_iter(params))
            .map_err(sqlite_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sqlite_err)? {
            let mut r = Vec::with_capacity(n);
            for i in 0..n {
                r.push(match row.get_ref(i).map_err(sqlite_err)? {
                    ValueRef::Null => Val::Null,
                    ValueRef::Integer(i) => Val::Int(i),
                    ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                    other => {
                        return Err(DbError::Other(format!(
                            "SQLite: unexpected column type {:?}",
                            other.data_type()
                        )))
                    }
                });
            }
            out.push(r);
        }
        Ok(out)
    }

    fn begin_write(&mut self) -> Result<(), DbError> {
        self.batch("BEGIN IMMEDIATE")
    }

    fn begin_read(&mut self) -> Result<(), DbError> {
        // Deferred: the first SELECT takes a read snapshot (WAL) that holds
        // until COMMIT.
        self.batch("BEGIN")
    }

    fn is_broken(&self) -> bool {
        false
    }
}

// ------------------------------------------------------------ PostgreSQL

struct PgConn {
    client: postgres::Client,
}

fn pg_err(e: postgres::Error) -> DbError {
    use postgres::error::SqlState;
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => DbError::Unique,
        Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => DbError::ForeignKey,
        _ => DbError::Other(format!(
            "PostgreSQL: {}",
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.to_string())
        )),
    }
}

fn pg_params(params: &[Val]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    static NULL: Option<String> = None;
    let mut out: Vec<&(dyn postgres::types::ToSql + Sync)> = Vec::with_capacity(params.len());
    for p in params {
        match p {
            Val::Null => out.push(&NULL),
            Val::Int(i) => out.push(i),
            Val::Text(s) => out.push(s),
            Val::Bool(b) => out.push(b),
        }
    }
    out
}

impl Conn for PgConn {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.client.batch_execute(sql).map_err(pg_err)
    }

    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, DbError> {
        self.client.execute(sql, &pg_params(params)).map_err(pg_err)
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>, DbError> {
        use postgres::types::Type;
        let rows = self.client.query(sql, &pg_params(params)).map_err(pg_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut r = Vec::with_capacity(row.len());
            for (i, col) in row.columns().iter().enumerate() {
                let ty = col.type_();
                let v = if *ty == Type::INT8 {
                    row.try_get::<_, Option<i64>>(i).map(|v| v.map(Val::Int))
                } else if *ty == Type::INT4 {
                    row.try_get::<_, Option<i32>>(i)
                        .map(|v| v.map(|x| Val::Int(x.into())))
                } else if *ty == Type::BOOL {
                    row.try_get::<_, Option<bool>>(i).map(|v| v.map(Val::Bool))
                } else if *ty == Type::TEXT || *ty == Type::VARCHAR {
                    row.try_get::<_, Option<String>>(i)
                        .map(|v| v.map(Val::Text))
                } else if *ty == Type::VOID {
                    Ok(None)
                } else {
                    return Err(DbError::Other(format!(
                        "PostgreSQL: unexpected column type {ty}"
                    )));
                };
                r.push(v.map_err(pg_err)?.unwrap_or(Val::Null));
            }
            out.push(r);
        }
        Ok(out)
    }

    fn begin_write(&mut self) -> Result<(), DbError> {
        // READ COMMITTED: every write first updates the revision row, whose
        // row lock then serializes writers across gateways, and each later
        // statement sees what the previous writer committed.
        self.batch("BEGIN ISOLATION LEVEL READ COMMITTED")
    }

    fn begin_read(&mut self) -> Result<(), DbError> {
        self.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    }

    fn is_broken(&self) -> bool {
        self.client.is_closed()
    }
}
