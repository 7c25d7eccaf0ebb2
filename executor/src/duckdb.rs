//! A small safe wrapper over DuckDB's C API (`libduckdb-sys`).
//!
//! Owns every raw DuckDB handle the crate uses — database, connection,
//! prepared statement, result, data chunk, logical type — each freed exactly
//! once by `Drop`. Vectors are borrowed views tied to their chunk's lifetime.
//! Every `unsafe` block states why it is sound. This module must never be
//! called from a glommio reactor thread except for [`InterruptHandle`], whose
//! one call is a non-blocking atomic store inside DuckDB.

use std::ffi::{c_char, CStr, CString};
use std::marker::PhantomData;
use std::path::Path;
use std::ptr;
use std::sync::Arc;

use libduckdb_sys as ffi;

/// Copies a C string DuckDB owns (and keeps owning) into a `String`.
///
/// # Safety
/// `p` is null or a NUL-terminated string valid for the duration of the call.
unsafe fn borrowed_cstr(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: caller guarantees a valid NUL-terminated string.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Copies a C string DuckDB allocated for us and frees it with `duckdb_free`.
///
/// # Safety
/// `p` is null or a NUL-terminated string allocated by DuckDB that the caller owns.
unsafe fn owned_cstr(p: *mut c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: valid NUL-terminated string owned by us (caller contract).
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    // SAFETY: DuckDB allocated it with its allocator; we free it once.
    unsafe { ffi::duckdb_free(p.cast()) };
    s
}

fn c_string(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| "SQL text contains a NUL byte".to_string())
}

/// The version string of the linked DuckDB, e.g. `v2.0.0`.
pub fn library_version() -> String {
    // SAFETY: returns a pointer to a static NUL-terminated string.
    unsafe { borrowed_cstr(ffi::duckdb_library_version()) }
}

/// An open DuckDB database.
pub struct Database {
    raw: ffi::duckdb_database,
}

// SAFETY: a duckdb_database wraps a thread-safe DatabaseInstance; DuckDB allows
// connecting to it from any thread concurrently.
unsafe impl Send for Database {}
// SAFETY: as above; the only shared operation is `connect`, which is thread-safe.
unsafe impl Sync for Database {}

impl Database {
    /// Opens `path` (None: in-memory) with start-up `settings` (name, value).
    /// The database has DuckDB's icu extension loaded (time zones,
    /// `TIMESTAMPTZ`, collations), linked into the binary, never downloaded.
    pub fn open(path: Option<&Path>, settings: &[(&str, String)]) -> Result<Database, String> {
        // Registered extensions are loaded by every database opened after
        // the registration, so it must come first; it is once per process.
        // When DuckDB refused it, the open below fails with DuckDB's reason,
        // which says more than the refusal itself.
        let icu = duckdb_icu::register();
        let path_c = match path {
            Some(p) => Some(c_string(&p.to_string_lossy())?),
            None => None,
        };
        let mut config: ffi::duckdb_config = ptr::null_mut();
        // SAFETY: out-pointer to a local; DuckDB fills it (must be destroyed even on error).
        if unsafe { ffi::duckdb_create_config(&mut config) } != ffi::DuckDBSuccess {
            // SAFETY: destroying a possibly-null config is allowed.
            unsafe { ffi::duckdb_destroy_config(&mut config) };
            return Err("cannot allocate a DuckDB config".into());
        }
        struct ConfigGuard(ffi::duckdb_config);
        impl Drop for ConfigGuard {
            fn drop(&mut self) {
                // SAFETY: created above, destroyed exactly once here.
                unsafe { ffi::duckdb_destroy_config(&mut self.0) };
            }
        }
        let config = ConfigGuard(config);
        for (name, value) in settings {
            let n = c_string(name)?;
            let v = c_string(value)?;
            // SAFETY: valid config and NUL-terminated strings that outlive the call.
            if unsafe { ffi::duckdb_set_config(config.0, n.as_ptr(), v.as_ptr()) }
                != ffi::DuckDBSuccess
            {
                return Err(format!("invalid setting {name}={value}"));
            }
        }
        let mut raw: ffi::duckdb_database = ptr::null_mut();
        let mut err: *mut c_char = ptr::null_mut();
        let p = path_c.as_ref().map_or(ptr::null(), |c| c.as_ptr());
        // SAFETY: valid (or null = in-memory) path, valid config, out-pointers to locals.
        let state = unsafe { ffi::duckdb_open_ext(p, &mut raw, config.0, &mut err) };
        if state != ffi::DuckDBSuccess {
            // SAFETY: on error DuckDB hands us an error string to free with duckdb_free.
            let msg = unsafe { owned_cstr(err) };
            if !raw.is_null() {
                // SAFETY: close whatever was half-opened, once.
                unsafe { ffi::duckdb_close(&mut raw) };
            }
            return Err(if msg.is_empty() {
                "unknown error".into()
            } else {
                msg
            });
        }
        let db = Database { raw };
        icu.map_err(|e| e.to_string())?;
        Ok(db)
    }

