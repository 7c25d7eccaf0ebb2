//! Test support: the router stub the server is proven with, a server guard
//! that always shuts the server down, and a raw HTTP/1.1 client that checks
//! the bytes on the wire (no HTTP client library between us and the server).

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Mutex;
use std::time::Duration;

use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};
use glommio::channels::local_channel::{self, LocalSender};
use net::{
    Admission, Handler, Request, Response, Segment, Server, ServerConfig, ServerHandle, ShardInfo,
};

/// A ~300-byte JSON body, the same one the nginx comparison serves.
pub const HELLO: &[u8] = include_bytes!("../../../benches/http/hello.json");

/// Cross-shard message: (request id, from shard, payload, is reply).
type Msg = (u64, usize, String, bool);

/// The router stub.
pub struct Router {
    shard: ShardInfo,
    mesh: Option<Mesh>,
}

struct Mesh {
    senders: Rc<Senders<Msg>>,
    pending: Rc<RefCell<HashMap<u64, LocalSender<String>>>>,
    next_id: RefCell<u64>,
}

impl Router {
    /// Builds the router on its shard; joins the channel mesh when given one.
    pub async fn new(shard: ShardInfo, mesh: Option<MeshBuilder<Msg, Full>>) -> Router {
        let mesh = match mesh {
            None => None,
            Some(builder) => {
                let (senders, mut receivers) = builder.join().await.expect("mesh join");
                let senders = Rc::new(senders);
                let pending: Rc<RefCell<HashMap<u64, LocalSender<String>>>> = Rc::default();
                for (_, rx) in receivers.streams() {
                    let senders = senders.clone();
                    let pending = pending.clone();
                    let me = shard.id;
                    glommio::spawn_local(async move {
                        while let Some((id, from, payload, is_reply)) = rx.recv().await {
                            if is_reply {
                                if let Some(tx) = pending.borrow_mut().remove(&id) {
                                    let _ = tx.try_send(payload);
                                }
                            } else {
                                let answer =
                                    format!("shard {me} answered {payload} for shard {from}");
                                let _ = senders.send_to(from, (id, me, answer, true)).await;
                            }
                        }
                    })
                    .detach();
                }
                Some(Mesh {
                    senders,
                    pending,
                    next_id: RefCell::new(0),
                })
            }
        };
        Router { shard, mesh }
    }

    /// Asks `peer` to answer `payload` and awaits the reply over the channel
    /// mesh (the agent's query-routing pattern).
    async fn ask(&self, peer: usize, payload: String) -> String {
        let mesh = self.mesh.as_ref().expect("router built without a mesh");
        let id = {
            let mut n = mesh.next_id.borrow_mut();
            *n += 1;
            *n
        };
        let (tx, rx) = local_channel::new_bounded(1);
        mesh.pending.borrow_mut().insert(id, tx);
        mesh.senders
            .send_to(peer, (id, self.shard.id, payload, false))
            .await
            .expect("send to peer");
        rx.recv().await.expect("reply")
    }
}

