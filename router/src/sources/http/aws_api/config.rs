//! Settings of the AWS API (`aws_*` keys of an HTTP source): credentials whose secrets come
//! from a file or an environment variable (read when the config is read, so a problem is a
//! config error naming the key), who may call without them, the stream allow-list,
//! de-aggregation and the shard count.
//!
//! ```toml
//! aws_api = true
//! aws_credentials = [
//!   { access_key_id = "AKIAEDGEROUTER1", secret_file = "/etc/edge-router/aws-secret" },
//!   { access_key_id = "AKIAEDGEROUTER2", secret_env = "EDGE_ROUTER_AWS_SECRET" },
//! ]
//! aws_streams = ["events", "logs"]   # others: ResourceNotFoundException
//! aws_deaggregate = true             # open KPL aggregates (default)
//! aws_shards = 1024                  # what DescribeStream/ListShards report (default)
//! ```

use std::net::SocketAddr;

use super::shards::{DEFAULT_SHARDS, MAX_SHARDS};
use super::sigv4::{Credential, Secret};
use crate::config::reader::{Diagnostics, Located, Section};

/// Who may call the AWS API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsAuth {
    /// Requests must be signed (SigV4) with one of these keys.
    SigV4(Vec<Credential>),
    /// Requests need a well-formed, current SigV4 `Authorization` header, but its key and
    /// signature are not checked: with no credentials on a loopback address, or with
    /// `aws_auth = "none"` (`explicit`, warned about at start).
    Open {
        /// Chosen with `aws_auth = "none"`.
        explicit: bool,
    },
}

/// The AWS API's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsApiConfig {
    /// Region the API reports in stream ARNs.
    pub region: String,
    /// Who may call.
    pub auth: AwsAuth,
    /// When set, the only stream and delivery stream names accepted.
    pub streams: Option<Vec<String>>,
    /// Open KPL aggregates on ingest.
    pub deaggregate: bool,
    /// Shards reported by DescribeStream, DescribeStreamSummary and ListShards.
    pub shards: u32,
}

impl Default for AwsApiConfig {
    fn default() -> AwsApiConfig {
        AwsApiConfig {
            region: "us-east-1".into(),
            auth: AwsAuth::Open { explicit: false },
            streams: None,
            deaggregate: true,
            shards: DEFAULT_SHARDS,
        }
    }
}

