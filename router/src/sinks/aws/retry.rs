//! Retries: when to try a failed entry or request again, when to give up, and which errors are
//! worth another try. Shared by the Kinesis and Firehose sinks (both answer per entry and use the
//! same error codes).
//!
//! [`RetryPolicy::on_failure`] turns a failure into "retry at this instant" or "give up, because",
//! with exponential backoff and full or decorrelated jitter, bounded by a number of attempts and
//! by a record TTL counted from the record's arrival. Randomness comes from the `Rng` the caller
//! passes, so tests seed it. [`classify_entry_error`] and [`classify_call_error`] sort Kinesis
//! error codes (plain strings, as the API returns them) into throttled, transient and fatal.

use std::fmt;
use std::time::{Duration, Instant};

use rand::{Rng, RngExt};

/// How the backoff is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform in `0..=min(cap, base * 2^(retry - 1))`.
    Full,
    /// Uniform in `base..=max(base, 3 * previous delay)`, at most `cap`: each delay grows from
    /// the last one rather than from the retry count.
    Decorrelated,
}

/// When to retry and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first backoff's scale.
    pub base: Duration,
    /// The longest backoff.
    pub cap: Duration,
    /// Most sends of one entry, the first included (at least 1).
    pub attempts_max: u32,
    /// How long after its arrival a record may still be sent (the KPL's `RecordTtl`).
    pub ttl: Duration,
    /// How the backoff is randomised.
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    /// 100 ms base, 5 s cap, 20 attempts, 30 s TTL (as the KPL), full jitter.
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
            attempts_max: 20,
            ttl: Duration::from_secs(30),
            jitter: Jitter::Full,
        }
    }
}

/// The retry state of one entry (a record, or an aggregate of records: its arrival is that of the
/// oldest record in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    /// When the (oldest) record arrived; the TTL counts from here.
    pub arrived: Instant,
    /// Sends that failed so far.
    pub failures: u32,
    /// The last backoff (the base of decorrelated jitter).
    pub last_delay: Duration,
}

impl Attempts {
    /// A record that arrived at `arrived` and has not failed yet.
    pub fn new(arrived: Instant) -> Attempts {
        Attempts {
            arrived,
            failures: 0,
            last_delay: Duration::ZERO,
        }
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Send again at this instant (not before).
    RetryAt(Instant),
    /// Stop: dead-letter the records with this reason.
    GiveUp(GiveUp),
}

/// Why a record is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GiveUp {
    /// Every attempt failed.
    #[error("gave up after {attempts} failed attempts")]
    AttemptsExhausted {
        /// Attempts made.
        attempts: u32,
    },
    /// The next attempt would come after the record's TTL.
    #[error(
        "record TTL of {ttl:?} would pass before the next attempt ({attempts} failed attempts)"
    )]
    TtlExpired {
        /// The TTL.
        ttl: Duration,
        /// Attempts made.
        attempts: u32,
    },
}

impl RetryPolicy {
    /// Records a failed send at `now` and decides: retry at an instant at or after `now`, or give
    /// up (after `attempts_max` sends, or when the retry would come after `arrived + ttl`).
    pub fn on_failure<R: Rng + ?Sized>(
        &self,
        state: &mut Attempts,
        now: Instant,
        rng: &mut R,
    ) -> RetryDecision {
        state.failures = state.failures.saturating_add(1);
        if state.failures >= self.attempts_max {
            return RetryDecision::GiveUp(GiveUp::AttemptsExhausted {
                attempts: state.failures,
            });
        }
        let delay = self.delay(state.failures, state.last_delay, rng);
        state.last_delay = delay;
        let expired = GiveUp::TtlExpired {
            ttl: self.ttl,
            attempts: state.failures,
        };
        match (now.checked_add(delay), state.arrived.checked_add(self.ttl)) {
            (Some(at), Some(deadline)) if at <= deadline => RetryDecision::RetryAt(at),
            (Some(at), None) => RetryDecision::RetryAt(at),
            _ => RetryDecision::GiveUp(expired),
        }
    }

