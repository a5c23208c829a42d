//! The dead-letter sink: every record that could not be processed or delivered, as JSON lines
//! `{"reason", "source", "position", "size", "truncated", "arrival", "payload"}` with the
//! payload in base64. The file is opened when the router starts ([`DeadLetterFile::open`]), so
//! that a dead letter can be written even when the process has run out of file descriptors
//! later; a file this run created and never wrote to is removed at the end.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use serde::Serialize;

use crate::config::reader::{Diagnostics, Section};
use crate::core::accounting::Counters;
use crate::core::dead_letter::DeadLetter;
use crate::core::record::Position;
use crate::queue::Receiver;
use crate::topology::DeadLetters;

/// Settings of the dead-letter sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterConfig {
    /// The file that dead letters are appended to.
    pub path: PathBuf,
    /// fsync after every group of dead letters (default: only at exit).
    pub fsync_each: bool,
}

/// Default path of the dead-letter file.
pub const DEFAULT_PATH: &str = "edge-router-out/dead-letter.ndjson";

impl DeadLetterConfig {
    /// Reads the `[dead_letter]` table.
    pub fn parse(s: &mut Section<'_>, d: &mut Diagnostics) -> DeadLetterConfig {
        let path = s.str_or(d, "path", DEFAULT_PATH);
        if path.is_empty() {
            d.error(&s.spot_of("path"), "the dead-letter path must not be empty");
        }
        let fsync = s.choice(d, "fsync", &["exit", "batch"], "exit");
        DeadLetterConfig {
            path: PathBuf::from(path),
            fsync_each: fsync == "batch",
        }
    }
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            path: PathBuf::from(DEFAULT_PATH),
            fsync_each: false,
        }
    }
}

#[derive(Serialize)]
struct PositionOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
}

#[derive(Serialize)]
struct Entry<'a> {
    reason: &'a str,
    source: &'a str,
    position: PositionOut,
    size: u64,
    truncated: bool,
    arrival: String,
    payload: String,
}

/// Serializes one dead letter as a JSON line (with the trailing newline) into `out`.
pub fn encode(letter: &DeadLetter, out: &mut Vec<u8>) {
    let arrival = chrono::DateTime::from_timestamp_nanos(
        i64::try_from(letter.arrival_unix_nanos).unwrap_or(i64::MAX),
    )
    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let entry = Entry {
        reason: &letter.reason,
        source: &letter.source,
        position: PositionOut {
            line: match letter.position {
                Position::Line(l) => Some(l),
                Position::None => None,
            },
        },
        size: letter.size,
        truncated: letter.truncated,
        arrival,
        payload: base64::engine::general_purpose::STANDARD.encode(&letter.payload),
    };
    // Serializing plain strings and numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &entry);
    out.push(b'\n');
}

/// The dead-letter file, opened (for appending) when the router starts.
#[derive(Debug)]
pub struct DeadLetterFile {
    file: File,
    /// This run created it (it did not exist before).
    created: bool,
    /// The directories this run created for it, innermost first.
    created_dirs: Vec<PathBuf>,
}

impl DeadLetterFile {
    /// Opens (creating it and its directory if needed) the file of `cfg`.
    pub fn open(cfg: &DeadLetterConfig) -> anyhow::Result<DeadLetterFile> {
        let created = !cfg.path.exists();
        let created_dirs: Vec<PathBuf> = cfg
            .path
            .ancestors()
            .skip(1)
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
            .map(Path::to_path_buf)
            .collect();
        Ok(DeadLetterFile {
            file: open(&cfg.path)?,
            created,
            created_dirs,
        })
    }
}

/// Runs the dead-letter sink until every sender is gone, appending to `out`.
pub fn run(
    cfg: &DeadLetterConfig,
    out: DeadLetterFile,
    rx: Receiver<DeadLetters>,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    let DeadLetterFile {
        mut file,
        created,
        created_dirs,
    } = out;
    let mut wrote = false;
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(DeadLetters(letters)) = rx.blocking_recv() {
        counters.add_in(letters.len() as u64, 0);
        buf.clear();
        for l in &letters {
            encode(l, &mut buf);
        }
        wrote = true;
        file.write_all(&buf)
            .map_err(|e| ctx(e, "writing", &cfg.path))?;
        if cfg.fsync_each {
            file.sync_data().map_err(|e| ctx(e, "syncing", &cfg.path))?;
        }
        counters.add_out(letters.len() as u64, buf.len() as u64);
    }
    if wrote {
        file.sync_all().map_err(|e| ctx(e, "syncing", &cfg.path))?;
    } else if created && file.metadata().is_ok_and(|m| m.len() == 0) {
        // Nothing to keep: leave no empty file (or directory this run made for it) behind.
        drop(file);
        let _ = std::fs::remove_file(&cfg.path);
        for d in created_dirs {
            if std::fs::remove_dir(&d).is_err() {
                break;
            }
        }
    }
    Ok(())
}

fn open(path: &Path) -> anyhow::Result<File> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| ctx(e, "creating directory", dir))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| ctx(e, "opening", path))
}

fn ctx(e: io::Error, what: &str, path: &Path) -> anyhow::Error {
    anyhow::Error::new(e).context(format!("dead-letter sink: {what} {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn entry_is_one_json_line_with_base64_payload() {
        let letter = DeadLetter {
            reason: "record of 9 bytes exceeds max_record_bytes (8)".into(),
            source: Arc::from("stdin"),
            position: Position::Line(2),
            size: 9,
            payload: Bytes::from_static(b"\xffyyyyyyy"),
            truncated: true,
            arrival_unix_nanos: 1_458_867_680_000_000_000,
        };
        let mut out = Vec::new();
        encode(&letter, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["position"]["line"], 2);
        assert_eq!(v["truncated"], true);
        assert_eq!(v["arrival"], "2016-03-25T01:01:20.000000Z");
        let payload = base64::engine::general_purpose::STANDARD
            .decode(v["payload"].as_str().unwrap())
            .unwrap();
        assert_eq!(payload, b"\xffyyyyyyy");
    }
}
