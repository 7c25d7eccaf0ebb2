//! The PostgreSQL door's statements: what each one is (a query for the
//! query path, a catalog query for the sandbox, a session command the door
//! answers itself), how it runs on the simple and the extended protocol,
//! its bound parameters, its rows streamed as they arrive, and its errors as
//! SQLSTATEs.
//!
//! Owns the statement plans ([`Plan`]) and the mapping of the query path's
//! failures to SQLSTATEs ([`pg_error`]). Every user statement of kind
//! [`Plan::Query`] goes through [`QueryService`]; it never sends anything
//! else to an engine.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::{stream, Sink, Stream};
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, DataRowEncoder,
    DescribePortalResponse, DescribeStatementResponse, FieldFormat, FieldInfo, QueryResponse,
    Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::DataRow;
use pgwire::messages::PgWireBackendMessage;
use sqlparser::dialect::{DuckDbDialect, PostgreSqlDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};
use tokio::sync::watch;

use super::auth::{Cancels, Session, Startup};
use super::sandbox::{self, SandboxKey, Sandboxes};
use super::types::{self, PgColumn};
use crate::query::audit::Audit;
use crate::query::{Door, ErrorKind, QueryError, QueryService, Started};
use client::{Param, QueryRows, Row};

/// What a statement is, and so where it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// A user's query: the query path (policy, rewrite, binder check, engine).
    Query,
    /// A catalog or session-information query: the principal's sandbox,
    /// which runs this text ([`sandbox::sandbox_sql`]).
    Catalog(String),
    /// `COPY (query) TO STDOUT` (psql's `\copy ... TO`): the query on the
    /// query path, its rows as COPY data.
    Copy(CopyOut),
    /// Transaction control: the gateway's sessions are read-only and
    /// autocommit, so these succeed and change nothing.
    Transaction(TxnTag),
    /// `SET` of a harmless session setting: accepted, no effect.
    Set,
    /// `SHOW` of a session setting: the door's own value.
    Show(String, String),
    /// Nothing to run (`DISCARD ALL`, `DEALLOCATE`, ...).
    Nothing(&'static str),
    /// Refused by the door, with its SQLSTATE and message.
    Refused(&'static str, String),
}

/// A `COPY ... TO STDOUT`: the query and how its rows are written.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyOut {
    pub query: String,
    pub csv: bool,
    pub header: bool,
}

/// The plan of a `COPY` statement: out to the client only, in text or CSV
/// with defaults; anything else refused.
fn copy_plan(sql: &str) -> Plan {
    use sqlparser::ast::{
        CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
    };
    let refused = |m: &str| Plan::Refused("0A000", m.to_string());
    let Ok(mut stmts) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return Plan::Query;
    };
    if stmts.len() != 1 {
        return Plan::Query;
    }
    let Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        payload: _,
    } = stmts.remove(0)
    else {
        return Plan::Query;
    };
    if !to || target != CopyTarget::Stdout {
        return refused(
            "only COPY ... TO STDOUT is served: the gateway is read-only and reads no file",
        );
    }
    let query = match source {
        CopySource::Query(q) => q.to_string(),
        CopySource::Table {
            table_name,
            columns,
        } => {
            let cols = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!("SELECT {cols} FROM {table_name}")
        }
    };
    let (mut csv, mut header) = (false, false);
    for o in options {
        match o {
            CopyOption::Format(f) if f.value.eq_ignore_ascii_case("csv") => csv = true,
            CopyOption::Format(f) if f.value.eq_ignore_ascii_case("text") => csv = false,
            CopyOption::Header(h) => header = h,
            other => return refused(&format!("COPY option {other} is not supported")),
        }
    }
    for o in legacy_options {
        match o {
            CopyLegacyOption::Csv(csv_options) => {
                csv = true;
                for c in csv_options {
                    match c {
                        CopyLegacyCsvOption::Header => header = true,
                        other => return refused(&format!("COPY option {other} is not supported")),
                    }
                }
            }
            other => return refused(&format!("COPY option {other} is not supported")),
        }
    }
    if header && !csv {
        return refused("COPY HEADER is available only in CSV mode");
    }
    Plan::Copy(CopyOut { query, csv, header })
}

