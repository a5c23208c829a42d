//! Built-in stages that need no plugin: `filter` (keep or drop by a condition) and `route`
//! (send records to named sinks by conditions). Conditions are read from config here and
//! evaluated by [`crate::core::matcher`].

pub mod filter;
pub mod route;

use crate::config::reader::{Diagnostics, Section};
use crate::core::jsonpath::JsonPath;
use crate::core::matcher::{Condition, Test};

/// Reads a condition from a table with `field` or `attribute` (optional, not both) and exactly
/// one of `equals`, `in`, `prefix` or `exists = true`.
pub fn parse_condition(s: &mut Section<'_>, d: &mut Diagnostics) -> Option<Condition> {
    let field = s.opt_str(d, "field").and_then(|f| {
        JsonPath::parse(&f.value)
            .map_err(|e| d.error(&f.spot, format!("invalid field path: {e}")))
            .ok()
    });
    let attribute = s.opt_str(d, "attribute");
    if let Some(a) = &attribute {
        if a.value.is_empty() {
            d.error(&a.spot, "`attribute` must name an attribute");
        }
        if field.is_some() {
            d.error(
                &a.spot,
                "a condition tests a `field` or an `attribute`, not both",
            );
        }
    }
    let attribute = attribute.map(|a| a.value);
    let equals = s.opt_str(d, "equals");
    let one_of = s.opt_str_list(d, "in");
    let prefix = s.opt_str(d, "prefix");
    let exists_spot = s.spot_of("exists");
    let exists = s.has("exists") && s.bool_or(d, "exists", true);
    let mut tests = Vec::new();
    if let Some(e) = equals {
        tests.push(Test::Equals(e.value));
    }
    if let Some(list) = one_of {
        tests.push(Test::OneOf(list.into_iter().map(|l| l.value).collect()));
    }
    if let Some(p) = prefix {
        tests.push(Test::Prefix(p.value.into_bytes()));
    }
    if exists {
        if field.is_none() && attribute.is_none() {
            d.error(&exists_spot, "`exists` needs a `field` or an `attribute`");
        }
        tests.push(Test::Exists);
    }
    if tests.len() != 1 {
        d.error(
            &s.spot(),
            format!(
                "a condition needs exactly one of `equals`, `in`, `prefix` or `exists = true` (found {})",
                tests.len()
            ),
        );
        return None;
    }
    let test = tests.pop()?;
    Some(Condition {
        field,
        attribute,
        test,
    })
}
