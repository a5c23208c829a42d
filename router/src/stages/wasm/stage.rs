//! [`WasmStage`]: a plugin stage's calls on a batch (the I/O side of [`super::driver`]), the
//! `on_error` policy, and the batch rebuilt from the verdicts.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::answer::{Answer, Kept, RecordError, Verdict};
use super::bindings::{types, types02};
use super::config::{OnError, PluginKind, WasmStageConfig};
use super::driver::{self, Calls, Failure, FailureKind};
use super::emit::Emit;
use super::engine::ticks;
use super::outputs::{OUTPUTS_PER_TICK_MAX, OutputMeta, Outputs};
use super::plugin::{Bound, Instance, Plugin, Slot, is_fuel_exhausted, trap_summary};
use super::sandbox::StageGuard;
use super::{PluginError, answer};
use crate::core::accounting::Counters;
use crate::core::dead_letter::DeadLetter;
use crate::core::record::{Batch, Origin, PositionBase, Span};
use crate::stages::{Stage, StageError, Tally};

/// Waits before each attempt to make a new instance after a failed call: a fresh instance whose
/// `init` fails (e.g. runs past its deadline on a loaded machine) is tried again twice, then the
/// call fails (and counts for the breaker).
const RESTART_WAITS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(50),
    Duration::from_millis(200),
];

/// Bytes of answer allowed per record on top of `answer_bytes_max`: the fixed-size parts of an
/// answer (a keep flag, a destination, a changed index and its end, an error's index), as
/// wasmtime counts them while lifting.
const FIXED_BYTES_PER_RECORD: u64 = 64;

/// A stage running a plugin.
pub struct WasmStage {
    guard: Arc<StageGuard>,
    cfg: WasmStageConfig,
    plugin: Arc<Plugin>,
    instance: Option<Instance>,
    /// Route plugins: how many destination names `init` returned, and the sink mask of each.
    destination_masks: Vec<u64>,
    default_mask: u64,
    /// Record spans of one call, relative to its first record.
    scratch_spans: Vec<u32>,
    /// What the answers of the batch in hand left to keep.
    kept: Kept,
    /// The batch in hand's verdicts (kept between batches for their allocation).
    verdicts: Vec<Verdict>,
    /// 0.2 plugins: whether `init` asked for input metadata.
    wants_metadata: bool,
    /// Which of the stage's instances this is (0.2 plugins are told).
    slot: Slot,
    /// What the last batch created and absorbed.
    tally: Tally,
}

/// An aggregate call that is not about a batch.
#[derive(Debug, Clone, Copy)]
pub enum Emitting {
    /// `tick(now)`, the wall clock in Unix nanoseconds.
    Tick(u64),
    /// `flush()`.
    Flush,
}

impl WasmStage {
    /// Loads the plugin, starts one instance (so a config the plugin rejects stops start-up),
    /// and for a route plugin resolves its destination names against `sink_names`.
    pub fn new(
        name: &str,
        cfg: WasmStageConfig,
        sink_names: &[String],
        default_mask: u64,
        counters: Arc<Counters>,
    ) -> Result<WasmStage, PluginError> {
        let plugin = Arc::new(Plugin::load(&cfg.plugin, cfg.kind)?);
        let guard = StageGuard::new(name, &cfg, counters);
        WasmStage::from_plugin(plugin, guard, cfg, sink_names, default_mask)
    }

    /// Like [`WasmStage::new`], with a plugin already loaded (`cfg.plugin` is not read again)
    /// and the stage's guard already made: starts an instance of its own. Stage workers share
    /// one [`Plugin`] and one [`StageGuard`] and call this once each, so a plugin is compiled
    /// (or mapped from the cache) once however many workers run it, and its log allowance and
    /// breaker are the stage's.
    pub fn from_plugin(
        plugin: Arc<Plugin>,
        guard: Arc<StageGuard>,
        cfg: WasmStageConfig,
        sink_names: &[String],
        default_mask: u64,
    ) -> Result<WasmStage, PluginError> {
        WasmStage::from_plugin_slot(plugin, guard, cfg, sink_names, default_mask, Slot::ONE)
    }

