//! AWS Signature Version 4 verification of requests, with no I/O (the clock is an argument).
//!
//! What the services check, in the order they check it: an `Authorization` header is there
//! (`MissingAuthenticationTokenException`), it is a well-formed `AWS4-HMAC-SHA256` header that
//! signs `host` and the date header (`IncompleteSignatureException`), the access key id is
//! known (`UnrecognizedClientException`), the credential is scoped to the called service and to
//! the request's date, the request time is within [`SKEW_SECS`] of now, and the signature
//! recomputed over the canonical request (method, path, query, the signed headers, the SHA-256
//! of the body) with the key's secret matches, compared in constant time
//! (`InvalidSignatureException`). [`Signed::check`] does everything that needs no body, so a
//! request from an unknown key is refused before its body is read; [`Signed::verify`] the rest.
//!
//! The signing key derivation and the final HMAC are the `aws-sigv4` crate's (the signer the AWS
//! SDK for Rust uses); the canonical request is built here from what the client declared it
//! signed (`SignedHeaders`), which is what a verifier must do. Any region in the credential
//! scope is accepted (the router is one endpoint for every region); query-string (presigned)
//! authentication is not supported.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::header::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;

/// The services' clock skew window: a request dated more than 5 minutes from now is refused.
pub const SKEW_SECS: i64 = 5 * 60;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// A secret access key; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// One configured access key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The access key id (not a secret: it travels in every request).
    pub access_key_id: String,
    /// Its secret access key.
    pub secret: Secret,
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
/// Signature=...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    /// Access key id.
    pub key_id: &'a str,
    /// Scope date, `YYYYMMDD`.
    pub date: &'a str,
    /// Scope region.
    pub region: &'a str,
    /// Scope service.
    pub service: &'a str,
    /// The signed header names, in the order given.
    pub signed_headers: Vec<&'a str>,
    /// The hex signature.
    pub signature: &'a str,
    scope: &'a str,
}

fn incomplete(message: impl Into<String>) -> ApiError {
    ApiError::new("IncompleteSignatureException", message)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidSignatureException", message)
}

/// The error for a request without an `Authorization` header.
pub fn missing() -> ApiError {
    ApiError::new(
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    )
}

/// Parses an `Authorization` header.
pub fn parse_authorization(header: &str) -> Result<Authorization<'_>, ApiError> {
    let header = header.trim();
    let (algorithm, rest) = header.split_once(' ').unwrap_or((header, ""));
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}' (edge-router verifies {ALGORITHM} \
             signatures in the Authorization header)"
        )));
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split([',', ' ']).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let mut msg = String::new();
    for (name, v) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed),
    ] {
        if v.is_none_or(str::is_empty) {
            msg.push_str(&format!(
                "Authorization header requires '{name}' parameter. "
            ));
        }
    }
    if !msg.is_empty() {
        return Err(incomplete(format!("{msg}Authorization={header}")));
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(incomplete("Authorization header is incomplete"));
    };
    let parts: Vec<&str> = credential.splitn(5, '/').collect();
    let [key_id, date, region, service, terminal] = parts[..] else {
        return Err(incomplete(format!(
            "Credential should have the form KEYID/YYYYMMDD/REGION/SERVICE/aws4_request; got \
             '{credential}'"
        )));
    };
    if key_id.is_empty() || region.is_empty() || service.is_empty() || terminal != "aws4_request" {
        return Err(incomplete(format!(
            "Credential should have the form KEYID/YYYYMMDD/REGION/SERVICE/aws4_request; got \
             '{credential}'"
        )));
    }
    Ok(Authorization {
        key_id,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
        scope: &credential[key_id.len() + 1..],
    })
}

/// Reads `YYYYMMDDTHHMMSSZ` as seconds since the epoch.
fn parse_basic(s: &str) -> Option<i64> {
    let dt = chrono::NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ").ok()?;
    (s.len() == 16).then(|| dt.and_utc().timestamp())
}

/// Formats seconds since the epoch as `YYYYMMDDTHHMMSSZ`.
pub fn format_basic(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|d| d.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_default()
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A request whose `Authorization` header was checked as far as it can be without the body.
#[derive(Debug, Clone)]
pub struct Signed<'a> {
    /// The parsed header.
    pub auth: Authorization<'a>,
    /// The request time in the string to sign (`YYYYMMDDTHHMMSSZ`).
    pub amz_date: String,
    /// The request time, seconds since the epoch.
    pub unix: i64,
}

