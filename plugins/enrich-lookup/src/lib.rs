//! An enrich stage that appends fields to JSON object records: fields looked up in a table by the
//! value of a key field, the router's host name and the arrival time.
//!
//! # Config
//!
//! ```json
//! {
//!   "key": "device_id",
//!   "table": {"17": {"site": "plant-3", "owner": "ops"}, "18": {"site": "plant-1"}},
//!   "add_host": true,
//!   "add_arrival": true,
//!   "missing": "pass"
//! }
//! ```
//!
//! - `key` (required): the path of the field whose value selects a table entry (`device_id`,
//!   `meta.ids[0]`, ...). A string value matches by its unescaped text, a number by its text as
//!   written (`17` and `"17"` both select `"17"`; `17.0` does not), `true`/`false`/`null` by
//!   their text; objects and arrays select nothing.
//! - `table` (required, may be empty): key value → an object of fields to append. The values
//!   may be any JSON; they are serialized once, in `init`.
//! - `add_host` (default `false`): append `"host": "<the router's host name>"`.
//! - `add_arrival` (default `false`): append `"arrival": "2024-05-01T12:34:56.789Z"`, the time
//!   the record reached the router, RFC 3339 in UTC with milliseconds.
//! - `missing` (default `"pass"`): what to do when the record has no key field, or its value is
//!   not in the table. `"pass"`: append no table fields (the host and arrival fields are still
//!   added); `"error"`: the record is an error, which the router dead-letters.
//!
//! # Output
//!
//! The new fields are written before the closing `}` of the record's top-level object, in the
//! order: table fields (in the order serde_json lists the entry's keys), `host`, `arrival`. The
//! record is not re-serialized: every byte of it is kept as it was, so
//! `{"device_id": 17, "t": 1}` becomes `{"device_id": 17, "t": 1,"owner":"ops","site":"plant-3"}`.
//! **Keys already present in the record are not checked**: if the record has its own `site`,
//! the output holds two (most JSON readers keep the last one, the SDK's scanner the first).
//!
//! To find the closing brace the record is scanned once (strings skipped, brackets counted).
//! A record whose first byte (after whitespace and an optional UTF-8 BOM) is not `{` is an
//! error (`not a JSON object`), as are an unterminated object or string, mismatched brackets,
//! nesting deeper than 128 levels, a trailing `,` or `:` before the closing brace, and bytes
//! other than whitespace after it. The record is not validated further.
//!
//! ```
//! use enrich_lookup::EnrichLookup;
//! let out = edge_router_plugin::testing::enrich::<EnrichLookup>(
//!     r#"{"key": "id", "table": {"7": {"site": "north"}}, "add_host": true}"#,
//!     &[br#"{"id": 7}"#, br#"{"id": 8}"#],
//! )
//! .unwrap();
//! assert_eq!(out[0].as_deref(), Ok(&br#"{"id": 7,"site":"north","host":"localhost"}"#[..]));
//! assert_eq!(out[1].as_deref(), Ok(&br#"{"id": 8,"host":"localhost"}"#[..]));
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod scan;

mod time;

use edge_router_plugin::table::Table;
use edge_router_plugin::{Changed, Context, Enrich, JsonPath, JsonValue, Record};
use serde_json::Value;

/// The enrich stage.
#[derive(Debug)]
pub struct EnrichLookup {
    /// The key field.
    key: JsonPath,
    /// Key value → the entry's fields as JSON members, `"a":1,"b":"x"` (possibly empty).
    table: Table<Box<[u8]>>,
    /// `"host":"<name>"` when `add_host`.
    host: Option<Box<[u8]>>,
    /// Whether to append the arrival time.
    add_arrival: bool,
    /// Whether a missing key or table entry is an error.
    missing_is_error: bool,
    /// The arrival time the `arrival` member was last written for, and that member.
    arrival: Option<(u64, Vec<u8>)>,
}

