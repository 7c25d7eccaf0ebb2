//! A blocking Flight SQL test client for the gateway's end-to-end tests,
//! built on arrow-flight's own Flight SQL client (tonic) over real TCP: a
//! statement's `GetFlightInfo` then `DoGet` of its endpoints, prepared
//! statements with parameter batches, metadata calls, cancel, handshake.
//! Errors come back as the gRPC [`Status`] the gateway answered.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightInfo, Ticket,
};
use futures::TryStreamExt;
use prost::Message;
use tonic::transport::Channel;
use tonic::Status;

/// The gateway's Flight SQL door at `addr`.
pub struct Flight {
    rt: tokio::runtime::Runtime,
    pub addr: SocketAddr,
}

fn status(e: FlightError) -> Status {
    match e {
        FlightError::Tonic(s) => *s,
        other => Status::unknown(other.to_string()),
    }
}

/// A result as text: column names, and each row's cells as arrow's display
/// writes them (`NULL` for nulls).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

pub fn table(batches: &[RecordBatch], schema_columns: Vec<String>) -> Table {
    let opts = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    let mut columns = schema_columns;
    for b in batches {
        columns = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let cols: Vec<arrow_array::ArrayRef> = b.columns().iter().map(without_zone).collect();
        // A type arrow's display cannot write here (a zone name nested in a
        // list or struct) is written as the array's debug form, row by row.
        let fmts: Vec<Option<ArrayFormatter>> = cols
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).ok())
            .collect();
        for i in 0..b.num_rows() {
            rows.push(
                fmts.iter()
                    .zip(&cols)
                    .map(|(f, c)| match f {
                        Some(f) => f.value(i).to_string(),
                        None => format!("{:?}", c.slice(i, 1)),
                    })
                    .collect(),
            );
        }
    }
    Table { columns, rows }
}

/// A timestamp column with a named zone as the same instants without one
/// (arrow's display needs chrono-tz for zone names; DuckDB exports UTC), so
/// it prints as UTC wall time with a `Z`-less form on both sides compared.
fn without_zone(c: &arrow_array::ArrayRef) -> arrow_array::ArrayRef {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    use arrow_schema::{DataType, TimeUnit};
    match c.data_type() {
        DataType::Timestamp(unit, Some(_)) => match unit {
            TimeUnit::Second => Arc::new(
                c.as_primitive::<TimestampSecondType>()
                    .clone()
                    .with_timezone_opt(None::<String>),
            ),
            TimeUnit::Millisecond => Arc::new(
                c.as_primitive::<TimestampMillisecondType>()
                    .clone()
                    .with_timezone_opt(None::<String>),
            ),
            TimeUnit::Microsecond => Arc::new(
                c.as_primitive::<TimestampMicrosecondType>()
                    .clone()
                    .with_timezone_opt(None::<String>),
            ),
            TimeUnit::Nanosecond => Arc::new(
                c.as_primitive::<TimestampNanosecondType>()
                    .clone()
                    .with_timezone_opt(None::<String>),
            ),
        },
        _ => c.clone(),
    }
}

