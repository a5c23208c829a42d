//! The HTTP source: records pushed with `POST /v1/records` (NDJSON, lines, a JSON array or one
//! raw record; gzip or zstd), plus an optional Kinesis/Firehose-compatible JSON API, over
//! HTTP/1.1 and HTTP/2, with optional TLS.
//!
//! A request is answered only after its records are in the pipeline's ingress queue (200
//! `{"accepted": N}`), or refused whole: when the queue stays full for `accept_wait` the answer
//! is 503 with `Retry-After` and none of the request's records were taken, so a client can
//! always retry safely. Bodies are read within `max_body_bytes` (a declared length over it is
//! refused before reading), decompressed within it, parsed by [`body`] and become one batch whose
//! records are spans into the body. The server runs on its own thread with a tokio runtime.

pub mod aws_api;
pub mod body;
pub mod config;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use config::HttpSourceConfig;

use crate::core::accounting::Counters;
use crate::core::record::{Batch, Origin, PositionBase, RecordMeta};
use crate::topology::queue::{Closed, Probe, Sender};
use aws_api::Sequence;
use body::{BodyLimits, Encoding, Format};

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
    stop: Arc<AtomicBool>,
}

struct Shared {
    name: Arc<str>,
    cfg: HttpSourceConfig,
    counters: Arc<Counters>,
    tx: Sender<Batch>,
    probe: Probe<Batch>,
    sequence: Mutex<Sequence>,
    stopping: AtomicBool,
    /// The AWS API's state (used when `cfg.aws_api`).
    aws: aws_api::serve::State,
}

impl HttpSource {
    /// Binds the listener (so that start-up fails at once on a busy port or bad TLS files).
    pub fn bind(
        name: &str,
        cfg: HttpSourceConfig,
        counters: Arc<Counters>,
        tx: Sender<Batch>,
        stop: Arc<AtomicBool>,
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
                aws,
            }),
            listener,
            tls,
            stop,
        })
    }

    /// The address it listens on (useful with port 0).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `stop` is set, then stops accepting, lets requests in progress finish (for
    /// up to `grace`) and returns.
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
        let conns = Arc::new(Semaphore::new(self.shared.cfg.max_connections));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            let permit = tokio::select! {
                p = conns.clone().acquire_owned() => p,
                _ = tick.tick() => {
                    if self.stop.load(Ordering::Relaxed) { break; }
                    continue;
                }
            };
            let Ok(permit) = permit else { break };
            let accepted = loop {
                tokio::select! {
                    a = listener.accept() => break Some(a),
                    _ = tick.tick() => {
                        if self.stop.load(Ordering::Relaxed) { break None; }
                    }
                }
            };
            let Some(accepted) = accepted else { break };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little and go on.
                    tracing::warn!(source = %self.shared.name, "accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let shared = self.shared.clone();
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // A client that never finishes its headers cannot hold a connection slot for long.
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            match &self.tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn.into_owned());
                    tokio::spawn(async move {
                        let _ = conn.await;
                        drop(permit);
                    });
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    let watcher = graceful.watcher();
                    let name = self.shared.name.clone();
                    tokio::spawn(async move {
                        let tls = match tokio::time::timeout(
                            Duration::from_secs(10),
                            acceptor.accept(stream),
                        )
                        .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(source = %name, %peer, "TLS handshake failed: {e}");
                                return;
                            }
                            Err(_) => return,
                        };
                        let conn = builder.serve_connection(TokioIo::new(tls), service);
                        let _ = watcher.watch(conn.into_owned()).await;
                        drop(permit);
                    });
                }
            }
        }
        self.shared.stopping.store(true, Ordering::Relaxed);
        drop(listener);
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(source = %self.shared.name, "connections still open after the grace period; closing them");
        }
        Ok(())
    }
}

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Reads the body within `max_body_bytes`: a declared length over it is refused before reading.
async fn read_body(shared: &Shared, req: Request<Incoming>) -> Result<(HeaderMap, Bytes), Answer> {
    let max = shared.cfg.max_body_bytes;
    let too_large = || {
        error_answer(
            413,
            format!("body exceeds max_body_bytes ({max} bytes); send smaller requests"),
        )
    };
    let declared = header_str(req.headers(), header::CONTENT_LENGTH)
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    match Limited::new(body, max).collect().await {
        Ok(c) => Ok((parts.headers, c.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(error_answer(400, format!("reading the body: {e}"))),
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
    let mut meta = RecordMeta::default();
    for (k, v) in headers {
        if let Some(name) = k.as_str().strip_prefix("x-attribute-")
            && let Ok(v) = v.to_str()
        {
            meta.attributes.push((name.into(), v.into()));
        }
    }
    meta.partition_key = header_str(headers, "x-partition-key").map(Into::into);
    for (k, v) in query {
        if k == "partition_key" {
            meta.partition_key = Some(v.as_str().into());
        } else if let Some(name) = k.strip_prefix("attr.") {
            meta.attributes.push((name.into(), v.as_str().into()));
        }
    }
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
/// "durable"` or `"delivered"`) until its records are safe. `Err` is the answer for a refusal;
/// nothing of the batch was taken then.
async fn accept(shared: &Shared, batch: Batch) -> Result<(), &'static str> {
    if shared.stopping.load(Ordering::Relaxed) {
        return Err("shutting down");
    }
    let (n, bytes) = (batch.len() as u64, batch.payload_bytes());
    let (batch, safe) = shared.cfg.ack.hold(batch);
    match tokio::time::timeout(shared.cfg.accept_wait, shared.tx.send(batch)).await {
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
    let (headers, raw) = match read_body(shared, req).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let limits = BodyLimits {
        max_body_bytes: shared.cfg.max_body_bytes,
        max_record_bytes: shared.cfg.max_record_bytes,
    };
    let parsed = Encoding::from_header(header_str(&headers, header::CONTENT_ENCODING))
        .and_then(|enc| body::decode_content(raw, enc, limits.max_body_bytes))
        .and_then(|data| {
            let q = query
                .iter()
                .find(|(k, _)| k == "format")
                .map(|(_, v)| v.as_str());
            let ct = header_str(&headers, header::CONTENT_TYPE);
            let format = Format::choose(q, ct, &data, shared.cfg.format)?;
            body::parse(data, format, &limits)
        });
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => return error_answer(e.status(), format!("{e}; nothing was accepted")),
    };
    let n = parsed.spans.len();
    let mut batch = Batch::new(parsed.data, parsed.spans, origin(shared));
    if let Some(meta) = request_meta(&headers, &query) {
        batch = batch.with_meta(vec![meta; n]);
    }
    match accept(shared, batch).await {
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
            m.attributes,
            vec![
                ("site".into(), "north".into()),
                ("zone".into(), "a/b".into())
            ]
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
