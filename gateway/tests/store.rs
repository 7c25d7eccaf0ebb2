//! The gateway store against real databases: every test body runs twice, on
//! a SQLite file and on a PostgreSQL cluster of its own (tests/common).

mod common;

use std::time::{Duration, Instant};

use client::resolver::{Resolver, RolloutDefaults, Target};
use common::TestDb;
use gateway::store::*;

/// Runs each named `async fn(&TestDb)` on both backends.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = crate::common::TestDb::sqlite();
                super::$name(&db).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = crate::common::TestDb::postgres() {
                    super::$name(&db).await;
                }
            }
        }
    )*};
}

on_both!(
    endpoints_crud,
    assignments_crud,
    users_groups_tokens,
    grants_filters_masks,
    revision_bumps_once_per_write,
    hostile_input_refused,
    migrations_reopen_and_concurrent_open,
    cache_freshness,
    resolver_reads_the_store,
    concurrent_writers_serialize,
    history_append_filter_prune,
);

async fn open(db: &TestDb) -> Store {
    Store::open(&db.url).await.expect("open store")
}

fn kind<T: std::fmt::Debug>(r: Result<T, StoreError>) -> ErrorKind {
    r.expect_err("expected an error").kind()
}

fn remote(name: &str, token: &str) -> NewEndpoint {
    serde_json::from_value(serde_json::json!({
        "name": name, "url": "http://127.0.0.1:9443", "type": "REMOTE", "auth_token": token
    }))
    .unwrap()
}

fn local(name: &str) -> NewEndpoint {
    serde_json::from_value(serde_json::json!({"name": name, "type": "LOCAL"})).unwrap()
}

fn assign(principal: &str, ty: &str, is_default: bool) -> NewAssignment {
    serde_json::from_value(serde_json::json!({
        "principal": principal, "principal_type": ty, "is_default": is_default
    }))
    .unwrap()
}

async fn endpoints_crud(db: &TestDb) {
    let s = open(db).await;
    let secret = "s3cret-agent-token";
    let e = s.create_endpoint(remote("agent-1", secret)).await.unwrap();
    assert_eq!(e.name, "agent-1");
    assert_eq!(e.kind, EndpointType::Remote);
    assert_eq!(e.status, EndpointStatus::Active);
    assert!(e.has_auth_token);
    let json = serde_json::to_string(&e).unwrap();
    assert!(
        !json.contains(secret) && !json.contains("\"auth_token\""),
        "{json}"
    );
    assert!(json.contains("\"type\":\"REMOTE\"") && json.contains("\"status\":\"ACTIVE\""));

    s.create_endpoint(local("local")).await.unwrap();
    assert_eq!(
        kind(s.create_endpoint(remote("agent-1", "x")).await),
        ErrorKind::Conflict
    );
    let names: Vec<String> = s
        .list_endpoints()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["agent-1", "local"]);
    let listed = serde_json::to_string(&s.list_endpoints().await.unwrap()).unwrap();
    assert!(!listed.contains(secret));
    assert_eq!(s.get_endpoint("agent-1").await.unwrap(), e);
    assert_eq!(kind(s.get_endpoint("nope").await), ErrorKind::NotFound);
    // The token is kept for routing, only in the snapshot.
    assert_eq!(
        s.snapshot().endpoint("agent-1").unwrap().auth_token(),
        secret
    );
    assert!(!format!("{:?}", s.snapshot()).contains(secret));

    // A REMOTE endpoint needs a token and an http://host:port URL.
    let mut bad = remote("agent-2", "t");
    bad.auth_token = None;
    assert_eq!(kind(s.create_endpoint(bad).await), ErrorKind::Invalid);
    let mut bad = remote("agent-2", "t");
    bad.url = "ftp://x".into();
    assert_eq!(kind(s.create_endpoint(bad).await), ErrorKind::Invalid);
    assert_eq!(kind(s.get_endpoint("agent-2").await), ErrorKind::NotFound);

    // Patch: given fields change, the rest stays; the result is validated whole.
    let patch: EndpointPatch = serde_json::from_value(
        serde_json::json!({"status": "INACTIVE", "url": "http://10.0.0.1:1"}),
    )
    .unwrap();
    let u = s.update_endpoint("agent-1", patch).await.unwrap();
    assert_eq!(u.status, EndpointStatus::Inactive);
    assert_eq!(u.url, "http://10.0.0.1:1");
    assert_eq!(u.kind, EndpointType::Remote);
    assert!(u.has_auth_token);
    assert_eq!(u.created_at, e.created_at);
    assert_eq!(
        s.snapshot().endpoint("agent-1").unwrap().auth_token(),
        secret
    );
    let to_remote: EndpointPatch =
        serde_json::from_value(serde_json::json!({"type": "REMOTE"})).unwrap();
    assert_eq!(
        kind(s.update_endpoint("local", to_remote).await),
        ErrorKind::Invalid,
        "a LOCAL endpoint without URL or token cannot become REMOTE"
    );
    let rename: EndpointPatch = serde_json::from_value(serde_json::json!({"name": "b"})).unwrap();
    assert_eq!(
        kind(s.update_endpoint("local", rename).await),
        ErrorKind::Invalid
    );
    assert_eq!(
        kind(s.update_endpoint("nope", EndpointPatch::default()).await),
        ErrorKind::NotFound
    );
    // Write-only and typed fields in the API's JSON.
    assert!(serde_json::from_value::<NewEndpoint>(
        serde_json::json!({"name": "x", "type": "LOCAL", "token": "t"})
    )
    .is_err());
    assert!(serde_json::from_value::<NewEndpoint>(
        serde_json::json!({"name": "x", "type": "SIDEWAYS"})
    )
    .is_err());
    assert!(
        serde_json::from_value::<EndpointPatch>(serde_json::json!({"status": "BROKEN"})).is_err()
    );

    s.delete_endpoint("local").await.unwrap();
    assert_eq!(kind(s.delete_endpoint("local").await), ErrorKind::NotFound);
    assert_eq!(s.list_endpoints().await.unwrap().len(), 1);
}

