//! What a query hands back, wherever it ran: column names and types, then pages of
//! typed rows in order, consumed as they arrive. And the [`Executor`] trait that a
//! remote agent ([`crate::AgentClient`]) and embedded DuckDB
//! ([`crate::LocalExecutor`]) both implement, so a caller never cares where its query
//! ran.
//!
//! Owns the page channel's shape: producers (a page fetcher task, a DuckDB thread)
//! send through a bounded channel, so at most a few pages are held however large the
//! result. Dropping [`QueryRows`] closes the channel, which tells the producer to stop
//! and clean up (delete the job, interrupt DuckDB). Never blocks a runtime thread.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::batches::ArrowBatches;
use crate::error::ClientError;
use crate::value::{Row, Value};

/// A boxed future, for the object-safe [`Executor`] trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Pages in flight between a producer and the caller (besides the one the caller
/// holds and the one the producer is filling).
pub const PAGES_BUFFERED: usize = 2;

/// How a query's rows reached the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The agent's job lifecycle: submit, long-poll, pages, delete.
    Lifecycle,
    /// The agent's synchronous `POST /execute` (cursor mode off, or no lifecycle routes).
    Execute,
    /// Embedded DuckDB in this process.
    Local,
}

/// Something that runs SQL: a remote agent or the local DuckDB.
pub trait Executor: Send + Sync {
    /// A name for logs and decisions (the endpoint's name, or `local`).
    fn name(&self) -> &str;
    /// Runs one statement; the rows stream from the returned [`QueryRows`]. The deadline
    /// covers the whole query, pages included; past it the work is stopped and cleaned up.
    fn run<'a>(
        &'a self,
        sql: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<QueryRows, ClientError>> {
        self.run_params(sql, &[], deadline)
    }
    /// [`Executor::run`] with `params` bound to the statement's placeholders, in
    /// order, as values.
    fn run_params<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [crate::value::Param],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<QueryRows, ClientError>>;
    /// Runs one statement with `params` bound to its placeholders as values
    /// (`$1` is `params[0]`), and hands back its result as the engine's own
    /// Arrow export ([`ArrowBatches`]), schema first. Same deadline and
    /// clean-up rules as [`Executor::run`]. An engine that cannot bind
    /// parameters refuses a non-empty `params` before running anything.
    fn run_arrow<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Value],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<ArrowBatches, ClientError>>;
}

/// A running or finished query's result, streamed page by page.
pub struct QueryRows {
    pub columns: Vec<String>,
    /// DuckDB's type names, one per column.
    pub column_types: Vec<String>,
    /// Total rows when known up front (lifecycle, `/execute`); `None` for local runs.
    pub row_count: Option<u64>,
    /// The agent's job id (lifecycle only).
    pub query_id: Option<String>,
    pub via: Via,
    first: Option<Vec<Row>>,
    rx: Option<mpsc::Receiver<Result<Vec<Row>, ClientError>>>,
    /// The producer or clean-up task (deletes the job once the rows are read).
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for QueryRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryRows")
            .field("columns", &self.columns)
            .field("column_types", &self.column_types)
            .field("row_count", &self.row_count)
            .field("query_id", &self.query_id)
            .field("via", &self.via)
            .finish()
    }
}

impl QueryRows {
    /// A result whose rows are all here already (`/execute`).
    pub fn complete(
        columns: Vec<String>,
        column_types: Vec<String>,
        rows: Vec<Row>,
        via: Via,
    ) -> QueryRows {
        QueryRows {
            row_count: Some(rows.len() as u64),
            columns,
            column_types,
            query_id: None,
            via,
            first: Some(rows),
            rx: None,
            task: None,
        }
    }

    /// A result fed by a producer through `rx`.
    pub fn streamed(
        columns: Vec<String>,
        column_types: Vec<String>,
        row_count: Option<u64>,
        query_id: Option<String>,
        via: Via,
        rx: mpsc::Receiver<Result<Vec<Row>, ClientError>>,
    ) -> QueryRows {
        QueryRows {
            columns,
            column_types,
            row_count,
            query_id,
            via,
            first: None,
            rx: Some(rx),
            task: None,
        }
    }

    /// Attaches the task that produces the pages or cleans up after them, so
    /// [`Self::close`] can wait for it.
    pub fn with_task(mut self, task: tokio::task::JoinHandle<()>) -> QueryRows {
        self.task = Some(task);
        self
    }

    /// Stops reading (if not at the end) and waits until the work behind the rows is
    /// cleaned up: the job deleted on the agent (or canceled and deleted when rows were
    /// left unread). The stream ends before that delete, to save the caller a round
    /// trip; a short-lived process (a CLI) calls this before exiting so no job is left
    /// behind until its TTL.
    pub async fn close(mut self) {
        self.rx = None;
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// The next page in order; `None` after the last. An error ends the stream.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Row>>, ClientError> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        let Some(rx) = self.rx.as_mut() else {
            return Ok(None);
        };
        match rx.recv().await {
            Some(Ok(page)) => Ok(Some(page)),
            Some(Err(e)) => {
                self.rx = None;
                Err(e)
            }
            None => {
                self.rx = None;
                Ok(None)
            }
        }
    }

    /// Every row in memory (convenient for small results; use [`Self::next_page`]
    /// for large ones).
    pub async fn collect(mut self) -> Result<Vec<Row>, ClientError> {
        let mut all = Vec::new();
        while let Some(page) = self.next_page().await? {
            all.extend(page);
        }
        Ok(all)
    }
}
