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

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use edge_router_plugin::jsonpath::lookup_each;
use edge_router_plugin::{
    Absorbed, Aggregate, Context, Emitter, JsonPath, JsonValue, Record, Setup,
};
use serde_json::Value;

/// A key as held in the map: up to [`SHORT_KEY`] bytes inline in three words (compared and
/// hashed a word at a time, no pointer to follow), longer ones boxed. A key's bytes decide its
/// form, so equal keys always have the same form.
#[derive(Debug, Clone)]
enum Key {
    /// The bytes, zero-padded, little-endian words; and the length.
    Short([u64; 3], u8),
    /// Longer than [`SHORT_KEY`].
    Long(Box<[u8]>),
}

/// Longest key held inline.
const SHORT_KEY: usize = 24;

// By hand: word by word, inline (a derived comparison of the arrays may become a `memcmp`
// call, a byte loop in WebAssembly), and four words into the hash.
impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        match (self, other) {
            (Key::Short(a, la), Key::Short(b, lb)) => {
                a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && la == lb
            }
            (Key::Long(a), Key::Long(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        match self {
            Key::Short(w, len) => {
                h.write_u64(w[0]);
                h.write_u64(w[1]);
                h.write_u64(w[2]);
                h.write_u8(*len);
            }
            Key::Long(b) => h.write(b),
        }
    }
}

impl Key {
    fn new(bytes: &[u8]) -> Key {
        if bytes.len() > SHORT_KEY {
            return Key::Long(bytes.into());
        }
        let mut padded = [0u8; SHORT_KEY];
        if let Some(head) = padded.get_mut(..bytes.len()) {
            head.copy_from_slice(bytes);
        }
        let mut words = [0u64; 3];
        for (w, chunk) in words.iter_mut().zip(padded.chunks_exact(8)) {
            if let Ok(b) = <[u8; 8]>::try_from(chunk) {
                *w = u64::from_le_bytes(b);
            }
        }
        Key::Short(words, bytes.len() as u8)
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            Key::Short(words, len) => {
                let mut v: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                v.truncate(usize::from(*len));
                v
            }
            Key::Long(b) => b.to_vec(),
        }
    }
}

/// A multiply-and-shift hash of whole words (what [`Key`] feeds it): after each multiply the
/// high half, where every byte of the word has reached, is folded onto the low bits the map
/// picks buckets with. (A 128-bit product would mix better but is a library call in
/// WebAssembly.) Not keyed: a component gets no randomness, and the instance's memory cap and
/// call deadline bound what a flood of colliding keys could cost.
#[derive(Default)]
struct WordHash(u64);

impl WordHash {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;

    #[inline]
    fn mix(&mut self, w: u64) {
        let h = (self.0 ^ w).wrapping_mul(Self::K);
        self.0 = h ^ (h >> 32);
    }
}

impl Hasher for WordHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Long keys (and the slice length prefix): eight bytes at a time.
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            if let Some(head) = w.get_mut(..chunk.len()) {
                head.copy_from_slice(chunk);
            }
            self.mix(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }
}

type Keys = HashMap<Key, KeyState, BuildHasherDefault<WordHash>>;

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
    /// Open windows, ascending by start, each start once. A key has one or two open at a time
    /// unless lateness keeps more: a sorted vector beats a tree here, and the window a record
    /// belongs to is nearly always the last.
    windows: Vec<(i64, Window)>,
}

impl KeyState {
    /// The open window starting at `start`, opened (with `fields` fields) if need be.
    fn window(&mut self, start: i64, fields: usize) -> &mut Window {
        let at = match self.windows.last() {
            Some(&(last, _)) if last == start => self.windows.len() - 1,
            Some(&(last, _)) if last < start => self.open(self.windows.len(), start, fields),
            None => self.open(0, start, fields),
            Some(_) => match self.windows.binary_search_by_key(&start, |&(s, _)| s) {
                Ok(at) => at,
                Err(at) => self.open(at, start, fields),
            },
        };
        &mut self.windows[at].1
    }