/// Where a secret comes from.
fn read_secret(
    d: &mut Diagnostics,
    t: &mut Section<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Secret> {
    let file = t.opt_str(d, "secret_file");
    let var = t.opt_str(d, "secret_env");
    let mut inline_found = false;
    for inline in ["secret_access_key", "secret"] {
        if t.has(inline) {
            inline_found = true;
            d.error(
                &t.spot_of(inline),
                "secrets are not written in the config: use secret_file (a file holding the \
                 secret access key) or secret_env (an environment variable holding it)",
            );
        }
    }
    let text = match (file, var) {
        (Some(f), None) => match std::fs::read_to_string(&f.value) {
            Ok(s) => Some((s, f)),
            Err(e) => {
                d.error(&f.spot, format!("cannot read {}: {e}", f.value));
                return None;
            }
        },
        (None, Some(v)) => match env(&v.value) {
            Some(s) => Some((s, v)),
            None => {
                d.error(
                    &v.spot,
                    format!(
                        "the environment variable {} is not set (or not UTF-8)",
                        v.value
                    ),
                );
                return None;
            }
        },
        (Some(f), Some(_)) => {
            d.error(&f.spot, "give secret_file or secret_env, not both");
            return None;
        }
        (None, None) if inline_found => return None,
        (None, None) => {
            d.error(
                &t.spot(),
                "each credential needs secret_file or secret_env (where its secret access key \
                 is)",
            );
            return None;
        }
    };
    let (text, from): (String, Located<String>) = text?;
    let secret = text.trim().to_owned();
    if secret.is_empty() {
        d.error(&from.spot, format!("the secret in {} is empty", from.value));
        return None;
    }
    Some(Secret::new(secret))
}

impl AwsApiConfig {
    /// Reads the `aws_*` keys of an HTTP source at `address`. `enabled` is `aws_api`;
    /// `auth_token` is the source's bearer token, which does not protect this API.
    pub fn parse(
        s: &mut Section<'_>,
        d: &mut Diagnostics,
        enabled: bool,
        address: Option<SocketAddr>,
        auth_token: Option<&Located<String>>,
    ) -> AwsApiConfig {
        AwsApiConfig::parse_with_env(s, d, enabled, address, auth_token, &|k| {
            std::env::var(k).ok()
        })
    }

    /// [`AwsApiConfig::parse`] with the environment given (for tests).
    pub fn parse_with_env(
        s: &mut Section<'_>,
        d: &mut Diagnostics,
        enabled: bool,
        address: Option<SocketAddr>,
        auth_token: Option<&Located<String>>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> AwsApiConfig {
        let defaults = AwsApiConfig::default();
        if !enabled {
            for key in [
                "aws_credentials",
                "aws_auth",
                "aws_streams",
                "aws_deaggregate",
                "aws_shards",
                "aws_access_key_ids",
            ] {
                if s.has(key) {
                    d.error(
                        &s.spot_of(key),
                        format!("{key} has no effect without aws_api = true"),
                    );
                }
            }
            let _ = s.str_or(d, "aws_region", "us-east-1");
            return defaults;
        }
        let region = s.str_or(d, "aws_region", &defaults.region);
        if s.has("aws_access_key_ids") {
            d.error(
                &s.spot_of("aws_access_key_ids"),
                "aws_access_key_ids was replaced by aws_credentials: key ids are not secrets, \
                 so the router now verifies signatures. Write aws_credentials = [{ \
                 access_key_id = \"AKID...\", secret_file = \"/path/to/secret\" }] (or \
                 secret_env = \"VARIABLE\")",
            );
        }
        let mut credentials = Vec::new();
        let tables = s.table_array(d, "aws_credentials");
        let listed = tables.len();
        for mut t in tables {
            let id = t.required_str(d, "access_key_id");
            let secret = read_secret(d, &mut t, env);
            if let Some(id) = &id
                && (id.value.is_empty() || id.value.contains(['/', ' ', ',', '=']))
            {
                d.error(
                    &id.spot,
                    "access_key_id must be non-empty, without `/`, spaces, `,` or `=`",
                );
            }
            if let Some(id) = &id
                && credentials
                    .iter()
                    .any(|c: &Credential| c.access_key_id == id.value)
            {
                d.error(
                    &id.spot,
                    format!("access key id {} is listed twice", id.value),
                );
            }
            t.finish(d);
            if let (Some(id), Some(secret)) = (id, secret) {
                credentials.push(Credential {
                    access_key_id: id.value,
                    secret,
                });
            }
        }
        let had_credentials = s.has("aws_credentials");
        if had_credentials && listed == 0 {
            d.error(
                &s.spot_of("aws_credentials"),
                "aws_credentials lists no credential: nobody could call the AWS API",
            );
        }
        let auth_choice = s.opt_str(d, "aws_auth");
        let auth = match auth_choice.as_ref().map(|a| a.value.as_str()) {
            Some("none") => {
                if had_credentials {
                    d.error(
                        &s.spot_of("aws_auth"),
                        "aws_auth = \"none\" and aws_credentials contradict each other: drop \
                         one",
                    );
                }
                AwsAuth::Open { explicit: true }
            }
            Some("sigv4") | None => {
                if !had_credentials {
                    let loopback = address.is_none_or(|a| a.ip().is_loopback());
                    if !loopback {
                        let at = auth_choice
                            .as_ref()
                            .map_or_else(|| s.spot_of("aws_api"), |a| a.spot.clone());
                        d.error(
                            &at,
                            "the AWS API on a non-loopback address needs aws_credentials (access \
                             key ids with their secrets, to verify signatures); to leave it open \
                             to anyone who can reach it, say aws_auth = \"none\"",
                        );
                    }
                    if let Some(t) = auth_token {
                        d.error(
                            &t.spot,
                            "auth_token does not protect the AWS API (its clients sign requests \
                             instead of sending a bearer token): with aws_api = true, also set \
                             aws_credentials",
                        );
                    }
                }
                if had_credentials {
                    AwsAuth::SigV4(credentials)
                } else {
                    AwsAuth::Open { explicit: false }
                }
            }
            Some(other) => {
                d.error(
                    &s.spot_of("aws_auth"),
                    format!("unknown aws_auth {other:?}; expected \"sigv4\" or \"none\""),
                );
                AwsAuth::Open { explicit: true }
            }
        };
        let streams = s.opt_str_list(d, "aws_streams").map(|list| {
            let mut names = Vec::new();
            for n in list {
                let ok = (1..=128).contains(&n.value.len())
                    && n.value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
                if !ok {
                    d.error(
                        &n.spot,
                        format!(
                            "{:?} is not a stream name (1 to 128 of A-Z a-z 0-9 _ . -)",
                            n.value
                        ),
                    );
                }
                names.push(n.value);
            }
            names
        });
        let deaggregate = s.bool_or(d, "aws_deaggregate", defaults.deaggregate);
        let shards = s.int_or(
            d,
            "aws_shards",
            u64::from(defaults.shards),
            1..=u64::from(MAX_SHARDS),
        ) as u32;
        AwsApiConfig {
            region,
            auth,
            streams,
            deaggregate,
            shards,
        }
    }
}
