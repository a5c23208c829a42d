//! A route stage that sends each record to the sink named for the value of one of its fields.
//!
//! # Config
//!
//! ```json
//! {"field": "site", "routes": {"plant-1": "sink_a", "plant-2": "sink_b"}, "default": "sink_c"}
//! ```
//!
//! - `field` (required): the path of the field to read, e.g. `site` or `meta.tags[0]` (the
//!   edge-router path syntax: `a.b[0].c`, `["key with dots.or spaces"]`).
//! - `routes` (required, not empty): field value → sink name. Several values may share a sink.
//! - `default` (optional): the sink for records whose value has no route. Without it those
//!   records go to the router's default sinks.
//!
//! `init` returns the distinct sink names (those of `routes` in the order serde_json lists
//! their keys, then `default`); the router checks at start-up that each names a sink.
//!
//! # Matching
//!
//! - A string value matches by its unescaped text (`"plant\u002d1"` matches `plant-1`).
//! - A number matches by its text as written: `17` matches the route `"17"`, but `17.0` does
//!   not. `true`, `false` and `null` match the routes `"true"`, `"false"` and `"null"`.
//!   A number and a string with the same text (`17` and `"17"`) go to the same place.
//! - Objects and arrays match no route.
//! - A record without the field, or that is not JSON (or is malformed before the field), takes
//!   the default. Put a `json-filter` stage in front to dead-letter such records instead.
//! - A string with an invalid escape is an error: the router dead-letters the record.
//!
//! Per record the field is found by scanning (no parse) and looked up without allocating
//! (unless the string holds escapes): linearly in small tables, by hash in larger ones.
//!
//! ```
//! use route_by_field::RouteByField;
//! let (names, routes) = edge_router_plugin::testing::route::<RouteByField>(
//!     r#"{"field": "site", "routes": {"plant-1": "a", "plant-2": "b"}}"#,
//!     &[br#"{"site": "plant-2"}"#, br#"{"site": "elsewhere"}"#],
//! )
//! .unwrap();
//! assert_eq!(names, ["a", "b"]);
//! assert_eq!(routes, [Ok(Some("b".to_owned())), Ok(None)]);
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use edge_router_plugin::table::Table;
use edge_router_plugin::{Context, JsonPath, JsonValue, Record, Route};
use serde_json::Value;

/// The route stage.
#[derive(Debug)]
pub struct RouteByField {
    /// The field to read.
    field: JsonPath,
    /// Field value (unescaped string text or number text) → destination index.
    routes: Table<u32>,
    /// The destination for values without a route; `None`: the router's default sinks.
    default: Option<u32>,
}

impl RouteByField {
    /// Reads the stage config (see the crate docs); returns the stage and its destination names.
    pub fn from_config(config: &str) -> Result<(RouteByField, Vec<String>), String> {
        let value: Value =
            serde_json::from_str(config).map_err(|e| format!("config is not valid JSON: {e}"))?;
        let Value::Object(map) = value else {
            return Err("config must be a JSON object with `field` and `routes`".into());
        };
        if let Some(unknown) = map
            .keys()
            .find(|k| !matches!(k.as_str(), "field" | "routes" | "default"))
        {
            return Err(format!(
                "config: unknown field `{unknown}` (expected `field`, `routes` or `default`)"
            ));
        }
        let field = match map.get("field") {
            Some(Value::String(s)) => {
                JsonPath::parse(s).map_err(|e| format!("config: `field`: bad path '{s}': {e}"))?
            }
            Some(_) => return Err("config: `field` must be a string (a field path)".into()),
            None => return Err("config: missing `field`, the path of the field to route by".into()),
        };
        let Some(Value::Object(table)) = map.get("routes") else {
            return Err(if map.contains_key("routes") {
                "config: `routes` must be an object of field value → sink name".into()
            } else {
                "config: missing `routes`, e.g. {\"plant-1\": \"sink_a\"}".into()
            });
        };
        if table.is_empty() {
            return Err("config: `routes` is empty".into());
        }
        let mut names: Vec<String> = Vec::new();
        let mut index_of = |name: &str| -> u32 {
            match names.iter().position(|n| n == name) {
                Some(i) => i as u32,
                None => {
                    names.push(name.to_owned());
                    (names.len() - 1) as u32
                }
            }
        };
        let mut routes = Vec::with_capacity(table.len());
        for (value, sink) in table {
            let sink = match sink {
                Value::String(s) if !s.is_empty() => s,
                _ => {
                    return Err(format!(
                        "config: `routes`: the sink for `{value}` must be a non-empty string"
                    ));
                }
            };
            routes.push((value.as_bytes().into(), index_of(sink)));
        }
        let default = match map.get("default") {
            None => None,
            Some(Value::String(s)) if !s.is_empty() => Some(index_of(s)),
            Some(_) => return Err("config: `default` must be a non-empty sink name".into()),
        };
        Ok((
            RouteByField {
                field,
                routes: Table::new(routes),
                default,
            },
            names,
        ))
    }
}

impl Route for RouteByField {
    fn init(config: &str, _ctx: &Context) -> Result<(Self, Vec<String>), String> {
        RouteByField::from_config(config)
    }

