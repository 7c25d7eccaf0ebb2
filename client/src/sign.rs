//! Request signing: HMAC-SHA256 keyed by the agent token over
//! `METHOD "\n" PATH "\n" UNIX_SECONDS "\n" hex(sha256(body))`, sent as
//! `X-Agent-Timestamp` and `X-Agent-Signature` (lowercase hex).
//!
//! Owns the algorithm only (the agent's `src/signature.rs` verifies the same form).
//! It never logs the token or a signature.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// The signature of one request. `path` excludes the query string.
pub fn signature(token: &str, method: &str, path: &str, unix_seconds: u64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(token.as_bytes()).expect("HMAC takes any key");
    mac.update(method.as_bytes());
    mac.update(b"\n");
    mac.update(path.as_bytes());
    mac.update(b"\n");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(hex(&Sha256::digest(body)).as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_vector() {
        // Computed independently with Python's hmac and hashlib modules.
        assert_eq!(
            super::signature("k", "POST", "/execute", 1_700_000_000, b""),
            "bd1b329f798dca70c72beac188d228ee61fec60f2ba325cc78b923f295d122bd"
        );
    }
}
