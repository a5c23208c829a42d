//! A fast path for the JSON bodies producers actually send, with no I/O: the members of
//! [`Input`] in their plain form (strings without escapes, `null`, arrays of record objects),
//! read by scanning rather than by a general parser.
//!
//! It answers only when it is sure: any other form (an escape, an unknown or repeated member, a
//! number, a value of another type, anything malformed) gives `None`, and the caller reads the
//! body with the general parser ([`super::wire::Wire::parse`]), which then gives the same
//! answer or the error message it always gave. So this path can change how fast a body is read,
//! never what it means: every `Some` equals what the general parser returns (a property test
//! checks it on generated and mutated bodies).

use std::borrow::Cow;

use super::wire::{Blob, ENTRIES_KEPT, Entries, Entry, Input};

/// Nesting the scanner follows: the body's object, the `Records` array, an entry. Deeper values
/// are not part of the plain form.
struct Scan<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.body.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after white space, consumed if it is `want`.
    fn eat(&mut self, want: u8) -> bool {
        self.ws();
        if self.body.get(self.at) == Some(&want) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.body.get(self.at).copied()
    }

    /// A string without escapes or control characters; `None` for any other value.
    fn string(&mut self) -> Option<&'a str> {
        if !self.eat(b'"') {
            return None;
        }
        let rest = &self.body[self.at..];
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[end] != b'"' {
            return None;
        }
        let raw = &rest[..end];
        // A fold, not `any`: without an early exit the check is vectorized.
        if raw.iter().fold(false, |control, &b| control | (b < 0x20)) {
            return None;
        }
        let text = std::str::from_utf8(raw).ok()?;
        self.at += end + 1;
        Some(text)
    }

    /// `null` (`Some(None)`), a plain string (`Some(Some(_))`), or `None` for anything else.
    fn nullable_string(&mut self) -> Option<Option<&'a str>> {
        if self.peek()? == b'n' {
            let rest = &self.body[self.at..];
            if rest.starts_with(b"null") {
                self.at += 4;
                return Some(None);
            }
            return None;
        }
        self.string().map(Some)
    }

    /// `null` (`Some(false)`) or the opening of `open` (`Some(true)`).
    fn null_or(&mut self, open: u8) -> Option<bool> {
        match self.peek()? {
            b'n' if self.body[self.at..].starts_with(b"null") => {
                self.at += 4;
                Some(false)
            }
            b if b == open => {
                self.at += 1;
                Some(true)
            }
            _ => None,
        }
    }

    /// The members of an object whose `{` was read, each handed to `member` (which reads its
    /// value); `None` if the object is not plain or `member` refuses.
    fn members(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            let key = self.string()?;
            if !self.eat(b':') {
                return None;
            }
            member(self, key)?;
            if self.eat(b',') {
                continue;
            }
            return self.eat(b'}').then_some(());
        }
    }

    /// A record object (or `None` if it is not plain).
    fn entry(&mut self) -> Option<Entry<'a>> {
        if !self.eat(b'{') {
            return None;
        }
        self.entry_members()
    }

    /// The members of a record object whose `{` was read.
    fn entry_members(&mut self) -> Option<Entry<'a>> {
        let mut e = Entry::default();
        let mut seen = 0u8;
        self.members(|s, key| {
            let bit = match key {
                "Data" => 1,
                "PartitionKey" => 2,
                "ExplicitHashKey" => 4,
                _ => return None,
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            let v = s.nullable_string()?;
            match bit {
                1 => e.data = v.map(|t| Blob::Base64(Cow::Borrowed(t))),
                2 => e.partition_key = v.map(Cow::Borrowed),
                _ => e.explicit_hash_key = v.map(Cow::Borrowed),
            }
            Some(())
        })?;
        Some(e)
    }

    /// A `Records` array whose `[` was read.
    fn entries(&mut self) -> Option<Entries<'a>> {
        let mut out = Entries::default();
        if self.eat(b']') {
            return Some(out);
        }
        loop {
            let e = self.entry()?;
            if out.list.len() < ENTRIES_KEPT {
                out.list.push(e);
            }
            out.total += 1;
            if self.eat(b',') {
                continue;
            }
            return self.eat(b']').then_some(out);
        }
    }
}

