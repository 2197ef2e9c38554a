//! The one chunking handler every change goes through: batches (`chunker`), packets per
//! (listener, table, op) (`collate`), sinks, flush timings and the event log the UI reads.

pub mod chunker;
pub mod collate;
pub mod handler;
pub mod log_ring;
pub mod sinks;
pub mod timings;

pub use collate::{Batch, Packet};
pub use handler::{Captured, ChangeSender, Handler, HandlerConfig, Item};
pub use log_ring::LogRing;
pub use sinks::{Sink, SinkError};
pub use timings::{FlushTimings, TimingsSnapshot};
