//! `agentctl`: the operators' command line for agents and the resolver.
//!
//! Owns argument parsing, output formats (table, JSON lines, CSV) and exit codes; all
//! talking to agents goes through the `client` library. It never prints a token.
//!
//! Exit codes (stable, for scripts):
//! 0 success; 1 the query failed or was canceled; 2 usage or configuration error;
//! 3 authentication refused; 4 not found; 5 agent unreachable, bad answer or
//! endpoint unavailable; 6 deadline exceeded; 7 overloaded; 8 results not ready.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Arg, ArgAction, ArgMatches, Command};
use client::resolver::{EndpointKind, Resolver, RolloutDefaults, TomlFile};
use client::{AgentClient, AgentConfig, ClientError, LocalExecutor, Row, Value};

const EXIT_QUERY: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn exit_code(e: &ClientError) -> u8 {
    match e {
        ClientError::Execution { .. } | ClientError::Canceled { .. } => EXIT_QUERY,
        ClientError::Config(_) | ClientError::BadRequest { .. } | ClientError::Local(_) => {
            EXIT_USAGE
        }
        ClientError::Auth { .. } => 3,
        ClientError::NotFound { .. } => 4,
        ClientError::Transport { .. }
        | ClientError::Unreachable { .. }
        | ClientError::Unresponsive { .. }
        | ClientError::Protocol { .. }
        | ClientError::Unavailable { .. } => 5,
        ClientError::Timeout => 6,
        ClientError::Overloaded { .. } => 7,
        ClientError::NotReady { .. } => 8,
    }
}

fn command() -> Command {
    let id = || Arg::new("id").required(true).help("Query id");
    let format = || {
        Arg::new("format")
            .long("format")
            .value_parser(["table", "jsonl", "csv"])
            .default_value("table")
            .help("Row output: table, jsonl (one JSON object per row) or csv")
    };
    Command::new("agentctl")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Operate compute agents: health, queries, job lifecycle, routing decisions")
        .after_help("Exit codes: 0 ok, 1 query failed/canceled, 2 usage/config, 3 auth refused, 4 not found, 5 unreachable/bad answer/unavailable, 6 deadline exceeded, 7 overloaded, 8 not ready")
        .subcommand_required(true)
        .arg(Arg::new("url").long("url").env("AGENT_URL").global(true).help("Agent base URL, http://host:port"))
        .arg(Arg::new("token").long("token").env("AGENT_TOKEN").hide_env_values(true).global(true).help("Agent token (X-Agent-Token)"))
        .arg(Arg::new("sign").long("sign").env("AGENT_SIGN_REQUESTS").action(ArgAction::SetTrue).global(true).help("Sign requests (X-Agent-Timestamp, X-Agent-Signature)"))
        .arg(Arg::new("timeout").long("timeout").default_value("60s").global(true).help("Deadline of the whole command (Go duration)"))
        .arg(Arg::new("no-lifecycle").long("no-lifecycle").action(ArgAction::SetTrue).global(true).help("Use POST /execute instead of the job lifecycle (cursor mode off)"))
        .subcommand(Command::new("health").about("Health of one agent, or of every endpoint of a resolver file, as a table")
            .arg(Arg::new("resolver").long("resolver").env("RESOLVER_FILE").help("Resolver TOML file: probe every remote endpoint")))
        .subcommand(Command::new("run").about("Run SQL through the whole lifecycle and print the rows, or write them to a file")
            .arg(Arg::new("sql").required(true))
            .arg(Arg::new("format").long("format")
                .value_parser(["table", "jsonl", "csv", "arrow", "parquet", "json"])
                .default_value("table")
                .help("Rows on stdout: table, jsonl or csv. With --output: arrow (an Arrow IPC stream), parquet, csv (with a header) or json (an array of row objects), written page by page as the result streams in, from the agent's Arrow results"))
            .arg(Arg::new("output").long("output").short('o').help("Write the result to this file (see --format)")))
        .subcommand(Command::new("submit").about("Submit SQL; prints the query id")
            .arg(Arg::new("sql").required(true))
            .arg(Arg::new("request-id").long("request-id").help("Idempotency key (default: a fresh UUID)")))
        .subcommand(Command::new("status").about("A job's status")
            .arg(id()).arg(Arg::new("wait").long("wait").help("Long-poll up to this long (Go duration)")))
        .subcommand(Command::new("results").about("A job's rows (one page, or --all)")
            .arg(id()).arg(format())
            .arg(Arg::new("page-token").long("page-token"))
            .arg(Arg::new("max-results").long("max-results").value_parser(clap::value_parser!(u32)).default_value("1000"))
            .arg(Arg::new("all").long("all").action(ArgAction::SetTrue).help("Every page")))
        .subcommand(Command::new("cancel").about("Cancel a job").arg(id()))
        .subcommand(Command::new("delete").about("Delete a job and its results").arg(id()))
        .subcommand(Command::new("resolve").about("Where a user's queries would run, and why")
            .arg(Arg::new("user").required(true))
            .arg(Arg::new("groups").long("groups").value_delimiter(',').action(ArgAction::Append).help("The user's groups, comma-separated"))
            .arg(Arg::new("resolver").long("resolver").env("RESOLVER_FILE").required(true).help("Resolver TOML file"))
            .arg(Arg::new("no-probe").long("no-probe").action(ArgAction::SetTrue).help("Decide without probing /health first")))
}

