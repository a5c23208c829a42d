//! A test aggregate (contract 0.2): counts records per value of the field `k`, emits
//! `{"k":KEY,"n":COUNT,"instance":I}` per key on `flush` (nothing on `tick`), and traps on a
//! record holding `"trap":true`, losing its instance's counts.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::collections::BTreeMap;

use edge_router_plugin::{Absorbed, Aggregate, Context, Emitter, JsonPath, Record, Setup};

/// The aggregate.
pub struct Probe {
    key: JsonPath,
    trap: JsonPath,
    instance: u32,
    counts: BTreeMap<String, u64>,
}

impl Aggregate for Probe {
    fn init(_config: &str, ctx: &Context) -> Result<(Self, Setup), String> {
        Ok((
            Probe {
                key: JsonPath::parse("k").map_err(|e| e.to_string())?,
                trap: JsonPath::parse("trap").map_err(|e| e.to_string())?,
                instance: ctx.instance,
                counts: BTreeMap::new(),
            },
            Setup::default(),
        ))
    }

    fn process(&mut self, rec: &Record<'_>, _out: &mut Emitter) -> Result<Absorbed, String> {
        if rec.field(&self.trap).is_some_and(|v| v.raw() == b"true") {
            panic!("asked to trap");
        }
        let k = rec
            .field(&self.key)
            .and_then(|v| v.key_bytes())
            .ok_or("no key")?;
        *self
            .counts
            .entry(String::from_utf8_lossy(&k).into_owned())
            .or_default() += 1;
        Ok(Absorbed::Yes)
    }

    fn tick(&mut self, _now_unix_nanos: u64, _out: &mut Emitter) {}

    fn flush(&mut self, out: &mut Emitter) {
        for (k, n) in std::mem::take(&mut self.counts) {
            out.emit(format!(r#"{{"k":"{k}","n":{n},"instance":{}}}"#, self.instance).as_bytes());
        }
    }
}

edge_router_plugin::export_aggregate!(Probe);
