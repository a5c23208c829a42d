//! The HTTP source: records pushed with `POST /v1/records` (NDJSON, lines, a JSON array or one
//! raw record; gzip or zstd), plus an optional Kinesis/Firehose-compatible JSON API, over
//! HTTP/1.1 and HTTP/2, with optional TLS.
//!
//! A request is answered only after its records are in the pipeline's ingress queue (200
//! `{"accepted": N}`), or refused whole: when the queue stays full for `accept_wait` the answer
//! is 503 with `Retry-After` and none of the request's records were taken, so a client can
//! always retry safely. Bodies are read within `max_body_bytes` (a declared length over it is
//! refused before reading), decompressed within it, parsed by [`body`] and become one batch whose
//! records are spans into the body; the request's partition key and attributes are stored once
//! for the batch. The server runs on its own thread with a tokio runtime.
//!
//! Every peer gets bounded memory, time and share: what requests being read, decompressed and
//! parsed hold is taken from the source's `max_inflight_bytes` budget first (503 when it stays
//! taken for `accept_wait`); a connection has `header_timeout` to send a request's headers
//! (protocol detection and the HTTP/2 preface included) and `idle_timeout` of silence between
//! requests; a body must keep arriving (`body_timeout` plus `body_min_bytes_per_sec`, else 408);
//! TLS handshakes have `handshake_timeout`; `max_connections_per_peer` connections per address;
//! `max_streams` HTTP/2 streams per connection; small HTTP/2 flow-control windows.

pub mod aws_api;
pub mod body;
pub mod config;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use config::HttpSourceConfig;

use super::guard::{AcceptErrors, Activity, Budget, BudgetError, PeerCaps, Reservation, Tracked};
use crate::core::accounting::Counters;
use crate::core::deadline::{IdleTimeouts, TransferDeadline};
use crate::core::rate_limit::Repeats;
use crate::core::record::{Batch, Origin, PositionBase, RecordMeta};
use crate::queue::{Closed, Probe, Sender};
use crate::shutdown::Shutdown;
use aws_api::Sequence;
use body::{BodyError, BodyLimits, Encoding, Format};

/// HTTP/2 flow-control window of one stream: what a client may send before the router has read
/// it. Small: what sits in these windows is outside the `max_inflight_bytes` budget.
pub const H2_STREAM_WINDOW: u32 = 64 << 10;
/// HTTP/2 flow-control window of one connection (all its streams).
pub const H2_CONNECTION_WINDOW: u32 = 128 << 10;
/// What a connection costs besides its requests' bodies (socket, TLS and protocol state,
/// buffers), as counted in the memory bound; HTTP/1 adds its read buffer and HTTP/2 its windows
/// and header lists.
pub const CONNECTION_OVERHEAD: u64 = 64 << 10;

/// The smallest HTTP/1 read buffer: bodies pass through it, and a buffer much smaller than a
/// request body costs a read, a body frame and often a timer per fill (24 KiB made the router
/// spend ~25% more CPU per record on 110 KB requests than 128 KiB).
pub const H1_MIN_BUFFER: usize = 128 << 10;

/// The read buffer of an HTTP/1 connection (hyper's `max_buf_size`, which grows to it as reads
/// fill it): the request head must fit in it; bodies pass through it.
pub fn h1_buffer_bytes(cfg: &HttpSourceConfig) -> usize {
    (cfg.max_header_bytes.max(8 << 10) + (8 << 10)).max(H1_MIN_BUFFER)
}

/// The most memory one connection holds outside the `max_inflight_bytes` budget.
pub fn connection_bytes(cfg: &HttpSourceConfig) -> u64 {
    let h1 = h1_buffer_bytes(cfg) as u64;
    let h2 =
        u64::from(cfg.max_streams) * cfg.max_header_bytes as u64 + u64::from(H2_CONNECTION_WINDOW);
    CONNECTION_OVERHEAD + h1.max(h2)
}

