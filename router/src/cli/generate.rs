//! `edge-router generate KIND COUNT`: sample records on stdout, the same bytes for the same
//! arguments.

use std::process::ExitCode;

use edge_router::generate::{Kind, Options, write};

use super::EXIT_CONFIG;

#[derive(clap::Args)]
pub(super) struct GenerateArgs {
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
}

pub(super) fn generate(args: GenerateArgs) -> ExitCode {
    let kind = match Kind::parse(&args.kind) {
        Ok(k) => k,
        Err(why) => {
            say_err!("edge-router generate: {why}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let o = Options {
        kind,
        count: args.count,
        seed: args.seed,
        devices: args.devices,
        pad: args.pad,
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
