//! A client of a running router's metrics endpoint, for `edge-router top` and `edge-router
//! reload`: one HTTP/1.1 request at a time, on a small runtime of its own.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Longest wait for one answer (a reload that compiles plugins takes seconds).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Asks one router's metrics endpoint.
pub struct EndpointClient {
    address: String,
    rt: tokio::runtime::Runtime,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl EndpointClient {
    /// A client of the endpoint at `address` (`IP:PORT`).
    pub fn new(address: &str) -> Result<EndpointClient, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let client = {
            let _entered = rt.enter();
            Client::builder(TokioExecutor::new()).build_http()
        };
        Ok(EndpointClient {
            address: address.to_owned(),
            rt,
            client,
        })
    }

    /// Sends `method` `path` with an empty body; the answer's status and body, or why the
    /// endpoint could not be asked.
    pub fn call(&self, method: Method, path: &str) -> Result<(StatusCode, Bytes), String> {
        self.call_with(method, path, None)
    }

    /// Like [`EndpointClient::call`], with an `Authorization` header when `authorization` is
    /// given. The whole exchange is bounded by [`REQUEST_TIMEOUT`].
    pub fn call_with(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
    ) -> Result<(StatusCode, Bytes), String> {
        let address = &self.address;
        let url: hyper::Uri = format!("http://{address}{path}")
            .parse()
            .map_err(|e| format!("{address:?}: {e}"))?;
        self.rt.block_on(async {
            let mut req = Request::builder().method(method).uri(url.clone());
            if let Some(a) = authorization {
                req = req.header(hyper::header::AUTHORIZATION, a);
            }
            let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
            let exchange = async {
                let resp = self.client.request(req).await.map_err(|e| {
                    format!("asking {url}: {e} (is the router running with --metrics {address}?)")
                })?;
                let status = resp.status();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| format!("reading the answer of {url}: {e}"))?
                    .to_bytes();
                Ok((status, body))
            };
            tokio::time::timeout(REQUEST_TIMEOUT, exchange)
                .await
                .map_err(|_| {
                    format!(
                        "{url} did not answer within {} s",
                        REQUEST_TIMEOUT.as_secs()
                    )
                })?
        })
    }
}
