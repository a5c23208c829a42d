//! Running a stage natively, for plugin authors' `cargo test`: the same glue the component
//! uses, without WebAssembly.

use crate::glue::{
    BatchView, enrich_view, filter_view, init_enrich, init_filter, init_route, route_view,
};
#[cfg(feature = "v0-2")]
pub use v02::*;

use crate::{Context, Enrich, Filter, Route};

fn ctx() -> Context {
    Context {
        stage_name: "test".to_owned(),
        host_name: "localhost".to_owned(),
        instances: 1,
        instance: 0,
    }
}

fn pack(payloads: &[&[u8]]) -> (Vec<u8>, Vec<u32>) {
    let mut data = Vec::new();
    let mut spans = Vec::new();
    for p in payloads {
        spans.push(data.len() as u32);
        data.extend_from_slice(p);
        spans.push(data.len() as u32);
        data.push(b'\n');
    }
    (data, spans)
}

/// A batch view over packed test payloads.
fn view<'a>(data: &'a [u8], spans: &'a [u32]) -> BatchView<'a> {
    view_at(data, spans, 0)
}

fn view_at<'a>(data: &'a [u8], spans: &'a [u32], arrival_unix_nanos: u64) -> BatchView<'a> {
    BatchView {
        data,
        spans,
        source: "test",
        arrival_unix_nanos,
    }
}

fn per_record<T>(
    n: usize,
    ok: impl Fn(usize) -> T,
    errors: Vec<(u32, String)>,
) -> Vec<Result<T, String>> {
    let mut out: Vec<Result<T, String>> = (0..n).map(|i| Ok(ok(i))).collect();
    for (i, e) in errors {
        if let Some(slot) = out.get_mut(i as usize) {
            *slot = Err(e);
        }
    }
    out
}

/// Initializes filter `T` with `config` and runs it over `payloads`: per record, keep or the
/// error message. `Err` if `init` fails.
pub fn filter<T: Filter>(
    config: &str,
    payloads: &[&[u8]],
) -> Result<Vec<Result<bool, String>>, String> {
    init_filter::<T>(config, &ctx())?;
    let (data, spans) = pack(payloads);
    let view = view(&data, &spans);
    let (keep, errors) = filter_view::<T>(&view);
    Ok(per_record(payloads.len(), |i| keep[i], errors))
}

/// Initializes enrich stage `T` and runs it: per record, the new payload (or the old one when
/// unchanged), or the error message.
pub fn enrich<T: Enrich>(
    config: &str,
    payloads: &[&[u8]],
) -> Result<Vec<Result<Vec<u8>, String>>, String> {
    init_enrich::<T>(config, &ctx())?;
    let (data, spans) = pack(payloads);
    let view = view(&data, &spans);
    let out = enrich_view::<T>(&view);
    let mut payload: Vec<Vec<u8>> = payloads.iter().map(|p| p.to_vec()).collect();
    let mut start = 0usize;
    for (k, &i) in out.changed.iter().enumerate() {
        let end = out.ends[k] as usize;
        payload[i as usize] = out.data[start..end].to_vec();
        start = end;
    }
    Ok(per_record(
        payloads.len(),
        |i| payload[i].clone(),
        out.errors,
    ))
}

/// Initializes route stage `T` and runs it: the destination names, and per record the chosen
/// name (`None` = default sinks) or the error message.
#[allow(clippy::type_complexity)]
pub fn route<T: Route>(
    config: &str,
    payloads: &[&[u8]],
) -> Result<(Vec<String>, Vec<Result<Option<String>, String>>), String> {
    let names = init_route::<T>(config, &ctx())?;
    let (data, spans) = pack(payloads);
    let view = view(&data, &spans);
    let (dest, errors) = route_view::<T>(&view);
    let named = per_record(
        payloads.len(),
        |i| dest[i].and_then(|d| names.get(d as usize).cloned()),
        errors,
    );
    Ok((names, named))
}