    pub fn connect(&self) -> Result<Connection, String> {
        let mut raw: ffi::duckdb_connection = ptr::null_mut();
        // SAFETY: valid open database; out-pointer to a local.
        if unsafe { ffi::duckdb_connect(self.raw, &mut raw) } != ffi::DuckDBSuccess {
            return Err("duckdb_connect failed".into());
        }
        Ok(Connection {
            raw: Arc::new(RawConn(raw)),
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // SAFETY: opened in `open`, closed exactly once. Connections still alive
        // keep the underlying instance alive (DuckDB reference-counts it).
        unsafe { ffi::duckdb_close(&mut self.raw) };
    }
}

struct RawConn(ffi::duckdb_connection);

// SAFETY: the handle is only used for statements through `&mut Connection`
// (one thread at a time) and for `duckdb_interrupt`, which DuckDB documents as
// callable from another thread (an atomic flag on the client context).
unsafe impl Send for RawConn {}
// SAFETY: see above: the only `&self` operation is `duckdb_interrupt`.
unsafe impl Sync for RawConn {}

impl Drop for RawConn {
    fn drop(&mut self) {
        // SAFETY: connected in `Database::connect`, disconnected exactly once,
        // when the last owner (connection or interrupt handle) goes away.
        unsafe { ffi::duckdb_disconnect(&mut self.0) };
    }
}

/// A DuckDB connection: runs statements one at a time.
pub struct Connection {
    raw: Arc<RawConn>,
}

/// How a statement failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbError {
    /// Stopped by `duckdb_interrupt`.
    Interrupted,
    /// Any other failure, with DuckDB's message.
    Failed(String),
}

impl Connection {
    /// A handle that interrupts whatever this connection is running.
    pub fn interrupt_handle(&self) -> InterruptHandle {
        InterruptHandle {
            raw: self.raw.clone(),
        }
    }

    /// Runs `sql` (one or more statements) without a separate prepare step;
    /// the result is the last statement's, fully materialized.
    pub fn query(&mut self, sql: &str) -> Result<QueryOutput, DbError> {
        let c = c_string(sql).map_err(DbError::Failed)?;
        let mut res = QueryOutput::empty();
        // SAFETY: valid connection used by this thread only (&mut self);
        // NUL-terminated SQL; the result struct is owned by `res` and destroyed by its Drop
        // whatever the outcome.
        let state = unsafe { ffi::duckdb_query(self.raw.0, c.as_ptr(), &mut res.raw) };
        res.check(state)
    }

