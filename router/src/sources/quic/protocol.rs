//! The `edge-router/1` wire protocol: frames and their codec.
//!
//! A producer opens a QUIC connection with the ALPN [`ALPN`]. Every frame fills one direction of
//! one stream (the sender finishes its side after the frame), so frames carry no overall length:
//! the reader reads the stream to its end, up to a limit ([`MAX_HELLO_BYTES`],
//! [`MAX_WELCOME_BYTES`], [`MAX_ACK_BYTES`], [`Limits::max_frame_bytes`]).
//!
//! - The first bidirectional stream of a connection carries [`Hello`] (client to server) and
//!   [`Welcome`] (server to client).
//! - Every later bidirectional stream carries one BATCH (client to server, built with
//!   [`BatchEncoder`], read with [`decode_batch`]) and its [`Ack`] (server to client).
//!
//! All integers are big-endian. Every frame starts with a 4-byte header: the magic `b"ER"`, the
//! version byte `1`, and the frame type ([`FrameType`]). After the header:
//!
//! ```text
//! HELLO   (0x01)  session_id u64, token_len u16, token
//! WELCOME (0x02)  status u8, next_seq u64, msg_len u16, msg (UTF-8)
//! BATCH   (0x10)  seq u64, flags u8, record_count u32,
//!                 [flags bit 0] key_len u16, key (UTF-8),
//!                 [flags bit 1] attr_count u16 (at least 1), attr_count * (k_len u16, k, v_len u16, v),
//!                 record_count * (len u32, payload)
//! ACK     (0x11)  seq u64, status u8, accepted u32, retry_after_ms u32, msg_len u16, msg (UTF-8)
//! ```
//!
//! Other flag bits must be 0, and nothing may follow the last field of a frame. Every encoding
//! is canonical (an attribute list is either absent or non-empty), so a BATCH that decodes
//! re-encodes to the same bytes.
//!
//! Decoding never panics and never allocates from a length it has not checked against the bytes
//! that are actually there; [`decode_batch`] copies no payload: it returns the frame's
//! [`Bytes`] and a [`Span`] per record, ready to become a [`crate::core::record::Batch`].

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::core::record::Span;

/// The ALPN protocol id of this protocol, negotiated in the TLS handshake.
pub const ALPN: &[u8] = b"edge-router/1";

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"ER";

/// The protocol version this build speaks (the third byte of every frame).
pub const VERSION: u8 = 1;

/// Bytes of the header every frame starts with: magic, version, frame type.
pub const HEADER_BYTES: usize = 4;

/// Flag bit of a BATCH: a partition key follows the record count.
pub const FLAG_KEY: u8 = 0b01;

/// Flag bit of a BATCH: attributes follow the record count (and the key, if any).
pub const FLAG_ATTRIBUTES: u8 = 0b10;

/// Bytes a record adds to a BATCH besides its payload (its `u32` length).
pub const RECORD_OVERHEAD_BYTES: usize = 4;

/// The largest possible HELLO frame (a token of `u16::MAX` bytes).
pub const MAX_HELLO_BYTES: usize = HEADER_BYTES + 8 + 2 + u16::MAX as usize;

/// The largest possible WELCOME frame (a message of `u16::MAX` bytes).
pub const MAX_WELCOME_BYTES: usize = HEADER_BYTES + 1 + 8 + 2 + u16::MAX as usize;

/// The largest possible ACK frame (a message of `u16::MAX` bytes).
pub const MAX_ACK_BYTES: usize = HEADER_BYTES + 8 + 1 + 4 + 4 + 2 + u16::MAX as usize;

/// Offset of a BATCH's record count: header, `seq`, `flags`.
const BATCH_COUNT_OFFSET: usize = HEADER_BYTES + 8 + 1;

/// The fixed part of a BATCH: header, `seq`, `flags`, `record_count`.
const BATCH_FIXED_BYTES: usize = BATCH_COUNT_OFFSET + 4;

/// The type of a frame (the fourth byte of its header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// Client to server, first stream: who the client is.
    Hello = 0x01,
    /// Server to client, first stream: whether the client may send, and from which sequence.
    Welcome = 0x02,
    /// Client to server, one per stream: records.
    Batch = 0x10,
    /// Server to client, on the batch's stream: what became of the batch.
    Ack = 0x11,
}

impl FrameType {
    /// The frame's name as the protocol documentation spells it (`HELLO`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FrameType::Hello => "HELLO",
            FrameType::Welcome => "WELCOME",
            FrameType::Batch => "BATCH",
            FrameType::Ack => "ACK",
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02x})", self.name(), *self as u8)
    }
}

/// The status of a WELCOME or an ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// Accepted.
    Ok = 0,
    /// Accepted earlier (a resend of a batch the server already has); the client treats it as
    /// acknowledged.
    Duplicate = 1,
    /// Nothing accepted: the router is full; retry after `retry_after_ms`.
    Backpressure = 2,
    /// The token was not accepted.
    Unauthorized = 3,
    /// The frame was malformed or unexpected.
    BadRequest = 4,
    /// The frame or one of its records is over the server's limits.
    TooLarge = 5,
    /// Nothing accepted: an earlier sequence number has not arrived in time; the client resends
    /// from its oldest unacknowledged batch.
    OutOfOrder = 6,
    /// The server is shutting down; the client resends later (to this or another router).
    ShuttingDown = 7,
}

