//! Starting a pipeline from a validated config, and what it reports while it runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::config::{Config, SinkKind, SourceKind, StageKind};
use crate::core::accounting::{Counters, Kind, Registry, Snapshot};
use crate::sinks::file::FileSink;
use crate::sinks::stdout::StdoutSink;
use crate::sinks::{BlockingSink, run_blocking_sink};
use crate::sources::http::HttpSource;
use crate::sources::quic::QuicSource;
use crate::sources::stdin::{Input, StdinInput, StdinSource};
use crate::stages::builtin::filter::Filter;
use crate::stages::builtin::route::Route;
use crate::stages::wasm::{INSTANCES_MAX, Plugin, WasmStage};
use crate::stages::{NamedStage, Stage, run_stages};
use crate::topology::queue::{Depth, Limits, queue};
use crate::topology::{DeadLetterTx, Dispatcher, Outlet, SinkPort};

/// A component thread ended.
#[derive(Debug)]
pub struct Finished {
    /// Component name, e.g. `sinks.out`.
    pub component: String,
    /// How it ended.
    pub result: Result<(), anyhow::Error>,
}

type DepthProbe = Box<dyn Fn() -> (Limits, Depth) + Send + Sync>;

/// A running pipeline.
pub struct Running {
    observer: Observer,
    stop: Arc<AtomicBool>,
    events: UnboundedReceiver<Finished>,
    pending: usize,
}

/// Reads a running pipeline's counters, queues and latency from anywhere (the metrics
/// endpoint), while it runs and after it ended. Cloning shares it.
#[derive(Clone)]
pub struct Observer {
    registry: Registry,
    stop: Arc<AtomicBool>,
    queues: Arc<Vec<(String, DepthProbe)>>,
    started: Instant,
}

/// Queue fill for the stats report.
#[derive(Debug, Clone, Serialize)]
pub struct QueueStats {
    /// Which queue (named after its consumer).
    pub name: String,
    /// Record limit.
    pub records_max: u64,
    /// Byte limit.
    pub bytes_max: u64,
    /// Records queued now.
    pub records: u64,
    /// Bytes queued now.
    pub bytes: u64,
    /// Highest record count seen.
    pub records_peak: u64,
    /// Highest byte count seen.
    pub bytes_peak: u64,
}

/// End-to-end latency quantiles in microseconds.
pub use crate::core::accounting::Quantiles as LatencyStats;

/// Everything `--stats` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Counters.
    #[serde(flatten)]
    pub counters: Snapshot,
    /// `read + fanout_copies - written - dead_lettered - dropped_by_stage`.
    pub in_flight: i128,
    /// Queue fill.
    pub queues: Vec<QueueStats>,
    /// Arrival-to-written latency over all sinks.
    pub latency_us: LatencyStats,
    /// Wall time since start.
    pub elapsed_ms: u64,
}

impl Running {
    /// Asks the sources to stop reading; everything already read still flows out.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Component threads still running.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Waits for the next component to finish; `None` once all have.
    pub async fn next_finished(&mut self) -> Option<Finished> {
        if self.pending == 0 {
            return None;
        }
        let f = self.events.recv().await?;
        self.pending -= 1;
        Some(f)
    }

    /// The counters, queues and latency now.
    pub fn report(&self) -> Report {
        self.observer.report()
    }

    /// A handle that reads the same numbers from elsewhere.
    pub fn observer(&self) -> Observer {
        self.observer.clone()
    }
}

impl Observer {
    /// Why the pipeline is not ready to take records (stopping, or a queue is full), or `None`.
    pub fn not_ready(&self) -> Option<String> {
        if self.stop.load(Ordering::Relaxed) {
            return Some("stopping".into());
        }
        self.queues.iter().find_map(|(name, probe)| {
            let (limits, depth) = probe();
            (depth.records >= limits.records_max || depth.bytes >= limits.bytes_max)
                .then(|| format!("queue {name} is full"))
        })
    }

