//! The partial last line rule, without I/O and without reading the clock.
//!
//! Owns what is known of a file's unterminated last line (the bytes after its last line end):
//! such a line is usually still being written, so it is held until its line end arrives. If the
//! file has not grown for `partial_line_timeout`, the writer has stopped mid-line (a crash, a
//! block-buffered writer that flushed at a buffer boundary): the line is passed on as it is,
//! as a record ([`PartialLine::due`]). The timeout counts from the last time the line grew, so
//! a long line written in pieces is not cut while the pieces keep coming (it is bounded by the
//! framer's `max_record_bytes` all the same: a longer line is dead-lettered). When the file
//! ends for good (rotated or deleted and read to its end, or the source stops), the line is
//! passed on at once ([`PartialLine::finish`]).
//!
//! Once passed on, a line is done with: if its line end arrives later, the bytes after the part
//! passed on, up to that line end, are the next line (with `skip_empty`, a bare line end is
//! skipped). So nothing is held for ever and nothing is passed on twice.

use std::time::{Duration, Instant};

/// Longest `partial_line_timeout` (a year): longer ones count as this.
pub const MAX_PARTIAL_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The unterminated tail of a file: bytes `start..end`, unchanged since `since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tail {
    start: u64,
    end: u64,
    since: Instant,
}

/// What is known of one file's unterminated last line (module docs).
#[derive(Debug, Clone)]
pub struct PartialLine {
    timeout: Duration,
    tail: Option<Tail>,
}

impl PartialLine {
    /// Nothing held yet; lines are passed on unterminated after `timeout` (at most
    /// [`MAX_PARTIAL_TIMEOUT`]) without growing.
    pub fn new(timeout: Duration) -> PartialLine {
        PartialLine {
            timeout: timeout.min(MAX_PARTIAL_TIMEOUT),
            tail: None,
        }
    }

    /// After a read at `now`: the file's lines are complete up to offset `complete` (just past
    /// the last line end, or where the last part passed on ended), and it was read up to `read`
    /// (at least `complete`). Bytes between are the unterminated line.
    pub fn observe(&mut self, complete: u64, read: u64, now: Instant) {
        debug_assert!(complete <= read);
        if read <= complete {
            self.tail = None;
            return;
        }
        self.tail = match self.tail {
            // Unchanged: the clock keeps running.
            Some(t) if t.start == complete && t.end == read => Some(t),
            // Grown, or a new line: the clock starts again.
            _ => Some(Tail {
                start: complete,
                end: read,
                since: now,
            }),
        };
    }

    /// When the held line is due for [`PartialLine::due`] (`None`: nothing held).
    pub fn deadline(&self) -> Option<Instant> {
        self.tail.map(|t| t.since + self.timeout)
    }

    /// The held line's range, to pass on as a record, if the file has not grown for the
    /// timeout at `now`. The caller then counts its lines complete up to the range's end.
    pub fn due(&mut self, now: Instant) -> Option<std::ops::Range<u64>> {
        let t = self.tail?;
        if now.saturating_duration_since(t.since) < self.timeout {
            return None;
        }
        self.tail = None;
        Some(t.start..t.end)
    }

    /// The held line's range, now: the file ends for good.
    pub fn finish(&mut self) -> Option<std::ops::Range<u64>> {
        self.tail.take().map(|t| t.start..t.end)
    }

    /// Bytes held (`0` when none).
    pub fn held_bytes(&self) -> u64 {
        self.tail.map_or(0, |t| t.end - t.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_line_completed_in_time_is_never_passed_on_partial() {
        let mut p = PartialLine::new(ms(5000));
        let t0 = Instant::now();
        p.observe(100, 100, t0);
        assert_eq!(p.deadline(), None);
        // "abc" of a line arrives without its line end.
        p.observe(100, 103, t0);
        assert_eq!(p.deadline(), Some(t0 + ms(5000)));
        assert_eq!(p.held_bytes(), 3);
        assert_eq!(p.due(t0 + ms(4999)), None);
        // Completed 2 s later: the framer now has complete lines up to 110.
        p.observe(110, 110, t0 + ms(2000));
        assert_eq!(p.deadline(), None);
        assert_eq!(p.due(t0 + ms(9000)), None);
    }

    #[test]
    fn a_line_that_stops_growing_is_passed_on_after_the_timeout() {
        let mut p = PartialLine::new(ms(1000));
        let t0 = Instant::now();
        p.observe(0, 10, t0);
        // Unchanged reads do not restart the clock.
        p.observe(0, 10, t0 + ms(600));
        assert_eq!(p.due(t0 + ms(999)), None);
        assert_eq!(p.due(t0 + ms(1000)), Some(0..10));
        assert_eq!((p.deadline(), p.held_bytes()), (None, 0));
        // Its line end arrives later: the caller counted 0..10 complete; the rest is a line.
        p.observe(10, 12, t0 + ms(5000));
        assert_eq!(p.deadline(), Some(t0 + ms(6000)));
    }

    #[test]
    fn a_growing_line_restarts_the_clock() {
        let mut p = PartialLine::new(ms(1000));
        let t0 = Instant::now();
        p.observe(0, 10, t0);
        p.observe(0, 20, t0 + ms(900));
        assert_eq!(p.due(t0 + ms(1500)), None);
        assert_eq!(p.deadline(), Some(t0 + ms(1900)));
        // A new partial line after complete ones: a new clock too.
        p.observe(25, 30, t0 + ms(1000));
        assert_eq!(p.deadline(), Some(t0 + ms(2000)));
        assert_eq!(p.due(t0 + ms(2000)), Some(25..30));
    }

    #[test]
    fn a_file_that_ends_for_good_passes_its_line_on_at_once() {
        let mut p = PartialLine::new(ms(1000));
        let t0 = Instant::now();
        p.observe(40, 47, t0);
        assert_eq!(p.finish(), Some(40..47));
        assert_eq!(p.finish(), None);
        // A huge timeout does not overflow deadlines.
        let mut p = PartialLine::new(Duration::MAX);
        p.observe(0, 1, t0);
        assert!(p.deadline().is_some());
    }
}
