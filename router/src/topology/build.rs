//! Starting a pipeline from a validated config, reloading it with a new one, and what it
//! reports while it runs.
//!
//! A reload ([`ReloadBase::prepare`] off the supervisor's thread, then [`Running::apply`])
//! keeps the sources, the ingress queue and the dead-letter sink; it keeps every sink whose
//! config is unchanged (its queue and thread go on as if nothing happened) and starts a new
//! thread and queue for each changed or added sink (a changed sink's new thread starts once
//! its predecessor has drained and ended, so the two never write at once); the stage thread
//! switches to the new stages (or keeps its own when stages, plugin files and sink names are
//! unchanged) and to the new dispatcher between two batches (see
//! [`crate::stages::Handoff`]). Counters are looked up by name, so totals go on across reloads.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::config::{Config, SinkConfig, SinkKind, SourceConfig, SourceKind, StageKind};
use crate::core::accounting::{Counters, Kind, Registry};
use crate::core::record::Batch;
use crate::core::report::{LatencyStats, QueueStats, Report};
use crate::queue::{Depth, Limits, Receiver, Sender, WeakSender, Weighed, queue};
use crate::shutdown::Shutdown;
use crate::sinks::file::FileSink;
use crate::sinks::run_blocking_sink;
use crate::sinks::stdout::StdoutSink;
use crate::sources::file::source::FileSource;
use crate::sources::http::HttpSource;
use crate::sources::quic::QuicSource;
use crate::sources::stdin::{Input, StdinInput, StdinSource};
use crate::stages::builtin::filter::Filter;
use crate::stages::builtin::route::Route;
use crate::stages::wasm::aggregate::{AggregateShared, AggregateStage};
use crate::stages::wasm::{INSTANCES_MAX, Plugin, PluginKind, Slot, StageGuard, WasmStage};
use crate::stages::{Generation, Handoff, NamedStage, Stage, run_stages};
use crate::topology::{DeadLetterTx, DeadLetters, Dispatcher, Outlet, PortPlan, SinkPort};

/// A component thread ended.
#[derive(Debug)]
pub struct Finished {
    /// Component name, e.g. `sinks.out`.
    pub component: String,
    /// How it ended.
    pub result: Result<(), anyhow::Error>,
}

type DepthProbe = Box<dyn Fn() -> (Limits, Depth) + Send + Sync>;

/// The queues the observer reports, by name (a reload adds and removes sinks' queues).
#[derive(Clone, Default)]
struct Probes(Arc<Mutex<Vec<(String, DepthProbe)>>>);

impl Probes {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<(String, DepthProbe)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reports `tx`'s queue as `name`, in place of any queue reported under that name.
    fn set<T: Weighed + Send + 'static>(&self, name: &str, tx: &Sender<T>) {
        let probe = tx.probe();
        let entry: DepthProbe = Box::new(move || (probe.limits(), probe.depth()));
        let mut list = self.list();
        match list.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = entry,
            None => list.push((name.to_owned(), entry)),
        }
    }

    fn remove(&self, name: &str) {
        self.list().retain(|(n, _)| n != name);
    }
}

/// A running pipeline.
pub struct Running {
    observer: Observer,
    shutdown: Shutdown,
    events: UnboundedReceiver<Finished>,
    events_tx: UnboundedSender<Finished>,
    pending: usize,
    /// What a reload needs; `None` when the pipeline cannot be reloaded.
    live: Option<Live>,
}

/// The running pipeline as a reload sees it. Holds nothing that keeps a queue open, so
/// shutdown (queues closing from the sources on) is unaffected.
struct Live {
    config: Config,
    /// Each stage's plugin file hash (`None` for built-in stages).
    plugins: Vec<Option<u128>>,
    sinks: Vec<LiveSink>,
    handoff: Arc<Handoff>,
    dead: WeakSender<DeadLetters>,
    /// The stage queue, for file sources a reload starts (weak: it still closes when the
    /// last source ends).
    ingress: WeakSender<Batch>,
    /// The running file sources (the only sources a reload may add, change or remove).
    files: Vec<LiveFile>,
}

