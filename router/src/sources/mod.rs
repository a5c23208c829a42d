//! Sources: where records enter the router. Each source reads, frames and passes batches to its
//! [`crate::topology::Outlet`]; sources never know which sinks exist.

pub mod stdin;