/// Why the HTTP source could not run.
#[derive(Debug, thiserror::Error)]
pub enum HttpSourceError {
    /// The listener could not be opened.
    #[error("source `{name}`: cannot listen on {address}: {error}")]
    Bind {
        /// The source.
        name: String,
        /// Where.
        address: std::net::SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The TLS files are unusable.
    #[error("source `{name}`: TLS: {message}")]
    Tls {
        /// The source.
        name: String,
        /// What was wrong, naming the file.
        message: String,
    },
    /// The runtime could not start.
    #[error("source `{name}`: cannot start its runtime: {error}")]
    Runtime {
        /// The source.
        name: String,
        /// Why.
        error: std::io::Error,
    },
}

/// The HTTP source, ready to run.
pub struct HttpSource {
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: Shutdown,
}

struct Shared {
    name: Arc<str>,
    cfg: HttpSourceConfig,
    counters: Arc<Counters>,
    tx: Sender<Batch>,
    probe: Probe<Batch>,
    sequence: Mutex<Sequence>,
    stopping: AtomicBool,
    /// Bytes held by requests being read, decompressed and parsed.
    budget: Budget,
    /// Keeps per-connection warnings (refused peers, timeouts) from flooding the log.
    warnings: Mutex<Repeats>,
    /// The AWS API's state (used when `cfg.aws_api`).
    aws: aws_api::serve::State,
}

impl Shared {
    /// Logs a per-connection warning, at most 10 per second, saying how many were held back.
    fn warn(&self, what: std::fmt::Arguments<'_>) {
        let admitted = self
            .warnings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(Instant::now());
        if let Some(suppressed) = admitted {
            tracing::warn!(source = %self.name, suppressed, "{what}");
        }
    }

    /// The hyper server settings of every connection.
    fn builder(&self) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
        let cfg = &self.cfg;
        let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        // Header and idle timeouts are the connection watchdog's (see `serve_io`), for both
        // protocols alike; hyper's own HTTP/1 header timeout would also close idle keep-alive
        // connections early.
        b.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(h1_buffer_bytes(cfg));
        b.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(cfg.max_streams)
            .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX))
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .max_send_buf_size(64 << 10);
        b
    }
}

