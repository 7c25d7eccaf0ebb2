//! `compute-gateway`: the policy enforcement point. Parses the configuration
//! (flags with environment fallbacks, `--help` lists them), sets up JSON logs,
//! opens the store (migrations run) and local DuckDB, bootstraps the admin
//! token, starts the resolver (reading the store) with its health prober, the
//! store refresher and the job reaper, the Flight SQL door when `FLIGHT_ADDR`
//! is set, then serves HTTP until SIGINT/SIGTERM,
//! on a current-thread runtime or `WORKER_THREADS` workers.
//!
//! Owns start-up order and exit codes: 2 for a bad configuration, 1 when
//! something it needs cannot be opened. It never logs a token.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use client::resolver::Resolver;
use client::{Executor, LocalExecutor, Value};
use gateway::query::QueryService;
use gateway::server::app::App;
use gateway::server::config::{Config, LogLevel};
use gateway::store::Store;

/// jemalloc, for Rust and (unprefixed) for the local DuckDB alike, as in the
/// agent.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn init_logs(level: LogLevel) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::filter::LevelFilter;
    // Written off the query path by the appender's thread, through a bounded
    // queue that is never lossy: when stderr cannot keep up, queries wait
    // for the queue rather than an audit line being dropped.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let filter = match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_max_level(filter)
        .with_writer(writer)
        .init();
    guard
}

