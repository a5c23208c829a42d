//! The QUIC server: quinn connections speaking [`super::protocol`], batches into the ingress
//! queue in session order via [`super::session::Sessions`].
//!
//! Per connection: the first bidirectional stream carries HELLO/WELCOME (token checked, session
//! opened); every later one carries one BATCH and its ACK. A stream is read whole (bounded by
//! `max_batch_bytes`; QUIC flow control holds the sender back meanwhile), decoded without
//! copying, and then *decided*: streams of a connection are decided in the order they were
//! opened (the session table's resume rule needs that), a batch that is next in its session is
//! put into the ingress queue (waiting up to `accept_wait`, else `Backpressure`), an early one
//! waits for its predecessors (up to `order_wait`, else `OutOfOrder`), a resent one is a
//! `Duplicate`. Deciding and enqueueing happen under one async lock, so a batch resent on a new
//! connection while its first copy is still being enqueued cannot be accepted twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{Mutex, Notify, watch};

use super::config::{Certificate, QuicSourceConfig};
use super::protocol::{
    self, ALPN, Ack, Limits, MAX_HELLO_BYTES, Status, decode_batch, decode_hello,
};
use super::session::{Decision, Sessions};
use crate::core::accounting::Counters;
use crate::core::rate_limit::Repeats;
use crate::core::record::{Batch, Origin, PositionBase, RecordMeta};
use crate::topology::queue::{Closed, Sender};

