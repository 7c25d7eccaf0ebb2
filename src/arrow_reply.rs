//! Arrow answers: result pages and `/execute` answers of jobs that asked for
//! Arrow, as one Arrow IPC stream each (`application/vnd.apache.arrow.stream`),
//! with the paging facts in response headers; and the choice of format for a
//! request (`format` in the body, else `Accept` on `/execute`).
//!
//! Owns the Arrow response headers ([`ROW_COUNT_HEADER`],
//! [`NEXT_PAGE_TOKEN_HEADER`], `X-Request-ID`, `X-Query-ID`). Whole stored
//! batches are segments borrowed from the shared result (net writes them
//! from the result with a vectored write, no copy); only a batch a page cuts
//! is re-encoded (at most two per page, of one DuckDB chunk each). Errors
//! stay JSON bodies (`reply.rs`). Nothing here blocks or touches DuckDB.

use std::ops::Range;
use std::sync::Arc;

use executor::{ArrowPart, Page, QueryId, QueryResult, ResultFormat, ARROW_STREAM_MEDIA_TYPE};
use net::{Response, Segment};

use crate::page_token;
use crate::reply;

/// Total rows of the result (not of the page), like JSON's `row_count`.
pub const ROW_COUNT_HEADER: &str = "X-Row-Count";
/// The next page's token, like JSON's `next_page_token`; absent on the last page.
pub const NEXT_PAGE_TOKEN_HEADER: &str = "X-Next-Page-Token";

/// The format of an `/execute` answer: the body's `format` when given, else
/// Arrow when `Accept` names the Arrow stream media type, else JSON.
pub fn execute_format(body_format: Option<ResultFormat>, accepts_arrow: bool) -> ResultFormat {
    match body_format {
        Some(f) => f,
        None if accepts_arrow => ResultFormat::Arrow,
        None => ResultFormat::Json,
    }
}

/// True when an `Accept` value lists the Arrow stream media type (any case,
/// parameters ignored) without `q=0`.
pub fn accepts_arrow(accept: Option<&[u8]>) -> bool {
    let Some(v) = accept.and_then(|a| std::str::from_utf8(a).ok()) else {
        return false;
    };
    v.split(',').any(|entry| {
        let mut parts = entry.split(';');
        let media = parts.next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case(ARROW_STREAM_MEDIA_TYPE) {
            return false;
        }
        !parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .or_else(|| p.strip_prefix("Q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        })
    })
}

/// Arena bytes of a shared Arrow result, kept alive until net has written them.
struct ArenaBytes {
    result: Arc<QueryResult>,
    range: Range<usize>,
}

impl AsRef<[u8]> for ArenaBytes {
    fn as_ref(&self) -> &[u8] {
        match self.result.arrow() {
            Some(a) => &a.arena()[self.range.clone()],
            None => &[],
        }
    }
}

/// The schema message of a shared Arrow result.
struct SchemaBytes(Arc<QueryResult>);

impl AsRef<[u8]> for SchemaBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.arrow().map_or(&[], |a| a.schema_ipc())
    }
}

/// 200 with rows `range` of `result` as one IPC stream.
fn stream(
    result: &Arc<QueryResult>,
    range: Range<usize>,
    next: Option<usize>,
    rid: Option<&str>,
) -> Response {
    let Some(arrow) = result.arrow() else {
        return reply::error(
            500,
            "INTERNAL_ERROR",
            "the result is not kept as Arrow",
            rid,
        );
    };
    let parts = match arrow.page_parts(range) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(request_id = rid.unwrap_or(""), error = %e, "arrow page failed");
            return reply::error(
                500,
                "INTERNAL_ERROR",
                &format!("the Arrow page could not be encoded: {e}"),
                rid,
            );
        }
    };
    let segments = parts
        .into_iter()
        .map(|p| match p {
            ArrowPart::Schema => Segment::shared(SchemaBytes(result.clone())),
            ArrowPart::Stored(range) => Segment::shared(ArenaBytes {
                result: result.clone(),
                range,
            }),
            ArrowPart::Encoded(bytes) => Segment::from(bytes),
            ArrowPart::End => Segment::from(&executor::IPC_END_OF_STREAM[..]),
        })
        .collect();
    let mut resp = Response::new(200)
        .header("Content-Type", ARROW_STREAM_MEDIA_TYPE)
        .header(ROW_COUNT_HEADER, result.row_count() as u64)
        .segments(segments);
    if let Some(end) = next {
        resp = resp.header(NEXT_PAGE_TOKEN_HEADER, page_token::encode(end));
    }
    if let Some(r) = rid.filter(|r| !r.is_empty()) {
        resp = resp.header("X-Request-ID", r.to_string());
    }
    resp
}

/// 200 results page of an Arrow job.
pub fn page(id: QueryId, page: &Page, rid: Option<&str>) -> Response {
    let next = page.has_more().then_some(page.end);
    let mut buf = QueryId::encode_buffer();
    let id = id.hyphenated().encode_lower(&mut buf).to_string();
    stream(&page.result, page.offset..page.end, next, rid).header("X-Query-ID", id)
}

/// 200 `/execute` answer of an Arrow statement: every row.
pub fn executed(r: Arc<QueryResult>, rid: Option<&str>) -> Response {
    let all = 0..r.row_count();
    stream(&r, all, None, rid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_values() {
        let a = |s: &str| accepts_arrow(Some(s.as_bytes()));
        assert!(a("application/vnd.apache.arrow.stream"));
        assert!(a(
            "application/json, application/vnd.apache.arrow.stream;q=0.9"
        ));
        assert!(a("Application/Vnd.Apache.Arrow.Stream"));
        assert!(!a("application/json"));
        assert!(!a("*/*"));
        assert!(!a("application/vnd.apache.arrow.stream;q=0"));
        assert!(!a("application/vnd.apache.arrow.file"));
        assert!(!accepts_arrow(None));
        assert_eq!(execute_format(None, true), ResultFormat::Arrow);
        assert_eq!(
            execute_format(Some(ResultFormat::Json), true),
            ResultFormat::Json
        );
        assert_eq!(execute_format(None, false), ResultFormat::Json);
    }
}
