//! Start-up configuration: every environment variable (each also a flag), parsed once
//! into the typed [`Config`].
//!
//! Owns the names, defaults and validation of settings. It never touches the network
//! or DuckDB; the only I/O is reading the `DUCKDB_INIT_SQL` file and resolving a
//! `LISTEN_ADDR` host name, both once at start-up on the main thread.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::ops::RangeBounds;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};
use executor::{SqlThreadPolicy, TimeZone};
use net::ReactorPriority;

use crate::duration::parse_go_duration;

/// One setting: its variable, flag, default and help line. One table drives clap's
/// builder API, so a name, its default and its help cannot drift apart.
struct Setting {
    var: &'static str,
    flag: &'static str,
    default: Option<&'static str>,
    help: &'static str,
}

const SETTINGS: &[Setting] = &[
    Setting {
        var: "AGENT_TOKEN",
        flag: "agent-token",
        default: None,
        help: "Shared token gateways send in X-Agent-Token (required)",
    },
    Setting {
        var: "LISTEN_ADDR",
        flag: "listen-addr",
        default: Some(":9443"),
        help: "HTTP listen address: \":port\" (all interfaces), \"host:port\" or \"[v6]:port\"",
    },
    Setting {
        var: "MAX_MEMORY_GB",
        flag: "max-memory-gb",
        default: None,
        help: "DuckDB max_memory in GB (DuckDB's own default when unset)",
    },
    Setting {
        var: "QUERY_RESULT_TTL",
        flag: "query-result-ttl",
        default: Some("10m"),
        help:
            "Retention of terminal lifecycle jobs and their results (Go duration: 300ms, 1m30s, 2h)",
    },
    Setting {
        var: "QUERY_CLEANUP_INTERVAL",
        flag: "query-cleanup-interval",
        default: Some("1m"),
        help: "How often expired jobs are dropped (Go duration)",
    },
    Setting {
        var: "DUCKDB_PATH",
        flag: "duckdb-path",
        default: None,
        help: "DuckDB database file (in-memory when unset)",
    },
    Setting {
        var: "SHARDS",
        flag: "shards",
        default: None,
        help: "Shards: reactor threads with one DuckDB connection each [default: cores available]",
    },
    Setting {
        var: "DUCKDB_THREADS",
        flag: "duckdb-threads",
        default: None,
        help: "DuckDB worker threads for the whole database (DuckDB's default when unset)",
    },
    Setting {
        var: "DUCKDB_TIME_ZONE",
        flag: "duckdb-time-zone",
        default: Some("UTC"),
        help: "DuckDB's TimeZone: the zone TIMESTAMPTZ values are shown in and current_date, date_trunc and casts compute in (an IANA name such as Europe/Amsterdam); applied at open, before DUCKDB_INIT_SQL",
    },
    Setting {
        var: "MAX_QUEUED_JOBS",
        flag: "max-queued-jobs",
        default: Some("10000"),
        help: "Queued jobs allowed before requests get 429 OVERLOADED (0 = unlimited)",
    },
    Setting {
        var: "MAX_RESULT_BYTES",
        flag: "max-result-bytes",
        default: Some("1073741824"),
        help: "Largest encoded JSON result; larger fails with RESULT_TOO_LARGE (0 = unlimited)",
    },
    Setting {
        var: "MAX_CONCURRENT_QUERIES",
        flag: "max-concurrent-queries",
        default: None,
        help: "Statements running at once, agent total, spread over shards (each gets its share of DuckDB connections); beyond it work stays QUEUED [default: 4 per shard]",
    },
    Setting {
        var: "QUERY_TIMEOUT",
        flag: "query-timeout",
        default: Some("0s"),
        help: "Longest a statement may take, queue time included; past it it ends FAILED with QUERY_TIMEOUT (Go duration; 0s = off). Caps a request's timeout_ms",
    },
    Setting {
        var: "MAX_RETAINED_BYTES",
        flag: "max-retained-bytes",
        default: Some("4294967296"),
        help: "Total bytes of retained job results; when full, submits get 429 and a result that does not fit fails with RESULT_TOO_LARGE (0 = unlimited)",
    },
    Setting {
        var: "MAX_SQL_BYTES",
        flag: "max-sql-bytes",
        default: Some("262144"),
        help: "Longest SQL text accepted; longer gets 400 VALIDATION_ERROR (0 = unlimited)",
    },
    Setting {
        var: "MAX_SQL_NESTING",
        flag: "max-sql-nesting",
        default: Some("256"),
        help: "Deepest nesting of (, [ and { accepted, string literals included; deeper gets 400 VALIDATION_ERROR (1-1000)",
    },
    Setting {
        var: "ALLOWED_PATHS",
        flag: "allowed-paths",
        default: None,
        help: "Comma-separated absolute paths SQL may read and write (a directory, ending in / or existing, allows everything below it); all other file and network access by SQL is off",
    },
    Setting {
        var: "DUCKDB_INIT_SQL",
        flag: "duckdb-init-sql",
        default: None,
        help: "File of SQL run on every shard connection at start (ATTACH, SET, LOAD, ...)",
    },
    Setting {
        var: "FEATURE_CURSOR_MODE",
        flag: "feature-cursor-mode",
        default: Some("true"),
        help:
            "Serve the /queries lifecycle routes; false answers them 404 so gateways use /execute",
    },
    Setting {
        var: "REACTOR_PRIORITY",
        flag: "reactor-priority",
        default: Some("auto"),
        help: "Reactor threads' CPU scheduling: auto (real-time SCHED_FIFO when permitted), realtime (required), normal",
    },
    Setting {
        var: "SQL_THREAD_NICE",
        flag: "sql-thread-nice",
        default: Some("10"),
        help: "Nice value (0-19) of the threads that run SQL; reactors keep the process's",
    },
    Setting {
        var: "SQL_THREAD_POLICY",
        flag: "sql-thread-policy",
        default: Some(executor::DEFAULT_SQL_THREAD_POLICY.name()),
        help: "Scheduling of the threads that run SQL: idle (Linux SCHED_IDLE: any other task that wakes preempts them at once) or normal (their nice value only)",
    },
    Setting {
        var: "REQUIRE_SIGNED_REQUESTS",
        flag: "require-signed-requests",
        default: Some("false"),
        help: "Refuse (401) authenticated requests without a valid X-Agent-Signature (HMAC-SHA256 keyed by the token)",
    },
    Setting {
        var: "SIGNATURE_MAX_SKEW",
        flag: "signature-max-skew",
        default: Some("2m"),
        help: "Largest difference between X-Agent-Timestamp and the agent's clock (Go duration)",
    },
    Setting {
        var: "LOG_LEVEL",
        flag: "log-level",
        default: Some("info"),
        help: "Level of the JSON logs on stderr: error, warn, info, debug or trace",
    },
];

