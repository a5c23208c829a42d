//! The condition language: its syntax tree and the parser that builds it from text.
//!
//! ```text
//! or         := and ( "or" and )*
//! and        := not ( "and" not )*
//! not        := "not" not | primary
//! primary    := "(" or ")"
//!             | "exists" "(" path ")"
//!             | path op literal
//!             | path "in" "[" ( literal ( "," literal )* )? "]"
//! op         := "==" | "!=" | "<" | "<=" | ">" | ">="
//! literal    := number | string | "true" | "false" | "null"
//! number     := JSON number, e.g. -12, 0.5, 1e3
//! string     := '"' ... '"' | "'" ... "'"   (JSON escapes, plus \' )
//! path       := a JsonPath: a.b[0].c, ["key with spaces"].x
//! ```
//!
//! A path runs up to whitespace or one of `( ) = ! < > ,` (outside brackets), so keys holding
//! those characters, or keys named like a keyword (`and`, `or`, `not`, `in`, `exists`, `true`,
//! `false`, `null`), are written in brackets: `["not"]`, `["a b"]`.

use std::fmt;

use edge_router_plugin::JsonPath;

/// Deepest nesting of parentheses and `not`s; keeps parsing and evaluation off the stack's edge.
const DEPTH_MAX: u32 = 64;

/// A parsed condition: the expression and the distinct field paths it reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The expression; its field indices point into `fields`.
    pub(crate) expr: Expr,
    /// Distinct paths, in order of first appearance.
    pub(crate) fields: Vec<JsonPath>,
}

/// A node of the expression tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// True when any operand is (evaluated left to right, stopping at the first true).
    Or(Vec<Expr>),
    /// True when every operand is (evaluated left to right, stopping at the first false).
    And(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// `path op literal`.
    Compare {
        /// Index into [`Condition::fields`].
        field: usize,
        /// The operator.
        op: Op,
        /// The right-hand side.
        value: Literal,
    },
    /// `path in [literals]`: true when the field `==` any of them.
    In {
        /// Index into [`Condition::fields`].
        field: usize,
        /// The candidates.
        values: Vec<Literal>,
    },
    /// `exists(path)`: true when the field is present (whatever its value, `null` included).
    Exists {
        /// Index into [`Condition::fields`].
        field: usize,
    },
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    /// True for `<`, `<=`, `>`, `>=`.
    fn is_ordering(self) -> bool {
        !matches!(self, Op::Eq | Op::Ne)
    }
}

/// A literal on the right of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    /// A finite number.
    Number(f64),
    /// A string, unescaped.
    String(String),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
}

/// Why a condition did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    /// Where: 1-based character (not byte) position in the condition text. One past the last
    /// character when the condition ended too early.
    pub position: usize,
    /// What was wrong there.
    pub message: String,
}

impl fmt::Display for ConditionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.position, self.message)
    }
}

impl std::error::Error for ConditionError {}

impl Condition {
    /// Parses a condition such as `temperature <= 80 and site in ["a", "b"]`.
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        let mut p = Parser {
            src: text,
            bytes: text.as_bytes(),
            pos: 0,
            fields: Vec::new(),
            depth: 0,
        };
        p.skip_ws();
        if p.pos == p.bytes.len() {
            return Err(p.error_at(p.pos, "the condition is empty".to_owned()));
        }
        let expr = p.parse_or()?;
        p.skip_ws();
        if p.pos != p.bytes.len() {
            let msg = format!(
                "expected 'and', 'or' or the end of the condition, found {}",
                p.found()
            );
            return Err(p.error_at(p.pos, msg));
        }
        Ok(Condition {
            expr,
            fields: p.fields,
        })
    }

    /// The distinct field paths the condition reads, in order of first appearance.
    #[must_use]
    pub fn fields(&self) -> &[JsonPath] {
        &self.fields
    }
}