    /// Runs `sql` and returns every value as text (`None` for NULL). For the
    /// agent's own small bookkeeping queries (session state), never for jobs.
    pub fn query_strings(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, DbError> {
        let mut out = self.query(sql)?;
        let cols = out.column_count();
        let rows = out.row_count_hint();
        let mut table = Vec::with_capacity(rows);
        for r in 0..rows {
            let mut row = Vec::with_capacity(cols);
            for c in 0..cols {
                // SAFETY: a materialized result with r < rows and c < cols; the
                // string returned is malloc'ed by DuckDB and freed here.
                let v = unsafe {
                    if ffi::duckdb_value_is_null(&mut out.raw, c as u64, r as u64) {
                        None
                    } else {
                        let p = ffi::duckdb_value_varchar(&mut out.raw, c as u64, r as u64);
                        let s = borrowed_cstr(p);
                        ffi::duckdb_free(p.cast());
                        Some(s)
                    }
                };
                row.push(v);
            }
            table.push(row);
        }
        Ok(table)
    }

    /// Parses `sql` into its statements without running any (DuckDB's
    /// `duckdb_extract_statements`); a syntax error is reported here.
    pub fn extract(&mut self, sql: &str) -> Result<Extracted, DbError> {
        let c = c_string(sql).map_err(DbError::Failed)?;
        let mut raw: ffi::duckdb_extracted_statements = ptr::null_mut();
        // SAFETY: valid connection (exclusive), NUL-terminated SQL, out-pointer to a
        // local; the wrapper is destroyed by `Extracted`'s Drop whatever the outcome.
        let count = unsafe { ffi::duckdb_extract_statements(self.raw.0, c.as_ptr(), &mut raw) };
        let ex = Extracted {
            raw,
            count: count as usize,
        };
        // SAFETY: a wrapper DuckDB just created (or null); the message is copied.
        let err = unsafe { ffi::duckdb_extract_statements_error(ex.raw) };
        if !err.is_null() {
            // SAFETY: NUL-terminated, owned by the wrapper, which is alive.
            return Err(db_error_from_message(unsafe { borrowed_cstr(err) }));
        }
        Ok(ex)
    }

    /// Prepares statement `index` of `ex` (binds and plans it; runs nothing).
    pub fn prepare_extracted(
        &mut self,
        ex: &mut Extracted,
        index: usize,
    ) -> Result<Prepared, DbError> {
        if index >= ex.count {
            return Err(DbError::Failed("no such statement".into()));
        }
        let mut raw: ffi::duckdb_prepared_statement = ptr::null_mut();
        // SAFETY: valid connection (exclusive) and extracted statements; index in
        // range; out-pointer to a local, destroyed by `Prepared`'s Drop.
        let state = unsafe {
            ffi::duckdb_prepare_extracted_statement(self.raw.0, ex.raw, index as u64, &mut raw)
        };
        let p = Prepared { raw };
        if state != ffi::DuckDBSuccess {
            // SAFETY: the error string lives until the statement is destroyed.
            let msg = unsafe { borrowed_cstr(ffi::duckdb_prepare_error(p.raw)) };
            return Err(db_error_from_message(msg));
        }
        Ok(p)
    }

    /// Prepares a single statement for repeated execution.
    pub fn prepare(&mut self, sql: &str) -> Result<Prepared, String> {
        let c = c_string(sql)?;
        let mut raw: ffi::duckdb_prepared_statement = ptr::null_mut();
        // SAFETY: valid connection (exclusive), NUL-terminated SQL, out-pointer to a local.
        let state = unsafe { ffi::duckdb_prepare(self.raw.0, c.as_ptr(), &mut raw) };
        let p = Prepared { raw };
        if state != ffi::DuckDBSuccess {
            // SAFETY: the error string lives until the statement is destroyed (by `p`'s Drop).
            let msg = unsafe { borrowed_cstr(ffi::duckdb_prepare_error(p.raw)) };
            return Err(msg);
        }
        Ok(p)
    }
}

/// DuckDB's message when a statement was interrupted, as a prepare error
/// carries it (prepare errors come without an error type).
fn db_error_from_message(msg: String) -> DbError {
    if msg.starts_with("INTERRUPT Error") {
        return DbError::Interrupted;
    }
    DbError::Failed(if msg.is_empty() {
        "unknown DuckDB error".into()
    } else {
        msg
    })
}

/// The statements of one SQL text, parsed and not yet run.
pub struct Extracted {
    raw: ffi::duckdb_extracted_statements,
    count: usize,
}

impl Extracted {
    /// How many statements the text holds (0 for only comments/whitespace).
    pub fn len(&self) -> usize {
        self.count
    }
}

impl Drop for Extracted {
    fn drop(&mut self) {
        // SAFETY: created by duckdb_extract_statements (possibly failed; destroy
        // accepts that), destroyed exactly once.
        unsafe { ffi::duckdb_destroy_extracted(&mut self.raw) };
    }
}

/// Interrupts the statement running on a connection, from any thread.
#[derive(Clone)]
pub struct InterruptHandle {
    raw: Arc<RawConn>,
}

impl InterruptHandle {
    pub fn interrupt(&self) {
        // SAFETY: the Arc keeps the connection alive; duckdb_interrupt only sets
        // an atomic flag and is documented as safe to call from another thread.
        unsafe { ffi::duckdb_interrupt(self.raw.0) };
    }
}

/// A prepared statement. Used only by the thread that owns its connection.
pub struct Prepared {
    raw: ffi::duckdb_prepared_statement,
}

// SAFETY: moved between threads only together with its connection's worker; never shared.
unsafe impl Send for Prepared {}

impl Prepared {
    /// Binds `value` to placeholder `index` (1-based); DuckDB casts it to the
    /// placeholder's type as it would a literal of the value's type.
    pub fn bind(&mut self, index: usize, value: &crate::params::Param) -> Result<(), String> {
        use crate::params::Param;
        let idx = index as ffi::idx_t;
        // SAFETY: a successfully prepared statement, used by its worker only;
        // a string is passed with its length (it may hold NUL bytes) and
        // copied by DuckDB before the call returns.
        let state = unsafe {
            match value {
                Param::Null => ffi::duckdb_bind_null(self.raw, idx),
                Param::Bool(b) => ffi::duckdb_bind_boolean(self.raw, idx, *b),
                Param::Int(i) => ffi::duckdb_bind_int64(self.raw, idx, *i),
                Param::Float(f) => ffi::duckdb_bind_double(self.raw, idx, *f),
                Param::Text(s) => ffi::duckdb_bind_varchar_length(
                    self.raw,
                    idx,
                    s.as_ptr().cast::<c_char>(),
                    s.len() as ffi::idx_t,
                ),
            }
        };
        if state == ffi::DuckDBSuccess {
            Ok(())
        } else {
            // SAFETY: the statement's own error text (valid while it lives).
            let msg = unsafe { borrowed_cstr(ffi::duckdb_prepare_error(self.raw)) };
            Err(if msg.is_empty() {
                format!("cannot bind parameter ${index}")
            } else {
                msg
            })
        }
    }