    /// Like [`WasmStage::from_plugin`], for instance `slot` of the stage (an aggregate stage's
    /// instances, one per stage worker).
    pub fn from_plugin_slot(
        plugin: Arc<Plugin>,
        guard: Arc<StageGuard>,
        cfg: WasmStageConfig,
        sink_names: &[String],
        default_mask: u64,
        slot: Slot,
    ) -> Result<WasmStage, PluginError> {
        let (instance, info) = plugin.instantiate(&guard, &cfg, slot)?;
        let mut destination_masks = Vec::new();
        for n in &info.names {
            match sink_names.iter().position(|s| s == n) {
                Some(i) if i < 64 => destination_masks.push(1u64 << i),
                _ => {
                    return Err(PluginError::Init(format!(
                        "destination {:?} is not a sink; the sinks are: {}",
                        crate::core::text::clean(n, 256),
                        sink_names.join(", ")
                    )));
                }
            }
        }
        Ok(WasmStage {
            guard,
            cfg,
            plugin,
            instance: Some(instance),
            destination_masks,
            default_mask,
            scratch_spans: Vec::new(),
            kept: Kept::default(),
            verdicts: Vec::new(),
            wants_metadata: info.wants_metadata,
            slot,
            tally: Tally::default(),
        })
    }

    fn counters(&self) -> &Counters {
        self.guard.counters()
    }

    /// The live instance, made anew (up to three attempts, see [`RESTART_WAITS`]) if the last
    /// call lost it.
    fn instance(&mut self) -> Result<&mut Instance, Failure> {
        if self.instance.is_none() {
            let mut last = None;
            for wait in RESTART_WAITS {
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
                match self.plugin.instantiate(&self.guard, &self.cfg, self.slot) {
                    Ok((i, _)) => {
                        self.instance = Some(i);
                        break;
                    }
                    Err(e) => {
                        self.counters()
                            .plugin_restart_failures
                            .fetch_add(1, Ordering::Relaxed);
                        self.guard
                            .warn(|| format!("could not start a new plugin instance: {e}"));
                        last = Some(e);
                    }
                }
            }
            if let Some(e) = last.filter(|_| self.instance.is_none()) {
                return Err(Failure {
                    kind: FailureKind::Restart,
                    message: format!(
                        "the plugin could not be restarted after a failed call ({} attempts): {e}",
                        RESTART_WAITS.len()
                    ),
                });
            }
        }
        self.instance.as_mut().ok_or_else(|| Failure {
            kind: FailureKind::Restart,
            message: "the plugin could not be restarted".to_owned(),
        })
    }

