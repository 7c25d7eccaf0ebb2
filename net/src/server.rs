//! Server start-up and shutdown: binds the SO_REUSEPORT listeners, starts one
//! pinned glommio executor per shard, runs the application's factory on each,
//! accepts connections, and drains on shutdown. Owns the shard lifecycle, the
//! per-shard connection registry and the per-shard body budget; never parses
//! HTTP (see `conn`) and never cuts a connection that is still owed an
//! answer before the shutdown deadline.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::config::{Limits, ServerConfig};
use crate::date::DateCache;
use crate::error::ServerError;
use crate::handler::{Handler, ShardInfo};
use crate::timeouts::{self, Deadline, Phase};

/// State shared by the handle and every shard thread.
struct Shared {
    shutting_down: AtomicBool,
    /// Shards in all; shards whose connections have drained.
    shards: usize,
    drained: AtomicUsize,
    /// The bound listeners. The shards accept on duplicates of these fds, so
    /// these stay open (and valid for `shutdown(2)`) until the handle drops.
    listeners: Vec<Socket>,
}

impl Shared {
    fn begin_shutdown(&self) {
        if self.shutting_down.swap(true, Ordering::SeqCst) {
            return;
        }
        for l in &self.listeners {
            // Shutting a listening socket down wakes every pending accept
            // (it fails with EINVAL) and refuses new connections: the
            // cross-thread wake-up without any extra channel.
            // SAFETY: the fd is owned by `l`, which is alive.
            unsafe { libc::shutdown(l.as_raw_fd(), libc::SHUT_RDWR) };
        }
    }
}

/// Per-shard state shared by the accept loop and its connections (one thread).
pub(crate) struct ShardState {
    pub(crate) limits: Limits,
    pub(crate) date: DateCache,
    shutting_down: Cell<bool>,
    /// Set when the shard has finished; stops the sweeper.
    stopped: Cell<bool>,
    connections: Cell<usize>,
    /// Body bytes reserved by requests in progress (see `Limits::body_budget_per_shard`).
    body_used: Cell<usize>,
    /// Live connections' deadlines, indexed by fd (fds are small and dense,
    /// so this is a slab without hashing).
    slots: RefCell<Vec<Option<Rc<Deadline>>>>,
}

impl ShardState {
    pub(crate) fn shutting_down(&self) -> bool {
        self.shutting_down.get()
    }

    /// Counts a connection in; it is counted out when the guard drops.
    pub(crate) fn enter(self: &Rc<Self>, fd: RawFd) -> ConnectionGuard {
        self.connections.set(self.connections.get() + 1);
        let deadline = Rc::new(Deadline::new(fd));
        let idx = fd as usize;
        let mut slots = self.slots.borrow_mut();
        if slots.len() <= idx {
            slots.resize(idx + 1, None);
        }
        slots[idx] = Some(deadline.clone());
        ConnectionGuard {
            shard: self.clone(),
            fd,
            deadline,
        }
    }

    /// Grows `permit` (or makes one) to cover `total` body bytes, waiting up
    /// to `body_budget_wait` for other requests to give budget back. A body
    /// larger than the whole budget is admitted only when nothing else holds
    /// any. Returns false when the budget stayed short.
    pub(crate) async fn reserve_body(
        self: &Rc<Self>,
        permit: &mut Option<BodyPermit>,
        total: usize,
    ) -> bool {
        let have = permit.as_ref().map_or(0, |p| p.bytes);
        if total <= have {
            return true;
        }
        let want = total - have;
        let give_up = Instant::now() + self.limits.body_budget_wait;
        loop {
            let used = self.body_used.get();
            if used + want <= self.limits.body_budget_per_shard || used == have {
                self.body_used.set(used + want);
                match permit {
                    Some(p) => p.bytes += want,
                    None => {
                        *permit = Some(BodyPermit {
                            shard: self.clone(),
                            bytes: want,
                        })
                    }
                }
                return true;
            }
            if Instant::now() >= give_up || self.shutting_down() {
                return false;
            }
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Calls `f` with every live connection's deadline.
    fn for_each_connection(&self, mut f: impl FnMut(&Deadline)) {
        for d in self.slots.borrow().iter().flatten() {
            f(d);
        }
    }
}

/// Body bytes a request holds from its shard's budget; given back on drop.
pub(crate) struct BodyPermit {
    shard: Rc<ShardState>,
    bytes: usize,
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        let s = &self.shard.body_used;
        s.set(s.get() - self.bytes);
    }
}

/// Keeps a connection registered with its shard while it lives. Must drop
/// before the socket closes, so shutdown never touches a reused fd.
pub(crate) struct ConnectionGuard {
    shard: Rc<ShardState>,
    fd: RawFd,
    pub(crate) deadline: Rc<Deadline>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.shard.connections.set(self.shard.connections.get() - 1);
        self.shard.slots.borrow_mut()[self.fd as usize] = None;
    }
}

