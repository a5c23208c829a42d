//! Contract 0.2 (`edge-router:plugin@0.2.0`): the [`Transform`](crate::Transform) and
//! [`Aggregate`](crate::Aggregate) stages' outputs ([`Emitter`], [`Output`]), what their `init`
//! answers ([`Setup`]), input metadata ([`Meta`]), and the glue the export macros call.

use crate::glue::{BatchView, NOT_READY, set_state, with_state};
use crate::{Absorbed, Aggregate, Context, Transform};

/// What a 0.2 stage's `init` tells the router besides success.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    /// Destination names (sinks of the router's config) that outputs may name by index with
    /// [`Output::destination`]; at most 64.
    pub destinations: Vec<String>,
    /// Whether records should carry their metadata ([`Emitter::input_meta`]). Costs a little per
    /// record; leave it off unless the stage reads keys or attributes.
    pub wants_metadata: bool,
}

/// Metadata of an input record (when [`Setup::wants_metadata`] asked for it; read it with
/// [`Emitter::input_meta`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// The record's partition key.
    pub partition_key: Option<String>,
    /// Its explicit hash key (decimal).
    pub explicit_hash_key: Option<String>,
    /// Its attributes, in order.
    pub attributes: Vec<(String, String)>,
}

impl Meta {
    /// The value of attribute `name`, if the record has it.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What is set on one output (see the contract's `output-meta`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputMeta {
    /// Index of the output.
    pub output: u32,
    /// Partition key.
    pub partition_key: Option<String>,
    /// Explicit hash key (decimal).
    pub explicit_hash_key: Option<String>,
    /// Attributes to set.
    pub attributes: Vec<(String, String)>,
    /// Destination indices.
    pub destinations: Vec<u32>,
}

/// Collects a call's output records: payloads back to back, end offsets, sparse metadata, and
/// (for transforms) the input each came from.
#[derive(Debug, Default)]
pub struct Emitter {
    /// Payloads back to back.
    pub data: Vec<u8>,
    /// One end offset per output.
    pub ends: Vec<u32>,
    /// Metadata of the outputs that set any, ascending.
    pub meta: Vec<OutputMeta>,
    /// Per output, the input record it came from (transforms).
    pub inputs: Vec<u32>,
    /// Inputs merged into another's output (transforms).
    pub merged: Vec<u32>,
    current: u32,
    current_meta: Option<Meta>,
}

impl Emitter {
    /// Adds an output record with `payload`; set its key, attributes or destinations on the
    /// [`Output`] returned.
    pub fn emit(&mut self, payload: &[u8]) -> Output<'_> {
        self.emit_with(|buf| buf.extend_from_slice(payload))
    }

    /// Adds an output record whose payload `write` appends to the buffer it is given (no copy
    /// of its own).
    pub fn emit_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Output<'_> {
        write(&mut self.data);
        self.ends.push(self.data.len() as u32);
        self.inputs.push(self.current);
        let index = self.ends.len() as u32 - 1;
        Output {
            emitter: self,
            index,
        }
    }

    /// Transforms: says the record in hand went into another record's output (many-to-one):
    /// it has no output of its own and counts as absorbed, not dropped.
    pub fn merged(&mut self) {
        if self.merged.last() != Some(&self.current) {
            self.merged.push(self.current);
        }
    }

    /// The metadata of the record in hand, when the stage's [`Setup::wants_metadata`] asked
    /// for it (else `None`).
    pub fn input_meta(&self) -> Option<&Meta> {
        self.current_meta.as_ref()
    }

    /// Outputs so far.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True with no outputs.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Forgets everything (the buffers are kept for the next call).
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.meta.clear();
        self.inputs.clear();
        self.merged.clear();
        self.current = 0;
        self.current_meta = None;
    }

    /// Where the outputs stand, to go back to with [`Emitter::rewind`].
    fn mark(&self) -> (usize, usize, usize, usize) {
        (
            self.data.len(),
            self.ends.len(),
            self.meta.len(),
            self.merged.len(),
        )
    }

    /// Takes back what was emitted since `mark`.
    fn rewind(&mut self, (data, ends, meta, merged): (usize, usize, usize, usize)) {
        self.data.truncate(data);
        self.ends.truncate(ends);
        self.inputs.truncate(ends);
        self.meta.truncate(meta);
        self.merged.truncate(merged);
    }

    /// The payload of output `k`.
    pub fn payload(&self, k: usize) -> &[u8] {
        let start = if k == 0 { 0 } else { self.ends[k - 1] as usize };
        &self.data[start..self.ends[k] as usize]
    }

    /// The metadata set on output `k`, if any.
    pub fn meta_of(&self, k: usize) -> Option<&OutputMeta> {
        self.meta.iter().find(|m| m.output as usize == k)
    }
}

