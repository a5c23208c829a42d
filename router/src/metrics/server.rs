//! The metrics endpoint: `GET /metrics` (Prometheus text), `GET /health` (the process is up),
//! `GET /ready` (running, not stopping, and no queue full), and `POST /reload` (reload the
//! config file; answered once the reload is done or refused). HTTP/1.1 on the supervisor's
//! runtime: a scrape reads atomics and probes queues, it never blocks the pipeline.
//!
//! Bounded like the sources: at most `[metrics] max_connections` connections (more wait in the
//! listen backlog), [`MAX_CONNECTIONS_PER_PEER`] from one address, one request per connection, [`HEADER_TIMEOUT`] for its head and
//! [`CONNECTION_TIMEOUT`] for the whole exchange, accept failures (out of descriptors) backed off
//! and logged once per interval. `POST /reload` needs `Authorization: Bearer <[metrics]
//! reload_token>` (compared in constant time; without a configured token it is refused), and a
//! request carrying an `Origin` header (a browser's cross-origin request) is refused, so a web
//! page cannot make a visitor's browser reload the router.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use tokio::sync::mpsc::UnboundedSender;

use super::MetricsConfig;
use crate::reload::ReloadRequest;
use crate::sources::guard::{AcceptErrors, PeerCaps};
use crate::topology::build::Observer;

/// Longest wait for a request's head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection may last (a reload that compiles plugins included).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);
/// Most connections from one address (of `[metrics] max_connections`); more are closed at once.
pub const MAX_CONNECTIONS_PER_PEER: usize = 4;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Answers one request.
pub fn handle<B>(observer: &Observer, req: &Request<B>) -> Response<Full<Bytes>> {
    let json = "application/json";
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => answer(
            StatusCode::OK,
            CONTENT_TYPE,
            super::prometheus(&observer.report()),
        ),
        (&Method::GET, "/health") => answer(StatusCode::OK, json, r#"{"status":"ok"}"#.into()),
        (&Method::GET, "/ready") => match observer.not_ready() {
            None => answer(StatusCode::OK, json, r#"{"status":"ready"}"#.into()),
            Some(why) => answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json,
                serde_json::json!({"status": "not ready", "reason": why}).to_string(),
            ),
        },
        (_, "/reload") => answer(
            StatusCode::METHOD_NOT_ALLOWED,
            json,
            r#"{"error":"use POST"}"#.into(),
        ),
        (_, "/metrics" | "/health" | "/ready") => answer(
            StatusCode::METHOD_NOT_ALLOWED,
            json,
            r#"{"error":"use GET"}"#.into(),
        ),
        (_, path) => answer(
            StatusCode::NOT_FOUND,
            json,
            serde_json::json!({"error": format!("no such endpoint: {path} (GET /metrics, /health, /ready; POST /reload)")})
                .to_string(),
        ),
    }
}

/// Why a `POST /reload` may not reload, or `None` when it may: it must carry the configured
/// token as a bearer token (compared in constant time) and no `Origin` header.
pub fn reload_refusal<B>(
    token: Option<&str>,
    req: &Request<B>,
) -> Option<(StatusCode, &'static str)> {
    use subtle::ConstantTimeEq;
    if req.headers().contains_key(header::ORIGIN) {
        return Some((
            StatusCode::FORBIDDEN,
            "cross-origin requests may not reload the router",
        ));
    }
    let Some(want) = token else {
        return Some((
            StatusCode::FORBIDDEN,
            "reloading over HTTP is off: set [metrics] reload_token (and pass it with \
             `edge-router reload --token`), or send the router SIGHUP",
        ));
    };
    let got = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok = got.len() == want.len() && bool::from(got.as_bytes().ct_eq(want.as_bytes()));
    (!ok).then_some((StatusCode::UNAUTHORIZED, "missing or wrong reload token"))
}

