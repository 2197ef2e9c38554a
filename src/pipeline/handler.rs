//! The chunking handler: one task receives every change from every listener through a bounded
//! channel, closes batches (`chunker`), collates them, hands them to the sinks in order, records
//! flush timings, and only then tells each listener how far its changes were flushed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::change::Change;
use crate::pipeline::chunker::Chunker;
use crate::pipeline::collate::{Batch, collate};
use crate::pipeline::log_ring::LogRing;
use crate::pipeline::sinks::{Sink, SinkError};
use crate::pipeline::timings::{BatchTiming, FlushTimings};

/// Where listeners send their changes. Bounded: a full queue makes the sender wait, which
/// slows the source down instead of growing memory.
pub type ChangeSender = mpsc::Sender<Change>;

#[derive(Debug, Clone, Copy)]
pub struct HandlerConfig {
    pub chunk_size: usize,
    pub timeout: Duration,
    pub log_capacity: usize,
}

impl HandlerConfig {
    pub fn from_pipeline(pipeline: &crate::config::PipelineConfig) -> Self {
        HandlerConfig {
            chunk_size: pipeline.chunk_size,
            timeout: Duration::from_millis(pipeline.timeout_ms),
            log_capacity: pipeline.log_capacity,
        }
    }

    /// A few batches of room: enough to keep the handler busy while a source reads on.
    fn queue_capacity(&self) -> usize {
        (self.chunk_size * 4).clamp(256, 16_384)
    }
}

pub struct Handler {
    chunker: Chunker,
    sinks: Vec<Box<dyn Sink>>,
    timings: Arc<FlushTimings>,
    log: Arc<LogRing>,
}

impl Handler {
    pub fn new(config: HandlerConfig, sinks: Vec<Box<dyn Sink>>) -> (Handler, ChangeSender) {
        let (sender, receiver) = mpsc::channel(config.queue_capacity());
        let handler = Handler {
            chunker: Chunker::new(receiver, config.chunk_size, config.timeout),
            sinks,
            timings: Arc::new(FlushTimings::new()),
            log: Arc::new(LogRing::new(config.log_capacity)),
        };
        (handler, sender)
    }

    pub fn timings(&self) -> Arc<FlushTimings> {
        self.timings.clone()
    }

    pub fn log(&self) -> Arc<LogRing> {
        self.log.clone()
    }

    /// Runs until every sender is dropped and the last batch is flushed. A sink error ends the
    /// run and acknowledges nothing of that batch. Returns the number of batches.
    pub async fn run(mut self) -> Result<u64, SinkError> {
        let mut number = 0;
        while let Some(chunk) = self.chunker.next_chunk().await {
            number += 1;
            let batch = Batch {
                number,
                packets: collate(&chunk.changes),
                changes: chunk.changes,
                waited: chunk.waited,
            };
            self.flush(batch)?;
        }
        Ok(number)
    }

    fn flush(&mut self, batch: Batch) -> Result<(), SinkError> {
        let started = Instant::now();
        for sink in &mut self.sinks {
            sink.write_batch(&batch)?;
        }
        let timing = BatchTiming {
            number: batch.number,
            changes: batch.changes.len(),
            waited: batch.waited,
            flush: started.elapsed(),
        };
        for sink in &mut self.sinks {
            sink.batch_flushed(&batch, &timing)?;
        }
        self.timings.record(timing);
        for packet in &batch.packets {
            packet
                .listener
                .count_flushed(packet.op, packet.count as u64);
            packet.listener.acknowledge_flushed(packet.last_seq);
        }
        self.log.extend(batch.changes);
        Ok(())
    }
}
