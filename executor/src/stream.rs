//! Running a SQL text as streaming statements, its answer encoded chunk by
//! chunk.
//!
//! Owns the order in which a text's statements run and which one answers,
//! and the mapping of DuckDB and encoder failures to [`ExecFailure`]. A
//! SELECT runs as a streaming result: DuckDB produces a chunk when the
//! encoder asks for the next one, so `MAX_RESULT_BYTES` stops the statement
//! (dropping the result aborts it) before its rows are materialized anywhere.
//! Other statements (DDL, INSERT, PRAGMA, CALL, EXPLAIN) complete inside
//! DuckDB before their (small, or DuckDB-managed and spillable) result is
//! read. Runs only on a SQL thread; it never touches shard state.

use std::collections::HashSet;

use crate::arrow::{encode_arrow, ArrowEncodeError, ResultFormat};
use crate::duckdb::{Connection, DbError, Prepared, QueryOutput};
use crate::encode::{drain, encode, EncodeError};
use crate::result::{QueryResult, ResultBuilder};
use crate::worker::ExecFailure;

/// What encoding needs from the worker's configuration.
pub(crate) struct Encoder<'a> {
    /// Largest encoded result in bytes; 0 = unlimited.
    pub limit: usize,
    pub keywords: &'a HashSet<String>,
    /// JSON rows, or Arrow IPC messages (`arrow.rs`).
    pub format: ResultFormat,
}

impl Encoder<'_> {
    fn encode(&self, out: &mut QueryOutput) -> Result<QueryResult, ExecFailure> {
        match self.format {
            ResultFormat::Json => encode(out, self.limit, self.keywords).map_err(encode_failure),
            ResultFormat::Arrow => {
                encode_arrow(out, self.limit, self.keywords).map_err(arrow_failure)
            }
        }
    }
}

fn arrow_failure(e: ArrowEncodeError) -> ExecFailure {
    match e {
        ArrowEncodeError::Db(e) => db_failure(e),
        ArrowEncodeError::TooLarge => ExecFailure::TooLarge,
        ArrowEncodeError::Unsupported {
            column,
            type_name,
            why,
        } => ExecFailure::Failed(format!(
            "column \"{column}\" has type {type_name}, which DuckDB cannot export to Arrow ({why}); cast it (for example to VARCHAR) or ask for JSON"
        )),
        ArrowEncodeError::Failed(m) => ExecFailure::Failed(m),
    }
}

pub(crate) fn db_failure(e: DbError) -> ExecFailure {
    match e {
        DbError::Interrupted => ExecFailure::Interrupted,
        DbError::Failed(m) => ExecFailure::Failed(m),
    }
}

fn encode_failure(e: EncodeError) -> ExecFailure {
    match e {
        EncodeError::Db(e) => db_failure(e),
        EncodeError::TooLarge => ExecFailure::TooLarge,
        EncodeError::Unsupported { column, type_name } => ExecFailure::Failed(format!(
            "column \"{column}\" has type {type_name}, which has no JSON form here; cast it (for example to VARCHAR)"
        )),
    }
}

/// Runs a prepared statement and encodes its result as it streams.
pub(crate) fn run_prepared(
    stmt: &mut Prepared,
    enc: &Encoder<'_>,
) -> Result<QueryResult, ExecFailure> {
    let mut out = stmt.execute_streaming().map_err(db_failure)?;
    enc.encode(&mut out)
}

