//! The agent's HTTP/JSON types (docs/api.md), as the client reads and writes them.
//!
//! Owns the field names of every request and response body the client uses; the
//! proto contract (`proto/compute_worker.proto`) mirrors them and a test keeps the two
//! in step. Decoding is tolerant of fields it does not know (newer agents add some)
//! and strict about the ones it needs. Rows are kept as raw JSON cells here; typing
//! them is `value.rs`'s job. Nothing here does I/O.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Body of `POST /execute` and `POST /queries`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryRequest {
    pub sql: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
    /// Values bound to the statement's placeholders; absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub params: Vec<crate::value::Param>,
}

/// 202 of `POST /queries`, and 200 of cancel / delete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdStatus {
    pub query_id: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
}

/// 202 or 200 of `POST /queries?wait_ms=&consume=`: the submit's `query_id` and `status`;
/// once the job ended within the wait also the status fields, and once it
/// succeeded the first page's fields (rows still raw, borrowed from the body).
#[derive(Debug, Deserialize)]
pub struct SubmitAnswer<'a> {
    pub query_id: String,
    pub status: String,
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    #[serde(default)]
    pub column_types: Option<Vec<String>>,
    #[serde(borrow, default)]
    pub rows: Option<Vec<Vec<&'a RawValue>>>,
    #[serde(default)]
    pub row_count: Option<u64>,
    #[serde(default)]
    pub next_page_token: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub completed_at: Option<String>,
    /// True when `consume=true` leaves the job to the agent to drop (no delete
    /// needed: it goes after a short grace that covers a retried submit).
    #[serde(default)]
    pub consumed: bool,
    #[serde(default)]
    pub request_id: Option<String>,
}

/// 200 of `GET /queries/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct QueryStatus {
    pub query_id: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub columns: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub column_types: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub row_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub completed_at: Option<String>,
    /// `"arrow"` for a job that asked for Arrow; absent for JSON jobs.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
}

/// 200 of `GET /queries/{id}/results`, rows still raw (borrowed from the body).
#[derive(Debug, Serialize, Deserialize)]
pub struct ResultsPage<'a> {
    pub query_id: String,
    pub columns: Vec<String>,
    #[serde(default)]
    pub column_types: Option<Vec<String>>,
    #[serde(borrow)]
    pub rows: Vec<Vec<&'a RawValue>>,
    pub row_count: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_page_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
}

/// 200 of `POST /execute`, rows still raw (borrowed from the body).
#[derive(Debug, Serialize, Deserialize)]
pub struct ExecuteResponse<'a> {
    pub columns: Vec<String>,
    #[serde(default)]
    pub column_types: Option<Vec<String>>,
    #[serde(borrow)]
    pub rows: Vec<Vec<&'a RawValue>>,
    pub row_count: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
}

/// Every error answer: `{"error","code","request_id"?}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default)]
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
}

/// 200 of `GET /health`. Counts default to 0 so an older agent's smaller body decodes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Health {
    pub status: String,
    #[serde(default)]
    pub uptime_seconds: u64,
    #[serde(default)]
    pub duckdb_version: String,
    #[serde(default)]
    pub memory_used_mb: u64,
    #[serde(default)]
    pub max_memory_gb: f64,
    #[serde(default)]
    pub active_queries: u64,
    #[serde(default)]
    pub queued_jobs: u64,
    #[serde(default)]
    pub running_jobs: u64,
    #[serde(default)]
    pub completed_jobs: u64,
    #[serde(default)]
    pub stored_jobs: u64,
    #[serde(default)]
    pub cleaned_jobs: u64,
    #[serde(default)]
    pub query_result_ttl_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub shards: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub result_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub version: Option<String>,
}

impl Health {
    /// The load figure used to pick the least-loaded endpoint.
    pub fn load(&self) -> u64 {
        self.queued_jobs.saturating_add(self.active_queries)
    }
}

/// Job statuses (`QUEUED` → `RUNNING` → `SUCCEEDED` | `FAILED` | `CANCELED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl JobState {
    /// Parses the wire form; an unknown status is `None`.
    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "QUEUED" => JobState::Queued,
            "RUNNING" => JobState::Running,
            "SUCCEEDED" => JobState::Succeeded,
            "FAILED" => JobState::Failed,
            "CANCELED" => JobState::Canceled,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "QUEUED",
            JobState::Running => "RUNNING",
            JobState::Succeeded => "SUCCEEDED",
            JobState::Failed => "FAILED",
            JobState::Canceled => "CANCELED",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Canceled
        )
    }
}

/// Page tokens: standard base64 of the decimal row offset (the agent's form).
pub fn page_token(offset: u64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(offset.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_agents_bodies() {
        let p: ResultsPage = serde_json::from_str(
            r#"{"query_id":"q","columns":["a"],"column_types":["INTEGER"],"rows":[[1],[null]],"row_count":2,"extra":1}"#,
        )
        .unwrap();
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.rows[1][0].get(), "null");
        assert!(p.next_page_token.is_none());
        let h: Health = serde_json::from_str(
            r#"{"status":"ok","queued_jobs":3,"active_queries":2,"query_result_ttl_seconds":0.3}"#,
        )
        .unwrap();
        assert_eq!(h.load(), 5);
        assert_eq!(page_token(1000), "MTAwMA==");
        assert!(serde_json::from_str::<QueryStatus>(r#"{"status":"QUEUED"}"#).is_err());
    }
}