async fn assignments_crud(db: &TestDb) {
    let s = open(db).await;
    s.create_endpoint(remote("a", "tok-a")).await.unwrap();
    s.create_endpoint(local("loc")).await.unwrap();
    assert_eq!(
        kind(
            s.create_assignment("nope", assign("ann", "user", true))
                .await
        ),
        ErrorKind::NotFound
    );
    let a1 = s
        .create_assignment("a", assign("Ann", "user", true))
        .await
        .unwrap();
    assert_eq!(a1.principal, "ann", "principal names are stored lower-case");
    assert_eq!(a1.principal_type, PrincipalType::User);
    assert!(a1.is_default && !a1.fallback_local);
    let json = serde_json::to_value(&a1).unwrap();
    for f in [
        "id",
        "principal",
        "principal_type",
        "is_default",
        "fallback_local",
    ] {
        assert!(json.get(f).is_some(), "{f} in {json}");
    }
    assert_eq!(json["principal_type"], "user");
    let g: NewAssignment = serde_json::from_value(serde_json::json!({
        "principal": "ops", "principal_type": "group", "fallback_local": true
    }))
    .unwrap();
    let a2 = s.create_assignment("a", g).await.unwrap();
    assert!(a2.id > a1.id && a2.fallback_local && !a2.is_default);
    assert_eq!(
        kind(s.create_assignment("a", assign("ann", "user", false)).await),
        ErrorKind::Conflict
    );
    assert!(serde_json::from_value::<NewAssignment>(
        serde_json::json!({"principal": "x", "principal_type": "team"})
    )
    .is_err());
    let a3 = s
        .create_assignment("loc", assign("ann", "user", false))
        .await
        .unwrap();
    assert_eq!(
        s.list_assignments("a").await.unwrap(),
        vec![a1.clone(), a2.clone()]
    );
    assert_eq!(kind(s.list_assignments("nope").await), ErrorKind::NotFound);
    // An id on another endpoint is not found through this one.
    assert_eq!(
        kind(s.delete_assignment("a", a3.id).await),
        ErrorKind::NotFound
    );
    s.delete_assignment("loc", a3.id).await.unwrap();
    assert_eq!(
        kind(s.delete_assignment("loc", a3.id).await),
        ErrorKind::NotFound
    );

    // Deleting an endpoint deletes its assignments.
    s.delete_endpoint("a").await.unwrap();
    assert!(s.snapshot().assignments.is_empty());
    s.create_endpoint(remote("a", "tok-a")).await.unwrap();
    assert!(s.list_assignments("a").await.unwrap().is_empty());
}

