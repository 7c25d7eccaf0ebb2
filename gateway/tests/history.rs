//! The query history, end to end through the real `compute-gateway` on a
//! real SQLite store file: every query's record (answered, denied, failed)
//! readable by an admin with filters and by each user for their own queries
//! only; nothing queued lost on a graceful shutdown (a new gateway on the
//! same store finds every query of the old one); records past the retention
//! deleted.

mod harness;

use std::time::{Duration, Instant};

use harness::*;
use serde_json::{json, Value};

struct Setup {
    dir: std::path::PathBuf,
    db: std::path::PathBuf,
}

fn setup() -> Setup {
    let dir = scratch_dir("history");
    let db = make_db(&dir);
    Setup { dir, db }
}

impl Setup {
    fn store(&self) -> String {
        format!("sqlite:{}", self.dir.join("gateway.db").display())
    }
    fn gateway(&self, extra: &[(&str, &str)]) -> Proc {
        start_gateway(&self.store(), &self.db, extra)
    }
}

fn user<'a>(gw: &'a Proc, name: &str) -> Caller<'a> {
    let a = Caller {
        gw,
        token: ADMIN_TOKEN.into(),
    };
    a.admin("PUT", &format!("/admin/users/{name}"), json!({}));
    a.admin(
        "POST",
        "/admin/grants",
        json!({"principal": name, "principal_type": "user", "table": "people"}),
    );
    let t = a.admin("POST", "/admin/tokens", json!({ "user": name }));
    Caller {
        gw,
        token: t["token"].as_str().unwrap().to_string(),
    }
}

/// Waits until `f` holds of the admin's view of `query` (the writer batches).
fn history_until(gw: &Proc, query: &str, f: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let a = Caller {
        gw,
        token: ADMIN_TOKEN.into(),
    };
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r = a.req("GET", &format!("/admin/queries?{query}"), None);
        assert_eq!(r.status, 200, "{}", r.text());
        let rows = r.json().as_array().unwrap().clone();
        if f(&rows) {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "history never got there: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_query_is_kept_readable_by_admins_and_by_its_own_user_only() {
    let s = setup();
    let gw = s.gateway(&[]);
    let alice = user(&gw, "alice");
    let bob = user(&gw, "bob");
    let answered = alice.rows("SELECT id FROM people WHERE name = 'zebra-marker' OR id = 1");
    let answered_id = answered["query_id"].as_str().unwrap().to_string();
    assert_eq!(alice.query("SELECT * FROM secrets").status, 403);
    assert_eq!(
        alice
            .query("SELECT CAST(name AS INTEGER) FROM people")
            .status,
        400
    );
    assert_eq!(bob.query("SELECT count(*) FROM people").status, 200);

    let rows = history_until(&gw, "user=alice", |r| r.len() == 3);
    let outcomes: Vec<&str> = rows
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["failed", "denied", "answered"], "{rows:?}");
    let a = &rows[2];
    assert_eq!(a["query_id"], answered_id.as_str());
    assert_eq!(a["user"], "alice");
    assert_eq!(a["door"], "http");
    assert_eq!(a["decision"], "allowed");
    assert_eq!(a["endpoint"], "local");
    assert_eq!(a["rows"], 1);
    assert!(a["tables"].as_str().unwrap().ends_with("people"), "{a}");
    assert!(a["duration_us"].as_i64().unwrap() > 0, "{a}");
    let d = &rows[1];
    assert_eq!(d["decision"], "denied");
    assert!(d["reason"].as_str().unwrap().contains("secrets"), "{d}");
    // Never the SQL text or its values.
    let all = serde_json::to_string(&rows).unwrap();
    assert!(
        !all.contains("zebra-marker") && !all.contains("SELECT"),
        "{all}"
    );

    // Filters: outcome, since (Unix ms and RFC 3339), limit.
    let r = history_until(&gw, "user=alice&outcome=denied", |r| r.len() == 1);
    assert_eq!(r[0]["outcome"], "denied");
    history_until(&gw, "since=99999999999999", |r| r.is_empty());
    history_until(&gw, "since=2020-01-01T00:00:00Z&user=alice", |r| {
        r.len() == 3
    });
    history_until(&gw, "limit=2", |r| r.len() == 2);
    let admin = Caller {
        gw: &gw,
        token: ADMIN_TOKEN.into(),
    };
    for bad in ["outcome=won", "since=yesterday", "limit=0", "limit=1001"] {
        let r = admin.req("GET", &format!("/admin/queries?{bad}"), None);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }

    // A user reads their own queries, never another's, never the admin route.
    let mine = bob.req("GET", "/v1/history", None);
    assert_eq!(mine.status, 200, "{}", mine.text());
    let mine = mine.json();
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine[0]["user"], "bob");
    assert_eq!(bob.req("GET", "/v1/history?user=alice", None).status, 400);
    assert_eq!(bob.req("GET", "/admin/queries", None).status, 403);
    let r = alice
        .req("GET", "/v1/history?outcome=answered", None)
        .json();
    assert_eq!(r.as_array().unwrap().len(), 1, "{r}");

    let m = raw(gw.addr, "GET", "/metrics", &[], b"").unwrap().text();
    assert!(m.contains("gateway_history_written_total"), "{m}");
    assert!(m.contains("gateway_history_lost_total 0"), "{m}");
}

#[test]
fn a_graceful_shutdown_writes_every_queued_record() {
    let s = setup();
    let mut gw = s.gateway(&[]);
    let alice = user(&gw, "alice");
    let mut ids = Vec::new();
    for i in 0..60 {
        let r = alice.rows(&format!("SELECT id + {i} FROM people"));
        ids.push(r["query_id"].as_str().unwrap().to_string());
    }
    // At once: most records are still queued in the writer.
    gw.signal("TERM");
    let st = gw.wait_exit(PATIENCE).expect("the gateway did not exit");
    assert!(st.success(), "{st:?}: {}", gw.log());
    let gw = s.gateway(&[]);
    let rows = history_until(&gw, "user=alice&limit=1000", |r| r.len() >= ids.len());
    let kept: std::collections::HashSet<&str> = rows
        .iter()
        .map(|r| r["query_id"].as_str().unwrap())
        .collect();
    for id in &ids {
        assert!(kept.contains(id.as_str()), "query {id} lost");
    }
}

#[test]
fn records_past_the_retention_are_deleted_and_history_can_be_off() {
    let s = setup();
    let gw = s.gateway(&[("QUERY_HISTORY_RETENTION", "2s")]);
    let alice = user(&gw, "alice");
    alice.rows("SELECT 1");
    history_until(&gw, "user=alice", |r| r.len() == 1);
    // Pruned within the retention plus its check interval (1 s here).
    history_until(&gw, "user=alice", |r| r.is_empty());
    let token = alice.token.clone();
    drop(gw);

    let gw = s.gateway(&[("QUERY_HISTORY", "false")]);
    let alice = Caller { gw: &gw, token };
    alice.rows("SELECT 2");
    std::thread::sleep(Duration::from_millis(500));
    history_until(&gw, "user=alice", |r| r.is_empty());
    let m = raw(gw.addr, "GET", "/metrics", &[], b"").unwrap().text();
    assert!(!m.contains("gateway_history_written_total"), "{m}");
}
