//! Response bodies: errors, job status, results pages and `/execute` answers, written
//! by hand into one `Vec<u8>` each.
//!
//! Owns the wire contract's field names and the mapping of [`JobError`] to HTTP
//! statuses. Row bytes are copied from the executor's arena (`QueryResult::write_rows`),
//! never re-encoded. Nothing here blocks or touches DuckDB.

use executor::{JobError, JobStatus, Page, QueryId, QueryResult};
use net::Response;

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
    let mut out = Vec::with_capacity(256);
    let mut o = Obj::new(&mut out);
    o.with("query_id", |o| write_id(o, st.id))
        .str("status", st.status.as_str());
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
    o.opt_str("request_id", rid).finish();
    Response::json(200, out)
}

/// 200 results page. `row_count` is the whole result's; `next_page_token` only when
/// rows remain.
pub fn page(id: QueryId, page: &Page, rid: Option<&str>) -> Response {
    let r = &page.result;
    // Exact size of the rows slice: the page is built in one allocation.
    let rows_len = r.rows_json_len(page.offset..page.end);
    let mut out =
        Vec::with_capacity(192 + r.columns_json().len() + r.column_types_json().len() + rows_len);
    let mut o = Obj::new(&mut out);
    o.with("query_id", |o| write_id(o, id))
        .raw("columns", r.columns_json())
        .raw("column_types", r.column_types_json())
        .with("rows", |o| r.write_rows(page.offset..page.end, o))
        .u64("row_count", r.row_count() as u64);
    if page.end < r.row_count() {
        o.str("next_page_token", &page_token::encode(page.end));
    }
    o.opt_str("request_id", rid).finish();
    Response::json(200, out)
}

/// 200 `/execute` answer: every row of the result.
pub fn executed(r: &QueryResult, rid: Option<&str>) -> Response {
    let rows_len = r.rows_json_len(0..r.row_count());
    let mut out =
        Vec::with_capacity(96 + r.columns_json().len() + r.column_types_json().len() + rows_len);
    Obj::new(&mut out)
        .raw("columns", r.columns_json())
        .raw("column_types", r.column_types_json())
        .with("rows", |o| r.write_rows(0..r.row_count(), o))
        .u64("row_count", r.row_count() as u64)
        .opt_str("request_id", rid)
        .finish();
    Response::json(200, out)
}

fn write_id(out: &mut Vec<u8>, id: QueryId) {
    let mut buf = QueryId::encode_buffer();
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
    out.push(b'"');
}
