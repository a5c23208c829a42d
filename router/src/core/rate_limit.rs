//! Rate limiting: a token bucket driven by virtual time, [`Repeats`], the gate that keeps a
//! repeated log message (per record, per connection) from flooding the logs, [`Throttle`], one
//! message per interval with a count of the rest, and [`Backoff`], the doubling wait of a loop
//! that keeps failing (accepting connections without file descriptors, opening files).
//!
//! This module owns the bucket arithmetic only. It never sleeps and never reads the clock: every
//! call takes `now`, and waits are returned for the caller's timer. Tokens are counted in
//! billionths with integer arithmetic, so refills are exact and never drift.

use std::time::{Duration, Instant};

/// Billionths of a token per token; one token per second is one nano-token per nanosecond.
const NANOS_PER_TOKEN: i128 = 1_000_000_000;

/// Token bucket: `rate_per_sec` tokens added per second, up to `burst` tokens.
///
/// The bucket starts full. [`TokenBucket::take_debt`] may take more than is there; the balance
/// then goes negative and later requests wait until it is paid back, so the long-run rate holds.
///
/// A rate of 0 never refills: a wait that can never end is reported as [`Duration::MAX`]. Treat it
/// as "never" (`Instant::checked_add` it, do not add it). `now` earlier than a previous `now`
/// counts as no time passed.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_sec: u64,
    burst: u64,
    /// Balance in billionths of a token; never above `burst` tokens, negative while in debt.
    nano_tokens: i128,
    /// The latest `now` seen.
    last: Instant,
}

impl TokenBucket {
    /// A full bucket that adds `rate_per_sec` tokens per second and holds at most `burst`.
    pub fn new(rate_per_sec: u64, burst: u64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate_per_sec,
            burst,
            nano_tokens: capacity(burst),
            last: now,
        }
    }

    /// Tokens added per second.
    pub fn rate_per_sec(&self) -> u64 {
        self.rate_per_sec
    }

    /// The most tokens the bucket holds.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Takes `n` tokens if available now: `Ok(())` or `Err(wait)` where `wait` is how long until
    /// `n` tokens will be available (`n` may exceed `burst`: then the wait is computed as if the
    /// bucket could go into debt; see [`TokenBucket::take_debt`]).
    ///
    /// # Errors
    ///
    /// The wait, when `n` tokens are not available now.
    ///
    /// A request for more than `burst` tokens can never succeed here (the bucket never holds
    /// that many); its wait is what `take_debt` would ask for afterwards, and such requests
    /// should use `take_debt`. While the bucket is in debt every request waits, even `n = 0`.
    pub fn try_take(&mut self, n: u64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        let need = nano_tokens(n);
        if self.nano_tokens >= need {
            self.nano_tokens -= need;
            Ok(())
        } else {
            Err(self.wait_for(need.saturating_sub(self.nano_tokens)))
        }
    }

    /// Takes `n` tokens unconditionally, possibly going into debt, and returns how long the caller
    /// should wait before proceeding so the long-run rate holds (`Duration::ZERO` if none). Used
    /// by writers that must write a whole batch.
    ///
    /// The wait is until the balance is back to zero.
    pub fn take_debt(&mut self, n: u64, now: Instant) -> Duration {
        self.refill(now);
        self.nano_tokens = self.nano_tokens.saturating_sub(nano_tokens(n));
        if self.nano_tokens >= 0 {
            Duration::ZERO
        } else {
            self.wait_for(self.nano_tokens.saturating_neg())
        }
    }

    /// How long until `n` tokens are available, taking none: [`Duration::ZERO`] when
    /// [`TokenBucket::try_take`] would succeed now, else the wait it would report.
    pub fn wait_time(&mut self, n: u64, now: Instant) -> Duration {
        self.refill(now);
        self.wait_for(nano_tokens(n).saturating_sub(self.nano_tokens))
    }

    /// Whole tokens available now (0 while in debt).
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        u64::try_from(self.nano_tokens.max(0) / NANOS_PER_TOKEN).unwrap_or(u64::MAX)
    }

    /// Adds the tokens earned since the last call, up to `burst`.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        if now > self.last {
            self.last = now;
        }
        let earned = u128::from(self.rate_per_sec).saturating_mul(elapsed.as_nanos());
        let earned = i128::try_from(earned).unwrap_or(i128::MAX);
        self.nano_tokens = self
            .nano_tokens
            .saturating_add(earned)
            .min(capacity(self.burst));
    }

    /// How long until `deficit` nano-tokens have been earned, rounded up to the nanosecond.
    fn wait_for(&self, deficit: i128) -> Duration {
        if deficit <= 0 {
            return Duration::ZERO;
        }
        if self.rate_per_sec == 0 {
            return Duration::MAX;
        }
        let rate = i128::from(self.rate_per_sec);
        // deficit > 0 and rate > 0, so the quotient is positive.
        let nanos = deficit / rate + i128::from(deficit % rate != 0);
        let secs = nanos / NANOS_PER_TOKEN;
        let sub_nanos = nanos % NANOS_PER_TOKEN;
        match (u64::try_from(secs), u32::try_from(sub_nanos)) {
            (Ok(secs), Ok(sub_nanos)) => Duration::new(secs, sub_nanos),
            _ => Duration::MAX,
        }
    }
}

