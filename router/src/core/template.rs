//! Output path templates for the file sink, and the names rotated files get.
//!
//! This module owns the template syntax (value placeholders, brace escapes and strftime
//! specifiers), its validation, the two-step rendering (time once per batch, values once per
//! record), the sanitization of record values put into paths, and rotation naming. It does no
//! I/O and never reads the clock: arrival times come in as Unix nanoseconds.

use std::ffi::{OsStr, OsString};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};

/// The longest substituted value, in bytes; longer values are truncated.
pub const VALUE_BYTES_MAX: usize = 200;

/// What a missing or empty value renders as.
pub const MISSING_VALUE: &str = "_none_";

/// A template that failed to parse: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// 0-based index of the offending character (in characters, not bytes) in the template.
    pub offset: usize,
    /// What is wrong, for people.
    pub message: String,
}

impl TemplateError {
    fn new(offset: usize, message: impl Into<String>) -> TemplateError {
        TemplateError {
            offset,
            message: message.into(),
        }
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for TemplateError {}

/// A record value a template can substitute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Value {
    PartitionKey,
    Source,
    Attr(Box<str>),
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Fixed text, escapes already resolved.
    Literal(String),
    /// Text with at least one strftime specifier, rendered from the arrival time.
    Time(Vec<Item<'static>>),
    /// A record value.
    Value(Value),
}

/// A parsed, validated output path template.
///
/// Syntax:
/// - `{partition_key}`, `{source}` and `{attr.NAME}` (NAME non-empty, made of `A-Z a-z 0-9 _ . -`)
///   are replaced by the record's partition key, source name and attribute NAME;
/// - `{{` and `}}` are a literal `{` and `}`;
/// - strftime specifiers as chrono's [`StrftimeItems`] accepts them (`%Y %m %d %H %M %S %j %y
///   %b %a %s`, ...) render the batch's arrival time in UTC, and `%%` is a literal `%`.
///
/// Substituted values are sanitized so that a record can never leave the directory the template
/// names nor create odd file names:
/// - a value is cut to its first [`VALUE_BYTES_MAX`] bytes;
/// - every byte outside `A-Z a-z 0-9 . _ = -` becomes `_` (so `/`, `\`, spaces, non-ASCII and
///   invalid UTF-8 each turn into one `_` per byte);
/// - a missing or empty value becomes [`MISSING_VALUE`] (`_none_`);
/// - a value that is exactly `.` or `..` becomes `_`.
///
/// Time specifiers are the template author's text and are not sanitized (`%D` contains `/`).
/// Absolute templates are allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    text: String,
    parts: Vec<Part>,
    attributes: Vec<Box<str>>,
    uses_time: bool,
    uses_partition_key: bool,
}

/// The run of text between placeholders while it is being parsed.
#[derive(Default)]
struct TextRun {
    /// The text with brace escapes resolved and `%%` kept for chrono.
    text: String,
    /// Byte position in `text` and template character offset of every `%` that starts a
    /// specifier (not `%%`).
    specifiers: Vec<(usize, usize)>,
}

impl TextRun {
    /// Turns the run into a part, validating its specifiers; `None` if the run is empty.
    fn finish(&mut self) -> Result<Option<Part>, TemplateError> {
        let text = std::mem::take(&mut self.text);
        let specifiers = std::mem::take(&mut self.specifiers);
        if text.is_empty() {
            return Ok(None);
        }
        if specifiers.is_empty() {
            return Ok(Some(Part::Literal(text.replace("%%", "%"))));
        }
        // Check each specifier with the text up to the next one, so an error names its place.
        for (k, &(start, offset)) in specifiers.iter().enumerate() {
            let end = specifiers.get(k + 1).map_or(text.len(), |&(next, _)| next);
            let chunk = text.get(start..end).unwrap_or_default();
            if StrftimeItems::new(chunk).parse().is_err() {
                return Err(TemplateError::new(offset, specifier_message(chunk)));
            }
        }
        let first_offset = specifiers.first().map_or(0, |&(_, offset)| offset);
        match StrftimeItems::new(&text).parse_to_owned() {
            Ok(items) => Ok(Some(Part::Time(items))),
            Err(_) => Err(TemplateError::new(
                first_offset,
                "invalid strftime format in this text",
            )),
        }
    }
}

fn specifier_message(chunk: &str) -> String {
    let mut chars = chunk.chars();
    chars.next(); // the '%'
    match chars.next() {
        None => "`%` at the end of the text: write `%%` for a literal percent sign".to_owned(),
        Some(c) => format!("invalid strftime specifier starting `%{c}`"),
    }
}

fn is_attribute_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Parses the inside of `{...}`; `open` is the character offset of the `{`.
fn parse_placeholder(inner: &[char], open: usize) -> Result<Value, TemplateError> {
    let name: String = inner.iter().collect();
    match name.as_str() {
        "partition_key" => return Ok(Value::PartitionKey),
        "source" => return Ok(Value::Source),
        _ => {}
    }
    let Some(attribute) = name.strip_prefix("attr.") else {
        return Err(TemplateError::new(
            open,
            format!(
                "unknown placeholder `{{{name}}}`: expected `{{partition_key}}`, `{{source}}` \
                 or `{{attr.NAME}}` (write `{{{{` for a literal brace)"
            ),
        ));
    };
    let name_offset = open + 1 + "attr.".len();
    if attribute.is_empty() {
        return Err(TemplateError::new(
            name_offset,
            "empty attribute name in `{attr.}`",
        ));
    }
    if let Some((i, c)) = attribute
        .chars()
        .enumerate()
        .find(|&(_, c)| !is_attribute_char(c))
    {
        return Err(TemplateError::new(
            name_offset + i,
            format!(
                "attribute names may only contain A-Z, a-z, 0-9, `_`, `.` and `-`, found `{c}`"
            ),
        ));
    }
    Ok(Value::Attr(attribute.into()))
}

impl PathTemplate {
    /// Parses and validates a template.
    ///
    /// # Errors
    ///
    /// A [`TemplateError`] naming the character where the problem starts: empty template,
    /// unclosed `{`, unmatched `}`, unknown placeholder, empty or malformed attribute name,
    /// invalid strftime specifier.
    pub fn parse(s: &str) -> Result<PathTemplate, TemplateError> {
        if s.is_empty() {
            return Err(TemplateError::new(0, "empty template"));
        }
        let chars: Vec<char> = s.chars().collect();
        let mut parts = Vec::new();
        let mut run = TextRun::default();
        let mut i = 0;
        while let Some(rest) = chars.get(i..).filter(|rest| !rest.is_empty()) {
            match rest {
                ['{', '{', ..] => {
                    run.text.push('{');
                    i += 2;
                }
                ['{', after @ ..] => {
                    let Some(len) = after.iter().position(|&c| c == '}') else {
                        return Err(TemplateError::new(
                            i,
                            "unclosed `{`: close it with `}` or write `{{` for a literal brace",
                        ));
                    };
                    let value = parse_placeholder(after.get(..len).unwrap_or_default(), i)?;
                    parts.extend(run.finish()?);
                    parts.push(Part::Value(value));
                    i += len + 2;
                }
                ['}', '}', ..] => {
                    run.text.push('}');
                    i += 2;
                }
                ['}', ..] => {
                    return Err(TemplateError::new(
                        i,
                        "unmatched `}`: write `}}` for a literal brace",
                    ));
                }
                ['%', '%', ..] => {
                    run.text.push_str("%%");
                    i += 2;
                }
                ['%', ..] => {
                    run.specifiers.push((run.text.len(), i));
                    run.text.push('%');
                    i += 1;
                }
                [c, ..] => {
                    run.text.push(*c);
                    i += 1;
                }
                [] => break,
            }
        }
        parts.extend(run.finish()?);

        let mut attributes: Vec<Box<str>> = Vec::new();
        for part in &parts {
            if let Part::Value(Value::Attr(name)) = part
                && !attributes.contains(name)
            {
                attributes.push(name.clone());
            }
        }
        Ok(PathTemplate {
            text: s.to_owned(),
            uses_time: parts.iter().any(|p| matches!(p, Part::Time(_))),
            uses_partition_key: parts
                .iter()
                .any(|p| matches!(p, Part::Value(Value::PartitionKey))),
            parts,
            attributes,
        })
    }

