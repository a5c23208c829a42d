//! `edge-router send URI`: records from stdin to a router over QUIC or HTTP(S); the exit code
//! says whether every record was acknowledged.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::EXIT_CONFIG;

#[derive(clap::Args)]
pub(super) struct SendArgs {
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

/// Exit status of `send` when some records were not acknowledged.
const EXIT_UNSENT: u8 = 4;

pub(super) fn send(args: SendArgs) -> ExitCode {
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