async fn users_groups_tokens(db: &TestDb) {
    let s = open(db).await;
    let ann = s.upsert_user("Ann", false).await.unwrap();
    assert_eq!(ann.name, "ann");
    assert!(!ann.is_admin);
    assert!(s.upsert_user("ann", true).await.unwrap().is_admin);
    s.upsert_user("bob", false).await.unwrap();
    assert_eq!(
        kind(s.add_member("ops", "carol").await),
        ErrorKind::NotFound
    );
    s.add_member("ops", "ann").await.unwrap();
    s.add_member("EU", "ann").await.unwrap();
    s.add_member("ops", "bob").await.unwrap();
    assert_eq!(kind(s.add_member("ops", "ann").await), ErrorKind::Conflict);
    let groups = s.list_groups().await.unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[1].name, "ops");
    assert_eq!(groups[1].members, ["ann", "bob"]);
    let users = s.list_users().await.unwrap();
    assert_eq!(users[0].groups, ["eu", "ops"]);

    let p = s.snapshot().principal("ANN").unwrap();
    assert_eq!(p.user, "ann");
    assert_eq!(p.groups, ["eu", "ops"]);
    assert!(s.snapshot().principal("carol").is_none());
    assert!(s.snapshot().is_admin("ann") && !s.snapshot().is_admin("bob"));

    // Tokens: stored as SHA-256, looked up by hash.
    let tok = "ann-token-0123456789";
    let row = s.create_token("ann", tok).await.unwrap();
    assert_eq!(row.fingerprint, token_sha256(tok)[..12]);
    assert!(!serde_json::to_string(&row).unwrap().contains(tok));
    assert_eq!(kind(s.create_token("ann", tok).await), ErrorKind::Conflict);
    assert_eq!(
        kind(s.create_token("carol", "carol-token-1").await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(s.create_token("ann", "short").await),
        ErrorKind::Invalid
    );
    let who = s.authenticate(tok).await.unwrap().unwrap();
    assert_eq!(who.user, "ann");
    assert_eq!(who.groups, ["eu", "ops"]);
    assert!(who.is_admin);
    assert!(s
        .authenticate("ann-token-012345678")
        .await
        .unwrap()
        .is_none());
    assert!(s.authenticate("").await.unwrap().is_none());
    assert!(s
        .authenticate(&"x".repeat(1 << 20))
        .await
        .unwrap()
        .is_none());
    assert_eq!(s.list_tokens("ann").await.unwrap(), vec![row]);
    s.revoke_token(tok).await.unwrap();
    assert!(s.authenticate(tok).await.unwrap().is_none());
    assert_eq!(kind(s.revoke_token(tok).await), ErrorKind::NotFound);

    // Removing a member; deleting a user drops its memberships and tokens.
    s.remove_member("eu", "ann").await.unwrap();
    assert_eq!(
        kind(s.remove_member("eu", "ann").await),
        ErrorKind::NotFound
    );
    s.create_token("bob", "bob-token-0123").await.unwrap();
    s.delete_user("bob").await.unwrap();
    assert!(s.authenticate("bob-token-0123").await.unwrap().is_none());
    assert_eq!(s.list_groups().await.unwrap()[0].members, ["ann"]);
    assert_eq!(kind(s.delete_user("bob").await), ErrorKind::NotFound);
    assert_eq!(kind(s.get_user("bob").await), ErrorKind::NotFound);

    // Bootstrap admin: idempotent, and a token is one user's only.
    s.ensure_admin("root", "root-token-0123").await.unwrap();
    let rev = s.snapshot().revision;
    s.ensure_admin("root", "root-token-0123").await.unwrap();
    assert_eq!(
        s.snapshot().revision,
        rev,
        "a second ensure_admin changes nothing"
    );
    assert!(
        s.authenticate("root-token-0123")
            .await
            .unwrap()
            .unwrap()
            .is_admin
    );
    s.upsert_user("root", false).await.unwrap();
    s.ensure_admin("root", "root-token-0123").await.unwrap();
    assert!(
        s.snapshot().is_admin("root"),
        "ensure_admin restores the flag"
    );
    assert_eq!(
        kind(s.ensure_admin("other", "root-token-0123").await),
        ErrorKind::Conflict
    );
}

