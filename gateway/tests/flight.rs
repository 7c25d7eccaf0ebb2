//! The Flight SQL door end to end: the real `compute-gateway` (HTTP and
//! Flight SQL) in front of a real `compute-agent` and its own local DuckDB,
//! both reading one database file; clients are arrow-flight's own Flight SQL
//! client over TCP (and, in `python_clients`, pyarrow.flight and the ADBC
//! Flight SQL driver). Each answer is compared with what `POST /v1/query`
//! answers the same user: the same query path, another door.

mod flight_client;
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_flight::sql::CommandGetTables;
use arrow_flight::CancelStatus;
use flight_client::{Flight, Table};
use futures::StreamExt;
use harness::*;
use serde_json::{json, Value};
use tonic::Code;

struct Setup {
    gw: Proc,
    agent: Proc,
    flight: Flight,
    /// Tokens: `loc` runs on local compute, `rem` through the agent (no
    /// fallback), `nobody` is granted nothing.
    loc: String,
    rem: String,
    nobody: String,
}

impl Setup {
    fn admin(&self) -> Caller<'_> {
        Caller {
            gw: &self.gw,
            token: ADMIN_TOKEN.into(),
        }
    }

    fn http(&self, token: &str) -> Caller<'_> {
        Caller {
            gw: &self.gw,
            token: token.into(),
        }
    }
}

/// A gateway with Flight SQL, an agent, and the users and policy above:
/// group `analysts` may read `people` (EU rows only, e-mail masked) and
/// `big`; `secrets` is granted to no one.
fn setup(tag: &str, extra: &[(&str, &str)]) -> Setup {
    let dir = scratch_dir(tag);
    let db = make_db(&dir);
    let (gw, flight_addr) = start_gateway_flight(
        &format!("sqlite:{}", dir.join("gateway.db").display()),
        &db,
        extra,
    );
    let agent = start_agent(&db, &[]);
    let admin = Caller {
        gw: &gw,
        token: ADMIN_TOKEN.into(),
    };
    admin.admin(
        "POST",
        "/compute-endpoints",
        json!({"name": "a1", "url": agent.url(), "type": "REMOTE", "auth_token": AGENT_TOKEN}),
    );
    let mut tokens = Vec::new();
    for name in ["loc", "rem", "nobody"] {
        admin.admin("PUT", &format!("/admin/users/{name}"), json!({}));
        if name != "nobody" {
            admin.admin(
                "PUT",
                &format!("/admin/groups/analysts/members/{name}"),
                Value::Null,
            );
        }
        if name == "rem" {
            admin.admin(
                "POST",
                "/compute-endpoints/a1/assignments",
                json!({"principal": name, "principal_type": "user", "is_default": true, "fallback_local": false}),
            );
        }
        let t = admin.admin("POST", "/admin/tokens", json!({ "user": name }));
        tokens.push(t["token"].as_str().unwrap().to_string());
    }
    let group = |mut b: Value| {
        b["principal"] = json!("analysts");
        b["principal_type"] = json!("group");
        b
    };
    for t in ["people", "big"] {
        admin.admin("POST", "/admin/grants", group(json!({ "table": t })));
    }
    admin.admin(
        "POST",
        "/admin/row-filters",
        group(json!({"table": "people", "predicate": "region = 'EU'"})),
    );
    admin.admin(
        "POST",
        "/admin/column-masks",
        group(json!({"table": "people", "column": "email", "expression": "left(email, 2) || '…'"})),
    );
    drop(admin);
    Setup {
        flight: Flight::new(flight_addr),
        gw,
        agent,
        nobody: tokens.pop().unwrap(),
        rem: tokens.pop().unwrap(),
        loc: tokens.pop().unwrap(),
    }
}

/// A JSON cell as arrow's display writes the same value.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `POST /v1/query`'s answer as a [`Table`].
fn http_table(s: &Setup, token: &str, sql: &str) -> Table {
    let v = s.http(token).rows(sql);
    Table {
        columns: v["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect(),
        rows: v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(cell).collect())
            .collect(),
    }
}

