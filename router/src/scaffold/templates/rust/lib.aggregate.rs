//! {{name}}: an aggregate stage (contract 0.2). Counts records and sums a whole-number field
//! per key, and emits one record per key on every `tick` (every `tick_ms` of the stage, 1 s by
//! default: set `tick_ms = 60000` for per-minute counts) and on `flush` (at shutdown and before
//! a reload), then starts again from zero. Config (JSON): `{"key": "device", "sum": "bytes"}`
//! (the defaults).
//!
//! - A record whose top-level field `key` is a string is counted under that string; the whole
//!   number in its field `sum` (if any) is added to the key's sum. In Rust, `key` and `sum`
//!   may also be paths such as `meta.device`.
//! - A record without the key is dropped (counted as dropped by the stage); one whose `sum` is
//!   not a whole number, or that is not a JSON object, is an error (dead-lettered by default).
//! - Emitted, per key in the order first seen: `{"device":"gw-1","count":2,"bytes":200}`, its
//!   partition key the key (when it is 1 to 256 characters).
//!
//! State lives in this instance. The router sends every record of a key to the same instance
//! (when the stage's `key` names the same field); a trap loses the instance's open counts.

use std::collections::HashMap;

use edge_router_plugin::{
    Absorbed, Aggregate, Context, Emitter, JsonPath, JsonValue, Record, Setup,
};

/// Most keys held at once: the contract allows 65,536 outputs per `tick` or `flush`.
const KEYS_MAX: usize = 65_536;
/// Longest partition key, in characters.
const KEY_CHARS_MAX: usize = 256;

/// The stage: its config and the open counts.
pub struct Plugin {
    key: JsonPath,
    sum: JsonPath,
    /// The names of `key` and `sum` as JSON strings, for the emitted records.
    key_name: String,
    sum_name: String,
    /// The `sum` field's name as configured, for messages.
    sum_field: String,
    /// Index into `totals` per key.
    index: HashMap<String, usize>,
    /// Key, count, sum, in the order first seen.
    totals: Vec<(String, u64, i64)>,
}

impl Aggregate for Plugin {
    fn init(config: &str, _ctx: &Context) -> Result<(Self, Setup), String> {
        let config: serde_json::Map<String, serde_json::Value> = serde_json::from_str(config)
            .map_err(|e| format!("config must be a JSON object: {e}"))?;
        let (mut key, mut sum) = ("device".to_owned(), "bytes".to_owned());
        for (name, value) in config {
            match (name.as_str(), value) {
                ("key", serde_json::Value::String(s)) if !s.is_empty() => key = s,
                ("sum", serde_json::Value::String(s)) if !s.is_empty() => sum = s,
                ("key" | "sum", _) => {
                    return Err(format!("config: `{name}` must be a non-empty string"));
                }
                (other, _) => return Err(format!("config: unknown key `{other}`")),
            }
        }
        let quoted = |s: &str| serde_json::to_string(s).map_err(|e| e.to_string());
        let plugin = Plugin {
            key: JsonPath::parse(&key).map_err(|e| format!("config: `key`: {e}"))?,
            sum: JsonPath::parse(&sum).map_err(|e| format!("config: `sum`: {e}"))?,
            key_name: quoted(&key)?,
            sum_name: quoted(&sum)?,
            sum_field: sum,
            index: HashMap::new(),
            totals: Vec::new(),
        };
        Ok((plugin, Setup::default()))
    }

    /// Called once per record: takes it into the counts (`Absorbed::Yes`), drops it
    /// (`Absorbed::Dropped`), or `Err` dead-letters it.
    fn process(&mut self, rec: &Record<'_>, _out: &mut Emitter) -> Result<Absorbed, String> {
        let p = rec.payload.trim_ascii();
        if !(p.len() >= 2 && p[0] == b'{' && p[p.len() - 1] == b'}') {
            return Err("not a JSON object".into());
        }
        let Some(JsonValue::String(s)) = rec.field(&self.key) else {
            return Ok(Absorbed::Dropped);
        };
        let Some(key) = s.unescape() else {
            return Ok(Absorbed::Dropped);
        };
        let add = match rec.field(&self.sum) {
            None => 0,
            Some(v) => whole_number(&v)
                .ok_or_else(|| format!("`{}` is not a whole number", self.sum_field))?,
        };
        let i = match self.index.get(&*key) {
            Some(&i) => i,
            None if self.totals.len() >= KEYS_MAX => {
                return Err(format!("more than {KEYS_MAX} keys open"));
            }
            None => {
                self.index.insert(key.to_string(), self.totals.len());
                self.totals.push((key.into_owned(), 0, 0));
                self.totals.len() - 1
            }
        };
        let t = &mut self.totals[i];
        t.1 += 1;
        t.2 = t.2.wrapping_add(add);
        Ok(Absorbed::Yes)
    }

