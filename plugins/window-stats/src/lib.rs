//! An aggregate stage (contract 0.2): tumbling windows of `window_ms` per key, emitting one
//! record per key and window with the count and, per configured numeric field, its count, min,
//! max, mean and last value.
//!
//! # Config
//!
//! ```json
//! {"key": "device_id", "fields": ["temperature", "humidity"], "window_ms": 60000,
//!  "time": "event", "timestamp": "ts", "allowed_lateness_ms": 5000, "late": "drop"}
//! ```
//!
//! - `key` (required): the path of the field records are grouped by (its string content, or
//!   number text as written). A record without it is an error (dead-lettered). Set the stage's
//!   own `key` to the same path, so that a key's records all reach one instance.
//! - `fields` (required): paths of numeric fields. A record without one (or where it is not a
//!   number) still counts in the window's `count`; the field's own `count` says how many had it.
//! - `window_ms` (required): the window length; windows start at multiples of it (Unix time).
//! - `time`: `"event"` (default) or `"arrival"`.
//!   - `event`: a record's time is its `timestamp` field, milliseconds since the Unix epoch
//!     (a number; a record without it is an error). Each key has a watermark: the largest
//!     timestamp seen for the key minus `allowed_lateness_ms` (default 0). A window closes (is
//!     emitted on the next `tick`) once the key's watermark reaches its end. A record whose
//!     window ends at or before the key's watermark is **late**: with `late = "drop"` (default)
//!     it is dropped (the router counts it as dropped by the stage), with `"dead_letter"` it is
//!     an error (dead-lettered with the window and the watermark). Out-of-order records within
//!     the lateness are counted in their window. `last` is the value at the largest timestamp.
//!   - `arrival`: a record's time is when its batch arrived at the router. Windows close on the
//!     `tick` at or after their end; a record that arrives for a window already closed (it
//!     waited in a queue past the tick) counts in the oldest open window instead, so no record
//!     is late. `last` is the value of the last record processed.
//! - `max_keys` (default 100,000): keys held at once; a record of a new key past that is an
//!   error (dead-lettered), so memory stays bounded. Under event time a key whose windows all
//!   closed keeps its watermark until the limit is reached; then such keys are forgotten first
//!   (a late record of a forgotten key opens its window again).
//! - `instance_field` (default false): add `"instance": N` (which of the stage's instances made
//!   the record) to every output.
//!
//! `flush` (shutdown, reload) emits every open window. Outputs carry the key as their partition
//! key (when it is 1 to 256 characters).
//!
//! # Output
//!
//! ```json
//! {"key":"d1","window_start":1700000040000,"window_end":1700000100000,"count":3,
//!  "temperature":{"count":3,"min":20.5,"max":22,"mean":21.25,"last":21}}
//! ```
//!
//! A field no record of the window had is written with `"count":0` only.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};

use edge_router_plugin::{
    Absorbed, Aggregate, Context, Emitter, JsonPath, JsonValue, Record, Setup,
};
use serde_json::Value;

/// FNV-1a over the key bytes: keys are short, and SipHash's keys would be fixed here anyway
/// (a component gets no randomness); the instance's memory cap and call deadline bound what a
/// flood of colliding keys could cost.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type Keys = HashMap<Box<[u8]>, KeyState, BuildHasherDefault<Fnv>>;

/// Longest partition key set on outputs, in characters.
const KEY_CHARS_MAX: usize = 256;

/// One field's statistics in one window.
#[derive(Debug, Clone, Copy)]
struct FieldStats {
    count: u64,
    min: f64,
    max: f64,
    sum: f64,
    last: f64,
    /// Time of `last` (event time; for arrival time the processing order counts).
    last_at: i64,
}

impl Default for FieldStats {
    fn default() -> Self {
        FieldStats {
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            last: 0.0,
            last_at: i64::MIN,
        }
    }
}

/// One key's open window.
#[derive(Debug, Clone)]
struct Window {
    count: u64,
    fields: Vec<FieldStats>,
}

/// One key's state.
#[derive(Debug, Default)]
struct KeyState {
    /// Largest event time seen (event time only).
    max_ts: Option<i64>,
    /// Open windows by start.
    windows: BTreeMap<i64, Window>,
}

/// Event or arrival time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Time {
    Event,
    Arrival,
}

/// The aggregate stage.
#[derive(Debug)]
pub struct WindowStats {
    key: JsonPath,
    fields: Vec<(JsonPath, String)>,
    window_ms: i64,
    time: Time,
    timestamp: Option<JsonPath>,
    lateness_ms: i64,
    late_is_error: bool,
    max_keys: usize,
    instance: Option<u32>,
    keys: Keys,
    /// Arrival time: windows ending at or before this have been closed.
    closed_upto: i64,
    /// Field values of the record in hand (kept for its allocation).
    scratch: Vec<Option<f64>>,
}