    /// True if the template has no placeholders and no time specifiers: it names one fixed path.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// True if the template has at least one time specifier (`%%` does not count).
    pub fn uses_time(&self) -> bool {
        self.uses_time
    }

    /// True if the template has a `{partition_key}` placeholder.
    pub fn uses_partition_key(&self) -> bool {
        self.uses_partition_key
    }

    /// The attribute names the template uses, each once, in order of first appearance.
    pub fn attributes(&self) -> impl Iterator<Item = &str> {
        self.attributes.iter().map(|name| &**name)
    }

    /// The template as written.
    pub fn source_text(&self) -> &str {
        &self.text
    }

    /// Renders the time specifiers for an arrival time (Unix nanoseconds, UTC).
    ///
    /// Times past `i64::MAX` nanoseconds (year 2262) are clamped to it.
    pub fn at_time(&self, unix_nanos: u64) -> TimedTemplate {
        let time =
            DateTime::<Utc>::from_timestamp_nanos(i64::try_from(unix_nanos).unwrap_or(i64::MAX));
        let mut parts: Vec<TimedPart> = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let text = match part {
                Part::Literal(text) => text.clone(),
                Part::Time(items) => {
                    let mut text = String::new();
                    // Formatting validated items for a UTC time cannot fail; if chrono ever did,
                    // the time part would render as whatever it wrote before failing.
                    let _ = write!(text, "{}", time.format_with_items(items.iter()));
                    text
                }
                Part::Value(value) => {
                    parts.push(TimedPart::Value(value.clone()));
                    continue;
                }
            };
            if let Some(TimedPart::Literal(previous)) = parts.last_mut() {
                previous.push_str(&text);
            } else {
                parts.push(TimedPart::Literal(text));
            }
        }
        TimedTemplate { parts }
    }
}

