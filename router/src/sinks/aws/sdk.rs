//! AWS SDK errors in the SDK-free terms of [`retry`](crate::sinks::aws::retry): a class and a
//! description. `SdkError` and `HttpResponse` are the smithy runtime's types, re-exported alike by
//! every service crate, so one function serves the Kinesis and the Firehose clients.

use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};

use crate::sinks::aws::retry::{CallError, ErrorClass, classify_call_error};

/// A failed call, classified, with a message that names the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    /// Retry, or stop.
    pub class: ErrorClass,
    /// What went wrong, in words.
    pub description: String,
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// A classified SDK error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkFailure {
    /// Retry, or stop.
    pub class: ErrorClass,
    /// The service's error code without a `namespace#` prefix (empty when there was none).
    pub code: String,
    /// What went wrong, in words (code, message, HTTP status, or the transport error).
    pub detail: String,
}

/// Classifies an SDK error and describes it.
pub fn classify_sdk_error<E>(e: &SdkError<E, HttpResponse>) -> SdkFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (call, detail) = match e {
        SdkError::TimeoutError(_) => (CallError::Timeout, "timed out".to_owned()),
        SdkError::DispatchFailure(d) => {
            let call = if d.is_timeout() {
                CallError::Timeout
            } else {
                CallError::Connection
            };
            (
                call,
                format!("cannot reach the endpoint: {}", error_chain(e)),
            )
        }
        SdkError::ConstructionFailure(_) => (
            CallError::Service {
                code: "InvalidArgumentException",
                status: None,
            },
            format!("bad request: {}", error_chain(e)),
        ),
        SdkError::ResponseError(r) => {
            let status = Some(r.raw().status().as_u16());
            (
                CallError::Service { code: "", status },
                format!(
                    "unreadable answer{}: {}",
                    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default(),
                    error_chain(e)
                ),
            )
        }
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("");
            let status = Some(s.raw().status().as_u16());
            let message = s.err().message().unwrap_or("");
            let mut d = if code.is_empty() {
                "error".to_owned()
            } else {
                code.to_owned()
            };
            if !message.is_empty() {
                d.push_str(": ");
                d.push_str(message);
            }
            if let Some(st) = status {
                d.push_str(&format!(" (HTTP {st})"));
            }
            (CallError::Service { code, status }, d)
        }
        _ => (
            CallError::Service {
                code: "",
                status: None,
            },
            error_chain(e),
        ),
    };
    let class = classify_call_error(&call);
    let code = match call {
        CallError::Service { code, .. } => code.rsplit('#').next().unwrap_or(code).to_owned(),
        _ => String::new(),
    };
    SdkFailure {
        class,
        code,
        detail,
    }
}

/// An error and its sources, joined with `: `.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    let mut depth = 0;
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
        depth += 1;
        if depth > 8 {
            break;
        }
    }
    s
}
