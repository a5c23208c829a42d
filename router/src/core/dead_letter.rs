//! Dead letters: records that could not be processed or delivered, with the reason.
//!
//! Whoever gives up on a record (framing, a stage, a sink) turns it into a [`DeadLetter`] and sends
//! it to the dead-letter sink, so that no record read ever disappears without a trace.

use std::sync::Arc;

use bytes::Bytes;

use crate::core::record::{Batch, Position};

/// One record that was given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Why, in words that name the component and the problem.
    pub reason: String,
    /// The source the record came from.
    pub source: Arc<str>,
    /// Where in the source.
    pub position: Position,
    /// Full payload size in bytes (larger than `payload` when `truncated`).
    pub size: u64,
    /// The payload, or its first bytes when it was too large to keep.
    pub payload: Bytes,
    /// True when `payload` holds only a prefix of the record.
    pub truncated: bool,
    /// Arrival time in Unix nanoseconds.
    pub arrival_unix_nanos: u64,
}

impl DeadLetter {
    /// The dead letter for record `i` of `batch` (at `position`, from [`Batch::positions`]).
    pub fn of_record(batch: &Batch, i: usize, position: Position, reason: String) -> DeadLetter {
        DeadLetter {
            reason,
            source: batch.origin().source.clone(),
            position,
            size: batch.spans()[i].len() as u64,
            payload: batch.payload_bytes_of(i),
            truncated: false,
            arrival_unix_nanos: batch.origin().arrival_unix_nanos,
        }
    }

    /// Dead letters for records `indices` (ascending) of `batch`, all with the same reason.
    pub fn from_batch(batch: &Batch, indices: &[usize], reason: &str) -> Vec<DeadLetter> {
        let positions = batch.positions(indices);
        indices
            .iter()
            .zip(positions)
            .filter(|(i, _)| **i < batch.len())
            .map(|(&i, position)| DeadLetter::of_record(batch, i, position, reason.to_owned()))
            .collect()
    }

    /// Dead letters for every record of `batch`.
    pub fn from_whole_batch(batch: &Batch, reason: &str) -> Vec<DeadLetter> {
        let all: Vec<usize> = (0..batch.len()).collect();
        DeadLetter::from_batch(batch, &all, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::{Origin, PositionBase, Span};
    use std::time::Instant;

    #[test]
    fn from_batch_keeps_positions_and_payloads() {
        let data = Bytes::from_static(b"a\n\nbb\n");
        let origin = Origin {
            source: Arc::from("stdin"),
            arrival_unix_nanos: 5,
            arrival: Instant::now(),
            position: PositionBase::Line(1),
        };
        let batch = Batch::new(
            data,
            vec![Span { start: 0, end: 1 }, Span { start: 3, end: 5 }],
            origin,
        );
        let dl = DeadLetter::from_batch(&batch, &[1], "sink `x` failed");
        assert_eq!(dl.len(), 1);
        assert_eq!(dl[0].position, Position::Line(3));
        assert_eq!(&dl[0].payload[..], b"bb");
        assert_eq!(dl[0].size, 2);
        assert_eq!(DeadLetter::from_whole_batch(&batch, "r").len(), 2);
    }
}