/// Which transaction tag a no-op transaction command answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnTag {
    Begin,
    Commit,
    Rollback,
    Savepoint,
    Release,
}

/// A parsed statement: its text, its plan, and how many parameters it takes.
#[derive(Debug, Clone)]
pub struct PgStatement {
    sql: String,
    plan: Plan,
    params: usize,
}

/// Settings a client may `SET` through the door (accepted, without effect:
/// every session is UTF-8, UTC, ISO dates, read-only, autocommit).
const HARMLESS_SETTINGS: &[&str] = &[
    "application_name",
    "client_min_messages",
    "datestyle",
    "extra_float_digits",
    "intervalstyle",
    "search_path",
    "standard_conforming_strings",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "bytea_output",
    "lc_messages",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "transaction",
    "session",
    "timezone",
    "time",
    "jit",
    "names",
    "client_encoding",
];

/// The door's answer to `SHOW name`, or `None` for a name it does not know.
fn show_value(name: &str) -> Option<&'static str> {
    Some(match name {
        "server_version" => super::SERVER_VERSION,
        "server_version_num" => "160000",
        "server_encoding" | "client_encoding" => "UTF8",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "timezone" | "time zone" => "UTC",
        "transaction_isolation"
        | "transaction isolation level"
        | "default_transaction_isolation" => "read committed",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "standard_conforming_strings" | "integer_datetimes" => "on",
        "is_superuser" => "off",
        "max_identifier_length" => "63",
        "search_path" => "main",
        "lc_collate" | "lc_ctype" => "C",
        "extra_float_digits" => "1",
        "statement_timeout" | "lock_timeout" => "0",
        _ => return None,
    })
}

/// The plan of one statement's text.
pub fn plan_of(sql: &str) -> Plan {
    let lower = sql.trim().trim_end_matches(';').trim().to_ascii_lowercase();
    let first = lower.split_whitespace().next().unwrap_or("");
    match first {
        "begin" | "start" => return Plan::Transaction(TxnTag::Begin),
        "commit" | "end" => return Plan::Transaction(TxnTag::Commit),
        "rollback" | "abort" => {
            return if lower.contains(" to ") {
                Plan::Transaction(TxnTag::Savepoint)
            } else {
                Plan::Transaction(TxnTag::Rollback)
            }
        }
        "savepoint" => return Plan::Transaction(TxnTag::Savepoint),
        "release" => return Plan::Transaction(TxnTag::Release),
        "discard" => return Plan::Nothing("DISCARD ALL"),
        "copy" => return copy_plan(sql),
        "deallocate" => return Plan::Nothing("DEALLOCATE"),
        "set" => {
            let mut words = lower.split_whitespace().skip(1);
            let mut name = words.next().unwrap_or("");
            if name == "session" || name == "local" {
                name = words.next().unwrap_or("");
            }
            let name = name.split('=').next().unwrap_or("").trim_matches('"');
            if !HARMLESS_SETTINGS.contains(&name) {
                return Plan::Refused(
                    "42501",
                    format!("setting {name} cannot be changed through the gateway"),
                );
            }
            if name == "client_encoding" || name == "names" {
                let utf8 =
                    lower.contains("utf8") || lower.contains("utf-8") || lower.contains("unicode");
                if !utf8 {
                    return Plan::Refused("22023", "the gateway speaks UTF8 only".into());
                }
            }
            return Plan::Set;
        }
        "show" => {
            let name = lower["show".len()..].trim().trim_matches('"').to_string();
            return match show_value(&name) {
                Some(v) => Plan::Show(name, v.to_string()),
                None => Plan::Refused(
                    "42704",
                    format!("unrecognized configuration parameter \"{name}\""),
                ),
            };
        }
        _ => {}
    }
    match Parser::parse_sql(&DuckDbDialect {}, sql) {
        Ok(stmts)
            if stmts.len() == 1 && matches!(stmts[0], sqlparser::ast::Statement::Query(_)) =>
        {
            if sandbox::is_catalog_statement(&stmts[0]) {
                Plan::Catalog(sandbox::sandbox_sql(stmts.into_iter().next().unwrap()))
            } else {
                Plan::Query
            }
        }
        Ok(_) => Plan::Query,
        // PostgreSQL's own spellings (E'' strings, OPERATOR(pg_catalog.~))
        // in a client's catalog query: the sandbox's, which holds nothing
        // secret; anything else is the query path's to answer (and refuse).
        Err(_) => match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
            Ok(stmts)
                if stmts.len() == 1
                    && matches!(stmts[0], sqlparser::ast::Statement::Query(_))
                    && sandbox::is_catalog_statement(&stmts[0]) =>
            {
                Plan::Catalog(sandbox::sandbox_sql(stmts.into_iter().next().unwrap()))
            }
            _ => Plan::Query,
        },
    }
}

