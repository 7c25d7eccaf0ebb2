//! loadgen: capacity planner and benchmark harness for compute-agent.
//!
//! The binary (`main.rs`) is a thin shell over these modules so the pieces
//! can be unit-tested; see README.md for the design.

pub mod app;
pub mod capacity;
pub mod cli;
pub mod driver;
pub mod html;
pub mod http;
pub mod ops;
pub mod plot;
pub mod prom;
pub mod report;
pub mod rng;
pub mod sampler;
pub mod scenario;
pub mod slo;
pub mod slope;
pub mod stats;
pub mod table;
pub mod workload;
