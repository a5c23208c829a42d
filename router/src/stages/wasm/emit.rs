//! [`Emit`]: the batch a 0.2 stage passes on, built from its inputs and the outputs of its
//! answers. Pure: no wasmtime here.
//!
//! An output's metadata starts as its input record's (a transform output) or empty (an
//! aggregate's), then takes what the answer set: a partition key or explicit hash key replaces
//! the input's, an attribute replaces the input's attribute of the same name or is added after
//! them, and destinations (when any) replace the input's route with the union of their sinks.

use std::sync::Arc;

use bytes::Bytes;

use super::outputs::{OutputMeta, Outputs};
use crate::core::record::{Batch, Hold, Origin, PositionBase, RecordMeta, Span};

/// Builds one batch of records, each a copy of an input record or an output of an answer.
///
/// The side tables (metadata, routes) are kept only from the first record that needs one: the
/// records before it had no metadata and the default route, which is what they get then. So
/// records without either cost no entries.
pub struct Emit<'a> {
    data: Vec<u8>,
    spans: Vec<Span>,
    /// Once `any_meta`, one entry per record (`None` for no metadata); empty before.
    meta: Vec<Option<RecordMeta>>,
    /// Once `any_routes`, one entry per record; empty before.
    routes: Vec<u64>,
    any_meta: bool,
    any_routes: bool,
    /// Sink mask of each destination name `init` returned.
    masks: &'a [u64],
    /// The sinks of a record without a route.
    default_mask: u64,
}

impl<'a> Emit<'a> {
    /// An empty batch to be, for a stage whose destinations have sink masks `masks` and whose
    /// records without a route go to `default_mask`.
    pub fn new(masks: &'a [u64], default_mask: u64) -> Emit<'a> {
        Emit {
            data: Vec::new(),
            spans: Vec::new(),
            meta: Vec::new(),
            routes: Vec::new(),
            any_meta: false,
            any_routes: false,
            masks,
            default_mask,
        }
    }

    /// Makes room for `records` more records of `bytes` payload bytes in all, so that building
    /// a batch of known size copies each payload once (no regrowing).
    pub fn reserve(&mut self, bytes: usize, records: usize) {
        self.data.reserve(bytes.saturating_add(records));
        self.spans.reserve(records);
    }

    /// Records so far.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True with no records.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    #[inline]
    fn push_payload(&mut self, payload: &[u8]) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(payload);
        self.spans.push(Span {
            start,
            end: self.data.len() as u32,
        });
        self.data.push(b'\n');
    }

    /// The route and metadata input `i` of `batch` has.
    fn base(&self, batch: &Batch, i: usize) -> (u64, Option<RecordMeta>) {
        let route = batch
            .routes()
            .and_then(|r| r.get(i).copied())
            .unwrap_or(self.default_mask);
        (route, batch.meta(i).cloned())
    }

    /// Adds output `k` of `outputs`, which sets nothing, for an input without metadata or a
    /// route (or for an aggregate's state): what [`Emit::push_output`] does then, without
    /// looking anything up.
    #[inline]
    pub fn push_plain_output(&mut self, outputs: &Outputs, k: usize) {
        self.push_payload(outputs.payload(k));
        if self.any_meta {
            self.meta.push(None);
        }
        if self.any_routes {
            self.routes.push(self.default_mask);
        }
    }

    /// Keeps routes from now on; the `before` records so far had the default route (any other
    /// would have started the table already).
    fn want_routes(&mut self, before: usize) {
        if !self.any_routes {
            self.any_routes = true;
            self.routes.clear();
            self.routes.resize(before, self.default_mask);
        }
    }

    /// Keeps metadata from now on; the `before` records so far had none.
    fn want_meta(&mut self, before: usize) {
        if !self.any_meta {
            self.any_meta = true;
            self.meta.clear();
            self.meta.resize(before, None);
        }
    }

    /// Passes input `i` of `batch` on unchanged.
    pub fn push_input(&mut self, batch: &Batch, i: usize) {
        let (route, meta) = self.base(batch, i);
        if batch.routes().is_some() {
            self.want_routes(self.spans.len());
        }
        self.push_payload(batch.payload(i));
        self.finish_record(route, meta, None);
    }

    /// Adds output `k` of `outputs`, which came from input `input` of `batch` (`None`: from an
    /// aggregate's state), with `meta` the answer's entry for it, if any.
    pub fn push_output(
        &mut self,
        outputs: &Outputs,
        k: usize,
        meta: Option<&OutputMeta>,
        input: Option<(&Batch, usize)>,
    ) {
        let (route, base) = match input {
            Some((batch, i)) => {
                if batch.routes().is_some() {
                    self.want_routes(self.spans.len());
                }
                self.base(batch, i)
            }
            None => (self.default_mask, None),
        };
        self.push_payload(outputs.payload(k));
        self.finish_record(route, base, meta);
    }

