//! The agent client against real agents: the lifecycle end to end with typed values,
//! idempotent submits, deadlines and drops, the `/execute` fallback, 429, typed errors.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use client::{AgentClient, AgentConfig, ClientError, Value, Via};
use common::*;

fn client_for(a: &Agent) -> AgentClient {
    AgentClient::new(AgentConfig::new("a", &a.url(), TOKEN)).unwrap()
}

#[test]
fn lifecycle_end_to_end_with_typed_values_in_pages() {
    let a = Agent::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let mut cfg = AgentConfig::new("a", &a.url(), TOKEN);
        cfg.page_size = 100;
        let c = AgentClient::new(cfg).unwrap();
        let sql = "SELECT i::BIGINT AS id, 'r' || i AS name, i % 2 = 0 AS even, \
                   (i / 4)::DECIMAL(10,2) AS quarter, DATE '2024-02-29' + i::INTEGER AS day, \
                   [i, NULL] AS pair, CASE WHEN i = 3 THEN NULL ELSE i * 1.5 END AS f, \
                   18446744073709551615::UBIGINT AS big, \
                   '2024-02-29 13:45:30.5'::TIMESTAMP AS ts, \
                   'f47ac10b-58cc-4372-a567-0e02b2c3d479'::UUID AS u, \
                   '\\xAA\\xBB'::BLOB AS b, {'k': i} AS s \
                   FROM range(250) t(i) ORDER BY i";
        let mut rows = c.run(sql, after(PATIENCE)).await.expect("run");
        assert_eq!(rows.via, Via::Lifecycle);
        assert_eq!(rows.row_count, Some(250));
        assert_eq!(rows.columns[0], "id");
        assert_eq!(rows.column_types[0], "BIGINT");
        assert_eq!(rows.column_types[3], "DECIMAL(10,2)");
        let query_id = rows.query_id.clone().unwrap();
        let mut pages = 0;
        let mut next = 0i64;
        while let Some(page) = rows.next_page().await.expect("page") {
            pages += 1;
            assert!(page.len() <= 100);
            for r in page {
                assert_eq!(r[0], Value::Int(next), "rows arrive in order");
                assert_eq!(r[1], Value::Text(format!("r{next}")));
                assert_eq!(r[2], Value::Bool(next % 2 == 0));
                assert!(matches!(&r[3], Value::Decimal(d) if d.contains('.')));
                assert_eq!(
                    r[4],
                    Value::Date(
                        NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()
                            + chrono::Days::new(next as u64)
                    )
                );
                assert_eq!(r[5], Value::List(vec![Value::Int(next), Value::Null]));
                if next == 3 {
                    assert_eq!(r[6], Value::Null);
                } else {
                    assert!(
                        matches!(r[6], Value::Decimal(_) | Value::Float(_)),
                        "{:?}",
                        r[6]
                    );
                }
                assert_eq!(r[7], Value::UInt(u64::MAX));
                assert!(matches!(r[8], Value::Timestamp(_)));
                assert!(matches!(r[9], Value::Uuid(_)));
                assert_eq!(r[10], Value::Bytes(vec![0xaa, 0xbb]));
                assert_eq!(r[11], Value::Json(serde_json::json!({ "k": next })));
                next += 1;
            }
        }
        assert_eq!(next, 250);
        assert_eq!(pages, 3);
        // The stream ends before the job's delete; close() waits for it.
        rows.close().await;
        let gone = c.status(&query_id, None, after(PATIENCE)).await;
        assert!(
            matches!(gone, Err(ClientError::NotFound { .. })),
            "{gone:?}"
        );
    });
    a.wait_health("no job left", |h| h["stored_jobs"] == 0);
}

