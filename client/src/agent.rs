//! The agent client: one per endpoint, pooled keep-alive HTTP/1.1 connections, the
//! whole job lifecycle (submit, long-poll, pages, cancel, delete) and the `/execute`
//! fallback.
//!
//! Owns how a statement reaches one agent: request ids (a retried submit reuses its
//! id, so the agent's idempotency guarantees it runs once), signing, 429/503 honoured
//! with `Retry-After` inside the caller's deadline, cancel + delete on deadline or drop,
//! remembering per endpoint that it has no lifecycle routes, and a bound on every
//! answer it buffers. It never runs a statement twice: `/execute` is used only after
//! `POST /queries` answered 404/405 (nothing was queued), and an `/execute` whose
//! request may have reached the agent is never retried. It never probes health on the
//! query path (the resolver's prober does that).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;

mod arrow;
pub use arrow::{ArrowPages, ArrowRun, ARROW_STREAM_MEDIA_TYPE};

use crate::error::ClientError;
use crate::rows::{BoxFuture, Executor, QueryRows, Via, PAGES_BUFFERED};
use crate::value::{decode_rows, ColumnType, Param, Row};
use crate::wire::{
    ErrorBody, ExecuteResponse, Health, IdStatus, JobState, QueryRequest, QueryStatus, ResultsPage,
    SubmitAnswer,
};

/// The agent's long-poll cap (`wait_ms` above it is capped by the agent anyway).
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// [`AgentConfig::connect_timeout`]'s default: far above a LAN's connect time,
/// well under a second.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// [`AgentConfig::first_byte_timeout`]'s default.
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(1);
/// [`AgentConfig::long_poll`]'s default.
pub const DEFAULT_LONG_POLL: Duration = Duration::from_secs(1);

/// Settings of one endpoint's client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The endpoint's name (in errors and logs).
    pub name: String,
    /// `http://host:port`, or `https://host:port` (an agent behind a TLS proxy).
    pub url: String,
    pub token: String,
    /// Send `X-Agent-Timestamp` / `X-Agent-Signature`.
    pub sign_requests: bool,
    /// Use the job lifecycle (`FEATURE_CURSOR_MODE`); off: straight to `/execute`.
    pub cursor_mode: bool,
    /// Rows per results page (the agent caps at 5000).
    pub page_size: u32,
    /// Largest answer body buffered, in bytes; larger is a protocol error.
    pub max_response_bytes: usize,
    /// How long "this agent has no lifecycle routes" is remembered before trying again.
    pub lifecycle_recheck: Duration,
    /// Attempts of a submit after transport errors (same request id each time).
    pub submit_attempts: u32,
    /// Longest a connection may take to open; past it the agent is unreachable
    /// (nothing was sent).
    pub connect_timeout: Duration,
    /// Longest an agent may take to begin an answer beyond what the call asked
    /// it to hold (a long-poll's wait): past it the call fails as
    /// [`ClientError::Unresponsive`], so a hung agent is found within
    /// `long_poll + first_byte_timeout` on any call. Not applied to `/execute`,
    /// which holds its answer for the whole statement.
    pub first_byte_timeout: Duration,
    /// Longest one long-poll (the submit's hold, a status wait) asks the agent
    /// to hold its answer; longer statements are followed by further polls.
    pub long_poll: Duration,
    /// On 429 (or 503 other than SHUTTING_DOWN), wait out `Retry-After` and try
    /// the same agent again within the deadline; off: answer
    /// [`ClientError::Overloaded`] at once (a caller that can route elsewhere).
    pub wait_on_overload: bool,
    /// Time allowed for cancel + delete once the caller's deadline has passed.
    pub cleanup_timeout: Duration,
    /// PEM certificates an `https://` endpoint's chain must lead to (the
    /// caller's CA file, read once); `None`: the system's bundle
    /// ([`SYSTEM_CA_FILE`]).
    pub ca_pem: Option<Arc<Vec<u8>>>,
}

