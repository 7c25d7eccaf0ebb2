//! The Flight SQL service: arrow-flight's [`FlightSqlService`] over the one
//! query path ([`QueryService`]).
//!
//! Owns what each Flight SQL call means here: `GetFlightInfo` of a statement
//! (or of a prepared statement with its bound parameters) authenticates,
//! reserves a slot, prepares (policy, routing, rewrite, binder check),
//! starts the Arrow run, reads its first batch and answers the schema and
//! one endpoint whose ticket names the held result; `DoGet` of that ticket
//! streams the engine's own record batches; `CancelFlightInfo` (and the
//! older `CancelQuery` action) stops it; the metadata calls answer from the
//! caller's granted tables only ([`QueryService::granted_tables`]).
//!
//! It never runs SQL the query path did not rewrite and prove: every
//! statement, including the schema lookups of `GetTables`, goes through
//! `prepare` and `execute_arrow`. It never writes a parameter into SQL text,
//! never tells a user that a table it is not granted exists, and maps every
//! failure through [`super::status`].

use std::pin::Pin;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandPreparedStatementQuery, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, SqlSupportedCaseSensitivity,
    SqlSupportedTransaction, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus,
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use arrow_schema::{Schema, SchemaRef};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status, Streaming};

use super::auth::{self, Credential};
use super::held::{Canceled, Held, Ready, Streaming as StreamingGuard};
use super::params;
use super::status::{invalid, status};
use crate::access::TableKey;
use crate::query::audit::{Audit, Ending};
use crate::query::params::number_placeholders;
use crate::query::{Door, QueryError, QueryService};
use crate::store::AuthedPrincipal;

/// The `CancelFlightInfo` action (Flight's own, beside Flight SQL's older
/// `CancelQuery`).
const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";

/// `ActionCancelQueryResult.CancelResult.CANCEL_RESULT_CANCELLED` (the enum
/// is not re-exported by arrow-flight).
const CANCEL_RESULT_CANCELLED: i32 = 1;

/// Most tables whose schemas one `GetTables` with `include_schema` looks up
/// (each is a query through the query path).
pub const MAX_TABLE_SCHEMAS: usize = 1000;

/// Most `FlightData` messages one parameter `DoPut` may send.
const MAX_PARAMETER_MESSAGES: usize = 64;

/// The door's state.
pub struct FlightSql {
    query: Arc<QueryService>,
    held: Arc<Held>,
    sql_info: SqlInfoData,
}

type DoGetStream = <FlightSql as FlightService>::DoGetStream;