/// Why the QUIC source could not run.
#[derive(Debug, thiserror::Error)]
pub enum QuicSourceError {
    /// TLS set-up failed.
    #[error("source `{name}`: TLS: {message}")]
    Tls {
        /// The source.
        name: String,
        /// What was wrong.
        message: String,
    },
    /// The UDP socket could not be opened.
    #[error("source `{name}`: cannot listen on {address} (UDP): {error}")]
    Bind {
        /// The source.
        name: String,
        /// Where.
        address: std::net::SocketAddr,
        /// Why.
        error: std::io::Error,
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

/// QUIC application error codes used when the server closes a connection.
pub mod close_code {
    /// Normal close (router stopping).
    pub const STOPPING: u32 = 0;
    /// HELLO missing, malformed, or with a wrong token.
    pub const UNAUTHORIZED: u32 = 1;
    /// Protocol violation.
    pub const PROTOCOL: u32 = 2;
}

struct Shared {
    name: Arc<str>,
    cfg: QuicSourceConfig,
    limits: Limits,
    counters: Arc<Counters>,
    tx: Sender<Batch>,
    /// The session table; held while a batch is decided and enqueued.
    sessions: Mutex<Sessions>,
    /// Woken whenever a batch was accepted (early batches wait for it).
    accepted: Notify,
    stopping: AtomicBool,
    connections: AtomicUsize,
    /// Keeps per-connection warnings (refused connections, wrong tokens) from flooding the log.
    warnings: std::sync::Mutex<Repeats>,
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
}

/// The QUIC source, bound and ready to run.
pub struct QuicSource {
    shared: Arc<Shared>,
    socket: std::net::UdpSocket,
    server_config: quinn::ServerConfig,
    stop: Arc<AtomicBool>,
    fingerprint: String,
}

fn transport(cfg: &QuicSourceConfig) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(cfg.max_streams.into())
        .max_concurrent_uni_streams(0u32.into())
        // Room for a few whole batches per connection, so a client keeps its pipe full.
        .stream_receive_window(quinn::VarInt::from_u32(
            u32::try_from(cfg.max_batch_bytes.min(16 << 20)).unwrap_or(16 << 20),
        ))
        .receive_window(quinn::VarInt::from_u32(64 << 20))
        .send_window(8 << 20);
    if let Ok(idle) = quinn::IdleTimeout::try_from(cfg.idle_timeout) {
        t.max_idle_timeout(Some(idle));
    }
    t
}

impl QuicSource {
    /// Sets up TLS (loading or generating the certificate) and binds the UDP socket.
    pub fn bind(
        name: &str,
        cfg: QuicSourceConfig,
        counters: Arc<Counters>,
        tx: Sender<Batch>,
        stop: Arc<AtomicBool>,
    ) -> Result<QuicSource, QuicSourceError> {
        let tls_err = |message| QuicSourceError::Tls {
            name: name.to_owned(),
            message,
        };
        let identity = match &cfg.certificate {
            Certificate::Files(f) => crate::tls::Identity::from_pem_files(&f.cert, &f.key),
            Certificate::SelfSigned => {
                let mut names = vec!["localhost".to_owned()];
                if !cfg.address.ip().is_unspecified() {
                    names.push(cfg.address.ip().to_string());
                }
                crate::tls::Identity::self_signed(&names)
            }
        }
        .map_err(tls_err)?;
        let fingerprint = identity.fingerprint();
        let mut tls = crate::tls::server_config(identity, &[ALPN], cfg.client_ca.as_deref())
            .map_err(tls_err)?;
        tls.max_early_data_size = 0;
        let quic_tls = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| tls_err(format!("not usable for QUIC: {e}")))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(quic_tls));
        server_config.transport_config(Arc::new(transport(&cfg)));
        let socket =
            std::net::UdpSocket::bind(cfg.address).map_err(|error| QuicSourceError::Bind {
                name: name.to_owned(),
                address: cfg.address,
                error,
            })?;
        let limits = Limits {
            max_frame_bytes: cfg.max_batch_bytes,
            max_records: cfg.max_batch_records,
            max_record_bytes: cfg.max_record_bytes,
        };
        Ok(QuicSource {
            shared: Arc::new(Shared {
                name: Arc::from(name),
                sessions: Mutex::new(Sessions::new(cfg.sessions)),
                cfg,
                limits,
                counters,
                tx,
                accepted: Notify::new(),
                stopping: AtomicBool::new(false),
                connections: AtomicUsize::new(0),
                warnings: std::sync::Mutex::new(Repeats::new(10, Instant::now())),
            }),
            socket,
            server_config,
            stop,
            fingerprint,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.socket.local_addr().ok()
    }

    /// The SHA-256 fingerprint of the server's certificate (what clients pin).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Serves until `stop` is set; then refuses new connections and batches, lets batches in
    /// progress finish (for up to `grace`) and closes every connection.
    pub fn run(self, grace: Duration) -> Result<(), QuicSourceError> {
        let name = self.shared.name.to_string();
        let workers = self.shared.cfg.workers;
        crate::sources::run_on_runtime("quic", &name, workers, self.serve(grace))
            .map_err(|error| QuicSourceError::Runtime { name, error })?
    }

    async fn serve(self, grace: Duration) -> Result<(), QuicSourceError> {
        let shared = self.shared.clone();
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(self.server_config),
            self.socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|error| QuicSourceError::Bind {
            name: shared.name.to_string(),
            address: shared.cfg.address,
            error,
        })?;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let in_progress = Arc::new(AtomicUsize::new(0));
        loop {
            let incoming = tokio::select! {
                i = endpoint.accept() => i,
                _ = tick.tick() => {
                    if self.stop.load(Ordering::Relaxed) { break; }
                    continue;
                }
            };
            let Some(incoming) = incoming else { break };
            if shared.connections.load(Ordering::Relaxed) >= shared.cfg.max_connections {
                shared.warn(format_args!(
                    "refusing a connection: max_connections ({}) reached",
                    shared.cfg.max_connections
                ));
                incoming.refuse();
                continue;
            }
            shared.connections.fetch_add(1, Ordering::Relaxed);
            let shared = shared.clone();
            let in_progress = in_progress.clone();
            tokio::spawn(async move {
                let peer = incoming.remote_address();
                if let Err(e) = connection(&shared, incoming, &in_progress).await {
                    tracing::debug!(source = %shared.name, %peer, "connection ended: {e}");
                }
                shared.connections.fetch_sub(1, Ordering::Relaxed);
            });
        }
        // Stop: no new connections; batches being decided finish; new ones are answered
        // ShuttingDown. Then close everything.
        shared.stopping.store(true, Ordering::Relaxed);
        endpoint.set_server_config(None);
        let deadline = Instant::now() + grace;
        while in_progress.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        endpoint.close(close_code::STOPPING.into(), b"router stopping");
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        Ok(())
    }
}

