//! One connection's loop: read, parse the head in place, frame and decode
//! the body, call the handler, write responses in order (batched while more
//! pipelined requests are already buffered), apply limits and timeouts, and
//! close politely. Owns the connection's buffers; never blocks the thread and
//! never lets one connection's error reach another.

use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use glommio::net::TcpStream;

use crate::body::{ChunkedDecoder, Progress};
use crate::error::RequestError;
use crate::parse::{self, BodyKind, Head, Header};
use crate::request::Request;
use crate::response::{self, Body, Response};
use crate::server::ShardState;
use crate::timeouts::{self, Deadline};
use crate::Handler;

/// Headers per request; more is answered with 431.
const MAX_HEADERS: usize = 100;
/// Initial (and steady-state) read buffer size.
const BUF_SIZE: usize = 8 * 1024;
/// Read at least this much free space per read call.
const MIN_READ: usize = 2 * 1024;
/// A buffer grown past this for one large request is dropped afterwards.
const SHRINK_ABOVE: usize = 256 * 1024;
/// Batched output beyond this is written before more requests are handled.
const FLUSH_ABOVE: usize = 64 * 1024;
/// How long a closing connection keeps reading (and discarding) what the
/// client still sends, so our last response is not destroyed by a reset.
const LINGER: Duration = Duration::from_secs(1);
/// How long a handler may be pending before its caller's socket is watched
/// for a close (short requests never pay for the watch).
const WATCH_CALLER_AFTER: Duration = Duration::from_millis(20);
const LINGER_BYTES: usize = 256 * 1024;

/// Answers a connection over the per-shard limit with 503 and closes it.
pub(crate) async fn refuse(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream
        .write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
    let _ = stream.close().await;
}

/// Serves one accepted connection until it closes.
pub(crate) async fn serve<H: Handler>(stream: TcpStream, handler: Rc<H>, shard: Rc<ShardState>) {
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    // Responses are already batched into one write; Nagle would only delay them.
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(shard.limits.idle_timeout));
    let mut conn = Conn {
        stream,
        buf: vec![0; BUF_SIZE],
        start: 0,
        end: 0,
        out: Vec::with_capacity(BUF_SIZE),
        headers: Vec::with_capacity(32),
        guard: None,
    };
    conn.guard = Some(shard.enter(fd));
    let linger = conn.run(&*handler, &shard).await;
    if linger {
        conn.linger().await;
    }
    // The guard drops (unregistering the fd) before the stream closes it.
    conn.guard = None;
}

struct Conn {
    stream: TcpStream,
    /// Read buffer; `buf[start..end]` holds bytes received but not consumed.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Responses waiting to be written.
    out: Vec<u8>,
    headers: Vec<Header>,
    guard: Option<crate::server::ConnectionGuard>,
}

/// The handler panicked; the panic was caught (and reported by the hook).
struct HandlerPanicked;

/// Why reading stopped.
enum ReadEnd {
    /// EOF, timeout or a socket error: close without answering.
    Closed,
    /// Bad input: answer with its status, then close.
    Reject(RequestError),
}

