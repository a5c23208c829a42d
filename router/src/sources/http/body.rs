//! Request bodies -> records, with no I/O: decompression within a size limit, then one of the
//! body formats (NDJSON, plain lines, a JSON array, one raw record).
//!
//! Records are spans into the (decompressed) body, never copies. Any problem rejects the whole
//! body with a [`BodyError`] that names the line or element at fault, so a request is accepted
//! whole or not at all.

use std::io::Read;

use bytes::Bytes;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::core::framing::{FramerConfig, LineFramer, Why, json_errors};
use crate::core::record::Span;

/// How a body is cut into records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON document per line; every line must be valid JSON.
    Ndjson,
    /// One record per line, any bytes.
    Lines,
    /// A JSON array; each element is one record (its JSON text).
    Array,
    /// The whole body is one record.
    Raw,
}

impl Format {
    /// Parses a `format` name (`ndjson`, `lines`, `array`, `raw`).
    pub fn from_name(name: &str) -> Option<Format> {
        Some(match name {
            "ndjson" => Format::Ndjson,
            "lines" => Format::Lines,
            "array" => Format::Array,
            "raw" => Format::Raw,
            _ => return None,
        })
    }

    /// The format a request asks for: the `format` query parameter if given, else its
    /// `Content-Type` (`application/octet-stream` -> raw, `text/plain` -> lines,
    /// `application/json` -> array when the body starts with `[`, else NDJSON), else `default`.
    pub fn choose(
        query: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
        default: Format,
    ) -> Result<Format, BodyError> {
        if let Some(q) = query {
            return Format::from_name(q).ok_or_else(|| BodyError::BadFormat(q.to_owned()));
        }
        let Some(ct) = content_type else {
            return Ok(default);
        };
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        Ok(match mime.as_str() {
            "application/octet-stream" => Format::Raw,
            "text/plain" => Format::Lines,
            "application/json" => {
                let first = body.iter().find(|b| !b.is_ascii_whitespace());
                if first == Some(&b'[') {
                    Format::Array
                } else {
                    Format::Ndjson
                }
            }
            "application/x-ndjson"
            | "application/jsonl"
            | "application/jsonlines"
            | "application/x-jsonlines" => Format::Ndjson,
            _ => default,
        })
    }
}

/// A body's `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Not compressed.
    Identity,
    /// gzip (one or more members).
    Gzip,
    /// Zstandard.
    Zstd,
}

impl Encoding {
    /// Parses a `Content-Encoding` header value.
    pub fn from_header(value: Option<&str>) -> Result<Encoding, BodyError> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("" | "identity") => Ok(Encoding::Identity),
            Some("gzip" | "x-gzip") => Ok(Encoding::Gzip),
            Some("zstd") => Ok(Encoding::Zstd),
            Some(other) => Err(BodyError::BadEncoding(other.to_owned())),
        }
    }
}

/// Size limits for one body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Largest body, before and after decompression.
    pub max_body_bytes: usize,
    /// Largest record.
    pub max_record_bytes: usize,
}

/// Why a body was refused. Nothing from it is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Unknown `format` parameter.
    #[error("unknown format {0:?}; expected one of: ndjson, lines, array, raw")]
    BadFormat(String),
    /// Unknown `Content-Encoding`.
    #[error("unsupported Content-Encoding {0:?}; expected gzip, zstd or identity")]
    BadEncoding(String),
    /// The body does not decompress.
    #[error("body is not valid {encoding}: {message}")]
    Corrupt {
        /// `gzip` or `zstd`.
        encoding: &'static str,
        /// The decoder's words.
        message: String,
    },
    /// The body, before or after decompression, is over the limit.
    #[error("body exceeds max_body_bytes ({limit} bytes){after}")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
        /// `" after decompression"` when that is where it grew too large.
        after: &'static str,
    },
    /// One record is over the limit.
    #[error("{at}: record of {size} bytes exceeds max_record_bytes ({limit})")]
    RecordTooLarge {
        /// `line N` or `element N`.
        at: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: usize,
    },
    /// A line or element is not valid JSON, or the array is malformed.
    #[error("{at}: invalid JSON: {message}")]
    Json {
        /// `line N` or `element N`.
        at: String,
        /// The parser's words.
        message: String,
    },
    /// No records in the body.
    #[error("body holds no records")]
    Empty,
    /// The source's memory budget (`max_inflight_bytes`) cannot hold what the body needs: now
    /// (`busy`, retry later) or ever.
    #[error("{message}")]
    Memory {
        /// True when other requests hold the budget now.
        busy: bool,
        /// What could not be held.
        message: String,
    },
}