    /// Calls the plugin on records `range` of `batch`, with `kept` bytes of this batch's
    /// answers already held. The answer is lifted within the stage's budget and checked; any
    /// failure drops the instance.
    fn call(&mut self, batch: &Batch, range: Range<usize>, kept: u64) -> Result<Answer, Failure> {
        let spans = &batch.spans()[range.clone()];
        let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
            return Ok(match self.plugin.kind() {
                PluginKind::Filter => Answer::Filter {
                    keep: vec![],
                    errors: vec![],
                },
                PluginKind::Enrich => Answer::Enrich {
                    changed: vec![],
                    data: vec![],
                    ends: vec![],
                    errors: vec![],
                },
                PluginKind::Route => Answer::Route {
                    destinations: vec![],
                    errors: vec![],
                },
                PluginKind::Transform => Answer::Transform {
                    outputs: Outputs::default(),
                    inputs: vec![],
                    merged: vec![],
                    errors: vec![],
                },
                PluginKind::Aggregate => Answer::Aggregate {
                    outputs: Outputs::default(),
                    dropped: vec![],
                    errors: vec![],
                },
            });
        };
        let base = first.start;
        let data = &batch.data()[base as usize..last.end as usize];
        // Taken out of `self` for the call (which borrows `self` mutably), put back after.
        let mut rebased = std::mem::take(&mut self.scratch_spans);
        rebased.clear();
        rebased.extend(spans.iter().flat_map(|s| [s.start - base, s.end - base]));
        let wit_batch = types::Batch {
            data,
            spans: &rebased,
            source: &batch.origin().source,
            arrival_unix_nanos: batch.origin().arrival_unix_nanos,
        };
        // Contract 0.2: input metadata only when `init` asked for it.
        let mut attributes: Vec<(&str, &str)> = Vec::new();
        let mut bounds: Vec<usize> = Vec::new();
        if self.wants_metadata {
            for i in range.clone() {
                if let Some(m) = batch.meta(i) {
                    attributes.extend(m.attributes.iter().map(|(k, v)| (&**k, &**v)));
                }
                bounds.push(attributes.len());
            }
        }
        let metas: Vec<types02::RecordMeta<'_>> = range
            .clone()
            .zip(&bounds)
            .scan(0usize, |start, (i, &end)| {
                let m = batch.meta(i);
                let entry = types02::RecordMeta {
                    partition_key: m.and_then(|m| m.partition_key.as_deref()),
                    explicit_hash_key: m.and_then(|m| m.explicit_hash_key.as_deref()),
                    attributes: &attributes[*start..end],
                };
                *start = end;
                Some(entry)
            })
            .collect();
        let wit_batch02 = types02::Batch {
            data,
            spans: &rebased,
            meta: &metas,
            source: &batch.origin().source,
            arrival_unix_nanos: batch.origin().arrival_unix_nanos,
        };
        let n = spans.len();
        let budget = self.cfg.answer_bytes_max.saturating_sub(kept);
        let fuel = budget.saturating_add(FIXED_BYTES_PER_RECORD * n as u64 + 4096);
        let timeout = self.cfg.timeout;
        let result = match self.instance() {
            Err(f) => Err(Err(f)),
            Ok(inst) => {
                inst.store.set_epoch_deadline(ticks(timeout));
                inst.store
                    .set_hostcall_fuel(usize::try_from(fuel).unwrap_or(usize::MAX));
                inst.store.data_mut().limiter.hit = false;
                let errors = |v: Vec<types::RecordError>| -> Vec<RecordError> {
                    v.into_iter()
                        .map(|e| RecordError::new(e.index, &e.message))
                        .collect()
                };
                let answer = match &inst.bound {
                    Bound::Filter(b) => {
                        b.call_filter(&mut inst.store, wit_batch)
                            .map(|r| Answer::Filter {
                                keep: r.keep,
                                errors: errors(r.errors),
                            })
                    }
                    Bound::Enrich(b) => {
                        b.call_enrich(&mut inst.store, wit_batch)
                            .map(|r| Answer::Enrich {
                                changed: r.changed,
                                data: r.data,
                                ends: r.ends,
                                errors: errors(r.errors),
                            })
                    }
                    Bound::Route(b) => {
                        b.call_route(&mut inst.store, wit_batch)
                            .map(|r| Answer::Route {
                                destinations: r.destinations,
                                errors: errors(r.errors),
                            })
                    }
                    Bound::Transform(b) => {
                        b.call_transform(&mut inst.store, wit_batch02)
                            .map(|r| Answer::Transform {
                                outputs: lifted(r.outputs),
                                inputs: r.inputs,
                                merged: r.merged,
                                errors: errors02(r.errors),
                            })
                    }
                    Bound::Aggregate(b) => {
                        b.call_process(&mut inst.store, wit_batch02)
                            .map(|r| Answer::Aggregate {
                                outputs: lifted(r.outputs),
                                dropped: r.dropped,
                                errors: errors02(r.errors),
                            })
                    }
                };
                let memory_hit = inst.store.data().limiter.hit;
                answer.map_err(|e| Ok((e, memory_hit)))
            }
        };
        self.scratch_spans = rebased;
        let failure = match result {
            Ok(answer) => {
                let checked = answer
                    .check(n, self.destination_masks.len())
                    .and_then(|()| {
                        if answer.kept_bytes() > budget {
                            Err(answer::Violation::TooLarge {
                                limit: self.cfg.answer_bytes_max,
                            })
                        } else {
                            Ok(())
                        }
                    });
                match checked {
                    Ok(()) => return Ok(answer),
                    Err(v) => self.violation(v),
                }
            }
            Err(Err(restart)) => return Err(restart),
            Err(Ok((e, memory_hit))) => {
                if is_fuel_exhausted(&e) {
                    self.violation(answer::Violation::TooLarge {
                        limit: self.cfg.answer_bytes_max,
                    })
                } else {
                    let interrupted =
                        e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt);
                    let (kind, counter, message) = if interrupted {
                        (
                            FailureKind::Timeout,
                            &self.counters().plugin_timeouts,
                            format!("the plugin ran longer than {} ms", timeout.as_millis()),
                        )
                    } else if memory_hit {
                        (
                            FailureKind::Memory,
                            &self.counters().plugin_memory_limit_hits,
                            format!(
                                "the plugin needed more than {} bytes of memory",
                                self.cfg.memory_max_bytes
                            ),
                        )
                    } else {
                        (
                            FailureKind::Trap,
                            &self.counters().plugin_traps,
                            format!("the plugin trapped: {}", trap_summary(&e)),
                        )
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    Failure { kind, message }
                }
            }
        };
        let lost = self.lose_instance();
        let (stage_range, records) = (range.clone(), n);
        self.guard.warn(|| {
            format!(
                "{} (records {}..{} of a batch, {records} in the call); the call's records are \
                 isolated or follow on_error = {}{}",
                failure.message,
                stage_range.start + 1,
                stage_range.end,
                self.cfg.on_error.name(),
                lost.unwrap_or_default()
            )
        });
        Err(failure)
    }

    /// Drops the live instance after a failed call. An aggregate's state goes with it: that is
    /// counted, and the sentence saying so is returned for the caller's warning about the
    /// failure (one warning, so the stage's warning limit cannot hold back one half of it).
    fn lose_instance(&mut self) -> Option<String> {
        if self.instance.take().is_none() || self.plugin.kind() != PluginKind::Aggregate {
            return None;
        }
        self.counters()
            .plugin_state_losses
            .fetch_add(1, Ordering::Relaxed);
        Some(format!(
            "; aggregate instance {} of {} is replaced: the windows it held open are lost (the \
             records it had absorbed stay counted as absorbed)",
            self.slot.index + 1,
            self.slot.count
        ))
    }

    /// Calls an aggregate's `tick` or `flush` and returns what it emitted, as a batch from
    /// the stage (its source is the stage's name), or `None` when it emitted nothing. A failed
    /// call or a violating answer loses the instance's state (counted and logged) and emits
    /// nothing.
    pub fn emit(&mut self, call: Emitting) -> Option<Batch> {
        if self.plugin.kind() != PluginKind::Aggregate {
            return None;
        }
        // An instance that was lost (its replacement starts with the next batch) holds nothing
        // to emit: no instance is made just for a tick or a flush.
        self.instance.as_ref()?;
        let budget = self.cfg.answer_bytes_max;
        let fuel = budget.saturating_add(OUTPUT_FIXED_FUEL + 4096);
        let timeout = self.cfg.timeout;
        let result = match self.instance() {
            Err(f) => Err(f.message),
            Ok(inst) => {
                inst.store.set_epoch_deadline(ticks(timeout));
                inst.store
                    .set_hostcall_fuel(usize::try_from(fuel).unwrap_or(usize::MAX));
                inst.store.data_mut().limiter.hit = false;
                let Bound::Aggregate(b) = &inst.bound else {
                    return None;
                };
                let answer = match call {
                    Emitting::Tick(now) => b.call_tick(&mut inst.store, now),
                    Emitting::Flush => b.call_flush(&mut inst.store),
                };
                let memory_hit = inst.store.data().limiter.hit;
                answer.map(lifted).map_err(|e| {
                    if is_fuel_exhausted(&e) {
                        self.counters()
                            .plugin_contract_violations
                            .fetch_add(1, Ordering::Relaxed);
                        format!(
                            "contract violation: the answer exceeded answer_bytes_max ({budget} bytes)"
                        )
                    } else if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt)
                    {
                        self.counters()
                            .plugin_timeouts
                            .fetch_add(1, Ordering::Relaxed);
                        format!("the plugin ran longer than {} ms", timeout.as_millis())
                    } else if memory_hit {
                        self.counters()
                            .plugin_memory_limit_hits
                            .fetch_add(1, Ordering::Relaxed);
                        format!(
                            "the plugin needed more than {} bytes of memory",
                            self.cfg.memory_max_bytes
                        )
                    } else {
                        self.counters().plugin_traps.fetch_add(1, Ordering::Relaxed);
                        format!("the plugin trapped: {}", trap_summary(&e))
                    }
                })
            }
        };
        let what = match call {
            Emitting::Tick(_) => "tick",
            Emitting::Flush => "flush",
        };
        let outputs = result.and_then(|o| {
            let checked = o
                .check(OUTPUTS_PER_TICK_MAX, self.destination_masks.len())
                .map_err(answer::Violation::from)
                .and_then(|()| {
                    if o.kept_bytes() > budget {
                        Err(answer::Violation::TooLarge {
                            limit: self.cfg.answer_bytes_max,
                        })
                    } else {
                        Ok(())
                    }
                });
            match checked {
                Ok(()) => Ok(o),
                Err(v) => Err(self.violation(v).message),
            }
        });
        let outputs = match outputs {
            Ok(o) => o,
            Err(message) => {
                let lost = self.lose_instance();
                self.guard.warn(|| {
                    format!(
                        "the aggregate's {what} failed: {message}{}",
                        lost.unwrap_or_default()
                    )
                });
                return None;
            }
        };
        if outputs.is_empty() {
            return None;
        }
        let mut emit = Emit::new(&self.destination_masks, self.default_mask);
        push_outputs(&mut emit, &outputs);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let origin = Origin {
            source: Arc::from(self.guard.name()),
            arrival_unix_nanos: now,
            arrival: Instant::now(),
            position: PositionBase::None,
        };
        Some(emit.finish(origin, None))
    }

    fn violation(&self, v: answer::Violation) -> Failure {
        self.counters()
            .plugin_contract_violations
            .fetch_add(1, Ordering::Relaxed);
        Failure {
            kind: FailureKind::Violation,
            message: format!("contract violation: {v}"),
        }
    }
}

