//! Reading one field out of a JSON record payload without parsing the whole document.
//!
//! This module owns the field path syntax ([`JsonPath`]) used by routing, filter and partition-key
//! settings, and the byte scanner ([`lookup`]) that walks a payload only as far as the requested
//! value. Everything else is skipped cheaply and without recursion: string bodies and numbers 16
//! bytes at a time from masks of quotes, backslashes and digits (WebAssembly SIMD in plugins built
//! with `simd128`, a loop the compiler vectorizes natively), long strings with `memchr`, nested
//! objects and arrays eight bytes at a time with a bracket stack. The hot helpers are inlined into
//! [`lookup`]: in a WebAssembly plugin, a call and a result returned through memory cost more than
//! the scanning they wrap.
//! Found values borrow from the payload ([`JsonValue`], [`RawStr`]); string contents are unescaped
//! only on demand and never copied when they hold no escapes, so a lookup allocates nothing.
//!
//! Scanning rules:
//! - Keys are compared after unescaping, so the path key `a` matches `"\u0061"`.
//! - Duplicate keys: the first occurrence wins.
//! - Only the bytes up to the found value are read. Values skipped on the way are checked for
//!   terminated strings and balanced brackets (and numbers and literals for their grammar), not
//!   validated in full. A number or literal must be followed by a delimiter byte so that a
//!   truncated token is never taken for a complete one.
//! - A skipped value nested deeper than 128 levels makes the lookup fail (`None`); the scanner
//!   never recurses, so no document can overflow the stack.
//!
//! ```text
//! path     := first ( '.' bare | bracket )*
//! first    := bare | bracket
//! bare     := one or more characters other than '.', '[' and ']'
//! bracket  := '[' digits ']' | '[' quoted ']'
//! quoted   := '"' ... '"' | '\'' ... '\''   (with \\ and \" or \' as the only escapes)
//! ```

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// Deepest nesting of a skipped object or array that [`lookup`] accepts.
const DEPTH_MAX: u32 = 128;

/// A parsed path such as `device_id`, `a.b[0].c`, `tags[2]`, `["odd.key"].x` (bracketed quoted key
/// for keys with dots/brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    /// Never empty.
    segments: Vec<Segment>,
}

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A member of an object, by its (unescaped, non-empty) key.
    Key(String),
    /// An element of an array, counted from 0.
    Index(usize),
}

/// Why a path did not parse: the byte offset in the path text and what was wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPathError {
    /// Byte offset into the path text.
    pub offset: usize,
    /// What was wrong, e.g. `empty key`.
    pub message: String,
}

impl JsonPathError {
    fn new(offset: usize, message: impl Into<String>) -> Self {
        Self {
            offset,
            message: message.into(),
        }
    }
}

impl fmt::Display for JsonPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for JsonPathError {}

impl JsonPath {
    /// Parses a path: dot-separated keys, `[n]` array indices and `["key"]` quoted keys.
    pub fn parse(s: &str) -> Result<JsonPath, JsonPathError> {
        let bytes = s.as_bytes();
        if bytes.is_empty() {
            return Err(JsonPathError::new(0, "empty path"));
        }
        let mut segments = Vec::new();
        let mut i = if bytes.first() == Some(&b'[') {
            parse_bracket(s, 0, &mut segments)?
        } else {
            parse_bare(s, 0, &mut segments)?
        };
        loop {
            match bytes.get(i) {
                None => return Ok(JsonPath { segments }),
                Some(b'.') => i = parse_bare(s, i + 1, &mut segments)?,
                Some(b'[') => i = parse_bracket(s, i, &mut segments)?,
                Some(_) => return Err(JsonPathError::new(i, "expected '.' or '[' after ']'")),
            }
        }
    }

    /// The steps of this path, in order; never empty.
    #[must_use]
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

/// Parses a bare key starting at `start`; returns the offset just past it.
fn parse_bare(s: &str, start: usize, out: &mut Vec<Segment>) -> Result<usize, JsonPathError> {
    let rest = s.as_bytes().get(start..).unwrap_or_default();
    let len = rest
        .iter()
        .position(|&b| matches!(b, b'.' | b'[' | b']'))
        .unwrap_or(rest.len());
    if rest.get(len) == Some(&b']') {
        return Err(JsonPathError::new(start + len, "unexpected ']'"));
    }
    if len == 0 {
        return Err(JsonPathError::new(start, "empty key"));
    }
    // `start` and `start + len` sit next to ASCII bytes (or the ends), so they are char
    // boundaries.
    let key = s
        .get(start..start + len)
        .ok_or_else(|| JsonPathError::new(start, "key is not valid UTF-8"))?;
    out.push(Segment::Key(key.to_owned()));
    Ok(start + len)
}

/// Parses `[digits]` or `["quoted"]` with `open` at the `[`; returns the offset just past `]`.
fn parse_bracket(s: &str, open: usize, out: &mut Vec<Segment>) -> Result<usize, JsonPathError> {
    let bytes = s.as_bytes();
    let first = open + 1;
    match bytes.get(first) {
        None => Err(JsonPathError::new(open, "unclosed bracket")),
        Some(&quote @ (b'"' | b'\'')) => {
            let mut key = String::new();
            let mut i = first + 1;
            let mut run_start = i;
            loop {
                match bytes.get(i) {
                    None => return Err(JsonPathError::new(first, "unclosed quoted key")),
                    Some(b'\\') => {
                        key.push_str(s.get(run_start..i).unwrap_or_default());
                        match bytes.get(i + 1) {
                            Some(&e) if e == b'\\' || e == quote => key.push(char::from(e)),
                            _ => {
                                return Err(JsonPathError::new(
                                    i,
                                    "invalid escape: only a backslash or the quote can be escaped",
                                ));
                            }
                        }
                        i += 2;
                        run_start = i;
                    }
                    Some(&b) if b == quote => {
                        key.push_str(s.get(run_start..i).unwrap_or_default());
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
            match bytes.get(i) {
                None => return Err(JsonPathError::new(open, "unclosed bracket")),
                Some(b']') => {}
                Some(_) => {
                    return Err(JsonPathError::new(i, "expected ']' after quoted key"));
                }
            }
            if key.is_empty() {
                return Err(JsonPathError::new(first, "empty key"));
            }
            out.push(Segment::Key(key));
            Ok(i + 1)
        }
        Some(_) => {
            let rest = bytes.get(first..).unwrap_or_default();
            let Some(len) = rest.iter().position(|&b| b == b']') else {
                return Err(JsonPathError::new(open, "unclosed bracket"));
            };
            let digits = rest.get(..len).unwrap_or_default();
            if digits.is_empty() {
                return Err(JsonPathError::new(first, "empty index"));
            }
            if !digits.iter().all(u8::is_ascii_digit) {
                return Err(JsonPathError::new(
                    first,
                    "bad index: expected digits or a quoted key",
                ));
            }
            let index = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse::<usize>().ok())
                .ok_or_else(|| JsonPathError::new(first, "bad index: too large"))?;
            out.push(Segment::Index(index));
            Ok(first + len + 1)
        }
    }
}

/// True when `key` can be written without brackets and quotes (and reads well that way).
fn is_bare_key(key: &str) -> bool {
    !key.is_empty()
        && !key.chars().any(|c| {
            matches!(c, '.' | '[' | ']' | '"' | '\'' | '\\') || c.is_whitespace() || c.is_control()
        })
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Index(i) => write!(f, "[{i}]")?,
                Segment::Key(k) if is_bare_key(k) => {
                    if n > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Segment::Key(k) => {
                    f.write_str("[\"")?;
                    for c in k.chars() {
                        if c == '"' || c == '\\' {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                    f.write_str("\"]")?;
                }
            }
        }
        Ok(())
    }
}

impl FromStr for JsonPath {
    type Err = JsonPathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JsonPath::parse(s)
    }
}

/// The body of a JSON string between its quotes, still escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawStr<'a>(pub &'a [u8]);

impl<'a> RawStr<'a> {
    /// The escaped bytes between the quotes.
    #[must_use]
    pub fn raw(&self) -> &'a [u8] {
        self.0
    }

    /// True when the body holds at least one backslash escape.
    #[must_use]
    pub fn has_escapes(&self) -> bool {
        memchr::memchr(b'\\', self.0).is_some()
    }

    /// The string's value: borrowed when it has no escapes. `None` for an invalid escape (including
    /// an unpaired `\u` surrogate) or invalid UTF-8.
    #[must_use]
    pub fn unescape(&self) -> Option<Cow<'a, str>> {
        match unescape_bytes(self.0)? {
            Cow::Borrowed(b) => std::str::from_utf8(b).ok().map(Cow::Borrowed),
            Cow::Owned(v) => String::from_utf8(v).ok().map(Cow::Owned),
        }
    }

    /// True when the unescaped value equals `s`; allocates nothing. False for an invalid escape.
    #[must_use]
    pub fn eq_str(&self, s: &str) -> bool {
        unescaped_eq(self.0, s.as_bytes()).unwrap_or(false)
    }
}

/// A value found in a document, borrowing from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonValue<'a> {
    /// A string, still escaped.
    String(RawStr<'a>),
    /// A number's text as written, e.g. `-0.5e+3`.
    Number(&'a [u8]),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// An object's JSON text, from `{` to `}`.
    Object(&'a [u8]),
    /// An array's JSON text, from `[` to `]`.
    Array(&'a [u8]),
}

impl<'a> JsonValue<'a> {
    /// The value's JSON text (for String: the body without quotes).
    #[must_use]
    pub fn raw(&self) -> &'a [u8] {
        match *self {
            JsonValue::String(s) => s.0,
            JsonValue::Number(b) | JsonValue::Object(b) | JsonValue::Array(b) => b,
            JsonValue::Bool(true) => b"true",
            JsonValue::Bool(false) => b"false",
            JsonValue::Null => b"null",
        }
    }

    /// Bytes to use as a key or to compare with a configured value: unescaped string content,
    /// number text as written, `true`/`false`/`null`, objects/arrays as their raw JSON text.
    /// `None` only for a string with a bad escape.
    #[must_use]
    pub fn key_bytes(&self) -> Option<Cow<'a, [u8]>> {
        match *self {
            JsonValue::String(s) => unescape_bytes(s.0),
            _ => Some(Cow::Borrowed(self.raw())),
        }
    }

    /// True when this value equals the configured literal `s`: a string equal after unescape, or
    /// a number/bool/null whose text equals `s` (so `equals = "80"` matches both `80` and `"80"`;
    /// numbers compare textually but also numerically when both parse as f64, so 80 == 80.0).
    /// Objects and arrays match nothing.
    #[must_use]
    pub fn matches_literal(&self, s: &str) -> bool {
        match *self {
            JsonValue::String(raw) => raw.eq_str(s),
            JsonValue::Number(text) => {
                text == s.as_bytes()
                    || (number_end(s.as_bytes(), 0) == Some(s.len())
                        && matches!(
                            (parse_f64(text), parse_f64(s.as_bytes())),
                            (Some(a), Some(b)) if a == b
                        ))
            }
            JsonValue::Bool(_) | JsonValue::Null => self.raw() == s.as_bytes(),
            JsonValue::Object(_) | JsonValue::Array(_) => false,
        }
    }

    /// The number's value; `None` for every other kind (a string holding digits included) and
    /// for numbers too large for a finite f64.
    #[must_use]
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            JsonValue::Number(text) => parse_f64(text),
            _ => None,
        }
    }
}

/// Parses JSON number text (already checked against the grammar) to a finite f64.
///
/// Short numbers (nearly all) take [`parse_f64_exact`], which allocates nothing and is exact;
/// the rest go to the standard library's parser.
#[inline]
fn parse_f64(text: &[u8]) -> Option<f64> {
    if let Some(v) = parse_f64_exact(text) {
        return Some(v);
    }
    parse_f64_std(text)
}

#[inline(never)]
fn parse_f64_std(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
}

