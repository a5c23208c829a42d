//! What a plugin instance can reach, and what one plugin stage's instances share.
//!
//! An instance gets a memory cap ([`Limiter`]), the router's `log` (through the stage's
//! [`LogGate`]: messages and bytes per second for the stage as a whole, each message cut to
//! [`MESSAGE_BYTES_MAX`] with control characters escaped), and, for components that import
//! WASI (Python, JavaScript), a WASI context with nothing in it unless the stage grants it.
//! A [`StageGuard`] is made once per stage and shared by its workers and every instance they
//! make, so neither a second worker nor a re-instantiation after a trap gets a fresh
//! allowance; it also holds the stage's breaker and its warning gate.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;
use wasmtime::StoreContextMut;
use wasmtime::component::WasmStr;

use super::PluginError;
use super::bindings::{host, host02};
use super::config::WasmStageConfig;
use crate::core::accounting::Counters;
use crate::core::breaker::Breaker;
use crate::core::rate_limit::{Held, LogGate, Repeats};
use crate::core::text::{MESSAGE_BYTES_MAX, clean};

/// Warnings about a stage's plugin (traps, timeouts, violations) let through per second.
const WARNINGS_PER_SEC: u64 = 1;
/// How often, at most, held-back plugin log messages are summarized.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Caps an instance's memory and records when the cap was hit.
pub(super) struct Limiter {
    pub(super) memory_max: usize,
    pub(super) hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_max {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// What one plugin stage's workers and instances share.
pub struct StageGuard {
    name: Arc<str>,
    counters: Arc<Counters>,
    logs: Mutex<LogState>,
    warnings: Mutex<Repeats>,
    /// The stage's circuit breaker.
    pub(super) breaker: Mutex<Breaker>,
    limits: (u64, u64),
}

struct LogState {
    gate: LogGate,
    last_summary: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StageGuard {
    /// The guard of stage `name`, counting into `counters`.
    pub fn new(name: &str, cfg: &WasmStageConfig, counters: Arc<Counters>) -> Arc<StageGuard> {
        let now = Instant::now();
        // A stage rebuilt by a reload starts closed (its counters live on by name).
        counters.plugin_breaker_open.store(0, Ordering::Relaxed);
        Arc::new(StageGuard {
            name: Arc::from(name),
            counters,
            logs: Mutex::new(LogState {
                gate: LogGate::new(cfg.log_messages_per_sec, cfg.log_bytes_per_sec, now),
                last_summary: now,
            }),
            warnings: Mutex::new(Repeats::new(WARNINGS_PER_SEC, now)),
            breaker: Mutex::new(Breaker::new(cfg.breaker_failed_calls, cfg.breaker_cooldown)),
            limits: (cfg.log_messages_per_sec, cfg.log_bytes_per_sec),
        })
    }

    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stage's counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Logs a warning about the plugin, at most [`WARNINGS_PER_SEC`] a second for the stage
    /// (the number held back is logged with the next one).
    pub fn warn(&self, message: impl FnOnce() -> String) {
        let Some(suppressed) = lock(&self.warnings).admit(Instant::now()) else {
            return;
        };
        let stage = &*self.name;
        tracing::warn!(stage, suppressed, "stage `{stage}`: {}", message());
    }

    /// Records whether the breaker is open, for the metrics.
    pub fn set_breaker_open(&self, open: bool) {
        self.counters
            .plugin_breaker_open
            .store(u64::from(open), Ordering::Relaxed);
    }

    /// Logs a summary of the plugin log messages held back, when there are some and the last
    /// summary is [`SUMMARY_EVERY`] old.
    pub fn summarize_logs(&self, now: Instant) {
        let held = {
            let mut logs = lock(&self.logs);
            if now.saturating_duration_since(logs.last_summary) < SUMMARY_EVERY {
                return;
            }
            logs.last_summary = now;
            logs.gate.take_held()
        };
        if held.messages > 0 {
            let stage = &*self.name;
            tracing::warn!(
                stage,
                held_messages = held.messages,
                "stage `{stage}`: held back {} plugin log messages (limits: {} messages and {} \
                 bytes a second for the stage)",
                held.messages,
                self.limits.0,
                self.limits.1
            );
        }
    }

    fn held(&self, n: u64) {
        self.counters
            .plugin_logs_suppressed
            .fetch_add(n, Ordering::Relaxed);
    }
}

/// What a plugin instance can reach: its memory cap, its stage's guard (log gate) and, for
/// components that import WASI, its WASI context.
pub(super) struct HostState {
    pub(super) limiter: Limiter,
    pub(super) guard: Arc<StageGuard>,
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
}

impl HostState {
    /// The state of a new instance of a stage whose settings are `cfg`.
    pub(super) fn new(
        cfg: &WasmStageConfig,
        guard: Arc<StageGuard>,
    ) -> Result<HostState, PluginError> {
        Ok(HostState {
            wasi: wasi_ctx(&cfg.grants)?,
            table: wasmtime::component::ResourceTable::new(),
            limiter: Limiter {
                memory_max: usize::try_from(cfg.memory_max_bytes).unwrap_or(usize::MAX),
                hit: false,
            },
            guard,
        })
    }
}

impl wasmtime_wasi::WasiView for HostState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The host's `log`. A message held back by the gate is never read out of the plugin's memory;
/// one let through is cut to [`MESSAGE_BYTES_MAX`] and its control characters are escaped, so
/// it cannot forge log lines.
pub(super) fn log(
    store: StoreContextMut<'_, HostState>,
    (level, message): (host::Level, WasmStr),
) -> wasmtime::Result<()> {
    let guard = store.data().guard.clone();
    // A message is read only when the gate could let the longest kept message through: a
    // message held back costs nothing but this check.
    if !lock(&guard.logs)
        .gate
        .admit_message(MESSAGE_BYTES_MAX + 32, Instant::now())
    {
        guard.held(1);
        return Ok(());
    }
    let text = match message.to_str(&store) {
        Ok(s) => clean(&s, MESSAGE_BYTES_MAX),
        Err(_) => "(a message that is not valid text)".to_owned(),
    };
    let admitted = lock(&guard.logs)
        .gate
        .admit_bytes(text.len(), Instant::now());
    let Some(Held { messages: held, .. }) = admitted else {
        guard.held(1);
        return Ok(());
    };
    let stage = &*guard.name;
    match level {
        host::Level::Error => tracing::error!(stage, held, "{text}"),
        host::Level::Warn => tracing::warn!(stage, held, "{text}"),
        host::Level::Info => tracing::info!(stage, held, "{text}"),
        host::Level::Debug => tracing::debug!(stage, held, "{text}"),
        host::Level::Trace => tracing::trace!(stage, held, "{text}"),
    }
    Ok(())
}

/// The host's `log` of contract 0.2: the same as 0.1's.
pub(super) fn log02(
    store: StoreContextMut<'_, HostState>,
    (level, message): (host02::Level, WasmStr),
) -> wasmtime::Result<()> {
    let level = match level {
        host02::Level::Error => host::Level::Error,
        host02::Level::Warn => host::Level::Warn,
        host02::Level::Info => host::Level::Info,
        host02::Level::Debug => host::Level::Debug,
        host02::Level::Trace => host::Level::Trace,
    };
    log(store, (level, message))
}

/// A wall clock stopped at the Unix epoch, for plugins not granted the real one.
struct StoppedWallClock;

impl wasmtime_wasi::HostWallClock for StoppedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// A monotonic clock that advances one nanosecond per reading, for plugins not granted the
/// real one: deterministic, yet never goes backwards or stands still.
struct CountingClock(std::sync::atomic::AtomicU64);

impl wasmtime_wasi::HostMonotonicClock for CountingClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// What a stage grants its plugin beyond the default sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// The real wall and monotonic clocks.
    pub clock: bool,
    /// Real randomness.
    pub random: bool,
    /// A directory the plugin may read, seen as `/data`.
    pub read_only_dir: Option<std::path::PathBuf>,
}

/// The WASI context of one instance: no files, no sockets, no environment, no arguments, no
/// standard streams; clocks and randomness are deterministic unless granted.
fn wasi_ctx(grants: &Grants) -> Result<wasmtime_wasi::WasiCtx, PluginError> {
    use rand::SeedableRng as _;
    let mut b = wasmtime_wasi::WasiCtxBuilder::new();
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    if std::env::var_os("EDGE_ROUTER_PLUGIN_STDERR").is_some() {
        // For plugin authors: see what the guest prints (e.g. a Python traceback).
        b.inherit_stderr();
    }
    if !grants.clock {
        b.wall_clock(StoppedWallClock)
            .monotonic_clock(CountingClock(std::sync::atomic::AtomicU64::new(0)));
    }
    if !grants.random {
        b.secure_random(rand::rngs::StdRng::seed_from_u64(0))
            .insecure_random(rand::rngs::StdRng::seed_from_u64(1))
            .insecure_random_seed(0);
    }
    if let Some(dir) = &grants.read_only_dir {
        b.preopened_dir(dir, "/data", wasmtime_wasi::FsPerms::ReadOnly)
            .map_err(|e| {
                PluginError::Start(format!("cannot grant directory {}: {e:#}", dir.display()))
            })?;
    }
    Ok(b.build())
}