impl EnrichLookup {
    /// Reads the stage config (see the crate docs); `host_name` is the router's.
    pub fn from_config(config: &str, host_name: &str) -> Result<EnrichLookup, String> {
        let value: Value =
            serde_json::from_str(config).map_err(|e| format!("config is not valid JSON: {e}"))?;
        let Value::Object(map) = value else {
            return Err("config must be a JSON object with `key` and `table`".into());
        };
        const FIELDS: [&str; 5] = ["key", "table", "add_host", "add_arrival", "missing"];
        if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(format!(
                "config: unknown field `{unknown}` (expected one of {})",
                FIELDS.map(|f| format!("`{f}`")).join(", ")
            ));
        }
        let key = match map.get("key") {
            Some(Value::String(s)) => {
                JsonPath::parse(s).map_err(|e| format!("config: `key`: bad path '{s}': {e}"))?
            }
            Some(_) => return Err("config: `key` must be a string (a field path)".into()),
            None => return Err("config: missing `key`, the path of the field to look up".into()),
        };
        let entries = match map.get("table") {
            Some(Value::Object(entries)) => entries,
            Some(_) => {
                return Err("config: `table` must be an object of key value → fields".into());
            }
            None => {
                return Err(
                    "config: missing `table`, e.g. {\"17\": {\"site\": \"plant-3\"}}".into(),
                );
            }
        };
        let mut table = Vec::with_capacity(entries.len());
        for (value, fields) in entries {
            let Value::Object(fields) = fields else {
                return Err(format!(
                    "config: `table`: the entry for `{value}` must be an object of fields to add"
                ));
            };
            let mut members = Vec::new();
            for (name, field) in fields {
                if !members.is_empty() {
                    members.push(b',');
                }
                push_member(&mut members, name, field)?;
            }
            table.push((value.as_bytes().into(), members.into()));
        }
        let flag = |name: &str| match map.get(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(format!("config: `{name}` must be true or false")),
        };
        let host = if flag("add_host")? {
            let mut member = Vec::new();
            push_member(&mut member, "host", &Value::String(host_name.to_owned()))?;
            Some(member.into())
        } else {
            None
        };
        let missing_is_error = match map.get("missing") {
            None => false,
            Some(Value::String(s)) if s == "pass" => false,
            Some(Value::String(s)) if s == "error" => true,
            Some(_) => return Err("config: `missing` must be \"pass\" or \"error\"".into()),
        };
        Ok(EnrichLookup {
            key,
            table: Table::new(table),
            host,
            add_arrival: flag("add_arrival")?,
            missing_is_error,
            arrival: None,
        })
    }

    /// The table members for `rec`: `Ok(None)` when the key is missing and that passes.
    fn lookup(&self, rec: &Record<'_>) -> Result<Option<&[u8]>, String> {
        let key = match rec.field(&self.key) {
            None => None,
            Some(JsonValue::Object(_) | JsonValue::Array(_)) => Some(None),
            Some(value) => Some(Some(value.key_bytes().ok_or_else(|| {
                format!("field `{}` holds a string with an invalid escape", self.key)
            })?)),
        };
        let members = match &key {
            Some(Some(k)) => self.table.get(k.as_ref()),
            _ => None,
        };
        match (members, self.missing_is_error) {
            (Some(m), _) => Ok(Some(m)),
            (None, false) => Ok(None),
            (None, true) => Err(match key {
                None => format!("no field `{}`", self.key),
                Some(None) => format!("field `{}` is an object or array, not a key", self.key),
                Some(Some(k)) => format!(
                    "`{}` value '{}' is not in the table",
                    self.key,
                    String::from_utf8_lossy(k.get(..64).unwrap_or(&k))
                ),
            }),
        }
    }

    /// Makes `self.arrival` hold the `"arrival":"..."` member for `nanos`; it is formatted once
    /// per distinct arrival time (once per batch).
    fn refresh_arrival(&mut self, nanos: u64) {
        if self.arrival.as_ref().is_some_and(|(at, _)| *at == nanos) {
            return;
        }
        let mut member = self.arrival.take().map(|(_, m)| m).unwrap_or_default();
        member.clear();
        member.extend_from_slice(b"\"arrival\":\"");
        member.extend_from_slice(&time::rfc3339_millis(nanos));
        member.push(b'"');
        self.arrival = Some((nanos, member));
    }
}

