//! Settings of a WebAssembly stage (`[[stages]]` with a `plugin`).

use std::path::PathBuf;
use std::time::Duration;

use toml_edit::{Item, Value};

use crate::config::reader::{Diagnostics, Section};

/// Which world the plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// `filter`: keep or drop.
    Filter,
    /// `enrich`: rewrite.
    Enrich,
    /// `route`: choose sinks.
    Route,
    /// `transform` (contract 0.2): zero or more outputs per input, with keys, attributes and
    /// destinations.
    Transform,
    /// `aggregate` (contract 0.2): records absorbed into per-instance state, emitted on ticks.
    Aggregate,
}

impl PluginKind {
    /// The WIT world name.
    pub fn world(self) -> &'static str {
        match self {
            PluginKind::Filter => "filter",
            PluginKind::Enrich => "enrich",
            PluginKind::Route => "route",
            PluginKind::Transform => "transform",
            PluginKind::Aggregate => "aggregate",
        }
    }

    /// The contract version whose world this is (`0.1.0` or `0.2.0`).
    pub fn version(self) -> &'static str {
        match self {
            PluginKind::Filter | PluginKind::Enrich | PluginKind::Route => "0.1.0",
            PluginKind::Transform | PluginKind::Aggregate => "0.2.0",
        }
    }
}

/// What happens to a record the plugin reports an error for, or that makes it trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Dead-letter it with the message (default).
    DeadLetter,
    /// Drop it (counted as dropped by the stage).
    Drop,
    /// Pass it on unchanged (to the default sinks for a route stage).
    Pass,
    /// Stop the router with an error naming the stage.
    Fail,
}

impl OnError {
    /// The config value naming this policy.
    pub fn name(self) -> &'static str {
        match self {
            OnError::DeadLetter => "dead_letter",
            OnError::Drop => "drop",
            OnError::Pass => "pass",
            OnError::Fail => "fail",
        }
    }
}

/// Validated settings of one WebAssembly stage.
#[derive(Debug, Clone, PartialEq)]
pub struct WasmStageConfig {
    /// The component file.
    pub plugin: PathBuf,
    /// The world it must implement.
    pub kind: PluginKind,
    /// The stage's `config` table as JSON text (`{}` when absent).
    pub config_json: String,
    /// Error policy.
    pub on_error: OnError,
    /// Most linear memory one instance may have.
    pub memory_max_bytes: u64,
    /// Most CPU time one call may take.
    pub timeout: Duration,
    /// Most records per call.
    pub batch_records_max: usize,
    /// Most payload bytes per call (a record larger than this still goes alone).
    pub batch_bytes_max: u64,
    /// What the plugin may reach beyond the sandbox (WASI components only).
    pub grants: super::Grants,
    /// Most CPU time `init` may take (instantiation included).
    pub init_timeout: Duration,
    /// Most bytes the host takes from the plugin's answers for one batch: enrich payloads and
    /// error messages (after cutting), plus 64 bytes per record for the fixed-size parts.
    pub answer_bytes_max: u64,
    /// Most failed calls spent isolating the failing records of one call range.
    pub isolate_failed_calls_max: u32,
    /// Failed calls, with no healthy range in between, that trip the stage's breaker.
    pub breaker_failed_calls: u32,
    /// How long a tripped stage first stops calling its plugin (doubled after a failed probe).
    pub breaker_cooldown: Duration,
    /// Most plugin log messages a second, for the stage as a whole.
    pub log_messages_per_sec: u64,
    /// Most bytes of plugin log messages a second, for the stage as a whole.
    pub log_bytes_per_sec: u64,
    /// Aggregate stages: how often `tick` is called (`tick_ms`).
    pub tick: Duration,
    /// Aggregate stages: the JSON path of the key that picks a record's instance (`key`);
    /// `None`: every record goes to instance 0.
    pub key: Option<String>,
}

/// Default `tick_ms` of aggregate stages.
pub const TICK_MS: u64 = 1000;

