//! The supervisor: drives a started pipeline to its end on the main thread's tokio runtime, and
//! says how the run ended.
//!
//! It waits for signals, reload requests, the config-file watch and the components' ends:
//! - the first interrupt or terminate signal stops the pipeline ([`Running::stop`]: the sources
//!   stop reading, what was read drains out, sinks flush) and starts the grace period
//!   (`pipeline.shutdown_grace` of the config running then);
//! - a second such signal, or the grace period running out, gives up: the [`Outcome`] says how
//!   many records were read but not flushed (exit code 3);
//! - a component that fails stops the pipeline the same way, and the run ends with its message
//!   (exit code 1) once the rest has drained;
//! - a hang-up signal, a `POST /reload` on the metrics endpoint, or (with `--watch-config`) a new
//!   modification time of the config file asks the [`Reloader`] for a reload; while stopping,
//!   reloads are refused.
//!
//! Signals arrive as [`Signal`] values on a channel: [`os_signals`] forwards the process's
//! SIGINT, SIGTERM and SIGHUP, tests send their own.
//!
//! Under systemd ([`Supervisor::notify`], see [`notify`]) it tells the service manager when the
//! pipeline is ready, reloading, ready again and stopping, with a status line, and pets the
//! watchdog while the pipeline is healthy.

use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::core::report::Report;
use crate::reload::{ReloadRequest, Reloader};
use crate::stats;
use crate::supervise::notify::Notifier;
use crate::topology::build::Running;

/// Exit code of a run in which a component failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code when shutdown did not finish within the grace period (or a second signal ended
/// it).
pub const EXIT_UNFLUSHED: u8 = 3;

/// A signal the supervisor acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: stop (a second one: give up).
    Interrupt,
    /// SIGTERM: stop (a second one: give up).
    Terminate,
    /// SIGHUP: reload the config file.
    HangUp,
}

/// Installs handlers for SIGINT, SIGTERM and SIGHUP and returns the channel they arrive on (in
/// order; a burst beyond 16 unread waits, as the signals themselves coalesce). Must be called
/// on a tokio runtime, which then runs the forwarding task.
pub fn os_signals() -> anyhow::Result<mpsc::Receiver<Signal>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let s = tokio::select! {
                Some(()) = sigint.recv() => Signal::Interrupt,
                Some(()) = sigterm.recv() => Signal::Terminate,
                Some(()) = sighup.recv() => Signal::HangUp,
                else => return,
            };
            if tx.send(s).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Why shutdown was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The grace period ran out.
    Grace,
    /// A second signal came.
    SecondSignal,
}

/// How a run ended.
#[derive(Debug)]
pub enum Ending {
    /// Every component finished: input ended, or a signal stopped the sources and everything
    /// read was delivered or dead-lettered.
    Finished,
    /// Components failed (their errors, in the order they came); the rest was stopped and
    /// drained.
    Failed(Vec<String>),
    /// Shutdown did not finish; components may still hold records.
    GaveUp {
        /// Why.
        why: GiveUp,
        /// The grace period in force.
        grace: Duration,
    },
}

/// The end of a run: how it ended and the pipeline's numbers then.
#[derive(Debug)]
pub struct Outcome {
    /// How it ended.
    pub ending: Ending,
    /// Counters, queues and latency at the end.
    pub report: Report,
}

impl Outcome {
    /// The process exit code: 0, [`EXIT_FAILED`] or [`EXIT_UNFLUSHED`].
    pub fn exit_code(&self) -> u8 {
        match self.ending {
            Ending::Finished => 0,
            Ending::Failed(_) => EXIT_FAILED,
            Ending::GaveUp { .. } => EXIT_UNFLUSHED,
        }
    }

    /// What to print on standard error at the end, in order: the stats report when asked for,
    /// then why the run did not end cleanly (nothing when it did).
    pub fn lines(&self, stats: Option<stats::Format>) -> Vec<String> {
        let mut lines: Vec<String> = stats.map(|f| f.render(&self.report)).into_iter().collect();
        match &self.ending {
            Ending::Finished => {}
            Ending::GaveUp { grace, .. } => lines.push(format!(
                "edge-router: shutdown did not finish within {} ms; {} record(s) were read but \
                 not flushed",
                grace.as_millis(),
                self.report.in_flight.max(0)
            )),
            Ending::Failed(failures) => {
                lines.extend(failures.iter().map(|f| format!("edge-router: {f}")));
                if self.report.in_flight > 0 {
                    lines.push(format!(
                        "edge-router: {} record(s) were read but neither delivered nor \
                         dead-lettered",
                        self.report.in_flight
                    ));
                }
            }
        }
        lines
    }
}

/// What the supervisor listens to, and its settings. [`Supervisor::new`] sets the defaults;
/// change the fields to differ.
pub struct Supervisor {
    /// Signals, in the order they arrived.
    pub signals: mpsc::Receiver<Signal>,
    /// Reload requests from the metrics endpoint (`POST /reload`).
    pub reloads: mpsc::UnboundedReceiver<ReloadRequest>,
    /// Serves reloads (SIGHUP, `POST /reload`, the config watch).
    pub reloader: Reloader,
    /// The grace period of the config the pipeline started with (a reloaded config's replaces
    /// it).
    pub grace: Duration,
    /// Reload when the config file's modification time changes (`--watch-config`).
    pub watch_config: bool,
    /// How often the config file is looked at and `housekeeping` runs (default 1 s).
    pub every: Duration,
    /// Runs every [`Supervisor::every`] (the binary gives freed memory back to the system).
    pub housekeeping: Box<dyn FnMut() + Send>,
    /// Tells the service manager what the router is doing (`None`: not run by one).
    pub notify: Option<Notifier>,
}