    /// Runs the statement; a SELECT streams (its rows are produced as
    /// [`QueryOutput::next_chunk`] asks for them, so nothing is materialized
    /// ahead of the reader), other statements complete here. The result
    /// must be dropped (or read to the end) before the connection runs
    /// anything else; dropping it early stops the statement.
    pub fn execute_streaming(&mut self) -> Result<QueryOutput, DbError> {
        let mut res = QueryOutput::empty();
        // SAFETY: a successfully prepared statement, exclusive access (its
        // connection is borrowed by the same worker); the result is destroyed
        // by `res`'s Drop.
        let state = unsafe { ffi::duckdb_execute_prepared_streaming(self.raw, &mut res.raw) };
        res.check(state)
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // SAFETY: created by duckdb_prepare (possibly failed; destroy accepts that), destroyed once.
        unsafe { ffi::duckdb_destroy_prepare(&mut self.raw) };
    }
}

/// A materialized statement result.
pub struct QueryOutput {
    raw: ffi::duckdb_result,
}

impl QueryOutput {
    fn empty() -> Self {
        QueryOutput {
            raw: ffi::duckdb_result {
                deprecated_column_count: 0,
                deprecated_row_count: 0,
                deprecated_rows_changed: 0,
                deprecated_columns: ptr::null_mut(),
                deprecated_error_message: ptr::null_mut(),
                internal_data: ptr::null_mut(),
            },
        }
    }

