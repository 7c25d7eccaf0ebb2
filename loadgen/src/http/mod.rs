//! A lean HTTP/1.1 keep-alive client: request bytes, response framing, one
//! connection per in-flight request, and a bounded per-thread pool.

pub mod conn;
pub mod parse;
pub mod pool;
pub mod request;
pub mod target;

pub use conn::{Conn, HttpError, Response};
pub use pool::Pool;
pub use target::Target;
