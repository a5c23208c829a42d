//! The stdin source: records from standard input (or any injected reader, for tests).
//!
//! Reads into one growing buffer, frames complete lines with [`LineFramer`], and freezes the
//! consumed bytes into a batch's chunk: records are spans into what was read, never copies.
//! When input is immediately available it keeps reading until a chunk is full, so batches stay
//! large under load and small (prompt) when input trickles in. Oversized and (with `json`
//! framing) invalid lines go to the dead-letter sink with their line number.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use crate::config::reader::{Diagnostics, Section};
use crate::core::accounting::Counters;
use crate::core::dead_letter::DeadLetter;
use crate::core::framing::{FramerConfig, LineFramer, Rejected, Why, json_errors};
use crate::core::record::{Batch, Origin, Position, PositionBase, Span};
use crate::shutdown::Shutdown;
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

/// What [`Input::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// Input (or its end) can be read.
    Input,
    /// Shutdown was triggered.
    Stopped,
    /// The timeout passed (or a signal interrupted the wait) with nothing to read.
    Nothing,
}

/// Something to read records from.
pub trait Input: Send {
    /// Reads at most `max` bytes, appending them to `buf`. `Ok(0)` is end of input.
    fn read_into(&mut self, buf: &mut BytesMut, max: usize) -> io::Result<usize>;

    /// Waits until input (or end of input) can be read, until `shutdown` is triggered (checked
    /// first), or until `timeout` passed (`None`: no limit). Readers that cannot tell whether
    /// input is there answer [`Ready::Input`] at once (they notice shutdown only between reads).
    fn wait(
        &mut self,
        _timeout: Option<Duration>,
        shutdown: Option<&Shutdown>,
    ) -> io::Result<Ready> {
        Ok(if shutdown.is_some_and(Shutdown::is_triggered) {
            Ready::Stopped
        } else {
            Ready::Input
        })
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

    fn wait(
        &mut self,
        timeout: Option<Duration>,
        shutdown: Option<&Shutdown>,
    ) -> io::Result<Ready> {
        (**self).wait(timeout, shutdown)
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

/// The process's standard input (or, for tests, any pipe), read straight from its file
/// descriptor (no extra buffering). Waiting polls it together with the shutdown signal's wake
/// descriptor, so shutdown is noticed at once while no input arrives.
pub struct StdinInput {
    /// The descriptor read; `None`: file descriptor 0.
    fd: Option<OwnedFd>,
}

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
        StdinInput { fd: None }
    }

    /// Reads `fd` (the read end of a pipe, say) exactly as standard input is read.
    pub fn from_fd(fd: OwnedFd) -> StdinInput {
        StdinInput { fd: Some(fd) }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match &self.fd {
            Some(fd) => fd.as_fd(),
            None => rustix::stdio::stdin(),
        }
    }

    /// Polls the input (and `wake`, if given) for up to `timeout` (`None`: no limit).
    fn poll(&self, timeout: Option<Duration>, wake: Option<&OwnedFd>) -> io::Result<Ready> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let ts = timeout.map(|t| {
            Timespec::try_from(t).unwrap_or(Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            })
        });
        let input = self.fd();
        let mut fds = [
            PollFd::new(&input, PollFlags::IN),
            PollFd::new(&input, PollFlags::IN),
        ];
        let n = match wake {
            Some(w) => {
                fds[1] = PollFd::new(w, PollFlags::IN);
                2
            }
            None => 1,
        };
        match poll(&mut fds[..n], ts.as_ref()) {
            Ok(0) | Err(rustix::io::Errno::INTR) => Ok(Ready::Nothing),
            // Shutdown first: with input still arriving, reading stops all the same.
            Ok(_) if n == 2 && !fds[1].revents().is_empty() => Ok(Ready::Stopped),
            Ok(_) => Ok(Ready::Input),
            Err(e) => Err(e.into()),
        }
    }
}

