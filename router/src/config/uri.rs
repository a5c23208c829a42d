//! Quick-mode URIs: `stdin`, `stdout`, `file:PATH`, `kinesis://STREAM`, `firehose://NAME` with `?key=value&...`
//! options.
//!
//! A URI becomes a TOML table (`kind`, `path` and one key per query parameter, values as
//! strings) that is then validated by exactly the code that reads the config file, so every
//! option and range is the same in both places. Query keys and values are percent-decoded; the
//! `file:` path is taken as written (its `%` are strftime specifiers) and ends at the first `?`;
//! the `kinesis:` stream (a name or an ARN, with or without `//`) is percent-decoded.

use toml_edit::{Table, value};

use crate::config::reader::{ConfigError, Location};

/// Which flag a URI came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `--source`.
    Source,
    /// `--sink`.
    Sink,
}

fn error(arg: &str, role: Role, message: String) -> ConfigError {
    let flag = match role {
        Role::Source => "--source",
        Role::Sink => "--sink",
    };
    ConfigError {
        location: Location::Arg(format!("{flag} {arg:?}")),
        key_path: String::new(),
        message,
    }
}

/// Decodes `%XX` escapes (and `+` as a space is *not* applied: paths may contain `+`).
pub fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at byte {i} of {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} decodes to invalid UTF-8"))
}

