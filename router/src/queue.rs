//! Bounded queues between components: a building block below the wiring (`topology`) that
//! config (limits), sources, stages and sinks use; it uses no other module of the crate.
//!
//! A [`Queue`] is bounded both in records and in bytes (see [`Weighed`]): a send waits while the
//! queue is full, which is how backpressure travels from a slow sink back to the source. One
//! item is always admitted into an empty queue, so an item larger than the limits cannot
//! deadlock. Both ends work from async tasks and from plain threads (`blocking_*`), because the
//! CPU-bound parts of the pipeline (framing, file writing, plugins) run on threads of their own
//! while network sources and sinks are async.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Instant;

use tokio::sync::Notify;

/// Something with a size in records and bytes.
pub trait Weighed {
    /// Number of records.
    fn records(&self) -> u64;
    /// Bytes of memory held.
    fn bytes(&self) -> u64;
}

/// Limits of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most records queued at once.
    pub records_max: u64,
    /// Most bytes queued at once.
    pub bytes_max: u64,
}

/// A queue's current and peak fill, for stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// Records queued now.
    pub records: u64,
    /// Bytes queued now.
    pub bytes: u64,
    /// Highest number of records ever queued at once.
    pub records_peak: u64,
    /// Highest number of bytes ever queued at once.
    pub bytes_peak: u64,
}

struct State<T> {
    items: VecDeque<T>,
    depth: Depth,
    senders: usize,
    receiver_alive: bool,
}

struct Shared<T> {
    limits: Limits,
    state: Mutex<State<T>>,
    not_empty: Notify,
    not_full: Notify,
    /// Sends waiting now for room (their item did not fit when they last looked).
    waiting_senders: AtomicUsize,
    /// Receives waiting now for an item (the queue was empty and open when they last looked).
    waiting_receivers: AtomicUsize,
}

/// Counts one waiter in `.0` for as long as it lives (a dropped future counts off too).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, Ordering::AcqRel);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the state inconsistent (every update is
        // a few plain assignments), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Makes a queue with the given limits, returning its sending and receiving ends.
pub fn queue<T: Weighed>(limits: Limits) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        limits,
        state: Mutex::new(State {
            items: VecDeque::new(),
            depth: Depth::default(),
            senders: 1,
            receiver_alive: true,
        }),
        not_empty: Notify::new(),
        not_full: Notify::new(),
        waiting_senders: AtomicUsize::new(0),
        waiting_receivers: AtomicUsize::new(0),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// Reads a queue's fill without keeping it open (unlike a [`Sender`]).
pub struct Probe<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Probe<T> {
    /// Current and peak fill.
    pub fn depth(&self) -> Depth {
        self.shared.lock().depth
    }

    /// The queue's limits.
    pub fn limits(&self) -> Limits {
        self.shared.limits
    }
}

/// The sending end; clone it for more producers. The queue closes when the last one is dropped.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving end.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// A sending end that does not keep the queue open (see [`Sender::downgrade`]).
pub struct WeakSender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> WeakSender<T> {
    /// A [`Sender`], unless every sender is gone already (the queue is closed for good).
    pub fn upgrade(&self) -> Option<Sender<T>> {
        let mut st = self.shared.lock();
        if st.senders == 0 {
            return None;
        }
        st.senders += 1;
        Some(Sender {
            shared: self.shared.clone(),
        })
    }
}

/// Wakes receives waiting on a queue (see [`Receiver::recv_unless`]) without closing it or
/// keeping it open.
pub struct Interrupter<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Interrupter<T> {
    /// Wakes every receive waiting now, so it looks at its stop flag again.
    pub fn interrupt(&self) {
        self.shared.not_empty.notify_waiters();
    }
}

/// A receive returned because its stop flag was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

/// A timed receive reached its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// A send failed because the receiver is gone; the item is handed back.
#[derive(Debug)]
pub struct Closed<T>(pub T);

impl<T: Weighed> Sender<T> {
    /// Queues `item`, waiting while the queue is full. Fails only when the receiver is gone.
    pub async fn send(&self, item: T) -> Result<(), Closed<T>> {
        let (records, bytes) = (item.records(), item.bytes());
        let mut item = Some(item);
        loop {
            let mut notified = pin!(self.shared.not_full.notified());
            notified.as_mut().enable();
            {
                let mut st = self.shared.lock();
                let Some(it) = item.take() else {
                    unreachable!("item is put back before waiting")
                };
                if !st.receiver_alive {
                    return Err(Closed(it));
                }
                let limits = self.shared.limits;
                let fits = st.depth.records + records <= limits.records_max
                    && st.depth.bytes + bytes <= limits.bytes_max;
                if fits || st.items.is_empty() {
                    st.items.push_back(it);
                    let d = &mut st.depth;
                    d.records += records;
                    d.bytes += bytes;
                    d.records_peak = d.records_peak.max(d.records);
                    d.bytes_peak = d.bytes_peak.max(d.bytes);
                    drop(st);
                    self.shared.not_empty.notify_one();
                    return Ok(());
                }
                item = Some(it);
            }
            let _waiting = Waiting::new(&self.shared.waiting_senders);
            notified.await;
        }
    }

