//! The commands: `run` and `capacity`, from parsed flags to reports on disk
//! and an exit code (0 every SLO held, 1 an SLO failed, 2 bad flags, 3 the
//! run could not be made, e.g. agent unreachable).
//!
//! Owns: sequencing (configure, run, report) and the progress bar. All
//! measuring is in `driver`, all judging in `report`/`slo`.

use crate::capacity::{self, CapacityReport};
use crate::cli::{CapacityArgs, Cli, Command, ConfigError, LoadArgs, OutputArgs, RunArgs};
use crate::driver::{self, Live, Mode, RunConfig, RunError};
use crate::html;
use crate::report::{self, RunReport, RunSettings};
use crate::sampler;
use crate::slo::Thresholds;
use crate::table;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl AppError {
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Config(_) => 2,
            AppError::Run(_) | AppError::Write { .. } => 3,
        }
    }
}

pub fn main(cli: Cli) -> Result<bool, AppError> {
    match cli.command {
        Command::Run(a) => run_cmd(&a),
        Command::Capacity(a) => capacity_cmd(&a),
    }
}

fn settings(load: &LoadArgs, cfg: &RunConfig) -> RunSettings {
    RunSettings {
        target: load.url.clone(),
        scenario: load.scenario_name(),
        mix: cfg
            .mix
            .entries
            .iter()
            .map(|(k, w)| (k.name().to_string(), *w))
            .collect(),
        statements: cfg
            .env
            .workload
            .statements
            .iter()
            .map(|s| format!("{} (w{}): {}", s.name, s.weight, s.sql))
            .collect(),
        mode: report::mode_name(cfg.mode).to_string(),
        offered_rate: match cfg.mode {
            Mode::Open { rate } => Some(rate),
            Mode::Closed => None,
        },
        connections: cfg.connections,
        threads: cfg.threads.min(cfg.connections),
        duration_s: cfg.duration.as_secs_f64(),
        warmup_s: cfg.warmup.as_secs_f64(),
        seed: cfg.seed,
    }
}

fn progress_bar(out: &OutputArgs, total: Duration, label: String) -> Option<ProgressBar> {
    if out.no_progress || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::new(total.as_millis() as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {elapsed} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_prefix(label);
    Some(pb)
}

/// One measured run with progress; returns its report.
fn one_run(
    load: &LoadArgs,
    mode: Mode,
    th: &Thresholds,
    out: &OutputArgs,
    label: String,
) -> Result<RunReport, AppError> {
    let cfg = load.run_config(mode)?;
    let live = Arc::new(Live::default());
    let pb = progress_bar(out, cfg.warmup + cfg.duration, label);
    let total = cfg.warmup + cfg.duration;
    let mut on_tick = |elapsed: Duration| {
        if let Some(pb) = &pb {
            pb.set_position(elapsed.min(total).as_millis() as u64);
            let done = live.done.load(Ordering::Relaxed);
            let failed = live.failed.load(Ordering::Relaxed);
            let phase = if elapsed > total {
                "draining"
            } else if elapsed < cfg.warmup {
                "warm-up"
            } else {
                "measuring"
            };
            pb.set_message(format!(
                "of {:.0}s, {phase}: {done} ops, {failed} failed",
                total.as_secs_f64()
            ));
        }
    };
    let output = driver::run(&cfg, &live, &mut on_tick)?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    Ok(report::build(
        settings(load, &cfg),
        &output,
        th,
        cfg.env.long_poll.describe(),
    ))
}

fn write_file(path: &Path, data: &str) -> Result<(), AppError> {
    std::fs::write(path, data).map_err(|source| AppError::Write {
        path: path.display().to_string(),
        source,
    })
}

fn emit(
    out: &OutputArgs,
    table_text: &str,
    json: impl FnOnce() -> String,
    page: impl FnOnce() -> String,
) -> Result<(), AppError> {
    let json_to_stdout = out.json.as_deref().is_some_and(|p| p == Path::new("-"));
    if !out.quiet && !json_to_stdout {
        print!("{table_text}");
    }
    if let Some(p) = &out.json {
        let j = json();
        if json_to_stdout {
            println!("{j}");
        } else {
            write_file(p, &j)?;
        }
    }
    if let Some(p) = &out.html {
        write_file(p, &page())?;
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

fn run_cmd(a: &RunArgs) -> Result<bool, AppError> {
    let th = a.slo.thresholds()?;
    let mode = match a.rate {
        Some(rate) => Mode::Open { rate },
        None => Mode::Closed,
    };
    let r = one_run(&a.load, mode, &th, &a.out, "run".into())?;
    emit(
        &a.out,
        &table::run(&r),
        || serde_json::to_string_pretty(&r).expect("report serializes"),
        || html::run_page(&r),
    )?;
    Ok(r.passed)
}

/// Waits until the agent has no queued or running jobs, so one step's
/// backlog is not charged to the next.
fn settle(load: &LoadArgs, timeout: Duration) {
    let Ok(target) = crate::http::Target::parse(&load.url) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let deadline = Instant::now() + timeout;
        let mut conn = None;
        while Instant::now() < deadline {
            match sampler::get(&mut conn, &target, "/health", Duration::from_secs(5)).await {
                Ok((200, body)) => match sampler::parse_health(0.0, &body) {
                    Some(s)
                        if s.queued_jobs.unwrap_or(0.0) + s.running_jobs.unwrap_or(0.0) <= 0.0 =>
                    {
                        return
                    }
                    Some(_) => {}
                    None => return,
                },
                _ => return,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

fn capacity_cmd(a: &CapacityArgs) -> Result<bool, AppError> {
    let th = a.slo.thresholds()?;
    let search = a.search()?;
    // Validate every flag once before the first step sends anything.
    a.load.run_config(Mode::Open { rate: search.start })?;
    let mut n = 0;
    let outcome = capacity::search(&search, |rate| {
        n += 1;
        settle(&a.load, a.settle_timeout);
        let r = one_run(
            &a.load,
            Mode::Open { rate },
            &th,
            &a.out,
            format!("step {n} @ {rate:.1}/s"),
        )?;
        if !a.out.quiet && !a.out.no_progress && std::io::stderr().is_terminal() {
            eprintln!(
                "step {n}: {rate:.1}/s -> {}",
                if r.passed { "PASS" } else { "FAIL" }
            );
        }
        Ok::<_, AppError>((r.passed, r))
    })?;
    let c: CapacityReport = capacity::assemble(outcome);
    emit(
        &a.out,
        &table::capacity(&c),
        || serde_json::to_string_pretty(&c).expect("report serializes"),
        || html::capacity_page(&c),
    )?;
    Ok(c.passed)
}
