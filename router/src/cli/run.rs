//! `edge-router run`: load the config (a file, quick-mode URIs or the embedded default), raise
//! the open-files limit, start the pipeline and its metrics endpoint on a small tokio runtime,
//! and hand it to the library's supervisor with the process's signals (and, under systemd, its
//! `NOTIFY_SOCKET`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::ValueEnum;
use edge_router::config::{self, Config};
use edge_router::reload::{Adjust, Reloader};
use edge_router::stats;
use edge_router::supervise::{self, Ending, Outcome, Supervisor};
use edge_router::topology::build;

use super::EXIT_CONFIG;

#[derive(clap::Args)]
pub(super) struct RunArgs {
    /// Config file (TOML).
    #[arg(short, long, value_name = "FILE", conflicts_with_all = ["source", "sink", "dead_letter", "stage"])]
    pub(super) config: Option<PathBuf>,
    /// Quick mode: where records come from (`stdin`, `stdin?framing=json`).
    #[arg(long, value_name = "URI")]
    pub(super) source: Option<String>,
    /// Quick mode: where records go (`file:PATH?opt=val`, `stdout`); repeat for fan-out.
    #[arg(long, value_name = "URI")]
    pub(super) sink: Vec<String>,
    /// Quick mode: a plugin stage, `KIND=PLUGIN` (`filter=plugins/dist/json-filter.wasm`);
    /// repeat for more stages, in pipeline order.
    #[arg(long, value_name = "KIND=PLUGIN")]
    pub(super) stage: Vec<String>,
    /// Quick mode: the config (JSON) of the `--stage` just before it.
    #[arg(long, value_name = "JSON")]
    pub(super) stage_config: Vec<String>,
    /// Set from the positions of --stage and --stage-config on the command line.
    #[arg(skip)]
    pub(super) stages: Vec<config::QuickStage>,
    /// Quick mode: dead-letter file (default edge-router-out/dead-letter.ndjson).
    #[arg(long, value_name = "PATH")]
    pub(super) dead_letter: Option<String>,
    /// Print counters and latency to stderr at exit (`--stats` for a table, `--stats=json`).
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "human")]
    pub(super) stats: Option<StatsFormat>,
    /// Serve Prometheus metrics, /health and /ready on this address (overrides `[metrics]`).
    #[arg(long, value_name = "IP:PORT")]
    pub(super) metrics: Option<std::net::SocketAddr>,
    /// Reload when the config file (-c) changes (its modification time is checked every
    /// second). SIGHUP and `edge-router reload` work without it.
    #[arg(long, requires = "config")]
    pub(super) watch_config: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum StatsFormat {
    Human,
    Json,
}

impl StatsFormat {
    fn format(self) -> stats::Format {
        match self {
            StatsFormat::Human => stats::Format::Human,
            StatsFormat::Json => stats::Format::Json,
        }
    }
}

