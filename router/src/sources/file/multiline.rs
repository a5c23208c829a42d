//! Multi-line records: consecutive lines of a file joined into one record (a Java stack trace, a
//! Python traceback), without I/O and without reading the clock.
//!
//! Owns the record being assembled and the rule that ends it. A line that matches
//! `start_pattern` starts a new record; a line that does not joins the record before it. A
//! record also ends when:
//! - the next line would take it past `max_bytes`, or it already has `max_lines` lines and the
//!   next line would join it: it is passed on *cut* ([`Joined::cut`]), and the lines after it
//!   start a new record (as if one of them matched). Nothing is dropped: like Fluent Bit's
//!   `multiline_truncated`, the record is flushed and flagged, but the rest is passed on too,
//!   not thrown away;
//! - no line was added for `timeout` ([`Joiner::flush_due`]): the writer stopped mid-record, or
//!   the record was the last of a burst. The next continuation line starts a record of its own;
//! - the line after it does not begin where it ended (a line between them was dead-lettered as
//!   too long, or skipped): a record never spans bytes that are not its own lines;
//! - the file ends for good ([`Joiner::finish`]: rotated or deleted and read to its end, or the
//!   source stops).
//!
//! A continuation line with no record before it (the first line read, or one after a cut)
//! starts a record. Records and lines are ranges of the file: a joined record is the file's
//! bytes from its first line's start to its last line's end, the line ends between its lines
//! kept as written (`\n` or `\r\n`). The joiner holds no bytes, only offsets: the reader keeps
//! the bytes from [`Joiner::pending_start`] on. The pending record is at most `max_bytes` long
//! unless it is a single longer line (lines are bounded by the framer's `max_record_bytes`),
//! so the reader holds at most `max(max_bytes, max_record_bytes)` plus what it has not framed.

use std::time::{Duration, Instant};

use regex::bytes::{Regex, RegexBuilder};

/// Largest compiled `start_pattern` (bytes of the regex engine's program): a pattern that needs
/// more is refused at config time rather than grow memory per source.
pub const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Longest `timeout` (a year): longer ones count as this.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Compiles a `start_pattern`, matched against each line's bytes (without its line end; not
/// required to be UTF-8). Its compiled size is at most [`PATTERN_SIZE_LIMIT`].
pub fn compile_start_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_SIZE_LIMIT)
        .build()
}

/// How lines are joined (the `multiline` table of a file source).
#[derive(Debug, Clone)]
pub struct MultilineRules {
    /// A line matching this starts a record; other lines join the record before them.
    pub start_pattern: Regex,
    /// Most lines in one record (at least 1).
    pub max_lines: usize,
    /// Most bytes in one record (from its first line's start to its last line's end), unless
    /// it is one longer line.
    pub max_bytes: u64,
    /// A record with no line added for this long is passed on.
    pub timeout: Duration,
}

/// One complete line of the file, as offsets: its payload is `start..end`, its line end
/// `end..next` (empty for a partial line passed on by [`super::partial`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    /// Offset of its first byte.
    pub start: u64,
    /// Offset just past its payload (before `\r\n` or `\n`).
    pub end: u64,
    /// Offset just past its line end: where the next line starts.
    pub next: u64,
}

/// Why a record ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The next line matched `start_pattern`.
    NextStart,
    /// The next line would have joined it, but it had `max_lines` lines.
    MaxLines,
    /// The next line would have taken it past `max_bytes`.
    MaxBytes,
    /// No line was added for `timeout`.
    Timeout,
    /// The next line did not begin where it ended (a line between was dead-lettered).
    Gap,
    /// The file ended for good, or the source stopped.
    Finished,
}

/// A record the joiner passes on: lines `start..next` of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    /// Offset of its first line.
    pub start: u64,
    /// End of its last line's payload: the record is the file's bytes `start..end`.
    pub end: u64,
    /// Past its last line's line end: everything before this is passed on.
    pub next: u64,
    /// How many lines it joins.
    pub lines: usize,
    /// Why it ended.
    pub ended: Ended,
}

