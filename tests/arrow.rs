//! Arrow results end to end (issue 12): the type matrix read back with the
//! `arrow` crate and compared column by column with DuckDB's own Arrow export
//! of the same query in this process (duckdb-rs `query_arrow`, same DuckDB
//! build); paging a 120k-row Arrow result row by row; JSON and Arrow jobs
//! side by side; RESULT_TOO_LARGE, cancel and TTL on Arrow jobs; the request
//! forms (`format`, `Accept`) and their errors.

mod common;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_ipc::reader::StreamReader;
use arrow_schema::DataType;
use common::*;
use serde_json::json;

const ARROW: &str = "application/vnd.apache.arrow.stream";

/// Reads one IPC stream; panics with context when it is not one.
fn read_stream(r: &Resp) -> (arrow_schema::SchemaRef, Vec<RecordBatch>) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some(ARROW));
    let reader = StreamReader::try_new(std::io::Cursor::new(r.body.clone()), None)
        .unwrap_or_else(|e| panic!("not an IPC stream ({e})"));
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().unwrap();
    (schema, batches)
}

fn post_arrow(c: &mut Client, path: &str, body: serde_json::Value) -> Resp {
    let mut body = body;
    body["format"] = json!("arrow");
    c.post(path, &body)
}

/// Submits `sql` as an Arrow job and waits for it; returns its id and final status.
fn submit_arrow(c: &mut Client, sql: &str) -> (String, serde_json::Value) {
    let r = post_arrow(c, "/queries", json!({ "sql": sql }));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["query_id"].as_str().unwrap().to_string();
    let st = c.wait_terminal(&id);
    (id, st)
}

/// One column of all batches, concatenated.
fn column(batches: &[RecordBatch], i: usize) -> ArrayRef {
    let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
    arrow_select::concat::concat(&parts).unwrap()
}

/// DuckDB's own Arrow export of `sql`, in this process.
fn reference(sql: &str) -> Vec<RecordBatch> {
    let db = duckdb::Connection::open_in_memory().unwrap();
    let mut stmt = db.prepare(sql).unwrap();
    stmt.query_arrow([]).unwrap().collect()
}

/// Every column of the matrix, as SQL expressions (the JSON matrix of
/// tests/types.rs, plus nested and NULL-heavy columns).
const MATRIX: &[&str] = &[
    "true",
    "NULL::INTEGER",
    "(-128)::TINYINT",
    "32767::SMALLINT",
    "(-2147483648)::INTEGER",
    "9223372036854775807::BIGINT",
    "'-9223372036854775808'::BIGINT",
    "255::UTINYINT",
    "65535::USMALLINT",
    "4294967295::UINTEGER",
    "'18446744073709551615'::UBIGINT",
    "'-170141183460469231731687303715884105728'::HUGEINT",
    "'340282366920938463463374607431768211455'::UHUGEINT",
    "'10110'::BIT",
    "'POINT(1 2)'::GEOMETRY",
    "1.5::FLOAT",
    "0.1::DOUBLE",
    "'NaN'::DOUBLE",
    "'Infinity'::DOUBLE",
    "'-Infinity'::FLOAT",
    "123.450::DECIMAL(10,3)",
    "(-0.05)::DECIMAL(4,2)",
    "'12345678901234567890.123456789'::DECIMAL(38,9)",
    "'\\xAA\\xBB\\x00'::BLOB",
    "DATE '2024-02-29'",
    "TIME '13:45:30.123456'",
    "TIMESTAMP '2024-02-29 13:45:30.5'",
    "'2024-02-29 13:45:30.123'::TIMESTAMP_MS",
    "'2024-02-29 13:45:30.123456789'::TIMESTAMP_NS",
    "'2024-02-29 13:45:30+00'::TIMESTAMPTZ",
    "INTERVAL '1 month 2 days 3 seconds'",
    "'F47AC10B-58CC-4372-A567-0E02B2C3D479'::UUID",
    "'b'::ENUM('a', 'b')",
    "'infinity'::DATE",
    "'13:45:30.25+02:00'::TIMETZ",
    "union_value(num := 2)",
    "[1, 2, NULL]",
    "[[1], [2, 3]]",
    "[1, 2, 3]::INTEGER[3]",
    "{'a': 1, 'b': 'x', 'c': [true]}",
    "'q\"b\\' || chr(10) || chr(9) || chr(1) || chr(31) || 'é漢🦀' || chr(127)",
    // Nested beyond the JSON matrix.
    "MAP {'k1': 1, 'k2': NULL}",
    "MAP {1: 'a'}",
    "[{'x': [1, NULL], 'y': MAP {'m': [2.5]}}, NULL]",
    "{'inner': {'deep': ['a', NULL, 'c']}, 'e': 'a'::ENUM('a', 'b')}",
    "[['b'::ENUM('a', 'b')]]",
];