impl HttpSource {
    /// Binds the listener (so that start-up fails at once on a busy port or bad TLS files).
    pub fn bind(
        name: &str,
        cfg: HttpSourceConfig,
        counters: Arc<Counters>,
        tx: Sender<Batch>,
        shutdown: Shutdown,
    ) -> Result<HttpSource, HttpSourceError> {
        let tls = match &cfg.tls {
            Some(files) => {
                let c = crate::tls::Identity::from_pem_files(&files.cert, &files.key)
                    .and_then(|id| crate::tls::server_config(id, &[b"h2", b"http/1.1"], None))
                    .map_err(|message| HttpSourceError::Tls {
                        name: name.to_owned(),
                        message,
                    })?;
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(c)))
            }
            None => None,
        };
        let listener =
            std::net::TcpListener::bind(cfg.address).map_err(|error| HttpSourceError::Bind {
                name: name.to_owned(),
                address: cfg.address,
                error,
            })?;
        let base = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let cfg_budget = (cfg.max_inflight_bytes, cfg.max_inflight_bytes_per_peer);
        if cfg.aws_api && cfg.aws.auth == (aws_api::config::AwsAuth::Open { explicit: true }) {
            tracing::warn!(
                "source `{name}`: the AWS API on {} takes requests signed with any key \
                 (aws_auth = \"none\"): anyone who can reach it can write records",
                cfg.address
            );
        }
        let aws = aws_api::serve::State::new(cfg.aws.shards, base);
        Ok(HttpSource {
            shared: Arc::new(Shared {
                name: Arc::from(name),
                probe: tx.probe(),
                cfg,
                counters,
                tx,
                sequence: Mutex::new(Sequence::new(base)),
                stopping: AtomicBool::new(false),
                budget: Budget::new(cfg_budget.0, cfg_budget.1),
                warnings: Mutex::new(Repeats::new(10, Instant::now())),
                aws,
            }),
            listener,
            tls,
            shutdown,
        })
    }

    /// The address it listens on (useful with port 0).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` is triggered, then stops accepting, lets requests in progress
    /// finish (for up to `grace`) and returns.
    pub fn run(self, grace: Duration) -> Result<(), HttpSourceError> {
        let name = self.shared.name.to_string();
        let workers = self.shared.cfg.workers;
        super::run_on_runtime("http", &name, workers, self.serve(grace))
            .map_err(|error| HttpSourceError::Runtime { name, error })?
    }

    async fn serve(self, grace: Duration) -> Result<(), HttpSourceError> {
        let bind_err = |error| HttpSourceError::Bind {
            name: self.shared.name.to_string(),
            address: self.shared.cfg.address,
            error,
        };
        self.listener.set_nonblocking(true).map_err(bind_err)?;
        let listener = TcpListener::from_std(self.listener).map_err(bind_err)?;
        let max = self.shared.cfg.max_connections;
        let conns = Arc::new(Semaphore::new(max));
        let peers = PeerCaps::new(self.shared.cfg.max_connections_per_peer);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut accept_errors = AcceptErrors::new(format!("source `{}`", self.shared.name));
        loop {
            // Shutdown wakes either wait at once, and wins over a connection ready with it.
            let permit = tokio::select! {
                biased;
                () = self.shutdown.wait() => break,
                p = conns.clone().acquire_owned() => p,
            };
            let Ok(permit) = permit else { break };
            let accepted = tokio::select! {
                biased;
                () = self.shutdown.wait() => None,
                a = listener.accept() => Some(a),
            };
            let Some(accepted) = accepted else { break };
            let (stream, peer) = match accepted {
                Ok(a) => {
                    accept_errors.succeeded();
                    a
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait (longer each time) and go on;
                    // the connections wait in the listen backlog meanwhile.
                    drop(permit);
                    accept_errors.failed(&e).await;
                    continue;
                }
            };
            let Some(slot) = peers.admit(peer.ip()) else {
                self.shared.warn(format_args!(
                    "closing a connection from {}: max_connections_per_peer ({}) reached",
                    peer.ip(),
                    peers.max()
                ));
                continue;
            };
            let _ = stream.set_nodelay(true);
            let shared = self.shared.clone();
            let tls = self.tls.clone();
            let stop = stop_rx.clone();
            tokio::spawn(async move {
                connection(shared, stream, peer, tls, stop).await;
                drop((permit, slot));
            });
        }
        self.shared.stopping.store(true, Ordering::Relaxed);
        drop(listener);
        let _ = stop_tx.send(true);
        // Every connection gives its permit back when it has ended.
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        if tokio::time::timeout(grace, conns.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(source = %self.shared.name, "connections still open after the grace period; closing them");
        }
        Ok(())
    }
}

/// The address a request came from (a request extension: its share of the memory budget).
#[derive(Debug, Clone, Copy)]
struct Peer(std::net::IpAddr);

/// Serves one accepted connection: the TLS handshake (within `handshake_timeout`), then HTTP.
async fn connection(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: watch::Receiver<bool>,
) {
    let activity = Activity::new();
    let io = Tracked::new(stream, activity.clone());
    let ip = Peer(peer.ip());
    match tls {
        None => serve_io(&shared, TokioIo::new(io), ip, activity, stop).await,
        Some(acceptor) => {
            let handshake = shared.cfg.handshake_timeout;
            let tls = match tokio::time::timeout(handshake, acceptor.accept(io)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(source = %shared.name, %peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    shared.warn(format_args!(
                        "closing a connection from {peer}: no TLS handshake within \
                         handshake_timeout_ms ({} ms)",
                        handshake.as_millis()
                    ));
                    return;
                }
            };
            activity.restart();
            serve_io(&shared, TokioIo::new(tls), ip, activity, stop).await;
        }
    }
}