fn rows(t: &Table) -> Vec<Vec<&str>> {
    t.rows
        .iter()
        .map(|r| r.iter().map(String::as_str).collect())
        .collect()
}

/// Text a user of `analysts` must never read: other regions' rows, raw
/// e-mail addresses, the ungranted table, the policy's own text.
const HIDDEN: &[&str] = &[
    "bob",
    "dan",
    "@example.com",
    "launch codes",
    "region = 'EU'",
    "left(email",
];

fn assert_hidden_absent(what: &str, text: &str) {
    for h in HIDDEN {
        assert!(!text.contains(h), "{what} shows {h:?}: {text}");
    }
}

#[test]
fn flight_answers_what_v1_query_answers_on_local_compute_and_through_an_agent() {
    let s = setup("flight-answers", &[]);
    for (token, endpoint) in [(&s.loc, "local"), (&s.rem, "a1")] {
        for sql in [
            "SELECT id, name, email, region FROM people ORDER BY id",
            "SELECT region, count(*) AS n FROM people GROUP BY region ORDER BY region",
            "SELECT count(*) AS n, sum(n) AS total, max(n) AS top FROM big",
            "SELECT p.name, b.n FROM people p JOIN big b ON b.n = p.id ORDER BY 1",
        ] {
            let got = s.flight.query(token, sql).unwrap();
            let want = http_table(&s, token, sql);
            assert_eq!(got, want, "{sql} on {endpoint}");
            assert_hidden_absent(sql, &format!("{got:?}"));
        }
        let people = s
            .flight
            .query(token, "SELECT id, email FROM people ORDER BY id")
            .unwrap();
        assert_eq!(rows(&people), vec![vec!["1", "an…"], vec!["3", "ca…"]]);
        // Many agent pages (5000 rows each) and many local chunks, in order.
        let big = s
            .flight
            .query(token, "SELECT n FROM big ORDER BY n")
            .unwrap();
        assert_eq!(big.rows.len(), 25_000);
        assert!(big
            .rows
            .iter()
            .enumerate()
            .all(|(i, r)| r[0] == i.to_string()));
        s.gw.wait_log("audit", |l| {
            l["door"] == "flight"
                && l["endpoint"] == endpoint
                && l["outcome"] == "answered"
                && l["rows"] == 25_000
        });
    }
}

#[test]
fn refusals_and_ungranted_tables_are_clear_errors_with_no_rows() {
    let s = setup("flight-refusals", &[]);
    for token in [&s.loc, &s.rem] {
        let e = s
            .flight
            .info(Some(token), "SELECT * FROM secrets")
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert!(e.message().starts_with("ACCESS_DENIED: "), "{e:?}");
        assert!(e.message().contains("secrets"), "{e:?}");
        assert_eq!(e.metadata().get("x-error-code").unwrap(), "ACCESS_DENIED");
        for sql in [
            "DROP TABLE people",
            "SELECT 1; SELECT 2",
            "SELECT * FROM read_csv('/etc/passwd')",
            "COPY people TO '/tmp/x.csv'",
        ] {
            let e = s.flight.info(Some(token), sql).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{sql}: {e:?}");
            assert!(e.message().starts_with("SQL_REFUSED: "), "{sql}: {e:?}");
        }
        // The engine's own error about the user's text, cut of the policy.
        let e = s
            .flight
            .info(Some(token), "SELECT nme FROM people")
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().starts_with("EXECUTION_ERROR: "), "{e:?}");
        assert_hidden_absent("a bind error", e.message());
        // A statement the policy answers with no rows.
        let none = s
            .flight
            .query(token, "SELECT * FROM people WHERE region = 'US'")
            .unwrap();
        assert!(none.rows.is_empty(), "{none:?}");
        assert_eq!(none.columns, ["id", "name", "email", "region"]);
    }
    let e = s
        .flight
        .info(Some(&s.nobody), "SELECT * FROM people")
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    s.gw.wait_log("audit", |l| {
        l["door"] == "flight" && l["decision"] == "denied" && l["user"] == "nobody"
    });
}

