//! A deliberately hostile test plugin (a fixture for the router's sandbox tests, not an
//! example to copy).
//!
//! A filter that keeps every record, except that on any record whose payload contains the bytes
//! `ALLOC` it **allocates without bound**: it keeps pushing 1 MiB buffers (every byte written,
//! so the memory is really used) into a vector until an allocation fails, which aborts — a trap
//! in WebAssembly. The router must cap the instance's memory, keep running, and apply the
//! stage's `on_error` policy to that record.
//!
//! Never feed it an `ALLOC` record natively: there it would exhaust the machine's memory.
//!
//! Config: none (anything is accepted).

use edge_router_plugin::{Context, Filter, Record};

/// Keeps records, allocates until it dies on one containing `ALLOC`.
pub struct AllocForever;

impl Filter for AllocForever {
    fn init(_config: &str, _ctx: &Context) -> Result<Self, String> {
        Ok(AllocForever)
    }

    fn keep(&mut self, rec: &Record<'_>) -> Result<bool, String> {
        if rec.payload.windows(5).any(|w| w == b"ALLOC") {
            hoard();
        }
        Ok(true)
    }
}

/// Never returns: allocation failure aborts.
fn hoard() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![0xA5; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

edge_router_plugin::export_filter!(AllocForever);

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_other_records() {
        // Records with `ALLOC` would exhaust memory; only the others are run natively.
        let keep = edge_router_plugin::testing::filter::<super::AllocForever>(
            "{}",
            &[b"a", b"ALLO", b"LLOC", br#"{"alloc":1}"#],
        )
        .unwrap();
        assert_eq!(keep, vec![Ok(true); 4]);
    }
}