/// How many parameters a statement takes: its highest `$n`, or its `?`s.
fn parameter_count(sql: &str) -> usize {
    let Ok(tokens) = Tokenizer::new(&DuckDbDialect {}, sql).tokenize() else {
        return 0;
    };
    let mut dollar = 0usize;
    let mut question = 0usize;
    for t in tokens {
        if let Token::Placeholder(p) = t {
            if p == "?" {
                question += 1;
            } else if let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                dollar = dollar.max(n);
            }
        }
    }
    dollar.max(question)
}

/// Splits a simple query's text into its statements: the text itself when
/// it is one, each statement printed back when it holds several.
fn statements(text: &str) -> Vec<String> {
    match Parser::parse_sql(&DuckDbDialect {}, text) {
        Ok(stmts) if stmts.len() > 1 => stmts.iter().map(|s| s.to_string()).collect(),
        _ => vec![text.to_string()],
    }
}

/// The SQLSTATE of an engine's error message, from DuckDB's error kind.
fn engine_sqlstate(message: &str) -> &'static str {
    let m = message.trim_start_matches("EXECUTION_ERROR: ");
    if m.starts_with("Parser Error") {
        "42601"
    } else if m.starts_with("Catalog Error") {
        "42P01"
    } else if m.starts_with("Binder Error") {
        "42703"
    } else if m.starts_with("Conversion Error") || m.starts_with("Invalid Input Error") {
        "22P02"
    } else if m.starts_with("Out of Range Error") {
        "22003"
    } else if m.contains("Division by zero") {
        "22012"
    } else if m.starts_with("Interrupt") {
        "57014"
    } else {
        "XX000"
    }
}

/// A query path failure as the client's `ErrorResponse`.
pub fn pg_error(e: QueryError) -> PgWireError {
    let code = match e.kind {
        ErrorKind::Unauthorized => "28000",
        ErrorKind::AccessDenied => "42501",
        ErrorKind::Refused if e.message.starts_with("SQL does not parse") => "42601",
        ErrorKind::Refused => "42000",
        ErrorKind::Engine => engine_sqlstate(&e.message),
        ErrorKind::Timeout | ErrorKind::Canceled => "57014",
        ErrorKind::Overloaded | ErrorKind::TooManyQueries => "53300",
        ErrorKind::Unavailable | ErrorKind::Unreachable => "08006",
        ErrorKind::Internal => "XX000",
    };
    user_error(code, e.message)
}

/// What a statement stopped by a `CancelRequest` answers, as PostgreSQL.
fn canceled() -> PgWireError {
    user_error("57014", "canceling statement due to user request")
}

fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

/// The format of result column `i` (a client sending fewer codes than
/// columns gets text for the rest, never a panic).
fn format_of(format: &Format, i: usize) -> FieldFormat {
    match format {
        Format::Individual(v) if i >= v.len() => FieldFormat::Text,
        f => f.format_for(i),
    }
}

/// The door's shared state.
pub struct PgDoor {
    handler: Arc<Handler>,
    startup: Arc<Startup>,
    cancel: Arc<CancelKeys>,
}

