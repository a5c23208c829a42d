//! Where a record's partition key comes from.
//!
//! Sinks that group records by key (a file sink's `{partition_key}` path template) ask a
//! [`KeySpec`] for each record's key. Keys are borrowed from the record wherever possible, so
//! choosing a key costs no allocation. The Kinesis sink's partition keys, with their strategies,
//! fallbacks and limits, come from [`crate::core::partitioner`].

use std::borrow::Cow;

use crate::core::jsonpath::{JsonPath, lookup};
use crate::core::record::RecordRef;

/// How to find a record's partition key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpec {
    /// The key the source gave the record (none for stdin).
    Record,
    /// The value of a JSON field (`field:a.b[0].c`).
    Field(JsonPath),
    /// A record attribute (`attribute:NAME`).
    Attribute(String),
    /// The same key for every record (`constant:TEXT`).
    Constant(String),
}

impl KeySpec {
    /// Parses `record`, `field:PATH`, `attribute:NAME` or `constant:TEXT`.
    pub fn parse(s: &str) -> Result<KeySpec, String> {
        let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
        match kind {
            "record" if arg.is_empty() => Ok(KeySpec::Record),
            "field" => JsonPath::parse(arg)
                .map(KeySpec::Field)
                .map_err(|e| format!("bad field path {arg:?}: {e}")),
            "attribute" if !arg.is_empty() => Ok(KeySpec::Attribute(arg.to_owned())),
            "constant" if !arg.is_empty() => Ok(KeySpec::Constant(arg.to_owned())),
            _ => Err(format!(
                "unknown key source {s:?}; expected `record`, `field:PATH`, `attribute:NAME` or `constant:TEXT`"
            )),
        }
    }

    /// The key of one record, or `None` when the record has none (missing field or attribute).
    pub fn key<'a>(&'a self, rec: &RecordRef<'a>) -> Option<Cow<'a, [u8]>> {
        match self {
            KeySpec::Record => rec.partition_key().map(|k| Cow::Borrowed(k.as_bytes())),
            KeySpec::Field(path) => lookup(rec.payload, path).and_then(|v| v.key_bytes()),
            KeySpec::Attribute(name) => rec.attribute(name).map(|v| Cow::Borrowed(v.as_bytes())),
            KeySpec::Constant(c) => Some(Cow::Borrowed(c.as_bytes())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::{Origin, PositionBase, RecordMeta};
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn parse_and_extract() {
        let origin = Origin {
            source: Arc::from("s"),
            arrival_unix_nanos: 0,
            arrival: Instant::now(),
            position: PositionBase::None,
        };
        let meta = RecordMeta {
            partition_key: Some("pk".into()),
            explicit_hash_key: None,
            attributes: vec![("host".into(), "h1".into())].into(),
        };
        let rec = RecordRef {
            payload: br#"{"device_id":17,"site":"plant-\u0031"}"#,
            meta: Some(&meta),
            origin: &origin,
        };
        let key = |s: &str| KeySpec::parse(s).unwrap().key(&rec).map(|k| k.into_owned());
        assert_eq!(key("record"), Some(b"pk".to_vec()));
        assert_eq!(key("field:device_id"), Some(b"17".to_vec()));
        assert_eq!(key("field:site"), Some(b"plant-1".to_vec()));
        assert_eq!(key("field:nope"), None);
        assert_eq!(key("attribute:host"), Some(b"h1".to_vec()));
        assert_eq!(key("constant:x"), Some(b"x".to_vec()));
        assert!(KeySpec::parse("random").is_err());
        assert!(KeySpec::parse("field:").is_err());
        assert!(KeySpec::parse("attribute:").is_err());
    }
}
