//! DuckDB's icu extension in the real agent binary, over real TCP: it is
//! linked in and loaded although the agent locks its DuckDB (no external
//! access, so nothing loads from disk; configuration locked), `current_date`, `AT TIME ZONE`,
//! `TIMESTAMPTZ` casts and arithmetic, `date_trunc` and collations answer,
//! and `DUCKDB_TIME_ZONE` decides the zone they compute in (UTC by default).

mod common;

use common::*;
use serde_json::{json, Value};

/// The one row of an `/execute` answer.
fn row(c: &mut Client, sql: &str) -> Vec<Value> {
    let v = c.execute(sql);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{sql}: {v}");
    rows[0].as_array().unwrap().clone()
}

/// The civil date (`YYYY-MM-DD`, UTC) of `epoch` seconds.
fn utc_date(epoch: f64) -> String {
    // civil_from_days (proleptic Gregorian), the inverse of the harness's
    // days_from_civil.
    let z = (epoch / 86_400.0).floor() as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[test]
fn icu_is_loaded_in_the_locked_agent() {
    let agent = Agent::start(&[]);
    let mut c = agent.client();
    // icu's functions and settings exist (duckdb_extensions() would say
    // so too, but it lists the extension folder, which the locked agent
    // may not read).
    assert_eq!(
        row(
            &mut c,
            "SELECT count(DISTINCT function_name) FROM duckdb_functions() \
             WHERE function_name IN ('icu_sort_key', 'pg_timezone_names', 'make_timestamptz', 'current_localtimestamp')"
        ),
        vec![json!(4)]
    );
    // The agent's DuckDB really is locked down: no file (so no extension
    // could be loaded from disk, autoloaded or not), no setting changes.
    assert_eq!(
        row(
            &mut c,
            "SELECT current_setting('enable_external_access'), current_setting('lock_configuration')"
        ),
        vec![json!(false), json!(true)]
    );
    // icu's own settings are locked like every other.
    let r = c.post("/execute", &json!({ "sql": "SET TimeZone = 'Asia/Tokyo'" }));
    let e = r.expect_error(500, "EXECUTION_ERROR");
    assert!(e["error"].as_str().unwrap().contains("locked"), "{e}");
    assert_eq!(
        row(&mut c, "SELECT current_setting('TimeZone')"),
        vec![json!("UTC")]
    );
}

#[test]
fn current_date_and_at_time_zone_answer_in_utc_by_default() {
    let agent = Agent::start(&[]);
    let mut c = agent.client();
    let before = now_epoch();
    let r = row(
        &mut c,
        "SELECT current_date, today(), now() AT TIME ZONE 'Europe/Amsterdam'",
    );
    let after = now_epoch();
    let today = r[0].as_str().unwrap();
    assert!(
        [utc_date(before), utc_date(after)]
            .iter()
            .any(|d| d == today),
        "current_date {today} is not the UTC date"
    );
    assert_eq!(r[1], r[0]);
    // A TIMESTAMP of Amsterdam's wall clock: one or two hours ahead of UTC.
    let wall = r[2].as_str().unwrap();
    let wall = parse_rfc3339_utc(&format!("{wall}Z")).unwrap_or_else(|| panic!("{wall}"));
    let ahead = wall - before;
    assert!(
        [3600.0, 7200.0]
            .iter()
            .any(|h| (ahead - h).abs() < 60.0 + (after - before)),
        "Amsterdam is {ahead} s ahead of UTC?"
    );
}

/// The same statements on an agent in UTC and one in Amsterdam: the zone
/// decides casts, `date_trunc`, `TIMESTAMPTZ` arithmetic across a DST change
/// and how a TIMESTAMPTZ is rendered as text; the instants in JSON are UTC.
#[test]
fn duckdb_time_zone_decides_the_zone_sql_computes_in() {
    let utc = Agent::start(&[]);
    let ams = Agent::start(&[("DUCKDB_TIME_ZONE", "Europe/Amsterdam")]);
    let (mut u, mut a) = (utc.client(), ams.client());
    let both = |c: &mut Client, sql: &str| row(c, sql);

    let sql = "SELECT current_setting('TimeZone')";
    assert_eq!(both(&mut u, sql), vec![json!("UTC")]);
    assert_eq!(both(&mut a, sql), vec![json!("Europe/Amsterdam")]);

    // Rendered as text in the agent's zone (winter +01, summer +02).
    let sql = "SELECT TIMESTAMPTZ '2026-01-15 12:00:00+00'::VARCHAR, TIMESTAMPTZ '2026-07-15 12:00:00+00'::VARCHAR";
    assert_eq!(
        both(&mut u, sql),
        vec![
            json!("2026-01-15 12:00:00+00"),
            json!("2026-07-15 12:00:00+00")
        ]
    );
    assert_eq!(
        both(&mut a, sql),
        vec![
            json!("2026-01-15 13:00:00+01"),
            json!("2026-07-15 14:00:00+02")
        ]
    );

    // 23:30 UTC is already the next day in Amsterdam: the cast to DATE and
    // date_trunc('day', ...) follow the zone. JSON carries the instant in UTC.
    let sql = "SELECT (TIMESTAMPTZ '2026-01-15 23:30:00+00')::DATE, date_trunc('day', TIMESTAMPTZ '2026-01-15 23:30:00+00')";
    assert_eq!(
        both(&mut u, sql),
        vec![json!("2026-01-15"), json!("2026-01-15T00:00:00Z")]
    );
    assert_eq!(
        both(&mut a, sql),
        vec![json!("2026-01-16"), json!("2026-01-15T23:00:00Z")]
    );

    // A day added across Amsterdam's spring-forward (2026-03-29) is 23 hours
    // there and 24 in UTC.
    let sql = "SELECT TIMESTAMPTZ '2026-03-28 11:00:00+00' + INTERVAL 1 DAY";
    assert_eq!(both(&mut u, sql), vec![json!("2026-03-29T11:00:00Z")]);
    assert_eq!(both(&mut a, sql), vec![json!("2026-03-29T10:00:00Z")]);

    // A wall-clock TIMESTAMP is read in the agent's zone when cast.
    let sql = "SELECT TIMESTAMP '2026-07-01 12:00:00'::TIMESTAMPTZ";
    assert_eq!(both(&mut u, sql), vec![json!("2026-07-01T12:00:00Z")]);
    assert_eq!(both(&mut a, sql), vec![json!("2026-07-01T10:00:00Z")]);

    // The zone an expression names wins over the agent's.
    let sql = "SELECT TIMESTAMPTZ '2026-07-01 12:00:00+00' AT TIME ZONE 'America/New_York'";
    for c in [&mut u, &mut a] {
        assert_eq!(both(c, sql), vec![json!("2026-07-01T08:00:00")]);
    }
}

#[test]
fn icu_collations_order_text_by_language() {
    let agent = Agent::start(&[]);
    let mut c = agent.client();
    let words = "(VALUES ('zebra'), ('Äpfel'), ('apfel'), ('Zucker')) t(w)";
    // Without a collation: byte order, upper case first and 'Ä' after 'z'.
    let v = c.execute(&format!("SELECT w FROM {words} ORDER BY w"));
    assert_eq!(
        v["rows"],
        json!([["Zucker"], ["apfel"], ["zebra"], ["Äpfel"]])
    );
    // German: 'Ä' sorts with 'a', case second.
    let v = c.execute(&format!("SELECT w FROM {words} ORDER BY w COLLATE de"));
    assert_eq!(
        v["rows"],
        json!([["apfel"], ["Äpfel"], ["zebra"], ["Zucker"]])
    );
    // Swedish: 'Ä' is a letter of its own, after 'z'.
    let v = c.execute(&format!("SELECT w FROM {words} ORDER BY w COLLATE sv"));
    assert_eq!(
        v["rows"],
        json!([["apfel"], ["zebra"], ["Zucker"], ["Äpfel"]])
    );
}

#[test]
fn an_unknown_time_zone_stops_startup_with_duckdbs_message() {
    let out = Agent::run_to_exit(&[("DUCKDB_TIME_ZONE", "Mars/Olympus_Mons")], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("TimeZone") && out.stderr.contains("Mars/Olympus_Mons"),
        "{}",
        out.stderr
    );
}