/// Default `timeout_ms`.
const TIMEOUT_MS: u64 = 100;
/// Default `init_timeout_ms` (at least `timeout_ms`).
const INIT_TIMEOUT_MS: u64 = 1000;
/// Default `batch_records_max`.
const BATCH_RECORDS_MAX: usize = 1024;
/// Default `batch_bytes_max`.
const BATCH_BYTES_MAX: u64 = 4 << 20;
/// Default `answer_bytes_max`.
const ANSWER_BYTES_MAX: u64 = 16 << 20;
/// Default `isolate_failed_calls_max` and `breaker_failed_calls`.
const FAILED_CALLS: u32 = 32;
/// Default `breaker_cooldown_ms`.
const BREAKER_COOLDOWN_MS: u64 = 5000;
/// Default `log_messages_per_sec`.
const LOG_MESSAGES_PER_SEC: u64 = 100;
/// Default `log_bytes_per_sec`.
const LOG_BYTES_PER_SEC: u64 = 64 << 10;

/// Failed calls that isolating one failing record among `records` can take: one per level of
/// halving, plus the first.
pub fn isolation_calls(records: usize) -> u32 {
    usize::BITS - records.saturating_sub(1).leading_zeros() + 1
}

impl WasmStageConfig {
    /// The settings a stage gets when its table sets nothing but `plugin` (and `kind`).
    pub fn defaults(plugin: PathBuf, kind: PluginKind) -> WasmStageConfig {
        WasmStageConfig {
            plugin,
            kind,
            config_json: "{}".to_owned(),
            on_error: OnError::DeadLetter,
            memory_max_bytes: 64 << 20,
            timeout: Duration::from_millis(TIMEOUT_MS),
            batch_records_max: BATCH_RECORDS_MAX,
            batch_bytes_max: BATCH_BYTES_MAX,
            grants: super::Grants::default(),
            init_timeout: Duration::from_millis(INIT_TIMEOUT_MS),
            answer_bytes_max: ANSWER_BYTES_MAX,
            isolate_failed_calls_max: FAILED_CALLS,
            breaker_failed_calls: FAILED_CALLS,
            breaker_cooldown: Duration::from_millis(BREAKER_COOLDOWN_MS),
            log_messages_per_sec: LOG_MESSAGES_PER_SEC,
            log_bytes_per_sec: LOG_BYTES_PER_SEC,
            tick: Duration::from_millis(TICK_MS),
            key: None,
        }
    }

