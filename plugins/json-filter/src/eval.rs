//! Evaluating a [`Condition`] against one record, reading only the fields it needs.

use std::borrow::Cow;
use std::cmp::Ordering;

use edge_router_plugin::{JsonPath, JsonValue, Record};

use crate::condition::{Condition, Expr, Literal, Op};
use crate::number;

/// How many distinct fields are remembered per record; later ones are looked up at each use.
const CACHED_FIELDS: usize = 8;

/// The record's fields, looked up on first use.
struct Fields<'a, 'c> {
    rec: &'c Record<'a>,
    paths: &'c [JsonPath],
    /// `None`: not looked up yet; `Some(None)`: absent.
    cache: [Option<Option<JsonValue<'a>>>; CACHED_FIELDS],
}

impl<'a> Fields<'a, '_> {
    fn get(&mut self, i: usize) -> Option<JsonValue<'a>> {
        let path = self.paths.get(i)?;
        match self.cache.get_mut(i) {
            Some(Some(hit)) => *hit,
            Some(slot) => *slot.insert(self.rec.field(path)),
            None => self.rec.field(path),
        }
    }
}

impl Condition {
    /// Evaluates the condition on `rec`. `Err` only when a string field compared with a string
    /// holds an invalid escape. Allocates nothing unless a compared string field holds escapes.
    pub fn eval(&self, rec: &Record<'_>) -> Result<bool, String> {
        let mut fields = Fields {
            rec,
            paths: &self.fields,
            cache: [None; CACHED_FIELDS],
        };
        eval(&self.expr, &mut fields)
    }
}

fn eval(expr: &Expr, fields: &mut Fields<'_, '_>) -> Result<bool, String> {
    match expr {
        Expr::Or(items) => {
            for item in items {
                if eval(item, fields)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Expr::And(items) => {
            for item in items {
                if !eval(item, fields)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Expr::Not(inner) => Ok(!eval(inner, fields)?),
        Expr::Exists { field } => Ok(fields.get(*field).is_some()),
        Expr::Compare { field, op, value } => match fields.get(*field) {
            None => Ok(false),
            Some(found) => compare(&Comparable::of(found), *op, value)
                .ok_or_else(|| bad_escape(fields.paths, *field)),
        },
        Expr::In { field, values } => {
            let Some(found) = fields.get(*field) else {
                return Ok(false);
            };
            let found = Comparable::of(found);
            for value in values {
                match compare(&found, Op::Eq, value) {
                    Some(true) => return Ok(true),
                    Some(false) => {}
                    None => return Err(bad_escape(fields.paths, *field)),
                }
            }
            Ok(false)
        }
    }
}

fn bad_escape(paths: &[JsonPath], i: usize) -> String {
    let path = paths.get(i).map(ToString::to_string).unwrap_or_default();
    format!("field `{path}` holds a string with an invalid escape")
}

/// A field's value in the form literals compare with; computed once per comparison or list.
enum Comparable<'a> {
    /// A number (±infinity beyond the f64 range).
    Number(f64),
    /// A string's unescaped UTF-8 bytes (borrowed from the record unless it held escapes).
    String(Cow<'a, [u8]>),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// A string with an invalid escape: comparing it with a string is an error.
    BadString,
    /// An object or an array: equal to no literal.
    Other,
}

impl<'a> Comparable<'a> {
    fn of(found: JsonValue<'a>) -> Comparable<'a> {
        match found {
            JsonValue::Number(text) => {
                number::parse(text).map_or(Comparable::Other, Comparable::Number)
            }
            JsonValue::String(raw) if !raw.has_escapes() => {
                Comparable::String(Cow::Borrowed(raw.raw()))
            }
            JsonValue::String(raw) => match raw.unescape() {
                Some(Cow::Borrowed(s)) => Comparable::String(Cow::Borrowed(s.as_bytes())),
                Some(Cow::Owned(s)) => Comparable::String(Cow::Owned(s.into_bytes())),
                None => Comparable::BadString,
            },
            JsonValue::Bool(b) => Comparable::Bool(b),
            JsonValue::Null => Comparable::Null,
            JsonValue::Object(_) | JsonValue::Array(_) => Comparable::Other,
        }
    }
}

/// `found op literal`; values of different kinds are unequal and unordered. `None` when a
/// string with an invalid escape is compared with a string.
fn compare(found: &Comparable<'_>, op: Op, literal: &Literal) -> Option<bool> {
    let ordering = match (found, literal) {
        (Comparable::BadString, Literal::String(_)) => return None,
        (Comparable::Number(have), Literal::Number(want)) => have.partial_cmp(want),
        (Comparable::String(have), Literal::String(want)) => Some((**have).cmp(want.as_bytes())),
        (Comparable::Bool(have), Literal::Bool(want)) => Some(have.cmp(want)),
        (Comparable::Null, Literal::Null) => Some(Ordering::Equal),
        _ => None,
    };
    Some(match ordering {
        Some(o) => match op {
            Op::Eq => o == Ordering::Equal,
            Op::Ne => o != Ordering::Equal,
            Op::Lt => o == Ordering::Less,
            Op::Le => o != Ordering::Greater,
            Op::Gt => o == Ordering::Greater,
            Op::Ge => o != Ordering::Less,
        },
        // Kinds differ: unequal, unordered.
        None => op == Op::Ne,
    })
}
