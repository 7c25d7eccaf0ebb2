//! The request-head parser: request line and header fields, validated and
//! recorded as offsets into the caller's buffer. It never allocates (the
//! header index is a caller-owned `Vec` reused across requests), never copies
//! a byte, and never looks past the blank line that ends the head; message
//! framing (Content-Length, chunked, keep-alive) is decided by [`framing`].
//!
//! Grammar (RFC 9112 §3, §5), strictly: CRLF line ends only; one SP between
//! request-line parts; token methods and field names; no whitespace before the
//! colon; field values of HTAB, SP, VCHAR and obs-text only (so NUL, bare CR,
//! bare LF are rejected); obs-fold rejected; leading empty lines skipped.

use crate::error::RequestError;

/// A byte range `start..end` inside the buffer the head was parsed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    #[inline]
    fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The bytes this span covers in `buf` (the buffer it was parsed from).
    #[inline]
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }
}

/// One header field: name and value (value without surrounding whitespace).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub name: Span,
    pub value: Span,
}

/// A complete, validated request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub method: Span,
    /// The request target, query string included.
    pub target: Span,
    /// Where the path starts: `target.start`, or just after the authority of
    /// an absolute-form target (`http://host:port/path`, RFC 9112 §3.2.2).
    pub path_start: u32,
    /// Where the path ends: the index of the first `?`, or `target.end`.
    pub path_end: u32,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Bytes of the head, the blank line included: the body starts here.
    pub len: usize,
}

/// Parses the head at the start of `buf`. `Ok(None)`: incomplete, call again
/// with more bytes. Header offsets are pushed to `headers` (cleared first).
/// `buf` may be longer than the head; bytes after it are not looked at.
pub fn parse_head(
    buf: &[u8],
    headers: &mut Vec<Header>,
    max_headers: usize,
) -> Result<Option<Head>, RequestError> {
    headers.clear();
    let len = buf.len();
    let mut i = 0;
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before
    // the request line (clients send a stray CRLF after a POST body).
    while i + 1 < len && buf[i] == b'\r' && buf[i + 1] == b'\n' {
        i += 2;
    }

    // method SP
    let m_start = i;
    while i < len && is_token(buf[i]) {
        i += 1;
    }
    if i >= len {
        return Ok(None);
    }
    if buf[i] != b' ' || i == m_start {
        return Err(RequestError::BadRequestLine);
    }
    let method = Span::new(m_start, i);
    i += 1;

    // request-target SP
    let t_start = i;
    i = target_run(buf, i);
    if i >= len {
        return Ok(None);
    }
    if buf[i] != b' ' || i == t_start {
        return Err(RequestError::BadRequestLine);
    }
    let target = Span::new(t_start, i);
    let path_end = match memchr::memchr(b'?', &buf[t_start..i]) {
        Some(q) => t_start + q,
        None => i,
    };
    let path_start = t_start + absolute_form_prefix(&buf[t_start..path_end]);
    i += 1;

    // HTTP-version CRLF
    if len - i < 10 {
        // Reject early what can never become a version.
        let have = &buf[i..];
        let want = b"HTTP/";
        let n = have.len().min(want.len());
        if have[..n] != want[..n] {
            return Err(RequestError::BadRequestLine);
        }
        return Ok(None);
    }
    let v = &buf[i..i + 8];
    let minor_version = if v == b"HTTP/1.1" {
        1
    } else if v == b"HTTP/1.0" {
        0
    } else if &v[..5] == b"HTTP/" && v[5].is_ascii_digit() && v[6] == b'.' && v[7].is_ascii_digit()
    {
        return Err(RequestError::UnsupportedVersion);
    } else {
        return Err(RequestError::BadRequestLine);
    };
    if buf[i + 8] != b'\r' || buf[i + 9] != b'\n' {
        return Err(RequestError::BadRequestLine);
    }
    i += 10;

    // *( field-line CRLF ) CRLF
    loop {
        if i >= len {
            return Ok(None);
        }
        match buf[i] {
            b'\r' => {
                if i + 1 >= len {
                    return Ok(None);
                }
                if buf[i + 1] != b'\n' {
                    return Err(RequestError::BadHeader);
                }
                return Ok(Some(Head {
                    method,
                    target,
                    path_start: path_start as u32,
                    path_end: path_end as u32,
                    minor_version,
                    len: i + 2,
                }));
            }
            // A line starting with whitespace continues the previous field
            // (obs-fold) or, first, hides a field from some parsers: reject.
            b' ' | b'\t' => return Err(RequestError::ObsFold),
            _ => {}
        }
        let n_start = i;
        while i < len && is_token(buf[i]) {
            i += 1;
        }
        if i >= len {
            return Ok(None);
        }
        if buf[i] != b':' || i == n_start {
            return Err(RequestError::BadHeader);
        }
        let name = Span::new(n_start, i);
        i += 1;
        while i < len && (buf[i] == b' ' || buf[i] == b'\t') {
            i += 1;
        }
        let v_start = i;
        i = value_run(buf, i);
        if i + 1 >= len {
            return Ok(None);
        }
        if buf[i] != b'\r' || buf[i + 1] != b'\n' {
            return Err(RequestError::BadHeader);
        }
        let mut v_end = i;
        while v_end > v_start && (buf[v_end - 1] == b' ' || buf[v_end - 1] == b'\t') {
            v_end -= 1;
        }
        if headers.len() >= max_headers {
            return Err(RequestError::TooManyHeaders);
        }
        headers.push(Header {
            name,
            value: Span::new(v_start, v_end),
        });
        i += 2;
    }
}

