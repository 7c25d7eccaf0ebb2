//! The local executor: embedded DuckDB in this process, behind the same
//! [`Executor`] trait as a remote agent, for users whose assignment falls back to
//! local compute (or who have none).
//!
//! Owns one DuckDB database; each query gets its own connection (`try_clone`) on its
//! own thread, and its rows travel in pages of typed values through the bounded
//! channel of [`QueryRows`], so the Rust side holds a few pages, not the result
//! (DuckDB itself may materialize the result it hands duckdb-rs). The deadline
//! interrupts the statement, and so does dropping the run or its [`QueryRows`]
//! (a canceled or abandoned query stops at once, not at its next page). Its
//! DuckDB has icu loaded (time zones, `TIMESTAMPTZ`, collations) and a fixed
//! `TimeZone` (UTC unless the opener says), as the agents' have. It never
//! runs SQL on a runtime worker thread and never touches the network.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Timelike};
use duckdb::arrow::datatypes::DataType;
use duckdb::types::{TimeUnit, Value as Dv};
use tokio::sync::{mpsc, oneshot};

pub use duckdb_icu::TimeZone;

use crate::batches::{undictionary_schema, unpack_batch, ArrowBatches, StopOnDrop};
use crate::error::ClientError;
use crate::rows::{BoxFuture, Executor, QueryRows, Via, PAGES_BUFFERED};
use crate::value::{Param, Row, Value};

/// Rows per page handed to the caller.
pub const LOCAL_PAGE_ROWS: usize = 2048;

/// Embedded DuckDB.
pub struct LocalExecutor {
    db: Mutex<duckdb::Connection>,
    /// Run on each statement's connection before it (a sandbox's `USE`: the
    /// default catalog is a connection's, not the database's).
    session_sql: std::sync::OnceLock<String>,
}

impl LocalExecutor {
    /// An in-memory database (`path` = `None`) or a file, in UTC.
    pub fn open(path: Option<&std::path::Path>) -> Result<Arc<LocalExecutor>, ClientError> {
        Self::open_with(path, false)
    }

    /// Same, and a file may be opened read-only: DuckDB lets several processes
    /// open one file only when every one of them opens it read-only.
    pub fn open_with(
        path: Option<&std::path::Path>,
        read_only: bool,
    ) -> Result<Arc<LocalExecutor>, ClientError> {
        Self::open_configured(path, read_only, duckdb::Config::default(), &TimeZone::utc())
    }

    /// For a policy enforcement point: as [`Self::open_with`] in `time_zone`
    /// (DuckDB's `TimeZone`), and SQL can reach nothing outside the database
    /// (no file, no network: external access off), no extension is
    /// downloaded or loaded on demand, and no statement can change a setting
    /// afterwards (`lock_configuration`, as the agents lock theirs).
    pub fn open_locked(
        path: Option<&std::path::Path>,
        read_only: bool,
        time_zone: &TimeZone,
    ) -> Result<Arc<LocalExecutor>, ClientError> {
        let cfg = duckdb::Config::default()
            .enable_autoload_extension(false)
            .and_then(|c| c.with("autoinstall_known_extensions", "false"))
            .and_then(|c| c.enable_external_access(false))
            .map_err(|e| ClientError::Local(format!("bad DuckDB setting: {e}")))?;
        let local = Self::open_configured(path, read_only, cfg, time_zone)?;
        local
            .db
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .execute_batch("SET lock_configuration = true")
            .map_err(|e| ClientError::Local(format!("cannot lock the configuration: {e}")))?;
        Ok(local)
    }

    /// A scratch in-memory database for the gateway's own use (a catalog
    /// sandbox), in UTC: no file or network access, no extension loaded on
    /// demand, one thread, a small memory budget. Its configuration is not
    /// locked yet: the caller builds it ([`Self::execute_batch`]) and then
    /// locks it.
    pub fn open_sandbox() -> Result<Arc<LocalExecutor>, ClientError> {
        let cfg = duckdb::Config::default()
            .enable_autoload_extension(false)
            .and_then(|c| c.with("autoinstall_known_extensions", "false"))
            .and_then(|c| c.threads(1))
            .and_then(|c| c.max_memory("256MB"))
            .map_err(|e| ClientError::Local(format!("bad DuckDB setting: {e}")))?;
        Self::open_configured(None, false, cfg, &TimeZone::utc())
    }

