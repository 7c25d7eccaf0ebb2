//! Arrow results wherever a query ran: [`ArrowBatches`], the record batches
//! of one statement as the engine exported them, read one batch at a time,
//! from an agent's Arrow IPC pages ([`crate::ArrowPages`]) or from local
//! DuckDB's own Arrow export ([`crate::LocalExecutor::run_arrow`]).
//!
//! Owns the one shape both engines hand an Arrow consumer (schema first,
//! then batches in order, an error ends the stream) and the stop on drop:
//! dropping an unfinished [`ArrowBatches`] cancels and deletes the agent's
//! job, or interrupts the local DuckDB statement. It never converts values
//! (no JSON in between) and holds at most an agent page or a few DuckDB
//! chunks, however large the result.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use tokio::sync::mpsc;

use crate::agent::ArrowPages;
use crate::error::ClientError;
use crate::rows::Via;

/// An Arrow result: its schema, then its record batches in order.
pub struct ArrowBatches {
    /// The result's schema (every batch has it).
    pub schema: SchemaRef,
    /// Total rows when the engine says up front (an agent); `None` locally.
    pub row_count: Option<u64>,
    pub via: Via,
    source: Source,
}

enum Source {
    /// An agent's pages; `pending` holds the rest of the page last read.
    Agent {
        pages: ArrowPages,
        pending: VecDeque<RecordBatch>,
    },
    /// Local DuckDB's batches through a bounded channel; `_stop`
    /// interrupts the statement when dropped before its end.
    Local {
        rx: mpsc::Receiver<Result<RecordBatch, ClientError>>,
        _stop: Option<StopOnDrop>,
    },
}

/// Interrupts a local statement when dropped, unless it has ended.
pub(crate) struct StopOnDrop {
    pub(crate) interrupt: Arc<duckdb::InterruptHandle>,
    pub(crate) done: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if !self.done.load(std::sync::atomic::Ordering::Acquire) {
            self.interrupt.interrupt();
        }
    }
}

impl ArrowBatches {
    /// An agent's pages whose first page has been read (`first`), so the
    /// schema is known.
    pub(crate) fn from_agent(
        schema: SchemaRef,
        pages: ArrowPages,
        first: Vec<RecordBatch>,
    ) -> ArrowBatches {
        ArrowBatches {
            schema,
            row_count: pages.row_count(),
            via: pages.via,
            source: Source::Agent {
                pages,
                pending: first.into(),
            },
        }
    }

    /// Local batches fed by a DuckDB thread.
    pub(crate) fn from_local(
        schema: SchemaRef,
        rx: mpsc::Receiver<Result<RecordBatch, ClientError>>,
        stop: StopOnDrop,
    ) -> ArrowBatches {
        ArrowBatches {
            schema,
            row_count: None,
            via: Via::Local,
            source: Source::Local {
                rx,
                _stop: Some(stop),
            },
        }
    }

    /// The next batch in order; `None` after the last. An error ends the
    /// stream (and the engine's work).
    pub async fn next_batch(&mut self) -> Result<Option<RecordBatch>, ClientError> {
        match &mut self.source {
            Source::Agent { pages, pending } => loop {
                if let Some(b) = pending.pop_front() {
                    return Ok(Some(b));
                }
                match pages.next_batches().await? {
                    Some(more) => pending.extend(more),
                    None => return Ok(None),
                }
            },
            Source::Local { rx, .. } => match rx.recv().await {
                Some(Ok(b)) => Ok(Some(b)),
                Some(Err(e)) => Err(e),
                None => Ok(None),
            },
        }
    }

    /// Every remaining batch (convenient for small results).
    pub async fn collect(mut self) -> Result<Vec<RecordBatch>, ClientError> {
        let mut all = Vec::new();
        while let Some(b) = self.next_batch().await? {
            all.push(b);
        }
        Ok(all)
    }
}

/// The type with every dictionary replaced by its value type (DuckDB exports
/// ENUM as a dictionary; the agent unpacks them, and so does local compute,
/// so both engines hand a consumer the same types).
pub(crate) fn undictionary(t: &DataType) -> DataType {
    let field = |f: &Arc<Field>| {
        Arc::new(
            f.as_ref()
                .clone()
                .with_data_type(undictionary(f.data_type())),
        )
    };
    match t {
        DataType::Dictionary(_, v) => undictionary(v),
        DataType::List(f) => DataType::List(field(f)),
        DataType::LargeList(f) => DataType::LargeList(field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(field(f), *n),
        DataType::Map(f, sorted) => DataType::Map(field(f), *sorted),
        DataType::Struct(fs) => DataType::Struct(fs.iter().map(field).collect::<Fields>()),
        other => other.clone(),
    }
}

/// `schema` without dictionaries ([`undictionary`] of each field).
pub(crate) fn undictionary_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| {
                Arc::new(
                    f.as_ref()
                        .clone()
                        .with_data_type(undictionary(f.data_type())),
                )
            })
            .collect::<Fields>(),
        schema.metadata().clone(),
    ))
}

/// `batch` cast to `schema` (its dictionaries unpacked); the batch itself
/// when it has none.
pub(crate) fn unpack_batch(
    batch: RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                arrow_cast::cast(c, f.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}