/// Length of `http://authority` / `https://authority` (scheme matched
/// without regard to case) at the start of a target's path part, or 0 when
/// the target is not in absolute form. RFC 9112 §3.2.2: a server MUST accept
/// the absolute form; the authority is not used for routing here.
fn absolute_form_prefix(path: &[u8]) -> usize {
    let rest = if path.len() >= 7 && path[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else if path.len() >= 8 && path[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else {
        return 0;
    };
    match memchr::memchr(b'/', &path[rest..]) {
        Some(slash) => rest + slash,
        None => path.len(),
    }
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Exactly this many bytes follow the head (0: no body).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What the headers say about the message around the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub body: BodyKind,
    /// The client allows another request on this connection.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
}

/// Decides body framing and connection persistence from a parsed head, with
/// the request-smuggling defences of RFC 9112 §6.1–6.3: Content-Length and
/// Transfer-Encoding together, differing lengths, a non-final `chunked`, or
/// Transfer-Encoding on HTTP/1.0 are errors, never guesses.
pub fn framing(buf: &[u8], head: &Head, headers: &[Header]) -> Result<Framing, RequestError> {
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut has_te = false;
    let mut hosts = 0u32;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    for h in headers {
        let name = h.name.of(buf);
        let value = h.value.of(buf);
        match name.len() {
            4 if eq_lower(name, b"host") => hosts += 1,
            6 if eq_lower(name, b"expect") => {
                if value.eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = true;
                } else if head.minor_version == 1 {
                    return Err(RequestError::UnsupportedExpectation);
                }
            }
            10 if eq_lower(name, b"connection") => {
                // The common values first, without splitting a list.
                if eq_lower_any(value, b"keep-alive") {
                    keep_alive_token = true;
                    continue;
                }
                if eq_lower_any(value, b"close") {
                    close = true;
                    continue;
                }
                for token in list_items(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive_token = true;
                    }
                }
            }
            14 if eq_lower(name, b"content-length") => {
                if let Some(n) = parse_decimal(value) {
                    match content_length {
                        Some(prev) if prev != n => return Err(RequestError::BadContentLength),
                        _ => content_length = Some(n),
                    }
                    continue;
                }
                for item in list_items(value) {
                    let n = parse_decimal(item).ok_or(RequestError::BadContentLength)?;
                    match content_length {
                        Some(prev) if prev != n => return Err(RequestError::BadContentLength),
                        _ => content_length = Some(n),
                    }
                }
                if content_length.is_none() {
                    return Err(RequestError::BadContentLength);
                }
            }
            17 if eq_lower(name, b"transfer-encoding") => {
                has_te = true;
                for coding in list_items(value) {
                    if chunked {
                        // Anything after `chunked` (even another `chunked`)
                        // makes the length unknowable.
                        return Err(RequestError::BadTransferEncoding);
                    }
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        chunked = true;
                    } else {
                        return Err(RequestError::UnsupportedTransferEncoding);
                    }
                }
            }
            _ => {}
        }
    }
    if has_te {
        if content_length.is_some() {
            return Err(RequestError::ContentLengthAndTransferEncoding);
        }
        if !chunked || head.minor_version == 0 {
            return Err(RequestError::BadTransferEncoding);
        }
    }
    if hosts > 1 || (hosts == 0 && head.minor_version == 1) {
        return Err(RequestError::BadHost);
    }
    let keep_alive = if head.minor_version == 1 {
        !close
    } else {
        keep_alive_token && !close
    };
    Ok(Framing {
        body: if chunked {
            BodyKind::Chunked
        } else {
            BodyKind::Length(content_length.unwrap_or(0))
        },
        keep_alive,
        expect_continue: expect_continue && head.minor_version == 1,
    })
}

