//! What every shard's router shares: the token, feature flags, start time, the engine
//! handle and every shard's request metrics.
//!
//! Built once on the main thread and read-only afterwards (no locks).

use std::sync::Arc;
use std::time::Instant;

use executor::Engine;

use crate::metrics::RouteMetrics;

/// Read-only state shared by all shards.
pub struct Shared {
    pub token: Box<[u8]>,
    pub cursor_mode: bool,
    /// `REQUIRE_SIGNED_REQUESTS` / `SIGNATURE_MAX_SKEW` (src/signature.rs).
    pub signature: crate::signature::SignaturePolicy,
    pub started: Instant,
    pub engine: Arc<Engine>,
    pub max_memory_gb: Option<f64>,
    pub shards: usize,
    /// Indexed by shard id; each shard records only into its own block.
    pub route_metrics: Vec<Arc<RouteMetrics>>,
}