impl PgDoor {
    pub fn new(query: Arc<QueryService>, plain_loopback: bool) -> PgDoor {
        let cancels = Arc::new(Cancels::default());
        let handler = Arc::new(Handler {
            query: query.clone(),
            sandboxes: Arc::new(Sandboxes::default()),
            parser: Arc::new(StatementParser),
        });
        PgDoor {
            startup: Arc::new(Startup::new(query, plain_loopback, cancels.clone())),
            cancel: Arc::new(CancelKeys { cancels }),
            handler,
        }
    }
}

impl PgWireServerHandlers for PgDoor {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.handler.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.handler.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// `CancelRequest`s, on a connection of their own.
struct CancelKeys {
    cancels: Arc<Cancels>,
}

#[async_trait]
impl CancelHandler for CancelKeys {
    async fn on_cancel_request(&self, req: CancelRequest) {
        self.cancels.cancel(req.pid, &req.secret_key.to_bytes());
    }
}

/// Parses statements for the extended protocol: classification only; the
/// query path runs (and refuses) at bind and execute.
pub struct StatementParser;

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<PgStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        Ok(Some(PgStatement {
            sql: sql.to_string(),
            plan: plan_of(sql),
            params: parameter_count(sql),
        }))
    }

    fn get_parameter_types(&self, stmt: &PgStatement) -> PgWireResult<Vec<Type>> {
        Ok(vec![Type::TEXT; stmt.params])
    }

    fn get_result_schema(
        &self,
        _stmt: &PgStatement,
        _column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        // Answered by the handler's describe methods, which can reach the
        // query path; this synchronous hook is not used.
        Ok(Vec::new())
    }
}

/// The simple and extended query handlers.
pub struct Handler {
    query: Arc<QueryService>,
    sandboxes: Arc<Sandboxes>,
    parser: Arc<StatementParser>,
}

/// The session of a connection, or the refusal of an unauthenticated one.
fn session<C: ClientInfo>(client: &C) -> PgWireResult<Arc<Session>> {
    client
        .session_extensions()
        .get::<Session>()
        .ok_or_else(|| user_error("28000", "the connection is not authenticated"))
}

/// A statement's parameters from a portal, as values: typed where the
/// client said the type (or sent it in binary), text otherwise (the engine
/// casts text as it would a literal).
fn portal_params(portal: &Portal<PgStatement>) -> PgWireResult<Vec<Param>> {
    let types = &portal.statement.parameter_types;
    let mut out = Vec::with_capacity(portal.parameters.len());
    for (i, raw) in portal.parameters.iter().enumerate() {
        if raw.is_none() {
            out.push(Param::Null);
            continue;
        }
        let ty = types.get(i).cloned().flatten().unwrap_or(Type::UNKNOWN);
        let binary = format_of(&portal.parameter_format, i) == FieldFormat::Binary;
        let p = match ty {
            Type::INT2 => portal
                .parameter::<i16>(i, &ty)?
                .map(|v| Param::Int(v.into())),
            Type::INT4 => portal
                .parameter::<i32>(i, &ty)?
                .map(|v| Param::Int(v.into())),
            Type::INT8 => portal.parameter::<i64>(i, &ty)?.map(Param::Int),
            Type::FLOAT4 => portal
                .parameter::<f32>(i, &ty)?
                .map(|v| Param::Float(v.into())),
            Type::FLOAT8 => portal.parameter::<f64>(i, &ty)?.map(Param::Float),
            Type::BOOL => portal.parameter::<bool>(i, &ty)?.map(Param::Bool),
            // Text's binary form is its UTF-8 bytes, as its text form; a
            // parameter the client left untyped was described to it as text.
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                let bytes = raw.as_deref().unwrap_or_default();
                Some(Param::Text(String::from_utf8_lossy(bytes).into_owned()))
            }
            other if !binary => {
                let bytes = raw.as_deref().unwrap_or_default();
                let _ = other;
                Some(Param::Text(String::from_utf8_lossy(bytes).into_owned()))
            }
            other => {
                return Err(user_error(
                    "0A000",
                    format!(
                        "parameter ${}: binary {} is not supported; send it as text",
                        i + 1,
                        other.name()
                    ),
                ))
            }
        };
        out.push(p.unwrap_or(Param::Null));
    }
    Ok(out)
}