    fn check(mut self, state: ffi::duckdb_state) -> Result<QueryOutput, DbError> {
        if state == ffi::DuckDBSuccess {
            return Ok(self);
        }
        Err(self.error())
    }

    fn error(&mut self) -> DbError {
        // SAFETY: the result was filled by DuckDB (or is zeroed); both calls accept either.
        let kind = unsafe { ffi::duckdb_result_error_type(&mut self.raw) };
        if kind == ffi::duckdb_error_type_DUCKDB_ERROR_INTERRUPT {
            return DbError::Interrupted;
        }
        // SAFETY: as above; the message is owned by the result and copied here.
        let msg = unsafe { borrowed_cstr(ffi::duckdb_result_error(&mut self.raw)) };
        DbError::Failed(if msg.is_empty() {
            "unknown DuckDB error".into()
        } else {
            msg
        })
    }

    /// True when the statement returns rows (a query), false for DDL,
    /// INSERT/UPDATE/DELETE counts and statements that return nothing.
    pub fn returns_rows(&self) -> bool {
        // SAFETY: a successful result (a copy of the struct is what the C API takes).
        let t = unsafe { ffi::duckdb_result_return_type(self.raw) };
        t == ffi::duckdb_result_type_DUCKDB_RESULT_TYPE_QUERY_RESULT
    }

    /// Total rows of a materialized result (known before the first fetch);
    /// used only to size the JSON arena once instead of growing it.
    pub fn row_count_hint(&mut self) -> usize {
        // SAFETY: a successful (materialized) result; deprecated in DuckDB's
        // docs but present, and returns 0 for streaming results.
        unsafe { ffi::duckdb_row_count(&mut self.raw) as usize }
    }

    pub fn column_count(&mut self) -> usize {
        // SAFETY: a successful result.
        unsafe { ffi::duckdb_column_count(&mut self.raw) as usize }
    }

    pub fn column_name(&mut self, i: usize) -> String {
        // SAFETY: i < column_count; the name is owned by the result and copied.
        unsafe { borrowed_cstr(ffi::duckdb_column_name(&mut self.raw, i as u64)) }
    }

    pub fn column_type(&mut self, i: usize) -> LogicalType {
        // SAFETY: i < column_count; the returned type is ours to destroy (LogicalType's Drop).
        LogicalType {
            raw: unsafe { ffi::duckdb_column_logical_type(&mut self.raw, i as u64) },
        }
    }