fn params(cols: Vec<(&str, Arc<dyn arrow_array::Array>)>) -> RecordBatch {
    RecordBatch::try_from_iter(cols).unwrap()
}

#[test]
fn parameters_are_bound_as_values_never_as_text() {
    let s = setup("flight-params", &[]);
    let f = &s.flight;
    let injection = params(vec![
        ("name", Arc::new(StringArray::from(vec!["ann' OR '1'='1"]))),
        ("id", Arc::new(Int64Array::from(vec![3]))),
    ]);
    let t = f
        .prepared(
            &s.loc,
            "SELECT id, name FROM people WHERE name = ? OR id = ? ORDER BY id",
            Some(injection),
        )
        .unwrap();
    assert_eq!(rows(&t), vec![vec!["3", "cat"]]);
    // ? numbered by their place in the user's text, whatever order the
    // rewriter prints clauses in (OFFSET before LIMIT here).
    let t = f
        .prepared(
            &s.loc,
            "SELECT id FROM people ORDER BY id OFFSET ? LIMIT ?",
            Some(params(vec![
                ("o", Arc::new(Int64Array::from(vec![0]))),
                ("l", Arc::new(Int64Array::from(vec![1]))),
            ])),
        )
        .unwrap();
    assert_eq!(rows(&t), vec![vec!["1"]]);
    // The filter and mask hold whatever the parameters say.
    let t = f
        .prepared(
            &s.loc,
            "SELECT count(*) AS n FROM people WHERE region = $1",
            Some(params(vec![("r", Arc::new(StringArray::from(vec!["US"])))])),
        )
        .unwrap();
    assert_eq!(rows(&t), vec![vec!["0"]]);
    let t = f
        .prepared(
            &s.loc,
            "SELECT email FROM people WHERE id = $1",
            Some(params(vec![("id", Arc::new(Int64Array::from(vec![1])))])),
        )
        .unwrap();
    assert_eq!(rows(&t), vec![vec!["an…"]]);
    // Without parameters, a prepared statement runs anywhere.
    for token in [&s.loc, &s.rem] {
        let t = f
            .prepared(token, "SELECT count(*) AS n FROM people", None)
            .unwrap();
        assert_eq!(rows(&t), vec![vec!["2"]]);
    }
    // The agent's contract has no parameter values: refused, nothing ran.
    let e = f
        .prepared(
            &s.rem,
            "SELECT id FROM people WHERE id = $1",
            Some(params(vec![("id", Arc::new(Int64Array::from(vec![1])))])),
        )
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("PARAMETERS_UNSUPPORTED"), "{e:?}");
    // Refusals: mixed forms, named parameters, a count that does not match,
    // more than one row.
    for (sql, n) in [
        ("SELECT ?, $1", 2),
        ("SELECT $name", 1),
        ("SELECT $1, $2", 1),
    ] {
        let cols: Vec<(&str, Arc<dyn arrow_array::Array>)> = (0..n)
            .map(|_| ("p", Arc::new(Int64Array::from(vec![1])) as _))
            .collect();
        let e = f.prepared(&s.loc, sql, Some(params(cols))).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{sql}: {e:?}");
    }
    let e = f
        .prepared(
            &s.loc,
            "SELECT $1",
            Some(params(vec![("p", Arc::new(Int64Array::from(vec![1, 2])))])),
        )
        .unwrap_err();
    assert!(e.message().contains("one row"), "{e:?}");
    // A placeholder in a policy would let the user write it: refused at the store.
    let r = s.admin().req(
        "POST",
        "/admin/row-filters",
        Some(json!({"principal": "loc", "principal_type": "user", "table": "people", "predicate": "id = $1"})),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("placeholder"), "{}", r.text());
}