async fn grants_filters_masks(db: &TestDb) {
    let s = open(db).await;
    let g = |p: &str, ty: &str, table: Option<&str>, schema: Option<&str>| -> NewGrant {
        serde_json::from_value(serde_json::json!({
            "principal": p, "principal_type": ty, "table": table, "schema": schema
        }))
        .unwrap()
    };
    let g1 = s
        .create_grant(g("ann", "user", Some("Main.Users"), None))
        .await
        .unwrap();
    assert_eq!(g1.table.as_deref(), Some("main.users"));
    let json = serde_json::to_value(&g1).unwrap();
    assert!(json.get("schema").is_none(), "{json}");
    let g2 = s
        .create_grant(g("analysts", "group", None, Some("sales")))
        .await
        .unwrap();
    assert_eq!(
        kind(
            s.create_grant(g("ann", "user", Some("main.users"), None))
                .await
        ),
        ErrorKind::Conflict
    );
    assert_eq!(
        kind(s.create_grant(g("ann", "user", Some("t"), Some("s"))).await),
        ErrorKind::Invalid
    );
    assert_eq!(
        kind(s.create_grant(g("ann", "user", None, None)).await),
        ErrorKind::Invalid
    );
    assert_eq!(
        kind(
            s.create_grant(g("ann", "user", Some("a.b.c.d"), None))
                .await
        ),
        ErrorKind::Invalid
    );
    assert_eq!(s.list_grants().await.unwrap(), vec![g1.clone(), g2.clone()]);

    let f = |p: &str, table: &str, pred: &str| -> NewRowFilter {
        serde_json::from_value(serde_json::json!({
            "principal": p, "principal_type": "user", "table": table, "predicate": pred
        }))
        .unwrap()
    };
    let f1 = s
        .create_row_filter(f("ann", "users", "region = 'EU'"))
        .await
        .unwrap();
    assert_eq!(
        kind(
            s.create_row_filter(f("ann", "users", "region = 'EU'"))
                .await
        ),
        ErrorKind::Conflict
    );
    for bad in [
        "region = ",
        "a = 1; DROP TABLE users",
        "id IN (SELECT id FROM secrets)",
        "users.region = 'EU'",
        "",
    ] {
        let e = s
            .create_row_filter(f("ann", "users", bad))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{bad}: {e}");
    }
    assert!(matches!(
        s.create_row_filter(f("ann", "users", "id IN (SELECT id FROM secrets)"))
            .await,
        Err(StoreError::Policy(_))
    ));

    let m = |p: &str, column: &str, expr: &str| -> NewColumnMask {
        serde_json::from_value(serde_json::json!({
            "principal": p, "principal_type": "group", "table": "users",
            "column": column, "expression": expr
        }))
        .unwrap()
    };
    let m1 = s
        .create_column_mask(m("ops", "Email", "'***'"))
        .await
        .unwrap();
    assert_eq!(m1.column, "email");
    assert_eq!(
        kind(s.create_column_mask(m("ops", "email", "'x'")).await),
        ErrorKind::Conflict
    );
    assert_eq!(
        kind(s.create_column_mask(m("ops", "name", "(SELECT 1)")).await),
        ErrorKind::Invalid
    );
    assert_eq!(
        kind(s.create_column_mask(m("ops", "", "'x'")).await),
        ErrorKind::Invalid
    );
    assert_eq!(s.list_row_filters().await.unwrap(), vec![f1.clone()]);
    assert_eq!(s.list_column_masks().await.unwrap(), vec![m1.clone()]);

    // The snapshot's policy is what the rewriter reads.
    s.upsert_user("ann", false).await.unwrap();
    s.add_member("ops", "ann").await.unwrap();
    let snap = s.snapshot();
    let policy = snap.policy("memory").unwrap();
    let shared = snap.shared_policy("memory").unwrap();
    assert!(std::sync::Arc::ptr_eq(
        &shared,
        &snap.shared_policy("memory").unwrap()
    ));
    let ann = snap.principal("ann").unwrap();
    assert!(shared.access(&ann, &policy.key("users").unwrap()).is_some());
    let users = policy.key("users").unwrap();
    let access = policy.access(&ann, &users).expect("granted");
    assert_eq!(access.filter.unwrap().to_string(), "(region = 'EU')");
    assert_eq!(access.masks.len(), 1);
    assert_eq!(access.masks[0].expr.to_string(), "'***'");
    assert!(policy
        .access(&ann, &policy.key("sales.orders").unwrap())
        .is_none());
    let bob = gateway::Principal::new("bob", &["analysts"]);
    assert!(policy
        .access(&bob, &policy.key("sales.orders").unwrap())
        .is_some());

    for (r, what) in [
        (s.delete_grant(g2.id).await, "grant"),
        (s.delete_row_filter(f1.id).await, "filter"),
        (s.delete_column_mask(m1.id).await, "mask"),
    ] {
        r.unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    assert_eq!(kind(s.delete_grant(g2.id).await), ErrorKind::NotFound);
    assert_eq!(kind(s.delete_row_filter(f1.id).await), ErrorKind::NotFound);
    assert_eq!(kind(s.delete_column_mask(m1.id).await), ErrorKind::NotFound);
    let policy = s.snapshot().policy("memory").unwrap();
    let access = policy.access(&ann, &users).unwrap();
    assert!(access.filter.is_none() && access.masks.is_empty());
}

async fn revision_bumps_once_per_write(db: &TestDb) {
    let s = open(db).await;
    let mut rev = s.revision().await.unwrap();
    assert_eq!(rev, s.snapshot().revision);
    macro_rules! bumps {
        ($e:expr) => {{
            let out = $e.await.unwrap();
            rev += 1;
            assert_eq!(s.revision().await.unwrap(), rev, "{}", stringify!($e));
            assert_eq!(
                s.snapshot().revision,
                rev,
                "snapshot after {}",
                stringify!($e)
            );
            out
        }};
    }
    macro_rules! no_bump {
        ($e:expr) => {{
            assert!($e.await.is_err(), "{}", stringify!($e));
            assert_eq!(s.revision().await.unwrap(), rev, "{}", stringify!($e));
        }};
    }
    bumps!(s.create_endpoint(local("l")));
    no_bump!(s.create_endpoint(local("l")));
    bumps!(s.update_endpoint("l", EndpointPatch::default()));
    no_bump!(s.update_endpoint("m", EndpointPatch::default()));
    let a = bumps!(s.create_assignment("l", assign("u", "user", true)));
    no_bump!(s.create_assignment("l", assign("u", "user", true)));
    bumps!(s.delete_assignment("l", a.id));
    no_bump!(s.delete_assignment("l", a.id));
    bumps!(s.upsert_user("u", false));
    bumps!(s.add_member("g", "u"));
    no_bump!(s.add_member("g", "u"));
    bumps!(s.create_token("u", "u-token-0123"));
    bumps!(s.revoke_token("u-token-0123"));
    bumps!(s.delete_endpoint("l"));
    no_bump!(s.delete_endpoint("l"));
    // Reads do not bump.
    s.list_endpoints().await.unwrap();
    s.list_users().await.unwrap();
    assert_eq!(s.revision().await.unwrap(), rev);
}

async fn hostile_input_refused(db: &TestDb) {
    let s = open(db).await;
    let huge = "a".repeat(1 << 20);
    let hostile = [
        "a'b",
        "a\"b",
        "x; DROP TABLE gw_users",
        "a\nb",
        "a\0b",
        "",
        huge.as_str(),
        "ünïcode",
        "a b",
    ];
    for name in hostile {
        let short = &name[..name.len().min(30)];
        assert_eq!(
            kind(s.upsert_user(name, false).await),
            ErrorKind::Invalid,
            "{short:?}"
        );
        assert_eq!(
            kind(s.create_endpoint(local(name)).await),
            ErrorKind::Invalid,
            "{short:?}"
        );
        assert_eq!(
            kind(s.create_assignment("x", assign(name, "user", true)).await),
            ErrorKind::Invalid,
            "{short:?}"
        );
        assert_eq!(
            kind(s.add_member(name, "u").await),
            ErrorKind::Invalid,
            "{short:?}"
        );
        // Spaces and non-ASCII letters are legal in (quoted) table names.
        let legal_table_name = ["ünïcode", "a b"].contains(&name);
        let grant: NewGrant = serde_json::from_value(serde_json::json!({
            "principal": "u", "principal_type": "user", "table": name
        }))
        .unwrap();
        if !legal_table_name {
            assert_eq!(
                kind(s.create_grant(grant).await),
                ErrorKind::Invalid,
                "{short:?}"
            );
        }
        let mask: NewColumnMask = serde_json::from_value(serde_json::json!({
            "principal": "u", "principal_type": "user", "table": "t", "column": name,
            "expression": "'x'"
        }))
        .unwrap();
        if !legal_table_name {
            assert_eq!(
                kind(s.create_column_mask(mask).await),
                ErrorKind::Invalid,
                "{short:?}"
            );
        }
    }
    let filter: NewRowFilter = serde_json::from_value(serde_json::json!({
        "principal": "u", "principal_type": "user", "table": "t",
        "predicate": format!("a = '{huge}'")
    }))
    .unwrap();
    let e = s.create_row_filter(filter).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.to_string().len() < 200, "errors do not echo huge input");
    let mut ep = remote("ok", "t");
    ep.url = format!("http://{huge}:1");
    assert_eq!(kind(s.create_endpoint(ep).await), ErrorKind::Invalid);
    let ep = remote("ok", &huge);
    assert_eq!(kind(s.create_endpoint(ep).await), ErrorKind::Invalid);
    assert_eq!(
        kind(s.create_endpoint(remote("ok", "bad\ntoken")).await),
        ErrorKind::Invalid
    );
    assert_eq!(
        kind(s.ensure_admin("root", "has space token").await),
        ErrorKind::Invalid
    );
    // A nearly-legal long name is fine, one byte more is not.
    let longest = "n".repeat(MAX_NAME_BYTES);
    s.upsert_user(&longest, false).await.unwrap();
    assert_eq!(
        kind(s.upsert_user(&format!("{longest}n"), false).await),
        ErrorKind::Invalid
    );
    // Nothing hostile got in.
    assert!(s.list_endpoints().await.unwrap().is_empty());
    assert_eq!(s.list_users().await.unwrap().len(), 1);
    assert!(s.list_grants().await.unwrap().is_empty());
}

