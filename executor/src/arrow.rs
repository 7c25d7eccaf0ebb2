//! Arrow results: DuckDB's own Arrow export of each data chunk, kept as Arrow
//! IPC stream messages, and pages of them cut into IPC streams.
//!
//! Owns [`ResultFormat`], the Arrow encoder that runs on a worker thread
//! (chunk -> DuckDB's C data interface export -> arrow-rs import -> one IPC
//! record-batch message appended to the result's arena, the size limit
//! checked before a batch is kept) and [`ArrowResult`]: the schema message,
//! the arena of batch messages and where each batch starts. A page whose
//! bounds fall on batch boundaries is slices of the arena (sent without a
//! copy); a batch a page cuts is decoded (its buffers borrowed from the
//! arena), sliced and re-encoded: at most two batches of one DuckDB chunk
//! (2048 rows) per page, the only copy a page costs a reactor. DuckDB is
//! called only from the worker thread that runs the statement; nothing here
//! touches shard state.
//!
//! Stored compactly: one arena (grown like the JSON arena, shrunk when done),
//! its exact IPC bytes accounted as the result's retained bytes. Dictionary
//! columns (DuckDB exports ENUM as dictionaries) are unpacked to their value
//! type, so every stored batch stands alone and a page needs no dictionary
//! messages.

use std::collections::HashSet;
use std::ffi::{c_void, CString};
use std::ops::Range;
use std::sync::Arc;

use arrow_array::ffi::{from_ffi, FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, StructArray};
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamEncoder;
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef};

use crate::duckdb::{ArrowOptions, DbError, LogicalType, QueryOutput};
use crate::encode::{column_heads, ColumnHeads};
use crate::result::QueryResult;

/// How a job's result is kept and served; chosen when the job is submitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ResultFormat {
    /// The wire contract's JSON rows (the default).
    #[default]
    Json,
    /// Arrow IPC streams.
    Arrow,
}

impl ResultFormat {
    /// `"json"` or `"arrow"`: the request's `format` value and the status field.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultFormat::Json => "json",
            ResultFormat::Arrow => "arrow",
        }
    }

    /// The request's `format` value; `None` for anything else.
    pub fn parse(s: &str) -> Option<ResultFormat> {
        match s {
            "json" => Some(ResultFormat::Json),
            "arrow" => Some(ResultFormat::Arrow),
            _ => None,
        }
    }
}

/// The media type of an Arrow IPC stream (request `Accept`, response `Content-Type`).
pub const ARROW_STREAM_MEDIA_TYPE: &str = "application/vnd.apache.arrow.stream";

/// End-of-stream marker of the IPC stream format (continuation, zero length).
pub const IPC_END_OF_STREAM: [u8; 8] = [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];

/// Where one stored record batch sits.
#[derive(Debug, Clone, Copy)]
struct StoredBatch {
    first_row: usize,
    rows: usize,
    /// Its IPC message: bytes `start .. start + len` of the arena.
    start: usize,
    len: usize,
}

/// A statement's result as Arrow IPC messages. Immutable once built.
#[derive(Debug)]
pub struct ArrowResult {
    schema: SchemaRef,
    /// The encapsulated schema message every page's stream starts with.
    schema_ipc: Box<[u8]>,
    /// The record-batch messages, one per DuckDB chunk, back to back.
    arena: Buffer,
    batches: Box<[StoredBatch]>,
    rows: usize,
}

/// One piece of a page's IPC stream, in order.
#[derive(Debug)]
pub enum ArrowPart {
    /// The schema message ([`ArrowResult::schema_ipc`]).
    Schema,
    /// Bytes `range` of [`ArrowResult::arena`]: whole stored batches.
    Stored(Range<usize>),
    /// A stored batch the page cuts, sliced and re-encoded.
    Encoded(Vec<u8>),
    /// [`IPC_END_OF_STREAM`].
    End,
}

impl ArrowResult {
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn schema_ipc(&self) -> &[u8] {
        &self.schema_ipc
    }

    pub fn arena(&self) -> &[u8] {
        self.arena.as_slice()
    }

    pub fn row_count(&self) -> usize {
        self.rows
    }

    /// Bytes of the whole result as one IPC stream (schema, batches, end).
    pub fn ipc_bytes(&self) -> usize {
        self.schema_ipc.len() + self.arena.len() + IPC_END_OF_STREAM.len()
    }

