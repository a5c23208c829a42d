//! Deadlines of network peers (pure: every time is passed in): how long a request body or a
//! batch stream may take, and when a connection with no request in progress is closed. The
//! network sources apply them; the rules live here so they can be tested without sockets.

use std::time::{Duration, Instant};

/// How long a transfer (a request body, a QUIC batch stream) may take: `grace`, plus the time
/// the bytes received so far would take at `min_bytes_per_sec`. A peer that keeps sending at
/// least that fast (on average, after the grace) is never cut off; one that stalls or trickles
/// is, after at most `grace + limit / min_bytes_per_sec` for a transfer of at most `limit` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferDeadline {
    /// Time allowed on top of the rate-based allowance.
    pub grace: Duration,
    /// The slowest average rate accepted; 0 = no allowance beyond `grace`.
    pub min_bytes_per_sec: u64,
}

impl TransferDeadline {
    /// The deadline of a transfer that started at `started` and has received `bytes`.
    pub fn deadline(&self, started: Instant, bytes: u64) -> Instant {
        let allowance = match self.min_bytes_per_sec {
            0 => Duration::ZERO,
            rate => {
                let secs = bytes / rate;
                let nanos = (bytes % rate) * 1_000_000_000 / rate;
                Duration::from_secs(secs) + Duration::from_nanos(nanos)
            }
        };
        started + self.grace + allowance
    }

    /// The longest a transfer of at most `limit` bytes can take before it is cut off.
    pub fn longest(&self, limit: u64) -> Duration {
        let now = Instant::now();
        self.deadline(now, limit).duration_since(now)
    }
}

/// The timeouts of a connection between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleTimeouts {
    /// From the connection's start to its first request's headers, and from the first byte of a
    /// later request to its headers: protocol detection, the HTTP/2 preface and slow headers
    /// all fall under it.
    pub header: Duration,
    /// How long a connection that has served a request may stay silent.
    pub idle: Duration,
}

impl IdleTimeouts {
    /// When a connection with no request in progress must be closed. `idle_since`: when it was
    /// accepted or its last request ended; `served_any`: whether it has served a request;
    /// `first_byte`: when the first byte since `idle_since` arrived, if one did.
    ///
    /// A new connection has `header` to deliver its first request's headers, however it
    /// spends it. A connection that has served requests may stay silent for `idle`; once it
    /// sends something, that request's headers must follow within `header`.
    pub fn deadline(
        &self,
        idle_since: Instant,
        served_any: bool,
        first_byte: Option<Instant>,
    ) -> Instant {
        match (served_any, first_byte) {
            (false, _) => idle_since + self.header,
            (true, None) => idle_since + self.idle,
            (true, Some(t)) => t + self.header,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_gets_its_grace_plus_time_at_the_minimum_rate() {
        let t0 = Instant::now();
        let d = TransferDeadline {
            grace: Duration::from_secs(10),
            min_bytes_per_sec: 1000,
        };
        assert_eq!(d.deadline(t0, 0), t0 + Duration::from_secs(10));
        assert_eq!(d.deadline(t0, 2500), t0 + Duration::from_millis(12_500));
        assert_eq!(d.longest(16_000), Duration::from_secs(26));
        let flat = TransferDeadline {
            grace: Duration::from_secs(3),
            min_bytes_per_sec: 0,
        };
        assert_eq!(flat.deadline(t0, u64::MAX), t0 + Duration::from_secs(3));
        // Huge byte counts do not overflow.
        let _ = d.deadline(t0, u64::MAX / 2);
    }

    #[test]
    fn idle_connections_and_slow_headers_are_closed() {
        let t0 = Instant::now();
        let s = |n: u64| Duration::from_secs(n);
        let t = IdleTimeouts {
            header: s(10),
            idle: s(30),
        };
        // A new connection: 10 s for its first request, bytes or not.
        assert_eq!(t.deadline(t0, false, None), t0 + s(10));
        assert_eq!(t.deadline(t0, false, Some(t0 + s(9))), t0 + s(10));
        // After a request: 30 s of silence, then 10 s from the next request's first byte.
        assert_eq!(t.deadline(t0, true, None), t0 + s(30));
        assert_eq!(t.deadline(t0, true, Some(t0 + s(5))), t0 + s(15));
        // A request started just before the idle limit still gets its header time.
        assert_eq!(t.deadline(t0, true, Some(t0 + s(29))), t0 + s(39));
    }
}