    fn route(&mut self, rec: &Record<'_>) -> Result<Option<u32>, String> {
        let found = match rec.field(&self.field) {
            None | Some(JsonValue::Object(_) | JsonValue::Array(_)) => None,
            Some(value) => {
                let key = value.key_bytes().ok_or_else(|| {
                    format!(
                        "field `{}` holds a string with an invalid escape",
                        self.field
                    )
                })?;
                self.routes.get(&key).copied()
            }
        };
        Ok(found.or(self.default))
    }
}

edge_router_plugin::export_route!(RouteByField);

#[cfg(test)]
mod tests {
    use super::RouteByField;
    use edge_router_plugin::testing::route;

    type Routed = Vec<Result<Option<String>, String>>;

    fn run(config: &str, records: &[&str]) -> (Vec<String>, Routed) {
        let payloads: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
        route::<RouteByField>(config, &payloads).unwrap()
    }

    fn to(name: &str) -> Result<Option<String>, String> {
        Ok(Some(name.to_owned()))
    }

    const CONFIG: &str = r#"{"field": "site", "routes": {"plant-1": "sink_a", "plant-2": "sink_b",
        "plant-3": "sink_a", "17": "numbers", "true": "flags"}, "default": "sink_c"}"#;

    #[test]
    fn destinations_are_distinct_and_include_the_default() {
        let (names, _) = run(CONFIG, &[]);
        // serde_json lists keys in order: 17, plant-1, plant-2, plant-3, true.
        assert_eq!(names, ["numbers", "sink_a", "sink_b", "flags", "sink_c"]);
        let (names, _) = run(
            r#"{"field": "x", "routes": {"a": "s1", "b": "s2"}, "default": "s1"}"#,
            &[],
        );
        assert_eq!(names, ["s1", "s2"]);
    }

    #[test]
    fn routes_by_value() {
        let (_, routed) = run(
            CONFIG,
            &[
                r#"{"site":"plant-1"}"#,
                r#"{"site":"plant-2","x":1}"#,
                r#"{"a":{"site":"plant-2"},"site":"plant-3"}"#,
                r#"{"site":"plant\u002d2"}"#,
                r#"{"site":17}"#,
                r#"{"site":"17"}"#,
                r#"{"site":17.0}"#,
                r#"{"site":true}"#,
                r#"{"site":"elsewhere"}"#,
                r#"{"site":{"plant-1":1}}"#,
                r#"{"site":["plant-1"]}"#,
                r#"{"other":1}"#,
                "not json",
                "",
            ],
        );
        assert_eq!(
            routed,
            [
                to("sink_a"),
                to("sink_b"),
                to("sink_a"),
                to("sink_b"),
                to("numbers"),
                to("numbers"),
                to("sink_c"),
                to("flags"),
                to("sink_c"),
                to("sink_c"),
                to("sink_c"),
                to("sink_c"),
                to("sink_c"),
                to("sink_c"),
            ]
        );
    }

    #[test]
    fn without_a_default_unmatched_records_go_to_the_router_defaults() {
        let (names, routed) = run(
            r#"{"field": "meta.site[0]", "routes": {"north": "n"}}"#,
            &[
                r#"{"meta":{"site":["north"]}}"#,
                r#"{"meta":{"site":["south"]}}"#,
                "{}",
            ],
        );
        assert_eq!(names, ["n"]);
        assert_eq!(routed, [to("n"), Ok(None), Ok(None)]);
    }

    #[test]
    fn bad_escape_is_an_error() {
        let (_, routed) = run(CONFIG, &[r#"{"site":"\q"}"#]);
        assert_eq!(
            routed,
            [Err(
                "field `site` holds a string with an invalid escape".to_owned()
            )]
        );
    }

    #[test]
    fn config_errors() {
        let err = |c: &str| route::<RouteByField>(c, &[]).unwrap_err();
        assert!(err("{").starts_with("config is not valid JSON: "));
        assert_eq!(
            err("1"),
            "config must be a JSON object with `field` and `routes`"
        );
        assert_eq!(
            err(r#"{"routes": {"a": "b"}}"#),
            "config: missing `field`, the path of the field to route by"
        );
        assert_eq!(
            err(r#"{"field": 1, "routes": {"a": "b"}}"#),
            "config: `field` must be a string (a field path)"
        );
        assert_eq!(
            err(r#"{"field": "a..b", "routes": {"a": "b"}}"#),
            "config: `field`: bad path 'a..b': at byte 2: empty key"
        );
        assert_eq!(
            err(r#"{"field": "a"}"#),
            "config: missing `routes`, e.g. {\"plant-1\": \"sink_a\"}"
        );
        assert_eq!(
            err(r#"{"field": "a", "routes": []}"#),
            "config: `routes` must be an object of field value → sink name"
        );
        assert_eq!(
            err(r#"{"field": "a", "routes": {}}"#),
            "config: `routes` is empty"
        );
        assert_eq!(
            err(r#"{"field": "a", "routes": {"x": 1}}"#),
            "config: `routes`: the sink for `x` must be a non-empty string"
        );
        assert_eq!(
            err(r#"{"field": "a", "routes": {"x": ""}}"#),
            "config: `routes`: the sink for `x` must be a non-empty string"
        );
        assert_eq!(
            err(r#"{"field": "a", "routes": {"x": "s"}, "default": null}"#),
            "config: `default` must be a non-empty sink name"
        );
        assert_eq!(
            err(r#"{"field": "a", "routes": {"x": "s"}, "defaults": "s"}"#),
            "config: unknown field `defaults` (expected `field`, `routes` or `default`)"
        );
    }
}
