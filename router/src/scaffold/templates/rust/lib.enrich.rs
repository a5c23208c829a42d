//! {{name}}: an enrich stage. Adds `"tag": TAG` to every record that is a JSON object, keeping
//! every byte of the record; any other record is an error (dead-lettered by default).
//! Config (JSON): `{"tag": "edge"}` (the default).

use edge_router_plugin::{Changed, Context, Enrich, Record};

/// The stage: the text to insert before each record's closing `}`, made once in `init`.
pub struct Plugin {
    /// `"tag":"…"`, JSON-escaped.
    field: Vec<u8>,
}

impl Enrich for Plugin {
    fn init(config: &str, _ctx: &Context) -> Result<Self, String> {
        let config: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(config).map_err(|e| format!("config must be a JSON object: {e}"))?;
        let mut tag = "edge".to_owned();
        for (key, value) in config {
            match (key.as_str(), value) {
                ("tag", serde_json::Value::String(s)) => tag = s,
                ("tag", _) => return Err("config: `tag` must be a string".into()),
                (other, _) => return Err(format!("config: unknown key `{other}`")),
            }
        }
        let value = serde_json::to_string(&tag).map_err(|e| e.to_string())?;
        Ok(Plugin { field: format!("\"tag\":{value}").into_bytes() })
    }

    /// Called once per record: writes the new payload into `out` and returns `Changed::Yes`,
    /// or `Changed::No` to keep the record as it is, or `Err` to dead-letter it.
    fn enrich(&mut self, rec: &Record<'_>, out: &mut Vec<u8>) -> Result<Changed, String> {
        let p = rec.payload;
        // Scan, don't parse: find the closing brace and whether the object is empty.
        let is_space = |b: &u8| b" \t\r\n".contains(b);
        let start = p.iter().position(|b| !is_space(b));
        let end = p.iter().rposition(|b| !is_space(b));
        let (Some(start), Some(end)) = (start, end) else {
            return Err("not a JSON object".into());
        };
        if p[start] != b'{' || p[end] != b'}' || start == end {
            return Err("not a JSON object".into());
        }
        let empty = p[start + 1..end].iter().all(is_space);
        out.extend_from_slice(&p[..end]);
        if !empty {
            out.push(b',');
        }
        out.extend_from_slice(&self.field);
        out.extend_from_slice(&p[end..]);
        Ok(Changed::Yes)
    }
}

edge_router_plugin::export_enrich!(Plugin);

#[cfg(test)]
mod tests {
    use super::Plugin;
    use edge_router_plugin::testing;

    #[test]
    fn adds_the_tag_to_objects_and_rejects_the_rest() {
        let out = testing::enrich::<Plugin>(
            r#"{"tag": "a\"b"}"#,
            &[br#"{"x":1}"#, b"{ }", b"[1]"],
        );
        assert_eq!(
            out,
            Ok(vec![
                Ok(br#"{"x":1,"tag":"a\"b"}"#.to_vec()),
                Ok(br#"{ "tag":"a\"b"}"#.to_vec()),
                Err("not a JSON object".into()),
            ])
        );
    }

    #[test]
    fn a_bad_config_is_an_error_naming_the_key() {
        let out = testing::enrich::<Plugin>(r#"{"tag": 5}"#, &[]);
        assert_eq!(out, Err("config: `tag` must be a string".into()));
    }
}
