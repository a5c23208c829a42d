//! A byte cursor over one line, for the hand-written parsers.

use std::fmt;

/// Why a line does not match its format: what was expected, at which byte of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mismatch {
    /// Byte offset into the line.
    pub(crate) at: usize,
    /// What the parser wanted there, e.g. "a month name".
    pub(crate) expected: &'static str,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {} at byte {}", self.expected, self.at)
    }
}

/// A position in a line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cursor<'a> {
    line: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(line: &'a [u8]) -> Cursor<'a> {
        Cursor { line, pos: 0 }
    }

    /// The byte offset.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// A mismatch at the current position.
    pub(crate) fn fail(&self, expected: &'static str) -> Mismatch {
        Mismatch {
            at: self.pos,
            expected,
        }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.line.len()
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.line.get(self.pos).copied()
    }

    /// The unread rest of the line.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.line.get(self.pos..).unwrap_or_default()
    }

    /// Whether the rest starts with `prefix`.
    pub(crate) fn starts_with(&self, prefix: &[u8]) -> bool {
        self.rest().starts_with(prefix)
    }

    /// Moves `n` bytes on (to the end at most).
    pub(crate) fn skip(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.line.len());
    }

    /// Consumes `b` if it is next.
    pub(crate) fn eat(&mut self, b: u8) -> bool {
        let yes = self.peek() == Some(b);
        if yes {
            self.pos += 1;
        }
        yes
    }

    /// Consumes `prefix` if the rest starts with it.
    pub(crate) fn eat_prefix(&mut self, prefix: &[u8]) -> bool {
        let yes = self.starts_with(prefix);
        if yes {
            self.pos += prefix.len();
        }
        yes
    }

    /// Consumes `b` or fails with `expected`.
    pub(crate) fn expect(&mut self, b: u8, expected: &'static str) -> Result<(), Mismatch> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(self.fail(expected))
        }
    }

    /// Consumes and returns the longest run of bytes satisfying `pred` (possibly empty).
    pub(crate) fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a [u8] {
        let rest = self.rest();
        let n = rest.iter().position(|&b| !pred(b)).unwrap_or(rest.len());
        self.pos += n;
        &rest[..n]
    }

    /// As [`Cursor::take_while`], but fails with `expected` when the run is empty.
    pub(crate) fn take_while1(
        &mut self,
        pred: impl Fn(u8) -> bool,
        expected: &'static str,
    ) -> Result<&'a [u8], Mismatch> {
        let run = self.take_while(pred);
        if run.is_empty() {
            Err(self.fail(expected))
        } else {
            Ok(run)
        }
    }

    /// A non-empty run of bytes other than a space.
    pub(crate) fn token(&mut self, expected: &'static str) -> Result<&'a [u8], Mismatch> {
        self.take_while1(|b| b != b' ', expected)
    }

    /// Consumes spaces; fails with `expected` when there is none.
    pub(crate) fn spaces1(&mut self, expected: &'static str) -> Result<(), Mismatch> {
        self.take_while1(|b| b == b' ', expected).map(|_| ())
    }

    /// Consumes up to (not including) the first `end`, which must exist.
    pub(crate) fn until(&mut self, end: u8, expected: &'static str) -> Result<&'a [u8], Mismatch> {
        let rest = self.rest();
        match rest.iter().position(|&b| b == end) {
            Some(n) => {
                self.pos += n;
                Ok(&rest[..n])
            }
            None => Err(Mismatch {
                at: self.line.len(),
                expected,
            }),
        }
    }

    /// 1 to `max` ASCII digits as a number.
    pub(crate) fn number(&mut self, max: usize, expected: &'static str) -> Result<u32, Mismatch> {
        let start = *self;
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() || digits.len() > max {
            *self = start;
            return Err(self.fail(expected));
        }
        Ok(digits
            .iter()
            .fold(0u32, |n, d| n * 10 + u32::from(d - b'0')))
    }

    /// Exactly `n` ASCII digits.
    pub(crate) fn digits(
        &mut self,
        n: usize,
        expected: &'static str,
    ) -> Result<&'a [u8], Mismatch> {
        match self.rest().get(..n) {
            Some(d) if d.iter().all(u8::is_ascii_digit) => {
                self.pos += n;
                Ok(d)
            }
            _ => Err(self.fail(expected)),
        }
    }

    /// A double-quoted string whose body may hold backslash escapes (`\"` does not end it);
    /// returns the body as written, escapes kept.
    pub(crate) fn quoted(&mut self, expected: &'static str) -> Result<&'a [u8], Mismatch> {
        self.expect(b'"', expected)?;
        let rest = self.rest();
        let mut i = 0;
        while let Some(&b) = rest.get(i) {
            match b {
                b'\\' => i += 2,
                b'"' => {
                    self.pos += i + 1;
                    return Ok(&rest[..i]);
                }
                _ => i += 1,
            }
        }
        Err(Mismatch {
            at: self.line.len(),
            expected: "a closing '\"'",
        })
    }
}

/// Month abbreviations, January first.
pub(crate) const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Day-of-week abbreviations.
pub(crate) const DAYS: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];