impl Status {
    /// Every status, in wire order.
    pub const ALL: [Status; 8] = [
        Status::Ok,
        Status::Duplicate,
        Status::Backpressure,
        Status::Unauthorized,
        Status::BadRequest,
        Status::TooLarge,
        Status::OutOfOrder,
        Status::ShuttingDown,
    ];

    /// The status for a wire byte, `None` for an unknown one.
    pub fn from_u8(byte: u8) -> Option<Status> {
        Status::ALL.get(usize::from(byte)).copied()
    }

    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The status's name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Duplicate => "duplicate",
            Status::Backpressure => "backpressure",
            Status::Unauthorized => "unauthorized",
            Status::BadRequest => "bad request",
            Status::TooLarge => "too large",
            Status::OutOfOrder => "out of order",
            Status::ShuttingDown => "shutting down",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Limits a server applies when decoding a BATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest frame accepted, in bytes (never more than `u32::MAX`, whatever this says).
    pub max_frame_bytes: usize,
    /// The most records in one batch.
    pub max_records: u32,
    /// The largest record payload, in bytes.
    pub max_record_bytes: u32,
}

impl Default for Limits {
    /// 8 MiB frames, 65 536 records, 1 MiB records (Kinesis's per-record limit).
    fn default() -> Limits {
        Limits {
            max_frame_bytes: 8 << 20,
            max_records: 65_536,
            max_record_bytes: 1 << 20,
        }
    }
}

/// A frame that could not be decoded. Offsets count from the frame's first byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The frame ends inside a field.
    #[error(
        "truncated frame: {what} at byte offset {offset} needs {needed} bytes, only {available} left"
    )]
    Truncated {
        /// The field that does not fit.
        what: &'static str,
        /// Where the field starts.
        offset: usize,
        /// Bytes the field needs (at least).
        needed: u64,
        /// Bytes left in the frame.
        available: usize,
    },
    /// Bytes after the last field of the frame.
    #[error("{count} trailing bytes after the end of the {frame} frame, at byte offset {offset}")]
    TrailingBytes {
        /// The frame type.
        frame: FrameType,
        /// Where the extra bytes start.
        offset: usize,
        /// How many there are.
        count: usize,
    },
    /// The first two bytes are not `ER`.
    #[error("bad magic {found:02x?} at byte offset 0, expected \"ER\" ([45, 52])")]
    BadMagic {
        /// The two bytes found.
        found: [u8; 2],
    },
    /// The version byte is not [`VERSION`].
    #[error("unsupported protocol version {found} at byte offset 2, this build speaks version 1")]
    UnsupportedVersion {
        /// The version found.
        found: u8,
    },
    /// The frame type byte is not the one expected here.
    #[error("unexpected frame type 0x{found:02x} at byte offset 3, expected {expected}")]
    WrongFrameType {
        /// The frame type the reader expected.
        expected: FrameType,
        /// The byte found.
        found: u8,
    },
    /// A string field is not UTF-8.
    #[error("{what} at byte offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        what: &'static str,
        /// Where the field's bytes start.
        offset: usize,
    },
    /// A status byte no [`Status`] has.
    #[error("unknown status {found} at byte offset {offset}")]
    UnknownStatus {
        /// The byte found.
        found: u8,
        /// Where it is.
        offset: usize,
    },
    /// BATCH flags with bits other than [`FLAG_KEY`] and [`FLAG_ATTRIBUTES`] set.
    #[error(
        "unknown batch flags 0b{flags:08b} at byte offset {offset}, only bits 0 and 1 are defined"
    )]
    UnknownFlags {
        /// The flags byte.
        flags: u8,
        /// Where it is.
        offset: usize,
    },
    /// The attributes flag is set but the attribute count is 0 (not the canonical encoding).
    #[error("attributes flag set but attribute count is 0 at byte offset {offset}")]
    EmptyAttributes {
        /// Where the attribute count is.
        offset: usize,
    },
    /// The frame is over [`Limits::max_frame_bytes`] (or `u32::MAX`).
    #[error("frame of {len} bytes exceeds max_frame_bytes {limit} (at byte offset 0)")]
    FrameTooLarge {
        /// The frame's size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The record count is over [`Limits::max_records`].
    #[error("record count {count} at byte offset {offset} exceeds max_records {limit}")]
    TooManyRecords {
        /// The record count of the frame.
        count: u32,
        /// The limit.
        limit: u32,
        /// Where the record count is.
        offset: usize,
    },
    /// A record is over [`Limits::max_record_bytes`].
    #[error(
        "record {index} at byte offset {offset} is {len} bytes, exceeds max_record_bytes {limit}"
    )]
    RecordTooLarge {
        /// The record's index in the batch (from 0).
        index: u32,
        /// Its length.
        len: u32,
        /// The limit.
        limit: u32,
        /// Where its length field is.
        offset: usize,
    },
}

/// A value that does not fit the wire format's fixed-width lengths.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {len}, over the {max} the edge-router/1 wire format allows")]
pub struct EncodeError {
    /// What is too long (for example `"partition key length"`).
    pub what: &'static str,
    /// Its size.
    pub len: u64,
    /// The largest size the format allows.
    pub max: u64,
}

/// HELLO: the client introduces its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The client's session, chosen by the client; sequence numbers count per session.
    pub session_id: u64,
    /// The authentication token (may be empty).
    pub token: Vec<u8>,
}

/// WELCOME: the server's answer to HELLO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// [`Status::Ok`], or why the client may not send.
    pub status: Status,
    /// The next batch sequence number the server expects for this session: batches below it
    /// were accepted already.
    pub next_seq: u64,
    /// A human-readable message (may be empty).
    pub message: String,
}

