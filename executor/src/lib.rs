//! Shards: job tables, DuckDB workers, JSON result arenas, expiry queues, counters.
//!
//! The crate owns everything between "the agent has a parsed request" and "here
//! are the bytes of the answer". It must never block a glommio reactor thread:
//! every DuckDB call happens on a shard's dedicated worker thread (or, for the
//! few calls at open and shutdown, on the caller's ordinary thread).
//!
//! Shape (see README.md for the why):
//! - [`Engine`] is opened once on the main thread: one DuckDB database, a small
//!   pool of connections per shard (`MAX_CONCURRENT_QUERIES` spread over the
//!   shards), init SQL run on each and its session state recorded.
//! - Each glommio executor calls [`Engine::join_shard`] and gets a [`Shard`]: it
//!   owns a job table (`table.rs`: jobs, expiry), a feed
//!   (`feed.rs`: queue, statements in flight, deadlines, interrupts) and a
//!   pool of worker threads (`worker.rs`), one per connection, each putting its
//!   session back to its baseline after a job that may have changed it
//!   (`session.rs`).
//! - A job lives on the shard `hash(query_id) % shards`; requests for it travel
//!   there over glommio's channel mesh and the answer comes back on a oneshot.
//!   A new job, with or without a request id, is created on the shard that
//!   received it (or one with a free worker); one lock-free request-id index
//!   shared by all shards (`request_index.rs`) makes a repeated request id
//!   find its first job instead of running again.
//! - Results are encoded to JSON once, on the worker, into a [`QueryResult`]
//!   arena while DuckDB streams them; a page is a slice copy.
//! - SQL texts are bounded ([`Engine::check_sql`]) before they are queued;
//!   SQL runs on threads with stacks sized for DuckDB's recursion, and may
//!   touch only the database and the operator's allowed paths.

pub mod arrow;
mod duckdb;
mod encode;
mod engine;
mod error;
mod expiry;
mod feed;
mod job;
pub mod json;
pub mod params;
mod priority;
mod request_index;
mod result;
mod route;
mod session;
mod shard;
mod sqlcheck;
pub mod stats;
mod stream;
mod table;
mod types;
mod worker;

pub use arrow::{ArrowPart, ArrowResult, ResultFormat, ARROW_STREAM_MEDIA_TYPE, IPC_END_OF_STREAM};
pub use duckdb_icu::TimeZone;
pub use engine::{
    Engine, EngineConfig, DEFAULT_CLEANUP_INTERVAL, DEFAULT_MAX_QUEUED_JOBS,
    DEFAULT_MAX_RESULT_BYTES, DEFAULT_QUERIES_PER_SHARD, DEFAULT_RESULT_TTL,
};
pub use error::{EngineError, JobError};
pub use job::{JobStatus, Status, Submitted};
pub use priority::{SqlThreadPolicy, DEFAULT_SQL_THREAD_NICE, DEFAULT_SQL_THREAD_POLICY};
pub use result::{Page, QueryResult};
pub use shard::{RunOptions, Shard, Waited};
pub use sqlcheck::{
    check_sql, nesting_depth, SqlRejected, DEFAULT_MAX_SQL_BYTES, DEFAULT_MAX_SQL_NESTING,
};
pub use stats::{HistogramSnapshot, Stats};
pub use table::CONSUMED_GRACE;

/// A job's id. Its owner shard is `route::owner_of_query(id, shards)`.
pub type QueryId = uuid::Uuid;

/// The longest long-poll a status request may ask for; longer waits are capped.
pub const MAX_STATUS_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