#[test]
fn metadata_lists_only_granted_tables() {
    let s = setup("flight-metadata", &[]);
    let f = &s.flight;
    for token in [&s.loc, &s.rem] {
        assert_eq!(rows(&f.catalogs(token).unwrap()), vec![vec!["shared"]]);
        assert_eq!(
            rows(&f.schemas(token).unwrap()),
            vec![vec!["shared", "main"]]
        );
        let t = f.tables(token, CommandGetTables::default()).unwrap();
        let names: Vec<&str> = t.rows.iter().map(|r| r[2].as_str()).collect();
        assert_eq!(names, ["big", "people"], "{t:?}");
        let t = f
            .tables(
                token,
                CommandGetTables {
                    table_name_filter_pattern: Some("sec%".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(t.rows.is_empty(), "{t:?}");
        let t = f
            .tables(
                token,
                CommandGetTables {
                    catalog: Some("shared".into()),
                    db_schema_filter_pattern: Some("ma_n".into()),
                    table_name_filter_pattern: Some("%eop%".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(t.rows.len(), 1, "{t:?}");
        let schemas = f.table_schemas(token).unwrap();
        assert_eq!(
            schemas,
            vec![
                ("big".to_string(), vec!["n: Int64".to_string()]),
                (
                    "people".to_string(),
                    vec![
                        "id: Int32".to_string(),
                        "name: Utf8".to_string(),
                        "email: Utf8".to_string(),
                        "region: Utf8".to_string()
                    ]
                )
            ]
        );
    }
    assert!(f.catalogs(&s.nobody).unwrap().rows.is_empty());
    assert!(f.schemas(&s.nobody).unwrap().rows.is_empty());
    assert!(f
        .tables(&s.nobody, CommandGetTables::default())
        .unwrap()
        .rows
        .is_empty());
    let e = f.catalogs("not-a-token").unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
}

/// The local DuckDB threads of the gateway process now.
fn duckdb_threads(gw: &Proc) -> usize {
    let pid = gw.pid().unwrap();
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|t| t.ok())
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "local-duckdb")
                })
                .count()
        })
        .unwrap_or(0)
}

fn agent_jobs(agent: &Proc) -> u64 {
    let h = raw(agent.addr, "GET", "/health", &[], b"").unwrap().json();
    h["stored_jobs"].as_u64().unwrap()
}

#[test]
fn cancel_stops_the_engine_work_and_the_caps_hold() {
    let s = setup("flight-cancel", &[("MAX_JOBS_PER_USER", "2")]);
    let f = &s.flight;
    // Through the agent: the job waits there for its pages; a cancel
    // deletes it.
    let info = f.info(Some(&s.rem), "SELECT n FROM big").unwrap();
    assert_eq!(info.total_records, 25_000);
    assert!(agent_jobs(&s.agent) >= 1);
    assert_eq!(f.cancel(&s.rem, &info).unwrap(), CancelStatus::Cancelled);
    eventually("the agent's job is deleted", || agent_jobs(&s.agent) == 0);
    let e = f.fetch(Some(&s.rem), &info).unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    s.gw.wait_log("audit", |l| {
        l["door"] == "flight" && l["user"] == "rem" && l["outcome"] == "canceled"
    });
    // Another user's cancel finds nothing.
    let info = f.info(Some(&s.rem), "SELECT n FROM big").unwrap();
    assert_eq!(f.cancel(&s.loc, &info).unwrap_err().code(), Code::NotFound);
    assert_eq!(
        f.fetch(Some(&s.loc), &info).unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        f.fetch(Some(&s.rem), &info)
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        25_000
    );
    // A ticket is read once.
    assert_eq!(
        f.fetch(Some(&s.rem), &info).unwrap_err().code(),
        Code::NotFound
    );

    // Local compute, canceled mid-stream: the stream ends CANCELLED and the
    // DuckDB thread is gone.
    let sql = "SELECT i FROM range(1000000000) t(i)";
    let info = f.info(Some(&s.loc), sql).unwrap();
    assert!(duckdb_threads(&s.gw) >= 1);
    let mut reader = f.client(Some(&s.loc));
    let mut canceller = f.client(Some(&s.loc));
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let (first, rest) = f.block_on(async {
        let mut stream = reader.do_get(ticket).await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        let action = arrow_flight::Action::new(
            "CancelFlightInfo",
            prost::Message::encode_to_vec(&arrow_flight::CancelFlightInfoRequest::new(
                info.clone(),
            )),
        );
        canceller.do_action(action).await.unwrap();
        let mut rest = Ok(0usize);
        let until = Instant::now() + Duration::from_secs(20);
        while let Some(b) = stream.next().await {
            match b {
                Ok(b) => *rest.as_mut().unwrap() += b.num_rows(),
                Err(e) => {
                    rest = Err(e);
                    break;
                }
            }
            assert!(Instant::now() < until, "the stream did not stop");
        }
        (first, rest)
    });
    assert!(first.num_rows() > 0);
    let e = rest.unwrap_err().to_string();
    assert!(e.contains("CANCELED"), "{e}");
    eventually("the local DuckDB thread ends", || {
        duckdb_threads(&s.gw) == 0
    });
    s.gw.wait_log("audit", |l| {
        l["door"] == "flight" && l["user"] == "loc" && l["outcome"] == "canceled"
    });

    // MAX_JOBS_PER_USER: two held tickets; the third is refused until one ends.
    let a = f.info(Some(&s.loc), "SELECT 1 AS x").unwrap();
    let _b = f.info(Some(&s.loc), "SELECT 2 AS x").unwrap();
    let e = f.info(Some(&s.loc), "SELECT 3 AS x").unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().starts_with("TOO_MANY_QUERIES"), "{e:?}");
    // Another user is not held back.
    f.info(Some(&s.rem), "SELECT 3 AS x").unwrap();
    assert_eq!(f.fetch(Some(&s.loc), &a).unwrap()[0].num_rows(), 1);
    f.info(Some(&s.loc), "SELECT 3 AS x").unwrap();
}