    /// Reads the plugin keys of a `[[stages]]` table whose `kind` is `kind`.
    pub fn parse(
        s: &mut Section<'_>,
        d: &mut Diagnostics,
        kind: PluginKind,
    ) -> Option<WasmStageConfig> {
        // Relative to the working directory, like every other path in the config.
        let path = PathBuf::from(s.required_str(d, "plugin")?.value);
        let spot = s.spot_of("config");
        let config_json = match s.raw(d, "config") {
            None => "{}".to_owned(),
            // A string is taken as JSON text (quick mode's --stage-config arrives this way).
            Some(Item::Value(Value::String(text))) => {
                match serde_json::from_str::<serde_json::Value>(text.value()) {
                    Ok(v) => v.to_string(),
                    Err(e) => {
                        d.error(&spot, format!("config is not valid JSON: {e}"));
                        "{}".to_owned()
                    }
                }
            }
            Some(item) => match item_to_json(item) {
                Ok(v) => v.to_string(),
                Err(e) => {
                    d.error(&spot, e);
                    "{}".to_owned()
                }
            },
        };
        let on_error = match s.choice(
            d,
            "on_error",
            &["dead_letter", "drop", "pass", "fail"],
            "dead_letter",
        ) {
            "drop" => OnError::Drop,
            "pass" => OnError::Pass,
            "fail" => OnError::Fail,
            _ => OnError::DeadLetter,
        };
        let memory_max_bytes = s.size_or(d, "memory_max_bytes", 64 << 20, (1 << 20)..=(4 << 30));
        let timeout_ms = s.int_or(d, "timeout_ms", TIMEOUT_MS, 1..=600_000);
        let init_timeout_ms = s.int_or(
            d,
            "init_timeout_ms",
            INIT_TIMEOUT_MS.max(timeout_ms),
            1..=600_000,
        );
        let batch_records_max =
            s.int_or(d, "batch_records_max", BATCH_RECORDS_MAX as u64, 1..=65_536) as usize;
        let batch_bytes_max =
            s.size_or(d, "batch_bytes_max", BATCH_BYTES_MAX, (1 << 10)..=(1 << 30));
        let answer_bytes_max = s.size_or(
            d,
            "answer_bytes_max",
            ANSWER_BYTES_MAX.max(batch_bytes_max),
            (64 << 10)..=(1 << 30),
        );
        // Isolating one failing record takes up to `needed` failed calls in a row: fewer would
        // dead-letter good records with it, or trip the stage over a single poison record.
        let needed = isolation_calls(batch_records_max);
        let isolate_failed_calls_max = s.int_or(
            d,
            "isolate_failed_calls_max",
            u64::from(FAILED_CALLS.max(needed)),
            u64::from(needed)..=4096,
        ) as u32;
        let breaker_failed_calls = s.int_or(
            d,
            "breaker_failed_calls",
            u64::from(FAILED_CALLS.max(needed + 1)),
            u64::from(needed + 1)..=1_000_000,
        ) as u32;
        let breaker_cooldown_ms =
            s.int_or(d, "breaker_cooldown_ms", BREAKER_COOLDOWN_MS, 1..=3_600_000);
        let log_messages_per_sec = s.int_or(
            d,
            "log_messages_per_sec",
            LOG_MESSAGES_PER_SEC,
            0..=1_000_000,
        );
        let log_bytes_per_sec = s.size_or(d, "log_bytes_per_sec", LOG_BYTES_PER_SEC, 0..=(1 << 30));
        if batch_bytes_max.saturating_mul(2) + (1 << 20) > memory_max_bytes {
            d.error(
                &s.spot_of("batch_bytes_max"),
                format!(
                    "batch_bytes_max ({batch_bytes_max}) needs memory_max_bytes of at least twice that plus 1 MiB ({memory_max_bytes} given)"
                ),
            );
        }
        let (tick_ms, key) = if kind == PluginKind::Aggregate {
            let tick_ms = s.int_or(d, "tick_ms", TICK_MS, 10..=3_600_000);
            let key =
                s.opt_str(d, "key").and_then(|k| {
                    match edge_router_jsonpath::JsonPath::parse(&k.value) {
                        Ok(_) => Some(k.value),
                        Err(e) => {
                            d.error(&k.spot, format!("key is not a JSON path: {e}"));
                            None
                        }
                    }
                });
            (tick_ms, key)
        } else {
            (TICK_MS, None)
        };
        let grants = super::Grants {
            clock: s.bool_or(d, "grant_clock", false),
            random: s.bool_or(d, "grant_random", false),
            read_only_dir: s
                .opt_str(d, "grant_read_only_dir")
                .map(|p| PathBuf::from(p.value)),
        };
        Some(WasmStageConfig {
            grants,
            plugin: path,
            kind,
            config_json,
            on_error,
            memory_max_bytes,
            timeout: Duration::from_millis(timeout_ms),
            batch_records_max,
            batch_bytes_max,
            init_timeout: Duration::from_millis(init_timeout_ms),
            answer_bytes_max,
            isolate_failed_calls_max,
            breaker_failed_calls,
            breaker_cooldown: Duration::from_millis(breaker_cooldown_ms),
            log_messages_per_sec,
            log_bytes_per_sec,
            tick: Duration::from_millis(tick_ms),
            key,
        })
    }
}

/// Converts a TOML value (the stage's `config` table) into JSON.
pub fn item_to_json(item: &Item) -> Result<serde_json::Value, String> {
    match item {
        Item::None => Ok(serde_json::Value::Null),
        Item::Value(v) => value_to_json(v),
        Item::Table(t) => {
            let mut m = serde_json::Map::new();
            for (k, v) in t.iter() {
                m.insert(k.to_owned(), item_to_json(v)?);
            }
            Ok(serde_json::Value::Object(m))
        }
        Item::ArrayOfTables(a) => a
            .iter()
            .map(|t| item_to_json(&Item::Table(t.clone())))
            .collect::<Result<Vec<_>, _>>()
            .map(serde_json::Value::Array),
    }
}

