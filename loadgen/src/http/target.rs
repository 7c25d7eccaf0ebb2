//! The server under test: parsed once from `--url` into a socket address and
//! the Host header value. Only plain `http://` is supported; TLS would measure
//! the TLS stack, not the agent, and the agent speaks plain HTTP.

use std::net::{SocketAddr, ToSocketAddrs};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("only http:// URLs are supported, got {0:?}")]
    Scheme(String),
    #[error("URL {0:?} has no host")]
    NoHost(String),
    #[error("cannot resolve {0:?}")]
    Resolve(String),
}

#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// Value for the Host header ("127.0.0.1:9443").
    pub host: String,
    /// Path prefix from the URL ("" or "/agent"), prepended to every route.
    pub base_path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, TargetError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| TargetError::Scheme(url.to_string()))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(TargetError::NoHost(url.to_string()));
        }
        // Default port 80 unless the authority already names one (a bracketed
        // IPv6 literal contains colons of its own).
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty())
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| TargetError::Resolve(with_port.clone()))?;
        Ok(Target {
            addr,
            host: authority.to_string(),
            base_path: path.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        let t = Target::parse("http://127.0.0.1:9443").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9443".parse().unwrap());
        assert_eq!(
            (t.host.as_str(), t.base_path.as_str()),
            ("127.0.0.1:9443", "")
        );
        let t = Target::parse("http://127.0.0.1/agent/").unwrap();
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.base_path, "/agent");
        let t = Target::parse("http://[::1]:8080").unwrap();
        assert_eq!(t.addr, "[::1]:8080".parse().unwrap());
    }

    #[test]
    fn refuses_other_schemes_and_empty_hosts() {
        assert!(matches!(
            Target::parse("https://x:1"),
            Err(TargetError::Scheme(_))
        ));
        assert!(matches!(
            Target::parse("http:///x"),
            Err(TargetError::NoHost(_))
        ));
    }
}