impl Supervisor {
    /// A supervisor of the given inputs, with the config watch off, looking every second, and
    /// no housekeeping.
    pub fn new(
        signals: mpsc::Receiver<Signal>,
        reloads: mpsc::UnboundedReceiver<ReloadRequest>,
        reloader: Reloader,
        grace: Duration,
    ) -> Supervisor {
        Supervisor {
            signals,
            reloads,
            reloader,
            grace,
            watch_config: false,
            every: Duration::from_secs(1),
            housekeeping: Box::new(|| {}),
            notify: None,
        }
    }

    /// Runs `running` until every component has ended, or until shutdown is given up, and
    /// says how it ended.
    pub async fn run(self, mut running: Running) -> Outcome {
        let Supervisor {
            mut signals,
            mut reloads,
            mut reloader,
            grace: first_grace,
            watch_config,
            every,
            mut housekeeping,
            mut notify,
        } = self;
        let mut watch = tokio::time::interval(every);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The pipeline is started: every source listens and every plugin is loaded.
        tell(&mut notify, &running, Tell::Ready);
        let mut notify_tick = tokio::time::interval(notify.as_ref().map_or(every, Notifier::every));
        notify_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reloading = false;
        let mut stopping_told = false;
        let mut deadline: Option<Instant> = None;
        let mut stop_signals = 0u32;
        let mut failures: Vec<String> = Vec::new();
        let mut gave_up: Option<GiveUp> = None;
        // The grace period of the config running now (a reload may have changed it).
        let grace = |running: &Running| {
            running
                .config()
                .map_or(first_grace, |c| c.pipeline.shutdown_grace)
        };
        let begin_shutdown = |running: &Running, deadline: &mut Option<Instant>| {
            running.stop();
            let grace = grace(running);
            deadline.get_or_insert_with(|| Instant::now() + grace);
        };
        while running.pending() > 0 {
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(signal) = signals.recv() => match signal {
                    Signal::Interrupt | Signal::Terminate => stop_signals += 1,
                    Signal::HangUp => reloader.request(ReloadRequest { reply: None }),
                },
                Some(request) = reloads.recv() => reloader.request(request),
                _ = watch.tick() => {
                    housekeeping();
                    if watch_config {
                        reloader.check_file();
                    }
                }
                _ = notify_tick.tick(), if notify.is_some() => {
                    tell(&mut notify, &running, Tell::Tick);
                }
                step = reloader.next_step() => reloader.handle(step, &mut running),
                finished = running.next_finished() => {
                    let Some(f) = finished else { break };
                    if let Err(e) = f.result {
                        tracing::error!(component = %f.component, "{e:#}");
                        failures.push(format!("{e:#}"));
                        begin_shutdown(&running, &mut deadline);
                    }
                }
                () = sleep => {
                    gave_up = Some(GiveUp::Grace);
                    break;
                }
            }
            // A reload that ended (applied or refused) makes the router ready again; one that
            // starts says so first (each reload between its own RELOADING=1 and READY=1).
            if reloading && !reloader.busy() {
                reloading = false;
                if deadline.is_none() {
                    tell(&mut notify, &running, Tell::Ready);
                }
            }
            if deadline.is_some() {
                reloader.refuse_waiting("the router is stopping");
            } else {
                if reloader.has_waiting() && !reloader.busy() {
                    reloading = true;
                    tell(&mut notify, &running, Tell::Reloading);
                }
                reloader.start_next(&running);
                if reloading && !reloader.busy() {
                    // Refused at once.
                    reloading = false;
                    tell(&mut notify, &running, Tell::Ready);
                }
            }
            if stop_signals == 1 && deadline.is_none() {
                begin_shutdown(&running, &mut deadline);
                tracing::info!(
                    "stopping: no more input is read; draining queues and flushing sinks"
                );
            } else if stop_signals > 1 {
                tracing::warn!("second signal: giving up on draining");
                gave_up = Some(GiveUp::SecondSignal);
                break;
            }
            if deadline.is_some() && !stopping_told {
                stopping_told = true;
                tell(&mut notify, &running, Tell::Stopping);
            }
        }
        if !stopping_told {
            tell(&mut notify, &running, Tell::Stopping);
        }
        let ending = match gave_up {
            Some(why) => Ending::GaveUp {
                why,
                grace: grace(&running),
            },
            None if !failures.is_empty() => Ending::Failed(failures),
            None => Ending::Finished,
        };
        Outcome {
            ending,
            report: running.report(),
        }
    }
}

/// What the supervisor tells its [`Notifier`].
#[derive(Clone, Copy)]
enum Tell {
    Ready,
    Reloading,
    Stopping,
    Tick,
}

/// Tells `notify` (if any) `what`, with the pipeline's numbers now.
fn tell(notify: &mut Option<Notifier>, running: &Running, what: Tell) {
    if let Some(n) = notify {
        let now = Instant::now().into_std();
        let report = running.report();
        match what {
            Tell::Ready => n.ready(now, &report),
            Tell::Reloading => n.reloading(now, &report),
            Tell::Stopping => n.stopping(now, &report),
            Tell::Tick => n.tick(now, &report),
        }
    }
}

pub mod notify;

#[cfg(test)]
mod tests;
