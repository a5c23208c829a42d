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
//!
//! Every peer gets bounded memory, time and share: handshakes have `handshake_timeout` and the
//! whole HELLO `hello_timeout`; at most `max_unauthenticated` connections may be between accept
//! and a good HELLO (separately from `max_connections`), and `max_connections_per_peer` per
//! address; a batch stream must arrive within `batch_timeout` plus the time its bytes take at
//! `batch_min_bytes_per_sec`; what batches being read hold is taken from `max_inflight_bytes`
//! first (`Backpressure` when it stays taken for `accept_wait`), and the flow-control windows
//! that bound what quinn buffers per connection are small ([`STREAM_WINDOW`],
//! [`CONNECTION_WINDOW`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{Mutex, Notify, OwnedSemaphorePermit, Semaphore, watch};

use super::config::{Certificate, QuicSourceConfig};
use super::protocol::{
    self, ALPN, Ack, Limits, MAX_HELLO_BYTES, Status, decode_batch, decode_hello,
};
use super::session::{Decision, Sessions};
use crate::core::accounting::Counters;
use crate::core::deadline::TransferDeadline;
use crate::core::rate_limit::Repeats;
use crate::core::record::{Batch, Origin, PositionBase, RecordMeta};
use crate::queue::{Closed, Sender};
use crate::shutdown::Shutdown;
use crate::sources::guard::{Budget, BudgetError, PeerCaps, Reservation};

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
    /// Connections between accept and a good HELLO.
    unauthenticated: Arc<Semaphore>,
    /// Connections per peer address.
    peers: PeerCaps,
    /// Bytes held by batches being read and decoded.
    budget: Budget,
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

/// Batches being decided, counted so that stopping can wait for the last one to finish: the wait
/// wakes when the count drops to zero (nothing polls it).
#[derive(Clone)]
struct InProgress(Arc<watch::Sender<usize>>);

impl Default for InProgress {
    fn default() -> Self {
        InProgress(Arc::new(watch::Sender::new(0)))
    }
}

/// One batch being decided; dropping it (done, or the task cancelled) ends it.
struct Deciding<'a>(&'a InProgress);

impl Drop for Deciding<'_> {
    fn drop(&mut self) {
        self.0.0.send_modify(|n| *n -= 1);
    }
}

impl InProgress {
    /// Counts a batch in until the returned guard is dropped.
    fn enter(&self) -> Deciding<'_> {
        self.0.send_modify(|n| *n += 1);
        Deciding(self)
    }

    /// Returns once no batch is being decided.
    async fn none(&self) {
        let mut rx = self.0.subscribe();
        // The sender is in `self`, so this cannot fail.
        let _ = rx.wait_for(|&n| n == 0).await;
    }
}

/// The QUIC source, bound and ready to run.
pub struct QuicSource {
    shared: Arc<Shared>,
    socket: std::net::UdpSocket,
    server_config: quinn::ServerConfig,
    shutdown: Shutdown,
    fingerprint: String,
}

/// QUIC flow-control window of one stream: what a client may send on it before the router has
/// read it (at most `max_batch_bytes`).
pub const STREAM_WINDOW: u32 = 256 << 10;
/// QUIC flow-control window of one connection (all its streams): what quinn may buffer for it,
/// outside the `max_inflight_bytes` budget.
pub const CONNECTION_WINDOW: u32 = 1 << 20;
/// What a connection costs besides its window and its batches (quinn's connection state, TLS,
/// packet buffers), as counted in the memory bound.
pub const CONNECTION_OVERHEAD: u64 = 64 << 10;

/// The most memory one connection holds outside the `max_inflight_bytes` budget.
pub fn connection_bytes(cfg: &QuicSourceConfig) -> u64 {
    let window =
        (cfg.max_batch_bytes as u64).min(u64::from(STREAM_WINDOW)) * u64::from(cfg.max_streams);
    CONNECTION_OVERHEAD + window.min(u64::from(CONNECTION_WINDOW))
}

