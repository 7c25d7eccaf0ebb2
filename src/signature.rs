//! Request signatures (`X-Agent-Timestamp`, `X-Agent-Signature`), verified when
//! `REQUIRE_SIGNED_REQUESTS` is on.
//!
//! The signature is lowercase hex of HMAC-SHA256, keyed by the agent token, over
//! `METHOD "\n" PATH "\n" TIMESTAMP "\n" hex(sha256(body))` (PATH without the query
//! string; an empty body hashes the empty string), the form the platform's gateways
//! send. A timestamp further than `SIGNATURE_MAX_SKEW` from the agent's clock, in
//! either direction, is refused, so a captured request cannot be replayed later, and
//! a replay with another body fails the MAC.
//!
//! Owns only the verification. It never logs or echoes the token or a signature, and
//! the final comparison is constant-time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why a request's signature was refused (for logs; the client only sees 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Agent-Timestamp or X-Agent-Signature")]
    Missing,
    #[error("X-Agent-Timestamp is not Unix seconds")]
    BadTimestamp,
    #[error("X-Agent-Timestamp outside the allowed skew")]
    Stale,
    #[error("X-Agent-Signature does not match")]
    Mismatch,
}

/// The agent's signature policy (`REQUIRE_SIGNED_REQUESTS`, `SIGNATURE_MAX_SKEW`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignaturePolicy {
    pub required: bool,
    pub max_skew: Duration,
}

impl SignaturePolicy {
    /// Checks a request against the policy: always `Ok` when signatures are not required.
    pub fn check(
        &self,
        token: &[u8],
        method: &str,
        path: &str,
        body: &[u8],
        timestamp: Option<&[u8]>,
        signature: Option<&[u8]>,
    ) -> Result<(), SignatureError> {
        if !self.required {
            return Ok(());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        verify(
            token,
            method,
            path,
            body,
            timestamp,
            signature,
            now,
            self.max_skew,
        )
    }
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// The expected signature (lowercase hex) of a request.
pub fn sign(token: &[u8], method: &str, path: &str, timestamp: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(token).expect("HMAC takes any key");
    mac.update(method.as_bytes());
    mac.update(b"\n");
    mac.update(path.as_bytes());
    mac.update(b"\n");
    mac.update(timestamp.as_bytes());
    mac.update(b"\n");
    mac.update(hex(&Sha256::digest(body)).as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Verifies one request at `now_s` (Unix seconds).
#[allow(clippy::too_many_arguments)]
pub fn verify(
    token: &[u8],
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: Option<&[u8]>,
    signature: Option<&[u8]>,
    now_s: u64,
    max_skew: Duration,
) -> Result<(), SignatureError> {
    let (Some(ts), Some(sig)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let ts = std::str::from_utf8(ts)
        .map_err(|_| SignatureError::BadTimestamp)?
        .trim();
    if ts.is_empty() || ts.len() > 19 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::BadTimestamp);
    }
    let ts_s: u64 = ts.parse().map_err(|_| SignatureError::BadTimestamp)?;
    if ts_s.abs_diff(now_s) > max_skew.as_secs() {
        return Err(SignatureError::Stale);
    }
    let expected = sign(token, method, path, ts, body);
    // Gateways send lowercase hex; accept uppercase too, then compare in constant time.
    let presented = sig.trim_ascii().to_ascii_lowercase();
    if bool::from(expected.as_bytes().ct_eq(&presented)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW: Duration = Duration::from_secs(120);

    #[test]
    fn known_vector() {
        // Computed independently with Python's hmac and hashlib modules.
        assert_eq!(
            sign(b"k", "POST", "/execute", "1700000000", b""),
            "bd1b329f798dca70c72beac188d228ee61fec60f2ba325cc78b923f295d122bd"
        );
    }

    #[test]
    fn accepts_valid_and_refuses_the_rest() {
        let body = br#"{"sql":"SELECT 1"}"#;
        let now = 1_700_000_000u64;
        let ts = now.to_string();
        let sig = sign(b"tok", "POST", "/queries", &ts, body);
        let ok = |ts: &str, sig: &str, body: &[u8], now: u64| {
            verify(
                b"tok",
                "POST",
                "/queries",
                body,
                Some(ts.as_bytes()),
                Some(sig.as_bytes()),
                now,
                SKEW,
            )
        };
        assert_eq!(ok(&ts, &sig, body, now), Ok(()));
        assert_eq!(ok(&ts, &sig.to_uppercase(), body, now), Ok(()));
        assert_eq!(ok(&ts, &sig, body, now + 120), Ok(()));
        assert_eq!(ok(&ts, &sig, body, now + 121), Err(SignatureError::Stale));
        assert_eq!(ok(&ts, &sig, body, now - 121), Err(SignatureError::Stale));
        assert_eq!(
            ok(&ts, &sig, br#"{"sql":"SELECT 2"}"#, now),
            Err(SignatureError::Mismatch)
        );
        let mut tampered = sig.clone().into_bytes();
        tampered[0] = if tampered[0] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            ok(&ts, std::str::from_utf8(&tampered).unwrap(), body, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(ok("x1", &sig, body, now), Err(SignatureError::BadTimestamp));
        assert_eq!(ok("", &sig, body, now), Err(SignatureError::BadTimestamp));
        assert_eq!(
            verify(
                b"tok",
                "POST",
                "/queries",
                body,
                None,
                Some(b"x"),
                now,
                SKEW
            ),
            Err(SignatureError::Missing)
        );
        // Another path or method with the same signature fails.
        assert_eq!(
            verify(
                b"tok",
                "POST",
                "/execute",
                body,
                Some(ts.as_bytes()),
                Some(sig.as_bytes()),
                now,
                SKEW
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn not_required_accepts_anything() {
        let p = SignaturePolicy::default();
        assert_eq!(p.check(b"t", "GET", "/x", b"", None, None), Ok(()));
    }
}
