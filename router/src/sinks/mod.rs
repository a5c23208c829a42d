//! Sinks: where records leave the router.
//!
//! Each sink runs on a thread of its own, fed by its bounded queue. [`run_blocking_sink`] is the
//! driver shared by the thread-based sinks: it takes batches from the queue, hands them to the
//! sink, wakes it for timed work (rotation, fsync), records latency, and on a fatal error
//! dead-letters every record it can no longer deliver before reporting the error. The sink
//! itself only knows how to write. [`write_lines`] is the shared "records as delimited lines"
//! writer.

pub mod aws;
pub mod buffer;
pub mod dead_letter;
pub mod file;
pub mod firehose;
pub mod kinesis;
pub mod stdout;

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Instant;

use crate::core::accounting::Counters;
use crate::core::dead_letter::DeadLetter;
use crate::core::record::{Batch, Span};
use crate::queue::{Receiver, TimedOut};
use crate::topology::DeadLetterTx;

/// A sink that writes batches from a thread of its own.
pub trait BlockingSink: Send {
    /// Writes one batch. On failure, returns the error and the indices of the records that
    /// were not written (everything from the first record that may not have reached its file).
    fn write_batch(&mut self, batch: &Batch) -> Result<(), WriteFailure>;

    /// When the sink next needs [`BlockingSink::on_timer`] even without new records.
    fn next_deadline(&self) -> Option<Instant>;

    /// Timed work: rotation by age, interval fsync.
    fn on_timer(&mut self, now: Instant) -> io::Result<()>;

    /// Flushes and closes everything (called once, at the end).
    fn close(&mut self) -> io::Result<()>;

