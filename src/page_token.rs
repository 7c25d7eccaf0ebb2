//! Page tokens and paging parameters of `GET /queries/{id}/results`.
//!
//! A token is standard base64 of the decimal row offset ("MTAwMA==" = 1000): the form
//! existing gateways already hold, so it is both what we accept and what we emit.
//! Owns only parsing/formatting; it never looks at a job.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

/// Rows per page when `max_results` is absent.
pub const DEFAULT_PAGE_SIZE: usize = 1000;
/// Largest page; bigger `max_results` values are capped to this.
pub const MAX_PAGE_SIZE: usize = 5000;

/// Standard alphabet; padding optional on input (some clients strip it), present on output.
const TOKEN_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a paging parameter was rejected (answered with 400 VALIDATION_ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    #[error("invalid page_token")]
    BadToken,
    #[error("invalid max_results: expected a positive integer")]
    BadMaxResults,
}

/// Encodes a row offset as a page token.
pub fn encode(offset: usize) -> String {
    TOKEN_B64.encode(itoa::Buffer::new().format(offset))
}

/// Decodes a page token; absent or empty means the first row.
pub fn decode(token: Option<&str>) -> Result<usize, PagingError> {
    let token = match token {
        None | Some("") => return Ok(0),
        Some(t) => t,
    };
    if token.len() > 64 {
        return Err(PagingError::BadToken);
    }
    let raw = TOKEN_B64.decode(token).map_err(|_| PagingError::BadToken)?;
    if raw.is_empty() || raw.len() > 20 || !raw.iter().all(u8::is_ascii_digit) {
        return Err(PagingError::BadToken);
    }
    std::str::from_utf8(&raw)
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .ok_or(PagingError::BadToken)
}

/// Parses `max_results`: absent/empty gives the default, above the cap is capped,
/// zero, negative or non-numeric is an error.
pub fn page_size(param: Option<&str>) -> Result<usize, PagingError> {
    match param {
        None | Some("") => Ok(DEFAULT_PAGE_SIZE),
        Some(s) => {
            if !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(PagingError::BadMaxResults);
            }
            // All digits: an overflowing value is simply "very large" and gets capped.
            match s.parse::<u64>() {
                Ok(0) => Err(PagingError::BadMaxResults),
                Ok(n) => Ok(n.min(MAX_PAGE_SIZE as u64) as usize),
                Err(_) => Ok(MAX_PAGE_SIZE),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_gateway_tokens() {
        assert_eq!(encode(1000), "MTAwMA==");
        assert_eq!(decode(Some("MTAwMA==")), Ok(1000));
        assert_eq!(decode(Some("MTAwMA")), Ok(1000));
        assert_eq!(decode(None), Ok(0));
        assert_eq!(decode(Some("")), Ok(0));
        for off in [0usize, 1, 5000, 123_456_789] {
            assert_eq!(decode(Some(&encode(off))), Ok(off));
        }
    }

    #[test]
    fn bad_tokens() {
        for bad in [
            "!!", "abc", "LTE=", /* "-1" */
            "MWE=", /* "1a" */
            "IA==", /* " " */
        ] {
            assert_eq!(decode(Some(bad)), Err(PagingError::BadToken), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(page_size(None), Ok(1000));
        assert_eq!(page_size(Some("")), Ok(1000));
        assert_eq!(page_size(Some("10")), Ok(10));
        assert_eq!(page_size(Some("9000")), Ok(5000));
        assert_eq!(page_size(Some("99999999999999999999999")), Ok(5000));
        for bad in ["0", "-1", "x", "1.5", " 1"] {
            assert_eq!(
                page_size(Some(bad)),
                Err(PagingError::BadMaxResults),
                "{bad}"
            );
        }
    }
}