    /// Opens the database with icu loaded and `time_zone` set for all its
    /// connections (before any lock: `open_locked` locks after).
    fn open_configured(
        path: Option<&std::path::Path>,
        read_only: bool,
        cfg: duckdb::Config,
        time_zone: &TimeZone,
    ) -> Result<Arc<LocalExecutor>, ClientError> {
        // icu is loaded by every database opened after it is registered, so
        // first; when DuckDB refused it, the open below fails with DuckDB's
        // reason, which says more than the refusal itself.
        let icu = duckdb_icu::register();
        let fail = |e: duckdb::Error| ClientError::Local(format!("cannot open DuckDB: {e}"));
        let conn = match (path, read_only) {
            (None, false) => duckdb::Connection::open_in_memory_with_flags(cfg),
            (None, true) => {
                return Err(ClientError::Local(
                    "an in-memory database cannot be opened read-only".into(),
                ))
            }
            (Some(p), false) => duckdb::Connection::open_with_flags(p, cfg),
            (Some(p), true) => cfg
                .access_mode(duckdb::AccessMode::ReadOnly)
                .and_then(|c| duckdb::Connection::open_with_flags(p, c)),
        }
        .map_err(fail)?;
        icu.map_err(|e| ClientError::Local(e.to_string()))?;
        conn.execute_batch(&time_zone.set_global_sql())
            .map_err(|e| ClientError::Local(format!("cannot set TimeZone to {time_zone}: {e}")))?;
        Ok(Arc::new(LocalExecutor {
            db: Mutex::new(conn),
            session_sql: std::sync::OnceLock::new(),
        }))
    }

    /// Runs one statement; see [`Executor::run`].
    pub async fn run(&self, sql: &str, deadline: Instant) -> Result<QueryRows, ClientError> {
        self.run_params(sql, &[], deadline).await
    }

    /// Runs DDL or settings on the database (several statements, no rows),
    /// blocking: call it off the async runtime's threads. For a database the
    /// process builds itself (a catalog sandbox), never for users' SQL.
    pub fn execute_batch(&self, sql: &str) -> Result<(), ClientError> {
        self.db
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .execute_batch(sql)
            .map_err(|e| ClientError::Local(e.to_string()))
    }

    /// Sets the SQL each statement's connection runs first (once; a second
    /// call is ignored).
    pub fn set_session_sql(&self, sql: &str) {
        let _ = self.session_sql.set(sql.to_string());
    }

