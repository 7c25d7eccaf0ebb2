//! The differential policy corpus: every text in `policy_corpus/*.sql` runs
//! as a restricted user through the real `compute-gateway` binary, on local
//! compute and through a real agent, by every door, and its answer is
//! compared with the same text run on a database that holds only what that
//! user may see (filtered rows, masked values, and no other table): `POST
//! /v1/query` against an agent of its own on that database; Flight SQL
//! (arrow-flight's own client) against that agent's Arrow answer; the
//! PostgreSQL wire door (the Rust `postgres` client) against a second
//! gateway on that database whose user is granted all of it, through the
//! same door, so both answers are written alike. The engine is the oracle,
//! not a model of the policy.
//!
//! Each answer must be a refusal or identical to the oracle's, and no answer
//! or error may carry a hidden value (a hidden row's name, salary, e-mail or
//! ID number, an ungranted table's contents, the database's path, the
//! policy's own predicates). Entries marked `expect: answer` (the everyday
//! queries of `analyst.sql`) must be answered, identically; the share of the
//! others answered is printed.
//!
//! The corpus format: entries separated by a line `----`; each starts with
//! `-- key: value` lines (`name`, `expect: answer|either`, `ordered: yes`),
//! then the SQL text. Add a text by adding an entry. `CORPUS_VERBOSE=1`
//! prints every answer (`cargo test --release -p gateway --test
//! policy_corpus -- --nocapture`).

mod flight_client;
mod harness;

use std::collections::BTreeMap;
use std::path::Path;

use harness::*;
use serde_json::{json, Value};

/// The full data: what the engines hold.
const FULL: &str = "
CREATE TABLE employees (id INTEGER, name VARCHAR, dept VARCHAR, salary INTEGER,
  email VARCHAR, ssn VARCHAR, manager_id INTEGER, hired DATE, tags VARCHAR[],
  profile STRUCT(level INTEGER, city VARCHAR));
INSERT INTO employees VALUES
  (1, 'Alice', 'eng', 120000, 'alice@corp.example', '111-22-0001', NULL, DATE '2019-03-01', ['lead', 'rust'], {'level': 3, 'city': 'Utrecht'}),
  (2, 'Bob', 'eng', 100000, 'bob@corp.example', '111-22-0002', 1, DATE '2020-06-15', ['rust'], {'level': 2, 'city': 'Delft'}),
  (3, 'Carol', 'eng', 105000, 'carol@corp.example', '111-22-0003', 1, DATE '2021-01-10', [], {'level': 2, 'city': 'Utrecht'}),
  (4, 'Dave', 'eng', 95000, 'dave@corp.example', '111-22-0004', 2, DATE '2022-09-01', ['go'], {'level': 1, 'city': 'Leiden'}),
  (5, 'Erin', 'eng', 140000, 'erin@corp.example', '111-22-0005', 1, DATE '2018-11-20', NULL, {'level': 4, 'city': 'Delft'}),
  (6, 'Mallory', 'sales', 87654, 'mallory@corp.example', '078-05-9911', 9, DATE '2017-02-02', ['quota'], {'level': 3, 'city': 'Zwolle'}),
  (7, 'Trent', 'hr', 76543, 'trent@corp.example', '078-05-9922', 9, DATE '2016-05-05', [], {'level': 2, 'city': 'Assen'}),
  (8, 'Victor', 'sales', 65432, 'victor@corp.example', '078-05-9933', 6, DATE '2023-04-04', ['new'], {'level': 1, 'city': 'Zwolle'}),
  (9, 'Walter', 'exec', 9876543, 'walter@corp.example', '078-05-9944', NULL, DATE '2010-01-01', ['board'], {'level': 9, 'city': 'Monaco'}),
  (10, 'Peggy', 'hr', 54321, 'peggy@corp.example', '078-05-9955', 7, DATE '2024-08-08', NULL, {'level': 1, 'city': 'Assen'}),
  (11, 'Sybil', 'exec', 8765432, 'sybil@corp.example', '078-05-9966', 9, DATE '2011-07-07', ['board'], {'level': 8, 'city': 'Gstaad'});
