//! One connection's loop: read, parse the head in place, ask the handler to
//! admit it, frame and decode the body, call the handler, write responses in
//! order (batched while more pipelined requests are already buffered; large
//! body segments go to the kernel by vectored writes, uncopied), apply
//! limits, the body budget and timeouts, and close politely. Owns the
//! connection's buffers, which grow only with bytes that have arrived, never
//! with what a header announces; never blocks the thread and never lets one
//! connection's error reach another.

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
use crate::response::{self, Body, Response, Segment};
use crate::server::{BodyPermit, ShardState};
use crate::timeouts::{self, Deadline, Phase};
use crate::{Admission, Handler};

/// Headers per request; more is answered with 431.
const MAX_HEADERS: usize = 100;
/// Initial (and steady-state) read buffer size.
const BUF_SIZE: usize = 8 * 1024;
/// Read at least this much free space per read call.
const MIN_READ: usize = 2 * 1024;
/// A body up to this size fits the standing buffer and needs no budget.
const SMALL_BODY: usize = BUF_SIZE;
/// Output buffers grown past this are dropped after a flush.
const SHRINK_ABOVE: usize = 256 * 1024;
/// Body segments at least this large are written from where they live
/// (vectored write) instead of being copied into the output batch.
const COPY_BELOW: usize = 16 * 1024;
/// iovecs per sendmsg call (Linux's IOV_MAX is 1024).
const MAX_IOV: usize = 64;
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
        out: Output {
            buf: Vec::with_capacity(BUF_SIZE),
            segs: Vec::new(),
        },
        headers: Vec::with_capacity(32),
        guard: None,
        permit: None,
        served: false,
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
    out: Output,
    headers: Vec<Header>,
    guard: Option<crate::server::ConnectionGuard>,
    /// Body budget held by the request in progress.
    permit: Option<BodyPermit>,
    /// At least one request has been answered here.
    served: bool,
}

/// Responses waiting to be written: heads and small bodies copied into
/// `buf`, large body segments kept where they are, each to be sent after
/// `buf[..offset]` (in order).
struct Output {
    buf: Vec<u8>,
    segs: Vec<(usize, Segment)>,
}

impl Output {
    fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.segs.is_empty()
    }

    fn len(&self) -> usize {
        self.buf.len() + self.segs.iter().map(|(_, s)| s.len()).sum::<usize>()
    }

    fn extend_from_slice(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Appends a body segment: copied when small, queued as is when large.
    fn push_segment(&mut self, seg: Segment) {
        if seg.len() < COPY_BELOW {
            self.buf.extend_from_slice(seg.as_bytes());
        } else {
            self.segs.push((self.buf.len(), seg));
        }
    }

    /// Writes everything and empties the output (also on error).
    async fn write_to(&mut self, stream: &mut TcpStream) -> std::io::Result<()> {
        let r = if self.segs.is_empty() {
            stream.write_all(&self.buf).await
        } else {
            let mut pieces: Vec<&[u8]> = Vec::with_capacity(2 * self.segs.len() + 1);
            let mut from = 0;
            for (at, seg) in &self.segs {
                pieces.push(&self.buf[from..*at]);
                pieces.push(seg.as_bytes());
                from = *at;
            }
            pieces.push(&self.buf[from..]);
            write_all_vectored(stream, &pieces).await
        };
        self.buf.clear();
        self.segs.clear();
        if self.buf.capacity() > SHRINK_ABOVE {
            self.buf = Vec::with_capacity(BUF_SIZE);
        }
        r
    }
}

/// Writes `pieces` in order with `sendmsg` (non-blocking, several pieces
/// per call, nothing coalesced); when the socket is full, waits for it
/// through glommio's write (which also applies the write timeout).
async fn write_all_vectored(stream: &mut TcpStream, pieces: &[&[u8]]) -> std::io::Result<()> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(stream);
    let (mut idx, mut off) = (0usize, 0usize);
    loop {
        while idx < pieces.len() && off == pieces[idx].len() {
            idx += 1;
            off = 0;
        }
        if idx == pieces.len() {
            return Ok(());
        }
        let mut iov: [libc::iovec; MAX_IOV] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_IOV];
        let mut n_iov = 0;
        for (k, p) in pieces[idx..].iter().enumerate() {
            if n_iov == MAX_IOV {
                break;
            }
            let p = if k == 0 { &p[off..] } else { p };
            if p.is_empty() {
                continue;
            }
            iov[n_iov] = libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            };
            n_iov += 1;
        }
        // SAFETY: an all-zero msghdr is valid; msg_iov points at `n_iov`
        // initialised iovecs that borrow `pieces`, alive for the call.
        let sent = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = n_iov as _;
            libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        let mut n = if sent >= 0 {
            sent as usize
        } else {
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => stream.write(&pieces[idx][off..]).await?,
                _ => return Err(e),
            }
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let left = pieces[idx].len() - off;
            if n < left {
                off += n;
                n = 0;
            } else {
                n -= left;
                idx += 1;
                off = 0;
            }
        }
    }
}

