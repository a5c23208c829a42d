//! The commands that talk to a running router's metrics endpoint: `edge-router top` (a live
//! view) and `edge-router reload` (reload its config file).

use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub(super) struct TopArgs {
    /// The router's metrics address (`run --metrics IP:PORT` or `[metrics] address`).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:9598")]
    metrics: String,
    /// Refresh interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Stop after this many views (default: until interrupted).
    #[arg(long)]
    count: Option<u64>,
}

#[derive(clap::Args)]
pub(super) struct ReloadArgs {
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
}

pub(super) fn top(args: TopArgs) -> ExitCode {
    use std::io::IsTerminal;
    let clear = std::io::stdout().is_terminal();
    match edge_router::metrics::top::run(
        &args.metrics,
        Duration::from_millis(args.interval_ms.max(100)),
        args.count,
        clear,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say_err!("edge-router top: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn reload(args: ReloadArgs) -> ExitCode {
    match edge_router::reload::request(&args.metrics, args.token.as_deref()) {
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