#[test]
fn sql_errors_and_bad_tokens_are_typed() {
    let a = Agent::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let c = client_for(&a);
        let e = c.run("SELECT * FROM no_such_table", after(PATIENCE)).await.unwrap_err();
        assert!(matches!(&e, ClientError::Execution { code, message } if code == "EXECUTION_ERROR" && message.contains("no_such_table")), "{e:?}");
        let bad = AgentClient::new(AgentConfig::new("a", &a.url(), "wrong")).unwrap();
        let e = bad.run("SELECT 1", after(PATIENCE)).await.unwrap_err();
        assert!(matches!(e, ClientError::Auth { .. }), "{e:?}");
        let e = c.status("00000000-0000-0000-0000-000000000000", None, after(PATIENCE)).await.unwrap_err();
        assert!(matches!(e, ClientError::NotFound { .. }), "{e:?}");
        let e = c.status("../../etc", None, after(PATIENCE)).await.unwrap_err();
        assert!(matches!(e, ClientError::NotFound { .. }), "{e:?}");
        // Nothing listening: unreachable (nothing was sent, so the caller may
        // run it elsewhere), quickly.
        let dead = AgentClient::new(AgentConfig::new("dead", &format!("http://127.0.0.1:{}", free_port()), TOKEN)).unwrap();
        let e = dead.run("SELECT 1", after(PATIENCE)).await.unwrap_err();
        assert!(matches!(e, ClientError::Unreachable { .. }) && e.never_started(), "{e:?}");
    });
    a.wait_health("no job left", |h| h["stored_jobs"] == 0);
}

/// A proxy that forwards everything, except that it swallows the answer to the first
/// request it sees and closes that connection: the client's submit reached the agent,
/// but the client saw a transport error.
fn lossy_proxy(upstream: std::net::SocketAddr) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let seen = conns.clone();
    std::thread::spawn(move || {
        for client in l.incoming() {
            let Ok(mut client) = client else { return };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let Ok(mut up) = TcpStream::connect(upstream) else {
                    return;
                };
                if n == 0 {
                    // Forward the first request, drop its answer, close.
                    let mut buf = [0u8; 65536];
                    if let Ok(k) = client.read(&mut buf) {
                        let _ = up.write_all(&buf[..k]);
                        std::thread::sleep(Duration::from_millis(300));
                    }
                    return;
                }
                let mut c2 = client.try_clone().unwrap();
                let mut u2 = up.try_clone().unwrap();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut u2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Both);
                });
                let _ = std::io::copy(&mut client, &mut up);
                let _ = up.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (addr, conns)
}

#[test]
fn a_retried_submit_runs_once() {
    let a = Agent::start(&[]);
    a.execute("CREATE TABLE hits (x INTEGER)");
    let (proxy, conns) = lossy_proxy(a.addr);
    let rt = runtime();
    rt.block_on(async {
        let c = AgentClient::new(AgentConfig::new("p", &format!("http://{proxy}"), TOKEN)).unwrap();
        let rows = c
            .run("INSERT INTO hits VALUES (1) RETURNING x", after(PATIENCE))
            .await
            .expect("run through a lossy proxy");
        assert_eq!(rows.collect().await.unwrap(), vec![vec![Value::Int(1)]]);
        // Explicit: the same request id twice is one job.
        let c = client_for(&a);
        let s1 = c
            .submit("INSERT INTO hits VALUES (2)", "same-id", after(PATIENCE))
            .await
            .unwrap();
        let s2 = c
            .submit("INSERT INTO hits VALUES (2)", "same-id", after(PATIENCE))
            .await
            .unwrap();
        assert_eq!(s1.query_id, s2.query_id);
    });
    assert!(
        conns.load(Ordering::SeqCst) >= 2,
        "the client retried on a new connection"
    );
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let v = a.execute(
            "SELECT count(*) FILTER (x = 1) AS ones, count(*) FILTER (x = 2) AS twos FROM hits",
        );
        if v["rows"][0][1] == 1 {
            assert_eq!(
                v["rows"][0][0], 1,
                "the retried submit ran exactly once: {v}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(a.metric("compute_agent_submitted_jobs_total"), 2.0);
}

#[test]
fn a_deadline_cancels_and_deletes_on_the_agent() {
    let a = Agent::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let c = client_for(&a);
        let t = std::time::Instant::now();
        let e = c
            .run(SLOW_SQL, after(Duration::from_millis(400)))
            .await
            .unwrap_err();
        assert_eq!(e, ClientError::Timeout);
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    });
    // The error came after cancel + delete: nothing is stored or running.
    a.wait_health("deadline cleaned up", |h| {
        h["stored_jobs"] == 0 && h["active_queries"] == 0
    });
}