/// What streams a query's rows: the engine's pages, each row encoded as it
/// is taken, the audit line finished at the end, the engine's work stopped
/// when the client cancels or goes away (the rows are dropped).
struct RowFeed {
    rows: QueryRows,
    page: VecDeque<Row>,
    kinds: Vec<PgColumn>,
    fields: Arc<Vec<FieldInfo>>,
    audit: Option<Audit>,
    scope: Option<crate::query::ErrorScope>,
    cancel: watch::Receiver<u64>,
    sent: u64,
    done: bool,
}

impl RowFeed {
    /// The next row as the engine gave it; the audit line finished at the end.
    async fn next_raw(&mut self) -> Option<PgWireResult<Row>> {
        if self.done {
            return None;
        }
        loop {
            if let Some(row) = self.page.pop_front() {
                self.sent += 1;
                return Some(Ok(row));
            }
            let page = tokio::select! {
                p = self.rows.next_page() => p,
                _ = self.cancel.changed() => {
                    self.done = true;
                    if let Some(a) = self.audit.as_mut() {
                        a.rows = self.sent;
                        a.finish(None, "canceled", Some("canceled by a CancelRequest"));
                    }
                    return Some(Err(canceled()));
                }
            };
            match page {
                Ok(Some(p)) => self.page.extend(p),
                Ok(None) => {
                    self.done = true;
                    if let Some(a) = self.audit.as_mut() {
                        a.rows = self.sent;
                        a.finish(None, "answered", None);
                    }
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    let err = match &self.scope {
                        Some(s) => s.user_error(e),
                        None => QueryError::from(e),
                    };
                    if let Some(a) = self.audit.as_mut() {
                        a.rows = self.sent;
                        a.finish(None, "failed", Some(&err.message));
                    }
                    return Some(Err(pg_error(err)));
                }
            }
        }
    }

    /// The rows as `DataRow`s.
    fn into_stream(self) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
        stream::unfold(self, |mut feed| async move {
            let row = match feed.next_raw().await? {
                Ok(row) => row,
                Err(e) => return Some((Err(e), feed)),
            };
            let mut enc = DataRowEncoder::new(feed.fields.clone());
            let r = types::encode_row(&mut enc, &row, &feed.kinds).map(|()| enc.take_row());
            if r.is_err() {
                feed.done = true;
            }
            Some((r, feed))
        })
    }

    /// The rows as COPY data, one line each, after a CSV header when asked
    /// (sent with the first row, so the command tag counts rows only).
    fn into_copy_stream(
        self,
        enc: CopyEncoder,
        header: Option<Vec<u8>>,
    ) -> impl Stream<Item = PgWireResult<CopyData>> + Send + 'static {
        stream::unfold(
            (self, enc, header),
            |(mut feed, mut enc, mut header)| async move {
                let row = match feed.next_raw().await {
                    Some(Ok(row)) => row,
                    Some(Err(e)) => return Some((Err(e), (feed, enc, header))),
                    // An empty result still gets its header line.
                    None => {
                        let h = header.take()?;
                        return Some((Ok(CopyData::new(h.into())), (feed, enc, header)));
                    }
                };
                let r = types::encode_row(&mut enc, &row, &feed.kinds).map(|()| {
                    let line = enc.take_copy();
                    match header.take() {
                        Some(mut h) => {
                            h.extend_from_slice(&line.data);
                            CopyData::new(h.into())
                        }
                        None => line,
                    }
                });
                if r.is_err() {
                    feed.done = true;
                }
                Some((r, (feed, enc, header)))
            },
        )
    }
}