/// Powers of ten that an f64 holds exactly.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The value of JSON number text with at most 15 significant digits and a decimal exponent
/// (after moving the point) within 22 either way; `None` for anything else, which the caller
/// parses the long way. Exact (correctly rounded): the digits make an integer below 2^53 and
/// the power of ten is exact, so the one multiplication or division rounds once, as the
/// standard library's parser does (Clinger's fast path).
#[inline(always)]
fn parse_f64_exact(text: &[u8]) -> Option<f64> {
    let (negative, body) = match text.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, text),
    };
    let mut mantissa = 0u64;
    let mut digits = 0u32;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        if !b.is_ascii_digit() {
            break;
        }
        mantissa = mantissa * 10 + u64::from(b - b'0');
        digits += 1;
        i += 1;
        if digits > 15 {
            return None;
        }
    }
    if i == 0 {
        return None;
    }
    let mut exponent = 0i32;
    if body.get(i) == Some(&b'.') {
        i += 1;
        let first = i;
        while let Some(&b) = body.get(i) {
            if !b.is_ascii_digit() {
                break;
            }
            mantissa = mantissa * 10 + u64::from(b - b'0');
            digits += 1;
            exponent -= 1;
            i += 1;
            if digits > 15 {
                return None;
            }
        }
        if i == first {
            return None;
        }
    }
    if let Some(b'e' | b'E') = body.get(i) {
        i += 1;
        let sign = match body.get(i) {
            Some(b'-') => {
                i += 1;
                -1
            }
            Some(b'+') => {
                i += 1;
                1
            }
            _ => 1,
        };
        let first = i;
        let mut e = 0i32;
        while let Some(&b) = body.get(i) {
            if !b.is_ascii_digit() || i - first >= 3 {
                break;
            }
            e = e * 10 + i32::from(b - b'0');
            i += 1;
        }
        if i == first {
            return None;
        }
        exponent += sign * e;
    }
    if i != body.len() {
        // More exponent digits than three, or not a number at all.
        return None;
    }
    let m = mantissa as f64;
    let value = if exponent >= 0 {
        m * *EXACT_POWERS_OF_TEN.get(exponent as usize)?
    } else {
        m / *EXACT_POWERS_OF_TEN.get(exponent.unsigned_abs() as usize)?
    };
    Some(if negative { -value } else { value })
}

/// Finds the value at `path` in `doc`; None when the path is absent, a segment does not fit
/// (index into an object, key into an array), or the document is malformed before the value is
/// reached. Leading whitespace and a UTF-8 BOM are allowed. Only the bytes up to the end of the
/// found value need to be valid: it does not validate the rest of the document. The first of
/// duplicate keys wins.
#[must_use]
#[inline]
pub fn lookup<'a>(doc: &'a [u8], path: &JsonPath) -> Option<JsonValue<'a>> {
    let start = if doc.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let mut pos = skip_ws(doc, start);
    for segment in &path.segments {
        pos = match segment {
            Segment::Key(key) => member_start(doc, pos, key.as_bytes())?,
            Segment::Index(index) => element_start(doc, pos, *index)?,
        };
    }
    value_at(doc, pos).map(|(value, _)| value)
}

/// Looks up several paths in one pass: calls `found(k, value)` for each `k` where
/// `lookup(doc, &paths[k])` is `Some(value)`, with that same value, once (in no promised order);
/// paths with no value get no call.
///
/// The members of the top-level object are scanned once for all the paths (each path's first
/// key compared with each member's name until the path is found), and the scan stops when
/// every path is found: a stage that reads several fields of a record pays for one walk over
/// it, not one per field. Paths that start with an index, and paths past the 64th, are looked
/// up alone.
pub fn lookup_each<'a>(
    doc: &'a [u8],
    paths: &[JsonPath],
    mut found: impl FnMut(usize, JsonValue<'a>),
) {
    // Bit k: path k is looked for in the scan below and not yet decided.
    let mut pending = 0u64;
    for (k, p) in paths.iter().enumerate() {
        if k < 64 && matches!(p.segments.first(), Some(Segment::Key(_))) {
            pending |= 1 << k;
        } else if let Some(v) = lookup(doc, p) {
            found(k, v);
        }
    }
    if pending == 0 {
        return;
    }
    let start = if doc.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let pos = skip_ws(doc, start);
    // As `member_start`, for every pending path at once.
    if doc.get(pos) != Some(&b'{') {
        return;
    }
    let mut i = skip_ws(doc, pos + 1);
    if doc.get(i) == Some(&b'}') {
        return;
    }
    loop {
        if doc.get(i) != Some(&b'"') {
            return;
        }
        let Some((close, escaped)) = string_close(doc, i + 1) else {
            return;
        };
        let Some(raw) = doc.get(i + 1..close) else {
            return;
        };
        i = skip_ws(doc, close + 1);
        if doc.get(i) != Some(&b':') {
            return;
        }
        i = skip_ws(doc, i + 1);
        // The end of this member's value, when reading it for a path already found it.
        let mut end = None;
        let mut bits = pending;
        while bits != 0 {
            let k = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let Some((Segment::Key(key), rest)) =
                paths.get(k).and_then(|p| p.segments.split_first())
            else {
                continue;
            };
            let matched = if escaped {
                unescaped_eq(raw, key.as_bytes())
            } else {
                Some(bytes_eq(raw, key.as_bytes()))
            };
            match matched {
                // A bad escape fails the lookup of this path (as in `member_start`).
                None => pending &= !(1 << k),
                Some(false) => {}
                Some(true) => {
                    pending &= !(1 << k);
                    if rest.is_empty() {
                        if let Some((value, past)) = value_at(doc, i) {
                            end = Some(past);
                            found(k, value);
                        }
                    } else if let Some(value) = lookup_from(doc, i, rest) {
                        found(k, value);
                    }
                }
            }
        }
        if pending == 0 {
            return;
        }
        let Some(past) = end.or_else(|| value_end(doc, i)) else {
            return;
        };
        i = skip_ws(doc, past);
        match doc.get(i) {
            Some(b',') => i = skip_ws(doc, i + 1),
            _ => return,
        }
    }
}

/// The value at `segments` from the value starting at `pos` (the rest of [`lookup`]).
fn lookup_from<'a>(doc: &'a [u8], mut pos: usize, segments: &[Segment]) -> Option<JsonValue<'a>> {
    for segment in segments {
        pos = match segment {
            Segment::Key(key) => member_start(doc, pos, key.as_bytes())?,
            Segment::Index(index) => element_start(doc, pos, *index)?,
        };
    }
    value_at(doc, pos).map(|(value, _)| value)
}

/// Returns the first offset at or after `i` that is not JSON whitespace.
#[inline(always)]
fn skip_ws(doc: &[u8], i: usize) -> usize {
    // Most documents have no whitespace between tokens: one test, no loop.
    match doc.get(i) {
        Some(b' ' | b'\t' | b'\n' | b'\r') => skip_ws_run(doc, i + 1),
        _ => i,
    }
}

#[inline(never)]
fn skip_ws_run(doc: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = doc.get(i) {
        i += 1;
    }
    i
}

/// With `pos` at an object, returns the start of the value of the first member named `key`.
#[inline(always)]
fn member_start(doc: &[u8], pos: usize, key: &[u8]) -> Option<usize> {
    if doc.get(pos) != Some(&b'{') {
        return None;
    }
    let mut i = skip_ws(doc, pos + 1);
    if doc.get(i) == Some(&b'}') {
        return None;
    }
    loop {
        if doc.get(i) != Some(&b'"') {
            return None;
        }
        let (close, escaped) = string_close(doc, i + 1)?;
        let raw = doc.get(i + 1..close)?;
        i = skip_ws(doc, close + 1);
        if doc.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(doc, i + 1);
        let found = if escaped {
            unescaped_eq(raw, key)?
        } else {
            bytes_eq(raw, key)
        };
        if found {
            return Some(i);
        }
        i = skip_ws(doc, value_end(doc, i)?);
        match doc.get(i)? {
            b',' => i = skip_ws(doc, i + 1),
            _ => return None,
        }
    }
}

/// `a == b`, a word at a time: short keys are compared often, and a call to `memcmp` costs more
/// than the comparison (in WebAssembly it is a byte loop).
#[inline(always)]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], k: usize| {
        s.get(k..k + 8)
            .and_then(|w| w.first_chunk::<8>())
            .map(|w| u64::from_le_bytes(*w))
    };
    if n >= 8 {
        // Whole words, then the last eight bytes (overlapping the previous word).
        let mut k = 0;
        while k + 8 < n {
            if word(a, k) != word(b, k) {
                return false;
            }
            k += 8;
        }
        word(a, n - 8) == word(b, n - 8)
    } else if n >= 4 {
        // The first and the last four bytes (overlapping).
        let half = |s: &[u8], k: usize| {
            s.get(k..k + 4)
                .and_then(|w| w.first_chunk::<4>())
                .map(|w| u32::from_le_bytes(*w))
        };
        half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4)
    } else {
        a.iter().zip(b).all(|(x, y)| x == y)
    }
}

/// With `pos` at an array, returns the start of element `index`.
fn element_start(doc: &[u8], pos: usize, index: usize) -> Option<usize> {
    if doc.get(pos) != Some(&b'[') {
        return None;
    }
    let mut i = skip_ws(doc, pos + 1);
    if doc.get(i) == Some(&b']') {
        return None;
    }
    let mut n = 0;
    loop {
        if n == index {
            return Some(i);
        }
        i = skip_ws(doc, value_end(doc, i)?);
        match doc.get(i)? {
            b',' => i = skip_ws(doc, i + 1),
            _ => return None,
        }
        n += 1;
    }
}

/// Returns the offset just past the value starting at `i`.
#[inline(always)]
fn value_end(doc: &[u8], i: usize) -> Option<usize> {
    match doc.get(i)? {
        b'"' => string_close(doc, i + 1).map(|(close, _)| close + 1),
        b'{' | b'[' => container_end(doc, i),
        _ => scalar_at(doc, i).map(|(_, end)| end),
    }
}

/// Reads the value starting at `i`; returns it and the offset just past it.
#[inline(always)]
fn value_at(doc: &[u8], i: usize) -> Option<(JsonValue<'_>, usize)> {
    match doc.get(i)? {
        b'"' => {
            let (close, _) = string_close(doc, i + 1)?;
            Some((JsonValue::String(RawStr(doc.get(i + 1..close)?)), close + 1))
        }
        b'{' => {
            let end = container_end(doc, i)?;
            Some((JsonValue::Object(doc.get(i..end)?), end))
        }
        b'[' => {
            let end = container_end(doc, i)?;
            Some((JsonValue::Array(doc.get(i..end)?), end))
        }
        _ => scalar_at(doc, i),
    }
}

/// Reads a number, `true`, `false` or `null` at `i`, which must be followed by a delimiter.
#[inline(always)]
fn scalar_at(doc: &[u8], i: usize) -> Option<(JsonValue<'_>, usize)> {
    let first = *doc.get(i)?;
    // Tests rather than a `match`, which becomes a jump table; numbers first.
    let (value, end) = if first == b'-' || first.is_ascii_digit() {
        let end = number_end(doc, i)?;
        (JsonValue::Number(doc.get(i..end)?), end)
    } else if first == b't' {
        (JsonValue::Bool(true), literal_end(doc, i, b"true")?)
    } else if first == b'f' {
        (JsonValue::Bool(false), literal_end(doc, i, b"false")?)
    } else if first == b'n' {
        (JsonValue::Null, literal_end(doc, i, b"null")?)
    } else {
        return None;
    };
    is_delimiter(*doc.get(end)?).then_some((value, end))
}

/// True for the bytes that may follow a number or literal: whitespace, `,`, `}` and `]`.
#[inline(always)]
fn is_delimiter(b: u8) -> bool {
    const LOW: u64 = 1 << b' ' | 1 << b'\t' | 1 << b'\n' | 1 << b'\r' | 1 << b',';
    const HIGH: u64 = 1 << (b'}' - 64) | 1 << (b']' - 64);
    if b < 64 {
        LOW >> b & 1 != 0
    } else {
        b < 128 && HIGH >> (b - 64) & 1 != 0
    }
}