impl BodyError {
    /// The HTTP status that reports this error.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::BodyTooLarge { .. } | BodyError::RecordTooLarge { .. } => 413,
            BodyError::Memory { busy: false, .. } => 413,
            BodyError::Memory { busy: true, .. } => 503,
            BodyError::BadEncoding(_) => 415,
            _ => 400,
        }
    }
}

/// Memory accounting for what decoding and parsing a body allocate (the HTTP source implements
/// it over its `max_inflight_bytes` budget).
pub trait Reserve {
    /// Takes `n` more bytes, or says why not ([`BodyError::Memory`]).
    fn grow(&mut self, n: usize) -> Result<(), BodyError>;
    /// Gives `n` bytes back.
    fn release(&mut self, n: usize);
}

/// No accounting (for tools and tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct Unbounded;

impl Reserve for Unbounded {
    fn grow(&mut self, _n: usize) -> Result<(), BodyError> {
        Ok(())
    }
    fn release(&mut self, _n: usize) {}
}

/// Decompresses `raw` per `encoding`, refusing output over `max` bytes (a small compressed body
/// can expand enormously: it is never decompressed past the limit). Every allocation of the
/// output is taken from `mem` first (while the output buffer is reallocated, both the old and
/// the new buffer count); on success `mem` holds the output's capacity.
pub fn decode_content(
    raw: Bytes,
    encoding: Encoding,
    max: usize,
    mem: &mut dyn Reserve,
) -> Result<Bytes, BodyError> {
    /// Bytes decompressed per read.
    const STEP: usize = 64 << 10;
    let mut reader: Box<dyn Read + '_> = match encoding {
        Encoding::Identity => return Ok(raw),
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&raw[..])),
        Encoding::Zstd => match zstd::stream::read::Decoder::with_buffer(&raw[..]) {
            Ok(d) => Box::new(d),
            Err(e) => {
                return Err(BodyError::Corrupt {
                    encoding: "zstd",
                    message: e.to_string(),
                });
            }
        },
    };
    let name = if encoding == Encoding::Gzip {
        "gzip"
    } else {
        "zstd"
    };
    let mut step = vec![0u8; STEP];
    mem.grow(STEP)?;
    let mut out: Vec<u8> = Vec::new();
    let result = loop {
        let n = match reader.read(&mut step) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                break Err(BodyError::Corrupt {
                    encoding: name,
                    message: e.to_string(),
                });
            }
        };
        if out.len() + n > max {
            break Err(BodyError::BodyTooLarge {
                limit: max,
                after: " after decompression",
            });
        }
        if out.len() + n > out.capacity() {
            let old = out.capacity();
            let new = (old * 2).max(out.len() + n).max(STEP).min(max);
            // The old buffer lives until the new one holds its bytes.
            if let Err(e) = mem.grow(new) {
                break Err(e);
            }
            out.reserve_exact(new - out.len());
            mem.release(old);
        }
        out.extend_from_slice(&step[..n]);
    };
    drop(step);
    mem.release(STEP);
    match result {
        Ok(()) => Ok(Bytes::from(out)),
        Err(e) => {
            mem.release(out.capacity());
            Err(e)
        }
    }
}

/// An upper bound of the bytes [`parse`] allocates for `data` in `format` (its span table, and
/// for arrays the element list it builds first): what a caller reserves before parsing.
pub fn parse_memory(data: &[u8], format: Format) -> usize {
    let span = std::mem::size_of::<Span>();
    match format {
        Format::Raw => span,
        Format::Lines | Format::Ndjson => (memchr::memchr_iter(b'\n', data).count() + 1) * span,
        Format::Array => {
            (memchr::memchr_iter(b',', data).count() + 1) * (span + std::mem::size_of::<&str>())
        }
    }
}

