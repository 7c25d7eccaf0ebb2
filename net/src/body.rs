//! Incremental, in-place decoder for `Transfer-Encoding: chunked` bodies
//! (RFC 9112 §7.1). Chunk data is moved down over the framing inside the
//! connection buffer, so the decoded body ends up contiguous right after the
//! head, with no second buffer. Chunk extensions and trailer fields are
//! checked for stray control bytes and then ignored. Never performs I/O.

use crate::error::RequestError;

/// A size line longer than this (hex digits + extensions) is refused.
const MAX_SIZE_LINE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Expecting `chunk-size [ chunk-ext ] CRLF`.
    Size,
    /// This many data bytes of the current chunk are still to come.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty line.
    Trailers,
    Done,
}

/// Decoder state; positions are relative to the start of the body region
/// (just after the head), so they survive the buffer being moved.
#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    phase: Phase,
    /// Next undecoded wire byte.
    read: usize,
    /// Decoded bytes so far (they occupy `0..written`).
    written: usize,
    trailer_bytes: usize,
}

/// What [`ChunkedDecoder::decode`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// More bytes are needed.
    NeedMore,
    /// The body is complete: `body` decoded bytes at the start of the region,
    /// `consumed` wire bytes in all (the next request starts there).
    Done { body: usize, consumed: usize },
}

impl ChunkedDecoder {
    pub(crate) fn new() -> Self {
        ChunkedDecoder {
            phase: Phase::Size,
            read: 0,
            written: 0,
            trailer_bytes: 0,
        }
    }

    /// Wire bytes not yet decoded start here (relative to the region).
    #[cfg(test)]
    pub(crate) fn pending_from(&self) -> usize {
        self.read
    }

    /// Decoded bytes so far.
    #[cfg(test)]
    pub(crate) fn written(&self) -> usize {
        self.written
    }

    /// Moves the undecoded tail `read..filled` down to `written`, so the
    /// wire framing already consumed no longer takes buffer space. Returns
    /// how many bytes the region shrank by.
    pub(crate) fn compact(&mut self, region: &mut [u8], filled: usize) -> usize {
        let gap = self.read - self.written;
        if gap > 0 && !matches!(self.phase, Phase::Done) {
            region.copy_within(self.read..filled, self.written);
            self.read = self.written;
        }
        if matches!(self.phase, Phase::Done) {
            0
        } else {
            gap
        }
    }

    /// Decodes as far as `region[..filled]` allows.
    pub(crate) fn decode(
        &mut self,
        region: &mut [u8],
        filled: usize,
        max_body: usize,
        max_trailer: usize,
    ) -> Result<Progress, RequestError> {
        loop {
            match self.phase {
                Phase::Done => {
                    return Ok(Progress::Done {
                        body: self.written,
                        consumed: self.read,
                    })
                }
                Phase::Size => {
                    let line = &region[self.read..filled];
                    let Some(lf) = memchr::memchr(b'\n', line) else {
                        if line.len() > MAX_SIZE_LINE {
                            return Err(RequestError::BadChunk);
                        }
                        return Ok(Progress::NeedMore);
                    };
                    if lf > MAX_SIZE_LINE || lf == 0 || line[lf - 1] != b'\r' {
                        return Err(RequestError::BadChunk);
                    }
                    let size = parse_size_line(&line[..lf - 1])?;
                    self.read += lf + 1;
                    if size == 0 {
                        self.phase = Phase::Trailers;
                    } else {
                        if self.written as u64 + size > max_body as u64 {
                            return Err(RequestError::BodyTooLarge);
                        }
                        self.phase = Phase::Data(size);
                    }
                }
                Phase::Data(left) => {
                    let avail = (filled - self.read).min(left as usize);
                    if avail == 0 {
                        return Ok(Progress::NeedMore);
                    }
                    if self.read != self.written {
                        region.copy_within(self.read..self.read + avail, self.written);
                    }
                    self.read += avail;
                    self.written += avail;
                    let left = left - avail as u64;
                    self.phase = if left == 0 {
                        Phase::DataEnd
                    } else {
                        Phase::Data(left)
                    };
                }
                Phase::DataEnd => {
                    if filled - self.read < 2 {
                        return Ok(Progress::NeedMore);
                    }
                    if &region[self.read..self.read + 2] != b"\r\n" {
                        return Err(RequestError::BadChunk);
                    }
                    self.read += 2;
                    self.phase = Phase::Size;
                }
                Phase::Trailers => {
                    let rest = &region[self.read..filled];
                    let Some(lf) = memchr::memchr(b'\n', rest) else {
                        if self.trailer_bytes + rest.len() > max_trailer {
                            return Err(RequestError::HeadersTooLarge);
                        }
                        return Ok(Progress::NeedMore);
                    };
                    if lf == 0 || rest[lf - 1] != b'\r' {
                        return Err(RequestError::BadChunk);
                    }
                    let line = &rest[..lf - 1];
                    if line.iter().any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
                        return Err(RequestError::BadChunk);
                    }
                    self.trailer_bytes += lf + 1;
                    if self.trailer_bytes > max_trailer {
                        return Err(RequestError::HeadersTooLarge);
                    }
                    self.read += lf + 1;
                    if line.is_empty() {
                        self.phase = Phase::Done;
                    }
                }
            }
        }
    }
}