    /// A handle that makes senders while this queue is open, without keeping it open.
    pub fn downgrade(&self) -> WeakSender<T> {
        WeakSender {
            shared: self.shared.clone(),
        }
    }

    /// A probe for stats that does not keep the queue open.
    pub fn probe(&self) -> Probe<T> {
        Probe {
            shared: self.shared.clone(),
        }
    }

    /// [`Sender::send`] for threads outside the async runtime.
    pub fn blocking_send(&self, item: T) -> Result<(), Closed<T>> {
        block_on(self.send(item))
    }

    /// Current and peak fill.
    pub fn depth(&self) -> Depth {
        self.shared.lock().depth
    }

    /// The queue's limits.
    pub fn limits(&self) -> Limits {
        self.shared.limits
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let last = {
            let mut st = self.shared.lock();
            st.senders -= 1;
            st.senders == 0
        };
        if last {
            self.shared.not_empty.notify_one();
        }
    }
}

impl<T: Weighed> Receiver<T> {
    fn pop(&self) -> Result<Option<T>, ()> {
        let mut st = self.shared.lock();
        match st.items.pop_front() {
            Some(it) => {
                st.depth.records -= it.records();
                st.depth.bytes -= it.bytes();
                drop(st);
                self.shared.not_full.notify_waiters();
                Ok(Some(it))
            }
            // Closed by the receiver (see `close`) or by the last sender.
            None if st.senders == 0 || !st.receiver_alive => Ok(None),
            None => Err(()),
        }
    }

    /// Takes the next item, waiting while the queue is empty. `None` once every sender is gone
    /// and the queue is drained, or once the queue was closed by [`Receiver::close`].
    pub async fn recv(&self) -> Option<T> {
        loop {
            let mut notified = pin!(self.shared.not_empty.notified());
            notified.as_mut().enable();
            if let Ok(item) = self.pop() {
                return item;
            }
            let _waiting = Waiting::new(&self.shared.waiting_receivers);
            notified.await;
        }
    }

    /// [`Receiver::recv`] for threads outside the async runtime.
    pub fn blocking_recv(&self) -> Option<T> {
        block_on(self.recv())
    }

    /// Like [`Receiver::recv`], but returns [`Interrupted`] instead of taking an item once `stop`
    /// is set. `stop` is read before every attempt; set it, then call
    /// [`Interrupter::interrupt`] to end a receive that is waiting.
    pub async fn recv_unless(&self, stop: &AtomicBool) -> Result<Option<T>, Interrupted> {
        loop {
            let mut notified = pin!(self.shared.not_empty.notified());
            notified.as_mut().enable();
            if stop.load(Ordering::Acquire) {
                return Err(Interrupted);
            }
            if let Ok(item) = self.pop() {
                return Ok(item);
            }
            let _waiting = Waiting::new(&self.shared.waiting_receivers);
            notified.await;
        }
    }

    /// [`Receiver::recv_unless`] for threads outside the async runtime.
    pub fn blocking_recv_unless(&self, stop: &AtomicBool) -> Result<Option<T>, Interrupted> {
        block_on(self.recv_unless(stop))
    }

    /// A handle that wakes receives waiting on this queue.
    pub fn interrupter(&self) -> Interrupter<T> {
        Interrupter {
            shared: self.shared.clone(),
        }
    }

    /// Like [`Receiver::blocking_recv`], but gives up at `deadline` (with the queue still open
    /// and empty).
    pub fn blocking_recv_until(&self, deadline: Instant) -> Result<Option<T>, TimedOut> {
        block_on_until(self.recv(), deadline).ok_or(TimedOut)
    }

    /// Takes an item if one is queued, without waiting.
    pub fn try_recv(&self) -> Option<T> {
        self.pop().ok().flatten()
    }

    /// Current and peak fill.
    pub fn depth(&self) -> Depth {
        self.shared.lock().depth
    }

