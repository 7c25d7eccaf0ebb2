//! Command-line interface: flags, their defaults, and turning them into the
//! typed configuration the driver runs.
//!
//! Owns: flag parsing and validation only (a bad flag is a clear error and
//! exit code 2, before any load is sent). Never sends a request.

use crate::capacity::SearchConfig;
use crate::driver::{Mode, RunConfig};
use crate::http::request::build;
use crate::http::Target;
use crate::ops::{LongPoll, LongPollMode, OpEnv};
use crate::scenario::{Kind, Mix};
use crate::slo::Thresholds;
use crate::workload::Workload;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Capacity planner and benchmark harness for compute-agent"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one load test and judge the SLOs (exit 1 when one fails).
    Run(RunArgs),
    /// Search for the highest rate at which every SLO holds.
    Capacity(CapacityArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Open loop: start operations at this many per second (latency from the
    /// intended start). Without it, closed loop with --connections in flight.
    #[arg(long)]
    pub rate: Option<f64>,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub slo: SloArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct CapacityArgs {
    /// First rate tried (operations per second).
    #[arg(long, default_value_t = 10.0)]
    pub start_rate: f64,
    /// Highest rate tried.
    #[arg(long, default_value_t = 5000.0)]
    pub max_rate: f64,
    /// Rate multiplier while stepping up.
    #[arg(long, default_value_t = 2.0)]
    pub factor: f64,
    /// Stop bisecting when (lowest fail - highest pass) / highest pass <= this.
    #[arg(long, default_value_t = 0.1)]
    pub precision: f64,
    /// Most steps (runs) in the search.
    #[arg(long, default_value_t = 12)]
    pub max_steps: usize,
    /// Between steps, wait up to this long for the agent's queue to empty.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub settle_timeout: Duration,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub slo: SloArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioArg {
    Health,
    Execute,
    Lifecycle,
    Status,
    /// POST /v1/query to a gateway (--url is the gateway, --token a user's token).
    Gateway,
    /// Weighted mix of the others, see --mix.
    Mixed,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Agent (or, for the gateway scenario, gateway) base URL (http only).
    #[arg(long, env = "LOADGEN_URL", default_value = "http://127.0.0.1:9443")]
    pub url: String,
    /// Token: sent to an agent as X-Agent-Token, to a gateway (the gateway
    /// scenario) as Authorization: Bearer. Without the flag or LOADGEN_TOKEN,
    /// $AGENT_TOKEN is used.
    #[arg(long, env = "LOADGEN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long, value_enum, default_value_t = ScenarioArg::Lifecycle)]
    pub scenario: ScenarioArg,
    /// Weights for --scenario mixed.
    #[arg(long, default_value = "lifecycle=5,status=3,execute=1,health=1")]
    pub mix: String,
    /// SQL to send (repeatable; equal weights). Ignored with --workload.
    /// `{seq}` in it becomes a number unique to each operation.
    #[arg(long)]
    pub sql: Vec<String>,
    /// TOML workload file: [[statement]] name, sql, weight.
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// Connection cap (open loop) or operations in flight (closed loop).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Worker threads, each with its own event loop (default: CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load sent but not measured before the window, to warm caches and pools.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Seed for the operation mix (same seed, same mix per worker).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Lifecycle: give up on a job not terminal after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub job_timeout: Duration,
    /// Lifecycle: status poll interval when long-poll is not available.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Lifecycle: wait_ms for long-poll status requests.
    #[arg(long, default_value_t = 5000)]
    pub wait_ms: u64,
    #[arg(long, value_enum, default_value_t = LongPollMode::Auto)]
    pub long_poll: LongPollMode,
    /// Lifecycle: max_results per results page.
    #[arg(long, default_value_t = 1000)]
    pub page_size: usize,
    /// Lifecycle: do not DELETE jobs (leave them to TTL cleanup).
    #[arg(long)]
    pub keep_jobs: bool,
    /// Status scenario: jobs created before the run and read during it.
    #[arg(long, default_value_t = 16)]
    pub status_jobs: usize,
    /// GET /health sampling interval.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub sample_interval: Duration,
    /// After the window, wait this long for operations still in flight.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct SloArgs {
    /// Availability SLO of POST /queries, percent.
    #[arg(long, default_value_t = 99.9)]
    pub slo_availability: f64,
    /// p95 time in QUEUED must be below this.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub slo_queue_p95: Duration,
    /// p95 completion latency (intended start -> terminal) must be below this.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub slo_completion_p95: Duration,
    /// stored_jobs may grow by at most max(this many jobs, --slo-stored-rel x mean).
    #[arg(long, default_value_t = 10.0)]
    pub slo_stored_slack: f64,
    #[arg(long, default_value_t = 0.1)]
    pub slo_stored_rel: f64,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Write the JSON report here ("-" for stdout, which then gets no table).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report with plots here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// No table on stdout.
    #[arg(long)]
    pub quiet: bool,
    /// No progress bar even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 10s, 1m30s)"))
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(transparent)]
    Target(#[from] crate::http::target::TargetError),
    #[error(transparent)]
    Workload(#[from] crate::workload::WorkloadError),
    #[error("--mix: {0}")]
    Mix(#[from] crate::scenario::MixError),
    #[error("{0}")]
    Invalid(String),
}

impl LoadArgs {
    pub fn scenario_name(&self) -> String {
        format!("{:?}", self.scenario).to_lowercase()
    }

    pub fn mix(&self) -> Result<Mix, ConfigError> {
        Ok(match self.scenario {
            ScenarioArg::Health => Mix::single(Kind::Health),
            ScenarioArg::Execute => Mix::single(Kind::Execute),
            ScenarioArg::Lifecycle => Mix::single(Kind::Lifecycle),
            ScenarioArg::Status => Mix::single(Kind::Status),
            ScenarioArg::Gateway => Mix::single(Kind::Gateway),
            ScenarioArg::Mixed => Mix::parse(&self.mix)?,
        })
    }

    /// `--token`, else `$LOADGEN_TOKEN` (both through clap), else the agent's
    /// `$AGENT_TOKEN`, which loadgen read before `--token` had an env of its own.
    pub fn token(&self) -> Option<String> {
        self.token
            .clone()
            .or_else(|| std::env::var("AGENT_TOKEN").ok().filter(|t| !t.is_empty()))
    }

    pub fn workload(&self) -> Result<Workload, ConfigError> {
        Ok(match &self.workload {
            Some(p) => Workload::from_file(p)?,
            None if self.sql.is_empty() => Workload::from_sql(&["SELECT 1".to_string()])?,
            None => Workload::from_sql(&self.sql)?,
        })
    }

    /// Builds the driver's configuration for one run at `mode`.
    pub fn run_config(&self, mode: Mode) -> Result<RunConfig, ConfigError> {
        if self.connections == 0 {
            return Err(ConfigError::Invalid(
                "--connections must be at least 1".into(),
            ));
        }
        if self.duration.is_zero() {
            return Err(ConfigError::Invalid("--duration must be positive".into()));
        }
        if self.page_size == 0 {
            return Err(ConfigError::Invalid(
                "--page-size must be at least 1".into(),
            ));
        }
        if let Mode::Open { rate } = mode {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(ConfigError::Invalid(format!(
                    "--rate must be a positive number, got {rate}"
                )));
            }
        }
        let target = Target::parse(&self.url)?;
        let threads = self
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let health_request = build(&target, "GET", "/health", None, None, None);
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let env = OpEnv {
            target,
            token: self.token(),
            workload: self.workload()?,
            timeout: self.timeout,
            job_timeout: self.job_timeout,
            poll_interval: self.poll_interval,
            wait_ms: self.wait_ms,
            long_poll: LongPoll::new(self.long_poll),
            page_size: self.page_size,
            delete_jobs: !self.keep_jobs,
            status_ids: std::sync::OnceLock::new(),
            run_nonce: format!("{nonce:x}"),
            health_request,
        };
        Ok(RunConfig {
            env: Arc::new(env),
            mix: self.mix()?,
            mode,
            connections: self.connections,
            threads,
            duration: self.duration,
            warmup: self.warmup,
            seed: self.seed,
            sample_interval: self.sample_interval,
            drain_timeout: self.drain_timeout,
            status_jobs: self.status_jobs,
        })
    }
}

impl SloArgs {
    pub fn thresholds(&self) -> Result<Thresholds, ConfigError> {
        if !(0.0..=100.0).contains(&self.slo_availability) {
            return Err(ConfigError::Invalid(
                "--slo-availability is a percentage (0-100)".into(),
            ));
        }
        Ok(Thresholds {
            availability_pct: self.slo_availability,
            queue_p95: self.slo_queue_p95,
            completion_p95: self.slo_completion_p95,
            stored_abs_slack: self.slo_stored_slack,
            stored_rel_slack: self.slo_stored_rel,
        })
    }
}

impl CapacityArgs {
    pub fn search(&self) -> Result<SearchConfig, ConfigError> {
        if !(self.start_rate > 0.0 && self.max_rate >= self.start_rate) {
            return Err(ConfigError::Invalid(
                "need 0 < --start-rate <= --max-rate".into(),
            ));
        }
        if self.factor <= 1.0 {
            return Err(ConfigError::Invalid("--factor must be > 1".into()));
        }
        if self.max_steps == 0 {
            return Err(ConfigError::Invalid(
                "--max-steps must be at least 1".into(),
            ));
        }
        Ok(SearchConfig {
            start: self.start_rate,
            max: self.max_rate,
            factor: self.factor,
            precision: self.precision.max(0.0),
            max_steps: self.max_steps,
        })
    }
}