impl Conn {
    /// Runs requests until the connection should close. Returns whether to
    /// linger (the server decided to close while the client may still send).
    async fn run<H: Handler>(&mut self, handler: &H, shard: &ShardState) -> bool {
        let limits = &shard.limits;
        loop {
            let head = match self.read_head(shard).await {
                Ok(h) => h,
                Err(ReadEnd::Closed) => {
                    let _ = self.flush().await;
                    return false;
                }
                Err(ReadEnd::Reject(e)) => return self.reject(e, shard).await,
            };
            let framing =
                match parse::framing(&self.buf[self.start..self.end], &head, &self.headers) {
                    Ok(f) => f,
                    Err(e) => return self.reject(e, shard).await,
                };
            let body_start = self.start + head.len;
            let (body_len, consumed) = match framing.body {
                BodyKind::Length(n) => {
                    if n > limits.max_body_bytes as u64 {
                        return self.reject(RequestError::BodyTooLarge, shard).await;
                    }
                    let n = n as usize;
                    if self.end - body_start < n {
                        if framing.expect_continue {
                            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                        }
                        if self
                            .read_exact_body(head.len + n, limits.idle_timeout)
                            .await
                            .is_err()
                        {
                            let _ = self.flush().await;
                            return false;
                        }
                    }
                    (n, head.len + n)
                }
                BodyKind::Chunked => {
                    if framing.expect_continue && self.end == body_start {
                        self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    }
                    match self.read_chunked(head.len, shard).await {
                        Ok((body, wire)) => (body, head.len + wire),
                        Err(ReadEnd::Closed) => {
                            let _ = self.flush().await;
                            return false;
                        }
                        Err(ReadEnd::Reject(e)) => return self.reject(e, shard).await,
                    }
                }
            };
            let is_head = &self.buf
                [head.method.start as usize + self.start..head.method.end as usize + self.start]
                == b"HEAD";
            let keep_alive_header = framing.keep_alive && head.minor_version == 0;
            let http10 = head.minor_version == 0;

            let (resp, panicked) = match self.call(handler, &head, body_len).await {
                Some(Ok(r)) => (r, false),
                Some(Err(HandlerPanicked)) => (
                    Response::json(
                        500,
                        br#"{"error":"internal error","code":"INTERNAL"}"#.to_vec(),
                    ),
                    true,
                ),
                None => return false, // the earlier responses could not be written
            };
            // Decided after the handler: shutdown may have begun meanwhile.
            // After a panic the handler's state is suspect: end the connection.
            let close = !framing.keep_alive || shard.shutting_down() || panicked;
            self.start += consumed;
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                if self.buf.len() > SHRINK_ABOVE {
                    self.buf = vec![0; BUF_SIZE];
                }
            }

            let date = shard.date.now();
            // RFC 9110 §8.6, §15.3.5: 1xx and 204 carry neither a body nor
            // Content-Length; 304 and HEAD carry the length but no body.
            let no_length = resp.status < 200 || resp.status == 204;
            let no_body = is_head || no_length || resp.status == 304;
            match resp.body {
                Body::Stream(_) if !no_length => {
                    let (framing, close) = if http10 {
                        (response::Framing::UntilClose, true)
                    } else {
                        (response::Framing::Chunked, close)
                    };
                    response::write_head(&mut self.out, &resp, framing, &date, close, false);
                    if self.write_stream(resp, is_head, http10).await.is_err() {
                        return false;
                    }
                    if close {
                        return self.flush().await.is_ok();
                    }
                    continue;
                }
                // Bytes, or a stream for a status that carries no body (only
                // its head is written).
                _ => {
                    let bytes: &[u8] = match &resp.body {
                        Body::Bytes(b) => b,
                        Body::Stream(_) => &[],
                    };
                    let framing = if no_length {
                        response::Framing::UntilClose
                    } else {
                        response::Framing::Length(bytes.len())
                    };
                    response::write_head(
                        &mut self.out,
                        &resp,
                        framing,
                        &date,
                        close,
                        keep_alive_header,
                    );
                    if !no_body {
                        self.out.extend_from_slice(bytes);
                    }
                }
            }
            if close {
                return self.flush().await.is_ok();
            }
            if self.out.len() > FLUSH_ABOVE && self.flush().await.is_err() {
                return false;
            }
        }
    }

    /// Calls the handler on the request at `start`. If the handler does not
    /// finish at once, the responses batched so far are written first, so a
    /// long poll never holds back answers to earlier pipelined requests.
    async fn call<H: Handler>(
        &mut self,
        handler: &H,
        head: &Head,
        body_len: usize,
    ) -> Option<Result<Response, HandlerPanicked>> {
        let Conn {
            stream,
            buf,
            start,
            out,
            headers,
            ..
        } = self;
        let (head_buf, rest) = buf[*start..].split_at_mut(head.len);
        let mut req = Request::new(head_buf, head, headers, &mut rest[..body_len]);
        // A panicking handler costs its request a 500, not the whole shard.
        let mut fut = pin!(AssertUnwindSafe(handler.handle(&mut req)).catch_unwind());
        if let Some(r) = futures_lite::future::poll_once(fut.as_mut()).await {
            return Some(r.map_err(|_| HandlerPanicked));
        }
        if !out.is_empty() {
            if stream.write_all(out).await.is_err() {
                return None;
            }
            out.clear();
        }
        // A caller that goes away stops its request: the handler's future is
        // dropped (the agent then interrupts the statement and frees its
        // worker). Watched only once the handler has been pending a while, so
        // quick requests pay no extra socket operation. A read end of file
        // cannot tell a half-closed client from a gone one; like Go's
        // net/http, it is taken as gone.
        let done = async { Some(fut.await.map_err(|_| HandlerPanicked)) };
        let gone = async {
            glommio::timer::sleep(WATCH_CALLER_AFTER).await;
            let mut probe = [0u8; 1];
            match stream.peek(&mut probe).await {
                Ok(0) | Err(_) => None,
                // Pipelined bytes: the caller is there; keep waiting.
                Ok(_) => std::future::pending().await,
            }
        };
        futures_lite::future::or(done, gone).await
    }

    /// Writes a streamed body chunk by chunk (each chunk flushed: streams are
    /// for data produced over time).
    async fn write_stream(
        &mut self,
        resp: Response,
        is_head: bool,
        http10: bool,
    ) -> std::io::Result<()> {
        let Body::Stream(mut chunks) = resp.body else {
            return Ok(());
        };
        if is_head {
            return self.flush().await;
        }
        while let Some(chunk) = chunks.next().await {
            if chunk.is_empty() {
                continue;
            }
            if http10 {
                self.out.extend_from_slice(&chunk);
            } else {
                response::push_hex(&mut self.out, chunk.len() as u64);
                self.out.extend_from_slice(b"\r\n");
                self.out.extend_from_slice(&chunk);
                self.out.extend_from_slice(b"\r\n");
            }
            self.flush().await?;
        }
        if !http10 {
            self.out.extend_from_slice(b"0\r\n\r\n");
        }
        self.flush().await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.stream.write_all(&self.out).await;
        self.out.clear();
        if self.out.capacity() > SHRINK_ABOVE {
            self.out = Vec::with_capacity(BUF_SIZE);
        }
        r
    }

    /// The next reads must complete by `at_ms` (coarse clock), or the
    /// shard's sweeper cuts the connection.
    fn wait_until(&mut self, at_ms: u64) {
        self.deadline().arm_at(at_ms);
    }

    fn deadline(&self) -> &Deadline {
        &self.guard.as_ref().expect("registered connection").deadline
    }

    /// Reads more bytes into `buf[end..]`, growing or compacting so at least
    /// `MIN_READ` bytes are free (or exactly what `want_total` needs).
    async fn fill(&mut self, want_total: usize) -> Result<usize, ()> {
        let needed = (want_total.saturating_sub(self.end - self.start)).max(MIN_READ);
        if self.buf.len() - self.end < needed {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < needed {
                self.buf.resize(self.end + needed, 0);
            }
        }
        let r = self.stream.read(&mut self.buf[self.end..]).await;
        self.deadline().disarm();
        match r {
            Ok(0) | Err(_) => Err(()),
            Ok(n) => {
                self.end += n;
                Ok(n)
            }
        }
    }

    /// Returns the next complete head in `buf[start..]`, reading as needed,
    /// under the header-size limit and the idle/header timeouts.
    async fn read_head(&mut self, shard: &ShardState) -> Result<Head, ReadEnd> {
        let limits = &shard.limits;
        // Offset (from `start`) from which a head terminator may still appear.
        let mut scan_from: Option<usize> = None;
        let mut header_deadline: Option<u64> = None;
        loop {
            let avail = self.end - self.start;
            if avail > 0 {
                let try_parse = match scan_from {
                    None => true,
                    Some(from) => parse::find_head_end(
                        &self.buf[self.start..self.end],
                        from.saturating_sub(3),
                    )
                    .is_some(),
                };
                if try_parse {
                    match parse::parse_head(
                        &self.buf[self.start..self.end],
                        &mut self.headers,
                        MAX_HEADERS,
                    ) {
                        Ok(Some(head)) if head.len > limits.max_header_bytes => {
                            return Err(ReadEnd::Reject(RequestError::HeadersTooLarge))
                        }
                        Ok(Some(head)) => return Ok(head),
                        Ok(None) => {}
                        Err(e) => return Err(ReadEnd::Reject(e)),
                    }
                }
                scan_from = Some(avail);
                if avail > limits.max_header_bytes {
                    return Err(ReadEnd::Reject(RequestError::HeadersTooLarge));
                }
            }
            // Nothing more can be answered until more bytes arrive.
            if self.flush().await.is_err() {
                return Err(ReadEnd::Closed);
            }
            let now = timeouts::coarse_ms();
            if avail == 0 {
                self.wait_until(now + ms(limits.idle_timeout));
            } else {
                let deadline = *header_deadline.get_or_insert(now + ms(limits.header_timeout));
                if now >= deadline {
                    return Err(ReadEnd::Closed);
                }
                self.wait_until(deadline);
            }
            // The header clock starts when we first have to wait for the
            // rest of a head, so a head that arrives whole never reads it.
            self.fill(0).await.map_err(|_| ReadEnd::Closed)?;
        }
    }

    /// Reads until `total` bytes from `start` are buffered.
    async fn read_exact_body(&mut self, total: usize, idle: Duration) -> Result<(), ()> {
        self.flush().await.map_err(|_| ())?;
        while self.end - self.start < total {
            // Inactivity, not total time: a large body may take a while.
            self.wait_until(timeouts::coarse_ms() + ms(idle));
            self.fill(total).await?;
        }
        Ok(())
    }

    /// Decodes a chunked body in place after the head (`head_len` from
    /// `start`). Returns (decoded length, wire bytes after the head).
    async fn read_chunked(
        &mut self,
        head_len: usize,
        shard: &ShardState,
    ) -> Result<(usize, usize), ReadEnd> {
        let limits = &shard.limits;
        let mut dec = ChunkedDecoder::new();
        let mut flushed = false;
        loop {
            let body_start = self.start + head_len;
            let filled = self.end - body_start;
            let progress = dec
                .decode(
                    &mut self.buf[body_start..],
                    filled,
                    limits.max_body_bytes,
                    limits.max_header_bytes,
                )
                .map_err(ReadEnd::Reject)?;
            if let Progress::Done { body, consumed } = progress {
                return Ok((body, consumed));
            }
            // Reclaim the framing already decoded before reading more.
            let shrink = dec.compact(&mut self.buf[body_start..], filled);
            self.end -= shrink;
            if !flushed {
                self.flush().await.map_err(|_| ReadEnd::Closed)?;
                flushed = true;
            }
            self.wait_until(timeouts::coarse_ms() + ms(limits.idle_timeout));
            self.fill(0).await.map_err(|_| ReadEnd::Closed)?;
        }
    }

    /// Answers bad input with its status and a small JSON error, then closes.
    async fn reject(&mut self, e: RequestError, shard: &ShardState) -> bool {
        let body = format!(r#"{{"error":"{}","code":"{}"}}"#, e, error_code(e)).into_bytes();
        let resp = Response::json(e.status(), body);
        let date = shard.date.now();
        response::write_head(
            &mut self.out,
            &resp,
            response::Framing::Length(resp.body_bytes().map_or(0, |b| b.len())),
            &date,
            true,
            false,
        );
        if let Some(b) = resp.body_bytes() {
            self.out.extend_from_slice(b);
        }
        self.flush().await.is_ok()
    }

    /// Half-closes, then reads and discards what the client still sends for
    /// a short while, so the final response is not lost to a reset.
    async fn linger(&mut self) {
        if self
            .stream
            .shutdown(std::net::Shutdown::Write)
            .await
            .is_err()
        {
            return;
        }
        let until = Instant::now() + LINGER;
        let mut discarded = 0;
        let mut scratch = [0u8; 4096];
        while discarded < LINGER_BYTES {
            let now = Instant::now();
            if now >= until {
                break;
            }
            let _ = self.stream.set_read_timeout(Some(until - now));
            match self.stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n,
            }
        }
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

fn error_code(e: RequestError) -> &'static str {
    match e.status() {
        400 => "BAD_REQUEST",
        413 => "PAYLOAD_TOO_LARGE",
        417 => "EXPECTATION_FAILED",
        431 => "HEADERS_TOO_LARGE",
        501 => "NOT_IMPLEMENTED",
        505 => "HTTP_VERSION_NOT_SUPPORTED",
        _ => "BAD_REQUEST",
    }
}