    /// Every `tick_ms`: emits the counts so far and starts again.
    fn tick(&mut self, _now_unix_nanos: u64, out: &mut Emitter) {
        self.emit_all(out);
    }

    /// At shutdown and before a reload: emits what is open.
    fn flush(&mut self, out: &mut Emitter) {
        self.emit_all(out);
    }
}

impl Plugin {
    fn emit_all(&mut self, out: &mut Emitter) {
        self.index.clear();
        for (key, count, sum) in self.totals.drain(..) {
            let quoted = serde_json::to_string(&key).unwrap_or_default();
            let (count, sum) = (count.to_string(), sum.to_string());
            let payload = [
                "{",
                &self.key_name,
                ":",
                &quoted,
                ",\"count\":",
                &count,
                ",",
                &self.sum_name,
                ":",
                &sum,
                "}",
            ]
            .concat();
            let o = out.emit(payload.as_bytes());
            if !key.is_empty() && key.chars().count() <= KEY_CHARS_MAX {
                o.partition_key(key);
            }
        }
    }
}

/// A JSON number with a whole value (`12`, `-3`, `12.0`), up to 2^53 in size.
fn whole_number(v: &JsonValue<'_>) -> Option<i64> {
    let JsonValue::Number(text) = v else {
        return None;
    };
    const LIMIT: i64 = 1 << 53;
    let text = std::str::from_utf8(text).ok()?;
    if let Ok(n) = text.parse::<i64>() {
        return (n.unsigned_abs() <= LIMIT as u64).then_some(n);
    }
    let f: f64 = text.parse().ok()?;
    (f.fract() == 0.0 && f.abs() <= LIMIT as f64).then_some(f as i64)
}

edge_router_plugin::export_aggregate!(Plugin);

#[cfg(test)]
mod tests {
    use super::Plugin;
    use edge_router_plugin::testing::AggregateRun;

    #[test]
    fn counts_and_sums_per_key_and_emits_on_tick_and_flush() {
        let mut run = AggregateRun::<Plugin>::new("{}").unwrap();
        let p = run.process(
            &[
                br#"{"device":"a","bytes":5}"#,
                br#"{"device":"b"}"#,
                br#"{"bytes":1}"#,
                br#"{"device":"a","bytes":-2.0}"#,
                br#"{"device":"a","bytes":"x"}"#,
            ],
            0,
        );
        assert!(p.outputs.is_empty());
        assert_eq!(p.dropped, [2]);
        assert_eq!(p.errors, [(4, "`bytes` is not a whole number".to_owned())]);
        let texts: Vec<String> = run.tick(1).iter().map(|o| o.text()).collect();
        assert_eq!(
            texts,
            [
                r#"{"device":"a","count":2,"bytes":3}"#,
                r#"{"device":"b","count":1,"bytes":0}"#
            ]
        );
        // Emitted counts start again from zero.
        assert!(run.flush().is_empty());
        run.process(&[br#"{"device":"c","bytes":7}"#], 2);
        let out = run.flush();
        assert_eq!(out[0].text(), r#"{"device":"c","count":1,"bytes":7}"#);
        assert_eq!(
            out[0].meta.as_ref().unwrap().partition_key.as_deref(),
            Some("c")
        );
    }

    #[test]
    fn a_bad_config_is_an_error_naming_the_key() {
        let out = AggregateRun::<Plugin>::new(r#"{"sum": 3}"#).map(|_| ());
        assert_eq!(out, Err("config: `sum` must be a non-empty string".into()));
    }
}