/// A client TLS configuration (rustls on ring, TLS 1.2 and 1.3) trusting `roots`.
fn tls_trusting(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, ClientError> {
    // ring, as the gateway's own TLS (gateway/src/tls.rs says why): rustls
    // deprecates its provider only for lacking post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The CA bundle `https://` endpoints are checked against when no CA file is
/// given (Debian's `ca-certificates`).
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

impl AgentConfig {
    /// Defaults for everything but the endpoint itself.
    pub fn new(name: &str, url: &str, token: &str) -> AgentConfig {
        AgentConfig {
            name: name.to_string(),
            url: url.to_string(),
            token: token.to_string(),
            sign_requests: false,
            cursor_mode: true,
            page_size: 5000,
            max_response_bytes: 64 << 20,
            lifecycle_recheck: Duration::from_secs(300),
            submit_attempts: 3,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            first_byte_timeout: DEFAULT_FIRST_BYTE_TIMEOUT,
            long_poll: DEFAULT_LONG_POLL,
            wait_on_overload: true,
            cleanup_timeout: Duration::from_secs(5),
            ca_pem: None,
        }
    }
}

/// A client for one agent; cheap to clone (shares the pool).
#[derive(Clone)]
pub struct AgentClient {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: AgentConfig,
    /// `http://host:port` or `https://host:port`, no trailing slash.
    base: String,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Until when `/execute` is used without trying `POST /queries`.
    no_lifecycle_until: Mutex<Option<Instant>>,
    /// Whether the agent honours `wait_ms` (cleared when it answers a long-poll at once).
    long_poll: AtomicBool,
    /// Until when Arrow is not asked for (`arrow.rs`).
    no_arrow: arrow::NoArrow,
}

/// One buffered answer.
struct Reply {
    status: u16,
    retry_after: Option<Duration>,
    /// The answer's headers (Arrow answers carry their paging facts there).
    headers: http::HeaderMap,
    body: Bytes,
}

/// What `POST /queries` said.
enum Submit {
    Accepted(IdStatus),
    /// The job ended within the submit's wait: its status, its first page once it
    /// succeeded, and whether the agent drops it by itself (`consume`).
    Finished(Box<QueryStatus>, Option<Page>, bool),
    /// 404/405: the agent has no lifecycle routes; nothing was queued.
    NoLifecycle,
}

/// One page of a job's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub columns: Vec<String>,
    pub column_types: Vec<String>,
    pub rows: Vec<Row>,
    /// Rows in the whole result.
    pub row_count: u64,
    /// Opaque token of the next page; `None` on the last.
    pub next_page_token: Option<String>,
}

impl AgentClient {
    /// Checks an endpoint's settings without building a client: the URL must be
    /// `http://host:port` or `https://host:port` and the token a valid header value.
    pub fn check_config(cfg: &AgentConfig) -> Result<String, ClientError> {
        let uri: http::Uri = cfg.url.parse().map_err(|e| {
            ClientError::Config(format!("endpoint {}: bad URL {:?}: {e}", cfg.name, cfg.url))
        })?;
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) if uri.authority().is_some() => s,
            _ => {
                return Err(ClientError::Config(format!(
                    "endpoint {}: URL {:?} must be http://host:port or https://host:port",
                    cfg.name, cfg.url
                )))
            }
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(ClientError::Config(format!(
                "endpoint {}: URL {:?} must not have a path",
                cfg.name, cfg.url
            )));
        }
        if http::HeaderValue::from_str(&cfg.token).is_err() {
            return Err(ClientError::Config(format!(
                "endpoint {}: the token is not a valid header value",
                cfg.name
            )));
        }
        Ok(format!(
            "{scheme}://{}",
            uri.authority().map_or("", |a| a.as_str())
        ))
    }

    /// The TLS settings of `https://` endpoints: roots from the CA file's PEM
    /// (or the system bundle), nothing else trusted.
    fn tls_config(cfg: &AgentConfig) -> Result<rustls::ClientConfig, ClientError> {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let pem = match &cfg.ca_pem {
            Some(p) => p.as_slice().to_vec(),
            None => std::fs::read(SYSTEM_CA_FILE).unwrap_or_default(),
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| {
                ClientError::Config(format!("endpoint {}: the CA file: {e}", cfg.name))
            })?;
            roots.add(cert).map_err(|e| {
                ClientError::Config(format!("endpoint {}: a CA certificate: {e}", cfg.name))
            })?;
        }
        tls_trusting(roots)
    }

    /// A client for one endpoint. Fails only on settings that cannot work.
    pub fn new(cfg: AgentConfig) -> Result<AgentClient, ClientError> {
        let base = Self::check_config(&cfg)?;
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(cfg.connect_timeout));
        // The TLS layer below sees `https://` URLs; plain ones pass through.
        conn.enforce_http(false);
        let tls = if base.starts_with("https://") {
            Self::tls_config(&cfg)?
        } else {
            // Never used (no https URL reaches it), but the connector needs one.
            tls_trusting(rustls::RootCertStore::empty())?
        };
        let conn = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(conn);
        let http = Client::builder(TokioExecutor::new())
            // Below the agent's keep-alive idle timeout (75 s), so the agent does not
            // close a pooled connection just as a request goes out on it.
            .pool_idle_timeout(Duration::from_secs(30))
            .build(conn);
        Ok(AgentClient {
            inner: Arc::new(Inner {
                cfg,
                base,
                http,
                no_lifecycle_until: Mutex::new(None),
                no_arrow: Default::default(),
                long_poll: AtomicBool::new(true),
            }),
        })
    }

    pub fn config(&self) -> &AgentConfig {
        &self.inner.cfg
    }

    fn endpoint(&self) -> String {
        self.inner.cfg.name.clone()
    }

    /// Whether `run` will try the lifecycle first (cursor mode on, and no recent
    /// 404/405 from `POST /queries`).
    pub fn uses_lifecycle(&self) -> bool {
        if !self.inner.cfg.cursor_mode {
            return false;
        }
        let mut until = self
            .inner
            .no_lifecycle_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match *until {
            Some(t) if Instant::now() < t => false,
            Some(_) => {
                *until = None;
                true
            }
            None => true,
        }
    }

    fn remember_no_lifecycle(&self) {
        let t = Instant::now() + self.inner.cfg.lifecycle_recheck;
        *self
            .inner
            .no_lifecycle_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(t);
        tracing::info!(endpoint = %self.inner.cfg.name, "agent has no lifecycle routes; using /execute");
    }

    /// One request, answer buffered up to `max_response_bytes`, bounded by
    /// `deadline`; its answer must begin within `hold` (what the call asks the
    /// agent to hold it, `None`: the whole deadline) plus the first-byte
    /// deadline.
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Bytes,
        request_id: Option<&str>,
        hold: Option<Duration>,
        deadline: Instant,
    ) -> Result<Reply, ClientError> {
        let cfg = &self.inner.cfg;
        let uri = if query.is_empty() {
            format!("{}{path}", self.inner.base)
        } else {
            format!("{}{path}?{query}", self.inner.base)
        };
        let mut b = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header("X-Agent-Token", cfg.token.as_str());
        if let Some(rid) = request_id {
            b = b.header("X-Request-ID", rid);
        }
        if !body.is_empty() {
            b = b.header("Content-Type", "application/json");
        }
        if cfg.sign_requests {
            let ts = crate::sign::now_unix();
            let sig = crate::sign::signature(&cfg.token, method.as_str(), path, ts, &body);
            b = b
                .header("X-Agent-Timestamp", ts)
                .header("X-Agent-Signature", sig);
        }
        let req = b.body(Full::new(body)).map_err(|e| {
            ClientError::Config(format!("endpoint {}: cannot build request: {e}", cfg.name))
        })?;
        let max = cfg.max_response_bytes;
        let endpoint = &cfg.name;
        let first_byte = hold.map(|h| {
            let waited = h + cfg.first_byte_timeout;
            (waited, (Instant::now() + waited).min(deadline))
        });
        let fut = async {
            let sent = self.inner.http.request(req);
            let answered = match first_byte {
                Some((waited, by)) => match tokio::time::timeout_at(by.into(), sent).await {
                    Ok(r) => r,
                    Err(_) if by < deadline => {
                        return Err(ClientError::Unresponsive {
                            endpoint: endpoint.clone(),
                            waited,
                        })
                    }
                    Err(_) => return Err(ClientError::Timeout),
                },
                None => sent.await,
            };
            let resp = answered.map_err(|e| {
                let message = error_chain(&e);
                let endpoint = endpoint.clone();
                if e.is_connect() {
                    ClientError::Unreachable { endpoint, message }
                } else {
                    ClientError::Transport { endpoint, message }
                }
            })?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s.min(3600)));
            let headers = resp.headers().clone();
            let too_big = || ClientError::Protocol {
                endpoint: endpoint.clone(),
                message: format!("answer larger than {max} bytes"),
            };
            if resp
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|n| n > max as u64)
            {
                return Err(too_big());
            }
            let body = Limited::new(resp.into_body(), max)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        too_big()
                    } else {
                        ClientError::Transport {
                            endpoint: endpoint.clone(),
                            message: format!("reading the answer: {e}"),
                        }
                    }
                })?
                .to_bytes();
            Ok(Reply {
                status,
                retry_after,
                headers,
                body,
            })
        };
        match tokio::time::timeout_at(deadline.into(), fut).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout),
        }
    }

    /// A call without a body or request id, answered at once or after `hold`.
    async fn bare(
        &self,
        method: Method,
        path: &str,
        query: &str,
        hold: Duration,
        deadline: Instant,
    ) -> Result<Reply, ClientError> {
        self.call(
            method,
            path,
            query,
            Bytes::new(),
            None,
            Some(hold),
            deadline,
        )
        .await
    }

    /// The typed error of a non-success answer.
    fn error_of(&self, r: &Reply, what: &str) -> ClientError {
        let endpoint = self.endpoint();
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&r.body) {
            Ok(b) => (b.code, b.error),
            Err(_) => (
                String::new(),
                String::from_utf8_lossy(&r.body[..r.body.len().min(200)]).into_owned(),
            ),
        };
        match r.status {
            401 | 403 => ClientError::Auth { endpoint },
            404 => ClientError::NotFound {
                endpoint,
                what: what.to_string(),
            },
            409 if code == "QUERY_NOT_READY" => ClientError::NotReady { endpoint, message },
            409 | 500 => ClientError::Execution {
                code: if code.is_empty() {
                    "EXECUTION_ERROR".into()
                } else {
                    code
                },
                message,
            },
            429 | 503 => ClientError::Overloaded {
                endpoint,
                code,
                retry_after: r.retry_after,
            },
            400 | 413 | 431 => ClientError::BadRequest {
                endpoint,
                code,
                message,
            },
            s => ClientError::Protocol {
                endpoint,
                message: format!("unexpected status {s}: {message}"),
            },
        }
    }

    fn bad_json(&self, e: serde_json::Error) -> ClientError {
        ClientError::Protocol {
            endpoint: self.endpoint(),
            message: format!("invalid JSON: {e}"),
        }
    }

    /// Waits out a 429/503's `Retry-After` (1 s when absent) if that still ends before
    /// the deadline; otherwise the overload is the caller's error.
    async fn wait_retry_after(
        &self,
        err: ClientError,
        deadline: Instant,
    ) -> Result<(), ClientError> {
        let ClientError::Overloaded {
            retry_after, code, ..
        } = &err
        else {
            return Err(err);
        };
        if !self.inner.cfg.wait_on_overload || code == crate::error::SHUTTING_DOWN {
            // The caller routes elsewhere, or the agent is going away.
            return Err(err);
        }
        let wait = retry_after.unwrap_or(Duration::from_secs(1));
        if Instant::now() + wait >= deadline {
            return Err(err);
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// `POST /queries` with a fixed request id: retried on transport errors and 429
    /// with the same id, so the agent queues the statement at most once.
    ///
    /// With `wait`, the agent holds the answer until the job ends (at most `wait`)
    /// and then answers its status and first page in the same response, dropping
    /// the job by itself when that answer holds all of it (`consume`); agents without that
    /// option answer the plain 202, and the caller polls as before.
    async fn submit_inner(
        &self,
        sql: &str,
        params: &[Param],
        request_id: &str,
        wait: Option<Duration>,
        deadline: Instant,
    ) -> Result<Submit, ClientError> {
        let query = match wait {
            Some(w) => format!(
                "wait_ms={}&max_results={}&consume=true",
                w.min(MAX_WAIT).as_millis(),
                self.inner.cfg.page_size.clamp(1, 5000)
            ),
            None => String::new(),
        };
        let body: Bytes = serde_json::to_vec(&QueryRequest {
            sql: sql.to_string(),
            request_id: Some(request_id.to_string()),
            params: params.to_vec(),
        })
        .map_err(|e| self.bad_json(e))?
        .into();
        let mut transport_failures = 0;
        // The first failure that may have queued the job: from then on, an answer
        // that would say "never started" (refused, 429) speaks only for the retry.
        let mut ambiguous: Option<ClientError> = None;
        let settled = |e: ClientError, ambiguous: &mut Option<ClientError>| match ambiguous.take() {
            Some(first) if e.never_started() => first,
            _ => e,
        };
        loop {
            match self
                .call(
                    Method::POST,
                    "/queries",
                    &query,
                    body.clone(),
                    Some(request_id),
                    Some(wait.unwrap_or_default()),
                    deadline,
                )
                .await
            {
                Ok(r) if r.status == 202 || r.status == 200 => return self.submit_answer(&r.body),
                Ok(r) if r.status == 404 || r.status == 405 => return Ok(Submit::NoLifecycle),
                Ok(r) => {
                    let e = self.error_of(&r, "POST /queries");
                    if let Err(e) = self.wait_retry_after(e, deadline).await {
                        return Err(settled(e, &mut ambiguous));
                    }
                }
                Err(e @ ClientError::Transport { .. })
                    if transport_failures + 1 < self.inner.cfg.submit_attempts.max(1) =>
                {
                    transport_failures += 1;
                    ambiguous.get_or_insert(e);
                    let pause = Duration::from_millis(50 * transport_failures as u64);
                    if Instant::now() + pause >= deadline {
                        return Err(ClientError::Timeout);
                    }
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(settled(e, &mut ambiguous)),
            }
        }
    }

    /// `POST /queries`: queue a statement under `request_id` (retries reuse it).
    pub async fn submit(
        &self,
        sql: &str,
        request_id: &str,
        deadline: Instant,
    ) -> Result<IdStatus, ClientError> {
        match self
            .submit_inner(sql, &[], request_id, None, deadline)
            .await?
        {
            Submit::Accepted(s) => Ok(s),
            Submit::Finished(st, _, _) => Ok(IdStatus {
                query_id: st.query_id,
                status: st.status,
                request_id: st.request_id,
            }),
            Submit::NoLifecycle => Err(ClientError::NotFound {
                endpoint: self.endpoint(),
                what: "POST /queries (the agent has no lifecycle routes)".into(),
            }),
        }
    }

    /// Reads a 200/202 of `POST /queries`: terminal answers carry the status (and
    /// the first page once succeeded), others just the id and status.
    fn submit_answer(&self, body: &[u8]) -> Result<Submit, ClientError> {
        let a: SubmitAnswer = serde_json::from_slice(body).map_err(|e| self.bad_json(e))?;
        let Some(state) = JobState::parse(&a.status) else {
            return Err(ClientError::Protocol {
                endpoint: self.endpoint(),
                message: format!("unknown status {:?}", a.status),
            });
        };
        if !state.is_terminal() {
            return Ok(Submit::Accepted(IdStatus {
                query_id: a.query_id,
                status: a.status,
                request_id: a.request_id,
            }));
        }
        let first = match (&a.rows, &a.columns, a.row_count) {
            (Some(rows), Some(columns), Some(row_count)) => {
                let column_types = a.column_types.clone().unwrap_or_default();
                let types: Vec<ColumnType> =
                    column_types.iter().map(|t| ColumnType::parse(t)).collect();
                Some(Page {
                    rows: decode_rows(&types, rows),
                    columns: columns.clone(),
                    column_types,
                    row_count,
                    next_page_token: a.next_page_token.clone(),
                })
            }
            _ => None,
        };
        let st = QueryStatus {
            query_id: a.query_id,
            status: a.status,
            columns: a.columns,
            column_types: a.column_types,
            row_count: a.row_count,
            error: a.error,
            error_code: a.error_code,
            completed_at: a.completed_at,
            request_id: a.request_id,
            format: None,
        };
        Ok(Submit::Finished(Box::new(st), first, a.consumed))
    }

    /// `GET /queries/{id}`, long-polling up to `wait` when given.
    pub async fn status(
        &self,
        query_id: &str,
        wait: Option<Duration>,
        deadline: Instant,
    ) -> Result<QueryStatus, ClientError> {
        let path = self.job_path(query_id, "")?;
        let query = match wait {
            Some(w) if !w.is_zero() => format!("wait_ms={}", w.min(MAX_WAIT).as_millis()),
            _ => String::new(),
        };
        let hold = wait.unwrap_or_default().min(MAX_WAIT);
        let r = self
            .bare(Method::GET, &path, &query, hold, deadline)
            .await?;
        if r.status != 200 {
            return Err(self.error_of(&r, &format!("query {query_id}")));
        }
        let st: QueryStatus = serde_json::from_slice(&r.body).map_err(|e| self.bad_json(e))?;
        if JobState::parse(&st.status).is_none() {
            return Err(ClientError::Protocol {
                endpoint: self.endpoint(),
                message: format!("unknown status {:?}", st.status),
            });
        }
        Ok(st)
    }

    /// `GET /queries/{id}/results`: one page, rows typed by `column_types`.
    pub async fn page(
        &self,
        query_id: &str,
        page_token: Option<&str>,
        max_results: u32,
        deadline: Instant,
    ) -> Result<Page, ClientError> {
        self.page_typed(query_id, page_token, max_results, None, deadline)
            .await
    }

    async fn page_typed(
        &self,
        query_id: &str,
        page_token: Option<&str>,
        max_results: u32,
        known_types: Option<&[ColumnType]>,
        deadline: Instant,
    ) -> Result<Page, ClientError> {
        let path = self.job_path(query_id, "/results")?;
        let mut query = format!("max_results={}", max_results.clamp(1, 5000));
        if let Some(t) = page_token {
            query.push_str("&page_token=");
            percent_encode_into(t, &mut query);
        }
        let hold = Duration::ZERO;
        let r = self
            .bare(Method::GET, &path, &query, hold, deadline)
            .await?;
        if r.status != 200 {
            return Err(self.error_of(&r, &format!("results of query {query_id}")));
        }
        let p: ResultsPage = serde_json::from_slice(&r.body).map_err(|e| self.bad_json(e))?;
        let column_types = p.column_types.unwrap_or_default();
        let parsed;
        let types = match known_types {
            Some(t) => t,
            None => {
                parsed = column_types
                    .iter()
                    .map(|t| ColumnType::parse(t))
                    .collect::<Vec<_>>();
                &parsed
            }
        };
        Ok(Page {
            rows: decode_rows(types, &p.rows),
            columns: p.columns,
            column_types,
            row_count: p.row_count,
            next_page_token: p.next_page_token,
        })
    }

    /// `POST /queries/{id}/cancel`.
    pub async fn cancel(&self, query_id: &str, deadline: Instant) -> Result<IdStatus, ClientError> {
        let path = self.job_path(query_id, "/cancel")?;
        let r = self
            .bare(Method::POST, &path, "", Duration::ZERO, deadline)
            .await?;
        if r.status != 200 {
            return Err(self.error_of(&r, &format!("query {query_id}")));
        }
        serde_json::from_slice(&r.body).map_err(|e| self.bad_json(e))
    }

    /// `DELETE /queries/{id}`.
    pub async fn delete(&self, query_id: &str, deadline: Instant) -> Result<IdStatus, ClientError> {
        let path = self.job_path(query_id, "")?;
        let r = self
            .bare(Method::DELETE, &path, "", Duration::ZERO, deadline)
            .await?;
        if r.status != 200 {
            return Err(self.error_of(&r, &format!("query {query_id}")));
        }
        serde_json::from_slice(&r.body).map_err(|e| self.bad_json(e))
    }

    /// `GET /health` within `timeout`.
    pub async fn health(&self, timeout: Duration) -> Result<Health, ClientError> {
        let r = self
            .bare(
                Method::GET,
                "/health",
                "",
                Duration::ZERO,
                Instant::now() + timeout,
            )
            .await?;
        if r.status != 200 {
            return Err(self.error_of(&r, "/health"));
        }
        let h: Health = serde_json::from_slice(&r.body).map_err(|e| self.bad_json(e))?;
        if h.status != "ok" {
            return Err(ClientError::Protocol {
                endpoint: self.endpoint(),
                message: format!("health status {:?}", h.status),
            });
        }
        Ok(h)
    }

    /// `POST /execute`: the synchronous path. 429 is retried within the deadline (the
    /// agent refused it, nothing ran); a transport error is retried only when the
    /// connection was never made, so the statement cannot run twice.
    pub async fn execute(
        &self,
        sql: &str,
        params: &[Param],
        request_id: &str,
        deadline: Instant,
    ) -> Result<QueryRows, ClientError> {
        let body: Bytes = serde_json::to_vec(&QueryRequest {
            sql: sql.to_string(),
            request_id: Some(request_id.to_string()),
            params: params.to_vec(),
        })
        .map_err(|e| self.bad_json(e))?
        .into();
        loop {
            match self
                .call(
                    Method::POST,
                    "/execute",
                    "",
                    body.clone(),
                    Some(request_id),
                    None,
                    deadline,
                )
                .await
            {
                Ok(r) if r.status == 200 => {
                    let e: ExecuteResponse =
                        serde_json::from_slice(&r.body).map_err(|e| self.bad_json(e))?;
                    let column_types = e.column_types.unwrap_or_default();
                    let types: Vec<ColumnType> =
                        column_types.iter().map(|t| ColumnType::parse(t)).collect();
                    let rows = decode_rows(&types, &e.rows);
                    return Ok(QueryRows::complete(
                        e.columns,
                        column_types,
                        rows,
                        Via::Execute,
                    ));
                }
                Ok(r) => {
                    let e = self.error_of(&r, "POST /execute");
                    self.wait_retry_after(e, deadline).await?;
                }
                // Never retried here, not even when nothing was sent: the caller
                // knows whether another endpoint can take it.
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs one statement: submit (fresh request id) asking the agent to hold the
    /// answer until the job ends, so a short query costs one round trip (status and
    /// first page come back with the submit); otherwise long-poll to a terminal
    /// status. Then stream the pages in order and delete the job off the caller's
    /// path. Falls back to `/execute` on an agent without lifecycle routes. Past
    /// `deadline`, or when the returned future or the [`QueryRows`] is dropped, the
    /// job is canceled and consumed on the agent.
    pub async fn run(&self, sql: &str, deadline: Instant) -> Result<QueryRows, ClientError> {
        self.run_params(sql, &[], deadline).await
    }

    /// [`AgentClient::run`] with `params` bound to the statement's placeholders.
    pub async fn run_params(
        &self,
        sql: &str,
        params: &[Param],
        deadline: Instant,
    ) -> Result<QueryRows, ClientError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        if !self.uses_lifecycle() {
            return self.execute(sql, params, &request_id, deadline).await;
        }
        // Until the submit answers, only the request id names the job: a caller that
        // drops the future meanwhile leaves it to this guard to find and end it.
        let mut submit_guard = SubmitGuard {
            client: self.clone(),
            armed: Some((sql.to_string(), params.to_vec(), request_id.clone())),
        };
        let wait = self.poll_wait(deadline);
        let submitted = self
            .submit_inner(sql, params, &request_id, wait, deadline)
            .await;
        // A timeout, a broken connection, a hung agent or an answer that could not
        // be read (too large, not JSON) may leave a job behind: the guard ends it.
        // Refusals (400, 401, 429, 503) and an unreachable agent queued nothing.
        if !matches!(
            submitted,
            Err(ClientError::Timeout
                | ClientError::Transport { .. }
                | ClientError::Unresponsive { .. }
                | ClientError::Protocol { .. })
        ) {
            submit_guard.armed = None;
        }
        let (st, first, consumed) = match submitted? {
            Submit::NoLifecycle => {
                self.remember_no_lifecycle();
                return self.execute(sql, params, &request_id, deadline).await;
            }
            Submit::Finished(st, first, consumed) => (*st, first, consumed),
            Submit::Accepted(s) => {
                let mut guard = JobGuard {
                    client: self.clone(),
                    id: Some(s.query_id.clone()),
                };
                match self.wait_terminal(&s.query_id, deadline).await {
                    Ok(st) => {
                        guard.id = None;
                        (st, None, false)
                    }
                    Err(e) => {
                        // Cancel and delete now (not from Drop), so the agent is clean
                        // when the caller sees the error.
                        guard.cleanup_now().await;
                        return Err(e.after_queued());
                    }
                }
            }
        };
        self.deliver(st, first, consumed, deadline).await
    }

    /// The rows of a job that reached terminal status `st` (with its first page when
    /// the submit brought it). From here the job is consumed in the background once
    /// its rows are in the caller's hands, or at once when it failed, unless the
    /// agent drops it by itself (`consumed`).
    async fn deliver(
        &self,
        st: QueryStatus,
        first: Option<Page>,
        consumed: bool,
        deadline: Instant,
    ) -> Result<QueryRows, ClientError> {
        let id = st.query_id.clone();
        match JobState::parse(&st.status) {
            Some(JobState::Succeeded) => {
                let column_types = st.column_types.unwrap_or_default();
                let columns = st.columns.unwrap_or_default();
                let whole = match &first {
                    Some(p) => p.next_page_token.is_none(),
                    None => st.row_count == Some(0),
                };
                if whole {
                    // Every row is here (or there are none: DDL, an empty SELECT):
                    // answer now and delete the job off the caller's path.
                    let rows = first.map(|p| p.rows).unwrap_or_default();
                    let mut rows = QueryRows::complete(columns, column_types, rows, Via::Lifecycle);
                    rows.query_id = Some(id.clone());
                    if consumed {
                        return Ok(rows);
                    }
                    let c = self.clone();
                    let task = tokio::spawn(async move {
                        let _ = c.delete(&id, c.cleanup_deadline()).await;
                    });
                    return Ok(rows.with_task(task));
                }
                let types: Vec<ColumnType> =
                    column_types.iter().map(|t| ColumnType::parse(t)).collect();
                let (tx, rx) = mpsc::channel(PAGES_BUFFERED);
                let mut start = None;
                if let Some(p) = first {
                    start = p.next_page_token;
                    // The channel is empty and holds at least one page.
                    let _ = tx.try_send(Ok(p.rows));
                }
                // The fetcher owns the job from here: it deletes it when done, on error,
                // on the deadline, or when the caller drops the rows.
                let task = tokio::spawn(fetch_pages(
                    self.clone(),
                    id.clone(),
                    types,
                    start,
                    deadline,
                    tx,
                ));
                Ok(QueryRows::streamed(
                    columns,
                    column_types,
                    st.row_count,
                    Some(id),
                    Via::Lifecycle,
                    rx,
                )
                .with_task(task))
            }
            state => {
                if !consumed {
                    let _ = self.delete(&id, self.cleanup_deadline()).await;
                }
                let message = st.error.unwrap_or_default();
                if state == Some(JobState::Canceled) {
                    Err(ClientError::Canceled { message })
                } else {
                    Err(ClientError::Execution {
                        code: st.error_code.unwrap_or_else(|| "EXECUTION_ERROR".into()),
                        message,
                    })
                }
            }
        }
    }

    /// How long one long-poll (a status, or the submit itself) may wait: what is left
    /// of the deadline (less a margin for the answer to arrive), at most the agent's
    /// cap; `None` when the agent does not long-poll or no time is left.
    fn poll_wait(&self, deadline: Instant) -> Option<Duration> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let wait = remaining
            .min(self.inner.cfg.long_poll.min(MAX_WAIT))
            .saturating_sub(Duration::from_millis(10));
        (self.inner.long_poll.load(Ordering::Relaxed) && wait >= Duration::from_millis(1))
            .then_some(wait)
    }

    fn cleanup_deadline(&self) -> Instant {
        Instant::now() + self.inner.cfg.cleanup_timeout
    }

    /// Cancel, then delete; failures are logged, not returned (best effort).
    pub async fn cancel_and_delete(&self, query_id: &str) {
        let deadline = self.cleanup_deadline();
        if let Err(e) = self.cancel(query_id, deadline).await {
            tracing::debug!(endpoint = %self.inner.cfg.name, query_id, error = %e, "cancel failed");
        }
        if let Err(e) = self.delete(query_id, deadline).await {
            tracing::debug!(endpoint = %self.inner.cfg.name, query_id, error = %e, "delete failed");
        }
    }

    /// Long-polls until the job is terminal (interval polling for agents that answer
    /// a long-poll at once).
    async fn wait_terminal(&self, id: &str, deadline: Instant) -> Result<QueryStatus, ClientError> {
        let mut backoff = Duration::from_millis(2);
        loop {
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout);
            }
            let wait = self.poll_wait(deadline);
            let asked = Instant::now();
            let st = self.status(id, wait, deadline).await?;
            let state = JobState::parse(&st.status).unwrap_or(JobState::Queued);
            if state.is_terminal() {
                return Ok(st);
            }
            if let Some(w) = wait {
                if w >= Duration::from_millis(200) && asked.elapsed() < w / 4 {
                    // The agent ignored wait_ms: poll on an interval from now on.
                    self.inner.long_poll.store(false, Ordering::Relaxed);
                    tracing::info!(endpoint = %self.inner.cfg.name, "agent does not long-poll; polling");
                }
            }
            if wait.is_none() || !self.inner.long_poll.load(Ordering::Relaxed) {
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(backoff.min(left)).await;
                backoff = (backoff * 2).min(Duration::from_millis(100));
            }
        }
    }

    /// `/queries/{id}{tail}`, refusing ids that are not a plain token (they could
    /// never name a job, and must not change the path).
    fn job_path(&self, query_id: &str, tail: &str) -> Result<String, ClientError> {
        if query_id.is_empty()
            || query_id.len() > 128
            || !query_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ClientError::NotFound {
                endpoint: self.endpoint(),
                what: format!("query {query_id:?} (not a valid id)"),
            });
        }
        Ok(format!("/queries/{query_id}{tail}"))
    }
}

