//! A transform stage (contract 0.2) that keys every record by several of its fields: a custom
//! sharding strategy written as a plugin. Each record passes on unchanged (one output per
//! input), with
//!
//! - its **partition key** set to the fields' values joined by `separator` (default `|`), cut to
//!   256 characters: `{"device":"d7","site":"p2"}` with `fields = ["device", "site"]` gets
//!   `d7|p2`;
//! - with `explicit_hash_key = true`, its **explicit hash key** set to the MD5 digest (as a
//!   128-bit big-endian number, in decimal) of the values, each preceded by its length as an
//!   8-byte big-endian integer (so `("ab","c")` and `("a","bc")` differ): the value the router's
//!   built-in `explicit_hash_key = "hash:device,site"` computes, so Kinesis places the record on
//!   the shard whose hash key range holds it, spread evenly whatever the keys look like.
//!
//! A field's value is its string content (unescaped), or a number, `true` or `false` as
//! written. A record without one of the fields is an error (it is dead-lettered).
//!
//! ```
//! use key_by_hash::KeyByHash;
//! let run = edge_router_plugin::testing::transform::<KeyByHash>(
//!     r#"{"fields": ["device", "site"]}"#,
//!     &[br#"{"device": "d7", "site": "p2"}"#, br#"{"device": "d8"}"#],
//!     &[],
//! )
//! .unwrap();
//! assert_eq!(run.outputs[0].meta.as_ref().unwrap().partition_key.as_deref(), Some("d7|p2"));
//! assert_eq!(run.errors[0].0, 1);
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use edge_router_plugin::{Context, Emitter, JsonPath, Record, Setup, Transform};
use md5::{Digest, Md5};
use serde_json::Value;

/// Longest partition key, in characters (Kinesis's limit).
const KEY_CHARS_MAX: usize = 256;

/// The transform stage.
#[derive(Debug)]
pub struct KeyByHash {
    fields: Vec<(JsonPath, String)>,
    separator: String,
    explicit_hash_key: bool,
}

impl Transform for KeyByHash {
    fn init(config: &str, _ctx: &Context) -> Result<(Self, Setup), String> {
        let c: Value = serde_json::from_str(config).map_err(|e| format!("bad config: {e}"))?;
        let fields = match c.get("fields") {
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|v| {
                    let p = v.as_str().ok_or("\"fields\" must list paths")?;
                    let path = JsonPath::parse(p).map_err(|e| format!("field {p:?}: {e}"))?;
                    Ok((path, p.to_owned()))
                })
                .collect::<Result<Vec<_>, String>>()?,
            _ => return Err("config needs \"fields\": a list of one or more paths".into()),
        };
        let separator = match c.get("separator") {
            None => "|".to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err("\"separator\" must be a string".into()),
        };
        let explicit_hash_key = match c.get("explicit_hash_key") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("\"explicit_hash_key\" must be true or false".into()),
        };
        Ok((
            KeyByHash {
                fields,
                separator,
                explicit_hash_key,
            },
            Setup::default(),
        ))
    }

    fn transform(&mut self, rec: &Record<'_>, out: &mut Emitter) -> Result<(), String> {
        let mut key = String::new();
        let mut md5 = Md5::new();
        for (i, (path, name)) in self.fields.iter().enumerate() {
            let value = rec
                .field(path)
                .and_then(|v| v.key_bytes())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("the record has no field `{name}`"))?;
            if i > 0 {
                key.push_str(&self.separator);
            }
            key.push_str(&String::from_utf8_lossy(&value));
            md5.update((value.len() as u64).to_be_bytes());
            md5.update(&value);
        }
        if let Some((cut, _)) = key.char_indices().nth(KEY_CHARS_MAX) {
            key.truncate(cut);
        }
        let mut o = out.emit(rec.payload).partition_key(key);
        if self.explicit_hash_key {
            let digest: [u8; 16] = md5.finalize().into();
            o = o.explicit_hash_key(u128::from_be_bytes(digest).to_string());
        }
        let _ = o;
        Ok(())
    }
}

edge_router_plugin::export_transform!(KeyByHash);

#[cfg(test)]
mod tests {
    use super::*;
    use edge_router_plugin::testing::transform;

    #[test]
    fn keys_join_the_fields_and_hash_keys_prefix_each_with_its_length() {
        let run = transform::<KeyByHash>(
            r#"{"fields": ["a", "b"], "explicit_hash_key": true, "separator": "/"}"#,
            &[
                br#"{"a":"ab","b":"c"}"#,
                br#"{"a":"a","b":"bc"}"#,
                br#"{"a":7,"b":"x"}"#,
            ],
            &[],
        )
        .unwrap();
        let metas: Vec<_> = run
            .outputs
            .iter()
            .map(|o| o.meta.clone().unwrap())
            .collect();
        assert_eq!(metas[0].partition_key.as_deref(), Some("ab/c"));
        assert_eq!(metas[2].partition_key.as_deref(), Some("7/x"));
        // Same joined text would be "abc" both ways; the hash keys differ.
        assert_ne!(metas[0].explicit_hash_key, metas[1].explicit_hash_key);
        // MD5(len 2, "ab", len 1, "c") as a big-endian number.
        let mut m = Md5::new();
        m.update(2u64.to_be_bytes());
        m.update(b"ab");
        m.update(1u64.to_be_bytes());
        m.update(b"c");
        let want = u128::from_be_bytes(m.finalize().into()).to_string();
        assert_eq!(metas[0].explicit_hash_key.as_deref(), Some(want.as_str()));
        // The payload passes unchanged.
        assert_eq!(run.outputs[0].payload, br#"{"a":"ab","b":"c"}"#);
    }
}
