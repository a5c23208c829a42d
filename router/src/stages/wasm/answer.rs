//! A plugin's answer for one call, checked against the contract and applied to the batch's
//! verdicts. Pure: no wasmtime here (the stage lifts the answer, within its byte budget, into
//! an [`Answer`]; everything after that is decided here and tested without a plugin).
//!
//! The rule (also written in `wit/plugin.wit`): an answer that breaks the contract in any way
//! is rejected whole — nothing of it is applied — and the call's records follow the stage's
//! `on_error` with a reason naming the [`Violation`].

use std::ops::Range;

use super::outputs::{OUTPUTS_PER_RECORD_MAX, OutputViolation, Outputs};
use crate::core::text::{MESSAGE_BYTES_MAX, clean};

/// A record the plugin reported an error for. The message is already cut and cleaned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// Index of the record in the call's range.
    pub index: u32,
    /// What the plugin said, cut to [`MESSAGE_BYTES_MAX`] with control characters escaped.
    pub message: String,
}

impl RecordError {
    /// A record error with the plugin's message made safe to keep.
    pub fn new(index: u32, message: &str) -> RecordError {
        RecordError {
            index,
            message: clean(message, MESSAGE_BYTES_MAX),
        }
    }
}

/// One call's answer, as lifted from the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A filter's keep flags.
    Filter {
        /// One flag per record.
        keep: Vec<bool>,
        /// Records that could not be judged.
        errors: Vec<RecordError>,
    },
    /// An enrich stage's changed records.
    Enrich {
        /// Indices of the changed records, strictly ascending.
        changed: Vec<u32>,
        /// Their new payloads, back to back.
        data: Vec<u8>,
        /// One end offset into `data` per changed record, ascending, the last one `data`'s length.
        ends: Vec<u32>,
        /// Records that could not be processed.
        errors: Vec<RecordError>,
    },
    /// A route stage's destinations.
    Route {
        /// One per record: an index into the names `init` returned, or `None` for the default.
        destinations: Vec<Option<u32>>,
        /// Records that could not be routed.
        errors: Vec<RecordError>,
    },
    /// A transform's outputs (contract 0.2).
    Transform {
        /// The output records.
        outputs: Outputs,
        /// One per output: the input it came from, ascending.
        inputs: Vec<u32>,
        /// Inputs merged into another's output, strictly ascending.
        merged: Vec<u32>,
        /// Records that could not be processed.
        errors: Vec<RecordError>,
    },
    /// An aggregate's answer to `process` (contract 0.2).
    Aggregate {
        /// Records emitted.
        outputs: Outputs,
        /// Inputs dropped, strictly ascending.
        dropped: Vec<u32>,
        /// Records that could not be processed.
        errors: Vec<RecordError>,
    },
}

