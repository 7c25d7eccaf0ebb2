//! Responses as handlers build them, and their serialisation into the
//! connection's output buffer. Owns status lines, framing headers
//! (Content-Length / chunked / Connection), header-value hygiene and body
//! segments (owned or shared bytes, so a large body is written from where it
//! already lives instead of being copied on the reactor); never writes to a
//! socket.

use std::fmt;
use std::pin::Pin;

use futures_core::Stream;

/// A header value: static text, owned text, or a number (formatted on write).
#[derive(Clone, PartialEq, Eq)]
pub struct HeaderValue(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Static(&'static str),
    Owned(String),
    Number(u64),
}

impl HeaderValue {
    /// Appends the value; CR, LF and NUL (response splitting) become spaces.
    fn write_to(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Repr::Static(s) => push_sanitised(out, s.as_bytes()),
            Repr::Owned(s) => push_sanitised(out, s.as_bytes()),
            Repr::Number(n) => push_decimal(out, *n),
        }
    }
}

impl fmt::Debug for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Static(s) => fmt::Debug::fmt(s, f),
            Repr::Owned(s) => fmt::Debug::fmt(s, f),
            Repr::Number(n) => fmt::Debug::fmt(n, f),
        }
    }
}

impl From<&'static str> for HeaderValue {
    fn from(s: &'static str) -> Self {
        HeaderValue(Repr::Static(s))
    }
}

impl From<String> for HeaderValue {
    fn from(s: String) -> Self {
        HeaderValue(Repr::Owned(s))
    }
}

macro_rules! number_values {
    ($($t:ty),*) => {$(
        impl From<$t> for HeaderValue {
            fn from(n: $t) -> Self {
                HeaderValue(Repr::Number(n as u64))
            }
        }
    )*};
}
number_values!(u8, u16, u32, u64, usize);

/// One piece of a response body: owned bytes, static bytes, or bytes kept
/// alive by a shared owner (e.g. an `Arc` of a result arena). net copies
/// small segments into its output buffer and hands large ones to the kernel
/// as they are (vectored writes), so a handler can answer with a large
/// shared result without copying it on the reactor thread.
pub struct Segment(SegRepr);

enum SegRepr {
    Owned(Vec<u8>),
    Static(&'static [u8]),
    Shared(Box<dyn AsRef<[u8]>>),
}

impl Segment {
    /// Bytes owned by `owner` (for example a wrapper holding an `Arc` and a
    /// range); `owner.as_ref()` must return the same bytes every time.
    pub fn shared(owner: impl AsRef<[u8]> + 'static) -> Segment {
        Segment(SegRepr::Shared(Box::new(owner)))
    }

    /// The segment's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            SegRepr::Owned(v) => v,
            SegRepr::Static(s) => s,
            SegRepr::Shared(o) => (**o).as_ref(),
        }
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Vec<u8>> for Segment {
    fn from(v: Vec<u8>) -> Self {
        Segment(SegRepr::Owned(v))
    }
}

impl From<&'static [u8]> for Segment {
    fn from(s: &'static [u8]) -> Self {
        Segment(SegRepr::Static(s))
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Segment({} bytes)", self.len())
    }
}

pub(crate) enum Body {
    Bytes(Vec<u8>),
    Segments(Vec<Segment>),
    Stream(Pin<Box<dyn Stream<Item = Vec<u8>>>>),
}

/// An HTTP response. net adds `Content-Length` (or chunked framing for
/// streams), `Date` and `Connection`; a handler's own `Content-Length`,
/// `Transfer-Encoding` or `Connection` header is dropped, because framing
/// belongs to the connection loop.
pub struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, HeaderValue)>,
    pub(crate) body: Body,
}

impl Response {
    /// An empty response with this status (100..=999; others become 500).
    pub fn new(status: u16) -> Self {
        Response {
            status: if (100..=999).contains(&status) {
                status
            } else {
                500
            },
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
        }
    }

