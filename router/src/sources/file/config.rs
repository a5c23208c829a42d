//! The `kind = "file"` source table: which files, where to start, how to frame and join lines,
//! where checkpoints go, and the timings of the reader (README "Tailing files").

use std::path::PathBuf;
use std::time::Duration;

use crate::config::reader::{Diagnostics, Section};
use crate::sources::AckMode;
use crate::sources::file::multiline::compile_start_pattern;
use crate::sources::file::watch::WatchMode;
use crate::sources::stdin::Framing;

/// Compressed rotated files are left alone unless `exclude` says otherwise.
pub const DEFAULT_EXCLUDE: [&str; 5] = ["*.gz", "*.zip", "*.bz2", "*.xz", "*.zst"];

/// Where checkpoints go without `checkpoint_dir` (relative to the working directory).
pub const DEFAULT_CHECKPOINT_DIR: &str = "edge-router-state/checkpoints";

/// Where a file seen for the first time at start-up is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Its end: only what is written from now on (files that appear later are read whole).
    End,
    /// Its beginning.
    Beginning,
}

/// The `multiline` table (see [`super::multiline`]), with the pattern as written (compiled
/// and checked when the config is read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultilineConfig {
    /// A line matching this starts a record; other lines join the record before them.
    pub start_pattern: String,
    /// Most lines in one record.
    pub max_lines: usize,
    /// Most bytes in one record.
    pub max_bytes: u64,
    /// A record with no line added for this long is passed on.
    pub timeout: Duration,
}

/// Settings of a file source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSourceConfig {
    /// Glob patterns of the files to read (`*`, `?`, `[...]`, `**`).
    pub include: Vec<String>,
    /// Glob patterns of files not to read: a pattern with no `/` is matched against the file
    /// name, one with a `/` against the whole path.
    pub exclude: Vec<String>,
    /// Where files present at start-up are read from.
    pub start_at: StartAt,
    /// Directory of the checkpoint file (`<checkpoint_dir>/<source name>.json`).
    pub checkpoint_dir: PathBuf,
    /// How often the checkpoint file is written (when something changed).
    pub checkpoint_interval: Duration,
    /// Framing of lines.
    pub framing: Framing,
    /// Longest record payload; longer lines are dead-lettered.
    pub max_record_bytes: usize,
    /// How long a rotated or deleted file is still read after it left its path.
    pub rotate_wait: Duration,
    /// How long an unterminated last line is held before it is passed on.
    pub partial_line_timeout: Duration,
    /// How changes are learnt: notifications (with the rescan as a safety net) or polling.
    pub watch: WatchMode,
    /// How often the include patterns are expanded and the files' paths looked at (10 s behind
    /// `watch = "events"`, 1 s with `watch = "poll"` unless set).
    pub rescan_interval: Duration,
    /// Files not modified for this long when first seen are not read (until they are written
    /// to again); `None`: every file is read.
    pub ignore_older_than: Option<Duration>,
    /// Lines skipped at the beginning of each file read from its beginning (CSV headers).
    pub skip_header_lines: u64,
    /// A checkpoint of a file not found for this long is dropped from the checkpoint file.
    pub forget_after: Duration,
    /// Most files open at once.
    pub max_open_files: usize,
    /// When a batch counts as done for the checkpoint.
    pub ack: AckMode,
    /// Multi-line records, when set.
    pub multiline: Option<MultilineConfig>,
}

impl Default for FileSourceConfig {
    fn default() -> Self {
        FileSourceConfig {
            include: Vec::new(),
            exclude: DEFAULT_EXCLUDE.iter().map(|s| (*s).to_owned()).collect(),
            start_at: StartAt::End,
            checkpoint_dir: PathBuf::from(DEFAULT_CHECKPOINT_DIR),
            checkpoint_interval: Duration::from_secs(1),
            framing: Framing::Lines,
            max_record_bytes: 1 << 20,
            rotate_wait: Duration::from_secs(5),
            partial_line_timeout: Duration::from_secs(5),
            watch: WatchMode::Events,
            rescan_interval: Duration::from_millis(WatchMode::Events.default_rescan_ms()),
            ignore_older_than: None,
            skip_header_lines: 0,
            forget_after: Duration::from_secs(DEFAULT_FORGET_AFTER_S),
            max_open_files: 256,
            ack: AckMode::Queued,
            multiline: None,
        }
    }
}