#[test]
fn tokens_are_required_checked_and_revocable() {
    let s = setup("flight-tokens", &[]);
    let f = &s.flight;
    for token in [None, Some("not-a-token"), Some("")] {
        let e = f.info(token, "SELECT 1").unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{token:?}: {e:?}");
        assert!(e.message().starts_with("UNAUTHORIZED"), "{e:?}");
    }
    // Basic auth on the handshake answers the token as the bearer token.
    assert_eq!(f.handshake("loc", &s.loc).unwrap(), s.loc);
    assert_eq!(f.handshake("LOC", &s.loc).unwrap(), s.loc);
    assert_eq!(
        f.handshake("loc", "wrong-password").unwrap_err().code(),
        Code::Unauthenticated
    );
    // Another user's token is not this user's password.
    assert_eq!(
        f.handshake("rem", &s.loc).unwrap_err().code(),
        Code::Unauthenticated
    );
    // A revoked token stops working at once.
    let extra = s
        .admin()
        .admin("POST", "/admin/tokens", json!({"user": "loc"}))["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        rows(&f.query(&extra, "SELECT 1 AS x").unwrap()),
        vec![vec!["1"]]
    );
    s.admin()
        .admin("POST", "/admin/tokens/revoke", json!({ "token": extra }));
    let e = f.info(Some(&extra), "SELECT 1").unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    s.gw.wait_log("audit", |l| l["door"] == "flight" && l["user"] == "loc");
}

/// Whether Python has the Flight clients; without them the test says so and
/// returns, unless `CI` is set (then it fails: `.ci/run` installs them).
fn python_clients_present() -> bool {
    let ok = std::process::Command::new("python3")
        .args([
            "-c",
            "import pyarrow.flight, adbc_driver_flightsql.dbapi, adbc_driver_manager",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("python3 with pyarrow, adbc-driver-flightsql and adbc-driver-manager is required when CI is set (pip install pyarrow adbc-driver-flightsql adbc-driver-manager)");
        }
        eprintln!("SKIPPING python_clients: python3 with pyarrow, adbc-driver-flightsql and adbc-driver-manager not found (pip install pyarrow adbc-driver-flightsql adbc-driver-manager)");
    }
    ok
}

