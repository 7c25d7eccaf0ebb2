//! Request bodies of `POST /execute` and `POST /queries`: `{"sql": "...", "request_id": "...",
//! "timeout_ms": n, "format": "json"|"arrow", "params": [...]}`,
//! parsed in place with simd-json.
//!
//! Owns body validation and its error kinds. The returned strings borrow the request
//! buffer; nothing here allocates per field unless JSON escapes force a copy.

use std::borrow::Cow;

use executor::params::{Param, Params};
use executor::ResultFormat;
use simd_json::prelude::*;

/// A validated query body.
#[derive(Debug)]
pub struct QueryBody<'a> {
    pub sql: Cow<'a, str>,
    pub request_id: Option<Cow<'a, str>>,
    /// `timeout_ms`: the caller's timeout, capped by `QUERY_TIMEOUT` downstream.
    pub timeout: Option<std::time::Duration>,
    /// `format`: `"json"` or `"arrow"`; `None` when absent (the route decides).
    pub format: Option<ResultFormat>,
    /// `params`: values bound to the statement's placeholders (`$1`, `?`),
    /// in order; empty when absent.
    pub params: Params,
}

/// Why a body was rejected: `Parse` is 400 PARSE_ERROR, the rest 400 VALIDATION_ERROR.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body is not valid JSON: {0}")]
    Parse(String),
    #[error("request body must be a JSON object")]
    NotObject,
    #[error("sql is required")]
    MissingSql,
    #[error("sql must be a string")]
    SqlNotString,
    #[error("sql must not be empty")]
    EmptySql,
    #[error("request_id must be a string")]
    RequestIdNotString,
    #[error("timeout_ms must be a positive integer of milliseconds")]
    BadTimeout,
    #[error("format must be \"json\" or \"arrow\"")]
    BadFormat,
    #[error("params must be an array of JSON scalars (null, booleans, numbers, strings), at most {MAX_PARAMS}")]
    BadParams,
}

/// Most parameters one statement may carry.
pub const MAX_PARAMS: usize = 65_535;

impl BodyError {
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::Parse(_) => "PARSE_ERROR",
            _ => "VALIDATION_ERROR",
        }
    }
}

/// A rejected body, with the body's `request_id` when it had one, so the error
/// response can still echo it.
#[derive(Debug)]
pub struct Rejected {
    pub error: BodyError,
    pub request_id: Option<String>,
}

fn take_str(v: simd_json::BorrowedValue<'_>) -> Option<Cow<'_, str>> {
    match v {
        simd_json::BorrowedValue::String(s) => Some(s),
        _ => None,
    }
}

/// Parses and validates a query body. simd-json rewrites `body` while parsing.
pub fn parse_query(body: &mut [u8]) -> Result<QueryBody<'_>, Rejected> {
    let reject = |error, request_id: Option<&Cow<'_, str>>| Rejected {
        error,
        request_id: request_id.filter(|r| !r.is_empty()).map(|r| r.to_string()),
    };
    let value = simd_json::to_borrowed_value(body)
        .map_err(|e| reject(BodyError::Parse(e.to_string()), None))?;
    let simd_json::BorrowedValue::Object(mut obj) = value else {
        return Err(reject(BodyError::NotObject, None));
    };
    let request_id = match obj.remove("request_id") {
        None => None,
        Some(v) if v.is_null() => None,
        Some(v) => Some(take_str(v).ok_or_else(|| reject(BodyError::RequestIdNotString, None))?),
    };
    let request_id = request_id.filter(|r| !r.is_empty());
    let sql = match obj.remove("sql") {
        None => return Err(reject(BodyError::MissingSql, request_id.as_ref())),
        Some(v) if v.is_null() => return Err(reject(BodyError::MissingSql, request_id.as_ref())),
        Some(v) => match take_str(v) {
            Some(s) => s,
            None => return Err(reject(BodyError::SqlNotString, request_id.as_ref())),
        },
    };
    if sql.trim().is_empty() {
        return Err(reject(BodyError::EmptySql, request_id.as_ref()));
    }
    let timeout = match obj.remove("timeout_ms") {
        None => None,
        Some(v) if v.is_null() => None,
        Some(v) => match (v.as_u64(), v.as_f64()) {
            (Some(ms), _) if ms > 0 => Some(std::time::Duration::from_millis(ms)),
            // Larger than u64 milliseconds: no practical limit, like an overflowing
            // max_results is capped rather than refused.
            (None, Some(f)) if f >= u64::MAX as f64 => {
                Some(std::time::Duration::from_millis(u64::MAX))
            }
            _ => return Err(reject(BodyError::BadTimeout, request_id.as_ref())),
        },
    };
    let format = match obj.remove("format") {
        None => None,
        Some(v) if v.is_null() => None,
        Some(v) => match v.as_str().and_then(ResultFormat::parse) {
            Some(f) => Some(f),
            None => return Err(reject(BodyError::BadFormat, request_id.as_ref())),
        },
    };
    let params = match obj.remove("params") {
        None => Params::default(),
        Some(v) if v.is_null() => Params::default(),
        Some(simd_json::BorrowedValue::Array(items)) if items.len() <= MAX_PARAMS => {
            let mut out = Vec::with_capacity(items.len());
            for item in items.iter() {
                out.push(
                    param_of(item)
                        .ok_or_else(|| reject(BodyError::BadParams, request_id.as_ref()))?,
                );
            }
            Params::from(out)
        }
        Some(_) => return Err(reject(BodyError::BadParams, request_id.as_ref())),
    };
    Ok(QueryBody {
        sql,
        request_id,
        timeout,
        format,
        params,
    })
}

