//! The running pipeline: bounded queues between components, fan-out to sinks, and shutdown.
//!
//! [`build::start`] turns a validated [`crate::config::Config`] into threads joined by bounded
//! [`crate::queue`]s: source -> (stages) -> one queue per sink, plus the dead-letter queue. Sources hand
//! batches to an [`Outlet`]; with no stages the outlet is the [`Dispatcher`] itself, which saves a
//! hop. Shutdown is by closing: when a source ends it drops its outlet, the stage thread sees its
//! queue close, drops the dispatcher, each sink drains and closes, and the dead-letter sink ends
//! last.

pub mod build;

use std::sync::Arc;

use crate::core::accounting::Counters;
use crate::core::dead_letter::DeadLetter;
use crate::core::record::Batch;
use crate::queue::{self, Sender, Weighed};

impl Weighed for Batch {
    fn records(&self) -> u64 {
        self.len() as u64
    }
    fn bytes(&self) -> u64 {
        self.retained_bytes()
    }
}

/// A group of dead letters sent together.
#[derive(Debug)]
pub struct DeadLetters(pub Vec<DeadLetter>);

impl Weighed for DeadLetters {
    fn records(&self) -> u64 {
        self.0.len() as u64
    }
    fn bytes(&self) -> u64 {
        self.0.iter().map(|d| d.payload.len() as u64 + 128).sum()
    }
}

/// The dead-letter sink is gone (it failed); records can no longer be reported.
#[derive(Debug, thiserror::Error)]
#[error("the dead-letter sink is not accepting records ({0} records could not be reported)")]
pub struct DeadLetterClosed(pub usize);

/// Sends dead letters to the dead-letter sink.
#[derive(Clone)]
pub struct DeadLetterTx {
    tx: Sender<DeadLetters>,
}

impl DeadLetterTx {
    /// Wraps the dead-letter queue's sending end.
    pub fn new(tx: Sender<DeadLetters>) -> DeadLetterTx {
        DeadLetterTx { tx }
    }

    /// Sends `letters`, counting them as dead-lettered by the component owning `counters`.
    /// Waits while the dead-letter queue is full.
    pub fn send(
        &self,
        letters: Vec<DeadLetter>,
        counters: &Counters,
    ) -> Result<(), DeadLetterClosed> {
        if letters.is_empty() {
            return Ok(());
        }
        let n = letters.len();
        match self.tx.blocking_send(DeadLetters(letters)) {
            Ok(()) => {
                counters.add_dead_lettered(n as u64);
                Ok(())
            }
            Err(_) => Err(DeadLetterClosed(n)),
        }
    }
}

/// One sink as the dispatcher sees it.
pub struct SinkPort {
    /// Config name of the sink.
    pub name: Arc<str>,
    /// Its queue.
    pub tx: Sender<Batch>,
    /// Its counters (the dispatcher counts records into the sink).
    pub counters: Arc<Counters>,
}

/// Where one sink's port comes from after a reload (see [`Dispatcher::rewire`]).
pub enum PortPlan {
    /// The running sink of this name, unchanged.
    Keep(Arc<str>),
    /// A new sink (added, or replacing one whose config changed).
    New(SinkPort),
}

/// Sends each record to the sinks it is routed to.
pub struct Dispatcher {
    sinks: Vec<SinkPort>,
    default_mask: u64,
    counters: Arc<Counters>,
    dead: DeadLetterTx,
}

impl Dispatcher {
    /// A dispatcher over `sinks` (bit `n` of a route mask is `sinks[n]`); records without a
    /// route go to the sinks in `default_mask`.
    pub fn new(
        sinks: Vec<SinkPort>,
        default_mask: u64,
        counters: Arc<Counters>,
        dead: DeadLetterTx,
    ) -> Dispatcher {
        Dispatcher {
            sinks,
            default_mask,
            counters,
            dead,
        }
    }

    /// The sinks of records without a route.
    pub fn default_mask(&self) -> u64 {
        self.default_mask
    }

