//! The egress cap of an AWS sink (`max_bytes_per_sec`, for metered uplinks): a token bucket over
//! the payload bytes of the requests the sink sends, retries included (pure: every call takes
//! `now`).
//!
//! A request goes out when the bucket is not in debt, and takes its bytes even if that puts the
//! bucket into debt; the next request waits until the debt is paid. So over any time `t` the sink
//! sends at most `rate x t + burst + one request` bytes, with `burst` a tenth of a second's worth
//! (at least one byte). While requests wait, records gather in the engine until it is full; then
//! the sink's queue (or its disk buffer) fills and the sources are held back, as with a slow
//! destination.

use std::time::Instant;

use crate::core::rate_limit::TokenBucket;

/// The egress cap of one sink (no cap when built with a rate of 0).
#[derive(Debug, Clone)]
pub struct Egress {
    bucket: Option<TokenBucket>,
}

impl Egress {
    /// A cap of `max_bytes_per_sec` payload bytes per second; 0: no cap.
    pub fn new(max_bytes_per_sec: u64, now: Instant) -> Egress {
        let bucket = (max_bytes_per_sec > 0)
            .then(|| TokenBucket::new(max_bytes_per_sec, (max_bytes_per_sec / 10).max(1), now));
        Egress { bucket }
    }

    /// The cap, bytes per second, if there is one.
    pub fn rate(&self) -> Option<u64> {
        self.bucket.as_ref().map(TokenBucket::rate_per_sec)
    }

    /// `None` when a request may go out now; else when one may.
    pub fn blocked_until(&mut self, now: Instant) -> Option<Instant> {
        let bucket = self.bucket.as_mut()?;
        let wait = bucket.wait_time(0, now);
        if wait.is_zero() {
            None
        } else {
            // The rate is above 0, so the wait is finite.
            Some(now.checked_add(wait).unwrap_or(now))
        }
    }

    /// Counts a request of `bytes` payload bytes sent at `now`.
    pub fn sent(&mut self, bytes: u64, now: Instant) {
        if let Some(bucket) = self.bucket.as_mut() {
            bucket.take_debt(bytes, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn no_cap_never_blocks() {
        let t0 = Instant::now();
        let mut e = Egress::new(0, t0);
        assert_eq!(e.rate(), None);
        e.sent(u64::MAX, t0);
        assert_eq!(e.blocked_until(t0), None);
    }

    #[test]
    fn a_request_in_debt_makes_the_next_wait_until_it_is_paid() {
        let t0 = Instant::now();
        let mut e = Egress::new(1000, t0);
        assert_eq!(e.blocked_until(t0), None);
        // 100 bytes of burst, 600 sent: 500 in debt = half a second.
        e.sent(600, t0);
        assert_eq!(e.blocked_until(t0), Some(t0 + Duration::from_millis(500)));
        assert_eq!(
            e.blocked_until(t0 + Duration::from_millis(200)),
            Some(t0 + Duration::from_millis(500))
        );
        assert_eq!(e.blocked_until(t0 + Duration::from_millis(500)), None);
    }

    /// Requests of random sizes sent as soon as allowed, over simulated time: the bytes sent by
    /// any moment stay within `rate x t + burst + one request`, and the long-run rate is the cap.
    #[test]
    fn sending_as_fast_as_allowed_holds_the_rate() {
        let t0 = Instant::now();
        for (rate, max_request) in [(1000u64, 300u64), (256 << 10, 50 << 10), (10, 1)] {
            let mut e = Egress::new(rate, t0);
            let mut now = t0;
            let mut sent = 0u64;
            let mut seed = rate ^ 0x9e37_79b9;
            let end = t0 + Duration::from_secs(20);
            while now < end {
                if let Some(at) = e.blocked_until(now) {
                    assert!(at > now);
                    now = at;
                    continue;
                }
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let bytes = 1 + (seed >> 33) % max_request;
                e.sent(bytes, now);
                sent += bytes;
                let elapsed = now.duration_since(t0).as_secs_f64();
                let allowed = rate as f64 * elapsed + (rate / 10).max(1) as f64 + bytes as f64;
                assert!(sent as f64 <= allowed + 1.0, "{sent} sent by {elapsed} s");
            }
            let per_sec = sent as f64 / 20.0;
            assert!(
                (per_sec - rate as f64).abs() <= rate as f64 * 0.05 + max_request as f64 / 20.0,
                "rate {rate}: {per_sec} bytes/s"
            );
        }
    }
}