    /// Hands everything written so far to the operating system (e.g. a compressor's pending
    /// output), so that it survives the process. Called before a batch that someone holds (see
    /// [`crate::core::record::Hold`]) is let go.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A failed write: what went wrong and which records of the batch did not make it.
#[derive(Debug)]
pub struct WriteFailure {
    /// The error, with the path or stream it concerns.
    pub error: anyhow::Error,
    /// Indices (ascending) of the records that were not written.
    pub unwritten: Vec<usize>,
    /// The unwritten records were not touched (nothing of them reached a file) and the cause may
    /// pass (out of file descriptors): the driver keeps them and retries instead of failing.
    pub transient: bool,
}

/// First and longest wait before a sink retries a transient failure.
const RETRY_MIN: std::time::Duration = std::time::Duration::from_millis(50);
/// See [`RETRY_MIN`].
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs a sink until its queue closes, then closes the sink.
///
/// Every batch taken from the queue is either written (counted in `records_out`) or
/// dead-lettered (counted in `dead_lettered`). After a fatal error the queue is closed (the
/// dispatcher dead-letters what it can no longer queue) and what was in it is dead-lettered.
/// A transient failure (a file that cannot be opened for want of descriptors) is not fatal: the
/// sink keeps the records it could not write and retries them (waiting longer each time, logging
/// once per interval) while its queue fills and backpressure reaches the sources; timed work
/// that fails that way is retried the same way.
pub fn run_blocking_sink(
    name: &str,
    mut sink: Box<dyn BlockingSink>,
    rx: Receiver<Batch>,
    dead: DeadLetterTx,
    counters: Arc<Counters>,
) -> Result<(), anyhow::Error> {
    let mut retry = Retrying::new(name);
    loop {
        let next = match sink.next_deadline() {
            Some(deadline) => match rx.blocking_recv_until(deadline) {
                Ok(b) => b,
                Err(TimedOut) => {
                    if let Err(e) = sink.on_timer(Instant::now()) {
                        if crate::sources::guard::is_exhaustion(&e) {
                            retry.wait(&anyhow::Error::new(e).context("timed work"), 0);
                            continue;
                        }
                        return Err(fail(name, &rx, &dead, &counters, e.into(), None));
                    }
                    continue;
                }
            },
            None => rx.blocking_recv(),
        };
        let Some(mut batch) = next else { break };
        loop {
            match sink.write_batch(&batch) {
                Ok(()) => {
                    if batch.hold().is_some()
                        && let Err(e) = sink.flush()
                    {
                        // Written, but maybe not out of the process: keep the batch unreleased
                        // rather than let its holder believe it is safe.
                        let error = anyhow::Error::new(e).context("flushing");
                        let lost = Some((batch.clone(), (0..batch.len()).collect()));
                        return Err(fail(name, &rx, &dead, &counters, error, lost));
                    }
                    record_latency(&counters, &batch, batch.len() as u64);
                    counters.add_out(batch.len() as u64, batch.payload_bytes());
                    break;
                }
                Err(f) => {
                    let written = batch.len() - f.unwritten.len();
                    record_latency(&counters, &batch, written as u64);
                    let unwritten_bytes: u64 = f
                        .unwritten
                        .iter()
                        .map(|&i| batch.spans()[i].len() as u64)
                        .sum();
                    counters.add_out(written as u64, batch.payload_bytes() - unwritten_bytes);
                    if f.transient && !f.unwritten.is_empty() {
                        // Keep what was not written (and whoever holds it waiting) and retry.
                        batch = batch.select(&f.unwritten);
                        retry.wait(&f.error, batch.len());
                        continue;
                    }
                    let lost = Some((batch, f.unwritten));
                    return Err(fail(name, &rx, &dead, &counters, f.error, lost));
                }
            }
        }
        retry.backoff.succeeded();
        if let Some(d) = sink.next_deadline()
            && d <= Instant::now()
            && let Err(e) = sink.on_timer(Instant::now())
        {
            if crate::sources::guard::is_exhaustion(&e) {
                retry.wait(&anyhow::Error::new(e).context("timed work"), 0);
                continue;
            }
            return Err(fail(name, &rx, &dead, &counters, e.into(), None));
        }
    }
    sink.close()
        .map_err(|e| anyhow::Error::new(e).context(format!("sink `{name}`: closing")))?;
    Ok(())
}

/// The waits and log lines of a sink retrying transient failures.
struct Retrying<'a> {
    name: &'a str,
    backoff: crate::core::rate_limit::Backoff,
    log: crate::core::rate_limit::Throttle,
}

impl<'a> Retrying<'a> {
    fn new(name: &'a str) -> Retrying<'a> {
        Retrying {
            name,
            backoff: crate::core::rate_limit::Backoff::new(RETRY_MIN, RETRY_MAX),
            log: crate::core::rate_limit::Throttle::new(std::time::Duration::from_secs(5)),
        }
    }

    /// Logs (once per interval) and waits before the next attempt; `held`: records kept.
    fn wait(&mut self, error: &anyhow::Error, held: usize) {
        let wait = self.backoff.failed();
        if let Some(more) = self.log.admit(Instant::now()) {
            tracing::warn!(
                "sink `{}`: {error:#}; holding {held} record(s) and retrying in {} ms ({more} \
                 more failure(s) since the last message)",
                self.name,
                wait.as_millis()
            );
        }
        std::thread::sleep(wait);
    }
}

fn record_latency(counters: &Counters, batch: &Batch, n: u64) {
    let us = batch.origin().arrival.elapsed().as_micros();
    counters.record_latency(u64::try_from(us).unwrap_or(u64::MAX), n);
}

/// Handles a fatal sink error: dead-letters the records that did not make it, closes the queue
/// and dead-letters what was queued. Returns the error to report.
fn fail(
    name: &str,
    rx: &Receiver<Batch>,
    dead: &DeadLetterTx,
    counters: &Counters,
    error: anyhow::Error,
    lost: Option<(Batch, Vec<usize>)>,
) -> anyhow::Error {
    let error = error.context(format!("sink `{name}` failed"));
    let reason = format!("{error:#}");
    if let Some((batch, unwritten)) = lost {
        let letters = DeadLetter::from_batch(&batch, &unwritten, &reason);
        let _ = dead.send(letters, counters);
    }
    for batch in rx.close() {
        let _ = dead.send(DeadLetter::from_whole_batch(&batch, &reason), counters);
    }
    error
}

/// Writes records as lines: each payload followed by `delim`.
///
/// Runs of adjacent records that are already followed by the delimiter in the chunk become one
/// piece; the pieces of a call go out together, so the writer sees one large write per call
/// (large writes are cheaper per byte for the kernel's page cache): as one vectored write
/// (`writev`, no copy) when pieces are large on average, or copied into `staging` and written
/// at once when they are small (many short iovecs cost the kernel more than a copy).
/// Returns the number of bytes written (payloads plus delimiters).
pub fn write_lines<'a, W: Write + ?Sized>(
    w: &mut W,
    data: &'a [u8],
    spans: &[Span],
    delim: &'a [u8],
    staging: &mut Vec<u8>,
) -> io::Result<u64> {
    write_lines_with(w, data, spans, delim, false, staging)
}