/// `name` (token bytes, same length as `lower`) equals the lowercase
/// `lower` ignoring ASCII case. OR-ing 0x20 lowercases letters; for the
/// letters and `-` in `lower` no other token byte maps onto them, so the
/// comparison is exact. Eight bytes at a time.
#[inline(always)]
fn eq_lower(name: &[u8], lower: &[u8]) -> bool {
    debug_assert_eq!(name.len(), lower.len());
    let n = name.len();
    let mut i = 0;
    while i + 8 <= n {
        let a = u64::from_le_bytes(name[i..i + 8].try_into().unwrap());
        let b = u64::from_le_bytes(lower[i..i + 8].try_into().unwrap());
        if a | (LO * 0x20) != b {
            return false;
        }
        i += 8;
    }
    while i < n {
        if name[i] | 0x20 != lower[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Like [`eq_lower`] for arbitrary bytes (header values): length-checked and
/// exact (`eq_ignore_ascii_case`) once the cheap test passes.
#[inline(always)]
fn eq_lower_any(value: &[u8], lower: &[u8]) -> bool {
    value.len() == lower.len() && value.eq_ignore_ascii_case(lower)
}

/// Items of a comma-separated header list, trimmed, empty items skipped.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|item| item.trim_ascii())
        .filter(|item| !item.is_empty())
}

/// `1*DIGIT` without sign or whitespace; `None` on overflow or anything else.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

/// Finds the end of a head in `buf[from..]` without parsing it: the index
/// just past the first CRLFCRLF at or after `from`. Lets the connection loop
/// re-parse a partial head only when its end may have arrived, so a head
/// delivered a byte at a time costs linear, not quadratic, work.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    memchr::memmem::find(&buf[from..], b"\r\n\r\n").map(|p| from + p + 4)
}

const fn make_token_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
}

static TOKEN: [bool; 256] = make_token_table();

#[inline(always)]
fn is_token(b: u8) -> bool {
    TOKEN[b as usize]
}

