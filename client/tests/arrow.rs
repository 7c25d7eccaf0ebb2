//! Arrow results through the client, against real agents: batches page by
//! page (lifecycle and `/execute`), the fallback to JSON rows against agents
//! without Arrow (a real HTTP front in this test, before the real agent, that
//! either drops the `format` field as an older agent ignores it, or refuses it
//! with 400 VALIDATION_ERROR), remembered per endpoint; and `agentctl run
//! --format arrow|parquet|csv|json --output FILE`, each file read back.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch};
use client::{AgentClient, AgentConfig, ArrowRun, Value, Via};
use common::*;

fn client_at(url: &str, page_size: u32) -> AgentClient {
    let mut cfg = AgentConfig::new("a", url, TOKEN);
    cfg.page_size = page_size;
    AgentClient::new(cfg).unwrap()
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column(0).as_primitive::<Int64Type>();
            (0..c.len()).map(|i| c.value(i)).collect::<Vec<_>>()
        })
        .collect()
}

const SQL: &str =
    "SELECT i AS id, 'r' || i AS name, [i, NULL] AS pair FROM range(2500) t(i) ORDER BY i";

#[test]
fn batches_page_by_page_from_an_agent_with_arrow() {
    let a = Agent::start(&[]);
    let rt = runtime();
    rt.block_on(async {
        let c = client_at(&a.url(), 1000);
        assert!(c.offers_arrow());
        let ArrowRun::Arrow(mut pages) = c.run_arrow(SQL, after(PATIENCE)).await.unwrap() else {
            panic!("an agent with Arrow answered rows");
        };
        assert_eq!(pages.via, Via::Lifecycle);
        assert_eq!(pages.row_count(), Some(2500));
        let mut all = Vec::new();
        let mut n_pages = 0;
        while let Some(b) = pages.next_batches().await.unwrap() {
            n_pages += 1;
            all.extend(b);
        }
        assert_eq!(n_pages, 3);
        assert_eq!(ids(&all), (0..2500).collect::<Vec<_>>());
        let names = all[0].column(1).as_string::<i32>();
        assert_eq!(names.value(7), "r7");
        assert!(all[0].column(2).as_list::<i32>().value(0).is_null(1));
        // The job is deleted once its last page is read.
        a.wait_health("jobs deleted", |h| h["stored_jobs"] == 0);
        // Failures are the usual typed errors.
        let e = c
            .run_arrow("SELECT * FROM nope", after(PATIENCE))
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("nope"), "{e}");
        // Without lifecycle routes: /execute, every batch at once.
        let mut cfg = AgentConfig::new("x", &a.url(), TOKEN);
        cfg.cursor_mode = false;
        let c = AgentClient::new(cfg).unwrap();
        let ArrowRun::Arrow(pages) = c.run_arrow(SQL, after(PATIENCE)).await.unwrap() else {
            panic!("rows");
        };
        assert_eq!(pages.via, Via::Execute);
        assert_eq!(ids(&pages.collect().await.unwrap()).len(), 2500);
    });
}

/// How the front plays an agent without Arrow.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OldAgent {
    /// Drops `format` from request bodies (an agent that ignores the field).
    Ignores,
    /// Answers 400 VALIDATION_ERROR to a body with `format`.
    Refuses,
}

/// A real HTTP front before `agent`: forwards every request (one connection
/// per request to the agent) after applying `mode`; counts the bodies that
/// asked for a format.
fn old_agent_front(agent: SocketAddr, mode: OldAgent) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let counter = counter.clone();
            std::thread::spawn(move || serve(conn, agent, mode, &counter));
        }
    });
    (url, asked)
}

fn serve(conn: TcpStream, agent: SocketAddr, mode: OldAgent, asked: &AtomicUsize) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut w = conn;
    loop {
        let mut head = Vec::new();
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
                continue;
            }
            if lower.starts_with("connection:") {
                continue;
            }
            head.push(line);
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        if !body.is_empty() {
            if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&body) {
                if v.get("format").is_some() {
                    asked.fetch_add(1, Ordering::SeqCst);
                    if mode == OldAgent::Refuses {
                        let b = r#"{"error":"unknown field format","code":"VALIDATION_ERROR"}"#;
                        let resp = format!("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len());
                        w.write_all(resp.as_bytes()).unwrap();
                        continue;
                    }
                    v.as_object_mut().unwrap().remove("format");
                    body = serde_json::to_vec(&v).unwrap();
                }
            }
        }
        let mut up = TcpStream::connect(agent).unwrap();
        let mut req = head.concat();
        req.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ));
        up.write_all(req.as_bytes()).unwrap();
        up.write_all(&body).unwrap();
        let mut resp = Vec::new();
        up.read_to_end(&mut resp).unwrap();
        // Keep the client's connection open: drop the agent's "Connection: close".
        let text_end = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&resp[..text_end])
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
            .collect::<Vec<_>>()
            .join("\r\n");
        w.write_all(head.trim_end().as_bytes()).unwrap();
        w.write_all(b"\r\n\r\n").unwrap();
        w.write_all(&resp[text_end..]).unwrap();
    }
}