/// [`write_lines`], where `if_missing` adds the delimiter only to records that do not already
/// end with it (so newline-terminated records come out as single lines). An empty `delim` adds
/// nothing.
pub fn write_lines_with<'a, W: Write + ?Sized>(
    w: &mut W,
    data: &'a [u8],
    spans: &[Span],
    delim: &'a [u8],
    if_missing: bool,
    staging: &mut Vec<u8>,
) -> io::Result<u64> {
    /// Pieces shorter than this on average are copied into `staging` instead.
    const SMALL_PIECE: usize = 512;
    /// `staging` is given back to the allocator when a call made it larger than this.
    const STAGING_KEEP: usize = 4 << 20;
    let mut pieces: Vec<io::IoSlice<'a>> = Vec::new();
    let mut total = 0usize;
    let mut put = |piece: &'a [u8], pieces: &mut Vec<io::IoSlice<'a>>| {
        if piece.is_empty() {
            return;
        }
        total += piece.len();
        pieces.push(io::IoSlice::new(piece));
    };
    let single = if let [d] = delim { Some(*d) } else { None };
    let ends = |s: &Span| {
        if_missing
            && !delim.is_empty()
            && data
                .get(s.start as usize..s.end as usize)
                .is_some_and(|p| p.ends_with(delim))
    };
    let mut i = 0;
    while i < spans.len() {
        let first = spans[i];
        let start = first.start as usize;
        let mut end = first.end as usize;
        i += 1;
        if ends(&first) {
            put(&data[start..end], &mut pieces);
            continue;
        }
        if let Some(d) = single {
            // Extend the run while the next record starts right after our delimiter.
            while i < spans.len()
                && data.get(end) == Some(&d)
                && spans[i].start as usize == end + 1
                && !ends(&spans[i])
            {
                end = spans[i].end as usize;
                i += 1;
            }
            if data.get(end) == Some(&d) {
                put(&data[start..end + 1], &mut pieces);
                continue;
            }
        }
        put(&data[start..end], &mut pieces);
        put(delim, &mut pieces);
    }
    match pieces.as_mut_slice() {
        [] => {}
        [one] => w.write_all(one)?,
        many if total / many.len() < SMALL_PIECE => {
            staging.clear();
            for p in many.iter() {
                staging.extend_from_slice(p);
            }
            let r = w.write_all(staging);
            staging.clear();
            if staging.capacity() > STAGING_KEEP {
                *staging = Vec::new();
            }
            r?;
        }
        many => write_all_vectored(w, many)?,
    }
    Ok(total as u64)
}