#[test]
fn dropping_a_run_cancels_and_deletes() {
    let a = Agent::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let c = client_for(&a);
        let task = tokio::spawn(async move { c.run(SLOW_SQL, after(PATIENCE)).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(500)).await;
        task.abort();
        let _ = task.await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    a.wait_health("drop cleaned up", |h| {
        h["stored_jobs"] == 0 && h["active_queries"] == 0
    });
}

#[test]
fn dropping_the_rows_deletes_the_job() {
    let a = Agent::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let mut cfg = AgentConfig::new("a", &a.url(), TOKEN);
        cfg.page_size = 10;
        let c = AgentClient::new(cfg).unwrap();
        let mut rows = c
            .run("SELECT * FROM range(1000)", after(PATIENCE))
            .await
            .unwrap();
        let first = rows.next_page().await.unwrap().unwrap();
        assert_eq!(first.len(), 10);
        drop(rows);
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    a.wait_health("rows dropped", |h| h["stored_jobs"] == 0);
}

#[test]
fn cursor_mode_off_falls_back_to_execute_once_without_double_execution() {
    let a = Agent::start(&[("FEATURE_CURSOR_MODE", "false")]);
    a.execute("CREATE TABLE hits (x INTEGER)");
    let rt = runtime();
    rt.block_on(async {
        let c = client_for(&a);
        assert!(c.uses_lifecycle());
        let rows = c
            .run("INSERT INTO hits VALUES (1) RETURNING x", after(PATIENCE))
            .await
            .unwrap();
        assert_eq!(rows.via, Via::Execute);
        assert_eq!(rows.column_types, vec!["INTEGER".to_string()]);
        assert_eq!(rows.collect().await.unwrap(), vec![vec![Value::Int(1)]]);
        // Remembered: the next run goes straight to /execute, no second probe.
        assert!(!c.uses_lifecycle());
        let rows = c
            .run("INSERT INTO hits VALUES (2) RETURNING x", after(PATIENCE))
            .await
            .unwrap();
        assert_eq!(rows.via, Via::Execute);
    });
    let v = a.execute("SELECT x, count(*) FROM hits GROUP BY x ORDER BY x");
    assert_eq!(
        v["rows"],
        serde_json::json!([[1, 1], [2, 1]]),
        "each statement ran once"
    );
    assert_eq!(
        a.metric("compute_agent_http_responses_total{route=\"unmatched\",class=\"4xx\"}"),
        1.0,
        "POST /queries was tried once"
    );
    // A client with cursor mode off never tries the lifecycle.
    let rt = runtime();
    rt.block_on(async {
        let mut cfg = AgentConfig::new("a", &a.url(), TOKEN);
        cfg.cursor_mode = false;
        let c = AgentClient::new(cfg).unwrap();
        assert_eq!(
            c.run("SELECT 1", after(PATIENCE)).await.unwrap().via,
            Via::Execute
        );
    });
    assert_eq!(
        a.metric("compute_agent_http_responses_total{route=\"unmatched\",class=\"4xx\"}"),
        1.0
    );
}

#[test]
fn overload_429_is_retried_within_the_deadline_only() {
    // One shard, at most one queued job: a running job plus a queued one fill it.
    let a = Agent::start(&[
        ("SHARDS", "1"),
        ("MAX_QUEUED_JOBS", "1"),
        ("MAX_CONCURRENT_QUERIES", "1"),
    ]);
    let rt = runtime();
    rt.block_on(async {
        let c = client_for(&a);
        let busy = c.submit(SLOW_SQL, "busy", after(PATIENCE)).await.unwrap();
        a.wait_health("busy running", |h| h["active_queries"] == 1);
        let queued = c.submit(SLOW_SQL, "queued", after(PATIENCE)).await.unwrap();
        // Retry-After (1 s) does not fit a 500 ms deadline: Overloaded at once.
        let e = c.run("SELECT 1", after(Duration::from_millis(500))).await.unwrap_err();
        assert!(matches!(&e, ClientError::Overloaded { code, retry_after: Some(_), .. } if code == "OVERLOADED"), "{e:?}");
        // With room, the client waits and retries; meanwhile the blockers go away.
        let c2 = c.clone();
        let (b, q) = (busy.query_id.clone(), queued.query_id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            c2.cancel_and_delete(&q).await;
            c2.cancel_and_delete(&b).await;
        });
        let rows = c.run("SELECT 42 AS x", after(PATIENCE)).await.expect("retried after 429");
        assert_eq!(rows.collect().await.unwrap(), vec![vec![Value::Int(42)]]);
    });
}