impl FlightSql {
    pub fn new(query: Arc<QueryService>, held: Arc<Held>) -> Result<FlightSql, String> {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "compute-gateway");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "60.1.0");
        b.append(SqlInfo::FlightSqlServerReadOnly, true);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(
            SqlInfo::FlightSqlServerTransaction,
            SqlSupportedTransaction::None as i32,
        );
        b.append(SqlInfo::FlightSqlServerCancel, true);
        b.append(SqlInfo::SqlDdlCatalog, false);
        b.append(SqlInfo::SqlDdlSchema, false);
        b.append(SqlInfo::SqlDdlTable, false);
        b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        b.append(
            SqlInfo::SqlIdentifierCase,
            SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
        );
        let sql_info = b
            .build()
            .map_err(|e| format!("cannot build the Flight SQL server info: {e}"))?;
        Ok(FlightSql {
            query,
            held,
            sql_info,
        })
    }

    /// The caller's principal, from the call's bearer token.
    fn who(&self, md: &tonic::metadata::MetadataMap) -> Result<AuthedPrincipal, Status> {
        self.query
            .authenticate(auth::bearer(md))
            .map_err(Status::from)
    }

    /// Runs `sql` with `params` bound through the query path and holds the
    /// result for its ticket: the `FlightInfo` of a statement.
    async fn start(
        &self,
        who: &AuthedPrincipal,
        sql: &str,
        params: &[client::Value],
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        // Reserve first, so a user over the cap costs no engine work.
        let slot = self.held.reserve(&who.user).inspect_err(|_| {
            self.query.metrics.rejected_busy();
        })?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let sql = match number_placeholders(sql) {
            Ok(s) => s,
            Err(e) => {
                // Refused before the query path: this door writes the line.
                self.query.metrics.denied("parameters");
                Audit::new(&id, &who.user, &who.groups, Door::Flight.as_str()).finish(
                    Some(&e.message),
                    "denied",
                    None,
                );
                return Err(e.into());
            }
        };
        let prepared = self.query.prepare(who, &sql, &id, Door::Flight).await?;
        let mut started = self.query.execute_arrow(prepared, params).await?;
        // The first batch before the answer: an early engine error is this
        // call's error, not the stream's.
        let first = match started.rows.next_batch().await {
            Ok(b) => b,
            Err(e) => {
                let err = started.scope.user_error(e);
                started.audit.finish(None, "failed", Some(&err.message));
                return Err(err.into());
            }
        };
        let schema = started.rows.schema.clone();
        let total = started.rows.row_count.map_or(-1, |n| n as i64);
        self.held.hold(
            &id,
            &who.user,
            Ready {
                started,
                first,
                slot,
            },
        );
        let ticket = TicketStatementQuery {
            statement_handle: id.into_bytes().into(),
        };
        info(&schema, ticket.as_any().encode_to_vec(), descriptor, total)
    }

    /// The Arrow schema `who` sees of one granted table: its columns
    /// through the policy (a mask may change a type), from a `LIMIT 0`
    /// query through the query path.
    async fn table_schema(
        &self,
        who: &AuthedPrincipal,
        key: &TableKey,
    ) -> Result<SchemaRef, QueryError> {
        let quote = |s: &str| format!("\"{s}\"");
        let sql = format!(
            "SELECT * FROM {}.{}.{} LIMIT 0",
            quote(&key.catalog),
            quote(&key.schema),
            quote(&key.table)
        );
        let id = uuid::Uuid::new_v4().simple().to_string();
        let prepared = self.query.prepare(who, &sql, &id, Door::Flight).await?;
        let mut started = self.query.execute_arrow(prepared, &[]).await?;
        let schema = started.rows.schema.clone();
        started.audit.finish(None, "answered", None);
        Ok(schema)
    }

    /// The granted tables, as [`QueryService::granted_tables`].
    async fn granted(&self, who: &AuthedPrincipal) -> Result<Vec<TableKey>, Status> {
        Ok(self.query.granted_tables(who).await?)
    }

    /// Cancels the queries `info`'s tickets name, if they are the caller's.
    fn cancel(
        &self,
        who: &AuthedPrincipal,
        info: Option<FlightInfo>,
    ) -> Result<CancelStatus, Status> {
        let info = info.ok_or_else(|| invalid("a cancel request without its FlightInfo"))?;
        let mut found = false;
        for e in &info.endpoint {
            let Some(t) = &e.ticket else { continue };
            if let Some(id) = ticket_id(&t.ticket) {
                found |= self.held.cancel(&id, &who.user) == Canceled::Yes;
            }
        }
        if found {
            Ok(CancelStatus::Cancelled)
        } else {
            Err(Status::not_found(
                "no such query of yours is running or waiting (already read, canceled or expired)",
            ))
        }
    }
}

/// The statement id a ticket of this door holds.
fn ticket_id(ticket: &[u8]) -> Option<String> {
    let any = Any::decode(ticket).ok()?;
    let t: TicketStatementQuery = any.unpack().ok()??;
    String::from_utf8(t.statement_handle.to_vec()).ok()
}

/// A `FlightInfo` with one endpoint holding `ticket`.
fn info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
    total_records: i64,
) -> Result<FlightInfo, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("cannot encode the schema: {e}")))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor)
        .with_total_records(total_records)
        .with_ordered(true))
}

/// One metadata batch as a `DoGet` stream.
fn batch_stream(batch: RecordBatch) -> Response<DoGetStream> {
    let schema = batch.schema();
    let s = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::once(async { Ok(batch) }))
        .map_err(Status::from);
    Response::new(Box::pin(s))
}

