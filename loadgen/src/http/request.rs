//! Builds request bytes. Requests are assembled once per operation into one
//! buffer so each exchange is a single write; nothing here touches a socket.

use super::Target;

/// Prepared request bytes plus whether it is a HEAD request.
#[derive(Debug, Clone)]
pub struct RequestBytes {
    pub bytes: Vec<u8>,
    pub head: bool,
}

/// The credential a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth<'a> {
    /// `X-Agent-Token: <token>`: an agent's shared token.
    Agent(&'a str),
    /// `Authorization: Bearer <token>`: a gateway user's token.
    Bearer(&'a str),
}

/// Writes one HTTP/1.1 request with its credential header, if any;
/// a body is sent as JSON with its Content-Length.
pub fn build(
    target: &Target,
    method: &str,
    path: &str,
    auth: Option<Auth<'_>>,
    request_id: Option<&str>,
    body: Option<&[u8]>,
) -> RequestBytes {
    let mut out = Vec::with_capacity(128 + path.len() + body.map_or(0, <[u8]>::len));
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.base_path.as_bytes());
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(target.host.as_bytes());
    out.extend_from_slice(b"\r\nUser-Agent: loadgen\r\n");
    match auth {
        Some(Auth::Agent(t)) => {
            out.extend_from_slice(b"X-Agent-Token: ");
            out.extend_from_slice(t.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Some(Auth::Bearer(t)) => {
            out.extend_from_slice(b"Authorization: Bearer ");
            out.extend_from_slice(t.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        None => {}
    }
    if let Some(id) = request_id {
        out.extend_from_slice(b"X-Request-ID: ");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(b) = body {
        out.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
        out.extend_from_slice(b.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(b);
    } else if method == "POST" || method == "PUT" {
        out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    } else {
        out.extend_from_slice(b"\r\n");
    }
    RequestBytes {
        head: method == "HEAD",
        bytes: out,
    }
}

/// Percent-encodes a query parameter value (page tokens are base64, whose
/// `+`, `/` and `=` must not reach the server raw).
pub fn encode_query_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_post_with_token_and_body() {
        let t = Target::parse("http://127.0.0.1:1").unwrap();
        let r = build(
            &t,
            "POST",
            "/queries",
            Some(Auth::Agent("tok")),
            Some("rid-1"),
            Some(b"{\"sql\":\"SELECT 1\"}"),
        );
        let s = String::from_utf8(r.bytes).unwrap();
        assert!(s.starts_with("POST /queries HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"));
        assert!(s.contains("X-Agent-Token: tok\r\n"));
        assert!(s.contains("X-Request-ID: rid-1\r\n"));
        assert!(s.ends_with("Content-Length: 18\r\n\r\n{\"sql\":\"SELECT 1\"}"));
        assert!(!s.contains("Authorization"));
    }

    #[test]
    fn builds_gateway_query_with_bearer_token() {
        let t = Target::parse("http://127.0.0.1:1").unwrap();
        let r = build(
            &t,
            "POST",
            "/v1/query",
            Some(Auth::Bearer("gw_x")),
            None,
            Some(b"{}"),
        );
        let s = String::from_utf8(r.bytes).unwrap();
        assert!(s.starts_with("POST /v1/query HTTP/1.1\r\n"));
        assert!(s.contains("Authorization: Bearer gw_x\r\n"));
        assert!(!s.contains("X-Agent-Token"));
    }

    #[test]
    fn builds_bare_get() {
        let t = Target::parse("http://127.0.0.1:1/base").unwrap();
        let r = build(&t, "GET", "/health", None, None, None);
        assert_eq!(
            r.bytes,
            b"GET /base/health HTTP/1.1\r\nHost: 127.0.0.1:1\r\nUser-Agent: loadgen\r\n\r\n"
        );
    }

    #[test]
    fn encodes_base64_tokens() {
        assert_eq!(encode_query_value("MTAwMA=="), "MTAwMA%3D%3D");
        assert_eq!(encode_query_value("a+b/c"), "a%2Bb%2Fc");
    }
}
