//! `X-Agent-Token` check in constant time.
//!
//! Owns the comparison only; it never logs or echoes the token.

use subtle::ConstantTimeEq;

/// True when `presented` equals `expected`. The time taken depends only on the
/// lengths, never on where the first differing byte is.
pub fn token_matches(expected: &[u8], presented: Option<&[u8]>) -> bool {
    match presented {
        Some(p) => expected.ct_eq(p).into(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn compares() {
        assert!(token_matches(b"secret", Some(b"secret")));
        assert!(!token_matches(b"secret", Some(b"secreT")));
        assert!(!token_matches(b"secret", Some(b"secret2")));
        assert!(!token_matches(b"secret", Some(b"")));
        assert!(!token_matches(b"secret", None));
    }
}