CREATE TABLE departments (code VARCHAR, title VARCHAR, budget BIGINT);
INSERT INTO departments VALUES ('eng', 'Engineering', 1000000), ('sales', 'Sales', 500000),
  ('hr', 'People', 200000), ('exec', 'Board', 3000000);
CREATE TABLE work_logs (employee_id INTEGER, week INTEGER, hours INTEGER, note VARCHAR);
INSERT INTO work_logs VALUES (1, 1, 40, 'design'), (2, 1, 38, 'build'), (3, 1, 41, 'review'),
  (6, 1, 50, 'Mallory client lunch'), (9, 1, 10, 'Walter golf'), (1, 2, 42, 'design'),
  (4, 2, 36, 'build'), (11, 2, 12, 'Sybil board memo');
CREATE TABLE secrets (id INTEGER, payload VARCHAR);
INSERT INTO secrets VALUES (1, 'launch codes 0000'), (2, 'Walter password hunter2');
CREATE SCHEMA audit;
CREATE TABLE audit.events (id INTEGER, who VARCHAR, what VARCHAR);
INSERT INTO audit.events VALUES (1, 'Trent', 'Trent fired Victor');
CREATE VIEW all_employees AS SELECT * FROM employees;
CHECKPOINT;
";

/// What `ana` may see: the oracle's database. Her filters and masks
/// applied (`dept = 'eng'` on employees and, through it, on work_logs;
/// e-mail and ID number masked), the tables she is granted, nothing else.
const VISIBLE: &str = "
CREATE TABLE employees (id INTEGER, name VARCHAR, dept VARCHAR, salary INTEGER,
  email VARCHAR, ssn VARCHAR, manager_id INTEGER, hired DATE, tags VARCHAR[],
  profile STRUCT(level INTEGER, city VARCHAR));
INSERT INTO employees VALUES
  (1, 'Alice', 'eng', 120000, 'a***', '***-**-0001', NULL, DATE '2019-03-01', ['lead', 'rust'], {'level': 3, 'city': 'Utrecht'}),
  (2, 'Bob', 'eng', 100000, 'b***', '***-**-0002', 1, DATE '2020-06-15', ['rust'], {'level': 2, 'city': 'Delft'}),
  (3, 'Carol', 'eng', 105000, 'c***', '***-**-0003', 1, DATE '2021-01-10', [], {'level': 2, 'city': 'Utrecht'}),
  (4, 'Dave', 'eng', 95000, 'd***', '***-**-0004', 2, DATE '2022-09-01', ['go'], {'level': 1, 'city': 'Leiden'}),
  (5, 'Erin', 'eng', 140000, 'e***', '***-**-0005', 1, DATE '2018-11-20', NULL, {'level': 4, 'city': 'Delft'});
CREATE TABLE departments (code VARCHAR, title VARCHAR, budget BIGINT);
INSERT INTO departments VALUES ('eng', 'Engineering', 1000000), ('sales', 'Sales', 500000),
  ('hr', 'People', 200000), ('exec', 'Board', 3000000);
CREATE TABLE work_logs (employee_id INTEGER, week INTEGER, hours INTEGER, note VARCHAR);
INSERT INTO work_logs VALUES (1, 1, 40, 'design'), (2, 1, 38, 'build'), (3, 1, 41, 'review'),
  (1, 2, 42, 'design'), (4, 2, 36, 'build');
CHECKPOINT;
";

/// Text that must never reach `ana`, in an answer or an error: hidden
/// employees' names, salaries, e-mail addresses and ID numbers, the other
/// tables' contents, and the policy's own predicates and masks.
const HIDDEN: &[&str] = &[
    "Mallory",
    "Trent",
    "Victor",
    "Walter",
    "Peggy",
    "Sybil",
    "87654",
    "76543",
    "65432",
    "9876543",
    "54321",
    "8765432",
    "@corp.example",
    "078-05",
    "9911",
    "9922",
    "9933",
    "9944",
    "9955",
    "9966",
    "111-22",
    "launch codes",
    "hunter2",
    "client lunch",
    "golf",
    "board memo",
    "fired",
    "dept = 'eng'",
    // The policy's own text ("employee_id IN (" and not the column's
    // declared type, "employee_id INTEGER", which \d may show).
    "employee_id IN (",
    "left(email",
    "right(ssn",
];

