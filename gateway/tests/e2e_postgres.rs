//! End to end on PostgreSQL: two real `compute-gateway` processes share one
//! store in a throwaway PostgreSQL cluster (the store tests' harness), in
//! front of one real agent. A policy written through one gateway applies on
//! the other within its refresh interval; routing reads the shared
//! endpoints and assignments.

mod common;
mod harness;

use harness::*;
use serde_json::json;

#[test]
fn two_gateways_share_one_postgres_store() {
    let Some(pg) = common::TestDb::postgres() else {
        return;
    };
    let dir = scratch_dir("pg");
    let db = make_db(&dir);
    let agent = start_agent(&db, &[]);
    let gw1 = start_gateway(&pg.url, &db, &[]);
    let gw2 = start_gateway(&pg.url, &db, &[]);
    let a1 = Caller {
        gw: &gw1,
        token: ADMIN_TOKEN.into(),
    };
    a1.admin("PUT", "/admin/users/pat", json!({}));
    let token = a1.admin("POST", "/admin/tokens", json!({"user": "pat"}))["token"]
        .as_str()
        .unwrap()
        .to_string();
    a1.admin(
        "POST",
        "/compute-endpoints",
        json!({"name": "a1", "url": agent.url(), "type": "REMOTE", "auth_token": AGENT_TOKEN}),
    );
    a1.admin(
        "POST",
        "/compute-endpoints/a1/assignments",
        json!({"principal": "pat", "principal_type": "user", "is_default": true}),
    );
    a1.admin(
        "POST",
        "/admin/grants",
        json!({"principal": "pat", "principal_type": "user", "table": "people"}),
    );
    a1.admin(
        "POST",
        "/admin/row-filters",
        json!({"principal": "pat", "principal_type": "user", "table": "people", "predicate": "id <= 2"}),
    );
    let pat2 = Caller {
        gw: &gw2,
        token: token.clone(),
    };
    // The second gateway learns the token, the route and the policy from the
    // shared store.
    eventually("gateway 2 routes pat to a1 under the filter", || {
        let r = pat2.query("SELECT id FROM people ORDER BY id");
        r.status == 200 && r.json()["rows"] == json!([[1], [2]]) && r.json()["endpoint"] == "a1"
    });
    // A change through gateway 1 reaches gateway 2.
    a1.admin(
        "POST",
        "/admin/column-masks",
        json!({"principal": "pat", "principal_type": "user", "table": "people", "column": "name", "expression": "upper(name)"}),
    );
    eventually("gateway 2 applies the new mask", || {
        let r = pat2.query("SELECT name FROM people ORDER BY id");
        r.status == 200 && r.json()["rows"] == json!([["ANN"], ["BOB"]])
    });
    let pat1 = Caller { gw: &gw1, token };
    assert_eq!(
        pat1.rows("SELECT name FROM people ORDER BY id")["rows"],
        json!([["ANN"], ["BOB"]])
    );
    assert_eq!(pat1.query("SELECT * FROM secrets").status, 403);
}
