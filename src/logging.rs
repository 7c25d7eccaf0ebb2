//! Structured logs: one JSON object per line on stderr, written by a background thread.
//!
//! Owns subscriber set-up only. Reactor threads must never block on stderr, so events
//! go through `tracing-appender`'s non-blocking writer; if its buffer ever fills, lines
//! are dropped rather than stalling request handling.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::LevelFilter;

use crate::config::LogLevel;

/// Installs the global JSON subscriber. Keep the guard alive until exit: dropping it
/// flushes the lines still queued.
pub fn init(level: LogLevel) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
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
        .with_target(false)
        .with_max_level(filter)
        .with_writer(writer)
        .init();
    guard
}