/// The feed of a result's rows, in `format`.
fn feed(
    rows: QueryRows,
    audit: Option<Audit>,
    scope: Option<crate::query::ErrorScope>,
    mut cancel: watch::Receiver<u64>,
    format: &Format,
) -> RowFeed {
    cancel.mark_unchanged();
    let (fields, kinds) =
        types::fields(&rows.columns, &rows.column_types, |i| format_of(format, i));
    RowFeed {
        rows,
        page: VecDeque::new(),
        kinds,
        fields,
        audit,
        scope,
        cancel,
        sent: 0,
        done: false,
    }
}

/// A CSV header line of column names.
fn csv_header(columns: &[String]) -> Vec<u8> {
    let quoted: Vec<String> = columns
        .iter()
        .map(|c| {
            if c.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.clone()
            }
        })
        .collect();
    format!("{}\n", quoted.join(",")).into_bytes()
}

impl Handler {
    /// Runs one statement with its parameters, rows in `format`.
    async fn answer<C: ClientInfo>(
        &self,
        client: &C,
        stmt: &PgStatement,
        params: Vec<Param>,
        format: &Format,
    ) -> PgWireResult<Response> {
        match &stmt.plan {
            Plan::Transaction(t) => Ok(match t {
                TxnTag::Begin => Response::TransactionStart(Tag::new("BEGIN")),
                TxnTag::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
                TxnTag::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
                TxnTag::Savepoint => Response::Execution(Tag::new("SAVEPOINT")),
                TxnTag::Release => Response::Execution(Tag::new("RELEASE")),
            }),
            Plan::Set => Ok(Response::Execution(Tag::new("SET"))),
            Plan::Nothing(tag) => Ok(Response::Execution(Tag::new(tag))),
            Plan::Refused(code, msg) => Err(user_error(code, msg.clone())),
            Plan::Show(name, value) => {
                let fields = Arc::new(vec![FieldInfo::new(
                    name.clone(),
                    None,
                    None,
                    Type::TEXT,
                    format_of(format, 0),
                )]);
                let mut enc = DataRowEncoder::new(fields.clone());
                enc.encode_field(value)?;
                let row = enc.take_row();
                Ok(Response::Query(QueryResponse::new(
                    fields,
                    stream::iter(vec![Ok(row)]),
                )))
            }
            Plan::Catalog(sql) => {
                let s = session(client)?;
                let sandbox = self.sandbox(&s).await?;
                let deadline = Instant::now() + Duration::from_secs(30);
                let rows = sandbox
                    .run_params(sql, &params, deadline)
                    .await
                    .map_err(|e| pg_error(e.into()))?;
                let feed = feed(rows, None, None, s.cancel.clone(), format);
                Ok(Response::Query(QueryResponse::new(
                    feed.fields.clone(),
                    feed.into_stream(),
                )))
            }
            Plan::Copy(copy) => {
                let s = session(client)?;
                let feed = self
                    .start(&s, &copy.query, params, &Format::UnifiedText)
                    .await?;
                let fields = feed.fields.clone();
                let n = fields.len();
                let (enc, header) = if copy.csv {
                    let header = copy.header.then(|| csv_header(&feed.rows.columns));
                    (
                        CopyEncoder::new_csv(fields, CopyCsvOptions::default()),
                        header,
                    )
                } else {
                    (
                        CopyEncoder::new_text(fields, CopyTextOptions::default()),
                        None,
                    )
                };
                Ok(Response::CopyOut(CopyResponse::new(
                    0,
                    n,
                    feed.into_copy_stream(enc, header),
                )))
            }
            Plan::Query => {
                let s = session(client)?;
                let feed = self.start(&s, &stmt.sql, params, format).await?;
                Ok(Response::Query(QueryResponse::new(
                    feed.fields.clone(),
                    feed.into_stream(),
                )))
            }
        }
    }