#[test]
fn python_clients() {
    if !python_clients_present() {
        return;
    }
    let s = setup("flight-python", &[]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flight_clients.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .env("FLIGHT_URI", format!("grpc://{}", s.flight.addr))
        .env("HTTP_URL", s.gw.url())
        .env("LOC_TOKEN", &s.loc)
        .env("REM_TOKEN", &s.rem)
        .env("NOBODY_TOKEN", &s.nobody)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success() && !stdout.contains("FAIL") && stdout.contains("ALL OK"),
        "python clients failed:\n{stdout}\n{stderr}"
    );
    assert_hidden_absent("the python clients' output", &stdout);
}

#[test]
fn flight_sql_over_tls_with_pyarrow_and_adbc() {
    if !python_clients_present() {
        return;
    }
    let dir = scratch_dir("flight-tls");
    let db = make_db(&dir);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let store = format!("sqlite:{}", dir.join("gateway.db").display());
    // A plain gateway on the same store takes the admin calls (the harness
    // speaks plain HTTP); the one under test serves every door over TLS.
    let plain = start_gateway(&store, &db, &[]);
    let admin = Caller {
        gw: &plain,
        token: ADMIN_TOKEN.into(),
    };
    admin.admin("PUT", "/admin/users/tess", json!({}));
    admin.admin(
        "POST",
        "/admin/grants",
        json!({"principal": "tess", "principal_type": "user", "table": "people"}),
    );
    admin.admin("POST", "/admin/row-filters", json!({"principal": "tess", "principal_type": "user", "table": "people", "predicate": "region = 'EU'"}));
    let token = admin.admin("POST", "/admin/tokens", json!({"user": "tess"}))["token"]
        .as_str()
        .unwrap()
        .to_string();
    drop(plain);
    let flight: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _gw = start_gateway_ready(
        &store,
        &db,
        &[
            ("FLIGHT_ADDR", &flight.to_string()),
            ("TLS_CERT", &cert_path.display().to_string()),
            ("TLS_KEY", &key_path.display().to_string()),
        ],
        &move |_| std::net::TcpStream::connect(flight).is_ok(),
    );
    let script = r#"
import sys, time
import pyarrow.flight as fl
import adbc_driver_flightsql.dbapi as flightsql
from adbc_driver_flightsql import DatabaseOptions
port, token, ca = sys.argv[1], sys.argv[2], open(sys.argv[3], "rb").read()
uri = f"grpc+tls://localhost:{port}"
# The store is re-read every STORE_REFRESH: wait for tess's token.
for _ in range(100):
    try:
        c = fl.FlightClient(uri, tls_root_certs=ca)
        header = c.authenticate_basic_token("tess", token)
        break
    except fl.FlightUnauthenticatedError:
        time.sleep(0.2)
print("pyarrow authenticated", header[0] == b"authorization")
with flightsql.connect(uri, db_kwargs={"username": "tess", "password": token,
        DatabaseOptions.TLS_ROOT_CERTS.value: ca.decode()}, autocommit=True) as conn, conn.cursor() as cur:
    cur.execute("SELECT id FROM people ORDER BY id")
    print("adbc rows", [r[0] for r in cur.fetchall()])
# A plain client gets no answer from the TLS port.
try:
    plain = fl.FlightClient(f"grpc://localhost:{port}")
    plain.authenticate_basic_token("tess", token, fl.FlightCallOptions(timeout=5))
    print("plain answered")
except Exception as e:
    print("plain refused")
# A client that does not trust the certificate is refused.
try:
    other = fl.FlightClient(uri)
    other.authenticate_basic_token("tess", token, fl.FlightCallOptions(timeout=5))
    print("untrusted answered")
except Exception as e:
    print("untrusted refused")
"#;
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            &flight.port().to_string(),
            &token,
            &cert_path.display().to_string(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("pyarrow authenticated True"), "{stdout}");
    assert!(stdout.contains("adbc rows [1, 3]"), "{stdout}");
    assert!(stdout.contains("plain refused"), "{stdout}");
    assert!(stdout.contains("untrusted refused"), "{stdout}");
}
