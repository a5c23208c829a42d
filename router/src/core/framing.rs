//! Framing: turning a byte stream into record spans.
//!
//! [`LineFramer`] finds newline-delimited records (LF or CRLF) in a buffer that a source fills,
//! without copying: it reports spans relative to the buffer and how many bytes it consumed, and
//! the source then freezes exactly those bytes into a batch's chunk. Lines longer than the
//! record limit are reported as [`Rejected`] and skipped without ever being held whole in memory.
//! [`json_errors`] validates records for the `json` framing.

use crate::core::record::Span;

/// Settings for [`LineFramer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramerConfig {
    /// Largest payload in bytes (the line without its terminator). Longer lines are rejected.
    pub max_record_bytes: usize,
    /// Skip lines with an empty payload instead of emitting empty records.
    pub skip_empty: bool,
}

/// A line that cannot become a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// 1-based line number.
    pub line: u64,
    /// Full payload size in bytes (the line without its terminator).
    pub size: u64,
    /// The first bytes of the line (at most `max_record_bytes`), for the dead-letter report.
    pub prefix: Vec<u8>,
    /// Why the line is rejected.
    pub why: Why,
}

/// Why a line was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Longer than `max_record_bytes`.
    TooLong,
    /// The input stopped (shutdown) before the line's terminator arrived.
    Incomplete,
}

/// The result of one [`LineFramer::scan`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// Bytes at the front of the buffer that are finished with; the caller removes them.
    pub consumed: usize,
    /// Line number of the first byte of the buffer (before this scan).
    pub first_line: u64,
}

/// An oversized line being skipped across buffers.
#[derive(Debug, Clone)]
struct Skipping {
    line: u64,
    size: u64,
    prefix: Vec<u8>,
    /// The last byte seen so far was a CR (which belongs to the terminator if an LF follows).
    ends_with_cr: bool,
}

/// Finds newline-delimited records in a byte stream.
#[derive(Debug, Clone)]
pub struct LineFramer {
    config: FramerConfig,
    /// Line number of the next unconsumed byte.
    line: u64,
    skipping: Option<Skipping>,
}

