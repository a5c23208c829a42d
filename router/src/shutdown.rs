//! The router's shutdown signal: set once by the supervisor, waited for by every component that
//! reads input.
//!
//! Async code awaits [`Shutdown::wait`]; a thread blocked in `poll` on a file descriptor (the
//! stdin source) adds [`Shutdown::wake_fd`] to the descriptors it polls, which becomes readable
//! when shutdown is triggered. Either way a waiting component wakes at once: nothing polls a flag
//! on a timer.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// A shutdown signal. Clones share it; once triggered it stays triggered.
#[derive(Clone)]
pub struct Shutdown(Arc<Inner>);

struct Inner {
    /// `true` once triggered. The sender lives as long as any clone, so a wait never sees it
    /// closed.
    state: watch::Sender<bool>,
    /// An eventfd that is readable once shutdown was triggered, made when first asked for (only
    /// blocking readers need one). Triggering and making it hold this lock, so a descriptor made
    /// after the trigger starts readable.
    fd: Mutex<Option<Arc<OwnedFd>>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .finish()
    }
}

impl Shutdown {
    /// A signal not triggered yet.
    pub fn new() -> Shutdown {
        Shutdown(Arc::new(Inner {
            state: watch::Sender::new(false),
            fd: Mutex::new(None),
        }))
    }

    /// Triggers shutdown: wakes every [`Shutdown::wait`] and makes the wake descriptor readable.
    /// Triggering again does nothing.
    pub fn trigger(&self) {
        let fd = self.0.fd.lock().unwrap_or_else(PoisonError::into_inner);
        if self.0.state.send_replace(true) {
            return;
        }
        if let Some(fd) = fd.as_ref()
            && let Err(e) = rustix::io::write(&**fd, &1u64.to_ne_bytes())
        {
            // Cannot happen for a fresh eventfd (its counter goes from 0 to 1).
            tracing::error!("cannot signal shutdown to the stdin reader: {e}");
        }
    }

    /// True once shutdown was triggered.
    pub fn is_triggered(&self) -> bool {
        *self.0.state.borrow()
    }

    /// Returns once shutdown is triggered (at once if it already was).
    pub async fn wait(&self) {
        let mut rx = self.0.state.subscribe();
        // The sender is in `self`, so this cannot fail.
        let _ = rx.wait_for(|&triggered| triggered).await;
    }

    /// A descriptor that becomes readable (`POLLIN`) when shutdown is triggered and stays so,
    /// for readers that block in `poll`. Made on first use; later calls return the same one.
    pub fn wake_fd(&self) -> io::Result<Arc<OwnedFd>> {
        use rustix::event::{EventfdFlags, eventfd};
        let mut slot = self.0.fd.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(fd) = slot.as_ref() {
            return Ok(fd.clone());
        }
        let initial = u32::from(self.is_triggered());
        let fd = Arc::new(eventfd(
            initial,
            EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK,
        )?);
        *slot = Some(fd.clone());
        Ok(fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use std::time::Duration;

    fn readable(fd: &OwnedFd, wait: Duration) -> bool {
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        let ts = Timespec::try_from(wait).unwrap();
        poll(&mut fds, Some(&ts)).unwrap() > 0
    }

    #[tokio::test]
    async fn wait_returns_once_triggered_by_another_clone() {
        let s = Shutdown::new();
        assert!(!s.is_triggered());
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        s.clone().trigger();
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert!(s.is_triggered());
        // Already triggered: at once, and triggering again changes nothing.
        s.trigger();
        s.wait().await;
    }

    #[test]
    fn the_wake_descriptor_becomes_readable_when_triggered() {
        let s = Shutdown::new();
        let fd = s.wake_fd().unwrap();
        assert!(!readable(&fd, Duration::ZERO));
        assert!(Arc::ptr_eq(&fd, &s.wake_fd().unwrap()), "one descriptor");
        // A poll blocked on it (no timeout) wakes when another thread triggers.
        let blocked = std::thread::spawn({
            let fd = fd.clone();
            move || {
                let mut fds = [PollFd::new(&*fd, PollFlags::IN)];
                poll(&mut fds, None).unwrap()
            }
        });
        s.trigger();
        assert_eq!(blocked.join().unwrap(), 1);
        // It stays readable, for every poll after.
        assert!(readable(&fd, Duration::ZERO));
        s.trigger();
        assert!(readable(&fd, Duration::ZERO));
    }

    #[test]
    fn a_descriptor_made_after_the_trigger_starts_readable() {
        let s = Shutdown::new();
        s.trigger();
        assert!(readable(&s.wake_fd().unwrap(), Duration::ZERO));
    }
}