impl Executor for AgentClient {
    fn name(&self) -> &str {
        &self.inner.cfg.name
    }

    fn run_params<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<QueryRows, ClientError>> {
        Box::pin(AgentClient::run_params(self, sql, params, deadline))
    }

    fn run_arrow<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [crate::value::Value],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<crate::batches::ArrowBatches, ClientError>> {
        Box::pin(AgentClient::run_arrow_batches(self, sql, params, deadline))
    }
}

/// Cancels and deletes a job when dropped armed (the caller dropped `run`'s future).
struct JobGuard {
    client: AgentClient,
    id: Option<String>,
}

impl JobGuard {
    async fn cleanup_now(&mut self) {
        if let Some(id) = self.id.take() {
            self.client.cancel_and_delete(&id).await;
        }
    }
}

/// Ends a job submitted with a wait whose answer never reached the caller (the
/// caller dropped `run`'s future): re-submitting with the same request id returns
/// the job's id without queuing anything new (the agent's idempotency), then
/// cancel and delete. Armed only while that submit is in flight.
struct SubmitGuard {
    client: AgentClient,
    /// The statement, its parameters and its request id.
    armed: Option<(String, Vec<Param>, String)>,
}

impl Drop for SubmitGuard {
    fn drop(&mut self) {
        let Some((sql, params, request_id)) = self.armed.take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            rt.spawn(async move {
                let deadline = client.cleanup_deadline();
                let id = match client
                    .submit_inner(&sql, &params, &request_id, None, deadline)
                    .await
                {
                    Ok(Submit::Accepted(s)) => s.query_id,
                    Ok(Submit::Finished(st, _, _)) => st.query_id,
                    _ => return,
                };
                client.cancel_and_delete(&id).await;
            });
        }
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let client = self.client.clone();
                rt.spawn(async move { client.cancel_and_delete(&id).await });
            }
        }
    }
}

