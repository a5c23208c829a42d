//! {{name}}: a filter stage. Drops the records that contain the configured text and keeps the
//! others. Config (JSON): `{"drop_if_contains": "debug"}` (the default).

use edge_router_plugin::{Context, Filter, Record};

/// The stage: what it looks for, parsed once in `init`.
pub struct Plugin {
    needle: Vec<u8>,
}

impl Filter for Plugin {
    fn init(config: &str, _ctx: &Context) -> Result<Self, String> {
        let config: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(config).map_err(|e| format!("config must be a JSON object: {e}"))?;
        let mut needle = b"debug".to_vec();
        for (key, value) in config {
            match (key.as_str(), value) {
                ("drop_if_contains", serde_json::Value::String(s)) if !s.is_empty() => {
                    needle = s.into_bytes()
                }
                ("drop_if_contains", _) => {
                    return Err("config: `drop_if_contains` must be a non-empty string".into());
                }
                (other, _) => return Err(format!("config: unknown key `{other}`")),
            }
        }
        Ok(Plugin { needle })
    }

    /// Called once per record: `Ok(true)` keeps it, `Ok(false)` drops it, `Err` dead-letters it.
    fn keep(&mut self, rec: &Record<'_>) -> Result<bool, String> {
        // Scan, don't parse: a byte search is all this needs.
        Ok(!rec.payload.windows(self.needle.len()).any(|w| w == self.needle.as_slice()))
    }
}

edge_router_plugin::export_filter!(Plugin);

#[cfg(test)]
mod tests {
    use super::Plugin;
    use edge_router_plugin::testing;

    #[test]
    fn drops_records_holding_the_text() {
        let out = testing::filter::<Plugin>(
            r#"{"drop_if_contains": "debug"}"#,
            &[br#"{"level":"debug"}"#, br#"{"level":"info"}"#],
        );
        assert_eq!(out, Ok(vec![Ok(false), Ok(true)]));
    }

    #[test]
    fn a_bad_config_is_an_error_naming_the_key() {
        let out = testing::filter::<Plugin>(r#"{"drop_if_contains": 5}"#, &[]);
        assert_eq!(out, Err("config: `drop_if_contains` must be a non-empty string".into()));
        let out = testing::filter::<Plugin>(r#"{"nope": 1}"#, &[]);
        assert_eq!(out, Err("config: unknown key `nope`".into()));
    }
}
