//! The query history table (`gw_query_history`): one row per query's audit
//! record, appended in batches, read back with filters, pruned by age.
//!
//! Owns the row's shape and its SQL for both backends. Writes here never
//! bump the store's revision (history is not configuration: a batch must not
//! make every gateway reload its snapshot), and a read is bounded
//! ([`MAX_HISTORY_ROWS`]). It never holds SQL text or values of a query
//! (the audit record has none), nor a token.

use serde::Serialize;

use super::db::{in_tx, Conn, Val};
use super::{Store, StoreError};

/// Most rows one read answers.
pub const MAX_HISTORY_ROWS: usize = 1000;

/// One query's record, as the audit line has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryRecord {
    /// When it ended (Unix milliseconds).
    pub at_ms: i64,
    pub query_id: String,
    pub user: String,
    pub groups: String,
    pub door: String,
    /// Tables it read, comma-separated.
    pub tables: String,
    /// `allowed` or `denied`.
    pub decision: String,
    pub outcome: String,
    /// Why it was denied or failed.
    pub reason: String,
    pub endpoint: String,
    pub rule: String,
    /// Endpoints it tried and left, each with why.
    pub left: String,
    pub rows: i64,
    pub duration_us: i64,
    /// Time waiting in the admission queue.
    pub queued_us: i64,
}

/// Which records a read wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    pub user: Option<String>,
    /// Records that ended at or after this (Unix milliseconds).
    pub since_ms: Option<i64>,
    pub outcome: Option<String>,
    /// At most this many, newest first (capped at [`MAX_HISTORY_ROWS`]).
    pub limit: usize,
}

const COLUMNS: &str = "at_ms, query_id, user_name, group_names, door, tables, decision, outcome, \
                       reason, endpoint, rule, left_endpoints, rows_read, duration_us, queued_us";

fn insert(c: &mut dyn Conn, r: HistoryRecord) -> Result<(), StoreError> {
    c.exec(
        &format!(
            "INSERT INTO gw_query_history ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ),
        &[
            r.at_ms.into(),
            r.query_id.into(),
            r.user.into(),
            r.groups.into(),
            r.door.into(),
            r.tables.into(),
            r.decision.into(),
            r.outcome.into(),
            r.reason.into(),
            r.endpoint.into(),
            r.rule.into(),
            r.left.into(),
            r.rows.into(),
            r.duration_us.into(),
            r.queued_us.into(),
        ],
    )?;
    Ok(())
}

fn row(r: Vec<Val>) -> Result<HistoryRecord, StoreError> {
    let mut it = r.into_iter();
    let mut next = || {
        it.next()
            .ok_or_else(|| StoreError::Corrupt("a history row is missing a column".into()))
    };
    Ok(HistoryRecord {
        at_ms: next()?.int()?,
        query_id: next()?.text()?,
        user: next()?.text()?,
        groups: next()?.text()?,
        door: next()?.text()?,
        tables: next()?.text()?,
        decision: next()?.text()?,
        outcome: next()?.text()?,
        reason: next()?.text()?,
        endpoint: next()?.text()?,
        rule: next()?.text()?,
        left: next()?.text()?,
        rows: next()?.int()?,
        duration_us: next()?.int()?,
        queued_us: next()?.int()?,
    })
}

impl Store {
    /// Appends `records` in one transaction (the revision is not bumped).
    pub async fn append_history(&self, records: Vec<HistoryRecord>) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.pool()
            .run(move |c| {
                in_tx(c, true, |c| {
                    for r in records {
                        insert(c, r)?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Records matching `f`, newest first.
    pub async fn history(&self, f: HistoryFilter) -> Result<Vec<HistoryRecord>, StoreError> {
        self.pool()
            .run(move |c| {
                let mut sql = format!("SELECT {COLUMNS} FROM gw_query_history WHERE 1 = 1");
                let mut params: Vec<Val> = Vec::new();
                if let Some(u) = f.user {
                    params.push(u.into());
                    sql.push_str(&format!(" AND user_name = ${}", params.len()));
                }
                if let Some(s) = f.since_ms {
                    params.push(s.into());
                    sql.push_str(&format!(" AND at_ms >= ${}", params.len()));
                }
                if let Some(o) = f.outcome {
                    params.push(o.into());
                    sql.push_str(&format!(" AND outcome = ${}", params.len()));
                }
                let limit = f.limit.clamp(1, MAX_HISTORY_ROWS) as i64;
                params.push(limit.into());
                sql.push_str(&format!(
                    " ORDER BY at_ms DESC, id DESC LIMIT ${}",
                    params.len()
                ));
                in_tx(c, false, |c| {
                    c.query(&sql, &params)?.into_iter().map(row).collect()
                })
            })
            .await
    }

    /// Deletes records that ended before `before_ms`; how many.
    pub async fn prune_history(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.pool()
            .run(move |c| {
                in_tx(c, true, |c| {
                    Ok(c.exec(
                        "DELETE FROM gw_query_history WHERE at_ms < $1",
                        &[before_ms.into()],
                    )?)
                })
            })
            .await
    }
}
