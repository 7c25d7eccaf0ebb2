//! The type matrix: every DuckDB type the API documents, encoded by the real
//! engine, parsed strictly, compared exactly; type names compared with
//! DuckDB's own `typeof()`.

mod common;

use common::*;

/// (SQL expression, expected JSON text of the value)
const CASES: &[(&str, &str)] = &[
    ("NULL", "null"),
    ("true", "true"),
    ("false", "false"),
    ("(-128)::TINYINT", "-128"),
    ("32767::SMALLINT", "32767"),
    ("(-2147483648)::INTEGER", "-2147483648"),
    ("(-9223372036854775808)::BIGINT", "-9223372036854775808"),
    ("9223372036854775807::BIGINT", "9223372036854775807"),
    ("255::UTINYINT", "255"),
    ("65535::USMALLINT", "65535"),
    ("4294967295::UINTEGER", "4294967295"),
    ("18446744073709551615::UBIGINT", "18446744073709551615"),
    (
        "(-170141183460469231731687303715884105728)::HUGEINT",
        "-170141183460469231731687303715884105728",
    ),
    (
        "170141183460469231731687303715884105727::HUGEINT",
        "170141183460469231731687303715884105727",
    ),
    ("9007199254740993::HUGEINT", "9007199254740993"),
    (
        "340282366920938463463374607431768211455::UHUGEINT",
        "340282366920938463463374607431768211455",
    ),
    ("0.1::FLOAT", "0.1"),
    ("(-2.5)::DOUBLE", "-2.5"),
    ("1e300::DOUBLE", "1e+300"),
    ("'NaN'::DOUBLE", "\"NaN\""),
    ("'Infinity'::DOUBLE", "\"Infinity\""),
    ("'-Infinity'::FLOAT", "\"-Infinity\""),
    ("123.4::DECIMAL(4,1)", "123.4"),
    ("(-0.0005)::DECIMAL(9,4)", "-0.0005"),
    ("123456789012345.678::DECIMAL(18,3)", "123456789012345.678"),
    (
        "12345678901234567890123456.789012345678::DECIMAL(38,12)",
        "12345678901234567890123456.789012345678",
    ),
    (
        "(-99999999999999999999999999999999999999)::DECIMAL(38,0)",
        "-99999999999999999999999999999999999999",
    ),
    ("1.50::DECIMAL(5,2)", "1.50"),
    ("'plain'", "\"plain\""),
    (
        "'a\"b\\c' || chr(10) || chr(9) || chr(13) || chr(1) || chr(31) || chr(8) || chr(12)",
        "\"a\\\"b\\\\c\\n\\t\\r\\u0001\\u001f\\b\\f\"",
    ),
    ("'é漢😀'", "\"é漢😀\""),
    ("'\\xAA\\xBB\\xCC\\x01'::BLOB", "\"qrvMAQ==\""),
    ("''::BLOB", "\"\""),
    (
        "'LINESTRING(0 0, 1 1)'::GEOMETRY",
        "\"AQIAAAACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAPA/AAAAAAAA8D8=\"",
    ),
    ("DATE '2024-02-29'", "\"2024-02-29\""),
    ("DATE '1970-01-01'", "\"1970-01-01\""),
    ("DATE '0044-03-15 (BC)'", "\"-0043-03-15\""),
    ("DATE '12345-06-07'", "\"12345-06-07\""),
    ("'infinity'::DATE", "\"infinity\""),
    ("'-infinity'::DATE", "\"-infinity\""),
    ("TIME '12:34:56.789'", "\"12:34:56.789\""),
    ("TIME '00:00:00'", "\"00:00:00\""),
    ("TIME '24:00:00'", "\"24:00:00\""),
    ("TIMETZ '12:34:56+05:30'", "\"12:34:56+05:30\""),
    ("TIMETZ '01:02:03.5-08'", "\"01:02:03.5-08:00\""),
    (
        "TIMESTAMP '2024-01-02 03:04:05.123456'",
        "\"2024-01-02T03:04:05.123456\"",
    ),
    (
        "TIMESTAMP '1969-12-31 23:59:59.5'",
        "\"1969-12-31T23:59:59.5\"",
    ),
    (
        "TIMESTAMP_S '2024-01-02 03:04:05'",
        "\"2024-01-02T03:04:05\"",
    ),
    (
        "TIMESTAMP_MS '2024-01-02 03:04:05.25'",
        "\"2024-01-02T03:04:05.25\"",
    ),
    (
        "TIMESTAMP_NS '2024-01-02 03:04:05.123456789'",
        "\"2024-01-02T03:04:05.123456789\"",
    ),
    (
        "TIMESTAMPTZ '2024-01-02 03:04:05.5+02'",
        "\"2024-01-02T01:04:05.5Z\"",
    ),
    ("'infinity'::TIMESTAMP", "\"infinity\""),
    (
        "INTERVAL '1 year 2 months 3 days 04:05:06.5'",
        "{\"months\":14,\"days\":3,\"micros\":14706500000}",
    ),
    (
        "INTERVAL '-1 day'",
        "{\"months\":0,\"days\":-1,\"micros\":0}",
    ),
    (
        "'0190bd3a-45cb-7c4e-8a4b-0123456789ab'::UUID",
        "\"0190bd3a-45cb-7c4e-8a4b-0123456789ab\"",
    ),
    (
        "'ffffffff-ffff-ffff-ffff-ffffffffffff'::UUID",
        "\"ffffffff-ffff-ffff-ffff-ffffffffffff\"",
    ),
    (
        "'00000000-0000-0000-0000-000000000000'::UUID",
        "\"00000000-0000-0000-0000-000000000000\"",
    ),
    ("'ok'::mood", "\"ok\""),
    ("'x''y'::ENUM('x''y', 'z')", "\"x'y\""),
    ("'0101'::BIT", "\"0101\""),
    ("'1'::BIT", "\"1\""),
    ("'101010101'::BIT", "\"101010101\""),
    ("[1, 2, NULL]", "[1,2,null]"),
    ("[]::INTEGER[]", "[]"),
    ("[[1], [], [2, 3]]", "[[1],[],[2,3]]"),
    ("[1, 2, 3]::INTEGER[3]", "[1,2,3]"),
    (
        "[['a', NULL], ['b', 'c']]::VARCHAR[2][]",
        "[[\"a\",null],[\"b\",\"c\"]]",
    ),
    (
        "{'a': 1, 'b': 'x', 'c': NULL}",
        "{\"a\":1,\"b\":\"x\",\"c\":null}",
    ),
    (
        "{'key': [1.5::DOUBLE], 'My Col': {'n': true}}",
        "{\"key\":[1.5],\"My Col\":{\"n\":true}}",
    ),
    ("[{'i': 1}, NULL, {'i': 2}]", "[{\"i\":1},null,{\"i\":2}]"),
    (
        "MAP {'k1': 1, 'k2': NULL}",
        "[{\"key\":\"k1\",\"value\":1},{\"key\":\"k2\",\"value\":null}]",
    ),
    (
        "MAP {1: [1.5::DECIMAL(3,1)]}",
        "[{\"key\":1,\"value\":[1.5]}]",
    ),
    (
        "union_value(num := 2)::UNION(num INTEGER, str VARCHAR)",
        "{\"num\":2}",
    ),
    (
        "union_value(str := 'q')::UNION(num INTEGER, str VARCHAR)",
        "{\"str\":\"q\"}",
    ),
    ("'{\"a\": [1, 2]}'::JSON", "\"{\\\"a\\\": [1, 2]}\""),
];