/// Serves one connection: HELLO, then batch streams until the client closes.
async fn connection(
    shared: &Arc<Shared>,
    incoming: quinn::Incoming,
    in_progress: &Arc<AtomicUsize>,
) -> Result<(), String> {
    let conn = tokio::time::timeout(Duration::from_secs(10), incoming)
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut send, mut recv) = tokio::time::timeout(Duration::from_secs(10), conn.accept_bi())
        .await
        .map_err(|_| "no HELLO within 10 s".to_owned())?
        .map_err(|e| format!("waiting for HELLO: {e}"))?;
    let hello = recv
        .read_to_end(MAX_HELLO_BYTES)
        .await
        .map_err(|e| format!("reading HELLO: {e}"))
        .and_then(|b| decode_hello(&b).map_err(|e| format!("bad HELLO: {e}")));
    let refusal = match &hello {
        Err(message) => Some((Status::BadRequest, message.clone())),
        Ok(h) if !token_ok(shared.cfg.auth_token.as_deref(), &h.token) => {
            shared.warn(format_args!(
                "refused a connection from {}: wrong or missing token",
                conn.remote_address()
            ));
            Some((Status::Unauthorized, "wrong or missing token".to_owned()))
        }
        Ok(_) => None,
    };
    let hello = match (hello, refusal) {
        (Ok(h), None) => h,
        (_, refusal) => {
            let (status, message) = refusal.unwrap_or((Status::BadRequest, "bad HELLO".to_owned()));
            shared
                .counters
                .count_response(&format!("hello_{}", status.name()));
            let mut out = Vec::new();
            protocol::encode_welcome(status, 0, &message, &mut out);
            let _ = send.write_all(&out).await;
            let _ = send.finish();
            let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
            conn.close(close_code::UNAUTHORIZED.into(), message.as_bytes());
            return Err(message);
        }
    };
    let session = hello.session_id;
    let next = shared.sessions.lock().await.open(session);
    let mut out = Vec::new();
    protocol::encode_welcome(Status::Ok, next, "", &mut out);
    send.write_all(&out)
        .await
        .map_err(|e| format!("writing WELCOME: {e}"))?;
    let _ = send.finish();

    // Streams are decided in the order they were opened: `turn` is the index of the stream
    // whose turn it is.
    let (turn_tx, turn_rx) = watch::channel(0u64);
    let turn_tx = Arc::new(turn_tx);
    let mut index = 0u64;
    let result = loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(
                quinn::ConnectionError::ApplicationClosed(_)
                | quinn::ConnectionError::LocallyClosed,
            ) => break Ok(()),
            Err(e) => break Err(format!("{e}")),
        };
        let shared = shared.clone();
        let turn_tx = turn_tx.clone();
        let turn_rx = turn_rx.clone();
        let in_progress = in_progress.clone();
        tokio::spawn(async move {
            batch_stream(
                &shared,
                session,
                index,
                send,
                recv,
                &turn_tx,
                turn_rx,
                &in_progress,
            )
            .await;
        });
        index += 1;
    };
    shared.sessions.lock().await.close(session);
    result
}

fn token_ok(want: Option<&str>, got: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    match want {
        None => true,
        Some(w) => w.len() == got.len() && bool::from(w.as_bytes().ct_eq(got)),
    }
}

/// An answer that takes nothing, for a batch that could not be read whole or decoded (its
/// sequence number is unknown: the client knows which stream it sent).
fn refusal(status: Status, message: String) -> Ack {
    Ack {
        seq: 0,
        status,
        accepted: 0,
        retry_after_ms: 0,
        message,
    }
}