/// One output just emitted: set what it should carry.
pub struct Output<'e> {
    emitter: &'e mut Emitter,
    index: u32,
}

impl Output<'_> {
    fn meta(&mut self) -> &mut OutputMeta {
        let index = self.index;
        let metas = &mut self.emitter.meta;
        if metas.last().is_none_or(|m| m.output != index) {
            metas.push(OutputMeta {
                output: index,
                ..OutputMeta::default()
            });
        }
        let last = metas.len() - 1;
        &mut metas[last]
    }

    /// Sets its partition key (1 to 256 characters).
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.meta().partition_key = Some(key.into());
        self
    }

    /// Sets its explicit hash key (a decimal number below 2^128).
    pub fn explicit_hash_key(mut self, key: impl Into<String>) -> Self {
        self.meta().explicit_hash_key = Some(key.into());
        self
    }

    /// Sets an attribute (replacing the input's of the same name).
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta().attributes.push((name.into(), value.into()));
        self
    }

    /// Adds destination `index` (into [`Setup::destinations`]); several are allowed.
    pub fn destination(mut self, index: u32) -> Self {
        let m = self.meta();
        if !m.destinations.contains(&index) {
            m.destinations.push(index);
        }
        self
    }
}

/// A transform call's answer, before it is put into the world's types.
#[derive(Debug, Default)]
pub struct TransformOut {
    /// The outputs.
    pub out: Emitter,
    /// Errors by input index.
    pub errors: Vec<(u32, String)>,
}

/// Runs `transform` over a batch; a record's outputs are taken back if it returns an error.
pub fn transform_view<T: Transform>(view: &BatchView<'_>, metas: &[Meta]) -> TransformOut {
    let n = view.len();
    let mut answer = TransformOut::default();
    let done = with_state::<T, _>(|t| {
        for i in 0..n {
            answer.out.current = i as u32;
            answer.out.current_meta = metas.get(i).cloned();
            let mark = answer.out.mark();
            let result = view
                .record(i)
                .and_then(|r| t.transform(&r, &mut answer.out));
            if let Err(e) = result {
                answer.out.rewind(mark);
                answer.errors.push((i as u32, e));
            }
        }
    });
    if done.is_none() {
        answer.out.clear();
        answer.errors = (0..n as u32).map(|i| (i, NOT_READY.to_owned())).collect();
    }
    answer
}

/// An aggregate's answer to `process`, before it is put into the world's types.
#[derive(Debug, Default)]
pub struct ProcessOut {
    /// Records emitted.
    pub out: Emitter,
    /// Inputs dropped.
    pub dropped: Vec<u32>,
    /// Errors by input index.
    pub errors: Vec<(u32, String)>,
}

/// Runs `process` over a batch.
pub fn process_view<T: Aggregate>(view: &BatchView<'_>, metas: &[Meta]) -> ProcessOut {
    let n = view.len();
    let mut answer = ProcessOut::default();
    let done = with_state::<T, _>(|t| {
        for i in 0..n {
            answer.out.current_meta = metas.get(i).cloned();
            let mark = answer.out.mark();
            let result = view.record(i).and_then(|r| t.process(&r, &mut answer.out));
            match result {
                Ok(Absorbed::Yes) => {}
                Ok(Absorbed::Dropped) => answer.dropped.push(i as u32),
                Err(e) => {
                    answer.out.rewind(mark);
                    answer.errors.push((i as u32, e));
                }
            }
        }
    });
    if done.is_none() {
        answer.out.clear();
        answer.errors = (0..n as u32).map(|i| (i, NOT_READY.to_owned())).collect();
    }
    answer
}

/// Runs `tick`.
pub fn tick_view<T: Aggregate>(now_unix_nanos: u64) -> Emitter {
    let mut out = Emitter::default();
    with_state::<T, _>(|t| t.tick(now_unix_nanos, &mut out));
    out
}