/// Serves HTTP on one connection until it ends, the router stops, or its watchdog closes it:
/// a connection with no request in progress is closed when [`IdleTimeouts`] says so (a new
/// connection that never completes its first request's headers, a slow request head, an idle
/// keep-alive connection). Closing is graceful (HTTP/2 GOAWAY), then forced after
/// `header_timeout` more.
async fn serve_io<I>(
    shared: &Arc<Shared>,
    io: I,
    peer: Peer,
    activity: Arc<Activity>,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = {
        let shared = shared.clone();
        let activity = activity.clone();
        service_fn(move |mut req: Request<Incoming>| {
            let shared = shared.clone();
            let busy = activity.request();
            req.extensions_mut().insert(peer);
            async move {
                let answer = handle(&shared, req).await;
                drop(busy);
                Ok::<_, Infallible>(answer)
            }
        })
    };
    let builder = shared.builder();
    let conn = builder.serve_connection(io, service).into_owned();
    tokio::pin!(conn);
    let timeouts = IdleTimeouts {
        header: shared.cfg.header_timeout,
        idle: shared.cfg.idle_timeout,
    };
    let mut closing: Option<tokio::time::Instant> = None;
    let mut stopped = *stop.borrow();
    if stopped {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let watchdog = async {
            match activity.idle_state() {
                None => {
                    activity.changed().await;
                    false
                }
                Some((since, served, first)) => {
                    let deadline = timeouts.deadline(since, served, first);
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline.into()) => true,
                        () = activity.changed() => false,
                    }
                }
            }
        };
        let force = async {
            match closing {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = conn.as_mut() => break,
            expired = watchdog, if closing.is_none() => {
                if expired {
                    tracing::debug!(source = %shared.name, "closing a connection: header or idle timeout");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + shared.cfg.header_timeout);
                }
            }
            changed = stop.changed(), if !stopped => {
                stopped = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = force => break,
        }
    }
}

type Answer = Response<Full<Bytes>>;

fn json_answer(status: u16, body: String) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error_answer(status: u16, message: impl std::fmt::Display) -> Answer {
    json_answer(
        status,
        serde_json::json!({"error": message.to_string(), "status": status}).to_string(),
    )
}

fn busy_answer(shared: &Shared, message: &str) -> Answer {
    let mut r = error_answer(503, message);
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(shared.cfg.retry_after_secs),
    );
    r
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Answer {
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/health") => json_answer(200, r#"{"status":"ok"}"#.into()),
        (&Method::GET, "/ready") => {
            if shared.stopping.load(Ordering::Relaxed) {
                busy_answer(shared, "shutting down")
            } else if saturated(&shared.probe) {
                busy_answer(shared, "pipeline is full")
            } else {
                json_answer(200, r#"{"status":"ready"}"#.into())
            }
        }
        (&Method::POST, "/v1/records") => counted(shared, records(shared, req).await),
        // The Kinesis/Firehose API: every request to `/` (see `aws_api::serve`).
        (_, "/") if shared.cfg.aws_api => {
            counted(shared, aws_api::serve::handle(shared, req).await)
        }
        (_, "/v1/records") => {
            let mut r = error_answer(405, "use POST for /v1/records");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            r
        }
        (_, "/health" | "/ready") => {
            let mut r = error_answer(405, format!("use GET for {path}"));
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            r
        }
        _ => error_answer(
            404,
            format!("no such endpoint: {path} (POST /v1/records, GET /health, GET /ready)"),
        ),
    }
}

/// Counts an answer to a record-carrying request by its status code (for the metrics).
fn counted(shared: &Shared, answer: Answer) -> Answer {
    shared.counters.count_response(answer.status().as_str());
    answer
}

/// True when the ingress queue is at one of its limits.
fn saturated(probe: &Probe<Batch>) -> bool {
    let (limits, depth) = (probe.limits(), probe.depth());
    depth.records >= limits.records_max || depth.bytes >= limits.bytes_max
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    use subtle::ConstantTimeEq;
    let Some(want) = &shared.cfg.auth_token else {
        return true;
    };
    let got = header_str(headers, header::AUTHORIZATION)
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Equal lengths are compared in constant time; the length itself is not secret enough to
    // matter (and a length mismatch still does the comparison against itself).
    if got.len() == want.len() {
        bool::from(got.as_bytes().ct_eq(want.as_bytes()))
    } else {
        let _ = want.as_bytes().ct_eq(want.as_bytes());
        false
    }
}

