//! Sources: where records enter the router. Each source reads, frames and passes batches to its
//! [`crate::topology::Outlet`] (stdin) or into the shared ingress queue (network sources, which
//! must know when a batch was accepted); sources never know which sinks exist.

pub mod guard;
pub mod http;

use std::sync::Arc;

use crate::config::reader::{Diagnostics, Section};
use crate::core::record::{Batch, Hold};

/// When a network source tells its client that records were accepted (the `ack` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckMode {
    /// Once they are in the pipeline's ingress queue (fastest; lost if the process dies
    /// before the sinks have them).
    #[default]
    Queued,
    /// Once every sink they go to has them safe: in its disk buffer, or delivered for a sink
    /// without one (filtered and dead-lettered records count as done). With disk buffers this
    /// survives a crash of the router.
    Durable,
    /// Once every sink they go to has delivered them (or they were dead-lettered, filtered, or
    /// deleted by a full disk buffer with `when_full = "drop_oldest"`), disk buffer or not.
    Delivered,
}

impl AckMode {
    /// Reads the `ack` key (`"queued"`, `"durable"` or `"delivered"`).
    pub fn parse(s: &mut Section<'_>, d: &mut Diagnostics) -> AckMode {
        match s.choice(d, "ack", &["queued", "durable", "delivered"], "queued") {
            "durable" => AckMode::Durable,
            "delivered" => AckMode::Delivered,
            _ => AckMode::Queued,
        }
    }

    /// Puts a [`Hold`] on `batch` for modes that wait, and returns what completes when the
    /// records are safe (`None` for [`AckMode::Queued`]).
    pub fn hold(self, batch: Batch) -> (Batch, Option<tokio::sync::oneshot::Receiver<()>>) {
        if self == AckMode::Queued {
            return (batch, None);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let hold = Hold {
            token: Arc::new(Safe(Some(tx))),
            until_delivered: self == AckMode::Delivered,
        };
        (batch.with_hold(hold), Some(rx))
    }
}

/// Completes its receiver when dropped: the last batch holding it is done with.
struct Safe(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for Safe {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs `serve` on a multi-thread tokio runtime of `workers` threads named `PREFIX-NAME`, then
/// gives its leftover tasks 100 ms to end: the network sources' thread body. `Err` is the
/// runtime failing to start.
pub fn run_on_runtime<T>(
    prefix: &str,
    name: &str,
    workers: usize,
    serve: impl std::future::Future<Output = T>,
) -> std::io::Result<T> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(
            format!("{prefix}-{name}")
                .chars()
                .take(15)
                .collect::<String>(),
        )
        .enable_all()
        .build()?;
    let result = rt.block_on(serve);
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(result)
}
pub mod file;
pub mod quic;
pub mod stdin;