/// Starts servers. See [`Server::start`].
pub struct Server;

impl Server {
    /// Binds `config.addr` once per shard (SO_REUSEPORT; with port 0 the
    /// first bind picks the port and the others reuse it), starts
    /// `config.shards` glommio executors, runs `factory` on each shard's
    /// thread (all shards concurrently, so factories may build a channel
    /// mesh between shards), and returns once every shard is serving.
    ///
    /// A factory that panics makes `start` fail with
    /// [`ServerError::ShardPanicked`] once the other shards' factories have
    /// returned: factories that wait for each other (joining a mesh) must not
    /// panic, or `start` waits for them forever.
    pub fn start<F, Fut, H>(config: ServerConfig, factory: F) -> Result<ServerHandle, ServerError>
    where
        F: Fn(ShardInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = H> + 'static,
        H: Handler,
    {
        if config.shards == 0 {
            return Err(ServerError::NoShards);
        }
        let first = bind(config.addr)?;
        let local_addr = first
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or_else(|| ServerError::Bind {
                addr: config.addr,
                source: std::io::Error::other("bound socket has no inet address"),
            })?;
        let mut listeners = vec![first];
        for _ in 1..config.shards {
            listeners.push(bind(local_addr)?);
        }
        let mut dups = Vec::with_capacity(listeners.len());
        for l in &listeners {
            dups.push(l.try_clone().map_err(|source| ServerError::Bind {
                addr: local_addr,
                source,
            })?);
        }
        let shared = Arc::new(Shared {
            shutting_down: AtomicBool::new(false),
            shards: config.shards,
            drained: AtomicUsize::new(0),
            listeners,
        });
        let realtime =
            crate::sched::decide(config.reactor_priority).map_err(ServerError::Realtime)?;
        let factory = Arc::new(factory);
        let cpus = allowed_cpus();
        let (ready_tx, ready_rx) = mpsc::channel::<usize>();
        let mut handle = ServerHandle {
            local_addr,
            realtime,
            shared: shared.clone(),
            threads: Vec::new(),
        };
        for (id, listener) in dups.into_iter().enumerate() {
            let placement = match (config.pin_to_cores, cpus.is_empty()) {
                (true, false) => Placement::Fixed(cpus[id % cpus.len()]),
                _ => Placement::Unbound,
            };
            let info = ShardInfo {
                id,
                count: config.shards,
            };
            let factory = factory.clone();
            let shared = shared.clone();
            let ready_tx = ready_tx.clone();
            let limits = config.limits.clone();
            let deadline = config.shutdown_deadline;
            let spawned = LocalExecutorBuilder::new(placement)
                .name(&format!("net-shard-{id}"))
                .io_memory(config.io_memory)
                .spawn(move || {
                    if realtime {
                        // Permitted (decided above for the same process), so a
                        // failure here cannot happen short of a racing rlimit
                        // change; the shard then just runs at normal priority.
                        let _ = crate::sched::make_current_thread_realtime();
                    }
                    async move {
                        let handler = Rc::new(factory(info).await);
                        drop(factory);
                        let _ = ready_tx.send(id);
                        // Dropped now, so `start` sees a disconnect (not a hang)
                        // if another shard's factory fails.
                        drop(ready_tx);
                        run_shard(listener, handler, shared, limits, deadline).await;
                    }
                });
            match spawned {
                Ok(t) => handle.threads.push((id, t)),
                Err(e) => {
                    handle.shutdown();
                    let _ = handle.join_threads();
                    return Err(ServerError::Executor {
                        shard: id,
                        message: e.to_string(),
                    });
                }
            }
        }
        drop(ready_tx);
        // Wait until every factory has finished. A shard whose executor could
        // not be built (or whose factory panicked) drops its sender instead.
        let mut ready = 0;
        while ready < config.shards {
            match ready_rx.recv() {
                Ok(_) => ready += 1,
                Err(_) => {
                    handle.shutdown();
                    return Err(handle
                        .join_threads()
                        .err()
                        .unwrap_or(ServerError::Executor {
                            shard: 0,
                            message: "a shard stopped during start-up".into(),
                        }));
                }
            }
        }
        Ok(handle)
    }
}

/// Controls a running server. Dropping it without [`join`](Self::join)
/// begins shutdown (the shard threads finish on their own).
pub struct ServerHandle {
    local_addr: SocketAddr,
    realtime: bool,
    shared: Arc<Shared>,
    threads: Vec<(usize, ExecutorJoinHandle<()>)>,
}

impl ServerHandle {
    /// The bound address (with the port chosen when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether the reactors run real-time (`SCHED_FIFO`), as decided from
    /// [`ServerConfig::reactor_priority`](crate::ServerConfig).
    pub fn reactor_realtime(&self) -> bool {
        self.realtime
    }