/// One parameter from its JSON scalar; `None` for an array or object.
fn param_of(v: &simd_json::BorrowedValue<'_>) -> Option<Param> {
    if v.is_null() {
        return Some(Param::Null);
    }
    if let Some(b) = v.as_bool() {
        return Some(Param::Bool(b));
    }
    if let Some(i) = v.as_i64() {
        return Some(Param::Int(i));
    }
    if let Some(f) = v.as_f64() {
        return Some(Param::Float(f));
    }
    v.as_str().map(|s| Param::Text(s.to_string()))
}

/// Best-effort `request_id` of an optional body (e.g. `POST .../cancel`): anything
/// that is not an object with a string `request_id` yields `None`.
pub fn request_id_only(body: &mut [u8]) -> Option<String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let value = simd_json::to_borrowed_value(body).ok()?;
    let s = value.get("request_id")?.as_str()?;
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(String, Option<String>), &'static str> {
        let mut b = s.as_bytes().to_vec();
        parse_query(&mut b)
            .map(|q| (q.sql.into_owned(), q.request_id.map(Cow::into_owned)))
            .map_err(|e| e.error.code())
    }

    #[test]
    fn bodies() {
        assert_eq!(
            parse(r#"{"sql":"SELECT 1"}"#),
            Ok(("SELECT 1".into(), None))
        );
        assert_eq!(
            parse(r#"{"sql":"SELECT '\"x\n'","request_id":"r1"}"#),
            Ok(("SELECT '\"x\n'".into(), Some("r1".into())))
        );
        assert_eq!(
            parse(r#"{"sql":"SELECT 1","request_id":""}"#),
            Ok(("SELECT 1".into(), None))
        );
        assert_eq!(parse(r#"{"sql":"S\u00e9"}"#), Ok(("Sé".into(), None)));
        assert_eq!(parse(""), Err("PARSE_ERROR"));
        assert_eq!(parse("{"), Err("PARSE_ERROR"));
        assert_eq!(parse(r#"{"sql":"x"} trailing"#), Err("PARSE_ERROR"));
        assert_eq!(parse("[1]"), Err("VALIDATION_ERROR"));
        assert_eq!(parse("{}"), Err("VALIDATION_ERROR"));
        assert_eq!(parse(r#"{"sql":""}"#), Err("VALIDATION_ERROR"));
        assert_eq!(parse(r#"{"sql":"  "}"#), Err("VALIDATION_ERROR"));
        assert_eq!(parse(r#"{"sql":5}"#), Err("VALIDATION_ERROR"));
        assert_eq!(parse(r#"{"sql":null}"#), Err("VALIDATION_ERROR"));
        assert_eq!(
            parse(r#"{"sql":"x","request_id":7}"#),
            Err("VALIDATION_ERROR")
        );
    }

    #[test]
    fn formats() {
        let format = |s: &str| {
            let mut b = s.as_bytes().to_vec();
            parse_query(&mut b)
                .map(|q| q.format)
                .map_err(|e| e.error.code())
        };
        assert_eq!(format(r#"{"sql":"SELECT 1"}"#), Ok(None));
        assert_eq!(format(r#"{"sql":"SELECT 1","format":null}"#), Ok(None));
        assert_eq!(
            format(r#"{"sql":"SELECT 1","format":"arrow"}"#),
            Ok(Some(ResultFormat::Arrow))
        );
        assert_eq!(
            format(r#"{"sql":"SELECT 1","format":"json"}"#),
            Ok(Some(ResultFormat::Json))
        );
        for bad in [r#""ARROW""#, r#""csv""#, "1", "true", "[]"] {
            assert_eq!(
                format(&format!(r#"{{"sql":"SELECT 1","format":{bad}}}"#)),
                Err("VALIDATION_ERROR"),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejection_keeps_request_id() {
        let mut b = br#"{"request_id":"r9","sql":""}"#.to_vec();
        let r = parse_query(&mut b).unwrap_err();
        assert_eq!(r.request_id.as_deref(), Some("r9"));
        assert_eq!(r.error.code(), "VALIDATION_ERROR");
    }

    #[test]
    fn optional_request_id() {
        assert_eq!(request_id_only(&mut b"".to_vec()), None);
        assert_eq!(request_id_only(&mut b"nonsense".to_vec()), None);
        assert_eq!(
            request_id_only(&mut br#"{"request_id":"abc"}"#.to_vec()),
            Some("abc".into())
        );
    }
}
