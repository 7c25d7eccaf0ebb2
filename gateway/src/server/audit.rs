//! The audit trail: one structured JSON log line per query (target `audit`),
//! written when the query ends, whatever the end: denied, failed, answered
//! (all rows read), canceled, deleted or expired with rows unread.
//!
//! Owns the line's fields: `query_id` (the gateway's), `user`, `groups`,
//! `tables`, `decision` (`allowed` | `denied`), `reason` (why denied, or why
//! it failed), `endpoint` and `rule` and `routing` (the resolver's decision in
//! words), `fallback`, `outcome`, `rows`, `duration_ms`. It never logs SQL
//! text or values (they may hold what a mask hides) and never a token.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use client::resolver::{Decision, Rule, Target};

/// How a query ends when its work is stopped from outside (a job's cancel,
/// delete or expiry) while the record is held by the task that runs it: the
/// stopper says so here, then aborts the task, and the record's drop logs
/// this outcome instead of `abandoned`.
#[derive(Clone, Default)]
pub struct StopReason(Arc<OnceLock<Ending>>);

/// An outcome and its reason, for [`StopReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    pub outcome: &'static str,
    pub reason: &'static str,
}

/// Canceled by its user (`POST /v1/queries/{id}/cancel`).
pub const CANCELED: Ending = Ending {
    outcome: "canceled",
    reason: "canceled by its user",
};
/// Deleted by its user before every row was read (`DELETE /v1/queries/{id}`).
pub const DELETED: Ending = Ending {
    outcome: "deleted",
    reason: "deleted by its user before all rows were read",
};
/// Dropped by the reaper: untouched for `JOB_TTL`.
pub const EXPIRED: Ending = Ending {
    outcome: "abandoned",
    reason: "expired: untouched for JOB_TTL before all rows were read",
};

impl StopReason {
    /// Records why the work stops; the first reason given wins.
    pub fn set(&self, e: Ending) {
        let _ = self.0.set(e);
    }
    pub fn get(&self) -> Option<Ending> {
        self.0.get().copied()
    }
}

/// A query's audit record, logged once: by [`Audit::finish`], or on drop.
pub struct Audit {
    pub query_id: String,
    pub user: String,
    pub groups: Vec<String>,
    pub tables: Vec<String>,
    pub endpoint: Option<String>,
    pub rule: Option<&'static str>,
    pub routing: Option<String>,
    pub fallback: bool,
    pub rows: u64,
    /// What the drop of an unfinished record logs, when its stopper said.
    pub stop: StopReason,
    started: Instant,
    done: bool,
}

impl Audit {
    pub fn new(query_id: &str, user: &str, groups: &[String]) -> Audit {
        Audit {
            query_id: query_id.to_string(),
            user: user.to_string(),
            groups: groups.to_vec(),
            tables: Vec::new(),
            endpoint: None,
            rule: None,
            routing: None,
            fallback: false,
            rows: 0,
            stop: StopReason::default(),
            started: Instant::now(),
            done: false,
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Records the routing decision.
    pub fn routed(&mut self, d: &Decision) {
        self.endpoint = Some(match &d.target {
            Target::Remote { endpoint } => endpoint.clone(),
            Target::Local => "local".to_string(),
        });
        self.rule = Some(d.rule.as_str());
        self.fallback = d.rule == Rule::FallbackLocal;
        self.routing = Some(d.to_string());
    }

    /// Logs the line: `denied` is the refusal's reason (the query never ran);
    /// otherwise `outcome` says how it ended and `reason` why, when it failed.
    pub fn finish(&mut self, denied: Option<&str>, outcome: &str, reason: Option<&str>) {
        if self.done {
            return;
        }
        self.done = true;
        let duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let decision = if denied.is_some() {
            "denied"
        } else {
            "allowed"
        };
        tracing::info!(
            target: "audit",
            query_id = %self.query_id,
            user = %self.user,
            groups = %self.groups.join(","),
            tables = %self.tables.join(","),
            decision,
            reason = denied.or(reason).unwrap_or(""),
            endpoint = self.endpoint.as_deref().unwrap_or(""),
            rule = self.rule.unwrap_or(""),
            routing = self.routing.as_deref().unwrap_or(""),
            fallback = self.fallback,
            outcome,
            rows = self.rows,
            duration_ms,
            "query"
        );
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        if !self.done {
            match self.stop.get() {
                Some(e) => self.finish(None, e.outcome, Some(e.reason)),
                None => self.finish(
                    None,
                    "abandoned",
                    Some("dropped before its rows were read (the client went away)"),
                ),
            }
        }
    }
}
