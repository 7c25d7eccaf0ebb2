//! HTTP/1.1 server core on glommio: one executor per core, each with its own
//! SO_REUSEPORT listener; a hand-rolled, zero-copy request parser; keep-alive,
//! pipelining, chunked bodies, limits and graceful shutdown.
//!
//! ```no_run
//! use net::{Handler, Request, Response, Server, ServerConfig, ShardInfo};
//!
//! struct Hello;
//! impl Handler for Hello {
//!     async fn handle(&self, _req: &mut Request<'_>) -> Response {
//!         Response::json(200, br#"{"hello":"world"}"#.to_vec())
//!     }
//! }
//!
//! let server = Server::start(ServerConfig::default(), |_shard: ShardInfo| async { Hello }).unwrap();
//! println!("listening on {}", server.local_addr());
//! server.shutdown_on_signals();
//! server.join().unwrap();
//! ```

mod body;
mod config;
mod conn;
mod date;
mod error;
mod handler;
pub mod parse;
mod request;
mod response;
mod sched;
mod server;
mod timeouts;

pub use config::{Limits, ServerConfig, CONNECTION_WORST_BYTES};
pub use error::{RequestError, ServerError};
pub use handler::{Admission, Handler, ShardInfo};
pub use request::{percent_decode, Request, Version};
pub use response::{reason, HeaderValue, Response, Segment};
pub use sched::ReactorPriority;
pub use server::{Server, ServerHandle};

/// Entry points for `cargo fuzz` (net/fuzz); not part of the API.
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::body::fuzz_chunked;
}

/// The number of CPUs this process may run on (its affinity mask), at least 1.
pub fn default_shards() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