#[inline(always)]
fn literal_end(doc: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    doc.get(i..)?.starts_with(word).then_some(i + word.len())
}

/// Returns the end of the JSON number starting at `i`, checking its grammar.
///
/// Numbers that end within 16 bytes (nearly all) are read from one block's mask of digits, so a
/// run of digits costs one `trailing_zeros` instead of a loop; longer ones take
/// [`number_end_long`].
#[inline(always)]
fn number_end(doc: &[u8], i: usize) -> Option<usize> {
    // Lane BLOCK, just past the block, counts as a digit: a run that reaches it (or starts there)
    // might go on, and ends the fast path below.
    let digits = digit_mask(block_at(doc, i)) | 1 << BLOCK;
    // Length of the run of digits at lane `from` (<= BLOCK).
    let run = |from: usize| ((!digits) >> from).trailing_zeros() as usize;
    // Bytes are read from `doc`, not from the block, which would then live in memory.
    let byte = |k: usize| doc.get(i + k).copied();
    let mut j = usize::from(byte(0) == Some(b'-'));
    match byte(j)? {
        b'0' => j += 1,
        b'1'..=b'9' => j += run(j),
        _ => return None,
    }
    // Past this point a run may reach lane BLOCK, where the mask says nothing: read on from
    // `doc`, from the start.
    if j >= BLOCK {
        return number_end_long(doc, i);
    }
    if byte(j) == Some(b'.') {
        j += 1;
        if j >= BLOCK {
            return number_end_long(doc, i);
        }
        let r = run(j);
        if r == 0 {
            return None;
        }
        j += r;
        if j >= BLOCK {
            return number_end_long(doc, i);
        }
    }
    if let Some(b'e' | b'E') = byte(j) {
        j += 1;
        if let Some(b'+' | b'-') = byte(j) {
            j += 1;
        }
        if j >= BLOCK {
            return number_end_long(doc, i);
        }
        let r = run(j);
        if r == 0 {
            return None;
        }
        j += r;
        if j >= BLOCK {
            return number_end_long(doc, i);
        }
    }
    Some(i + j)
}

/// [`number_end`] a byte at a time, for numbers of any length.
#[inline(never)]
fn number_end_long(doc: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    if doc.get(j) == Some(&b'-') {
        j += 1;
    }
    match doc.get(j)? {
        b'0' => j += 1,
        b'1'..=b'9' => j = digits_end(doc, j + 1),
        _ => return None,
    }
    if doc.get(j) == Some(&b'.') {
        let k = digits_end(doc, j + 1);
        if k == j + 1 {
            return None;
        }
        j = k;
    }
    if let Some(b'e' | b'E') = doc.get(j) {
        j += 1;
        if let Some(b'+' | b'-') = doc.get(j) {
            j += 1;
        }
        let k = digits_end(doc, j);
        if k == j {
            return None;
        }
        j = k;
    }
    Some(j)
}

#[inline]
fn digits_end(doc: &[u8], mut i: usize) -> usize {
    while let Some(b'0'..=b'9') = doc.get(i) {
        i += 1;
    }
    i
}

/// With `start` just past an opening quote, returns the offset of the closing quote and whether
/// the body holds escapes.
///
/// Sixteen bytes at a time from masks of quotes and backslashes (a block costs about as much as
/// one byte would in a loop, and most keys and values fit in one); after [`LONG_STRING`] bytes
/// memchr takes over, whose set-up pays off on long strings.
#[inline(always)]
fn string_close(doc: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut i = start;
    let mut escaped = false;
    loop {
        if i >= doc.len() {
            return None;
        }
        let block = block_at(doc, i);
        let quotes = eq_mask(block, b'"');
        let mut stops = quotes | eq_mask(block, b'\\');
        loop {
            if stops == 0 {
                i += BLOCK;
                if i - start >= LONG_STRING {
                    return string_close_long(doc, i, escaped);
                }
                break;
            }
            let lane = stops.trailing_zeros();
            if quotes & (1 << lane) != 0 {
                return Some((i + lane as usize, escaped));
            }
            // A backslash: it and the byte it escapes are part of the body (`\uXXXX` digits are
            // never quotes or backslashes).
            escaped = true;
            let next = lane as usize + 2;
            if next >= BLOCK {
                i += next;
                break;
            }
            stops &= !0 << next;
        }
    }
}

/// Bytes of a string body read a block at a time before [`string_close`] hands over to memchr.
const LONG_STRING: usize = 4 * BLOCK;

/// [`string_close`] for the rest of a long string, from `i` (outside any escape).
#[inline(never)]
fn string_close_long(doc: &[u8], mut i: usize, mut escaped: bool) -> Option<(usize, bool)> {
    loop {
        i += memchr::memchr2(b'"', b'\\', doc.get(i..)?)?;
        if doc.get(i)? == &b'"' {
            return Some((i, escaped));
        }
        escaped = true;
        i += 2;
    }
}

/// Bytes in a block of [`block_at`].
const BLOCK: usize = 16;

/// The [`BLOCK`] bytes of `doc` at `i`, padded with spaces (neither quotes, backslashes, digits
/// nor brackets) past its end.
#[inline(always)]
fn block_at(doc: &[u8], i: usize) -> Block {
    let rest = doc.get(i..).unwrap_or_default();
    match rest.first_chunk::<BLOCK>() {
        Some(block) => to_block(block),
        None => padded_block(rest),
    }
}

/// The last bytes of a document as a block, padded with spaces; out of line so that the common
/// case stays one load.
#[inline(never)]
fn padded_block(rest: &[u8]) -> Block {
    let mut block = [b' '; BLOCK];
    if let Some(head) = block.get_mut(..rest.len()) {
        head.copy_from_slice(rest);
    }
    to_block(&block)
}

/// A block of bytes as the mask functions take it: the bytes themselves (the compiler turns the
/// mask loops into vector compares and movemasks, e.g. SSE2 on x86-64)...
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
type Block = [u8; BLOCK];

/// ...or, with WebAssembly SIMD, a vector: LLVM does not vectorize those loops for wasm32, and
/// keeping the block in a register spares a round trip through linear memory.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
type Block = core::arch::wasm32::v128;

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn to_block(bytes: &[u8; BLOCK]) -> Block {
    *bytes
}

/// From two 8-byte loads (built from 16 byte reads, LLVM sometimes keeps them as 16 lane loads).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn to_block(b: &[u8; BLOCK]) -> Block {
    let word = |w: Option<&[u8; 8]>| w.map_or(0, |w| u64::from_le_bytes(*w));
    core::arch::wasm32::u64x2(word(b.first_chunk()), word(b.last_chunk()))
}

/// Bit `k` set when byte `k` of the block is `b`. Two words at a time (LLVM vectorizes a loop
/// over the bytes poorly).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn eq_mask(block: Block, b: u8) -> u32 {
    let (lo, hi) = block_words(block);
    lane_bits(exact_zero_lanes(lo ^ splat(b))) | lane_bits(exact_zero_lanes(hi ^ splat(b))) << 8
}

/// Bit `k` set when byte `k` of the block is an ASCII digit.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn digit_mask(block: Block) -> u32 {
    let digits = |w: u64| {
        // High nibble 3, and low nibble at most 9 (adding 6 does not carry into bit 4).
        let high_is_3 = exact_zero_lanes((w & splat(0xF0)) ^ splat(0x30));
        let low_above_9 = (((w & splat(0x0F)) + splat(0x06)) << 3) & LANES_HI;
        lane_bits(high_is_3 & !low_above_9)
    };
    let (lo, hi) = block_words(block);
    digits(lo) | digits(hi) << 8
}

/// The block as two little-endian words.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn block_words(block: Block) -> (u64, u64) {
    let word = |w: Option<&[u8; 8]>| w.map_or(0, |w| u64::from_le_bytes(*w));
    (word(block.first_chunk()), word(block.last_chunk()))
}

/// Gathers the high bits of the eight lanes of `flags` (only high bits set) into bits 0..8.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
const fn lane_bits(flags: u64) -> u32 {
    // Lane k's bit lands on bit 56 + k; the partial products never overlap.
    ((flags >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
}

/// [`eq_mask`] with WebAssembly SIMD: `i8x16.eq` and `i8x16.bitmask`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn eq_mask(block: Block, b: u8) -> u32 {
    use core::arch::wasm32::{u8x16_bitmask, u8x16_eq, u8x16_splat};
    u32::from(u8x16_bitmask(u8x16_eq(block, u8x16_splat(b))))
}

/// [`digit_mask`] with WebAssembly SIMD.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn digit_mask(block: Block) -> u32 {
    use core::arch::wasm32::{u8x16_bitmask, u8x16_lt, u8x16_splat, u8x16_sub};
    let offset = u8x16_sub(block, u8x16_splat(b'0'));
    u32::from(u8x16_bitmask(u8x16_lt(offset, u8x16_splat(10))))
}

/// Eight copies of 0x01, for word-at-a-time byte search.
const LANES_LO: u64 = u64::from_le_bytes([0x01; 8]);
/// Eight copies of 0x80.
const LANES_HI: u64 = u64::from_le_bytes([0x80; 8]);

/// A word with `b` in every byte.
#[inline]
const fn splat(b: u8) -> u64 {
    LANES_LO * b as u64
}

/// Sets the high bit of exactly the zero bytes of `v`.
#[inline]
const fn exact_zero_lanes(v: u64) -> u64 {
    !(((v & !LANES_HI).wrapping_add(!LANES_HI)) | v) & LANES_HI
}

/// With `start` at `{` or `[`, returns the offset just past the matching close bracket. Fails on
/// a mismatched bracket, an unterminated string, a backslash outside a string, the end of input,
/// or nesting deeper than [`DEPTH_MAX`].
///
/// Iterative, eight bytes at a time: each word yields masks of quotes, backslashes and brackets.
/// In a word without backslashes the lanes inside strings come from a prefix XOR of the quote
/// mask, so quotes, whitespace and digits cost no branches; only brackets are taken one by one,
/// onto a bit stack of open brackets (1 = array) in a `u128`. A string still open at the end of
/// a word is finished with [`string_close`], so every word starts outside a string.
fn container_end(doc: &[u8], start: usize) -> Option<usize> {
    const TOP_LANE: u64 = 0x80 << 56;
    let mut open: u128 = 0;
    let mut depth: u32 = 0;
    let mut pos = start;
    loop {
        let rest = doc.get(pos..)?;
        let word = match rest.first_chunk::<8>() {
            Some(word) => *word,
            None if rest.is_empty() => return None,
            None => {
                // Past the end, pad with spaces: they are neither quotes nor brackets.
                let mut word = [b' '; 8];
                word.get_mut(..rest.len())?.copy_from_slice(rest);
                word
            }
        };
        let w = u64::from_le_bytes(word);
        let quotes = exact_zero_lanes(w ^ splat(b'"'));
        let escapes = exact_zero_lanes(w ^ splat(b'\\'));
        // `b | 0x20` maps `[` to `{` and `]` to `}`, and no other byte to either.
        let folded = w | splat(0x20);
        let opens = exact_zero_lanes(folded ^ splat(b'{'));
        let closes = exact_zero_lanes(folded ^ splat(b'}'));

        // Lanes inside strings, whether a string is open at the end of the word, and where the
        // scan resumes.
        let (inside, string_open, resume) = if escapes == 0 {
            let mut inside = quotes;
            inside ^= inside << 8;
            inside ^= inside << 16;
            inside ^= inside << 32;
            (inside, inside & TOP_LANE != 0, pos + 8)
        } else {
            string_lanes(quotes, escapes, pos)?
        };

        let mut brackets = (opens | closes) & !inside;
        while brackets != 0 {
            let lane = brackets.trailing_zeros() / 8;
            let byte = word.get(lane as usize).copied()?;
            if opens & (0x80 << (lane * 8)) != 0 {
                if depth == DEPTH_MAX {
                    return None;
                }
                open = (open << 1) | u128::from(byte == b'[');
                depth += 1;
            } else {
                if (open & 1 == 1) != (byte == b']') {
                    return None;
                }
                open >>= 1;
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(pos + lane as usize + 1);
                }
            }
            brackets &= brackets - 1;
        }
        pos = if string_open {
            string_close(doc, resume)?.0 + 1
        } else {
            resume
        };
    }
}

