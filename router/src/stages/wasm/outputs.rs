//! Output records of contract 0.2 answers (`transform`, `aggregate`), checked against the
//! contract. Pure: no wasmtime here.
//!
//! The bounds, written in `wit/v0.2/plugin.wit` too: at most [`OUTPUTS_PER_RECORD_MAX`] outputs
//! per input record of a call and [`OUTPUTS_PER_TICK_MAX`] per `tick` or `flush`; partition keys
//! of 1 to [`PARTITION_KEY_CHARS_MAX`] characters; explicit hash keys decimal below 2^128; at
//! most [`ATTRIBUTES_MAX`] attributes per output, names and values at most
//! [`ATTRIBUTE_BYTES_MAX`] bytes; destinations below the number of names `init` returned, each
//! at most once per output.

/// Most outputs a `transform` (or an aggregate's `process`) may give per input record of a call.
pub const OUTPUTS_PER_RECORD_MAX: usize = 1024;
/// Most outputs one `tick` or `flush` may give.
pub const OUTPUTS_PER_TICK_MAX: usize = 65_536;
/// Longest partition key, in characters (Kinesis's limit).
pub const PARTITION_KEY_CHARS_MAX: usize = 256;
/// Most attributes one output may set.
pub const ATTRIBUTES_MAX: usize = 64;
/// Longest attribute name or value, in bytes.
pub const ATTRIBUTE_BYTES_MAX: usize = 1024;
/// Bytes each output counts against `answer_bytes_max` besides its payload and metadata text
/// (its end offset and input index as lifted, and the host's bookkeeping).
pub const OUTPUT_FIXED_BYTES: u64 = 16;

/// What a 0.2 answer sets on one output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputMeta {
    /// Index of the output in the answer.
    pub output: u32,
    /// Partition key to set.
    pub partition_key: Option<String>,
    /// Explicit hash key to set (decimal).
    pub explicit_hash_key: Option<String>,
    /// Attributes to set (replacing ones of the same name).
    pub attributes: Vec<(String, String)>,
    /// Destination indices into the names `init` returned.
    pub destinations: Vec<u32>,
}

/// The output records of one answer, as lifted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outputs {
    /// Payloads, back to back.
    pub data: Vec<u8>,
    /// One end offset per output.
    pub ends: Vec<u32>,
    /// Sparse metadata, strictly ascending by `output`.
    pub meta: Vec<OutputMeta>,
}

/// How a 0.2 answer's outputs broke the contract. Its `Display` is the reason records get.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputViolation {
    /// An end offset before the previous one.
    #[error("the plugin's end offset {end} (output {k}) is before the previous one, {before}")]
    EndsOrder {
        /// The output.
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
    /// More outputs than allowed.
    #[error("the plugin gave {count} outputs{}, more than the {max} allowed", match .input { Some(i) => format!(" for record {i}"), None => String::new() })]
    TooMany {
        /// The input record they came from (`None`: the call as a whole).
        input: Option<u32>,
        /// Outputs given.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// A `meta` entry naming an output that does not exist, or out of order.
    #[error(
        "the plugin's output metadata names output {output} after output {after:?}, with {outputs} outputs (entries must be strictly ascending and name outputs that exist)"
    )]
    MetaIndex {
        /// The output named.
        output: u32,
        /// The entry before it, if any.
        after: Option<u32>,
        /// Outputs in the answer.
        outputs: usize,
    },
    /// A destination index past the names `init` returned, or twice for one output.
    #[error("the plugin chose destination {index} for output {output}, but {}", if *.twice { "named it twice".to_owned() } else { format!("its init returned {} names", .names) })]
    Destination {
        /// The output.
        output: u32,
        /// The destination index.
        index: u32,
        /// How many names `init` returned.
        names: usize,
        /// Named twice rather than out of range.
        twice: bool,
    },
    /// A key or attribute the sinks cannot take.
    #[error("the plugin's output {output} has {what}")]
    Meta {
        /// The output.
        output: u32,
        /// What was wrong.
        what: &'static str,
    },
}

