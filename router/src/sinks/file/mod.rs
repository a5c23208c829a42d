//! The file sink: records as delimited lines in local files.
//!
//! Owns the output files: path templates (one file per partition key / attribute / hour),
//! a cap on open files (least recently used is closed), rotation by size and age (the full file
//! is renamed with a sequence suffix, never overwriting anything), gzip/zstd compression, the
//! fsync policy and an optional write rate limit. Files are opened in append mode, so a restart
//! continues a file instead of truncating it.
//!
//! Every decision (which file to open or close, when to rotate, how many records fit, when to
//! fsync, how long to wait for the rate limit, the next timer) is [`plan::Planner`]'s, which
//! takes `now` and does no I/O; this module reads the clock, does what it answers (create
//! directories, open, append, finish compressors, fsync, rename, sleep) and groups a batch's
//! records by the path they render to.

pub mod config;
pub mod plan;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::core::record::{Batch, Span};
use crate::core::template::{max_rotation_seq, rotated_path};
use crate::sinks::{BlockingSink, WriteFailure, write_lines_with};
pub use config::{Compression, FileSinkConfig, Fsync};
use plan::{Planner, Rules, Step};

/// An output stream: a file, possibly behind a compressor.
enum Output {
    Plain(File),
    Gzip(flate2::write::GzEncoder<File>),
    Zstd(zstd::stream::write::Encoder<'static, File>),
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Plain(f) => f.write(buf),
            Output::Gzip(g) => g.write(buf),
            Output::Zstd(z) => z.write(buf),
        }
    }

    /// A plain file takes all slices in one `writev`; a compressor takes them one by one.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Output::Plain(f) => f.write_vectored(bufs),
            Output::Gzip(_) | Output::Zstd(_) => {
                let mut n = 0;
                for b in bufs {
                    self.write_all(b)?;
                    n += b.len();
                }
                Ok(n)
            }
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::Plain(f) => f.write_all(buf),
            Output::Gzip(g) => g.write_all(buf),
            Output::Zstd(z) => z.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Plain(f) => f.flush(),
            Output::Gzip(g) => g.flush(),
            Output::Zstd(z) => z.flush(),
        }
    }
}

impl Output {
    fn open(file: File, compression: Compression) -> io::Result<Output> {
        Ok(match compression {
            Compression::None => Output::Plain(file),
            Compression::Gzip(level) => Output::Gzip(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::new(level),
            )),
            Compression::Zstd(level) => {
                Output::Zstd(zstd::stream::write::Encoder::new(file, level)?)
            }
        })
    }

    /// Ends the compressed stream and returns the file.
    fn finish(self) -> io::Result<File> {
        match self {
            Output::Plain(f) => Ok(f),
            Output::Gzip(g) => g.finish(),
            Output::Zstd(z) => z.finish(),
        }
    }

    fn file(&self) -> &File {
        match self {
            Output::Plain(f) => f,
            Output::Gzip(g) => g.get_ref(),
            Output::Zstd(z) => z.get_ref(),
        }
    }
}

/// The file sink.
pub struct FileSink {
    name: String,
    cfg: FileSinkConfig,
    /// The open files and every decision about them.
    plan: Planner<Output>,
    /// Next rotation sequence number per path, once the directory has been looked at.
    next_seq: HashMap<PathBuf, u64>,
    staging: Vec<u8>,
    path_buf: String,
}

impl FileSink {
    /// A file sink named `name` (for messages); opens nothing until the first record.
    pub fn new(name: &str, cfg: FileSinkConfig) -> FileSink {
        FileSink {
            name: name.to_owned(),
            plan: Planner::new(Rules::from(&cfg), Instant::now()),
            cfg,
            next_seq: HashMap::new(),
            staging: Vec::with_capacity(64 * 1024),
            path_buf: String::new(),
        }
    }

