//! {{name}}: a route stage. Sends the records that contain the configured text to one
//! destination (a sink name in the router's config), the others to the router's default sinks.
//! Config (JSON): `{"contains": "ERROR", "destination": "alerts"}` (the defaults).

use edge_router_plugin::{Context, Record, Route};

/// The stage: what it looks for, parsed once in `init`.
pub struct Plugin {
    needle: Vec<u8>,
}

impl Route for Plugin {
    fn init(config: &str, _ctx: &Context) -> Result<(Self, Vec<String>), String> {
        let config: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(config).map_err(|e| format!("config must be a JSON object: {e}"))?;
        let (mut needle, mut destination) = ("ERROR".to_owned(), "alerts".to_owned());
        for (key, value) in config {
            match (key.as_str(), value) {
                ("contains", serde_json::Value::String(s)) if !s.is_empty() => needle = s,
                ("destination", serde_json::Value::String(s)) if !s.is_empty() => destination = s,
                ("contains" | "destination", _) => {
                    return Err(format!("config: `{key}` must be a non-empty string"));
                }
                (other, _) => return Err(format!("config: unknown key `{other}`")),
            }
        }
        // The destination names this plugin uses; `route` answers with an index into them.
        Ok((Plugin { needle: needle.into_bytes() }, vec![destination]))
    }

    /// Called once per record: `Ok(Some(i))` sends it to destination `i`, `Ok(None)` to the
    /// router's default sinks, `Err` dead-letters it.
    fn route(&mut self, rec: &Record<'_>) -> Result<Option<u32>, String> {
        let hit = rec.payload.windows(self.needle.len()).any(|w| w == self.needle.as_slice());
        Ok(hit.then_some(0))
    }
}

edge_router_plugin::export_route!(Plugin);

#[cfg(test)]
mod tests {
    use super::Plugin;
    use edge_router_plugin::testing;

    #[test]
    fn routes_records_holding_the_text() {
        let (names, out) =
            testing::route::<Plugin>("{}", &[b"an ERROR here", b"all fine"]).unwrap();
        assert_eq!(names, vec!["alerts".to_owned()]);
        assert_eq!(out, vec![Ok(Some("alerts".to_owned())), Ok(None)]);
    }

    #[test]
    fn a_bad_config_is_an_error_naming_the_key() {
        let out = testing::route::<Plugin>(r#"{"destination": ""}"#, &[]);
        assert_eq!(out, Err("config: `destination` must be a non-empty string".into()));
    }
}
