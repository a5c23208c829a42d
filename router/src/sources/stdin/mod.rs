//! The stdin source: records from standard input (or any injected reader, for tests).
//!
//! Reads into one growing buffer, frames complete lines with [`LineFramer`], and freezes the
//! consumed bytes into a batch's chunk: records are spans into what was read, never copies.
//! When input is immediately available it keeps reading until a chunk is full, so batches stay
//! large under load and small (prompt) when input trickles in. Oversized and (with `json`
//! framing) invalid lines go to the dead-letter sink with their line number.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use crate::config::reader::{Diagnostics, Section};
use crate::core::accounting::Counters;
use crate::core::dead_letter::DeadLetter;
use crate::core::framing::{FramerConfig, LineFramer, Rejected, Why, json_errors};
use crate::core::record::{Batch, Origin, Position, PositionBase, Span};
use crate::topology::{DeadLetterClosed, DeadLetterTx, Outlet};

/// How the byte stream is cut into records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One record per line (LF or CRLF); payloads are arbitrary bytes.
    Lines,
    /// One JSON document per line; invalid lines are dead-lettered.
    Json,
}

/// Settings of the stdin source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StdinConfig {
    /// Framing.
    pub framing: Framing,
    /// Largest record payload; longer lines are dead-lettered.
    pub max_record_bytes: usize,
    /// Skip empty lines.
    pub skip_empty: bool,
    /// Target chunk size: how much is read before a batch is passed on (when input is
    /// immediately available).
    pub read_bytes: usize,
}

impl Default for StdinConfig {
    fn default() -> Self {
        StdinConfig {
            framing: Framing::Lines,
            max_record_bytes: 1 << 20,
            skip_empty: true,
            read_bytes: 1 << 20,
        }
    }
}

impl StdinConfig {
    /// Reads a `kind = "stdin"` source table.
    pub fn parse(s: &mut Section<'_>, d: &mut Diagnostics) -> StdinConfig {
        let def = StdinConfig::default();
        let framing = match s.choice(d, "framing", &["lines", "json"], "lines") {
            "json" => Framing::Json,
            _ => Framing::Lines,
        };
        StdinConfig {
            framing,
            max_record_bytes: s.size_or(
                d,
                "max_record_bytes",
                def.max_record_bytes as u64,
                1..=(64 << 20),
            ) as usize,
            skip_empty: s.bool_or(d, "skip_empty", def.skip_empty),
            read_bytes: s.size_or(
                d,
                "read_bytes",
                def.read_bytes as u64,
                (4 << 10)..=(16 << 20),
            ) as usize,
        }
    }
}

/// Something to read records from.
pub trait Input: Send {
    /// Reads at most `max` bytes, appending them to `buf`. `Ok(0)` is end of input.
    fn read_into(&mut self, buf: &mut BytesMut, max: usize) -> io::Result<usize>;

    /// Waits up to `timeout` for input (or end of input) to be available. `Ok(false)` means
    /// nothing yet. Readers that cannot tell return `Ok(true)`.
    fn wait_readable(&mut self, _timeout: Duration) -> io::Result<bool> {
        Ok(true)
    }

    /// True when a read would return at once. Readers that cannot tell return `false`, which
    /// makes every read its own batch.
    fn ready_now(&mut self) -> bool {
        false
    }
}

fn read_appending(r: &mut impl Read, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
    let len = buf.len();
    buf.resize(len + max, 0);
    loop {
        match r.read(&mut buf[len..]) {
            Ok(n) => {
                buf.truncate(len + n);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                buf.truncate(len);
                return Err(e);
            }
        }
    }
}

impl Input for Box<dyn Input> {
    fn read_into(&mut self, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
        (**self).read_into(buf, max)
    }

    fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool> {
        (**self).wait_readable(timeout)
    }

    fn ready_now(&mut self) -> bool {
        (**self).ready_now()
    }
}

/// Any `Read` as an [`Input`] (used by tests with in-memory data).
pub struct ReadInput<R>(pub R);

impl<R: Read + Send> Input for ReadInput<R> {
    fn read_into(&mut self, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
        read_appending(&mut self.0, buf, max)
    }
}

/// The process's standard input, read straight from file descriptor 0 (no extra buffering) and
/// polled so that shutdown is noticed even while no input arrives.
pub struct StdinInput;

impl StdinInput {
    /// Standard input. When it is a pipe, the pipe's buffer is enlarged towards `read_bytes`
    /// (up to the system's `pipe-max-size`, 1 MiB by default) so that each read returns more:
    /// fewer reads, fewer batches and fewer thread switches per byte. Failing that is harmless.
    pub fn open(read_bytes: usize) -> StdinInput {
        let fd = rustix::stdio::stdin();
        if let Ok(size) = rustix::pipe::fcntl_getpipe_size(fd)
            && size < read_bytes
        {
            let _ = rustix::pipe::fcntl_setpipe_size(fd, read_bytes.min(1 << 20));
        }
        StdinInput
    }

