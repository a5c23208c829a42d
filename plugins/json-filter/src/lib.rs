//! A filter stage that keeps the JSON records matching a condition.
//!
//! # Config
//!
//! ```json
//! {"condition": "temperature <= 80 and site in [\"plant-1\", \"plant-2\"]"}
//! ```
//!
//! `condition` (required, a string) is the only field. `init` fails with a message naming the
//! character position of the first problem, e.g.
//! `condition: at character 15: expected a value after '<=' (...), found the end of the condition`.
//!
//! # The condition language
//!
//! - Comparisons `path op literal` with `op` one of `==`, `!=`, `<`, `<=`, `>`, `>=`. The field
//!   comes first; comparing two fields is not supported.
//! - `path in [lit, lit, ...]`: the field `==` one of the literals (`in []` is always false).
//! - `exists(path)`: the field is present, whatever its value (`null` included).
//! - `and`, `or`, `not` and parentheses; `not` binds tightest, then `and`, then `or`.
//! - Paths as everywhere in edge-router: `a.b[0].c`, `tags[2]`, `["key with spaces"].x`. A bare
//!   path ends at whitespace or one of `( ) = ! < > , ]`; keys holding those characters, and keys
//!   named `and`, `or`, `not`, `in`, `exists`, `true`, `false` or `null`, go in brackets
//!   (`["not"] == 1`).
//! - Literals: JSON numbers (`-12`, `0.5`, `1e3`), strings in double or single quotes with JSON
//!   escapes (and `\'`), `true`, `false`, `null`.
//!
//! # Meaning
//!
//! - Numbers compare numerically as f64 (`80 == 80.0`; a number beyond the f64 range counts as
//!   ±infinity). Strings compare by their unescaped text (`"\u0061" == "a"`), ordered by code
//!   point. `true`, `false` and `null` only work with `==` and `!=` (the parser rejects
//!   `x < true`).
//! - Values of different kinds are unequal and unordered: `==` and the orderings are false, `!=`
//!   is true (`temperature == "80"` is false when `temperature` is the number 80; objects and
//!   arrays equal no literal).
//! - **A missing field makes its comparison false** — every comparison, `!=` and `in` included —
//!   and `exists` false; wrap it in `not` for the opposite. So `x != 5` keeps only records
//!   that have an `x` other than 5, while `not (x == 5)` also keeps records without `x`.
//!   A document that is malformed before the field is reached counts as missing the field
//!   (fields are found by scanning, not by validating the whole document).
//! - A record that is not JSON at all (its first byte after whitespace and an optional UTF-8
//!   BOM is neither `{` nor `[`) is an error: the router dead-letters it with the message
//!   `not a JSON document (expected '{' or '[' first)`. So is a string field with an invalid
//!   escape when it is compared with a string.
//!
//! # Cost
//!
//! The condition is parsed once in `init`. Per record, only the fields it names are looked up,
//! each at most once, with the SDK's scanner ([`edge_router_plugin::Record::field`]); `and` and
//! `or` stop early. Numeric comparisons allocate nothing; string comparisons allocate only when
//! the record's string holds escapes.
//!
//! ```
//! use json_filter::JsonFilter;
//! let keep = edge_router_plugin::testing::filter::<JsonFilter>(
//!     r#"{"condition": "temperature <= 80 and not exists(alarm)"}"#,
//!     &[br#"{"temperature": 72}"#, br#"{"temperature": 95}"#, br#"{"temperature": 1, "alarm": 1}"#],
//! )
//! .unwrap();
//! assert_eq!(keep, vec![Ok(true), Ok(false), Ok(false)]);
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod condition;
mod eval;
mod number;

use edge_router_plugin::{Context, Filter, Record};

pub use condition::{Condition, ConditionError};

/// The message for records that are not JSON.
const NOT_JSON: &str = "not a JSON document (expected '{' or '[' first)";

/// The filter: keeps a record when its condition holds.
#[derive(Debug)]
pub struct JsonFilter {
    condition: Condition,
}