const MS_MAX: u64 = 3_600_000;

/// Default `forget_after_ms`: a week.
pub const DEFAULT_FORGET_AFTER_S: u64 = 7 * 24 * 3600;

/// Longest `ignore_older_than_ms` and `forget_after_ms`: a year.
const LONG_MS_MAX: u64 = 366 * 24 * 3_600_000;

fn patterns(s: &mut Section<'_>, d: &mut Diagnostics, key: &'static str) -> Option<Vec<String>> {
    let list = s.opt_str_list(d, key)?;
    let mut out = Vec::new();
    for p in list {
        if let Err(e) = glob::Pattern::new(&p.value) {
            d.error(&p.spot, format!("{:?} is not a glob pattern: {e}", p.value));
            continue;
        }
        out.push(p.value);
    }
    Some(out)
}

impl FileSourceConfig {
    /// Reads a `kind = "file"` source table; `None` when it cannot be used (every problem is
    /// reported to `d` with its position).
    pub fn parse(s: &mut Section<'_>, d: &mut Diagnostics) -> Option<FileSourceConfig> {
        let def = FileSourceConfig::default();
        let present = s.has("include");
        let include = patterns(s, d, "include").unwrap_or_default();
        if !present {
            d.error(
                &s.spot(),
                format!(
                    "missing required key `{}` (glob patterns of the files to read, e.g. \
                     [\"/var/log/app/*.log\"])",
                    s.key_path("include")
                ),
            );
        } else if include.is_empty() {
            d.error(
                &s.spot_of("include"),
                "`include` needs at least one glob pattern",
            );
        }
        let exclude = patterns(s, d, "exclude").unwrap_or(def.exclude);
        let start_at = match s.choice(d, "start_at", &["end", "beginning"], "end") {
            "beginning" => StartAt::Beginning,
            _ => StartAt::End,
        };
        let checkpoint_dir = s
            .opt_str(d, "checkpoint_dir")
            .map_or(def.checkpoint_dir, |l| PathBuf::from(l.value));
        let ms = |s: &mut Section<'_>, d: &mut Diagnostics, key, default: Duration, min| {
            Duration::from_millis(s.int_or(d, key, default.as_millis() as u64, min..=MS_MAX))
        };
        let checkpoint_interval = ms(s, d, "checkpoint_interval_ms", def.checkpoint_interval, 10);
        let framing = match s.choice(d, "framing", &["lines", "json"], "lines") {
            "json" => Framing::Json,
            _ => Framing::Lines,
        };
        let max_record_bytes = s.size_or(
            d,
            "max_record_bytes",
            def.max_record_bytes as u64,
            1..=(64 << 20),
        ) as usize;
        let rotate_wait = ms(s, d, "rotate_wait_ms", def.rotate_wait, 0);
        let partial_line_timeout = ms(s, d, "partial_line_timeout_ms", def.partial_line_timeout, 0);
        let watch = match s.choice(d, "watch", &["events", "poll"], "events") {
            "poll" => WatchMode::Poll,
            _ => WatchMode::Events,
        };
        let rescan_interval = Duration::from_millis(s.int_or(
            d,
            "rescan_interval_ms",
            watch.default_rescan_ms(),
            10..=MS_MAX,
        ));
        let ignore_older_than_ms = s.int_or(d, "ignore_older_than_ms", 0, 0..=LONG_MS_MAX);
        let ignore_older_than =
            (ignore_older_than_ms > 0).then(|| Duration::from_millis(ignore_older_than_ms));
        let skip_header_lines = s.int_or(d, "skip_header_lines", 0, 0..=1_000_000);
        let forget_after = Duration::from_millis(s.int_or(
            d,
            "forget_after_ms",
            def.forget_after.as_millis() as u64,
            1000..=LONG_MS_MAX,
        ));
        let max_open_files =
            s.int_or(d, "max_open_files", def.max_open_files as u64, 1..=65_536) as usize;
        let ack = AckMode::parse(s, d);
        let multiline = s.opt_table(d, "multiline").and_then(|mut m| {
            let pattern = m.required_str(d, "start_pattern");
            if let Some(p) = &pattern
                && let Err(e) = compile_start_pattern(&p.value)
            {
                d.error(&p.spot, format!("not a usable regular expression: {e}"));
            }
            let max_lines = m.int_or(d, "max_lines", 500, 1..=1_000_000) as usize;
            let max_bytes = m.size_or(d, "max_bytes", 1 << 20, 1..=(64 << 20));
            let timeout = ms(&mut m, d, "timeout_ms", Duration::from_secs(1), 1);
            m.finish(d);
            pattern.map(|p| MultilineConfig {
                start_pattern: p.value,
                max_lines,
                max_bytes,
                timeout,
            })
        });
        if !present || include.is_empty() {
            return None;
        }
        Some(FileSourceConfig {
            include,
            exclude,
            start_at,
            checkpoint_dir,
            checkpoint_interval,
            framing,
            max_record_bytes,
            rotate_wait,
            partial_line_timeout,
            watch,
            rescan_interval,
            ignore_older_than,
            skip_header_lines,
            forget_after,
            max_open_files,
            ack,
            multiline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SourceKind, parse_str};

    fn file_source(keys: &str) -> Result<FileSourceConfig, String> {
        let text = format!(
            "[sources.logs]\nkind = \"file\"\ninclude = [\"/l/*.log\"]\n{keys}\n\
             [sinks.out]\nkind = \"file\"\npath = \"o\"\n"
        );
        let c = parse_str("t.toml", &text).map_err(|e| e.to_string())?;
        match &c.sources[0].kind {
            SourceKind::File(f) => Ok((**f).clone()),
            _ => Err("not a file source".into()),
        }
    }

    #[test]
    fn watch_ignore_older_than_skip_header_lines_and_forget_after_are_read() {
        let f = file_source("").unwrap();
        assert_eq!(f.watch, WatchMode::Events);
        assert_eq!(f.rescan_interval, Duration::from_secs(10));
        assert_eq!(
            (f.ignore_older_than, f.skip_header_lines),
            (None, 0),
            "every file read, no header skipped"
        );
        assert_eq!(f.forget_after, Duration::from_secs(7 * 24 * 3600));
        let f = file_source("watch = \"poll\"").unwrap();
        assert_eq!(
            (f.watch, f.rescan_interval),
            (WatchMode::Poll, Duration::from_secs(1))
        );
        let f = file_source(
            "watch = \"poll\"\nrescan_interval_ms = 250\nignore_older_than_ms = 86400000\n\
             skip_header_lines = 1\nforget_after_ms = 3600000",
        )
        .unwrap();
        assert_eq!(f.rescan_interval, Duration::from_millis(250));
        assert_eq!(f.ignore_older_than, Some(Duration::from_secs(86400)));
        assert_eq!(f.skip_header_lines, 1);
        assert_eq!(f.forget_after, Duration::from_secs(3600));
        let e = file_source("watch = \"inotify\"\nforget_after_ms = 5\nskip_header_lines = -1")
            .unwrap_err();
        assert!(
            e.contains(
                "`sources.logs.watch`: unknown value \"inotify\"; expected one of: events, poll"
            ),
            "{e}"
        );
        assert!(
            e.contains("`sources.logs.forget_after_ms`: 5 is out of range"),
            "{e}"
        );
        assert!(
            e.contains("`sources.logs.skip_header_lines`: must not be negative"),
            "{e}"
        );
    }
}