#[derive(Debug)]
struct Entry {
    file: String,
    name: String,
    must_answer: bool,
    ordered: bool,
    sql: String,
}

fn corpus() -> Vec<Entry> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policy_corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let file = f.file_name().unwrap().to_string_lossy().into_owned();
        for (i, chunk) in text.split("\n----\n").enumerate() {
            let mut meta = BTreeMap::new();
            let mut sql = String::new();
            for line in chunk.lines() {
                if sql.is_empty() {
                    if let Some(kv) = line.strip_prefix("-- ") {
                        if let Some((k, v)) = kv.split_once(": ") {
                            meta.insert(k.trim().to_string(), v.trim().to_string());
                            continue;
                        }
                    }
                    if line.trim().is_empty() || line.starts_with("--") {
                        continue;
                    }
                }
                sql.push_str(line);
                sql.push('\n');
            }
            let sql = sql.trim().to_string();
            if sql.is_empty() {
                continue;
            }
            out.push(Entry {
                name: meta
                    .get("name")
                    .cloned()
                    .unwrap_or_else(|| format!("{file}#{i}")),
                must_answer: meta.get("expect").map(String::as_str) == Some("answer"),
                ordered: meta.get("ordered").map(String::as_str) == Some("yes"),
                file: file.clone(),
                sql,
            });
        }
    }
    out
}

/// One engine's answer: its rows (canonical text per row), or a refusal.
#[derive(Debug, PartialEq)]
enum Answer {
    Rows {
        columns: Vec<String>,
        rows: Vec<String>,
    },
    Refused(String),
}

/// A value as both paths' JSON encoders may write it: numbers compared as
/// numbers (an integer-valued float and an integer are equal), everything
/// else as JSON text.
fn canonical(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            Some(f) => format!("{f:.9e}"),
            None => n.to_string(),
        },
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{k:?}:{}", canonical(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

fn answer_of(status: u16, body: &Value, ordered: bool) -> Answer {
    if status != 200 {
        return Answer::Refused(format!(
            "{status} {}: {}",
            body["code"].as_str().unwrap_or(""),
            body["error"].as_str().unwrap_or("")
        ));
    }
    let columns = body["columns"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    let mut rows: Vec<String> = body["rows"]
        .as_array()
        .map(|r| r.iter().map(canonical).collect())
        .unwrap_or_default();
    if !ordered {
        rows.sort();
    }
    Answer::Rows { columns, rows }
}

/// The hidden text in `body`, if any. Text the statement itself holds (a
/// user's guess, echoed in an error about their own SQL) is not a leak by
/// itself; a row that confirms the guess differs from the visible data's
/// answer and fails the comparison instead.
fn leak(body: &str, sql: &str) -> Option<&'static str> {
    HIDDEN
        .iter()
        .copied()
        .find(|h| body.contains(h) && !sql.contains(h))
}

/// The answer's text without its `"query_id":"..."` member.
fn without_query_id(text: &str) -> String {
    match text.find("\"query_id\":\"") {
        Some(at) => {
            let rest = &text[at + 12..];
            let end = rest.find('"').map_or(text.len(), |e| at + 12 + e + 1);
            format!("{}{}", &text[..at], &text[end..])
        }
        None => text.to_string(),
    }
}

/// Builds a database file named `shared.duckdb` in a directory of its own
/// (both engines' default catalog is then `shared`).
fn database(tag: &str, sql: &str) -> std::path::PathBuf {
    let dir = scratch_dir(tag);
    let path = dir.join("shared.duckdb");
    let c = duckdb::Connection::open(&path).unwrap();
    c.execute_batch(sql).unwrap();
    drop(c);
    path
}