/// A running file source.
struct LiveFile {
    config: SourceConfig,
    /// Stops it alone.
    stop: Shutdown,
    /// Disconnects when its thread has returned (checkpoint written); a replacement reading
    /// the same checkpoint file waits for that.
    ended: std::sync::mpsc::Receiver<()>,
}

/// A running sink.
struct LiveSink {
    config: SinkConfig,
    /// Disconnects when the sink's thread has returned; a replacement waits for that.
    ended: std::sync::mpsc::Receiver<()>,
}

/// Reads a running pipeline's counters, queues and latency from anywhere (the metrics
/// endpoint), while it runs and after it ended. Cloning shares it.
#[derive(Clone)]
pub struct Observer {
    registry: Registry,
    shutdown: Shutdown,
    queues: Probes,
    started: Instant,
}

impl Running {
    /// Asks the sources to stop reading (triggers the pipeline's [`Shutdown`], which wakes
    /// them); everything already read still flows out.
    pub fn stop(&self) {
        self.shutdown.trigger();
    }

    /// The pipeline's shutdown signal (what [`Running::stop`] triggers).
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
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
        if self.shutdown.is_triggered() {
            return Some("stopping".into());
        }
        self.queues.list().iter().find_map(|(name, probe)| {
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
            .list()
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

/// One stage of a config, loaded: a plugin stage's component compiled (or mapped from the
/// cache) and pre-instantiated, not yet instantiated.
enum Loaded<'c> {
    Filter(&'c crate::stages::builtin::filter::FilterConfig),
    Route(&'c crate::stages::builtin::route::RouteConfig),
    Wasm(
        Arc<Plugin>,
        &'c crate::stages::wasm::config::WasmStageConfig,
    ),
}

/// Loads every stage of `config` (reading and compiling plugin files), in pipeline order.
fn load_stages(config: &Config) -> anyhow::Result<Vec<Loaded<'_>>> {
    config
        .stages
        .iter()
        .map(|s| {
            Ok(match &s.kind {
                StageKind::Filter(f) => Loaded::Filter(f),
                StageKind::Route(r) => Loaded::Route(r),
                StageKind::Wasm(w) => {
                    let plugin = Plugin::load(&w.plugin, w.kind)
                        .map_err(|e| anyhow::anyhow!("stage `{}`: {e}", s.name))?;
                    Loaded::Wasm(Arc::new(plugin), w)
                }
            })
        })
        .collect()
}

/// Each loaded stage's plugin file hash (`None` for built-in stages).
fn plugin_hashes(loaded: &[Loaded<'_>]) -> Vec<Option<u128>> {
    loaded
        .iter()
        .map(|l| match l {
            Loaded::Wasm(p, _) => Some(p.content_hash()),
            _ => None,
        })
        .collect()
}

/// One set of stages per stage worker, in pipeline order, registering each stage's counters
/// (shared by its copies). Each loaded plugin is instantiated once per worker. The number of
/// workers is `pipeline.stage_workers`, lowered (with a warning) so that every worker's
/// plugin instances fit in half the engine's [`INSTANCES_MAX`] (the other half is room for a
/// reload, whose new instances exist next to the old ones for a moment). With no stages, one
/// empty set.
fn stage_sets(
    config: &Config,
    loaded: &[Loaded<'_>],
    registry: &Registry,
) -> anyhow::Result<Vec<Vec<NamedStage>>> {
    if config.stages.is_empty() {
        return Ok(vec![Vec::new()]);
    }
    let plugin_stages = loaded
        .iter()
        .filter(|l| matches!(l, Loaded::Wasm(..)))
        .count();
    let requested = config.pipeline.stage_workers;
    let workers = workers_that_fit(requested, plugin_stages);
    if workers < requested {
        tracing::warn!(
            "pipeline.stage_workers = {requested} with {plugin_stages} plugin stages would need {} \
             plugin instances, but at most {} can run at once (half of {INSTANCES_MAX}, the rest is \
             kept for reloads): running {workers} stage workers",
            requested * plugin_stages,
            INSTANCES_MAX / 2
        );
    }
    let sink_names: Vec<String> = config.sinks.iter().map(|s| s.name.clone()).collect();
    let mut sets: Vec<Vec<NamedStage>> = (0..workers)
        .map(|_| Vec::with_capacity(config.stages.len()))
        .collect();
    for (s, l) in config.stages.iter().zip(loaded) {
        let component = if s.name.starts_with("stages[") {
            s.name.clone()
        } else {
            format!("stages.{}", s.name)
        };
        let counters = registry.register(component, Kind::Stage);
        // A plugin stage's workers share one guard: its log allowance and its breaker.
        let guard = match l {
            Loaded::Wasm(_, w) => Some(StageGuard::new(&s.name, w, counters.clone())),
            _ => None,
        };
        // An aggregate stage: one instance per worker, shared by all workers (key affinity).
        let shared = match l {
            Loaded::Wasm(plugin, w) if w.kind == PluginKind::Aggregate => {
                let count = sets.len() as u32;
                let guard = guard
                    .clone()
                    .unwrap_or_else(|| StageGuard::new(&s.name, w, counters.clone()));
                let instances = (0..count)
                    .map(|index| {
                        WasmStage::from_plugin_slot(
                            plugin.clone(),
                            guard.clone(),
                            (*w).clone(),
                            &sink_names,
                            config.pipeline.default_sinks,
                            Slot { index, count },
                        )
                        .map_err(|e| anyhow::anyhow!("stage `{}`: {e}", s.name))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                // The key was checked when the config was read.
                let key = w
                    .key
                    .as_deref()
                    .and_then(|k| crate::core::jsonpath::JsonPath::parse(k).ok());
                Some(AggregateShared::new(
                    instances,
                    key,
                    w.tick,
                    config.pipeline.default_sinks,
                ))
            }
            _ => None,
        };
        for (worker, set) in sets.iter_mut().enumerate() {
            let stage: Box<dyn Stage> = match (l, &shared) {
                (_, Some(shared)) => Box::new(AggregateStage::new(shared.clone(), worker)),
                (Loaded::Filter(f), _) => Box::new(Filter::new((*f).clone())),
                (Loaded::Route(r), _) => Box::new(Route::new((*r).clone())),
                (Loaded::Wasm(plugin, w), _) => Box::new(
                    WasmStage::from_plugin(
                        plugin.clone(),
                        guard
                            .clone()
                            .unwrap_or_else(|| StageGuard::new(&s.name, w, counters.clone())),
                        (*w).clone(),
                        &sink_names,
                        config.pipeline.default_sinks,
                    )
                    .map_err(|e| anyhow::anyhow!("stage `{}`: {e}", s.name))?,
                ),
            };
            set.push(NamedStage {
                name: s.name.clone(),
                stage,
                counters: counters.clone(),
            });
        }
    }
    Ok(sets)
}

/// How many of `requested` stage workers (at least one) can each hold an instance of every one
/// of `plugin_stages` plugin stages within half of [`INSTANCES_MAX`].
fn workers_that_fit(requested: usize, plugin_stages: usize) -> usize {
    match (INSTANCES_MAX / 2).checked_div(plugin_stages) {
        Some(fit) => requested.min(fit).max(1),
        None => requested.max(1),
    }
}

/// Starts sink `s` on a thread of its own, reading `rx`; with a disk buffer, the buffer runs on
/// threads of its own between `rx` and the sink. When `after` is given (the sink it replaces),
/// the new sink (its buffer, if it has one) starts only once that sink's threads have returned.
/// Returns what disconnects when this sink's threads have returned, and how many component
/// threads it started.
fn spawn_sink(
    s: &SinkConfig,
    rx: Receiver<Batch>,
    dead: DeadLetterTx,
    counters: Arc<Counters>,
    registry: &Registry,
    after: Option<std::sync::mpsc::Receiver<()>>,
    events: &UnboundedSender<Finished>,
) -> anyhow::Result<(std::sync::mpsc::Receiver<()>, usize)> {
    let (ended_tx, ended) = std::sync::mpsc::channel::<()>();
    let name = s.name.clone();
    let kind = s.kind.clone();
    let (rx, sink_after, started) = match &s.buffer {
        Some(cfg) => {
            let (to_sink, from_buffer) = queue(s.queue);
            let buffer_counters = registry.register(format!("buffers.{name}"), Kind::Buffer);
            let (cfg, name, dead, counters) =
                (cfg.clone(), name.clone(), dead.clone(), counters.clone());
            let ended_tx = ended_tx.clone();
            spawn(format!("buffers.{name}"), events, move || {
                let _ended = ended_tx;
                if let Some(after) = after {
                    // The same directory: the predecessor must have closed its log.
                    let _ = after.recv();
                }
                crate::sinks::buffer::run(&name, &cfg, rx, to_sink, dead, buffer_counters, counters)
            })?;
            (from_buffer, None, 2)
        }
        None => (rx, after, 1),
    };
    spawn(format!("sinks.{name}"), events, move || {
        let _ended = ended_tx;
        if let Some(after) = sink_after {
            // Returns (with an error) once the predecessor's threads have dropped their ends.
            let _ = after.recv();
        }
        match kind {
            SinkKind::File(f) => {
                let sink = Box::new(FileSink::new(&name, f));
                run_blocking_sink(&name, sink, rx, dead, counters)
            }
            SinkKind::Stdout(c) => {
                run_blocking_sink(&name, Box::new(StdoutSink::stdout(c)), rx, dead, counters)
            }
            // Network I/O: the AWS sinks run a small async runtime of their own.
            SinkKind::Kinesis(k) => crate::sinks::kinesis::run(&name, *k, rx, dead, counters),
            SinkKind::Firehose(f) => crate::sinks::firehose::run(&name, *f, rx, dead, counters),
        }
    })?;
    Ok((ended, started))
}

/// Starts every component of `config`. `stdin` replaces standard input (tests pass in-memory
/// readers); `None` reads the real standard input. With `reloadable`, the pipeline can later
/// take a new config ([`Running::reload_base`]); it then always has a stage thread (the
/// shortcut of a lone stdin source dispatching by itself is for pipelines that never reload).
pub fn start(
    config: &Config,
    stdin: Option<Box<dyn Input>>,
    reloadable: bool,
) -> anyhow::Result<Running> {
    let (events_tx, events) = unbounded_channel();
    let registry = Registry::new();
    let queues = Probes::default();
    let mut pending = 0usize;
    let shutdown = Shutdown::new();

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
    queues.set("dead_letter", &dl_tx);
    let dl_weak = dl_tx.downgrade();
    let dead = DeadLetterTx::new(dl_tx);
    let dl_counters = registry.register("dead_letter", Kind::DeadLetter);
    let dl_cfg = config.dead_letter.clone();
    // Opened now, so that a dead letter can be written whatever happens later (descriptors
    // running out included); a file that cannot be opened stops the start.
    let dl_file = crate::sinks::dead_letter::DeadLetterFile::open(&dl_cfg)?;
    spawn("dead_letter".into(), &events_tx, move || {
        crate::sinks::dead_letter::run(&dl_cfg, dl_file, dl_rx, dl_counters)
    })?;
    pending += 1;

    let mut ports = Vec::new();
    let mut live_sinks = Vec::new();
    for s in &config.sinks {
        let name = format!("sinks.{}", s.name);
        let (tx, rx) = queue(s.queue);
        queues.set(&name, &tx);
        let counters = registry.register(name, Kind::Sink);
        ports.push(SinkPort {
            name: Arc::from(s.name.as_str()),
            tx,
            counters: counters.clone(),
        });
        let (ended, started) =
            spawn_sink(s, rx, dead.clone(), counters, &registry, None, &events_tx)?;
        pending += started;
        live_sinks.push(LiveSink {
            config: s.clone(),
            ended,
        });
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
    // queued), and several sources share one: then a stage thread runs even with no stages. So
    // does a pipeline that may be reloaded: a reload hands the stage thread its next stages and
    // dispatcher.
    let direct = !reloadable
        && config.stages.is_empty()
        && config.sources.len() == 1
        && !config.sources.iter().any(|s| s.kind.is_network());
    let mut live = None;
    let outlet = if direct {
        Outlet::Sinks(dispatcher)
    } else {
        let loaded = load_stages(config)?;
        let stages = stage_sets(config, &loaded, &registry)?;
        let (tx, rx) = queue(config.pipeline.queue);
        queues.set("stages", &tx);
        let handoff = Handoff::new(&rx);
        live = Some(Live {
            config: config.clone(),
            plugins: plugin_hashes(&loaded),
            sinks: live_sinks,
            handoff: handoff.clone(),
            dead: dl_weak,
            ingress: tx.downgrade(),
            files: Vec::new(),
        });
        let dead = dead.clone();
        spawn("stages".into(), &events_tx, move || {
            run_stages(stages, rx, dispatcher, dead, handoff)
                .map_err(|e| anyhow::anyhow!("stages: {e}"))
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
    let mut files = Vec::new();
    for s in &config.sources {
        let name = format!("sources.{}", s.name);
        let counters = registry.register(name.clone(), Kind::Source);
        match &s.kind {
            SourceKind::Stdin(c) => {
                let mut c = *c;
                c.read_bytes = stdin_read_bytes(c.read_bytes, config);
                later.push((name, s.name.clone(), c, counters));
            }
            SourceKind::File(c) => files.push((name, s.name.clone(), (**c).clone(), counters)),
            SourceKind::Http(c) => {
                let source = HttpSource::bind(
                    &s.name,
                    (**c).clone(),
                    counters,
                    ingress(&outlet)?,
                    shutdown.clone(),
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
                    shutdown.clone(),
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
    for (name, source_name, c, counters) in files {
        let this_outlet = match &outlet {
            Some(Outlet::Stages(tx)) => Outlet::Stages(tx.clone()),
            _ => match outlet.take() {
                Some(o) => o,
                None => anyhow::bail!("internal error: a second source without a stage queue"),
            },
        };
        let stop = Shutdown::new();
        let (ended_tx, ended) = std::sync::mpsc::channel::<()>();
        let source = FileSource::new(
            &source_name,
            c,
            counters,
            this_outlet,
            dead.clone(),
            shutdown.clone(),
            config.pipeline.shutdown_grace,
        )?
        .with_stop(stop.clone());
        spawn(name, &events_tx, move || {
            let _ended = ended_tx;
            source.run().map_err(anyhow::Error::new)
        })?;
        pending += 1;
        if let Some(live) = live.as_mut()
            && let Some(s) = config.sources.iter().find(|s| s.name == source_name)
        {
            live.files.push(LiveFile {
                config: s.clone(),
                stop,
                ended,
            });
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
            shutdown.clone(),
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
            shutdown: shutdown.clone(),
            queues,
            started: Instant::now(),
        },
        shutdown,
        events,
        events_tx,
        pending,
        live,
    })
}

/// Why a reload was refused; the running pipeline is unchanged.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct ReloadRefused(pub Vec<String>);

/// What preparing a reload needs from the running pipeline. It can be sent to another thread:
/// preparing reads and compiles plugins, which may take seconds.
pub struct ReloadBase {
    config: Config,
    plugins: Vec<Option<u128>>,
    registry: Registry,
}

/// Stage sets (one per worker) and each stage's plugin file hash.
type NewStages = (Vec<Vec<NamedStage>>, Vec<Option<u128>>);

/// A new config checked against the running one, with its new stages instantiated: ready for
/// [`Running::apply`].
pub struct Prepared {
    config: Config,
    /// New stage sets and their plugin hashes, or `None` to keep the running stages.
    stages: Option<NewStages>,
    /// Things the reload does not change, to log.
    pub warnings: Vec<String>,
}

/// A reload under way: the new sinks run, the stage thread switches between two batches.
pub struct Applied {
    /// Answers (with the pause: the time no batch was taken from the stage queue) once the
    /// stage thread runs the new config.
    pub switched: tokio::sync::oneshot::Receiver<Duration>,
    /// What changed, for the log: e.g. `sinks kept [a], replaced [b], added [], removed []; stages rebuilt`.
    pub summary: String,
}

/// Names of the sources that differ between `old` and `new` (added, removed or changed).
fn changed_sources(old: &Config, new: &Config) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for s in &new.sources {
        if old.sources.iter().all(|o| o != s) {
            names.push(s.name.clone());
        }
    }
    for o in &old.sources {
        if new.sources.iter().all(|s| s.name != o.name) {
            names.push(o.name.clone());
        }
    }
    names
}

impl ReloadBase {
    /// Checks `new` against the running config and builds what it needs. Refused (nothing
    /// changes) when it changes what cannot change while running (sources, the dead-letter
    /// sink, the metrics endpoint), or when a plugin fails to load or to accept its config.
    pub fn prepare(&self, new: Config) -> Result<Prepared, ReloadRefused> {
        let old = &self.config;
        let mut problems = Vec::new();
        let is_file = |c: &Config, name: &str| {
            c.sources
                .iter()
                .find(|s| s.name == name)
                .is_none_or(|s| matches!(s.kind, SourceKind::File(_)))
        };
        // File sources may be added, changed and removed; the others need a restart.
        let sources: Vec<String> = changed_sources(old, &new)
            .into_iter()
            .filter(|n| !(is_file(old, n) && is_file(&new, n)))
            .collect();
        if !sources.is_empty() {
            problems.push(format!(
                "sources other than file sources cannot change while running (changed, added \
                 or removed: {}); restart edge-router to apply",
                sources.join(", ")
            ));
        }
        if new.dead_letter != old.dead_letter {
            problems.push(
                "[dead_letter] cannot change while running; restart edge-router to apply".into(),
            );
        }
        if new.metrics != old.metrics {
            problems
                .push("[metrics] cannot change while running; restart edge-router to apply".into());
        }
        if !problems.is_empty() {
            return Err(ReloadRefused(problems));
        }
        let mut warnings = Vec::new();
        if new.pipeline.queue != old.pipeline.queue {
            warnings.push(
                "pipeline.queue: the stage queue and the dead-letter queue keep their limits \
                 until restart (sinks without limits of their own got the new ones)"
                    .to_owned(),
            );
        }
        let loaded = load_stages(&new).map_err(|e| ReloadRefused(vec![format!("{e:#}")]))?;
        let hashes = plugin_hashes(&loaded);
        let same_names = new.sinks.len() == old.sinks.len()
            && new
                .sinks
                .iter()
                .zip(&old.sinks)
                .all(|(a, b)| a.name == b.name);
        let keep_stages = new.stages == old.stages
            && hashes == self.plugins
            && same_names
            && new.pipeline.default_sinks == old.pipeline.default_sinks
            && new.pipeline.stage_workers == old.pipeline.stage_workers;
        let stages = if keep_stages {
            None
        } else {
            let sets = stage_sets(&new, &loaded, &self.registry)
                .map_err(|e| ReloadRefused(vec![format!("{e:#}")]))?;
            Some((sets, hashes))
        };
        drop(loaded);
        Ok(Prepared {
            config: new,
            stages,
            warnings,
        })
    }
}

impl Running {
    /// What a reload needs, or `None` when this pipeline cannot be reloaded (it was not
    /// started as reloadable).
    pub fn reload_base(&self) -> Option<ReloadBase> {
        let live = self.live.as_ref()?;
        Some(ReloadBase {
            config: live.config.clone(),
            plugins: live.plugins.clone(),
            registry: self.observer.registry.clone(),
        })
    }

    /// The config the pipeline runs now.
    pub fn config(&self) -> Option<&Config> {
        self.live.as_ref().map(|l| &l.config)
    }

    /// Switches the running pipeline to `prepared`: starts the changed and added sinks, and
    /// hands the stage thread its next stages and dispatcher. Unchanged sinks keep running;
    /// removed and replaced ones drain what they hold and end.
    pub fn apply(&mut self, prepared: Prepared) -> Result<Applied, ReloadRefused> {
        let refused = |why: &str| ReloadRefused(vec![why.to_owned()]);
        if self.shutdown.is_triggered() {
            return Err(refused("the pipeline is stopping"));
        }
        let live = self
            .live
            .as_ref()
            .ok_or_else(|| refused("this pipeline cannot be reloaded"))?;
        let dead = live
            .dead
            .upgrade()
            .map(DeadLetterTx::new)
            .ok_or_else(|| refused("the pipeline is shutting down"))?;
        let ingress = live
            .ingress
            .upgrade()
            .ok_or_else(|| refused("the pipeline is shutting down"))?;
        let had_files = !live.files.is_empty();
        let Prepared { config, stages, .. } = prepared;
        let files = self.reload_files(&config, ingress, &dead);
        let Some(live) = self.live.as_mut() else {
            return Err(refused("this pipeline cannot be reloaded"));
        };
        let registry = &self.observer.registry;
        let mut old: Vec<Option<LiveSink>> = live.sinks.drain(..).map(Some).collect();
        let mut plan = Vec::with_capacity(config.sinks.len());
        let mut sinks = Vec::with_capacity(config.sinks.len());
        let (mut kept, mut replaced, mut added) = (Vec::new(), Vec::new(), Vec::new());
        for s in &config.sinks {
            let prev = old
                .iter_mut()
                .find(|o| o.as_ref().is_some_and(|o| o.config.name == s.name))
                .and_then(Option::take);
            match prev {
                Some(running) if running.config == *s => {
                    plan.push(PortPlan::Keep(Arc::from(s.name.as_str())));
                    sinks.push(running);
                    kept.push(s.name.clone());
                }
                prev => {
                    let name = format!("sinks.{}", s.name);
                    let (tx, rx) = queue(s.queue);
                    self.observer.queues.set(&name, &tx);
                    let counters = registry.register(name, Kind::Sink);
                    let after = prev.map(|p| p.ended);
                    if after.is_some() {
                        replaced.push(s.name.clone());
                    } else {
                        added.push(s.name.clone());
                    }
                    let started = spawn_sink(
                        s,
                        rx,
                        dead.clone(),
                        counters.clone(),
                        registry,
                        after,
                        &self.events_tx,
                    );
                    let ended = match started {
                        Ok((ended, threads)) => {
                            self.pending += threads;
                            ended
                        }
                        // No thread: the port's queue is closed, so this sink's records are
                        // dead-lettered as those of a failed sink.
                        Err(e) => {
                            tracing::error!("reload: sink `{}` cannot start: {e:#}", s.name);
                            std::sync::mpsc::channel().1
                        }
                    };
                    plan.push(PortPlan::New(SinkPort {
                        name: Arc::from(s.name.as_str()),
                        tx,
                        counters,
                    }));
                    sinks.push(LiveSink {
                        config: s.clone(),
                        ended,
                    });
                }
            }
        }
        let removed: Vec<String> = old
            .into_iter()
            .flatten()
            .map(|o| {
                self.observer
                    .queues
                    .remove(&format!("sinks.{}", o.config.name));
                o.config.name
            })
            .collect();
        let rebuilt = stages.is_some();
        let (stage_sets, plugins) = match stages {
            Some((sets, hashes)) => (Some(sets), hashes),
            None => (None, live.plugins.clone()),
        };
        let default_mask = config.pipeline.default_sinks;
        let (done, switched) = tokio::sync::oneshot::channel();
        let generation = Generation {
            stages: stage_sets,
            rewire: Box::new(move |d: Dispatcher| d.rewire(plan, default_mask)),
            done,
        };
        live.sinks = sinks;
        if live.handoff.hand(generation).is_err() {
            return Err(refused(
                "the stage thread has ended (the pipeline is stopping)",
            ));
        }
        live.config = config;
        live.plugins = plugins;
        let list = |v: &[String]| v.join(", ");
        let mut summary = format!(
            "sinks kept [{}], replaced [{}], added [{}], removed [{}]; stages {}",
            list(&kept),
            list(&replaced),
            list(&added),
            list(&removed),
            if rebuilt { "rebuilt" } else { "kept" }
        );
        let (files, [fk, fr, fa, fd]) = files;
        if had_files || !files.is_empty() {
            summary.push_str(&format!(
                "; file sources kept [{}], replaced [{}], added [{}], removed [{}]",
                list(&fk),
                list(&fr),
                list(&fa),
                list(&fd)
            ));
        }
        live.files = files;
        Ok(Applied { switched, summary })
    }

    /// Starts the file sources of `config` that are new or changed and stops the changed and
    /// removed ones (a changed one's successor starts once it has written its checkpoint, and
    /// reads on from it). Answers the running file sources and the names kept, replaced,
    /// added, removed.
    fn reload_files(
        &mut self,
        config: &Config,
        ingress: crate::queue::Sender<Batch>,
        dead: &DeadLetterTx,
    ) -> (Vec<LiveFile>, [Vec<String>; 4]) {
        let mut old: Vec<Option<LiveFile>> = self
            .live
            .as_mut()
            .map(|l| l.files.drain(..).map(Some).collect())
            .unwrap_or_default();
        let mut running = Vec::new();
        let mut names: [Vec<String>; 4] = Default::default();
        for s in &config.sources {
            let SourceKind::File(c) = &s.kind else {
                continue;
            };
            let prev = old
                .iter_mut()
                .find(|o| o.as_ref().is_some_and(|o| o.config.name == s.name))
                .and_then(Option::take);
            let after = match prev {
                Some(p) if p.config == *s => {
                    names[0].push(s.name.clone());
                    running.push(p);
                    continue;
                }
                Some(p) => {
                    names[1].push(s.name.clone());
                    p.stop.trigger();
                    Some(p.ended)
                }
                None => {
                    names[2].push(s.name.clone());
                    None
                }
            };
            let name = format!("sources.{}", s.name);
            let counters = self.observer.registry.register(name.clone(), Kind::Source);
            let stop = Shutdown::new();
            let (ended_tx, ended) = std::sync::mpsc::channel::<()>();
            let (source_name, cfg, outlet, dead) = (
                s.name.clone(),
                (**c).clone(),
                Outlet::Stages(ingress.clone()),
                dead.clone(),
            );
            let (shutdown, grace, this_stop) = (
                self.shutdown.clone(),
                config.pipeline.shutdown_grace,
                stop.clone(),
            );
            let started = spawn(name, &self.events_tx, move || {
                let _ended = ended_tx;
                // The one it replaces has written its checkpoint (its thread returned).
                if let Some(after) = after {
                    let _ = after.recv();
                }
                FileSource::new(&source_name, cfg, counters, outlet, dead, shutdown, grace)?
                    .with_stop(this_stop)
                    .run()
                    .map_err(anyhow::Error::new)
            });
            match started {
                Ok(()) => {
                    self.pending += 1;
                    running.push(LiveFile {
                        config: s.clone(),
                        stop,
                        ended,
                    });
                }
                Err(e) => tracing::error!("reload: source `{}` cannot start: {e:#}", s.name),
            }
        }
        for o in old.into_iter().flatten() {
            names[3].push(o.config.name.clone());
            o.stop.trigger();
        }
        (running, names)
    }
}

/// The stdin source's read size: its `read_bytes`, but at most a quarter of the smallest queue's
/// byte limit, so that a batch (at most that plus one line) fits every queue it passes with room
/// to spare instead of being admitted alone over the limit.
fn stdin_read_bytes(read_bytes: usize, config: &Config) -> usize {
    let smallest = config
        .sinks
        .iter()
        .map(|s| s.queue.bytes_max)
        .chain([config.pipeline.queue.bytes_max])
        .min()
        .unwrap_or(u64::MAX);
    read_bytes.min(usize::try_from(smallest / 4).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_workers_are_lowered_to_fit_the_instance_pool() {
        assert_eq!(workers_that_fit(4, 0), 4);
        assert_eq!(workers_that_fit(64, 0), 64);
        // Half the instance pool (32) is for the running stages, half for a reload's.
        assert_eq!(workers_that_fit(64, 1), 32);
        assert_eq!(workers_that_fit(64, 2), 16);
        assert_eq!(workers_that_fit(4, 3), 4);
        assert_eq!(workers_that_fit(30, 3), 10);
        assert_eq!(workers_that_fit(4, 9), 3);
        // More plugin stages than instances: one worker, and starting fails as it always did.
        assert_eq!(workers_that_fit(4, 65), 1);
        assert_eq!(workers_that_fit(0, 0), 1);
    }
}