/// Runs a text that has no prepared statement: parses it into statements and
/// prepares and runs each in order, streaming. As with DuckDB's
/// `duckdb_query`, the answer is the first statement that returns rows (the
/// last statement's result when none does); the statements after it still
/// run to completion (their rows are read and dropped, never kept), and the
/// first failure stops the text and is the answer. A text of only comments
/// answers with no columns and no rows. A single `SELECT` that returns one
/// row at most (no `FROM`, see [`crate::sqlcheck::is_one_row_select`]) takes
/// DuckDB's one-call `duckdb_query` instead.
pub(crate) fn run_text(
    conn: &mut Connection,
    sql: &str,
    enc: &Encoder<'_>,
) -> Result<QueryResult, ExecFailure> {
    if crate::sqlcheck::is_one_row_select(sql) {
        // One row at most: nothing to stream, and one call is cheaper.
        let mut out = conn.query(sql).map_err(db_failure)?;
        return enc.encode(&mut out);
    }
    let mut statements = conn.extract(sql).map_err(db_failure)?;
    let mut answer: Option<(QueryResult, bool)> = None;
    for i in 0..statements.len() {
        let mut stmt = conn
            .prepare_extracted(&mut statements, i)
            .map_err(db_failure)?;
        // The result goes before its prepared statement (declared after it).
        let mut out = stmt.execute_streaming().map_err(db_failure)?;
        match &answer {
            Some((_, true)) => drain(&mut out).map_err(db_failure)?,
            _ => {
                let returns_rows = out.returns_rows();
                answer = Some((enc.encode(&mut out)?, returns_rows));
            }
        }
    }
    Ok(match answer {
        Some((r, _)) => r,
        None => match enc.format {
            ResultFormat::Json => ResultBuilder::new(0).finish(b"[]".to_vec(), Vec::new()),
            ResultFormat::Arrow => crate::arrow::empty_arrow(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duckdb::Database;

    fn conn() -> (Database, Connection) {
        let db = Database::open(None, &[("threads", "2".to_string())]).unwrap();
        let c = db.connect().unwrap();
        (db, c)
    }

    fn rows(r: &QueryResult) -> String {
        let mut v = Vec::new();
        r.write_rows(0..r.row_count(), &mut v);
        String::from_utf8(v).unwrap()
    }

    fn run(c: &mut Connection, sql: &str, limit: usize) -> Result<QueryResult, ExecFailure> {
        let kw = HashSet::new();
        run_text(
            c,
            sql,
            &Encoder {
                limit,
                keywords: &kw,
                format: ResultFormat::Json,
            },
        )
    }

    #[test]
    fn the_first_statement_with_rows_answers_and_the_rest_still_run() {
        let (_db, mut c) = conn();
        let r = run(
            &mut c,
            "CREATE TABLE t AS SELECT 1 AS a; SELECT a + 1 AS b FROM t; INSERT INTO t VALUES (5); SELECT 99",
            0,
        )
        .unwrap();
        assert_eq!(r.columns_json(), b"[\"b\"]");
        assert_eq!(rows(&r), "[[2]]");
        // The INSERT after the answer ran.
        assert_eq!(
            rows(&run(&mut c, "SELECT sum(a) FROM t", 0).unwrap()),
            "[[6]]"
        );
        // Without a statement that returns rows, the last statement answers.
        let r = run(
            &mut c,
            "CREATE TABLE u (x INT); INSERT INTO u VALUES (1), (2)",
            0,
        )
        .unwrap();
        assert_eq!(rows(&r), "[[2]]");
        // Only comments: no columns, no rows.
        let r = run(&mut c, "-- nothing here", 0).unwrap();
        assert_eq!((r.column_count(), r.row_count()), (0, 0));
        // A failure stops the text and is the answer.
        match run(
            &mut c,
            "SELECT 1; SELECT * FROM nope; INSERT INTO u VALUES (3)",
            0,
        ) {
            Err(ExecFailure::Failed(m)) => assert!(m.contains("nope"), "{m}"),
            other => panic!("{:?}", other.map(|r| rows(&r))),
        }
        assert_eq!(
            rows(&run(&mut c, "SELECT count(*) FROM u", 0).unwrap()),
            "[[2]]"
        );
        match run(&mut c, "SELEC 1", 0) {
            Err(ExecFailure::Failed(m)) => assert!(m.to_lowercase().contains("syntax"), "{m}"),
            other => panic!("{:?}", other.map(|r| rows(&r))),
        }
    }

    #[test]
    fn the_limit_is_exact_and_counts_escapes() {
        let (_db, mut c) = conn();
        // [["xxxx"]] row = ["xxxx"], = 9 bytes per row.
        let sql = "SELECT 'xxxx' FROM range(10)";
        assert_eq!(run(&mut c, sql, 90).unwrap().encoded_bytes(), 90);
        assert!(matches!(run(&mut c, sql, 89), Err(ExecFailure::TooLarge)));
        // 1000 control characters are 6000 bytes of JSON: refused under 6000
        // before a byte of the value is written.
        let sql = "SELECT repeat(chr(1), 1000)";
        assert!(matches!(run(&mut c, sql, 5000), Err(ExecFailure::TooLarge)));
        assert_eq!(run(&mut c, sql, 6005).unwrap().encoded_bytes(), 6005);
        // Blobs count as base64.
        let sql = "SELECT repeat('\\x00'::BLOB, 300)";
        assert!(matches!(run(&mut c, sql, 400), Err(ExecFailure::TooLarge)));
        assert_eq!(run(&mut c, sql, 405).unwrap().encoded_bytes(), 405);
        // Nested values stop inside the value.
        let sql = "SELECT list(i) FROM range(1000000) t(i)";
        assert!(matches!(
            run(&mut c, sql, 1 << 16),
            Err(ExecFailure::TooLarge)
        ));
    }

    #[test]
    fn an_over_limit_stream_stops_before_the_rows_are_produced() {
        let (_db, mut c) = conn();
        // 10^12 rows would never finish if DuckDB materialized them first.
        let t0 = std::time::Instant::now();
        let sql = "SELECT repeat('x', 100) FROM range(1000000000000)";
        assert!(matches!(
            run(&mut c, sql, 1 << 20),
            Err(ExecFailure::TooLarge)
        ));
        assert!(t0.elapsed() < std::time::Duration::from_secs(60));
        // The connection is usable afterwards.
        assert_eq!(rows(&run(&mut c, "SELECT 7", 0).unwrap()), "[[7]]");
    }
}