fn path(v: &str, what: &str) -> Result<JsonPath, String> {
    JsonPath::parse(v).map_err(|e| format!("{what} {v:?} is not a path: {e}"))
}

impl WindowStats {
    fn start_of(&self, t: i64) -> i64 {
        t.div_euclid(self.window_ms) * self.window_ms
    }

    /// Emits the windows of `key` that `close` says are over.
    fn emit_closed(
        out: &mut Emitter,
        cfg: &WindowStats,
        key: &[u8],
        st: &mut KeyState,
        close: impl Fn(i64) -> bool,
    ) {
        while let Some((&start, _)) = st.windows.first_key_value() {
            if !close(start + cfg.window_ms) {
                break;
            }
            if let Some(w) = st.windows.remove(&start) {
                cfg.write(out, key, start, &w);
            }
        }
    }

    fn write(&self, out: &mut Emitter, key: &[u8], start: i64, w: &Window) {
        let key_text = String::from_utf8_lossy(key);
        let mut s = String::with_capacity(64 + 96 * self.fields.len());
        s.push_str("{\"key\":");
        s.push_str(&Value::String(key_text.clone().into_owned()).to_string());
        let _ = write!(
            s,
            ",\"window_start\":{start},\"window_end\":{},\"count\":{}",
            start + self.window_ms,
            w.count
        );
        if let Some(i) = self.instance {
            let _ = write!(s, ",\"instance\":{i}");
        }
        for ((_, name), f) in self.fields.iter().zip(&w.fields) {
            let _ = write!(s, ",{name}:{{\"count\":{}", f.count);
            if f.count > 0 {
                let _ = write!(
                    s,
                    ",\"min\":{},\"max\":{},\"mean\":{},\"last\":{}",
                    num(f.min),
                    num(f.max),
                    num(f.sum / f.count as f64),
                    num(f.last)
                );
            }
            s.push('}');
        }
        s.push('}');
        let o = out.emit(s.as_bytes());
        let chars = key_text.chars().count();
        if (1..=KEY_CHARS_MAX).contains(&chars) {
            o.partition_key(key_text.into_owned());
        }
    }

    fn absorb(&mut self, key: &[u8], t: i64, rec: &Record<'_>) -> Result<Absorbed, String> {
        let known = self.keys.contains_key(key);
        if !known && self.keys.len() >= self.max_keys {
            // Forget keys with nothing open (their watermarks) before refusing a new one.
            self.keys.retain(|_, st| !st.windows.is_empty());
            if self.keys.len() >= self.max_keys {
                return Err(format!(
                    "more than max_keys ({}) keys have open windows",
                    self.max_keys
                ));
            }
        }
        let window_ms = self.window_ms;
        let mut start = self.start_of(t);
        let (lateness, late_is_error, time, closed_upto) = (
            self.lateness_ms,
            self.late_is_error,
            self.time,
            self.closed_upto,
        );
        let mut values = std::mem::take(&mut self.scratch);
        values.clear();
        values.extend(
            self.fields
                .iter()
                .map(|(p, _)| rec.field(p).and_then(|v| v.as_f64())),
        );
        // Looked up before inserting: no key copy for a key already held.
        if !known {
            self.keys.insert(key.into(), KeyState::default());
        }
        let Some(st) = self.keys.get_mut(key) else {
            self.scratch = values;
            return Err("internal error: the key vanished".into());
        };
        match time {
            Time::Event => {
                if let Some(max) = st.max_ts {
                    let watermark = max.saturating_sub(lateness);
                    if start + window_ms <= watermark {
                        self.scratch = values;
                        return if late_is_error {
                            Err(format!(
                                "late record: its window [{start}, {}) ended at or before the \
                                 key's watermark {watermark} (latest timestamp {max} minus \
                                 allowed_lateness_ms {lateness})",
                                start + window_ms
                            ))
                        } else {
                            Ok(Absorbed::Dropped)
                        };
                    }
                }
                st.max_ts = Some(st.max_ts.map_or(t, |m| m.max(t)));
            }
            Time::Arrival => start = start.max(closed_upto),
        }
        let n = values.len();
        let w = st.windows.entry(start).or_insert_with(|| Window {
            count: 0,
            fields: vec![FieldStats::default(); n],
        });
        w.count += 1;
        for (f, v) in w.fields.iter_mut().zip(&values) {
            if let Some(v) = *v {
                f.count += 1;
                f.min = f.min.min(v);
                f.max = f.max.max(v);
                f.sum += v;
                if t >= f.last_at {
                    f.last = v;
                    f.last_at = t;
                }
            }
        }
        self.scratch = values;
        Ok(Absorbed::Yes)
    }
}