/// How an answer broke the contract. Its `Display` is the reason records get.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// `keep` or `destinations` does not have one entry per record.
    #[error("the plugin answered {found} {what} for {records} records")]
    Length {
        /// `keep flags` or `destinations`.
        what: &'static str,
        /// Entries in the answer.
        found: usize,
        /// Records in the call.
        records: usize,
    },
    /// An index (error or changed record) past the call's records.
    #[error("the plugin named record {index} in `{list}`, but the call had {records} records")]
    IndexOutOfRange {
        /// `errors` or `changed`.
        list: &'static str,
        /// The index.
        index: u32,
        /// Records in the call.
        records: usize,
    },
    /// The same record named twice in `errors`.
    #[error("the plugin named record {index} twice in `errors`")]
    DuplicateError {
        /// The index.
        index: u32,
    },
    /// `changed` is not strictly ascending.
    #[error("the plugin's `changed` is not strictly ascending ({before} then {after})")]
    ChangedOrder {
        /// The earlier entry.
        before: u32,
        /// The entry after it.
        after: u32,
    },
    /// `ends` does not have one entry per changed record.
    #[error("the plugin answered {ends} end offsets for {changed} changed records")]
    EndsLength {
        /// Entries in `ends`.
        ends: usize,
        /// Entries in `changed`.
        changed: usize,
    },
    /// An end offset before the previous one.
    #[error(
        "the plugin's end offset {end} (changed record {k}) is before the previous one, {before}"
    )]
    EndsOrder {
        /// Position in `ends`.
        k: usize,
        /// The offset.
        end: u32,
        /// The offset before it.
        before: u32,
    },
    /// The ends do not cover `data` exactly.
    #[error("the plugin's end offsets cover {covered} bytes but its data holds {data}")]
    EndsCoverage {
        /// The last end offset (0 with none).
        covered: u64,
        /// Bytes in `data`.
        data: usize,
    },
    /// A destination index past the names `init` returned.
    #[error(
        "the plugin chose destination {index} for record {record}, but its init returned {names} names"
    )]
    Destination {
        /// The record.
        record: usize,
        /// The destination index.
        index: u32,
        /// How many names `init` returned.
        names: usize,
    },
    /// The outputs of a 0.2 answer broke the contract.
    #[error(transparent)]
    Outputs(#[from] OutputViolation),
    /// `inputs` does not have one entry per output.
    #[error("the plugin answered {inputs} input indices for {outputs} outputs")]
    InputsLength {
        /// Entries in `inputs`.
        inputs: usize,
        /// Outputs.
        outputs: usize,
    },
    /// `inputs` goes back: outputs must follow input order.
    #[error(
        "the plugin's output {output} came from record {input}, after an output of record {before} (outputs must follow input order)"
    )]
    InputsOrder {
        /// The output.
        output: usize,
        /// Its input.
        input: u32,
        /// The input of the output before it.
        before: u32,
    },
    /// `merged` or `dropped` is not strictly ascending.
    #[error("the plugin's `{list}` is not strictly ascending ({before} then {after})")]
    Order {
        /// `merged` or `dropped`.
        list: &'static str,
        /// The earlier entry.
        before: u32,
        /// The entry after it.
        after: u32,
    },
    /// A record named in two lists that exclude each other.
    #[error("the plugin named record {index} in both `{first}` and `{second}`")]
    Conflict {
        /// The record.
        index: u32,
        /// One list.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
    /// The answer is larger than the stage takes.
    #[error(
        "the plugin's answers exceeded answer_bytes_max ({limit} bytes for one batch, counting payloads and messages, plus 64 bytes per record)"
    )]
    TooLarge {
        /// The stage's `answer_bytes_max`.
        limit: u64,
    },
}

impl Answer {
    /// Bytes of this answer the host keeps until the batch is passed on: new payloads and
    /// error messages.
    pub fn kept_bytes(&self) -> u64 {
        let messages = |errors: &[RecordError]| -> u64 {
            errors.iter().map(|e| e.message.len() as u64).sum::<u64>()
        };
        match self {
            Answer::Filter { errors, .. } | Answer::Route { errors, .. } => messages(errors),
            Answer::Enrich { data, errors, .. } => data.len() as u64 + messages(errors),
            Answer::Transform {
                outputs, errors, ..
            }
            | Answer::Aggregate {
                outputs, errors, ..
            } => outputs.kept_bytes() + messages(errors),
        }
    }