/// Running contract 0.2 stages natively (feature `v0-2`).
#[cfg(feature = "v0-2")]
mod v02 {
    use super::{ctx, pack, view, view_at};
    use crate::v02::{
        Emitter, Meta, OutputMeta, Setup, flush_view, init_aggregate, init_transform, process_view,
        tick_view, transform_view,
    };
    use crate::{Aggregate, Transform};

    /// One output of a 0.2 stage run natively.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Out {
        /// The input record it came from (transforms).
        pub input: Option<u32>,
        /// Its payload.
        pub payload: Vec<u8>,
        /// What the stage set on it (keys, attributes, destinations), if anything.
        pub meta: Option<OutputMeta>,
    }

    impl Out {
        /// The payload as text (lossy), for assertions.
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.payload).into_owned()
        }
    }

    fn outs(e: &Emitter, with_inputs: bool) -> Vec<Out> {
        (0..e.len())
            .map(|k| Out {
                input: with_inputs.then(|| e.inputs[k]),
                payload: e.payload(k).to_vec(),
                meta: e.meta_of(k).cloned(),
            })
            .collect()
    }

    /// What a transform run natively answered.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct TransformRun {
        /// What `init` answered.
        pub setup: Setup,
        /// The outputs, in input order.
        pub outputs: Vec<Out>,
        /// Inputs merged into another's output.
        pub merged: Vec<u32>,
        /// Errors by input index.
        pub errors: Vec<(u32, String)>,
    }

    /// Initializes transform `T` with `config` and runs it over `payloads` (records with `metas`,
    /// when given, one per payload). `Err` if `init` fails.
    pub fn transform<T: Transform>(
        config: &str,
        payloads: &[&[u8]],
        metas: &[Meta],
    ) -> Result<TransformRun, String> {
        let setup = init_transform::<T>(config, &ctx())?;
        let (data, spans) = pack(payloads);
        let answer = transform_view::<T>(&view(&data, &spans), metas);
        Ok(TransformRun {
            setup,
            outputs: outs(&answer.out, true),
            merged: answer.out.merged.clone(),
            errors: answer.errors,
        })
    }

    /// An aggregate stage running natively: `process`, `tick` and `flush` as the router calls them.
    pub struct AggregateRun<T: Aggregate> {
        /// What `init` answered.
        pub setup: Setup,
        _stage: std::marker::PhantomData<T>,
    }

    /// What one `process` call answered.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Processed {
        /// Records emitted.
        pub outputs: Vec<Out>,
        /// Inputs dropped.
        pub dropped: Vec<u32>,
        /// Errors by input index.
        pub errors: Vec<(u32, String)>,
    }

    impl<T: Aggregate> AggregateRun<T> {
        /// Initializes aggregate `T` with `config` (instance 0 of 1).
        pub fn new(config: &str) -> Result<AggregateRun<T>, String> {
            let setup = init_aggregate::<T>(config, &ctx())?;
            Ok(AggregateRun {
                setup,
                _stage: std::marker::PhantomData,
            })
        }

        /// Calls `process` on a batch of `payloads` that arrived at `arrival_unix_nanos`.
        pub fn process(&mut self, payloads: &[&[u8]], arrival_unix_nanos: u64) -> Processed {
            let (data, spans) = pack(payloads);
            let a = process_view::<T>(&view_at(&data, &spans, arrival_unix_nanos), &[]);
            Processed {
                outputs: outs(&a.out, false),
                dropped: a.dropped,
                errors: a.errors,
            }
        }

        /// Calls `tick(now)`.
        pub fn tick(&mut self, now_unix_nanos: u64) -> Vec<Out> {
            outs(&tick_view::<T>(now_unix_nanos), false)
        }

        /// Calls `flush()`.
        pub fn flush(&mut self) -> Vec<Out> {
            outs(&flush_view::<T>(), false)
        }
    }
}