/// One piece of a template whose time parts are rendered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TimedPart {
    Literal(String),
    Value(Value),
}

/// A template with its time parts rendered; only record values are left to fill.
///
/// Values are sanitized as described on [`PathTemplate`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TimedTemplate {
    parts: Vec<TimedPart>,
}

impl TimedTemplate {
    /// Renders the path for one record. `partition_key` and `source` are the record's; `attr`
    /// looks up an attribute by name.
    ///
    /// `out` is cleared first, so one buffer can be reused for every record.
    ///
    /// `'v` lets `attr` return values borrowed from the record rather than from the name.
    pub fn render<'v>(
        &self,
        partition_key: Option<&[u8]>,
        source: &str,
        attr: &dyn Fn(&str) -> Option<&'v [u8]>,
        out: &mut String,
    ) {
        out.clear();
        for part in &self.parts {
            match part {
                TimedPart::Literal(text) => out.push_str(text),
                TimedPart::Value(Value::PartitionKey) => push_sanitized(out, partition_key),
                TimedPart::Value(Value::Source) => push_sanitized(out, Some(source.as_bytes())),
                TimedPart::Value(Value::Attr(name)) => push_sanitized(out, attr(name)),
            }
        }
    }

    /// True if rendering needs no record values: every record gets the same path.
    pub fn is_fixed(&self) -> bool {
        self.parts
            .iter()
            .all(|p| matches!(p, TimedPart::Literal(_)))
    }
}

fn is_safe_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'=' | b'-')
}

/// Appends `value` to `out` following the sanitization rules on [`PathTemplate`].
fn push_sanitized(out: &mut String, value: Option<&[u8]>) {
    let value = match value {
        Some(value) if !value.is_empty() => value,
        _ => {
            out.push_str(MISSING_VALUE);
            return;
        }
    };
    let value = value.get(..VALUE_BYTES_MAX).unwrap_or(value);
    if value == b"." || value == b".." {
        out.push('_');
        return;
    }
    out.extend(
        value
            .iter()
            .map(|&b| if is_safe_byte(b) { char::from(b) } else { '_' }),
    );
}

