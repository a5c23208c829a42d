//! Sources: where records enter the router. Each source reads, frames and passes batches to its
//! [`crate::topology::Outlet`] (stdin) or into the shared ingress queue (network sources, which
//! must know when a batch was accepted); sources never know which sinks exist.

pub mod http;

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
pub mod quic;
pub mod stdin;