/// The records of a body: spans into `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The (decompressed) body.
    pub data: Bytes,
    /// One span per record, in body order.
    pub spans: Vec<Span>,
}

/// Cuts a decompressed body into records. `data` must be under 4 GiB (it is bounded by
/// `max_body_bytes` well before that).
pub fn parse(data: Bytes, format: Format, limits: &BodyLimits) -> Result<Parsed, BodyError> {
    let spans = match format {
        Format::Raw => {
            if data.is_empty() {
                return Err(BodyError::Empty);
            }
            if data.len() > limits.max_record_bytes {
                return Err(BodyError::RecordTooLarge {
                    at: "body".into(),
                    size: data.len() as u64,
                    limit: limits.max_record_bytes,
                });
            }
            vec![span(0, data.len())]
        }
        Format::Lines | Format::Ndjson => lines(&data, format == Format::Ndjson, limits)?,
        Format::Array => array(&data, limits)?,
    };
    if spans.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(Parsed { data, spans })
}

fn span(start: usize, end: usize) -> Span {
    Span {
        start: u32::try_from(start).unwrap_or(u32::MAX),
        end: u32::try_from(end).unwrap_or(u32::MAX),
    }
}

fn lines(data: &[u8], validate: bool, limits: &BodyLimits) -> Result<Vec<Span>, BodyError> {
    let mut framer = LineFramer::new(FramerConfig {
        max_record_bytes: limits.max_record_bytes,
        skip_empty: true,
    });
    let mut spans = Vec::new();
    let mut rejected = Vec::new();
    framer.scan(data, true, &mut spans, &mut rejected);
    if let Some(r) = rejected.first() {
        return Err(match r.why {
            Why::TooLong | Why::Incomplete => BodyError::RecordTooLarge {
                at: format!("line {}", r.line),
                size: r.size,
                limit: limits.max_record_bytes,
            },
        });
    }
    if validate && let Some((i, message)) = json_errors(data, &spans).into_iter().next() {
        let start = spans.get(i).map_or(0, |s| s.start as usize);
        let line = 1 + memchr::memchr_iter(b'\n', &data[..start]).count();
        return Err(BodyError::Json {
            at: format!("line {line}"),
            message,
        });
    }
    Ok(spans)
}

/// Collects the elements of a JSON array as raw slices, counting them so that an error can name
/// the element it happened in.
struct Elements<'a, 'c> {
    out: &'c mut Vec<&'a RawValue>,
}

impl<'de, 'c> Visitor<'de> for Elements<'de, 'c> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<&'de RawValue>()? {
            self.out.push(v);
        }
        Ok(())
    }
}

fn array(data: &[u8], limits: &BodyLimits) -> Result<Vec<Span>, BodyError> {
    let mut elements: Vec<&RawValue> = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(data);
    let result = (&mut de)
        .deserialize_seq(Elements { out: &mut elements })
        .and_then(|()| de.end());
    if let Err(e) = result {
        return Err(BodyError::Json {
            at: format!(
                "element {} (line {}, column {})",
                elements.len() + 1,
                e.line(),
                e.column()
            ),
            message: strip_position(&e),
        });
    }
    let base = data.as_ptr() as usize;
    elements
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let text = v.get().as_bytes();
            if text.len() > limits.max_record_bytes {
                return Err(BodyError::RecordTooLarge {
                    at: format!("element {}", i + 1),
                    size: text.len() as u64,
                    limit: limits.max_record_bytes,
                });
            }
            // Borrowed from `data` by construction: the offset is the pointer difference.
            let start = (text.as_ptr() as usize).saturating_sub(base);
            Ok(span(start, start + text.len()))
        })
        .collect()
}

