//! A deliberately hostile test plugin (a fixture for the router's sandbox tests, not an
//! example to copy).
//!
//! A filter that keeps every record, except that on any record whose payload contains the bytes
//! `LOOP` it **spins forever** (a counter passed through [`std::hint::black_box`], so the loop
//! cannot be optimized away). The router must stop it at the stage's CPU deadline, keep
//! running, and apply the stage's `on_error` policy to that record.
//!
//! Config: none (anything is accepted).

use edge_router_plugin::{Context, Filter, Record};

/// Keeps records, never returns from one containing `LOOP`.
pub struct LoopForever;

impl Filter for LoopForever {
    fn init(_config: &str, _ctx: &Context) -> Result<Self, String> {
        Ok(LoopForever)
    }

    fn keep(&mut self, rec: &Record<'_>) -> Result<bool, String> {
        if rec.payload.windows(4).any(|w| w == b"LOOP") {
            spin();
        }
        Ok(true)
    }
}

/// Never returns.
fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

edge_router_plugin::export_filter!(LoopForever);

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_other_records() {
        // Records with `LOOP` would hang the test; only the others are run natively.
        let keep = edge_router_plugin::testing::filter::<super::LoopForever>(
            "{}",
            &[b"a", b"LOO", b"OOP", br#"{"loop":1}"#],
        )
        .unwrap();
        assert_eq!(keep, vec![Ok(true); 4]);
    }
}
