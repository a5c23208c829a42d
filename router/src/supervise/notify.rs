//! The service manager's notify protocol (`sd_notify(3)`), as the supervisor speaks it when the
//! router runs as a systemd `Type=notify` service. Only when `NOTIFY_SOCKET` is set
//! ([`Notifier::from_env`]); otherwise there is no [`Notifier`] and nothing is sent.
//!
//! What is sent, one datagram per event (the `sd-notify` crate writes it):
//! - `READY=1` when the supervisor takes over a started pipeline (every source is listening and
//!   every plugin is loaded: [`crate::topology::build::start`] has returned), and again when a
//!   reload ends (applied or refused);
//! - `RELOADING=1` with `MONOTONIC_USEC=` (which systemd 253 and later require) when a reload
//!   starts;
//! - `STOPPING=1` once, when shutdown begins (a signal, a failed component, or the input ended);
//! - `STATUS=` with a one-line summary ([`status_line`]) with each of those, every
//!   [`STATUS_EVERY`], and when the watchdog's verdict changes;
//! - with a watchdog (`WATCHDOG_USEC`, and `WATCHDOG_PID` absent or this process),
//!   `WATCHDOG=1` every half interval (at least [`PET_MIN`] apart) while the pipeline is healthy
//!   by [`crate::core::watchdog`]'s definition, with the interval as its stall time. A wedged
//!   pipeline gets no more pets, so systemd restarts the router one interval later.
//!
//! A failed send is logged (the first one as a warning) and otherwise ignored: the pipeline does
//! not depend on the service manager listening.

use std::io;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::core::accounting::Kind;
use crate::core::report::Report;
use crate::core::watchdog::{Progress, Verdict, Watchdog};

/// How often `STATUS=` is refreshed when nothing else changes.
pub const STATUS_EVERY: Duration = Duration::from_secs(10);

/// The shortest time between two watchdog pets (and between two looks at the pipeline), whatever
/// `WATCHDOG_USEC` says.
pub const PET_MIN: Duration = Duration::from_millis(10);

/// Sinks named in the status line; more are summed up as "and N more".
const STATUS_SINKS_MAX: usize = 8;