async fn migrations_reopen_and_concurrent_open(db: &TestDb) {
    // Several stores open one fresh database at once: the migrations run once.
    let opens: Vec<_> = (0..16)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { Store::open(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.unwrap().expect("concurrent open"));
    }
    stores[0].create_endpoint(local("l")).await.unwrap();
    stores[1].upsert_user("u", true).await.unwrap();
    let rev = stores[1].revision().await.unwrap();
    assert_eq!(rev, 2);
    drop(stores);
    // Reopening applies nothing again and keeps the data.
    for _ in 0..2 {
        let s = open(db).await;
        assert_eq!(s.snapshot().revision, rev);
        assert_eq!(s.list_endpoints().await.unwrap()[0].name, "l");
        assert!(s.snapshot().is_admin("u"));
    }
}

async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn cache_freshness(db: &TestDb) {
    let a = open(db).await;
    let b = open(db).await;
    let poll = Duration::from_millis(100);
    let _refresh = a.spawn_refresh(poll);

    // A write through A is in A's snapshot when it returns.
    a.create_endpoint(local("via-a")).await.unwrap();
    assert!(a.snapshot().endpoint("via-a").is_some());

    // A write through B (another gateway on the same database) reaches A
    // within the poll interval (plus a generous margin for a loaded machine).
    let t = Instant::now();
    b.create_endpoint(local("via-b")).await.unwrap();
    b.upsert_user("u", false).await.unwrap();
    let tok = "u-token-abcdef";
    b.create_token("u", tok).await.unwrap();
    wait_for("B's writes in A's snapshot", Duration::from_secs(5), || {
        a.snapshot().revision == b.snapshot().revision
    })
    .await;
    eprintln!("A saw B's writes after {:?} (poll {poll:?})", t.elapsed());
    assert!(a.snapshot().endpoint("via-b").is_some());
    assert_eq!(a.authenticate(tok).await.unwrap().unwrap().user, "u");
    // B did not poll, yet its own writes are current for it.
    assert!(b.snapshot().endpoint("via-b").is_some());
    assert!(
        b.snapshot().endpoint("via-a").is_some(),
        "B's write loaded A's too"
    );

    // Revoked on B: refused on A after the poll.
    b.revoke_token(tok).await.unwrap();
    wait_for("revocation on A", Duration::from_secs(5), || {
        a.snapshot().token_owner(&token_sha256(tok)).is_none()
    })
    .await;

    // Dropping the handle stops the polling.
    drop(_refresh);
    let rev = a.snapshot().revision;
    b.delete_endpoint("via-b").await.unwrap();
    tokio::time::sleep(poll * 4).await;
    assert_eq!(a.snapshot().revision, rev);
    assert!(a.refresh().await.unwrap());
    assert!(a.snapshot().endpoint("via-b").is_none());
    assert!(!a.refresh().await.unwrap());
}