    /// Stops accepting on every shard, closes idle keep-alive connections,
    /// lets in-flight requests finish (answered with `Connection: close`)
    /// until the shutdown deadline, then stops the shards. Idempotent;
    /// callable from any thread.
    pub fn shutdown(&self) {
        self.shared.begin_shutdown();
    }

    /// Starts a thread that calls [`shutdown`](Self::shutdown) on SIGTERM or
    /// SIGINT; a second SIGTERM or SIGINT stops the process at once (the
    /// signal's default action: terminated by that signal). If the handlers
    /// cannot be installed, says so on stderr and carries on (the server
    /// still stops on an explicit `shutdown`).
    pub fn shutdown_on_signals(&self) {
        if let Err(e) = self.try_shutdown_on_signals() {
            eprintln!("net: {e}");
        }
    }

    /// Like [`shutdown_on_signals`](Self::shutdown_on_signals), with the error.
    pub fn try_shutdown_on_signals(&self) -> Result<(), ServerError> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals =
            signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(ServerError::Signals)?;
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("net-signals".into())
            .spawn(move || {
                let mut forever = signals.forever();
                if forever.next().is_some() {
                    shared.begin_shutdown();
                }
                if let Some(sig) = forever.next() {
                    eprintln!("net: second signal during shutdown, stopping at once");
                    let _ = signal_hook::low_level::emulate_default_handler(sig);
                    std::process::exit(128 + sig);
                }
            })
            .map_err(ServerError::Signals)?;
        Ok(())
    }

    /// Waits until every shard has stopped (after a shutdown).
    pub fn join(mut self) -> Result<(), ServerError> {
        self.join_threads()
    }

    fn join_threads(&mut self) -> Result<(), ServerError> {
        let mut result = Ok(());
        for (shard, t) in self.threads.drain(..) {
            let r = match t.join() {
                Ok(()) => Ok(()),
                Err(glommio::GlommioError::BuilderError(
                    glommio::BuilderErrorKind::ThreadPanic(_),
                )) => Err(ServerError::ShardPanicked { shard }),
                Err(e) => Err(ServerError::Executor {
                    shard,
                    message: e.to_string(),
                }),
            };
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shared.begin_shutdown();
        }
    }
}

fn bind(addr: SocketAddr) -> Result<Socket, ServerError> {
    let err = |source| ServerError::Bind { addr, source };
    let sock =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    sock.set_reuse_port(true).map_err(err)?;
    sock.set_reuse_address(true).map_err(err)?;
    sock.bind(&SockAddr::from(addr)).map_err(err)?;
    sock.listen(1024).map_err(err)?;
    Ok(sock)
}

/// CPUs in this process's affinity mask, in order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

async fn run_shard<H: Handler>(
    listener: Socket,
    handler: Rc<H>,
    shared: Arc<Shared>,
    limits: Limits,
    deadline: Duration,
) {
    let max_connections = limits.max_connections_per_shard;
    let state = Rc::new(ShardState {
        limits,
        date: DateCache::new(),
        shutting_down: Cell::new(false),
        stopped: Cell::new(false),
        connections: Cell::new(0),
        body_used: Cell::new(0),
        slots: RefCell::new(Vec::new()),
    });
    glommio::spawn_local(sweep(state.clone())).detach();
    // SAFETY: `into_raw_fd` hands over sole ownership of a bound, listening
    // socket to glommio's listener.
    let listener =
        unsafe { TcpListener::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(listener)) };
    loop {
        if shared.shutting_down.load(Ordering::Relaxed) {
            break;
        }
        match listener.accept().await {
            Ok(stream) => {
                if shared.shutting_down.load(Ordering::Relaxed) {
                    break;
                }
                if state.connections.get() >= max_connections {
                    glommio::spawn_local(crate::conn::refuse(stream)).detach();
                    continue;
                }
                glommio::spawn_local(crate::conn::serve(stream, handler.clone(), state.clone()))
                    .detach();
            }
            Err(_) if shared.shutting_down.load(Ordering::Relaxed) => break,
            // Out of fds or memory: keep the shard alive and try again soon.
            Err(_) => glommio::timer::sleep(Duration::from_millis(10)).await,
        }
    }
    drop(listener);
    drain(&state, &*handler, &shared, deadline).await;
    state.stopped.set(true);
}

