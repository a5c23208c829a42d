//! The AWS API's I/O side: one request to `/` -> checks in the services' order -> an answer.
//!
//! Content type and `X-Amz-Target` first, then the `Authorization` header (everything that
//! needs no body: a request from an unknown key is refused before its body is read), then the
//! body within `max_body_bytes`, the source's memory budget and the body deadline (as on
//! `/v1/records`: `read_limited`), the signature over it, the call. A record-carrying call becomes
//! one batch, put into the ingress queue like a `/v1/records` request (all or nothing, answered
//! only once it is in). Every answer is in the request's encoding with `x-amzn-RequestId`; an
//! error also carries `x-amzn-ErrorType`.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::config::AwsAuth;
use super::shards::Shards;
use super::sigv4::{self, RequestParts, Signed};
use super::wire::Wire;
use super::{ApiError, ApiLimits, Call, StreamFacts};
use crate::core::record::Batch;
use crate::sources::guard::BudgetError;
use crate::sources::http::{
    Answer, ReadFailure, Shared, accept, header_str, origin, peer_of, read_limited, request_meta,
};

/// What the AWS API keeps for the life of the source.
#[derive(Debug)]
pub struct State {
    shards: Shards,
    started_unix_millis: u64,
    requests: AtomicU64,
}

impl State {
    /// The state of a source started at `started_unix_nanos` reporting `shards` shards.
    pub fn new(shards: u32, started_unix_nanos: u128) -> State {
        State {
            shards: Shards::new(shards),
            started_unix_millis: u64::try_from(started_unix_nanos / 1_000_000).unwrap_or(0),
            requests: AtomicU64::new(0),
        }
    }

    fn request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        format!("{:012x}-{n:08x}", self.started_unix_millis)
    }
}

fn answer(state: &State, wire: Wire, status: u16, body: Vec<u8>) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(wire.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&state.request_id()) {
        h.insert("x-amzn-requestid", v);
    }
    r
}

fn error(state: &State, wire: Wire, e: &ApiError) -> Answer {
    let mut r = answer(state, wire, e.status, e.body(wire));
    r.headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(e.kind));
    r
}

/// Answers one request to `/` on a source with `aws_api = true`.
pub(in crate::sources::http) async fn handle(shared: &Shared, req: Request<Incoming>) -> Answer {
    let state = &shared.aws;
    let content_type = header_str(req.headers(), header::CONTENT_TYPE).map(str::to_owned);
    let wire = Wire::from_content_type(content_type.as_deref());
    let has_target = req.headers().contains_key("x-amz-target");
    let answer_wire = wire.unwrap_or(Wire::Json);
    if req.method() != Method::POST || (wire.is_none() && !has_target) {
        let e = ApiError::new(
            "AccessDeniedException",
            "Unable to determine service/operation name to be authorized",
        )
        .with_status(403);
        return error(state, answer_wire, &e);
    }
    let Some(wire) = wire else {
        let e = ApiError::new(
            "UnknownOperationException",
            format!(
                "Content-Type must be {} or {} (got {})",
                super::wire::AMZ_JSON,
                super::wire::AMZ_CBOR,
                content_type.as_deref().unwrap_or("none")
            ),
        )
        .with_status(404);
        return error(state, answer_wire, &e);
    };
    match serve(shared, wire, req).await {
        Ok(a) => a,
        Err(e) => error(state, wire, &e),
    }
}