fn arrow_status(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("cannot build the answer: {e}"))
}

/// SQL `LIKE` with `%` and `_` (Flight SQL's filter patterns), no escape.
fn like(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    // Iterative match with backtracking to the last `%`: linear in practice,
    // never recursive (a hostile pattern cannot blow the stack).
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == '_' || (p[pi] != '%' && p[pi] == s[si])) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '%' {
        pi += 1;
    }
    pi == p.len()
}

/// What a `DoGet` of a held query streams: the held result, the cancel
/// signal, and the guard that forgets the ticket when the stream ends.
struct Feed {
    ready: Box<Ready>,
    cancel: Option<oneshot::Receiver<Ending>>,
    _guard: StreamingGuard,
    done: bool,
}

impl Feed {
    /// The next batch, or the end: every end writes the audit line.
    async fn next(&mut self) -> Option<Result<RecordBatch, FlightError>> {
        if self.done {
            return None;
        }
        if let Some(b) = self.ready.first.take() {
            self.ready.started.audit.rows += b.num_rows() as u64;
            return Some(Ok(b));
        }
        let started = &mut self.ready.started;
        let next = match &mut self.cancel {
            Some(cancel) => tokio::select! {
                biased;
                why = cancel => match why {
                    Ok(ending) => {
                        self.done = true;
                        started.audit.finish(None, ending.outcome, Some(ending.reason));
                        let e = QueryError::new(
                            crate::query::ErrorKind::Canceled,
                            "CANCELED",
                            ending.reason,
                        );
                        return Some(Err(FlightError::Tonic(Box::new(status(&e)))));
                    }
                    Err(_) => {
                        self.cancel = None;
                        started.rows.next_batch().await
                    }
                },
                b = started.rows.next_batch() => b,
            },
            None => started.rows.next_batch().await,
        };
        match next {
            Ok(Some(b)) => {
                started.audit.rows += b.num_rows() as u64;
                Some(Ok(b))
            }
            Ok(None) => {
                self.done = true;
                started.audit.finish(None, "answered", None);
                None
            }
            Err(e) => {
                self.done = true;
                let err = started.scope.user_error(e);
                started.audit.finish(None, "failed", Some(&err.message));
                Some(Err(FlightError::Tonic(Box::new(status(&err)))))
            }
        }
    }
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let token = match auth::credential(request.metadata()) {
            Some(Credential::Basic { user, password }) => {
                self.query.authenticate_user(&user, &password)?;
                password
            }
            Some(Credential::Bearer(t)) => {
                self.query.authenticate(Some(t))?;
                t.to_string()
            }
            None => return Err(QueryError::unauthorized().into()),
        };
        let header = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::from(QueryError::unauthorized()))?;
        let out = futures::stream::iter(vec![Ok(HandshakeResponse {
            protocol_version: 0,
            payload: token.into_bytes().into(),
        })]);
        let mut resp: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(out));
        resp.metadata_mut().insert("authorization", header);
        Ok(resp)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let who = self.who(request.metadata())?;
        let descriptor = request.into_inner();
        Ok(Response::new(
            self.start(&who, &query.query, &[], descriptor).await?,
        ))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let who = self.who(request.metadata())?;
        let handle = String::from_utf8_lossy(&cmd.prepared_statement_handle).into_owned();
        let stmt = self
            .held
            .statement(&handle, &who.user)
            .ok_or_else(|| Status::not_found("no such prepared statement (closed or expired)"))?;
        let descriptor = request.into_inner();
        Ok(Response::new(
            self.start(&who, &stmt.sql, &stmt.params, descriptor)
                .await?,
        ))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let who = self.who(request.metadata())?;
        let id = String::from_utf8_lossy(&ticket.statement_handle).into_owned();
        let (ready, cancel, guard) = self.held.redeem(&id, &who.user).ok_or_else(|| {
            Status::not_found("no such ticket of yours (already read, canceled or expired)")
        })?;
        let schema = ready.started.rows.schema.clone();
        let feed = Feed {
            ready,
            cancel: Some(cancel),
            _guard: guard,
            done: false,
        };
        let batches = futures::stream::unfold(feed, |mut f| async move {
            let item = f.next().await?;
            Some((item, f))
        });
        let s = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(s)))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.who(request.metadata())?;
        let schema = query.into_builder().schema();
        let ticket = query.as_any().encode_to_vec();
        Ok(Response::new(info(
            &schema,
            ticket,
            request.into_inner(),
            -1,
        )?))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let who = self.who(request.metadata())?;
        let mut catalogs: Vec<String> = self
            .granted(&who)
            .await?
            .into_iter()
            .map(|k| k.catalog)
            .collect();
        catalogs.dedup();
        let mut b = query.into_builder();
        for c in catalogs {
            b.append(c);
        }
        Ok(batch_stream(b.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.who(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        let ticket = query.as_any().encode_to_vec();
        Ok(Response::new(info(
            &schema,
            ticket,
            request.into_inner(),
            -1,
        )?))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let who = self.who(request.metadata())?;
        let mut pairs: Vec<(String, String)> = self
            .granted(&who)
            .await?
            .into_iter()
            .map(|k| (k.catalog, k.schema))
            .collect();
        pairs.dedup();
        let mut b = query.into_builder();
        for (c, s) in pairs {
            b.append(c, s);
        }
        Ok(batch_stream(b.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.who(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        let ticket = query.as_any().encode_to_vec();
        Ok(Response::new(info(
            &schema,
            ticket,
            request.into_inner(),
            -1,
        )?))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let who = self.who(request.metadata())?;
        // Filtered here too (the builder filters again), so that schemas are
        // looked up only for the tables answered.
        let types_ok = query.table_types.is_empty()
            || query
                .table_types
                .iter()
                .any(|t| t.eq_ignore_ascii_case("TABLE"));
        let tables: Vec<TableKey> = self
            .granted(&who)
            .await?
            .into_iter()
            .filter(|_| types_ok)
            .filter(|k| query.catalog.as_deref().is_none_or(|c| c == k.catalog))
            .filter(|k| {
                query
                    .db_schema_filter_pattern
                    .as_deref()
                    .is_none_or(|p| like(p, &k.schema))
            })
            .filter(|k| {
                query
                    .table_name_filter_pattern
                    .as_deref()
                    .is_none_or(|p| like(p, &k.table))
            })
            .collect();
        if query.include_schema && tables.len() > MAX_TABLE_SCHEMAS {
            return Err(Status::resource_exhausted(format!(
                "{} tables match: with include_schema at most {MAX_TABLE_SCHEMAS} are answered; narrow the filter",
                tables.len()
            )));
        }
        let include_schema = query.include_schema;
        let mut b = query.into_builder();
        let empty = Schema::empty();
        for k in &tables {
            let schema = if include_schema {
                match self.table_schema(&who, k).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(table = %k, error = %e, "Flight SQL GetTables: no schema for a granted table");
                        Arc::new(Schema::empty())
                    }
                }
            } else {
                Arc::new(empty.clone())
            };
            b.append(&k.catalog, &k.schema, &k.table, "TABLE", &schema)
                .map_err(arrow_status)?;
        }
        Ok(batch_stream(b.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.who(request.metadata())?;
        let schema = query.into_builder().schema();
        let ticket = query.as_any().encode_to_vec();
        Ok(Response::new(info(
            &schema,
            ticket,
            request.into_inner(),
            -1,
        )?))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.who(request.metadata())?;
        let mut b = query.into_builder();
        b.append("TABLE");
        Ok(batch_stream(b.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.who(request.metadata())?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        let ticket = query.as_any().encode_to_vec();
        Ok(Response::new(info(
            &schema,
            ticket,
            request.into_inner(),
            -1,
        )?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.who(request.metadata())?;
        let batch = query
            .into_builder(&self.sql_info)
            .build()
            .map_err(arrow_status)?;
        Ok(batch_stream(batch))
    }

    async fn do_put_statement_update(
        &self,
        _query: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.who(request.metadata())?;
        Err(Status::invalid_argument(
            "SQL_REFUSED: this gateway runs queries only (users read; they never change data)",
        ))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let who = self.who(request.metadata())?;
        if query.transaction_id.is_some() {
            return Err(invalid("transactions are not supported: users read"));
        }
        let handle = uuid::Uuid::new_v4().simple().to_string();
        self.held.prepare(&handle, &who.user, query.query)?;
        // The schemas are learnt when the statement runs: the query path
        // decides them (routing, policy), and a client reads them from the
        // FlightInfo and the stream.
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into_bytes().into(),
            dataset_schema: Default::default(),
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let who = self.who(request.metadata())?;
        let handle = String::from_utf8_lossy(&query.prepared_statement_handle).into_owned();
        self.held.close(&handle, &who.user);
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let who = self.who(request.metadata())?;
        let handle = String::from_utf8_lossy(&query.prepared_statement_handle).into_owned();
        if self.held.statement(&handle, &who.user).is_none() {
            return Err(Status::not_found(
                "no such prepared statement (closed or expired)",
            ));
        }
        let mut messages = 0usize;
        let data = request.into_inner().map_err(FlightError::from);
        let data = data.take_while(move |_| {
            messages += 1;
            futures::future::ready(messages <= MAX_PARAMETER_MESSAGES)
        });
        let mut batches = FlightRecordBatchStream::new_from_flight_data(data);
        let mut got: Vec<RecordBatch> = Vec::new();
        let mut rows = 0usize;
        while let Some(b) = batches.next().await {
            let b = b.map_err(|e| invalid(format!("bad parameter batch: {e}")))?;
            rows += b.num_rows();
            if rows > 1 {
                return Err(invalid(
                    "more than one row of parameters: a query takes one row per execution",
                ));
            }
            if b.num_rows() > 0 {
                got.push(b);
            }
        }
        let values = params::values(&got).map_err(invalid)?;
        if !self.held.bind(&handle, &who.user, values) {
            return Err(Status::not_found(
                "no such prepared statement (closed or expired)",
            ));
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.into_bytes().into()),
        })
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let who = self.who(request.metadata())?;
        let info =
            FlightInfo::decode(query.info).map_err(|e| invalid(format!("bad FlightInfo: {e}")))?;
        self.cancel(&who, Some(info))?;
        Ok(ActionCancelQueryResult {
            result: CANCEL_RESULT_CANCELLED,
        })
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        Some(vec![Ok(ActionType {
            r#type: CANCEL_FLIGHT_INFO.into(),
            description: "Cancels a query: its engine work stops and its ticket is dropped.\n\
                Request Message: CancelFlightInfoRequest\nResponse Message: CancelFlightInfoResult"
                .into(),
        })])
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if request.get_ref().r#type != CANCEL_FLIGHT_INFO {
            return Err(invalid(format!(
                "unknown action {:?}",
                request.get_ref().r#type
            )));
        }
        let who = self.who(request.metadata())?;
        let req = CancelFlightInfoRequest::decode(request.get_ref().body.clone())
            .map_err(|e| invalid(format!("bad CancelFlightInfoRequest: {e}")))?;
        let st = self.cancel(&who, req.info)?;
        let body = CancelFlightInfoResult { status: st as i32 }.encode_to_vec();
        let out = futures::stream::iter(vec![Ok(arrow_flight::Result { body: body.into() })]);
        Ok(Response::new(Box::pin(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_patterns() {
        assert!(like("%", ""));
        assert!(like("peo%", "people"));
        assert!(like("p_ople", "people"));
        assert!(like("%op%", "people"));
        assert!(!like("peo", "people"));
        assert!(!like("x%", "people"));
        assert!(like("%%%e", "people"));
        assert!(!like(&"%a".repeat(200), &"a".repeat(199)));
    }
}
