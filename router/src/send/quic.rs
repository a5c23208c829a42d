//! `send` over QUIC: one connection (re-made after failures), HELLO/WELCOME, then one stream
//! per batch, at most `in_flight` unacknowledged, driven by the pure [`Outbox`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{Chunk, LatencySummary, SendOptions, Summary, Target, backoff, histogram};
use crate::sources::quic::protocol::{
    ALPN, Ack, BatchEncoder, MAX_ACK_BYTES, MAX_WELCOME_BYTES, Status, decode_ack, decode_welcome,
    encode_hello,
};
use crate::sources::quic::session::{AckOutcome, Outbox};
use crate::tls;

/// The QUIC client config for `opts`.
fn client_config(opts: &SendOptions) -> Result<quinn::ClientConfig, String> {
    let identity = match &opts.client_identity {
        Some((cert, key)) => Some(tls::Identity::from_pem_files(cert, key)?),
        None => None,
    };
    let rustls = tls::client_config(&opts.trust, &[ALPN], identity)?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(rustls)
        .map_err(|e| format!("TLS config not usable for QUIC: {e}"))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    let mut t = quinn::TransportConfig::default();
    // A router that died sends nothing (its successor on the same port cannot reset our
    // connection): keep-alives every second and a 5 s idle timeout notice that soon, so the
    // unacknowledged batches go to the restarted router without a long stall.
    t.keep_alive_interval(Some(Duration::from_secs(1)))
        .send_window(64 << 20)
        .stream_receive_window(quinn::VarInt::from_u32(1 << 20));
    if let Ok(idle) = quinn::IdleTimeout::try_from(Duration::from_secs(5)) {
        t.max_idle_timeout(Some(idle));
    }
    cfg.transport_config(Arc::new(t));
    Ok(cfg)
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

/// Connects and says HELLO; returns the connection and the WELCOME's next sequence number.
async fn connect(
    endpoint: &quinn::Endpoint,
    host: &str,
    port: u16,
    session: u64,
    token: &[u8],
) -> Result<(quinn::Connection, u64), (bool, String)> {
    let retryable = |e: String| (false, e);
    let addr = resolve(host, port).await.map_err(retryable)?;
    let connecting = endpoint
        .connect(addr, host)
        .map_err(|e| (true, format!("cannot connect to {addr}: {e}")))?;
    let conn = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .map_err(|_| retryable(format!("connecting to {addr} timed out")))?
        .map_err(|e| {
            // A TLS failure (wrong fingerprint, untrusted certificate) will not go away.
            let fatal = matches!(
                e,
                quinn::ConnectionError::TransportError(ref t) if t.code.to_string().contains("crypto")
            ) || e.to_string().contains("certificate")
                || e.to_string().contains("fingerprint");
            (fatal, format!("connecting to {addr}: {e}"))
        })?;
    let hello = async {
        let (mut s, mut r) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        encode_hello(session, token, &mut out).map_err(|e| e.to_string())?;
        s.write_all(&out).await.map_err(|e| e.to_string())?;
        s.finish().map_err(|e| e.to_string())?;
        let buf = r
            .read_to_end(MAX_WELCOME_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        decode_welcome(&buf).map_err(|e| e.to_string())
    };
    let welcome = tokio::time::timeout(Duration::from_secs(10), hello)
        .await
        .map_err(|_| retryable("no WELCOME within 10 s".into()))?
        .map_err(|e| retryable(format!("HELLO: {e}")))?;
    match welcome.status {
        Status::Ok => Ok((conn, welcome.next_seq)),
        Status::ShuttingDown => Err((false, "the router is stopping".into())),
        s => Err((
            true,
            format!(
                "the router refused the connection: {s}: {}",
                welcome.message
            ),
        )),
    }
}

/// Sends one batch frame on a new stream and reads its ACK.
async fn send_batch(conn: quinn::Connection, seq: u64, frame: Bytes) -> Result<Ack, String> {
    let (mut s, mut r) = conn.open_bi().await.map_err(|e| e.to_string())?;
    s.write_chunk(frame).await.map_err(|e| e.to_string())?;
    s.finish().map_err(|e| e.to_string())?;
    let buf = r
        .read_to_end(MAX_ACK_BYTES)
        .await
        .map_err(|e| e.to_string())?;
    let mut ack = decode_ack(&buf).map_err(|e| e.to_string())?;
    // A server that could not decode the batch does not know its number; this stream carried
    // `seq`.
    ack.seq = seq;
    Ok(ack)
}

fn encode(opts: &SendOptions, seq: u64, chunk: &Chunk) -> Result<(Bytes, u32), String> {
    let mut enc =
        BatchEncoder::new(seq, opts.partition_key.as_deref(), &[]).map_err(|e| e.to_string())?;
    for s in &chunk.spans {
        enc.push(&chunk.data[s.start as usize..s.end as usize])
            .map_err(|e| e.to_string())?;
    }
    let records = enc.records();
    Ok((enc.finish(), records))
}

/// Sends everything `rx` yields to the QUIC target of `opts`.
pub async fn send(opts: &SendOptions, mut rx: mpsc::Receiver<Chunk>) -> Summary {
    let mut summary = Summary::default();
    let Target::Quic { host, port } = &opts.target else {
        summary.error = Some("not a QUIC target".into());
        return summary;
    };
    let cfg = match client_config(opts) {
        Ok(c) => c,
        Err(e) => {
            summary.error = Some(e);
            return summary;
        }
    };
    let bind: SocketAddr = match resolve(host, *port).await {
        Ok(a) if a.is_ipv6() => SocketAddr::from(([0u16; 8], 0)),
        _ => SocketAddr::from(([0u8; 4], 0)),
    };
    let mut endpoint = match quinn::Endpoint::client(bind) {
        Ok(e) => e,
        Err(e) => {
            summary.error = Some(format!("cannot open a UDP socket: {e}"));
            return summary;
        }
    };
    endpoint.set_default_client_config(cfg);
    let session: u64 = rand::random();
    let token = opts.token.clone().unwrap_or_default().into_bytes();
    let mut outbox = Outbox::new(
        opts.in_flight.max(1),
        opts.in_flight.max(1) * opts.batch_bytes.max(1) * 2,
    );
    let mut latency = histogram();
    let mut sent_at: std::collections::HashMap<u64, Instant> = std::collections::HashMap::new();
    let mut input_done = false;
    let mut last_progress = Instant::now();
    let mut attempt = 0u32;
    let mut sends = 0u64;
    'connect: loop {
        if input_done && outbox.is_empty() {
            break;
        }
        if last_progress.elapsed() > opts.give_up_after {
            summary.error = Some(format!(
                "gave up: nothing was acknowledged for {} s",
                opts.give_up_after.as_secs()
            ));
            break;
        }
        let conn = match connect(&endpoint, host, *port, session, &token).await {
            Ok((conn, next)) => {
                outbox.on_welcome(next);
                conn
            }
            Err((true, e)) => {
                summary.error = Some(e);
                break;
            }
            Err((false, e)) => {
                tracing::warn!("{e}; retrying in {:?}", backoff(attempt));
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                continue;
            }
        };
        summary.connections += 1;
        attempt = 0;
        let mut inflight: JoinSet<(u64, Result<Ack, String>)> = JoinSet::new();
        let mut retry_at: Option<tokio::time::Instant> = None;
        loop {
            if retry_at.is_none_or(|t| tokio::time::Instant::now() >= t) {
                retry_at = None;
                while let Some((seq, frame)) = outbox.to_send() {
                    sends += 1;
                    sent_at.entry(seq).or_insert_with(Instant::now);
                    let conn = conn.clone();
                    inflight.spawn(async move { (seq, send_batch(conn, seq, frame).await) });
                }
            }
            if input_done && outbox.is_empty() {
                conn.close(0u32.into(), b"done");
                break 'connect;
            }
            let wait_retry = async {
                match retry_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                chunk = rx.recv(), if !input_done && outbox.has_room() => match chunk {
                    None => input_done = true,
                    Some(chunk) => {
                        let seq = outbox.next_seq();
                        let pushed = encode(opts, seq, &chunk)
                            .and_then(|(frame, n)| outbox.push(seq, frame, n).map_err(|e| e.to_string()));
                        if let Err(e) = pushed {
                            summary.error = Some(format!("batch {seq}: {e}"));
                            break 'connect;
                        }
                    }
                },
                joined = inflight.join_next(), if !inflight.is_empty() => {
                    let (seq, result) = match joined {
                        Some(Ok(r)) => r,
                        _ => (u64::MAX, Err("a send task failed".to_owned())),
                    };
                    match result {
                        Ok(ack) => match outbox.on_ack(&ack) {
                            AckOutcome::Acknowledged { records, .. } => {
                                summary.records_acknowledged += u64::from(records);
                                summary.batches += 1;
                                last_progress = Instant::now();
                                if let Some(t) = sent_at.remove(&seq) {
                                    let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                                    let _ = latency.record(us.max(1));
                                }
                            }
                            AckOutcome::Retry { status, after_ms } => {
                                let until = tokio::time::Instant::now() + Duration::from_millis(u64::from(after_ms));
                                retry_at = Some(retry_at.map_or(until, |t| t.max(until)));
                                if status == Status::ShuttingDown {
                                    outbox.on_disconnect();
                                    inflight.abort_all();
                                    conn.close(0u32.into(), b"reconnecting");
                                    tokio::time::sleep(Duration::from_millis(u64::from(after_ms).max(100))).await;
                                    continue 'connect;
                                }
                            }
                            AckOutcome::Rejected { seq, status, records, message } => {
                                summary.error = Some(format!(
                                    "the router refused batch {seq} ({records} records): {status}: {message}"
                                ));
                                break 'connect;
                            }
                            AckOutcome::Ignored => {}
                        },
                        Err(e) => {
                            tracing::warn!("connection lost: {e}; reconnecting");
                            outbox.on_disconnect();
                            inflight.abort_all();
                            conn.close(0u32.into(), b"reconnecting");
                            continue 'connect;
                        }
                    }
                },
                () = wait_retry => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    if last_progress.elapsed() > opts.give_up_after {
                        summary.error = Some(format!(
                            "gave up: nothing was acknowledged for {} s",
                            opts.give_up_after.as_secs()
                        ));
                        break 'connect;
                    }
                }
            }
        }
    }
    // Drain what the reader still has so it can finish (those records count as unsent).
    rx.close();
    endpoint.close(0u32.into(), b"done");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    summary.resends = sends.saturating_sub(summary.batches);
    summary.latency_us = LatencySummary::of(&latency);
    summary
}