    /// Closes the queue for senders (their sends fail from now on) and returns what was queued.
    /// Receives waiting on the queue (from other threads sharing this end) return `None`.
    pub fn close(&self) -> Vec<T> {
        let items: Vec<T> = {
            let mut st = self.shared.lock();
            st.receiver_alive = false;
            st.depth.records = 0;
            st.depth.bytes = 0;
            st.items.drain(..).collect()
        };
        self.shared.not_full.notify_waiters();
        self.shared.not_empty.notify_waiters();
        items
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.lock().receiver_alive = false;
        self.shared.not_full.notify_waiters();
    }
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on the current thread, parking it while the future waits.
/// For the queue's own futures, which need no runtime.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Like [`block_on`], but returns `None` if the future is not done by `deadline`.
pub fn block_on_until<F: Future>(f: F, deadline: Instant) -> Option<F::Output> {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::park_timeout(deadline - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Debug, PartialEq)]
    struct Item(u64, u64);

    impl Weighed for Item {
        fn records(&self) -> u64 {
            self.0
        }
        fn bytes(&self) -> u64 {
            self.1
        }
    }

    fn limits(records_max: u64, bytes_max: u64) -> Limits {
        Limits {
            records_max,
            bytes_max,
        }
    }

    /// Sends and receives waiting now on the queue behind `probe`.
    fn waiting<T>(probe: &Probe<T>) -> (usize, usize) {
        let s = &probe.shared;
        (
            s.waiting_senders.load(Ordering::Acquire),
            s.waiting_receivers.load(Ordering::Acquire),
        )
    }

    /// A probe of the queue `rx` receives from.
    fn probe_of<T>(rx: &Receiver<T>) -> Probe<T> {
        Probe {
            shared: rx.shared.clone(),
        }
    }

