//! `edge-router validate -c FILE`: every problem of a config with its position, or what the
//! config needs at most (memory, file descriptors) against the limits here.

use std::path::PathBuf;
use std::process::ExitCode;

use edge_router::config;

use super::EXIT_CONFIG;
use super::run::limit_text;

#[derive(clap::Args)]
pub(super) struct ValidateArgs {
    /// Config file (TOML).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
}

/// The lines `validate` prints for a bound: the total (`show` and the exact number), then one
/// line per term.
fn print_bound(title: &str, bound: &config::bound::Bound, show: impl Fn(u64) -> String) {
    say!("{title}: {} ({})", show(bound.total()), bound.total());
    for t in &bound.terms {
        say!("  {}: {} = {}", t.what, t.formula, show(t.value));
    }
}

pub(super) fn validate(args: &ValidateArgs) -> ExitCode {
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
                "memory bound (sources and queues)",
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
