//! The resolver's configuration: endpoints, assignments, rollout controls, health
//! probing and client settings, from a source behind [`ConfigSource`] (here a TOML
//! file, [`TomlFile`]), validated whole into a typed [`ResolverConfig`].
//!
//! Owns the file format and its validation. A file that fails validation is refused
//! as a whole (the resolver keeps the last good one). It never talks to an agent;
//! its only I/O is reading the file, bounded in size. Environment variables are read
//! once, by [`RolloutDefaults::from_env`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Largest configuration file read.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Why a configuration was refused. One line each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("invalid {var}={value:?}: {expected}")]
    Env {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Where an endpoint's queries run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EndpointKind {
    Local,
    Remote,
}

/// An operator's on/off switch for an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EndpointStatus {
    Active,
    Inactive,
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub url: String,
    pub token: String,
    pub kind: EndpointKind,
    pub status: EndpointStatus,
}

/// Who an assignment is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    User(String),
    Group(String),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::User(u) => write!(f, "user {u}"),
            Principal::Group(g) => write!(f, "group {g}"),
        }
    }
}

/// A user or group assigned to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub principal: Principal,
    pub endpoint: String,
    pub is_default: bool,
    pub fallback_local: bool,
}

/// Rollout controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// `FEATURE_REMOTE_ROUTING`: off sends everyone local.
    pub remote_routing: bool,
    /// `REMOTE_CANARY_USERS`: when this or `canary_groups` is non-empty, only they route remote.
    pub canary_users: Vec<String>,
    /// `REMOTE_CANARY_GROUPS`.
    pub canary_groups: Vec<String>,
    /// `FEATURE_CURSOR_MODE`: off makes clients go straight to `/execute`.
    pub cursor_mode: bool,
}

/// Background health probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    pub interval: Duration,
    pub timeout: Duration,
    /// Up to this much is added at random to each interval, so gateways do not probe
    /// in lockstep.
    pub jitter: Duration,
    /// Consecutive failed probes that mark an endpoint down.
    pub down_after: u32,
    /// Consecutive good probes that mark a down endpoint up again.
    pub up_after: u32,
    /// An endpoint whose `/health` reports at least this many `queued_jobs` is treated
    /// as overloaded (0: never).
    pub overloaded_queued_jobs: u64,
}

impl HealthSettings {
    /// Default probe interval: a probe is the agent's cheapest request, and a
    /// stopped agent that comes back is used again within `UP_AFTER` of these.
    pub const INTERVAL: Duration = Duration::from_secs(1);
    pub const TIMEOUT: Duration = Duration::from_millis(500);
    pub const JITTER: Duration = Duration::from_millis(200);
    pub const DOWN_AFTER: u32 = 3;
    pub const UP_AFTER: u32 = 2;
}

/// Client settings applied to every endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub sign_requests: bool,
    pub page_size: u32,
    pub lifecycle_recheck: Duration,
    pub max_response_bytes: usize,
    /// Longest a connection to an agent may take to open.
    pub connect_timeout: Duration,
    /// Longest an agent may take to begin an answer beyond what a call asks it
    /// to hold (see [`crate::agent::AgentConfig::first_byte_timeout`]).
    pub first_byte_timeout: Duration,
    /// Longest one long-poll holds (see [`crate::agent::AgentConfig::long_poll`]).
    pub long_poll: Duration,
    /// Wait out an agent's 429 and try it again; off: the caller routes the
    /// query elsewhere (the gateway).
    pub wait_on_overload: bool,
    /// The CA file's PEM that `https://` endpoints must chain to (read once,
    /// at load); `None`: the system bundle.
    pub ca_pem: Option<std::sync::Arc<Vec<u8>>>,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverConfig {
    pub endpoints: Vec<Endpoint>,
    pub assignments: Vec<Assignment>,
    pub rollout: Rollout,
    pub health: HealthSettings,
    pub client: ClientSettings,
}

impl ResolverConfig {
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }
}

/// Rollout values from the environment, read once at start; the file's `[rollout]`
/// keys override them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutDefaults(pub Rollout);

impl Default for RolloutDefaults {
    fn default() -> Self {
        RolloutDefaults(Rollout {
            remote_routing: false,
            canary_users: Vec::new(),
            canary_groups: Vec::new(),
            cursor_mode: true,
        })
    }
}