#[inline(always)]
fn is_value(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Flags (high bit per byte) the bytes of `x` that are below `n`, or DEL.
/// Borrows only propagate upwards, so the lowest flag is always exact.
#[inline(always)]
fn below_or_del(x: u64, n: u8) -> u64 {
    let lt = x.wrapping_sub(LO * n as u64) & !x & HI;
    let y = x ^ (LO * 0x7f);
    let del = y.wrapping_sub(LO) & !y & HI;
    lt | del
}

/// Index of the first byte at or after `i` that may not appear in a field
/// value, eight bytes at a time while the bytes are plain.
#[inline]
fn value_run(buf: &[u8], mut i: usize) -> usize {
    while i + 8 <= buf.len() {
        let x = u64::from_le_bytes(buf[i..i + 8].try_into().unwrap());
        let flags = below_or_del(x, 0x20);
        if flags != 0 {
            i += (flags.trailing_zeros() / 8) as usize;
            // HTAB is flagged but allowed: step over it and go on.
            if buf[i] != b'\t' {
                return i;
            }
            i += 1;
            continue;
        }
        i += 8;
    }
    while i < buf.len() && is_value(buf[i]) {
        i += 1;
    }
    i
}

/// Index of the first byte at or after `i` outside VCHAR (0x21..=0x7e): the
/// SP ending the request target, or an invalid byte.
#[inline]
fn target_run(buf: &[u8], mut i: usize) -> usize {
    while i + 8 <= buf.len() {
        let x = u64::from_le_bytes(buf[i..i + 8].try_into().unwrap());
        let flags = below_or_del(x, 0x21) | (x & HI);
        if flags != 0 {
            return i + (flags.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < buf.len() && (0x21..0x7f).contains(&buf[i]) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8]) -> Result<Option<(Head, Vec<Header>)>, RequestError> {
        let mut h = Vec::new();
        parse_head(s, &mut h, 64).map(|o| o.map(|head| (head, h)))
    }

    #[test]
    fn parses_a_request_with_query_and_headers() {
        let req = b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h\r\nX-Thing:  v a l \t\r\n\r\nBODY";
        let (head, hs) = parse(req).unwrap().unwrap();
        assert_eq!(head.method.of(req), b"GET");
        assert_eq!(head.target.of(req), b"/a/b?x=1&y=2");
        assert_eq!(
            &req[head.path_end as usize..head.target.end as usize],
            b"?x=1&y=2"
        );
        assert_eq!(head.minor_version, 1);
        assert_eq!(&req[head.len..], b"BODY");
        assert_eq!(hs.len(), 2);
        assert_eq!(hs[1].name.of(req), b"X-Thing");
        assert_eq!(hs[1].value.of(req), b"v a l");
    }

    #[test]
    fn absolute_form_targets_have_their_path_after_the_authority() {
        let cases: &[(&[u8], &[u8])] = &[
            (
                b"GET http://h:1/health?x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
                b"/health",
            ),
            (b"GET HTTPS://h/a/b HTTP/1.1\r\nHost: h\r\n\r\n", b"/a/b"),
            (b"GET http://h HTTP/1.1\r\nHost: h\r\n\r\n", b""),
            (b"GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n", b""),
            (b"GET /plain HTTP/1.1\r\nHost: h\r\n\r\n", b"/plain"),
            (b"GET http:/x HTTP/1.1\r\nHost: h\r\n\r\n", b"http:/x"),
        ];
        for (req, path) in cases {
            let (head, _) = parse(req).unwrap().unwrap();
            assert_eq!(
                &req[head.path_start as usize..head.path_end as usize],
                *path,
                "{}",
                String::from_utf8_lossy(req)
            );
        }
    }

    #[test]
    fn every_prefix_is_partial_and_the_whole_is_complete() {
        let req = b"POST /x HTTP/1.0\r\nA: 1\r\nLonger-Header-Name: some longer value here\r\n\r\n";
        for n in 0..req.len() {
            assert_eq!(parse(&req[..n]).unwrap(), None, "prefix {n}");
        }
        assert!(parse(req).unwrap().is_some());
    }

    #[test]
    fn rejects_bad_input_with_the_right_error() {
        use RequestError::*;
        let cases: &[(&[u8], RequestError)] = &[
            (b"GET  / HTTP/1.1\r\n\r\n", BadRequestLine),
            (b"GET / HTTP/1.1 \r\n\r\n", BadRequestLine),
            (b"GET / FTP/1.1\r\n\r\n", BadRequestLine),
            (b"G(T / HTTP/1.1\r\n\r\n", BadRequestLine),
            (b"GET /\x01 HTTP/1.1\r\n\r\n", BadRequestLine),
            (b"GET / HTTP/2.0\r\n\r\n", UnsupportedVersion),
            (b"GET / HTTP/1.1\r\nA : b\r\n\r\n", BadHeader),
            (b"GET / HTTP/1.1\r\n: b\r\n\r\n", BadHeader),
            (b"GET / HTTP/1.1\r\nA: b\nC: d\r\n\r\n", BadHeader),
            (b"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n", BadHeader),
            (b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", BadHeader),
            (b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", ObsFold),
            (b"GET / HTTP/1.1\r\n\tA: b\r\n\r\n", ObsFold),
        ];
        for (req, want) in cases {
            assert_eq!(parse(req), Err(*want), "{}", String::from_utf8_lossy(req));
        }
    }

    #[test]
    fn limits_header_count() {
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..65 {
            req.extend_from_slice(b"A: b\r\n");
        }
        req.extend_from_slice(b"\r\n");
        assert_eq!(parse(&req), Err(RequestError::TooManyHeaders));
    }

    #[test]
    fn value_scan_handles_every_byte_in_every_lane() {
        for pos in 0..16 {
            for b in 0..=255u8 {
                let mut v = vec![b'a'; 16];
                v[pos] = b;
                let stop = value_run(&v, 0);
                let expect = if is_value(b) { 16 } else { pos };
                assert_eq!(stop, expect, "byte {b:#x} at {pos}");
                let stop = target_run(&v, 0);
                let expect = if (0x21..0x7f).contains(&b) { 16 } else { pos };
                assert_eq!(stop, expect, "target byte {b:#x} at {pos}");
            }
        }
    }

    fn framing_of(req: &[u8]) -> Result<Framing, RequestError> {
        let mut hs = Vec::new();
        let head = parse_head(req, &mut hs, 64).unwrap().unwrap();
        framing(req, &head, &hs)
    }

    #[test]
    fn framing_rules() {
        use RequestError::*;
        let f = framing_of(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!((f.body, f.keep_alive), (BodyKind::Length(0), true));
        let f = framing_of(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!f.keep_alive);
        let f = framing_of(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(f.keep_alive);
        let f = framing_of(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n").unwrap();
        assert!(!f.keep_alive);
        let f = framing_of(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-length: 5\r\n\r\n",
        )
        .unwrap();
        assert_eq!(f.body, BodyKind::Length(5));
        let f = framing_of(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\nExpect: 100-continue\r\n\r\n").unwrap();
        assert_eq!(f.body, BodyKind::Chunked);
        assert!(f.expect_continue);
        let bad: &[(&[u8], RequestError)] = &[
            (b"GET / HTTP/1.1\r\n\r\n", BadHost),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", BadHost),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", ContentLengthAndTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", UnsupportedTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", BadTransferEncoding),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", UnsupportedExpectation),
        ];
        for (req, want) in bad {
            assert_eq!(
                framing_of(req),
                Err(*want),
                "{}",
                String::from_utf8_lossy(req)
            );
        }
    }
}