/// Hostcall fuel beyond `answer_bytes_max` for a `tick` or `flush` answer: its fixed-size parts
/// (end offsets, meta entries) for up to [`OUTPUTS_PER_TICK_MAX`] outputs.
const OUTPUT_FIXED_FUEL: u64 = 64 * OUTPUTS_PER_TICK_MAX as u64;

/// A 0.2 answer's outputs as the router keeps them.
fn lifted(o: types02::Outputs) -> Outputs {
    Outputs {
        data: o.data,
        ends: o.ends,
        meta: o
            .meta
            .into_iter()
            .map(|m| OutputMeta {
                output: m.output,
                partition_key: m.partition_key,
                explicit_hash_key: m.explicit_hash_key,
                attributes: m.attributes,
                destinations: m.destinations,
            })
            .collect(),
    }
}

/// A 0.2 answer's record errors, with messages made safe to keep.
fn errors02(v: Vec<types02::RecordError>) -> Vec<RecordError> {
    v.into_iter()
        .map(|e| RecordError::new(e.index, &e.message))
        .collect()
}

/// Adds every output of an aggregate's `outputs` (made from its state, not from an input) to
/// `emit`.
fn push_outputs(emit: &mut Emit<'_>, outputs: &Outputs) {
    let mut meta = outputs.meta.iter().peekable();
    for k in 0..outputs.len() {
        match meta.next_if(|m| m.output as usize == k) {
            None => emit.push_plain_output(outputs, k),
            set => emit.push_output(outputs, k, set, None),
        }
    }
}