/// ACK: what became of one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The batch's sequence number.
    pub seq: u64,
    /// The outcome.
    pub status: Status,
    /// Records accepted (all of them for [`Status::Ok`], none otherwise).
    pub accepted: u32,
    /// For [`Status::Backpressure`] (and others that ask for a resend): how long to wait.
    pub retry_after_ms: u32,
    /// A human-readable message (may be empty).
    pub message: String,
}

/// A decoded BATCH. The payloads stay in the frame's buffer: `data[span.start..span.end]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    /// The batch's sequence number in its session.
    pub seq: u64,
    /// The partition key for every record of the batch, if the producer chose one.
    pub key: Option<String>,
    /// Attributes for every record of the batch, in the producer's order.
    pub attributes: Vec<(String, String)>,
    /// The whole frame.
    pub data: Bytes,
    /// One payload range inside `data` per record, in order.
    pub spans: Vec<Span>,
}

impl DecodedBatch {
    /// The number of records.
    pub fn records(&self) -> usize {
        self.spans.len()
    }

    /// The payloads, in order.
    pub fn payloads(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.spans.iter().map(|s| {
            self.data
                .get(s.start as usize..s.end as usize)
                .unwrap_or(&[])
        })
    }
}

fn put_header(out: &mut impl BufMut, frame: FrameType) {
    out.put_slice(&MAGIC);
    out.put_u8(VERSION);
    out.put_u8(frame as u8);
}