    /// The backoff before retry number `retry` (1 for the first retry), given the previous one.
    pub fn delay<R: Rng + ?Sized>(&self, retry: u32, last: Duration, rng: &mut R) -> Duration {
        let cap = nanos(self.cap);
        let base = nanos(self.base).min(cap);
        let upper = match self.jitter {
            Jitter::Full => {
                let exp = retry.saturating_sub(1).min(63);
                let low = base.saturating_mul(1u64 << exp).min(cap);
                return Duration::from_nanos(rng.random_range(0..=low));
            }
            Jitter::Decorrelated => nanos(last).saturating_mul(3).clamp(base, cap),
        };
        Duration::from_nanos(rng.random_range(base..=upper))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What an error means for the records it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Too fast for a shard or the account: retry after a backoff; counts as a throttle.
    Throttled,
    /// A passing failure (service error, timeout, connection): retry after a backoff.
    Transient,
    /// Retrying cannot help (missing stream, no permission, bad request, KMS key unusable): stop
    /// and dead-letter, with a message naming the stream.
    Fatal,
}

impl ErrorClass {
    /// Whether the records should be sent again.
    pub fn is_retryable(self) -> bool {
        !matches!(self, ErrorClass::Fatal)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Throttled => "throttled",
            ErrorClass::Transient => "transient",
            ErrorClass::Fatal => "fatal",
        })
    }
}

/// Classifies the `ErrorCode` of one failed entry in a successful PutRecords answer.
///
/// `ProvisionedThroughputExceededException` is a throttle and `InternalFailure` transient; the KMS
/// codes are classified as for a whole call. Any other code is taken as transient: the entry is
/// retried within its attempts and TTL, then dead-lettered, never dropped.
pub fn classify_entry_error(code: &str) -> ErrorClass {
    match classify_code(code) {
        Some(class) => class,
        None => ErrorClass::Transient,
    }
}

/// A failed PutRecords (or other) call, in terms that do not depend on the SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError<'a> {
    /// The service answered with an error: its code (e.g. `ResourceNotFoundException`; a
    /// `namespace#` prefix is ignored; empty when there was none) and the HTTP status, if known.
    Service {
        /// The error code.
        code: &'a str,
        /// The HTTP status.
        status: Option<u16>,
    },
    /// No answer in time (connect, read or whole-call timeout).
    Timeout,
    /// The connection failed or broke (DNS, refused, reset, TLS): the request may or may not
    /// have reached Kinesis.
    Connection,
}

/// Classifies a whole-call error.
///
/// Retryable: timeouts, connection errors, throttling codes (`ThrottlingException`,
/// `LimitExceededException`, `ProvisionedThroughputExceededException`, `KMSThrottlingException`,
/// ...), service-side failures (`InternalFailure`, `ServiceUnavailable`, ...), HTTP 429 and 5xx.
/// Fatal: `ResourceNotFoundException`, `AccessDeniedException`, `InvalidArgumentException`,
/// `ValidationException`, the other `KMS*` codes, credential and signature errors, and any other
/// 4xx. An unknown code without a status is transient.
pub fn classify_call_error(error: &CallError<'_>) -> ErrorClass {
    match *error {
        CallError::Timeout | CallError::Connection => ErrorClass::Transient,
        CallError::Service { code, status } => match (classify_code(code), status) {
            (Some(class), _) => class,
            (None, Some(429)) => ErrorClass::Throttled,
            (None, Some(s)) if (400..500).contains(&s) => ErrorClass::Fatal,
            (None, _) => ErrorClass::Transient,
        },
    }
}

