//! A test transform (contract 0.2) that answers through the raw bindings, so it can also break
//! the contract on purpose. The config is one mode name (JSON string):
//!
//! - `"merge-pairs"`: records `2j` and `2j+1` of a call become one output `[a,b]` (from record
//!   `2j+1`, record `2j` listed in `merged`); an odd last record passes alone. Many-to-one.
//! - `"input-past-end"`: one output naming the record past the call's last.
//! - `"backwards"`: two outputs, from records 1 then 0.
//! - `"too-many"`: 1,025 outputs for record 0.
//! - `"bad-destination"`: an output for destination 3 (init returns one name, `out`).
//! - `"empty-key"`: an output with an empty partition key.
//! - `"output-and-error"`: an output for record 0, which is also in `errors`.
//! - `"ends-short"`: end offsets that do not cover the data.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::cell::Cell;

use edge_router_plugin::transform_world::edge_router::plugin::types::{
    Batch, InitAnswer, InitContext, OutputMeta, Outputs, RecordError,
};
use edge_router_plugin::transform_world::{Guest, TransformResult};

thread_local! {
    static MODE: Cell<u8> = const { Cell::new(0) };
}

const MODES: [&str; 8] = [
    "merge-pairs",
    "input-past-end",
    "backwards",
    "too-many",
    "bad-destination",
    "empty-key",
    "output-and-error",
    "ends-short",
];

struct Probe;

fn one_output(data: &[u8], input: u32, meta: Vec<OutputMeta>) -> TransformResult {
    TransformResult {
        outputs: Outputs {
            data: data.to_vec(),
            ends: vec![data.len() as u32],
            meta,
        },
        inputs: vec![input],
        merged: vec![],
        errors: vec![],
    }
}

fn meta(destinations: Vec<u32>, partition_key: Option<String>) -> Vec<OutputMeta> {
    vec![OutputMeta {
        output: 0,
        partition_key,
        explicit_hash_key: None,
        attributes: vec![],
        destinations,
    }]
}

impl Guest for Probe {
    fn init(config: String, _ctx: InitContext) -> Result<InitAnswer, String> {
        let mode = config.trim().trim_matches('"');
        let m = MODES
            .iter()
            .position(|&x| x == mode)
            .ok_or_else(|| format!("unknown mode {mode:?}; modes: {}", MODES.join(", ")))?;
        MODE.with(|c| c.set(m as u8));
        Ok(InitAnswer {
            destinations: vec!["out".to_owned()],
            wants_metadata: false,
        })
    }

    fn transform(b: Batch) -> TransformResult {
        let n = (b.spans.len() / 2) as u32;
        let payload = |i: u32| {
            let (s, e) = (b.spans[2 * i as usize], b.spans[2 * i as usize + 1]);
            &b.data[s as usize..e as usize]
        };
        match MODE.with(Cell::get) {
            0 => {
                let mut r = TransformResult {
                    outputs: Outputs {
                        data: vec![],
                        ends: vec![],
                        meta: vec![],
                    },
                    inputs: vec![],
                    merged: vec![],
                    errors: vec![],
                };
                let mut i = 0;
                while i < n {
                    let out = &mut r.outputs.data;
                    if i + 1 < n {
                        out.push(b'[');
                        out.extend_from_slice(payload(i));
                        out.push(b',');
                        out.extend_from_slice(payload(i + 1));
                        out.push(b']');
                        r.merged.push(i);
                        r.inputs.push(i + 1);
                    } else {
                        out.extend_from_slice(payload(i));
                        r.inputs.push(i);
                    }
                    r.outputs.ends.push(out.len() as u32);
                    i += 2;
                }
                r
            }
            1 => one_output(b"x", n, vec![]),
            2 => TransformResult {
                outputs: Outputs {
                    data: b"ab".to_vec(),
                    ends: vec![1, 2],
                    meta: vec![],
                },
                inputs: vec![1, 0],
                merged: vec![],
                errors: vec![],
            },
            3 => TransformResult {
                outputs: Outputs {
                    data: vec![b'x'; 1025],
                    ends: (1..=1025).collect(),
                    meta: vec![],
                },
                inputs: vec![0; 1025],
                merged: vec![],
                errors: vec![],
            },
            4 => one_output(b"x", 0, meta(vec![3], None)),
            5 => one_output(b"x", 0, meta(vec![], Some(String::new()))),
            6 => TransformResult {
                errors: vec![RecordError {
                    index: 0,
                    message: "bad".to_owned(),
                }],
                ..one_output(b"x", 0, vec![])
            },
            _ => TransformResult {
                outputs: Outputs {
                    data: b"xyz".to_vec(),
                    ends: vec![2],
                    meta: vec![],
                },
                inputs: vec![0],
                merged: vec![],
                errors: vec![],
            },
        }
    }
}

edge_router_plugin::transform_world::export_transform_world!(Probe);
