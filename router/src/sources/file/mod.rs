//! The file source (`kind = "file"`, issue 19): tails log files across rotations and restarts.
//!
//! [`source::FileSource`] does the I/O (README "Tailing files" for what users see; its module
//! docs for the loop); [`config`] reads the `kind = "file"` table. The decisions are pure,
//! without I/O and without reading the clock (`now` is an argument):
//! - [`multiline`]: joins lines into multi-line records (`start_pattern`, `max_lines`,
//!   `max_bytes`, `timeout`);
//! - [`partial`]: when an unterminated last line is passed on (`partial_line_timeout`);
//! - [`identity`]: a file known by device, inode and a fingerprint of its first bytes;
//! - [`rotation`]: what a new look at a path means (grown, copytruncate, rename-and-create,
//!   deleted while open, inode reused) and how long a rotated file stays open (`rotate_wait`);
//! - [`checkpoint`]: per file, the offset acknowledged (out-of-order acknowledgements), what
//!   to persist, the versioned JSON file and its atomic write, and clear errors for a damaged
//!   one;
//! - [`schedule`]: round-robin turns across files under `max_open_files` (which file to open,
//!   close or read next), so one busy file cannot starve the others.
//!
//! - [`watch`]: which directories to watch, the bounded set of changes noted, and what a
//!   change asks for (one file looked at again, a rescan, the rotated files checked);
//!   [`watcher`] is its I/O (`notify`, inotify on Linux).
//!
//! Still to come (issue 19): the benchmark against Fluent Bit (not installed here).
//!
//! How the parts fit: offsets everywhere are byte offsets into one file (`u64`),
//! and records, lines and pending multi-line records are ranges of it, never copies. The
//! reader frames complete lines (by byte offset, not with `core::framing::LineFramer`, whose
//! line numbers cannot say where in the file a line is); [`partial::PartialLine`] decides
//! when an unterminated tail is a line anyway; lines go through [`multiline::Joiner`] when
//! `multiline` is set; each batch passed on covers a range of the file, sent to that file's
//! [`checkpoint::Ledger`] and acknowledged when its `Hold` is dropped. A pending multi-line
//! record or partial line is not passed on, so the committed offset never passes it.
//! [`rotation::decide`] is asked for each path at every rescan (a retired file is only checked
//! for growth through its own descriptor), [`schedule::Schedule`] says which file to read next.

pub mod checkpoint;
pub mod config;
pub mod identity;
pub mod multiline;
pub mod partial;
pub mod rotation;
pub mod schedule;
pub mod source;
pub mod watch;
pub mod watcher;