/// A number as JSON (finite values only reach here).
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".to_owned()
    }
}

impl Aggregate for WindowStats {
    fn init(config: &str, ctx: &Context) -> Result<(Self, Setup), String> {
        let c: Value = serde_json::from_str(config).map_err(|e| format!("bad config: {e}"))?;
        let s = |k: &str| c.get(k).and_then(Value::as_str);
        let key = path(
            s("key").ok_or("config needs \"key\": the path to group by")?,
            "key",
        )?;
        let fields = match c.get("fields") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    let p = v.as_str().ok_or("\"fields\" must list paths")?;
                    Ok((path(p, "field")?, Value::String(p.to_owned()).to_string()))
                })
                .collect::<Result<Vec<_>, String>>()?,
            _ => return Err("config needs \"fields\": a list of numeric field paths".into()),
        };
        let int = |k: &str, default: Option<i64>| -> Result<i64, String> {
            match c.get(k) {
                None => default.ok_or_else(|| format!("config needs \"{k}\"")),
                Some(v) => v
                    .as_i64()
                    .filter(|&n| n >= 0)
                    .ok_or_else(|| format!("\"{k}\" must be a whole number of at least 0")),
            }
        };
        let window_ms = int("window_ms", None)?;
        if window_ms < 1 {
            return Err("\"window_ms\" must be at least 1".into());
        }
        let time = match s("time").unwrap_or("event") {
            "event" => Time::Event,
            "arrival" => Time::Arrival,
            other => {
                return Err(format!(
                    "\"time\" must be \"event\" or \"arrival\", not {other:?}"
                ));
            }
        };
        let timestamp = match (time, s("timestamp")) {
            (Time::Event, Some(p)) => Some(path(p, "timestamp")?),
            (Time::Event, None) => {
                return Err(
                    "event time needs \"timestamp\": the path of a milliseconds field".into(),
                );
            }
            (Time::Arrival, _) => None,
        };
        let late_is_error = match s("late").unwrap_or("drop") {
            "drop" => false,
            "dead_letter" => true,
            other => {
                return Err(format!(
                    "\"late\" must be \"drop\" or \"dead_letter\", not {other:?}"
                ));
            }
        };
        let instance = c
            .get("instance_field")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .then_some(ctx.instance);
        Ok((
            WindowStats {
                key,
                fields,
                window_ms,
                time,
                timestamp,
                lateness_ms: int("allowed_lateness_ms", Some(0))?,
                late_is_error,
                max_keys: int("max_keys", Some(100_000))?.max(1) as usize,
                instance,
                keys: Keys::default(),
                closed_upto: i64::MIN,
                scratch: Vec::new(),
            },
            Setup::default(),
        ))
    }

    fn process(&mut self, rec: &Record<'_>, _out: &mut Emitter) -> Result<Absorbed, String> {
        let key = match rec.field(&self.key) {
            Some(v) => v.key_bytes().ok_or("the key has a bad escape")?,
            None => return Err("the record has no key".into()),
        };
        let t = match (&self.time, &self.timestamp) {
            (Time::Event, Some(p)) => match rec.field(p) {
                Some(v @ JsonValue::Number(_)) => {
                    let ms = v.as_f64().ok_or("the timestamp is not a finite number")?;
                    ms.floor() as i64
                }
                _ => return Err("the record has no numeric timestamp".into()),
            },
            _ => (rec.arrival_unix_nanos / 1_000_000) as i64,
        };
        self.absorb(&key, t, rec)
    }

    fn tick(&mut self, now_unix_nanos: u64, out: &mut Emitter) {
        let now_ms = (now_unix_nanos / 1_000_000) as i64;
        if self.time == Time::Arrival {
            self.closed_upto = self.closed_upto.max(self.start_of(now_ms));
        }
        let mut keys = std::mem::take(&mut self.keys);
        for (key, st) in keys.iter_mut() {
            match self.time {
                Time::Event => {
                    if let Some(max) = st.max_ts {
                        let watermark = max.saturating_sub(self.lateness_ms);
                        Self::emit_closed(out, self, key, st, |end| end <= watermark);
                    }
                }
                Time::Arrival => Self::emit_closed(out, self, key, st, |end| end <= now_ms),
            }
        }
        // Event time: a key with nothing open keeps its watermark (so its late records stay
        // late) until `max_keys` presses; arrival time needs none.
        if self.time == Time::Arrival {
            keys.retain(|_, st| !st.windows.is_empty());
        }
        self.keys = keys;
    }

    fn flush(&mut self, out: &mut Emitter) {
        let mut keys = std::mem::take(&mut self.keys);
        for (key, st) in keys.iter_mut() {
            Self::emit_closed(out, self, key, st, |_| true);
        }
    }
}