/// The class of a known error code; `None` for codes not listed.
fn classify_code(code: &str) -> Option<ErrorClass> {
    // Some servers send `namespace#Code` (the JSON protocol's `__type`).
    let code = code.rsplit('#').next().unwrap_or(code).trim();
    let class = match code {
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "Throttling"
        | "ThrottledException"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "TooManyRequestsException"
        | "LimitExceededException"
        | "RequestLimitExceeded"
        | "KMSThrottlingException"
        | "SlowDown" => ErrorClass::Throttled,
        "InternalFailure"
        | "InternalFailureException"
        | "InternalServerError"
        | "InternalError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "RequestTimeout"
        | "RequestTimeoutException"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "RequestExpired"
        | "ResourceInUseException" => ErrorClass::Transient,
        "ResourceNotFoundException"
        | "AccessDeniedException"
        | "AccessDenied"
        | "InvalidArgumentException"
        | "ValidationException"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "NotAuthorized"
        | "OptInRequired" => ErrorClass::Fatal,
        // KMSAccessDeniedException, KMSDisabledException, KMSInvalidStateException,
        // KMSNotFoundException, KMSOptInRequired: the stream's key cannot be used.
        _ if code.starts_with("KMS") => ErrorClass::Fatal,
        _ => return None,
    };
    Some(class)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn full_jitter_stays_under_the_exponential_ceiling() {
        let p = RetryPolicy {
            base: ms(100),
            cap: ms(1000),
            ..RetryPolicy::default()
        };
        let mut rng = StdRng::seed_from_u64(7);
        for retry in 1..=8u32 {
            let ceiling = ms(100 * (1 << (retry - 1))).min(ms(1000));
            let mut max_seen = Duration::ZERO;
            for _ in 0..500 {
                let d = p.delay(retry, Duration::ZERO, &mut rng);
                assert!(d <= ceiling, "retry {retry}: {d:?} > {ceiling:?}");
                max_seen = max_seen.max(d);
            }
            // Uniform: 500 draws come close to the ceiling.
            assert!(max_seen * 10 >= ceiling * 9, "retry {retry}: {max_seen:?}");
        }
        // Huge retry counts do not overflow.
        assert!(p.delay(u32::MAX, Duration::ZERO, &mut rng) <= ms(1000));
    }

    #[test]
    fn decorrelated_jitter_grows_from_the_last_delay() {
        let p = RetryPolicy {
            base: ms(100),
            cap: ms(2000),
            jitter: Jitter::Decorrelated,
            ..RetryPolicy::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        let mut last = Duration::ZERO;
        for retry in 1..50 {
            let d = p.delay(retry, last, &mut rng);
            assert!(d >= ms(100) && d <= ms(2000), "{d:?}");
            assert!(d <= (last * 3).max(ms(100)), "{d:?} after {last:?}");
            last = d;
        }
    }

    #[test]
    fn seeded_rngs_give_the_same_schedule() {
        let p = RetryPolicy::default();
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let t0 = Instant::now();
            let mut a = Attempts::new(t0);
            (0..5)
                .map(|_| match p.on_failure(&mut a, t0, &mut rng) {
                    RetryDecision::RetryAt(at) => at - t0,
                    RetryDecision::GiveUp(g) => panic!("{g}"),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn gives_up_after_attempts_max() {
        let p = RetryPolicy {
            attempts_max: 3,
            ttl: Duration::from_secs(3600),
            ..RetryPolicy::default()
        };
        let mut rng = StdRng::seed_from_u64(0);
        let t0 = Instant::now();
        let mut a = Attempts::new(t0);
        assert!(matches!(
            p.on_failure(&mut a, t0, &mut rng),
            RetryDecision::RetryAt(_)
        ));
        assert!(matches!(
            p.on_failure(&mut a, t0, &mut rng),
            RetryDecision::RetryAt(_)
        ));
        let g = p.on_failure(&mut a, t0, &mut rng);
        assert_eq!(
            g,
            RetryDecision::GiveUp(GiveUp::AttemptsExhausted { attempts: 3 })
        );
        assert_eq!(
            GiveUp::AttemptsExhausted { attempts: 3 }.to_string(),
            "gave up after 3 failed attempts"
        );
        // One attempt only: the first failure is final.
        let once = RetryPolicy {
            attempts_max: 1,
            ..p
        };
        let mut a = Attempts::new(t0);
        assert!(matches!(
            once.on_failure(&mut a, t0, &mut rng),
            RetryDecision::GiveUp(GiveUp::AttemptsExhausted { attempts: 1 })
        ));
    }

    #[test]
    fn gives_up_when_the_ttl_would_pass() {
        let p = RetryPolicy {
            base: ms(500),
            cap: ms(500),
            ttl: Duration::from_secs(2),
            jitter: Jitter::Decorrelated,
            attempts_max: 100,
        };
        let mut rng = StdRng::seed_from_u64(0);
        let t0 = Instant::now();
        let mut a = Attempts::new(t0);
        // Decorrelated with base == cap: exactly 500 ms each time.
        assert_eq!(
            p.on_failure(&mut a, t0 + ms(1000), &mut rng),
            RetryDecision::RetryAt(t0 + ms(1500))
        );
        assert_eq!(
            p.on_failure(&mut a, t0 + ms(1500), &mut rng),
            RetryDecision::RetryAt(t0 + ms(2000))
        );
        let g = p.on_failure(&mut a, t0 + ms(1501), &mut rng);
        assert_eq!(
            g,
            RetryDecision::GiveUp(GiveUp::TtlExpired {
                ttl: Duration::from_secs(2),
                attempts: 3
            })
        );
        if let RetryDecision::GiveUp(g) = g {
            assert!(
                g.to_string().starts_with("record TTL of 2s would pass"),
                "{g}"
            );
        }
    }

    #[test]
    fn entry_errors() {
        assert_eq!(
            classify_entry_error("ProvisionedThroughputExceededException"),
            ErrorClass::Throttled
        );
        assert_eq!(
            classify_entry_error("InternalFailure"),
            ErrorClass::Transient
        );
        assert_eq!(
            classify_entry_error("KMSThrottlingException"),
            ErrorClass::Throttled
        );
        assert_eq!(
            classify_entry_error("KMSDisabledException"),
            ErrorClass::Fatal
        );
        assert_eq!(classify_entry_error("SomethingNew"), ErrorClass::Transient);
        assert!(ErrorClass::Throttled.is_retryable());
        assert!(ErrorClass::Transient.is_retryable());
        assert!(!ErrorClass::Fatal.is_retryable());
        assert_eq!(ErrorClass::Fatal.to_string(), "fatal");
    }

    #[test]
    fn call_errors() {
        let svc = |code, status| classify_call_error(&CallError::Service { code, status });
        assert_eq!(
            classify_call_error(&CallError::Timeout),
            ErrorClass::Transient
        );
        assert_eq!(
            classify_call_error(&CallError::Connection),
            ErrorClass::Transient
        );
        for code in [
            "ThrottlingException",
            "LimitExceededException",
            "ProvisionedThroughputExceededException",
            "KMSThrottlingException",
        ] {
            assert_eq!(svc(code, Some(400)), ErrorClass::Throttled, "{code}");
        }
        for code in [
            "InternalFailure",
            "ServiceUnavailableException",
            "InternalServerError",
        ] {
            assert_eq!(svc(code, Some(500)), ErrorClass::Transient, "{code}");
        }
        for code in [
            "ResourceNotFoundException",
            "AccessDeniedException",
            "InvalidArgumentException",
            "ValidationException",
            "KMSAccessDeniedException",
            "KMSDisabledException",
            "KMSInvalidStateException",
            "KMSNotFoundException",
            "KMSOptInRequired",
            "UnrecognizedClientException",
        ] {
            assert_eq!(svc(code, Some(400)), ErrorClass::Fatal, "{code}");
        }
        // The JSON protocol's namespaced form.
        assert_eq!(
            svc(
                "com.amazonaws.kinesis.v20131202#ResourceNotFoundException",
                Some(400)
            ),
            ErrorClass::Fatal
        );
        // Unknown codes go by status.
        assert_eq!(svc("", Some(503)), ErrorClass::Transient);
        assert_eq!(svc("Weird", Some(502)), ErrorClass::Transient);
        assert_eq!(svc("", Some(429)), ErrorClass::Throttled);
        assert_eq!(svc("", Some(413)), ErrorClass::Fatal);
        assert_eq!(svc("Weird", Some(403)), ErrorClass::Fatal);
        assert_eq!(svc("Weird", None), ErrorClass::Transient);
        // A known code wins over the status.
        assert_eq!(svc("ThrottlingException", Some(503)), ErrorClass::Throttled);
    }

    fn policies() -> impl Strategy<Value = RetryPolicy> {
        (
            1u64..2000,
            1u64..20_000,
            1u32..30,
            0u64..120_000,
            any::<bool>(),
        )
            .prop_map(|(base, cap, attempts_max, ttl, full)| RetryPolicy {
                base: ms(base),
                cap: ms(cap),
                attempts_max,
                ttl: ms(ttl),
                jitter: if full {
                    Jitter::Full
                } else {
                    Jitter::Decorrelated
                },
            })
    }

    proptest! {
        /// Retries stay within the cap, never before the failure, never after the TTL, and stop
        /// after `attempts_max` sends.
        #[test]
        fn schedules_stay_in_bounds(p in policies(), seed: u64, gaps in proptest::collection::vec(0u64..5000, 1..40)) {
            let mut rng = StdRng::seed_from_u64(seed);
            let t0 = Instant::now();
            let mut a = Attempts::new(t0);
            let mut now = t0;
            for (i, gap) in gaps.into_iter().enumerate() {
                now += ms(gap);
                match p.on_failure(&mut a, now, &mut rng) {
                    RetryDecision::RetryAt(at) => {
                        prop_assert!(at >= now);
                        prop_assert!(at - now <= p.cap);
                        prop_assert!(at <= t0 + p.ttl);
                        prop_assert!(a.failures < p.attempts_max);
                        now = at;
                    }
                    RetryDecision::GiveUp(GiveUp::AttemptsExhausted { attempts }) => {
                        prop_assert_eq!(attempts, p.attempts_max);
                        prop_assert_eq!(i as u32 + 1, p.attempts_max);
                        break;
                    }
                    RetryDecision::GiveUp(GiveUp::TtlExpired { attempts, .. }) => {
                        prop_assert!(attempts < p.attempts_max);
                        break;
                    }
                }
            }
        }
    }
}
