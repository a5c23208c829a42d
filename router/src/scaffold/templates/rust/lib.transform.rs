//! {{name}}: a transform stage (contract 0.2). Passes every record on with its partition key
//! set from a field, and for a record containing a text emits a second, derived record: one
//! input, two outputs. Config (JSON): `{"key": "device", "alert_if_contains": "ERROR"}` (the
//! defaults).
//!
//! - Output 1: the record unchanged, its partition key the string value of the top-level field
//!   `key` (left unset when the record has no such string, or it is empty or longer than 256
//!   characters). In Rust, `key` may also be a path such as `meta.device`.
//! - Output 2, only when the record contains `alert_if_contains`: `{"alert":RECORD}`, with the
//!   same partition key and the attribute `type` = `alert` (path templates and routes can use it).
//! - A record that is not a JSON object is an error (dead-lettered by default).

use edge_router_plugin::{Context, Emitter, JsonPath, JsonValue, Record, Setup, Transform};

/// Longest partition key, in characters (the router's and Kinesis's limit).
const KEY_CHARS_MAX: usize = 256;

/// The stage: what it looks for, parsed once in `init`.
pub struct Plugin {
    key: JsonPath,
    needle: Vec<u8>,
}

impl Transform for Plugin {
    fn init(config: &str, _ctx: &Context) -> Result<(Self, Setup), String> {
        let config: serde_json::Map<String, serde_json::Value> = serde_json::from_str(config)
            .map_err(|e| format!("config must be a JSON object: {e}"))?;
        let (mut key, mut needle) = ("device".to_owned(), "ERROR".to_owned());
        for (name, value) in config {
            match (name.as_str(), value) {
                ("key", serde_json::Value::String(s)) if !s.is_empty() => key = s,
                ("alert_if_contains", serde_json::Value::String(s)) if !s.is_empty() => needle = s,
                ("key" | "alert_if_contains", _) => {
                    return Err(format!("config: `{name}` must be a non-empty string"));
                }
                (other, _) => return Err(format!("config: unknown key `{other}`")),
            }
        }
        let key = JsonPath::parse(&key).map_err(|e| format!("config: `key`: {e}"))?;
        // No destination names (outputs go where the input would), no input metadata needed.
        Ok((
            Plugin {
                key,
                needle: needle.into_bytes(),
            },
            Setup::default(),
        ))
    }

    /// Called once per record: emits its outputs into `out` (none drops it), or `Err`
    /// dead-letters it (taking back what it emitted).
    fn transform(&mut self, rec: &Record<'_>, out: &mut Emitter) -> Result<(), String> {
        let p = rec.payload.trim_ascii();
        if !(p.len() >= 2 && p[0] == b'{' && p[p.len() - 1] == b'}') {
            return Err("not a JSON object".into());
        }
        let key = match rec.field(&self.key) {
            Some(JsonValue::String(s)) => s
                .unescape()
                .map(|k| k.into_owned())
                .filter(|k| !k.is_empty() && k.chars().count() <= KEY_CHARS_MAX),
            _ => None,
        };
        let first = out.emit(rec.payload);
        if let Some(k) = &key {
            first.partition_key(k.as_str());
        }
        // Scan, don't parse: a byte search is all the second output needs.
        if rec
            .payload
            .windows(self.needle.len())
            .any(|w| w == self.needle.as_slice())
        {
            let derived = out
                .emit_with(|buf| {
                    buf.extend_from_slice(b"{\"alert\":");
                    buf.extend_from_slice(rec.payload);
                    buf.push(b'}');
                })
                .attribute("type", "alert");
            if let Some(k) = key {
                derived.partition_key(k);
            }
        }
        Ok(())
    }
}

edge_router_plugin::export_transform!(Plugin);

#[cfg(test)]
mod tests {
    use super::Plugin;
    use edge_router_plugin::testing;

    #[test]
    fn passes_records_on_keyed_and_adds_an_alert_for_a_match() {
        let run = testing::transform::<Plugin>(
            "{}",
            &[
                br#"{"device":"d\"1","level":"ERROR"}"#,
                br#"{"n":1}"#,
                b"[1]",
            ],
            &[],
        )
        .unwrap();
        let texts: Vec<String> = run.outputs.iter().map(|o| o.text()).collect();
        assert_eq!(
            texts,
            [
                r#"{"device":"d\"1","level":"ERROR"}"#,
                r#"{"alert":{"device":"d\"1","level":"ERROR"}}"#,
                r#"{"n":1}"#,
            ]
        );
        let inputs: Vec<Option<u32>> = run.outputs.iter().map(|o| o.input).collect();
        assert_eq!(inputs, [Some(0), Some(0), Some(1)]);
        let key = |k: usize| {
            run.outputs[k]
                .meta
                .as_ref()
                .and_then(|m| m.partition_key.clone())
        };
        assert_eq!(
            (key(0), key(1), key(2)),
            (Some("d\"1".into()), Some("d\"1".into()), None)
        );
        let attributes = &run.outputs[1].meta.as_ref().unwrap().attributes;
        assert_eq!(attributes, &[("type".to_owned(), "alert".to_owned())]);
        assert_eq!(run.errors, [(2, "not a JSON object".to_owned())]);
    }

    #[test]
    fn a_bad_config_is_an_error_naming_the_key() {
        let out = testing::transform::<Plugin>(r#"{"key": ""}"#, &[], &[]).map(|_| ());
        assert_eq!(out, Err("config: `key` must be a non-empty string".into()));
        let out = testing::transform::<Plugin>(r#"{"nope": 1}"#, &[], &[]).map(|_| ());
        assert_eq!(out, Err("config: unknown key `nope`".into()));
    }
}