    /// Queues the batch's records into their sinks' queues, waiting while a queue is full (this
    /// is the backpressure a slow sink exerts). Records for a sink that has failed are
    /// dead-lettered.
    pub fn dispatch(&self, mut batch: Batch) -> Result<(), DeadLetterClosed> {
        if batch.is_empty() {
            return Ok(());
        }
        let routes = batch.routes().map(<[u64]>::to_vec);
        batch.clear_routes();
        let Some(routes) = routes else {
            return self.dispatch_all(batch, self.default_mask);
        };
        let union = routes.iter().fold(0u64, |a, m| a | m);
        let copies: u64 = routes
            .iter()
            .map(|m| u64::from(m.count_ones().saturating_sub(1)))
            .sum();
        self.counters.add_fanout_copies(copies);
        if routes.iter().all(|&m| m == union) {
            // Every record goes to the same sinks: share the whole batch.
            return self.send_to_mask(batch, union);
        }
        for (n, port) in self.sinks.iter().enumerate() {
            let bit = 1u64 << n;
            if union & bit == 0 {
                continue;
            }
            let idx: Vec<usize> = (0..routes.len())
                .filter(|&i| routes[i] & bit != 0)
                .collect();
            self.send_one(port, batch.select(&idx))?;
        }
        Ok(())
    }

    /// The dispatcher for a reloaded sink list: `plan[n]` says where sink `n`'s port comes
    /// from (kept from this dispatcher by name, or new). Ports of sinks the plan does not keep
    /// are dropped, which closes their queues: those sinks drain what they hold and end.
    pub fn rewire(self, plan: Vec<PortPlan>, default_mask: u64) -> Dispatcher {
        let mut old: Vec<Option<SinkPort>> = self.sinks.into_iter().map(Some).collect();
        let sinks = plan
            .into_iter()
            .map(|p| match p {
                PortPlan::New(port) => port,
                PortPlan::Keep(name) => old
                    .iter_mut()
                    .find(|o| o.as_ref().is_some_and(|o| o.name == name))
                    .and_then(Option::take)
                    .unwrap_or_else(|| {
                        // Cannot happen (the reloader mirrors this list); a port whose queue is
                        // closed keeps the indices right and dead-letters what it is given.
                        tracing::error!(
                            "internal error: reload kept sink `{name}`, which is not running"
                        );
                        let (tx, _) = queue::queue(queue::Limits {
                            records_max: 1,
                            bytes_max: 1,
                        });
                        SinkPort {
                            name,
                            tx,
                            counters: Arc::new(Counters::default()),
                        }
                    }),
            })
            .collect();
        Dispatcher {
            sinks,
            default_mask,
            counters: self.counters,
            dead: self.dead,
        }
    }

    fn dispatch_all(&self, batch: Batch, mask: u64) -> Result<(), DeadLetterClosed> {
        let copies = u64::from(mask.count_ones().saturating_sub(1)) * batch.len() as u64;
        self.counters.add_fanout_copies(copies);
        self.send_to_mask(batch, mask)
    }

    fn send_to_mask(&self, batch: Batch, mask: u64) -> Result<(), DeadLetterClosed> {
        let targets: Vec<&SinkPort> = self
            .sinks
            .iter()
            .enumerate()
            .filter(|(n, _)| mask & (1u64 << n) != 0)
            .map(|(_, p)| p)
            .collect();
        let last = targets.len().saturating_sub(1);
        let mut batch = Some(batch);
        for (i, port) in targets.into_iter().enumerate() {
            let b = if i == last {
                batch.take()
            } else {
                batch.clone()
            };
            if let Some(b) = b {
                self.send_one(port, b)?;
            }
        }
        Ok(())
    }

    fn send_one(&self, port: &SinkPort, batch: Batch) -> Result<(), DeadLetterClosed> {
        let (n, bytes) = (batch.len() as u64, batch.payload_bytes());
        port.counters.add_in(n, bytes);
        if let Err(queue::Closed(batch)) = port.tx.blocking_send(batch) {
            let reason = format!("sink `{}` is not accepting records (it failed)", port.name);
            self.dead.send(
                DeadLetter::from_whole_batch(&batch, &reason),
                &port.counters,
            )?;
        }
        Ok(())
    }
}

/// Where a source puts its batches: the stage queue, or straight into the sinks when there are
/// no stages.
pub enum Outlet {
    /// The queue in front of the stage thread.
    Stages(Sender<Batch>),
    /// No stages: dispatch to the sinks directly.
    Sinks(Dispatcher),
}

impl Outlet {
    /// Passes a batch on, waiting while the next queue is full. If the stage thread is gone
    /// (it failed), the records are dead-lettered against `counters`.
    pub fn emit(
        &self,
        batch: Batch,
        dead: &DeadLetterTx,
        counters: &Counters,
    ) -> Result<(), DeadLetterClosed> {
        match self {
            Outlet::Stages(tx) => match tx.blocking_send(batch) {
                Ok(()) => Ok(()),
                Err(queue::Closed(batch)) => {
                    let reason = "the stage thread stopped; record not processed";
                    dead.send(DeadLetter::from_whole_batch(&batch, reason), counters)
                }
            },
            Outlet::Sinks(d) => d.dispatch(batch),
        }
    }
}