    fn poll(timeout: Duration) -> io::Result<bool> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let fd = rustix::stdio::stdin();
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let ts = Timespec::try_from(timeout).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        match poll(&mut fds, Some(&ts)) {
            Ok(n) => Ok(n > 0),
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// Reads from file descriptor 0 straight into the buffer's spare capacity, without zeroing it
/// first (zeroing every chunk cost ~4% of a stdin -> file run).
#[allow(unsafe_code)]
fn read_fd0(buf: &mut BytesMut, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    let len = buf.len();
    let spare = &mut buf.spare_capacity_mut()[..max];
    let n = loop {
        match rustix::io::read(rustix::stdio::stdin(), &mut *spare) {
            Ok((init, _)) => break init.len(),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    // SAFETY: `read` initialized the first `n` bytes of the spare capacity (rustix returns
    // exactly that prefix as `init`), so `len + n` bytes are initialized, and `n <= max <=`
    // the spare capacity reserved above.
    unsafe { buf.set_len(len + n) };
    Ok(n)
}

impl Input for StdinInput {
    fn read_into(&mut self, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
        read_fd0(buf, max)
    }

    fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool> {
        StdinInput::poll(timeout)
    }

    fn ready_now(&mut self) -> bool {
        StdinInput::poll(Duration::ZERO).unwrap_or(false)
    }
}

/// Read buffers, recycled once every chunk cut from them has been written.
///
/// A chunk frozen out of a buffer shares its allocation; when the buffer runs out of room it is
/// parked here, and once the sinks have dropped all its chunks it is reclaimed whole instead of
/// allocating a new one. Reusing warm memory avoids the page faults and cache misses of a fresh
/// allocation per chunk. At most `MAX_PARKED` buffers are kept (beyond that the oldest is freed),
/// so the pool never holds more than the queues already allow in flight.
#[derive(Debug)]
pub(crate) struct BufferPool {
    capacity: usize,
    parked: std::collections::VecDeque<BytesMut>,
}

const MAX_PARKED: usize = 64;

impl BufferPool {
    fn new(capacity: usize) -> BufferPool {
        BufferPool {
            capacity,
            parked: std::collections::VecDeque::new(),
        }
    }

    /// An empty buffer with at least `capacity` bytes of room: a parked one whose chunks are
    /// all gone, or a new one. Other parked buffers that are free are released, so the pool
    /// holds no idle memory beyond what it hands out.
    fn take(&mut self) -> BytesMut {
        let capacity = self.capacity;
        let mut chosen: Option<BytesMut> = None;
        self.parked.retain_mut(|b| {
            if !b.try_reclaim(capacity) {
                return true;
            }
            if chosen.is_none() {
                chosen = Some(std::mem::take(b));
            }
            false
        });
        chosen.unwrap_or_else(|| BytesMut::with_capacity(capacity))
    }

    /// Parks an emptied buffer until its chunks are gone.
    fn give_back(&mut self, b: BytesMut) {
        debug_assert!(b.is_empty());
        if self.parked.len() >= MAX_PARKED {
            self.parked.pop_front();
        }
        self.parked.push_back(b);
    }
}

/// Why the source stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading failed.
    #[error("source `{source_name}`: reading input: {error}")]
    Read {
        /// The source.
        source_name: String,
        /// The I/O error.
        error: io::Error,
    },
    /// The dead-letter sink is gone.
    #[error("source `{0}`: {1}")]
    DeadLetter(String, DeadLetterClosed),
}

/// The stdin source.
pub struct StdinSource {
    name: Arc<str>,
    cfg: StdinConfig,
    counters: Arc<Counters>,
    outlet: Outlet,
    dead: DeadLetterTx,
    stop: Arc<AtomicBool>,
}

/// How often a source waiting for input checks for shutdown.
const STOP_POLL: Duration = Duration::from_millis(50);
/// Reads never ask for less than this (the buffer grows first).
const MIN_READ: usize = 16 << 10;

impl StdinSource {
    /// A source named `name` that passes batches to `outlet` until input ends or `stop` is set.
    pub fn new(
        name: &str,
        cfg: StdinConfig,
        counters: Arc<Counters>,
        outlet: Outlet,
        dead: DeadLetterTx,
        stop: Arc<AtomicBool>,
    ) -> StdinSource {
        StdinSource {
            name: Arc::from(name),
            cfg,
            counters,
            outlet,
            dead,
            stop,
        }
    }

    /// Reads until end of input (or until stopped), passing on every record read.
    ///
    /// When stopped, the complete lines already read are still passed on, and an unterminated
    /// last line is dead-lettered as incomplete: nothing read is dropped or passed on cut short.
    pub fn run(self, mut input: impl Input) -> Result<(), SourceError> {
        let mut framer = LineFramer::new(FramerConfig {
            max_record_bytes: self.cfg.max_record_bytes,
            skip_empty: self.cfg.skip_empty,
        });
        let chunk = self.cfg.read_bytes.max(MIN_READ);
        let mut pool = BufferPool::new(chunk);
        let mut buf = pool.take();
        let mut spans: Vec<Span> = Vec::new();
        let mut rejected: Vec<Rejected> = Vec::new();
        let read_err = |error| SourceError::Read {
            source_name: self.name.to_string(),
            error,
        };
        let mut eof = false;
        while !eof {
            let stopping = self.stop.load(Ordering::Relaxed);
            if stopping {
                // Frame what was read; an unterminated tail is reported, not passed on.
                let scanned = framer.scan(&buf, false, &mut spans, &mut rejected);
                rejected.extend(framer.abandon(&buf[scanned.consumed..]));
                let data = buf.split_to(scanned.consumed).freeze();
                self.pass_on(data, &mut spans, &mut rejected, scanned.first_line)?;
                break;
            } else {
                match input.wait_readable(STOP_POLL) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => return Err(read_err(e)),
                }
                // Read until a chunk's worth was read, or no more input is ready right now. A
                // batch is then at most a chunk plus the partial line carried over.
                let mut read_now = 0;
                loop {
                    if buf.capacity() - buf.len() < MIN_READ {
                        if read_now > 0 {
                            // Out of room after reading: pass on what is here first, so only
                            // the partial last line moves (growing would copy it all).
                            break;
                        }
                        if buf.len() < chunk / 2 {
                            // Move the partial line to a fresh (or recycled) buffer.
                            let mut next = pool.take();
                            next.extend_from_slice(&buf);
                            buf.clear();
                            pool.give_back(std::mem::replace(&mut buf, next));
                        } else {
                            // A long line: grow this buffer (bounded by the framer's limit).
                            buf.reserve(chunk.max(framer.max_line_buffer() / 4));
                        }
                    }
                    let want = (buf.capacity() - buf.len()).min(chunk - read_now);
                    let n = input.read_into(&mut buf, want).map_err(read_err)?;
                    if n == 0 {
                        eof = true;
                        break;
                    }
                    read_now += n;
                    // (Less than MIN_READ left of the chunk: not worth another read.)
                    if chunk - read_now < MIN_READ || !input.ready_now() {
                        break;
                    }
                }
            }
            let scanned = framer.scan(&buf, eof, &mut spans, &mut rejected);
            let data = buf.split_to(scanned.consumed).freeze();
            self.pass_on(data, &mut spans, &mut rejected, scanned.first_line)?;
        }
        Ok(())
    }

    fn pass_on(
        &self,
        data: Bytes,
        spans: &mut Vec<Span>,
        rejected: &mut Vec<Rejected>,
        first_line: u64,
    ) -> Result<(), SourceError> {
        let dl_err = |e| SourceError::DeadLetter(self.name.to_string(), e);
        let arrival = Instant::now();
        let arrival_unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let read = (spans.len() + rejected.len()) as u64;
        let read_bytes: u64 = spans.iter().map(|s| s.len() as u64).sum::<u64>()
            + rejected.iter().map(|r| r.size).sum::<u64>();
        self.counters.add_in(read, read_bytes);
        if !rejected.is_empty() {
            let letters = rejected
                .drain(..)
                .map(|r| DeadLetter {
                    reason: match r.why {
                        Why::TooLong => format!(
                            "source `{}`: record of {} bytes exceeds max_record_bytes ({})",
                            self.name, r.size, self.cfg.max_record_bytes
                        ),
                        Why::Incomplete => format!(
                            "source `{}`: incomplete record ({} bytes without a line end) when reading stopped for shutdown",
                            self.name, r.size
                        ),
                    },
                    source: self.name.clone(),
                    position: Position::Line(r.line),
                    size: r.size,
                    payload: Bytes::from(r.prefix),
                    truncated: true,
                    arrival_unix_nanos,
                })
                .collect();
            self.dead.send(letters, &self.counters).map_err(dl_err)?;
        }
        if spans.is_empty() {
            return Ok(());
        }
        let origin = Origin {
            source: self.name.clone(),
            arrival_unix_nanos,
            arrival,
            position: PositionBase::Line(first_line),
        };
        // The next batch likely holds about as many records: start it with that capacity.
        let next = Vec::with_capacity(spans.len() + spans.len() / 8);
        let mut batch = Batch::new(data, std::mem::replace(spans, next), origin);
        if self.cfg.framing == Framing::Json {
            let bad = json_errors(batch.data(), batch.spans());
            if !bad.is_empty() {
                let idx: Vec<usize> = bad.iter().map(|(i, _)| *i).collect();
                let positions = batch.positions(&idx);
                let letters = bad
                    .iter()
                    .zip(positions)
                    .map(|((i, msg), position)| {
                        let reason = format!("source `{}`: {msg}", self.name);
                        DeadLetter::of_record(&batch, *i, position, reason)
                    })
                    .collect();
                let mut keep = vec![true; batch.len()];
                for i in idx {
                    keep[i] = false;
                }
                batch.retain_mask(&keep);
                self.dead.send(letters, &self.counters).map_err(dl_err)?;
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.counters
            .add_out(batch.len() as u64, batch.payload_bytes());
        self.outlet
            .emit(batch, &self.dead, &self.counters)
            .map_err(dl_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_reuses_a_buffer_once_its_chunks_are_dropped() {
        let mut pool = BufferPool::new(1024);
        let mut b = pool.take();
        let base = b.as_ptr();
        b.extend_from_slice(&[7u8; 1000]);
        let chunk = b.split_to(1000).freeze();
        pool.give_back(b);
        // Still referenced by the chunk: a new buffer.
        let other = pool.take();
        assert_ne!(other.as_ptr(), base);
        drop(chunk);
        // Now free: the same memory comes back, with its full capacity.
        let again = pool.take();
        assert_eq!(again.as_ptr(), base);
        assert!(again.capacity() >= 1024);
        assert!(pool.parked.is_empty());
    }

    /// Always has input ready and returns at most `piece` bytes per read, so one read cycle
    /// fills a buffer over several reads that end anywhere in a line.
    struct Pieces {
        data: Vec<u8>,
        pos: usize,
        piece: usize,
    }

    impl Input for Pieces {
        fn read_into(&mut self, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
            let n = max.min(self.piece).min(self.data.len() - self.pos);
            buf.extend_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }

        fn ready_now(&mut self) -> bool {
            true
        }
    }

    #[test]
    fn uneven_reads_keep_every_line_and_batches_bounded() {
        use crate::topology::queue::{Limits, queue};
        let chunk = 16 << 10;
        // Lines of many lengths, a few of them longer than half a chunk (these grow a buffer).
        let mut data = Vec::new();
        let mut lines = Vec::new();
        for i in 0..3000usize {
            let len = if i % 500 == 499 {
                9000 + i
            } else {
                1 + i * 37 % 300
            };
            let line: Vec<u8> = (0..len).map(|k| b'a' + ((i + k) % 26) as u8).collect();
            data.extend_from_slice(&line);
            data.push(b'\n');
            lines.push(line);
        }
        let limits = Limits {
            records_max: 1 << 20,
            bytes_max: 1 << 30,
        };
        let (tx, rx) = queue::<Batch>(limits);
        let (dead_tx, dead_rx) = queue(limits);
        let cfg = StdinConfig {
            read_bytes: chunk,
            ..StdinConfig::default()
        };
        let dead = DeadLetterTx::new(dead_tx);
        for piece in [1000, 5000, 7001] {
            let input = Pieces {
                data: data.clone(),
                pos: 0,
                piece,
            };
            let source = StdinSource::new(
                "in",
                cfg,
                Arc::new(Counters::default()),
                Outlet::Stages(tx.clone()),
                dead.clone(),
                Arc::new(AtomicBool::new(false)),
            );
            source.run(input).unwrap();
            let mut got = Vec::new();
            while let Some(batch) = rx.try_recv() {
                // A batch is at most a chunk plus one line (a line that grew the buffer).
                let longest = batch.records().map(|r| r.payload.len()).max().unwrap_or(0);
                assert!(
                    batch.data().len() <= chunk + longest + 1,
                    "piece {piece}: a batch of {} bytes",
                    batch.data().len()
                );
                got.extend(batch.records().map(|r| r.payload.to_vec()));
            }
            assert_eq!(got, lines, "piece {piece}");
        }
        assert!(dead_rx.try_recv().is_none());
    }

    #[test]
    fn pool_parks_a_bounded_number_of_buffers() {
        let mut pool = BufferPool::new(64);
        let mut chunks = Vec::new();
        for _ in 0..MAX_PARKED + 10 {
            let mut b = pool.take();
            b.extend_from_slice(b"x");
            chunks.push(b.split_to(1).freeze());
            pool.give_back(b);
        }
        assert_eq!(pool.parked.len(), MAX_PARKED);
    }
}