/// Types DuckDB 2.0 cannot export to Arrow by default (each must fail
/// with an error naming its column, checked below). None so far: every type
/// of the JSON matrix exports, UHUGEINT, BIT and GEOMETRY included (above).
const NOT_EXPORTED: &[&str] = &[];

#[test]
fn type_matrix_matches_duckdbs_own_arrow_export() {
    let agent = Agent::start(&[]);
    let mut c = agent.client();
    // Three rows: the values, all NULL (NULL-heavy), the values again.
    let cols: Vec<String> = MATRIX
        .iter()
        .enumerate()
        .map(|(i, e)| format!("CASE WHEN r = 1 THEN NULL ELSE {e} END AS c{i}"))
        .collect();
    let sql = format!("SELECT {} FROM range(3) t(r) ORDER BY r", cols.join(", "));
    let want = reference(&sql);
    let check = |batches: &[RecordBatch], what: &str| {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 3, "{what}");
        for (i, expr) in MATRIX.iter().enumerate() {
            let got = column(batches, i);
            let mut exp = column(&want, i);
            if exp.data_type() != got.data_type() {
                // The agent unpacks dictionaries (ENUM) to their values.
                exp = arrow_cast::cast(&exp, got.data_type()).unwrap_or_else(|e| {
                    panic!(
                        "{what}: {} : {:?} vs {:?}: {e}",
                        expr,
                        exp.data_type(),
                        got.data_type()
                    )
                });
            }
            assert!(
                !matches!(got.data_type(), DataType::Dictionary(..)),
                "{what}: {}",
                expr
            );
            assert_eq!(got.as_ref(), exp.as_ref(), "{what}: value of {}", expr);
            // Arrow unions have no validity of their own (their children do).
            if !matches!(got.data_type(), DataType::Union(..)) {
                let nulls = if expr.starts_with("NULL") { 3 } else { 1 };
                assert_eq!(got.null_count(), nulls, "{what}: NULL row of {}", expr);
            }
        }
    };
    // /execute with format in the body.
    let r = post_arrow(&mut c, "/execute", json!({ "sql": sql }));
    assert_eq!(r.header("x-row-count"), Some("3"));
    let (schema, batches) = read_stream(&r);
    assert_eq!(schema.fields().len(), MATRIX.len());
    assert_eq!(schema.field(0).name(), "c0");
    check(&batches, "/execute");
    // /execute with Accept.
    let body = serde_json::to_vec(&json!({ "sql": sql })).unwrap();
    let r = c.request("POST", "/execute", &[("Accept", ARROW)], Some(&body));
    check(&read_stream(&r).1, "/execute Accept");
    // A job and its page.
    let (id, st) = submit_arrow(&mut c, &sql);
    assert_eq!(st["status"], "SUCCEEDED", "{st}");
    assert_eq!(st["format"], "arrow");
    assert_eq!(st["row_count"], 3);
    let r = c.get(&format!("/queries/{id}/results"));
    assert_eq!(r.header("x-next-page-token"), None);
    check(&read_stream(&r).1, "page");
    for e in NOT_EXPORTED {
        let r = post_arrow(
            &mut c,
            "/execute",
            json!({ "sql": format!("SELECT 1 AS fine, {e} AS odd") }),
        );
        let v = r.expect_error(500, "EXECUTION_ERROR");
        assert!(v["error"].as_str().unwrap().contains("\"odd\""), "{v}");
    }
}

