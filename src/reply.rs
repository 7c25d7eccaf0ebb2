//! Response bodies: errors, job status, results pages and `/execute` answers, written
//! by hand.
//!
//! Owns the wire contract's field names and the mapping of [`JobError`] to HTTP
//! statuses. Row bytes are never re-encoded and never copied here: `/execute` answers
//! and result pages are three segments (a small head, the rows borrowed from the
//! shared result arena, a small tail), and net writes the rows from the arena with a
//! vectored write. Nothing here blocks, copies a result or touches DuckDB.

use std::ops::Range;
use std::sync::Arc;

use executor::{JobError, JobStatus, Page, QueryId, QueryResult, ResultFormat};
use net::{Response, Segment};

use crate::json::Obj;
use crate::page_token;

/// Seconds a client should wait after 503 SHUTTING_DOWN (another agent will usually answer).
const SHUTDOWN_RETRY_AFTER_S: u32 = 1;

/// `{"error": msg, "code": code, "request_id"?}` with `status`.
pub fn error(status: u16, code: &'static str, msg: &str, rid: Option<&str>) -> Response {
    let mut out = Vec::with_capacity(64 + msg.len());
    Obj::new(&mut out)
        .str("error", msg)
        .str("code", code)
        .opt_str("request_id", rid)
        .finish();
    Response::json(status, out)
}

/// The contract's 401 body.
pub fn unauthorized(rid: Option<&str>) -> Response {
    error(401, "AUTH_ERROR", "unauthorized", rid)
}

/// HTTP status for an executor error.
pub fn job_error_status(e: &JobError) -> u16 {
    match e {
        JobError::NotFound => 404,
        JobError::Invalid(_) => 400,
        JobError::NotReady(_) | JobError::NotAvailable { .. } => 409,
        JobError::Overloaded { .. } => 429,
        // An execution failure is the SQL's fault but the contract says 500; a too-large
        // result and an interrupted /execute are reported the same way so old gateways
        // treat them as failed queries.
        JobError::Execution(_)
        | JobError::ResultTooLarge { .. }
        | JobError::RetainedFull { .. }
        | JobError::Canceled
        | JobError::WorkerFailed(_) => 500,
        JobError::Timeout { .. } => 504,
        JobError::ShuttingDown => 503,
    }
}

/// Maps an executor error to its response (with `Retry-After` where one applies).
pub fn job_error(e: &JobError, rid: Option<&str>) -> Response {
    let msg = match e {
        // The contract: QUERY_NOT_AVAILABLE carries the job's own error text.
        JobError::NotAvailable { message, .. } if !message.is_empty() => message.clone(),
        _ => e.to_string(),
    };
    let resp = error(job_error_status(e), e.code(), &msg, rid);
    match e {
        JobError::Overloaded { retry_after_s } => {
            resp.header("Retry-After", (*retry_after_s).max(1))
        }
        JobError::ShuttingDown => resp.header("Retry-After", SHUTDOWN_RETRY_AFTER_S),
        _ => resp,
    }
}

/// 202 for a submit: `{"query_id","status","request_id"?}`.
pub fn submitted(id: QueryId, status: &str, rid: Option<&str>) -> Response {
    id_status_reply(202, id, status, rid)
}

/// 200 `{"query_id","status","request_id"?}` for cancel and delete.
pub fn id_status(id: QueryId, status: &str, rid: Option<&str>) -> Response {
    id_status_reply(200, id, status, rid)
}

fn id_status_reply(code: u16, id: QueryId, status: &str, rid: Option<&str>) -> Response {
    let mut out = Vec::with_capacity(96);
    Obj::new(&mut out)
        .with("query_id", |o| write_id(o, id))
        .str("status", status)
        .opt_str("request_id", rid)
        .finish();
    Response::json(code, out)
}

/// 200 status body: result metadata once succeeded, error once failed/canceled,
/// `completed_at` once terminal.
pub fn status(st: &JobStatus, rid: Option<&str>) -> Response {
    status_reply(st, false, rid)
}

/// 200 answer to a submit whose job ended within its wait without a page to show
/// (failed, canceled): the status body, and `"consumed": true` when `consume`
/// leaves the job to the agent to drop (no delete needed).
pub fn ended(st: &JobStatus, consumed: bool, rid: Option<&str>) -> Response {
    status_reply(st, consumed, rid)
}

fn status_reply(st: &JobStatus, consumed: bool, rid: Option<&str>) -> Response {
    let mut out = Vec::with_capacity(256);
    let mut o = Obj::new(&mut out);
    o.with("query_id", |o| write_id(o, st.id))
        .str("status", st.status.as_str());
    // Only Arrow jobs say their format: JSON status bodies stay as they were.
    if st.format == ResultFormat::Arrow {
        o.str("format", st.format.as_str());
    }
    if let Some(r) = &st.result {
        o.raw("columns", r.columns_json())
            .raw("column_types", r.column_types_json())
            .u64("row_count", r.row_count() as u64);
    }
    if let Some(e) = &st.error {
        o.str("error", e);
    }
    if let Some(code) = st.error_code {
        o.str("error_code", code);
    }
    if let Some(t) = st.completed_at {
        o.with("completed_at", |o| crate::timefmt::write_rfc3339(o, t));
    }
    if consumed {
        o.raw("consumed", b"true");
    }
    o.opt_str("request_id", rid).finish();
    Response::json(200, out)
}

