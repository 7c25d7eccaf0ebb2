//! Paging a 120k-row result: default, custom and capped page sizes with row-exact
//! content, old-style base64 page tokens, and invalid paging parameters.

mod common;

use common::*;
use serde_json::json;

const ROWS: u64 = 120_000;

fn b64(s: &str) -> String {
    // Standard base64 with padding, written out here so the test does not share the
    // agent's encoder.
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn check_row(row: &serde_json::Value, i: u64) {
    assert_eq!(
        row,
        &json!([i, format!("row-{i}"), i.is_multiple_of(7)]),
        "row {i}"
    );
}

/// Walks every page with `max_results` (None = default) and checks each row; returns
/// the number of pages.
fn walk(c: &mut Client, id: &str, max: Option<&str>, expected_page: u64) -> u64 {
    let mut token: Option<String> = None;
    let mut next_row = 0u64;
    let mut pages = 0;
    loop {
        let mut path = format!("/queries/{id}/results?");
        if let Some(m) = max {
            path.push_str(&format!("max_results={m}&"));
        }
        if let Some(t) = &token {
            path.push_str(&format!("page_token={t}"));
        }
        let r = c.get(&path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let v = r.json();
        assert_eq!(v["row_count"], ROWS, "row_count is the total");
        assert_eq!(v["columns"], json!(["id", "name", "flag"]));
        assert_eq!(v["column_types"], json!(["BIGINT", "VARCHAR", "BOOLEAN"]));
        let rows = v["rows"].as_array().unwrap();
        let want = expected_page.min(ROWS - next_row);
        assert_eq!(rows.len() as u64, want, "page at {next_row}");
        for row in rows {
            check_row(row, next_row);
            next_row += 1;
        }
        pages += 1;
        match v.get("next_page_token") {
            Some(t) => {
                // Emitted tokens are the old form: base64 of the decimal offset.
                assert_eq!(t.as_str().unwrap(), b64(&next_row.to_string()));
                token = Some(t.as_str().unwrap().to_string());
            }
            None => break,
        }
    }
    assert_eq!(next_row, ROWS);
    pages
}

#[test]
fn paging_over_120k_rows() {
    let agent = Agent::start(&[]);
    let mut c = agent.client();
    let id = c.submit(&format!(
        "SELECT i AS id, 'row-' || i AS name, i % 7 = 0 AS flag FROM range({ROWS}) t(i) ORDER BY i"
    ));
    let st = c.wait_terminal(&id);
    assert_eq!(st["status"], "SUCCEEDED", "{st}");
    assert_eq!(st["row_count"], ROWS);

    assert_eq!(walk(&mut c, &id, None, 1000), 120, "default page size 1000");
    assert_eq!(
        walk(&mut c, &id, Some(""), 1000),
        120,
        "empty max_results is the default"
    );
    assert_eq!(walk(&mut c, &id, Some("7000"), 5000), 24, "capped at 5000");
    assert_eq!(
        walk(&mut c, &id, Some("99999999999999999999"), 5000),
        24,
        "huge is capped too"
    );
    assert_eq!(walk(&mut c, &id, Some("4999"), 4999), 25);

    // Old gateways' tokens, plain and percent-encoded.
    for tok in ["MTAwMA==", "MTAwMA%3D%3D", "MTAwMA"] {
        let v = c
            .get(&format!(
                "/queries/{id}/results?page_token={tok}&max_results=3"
            ))
            .json();
        let rows = v["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 3);
        check_row(&rows[0], 1000);
        assert_eq!(v["next_page_token"], b64("1003"));
    }
    // A token at the very end: an empty last page.
    let v = c
        .get(&format!(
            "/queries/{id}/results?page_token={}",
            b64(&ROWS.to_string())
        ))
        .json();
    assert_eq!(v["rows"], json!([]));
    assert!(v.get("next_page_token").is_none());
    // The last partial page.
    let v = c
        .get(&format!(
            "/queries/{id}/results?page_token={}&max_results=10",
            b64("119995")
        ))
        .json();
    assert_eq!(v["rows"].as_array().unwrap().len(), 5);
    assert!(v.get("next_page_token").is_none());

    // Invalid parameters.
    let past = b64(&(ROWS + 1).to_string());
    for q in [
        "page_token=%%%".to_string(),
        format!("page_token={}", b64("nope")),
        format!("page_token={}", b64("-5")),
        format!("page_token={past}"),
        "max_results=0".into(),
        "max_results=-5".into(),
        "max_results=abc".into(),
        "max_results=1.5".into(),
    ] {
        let r = c.request(
            "GET",
            &format!("/queries/{id}/results?{q}"),
            &[("X-Request-ID", "pg")],
            None,
        );
        let v = r.expect_error(400, "VALIDATION_ERROR");
        assert_eq!(v["request_id"], "pg", "{q}");
    }
}

#[test]
fn execute_returns_every_row() {
    let agent = Agent::start(&[]);
    let mut c = agent.client();
    let v = c.execute(&format!(
        "SELECT i AS id, 'row-' || i AS name, i % 7 = 0 AS flag FROM range({ROWS}) t(i) ORDER BY i"
    ));
    assert_eq!(v["row_count"], ROWS);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len() as u64, ROWS);
    for (i, row) in rows.iter().enumerate() {
        check_row(row, i as u64);
    }
}
