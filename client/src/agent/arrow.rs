//! Arrow results from an agent: [`AgentClient::run_arrow`] asks for Arrow when
//! the agent offers it and hands back record batches page by page
//! ([`ArrowPages`]), or typed rows ([`QueryRows`]) from an agent without Arrow.
//!
//! Owns the Arrow request forms (`"format": "arrow"` in the body), reading an
//! answer's IPC stream and its paging headers, and remembering per endpoint
//! that an agent has no Arrow: one that answers 400 to the format (nothing
//! ran; the statement is sent again as JSON), or an older one that ignores
//! the field (its job is JSON: the rows are read as JSON, the statement is
//! never run twice). Like the rest of the client it never runs a statement
//! twice and bounds every answer it buffers.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use http::Method;
use tokio::sync::mpsc;

use super::{fetch_pages, AgentClient, Reply};
use crate::batches::ArrowBatches;
use crate::error::ClientError;
use crate::rows::{QueryRows, Via, PAGES_BUFFERED};
use crate::value::{decode_rows, ColumnType};
use crate::wire::{ExecuteResponse, IdStatus, JobState, QueryStatus};

/// The Arrow IPC stream media type (the agent's `Content-Type` for Arrow answers).
pub const ARROW_STREAM_MEDIA_TYPE: &str = "application/vnd.apache.arrow.stream";
/// Total rows of the result, on every Arrow answer.
pub const ROW_COUNT_HEADER: &str = "x-row-count";
/// The next page's token; absent on the last page.
pub const NEXT_PAGE_TOKEN_HEADER: &str = "x-next-page-token";

/// What [`AgentClient::run_arrow`] got: Arrow from an agent that offers it,
/// typed rows from one that does not.
pub enum ArrowRun {
    Arrow(ArrowPages),
    Rows(QueryRows),
}

/// "This endpoint has no Arrow", remembered until a time (like lifecycle routes).
#[derive(Default)]
pub(super) struct NoArrow(Mutex<Option<Instant>>);

impl NoArrow {
    fn active(&self) -> bool {
        self.0
            .lock()
            .map(|g| g.is_some_and(|t| Instant::now() < t))
            .unwrap_or(false)
    }
}

/// An Arrow result read page by page. Dropping it before the last page
/// cancels and deletes the job on the agent.
pub struct ArrowPages {
    client: AgentClient,
    /// The job, while pages remain (`None` for `/execute`, or once done).
    id: Option<String>,
    deadline: Instant,
    schema: Option<SchemaRef>,
    row_count: Option<u64>,
    /// The token of the next page; `None` before the first.
    token: Option<String>,
    /// An `/execute` answer: every batch at once.
    whole: Option<Vec<RecordBatch>>,
    done: bool,
    pub via: Via,
}

impl ArrowPages {
    /// Total rows of the result (known from the status or the first answer).
    pub fn row_count(&self) -> Option<u64> {
        self.row_count
    }

    /// The schema, once the first page (or the `/execute` answer) is read.
    pub fn schema(&self) -> Option<&SchemaRef> {
        self.schema.as_ref()
    }

    /// The next page's batches; `None` after the last. The job is deleted
    /// once its last page is read.
    pub async fn next_batches(&mut self) -> Result<Option<Vec<RecordBatch>>, ClientError> {
        if let Some(all) = self.whole.take() {
            self.done = true;
            return Ok(Some(all));
        }
        if self.done {
            return Ok(None);
        }
        let Some(id) = self.id.clone() else {
            self.done = true;
            return Ok(None);
        };
        match self.fetch(&id).await {
            Ok(batches) => Ok(Some(batches)),
            Err(e) => {
                self.done = true;
                self.id = None;
                self.client.cancel_and_delete(&id).await;
                Err(e)
            }
        }
    }

    async fn fetch(&mut self, id: &str) -> Result<Vec<RecordBatch>, ClientError> {
        let c = &self.client;
        let path = c.job_path(id, "/results")?;
        let mut query = format!("max_results={}", c.inner.cfg.page_size.clamp(1, 5000));
        if let Some(t) = &self.token {
            query.push_str("&page_token=");
            super::percent_encode_into(t, &mut query);
        }
        let r = c
            .bare(Method::GET, &path, &query, Duration::ZERO, self.deadline)
            .await?;
        if r.status != 200 {
            return Err(c.error_of(&r, &format!("results of query {id}")));
        }
        let (schema, batches) = c.read_arrow(&r)?;
        self.schema.get_or_insert(schema);
        if let Some(n) = header_u64(&r, ROW_COUNT_HEADER) {
            self.row_count = Some(n);
        }
        match header_str(&r, NEXT_PAGE_TOKEN_HEADER) {
            Some(t) => self.token = Some(t),
            None => {
                self.done = true;
                self.id = None;
                let _ = c.delete(id, c.cleanup_deadline()).await;
            }
        }
        Ok(batches)
    }

    /// Every remaining batch.
    pub async fn collect(mut self) -> Result<Vec<RecordBatch>, ClientError> {
        let mut all = Vec::new();
        while let Some(b) = self.next_batches().await? {
            all.extend(b);
        }
        Ok(all)
    }
}

