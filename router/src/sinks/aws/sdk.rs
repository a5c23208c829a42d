//! What every AWS sink needs from the AWS SDK, in one place: [`load`] (the shared SDK config:
//! region, credentials, an assumed role, timeouts, the endpoint override, SDK retries off) and
//! errors in the SDK-free terms of [`retry`](crate::sinks::aws::retry): a class and a
//! description ([`classify_sdk_error`], [`Target::failure`]). `SdkError`, `HttpResponse`
//! and the credentials types are the smithy and aws-types runtime's, re-exported alike by every
//! service crate, so one module serves the Kinesis and the Firehose clients.
//!
//! The SDK's own retries are off: the engines retry entries and calls themselves (bounded by
//! attempts and TTL, per entry), and a retry inside the SDK would hide throttling from them.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_kinesis::config::SharedCredentialsProvider;
use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};

use crate::sinks::aws::config::AwsConfig;
use crate::sinks::aws::retry::{CallError, ErrorClass, classify_call_error};

/// Loads the SDK config a sink's service client is built from (`Client::new(&sdk)`), for a sink
/// whose target (e.g. "kinesis stream `s`") is `target`, from
/// the sink's settings and the standard AWS chains (credentials: environment, profile, web
/// identity, container and instance metadata; region: the sink's `region`, then `region_hint`
/// (a Kinesis stream ARN's), then `AWS_REGION` / profile), assuming `role_arn` if set.
///
/// The `endpoint` override is the service's alone: set on the config STS is built from, it would
/// also send the AssumeRole call there (a programmatic endpoint beats `AWS_ENDPOINT_URL_STS`).
/// STS keeps the standard resolution (`AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, profile).
///
/// # Errors
///
/// When no region can be found, naming the target.
pub async fn load(
    aws: &AwsConfig,
    region_hint: Option<&str>,
    target: &str,
) -> Result<(SdkConfig, Target), String> {
    let timeouts = TimeoutConfig::builder()
        .operation_attempt_timeout(aws.request_timeout)
        .connect_timeout(aws.request_timeout.min(Duration::from_secs(3)))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts);
    if let Some(region) = aws.region.as_deref().or(region_hint) {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    let base = loader.load().await;
    let Some(region) = base.region().map(ToString::to_string) else {
        return Err(format!(
            "{target}: no region: set `region` in the sink, or AWS_REGION"
        ));
    };
    let mut sdk = base.to_builder();
    if let Some(endpoint) = &aws.endpoint {
        sdk = sdk.endpoint_url(endpoint);
    }
    if let Some(role) = &aws.role_arn {
        let provider = aws_config::sts::AssumeRoleProvider::builder(role.clone())
            .session_name("edge-router")
            .configure(&base)
            .build()
            .await;
        sdk = sdk.credentials_provider(SharedCredentialsProvider::new(provider));
    }
    Ok((sdk.build(), Target::new(target.to_owned(), region)))
}

/// A failed call, classified, with a message that names the sink's target.
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

/// The target of a sink's calls (e.g. "kinesis stream `events`") and its region: what a failed
/// call's message names.
#[derive(Debug, Clone)]
pub struct Target {
    name: String,
    region: String,
}

impl Target {
    /// `name` (as messages should name it) in `region`.
    pub fn new(name: String, region: String) -> Target {
        Target { name, region }
    }

    /// The region in use.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The target as messages name it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A failed `operation`, classified and described; a missing target and denied access say
    /// so first.
    pub fn failure<E>(&self, operation: &str, e: &SdkError<E, HttpResponse>) -> CallFailure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let SdkFailure {
            class,
            code,
            detail,
        } = classify_sdk_error(e);
        let (target, region) = (&self.name, &self.region);
        let description = match code.as_str() {
            "ResourceNotFoundException" => {
                format!("{target} not found in region {region} ({detail})")
            }
            "AccessDeniedException" | "AccessDenied" => {
                format!("access to {target} in region {region} denied ({detail})")
            }
            _ => format!("{target} (region {region}): {operation}: {detail}"),
        };
        CallFailure { class, description }
    }

    /// A request the SDK would not build (a bug, or a record the service cannot take): fatal.
    pub fn unbuildable(&self, operation: &str, error: impl std::fmt::Display) -> CallFailure {
        CallFailure {
            class: ErrorClass::Fatal,
            description: format!("{}: {operation}: {error}", self.name),
        }
    }

    /// An answer that makes no sense (e.g. a missing part), in words: worth a retry.
    pub fn odd_answer(&self, what: impl std::fmt::Display) -> CallFailure {
        CallFailure {
            class: ErrorClass::Transient,
            description: format!("{}: {what}", self.name),
        }
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
