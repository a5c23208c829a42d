//! Writing one flat JSON object straight into the output buffer: keys, escaped strings,
//! integers and nulls. No serde on the hot path.

/// A JSON object being written to `out`: `{` on creation, `}` on [`Object::end`].
pub(crate) struct Object<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> Object<'o> {
    /// Starts an object at the end of `out`.
    pub(crate) fn begin(out: &'o mut Vec<u8>) -> Object<'o> {
        out.push(b'{');
        Object { out, empty: true }
    }

    /// Writes `"key":`. `key` must need no escaping (the crate's fixed field names do not).
    fn key(&mut self, key: &str) {
        debug_assert!(key.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\'));
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// Writes a member whose `"key":` was escaped beforehand (see [`member_prefix`]).
    pub(crate) fn raw_key(&mut self, prefix: &[u8]) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.extend_from_slice(prefix);
    }

    /// The output, for writing a value after [`Object::raw_key`].
    pub(crate) fn out(&mut self) -> &mut Vec<u8> {
        self.out
    }

    /// `"key":"value"`, the value escaped (invalid UTF-8 becomes U+FFFD).
    pub(crate) fn string(&mut self, key: &str, value: &[u8]) {
        self.key(key);
        push_string(self.out, value);
    }

    /// `"key":"value"`, or `"key":null` for `None`.
    pub(crate) fn string_or_null(&mut self, key: &str, value: Option<&[u8]>) {
        match value {
            Some(v) => self.string(key, v),
            None => self.null(key),
        }
    }

    /// `"key":null`.
    pub(crate) fn null(&mut self, key: &str) {
        self.key(key);
        self.out.extend_from_slice(b"null");
    }

    /// `"key":123` when `value` is an integer (see [`parse_integer`]), else `"key":"value"`.
    pub(crate) fn integer_or_string(&mut self, key: &str, value: &[u8]) {
        self.key(key);
        match parse_integer(value) {
            Some(n) => push_i64(self.out, n),
            None => push_string(self.out, value),
        }
    }

    /// As [`Object::integer_or_string`], or `"key":null` for `None`.
    pub(crate) fn integer_string_or_null(&mut self, key: &str, value: Option<&[u8]>) {
        match value {
            Some(v) => self.integer_or_string(key, v),
            None => self.null(key),
        }
    }

    /// `"key":123`.
    pub(crate) fn integer(&mut self, key: &str, value: i64) {
        self.key(key);
        push_i64(self.out, value);
    }

    /// `"key":` followed by a string value the caller writes with `write` (which gets the
    /// buffer after the opening quote and must leave it before the closing one).
    pub(crate) fn string_with(&mut self, key: &str, write: impl FnOnce(&mut Vec<u8>)) {
        self.key(key);
        self.out.push(b'"');
        write(self.out);
        self.out.push(b'"');
    }

    /// Closes the object.
    pub(crate) fn end(self) {
        self.out.push(b'}');
    }
}

/// `"name":` with `name` escaped, for keys chosen by the config.
pub(crate) fn member_prefix(name: &str) -> Box<[u8]> {
    let mut prefix = Vec::with_capacity(name.len() + 3);
    push_string(&mut prefix, name.as_bytes());
    prefix.push(b':');
    prefix.into_boxed_slice()
}

/// Appends `bytes` as a JSON string, quotes included.
pub(crate) fn push_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    push_escaped(out, bytes);
    out.push(b'"');
}

/// Appends `bytes` as the inside of a JSON string: `"` and `\` backslash-escaped, control
/// characters (U+0000 to U+001F) as `\u00XX`, each maximal invalid UTF-8 sequence as one
/// U+FFFD (as `String::from_utf8_lossy` does), everything else as it is.
pub(crate) fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut start = 0;
        for (i, &b) in valid.iter().enumerate() {
            if b >= 0x20 && b != b'"' && b != b'\\' {
                continue;
            }
            out.extend_from_slice(&valid[start..i]);
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                _ => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]),
            }
            start = i + 1;
        }
        out.extend_from_slice(&valid[start..]);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