/// serde_json's message without its " at line L column C" suffix (the caller says where).
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const LIMITS: BodyLimits = BodyLimits {
        max_body_bytes: 1 << 20,
        max_record_bytes: 64,
    };

    fn records(p: &Parsed) -> Vec<&[u8]> {
        p.spans
            .iter()
            .map(|s| &p.data[s.start as usize..s.end as usize])
            .collect()
    }

    fn parse_str(s: &str, f: Format) -> Result<Parsed, BodyError> {
        parse(Bytes::copy_from_slice(s.as_bytes()), f, &LIMITS)
    }

    #[test]
    fn ndjson_lines_become_records_and_blank_lines_are_skipped() {
        let p = parse_str("{\"a\":1}\r\n\n{\"b\":2}\n{\"c\":3}", Format::Ndjson).unwrap();
        assert_eq!(
            records(&p),
            vec![&b"{\"a\":1}"[..], b"{\"b\":2}", b"{\"c\":3}"]
        );
    }

    #[test]
    fn ndjson_names_the_line_of_invalid_json() {
        let e = parse_str("{\"a\":1}\n\n{\"b\":\n{}\n", Format::Ndjson).unwrap_err();
        assert!(
            matches!(&e, BodyError::Json { at, .. } if at == "line 3"),
            "{e}"
        );
        assert_eq!(e.status(), 400);
        // Plain lines are not validated.
        assert_eq!(
            parse_str("{\"b\":\nx\n", Format::Lines)
                .unwrap()
                .spans
                .len(),
            2
        );
    }

    #[test]
    fn oversized_records_are_refused_with_their_place() {
        let long = "x".repeat(65);
        let e = parse_str(&format!("a\n{long}\n"), Format::Lines).unwrap_err();
        assert_eq!(
            e,
            BodyError::RecordTooLarge {
                at: "line 2".into(),
                size: 65,
                limit: 64
            }
        );
        assert_eq!(e.status(), 413);
        let e = parse_str(&format!("[1, \"{long}\"]"), Format::Array).unwrap_err();
        assert!(matches!(&e, BodyError::RecordTooLarge { at, .. } if at == "element 2"));
        let e = parse_str(&long, Format::Raw).unwrap_err();
        assert!(matches!(e, BodyError::RecordTooLarge { size: 65, .. }));
    }

    #[test]
    fn array_elements_are_zero_copy_slices_of_the_body() {
        let p = parse_str(" [ {\"a\": [1,2]} , \"s\",3,null ]\n", Format::Array).unwrap();
        assert_eq!(
            records(&p),
            vec![&b"{\"a\": [1,2]}"[..], b"\"s\"", b"3", b"null"]
        );
    }

    #[test]
    fn malformed_arrays_name_the_element() {
        let e = parse_str("[{\"a\":1},\n{\"a\":}]", Format::Array).unwrap_err();
        let BodyError::Json { at, .. } = &e else {
            panic!("{e}")
        };
        assert!(at.starts_with("element 2 (line 2"), "{at}");
        assert!(parse_str("{\"a\":1}", Format::Array).is_err());
        assert!(parse_str("[1] x", Format::Array).is_err());
        assert_eq!(parse_str("[]", Format::Array), Err(BodyError::Empty));
    }

    #[test]
    fn raw_is_one_record_and_empty_bodies_are_refused() {
        let p = parse_str("a\nb", Format::Raw).unwrap();
        assert_eq!(records(&p), vec![&b"a\nb"[..]]);
        assert_eq!(parse_str("", Format::Raw), Err(BodyError::Empty));
        assert_eq!(parse_str("\n\n", Format::Ndjson), Err(BodyError::Empty));
    }

    #[test]
    fn format_follows_query_then_content_type() {
        let f = |q, ct, body: &str| Format::choose(q, ct, body.as_bytes(), Format::Ndjson);
        assert_eq!(
            f(Some("raw"), Some("application/json"), "[1]"),
            Ok(Format::Raw)
        );
        assert_eq!(f(None, Some("application/json"), " [1]"), Ok(Format::Array));
        assert_eq!(f(None, Some("application/json"), "{}"), Ok(Format::Ndjson));
        assert_eq!(
            f(None, Some("application/octet-stream"), "x"),
            Ok(Format::Raw)
        );
        assert_eq!(
            f(None, Some("text/plain; charset=utf-8"), "x"),
            Ok(Format::Lines)
        );
        assert_eq!(f(None, None, "[1]"), Ok(Format::Ndjson));
        assert!(f(Some("xml"), None, "").is_err());
    }

    #[test]
    fn gzip_and_zstd_bodies_decompress_within_the_limit() {
        let text = "{\"a\":1}\n".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let gz = Bytes::from(gz.finish().unwrap());
        let zs = Bytes::from(zstd::encode_all(text.as_bytes(), 1).unwrap());
        for (raw, enc) in [(gz, Encoding::Gzip), (zs, Encoding::Zstd)] {
            let out = decode_content(raw.clone(), enc, text.len(), &mut Unbounded).unwrap();
            assert_eq!(&out[..], text.as_bytes());
            let e = decode_content(raw, enc, text.len() - 1, &mut Unbounded).unwrap_err();
            assert_eq!(e.status(), 413, "{e}");
        }
        let e = decode_content(
            Bytes::from_static(b"not gzip"),
            Encoding::Gzip,
            100,
            &mut Unbounded,
        )
        .unwrap_err();
        assert!(matches!(
            e,
            BodyError::Corrupt {
                encoding: "gzip",
                ..
            }
        ));
        assert!(Encoding::from_header(Some("br")).is_err());
        assert_eq!(Encoding::from_header(Some("GZIP")), Ok(Encoding::Gzip));
    }

    /// Counts what decoding takes, with a cap.
    struct Counted {
        held: usize,
        peak: usize,
        cap: usize,
    }

    impl Reserve for Counted {
        fn grow(&mut self, n: usize) -> Result<(), BodyError> {
            if self.held + n > self.cap {
                return Err(BodyError::Memory {
                    busy: true,
                    message: "budget".into(),
                });
            }
            self.held += n;
            self.peak = self.peak.max(self.held);
            Ok(())
        }
        fn release(&mut self, n: usize) {
            self.held -= n;
        }
    }

    #[test]
    fn decompression_takes_its_memory_from_the_budget_first() {
        let text = "{\"a\":1}\n".repeat(100_000);
        let gz = Bytes::from(zstd::encode_all(text.as_bytes(), 1).unwrap());
        let mut mem = Counted {
            held: 0,
            peak: 0,
            cap: usize::MAX,
        };
        let out = decode_content(gz.clone(), Encoding::Zstd, 1 << 30, &mut mem).unwrap();
        assert_eq!(out.len(), text.len());
        // Holds the output (at most double its length), and counted the copy while growing.
        assert!(
            mem.held >= out.len() && mem.held <= 2 * out.len(),
            "{}",
            mem.held
        );
        assert!(mem.peak <= 3 * out.len() + (64 << 10));
        // A budget too small: an error naming it, and everything given back.
        let mut small = Counted {
            held: 0,
            peak: 0,
            cap: 200_000,
        };
        let e = decode_content(gz, Encoding::Zstd, 1 << 30, &mut small).unwrap_err();
        assert_eq!(e.status(), 503);
        assert_eq!(small.held, 0);
    }

    #[test]
    fn parse_memory_bounds_the_span_table() {
        for (text, f) in [
            ("a\n\nb\nc", Format::Lines),
            ("[1,2,3]", Format::Array),
            ("x", Format::Raw),
        ] {
            let p = parse_str(text, f).unwrap();
            assert!(p.spans.len() * 8 <= parse_memory(text.as_bytes(), f));
        }
    }

    #[test]
    fn ndjson_refuses_invalid_utf8_inside_strings_like_arrays_do() {
        let bad = b"{\"a\":\"ok\"}\n{\"a\":\"\xff\xfe\"}\n";
        let e = parse(Bytes::from_static(bad), Format::Ndjson, &LIMITS).unwrap_err();
        assert!(
            matches!(&e, BodyError::Json { at, .. } if at == "line 2"),
            "{e}"
        );
        let arr = b"[{\"a\":\"ok\"},{\"a\":\"\xff\xfe\"}]";
        assert!(parse(Bytes::from_static(arr), Format::Array, &LIMITS).is_err());
        // Plain lines take any bytes.
        assert!(parse(Bytes::from_static(bad), Format::Lines, &LIMITS).is_ok());
    }
}
