//! Incremental HTTP/1.1 response parsing over a byte buffer.
//!
//! Owns: finding the status line and header block, deciding how the body is
//! framed (Content-Length, chunked, or read-until-close) and decoding chunked
//! bodies. It never does I/O: callers feed it bytes and ask again when it says
//! `Incomplete`, so the same code serves the socket loop and the unit tests.

use thiserror::Error;

/// Why a response could not be parsed. These are protocol errors of the
/// server (or of a proxy in between); they end the connection.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ParseError {
    #[error("malformed status line")]
    StatusLine,
    #[error("malformed header line")]
    Header,
    #[error("invalid Content-Length")]
    ContentLength,
    #[error("malformed chunk framing")]
    Chunk,
    #[error("response header block larger than {0} bytes")]
    HeaderTooLarge(usize),
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
    /// No length and not chunked: the body runs until the server closes.
    UntilClose,
}

/// The parsed head of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes taken by the status line and headers, including the blank line.
    pub len: usize,
    pub framing: Framing,
    /// The server asked to close the connection after this response.
    pub close: bool,
}

/// Largest header block accepted; anything bigger is not a server we test.
pub const MAX_HEAD: usize = 64 * 1024;

fn find_head_end(buf: &[u8]) -> Option<usize> {
    // A response head ends with an empty line; look for the first CRLFCRLF.
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

fn parse_usize(b: &[u8]) -> Option<usize> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    let mut n: usize = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + usize::from(c - b'0');
    }
    Some(n)
}

/// Parses the response head if the whole of it is in `buf`.
/// `Ok(None)` means more bytes are needed. `head_request` marks a response
/// to HEAD, which never has a body.
pub fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<Head>, ParseError> {
    let Some(end) = find_head_end(buf) else {
        if buf.len() > MAX_HEAD {
            return Err(ParseError::HeaderTooLarge(MAX_HEAD));
        }
        return Ok(None);
    };
    let mut lines = buf[..end - 4].split(|&c| c == b'\n');
    let status_line = lines.next().ok_or(ParseError::StatusLine)?;
    let status_line = status_line.strip_suffix(b"\r").unwrap_or(status_line);
    // "HTTP/1.1 200 OK": version, space, three digits, optional reason.
    if status_line.len() < 12 || !status_line.starts_with(b"HTTP/1.") || status_line[8] != b' ' {
        return Err(ParseError::StatusLine);
    }
    let http10 = status_line[7] == b'0';
    let code = &status_line[9..12];
    if !code.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::StatusLine);
    }
    let status = code.iter().fold(0u16, |a, &c| a * 10 + u16::from(c - b'0'));
    let mut length = None;
    let mut chunked = false;
    let mut close = http10;
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line
            .iter()
            .position(|&c| c == b':')
            .ok_or(ParseError::Header)?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_usize(value).ok_or(ParseError::ContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(ParseError::ContentLength);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value
                .split(|&c| c == b',')
                .next_back()
                .is_some_and(|v| trim(v).eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&c| c == b',') {
                let token = trim(token);
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                }
            }
        }
    }
    // RFC 9112 6.3: no body for HEAD, 1xx, 204 and 304; chunked wins over length.
    let framing = if head_request || status < 200 || status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    let close = close || framing == Framing::UntilClose;
    Ok(Some(Head {
        status,
        len: end,
        framing,
        close,
    }))
}

/// Progress of a chunked body decode.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunked {
    /// Every chunk and the trailer were consumed; `usize` is the number of
    /// input bytes the whole chunked body took.
    Done(usize),
    Incomplete,
}

