//! Endpoint health: the table of each remote endpoint's up/down state and last load,
//! fed by background probes of `GET /health` (interval + jitter, timeout, N failures
//! to mark down, M successes to mark up) and by what queries see (passive health):
//! a query that finds an endpoint unreachable, hung or draining marks it suspect at
//! once, for every thread, and only M good probes in a row clear it.
//!
//! Owns the state machine and the probe round. The query path reads the table and
//! reports failures to it; it never probes. No locks are held across an await.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::agent::AgentClient;
use crate::resolver::config::HealthSettings;
use crate::wire::Health;

/// What the resolver knows about one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointHealth {
    /// Until `down_after` consecutive failures, an endpoint counts as up (also before
    /// its first probe).
    pub up: bool,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// The last good `/health` answer.
    pub last: Option<Health>,
    pub last_error: Option<String>,
    pub last_probe: Option<Instant>,
    /// Why a query found the endpoint failing, when it did since the last
    /// `up_after` good probes: no query is routed there while another place
    /// can take it.
    pub suspect: Option<String>,
}

impl Default for EndpointHealth {
    fn default() -> Self {
        EndpointHealth {
            up: true,
            consecutive_failures: 0,
            consecutive_successes: 0,
            last: None,
            last_error: None,
            last_probe: None,
            suspect: None,
        }
    }
}

impl EndpointHealth {
    /// Up by the probes and not suspected by a query since.
    pub fn usable(&self) -> bool {
        self.up && self.suspect.is_none()
    }

    /// `queued_jobs + active_queries` of the last good probe (0 before any).
    pub fn load(&self) -> u64 {
        self.last.as_ref().map_or(0, Health::load)
    }

    /// Overloaded by the configured threshold (0: never).
    pub fn overloaded(&self, s: &HealthSettings) -> bool {
        s.overloaded_queued_jobs > 0
            && self
                .last
                .as_ref()
                .is_some_and(|h| h.queued_jobs >= s.overloaded_queued_jobs)
    }

    fn record(&mut self, result: Result<Health, String>, s: &HealthSettings) {
        self.last_probe = Some(Instant::now());
        match result {
            Ok(h) => {
                self.consecutive_failures = 0;
                self.consecutive_successes = self.consecutive_successes.saturating_add(1);
                self.last = Some(h);
                self.last_error = None;
                if self.consecutive_successes >= s.up_after {
                    self.up = true;
                    self.suspect = None;
                }
            }
            Err(e) => {
                self.consecutive_successes = 0;
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.last_error = Some(e);
                if self.up && self.consecutive_failures >= s.down_after {
                    self.up = false;
                }
            }
        }
    }
}

/// Health of every remote endpoint, by name.
#[derive(Debug, Default)]
pub struct HealthTable {
    inner: Mutex<HashMap<String, EndpointHealth>>,
}

impl HealthTable {
    pub fn get(&self, name: &str) -> EndpointHealth {
        self.lock().get(name).cloned().unwrap_or_default()
    }

    pub fn snapshot(&self) -> HashMap<String, EndpointHealth> {
        self.lock().clone()
    }

    /// Keeps only `names`; entries in `reset` start over (their URL or token changed).
    pub fn retain(&self, names: &[String], reset: &[String]) {
        let mut t = self.lock();
        t.retain(|k, _| names.contains(k));
        for r in reset {
            t.remove(r);
        }
    }

    pub fn record(&self, name: &str, result: Result<Health, String>, s: &HealthSettings) {
        let mut t = self.lock();
        let e = t.entry(name.to_string()).or_default();
        let was_up = e.up;
        e.record(result, s);
        if was_up != e.up {
            tracing::warn!(
                endpoint = name,
                up = e.up,
                error = e.last_error.as_deref().unwrap_or(""),
                "endpoint health changed"
            );
        }
    }

    /// A query found `name` failing (`why`): suspect at once, until `up_after`
    /// good probes in a row from now. Returns whether it was usable before.
    pub fn suspect(&self, name: &str, why: &str) -> bool {
        let mut t = self.lock();
        let e = t.entry(name.to_string()).or_default();
        let was = e.usable();
        e.consecutive_successes = 0;
        e.suspect = Some(why.to_string());
        if was {
            tracing::warn!(
                endpoint = name,
                error = why,
                "endpoint suspect: a query found it failing"
            );
        }
        was
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, EndpointHealth>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Probes every client once, concurrently, each within `s.timeout`.
pub async fn probe_round(
    table: &HealthTable,
    clients: Vec<(String, AgentClient)>,
    s: &HealthSettings,
) {
    let mut set = tokio::task::JoinSet::new();
    for (name, client) in clients {
        let timeout = s.timeout;
        set.spawn(async move {
            let r = client.health(timeout).await.map_err(|e| e.to_string());
            (name, r)
        });
    }
    while let Some(done) = set.join_next().await {
        if let Ok((name, r)) = done {
            table.record(&name, r, s);
        }
    }
}

/// A pseudo-random jitter in `[0, max)` (no cryptographic need; avoids lockstep).
pub fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    let r = h.finish();
    Duration::from_nanos(r % (max.as_nanos().min(u64::MAX as u128) as u64).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> HealthSettings {
        HealthSettings {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(100),
            jitter: Duration::ZERO,
            down_after: 2,
            up_after: 3,
            overloaded_queued_jobs: 5,
        }
    }

    #[test]
    fn n_down_m_up() {
        let s = settings();
        let t = HealthTable::default();
        t.record("a", Err("x".into()), &s);
        assert!(t.get("a").up);
        t.record("a", Err("x".into()), &s);
        assert!(!t.get("a").up);
        for _ in 0..2 {
            t.record("a", Ok(Health::default()), &s);
            assert!(!t.get("a").up);
        }
        t.record(
            "a",
            Ok(Health {
                queued_jobs: 7,
                ..Health::default()
            }),
            &s,
        );
        assert!(t.get("a").up);
        assert!(t.get("a").overloaded(&s));
        assert!(jitter(Duration::from_millis(5)) < Duration::from_millis(5));
    }

    #[test]
    fn a_suspect_needs_up_after_good_probes_from_its_marking() {
        let s = settings();
        let t = HealthTable::default();
        t.record("a", Ok(Health::default()), &s);
        t.record("a", Ok(Health::default()), &s);
        assert!(t.get("a").usable());
        assert!(t.suspect("a", "connection refused"));
        assert!(!t.get("a").usable() && t.get("a").up);
        assert!(!t.suspect("a", "again"), "already suspect");
        for _ in 0..2 {
            t.record("a", Ok(Health::default()), &s);
            assert!(!t.get("a").usable(), "good probes before up_after");
        }
        // A failed probe starts the count over.
        t.record("a", Err("x".into()), &s);
        for _ in 0..2 {
            t.record("a", Ok(Health::default()), &s);
        }
        assert!(!t.get("a").usable());
        t.record("a", Ok(Health::default()), &s);
        assert!(t.get("a").usable(), "{:?}", t.get("a"));
        // Never probed before: suspect at once too.
        t.suspect("b", "reset");
        assert!(!t.get("b").usable());
    }
}