/// Bytes that end a path (outside brackets) and start operators or punctuation.
fn ends_path(b: u8) -> bool {
    is_ws(b) || matches!(b, b'(' | b')' | b'=' | b'!' | b'<' | b'>' | b',' | b']')
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Words that cannot start a bare path.
const KEYWORDS: [&str; 8] = ["and", "or", "not", "in", "exists", "true", "false", "null"];

struct Parser<'s> {
    src: &'s str,
    bytes: &'s [u8],
    /// Byte offset of the next unread byte; always on a char boundary.
    pos: usize,
    fields: Vec<JsonPath>,
    depth: u32,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.bytes.get(self.pos).is_some_and(|&b| is_ws(b)) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// The 1-based character position of byte offset `at`.
    fn char_pos(&self, at: usize) -> usize {
        self.src.get(..at).map_or(at, |s| s.chars().count()) + 1
    }

    fn error_at(&self, at: usize, message: String) -> ConditionError {
        ConditionError {
            position: self.char_pos(at),
            message,
        }
    }

    /// Describes what is at the current position, for "expected X, found Y" messages.
    fn found(&self) -> String {
        let rest = self.src.get(self.pos..).unwrap_or_default();
        let Some(first) = rest.chars().next() else {
            return "the end of the condition".to_owned();
        };
        let op_chars = |c: char| matches!(c, '=' | '!' | '<' | '>');
        let snippet: String = if op_chars(first) {
            rest.chars().take_while(|&c| op_chars(c)).take(2).collect()
        } else if matches!(first, '(' | ')' | '[' | ']' | ',') {
            first.to_string()
        } else {
            rest.chars()
                .take_while(|&c| !c.is_ascii_whitespace() && !matches!(c, '(' | ')' | ',' | ']'))
                .take(24)
                .collect()
        };
        format!("'{snippet}'")
    }

    /// The end of the word of ASCII letters starting at the current position.
    fn word_end(&self) -> usize {
        let mut i = self.pos;
        while self.bytes.get(i).is_some_and(u8::is_ascii_alphabetic) {
            i += 1;
        }
        i
    }

    /// The end of the path-like token at the current position (brackets may hold anything).
    fn path_end(&self) -> usize {
        self.path_end_at(self.pos)
    }

    /// The end of the path-like token starting at `start`.
    fn path_end_at(&self, start: usize) -> usize {
        let mut i = start;
        while let Some(&b) = self.bytes.get(i) {
            if b == b'[' {
                i = self.bracket_end(i);
            } else if ends_path(b) {
                break;
            } else {
                i += 1;
            }
        }
        i
    }

    /// With `open` at a `[` inside a path: the offset after its `]`, or where the bracket stops
    /// making sense (the path parser then reports what is wrong).
    fn bracket_end(&self, open: usize) -> usize {
        let mut i = open + 1;
        match self.bytes.get(i) {
            Some(&q @ (b'"' | b'\'')) => {
                i += 1;
                loop {
                    match self.bytes.get(i) {
                        None => return i,
                        Some(b'\\') => i += 2,
                        Some(&b) if b == q => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                i = i.min(self.bytes.len());
                if self.bytes.get(i) == Some(&b']') {
                    i + 1
                } else {
                    i
                }
            }
            _ => {
                while let Some(&b) = self.bytes.get(i) {
                    if b == b']' {
                        return i + 1;
                    }
                    if ends_path(b) || b == b'[' {
                        return i;
                    }
                    i += 1;
                }
                i
            }
        }
    }

    /// The path-like token at the current position, without consuming it.
    fn peek_token(&self) -> &str {
        self.src.get(self.pos..self.path_end()).unwrap_or_default()
    }

    fn enter(&mut self) -> Result<(), ConditionError> {
        self.depth += 1;
        if self.depth > DEPTH_MAX {
            return Err(self.error_at(
                self.pos,
                format!("nested too deeply (more than {DEPTH_MAX} levels of '(' and 'not')"),
            ));
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Expr, ConditionError> {
        let mut items = vec![self.parse_and()?];
        loop {
            self.skip_ws();
            if self.peek_token() != "or" {
                break;
            }
            self.pos += 2;
            items.push(self.parse_and()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn parse_and(&mut self) -> Result<Expr, ConditionError> {
        let mut items = vec![self.parse_not()?];
        loop {
            self.skip_ws();
            if self.peek_token() != "and" {
                break;
            }
            self.pos += 3;
            items.push(self.parse_not()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn parse_not(&mut self) -> Result<Expr, ConditionError> {
        self.skip_ws();
        if self.peek_token() == "not" {
            self.pos += 3;
            self.enter()?;
            let inner = self.parse_not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.parse_primary()
    }

    fn parse_primary(&mut self) -> Result<Expr, ConditionError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None | Some(b')') => {
                let msg = format!("expected a condition, found {}", self.found());
                Err(self.error_at(start, msg))
            }
            Some(b'(') => {
                self.pos += 1;
                self.enter()?;
                let inner = self.parse_or()?;
                self.depth -= 1;
                self.skip_ws();
                if self.peek() != Some(b')') {
                    let msg = format!(
                        "expected ')' to close the '(' at character {}, found {}",
                        self.char_pos(start),
                        self.found()
                    );
                    return Err(self.error_at(self.pos, msg));
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(b'"' | b'\'' | b'-' | b'0'..=b'9') => {
                let msg = format!(
                    "expected a field path, found {}; a comparison puts the field first, \
                     e.g. temperature <= 80",
                    self.found()
                );
                Err(self.error_at(start, msg))
            }
            Some(_) => {
                let token = self.peek_token();
                if token.is_empty() {
                    let msg = format!("expected a condition, found {}", self.found());
                    return Err(self.error_at(start, msg));
                }
                if token == "exists" {
                    return self.parse_exists();
                }
                if KEYWORDS.contains(&token) {
                    let msg = format!(
                        "expected a condition, found the keyword '{token}' (a field with this \
                         name is written [\"{token}\"])"
                    );
                    return Err(self.error_at(start, msg));
                }
                let field = self.parse_path()?;
                self.parse_comparison(field, start)
            }
        }
    }

    /// `exists(path)`, with the current position at `exists`.
    fn parse_exists(&mut self) -> Result<Expr, ConditionError> {
        self.pos += "exists".len();
        self.skip_ws();
        if self.peek() != Some(b'(') {
            let msg = format!("expected '(' after 'exists', found {}", self.found());
            return Err(self.error_at(self.pos, msg));
        }
        let open = self.pos;
        self.pos += 1;
        self.skip_ws();
        if self.peek_token().is_empty() {
            let msg = format!(
                "expected a field path in exists(...), found {}",
                self.found()
            );
            return Err(self.error_at(self.pos, msg));
        }
        let field = self.parse_path()?;
        self.skip_ws();
        if self.peek() != Some(b')') {
            let msg = format!(
                "expected ')' to close the '(' at character {}, found {}",
                self.char_pos(open),
                self.found()
            );
            return Err(self.error_at(self.pos, msg));
        }
        self.pos += 1;
        Ok(Expr::Exists { field })
    }

    /// Parses the path token at the current position; returns its index in `fields`.
    fn parse_path(&mut self) -> Result<usize, ConditionError> {
        let start = self.pos;
        let end = self.path_end();
        let text = self.src.get(start..end).unwrap_or_default();
        let path = JsonPath::parse(text).map_err(|e| {
            let within = text.get(..e.offset).map_or(e.offset, |s| s.chars().count());
            ConditionError {
                position: self.char_pos(start) + within,
                message: format!("bad field path '{text}': {}", e.message),
            }
        })?;
        self.pos = end;
        let index = match self.fields.iter().position(|p| *p == path) {
            Some(i) => i,
            None => {
                self.fields.push(path);
                self.fields.len() - 1
            }
        };
        Ok(index)
    }

    /// What follows a field path: an operator and a literal, or `in [...]`.
    fn parse_comparison(&mut self, field: usize, start: usize) -> Result<Expr, ConditionError> {
        self.skip_ws();
        let path_text = self
            .src
            .get(start..self.path_end_at(start))
            .unwrap_or_default();
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let op = match rest {
            [b'=', b'=', ..] => Op::Eq,
            [b'!', b'=', ..] => Op::Ne,
            [b'<', b'=', ..] => Op::Le,
            [b'>', b'=', ..] => Op::Ge,
            [b'<', ..] => Op::Lt,
            [b'>', ..] => Op::Gt,
            [b'=', ..] => {
                return Err(self.error_at(
                    self.pos,
                    "'=' is not an operator: use '==' to compare".to_owned(),
                ));
            }
            [b'!', ..] => {
                return Err(self.error_at(
                    self.pos,
                    "'!' is not an operator: use '!=' or 'not'".to_owned(),
                ));
            }
            _ => {
                if self.src.get(self.pos..self.word_end()) == Some("in") {
                    self.pos += 2;
                    return self.parse_in(field);
                }
                let msg = format!(
                    "expected an operator (==, !=, <, <=, >, >=) or 'in' after the field \
                     '{path_text}', found {}",
                    self.found()
                );
                return Err(self.error_at(self.pos, msg));
            }
        };
        self.pos += op.text().len();
        self.skip_ws();
        let value_at = self.pos;
        let value = self.parse_literal(&format!("'{}'", op.text()))?;
        if op.is_ordering() && matches!(value, Literal::Bool(_) | Literal::Null) {
            let msg = format!(
                "'{}' compares numbers or strings; true, false and null only work with '==' \
                 and '!='",
                op.text()
            );
            return Err(self.error_at(value_at, msg));
        }
        Ok(Expr::Compare { field, op, value })
    }

    /// `[lit, lit, ...]` after `in`.
    fn parse_in(&mut self, field: usize) -> Result<Expr, ConditionError> {
        self.skip_ws();
        if self.peek() != Some(b'[') {
            let msg = format!("expected '[' after 'in', found {}", self.found());
            return Err(self.error_at(self.pos, msg));
        }
        self.pos += 1;
        let mut values = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Expr::In { field, values });
        }
        let mut after = "'['";
        loop {
            self.skip_ws();
            values.push(self.parse_literal(after)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    after = "','";
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Expr::In { field, values });
                }
                _ => {
                    let msg = format!("expected ',' or ']' in the list, found {}", self.found());
                    return Err(self.error_at(self.pos, msg));
                }
            }
        }
    }

    /// A literal at the current position; `after` names what precedes it, for messages.
    fn parse_literal(&mut self, after: &str) -> Result<Literal, ConditionError> {
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => self.parse_string(q).map(Literal::String),
            Some(b'-' | b'0'..=b'9') => self.parse_number().map(Literal::Number),
            _ => {
                let word = self.src.get(self.pos..self.word_end()).unwrap_or_default();
                let lit = match word {
                    "true" => Some(Literal::Bool(true)),
                    "false" => Some(Literal::Bool(false)),
                    "null" => Some(Literal::Null),
                    _ => None,
                };
                let next = self.bytes.get(self.pos + word.len()).copied();
                match lit {
                    Some(lit) if next.is_none_or(ends_path) => {
                        self.pos += word.len();
                        Ok(lit)
                    }
                    _ => {
                        let found = self.found();
                        let hint = if self.peek().is_some_and(|b| !ends_path(b)) {
                            " (comparing two fields is not supported; quote strings)"
                        } else {
                            ""
                        };
                        let msg = format!(
                            "expected a value after {after} (a number, a \"string\", true, false \
                             or null), found {found}{hint}"
                        );
                        Err(self.error_at(self.pos, msg))
                    }
                }
            }
        }
    }

    /// A JSON number at the current position.
    fn parse_number(&mut self) -> Result<f64, ConditionError> {
        let start = self.pos;
        let b = self.bytes;
        let digits = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        let mut ok = true;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(i),
            _ => ok = false,
        }
        if ok && b.get(i) == Some(&b'.') {
            let frac = digits(i + 1);
            ok = frac > i + 1;
            i = frac;
        }
        if ok && matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let exp = digits(i);
            ok = exp > i;
            i = exp;
        }
        ok = ok && i > int_start && b.get(i).is_none_or(|&c| ends_path(c));
        if !ok {
            let msg = format!(
                "invalid number {} (numbers are written as in JSON, e.g. -12, 0.5, 1e3)",
                self.found()
            );
            return Err(self.error_at(start, msg));
        }
        let text = self.src.get(start..i).unwrap_or_default();
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => {
                self.pos = i;
                Ok(v)
            }
            _ => Err(self.error_at(start, format!("number '{text}' is out of range"))),
        }
    }

    /// A string literal opened by `quote` at the current position.
    fn parse_string(&mut self, quote: u8) -> Result<String, ConditionError> {
        let open = self.pos;
        let mut out = String::new();
        let mut i = open + 1;
        loop {
            let Some(c) = self.src.get(i..).and_then(|s| s.chars().next()) else {
                return Err(self.error_at(open, "unterminated string".to_owned()));
            };
            match c {
                c if c == char::from(quote) => {
                    self.pos = i + 1;
                    return Ok(out);
                }
                '\\' => {
                    let (ch, next) = self.escape(i)?;
                    out.push(ch);
                    i = next;
                }
                c => {
                    out.push(c);
                    i += c.len_utf8();
                }
            }
        }
    }

    /// Decodes the escape whose backslash is at `i`; returns the char and the offset after it.
    fn escape(&self, i: usize) -> Result<(char, usize), ConditionError> {
        let bad = |at: usize, what: &str| self.error_at(at, what.to_owned());
        let c = match self.bytes.get(i + 1) {
            Some(b'"') => '"',
            Some(b'\'') => '\'',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let hi = self
                    .hex4(i + 2)
                    .ok_or_else(|| bad(i, "invalid \\u escape: expected four hex digits"))?;
                if (0xDC00..0xE000).contains(&hi) {
                    return Err(bad(i, "invalid \\u escape: unpaired low surrogate"));
                }
                if (0xD800..0xDC00).contains(&hi) {
                    let lo = match (self.bytes.get(i + 6..i + 8), self.hex4(i + 8)) {
                        (Some(b"\\u"), Some(lo)) if (0xDC00..0xE000).contains(&lo) => lo,
                        _ => return Err(bad(i, "invalid \\u escape: unpaired high surrogate")),
                    };
                    let code = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                    let ch = char::from_u32(code)
                        .ok_or_else(|| bad(i, "invalid \\u escape: not a character"))?;
                    return Ok((ch, i + 12));
                }
                let ch = char::from_u32(hi)
                    .ok_or_else(|| bad(i, "invalid \\u escape: not a character"))?;
                return Ok((ch, i + 6));
            }
            Some(_) => {
                return Err(bad(
                    i,
                    "invalid escape: use \\\", \\', \\\\, \\/, \\b, \\f, \\n, \\r, \\t or \\uXXXX",
                ));
            }
            None => return Err(bad(i, "unterminated string")),
        };
        Ok((c, i + 2))
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.src.get(at..at + 4)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(digits, 16).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> JsonPath {
        JsonPath::parse(s).unwrap()
    }

    fn err(text: &str) -> String {
        Condition::parse(text).unwrap_err().to_string()
    }

    fn cmp(field: usize, op: Op, value: Literal) -> Expr {
        Expr::Compare { field, op, value }
    }

    #[test]
    fn parses_every_operator() {
        for (text, op) in [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            ("<=", Op::Le),
            (">", Op::Gt),
            (">=", Op::Ge),
        ] {
            for cond in [format!("t {text} 80"), format!("t{text}80")] {
                let c = Condition::parse(&cond).unwrap();
                assert_eq!(c.expr, cmp(0, op, Literal::Number(80.0)), "{cond}");
                assert_eq!(c.fields, vec![path("t")]);
            }
        }
    }

    #[test]
    fn parses_literals() {
        let lit = |s: &str| match Condition::parse(&format!("x == {s}")).unwrap().expr {
            Expr::Compare { value, .. } => value,
            e => panic!("{e:?}"),
        };
        assert_eq!(lit("-12.5e1"), Literal::Number(-125.0));
        assert_eq!(lit("0"), Literal::Number(0.0));
        assert_eq!(lit("0.25"), Literal::Number(0.25));
        assert_eq!(lit("1E+2"), Literal::Number(100.0));
        assert_eq!(lit("true"), Literal::Bool(true));
        assert_eq!(lit("false"), Literal::Bool(false));
        assert_eq!(lit("null"), Literal::Null);
        assert_eq!(lit(r#""plant-1""#), Literal::String("plant-1".into()));
        assert_eq!(lit("'plant-1'"), Literal::String("plant-1".into()));
        assert_eq!(lit(r#""""#), Literal::String(String::new()));
        assert_eq!(
            lit(r#""a\"b\\c\/d\n\t\u00e9\ud83d\ude00 ' é""#),
            Literal::String("a\"b\\c/d\n\té😀 ' é".into())
        );
        assert_eq!(lit(r"'it\'s'"), Literal::String("it's".into()));
        assert_eq!(lit(r#"'say "hi"'"#), Literal::String("say \"hi\"".into()));
    }

    #[test]
    fn precedence_and_grouping() {
        let c = Condition::parse("a == 1 or b == 2 and c == 3").unwrap();
        assert_eq!(
            c.expr,
            Expr::Or(vec![
                cmp(0, Op::Eq, Literal::Number(1.0)),
                Expr::And(vec![
                    cmp(1, Op::Eq, Literal::Number(2.0)),
                    cmp(2, Op::Eq, Literal::Number(3.0)),
                ]),
            ])
        );
        let c = Condition::parse("(a == 1 or b == 2) and not not c == 3").unwrap();
        assert_eq!(
            c.expr,
            Expr::And(vec![
                Expr::Or(vec![
                    cmp(0, Op::Eq, Literal::Number(1.0)),
                    cmp(1, Op::Eq, Literal::Number(2.0)),
                ]),
                Expr::Not(Box::new(Expr::Not(Box::new(cmp(
                    2,
                    Op::Eq,
                    Literal::Number(3.0)
                ))))),
            ])
        );
        let c = Condition::parse("not(a==1)and(b==2)").unwrap();
        assert_eq!(
            c.expr,
            Expr::And(vec![
                Expr::Not(Box::new(cmp(0, Op::Eq, Literal::Number(1.0)))),
                cmp(1, Op::Eq, Literal::Number(2.0)),
            ])
        );
    }

    #[test]
    fn paths_in_and_exists() {
        let c = Condition::parse(
            r#"a.b[0].c in [1, "x", true, null] and exists( ["odd key"].y ) and a.b[0].c != 2"#,
        )
        .unwrap();
        assert_eq!(c.fields, vec![path("a.b[0].c"), path(r#"["odd key"].y"#)]);
        assert_eq!(
            c.expr,
            Expr::And(vec![
                Expr::In {
                    field: 0,
                    values: vec![
                        Literal::Number(1.0),
                        Literal::String("x".into()),
                        Literal::Bool(true),
                        Literal::Null,
                    ],
                },
                Expr::Exists { field: 1 },
                cmp(0, Op::Ne, Literal::Number(2.0)),
            ])
        );
        let c = Condition::parse("x in []").unwrap();
        assert_eq!(
            c.expr,
            Expr::In {
                field: 0,
                values: vec![]
            }
        );
        let c = Condition::parse("x in[1]").unwrap();
        assert_eq!(
            c.expr,
            Expr::In {
                field: 0,
                values: vec![Literal::Number(1.0)]
            }
        );
        // Keywords only count as whole tokens; quoted keys can be keywords.
        let c = Condition::parse(r#"notes == 1 and ["not"] == 2 and exists_x == 3 and in.x == 4"#)
            .unwrap();
        assert_eq!(
            c.fields,
            vec![
                path("notes"),
                path(r#"["not"]"#),
                path("exists_x"),
                path("in.x")
            ]
        );
        // Keys with odd characters other than the delimiters are bare.
        let c = Condition::parse("device-id == 'a' and é.ü == 1 and [0] == 2").unwrap();
        assert_eq!(c.fields, vec![path("device-id"), path("é.ü"), path("[0]")]);
    }

    #[test]
    fn error_positions_and_messages() {
        let cases = [
            (
                "temperature <=",
                "at character 15: expected a value after '<=' (a number, a \"string\", true, \
                 false or null), found the end of the condition",
            ),
            (
                "temperature <= 80 and",
                "at character 22: expected a condition, found the end of the condition",
            ),
            ("", "at character 1: the condition is empty"),
            ("   ", "at character 4: the condition is empty"),
            (
                "a == 1 b == 2",
                "at character 8: expected 'and', 'or' or the end of the condition, found 'b'",
            ),
            (
                "a = 1",
                "at character 3: '=' is not an operator: use '==' to compare",
            ),
            (
                "a ! 1",
                "at character 3: '!' is not an operator: use '!=' or 'not'",
            ),
            (
                "a 1",
                "at character 3: expected an operator (==, !=, <, <=, >, >=) or 'in' after the \
                 field 'a', found '1'",
            ),
            (
                "a == b",
                "at character 6: expected a value after '==' (a number, a \"string\", true, \
                 false or null), found 'b' (comparing two fields is not supported; quote strings)",
            ),
            (
                "80 >= temperature",
                "at character 1: expected a field path, found '80'; a comparison puts the field \
                 first, e.g. temperature <= 80",
            ),
            (
                "a < true",
                "at character 5: '<' compares numbers or strings; true, false and null only work with '==' and '!='",
            ),
            (
                "a >= null",
                "at character 6: '>=' compares numbers or strings; true, false and null only work with '==' and '!='",
            ),
            (
                "(a == 1",
                "at character 8: expected ')' to close the '(' at character 1, found the end of the condition",
            ),
            (
                "a == 1)",
                "at character 7: expected 'and', 'or' or the end of the condition, found ')'",
            ),
            ("()", "at character 2: expected a condition, found ')'"),
            (
                "a in 1",
                "at character 6: expected '[' after 'in', found '1'",
            ),
            (
                "a in [1 2]",
                "at character 9: expected ',' or ']' in the list, found '2'",
            ),
            (
                "a in [1,]",
                "at character 9: expected a value after ',' (a number, a \"string\", true, false \
                 or null), found ']'",
            ),
            (
                "a in [1",
                "at character 8: expected ',' or ']' in the list, found the end of the condition",
            ),
            ("a == 'abc", "at character 6: unterminated string"),
            ("a == \"ab\\", "at character 9: unterminated string"),
            (
                "a == \"\\x\"",
                "at character 7: invalid escape: use \\\", \\', \\\\, \\/, \\b, \\f, \\n, \\r, \\t or \\uXXXX",
            ),
            (
                "a == \"\\u12\"",
                "at character 7: invalid \\u escape: expected four hex digits",
            ),
            (
                "a == \"\\ud800\"",
                "at character 7: invalid \\u escape: unpaired high surrogate",
            ),
            (
                "a == \"\\udc00\"",
                "at character 7: invalid \\u escape: unpaired low surrogate",
            ),
            (
                "a == 08",
                "at character 6: invalid number '08' (numbers are written as in JSON, e.g. -12, 0.5, 1e3)",
            ),
            (
                "a == 1.",
                "at character 6: invalid number '1.' (numbers are written as in JSON, e.g. -12, 0.5, 1e3)",
            ),
            (
                "a == -",
                "at character 6: invalid number '-' (numbers are written as in JSON, e.g. -12, 0.5, 1e3)",
            ),
            (
                "a == 1e",
                "at character 6: invalid number '1e' (numbers are written as in JSON, e.g. -12, 0.5, 1e3)",
            ),
            (
                "a == 12abc",
                "at character 6: invalid number '12abc' (numbers are written as in JSON, e.g. -12, 0.5, 1e3)",
            ),
            (
                "a == 1e999",
                "at character 6: number '1e999' is out of range",
            ),
            (
                "a == truex",
                "at character 6: expected a value after '==' (a number, a \"string\", true, false or null), found 'truex' (comparing two fields is not supported; quote strings)",
            ),
            (
                "a..b == 1",
                "at character 3: bad field path 'a..b': empty key",
            ),
            (
                "a[x] == 1",
                "at character 3: bad field path 'a[x]': bad index: expected digits or a quoted key",
            ),
            (
                "a[0 == 1",
                "at character 2: bad field path 'a[0': unclosed bracket",
            ),
            (
                "é.[\"x] == 1",
                "at character 3: bad field path 'é.[\"x] == 1': empty key",
            ),
            (
                "and == 1",
                "at character 1: expected a condition, found the keyword 'and' (a field with this name is written [\"and\"])",
            ),
            (
                "true",
                "at character 1: expected a condition, found the keyword 'true' (a field with this name is written [\"true\"])",
            ),
            (
                "exists a",
                "at character 8: expected '(' after 'exists', found 'a'",
            ),
            (
                "exists()",
                "at character 8: expected a field path in exists(...), found ')'",
            ),
            (
                "exists(a",
                "at character 9: expected ')' to close the '(' at character 7, found the end of the condition",
            ),
            (
                "not",
                "at character 4: expected a condition, found the end of the condition",
            ),
            (
                "a == 1 or",
                "at character 10: expected a condition, found the end of the condition",
            ),
            (", == 1", "at character 1: expected a condition, found ','"),
            (
                "ü == 'x' and",
                "at character 13: expected a condition, found the end of the condition",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(err(text), expected, "{text}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}a == 1{}", "(".repeat(64), ")".repeat(64));
        assert!(Condition::parse(&ok).is_ok());
        let deep = format!("{}a == 1{}", "(".repeat(65), ")".repeat(65));
        assert!(err(&deep).contains("nested too deeply"), "{}", err(&deep));
        let nots = format!("{}a == 1", "not ".repeat(100_000));
        assert!(err(&nots).contains("nested too deeply"));
        let parens = "(".repeat(1_000_000);
        assert!(err(&parens).contains("nested too deeply"));
    }

    #[test]
    fn fields_are_deduplicated() {
        let c = Condition::parse("a > 1 and a < 5 or b == 2 or exists(a)").unwrap();
        assert_eq!(c.fields(), &[path("a"), path("b")]);
    }

    #[test]
    fn never_panics_on_odd_text() {
        let alphabet = [
            "a", "b.c", "[0]", "[\"k\"]", " ", "(", ")", "==", "!=", "<", "<=", ">", ">=", "=",
            "!", "in", "[", "]", ",", "1", "-", ".", "e", "\"", "'", "\\", "u", "and", "or", "not",
            "exists", "true", "null", "é", "\u{0}",
        ];
        // A deterministic walk over many short combinations.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut text = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut s = state;
            for _ in 0..(s % 9) {
                s /= 9;
                text.push_str(alphabet[(s % alphabet.len() as u64) as usize]);
                s /= alphabet.len() as u64;
            }
            if let Err(e) = Condition::parse(&text) {
                assert!(
                    e.position >= 1 && e.position <= text.chars().count() + 1,
                    "{text:?}: {e}"
                );
            }
        }
    }
}