    /// The counters, queues and latency now.
    pub fn report(&self) -> Report {
        let counters = self.registry.snapshot();
        let in_flight = counters.totals.in_flight();
        let queues = self
            .queues
            .iter()
            .map(|(name, probe)| {
                let (limits, depth) = probe();
                QueueStats {
                    name: name.clone(),
                    records: depth.records,
                    bytes: depth.bytes,
                    records_max: limits.records_max,
                    bytes_max: limits.bytes_max,
                    records_peak: depth.records_peak,
                    bytes_peak: depth.bytes_peak,
                }
            })
            .collect();
        Report {
            counters,
            in_flight,
            queues,
            latency_us: LatencyStats::of(&self.registry.latency()),
            elapsed_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }
}

fn spawn<F>(name: String, events: &UnboundedSender<Finished>, f: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Result<(), anyhow::Error> + Send + 'static,
{
    let events = events.clone();
    let thread_name: String = name.chars().take(15).collect();
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            // A panic is a bug, but it must still end the run with an error, not silently.
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
                    Err(anyhow::anyhow!("{name}: internal error (thread panicked)"))
                });
            let _ = events.send(Finished {
                component: name,
                result,
            });
        })
        .map_err(|e| anyhow::anyhow!("cannot start a thread: {e}"))?;
    Ok(())
}

/// Makes one worker's copy of a stage, given the stage's (shared) counters.
type MakeStage<'c> = Box<dyn Fn(&Arc<Counters>) -> anyhow::Result<Box<dyn Stage>> + 'c>;

/// One set of stages per stage worker, in pipeline order, registering each stage's counters
/// (shared by its copies). Plugins are loaded once and instantiated once per worker. The
/// number of workers is `pipeline.stage_workers`, lowered (with a warning) so that every
/// worker's plugin instances fit in the engine's [`INSTANCES_MAX`].
fn stage_sets(config: &Config, registry: &mut Registry) -> anyhow::Result<Vec<Vec<NamedStage>>> {
    let plugin_stages = config
        .stages
        .iter()
        .filter(|s| matches!(s.kind, StageKind::Wasm(_)))
        .count();
    let requested = config.pipeline.stage_workers;
    let workers = workers_that_fit(requested, plugin_stages);
    if workers < requested {
        tracing::warn!(
            "pipeline.stage_workers = {requested} with {plugin_stages} plugin stages would need {} \
             plugin instances, but at most {INSTANCES_MAX} can run at once: running {workers} stage workers",
            requested * plugin_stages
        );
    }
    let sink_names: Vec<String> = config.sinks.iter().map(|s| s.name.clone()).collect();
    let mut sets: Vec<Vec<NamedStage>> = (0..workers)
        .map(|_| Vec::with_capacity(config.stages.len()))
        .collect();
    for s in &config.stages {
        let component = if s.name.starts_with("stages[") {
            s.name.clone()
        } else {
            format!("stages.{}", s.name)
        };
        let counters = registry.register(component, Kind::Stage);
        let in_stage = |e: &dyn std::fmt::Display| anyhow::anyhow!("stage `{}`: {e}", s.name);
        let make: MakeStage<'_> = match &s.kind {
            StageKind::Filter(f) => Box::new(|_| Ok(Box::new(Filter::new(f.clone())))),
            StageKind::Route(r) => Box::new(|_| Ok(Box::new(Route::new(r.clone())))),
            StageKind::Wasm(w) => {
                let plugin = Arc::new(Plugin::load(&w.plugin, w.kind).map_err(|e| in_stage(&e))?);
                let sink_names = &sink_names;
                Box::new(move |counters| {
                    let stage = WasmStage::from_plugin(
                        &s.name,
                        plugin.clone(),
                        w.clone(),
                        sink_names,
                        config.pipeline.default_sinks,
                        counters.clone(),
                    )
                    .map_err(|e| in_stage(&e))?;
                    Ok(Box::new(stage))
                })
            }
        };
        for set in &mut sets {
            set.push(NamedStage {
                name: s.name.clone(),
                stage: make(&counters)?,
                counters: counters.clone(),
            });
        }
    }
    Ok(sets)
}

/// How many of `requested` stage workers (at least one) can each hold an instance of every one
/// of `plugin_stages` plugin stages within [`INSTANCES_MAX`].
fn workers_that_fit(requested: usize, plugin_stages: usize) -> usize {
    match INSTANCES_MAX.checked_div(plugin_stages) {
        Some(fit) => requested.min(fit).max(1),
        None => requested.max(1),
    }
}

