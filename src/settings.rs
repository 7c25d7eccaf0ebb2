//! `GET|PATCH /admin/settings`: the settings an operator may change on a
//! running agent, today the retention pair (`QUERY_RESULT_TTL`,
//! `QUERY_CLEANUP_INTERVAL`), the runbook's remedy for memory pressure.
//!
//! Owns parsing and validating a change (all fields or none: a bad value
//! leaves every setting as it was) and reporting the values in force. The
//! change itself belongs to the engine ([`executor::Engine::set_retention`]),
//! which applies it at once to every retained job. Authenticated like every
//! route but `/health` and `/metrics`; never touches DuckDB.

use std::time::Duration;

use net::{Request, Response};
use simd_json::prelude::*;

use crate::duration::parse_go_duration;
use crate::json::Obj;
use crate::reply;
use crate::state::Shared;

/// Answers `GET` with the values in force, `PATCH` by applying a change first.
pub fn handle(shared: &Shared, req: &mut Request<'_>, rid: Option<&str>) -> Response {
    if req.method() == "PATCH" {
        let change = match parse_change(req.body_mut()) {
            Ok(c) => c,
            Err(msg) => return reply::error(400, "VALIDATION_ERROR", &msg, rid),
        };
        if let Err(e) = shared.engine.set_retention(change.ttl, change.interval) {
            return reply::error(400, "VALIDATION_ERROR", &e.to_string(), rid);
        }
        tracing::info!(
            query_result_ttl = ?shared.engine.result_ttl(),
            query_cleanup_interval = ?shared.engine.cleanup_interval(),
            request_id = rid.unwrap_or(""),
            "retention settings changed"
        );
    }
    let mut out = Vec::with_capacity(160);
    Obj::new(&mut out)
        .u64(
            "query_result_ttl_ms",
            shared.engine.result_ttl().as_millis() as u64,
        )
        .u64(
            "query_cleanup_interval_ms",
            shared.engine.cleanup_interval().as_millis() as u64,
        )
        .opt_str("request_id", rid)
        .finish();
    Response::json(200, out)
}

/// A validated change; `None` leaves a setting as it is.
#[derive(Debug, PartialEq, Eq)]
pub struct Change {
    pub ttl: Option<Duration>,
    pub interval: Option<Duration>,
}

/// `{"query_result_ttl": "5m", "query_cleanup_interval": "10s"}`, either or
/// both, Go durations as in the environment. Unknown fields are refused so a
/// typo never reads as "nothing to change".
pub fn parse_change(body: &mut [u8]) -> Result<Change, String> {
    let value = simd_json::to_borrowed_value(body)
        .map_err(|e| format!("request body is not valid JSON: {e}"))?;
    let Some(obj) = value.as_object() else {
        return Err("request body must be a JSON object".into());
    };
    let mut change = Change {
        ttl: None,
        interval: None,
    };
    for (k, v) in obj.iter() {
        let slot = match k.as_ref() {
            "query_result_ttl" => &mut change.ttl,
            "query_cleanup_interval" => &mut change.interval,
            "request_id" => continue,
            other => {
                return Err(format!(
                    "unknown setting {other:?}: expected query_result_ttl and/or query_cleanup_interval"
                ))
            }
        };
        let text = v
            .as_str()
            .ok_or_else(|| format!("{k} must be a Go duration string such as \"5m\""))?;
        let d = parse_go_duration(text.trim()).map_err(|e| format!("invalid {k}={text:?}: {e}"))?;
        if d.as_millis() == 0 {
            return Err(format!("invalid {k}={text:?}: must be at least 1ms"));
        }
        *slot = Some(d);
    }
    if change.ttl.is_none() && change.interval.is_none() {
        return Err(
            "nothing to change: give query_result_ttl and/or query_cleanup_interval".into(),
        );
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Change, String> {
        parse_change(&mut s.as_bytes().to_vec())
    }

    #[test]
    fn changes() {
        assert_eq!(
            parse(r#"{"query_result_ttl":"5m","query_cleanup_interval":"250ms"}"#),
            Ok(Change {
                ttl: Some(Duration::from_secs(300)),
                interval: Some(Duration::from_millis(250))
            })
        );
        assert_eq!(
            parse(r#"{"query_cleanup_interval":"1s"}"#).unwrap().ttl,
            None
        );
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"query_result_ttl":"0s"}"#,
            r#"{"query_result_ttl":"-5m"}"#,
            r#"{"query_result_ttl":300}"#,
            r#"{"query_result_ttl":"5 minutes"}"#,
            r#"{"query_result_tll":"5m"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