    /// [`LocalExecutor::run`] with `params` bound to the statement's
    /// placeholders, as values.
    pub async fn run_params(
        &self,
        sql: &str,
        params: &[Param],
        deadline: Instant,
    ) -> Result<QueryRows, ClientError> {
        let conn = self
            .db
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_clone()
            .map_err(|e| ClientError::Local(format!("cannot open a connection: {e}")))?;
        let interrupt = conn.interrupt_handle();
        let (meta_tx, meta_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel(PAGES_BUFFERED);
        let sql = sql.to_string();
        let params = params.to_vec();
        let session = self.session_sql.get().cloned();
        // Dropped when the DuckDB thread ends: disarms the deadline watchdog.
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let watched = tx.clone();
        std::thread::Builder::new()
            .name("local-duckdb".into())
            .spawn(move || {
                let _done = done_tx;
                if let Some(session) = session {
                    if let Err(e) = conn.execute_batch(&session) {
                        let _ = meta_tx.send(Err(ClientError::Local(format!(
                            "cannot set up the connection: {e}"
                        ))));
                        return;
                    }
                }
                // A panic in the conversion must end the stream with an
                // error, never as a shorter result that looks complete.
                let on_panic = tx.clone();
                let run = std::panic::AssertUnwindSafe(|| {
                    produce(conn, sql, params, deadline, meta_tx, tx)
                });
                if std::panic::catch_unwind(run).is_err() {
                    let _ = on_panic.blocking_send(Err(ClientError::Local(
                        "the local engine failed while reading the result".into(),
                    )));
                }
            })
            .map_err(|e| ClientError::Local(format!("cannot start a thread: {e}")))?;
        // Interrupt at the deadline, or as soon as nobody waits for the rows
        // (this future or its QueryRows dropped: a cancel, a client gone), unless
        // the statement is done by then.
        let watchdog_interrupt = interrupt.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => watchdog_interrupt.interrupt(),
                _ = watched.closed() => watchdog_interrupt.interrupt(),
                _ = done_rx => {}
            }
        });
        let meta = tokio::select! {
            m = meta_rx => m,
            _ = tokio::time::sleep_until(deadline.into()) => {
                interrupt.interrupt();
                return Err(ClientError::Timeout);
            }
        };
        match meta {
            // The watchdog stays armed for the pages (the deadline covers them), and a
            // dropped QueryRows stops the producer at its next send.
            Ok(Ok((columns, column_types))) => Ok(QueryRows::streamed(
                columns,
                column_types,
                None,
                None,
                Via::Local,
                rx,
            )),
            Ok(Err(e)) => Err(if Instant::now() >= deadline {
                ClientError::Timeout
            } else {
                e
            }),
            Err(_) => Err(ClientError::Local("the DuckDB thread ended early".into())),
        }
    }

    /// Runs one statement with its parameters bound as values (never written
    /// into the SQL text) and hands back DuckDB's own Arrow export of its
    /// result, chunk by chunk ([`ArrowBatches`]), dictionaries unpacked as
    /// the agent unpacks them. The deadline interrupts the statement, and so
    /// does dropping the batches before their end.
    pub async fn run_arrow(
        &self,
        sql: &str,
        params: &[Value],
        deadline: Instant,
    ) -> Result<ArrowBatches, ClientError> {
        let conn = self
            .db
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_clone()
            .map_err(|e| ClientError::Local(format!("cannot open a connection: {e}")))?;
        let interrupt = conn.interrupt_handle();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (meta_tx, meta_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel(ARROW_BATCHES_BUFFERED);
        let sql = sql.to_string();
        let params: Vec<Dv> = params.iter().map(to_duckdb).collect();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let finished = done.clone();
        std::thread::Builder::new()
            .name("local-duckdb".into())
            .spawn(move || {
                let _done = done_tx;
                produce_arrow(conn, sql, params, deadline, meta_tx, tx);
                finished.store(true, std::sync::atomic::Ordering::Release);
            })
            .map_err(|e| ClientError::Local(format!("cannot start a thread: {e}")))?;
        let watchdog_interrupt = interrupt.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => watchdog_interrupt.interrupt(),
                _ = done_rx => {}
            }
        });
        let stop = StopOnDrop { interrupt, done };
        let meta = tokio::select! {
            m = meta_rx => m,
            _ = tokio::time::sleep_until(deadline.into()) => {
                drop(stop);
                return Err(ClientError::Timeout);
            }
        };
        match meta {
            Ok(Ok(schema)) => Ok(ArrowBatches::from_local(schema, rx, stop)),
            Ok(Err(e)) => Err(if Instant::now() >= deadline {
                ClientError::Timeout
            } else {
                e
            }),
            Err(_) => Err(ClientError::Local("the DuckDB thread ended early".into())),
        }
    }
}

/// DuckDB chunks in flight between the DuckDB thread and the caller.
const ARROW_BATCHES_BUFFERED: usize = 4;