fn nano_tokens(tokens: u64) -> i128 {
    i128::from(tokens) * NANOS_PER_TOKEN
}

fn capacity(burst: u64) -> i128 {
    nano_tokens(burst)
}

/// Lets through at most `per_sec` messages of one kind per second (bursts up to `per_sec`) and
/// counts the ones held back, so the next message let through can say how many were
/// suppressed.
#[derive(Debug, Clone)]
pub struct Repeats {
    bucket: TokenBucket,
    suppressed: u64,
}

impl Repeats {
    /// A gate for `per_sec` messages per second.
    pub fn new(per_sec: u64, now: Instant) -> Repeats {
        Repeats {
            bucket: TokenBucket::new(per_sec, per_sec.max(1), now),
            suppressed: 0,
        }
    }

    /// `Some(n)` when a message may be logged now, `n` being how many were held back since the
    /// last one; `None` when this one is held back (and counted).
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.bucket.try_take(1, now).is_ok() {
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// Lets one message through per interval, counting the ones held back: for a condition that
/// may last (descriptors exhausted), where one line every few seconds with a count says enough.
#[derive(Debug, Clone)]
pub struct Throttle {
    every: Duration,
    next: Option<Instant>,
    held: u64,
}

impl Throttle {
    /// A gate for one message per `every`.
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            next: None,
            held: 0,
        }
    }

    /// `Some(n)` when a message may be logged now, `n` being how many were held back since the
    /// last one; `None` when this one is held back (and counted).
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|next| now < next) {
            self.held += 1;
            return None;
        }
        self.next = Some(now + self.every);
        Some(std::mem::take(&mut self.held))
    }
}