    /// The next chunk, `Ok(None)` at the end, or the error that stopped it
    /// (an interrupt can land while chunks are fetched).
    pub fn next_chunk(&mut self) -> Result<Option<DataChunk<'_>>, DbError> {
        // SAFETY: a successful result; the chunk returned is ours to destroy.
        let raw = unsafe { ffi::duckdb_fetch_chunk(self.raw) };
        if raw.is_null() {
            // SAFETY: reading the error state of a valid result (null = no error).
            let failed = !unsafe { ffi::duckdb_result_error(&mut self.raw) }.is_null();
            if failed {
                return Err(self.error());
            }
            return Ok(None);
        }
        Ok(Some(DataChunk {
            raw,
            _result: PhantomData,
        }))
    }
}

impl QueryOutput {
    /// How this result's data chunks are exported to Arrow (the connection's
    /// Arrow settings at the time of the query).
    pub fn arrow_options(&mut self) -> ArrowOptions {
        // SAFETY: a successful result; the options are ours to destroy (ArrowOptions' Drop).
        ArrowOptions {
            raw: unsafe { ffi::duckdb_result_get_arrow_options(&mut self.raw) },
        }
    }
}

/// DuckDB's Arrow export settings for one result.
pub struct ArrowOptions {
    raw: ffi::duckdb_arrow_options,
}

impl Drop for ArrowOptions {
    fn drop(&mut self) {
        // SAFETY: returned by duckdb_result_get_arrow_options, destroyed once.
        unsafe { ffi::duckdb_destroy_arrow_options(&mut self.raw) };
    }
}

/// Takes DuckDB's error data: `Ok` when it holds no error, else its message.
///
/// # Safety
/// `e` is null or error data DuckDB handed to us (destroyed here, once).
unsafe fn take_error_data(mut e: ffi::duckdb_error_data) -> Result<(), String> {
    if e.is_null() {
        return Ok(());
    }
    // SAFETY: valid error data (caller contract); the message is copied before it is destroyed.
    let r = if unsafe { ffi::duckdb_error_data_has_error(e) } {
        let m = unsafe { borrowed_cstr(ffi::duckdb_error_data_message(e)) };
        Err(if m.is_empty() {
            "unknown DuckDB error".into()
        } else {
            m
        })
    } else {
        Ok(())
    };
    // SAFETY: destroyed once.
    unsafe { ffi::duckdb_destroy_error_data(&mut e) };
    r
}

impl ArrowOptions {
    /// The Arrow schema of columns `names` with `types`, written into `out`
    /// (an empty `FFI_ArrowSchema`, which has the C layout DuckDB fills).
    pub fn schema(
        &self,
        types: &[&LogicalType],
        names: &[CString],
        out: *mut std::ffi::c_void,
    ) -> Result<(), String> {
        let mut raw_types: Vec<ffi::duckdb_logical_type> = types.iter().map(|t| t.raw).collect();
        let mut raw_names: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        // SAFETY: the arrays hold `len` valid types and NUL-terminated names that
        // outlive the call; `out` points to a writable ArrowSchema (caller contract).
        let e = unsafe {
            ffi::duckdb_to_arrow_schema(
                self.raw,
                raw_types.as_mut_ptr(),
                raw_names.as_mut_ptr(),
                types.len() as ffi::idx_t,
                out.cast(),
            )
        };
        // SAFETY: error data returned by the call above.
        unsafe { take_error_data(e) }
    }

    /// Exports `chunk` into `out` (an empty `FFI_ArrowArray`, which has the C
    /// layout DuckDB fills): a struct array with one child per column.
    pub fn export_chunk(
        &self,
        chunk: &DataChunk<'_>,
        out: *mut std::ffi::c_void,
    ) -> Result<(), String> {
        // SAFETY: a valid chunk of the result these options belong to; `out`
        // points to a writable ArrowArray (caller contract).
        let e = unsafe { ffi::duckdb_data_chunk_to_arrow(self.raw, chunk.raw, out.cast()) };
        // SAFETY: error data returned by the call above.
        unsafe { take_error_data(e) }
    }
}

impl Drop for QueryOutput {
    fn drop(&mut self) {
        // SAFETY: destroying a filled or zeroed result is allowed, done once.
        unsafe { ffi::duckdb_destroy_result(&mut self.raw) };
    }
}

/// One chunk (up to `duckdb_vector_size()` rows) of a result.
pub struct DataChunk<'r> {
    raw: ffi::duckdb_data_chunk,
    _result: PhantomData<&'r mut QueryOutput>,
}

