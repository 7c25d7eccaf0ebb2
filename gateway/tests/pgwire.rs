//! The PostgreSQL door end to end, through real clients: the real
//! `compute-gateway` with `PGWIRE_ADDR` and a certificate made by the test,
//! reached by Debian's `psql` (TLS required, a query, `\d`, `\copy` out),
//! by `psycopg` from Python (server-side parameters, a streamed cursor,
//! cancel), and by the Rust `postgres` client (extended protocol, typed
//! values, refusals with their SQLSTATE). The user has one granted table with
//! a row filter and a column mask; every door must answer what `POST
//! /v1/query` answers and nothing more.
//!
//! Without `psql` or `psycopg` the parts that need them print SKIPPING,
//! unless `CI` is set, where they fail (`.ci/run` installs both).

mod harness;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::json;

struct Door {
    dir: PathBuf,
    gw: Proc,
    pg: SocketAddr,
    token: String,
    /// The self-signed certificate the gateway serves (PEM, for clients'
    /// `sslrootcert`).
    ca: PathBuf,
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written to `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// A TLS probe of the HTTP door is not needed: readiness is the pgwire port
/// accepting a connection (the HTTP door starts after it).
fn pg_ready(pg: SocketAddr) -> impl Fn(SocketAddr) -> bool {
    move |_| std::net::TcpStream::connect_timeout(&pg, Duration::from_millis(200)).is_ok()
}

/// A gateway with the door, TLS, and `alice`: `people` granted with
/// `region = 'EU'` and `email` masked; `secrets` and `big` not granted to her
/// (`big` granted, unfiltered, so a long stream can be read).
fn door(extra: &[(&str, &str)]) -> Door {
    let dir = scratch_dir("pgwire");
    let db = make_db(&dir);
    let (cert, key) = certificate(&dir);
    let pg: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut env: Vec<(&str, String)> = vec![
        ("PGWIRE_ADDR", pg.to_string()),
        ("TLS_CERT", cert.display().to_string()),
        ("TLS_KEY", key.display().to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = start_gateway_ready(
        &format!("sqlite:{}", dir.join("gateway.db").display()),
        &db,
        &env,
        &pg_ready(pg),
    );
    // The HTTP door is on TLS too; the admin calls go through a plain
    // gateway-side helper: the harness speaks plain HTTP, so the admin API
    // is reached on a second, plain gateway over the same store.
    let admin_gw = start_gateway(
        &format!("sqlite:{}", dir.join("gateway.db").display()),
        &db,
        &[],
    );
    let a = Caller {
        gw: &admin_gw,
        token: ADMIN_TOKEN.into(),
    };
    a.admin("PUT", "/admin/users/alice", json!({}));
    for t in ["people", "big"] {
        a.admin(
            "POST",
            "/admin/grants",
            json!({"principal": "alice", "principal_type": "user", "table": t}),
        );
    }
    a.admin("POST", "/admin/row-filters", json!({"principal": "alice", "principal_type": "user", "table": "people", "predicate": "region = 'EU'"}));
    a.admin("POST", "/admin/column-masks", json!({"principal": "alice", "principal_type": "user", "table": "people", "column": "email", "expression": "'***'"}));
    let t = a.admin("POST", "/admin/tokens", json!({"user": "alice"}));
    let token = t["token"].as_str().unwrap().to_string();
    drop(admin_gw);
    let ca = dir.join("cert.pem");
    let d = Door {
        dir,
        gw,
        pg,
        token,
        ca,
    };
    // The store is re-read every STORE_REFRESH: wait for alice's grants.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = d.psql(&["-c", "SELECT count(*) FROM people"]);
        if out.as_ref().is_some_and(|o| o.status.success()) {
            break;
        }
        if out.is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "alice never authorised: {out:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    d
}

/// Whether a client program is missing: SKIPPING, or a failure under CI.
fn missing(what: &str) -> bool {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is not installed (CI is set): .ci/run installs it");
    }
    eprintln!("\n*** SKIPPING the {what} half of this test: it is not installed\n");
    true
}

fn have_psql() -> bool {
    Command::new("psql").arg("--version").output().is_ok() || !missing("psql")
}

fn have_psycopg() -> bool {
    Command::new("python3")
        .args(["-c", "import psycopg"])
        .output()
        .is_ok_and(|o| o.status.success())
        || !missing("psycopg (pip install 'psycopg[binary]')")
}

impl Door {
    fn conninfo(&self, sslmode: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=alice dbname=shared sslmode={sslmode} sslrootcert={} connect_timeout=10",
            self.pg.port(),
            self.ca.display()
        )
    }

    /// `psql` with the token as the password, unaligned and tuples only;
    /// `None` when psql is not installed.
    fn psql_mode(&self, sslmode: &str, args: &[&str]) -> Option<std::process::Output> {
        Command::new("psql")
            .arg(self.conninfo(sslmode))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(args)
            .env("PGPASSWORD", &self.token)
            .env("PGCONNECT_TIMEOUT", "10")
            .current_dir(&self.dir)
            .output()
            .ok()
    }

    fn psql(&self, args: &[&str]) -> Option<std::process::Output> {
        self.psql_mode("verify-full", args)
    }

    /// A Python script with `psycopg`, given the conninfo and token as argv.
    fn python(&self, script: &str) -> std::process::Output {
        Command::new("python3")
            .args(["-c", script, &self.conninfo("verify-full"), &self.token])
            .output()
            .unwrap()
    }

    /// The Rust client over a plain loopback connection (the gateway must
    /// allow it: `PGWIRE_PLAIN_LOOPBACK`).
    fn rust_client(&self) -> postgres::Client {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.pg.port())
            .user("alice")
            .password(&self.token)
            .dbname("shared")
            .connect_timeout(Duration::from_secs(10))
            .connect(postgres::NoTls)
            .unwrap()
    }
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn psql_over_tls_sees_only_the_policy_and_the_granted_catalog() {
    if !have_psql() {
        return;
    }
    let d = door(&[]);
    let ok = |args: &[&str]| {
        let o = d.psql(args).unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    // Rows filtered and masked, as POST /v1/query answers them.
    assert_eq!(
        ok(&["-c", "SELECT id, name, email FROM people ORDER BY id"]),
        "1|ann|***\n3|cat|***\n"
    );
    // Several statements in one simple query.
    assert_eq!(ok(&["-c", "SELECT 1; SELECT 2"]), "1\n2\n");
    // An ungranted table is refused with a SQLSTATE, and no value leaks.
    let o = d
        .psql(&[
            "-c",
            "\\set VERBOSITY verbose",
            "-c",
            "SELECT * FROM secrets",
        ])
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("42501"), "{}", stderr(&o));
    assert!(!stdout(&o).contains("launch") && !stderr(&o).contains("launch"));
    // The catalog holds the granted tables only.
    let tables = ok(&["-c", "\\dt"]);
    assert!(
        tables.contains("people") && tables.contains("big"),
        "{tables}"
    );
    assert!(!tables.contains("secrets"), "{tables}");
    let cols = ok(&["-c", "\\d people"]);
    for c in ["id", "name", "email", "region"] {
        assert!(cols.contains(c), "{cols}");
    }
    let names = ok(&[
        "-c",
        "SELECT table_name FROM information_schema.tables ORDER BY 1",
    ]);
    assert_eq!(names, "big\npeople\n");
    assert!(ok(&["-c", "SELECT version()"]).contains("compute-gateway"));
    // A catalog query that names a table function reads no file: the
    // sandbox has no file access.
    let o = d
        .psql(&[
            "-c",
            "SELECT * FROM pg_catalog.pg_class, read_text('/etc/passwd')",
        ])
        .unwrap();
    assert!(!o.status.success());
    assert!(!stdout(&o).contains("root:"), "{}", stdout(&o));
    // Session commands clients send.
    ok(&[
        "-c",
        "SET application_name = 'x'",
        "-c",
        "SHOW server_version",
    ]);
    let o = d
        .psql(&["-c", "SET enable_external_access = true"])
        .unwrap();
    assert!(!o.status.success());
    // \copy out writes the user's rows through the door.
    ok(&[
        "-c",
        "\\copy (SELECT id, email FROM people ORDER BY id) TO 'out.csv' CSV",
    ]);
    assert_eq!(
        std::fs::read_to_string(d.dir.join("out.csv")).unwrap(),
        "1,***\n3,***\n"
    );
    // The audit line names the door.
    d.gw.wait_log("audit", |v| v["door"] == "pgwire" && v["user"] == "alice");

    // A plain connection is refused before any password is sent.
    let o = d.psql_mode("disable", &["-c", "SELECT 1"]).unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("TLS"), "{}", stderr(&o));
    // A wrong token is refused.
    let o = Command::new("psql")
        .arg(d.conninfo("require"))
        .args(["-X", "-c", "SELECT 1"])
        .env("PGPASSWORD", "not-a-token")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("password authentication failed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn psycopg_binds_parameters_streams_and_cancels() {
    if !have_psycopg() {
        return;
    }
    let d = door(&[]);
    let script = r#"
import sys, threading, time, psycopg
conninfo, token = sys.argv[1], sys.argv[2]
with psycopg.connect(conninfo, password=token, autocommit=True) as conn:
    cur = conn.cursor()
    # Server-side parameters: the extended protocol, values bound, never spliced.
    cur.execute("SELECT id, name, email FROM people WHERE id = %s OR name = %s ORDER BY id", (3, "ann' OR true --"))
    print("params", cur.fetchall())
    cur.execute("SELECT %s::INTEGER + 1, %s::VARCHAR", (41, "x"))
    print("typed", cur.fetchall())
    # A hostile parameter is a value: the filter still holds.
    cur.execute("SELECT count(*) FROM people WHERE region = %s", ("US",))
    print("hidden", cur.fetchall())
    # A streamed result: rows arrive as the engine produces them.
    n = 0
    total = 0
    for row in cur.stream("SELECT a.n * 25000 + b.n AS v FROM big a, big b WHERE a.n < 40"):
        n += 1
        total += row[0]
    print("stream", n, total)
    # Cancel a long statement from another thread.
    def cancel():
        time.sleep(1.0)
        conn.cancel_safe()
    t = threading.Thread(target=cancel)
    t.start()
    started = time.time()
    try:
        cur.execute("SELECT count(*) FROM big a, big b, big c")
        print("cancel not honoured", cur.fetchall())
    except psycopg.errors.QueryCanceled as e:
        print("canceled", round(time.time() - started) < 20)
    t.join()
    cur.execute("SELECT 1")
    print("after", cur.fetchall())
"#;
    let o = d.python(script);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    let line = |p: &str| {
        out.lines()
            .find(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("no {p} in {out}"))
            .to_string()
    };
    assert_eq!(line("params"), "params [(3, 'cat', '***')]");
    assert_eq!(line("typed"), "typed [(42, 'x')]");
    assert_eq!(line("hidden"), "hidden [(0,)]");
    let n = 40u64 * 25000;
    let total: u64 = n * (n - 1) / 2;
    assert_eq!(line("stream"), format!("stream {n} {total}"));
    assert_eq!(line("canceled"), "canceled True");
    assert_eq!(line("after"), "after [(1,)]");
}

#[test]
fn the_extended_protocol_types_values_and_refuses_with_sqlstates() {
    let d = door(&[("PGWIRE_PLAIN_LOOPBACK", "true")]);
    let mut c = d.rust_client();
    // Prepared once, run with different bound values.
    let st = c
        .prepare("SELECT id, name FROM people WHERE id >= $1 ORDER BY id")
        .unwrap();
    assert_eq!(st.columns()[0].type_(), &postgres::types::Type::INT4);
    let rows = c.query(&st, &[&"2"]).unwrap();
    let ids: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![3]);
    // Typed values from DuckDB's types.
    let r = c
        .query_one(
            "SELECT 1::BIGINT, 2.5::DOUBLE, true, 'x'::VARCHAR, DATE '2024-01-02', 12.34::DECIMAL(10,2)",
            &[],
        )
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), 1);
    assert_eq!(r.get::<_, f64>(1), 2.5);
    assert!(r.get::<_, bool>(2));
    assert_eq!(r.get::<_, String>(3), "x");
    let types: Vec<String> = r
        .columns()
        .iter()
        .map(|c| c.type_().name().to_string())
        .collect();
    assert_eq!(
        types,
        ["int8", "float8", "bool", "varchar", "date", "numeric"]
    );
    // Refusals carry SQLSTATEs and the session goes on.
    let e = c.simple_query("SELECT * FROM secrets").unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42501", "{e}");
    let e = c.simple_query("SELECT * FROM nope_table").unwrap_err();
    assert!(e.code().is_some(), "{e}");
    let e = c.simple_query("SELECT FROM WHERE").unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42601", "{e}");
    let e = c
        .simple_query("SELECT current_setting('threads')")
        .unwrap_err();
    assert!(e.code().is_some(), "{e}");
    // Transaction control is accepted (read-only, autocommit).
    let mut t = c.transaction().unwrap();
    assert_eq!(
        t.query_one("SELECT count(*) FROM people", &[])
            .unwrap()
            .get::<_, i64>(0),
        2
    );
    t.commit().unwrap();
    // A parameter is a value, never text: a quote in it is data.
    let rows = c
        .query(
            "SELECT count(*) FROM people WHERE name = $1",
            &[&"x' OR '1'='1"],
        )
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 0);
    // Hostile bytes on the socket: the gateway answers the next client.
    for junk in [
        &b"\x00\x00\x00\x08\x04\xd2\x16\x2f"[..],
        b"GET / HTTP/1.1\r\n\r\n",
        &[0xff; 64],
    ] {
        use std::io::Write;
        if let Ok(mut s) = std::net::TcpStream::connect(d.pg) {
            let _ = s.write_all(junk);
        }
    }
    let mut c2 = d.rust_client();
    assert_eq!(c2.query_one("SELECT 7", &[]).unwrap().get::<_, i32>(0), 7);
}