async fn serve(shared: &Shared, wire: Wire, req: Request<Incoming>) -> Result<Answer, ApiError> {
    let state = &shared.aws;
    let cfg = &shared.cfg;
    let call = match header_str(req.headers(), "x-amz-target") {
        Some(t) => Call::from_target(t)?,
        None => {
            return Err(ApiError::new(
                "UnknownOperationException",
                "the request has no X-Amz-Target header naming the operation",
            ));
        }
    };
    let peer = peer_of(&req);
    let (parts, body) = req.into_parts();
    let now = sigv4::now_unix();
    let signed = match &cfg.aws.auth {
        AwsAuth::SigV4(creds) => {
            let known = |k: &str| creds.iter().any(|c| c.access_key_id == k);
            Signed::check(&parts.headers, call.service(), now, Some(&known))?
        }
        AwsAuth::Open { .. } => Signed::check(&parts.headers, call.service(), now, None)?,
    };
    let (raw, mut held) = match read_limited(shared, &parts.headers, body, peer).await {
        Ok(b) => b,
        Err(ReadFailure::TooLarge) => {
            return Err(ApiError::new(
                "SerializationException",
                format!(
                    "the request body exceeds this endpoint's max_body_bytes ({} bytes)",
                    cfg.max_body_bytes
                ),
            )
            .with_status(413));
        }
        Err(ReadFailure::Budget(e @ BudgetError::Busy { .. })) => {
            return Err(ApiError::new(
                "ServiceUnavailableException",
                format!("{e}; nothing was accepted, retry later"),
            )
            .with_status(503));
        }
        Err(ReadFailure::Budget(e)) => {
            return Err(ApiError::serialization(format!("the request {e}")).with_status(413));
        }
        Err(ReadFailure::Stalled) => {
            return Err(ApiError::serialization(
                "the body did not arrive in time (body_timeout_ms plus body_min_bytes_per_sec)",
            )
            .with_status(408));
        }
        Err(ReadFailure::Broken(e)) => {
            return Err(ApiError::serialization(format!("reading the body: {e}")));
        }
    };
    if let AwsAuth::SigV4(creds) = &cfg.aws.auth {
        let Some(cred) = creds.iter().find(|c| c.access_key_id == signed.auth.key_id) else {
            return Err(ApiError::new(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ));
        };
        let request = RequestParts {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
            authority: parts.uri.authority().map(|a| a.as_str()),
        };
        signed.verify(&cred.secret, &request, &raw)?;
    }
    let input = wire.parse(&raw)?;
    let limits = ApiLimits {
        max_record_bytes: cfg.max_record_bytes,
        max_decoded_bytes: cfg.max_body_bytes,
        deaggregate: cfg.aws.deaggregate,
        streams: cfg.aws.streams.as_deref(),
    };
    if !call.carries_records() {
        let facts = StreamFacts {
            region: &cfg.aws.region,
            created_unix_millis: state.started_unix_millis,
        };
        let body = super::describe(call, &input, &limits, &state.shards, &facts, wire)?;
        return Ok(answer(state, wire, 200, body));
    }
    let attributes = request_meta(&parts.headers, &[])
        .map(|m| m.attributes)
        .unwrap_or_default();
    let recs = super::parse_records(call, input, &limits, &attributes, &state.shards)?;
    // The decoded records (their data, spans and metadata) take the place of the raw body in
    // the reservation.
    let raw_held = held.held();
    let decoded = recs.data.capacity()
        + recs.spans.len() * std::mem::size_of::<crate::core::record::Span>()
        + recs.meta.len() * std::mem::size_of::<crate::core::record::RecordMeta>();
    let grown = held.try_grow(decoded);
    drop(raw);
    if grown.is_ok() {
        let h = held.held();
        held.shrink_to(h.saturating_sub(raw_held));
    }
    let d = recs.deaggregation;
    if d != super::DeaggregationCounts::default() {
        let c = &shared.counters;
        c.aws_aggregates.fetch_add(d.aggregates, Ordering::Relaxed);
        c.aws_aggregated_records
            .fetch_add(d.user_records, Ordering::Relaxed);
        c.aws_aggregates_kept_whole
            .fetch_add(d.kept_whole, Ordering::Relaxed);
    }
    let entries = recs.entry_shards.len();
    let accepted = if recs.spans.is_empty() {
        // Only empty aggregates: nothing to pass on.
        Ok(())
    } else if grown.is_err() {
        // The budget cannot hold the decoded records now: refused like a full pipeline.
        Err("memory budget")
    } else {
        let batch =
            Batch::new(Bytes::from(recs.data), recs.spans, origin(shared)).with_meta(recs.meta);
        accept(shared, batch, held).await
    };
    match accepted {
        Ok(()) => {
            let first = shared
                .sequence
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(entries);
            let body = super::accepted(call, wire, &recs.entry_shards, first);
            Ok(answer(state, wire, 200, body))
        }
        Err(_) => {
            let (status, body) = super::refused(call, wire, entries);
            let mut a = answer(state, wire, status, body);
            if status != 200 {
                a.headers_mut().insert(
                    "x-amzn-errortype",
                    HeaderValue::from_static(if status == 503 {
                        "ServiceUnavailableException"
                    } else {
                        "ProvisionedThroughputExceededException"
                    }),
                );
            }
            if status == 503 {
                a.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(cfg.retry_after_secs));
            }
            Ok(a)
        }
    }
}
