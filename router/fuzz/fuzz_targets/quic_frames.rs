//! Fuzzes the `edge-router/1` frame decoders (`router/src/sources/quic/protocol.rs`).
//!
//! Input layout: the first byte selects a small set of [`Limits`] (see [`small_limits`]); the
//! rest is the frame. An empty input is skipped.
//!
//! Checks, on every input:
//! - no decoder panics (`decode_batch` under the default and the small limits, `decode_hello`,
//!   `decode_welcome`, `decode_ack`);
//! - at most one frame type decodes (the type byte tells them apart);
//! - whatever decodes re-encodes to exactly the same bytes (`BatchEncoder`, `encode_hello`,
//!   `encode_welcome`, `encode_ack`): every encoding is canonical;
//! - a decoded BATCH respects its limits, its spans lie inside the frame, and it points into
//!   the input buffer (zero copy);
//! - limits only ever refuse: a BATCH that decodes under the small limits decodes identically
//!   under the default ones, and one that decodes under the default limits fails under the
//!   small ones only with a limit error.

#![no_main]

use bytes::Bytes;
use edge_router::sources::quic::protocol::{
    BatchEncoder, DecodedBatch, Limits, ProtocolError, decode_ack, decode_batch, decode_hello,
    decode_welcome, encode_ack, encode_hello, encode_welcome,
};
use libfuzzer_sys::fuzz_target;

/// Limits small enough for the fuzzer to cross them, chosen by one byte:
/// bits 0-2 the record count (0..=7), bits 3-5 the record size (0, 1, 2, 4, 8, 16, 32, 64
/// bytes), bits 6-7 the frame size (16, 32, 64, 256 bytes; a BATCH's fixed part is 17).
fn small_limits(control: u8) -> Limits {
    const RECORD_BYTES: [u32; 8] = [0, 1, 2, 4, 8, 16, 32, 64];
    const FRAME_BYTES: [usize; 4] = [16, 32, 64, 256];
    Limits {
        max_frame_bytes: FRAME_BYTES[usize::from(control >> 6)],
        max_records: u32::from(control & 0b111),
        max_record_bytes: RECORD_BYTES[usize::from((control >> 3) & 0b111)],
    }
}

/// Checks a successfully decoded BATCH against its input and limits, and re-encodes it.
fn check_batch(b: &DecodedBatch, input: &Bytes, limits: &Limits) {
    assert!(
        input.len() <= limits.max_frame_bytes,
        "frame over max_frame_bytes"
    );
    assert!(
        b.records() <= limits.max_records as usize,
        "too many records"
    );
    assert_eq!(b.data, *input, "data is not the whole frame");
    assert_eq!(
        b.data.as_ptr(),
        input.as_ptr(),
        "data is a copy, not the input buffer"
    );
    let mut last_end = 0;
    for s in &b.spans {
        assert!(s.start <= s.end, "span {s:?} is reversed");
        assert!(
            s.end as usize <= input.len(),
            "span {s:?} is past the frame end"
        );
        assert!(s.start >= last_end, "span {s:?} overlaps the previous one");
        assert!(
            s.end - s.start <= limits.max_record_bytes,
            "record over max_record_bytes"
        );
        last_end = s.end;
    }

    let mut e = BatchEncoder::new(b.seq, b.key.as_deref(), &b.attributes)
        .expect("a decoded batch's key and attributes must re-encode");
    for p in b.payloads() {
        e.push(p).expect("a decoded payload must re-encode");
    }
    assert_eq!(e.records() as usize, b.records());
    assert_eq!(e.seq(), b.seq);
    assert_eq!(e.len_bytes(), input.len());
    let out = e.finish();
    assert_eq!(
        &out[..],
        &input[..],
        "BATCH does not re-encode to its input"
    );
}

fn is_limit_error(e: &ProtocolError) -> bool {
    matches!(
        e,
        ProtocolError::FrameTooLarge { .. }
            | ProtocolError::TooManyRecords { .. }
            | ProtocolError::RecordTooLarge { .. }
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, frame)) = data.split_first() else {
        return;
    };
    let input = Bytes::copy_from_slice(frame);
    let mut decoded_types = 0;

    // BATCH, under the default limits and under small ones.
    let default_limits = Limits::default();
    let small = small_limits(control);
    let full = decode_batch(input.clone(), &default_limits);
    let limited = decode_batch(input.clone(), &small);
    if let Ok(b) = &full {
        decoded_types += 1;
        check_batch(b, &input, &default_limits);
    }
    match (&full, &limited) {
        (_, Ok(b)) => {
            check_batch(b, &input, &small);
            assert_eq!(
                full.as_ref().ok(),
                Some(b),
                "decodes under small limits only"
            );
        }
        (Ok(_), Err(e)) => assert!(is_limit_error(e), "small limits refused with {e:?}"),
        (Err(_), Err(_)) => {}
    }

    // HELLO.
    if let Ok(h) = decode_hello(frame) {
        decoded_types += 1;
        let mut out = Vec::new();
        encode_hello(h.session_id, &h.token, &mut out).expect("a decoded token must re-encode");
        assert_eq!(out, frame, "HELLO does not re-encode to its input");
    }

    // WELCOME.
    if let Ok(w) = decode_welcome(frame) {
        decoded_types += 1;
        let mut out = Vec::new();
        encode_welcome(w.status, w.next_seq, &w.message, &mut out);
        assert_eq!(out, frame, "WELCOME does not re-encode to its input");
    }

    // ACK.
    if let Ok(a) = decode_ack(frame) {
        decoded_types += 1;
        let mut out = Vec::new();
        encode_ack(
            a.seq,
            a.status,
            a.accepted,
            a.retry_after_ms,
            &a.message,
            &mut out,
        );
        assert_eq!(out, frame, "ACK does not re-encode to its input");
    }

    assert!(
        decoded_types <= 1,
        "{decoded_types} frame types decode the same bytes"
    );
});