/// Runs the command; an error that stops the start is printed here.
pub(super) fn run(args: RunArgs) -> ExitCode {
    match start(args) {
        Ok(code) => code,
        Err(e) => {
            say_err!("edge-router: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit of open files to the hard limit (connections, files and plugin caches
/// all take descriptors; the common soft limit of 1024 is easily reached). Returns the limits
/// after (`None`: unlimited).
fn raise_descriptor_limit() -> (Option<u64>, Option<u64>) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let r = getrlimit(Resource::Nofile);
    if r.current != r.maximum {
        let raised = Rlimit {
            current: r.maximum,
            maximum: r.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("cannot raise the open-files limit to the hard limit: {e}");
        }
    }
    let r = getrlimit(Resource::Nofile);
    (r.current, r.maximum)
}

pub(super) fn limit_text(l: Option<u64>) -> String {
    l.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}

/// Gives each `--stage-config` to the `--stage` written just before it.
pub(super) fn pair_stages(
    args: &RunArgs,
    m: &clap::ArgMatches,
) -> Result<Vec<config::QuickStage>, String> {
    let stage_at: Vec<usize> = m
        .indices_of("stage")
        .map(Iterator::collect)
        .unwrap_or_default();
    let config_at: Vec<usize> = m
        .indices_of("stage_config")
        .map(Iterator::collect)
        .unwrap_or_default();
    let mut out: Vec<config::QuickStage> = args
        .stage
        .iter()
        .map(|s| config::QuickStage {
            spec: s.clone(),
            config: None,
        })
        .collect();
    for (c, at) in args.stage_config.iter().zip(config_at) {
        let owner = stage_at
            .iter()
            .rposition(|&s| s < at)
            .ok_or_else(|| format!("--stage-config {c:?} must follow the --stage it configures"))?;
        if out[owner].config.replace(c.clone()).is_some() {
            return Err(format!(
                "--stage {:?} has more than one --stage-config",
                out[owner].spec
            ));
        }
    }
    Ok(out)
}

/// Loads the config the arguments ask for.
fn load(args: &RunArgs) -> Result<(Config, bool), config::reader::ConfigErrors> {
    if let Some(path) = &args.config {
        return config::load_file(path).map(|c| (c, false));
    }
    if !args.sink.is_empty()
        || args.source.is_some()
        || args.dead_letter.is_some()
        || !args.stages.is_empty()
    {
        return config::from_quick(
            args.source.as_deref(),
            &args.stages,
            &args.sink,
            args.dead_letter.as_deref(),
        )
        .map(|c| (c, false));
    }
    config::parse_str("<embedded default config>", config::DEFAULT_CONFIG).map(|c| (c, true))
}

fn start(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (mut config, is_default) = match load(&args) {
        Ok(c) => c,
        Err(errors) => {
            say_err!("{errors}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let (soft, hard) = raise_descriptor_limit();
    // The command line's overrides, applied again to every reloaded config.
    let metrics = args.metrics;
    let adjust: Adjust = Arc::new(move |config: &mut Config| {
        if let Some(address) = metrics {
            // The address only: a reload token and limits from the file stay.
            match &mut config.metrics {
                Some(m) => m.address = address,
                None => config.metrics = Some(edge_router::metrics::MetricsConfig::at(address)),
            }
        }
    });
    adjust(&mut config);
    let fds = config::bound::descriptors(&config);
    if soft.is_some_and(|soft| soft < fds.total()) {
        let parts: Vec<String> = fds
            .terms
            .iter()
            .map(|t| format!("{} {}", t.what, t.value))
            .collect();
        tracing::warn!(
            "this config may need up to {} file descriptors ({}), more than the limit of {} \
             (hard limit {}): when they run out, new connections wait and file sinks retry \
             opening; raise the limit (ulimit -n, systemd LimitNOFILE=) or lower \
             max_connections / max_open_files",
            fds.total(),
            parts.join(", "),
            limit_text(soft),
            limit_text(hard)
        );
    }
    if is_default {
        let sinks: Vec<String> = config.sinks.iter().map(|s| s.kind.describe()).collect();
        say_err!(
            "edge-router: no config given; reading records from stdin, writing them to {} (dead letters: {})",
            sinks.join(", "),
            config.dead_letter.path.display()
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let reloader = Reloader::new(args.config.clone(), adjust);
    let outcome = rt.block_on(supervise(config, reloader, args.watch_config))?;
    for line in outcome.lines(args.stats.map(StatsFormat::format)) {
        say_err!("{line}");
    }
    if let Ending::GaveUp { .. } = outcome.ending {
        // Do not wait for threads that are stuck.
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(ExitCode::from(outcome.exit_code()))
}

/// Installs the signal handlers, starts the pipeline and its metrics endpoint, and supervises it
/// to its end (on the runtime `start` made).
async fn supervise(
    config: Config,
    reloader: Reloader,
    watch_config: bool,
) -> anyhow::Result<Outcome> {
    let signals = supervise::os_signals()?;
    let (reload_tx, reloads) = tokio::sync::mpsc::unbounded_channel();
    // Only a pipeline from a config file can be reloaded; it always has a stage thread.
    let reloadable = reloader.can_reload();
    let running = build::start(&config, None, reloadable)?;
    if let Some(m) = &config.metrics {
        let bound = edge_router::metrics::server::spawn(m, running.observer(), Some(reload_tx))
            .with_context(|| format!("metrics endpoint: cannot listen on {}", m.address))?;
        tracing::info!("metrics on http://{bound}/metrics");
    }
    let mut supervisor =
        Supervisor::new(signals, reloads, reloader, config.pipeline.shutdown_grace);
    supervisor.watch_config = watch_config;
    supervisor.housekeeping = Box::new(crate::allocator::collect);
    // Under systemd (`Type=notify`): READY=1 now, status, reloads, stopping, the watchdog.
    supervisor.notify = supervise::notify::Notifier::from_env();
    if let Some(n) = &supervisor.notify {
        tracing::info!(
            "systemd notify: telling NOTIFY_SOCKET the router's state; looking at the pipeline \
             every {} ms",
            n.every().as_millis()
        );
    }
    Ok(supervisor.run(running).await)
}