fn value_to_json(v: &Value) -> Result<serde_json::Value, String> {
    Ok(match v {
        Value::String(s) => serde_json::Value::String(s.value().clone()),
        Value::Integer(i) => serde_json::Value::from(*i.value()),
        Value::Float(f) => serde_json::Number::from_f64(*f.value())
            .map(serde_json::Value::Number)
            .ok_or_else(|| format!("{} cannot be written as JSON", f.value()))?,
        Value::Boolean(b) => serde_json::Value::Bool(*b.value()),
        Value::Datetime(d) => serde_json::Value::String(d.value().to_string()),
        Value::Array(a) => {
            serde_json::Value::Array(a.iter().map(value_to_json).collect::<Result<Vec<_>, _>>()?)
        }
        Value::InlineTable(t) => {
            let mut m = serde_json::Map::new();
            for (k, v) in t.iter() {
                m.insert(k.to_owned(), value_to_json(v)?);
            }
            serde_json::Value::Object(m)
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn isolating_one_record_takes_a_call_per_halving_plus_one() {
        assert_eq!(isolation_calls(1), 1);
        assert_eq!(isolation_calls(2), 2);
        assert_eq!(isolation_calls(3), 3);
        assert_eq!(isolation_calls(1024), 11);
        assert_eq!(isolation_calls(1025), 12);
        assert_eq!(isolation_calls(65_536), 17);
    }

    fn parse(table: &str) -> Result<WasmStageConfig, String> {
        let text = format!("plugin = \"p.wasm\"\n{table}");
        let doc: toml_edit::DocumentMut = text.parse().unwrap();
        let mut d = Diagnostics::new();
        let origin = crate::config::reader::Origin::File {
            name: "t.toml".into(),
            text: text.as_str().into(),
        };
        let mut s = Section::root(doc.as_table(), origin, "stages[0]");
        let cfg = WasmStageConfig::parse(&mut s, &mut d, PluginKind::Filter);
        s.finish(&mut d);
        d.finish(cfg).map_err(|e| e.to_string()).map(Option::unwrap)
    }

    #[test]
    fn sandbox_keys_have_defaults_that_fit_the_batch_size() {
        let c = parse("").unwrap();
        assert_eq!(c.answer_bytes_max, 16 << 20);
        assert_eq!(c.isolate_failed_calls_max, 32);
        assert_eq!(c.breaker_failed_calls, 32);
        assert_eq!(c.breaker_cooldown, Duration::from_secs(5));
        assert_eq!(c.init_timeout, Duration::from_secs(1));
        assert_eq!(
            (c.log_messages_per_sec, c.log_bytes_per_sec),
            (100, 64 << 10)
        );
        // A slow plugin's init gets at least its call deadline.
        assert_eq!(
            parse("timeout_ms = 3000").unwrap().init_timeout,
            Duration::from_secs(3)
        );
        // The budget is at least a call's input.
        assert_eq!(
            parse("batch_bytes_max = \"64MiB\"\nmemory_max_bytes = \"1GiB\"")
                .unwrap()
                .answer_bytes_max,
            64 << 20
        );
    }

    #[test]
    fn a_breaker_that_would_trip_on_one_poison_record_is_refused() {
        let e = parse("batch_records_max = 1024\nbreaker_failed_calls = 5").unwrap_err();
        assert!(e.contains("breaker_failed_calls"), "{e}");
        let e = parse("isolate_failed_calls_max = 3").unwrap_err();
        assert!(e.contains("isolate_failed_calls_max"), "{e}");
        let c = parse("batch_records_max = 16\nbreaker_failed_calls = 6").unwrap();
        assert_eq!(c.breaker_failed_calls, 6);
    }

    #[test]
    fn toml_config_becomes_json() {
        let doc: toml_edit::DocumentMut =
            "config = { condition = \"t <= 80\", n = 3, f = 1.5, on = true, l = [1, \"a\"], t = { x = 1 } }"
                .parse()
                .unwrap();
        let j = item_to_json(&doc["config"]).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"condition": "t <= 80", "n": 3, "f": 1.5, "on": true, "l": [1, "a"], "t": {"x": 1}})
        );
    }
}