/// One batch's calls, as the driver makes them.
struct BatchCalls<'a> {
    stage: &'a mut WasmStage,
    batch: &'a Batch,
    verdicts: &'a mut [Verdict],
    kept: &'a mut Kept,
}

impl Calls for BatchCalls<'_> {
    type Answer = Answer;

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn call(&mut self, range: Range<usize>) -> Result<Answer, Failure> {
        self.stage.call(self.batch, range, self.kept.plugin_bytes)
    }

    fn answered(&mut self, range: Range<usize>, answer: Answer) {
        let errors = self.kept.apply(range, answer, self.verdicts);
        self.stage
            .counters()
            .plugin_record_errors
            .fetch_add(errors, Ordering::Relaxed);
    }

    fn failed(&mut self, range: Range<usize>, reason: String) {
        let v = self.kept.error(reason);
        if let Some(vs) = self.verdicts.get_mut(range) {
            vs.fill(v);
        }
    }

    fn tripped(&mut self, failures: u32, cooldown: Duration, last: &Failure) {
        let g = &self.stage.guard;
        g.counters()
            .plugin_breaker_trips
            .fetch_add(1, Ordering::Relaxed);
        g.set_breaker_open(true);
        let stage = g.name();
        tracing::warn!(
            stage,
            "stage `{stage}` tripped: {failures} failed plugin calls without a healthy range \
                 (last: {}); its records follow on_error = {} for {:.1} s, then one probe call \
                 of at most {} records",
            last.message,
            self.stage.cfg.on_error.name(),
            cooldown.as_secs_f64(),
            driver::PROBE_RECORDS
        );
    }

    fn resumed(&mut self) {
        let g = &self.stage.guard;
        g.set_breaker_open(false);
        let stage = g.name();
        tracing::info!(stage, "stage `{stage}` resumed: a plugin call succeeded");
    }
}