    /// Heap bytes this result keeps alive.
    pub fn retained_bytes(&self) -> usize {
        self.arena.capacity()
            + self.schema_ipc.len()
            + self.batches.len() * std::mem::size_of::<StoredBatch>()
            + schema_heap_estimate(&self.schema)
            + std::mem::size_of::<Self>()
    }

    /// The IPC stream of rows `range` (clamped to the result): the schema,
    /// the batches, the end marker. Whole batches are arena slices; at most
    /// the first and the last batch are cut and re-encoded.
    pub fn page_parts(&self, range: Range<usize>) -> Result<Vec<ArrowPart>, ArrowError> {
        let end = range.end.min(self.rows);
        let start = range.start.min(end);
        let mut parts = vec![ArrowPart::Schema];
        let first = self
            .batches
            .partition_point(|b| b.first_row + b.rows <= start);
        let mut stored: Option<Range<usize>> = None;
        for b in self.batches[first..].iter() {
            if b.first_row >= end {
                break;
            }
            let from = start.max(b.first_row) - b.first_row;
            let to = end.min(b.first_row + b.rows) - b.first_row;
            if from == 0 && to == b.rows {
                stored = Some(match stored {
                    Some(r) => r.start..b.start + b.len,
                    None => b.start..b.start + b.len,
                });
                continue;
            }
            if let Some(r) = stored.take() {
                parts.push(ArrowPart::Stored(r));
            }
            parts.push(ArrowPart::Encoded(self.cut(b, from, to - from)?));
        }
        if let Some(r) = stored {
            parts.push(ArrowPart::Stored(r));
        }
        parts.push(ArrowPart::End);
        Ok(parts)
    }

    /// Rows `from .. from + len` of a stored batch as one IPC message.
    fn cut(&self, b: &StoredBatch, from: usize, len: usize) -> Result<Vec<u8>, ArrowError> {
        let mut decoder = StreamDecoder::new();
        let mut schema = Buffer::from(&self.schema_ipc[..]);
        decoder.decode(&mut schema)?;
        let mut message = self.arena.slice_with_length(b.start, b.len);
        let batch = decoder
            .decode(&mut message)?
            .ok_or_else(|| ArrowError::IpcError("a stored batch is incomplete".into()))?;
        let mut out = Vec::new();
        BatchEncoder::new(&self.schema, self.schema_ipc.len())?
            .encode(&batch.slice(from, len), &mut out)?;
        Ok(out)
    }

    /// Every row decoded (tests and tools; a page never does this).
    pub fn batches(&self) -> Result<Vec<RecordBatch>, ArrowError> {
        let mut decoder = StreamDecoder::new();
        decoder.decode(&mut Buffer::from(&self.schema_ipc[..]))?;
        let mut out = Vec::with_capacity(self.batches.len());
        for b in self.batches.iter() {
            let mut m = self.arena.slice_with_length(b.start, b.len);
            if let Some(batch) = decoder.decode(&mut m)? {
                out.push(batch);
            }
        }
        Ok(out)
    }
}

/// A rough bound on the heap a schema holds (names, types), for accounting.
fn schema_heap_estimate(schema: &Schema) -> usize {
    fn field(f: &Field) -> usize {
        96 + f.name().len()
            + match f.data_type() {
                DataType::List(c)
                | DataType::LargeList(c)
                | DataType::FixedSizeList(c, _)
                | DataType::Map(c, _) => field(c),
                DataType::Struct(fs) => fs.iter().map(|c| field(c)).sum(),
                _ => 0,
            }
    }
    schema.fields().iter().map(|f| field(f)).sum()
}

/// Encodes record batches as IPC messages without the schema message (the
/// stream encoder writes it before the first batch: its bytes are skipped).
struct BatchEncoder {
    enc: StreamEncoder,
    skip: usize,
}

impl BatchEncoder {
    fn new(schema: &Schema, schema_len: usize) -> Result<BatchEncoder, ArrowError> {
        Ok(BatchEncoder {
            enc: StreamEncoder::try_new(schema)?,
            skip: schema_len,
        })
    }

