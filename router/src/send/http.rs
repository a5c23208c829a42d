//! `send` over HTTP(S): each batch is one `POST` of newline-separated records
//! (`Content-Type: text/plain`, so any bytes pass), at most `in_flight` at once. A 503 or 429 is
//! retried after its `Retry-After` (the router took nothing); a connection error, or a request
//! not answered within `--request-timeout-secs` (a server that accepts and never answers), is
//! retried with backoff (the request may have been taken: at-least-once), until nothing was
//! acknowledged for `--give-up-after-secs`; any other error status is fatal. Batches are in
//! order only with `--in-flight 1`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;

use super::{Chunk, LatencySummary, SendOptions, Summary, Target, backoff, histogram};
use crate::tls;

type HttpClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// What became of one batch.
enum Outcome {
    /// Accepted (records, latency of the successful request).
    Done(u32, Duration, u64),
    /// Refused for good.
    Fatal(String),
}

fn body_of(chunk: &Chunk) -> Bytes {
    let mut b = BytesMut::with_capacity(chunk.data.len() + chunk.spans.len());
    for s in &chunk.spans {
        b.put_slice(&chunk.data[s.start as usize..s.end as usize]);
        b.put_u8(b'\n');
    }
    b.freeze()
}

fn retry_after(resp: &hyper::Response<hyper::body::Incoming>) -> Option<Duration> {
    resp.headers()
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Posts one batch until it is accepted, refused for good, or `give_up_after` passes without
/// progress anywhere (`progress` is shared by all batches).
async fn post(
    client: HttpClient,
    opts: Arc<SendOptions>,
    url: hyper::Uri,
    chunk: Chunk,
    progress: Arc<Mutex<Instant>>,
) -> Outcome {
    let records = chunk.spans.len() as u32;
    let body = body_of(&chunk);
    let mut attempt = 0u32;
    let mut tries = 0u64;
    loop {
        if progress.lock().await.elapsed() > opts.give_up_after {
            return Outcome::Fatal(format!(
                "gave up: nothing was acknowledged for {} s",
                opts.give_up_after.as_secs()
            ));
        }
        let mut req = hyper::Request::post(url.clone())
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Full::new(body.clone()));
        if let Ok(r) = &mut req {
            if let Some(t) = &opts.token
                && let Ok(v) = HeaderValue::from_str(&format!("Bearer {t}"))
            {
                r.headers_mut().insert(header::AUTHORIZATION, v);
            }
            if let Some(k) = &opts.partition_key
                && let Ok(v) = HeaderValue::from_str(k)
            {
                r.headers_mut().insert("x-partition-key", v);
            }
        }
        let req = match req {
            Ok(r) => r,
            Err(e) => return Outcome::Fatal(format!("building the request: {e}")),
        };
        tries += 1;
        let started = Instant::now();
        // The request and its answer, within the request timeout and what is left of the
        // give-up time.
        let left = opts
            .give_up_after
            .saturating_sub(progress.lock().await.elapsed());
        let limit = opts
            .request_timeout
            .min(left)
            .max(Duration::from_millis(100));
        let exchange = async {
            let resp = client.request(req).await?;
            let status = resp.status().as_u16();
            let after = retry_after(&resp);
            let text = resp
                .into_body()
                .collect()
                .await
                .map(|c| String::from_utf8_lossy(&c.to_bytes()).into_owned())
                .unwrap_or_default();
            Ok::<_, hyper_util::client::legacy::Error>((status, after, text))
        };
        let wait = match tokio::time::timeout(limit, exchange).await {
            Ok(Ok((status, after, text))) => match status {
                200..=299 => {
                    *progress.lock().await = Instant::now();
                    return Outcome::Done(records, started.elapsed(), tries - 1);
                }
                429 | 503 => after.unwrap_or_else(|| backoff(attempt)),
                _ => {
                    return Outcome::Fatal(format!(
                        "the router refused a batch of {records} records: HTTP {status}: {}",
                        text.trim()
                    ));
                }
            },
            Ok(Err(e)) => {
                // The client's own message is terse ("client error (Connect)"): add the causes.
                let mut why = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    why.push_str(": ");
                    why.push_str(&s.to_string());
                    source = s.source();
                }
                tracing::warn!("sending to {url}: {why}; retrying");
                backoff(attempt)
            }
            Err(_) => {
                tracing::warn!(
                    "sending to {url}: no answer within {} ms; retrying",
                    limit.as_millis()
                );
                backoff(attempt)
            }
        };
        attempt += 1;
        tokio::time::sleep(wait).await;
    }
}

/// Sends everything `rx` yields to the HTTP target of `opts`.
pub async fn send(opts: &SendOptions, mut rx: mpsc::Receiver<Chunk>) -> Summary {
    let mut summary = Summary::default();
    let Target::Http { url } = &opts.target else {
        summary.error = Some("not an HTTP target".into());
        return summary;
    };
    let uri: hyper::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            summary.error = Some(format!("{url:?}: {e}"));
            return summary;
        }
    };
    // hyper-rustls sets the ALPN protocols itself.
    let tls = match tls::client_config(&opts.trust, &[], None) {
        Ok(t) => t,
        Err(e) => {
            summary.error = Some(e);
            return summary;
        }
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
    let opts = Arc::new(opts.clone());
    let progress = Arc::new(Mutex::new(Instant::now()));
    let mut latency = histogram();
    let mut inflight: JoinSet<Outcome> = JoinSet::new();
    let mut input_done = false;
    summary.connections = 1;
    loop {
        if input_done && inflight.is_empty() {
            break;
        }
        tokio::select! {
            chunk = rx.recv(), if !input_done && inflight.len() < opts.in_flight.max(1) => match chunk {
                None => input_done = true,
                Some(c) => {
                    inflight.spawn(post(client.clone(), opts.clone(), uri.clone(), c, progress.clone()));
                }
            },
            Some(joined) = inflight.join_next(), if !inflight.is_empty() => match joined {
                Ok(Outcome::Done(records, took, retries)) => {
                    summary.records_acknowledged += u64::from(records);
                    summary.batches += 1;
                    summary.resends += retries;
                    let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                    let _ = latency.record(us.max(1));
                }
                Ok(Outcome::Fatal(e)) => {
                    summary.error = Some(e);
                    break;
                }
                Err(e) => {
                    summary.error = Some(format!("a send task failed: {e}"));
                    break;
                }
            },
        }
    }
    inflight.abort_all();
    rx.close();
    summary.latency_us = LatencySummary::of(&latency);
    summary
}