#[test]
fn type_matrix_is_exact_strict_json_with_duckdb_type_names() {
    run_one(config(1), |shard| async move {
        shard
            .execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
            .await
            .expect("create type");
        let mut failures = Vec::new();
        for (expr, want) in CASES {
            let sql = format!("SELECT {expr} AS v, typeof({expr}) AS t");
            let r = match shard.execute(&sql).await {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{expr}: {e}"));
                    continue;
                }
            };
            let text = rows_text(&r);
            // Strict parse of everything a response would carry.
            parse(text.as_bytes());
            parse(r.columns_json());
            parse(r.column_types_json());
            let rows = parse(text.as_bytes());
            let typeof_name = rows[0][1].as_str().unwrap_or_default().to_string();
            let got_value = {
                // The value's exact text: strip `[[` and `,"<typeof>"]]`.
                let tail = format!(",{}]]", serde_json::to_string(&typeof_name).unwrap());
                text.strip_prefix("[[")
                    .and_then(|t| t.strip_suffix(&tail))
                    .unwrap_or(&text)
                    .to_string()
            };
            if got_value != *want {
                failures.push(format!("{expr}: value {got_value} != {want}"));
            }
            if r.column_types()[0] != typeof_name {
                failures.push(format!(
                    "{expr}: column type {:?} != typeof {typeof_name:?}",
                    r.column_types()[0]
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} type cases failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
}

#[test]
fn big_integers_and_decimals_survive_a_strict_parse_exactly() {
    run_one(config(1), |shard| async move {
        let r = shard
            .execute(
                "SELECT 170141183460469231731687303715884105727::HUGEINT AS h, \
                 18446744073709551615::UBIGINT AS u, 9007199254740993::BIGINT AS b, \
                 1234567890123456789.123456789::DECIMAL(38,9) AS d",
            )
            .await
            .unwrap();
        let v = parse(rows_text(&r).as_bytes());
        // arbitrary_precision keeps the number text: no float rounding anywhere.
        assert_eq!(
            v[0][0].to_string(),
            "170141183460469231731687303715884105727"
        );
        assert_eq!(v[0][1].to_string(), "18446744073709551615");
        assert_eq!(v[0][2].to_string(), "9007199254740993");
        assert_eq!(v[0][3].to_string(), "1234567890123456789.123456789");
        assert_eq!(
            parse(r.columns_json()),
            serde_json::json!(["h", "u", "b", "d"])
        );
        assert_eq!(
            parse(r.column_types_json()),
            serde_json::json!(["HUGEINT", "UBIGINT", "BIGINT", "DECIMAL(38,9)"])
        );
    });
}

#[test]
fn nulls_and_values_line_up_across_many_chunks() {
    run_one(config(1), |shard| async move {
        // 10_000 rows span several 2048-row chunks; every third value is NULL,
        // nested values too, so validity bits and child offsets are exercised.
        let r = shard
            .execute(
                "SELECT i, CASE WHEN i % 3 = 0 THEN NULL ELSE 'v' || i END AS s, \
                 CASE WHEN i % 5 = 0 THEN NULL ELSE [i, NULL, i + 1] END AS l, \
                 {'x': CASE WHEN i % 7 = 0 THEN NULL ELSE i END} AS st \
                 FROM range(10000) t(i) ORDER BY i",
            )
            .await
            .unwrap();
        assert_eq!(r.row_count(), 10_000);
        let v = parse(rows_text(&r).as_bytes());
        for (i, row) in v.as_array().unwrap().iter().enumerate() {
            let i = i as i64;
            assert_eq!(row[0], serde_json::json!(i));
            let s = if i % 3 == 0 {
                serde_json::Value::Null
            } else {
                serde_json::json!(format!("v{i}"))
            };
            assert_eq!(row[1], s, "row {i}");
            let l = if i % 5 == 0 {
                serde_json::Value::Null
            } else {
                serde_json::json!([i, null, i + 1])
            };
            assert_eq!(row[2], l, "row {i}");
            let x = if i % 7 == 0 {
                serde_json::Value::Null
            } else {
                serde_json::json!(i)
            };
            assert_eq!(row[3], serde_json::json!({ "x": x }), "row {i}");
        }
    });
}

#[test]
fn result_metadata_for_statements_without_rows() {
    run_one(config(1), |shard| async move {
        let r = shard
            .execute("SELECT 1 AS a, 'x' AS b WHERE false")
            .await
            .unwrap();
        assert_eq!(r.row_count(), 0);
        assert_eq!(rows_text(&r), "[]");
        assert_eq!(r.columns_json(), b"[\"a\",\"b\"]");
        assert_eq!(r.column_types_json(), b"[\"INTEGER\",\"VARCHAR\"]");
        let r = shard
            .execute("CREATE TABLE t AS SELECT 1 AS x")
            .await
            .unwrap();
        parse(r.columns_json());
        parse(rows_text(&r).as_bytes());
        // Column names are escaped like any string.
        let r = shard
            .execute("SELECT 1 AS \"we\"\"ird\nname\"")
            .await
            .unwrap();
        assert_eq!(
            parse(r.columns_json()),
            serde_json::json!(["we\"ird\nname"])
        );
    });
}

#[test]
fn types_without_a_json_form_fail_with_a_clear_message() {
    run_one(config(1), |shard| async move {
        let e = shard
            .execute("SELECT 12345678901234567890123456789012345678901234567890::BIGNUM AS big")
            .await;
        match e {
            Err(executor::JobError::Execution(m)) => {
                assert!(
                    m.contains("big") && m.contains("BIGNUM") && m.contains("VARCHAR"),
                    "{m}"
                )
            }
            other => panic!("expected an execution error, got {other:?}"),
        }
        // The shard keeps serving.
        let r = shard
            .execute("SELECT 12345678901234567890123456789012345678901234567890::BIGNUM::VARCHAR")
            .await
            .unwrap();
        assert_eq!(
            rows_text(&r),
            "[[\"12345678901234567890123456789012345678901234567890\"]]"
        );
    });
}
