//! Hand-written JSON output: string escaping and a small object writer that appends
//! straight into a `Vec<u8>`.
//!
//! Owns RFC 8259 correctness of everything the agent writes itself (row bytes come
//! pre-encoded from the executor). It never allocates beyond the output buffer and
//! never emits NaN/Infinity literals.

/// Appends `s` as a JSON string literal (with quotes), escaped by the same
/// writer that encodes result rows.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    executor::json::write_str(out, s.as_bytes());
}

/// Appends an unsigned integer.
pub fn write_u64(out: &mut Vec<u8>, v: u64) {
    executor::json::write_int(out, v);
}

/// Appends a float; non-finite values become `null` because JSON has no literal for them.
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        // Display never uses exponent notation and round-trips, so it is valid JSON.
        use std::io::Write;
        let _ = write!(out, "{v}");
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Writes one JSON object field by field. Keys are compile-time constants the agent
/// owns, so they are written without escaping.
pub struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj { out, first: true }
    }

    fn key(&mut self, key: &'static str) {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    pub fn str(&mut self, key: &'static str, v: &str) -> &mut Self {
        self.key(key);
        write_str(self.out, v);
        self
    }

    /// A string field that is left out when absent or empty (the contract's `request_id`).
    pub fn opt_str(&mut self, key: &'static str, v: Option<&str>) -> &mut Self {
        match v {
            Some(s) if !s.is_empty() => self.str(key, s),
            _ => self,
        }
    }

    pub fn u64(&mut self, key: &'static str, v: u64) -> &mut Self {
        self.key(key);
        write_u64(self.out, v);
        self
    }

    pub fn f64(&mut self, key: &'static str, v: f64) -> &mut Self {
        self.key(key);
        write_f64(self.out, v);
        self
    }

    /// A field whose value is already-encoded JSON.
    pub fn raw(&mut self, key: &'static str, json: &[u8]) -> &mut Self {
        self.key(key);
        self.out.extend_from_slice(json);
        self
    }

    /// A field whose value the caller appends through the buffer.
    pub fn with(&mut self, key: &'static str, f: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        self.key(key);
        f(self.out);
        self
    }

    pub fn finish(&mut self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes() {
        assert_eq!(s("plain"), "\"plain\"");
        assert_eq!(s("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(s("\n\r\t\u{8}\u{c}"), r#""\n\r\t\b\f""#);
        assert_eq!(s("\u{0}\u{1f}x"), r#""\u0000\u001fx""#);
        assert_eq!(s("é漢🦀\u{7f}"), "\"é漢🦀\u{7f}\"");
        assert_eq!(s(""), "\"\"");
    }

    #[test]
    fn object() {
        let mut out = Vec::new();
        Obj::new(&mut out)
            .str("a", "x")
            .opt_str("skip", Some(""))
            .opt_str("none", None)
            .u64("n", u64::MAX)
            .f64("f", 0.5)
            .f64("nan", f64::NAN)
            .raw("r", b"[1]")
            .finish();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":"x","n":18446744073709551615,"f":0.5,"nan":null,"r":[1]}"#
        );
    }
}
