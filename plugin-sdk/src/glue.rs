//! Glue between the generated bindings and the [`Filter`], [`Enrich`] and [`Route`] traits:
//! turns a WIT batch into [`Record`]s, keeps the stage's state between calls, and packs the
//! answers. Called only from the `export_*!` macros.

use std::any::Any;
use std::cell::RefCell;

use crate::{Changed, Context, Enrich, Filter, Level, Record, Route};

thread_local! {
    /// The stage's state, built by `init`. A component instance runs one stage.
    static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

pub(crate) fn set_state<T: 'static>(value: T) {
    STATE.with(|s| *s.borrow_mut() = Some(Box::new(value)));
}

pub(crate) fn with_state<T: 'static, R>(f: impl FnOnce(&mut T) -> R) -> Option<R> {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.as_mut().and_then(|b| b.downcast_mut::<T>()).map(f)
    })
}

/// The parts of a batch, whatever world's type it came in.
pub struct BatchView<'a> {
    /// Payload bytes.
    pub data: &'a [u8],
    /// Start/end pairs.
    pub spans: &'a [u32],
    /// Source name.
    pub source: &'a str,
    /// Arrival time.
    pub arrival_unix_nanos: u64,
}

impl<'a> BatchView<'a> {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.spans.len() / 2
    }

    /// True when there are no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record `i`, or an error message when its span does not fit the data.
    #[inline]
    pub fn record(&self, i: usize) -> Result<Record<'a>, String> {
        let (s, e) = (self.spans[2 * i] as usize, self.spans[2 * i + 1] as usize);
        let payload = self
            .data
            .get(s..e)
            .ok_or_else(|| format!("record span {s}..{e} is outside the batch"))?;
        Ok(Record {
            payload,
            source: self.source,
            arrival_unix_nanos: self.arrival_unix_nanos,
        })
    }
}

pub(crate) const NOT_READY: &str = "the plugin was not initialized (init failed or was not called)";

fn context(stage_name: String, host_name: String) -> Context {
    Context {
        stage_name,
        host_name,
        instances: 1,
        instance: 0,
    }
}

/// Runs `keep` over a batch: one flag per record, errors with their index.
pub fn filter_view<T: Filter>(view: &BatchView<'_>) -> (Vec<bool>, Vec<(u32, String)>) {
    let n = view.len();
    let mut keep = Vec::with_capacity(n);
    let mut errors = Vec::new();
    let done = with_state::<T, _>(|f| {
        for i in 0..n {
            match view.record(i).and_then(|r| f.keep(&r)) {
                Ok(k) => keep.push(k),
                Err(e) => {
                    keep.push(false);
                    errors.push((i as u32, e));
                }
            }
        }
    });
    if done.is_none() {
        keep = vec![false; n];
        errors = (0..n as u32).map(|i| (i, NOT_READY.to_owned())).collect();
    }
    (keep, errors)
}

/// Runs `enrich` over a batch: changed indices, their payloads back to back, end offsets.
pub fn enrich_view<T: Enrich>(view: &BatchView<'_>) -> EnrichOut {
    let n = view.len();
    let mut out = EnrichOut::default();
    let mut scratch = Vec::new();
    let done = with_state::<T, _>(|f| {
        for i in 0..n {
            scratch.clear();
            match view.record(i).and_then(|r| f.enrich(&r, &mut scratch)) {
                Ok(Changed::No) => {}
                Ok(Changed::Yes) => {
                    out.changed.push(i as u32);
                    out.data.extend_from_slice(&scratch);
                    out.ends.push(out.data.len() as u32);
                }
                Err(e) => out.errors.push((i as u32, e)),
            }
        }
    });
    if done.is_none() {
        out.errors = (0..n as u32).map(|i| (i, NOT_READY.to_owned())).collect();
    }
    out
}

/// What an enrich call returns.
#[derive(Debug, Default)]
pub struct EnrichOut {
    /// Indices of changed records.
    pub changed: Vec<u32>,
    /// New payloads back to back.
    pub data: Vec<u8>,
    /// End offsets into `data`.
    pub ends: Vec<u32>,
    /// Errors.
    pub errors: Vec<(u32, String)>,
}

