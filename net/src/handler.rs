//! The handler seam: what the application implements, and what each shard
//! tells it about itself. Owns no behaviour.

use crate::{Request, Response};

/// Which shard a handler instance lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardInfo {
    /// 0-based shard index.
    pub id: usize,
    /// Number of shards in the server.
    pub count: usize,
}

/// The application: one instance per shard, built on that shard's thread by
/// the factory given to [`Server::start`](crate::Server::start), shared by the
/// shard's connections. Handlers run on the shard's reactor thread: they may
/// await (timers, glommio channels to other shards, long polls) but must
/// never block the thread.
///
/// Requests on one connection are answered in order (a slow handler delays
/// the requests pipelined behind it on that connection only); different
/// connections are independent.
#[allow(async_fn_in_trait)] // Handlers are !Send by design (thread-per-core).
pub trait Handler: 'static {
    /// Answers one request. The request (body included) is borrowed from the
    /// connection buffer; copy what must outlive the call.
    async fn handle(&self, req: &mut Request<'_>) -> Response;

    /// Called on each shard when shutdown begins, while in-flight requests
    /// drain (default: nothing).
    async fn shutdown(&self) {}
}