    fn open(&mut self, at: usize, start: i64, fields: usize) -> usize {
        let w = Window {
            count: 0,
            fields: vec![FieldStats::default(); fields],
        };
        self.windows.insert(at, (start, w));
        at
    }
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
    /// What each record is read for, in one pass ([`lookup_each`]): the key, then (event time)
    /// the timestamp, then the fields.
    paths: Vec<JsonPath>,
    /// Index in `paths` of the first field.
    first_field: usize,
    /// The fields' names as JSON strings, for outputs.
    names: Vec<String>,
    window_ms: i64,
    time: Time,
    lateness_ms: i64,
    late_is_error: bool,
    max_keys: usize,
    instance: Option<u32>,
    keys: Keys,
    /// Arrival time: windows ending at or before this have been closed.
    closed_upto: i64,
    /// Field values of the record in hand (kept for its allocation).
    scratch: Vec<Option<f64>>,
    /// An output being written (kept for its allocation).
    text: String,
}

/// How a record's time places it, as `absorb` needs it.
#[derive(Debug, Clone, Copy)]
struct Placing {
    window_ms: i64,
    time: Time,
    lateness_ms: i64,
    late_is_error: bool,
    closed_upto: i64,
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
        cfg: &mut WindowStats,
        key: &Key,
        st: &mut KeyState,
        close: impl Fn(i64) -> bool,
    ) {
        let due = st
            .windows
            .iter()
            .take_while(|&&(start, _)| close(start + cfg.window_ms))
            .count();
        if due == 0 {
            return;
        }
        let key = key.bytes();
        for (start, w) in st.windows.drain(..due) {
            cfg.write(out, &key, start, &w);
        }
    }

    fn write(&mut self, out: &mut Emitter, key: &[u8], start: i64, w: &Window) {
        let key_text = String::from_utf8_lossy(key);
        let s = &mut self.text;
        s.clear();
        s.push_str("{\"key\":");
        json_string(s, &key_text);
        let _ = write!(
            s,
            ",\"window_start\":{start},\"window_end\":{},\"count\":{}",
            start + self.window_ms,
            w.count
        );
        if let Some(i) = self.instance {
            let _ = write!(s, ",\"instance\":{i}");
        }
        for (name, f) in self.names.iter().zip(&w.fields) {
            let _ = write!(s, ",{name}:{{\"count\":{}", f.count);
            if f.count > 0 {
                s.push_str(",\"min\":");
                num(s, f.min);
                s.push_str(",\"max\":");
                num(s, f.max);
                s.push_str(",\"mean\":");
                num(s, f.sum / f.count as f64);
                s.push_str(",\"last\":");
                num(s, f.last);
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

    /// Takes a record whose key and timestamp values are `key` and `ts` (as found) into its
    /// window, or says why not.
    fn absorb_found(
        &mut self,
        key: Option<JsonValue<'_>>,
        ts: Option<JsonValue<'_>>,
        rec: &Record<'_>,
        values: &[Option<f64>],
    ) -> Result<Absorbed, String> {
        let key = match key {
            Some(v) => v.key_bytes().ok_or("the key has a bad escape")?,
            None => return Err("the record has no key".into()),
        };
        let t = match self.time {
            Time::Event => match ts {
                Some(v @ JsonValue::Number(_)) => {
                    let ms = v.as_f64().ok_or("the timestamp is not a finite number")?;
                    ms.floor() as i64
                }
                _ => return Err("the record has no numeric timestamp".into()),
            },
            Time::Arrival => (rec.arrival_unix_nanos / 1_000_000) as i64,
        };
        self.absorb(&key, t, values)
    }

    /// Takes a record of `key` at time `t` with field values `values` into its window.
    fn absorb(&mut self, key: &[u8], t: i64, values: &[Option<f64>]) -> Result<Absorbed, String> {
        let placing = Placing {
            window_ms: self.window_ms,
            time: self.time,
            lateness_ms: self.lateness_ms,
            late_is_error: self.late_is_error,
            closed_upto: self.closed_upto,
        };
        // A key already held costs one lookup.
        let key = Key::new(key);
        if let Some(st) = self.keys.get_mut(&key) {
            return update(st, placing, t, values);
        }
        if self.keys.len() >= self.max_keys {
            // Forget keys with nothing open (their watermarks) before refusing a new one.
            self.keys.retain(|_, st| !st.windows.is_empty());
            if self.keys.len() >= self.max_keys {
                return Err(format!(
                    "more than max_keys ({}) keys have open windows",
                    self.max_keys
                ));
            }
        }
        let st = self.keys.entry(key).or_default();
        update(st, placing, t, values)
    }
}

/// Takes a record at time `t` with field values `values` into the key state `st`.
fn update(
    st: &mut KeyState,
    p: Placing,
    t: i64,
    values: &[Option<f64>],
) -> Result<Absorbed, String> {
    let mut start = t.div_euclid(p.window_ms) * p.window_ms;
    match p.time {
        Time::Event => {
            if let Some(max) = st.max_ts {
                let watermark = max.saturating_sub(p.lateness_ms);
                if start + p.window_ms <= watermark {
                    return if p.late_is_error {
                        Err(format!(
                            "late record: its window [{start}, {}) ended at or before the \
                             key's watermark {watermark} (latest timestamp {max} minus \
                             allowed_lateness_ms {})",
                            start + p.window_ms,
                            p.lateness_ms
                        ))
                    } else {
                        Ok(Absorbed::Dropped)
                    };
                }
            }
            st.max_ts = Some(st.max_ts.map_or(t, |m| m.max(t)));
        }
        Time::Arrival => start = start.max(p.closed_upto),
    }
    let w = st.window(start, values.len());
    w.count += 1;
    for (f, v) in w.fields.iter_mut().zip(values) {
        if let Some(v) = *v {
            f.count += 1;
            // Values are finite (no NaN): plain comparisons, which WebAssembly does inline
            // (`f64::min` is a call there, for its NaN rules).
            if v < f.min {
                f.min = v;
            }
            if v > f.max {
                f.max = v;
            }
            f.sum += v;
            if t >= f.last_at {
                f.last = v;
                f.last_at = t;
            }
        }
    }
    Ok(Absorbed::Yes)
}

/// Appends `text` as a JSON string.
fn json_string(out: &mut String, text: &str) {
    let plain = text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if plain {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&Value::String(text.to_owned()).to_string());
    }
}

/// Appends a number as JSON (finite values only reach here).
fn num(out: &mut String, v: f64) {
    if v.is_finite() {
        let _ = write!(out, "{v}");
    } else {
        out.push_str("null");
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
        let mut paths = vec![key];
        paths.extend(timestamp);
        let first_field = paths.len();
        let mut names = Vec::with_capacity(fields.len());
        for (p, name) in fields {
            paths.push(p);
            names.push(name);
        }
        Ok((
            WindowStats {
                paths,
                first_field,
                names,
                window_ms,
                time,
                lateness_ms: int("allowed_lateness_ms", Some(0))?,
                late_is_error,
                max_keys: int("max_keys", Some(100_000))?.max(1) as usize,
                instance,
                keys: Keys::default(),
                closed_upto: i64::MIN,
                scratch: Vec::new(),
                text: String::new(),
            },
            Setup::default(),
        ))
    }

    fn process(&mut self, rec: &Record<'_>, _out: &mut Emitter) -> Result<Absorbed, String> {
        // One pass over the record for the key, the timestamp and the fields.
        let (mut key, mut ts) = (None, None);
        let first_field = self.first_field;
        let mut values = std::mem::take(&mut self.scratch);
        values.clear();
        values.resize(self.paths.len() - first_field, None);
        lookup_each(rec.payload, &self.paths, |k, v| {
            if k == 0 {
                key = Some(v);
            } else if k < first_field {
                ts = Some(v);
            } else if let Some(slot) = values.get_mut(k - first_field) {
                *slot = v.as_f64();
            }
        });
        let result = self.absorb_found(key, ts, rec, &values);
        self.scratch = values;
        result
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