/// A parameter as DuckDB binds it. Decimals, UUIDs and JSON go as text,
/// which DuckDB casts to the parameter's type when it binds.
fn to_duckdb(v: &Value) -> Dv {
    match v {
        Value::Null => Dv::Null,
        Value::Bool(b) => Dv::Boolean(*b),
        Value::Int(i) => Dv::BigInt(*i),
        Value::UInt(u) => Dv::UBigInt(*u),
        Value::HugeInt(i) => Dv::HugeInt(*i),
        Value::UHugeInt(u) => Dv::UHugeInt(*u),
        Value::Float(f) => Dv::Double(*f),
        Value::Decimal(s) | Value::Text(s) => Dv::Text(s.clone()),
        Value::Bytes(b) => Dv::Blob(b.clone()),
        Value::Date(d) => Dv::Date32(d.num_days_from_ce() - 719_163),
        Value::Time(t) => {
            let us = i64::from(t.num_seconds_from_midnight()) * 1_000_000
                + i64::from(t.nanosecond() / 1_000);
            Dv::Time64(TimeUnit::Microsecond, us)
        }
        Value::Timestamp(t) => Dv::Timestamp(TimeUnit::Microsecond, t.and_utc().timestamp_micros()),
        Value::TimestampTz(t) => Dv::Timestamp(TimeUnit::Microsecond, t.timestamp_micros()),
        Value::Interval {
            months,
            days,
            micros,
        } => Dv::Interval {
            months: *months,
            days: *days,
            nanos: micros.saturating_mul(1_000),
        },
        Value::Uuid(u) => Dv::Text(u.to_string()),
        Value::List(items) => Dv::List(items.iter().map(to_duckdb).collect()),
        Value::Json(j) => Dv::Text(j.to_string()),
    }
}

/// On the DuckDB thread: prepare, bind, execute streaming, send the schema,
/// then each chunk's Arrow batch until done or the receiver is gone.
fn produce_arrow(
    conn: duckdb::Connection,
    sql: String,
    params: Vec<Dv>,
    deadline: Instant,
    meta_tx: oneshot::Sender<Result<SchemaRef, ClientError>>,
    tx: mpsc::Sender<Result<RecordBatch, ClientError>>,
) {
    let fail = |e: duckdb::Error| {
        if Instant::now() >= deadline {
            ClientError::Timeout
        } else {
            ClientError::Execution {
                code: "EXECUTION_ERROR".into(),
                message: e.to_string(),
            }
        }
    };
    let mut stmt = match conn.prepare(&sql) {
        Ok(s) => s,
        Err(e) => {
            let _ = meta_tx.send(Err(fail(e)));
            return;
        }
    };
    if stmt.parameter_count() != params.len() {
        let _ = meta_tx.send(Err(ClientError::Execution {
            code: "EXECUTION_ERROR".into(),
            message: format!(
                "the statement has {} parameter(s) and {} value(s) were bound",
                stmt.parameter_count(),
                params.len()
            ),
        }));
        return;
    }
    let stream = match stmt.stream_arrow(duckdb::params_from_iter(params.iter())) {
        Ok(s) => s,
        Err(e) => {
            let _ = meta_tx.send(Err(fail(e)));
            return;
        }
    };
    let schema = undictionary_schema(&stream.get_schema());
    if meta_tx.send(Ok(schema.clone())).is_err() {
        return;
    }
    for batch in stream {
        let item = match batch {
            Ok(b) => unpack_batch(b, &schema).map_err(|e| ClientError::Execution {
                code: "EXECUTION_ERROR".into(),
                message: format!("cannot unpack a dictionary column: {e}"),
            }),
            Err(e) => Err(fail(e)),
        };
        let last = item.is_err();
        if Instant::now() >= deadline {
            let _ = tx.blocking_send(Err(ClientError::Timeout));
            return;
        }
        if tx.blocking_send(item).is_err() || last {
            return;
        }
    }
}

type Meta = Result<(Vec<String>, Vec<String>), ClientError>;