/// `1*HEXDIG [ BWS ; ext... ]`: the size; extensions are validated for
/// control bytes and ignored.
fn parse_size_line(line: &[u8]) -> Result<u64, RequestError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return Err(RequestError::BadChunk);
    }
    let mut size = 0u64;
    for &d in &line[..digits] {
        size = size << 4 | (d as char).to_digit(16).unwrap() as u64;
    }
    let rest = &line[digits..];
    let ext = rest.trim_ascii_start();
    if !ext.is_empty() && ext[0] != b';' {
        return Err(RequestError::BadChunk);
    }
    if ext.iter().any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
        return Err(RequestError::BadChunk);
    }
    Ok(size)
}

/// Fuzzing entry: decodes `wire` in one go and again delivered in two
/// pieces with compaction in between; both must agree. Returns the decoded
/// body and wire length when complete.
#[doc(hidden)]
pub fn fuzz_chunked(wire: &[u8]) -> Option<(Vec<u8>, usize)> {
    const MAX: usize = 1 << 16;
    let mut whole = wire.to_vec();
    let one = ChunkedDecoder::new().decode(&mut whole, wire.len(), MAX, MAX);
    let one = match one {
        Ok(Progress::Done { body, consumed }) => Ok(Some((whole[..body].to_vec(), consumed))),
        Ok(Progress::NeedMore) => Ok(None),
        Err(e) => Err(e),
    };

    let split = wire.first().map_or(0, |&b| b as usize).min(wire.len());
    let mut region = wire[..split].to_vec();
    let mut dec = ChunkedDecoder::new();
    let mut filled = region.len();
    let mut two = dec.decode(&mut region, filled, MAX, MAX);
    if let Ok(Progress::NeedMore) = two {
        let shrink = dec.compact(&mut region, filled);
        filled -= shrink;
        region.truncate(filled);
        region.extend_from_slice(&wire[split..]);
        filled = region.len();
        two = dec.decode(&mut region, filled, MAX, MAX);
    }
    let two = match two {
        Ok(Progress::Done { body, consumed }) => Ok(Some((
            region[..body].to_vec(),
            consumed + (wire.len() - filled),
        ))),
        Ok(Progress::NeedMore) => Ok(None),
        Err(e) => Err(e),
    };
    // The first piece may already hold a complete body (then `two` reports
    // it without the second piece); otherwise both must agree exactly.
    match (&one, &two) {
        (Ok(Some((b1, c1))), Ok(Some((b2, _)))) if *c1 <= split => assert_eq!(b1, b2),
        _ => assert_eq!(one, two, "split at {split}"),
    }
    one.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(wire: &[u8], step: usize) -> Result<(Vec<u8>, usize), RequestError> {
        let mut region = wire.to_vec();
        let mut d = ChunkedDecoder::new();
        let mut filled = 0;
        loop {
            filled = (filled + step).min(wire.len());
            match d.decode(&mut region, filled, 1 << 20, 1024)? {
                Progress::Done { body, consumed } => {
                    return Ok((region[..body].to_vec(), consumed));
                }
                Progress::NeedMore if filled == wire.len() => panic!("incomplete"),
                Progress::NeedMore => {}
            }
        }
    }

    #[test]
    fn decodes_in_place_at_any_split() {
        let wire = b"5\r\nhello\r\n1;ext=1\r\n \r\nA \r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, 100] {
            let (body, consumed) = decode_all(wire, step).unwrap();
            assert_eq!(body, b"hello 0123456789");
            assert_eq!(&wire[consumed..], b"NEXT");
        }
    }

    #[test]
    fn rejects_bad_framing() {
        let bad: &[&[u8]] = &[
            b"x\r\n\r\n",
            b"\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"1234567890abcdef0\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"5;a\x00\r\nhello\r\n0\r\n\r\n",
            b"0\r\nBad\x01: x\r\n\r\n",
        ];
        for wire in bad {
            let mut region = wire.to_vec();
            let r = ChunkedDecoder::new().decode(&mut region, wire.len(), 1 << 20, 1024);
            assert_eq!(
                r,
                Err(RequestError::BadChunk),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn enforces_body_limit() {
        let wire = b"10\r\n0123456789abcdef\r\n0\r\n\r\n";
        let mut region = wire.to_vec();
        let r = ChunkedDecoder::new().decode(&mut region, wire.len(), 15, 1024);
        assert_eq!(r, Err(RequestError::BodyTooLarge));
    }

    #[test]
    fn compaction_keeps_the_undecoded_tail() {
        let wire = b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
        let mut region = wire.to_vec();
        let mut d = ChunkedDecoder::new();
        assert_eq!(
            d.decode(&mut region, 12, 100, 100).unwrap(),
            Progress::NeedMore
        );
        let shrink = d.compact(&mut region, 12);
        assert_eq!(shrink, 8, "the framing of the first chunk is reclaimed");
        assert_eq!(d.pending_from(), d.written());
        assert_eq!(&region[..3], b"abc");
        // The region now holds `abc` + the undecoded tail; append the rest.
        let filled = 12 - shrink;
        region.truncate(filled);
        region.extend_from_slice(&wire[12..]);
        let filled = region.len();
        match d.decode(&mut region, filled, 100, 100).unwrap() {
            Progress::Done { body, consumed } => {
                assert_eq!(&region[..body], b"abcdef");
                assert_eq!(consumed, filled);
            }
            p => panic!("{p:?}"),
        }
    }
}
