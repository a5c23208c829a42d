//! A test aggregate (contract 0.2): counts records per value of the field `k`, emits
//! `{"k":KEY,"n":COUNT,"instance":I}` per key on `flush` (nothing on `tick`), and traps where
//! a record asks it to, losing its instance's counts: in `process` on a record holding
//! `"trap":true`, in the next `tick` after absorbing one holding `"trap":"tick"`, and in
//! `flush` after absorbing one holding `"trap":"flush"` (such a record is counted as usual).

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::collections::BTreeMap;

use edge_router_plugin::{Absorbed, Aggregate, Context, Emitter, JsonPath, Record, Setup};

/// The aggregate.
pub struct Probe {
    key: JsonPath,
    trap: JsonPath,
    instance: u32,
    counts: BTreeMap<String, u64>,
    /// A record asked for a trap in the next `tick`.
    trap_in_tick: bool,
    /// A record asked for a trap in `flush`.
    trap_in_flush: bool,
}

impl Aggregate for Probe {
    fn init(_config: &str, ctx: &Context) -> Result<(Self, Setup), String> {
        Ok((
            Probe {
                key: JsonPath::parse("k").map_err(|e| e.to_string())?,
                trap: JsonPath::parse("trap").map_err(|e| e.to_string())?,
                instance: ctx.instance,
                counts: BTreeMap::new(),
                trap_in_tick: false,
                trap_in_flush: false,
            },
            Setup::default(),
        ))
    }

    fn process(&mut self, rec: &Record<'_>, _out: &mut Emitter) -> Result<Absorbed, String> {
        if let Some(trap) = rec.field(&self.trap) {
            match trap.key_bytes().as_deref() {
                Some(b"true") => panic!("asked to trap"),
                Some(b"tick") => self.trap_in_tick = true,
                Some(b"flush") => self.trap_in_flush = true,
                _ => {}
            }
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

    fn tick(&mut self, _now_unix_nanos: u64, _out: &mut Emitter) {
        if self.trap_in_tick {
            panic!("asked to trap in tick");
        }
    }

    fn flush(&mut self, out: &mut Emitter) {
        if self.trap_in_flush {
            panic!("asked to trap in flush");
        }
        for (k, n) in std::mem::take(&mut self.counts) {
            out.emit(format!(r#"{{"k":"{k}","n":{n},"instance":{}}}"#, self.instance).as_bytes());
        }
    }
}

edge_router_plugin::export_aggregate!(Probe);