impl JsonFilter {
    /// Reads the stage config (see the crate docs).
    pub fn from_config(config: &str) -> Result<JsonFilter, String> {
        let value: serde_json::Value =
            serde_json::from_str(config).map_err(|e| format!("config is not valid JSON: {e}"))?;
        let serde_json::Value::Object(map) = value else {
            return Err("config must be a JSON object such as {\"condition\": \"x > 1\"}".into());
        };
        if let Some(unknown) = map.keys().find(|k| k.as_str() != "condition") {
            return Err(format!(
                "config: unknown field `{unknown}` (the only field is `condition`)"
            ));
        }
        let text = match map.get("condition") {
            Some(serde_json::Value::String(s)) => s,
            Some(_) => return Err("config: `condition` must be a string".into()),
            None => {
                return Err(
                    "config: missing `condition`, e.g. {\"condition\": \"temperature <= 80\"}"
                        .into(),
                );
            }
        };
        let condition = Condition::parse(text).map_err(|e| format!("condition: {e}"))?;
        Ok(JsonFilter { condition })
    }
}

impl Filter for JsonFilter {
    fn init(config: &str, _ctx: &Context) -> Result<Self, String> {
        JsonFilter::from_config(config)
    }

    #[inline]
    fn keep(&mut self, rec: &Record<'_>) -> Result<bool, String> {
        if !looks_like_json(rec.payload) {
            return Err(NOT_JSON.to_owned());
        }
        self.condition.eval(rec)
    }
}

/// True when the first byte after whitespace (and an optional UTF-8 BOM) opens an object or an
/// array.
#[inline]
fn looks_like_json(payload: &[u8]) -> bool {
    let body = payload.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(payload);
    matches!(
        body.iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')),
        Some(b'{' | b'[')
    )
}

edge_router_plugin::export_filter!(JsonFilter);

#[cfg(test)]
mod tests {
    use super::JsonFilter;
    use edge_router_plugin::testing::filter;

    fn config(condition: &str) -> String {
        serde_json::json!({ "condition": condition }).to_string()
    }

    /// Runs `condition` over `records`.
    fn run(condition: &str, records: &[&str]) -> Vec<Result<bool, String>> {
        let payloads: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
        filter::<JsonFilter>(&config(condition), &payloads).unwrap()
    }