    /// Appends `batch`'s message to `out`; returns the bytes appended.
    fn encode(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<usize, ArrowError> {
        let before = out.len();
        for buf in self.enc.encode(batch)? {
            let s = buf.as_slice();
            if self.skip >= s.len() {
                self.skip -= s.len();
                continue;
            }
            out.extend_from_slice(&s[self.skip..]);
            self.skip = 0;
        }
        Ok(out.len() - before)
    }

    /// The bytes the next batch's message will take, without keeping them.
    fn encoded(&mut self, batch: &RecordBatch) -> Result<Vec<Buffer>, ArrowError> {
        let mut bufs = self.enc.encode(batch)?;
        if self.skip > 0 {
            let mut skipped = Vec::new();
            for buf in bufs.drain(..) {
                if self.skip >= buf.len() {
                    self.skip -= buf.len();
                } else {
                    skipped.push(buf.slice(self.skip));
                    self.skip = 0;
                }
            }
            bufs = skipped;
        }
        Ok(bufs)
    }
}

/// The encapsulated schema message of `schema` (what a stream starts with).
fn schema_message(schema: &Schema) -> Result<Vec<u8>, ArrowError> {
    let mut out = Vec::new();
    for b in StreamEncoder::try_new(schema)?.finish()? {
        out.extend_from_slice(b.as_slice());
    }
    out.truncate(out.len().saturating_sub(IPC_END_OF_STREAM.len()));
    Ok(out)
}

/// Why the Arrow encoder stopped.
#[derive(Debug)]
pub(crate) enum ArrowEncodeError {
    Db(DbError),
    TooLarge,
    /// A column DuckDB (or arrow-rs) cannot export.
    Unsupported {
        column: String,
        type_name: String,
        why: String,
    },
    /// Exporting or encoding failed for another reason.
    Failed(String),
}

impl From<ArrowError> for ArrowEncodeError {
    fn from(e: ArrowError) -> Self {
        ArrowEncodeError::Failed(format!("Arrow encoding failed: {e}"))
    }
}

/// The type with every dictionary replaced by its value type.
fn undictionary(t: &DataType) -> DataType {
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

/// DuckDB's Arrow schema for `types`/`names`, as DuckDB wrote it (kept to
/// import each chunk) and as arrow-rs reads it.
fn duckdb_schema(
    opts: &ArrowOptions,
    types: &[&LogicalType],
    names: &[CString],
) -> Result<(FFI_ArrowSchema, Schema), String> {
    let mut ffi_schema = FFI_ArrowSchema::empty();
    opts.schema(
        types,
        names,
        (&mut ffi_schema as *mut FFI_ArrowSchema).cast::<c_void>(),
    )?;
    let schema = Schema::try_from(&ffi_schema).map_err(|e| e.to_string())?;
    Ok((ffi_schema, schema))
}

/// Encodes a whole result as Arrow IPC messages. `limit` (0 = unlimited)
/// bounds the IPC bytes kept; a batch that would pass it is never kept.
pub(crate) fn encode_arrow(
    out: &mut QueryOutput,
    limit: usize,
    keywords: &HashSet<String>,
) -> Result<QueryResult, ArrowEncodeError> {
    let limit = if limit == 0 { usize::MAX } else { limit };
    let ColumnHeads {
        json: columns_json,
        names,
        types,
        type_names,
    } = column_heads(out, keywords);
    let ncols = names.len();

    let opts = out.arrow_options();
    let cnames: Vec<CString> = names
        .iter()
        .map(|n| CString::new(n.replace('\0', "")).unwrap_or_default())
        .collect();
    let type_refs: Vec<&LogicalType> = types.iter().collect();
    let (ffi_schema, duck_schema) = match duckdb_schema(&opts, &type_refs, &cnames) {
        Ok(s) => s,
        Err(why) => {
            // Name the column: the first one that fails on its own.
            for c in 0..ncols {
                if let Err(why) = duckdb_schema(&opts, &type_refs[c..=c], &cnames[c..=c]) {
                    return Err(ArrowEncodeError::Unsupported {
                        column: names[c].clone(),
                        type_name: type_names[c].clone(),
                        why,
                    });
                }
            }
            return Err(ArrowEncodeError::Failed(format!(
                "DuckDB could not describe the result in Arrow: {why}"
            )));
        }
    };
    let plain_fields: Fields = duck_schema
        .fields()
        .iter()
        .map(|f| {
            Arc::new(
                f.as_ref()
                    .clone()
                    .with_data_type(undictionary(f.data_type())),
            )
        })
        .collect();
    let needs_cast = plain_fields != *duck_schema.fields();
    let schema: SchemaRef = Arc::new(Schema::new(plain_fields));
    let schema_ipc = schema_message(&schema)?;
    if schema_ipc.len() > limit {
        return Err(ArrowEncodeError::TooLarge);
    }
    let mut encoder = BatchEncoder::new(&schema, schema_ipc.len())?;
    let mut arena = Arena::new(limit - schema_ipc.len());
    let mut batches = Vec::new();
    let mut rows = 0usize;
    while let Some(chunk) = out.next_chunk().map_err(ArrowEncodeError::Db)? {
        let len = chunk.len();
        let mut ffi_array = FFI_ArrowArray::empty();
        opts.export_chunk(
            &chunk,
            (&mut ffi_array as *mut FFI_ArrowArray).cast::<c_void>(),
        )
        .map_err(|m| ArrowEncodeError::Failed(format!("DuckDB's Arrow export failed: {m}")))?;
        drop(chunk);
        // SAFETY: DuckDB filled `ffi_array` for the struct type `ffi_schema`
        // describes (the same options and column types); the import takes
        // ownership of the array and releases it when its buffers are dropped.
        let data = unsafe { from_ffi(ffi_array, &ffi_schema) }?;
        let columns: Vec<ArrayRef> = StructArray::from(data).columns().to_vec();
        let columns = if needs_cast {
            columns
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| {
                    if c.data_type() == f.data_type() {
                        Ok(c.clone())
                    } else {
                        arrow_cast::cast(c, f.data_type())
                    }
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            columns
        };
        let batch = RecordBatch::try_new_with_options(
            schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(len)),
        )?;
        let bufs = encoder.encoded(&batch)?;
        let size: usize = bufs.iter().map(|b| b.len()).sum();
        let start = arena.append(&bufs, size)?;
        batches.push(StoredBatch {
            first_row: rows,
            rows: len,
            start,
            len: size,
        });
        rows += len;
    }
    let result = ArrowResult {
        schema,
        schema_ipc: schema_ipc.into_boxed_slice(),
        arena: Buffer::from_vec(arena.finish()),
        batches: batches.into_boxed_slice(),
        rows,
    };
    Ok(QueryResult::from_arrow(columns_json, type_names, result))
}

/// The batch arena: grows by doubling while small; once past
/// [`RESERVE_LIMIT_ABOVE`] under a limit it reserves the whole limit at once
/// (address space only: pages never written cost nothing), so it never moves
/// again and an over-limit result never holds twice its size.
struct Arena {
    bytes: Vec<u8>,
    limit: usize,
}

const RESERVE_LIMIT_ABOVE: usize = 4 << 20;

impl Arena {
    fn new(limit: usize) -> Arena {
        Arena {
            bytes: Vec::new(),
            limit,
        }
    }

    /// Appends one message of `size` bytes; returns where it starts.
    fn append(&mut self, bufs: &[Buffer], size: usize) -> Result<usize, ArrowEncodeError> {
        let start = self.bytes.len();
        let need = start.saturating_add(size);
        if need > self.limit {
            return Err(ArrowEncodeError::TooLarge);
        }
        if self.bytes.capacity() < need {
            let reserved = self.limit != usize::MAX
                && need > RESERVE_LIMIT_ABOVE
                && self.bytes.try_reserve_exact(self.limit - start).is_ok();
            if !reserved {
                self.bytes
                    .try_reserve(size)
                    .map_err(|_| ArrowEncodeError::TooLarge)?;
            }
        }
        for b in bufs {
            self.bytes.extend_from_slice(b.as_slice());
        }
        Ok(start)
    }

    fn finish(mut self) -> Vec<u8> {
        self.bytes.shrink_to_fit();
        self.bytes
    }
}

/// The answer of a text without a statement that answers (only comments):
/// no columns, no rows.
pub(crate) fn empty_arrow() -> QueryResult {
    let schema = Arc::new(Schema::empty());
    let schema_ipc = schema_message(&schema).unwrap_or_default();
    QueryResult::from_arrow(
        b"[]".to_vec(),
        Vec::new(),
        ArrowResult {
            schema,
            schema_ipc: schema_ipc.into_boxed_slice(),
            arena: Buffer::from_vec(Vec::<u8>::new()),
            batches: Box::new([]),
            rows: 0,
        },
    )
}
