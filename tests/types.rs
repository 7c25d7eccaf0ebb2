//! A type matrix end to end: every DuckDB type the API documents, through /execute and
//! through a results page, parsed strictly (serde_json with arbitrary precision, so
//! integers and decimals are compared digit for digit).

mod common;

use common::*;

/// (SQL expression, expected DuckDB type name, expected JSON text of the value).
const MATRIX: &[(&str, &str, &str)] = &[
    ("true", "BOOLEAN", "true"),
    ("NULL::INTEGER", "INTEGER", "null"),
    ("(-128)::TINYINT", "TINYINT", "-128"),
    ("32767::SMALLINT", "SMALLINT", "32767"),
    ("(-2147483648)::INTEGER", "INTEGER", "-2147483648"),
    (
        "9223372036854775807::BIGINT",
        "BIGINT",
        "9223372036854775807",
    ),
    (
        "'-9223372036854775808'::BIGINT",
        "BIGINT",
        "-9223372036854775808",
    ),
    ("255::UTINYINT", "UTINYINT", "255"),
    ("65535::USMALLINT", "USMALLINT", "65535"),
    ("4294967295::UINTEGER", "UINTEGER", "4294967295"),
    (
        "'18446744073709551615'::UBIGINT",
        "UBIGINT",
        "18446744073709551615",
    ),
    (
        "'-170141183460469231731687303715884105728'::HUGEINT",
        "HUGEINT",
        "-170141183460469231731687303715884105728",
    ),
    (
        "'340282366920938463463374607431768211455'::UHUGEINT",
        "UHUGEINT",
        "340282366920938463463374607431768211455",
    ),
    ("1.5::FLOAT", "FLOAT", "1.5"),
    ("0.1::DOUBLE", "DOUBLE", "0.1"),
    ("'NaN'::DOUBLE", "DOUBLE", "\"NaN\""),
    ("'Infinity'::DOUBLE", "DOUBLE", "\"Infinity\""),
    ("'-Infinity'::FLOAT", "FLOAT", "\"-Infinity\""),
    ("123.450::DECIMAL(10,3)", "DECIMAL(10,3)", "123.450"),
    ("(-0.05)::DECIMAL(4,2)", "DECIMAL(4,2)", "-0.05"),
    (
        "'12345678901234567890.123456789'::DECIMAL(38,9)",
        "DECIMAL(38,9)",
        "12345678901234567890.123456789",
    ),
    ("'\\xAA\\xBB\\x00'::BLOB", "BLOB", "\"qrsA\""),
    // WKB of POINT(1 2): byte order 1, type 1, x = 1.0, y = 2.0 (little endian).
    (
        "'POINT(1 2)'::GEOMETRY",
        "GEOMETRY",
        "\"AQEAAAAAAAAAAADwPwAAAAAAAABA\"",
    ),
    ("DATE '2024-02-29'", "DATE", "\"2024-02-29\""),
    ("TIME '13:45:30.123456'", "TIME", "\"13:45:30.123456\""),
    (
        "TIMESTAMP '2024-02-29 13:45:30.5'",
        "TIMESTAMP",
        "\"2024-02-29T13:45:30.5\"",
    ),
    (
        "'2024-02-29 13:45:30.123'::TIMESTAMP_MS",
        "TIMESTAMP_MS",
        "\"2024-02-29T13:45:30.123\"",
    ),
    (
        "'2024-02-29 13:45:30.123456789'::TIMESTAMP_NS",
        "TIMESTAMP_NS",
        "\"2024-02-29T13:45:30.123456789\"",
    ),
    (
        "'2024-02-29 13:45:30+00'::TIMESTAMPTZ",
        "TIMESTAMP WITH TIME ZONE",
        "\"2024-02-29T13:45:30Z\"",
    ),
    (
        "INTERVAL '1 month 2 days 3 seconds'",
        "INTERVAL",
        "{\"months\":1,\"days\":2,\"micros\":3000000}",
    ),
    (
        "'F47AC10B-58CC-4372-A567-0E02B2C3D479'::UUID",
        "UUID",
        "\"f47ac10b-58cc-4372-a567-0e02b2c3d479\"",
    ),
    ("'b'::ENUM('a', 'b')", "ENUM('a', 'b')", "\"b\""),
    ("'infinity'::DATE", "DATE", "\"infinity\""),
    (
        "'13:45:30.25+02:00'::TIMETZ",
        "TIME WITH TIME ZONE",
        "\"13:45:30.25+02:00\"",
    ),
    ("union_value(num := 2)", "UNION(num INTEGER)", "{\"num\":2}"),
    ("'10110'::BIT", "BIT", "\"10110\""),
    ("[1, 2, NULL]", "INTEGER[]", "[1,2,null]"),
    ("[[1], [2, 3]]", "INTEGER[][]", "[[1],[2,3]]"),
    ("[1, 2, 3]::INTEGER[3]", "INTEGER[3]", "[1,2,3]"),
    (
        "{'a': 1, 'b': 'x', 'c': [true]}",
        "STRUCT(a INTEGER, b VARCHAR, c BOOLEAN[])",
        "{\"a\":1,\"b\":\"x\",\"c\":[true]}",
    ),
];