impl Joined {
    /// Whether a limit (`max_lines`, `max_bytes`) cut it: lines that belong to it follow as a
    /// record of their own.
    pub fn cut(&self) -> bool {
        matches!(self.ended, Ended::MaxLines | Ended::MaxBytes)
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether it is empty (one empty line).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// The record being assembled.
#[derive(Debug, Clone, Copy)]
struct Pending {
    start: u64,
    end: u64,
    next: u64,
    lines: usize,
    last_at: Instant,
}

impl Pending {
    fn ended(self, ended: Ended) -> Joined {
        Joined {
            start: self.start,
            end: self.end,
            next: self.next,
            lines: self.lines,
            ended,
        }
    }
}

/// Joins the lines of one file into records (module docs).
#[derive(Debug)]
pub struct Joiner {
    rules: MultilineRules,
    pending: Option<Pending>,
}

impl Joiner {
    /// A joiner with no record pending. `max_lines` and `max_bytes` below 1 count as 1, and a
    /// `timeout` above [`MAX_TIMEOUT`] as that (so deadlines never overflow).
    pub fn new(mut rules: MultilineRules) -> Joiner {
        rules.max_lines = rules.max_lines.max(1);
        rules.max_bytes = rules.max_bytes.max(1);
        rules.timeout = rules.timeout.min(MAX_TIMEOUT);
        Joiner {
            rules,
            pending: None,
        }
    }

    /// The rules.
    pub fn rules(&self) -> &MultilineRules {
        &self.rules
    }

    /// Adds the next line of the file, read at `now`; `text` is its payload (`line.start..
    /// line.end`). Records it ends are pushed to `out` (at most one per call).
    pub fn push(&mut self, line: Line, text: &[u8], now: Instant, out: &mut Vec<Joined>) {
        debug_assert!(line.start <= line.end && line.end <= line.next);
        debug_assert_eq!(text.len() as u64, line.end - line.start);
        if let Some(p) = &mut self.pending {
            let ended = if line.start != p.next {
                Some(Ended::Gap)
            } else if self.rules.start_pattern.is_match(text) {
                Some(Ended::NextStart)
            } else if line.end - p.start > self.rules.max_bytes {
                Some(Ended::MaxBytes)
            } else if p.lines >= self.rules.max_lines {
                Some(Ended::MaxLines)
            } else {
                None
            };
            match ended {
                None => {
                    p.end = line.end;
                    p.next = line.next;
                    p.lines += 1;
                    p.last_at = now;
                    return;
                }
                Some(why) => out.push(p.ended(why)),
            }
        }
        self.pending = Some(Pending {
            start: line.start,
            end: line.end,
            next: line.next,
            lines: 1,
            last_at: now,
        });
    }

    /// When the pending record is due for [`Joiner::flush_due`] (`None`: nothing pending).
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.map(|p| p.last_at + self.rules.timeout)
    }

    /// The pending record, if no line was added to it for `timeout` at `now`.
    pub fn flush_due(&mut self, now: Instant) -> Option<Joined> {
        let p = self.pending?;
        if now.saturating_duration_since(p.last_at) < self.rules.timeout {
            return None;
        }
        self.pending = None;
        Some(p.ended(Ended::Timeout))
    }

    /// The pending record, now: the file ends for good or the source stops.
    pub fn finish(&mut self) -> Option<Joined> {
        self.pending.take().map(|p| p.ended(Ended::Finished))
    }

    /// Where the pending record starts: the reader must keep the file's bytes from here on, and
    /// no checkpoint may pass it.
    pub fn pending_start(&self) -> Option<u64> {
        self.pending.map(|p| p.start)
    }

    /// Bytes of the pending record (`0` when none).
    pub fn pending_bytes(&self) -> u64 {
        self.pending.map_or(0, |p| p.end - p.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules(pattern: &str, max_lines: usize, max_bytes: u64, timeout_ms: u64) -> MultilineRules {
        MultilineRules {
            start_pattern: compile_start_pattern(pattern).unwrap(),
            max_lines,
            max_bytes,
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    /// The lines of `text` (`\n` or `\r\n` ends; a last line without one is left out).
    fn lines_of(text: &[u8]) -> Vec<Line> {
        let mut lines = Vec::new();
        let mut start = 0usize;
        while let Some(nl) = text[start..].iter().position(|&b| b == b'\n') {
            let next = start + nl + 1;
            let end = if nl > 0 && text[start + nl - 1] == b'\r' {
                next - 2
            } else {
                next - 1
            };
            lines.push(Line {
                start: start as u64,
                end: end as u64,
                next: next as u64,
            });
            start = next;
        }
        lines
    }

    /// Joins every line of `text` at one instant, then finishes: the records' texts.
    fn join(text: &str, rules: MultilineRules) -> Vec<(String, Ended)> {
        let mut j = Joiner::new(rules);
        let now = Instant::now();
        let mut out = Vec::new();
        for line in lines_of(text.as_bytes()) {
            let t = &text.as_bytes()[line.start as usize..line.end as usize];
            j.push(line, t, now, &mut out);
        }
        out.extend(j.finish());
        out.iter()
            .map(|r| (text[r.start as usize..r.end as usize].to_string(), r.ended))
            .collect()
    }

    const TIMESTAMP: &str = r"^\d{4}-\d{2}-\d{2} ";

    #[test]
    fn java_and_python_traces_between_single_lines_are_joined_exactly() {
        let java = "2024-05-01 10:00:01 ERROR request failed\n\
                    java.lang.IllegalStateException: no session\n\
                    \tat com.example.Handler.handle(Handler.java:42)\n\
                    \tat com.example.Server.run(Server.java:7)\n\
                    Caused by: java.io.IOException: broken pipe\n\
                    \tat java.base/sun.nio.ch.IOUtil.write(IOUtil.java:62)\n\
                    \t... 2 more";
        let python = "2024-05-01 10:00:03 ERROR job crashed\n\
                      Traceback (most recent call last):\n  \
                      File \"job.py\", line 3, in <module>\n    \
                      run()\n\
                      ValueError: bad input";
        let text = format!(
            "2024-05-01 10:00:00 INFO start\n{java}\n2024-05-01 10:00:02 INFO ok\n\
             {python}\n2024-05-01 10:00:04 INFO one\n2024-05-01 10:00:05 INFO two\n"
        );
        let got = join(&text, rules(TIMESTAMP, 500, 1 << 20, 1000));
        let want = [
            "2024-05-01 10:00:00 INFO start",
            java,
            "2024-05-01 10:00:02 INFO ok",
            python,
            "2024-05-01 10:00:04 INFO one",
            "2024-05-01 10:00:05 INFO two",
        ];
        let texts: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(texts, want);
        assert!(got[..5].iter().all(|(_, e)| *e == Ended::NextStart));
        assert_eq!(got[5].1, Ended::Finished);
    }

    #[test]
    fn crlf_line_ends_inside_a_record_are_kept_as_written() {
        let text = "A first\r\n  more\r\nA second\r\n";
        let got = join(text, rules("^A", 10, 1000, 1000));
        assert_eq!(got[0].0, "A first\r\n  more");
        assert_eq!(got[1].0, "A second");
    }

    #[test]
    fn continuation_lines_before_any_start_form_a_record() {
        let got = join("  orphan\n  tail\nS x\n", rules("^S", 10, 1000, 1000));
        let texts: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(texts, ["  orphan\n  tail", "S x"]);
    }

    #[test]
    fn a_record_at_max_lines_is_cut_and_the_rest_follows() {
        let got = join("S\n1\n2\n3\n4\nS\n", rules("^S", 3, 1000, 1000));
        assert_eq!(
            got,
            [
                ("S\n1\n2".to_string(), Ended::MaxLines),
                ("3\n4".to_string(), Ended::NextStart),
                ("S".to_string(), Ended::Finished),
            ]
        );
        // Exactly max_lines lines and then a start: not cut.
        let got = join("S\n1\n2\nS\n", rules("^S", 3, 1000, 1000));
        assert_eq!(got[0], ("S\n1\n2".to_string(), Ended::NextStart));
    }

    #[test]
    fn a_record_is_cut_before_a_line_that_would_pass_max_bytes() {
        // "S 12" + "\n" + "abcd" = 9 bytes fits in 10; "\nxyz" would make 13.
        let got = join("S 12\nabcd\nxyz\nS\n", rules("^S", 100, 10, 1000));
        assert_eq!(
            got,
            [
                ("S 12\nabcd".to_string(), Ended::MaxBytes),
                ("xyz".to_string(), Ended::NextStart),
                ("S".to_string(), Ended::Finished),
            ]
        );
        // One line longer than max_bytes is a record by itself (the framer bounds lines).
        let got = join("S 0123456789abc\ncont\n", rules("^S", 100, 10, 1000));
        assert_eq!(got[0], ("S 0123456789abc".to_string(), Ended::MaxBytes));
        assert_eq!(got[1], ("cont".to_string(), Ended::Finished));
    }

    #[test]
    fn a_record_with_no_line_for_timeout_is_flushed() {
        let text = b"S start\n  at one\n  at two\n";
        let lines = lines_of(text);
        let mut j = Joiner::new(rules("^S", 100, 1000, 500));
        let t0 = Instant::now();
        let mut out = Vec::new();
        assert_eq!(j.deadline(), None);
        j.push(lines[0], b"S start", t0, &mut out);
        let t1 = t0 + Duration::from_millis(300);
        j.push(lines[1], b"  at one", t1, &mut out);
        // The timeout counts from the last line added.
        assert_eq!(j.deadline(), Some(t1 + Duration::from_millis(500)));
        assert_eq!(j.flush_due(t0 + Duration::from_millis(799)), None);
        assert_eq!(j.pending_start(), Some(0));
        assert_eq!(j.pending_bytes(), 16);
        let flushed = j.flush_due(t1 + Duration::from_millis(500)).unwrap();
        assert_eq!((flushed.start, flushed.end, flushed.next), (0, 16, 17));
        assert_eq!((flushed.lines, flushed.ended), (2, Ended::Timeout));
        assert!(!flushed.cut());
        assert_eq!((j.deadline(), j.pending_start()), (None, None));
        // The late continuation starts a record of its own.
        j.push(lines[2], b"  at two", t1 + Duration::from_secs(1), &mut out);
        assert!(out.is_empty());
        let last = j.finish().unwrap();
        assert_eq!(
            (last.start, last.end, last.ended),
            (17, 25, Ended::Finished)
        );
    }

    #[test]
    fn a_gap_between_lines_ends_the_record() {
        let mut j = Joiner::new(rules("^S", 100, 1000, 500));
        let now = Instant::now();
        let mut out = Vec::new();
        let l = |start, end| Line {
            start,
            end,
            next: end + 1,
        };
        j.push(l(0, 3), b"S a", now, &mut out);
        // Bytes 4..20 were a dead-lettered line.
        j.push(l(20, 22), b"  ", now, &mut out);
        assert_eq!(out[0].ended, Ended::Gap);
        assert_eq!((out[0].start, out[0].next), (0, 4));
        assert_eq!(j.pending_start(), Some(20));
    }

    #[test]
    fn a_pattern_too_large_is_refused() {
        assert!(compile_start_pattern(r"\w{1000}\w{1000}\w{1000}").is_err());
        assert!(compile_start_pattern("(unclosed").is_err());
    }

    /// One generated line: starts a record?, payload length, CRLF?, dead-lettered?, ms after
    /// the previous line.
    type GenLine = (bool, usize, bool, bool, u64);

    /// The stream of `spec`: bytes, and its lines (dead-lettered ones marked).
    fn build(spec: &[GenLine]) -> (Vec<u8>, Vec<(Line, bool, u64)>) {
        let mut data = Vec::new();
        let mut lines = Vec::new();
        for (i, &(start, len, crlf, dead, dt)) in spec.iter().enumerate() {
            let s = data.len() as u64;
            data.push(if start { b'S' } else { b' ' });
            data.extend((1..len.max(1)).map(|k| b'a' + ((i + k) % 26) as u8));
            let end = data.len() as u64;
            data.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            let line = Line {
                start: s,
                end,
                next: data.len() as u64,
            };
            lines.push((line, dead, dt));
        }
        (data, lines)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever the lines, limits and timing: the records and the dead-lettered lines,
        /// in the order passed on, are the stream's bytes exactly (nothing lost, reordered or
        /// doubled); every record keeps the limits and the start rule; none waits past
        /// `timeout`; and with no limit or timeout reached the records are the plain
        /// split at start lines.
        #[test]
        fn joining_never_loses_reorders_or_splits_wrongly(
            spec in proptest::collection::vec(
                (proptest::bool::weighted(0.3), 1usize..40, any::<bool>(),
                 proptest::bool::weighted(0.05), 0u64..120),
                0..80,
            ),
            max_lines in 1usize..8,
            max_bytes in 1u64..200,
            timeout_ms in 1u64..300,
            limited in any::<bool>(),
        ) {
            let (data, lines) = build(&spec);
            let (max_lines, max_bytes, timeout_ms) = if limited {
                (max_lines, max_bytes, timeout_ms)
            } else {
                (usize::MAX, u64::MAX, 1_000_000_000)
            };
            let mut j = Joiner::new(rules("^S", max_lines, max_bytes, timeout_ms));
            let timeout = Duration::from_millis(timeout_ms);
            let t0 = Instant::now();
            let mut now = t0;
            // Passed on, in order: (start, next, Some(record) | None for a dead letter).
            let mut passed: Vec<(u64, u64, Option<Joined>)> = Vec::new();
            let mut out = Vec::new();
            let mut last_line_at = t0;
            for &(line, dead, dt) in &lines {
                now += Duration::from_millis(dt);
                // The reader's timer: flush whatever is due before reading on.
                if let Some(r) = j.flush_due(now) {
                    prop_assert!(now >= last_line_at + timeout);
                    passed.push((r.start, r.next, Some(r)));
                }
                if let Some(d) = j.deadline() {
                    prop_assert!(d > now, "a record overdue");
                }
                if dead {
                    // Dead-lettered at once; the pending record waits (a gap follows).
                    passed.push((line.start, line.next, None));
                    continue;
                }
                let text = &data[line.start as usize..line.end as usize];
                j.push(line, text, now, &mut out);
                last_line_at = now;
                prop_assert!(out.len() <= 1);
                for r in out.drain(..) {
                    passed.push((r.start, r.next, Some(r)));
                }
            }
            if let Some(r) = j.finish() {
                passed.push((r.start, r.next, Some(r)));
            }
            // Records by where they start (a dead letter may be passed on before the record
            // pending when it was read, which ends before it).
            passed.sort_by_key(|p| p.0);
            let mut rebuilt = Vec::new();
            for &(start, next, _) in &passed {
                prop_assert_eq!(start as usize, rebuilt.len(), "bytes lost or doubled");
                rebuilt.extend_from_slice(&data[start as usize..next as usize]);
            }
            prop_assert_eq!(&rebuilt, &data);
            let starts: std::collections::HashMap<u64, bool> = lines
                .iter()
                .map(|(l, _, _)| (l.start, data[l.start as usize] == b'S'))
                .collect();
            let mut prev_ended: Option<Ended> = None;
            for &(start, _, r) in &passed {
                let Some(r) = r else {
                    prev_ended = Some(Ended::Gap);
                    continue;
                };
                prop_assert!(r.lines <= max_lines);
                prop_assert!(r.lines == 1 || r.len() <= max_bytes);
                // Every start line begins a record; a continuation line begins one only after
                // a cut, a timeout, a gap, or at the stream's start.
                let body = &data[r.start as usize..r.end as usize];
                let inner_starts = body
                    .iter()
                    .enumerate()
                    .filter(|&(i, &b)| b == b'\n' && body.get(i + 1) == Some(&b'S'))
                    .count();
                prop_assert_eq!(inner_starts, 0, "a start line inside a record");
                if !starts[&start] {
                    prop_assert!(
                        !matches!(prev_ended, Some(Ended::NextStart)),
                        "a continuation line split off without a reason"
                    );
                }
                if r.ended == Ended::NextStart {
                    prop_assert!(starts.get(&r.next) == Some(&true));
                }
                prev_ended = Some(r.ended);
            }
            if !limited {
                // The reference: split before every start line and at every dead line.
                let mut want: Vec<(u64, u64)> = Vec::new();
                let mut cur: Option<(u64, u64)> = None;
                for &(l, dead, _) in &lines {
                    if dead {
                        want.extend(cur.take());
                        continue;
                    }
                    match &mut cur {
                        Some(c) if data[l.start as usize] != b'S' => c.1 = l.end,
                        _ => {
                            want.extend(cur.take());
                            cur = Some((l.start, l.end));
                        }
                    }
                }
                want.extend(cur);
                let got: Vec<(u64, u64)> = passed
                    .iter()
                    .filter_map(|(_, _, r)| r.map(|r| (r.start, r.end)))
                    .collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