impl Outputs {
    /// Number of outputs.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True with no outputs.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of this answer the host keeps: payloads, [`OUTPUT_FIXED_BYTES`] per output, and
    /// metadata text (plus 32 bytes per entry and 4 per destination).
    pub fn kept_bytes(&self) -> u64 {
        let meta: u64 = self
            .meta
            .iter()
            .map(|m| {
                let opt = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len() as u64);
                32 + opt(&m.partition_key)
                    + opt(&m.explicit_hash_key)
                    + m.attributes
                        .iter()
                        .map(|(k, v)| (k.len() + v.len()) as u64)
                        .sum::<u64>()
                    + 4 * m.destinations.len() as u64
            })
            .sum();
        self.data.len() as u64 + OUTPUT_FIXED_BYTES * self.ends.len() as u64 + meta
    }

    /// The payload of output `k` (empty past the end: call after [`Outputs::check`]).
    pub fn payload(&self, k: usize) -> &[u8] {
        let start = if k == 0 {
            0
        } else {
            self.ends.get(k - 1).copied().unwrap_or(0)
        };
        let end = self.ends.get(k).copied().unwrap_or(start);
        self.data.get(start as usize..end as usize).unwrap_or(&[])
    }

    /// Checks offsets, the total count against `max`, and every metadata entry, for a plugin
    /// whose `init` returned `names` destination names.
    pub fn check(&self, max: usize, names: usize) -> Result<(), OutputViolation> {
        if self.ends.len() > max {
            return Err(OutputViolation::TooMany {
                input: None,
                count: self.ends.len(),
                max,
            });
        }
        let mut previous = 0u32;
        for (k, &end) in self.ends.iter().enumerate() {
            if end < previous {
                return Err(OutputViolation::EndsOrder {
                    k,
                    end,
                    before: previous,
                });
            }
            previous = end;
        }
        if u64::from(previous) != self.data.len() as u64 {
            return Err(OutputViolation::EndsCoverage {
                covered: u64::from(previous),
                data: self.data.len(),
            });
        }
        let mut after: Option<u32> = None;
        for m in &self.meta {
            if m.output as usize >= self.ends.len() || after.is_some_and(|a| m.output <= a) {
                return Err(OutputViolation::MetaIndex {
                    output: m.output,
                    after,
                    outputs: self.ends.len(),
                });
            }
            after = Some(m.output);
            check_meta(m, names)?;
        }
        Ok(())
    }
}

fn check_meta(m: &OutputMeta, names: usize) -> Result<(), OutputViolation> {
    let bad = |what| {
        Err(OutputViolation::Meta {
            output: m.output,
            what,
        })
    };
    if let Some(k) = &m.partition_key {
        if k.is_empty() {
            return bad("an empty partition key");
        }
        if k.chars().count() > PARTITION_KEY_CHARS_MAX {
            return bad("a partition key longer than 256 characters");
        }
    }
    if let Some(h) = &m.explicit_hash_key
        && !is_hash_key(h)
    {
        return bad("an explicit hash key that is not a decimal number below 2^128");
    }
    if m.attributes.len() > ATTRIBUTES_MAX {
        return bad("more than 64 attributes");
    }
    if m.attributes
        .iter()
        .any(|(k, v)| k.len() > ATTRIBUTE_BYTES_MAX || v.len() > ATTRIBUTE_BYTES_MAX)
    {
        return bad("an attribute name or value longer than 1024 bytes");
    }
    if m.attributes.iter().any(|(k, _)| k.is_empty()) {
        return bad("an attribute with an empty name");
    }
    // At most 64 names, so a 64-bit set tells repeats.
    let mut seen = 0u64;
    for &index in &m.destinations {
        if index as usize >= names || index >= 64 {
            return Err(OutputViolation::Destination {
                output: m.output,
                index,
                names,
                twice: false,
            });
        }
        if seen & (1 << index) != 0 {
            return Err(OutputViolation::Destination {
                output: m.output,
                index,
                names,
                twice: true,
            });
        }
        seen |= 1 << index;
    }
    Ok(())
}

