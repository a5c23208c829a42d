//! A filter that keeps every record. The benchmark's baseline for the cost of a plugin call.

use edge_router_plugin::{Context, Filter, Record};

/// Keeps everything.
pub struct Noop;

impl Filter for Noop {
    fn init(_config: &str, _ctx: &Context) -> Result<Self, String> {
        Ok(Noop)
    }

    fn keep(&mut self, _rec: &Record<'_>) -> Result<bool, String> {
        Ok(true)
    }
}

edge_router_plugin::export_filter!(Noop);

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_everything() {
        let keep = edge_router_plugin::testing::filter::<super::Noop>("{}", &[b"a", b"b"]).unwrap();
        assert_eq!(keep, vec![Ok(true), Ok(true)]);
    }
}
