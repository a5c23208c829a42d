//! A benchmark plugin (enrich, contract 0.1): puts `"tag":"edge"` first in every JSON object
//! record; other records are left as they are. `add-field-transform` does the same rewrite as a
//! 0.2 transform, so `benches/plugins02.rs` can compare the two worlds' overhead.

use edge_router_plugin::{Changed, Context, Enrich, Record};

/// The stage.
pub struct AddField;

/// The field put first.
pub const FIELD: &[u8] = br#""tag":"edge","#;

/// Writes the rewritten `payload` into `out`; false when it is not an object.
pub fn rewrite(payload: &[u8], out: &mut Vec<u8>) -> bool {
    match payload.split_first() {
        Some((b'{', rest)) => {
            out.push(b'{');
            out.extend_from_slice(FIELD);
            out.extend_from_slice(rest);
            true
        }
        _ => false,
    }
}

impl Enrich for AddField {
    fn init(_config: &str, _ctx: &Context) -> Result<Self, String> {
        Ok(AddField)
    }

    fn enrich(&mut self, rec: &Record<'_>, out: &mut Vec<u8>) -> Result<Changed, String> {
        Ok(if rewrite(rec.payload, out) {
            Changed::Yes
        } else {
            Changed::No
        })
    }
}

edge_router_plugin::export_enrich!(AddField);