/// A shared byte block, as an application would hold a result (`Arc`).
struct Shared(std::sync::Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Handler for Router {
    /// `/guarded` needs `X-Key: k` and is refused before its body is read;
    /// the answer says whether the body had already arrived with the head.
    fn admit(&self, req: &mut Request<'_>) -> Admission {
        if req.path() == "/guarded" && req.header("x-key") != Some(b"k") {
            let body = format!(
                "refused; body available: {}; body: {}",
                req.body_available(),
                String::from_utf8_lossy(req.body())
            );
            return Admission::Reject(Response::new(401).body(body.into_bytes()));
        }
        Admission::Accept
    }

    async fn handle(&self, req: &mut Request<'_>) -> Response {
        match (req.method(), req.path()) {
            ("POST", "/guarded") => Response::new(200)
                .header("X-Body-Len", req.body().len())
                .body(b"welcome".to_vec()),
            ("GET" | "HEAD", "/segments") => {
                // A small owned prefix, a large shared block, a static suffix.
                let n: usize = req
                    .query_param("n")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1 << 20);
                let block: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
                Response::new(200).segments(vec![
                    Segment::from(b"<".to_vec()),
                    Segment::shared(Shared(std::sync::Arc::new(block))),
                    Segment::from(&b">"[..]),
                ])
            }
            ("GET", "/hello") | ("HEAD", "/hello") => Response::json(200, HELLO.to_vec()),
            ("GET", "/panic") => panic!("router stub asked to panic"),
            ("DELETE", "/thing") => Response::new(204).body(b"ignored".to_vec()),
            ("GET", "/shard") => Response::new(200).body(self.shard.id.to_string().into_bytes()),
            ("GET", "/echo") => Response::new(200).body(req.query().as_bytes().to_vec()),
            ("POST", "/echo") => Response::new(200)
                .header("X-Body-Len", req.body().len())
                .body(req.body().to_vec()),
            ("POST", "/upper") => {
                req.body_mut().make_ascii_uppercase();
                Response::new(200).body(req.body().to_vec())
            }
            ("GET", "/param") => {
                let name = req.query_param("name").unwrap_or_default().into_owned();
                match req.query_param(&name) {
                    Some(v) => Response::new(200).body(v.into_owned().into_bytes()),
                    None => Response::new(404),
                }
            }
            ("GET", "/header") => {
                let name = req.query_param("name").unwrap_or_default().into_owned();
                match req.header(&name) {
                    Some(v) => Response::new(200).body(v.to_vec()),
                    None => Response::new(404),
                }
            }
            ("GET", "/slow") => {
                let ms: u64 = req
                    .query_param("ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(100);
                glommio::timer::sleep(Duration::from_millis(ms)).await;
                Response::new(200).body(format!("slept {ms}").into_bytes())
            }
            ("GET", "/stream") => Response::stream(
                200,
                futures_lite::stream::iter(vec![
                    b"one,".to_vec(),
                    Vec::new(),
                    b"two,".to_vec(),
                    b"three".to_vec(),
                ]),
            ),
            ("GET", "/cross") => {
                let peer = (self.shard.id + 1) % self.shard.count;
                let answer = self.ask(peer, req.query().to_string()).await;
                Response::new(200).body(answer.into_bytes())
            }
            _ => Response::json(404, br#"{"error":"not found"}"#.to_vec()),
        }
    }
}

/// A running server that is shut down and joined when the test ends, even
/// when it fails.
pub struct TestServer {
    handle: Option<ServerHandle>,
    pub addr: SocketAddr,
}

impl TestServer {
    pub fn start(config: ServerConfig) -> TestServer {
        let handle =
            Server::start(config, |shard| Router::new(shard, None)).expect("server starts");
        TestServer::from_handle(handle)
    }

    /// With a channel mesh between the shards (for `/cross`).
    pub fn start_with_mesh(config: ServerConfig) -> TestServer {
        let mesh = Mutex::new(MeshBuilder::<Msg, Full>::full(config.shards, 64));
        let handle = Server::start(config, move |shard| {
            let builder = mesh.lock().unwrap().clone();
            Router::new(shard, Some(builder))
        })
        .expect("server starts");
        TestServer::from_handle(handle)
    }

    pub fn from_handle(handle: ServerHandle) -> TestServer {
        TestServer {
            addr: handle.local_addr(),
            handle: Some(handle),
        }
    }

    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().unwrap()
    }

    /// Shuts down and joins, returning join's result.
    pub fn stop(mut self) -> Result<(), net::ServerError> {
        let h = self.handle.take().unwrap();
        h.shutdown();
        h.join()
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
            let _ = h.join();
        }
    }
}

/// A small test config: unpinned (tests run in parallel), short timeouts.
pub fn config(shards: usize) -> ServerConfig {
    ServerConfig {
        shards,
        pin_to_cores: false,
        shutdown_deadline: Duration::from_secs(5),
        ..ServerConfig::default()
    }
}

/// One parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP/1.1 client over a blocking socket with generous timeouts.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends `GET path` with a Host header and reads the response.
    pub fn get(&mut self, path: &str) -> Resp {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.read_response()
    }

    fn fill(&mut self) -> usize {
        let mut tmp = [0u8; 16 * 1024];
        match self.stream.read(&mut tmp) {
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                n
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("read: {e}"),
        }
    }

    fn take_line(&mut self) -> String {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8(self.buf[..p].to_vec()).expect("utf-8 head");
                self.buf.drain(..p + 2);
                return line;
            }
            if self.fill() == 0 {
                panic!(
                    "connection closed inside a head; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    fn take_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if self.fill() == 0 {
                panic!("connection closed inside a body");
            }
        }
        self.buf.drain(..n).collect()
    }

    /// Reads the raw bytes of an interim or final head, up to the blank line.
    pub fn read_head_raw(&mut self) -> String {
        let mut s = String::new();
        loop {
            let line = self.take_line();
            s.push_str(&line);
            s.push_str("\r\n");
            if line.is_empty() {
                return s;
            }
        }
    }

    pub fn read_response(&mut self) -> Resp {
        self.read_response_to(false)
    }

    /// Reads one response (for a HEAD request when `head` is set).
    pub fn read_response_to(&mut self, head: bool) -> Resp {
        let status_line = self.take_line();
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(
            parts.next(),
            Some("HTTP/1.1"),
            "status line {status_line:?}"
        );
        let status: u16 = parts.next().unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let line = self.take_line();
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').expect("header line");
            headers.push((n.to_string(), v.trim().to_string()));
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if head || status == 204 || status == 304 || status < 200 {
            return resp;
        }
        if resp.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&self.take_line(), 16).expect("chunk size");
                if size == 0 {
                    assert_eq!(self.take_line(), "");
                    break;
                }
                let data = self.take_exact(size);
                resp.body.extend_from_slice(&data);
                assert_eq!(self.take_line(), "");
            }
        } else {
            let len: usize = resp
                .header("content-length")
                .expect("every response has Content-Length")
                .parse()
                .unwrap();
            resp.body = self.take_exact(len);
        }
        resp
    }

    /// True when the server has closed: reads to EOF (or reset), and fails
    /// the test if more response bytes arrive.
    pub fn is_closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.fill() == 0 && self.buf.is_empty()
    }
}