#[test]
fn a_120k_row_result_pages_row_by_row() {
    let agent = Agent::start(&[]);
    let mut c = agent.client();
    let n = 120_000i64;
    let sql = format!(
        "SELECT i, 'row ' || i AS s, CASE WHEN i % 7 = 0 THEN NULL ELSE i * 0.5 END AS d FROM range({n}) t(i) ORDER BY i"
    );
    let (id, st) = submit_arrow(&mut c, &sql);
    assert_eq!(st["row_count"], n);
    // Page sizes that cut DuckDB's 2048-row batches anywhere, and the largest.
    for size in [5000usize, 777] {
        let mut next = 0i64;
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &token {
                Some(t) => format!("/queries/{id}/results?max_results={size}&page_token={t}"),
                None => format!("/queries/{id}/results?max_results={size}"),
            };
            let r = c.get(&path);
            assert_eq!(r.header("x-row-count"), Some("120000"));
            let tok = r.header("x-next-page-token").map(str::to_string);
            let (_, batches) = read_stream(&r);
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            assert!(rows <= size);
            for b in &batches {
                let i = b.column(0).as_primitive::<Int64Type>();
                let s = b.column(1).as_string::<i32>();
                let d = b.column(2);
                for k in 0..b.num_rows() {
                    assert_eq!(i.value(k), next, "page {pages}");
                    assert_eq!(s.value(k), format!("row {next}"));
                    assert_eq!(d.is_null(k), next % 7 == 0, "row {next}");
                    next += 1;
                }
            }
            pages += 1;
            match tok {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(next, n, "page size {size}");
        assert_eq!(pages, (n as usize).div_ceil(size));
    }
    // The old gateways' token form and a page past the end.
    let r = c.get(&format!(
        "/queries/{id}/results?page_token=MTE5OTk5&max_results=10"
    ));
    let (_, b) = read_stream(&r);
    assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    assert_eq!(r.header("x-next-page-token"), None);
    c.get(&format!("/queries/{id}/results?page_token=OTk5OTk5OQ=="))
        .expect_error(400, "VALIDATION_ERROR");
}

#[test]
fn json_and_arrow_jobs_side_by_side() {
    let agent = Agent::start(&[]);
    let mut c = agent.client();
    let mut ids = Vec::new();
    for k in 0..8 {
        let sql = format!("SELECT i + {k} AS v FROM range(3000) t(i) ORDER BY i");
        let arrow = k % 2 == 0;
        let body = json!({ "sql": sql });
        let r = if arrow {
            post_arrow(&mut c, "/queries", body)
        } else {
            c.post("/queries", &body)
        };
        assert_eq!(r.status, 202, "{}", r.text());
        ids.push((k, arrow, r.json()["query_id"].as_str().unwrap().to_string()));
    }
    for (k, arrow, id) in &ids {
        let st = c.wait_terminal(id);
        assert_eq!(st["status"], "SUCCEEDED");
        let r = c.get(&format!("/queries/{id}/results?max_results=5000"));
        if *arrow {
            assert_eq!(st["format"], "arrow");
            let (_, b) = read_stream(&r);
            let v = column(&b, 0);
            let v = v.as_primitive::<Int64Type>();
            assert_eq!(v.len(), 3000);
            assert_eq!(v.value(0), *k as i64);
            assert_eq!(v.value(2999), 2999 + *k as i64);
        } else {
            // JSON status and pages are as they always were: no format field.
            assert!(st.get("format").is_none(), "{st}");
            assert_eq!(r.header("content-type"), Some("application/json"));
            let v = r.json();
            assert_eq!(v["rows"][0][0], *k as i64);
            assert_eq!(v["row_count"], 3000);
        }
    }
    // /execute: JSON by default, Arrow when asked.
    let v = c.execute("SELECT 41 + 1 AS x");
    assert_eq!(v["rows"], json!([[42]]));
    let r = post_arrow(&mut c, "/execute", json!({ "sql": "SELECT 42 AS x" }));
    assert_eq!(
        column(&read_stream(&r).1, 0)
            .as_primitive::<arrow_array::types::Int32Type>()
            .value(0),
        42
    );
    // Retained bytes count both kinds, and drop when they are deleted.
    let before = agent.health()["result_bytes"].as_u64().unwrap();
    assert!(before > 0);
    for (_, _, id) in &ids {
        assert_eq!(c.delete(&format!("/queries/{id}")).status, 200);
    }
    let h = agent.health();
    assert_eq!(h["result_bytes"], 0, "{h}");
    assert_eq!(h["stored_jobs"], 0, "{h}");
}

#[test]
fn request_forms_and_errors() {
    let agent = Agent::start(&[]);
    let mut c = agent.client();
    for bad in [json!("ARROW"), json!("csv"), json!(1)] {
        c.post("/execute", &json!({ "sql": "SELECT 1", "format": bad }))
            .expect_error(400, "VALIDATION_ERROR");
        c.post("/queries", &json!({ "sql": "SELECT 1", "format": bad }))
            .expect_error(400, "VALIDATION_ERROR");
    }
    // The body's format wins over Accept.
    let body = br#"{"sql":"SELECT 1 AS one","format":"json"}"#;
    let r = c.request("POST", "/execute", &[("Accept", ARROW)], Some(body));
    assert_eq!(r.json()["rows"], json!([[1]]));
    // Failures stay JSON with the usual codes.
    post_arrow(&mut c, "/execute", json!({ "sql": "SELECT * FROM nope" }))
        .expect_error(500, "EXECUTION_ERROR");
    // Statements without rows and texts of several statements.
    let r = post_arrow(
        &mut c,
        "/execute",
        json!({ "sql": "CREATE TABLE t AS SELECT 1 AS a; SELECT a FROM t" }),
    );
    assert_eq!(r.header("x-row-count"), Some("1"));
    let r = post_arrow(&mut c, "/execute", json!({ "sql": "-- only a comment" }));
    let (schema, b) = read_stream(&r);
    assert_eq!((schema.fields().len(), b.len()), (0, 0));
    // An empty result is a schema and no rows.
    let r = post_arrow(
        &mut c,
        "/execute",
        json!({ "sql": "SELECT 1 AS x WHERE false" }),
    );
    let (schema, b) = read_stream(&r);
    assert_eq!(schema.field(0).name(), "x");
    assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
}

#[test]
fn arrow_jobs_obey_limits_cancel_and_ttl() {
    let agent = Agent::start(&[
        ("MAX_RESULT_BYTES", "1000000"),
        ("QUERY_RESULT_TTL", "1s"),
        ("QUERY_CLEANUP_INTERVAL", "100ms"),
    ]);
    let mut c = agent.client();
    // Over the limit: RESULT_TOO_LARGE, for a job and for /execute.
    let big = "SELECT repeat('x', 100) AS s FROM range(100000)";
    let (id, st) = submit_arrow(&mut c, big);
    assert_eq!(st["status"], "FAILED", "{st}");
    assert_eq!(st["error_code"], "RESULT_TOO_LARGE", "{st}");
    c.get(&format!("/queries/{id}/results"))
        .expect_error(409, "QUERY_NOT_AVAILABLE");
    post_arrow(&mut c, "/execute", json!({ "sql": big })).expect_error(500, "RESULT_TOO_LARGE");
    // Under it: the IPC stream the client gets is within the limit.
    let r = post_arrow(
        &mut c,
        "/execute",
        json!({ "sql": "SELECT repeat('x', 100) AS s FROM range(9000)" }),
    );
    assert!(r.body.len() <= 1_000_000, "{}", r.body.len());
    assert_eq!(
        read_stream(&r)
            .1
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        9000
    );
    // Cancel a running Arrow job.
    let r = post_arrow(
        &mut c,
        "/queries",
        json!({ "sql": "SELECT count(*) FROM range(100000000000) a(x), range(10) b(y) WHERE x * y = -1" }),
    );
    let long = r.json()["query_id"].as_str().unwrap().to_string();
    eventually("running", || {
        (c.get(&format!("/queries/{long}")).json()["status"] == "RUNNING").then_some(())
    });
    let r = c.post(&format!("/queries/{long}/cancel"), &json!({}));
    assert_eq!(r.json()["status"], "CANCELED");
    let st = c.wait_terminal(&long);
    assert_eq!(st["status"], "CANCELED");
    assert_eq!(st["format"], "arrow");
    // TTL: a finished Arrow job and its retained bytes go after the TTL.
    let (id, st) = submit_arrow(&mut c, "SELECT * FROM range(5000)");
    assert_eq!(st["status"], "SUCCEEDED");
    assert!(agent.health()["result_bytes"].as_u64().unwrap() > 5000 * 8);
    eventually("arrow job expired", || {
        let h = agent.health();
        (h["stored_jobs"] == 0 && h["result_bytes"] == 0).then_some(())
    });
    c.get(&format!("/queries/{id}/results"))
        .expect_error(404, "NOT_FOUND");
}