impl RolloutDefaults {
    /// `FEATURE_REMOTE_ROUTING` (default false), `REMOTE_CANARY_USERS`,
    /// `REMOTE_CANARY_GROUPS` (comma-separated), `FEATURE_CURSOR_MODE` (default true).
    pub fn from_env() -> Result<RolloutDefaults, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Same, from any lookup (tests).
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<RolloutDefaults, ConfigError> {
        let mut d = RolloutDefaults::default();
        let boolean = |var: &'static str, default: bool| -> Result<bool, ConfigError> {
            match get(var).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => parse_go_bool(&v).ok_or(ConfigError::Env {
                    var,
                    value: v,
                    expected: "a boolean: true/false, 1/0, t/f",
                }),
            }
        };
        d.0.remote_routing = boolean("FEATURE_REMOTE_ROUTING", false)?;
        d.0.cursor_mode = boolean("FEATURE_CURSOR_MODE", true)?;
        let list = |v: Option<String>| -> Vec<String> {
            v.unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        d.0.canary_users = list(get("REMOTE_CANARY_USERS"));
        d.0.canary_groups = list(get("REMOTE_CANARY_GROUPS"));
        Ok(d)
    }
}

/// Go's `strconv.ParseBool` spellings.
pub fn parse_go_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Where configurations come from.
pub trait ConfigSource: Send + Sync {
    /// For logs and errors.
    fn describe(&self) -> String;
    /// A cheap value that changes when the configuration may have changed.
    fn fingerprint(&self) -> Option<u64>;
    /// Reads and validates the whole configuration.
    fn load(&self, defaults: &RolloutDefaults) -> Result<ResolverConfig, ConfigError>;
}

/// A TOML file (format: docs/rollout.md).
#[derive(Debug, Clone)]
pub struct TomlFile {
    pub path: PathBuf,
}

impl TomlFile {
    pub fn new(path: impl AsRef<Path>) -> TomlFile {
        TomlFile {
            path: path.as_ref().to_path_buf(),
        }
    }

    fn read(&self) -> Result<String, ConfigError> {
        use std::io::Read;
        let err = |message: String| ConfigError::Read {
            path: self.path.display().to_string(),
            message,
        };
        let f = std::fs::File::open(&self.path).map_err(|e| err(e.to_string()))?;
        let mut text = String::new();
        f.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| err(e.to_string()))?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(err(format!("larger than {MAX_FILE_BYTES} bytes")));
        }
        Ok(text)
    }
}

impl TomlFile {
    /// Loads with the environment's rollout defaults (for tools).
    pub fn load_config(&self) -> Result<ResolverConfig, ConfigError> {
        self.load(&RolloutDefaults::from_env()?)
    }
}

