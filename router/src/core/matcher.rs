//! Record conditions used by the built-in filter and route stages: "field equals", "field is one
//! of", "field (or payload) starts with", "field exists", and the same on a record attribute
//! (such as `stream`, which the AWS endpoint sets). Fields are read with the scanning lookup of
//! [`crate::core::jsonpath`], never by parsing the whole record.

use crate::core::jsonpath::{JsonPath, lookup};
use crate::core::record::RecordRef;

/// What a [`Condition`] tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// The value equals this literal (strings after unescaping; numbers, booleans and `null` by
    /// their text, numbers also numerically).
    Equals(String),
    /// The value equals one of these literals.
    OneOf(Vec<String>),
    /// The value (a string's unescaped text, or the payload) starts with these bytes.
    Prefix(Vec<u8>),
    /// The field is present (any value, including `null`).
    Exists,
}

/// A test on a record: on a JSON field when `field` is set, on an attribute when `attribute` is
/// set, else on the whole payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The field to test; `None` tests the raw payload.
    pub field: Option<JsonPath>,
    /// The record attribute to test instead of the payload (never set with `field`).
    pub attribute: Option<String>,
    /// The test.
    pub test: Test,
}

impl Condition {
    /// True when the record passes the test: its attribute `attribute` when that is set (a
    /// missing attribute never matches), else as [`Condition::matches`] on its payload.
    pub fn matches_record(&self, rec: &RecordRef<'_>) -> bool {
        let Some(name) = &self.attribute else {
            return self.matches(rec.payload);
        };
        let Some(v) = rec.attribute(name) else {
            return false;
        };
        match &self.test {
            Test::Equals(s) => v == s,
            Test::OneOf(list) => list.iter().any(|s| v == s),
            Test::Prefix(p) => v.as_bytes().starts_with(p),
            Test::Exists => true,
        }
    }

    /// True when the record's payload passes the test. A missing field or a payload that is not
    /// JSON never matches (except that `Prefix`/`Equals` without a field look at raw bytes).
    pub fn matches(&self, payload: &[u8]) -> bool {
        match &self.field {
            None => match &self.test {
                Test::Equals(s) => payload == s.as_bytes(),
                Test::OneOf(list) => list.iter().any(|s| payload == s.as_bytes()),
                Test::Prefix(p) => payload.starts_with(p),
                Test::Exists => !payload.is_empty(),
            },
            Some(path) => {
                let Some(value) = lookup(payload, path) else {
                    return false;
                };
                match &self.test {
                    Test::Equals(s) => value.matches_literal(s),
                    Test::OneOf(list) => list.iter().any(|s| value.matches_literal(s)),
                    Test::Prefix(p) => value.key_bytes().is_some_and(|k| k.starts_with(p)),
                    Test::Exists => true,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(path: &str, test: Test) -> Condition {
        Condition {
            field: Some(JsonPath::parse(path).unwrap()),
            attribute: None,
            test,
        }
    }

    #[test]
    fn field_tests() {
        let rec = br#"{"site":"plant-3","t":80,"a":{"b":[1,"x"]},"n":null}"#;
        assert!(field("site", Test::Equals("plant-3".into())).matches(rec));
        assert!(!field("site", Test::Equals("plant-4".into())).matches(rec));
        assert!(field("t", Test::Equals("80".into())).matches(rec));
        assert!(field("a.b[1]", Test::OneOf(vec!["y".into(), "x".into()])).matches(rec));
        assert!(field("site", Test::Prefix(b"plant-".to_vec())).matches(rec));
        assert!(field("n", Test::Exists).matches(rec));
        assert!(!field("missing", Test::Exists).matches(rec));
        assert!(!field("site", Test::Exists).matches(b"not json"));
    }

    #[test]
    fn payload_tests() {
        let c = Condition {
            field: None,
            attribute: None,
            test: Test::Prefix(b"ERROR".to_vec()),
        };
        assert!(c.matches(b"ERROR disk full"));
        assert!(!c.matches(b"INFO ok"));
    }

    #[test]
    fn attribute_conditions() {
        use crate::core::record::{Origin, PositionBase, RecordMeta};
        let origin = Origin {
            source: std::sync::Arc::from("s"),
            arrival_unix_nanos: 0,
            arrival: std::time::Instant::now(),
            position: PositionBase::None,
        };
        let meta = RecordMeta {
            partition_key: None,
            explicit_hash_key: None,
            attributes: vec![("stream".into(), "events".into())].into(),
        };
        let rec = RecordRef {
            payload: b"{}",
            meta: Some(&meta),
            origin: &origin,
        };
        let on = |test: Test| Condition {
            field: None,
            attribute: Some("stream".into()),
            test,
        };
        assert!(on(Test::Equals("events".into())).matches_record(&rec));
        assert!(!on(Test::Equals("logs".into())).matches_record(&rec));
        assert!(on(Test::OneOf(vec!["logs".into(), "events".into()])).matches_record(&rec));
        assert!(on(Test::Prefix(b"ev".to_vec())).matches_record(&rec));
        assert!(on(Test::Exists).matches_record(&rec));
        let bare = RecordRef { meta: None, ..rec };
        assert!(!on(Test::Exists).matches_record(&bare));
        // Without `attribute`, the payload is tested as before.
        let payload = Condition {
            field: None,
            attribute: None,
            test: Test::Equals("{}".into()),
        };
        assert!(payload.matches_record(&rec));
    }
}