async fn resolver_reads_the_store(db: &TestDb) {
    let s = open(db).await;
    let local_exec = client::LocalExecutor::open(None).unwrap();
    let mut defaults = RolloutDefaults::default();
    defaults.0.remote_routing = true;
    let resolver =
        Resolver::new(Box::new(s.config_source()), defaults.clone(), local_exec).unwrap();
    let d = resolver.resolve("ann", &[]).unwrap();
    assert_eq!(d.target, Target::Local);
    // The defaults are those of a TOML file without [health]/[client].
    let from_toml = client::resolver::config::parse("", "x", &defaults).unwrap();
    assert_eq!(resolver.config().health, from_toml.health);
    assert_eq!(resolver.config().client, from_toml.client);
    assert!(resolver.config().rollout.remote_routing);

    s.create_endpoint(remote("agent-1", "tok-1")).await.unwrap();
    s.create_assignment("agent-1", assign("ann", "user", true))
        .await
        .unwrap();
    assert!(resolver.reload_if_changed(), "a new revision reloads");
    assert!(!resolver.reload_if_changed(), "the same revision does not");
    let d = resolver.resolve("ann", &[]).unwrap();
    assert_eq!(
        d.target,
        Target::Remote {
            endpoint: "agent-1".into()
        },
        "{d}"
    );
    let ep = resolver.config().endpoint("agent-1").unwrap().clone();
    assert_eq!(ep.token, "tok-1");
    assert_eq!(ep.url, "http://127.0.0.1:9443");

    // The kill switch: INACTIVE sends ann local on the next decision.
    let off: EndpointPatch =
        serde_json::from_value(serde_json::json!({"status": "INACTIVE"})).unwrap();
    s.update_endpoint("agent-1", off).await.unwrap();
    assert!(resolver.reload_if_changed());
    assert_eq!(resolver.resolve("ann", &[]).unwrap().target, Target::Local);
    assert!(resolver.last_reload_error().is_none());
}