/// Answers `POST /reload`: asks the supervisor and waits for the outcome. 200 with the
/// summary, 409 with the reasons when refused (the old pipeline runs on), 503 when no reload
/// can be served.
async fn reload(to: Option<&UnboundedSender<ReloadRequest>>) -> Response<Full<Bytes>> {
    let json = "application/json";
    let (reply, outcome) = tokio::sync::oneshot::channel();
    let asked = to.is_some_and(|to| to.send(ReloadRequest { reply: Some(reply) }).is_ok());
    let outcome = if asked { outcome.await.ok() } else { None };
    match outcome {
        Some(Ok(summary)) => answer(
            StatusCode::OK,
            json,
            serde_json::json!({"status": "reloaded", "summary": summary}).to_string(),
        ),
        Some(Err(why)) => answer(
            StatusCode::CONFLICT,
            json,
            serde_json::json!({"status": "refused", "errors": why.lines().collect::<Vec<_>>()})
                .to_string(),
        ),
        None => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json,
            r#"{"status":"refused","errors":["the router is not serving reloads"]}"#.into(),
        ),
    }
}

/// Binds `[metrics] address` and serves the endpoint on the current tokio runtime until the
/// process ends. `POST /reload` requests go to `reload`. Returns the bound address (useful with
/// port 0).
pub fn spawn(
    cfg: &MetricsConfig,
    observer: Observer,
    reload_to: Option<UnboundedSender<ReloadRequest>>,
) -> std::io::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind(cfg.address)?;
    std_listener.set_nonblocking(true)?;
    let bound = std_listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let token: Option<Arc<str>> = cfg.reload_token.as_deref().map(Arc::from);
    let conns = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections));
    let peers = PeerCaps::new(MAX_CONNECTIONS_PER_PEER);
    tokio::spawn(async move {
        let mut errors = AcceptErrors::new("metrics endpoint");
        loop {
            let Ok(permit) = conns.clone().acquire_owned().await else {
                return;
            };
            let (stream, slot) = match listener.accept().await {
                Ok((stream, peer)) => {
                    errors.succeeded();
                    let Some(slot) = peers.admit(peer.ip()) else {
                        continue;
                    };
                    (stream, slot)
                }
                Err(e) => {
                    drop(permit);
                    errors.failed(&e).await;
                    continue;
                }
            };
            let observer = observer.clone();
            let reload_to = reload_to.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let post_reload = req.method() == Method::POST && req.uri().path() == "/reload";
                    let r = if post_reload {
                        reload_refusal(token.as_deref(), &req).map(|(status, why)| {
                            answer(
                                status,
                                "application/json",
                                serde_json::json!({"status": "refused", "errors": [why]})
                                    .to_string(),
                            )
                        })
                    } else {
                        Some(handle(&observer, &req))
                    };
                    let reload_to = reload_to.clone();
                    async move {
                        Ok::<_, Infallible>(match r {
                            Some(r) => r,
                            None => reload(reload_to.as_ref()).await,
                        })
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .keep_alive(false)
                    .max_buf_size(64 << 10)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
                drop((permit, slot));
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn post(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::post("/reload");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn reload_needs_the_token_and_no_origin() {
        assert_eq!(
            reload_refusal(None, &post(&[("authorization", "Bearer t")])).map(|r| r.0),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            reload_refusal(Some("t0k"), &post(&[("authorization", "Bearer t0k")])),
            None
        );
        for bad in ["Bearer t0", "Bearer t0kk", "t0k", ""] {
            assert_eq!(
                reload_refusal(Some("t0k"), &post(&[("authorization", bad)])).map(|r| r.0),
                Some(StatusCode::UNAUTHORIZED),
                "{bad}"
            );
        }
        // A browser's cross-origin POST carries Origin: refused even with the token.
        let from_page = post(&[
            ("authorization", "Bearer t0k"),
            ("origin", "http://evil.example"),
            ("content-type", "text/plain"),
        ]);
        assert_eq!(
            reload_refusal(Some("t0k"), &from_page).map(|r| r.0),
            Some(StatusCode::FORBIDDEN)
        );
    }
}
