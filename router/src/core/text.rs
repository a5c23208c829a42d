//! Text from outside the router (plugin log lines, plugin error messages, names a plugin
//! chose) made safe to keep and to print: cut to a byte bound and with control characters
//! escaped, so it can neither take unbounded memory nor forge log lines (a newline in a
//! message would otherwise start what looks like a router log line).

use std::fmt::Write as _;

/// The most bytes kept of one message from a plugin (an error message, a log line, an `init`
/// error), before the marker saying how much was cut.
pub const MESSAGE_BYTES_MAX: usize = 1024;

/// `text` with control characters (newlines, tabs, escape sequences, U+007F..U+009F and the
/// Unicode line and paragraph separators) written as escapes (`\n`, `\t`, `\u{1b}`), and cut
/// at a character boundary so that the escaped text is at most `max_bytes` long; a cut text
/// ends with `… (N bytes cut)` (`N` counting the bytes of `text` left out), so the result is at
/// most `max_bytes + 32` bytes. The work is proportional to what is kept, not to `text`.
pub fn clean(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes) + 8);
    let mut cut_at = None;
    for (i, c) in text.char_indices() {
        let before = out.len();
        push_escaped(&mut out, c);
        if out.len() > max_bytes {
            out.truncate(before);
            cut_at = Some(i);
            break;
        }
    }
    if let Some(i) = cut_at {
        let _ = write!(out, "… ({} bytes cut)", text.len() - i);
    }
    out
}

/// [`clean`] of bytes that may not be UTF-8: invalid sequences become U+FFFD first.
pub fn clean_bytes(bytes: &[u8], max_bytes: usize) -> String {
    // Only the part that can survive the cut is decoded (4 bytes per kept character at most).
    let head = &bytes[..bytes
        .len()
        .min(max_bytes.saturating_mul(4).saturating_add(4))];
    let mut s = clean(&String::from_utf8_lossy(head), max_bytes);
    if head.len() < bytes.len() && !s.ends_with(" bytes cut)") {
        let _ = write!(s, "… ({} bytes cut)", bytes.len() - head.len());
    }
    s
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\\' => out.push('\\'),
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_text_is_kept() {
        assert_eq!(clean("sensor 7 is hot", 100), "sensor 7 is hot");
        assert_eq!(clean("", 0), "");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            clean(
                "ok\n2026-01-01T00:00:00Z ERROR sink failed\r\t\u{1b}[31m",
                200
            ),
            "ok\\n2026-01-01T00:00:00Z ERROR sink failed\\r\\t\\u{1b}[31m"
        );
        assert_eq!(clean("a\u{2028}b\u{85}", 100), "a\\u{2028}b\\u{85}");
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        let s = "é".repeat(1000); // 2000 bytes
        let c = clean(&s, 11);
        assert_eq!(c, format!("{}… (1990 bytes cut)", "é".repeat(5)));
    }

    #[test]
    fn the_cut_counts_the_bytes_left_out() {
        assert_eq!(clean("ab\n\n", 3), "ab… (2 bytes cut)");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced_and_cut() {
        assert_eq!(clean_bytes(b"a\xffb", 100), "a\u{fffd}b");
        let big = vec![b'x'; 1 << 20];
        let c = clean_bytes(&big, 10);
        assert!(c.starts_with("xxxxxxxxxx… ("), "{c}");
        assert!(c.len() <= 10 + 32, "{}", c.len());
    }

    proptest! {
        #[test]
        fn output_is_bounded_and_has_no_control_characters(
            s in any::<String>(), max in 0usize..64,
        ) {
            let c = clean(&s, max);
            prop_assert!(c.len() <= max + 32, "{} > {} + 32", c.len(), max);
            prop_assert!(!c.chars().any(needs_escape));
            if s.len() <= max && !s.chars().any(needs_escape) {
                prop_assert_eq!(c, s);
            }
        }
    }
}