    /// A user's statement on the query path (policy, rewrite, binder check,
    /// engine, audit with the door named), its rows to be streamed.
    async fn start(
        &self,
        s: &Session,
        sql: &str,
        params: Vec<Param>,
        format: &Format,
    ) -> PgWireResult<RowFeed> {
        let id = uuid::Uuid::new_v4().to_string();
        let prepared = self
            .query
            .prepare(&s.principal, sql, &id, Door::Pgwire)
            .await
            .map_err(pg_error)?;
        let mut cancel = s.cancel.clone();
        cancel.mark_unchanged();
        // A CancelRequest before the first rows drops the run, which stops
        // the engine's work (the agent's job is canceled, local DuckDB
        // interrupted).
        let started = tokio::select! {
            r = self.query.execute(prepared.bind(params)) => r.map_err(pg_error)?,
            _ = cancel.changed() => return Err(canceled()),
        };
        let Started {
            rows, audit, scope, ..
        } = started;
        Ok(feed(rows, Some(audit), Some(scope), cancel, format))
    }

    /// The principal's catalog sandbox.
    async fn sandbox(&self, s: &Session) -> PgWireResult<Arc<client::LocalExecutor>> {
        let (generation, tables) = self
            .query
            .visible_tables(&s.principal)
            .await
            .map_err(pg_error)?;
        let key = SandboxKey {
            user: s.principal.user.clone(),
            groups: s.principal.groups.clone(),
            generation,
        };
        let default_catalog = self.query.default_catalog.clone();
        let sandboxes = self.sandboxes.clone();
        // Building one runs DuckDB: on the blocking pool.
        tokio::task::spawn_blocking(move || sandboxes.get(key, &default_catalog, &tables))
            .await
            .map_err(|e| user_error("XX000", format!("the catalog sandbox task failed: {e}")))?
            .map_err(pg_error)
    }