/// The name a file gets for rotation sequence `seq`: the sequence goes before the last extension
/// of the file name: `a/b/14.ndjson` -> `a/b/14.3.ndjson`, `x.ndjson.gz` -> `x.ndjson.3.gz`,
/// `data` -> `data.3`, `.hidden` -> `.hidden.3`, `dir.d/file` -> `dir.d/file.3`.
///
/// A path without a file name (`/`, `a/..`) gets `.seq` appended to the whole path.
pub fn rotated_path(path: &Path, seq: u64) -> PathBuf {
    let Some(name) = path.file_name() else {
        let mut whole = path.as_os_str().to_owned();
        whole.push(format!(".{seq}"));
        return PathBuf::from(whole);
    };
    let (stem, extension) = split_extension(name);
    let mut rotated = OsString::from(stem);
    rotated.push(format!(".{seq}"));
    if let Some(extension) = extension {
        rotated.push(".");
        rotated.push(extension);
    }
    path.with_file_name(rotated)
}

/// Splits a file name at its last extension, as [`Path::file_stem`] and [`Path::extension`] do.
fn split_extension(name: &OsStr) -> (&OsStr, Option<&OsStr>) {
    let name_path = Path::new(name);
    (name_path.file_stem().unwrap_or(name), name_path.extension())
}

/// Given the file names present in the directory of `path`, the largest rotation sequence already
/// used for `path` (0 if none), so the next rotation uses that + 1.
///
/// Only names exactly as [`rotated_path`] makes them count: `14.3.ndjson` does for
/// `14.ndjson`, but `14.x.ndjson`, `14.03.ndjson` and `14.3.ndjson.tmp` do not.
pub fn max_rotation_seq<'a>(path: &Path, names_in_dir: impl IntoIterator<Item = &'a OsStr>) -> u64 {
    let Some(name) = path.file_name() else {
        return 0;
    };
    let (stem, extension) = split_extension(name);
    let mut prefix = stem.as_encoded_bytes().to_vec();
    prefix.push(b'.');
    let mut suffix = Vec::new();
    if let Some(extension) = extension {
        suffix.push(b'.');
        suffix.extend_from_slice(extension.as_encoded_bytes());
    }
    names_in_dir
        .into_iter()
        .filter_map(|candidate| rotation_seq(candidate.as_encoded_bytes(), &prefix, &suffix))
        .max()
        .unwrap_or(0)
}