    /// Adds the side-table entries of the record just pushed.
    fn finish_record(&mut self, route: u64, base: Option<RecordMeta>, set: Option<&OutputMeta>) {
        let before = self.spans.len().saturating_sub(1);
        let mut route = route;
        let Some(set) = set else {
            if base.is_some() {
                self.want_meta(before);
            }
            if self.any_meta {
                self.meta.push(base);
            }
            if self.any_routes {
                self.routes.push(route);
            }
            return;
        };
        let mut meta = base.unwrap_or_default();
        {
            if let Some(k) = &set.partition_key {
                meta.partition_key = Some(Arc::from(k.as_str()));
            }
            if let Some(h) = &set.explicit_hash_key {
                meta.explicit_hash_key = Some(Arc::from(h.as_str()));
            }
            if !set.attributes.is_empty() {
                let mut attrs: Vec<(Box<str>, Box<str>)> = meta
                    .attributes
                    .iter()
                    .filter(|(name, _)| !set.attributes.iter().any(|(n, _)| **n == **name))
                    .cloned()
                    .collect();
                attrs.extend(
                    set.attributes
                        .iter()
                        .map(|(n, v)| (Box::from(n.as_str()), Box::from(v.as_str()))),
                );
                meta.attributes = Arc::from(attrs);
            }
            if !set.destinations.is_empty() {
                // Indices were checked against the names `init` returned.
                route = set
                    .destinations
                    .iter()
                    .filter_map(|&d| self.masks.get(d as usize))
                    .fold(0, |a, m| a | m);
                self.want_routes(before);
            }
        }
        let set_any = meta != RecordMeta::default();
        if set_any {
            self.want_meta(before);
        }
        if self.any_meta {
            self.meta.push(set_any.then_some(meta));
        }
        if self.any_routes {
            self.routes.push(route);
        }
    }

    /// The batch: with `origin` (its position no longer counts from the new chunk) and `hold`.
    pub fn finish(self, mut origin: Origin, hold: Option<Hold>) -> Batch {
        origin.position = PositionBase::None;
        let mut b = Batch::new(Bytes::from(self.data), self.spans, origin);
        if self.any_meta {
            b = b.with_meta(
                self.meta
                    .into_iter()
                    .map(Option::unwrap_or_default)
                    .collect(),
            );
        }
        if self.any_routes {
            b.set_routes(self.routes);
        }
        if let Some(hold) = hold {
            b = b.with_hold(hold);
        }
        b
    }
}

