//! The gateway's settings, parsed once at start-up into [`Config`]: each setting
//! is a flag with an environment fallback and a default, all listed by
//! `compute-gateway --help`.
//!
//! Owns every default and the validation of every value; a bad value stops
//! start-up with a message naming the variable. It never opens a file, a
//! socket or a database (the binary does that with the parsed values).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};
use client::local::TimeZone;
use client::resolver::config::parse_go_bool;
use client::resolver::RolloutDefaults;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}={value:?}: expected {expected}")]
    Invalid {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("rollout settings: {0}")]
    Rollout(#[from] client::resolver::ConfigError),
    #[error("{0}")]
    Usage(String),
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

/// Everything the gateway is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    /// `sqlite:<path>`, `sqlite::memory:` or `postgres://...`.
    pub database_url: String,
    /// Local compute's DuckDB file; in-memory when `None`.
    pub duckdb_path: Option<PathBuf>,
    /// Open `duckdb_path` read-only (several processes may then share it).
    pub duckdb_read_only: bool,
    /// Local compute's DuckDB `TimeZone` (checked for shape here, for
    /// existence by DuckDB when the database opens).
    pub duckdb_time_zone: TimeZone,
    /// The bootstrap admin's bearer token (`None`: no bootstrap).
    pub admin_token: Option<String>,
    /// The bootstrap admin's user name.
    pub admin_user: String,
    /// The catalog unqualified names belong to; `None`: the local engine's
    /// `current_database()`.
    pub default_catalog: Option<String>,
    pub rollout: RolloutDefaults,
    /// Longest a query may run, pages included.
    pub query_timeout: Duration,
    /// Jobs one user may hold at once; jobs held at once in all.
    pub max_jobs_per_user: usize,
    pub max_jobs_total: usize,
    /// How long a finished job (and its unread rows) is kept.
    pub job_ttl: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Longest a client may take to send its request head and body.
    pub request_timeout: Duration,
    /// How long an engine's table list is trusted.
    pub catalog_ttl: Duration,
    /// How often the store is re-read (changes made by other gateways).
    pub store_refresh: Duration,
    pub log_level: LogLevel,
    /// Threads that serve HTTP and run the query path: 1 is a current-thread
    /// runtime (no cross-thread wake-ups per request), more a work-stealing
    /// runtime with that many workers.
    pub worker_threads: usize,
    /// The certificate chain and key every door serves TLS with; `None`:
    /// plain connections only.
    pub tls: Option<TlsFiles>,
    /// How often the TLS files are checked for a change (SIGHUP reloads at once).
    pub tls_reload: Duration,
    /// How long in-flight queries may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// The PostgreSQL wire door's address; `None`: off.
    pub pgwire_addr: Option<SocketAddr>,
    /// Whether the PostgreSQL door takes a password over a plain (not TLS)
    /// connection from a loopback address.
    pub pgwire_plain_loopback: bool,
    /// How agents are probed and called (`ca_pem` is filled by the binary
    /// from `agent_ca_file`).
    pub agents: crate::store::AgentLinks,
    /// The CA file `https://` agents must chain to; `None`: the system bundle.
    pub agent_ca_file: Option<PathBuf>,
    /// Slots per agent and the queue for them.
    pub admission: crate::query::admission::AdmissionSettings,
    /// How long query history is kept; `None`: no history.
    pub query_history: Option<Duration>,
    // --- Flight SQL door (src/flight) ---
    /// Where the Arrow Flight SQL door listens; `None`: off.
    pub flight_addr: Option<SocketAddr>,
}

/// The PEM files of the TLS certificate chain and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

struct Setting {
    var: &'static str,
    flag: &'static str,
    default: Option<&'static str>,
    help: &'static str,
}