/// Starts every component of `config`. `stdin` replaces standard input (tests pass in-memory
/// readers); `None` reads the real standard input.
pub fn start(config: &Config, stdin: Option<Box<dyn Input>>) -> anyhow::Result<Running> {
    let (events_tx, events) = unbounded_channel();
    let mut registry = Registry::new();
    let mut queues: Vec<(String, DepthProbe)> = Vec::new();
    let mut pending = 0usize;
    let stop = Arc::new(AtomicBool::new(false));

    // Dead-letter sink first: everything else holds a sender to it.
    let dl_limits = Limits {
        records_max: config.pipeline.queue.records_max,
        bytes_max: config
            .pipeline
            .queue
            .bytes_max
            .min(crate::config::DEAD_LETTER_QUEUE_BYTES_MAX),
    };
    let (dl_tx, dl_rx) = queue(dl_limits);
    let probe = dl_tx.probe();
    queues.push((
        "dead_letter".into(),
        Box::new(move || (probe.limits(), probe.depth())),
    ));
    let dead = DeadLetterTx::new(dl_tx);
    let dl_counters = registry.register("dead_letter", Kind::DeadLetter);
    let dl_cfg = config.dead_letter.clone();
    spawn("dead_letter".into(), &events_tx, move || {
        crate::sinks::dead_letter::run(&dl_cfg, dl_rx, dl_counters)
    })?;
    pending += 1;

    let mut ports = Vec::new();
    for s in &config.sinks {
        let name = format!("sinks.{}", s.name);
        let (tx, rx) = queue(s.queue);
        let probe = tx.probe();
        queues.push((
            name.clone(),
            Box::new(move || (probe.limits(), probe.depth())),
        ));
        let counters = registry.register(name.clone(), Kind::Sink);
        ports.push(SinkPort {
            name: Arc::from(s.name.as_str()),
            tx,
            counters: counters.clone(),
        });
        let dead = dead.clone();
        let sink_name = s.name.clone();
        let sink: Box<dyn BlockingSink> = match &s.kind {
            SinkKind::File(f) => Box::new(FileSink::new(&s.name, f.clone())),
            SinkKind::Stdout(c) => Box::new(StdoutSink::stdout(c.clone())),
            SinkKind::Kinesis(k) => {
                // Network I/O: a thread with a small async runtime of its own.
                let k = (**k).clone();
                spawn(name, &events_tx, move || {
                    crate::sinks::kinesis::run(&sink_name, k, rx, dead, counters)
                })?;
                pending += 1;
                continue;
            }
            SinkKind::Firehose(f) => {
                let f = (**f).clone();
                spawn(name, &events_tx, move || {
                    crate::sinks::firehose::run(&sink_name, f, rx, dead, counters)
                })?;
                pending += 1;
                continue;
            }
        };
        spawn(name, &events_tx, move || {
            run_blocking_sink(&sink_name, sink, rx, dead, counters)
        })?;
        pending += 1;
    }

    let dispatch_counters = registry.register("pipeline.dispatch", Kind::Stage);
    let dispatcher = Dispatcher::new(
        ports,
        config.pipeline.default_sinks,
        dispatch_counters,
        dead.clone(),
    );

    // With one stdin source and no stages, the source dispatches itself (one hop fewer). Network
    // sources need a queue to put batches into (they answer their clients once a batch is
    // queued), and several sources share one: then a stage thread runs even with no stages.
    let direct = config.stages.is_empty()
        && config.sources.len() == 1
        && !config.sources.iter().any(|s| s.kind.is_network());
    let outlet = if direct {
        Outlet::Sinks(dispatcher)
    } else {
        let stages = if config.stages.is_empty() {
            vec![Vec::new()]
        } else {
            stage_sets(config, &mut registry)?
        };
        let (tx, rx) = queue(config.pipeline.queue);
        let probe = tx.probe();
        queues.push((
            "stages".into(),
            Box::new(move || (probe.limits(), probe.depth())),
        ));
        let dead = dead.clone();
        spawn("stages".into(), &events_tx, move || {
            run_stages(stages, rx, dispatcher, dead).map_err(|e| anyhow::anyhow!("stages: {e}"))
        })?;
        pending += 1;
        Outlet::Stages(tx)
    };

    let mut stdin = stdin;
    let mut outlet = Some(outlet);
    let ingress = |outlet: &Option<Outlet>| match outlet {
        Some(Outlet::Stages(tx)) => Ok(tx.clone()),
        _ => Err(anyhow::anyhow!(
            "internal error: a network source without an ingress queue"
        )),
    };
    // Network sources first: they bind their listeners now, so a busy port fails start-up.
    let mut later = Vec::new();
    for s in &config.sources {
        let name = format!("sources.{}", s.name);
        let counters = registry.register(name.clone(), Kind::Source);
        match &s.kind {
            SourceKind::Stdin(c) => later.push((name, s.name.clone(), *c, counters)),
            SourceKind::Http(c) => {
                let source = HttpSource::bind(
                    &s.name,
                    (**c).clone(),
                    counters,
                    ingress(&outlet)?,
                    stop.clone(),
                )?;
                if let Some(addr) = source.local_addr() {
                    tracing::info!(
                        "source `{}` listening on http{}://{addr}",
                        s.name,
                        if c.tls.is_some() { "s" } else { "" }
                    );
                }
                let grace = config.pipeline.shutdown_grace;
                spawn(name, &events_tx, move || {
                    source.run(grace).map_err(anyhow::Error::new)
                })?;
                pending += 1;
            }
            SourceKind::Quic(c) => {
                let source = QuicSource::bind(
                    &s.name,
                    (**c).clone(),
                    counters,
                    ingress(&outlet)?,
                    stop.clone(),
                )?;
                let addr = source
                    .local_addr()
                    .map_or_else(|| c.address.to_string(), |a| a.to_string());
                match c.certificate {
                    crate::sources::quic::config::Certificate::SelfSigned => tracing::info!(
                        "source `{}` listening on quic://{addr} with a self-signed certificate; \
                         SHA-256 fingerprint {} (clients: --fingerprint {})",
                        s.name,
                        source.fingerprint(),
                        source.fingerprint()
                    ),
                    crate::sources::quic::config::Certificate::Files(_) => {
                        tracing::info!("source `{}` listening on quic://{addr}", s.name)
                    }
                }
                let grace = config.pipeline.shutdown_grace;
                spawn(name, &events_tx, move || {
                    source.run(grace).map_err(anyhow::Error::new)
                })?;
                pending += 1;
            }
        }
    }
    for (name, source_name, c, counters) in later {
        let input: Box<dyn Input> = stdin
            .take()
            .unwrap_or_else(|| Box::new(StdinInput::open(c.read_bytes)));
        let this_outlet = match &outlet {
            Some(Outlet::Stages(tx)) => Outlet::Stages(tx.clone()),
            _ => match outlet.take() {
                Some(o) => o,
                None => anyhow::bail!("only one stdin source is supported"),
            },
        };
        let source = StdinSource::new(
            &source_name,
            c,
            counters,
            this_outlet,
            dead.clone(),
            stop.clone(),
        );
        spawn(name, &events_tx, move || {
            source.run(input).map_err(anyhow::Error::new)
        })?;
        pending += 1;
    }
    // The sources hold their own senders: the ingress queue closes when the last one ends.
    drop(outlet);
    Ok(Running {
        observer: Observer {
            registry,
            stop: stop.clone(),
            queues: Arc::new(queues),
            started: Instant::now(),
        },
        stop,
        events,
        pending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_workers_are_lowered_to_fit_the_instance_pool() {
        assert_eq!(workers_that_fit(4, 0), 4);
        assert_eq!(workers_that_fit(64, 0), 64);
        assert_eq!(workers_that_fit(64, 1), 64);
        assert_eq!(workers_that_fit(64, 2), 32);
        assert_eq!(workers_that_fit(4, 3), 4);
        assert_eq!(workers_that_fit(30, 3), 21);
        assert_eq!(workers_that_fit(4, 17), 3);
        // More plugin stages than instances: one worker, and starting fails as it always did.
        assert_eq!(workers_that_fit(4, 65), 1);
        assert_eq!(workers_that_fit(0, 0), 1);
    }
}
