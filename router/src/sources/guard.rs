//! What the network sources (and the metrics endpoint) share to give every peer bounded memory,
//! bounded time and a bounded share of the router:
//!
//! - [`Budget`]: the bytes that requests and batches being read may hold at once, per source
//!   (`max_inflight_bytes`), and per peer address (`max_inflight_bytes_per_peer`). A
//!   [`Reservation`] grows before a body's buffer does (as it arrives, is decompressed and
//!   parsed; waiting at most until a deadline, first for the peer's share, then for the whole
//!   budget), and gives its bytes back when dropped (the batch is in the ingress queue by then,
//!   whose own limits count it, or it was refused).
//! - [`PeerCaps`]: connections per peer address (`max_connections_per_peer`).
//! - [`Activity`] and [`Tracked`]: a connection's requests in progress and the first byte it sent
//!   while idle, from which [`crate::core::deadline::IdleTimeouts`] says when to close it.
//! - [`AcceptErrors`]: back off and log once per interval (with a count) when accepting fails,
//!   e.g. because the process is out of file descriptors.
//!
//! The decisions (deadlines, back-off, log gates) are pure and live in [`crate::core`]; this
//! module holds the shared state and the waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, Semaphore};

use crate::core::rate_limit::{Backoff, Throttle};

/// Why a reservation could not grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// More than the whole budget, or than one peer's share of it: this request can never fit
    /// (answer "too large").
    #[error(
        "needs {needed} bytes, more than max_inflight_bytes ({total}) or one peer's share of it \
         (max_inflight_bytes_per_peer, {per_peer}) allows"
    )]
    TooLarge {
        /// Bytes the request would hold.
        needed: usize,
        /// The whole budget.
        total: usize,
        /// One peer's share.
        per_peer: usize,
    },
    /// Other requests hold the budget, or this peer's share of it, now (answer "busy, retry").
    #[error(
        "other requests hold the memory budget now (max_inflight_bytes {total}, \
         max_inflight_bytes_per_peer {per_peer})"
    )]
    Busy {
        /// The whole budget.
        total: usize,
        /// One peer's share.
        per_peer: usize,
    },
}

/// The bytes a source's requests in progress may hold at once, and each peer address's share.
#[derive(Debug, Clone)]
pub struct Budget {
    sem: Arc<Semaphore>,
    total: usize,
    per_peer: usize,
    /// Each peer address's share, while it holds some of it.
    peers: Arc<Mutex<HashMap<IpAddr, Arc<Semaphore>>>>,
}

impl Budget {
    /// A budget of `total` bytes (at most [`Semaphore::MAX_PERMITS`]), of which one peer address
    /// may hold `per_peer`.
    pub fn new(total: usize, per_peer: usize) -> Budget {
        let total = total.min(Semaphore::MAX_PERMITS);
        Budget {
            sem: Arc::new(Semaphore::new(total)),
            total,
            per_peer: per_peer.min(total),
            peers: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The whole budget.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes not reserved now.
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }

    /// An empty reservation for a request from `peer`.
    pub fn reserve(&self, peer: IpAddr) -> Reservation {
        let share = self
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(peer)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_peer)))
            .clone();
        Reservation {
            budget: self.clone(),
            peer,
            share,
            held: 0,
        }
    }

    fn busy(&self) -> BudgetError {
        BudgetError::Busy {
            total: self.total,
            per_peer: self.per_peer,
        }
    }
}

/// Bytes held from a [`Budget`] (and from its peer's share) for one request; given back when
/// dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Budget,
    peer: IpAddr,
    share: Arc<Semaphore>,
    held: usize,
}

impl Reservation {
    /// Bytes held.
    pub fn held(&self) -> usize {
        self.held
    }

    fn check(&self, n: usize) -> Result<u32, BudgetError> {
        let b = &self.budget;
        let needed = self.held.saturating_add(n);
        let too_large = BudgetError::TooLarge {
            needed,
            total: b.total,
            per_peer: b.per_peer,
        };
        if needed > b.per_peer {
            return Err(too_large);
        }
        u32::try_from(n).map_err(|_| too_large)
    }

    /// Grows by `n` bytes if they are free now (in the peer's share and in the whole budget).
    pub fn try_grow(&mut self, n: usize) -> Result<(), BudgetError> {
        if n == 0 {
            return Ok(());
        }
        let k = self.check(n)?;
        let b = &self.budget;
        let Ok(mine) = self.share.try_acquire_many(k) else {
            return Err(b.busy());
        };
        let Ok(all) = b.sem.try_acquire_many(k) else {
            return Err(b.busy());
        };
        mine.forget();
        all.forget();
        self.held += n;
        Ok(())
    }