impl Drop for ArrowPages {
    fn drop(&mut self) {
        if let (Some(id), Ok(rt)) = (self.id.take(), tokio::runtime::Handle::try_current()) {
            let c = self.client.clone();
            rt.spawn(async move { c.cancel_and_delete(&id).await });
        }
    }
}

fn header_str(r: &Reply, name: &str) -> Option<String> {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn header_u64(r: &Reply, name: &str) -> Option<u64> {
    header_str(r, name).and_then(|v| v.trim().parse().ok())
}

fn is_arrow(r: &Reply) -> bool {
    header_str(r, "content-type").is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case(ARROW_STREAM_MEDIA_TYPE))
    })
}

/// True for the 400 an agent gives a body field it refuses (here: `format`).
fn refuses_format(c: &AgentClient, r: &Reply) -> bool {
    r.status == 400
        && matches!(c.error_of(r, ""), ClientError::BadRequest { ref code, .. } if code == "VALIDATION_ERROR")
}

impl AgentClient {
    /// [`Executor::run_arrow`](crate::Executor::run_arrow) on an agent: its
    /// own Arrow pages, the first one read before this returns (so the
    /// schema is known and an early error is this call's). The agent's HTTP
    /// contract carries no parameter values, so a statement with parameters
    /// is refused before anything is sent; and an agent that answers JSON
    /// (one without Arrow results) is an error, never converted.
    pub async fn run_arrow_batches(
        &self,
        sql: &str,
        params: &[crate::value::Value],
        deadline: Instant,
    ) -> Result<ArrowBatches, ClientError> {
        if !params.is_empty() {
            return Err(ClientError::BadRequest {
                endpoint: self.endpoint(),
                code: "PARAMETERS_UNSUPPORTED".into(),
                message: "the agent's HTTP contract has no parameter values: statements with \
                          bound parameters run on local compute only"
                    .into(),
            });
        }
        match self.run_arrow(sql, deadline).await? {
            ArrowRun::Arrow(mut pages) => {
                // The statement was queued: no error from here proves otherwise.
                let first = pages
                    .next_batches()
                    .await
                    .map_err(ClientError::after_queued)?
                    .unwrap_or_default();
                let Some(schema) = pages.schema().cloned() else {
                    return Err(ClientError::Protocol {
                        endpoint: self.endpoint(),
                        message: "an Arrow result without a schema".into(),
                    });
                };
                Ok(ArrowBatches::from_agent(schema, pages, first))
            }
            ArrowRun::Rows(rows) => {
                // The job ran as JSON: let it be deleted, and say why.
                tokio::spawn(rows.close());
                Err(ClientError::Protocol {
                    endpoint: self.endpoint(),
                    message: "the agent answered JSON rows, not Arrow: it has no Arrow results \
                              (an older agent); Arrow clients need an agent that offers them"
                        .into(),
                })
            }
        }
    }

    /// Whether `run_arrow` will ask this agent for Arrow (no recent answer
    /// that it has none).
    pub fn offers_arrow(&self) -> bool {
        !self.inner.no_arrow.active()
    }

    fn remember_no_arrow(&self) {
        let t = Instant::now() + self.inner.cfg.lifecycle_recheck;
        if let Ok(mut g) = self.inner.no_arrow.0.lock() {
            *g = Some(t);
        }
        tracing::info!(endpoint = %self.inner.cfg.name, "agent has no Arrow results; using JSON");
    }

