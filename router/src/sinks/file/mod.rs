//! The file sink: records as delimited lines in local files.
//!
//! Owns the output files: path templates (one file per partition key / attribute / hour),
//! a cap on open files (least recently used is closed), rotation by size and age (the full file
//! is renamed with a sequence suffix, never overwriting anything), gzip/zstd compression, the
//! fsync policy and an optional write rate limit. Files are opened in append mode, so a restart
//! continues a file instead of truncating it.

pub mod config;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::core::rate_limit::TokenBucket;
use crate::core::record::{Batch, Span};
use crate::core::template::{max_rotation_seq, rotated_path};
use crate::sinks::{BlockingSink, WriteFailure, line_len, write_lines_with};
pub use config::{Compression, FileSinkConfig, Fsync};

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

struct OpenFile {
    out: Output,
    /// Bytes in the file (at open: its length on disk; then plus what we wrote, uncompressed).
    size: u64,
    opened_at: Instant,
    last_used: u64,
    /// Written since the last fsync.
    dirty: bool,
}

/// The file sink.
pub struct FileSink {
    name: String,
    cfg: FileSinkConfig,
    files: HashMap<PathBuf, OpenFile>,
    /// Next rotation sequence number per path, once the directory has been looked at.
    next_seq: HashMap<PathBuf, u64>,
    use_counter: u64,
    staging: Vec<u8>,
    limiter: Option<TokenBucket>,
    last_fsync: Instant,
    path_buf: String,
}

impl FileSink {
    /// A file sink named `name` (for messages); opens nothing until the first record.
    pub fn new(name: &str, cfg: FileSinkConfig) -> FileSink {
        let now = Instant::now();
        let limiter = (cfg.rate_limit_bytes_per_sec > 0).then(|| {
            // A burst of a tenth of a second keeps the rate smooth at any batch size.
            let rate = cfg.rate_limit_bytes_per_sec;
            TokenBucket::new(rate, (rate / 10).max(1), now)
        });
        FileSink {
            name: name.to_owned(),
            cfg,
            files: HashMap::new(),
            next_seq: HashMap::new(),
            use_counter: 0,
            staging: Vec::with_capacity(64 * 1024),
            limiter,
            last_fsync: now,
            path_buf: String::new(),
        }
    }

    fn open(&mut self, path: &Path) -> io::Result<()> {
        self.use_counter += 1;
        if let Some(f) = self.files.get_mut(path) {
            f.last_used = self.use_counter;
            return Ok(());
        }
        if self.files.len() >= self.cfg.max_open_files
            && let Some(lru) = self
                .files
                .iter()
                .min_by_key(|(_, f)| f.last_used)
                .map(|(p, _)| p.clone())
        {
            self.close_file(&lru)?;
        }
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
        self.files.insert(
            path.to_owned(),
            OpenFile {
                out,
                size,
                opened_at: Instant::now(),
                last_used: self.use_counter,
                dirty: false,
            },
        );
        Ok(())
    }

    /// Finishes and closes one file (fsync unless the policy is `never`).
    fn close_file(&mut self, path: &Path) -> io::Result<()> {
        if let Some(f) = self.files.remove(path) {
            let file = f
                .out
                .finish()
                .map_err(|e| with_path(e, "finishing", path))?;
            if self.cfg.fsync != Fsync::Never {
                file.sync_all().map_err(|e| with_path(e, "syncing", path))?;
            }
        }
        Ok(())
    }

    /// Closes the file at `path` and renames it to the next free rotation name.
    fn rotate(&mut self, path: &Path) -> io::Result<()> {
        self.close_file(path)?;
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

    /// Writes `spans` of `data` to the file at `path`, rotating as needed. On an error, returns
    /// it with the number of records written before it, and whether it is transient: opening or
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
            self.open(path).map_err(|e| untouched(e, done))?;
            let Some(file) = self.files.get_mut(path) else {
                return Err((
                    io::Error::other("file vanished from the open set"),
                    done,
                    false,
                ));
            };
            let now = Instant::now();
            let aged = self
                .cfg
                .rotate_age
                .is_some_and(|age| now.duration_since(file.opened_at) >= age && file.size > 0);
            let rest = &spans[done..];
            let n = if self.cfg.rotate_bytes > 0 {
                records_fitting(
                    data,
                    rest,
                    (&self.cfg.delimiter, self.cfg.delimiter_if_missing),
                    self.cfg.rotate_bytes.saturating_sub(file.size),
                    file.size == 0,
                )
            } else {
                rest.len()
            };
            if aged || n == 0 {
                self.rotate(path).map_err(|e| untouched(e, done))?;
                continue;
            }
            let part = &rest[..n];
            let bytes = write_lines_with(
                &mut file.out,
                data,
                part,
                &self.cfg.delimiter,
                self.cfg.delimiter_if_missing,
                &mut self.staging,
            )
            .map_err(|e| (with_path(e, "writing", path), done, false))?;
            file.size += bytes;
            file.dirty = true;
            done += n;
            if let Some(limiter) = &mut self.limiter {
                let wait = limiter.take_debt(bytes, Instant::now());
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
            }
            if done < spans.len() {
                self.rotate(path).map_err(|e| untouched(e, done))?;
            }
        }
        Ok(())
    }

    fn sync_dirty(&mut self) -> io::Result<()> {
        for (path, f) in &mut self.files {
            if f.dirty {
                f.out.flush().map_err(|e| with_path(e, "flushing", path))?;
                f.out
                    .file()
                    .sync_data()
                    .map_err(|e| with_path(e, "syncing", path))?;
                f.dirty = false;
            }
        }
        self.last_fsync = Instant::now();
        Ok(())
    }
}