/// Decodes a chunked body from `buf` (which starts right after the head),
/// appending the payload to `out`. It restarts from the beginning of `buf`
/// each time, so `out` must be cleared by the caller between attempts; a
/// body is small next to the cost of a round trip, so the rescans are cheap.
pub fn decode_chunked(buf: &[u8], out: &mut Vec<u8>) -> Result<Chunked, ParseError> {
    let mut pos = 0;
    loop {
        let Some(nl) = buf[pos..].iter().position(|&c| c == b'\n') else {
            return Ok(Chunked::Incomplete);
        };
        let line = &buf[pos..pos + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // Chunk extensions after ';' are allowed and ignored.
        let size_hex = trim(line.split(|&c| c == b';').next().unwrap_or(b""));
        if size_hex.is_empty() || size_hex.len() > 15 {
            return Err(ParseError::Chunk);
        }
        let mut size = 0usize;
        for &c in size_hex {
            let d = (c as char).to_digit(16).ok_or(ParseError::Chunk)?;
            size = size * 16 + d as usize;
        }
        pos += nl + 1;
        if size == 0 {
            // Trailer section: header lines until an empty line.
            loop {
                let Some(nl) = buf[pos..].iter().position(|&c| c == b'\n') else {
                    return Ok(Chunked::Incomplete);
                };
                let line = &buf[pos..pos + nl];
                pos += nl + 1;
                if line.is_empty() || line == b"\r" {
                    return Ok(Chunked::Done(pos));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(Chunked::Incomplete);
        }
        out.extend_from_slice(&buf[pos..pos + size]);
        pos += size;
        if &buf[pos..pos + 2] != b"\r\n" {
            return Err(ParseError::Chunk);
        }
        pos += 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_head() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 5\r\n\r\nhello";
        let h = parse_head(raw, false).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Length(5));
        assert!(!h.close);
        assert_eq!(&raw[h.len..], b"hello");
    }

    #[test]
    fn incomplete_head_asks_for_more() {
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Len", false).unwrap(),
            None
        );
    }

    #[test]
    fn chunked_wins_and_close_is_seen() {
        let raw = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\nConnection: close\r\n\r\n";
        let h = parse_head(raw, false).unwrap().unwrap();
        assert_eq!(
            (h.status, h.framing, h.close),
            (404, Framing::Chunked, true)
        );
    }

    #[test]
    fn http10_without_length_reads_until_close() {
        let h = parse_head(b"HTTP/1.0 200 OK\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(h.close);
    }

    #[test]
    fn no_body_statuses() {
        let h = parse_head(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.framing, Framing::Length(0));
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(0));
    }

    #[test]
    fn malformed_heads_are_errors() {
        assert_eq!(
            parse_head(b"HTTX/1.1 200 OK\r\n\r\n", false),
            Err(ParseError::StatusLine)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 2x0 OK\r\n\r\n", false),
            Err(ParseError::StatusLine)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", false),
            Err(ParseError::Header)
        );
        assert_eq!(
            parse_head(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            ),
            Err(ParseError::ContentLength)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false),
            Err(ParseError::ContentLength)
        );
    }

    #[test]
    fn oversized_head_is_refused() {
        let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
        raw.resize(MAX_HEAD + 10, b'a');
        assert_eq!(
            parse_head(&raw, false),
            Err(ParseError::HeaderTooLarge(MAX_HEAD))
        );
    }

    #[test]
    fn chunked_body_with_extensions_and_trailer() {
        let raw = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: y\r\n\r\nNEXT";
        let mut out = Vec::new();
        let done = decode_chunked(raw, &mut out).unwrap();
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(done, Chunked::Done(raw.len() - 4));
    }

    #[test]
    fn chunked_body_split_anywhere_is_incomplete_until_whole() {
        let raw = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        for cut in 0..raw.len() {
            let mut out = Vec::new();
            assert_eq!(
                decode_chunked(&raw[..cut], &mut out).unwrap(),
                Chunked::Incomplete,
                "cut {cut}"
            );
        }
        let mut out = Vec::new();
        assert_eq!(
            decode_chunked(raw, &mut out).unwrap(),
            Chunked::Done(raw.len())
        );
        assert_eq!(out, b"abcde");
    }

    #[test]
    fn bad_chunk_framing() {
        let mut out = Vec::new();
        assert_eq!(decode_chunked(b"zz\r\n", &mut out), Err(ParseError::Chunk));
        assert_eq!(
            decode_chunked(b"3\r\nabcX\r\n", &mut out),
            Err(ParseError::Chunk)
        );
    }
}