fn transport(cfg: &QuicSourceConfig) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    let stream_window = u32::try_from(cfg.max_batch_bytes)
        .unwrap_or(u32::MAX)
        .min(STREAM_WINDOW);
    t.max_concurrent_bidi_streams(cfg.max_streams.into())
        .max_concurrent_uni_streams(0u32.into())
        // What quinn buffers before the router reads it: the router reads every stream at
        // once (into the budget), so small windows cost little throughput.
        .stream_receive_window(quinn::VarInt::from_u32(stream_window))
        .receive_window(quinn::VarInt::from_u32(CONNECTION_WINDOW))
        .send_window(1 << 20);
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
        shutdown: Shutdown,
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
        let (cfg_unauth, cfg_per_peer, cfg_budget, cfg_per_peer_bytes) = (
            cfg.max_unauthenticated,
            cfg.max_connections_per_peer,
            cfg.max_inflight_bytes,
            cfg.max_inflight_bytes_per_peer,
        );
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
                unauthenticated: Arc::new(Semaphore::new(cfg_unauth)),
                peers: PeerCaps::new(cfg_per_peer),
                budget: Budget::new(cfg_budget, cfg_per_peer_bytes),
                warnings: std::sync::Mutex::new(Repeats::new(10, Instant::now())),
            }),
            socket,
            server_config,
            shutdown,
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

    /// Serves until `shutdown` is triggered; then refuses new connections and batches, lets
    /// batches in progress finish (for up to `grace`) and closes every connection.
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
        let in_progress = InProgress::default();
        loop {
            // Shutdown wakes the wait at once, and wins over a connection ready with it.
            let incoming = tokio::select! {
                biased;
                () = self.shutdown.wait() => break,
                i = endpoint.accept() => i,
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
            let peer = incoming.remote_address();
            let Some(slot) = shared.peers.admit(peer.ip()) else {
                shared.warn(format_args!(
                    "refusing a connection from {}: max_connections_per_peer ({}) reached",
                    peer.ip(),
                    shared.cfg.max_connections_per_peer
                ));
                incoming.refuse();
                continue;
            };
            let Ok(unauthenticated) = shared.unauthenticated.clone().try_acquire_owned() else {
                shared.warn(format_args!(
                    "refusing a connection from {peer}: max_unauthenticated ({}) connections \
                     are still before their HELLO",
                    shared.cfg.max_unauthenticated
                ));
                incoming.refuse();
                continue;
            };
            shared.connections.fetch_add(1, Ordering::Relaxed);
            let shared = shared.clone();
            let in_progress = in_progress.clone();
            tokio::spawn(async move {
                if let Err(e) = connection(&shared, incoming, unauthenticated, &in_progress).await {
                    tracing::debug!(source = %shared.name, %peer, "connection ended: {e}");
                }
                drop(slot);
                shared.connections.fetch_sub(1, Ordering::Relaxed);
            });
        }
        // Stop: no new connections; batches being decided finish; new ones are answered
        // ShuttingDown. Then close everything.
        shared.stopping.store(true, Ordering::Relaxed);
        endpoint.set_server_config(None);
        let _ = tokio::time::timeout(grace, in_progress.none()).await;
        endpoint.close(close_code::STOPPING.into(), b"router stopping");
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        Ok(())
    }
}

