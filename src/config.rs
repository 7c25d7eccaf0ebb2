//! Start-up configuration: every environment variable (each also a flag), parsed once
//! into the typed [`Config`].
//!
//! Owns the names, defaults and validation of settings. It never touches the network
//! or DuckDB; the only I/O is reading the `DUCKDB_INIT_SQL` file and resolving a
//! `LISTEN_ADDR` host name, both once at start-up on the main thread.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::duration::parse_go_duration;

/// Command line and environment, as text. Typed parsing happens in [`Config::from_args`]
/// so a bad value gives one line naming the variable instead of clap's usage dump.
#[derive(Debug, Parser)]
#[command(
    name = "compute-agent",
    version,
    about = "Compute agent: runs gateway-rewritten SQL on DuckDB over HTTP/JSON"
)]
pub struct Args {
    /// Shared token gateways send in X-Agent-Token (required).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "AGENT_TOKEN",
        hide_env_values = true
    )]
    pub agent_token: Option<String>,
    /// HTTP listen address: ":port" (all interfaces), "host:port" or "[v6]:port".
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "LISTEN_ADDR",
        default_value = ":9443"
    )]
    pub listen_addr: String,
    /// DuckDB max_memory in GB (DuckDB's own default when unset).
    #[arg(long, allow_hyphen_values = true, env = "MAX_MEMORY_GB")]
    pub max_memory_gb: Option<String>,
    /// Retention of terminal lifecycle jobs and their results (Go duration).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "QUERY_RESULT_TTL",
        default_value = "10m"
    )]
    pub query_result_ttl: String,
    /// How often expired jobs are dropped (Go duration).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "QUERY_CLEANUP_INTERVAL",
        default_value = "1m"
    )]
    pub query_cleanup_interval: String,
    /// DuckDB database file (in-memory when unset).
    #[arg(long, allow_hyphen_values = true, env = "DUCKDB_PATH")]
    pub duckdb_path: Option<PathBuf>,
    /// Number of shards (reactor threads, one DuckDB connection each) [default: cores available].
    #[arg(long, allow_hyphen_values = true, env = "SHARDS")]
    pub shards: Option<String>,
    /// DuckDB worker threads for the whole database (DuckDB's default when unset).
    #[arg(long, allow_hyphen_values = true, env = "DUCKDB_THREADS")]
    pub duckdb_threads: Option<String>,
    /// Queued jobs allowed before submits get 429 OVERLOADED (0 = unlimited).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "MAX_QUEUED_JOBS",
        default_value = "10000"
    )]
    pub max_queued_jobs: String,
    /// Largest encoded JSON result a job may keep; larger fails with RESULT_TOO_LARGE (0 = unlimited).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "MAX_RESULT_BYTES",
        default_value = "1073741824"
    )]
    pub max_result_bytes: String,
    /// File of SQL run on every shard connection at start (ATTACH, SET, LOAD, ...).
    #[arg(long, allow_hyphen_values = true, env = "DUCKDB_INIT_SQL")]
    pub duckdb_init_sql: Option<PathBuf>,
    /// Serve the /queries lifecycle routes; false answers them 404 so gateways use /execute.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "FEATURE_CURSOR_MODE",
        default_value = "true"
    )]
    pub feature_cursor_mode: String,
    /// Log level for the JSON logs on stderr: error, warn, info, debug or trace.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
}

/// The init SQL file, read once at start-up.
#[derive(Debug, Clone)]
pub struct InitSql {
    pub path: PathBuf,
    pub sql: String,
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub agent_token: String,
    pub listen_addr: SocketAddr,
    pub max_memory_gb: Option<f64>,
    pub result_ttl: Duration,
    pub cleanup_interval: Duration,
    pub duckdb_path: Option<PathBuf>,
    pub shards: usize,
    pub duckdb_threads: Option<usize>,
    pub max_queued_jobs: usize,
    pub max_result_bytes: usize,
    pub init_sql: Option<InitSql>,
    pub cursor_mode: bool,
    pub log_level: LogLevel,
}