/// Reads from `fd` straight into the buffer's spare capacity, without zeroing it first (zeroing
/// every chunk cost ~4% of a stdin -> file run).
#[allow(unsafe_code)]
pub(crate) fn read_fd(fd: BorrowedFd<'_>, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    let len = buf.len();
    let spare = &mut buf.spare_capacity_mut()[..max];
    let n = loop {
        match rustix::io::read(fd, &mut *spare) {
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
        read_fd(self.fd(), buf, max)
    }

    fn wait(
        &mut self,
        timeout: Option<Duration>,
        shutdown: Option<&Shutdown>,
    ) -> io::Result<Ready> {
        match shutdown {
            Some(s) if s.is_triggered() => Ok(Ready::Stopped),
            Some(s) => {
                let wake = s.wake_fd()?;
                self.poll(timeout, Some(&wake))
            }
            None => self.poll(timeout, None),
        }
    }

    fn ready_now(&mut self) -> bool {
        matches!(self.poll(Some(Duration::ZERO), None), Ok(Ready::Input))
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
    /// A pool of buffers of `capacity` bytes.
    pub(crate) fn new(capacity: usize) -> BufferPool {
        BufferPool {
            capacity,
            parked: std::collections::VecDeque::new(),
        }
    }

    /// An empty buffer with at least `capacity` bytes of room: a parked one whose chunks are
    /// all gone, or a new one. Other parked buffers that are free are released, so the pool
    /// holds no idle memory beyond what it hands out.
    pub(crate) fn take(&mut self) -> BytesMut {
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
    pub(crate) fn give_back(&mut self, b: BytesMut) {
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
    shutdown: Shutdown,
}
/// Reads never ask for less than this (the buffer grows first).
const MIN_READ: usize = 16 << 10;

impl StdinSource {
    /// A source named `name` that passes batches to `outlet` until input ends or `shutdown` is
    /// triggered.
    pub fn new(
        name: &str,
        cfg: StdinConfig,
        counters: Arc<Counters>,
        outlet: Outlet,
        dead: DeadLetterTx,
        shutdown: Shutdown,
    ) -> StdinSource {
        StdinSource {
            name: Arc::from(name),
            cfg,
            counters,
            outlet,
            dead,
            shutdown,
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
            // Waits for input or shutdown, whichever comes first (no timeout: shutdown wakes it).
            match input.wait(None, Some(&self.shutdown)) {
                Ok(Ready::Input) => {}
                Ok(Ready::Nothing) => continue,
                Ok(Ready::Stopped) => {
                    // Frame what was read; an unterminated tail is reported, not passed on.
                    let scanned = framer.scan(&buf, false, &mut spans, &mut rejected);
                    rejected.extend(framer.abandon(&buf[scanned.consumed..]));
                    let data = buf.split_to(scanned.consumed).freeze();
                    self.pass_on(data, &mut spans, &mut rejected, scanned.first_line)?;
                    break;
                }
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
        use crate::queue::{Limits, queue};
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
                Shutdown::new(),
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

    #[test]
    fn waiting_on_a_pipe_sees_input_then_shutdown_first() {
        use std::io::Write as _;
        let (r, w) = rustix::pipe::pipe().unwrap();
        let mut input = StdinInput::from_fd(r);
        let mut w = std::fs::File::from(w);
        let shutdown = Shutdown::new();
        let short = Some(Duration::from_millis(1));
        assert_eq!(input.wait(short, Some(&shutdown)).unwrap(), Ready::Nothing);
        assert!(!input.ready_now());
        w.write_all(b"x\n").unwrap();
        assert_eq!(input.wait(None, Some(&shutdown)).unwrap(), Ready::Input);
        assert!(input.ready_now());
        // With input waiting too, shutdown wins: reading stops.
        shutdown.trigger();
        assert_eq!(input.wait(None, Some(&shutdown)).unwrap(), Ready::Stopped);
        // Without a shutdown signal (`send`), only input counts.
        assert_eq!(input.wait(None, None).unwrap(), Ready::Input);
    }

    #[test]
    fn a_source_waiting_for_input_stops_when_shutdown_is_triggered() {
        use crate::queue::{Limits, queue};
        use std::io::Write as _;
        let limits = Limits {
            records_max: 1000,
            bytes_max: 1 << 20,
        };
        let (tx, rx) = queue::<Batch>(limits);
        let (dead_tx, dead_rx) = queue(limits);
        let (r, w) = rustix::pipe::pipe().unwrap();
        let mut w = std::fs::File::from(w);
        // Two lines and the start of a third; the pipe stays open.
        w.write_all(b"one\ntwo\nthr").unwrap();
        let shutdown = Shutdown::new();
        let source = StdinSource::new(
            "in",
            StdinConfig::default(),
            Arc::new(Counters::default()),
            Outlet::Stages(tx),
            DeadLetterTx::new(dead_tx),
            shutdown.clone(),
        );
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(source.run(StdinInput::from_fd(r)).is_ok());
        });
        let long = Duration::from_secs(60);
        let batch = rx
            .blocking_recv_until(std::time::Instant::now() + long)
            .expect("in time")
            .expect("the complete lines");
        let lines: Vec<&[u8]> = batch.records().map(|r| r.payload).collect();
        assert_eq!(lines, [&b"one"[..], b"two"]);
        // The source now waits in `poll` with no timeout; the trigger wakes it.
        assert!(done.try_recv().is_err());
        shutdown.trigger();
        assert!(done.recv_timeout(long).unwrap());
        let letters = dead_rx.try_recv().expect("the cut line, dead-lettered").0;
        assert_eq!(letters.len(), 1);
        assert!(letters[0].reason.contains("incomplete record"));
        drop(w);
    }
}
