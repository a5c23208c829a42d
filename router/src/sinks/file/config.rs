//! Settings of the file sink.

use std::time::Duration;

use crate::config::reader::{Diagnostics, Section};
use crate::core::partition::KeySpec;
use crate::core::template::PathTemplate;

/// Compression of output files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain files.
    None,
    /// gzip at a level 0..=9; appending to an existing file adds a gzip member.
    Gzip(u32),
    /// zstd at a level 1..=19; appending adds a zstd frame.
    Zstd(i32),
}

/// When written data is forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Never explicitly (the OS writes back in its own time); files are still flushed at exit.
    Never,
    /// At most this long after a write.
    Interval(Duration),
    /// After every batch.
    Batch,
}

/// Validated settings of one file sink.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSinkConfig {
    /// Output path, possibly a template with `{partition_key}`, `{source}`, `{attr.NAME}` and
    /// strftime specifiers (UTC arrival time).
    pub path: PathTemplate,
    /// Bytes written after each record (may be empty).
    pub delimiter: Vec<u8>,
    /// Write the delimiter only after records that do not already end with it.
    pub delimiter_if_missing: bool,
    /// Where `{partition_key}` comes from.
    pub partition: KeySpec,
    /// Output compression.
    pub compression: Compression,
    /// Rotate a file before it would exceed this many (uncompressed) bytes; 0 = never.
    pub rotate_bytes: u64,
    /// Rotate a file this long after it was opened; `None` = never.
    pub rotate_age: Option<Duration>,
    /// fsync policy.
    pub fsync: Fsync,
    /// Most files open at once; the least recently used is closed beyond that.
    pub max_open_files: usize,
    /// Write at most this many bytes per second; 0 = unlimited.
    pub rate_limit_bytes_per_sec: u64,
}

/// The keys a file sink table may have (besides `kind` and the queue limits).
impl FileSinkConfig {
    /// Reads a `kind = "file"` sink table.
    pub fn parse(s: &mut Section<'_>, d: &mut Diagnostics) -> Option<FileSinkConfig> {
        let path = s.required_str(d, "path").and_then(|p| {
            PathTemplate::parse(&p.value)
                .map_err(|e| d.error(&p.spot, format!("invalid path template: {e}")))
                .ok()
        });
        let delimiter = s.str_or(d, "delimiter", "\n");
        let delimiter_if_missing = s.bool_or(d, "delimiter_if_missing", false);
        let partition = match s.opt_str(d, "partition") {
            Some(p) => KeySpec::parse(&p.value)
                .map_err(|e| d.error(&p.spot, e))
                .unwrap_or(KeySpec::Record),
            None => KeySpec::Record,
        };
        let kind = s.choice(d, "compression", &["none", "gzip", "zstd"], "none");
        let level_spot = s.spot_of("compression_level");
        let has_level = s.has("compression_level");
        let compression = match kind {
            "gzip" => Compression::Gzip(s.int_or(d, "compression_level", 6, 0..=9) as u32),
            "zstd" => Compression::Zstd(s.int_or(d, "compression_level", 3, 1..=19) as i32),
            _ => {
                if has_level {
                    d.error(
                        &level_spot,
                        "compression_level needs compression = \"gzip\" or \"zstd\"",
                    );
                }
                Compression::None
            }
        };
        let rotate_bytes = s.size_or(d, "rotate_bytes", 0, 0..=(1 << 40));
        let rotate_age_ms = s.int_or(d, "rotate_age_ms", 0, 0..=(366 * 24 * 3600 * 1000));
        let fsync_kind = s.choice(d, "fsync", &["never", "interval", "batch"], "never");
        let interval_ms = s.int_or(d, "fsync_interval_ms", 1000, 1..=3_600_000);
        let fsync = match fsync_kind {
            "interval" => Fsync::Interval(Duration::from_millis(interval_ms)),
            "batch" => Fsync::Batch,
            _ => Fsync::Never,
        };
        let max_open_files = s.int_or(d, "max_open_files", 64, 1..=65_536) as usize;
        let rate_limit_bytes_per_sec = s.size_or(d, "rate_limit_bytes_per_sec", 0, 0..=(1 << 40));
        Some(FileSinkConfig {
            path: path?,
            delimiter: delimiter.into_bytes(),
            delimiter_if_missing,
            partition,
            compression,
            rotate_bytes,
            rotate_age: (rotate_age_ms > 0).then(|| Duration::from_millis(rotate_age_ms)),
            fsync,
            max_open_files,
            rate_limit_bytes_per_sec,
        })
    }
}
