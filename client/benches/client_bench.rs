//! Client benchmarks (docs/benchmarks.md, "Agent client"), against a real agent this
//! bench starts from the workspace's target dir (or `AGENT_URL` + `AGENT_TOKEN`):
//!
//! 1. `run("SELECT 1")` (submit, long-poll, one page, delete) vs a bare `POST /execute`
//!    on the same pooled client, at 1 and 16 concurrent callers: completion p50/p99
//!    and throughput, alternating A B A B.
//! 2. A 1M-row result through `run` into typed rows vs DuckDB's own
//!    `COPY (...) TO file (FORMAT JSON)` in this process; peak RSS growth of this
//!    process while the rows stream.
//!
//! Knobs (environment): `ROUNDS` (3), `SECONDS` per side and round (3), `ROWS`
//! (1000000), `ONLY` (`run` or `rows`). Prints markdown tables.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::{AgentClient, AgentConfig};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

fn env_num(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

struct AgentProc(Option<Child>);
impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_agent() -> (String, String, AgentProc) {
    if let Ok(url) = std::env::var("AGENT_URL") {
        return (
            url,
            std::env::var("AGENT_TOKEN").unwrap_or_default(),
            AgentProc(None),
        );
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("compute-agent");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .env("AGENT_TOKEN", "bench")
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start compute-agent (build the workspace first)");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "agent did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (url, "bench".into(), AgentProc(Some(child)))
}

#[derive(Clone, Copy)]
struct Stats {
    p50_ms: f64,
    p99_ms: f64,
    per_s: f64,
}

fn stats(mut lat: Vec<Duration>, elapsed: Duration) -> Stats {
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e3;
    Stats {
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        per_s: lat.len() as f64 / elapsed.as_secs_f64(),
    }
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

async fn closed_loop<F, Fut>(callers: usize, secs: u64, f: F) -> Stats
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < end {
                let t = Instant::now();
                f().await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    stats(all, start.elapsed())
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let rounds = env_num("ROUNDS", 3) as usize;
    let secs = env_num("SECONDS", 3);
    let only = std::env::var("ONLY").unwrap_or_default();
    let (url, token, _agent) = start_agent();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = AgentClient::new(AgentConfig::new("bench", &url, &token)).unwrap();
        let raw: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        if only.is_empty() || only == "run" {
            println!("## 1. run(SELECT 1) vs bare POST /execute ({rounds} rounds x {secs}s per side, alternating)\n");
            println!("| callers | side | p50 ms | p99 ms | per s |\n|---|---|---|---|---|");
            for callers in [1usize, 16] {
                let mut ratios_p50 = Vec::new();
                let mut ratios_rate = Vec::new();
                for _ in 0..rounds {
                    let c = client.clone();
                    let run = closed_loop(callers, secs, move || {
                        let c = c.clone();
                        async move {
                            let rows = c.run("SELECT 1", Instant::now() + Duration::from_secs(30)).await.expect("run");
                            rows.collect().await.expect("rows");
                        }
                    })
                    .await;
                    let (r, u, t) = (raw.clone(), url.clone(), token.clone());
                    let exec = closed_loop(callers, secs, move || {
                        let (r, u, t) = (r.clone(), u.clone(), t.clone());
                        async move {
                            let req = http::Request::post(format!("{u}/execute"))
                                .header("X-Agent-Token", t)
                                .header("Content-Type", "application/json")
                                .body(Full::new(Bytes::from_static(br#"{"sql":"SELECT 1"}"#)))
                                .unwrap();
                            let resp = r.request(req).await.expect("execute");
                            assert_eq!(resp.status(), 200);
                            let _ = resp.into_body().collect().await.unwrap().to_bytes();
                        }
                    })
                    .await;
                    println!("| {callers} | run | {:.2} | {:.2} | {:.0} |", run.p50_ms, run.p99_ms, run.per_s);
                    println!("| {callers} | /execute | {:.2} | {:.2} | {:.0} |", exec.p50_ms, exec.p99_ms, exec.per_s);
                    ratios_p50.push(run.p50_ms / exec.p50_ms);
                    ratios_rate.push(run.per_s / exec.per_s);
                }
                let (m, lo, hi) = median(ratios_p50);
                let (mr, lor, hir) = median(ratios_rate);
                println!("\ncallers {callers}: run p50 / execute p50 = **{m:.2}x** ({lo:.2}-{hi:.2}); run rate / execute rate = {mr:.2}x ({lor:.2}-{hir:.2})\n");
                println!("| callers | side | p50 ms | p99 ms | per s |\n|---|---|---|---|---|");
            }
        }
        if only.is_empty() || only == "rows" {
            let n = env_num("ROWS", 1_000_000);
            let sql = format!("SELECT i AS id, 'name-' || i AS name, i * 0.5 AS half, DATE '2024-01-01' + (i % 1000)::INTEGER AS day FROM range({n}) t(i)");
            let local = duckdb::Connection::open_in_memory().unwrap();
            let out = std::env::temp_dir().join(format!("client-bench-{}.json", std::process::id()));
            println!("\n## 2. {n} rows: run into typed rows vs COPY (FORMAT JSON) in DuckDB ({rounds} rounds, alternating)\n");
            println!("| round | run s | rows/s | peak RSS growth MiB | COPY s | ratio |\n|---|---|---|---|---|---|");
            let mut ratios = Vec::new();
            for round in 0..rounds {
                let base = rss_kib();
                let mut peak = base;
                let t = Instant::now();
                let mut rows = client.run(&sql, Instant::now() + Duration::from_secs(600)).await.expect("run");
                let mut count = 0u64;
                while let Some(page) = rows.next_page().await.expect("page") {
                    count += page.len() as u64;
                    peak = peak.max(rss_kib());
                }
                let run_s = t.elapsed().as_secs_f64();
                assert_eq!(count, n);
                let t = Instant::now();
                local
                    .execute_batch(&format!("COPY ({sql}) TO '{}' (FORMAT JSON)", out.display()))
                    .unwrap();
                let copy_s = t.elapsed().as_secs_f64();
                let _ = std::fs::remove_file(&out);
                ratios.push(run_s / copy_s);
                println!(
                    "| {round} | {run_s:.2} | {:.0} | {:.1} | {copy_s:.2} | {:.2}x |",
                    n as f64 / run_s,
                    (peak.saturating_sub(base)) as f64 / 1024.0,
                    run_s / copy_s
                );
            }
            let (m, lo, hi) = median(ratios);
            println!("\nrun / COPY JSON = **{m:.2}x** ({lo:.2}-{hi:.2})");
        }
    });
}
