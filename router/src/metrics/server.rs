//! The metrics endpoint: `GET /metrics` (Prometheus text), `GET /health` (the process is up),
//! `GET /ready` (running, not stopping, and no queue full). HTTP/1.1 on the supervisor's runtime:
//! a scrape reads atomics and probes queues, it never blocks the pipeline.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

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
        (_, "/metrics" | "/health" | "/ready") => answer(
            StatusCode::METHOD_NOT_ALLOWED,
            json,
            r#"{"error":"use GET"}"#.into(),
        ),
        (_, path) => answer(
            StatusCode::NOT_FOUND,
            json,
            serde_json::json!({"error": format!("no such endpoint: {path} (GET /metrics, /health, /ready)")})
                .to_string(),
        ),
    }
}

/// Binds `address` and serves the endpoint on the current tokio runtime until the process ends.
/// Returns the bound address (useful with port 0).
pub fn spawn(address: SocketAddr, observer: Observer) -> std::io::Result<SocketAddr> {
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
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let r = handle(&observer, &req);
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}