    /// Checks the answer for a call of `records` records, from a plugin whose `init` returned
    /// `names` destination names.
    pub fn check(&self, records: usize, names: usize) -> Result<(), Violation> {
        match self {
            Answer::Filter { keep, errors } => {
                if keep.len() != records {
                    return Err(Violation::Length {
                        what: "keep flags",
                        found: keep.len(),
                        records,
                    });
                }
                check_errors(errors, records)
            }
            Answer::Route {
                destinations,
                errors,
            } => {
                if destinations.len() != records {
                    return Err(Violation::Length {
                        what: "destinations",
                        found: destinations.len(),
                        records,
                    });
                }
                for (record, d) in destinations.iter().enumerate() {
                    if let Some(index) = *d
                        && index as usize >= names
                    {
                        return Err(Violation::Destination {
                            record,
                            index,
                            names,
                        });
                    }
                }
                check_errors(errors, records)
            }
            Answer::Enrich {
                changed,
                data,
                ends,
                errors,
            } => {
                let mut before: Option<u32> = None;
                for &index in changed {
                    if index as usize >= records {
                        return Err(Violation::IndexOutOfRange {
                            list: "changed",
                            index,
                            records,
                        });
                    }
                    if let Some(b) = before
                        && index <= b
                    {
                        return Err(Violation::ChangedOrder {
                            before: b,
                            after: index,
                        });
                    }
                    before = Some(index);
                }
                if ends.len() != changed.len() {
                    return Err(Violation::EndsLength {
                        ends: ends.len(),
                        changed: changed.len(),
                    });
                }
                let mut previous = 0u32;
                for (k, &end) in ends.iter().enumerate() {
                    if end < previous {
                        return Err(Violation::EndsOrder {
                            k,
                            end,
                            before: previous,
                        });
                    }
                    previous = end;
                }
                if u64::from(previous) != data.len() as u64 {
                    return Err(Violation::EndsCoverage {
                        covered: u64::from(previous),
                        data: data.len(),
                    });
                }
                check_errors(errors, records)
            }
            Answer::Transform {
                outputs,
                inputs,
                merged,
                errors,
            } => {
                outputs.check(records.saturating_mul(OUTPUTS_PER_RECORD_MAX), names)?;
                if inputs.len() != outputs.len() {
                    return Err(Violation::InputsLength {
                        inputs: inputs.len(),
                        outputs: outputs.len(),
                    });
                }
                check_errors(errors, records)?;
                let mut state = marks(errors, records);
                check_ascending("merged", merged, records)?;
                mark(&mut state, merged, "merged")?;
                let mut run = 0usize;
                for (output, &input) in inputs.iter().enumerate() {
                    if input as usize >= records {
                        return Err(Violation::IndexOutOfRange {
                            list: "inputs",
                            index: input,
                            records,
                        });
                    }
                    match output.checked_sub(1).map(|p| inputs[p]) {
                        Some(before) if input < before => {
                            return Err(Violation::InputsOrder {
                                output,
                                input,
                                before,
                            });
                        }
                        Some(before) if input == before => run += 1,
                        _ => run = 1,
                    }
                    if run > OUTPUTS_PER_RECORD_MAX {
                        return Err(Violation::Outputs(OutputViolation::TooMany {
                            input: Some(input),
                            count: run,
                            max: OUTPUTS_PER_RECORD_MAX,
                        }));
                    }
                    if let Some(first) = state.get(input as usize).copied().flatten() {
                        return Err(Violation::Conflict {
                            index: input,
                            first,
                            second: "inputs",
                        });
                    }
                }
                Ok(())
            }
            Answer::Aggregate {
                outputs,
                dropped,
                errors,
            } => {
                outputs.check(records.saturating_mul(OUTPUTS_PER_RECORD_MAX), names)?;
                check_errors(errors, records)?;
                let mut state = marks(errors, records);
                check_ascending("dropped", dropped, records)?;
                mark(&mut state, dropped, "dropped")
            }
        }
    }
}

/// Which list (if any) names each record: `errors` first. Empty without errors, to be grown by
/// [`mark`].
fn marks(errors: &[RecordError], records: usize) -> Vec<Option<&'static str>> {
    let mut state = Vec::new();
    if !errors.is_empty() {
        state.resize(records, None);
        for e in errors {
            if let Some(s) = state.get_mut(e.index as usize) {
                *s = Some("errors");
            }
        }
    }
    state
}

/// Marks `list`'s records (already checked to be in range and ascending), refusing one that
/// another list named.
fn mark(
    state: &mut Vec<Option<&'static str>>,
    list: &[u32],
    name: &'static str,
) -> Result<(), Violation> {
    for &index in list {
        let i = index as usize;
        if state.len() <= i {
            state.resize(i + 1, None);
        }
        if let Some(first) = state[i] {
            return Err(Violation::Conflict {
                index,
                first,
                second: name,
            });
        }
        state[i] = Some(name);
    }
    Ok(())
}

/// Checks that `list` is strictly ascending and below `records`.
fn check_ascending(list_name: &'static str, list: &[u32], records: usize) -> Result<(), Violation> {
    let mut before: Option<u32> = None;
    for &index in list {
        if index as usize >= records {
            return Err(Violation::IndexOutOfRange {
                list: list_name,
                index,
                records,
            });
        }
        if let Some(b) = before
            && index <= b
        {
            return Err(Violation::Order {
                list: list_name,
                before: b,
                after: index,
            });
        }
        before = Some(index);
    }
    Ok(())
}