/// Fetches pages in order into `tx` (bounded), then deletes the job. On an error or
/// the deadline it cancels and deletes the job first, then hands the error to the
/// caller (waiting for the caller to take it, so a result is never silently cut
/// short). When the caller drops the rows it just cancels and deletes.
async fn fetch_pages(
    client: AgentClient,
    id: String,
    types: Vec<ColumnType>,
    start: Option<String>,
    deadline: Instant,
    tx: mpsc::Sender<Result<Vec<Row>, ClientError>>,
) {
    let mut token: Option<String> = start;
    let page_size = client.inner.cfg.page_size;
    let outcome: Result<bool, ClientError> = loop {
        let page = match client
            .page_typed(&id, token.as_deref(), page_size, Some(&types), deadline)
            .await
        {
            Ok(p) => p,
            Err(e) => break Err(e),
        };
        let next = page.next_page_token;
        match tokio::time::timeout_at(deadline.into(), tx.send(Ok(page.rows))).await {
            Ok(Ok(())) => {}
            // The caller dropped the rows.
            Ok(Err(_)) => break Ok(false),
            Err(_) => break Err(ClientError::Timeout),
        }
        match next {
            Some(t) => token = Some(t),
            None => break Ok(true),
        }
    };
    match outcome {
        Ok(true) => {
            // End the stream first: the caller has every row and need not wait for
            // the delete's round trip.
            drop(tx);
            let _ = client.delete(&id, client.cleanup_deadline()).await;
        }
        Ok(false) => client.cancel_and_delete(&id).await,
        Err(e) => {
            client.cancel_and_delete(&id).await;
            let _ = tx.send(Err(e)).await;
        }
    }
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
fn percent_encode_into(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_tokens_checked() {
        assert!(AgentClient::new(AgentConfig::new("a", "http://127.0.0.1:1", "t")).is_ok());
        // An agent behind a TLS proxy (trusting the system bundle here).
        let c = AgentClient::new(AgentConfig::new("a", "https://x:1", "t")).unwrap();
        assert_eq!(c.inner.base, "https://x:1");
        // A CA file without a certificate is refused, not trusted as empty.
        let mut cfg = AgentConfig::new("a", "https://x:1", "t");
        cfg.ca_pem = Some(Arc::new(
            b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_vec(),
        ));
        assert!(matches!(AgentClient::new(cfg), Err(ClientError::Config(_))));
        for bad in [
            "ftp://x:1",
            "x:1",
            "http://x:1/p",
            "",
            "http://",
            "https://",
        ] {
            assert!(
                matches!(
                    AgentClient::new(AgentConfig::new("a", bad, "t")),
                    Err(ClientError::Config(_))
                ),
                "{bad}"
            );
        }
        assert!(AgentClient::new(AgentConfig::new("a", "http://x:1", "bad\ntoken")).is_err());
    }

    #[test]
    fn encodes_tokens() {
        let mut s = String::new();
        percent_encode_into("MTAwMA==+/", &mut s);
        assert_eq!(s, "MTAwMA%3D%3D%2B%2F");
    }
}