/// Runs `route` over a batch.
pub fn route_view<T: Route>(view: &BatchView<'_>) -> (Vec<Option<u32>>, Vec<(u32, String)>) {
    let n = view.len();
    let mut dest = Vec::with_capacity(n);
    let mut errors = Vec::new();
    let done = with_state::<T, _>(|f| {
        for i in 0..n {
            match view.record(i).and_then(|r| f.route(&r)) {
                Ok(d) => dest.push(d),
                Err(e) => {
                    dest.push(None);
                    errors.push((i as u32, e));
                }
            }
        }
    });
    if done.is_none() {
        dest = vec![None; n];
        errors = (0..n as u32).map(|i| (i, NOT_READY.to_owned())).collect();
    }
    (dest, errors)
}

/// `init` of a filter.
pub fn init_filter<T: Filter>(config: &str, ctx: &Context) -> Result<(), String> {
    set_state(T::init(config, ctx)?);
    Ok(())
}

/// `init` of an enrich stage.
pub fn init_enrich<T: Enrich>(config: &str, ctx: &Context) -> Result<(), String> {
    set_state(T::init(config, ctx)?);
    Ok(())
}

/// `init` of a route stage; returns its destination names.
pub fn init_route<T: Route>(config: &str, ctx: &Context) -> Result<Vec<String>, String> {
    let (stage, names) = T::init(config, ctx)?;
    set_state(stage);
    Ok(names)
}

pub(crate) fn view_of<'a>(
    data: &'a [u8],
    spans: &'a [u32],
    source: &'a str,
    arrival: u64,
) -> BatchView<'a> {
    BatchView {
        data,
        spans: &spans[..spans.len() & !1],
        source,
        arrival_unix_nanos: arrival,
    }
}

/// `init` export of the filter world.
pub fn filter_init<T: Filter>(
    config: String,
    ctx: crate::filter_world::edge_router::plugin::types::InitContext,
) -> Result<(), String> {
    init_filter::<T>(&config, &context(ctx.stage_name, ctx.host_name))
}

/// `filter` export.
pub fn filter_batch<T: Filter>(
    b: crate::filter_world::edge_router::plugin::types::Batch,
) -> crate::filter_world::FilterResult {
    let view = view_of(&b.data, &b.spans, &b.source, b.arrival_unix_nanos);
    let (keep, errors) = filter_view::<T>(&view);
    crate::filter_world::FilterResult {
        keep,
        errors: errors
            .into_iter()
            .map(
                |(index, message)| crate::filter_world::edge_router::plugin::types::RecordError {
                    index,
                    message,
                },
            )
            .collect(),
    }
}

/// `init` export of the enrich world.
pub fn enrich_init<T: Enrich>(
    config: String,
    ctx: crate::enrich_world::edge_router::plugin::types::InitContext,
) -> Result<(), String> {
    init_enrich::<T>(&config, &context(ctx.stage_name, ctx.host_name))
}

/// `enrich` export.
pub fn enrich_batch<T: Enrich>(
    b: crate::enrich_world::edge_router::plugin::types::Batch,
) -> crate::enrich_world::EnrichResult {
    let view = view_of(&b.data, &b.spans, &b.source, b.arrival_unix_nanos);
    let out = enrich_view::<T>(&view);
    crate::enrich_world::EnrichResult {
        changed: out.changed,
        data: out.data,
        ends: out.ends,
        errors: out
            .errors
            .into_iter()
            .map(
                |(index, message)| crate::enrich_world::edge_router::plugin::types::RecordError {
                    index,
                    message,
                },
            )
            .collect(),
    }
}

/// `init` export of the route world.
pub fn route_init<T: Route>(
    config: String,
    ctx: crate::route_world::edge_router::plugin::types::InitContext,
) -> Result<Vec<String>, String> {
    init_route::<T>(&config, &context(ctx.stage_name, ctx.host_name))
}

/// `route` export.
pub fn route_batch<T: Route>(
    b: crate::route_world::edge_router::plugin::types::Batch,
) -> crate::route_world::RouteResult {
    let view = view_of(&b.data, &b.spans, &b.source, b.arrival_unix_nanos);
    let (destinations, errors) = route_view::<T>(&view);
    crate::route_world::RouteResult {
        destinations,
        errors: errors
            .into_iter()
            .map(
                |(index, message)| crate::route_world::edge_router::plugin::types::RecordError {
                    index,
                    message,
                },
            )
            .collect(),
    }
}

/// Sends a log line to the host (stderr when not running as a component).
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::filter_world::edge_router::plugin::host;
        let level = match level {
            Level::Trace => host::Level::Trace,
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        };
        host::log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}