impl Stage for WasmStage {
    fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    fn process(&mut self, batch: &mut Batch, dead: &mut Vec<DeadLetter>) -> Result<(), StageError> {
        // Taken out of `self` for the batch (the calls borrow `self` mutably), put back after.
        let mut verdicts = std::mem::take(&mut self.verdicts);
        let mut kept = std::mem::take(&mut self.kept);
        verdicts.clear();
        verdicts.resize(batch.len(), Verdict::Keep);
        kept.clear();
        let ranges = driver::ranges(
            batch.spans(),
            self.cfg.batch_records_max,
            self.cfg.batch_bytes_max,
        );
        let guard = self.guard.clone();
        let isolate = self.cfg.isolate_failed_calls_max;
        driver::run(
            ranges,
            &mut BatchCalls {
                stage: self,
                batch,
                verdicts: &mut verdicts,
                kept: &mut kept,
            },
            &guard.breaker,
            isolate,
        );
        guard.summarize_logs(Instant::now());
        let result = self.decide(batch, &mut verdicts, &kept, dead);
        self.verdicts = verdicts;
        self.kept = kept;
        result
    }
}

impl WasmStage {
    /// Applies the error policy to the verdicts, then the verdicts to the batch.
    fn decide(
        &mut self,
        batch: &mut Batch,
        verdicts: &mut [Verdict],
        kept: &Kept,
        dead: &mut Vec<DeadLetter>,
    ) -> Result<(), StageError> {
        let name = self.guard.name();
        if !kept.messages.is_empty() {
            // Errors follow the stage's policy.
            let mut dead_idx = Vec::new();
            for (i, v) in verdicts.iter_mut().enumerate() {
                if let Verdict::Error(m) = *v {
                    match self.cfg.on_error {
                        OnError::DeadLetter => dead_idx.push(i),
                        OnError::Drop => *v = Verdict::Drop,
                        OnError::Pass => *v = Verdict::Keep,
                        OnError::Fail => {
                            return Err(StageError(format!(
                                "stage `{name}` (on_error = \"fail\"): record {}: {}",
                                i + 1,
                                kept.message(m)
                            )));
                        }
                    }
                }
            }
            if !dead_idx.is_empty() {
                let positions = batch.positions(&dead_idx);
                for (&i, position) in dead_idx.iter().zip(positions) {
                    let Verdict::Error(m) = verdicts[i] else {
                        continue;
                    };
                    let reason = format!("stage `{name}`: {}", kept.message(m));
                    dead.push(DeadLetter::of_record(batch, i, position, reason));
                }
            }
        }
        match self.plugin.kind() {
            PluginKind::Filter => {
                if verdicts.iter().any(|v| !matches!(v, Verdict::Keep)) {
                    batch.retain_by(|i| matches!(verdicts.get(i), Some(Verdict::Keep) | None));
                }
            }
            PluginKind::Route => {
                // Destination indices were checked against the names `init` returned.
                let masks: Vec<u64> = verdicts
                    .iter()
                    .map(|v| match v {
                        Verdict::RouteTo(Some(d)) => self
                            .destination_masks
                            .get(*d as usize)
                            .copied()
                            .unwrap_or(0),
                        Verdict::Error(_) | Verdict::Drop => 0,
                        _ => self.default_mask,
                    })
                    .collect();
                let keep: Vec<bool> = masks.iter().map(|&m| m != 0).collect();
                batch.set_routes(masks);
                batch.retain_mask(&keep);
            }
            PluginKind::Transform | PluginKind::Aggregate => {
                let (out, tally) = self.emitted(batch, verdicts, kept);
                self.tally = tally;
                *batch = out;
            }
            PluginKind::Enrich => {
                let keep: Vec<bool> = verdicts
                    .iter()
                    .map(|v| !matches!(v, Verdict::Error(_) | Verdict::Drop))
                    .collect();
                if verdicts
                    .iter()
                    .any(|v| matches!(v, Verdict::Replace { .. }))
                {
                    *batch = rebuilt(batch, verdicts, kept);
                }
                batch.retain_mask(&keep);
            }
        }
        Ok(())
    }
}