/// Cuts connections whose wait deadline has passed (see `timeouts`).
async fn sweep(state: Rc<ShardState>) {
    let every = timeouts::sweep_interval(&[state.limits.header_timeout, state.limits.idle_timeout]);
    while !state.stopped.get() {
        glommio::timer::sleep(every).await;
        let now = timeouts::coarse_ms();
        state.for_each_connection(|d| {
            d.expire(now);
        });
    }
}

/// How long a connection that has answered its last request may take to
/// see the client's close before the shard stops (the connection's own
/// lingering close is bounded by the same second).
const CLOSE_GRACE: Duration = Duration::from_millis(1100);

/// How long the drain waits for a connection accepted before shutdown to
/// send its first request. Its client connected to send one and may well
/// have sent it already, the bytes not yet read: a FIN at once would drop a
/// request the client had every reason to think delivered (a kept-alive
/// connection that answered its last request is another matter: HTTP lets a
/// server close those, and clients retry on them). Bounded, so a client
/// that connects and says nothing delays shutdown by this much at most.
const FRESH_GRACE: Duration = Duration::from_millis(500);

/// Drains a shard: idle connections get a FIN (and close when the client
/// closes), fresh ones (accepted, nothing read yet) get [`FRESH_GRACE`] to
/// send their first request and a FIN after it, busy ones finish their
/// request and answer it with `Connection: close`; once every shard is
/// drained (or at the deadline) the handler's `shutdown` runs; connections
/// still busy at the deadline are cut.
/// Nothing here shuts a socket's read side while an answer may be owed:
/// unread input makes the kernel answer the close with a reset, which can
/// destroy a response the client has not read yet.
async fn drain<H: Handler>(
    state: &Rc<ShardState>,
    handler: &H,
    shared: &Shared,
    deadline: Duration,
) {
    let until = Instant::now() + deadline;
    let tick = Duration::from_millis(5);
    state.shutting_down.set(true);
    let fin = |phase: Phase| {
        state.for_each_connection(|d| {
            if d.phase() == phase {
                d.set_phase(Phase::FinSent);
                d.shutdown(libc::SHUT_WR);
            }
        })
    };
    // Connections the drain still waits for: busy, or fresh in their grace.
    let waited_for = || {
        let mut n = 0;
        state.for_each_connection(|d| {
            n += usize::from(matches!(d.phase(), Phase::Busy | Phase::Fresh))
        });
        n
    };
    fin(Phase::Idle);
    let fresh_until = Instant::now() + FRESH_GRACE;
    loop {
        let now = Instant::now();
        if now >= fresh_until || now >= until {
            // What is still fresh sent nothing in its grace: close it as idle.
            fin(Phase::Fresh);
        }
        if now >= until || waited_for() == 0 {
            break;
        }
        glommio::timer::sleep(tick).await;
    }
    // Requests on this shard may still wait on another shard's handler:
    // shut handlers down only when every shard is drained.
    shared.drained.fetch_add(1, Ordering::SeqCst);
    while shared.drained.load(Ordering::SeqCst) < shared.shards && Instant::now() < until {
        glommio::timer::sleep(tick).await;
    }
    let left = until.saturating_duration_since(Instant::now());
    let _ = glommio::timer::timeout(left.max(Duration::from_secs(1)), async {
        handler.shutdown().await;
        Ok(())
    })
    .await;
    // Past the deadline: cut what is still busy, so clients see the close now
    // rather than whenever the executor's leftover tasks are dropped.
    state.for_each_connection(|d| {
        if d.phase() == Phase::Busy {
            d.shutdown(libc::SHUT_RDWR);
        }
    });
    // Closing connections end by themselves within their lingering second.
    let grace = Instant::now() + CLOSE_GRACE;
    while state.connections.get() > 0 && Instant::now() < grace {
        glommio::timer::sleep(tick).await;
    }
    state.for_each_connection(|d| d.shutdown(libc::SHUT_RDWR));
}