    /// Opens (creating it and its directory if needed) the file at `path` for appending;
    /// returns it and its length.
    fn open(&mut self, path: &Path) -> io::Result<(Output, u64)> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| with_path(e, "creating directory", dir))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| with_path(e, "opening", path))?;
        let mut size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if self.cfg.compression == Compression::None && !ends_with(path, size, &self.cfg.delimiter)
        {
            // A torn last record (the process died inside a write) or a file another program
            // left unterminated: end that line, so the next record starts on a line of its own.
            tracing::warn!(
                "file sink `{}`: {} does not end with the delimiter (an earlier run stopped in \
                 the middle of a write?); ending its last line before appending",
                self.name,
                path.display()
            );
            (&file)
                .write_all(&self.cfg.delimiter)
                .map_err(|e| with_path(e, "writing", path))?;
            size += self.cfg.delimiter.len() as u64;
        }
        let out = Output::open(file, self.cfg.compression)?;
        Ok((out, size))
    }

    /// Finishes and closes one file the planner let go of (fsync unless the policy is `never`).
    fn close_file(&self, path: &Path, out: Output) -> io::Result<()> {
        let file = out.finish().map_err(|e| with_path(e, "finishing", path))?;
        if self.plan.sync_on_close() {
            file.sync_all().map_err(|e| with_path(e, "syncing", path))?;
        }
        Ok(())
    }

    /// Closes the file at `path` and renames it to the next free rotation name.
    fn rotate(&mut self, path: &Path, out: Output) -> io::Result<()> {
        self.close_file(path, out)?;
        if !path.exists() {
            return Ok(());
        }
        let seq = match self.next_seq.get(path) {
            Some(&s) => s,
            None => {
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
                    _ => PathBuf::from("."),
                };
                let names: Vec<std::ffi::OsString> = std::fs::read_dir(&dir)
                    .map_err(|e| with_path(e, "listing", &dir))?
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .collect();
                max_rotation_seq(path, names.iter().map(|n| n.as_os_str())) + 1
            }
        };
        let mut seq = seq;
        let mut target = rotated_path(path, seq);
        // Never overwrite: skip names that appeared since we looked.
        while target.exists() {
            seq += 1;
            target = rotated_path(path, seq);
        }
        std::fs::rename(path, &target).map_err(|e| with_path(e, "renaming", path))?;
        self.next_seq.insert(path.to_owned(), seq + 1);
        Ok(())
    }

    /// Writes `spans` of `data` to the file at `path`, doing what the planner answers (open,
    /// rotate, write, wait for the rate limit) until all are written. On an error, returns it
    /// with the number of records written before it, and whether it is transient: opening or
    /// rotating failed for want of a resource that frees up (descriptors), before anything of
    /// the remaining records was written, so they can be retried as they are.
    fn write_group(
        &mut self,
        path: &Path,
        data: &[u8],
        spans: &[Span],
    ) -> Result<(), (io::Error, usize, bool)> {
        let mut done = 0;
        let untouched = |e: io::Error, done: usize| {
            let transient = crate::sources::guard::is_exhaustion(&e);
            (e, done, transient)
        };
        while done < spans.len() {
            let now = Instant::now();
            match self.plan.step(path, data, &spans[done..], now) {
                Step::Open { evict } => {
                    if let Some((lru, out)) = evict {
                        self.close_file(&lru, out).map_err(|e| untouched(e, done))?;
                    }
                    let (out, size) = self.open(path).map_err(|e| untouched(e, done))?;
                    self.plan.opened(path.to_owned(), out, size, Instant::now());
                }
                Step::Rotate { file, .. } => {
                    self.rotate(path, file).map_err(|e| untouched(e, done))?;
                }
                Step::Write { records, file } => {
                    let part = &spans[done..done + records];
                    let bytes = write_lines_with(
                        file,
                        data,
                        part,
                        &self.cfg.delimiter,
                        self.cfg.delimiter_if_missing,
                        &mut self.staging,
                    )
                    .map_err(|e| (with_path(e, "writing", path), done, false))?;
                    done += records;
                    let now = if self.plan.limits_rate() {
                        Instant::now()
                    } else {
                        now
                    };
                    let wait = self.plan.wrote(path, bytes, now);
                    if !wait.is_zero() {
                        // The rate limit: the sink thread has nothing else to do meanwhile.
                        std::thread::sleep(wait);
                    }
                }
            }
        }
        Ok(())
    }

    /// Syncs every file written since its last sync.
    fn sync_dirty(&mut self) -> io::Result<()> {
        self.plan.sync_dirty(|path, out| {
            out.flush().map_err(|e| with_path(e, "flushing", path))?;
            out.file()
                .sync_data()
                .map_err(|e| with_path(e, "syncing", path))
        })?;
        self.plan.synced(Instant::now());
        Ok(())
    }
}