/// Reads a JSON body in the plain form, or `None` when the general parser must read it.
pub fn parse_plain(body: &[u8]) -> Option<Input<'_>> {
    let mut s = Scan { body, at: 0 };
    if !s.eat(b'{') {
        return None;
    }
    let mut input = Input::default();
    let mut seen = 0u16;
    s.members(|s, key| {
        let bit = match key {
            "StreamName" => 1,
            "StreamARN" => 2,
            "DeliveryStreamName" => 4,
            "PartitionKey" => 8,
            "ExplicitHashKey" => 16,
            "Data" => 32,
            "Records" => 64,
            "Record" => 128,
            _ => return None,
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        match bit {
            64 => {
                input.records = if s.null_or(b'[')? {
                    Some(s.entries()?)
                } else {
                    None
                };
            }
            128 => {
                input.record = if s.null_or(b'{')? {
                    Some(s.entry_members()?)
                } else {
                    None
                };
            }
            _ => {
                let v = s.nullable_string()?.map(Cow::Borrowed);
                match bit {
                    1 => input.stream_name = v,
                    2 => input.stream_arn = v,
                    4 => input.delivery_stream_name = v,
                    8 => input.partition_key = v,
                    16 => input.explicit_hash_key = v,
                    _ => input.data = v.map(Blob::Base64),
                }
            }
        }
        Some(())
    })?;
    s.ws();
    (s.at == body.len()).then_some(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::http::aws_api::wire::Wire;
    use proptest::prelude::*;

    fn general(body: &str) -> Option<Input<'_>> {
        serde_json::from_slice::<Input<'_>>(body.as_bytes()).ok()
    }

    #[test]
    fn plain_bodies_read_as_the_general_parser_reads_them() {
        for body in [
            r#"{}"#,
            r#" { "StreamName" : "s" , "Records" : [ ] } "#,
            r#"{"StreamName":"s","Records":[{"Data":"aGk=","PartitionKey":"k"},{"Data":"","PartitionKey":"é","ExplicitHashKey":"7"}]}"#,
            r#"{"Records":null,"StreamARN":"arn:aws:kinesis:us-east-1:1:stream/s"}"#,
            r#"{"DeliveryStreamName":"d","Record":{"Data":"eA=="}}"#,
            r#"{"DeliveryStreamName":"d","Record":null}"#,
            r#"{"StreamName":"s","Data":"eA==","PartitionKey":"k","ExplicitHashKey":null}"#,
            r#"{"Records":[{}]}"#,
        ] {
            let fast = parse_plain(body.as_bytes()).unwrap_or_else(|| panic!("not plain: {body}"));
            assert_eq!(Some(fast), general(body), "{body}");
        }
    }

    #[test]
    fn anything_else_is_left_to_the_general_parser() {
        for body in [
            r#"{"StreamName":"a\"b"}"#,
            r#"{"StreamName":"s","Limit":3}"#,
            r#"{"StreamName":"s","StreamName":"t"}"#,
            r#"{"Records":[{"Data":"eA==","Extra":1}]}"#,
            r#"{"Records":[null]}"#,
            r#"{"Records":{}}"#,
            r#"{"StreamName":"s"} x"#,
            r#"{"StreamName":"s",}"#,
            r#"{"StreamName":nul}"#,
            "{\"StreamName\":\"a\tb\"}",
            r#"["StreamName"]"#,
            r#"{"Records":[{"Data":"eA=="}"#,
            "",
        ] {
            assert_eq!(parse_plain(body.as_bytes()), None, "{body}");
        }
        // Not valid UTF-8 inside a string.
        assert_eq!(parse_plain(b"{\"StreamName\":\"\xff\"}"), None);
    }

    #[test]
    fn only_the_first_entries_are_kept_and_all_are_counted() {
        let one = r#"{"Data":"eA==","PartitionKey":"k"}"#;
        let body = format!(
            r#"{{"Records":[{}]}}"#,
            vec![one; ENTRIES_KEPT + 7].join(",")
        );
        let fast = parse_plain(body.as_bytes()).expect("plain");
        let records = fast.records.as_ref().expect("records");
        assert_eq!(
            (records.list.len(), records.total),
            (ENTRIES_KEPT, ENTRIES_KEPT + 7)
        );
        assert_eq!(Some(fast), general(&body));
        assert_eq!(Wire::Json.parse(body.as_bytes()).ok(), general(&body));
    }

    /// A JSON value of the kinds bodies hold, plain or not.
    fn value() -> impl Strategy<Value = String> {
        let string = prop_oneof![
            "[a-zA-Z0-9+/=]{0,12}",
            "[a-z\u{e9}\u{1F600}]{0,4}",
            Just("a\\\"b".to_owned()),
            Just("\\u0041".to_owned()),
        ]
        .prop_map(|s| format!("\"{s}\""));
        let scalar = prop_oneof![
            4 => string,
            1 => Just("null".to_owned()),
            1 => Just("12".to_owned()),
            1 => Just("true".to_owned()),
        ];
        scalar.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::vec((member_name(), inner), 0..4).prop_map(|m| {
                    let m: Vec<String> =
                        m.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", m.join(","))
                }),
            ]
        })
    }

    fn member_name() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("StreamName"),
            Just("StreamARN"),
            Just("DeliveryStreamName"),
            Just("PartitionKey"),
            Just("ExplicitHashKey"),
            Just("Data"),
            Just("Records"),
            Just("Record"),
            Just("Limit"),
            Just("Other"),
        ]
    }

    /// A record object, mostly plain.
    fn entry() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            (
                prop_oneof![Just("Data"), Just("PartitionKey"), Just("ExplicitHashKey"), Just("X")],
                prop_oneof![4 => "[a-zA-Z0-9+/=]{0,8}".prop_map(|s| format!("\"{s}\"")), 1 => value()],
            ),
            0..4,
        )
        .prop_map(|m| {
            let m: Vec<String> = m.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", m.join(","))
        })
    }

    /// A body: an object of members, with `Records` arrays of entries likely, and white space.
    fn body() -> impl Strategy<Value = String> {
        let member = prop_oneof![
            3 => proptest::collection::vec(entry(), 0..5)
                .prop_map(|v| format!("\"Records\":[{}]", v.join(" , "))),
            1 => entry().prop_map(|e| format!("\"Record\":{e}")),
            4 => (member_name(), value()).prop_map(|(k, v)| format!("\"{k}\" : {v}")),
        ];
        (proptest::collection::vec(member, 0..5), "[ \t\n]{0,2}")
            .prop_map(|(m, ws)| format!("{ws}{{{}}}{ws}", m.join(",")))
    }

    proptest! {
        #[test]
        fn a_plain_answer_is_always_the_general_parsers_answer(b in body()) {
            if let Some(fast) = parse_plain(b.as_bytes()) {
                prop_assert_eq!(Some(fast), general(&b), "{}", b);
            }
        }

        #[test]
        fn so_is_it_for_mutated_bodies(b in body(), at in any::<prop::sample::Index>(), byte in prop_oneof![Just(b'"'), Just(b','), Just(b'}'), Just(b']'), Just(b'\\'), Just(b' '), Just(0u8), any::<u8>()], cut in any::<bool>()) {
            let mut bytes = b.into_bytes();
            if bytes.is_empty() {
                return Ok(());
            }
            let i = at.index(bytes.len());
            if cut {
                bytes.truncate(i);
            } else {
                bytes[i] = byte;
            }
            if let Some(fast) = parse_plain(&bytes) {
                let general = serde_json::from_slice::<Input<'_>>(&bytes).ok();
                prop_assert_eq!(Some(fast), general, "{}", String::from_utf8_lossy(&bytes));
            }
        }
    }
}