/// Writes every byte of `bufs`, in as few vectored writes as the writer allows (at most
/// `IOV_MAX` slices per call).
fn write_all_vectored<W: Write + ?Sized>(
    w: &mut W,
    mut bufs: &mut [io::IoSlice<'_>],
) -> io::Result<()> {
    /// Linux's `IOV_MAX`.
    const IOV_MAX: usize = 1024;
    io::IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let n = bufs.len().min(IOV_MAX);
        match w.write_vectored(&bufs[..n]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "failed to write whole buffer",
                ));
            }
            Ok(written) => io::IoSlice::advance_slices(&mut bufs, written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Bytes that `spans` take as lines with a delimiter of `delim_len` bytes.
pub fn line_bytes(spans: &[Span], delim_len: usize) -> u64 {
    spans.iter().map(|s| (s.len() + delim_len) as u64).sum()
}

/// Bytes one record takes as a line written by [`write_lines_with`].
pub fn line_len(payload: &[u8], delim: &[u8], if_missing: bool) -> usize {
    if if_missing && payload.ends_with(delim) {
        payload.len()
    } else {
        payload.len() + delim.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans_of(text: &[u8]) -> Vec<Span> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, &b) in text.iter().enumerate() {
            if b == b'\n' || b == b'|' {
                if i > start {
                    out.push(Span {
                        start: start as u32,
                        end: i as u32,
                    });
                }
                start = i + 1;
            }
        }
        if start < text.len() {
            out.push(Span {
                start: start as u32,
                end: text.len() as u32,
            });
        }
        out
    }

    /// Counts write calls, to check that runs become single writes.
    struct Counting(Vec<u8>, usize);
    impl Write for Counting {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.extend_from_slice(buf);
            self.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_with_mixed_delimiters_come_out_uniform() {
        let data = b"a\nbb|ccc\n\nd";
        let spans = spans_of(data);
        let mut w = Counting(Vec::new(), 0);
        let n = write_lines(&mut w, data, &spans, b"\n", &mut Vec::new()).unwrap();
        assert_eq!(w.0, b"a\nbb\nccc\nd\n");
        assert_eq!(n, w.0.len() as u64);
        let mut w = Counting(Vec::new(), 0);
        write_lines(&mut w, data, &spans, b"\r\n", &mut Vec::new()).unwrap();
        assert_eq!(w.0, b"a\r\nbb\r\nccc\r\nd\r\n");
        assert_eq!(line_bytes(&spans, 2), w.0.len() as u64);
    }

    #[test]
    fn a_large_contiguous_run_is_one_write() {
        let mut data = Vec::new();
        for i in 0..10_000 {
            data.extend_from_slice(format!("record-{i}\n").as_bytes());
        }
        let spans = spans_of(&data);
        let mut w = Counting(Vec::new(), 0);
        write_lines(&mut w, &data, &spans, b"\n", &mut Vec::new()).unwrap();
        assert_eq!(w.0, data);
        assert_eq!(w.1, 1);
    }

    /// Takes at most `limit` bytes per call, vectored or not, counting calls and slices.
    struct Vectored {
        out: Vec<u8>,
        calls: usize,
        slices: usize,
        limit: usize,
    }
    impl Vectored {
        fn taking(limit: usize) -> Vectored {
            Vectored {
                out: Vec::new(),
                calls: 0,
                slices: 0,
                limit,
            }
        }
    }

    impl Write for Vectored {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[io::IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            self.slices = self.slices.max(bufs.len());
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.limit - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == self.limit {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Lines of `len` bytes (`len - 1` payload bytes and `\n`) numbered from 0, and the spans
    /// of every one whose number is not a multiple of `drop_every`.
    fn filtered(count: usize, len: usize, drop_every: usize) -> (Vec<u8>, Vec<Span>, Vec<u8>) {
        let mut data = Vec::new();
        let mut spans = Vec::new();
        let mut expected = Vec::new();
        for i in 0..count {
            let line = format!("{i:0>width$}\n", width = len - 1);
            let start = data.len() as u32;
            data.extend_from_slice(line.as_bytes());
            if i % drop_every != 0 {
                spans.push(Span {
                    start,
                    end: data.len() as u32 - 1,
                });
                expected.extend_from_slice(line.as_bytes());
            }
        }
        (data, spans, expected)
    }

    #[test]
    fn runs_between_dropped_records_go_out_in_one_vectored_write() {
        // Runs of 10 lines of 100 bytes: large pieces, written without a copy.
        let (data, spans, expected) = filtered(1000, 100, 11);
        let mut w = Vectored::taking(usize::MAX);
        let mut staging = Vec::new();
        let n = write_lines(&mut w, &data, &spans, b"\n", &mut staging).unwrap();
        assert_eq!(w.out, expected);
        assert_eq!(n, expected.len() as u64);
        assert_eq!(w.calls, 1);
        assert_eq!(w.slices, 91);
        assert!(staging.is_empty());
    }

    #[test]
    fn small_pieces_are_staged_into_one_write() {
        // Every other 8-byte line dropped: pieces of 8 bytes are copied, then written at once.
        let (data, spans, expected) = filtered(1000, 8, 2);
        let mut w = Vectored::taking(usize::MAX);
        let mut staging = Vec::new();
        write_lines(&mut w, &data, &spans, b"\n", &mut staging).unwrap();
        assert_eq!(w.out, expected);
        assert_eq!((w.calls, w.slices), (1, 1));
        assert!(staging.is_empty());
    }

    #[test]
    fn partial_vectored_writes_resume_where_they_stopped() {
        // A payload and a delimiter slice per record, more slices than IOV_MAX, and a writer
        // that takes 777 bytes per call.
        let (data, spans, expected) = filtered(3000, 2000, 2);
        let mut w = Vectored::taking(777);
        write_lines(&mut w, &data, &spans, b"\r\n", &mut Vec::new()).unwrap();
        let crlf = String::from_utf8(expected).unwrap().replace('\n', "\r\n");
        assert_eq!(w.out, crlf.as_bytes());
        assert_eq!(w.slices, 1024);
    }

    #[test]
    fn a_delimiter_a_record_ends_with_is_not_doubled_when_asked() {
        let data = b"a\nb\nc\n\nd";
        // Records "a\n" (its own newline inside), "b", "c\n", "d".
        let spans = [
            Span { start: 0, end: 2 },
            Span { start: 2, end: 3 },
            Span { start: 4, end: 6 },
            Span { start: 7, end: 8 },
        ];
        let mut w = Counting(Vec::new(), 0);
        let n = write_lines_with(&mut w, data, &spans, b"\n", true, &mut Vec::new()).unwrap();
        assert_eq!(w.0, b"a\nb\nc\nd\n");
        assert_eq!(n, w.0.len() as u64);
        let sum: usize = spans
            .iter()
            .map(|s| line_len(&data[s.start as usize..s.end as usize], b"\n", true))
            .sum();
        assert_eq!(sum, w.0.len());
        let mut w = Counting(Vec::new(), 0);
        write_lines_with(&mut w, data, &spans, b"\n", false, &mut Vec::new()).unwrap();
        assert_eq!(w.0, b"a\n\nb\nc\n\nd\n");
        // An empty delimiter writes the payloads back to back.
        let mut w = Counting(Vec::new(), 0);
        write_lines_with(&mut w, data, &spans, b"", true, &mut Vec::new()).unwrap();
        assert_eq!(w.0, b"a\nbc\nd");
        // A multi-byte delimiter.
        let data = b"x\r\ny";
        let spans = [Span { start: 0, end: 3 }, Span { start: 3, end: 4 }];
        let mut w = Counting(Vec::new(), 0);
        write_lines_with(&mut w, data, &spans, b"\r\n", true, &mut Vec::new()).unwrap();
        assert_eq!(w.0, b"x\r\ny\r\n");
    }
}