/// True when the file at `path`, of `size` bytes, is empty or ends with `delim` (or cannot be
/// read: the sink only needs to write it).
fn ends_with(path: &Path, size: u64, delim: &[u8]) -> bool {
    use std::os::unix::fs::FileExt;
    let n = delim.len() as u64;
    if size == 0 || n == 0 {
        return true;
    }
    if size < n {
        return false;
    }
    let mut tail = vec![0u8; delim.len()];
    match File::open(path).and_then(|f| f.read_exact_at(&mut tail, size - n)) {
        Ok(()) => tail == delim,
        Err(_) => true,
    }
}

/// `e` with what was being done to which path; the original error stays its source (so
/// [`crate::sources::guard::is_exhaustion`] still sees its errno).
fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(
        e.kind(),
        PathError {
            what: format!("{what} {}", path.display()),
            source: e,
        },
    )
}

/// An I/O error and what it happened to.
#[derive(Debug)]
struct PathError {
    what: String,
    source: io::Error,
}

impl std::fmt::Display for PathError {
    /// What was being done; the error itself is the source (`{:#}` shows both).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for PathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl BlockingSink for FileSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), WriteFailure> {
        let data = batch.data().clone();
        let fail =
            |e: io::Error, unwritten: Vec<usize>, transient: bool, name: &str| WriteFailure {
                error: anyhow::Error::new(e).context(format!("file sink `{name}`")),
                unwritten,
                transient,
            };
        let timed = self.cfg.path.at_time(batch.origin().arrival_unix_nanos);
        if timed.is_fixed() {
            timed.render(None, "", &|_| None, &mut self.path_buf);
            let path = PathBuf::from(&self.path_buf);
            if let Err((e, done, transient)) = self.write_group(&path, &data, batch.spans()) {
                return Err(fail(
                    e,
                    (done..batch.len()).collect(),
                    transient,
                    &self.name,
                ));
            }
        } else {
            // Group the records by the path they render to, keeping their order.
            let mut groups: Vec<(PathBuf, Vec<usize>)> = Vec::new();
            let mut index: HashMap<PathBuf, usize> = HashMap::new();
            let source = &*batch.origin().source;
            let mut buf = std::mem::take(&mut self.path_buf);
            for (i, rec) in batch.records().enumerate() {
                let key = self.cfg.partition.key(&rec);
                timed.render(
                    key.as_deref(),
                    source,
                    &|name| rec.attribute(name).map(str::as_bytes),
                    &mut buf,
                );
                let g = match index.get(Path::new(&buf)) {
                    Some(&g) => g,
                    None => {
                        groups.push((PathBuf::from(&buf), Vec::new()));
                        index.insert(PathBuf::from(&buf), groups.len() - 1);
                        groups.len() - 1
                    }
                };
                groups[g].1.push(i);
            }
            self.path_buf = buf;
            for (g, (path, idx)) in groups.iter().enumerate() {
                let spans: Vec<Span> = idx.iter().map(|&i| batch.spans()[i]).collect();
                if let Err((e, done, transient)) = self.write_group(path, &data, &spans) {
                    let mut unwritten: Vec<usize> = idx[done..].to_vec();
                    for (_, later) in &groups[g + 1..] {
                        unwritten.extend_from_slice(later);
                    }
                    unwritten.sort_unstable();
                    return Err(fail(e, unwritten, transient, &self.name));
                }
            }
        }
        if self.plan.sync_after_batch()
            && let Err(e) = self.sync_dirty()
        {
            // Everything was written; only the fsync failed. Report it as fatal without
            // dead-lettering records that are in the file.
            return Err(fail(e, Vec::new(), false, &self.name));
        }
        Ok(())
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.plan.next_deadline()
    }

    fn on_timer(&mut self, now: Instant) -> io::Result<()> {
        while let Some((path, out)) = self.plan.take_aged(now) {
            self.rotate(&path, out)?;
        }
        if self.plan.fsync_due(now) {
            self.sync_dirty()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Plain files are written straight to the file; compressors hold output back.
        for (_, out) in self.plan.files_mut() {
            out.flush()?;
        }
        Ok(())
    }

    fn close(&mut self) -> io::Result<()> {
        while let Some((path, out)) = self.plan.pop_lru() {
            self.close_file(&path, out)?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("name", &self.name)
            .field("open_files", &self.plan.open_files())
            .finish()
    }
}
