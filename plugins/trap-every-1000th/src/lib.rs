//! A deliberately hostile test plugin (a fixture for the router's sandbox tests, not an
//! example to copy).
//!
//! A filter that keeps every record, except that it **panics — which traps the component —** on
//! any record whose JSON field `seq` is a non-negative integer that is a multiple of 1000 (0
//! included). Every other record (no `seq`, a string, `1000.0`, not JSON) is kept. The router
//! must isolate the poison records, apply the stage's `on_error` policy to them and process the
//! others normally.
//!
//! Config: none (anything is accepted).

use edge_router_plugin::{Context, Filter, JsonPath, JsonValue, Record};

/// Keeps records, traps on `seq % 1000 == 0`.
pub struct TrapEvery1000th {
    seq: JsonPath,
}

impl Filter for TrapEvery1000th {
    fn init(_config: &str, _ctx: &Context) -> Result<Self, String> {
        let seq = JsonPath::parse("seq").map_err(|e| e.to_string())?;
        Ok(Self { seq })
    }

    fn keep(&mut self, rec: &Record<'_>) -> Result<bool, String> {
        // Integers only: parsing floats would pull float parsing into the fixture.
        let seq = match rec.field(&self.seq) {
            Some(JsonValue::Number(text)) => std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse::<u64>().ok()),
            _ => None,
        };
        if seq.is_some_and(|n| n.is_multiple_of(1000)) {
            // A static message: formatting the number would pull float printing into the
            // fixture (and in WebAssembly nobody sees the message; the panic is a trap).
            panic!("seq is a multiple of 1000: trapping on purpose");
        }
        Ok(true)
    }
}

edge_router_plugin::export_filter!(TrapEvery1000th);

#[cfg(test)]
mod tests {
    use super::TrapEvery1000th;
    use edge_router_plugin::testing::filter;

    #[test]
    fn keeps_other_records() {
        let keep = filter::<TrapEvery1000th>(
            "{}",
            &[
                br#"{"seq":1}"#,
                br#"{"seq":999}"#,
                br#"{"seq":1001}"#,
                br#"{"seq":"1000"}"#,
                br#"{"seq":1000.0}"#,
                br#"{"seq":-1000}"#,
                b"x",
            ],
        )
        .unwrap();
        assert!(keep.iter().all(|k| *k == Ok(true)));
    }

    #[test]
    #[should_panic(expected = "multiple of 1000")]
    fn panics_on_a_multiple_of_1000() {
        let _ = filter::<TrapEvery1000th>("{}", &[br#"{"seq":1}"#, br#"{"seq":2000}"#]);
    }
}