/// One source for every setting: its variable, flag, default and help.
const SETTINGS: &[Setting] = &[
    Setting { var: "LISTEN_ADDR", flag: "listen-addr", default: Some("127.0.0.1:8080"), help: "Address the HTTP API listens on (host:port)" },
    Setting { var: "DATABASE_URL", flag: "database-url", default: Some("sqlite:./gateway.db"), help: "The gateway's store: sqlite:<path>, sqlite::memory: or postgres://user:pass@host:port/db" },
    Setting { var: "DUCKDB_PATH", flag: "duckdb-path", default: None, help: "Local compute's DuckDB file (in-memory when unset)" },
    Setting { var: "DUCKDB_READ_ONLY", flag: "duckdb-read-only", default: Some("false"), help: "Open DUCKDB_PATH read-only, so agents may open the same file read-only too" },
    Setting { var: "DUCKDB_TIME_ZONE", flag: "duckdb-time-zone", default: Some("UTC"), help: "Local compute's DuckDB TimeZone: the zone TIMESTAMPTZ values are shown in and current_date, date_trunc and casts compute in (an IANA name such as Europe/Amsterdam); keep it the agents' DUCKDB_TIME_ZONE" },
    Setting { var: "GATEWAY_ADMIN_TOKEN", flag: "admin-token", default: None, help: "Bearer token of the bootstrap admin (created or updated at start)" },
    Setting { var: "GATEWAY_ADMIN_USER", flag: "admin-user", default: Some("admin"), help: "User name of the bootstrap admin" },
    Setting { var: "DEFAULT_CATALOG", flag: "default-catalog", default: None, help: "Catalog of unqualified table names; must be the engines' default database name [default: the local DuckDB's current_database()]" },
    Setting { var: "QUERY_TIMEOUT", flag: "query-timeout", default: Some("5m"), help: "Longest a query may run, its pages included (Go duration)" },
    Setting { var: "MAX_JOBS_PER_USER", flag: "max-jobs-per-user", default: Some("16"), help: "Queries a user may hold at once (running or with unread results); more get 429" },
    Setting { var: "MAX_JOBS_TOTAL", flag: "max-jobs-total", default: Some("1024"), help: "Queries held at once, all users; more get 429" },
    Setting { var: "JOB_TTL", flag: "job-ttl", default: Some("10m"), help: "How long a job is kept after it was last touched (Go duration)" },
    Setting { var: "MAX_BODY_BYTES", flag: "max-body-bytes", default: Some("1048576"), help: "Largest request body; larger gets 413" },
    Setting { var: "REQUEST_TIMEOUT", flag: "request-timeout", default: Some("30s"), help: "Longest a client may take to send a request (head and body) (Go duration)" },
    Setting { var: "CATALOG_TTL", flag: "catalog-ttl", default: Some("60s"), help: "How long an engine's list of tables and columns is trusted (Go duration)" },
    Setting { var: "STORE_REFRESH", flag: "store-refresh", default: Some("2s"), help: "How often the store is re-read for changes made by other gateways (Go duration)" },
    Setting { var: "WORKER_THREADS", flag: "worker-threads", default: Some("1"), help: "Threads serving HTTP and the query path: 1 runs everything on one thread (fewest wake-ups per query, see docs/benchmarks.md), more use a work-stealing runtime. Store calls and local DuckDB run on their own threads either way" },
    Setting { var: "LOG_LEVEL", flag: "log-level", default: Some("info"), help: "error, warn, info, debug or trace" },
    Setting { var: "SHUTDOWN_GRACE", flag: "shutdown-grace", default: Some("30s"), help: "On SIGTERM or SIGINT: how long queries and streams in flight may take to finish (new ones get 503, /health says draining) before the gateway exits (Go duration)" },
    Setting { var: "TLS_CERT", flag: "tls-cert", default: None, help: "PEM certificate chain every door serves TLS with (with TLS_KEY); unset: plain connections" },
    Setting { var: "TLS_KEY", flag: "tls-key", default: None, help: "PEM private key of TLS_CERT" },
    Setting { var: "TLS_RELOAD", flag: "tls-reload", default: Some("10s"), help: "How often TLS_CERT and TLS_KEY are checked for a change and reloaded; SIGHUP reloads at once (Go duration)" },
    Setting { var: "PGWIRE_ADDR", flag: "pgwire-addr", default: None, help: "Address of the PostgreSQL wire door (host:port); unset: off" },
    Setting { var: "PGWIRE_PLAIN_LOOPBACK", flag: "pgwire-plain-loopback", default: Some("false"), help: "Accept a password (an API token) over a plain, non-TLS PostgreSQL connection from a loopback address; other plain connections are always refused" },
    Setting { var: "AGENT_CONNECT_TIMEOUT", flag: "agent-connect-timeout", default: Some("250ms"), help: "Longest a connection to an agent may take to open; past it the agent is unreachable and the query moves to the next place (Go duration)" },
    Setting { var: "AGENT_FIRST_BYTE_TIMEOUT", flag: "agent-first-byte-timeout", default: Some("1s"), help: "Longest an agent may take to begin an answer beyond what a call asks it to hold: past it the agent counts as hung (Go duration)" },
    Setting { var: "AGENT_LONG_POLL", flag: "agent-long-poll", default: Some("1s"), help: "Longest one call asks an agent to hold its answer while a statement runs; longer statements are polled again, so a hung agent is found within AGENT_LONG_POLL + AGENT_FIRST_BYTE_TIMEOUT (Go duration)" },
    Setting { var: "AGENT_CA_FILE", flag: "agent-ca-file", default: None, help: "PEM file of the CA certificates https:// agent endpoints must chain to (an agent behind a TLS proxy); unset: the system bundle" },
    Setting { var: "AGENT_MAX_RUNNING", flag: "agent-max-running", default: Some("64"), help: "Queries this gateway runs at once on one agent; more wait in the admission queue (fair between users) for a slot. 0: no limit, no queue" },
    Setting { var: "QUEUE_TIMEOUT", flag: "queue-timeout", default: Some("10s"), help: "Longest a query waits in the admission queue for a slot on a full agent; then 429 QUEUE_TIMEOUT with Retry-After (Go duration)" },
    Setting { var: "QUEUE_MAX", flag: "queue-max", default: Some("1024"), help: "Queries waiting in the admission queue at once, all agents; more get 429 QUEUE_FULL at once" },
    Setting { var: "QUERY_HISTORY", flag: "query-history", default: Some("true"), help: "Keep every query's audit record in the store (GET /admin/queries, GET /v1/history), written off the query path in batches" },
    Setting { var: "QUERY_HISTORY_RETENTION", flag: "query-history-retention", default: Some("168h"), help: "How long query history records are kept (Go duration)" },
    Setting { var: "HEALTH_INTERVAL", flag: "health-interval", default: Some("1s"), help: "How often each agent's /health is probed (Go duration)" },
    Setting { var: "HEALTH_TIMEOUT", flag: "health-timeout", default: Some("500ms"), help: "Longest a health probe may take (Go duration)" },
    Setting { var: "HEALTH_DOWN_AFTER", flag: "health-down-after", default: Some("3"), help: "Failed probes in a row that mark an agent down (a query that finds it failing marks it suspect at once)" },
    Setting { var: "HEALTH_UP_AFTER", flag: "health-up-after", default: Some("2"), help: "Good probes in a row that bring a down or suspect agent back" },
    // --- Flight SQL door (src/flight) ---
    Setting { var: "FLIGHT_ADDR", flag: "flight-addr", default: None, help: "Address the Arrow Flight SQL door listens on (host:port); off when unset" },
];