impl LineFramer {
    /// A framer at the start of a stream (line 1).
    pub fn new(config: FramerConfig) -> LineFramer {
        LineFramer {
            config,
            line: 1,
            skipping: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> FramerConfig {
        self.config
    }

    /// Line number of the next byte to be scanned.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The buffer size at which an unterminated line is known to be too long: the source must be
    /// able to hold this many bytes of one line before asking again.
    pub fn max_line_buffer(&self) -> usize {
        // Payload plus a CR that may turn out to belong to a CRLF terminator.
        self.config.max_record_bytes.saturating_add(1)
    }

    /// Scans `buf` (unconsumed bytes from the stream) for complete lines.
    ///
    /// Pushes one span per record (offsets into `buf`) to `spans` and one entry per rejected line
    /// to `rejected`. With `eof`, a final line without a newline is still a record. Bytes past
    /// `consumed` are an incomplete line that must be offered again, followed by more data.
    pub fn scan(
        &mut self,
        buf: &[u8],
        eof: bool,
        spans: &mut Vec<Span>,
        rejected: &mut Vec<Rejected>,
    ) -> Scanned {
        let first_line = self.line;
        let mut pos = 0usize;
        if let Some(mut skip) = self.skipping.take() {
            match memchr::memchr(b'\n', buf) {
                Some(nl) => {
                    skip.size += nl as u64;
                    // A CR right before the LF belongs to the terminator.
                    let cr = if nl > 0 {
                        buf[nl - 1] == b'\r'
                    } else {
                        skip.ends_with_cr
                    };
                    if cr {
                        skip.size -= 1;
                    }
                    rejected.push(Rejected {
                        line: skip.line,
                        size: skip.size,
                        prefix: skip.prefix,
                        why: Why::TooLong,
                    });
                    self.line += 1;
                    pos = nl + 1;
                }
                None => {
                    skip.size += buf.len() as u64;
                    if let Some(&last) = buf.last() {
                        skip.ends_with_cr = last == b'\r';
                    }
                    if eof {
                        if skip.ends_with_cr {
                            skip.size -= 1;
                        }
                        rejected.push(Rejected {
                            line: skip.line,
                            size: skip.size,
                            prefix: skip.prefix,
                            why: Why::TooLong,
                        });
                    } else {
                        self.skipping = Some(skip);
                    }
                    return Scanned {
                        consumed: buf.len(),
                        first_line,
                    };
                }
            }
        }
        let max = self.config.max_record_bytes;
        let skip_empty = self.config.skip_empty;
        let base = pos;
        // The hot loop: one iteration per line, so the common case (a line within the limit)
        // is a length check and a push.
        let mut lines = 0u64;
        for nl in memchr::memchr_iter(b'\n', &buf[base..]) {
            let end_nl = base + nl;
            let end = if end_nl > pos && buf[end_nl - 1] == b'\r' {
                end_nl - 1
            } else {
                end_nl
            };
            let len = end - pos;
            if len <= max {
                if len > 0 || !skip_empty {
                    spans.push(Span {
                        start: pos as u32,
                        end: end as u32,
                    });
                }
            } else {
                rejected.push(Rejected {
                    line: self.line + lines,
                    size: len as u64,
                    prefix: buf[pos..pos + max].to_vec(),
                    why: Why::TooLong,
                });
            }
            lines += 1;
            pos = end_nl + 1;
        }
        self.line += lines;
        let rest = buf.len() - pos;
        if eof && rest > 0 {
            // A final line without a newline is still a record; a lone CR at the very end is
            // taken as the start of a CRLF terminator.
            let end = if buf[buf.len() - 1] == b'\r' {
                buf.len() - 1
            } else {
                buf.len()
            };
            self.emit(buf, pos, end, spans, rejected, max);
            pos = buf.len();
        } else if rest > self.max_line_buffer() {
            // No terminator within the limit: the line is too long. Keep a prefix for the
            // report and skip the rest of it, here and in later buffers.
            self.skipping = Some(Skipping {
                line: self.line,
                size: rest as u64,
                prefix: buf[pos..pos + max].to_vec(),
                ends_with_cr: buf[buf.len() - 1] == b'\r',
            });
            pos = buf.len();
        }
        Scanned {
            consumed: pos,
            first_line,
        }
    }

    /// Gives up on the stream (shutdown before end of input): the unterminated tail `rest` (the
    /// bytes a scan left unconsumed) cannot be a record, so it is returned as rejected, as is a
    /// too-long line being skipped. The framer is at a line start afterwards.
    pub fn abandon(&mut self, rest: &[u8]) -> Option<Rejected> {
        let max = self.config.max_record_bytes;
        let r = match self.skipping.take() {
            Some(skip) => Some(Rejected {
                line: skip.line,
                size: skip.size + rest.len() as u64,
                prefix: skip.prefix,
                why: Why::TooLong,
            }),
            None if !rest.is_empty() => Some(Rejected {
                line: self.line,
                size: rest.len() as u64,
                prefix: rest[..rest.len().min(max)].to_vec(),
                why: Why::Incomplete,
            }),
            None => None,
        };
        if r.is_some() {
            self.line += 1;
        }
        r
    }

    fn emit(
        &self,
        buf: &[u8],
        start: usize,
        end: usize,
        spans: &mut Vec<Span>,
        rejected: &mut Vec<Rejected>,
        max: usize,
    ) {
        let len = end - start;
        if len > max {
            rejected.push(Rejected {
                line: self.line,
                size: len as u64,
                prefix: buf[start..start + max].to_vec(),
                why: Why::TooLong,
            });
        } else if len > 0 || !self.config.skip_empty {
            spans.push(Span {
                start: start as u32,
                end: end as u32,
            });
        }
    }
}

/// Indices (into `spans`) of the payloads that are not valid JSON documents, with the parser's
/// message for each. JSON text is UTF-8 (RFC 8259): a payload with invalid UTF-8 anywhere, inside
/// a string too, is not valid JSON (the parser alone skips over string contents unchecked).
pub fn json_errors(data: &[u8], spans: &[Span]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        let payload = &data[s.start as usize..s.end as usize];
        let text = match std::str::from_utf8(payload) {
            Ok(t) => t,
            Err(e) => {
                out.push((
                    i,
                    format!("invalid JSON: invalid UTF-8 at byte {}", e.valid_up_to()),
                ));
                continue;
            }
        };
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
            out.push((i, format!("invalid JSON: {e}")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(max: usize) -> FramerConfig {
        FramerConfig {
            max_record_bytes: max,
            skip_empty: true,
        }
    }

    /// Feeds `input` in pieces of `piece` bytes, as a source would, and returns the payloads and
    /// the rejected lines.
    fn run(config: FramerConfig, input: &[u8], piece: usize) -> (Vec<Vec<u8>>, Vec<Rejected>) {
        let mut f = LineFramer::new(config);
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        let mut rejected = Vec::new();
        let mut fed = 0;
        loop {
            let eof = fed >= input.len();
            if !eof {
                let n = piece.min(input.len() - fed);
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
            let eof = fed >= input.len();
            let mut spans = Vec::new();
            let s = f.scan(&buf, eof, &mut spans, &mut rejected);
            for sp in &spans {
                assert!(sp.end as usize <= s.consumed);
                out.push(buf[sp.start as usize..sp.end as usize].to_vec());
            }
            buf.drain(..s.consumed);
            assert!(buf.len() <= f.max_line_buffer() + piece);
            if eof {
                assert!(buf.is_empty());
                return (out, rejected);
            }
        }
    }

    #[test]
    fn lf_crlf_and_missing_final_newline() {
        let (recs, rej) = run(cfg(100), b"a\r\nbb\nccc", 2);
        assert_eq!(recs, vec![b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]);
        assert!(rej.is_empty());
    }

    #[test]
    fn empty_lines_skipped_or_kept() {
        let (recs, _) = run(cfg(100), b"\na\n\r\n\nb\n", 3);
        assert_eq!(recs, vec![b"a".to_vec(), b"b".to_vec()]);
        let keep = FramerConfig {
            max_record_bytes: 100,
            skip_empty: false,
        };
        let (recs, _) = run(keep, b"\na\n\r\n", 3);
        assert_eq!(recs, vec![b"".to_vec(), b"a".to_vec(), b"".to_vec()]);
    }

    #[test]
    fn empty_input_gives_nothing() {
        let (recs, rej) = run(cfg(10), b"", 4);
        assert!(recs.is_empty() && rej.is_empty());
    }

    #[test]
    fn line_at_the_limit_passes_longer_is_rejected_with_its_size() {
        let mut input = Vec::new();
        input.extend_from_slice(&[b'x'; 8]);
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(&[b'y'; 9]);
        input.extend_from_slice(b"\r\nz\n");
        for piece in [1, 3, 7, 64] {
            let (recs, rej) = run(cfg(8), &input, piece);
            assert_eq!(recs, vec![vec![b'x'; 8], b"z".to_vec()], "piece {piece}");
            assert_eq!(rej.len(), 1);
            assert_eq!(rej[0].line, 2);
            assert_eq!(rej[0].size, 9);
            assert_eq!(rej[0].prefix, vec![b'y'; 8]);
        }
    }

    #[test]
    fn huge_line_is_skipped_without_buffering_it() {
        let mut input = b"first\n".to_vec();
        input.extend(std::iter::repeat_n(b'q', 5 << 20));
        input.extend_from_slice(b"\nlast");
        // `run` asserts that the buffer never holds more than the limit plus one piece.
        let (recs, rej) = run(cfg(1024), &input, 64 * 1024);
        assert_eq!(recs, vec![b"first".to_vec(), b"last".to_vec()]);
        assert_eq!(rej.len(), 1);
        assert_eq!((rej[0].line, rej[0].size), (2, 5 << 20));
        assert_eq!(rej[0].prefix.len(), 1024);
    }

    #[test]
    fn oversized_last_line_without_newline_is_rejected_at_eof() {
        let input = vec![b'z'; 50];
        let (recs, rej) = run(cfg(10), &input, 4);
        assert!(recs.is_empty());
        assert_eq!((rej[0].line, rej[0].size), (1, 50));
    }

    #[test]
    fn abandon_reports_the_unterminated_tail() {
        let mut f = LineFramer::new(cfg(4));
        let (mut spans, mut rej) = (Vec::new(), Vec::new());
        let s = f.scan(b"ab\ncd", false, &mut spans, &mut rej);
        assert_eq!((spans.len(), s.consumed), (1, 3));
        let r = f.abandon(b"cd").unwrap();
        assert_eq!((r.line, r.size, r.why), (2, 2, Why::Incomplete));
        assert_eq!(r.prefix, b"cd");
        assert_eq!(f.abandon(b""), None);
        // A too-long line cut short stays too long.
        f.scan(b"xxxxxxxxxx", false, &mut spans, &mut rej);
        let r = f.abandon(b"yy").unwrap();
        assert_eq!((r.line, r.size, r.why), (3, 12, Why::TooLong));
    }

    #[test]
    fn invalid_utf8_passes_through() {
        let (recs, _) = run(cfg(10), b"\xff\xfe\n", 10);
        assert_eq!(recs, vec![b"\xff\xfe".to_vec()]);
    }

    #[test]
    fn json_errors_check_utf8_inside_strings() {
        let data = b"{\"a\":\"\xc3\xa9\"}\n{\"a\":\"\xff\"}\n";
        let spans = [Span { start: 0, end: 10 }, Span { start: 11, end: 20 }];
        let errs = json_errors(data, &spans);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, 1);
        assert!(errs[0].1.contains("UTF-8 at byte 6"), "{}", errs[0].1);
    }

    #[test]
    fn json_errors_name_the_record() {
        let data = b"{\"a\":1}\n{bad\n[1,2]";
        let spans = [
            Span { start: 0, end: 7 },
            Span { start: 8, end: 12 },
            Span { start: 13, end: 18 },
        ];
        let errs = json_errors(data, &spans);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, 1);
        assert!(errs[0].1.contains("invalid JSON"), "{}", errs[0].1);
    }

    proptest! {
        /// Any input, cut into any pieces, gives the same records as a plain split on LF.
        #[test]
        fn matches_a_plain_split(
            lines in proptest::collection::vec(proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'\r'), Just(b'\xff'), Just(b' ')], 0..12), 0..20),
            final_newline in any::<bool>(),
            piece in 1usize..16,
        ) {
            let mut input = lines.join(&b'\n');
            if final_newline && !input.is_empty() { input.push(b'\n'); }
            let max = 6;
            let (recs, rej) = run(cfg(max), &input, piece);
            let mut expect = Vec::new();
            let mut expect_rej = Vec::new();
            let body = input.strip_suffix(b"\n").unwrap_or(&input);
            if !input.is_empty() {
                for (n, line) in body.split(|&b| b == b'\n').enumerate() {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.len() > max { expect_rej.push((n as u64 + 1, line.len() as u64)); }
                    else if !line.is_empty() { expect.push(line.to_vec()); }
                }
            }
            prop_assert_eq!(recs, expect);
            let got: Vec<(u64, u64)> = rej.iter().map(|r| (r.line, r.size)).collect();
            prop_assert_eq!(got, expect_rej);
        }
    }
}