/// The answer to a request that the memory budget cannot hold: 503 (retry) when other requests
/// hold it now, 413 when this one would need more than all of it.
fn budget_answer(shared: &Shared, e: BudgetError) -> Answer {
    match e {
        BudgetError::Busy { .. } => {
            busy_answer(shared, &format!("{e}; nothing was accepted, retry later"))
        }
        BudgetError::TooLarge { .. } => {
            error_answer(413, format!("the request {e}; send smaller requests"))
        }
    }
}

/// [`body::Reserve`] over a request's [`Reservation`] (decompression and parsing are
/// synchronous: they take bytes that are free now, or give up).
struct Held<'a>(&'a mut Reservation);

impl body::Reserve for Held<'_> {
    fn grow(&mut self, n: usize) -> Result<(), BodyError> {
        self.0.try_grow(n).map_err(|e| BodyError::Memory {
            busy: matches!(e, BudgetError::Busy { .. }),
            message: format!("decoding the body {e}"),
        })
    }

    fn release(&mut self, n: usize) {
        let held = self.0.held();
        self.0.shrink_to(held.saturating_sub(n));
    }
}

/// Why a body could not be read (nothing of the request was taken).
#[derive(Debug)]
enum ReadFailure {
    /// Over `max_body_bytes` (declared or sent).
    TooLarge,
    /// The budget could not hold it.
    Budget(BudgetError),
    /// It did not arrive within its deadline.
    Stalled,
    /// The connection failed.
    Broken(String),
}

/// The request's peer address (0.0.0.0 if unknown).
fn peer_of<B>(req: &Request<B>) -> std::net::IpAddr {
    req.extensions()
        .get::<Peer>()
        .map_or(std::net::IpAddr::from([0u8; 4]), |p| p.0)
}

/// Reads a body within `max_body_bytes` (a declared length over it is refused before reading),
/// taking its bytes from the source's budget for `peer` first (waiting for them at most
/// `accept_wait`) and within the body deadline (`body_timeout` plus the time its bytes take at
/// `body_min_bytes_per_sec`). Returns the body and its reservation. Shared by `/v1/records` and
/// the AWS API.
async fn read_limited(
    shared: &Shared,
    headers: &HeaderMap,
    mut body: Incoming,
    peer: std::net::IpAddr,
) -> Result<(Bytes, Reservation), ReadFailure> {
    let max = shared.cfg.max_body_bytes;
    let declared =
        header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ReadFailure::TooLarge);
    }
    let started = Instant::now();
    let wait_until = tokio::time::Instant::now() + shared.cfg.accept_wait;
    let transfer = TransferDeadline {
        grace: shared.cfg.body_timeout,
        min_bytes_per_sec: shared.cfg.body_min_bytes_per_sec,
    };
    let mut held = shared.budget.reserve(peer);
    let mut buf: Vec<u8> = Vec::new();
    if let Some(n) = declared {
        let n = n as usize;
        held.grow(n, wait_until)
            .await
            .map_err(ReadFailure::Budget)?;
        buf.reserve_exact(n);
    }
    loop {
        let deadline = transfer.deadline(started, buf.len() as u64);
        // `timeout_at` arms its timer only when the frame is not ready at once (the common case
        // with a buffer as large as the body): arming a timer can wake the runtime's timer
        // driver, a system call and a context switch.
        let frame = match tokio::time::timeout_at(deadline.into(), body.frame()).await {
            Err(_) => {
                shared.warn(format_args!(
                    "a request body stalled: {} bytes in {} ms (body_timeout_ms {}, \
                     body_min_bytes_per_sec {})",
                    buf.len(),
                    started.elapsed().as_millis(),
                    transfer.grace.as_millis(),
                    transfer.min_bytes_per_sec
                ));
                return Err(ReadFailure::Stalled);
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(ReadFailure::Broken(e.to_string())),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let len = buf.len() + data.len();
        if len > max {
            return Err(ReadFailure::TooLarge);
        }
        if len > buf.capacity() {
            // Grow like a Vec does (the held bytes are the buffer's capacity), counting the old
            // buffer too until the copy is done.
            let new = (buf.capacity() * 2).max(len).max(16 << 10).min(max);
            held.grow(new, wait_until)
                .await
                .map_err(ReadFailure::Budget)?;
            buf.reserve_exact(new - buf.len());
            held.shrink_to(buf.capacity());
        }
        buf.extend_from_slice(&data);
    }
    held.shrink_to(buf.capacity());
    Ok((Bytes::from(buf), held))
}

/// Reads a `/v1/records` body (see [`read_limited`]); a failure is the answer: 413, 503 with
/// `Retry-After` (budget taken), 408 (stalled), 400.
async fn read_body(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<(HeaderMap, Bytes, Reservation), Answer> {
    let peer = peer_of(&req);
    let (parts, body) = req.into_parts();
    match read_limited(shared, &parts.headers, body, peer).await {
        Ok((raw, held)) => Ok((parts.headers, raw, held)),
        Err(ReadFailure::TooLarge) => Err(error_answer(
            413,
            format!(
                "body exceeds max_body_bytes ({} bytes); send smaller requests",
                shared.cfg.max_body_bytes
            ),
        )),
        Err(ReadFailure::Budget(e)) => Err(budget_answer(shared, e)),
        Err(ReadFailure::Stalled) => Err(error_answer(
            408,
            "the body did not arrive in time (body_timeout_ms plus body_min_bytes_per_sec); \
             nothing was accepted",
        )),
        Err(ReadFailure::Broken(e)) => Err(error_answer(400, format!("reading the body: {e}"))),
    }
}

/// Query parameters, percent-decoded.
fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| crate::config::uri::percent_decode(&s.replace('+', " "));
        out.push((dec(k)?, dec(v)?));
    }
    Ok(out)
}