impl Flight {
    pub fn new(addr: SocketAddr) -> Flight {
        Flight {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            addr,
        }
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A client sending `token` as its bearer token (none: no credential).
    pub fn client(&self, token: Option<&str>) -> FlightSqlServiceClient<Channel> {
        let url = format!("http://{}", self.addr);
        let ch = self.block_on(async {
            Channel::from_shared(url)
                .unwrap()
                .connect()
                .await
                .expect("connect to the Flight SQL door")
        });
        let mut c = FlightSqlServiceClient::new(ch);
        if let Some(t) = token {
            c.set_token(t.to_string());
        }
        c
    }

    /// `GetFlightInfo` of a statement.
    pub fn info(&self, token: Option<&str>, sql: &str) -> Result<FlightInfo, Status> {
        let mut c = self.client(token);
        self.block_on(c.execute(sql.to_string(), None))
            .map_err(status)
    }

    /// `DoGet` of every endpoint of `info`, all batches.
    pub fn fetch(
        &self,
        token: Option<&str>,
        info: &FlightInfo,
    ) -> Result<Vec<RecordBatch>, Status> {
        let mut c = self.client(token);
        self.block_on(async {
            let mut all = Vec::new();
            for e in &info.endpoint {
                let t = e.ticket.clone().expect("a ticket");
                let s = c.do_get(t).await.map_err(status)?;
                let mut b: Vec<RecordBatch> = s.try_collect().await.map_err(status)?;
                all.append(&mut b);
            }
            Ok(all)
        })
    }

    /// `DoGet` of one ticket.
    pub fn fetch_ticket(
        &self,
        token: Option<&str>,
        ticket: Ticket,
    ) -> Result<Vec<RecordBatch>, Status> {
        let mut c = self.client(token);
        self.block_on(async {
            let s = c.do_get(ticket).await.map_err(status)?;
            s.try_collect().await.map_err(status)
        })
    }

    /// A statement's result.
    pub fn query(&self, token: &str, sql: &str) -> Result<Table, Status> {
        let info = self.info(Some(token), sql)?;
        let columns = schema_columns(&info);
        let batches = self.fetch(Some(token), &info)?;
        Ok(table(&batches, columns))
    }

    /// A prepared statement's result, with `params` bound (one row).
    pub fn prepared(
        &self,
        token: &str,
        sql: &str,
        params: Option<RecordBatch>,
    ) -> Result<Table, Status> {
        let mut c = self.client(Some(token));
        let info = self.block_on(async {
            let mut p = c.prepare(sql.to_string(), None).await.map_err(status)?;
            if let Some(b) = params {
                p.set_parameters(b).map_err(status)?;
            }
            let info = p.execute().await.map_err(status);
            let _ = p.close().await;
            info
        })?;
        let columns = schema_columns(&info);
        let batches = self.fetch(Some(token), &info)?;
        Ok(table(&batches, columns))
    }

    /// `CancelFlightInfo` of `info`.
    pub fn cancel(&self, token: &str, info: &FlightInfo) -> Result<CancelStatus, Status> {
        let mut c = self.client(Some(token));
        self.block_on(async {
            let action = Action::new(
                "CancelFlightInfo",
                CancelFlightInfoRequest::new(info.clone()).encode_to_vec(),
            );
            let mut s = c.do_action(action).await.map_err(status)?;
            let r = s
                .message()
                .await?
                .ok_or_else(|| Status::unknown("no answer to CancelFlightInfo"))?;
            let r = CancelFlightInfoResult::decode(r.body)
                .map_err(|e| Status::unknown(e.to_string()))?;
            Ok(r.status())
        })
    }

    /// Handshake with basic auth: the bearer token answered in the
    /// `authorization` header (arrow-flight's own client turns a refusal into
    /// text, so the call is made on the raw gRPC client to keep its status).
    pub fn handshake(&self, user: &str, password: &str) -> Result<String, Status> {
        use base64::Engine;
        let c = self.client(None);
        let mut inner = c.into_inner();
        self.block_on(async {
            let mut req = tonic::Request::new(futures::stream::iter(vec![
                arrow_flight::HandshakeRequest::default(),
            ]));
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            req.metadata_mut()
                .insert("authorization", format!("Basic {basic}").parse().unwrap());
            let resp = inner.handshake(req).await?;
            let auth = resp
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            Ok(auth.strip_prefix("Bearer ").unwrap_or(&auth).to_string())
        })
    }

    fn metadata(
        &self,
        token: &str,
        info: Result<FlightInfo, FlightError>,
    ) -> Result<Table, Status> {
        let info = info.map_err(status)?;
        let columns = schema_columns(&info);
        let batches = self.fetch(Some(token), &info)?;
        Ok(table(&batches, columns))
    }

    pub fn catalogs(&self, token: &str) -> Result<Table, Status> {
        let mut c = self.client(Some(token));
        let info = self.block_on(c.get_catalogs());
        self.metadata(token, info)
    }

    pub fn schemas(&self, token: &str) -> Result<Table, Status> {
        let mut c = self.client(Some(token));
        let info = self.block_on(c.get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        }));
        self.metadata(token, info)
    }

    pub fn tables(&self, token: &str, cmd: CommandGetTables) -> Result<Table, Status> {
        let mut c = self.client(Some(token));
        let info = self.block_on(c.get_tables(cmd));
        self.metadata(token, info)
    }

    /// `GetTables` with schemas: each table's name and its schema's fields
    /// (`name: type`).
    pub fn table_schemas(&self, token: &str) -> Result<Vec<(String, Vec<String>)>, Status> {
        let mut c = self.client(Some(token));
        let info = self
            .block_on(c.get_tables(CommandGetTables {
                include_schema: true,
                ..Default::default()
            }))
            .map_err(status)?;
        let batches = self.fetch(Some(token), &info)?;
        let mut out = Vec::new();
        for b in &batches {
            let names = b
                .column_by_name("table_name")
                .unwrap()
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .unwrap()
                .clone();
            let schemas = b
                .column_by_name("table_schema")
                .unwrap()
                .as_any()
                .downcast_ref::<arrow_array::BinaryArray>()
                .unwrap()
                .clone();
            for i in 0..b.num_rows() {
                let schema =
                    arrow_ipc::convert::try_schema_from_ipc_buffer(schemas.value(i)).unwrap();
                out.push((
                    names.value(i).to_string(),
                    schema
                        .fields()
                        .iter()
                        .map(|f| format!("{}: {}", f.name(), f.data_type()))
                        .collect(),
                ));
            }
        }
        Ok(out)
    }
}

/// The column names of a `FlightInfo`'s schema.
pub fn schema_columns(info: &FlightInfo) -> Vec<String> {
    info.clone()
        .try_decode_schema()
        .map(|s| s.fields().iter().map(|f| f.name().clone()).collect())
        .unwrap_or_default()
}