/// True for a decimal number 0..=2^128-1 (digits only, at most 39 of them).
pub fn is_hash_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 39
        && s.bytes().all(|b| b.is_ascii_digit())
        && s.parse::<u128>().is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn outs(data: &[u8], ends: &[u32]) -> Outputs {
        Outputs {
            data: data.to_vec(),
            ends: ends.to_vec(),
            meta: vec![],
        }
    }

    #[test]
    fn offsets_must_be_ordered_and_cover_the_data() {
        assert_eq!(outs(b"abc", &[1, 3]).check(10, 0), Ok(()));
        assert_eq!(outs(b"abc", &[1, 3]).payload(1), b"bc");
        assert!(matches!(
            outs(b"abc", &[2, 1]).check(10, 0),
            Err(OutputViolation::EndsOrder { k: 1, .. })
        ));
        assert!(matches!(
            outs(b"abc", &[1, 2]).check(10, 0),
            Err(OutputViolation::EndsCoverage { covered: 2, .. })
        ));
        assert!(matches!(
            outs(b"abc", &[1, 2, 3]).check(2, 0),
            Err(OutputViolation::TooMany {
                count: 3,
                max: 2,
                ..
            })
        ));
    }

    #[test]
    fn metadata_entries_are_checked_whole() {
        let with = |meta: OutputMeta| Outputs {
            meta: vec![meta],
            ..outs(b"ab", &[1, 2])
        };
        let ok = OutputMeta {
            output: 1,
            partition_key: Some("k".into()),
            explicit_hash_key: Some("340282366920938463463374607431768211455".into()),
            attributes: vec![("a".into(), "b".into())],
            destinations: vec![1, 0],
        };
        assert_eq!(with(ok.clone()).check(10, 2), Ok(()));
        let cases = [
            OutputMeta {
                output: 2,
                ..ok.clone()
            },
            OutputMeta {
                partition_key: Some(String::new()),
                ..ok.clone()
            },
            OutputMeta {
                partition_key: Some("é".repeat(257)),
                ..ok.clone()
            },
            OutputMeta {
                explicit_hash_key: Some("340282366920938463463374607431768211456".into()),
                ..ok.clone()
            },
            OutputMeta {
                explicit_hash_key: Some("+1".into()),
                ..ok.clone()
            },
            OutputMeta {
                attributes: vec![("a".into(), "b".into()); 65],
                ..ok.clone()
            },
            OutputMeta {
                attributes: vec![("a".into(), "b".repeat(1025))],
                ..ok.clone()
            },
            OutputMeta {
                destinations: vec![2],
                ..ok.clone()
            },
            OutputMeta {
                destinations: vec![1, 1],
                ..ok.clone()
            },
        ];
        for c in cases {
            assert!(with(c.clone()).check(10, 2).is_err(), "{c:?} passed");
        }
        // Strictly ascending.
        let two = Outputs {
            meta: vec![
                OutputMeta {
                    output: 1,
                    ..Default::default()
                },
                OutputMeta {
                    output: 1,
                    ..Default::default()
                },
            ],
            ..outs(b"ab", &[1, 2])
        };
        assert!(matches!(
            two.check(10, 0),
            Err(OutputViolation::MetaIndex {
                output: 1,
                after: Some(1),
                ..
            })
        ));
        // 256 characters of two bytes each is a valid key.
        assert_eq!(
            with(OutputMeta {
                partition_key: Some("é".repeat(256)),
                ..ok
            })
            .check(10, 2),
            Ok(())
        );
    }
}