impl DataChunk<'_> {
    pub fn len(&self) -> usize {
        // SAFETY: valid chunk.
        unsafe { ffi::duckdb_data_chunk_get_size(self.raw) as usize }
    }

    pub fn vector(&self, col: usize) -> Vector<'_> {
        // SAFETY: col < column count (the caller iterates the result's columns);
        // the vector is owned by the chunk and lives as long as the borrow.
        Vector {
            raw: unsafe { ffi::duckdb_data_chunk_get_vector(self.raw, col as u64) },
            _chunk: PhantomData,
        }
    }
}

impl Drop for DataChunk<'_> {
    fn drop(&mut self) {
        // SAFETY: returned by duckdb_fetch_chunk, destroyed once.
        unsafe { ffi::duckdb_destroy_data_chunk(&mut self.raw) };
    }
}

/// A borrowed (flat) vector of a chunk, or a child of one.
#[derive(Clone, Copy)]
pub struct Vector<'c> {
    raw: ffi::duckdb_vector,
    _chunk: PhantomData<&'c ()>,
}

impl<'c> Vector<'c> {
    /// The vector's data buffer; its element type follows the column's logical type.
    pub fn data(&self) -> *const u8 {
        // SAFETY: valid vector; DuckDB returns its flat data pointer.
        unsafe { ffi::duckdb_vector_get_data(self.raw) as *const u8 }
    }

    /// The validity bitmap (bit set = valid), or null when every row is valid.
    pub fn validity(&self) -> *const u64 {
        // SAFETY: valid vector.
        unsafe { ffi::duckdb_vector_get_validity(self.raw) as *const u64 }
    }

    pub fn list_child(&self) -> Vector<'c> {
        // SAFETY: called only for LIST/MAP vectors; the child lives as long as the parent.
        Vector {
            raw: unsafe { ffi::duckdb_list_vector_get_child(self.raw) },
            _chunk: PhantomData,
        }
    }

    pub fn struct_child(&self, i: usize) -> Vector<'c> {
        // SAFETY: called only for STRUCT/UNION vectors with i < child count.
        Vector {
            raw: unsafe { ffi::duckdb_struct_vector_get_child(self.raw, i as u64) },
            _chunk: PhantomData,
        }
    }

    pub fn array_child(&self) -> Vector<'c> {
        // SAFETY: called only for ARRAY vectors.
        Vector {
            raw: unsafe { ffi::duckdb_array_vector_get_child(self.raw) },
            _chunk: PhantomData,
        }
    }
}

/// An owned logical type descriptor.
pub struct LogicalType {
    raw: ffi::duckdb_logical_type,
}

impl Drop for LogicalType {
    fn drop(&mut self) {
        // SAFETY: every LogicalType comes from a DuckDB call that hands us ownership.
        unsafe { ffi::duckdb_destroy_logical_type(&mut self.raw) };
    }
}

impl LogicalType {
    fn own(raw: ffi::duckdb_logical_type) -> LogicalType {
        LogicalType { raw }
    }

    pub fn id(&self) -> ffi::DUCKDB_TYPE {
        // SAFETY: valid type.
        unsafe { ffi::duckdb_get_type_id(self.raw) }
    }

    /// The alias (e.g. `JSON`), if the type has one.
    pub fn alias(&self) -> Option<String> {
        // SAFETY: valid type; the alias (or null) is ours to free.
        let s = unsafe { owned_cstr(ffi::duckdb_logical_type_get_alias(self.raw)) };
        if s.is_empty() {
            None
        } else {
            Some(s)
        }
    }

    pub fn decimal_width(&self) -> u8 {
        // SAFETY: valid DECIMAL type.
        unsafe { ffi::duckdb_decimal_width(self.raw) }
    }

    pub fn decimal_scale(&self) -> u8 {
        // SAFETY: valid DECIMAL type.
        unsafe { ffi::duckdb_decimal_scale(self.raw) }
    }

