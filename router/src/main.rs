//! The `edge-router` command: `run` a pipeline, `validate` a config.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use edge_router::config::{self, Config};
use edge_router::reload::{Adjust, ReloadRequest, Reloader};
use edge_router::stats;
use edge_router::topology::build;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};

/// `eprintln!` that never panics: a standard error closed early (`2>&1 | head`) must not stop
/// the router; what cannot be written is lost, the pipeline goes on.
macro_rules! say_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!` that never panics (see `say_err!`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[allow(unsafe_code)]
mod allocator {
    //! Giving memory back to the system after a burst. mimalloc frees pages back to its arenas
    //! and purges them (`MADV_DONTNEED`) only after a delay, on a later allocator call; when
    //! the threads that freed them go idle after a burst (network sources' workers), nothing
    //! makes that call and the memory stays resident. The supervisor calls `collect` every
    //! second: it runs the purges that are due, for all arenas.

    unsafe extern "C" {
        /// mimalloc's `mi_collect`: collects the calling thread's heap and purges what is due
        /// in the arenas. Part of the mimalloc library linked through the `mimalloc` crate.
        fn mi_collect(force: bool);
    }

    /// Runs mimalloc's due purges (cheap when there is nothing to do).
    pub fn collect() {
        // SAFETY: `mi_collect` has no preconditions; it may be called from any thread at any
        // time while mimalloc is the allocator (it is: `GLOBAL`).
        unsafe { mi_collect(false) }
    }
}

/// Exit code for a config that does not validate.
const EXIT_CONFIG: u8 = 2;
/// Exit code when shutdown did not finish within the grace period.
const EXIT_UNFLUSHED: u8 = 3;

#[derive(Parser)]
#[command(
    name = "edge-router",
    version,
    about = "Move streaming records from edge hosts into Amazon Kinesis, through sandboxed WebAssembly stages."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr: `human` (default) or `json` (one object per line, for machines).
    #[arg(long, global = true, value_enum, default_value = "human")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline: from a config file (-c), from quick-mode URIs (--source/--sink), or with
    /// the embedded default (stdin -> files under ./edge-router-out/).
    Run(RunArgs),
    /// Check a config file and report every problem with file, line, column and key.
    Validate(ValidateArgs),
    /// Inspect or try out a WebAssembly stage plugin.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Live view of a running router (rates, queues, latency) from its metrics endpoint,
    /// refreshed every second.
    Top {
        /// The router's metrics address (`run --metrics IP:PORT` or `[metrics] address`).
        #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:9598")]
        metrics: String,
        /// Refresh interval in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Stop after this many views (default: until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Send records from stdin (one per line) to a router over QUIC (`quic://HOST:PORT`) or
    /// HTTP(S) (`http://HOST:PORT`); exits 0 only when every record was acknowledged.
    Send(SendArgs),
    /// Ask a running router (started with -c FILE) to re-read its config file and plugins, over
    /// its metrics endpoint; prints what changed, or why nothing did (exit 1). Sending the
    /// router SIGHUP does the same, with the outcome in the router's log.
    Reload {
        /// The router's metrics address (`run --metrics IP:PORT` or `[metrics] address`).
        #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:9598")]
        metrics: String,
        /// The router's `[metrics] reload_token` (sent as a bearer token; the router refuses
        /// `POST /reload` without it).
        #[arg(
            long,
            value_name = "TOKEN",
            env = "EDGE_ROUTER_RELOAD_TOKEN",
            hide_env_values = true
        )]
        token: Option<String>,
    },
    /// Write sample records to stdout, one per line, to try a pipeline without a data source:
    /// `sensor`, `metering`, `click` (JSON), `csv`, `syslog` (RFC 5424) or `clf` (Apache common
    /// log). The same arguments always give the same bytes.
    Generate {
        /// The record shape: sensor, metering, click, csv, syslog or clf.
        kind: String,
        /// How many records.
        count: u64,
        /// Random seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Distinct devices (users, hosts) the records come from.
        #[arg(long, default_value_t = 10_000)]
        devices: u64,
        /// Filler bytes added to each JSON record (a "pad" field) and syslog message.
        #[arg(long, default_value_t = 0)]
        pad: usize,
    },
}