#[test]
fn every_corpus_text_is_refused_or_answered_as_on_the_visible_data() {
    let full = database("corpus-full", FULL);
    let visible = database("corpus-visible", VISIBLE);
    let gw_dir = scratch_dir("corpus-gw");
    let pg_port = free_port().to_string();
    let pg_addr = format!("127.0.0.1:{pg_port}");
    let (gw, flight_addr) = start_gateway_flight(
        &format!("sqlite:{}", gw_dir.join("gateway.db").display()),
        &full,
        &[("PGWIRE_ADDR", &pg_addr), ("PGWIRE_PLAIN_LOOPBACK", "true")],
    );
    let flight = flight_client::Flight::new(flight_addr);
    // The PostgreSQL door's oracle: a second gateway on the visible data,
    // its user granted every table there with no filter or mask, answering
    // through the same door (so both answers are written alike).
    let oracle_pg_port = free_port().to_string();
    let oracle_gw_dir = scratch_dir("corpus-oracle-gw");
    let oracle_gw = start_gateway(
        &format!("sqlite:{}", oracle_gw_dir.join("gateway.db").display()),
        &visible,
        &[
            ("PGWIRE_ADDR", &format!("127.0.0.1:{oracle_pg_port}")),
            ("PGWIRE_PLAIN_LOOPBACK", "true"),
        ],
    );
    let oracle_admin = Caller {
        gw: &oracle_gw,
        token: ADMIN_TOKEN.into(),
    };
    oracle_admin.admin("PUT", "/admin/users/seer", json!({}));
    for t in ["employees", "departments", "work_logs"] {
        oracle_admin.admin(
            "POST",
            "/admin/grants",
            json!({"principal": "seer", "principal_type": "user", "table": t}),
        );
    }
    let seer_token = oracle_admin.admin("POST", "/admin/tokens", json!({"user": "seer"}))["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut oracle_pg = pg_client(&oracle_pg_port, "seer", &seer_token);
    let agent = start_agent(&full, &[]);
    let oracle = start_agent(&visible, &[]);
    let admin = Caller {
        gw: &gw,
        token: ADMIN_TOKEN.into(),
    };
    admin.admin(
        "POST",
        "/compute-endpoints",
        json!({"name": "a1", "url": agent.url(), "type": "REMOTE", "auth_token": AGENT_TOKEN}),
    );
    let mut callers = Vec::new();
    let mut pg_callers = Vec::new();
    for (name, remote) in [("ana_local", false), ("ana_remote", true)] {
        admin.admin("PUT", &format!("/admin/users/{name}"), json!({}));
        admin.admin(
            "PUT",
            &format!("/admin/groups/analysts/members/{name}"),
            Value::Null,
        );
        if remote {
            admin.admin(
                "POST",
                "/compute-endpoints/a1/assignments",
                json!({"principal": name, "principal_type": "user", "is_default": true, "fallback_local": false}),
            );
        }
        let t = admin.admin("POST", "/admin/tokens", json!({ "user": name }));
        pg_callers.push((
            name,
            pg_client(&pg_port, name, t["token"].as_str().unwrap()),
        ));
        callers.push((
            name,
            Caller {
                gw: &gw,
                token: t["token"].as_str().unwrap().to_string(),
            },
        ));
    }
    let group = |body: Value| {
        let mut b = body;
        b["principal"] = json!("analysts");
        b["principal_type"] = json!("group");
        b
    };
    for t in ["employees", "departments", "work_logs"] {
        admin.admin("POST", "/admin/grants", group(json!({ "table": t })));
    }
    admin.admin(
        "POST",
        "/admin/row-filters",
        group(json!({"table": "employees", "predicate": "dept = 'eng'"})),
    );
    admin.admin(
        "POST",
        "/admin/row-filters",
        group(json!({"table": "work_logs", "predicate": "employee_id IN (1, 2, 3, 4, 5)"})),
    );
    admin.admin(
        "POST",
        "/admin/column-masks",
        group(json!({"table": "employees", "column": "email", "expression": "left(email, 1) || '***'"})),
    );
    admin.admin(
        "POST",
        "/admin/column-masks",
        group(json!({"table": "employees", "column": "ssn", "expression": "'***-**-' || right(ssn, 4)"})),
    );

    let entries = corpus();
    assert!(entries.len() > 100, "{} corpus entries", entries.len());
    let mut failures: Vec<String> = Vec::new();
    let mut answered: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let dir_marker = full.parent().unwrap().display().to_string();
    for e in &entries {
        let reference = raw(
            oracle.addr,
            "POST",
            "/execute",
            &[("X-Agent-Token", AGENT_TOKEN)],
            serde_json::to_vec(&json!({ "sql": e.sql, "timeout_ms": 20000 }))
                .unwrap()
                .as_slice(),
        )
        .unwrap_or_else(|err| panic!("the oracle on {}: {err}", e.name));
        let ref_body: Value = serde_json::from_slice(&reference.body).unwrap_or(Value::Null);
        let want = answer_of(reference.status, &ref_body, e.ordered);
        for (who, caller) in &callers {
            let r = caller.query(&e.sql);
            let text = r.text();
            // The query id is random hex: no marker may match inside it.
            let scanned = without_query_id(&text);
            if let Some(h) =
                leak(&scanned, &e.sql).or_else(|| scanned.contains(&dir_marker).then_some("<path>"))
            {
                failures.push(format!(
                    "[{}] {} as {who}: LEAKED {h:?}: {text}",
                    e.file, e.name
                ));
                continue;
            }
            let body: Value =
                serde_json::from_str(&text).unwrap_or_else(|_| json!({"error": text}));
            let got = answer_of(r.status, &body, e.ordered);
            judge(e, who, &got, &want, &mut failures, &mut answered);
        }
        // The same texts through the Flight SQL door, against the oracle's
        // own Arrow answer.
        let want_arrow = arrow_oracle(&oracle, &e.sql, e.ordered);
        for (who, caller) in &callers {
            let (got, scanned) = flight_answer(&flight, &caller.token, &e.sql, e.ordered);
            let label = format!("{who} via Flight SQL");
            if let Some(h) =
                leak(&scanned, &e.sql).or_else(|| scanned.contains(&dir_marker).then_some("<path>"))
            {
                failures.push(format!(
                    "[{}] {} as {label}: LEAKED {h:?}: {scanned}",
                    e.file, e.name
                ));
                continue;
            }
            judge(e, &label, &got, &want_arrow, &mut failures, &mut answered);
        }
        // And through the PostgreSQL door, against the oracle gateway's
        // answer through the same door.
        let (want_pg, _) = pg_answer(&mut oracle_pg, &e.sql, e.ordered);
        for (who, client) in pg_callers.iter_mut() {
            let (got, scanned) = pg_answer(client, &e.sql, e.ordered);
            let label = format!("{who} via PostgreSQL wire");
            if let Some(h) =
                leak(&scanned, &e.sql).or_else(|| scanned.contains(&dir_marker).then_some("<path>"))
            {
                failures.push(format!(
                    "[{}] {} as {label}: LEAKED {h:?}: {scanned}",
                    e.file, e.name
                ));
                continue;
            }
            judge(e, &label, &got, &want_pg, &mut failures, &mut answered);
        }
    }
    for (file, (ok, all)) in &answered {
        eprintln!(
            "corpus {file}: {ok} of {all} answers identical to the visible data ({:.0}%), the rest refused (three doors)",
            100.0 * *ok as f64 / *all as f64
        );
    }
    assert!(
        failures.is_empty(),
        "{} corpus failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Compares one door's answer with the oracle's under the corpus's rule: a
/// refusal, or the oracle's rows (entries marked `expect: answer` must be
/// answered).
fn judge(
    e: &Entry,
    who: &str,
    got: &Answer,
    want: &Answer,
    failures: &mut Vec<String>,
    answered: &mut BTreeMap<String, (usize, usize)>,
) {
    if std::env::var_os("CORPUS_VERBOSE").is_some() {
        eprintln!("[{}] {} as {who}: {got:?}", e.file, e.name);
    }
    let counts = answered.entry(e.file.clone()).or_default();
    counts.1 += 1;
    match (got, want) {
        (Answer::Refused(why), _) => {
            if e.must_answer {
                failures.push(format!(
                    "[{}] {} as {who}: refused ({why}); the oracle said {want:?}",
                    e.file, e.name
                ));
            }
        }
        (Answer::Rows { .. }, Answer::Refused(why)) => failures.push(format!(
            "[{}] {} as {who}: answered {got:?} where the visible data gives an error ({why})",
            e.file, e.name
        )),
        (g, w) if g == w => counts.0 += 1,
        (
            Answer::Rows {
                columns: gc,
                rows: gr,
            },
            Answer::Rows {
                columns: wc,
                rows: wr,
            },
        ) if gr == wr && gc.len() == wc.len() => {
            // The same rows under other names: a column the gateway
            // named after the user's text where DuckDB names it after
            // its own printing of that text (rewrite: unnamed columns
            // holding a rewritten table).
            counts.0 += 1;
            eprintln!(
                "[{}] {} as {who}: named {gc:?}, the visible data names {wc:?}",
                e.file, e.name
            );
        }
        (g, w) => failures.push(format!(
            "[{}] {} as {who}: answered {g:?}, the visible data gives {w:?}",
            e.file, e.name
        )),
    }
}

/// Rows as text, one string per row (cells as arrow's display writes them).
fn arrow_answer(t: flight_client::Table, ordered: bool) -> Answer {
    let mut rows: Vec<String> = t.rows.iter().map(|r| r.join("\u{1f}")).collect();
    if !ordered {
        rows.sort();
    }
    Answer::Rows {
        columns: t.columns,
        rows,
    }
}

/// The oracle's answer as Arrow (`/execute` with `"format":"arrow"`): the
/// same DuckDB export the gateway's engines give the Flight door.
fn arrow_oracle(oracle: &Proc, sql: &str, ordered: bool) -> Answer {
    let r = raw(
        oracle.addr,
        "POST",
        "/execute",
        &[("X-Agent-Token", AGENT_TOKEN)],
        serde_json::to_vec(&json!({ "sql": sql, "timeout_ms": 20000, "format": "arrow" }))
            .unwrap()
            .as_slice(),
    )
    .unwrap_or_else(|err| panic!("the oracle on {sql}: {err}"));
    if r.status != 200 {
        let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        return answer_of(r.status, &body, ordered);
    }
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(r.body), None)
        .expect("the oracle's Arrow stream");
    let columns = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let batches: Vec<_> = reader
        .collect::<Result<_, _>>()
        .expect("the oracle's batches");
    arrow_answer(flight_client::table(&batches, columns), ordered)
}

/// One text through the Flight SQL door: its answer, and the text to scan
/// for hidden values (every cell and column name, or the error).
fn flight_answer(
    flight: &flight_client::Flight,
    token: &str,
    sql: &str,
    ordered: bool,
) -> (Answer, String) {
    match flight.query(token, sql) {
        Ok(t) => {
            let scanned = format!("{:?} {:?}", t.columns, t.rows);
            (arrow_answer(t, ordered), scanned)
        }
        Err(status) => {
            let text = format!("{:?}: {}", status.code(), status.message());
            (Answer::Refused(text.clone()), text)
        }
    }
}

/// A PostgreSQL door's client (plain, from loopback: the gateways allow it).
/// The store is re-read every STORE_REFRESH, so the login is retried until
/// the user's token is known.
fn pg_client(port: &str, user: &str, token: &str) -> postgres::Client {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match postgres::Config::new()
            .host("127.0.0.1")
            .port(port.parse().unwrap())
            .user(user)
            .password(token)
            .dbname("shared")
            .connect(postgres::NoTls)
        {
            Ok(c) => return c,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{user} cannot log in: {e}"
                );
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    }
}

/// One text through the PostgreSQL door (the simple protocol, values as
/// the door writes them): its answer, and the text to scan for hidden
/// values.
fn pg_answer(client: &mut postgres::Client, sql: &str, ordered: bool) -> (Answer, String) {
    match client.simple_query(sql) {
        Ok(messages) => {
            let mut columns = Vec::new();
            let mut rows = Vec::new();
            for m in messages {
                match m {
                    postgres::SimpleQueryMessage::RowDescription(cols) => {
                        columns = cols.iter().map(|c| c.name().to_string()).collect();
                    }
                    postgres::SimpleQueryMessage::Row(r) => {
                        let cells: Vec<String> =
                            (0..r.len()).map(|i| format!("{:?}", r.get(i))).collect();
                        rows.push(cells.join("|"));
                    }
                    _ => {}
                }
            }
            if !ordered {
                rows.sort();
            }
            let scanned = format!("{columns:?} {rows:?}");
            (Answer::Rows { columns, rows }, scanned)
        }
        Err(e) => {
            let text = match e.as_db_error() {
                Some(d) => format!("{}: {}", d.code().code(), d.message()),
                None => e.to_string(),
            };
            (Answer::Refused(text.clone()), text)
        }
    }
}