fn check_errors(errors: &[RecordError], records: usize) -> Result<(), Violation> {
    // Indices are checked against the range first, so the seen-set is at most `records` bits.
    let mut seen = vec![false; if errors.is_empty() { 0 } else { records }];
    for e in errors {
        let Some(slot) = seen.get_mut(e.index as usize) else {
            return Err(Violation::IndexOutOfRange {
                list: "errors",
                index: e.index,
                records,
            });
        };
        if std::mem::replace(slot, true) {
            return Err(Violation::DuplicateError { index: e.index });
        }
    }
    Ok(())
}

/// What the stage decided for one record. `Copy` (an error's message lives in [`Kept`]), so a
/// batch's verdicts are one flat, reused vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Pass it on unchanged.
    Keep,
    /// Drop it.
    Drop,
    /// The new payload is `outputs[out][start..end]` of [`Kept`].
    Replace {
        /// Which kept enrich output.
        out: u32,
        /// First byte.
        start: u32,
        /// One past the last byte.
        end: u32,
    },
    /// Route it to this destination index (`None`: the default sinks).
    RouteTo(Option<u32>),
    /// It failed; the reason is `messages[i]` of [`Kept`].
    Error(u32),
    /// A transform's outputs for it: outputs `first..first + count` of `calls[call]` of
    /// [`Kept`] (at least one).
    Outputs {
        /// Which kept call.
        call: u32,
        /// First output.
        first: u32,
        /// How many.
        count: u32,
    },
    /// Taken in by the stage: merged into another record's output, or into an aggregate's
    /// state.
    Absorbed,
}

/// What the host keeps from the answers of the batch in hand, and how many bytes of it came
/// from the plugin.
#[derive(Debug, Default)]
pub struct Kept {
    /// Enrich outputs (one per answered call).
    pub outputs: Vec<Vec<u8>>,
    /// Messages of [`Verdict::Error`]s.
    pub messages: Vec<String>,
    /// 0.2 answers' outputs, one per answered call: a transform's are what
    /// [`Verdict::Outputs`] points into, an aggregate's are emitted records.
    pub calls: Vec<Outputs>,
    /// Bytes of plugin answers kept (payloads and plugin messages), against `answer_bytes_max`.
    pub plugin_bytes: u64,
}

impl Kept {
    /// Forgets the batch before.
    pub fn clear(&mut self) {
        self.outputs.clear();
        self.messages.clear();
        self.calls.clear();
        self.plugin_bytes = 0;
    }

    /// A verdict for failed records, keeping `message` once for all of them.
    pub fn error(&mut self, message: String) -> Verdict {
        self.messages.push(message);
        Verdict::Error(self.messages.len() as u32 - 1)
    }

    /// The message of error verdict `m`.
    pub fn message(&self, m: u32) -> &str {
        self.messages.get(m as usize).map_or("", String::as_str)
    }

    /// Applies a checked answer for the records `range` (`verdicts` is the whole batch's).
    /// Returns how many records the plugin reported errors for.
    pub fn apply(&mut self, range: Range<usize>, answer: Answer, verdicts: &mut [Verdict]) -> u64 {
        self.plugin_bytes += answer.kept_bytes();
        let Some(verdicts) = verdicts.get_mut(range) else {
            return 0;
        };
        let errors = match answer {
            Answer::Filter { keep, errors } => {
                for (v, k) in verdicts.iter_mut().zip(keep) {
                    *v = if k { Verdict::Keep } else { Verdict::Drop };
                }
                errors
            }
            Answer::Enrich {
                changed,
                data,
                ends,
                errors,
            } => {
                let out = self.outputs.len() as u32;
                let mut start = 0u32;
                for (&i, &end) in changed.iter().zip(&ends) {
                    if let Some(v) = verdicts.get_mut(i as usize) {
                        *v = Verdict::Replace { out, start, end };
                    }
                    start = end;
                }
                self.outputs.push(data);
                errors
            }
            Answer::Route {
                destinations,
                errors,
            } => {
                for (v, d) in verdicts.iter_mut().zip(destinations) {
                    *v = Verdict::RouteTo(d);
                }
                errors
            }
            Answer::Transform {
                outputs,
                inputs,
                merged,
                errors,
            } => {
                verdicts.fill(Verdict::Drop);
                let call = self.calls.len() as u32;
                let mut k = 0usize;
                while let Some(&input) = inputs.get(k) {
                    let count = inputs[k..].iter().take_while(|&&i| i == input).count();
                    if let Some(v) = verdicts.get_mut(input as usize) {
                        *v = Verdict::Outputs {
                            call,
                            first: k as u32,
                            count: count as u32,
                        };
                    }
                    k += count;
                }
                for i in merged {
                    if let Some(v) = verdicts.get_mut(i as usize) {
                        *v = Verdict::Absorbed;
                    }
                }
                self.calls.push(outputs);
                errors
            }
            Answer::Aggregate {
                outputs,
                dropped,
                errors,
            } => {
                verdicts.fill(Verdict::Absorbed);
                for i in dropped {
                    if let Some(v) = verdicts.get_mut(i as usize) {
                        *v = Verdict::Drop;
                    }
                }
                self.calls.push(outputs);
                errors
            }
        };
        let n = errors.len() as u64;
        for e in errors {
            let v = self.error(format!("the plugin reported: {}", e.message));
            if let Some(slot) = verdicts.get_mut(e.index as usize) {
                *slot = v;
            }
        }
        n
    }

