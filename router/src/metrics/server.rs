//! The metrics endpoint: `GET /metrics` (Prometheus text), `GET /health` (the process is up),
//! `GET /ready` (running, not stopping, and no queue full), and `POST /reload` (reload the
//! config file; answered once the reload is done or refused). HTTP/1.1 on the supervisor's
//! runtime: a scrape reads atomics and probes queues, it never blocks the pipeline.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use tokio::sync::mpsc::UnboundedSender;

use crate::reload::ReloadRequest;
use crate::topology::build::Observer;

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

/// Binds `address` and serves the endpoint on the current tokio runtime until the process ends.
/// `POST /reload` requests go to `reload`. Returns the bound address (useful with port 0).
pub fn spawn(
    address: SocketAddr,
    observer: Observer,
    reload_to: Option<UnboundedSender<ReloadRequest>>,
) -> std::io::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind(address)?;
    std_listener.set_nonblocking(true)?;
    let bound = std_listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let observer = observer.clone();
            let reload_to = reload_to.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let post_reload = req.method() == Method::POST && req.uri().path() == "/reload";
                    let r = (!post_reload).then(|| handle(&observer, &req));
                    let reload_to = reload_to.clone();
                    async move {
                        Ok::<_, Infallible>(match r {
                            Some(r) => r,
                            None => reload(reload_to.as_ref()).await,
                        })
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}
