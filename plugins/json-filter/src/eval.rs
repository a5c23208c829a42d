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
    #[inline]
    pub fn eval(&self, rec: &Record<'_>) -> Result<bool, String> {
        // The common condition, one comparison, needs no field cache.
        if let Expr::Compare { field, op, value } = &self.expr {
            let Some(path) = self.fields.get(*field) else {
                return Ok(false);
            };
            return match rec.field(path) {
                None => Ok(false),
                Some(found) => {
                    compare_value(found, *op, value).ok_or_else(|| bad_escape(&self.fields, *field))
                }
            };
        }
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
            Some(found) => {
                compare_value(found, *op, value).ok_or_else(|| bad_escape(fields.paths, *field))
            }
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

/// `found op literal` for a value straight from the record: [`compare`] without building a
/// [`Comparable`] when the literal is a number (the common case), so no string is unescaped for it.
#[inline]
fn compare_value(found: JsonValue<'_>, op: Op, literal: &Literal) -> Option<bool> {
    match (found, literal) {
        (JsonValue::Number(text), Literal::Number(want)) => Some(match number::parse(text) {
            Some(have) => holds(op, number_outcome(have, *want)),
            None => holds(op, UNORDERED),
        }),
        // Kinds differ (a string with a bad escape is no error against a number).
        (_, Literal::Number(_)) => Some(holds(op, UNORDERED)),
        _ => compare(&Comparable::of(found), op, literal),
    }
}

/// `found op literal`; values of different kinds are unequal and unordered. `None` when a
/// string with an invalid escape is compared with a string.
fn compare(found: &Comparable<'_>, op: Op, literal: &Literal) -> Option<bool> {
    let outcome = match (found, literal) {
        (Comparable::BadString, Literal::String(_)) => return None,
        (Comparable::Number(have), Literal::Number(want)) => number_outcome(*have, *want),
        (Comparable::String(have), Literal::String(want)) => {
            ordering_outcome((**have).cmp(want.as_bytes()))
        }
        (Comparable::Bool(have), Literal::Bool(want)) => ordering_outcome(have.cmp(want)),
        (Comparable::Null, Literal::Null) => ordering_outcome(Ordering::Equal),
        _ => UNORDERED,
    };
    Some(holds(op, outcome))
}

/// The outcome of comparing two values: 0 less, 1 equal, 2 greater, [`UNORDERED`] for values of
/// different kinds (or NaN, which the parser never yields).
type Outcome = u32;

/// Values of different kinds: unequal, unordered.
const UNORDERED: Outcome = 3;

#[inline]
fn number_outcome(have: f64, want: f64) -> Outcome {
    // No branches: exactly one of the four flags is set.
    u32::from(have == want) + 2 * u32::from(have > want) + UNORDERED * u32::from(have.is_nan())
}

#[inline]
fn ordering_outcome(o: Ordering) -> Outcome {
    match o {
        Ordering::Less => 0,
        Ordering::Equal => 1,
        Ordering::Greater => 2,
    }
}

/// Whether `op` holds for `outcome`: a bit per outcome and operator, so no branch on either.
#[inline]
fn holds(op: Op, outcome: Outcome) -> bool {
    let table: u32 = match op {
        Op::Eq => 0b0010,
        Op::Ne => 0b1101,
        Op::Lt => 0b0001,
        Op::Le => 0b0011,
        Op::Gt => 0b0100,
        Op::Ge => 0b0110,
    };
    table >> outcome & 1 != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_router_plugin::JsonPath;
    use proptest::prelude::*;

    /// The comparison as written before the outcome table, as the reference.
    fn reference_compare(found: &Comparable<'_>, op: Op, literal: &Literal) -> Option<bool> {
        let ordering = match (found, literal) {
            (Comparable::BadString, Literal::String(_)) => return None,
            (Comparable::Number(have), Literal::Number(want)) => have.partial_cmp(want),
            (Comparable::String(have), Literal::String(want)) => {
                Some((**have).cmp(want.as_bytes()))
            }
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
            None => op == Op::Ne,
        })
    }

    fn arb_value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<f64>().prop_map(|f| f.to_string()),
            (-300i32..300, 0u32..4)
                .prop_map(|(m, d)| format!("{}", f64::from(m) / 10f64.powi(d as i32))),
            prop::sample::select(vec![
                "0",
                "-0",
                "80",
                "80.0",
                "8e1",
                "1e400",
                "-1e400",
                "79.99999999999999",
                "80.00000000000001",
                "123456789012345678",
                "0.1",
                "\"80\"",
                "\"a\"",
                "\"\\u0061\"",
                "\"\\x\"",
                "\"b\"",
                "true",
                "false",
                "null",
                "{}",
                "[]",
                "{\"a\":1}",
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn arb_literal() -> impl Strategy<Value = Literal> {
        prop_oneof![
            any::<f64>().prop_filter_map("finite", |f| f.is_finite().then_some(Literal::Number(f))),
            prop::sample::select(vec![0.0, -0.0, 80.0, 0.1, 1e308, -1e308, 79.99999999999999])
                .prop_map(Literal::Number),
            prop::sample::select(vec!["80", "a", "b", ""]).prop_map(|s| Literal::String(s.into())),
            any::<bool>().prop_map(Literal::Bool),
            Just(Literal::Null),
        ]
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop::sample::select(vec![Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge])
    }

    proptest! {
        #[test]
        fn compare_value_matches_reference(
            value in arb_value(),
            op in arb_op(),
            literal in arb_literal(),
        ) {
            let doc = format!("[{value}]");
            let path = JsonPath::parse("[0]").unwrap();
            let found = edge_router_plugin::jsonpath::lookup(doc.as_bytes(), &path).unwrap();
            let expected = reference_compare(&Comparable::of(found), op, &literal);
            prop_assert_eq!(compare_value(found, op, &literal), expected);
            prop_assert_eq!(compare(&Comparable::of(found), op, &literal), expected);
        }
    }
}
