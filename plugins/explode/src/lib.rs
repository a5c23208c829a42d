//! A transform stage (contract 0.2): a record holding an array becomes one record per element,
//! keeping the parent's fields named in the config.
//!
//! # Config
//!
//! ```json
//! {"field": "readings", "keep": ["device", "site"], "partition_key": "sensor",
//!  "attributes": {"site": "site"}, "destinations": ["kinesis", "alerts"]}
//! ```
//!
//! - `field` (required): the path of the array (edge-router path syntax: `a.b[0].c`).
//! - `keep` (optional): paths of parent fields copied into every output, first, under their
//!   last segment's name (`meta.site` becomes `"site"`). A field the parent lacks is left out.
//! - `into` (optional): the name to put each element under. Without it, an object element's
//!   members follow the kept fields, and any other element goes under `"value"`.
//! - `partition_key` (optional): the path, inside the element, of the value that becomes the
//!   output's partition key (an element without it keeps the parent's key).
//! - `attributes` (optional): attribute name → path in the parent; each output gets the
//!   parent's value (unescaped string, number text, `true`/`false`) as that attribute.
//! - `destinations` (optional): sink names every output goes to (several allowed) instead of
//!   where the parent would have gone.
//!
//! A record without the array (or whose `field` is not an array) is an error: it is
//! dead-lettered. An empty array gives no output: the record is dropped. More than 1,024
//! elements is an error (the contract's bound on outputs per record).
//!
//! ```
//! use explode::Explode;
//! let run = edge_router_plugin::testing::transform::<Explode>(
//!     r#"{"field": "r", "keep": ["dev"]}"#,
//!     &[br#"{"dev": "d1", "r": [{"t": 1}, {"t": 2}]}"#],
//!     &[],
//! )
//! .unwrap();
//! let texts: Vec<String> = run.outputs.iter().map(|o| o.text()).collect();
//! assert_eq!(texts, [r#"{"dev":"d1","t": 1}"#, r#"{"dev":"d1","t": 2}"#]);
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use edge_router_plugin::{Context, Emitter, JsonPath, JsonValue, Record, Setup, Transform};
use serde_json::Value;
use serde_json::value::RawValue;

/// Most elements one record may explode into (the contract's outputs per record).
pub const ELEMENTS_MAX: usize = 1024;

/// The transform stage.
#[derive(Debug)]
pub struct Explode {
    field: JsonPath,
    /// Kept parent fields: path, and the JSON-quoted name to write.
    keep: Vec<(JsonPath, String)>,
    /// `"into":` as JSON-quoted name, if set.
    into: Option<String>,
    partition_key: Option<JsonPath>,
    attributes: Vec<(String, JsonPath)>,
    /// Destination indices (all of `destinations`).
    destinations: Vec<u32>,
}

fn path(v: &str, what: &str) -> Result<JsonPath, String> {
    JsonPath::parse(v).map_err(|e| format!("{what} {v:?} is not a path: {e}"))
}

/// The name a path's value is kept under: its last key (or the whole path text).
fn last_name(p: &str, parsed: &JsonPath) -> String {
    use edge_router_plugin::jsonpath::Segment;
    match parsed.segments().last() {
        Some(Segment::Key(k)) => k.clone(),
        _ => p.to_owned(),
    }
}

fn quoted(name: &str) -> String {
    Value::String(name.to_owned()).to_string()
}