/// Appends `"name":value` as JSON.
fn push_member(out: &mut Vec<u8>, name: &str, value: &Value) -> Result<(), String> {
    serde_json::to_writer(&mut *out, name)
        .and_then(|()| {
            out.push(b':');
            serde_json::to_writer(&mut *out, value)
        })
        .map_err(|e| format!("config: cannot serialize `{name}`: {e}"))
}

impl Enrich for EnrichLookup {
    fn init(config: &str, ctx: &Context) -> Result<Self, String> {
        EnrichLookup::from_config(config, &ctx.host_name)
    }

    fn enrich(&mut self, rec: &Record<'_>, out: &mut Vec<u8>) -> Result<Changed, String> {
        let close = scan::root_object_close(rec.payload).map_err(str::to_owned)?;
        if self.add_arrival {
            self.refresh_arrival(rec.arrival_unix_nanos);
        }
        let members = self.lookup(rec)?.filter(|m| !m.is_empty());
        if members.is_none() && self.host.is_none() && !self.add_arrival {
            return Ok(Changed::No);
        }
        let (head, tail) = rec.payload.split_at(close.offset);
        out.reserve(rec.payload.len() + members.map_or(0, <[u8]>::len) + 128);
        out.extend_from_slice(head);
        let mut comma = !close.empty;
        let mut append = |out: &mut Vec<u8>, member: &[u8]| {
            if comma {
                out.push(b',');
            }
            out.extend_from_slice(member);
            comma = true;
        };
        if let Some(m) = members {
            append(out, m);
        }
        if let Some(h) = &self.host {
            append(out, h);
        }
        if let Some((_, arrival)) = self.arrival.as_ref().filter(|_| self.add_arrival) {
            append(out, arrival);
        }
        out.extend_from_slice(tail);
        Ok(Changed::Yes)
    }
}

edge_router_plugin::export_enrich!(EnrichLookup);

#[cfg(test)]
mod tests {
    use super::EnrichLookup;
    use edge_router_plugin::testing::enrich;
    use edge_router_plugin::{Enrich, Record};
    use serde_json::{Value, json};