/// The slow path of [`container_end`] for a word (at `pos`, starting outside a string) that holds
/// a backslash: walks its lanes in order. Returns the lanes inside strings, whether a string is
/// open at the end, and where the scan resumes (one byte further when the last lane escapes the
/// first byte of the next word). `None` for a backslash outside a string.
fn string_lanes(quotes: u64, escapes: u64, pos: usize) -> Option<(u64, bool, usize)> {
    let mut inside = 0;
    let mut in_string = false;
    let mut escaped = false;
    for lane in 0..8 {
        let bit = 0x80_u64 << (lane * 8);
        if escaped {
            escaped = false;
            inside |= bit;
        } else if in_string {
            inside |= bit;
            if escapes & bit != 0 {
                escaped = true;
            } else if quotes & bit != 0 {
                in_string = false;
            }
        } else if quotes & bit != 0 {
            in_string = true;
            inside |= bit;
        } else if escapes & bit != 0 {
            return None;
        }
    }
    Some((inside, in_string, pos + 8 + usize::from(escaped)))
}

/// Decodes the escape whose backslash is at `raw[i]`; returns the character and the offset past
/// the escape. `None` for an unknown escape, bad hex or an unpaired surrogate.
fn decode_escape(raw: &[u8], i: usize) -> Option<(char, usize)> {
    let c = match raw.get(i + 1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let unit = hex4(raw, i + 2)?;
            return match unit {
                0xD800..=0xDBFF => {
                    if raw.get(i + 6) != Some(&b'\\') || raw.get(i + 7) != Some(&b'u') {
                        return None;
                    }
                    let low = hex4(raw, i + 8)?;
                    if !(0xDC00..=0xDFFF).contains(&low) {
                        return None;
                    }
                    let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                    Some((char::from_u32(code)?, i + 12))
                }
                0xDC00..=0xDFFF => None,
                _ => Some((char::from_u32(unit)?, i + 6)),
            };
        }
        _ => return None,
    };
    Some((c, i + 2))
}

/// Reads four hex digits at `raw[i..]`.
#[inline]
fn hex4(raw: &[u8], i: usize) -> Option<u32> {
    raw.get(i..i + 4)?.iter().try_fold(0u32, |acc, &b| {
        let digit = char::from(b).to_digit(16)?;
        Some(acc * 16 + digit)
    })
}

/// Unescapes a string body into bytes, borrowing when there is nothing to unescape. Does not
/// check UTF-8.
fn unescape_bytes(raw: &[u8]) -> Option<Cow<'_, [u8]>> {
    let Some(first) = memchr::memchr(b'\\', raw) else {
        return Some(Cow::Borrowed(raw));
    };
    let mut out = Vec::with_capacity(raw.len());
    let mut next = first;
    let mut run_start = 0;
    loop {
        out.extend_from_slice(raw.get(run_start..next)?);
        if next == raw.len() {
            return Some(Cow::Owned(out));
        }
        let (c, after) = decode_escape(raw, next)?;
        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        run_start = after;
        next = raw
            .get(after..)
            .and_then(|rest| memchr::memchr(b'\\', rest))
            .map_or(raw.len(), |k| after + k);
    }
}

