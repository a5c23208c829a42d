//! Reading config tables while collecting every problem.
//!
//! serde stops at the first error; `edge-router validate` must report all of them, each with
//! file, line, column and key path. A [`Section`] wraps one TOML table (from a file or built from
//! a quick-mode URI), hands out typed values with their documented defaults and ranges, records
//! which keys were read, and reports the rest as unknown keys when it is finished. Problems go
//! into [`Diagnostics`]; the getters always return a usable value, so validation goes on.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use toml_edit::{Item, Key, TableLike, Value};

/// Where the text being read came from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A TOML file: its name as given and its text (for line and column numbers).
    File {
        /// The path as the user gave it.
        name: String,
        /// The file's text.
        text: Arc<str>,
    },
    /// A command-line argument, such as `--sink 'file:out?rotate_bytes=1MiB'`.
    Arg(String),
}

/// Where a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A position in a file (1-based line and column).
    File {
        /// The path as the user gave it.
        name: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
    },
    /// A command-line argument.
    Arg(String),
}

/// One config problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where it is.
    pub location: Location,
    /// Dotted key path, e.g. `sinks.out.rotate_bytes`.
    pub key_path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::File { name, line, column } => write!(f, "{name}:{line}:{column}: ")?,
            Location::Arg(arg) => write!(f, "{arg}: ")?,
        }
        if !self.key_path.is_empty() {
            write!(f, "`{}`: ", self.key_path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// All problems found in one config, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects problems.
#[derive(Debug, Default)]
pub struct Diagnostics {
    errors: Vec<ConfigError>,
}

impl Diagnostics {
    /// No problems yet.
    pub fn new() -> Diagnostics {
        Diagnostics::default()
    }

    /// Records a problem at `at`.
    pub fn error(&mut self, at: &Spot, message: impl Into<String>) {
        self.errors.push(ConfigError {
            location: at.location(),
            key_path: at.key_path.clone(),
            message: message.into(),
        });
    }

    /// Records a finished problem.
    pub fn push(&mut self, e: ConfigError) {
        self.errors.push(e);
    }

    /// True when nothing was wrong.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The problems, or `Ok(value)` if there were none.
    /// Problems are sorted by position (file problems by line and column; argument problems
    /// keep their order after them).
    pub fn finish<T>(mut self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(value);
        }
        self.errors.sort_by_key(|e| match &e.location {
            Location::File { line, column, .. } => (0, *line, *column),
            Location::Arg(_) => (1, 0, 0),
        });
        Err(ConfigErrors(self.errors))
    }
}

/// A place in the config, kept so that problems found later (e.g. a sink name that does not
/// exist) can still point at it.
#[derive(Debug, Clone)]
pub struct Spot {
    origin: Origin,
    span: Option<Range<usize>>,
    /// Dotted key path.
    pub key_path: String,
}

impl Spot {
    /// Resolves the byte span into a line and column.
    pub fn location(&self) -> Location {
        match &self.origin {
            Origin::Arg(arg) => Location::Arg(arg.clone()),
            Origin::File { name, text } => {
                let offset = self.span.as_ref().map_or(0, |s| s.start).min(text.len());
                let (line, column) = line_column(text, offset);
                Location::File {
                    name: name.clone(),
                    line,
                    column,
                }
            }
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// A string value and where it was.
#[derive(Debug, Clone)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub spot: Spot,
}

/// Equal when the values are: the same setting written on another line is the same setting
/// (a reload compares configs this way).
impl<T: PartialEq> PartialEq for Located<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

/// One table being read.
pub struct Section<'a> {
    table: &'a dyn TableLike,
    origin: Origin,
    span: Option<Range<usize>>,
    path: String,
    used: Vec<&'static str>,
    /// Quick-mode arguments carry every value as text; accept scalars where strings are wanted.
    lenient: bool,
    /// Set by [`Section::skip_rest`].
    skip_all: bool,
}

/// Parses a TOML file's text; a syntax error is reported with its position.
pub fn parse_document(name: &str, text: &str) -> Result<toml_edit::Document<String>, ConfigErrors> {
    toml_edit::Document::parse(text.to_owned()).map_err(|e| {
        let spot = Spot {
            origin: Origin::File {
                name: name.to_owned(),
                text: Arc::from(text),
            },
            span: e.span(),
            key_path: String::new(),
        };
        let message = e.message().trim().to_owned();
        ConfigErrors(vec![ConfigError {
            location: spot.location(),
            key_path: String::new(),
            message: format!("TOML syntax error: {message}"),
        }])
    })
}

impl<'a> Section<'a> {
    /// The top-level table of a file or of a quick-mode argument.
    pub fn root(table: &'a dyn TableLike, origin: Origin, path: &str) -> Section<'a> {
        let lenient = matches!(origin, Origin::Arg(_));
        Section {
            table,
            origin,
            span: None,
            path: path.to_owned(),
            used: Vec::new(),
            lenient,
            skip_all: false,
        }
    }

    /// The dotted path of this table.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The dotted path of `key` in this table, for messages.
    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// A spot pointing at this table itself.
    pub fn spot(&self) -> Spot {
        Spot {
            origin: self.origin.clone(),
            span: self.span.clone(),
            key_path: self.path.clone(),
        }
    }

    /// A spot pointing at the value of `key` (or at the table when the key is absent).
    pub fn spot_of(&self, key: &str) -> Spot {
        let span = self
            .table
            .get_key_value(key)
            .and_then(|(k, item)| item.span().or_else(|| k.span()))
            .or_else(|| self.span.clone());
        Spot {
            origin: self.origin.clone(),
            span,
            key_path: self.key_path(key),
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Item> {
        self.used.push(key);
        self.table.get(key)
    }

    /// The raw TOML item of `key`, for values read by other code (marks it as read).
    pub fn raw(&mut self, _d: &mut Diagnostics, key: &'static str) -> Option<&'a Item> {
        self.get(key)
    }

    /// True when `key` is present (and marks it as read).
    pub fn has(&mut self, key: &'static str) -> bool {
        self.get(key).is_some()
    }

    fn type_error(&self, d: &mut Diagnostics, key: &str, want: &str, item: &Item) {
        d.error(
            &self.spot_of(key),
            format!("expected {want}, found {}", item_type(item)),
        );
    }

    /// An optional string.
    pub fn opt_str(&mut self, d: &mut Diagnostics, key: &'static str) -> Option<Located<String>> {
        let item = self.get(key)?;
        let value = match item.as_value() {
            Some(Value::String(s)) => s.value().clone(),
            Some(v) if self.lenient && !v.is_array() && !v.is_inline_table() => {
                v.to_string().trim().to_owned()
            }
            _ => {
                self.type_error(d, key, "a string", item);
                return None;
            }
        };
        Some(Located {
            value,
            spot: self.spot_of(key),
        })
    }

    /// A string with a default.
    pub fn str_or(&mut self, d: &mut Diagnostics, key: &'static str, default: &str) -> String {
        self.opt_str(d, key)
            .map_or_else(|| default.to_owned(), |l| l.value)
    }

    /// A required string; reports it missing.
    pub fn required_str(
        &mut self,
        d: &mut Diagnostics,
        key: &'static str,
    ) -> Option<Located<String>> {
        let present = self.table.contains_key(key);
        let v = self.opt_str(d, key);
        if !present {
            d.error(
                &self.spot(),
                format!("missing required key `{}`", self.key_path(key)),
            );
        }
        v
    }

    /// A required `IP:PORT` address; `example` is shown when it does not parse.
    pub fn socket_addr(
        &mut self,
        d: &mut Diagnostics,
        key: &'static str,
        example: &str,
    ) -> Option<std::net::SocketAddr> {
        let a = self.required_str(d, key)?;
        match a.value.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                d.error(
                    &a.spot,
                    format!(
                        "{:?} is not an address; expected IP:PORT, e.g. {example}",
                        a.value
                    ),
                );
                None
            }
        }
    }

    /// One of a fixed set of words.
    pub fn choice(
        &mut self,
        d: &mut Diagnostics,
        key: &'static str,
        choices: &[&'static str],
        default: &'static str,
    ) -> &'static str {
        let Some(v) = self.opt_str(d, key) else {
            return default;
        };
        match choices.iter().find(|c| **c == v.value) {
            Some(c) => c,
            None => {
                d.error(
                    &v.spot,
                    format!(
                        "unknown value {:?}; expected one of: {}",
                        v.value,
                        choices.join(", ")
                    ),
                );
                default
            }
        }
    }

    /// A boolean with a default.
    pub fn bool_or(&mut self, d: &mut Diagnostics, key: &'static str, default: bool) -> bool {
        let Some(item) = self.get(key) else {
            return default;
        };
        match item.as_value() {
            Some(Value::Boolean(b)) => *b.value(),
            Some(Value::String(s))
                if self.lenient && (s.value() == "true" || s.value() == "false") =>
            {
                s.value() == "true"
            }
            _ => {
                self.type_error(d, key, "true or false", item);
                default
            }
        }
    }

    /// A whole number in `range` with a default.
    pub fn int_or(
        &mut self,
        d: &mut Diagnostics,
        key: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> u64 {
        self.number(d, key, default, range, false)
    }

    /// A size in bytes in `range` with a default: a whole number, or a string such as
    /// `"64KiB"`, `"16 MiB"`, `"1GB"`.
    pub fn size_or(
        &mut self,
        d: &mut Diagnostics,
        key: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> u64 {
        self.number(d, key, default, range, true)
    }

    fn number(
        &mut self,
        d: &mut Diagnostics,
        key: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
        size: bool,
    ) -> u64 {
        let Some(item) = self.get(key) else {
            return default;
        };
        let parsed: Result<u64, String> = match item.as_value() {
            Some(Value::Integer(i)) => u64::try_from(*i.value())
                .map_err(|_| format!("must not be negative (found {})", i.value())),
            Some(Value::String(s)) if size => parse_size(s.value()),
            Some(Value::String(s)) if self.lenient => s
                .value()
                .parse::<u64>()
                .map_err(|_| format!("expected a whole number, found {:?}", s.value())),
            _ => Err(format!(
                "expected {}, found {}",
                if size {
                    "a size (a number of bytes or a string like \"64KiB\")"
                } else {
                    "a whole number"
                },
                item_type(item)
            )),
        };
        match parsed {
            Ok(v) if range.contains(&v) => v,
            Ok(v) => {
                d.error(
                    &self.spot_of(key),
                    format!(
                        "{v} is out of range; allowed: {} to {}",
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
            Err(msg) => {
                d.error(&self.spot_of(key), msg);
                default
            }
        }
    }

    /// An optional list of strings.
    pub fn opt_str_list(
        &mut self,
        d: &mut Diagnostics,
        key: &'static str,
    ) -> Option<Vec<Located<String>>> {
        let item = self.get(key)?;
        let spot = self.spot_of(key);
        match item.as_value() {
            Some(Value::Array(a)) => {
                let mut out = Vec::new();
                for (i, v) in a.iter().enumerate() {
                    let vspot = Spot {
                        origin: self.origin.clone(),
                        span: v.span().or_else(|| spot.span.clone()),
                        key_path: format!("{}[{i}]", spot.key_path),
                    };
                    match v.as_str() {
                        Some(s) => out.push(Located {
                            value: s.to_owned(),
                            spot: vspot,
                        }),
                        None => d.error(
                            &vspot,
                            format!("expected a string, found {}", v.type_name()),
                        ),
                    }
                }
                Some(out)
            }
            // Quick mode: a comma-separated string.
            Some(Value::String(s)) if self.lenient => Some(
                s.value()
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|p| Located {
                        value: p.to_owned(),
                        spot: spot.clone(),
                    })
                    .collect(),
            ),
            _ => {
                self.type_error(d, key, "a list of strings", item);
                None
            }
        }
    }

    fn child(
        &self,
        table: &'a dyn TableLike,
        span: Option<Range<usize>>,
        path: String,
    ) -> Section<'a> {
        Section {
            table,
            origin: self.origin.clone(),
            span,
            path,
            used: Vec::new(),
            lenient: self.lenient,
            skip_all: false,
        }
    }

    /// An optional sub-table (`[a.b]` or an inline `{ .. }`).
    pub fn opt_table(&mut self, d: &mut Diagnostics, key: &'static str) -> Option<Section<'a>> {
        let item = self.get(key)?;
        let path = self.key_path(key);
        match table_of(item) {
            Some((t, span)) => Some(self.child(t, span, path)),
            None => {
                self.type_error(d, key, "a table", item);
                None
            }
        }
    }

    /// The sub-tables of a table of named tables, such as `[sinks.NAME]`, in file order.
    pub fn named_tables(
        &mut self,
        d: &mut Diagnostics,
        key: &'static str,
    ) -> Vec<(Located<String>, Section<'a>)> {
        let Some(outer) = self.opt_table(d, key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let table = outer.table;
        for (name, item) in table.iter() {
            let path = outer.key_path(name);
            let (k, _) = match table.get_key_value(name) {
                Some(kv) => kv,
                None => continue,
            };
            let spot = Spot {
                origin: outer.origin.clone(),
                span: key_span(k).or_else(|| item.span()),
                key_path: path.clone(),
            };
            match table_of(item) {
                Some((t, span)) => {
                    let section = outer.child(t, span.or_else(|| key_span(k)), path);
                    out.push((
                        Located {
                            value: name.to_owned(),
                            spot,
                        },
                        section,
                    ));
                }
                None => d.error(
                    &spot,
                    format!("expected a table, found {}", item_type(item)),
                ),
            }
        }
        out
    }

    /// The tables of an array of tables (`[[stages]]`, or an inline array of inline tables).
    pub fn table_array(&mut self, d: &mut Diagnostics, key: &'static str) -> Vec<Section<'a>> {
        let Some(item) = self.get(key) else {
            return Vec::new();
        };
        let path = self.key_path(key);
        let mut out = Vec::new();
        match item {
            Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    out.push(self.child(t, t.span(), format!("{path}[{i}]")));
                }
            }
            Item::Value(Value::Array(a)) => {
                for (i, v) in a.iter().enumerate() {
                    match v.as_inline_table() {
                        Some(t) => out.push(self.child(t, t.span(), format!("{path}[{i}]"))),
                        None => d.error(
                            &Spot {
                                origin: self.origin.clone(),
                                span: v.span(),
                                key_path: format!("{path}[{i}]"),
                            },
                            format!("expected a table, found {}", v.type_name()),
                        ),
                    }
                }
            }
            other => self.type_error(d, key, "an array of tables", other),
        }
        out
    }

    /// Treats every key as read: for a table whose `kind` is missing or unknown, where the other
    /// keys cannot be judged and reporting them as unknown would only add noise.
    pub fn skip_rest(&mut self) {
        self.skip_all = true;
    }

    /// Reports every key of this table that was never read as unknown.
    pub fn finish(self, d: &mut Diagnostics) {
        if self.skip_all {
            return;
        }
        for (key, item) in self.table.iter() {
            if self.used.contains(&key) {
                continue;
            }
            let k = self.table.get_key_value(key).map(|(k, _)| k);
            let spot = Spot {
                origin: self.origin.clone(),
                span: k
                    .and_then(key_span)
                    .or_else(|| item.span())
                    .or_else(|| self.span.clone()),
                key_path: self.key_path(key),
            };
            let mut expected: Vec<&str> = self.used.clone();
            if self.lenient {
                // In a quick-mode URI these are given by the URI itself.
                expected.retain(|k| !matches!(*k, "kind" | "path" | "stream"));
            }
            expected.sort_unstable();
            expected.dedup();
            let hint = expected
                .iter()
                .map(|e| (edit_distance(e, key), *e))
                .filter(|(dist, _)| *dist <= 2)
                .min()
                .map(|(_, e)| format!(" (did you mean `{e}`?)"))
                .unwrap_or_default();
            d.error(
                &spot,
                format!(
                    "unknown key `{key}`{hint}; expected one of: {}",
                    expected.join(", ")
                ),
            );
        }
    }
}

/// Levenshtein distance between two short strings (for "did you mean" hints).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn key_span(k: &Key) -> Option<Range<usize>> {
    k.span()
}

fn table_of(item: &Item) -> Option<(&dyn TableLike, Option<Range<usize>>)> {
    match item {
        Item::Table(t) => Some((t as &dyn TableLike, t.span())),
        Item::Value(Value::InlineTable(t)) => Some((t as &dyn TableLike, t.span())),
        _ => None,
    }
}

fn item_type(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(v) => v.type_name(),
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

/// Parses a size such as `1024`, `"64KiB"`, `"16 MiB"`, `"1GB"`, `"512k"` into bytes.
/// Binary (`KiB`) and decimal (`KB`) units are both understood; `k`/`m`/`g` alone are binary.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: u64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| format!("expected a size like \"64KiB\", found {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?}; use B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    num.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}