/// A usage error's message (exit 2).
struct Usage(String);

fn main() -> ExitCode {
    let m = command().get_matches();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agentctl: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match rt.block_on(dispatch(&m)) {
        Ok(code) => ExitCode::from(code),
        Err(Err(Usage(msg))) => {
            eprintln!("agentctl: {msg}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Ok(e)) => {
            eprintln!("agentctl: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

type Res<T> = Result<T, Result<ClientError, Usage>>;

fn usage<T>(msg: impl Into<String>) -> Res<T> {
    Err(Err(Usage(msg.into())))
}

fn cerr(e: ClientError) -> Result<ClientError, Usage> {
    Ok(e)
}

fn deadline(m: &ArgMatches) -> Res<Instant> {
    let t = m
        .get_one::<String>("timeout")
        .map(String::as_str)
        .unwrap_or("60s");
    match client::duration::parse(t) {
        Ok(d) if !d.is_zero() => Ok(Instant::now() + d),
        _ => usage(format!(
            "invalid --timeout {t:?}: a positive Go duration such as 30s"
        )),
    }
}

fn agent(m: &ArgMatches) -> Res<AgentClient> {
    let Some(url) = m.get_one::<String>("url") else {
        return usage("--url (or AGENT_URL) is required");
    };
    let token = m.get_one::<String>("token").cloned().unwrap_or_default();
    let mut cfg = AgentConfig::new(url, url, &token);
    cfg.sign_requests = m.get_flag("sign");
    cfg.cursor_mode = !m.get_flag("no-lifecycle");
    AgentClient::new(cfg).map_err(cerr)
}

async fn dispatch(m: &ArgMatches) -> Res<u8> {
    let (name, sub) = m.subcommand().expect("subcommand_required");
    let dl = deadline(m)?;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let code = match name {
        "health" => health(m, sub, dl, &mut out).await?,
        "run" => run(m, sub, dl, &mut out).await?,
        "submit" => {
            let c = agent(m)?;
            let rid = sub
                .get_one::<String>("request-id")
                .cloned()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let s = c.submit(sql(sub), &rid, dl).await.map_err(cerr)?;
            let _ = writeln!(out, "{}\t{}", s.query_id, s.status);
            0
        }
        "status" => {
            let c = agent(m)?;
            let wait = match sub.get_one::<String>("wait") {
                None => None,
                Some(w) => match client::duration::parse(w) {
                    Ok(d) => Some(d),
                    Err(e) => return usage(format!("invalid --wait: {e}")),
                },
            };
            let s = c.status(id(sub), wait, dl).await.map_err(cerr)?;
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&s).unwrap_or_default()
            );
            0
        }
        "results" => results(m, sub, dl, &mut out).await?,
        "cancel" | "delete" => {
            let c = agent(m)?;
            let s = if name == "cancel" {
                c.cancel(id(sub), dl).await
            } else {
                c.delete(id(sub), dl).await
            }
            .map_err(cerr)?;
            let _ = writeln!(out, "{}\t{}", s.query_id, s.status);
            0
        }
        "resolve" => resolve(sub, &mut out).await?,
        _ => return usage(format!("unknown command {name}")),
    };
    let _ = out.flush();
    Ok(code)
}

fn sql(sub: &ArgMatches) -> &str {
    sub.get_one::<String>("sql")
        .map(String::as_str)
        .unwrap_or_default()
}

fn id(sub: &ArgMatches) -> &str {
    sub.get_one::<String>("id")
        .map(String::as_str)
        .unwrap_or_default()
}

async fn health(m: &ArgMatches, sub: &ArgMatches, dl: Instant, out: &mut impl Write) -> Res<u8> {
    let timeout = dl.saturating_duration_since(Instant::now());
    let mut targets: Vec<(String, String, Option<AgentClient>)> = Vec::new();
    if let Some(file) = sub.get_one::<String>("resolver") {
        let cfg = TomlFile::new(file)
            .load_config()
            .map_err(|e| Err(Usage(e.to_string())))?;
        for e in &cfg.endpoints {
            let kind = format!("{:?}/{:?}", e.kind, e.status).to_uppercase();
            let c = (e.kind == EndpointKind::Remote).then(|| {
                let mut ac = AgentConfig::new(&e.name, &e.url, &e.token);
                ac.sign_requests = cfg.client.sign_requests;
                AgentClient::new(ac).ok()
            });
            targets.push((e.name.clone(), kind, c.flatten()));
        }
    } else {
        let c = agent(m)?;
        targets.push((c.config().url.clone(), "REMOTE".into(), Some(c)));
    }
    let mut rows: Vec<Vec<String>> = vec![[
        "endpoint",
        "kind",
        "health",
        "active",
        "queued",
        "running",
        "stored",
        "memory_mb",
        "uptime_s",
        "version",
    ]
    .map(String::from)
    .to_vec()];
    let mut failures = 0;
    let mut set = tokio::task::JoinSet::new();
    for (i, (_, _, c)) in targets.iter().enumerate() {
        if let Some(c) = c.clone() {
            set.spawn(async move { (i, c.health(timeout).await) });
        }
    }
    let mut answers = vec![None; targets.len()];
    while let Some(Ok((i, r))) = set.join_next().await {
        answers[i] = Some(r);
    }
    for ((name, kind, _), a) in targets.iter().zip(answers) {
        let row = match a {
            None => vec![name.clone(), kind.clone(), "-".into()],
            Some(Ok(h)) => vec![
                name.clone(),
                kind.clone(),
                "ok".into(),
                h.active_queries.to_string(),
                h.queued_jobs.to_string(),
                h.running_jobs.to_string(),
                h.stored_jobs.to_string(),
                h.memory_used_mb.to_string(),
                h.uptime_seconds.to_string(),
                h.version.clone().unwrap_or_default(),
            ],
            Some(Err(e)) => {
                failures += 1;
                vec![name.clone(), kind.clone(), format!("DOWN: {e}")]
            }
        };
        rows.push(row);
    }
    print_table(out, &rows);
    Ok(if failures > 0 { 5 } else { 0 })
}

async fn run(m: &ArgMatches, sub: &ArgMatches, dl: Instant, out: &mut impl Write) -> Res<u8> {
    if let Some(path) = sub.get_one::<String>("output") {
        let format = sub
            .get_one::<String>("format")
            .map(String::as_str)
            .unwrap_or("table");
        let Some(format) = FileFormat::parse(format) else {
            return usage("--output writes arrow, parquet, csv or json (--format)");
        };
        return run_to_file(m, sub, dl, format, path).await;
    }
    if matches!(
        sub.get_one::<String>("format").map(String::as_str),
        Some("arrow" | "parquet" | "json")
    ) {
        return usage("--format arrow, parquet and json need --output FILE");
    }
    let c = agent(m)?;
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    // A progress line on a terminal while the query runs (stderr, so stdout stays data).
    let ticker = tty.then(|| {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                eprint!("\r\x1b[2Krunning… {:.1}s", started.elapsed().as_secs_f64());
            }
        })
    });
    let res = c.run(sql(sub), dl).await;
    if let Some(t) = ticker {
        t.abort();
        eprint!("\r\x1b[2K");
    }
    let mut rows = res.map_err(cerr)?;
    let format = sub
        .get_one::<String>("format")
        .map(String::as_str)
        .unwrap_or("table");
    let mut w = RowWriter::new(format, rows.columns.clone());
    let mut n: u64 = 0;
    while let Some(page) = rows.next_page().await.map_err(cerr)? {
        n += page.len() as u64;
        w.page(out, &page);
        if tty && format != "table" {
            eprint!(
                "\r\x1b[2Krows {n}{}",
                rows.row_count.map_or(String::new(), |t| format!("/{t}"))
            );
        }
    }
    w.finish(out);
    let via = rows.via;
    // Wait for the job's delete before the process exits.
    rows.close().await;
    if tty {
        eprintln!(
            "\r\x1b[2K{n} rows in {:.3}s ({via:?})",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(0)
}

async fn results(m: &ArgMatches, sub: &ArgMatches, dl: Instant, out: &mut impl Write) -> Res<u8> {
    let c = agent(m)?;
    let max = *sub.get_one::<u32>("max-results").unwrap_or(&1000);
    let mut token = sub.get_one::<String>("page-token").cloned();
    let format = sub
        .get_one::<String>("format")
        .map(String::as_str)
        .unwrap_or("table");
    let mut w: Option<RowWriter> = None;
    loop {
        let p = c
            .page(id(sub), token.as_deref(), max, dl)
            .await
            .map_err(cerr)?;
        let w = w.get_or_insert_with(|| RowWriter::new(format, p.columns.clone()));
        w.page(out, &p.rows);
        token = p.next_page_token;
        if !sub.get_flag("all") || token.is_none() {
            break;
        }
    }
    if let Some(w) = w.as_mut() {
        w.finish(out);
    }
    if let Some(t) = token {
        eprintln!("next page token: {t}");
    }
    Ok(0)
}

async fn resolve(sub: &ArgMatches, out: &mut impl Write) -> Res<u8> {
    let file = sub
        .get_one::<String>("resolver")
        .cloned()
        .unwrap_or_default();
    let defaults = RolloutDefaults::from_env().map_err(|e| Err(Usage(e.to_string())))?;
    let local = LocalExecutor::open(None).map_err(cerr)?;
    let r: Arc<Resolver> = Resolver::new(Box::new(TomlFile::new(&file)), defaults, local)
        .map_err(|e| Err(Usage(e.to_string())))?;
    if !sub.get_flag("no-probe") {
        // Enough rounds to reach the configured down/up thresholds.
        let cfg = r.config();
        let rounds = cfg.health.down_after.max(cfg.health.up_after).min(5);
        for i in 0..rounds {
            if i > 0 {
                tokio::time::sleep(cfg.health.interval.min(Duration::from_millis(200))).await;
            }
            r.probe_once().await;
        }
    }
    let user = sub.get_one::<String>("user").cloned().unwrap_or_default();
    let groups: Vec<String> = sub
        .get_many::<String>("groups")
        .map(|g| g.filter(|s| !s.is_empty()).cloned().collect())
        .unwrap_or_default();
    match r.resolve(&user, &groups) {
        Ok(d) => {
            let _ = writeln!(out, "{user}: {d}");
            Ok(0)
        }
        Err(e) => {
            let _ = writeln!(out, "{user}: error: {e}");
            Err(Ok(e))
        }
    }
}

/// Writes rows as a table, JSON lines or CSV, page by page.
struct RowWriter {
    format: String,
    columns: Vec<String>,
    widths: Option<Vec<usize>>,
}

impl RowWriter {
    fn new(format: &str, columns: Vec<String>) -> RowWriter {
        RowWriter {
            format: format.to_string(),
            columns,
            widths: None,
        }
    }

    fn page(&mut self, out: &mut impl Write, rows: &[Row]) {
        match self.format.as_str() {
            "jsonl" => {
                for r in rows {
                    let obj: serde_json::Map<String, serde_json::Value> = self
                        .columns
                        .iter()
                        .cloned()
                        .zip(r.iter().map(Value::to_json))
                        .collect();
                    let _ = writeln!(out, "{}", serde_json::Value::Object(obj));
                }
            }
            "csv" => {
                if self.widths.is_none() {
                    self.widths = Some(Vec::new());
                    let _ = writeln!(out, "{}", csv_line(self.columns.iter().cloned()));
                }
                for r in rows {
                    let _ = writeln!(
                        out,
                        "{}",
                        csv_line(r.iter().map(|v| match v {
                            Value::Null => String::new(),
                            v => v.to_string(),
                        }))
                    );
                }
            }
            _ => {
                // Widths from the header and the first page; later pages reuse them.
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| r.iter().map(|v| v.to_string()).collect())
                    .collect();
                if self.widths.is_none() {
                    let mut wd: Vec<usize> =
                        self.columns.iter().map(|c| c.chars().count()).collect();
                    for r in &cells {
                        for (i, c) in r.iter().enumerate() {
                            if let Some(w) = wd.get_mut(i) {
                                *w = (*w).max(c.chars().count()).min(60);
                            }
                        }
                    }
                    let _ = writeln!(out, "{}", fmt_row(&self.columns, &wd));
                    let _ = writeln!(
                        out,
                        "{}",
                        wd.iter()
                            .map(|w| "-".repeat(*w))
                            .collect::<Vec<_>>()
                            .join("-+-")
                    );
                    self.widths = Some(wd);
                }
                let wd = self.widths.clone().unwrap_or_default();
                for r in &cells {
                    let _ = writeln!(out, "{}", fmt_row(r, &wd));
                }
            }
        }
    }

    fn finish(&mut self, out: &mut impl Write) {
        if self.format == "table" && self.widths.is_none() {
            let wd: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
            let _ = writeln!(out, "{}", fmt_row(&self.columns, &wd));
        }
        let _ = out.flush();
    }
}

fn fmt_row(cells: &[String], widths: &[usize]) -> String {
    cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let w = widths.get(i).copied().unwrap_or(0);
            let c: String = c
                .chars()
                .map(|ch| if ch.is_control() { ' ' } else { ch })
                .collect();
            format!("{c:<w$}")
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

fn print_table(out: &mut impl Write, rows: &[Vec<String>]) {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let _ = writeln!(out, "{}", fmt_row(r, &widths).trim_end());
    }
}

/// One RFC 4180 line.
fn csv_line(cells: impl Iterator<Item = String>) -> String {
    cells
        .map(|c| {
            if c.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The file formats of `run --output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFormat {
    Arrow,
    Parquet,
    Csv,
    Json,
}

impl FileFormat {
    fn parse(s: &str) -> Option<FileFormat> {
        match s {
            "arrow" => Some(FileFormat::Arrow),
            "parquet" => Some(FileFormat::Parquet),
            "csv" => Some(FileFormat::Csv),
            "json" => Some(FileFormat::Json),
            _ => None,
        }
    }
}

/// One open output file, written batch by batch.
enum FileWriter {
    Arrow(arrow_ipc::writer::StreamWriter<std::io::BufWriter<std::fs::File>>),
    Parquet(parquet::arrow::ArrowWriter<std::fs::File>),
    Csv(arrow_csv::Writer<std::io::BufWriter<std::fs::File>>),
    Json(arrow_json::ArrayWriter<std::io::BufWriter<std::fs::File>>),
}

impl FileWriter {
    fn create(
        format: FileFormat,
        path: &str,
        schema: &arrow_schema::SchemaRef,
    ) -> Result<FileWriter, String> {
        let file = std::fs::File::create(path).map_err(|e| format!("{path}: {e}"))?;
        let buf = || std::io::BufWriter::new(file.try_clone().expect("file handle"));
        Ok(match format {
            FileFormat::Arrow => FileWriter::Arrow(
                arrow_ipc::writer::StreamWriter::try_new(buf(), schema)
                    .map_err(|e| e.to_string())?,
            ),
            FileFormat::Parquet => FileWriter::Parquet(
                parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None)
                    .map_err(|e| e.to_string())?,
            ),
            FileFormat::Csv => FileWriter::Csv(arrow_csv::Writer::new(buf())),
            FileFormat::Json => FileWriter::Json(arrow_json::ArrayWriter::new(buf())),
        })
    }

    fn write(&mut self, b: &arrow_array::RecordBatch) -> Result<(), String> {
        match self {
            FileWriter::Arrow(w) => w.write(b).map_err(|e| e.to_string()),
            FileWriter::Parquet(w) => w.write(b).map_err(|e| e.to_string()),
            FileWriter::Csv(w) => w.write(b).map_err(|e| e.to_string()),
            FileWriter::Json(w) => w.write(b).map_err(|e| e.to_string()),
        }
    }

    fn finish(self) -> Result<(), String> {
        match self {
            FileWriter::Arrow(mut w) => {
                w.finish().map_err(|e| e.to_string())?;
                w.into_inner()
                    .map_err(|e| e.to_string())?
                    .flush()
                    .map_err(|e| e.to_string())
            }
            FileWriter::Parquet(w) => w.close().map(|_| ()).map_err(|e| e.to_string()),
            FileWriter::Csv(w) => w.into_inner().flush().map_err(|e| e.to_string()),
            FileWriter::Json(mut w) => {
                w.finish().map_err(|e| e.to_string())?;
                w.into_inner().flush().map_err(|e| e.to_string())
            }
        }
    }
}

/// `run --output FILE`: Arrow pages written to the file as they arrive.
async fn run_to_file(
    m: &ArgMatches,
    sub: &ArgMatches,
    dl: Instant,
    format: FileFormat,
    path: &str,
) -> Res<u8> {
    let c = agent(m)?;
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut pages = match c.run_arrow(sql(sub), dl).await.map_err(cerr)? {
        client::ArrowRun::Arrow(p) => p,
        client::ArrowRun::Rows(rows) => {
            rows.close().await;
            return usage(
                "the agent does not offer Arrow results; --output needs them (print rows with --format table|jsonl|csv instead)",
            );
        }
    };
    let io = |e: String| usage::<u8>(format!("writing {path}: {e}"));
    let mut writer: Option<FileWriter> = None;
    let mut n: u64 = 0;
    while let Some(batches) = pages.next_batches().await.map_err(cerr)? {
        if writer.is_none() {
            if let Some(schema) = pages.schema() {
                writer = match FileWriter::create(format, path, schema) {
                    Ok(w) => Some(w),
                    Err(e) => return io(e),
                };
            }
        }
        if let Some(w) = writer.as_mut() {
            for b in &batches {
                n += b.num_rows() as u64;
                if let Err(e) = w.write(b) {
                    return io(e);
                }
            }
        }
        if tty {
            eprint!(
                "\r\x1b[2Krows {n}{}",
                pages.row_count().map_or(String::new(), |t| format!("/{t}"))
            );
        }
    }
    let writer = match writer {
        Some(w) => w,
        None => match FileWriter::create(format, path, &Arc::new(arrow_schema::Schema::empty())) {
            Ok(w) => w,
            Err(e) => return io(e),
        },
    };
    if let Err(e) = writer.finish() {
        return io(e);
    }
    if tty {
        eprintln!(
            "\r\x1b[2K{n} rows to {path} in {:.3}s ({:?})",
            started.elapsed().as_secs_f64(),
            pages.via
        );
    }
    Ok(0)
}
