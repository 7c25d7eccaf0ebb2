//! The agent's network hardening through the real binary: unauthenticated
//! connections announcing huge bodies leave memory bounded, the token is
//! checked before a body is read, SIGTERM lets in-flight `/execute` finish
//! and a second signal stops at once, and the wire details (HEAD, absolute-form
//! targets, integer TTL, capped `wait_ms`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// (VmRSS, VmHWM) of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn connect(agent: &Agent) -> TcpStream {
    let s = TcpStream::connect(agent.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads one response head (status, lower-cased headers) and, unless `head_only`,
/// its Content-Length body.
fn read_response(
    r: &mut BufReader<TcpStream>,
    head_only: bool,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line
        .split(' ')
        .nth(1)
        .expect("status line")
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; if head_only { 0 } else { len }];
    r.read_exact(&mut body).unwrap();
    (status, headers, body)
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn hundreds_of_unauthenticated_huge_bodies_leave_memory_bounded() {
    let agent = Agent::start(&[]);
    let (rss0, _) = memory_kib(agent.pid());
    let mut conns = Vec::new();
    for i in 0..300 {
        let mut s = connect(&agent);
        s.write_all(
            format!("POST /execute HTTP/1.1\r\nHost: a\r\nX-Request-ID: big-{i}\r\nContent-Length: 16777216\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        s.write_all(&[b'{'; 1000]).unwrap();
        conns.push(s);
    }
    // Every one is refused from its head, with its request id, and closed.
    for (i, s) in conns.into_iter().enumerate() {
        let mut r = BufReader::new(s);
        let (status, h, body) = read_response(&mut r, false);
        assert_eq!(status, 401);
        assert_eq!(header(&h, "connection"), Some("close"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "AUTH_ERROR");
        assert_eq!(v["request_id"], format!("big-{i}"));
    }
    // Authenticated ones announcing the largest body and sending little of it:
    // buffers grow with what arrives, and the body budget turns away the rest.
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut s = connect(&agent);
        s.write_all(
            format!("POST /execute HTTP/1.1\r\nHost: a\r\nX-Agent-Token: {TOKEN}\r\nContent-Length: 16777216\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        s.write_all(&[b' '; 4000]).unwrap();
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(2000));
    let (rss1, hwm1) = memory_kib(agent.pid());
    // Announced: 400 x 16 MiB = 6.4 GiB. Allowed: a few tens of MiB.
    assert!(
        hwm1.saturating_sub(rss0) < 96 * 1024,
        "RSS {rss0} -> {rss1} KiB, peak {hwm1} KiB"
    );
    drop(held);
    assert_eq!(agent.health()["status"], "ok");
}

#[test]
fn the_token_is_checked_before_the_body_is_read() {
    let agent = Agent::start(&[]);
    // A body announced but never sent: the 401 comes anyway, echoing the header's id.
    let mut s = connect(&agent);
    s.write_all(b"POST /execute HTTP/1.1\r\nHost: a\r\nX-Request-ID: hdr-1\r\nContent-Length: 1000000\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let (status, h, body) = read_response(&mut r, false);
    assert_eq!(status, 401);
    assert_eq!(header(&h, "connection"), Some("close"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (v["code"].as_str(), v["request_id"].as_str()),
        (Some("AUTH_ERROR"), Some("hdr-1"))
    );

    // 100-continue: refused instead of continued.
    let mut s = connect(&agent);
    s.write_all(b"POST /queries HTTP/1.1\r\nHost: a\r\nX-Agent-Token: nope\r\nExpect: 100-continue\r\nContent-Length: 50\r\n\r\n")
        .unwrap();
    let (status, _, _) = read_response(&mut BufReader::new(s), false);
    assert_eq!(status, 401);

    // A small body that came with the head: its request_id is echoed, and the
    // connection stays open for the next request.
    let mut c = Client::connect(agent.addr).unwrap();
    let body = br#"{"sql":"SELECT 1","request_id":"body-7"}"#;
    let v = c
        .request(
            "POST",
            "/execute",
            &[("X-Agent-Token", "wrong")],
            Some(body),
        )
        .expect_error(401, "AUTH_ERROR");
    assert_eq!(v["request_id"], "body-7");
    let r = c.request("POST", "/execute", &[("X-Agent-Token", TOKEN)], Some(body));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["request_id"], "body-7");
    // Refused submits queue nothing.
    assert_eq!(agent.health()["stored_jobs"], 0);
}

#[test]
fn wire_details_head_absolute_form_integer_ttl_and_capped_wait() {
    let agent = Agent::start(&[("QUERY_RESULT_TTL", "1500ms")]);
    let h = agent.health();
    assert_eq!(h["query_result_ttl_seconds"].to_string(), "1");

    // HEAD answers like GET, without a body.
    let mut c = agent.client();
    let id = c.submit("SELECT 42 AS x");
    c.wait_terminal(&id);
    let get_len = |c: &mut Client, path: &str| c.get(path).body.len();
    for path in [
        "/health".to_string(),
        "/metrics".to_string(),
        format!("/queries/{id}"),
        format!("/queries/{id}/results"),
    ] {
        let mut s = connect(&agent);
        s.write_all(format!("HEAD {path} HTTP/1.1\r\nHost: a\r\nX-Agent-Token: {TOKEN}\r\n\r\nGET /health HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .unwrap();
        let mut r = BufReader::new(s);
        let (status, h, _) = read_response(&mut r, true);
        assert_eq!(status, 200, "HEAD {path}");
        let len: usize = header(&h, "content-length").unwrap().parse().unwrap();
        if !path.starts_with("/health") && !path.starts_with("/metrics") {
            assert_eq!(len, get_len(&mut c, &path), "HEAD {path}");
        }
        // The next response follows at once: HEAD sent no body.
        let (status, _, body) = read_response(&mut r, false);
        assert_eq!(status, 200);
        assert!(body.starts_with(b"{\"status\":\"ok\""));
    }
    // A HEAD without the token is still refused.
    let mut s = connect(&agent);
    s.write_all(format!("HEAD /queries/{id} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut BufReader::new(s), true).0, 401);

    // Absolute-form targets (RFC 9112 §3.2.2).
    let addr = agent.addr;
    let mut s = connect(&agent);
    s.write_all(format!("GET http://{addr}/health HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let (status, _, body) = read_response(&mut BufReader::new(s), false);
    assert_eq!(status, 200);
    assert!(body.starts_with(b"{\"status\":\"ok\""));
    let mut s = connect(&agent);
    let body = r#"{"sql":"SELECT 7 AS x"}"#;
    s.write_all(
        format!(
            "POST http://{addr}/execute HTTP/1.1\r\nHost: {addr}\r\nX-Agent-Token: {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let (status, _, body) = read_response(&mut BufReader::new(s), false);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["rows"],
        json!([[7]])
    );

    // An overflowing wait_ms is capped like max_results, not refused.
    let r = c.get(&format!("/queries/{id}?wait_ms=99999999999999999999999"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "SUCCEEDED");
    let r = c.get(&format!(
        "/queries/{id}/results?max_results=99999999999999999999999"
    ));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn large_results_arrive_whole_from_execute_and_pages() {
    let agent = Agent::start(&[]);
    let mut c = agent.client();
    let sql = "SELECT i, repeat('x', 100) AS s FROM range(20000) t(i)";
    let v = c.execute(sql);
    assert_eq!(v["row_count"], 20000);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 20000);
    assert_eq!(rows[19999][0], 19999);
    let id = c.submit(sql);
    c.wait_terminal(&id);
    let mut token = String::new();
    let mut seen = 0;
    loop {
        let r = c.get(&format!(
            "/queries/{id}/results?max_results=5000&page_token={token}"
        ));
        assert_eq!(r.status, 200);
        let v = r.json();
        let page = v["rows"].as_array().unwrap();
        assert_eq!(page[0][0], seen);
        seen += page.len() as u64;
        match v["next_page_token"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, 20000);
    // An empty result still has its brackets.
    assert_eq!(c.execute("SELECT 1 AS x WHERE false")["rows"], json!([]));
}

fn wait_exit(child_pid: u32, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if !std::path::Path::new(&format!("/proc/{child_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{child_pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn sigterm_lets_in_flight_execute_finish() {
    let agent = Agent::start(&[("SHARDS", "2")]);
    let sql = "SELECT sum(hash(i)) AS h FROM range(0, 60000000) t(i)";
    let expected = agent.client().execute(sql)["rows"].clone();
    let addr = agent.addr;
    let workers: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr).unwrap();
                c.token = Some(TOKEN.to_string());
                c.try_request(
                    "POST",
                    "/execute",
                    &[],
                    Some(serde_json::to_vec(&json!({"sql": sql})).unwrap().as_slice()),
                )
            })
        })
        .collect();
    // All three read and running (four workers per shard), so each is in
    // flight when the signal lands, not still in the listener's queue.
    eventually("every /execute running", || {
        (agent.health()["active_queries"].as_u64() >= Some(3)).then_some(())
    });
    let status = agent.terminate();
    for w in workers {
        let r = w.join().unwrap().expect("an answer, not a reset");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["rows"], expected);
    }
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_second_signal_stops_at_once() {
    let agent = Agent::start(&[]);
    let addr = agent.addr;
    let pid = agent.pid();
    let w = std::thread::spawn(move || {
        let mut c = Client::connect(addr).unwrap();
        c.token = Some(TOKEN.to_string());
        c.try_request(
            "POST",
            "/execute",
            &[],
            Some(
                serde_json::to_vec(&json!({"sql": LONG_SQL}))
                    .unwrap()
                    .as_slice(),
            ),
        )
    });
    eventually("the long /execute running", || {
        (agent.health()["active_queries"] == 1).then_some(())
    });
    let kill = |sig: &str| {
        assert!(std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success())
    };
    kill("-TERM");
    std::thread::sleep(Duration::from_millis(500));
    // Still draining: the statement has the whole deadline to finish.
    assert!(!wait_exit(pid, Duration::from_millis(10)));
    let t = Instant::now();
    kill("-TERM");
    assert!(
        wait_exit(pid, Duration::from_secs(5)),
        "still running after the second signal"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    let _ = w.join();
    drop(agent);
}