fn main() -> ExitCode {
    let cfg = match Config::from_env() {
        Ok(c) => c,
        Err(gateway::server::config::ConfigError::Usage(m)) => {
            // --help and --version land here too.
            print!("{m}");
            return if m.starts_with("error") {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
        Err(e) => {
            eprintln!("compute-gateway: bad configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let _logs = init_logs(cfg.log_level);
    // Audit lines are info lines: their own batched writer when they are on.
    let _audit = matches!(
        cfg.log_level,
        LogLevel::Info | LogLevel::Debug | LogLevel::Trace
    )
    .then(gateway::query::audit::start_sink)
    .flatten();
    // One thread by default: a query's request, its agent call and its answer
    // then never wake another thread (the profile in docs/benchmarks.md).
    let mut builder = if cfg.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(cfg.worker_threads);
        b
    };
    let rt = match builder.enable_all().thread_name("gateway").build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("compute-gateway: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "compute-gateway stopped");
            eprintln!("compute-gateway: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(cfg: Config) -> Result<(), String> {
    let store = Store::open(&cfg.database_url)
        .await
        .map_err(|e| format!("cannot open the store: {e}"))?;
    if let Some(token) = &cfg.admin_token {
        store
            .ensure_admin(&cfg.admin_user, token)
            .await
            .map_err(|e| format!("cannot set up the bootstrap admin {}: {e}", cfg.admin_user))?;
    }
    let local = LocalExecutor::open_locked(
        cfg.duckdb_path.as_deref(),
        cfg.duckdb_read_only,
        &cfg.duckdb_time_zone,
    )
    .map_err(|e| e.to_string())?;
    let default_catalog = match &cfg.default_catalog {
        Some(c) => c.clone(),
        None => current_database(&local).await?,
    };
    let mut links = cfg.agents.clone();
    if let Some(f) = &cfg.agent_ca_file {
        let pem =
            client::resolver::config::read_ca_file(f).map_err(|e| format!("AGENT_CA_FILE: {e}"))?;
        links.ca_pem = Some(Arc::new(pem));
    }
    let resolver = Resolver::new(
        Box::new(store.config_source_with(links)),
        cfg.rollout.clone(),
        local.clone(),
    )
    .map_err(|e| format!("the stored routing configuration does not load: {e}"))?;
    let _resolver_tasks = resolver.spawn_background(cfg.store_refresh);
    let _refresh = store.spawn_refresh(cfg.store_refresh);
    let listener = tokio::net::TcpListener::bind(cfg.listen_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen_addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let header_timeout = cfg.request_timeout;
    let cfg_tls = cfg.tls.clone();
    let tls_reload = cfg.tls_reload;
    let shutdown_grace = cfg.shutdown_grace;
    tracing::info!(
        listen_addr = %addr,
        store = ?store.backend(),
        duckdb_path = ?cfg.duckdb_path,
        duckdb_read_only = cfg.duckdb_read_only,
        duckdb_time_zone = %cfg.duckdb_time_zone,
        default_catalog = %default_catalog,
        remote_routing = cfg.rollout.0.remote_routing,
        admin_bootstrap = cfg.admin_token.is_some(),
        "compute-gateway listening"
    );
    let query = Arc::new(QueryService::new(
        store,
        resolver,
        local,
        default_catalog,
        cfg.query_timeout,
        cfg.catalog_ttl,
        cfg.admission,
    ));
    let pgwire = match cfg.pgwire_addr {
        None => None,
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on PGWIRE_ADDR {addr}: {e}"))?;
            tracing::info!(pgwire_addr = %l.local_addr().map_err(|e| e.to_string())?, "PostgreSQL door listening");
            Some(l)
        }
    };
    let pgwire_plain_loopback = cfg.pgwire_plain_loopback;
    // The Flight SQL door (FLIGHT_ADDR): bound now, so a bad address stops start-up.
    let flight = match cfg.flight() {
        Some(f) => {
            let door = gateway::flight::Flight::bind(f, query.clone()).await?;
            tracing::info!(flight_addr = %door.local_addr().map_err(|e| e.to_string())?, "Flight SQL listening");
            Some(door)
        }
        None => None,
    };
    // The query history's writer (off the query path; flushed on shutdown).
    let history = cfg
        .query_history
        .map(|retention| gateway::query::history::History::start(query.store.clone(), retention));
    let app = App::new(cfg, query.clone());
    let _reaper = app.jobs.spawn_reaper();
    let handler = {
        let app = app.clone();
        Arc::new(
            move |req: http::Request<hyper::body::Incoming>, peer: std::net::SocketAddr| {
                app.clone().handle(req, peer)
            },
        )
    };
    let tls = match &cfg_tls {
        None => None,
        Some(files) => {
            let tls = gateway::tls::Tls::load(&files.cert, &files.key)
                .map_err(|e| format!("TLS_CERT/TLS_KEY: {e}"))?;
            Some(tls)
        }
    };
    let _tls_watch = tls.as_ref().map(|t| t.spawn_watch(tls_reload));
    let _flight = match flight {
        Some(door) => Some(door.spawn(tls.clone())?),
        None => None,
    };
    let _pgwire = pgwire.map(|l| {
        tokio::spawn(gateway::pgwire::serve(
            l,
            query.clone(),
            tls.clone(),
            pgwire_plain_loopback,
        ))
    });
    let server = gateway::server::http::serve(listener, header_timeout, tls.clone(), handler);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::pin!(server);
    tokio::select! {
        _ = &mut server => return Ok(()),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
    }
    // Drain: every door keeps serving, but answers new queries 503
    // (SHUTTING_DOWN) and /health `draining`; queries and streams in flight
    // finish, up to the grace period.
    query.drain.start();
    let in_flight = query.drain.in_flight();
    let finished = tokio::select! {
        f = query.drain.wait_idle(shutdown_grace) => f,
        _ = &mut server => false,
    };
    // Every record queued so far reaches the store before the exit.
    if let Some(h) = &history {
        h.close().await;
    }
    tracing::info!(
        in_flight_at_signal = in_flight,
        left_unfinished = query.drain.in_flight(),
        all_finished = finished,
        "compute-gateway stopped"
    );
    Ok(())
}

/// The local engine's database name: the default catalog when not configured.
async fn current_database(local: &LocalExecutor) -> Result<String, String> {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    let rows = Executor::run(local, "SELECT current_database()", deadline)
        .await
        .map_err(|e| format!("cannot read the local database's name: {e}"))?
        .collect()
        .await
        .map_err(|e| format!("cannot read the local database's name: {e}"))?;
    match rows.first().and_then(|r| r.first()) {
        Some(Value::Text(s)) => Ok(s.to_lowercase()),
        other => Err(format!("current_database() answered {other:?}")),
    }
}