/// The records of `batches` in order, as one batch with `origin` (copied into one chunk; `None`
/// with no records); a record of a batch without routes goes to `default_mask` if another batch
/// has routes. The first hold found is kept (batches made from one input share it).
pub fn concat(batches: Vec<Batch>, origin: Origin, default_mask: u64) -> Option<Batch> {
    let mut batches: Vec<Batch> = batches.into_iter().filter(|b| !b.is_empty()).collect();
    if batches.len() <= 1 {
        return batches.pop();
    }
    let hold = batches.iter().find_map(|b| b.hold().cloned());
    let mut emit = Emit::new(&[], default_mask);
    for b in &batches {
        for i in 0..b.len() {
            emit.push_input(b, i);
        }
    }
    Some(emit.finish(origin, hold))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::time::Instant;

    fn origin() -> Origin {
        Origin {
            source: Arc::from("s"),
            arrival_unix_nanos: 1,
            arrival: Instant::now(),
            position: PositionBase::Line(1),
        }
    }

    #[test]
    fn outputs_take_the_input_metadata_then_what_the_answer_sets() {
        let input = Batch::new(
            Bytes::from_static(b"a\nb\n"),
            vec![Span { start: 0, end: 1 }, Span { start: 2, end: 3 }],
            origin(),
        )
        .with_meta(vec![
            RecordMeta {
                partition_key: Some(Arc::from("p0")),
                explicit_hash_key: None,
                attributes: Arc::from(vec![
                    (Box::from("x"), Box::from("1")),
                    (Box::from("y"), Box::from("2")),
                ]),
            },
            RecordMeta::default(),
        ]);
        let outputs = Outputs {
            data: b"AB1B2".to_vec(),
            ends: vec![1, 3, 5],
            meta: vec![],
        };
        let set = OutputMeta {
            output: 0,
            partition_key: Some("k".into()),
            explicit_hash_key: Some("7".into()),
            attributes: vec![("y".into(), "3".into()), ("z".into(), "4".into())],
            destinations: vec![1],
        };
        let masks = [0b01, 0b10];
        let mut e = Emit::new(&masks, 0b01);
        e.push_output(&outputs, 0, Some(&set), Some((&input, 0)));
        e.push_output(&outputs, 1, None, Some((&input, 1)));
        e.push_output(&outputs, 2, None, None);
        e.push_input(&input, 1);
        let b = e.finish(origin(), None);
        assert_eq!(b.len(), 4);
        let payloads: Vec<&[u8]> = (0..4).map(|i| b.payload(i)).collect();
        assert_eq!(payloads, [&b"A"[..], b"B1", b"B2", b"b"]);
        let m0 = b.meta(0).unwrap();
        assert_eq!(m0.partition_key.as_deref(), Some("k"));
        assert_eq!(m0.explicit_hash_key.as_deref(), Some("7"));
        let attrs: Vec<(&str, &str)> = m0.attributes.iter().map(|(k, v)| (&**k, &**v)).collect();
        assert_eq!(attrs, [("x", "1"), ("y", "3"), ("z", "4")]);
        assert_eq!(b.meta(1), Some(&RecordMeta::default()));
        assert_eq!(b.routes(), Some(&[0b10, 0b01, 0b01, 0b01][..]));
        assert_eq!(b.origin().position, PositionBase::None);
    }

    #[test]
    fn concat_keeps_records_metadata_and_routes_in_order() {
        let a = Batch::new(
            Bytes::from_static(b"a\n"),
            vec![Span { start: 0, end: 1 }],
            origin(),
        );
        let mut b = Batch::new(
            Bytes::from_static(b"b\nc\n"),
            vec![Span { start: 0, end: 1 }, Span { start: 2, end: 3 }],
            origin(),
        )
        .with_shared_meta(RecordMeta {
            partition_key: Some(Arc::from("k")),
            ..RecordMeta::default()
        });
        b.set_routes(vec![2, 4]);
        let empty = Batch::new(Bytes::new(), vec![], origin());
        let c = concat(vec![a.clone(), empty.clone(), b], origin(), 1).unwrap();
        let payloads: Vec<&[u8]> = (0..3).map(|i| c.payload(i)).collect();
        assert_eq!(payloads, [&b"a"[..], b"b", b"c"]);
        assert_eq!(c.meta(0), Some(&RecordMeta::default()));
        assert_eq!(c.meta(2).unwrap().partition_key.as_deref(), Some("k"));
        // `a` had no routes: its record goes to the default sinks.
        assert_eq!(c.routes(), Some(&[1, 2, 4][..]));
        assert!(concat(vec![empty], origin(), 1).is_none());
        assert_eq!(concat(vec![a], origin(), 1).unwrap().payload(0), b"a");
    }

    #[test]
    fn side_tables_started_late_give_the_records_before_no_metadata_and_the_default_route() {
        let outputs = Outputs {
            data: b"abcd".to_vec(),
            ends: vec![1, 2, 3, 4],
            meta: vec![],
        };
        let set = OutputMeta {
            output: 2,
            partition_key: Some("k".into()),
            destinations: vec![1],
            ..OutputMeta::default()
        };
        let masks = [0b01, 0b10];
        let mut e = Emit::new(&masks, 0b100);
        e.push_output(&outputs, 0, None, None);
        e.push_output(&outputs, 1, None, None);
        e.push_output(&outputs, 2, Some(&set), None);
        e.push_output(&outputs, 3, None, None);
        let b = e.finish(origin(), None);
        assert_eq!(b.routes(), Some(&[0b100, 0b100, 0b10, 0b100][..]));
        let keys: Vec<Option<&str>> = (0..4)
            .map(|i| b.meta(i).unwrap().partition_key.as_deref())
            .collect();
        assert_eq!(keys, [None, None, Some("k"), None]);
        // Routes from a later input batch: the records before get the default.
        let plain = Batch::new(
            Bytes::from_static(b"a\n"),
            vec![Span { start: 0, end: 1 }],
            origin(),
        );
        let mut routed = plain.clone();
        routed.set_routes(vec![0b1000]);
        let c = concat(vec![plain.clone(), plain, routed], origin(), 0b100).unwrap();
        assert_eq!(c.routes(), Some(&[0b100, 0b100, 0b1000][..]));
        assert!(c.metadata().is_none());
    }

    #[test]
    fn without_keys_or_destinations_no_side_tables_are_made() {
        let outputs = Outputs {
            data: b"xy".to_vec(),
            ends: vec![1, 2],
            meta: vec![],
        };
        let mut e = Emit::new(&[], 1);
        e.push_output(&outputs, 0, None, None);
        e.push_output(&outputs, 1, None, None);
        let b = e.finish(origin(), None);
        assert!(b.metadata().is_none() && b.routes().is_none());
        assert_eq!(b.payload(1), b"y");
    }
}