async fn concurrent_writers_serialize(db: &TestDb) {
    // Two stores (two gateways) write at once: every write gets its own
    // revision, none is lost, and both end on the same snapshot.
    let a = open(db).await;
    let b = open(db).await;
    let writes: Vec<_> = (0..20)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { s.upsert_user(&format!("user{i}"), false).await })
        })
        .collect();
    for w in writes {
        w.await.unwrap().expect("concurrent write");
    }
    assert_eq!(a.revision().await.unwrap(), 20);
    assert_eq!(a.list_users().await.unwrap().len(), 20);
    a.refresh().await.unwrap();
    b.refresh().await.unwrap();
    assert_eq!(a.snapshot().revision, 20);
    assert_eq!(b.snapshot().users.len(), 20);
    // The same name from both at once: one wins, one conflicts, nothing else.
    let (x, y) = tokio::join!(
        a.create_endpoint(local("same")),
        b.create_endpoint(local("same"))
    );
    let kinds: Vec<bool> = [x.is_ok(), y.is_ok()].into();
    assert_eq!(kinds.iter().filter(|ok| **ok).count(), 1, "{x:?} {y:?}");
    let err = x.err().or(y.err()).unwrap();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(a.revision().await.unwrap(), 21);
}

/// PostgreSQL only (a SQLite file cannot go away): with the database down,
/// the query path keeps working from the last snapshot, and writes and
/// refreshes fail as internal errors (HTTP 500), never a hang or a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_keeps_the_last_snapshot() {
    let Some(db) = TestDb::postgres() else { return };
    let s = open(&db).await;
    s.create_endpoint(remote("agent-1", "tok-1")).await.unwrap();
    s.upsert_user("ann", false).await.unwrap();
    s.create_token("ann", "ann-token-0123").await.unwrap();
    let rev = s.snapshot().revision;
    let _refresh = s.spawn_refresh(Duration::from_millis(50));
    db.cluster().unwrap().stop();

    let t = Instant::now();
    let e = s.upsert_user("bob", false).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
    let e = s.refresh().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
    assert!(t.elapsed() < Duration::from_secs(30), "failed fast enough");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.snapshot().revision, rev);
    assert!(s.snapshot().endpoint("agent-1").is_some());
    assert_eq!(
        s.authenticate("ann-token-0123")
            .await
            .unwrap()
            .unwrap()
            .user,
        "ann"
    );
    let cfg = s
        .snapshot()
        .resolver_config(&RolloutDefaults::default())
        .unwrap();
    assert_eq!(cfg.endpoints.len(), 1);
}