/// The partition key and attributes a request gives its records (`X-Partition-Key`,
/// `X-Attribute-NAME` headers; `partition_key`, `attr.NAME` query parameters).
fn request_meta(headers: &HeaderMap, query: &[(String, String)]) -> Option<RecordMeta> {
    let mut attributes: Vec<(Box<str>, Box<str>)> = Vec::new();
    for (k, v) in headers {
        if let Some(name) = k.as_str().strip_prefix("x-attribute-")
            && let Ok(v) = v.to_str()
        {
            attributes.push((name.into(), v.into()));
        }
    }
    let mut partition_key: Option<Arc<str>> =
        header_str(headers, "x-partition-key").map(Into::into);
    for (k, v) in query {
        if k == "partition_key" {
            partition_key = Some(v.as_str().into());
        } else if let Some(name) = k.strip_prefix("attr.") {
            attributes.push((name.into(), v.as_str().into()));
        }
    }
    let meta = RecordMeta {
        partition_key,
        explicit_hash_key: None,
        attributes: attributes.into(),
    };
    (meta != RecordMeta::default()).then_some(meta)
}

fn origin(shared: &Shared) -> Origin {
    Origin {
        source: shared.name.clone(),
        arrival_unix_nanos: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        arrival: Instant::now(),
        position: PositionBase::None,
    }
}

/// Puts a batch into the pipeline, waiting up to `accept_wait` for room, then (with `ack =
/// "durable"` or `"delivered"`) until its records are safe. `held` (what reading the request
/// took from the budget) is given back once the batch is in the queue, whose own limits count
/// it from then on. `Err` is the answer for a refusal; nothing of the batch was taken then.
async fn accept(shared: &Shared, batch: Batch, held: Reservation) -> Result<(), &'static str> {
    if shared.stopping.load(Ordering::Relaxed) {
        return Err("shutting down");
    }
    let (n, bytes) = (batch.len() as u64, batch.payload_bytes());
    let (batch, safe) = shared.cfg.ack.hold(batch);
    let sent = tokio::time::timeout(shared.cfg.accept_wait, shared.tx.send(batch)).await;
    drop(held);
    match sent {
        Ok(Ok(())) => {
            shared.counters.add_in(n, bytes);
            shared.counters.add_out(n, bytes);
            if let Some(safe) = safe {
                // Completes when the last copy of the batch is done with, whatever happened.
                let _ = safe.await;
            }
            Ok(())
        }
        Ok(Err(Closed(_))) => Err("the pipeline has stopped"),
        Err(_) => Err("pipeline is full"),
    }
}

