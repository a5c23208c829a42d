//! A benchmark plugin (transform, contract 0.2): the rewrite of `add-field-enrich` (puts
//! `"tag":"edge"` first in every JSON object record), one output per input.

use edge_router_plugin::{Context, Emitter, Record, Setup, Transform};

/// The stage.
pub struct AddField;

const FIELD: &[u8] = br#""tag":"edge","#;

impl Transform for AddField {
    fn init(_config: &str, _ctx: &Context) -> Result<(Self, Setup), String> {
        Ok((AddField, Setup::default()))
    }

    fn transform(&mut self, rec: &Record<'_>, out: &mut Emitter) -> Result<(), String> {
        out.emit_with(|buf| match rec.payload.split_first() {
            Some((b'{', rest)) => {
                buf.push(b'{');
                buf.extend_from_slice(FIELD);
                buf.extend_from_slice(rest);
            }
            _ => buf.extend_from_slice(rec.payload),
        });
        Ok(())
    }
}

edge_router_plugin::export_transform!(AddField);