/// The sequence in `name` if it is `prefix` + canonical decimal + `suffix`.
fn rotation_seq(name: &[u8], prefix: &[u8], suffix: &[u8]) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    let canonical = match digits {
        [] | [b'0', _, ..] => false,
        _ => digits.iter().all(u8::is_ascii_digit),
    };
    if !canonical {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const T_2016: u64 = 1_458_867_680 * 1_000_000_000; // 2016-03-25T01:01:20Z

    fn no_attrs(_: &str) -> Option<&'static [u8]> {
        None
    }

    fn render(template: &str, nanos: u64, pk: Option<&[u8]>, source: &str) -> String {
        let t = PathTemplate::parse(template).unwrap();
        let mut out = String::from("stale");
        t.at_time(nanos).render(pk, source, &no_attrs, &mut out);
        out
    }

    fn err(template: &str) -> (usize, String) {
        let e = PathTemplate::parse(template).unwrap_err();
        (e.offset, e.message)
    }

    #[test]
    fn renders_every_placeholder_kind() {
        let t = PathTemplate::parse("logs/{source}-{attr.host}/{partition_key}/%Y-%m-%dT%H.log.gz")
            .unwrap();
        let attrs: HashMap<&str, &[u8]> = [("host", &b"web-1"[..])].into_iter().collect();
        let lookup = |name: &str| attrs.get(name).copied();
        let mut out = String::new();
        t.at_time(T_2016)
            .render(Some(b"user=42"), "nginx", &lookup, &mut out);
        assert_eq!(out, "logs/nginx-web-1/user=42/2016-03-25T01.log.gz");
    }

    #[test]
    fn renders_time_at_known_instant() {
        assert_eq!(render("%Y/%m/%d/%H", T_2016, None, "s"), "2016/03/25/01");
        assert_eq!(
            render("%M:%S %j %y %b %a %s %%", T_2016, None, "s"),
            "01:20 085 16 Mar Fri 1458867680 %"
        );
        assert_eq!(render("%Y-%m-%d", 0, None, "s"), "1970-01-01");
        // Nanoseconds within the second do not round the time up.
        assert_eq!(render("%S", T_2016 + 999_999_999, None, "s"), "20");
        assert_eq!(render("%Y", u64::MAX, None, "s"), "2262");
    }

    #[test]
    fn time_part_is_rendered_once_per_batch() {
        let t = PathTemplate::parse("out/{partition_key}/%H.ndjson").unwrap();
        let timed = t.at_time(T_2016);
        assert_eq!(timed, t.at_time(T_2016 + 1_000_000_000));
        assert_ne!(timed, t.at_time(T_2016 + 3_600 * 1_000_000_000));
        let mut out = String::new();
        timed.render(Some(b"a"), "s", &no_attrs, &mut out);
        assert_eq!(out, "out/a/01.ndjson");
        timed.render(Some(b"b"), "s", &no_attrs, &mut out);
        assert_eq!(out, "out/b/01.ndjson");
    }

    #[test]
    fn sanitizes_values() {
        let cases: &[(&[u8], &str)] = &[
            (b"a/b", "a_b"),
            (b"../../etc/passwd", ".._.._etc_passwd"),
            (b"..", "_"),
            (b".", "_"),
            (b"...", "..."),
            (b"", "_none_"),
            ("h\u{e9}".as_bytes(), "h__"),
            (b"\xff\xfe", "__"),
            (b"a b\\c\0d", "a_b_c_d"),
            (b"k=v.x_y-z", "k=v.x_y-z"),
        ];
        for &(value, expected) in cases {
            assert_eq!(
                render("{partition_key}", 0, Some(value), "s"),
                expected,
                "{value:?}"
            );
        }
        assert_eq!(render("{partition_key}", 0, None, "s"), "_none_");
        assert_eq!(render("{source}", 0, None, ""), "_none_");
        assert_eq!(render("x/{attr.missing}/y", 0, None, "s"), "x/_none_/y");
        let long = vec![b'a'; 500];
        assert_eq!(
            render("{partition_key}", 0, Some(&long), "s"),
            "a".repeat(200)
        );
        let long_unicode = "\u{e9}".repeat(150);
        assert_eq!(render("{source}", 0, None, &long_unicode), "_".repeat(200));
    }

    #[test]
    fn brace_and_percent_escapes() {
        assert_eq!(render("a{{b}}c", 0, None, "s"), "a{b}c");
        assert_eq!(render("{{{source}}}", 0, None, "s"), "{s}");
        assert_eq!(render("100%%/{{%Y}}", T_2016, None, "s"), "100%/{2016}");
        let t = PathTemplate::parse("a%%b{{}}").unwrap();
        assert!(t.is_static());
        assert!(!t.uses_time());
        assert_eq!(render("a%%b{{}}", 0, None, "s"), "a%b{}");
    }

    #[test]
    fn reports_properties() {
        let t = PathTemplate::parse("/var/out/{attr.b}{attr.a}/{attr.b}/%Y.log").unwrap();
        assert!(!t.is_static());
        assert!(t.uses_time());
        assert!(!t.uses_partition_key());
        assert_eq!(t.attributes().collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(t.source_text(), "/var/out/{attr.b}{attr.a}/{attr.b}/%Y.log");

        let fixed = PathTemplate::parse("/var/out/all.ndjson").unwrap();
        assert!(fixed.is_static());
        assert!(fixed.at_time(5).is_fixed());
        assert_eq!(
            render("/var/out/all.ndjson", 5, None, "s"),
            "/var/out/all.ndjson"
        );

        let timed = PathTemplate::parse("{partition_key}.ndjson").unwrap();
        assert!(timed.uses_partition_key());
        assert!(!timed.uses_time());
        assert!(!timed.is_static());
        assert!(!timed.at_time(0).is_fixed());
        assert!(PathTemplate::parse("%Y").unwrap().at_time(0).is_fixed());
    }

    #[test]
    fn attr_lookup_may_borrow_from_the_record() {
        struct Record {
            attributes: HashMap<String, Vec<u8>>,
        }
        let record = Record {
            attributes: [("host".to_owned(), b"db/2".to_vec())]
                .into_iter()
                .collect(),
        };
        let t = PathTemplate::parse("{attr.host}/{attr.zone}").unwrap();
        let mut out = String::new();
        t.at_time(0).render(
            None,
            "s",
            &|name| record.attributes.get(name).map(Vec::as_slice),
            &mut out,
        );
        assert_eq!(out, "db_2/_none_");
    }

    #[test]
    fn attribute_names() {
        let t = PathTemplate::parse("{attr.a-b.c_D9}").unwrap();
        assert_eq!(t.attributes().collect::<Vec<_>>(), ["a-b.c_D9"]);
        let lookup = |name: &str| (name == "a-b.c_D9").then_some(&b"v"[..]);
        let mut out = String::new();
        t.at_time(0).render(None, "s", &lookup, &mut out);
        assert_eq!(out, "v");
    }

    #[test]
    fn parse_errors_name_their_offset() {
        assert_eq!(err("").0, 0);
        assert_eq!(err("").1, "empty template");
        let (offset, message) = err("out/{bogus}/x");
        assert_eq!(offset, 4);
        assert!(
            message.contains("unknown placeholder `{bogus}`"),
            "{message}"
        );
        assert_eq!(err("out/{source").0, 4);
        assert!(err("out/{source").1.contains("unclosed"));
        assert_eq!(err("ab}").0, 2);
        assert!(err("ab}").1.contains("unmatched `}`"));
        assert_eq!(err("x/{attr.}").0, 8);
        assert!(err("x/{attr.}").1.contains("empty attribute name"));
        assert_eq!(err("{attr.a b}").0, 7);
        assert!(err("{attr.a/b}").1.contains("found `/`"));
        assert_eq!(err("{attr}").0, 0);
        assert_eq!(err("{}").0, 0);
        assert_eq!(err("{ source }").0, 0);
        let (offset, message) = err("%Y/%Q/x");
        assert_eq!(offset, 3);
        assert!(message.contains("`%Q`"), "{message}");
        let (offset, message) = err("a/%Y%");
        assert_eq!(offset, 4);
        assert!(message.contains("at the end"), "{message}");
        // The run ends at a placeholder, so a `%` before one is unfinished.
        assert_eq!(err("%{source}").0, 0);
        // Offsets count characters, not bytes, and brace escapes count as two.
        assert_eq!(err("\u{e9}\u{e9}{{%Q").0, 4);
        assert_eq!(err("\u{e9}}").0, 1);
        let e = PathTemplate::parse("ab}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "at character 2: unmatched `}`: write `}}` for a literal brace"
        );
        let _: &dyn std::error::Error = &e;
    }

    #[test]
    fn accepts_chrono_specifiers() {
        for template in [
            "%F", "%D", "%T", "%.3f", "%-d", "%_H", "%z", "%:z", "%Z", "%e", "%+",
        ] {
            let t = PathTemplate::parse(template);
            assert!(t.is_ok(), "{template}: {t:?}");
            assert!(t.unwrap().uses_time());
        }
        assert_eq!(
            render("%F %T%.3f", T_2016 + 5_000_000, None, "s"),
            "2016-03-25 01:01:20.005"
        );
    }

    #[test]
    fn rotated_paths() {
        let cases = [
            ("a/b/14.ndjson", "a/b/14.3.ndjson"),
            ("x.ndjson.gz", "x.ndjson.3.gz"),
            ("data", "data.3"),
            (".hidden", ".hidden.3"),
            ("dir.d/file", "dir.d/file.3"),
            ("/abs/out/01.log", "/abs/out/01.3.log"),
        ];
        for (path, expected) in cases {
            assert_eq!(
                rotated_path(Path::new(path), 3),
                Path::new(expected),
                "{path}"
            );
        }
        assert_eq!(rotated_path(Path::new("/"), 1), Path::new("/.1"));
    }

    #[test]
    fn max_rotation_seq_counts_only_own_names() {
        let path = Path::new("a/b/14.ndjson");
        let names = |list: &[&'static str]| -> Vec<&'static OsStr> {
            list.iter().map(|&name| OsStr::new(name)).collect()
        };
        assert_eq!(max_rotation_seq(path, names(&[])), 0);
        assert_eq!(max_rotation_seq(path, names(&["14.ndjson"])), 0);
        assert_eq!(
            max_rotation_seq(
                path,
                names(&["14.ndjson", "14.1.ndjson", "14.12.ndjson", "14.3.ndjson"])
            ),
            12
        );
        let lookalikes = [
            "14.x.ndjson",
            "14.3.ndjson.tmp",
            "14.03.ndjson",
            "14..ndjson",
            "14.-3.ndjson",
            "14.3.4.ndjson",
            "140.3.ndjson",
            "4.3.ndjson",
            "14.3.ndjso",
            "14.3",
            "14.99999999999999999999999.ndjson",
        ];
        assert_eq!(max_rotation_seq(path, names(&lookalikes)), 0);
        assert_eq!(
            max_rotation_seq(Path::new("data"), names(&["data.7", "data.x", "data"])),
            7
        );
        assert_eq!(
            max_rotation_seq(
                Path::new("x.ndjson.gz"),
                names(&["x.ndjson.5.gz", "x.5.ndjson.gz"])
            ),
            5
        );
        assert_eq!(
            max_rotation_seq(Path::new(".hidden"), names(&[".hidden.2"])),
            2
        );
        assert_eq!(max_rotation_seq(Path::new("/"), names(&[".1"])), 0);
    }

    #[test]
    fn rotation_round_trips() {
        for path in [
            "a/14.ndjson",
            "x.ndjson.gz",
            "data",
            ".hidden",
            "dir.d/file",
            "file.",
        ] {
            let path = Path::new(path);
            for seq in [0, 1, 9, 10, 12345, u64::MAX] {
                let rotated = rotated_path(path, seq);
                let name = rotated.file_name().unwrap();
                assert_eq!(max_rotation_seq(path, [name]), seq, "{path:?} {seq}");
            }
        }
    }

    #[test]
    fn rotation_with_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("14.ndjson");
        std::fs::write(&path, b"").unwrap();
        for _ in 0..3 {
            let names: Vec<OsString> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            let next = max_rotation_seq(&path, names.iter().map(OsString::as_os_str)) + 1;
            let target = rotated_path(&path, next);
            assert!(!target.exists());
            std::fs::write(target, b"").unwrap();
        }
        assert!(dir.path().join("14.3.ndjson").exists());
    }

    fn value_strategy() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop_oneof![
            Just(None),
            Just(Some(b".".to_vec())),
            Just(Some(b"..".to_vec())),
            Just(Some(b"/".to_vec())),
            proptest::collection::vec(
                prop_oneof![Just(b'.'), Just(b'/'), Just(b'\\'), any::<u8>()],
                0..300
            )
            .prop_map(Some),
        ]
    }

    proptest! {
        #[test]
        fn values_never_escape(
            pk in value_strategy(),
            source in "[./a\\\\é]{0,5}",
            attr in value_strategy(),
            nanos in any::<u64>(),
            layout in 0usize..4,
        ) {
            let template = [
                "out/{partition_key}/{source}/{attr.x}/%Y.log",
                "{partition_key}{attr.x}/{source}",
                ".{partition_key}./..x/{attr.x}{source}",
                "/{attr.x}",
            ][layout];
            let t = PathTemplate::parse(template).unwrap();
            let lookup = |name: &str| if name == "x" { attr.as_deref() } else { None };
            let mut out = String::new();
            t.at_time(nanos).render(pk.as_deref(), &source, &lookup, &mut out);
            prop_assert!(out.split('/').all(|c| c != ".." && c != "."), "{out}");
            // Slashes only where the template has them.
            let template_slashes = template.matches('/').count();
            prop_assert_eq!(out.matches('/').count(), template_slashes, "{}", out);
            prop_assert!(!out.contains('\\'));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            if let Ok(t) = PathTemplate::parse(&s) {
                let mut out = String::new();
                t.at_time(T_2016).render(Some(b"k"), "s", &no_attrs, &mut out);
            }
        }

        #[test]
        fn parse_never_panics_on_template_chars(s in "[{}%a.YmQ/]{0,20}") {
            if let Err(e) = PathTemplate::parse(&s) {
                prop_assert!(e.offset < s.chars().count().max(1));
            }
        }
    }
}
