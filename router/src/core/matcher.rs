//! Record conditions used by the built-in filter and route stages: "field equals", "field is one
//! of", "field (or payload) starts with", "field exists". Fields are read with the scanning
//! lookup of [`crate::core::jsonpath`], never by parsing the whole record.

use crate::core::jsonpath::{JsonPath, lookup};

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

/// A test on a record: on a JSON field when `field` is set, else on the whole payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The field to test; `None` tests the raw payload.
    pub field: Option<JsonPath>,
    /// The test.
    pub test: Test,
}

impl Condition {
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
            test: Test::Prefix(b"ERROR".to_vec()),
        };
        assert!(c.matches(b"ERROR disk full"));
        assert!(!c.matches(b"INFO ok"));
    }
}