    /// Adds a header (repeatable: every call adds one field line).
    pub fn header(mut self, name: &'static str, value: impl Into<HeaderValue>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body; `Content-Length` is set from it.
    pub fn body(mut self, bytes: Vec<u8>) -> Self {
        self.body = Body::Bytes(bytes);
        self
    }

    /// Sets a body made of segments, written in order; `Content-Length` is
    /// their total. Large segments are written straight from their owner
    /// (vectored writes), small ones are copied into the output batch.
    pub fn segments(mut self, segments: Vec<Segment>) -> Self {
        self.body = Body::Segments(segments);
        self
    }

    /// A JSON response: `Content-Type: application/json` and the body.
    pub fn json(status: u16, bytes: Vec<u8>) -> Self {
        Response::new(status)
            .header("Content-Type", "application/json")
            .body(bytes)
    }

    /// A response whose body is streamed with chunked transfer coding, one
    /// chunk per item (empty items are skipped). To an HTTP/1.0 client the
    /// items are sent unframed and the connection is closed after the last.
    pub fn stream(status: u16, chunks: impl Stream<Item = Vec<u8>> + 'static) -> Self {
        let mut r = Response::new(status);
        r.body = Body::Stream(Box::pin(chunks));
        r
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first header named `name` (case-insensitive) set by the handler.
    pub fn header_value(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The body, when it was set as one `Vec` (see [`body_vec`](Self::body_vec)
    /// for segmented bodies).
    pub fn body_bytes(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Bytes(b) => Some(b),
            Body::Segments(_) | Body::Stream(_) => None,
        }
    }

    /// The body's bytes in one `Vec` (segments concatenated), unless it is a
    /// stream. A copy: for tests and diagnostics, not for the request path.
    pub fn body_vec(&self) -> Option<Vec<u8>> {
        match &self.body {
            Body::Bytes(b) => Some(b.clone()),
            Body::Segments(segs) => Some(segs.iter().flat_map(|s| s.as_bytes()).copied().collect()),
            Body::Stream(_) => None,
        }
    }

    /// Body length in bytes, unless it is a stream.
    pub fn body_len(&self) -> Option<usize> {
        match &self.body {
            Body::Bytes(b) => Some(b.len()),
            Body::Segments(segs) => Some(segs.iter().map(Segment::len).sum()),
            Body::Stream(_) => None,
        }
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field(
                "body",
                &match &self.body {
                    Body::Bytes(b) => format!("{} bytes", b.len()),
                    Body::Segments(s) => format!(
                        "{} bytes in {} segments",
                        s.iter().map(Segment::len).sum::<usize>(),
                        s.len()
                    ),
                    Body::Stream(_) => "stream".to_string(),
                },
            )
            .finish()
    }
}

/// How the connection loop frames a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Length(usize),
    Chunked,
    /// No framing header: an HTTP/1.0 stream (the connection close ends
    /// the body), or a 1xx/204 response (no body at all).
    UntilClose,
}

/// Writes the status line and headers, framing and Connection included.
/// `keep_alive_header`: also send `Connection: keep-alive` (HTTP/1.0 peers).
pub(crate) fn write_head(
    out: &mut Vec<u8>,
    resp: &Response,
    framing: Framing,
    date: &[u8],
    close: bool,
    keep_alive_header: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_status(out, resp.status);
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(date);
    for (name, value) in &resp.headers {
        if is_framing_header(name) || !name.bytes().all(is_token_byte) || name.is_empty() {
            continue;
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        value.write_to(out);
    }
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"\r\nContent-Length: ");
            push_decimal(out, n as u64);
        }
        Framing::Chunked => out.extend_from_slice(b"\r\nTransfer-Encoding: chunked"),
        Framing::UntilClose => {}
    }
    if close {
        out.extend_from_slice(b"\r\nConnection: close");
    } else if keep_alive_header {
        out.extend_from_slice(b"\r\nConnection: keep-alive");
    }
    out.extend_from_slice(b"\r\n\r\n");
}

fn is_framing_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length")
        || name.eq_ignore_ascii_case("transfer-encoding")
        || name.eq_ignore_ascii_case("connection")
        || name.eq_ignore_ascii_case("date")
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn push_sanitised(out: &mut Vec<u8>, v: &[u8]) {
    let start = out.len();
    out.extend_from_slice(v);
    for b in &mut out[start..] {
        if matches!(*b, b'\r' | b'\n' | 0) {
            *b = b' ';
        }
    }
}

pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

pub(crate) fn push_hex(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 16];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b"0123456789abcdef"[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

fn push_status(out: &mut Vec<u8>, status: u16) {
    out.push(b'0' + (status / 100) as u8);
    out.push(b'0' + (status / 10 % 10) as u8);
    out.push(b'0' + (status % 10) as u8);
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
}

/// The reason phrase for a status (clients ignore it; it helps humans).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_has_framing_and_sanitised_values() {
        let r = Response::json(200, b"{}".to_vec())
            .header("X-Evil", String::from("a\r\nSet-Cookie: x"))
            .header("Content-Length", "999")
            .header("Bad Name", "x")
            .header("Retry-After", 5u32);
        let mut out = Vec::new();
        write_head(&mut out, &r, Framing::Length(2), b"D", false, false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nDate: D\r\nContent-Type: application/json\r\n\
             X-Evil: a  Set-Cookie: x\r\nRetry-After: 5\r\nContent-Length: 2\r\n\r\n"
        );
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        push_decimal(&mut out, 0);
        out.push(b' ');
        push_decimal(&mut out, u64::MAX);
        out.push(b' ');
        push_hex(&mut out, 0x1f0);
        assert_eq!(out, b"0 18446744073709551615 1f0");
    }
}