/// The handler panicked; the panic was caught (and reported by the hook).
struct HandlerPanicked;

/// Why reading stopped.
enum ReadEnd {
    /// EOF, timeout or a socket error: close without answering.
    Closed,
    /// Shutdown began while the connection was idle: close politely.
    Drain,
    /// Bad input: answer with its status, then close.
    Reject(RequestError),
}

/// What the response writer needs to know about the request it answers.
struct ReqInfo {
    is_head: bool,
    http10: bool,
    /// Send `Connection: keep-alive` (an HTTP/1.0 client asked for it).
    keep_alive_header: bool,
}

impl Conn {
    /// Runs requests until the connection should close. Returns whether to
    /// linger (the server decided to close while the client may still send).
    async fn run<H: Handler>(&mut self, handler: &H, shard: &Rc<ShardState>) -> bool {
        let limits = &shard.limits;
        loop {
            let head = match self.read_head(shard).await {
                Ok(h) => h,
                Err(ReadEnd::Closed) => {
                    let _ = self.flush().await;
                    return false;
                }
                Err(ReadEnd::Drain) => return self.flush().await.is_ok(),
                Err(ReadEnd::Reject(e)) => return self.reject(e, shard).await,
            };
            let framing =
                match parse::framing(&self.buf[self.start..self.end], &head, &self.headers) {
                    Ok(f) => f,
                    Err(e) => return self.reject(e, shard).await,
                };
            let body_start = self.start + head.len;
            let info = ReqInfo {
                is_head: &self.buf[head.method.start as usize + self.start
                    ..head.method.end as usize + self.start]
                    == b"HEAD",
                http10: head.minor_version == 0,
                keep_alive_header: framing.keep_alive && head.minor_version == 0,
            };

            // Admission: before a body byte is read, budgeted or continued.
            let buffered_body = match framing.body {
                BodyKind::Length(n) if (self.end - body_start) as u64 >= n => Some(n as usize),
                _ => None,
            };
            if let Some(resp) = self.admit(handler, &head, buffered_body) {
                // The body is skippable only when it is all here already.
                let keep = buffered_body.is_some() && framing.keep_alive && !shard.shutting_down();
                if keep {
                    self.served = true;
                    self.consume(head.len + buffered_body.unwrap_or(0));
                }
                match self.respond(resp, &info, !keep, shard).await {
                    Err(()) => return false,
                    Ok(true) => return self.flush().await.is_ok(),
                    Ok(false) => continue,
                }
            }

            let body_deadline = timeouts::coarse_ms() + ms(limits.body_timeout);
            let (body_len, consumed) = match framing.body {
                BodyKind::Length(n) => {
                    if n > limits.max_body_bytes as u64 {
                        return self.reject(RequestError::BodyTooLarge, shard).await;
                    }
                    let n = n as usize;
                    if n > SMALL_BODY && !shard.reserve_body(&mut self.permit, n).await {
                        return self.busy(shard).await;
                    }
                    if self.end - body_start < n {
                        if framing.expect_continue {
                            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                        }
                        if self
                            .read_exact_body(head.len + n, body_deadline, limits.idle_timeout)
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
                    match self.read_chunked(head.len, shard, body_deadline).await {
                        Ok((body, wire)) => (body, head.len + wire),
                        Err(ReadEnd::Closed) | Err(ReadEnd::Drain) => {
                            let _ = self.flush().await;
                            return false;
                        }
                        Err(ReadEnd::Reject(e)) => return self.reject(e, shard).await,
                    }
                }
            };

            let (resp, panicked) = match self.call(handler, &head, body_len).await {
                Some(Ok(r)) => (r, false),
                Some(Err(HandlerPanicked)) => (internal_error(), true),
                None => return false, // the earlier responses could not be written
            };
            // The body's buffer and budget are free once the handler is done.
            self.served = true;
            self.consume(consumed);
            self.permit = None;
            // Decided after the handler: shutdown may have begun meanwhile.
            // After a panic the handler's state is suspect: end the connection.
            let close = !framing.keep_alive || shard.shutting_down() || panicked;
            match self.respond(resp, &info, close, shard).await {
                Err(()) => return false,
                Ok(true) => return self.flush().await.is_ok(),
                Ok(false) => {}
            }
            if self.out.len() > FLUSH_ABOVE && self.flush().await.is_err() {
                return false;
            }
        }
    }

    /// Asks the handler whether to read the body; `Some` is the answer that
    /// replaces it. A panic in `admit` is answered 500 (and closes).
    fn admit<H: Handler>(
        &mut self,
        handler: &H,
        head: &Head,
        buffered_body: Option<usize>,
    ) -> Option<Response> {
        let mut empty = [0u8; 0];
        let (head_buf, rest) = self.buf[self.start..].split_at_mut(head.len);
        let mut req = match buffered_body {
            Some(n) => Request::new(head_buf, head, &self.headers, &mut rest[..n]),
            None => Request::new(head_buf, head, &self.headers, &mut empty).without_body(),
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| handler.admit(&mut req))) {
            Ok(Admission::Accept) => None,
            Ok(Admission::Reject(r)) => Some(r),
            Err(_) => Some(internal_error()),
        }
    }