fn u16_len(what: &'static str, len: usize) -> Result<u16, EncodeError> {
    u16::try_from(len).map_err(|_| EncodeError {
        what,
        len: len as u64,
        max: u64::from(u16::MAX),
    })
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// Appends a HELLO frame to `out`. Fails (writing nothing) if the token is over `u16::MAX`
/// bytes.
pub fn encode_hello(session_id: u64, token: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let token_len = u16_len("token length", token.len())?;
    out.reserve(HEADER_BYTES + 8 + 2 + token.len());
    put_header(out, FrameType::Hello);
    out.put_u64(session_id);
    out.put_u16(token_len);
    out.put_slice(token);
    Ok(())
}

/// Decodes a HELLO frame (the whole frame, nothing after it).
pub fn decode_hello(buf: &[u8]) -> Result<Hello, ProtocolError> {
    let mut r = Reader::new(buf);
    r.header(FrameType::Hello)?;
    let session_id = r.u64("session id")?;
    let token_len = r.u16("token length")?;
    let token = r.take(usize::from(token_len), "token")?.to_vec();
    r.finish(FrameType::Hello)?;
    Ok(Hello { session_id, token })
}

/// Appends a WELCOME frame to `out`. A message over `u16::MAX` bytes is cut at the last
/// character boundary that fits.
pub fn encode_welcome(status: Status, next_seq: u64, message: &str, out: &mut Vec<u8>) {
    let message = truncate_utf8(message, usize::from(u16::MAX));
    out.reserve(HEADER_BYTES + 1 + 8 + 2 + message.len());
    put_header(out, FrameType::Welcome);
    out.put_u8(status.as_u8());
    out.put_u64(next_seq);
    out.put_u16(message.len() as u16);
    out.put_slice(message.as_bytes());
}

/// Decodes a WELCOME frame (the whole frame, nothing after it).
pub fn decode_welcome(buf: &[u8]) -> Result<Welcome, ProtocolError> {
    let mut r = Reader::new(buf);
    r.header(FrameType::Welcome)?;
    let status = r.status()?;
    let next_seq = r.u64("next sequence number")?;
    let message_len = r.u16("message length")?;
    let message = r.string(usize::from(message_len), "message")?;
    r.finish(FrameType::Welcome)?;
    Ok(Welcome {
        status,
        next_seq,
        message,
    })
}

/// Appends an ACK frame to `out`. A message over `u16::MAX` bytes is cut at the last character
/// boundary that fits.
pub fn encode_ack(
    seq: u64,
    status: Status,
    accepted: u32,
    retry_after_ms: u32,
    message: &str,
    out: &mut Vec<u8>,
) {
    let message = truncate_utf8(message, usize::from(u16::MAX));
    out.reserve(HEADER_BYTES + 8 + 1 + 4 + 4 + 2 + message.len());
    put_header(out, FrameType::Ack);
    out.put_u64(seq);
    out.put_u8(status.as_u8());
    out.put_u32(accepted);
    out.put_u32(retry_after_ms);
    out.put_u16(message.len() as u16);
    out.put_slice(message.as_bytes());
}

/// Decodes an ACK frame (the whole frame, nothing after it).
pub fn decode_ack(buf: &[u8]) -> Result<Ack, ProtocolError> {
    let mut r = Reader::new(buf);
    r.header(FrameType::Ack)?;
    let seq = r.u64("sequence number")?;
    let status = r.status()?;
    let accepted = r.u32("accepted count")?;
    let retry_after_ms = r.u32("retry_after_ms")?;
    let message_len = r.u16("message length")?;
    let message = r.string(usize::from(message_len), "message")?;
    r.finish(FrameType::Ack)?;
    Ok(Ack {
        seq,
        status,
        accepted,
        retry_after_ms,
        message,
    })
}

/// Builds one BATCH frame, record by record, in a single buffer.
///
/// The record count is written when the batch is [finished](BatchEncoder::finish): the header
/// reserves its four bytes. Check [`BatchEncoder::len_bytes`] (plus [`RECORD_OVERHEAD_BYTES`]
/// and the next payload) against the server's [`Limits`] before pushing.
#[derive(Debug)]
pub struct BatchEncoder {
    buf: BytesMut,
    seq: u64,
    records: u32,
}

impl BatchEncoder {
    /// Starts the batch with sequence number `seq`, the batch's partition key, if any, and its
    /// attributes (none: `&[]`). Fails if the key, an attribute name or value, or the number of
    /// attributes is over `u16::MAX`.
    pub fn new(
        seq: u64,
        key: Option<&str>,
        attrs: &[(String, String)],
    ) -> Result<BatchEncoder, EncodeError> {
        let mut header_len = BATCH_FIXED_BYTES as u64;
        let mut flags = 0;
        if let Some(key) = key {
            u16_len("partition key length", key.len())?;
            flags |= FLAG_KEY;
            header_len += 2 + key.len() as u64;
        }
        if !attrs.is_empty() {
            u16_len("attribute count", attrs.len())?;
            flags |= FLAG_ATTRIBUTES;
            header_len += 2;
            for (k, v) in attrs {
                u16_len("attribute name length", k.len())?;
                u16_len("attribute value length", v.len())?;
                header_len += 4 + k.len() as u64 + v.len() as u64;
            }
        }
        if header_len > u64::from(u32::MAX) {
            return Err(EncodeError {
                what: "frame length",
                len: header_len,
                max: u64::from(u32::MAX),
            });
        }
        let mut buf = BytesMut::with_capacity(header_len as usize);
        put_header(&mut buf, FrameType::Batch);
        buf.put_u64(seq);
        buf.put_u8(flags);
        buf.put_u32(0); // The record count, patched by `finish`.
        if let Some(key) = key {
            buf.put_u16(key.len() as u16);
            buf.put_slice(key.as_bytes());
        }
        if !attrs.is_empty() {
            buf.put_u16(attrs.len() as u16);
            for (k, v) in attrs {
                buf.put_u16(k.len() as u16);
                buf.put_slice(k.as_bytes());
                buf.put_u16(v.len() as u16);
                buf.put_slice(v.as_bytes());
            }
        }
        Ok(BatchEncoder {
            buf,
            seq,
            records: 0,
        })
    }

    /// Appends one record. Fails (appending nothing) if the payload is over `u32::MAX` bytes,
    /// the batch already has `u32::MAX` records, or the frame would grow past `u32::MAX` bytes.
    pub fn push(&mut self, payload: &[u8]) -> Result<(), EncodeError> {
        let len = u32::try_from(payload.len()).map_err(|_| EncodeError {
            what: "record length",
            len: payload.len() as u64,
            max: u64::from(u32::MAX),
        })?;
        if self.records == u32::MAX {
            return Err(EncodeError {
                what: "record count",
                len: u64::from(u32::MAX) + 1,
                max: u64::from(u32::MAX),
            });
        }
        let frame_len = (self.buf.len() + RECORD_OVERHEAD_BYTES) as u64 + u64::from(len);
        if frame_len > u64::from(u32::MAX) {
            return Err(EncodeError {
                what: "frame length",
                len: frame_len,
                max: u64::from(u32::MAX),
            });
        }
        self.buf.reserve(RECORD_OVERHEAD_BYTES + payload.len());
        self.buf.put_u32(len);
        self.buf.put_slice(payload);
        self.records += 1;
        Ok(())
    }

    /// The frame's size so far, in bytes.
    pub fn len_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Records pushed so far.
    pub fn records(&self) -> u32 {
        self.records
    }

    /// The batch's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Writes the record count into the header and returns the frame.
    pub fn finish(mut self) -> Bytes {
        if let Some(count) = self.buf.get_mut(BATCH_COUNT_OFFSET..BATCH_COUNT_OFFSET + 4) {
            count.copy_from_slice(&self.records.to_be_bytes());
        }
        self.buf.freeze()
    }
}

/// Decodes a BATCH frame (the whole frame, nothing after it) within `limits`, without copying
/// payloads.
pub fn decode_batch(buf: Bytes, limits: &Limits) -> Result<DecodedBatch, ProtocolError> {
    let limit = limits.max_frame_bytes.min(u32::MAX as usize);
    if buf.len() > limit {
        return Err(ProtocolError::FrameTooLarge {
            len: buf.len(),
            limit,
        });
    }
    let mut r = Reader::new(&buf);
    r.header(FrameType::Batch)?;
    let seq = r.u64("sequence number")?;
    let flags_at = r.pos;
    let flags = r.u8("flags")?;
    if flags & !(FLAG_KEY | FLAG_ATTRIBUTES) != 0 {
        return Err(ProtocolError::UnknownFlags {
            flags,
            offset: flags_at,
        });
    }
    let count_at = r.pos;
    let record_count = r.u32("record count")?;
    if record_count > limits.max_records {
        return Err(ProtocolError::TooManyRecords {
            count: record_count,
            limit: limits.max_records,
            offset: count_at,
        });
    }
    let key = if flags & FLAG_KEY != 0 {
        let len = r.u16("partition key length")?;
        Some(r.string(usize::from(len), "partition key")?)
    } else {
        None
    };
    let mut attributes = Vec::new();
    if flags & FLAG_ATTRIBUTES != 0 {
        let count_at = r.pos;
        let count = r.u16("attribute count")?;
        if count == 0 {
            return Err(ProtocolError::EmptyAttributes { offset: count_at });
        }
        // Each attribute takes at least its two length fields.
        r.need(u64::from(count) * 4, "attributes")?;
        attributes.reserve_exact(usize::from(count));
        for _ in 0..count {
            let len = r.u16("attribute name length")?;
            let name = r.string(usize::from(len), "attribute name")?;
            let len = r.u16("attribute value length")?;
            let value = r.string(usize::from(len), "attribute value")?;
            attributes.push((name, value));
        }
    }
    // Each record takes at least its length field: check before allocating the spans.
    r.need(
        u64::from(record_count) * RECORD_OVERHEAD_BYTES as u64,
        "record lengths",
    )?;
    let mut spans = Vec::with_capacity(record_count as usize);
    for index in 0..record_count {
        let len_at = r.pos;
        let len = r.u32("record length")?;
        if len > limits.max_record_bytes {
            return Err(ProtocolError::RecordTooLarge {
                index,
                len,
                limit: limits.max_record_bytes,
                offset: len_at,
            });
        }
        let start = r.pos;
        r.take(len as usize, "record payload")?;
        // The frame is at most u32::MAX bytes (checked above), so its offsets fit.
        spans.push(Span {
            start: start as u32,
            end: r.pos as u32,
        });
    }
    r.finish(FrameType::Batch)?;
    Ok(DecodedBatch {
        seq,
        key,
        attributes,
        data: buf,
        spans,
    })
}

/// A cursor over a frame that reports where a field did not fit.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Fails unless at least `needed` bytes are left (reading nothing).
    fn need(&self, needed: u64, what: &'static str) -> Result<(), ProtocolError> {
        if needed > self.remaining() as u64 {
            return Err(ProtocolError::Truncated {
                what,
                offset: self.pos,
                needed,
                available: self.remaining(),
            });
        }
        Ok(())
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        self.need(n as u64, what)?;
        let bytes = self.buf.get(self.pos..self.pos + n).unwrap_or(&[]);
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ProtocolError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, ProtocolError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ProtocolError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, ProtocolError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn string(&mut self, len: usize, what: &'static str) -> Result<String, ProtocolError> {
        let offset = self.pos;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| ProtocolError::InvalidUtf8 { what, offset })
    }

    fn status(&mut self) -> Result<Status, ProtocolError> {
        let offset = self.pos;
        let found = self.u8("status")?;
        Status::from_u8(found).ok_or(ProtocolError::UnknownStatus { found, offset })
    }

    fn header(&mut self, expected: FrameType) -> Result<(), ProtocolError> {
        let found = self.array::<2>("magic")?;
        if found != MAGIC {
            return Err(ProtocolError::BadMagic { found });
        }
        let version = self.u8("version")?;
        if version != VERSION {
            return Err(ProtocolError::UnsupportedVersion { found: version });
        }
        let found = self.u8("frame type")?;
        if found != expected as u8 {
            return Err(ProtocolError::WrongFrameType { expected, found });
        }
        Ok(())
    }

    /// Fails if anything follows the last field.
    fn finish(self, frame: FrameType) -> Result<(), ProtocolError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(ProtocolError::TrailingBytes {
                frame,
                offset: self.pos,
                count,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn batch(seq: u64, key: Option<&str>, attrs: &[(String, String)], payloads: &[&[u8]]) -> Bytes {
        let mut e = BatchEncoder::new(seq, key, attrs).unwrap();
        for p in payloads {
            e.push(p).unwrap();
        }
        e.finish()
    }

    fn reencode(b: &DecodedBatch) -> Bytes {
        let mut e = BatchEncoder::new(b.seq, b.key.as_deref(), &b.attributes).unwrap();
        for p in b.payloads() {
            e.push(p).unwrap();
        }
        e.finish()
    }

    fn attrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn hello_round_trips() {
        for token in [&b""[..], b"secret-token", &[0xff; 300]] {
            let mut out = Vec::new();
            encode_hello(0x0102_0304_0506_0708, token, &mut out).unwrap();
            assert_eq!(&out[..4], b"ER\x01\x01");
            assert_eq!(out.len(), 4 + 8 + 2 + token.len());
            let hello = decode_hello(&out).unwrap();
            assert_eq!(hello.session_id, 0x0102_0304_0506_0708);
            assert_eq!(hello.token, token);
        }
    }

    #[test]
    fn hello_with_an_oversized_token_is_refused_and_writes_nothing() {
        let mut out = Vec::new();
        let err = encode_hello(1, &vec![0; 70_000], &mut out).unwrap_err();
        assert_eq!(err.what, "token length");
        assert_eq!((err.len, err.max), (70_000, 65_535));
        assert!(out.is_empty());
    }

    #[test]
    fn welcome_round_trips_and_cuts_long_messages_on_a_char_boundary() {
        for status in Status::ALL {
            let mut out = Vec::new();
            encode_welcome(status, 42, "hé", &mut out);
            let w = decode_welcome(&out).unwrap();
            assert_eq!(
                w,
                Welcome {
                    status,
                    next_seq: 42,
                    message: "hé".into()
                }
            );
        }
        // 'é' is 2 bytes: 65_535 bytes end in the middle of the last one.
        let long = "é".repeat(40_000);
        let mut out = Vec::new();
        encode_welcome(Status::Ok, 0, &long, &mut out);
        assert_eq!(out.len(), MAX_WELCOME_BYTES - 1);
        let w = decode_welcome(&out).unwrap();
        assert_eq!(w.message.len(), 65_534);
    }

    #[test]
    fn ack_round_trips() {
        for status in Status::ALL {
            let mut out = Vec::new();
            encode_ack(u64::MAX, status, 17, 250, "slow down", &mut out);
            let ack = decode_ack(&out).unwrap();
            assert_eq!(
                ack,
                Ack {
                    seq: u64::MAX,
                    status,
                    accepted: 17,
                    retry_after_ms: 250,
                    message: "slow down".into()
                }
            );
        }
        let mut out = Vec::new();
        encode_ack(1, Status::Ok, 1, 0, &"x".repeat(100_000), &mut out);
        assert_eq!(out.len(), MAX_ACK_BYTES);
        assert!(decode_ack(&out).is_ok());
    }

    #[test]
    fn status_bytes_match_the_protocol() {
        for (byte, status) in Status::ALL.iter().enumerate() {
            assert_eq!(status.as_u8() as usize, byte);
            assert_eq!(Status::from_u8(byte as u8), Some(*status));
        }
        assert_eq!(Status::from_u8(8), None);
        assert_eq!(Status::from_u8(255), None);
    }

    #[test]
    fn batch_round_trips_zero_copy() {
        let a = attrs(&[("host", "edge-1"), ("", ""), ("ü", "ß")]);
        for (key, attrs) in [
            (None, vec![]),
            (Some("user-7"), vec![]),
            (None, a.clone()),
            (Some(""), a.clone()),
        ] {
            let payloads: [&[u8]; 4] = [b"first", b"", b"{\"a\":1}", &[0, 1, 2, 255]];
            let frame = batch(9, key, &attrs, &payloads);
            let decoded = decode_batch(frame.clone(), &Limits::default()).unwrap();
            assert_eq!(decoded.seq, 9);
            assert_eq!(decoded.key.as_deref(), key);
            assert_eq!(decoded.attributes, attrs);
            assert_eq!(decoded.records(), 4);
            assert_eq!(decoded.payloads().collect::<Vec<_>>(), payloads);
            // Zero copy: the payloads point into the frame's own buffer.
            assert_eq!(decoded.data.as_ptr(), frame.as_ptr());
            assert_eq!(reencode(&decoded), frame);
        }
    }

    #[test]
    fn batch_encoder_counts_and_patches_the_record_count() {
        let mut e = BatchEncoder::new(3, None, &[]).unwrap();
        assert_eq!(e.len_bytes(), BATCH_FIXED_BYTES);
        assert_eq!((e.records(), e.seq()), (0, 3));
        e.push(b"abc").unwrap();
        e.push(b"de").unwrap();
        assert_eq!(e.records(), 2);
        assert_eq!(e.len_bytes(), BATCH_FIXED_BYTES + 4 + 3 + 4 + 2);
        let frame = e.finish();
        assert_eq!(
            &frame[BATCH_COUNT_OFFSET..BATCH_COUNT_OFFSET + 4],
            &[0, 0, 0, 2]
        );
        assert_eq!(frame[HEADER_BYTES + 8], 0, "no flags");

        let empty = batch(0, None, &[], &[]);
        let decoded = decode_batch(empty, &Limits::default()).unwrap();
        assert_eq!(decoded.records(), 0);
    }

    #[test]
    fn batch_encoder_refuses_strings_over_u16() {
        let long = "k".repeat(65_536);
        let err = BatchEncoder::new(0, Some(&long), &[]).unwrap_err();
        assert_eq!(err.what, "partition key length");
        let err = BatchEncoder::new(0, None, &[(long.clone(), String::new())]).unwrap_err();
        assert_eq!(err.what, "attribute name length");
        let err = BatchEncoder::new(0, None, &[(String::new(), long)]).unwrap_err();
        assert_eq!(err.what, "attribute value length");
        let many = vec![(String::new(), String::new()); 65_536];
        let err = BatchEncoder::new(0, None, &many).unwrap_err();
        assert_eq!(err.what, "attribute count");
        assert!(BatchEncoder::new(0, Some(&"k".repeat(65_535)), &[]).is_ok());
    }

    fn err(frame: &[u8]) -> ProtocolError {
        decode_batch(Bytes::copy_from_slice(frame), &Limits::default()).unwrap_err()
    }

    #[test]
    fn truncated_frames_name_the_field_and_offset() {
        let frame = batch(1, Some("k"), &attrs(&[("a", "b")]), &[b"hello"]);
        // Every proper prefix fails as truncated.
        for len in 0..frame.len() {
            match err(&frame[..len]) {
                ProtocolError::Truncated {
                    offset, available, ..
                } => {
                    assert!(offset <= len);
                    assert_eq!(available, len - offset);
                }
                other => panic!("prefix of {len} bytes: {other}"),
            }
        }
        let e = err(&frame[..frame.len() - 2]);
        assert_eq!(
            e.to_string(),
            "truncated frame: record payload at byte offset 32 needs 5 bytes, only 3 left"
        );
    }

    #[test]
    fn a_record_count_larger_than_the_bytes_left_fails_before_allocating() {
        let mut frame = batch(1, None, &[], &[b"x"]).to_vec();
        frame[BATCH_COUNT_OFFSET..BATCH_COUNT_OFFSET + 4].copy_from_slice(&60_000u32.to_be_bytes());
        assert_eq!(
            err(&frame),
            ProtocolError::Truncated {
                what: "record lengths",
                offset: BATCH_FIXED_BYTES,
                needed: 240_000,
                available: 5,
            }
        );
        // The same for attributes: 65 535 of them cannot fit in 0 bytes.
        let mut frame = batch(1, None, &attrs(&[("a", "b")]), &[]).to_vec();
        frame.truncate(BATCH_FIXED_BYTES);
        frame.extend_from_slice(&u16::MAX.to_be_bytes());
        assert!(matches!(
            err(&frame),
            ProtocolError::Truncated {
                what: "attributes",
                needed: 262_140,
                ..
            }
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut frame = batch(1, None, &[], &[b"x"]).to_vec();
        let end = frame.len();
        frame.push(0);
        assert_eq!(
            err(&frame),
            ProtocolError::TrailingBytes {
                frame: FrameType::Batch,
                offset: end,
                count: 1
            }
        );
        let mut hello = Vec::new();
        encode_hello(1, b"t", &mut hello).unwrap();
        hello.extend_from_slice(b"zz");
        assert!(matches!(
            decode_hello(&hello),
            Err(ProtocolError::TrailingBytes { count: 2, .. })
        ));
    }

    #[test]
    fn header_errors() {
        let frame = batch(1, None, &[], &[]).to_vec();
        let mut bad = frame.clone();
        bad[1] = b'X';
        assert_eq!(err(&bad), ProtocolError::BadMagic { found: *b"EX" });
        let mut bad = frame.clone();
        bad[2] = 2;
        assert_eq!(err(&bad), ProtocolError::UnsupportedVersion { found: 2 });
        assert_eq!(
            err(&bad).to_string(),
            "unsupported protocol version 2 at byte offset 2, this build speaks version 1"
        );
        let mut hello = Vec::new();
        encode_hello(1, b"", &mut hello).unwrap();
        let e = err(&hello);
        assert_eq!(
            e,
            ProtocolError::WrongFrameType {
                expected: FrameType::Batch,
                found: 0x01
            }
        );
        assert_eq!(
            e.to_string(),
            "unexpected frame type 0x01 at byte offset 3, expected BATCH (0x10)"
        );
        assert!(matches!(
            decode_ack(&hello),
            Err(ProtocolError::WrongFrameType {
                expected: FrameType::Ack,
                ..
            })
        ));
    }

    #[test]
    fn invalid_utf8_is_refused_with_its_offset() {
        let mut frame = batch(1, Some("ab"), &attrs(&[("k", "v")]), &[]).to_vec();
        let key_at = BATCH_FIXED_BYTES + 2;
        frame[key_at] = 0xff;
        assert_eq!(
            err(&frame),
            ProtocolError::InvalidUtf8 {
                what: "partition key",
                offset: key_at
            }
        );
        let mut frame = batch(1, None, &attrs(&[("k", "v")]), &[]).to_vec();
        let value_at = BATCH_FIXED_BYTES + 2 + 2 + 1 + 2;
        frame[value_at] = 0xc3; // A lead byte without its continuation.
        let e = err(&frame);
        assert_eq!(
            e.to_string(),
            format!("attribute value at byte offset {value_at} is not valid UTF-8")
        );
        let mut ack = Vec::new();
        encode_ack(1, Status::Ok, 0, 0, "é", &mut ack);
        ack.truncate(ack.len() - 1);
        ack.push(b'x');
        assert!(matches!(
            decode_ack(&ack),
            Err(ProtocolError::InvalidUtf8 {
                what: "message",
                offset: 23
            })
        ));
    }

    #[test]
    fn unknown_status_and_flags_are_refused() {
        let mut ack = Vec::new();
        encode_ack(1, Status::Ok, 0, 0, "", &mut ack);
        ack[12] = 8;
        assert_eq!(
            decode_ack(&ack),
            Err(ProtocolError::UnknownStatus {
                found: 8,
                offset: 12
            })
        );
        let mut welcome = Vec::new();
        encode_welcome(Status::Ok, 0, "", &mut welcome);
        welcome[4] = 200;
        assert_eq!(
            decode_welcome(&welcome),
            Err(ProtocolError::UnknownStatus {
                found: 200,
                offset: 4
            })
        );
        let mut frame = batch(1, None, &[], &[]).to_vec();
        frame[12] = 0b100;
        assert_eq!(
            err(&frame),
            ProtocolError::UnknownFlags {
                flags: 0b100,
                offset: 12
            }
        );
        frame[12] = FLAG_ATTRIBUTES;
        frame.extend_from_slice(&[0, 0]);
        assert_eq!(
            err(&frame),
            ProtocolError::EmptyAttributes {
                offset: BATCH_FIXED_BYTES
            }
        );
    }

    #[test]
    fn limits_are_enforced_and_named() {
        let limits = Limits {
            max_frame_bytes: 64,
            max_records: 2,
            max_record_bytes: 4,
        };
        let frame = batch(1, None, &[], &[b"a", b"b", b"c"]);
        let e = decode_batch(frame, &limits).unwrap_err();
        assert_eq!(
            e,
            ProtocolError::TooManyRecords {
                count: 3,
                limit: 2,
                offset: BATCH_COUNT_OFFSET
            }
        );
        assert_eq!(
            e.to_string(),
            "record count 3 at byte offset 13 exceeds max_records 2"
        );
        let frame = batch(1, None, &[], &[b"abcd", b"abcde"]);
        let e = decode_batch(frame, &limits).unwrap_err();
        assert_eq!(
            e,
            ProtocolError::RecordTooLarge {
                index: 1,
                len: 5,
                limit: 4,
                offset: BATCH_FIXED_BYTES + 8
            }
        );
        assert!(e.to_string().contains("max_record_bytes 4"));
        let frame = batch(1, None, &[], &[&[0; 60]]);
        let e = decode_batch(frame, &limits).unwrap_err();
        assert_eq!(e, ProtocolError::FrameTooLarge { len: 81, limit: 64 });
        assert_eq!(
            e.to_string(),
            "frame of 81 bytes exceeds max_frame_bytes 64 (at byte offset 0)"
        );
    }

    fn string(max: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
    }

    fn valid_batch() -> impl Strategy<Value = Bytes> {
        (
            any::<u64>(),
            prop::option::of(string(6)),
            prop::collection::vec((string(4), string(4)), 0..3),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..6),
        )
            .prop_map(|(seq, key, attrs, payloads)| {
                let mut e = BatchEncoder::new(seq, key.as_deref(), &attrs).unwrap();
                for p in &payloads {
                    e.push(p).unwrap();
                }
                e.finish()
            })
    }

    fn valid_small_frame() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (any::<u64>(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(id, token)| {
                let mut out = Vec::new();
                encode_hello(id, &token, &mut out).unwrap();
                out
            }),
            (0u8..8, any::<u64>(), string(6)).prop_map(|(s, next, msg)| {
                let mut out = Vec::new();
                encode_welcome(Status::ALL[s as usize], next, &msg, &mut out);
                out
            }),
            (0u8..8, any::<u64>(), any::<u32>(), any::<u32>(), string(6)).prop_map(
                |(s, seq, accepted, retry, msg)| {
                    let mut out = Vec::new();
                    encode_ack(
                        seq,
                        Status::ALL[s as usize],
                        accepted,
                        retry,
                        &msg,
                        &mut out,
                    );
                    out
                }
            ),
            valid_batch().prop_map(|b| b.to_vec()),
        ]
    }

    /// Decodes `bytes` as every frame type; whatever decodes must re-encode to the same bytes.
    fn check_decoders(bytes: &[u8]) -> Result<(), TestCaseError> {
        let small = Limits {
            max_frame_bytes: 48,
            max_records: 3,
            max_record_bytes: 8,
        };
        for limits in [Limits::default(), small] {
            if let Ok(b) = decode_batch(Bytes::copy_from_slice(bytes), &limits) {
                prop_assert!(b.records() <= limits.max_records as usize);
                prop_assert!(
                    b.payloads()
                        .all(|p| p.len() <= limits.max_record_bytes as usize)
                );
                prop_assert_eq!(&reencode(&b)[..], bytes);
            }
        }
        if let Ok(h) = decode_hello(bytes) {
            let mut out = Vec::new();
            encode_hello(h.session_id, &h.token, &mut out).unwrap();
            prop_assert_eq!(&out[..], bytes);
        }
        if let Ok(w) = decode_welcome(bytes) {
            let mut out = Vec::new();
            encode_welcome(w.status, w.next_seq, &w.message, &mut out);
            prop_assert_eq!(&out[..], bytes);
        }
        if let Ok(a) = decode_ack(bytes) {
            let mut out = Vec::new();
            encode_ack(
                a.seq,
                a.status,
                a.accepted,
                a.retry_after_ms,
                &a.message,
                &mut out,
            );
            prop_assert_eq!(&out[..], bytes);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Arbitrary bytes, also behind a valid header of each type: no decoder panics, and
        /// whatever decodes re-encodes to the same bytes.
        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(
            header in prop::option::of(prop::sample::select(vec![0x01u8, 0x02, 0x10, 0x11])),
            body in prop::collection::vec(any::<u8>(), 0..96),
        ) {
            let mut bytes = Vec::new();
            if let Some(t) = header {
                bytes.extend_from_slice(&[b'E', b'R', VERSION, t]);
            }
            bytes.extend_from_slice(&body);
            check_decoders(&bytes)?;
        }

        /// Valid frames with random byte changes and a random truncation: no decoder panics,
        /// and whatever decodes re-encodes to the same bytes.
        #[test]
        fn decoders_never_panic_on_mutated_frames(
            frame in valid_small_frame(),
            mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in prop::option::of(any::<prop::sample::Index>()),
            extra in prop::collection::vec(any::<u8>(), 0..3),
        ) {
            let mut bytes = frame.clone();
            check_decoders(&bytes)?;
            for (at, value) in mutations {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] = value;
                }
            }
            if let Some(cut) = cut {
                let len = cut.index(bytes.len() + 1);
                bytes.truncate(len);
            } else {
                bytes.extend_from_slice(&extra);
            }
            check_decoders(&bytes)?;
        }

        /// Every batch the encoder builds decodes to what went in.
        #[test]
        fn encoded_batches_decode_to_their_input(
            seq: u64,
            key in prop::option::of(string(6)),
            attrs in prop::collection::vec((string(4), string(4)), 0..3),
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 0..8),
        ) {
            let mut e = BatchEncoder::new(seq, key.as_deref(), &attrs).unwrap();
            for p in &payloads {
                e.push(p).unwrap();
            }
            let len = e.len_bytes();
            let frame = e.finish();
            prop_assert_eq!(frame.len(), len);
            let b = decode_batch(frame, &Limits::default()).unwrap();
            prop_assert_eq!(b.seq, seq);
            prop_assert_eq!(&b.key, &key);
            prop_assert_eq!(&b.attributes, &attrs);
            prop_assert_eq!(b.payloads().map(<[u8]>::to_vec).collect::<Vec<_>>(), payloads);
        }
    }
}