    /// The columns a statement will answer, without running it on an engine.
    async fn describe<C: ClientInfo>(
        &self,
        client: &C,
        stmt: &PgStatement,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let text = |name: &str| {
            FieldInfo::new(name.to_string(), None, None, Type::TEXT, FieldFormat::Text)
        };
        let cols: Vec<(String, String)> = match &stmt.plan {
            Plan::Show(name, _) => return Ok(vec![text(name)]),
            Plan::Query => {
                let s = session(client)?;
                let id = uuid::Uuid::new_v4().to_string();
                let prepared = self
                    .query
                    .prepare(&s.principal, &stmt.sql, &id, Door::Pgwire)
                    .await
                    .map_err(pg_error)?;
                self.query
                    .describe(prepared, stmt.params)
                    .await
                    .map_err(pg_error)?
            }
            Plan::Catalog(sql) => {
                let s = session(client)?;
                let sandbox = self.sandbox(&s).await?;
                let deadline = Instant::now() + Duration::from_secs(30);
                let nulls = vec![Param::Null; stmt.params];
                let rows = sandbox
                    .run_params(&format!("SELECT * FROM ({sql}) LIMIT 0"), &nulls, deadline)
                    .await
                    .map_err(|e| pg_error(e.into()))?;
                rows.columns
                    .iter()
                    .cloned()
                    .zip(rows.column_types.iter().cloned())
                    .collect()
            }
            _ => return Ok(Vec::new()),
        };
        let (names, duck): (Vec<String>, Vec<String>) = cols.into_iter().unzip();
        let (fields, _) = types::fields(&names, &duck, |_| FieldFormat::Text);
        Ok(fields.as_ref().clone())
    }
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut out = Vec::new();
        for sql in statements(query) {
            let stmt = PgStatement {
                plan: plan_of(&sql),
                params: 0,
                sql,
            };
            match self
                .answer(client, &stmt, Vec::new(), &Format::UnifiedText)
                .await
            {
                Ok(r) => out.push(r),
                Err(PgWireError::UserError(info)) => {
                    // The statements after a failed one are not run, as PostgreSQL does.
                    out.push(Response::Error(info));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = PgStatement;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        target: &StoredStatement<PgStatement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let stmt = &target.statement;
        let params = (0..stmt.params.max(target.parameter_types.len()))
            .map(|i| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or(Type::TEXT)
            })
            .collect();
        let fields = self.describe(client, stmt).await?;
        Ok(DescribeStatementResponse::new(params, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<PgStatement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // The parameters are bound: run the statement now and keep its rows
        // for the Execute that follows, so its description is the engine's
        // own and it runs once.
        let started = matches!(*portal.state().lock().await, PortalExecutionState::Initial);
        if !started {
            return Ok(DescribePortalResponse::new(Vec::new()));
        }
        let params = portal_params(portal)?;
        match self
            .answer(
                client,
                &portal.statement.statement,
                params,
                &portal.result_column_format,
            )
            .await?
        {
            Response::Query(q) => {
                let fields = q.row_schema().as_ref().clone();
                portal.start(q).await;
                Ok(DescribePortalResponse::new(fields))
            }
            _ => Ok(DescribePortalResponse::new(Vec::new())),
        }
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<PgStatement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let params = portal_params(portal)?;
        self.answer(
            client,
            &portal.statement.statement,
            params,
            &portal.result_column_format,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        assert_eq!(plan_of("SELECT 1"), Plan::Query);
        let catalog = |sql: &str| matches!(plan_of(sql), Plan::Catalog(_));
        assert!(catalog("select * from pg_catalog.pg_class"));
        assert!(catalog("SELECT * FROM information_schema.tables"));
        assert!(catalog("SELECT version()"));
        assert_eq!(
            plan_of("SELECT pg_catalog.pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class c WHERE c.relname = 'x' COLLATE pg_catalog.default"),
            Plan::Catalog("SELECT pg_get_userbyid(c.relowner) FROM gw_pg_class() c WHERE c.relname = 'x'".into())
        );
        assert_eq!(plan_of("SELECT current_setting('threads')"), Plan::Query);
        assert_eq!(plan_of("BEGIN"), Plan::Transaction(TxnTag::Begin));
        assert_eq!(plan_of("commit;"), Plan::Transaction(TxnTag::Commit));
        assert_eq!(plan_of("SET extra_float_digits = 3"), Plan::Set);
        assert_eq!(plan_of("SET SESSION datestyle TO 'ISO'"), Plan::Set);
        assert!(matches!(
            plan_of("SET enable_external_access = true"),
            Plan::Refused(..)
        ));
        assert!(matches!(
            plan_of("SET client_encoding = 'LATIN1'"),
            Plan::Refused(..)
        ));
        assert_eq!(
            plan_of("SHOW transaction isolation level"),
            Plan::Show(
                "transaction isolation level".into(),
                "read committed".into()
            )
        );
        assert!(matches!(plan_of("SHOW threads"), Plan::Refused(..)));
        // A user table named like a catalog view is still a table.
        assert_eq!(plan_of("SELECT pg_x FROM employees"), Plan::Query);
        assert_eq!(plan_of("INSERT INTO t VALUES (1)"), Plan::Query);
        // psql's own spellings reach the sandbox.
        assert!(catalog(
            "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(people)$' COLLATE pg_catalog.default"
        ));
        // COPY out to the client only.
        assert_eq!(
            plan_of("COPY (SELECT id FROM people) TO STDOUT CSV HEADER"),
            Plan::Copy(CopyOut {
                query: "SELECT id FROM people".into(),
                csv: true,
                header: true
            })
        );
        assert_eq!(
            plan_of("copy people (id, name) to stdout"),
            Plan::Copy(CopyOut {
                query: "SELECT id, name FROM people".into(),
                csv: false,
                header: false
            })
        );
        for refused in [
            "COPY people FROM STDIN",
            "COPY people TO '/tmp/x'",
            "COPY people TO PROGRAM 'id'",
            "COPY people TO STDOUT (DELIMITER '|')",
        ] {
            assert!(
                matches!(plan_of(refused), Plan::Refused("0A000", _)),
                "{refused}"
            );
        }
    }

    #[test]
    fn parameter_counts() {
        assert_eq!(parameter_count("SELECT $1, $3"), 3);
        assert_eq!(parameter_count("SELECT ?, ?"), 2);
        assert_eq!(parameter_count("SELECT '$1'"), 0);
    }

    #[test]
    fn several_statements_split() {
        assert_eq!(statements("SELECT 1").len(), 1);
        assert_eq!(statements("SELECT 1; SELECT 2").len(), 2);
        assert_eq!(statements("garbage; more").len(), 1);
    }
}