/// The command line definition: one flag per setting, each falling back to its
/// environment variable, then to its default.
pub fn command() -> Command {
    let mut cmd = Command::new("compute-agent")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Compute agent: runs gateway-rewritten SQL on DuckDB over HTTP/JSON");
    for s in SETTINGS {
        let mut arg = Arg::new(s.var)
            .long(s.flag)
            .env(s.var)
            .value_name(s.var)
            .help(s.help)
            .action(ArgAction::Set)
            // Let "-5s" reach our own validation (one clear line) instead of clap's.
            .allow_hyphen_values(true);
        if let Some(d) = s.default {
            arg = arg.default_value(d);
        }
        if s.var == "AGENT_TOKEN" {
            arg = arg.hide_env_values(true);
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

/// Command line and environment, as text. Typed parsing happens in [`Config::from_args`]
/// so a bad value gives one line naming the variable instead of clap's usage dump.
#[derive(Debug, Default, Clone)]
pub struct Args {
    values: Vec<(&'static str, String)>,
}

impl Args {
    /// Parses the process's arguments and environment; `--help`, `--version` and
    /// unknown flags are handled (and exit) the usual clap way.
    pub fn parse() -> Args {
        Args::from_matches(&command().get_matches())
    }

    /// Parses the given arguments (first = program name) and the environment.
    pub fn try_parse_from<I, T>(args: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Ok(Args::from_matches(&command().try_get_matches_from(args)?))
    }

    fn from_matches(m: &ArgMatches) -> Args {
        let values = SETTINGS
            .iter()
            .filter_map(|s| {
                // Like Go's os.Getenv, an empty variable means "unset": use the default.
                let v = m
                    .get_one::<String>(s.var)
                    .filter(|v| !v.is_empty())
                    .cloned();
                v.or_else(|| s.default.map(String::from))
                    .map(|v| (s.var, v))
            })
            .collect();
        Args { values }
    }

    /// The value of a setting (flag, else environment, else default).
    pub fn get(&self, var: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.as_str())
    }

    fn req(&self, var: &str) -> &str {
        // Every setting read with req() has a default, so clap always fills it.
        self.get(var).unwrap_or_default()
    }
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
    /// `DUCKDB_TIME_ZONE`, checked for shape; DuckDB checks the zone exists.
    pub time_zone: TimeZone,
    pub max_queued_jobs: usize,
    pub max_result_bytes: usize,
    /// `None`: the executor's default (per shard).
    pub max_concurrent_queries: Option<usize>,
    pub query_timeout: Option<Duration>,
    pub max_retained_bytes: usize,
    pub max_sql_bytes: usize,
    pub max_sql_nesting: usize,
    pub allowed_paths: Vec<PathBuf>,
    pub init_sql: Option<InitSql>,
    pub cursor_mode: bool,
    pub reactor_priority: ReactorPriority,
    pub sql_thread_nice: i32,
    pub sql_thread_policy: SqlThreadPolicy,
    pub log_level: LogLevel,
    /// `REQUIRE_SIGNED_REQUESTS` and `SIGNATURE_MAX_SKEW`.
    pub signature: crate::signature::SignaturePolicy,
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
        let agent_token = match args.get("AGENT_TOKEN") {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => return Err(ConfigError::Missing { var: "AGENT_TOKEN" }),
        };
        let listen_addr = parse_listen_addr(args.req("LISTEN_ADDR"))?;
        let max_memory_gb = match args.get("MAX_MEMORY_GB") {
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
        let result_ttl = positive_duration("QUERY_RESULT_TTL", args.req("QUERY_RESULT_TTL"))?;
        let cleanup_interval =
            positive_duration("QUERY_CLEANUP_INTERVAL", args.req("QUERY_CLEANUP_INTERVAL"))?;
        let shards = args
            .get("SHARDS")
            .map(|v| int_in("SHARDS", v, 1..=1024, "an integer from 1 to 1024"))
            .transpose()?
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let duckdb_threads = args
            .get("DUCKDB_THREADS")
            .map(|v| int_in("DUCKDB_THREADS", v, 1.., "a positive integer"))
            .transpose()?;
        let time_zone = TimeZone::parse(args.req("DUCKDB_TIME_ZONE")).map_err(|_| {
            invalid(
                "DUCKDB_TIME_ZONE",
                args.req("DUCKDB_TIME_ZONE"),
                "a time zone name such as UTC or Europe/Amsterdam (1 to 64 ASCII letters, digits and / _ + - : .)",
            )
        })?;
        let max_queued_jobs = int_in(
            "MAX_QUEUED_JOBS",
            args.req("MAX_QUEUED_JOBS"),
            ..,
            "a non-negative integer (0 = unlimited)",
        )?;
        let max_result_bytes = int_in(
            "MAX_RESULT_BYTES",
            args.req("MAX_RESULT_BYTES"),
            ..,
            "a non-negative integer of bytes (0 = unlimited)",
        )?;
        let max_concurrent_queries = args
            .get("MAX_CONCURRENT_QUERIES")
            .filter(|v| !v.is_empty())
            .map(|v| {
                int_in(
                    "MAX_CONCURRENT_QUERIES",
                    v,
                    shards..=65_536,
                    "an integer from the shard count (each shard runs at least one statement) to 65536",
                )
            })
            .transpose()?;
        let query_timeout = optional_duration("QUERY_TIMEOUT", args.req("QUERY_TIMEOUT"))?;
        let max_retained_bytes = int_in(
            "MAX_RETAINED_BYTES",
            args.req("MAX_RETAINED_BYTES"),
            ..,
            "a non-negative integer of bytes (0 = unlimited)",
        )?;
        let max_sql_bytes = int_in(
            "MAX_SQL_BYTES",
            args.req("MAX_SQL_BYTES"),
            ..,
            "a non-negative integer of bytes (0 = unlimited)",
        )?;
        let max_sql_nesting = int_in(
            "MAX_SQL_NESTING",
            args.req("MAX_SQL_NESTING"),
            1..=MAX_SQL_NESTING_CEILING,
            "an integer from 1 to 1000",
        )?;
        let allowed_paths = match args.get("ALLOWED_PATHS") {
            None => Vec::new(),
            Some(v) => parse_allowed_paths(v)?,
        };
        let init_sql = match args
            .get("DUCKDB_INIT_SQL")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
        {
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
        let cursor_mode = parse_go_bool(args.req("FEATURE_CURSOR_MODE")).ok_or_else(|| {
            invalid(
                "FEATURE_CURSOR_MODE",
                args.req("FEATURE_CURSOR_MODE"),
                "a boolean: true/false, 1/0, t/f",
            )
        })?;
        let reactor_priority = one_of(
            "REACTOR_PRIORITY",
            args.req("REACTOR_PRIORITY"),
            &[
                ("auto", ReactorPriority::RealtimeIfPermitted),
                ("realtime", ReactorPriority::Realtime),
                ("normal", ReactorPriority::Normal),
            ],
            "one of auto, realtime, normal",
        )?;
        let sql_thread_nice = int_in(
            "SQL_THREAD_NICE",
            args.req("SQL_THREAD_NICE"),
            0..=19,
            "an integer from 0 to 19",
        )?;
        let policies = SqlThreadPolicy::ALL.map(|p| (p.name(), p));
        let sql_thread_policy = one_of(
            "SQL_THREAD_POLICY",
            args.req("SQL_THREAD_POLICY"),
            &policies,
            "one of idle, normal",
        )?;
        let log_level = one_of(
            "LOG_LEVEL",
            args.req("LOG_LEVEL"),
            &[
                ("error", LogLevel::Error),
                ("warn", LogLevel::Warn),
                ("warning", LogLevel::Warn),
                ("info", LogLevel::Info),
                ("debug", LogLevel::Debug),
                ("trace", LogLevel::Trace),
            ],
            "one of error, warn, info, debug, trace",
        )?;
        let signature = crate::signature::SignaturePolicy {
            required: parse_go_bool(args.req("REQUIRE_SIGNED_REQUESTS")).ok_or_else(|| {
                invalid(
                    "REQUIRE_SIGNED_REQUESTS",
                    args.req("REQUIRE_SIGNED_REQUESTS"),
                    "a boolean: true/false, 1/0, t/f",
                )
            })?,
            max_skew: positive_duration("SIGNATURE_MAX_SKEW", args.req("SIGNATURE_MAX_SKEW"))?,
        };
        Ok(Config {
            agent_token,
            listen_addr,
            max_memory_gb,
            result_ttl,
            cleanup_interval,
            duckdb_path: args
                .get("DUCKDB_PATH")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            shards,
            duckdb_threads,
            time_zone,
            max_queued_jobs,
            max_result_bytes,
            max_concurrent_queries,
            query_timeout,
            max_retained_bytes,
            max_sql_bytes,
            max_sql_nesting,
            allowed_paths,
            init_sql,
            cursor_mode,
            reactor_priority,
            sql_thread_nice,
            sql_thread_policy,
            log_level,
            signature,
        })
    }
}

/// The highest `MAX_SQL_NESTING` allowed: DuckDB's own `max_expression_depth`
/// (1000, locked) stops deeper text anyway (`docs/runbook.md`, "SQL bounds").
pub const MAX_SQL_NESTING_CEILING: usize = 1000;

/// `ALLOWED_PATHS`: comma-separated absolute paths (empty entries ignored).
fn parse_allowed_paths(value: &str) -> Result<Vec<PathBuf>, ConfigError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            if p.starts_with('/') {
                Ok(PathBuf::from(p))
            } else {
                Err(invalid(
                    "ALLOWED_PATHS",
                    value,
                    "comma-separated absolute paths, e.g. /srv/data/,/srv/extra.parquet",
                ))
            }
        })
        .collect()
}

/// Removes the token from the process environment once it has been read, so
/// nothing that reads the environment later (an extension, a child process,
/// a crash report) finds it. The token's bytes in the environment block the
/// kernel set up are overwritten first: `/proc/<pid>/environ` shows that
/// block, and unsetting a variable does not change it. Call on the main
/// thread before any other thread starts (`setenv`/`unsetenv` are not
/// thread-safe).
pub fn scrub_token_from_environment() {
    const VAR: &std::ffi::CStr = c"AGENT_TOKEN";
    // SAFETY: single-threaded (caller contract). getenv returns null or a
    // pointer to the NUL-terminated value inside the environment, which is
    // writable process memory (the initial block on the stack, or a
    // setenv copy); we overwrite its bytes in place, keeping the NUL.
    unsafe {
        let value = libc::getenv(VAR.as_ptr());
        if !value.is_null() {
            let len = libc::strlen(value);
            std::ptr::write_bytes(value, b'*', len);
        }
    }
    std::env::remove_var("AGENT_TOKEN");
}

/// An integer setting that must lie in `range`.
fn int_in<T>(
    var: &'static str,
    value: &str,
    range: impl RangeBounds<T>,
    expected: &'static str,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd,
{
    match value.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(invalid(var, value, expected)),
    }
}

/// A setting that names one of `choices` (case-insensitive).
fn one_of<T: Copy>(
    var: &'static str,
    value: &str,
    choices: &[(&str, T)],
    expected: &'static str,
) -> Result<T, ConfigError> {
    choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(value))
        .map(|(_, v)| *v)
        .ok_or_else(|| invalid(var, value, expected))
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

/// A Go duration where zero means "off".
fn optional_duration(var: &'static str, value: &str) -> Result<Option<Duration>, ConfigError> {
    match parse_go_duration(value.trim()) {
        Ok(d) if d.is_zero() => Ok(None),
        Ok(d) => Ok(Some(d)),
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
        // The help table's defaults are the executor's constants, spelled for --help.
        assert_eq!(c.result_ttl, executor::DEFAULT_RESULT_TTL);
        assert_eq!(c.cleanup_interval, executor::DEFAULT_CLEANUP_INTERVAL);
        assert_eq!(c.max_queued_jobs, executor::DEFAULT_MAX_QUEUED_JOBS);
        assert_eq!(c.max_result_bytes, executor::DEFAULT_MAX_RESULT_BYTES);
        assert_eq!(c.max_concurrent_queries, None);
        assert_eq!(c.query_timeout, None);
        assert!(c.cursor_mode);
        assert!(c.shards >= 1);
        assert_eq!(c.max_memory_gb, None);
        assert_eq!(c.reactor_priority, ReactorPriority::RealtimeIfPermitted);
        assert_eq!(c.sql_thread_nice, executor::DEFAULT_SQL_THREAD_NICE);
        assert_eq!(c.sql_thread_policy, executor::DEFAULT_SQL_THREAD_POLICY);
        assert!(!c.signature.required);
        assert_eq!(c.signature.max_skew, Duration::from_secs(120));
        // One constant per default: the flag's default text is the executor's.
        assert_eq!(c.max_sql_bytes, executor::DEFAULT_MAX_SQL_BYTES);
        assert_eq!(c.max_sql_nesting, executor::DEFAULT_MAX_SQL_NESTING);
        assert!(c.allowed_paths.is_empty());
        assert_eq!(c.time_zone, TimeZone::utc());
        let amsterdam =
            Config::from_args(args(&["--duckdb-time-zone", "Europe/Amsterdam"])).unwrap();
        assert_eq!(amsterdam.time_zone.as_str(), "Europe/Amsterdam");
    }

    #[test]
    fn allowed_paths() {
        let c = Config::from_args(args(&["--allowed-paths", "/srv/data/, /srv/x.csv,"])).unwrap();
        assert_eq!(
            c.allowed_paths,
            vec![PathBuf::from("/srv/data/"), PathBuf::from("/srv/x.csv")]
        );
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
            (&["--reactor-priority", "high"], "REACTOR_PRIORITY"),
            (&["--sql-thread-nice", "-5"], "SQL_THREAD_NICE"),
            (&["--sql-thread-nice", "20"], "SQL_THREAD_NICE"),
            (&["--sql-thread-policy", "batch"], "SQL_THREAD_POLICY"),
            (&["--query-timeout", "soon"], "QUERY_TIMEOUT"),
            (&["--query-timeout", "-1s"], "QUERY_TIMEOUT"),
            (
                &["--shards", "2", "--max-concurrent-queries", "1"],
                "MAX_CONCURRENT_QUERIES",
            ),
            (&["--max-concurrent-queries", "x"], "MAX_CONCURRENT_QUERIES"),
            (&["--max-retained-bytes", "-1"], "MAX_RETAINED_BYTES"),
            (&["--max-sql-bytes", "-1"], "MAX_SQL_BYTES"),
            (&["--max-sql-nesting", "0"], "MAX_SQL_NESTING"),
            (&["--max-sql-nesting", "1001"], "MAX_SQL_NESTING"),
            (&["--allowed-paths", "relative/dir"], "ALLOWED_PATHS"),
            (
                &["--duckdb-time-zone", "Europe/Amst'erdam"],
                "DUCKDB_TIME_ZONE",
            ),
            (
                &["--require-signed-requests", "yes"],
                "REQUIRE_SIGNED_REQUESTS",
            ),
            (&["--signature-max-skew", "0s"], "SIGNATURE_MAX_SKEW"),
            (&["--signature-max-skew", "2 minutes"], "SIGNATURE_MAX_SKEW"),
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

    #[test]
    fn pool_and_timeout_settings() {
        let c = Config::from_args(args(&[
            "--shards",
            "2",
            "--max-concurrent-queries",
            "6",
            "--query-timeout",
            "1m30s",
        ]))
        .unwrap();
        assert_eq!(c.max_concurrent_queries, Some(6));
        assert_eq!(c.query_timeout, Some(Duration::from_secs(90)));
        let off = Config::from_args(args(&["--query-timeout", "0s"])).unwrap();
        assert_eq!(off.query_timeout, None);
    }
}