/// Runs `flush`.
pub fn flush_view<T: Aggregate>() -> Emitter {
    let mut out = Emitter::default();
    with_state::<T, _>(|t| t.flush(&mut out));
    out
}

/// `init` of a transform.
pub fn init_transform<T: Transform>(config: &str, ctx: &Context) -> Result<Setup, String> {
    let (stage, setup) = T::init(config, ctx)?;
    set_state(stage);
    Ok(setup)
}

/// `init` of an aggregate.
pub fn init_aggregate<T: Aggregate>(config: &str, ctx: &Context) -> Result<Setup, String> {
    let (stage, setup) = T::init(config, ctx)?;
    set_state(stage);
    Ok(setup)
}

/// Glue for the generated bindings (called from the export macros).
pub mod wit {
    use super::*;
    use crate::aggregate_world as aw;
    use crate::glue::view_of;
    use crate::transform_world as tw;
    use tw::edge_router::plugin::types as t;

    fn context(ctx: t::InitContext) -> Context {
        Context {
            stage_name: ctx.stage_name,
            host_name: ctx.host_name,
            instances: ctx.instances,
            instance: ctx.instance,
        }
    }

    fn answer(s: Setup) -> t::InitAnswer {
        t::InitAnswer {
            destinations: s.destinations,
            wants_metadata: s.wants_metadata,
        }
    }

    fn metas(m: Vec<t::RecordMeta>) -> Vec<Meta> {
        m.into_iter()
            .map(|m| Meta {
                partition_key: m.partition_key,
                explicit_hash_key: m.explicit_hash_key,
                attributes: m.attributes,
            })
            .collect()
    }

    fn outputs(e: Emitter) -> (t::Outputs, Vec<u32>, Vec<u32>) {
        let meta = e
            .meta
            .into_iter()
            .map(|m| t::OutputMeta {
                output: m.output,
                partition_key: m.partition_key,
                explicit_hash_key: m.explicit_hash_key,
                attributes: m.attributes,
                destinations: m.destinations,
            })
            .collect();
        (
            t::Outputs {
                data: e.data,
                ends: e.ends,
                meta,
            },
            e.inputs,
            e.merged,
        )
    }

    fn errors(v: Vec<(u32, String)>) -> Vec<t::RecordError> {
        v.into_iter()
            .map(|(index, message)| t::RecordError { index, message })
            .collect()
    }

    /// `init` export of the transform world.
    pub fn transform_init<T: Transform>(
        config: String,
        ctx: t::InitContext,
    ) -> Result<t::InitAnswer, String> {
        init_transform::<T>(&config, &context(ctx)).map(answer)
    }

    /// `transform` export.
    pub fn transform_batch<T: Transform>(b: t::Batch) -> tw::TransformResult {
        let view = view_of(&b.data, &b.spans, &b.source, b.arrival_unix_nanos);
        let metas = metas(b.meta);
        let a = transform_view::<T>(&view, &metas);
        let (outputs, inputs, merged) = outputs(a.out);
        tw::TransformResult {
            outputs,
            inputs,
            merged,
            errors: errors(a.errors),
        }
    }

    /// `init` export of the aggregate world.
    pub fn aggregate_init<T: Aggregate>(
        config: String,
        ctx: t::InitContext,
    ) -> Result<t::InitAnswer, String> {
        init_aggregate::<T>(&config, &context(ctx)).map(answer)
    }

    /// `process` export.
    pub fn aggregate_process<T: Aggregate>(b: t::Batch) -> aw::ProcessResult {
        let view = view_of(&b.data, &b.spans, &b.source, b.arrival_unix_nanos);
        let metas = metas(b.meta);
        let a = process_view::<T>(&view, &metas);
        let (outputs, _, _) = outputs(a.out);
        aw::ProcessResult {
            outputs,
            dropped: a.dropped,
            errors: errors(a.errors),
        }
    }

    /// `tick` export.
    pub fn aggregate_tick<T: Aggregate>(now: u64) -> t::Outputs {
        outputs(tick_view::<T>(now)).0
    }

    /// `flush` export.
    pub fn aggregate_flush<T: Aggregate>() -> t::Outputs {
        outputs(flush_view::<T>()).0
    }
}