/// Compares an escaped string body with `target` without allocating. `None` when an invalid
/// escape is reached before a difference.
fn unescaped_eq(raw: &[u8], target: &[u8]) -> Option<bool> {
    let mut r = 0;
    let mut t = 0;
    loop {
        let rest = raw.get(r..)?;
        let run = memchr::memchr(b'\\', rest).unwrap_or(rest.len());
        let chunk = rest.get(..run)?;
        if target.get(t..t + run) != Some(chunk) {
            return Some(false);
        }
        t += run;
        r += run;
        if r == raw.len() {
            return Some(t == target.len());
        }
        let (c, after) = decode_escape(raw, r)?;
        let mut buf = [0; 4];
        let encoded = c.encode_utf8(&mut buf).as_bytes();
        if !target.get(t..)?.starts_with(encoded) {
            return Some(false);
        }
        t += encoded.len();
        r = after;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn path(s: &str) -> JsonPath {
        JsonPath::parse(s).unwrap()
    }

    fn get<'a>(doc: &'a str, p: &str) -> Option<JsonValue<'a>> {
        lookup(doc.as_bytes(), &path(p))
    }

    fn key(k: &str) -> Segment {
        Segment::Key(k.to_owned())
    }

    fn parse_err(s: &str) -> (usize, String) {
        let e = JsonPath::parse(s).unwrap_err();
        (e.offset, e.message)
    }

    fn string(body: &str) -> JsonValue<'_> {
        JsonValue::String(RawStr(body.as_bytes()))
    }

    // ---- paths ----

    #[test]
    fn parses_paths() {
        assert_eq!(path("device_id").segments(), &[key("device_id")]);
        assert_eq!(
            path("a.b[0].c").segments(),
            &[key("a"), key("b"), Segment::Index(0), key("c")]
        );
        assert_eq!(
            path("tags[2]").segments(),
            &[key("tags"), Segment::Index(2)]
        );
        assert_eq!(
            path("[\"odd.key\"].x").segments(),
            &[key("odd.key"), key("x")]
        );
        assert_eq!(path("['a\\'b\\\\']").segments(), &[key("a'b\\")]);
        assert_eq!(path(r#"["a'b\"[]"]"#).segments(), &[key("a'b\"[]")]);
        assert_eq!(
            path("[0][1]").segments(),
            &[Segment::Index(0), Segment::Index(1)]
        );
        assert_eq!(path("a[007]").segments(), &[key("a"), Segment::Index(7)]);
        assert_eq!(
            path("température.é").segments(),
            &[key("température"), key("é")]
        );
        assert_eq!("a.b".parse::<JsonPath>(), Ok(path("a.b")));
    }

    #[test]
    fn path_errors_name_offset_and_cause() {
        assert_eq!(parse_err(""), (0, "empty path".into()));
        assert_eq!(parse_err("a..b"), (2, "empty key".into()));
        assert_eq!(parse_err("a."), (2, "empty key".into()));
        assert_eq!(parse_err(".a"), (0, "empty key".into()));
        assert_eq!(parse_err("a.[0]"), (2, "empty key".into()));
        assert_eq!(parse_err("a["), (1, "unclosed bracket".into()));
        assert_eq!(parse_err("a[0"), (1, "unclosed bracket".into()));
        assert_eq!(parse_err("a[]"), (2, "empty index".into()));
        assert_eq!(parse_err("a]"), (1, "unexpected ']'".into()));
        assert_eq!(
            parse_err("a[0]b"),
            (4, "expected '.' or '[' after ']'".into())
        );
        assert_eq!(parse_err("a[\"x"), (2, "unclosed quoted key".into()));
        assert_eq!(parse_err("a[\"x\""), (1, "unclosed bracket".into()));
        assert_eq!(
            parse_err("a[\"x\"b]"),
            (5, "expected ']' after quoted key".into())
        );
        assert_eq!(parse_err("[\"\"]"), (1, "empty key".into()));
        for bad in ["a[x]", "a[-1]", "a[1.5]", "a[ 1]"] {
            let (offset, message) = parse_err(bad);
            assert_eq!(offset, 2, "{bad}");
            assert!(message.starts_with("bad index"), "{bad}: {message}");
        }
        assert_eq!(
            parse_err("a[99999999999999999999999999]"),
            (2, "bad index: too large".into())
        );
        let (offset, message) = parse_err("[\"a\\nb\"]");
        assert_eq!(offset, 3);
        assert!(message.starts_with("invalid escape"), "{message}");
    }

    #[test]
    fn path_error_display() {
        let e = JsonPath::parse("a..b").unwrap_err();
        assert_eq!(e.to_string(), "at byte 2: empty key");
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert_eq!(boxed.to_string(), "at byte 2: empty key");
        assert!("".parse::<JsonPath>().is_err());
    }

    #[test]
    fn path_display_round_trips() {
        for (input, shown) in [
            ("device_id", "device_id"),
            ("a.b[0].c", "a.b[0].c"),
            ("[3].x", "[3].x"),
            ("[\"odd.key\"].x", "[\"odd.key\"].x"),
            ("['it\\'s']", "[\"it's\"]"),
            ("a[\"sp ace\"]", "a[\"sp ace\"]"),
            ("a['q\"\\\\']", r#"a["q\"\\"]"#),
            ("[\"plain\"]", "plain"),
            ("a[007]", "a[7]"),
        ] {
            let p = path(input);
            assert_eq!(p.to_string(), shown, "{input}");
            assert_eq!(path(&p.to_string()), p, "{input}");
        }
    }

    // ---- value kinds ----

    #[test]
    fn looks_up_every_kind() {
        let doc =
            r#"{"s":"hi","n":-0.5e+3,"t":true,"f":false,"z":null,"o":{"k":[1]},"a":[1,{"x":2}]}"#;
        assert_eq!(get(doc, "s"), Some(string("hi")));
        assert_eq!(get(doc, "n"), Some(JsonValue::Number(b"-0.5e+3")));
        assert_eq!(get(doc, "n").unwrap().as_f64(), Some(-500.0));
        assert_eq!(get(doc, "t"), Some(JsonValue::Bool(true)));
        assert_eq!(get(doc, "f"), Some(JsonValue::Bool(false)));
        assert_eq!(get(doc, "z"), Some(JsonValue::Null));
        assert_eq!(get(doc, "o"), Some(JsonValue::Object(br#"{"k":[1]}"#)));
        assert_eq!(get(doc, "a"), Some(JsonValue::Array(br#"[1,{"x":2}]"#)));
        assert_eq!(get(doc, "t").unwrap().raw(), b"true");
        assert_eq!(get(doc, "f").unwrap().raw(), b"false");
        assert_eq!(get(doc, "z").unwrap().raw(), b"null");
        assert_eq!(get(doc, "s").unwrap().raw(), b"hi");
    }

    #[test]
    fn nested_paths_and_indices() {
        let doc = r#"{"a":{"b":[{"c":1},{"c":[10,20,[30,"x"]]}]},"tags":["p","q","r"]}"#;
        assert_eq!(get(doc, "a.b[0].c"), Some(JsonValue::Number(b"1")));
        assert_eq!(get(doc, "a.b[1].c[1]"), Some(JsonValue::Number(b"20")));
        assert_eq!(get(doc, "a.b[1].c[2][1]"), Some(string("x")));
        assert_eq!(get(doc, "tags[2]"), Some(string("r")));
        assert_eq!(get(doc, "tags[3]"), None);
        assert_eq!(get("[[1,2],[3]]", "[1][0]"), Some(JsonValue::Number(b"3")));
        assert_eq!(
            get(r#"{"odd.key":{"x":5}}"#, "[\"odd.key\"].x"),
            Some(JsonValue::Number(b"5"))
        );
        assert_eq!(get(r#"{"0":"zero"}"#, "[\"0\"]"), Some(string("zero")));
        assert_eq!(get(r#"{"0":"zero"}"#, "[0]"), None);
    }

    #[test]
    fn skips_strings_with_escapes_and_brackets() {
        let doc = r#"{"a":"x\"}]{[\\","b":{"c":"\\\"}","d":[["]"],{}]},"e":7}"#;
        assert_eq!(get(doc, "e"), Some(JsonValue::Number(b"7")));
        assert_eq!(get(doc, "b.d[0][0]"), Some(string("]")));
        assert_eq!(
            get(doc, "a").unwrap().key_bytes().unwrap().as_ref(),
            b"x\"}]{[\\"
        );
    }

    #[test]
    fn skipping_is_independent_of_alignment() {
        // The container skipper reads eight bytes at a time: slide tricky content across every
        // word offset (escapes in the last lane, strings across words, the padded tail).
        let tricky = concat!(
            r#"[{"s":"\\\"]}[{","t":"\\"},"q\\\\",[],{},"#,
            r#""a somewhat longer string with ] and } in it",{"k":[1,[2,{"x":"\u0022"}]]}]"#,
        );
        let expected: Value = serde_json::from_str(tricky).unwrap();
        for pad in 0..24 {
            let doc = format!(r#"{{"{}":{tricky},"b":1}}"#, "p".repeat(pad));
            assert_eq!(get(&doc, "b"), Some(JsonValue::Number(b"1")), "pad {pad}");
            let key = "p".repeat(pad.max(1));
            if pad > 0 {
                let Some(JsonValue::Array(raw)) = get(&doc, &key) else {
                    panic!("pad {pad}")
                };
                assert_eq!(serde_json::from_slice::<Value>(raw).unwrap(), expected);
            }
            let spaced = format!("{{\"x\":{}{tricky}{}}}", " ".repeat(pad), " ".repeat(pad));
            assert_eq!(
                get(&spaced, "x"),
                Some(JsonValue::Array(tricky.as_bytes())),
                "pad {pad}"
            );
            // Cut anywhere inside, the container is never taken as complete.
            for cut in 0..tricky.len() {
                let doc = format!("{{\"x\":{}{}", " ".repeat(pad), &tricky[..cut]);
                assert_eq!(get(&doc, "x"), None, "pad {pad} cut {cut}");
            }
        }
    }

    #[test]
    fn escaped_keys_match_after_unescape() {
        let doc = r#"{"\u0061":1,"b\"c":2,"d\\e":3,"\u00e9t\u00E9":4,"\ud83d\ude00":5,"x\/y":6}"#;
        assert_eq!(get(doc, "a"), Some(JsonValue::Number(b"1")));
        assert_eq!(get(doc, "[\"b\\\"c\"]"), Some(JsonValue::Number(b"2")));
        assert_eq!(get(doc, "[\"d\\\\e\"]"), Some(JsonValue::Number(b"3")));
        assert_eq!(get(doc, "été"), Some(JsonValue::Number(b"4")));
        assert_eq!(get(doc, "😀"), Some(JsonValue::Number(b"5")));
        assert_eq!(get(doc, "x/y"), Some(JsonValue::Number(b"6")));
        assert_eq!(get(doc, "\\u0061"), None);
        // A prefix of an escaped key is not the key.
        assert_eq!(get(r#"{"ab\u0063":1}"#, "ab"), None);
        assert_eq!(get(r#"{"\u0061":1}"#, "ab"), None);
        // A bad escape in a key on the way is a malformed document.
        assert_eq!(get(r#"{"\q":1,"a":2}"#, "a"), None);
    }

    #[test]
    fn escaped_values_and_surrogates() {
        let doc = r#"{"s":"line\nnext \"q\" \\ \/ \b\f\r\t \u00e9 \ud83d\ude00 \uD834\uDD1E"}"#;
        let v = get(doc, "s").unwrap();
        let JsonValue::String(raw) = v else {
            panic!("not a string: {v:?}")
        };
        assert!(raw.has_escapes());
        let expected = "line\nnext \"q\" \\ / \u{8}\u{c}\r\t é 😀 𝄞";
        assert_eq!(raw.unescape().unwrap(), expected);
        assert!(matches!(raw.unescape(), Some(Cow::Owned(_))));
        assert!(raw.eq_str(expected));
        assert!(!raw.eq_str("line"));
        assert!(!raw.eq_str(&format!("{expected}!")));
        assert_eq!(v.key_bytes().unwrap().as_ref(), expected.as_bytes());
        assert!(v.matches_literal(expected));

        let plain = RawStr(b"plain");
        assert!(!plain.has_escapes());
        assert!(matches!(plain.unescape(), Some(Cow::Borrowed("plain"))));
        assert!(matches!(
            string("plain").key_bytes(),
            Some(Cow::Borrowed(b"plain"))
        ));
    }

    #[test]
    fn bad_escapes_and_bad_utf8() {
        for bad in [
            r"\x",
            r"\u12",
            r"\u12G4",
            r"\ud800",
            r"\ud800x",
            r"\ud800\u0041",
            r"\udc00",
            r"ab\",
            r"\ud83d\u",
        ] {
            let raw = RawStr(bad.as_bytes());
            assert_eq!(raw.unescape(), None, "{bad}");
            assert!(!raw.eq_str(""), "{bad}");
            assert_eq!(JsonValue::String(raw).key_bytes(), None, "{bad}");
            assert!(!JsonValue::String(raw).matches_literal(bad), "{bad}");
        }
        // Invalid UTF-8 is not a bad escape: key_bytes still works, unescape does not.
        let raw = RawStr(b"\xff\\n");
        assert_eq!(raw.unescape(), None);
        assert_eq!(
            JsonValue::String(raw).key_bytes().unwrap().as_ref(),
            b"\xff\n"
        );
        assert_eq!(RawStr(b"\xff").unescape(), None);
        assert!(!RawStr(b"\xff").eq_str("\u{ff}"));
        // Invalid UTF-8 elsewhere in the document does not hide a valid value.
        assert_eq!(
            lookup(b"{\"a\":\"\xff\xfe\",\"b\":1}", &path("b")),
            Some(JsonValue::Number(b"1"))
        );
    }

    #[test]
    fn whitespace_everywhere_and_bom() {
        let doc = " \t\r\n{ \n\"a\" \t: \r [ 1 , \n { \"b\" : \"v\" } ] , \"c\" :\ttrue\n}\n ";
        assert_eq!(get(doc, "a[1].b"), Some(string("v")));
        assert_eq!(get(doc, "c"), Some(JsonValue::Bool(true)));
        assert_eq!(get(doc, "a[0]"), Some(JsonValue::Number(b"1")));
        assert_eq!(
            lookup(b"\xEF\xBB\xBF {\"a\":1}", &path("a")),
            Some(JsonValue::Number(b"1"))
        );
        assert_eq!(lookup(b"\xEF\xBB{\"a\":1}", &path("a")), None);
    }

    #[test]
    fn missing_paths_and_type_mismatches() {
        let doc = r#"{"a":{"b":1},"l":[1,2],"s":"str","e":{},"ea":[]}"#;
        assert_eq!(get(doc, "x"), None);
        assert_eq!(get(doc, "a.x"), None);
        assert_eq!(get(doc, "a.b.c"), None);
        assert_eq!(get(doc, "a[0]"), None);
        assert_eq!(get(doc, "l.x"), None);
        assert_eq!(get(doc, "l[2]"), None);
        assert_eq!(get(doc, "s[0]"), None);
        assert_eq!(get(doc, "s.x"), None);
        assert_eq!(get(doc, "e.x"), None);
        assert_eq!(get(doc, "ea[0]"), None);
        assert_eq!(get(doc, "[0]"), None);
        assert_eq!(get("[1]", "a"), None);
        assert_eq!(get("\"a\"", "a"), None);
        assert_eq!(get("", "a"), None);
        assert_eq!(get("   ", "a"), None);
        assert_eq!(get("null", "a"), None);
        // Keys are case sensitive and compared whole.
        assert_eq!(get(r#"{"Ab":1,"abc":2}"#, "ab"), None);
    }

    #[test]
    fn truncated_and_malformed_documents() {
        let full = r#"{"a":{"b":[1,"two",{"c":null}]},"d":12.5,"e":true}"#;
        for end in 0..full.len() {
            let prefix = &full.as_bytes()[..end];
            for p in ["a", "a.b", "a.b[1]", "a.b[2].c", "d", "e", "zz"] {
                let got = lookup(prefix, &path(p));
                assert!(
                    got.is_none() || got == lookup(full.as_bytes(), &path(p)),
                    "{p} in {:?}",
                    String::from_utf8_lossy(prefix)
                );
            }
        }
        // A number or literal cut at the end of input is not taken as complete.
        assert_eq!(get(r#"{"d":12"#, "d"), None);
        assert_eq!(get(r#"{"e":true"#, "e"), None);
        assert_eq!(get(r#"{"d":12,"#, "d"), Some(JsonValue::Number(b"12")));
        for (doc, p) in [
            (r#"{"a" 1}"#, "a"),
            (r#"{"a":1 "b":2}"#, "b"),
            (r#"{"a":1,}"#, "b"),
            (r#"{,"a":1}"#, "a"),
            (r#"{a:1}"#, "a"),
            (r#"{"a":01}"#, "a"),
            (r#"{"a":1.}"#, "a"),
            (r#"{"a":.5}"#, "a"),
            (r#"{"a":1e}"#, "a"),
            (r#"{"a":-}"#, "a"),
            (r#"{"a":+1}"#, "a"),
            (r#"{"a":12x}"#, "a"),
            (r#"{"a":tru}"#, "a"),
            (r#"{"a":truex}"#, "a"),
            (r#"{"a":nul,"b":1}"#, "b"),
            (r#"{"a":}"#, "a"),
            (r#"{"a":[}],"b":1}"#, "b"),
            (r#"{"a":{]},"b":1}"#, "b"),
            (r#"{"a":[1,2},"b":1}"#, "a"),
            (r#"{"a":[1,\\],"b":1}"#, "b"),
            (r#"{"a":{"x":1}}}"#, "a.x.y"),
            (r#"{"a":"unterminated}"#, "a"),
            (r#"{"a":"x\"}"#, "a"),
            (r#"["#, "[0]"),
            (r#"[1,]"#, "[1]"),
            (r#"[1 2]"#, "[1]"),
            (r#"{"a":1}"#, "a.b"),
        ] {
            assert_eq!(get(doc, p), None, "{p} in {doc}");
        }
        // The rest of the document after the found value is not validated.
        assert_eq!(
            get(r#"{"a":1, garbage"#, "a"),
            Some(JsonValue::Number(b"1"))
        );
        assert_eq!(get(r#"{"a":"x"#, "a"), None);
        assert_eq!(get(r#"{"a":"x"#, "a.b"), None);
    }

    #[test]
    fn duplicate_keys_first_wins() {
        let doc = r#"{"a":1,"a":2,"\u0061":3}"#;
        assert_eq!(get(doc, "a"), Some(JsonValue::Number(b"1")));
        let doc = r#"{"\u0061":{"x":1},"a":{"x":2}}"#;
        assert_eq!(get(doc, "a.x"), Some(JsonValue::Number(b"1")));
        // The first occurrence wins even when it does not fit the rest of the path.
        let doc = r#"{"a":[1],"a":{"x":2}}"#;
        assert_eq!(get(doc, "a.x"), None);
    }

    #[test]
    fn numbers() {
        for (text, f) in [
            ("0", 0.0),
            ("-0", 0.0),
            ("-0.5e+3", -500.0),
            ("1E2", 100.0),
            ("1e-2", 0.01),
            ("123456789", 123_456_789.0),
            ("18446744073709551616", 18_446_744_073_709_551_616.0),
            ("2.5", 2.5),
        ] {
            let doc = format!("[{text}]");
            let v = lookup(doc.as_bytes(), &path("[0]")).unwrap();
            assert_eq!(v, JsonValue::Number(text.as_bytes()));
            assert_eq!(v.as_f64(), Some(f), "{text}");
            assert_eq!(v.key_bytes().unwrap().as_ref(), text.as_bytes());
        }
        assert_eq!(get("[1e400]", "[0]").unwrap().as_f64(), None);
        assert_eq!(get(r#"["80"]"#, "[0]").unwrap().as_f64(), None);
        assert_eq!(get("[true]", "[0]").unwrap().as_f64(), None);
    }

    #[test]
    fn matches_literal_cases() {
        let doc =
            r#"{"n":80,"f":80.0,"e":8e1,"s":"80","t":true,"z":null,"o":{},"a":[],"esc":"a\u0062"}"#;
        for p in ["n", "f", "e", "s"] {
            assert!(get(doc, p).unwrap().matches_literal("80"), "{p}");
        }
        for p in ["n", "f", "e"] {
            let v = get(doc, p).unwrap();
            assert!(v.matches_literal("80.0"), "{p}");
            assert!(v.matches_literal("8e1"), "{p}");
            assert!(!v.matches_literal("81"), "{p}");
            assert!(!v.matches_literal(" 80"), "{p}");
            assert!(!v.matches_literal("80 "), "{p}");
            assert!(!v.matches_literal("+80"), "{p}");
            assert!(!v.matches_literal("inf"), "{p}");
        }
        // A string compares textually only.
        assert!(!get(doc, "s").unwrap().matches_literal("80.0"));
        assert!(get(doc, "t").unwrap().matches_literal("true"));
        assert!(!get(doc, "t").unwrap().matches_literal("false"));
        assert!(!get(doc, "t").unwrap().matches_literal("1"));
        assert!(get(doc, "z").unwrap().matches_literal("null"));
        assert!(!get(doc, "z").unwrap().matches_literal(""));
        assert!(!get(doc, "o").unwrap().matches_literal("{}"));
        assert!(!get(doc, "a").unwrap().matches_literal("[]"));
        assert!(get(doc, "esc").unwrap().matches_literal("ab"));
        assert!(!get(doc, "esc").unwrap().matches_literal("a\\u0062"));
        assert!(!get("[1e400]", "[0]").unwrap().matches_literal("1e401"));
        assert!(get("[1e400]", "[0]").unwrap().matches_literal("1e400"));
        assert!(get("[-0]", "[0]").unwrap().matches_literal("0"));
    }

    #[test]
    fn key_bytes_cases() {
        let doc = r#"{"s":"a\tb","n":-1.5,"t":true,"z":null,"o":{ "k" : 1 },"a":[ 1 ]}"#;
        let kb = |p: &str| get(doc, p).unwrap().key_bytes().unwrap().into_owned();
        assert_eq!(kb("s"), b"a\tb");
        assert_eq!(kb("n"), b"-1.5");
        assert_eq!(kb("t"), b"true");
        assert_eq!(kb("z"), b"null");
        assert_eq!(kb("o"), br#"{ "k" : 1 }"#);
        assert_eq!(kb("a"), b"[ 1 ]");
    }

    #[test]
    fn deep_nesting_is_bounded() {
        // Far deeper than any stack could recurse: must fail cleanly.
        let deep = format!(
            "{{\"a\":{}1{},\"b\":2}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(get(&deep, "b"), None);
        assert_eq!(get(&deep, "a"), None);
        let open = "[".repeat(1_000_000);
        assert_eq!(get(&open, "[0]"), None);
        // 128 levels inside a skipped value are fine; 129 are not.
        let ok = format!("{{\"a\":{}{},\"b\":2}}", "[".repeat(128), "]".repeat(128));
        assert_eq!(get(&ok, "b"), Some(JsonValue::Number(b"2")));
        let too_deep = format!(
            "{{\"a\":{}{},\"b\":2}}",
            "{\"x\":".repeat(129),
            "}".repeat(129)
        );
        assert_eq!(get(&too_deep, "b"), None);
        // Descending along the path does not count against the bound.
        let mut long = String::new();
        let mut p = String::from("k");
        for _ in 0..300 {
            long.push_str("{\"k\":");
            p.push_str(".k");
        }
        long.push('7');
        long.push_str(&"}".repeat(300));
        p.truncate(p.len() - 2);
        assert_eq!(get(&long, &p), Some(JsonValue::Number(b"7")));
    }

    /// The scanner as it was before the block-at-a-time fast paths (verbatim), as the reference
    /// the property tests below hold the current one to, on valid and broken documents alike.
    mod reference {
        use super::super::{DEPTH_MAX, JsonPath, JsonValue, RawStr, Segment, unescaped_eq};

        /// Number text to a finite f64 by the standard library alone.
        pub fn parse_f64(text: &[u8]) -> Option<f64> {
            std::str::from_utf8(text)
                .ok()?
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
        }

        /// Finds the value at `path` in `doc`; None when the path is absent, a segment does not fit
        /// (index into an object, key into an array), or the document is malformed before the value is
        /// reached. Leading whitespace and a UTF-8 BOM are allowed. Only the bytes up to the end of the
        /// found value need to be valid: it does not validate the rest of the document. The first of
        /// duplicate keys wins.
        #[must_use]
        pub fn lookup<'a>(doc: &'a [u8], path: &JsonPath) -> Option<JsonValue<'a>> {
            let start = if doc.starts_with(b"\xEF\xBB\xBF") {
                3
            } else {
                0
            };
            let mut pos = skip_ws(doc, start);
            for segment in &path.segments {
                pos = match segment {
                    Segment::Key(key) => member_start(doc, pos, key.as_bytes())?,
                    Segment::Index(index) => element_start(doc, pos, *index)?,
                };
            }
            value_at(doc, pos).map(|(value, _)| value)
        }

        /// Returns the first offset at or after `i` that is not JSON whitespace.
        #[inline]
        pub(super) fn skip_ws(doc: &[u8], mut i: usize) -> usize {
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = doc.get(i) {
                i += 1;
            }
            i
        }

        /// With `pos` at an object, returns the start of the value of the first member named `key`.
        pub(super) fn member_start(doc: &[u8], pos: usize, key: &[u8]) -> Option<usize> {
            if doc.get(pos) != Some(&b'{') {
                return None;
            }
            let mut i = skip_ws(doc, pos + 1);
            if doc.get(i) == Some(&b'}') {
                return None;
            }
            loop {
                if doc.get(i) != Some(&b'"') {
                    return None;
                }
                let (close, escaped) = string_close(doc, i + 1)?;
                let raw = doc.get(i + 1..close)?;
                i = skip_ws(doc, close + 1);
                if doc.get(i) != Some(&b':') {
                    return None;
                }
                i = skip_ws(doc, i + 1);
                let found = if escaped {
                    unescaped_eq(raw, key)?
                } else {
                    raw == key
                };
                if found {
                    return Some(i);
                }
                i = skip_ws(doc, value_end(doc, i)?);
                match doc.get(i)? {
                    b',' => i = skip_ws(doc, i + 1),
                    _ => return None,
                }
            }
        }

        /// With `pos` at an array, returns the start of element `index`.
        pub(super) fn element_start(doc: &[u8], pos: usize, index: usize) -> Option<usize> {
            if doc.get(pos) != Some(&b'[') {
                return None;
            }
            let mut i = skip_ws(doc, pos + 1);
            if doc.get(i) == Some(&b']') {
                return None;
            }
            let mut n = 0;
            loop {
                if n == index {
                    return Some(i);
                }
                i = skip_ws(doc, value_end(doc, i)?);
                match doc.get(i)? {
                    b',' => i = skip_ws(doc, i + 1),
                    _ => return None,
                }
                n += 1;
            }
        }

        /// Returns the offset just past the value starting at `i`.
        #[inline]
        pub(super) fn value_end(doc: &[u8], i: usize) -> Option<usize> {
            match doc.get(i)? {
                b'"' => string_close(doc, i + 1).map(|(close, _)| close + 1),
                b'{' | b'[' => container_end(doc, i),
                _ => scalar_at(doc, i).map(|(_, end)| end),
            }
        }

        /// Reads the value starting at `i`; returns it and the offset just past it.
        pub(super) fn value_at(doc: &[u8], i: usize) -> Option<(JsonValue<'_>, usize)> {
            match doc.get(i)? {
                b'"' => {
                    let (close, _) = string_close(doc, i + 1)?;
                    Some((JsonValue::String(RawStr(doc.get(i + 1..close)?)), close + 1))
                }
                b'{' => {
                    let end = container_end(doc, i)?;
                    Some((JsonValue::Object(doc.get(i..end)?), end))
                }
                b'[' => {
                    let end = container_end(doc, i)?;
                    Some((JsonValue::Array(doc.get(i..end)?), end))
                }
                _ => scalar_at(doc, i),
            }
        }

        /// Reads a number, `true`, `false` or `null` at `i`, which must be followed by a delimiter.
        pub(super) fn scalar_at(doc: &[u8], i: usize) -> Option<(JsonValue<'_>, usize)> {
            let (value, end) = match doc.get(i)? {
                b't' => (JsonValue::Bool(true), literal_end(doc, i, b"true")?),
                b'f' => (JsonValue::Bool(false), literal_end(doc, i, b"false")?),
                b'n' => (JsonValue::Null, literal_end(doc, i, b"null")?),
                _ => {
                    let end = number_end(doc, i)?;
                    (JsonValue::Number(doc.get(i..end)?), end)
                }
            };
            match doc.get(end)? {
                b' ' | b'\t' | b'\n' | b'\r' | b',' | b'}' | b']' => Some((value, end)),
                _ => None,
            }
        }

        #[inline]
        pub(super) fn literal_end(doc: &[u8], i: usize, word: &[u8]) -> Option<usize> {
            doc.get(i..)?.starts_with(word).then_some(i + word.len())
        }

        /// Returns the end of the JSON number starting at `i`, checking its grammar.
        pub(super) fn number_end(doc: &[u8], i: usize) -> Option<usize> {
            let mut j = i;
            if doc.get(j) == Some(&b'-') {
                j += 1;
            }
            match doc.get(j)? {
                b'0' => j += 1,
                b'1'..=b'9' => j = digits_end(doc, j + 1),
                _ => return None,
            }
            if doc.get(j) == Some(&b'.') {
                let k = digits_end(doc, j + 1);
                if k == j + 1 {
                    return None;
                }
                j = k;
            }
            if let Some(b'e' | b'E') = doc.get(j) {
                j += 1;
                if let Some(b'+' | b'-') = doc.get(j) {
                    j += 1;
                }
                let k = digits_end(doc, j);
                if k == j {
                    return None;
                }
                j = k;
            }
            Some(j)
        }

        #[inline]
        pub(super) fn digits_end(doc: &[u8], mut i: usize) -> usize {
            while let Some(b'0'..=b'9') = doc.get(i) {
                i += 1;
            }
            i
        }

        /// With `start` just past an opening quote, returns the offset of the closing quote and whether
        /// the body holds escapes.
        #[inline]
        pub(super) fn string_close(doc: &[u8], start: usize) -> Option<(usize, bool)> {
            let mut i = start;
            let mut escaped = false;
            loop {
                i += quote_or_backslash(doc.get(i..)?)?;
                if doc.get(i)? == &b'"' {
                    return Some((i, escaped));
                }
                escaped = true;
                // Skip the backslash and the byte it escapes; `\uXXXX` digits are never quotes.
                i += 2;
            }
        }

        /// Eight copies of 0x01, for word-at-a-time byte search.
        const LANES_LO: u64 = u64::from_le_bytes([0x01; 8]);
        /// Eight copies of 0x80.
        const LANES_HI: u64 = u64::from_le_bytes([0x80; 8]);

        /// A word with `b` in every byte.
        #[inline]
        const fn splat(b: u8) -> u64 {
            LANES_LO * b as u64
        }

        /// Sets the high bit of zero bytes of `v`. Bytes above the first zero byte may be flagged too, so
        /// only the lowest flag is meaningful (which is all the callers use).
        #[inline]
        const fn zero_lanes(v: u64) -> u64 {
            v.wrapping_sub(LANES_LO) & !v & LANES_HI
        }

        /// Finds the first `"` or `\\`. Strings in records are mostly short, so the first 32 bytes are
        /// searched a word at a time, which beats the set-up cost of memchr's vectorised search; memchr
        /// takes the rest.
        #[inline]
        pub(super) fn quote_or_backslash(hay: &[u8]) -> Option<usize> {
            const WORDS: usize = 4;
            for (n, chunk) in hay.chunks_exact(8).take(WORDS).enumerate() {
                let w = u64::from_le_bytes(*chunk.first_chunk::<8>()?);
                let found = zero_lanes(w ^ splat(b'"')) | zero_lanes(w ^ splat(b'\\'));
                if found != 0 {
                    return Some(n * 8 + (found.trailing_zeros() / 8) as usize);
                }
            }
            let searched = (hay.len() / 8).min(WORDS) * 8;
            Some(searched + memchr::memchr2(b'"', b'\\', hay.get(searched..)?)?)
        }

        /// Sets the high bit of exactly the zero bytes of `v`.
        #[inline]
        const fn exact_zero_lanes(v: u64) -> u64 {
            !(((v & !LANES_HI).wrapping_add(!LANES_HI)) | v) & LANES_HI
        }

        /// With `start` at `{` or `[`, returns the offset just past the matching close bracket. Fails on
        /// a mismatched bracket, an unterminated string, a backslash outside a string, the end of input,
        /// or nesting deeper than [`DEPTH_MAX`].
        ///
        /// Iterative, eight bytes at a time: each word yields masks of quotes, backslashes and brackets.
        /// In a word without backslashes the lanes inside strings come from a prefix XOR of the quote
        /// mask, so quotes, whitespace and digits cost no branches; only brackets are taken one by one,
        /// onto a bit stack of open brackets (1 = array) in a `u128`. A string still open at the end of
        /// a word is finished with [`string_close`], so every word starts outside a string.
        pub(super) fn container_end(doc: &[u8], start: usize) -> Option<usize> {
            const TOP_LANE: u64 = 0x80 << 56;
            let mut open: u128 = 0;
            let mut depth: u32 = 0;
            let mut pos = start;
            loop {
                let rest = doc.get(pos..)?;
                let word = match rest.first_chunk::<8>() {
                    Some(word) => *word,
                    None if rest.is_empty() => return None,
                    None => {
                        // Past the end, pad with spaces: they are neither quotes nor brackets.
                        let mut word = [b' '; 8];
                        word.get_mut(..rest.len())?.copy_from_slice(rest);
                        word
                    }
                };
                let w = u64::from_le_bytes(word);
                let quotes = exact_zero_lanes(w ^ splat(b'"'));
                let escapes = exact_zero_lanes(w ^ splat(b'\\'));
                // `b | 0x20` maps `[` to `{` and `]` to `}`, and no other byte to either.
                let folded = w | splat(0x20);
                let opens = exact_zero_lanes(folded ^ splat(b'{'));
                let closes = exact_zero_lanes(folded ^ splat(b'}'));

                // Lanes inside strings, whether a string is open at the end of the word, and where the
                // scan resumes.
                let (inside, string_open, resume) = if escapes == 0 {
                    let mut inside = quotes;
                    inside ^= inside << 8;
                    inside ^= inside << 16;
                    inside ^= inside << 32;
                    (inside, inside & TOP_LANE != 0, pos + 8)
                } else {
                    string_lanes(quotes, escapes, pos)?
                };

                let mut brackets = (opens | closes) & !inside;
                while brackets != 0 {
                    let lane = brackets.trailing_zeros() / 8;
                    let byte = word.get(lane as usize).copied()?;
                    if opens & (0x80 << (lane * 8)) != 0 {
                        if depth == DEPTH_MAX {
                            return None;
                        }
                        open = (open << 1) | u128::from(byte == b'[');
                        depth += 1;
                    } else {
                        if (open & 1 == 1) != (byte == b']') {
                            return None;
                        }
                        open >>= 1;
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(pos + lane as usize + 1);
                        }
                    }
                    brackets &= brackets - 1;
                }
                pos = if string_open {
                    string_close(doc, resume)?.0 + 1
                } else {
                    resume
                };
            }
        }

        /// The slow path of [`container_end`] for a word (at `pos`, starting outside a string) that holds
        /// a backslash: walks its lanes in order. Returns the lanes inside strings, whether a string is
        /// open at the end, and where the scan resumes (one byte further when the last lane escapes the
        /// first byte of the next word). `None` for a backslash outside a string.
        pub(super) fn string_lanes(
            quotes: u64,
            escapes: u64,
            pos: usize,
        ) -> Option<(u64, bool, usize)> {
            let mut inside = 0;
            let mut in_string = false;
            let mut escaped = false;
            for lane in 0..8 {
                let bit = 0x80_u64 << (lane * 8);
                if escaped {
                    escaped = false;
                    inside |= bit;
                } else if in_string {
                    inside |= bit;
                    if escapes & bit != 0 {
                        escaped = true;
                    } else if quotes & bit != 0 {
                        in_string = false;
                    }
                } else if quotes & bit != 0 {
                    in_string = true;
                    inside |= bit;
                } else if escapes & bit != 0 {
                    return None;
                }
            }
            Some((inside, in_string, pos + 8 + usize::from(escaped)))
        }
    }

    /// Checks every offset of `doc` with the scanner's pieces, and `paths`, against [`reference`].
    fn agrees_with_reference(doc: &[u8], paths: &[JsonPath]) -> Result<(), TestCaseError> {
        for i in 0..=doc.len() + 1 {
            prop_assert_eq!(
                number_end(doc, i),
                reference::number_end(doc, i),
                "number at {}",
                i
            );
            prop_assert_eq!(
                string_close(doc, i),
                reference::string_close(doc, i),
                "string at {}",
                i
            );
            prop_assert_eq!(
                scalar_at(doc, i),
                reference::scalar_at(doc, i),
                "scalar at {}",
                i
            );
            prop_assert_eq!(
                value_at(doc, i),
                reference::value_at(doc, i),
                "value at {}",
                i
            );
        }
        for p in paths {
            prop_assert_eq!(lookup(doc, p), reference::lookup(doc, p), "path {}", p);
        }
        // All at once: the same values, each once.
        let mut each = vec![None; paths.len()];
        let mut calls = 0;
        lookup_each(doc, paths, |k, v| {
            calls += 1;
            each[k] = Some(v);
        });
        let alone: Vec<_> = paths.iter().map(|p| lookup(doc, p)).collect();
        prop_assert_eq!(&each, &alone);
        prop_assert_eq!(calls, alone.iter().flatten().count());
        for p in paths {
            if let Some(v @ JsonValue::Number(_)) = lookup(doc, p) {
                prop_assert_eq!(v.as_f64(), reference::parse_f64(v.raw()), "number {}", p);
            }
        }
        Ok(())
    }

    /// Paths into the adversarial documents.
    fn adversarial_paths() -> Vec<JsonPath> {
        [
            "a", "b", "k", "a.b", "k.k", "[0]", "[1]", "a[0]", "[0].a", "\\", "é",
        ]
        .iter()
        .map(|p| path(p))
        .collect()
    }

    /// Pieces that put numbers, escapes, quotes and brackets anywhere relative to 16-byte
    /// blocks: a document is a run of them.
    fn arb_piece() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "{",
                "}",
                "[",
                "]",
                ",",
                ":",
                "\"",
                "\\",
                "\\\"",
                "\\\\",
                "\\u0061",
                "\\ud83d\\ude00",
                "\\x",
                "\"a\"",
                "\"b\"",
                "\"k\"",
                "\"a\":",
                "\"k\":",
                "true",
                "false",
                "null",
                "tru",
                "nul",
                "é",
                "\u{1}",
                "-",
                ".",
                "e",
                "E",
                "+",
                "0",
                "\t",
                "\r\n",
            ])
            .prop_map(str::to_owned),
            " {0,20}",
            "[0-9a\"\\\\]{0,20}",
            // Numbers and number-like text of every length, signs, points and exponents.
            "-?[0-9]{0,24}(\\.[0-9]{0,20})?([eE][+-]?[0-9]{0,5})?",
            "[-+.eE0-9]{1,20}",
        ]
    }

    #[test]
    fn bytes_eq_is_slice_equality_at_every_length() {
        let base: Vec<u8> = (0..24u8).map(|b| b'a' + b).collect();
        for n in 0..24 {
            let a = &base[..n];
            assert!(bytes_eq(a, a));
            for m in 0..24 {
                assert_eq!(bytes_eq(a, &base[..m]), n == m);
            }
            for at in 0..n {
                let mut b = a.to_vec();
                b[at] ^= 1;
                assert!(!bytes_eq(a, &b), "{n} bytes, differing at {at}");
            }
        }
    }

    #[test]
    fn lookup_each_finds_what_lookup_finds_in_one_pass() {
        let doc = br#"{"a":1,"b":{"c":"x","d":[5,6]},"a":2,"e\u0066":3.5,"g":"\q","h":true}"#;
        let paths: Vec<JsonPath> = [
            "h", "b.d[1]", "a", "b.c", "ef", "b", "[0]", "zz", "b.zz", "a",
        ]
        .iter()
        .map(|p| path(p))
        .collect();
        let mut got = vec![None; paths.len()];
        lookup_each(doc, &paths, |k, v| {
            assert!(got[k].is_none(), "path {k} found twice");
            got[k] = Some(v);
        });
        let alone: Vec<_> = paths.iter().map(|p| lookup(doc, p)).collect();
        assert_eq!(got, alone);
        // The first of duplicate keys, for both paths naming it.
        assert_eq!(got[2], Some(JsonValue::Number(b"1")));
        assert_eq!(got[9], Some(JsonValue::Number(b"1")));
        assert_eq!(got[4], Some(JsonValue::Number(b"3.5")));
        assert_eq!(got[6], None);
        // A bad escape in a member's name ends the lookups that reach it and compare with it,
        // as it ends `lookup`.
        let bad = br#"{"x":1,"\q":2,"y":3}"#;
        let paths = [path("x"), path("y")];
        let mut got = vec![None; 2];
        lookup_each(bad, &paths, |k, v| got[k] = Some(v));
        assert_eq!(got, [lookup(bad, &paths[0]), lookup(bad, &paths[1])]);
        assert_eq!(got, [Some(JsonValue::Number(b"1")), None]);
        // Not an object, or broken: nothing, or what comes before the break.
        let mut calls = 0;
        lookup_each(b"[1]", &[path("a")], |_, _| calls += 1);
        lookup_each(br#"{"a":1,"b":}"#, &[path("b"), path("c")], |_, _| {
            calls += 1
        });
        assert_eq!(calls, 0);
        let mut got = vec![None; 2];
        lookup_each(br#"{"a":1,"b":}"#, &[path("a"), path("b")], |k, v| {
            got[k] = Some(v)
        });
        assert_eq!(got, [Some(JsonValue::Number(b"1")), None]);
    }

    #[test]
    fn number_end_matches_reference_at_every_length() {
        // Every shape of number with its sign, point and exponent at every position around the
        // block boundary, at every start offset within a block, followed by each kind of end.
        let mut shapes = Vec::new();
        for int in 0..=20 {
            for frac in [None, Some(0), Some(1), Some(3), Some(17)] {
                for exp in ["", "e", "e5", "E+12", "e-", "e-0", "e123456789012345678"] {
                    for sign in ["", "-"] {
                        let mut n = String::from(sign);
                        n.push_str(&"1234567890".repeat(3)[..int]);
                        if let Some(f) = frac {
                            n.push('.');
                            n.push_str(&"9876543210".repeat(2)[..f]);
                        }
                        n.push_str(exp);
                        shapes.push(n);
                    }
                }
            }
        }
        shapes.push("0123".to_owned());
        shapes.push("-0.0e0".to_owned());
        for shape in &shapes {
            // The same value to the bit (-0 included) as the standard library's parser.
            assert_eq!(
                parse_f64(shape.as_bytes()).map(f64::to_bits),
                reference::parse_f64(shape.as_bytes()).map(f64::to_bits),
                "{shape:?}"
            );
            for pad in 0..17 {
                for end in ["", ",", "}", "]", " ", "x", ".", "e", "5"] {
                    let doc = format!("{}{shape}{end}", " ".repeat(pad));
                    let doc = doc.as_bytes();
                    assert_eq!(
                        number_end(doc, pad),
                        reference::number_end(doc, pad),
                        "{shape:?} at {pad} then {end:?}"
                    );
                    assert_eq!(scalar_at(doc, pad), reference::scalar_at(doc, pad));
                }
            }
        }
    }

    #[test]
    fn string_close_matches_reference_around_blocks() {
        for len in 0..70 {
            for escape_at in [
                None,
                Some(0),
                Some(14),
                Some(15),
                Some(16),
                Some(31),
                Some(63),
            ] {
                for escape in ["\\\"", "\\\\", "\\u0041", "\\"] {
                    let mut body: Vec<u8> = (0..len).map(|k| b'a' + (k % 26) as u8).collect();
                    if let Some(at) = escape_at.filter(|&at| at <= len) {
                        body.splice(at..at, escape.bytes());
                    }
                    for tail in ["\"", "", "\\", "x\""] {
                        let doc = [b"\"".as_slice(), &body, tail.as_bytes()].concat();
                        assert_eq!(string_close(&doc, 1), reference::string_close(&doc, 1));
                        let keyed = [b"{".as_slice(), &doc, b":1,\"k\":2}"].concat();
                        for p in adversarial_paths() {
                            assert_eq!(lookup(&keyed, &p), reference::lookup(&keyed, &p));
                        }
                    }
                }
            }
        }
    }

    // ---- property tests ----

    /// How the test serializer writes a document.
    #[derive(Debug, Clone, Copy)]
    struct Style {
        /// Whitespace around every token.
        spaced: bool,
        /// Non-ASCII characters as `\u` escapes (surrogate pairs above the BMP).
        ascii: bool,
        /// Every character as a `\u` escape.
        escape_all: bool,
    }

    fn write_str(s: &str, style: Style, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' if !style.escape_all => out.push_str("\\\""),
                '\\' if !style.escape_all => out.push_str("\\\\"),
                '\n' if !style.escape_all => out.push_str("\\n"),
                '\t' if !style.escape_all => out.push_str("\\t"),
                c if style.escape_all || u32::from(c) < 0x20 || (style.ascii && !c.is_ascii()) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    fn write_value(v: &Value, style: Style, out: &mut String) {
        let ws = if style.spaced { " \n\t\r" } else { "" };
        match v {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => out.push_str(&n.to_string()),
            Value::String(s) => write_str(s, style, out),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(ws);
                    write_value(item, style, out);
                    out.push_str(ws);
                }
                out.push(']');
            }
            Value::Object(members) => {
                out.push('{');
                for (i, (k, item)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(ws);
                    write_str(k, style, out);
                    out.push_str(ws);
                    out.push(':');
                    out.push_str(ws);
                    write_value(item, style, out);
                    out.push_str(ws);
                }
                out.push('}');
            }
        }
    }

    /// Every path to a sub-value below the root, with that sub-value.
    fn sub_values<'v>(
        v: &'v Value,
        prefix: &mut Vec<Segment>,
        out: &mut Vec<(JsonPath, &'v Value)>,
    ) {
        let mut visit = |segment: Segment, child: &'v Value, out: &mut Vec<_>| {
            prefix.push(segment);
            out.push((
                JsonPath {
                    segments: prefix.clone(),
                },
                child,
            ));
            sub_values(child, prefix, out);
            prefix.pop();
        };
        match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    visit(Segment::Index(i), item, out);
                }
            }
            Value::Object(members) => {
                for (k, item) in members {
                    visit(Segment::Key(k.clone()), item, out);
                }
            }
            _ => {}
        }
    }

    fn walk<'v>(v: &'v Value, path: &JsonPath) -> Option<&'v Value> {
        path.segments()
            .iter()
            .try_fold(v, |v, segment| match segment {
                Segment::Key(k) => v.get(k),
                Segment::Index(i) => v.get(i),
            })
    }

    fn arb_key() -> impl Strategy<Value = String> {
        prop_oneof!["[a-c]{1,2}", "[a-c.\\[\\]\"'\\\\ /\t\n\u{1}é😀𝄞]{1,4}",]
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| {
                serde_json::Number::from_f64(f).map(Value::Number)
            }),
            (-1000i32..1000, -5i32..5).prop_map(|(m, e)| Value::from(f64::from(m) * 10f64.powi(e))),
            "[a-c\"\\\\/\u{0}-\u{1f}é😀𝄞{}\\[\\],: ]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 128, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..7).prop_map(Value::Array),
                prop::collection::vec((arb_key(), inner), 0..7)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    fn arb_style() -> impl Strategy<Value = Style> {
        any::<(bool, bool, bool)>().prop_map(|(spaced, ascii, escape_all)| Style {
            spaced,
            ascii,
            escape_all,
        })
    }

    /// Checks `found` against the generated sub-value `original` and serde_json's reading of the
    /// written document, `reference` (they differ only where serde_json rounds floats).
    fn check_found(
        found: JsonValue<'_>,
        original: &Value,
        reference: &Value,
    ) -> Result<(), TestCaseError> {
        match (found, original) {
            (JsonValue::Null, Value::Null) => {}
            (JsonValue::Bool(a), Value::Bool(b)) => prop_assert_eq!(a, *b),
            (JsonValue::Number(text), Value::Number(n)) => {
                let written = n.to_string();
                prop_assert_eq!(text, written.as_bytes());
                prop_assert_eq!(found.as_f64(), n.as_f64());
                let parsed: Value = serde_json::from_slice(text)
                    .map_err(|e| TestCaseError::fail(format!("number does not parse: {e}")))?;
                prop_assert_eq!(&parsed, reference);
                prop_assert!(found.matches_literal(&n.to_string()));
            }
            (JsonValue::String(raw), Value::String(s)) => {
                let unescaped = raw.unescape();
                prop_assert_eq!(unescaped.as_deref(), Some(s.as_str()));
                prop_assert!(raw.eq_str(s));
                let longer = format!("{s}a");
                prop_assert!(!raw.eq_str(&longer));
                let key_bytes = found.key_bytes();
                prop_assert_eq!(key_bytes.as_deref(), Some(s.as_bytes()));
                prop_assert!(found.matches_literal(s));
            }
            (JsonValue::Object(raw), Value::Object(_))
            | (JsonValue::Array(raw), Value::Array(_)) => {
                let parsed: Value = serde_json::from_slice(raw)
                    .map_err(|e| TestCaseError::fail(format!("raw does not parse: {e}")))?;
                prop_assert_eq!(&parsed, reference);
                let key_bytes = found.key_bytes();
                prop_assert_eq!(key_bytes.as_deref(), Some(raw));
            }
            (found, reference) => {
                return Err(TestCaseError::fail(format!(
                    "kind mismatch: {found:?} vs {reference}"
                )));
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn lookup_agrees_with_serde_json(v in arb_json(), style in arb_style()) {
            let mut doc = String::new();
            write_value(&v, style, &mut doc);
            // serde_json's own view of the document is the reference (floats included).
            let reference: Value = serde_json::from_str(&doc).unwrap();
            let mut paths = Vec::new();
            sub_values(&v, &mut Vec::new(), &mut paths);
            for (p, original) in &paths {
                let expected = walk(&reference, p).unwrap();
                let found = lookup(doc.as_bytes(), p);
                prop_assert!(found.is_some(), "{} not found in {}", p, doc);
                check_found(found.unwrap(), original, expected)?;
                prop_assert_eq!(&JsonPath::parse(&p.to_string()).unwrap(), p);
            }
        }

        #[test]
        fn lookup_matches_reference_on_documents(
            v in arb_json(),
            style in arb_style(),
            cut in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
        ) {
            let mut doc = String::new();
            write_value(&v, style, &mut doc);
            let mut paths: Vec<JsonPath> = Vec::new();
            let mut found = Vec::new();
            sub_values(&v, &mut Vec::new(), &mut found);
            paths.extend(found.into_iter().map(|(p, _)| p));
            paths.extend(adversarial_paths());
            let bytes = doc.as_bytes();
            agrees_with_reference(bytes, &paths)?;
            agrees_with_reference(&bytes[..cut.index(bytes.len() + 1)], &paths)?;
            let mut mutated = bytes.to_vec();
            if !mutated.is_empty() {
                let at = flip.0.index(mutated.len());
                mutated[at] = flip.1;
            }
            agrees_with_reference(&mutated, &paths)?;
        }

        #[test]
        fn numbers_parse_as_the_standard_library_parses_them(
            text in prop_oneof![
                "-?[0-9]{1,17}(\\.[0-9]{1,17})?([eE][+-]?[0-9]{1,4})?",
                "-?(0|[1-9][0-9]{0,15})(\\.[0-9]{0,16}[1-9])?(e-?(1?[0-9]|2[0-4]))?",
                "[-+.eE0-9]{1,12}",
            ],
            f in any::<f64>(),
        ) {
            let bits = |t: &str| parse_f64(t.as_bytes()).map(f64::to_bits);
            let expected = |t: &str| reference::parse_f64(t.as_bytes()).map(f64::to_bits);
            prop_assert_eq!(bits(&text), expected(&text), "{}", text);
            for t in [format!("{f}"), format!("{f:e}"), format!("{f:.3}"), format!("{f:.12e}")] {
                prop_assert_eq!(bits(&t), expected(&t), "{}", t);
            }
        }

        #[test]
        fn lookup_matches_reference_on_adversarial_text(
            pieces in prop::collection::vec(arb_piece(), 0..24),
            wrap in any::<bool>(),
        ) {
            let mut doc = pieces.concat();
            if wrap {
                doc = format!("{{\"a\":{doc},\"k\":[{doc}],\"b\":1}}");
            }
            agrees_with_reference(doc.as_bytes(), &adversarial_paths())?;
        }

        #[test]
        fn truncated_documents_never_panic(
            v in arb_json(),
            style in arb_style(),
            cut in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
        ) {
            let mut doc = String::new();
            write_value(&v, style, &mut doc);
            let mut paths = Vec::new();
            sub_values(&v, &mut Vec::new(), &mut paths);
            paths.push((path("missing"), &Value::Null));
            paths.push((path("[0]"), &Value::Null));
            let bytes = doc.as_bytes();
            let prefix = &bytes[..cut.index(bytes.len() + 1)];
            let mut mutated = bytes.to_vec();
            if !mutated.is_empty() {
                let at = flip.0.index(mutated.len());
                mutated[at] = flip.1;
            }
            for (p, _) in &paths {
                let got = lookup(prefix, p);
                // A prefix reads the same bytes as the whole, so it finds the same value or none.
                prop_assert!(got.is_none() || got == lookup(bytes, p));
                if let Some(v) = lookup(&mutated, p) {
                    let _ = (v.key_bytes(), v.as_f64(), v.matches_literal("1"));
                }
            }
        }

        #[test]
        fn random_bytes_never_panic(
            doc in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                prop::collection::vec(
                    prop::sample::select(b"{}[]\",:\\ ua0-.eE+trufnl19".to_vec()),
                    0..64,
                ),
            ],
            p in prop::sample::select(vec!["a", "a.b", "[0]", "[1].a", "a[0][1]", "u"]),
        ) {
            if let Some(v) = lookup(&doc, &path(p)) {
                let _ = (v.raw(), v.key_bytes(), v.as_f64(), v.matches_literal("a"));
                if let JsonValue::String(s) = v {
                    let _ = (s.unescape(), s.eq_str("a"), s.has_escapes());
                }
            }
        }

        #[test]
        fn path_display_round_trips_any_key(
            segments in prop::collection::vec(
                prop_oneof![
                    any::<String>()
                        .prop_filter("non-empty", |k| !k.is_empty())
                        .prop_map(Segment::Key),
                    arb_key().prop_map(Segment::Key),
                    any::<usize>().prop_map(Segment::Index),
                ],
                1..5,
            ),
        ) {
            let p = JsonPath { segments };
            prop_assert_eq!(JsonPath::parse(&p.to_string()), Ok(p));
        }

        #[test]
        fn path_parse_never_panics(s in "[a-c.\\[\\]\"'\\\\0-9 é]{0,12}") {
            if let Ok(p) = JsonPath::parse(&s) {
                prop_assert_eq!(JsonPath::parse(&p.to_string()), Ok(p));
            }
        }
    }
}