impl<'a> Signed<'a> {
    /// Checks a request's headers for a call to `service` (`kinesis` or `firehose`) at `now`
    /// (seconds since the epoch): header present and complete, date readable, signed and within
    /// the skew window, credential scoped to the service and the request's date, and (when
    /// `known` is given) the key id among the configured ones.
    pub fn check(
        headers: &'a HeaderMap,
        service: &str,
        now: i64,
        known: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<Signed<'a>, ApiError> {
        let Some(header) = headers.get(hyper::header::AUTHORIZATION) else {
            return Err(missing());
        };
        let header = header
            .to_str()
            .map_err(|_| incomplete("the Authorization header is not ASCII text"))?;
        let auth = parse_authorization(header)?;
        let (amz_date, unix, date_header) = match header_text(headers, "x-amz-date") {
            Some(d) => (
                d.to_owned(),
                parse_basic(d).ok_or_else(|| {
                    incomplete(format!(
                        "Date must be in ISO-8601 'basic format'. Got '{d}'. See \
                         https://docs.aws.amazon.com/general/latest/gr/sigv4-date-handling.html"
                    ))
                })?,
                "x-amz-date",
            ),
            None => match header_text(headers, "date") {
                Some(d) => {
                    let t = chrono::DateTime::parse_from_rfc2822(d).map_err(|_| {
                        incomplete(format!("Date header is not an RFC 1123 date: '{d}'"))
                    })?;
                    let unix = t.timestamp();
                    (format_basic(unix), unix, "date")
                }
                None => {
                    return Err(incomplete(format!(
                        "Authorization header requires existence of either a 'X-Amz-Date' or \
                         a 'Date' header. Authorization={header}"
                    )));
                }
            },
        };
        let signs = |name: &str| {
            auth.signed_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
        };
        if !signs("host") && !signs(":authority") {
            return Err(incomplete(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
            ));
        }
        if !signs(date_header) {
            return Err(incomplete(format!(
                "'{date_header}' must be a 'SignedHeader' in the AWS Authorization."
            )));
        }
        if let Some(known) = known
            && !known(auth.key_id)
        {
            return Err(ApiError::new(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ));
        }
        if auth.service != service {
            return Err(invalid(format!(
                "Credential should be scoped to correct service: '{service}'. "
            )));
        }
        if auth.date != &amz_date[..8.min(amz_date.len())] {
            return Err(invalid(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
                 from HTTP: '{}' != '{}', from '{amz_date}'.",
                auth.date,
                &amz_date[..8.min(amz_date.len())]
            )));
        }
        if unix < now - SKEW_SECS {
            return Err(invalid(format!(
                "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
                format_basic(now - SKEW_SECS),
                format_basic(now)
            )));
        }
        if unix > now + SKEW_SECS {
            return Err(invalid(format!(
                "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
                format_basic(now + SKEW_SECS),
                format_basic(now)
            )));
        }
        Ok(Signed {
            auth,
            amz_date,
            unix,
        })
    }

    /// Recomputes the signature with `secret` over the request and compares it in constant
    /// time. `authority` stands in for a `Host` header the request lacks (HTTP/2).
    pub fn verify(
        &self,
        secret: &Secret,
        request: &RequestParts<'_>,
        body: &[u8],
    ) -> Result<(), ApiError> {
        let canonical = canonical_request(&self.auth.signed_headers, request, body);
        let to_sign = format!(
            "{ALGORITHM}\n{}\n{}\n{}",
            self.amz_date,
            self.auth.scope,
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let time = UNIX_EPOCH + Duration::from_secs(u64::try_from(self.unix).unwrap_or(0));
        let key = aws_sigv4::sign::v4::generate_signing_key(
            secret.expose(),
            time,
            self.auth.region,
            self.auth.service,
        );
        let want = aws_sigv4::sign::v4::calculate_signature(key, to_sign.as_bytes());
        let got = self.auth.signature.as_bytes();
        let same = got.len() == want.len() && bool::from(got.ct_eq(want.as_bytes()));
        if same {
            Ok(())
        } else {
            Err(invalid(format!(
                "The request signature we calculated does not match the signature you provided. \
                 Check your AWS Secret Access Key and signing method. Consult the service \
                 documentation for details.\n\nThe Canonical String for this request should \
                 have been\n'{canonical}'\n\nThe String-to-Sign should have been\n'{to_sign}'\n"
            )))
        }
    }
}

/// What of a request, besides its body, goes into the canonical request.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// `POST`.
    pub method: &'a str,
    /// The path as sent (still percent-encoded).
    pub path: &'a str,
    /// The query as sent.
    pub query: Option<&'a str>,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The request's authority (HTTP/2 `:authority`), used when there is no `Host` header.
    pub authority: Option<&'a str>,
}