async fn history_append_filter_prune(db: &TestDb) {
    use gateway::store::history::{HistoryFilter, HistoryRecord};
    let s = open(db).await;
    let rev = s.revision().await.unwrap();
    let rec = |at_ms: i64, user: &str, outcome: &str| HistoryRecord {
        at_ms,
        query_id: format!("q{at_ms}"),
        user: user.into(),
        groups: "g1,g2".into(),
        door: "http".into(),
        tables: "db.main.people".into(),
        decision: "allowed".into(),
        outcome: outcome.into(),
        reason: "it's \"quoted\"; DROP TABLE x".into(),
        endpoint: "a1".into(),
        rule: "user-default".into(),
        left: "a2: unreachable".into(),
        rows: 7,
        duration_us: 1234,
        queued_us: 5,
    };
    let batch: Vec<HistoryRecord> = (1..=5)
        .map(|i| {
            rec(
                1000 * i,
                if i % 2 == 0 { "bob" } else { "ann" },
                if i == 5 { "failed" } else { "answered" },
            )
        })
        .collect();
    s.append_history(batch.clone()).await.unwrap();
    // History is not configuration: the revision stays.
    assert_eq!(s.revision().await.unwrap(), rev);
    let all = s
        .history(HistoryFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0], batch[4], "newest first, every field kept");
    let ann = s
        .history(HistoryFilter {
            user: Some("ann".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        ann.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
        vec![5000, 3000, 1000]
    );
    let f = s
        .history(HistoryFilter {
            user: Some("ann".into()),
            since_ms: Some(2000),
            outcome: Some("answered".into()),
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(f.iter().map(|r| r.at_ms).collect::<Vec<_>>(), vec![3000]);
    let two = s
        .history(HistoryFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(two.len(), 2);
    assert_eq!(s.prune_history(3000).await.unwrap(), 2);
    let left = s
        .history(HistoryFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
        vec![5000, 4000, 3000]
    );
}
