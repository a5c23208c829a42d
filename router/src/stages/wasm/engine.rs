//! The process-wide wasmtime engine: component model, pooling allocator, epoch interruption
//! driven by a ticker thread (call deadlines are counted in its ticks).

use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::Engine;

use super::PluginError;

/// How often the engine's epoch advances; call deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Most plugin instances alive at once in the process (the pooling allocator's slots). Every
/// stage worker keeps one instance per plugin stage.
pub const INSTANCES_MAX: usize = 64;

/// The process-wide engine, with the epoch ticker started.
pub fn engine() -> Result<&'static Engine, PluginError> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut cfg = wasmtime::Config::new();
            cfg.wasm_component_model(true);
            cfg.epoch_interruption(true);
            cfg.cranelift_opt_level(wasmtime::OptLevel::Speed);
            let mut pool = wasmtime::PoolingAllocationConfig::new();
            pool.total_component_instances(INSTANCES_MAX as u32)
                .total_core_instances(256)
                .total_memories(256)
                .total_tables(256)
                .max_memory_size(4 << 30);
            cfg.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
            let engine = Engine::new(&cfg).map_err(|e| format!("{e:#}"))?;
            let weak = engine.weak();
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while let Some(e) = weak.upgrade() {
                        e.increment_epoch();
                        drop(e);
                        std::thread::sleep(EPOCH_TICK);
                    }
                })
                .map_err(|e| format!("cannot start the epoch thread: {e}"))?;
            Ok(engine)
        })
        .as_ref()
        .map_err(|e| PluginError::Engine(e.clone()))
}

/// The epoch deadline, in ticks, for a call that may take `timeout`.
pub fn ticks(timeout: Duration) -> u64 {
    (timeout.as_nanos() / EPOCH_TICK.as_nanos()).max(1) as u64 + 1
}