/// Sends one notification (several assignments in one datagram).
pub type SendFn = Box<dyn FnMut(&[NotifyState<'_>]) -> io::Result<()> + Send>;

/// What the router is doing, as the status line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Running.
    Running,
    /// Reading and preparing a new config.
    Reloading,
    /// Stopping: no more input; draining.
    Stopping,
}

/// Speaks the notify protocol for the supervisor. Made by [`Notifier::from_env`] (the process's
/// `NOTIFY_SOCKET`) or [`Notifier::new`] (tests pass their own `send`).
pub struct Notifier {
    send: SendFn,
    watchdog: Option<Watchdog>,
    every: Duration,
    phase: Phase,
    last_status: Option<Instant>,
    wedged: Option<Verdict>,
    send_failed: bool,
}

impl Notifier {
    /// A notifier of the service manager at `NOTIFY_SOCKET`, with the watchdog systemd set
    /// (`WATCHDOG_USEC` for this process); `None` when `NOTIFY_SOCKET` is not set.
    pub fn from_env() -> Option<Notifier> {
        std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty())?;
        let send: SendFn = Box::new(sd_notify::notify);
        Some(Notifier::new(send, sd_notify::watchdog_enabled()))
    }

    /// A notifier sending with `send`, petting a watchdog of `watchdog` interval (`None` or zero:
    /// no watchdog).
    pub fn new(send: SendFn, watchdog: Option<Duration>) -> Notifier {
        let watchdog = watchdog.filter(|w| !w.is_zero());
        let every = watchdog.map_or(STATUS_EVERY, |w| (w / 2).clamp(PET_MIN, STATUS_EVERY));
        Notifier {
            send,
            watchdog: watchdog.map(Watchdog::new),
            every,
            phase: Phase::Running,
            last_status: None,
            wedged: None,
            send_failed: false,
        }
    }

    /// How often [`Notifier::tick`] wants to run: half the watchdog interval (at least
    /// [`PET_MIN`]), or [`STATUS_EVERY`] without a watchdog.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// The pipeline started: `READY=1`.
    pub fn ready(&mut self, now: Instant, report: &Report) {
        self.phase = Phase::Running;
        self.send_with_status(now, report, &[NotifyState::Ready]);
    }

    /// A reload starts: `RELOADING=1` and the monotonic clock.
    pub fn reloading(&mut self, now: Instant, report: &Report) {
        self.phase = Phase::Reloading;
        match NotifyState::monotonic_usec_now() {
            Ok(clock) => self.send_with_status(now, report, &[NotifyState::Reloading, clock]),
            Err(e) => {
                tracing::warn!("systemd notify: cannot read the monotonic clock: {e}");
                self.send_with_status(now, report, &[NotifyState::Reloading]);
            }
        }
    }

    /// A reload ended (applied or refused): `READY=1` again.
    pub fn reloaded(&mut self, now: Instant, report: &Report) {
        self.ready(now, report);
    }

    /// Shutdown began: `STOPPING=1`.
    pub fn stopping(&mut self, now: Instant, report: &Report) {
        self.phase = Phase::Stopping;
        self.send_with_status(now, report, &[NotifyState::Stopping]);
    }

    /// Runs every [`Notifier::every`]: pets the watchdog while the pipeline is healthy, and
    /// refreshes the status line when it is due or the verdict changed.
    pub fn tick(&mut self, now: Instant, report: &Report) {
        let mut status_due = self
            .last_status
            .is_none_or(|t| now.saturating_duration_since(t) >= STATUS_EVERY);
        let mut pet = false;
        if let Some(w) = &mut self.watchdog {
            let verdict = w.observe(now, Progress::of(&report.counters));
            let wedged = (!verdict.healthy()).then_some(verdict);
            match (self.wedged.is_some(), wedged) {
                (false, Some(Verdict::Wedged { for_, backlog })) => {
                    tracing::error!(
                        "watchdog: no record moved and no call was made for {} ms while {backlog} \
                         record(s) wait; no longer telling systemd the router is alive",
                        for_.as_millis()
                    );
                    status_due = true;
                }
                (true, None) => {
                    tracing::info!("watchdog: records move again");
                    status_due = true;
                }
                _ => {}
            }
            self.wedged = wedged;
            pet = verdict.healthy();
        }
        match (pet, status_due) {
            (true, true) => self.send_with_status(now, report, &[NotifyState::Watchdog]),
            (true, false) => self.send(&[NotifyState::Watchdog]),
            (false, true) => self.send_with_status(now, report, &[]),
            (false, false) => {}
        }
    }

    fn send_with_status(&mut self, now: Instant, report: &Report, states: &[NotifyState<'_>]) {
        let line = status_line(self.phase, self.wedged, report);
        let mut all = states.to_vec();
        all.push(NotifyState::Status(&line));
        self.last_status = Some(now);
        self.send(&all);
    }

    fn send(&mut self, states: &[NotifyState<'_>]) {
        if let Err(e) = (self.send)(states) {
            if self.send_failed {
                tracing::debug!("systemd notify: cannot send: {e}");
            } else {
                tracing::warn!("systemd notify: cannot send to NOTIFY_SOCKET: {e}");
                self.send_failed = true;
            }
        }
    }
}

/// The one-line summary sent as `STATUS=`: the phase, the watchdog's complaint if any, the
/// totals, and each sink's records written (at most 8 sinks named). Never holds a newline.
pub fn status_line(phase: Phase, wedged: Option<Verdict>, report: &Report) -> String {
    let t = &report.counters.totals;
    let mut line = match phase {
        Phase::Running => "running".to_owned(),
        Phase::Reloading => "reloading".to_owned(),
        Phase::Stopping => "stopping".to_owned(),
    };
    if let Some(Verdict::Wedged { for_, backlog }) = wedged {
        line.push_str(&format!(
            " (stalled: nothing moved for {} s, {backlog} waiting)",
            for_.as_secs()
        ));
    }
    line.push_str(&format!(
        ": read {}, written {}, dead-lettered {}, in flight {}",
        t.read,
        t.written,
        t.dead_lettered,
        report.in_flight.max(0)
    ));
    let sinks: Vec<_> = report
        .counters
        .components
        .iter()
        .filter(|c| c.kind == Kind::Sink)
        .collect();
    if !sinks.is_empty() {
        line.push_str("; sinks:");
        for (i, c) in sinks.iter().take(STATUS_SINKS_MAX).enumerate() {
            let name = c.name.strip_prefix("sinks.").unwrap_or(&c.name);
            line.push_str(if i == 0 { " " } else { ", " });
            line.push_str(name);
            line.push_str(&format!(" {}", c.counters.records_out));
        }
        if sinks.len() > STATUS_SINKS_MAX {
            line.push_str(&format!(", and {} more", sinks.len() - STATUS_SINKS_MAX));
        }
    }
    line.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::core::accounting::Registry;
    use crate::core::report::LatencyStats;

    fn report(r: &Registry) -> Report {
        let counters = r.snapshot();
        Report {
            in_flight: counters.totals.in_flight(),
            counters,
            queues: Vec::new(),
            latency_us: LatencyStats::default(),
            elapsed_ms: 0,
        }
    }

    /// A notifier whose datagrams land in the returned list, one string per datagram.
    fn recording(watchdog: Option<Duration>) -> (Notifier, Arc<Mutex<Vec<String>>>) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let send: SendFn = Box::new({
            let sent = sent.clone();
            move |states| {
                let text: Vec<String> = states.iter().map(ToString::to_string).collect();
                sent.lock().unwrap().push(text.join("\n"));
                Ok(())
            }
        });
        (Notifier::new(send, watchdog), sent)
    }

    #[test]
    fn the_status_line_sums_up_totals_and_sinks_on_one_line() {
        let r = Registry::new();
        r.register("sources.in", Kind::Source).add_in(10, 100);
        r.register("sinks.out", Kind::Sink).add_out(7, 70);
        r.register("sinks.bad\nname", Kind::Sink)
            .add_dead_lettered(1);
        let line = status_line(Phase::Running, None, &report(&r));
        assert_eq!(
            line,
            "running: read 10, written 7, dead-lettered 1, in flight 2; sinks: out 7, bad?name 0"
        );
        let wedged = Verdict::Wedged {
            for_: Duration::from_secs(31),
            backlog: 2,
        };
        assert!(
            status_line(Phase::Stopping, Some(wedged), &report(&r))
                .starts_with("stopping (stalled: nothing moved for 31 s, 2 waiting): read 10")
        );
        for i in 0..10 {
            r.register(format!("sinks.s{i}"), Kind::Sink);
        }
        let line = status_line(Phase::Running, None, &report(&r));
        assert!(line.ends_with(", s5 0, and 4 more"), "{line}");
    }

    #[test]
    fn events_send_their_states_with_a_status() {
        let (mut n, sent) = recording(None);
        let r = Registry::new();
        let t0 = Instant::now();
        n.ready(t0, &report(&r));
        n.reloading(t0, &report(&r));
        n.reloaded(t0, &report(&r));
        n.stopping(t0, &report(&r));
        let sent = sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 4);
        assert_eq!(
            sent[0],
            "READY=1\nSTATUS=running: read 0, written 0, dead-lettered 0, in flight 0"
        );
        let reloading: Vec<&str> = sent[1].lines().collect();
        assert_eq!(reloading[0], "RELOADING=1");
        let usec: u64 = reloading[1]
            .strip_prefix("MONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(usec > 0);
        assert!(reloading[2].starts_with("STATUS=reloading:"));
        assert!(sent[2].starts_with("READY=1\nSTATUS=running:"));
        assert!(sent[3].starts_with("STOPPING=1\nSTATUS=stopping:"));
    }

    #[test]
    fn without_a_watchdog_ticks_only_refresh_the_status_every_ten_seconds() {
        let (mut n, sent) = recording(None);
        assert_eq!(n.every(), STATUS_EVERY);
        let r = Registry::new();
        let t0 = Instant::now();
        n.ready(t0, &report(&r));
        n.tick(t0 + Duration::from_secs(5), &report(&r));
        assert_eq!(sent.lock().unwrap().len(), 1);
        n.tick(t0 + Duration::from_secs(10), &report(&r));
        let sent = sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 2);
        assert!(sent[1].starts_with("STATUS=running:"), "{sent:?}");
    }

    #[test]
    fn the_watchdog_is_petted_at_half_its_interval_until_the_pipeline_wedges() {
        let (mut n, sent) = recording(Some(Duration::from_secs(4)));
        assert_eq!(n.every(), Duration::from_secs(2));
        let r = Registry::new();
        let src = r.register("sources.in", Kind::Source);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        n.ready(at(0), &report(&r));
        // Idle: a pet each tick, the status every 10 s.
        for s in [2, 4, 6, 8] {
            n.tick(at(s), &report(&r));
        }
        // Records come in at 9 s and then nothing moves.
        src.add_in(5, 50);
        for s in [10, 12, 14] {
            n.tick(at(s), &report(&r));
        }
        let pets = |sent: &[String]| sent.iter().filter(|d| d.contains("WATCHDOG=1")).count();
        assert_eq!(pets(&sent.lock().unwrap()), 7);
        // At 16 s nothing has moved for 6 s (> 4 s): no pet, and the status says why.
        n.tick(at(16), &report(&r));
        n.tick(at(18), &report(&r));
        {
            let sent = sent.lock().unwrap();
            assert_eq!(pets(&sent), 7, "{sent:?}");
            assert!(
                sent.iter()
                    .any(|d| d
                        .starts_with("STATUS=running (stalled: nothing moved for 6 s, 5 waiting)")),
                "{sent:?}"
            );
        }
        // A record moves: pets again, and the status says so.
        r.register("sinks.out", Kind::Sink).add_out(5, 50);
        n.tick(at(20), &report(&r));
        let sent = sent.lock().unwrap().clone();
        assert_eq!(pets(&sent), 8);
        assert!(
            sent.last()
                .unwrap()
                .starts_with("WATCHDOG=1\nSTATUS=running: read 5, written 5"),
            "{sent:?}"
        );
    }

    #[test]
    fn a_tiny_watchdog_interval_is_petted_at_most_every_ten_ms() {
        let (n, _) = recording(Some(Duration::from_micros(100)));
        assert_eq!(n.every(), PET_MIN);
        let (n, _) = recording(Some(Duration::ZERO));
        assert_eq!(n.every(), STATUS_EVERY);
        let (n, _) = recording(Some(Duration::from_secs(3600)));
        assert_eq!(n.every(), STATUS_EVERY);
    }
}