#[derive(clap::Args)]
struct SendArgs {
    /// Where to send: `quic://HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT`.
    #[arg(value_name = "URI")]
    target: String,
    /// Trust exactly the server certificate with this SHA-256 fingerprint (hex, colons allowed).
    #[arg(long, value_name = "HEX", conflicts_with_all = ["insecure", "ca"])]
    fingerprint: Option<String>,
    /// Trust servers whose certificate is signed by a CA in this PEM file (instead of the
    /// system roots).
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    ca: Option<PathBuf>,
    /// Trust any server certificate (development only).
    #[arg(long)]
    insecure: bool,
    /// Token the router asks for (QUIC HELLO token; HTTP bearer token).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "EDGE_ROUTER_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Client certificate (PEM) for routers that require one; needs --client-key.
    #[arg(long, value_name = "PEM", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Partition key for every record.
    #[arg(long, value_name = "KEY")]
    partition_key: Option<String>,
    /// Most records per batch.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    batch_records: u64,
    /// Most payload bytes per batch.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..=(256 << 20)))]
    batch_bytes: u64,
    /// Longest record in bytes; longer lines are not sent and make the exit status non-zero.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..=(64 << 20)))]
    max_record_bytes: u64,
    /// Batches sent and not yet acknowledged, at most (HTTP: keep order with 1).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    in_flight: u64,
    /// Send a partial batch after stdin was idle this many milliseconds.
    #[arg(long, default_value_t = 50)]
    linger_ms: u64,
    /// Send at most this many records per second (0: as fast as the router takes them).
    #[arg(long, default_value_t = 0)]
    max_rate: u64,
    /// Give up when nothing was acknowledged for this many seconds.
    #[arg(long, default_value_t = 300)]
    give_up_after_secs: u64,
    /// HTTP: abandon (and retry) a request not answered within this many seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout_secs: u64,
    /// Print a JSON summary (records, batches, resends, rate, latency quantiles) to stderr.
    #[arg(long)]
    stats: bool,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Say which stage worlds a component implements and what it imports; errors for a core
    /// module, a corrupt file or a component that fits no world.
    Check {
        /// The component file.
        file: PathBuf,
    },
    /// Run one plugin over records from stdin (one per line) and print the results: kept
    /// records (filter), rewritten records (enrich) or `destination<TAB>record` (route).
    /// Records the plugin rejects are reported on stderr with their line number.
    Run {
        /// The component file.
        file: PathBuf,
        /// The plugin's config, as JSON.
        #[arg(long, default_value = "{}")]
        config: String,
        /// Which world to run it as (default: the first it implements).
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    Filter,
    Enrich,
    Route,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Config file (TOML).
    #[arg(short, long, value_name = "FILE", conflicts_with_all = ["source", "sink", "dead_letter", "stage"])]
    config: Option<PathBuf>,
    /// Quick mode: where records come from (`stdin`, `stdin?framing=json`).
    #[arg(long, value_name = "URI")]
    source: Option<String>,
    /// Quick mode: where records go (`file:PATH?opt=val`, `stdout`); repeat for fan-out.
    #[arg(long, value_name = "URI")]
    sink: Vec<String>,
    /// Quick mode: a plugin stage, `KIND=PLUGIN` (`filter=plugins/dist/json-filter.wasm`);
    /// repeat for more stages, in pipeline order.
    #[arg(long, value_name = "KIND=PLUGIN")]
    stage: Vec<String>,
    /// Quick mode: the config (JSON) of the `--stage` just before it.
    #[arg(long, value_name = "JSON")]
    stage_config: Vec<String>,
    /// Set from the positions of --stage and --stage-config on the command line.
    #[arg(skip)]
    stages: Vec<config::QuickStage>,
    /// Quick mode: dead-letter file (default edge-router-out/dead-letter.ndjson).
    #[arg(long, value_name = "PATH")]
    dead_letter: Option<String>,
    /// Print counters and latency to stderr at exit (`--stats` for a table, `--stats=json`).
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "human")]
    stats: Option<StatsFormat>,
    /// Serve Prometheus metrics, /health and /ready on this address (overrides `[metrics]`).
    #[arg(long, value_name = "IP:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// Reload when the config file (-c) changes (its modification time is checked every
    /// second). SIGHUP and `edge-router reload` work without it.
    #[arg(long, requires = "config")]
    watch_config: bool,
}

#[derive(clap::Args)]
struct ValidateArgs {
    /// Config file (TOML).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum StatsFormat {
    Human,
    Json,
}

fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if let (Command::Run(args), Some(m)) = (&mut cli.command, matches.subcommand_matches("run")) {
        match pair_stages(args, m) {
            Ok(stages) => args.stages = stages,
            Err(msg) => {
                say_err!("edge-router: {msg}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGE_ROUTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A log line that cannot be written is dropped: with internal errors logged, tracing
    // would report it with `eprintln!`, which panics on a closed standard error.
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_env_filter(filter);
    match cli.log_format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    match cli.command {
        Command::Validate(args) => validate(&args),
        Command::Plugin(cmd) => match plugin_cli::run(cmd) {
            Ok(code) => code,
            Err(e) => {
                say_err!("edge-router: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Send(args) => send(args),
        Command::Top {
            metrics,
            interval_ms,
            count,
        } => {
            use std::io::IsTerminal;
            let clear = std::io::stdout().is_terminal();
            match edge_router::metrics::top::run(
                &metrics,
                Duration::from_millis(interval_ms.max(100)),
                count,
                clear,
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    say_err!("edge-router top: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Generate {
            kind,
            count,
            seed,
            devices,
            pad,
        } => {
            use edge_router::generate::{Kind, Options, write};
            let kind = match Kind::parse(&kind) {
                Ok(k) => k,
                Err(why) => {
                    say_err!("edge-router generate: {why}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let o = Options {
                kind,
                count,
                seed,
                devices,
                pad,
            };
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            match write(&o, &mut out).and_then(|()| std::io::Write::flush(&mut out)) {
                // A reader that stops early (`| head`) is not an error.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    say_err!("edge-router generate: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Command::Reload { metrics, token } => {
            match edge_router::reload::request(&metrics, token.as_deref()) {
                Ok(summary) => {
                    say!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(why) => {
                    say_err!("edge-router reload: {why}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => match run(args) {
            Ok(code) => code,
            Err(e) => {
                say_err!("edge-router: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

mod plugin_cli {
    //! `edge-router plugin check|run`.

    use std::io::{Read, Write};
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    use anyhow::Context as _;
    use bytes::Bytes;
    use edge_router::core::accounting::Counters;
    use edge_router::core::framing::{FramerConfig, LineFramer};
    use edge_router::core::record::{Batch, Origin, PositionBase};
    use edge_router::stages::Stage;
    use edge_router::stages::wasm::{self, OnError, PluginKind, WasmStage, WasmStageConfig};

    use super::{KindArg, PluginCommand};

    pub fn run(cmd: PluginCommand) -> anyhow::Result<ExitCode> {
        match cmd {
            PluginCommand::Check { file } => {
                let info = wasm::inspect(&file)?;
                say!(
                    "{}: a component implementing {} of edge-router:plugin@0.1.0",
                    file.display(),
                    info.worlds
                        .iter()
                        .map(|w| format!("`{w}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                );
                let imports = if info.imports.is_empty() {
                    "none".to_owned()
                } else {
                    info.imports.join(", ")
                };
                say!("imports: {imports}");
                say!("exports: {}", info.exports.join(", "));
                Ok(ExitCode::SUCCESS)
            }
            PluginCommand::Run { file, config, kind } => run_plugin(file, config, kind),
        }
    }

    fn run_plugin(
        file: std::path::PathBuf,
        config: String,
        kind: Option<KindArg>,
    ) -> anyhow::Result<ExitCode> {
        serde_json::from_str::<serde_json::Value>(&config).context("--config is not valid JSON")?;
        let kind = match kind {
            Some(KindArg::Filter) => PluginKind::Filter,
            Some(KindArg::Enrich) => PluginKind::Enrich,
            Some(KindArg::Route) => PluginKind::Route,
            None => match wasm::inspect(&file)?.worlds.first().copied() {
                Some("enrich") => PluginKind::Enrich,
                Some("route") => PluginKind::Route,
                _ => PluginKind::Filter,
            },
        };
        let cfg = WasmStageConfig {
            config_json: config,
            on_error: OnError::DeadLetter,
            timeout: std::time::Duration::from_millis(1000),
            ..WasmStageConfig::defaults(file, kind)
        };
        // Route plugins: every destination name they return is accepted and printed.
        let names = wasm::destination_names(&cfg)?;
        const DEFAULT: u64 = 1 << 63;
        let counters = Arc::new(Counters::default());
        let mut stage = WasmStage::new("plugin", cfg, &names, DEFAULT, counters)?;
        let mut input = Vec::new();
        std::io::stdin()
            .read_to_end(&mut input)
            .context("reading stdin")?;
        let data = Bytes::from(input);
        let mut framer = LineFramer::new(FramerConfig {
            max_record_bytes: 64 << 20,
            skip_empty: true,
        });
        let (mut spans, mut rejected) = (Vec::new(), Vec::new());
        framer.scan(&data, true, &mut spans, &mut rejected);
        let origin = Origin {
            source: Arc::from("stdin"),
            arrival_unix_nanos: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            arrival: Instant::now(),
            position: PositionBase::Line(1),
        };
        let mut batch = Batch::new(data, spans, origin);
        let mut dead = Vec::new();
        stage.process(&mut batch, &mut dead)?;
        let mut out = std::io::stdout().lock();
        for i in 0..batch.len() {
            if kind == PluginKind::Route {
                let mask = batch
                    .routes()
                    .and_then(|r| r.get(i))
                    .copied()
                    .unwrap_or(DEFAULT);
                let name = (0..names.len())
                    .find(|n| mask & (1 << n) != 0)
                    .map_or("(default)", |n| names[n].as_str());
                write!(out, "{name}\t")?;
            }
            out.write_all(batch.payload(i))?;
            out.write_all(b"\n")?;
        }
        for d in &dead {
            let line = match d.position {
                edge_router::core::record::Position::Line(l) => format!("line {l}"),
                edge_router::core::record::Position::None => "a record".to_owned(),
            };
            say_err!("{line}: {}", d.reason);
        }
        Ok(if dead.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(4)
        })
    }
}

/// Exit status of `send` when some records were not acknowledged.
const EXIT_UNSENT: u8 = 4;

fn send(args: SendArgs) -> ExitCode {
    use edge_router::send::{self, SendOptions, Target};
    use edge_router::tls::Trust;
    let target = match Target::parse(&args.target) {
        Ok(t) => t,
        Err(e) => {
            say_err!("edge-router send: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let trust = match (&args.fingerprint, args.insecure) {
        (Some(f), _) => match edge_router::tls::parse_fingerprint(f) {
            Ok(f) => Trust::Pinned(f),
            Err(e) => {
                say_err!("edge-router send: --fingerprint: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        (None, true) => {
            tracing::warn!(
                "--insecure: the server's certificate is not checked (development only)"
            );
            Trust::Insecure
        }
        (None, false) => Trust::Roots(args.ca.clone()),
    };
    let opts = SendOptions {
        target,
        trust,
        token: args.token,
        client_identity: args.client_cert.zip(args.client_key),
        batch_records: args.batch_records as usize,
        batch_bytes: args.batch_bytes as usize,
        max_record_bytes: args.max_record_bytes as usize,
        linger: Duration::from_millis(args.linger_ms),
        in_flight: args.in_flight as usize,
        give_up_after: Duration::from_secs(args.give_up_after_secs),
        request_timeout: Duration::from_secs(args.request_timeout_secs),
        partition_key: args.partition_key,
        max_rate: args.max_rate,
    };
    let input = edge_router::sources::stdin::StdinInput::open(256 << 10);
    let summary = send::run(opts, Box::new(input));
    if args.stats {
        match serde_json::to_string(&summary) {
            Ok(j) => say_err!("{j}"),
            Err(e) => say_err!("edge-router send: stats: {e}"),
        }
    }
    let unsent = summary.unsent();
    if let Some(e) = &summary.error {
        say_err!("edge-router send: {e}");
    }
    if unsent > 0 || summary.error.is_some() {
        say_err!(
            "edge-router send: {} of {} record(s) acknowledged; {unsent} not sent",
            summary.records_acknowledged,
            summary.records_read + summary.records_too_long
        );
        return ExitCode::from(EXIT_UNSENT);
    }
    ExitCode::SUCCESS
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

fn limit_text(l: Option<u64>) -> String {
    l.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}

/// The lines `validate` prints for a bound: the total (`show` and the exact number), then one
/// line per term.
fn print_bound(title: &str, bound: &config::bound::Bound, show: impl Fn(u64) -> String) {
    say!("{title}: {} ({})", show(bound.total()), bound.total());
    for t in &bound.terms {
        say!("  {}: {} = {}", t.what, t.formula, show(t.value));
    }
}

fn validate(args: &ValidateArgs) -> ExitCode {
    match config::load_file(&args.config) {
        Ok(c) => {
            say!(
                "{}: ok ({} source(s), {} stage(s), {} sink(s))",
                args.config.display(),
                c.sources.len(),
                c.stages.len(),
                c.sinks.len()
            );
            print_bound(
                "memory bound (network sources and queues)",
                &config::bound::memory(&c),
                config::bound::human_bytes,
            );
            say!(
                "  (not counted: the process itself, plugin instances, AWS sinks' requests in flight)"
            );
            let fds = config::bound::descriptors(&c);
            print_bound("file descriptors needed at most", &fds, |n| n.to_string());
            let r = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            let fits = r.maximum.is_none_or(|hard| fds.total() <= hard);
            say!(
                "  limit here: soft {}, hard {} (`run` raises the soft limit to the hard one){}",
                limit_text(r.current),
                limit_text(r.maximum),
                if fits {
                    ""
                } else {
                    "; MORE THAN THE HARD LIMIT: raise it (ulimit -Hn, systemd LimitNOFILE=) or lower max_connections / max_open_files"
                }
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            say_err!("{errors}");
            say_err!("{}: {} problem(s)", args.config.display(), errors.0.len());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Gives each `--stage-config` to the `--stage` written just before it.
fn pair_stages(args: &RunArgs, m: &clap::ArgMatches) -> Result<Vec<config::QuickStage>, String> {
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

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
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
    rt.block_on(supervise(config, args.stats, reloader, args.watch_config))
}

async fn supervise(
    config: Config,
    stats_format: Option<StatsFormat>,
    mut reloader: Reloader,
    watch_config: bool,
) -> anyhow::Result<ExitCode> {
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::unbounded_channel();
    // Only a pipeline from a config file can be reloaded; it always has a stage thread.
    let reloadable = reloader.can_reload();
    let mut running = build::start(&config, None, reloadable)?;
    if let Some(m) = &config.metrics {
        let bound =
            edge_router::metrics::server::spawn(m, running.observer(), Some(reload_tx.clone()))
                .with_context(|| format!("metrics endpoint: cannot listen on {}", m.address))?;
        tracing::info!("metrics on http://{bound}/metrics");
    }
    let mut watch = tokio::time::interval(Duration::from_secs(1));
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut signals = 0u32;
    let mut failures: Vec<String> = Vec::new();
    let mut gave_up = false;
    // The grace period of the config running now (a reload may have changed it).
    let grace =
        |running: &build::Running| running.config().unwrap_or(&config).pipeline.shutdown_grace;
    let begin_shutdown = |running: &build::Running, deadline: &mut Option<tokio::time::Instant>| {
        running.stop();
        let grace = grace(running);
        deadline.get_or_insert_with(|| tokio::time::Instant::now() + grace);
    };
    while running.pending() > 0 {
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sigint.recv() => signals += 1,
            _ = sigterm.recv() => signals += 1,
            _ = sighup.recv() => {
                reloader.request(ReloadRequest { reply: None });
            }
            Some(request) = reload_rx.recv() => reloader.request(request),
            _ = watch.tick() => {
                allocator::collect();
                if watch_config {
                    reloader.check_file();
                }
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
            _ = sleep => {
                gave_up = true;
                break;
            }
        }
        if deadline.is_some() {
            reloader.refuse_waiting("the router is stopping");
        } else {
            reloader.start_next(&running);
        }
        if signals == 1 && deadline.is_none() {
            begin_shutdown(&running, &mut deadline);
            tracing::info!("stopping: no more input is read; draining queues and flushing sinks");
        } else if signals > 1 {
            tracing::warn!("second signal: giving up on draining");
            gave_up = true;
            break;
        }
    }
    let report = running.report();
    match stats_format {
        Some(StatsFormat::Human) => say_err!("{}", stats::human(&report)),
        Some(StatsFormat::Json) => say_err!("{}", stats::json(&report)),
        None => {}
    }
    if gave_up {
        say_err!(
            "edge-router: shutdown did not finish within {} ms; {} record(s) were read but not flushed",
            grace(&running).as_millis(),
            report.in_flight.max(0)
        );
        // Do not wait for threads that are stuck.
        std::thread::sleep(Duration::from_millis(10));
        return Ok(ExitCode::from(EXIT_UNFLUSHED));
    }
    if !failures.is_empty() {
        for f in &failures {
            say_err!("edge-router: {f}");
        }
        if report.in_flight > 0 {
            say_err!(
                "edge-router: {} record(s) were read but neither delivered nor dead-lettered",
                report.in_flight
            );
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