/// The SigV4 canonical request for `signed` headers.
pub fn canonical_request(signed: &[&str], r: &RequestParts<'_>, body: &[u8]) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(r.method);
    out.push('\n');
    out.push_str(&uri_encode(
        if r.path.is_empty() { "/" } else { r.path },
        false,
    ));
    out.push('\n');
    out.push_str(&canonical_query(r.query.unwrap_or("")));
    out.push('\n');
    for name in signed {
        let name = name.to_ascii_lowercase();
        out.push_str(&name);
        out.push(':');
        // `host` (HTTP/1.1) and `:authority` (HTTP/2's pseudo-header, which the AWS SDK for
        // JavaScript signs whatever the protocol) name the same thing: the one missing stands
        // for the other.
        if name == ":authority" {
            let host = r.headers.get("host").and_then(|v| v.to_str().ok());
            out.push_str(r.authority.or(host).unwrap_or("").trim());
            out.push('\n');
            continue;
        }
        let mut values = r.headers.get_all(name.as_str()).iter().peekable();
        if values.peek().is_none() && name == "host" {
            out.push_str(r.authority.unwrap_or("").trim());
        }
        let mut first = true;
        for v in values {
            if !first {
                out.push(',');
            }
            first = false;
            let text = String::from_utf8_lossy(v.as_bytes());
            // Trimmed, and runs of spaces inside collapsed to one.
            let mut last_space = false;
            for c in text.trim().chars() {
                if c == ' ' {
                    if !last_space {
                        out.push(' ');
                    }
                    last_space = true;
                } else {
                    out.push(c);
                    last_space = false;
                }
            }
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed.join(";").to_ascii_lowercase());
    out.push('\n');
    out.push_str(&hex(&Sha256::digest(body)));
    out
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Percent-encodes everything but the unreserved characters (and `/` when `slash_too` is
/// false): the path of a non-S3 request is encoded once more as sent.
fn uri_encode(s: &str, slash_too: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !slash_too)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hexval = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The canonical query string: parameters decoded, re-encoded, sorted by name then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let enc = |s: &str| uri_encode(&String::from_utf8_lossy(&percent_decode(s)), true);
            (enc(k), enc(v))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Seconds since the epoch now (the one clock read, for the I/O side).
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn secret() -> Secret {
        Secret::new(SECRET.into())
    }

    /// AWS's published SigV4 test suite, `get-vanilla`: the signature is known.
    #[test]
    fn the_published_get_vanilla_example_verifies() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("example.amazonaws.com"));
        h.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        h.insert(
            "authorization",
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
        );
        let now = parse_basic("20150830T123600Z").unwrap();
        let s = Signed::check(&h, "service", now, Some(&|k| k == "AKIDEXAMPLE")).unwrap();
        let parts = RequestParts {
            method: "GET",
            path: "/",
            query: None,
            headers: &h,
            authority: None,
        };
        assert_eq!(
            canonical_request(&s.auth.signed_headers, &parts, b""),
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        s.verify(&secret(), &parts, b"").unwrap();
        let wrong = Secret::new("not-the-secret".into());
        assert_eq!(
            s.verify(&wrong, &parts, b"").unwrap_err().kind,
            "InvalidSignatureException"
        );
        // Anything signed that changes breaks it: the body, a header, the method.
        assert!(s.verify(&secret(), &parts, b"x").is_err());
        let post = RequestParts {
            method: "POST",
            ..parts
        };
        assert!(s.verify(&secret(), &post, b"").is_err());
    }

    /// A request signed by the `aws-sigv4` signer (what the AWS SDK for Rust uses) verifies,
    /// over HTTP/2 too (no `Host` header: the authority stands in).
    #[test]
    fn a_request_signed_by_the_sdk_signer_verifies() {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        use aws_sigv4::sign::v4::SigningParams;
        let identity =
            aws_sdk_kinesis::config::Credentials::new("AKID", SECRET, None, None, "test").into();
        let time = UNIX_EPOCH + Duration::from_secs(1_765_000_000);
        let params = SigningParams::builder()
            .identity(&identity)
            .region("eu-west-1")
            .name("kinesis")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let body = br#"{"StreamName":"s"}"#;
        let headers = [
            ("host", "127.0.0.1:8080"),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "Kinesis_20131202.ListShards"),
        ];
        let signable = SignableRequest::new(
            "POST",
            "http://127.0.0.1:8080/",
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(k, HeaderValue::from_static(v));
        }
        for (k, v) in instructions.headers() {
            h.insert(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let now = 1_765_000_000 + 100;
        let known = |k: &str| k == "AKID";
        let s = Signed::check(&h, "kinesis", now, Some(&known)).unwrap();
        let mut parts = RequestParts {
            method: "POST",
            path: "/",
            query: None,
            headers: &h,
            authority: None,
        };
        s.verify(&secret(), &parts, body).unwrap();
        let mut h2 = h.clone();
        h2.remove("host");
        parts.headers = &h2;
        parts.authority = Some("127.0.0.1:8080");
        s.verify(&secret(), &parts, body).unwrap();
        // The wrong service, an unknown key, a stale or future clock.
        assert_eq!(
            Signed::check(&h, "firehose", now, Some(&known))
                .unwrap_err()
                .kind,
            "InvalidSignatureException"
        );
        assert_eq!(
            Signed::check(&h, "kinesis", now, Some(&|_: &str| false))
                .unwrap_err()
                .kind,
            "UnrecognizedClientException"
        );
        let late = Signed::check(&h, "kinesis", 1_765_000_000 + 301, Some(&known)).unwrap_err();
        assert!(late.message.starts_with("Signature expired"), "{late}");
        let early = Signed::check(&h, "kinesis", 1_765_000_000 - 301, Some(&known)).unwrap_err();
        assert!(
            early.message.starts_with("Signature not yet current"),
            "{early}"
        );
        assert!(Signed::check(&h, "kinesis", 1_765_000_000 + 300, Some(&known)).is_ok());
    }

    #[test]
    fn missing_and_incomplete_headers() {
        let mut h = HeaderMap::new();
        let check = |h: &HeaderMap| Signed::check(h, "kinesis", 0, None).unwrap_err();
        assert_eq!(check(&h).kind, "MissingAuthenticationTokenException");
        h.insert("authorization", HeaderValue::from_static("Credential=AKID"));
        assert_eq!(check(&h).kind, "IncompleteSignatureException");
        h.insert(
            "authorization",
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=AKID"),
        );
        let e = check(&h);
        assert!(e.message.contains("'Signature'") && e.message.contains("'SignedHeaders'"));
        h.insert(
            "authorization",
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kinesis/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=00",
            ),
        );
        assert!(check(&h).message.contains("X-Amz-Date"));
        h.insert("x-amz-date", HeaderValue::from_static("2015-08-30"));
        assert!(check(&h).message.contains("basic format"));
        h.insert(
            "authorization",
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kinesis/aws4_request, \
                 SignedHeaders=x-amz-date, Signature=00",
            ),
        );
        h.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        assert!(check(&h).message.contains("'Host'"));
        // Without `known` (an open endpoint) a complete header is enough.
        h.insert(
            "authorization",
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=ANY/20150830/us-east-1/kinesis/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=00",
            ),
        );
        let now = parse_basic("20150830T123600Z").unwrap();
        assert!(Signed::check(&h, "kinesis", now, None).is_ok());
        // A scope date that is not the request's.
        h.insert("x-amz-date", HeaderValue::from_static("20150831T000100Z"));
        let e = Signed::check(&h, "kinesis", now + 11 * 3600 + 60, None).unwrap_err();
        assert!(e.message.contains("Date in Credential scope"), "{e}");
    }

    #[test]
    fn canonical_query_and_path() {
        assert_eq!(canonical_query("b=2&a=%2F x&a=1"), "a=%2F%20x&a=1&b=2");
        assert_eq!(uri_encode("/a b/c%20", false), "/a%20b/c%2520");
        assert_eq!(format_basic(0), "19700101T000000Z");
        assert_eq!(parse_basic("19700101T000010Z"), Some(10));
        assert_eq!(parse_basic("19700101T000010"), None);
        assert_eq!(format!("{:?}", secret()), "Secret(..)");
    }

    /// The AWS SDK for JavaScript v3 signs `:authority` instead of `host`; over HTTP/1.1 the
    /// request's `Host` header carries it.
    #[test]
    fn authority_stands_for_host() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        h.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        let parts = RequestParts {
            method: "POST",
            path: "/",
            query: None,
            headers: &h,
            authority: None,
        };
        let c = canonical_request(&[":authority", "x-amz-date"], &parts, b"");
        assert!(
            c.starts_with("POST\n/\n\n:authority:127.0.0.1:8080\nx-amz-date:20150830T123600Z\n\n:authority;x-amz-date\n"),
            "{c}"
        );
        h.insert(
            "authorization",
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=A/20150830/us-east-1/kinesis/aws4_request, \
                 SignedHeaders=:authority;x-amz-date, Signature=00",
            ),
        );
        let now = parse_basic("20150830T123600Z").unwrap();
        assert!(Signed::check(&h, "kinesis", now, None).is_ok());
    }
}