    /// Waits until `waiting(probe)` is `want` (another thread has looked at the queue and is
    /// waiting for a wakeup), checking every millisecond for at most ten seconds.
    fn wait_for_waiters<T>(probe: &Probe<T>, want: (usize, usize)) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while waiting(probe) != want {
            assert!(
                Instant::now() < deadline,
                "(senders, receivers) waiting stayed {:?}, expected {want:?}",
                waiting(probe)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn fifo_and_close_on_last_sender() {
        let (tx, rx) = queue(limits(10, 100));
        let tx2 = tx.clone();
        tx.blocking_send(Item(1, 1)).unwrap();
        tx2.blocking_send(Item(2, 2)).unwrap();
        drop(tx);
        assert_eq!(rx.try_recv(), Some(Item(1, 1)));
        drop(tx2);
        assert_eq!(rx.blocking_recv(), Some(Item(2, 2)));
        assert_eq!(rx.blocking_recv(), None);
    }

    #[test]
    fn full_queue_blocks_sender_until_space() {
        let (tx, rx) = queue(limits(3, 1000));
        tx.blocking_send(Item(2, 10)).unwrap();
        let probe = tx.probe();
        let t = std::thread::spawn(move || {
            tx.blocking_send(Item(2, 10)).unwrap();
            tx.depth()
        });
        // The second send cannot complete while 2 + 2 > 3 records are queued.
        wait_for_waiters(&probe, (1, 0));
        assert!(!t.is_finished());
        assert_eq!(rx.depth().records, 2);
        assert_eq!(rx.blocking_recv(), Some(Item(2, 10)));
        let depth = t.join().unwrap();
        assert_eq!(depth.records_peak, 2);
        assert_eq!(rx.blocking_recv(), Some(Item(2, 10)));
    }

    #[test]
    fn bytes_bound_too_and_oversized_item_admitted_when_empty() {
        let (tx, rx) = queue(limits(100, 10));
        tx.blocking_send(Item(1, 50)).unwrap();
        assert_eq!(rx.depth().bytes, 50);
        let tx2 = tx.clone();
        let t = std::thread::spawn(move || tx2.blocking_send(Item(1, 1)).is_ok());
        wait_for_waiters(&tx.probe(), (1, 0));
        assert!(
            !t.is_finished(),
            "a send into a queue over its byte limit must wait"
        );
        rx.blocking_recv().unwrap();
        assert!(t.join().unwrap());
    }

    #[test]
    fn a_dropped_waiting_send_or_receive_is_no_longer_counted_as_waiting() {
        let (tx, rx) = queue(limits(1, 10));
        let probe = tx.probe();
        let mut cx = Context::from_waker(Waker::noop());
        {
            let mut recv = pin!(rx.recv());
            assert!(recv.as_mut().poll(&mut cx).is_pending());
            assert_eq!(waiting(&probe), (0, 1));
        }
        assert_eq!(waiting(&probe), (0, 0));
        tx.blocking_send(Item(1, 1)).unwrap();
        {
            let mut send = pin!(tx.send(Item(1, 1)));
            assert!(send.as_mut().poll(&mut cx).is_pending());
            assert_eq!(waiting(&probe), (1, 0));
        }
        assert_eq!(waiting(&probe), (0, 0));
        assert_eq!(rx.try_recv(), Some(Item(1, 1)));
        assert_eq!(rx.try_recv(), None);
    }

    #[test]
    fn send_fails_after_receiver_closes_and_returns_item() {
        let (tx, rx) = queue(limits(1, 10));
        tx.blocking_send(Item(1, 1)).unwrap();
        let left = rx.close();
        assert_eq!(left, vec![Item(1, 1)]);
        match tx.blocking_send(Item(7, 7)) {
            Err(Closed(Item(7, 7))) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn close_ends_a_receive_waiting_on_another_thread() {
        let (tx, rx) = queue::<Item>(limits(1, 10));
        let rx = Arc::new(rx);
        let waiting = {
            let rx = rx.clone();
            std::thread::spawn(move || rx.blocking_recv())
        };
        wait_for_waiters(&tx.probe(), (0, 1));
        assert!(!waiting.is_finished());
        assert!(rx.close().is_empty());
        assert_eq!(waiting.join().unwrap(), None);
        assert_eq!(rx.try_recv(), None);
        assert!(tx.blocking_send(Item(1, 1)).is_err());
    }

    #[test]
    fn blocked_sender_is_released_when_receiver_drops() {
        let (tx, rx) = queue(limits(1, 10));
        tx.blocking_send(Item(1, 1)).unwrap();
        let probe = tx.probe();
        let t = std::thread::spawn(move || tx.blocking_send(Item(1, 1)).is_err());
        wait_for_waiters(&probe, (1, 0));
        drop(rx);
        assert!(t.join().unwrap());
    }

    #[test]
    fn an_interrupted_receive_takes_nothing_and_leaves_the_queue_open() {
        let (tx, rx) = queue::<Item>(limits(10, 100));
        let stop = Arc::new(AtomicBool::new(false));
        let interrupter = rx.interrupter();
        let probe = probe_of(&rx);
        let waiting = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let got = rx.blocking_recv_unless(&stop);
                (got.map(|o| o.map(|i| i.0)), rx)
            })
        };
        wait_for_waiters(&probe, (0, 1));
        stop.store(true, Ordering::Release);
        interrupter.interrupt();
        let (got, rx) = waiting.join().unwrap();
        assert_eq!(got, Err(Interrupted));
        // Still open: items sent now are there for the next receive.
        tx.blocking_send(Item(7, 1)).unwrap();
        assert_eq!(
            rx.blocking_recv_unless(&stop).map(|o| o.map(|i| i.0)),
            Err(Interrupted)
        );
        stop.store(false, Ordering::Release);
        assert_eq!(
            rx.blocking_recv_unless(&stop).map(|o| o.map(|i| i.0)),
            Ok(Some(7))
        );
        drop(tx);
        assert_eq!(
            rx.blocking_recv_unless(&stop).map(|o| o.map(|i| i.0)),
            Ok(None)
        );
    }

    #[test]
    fn a_weak_sender_neither_keeps_the_queue_open_nor_reopens_it() {
        let (tx, rx) = queue::<Item>(limits(10, 100));
        let weak = tx.downgrade();
        let again = weak.upgrade().expect("open while a sender lives");
        drop(tx);
        again.blocking_send(Item(1, 1)).unwrap();
        drop(again);
        assert_eq!(rx.blocking_recv().map(|i| i.0), Some(1));
        assert_eq!(rx.blocking_recv().map(|i| i.0), None);
        assert!(weak.upgrade().is_none());
    }

    #[test]
    fn recv_until_times_out_on_an_open_empty_queue() {
        let (tx, rx) = queue::<Item>(limits(1, 10));
        let r = rx.blocking_recv_until(Instant::now() + Duration::from_millis(20));
        assert_eq!(r, Err(TimedOut));
        drop(tx);
        let r = rx.blocking_recv_until(Instant::now() + Duration::from_millis(20));
        assert_eq!(r, Ok(None));
    }

    #[test]
    fn works_from_async_tasks() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (tx, rx) = queue(limits(1, 10));
            let producer = tokio::spawn(async move {
                for i in 0..100 {
                    tx.send(Item(1, i % 5)).await.unwrap();
                }
            });
            let mut n = 0;
            while let Some(Item(1, _)) = rx.recv().await {
                n += 1;
            }
            producer.await.unwrap();
            assert_eq!(n, 100);
        });
    }
}
