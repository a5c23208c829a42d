//! The stdout sink: records as delimited lines on standard output. Records reach stdout only
//! through this sink; logs and stats go to stderr.

use std::io::{self, Write};
use std::time::Instant;

use crate::config::reader::{Diagnostics, Section};
use crate::core::record::Batch;
use crate::sinks::{BlockingSink, WriteFailure, write_lines_with};

/// Settings of the stdout sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdoutConfig {
    /// Bytes written after each record (may be empty).
    pub delimiter: Vec<u8>,
    /// Write the delimiter only after records that do not already end with it.
    pub delimiter_if_missing: bool,
}

impl StdoutConfig {
    /// Reads a `kind = "stdout"` sink table.
    pub fn parse(s: &mut Section<'_>, d: &mut Diagnostics) -> StdoutConfig {
        let delimiter = s.str_or(d, "delimiter", "\n");
        let delimiter_if_missing = s.bool_or(d, "delimiter_if_missing", false);
        StdoutConfig {
            delimiter: delimiter.into_bytes(),
            delimiter_if_missing,
        }
    }
}

/// Writes to any writer; `StdoutSink::stdout` writes to the process's standard output.
pub struct StdoutSink<W: Write + Send> {
    out: W,
    cfg: StdoutConfig,
    staging: Vec<u8>,
}

impl StdoutSink<io::Stdout> {
    /// A sink writing to standard output.
    pub fn stdout(cfg: StdoutConfig) -> Self {
        StdoutSink::new(io::stdout(), cfg)
    }
}

impl<W: Write + Send> StdoutSink<W> {
    /// A sink writing to `out`.
    pub fn new(out: W, cfg: StdoutConfig) -> Self {
        StdoutSink {
            out,
            cfg,
            staging: Vec::with_capacity(64 * 1024),
        }
    }
}

impl<W: Write + Send> BlockingSink for StdoutSink<W> {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), WriteFailure> {
        let r = write_lines_with(
            &mut self.out,
            batch.data(),
            batch.spans(),
            &self.cfg.delimiter,
            self.cfg.delimiter_if_missing,
            &mut self.staging,
        )
        .and_then(|_| self.out.flush());
        r.map_err(|e| WriteFailure {
            error: anyhow::Error::new(e).context("writing to standard output"),
            // Some records may be out already; report them all rather than lose any.
            unwritten: (0..batch.len()).collect(),
            transient: false,
        })
    }

    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    fn on_timer(&mut self, _now: Instant) -> io::Result<()> {
        Ok(())
    }

    fn close(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