/// Reads, decides and answers one batch stream.
#[allow(clippy::too_many_arguments)]
async fn batch_stream(
    shared: &Shared,
    session: u64,
    index: u64,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    turn_tx: &watch::Sender<u64>,
    mut turn_rx: watch::Receiver<u64>,
    in_progress: &AtomicUsize,
) {
    let read = recv.read_to_end(shared.limits.max_frame_bytes).await;
    // Wait for this stream's turn, whatever became of its read, and pass the turn on after
    // deciding (or failing).
    let _ = turn_rx.wait_for(|t| *t >= index).await;
    // Passes the turn on (once; deciding may have done it already).
    let pass_turn = || {
        turn_tx.send_if_modified(|t| {
            let mine = *t <= index;
            if mine {
                *t = index + 1;
            }
            mine
        });
    };
    let answer = match read {
        Err(quinn::ReadToEndError::TooLong) => refusal(
            Status::TooLarge,
            format!(
                "batch exceeds max_batch_bytes ({} bytes)",
                shared.limits.max_frame_bytes
            ),
        ),
        Err(quinn::ReadToEndError::Read(e)) => {
            // The client reset the stream or vanished: nothing was accepted.
            tracing::debug!(source = %shared.name, "batch stream lost: {e}");
            pass_turn();
            return;
        }
        Ok(frame) => match decode_batch(Bytes::from(frame), &shared.limits) {
            Err(e) => refusal(Status::BadRequest, e.to_string()),
            Ok(batch) => {
                in_progress.fetch_add(1, Ordering::Relaxed);
                let a = decide(shared, session, batch, pass_turn).await;
                in_progress.fetch_sub(1, Ordering::Relaxed);
                a
            }
        },
    };
    pass_turn();
    shared.counters.count_response(answer.status.name());
    let mut out = Vec::new();
    protocol::encode_ack(
        answer.seq,
        answer.status,
        answer.accepted,
        answer.retry_after_ms,
        &answer.message,
        &mut out,
    );
    let _ = send.write_all(&out).await;
    let _ = send.finish();
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Decides one batch (calling `decided` once the session table has seen it) and enqueues it
/// when it is next in its session.
async fn decide(
    shared: &Shared,
    session: u64,
    decoded: protocol::DecodedBatch,
    decided: impl FnOnce(),
) -> Ack {
    let seq = decoded.seq;
    let n = decoded.records() as u32;
    let answer = |status: Status, accepted: u32, retry: Duration, message: &str| Ack {
        seq,
        status,
        accepted,
        retry_after_ms: millis(retry),
        message: message.to_owned(),
    };
    let mut decided = Some(decided);
    let mut batch = Some(to_batch(shared, decoded));
    let order_deadline = tokio::time::Instant::now() + shared.cfg.order_wait;
    loop {
        if shared.stopping.load(Ordering::Relaxed) {
            return answer(
                Status::ShuttingDown,
                0,
                shared.cfg.retry_after,
                "router stopping",
            );
        }
        let notified = shared.accepted.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let mut sessions = shared.sessions.lock().await;
        let decision = sessions.decide(session, seq);
        if let Some(f) = decided.take() {
            f();
        }
        match decision {
            Decision::Duplicate => return answer(Status::Duplicate, 0, Duration::ZERO, ""),
            Decision::UnknownSession => {
                return answer(
                    Status::BadRequest,
                    0,
                    Duration::ZERO,
                    "no HELLO for this session",
                );
            }
            Decision::Accept => {
                let Some(b) = batch.take() else {
                    return answer(Status::BadRequest, 0, Duration::ZERO, "internal error");
                };
                let bytes = b.payload_bytes();
                let (b, safe) = shared.cfg.ack.hold(b);
                return match tokio::time::timeout(shared.cfg.accept_wait, shared.tx.send(b)).await {
                    Ok(Ok(())) => {
                        sessions.accepted(session, seq);
                        drop(sessions);
                        shared.accepted.notify_waiters();
                        shared.counters.add_in(u64::from(n), bytes);
                        shared.counters.add_out(u64::from(n), bytes);
                        if let Some(safe) = safe {
                            // `ack = "durable"/"delivered"`: answer once the records are safe
                            // (later batches of the session go on meanwhile).
                            let _ = safe.await;
                        }
                        answer(Status::Ok, n, Duration::ZERO, "")
                    }
                    Ok(Err(Closed(_))) => answer(
                        Status::ShuttingDown,
                        0,
                        shared.cfg.retry_after,
                        "the pipeline has stopped",
                    ),
                    Err(_) => answer(
                        Status::Backpressure,
                        0,
                        shared.cfg.retry_after,
                        "pipeline is full; nothing was accepted",
                    ),
                };
            }
            Decision::Wait => {
                drop(sessions);
                if tokio::time::timeout_at(order_deadline, notified)
                    .await
                    .is_err()
                {
                    return answer(
                        Status::OutOfOrder,
                        0,
                        Duration::ZERO,
                        "an earlier batch of this session did not arrive in time",
                    );
                }
            }
        }
    }
}

fn to_batch(shared: &Shared, d: protocol::DecodedBatch) -> Batch {
    let n = d.spans.len();
    let origin = Origin {
        source: shared.name.clone(),
        arrival_unix_nanos: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)),
        arrival: Instant::now(),
        position: PositionBase::None,
    };
    let batch = Batch::new(d.data, d.spans, origin);
    if d.key.is_none() && d.attributes.is_empty() {
        return batch;
    }
    let meta = RecordMeta {
        partition_key: d.key.map(String::into_boxed_str),
        explicit_hash_key: None,
        attributes: d
            .attributes
            .into_iter()
            .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
            .collect(),
    };
    batch.with_meta(vec![meta; n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(token_ok(None, b""));
        assert!(token_ok(Some("abc"), b"abc"));
        assert!(!token_ok(Some("abc"), b"abd"));
        assert!(!token_ok(Some("abc"), b"ab"));
        assert!(!token_ok(Some("abc"), b""));
    }
}
