//! The gateway's half of the compute platform, as a library any Rust gateway embeds:
//! the agent client ([`AgentClient`]), embedded DuckDB for local compute
//! ([`LocalExecutor`]) behind the same [`Executor`] trait, and the compute resolver
//! ([`resolver::Resolver`]) with its rollout controls. The `agentctl` binary is built
//! on it.
//!
//! This crate speaks to agents over HTTP only: it never depends on the agent's own
//! crates (`compute-agent`, `executor`, `net`).

pub mod agent;
pub mod batches;
pub mod duration;
pub mod error;
pub mod local;
pub mod resolver;
pub mod rows;
pub mod sign;
pub mod value;
pub mod wire;

pub use agent::{AgentClient, AgentConfig, ArrowPages, ArrowRun, Page};
pub use batches::ArrowBatches;
pub use error::{ClientError, SHUTTING_DOWN};
pub use local::LocalExecutor;
pub use rows::{Executor, QueryRows, Via};
pub use value::{ColumnType, Param, Row, Value};