    /// The payload of `verdict`'s replacement, if it is one.
    pub fn replacement(&self, verdict: &Verdict) -> Option<&[u8]> {
        match *verdict {
            Verdict::Replace { out, start, end } => self
                .outputs
                .get(out as usize)
                .and_then(|o| o.get(start as usize..end as usize)),
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(index: u32) -> RecordError {
        RecordError::new(index, "bad")
    }

    use crate::stages::wasm::outputs::OutputMeta;

    fn transform(inputs: Vec<u32>, merged: Vec<u32>, errors: Vec<RecordError>) -> Answer {
        let n = inputs.len();
        Answer::Transform {
            outputs: Outputs {
                data: vec![b'x'; n],
                ends: (1..=n as u32).collect(),
                meta: vec![],
            },
            inputs,
            merged,
            errors,
        }
    }

    #[test]
    fn transform_answers_name_inputs_in_order_once_per_list() {
        assert_eq!(
            transform(vec![0, 0, 2], vec![1], vec![err(3)]).check(4, 0),
            Ok(())
        );
        assert_eq!(
            transform(vec![0, 4], vec![], vec![]).check(4, 0),
            Err(Violation::IndexOutOfRange {
                list: "inputs",
                index: 4,
                records: 4
            })
        );
        assert_eq!(
            transform(vec![1, 0], vec![], vec![]).check(4, 0),
            Err(Violation::InputsOrder {
                output: 1,
                input: 0,
                before: 1
            })
        );
        assert_eq!(
            transform(vec![1], vec![1], vec![]).check(4, 0),
            Err(Violation::Conflict {
                index: 1,
                first: "merged",
                second: "inputs"
            })
        );
        assert_eq!(
            transform(vec![], vec![2], vec![err(2)]).check(4, 0),
            Err(Violation::Conflict {
                index: 2,
                first: "errors",
                second: "merged"
            })
        );
        assert_eq!(
            transform(vec![], vec![2, 2], vec![]).check(4, 0),
            Err(Violation::Order {
                list: "merged",
                before: 2,
                after: 2
            })
        );
        let mut a = transform(vec![0, 1], vec![], vec![]);
        if let Answer::Transform { inputs, .. } = &mut a {
            inputs.pop();
        }
        assert_eq!(
            a.check(4, 0),
            Err(Violation::InputsLength {
                inputs: 1,
                outputs: 2
            })
        );
        // 1,024 outputs for one record pass, 1,025 do not.
        assert_eq!(transform(vec![0; 1024], vec![], vec![]).check(1, 0), Ok(()));
        assert!(matches!(
            transform(vec![0; 1025], vec![], vec![]).check(2, 0),
            Err(Violation::Outputs(OutputViolation::TooMany {
                input: Some(0),
                count: 1025,
                max: 1024
            }))
        ));
    }

    #[test]
    fn aggregate_answers_absorb_what_they_do_not_drop_or_reject() {
        let a = Answer::Aggregate {
            outputs: Outputs {
                data: b"w".to_vec(),
                ends: vec![1],
                meta: vec![],
            },
            dropped: vec![1],
            errors: vec![err(2)],
        };
        assert_eq!(a.check(4, 0), Ok(()));
        let mut v = vec![Verdict::Keep; 4];
        let mut kept = Kept::default();
        assert_eq!(kept.apply(0..4, a, &mut v), 1);
        assert_eq!(&v[..2], &[Verdict::Absorbed, Verdict::Drop]);
        assert!(matches!(v[2], Verdict::Error(_)));
        assert_eq!(v[3], Verdict::Absorbed);
        assert_eq!(kept.calls.len(), 1);
        let bad = Answer::Aggregate {
            outputs: Outputs::default(),
            dropped: vec![2],
            errors: vec![err(2)],
        };
        assert_eq!(
            bad.check(4, 0),
            Err(Violation::Conflict {
                index: 2,
                first: "errors",
                second: "dropped"
            })
        );
        // At most 1,024 outputs per input record of the call.
        let many = Answer::Aggregate {
            outputs: Outputs {
                data: vec![],
                ends: vec![0; 2049],
                meta: vec![],
            },
            dropped: vec![],
            errors: vec![],
        };
        assert!(many.check(2, 0).is_err());
    }

    #[test]
    fn a_filter_answer_needs_one_flag_per_record() {
        let a = Answer::Filter {
            keep: vec![true; 3],
            errors: vec![],
        };
        assert_eq!(a.check(3, 0), Ok(()));
        assert_eq!(
            a.check(4, 0),
            Err(Violation::Length {
                what: "keep flags",
                found: 3,
                records: 4
            })
        );
    }

    #[test]
    fn error_indices_must_be_in_range_and_unique() {
        let a = |errors| Answer::Filter {
            keep: vec![true; 2],
            errors,
        };
        assert_eq!(a(vec![err(1), err(0)]).check(2, 0), Ok(()));
        assert_eq!(
            a(vec![err(2)]).check(2, 0),
            Err(Violation::IndexOutOfRange {
                list: "errors",
                index: 2,
                records: 2
            })
        );
        assert_eq!(
            a(vec![err(1), err(1)]).check(2, 0),
            Err(Violation::DuplicateError { index: 1 })
        );
    }

    #[test]
    fn the_enrich_answer_of_the_review_is_rejected() {
        // changed = [n + 100, 0], ends = [20, 35]: applied, record 0 would have been written as
        // the skipped entry's bytes glued to its own.
        let a = Answer::Enrich {
            changed: vec![104, 0],
            data: vec![b'x'; 35],
            ends: vec![20, 35],
            errors: vec![],
        };
        assert_eq!(
            a.check(4, 0),
            Err(Violation::IndexOutOfRange {
                list: "changed",
                index: 104,
                records: 4
            })
        );
    }

    #[test]
    fn enrich_offsets_must_be_ordered_and_cover_the_data() {
        let a = |changed: Vec<u32>, ends: Vec<u32>, len| Answer::Enrich {
            changed,
            data: vec![b'x'; len],
            ends,
            errors: vec![],
        };
        assert_eq!(a(vec![0, 2], vec![3, 5], 5).check(3, 0), Ok(()));
        assert_eq!(a(vec![], vec![], 0).check(3, 0), Ok(()));
        assert_eq!(
            a(vec![2, 0], vec![3, 5], 5).check(3, 0),
            Err(Violation::ChangedOrder {
                before: 2,
                after: 0
            })
        );
        assert_eq!(
            a(vec![1, 1], vec![3, 5], 5).check(3, 0),
            Err(Violation::ChangedOrder {
                before: 1,
                after: 1
            })
        );
        assert_eq!(
            a(vec![0, 1], vec![3], 5).check(3, 0),
            Err(Violation::EndsLength {
                ends: 1,
                changed: 2
            })
        );
        assert_eq!(
            a(vec![0, 1], vec![4, 3], 5).check(3, 0),
            Err(Violation::EndsOrder {
                k: 1,
                end: 3,
                before: 4
            })
        );
        assert_eq!(
            a(vec![0, 1], vec![3, 6], 5).check(3, 0),
            Err(Violation::EndsCoverage {
                covered: 6,
                data: 5
            })
        );
        assert_eq!(
            a(vec![0], vec![3], 5).check(3, 0),
            Err(Violation::EndsCoverage {
                covered: 3,
                data: 5
            })
        );
    }

    #[test]
    fn route_destinations_must_be_names_init_returned() {
        let a = Answer::Route {
            destinations: vec![Some(0), None, Some(5)],
            errors: vec![],
        };
        assert_eq!(
            a.check(3, 1),
            Err(Violation::Destination {
                record: 2,
                index: 5,
                names: 1
            })
        );
        assert_eq!(a.check(3, 6), Ok(()));
    }

    #[test]
    fn messages_are_cut_and_cleaned_when_kept() {
        let e = RecordError::new(0, &format!("line one\nline two{}", "x".repeat(1 << 20)));
        assert!(e.message.starts_with("line one\\nline two"));
        assert!(e.message.len() <= MESSAGE_BYTES_MAX + 32);
    }

    #[test]
    fn applying_sets_verdicts_and_counts_kept_bytes() {
        let mut kept = Kept::default();
        let mut v = vec![Verdict::Keep; 6];
        let n = kept.apply(
            2..6,
            Answer::Enrich {
                changed: vec![0, 3],
                data: b"abcde".to_vec(),
                ends: vec![2, 5],
                errors: vec![err(1)],
            },
            &mut v,
        );
        assert_eq!(n, 1);
        assert_eq!(kept.plugin_bytes, 5 + "bad".len() as u64);
        assert_eq!(kept.replacement(&v[2]), Some(&b"ab"[..]));
        assert_eq!(v[3], Verdict::Error(0));
        assert_eq!(kept.message(0), "the plugin reported: bad");
        assert_eq!(v[4], Verdict::Keep);
        assert_eq!(kept.replacement(&v[5]), Some(&b"cde"[..]));
        assert_eq!(v[0], Verdict::Keep);
    }

    fn any_answer() -> impl Strategy<Value = Answer> {
        let errors = proptest::collection::vec((0u32..12, ".{0,4}"), 0..4).prop_map(|v| {
            v.into_iter()
                .map(|(i, m)| RecordError::new(i, &m))
                .collect()
        });
        prop_oneof![
            (
                proptest::collection::vec(any::<bool>(), 0..12),
                errors.clone()
            )
                .prop_map(|(keep, errors)| Answer::Filter { keep, errors }),
            (
                proptest::collection::vec(0u32..12, 0..6),
                proptest::collection::vec(0u32..40, 0..6),
                0usize..40,
                errors.clone()
            )
                .prop_map(|(changed, ends, len, errors)| Answer::Enrich {
                    changed,
                    data: vec![b'y'; len],
                    ends,
                    errors
                }),
            (
                proptest::collection::vec(proptest::option::of(0u32..4), 0..12),
                errors
            )
                .prop_map(|(destinations, errors)| Answer::Route {
                    destinations,
                    errors
                }),
        ]
    }

    /// A valid answer for `n` records from a plugin with 4 destination names.
    fn valid_answer(n: usize) -> impl Strategy<Value = Answer> {
        let subset = move || {
            proptest::collection::btree_set(0..n.max(1) as u32, 0..=n).prop_map(move |s| {
                s.into_iter()
                    .filter(|&i| (i as usize) < n)
                    .collect::<Vec<_>>()
            })
        };
        let errors = subset().prop_map(|v| {
            v.into_iter()
                .map(|i| RecordError::new(i, "e"))
                .collect::<Vec<_>>()
        });
        prop_oneof![
            (proptest::collection::vec(any::<bool>(), n), errors.clone())
                .prop_map(|(keep, errors)| Answer::Filter { keep, errors }),
            (
                subset(),
                proptest::collection::vec(0u32..5, 12),
                errors.clone()
            )
                .prop_map(|(changed, lens, errors)| {
                    let mut ends = Vec::new();
                    let mut end = 0;
                    for (k, _) in changed.iter().enumerate() {
                        end += lens[k];
                        ends.push(end);
                    }
                    let data = (0..end).map(|b| b as u8).collect();
                    Answer::Enrich {
                        changed,
                        data,
                        ends,
                        errors,
                    }
                }),
            (
                proptest::collection::vec(proptest::option::of(0u32..4), n),
                errors
            )
                .prop_map(|(destinations, errors)| Answer::Route {
                    destinations,
                    errors
                }),
        ]
    }

    proptest! {
        /// A valid answer passes the check, and applied, touches only its range; every
        /// replacement it sets is the answer's payload for that very record, and every record
        /// it names in `errors` gets an error verdict.
        #[test]
        fn checked_answers_apply_within_their_range(
            (records, answer) in (0usize..12).prop_flat_map(|n| (Just(n), valid_answer(n))),
            before in 0usize..5,
        ) {
            prop_assert_eq!(answer.check(records, 4), Ok(()));
            let total = before + records + 3;
            let mut v = vec![Verdict::Keep; total];
            let mut kept = Kept::default();
            kept.apply(before..before + records, answer.clone(), &mut v);
            for (i, verdict) in v.iter().enumerate() {
                if !(before..before + records).contains(&i) {
                    prop_assert_eq!(*verdict, Verdict::Keep);
                }
            }
            let errors = match &answer {
                Answer::Filter { errors, .. }
                | Answer::Enrich { errors, .. }
                | Answer::Route { errors, .. }
                | Answer::Transform { errors, .. }
                | Answer::Aggregate { errors, .. } => errors,
            };
            for e in errors {
                prop_assert!(matches!(v[before + e.index as usize], Verdict::Error(_)));
            }
            if let Answer::Enrich { changed, data, ends, errors } = &answer {
                let mut start = 0usize;
                for (&c, &e) in changed.iter().zip(ends) {
                    let i = before + c as usize;
                    if !errors.iter().any(|x| x.index == c) {
                        prop_assert_eq!(kept.replacement(&v[i]), Some(&data[start..e as usize]));
                    }
                    start = e as usize;
                }
            }
        }

        /// Whatever a transform answers, checking never panics; an answer that passes gives
        /// each input exactly its outputs, in order, and leaves the other verdicts alone.
        #[test]
        fn transform_answers_that_pass_give_each_input_exactly_its_outputs(
            records in 0usize..8,
            inputs in proptest::collection::vec(0u32..9, 0..12),
            merged in proptest::collection::vec(0u32..9, 0..3),
            errors in proptest::collection::vec(0u32..9, 0..3),
            names in 0usize..3,
            dest in proptest::option::of(0u32..3),
        ) {
            let n_out = inputs.len();
            let meta = dest
                .filter(|_| n_out > 0)
                .map(|d| vec![OutputMeta { output: 0, destinations: vec![d], ..Default::default() }])
                .unwrap_or_default();
            let answer = Answer::Transform {
                outputs: Outputs {
                    data: vec![b'x'; n_out],
                    ends: (1..=n_out as u32).collect(),
                    meta,
                },
                inputs: inputs.clone(),
                merged: merged.clone(),
                errors: errors.iter().map(|&i| RecordError::new(i, "e")).collect(),
            };
            let checked = answer.check(records, names);
            if checked.is_ok() {
                prop_assert!(inputs.windows(2).all(|w| w[0] <= w[1]));
                prop_assert!(inputs.iter().all(|&i| (i as usize) < records));
                prop_assert!(!inputs.iter().any(|i| merged.contains(i) || errors.contains(i)));
                let mut v = vec![Verdict::Keep; records + 2];
                let mut kept = Kept::default();
                kept.apply(1..1 + records, answer, &mut v);
                prop_assert_eq!(v[0], Verdict::Keep);
                prop_assert_eq!(v[records + 1], Verdict::Keep);
                let mut next = 0u32;
                for i in 0..records as u32 {
                    let count = inputs.iter().filter(|&&x| x == i).count() as u32;
                    match v[1 + i as usize] {
                        Verdict::Outputs { call: 0, first, count: c } => {
                            prop_assert_eq!((first, c), (next, count));
                            next += c;
                        }
                        Verdict::Absorbed => prop_assert!(merged.contains(&i)),
                        Verdict::Error(_) => prop_assert!(errors.contains(&i)),
                        Verdict::Drop => prop_assert_eq!(count, 0),
                        other => prop_assert!(false, "verdict {:?}", other),
                    }
                }
                prop_assert_eq!(next as usize, n_out);
            }
        }

        /// Whatever the plugin answers, checking never panics, and a rejected answer is never
        /// partly applied (the caller applies only checked ones).
        #[test]
        fn checking_never_panics(answer in any_answer(), records in 0usize..12, names in 0usize..4) {
            let _ = answer.check(records, names);
        }
    }
}