async fn records(shared: &Shared, req: Request<Incoming>) -> Answer {
    if !authorized(shared, req.headers()) {
        let mut r = error_answer(401, "missing or wrong bearer token");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let query = match query_pairs(req.uri().query()) {
        Ok(q) => q,
        Err(e) => return error_answer(400, format!("query: {e}")),
    };
    let (headers, raw, mut held) = match read_body(shared, req).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let limits = BodyLimits {
        max_body_bytes: shared.cfg.max_body_bytes,
        max_record_bytes: shared.cfg.max_record_bytes,
    };
    let raw_held = held.held();
    let meta = request_meta(&headers, &query);
    let parsed = Encoding::from_header(header_str(&headers, header::CONTENT_ENCODING))
        .and_then(|enc| {
            let compressed = enc != Encoding::Identity;
            let data = body::decode_content(raw, enc, limits.max_body_bytes, &mut Held(&mut held))?;
            if compressed {
                // The compressed body is gone; its decompressed form is held instead.
                let h = held.held();
                held.shrink_to(h.saturating_sub(raw_held));
            }
            Ok(data)
        })
        .and_then(|data| {
            let q = query
                .iter()
                .find(|(k, _)| k == "format")
                .map(|(_, v)| v.as_str());
            let ct = header_str(&headers, header::CONTENT_TYPE);
            let format = Format::choose(q, ct, &data, shared.cfg.format)?;
            // The span table, and the request's metadata (stored once for the batch).
            let extra = body::parse_memory(&data, format)
                + meta.as_ref().map_or(0, |m| m.text_bytes() as usize);
            body::Reserve::grow(&mut Held(&mut held), extra)?;
            body::parse(data, format, &limits)
        });
    let parsed = match parsed {
        Ok(p) => p,
        Err(e @ BodyError::Memory { busy: true, .. }) => {
            return busy_answer(shared, &format!("{e}; nothing was accepted, retry later"));
        }
        Err(e) => return error_answer(e.status(), format!("{e}; nothing was accepted")),
    };
    let n = parsed.spans.len();
    let mut batch = Batch::new(parsed.data, parsed.spans, origin(shared));
    if let Some(meta) = meta {
        // One copy for the whole request, whatever the number of records.
        batch = batch.with_shared_meta(meta);
    }
    match accept(shared, batch, held).await {
        Ok(()) => json_answer(200, format!("{{\"accepted\":{n}}}")),
        Err(why) => busy_answer(shared, &format!("{why}; nothing was accepted, retry later")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_meta_from_headers_and_query() {
        let mut h = HeaderMap::new();
        h.insert("x-partition-key", HeaderValue::from_static("dev-1"));
        h.insert("x-attribute-site", HeaderValue::from_static("north"));
        let q = query_pairs(Some("attr.zone=a%2Fb&format=raw")).unwrap();
        let m = request_meta(&h, &q).unwrap();
        assert_eq!(m.partition_key.as_deref(), Some("dev-1"));
        assert_eq!(
            &m.attributes[..],
            &[
                ("site".into(), "north".into()),
                ("zone".into(), "a/b".into())
            ][..]
        );
        let q = query_pairs(Some("partition_key=p+1")).unwrap();
        assert_eq!(
            request_meta(&HeaderMap::new(), &q)
                .unwrap()
                .partition_key
                .as_deref(),
            Some("p 1")
        );
        assert_eq!(request_meta(&HeaderMap::new(), &[]), None);
        assert!(query_pairs(Some("a=%zz")).is_err());
    }
}