    /// Grows by `n` bytes, waiting for them (in the peer's share, then in the whole budget)
    /// until `deadline` at most.
    pub async fn grow(
        &mut self,
        n: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(), BudgetError> {
        if n == 0 {
            return Ok(());
        }
        let k = self.check(n)?;
        let b = self.budget.clone();
        let taken = tokio::time::timeout_at(deadline, async {
            let mine = self.share.acquire_many(k).await.ok()?;
            let all = b.sem.acquire_many(k).await.ok()?;
            mine.forget();
            all.forget();
            Some(())
        })
        .await;
        match taken {
            Ok(Some(())) => {
                self.held += n;
                Ok(())
            }
            _ => Err(b.busy()),
        }
    }

    /// Gives back what is held beyond `n` bytes.
    pub fn shrink_to(&mut self, n: usize) {
        if n < self.held {
            let back = self.held - n;
            self.budget.sem.add_permits(back);
            self.share.add_permits(back);
            self.held = n;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shrink_to(0);
        // Forget the peer's share once no request of it holds or waits for any.
        let mut peers = self.budget.peers.lock().unwrap_or_else(|e| e.into_inner());
        if Arc::strong_count(&self.share) == 2
            && peers
                .get(&self.peer)
                .is_some_and(|s| Arc::ptr_eq(s, &self.share))
        {
            peers.remove(&self.peer);
        }
    }
}

/// Open connections per peer address.
#[derive(Debug, Clone)]
pub struct PeerCaps {
    max: usize,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PeerCaps {
    /// At most `max` connections per address.
    pub fn new(max: usize) -> PeerCaps {
        PeerCaps {
            max,
            counts: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for one more connection from `ip`, or `None` when it has `max` already.
    pub fn admit(&self, ip: IpAddr) -> Option<PeerSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            caps: self.clone(),
            ip,
        })
    }
}

/// One connection's place in [`PeerCaps`]; freed when dropped.
#[derive(Debug)]
pub struct PeerSlot {
    caps: PeerCaps,
    ip: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.caps.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// What a connection is doing, for its idle watchdog: requests in progress, when it last became
/// idle, and when the first byte arrived since.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    served: AtomicBool,
    /// Nanoseconds since `start` at which the connection last became idle.
    idle_since: AtomicU64,
    /// Set while idle until the first byte arrives.
    armed: AtomicBool,
    /// Nanoseconds since `start` of the first byte since `idle_since` (0: none yet).
    first_byte: AtomicU64,
    /// Woken when a request starts or ends, or the first byte of an idle period arrives.
    changed: Notify,
}

impl Activity {
    /// A fresh connection, idle since now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            armed: AtomicBool::new(true),
            first_byte: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    fn since_start(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn at(&self, nanos: u64) -> Instant {
        self.start + Duration::from_nanos(nanos)
    }

    /// Starts the connection's time anew (after a TLS handshake): idle since now, no byte seen.
    pub fn restart(&self) {
        self.first_byte.store(0, Ordering::SeqCst);
        self.idle_since.store(self.since_start(), Ordering::SeqCst);
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Marks a request in progress until the returned guard is dropped.
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.armed.store(false, Ordering::SeqCst);
        self.changed.notify_one();
        RequestGuard {
            activity: self.clone(),
        }
    }

    /// Records that bytes arrived (called by [`Tracked`] on every read that returned data).
    fn bytes_arrived(&self) {
        if self.armed.load(Ordering::Relaxed) && self.armed.swap(false, Ordering::SeqCst) {
            self.first_byte
                .store(self.since_start().max(1), Ordering::SeqCst);
            self.changed.notify_one();
        }
    }

    /// `None` while a request is in progress; else (idle since, served any, first byte since).
    pub fn idle_state(&self) -> Option<(Instant, bool, Option<Instant>)> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let first = match self.first_byte.load(Ordering::SeqCst) {
            0 => None,
            n => Some(self.at(n)),
        };
        Some((
            self.at(self.idle_since.load(Ordering::SeqCst)),
            self.served.load(Ordering::SeqCst),
            first,
        ))
    }

    /// Resolves when a request starts or ends, or the first byte of an idle period arrives.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// A request in progress on a connection (see [`Activity::request`]).
#[derive(Debug)]
pub struct RequestGuard {
    activity: Arc<Activity>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.activity;
        if a.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            a.served.store(true, Ordering::SeqCst);
            a.first_byte.store(0, Ordering::SeqCst);
            a.idle_since.store(a.since_start(), Ordering::SeqCst);
            a.armed.store(true, Ordering::SeqCst);
        }
        a.changed.notify_one();
    }
}

/// A connection's byte stream that tells its [`Activity`] when data arrives.
#[derive(Debug)]
pub struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Tracked<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, activity: Arc<Activity>) -> Tracked<T> {
        Tracked { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// True for errors that mean the process or system is out of a resource that frees up again
/// (file descriptors, socket buffers, memory): worth waiting and retrying, not giving up.
pub fn is_exhaustion(e: &std::io::Error) -> bool {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    const ENOBUFS: i32 = 105;
    const ENOMEM: i32 = 12;
    if let Some(code) = e.raw_os_error() {
        return matches!(code, EMFILE | ENFILE | ENOBUFS | ENOMEM);
    }
    // An error wrapped with context (a path) keeps the original as its source.
    let mut source = e
        .get_ref()
        .map(|inner| inner as &(dyn std::error::Error + 'static));
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return is_exhaustion(io);
        }
        source = s.source();
    }
    false
}

/// Failed accepts of one listener: waits that double while they keep failing, and one log
/// line per 5 s saying how many failed.
#[derive(Debug)]
pub struct AcceptErrors {
    what: String,
    backoff: Backoff,
    log: Throttle,
}

impl AcceptErrors {
    /// For the listener described as `what` (e.g. "source `web`").
    pub fn new(what: impl Into<String>) -> AcceptErrors {
        AcceptErrors {
            what: what.into(),
            backoff: Backoff::new(Duration::from_millis(10), Duration::from_secs(1)),
            log: Throttle::new(Duration::from_secs(5)),
        }
    }

    /// An accept succeeded.
    pub fn succeeded(&mut self) {
        self.backoff.succeeded();
    }

    /// An accept failed with `e`: logs (at most once per interval) and waits before the next
    /// attempt. Connections meanwhile wait in the listen backlog.
    pub async fn failed(&mut self, e: &std::io::Error) {
        let wait = self.backoff.failed();
        if let Some(held) = self.log.admit(Instant::now()) {
            let why = if is_exhaustion(e) {
                " (out of file descriptors or memory: connections wait in the backlog; raise \
                 the descriptor limit or lower max_connections)"
            } else {
                ""
            };
            tracing::warn!(
                "{}: accepting a connection failed: {e}{why}; {held} more failure(s) since the \
                 last message; retrying in {} ms",
                self.what,
                wait.as_millis()
            );
        }
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_hold_bytes_until_dropped() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let b = Budget::new(100, 100);
        let mut r = b.reserve(a);
        r.try_grow(60).unwrap();
        let mut other = b.reserve(c);
        let busy = BudgetError::Busy {
            total: 100,
            per_peer: 100,
        };
        assert_eq!(other.try_grow(50), Err(busy));
        assert!(matches!(
            other.try_grow(101),
            Err(BudgetError::TooLarge { needed: 101, .. })
        ));
        let soon = tokio::time::Instant::now() + Duration::from_millis(20);
        assert!(other.grow(50, soon).await.is_err());
        r.shrink_to(10);
        assert_eq!(b.available(), 90);
        other.grow(50, soon).await.unwrap();
        drop(r);
        drop(other);
        assert_eq!(b.available(), 100);
    }

    #[tokio::test]
    async fn one_peer_holds_at_most_its_share() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let b = Budget::new(100, 40);
        let mut r1 = b.reserve(a);
        let mut r2 = b.reserve(a);
        r1.try_grow(30).unwrap();
        // The same peer's second request finds its share taken until its deadline.
        let soon = tokio::time::Instant::now() + Duration::from_millis(20);
        assert!(matches!(
            r2.grow(20, soon).await,
            Err(BudgetError::Busy { .. })
        ));
        let later = tokio::time::Instant::now() + Duration::from_secs(60);
        // A request bigger than a share can never fit.
        assert!(matches!(r2.try_grow(41), Err(BudgetError::TooLarge { .. })));
        // Another peer still has the rest.
        let mut r3 = b.reserve(c);
        r3.try_grow(40).unwrap();
        drop(r1);
        r2.try_grow(40).unwrap();
        assert_eq!(b.available(), 20);
        // A request waiting for its peer's share gets it when another gives it back.
        let mut r4 = b.reserve(c);
        {
            let grow = r4.grow(30, later);
            tokio::pin!(grow);
            // Polled once: it is waiting (the peer's share is taken by r3).
            assert!(
                tokio::time::timeout(Duration::ZERO, &mut grow)
                    .await
                    .is_err()
            );
            drop(r3);
            grow.await.unwrap();
        }
        drop((r2, r4));
        assert_eq!(b.available(), 100);
        assert!(b.peers.lock().unwrap().is_empty());
    }

    #[test]
    fn peers_are_capped_and_slots_come_back() {
        let caps = PeerCaps::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = caps.admit(a).unwrap();
        let _s2 = caps.admit(a).unwrap();
        assert!(caps.admit(a).is_none());
        assert!(caps.admit(b).is_some());
        drop(s1);
        assert!(caps.admit(a).is_some());
    }

    #[test]
    fn activity_tracks_requests_and_the_first_idle_byte() {
        let a = Activity::new();
        let (_, served, first) = a.idle_state().unwrap();
        assert!(!served && first.is_none());
        a.bytes_arrived();
        assert!(a.idle_state().unwrap().2.is_some());
        let g = a.request();
        assert!(a.idle_state().is_none());
        drop(g);
        let (_, served, first) = a.idle_state().unwrap();
        assert!(served && first.is_none());
        a.bytes_arrived();
        assert!(a.idle_state().unwrap().2.is_some());
    }

    #[test]
    fn exhaustion_is_recognized_through_context() {
        let e = std::io::Error::from_raw_os_error(24);
        assert!(is_exhaustion(&e));
        let wrapped = std::io::Error::new(e.kind(), e);
        assert!(is_exhaustion(&wrapped));
        assert!(!is_exhaustion(&std::io::Error::from_raw_os_error(13)));
    }
}