/// Rows `range` of a shared result, as a body segment that keeps the result alive
/// until net has written it.
struct RowBytes {
    result: Arc<QueryResult>,
    range: Range<usize>,
}

impl AsRef<[u8]> for RowBytes {
    fn as_ref(&self) -> &[u8] {
        self.result.rows_slice(self.range.clone())
    }
}

/// `head` + the rows of `range` + `tail` as one JSON response; the rows are not copied.
fn with_rows(
    head: Vec<u8>,
    result: Arc<QueryResult>,
    range: Range<usize>,
    tail: Vec<u8>,
) -> Response {
    Response::new(200)
        .header("Content-Type", "application/json")
        .segments(vec![
            Segment::from(head),
            Segment::shared(RowBytes { result, range }),
            Segment::from(tail),
        ])
}

/// Appends `,"key":` (the tail of an object whose fields began in another segment).
fn key(out: &mut Vec<u8>, key: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// `],"row_count":n[,"next_page_token":..][,"request_id":..]}`
fn rows_tail(row_count: usize, next: Option<usize>, rid: Option<&str>) -> Vec<u8> {
    let mut tail = Vec::with_capacity(96);
    tail.push(b']');
    key(&mut tail, "row_count");
    crate::json::write_u64(&mut tail, row_count as u64);
    if let Some(end) = next {
        key(&mut tail, "next_page_token");
        crate::json::write_str(&mut tail, &page_token::encode(end));
    }
    if let Some(r) = rid.filter(|r| !r.is_empty()) {
        key(&mut tail, "request_id");
        crate::json::write_str(&mut tail, r);
    }
    tail.push(b'}');
    tail
}

/// 200 results page. `row_count` is the whole result's; `next_page_token` only when
/// rows remain.
pub fn page(id: QueryId, page: &Page, rid: Option<&str>) -> Response {
    let mut head = page_head_buffer(page);
    open_rows(
        Obj::new(&mut head).with("query_id", |o| write_id(o, id)),
        page,
    );
    page_answer(head, page, rid)
}

/// A buffer for a page answer's head (the fields before the rows).
fn page_head_buffer(page: &Page) -> Vec<u8> {
    let r = &page.result;
    Vec::with_capacity(160 + r.columns_json().len() + r.column_types_json().len())
}

/// Appends the page's `columns`, `column_types` and the opening of `rows`.
fn open_rows(o: &mut Obj<'_>, page: &Page) {
    let r = &page.result;
    o.raw("columns", r.columns_json())
        .raw("column_types", r.column_types_json())
        .with("rows", |o| o.push(b'['));
}

/// `head` + the page's rows + the tail (`row_count`, `next_page_token` when rows
/// remain, `request_id`).
fn page_answer(head: Vec<u8>, page: &Page, rid: Option<&str>) -> Response {
    let r = &page.result;
    let next = page.has_more().then_some(page.end);
    let tail = rows_tail(r.row_count(), next, rid);
    with_rows(head, r.clone(), page.offset..page.end, tail)
}

/// 200 answer to a submit that waited for its job to succeed: the status fields
/// (`query_id`, `status`, `completed_at`) and the first page's (`columns`,
/// `column_types`, `rows`, `row_count`, `next_page_token`), in one object, and
/// `"consumed": true` when `consume` leaves the job to the agent to drop.
pub fn finished_with_page(
    st: &JobStatus,
    page: &Page,
    consumed: bool,
    rid: Option<&str>,
) -> Response {
    let mut head = page_head_buffer(page);
    let mut o = Obj::new(&mut head);
    o.with("query_id", |o| write_id(o, st.id))
        .str("status", st.status.as_str());
    if let Some(t) = st.completed_at {
        o.with("completed_at", |o| crate::timefmt::write_rfc3339(o, t));
    }
    if consumed {
        o.raw("consumed", b"true");
    }
    open_rows(&mut o, page);
    page_answer(head, page, rid)
}

/// 200 `/execute` answer: every row of the result.
pub fn executed(r: Arc<QueryResult>, rid: Option<&str>) -> Response {
    let mut head = Vec::with_capacity(64 + r.columns_json().len() + r.column_types_json().len());
    Obj::new(&mut head)
        .raw("columns", r.columns_json())
        .raw("column_types", r.column_types_json())
        .with("rows", |o| o.push(b'['));
    let tail = rows_tail(r.row_count(), None, rid);
    let all = 0..r.row_count();
    with_rows(head, r, all, tail)
}

fn write_id(out: &mut Vec<u8>, id: QueryId) {
    let mut buf = QueryId::encode_buffer();
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
    out.push(b'"');
}