    const CONFIG: &str = r#"{
        "key": "device_id",
        "table": {
            "17": {"site": "plant-3", "owner": "ops"},
            "18": {"site": "plant-1", "limits": {"max": 80, "tags": ["a", "\"b\""]}},
            "unicode é": {"note": "line\nbreak \u2028 ☃"},
            "empty": {}
        },
        "add_host": true
    }"#;

    type Outputs = Vec<Result<Vec<u8>, String>>;

    fn run(config: &str, records: &[&str]) -> Outputs {
        let payloads: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
        enrich::<EnrichLookup>(config, &payloads).unwrap()
    }

    /// Parses every output with serde_json; panics on an error or invalid JSON.
    fn parsed(outputs: Outputs) -> Vec<Value> {
        outputs
            .into_iter()
            .map(|o| {
                let bytes = o.unwrap_or_else(|e| panic!("record error: {e}"));
                serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    panic!("invalid JSON {:?}: {e}", String::from_utf8_lossy(&bytes))
                })
            })
            .collect()
    }

    #[test]
    fn appends_table_fields_and_host() {
        let out = parsed(run(
            CONFIG,
            &[
                r#"{"device_id": 17, "t": 1}"#,
                r#"{"device_id":"18"}"#,
                r#"{"device_id":"unicode \u00e9","x":[1,{"y":"}"}]}"#,
                r#"{"device_id":"empty"}"#,
                r#"{"device_id":99}"#,
                r#"{"other":1}"#,
            ],
        ));
        assert_eq!(
            out,
            [
                json!({"device_id": 17, "t": 1, "site": "plant-3", "owner": "ops", "host": "localhost"}),
                json!({"device_id": "18", "site": "plant-1", "limits": {"max": 80, "tags": ["a", "\"b\""]}, "host": "localhost"}),
                json!({"device_id": "unicode é", "x": [1, {"y": "}"}], "note": "line\nbreak \u{2028} ☃", "host": "localhost"}),
                json!({"device_id": "empty", "host": "localhost"}),
                json!({"device_id": 99, "host": "localhost"}),
                json!({"other": 1, "host": "localhost"}),
            ]
        );
    }

    #[test]
    fn keeps_the_record_bytes() {
        let out = run(CONFIG, &["  {\"device_id\" : 17 ,\n \"a\":\"}\" }\n"]);
        assert_eq!(
            String::from_utf8(out[0].clone().unwrap()).unwrap(),
            "  {\"device_id\" : 17 ,\n \"a\":\"}\" ,\"owner\":\"ops\",\"site\":\"plant-3\",\
             \"host\":\"localhost\"}\n"
        );
    }

    #[test]
    fn empty_objects_and_whitespace() {
        let config = r#"{"key": "k", "table": {}, "add_host": true}"#;
        let records = [
            "{}",
            "{ }",
            " \t{\n}\r\n",
            "\u{feff}{}",
            "{\"a\":{}}",
            "{\"a\":[]}",
        ];
        let out = run(config, &records);
        for (rec, o) in records.iter().zip(&out) {
            let bytes = o.clone().unwrap();
            let text = String::from_utf8(bytes).unwrap();
            let v: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
                .unwrap_or_else(|e| panic!("{rec:?} -> {text:?}: {e}"));
            assert_eq!(v["host"], "localhost", "{rec:?}");
        }
        assert_eq!(out[0].as_deref(), Ok(&br#"{"host":"localhost"}"#[..]));
        assert_eq!(out[1].as_deref(), Ok(&br#"{ "host":"localhost"}"#[..]));
    }

    #[test]
    fn nothing_to_add_leaves_the_record() {
        let config = r#"{"key": "k", "table": {"1": {"a": 1}, "2": {}}}"#;
        let out = run(config, &[r#"{"k":1}"#, r#"{"k":2}"#, r#"{"k":3}"#, "{}"]);
        assert_eq!(out[0].as_deref(), Ok(&br#"{"k":1,"a":1}"#[..]));
        // Unchanged records come back as they were.
        assert_eq!(out[1].as_deref(), Ok(&br#"{"k":2}"#[..]));
        assert_eq!(out[2].as_deref(), Ok(&br#"{"k":3}"#[..]));
        assert_eq!(out[3].as_deref(), Ok(&b"{}"[..]));
    }

    #[test]
    fn missing_error_policy() {
        let config = r#"{"key": "meta.id", "table": {"1": {"a": 1}}, "missing": "error"}"#;
        let out = run(
            config,
            &[
                r#"{"meta":{"id":1}}"#,
                r#"{"meta":{"id":2}}"#,
                r#"{"meta":{}}"#,
                r#"{"meta":{"id":{"x":1}}}"#,
                r#"{"meta":{"id":"\z"}}"#,
            ],
        );
        assert_eq!(out[0].as_deref(), Ok(&br#"{"meta":{"id":1},"a":1}"#[..]));
        assert_eq!(
            out[1],
            Err("`meta.id` value '2' is not in the table".to_owned())
        );
        assert_eq!(out[2], Err("no field `meta.id`".to_owned()));
        assert_eq!(
            out[3],
            Err("field `meta.id` is an object or array, not a key".to_owned())
        );
        assert_eq!(
            out[4],
            Err("field `meta.id` holds a string with an invalid escape".to_owned())
        );
        let long = format!("{{\"meta\":{{\"id\":\"{}\"}}}}", "x".repeat(200));
        let out = run(config, &[&long]);
        assert_eq!(
            out[0],
            Err(format!(
                "`meta.id` value '{}' is not in the table",
                "x".repeat(64)
            ))
        );
    }

    #[test]
    fn records_that_are_not_objects_are_errors() {
        let config = r#"{"key": "k", "table": {}, "add_host": true}"#;
        let cases = [
            ("", "not a JSON object"),
            ("[1]", "not a JSON object"),
            ("text", "not a JSON object"),
            ("{\"a\":1", "unterminated JSON object"),
            ("{\"a\":\"}", "unterminated string in the JSON object"),
            ("{\"a\":[1}", "mismatched brackets in the JSON object"),
            ("{\"a\":1]", "mismatched brackets in the JSON object"),
            (
                "{\"a\":1,}",
                "invalid JSON object: ',' before the closing brace",
            ),
            (
                "{\"a\":}",
                "invalid JSON object: ':' before the closing brace",
            ),
            ("{} {}", "unexpected bytes after the JSON object"),
            ("{}x", "unexpected bytes after the JSON object"),
        ];
        let records: Vec<&str> = cases.iter().map(|c| c.0).collect();
        let out = run(config, &records);
        for ((rec, msg), o) in cases.iter().zip(out) {
            assert_eq!(o, Err((*msg).to_owned()), "{rec:?}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            run(config, &[&deep])[0],
            Err("the JSON object is nested deeper than 128 levels".to_owned())
        );
    }

    #[test]
    fn arrival_time() {
        let mut stage = EnrichLookup::from_config(
            r#"{"key": "k", "table": {"1": {"a": 1}}, "add_arrival": true}"#,
            "h",
        )
        .unwrap();
        let mut out = Vec::new();
        for (nanos, expected) in [
            (0, r#"{"k":1,"a":1,"arrival":"1970-01-01T00:00:00.000Z"}"#),
            (
                1_714_566_896_789_999_999,
                r#"{"k":1,"a":1,"arrival":"2024-05-01T12:34:56.789Z"}"#,
            ),
            (
                1_714_566_896_789_999_999,
                r#"{"k":1,"a":1,"arrival":"2024-05-01T12:34:56.789Z"}"#,
            ),
            (
                951_782_400_001_000_000,
                r#"{"k":1,"a":1,"arrival":"2000-02-29T00:00:00.001Z"}"#,
            ),
        ] {
            let rec = Record {
                payload: br#"{"k":1}"#,
                source: "test",
                arrival_unix_nanos: nanos,
            };
            out.clear();
            stage.enrich(&rec, &mut out).unwrap();
            assert_eq!(String::from_utf8(out.clone()).unwrap(), expected);
        }
    }

    #[test]
    fn host_names_are_escaped() {
        let stage = EnrichLookup::from_config(
            r#"{"key": "k", "table": {}, "add_host": true}"#,
            "we\"ird\\host\n",
        )
        .unwrap();
        assert_eq!(
            stage.host.as_deref(),
            Some(&br#""host":"we\"ird\\host\n""#[..])
        );
    }

    #[test]
    fn config_errors() {
        let err = |c: &str| enrich::<EnrichLookup>(c, &[]).unwrap_err();
        assert!(err("{").starts_with("config is not valid JSON: "));
        assert_eq!(
            err("[]"),
            "config must be a JSON object with `key` and `table`"
        );
        assert_eq!(
            err(r#"{"table": {}}"#),
            "config: missing `key`, the path of the field to look up"
        );
        assert_eq!(
            err(r#"{"key": 1, "table": {}}"#),
            "config: `key` must be a string (a field path)"
        );
        assert_eq!(
            err(r#"{"key": "a[", "table": {}}"#),
            "config: `key`: bad path 'a[': at byte 1: unclosed bracket"
        );
        assert_eq!(
            err(r#"{"key": "a"}"#),
            "config: missing `table`, e.g. {\"17\": {\"site\": \"plant-3\"}}"
        );
        assert_eq!(
            err(r#"{"key": "a", "table": []}"#),
            "config: `table` must be an object of key value → fields"
        );
        assert_eq!(
            err(r#"{"key": "a", "table": {"1": "x"}}"#),
            "config: `table`: the entry for `1` must be an object of fields to add"
        );
        assert_eq!(
            err(r#"{"key": "a", "table": {}, "add_host": "yes"}"#),
            "config: `add_host` must be true or false"
        );
        assert_eq!(
            err(r#"{"key": "a", "table": {}, "add_arrival": 1}"#),
            "config: `add_arrival` must be true or false"
        );
        assert_eq!(
            err(r#"{"key": "a", "table": {}, "missing": "drop"}"#),
            "config: `missing` must be \"pass\" or \"error\""
        );
        assert_eq!(
            err(r#"{"key": "a", "table": {}, "host": true}"#),
            "config: unknown field `host` (expected one of `key`, `table`, `add_host`, \
             `add_arrival`, `missing`)"
        );
    }
}
