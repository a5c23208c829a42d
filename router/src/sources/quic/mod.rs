//! The QUIC source: producers (`edge-router send`, or any client speaking the ALPN
//! `edge-router/1`) push batches of records over QUIC. This module owns the wire protocol
//! ([`protocol`]: the frame codec) and the per-session sequencing that gives ordering and
//! exactly-once delivery within one router process ([`session`]: the server's session table and
//! the client's outbox), both pure code without I/O, clocks or threads, and the quinn server
//! that drives them over sockets ([`server`]).

pub mod config;
pub mod protocol;
pub mod server;
pub mod session;

pub use config::QuicSourceConfig;
pub use server::QuicSource;