/// How many of `spans` of `data`, as lines with a delimiter (and whether it is added only when
/// missing), fit in `room` bytes. A file that is still empty takes at least one record, however
/// large: records are never split.
fn records_fitting(
    data: &[u8],
    spans: &[Span],
    (delim, if_missing): (&[u8], bool),
    room: u64,
    file_empty: bool,
) -> usize {
    let mut used = 0u64;
    for (i, s) in spans.iter().enumerate() {
        let payload = data
            .get(s.start as usize..s.end as usize)
            .unwrap_or_default();
        used += line_len(payload, delim, if_missing) as u64;
        if used > room {
            return if i == 0 && file_empty { 1 } else { i };
        }
    }
    spans.len()
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
        if self.cfg.fsync == Fsync::Batch
            && let Err(e) = self.sync_dirty()
        {
            // Everything was written; only the fsync failed. Report it as fatal without
            // dead-lettering records that are in the file.
            return Err(fail(e, Vec::new(), false, &self.name));
        }
        Ok(())
    }

    fn next_deadline(&self) -> Option<Instant> {
        let fsync = match self.cfg.fsync {
            Fsync::Interval(every) if self.files.values().any(|f| f.dirty) => {
                Some(self.last_fsync + every)
            }
            _ => None,
        };
        let age = self.cfg.rotate_age.and_then(|age| {
            self.files
                .values()
                .filter(|f| f.size > 0)
                .map(|f| f.opened_at + age)
                .min()
        });
        match (fsync, age) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_timer(&mut self, now: Instant) -> io::Result<()> {
        if let Some(age) = self.cfg.rotate_age {
            let due: Vec<PathBuf> = self
                .files
                .iter()
                .filter(|(_, f)| f.size > 0 && now.duration_since(f.opened_at) >= age)
                .map(|(p, _)| p.clone())
                .collect();
            for p in due {
                self.rotate(&p)?;
            }
        }
        if let Fsync::Interval(every) = self.cfg.fsync
            && now.duration_since(self.last_fsync) >= every
        {
            self.sync_dirty()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Plain files are written straight to the file; compressors hold output back.
        for f in self.files.values_mut() {
            f.out.flush()?;
        }
        Ok(())
    }

    fn close(&mut self) -> io::Result<()> {
        let paths: Vec<PathBuf> = self.files.keys().cloned().collect();
        for p in paths {
            self.close_file(&p)?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("name", &self.name)
            .field("open_files", &self.files.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(lens: &[u32]) -> Vec<Span> {
        let mut at = 0;
        lens.iter()
            .map(|&l| {
                let s = Span {
                    start: at,
                    end: at + l,
                };
                at += l + 1;
                s
            })
            .collect()
    }

    #[test]
    fn records_fitting_never_splits_and_takes_one_into_an_empty_file() {
        let s = spans(&[4, 4, 4]);
        let data = [b'x'; 15];
        let nl: (&[u8], bool) = (b"\n", false);
        assert_eq!(records_fitting(&data, &s, nl, 10, false), 2);
        assert_eq!(records_fitting(&data, &s, nl, 9, false), 1);
        assert_eq!(records_fitting(&data, &s, nl, 4, false), 0);
        assert_eq!(records_fitting(&data, &s, nl, 4, true), 1);
        assert_eq!(records_fitting(&data, &s, nl, 100, false), 3);
        // Records that end with the delimiter take no extra byte when it is added only if
        // missing.
        let data = b"abc\ndef\nghi\n";
        let s: Vec<Span> = (0..3)
            .map(|i| Span {
                start: 4 * i,
                end: 4 * i + 4,
            })
            .collect();
        assert_eq!(&data[s[2].start as usize..s[2].end as usize], b"ghi\n");
        assert_eq!(records_fitting(data, &s, (b"\n", true), 12, false), 3);
        assert_eq!(records_fitting(data, &s, (b"\n", false), 12, false), 2);
    }
}
