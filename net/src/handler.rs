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

/// What [`Handler::admit`] decided about a request whose body has not been
/// read yet.
#[derive(Debug)]
pub enum Admission {
    /// Read the body and call [`Handler::handle`].
    Accept,
    /// Answer with this response without reading the body. The connection
    /// is kept only when the whole body had already arrived with the head
    /// (it is then skipped); otherwise the response carries
    /// `Connection: close` and the connection closes after it (politely:
    /// what the client still sends is read and discarded for a moment).
    Reject(Response),
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

    /// Called with the parsed head before any body byte is read, buffered or
    /// budgeted (and before `100 Continue` is sent): the place to refuse a
    /// request cheaply, e.g. a missing credential. `req.body()` is the whole
    /// body only when it already arrived with the head
    /// ([`Request::body_available`]); otherwise it is empty. Runs on the
    /// reactor: it must be quick and must not block. Default: accept.
    fn admit(&self, req: &mut Request<'_>) -> Admission {
        let _ = req;
        Admission::Accept
    }

    /// Called on each shard once draining is over: every shard has stopped
    /// accepting and its in-flight requests have been answered and written
    /// (or the shutdown deadline has passed), so nothing on any shard waits
    /// for this handler's work any more. It should stop the application's
    /// per-shard work (interrupting what is left) and return; net bounds it
    /// by the time left until the deadline, and at least one second.
    /// Default: nothing.
    async fn shutdown(&self) {}
}