/// `text` as an integer when it is one: an optional sign and 1 to 18 ASCII digits (so it
/// always fits an `i64`). `007` is 7; `1.5`, `1e3`, ` 1` and the empty text are not integers.
pub(crate) fn parse_integer(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    Some(if negative { -n } else { n })
}

/// Appends `n` in decimal.
pub(crate) fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_u64(out, n.unsigned_abs());
}

/// Appends `n` in decimal.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        push_string(&mut out, bytes);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_quotes_backslashes_and_controls() {
        assert_eq!(escaped(b"plain"), r#""plain""#);
        assert_eq!(escaped(b""), r#""""#);
        assert_eq!(escaped(br#"a "q" \ b"#), r#""a \"q\" \\ b""#);
        assert_eq!(
            escaped(b"\x00\x01\t\n\r\x1f\x7f"),
            "\"\\u0000\\u0001\\u0009\\u000a\\u000d\\u001f\x7f\""
        );
        assert_eq!(escaped("é ☃ 𝄞 \u{2028}".as_bytes()), "\"é ☃ 𝄞 \u{2028}\"");
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        assert_eq!(escaped(b"a\xffb"), "\"a\u{fffd}b\"");
        assert_eq!(escaped(b"\xc3"), "\"\u{fffd}\"");
        // A truncated 3-byte sequence is one maximal subpart; then a lone continuation byte.
        assert_eq!(escaped(b"\xe2\x98 \x80"), "\"\u{fffd} \u{fffd}\"");
        assert_eq!(escaped(b"\"\xff\""), "\"\\\"\u{fffd}\\\"\"");
        for bytes in [&b"x\xf0\x9f\x98"[..], b"\xed\xa0\x80", b"\xc0\xaf\\"] {
            let json = escaped(bytes);
            let back: String = serde_json::from_str(&json).unwrap();
            assert_eq!(back, String::from_utf8_lossy(bytes), "{bytes:?}");
        }
    }

    #[test]
    fn every_byte_round_trips_through_serde_json() {
        let all: Vec<u8> = (0..=255u8).collect();
        let json = escaped(&all);
        let back: String = serde_json::from_str(&json).unwrap();
        assert_eq!(back, String::from_utf8_lossy(&all));
    }

    #[test]
    fn integers() {
        assert_eq!(parse_integer(b"0"), Some(0));
        assert_eq!(parse_integer(b"007"), Some(7));
        assert_eq!(parse_integer(b"-12"), Some(-12));
        assert_eq!(parse_integer(b"+12"), Some(12));
        assert_eq!(
            parse_integer(b"999999999999999999"),
            Some(999_999_999_999_999_999)
        );
        for no in [
            &b""[..],
            b"-",
            b"+",
            b"1.5",
            b"1e3",
            b" 1",
            b"1 ",
            b"0x1",
            b"1234567890123456789",
        ] {
            assert_eq!(parse_integer(no), None, "{no:?}");
        }
        let mut out = Vec::new();
        for n in [0, 5, -5, i64::MAX, i64::MIN] {
            out.clear();
            push_i64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn objects() {
        let mut out = Vec::new();
        let mut obj = Object::begin(&mut out);
        obj.string("a", b"x");
        obj.integer_or_string("n", b"42");
        obj.integer_or_string("s", b"4x");
        obj.string_or_null("z", None);
        obj.raw_key(&member_prefix("we\"ird"));
        push_string(obj.out(), b"v");
        obj.string_with("w", |o| o.extend_from_slice(b"in"));
        obj.integer("i", -1);
        obj.end();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":"x","n":42,"s":"4x","z":null,"we\"ird":"v","w":"in","i":-1}"#
        );
        let mut out = Vec::new();
        Object::begin(&mut out).end();
        assert_eq!(out, b"{}");
    }
}