/// A doubling wait between `min` and `max` for a loop whose step keeps failing; a success resets
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `min`, doubles up to `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The wait after a failure (and doubles the next one).
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// After a success: the next failure waits `min` again.
    pub fn succeeded(&mut self) {
        self.next = self.min;
    }
}

/// The gate for one plugin stage's log lines (shared by its workers and instances, so a plugin
/// cannot get a fresh allowance by trapping): at most `messages_per_sec` messages and
/// `bytes_per_sec` bytes of message text a second (each with a burst of one second's worth),
/// counting what it holds back for a summary.
#[derive(Debug, Clone)]
pub struct LogGate {
    messages: TokenBucket,
    bytes: TokenBucket,
    held: Held,
}

/// What a [`LogGate`] held back since it last said so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Messages not logged.
    pub messages: u64,
    /// Bytes of the messages not logged that were read (a message held back for the message
    /// rate is never read, so its size is unknown and not counted).
    pub bytes: u64,
}

impl LogGate {
    /// A gate letting `messages_per_sec` messages and `bytes_per_sec` bytes through a second.
    pub fn new(messages_per_sec: u64, bytes_per_sec: u64, now: Instant) -> LogGate {
        LogGate {
            messages: TokenBucket::new(messages_per_sec, messages_per_sec.max(1), now),
            bytes: TokenBucket::new(bytes_per_sec, bytes_per_sec.max(1), now),
            held: Held::default(),
        }
    }

    /// Whether a message of at most `max_len` bytes may be read at all now (a message's
    /// allowance, and bytes for the longest message, or a full bucket); when not, it is
    /// counted as held back without being read. A `true` must be followed by
    /// [`LogGate::admit_bytes`].
    pub fn admit_message(&mut self, max_len: usize, now: Instant) -> bool {
        let need = (max_len as u64).min(self.bytes.burst()).max(1);
        if self.messages.available(now) >= 1 && self.bytes.available(now) >= need {
            true
        } else {
            self.held.messages += 1;
            false
        }
    }

    /// Takes a message of `len` bytes (after it was cut to size): `Some(held)` when it may be
    /// logged, with what was held back before it (then reset); `None` when the byte allowance
    /// does not cover it (counted as held back).
    pub fn admit_bytes(&mut self, len: usize, now: Instant) -> Option<Held> {
        let len = len as u64;
        if self.bytes.available(now) >= len.min(self.bytes.burst()) {
            let _ = self.messages.try_take(1, now);
            let _ = self.bytes.take_debt(len, now);
            Some(std::mem::take(&mut self.held))
        } else {
            self.held.messages += 1;
            self.held.bytes += len;
            None
        }
    }

    /// What was held back since the last message let through or the last call of this (then
    /// reset), for a periodic summary.
    pub fn take_held(&mut self) -> Held {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn throttle_lets_one_through_per_interval_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(5));
        assert_eq!(t.admit(t0), Some(0));
        for i in 1..=30 {
            assert_eq!(t.admit(t0 + Duration::from_millis(100 * i)), None);
        }
        assert_eq!(t.admit(t0 + Duration::from_secs(5)), Some(30));
        assert_eq!(t.admit(t0 + Duration::from_secs(6)), None);
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(10), ms(50));
        assert_eq!(
            [b.failed(), b.failed(), b.failed(), b.failed()],
            [ms(10), ms(20), ms(40), ms(50)]
        );
        b.succeeded();
        assert_eq!(b.failed(), ms(10));
    }
    use proptest::prelude::*;

    #[test]
    fn repeats_let_a_rate_through_and_count_the_rest() {
        let t0 = Instant::now();
        let mut r = Repeats::new(2, t0);
        assert_eq!(r.admit(t0), Some(0));
        assert_eq!(r.admit(t0), Some(0));
        assert_eq!(r.admit(t0), None);
        assert_eq!(r.admit(t0), None);
        assert_eq!(r.admit(t0 + Duration::from_millis(500)), Some(2));
        assert_eq!(r.admit(t0 + Duration::from_millis(500)), None);
    }

    #[test]
    fn log_gate_limits_messages_and_bytes() {
        let t0 = Instant::now();
        let mut g = LogGate::new(3, 100, t0);
        // Three short messages, then the message rate holds the fourth back unread.
        for _ in 0..3 {
            assert!(g.admit_message(10, t0));
            assert_eq!(g.admit_bytes(10, t0), Some(Held::default()));
        }
        assert!(!g.admit_message(10, t0));
        // A second later: a 90-byte message fits, the next one's bytes do not.
        let t1 = t0 + Duration::from_secs(1);
        // A message that may be 200 bytes long is read only with a full bucket.
        assert!(g.admit_message(200, t1));
        assert!(g.admit_message(90, t1));
        assert_eq!(
            g.admit_bytes(90, t1),
            Some(Held {
                messages: 1,
                bytes: 0
            })
        );
        // 10 bytes left: a message of up to 50 is not read; one said to be short but longer
        // than what is left is held back once read.
        assert!(!g.admit_message(50, t1));
        assert!(g.admit_message(5, t1));
        assert_eq!(g.admit_bytes(50, t1), None);
        assert_eq!(
            g.take_held(),
            Held {
                messages: 2,
                bytes: 50
            }
        );
        assert_eq!(g.take_held(), Held::default());
    }

    #[test]
    fn log_gate_bytes_hold_over_time() {
        // Whatever the message sizes, bytes let through stay within rate x seconds + burst.
        let t0 = Instant::now();
        let mut g = LogGate::new(1000, 1000, t0);
        let mut passed = 0u64;
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_millis(i);
            if g.admit_message(700, now) && g.admit_bytes(700, now).is_some() {
                passed += 700;
            }
        }
        // 10 s at 1000 bytes/s, plus the burst, plus one message of debt.
        assert!(passed <= 10_000 + 1000 + 700, "{passed}");
        assert!(passed >= 8_000, "{passed}");
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn starts_full_and_refills_up_to_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5, t0);
        assert_eq!(b.available(t0), 5);
        assert_eq!(b.try_take(5, t0), Ok(()));
        assert_eq!(b.available(t0), 0);
        assert_eq!(b.available(t0 + ms(100)), 1);
        assert_eq!(b.available(t0 + ms(299)), 2);
        assert_eq!(b.available(t0 + ms(300)), 3);
        assert_eq!(b.available(t0 + Duration::from_secs(3600)), 5);
        assert_eq!(b.try_take(5, t0 + Duration::from_secs(3600)), Ok(()));
        assert_eq!(b.rate_per_sec(), 10);
        assert_eq!(b.burst(), 5);
    }

    #[test]
    fn wait_is_exact() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, 3, t0);
        assert_eq!(b.try_take(3, t0), Ok(()));
        // One token takes a third of a second: 333_333_333.33 ns, rounded up.
        let wait = b.try_take(1, t0).unwrap_err();
        assert_eq!(wait, Duration::from_nanos(333_333_334));
        assert!(b.try_take(1, t0 + wait - Duration::from_nanos(1)).is_err());
        assert_eq!(b.try_take(1, t0 + wait), Ok(()));
        // The rounding does not accumulate: three tokens in exactly one second.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.try_take(2, t1), Ok(()));
        assert!(b.try_take(1, t1).is_err());
    }

    #[test]
    fn steady_rate_over_ten_seconds() {
        let t0 = Instant::now();
        let (rate, burst) = (1000, 50);
        let mut b = TokenBucket::new(rate, burst, t0);
        let mut granted = 0;
        let step = Duration::from_micros(137);
        let mut now = t0;
        while now <= t0 + Duration::from_secs(10) {
            while b.try_take(3, now).is_ok() {
                granted += 3;
            }
            now += step;
        }
        assert!(granted <= rate * 10 + burst, "{granted}");
        assert!(granted >= rate * 10 - 3, "{granted}");
    }

    #[test]
    fn debt_waits_are_exact() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 100, t0);
        assert_eq!(b.take_debt(50, t0), Duration::ZERO);
        assert_eq!(b.take_debt(250, t0), Duration::from_secs(2));
        assert_eq!(b.available(t0), 0);
        // In debt, even an empty request waits for the debt to clear.
        assert_eq!(b.try_take(0, t0 + ms(500)), Err(ms(1500)));
        assert_eq!(b.try_take(1, t0 + ms(500)), Err(ms(1510)));
        assert_eq!(b.take_debt(0, t0 + ms(1500)), ms(500));
        assert_eq!(b.try_take(0, t0 + ms(2000)), Ok(()));
        assert_eq!(b.available(t0 + ms(2500)), 50);
    }

    #[test]
    fn wait_time_peeks_without_taking() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 10, t0);
        assert_eq!(b.wait_time(10, t0), Duration::ZERO);
        assert_eq!(b.available(t0), 10);
        assert_eq!(b.try_take(8, t0), Ok(()));
        assert_eq!(b.wait_time(3, t0), ms(100));
        assert_eq!(b.wait_time(3, t0), b.clone().try_take(3, t0).unwrap_err());
        assert_eq!(b.wait_time(3, t0 + ms(100)), Duration::ZERO);
        assert_eq!(b.try_take(3, t0 + ms(100)), Ok(()));
        // Beyond the burst and in debt it reports what try_take would.
        assert_eq!(b.wait_time(25, t0 + ms(100)), ms(2500));
        b.take_debt(20, t0 + ms(100));
        assert_eq!(b.wait_time(0, t0 + ms(100)), ms(2000));
        assert_eq!(TokenBucket::new(0, 0, t0).wait_time(1, t0), Duration::MAX);
    }

    #[test]
    fn oversized_requests_wait_as_debt() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 10, t0);
        // 25 can never fit in a bucket of 10; the wait is what take_debt would ask for.
        assert_eq!(b.try_take(25, t0), Err(ms(1500)));
        assert_eq!(b.try_take(25, t0 + Duration::from_secs(100)), Err(ms(1500)));
        assert_eq!(b.available(t0 + Duration::from_secs(100)), 10);
        assert_eq!(b.take_debt(25, t0 + Duration::from_secs(100)), ms(1500));
    }

    #[test]
    fn rate_zero_never_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0, 2, t0);
        assert_eq!(b.try_take(2, t0), Ok(()));
        assert_eq!(
            b.try_take(1, t0 + Duration::from_secs(1_000_000)),
            Err(Duration::MAX)
        );
        assert_eq!(b.take_debt(1, t0), Duration::MAX);
        assert_eq!(b.available(t0 + Duration::from_secs(1_000_000)), 0);
        let mut empty = TokenBucket::new(0, 0, t0);
        assert_eq!(empty.try_take(0, t0), Ok(()));
        assert_eq!(empty.take_debt(0, t0), Duration::ZERO);
    }

    #[test]
    fn extremes_do_not_panic() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(u64::MAX, u64::MAX, t0);
        assert_eq!(b.try_take(u64::MAX, t0), Ok(()));
        assert_eq!(
            b.available(t0 + Duration::from_secs(1_000_000_000_000)),
            u64::MAX
        );
        for _ in 0..10 {
            b.take_debt(u64::MAX, t0);
        }
        assert!(b.try_take(1, t0).is_err());
        let mut slow = TokenBucket::new(1, 0, t0);
        for _ in 0..100 {
            slow.take_debt(u64::MAX, t0);
        }
        assert!(slow.take_debt(u64::MAX, t0) > Duration::from_secs(u64::MAX / 2));
    }

    #[test]
    fn time_going_backwards_is_no_time() {
        let t0 = Instant::now();
        let late = t0 + Duration::from_secs(10);
        let mut b = TokenBucket::new(10, 10, late);
        assert_eq!(b.try_take(10, late), Ok(()));
        assert_eq!(b.available(t0), 0);
        assert_eq!(b.available(late), 0);
        assert_eq!(b.available(late + ms(100)), 1);
        // Going back after a later `now` does not re-earn the same time twice.
        assert_eq!(b.available(late), 1);
        assert_eq!(b.available(late + ms(100)), 1);
    }

    /// `total <= burst + rate * window_ns / 1e9`, exactly.
    fn within_rate(total: u128, burst: u64, rate: u64, window_ns: u128) -> bool {
        total * 1_000_000_000 <= u128::from(burst) * 1_000_000_000 + u128::from(rate) * window_ns
    }

    proptest! {
        #[test]
        fn granted_never_exceeds_burst_plus_rate(
            rate in 0u64..2000,
            burst in 0u64..100,
            ops in proptest::collection::vec((0u64..50_000_000, 0u64..120), 1..150),
        ) {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(rate, burst, t0);
            let mut now = t0;
            // (time since t0 in ns, tokens granted at that time)
            let mut grants: Vec<(u128, u64)> = Vec::new();
            for (step_ns, n) in ops {
                now += Duration::from_nanos(step_ns);
                let at = (now - t0).as_nanos();
                match b.try_take(n, now) {
                    Ok(()) => grants.push((at, n)),
                    Err(wait) => {
                        prop_assert!(wait > Duration::ZERO);
                        if rate == 0 {
                            prop_assert_eq!(wait, Duration::MAX);
                        } else if n <= burst {
                            // The wait is exact: one nanosecond less is not enough.
                            let mut probe = b.clone();
                            let almost = now + wait - Duration::from_nanos(1);
                            prop_assert!(probe.try_take(n, almost).is_err());
                            prop_assert_eq!(probe.try_take(n, now + wait), Ok(()));
                        }
                    }
                }
            }
            // Over every window [t_i, t_j], granted <= burst + rate * (t_j - t_i).
            for i in 0..grants.len() {
                let mut total: u128 = 0;
                for &(t_j, n) in &grants[i..] {
                    total += u128::from(n);
                    let window = t_j - grants[i].0;
                    prop_assert!(
                        within_rate(total, burst, rate, window),
                        "granted {} in {} ns", total, window
                    );
                }
            }
        }

        #[test]
        fn debt_keeps_the_long_run_rate(
            rate in 1u64..1000,
            burst in 0u64..100,
            batches in proptest::collection::vec((0u64..3_000_000_000, 0u64..500), 1..50),
        ) {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(rate, burst, t0);
            let mut now = t0;
            let mut total: u128 = 0;
            for (gap_ns, n) in batches {
                // A writer that sends its batch and then waits as told before the next one.
                now += Duration::from_nanos(gap_ns);
                total += u128::from(n);
                let wait = b.take_debt(n, now);
                now += wait;
                let elapsed = (now - t0).as_nanos();
                prop_assert!(within_rate(total, burst, rate, elapsed));
                // Having waited, the debt is paid.
                prop_assert_eq!(b.try_take(0, now), Ok(()));
            }
        }
    }
}
