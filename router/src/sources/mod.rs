//! Sources: where records enter the router. Each source reads, frames and passes batches to its
//! [`crate::topology::Outlet`] (stdin) or into the shared ingress queue (network sources, which
//! must know when a batch was accepted); sources never know which sinks exist.

pub mod http;
pub mod quic;
pub mod stdin;