/// Control characters, quotes, backslashes and non-ASCII, built with chr() so the
/// SQL itself stays plain.
const TRICKY_SQL: &str =
    "'q\"b\\' || chr(10) || chr(9) || chr(1) || chr(31) || 'é漢🦀' || chr(127)";
const TRICKY_VALUE: &str = "q\"b\\\n\t\u{1}\u{1f}é漢🦀\u{7f}";

fn select_list() -> String {
    let mut cols: Vec<String> = MATRIX
        .iter()
        .enumerate()
        .map(|(i, (e, _, _))| format!("{e} AS c{i}"))
        .collect();
    cols.push(format!("{TRICKY_SQL} AS tricky"));
    format!("SELECT {}", cols.join(", "))
}

fn check(v: &Value) {
    let types = v["column_types"].as_array().unwrap();
    let row = &v["rows"].as_array().unwrap()[0];
    let row = row.as_array().unwrap();
    assert_eq!(row.len(), MATRIX.len() + 1);
    for (i, (expr, ty, json)) in MATRIX.iter().enumerate() {
        assert_eq!(types[i], *ty, "type of {expr}");
        // Numbers compare digit for digit (arbitrary_precision keeps their text).
        let want: Value = serde_json::from_str(json).unwrap();
        assert_eq!(row[i], want, "value of {expr}");
    }
    assert_eq!(row[MATRIX.len()], TRICKY_VALUE);
    assert_eq!(types[MATRIX.len()], "VARCHAR");
}

#[test]
fn type_matrix_through_execute_and_pages() {
    let agent = Agent::start(&[]);
    let mut c = agent.client();
    let sql = select_list();
    let v = c.execute(&sql);
    check(&v);
    let id = c.submit(&sql);
    assert_eq!(c.wait_terminal(&id)["status"], "SUCCEEDED");
    let r = c.get(&format!("/queries/{id}/results"));
    // The raw body holds no bare control characters and no NaN/Infinity literals.
    assert!(
        r.body.iter().all(|&b| b >= 0x20),
        "raw control byte in body"
    );
    check(&r.json());
}

#[test]
fn map_form_is_lossless() {
    let agent = Agent::start(&[]);
    let mut c = agent.client();
    let v = c.execute("SELECT MAP {'k1': 1, 'k2': NULL} AS m, MAP {1: 'a'} AS n, MAP {}::MAP(VARCHAR, INTEGER) AS e");
    assert_eq!(
        v["column_types"],
        serde_json::json!([
            "MAP(VARCHAR, INTEGER)",
            "MAP(INTEGER, VARCHAR)",
            "MAP(VARCHAR, INTEGER)"
        ])
    );
    let row = &v["rows"][0];
    // Keys of any type survive: a MAP is an array of {"key","value"} entries.
    assert_eq!(
        row[0],
        serde_json::json!([{"key": "k1", "value": 1}, {"key": "k2", "value": null}])
    );
    assert_eq!(row[1], serde_json::json!([{"key": 1, "value": "a"}]));
    assert_eq!(row[2], serde_json::json!([]));
}
