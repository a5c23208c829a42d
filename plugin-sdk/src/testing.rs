//! Running a stage natively, for plugin authors' `cargo test`: the same glue the component
//! uses, without WebAssembly.

use crate::glue::{
    BatchView, enrich_view, filter_view, init_enrich, init_filter, init_route, route_view,
};
use crate::{Context, Enrich, Filter, Route};

fn ctx() -> Context {
    Context {
        stage_name: "test".to_owned(),
        host_name: "localhost".to_owned(),
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
    BatchView {
        data,
        spans,
        source: "test",
        arrival_unix_nanos: 0,
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