#[test]
fn agents_without_arrow_get_json_remembered_per_endpoint() {
    let a = Agent::start(&[]);
    let rt = runtime();
    for mode in [OldAgent::Ignores, OldAgent::Refuses] {
        let (url, asked) = old_agent_front(a.addr, mode);
        rt.block_on(async {
            let c = client_at(&url, 1000);
            let ArrowRun::Rows(rows) = c.run_arrow(SQL, after(PATIENCE)).await.unwrap() else {
                panic!("an agent without Arrow answered Arrow");
            };
            let rows = rows.collect().await.unwrap();
            assert_eq!(rows.len(), 2500);
            assert_eq!(rows[3][0], Value::Int(3));
            assert_eq!(asked.load(Ordering::SeqCst), 1);
            assert!(!c.offers_arrow());
            // Remembered: the next run does not ask again.
            let ArrowRun::Rows(rows) = c.run_arrow("SELECT 5 AS x", after(PATIENCE)).await.unwrap()
            else {
                panic!("arrow");
            };
            assert_eq!(rows.collect().await.unwrap()[0][0], Value::Int(5));
            assert_eq!(asked.load(Ordering::SeqCst), 1);
            // /execute (no lifecycle) falls back the same way.
            let mut cfg = AgentConfig::new("x", &url, TOKEN);
            cfg.cursor_mode = false;
            let c = AgentClient::new(cfg).unwrap();
            let ArrowRun::Rows(rows) = c.run_arrow("SELECT 6 AS x", after(PATIENCE)).await.unwrap()
            else {
                panic!("arrow");
            };
            assert_eq!(rows.collect().await.unwrap()[0][0], Value::Int(6));
            assert_eq!(asked.load(Ordering::SeqCst), 2);
        });
        // Every job was read and deleted; none ran twice.
        a.wait_health("jobs deleted", |h| h["stored_jobs"] == 0);
    }
}

#[test]
fn agentctl_writes_each_file_format_as_it_streams() {
    let a = Agent::start(&[]);
    let dir = scratch_dir("agentctl-arrow");
    let sql = "SELECT i AS id, 'n' || i AS name, i * 0.5 AS half FROM range(12000) t(i) ORDER BY i";
    let run = |format: &str| {
        let path = dir.join(format!("out.{format}"));
        let o = Command::new(env!("CARGO_BIN_EXE_agentctl"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AGENT_URL", a.url())
            .env("AGENT_TOKEN", TOKEN)
            .args(["run", sql, "--format", format, "--output"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{format}: {o:?}");
        path
    };
    // Arrow IPC stream.
    let f = std::fs::File::open(run("arrow")).unwrap();
    let batches: Vec<RecordBatch> = arrow_ipc::reader::StreamReader::try_new(f, None)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ids(&batches), (0..12000).collect::<Vec<_>>());
    // Parquet.
    let f = std::fs::File::open(run("parquet")).unwrap();
    let batches: Vec<RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    assert_eq!(ids(&batches), (0..12000).collect::<Vec<_>>());
    assert_eq!(batches[0].schema().field(1).name(), "name");
    // CSV with a header.
    let text = std::fs::read_to_string(run("csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 12001);
    assert_eq!(lines[0], "id,name,half");
    assert_eq!(lines[3], "2,n2,1.0");
    // JSON: an array of row objects.
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run("json")).unwrap()).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 12000);
    assert_eq!(rows[11999]["id"], 11999);
    assert_eq!(rows[1]["name"], "n1");
    // Binary formats need a file.
    let o = Command::new(env!("CARGO_BIN_EXE_agentctl"))
        .env_clear()
        .env("AGENT_URL", a.url())
        .env("AGENT_TOKEN", TOKEN)
        .args(["run", "SELECT 1", "--format", "parquet"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    a.wait_health("jobs deleted", |h| h["stored_jobs"] == 0);
}