/// The clap command: every setting as `--flag` with its variable as fallback.
pub fn command() -> Command {
    let mut cmd = Command::new("compute-gateway")
        .version(env!("CARGO_PKG_VERSION"))
        .about("The policy enforcement point: authenticates users, rewrites their SQL under grants, row filters and column masks, and routes it to an agent or local DuckDB")
        .after_help("Rollout controls are read from the environment as the resolver defines them: FEATURE_REMOTE_ROUTING, REMOTE_CANARY_USERS, REMOTE_CANARY_GROUPS, FEATURE_CURSOR_MODE (docs/rollout.md).");
    for s in SETTINGS {
        let mut a = Arg::new(s.var)
            .long(s.flag)
            .env(s.var)
            .help(s.help)
            .action(ArgAction::Set);
        if s.var == "GATEWAY_ADMIN_TOKEN" || s.var == "DATABASE_URL" {
            a = a.hide_env_values(true);
        }
        if let Some(d) = s.default {
            a = a.default_value(d);
        }
        cmd = cmd.arg(a);
    }
    cmd
}

impl Config {
    /// From the process's arguments and environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        let m = command()
            .try_get_matches()
            .map_err(|e| ConfigError::Usage(e.to_string()))?;
        Config::from_matches(&m, RolloutDefaults::from_env()?)
    }

    /// From parsed matches (tests build them with `command().try_get_matches_from`).
    pub fn from_matches(m: &ArgMatches, rollout: RolloutDefaults) -> Result<Config, ConfigError> {
        let get = |var: &'static str| -> Option<String> {
            m.get_one::<String>(var)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let req = |var: &'static str| -> String { get(var).unwrap_or_default() };
        let invalid =
            |var: &'static str, value: &str, expected: &'static str| ConfigError::Invalid {
                var,
                value: value.to_string(),
                expected,
            };
        let duration = |var: &'static str| -> Result<Duration, ConfigError> {
            client::duration::parse(&req(var))
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| invalid(var, &req(var), "a positive Go duration (300ms, 1m30s, 2h)"))
        };
        let count = |var: &'static str| -> Result<usize, ConfigError> {
            req(var)
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid(var, &req(var), "a positive integer"))
        };
        let listen_addr = req("LISTEN_ADDR").parse().map_err(|_| {
            invalid(
                "LISTEN_ADDR",
                &req("LISTEN_ADDR"),
                "host:port, e.g. 127.0.0.1:8080",
            )
        })?;
        let database_url = req("DATABASE_URL");
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "DATABASE_URL",
                "(hidden)",
                "sqlite:<path>, sqlite::memory: or postgres://...",
            ));
        }
        let duckdb_read_only = parse_go_bool(&req("DUCKDB_READ_ONLY")).ok_or_else(|| {
            invalid(
                "DUCKDB_READ_ONLY",
                &req("DUCKDB_READ_ONLY"),
                "a boolean: true/false, 1/0, t/f",
            )
        })?;
        let duckdb_path = get("DUCKDB_PATH").map(PathBuf::from);
        if duckdb_read_only && duckdb_path.is_none() {
            return Err(invalid(
                "DUCKDB_READ_ONLY",
                "true",
                "false when DUCKDB_PATH is unset (an in-memory database cannot be read-only)",
            ));
        }
        let duckdb_time_zone = TimeZone::parse(&req("DUCKDB_TIME_ZONE")).map_err(|_| {
            invalid(
                "DUCKDB_TIME_ZONE",
                &req("DUCKDB_TIME_ZONE"),
                "a time zone name such as UTC or Europe/Amsterdam (1 to 64 ASCII letters, digits and / _ + - : .)",
            )
        })?;
        let admin_token = get("GATEWAY_ADMIN_TOKEN");
        let admin_user = req("GATEWAY_ADMIN_USER").trim().to_lowercase();
        if admin_user.is_empty() {
            return Err(invalid("GATEWAY_ADMIN_USER", "", "a user name"));
        }
        let log_level = match req("LOG_LEVEL").as_str() {
            "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            v => {
                return Err(invalid(
                    "LOG_LEVEL",
                    v,
                    "one of error, warn, info, debug, trace",
                ))
            }
        };
        let max_body_bytes = count("MAX_BODY_BYTES")?;
        if max_body_bytes < 1024 {
            return Err(invalid(
                "MAX_BODY_BYTES",
                &req("MAX_BODY_BYTES"),
                "at least 1024",
            ));
        }
        let tls = match (get("TLS_CERT"), get("TLS_KEY")) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            }),
            (Some(_), None) => return Err(invalid("TLS_KEY", "", "set when TLS_CERT is")),
            (None, Some(_)) => return Err(invalid("TLS_CERT", "", "set when TLS_KEY is")),
        };
        let pgwire_addr = match get("PGWIRE_ADDR") {
            None => None,
            Some(a) => Some(
                a.parse::<SocketAddr>()
                    .map_err(|_| invalid("PGWIRE_ADDR", &a, "host:port"))?,
            ),
        };
        let pgwire_plain_loopback =
            parse_go_bool(&req("PGWIRE_PLAIN_LOOPBACK")).ok_or_else(|| {
                invalid(
                    "PGWIRE_PLAIN_LOOPBACK",
                    &req("PGWIRE_PLAIN_LOOPBACK"),
                    "a boolean: true/false, 1/0, t/f",
                )
            })?;
        let agents = crate::store::AgentLinks {
            health: client::resolver::config::HealthSettings {
                interval: duration("HEALTH_INTERVAL")?,
                timeout: duration("HEALTH_TIMEOUT")?,
                jitter: client::resolver::config::HealthSettings::JITTER,
                down_after: count("HEALTH_DOWN_AFTER")?.try_into().unwrap_or(u32::MAX),
                up_after: count("HEALTH_UP_AFTER")?.try_into().unwrap_or(u32::MAX),
                overloaded_queued_jobs: 0,
            },
            connect_timeout: duration("AGENT_CONNECT_TIMEOUT")?,
            first_byte_timeout: duration("AGENT_FIRST_BYTE_TIMEOUT")?,
            long_poll: duration("AGENT_LONG_POLL")?,
            // Read by the binary (this module opens no file).
            ca_pem: None,
        };
        let admission = crate::query::admission::AdmissionSettings {
            max_running: req("AGENT_MAX_RUNNING").parse::<usize>().map_err(|_| {
                invalid(
                    "AGENT_MAX_RUNNING",
                    &req("AGENT_MAX_RUNNING"),
                    "a count (0: no limit)",
                )
            })?,
            max_waiting: count("QUEUE_MAX")?,
            timeout: duration("QUEUE_TIMEOUT")?,
        };
        let history_on = parse_go_bool(&req("QUERY_HISTORY")).ok_or_else(|| {
            invalid(
                "QUERY_HISTORY",
                &req("QUERY_HISTORY"),
                "a boolean: true/false, 1/0, t/f",
            )
        })?;
        let query_history = if history_on {
            Some(duration("QUERY_HISTORY_RETENTION")?)
        } else {
            None
        };
        Ok(Config {
            agents,
            agent_ca_file: get("AGENT_CA_FILE").map(PathBuf::from),
            admission,
            query_history,
            tls,
            tls_reload: duration("TLS_RELOAD")?,
            shutdown_grace: duration("SHUTDOWN_GRACE")?,
            pgwire_addr,
            pgwire_plain_loopback,
            listen_addr,
            database_url,
            duckdb_path,
            duckdb_read_only,
            duckdb_time_zone,
            admin_token,
            admin_user,
            default_catalog: get("DEFAULT_CATALOG").map(|c| c.trim().to_lowercase()),
            rollout,
            query_timeout: duration("QUERY_TIMEOUT")?,
            max_jobs_per_user: count("MAX_JOBS_PER_USER")?,
            max_jobs_total: count("MAX_JOBS_TOTAL")?,
            job_ttl: duration("JOB_TTL")?,
            max_body_bytes,
            request_timeout: duration("REQUEST_TIMEOUT")?,
            catalog_ttl: duration("CATALOG_TTL")?,
            store_refresh: duration("STORE_REFRESH")?,
            log_level,
            worker_threads: count("WORKER_THREADS")?,
            // --- Flight SQL door (src/flight) ---
            flight_addr: get("FLIGHT_ADDR")
                .map(|a| {
                    a.parse()
                        .map_err(|_| invalid("FLIGHT_ADDR", &a, "host:port, e.g. 127.0.0.1:8815"))
                })
                .transpose()?,
        })
    }

    /// The Flight SQL door's settings; `None` when `FLIGHT_ADDR` is unset.
    pub fn flight(&self) -> Option<crate::flight::FlightSettings> {
        Some(crate::flight::FlightSettings {
            addr: self.flight_addr?,
            max_queries_per_user: self.max_jobs_per_user,
            max_queries_total: self.max_jobs_total,
            ttl: self.job_ttl,
            max_message_bytes: self.max_body_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut v = vec!["compute-gateway"];
        v.extend_from_slice(args);
        let m = command().try_get_matches_from(v).unwrap();
        Config::from_matches(&m, RolloutDefaults::default())
    }

    #[test]
    fn defaults_and_refusals() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.listen_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite:./gateway.db");
        assert!(c.duckdb_path.is_none() && !c.duckdb_read_only);
        assert_eq!(c.job_ttl, Duration::from_secs(600));
        let e = parse(&["--query-timeout", "soon"]).unwrap_err().to_string();
        assert!(e.contains("QUERY_TIMEOUT"), "{e}");
        let e = parse(&["--duckdb-read-only", "true"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("DUCKDB_READ_ONLY"), "{e}");
        let e = parse(&["--database-url", "mysql://x"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("DATABASE_URL") && !e.contains("mysql"), "{e}");
        assert!(parse(&["--max-jobs-per-user", "0"]).is_err());
        assert_eq!(c.worker_threads, 1);
        assert_eq!(parse(&["--worker-threads", "3"]).unwrap().worker_threads, 3);
        assert!(parse(&["--worker-threads", "0"]).is_err());
        assert_eq!(c.duckdb_time_zone, TimeZone::utc());
        let tz = parse(&["--duckdb-time-zone", "Europe/Amsterdam"]).unwrap();
        assert_eq!(tz.duckdb_time_zone.as_str(), "Europe/Amsterdam");
        let e = parse(&["--duckdb-time-zone", "Europe/Amst'erdam"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("DUCKDB_TIME_ZONE"), "{e}");
        assert!(c.flight_addr.is_none() && c.flight().is_none());
        let f = parse(&["--flight-addr", "127.0.0.1:8815"])
            .unwrap()
            .flight()
            .unwrap();
        assert_eq!(f.addr.to_string(), "127.0.0.1:8815");
        assert_eq!(f.max_queries_per_user, 16);
        let e = parse(&["--flight-addr", "nowhere"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("FLIGHT_ADDR"), "{e}");
    }

    /// The agent settings' defaults are the client's and the resolver's own
    /// (one source: --help shows the same values they use).
    #[test]
    fn agent_defaults_are_the_clients() {
        use client::resolver::config::HealthSettings;
        let a = parse(&[]).unwrap().agents;
        assert_eq!(a.connect_timeout, client::agent::DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(
            a.first_byte_timeout,
            client::agent::DEFAULT_FIRST_BYTE_TIMEOUT
        );
        assert_eq!(a.long_poll, client::agent::DEFAULT_LONG_POLL);
        assert_eq!(a.health.interval, HealthSettings::INTERVAL);
        assert_eq!(a.health.timeout, HealthSettings::TIMEOUT);
        assert_eq!(a.health.down_after, HealthSettings::DOWN_AFTER);
        assert_eq!(a.health.up_after, HealthSettings::UP_AFTER);
        let file = client::resolver::config::parse("", "t", &RolloutDefaults::default()).unwrap();
        assert_eq!(file.health.interval, a.health.interval);
        assert!(parse(&["--agent-first-byte-timeout", "0s"]).is_err());
    }
}