    /// The keep flags of `condition` over `records`, which must all be judged without error.
    fn keeps(condition: &str, records: &[&str]) -> Vec<bool> {
        run(condition, records)
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("{condition}: {e}")))
            .collect()
    }

    fn init_err(config: &str) -> String {
        filter::<JsonFilter>(config, &[]).unwrap_err()
    }

    #[test]
    fn config_errors() {
        assert!(init_err("nope").starts_with("config is not valid JSON: "));
        assert_eq!(
            init_err("[]"),
            "config must be a JSON object such as {\"condition\": \"x > 1\"}"
        );
        assert_eq!(
            init_err("{}"),
            "config: missing `condition`, e.g. {\"condition\": \"temperature <= 80\"}"
        );
        assert_eq!(
            init_err(r#"{"condition": 1}"#),
            "config: `condition` must be a string"
        );
        assert_eq!(
            init_err(r#"{"condition": "a == 1", "extra": true}"#),
            "config: unknown field `extra` (the only field is `condition`)"
        );
        assert_eq!(
            init_err(&config("temperature <= ")),
            "condition: at character 16: expected a value after '<=' (a number, a \"string\", \
             true, false or null), found the end of the condition"
        );
        assert_eq!(
            init_err(&config("temperature <= 80 and and")),
            "condition: at character 23: expected a condition, found the keyword 'and' (a field \
             with this name is written [\"and\"])"
        );
    }

    #[test]
    fn numeric_operators() {
        let recs = [
            r#"{"t":79}"#,
            r#"{"t":80}"#,
            r#"{"t":80.0}"#,
            r#"{"t":8e1}"#,
            r#"{"t":81.5}"#,
        ];
        assert_eq!(keeps("t == 80", &recs), [false, true, true, true, false]);
        assert_eq!(keeps("t != 80", &recs), [true, false, false, false, true]);
        assert_eq!(keeps("t < 80", &recs), [true, false, false, false, false]);
        assert_eq!(keeps("t <= 80", &recs), [true, true, true, true, false]);
        assert_eq!(keeps("t > 80", &recs), [false, false, false, false, true]);
        assert_eq!(keeps("t >= 80", &recs), [false, true, true, true, true]);
        assert_eq!(
            keeps("t > -1e3", &[r#"{"t":-999.5}"#, r#"{"t":-1001}"#]),
            [true, false]
        );
        assert_eq!(
            keeps("t == 0", &[r#"{"t":-0}"#, r#"{"t":0.0}"#]),
            [true, true]
        );
        // Beyond f64: infinity.
        assert_eq!(
            keeps("t > 1e308", &[r#"{"t":1e400}"#, r#"{"t":-1e400}"#]),
            [true, false]
        );
    }

    #[test]
    fn string_operators_and_escapes() {
        let recs = [
            r#"{"s":"plant-1"}"#,
            r#"{"s":"plant-2"}"#,
            r#"{"s":"plant\u002d1"}"#,
            r#"{"s":"Plant-1"}"#,
            r#"{"s":"é"}"#,
        ];
        assert_eq!(
            keeps("s == 'plant-1'", &recs),
            [true, false, true, false, false]
        );
        assert_eq!(
            keeps("s != \"plant-1\"", &recs),
            [false, true, false, true, true]
        );
        assert_eq!(
            keeps("s < 'plant-2'", &recs),
            [true, false, true, true, false]
        );
        assert_eq!(
            keeps("s >= 'plant-2'", &recs),
            [false, true, false, false, true]
        );
        assert_eq!(keeps("s > 'z'", &recs), [false, false, false, false, true]);
        assert_eq!(
            keeps(r#"s == "\u00e9""#, &recs),
            [false, false, false, false, true]
        );
        assert_eq!(
            keeps(
                r#"q == "say \"hi\"\n""#,
                &[r#"{"q":"say \"hi\"\n"}"#, r#"{"q":"say hi"}"#]
            ),
            [true, false]
        );
        // A string with a bad escape cannot be compared.
        assert_eq!(
            run("s == 'a'", &[r#"{"s":"\x"}"#]),
            [Err(
                "field `s` holds a string with an invalid escape".to_owned()
            )]
        );
        // ...but is still a present field, and unequal to a number.
        assert_eq!(keeps("exists(s) and s != 1", &[r#"{"s":"\x"}"#]), [true]);
    }

    #[test]
    fn bool_null_and_type_mismatch() {
        let recs = [
            r#"{"v":true}"#,
            r#"{"v":false}"#,
            r#"{"v":null}"#,
            r#"{"v":80}"#,
            r#"{"v":"80"}"#,
            r#"{"v":{"a":1}}"#,
            r#"{"v":[80]}"#,
        ];
        assert_eq!(
            keeps("v == true", &recs),
            [true, false, false, false, false, false, false]
        );
        assert_eq!(
            keeps("v != true", &recs),
            [false, true, true, true, true, true, true]
        );
        assert_eq!(
            keeps("v == false", &recs),
            [false, true, false, false, false, false, false]
        );
        assert_eq!(
            keeps("v == null", &recs),
            [false, false, true, false, false, false, false]
        );
        assert_eq!(
            keeps("v != null", &recs),
            [true, true, false, true, true, true, true]
        );
        assert_eq!(
            keeps("v == 80", &recs),
            [false, false, false, true, false, false, false]
        );
        assert_eq!(
            keeps("v == '80'", &recs),
            [false, false, false, false, true, false, false]
        );
        assert_eq!(
            keeps("v != 80", &recs),
            [true, true, true, false, true, true, true]
        );
        assert_eq!(
            keeps("v < 100", &recs),
            [false, false, false, true, false, false, false]
        );
        assert_eq!(
            keeps("v >= '7'", &recs),
            [false, false, false, false, true, false, false]
        );
    }

    #[test]
    fn missing_fields_make_comparisons_false() {
        let recs = [r#"{"other":1}"#, "{}", "[]", r#"{"x":5}"#];
        for cond in [
            "x == 5", "x != 5", "x < 5", "x <= 5", "x > 5", "x >= 5", "x in [1]",
        ] {
            assert_eq!(keeps(cond, &recs[..3]), [false, false, false], "{cond}");
        }
        assert_eq!(keeps("exists(x)", &recs), [false, false, false, true]);
        assert_eq!(keeps("not exists(x)", &recs), [true, true, true, false]);
        assert_eq!(keeps("x != 5", &recs), [false, false, false, false]);
        assert_eq!(keeps("not (x == 5)", &recs), [true, true, true, false]);
        // Malformed before the field: treated as missing.
        assert_eq!(keeps("x == 5", &[r#"{"a":"unterminated, "x":5}"#]), [false]);
    }

    #[test]
    fn not_json_is_an_error() {
        let err = Err("not a JSON document (expected '{' or '[' first)".to_owned());
        assert_eq!(
            run(
                "exists(x)",
                &["", "   ", "plain text", "42", "\"s\"", "null"]
            ),
            vec![
                err.clone(),
                err.clone(),
                err.clone(),
                err.clone(),
                err.clone(),
                err
            ]
        );
        assert_eq!(
            run("exists(x)", &[" \n{\"x\":1}", "\u{feff}{\"x\":1}", "[1]"]),
            [Ok(true), Ok(true), Ok(false)]
        );
    }

    #[test]
    fn nested_paths() {
        let rec = r#"{"a":{"b":[{"c":1},{"c":2,"d":"x"}]},"odd key":{"y":true},"a.b":7}"#;
        assert_eq!(keeps("a.b[0].c == 1", &[rec]), [true]);
        assert_eq!(keeps("a.b[1].c == 2 and a.b[1].d == 'x'", &[rec]), [true]);
        assert_eq!(keeps("exists(a.b[2])", &[rec]), [false]);
        assert_eq!(keeps(r#"["odd key"].y == true"#, &[rec]), [true]);
        assert_eq!(keeps(r#"["a.b"] == 7 and a.b != 7"#, &[rec]), [true]);
        assert_eq!(keeps("[0] == 3", &["[3, 4]", "[4]"]), [true, false]);
        assert_eq!(keeps(r#"a["b"][0]["c"] >= 1"#, &[rec]), [true]);
    }

    #[test]
    fn in_lists() {
        let recs = [
            r#"{"s":"a"}"#,
            r#"{"s":"b"}"#,
            r#"{"s":2}"#,
            r#"{"s":2.0}"#,
            r#"{"s":null}"#,
            r#"{"s":true}"#,
        ];
        assert_eq!(
            keeps("s in ['a', 2, null]", &recs),
            [true, false, true, true, true, false]
        );
        assert_eq!(keeps("s in []", &recs), [false; 6]);
        assert_eq!(
            keeps("not s in ['a']", &recs),
            [false, true, true, true, true, true]
        );
    }

    #[test]
    fn logic_and_precedence() {
        let recs = [
            r#"{"a":1,"b":0,"c":0}"#,
            r#"{"a":0,"b":1,"c":1}"#,
            r#"{"a":0,"b":1,"c":0}"#,
        ];
        assert_eq!(
            keeps("a == 1 or b == 1 and c == 1", &recs),
            [true, true, false]
        );
        assert_eq!(
            keeps("(a == 1 or b == 1) and c == 1", &recs),
            [false, true, false]
        );
        assert_eq!(
            keeps("not a == 1 and not c == 1", &recs),
            [false, false, true]
        );
        assert_eq!(keeps("not (a == 1 or c == 1)", &recs), [false, false, true]);
        // Short circuit: an error on the right is not reached when the left decides.
        let bad = [r#"{"a":1,"s":"\x"}"#];
        assert_eq!(keeps("a == 1 or s == 'x'", &bad), [true]);
        assert_eq!(keeps("a == 2 and s == 'x'", &bad), [false]);
        assert!(run("a == 2 or s == 'x'", &bad)[0].is_err());
    }

    #[test]
    fn many_fields_beyond_the_cache() {
        let fields: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
        let cond = fields
            .iter()
            .enumerate()
            .map(|(i, f)| format!("{f} == {i}"))
            .collect::<Vec<_>>()
            .join(" and ");
        let rec = format!(
            "{{{}}}",
            fields
                .iter()
                .enumerate()
                .map(|(i, f)| format!("\"{f}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(keeps(&cond, &[&rec, r#"{"f0":0}"#]), [true, false]);
        let twice = format!("{cond} and {cond}");
        assert_eq!(keeps(&twice, &[&rec]), [true]);
    }

    #[test]
    fn whitespace_and_layout() {
        let rec = "{ \"t\" :\n 70 , \"s\" : \"x\" }";
        assert_eq!(keeps("\n\tt<=80\tand(s=='x')  ", &[rec]), [true]);
        assert!(init_err(&config("t<=80and s=='x'")).contains("invalid number '80and'"));
    }
}