/// Serves one connection: HELLO, then batch streams until the client closes. `unauthenticated`
/// is its place among the connections before HELLO, given back once HELLO passed.
async fn connection(
    shared: &Arc<Shared>,
    incoming: quinn::Incoming,
    unauthenticated: OwnedSemaphorePermit,
    in_progress: &InProgress,
) -> Result<(), String> {
    let handshake = shared.cfg.handshake_timeout;
    let conn = tokio::time::timeout(handshake, incoming)
        .await
        .map_err(|_| {
            format!(
                "no handshake within handshake_timeout_ms ({} ms)",
                handshake.as_millis()
            )
        })?
        .map_err(|e| format!("handshake: {e}"))?;
    let hello_timeout = shared.cfg.hello_timeout;
    let hello = tokio::time::timeout(hello_timeout, async {
        let (send, mut recv) = conn
            .accept_bi()
            .await
            .map_err(|e| format!("waiting for HELLO: {e}"))?;
        let hello = recv
            .read_to_end(MAX_HELLO_BYTES)
            .await
            .map_err(|e| format!("reading HELLO: {e}"));
        Ok::<_, String>((send, hello))
    })
    .await;
    let (mut send, hello) = match hello {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            shared.warn(format_args!(
                "closing a connection from {}: no whole HELLO within hello_timeout_ms ({} ms)",
                conn.remote_address(),
                hello_timeout.as_millis()
            ));
            shared.counters.count_response("hello_timeout");
            conn.close(close_code::UNAUTHORIZED.into(), b"no HELLO in time");
            return Err("no HELLO in time".into());
        }
    };
    let hello = hello.and_then(|b| decode_hello(&b).map_err(|e| format!("bad HELLO: {e}")));
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
    drop(unauthenticated);
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
    let peer = conn.remote_address().ip();
    let result = loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(
                quinn::ConnectionError::ApplicationClosed(_)
                | quinn::ConnectionError::LocallyClosed,
            ) => break Ok(()),
            Err(e) => break Err(format!("{e}")),
        };
        let streams = Streams {
            shared: shared.clone(),
            peer,
            session,
            turn_tx: turn_tx.clone(),
            turn_rx: turn_rx.clone(),
            in_progress: in_progress.clone(),
        };
        tokio::spawn(batch_stream(streams, index, send, recv));
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

/// Why a batch stream could not be read whole.
enum ReadFailure {
    /// Over `max_batch_bytes`.
    TooLarge,
    /// Not finished within the batch deadline: bytes received, time taken.
    Timeout(u64, Duration),
    /// The memory budget could not hold it.
    Budget(BudgetError),
    /// The client reset the stream or vanished.
    Lost(String),
}

/// Reads a batch stream whole, within `max_batch_bytes` and the batch deadline, taking its bytes
/// from the source's budget first (waiting at most `accept_wait` for them).
async fn read_batch(
    shared: &Shared,
    recv: &mut quinn::RecvStream,
    held: &mut Reservation,
) -> Result<Vec<u8>, ReadFailure> {
    let max = shared.limits.max_frame_bytes;
    let started = Instant::now();
    let wait_until = tokio::time::Instant::now() + shared.cfg.accept_wait;
    let transfer = TransferDeadline {
        grace: shared.cfg.batch_timeout,
        min_bytes_per_sec: shared.cfg.batch_min_bytes_per_sec,
    };
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let deadline = transfer.deadline(started, buf.len() as u64);
        let chunk =
            match tokio::time::timeout_at(deadline.into(), recv.read_chunk(64 << 10, true)).await {
                Err(_) => return Err(ReadFailure::Timeout(buf.len() as u64, started.elapsed())),
                Ok(Err(e)) => return Err(ReadFailure::Lost(e.to_string())),
                Ok(Ok(None)) => return Ok(buf),
                Ok(Ok(Some(c))) => c.bytes,
            };
        let len = buf.len() + chunk.len();
        if len > max {
            return Err(ReadFailure::TooLarge);
        }
        if len > buf.capacity() {
            // The held bytes are the buffer's capacity; the old buffer counts until copied.
            let new = (buf.capacity() * 2).max(len).max(16 << 10).min(max);
            held.grow(new, wait_until)
                .await
                .map_err(ReadFailure::Budget)?;
            buf.reserve_exact(new - buf.len());
            held.shrink_to(buf.capacity());
        }
        buf.extend_from_slice(&chunk);
    }
}

/// What the batch streams of one authenticated connection share.
struct Streams {
    shared: Arc<Shared>,
    /// The client's address (its memory share).
    peer: std::net::IpAddr,
    /// The session the HELLO opened.
    session: u64,
    /// Whose turn it is to decide: the index of the next stream, in opening order.
    turn_tx: Arc<watch::Sender<u64>>,
    turn_rx: watch::Receiver<u64>,
    /// Batches being decided, counted for a graceful stop.
    in_progress: InProgress,
}