    /// Reads an Arrow answer's IPC stream.
    fn read_arrow(&self, r: &Reply) -> Result<(SchemaRef, Vec<RecordBatch>), ClientError> {
        let bad = |m: String| ClientError::Protocol {
            endpoint: self.endpoint(),
            message: m,
        };
        if !is_arrow(r) {
            return Err(bad("expected an Arrow IPC stream".into()));
        }
        let reader = StreamReader::try_new(std::io::Cursor::new(r.body.clone()), None)
            .map_err(|e| bad(format!("bad Arrow stream: {e}")))?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("bad Arrow stream: {e}")))?;
        Ok((schema, batches))
    }

    fn query_body(&self, sql: &str, request_id: &str, arrow: bool) -> Result<Bytes, ClientError> {
        let mut v = serde_json::json!({ "sql": sql, "request_id": request_id });
        if arrow {
            v["format"] = serde_json::json!("arrow");
        }
        serde_json::to_vec(&v)
            .map(Bytes::from)
            .map_err(|e| self.bad_json(e))
    }

    /// Runs one statement asking for Arrow: the job lifecycle (or `/execute`
    /// on an agent without it), pages read as the caller asks for them.
    /// Falls back to JSON rows on an agent without Arrow, remembered per
    /// endpoint. Past `deadline`, or when the answer is dropped early, the
    /// job is canceled and deleted on the agent.
    pub async fn run_arrow(&self, sql: &str, deadline: Instant) -> Result<ArrowRun, ClientError> {
        if !self.offers_arrow() {
            return self.run(sql, deadline).await.map(ArrowRun::Rows);
        }
        let request_id = uuid::Uuid::new_v4().to_string();
        if !self.uses_lifecycle() {
            return self.execute_arrow(sql, &request_id, deadline).await;
        }
        let body = self.query_body(sql, &request_id, true)?;
        let r = loop {
            let r = self
                .call(
                    Method::POST,
                    "/queries",
                    "",
                    body.clone(),
                    Some(&request_id),
                    Some(Duration::ZERO),
                    deadline,
                )
                .await?;
            match r.status {
                200 | 202 => break r,
                404 | 405 => {
                    self.remember_no_lifecycle();
                    return self.execute_arrow(sql, &request_id, deadline).await;
                }
                _ if refuses_format(self, &r) => {
                    // Nothing was queued: ask again as JSON.
                    self.remember_no_arrow();
                    return self.run(sql, deadline).await.map(ArrowRun::Rows);
                }
                _ => {
                    let e = self.error_of(&r, "POST /queries");
                    self.wait_retry_after(e, deadline).await?;
                }
            }
        };
        let s: IdStatus = serde_json::from_slice(&r.body).map_err(|e| self.bad_json(e))?;
        let id = s.query_id;
        let st = match self.wait_terminal(&id, deadline).await {
            Ok(st) => st,
            Err(e) => {
                self.cancel_and_delete(&id).await;
                return Err(e.after_queued());
            }
        };
        match JobState::parse(&st.status) {
            Some(JobState::Succeeded) if st.format.as_deref() == Some("arrow") => {
                Ok(ArrowRun::Arrow(ArrowPages {
                    client: self.clone(),
                    id: Some(id),
                    deadline,
                    schema: None,
                    row_count: st.row_count,
                    token: None,
                    whole: None,
                    done: false,
                    via: Via::Lifecycle,
                }))
            }
            Some(JobState::Succeeded) => {
                // An older agent ignored the format: its job is JSON.
                self.remember_no_arrow();
                Ok(ArrowRun::Rows(self.json_job_rows(id, st, deadline)))
            }
            state => {
                let _ = self.delete(&id, self.cleanup_deadline()).await;
                let message = st.error.unwrap_or_default();
                Err(if state == Some(JobState::Canceled) {
                    ClientError::Canceled { message }
                } else {
                    ClientError::Execution {
                        code: st.error_code.unwrap_or_else(|| "EXECUTION_ERROR".into()),
                        message,
                    }
                })
            }
        }
    }

    /// The rows of a succeeded JSON job, streamed (the job is deleted when read).
    fn json_job_rows(&self, id: String, st: QueryStatus, deadline: Instant) -> QueryRows {
        let column_types = st.column_types.unwrap_or_default();
        let types: Vec<ColumnType> = column_types.iter().map(|t| ColumnType::parse(t)).collect();
        let (tx, rx) = mpsc::channel(PAGES_BUFFERED);
        let task = tokio::spawn(fetch_pages(
            self.clone(),
            id.clone(),
            types,
            None,
            deadline,
            tx,
        ));
        QueryRows::streamed(
            st.columns.unwrap_or_default(),
            column_types,
            st.row_count,
            Some(id),
            Via::Lifecycle,
            rx,
        )
        .with_task(task)
    }

    /// `POST /execute` asking for Arrow. A 400 to the format (nothing ran) is
    /// asked again as JSON; a JSON answer (an agent that ignores the format)
    /// is read as rows.
    async fn execute_arrow(
        &self,
        sql: &str,
        request_id: &str,
        deadline: Instant,
    ) -> Result<ArrowRun, ClientError> {
        let body = self.query_body(sql, request_id, true)?;
        loop {
            let r = self
                .call(
                    Method::POST,
                    "/execute",
                    "",
                    body.clone(),
                    Some(request_id),
                    None,
                    deadline,
                )
                .await?;
            if r.status == 200 && is_arrow(&r) {
                let (schema, batches) = self.read_arrow(&r)?;
                return Ok(ArrowRun::Arrow(ArrowPages {
                    client: self.clone(),
                    id: None,
                    deadline,
                    schema: Some(schema),
                    row_count: header_u64(&r, ROW_COUNT_HEADER),
                    token: None,
                    whole: Some(batches),
                    done: false,
                    via: Via::Execute,
                }));
            }
            if r.status == 200 {
                self.remember_no_arrow();
                let e: ExecuteResponse =
                    serde_json::from_slice(&r.body).map_err(|e| self.bad_json(e))?;
                let column_types = e.column_types.unwrap_or_default();
                let types: Vec<ColumnType> =
                    column_types.iter().map(|t| ColumnType::parse(t)).collect();
                let rows = decode_rows(&types, &e.rows);
                return Ok(ArrowRun::Rows(QueryRows::complete(
                    e.columns,
                    column_types,
                    rows,
                    Via::Execute,
                )));
            }
            if refuses_format(self, &r) {
                self.remember_no_arrow();
                return self
                    .execute(sql, &[], request_id, deadline)
                    .await
                    .map(ArrowRun::Rows);
            }
            let e = self.error_of(&r, "POST /execute");
            self.wait_retry_after(e, deadline).await?;
        }
    }
}