/// On the blocking thread: run, send the columns, then pages until done or the
/// receiver is gone.
fn produce(
    conn: duckdb::Connection,
    sql: String,
    params: Vec<Param>,
    deadline: Instant,
    meta_tx: oneshot::Sender<Meta>,
    tx: mpsc::Sender<Result<Vec<Row>, ClientError>>,
) {
    // Past the deadline the watchdog has interrupted DuckDB: report a timeout.
    let fail = |e: duckdb::Error| {
        if Instant::now() >= deadline {
            ClientError::Timeout
        } else {
            ClientError::Execution {
                code: "EXECUTION_ERROR".into(),
                message: e.to_string(),
            }
        }
    };
    let mut stmt = match conn.prepare(&sql) {
        Ok(s) => s,
        Err(e) => {
            let _ = meta_tx.send(Err(fail(e)));
            return;
        }
    };
    let bound: Vec<Dv> = params.iter().map(param_value).collect();
    let mut rows = match stmt.query(duckdb::params_from_iter(bound.iter())) {
        Ok(r) => r,
        Err(e) => {
            let _ = meta_tx.send(Err(fail(e)));
            return;
        }
    };
    let Some(st) = rows.as_ref() else {
        let _ = meta_tx.send(Err(ClientError::Local("no statement".into())));
        return;
    };
    let columns = st.column_names();
    let types: Vec<DataType> = (0..columns.len()).map(|i| st.column_type(i)).collect();
    let names = types.iter().map(duckdb_type_name).collect();
    if meta_tx.send(Ok((columns, names))).is_err() {
        return;
    }
    let mut page = Vec::with_capacity(LOCAL_PAGE_ROWS);
    loop {
        match rows.next() {
            Ok(Some(row)) => {
                let mut out = Vec::with_capacity(types.len());
                for (i, ty) in types.iter().enumerate() {
                    // A column of DuckDB's NULL type (`SELECT NULL`) holds
                    // nothing duckdb-rs can read (it panics on one).
                    if *ty == DataType::Null {
                        out.push(Value::Null);
                        continue;
                    }
                    let v = row.get::<_, Dv>(i).map(|v| convert(v, ty));
                    out.push(v.unwrap_or(Value::Null));
                }
                page.push(out);
                if page.len() == LOCAL_PAGE_ROWS {
                    if Instant::now() >= deadline {
                        let _ = tx.blocking_send(Err(ClientError::Timeout));
                        return;
                    }
                    let full = std::mem::replace(&mut page, Vec::with_capacity(LOCAL_PAGE_ROWS));
                    if tx.blocking_send(Ok(full)).is_err() {
                        return;
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = tx.blocking_send(Err(fail(e)));
                return;
            }
        }
    }
    if !page.is_empty() {
        let _ = tx.blocking_send(Ok(page));
    }
}

/// A parameter as duckdb-rs binds it.
fn param_value(p: &Param) -> Dv {
    match p {
        Param::Null => Dv::Null,
        Param::Bool(b) => Dv::Boolean(*b),
        Param::Int(i) => Dv::BigInt(*i),
        Param::Float(f) => Dv::Double(*f),
        Param::Text(s) => Dv::Text(s.clone()),
    }
}

/// DuckDB's name for an Arrow type as duckdb-rs reports it (the agent's
/// `column_types` vocabulary), so local and remote results describe columns alike.
pub fn duckdb_type_name(t: &DataType) -> String {
    match t {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "UTINYINT".into(),
        DataType::UInt16 => "USMALLINT".into(),
        DataType::UInt32 => "UINTEGER".into(),
        DataType::UInt64 => "UBIGINT".into(),
        DataType::Float16 | DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BLOB".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Interval(_) | DataType::Duration(_) => "INTERVAL".into(),
        DataType::List(f) | DataType::LargeList(f) => {
            format!("{}[]", duckdb_type_name(f.data_type()))
        }
        DataType::FixedSizeList(f, n) => format!("{}[{n}]", duckdb_type_name(f.data_type())),
        DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8) => "ENUM".into(),
        DataType::Struct(_) => "STRUCT".into(),
        DataType::Map(..) => "MAP".into(),
        DataType::Union(..) => "UNION".into(),
        other => format!("{other:?}").to_ascii_uppercase(),
    }
}

fn micros(unit: TimeUnit, v: i64) -> i64 {
    match unit {
        TimeUnit::Second => v.saturating_mul(1_000_000),
        TimeUnit::Millisecond => v.saturating_mul(1_000),
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v / 1_000,
    }
}

/// duckdb-rs's owned value → ours.
fn convert(v: Dv, ty: &DataType) -> Value {
    match v {
        Dv::Null => Value::Null,
        Dv::Boolean(b) => Value::Bool(b),
        Dv::TinyInt(i) => Value::Int(i.into()),
        Dv::SmallInt(i) => Value::Int(i.into()),
        Dv::Int(i) => Value::Int(i.into()),
        Dv::BigInt(i) => Value::Int(i),
        Dv::HugeInt(i) => Value::HugeInt(i),
        Dv::UHugeInt(u) => Value::UHugeInt(u),
        Dv::UTinyInt(u) => Value::UInt(u.into()),
        Dv::USmallInt(u) => Value::UInt(u.into()),
        Dv::UInt(u) => Value::UInt(u.into()),
        Dv::UBigInt(u) => Value::UInt(u),
        Dv::Float(f) => Value::Float(f.into()),
        Dv::Double(f) => Value::Float(f),
        Dv::Decimal(d) => Value::Decimal(d.to_string()),
        Dv::Timestamp(unit, t) => {
            let us = micros(unit, t);
            match DateTime::from_timestamp_micros(us) {
                Some(dt) if matches!(ty, DataType::Timestamp(_, Some(_))) => Value::TimestampTz(dt),
                Some(dt) => Value::Timestamp(dt.naive_utc()),
                None => Value::Int(us),
            }
        }
        Dv::Text(s) => Value::Text(s),
        Dv::Blob(b) | Dv::Geometry(b) => Value::Bytes(b),
        Dv::Date32(days) => NaiveDate::from_num_days_from_ce_opt(days.saturating_add(719_163))
            .map_or(Value::Int(days.into()), Value::Date),
        Dv::Time64(unit, t) => {
            let us = micros(unit, t);
            NaiveTime::from_num_seconds_from_midnight_opt(
                (us / 1_000_000) as u32,
                ((us % 1_000_000) * 1_000) as u32,
            )
            .map_or(Value::Int(us), Value::Time)
        }
        Dv::Interval {
            months,
            days,
            nanos,
        } => Value::Interval {
            months,
            days,
            micros: nanos / 1_000,
        },
        Dv::List(items) | Dv::Array(items) => {
            let elem = match ty {
                DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                    f.data_type().clone()
                }
                _ => DataType::Null,
            };
            Value::List(items.into_iter().map(|v| convert(v, &elem)).collect())
        }
        Dv::Enum(s) => Value::Text(s),
        other => Value::Json(to_json(other)),
    }
}

/// Nested values (STRUCT, MAP, UNION) in the agent's JSON forms.
fn to_json(v: Dv) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Dv::Struct(fields) => J::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v.clone())))
                .collect(),
        ),
        Dv::Map(entries) => J::Array(
            entries
                .iter()
                .map(|(k, v)| serde_json::json!({"key": to_json(k.clone()), "value": to_json(v.clone())}))
                .collect(),
        ),
        Dv::Union(inner) => to_json(*inner),
        Dv::List(items) | Dv::Array(items) => J::Array(items.into_iter().map(to_json).collect()),
        other => convert(other, &DataType::Null).to_json(),
    }
}

impl Executor for LocalExecutor {
    fn name(&self) -> &str {
        "local"
    }

    fn run_params<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<QueryRows, ClientError>> {
        Box::pin(LocalExecutor::run_params(self, sql, params, deadline))
    }

    fn run_arrow<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Value],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<ArrowBatches, ClientError>> {
        Box::pin(LocalExecutor::run_arrow(self, sql, params, deadline))
    }
}