/// Reads, decides and answers one batch stream, the `index`th the connection opened.
async fn batch_stream(
    streams: Streams,
    index: u64,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let Streams {
        shared,
        peer,
        session,
        turn_tx,
        mut turn_rx,
        in_progress,
    } = streams;
    let shared = &*shared;
    let mut held = shared.budget.reserve(peer);
    let read = read_batch(shared, &mut recv, &mut held).await;
    if read.is_err() {
        // Tell the client to stop sending what will not be read.
        let _ = recv.stop(0u32.into());
    }
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
        Err(ReadFailure::TooLarge) => refusal(
            Status::TooLarge,
            format!(
                "batch exceeds max_batch_bytes ({} bytes)",
                shared.limits.max_frame_bytes
            ),
        ),
        Err(ReadFailure::Budget(e)) => budget_refusal(shared, e),
        Err(ReadFailure::Timeout(got, took)) => {
            shared.warn(format_args!(
                "a batch stream stalled: {got} bytes in {} ms (batch_timeout_ms {}, \
                 batch_min_bytes_per_sec {})",
                took.as_millis(),
                shared.cfg.batch_timeout.as_millis(),
                shared.cfg.batch_min_bytes_per_sec
            ));
            refusal(
                Status::BadRequest,
                format!(
                    "the batch did not arrive in time ({got} bytes; batch_timeout_ms {} plus \
                     batch_min_bytes_per_sec {})",
                    shared.cfg.batch_timeout.as_millis(),
                    shared.cfg.batch_min_bytes_per_sec
                ),
            )
        }
        Err(ReadFailure::Lost(e)) => {
            // The client reset the stream or vanished: nothing was accepted.
            tracing::debug!(source = %shared.name, "batch stream lost: {e}");
            pass_turn();
            return;
        }
        Ok(frame) => {
            // The record table the decoder builds, and the key and attributes it copies out.
            let table = decoded_table_bytes(&frame, shared.limits.max_records);
            let decoded = held
                .try_grow(table)
                .map(|()| decode_batch(Bytes::from(frame), &shared.limits));
            match decoded {
                Err(e) => budget_refusal(shared, e),
                Ok(Err(e)) => refusal(Status::BadRequest, e.to_string()),
                Ok(Ok(batch)) => {
                    let meta: usize = batch.key.as_ref().map_or(0, String::len)
                        + batch
                            .attributes
                            .iter()
                            .map(|(k, v)| k.len() + v.len() + 32)
                            .sum::<usize>();
                    match held.try_grow(meta) {
                        Err(e) => budget_refusal(shared, e),
                        Ok(()) => {
                            let _deciding = in_progress.enter();
                            decide(shared, session, batch, held, pass_turn).await
                        }
                    }
                }
            }
        }
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

/// The answer to a batch the memory budget cannot hold: `Backpressure` (retry after
/// `retry_after_ms`) while other batches hold it, `TooLarge` when it would need more than all of
/// it.
fn budget_refusal(shared: &Shared, e: BudgetError) -> Ack {
    let (status, retry) = match e {
        BudgetError::Busy { .. } => (Status::Backpressure, shared.cfg.retry_after),
        BudgetError::TooLarge { .. } => (Status::TooLarge, Duration::ZERO),
    };
    Ack {
        seq: 0,
        status,
        accepted: 0,
        retry_after_ms: millis(retry),
        message: format!("the batch {e}; nothing was accepted"),
    }
}

/// Bytes of the span table [`decode_batch`] builds for `frame`: 8 per record, from the record
/// count in its header (at most `max_records`: the decoder refuses more; 0 when the frame is too
/// short to say).
fn decoded_table_bytes(frame: &[u8], max_records: u32) -> usize {
    // "ER", version, type, seq u64, flags u8, then record_count u32.
    let count = frame
        .get(13..17)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_be_bytes);
    count.min(max_records) as usize * std::mem::size_of::<crate::core::record::Span>()
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
    held: Reservation,
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
                let sent = tokio::time::timeout(shared.cfg.accept_wait, shared.tx.send(b)).await;
                // In the queue (its limits count the batch now) or refused: the budget's bytes
                // go back.
                drop(held);
                return match sent {
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
    // The batch's key and attributes are stored once, shared by its records.
    let meta = RecordMeta {
        partition_key: d.key.map(Into::into),
        explicit_hash_key: None,
        attributes: d
            .attributes
            .into_iter()
            .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
            .collect(),
    };
    batch.with_shared_meta(meta)
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