impl<'a> Cursor<'a> {
    /// A three-letter English month abbreviation; returns the month, 1 to 12.
    pub(crate) fn month(&mut self) -> Result<u8, Mismatch> {
        let found = self
            .rest()
            .get(..3)
            .and_then(|m| MONTHS.iter().position(|name| name[..] == *m));
        match found {
            Some(i) => {
                self.pos += 3;
                Ok(i as u8 + 1)
            }
            None => Err(self.fail("a month name (Jan to Dec)")),
        }
    }

    /// A three-letter English day-of-week abbreviation.
    pub(crate) fn weekday(&mut self) -> Result<(), Mismatch> {
        match self.rest().get(..3) {
            Some(d) if DAYS.iter().any(|name| name[..] == *d) => {
                self.pos += 3;
                Ok(())
            }
            _ => Err(self.fail("a day name (Mon to Sun)")),
        }
    }

    /// `hh:mm:ss` with an optional fraction (`.123` or `,123`); returns it as written.
    pub(crate) fn time_of_day(&mut self) -> Result<&'a [u8], Mismatch> {
        let start = self.pos;
        let line = self.line;
        self.digits(2, "an hour (hh:mm:ss)")?;
        self.expect(b':', "':' in the time (hh:mm:ss)")?;
        self.digits(2, "minutes (hh:mm:ss)")?;
        self.expect(b':', "':' in the time (hh:mm:ss)")?;
        self.digits(2, "seconds (hh:mm:ss)")?;
        if matches!(self.peek(), Some(b'.' | b',')) {
            self.pos += 1;
            self.take_while1(|b| b.is_ascii_digit(), "digits of a fraction of a second")?;
        }
        Ok(&line[start..self.pos])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basics() {
        let mut c = Cursor::new(b"ab  12 \"x\\\"y\" Jun 01:02:03.5!");
        assert_eq!(c.token("t"), Ok(&b"ab"[..]));
        c.spaces1("s").unwrap();
        assert_eq!(c.number(3, "n"), Ok(12));
        assert!(c.eat(b' '));
        assert_eq!(c.quoted("q"), Ok(&b"x\\\"y"[..]));
        assert!(c.eat(b' '));
        assert_eq!(c.month(), Ok(6));
        assert!(c.eat(b' '));
        assert_eq!(c.time_of_day(), Ok(&b"01:02:03.5"[..]));
        assert_eq!(c.rest(), b"!");
        assert_eq!(
            c.token("t").and_then(|_| c.token("a token")),
            Err(Mismatch {
                at: 29,
                expected: "a token"
            })
        );
        let mut c = Cursor::new(b"\"open");
        assert_eq!(
            c.quoted("q").unwrap_err().to_string(),
            "expected a closing '\"' at byte 5"
        );
        let mut c = Cursor::new(b"1234");
        assert!(c.number(3, "n").is_err());
        assert_eq!(c.pos(), 0);
    }
}