/// A setting that stops start-up. Display is one line naming the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is required (the shared token gateways send in X-Agent-Token)")]
    Missing { var: &'static str },
    #[error("invalid {var}={value:?}: expected {expected}")]
    Invalid {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("invalid {var}={value:?}: {source}")]
    Duration {
        var: &'static str,
        value: String,
        source: crate::duration::DurationError,
    },
    #[error("invalid {var}={value:?}: cannot resolve host: {source}")]
    Resolve {
        var: &'static str,
        value: String,
        source: std::io::Error,
    },
    #[error("cannot read {var} file {path:?}: {source}")]
    Unreadable {
        var: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ConfigError {
    /// The environment variable the error is about.
    pub fn var(&self) -> &'static str {
        match self {
            ConfigError::Missing { var }
            | ConfigError::Invalid { var, .. }
            | ConfigError::Duration { var, .. }
            | ConfigError::Resolve { var, .. }
            | ConfigError::Unreadable { var, .. } => var,
        }
    }
}

fn invalid(var: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        var,
        value: value.to_string(),
        expected,
    }
}

impl Config {
    /// Validates every setting; the first bad one is reported.
    pub fn from_args(args: Args) -> Result<Config, ConfigError> {
        let agent_token = match args.agent_token {
            Some(t) if !t.is_empty() => t,
            _ => return Err(ConfigError::Missing { var: "AGENT_TOKEN" }),
        };
        let listen_addr = parse_listen_addr(&args.listen_addr)?;
        let max_memory_gb = match args.max_memory_gb.as_deref() {
            None => None,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(gb) if gb.is_finite() && gb > 0.0 => Some(gb),
                _ => {
                    return Err(invalid(
                        "MAX_MEMORY_GB",
                        v,
                        "a positive number of gigabytes, e.g. 4 or 0.5",
                    ))
                }
            },
        };
        let result_ttl = positive_duration("QUERY_RESULT_TTL", &args.query_result_ttl)?;
        let cleanup_interval =
            positive_duration("QUERY_CLEANUP_INTERVAL", &args.query_cleanup_interval)?;
        let shards = match args.shards.as_deref() {
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=1024).contains(&n) => n,
                _ => return Err(invalid("SHARDS", v, "an integer from 1 to 1024")),
            },
        };
        let duckdb_threads = match args.duckdb_threads.as_deref() {
            None => None,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Some(n),
                _ => return Err(invalid("DUCKDB_THREADS", v, "a positive integer")),
            },
        };
        let max_queued_jobs = args.max_queued_jobs.trim().parse::<usize>().map_err(|_| {
            invalid(
                "MAX_QUEUED_JOBS",
                &args.max_queued_jobs,
                "a non-negative integer (0 = unlimited)",
            )
        })?;
        let max_result_bytes = args.max_result_bytes.trim().parse::<usize>().map_err(|_| {
            invalid(
                "MAX_RESULT_BYTES",
                &args.max_result_bytes,
                "a non-negative integer of bytes (0 = unlimited)",
            )
        })?;
        let init_sql = match args.duckdb_init_sql {
            None => None,
            Some(path) => match std::fs::read_to_string(&path) {
                Ok(sql) => Some(InitSql { path, sql }),
                Err(source) => {
                    return Err(ConfigError::Unreadable {
                        var: "DUCKDB_INIT_SQL",
                        path,
                        source,
                    })
                }
            },
        };
        let cursor_mode = parse_go_bool(&args.feature_cursor_mode).ok_or_else(|| {
            invalid(
                "FEATURE_CURSOR_MODE",
                &args.feature_cursor_mode,
                "a boolean: true/false, 1/0, t/f",
            )
        })?;
        let log_level = match args.log_level.to_ascii_lowercase().as_str() {
            "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => {
                return Err(invalid(
                    "LOG_LEVEL",
                    &args.log_level,
                    "one of error, warn, info, debug, trace",
                ))
            }
        };
        Ok(Config {
            agent_token,
            listen_addr,
            max_memory_gb,
            result_ttl,
            cleanup_interval,
            duckdb_path: args.duckdb_path.filter(|p| !p.as_os_str().is_empty()),
            shards,
            duckdb_threads,
            max_queued_jobs,
            max_result_bytes,
            init_sql,
            cursor_mode,
            log_level,
        })
    }
}

fn positive_duration(var: &'static str, value: &str) -> Result<Duration, ConfigError> {
    match parse_go_duration(value.trim()) {
        Ok(d) if d.is_zero() => Err(invalid(
            var,
            value,
            "a positive Go duration such as 300ms, 1m30s or 2h",
        )),
        Ok(d) => Ok(d),
        Err(source) => Err(ConfigError::Duration {
            var,
            value: value.to_string(),
            source,
        }),
    }
}

