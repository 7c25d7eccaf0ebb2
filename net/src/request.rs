//! The request view handed to handlers: method, target, headers and body,
//! all borrowed from the connection's read buffer. Owns query-parameter
//! percent-decoding; never allocates unless a parameter needs decoding.

use std::borrow::Cow;

use crate::parse::{Head, Header};

/// HTTP version of a request (only 1.0 and 1.1 reach a handler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A request, borrowed from the connection buffer for the duration of
/// [`Handler::handle`](crate::Handler::handle).
pub struct Request<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    version: Version,
    head: &'a [u8],
    headers: &'a [Header],
    body: &'a mut [u8],
    body_available: bool,
}

/// ASCII bytes the parser validated as token/VCHAR characters, as `&str`.
fn ascii_str(bytes: &[u8]) -> &str {
    debug_assert!(bytes.is_ascii());
    // SAFETY: the parser admits only bytes 0x21..=0x7e in the method and the
    // request target, and only token bytes in header names: all ASCII, so
    // valid UTF-8. Every caller passes such a span.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

impl<'a> Request<'a> {
    /// Builds the view over a parsed head (`head_buf` is the buffer the spans
    /// refer to) and its already-decoded body.
    pub(crate) fn new(
        head_buf: &'a [u8],
        head: &Head,
        headers: &'a [Header],
        body: &'a mut [u8],
    ) -> Request<'a> {
        let path_end = head.path_end as usize;
        let t_end = head.target.end as usize;
        // Absolute form (`http://host/path`): the path starts after the authority.
        let path = match &head_buf[head.path_start as usize..path_end] {
            b"" => &b"/"[..],
            p => p,
        };
        let query = if path_end < t_end {
            &head_buf[path_end + 1..t_end]
        } else {
            &b""[..]
        };
        Request {
            method: ascii_str(head.method.of(head_buf)),
            path: ascii_str(path),
            query: ascii_str(query),
            version: if head.minor_version == 1 {
                Version::Http11
            } else {
                Version::Http10
            },
            head: head_buf,
            headers,
            body,
            body_available: true,
        }
    }

    /// The view [`Handler::admit`](crate::Handler::admit) gets when the body
    /// has not arrived yet: an empty body, `body_available() == false`.
    pub(crate) fn without_body(mut self) -> Request<'a> {
        self.body_available = false;
        self
    }

    /// `"GET"`, `"POST"`, ... exactly as sent (methods are case-sensitive).
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The request target's path, without the query string. For an
    /// absolute-form target (`http://host:port/path?q`, RFC 9112 §3.2.2)
    /// the scheme and authority are left out (an empty path reads `/`).
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The raw query string (after `?`), `""` if none.
    pub fn query(&self) -> &'a str {
        self.query
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The first query parameter named `name` (names compared after
    /// decoding), percent-decoded with `+` as space. Borrowed when nothing
    /// needed decoding; invalid UTF-8 after decoding is replaced lossily, and
    /// a `%` not followed by two hex digits is kept literally.
    pub fn query_param(&self, name: &str) -> Option<Cow<'a, str>> {
        for pair in self.query.split('&') {
            let (k, v) = match pair.split_once('=') {
                Some((k, v)) => (k, v),
                None => (pair, ""),
            };
            if k.is_empty() {
                continue;
            }
            if k == name || (needs_decoding(k) && percent_decode(k) == name) {
                return Some(percent_decode(v));
            }
        }
        None
    }

    /// The first header named `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        let name = name.as_bytes();
        let head = self.head;
        self.headers
            .iter()
            .find(|h| {
                let n = h.name.of(head);
                n.len() == name.len() && n.eq_ignore_ascii_case(name)
            })
            .map(|h| h.value.of(head))
    }

    /// All headers in the order received: (name as sent, value).
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let head = self.head;
        self.headers
            .iter()
            .map(move |h| (ascii_str(h.name.of(head)), h.value.of(head)))
    }

    /// Whether [`body`](Self::body) is the request's whole body. Always true
    /// in [`Handler::handle`](crate::Handler::handle); in
    /// [`Handler::admit`](crate::Handler::admit) only when the body (framed by
    /// `Content-Length`) had already arrived with the head.
    pub fn body_available(&self) -> bool {
        self.body_available
    }

    /// The decoded body (chunked framing removed).
    pub fn body(&self) -> &[u8] {
        self.body
    }

    /// The body, writable in place (for in-situ JSON parsers such as simd-json).
    pub fn body_mut(&mut self) -> &mut [u8] {
        self.body
    }
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("version", &self.version)
            .field("body_len", &self.body.len())
            .finish()
    }
}

fn needs_decoding(s: &str) -> bool {
    s.bytes().any(|b| b == b'%' || b == b'+')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `application/x-www-form-urlencoded` value decoding.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !needs_decoding(s) {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}