impl Transform for Explode {
    fn init(config: &str, _ctx: &Context) -> Result<(Self, Setup), String> {
        let c: Value = serde_json::from_str(config).map_err(|e| format!("bad config: {e}"))?;
        let field = c
            .get("field")
            .and_then(Value::as_str)
            .ok_or("config needs \"field\": the path of the array")?;
        let strings = |key: &str| -> Result<Vec<String>, String> {
            match c.get(key) {
                None => Ok(vec![]),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| format!("\"{key}\" must list strings"))
                    })
                    .collect(),
                Some(_) => Err(format!("\"{key}\" must be a list of strings")),
            }
        };
        let keep = strings("keep")?
            .iter()
            .map(|k| {
                let p = path(k, "keep")?;
                let name = quoted(&last_name(k, &p));
                Ok((p, name))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let into = match c.get("into") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(quoted(s)),
            Some(_) => return Err("\"into\" must be a string".into()),
        };
        let partition_key = match c.get("partition_key") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(path(s, "partition_key")?),
            Some(_) => return Err("\"partition_key\" must be a path".into()),
        };
        let attributes = match c.get("attributes") {
            None => vec![],
            Some(Value::Object(m)) => m
                .iter()
                .map(|(name, p)| {
                    let p = p
                        .as_str()
                        .ok_or_else(|| format!("attribute {name:?} must name a path"))?;
                    Ok((name.clone(), path(p, "attribute")?))
                })
                .collect::<Result<Vec<_>, String>>()?,
            Some(_) => return Err("\"attributes\" must be a table: name = path".into()),
        };
        let names = strings("destinations")?;
        let destinations = (0..names.len() as u32).collect();
        Ok((
            Explode {
                field: path(field, "field")?,
                keep,
                into,
                partition_key,
                attributes,
                destinations,
            },
            Setup {
                destinations: names,
                wants_metadata: false,
            },
        ))
    }

    fn transform(&mut self, rec: &Record<'_>, out: &mut Emitter) -> Result<(), String> {
        let array = match rec.field(&self.field) {
            Some(JsonValue::Array(a)) => a,
            Some(_) => return Err("the field to explode is not an array".into()),
            None => return Err("the record has no array to explode".into()),
        };
        let elements: Vec<&RawValue> =
            serde_json::from_slice(array).map_err(|e| format!("the array is not valid: {e}"))?;
        if elements.len() > ELEMENTS_MAX {
            return Err(format!(
                "the array has {} elements, more than the {ELEMENTS_MAX} allowed",
                elements.len()
            ));
        }
        // The kept fields, written once for all elements.
        let mut prefix = Vec::new();
        for (p, name) in &self.keep {
            if let Some(v) = rec.field(p) {
                if !prefix.is_empty() {
                    prefix.push(b',');
                }
                prefix.extend_from_slice(name.as_bytes());
                prefix.push(b':');
                write_value(&mut prefix, v);
            }
        }
        let mut attributes = Vec::new();
        for (name, p) in &self.attributes {
            if let Some(v) = rec.field(p).and_then(|v| v.key_bytes()) {
                attributes.push((name.clone(), String::from_utf8_lossy(&v).into_owned()));
            }
        }
        for e in elements {
            let text = e.get().trim();
            let member = |buf: &mut Vec<u8>, name: &str| {
                buf.extend_from_slice(name.as_bytes());
                buf.push(b':');
                buf.extend_from_slice(text.as_bytes());
            };
            let mut output = out.emit_with(|buf| {
                buf.push(b'{');
                buf.extend_from_slice(&prefix);
                let sep = |buf: &mut Vec<u8>| {
                    if !prefix.is_empty() {
                        buf.push(b',');
                    }
                };
                match &self.into {
                    Some(name) => {
                        sep(buf);
                        member(buf, name);
                    }
                    None if text.starts_with('{') => {
                        let inner = text[1..text.len() - 1].trim();
                        if !inner.is_empty() {
                            sep(buf);
                            buf.extend_from_slice(inner.as_bytes());
                        }
                    }
                    None => {
                        sep(buf);
                        member(buf, "\"value\"");
                    }
                }
                buf.push(b'}');
            });
            if let Some(p) = &self.partition_key
                && let Some(k) = edge_router_plugin::jsonpath::lookup(text.as_bytes(), p)
                    .and_then(|v| v.key_bytes())
                    .filter(|k| !k.is_empty())
            {
                output = output.partition_key(String::from_utf8_lossy(&k).into_owned());
            }
            for (name, value) in &attributes {
                output = output.attribute(name.clone(), value.clone());
            }
            for &d in &self.destinations {
                output = output.destination(d);
            }
        }
        Ok(())
    }
}

/// Writes a found value back as JSON.
fn write_value(buf: &mut Vec<u8>, v: JsonValue<'_>) {
    match v {
        JsonValue::String(s) => {
            buf.push(b'"');
            buf.extend_from_slice(s.raw());
            buf.push(b'"');
        }
        other => buf.extend_from_slice(other.raw()),
    }
}

edge_router_plugin::export_transform!(Explode);

#[cfg(test)]
mod tests {
    use super::*;
    use edge_router_plugin::testing::transform;

    #[test]
    fn each_element_becomes_a_record_with_the_kept_fields_and_the_settings() {
        let run = transform::<Explode>(
            r#"{"field": "r", "keep": ["dev", "meta.site", "absent"], "partition_key": "s",
                "attributes": {"site": "meta.site"}, "destinations": ["a", "b"]}"#,
            &[
                br#"{"dev": "d\"1", "meta": {"site": "p1"}, "r": [{"s": "x", "t": 1}, 7, {}]}"#,
                br#"{"dev": "d2", "r": []}"#,
                br#"{"dev": "d3"}"#,
                br#"{"dev": "d4", "r": ["y"]}"#,
            ],
            &[],
        )
        .unwrap();
        assert_eq!(run.setup.destinations, ["a", "b"]);
        let texts: Vec<String> = run.outputs.iter().map(|o| o.text()).collect();
        assert_eq!(
            texts,
            [
                r#"{"dev":"d\"1","site":"p1","s": "x", "t": 1}"#,
                r#"{"dev":"d\"1","site":"p1","value":7}"#,
                r#"{"dev":"d\"1","site":"p1"}"#,
                r#"{"dev":"d4","value":"y"}"#,
            ]
        );
        let inputs: Vec<Option<u32>> = run.outputs.iter().map(|o| o.input).collect();
        assert_eq!(inputs, [Some(0), Some(0), Some(0), Some(3)]);
        let m0 = run.outputs[0].meta.clone().unwrap();
        assert_eq!(m0.partition_key.as_deref(), Some("x"));
        assert_eq!(m0.attributes, [("site".to_owned(), "p1".to_owned())]);
        assert_eq!(m0.destinations, [0, 1]);
        // No key in the element: none set.
        assert_eq!(run.outputs[1].meta.clone().unwrap().partition_key, None);
        assert_eq!(run.errors.len(), 1);
        assert_eq!(run.errors[0].0, 2);
        // Every output is valid JSON.
        for t in &texts {
            serde_json::from_str::<Value>(t).unwrap();
        }
    }

    #[test]
    fn into_puts_each_element_under_a_name_and_too_many_elements_is_an_error() {
        let big = format!(r#"{{"r": [{}]}}"#, vec!["1"; ELEMENTS_MAX + 1].join(","));
        let run = transform::<Explode>(
            r#"{"field": "r", "into": "reading"}"#,
            &[br#"{"r": [{"a": 1}]}"#, big.as_bytes()],
            &[],
        )
        .unwrap();
        assert_eq!(run.outputs.len(), 1);
        assert_eq!(run.outputs[0].text(), r#"{"reading":{"a": 1}}"#);
        assert_eq!(run.errors.len(), 1);
        assert!(
            run.errors[0].1.contains("1025 elements"),
            "{:?}",
            run.errors
        );
    }
}