/// Turns a quick-mode URI into `(kind, table)`.
pub fn to_table(arg: &str, role: Role) -> Result<(String, Table), ConfigError> {
    let (head, query) = match arg.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (arg, None),
    };
    let (scheme, rest) = match head.split_once(':') {
        Some((s, r)) => (s, Some(r)),
        None => (head, None),
    };
    let kinds: &[&str] = match role {
        Role::Source => &["stdin", "http", "https", "quic"],
        Role::Sink => &["file", "stdout", "kinesis", "firehose"],
    };
    if !kinds.contains(&scheme) {
        return Err(error(
            arg,
            role,
            format!(
                "unknown scheme {scheme:?}; expected one of: {}",
                kinds
                    .iter()
                    .map(|k| match *k {
                        "file" => "file:PATH".to_owned(),
                        "kinesis" => "kinesis://STREAM".to_owned(),
                        "firehose" => "firehose://NAME".to_owned(),
                        "http" | "https" | "quic" => format!("{k}://HOST:PORT"),
                        k => k.to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let mut table = Table::new();
    table.insert(
        "kind",
        value(if scheme == "https" { "http" } else { scheme }),
    );
    match (scheme, rest) {
        ("http" | "https" | "quic", rest) => {
            let address = rest
                .and_then(|r| r.strip_prefix("//"))
                .map(|r| r.trim_end_matches('/'))
                .unwrap_or("");
            if address.is_empty() {
                return Err(error(
                    arg,
                    role,
                    format!("{scheme}: needs an address, e.g. {scheme}://127.0.0.1:8080"),
                ));
            }
            table.insert("address", value(address.to_owned()));
        }
        ("file", Some(path)) => {
            // Not percent-decoded: `%` introduces the date specifiers of path templates.
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(error(
                    arg,
                    role,
                    "file: needs a path, e.g. file:out/records.ndjson".into(),
                ));
            }
            table.insert("path", value(path.to_owned()));
        }
        ("file", None) => {
            return Err(error(
                arg,
                role,
                "file: needs a path, e.g. file:out/records.ndjson".into(),
            ));
        }
        ("kinesis", rest) => {
            let stream = rest
                .map(|r| r.strip_prefix("//").unwrap_or(r))
                .unwrap_or("");
            let stream = percent_decode(stream).map_err(|e| error(arg, role, e))?;
            if stream.is_empty() {
                return Err(error(
                    arg,
                    role,
                    "kinesis: needs a stream, e.g. kinesis://my-stream?region=us-east-1".into(),
                ));
            }
            table.insert("stream", value(stream));
        }
        ("firehose", rest) => {
            let name = rest
                .map(|r| r.strip_prefix("//").unwrap_or(r))
                .unwrap_or("");
            let name = percent_decode(name).map_err(|e| error(arg, role, e))?;
            if name.is_empty() {
                return Err(error(
                    arg,
                    role,
                    "firehose: needs a delivery stream, e.g. firehose://my-stream?region=us-east-1"
                        .into(),
                ));
            }
            table.insert("delivery_stream", value(name));
        }
        (_, Some(extra)) if !extra.is_empty() => {
            return Err(error(
                arg,
                role,
                format!("{scheme} takes no address (found {extra:?})"),
            ));
        }
        _ => {}
    }
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            error(
                arg,
                role,
                format!("option {pair:?} needs a value (key=value)"),
            )
        })?;
        let k = percent_decode(k).map_err(|e| error(arg, role, e))?;
        let v = percent_decode(v).map_err(|e| error(arg, role, e))?;
        if k == "kind"
            || (k == "address" && matches!(scheme, "http" | "https" | "quic"))
            || (k == "path" && scheme == "file")
            || (k == "stream" && scheme == "kinesis")
            || (k == "delivery_stream" && scheme == "firehose")
        {
            return Err(error(
                arg,
                role,
                format!("option `{k}` is given by the URI itself"),
            ));
        }
        if table.contains_key(&k) {
            return Err(error(arg, role, format!("option `{k}` is given twice")));
        }
        table.insert(&k, value(v));
    }
    if scheme == "https" && !(table.contains_key("tls_cert") && table.contains_key("tls_key")) {
        return Err(error(
            arg,
            role,
            "https: needs tls_cert=PEM&tls_key=PEM (or use http://)".into(),
        ));
    }
    let kind = if scheme == "https" { "http" } else { scheme };
    Ok((kind.to_owned(), table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uri_with_options() {
        let (kind, t) = to_table(
            "file:out/{partition_key}/%Y/%m.ndjson?rotate_bytes=1MiB&delimiter=%0A",
            Role::Sink,
        )
        .unwrap();
        assert_eq!(kind, "file");
        assert_eq!(t["path"].as_str(), Some("out/{partition_key}/%Y/%m.ndjson"));
        assert_eq!(t["rotate_bytes"].as_str(), Some("1MiB"));
        assert_eq!(t["delimiter"].as_str(), Some("\n"));
        let (_, t) = to_table("file:///tmp/x", Role::Sink).unwrap();
        assert_eq!(t["path"].as_str(), Some("/tmp/x"));
    }

    #[test]
    fn kinesis_uri() {
        let (kind, t) = to_table(
            "kinesis://events?region=us-east-1&endpoint=http://127.0.0.1:4567&partition=field:device_id",
            Role::Sink,
        )
        .unwrap();
        assert_eq!(kind, "kinesis");
        assert_eq!(t["stream"].as_str(), Some("events"));
        assert_eq!(t["endpoint"].as_str(), Some("http://127.0.0.1:4567"));
        assert_eq!(t["partition"].as_str(), Some("field:device_id"));
        let (_, t) = to_table("kinesis:arn:aws:kinesis:us-east-1:1:stream/x", Role::Sink).unwrap();
        assert_eq!(
            t["stream"].as_str(),
            Some("arn:aws:kinesis:us-east-1:1:stream/x")
        );
    }

    #[test]
    fn bad_uris_say_what_is_wrong() {
        let e = to_table("s3://x", Role::Sink).unwrap_err();
        assert!(e.to_string().contains("unknown scheme \"s3\""), "{e}");
        assert!(e.to_string().contains("kinesis://STREAM"), "{e}");
        assert!(e.to_string().contains("firehose://NAME"), "{e}");
        let (kind, t) = to_table("firehose://to-s3?pack=false", Role::Sink).unwrap();
        assert_eq!(kind, "firehose");
        assert_eq!(t["delivery_stream"].as_str(), Some("to-s3"));
        assert_eq!(t["pack"].as_str(), Some("false"));
        let e = to_table("kinesis://", Role::Sink).unwrap_err();
        assert!(e.to_string().contains("needs a stream"), "{e}");
        let e = to_table("kinesis://s?stream=t", Role::Sink).unwrap_err();
        assert!(e.to_string().contains("given by the URI itself"), "{e}");
        let e = to_table("file:", Role::Sink).unwrap_err();
        assert!(e.to_string().contains("needs a path"), "{e}");
        let e = to_table("stdout?x", Role::Sink).unwrap_err();
        assert!(e.to_string().contains("needs a value"), "{e}");
        let e = to_table("stdin?a=1&a=2", Role::Source).unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
        let e = to_table("file:x?y=%zz", Role::Sink).unwrap_err();
        assert!(e.to_string().contains("percent escape"), "{e}");
    }
}