edge_router_plugin::export_aggregate!(WindowStats);

#[cfg(test)]
mod tests {
    use super::*;
    use edge_router_plugin::testing::AggregateRun;

    fn parse(o: &edge_router_plugin::testing::Out) -> Value {
        serde_json::from_slice(&o.payload).unwrap()
    }

    #[test]
    fn event_time_windows_close_at_the_watermark_and_late_records_follow_the_policy() {
        let mut run = AggregateRun::<WindowStats>::new(
            r#"{"key": "d", "fields": ["v"], "window_ms": 1000, "timestamp": "ts",
                "allowed_lateness_ms": 500, "late": "dead_letter"}"#,
        )
        .unwrap();
        let p = run.process(
            &[
                br#"{"d":"a","ts":100,"v":1}"#,
                br#"{"d":"a","ts":900,"v":3}"#,
                br#"{"d":"a","ts":400,"v":2}"#,
                br#"{"d":"b","ts":1100,"v":5}"#,
                br#"{"d":"a","ts":1400,"v":7}"#,
                br#"{"d":"a","ts":950}"#,
                br#"{"d":"a","ts":1600,"v":8}"#,
                br#"{"d":"a","ts":999,"v":9}"#,
                br#"{"ts":1}"#,
            ],
            0,
        );
        assert!(p.outputs.is_empty());
        // ts 999 after 1600: watermark 1100 >= end 1000: late. The last has no key.
        let bad: Vec<u32> = p.errors.iter().map(|e| e.0).collect();
        assert_eq!(bad, [7, 8]);
        assert!(p.errors[0].1.contains("late record"), "{:?}", p.errors);
        let out = run.tick(0);
        assert_eq!(out.len(), 1);
        let w = parse(&out[0]);
        assert_eq!(w["key"], "a");
        assert_eq!(
            (w["window_start"].as_i64(), w["window_end"].as_i64()),
            (Some(0), Some(1000))
        );
        assert_eq!(w["count"], 4);
        assert_eq!(w["v"]["count"], 3);
        assert_eq!(w["v"]["min"], 1.0);
        assert_eq!(w["v"]["max"], 3.0);
        assert_eq!(w["v"]["mean"], 2.0);
        assert_eq!(w["v"]["last"], 3.0);
        assert_eq!(
            out[0].meta.as_ref().unwrap().partition_key.as_deref(),
            Some("a")
        );
        let mut rest: Vec<Value> = run.flush().iter().map(parse).collect();
        rest.sort_by_key(|v| v["key"].as_str().unwrap().to_owned());
        assert_eq!(rest.len(), 2);
        assert_eq!(
            (rest[0]["key"].as_str(), rest[0]["count"].as_u64()),
            (Some("a"), Some(2))
        );
        assert_eq!(rest[0]["v"]["last"], 8.0);
        assert_eq!(
            (rest[1]["key"].as_str(), rest[1]["count"].as_u64()),
            (Some("b"), Some(1))
        );
        assert!(run.flush().is_empty());
    }

    #[test]
    fn arrival_time_windows_close_on_the_tick_after_their_end_and_nothing_is_late() {
        let ms = 1_000_000u64;
        let mut run = AggregateRun::<WindowStats>::new(
            r#"{"key": "d", "fields": ["v"], "window_ms": 1000, "time": "arrival", "late": "drop"}"#,
        )
        .unwrap();
        run.process(&[br#"{"d":"a","v":1}"#, br#"{"d":"a","v":2}"#], 500 * ms);
        assert!(run.tick(999 * ms).is_empty());
        let out = run.tick(1000 * ms);
        assert_eq!(out.len(), 1);
        assert_eq!(parse(&out[0])["count"], 2);
        // Arrived at 900 but processed after the tick at 1000: counted in the open window.
        let p = run.process(&[br#"{"d":"a","v":4}"#], 900 * ms);
        assert!(p.dropped.is_empty() && p.errors.is_empty());
        let out = run.tick(2000 * ms);
        assert_eq!(parse(&out[0])["window_start"], 1000);
        assert_eq!(parse(&out[0])["v"]["last"], 4.0);
    }

    #[test]
    fn new_keys_past_max_keys_are_errors() {
        let mut run = AggregateRun::<WindowStats>::new(
            r#"{"key": "d", "fields": [], "window_ms": 10, "time": "arrival", "max_keys": 2}"#,
        )
        .unwrap();
        let p = run.process(
            &[br#"{"d":1}"#, br#"{"d":2}"#, br#"{"d":1}"#, br#"{"d":3}"#],
            0,
        );
        let bad: Vec<u32> = p.errors.iter().map(|e| e.0).collect();
        assert_eq!(bad, [3]);
        assert!(p.errors[0].1.contains("max_keys"));
    }
}