impl ConfigSource for TomlFile {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn fingerprint(&self) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        let text = self.read().ok()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        Some(h.finish())
    }

    fn load(&self, defaults: &RolloutDefaults) -> Result<ResolverConfig, ConfigError> {
        let text = self.read()?;
        parse(&text, &self.describe(), defaults)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV {
    #[serde(default)]
    rollout: Option<RolloutV>,
    #[serde(default)]
    health: Option<HealthV>,
    #[serde(default)]
    client: Option<ClientV>,
    #[serde(default)]
    endpoint: Vec<EndpointV>,
    #[serde(default)]
    assignment: Vec<AssignmentV>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutV {
    remote_routing: Option<bool>,
    canary_users: Option<Vec<String>>,
    canary_groups: Option<Vec<String>>,
    cursor_mode: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthV {
    interval: Option<String>,
    timeout: Option<String>,
    jitter: Option<String>,
    down_after: Option<u32>,
    up_after: Option<u32>,
    overloaded_queued_jobs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientV {
    sign_requests: Option<bool>,
    page_size: Option<u32>,
    lifecycle_recheck: Option<String>,
    max_response_bytes: Option<usize>,
    connect_timeout: Option<String>,
    first_byte_timeout: Option<String>,
    long_poll: Option<String>,
    wait_on_overload: Option<bool>,
    ca_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointV {
    name: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    token: Option<String>,
    /// Read the token from this environment variable instead.
    #[serde(default)]
    token_env: Option<String>,
    kind: EndpointKind,
    #[serde(default = "active")]
    status: EndpointStatus,
}

fn active() -> EndpointStatus {
    EndpointStatus::Active
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignmentV {
    user: Option<String>,
    group: Option<String>,
    endpoint: String,
    #[serde(default)]
    is_default: bool,
    #[serde(default)]
    fallback_local: bool,
}

/// Largest CA file read.
pub const MAX_CA_FILE_BYTES: u64 = 1 << 20;

/// A CA file's bytes: PEM with at least one certificate, at most
/// [`MAX_CA_FILE_BYTES`].
pub fn read_ca_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut pem = Vec::new();
    f.take(MAX_CA_FILE_BYTES + 1)
        .read_to_end(&mut pem)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if pem.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(format!(
            "{}: larger than {MAX_CA_FILE_BYTES} bytes",
            path.display()
        ));
    }
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(pem)
}

/// Parses and validates a configuration text.
pub fn parse(
    text: &str,
    path: &str,
    defaults: &RolloutDefaults,
) -> Result<ResolverConfig, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_string(),
        message,
    };
    let f: FileV = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_string(),
        message: e.to_string().replace('\n', " "),
    })?;
    let dur = |what: &str, v: Option<String>, default: Duration| -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => crate::duration::parse(&s).map_err(|e| invalid(format!("{what}: {e}"))),
        }
    };

    let mut rollout = defaults.0.clone();
    if let Some(r) = f.rollout {
        if let Some(v) = r.remote_routing {
            rollout.remote_routing = v;
        }
        if let Some(v) = r.canary_users {
            rollout.canary_users = v;
        }
        if let Some(v) = r.canary_groups {
            rollout.canary_groups = v;
        }
        if let Some(v) = r.cursor_mode {
            rollout.cursor_mode = v;
        }
    }

    let h = f.health.unwrap_or(HealthV {
        interval: None,
        timeout: None,
        jitter: None,
        down_after: None,
        up_after: None,
        overloaded_queued_jobs: None,
    });
    let health = HealthSettings {
        interval: dur("health.interval", h.interval, HealthSettings::INTERVAL)?,
        timeout: dur("health.timeout", h.timeout, HealthSettings::TIMEOUT)?,
        jitter: dur("health.jitter", h.jitter, HealthSettings::JITTER)?,
        down_after: h.down_after.unwrap_or(HealthSettings::DOWN_AFTER),
        up_after: h.up_after.unwrap_or(HealthSettings::UP_AFTER),
        overloaded_queued_jobs: h.overloaded_queued_jobs.unwrap_or(0),
    };
    if health.interval < Duration::from_millis(10) || health.timeout.is_zero() {
        return Err(invalid(
            "health.interval must be at least 10ms and health.timeout positive".into(),
        ));
    }
    if health.down_after == 0 || health.up_after == 0 {
        return Err(invalid(
            "health.down_after and health.up_after must be at least 1".into(),
        ));
    }

    let c = f.client.unwrap_or(ClientV {
        sign_requests: None,
        page_size: None,
        lifecycle_recheck: None,
        max_response_bytes: None,
        connect_timeout: None,
        first_byte_timeout: None,
        long_poll: None,
        wait_on_overload: None,
        ca_file: None,
    });
    let client = ClientSettings {
        sign_requests: c.sign_requests.unwrap_or(false),
        page_size: c.page_size.unwrap_or(5000),
        lifecycle_recheck: dur(
            "client.lifecycle_recheck",
            c.lifecycle_recheck,
            Duration::from_secs(300),
        )?,
        max_response_bytes: c.max_response_bytes.unwrap_or(64 << 20),
        connect_timeout: dur(
            "client.connect_timeout",
            c.connect_timeout,
            crate::agent::DEFAULT_CONNECT_TIMEOUT,
        )?,
        first_byte_timeout: dur(
            "client.first_byte_timeout",
            c.first_byte_timeout,
            crate::agent::DEFAULT_FIRST_BYTE_TIMEOUT,
        )?,
        long_poll: dur(
            "client.long_poll",
            c.long_poll,
            crate::agent::DEFAULT_LONG_POLL,
        )?,
        wait_on_overload: c.wait_on_overload.unwrap_or(true),
        ca_pem: match c.ca_file {
            None => None,
            Some(f) => Some(std::sync::Arc::new(
                read_ca_file(Path::new(&f)).map_err(|e| invalid(format!("client.ca_file: {e}")))?,
            )),
        },
    };
    if client.connect_timeout.is_zero() || client.first_byte_timeout.is_zero() {
        return Err(invalid(
            "client.connect_timeout and client.first_byte_timeout must be positive".into(),
        ));
    }
    if !(1..=5000).contains(&client.page_size) {
        return Err(invalid("client.page_size must be 1 to 5000".into()));
    }
    if client.max_response_bytes < 4096 {
        return Err(invalid(
            "client.max_response_bytes must be at least 4096".into(),
        ));
    }

    let mut names = HashSet::new();
    let mut endpoints = Vec::with_capacity(f.endpoint.len());
    for e in f.endpoint {
        let name = e.name.trim().to_string();
        if name.is_empty() {
            return Err(invalid("an endpoint has an empty name".into()));
        }
        if !names.insert(name.clone()) {
            return Err(invalid(format!("endpoint {name:?} is defined twice")));
        }
        let token = match (e.token, e.token_env) {
            (Some(t), None) => t,
            (None, Some(var)) => std::env::var(&var)
                .map_err(|_| invalid(format!("endpoint {name:?}: token_env {var} is not set")))?,
            (None, None) if e.kind == EndpointKind::Local => String::new(),
            (None, None) => {
                return Err(invalid(format!(
                    "endpoint {name:?}: token or token_env is required"
                )))
            }
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "endpoint {name:?}: give token or token_env, not both"
                )))
            }
        };
        if e.kind == EndpointKind::Remote {
            let cfg = crate::agent::AgentConfig::new(&name, &e.url, &token);
            if let Err(err) = crate::agent::AgentClient::check_config(&cfg) {
                return Err(invalid(err.to_string()));
            }
            if token.is_empty() {
                return Err(invalid(format!("endpoint {name:?}: empty token")));
            }
        }
        endpoints.push(Endpoint {
            name,
            url: e.url,
            token,
            kind: e.kind,
            status: e.status,
        });
    }

    let mut assignments = Vec::with_capacity(f.assignment.len());
    for a in f.assignment {
        let principal = match (a.user, a.group) {
            (Some(u), None) if !u.trim().is_empty() => Principal::User(u.trim().to_string()),
            (None, Some(g)) if !g.trim().is_empty() => Principal::Group(g.trim().to_string()),
            _ => {
                return Err(invalid(format!(
                    "an assignment to {:?} needs exactly one non-empty user or group",
                    a.endpoint
                )))
            }
        };
        if !names.contains(a.endpoint.trim()) {
            return Err(invalid(format!(
                "assignment of {principal} names unknown endpoint {:?}",
                a.endpoint
            )));
        }
        assignments.push(Assignment {
            principal,
            endpoint: a.endpoint.trim().to_string(),
            is_default: a.is_default,
            fallback_local: a.fallback_local,
        });
    }
    Ok(ResolverConfig {
        endpoints,
        assignments,
        rollout,
        health,
        client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[rollout]
remote_routing = true
canary_groups = ["beta"]

[health]
interval = "100ms"
down_after = 2

[[endpoint]]
name = "a"
url = "http://127.0.0.1:9443"
token = "t"
kind = "REMOTE"

[[endpoint]]
name = "local"
kind = "LOCAL"

[[assignment]]
user = "alice"
endpoint = "a"
is_default = true
fallback_local = true
"#;

    #[test]
    fn parses_and_defaults() {
        let c = parse(GOOD, "x", &RolloutDefaults::default()).unwrap();
        assert!(c.rollout.remote_routing);
        assert!(c.rollout.cursor_mode);
        assert_eq!(c.rollout.canary_groups, vec!["beta".to_string()]);
        assert_eq!(c.health.interval, Duration::from_millis(100));
        assert_eq!(c.health.up_after, 2);
        assert_eq!(c.endpoints[0].status, EndpointStatus::Active);
        assert_eq!(c.assignments[0].principal, Principal::User("alice".into()));
    }

    #[test]
    fn refuses_bad_files() {
        let d = RolloutDefaults::default();
        let cases = [
            "not toml [",
            "[[endpoint]]\nname='a'\nkind='REMOTE'\nurl='http://x:1'",
            "[[endpoint]]\nname='a'\nkind='REMOTE'\nurl='ftp://x'\ntoken='t'",
            "[[endpoint]]\nname='a'\nkind='SIDEWAYS'",
            "[[endpoint]]\nname='a'\nkind='LOCAL'\n[[endpoint]]\nname='a'\nkind='LOCAL'",
            "[[assignment]]\nuser='u'\nendpoint='nope'",
            "[[endpoint]]\nname='a'\nkind='LOCAL'\n[[assignment]]\nuser='u'\ngroup='g'\nendpoint='a'",
            "[health]\ninterval='fast'",
            "[health]\ndown_after=0",
            "[rollout]\nremote_routng=true",
            "[client]\npage_size=0",
        ];
        for text in cases {
            assert!(parse(text, "x", &d).is_err(), "{text}");
        }
    }

    #[test]
    fn env_defaults() {
        let d = RolloutDefaults::from_lookup(|k| match k {
            "FEATURE_REMOTE_ROUTING" => Some("true".into()),
            "REMOTE_CANARY_USERS" => Some(" alice, bob ,".into()),
            _ => None,
        })
        .unwrap();
        assert!(d.0.remote_routing);
        assert_eq!(d.0.canary_users, vec!["alice", "bob"]);
        assert!(RolloutDefaults::from_lookup(
            |k| (k == "FEATURE_CURSOR_MODE").then(|| "yes".into())
        )
        .is_err());
    }
}