/// Go's `strconv.ParseBool`: exactly these spellings.
pub fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's listen-address forms: ":9443" (all interfaces), "host:9443", "[::1]:9443".
/// An empty host means every IPv4 interface (0.0.0.0).
pub fn parse_listen_addr(value: &str) -> Result<SocketAddr, ConfigError> {
    const VAR: &str = "LISTEN_ADDR";
    const EXPECTED: &str = "\":port\", \"host:port\" or \"[ipv6]:port\"";
    let v = value.trim();
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or_else(|| invalid(VAR, value, EXPECTED))?;
        (h, p)
    } else {
        let (h, p) = v
            .rsplit_once(':')
            .ok_or_else(|| invalid(VAR, value, EXPECTED))?;
        if h.contains(':') {
            // A bare IPv6 address needs brackets, as in Go.
            return Err(invalid(VAR, value, EXPECTED));
        }
        (h, p)
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(VAR, value, EXPECTED));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(VAR, value, "a port from 0 to 65535"))?;
    if host.is_empty() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        if v.starts_with('[') != ip.is_ipv6() {
            return Err(invalid(VAR, value, EXPECTED));
        }
        return Ok(SocketAddr::new(ip, port));
    }
    let mut addrs = (host, port)
        .to_socket_addrs()
        .map_err(|source| ConfigError::Resolve {
            var: VAR,
            value: value.to_string(),
            source,
        })?;
    addrs.next().ok_or_else(|| invalid(VAR, value, EXPECTED))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["compute-agent", "--agent-token", "t"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).expect("args parse")
    }

    #[test]
    fn listen_addr_forms() {
        assert_eq!(
            parse_listen_addr(":9443").unwrap(),
            "0.0.0.0:9443".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("127.0.0.1:80").unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("[::1]:8080").unwrap(),
            "[::1]:8080".parse().unwrap()
        );
        assert_eq!(parse_listen_addr("localhost:81").unwrap().port(), 81);
        for bad in [
            "",
            "9443",
            ":",
            ":x",
            ":70000",
            "::1:80",
            "[::1]80",
            "[127.0.0.1]:80",
            "1.2.3.4:",
        ] {
            assert!(parse_listen_addr(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn go_bools() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Some(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Some(false));
        }
        for bad in ["yes", "tRuE", "", "2"] {
            assert_eq!(parse_go_bool(bad), None);
        }
    }

    #[test]
    fn defaults() {
        let c = Config::from_args(args(&[])).unwrap();
        assert_eq!(c.listen_addr, "0.0.0.0:9443".parse().unwrap());
        assert_eq!(c.result_ttl, Duration::from_secs(600));
        assert_eq!(c.cleanup_interval, Duration::from_secs(60));
        assert!(c.cursor_mode);
        assert!(c.shards >= 1);
        assert_eq!(c.max_memory_gb, None);
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&[&str], &str)] = &[
            (&["--query-result-ttl", "5"], "QUERY_RESULT_TTL"),
            (
                &["--query-cleanup-interval", "0s"],
                "QUERY_CLEANUP_INTERVAL",
            ),
            (&["--shards", "0"], "SHARDS"),
            (&["--max-memory-gb", "-1"], "MAX_MEMORY_GB"),
            (&["--feature-cursor-mode", "yes"], "FEATURE_CURSOR_MODE"),
            (&["--listen-addr", "nope"], "LISTEN_ADDR"),
            (&["--max-queued-jobs", "-3"], "MAX_QUEUED_JOBS"),
            (
                &["--duckdb-init-sql", "/nonexistent/init.sql"],
                "DUCKDB_INIT_SQL",
            ),
        ];
        for (extra, var) in cases {
            let err = Config::from_args(args(extra)).unwrap_err();
            assert_eq!(err.var(), *var);
            let line = err.to_string();
            assert!(line.contains(var) && !line.contains('\n'), "{line}");
        }
        let err = Config::from_args(Args::try_parse_from(["compute-agent"]).unwrap()).unwrap_err();
        assert_eq!(err.var(), "AGENT_TOKEN");
    }
}