impl WasmStage {
    /// The batch a transform or aggregate passes on for `batch`, and what it created and
    /// absorbed: inputs passed on (`on_error = "pass"`) and each input's outputs in input
    /// order, then (aggregate) the records emitted by each call in call order.
    fn emitted(&self, batch: &Batch, verdicts: &[Verdict], kept: &Kept) -> (Batch, Tally) {
        let mut emit = Emit::new(&self.destination_masks, self.default_mask);
        // Every output is passed on (inputs passed on under `on_error = "pass"` may add more).
        let (bytes, records) = kept
            .calls
            .iter()
            .fold((0, 0), |(b, r), o| (b + o.data.len(), r + o.len()));
        emit.reserve(bytes, records);
        // Inputs without metadata or routes give their outputs nothing to start from.
        let plain = batch.metadata().is_none() && batch.routes().is_none();
        let mut tally = Tally::default();
        let mut passed = false;
        for (i, v) in verdicts.iter().enumerate() {
            match *v {
                Verdict::Keep => {
                    emit.push_input(batch, i);
                    passed = true;
                }
                Verdict::Outputs { call, first, count } => {
                    let Some(outputs) = kept.calls.get(call as usize) else {
                        continue;
                    };
                    let first = first as usize;
                    tally.created += u64::from(count.saturating_sub(1));
                    passed = true;
                    // `meta` is strictly ascending by output (checked): a binary search, not a
                    // scan from the start for every input.
                    let from = outputs
                        .meta
                        .partition_point(|m| (m.output as usize) < first);
                    let mut meta = outputs.meta[from..].iter().peekable();
                    for k in first..first + count as usize {
                        match meta.next_if(|m| m.output as usize == k) {
                            None if plain => emit.push_plain_output(outputs, k),
                            set => emit.push_output(outputs, k, set, Some((batch, i))),
                        }
                    }
                }
                Verdict::Absorbed => tally.absorbed += 1,
                _ => {}
            }
        }
        if self.plugin.kind() == PluginKind::Aggregate {
            for outputs in &kept.calls {
                push_outputs(&mut emit, outputs);
                tally.created += outputs.len() as u64;
            }
        }
        // Records that came from inputs keep the inputs' hold (a network client's `delivered`
        // waits for them); an aggregate's emitted records alone do not: absorbed inputs are done.
        let hold = if passed { batch.hold().cloned() } else { None };
        (emit.finish(batch.origin().clone(), hold), tally)
    }
}

/// A copy of `batch` with replaced payloads, in one new chunk.
fn rebuilt(batch: &Batch, verdicts: &[Verdict], kept: &Kept) -> Batch {
    let mut data = Vec::with_capacity(batch.data().len() + kept.plugin_bytes as usize);
    let mut spans = Vec::with_capacity(batch.len());
    for (i, v) in verdicts.iter().enumerate() {
        let start = data.len() as u32;
        match kept.replacement(v) {
            Some(p) => data.extend_from_slice(p),
            None => data.extend_from_slice(batch.payload(i)),
        }
        spans.push(Span {
            start,
            end: data.len() as u32,
        });
        data.push(b'\n');
    }
    let mut origin = batch.origin().clone();
    // Positions can no longer be counted from the new chunk.
    origin.position = crate::core::record::PositionBase::None;
    let mut b = Batch::new(Bytes::from(data), spans, origin);
    if batch.meta(0).is_some() {
        let meta = (0..batch.len())
            .map(|i| batch.meta(i).cloned().unwrap_or_default())
            .collect();
        b = b.with_meta(meta);
    }
    if let Some(routes) = batch.routes() {
        b.set_routes(routes.to_vec());
    }
    if let Some(hold) = batch.hold() {
        b = b.with_hold(hold.clone());
    }
    b
}