#[test]
fn results_before_the_end_are_not_ready() {
    let a = Agent::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let c = client_for(&a);
        let s = c.submit(SLOW_SQL, "nr", after(PATIENCE)).await.unwrap();
        let e = c
            .page(&s.query_id, None, 10, after(PATIENCE))
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::NotReady { .. }), "{e:?}");
        let st = c.cancel(&s.query_id, after(PATIENCE)).await.unwrap();
        assert_eq!(st.query_id, s.query_id);
        c.delete(&s.query_id, after(PATIENCE)).await.unwrap();
    });
}

#[test]
fn oversized_answers_are_refused_not_buffered() {
    let a = Agent::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let mut cfg = AgentConfig::new("a", &a.url(), TOKEN);
        cfg.max_response_bytes = 4096;
        let c = AgentClient::new(cfg).unwrap();
        // The first page comes with the submit's answer, so the refusal comes from
        // `run` itself (an agent without the submit wait: from the first page).
        let e = match c
            .run("SELECT repeat('x', 1000) AS s FROM range(100)", after(PATIENCE))
            .await
        {
            Ok(mut rows) => rows.next_page().await.unwrap_err(),
            Err(e) => e,
        };
        assert!(matches!(&e, ClientError::Protocol { message, .. } if message.contains("larger than 4096")), "{e:?}");
    });
    // The refused answer still canceled and deleted the job.
    a.wait_health("cleaned", |h| h["stored_jobs"] == 0);
}

/// A hostile "agent": answers every request with `reply`, then closes.
fn hostile(reply: &'static [u8]) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().take(20) {
            let Ok(mut s) = s else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(reply);
        }
    });
    format!("http://{addr}")
}

