//! Credentials on Flight SQL calls: the user's API token as a bearer token
//! (`authorization: Bearer <token>` metadata, on every call), and the
//! `Handshake`'s basic auth (`authorization: Basic base64(user:token)`),
//! which answers the same token as the bearer token for later calls.
//!
//! Owns reading those headers. It never checks a credential itself (the
//! query path's [`crate::query::QueryService::authenticate`] and
//! `authenticate_user` do, against the store's snapshot), never logs one,
//! and mints no session of its own: the bearer token a handshake answers is
//! the API token the caller proved, so revoking it stops every call at once.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use tonic::metadata::MetadataMap;

/// Standard base64, padded or not: Go's Flight client (under ADBC) writes
/// basic credentials without padding, pyarrow with it.
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What an `authorization` header holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    Bearer(&'a str),
    Basic { user: String, password: String },
}

/// The call's `authorization` credential, if it has a well-formed one.
pub fn credential(md: &MetadataMap) -> Option<Credential<'_>> {
    let v = md.get("authorization")?.to_str().ok()?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Some(Credential::Bearer(rest));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = BASIC.decode(rest).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, password) = text.split_once(':')?;
        return Some(Credential::Basic {
            user: user.to_string(),
            password: password.to_string(),
        });
    }
    None
}

/// The bearer token of a call, if it sends one.
pub fn bearer(md: &MetadataMap) -> Option<&str> {
    match credential(md)? {
        Credential::Bearer(t) => Some(t),
        Credential::Basic { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(v: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", v.parse().unwrap());
        m
    }

    #[test]
    fn reads_bearer_and_basic() {
        assert_eq!(bearer(&md("Bearer gw_abc")), Some("gw_abc"));
        assert_eq!(bearer(&md("bearer  gw_abc ")), Some("gw_abc"));
        assert_eq!(bearer(&md("Bearer ")), None);
        assert_eq!(bearer(&MetadataMap::new()), None);
        let b = base64::engine::general_purpose::STANDARD.encode("ann:pa:ss");
        assert_eq!(
            credential(&md(&format!("Basic {b}"))),
            Some(Credential::Basic {
                user: "ann".into(),
                password: "pa:ss".into()
            })
        );
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode("ann:tok");
        assert_eq!(
            credential(&md(&format!("Basic {unpadded}"))),
            Some(Credential::Basic {
                user: "ann".into(),
                password: "tok".into()
            })
        );
        assert_eq!(credential(&md("Basic !!!")), None);
        assert_eq!(credential(&md("Digest x")), None);
    }
}