    /// Marks `n` bytes from `start` as consumed and gives a buffer grown for
    /// a large request back (keeping any pipelined bytes after it).
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let left = self.end - self.start;
        if self.buf.len() > BUF_SIZE && left <= BUF_SIZE {
            let mut fresh = vec![0; BUF_SIZE];
            fresh[..left].copy_from_slice(&self.buf[self.start..self.end]);
            self.buf = fresh;
            self.start = 0;
            self.end = left;
        }
    }

    /// Queues the response (a streamed one is written at once). Returns
    /// whether the connection closes after it; `Err` when a write failed.
    async fn respond(
        &mut self,
        resp: Response,
        info: &ReqInfo,
        close: bool,
        shard: &ShardState,
    ) -> Result<bool, ()> {
        let date = shard.date.now();
        // RFC 9110 §8.6, §15.3.5: 1xx and 204 carry neither a body nor
        // Content-Length; 304 and HEAD carry the length but no body.
        let no_length = resp.status < 200 || resp.status == 204;
        let no_body = info.is_head || no_length || resp.status == 304;
        if matches!(resp.body, Body::Stream(_)) && !no_length {
            let (framing, close) = if info.http10 {
                (response::Framing::UntilClose, true)
            } else {
                (response::Framing::Chunked, close)
            };
            response::write_head(&mut self.out.buf, &resp, framing, &date, close, false);
            self.write_stream(resp, info.is_head, info.http10)
                .await
                .map_err(|_| ())?;
            return Ok(close);
        }
        // Bytes or segments, or a stream for a status that carries no body
        // (only its head is written).
        let framing = if no_length {
            response::Framing::UntilClose
        } else {
            response::Framing::Length(resp.body_len().unwrap_or(0))
        };
        response::write_head(
            &mut self.out.buf,
            &resp,
            framing,
            &date,
            close,
            info.keep_alive_header,
        );
        if !no_body {
            match resp.body {
                Body::Bytes(b) => self.out.push_segment(Segment::from(b)),
                Body::Segments(segs) => {
                    for s in segs {
                        self.out.push_segment(s);
                    }
                }
                Body::Stream(_) => {}
            }
        }
        Ok(close)
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
        if !out.is_empty() && out.write_to(stream).await.is_err() {
            return None;
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
            if !http10 {
                response::push_hex(&mut self.out.buf, chunk.len() as u64);
                self.out.extend_from_slice(b"\r\n");
            }
            self.out.push_segment(Segment::from(chunk));
            if !http10 {
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
        self.out.write_to(&mut self.stream).await
    }

    /// The next reads must complete by `at_ms` (coarse clock), or the
    /// shard's sweeper cuts the connection.
    fn wait_until(&mut self, at_ms: u64) {
        self.deadline().arm_at(at_ms);
    }

    fn deadline(&self) -> &Deadline {
        &self.guard.as_ref().expect("registered connection").deadline
    }

    /// Reads more bytes into `buf[end..]`. `want_total`: bytes from `start`
    /// the caller needs in the end. The free space offered is what is still
    /// missing, but at least `MIN_READ` and at most what is already
    /// buffered (or `BUF_SIZE`): the buffer at most doubles per read, so it
    /// grows with the bytes that actually arrive, never to an announced size.
    async fn fill(&mut self, want_total: usize) -> Result<usize, ()> {
        let have = self.end - self.start;
        let free = want_total
            .saturating_sub(have)
            .clamp(MIN_READ, have.max(BUF_SIZE));
        if self.buf.len() - self.end < free {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < free {
                let len = self.end + free;
                self.buf.reserve_exact(len - self.buf.len());
                self.buf.resize(len, 0);
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
                // Draining: a connection that has had its answers is done; a fresh
                // one still gets to send the request it connected for.
                if shard.shutting_down() && self.served {
                    return Err(ReadEnd::Drain);
                }
                // Idle: the drain on shutdown may close this one at once;
                // fresh: the drain waits a moment for its first request.
                self.deadline().set_phase(if self.served {
                    Phase::Idle
                } else {
                    Phase::Fresh
                });
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
            let r = self.fill(0).await;
            if self.deadline().phase() == Phase::FinSent {
                // The drain sent a FIN while we were idle (or fresh past its
                // grace): nothing more can be answered here.
                return Err(if r.is_ok() {
                    ReadEnd::Drain
                } else {
                    ReadEnd::Closed
                });
            }
            self.deadline().set_phase(Phase::Busy);
            r.map_err(|_| ReadEnd::Closed)?;
        }
    }

    /// Reads until `total` bytes from `start` are buffered, by the body
    /// deadline and with no silence longer than `idle`.
    async fn read_exact_body(
        &mut self,
        total: usize,
        body_deadline: u64,
        idle: Duration,
    ) -> Result<(), ()> {
        self.flush().await.map_err(|_| ())?;
        while self.end - self.start < total {
            let now = timeouts::coarse_ms();
            if now >= body_deadline {
                return Err(());
            }
            self.wait_until((now + ms(idle)).min(body_deadline));
            self.fill(total).await?;
        }
        Ok(())
    }

    /// Decodes a chunked body in place after the head (`head_len` from
    /// `start`), by the body deadline and under the shard's body budget.
    /// Returns (decoded length, wire bytes after the head).
    async fn read_chunked(
        &mut self,
        head_len: usize,
        shard: &Rc<ShardState>,
        body_deadline: u64,
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
            let now = timeouts::coarse_ms();
            if now >= body_deadline {
                return Err(ReadEnd::Closed);
            }
            // The buffer may double with the next read: budget for that.
            let region = self.end - body_start;
            let next = 2 * region + BUF_SIZE;
            if next > SMALL_BODY + BUF_SIZE && !shard.reserve_body(&mut self.permit, next).await {
                return Err(ReadEnd::Reject(RequestError::BodyBudgetExhausted));
            }
            self.wait_until((now + ms(limits.idle_timeout)).min(body_deadline));
            self.fill(2 * (self.end - self.start))
                .await
                .map_err(|_| ReadEnd::Closed)?;
        }
    }

    /// Answers bad input with its status and a small JSON error, then closes.
    async fn reject(&mut self, e: RequestError, shard: &ShardState) -> bool {
        let body = format!(r#"{{"error":"{}","code":"{}"}}"#, e, error_code(e)).into_bytes();
        let mut resp = Response::json(e.status(), body);
        if e == RequestError::BodyBudgetExhausted {
            resp = resp.header("Retry-After", 1u32);
        }
        let date = shard.date.now();
        response::write_head(
            &mut self.out.buf,
            &resp,
            response::Framing::Length(resp.body_len().unwrap_or(0)),
            &date,
            true,
            false,
        );
        if let Some(b) = resp.body_bytes() {
            self.out.extend_from_slice(b);
        }
        self.flush().await.is_ok()
    }

    /// 503 when the shard's body budget stayed exhausted, then closes.
    async fn busy(&mut self, shard: &ShardState) -> bool {
        self.reject(RequestError::BodyBudgetExhausted, shard).await
    }

    /// Half-closes, then reads and discards what the client still sends for
    /// a short while, so the final response is not lost to a reset.
    async fn linger(&mut self) {
        self.deadline().set_phase(Phase::Closing);
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

/// The answer to a handler (or `admit`) that panicked.
fn internal_error() -> Response {
    Response::json(
        500,
        br#"{"error":"internal error","code":"INTERNAL"}"#.to_vec(),
    )
}

fn error_code(e: RequestError) -> &'static str {
    if e == RequestError::BodyBudgetExhausted {
        return "OVERLOADED";
    }
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