#[test]
fn bad_answers_are_typed_errors_not_crashes() {
    let rt = runtime();
    rt.block_on(async {
        let cases: [&'static [u8]; 5] = [
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 9\r\n\r\nnot json!",
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 40\r\n\r\n{\"query_id\":\"../x\",\"status\":\"QUEUED\"}  ",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n{",
            b"garbage that is not HTTP\r\n\r\n",
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 44\r\n\r\n{\"query_id\":\"abc\",\"status\":\"SIDEWAYS-ish\"} ",
        ];
        for reply in cases {
            let mut cfg = AgentConfig::new("evil", &hostile(reply), TOKEN);
            cfg.max_response_bytes = 1 << 20;
            cfg.submit_attempts = 1;
            let c = AgentClient::new(cfg).unwrap();
            let e = c
                .run("SELECT 1", after(Duration::from_secs(10)))
                .await
                .map(|r| r.via)
                .unwrap_err();
            assert!(
                matches!(e, ClientError::Protocol { .. } | ClientError::Transport { .. } | ClientError::NotFound { .. }),
                "{:?} -> {e:?}",
                String::from_utf8_lossy(reply)
            );
        }
    });
}

#[test]
fn statements_without_rows_skip_paging_and_are_deleted() {
    let a = Agent::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let c = client_for(&a);
        let rows = c
            .run("CREATE TABLE t (x INTEGER)", after(PATIENCE))
            .await
            .unwrap();
        assert_eq!(rows.via, Via::Lifecycle);
        assert!(rows.collect().await.unwrap().is_empty());
        let rows = c.run("SELECT x FROM t", after(PATIENCE)).await.unwrap();
        assert_eq!(rows.columns, vec!["x".to_string()]);
        assert_eq!(rows.column_types, vec!["INTEGER".to_string()]);
        assert_eq!(rows.row_count, Some(0));
        assert!(rows.collect().await.unwrap().is_empty());
    });
    a.wait_health("deleted", |h| h["stored_jobs"] == 0);
}

/// A short query costs one round trip: the submit waits for the job and brings its
/// status and first page; later pages are fetched, status is never polled, and the
/// job is deleted off the caller's path.
#[test]
fn a_short_run_is_one_round_trip() {
    let a = Agent::start(&[]);
    let rt = runtime();
    let count = |route: &str, class: &str| {
        a.metric(&format!(
            "compute_agent_http_responses_total{{route=\"{route}\",class=\"{class}\"}}"
        ))
    };
    rt.block_on(async {
        let mut cfg = AgentConfig::new("a", &a.url(), TOKEN);
        cfg.page_size = 100;
        let c = AgentClient::new(cfg).unwrap();
        let rows = c.run("SELECT 7 AS x", after(PATIENCE)).await.unwrap();
        assert_eq!(rows.via, Via::Lifecycle);
        assert_eq!(rows.collect().await.unwrap(), vec![vec![Value::Int(7)]]);
        assert_eq!(count("POST /queries", "2xx"), 1.0);
        assert_eq!(count("GET /queries/{id}", "2xx"), 0.0);
        assert_eq!(count("GET /queries/{id}/results", "2xx"), 0.0);

        // 250 rows in pages of 100: the first with the submit, two fetched.
        let rows = c
            .run("SELECT i FROM range(250) t(i) ORDER BY i", after(PATIENCE))
            .await
            .unwrap();
        let all = rows.collect().await.unwrap();
        assert_eq!(all.len(), 250);
        assert_eq!(all[249], vec![Value::Int(249)]);
        assert_eq!(count("POST /queries", "2xx"), 2.0);
        assert_eq!(count("GET /queries/{id}", "2xx"), 0.0);
        assert_eq!(count("GET /queries/{id}/results", "2xx"), 2.0);

        // A failure arrives with the submit too, as a typed error.
        let e = c.run("SELECT * FROM nowhere", after(PATIENCE)).await.unwrap_err();
        assert!(
            matches!(&e, ClientError::Execution { code, message } if code == "EXECUTION_ERROR" && message.contains("nowhere")),
            "{e:?}"
        );
        assert_eq!(count("GET /queries/{id}", "2xx"), 0.0);
    });
    a.wait_health("every job deleted", |h| h["stored_jobs"] == 0);
}

/// Parameters reach the engine as values, on the lifecycle, on `/execute`
/// and on local compute alike; a value that reads like SQL stays a value.
#[test]
fn parameters_are_bound_as_values_on_every_path() {
    use client::{Executor, LocalExecutor, Param};
    let a = Agent::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let lifecycle = client_for(&a);
        let mut cfg = AgentConfig::new("a", &a.url(), TOKEN);
        cfg.cursor_mode = false;
        let execute = AgentClient::new(cfg).unwrap();
        let local = LocalExecutor::open(None).unwrap();
        let sql = "SELECT $1::BIGINT + 1 AS n, $2 AS s, $3 AS b, $4 IS NULL AS z, $5 AS f";
        let params = [
            Param::Int(41),
            Param::Text("'); DROP TABLE x; --".into()),
            Param::Bool(true),
            Param::Null,
            Param::Float(2.5),
        ];
        let engines: [&dyn Executor; 3] = [&lifecycle, &execute, &*local];
        for e in engines {
            let rows = e
                .run_params(sql, &params, after(PATIENCE))
                .await
                .unwrap_or_else(|err| panic!("{}: {err}", e.name()))
                .collect()
                .await
                .unwrap();
            assert_eq!(
                rows,
                vec![vec![
                    Value::Int(42),
                    Value::Text("'); DROP TABLE x; --".into()),
                    Value::Bool(true),
                    Value::Bool(true),
                    Value::Float(2.5),
                ]],
                "{}",
                e.name()
            );
        }
        // A missing parameter is the engine's error, not a panic.
        for e in [&lifecycle as &dyn Executor, &execute, &*local] {
            let r = e
                .run_params("SELECT $1 + $2", &[Param::Int(1)], after(PATIENCE))
                .await;
            let err = match r {
                Ok(rows) => rows.collect().await.err(),
                Err(e) => Some(e),
            };
            assert!(
                matches!(err, Some(ClientError::Execution { .. })),
                "{}: {err:?}",
                e.name()
            );
        }
    });
}