    pub fn decimal_internal(&self) -> ffi::DUCKDB_TYPE {
        // SAFETY: valid DECIMAL type.
        unsafe { ffi::duckdb_decimal_internal_type(self.raw) }
    }

    pub fn enum_internal(&self) -> ffi::DUCKDB_TYPE {
        // SAFETY: valid ENUM type.
        unsafe { ffi::duckdb_enum_internal_type(self.raw) }
    }

    pub fn enum_values(&self) -> Vec<String> {
        // SAFETY: valid ENUM type.
        let n = unsafe { ffi::duckdb_enum_dictionary_size(self.raw) };
        // SAFETY: i < dictionary size; each value string is ours to free.
        (0..n as u64)
            .map(|i| unsafe { owned_cstr(ffi::duckdb_enum_dictionary_value(self.raw, i)) })
            .collect()
    }

    pub fn list_child(&self) -> LogicalType {
        // SAFETY: valid LIST or MAP type; the child type is ours.
        LogicalType::own(unsafe { ffi::duckdb_list_type_child_type(self.raw) })
    }

    pub fn array_child(&self) -> LogicalType {
        // SAFETY: valid ARRAY type; the child type is ours.
        LogicalType::own(unsafe { ffi::duckdb_array_type_child_type(self.raw) })
    }

    pub fn array_size(&self) -> usize {
        // SAFETY: valid ARRAY type.
        unsafe { ffi::duckdb_array_type_array_size(self.raw) as usize }
    }

    pub fn map_key(&self) -> LogicalType {
        // SAFETY: valid MAP type; the key type is ours.
        LogicalType::own(unsafe { ffi::duckdb_map_type_key_type(self.raw) })
    }

    pub fn map_value(&self) -> LogicalType {
        // SAFETY: valid MAP type; the value type is ours.
        LogicalType::own(unsafe { ffi::duckdb_map_type_value_type(self.raw) })
    }

    pub fn struct_children(&self) -> Vec<(String, LogicalType)> {
        // SAFETY: valid STRUCT type.
        let n = unsafe { ffi::duckdb_struct_type_child_count(self.raw) };
        (0..n)
            .map(|i| {
                // SAFETY: i < child count; name string and child type are ours.
                unsafe {
                    (
                        owned_cstr(ffi::duckdb_struct_type_child_name(self.raw, i)),
                        LogicalType::own(ffi::duckdb_struct_type_child_type(self.raw, i)),
                    )
                }
            })
            .collect()
    }

    pub fn union_members(&self) -> Vec<(String, LogicalType)> {
        // SAFETY: valid UNION type.
        let n = unsafe { ffi::duckdb_union_type_member_count(self.raw) };
        (0..n)
            .map(|i| {
                // SAFETY: i < member count; name string and member type are ours.
                unsafe {
                    (
                        owned_cstr(ffi::duckdb_union_type_member_name(self.raw, i)),
                        LogicalType::own(ffi::duckdb_union_type_member_type(self.raw, i)),
                    )
                }
            })
            .collect()
    }
}

/// Reads the `i`-th `duckdb_string_t` of a VARCHAR/BLOB/BIT vector's data.
///
/// # Safety
/// `data` is the data pointer of a flat string vector with more than `i` rows,
/// row `i` is valid (not NULL), and the returned slice is used only while the
/// chunk that owns the vector is alive.
#[inline]
pub unsafe fn string_at<'a>(data: *const u8, i: usize) -> &'a [u8] {
    // SAFETY: string_t is 16 bytes: a u32 length, then either 12 inline bytes
    // (length <= 12) or a 4-byte prefix and a pointer to the full bytes.
    unsafe {
        let p = data.add(i * 16);
        let len = (p as *const u32).read_unaligned() as usize;
        if len <= 12 {
            std::slice::from_raw_parts(p.add(4), len)
        } else {
            let ptr = (p.add(8) as *const *const u8).read_unaligned();
            std::slice::from_raw_parts(ptr, len)
        }
    }
}
