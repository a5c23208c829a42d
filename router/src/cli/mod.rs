//! The command line: the arguments (clap), logging, and one module per command, each turning
//! its arguments into calls of the library and its outcome into output and an exit code.
//!
//! Output goes through `say!`/`say_err!` (defined in `main.rs`), which never panic: a closed
//! standard output or error loses text but does not stop the router.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod endpoint;
mod generate;
mod plugin;
mod run;
mod send;
mod validate;

/// Exit code for a config (or arguments) that do not validate.
const EXIT_CONFIG: u8 = 2;

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
    Run(run::RunArgs),
    /// Check a config file and report every problem with file, line, column and key.
    Validate(validate::ValidateArgs),
    /// Inspect or try out a WebAssembly stage plugin.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Live view of a running router (rates, queues, latency) from its metrics endpoint,
    /// refreshed every second.
    Top(endpoint::TopArgs),
    /// Send records from stdin (one per line) to a router over QUIC (`quic://HOST:PORT`) or
    /// HTTP(S) (`http://HOST:PORT`); exits 0 only when every record was acknowledged.
    Send(send::SendArgs),
    /// Ask a running router (started with -c FILE) to re-read its config file and plugins, over
    /// its metrics endpoint; prints what changed, or why nothing did (exit 1). Sending the
    /// router SIGHUP does the same, with the outcome in the router's log.
    Reload(endpoint::ReloadArgs),
    /// Write sample records to stdout, one per line, to try a pipeline without a data source:
    /// `sensor`, `metering`, `click` (JSON), `csv`, `syslog` (RFC 5424) or `clf` (Apache common
    /// log). The same arguments always give the same bytes.
    Generate(generate::GenerateArgs),
}

/// Parses the command line (exiting with clap's message and code on a usage error), sets up
/// logging and runs the command.
pub fn main() -> ExitCode {
    let cli = match parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(Refused::Clap(e)) => e.exit(),
        Err(Refused::Config(msg)) => {
            say_err!("edge-router: {msg}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logs(cli.log_format);
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Validate(args) => validate::validate(&args),
        Command::Plugin(cmd) => plugin::plugin(cmd),
        Command::Send(args) => send::send(args),
        Command::Top(args) => endpoint::top(args),
        Command::Reload(args) => endpoint::reload(args),
        Command::Generate(args) => generate::generate(args),
    }
}

/// Why the command line was not accepted.
#[derive(Debug)]
enum Refused {
    /// clap's usage error (or `--help`, `--version`): it prints itself and exits.
    Clap(clap::Error),
    /// Arguments clap accepted that do not fit together (exit [`EXIT_CONFIG`]).
    Config(String),
}

/// The command line as [`Cli`]: clap's parse, then what clap cannot check itself (which
/// `--stage` each `--stage-config` belongs to).
fn parse<I, T>(args: I) -> Result<Cli, Refused>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = <Cli as clap::CommandFactory>::command()
        .try_get_matches_from(args)
        .map_err(Refused::Clap)?;
    let mut cli =
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches).map_err(Refused::Clap)?;
    if let (Command::Run(args), Some(m)) = (&mut cli.command, matches.subcommand_matches("run")) {
        args.stages = run::pair_stages(args, m).map_err(Refused::Config)?;
    }
    Ok(cli)
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGE_ROUTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A log line that cannot be written is dropped: with internal errors logged, tracing
    // would report it with `eprintln!`, which panics on a closed standard error.
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_env_filter(filter);
    match format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(args: &[&str]) -> Cli {
        parse(std::iter::once("edge-router").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e:?}"))
    }

    fn refused(args: &[&str]) -> Refused {
        match parse(std::iter::once("edge-router").chain(args.iter().copied())) {
            Ok(_) => panic!("{args:?} accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn the_definitions_are_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn each_stage_config_goes_to_the_stage_before_it() {
        let cli = parse_ok(&[
            "run",
            "--stage",
            "filter=a.wasm",
            "--stage-config",
            "{\"a\":1}",
            "--stage",
            "enrich=b.wasm",
            "--stage",
            "route=c.wasm",
            "--stage-config",
            "{\"c\":3}",
        ]);
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let got: Vec<(&str, Option<&str>)> = args
            .stages
            .iter()
            .map(|s| (s.spec.as_str(), s.config.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("filter=a.wasm", Some("{\"a\":1}")),
                ("enrich=b.wasm", None),
                ("route=c.wasm", Some("{\"c\":3}")),
            ]
        );
    }

    #[test]
    fn a_stage_config_without_its_stage_is_refused() {
        for (args, want) in [
            (
                &["run", "--stage-config", "{}", "--stage", "filter=x.wasm"][..],
                "--stage-config \"{}\" must follow the --stage it configures",
            ),
            (
                &[
                    "run",
                    "--stage",
                    "filter=x.wasm",
                    "--stage-config",
                    "{}",
                    "--stage-config",
                    "{}",
                ][..],
                "--stage \"filter=x.wasm\" has more than one --stage-config",
            ),
        ] {
            match refused(args) {
                Refused::Config(msg) => assert_eq!(msg, want),
                Refused::Clap(e) => panic!("{args:?}: clap refused it: {e}"),
            }
        }
    }

    #[test]
    fn clap_checks_what_goes_together() {
        use clap::error::ErrorKind;
        for (args, kind) in [
            (
                &["run", "--watch-config"][..],
                ErrorKind::MissingRequiredArgument,
            ),
            (
                &["run", "-c", "x.toml", "--sink", "stdout"][..],
                ErrorKind::ArgumentConflict,
            ),
            (&["run", "--stats=xml"][..], ErrorKind::InvalidValue),
            (
                &["send", "quic://h:1", "--fingerprint", "ab", "--insecure"][..],
                ErrorKind::ArgumentConflict,
            ),
            (
                &["send", "quic://h:1", "--client-cert", "c.pem"][..],
                ErrorKind::MissingRequiredArgument,
            ),
            (
                &["send", "quic://h:1", "--in-flight", "0"][..],
                ErrorKind::ValueValidation,
            ),
        ] {
            match refused(args) {
                Refused::Clap(e) => assert_eq!(e.kind(), kind, "{args:?}: {e}"),
                Refused::Config(msg) => panic!("{args:?}: {msg}"),
            }
        }
    }

    #[test]
    fn run_options_reach_the_run_arguments() {
        let cli = parse_ok(&[
            "--log-format",
            "json",
            "run",
            "-c",
            "p.toml",
            "--watch-config",
            "--stats=json",
            "--metrics",
            "127.0.0.1:9598",
        ]);
        assert!(cli.log_format == LogFormat::Json);
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.config.as_deref(), Some(std::path::Path::new("p.toml")));
        assert!(args.watch_config);
        assert!(matches!(args.stats, Some(run::StatsFormat::Json)));
        assert_eq!(args.metrics, Some("127.0.0.1:9598".parse().unwrap()));
        // `--stats` alone is the table.
        let Command::Run(args) = parse_ok(&["run", "--stats"]).command else {
            panic!("not run")
        };
        assert!(matches!(args.stats, Some(run::StatsFormat::Human)));
    }
}
