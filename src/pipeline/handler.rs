//! The chunking handler: one task receives every change from every listener through a bounded
//! channel, closes batches (`chunker`), collates them, hands them to the sinks in order, records
//! flush timings, and only then tells each listener how far its changes were flushed.
//!
//! Sinks write with blocking I/O (a pipe on stdout may stall for as long as its reader wants),
//! so a batch is flushed on tokio's blocking pool while the runtime keeps streaming: the
//! replication connections go on answering the server, and changes queue up (bounded) for the
//! next batch. Batches are flushed one at a time, in order.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::change::{Change, Note};
use crate::pipeline::chunker::Chunker;
use crate::pipeline::collate::{Batch, Packet, collate};
use crate::pipeline::log_ring::LogRing;
use crate::pipeline::sinks::{Sink, SinkError};
use crate::pipeline::timings::{BatchTiming, FlushTimings};
use crate::registry::ListenerHandle;

/// Where listeners send their changes. Bounded: a full queue makes the sender wait, which
/// slows the source down instead of growing memory.
pub type ChangeSender = mpsc::Sender<Captured>;

/// A change (or a note among the changes) on its way to the handler, with the listener the
/// handler counts and acknowledges it through (the change itself names its listener only).
#[derive(Debug, Clone)]
pub struct Captured {
    pub listener: Arc<ListenerHandle>,
    pub item: Item,
}

#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "changes are nearly every item: boxing them would cost an allocation each"
)]
pub enum Item {
    Change(Change),
    /// Boxed: notes are rare, and changes should not pay for their size.
    Note(Box<Note>),
}

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
    flusher: Flusher,
}

/// Everything a flush touches, moved to the blocking pool and back for each batch.
struct Flusher {
    sinks: Vec<Box<dyn Sink>>,
    timings: Arc<FlushTimings>,
    log: Arc<LogRing>,
}

impl Handler {
    pub fn new(config: HandlerConfig, sinks: Vec<Box<dyn Sink>>) -> (Handler, ChangeSender) {
        let (sender, receiver) = mpsc::channel(config.queue_capacity());
        let handler = Handler {
            chunker: Chunker::new(receiver, config.chunk_size, config.timeout),
            flusher: Flusher {
                sinks,
                timings: Arc::new(FlushTimings::new()),
                log: Arc::new(LogRing::new(config.log_capacity)),
            },
        };
        (handler, sender)
    }

    pub fn timings(&self) -> Arc<FlushTimings> {
        self.flusher.timings.clone()
    }

    pub fn log(&self) -> Arc<LogRing> {
        self.flusher.log.clone()
    }

    /// Runs until every sender is dropped and the last batch is flushed. A sink error ends the
    /// run at once and acknowledges nothing of that batch. Returns the number of batches.
    ///
    /// While a batch is flushed the next one is gathered; it is handed over once the flush
    /// before it is done.
    pub async fn run(self) -> Result<u64, SinkError> {
        let Handler {
            mut chunker,
            flusher,
        } = self;
        // `None` while its flush is in flight.
        let mut flusher = Some(flusher);
        let mut in_flight: Option<Flush> = None;
        let mut number = 0;
        loop {
            let chunk = {
                let next = chunker.next_chunk();
                tokio::pin!(next);
                loop {
                    tokio::select! {
                        chunk = &mut next => break chunk,
                        done = finished(&mut in_flight) => flusher = Some(done?),
                    }
                }
            };
            let Some(chunk) = chunk else { break };
            number += 1;
            let (changes, notes, packets) = collate(chunk.changes);
            let batch = Batch {
                number,
                packets,
                changes,
                notes,
                waited: chunk.waited,
            };
            // Exactly one of the two holds the flusher.
            let mut idle = match flusher.take() {
                Some(idle) => idle,
                None => finished(&mut in_flight).await?,
            };
            in_flight = Some(tokio::task::spawn_blocking(move || {
                let result = idle.flush(batch);
                (idle, result)
            }));
        }
        if in_flight.is_some() {
            finished(&mut in_flight).await?;
        }
        Ok(number)
    }
}

/// A batch being flushed on the blocking pool.
type Flush = tokio::task::JoinHandle<(Flusher, Result<(), SinkError>)>;

/// Waits for the flush in flight (forever when there is none) and takes it. A sink that
/// panicked takes the handler with it: nothing of its batch is acknowledged.
async fn finished(in_flight: &mut Option<Flush>) -> Result<Flusher, SinkError> {
    let Some(flush) = in_flight else {
        return std::future::pending().await;
    };
    let (flusher, result) = flush
        .await
        .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
    *in_flight = None;
    result.map(|()| flusher)
}

impl Flusher {
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
            packet
                .listener
                .count_table(&packet.table, packet.op, packet.count as u64);
        }
        // One acknowledgement per listener, at its first packet with its highest sequence
        // number of the batch: one wake-up (and one position saved) per batch, not per op.
        for (at, packet) in batch.packets.iter().enumerate() {
            let same = |other: &Packet| Arc::ptr_eq(&other.listener, &packet.listener);
            if batch.packets[..at].iter().any(same) {
                continue;
            }
            let highest = batch.packets[at..]
                .iter()
                .filter(|p| same(p))
                .map(|p| p.last_seq);
            packet
                .listener
                .acknowledge_flushed(highest.max().unwrap_or(packet.last_seq));
        }
        self.log.extend_with_notes(batch.changes, batch.notes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::change::{ChangeEvent, Op, Row};
    use crate::config::ListenerConfig;
    use crate::registry::{ListenerHandle, Registry};

    /// Records what the sinks were handed: per batch, (listener, op, seq) of each change and
    /// the packets as (listener, op, count).
    #[derive(Clone, Default)]
    struct RecordingSink(Arc<Mutex<Vec<RecordedBatch>>>);

    #[derive(Debug, Clone, PartialEq)]
    struct RecordedBatch {
        number: u64,
        changes: Vec<(String, Op, u64)>,
        packets: Vec<(String, Op, usize)>,
    }

    impl Sink for RecordingSink {
        fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
            self.0.lock().unwrap().push(RecordedBatch {
                number: batch.number,
                changes: batch
                    .changes
                    .iter()
                    .map(|c| (c.identity().to_string(), c.op, c.seq))
                    .collect(),
                packets: batch
                    .packets
                    .iter()
                    .map(|p| (p.listener.identity().to_string(), p.op, p.count))
                    .collect(),
            });
            Ok(())
        }
    }

    impl RecordingSink {
        fn batches(&self) -> Vec<RecordedBatch> {
            self.0.lock().unwrap().clone()
        }
    }

    fn listener(registry: &Registry, identifier: &str) -> Arc<ListenerHandle> {
        registry
            .add(ListenerConfig::new(
                identifier, "shop", "public.t", "polling",
            ))
            .unwrap()
    }

    fn change(listener: &Arc<ListenerHandle>, seq: u64, op: Op) -> Captured {
        let event = ChangeEvent {
            table: "public.t".into(),
            op,
            key: Row::from_json(json!({"id": seq})),
            old_key: None,
            before: None,
            after: Row::from_json(json!({"id": seq})),
            extensions: Default::default(),
            position: seq.to_string().into(),
            commit_time: None,
            tx: None,
        };
        Captured {
            listener: listener.clone(),
            item: Item::Change(Change {
                listener: listener.identity_arc(),
                seq,
                captured_at: Utc::now(),
                event,
            }),
        }
    }

    fn start(
        chunk_size: usize,
        timeout_ms: u64,
    ) -> (RecordingSink, ChangeSender, Arc<FlushTimings>) {
        let sink = RecordingSink::default();
        let config = HandlerConfig {
            chunk_size,
            timeout: Duration::from_millis(timeout_ms),
            log_capacity: 100,
        };
        let (handler, sender) = Handler::new(config, vec![Box::new(sink.clone())]);
        let timings = handler.timings();
        tokio::spawn(handler.run());
        (sink, sender, timings)
    }

    /// Lets the spawned handler run until it waits again (paused time: no time passes).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// Waits until a listener learns that its changes up to `seq` were flushed: a batch is
    /// flushed on the blocking pool, a moment after the handler closed it, and acknowledged
    /// last (paused time stays put meanwhile: a blocking task holds it still).
    async fn flushed(listener: &ListenerHandle, seq: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let flushed = listener.subscribe_flushed();
        while *flushed.borrow() < seq {
            assert!(
                std::time::Instant::now() < deadline,
                "changes up to {seq} were not flushed"
            );
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(1));
        }
        settle().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_batch_flushes_timeout_after_its_first_change() {
        let registry = Registry::new();
        let orders = listener(&registry, "orders");
        let (sink, sender, timings) = start(100, 200);

        sender.send(change(&orders, 1, Op::Insert)).await.unwrap();
        settle().await;
        tokio::time::advance(Duration::from_millis(150)).await;
        sender.send(change(&orders, 2, Op::Insert)).await.unwrap();
        settle().await;
        tokio::time::advance(Duration::from_millis(49)).await;
        settle().await;
        assert!(
            sink.batches().is_empty(),
            "199 ms after the first change: still open"
        );

        tokio::time::advance(Duration::from_millis(1)).await;
        flushed(&orders, 2).await;
        let batches = sink.batches();
        assert_eq!(batches.len(), 1, "200 ms after the first change: flushed");
        assert_eq!(batches[0].changes.len(), 2);
        assert_eq!(timings.snapshot().waited_ms.max.round(), 200.0);
        assert_eq!(*orders.subscribe_flushed().borrow(), 2);
        assert_eq!(orders.snapshot().counts.get(Op::Insert), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_flushes_at_once_and_never_exceeds_chunk_size() {
        let registry = Registry::new();
        let orders = listener(&registry, "orders");
        let (sink, sender, _) = start(3, 200);
        for seq in 1..=7 {
            sender.send(change(&orders, seq, Op::Insert)).await.unwrap();
        }
        flushed(&orders, 6).await;
        let sizes: Vec<usize> = sink.batches().iter().map(|b| b.changes.len()).collect();
        assert_eq!(
            sizes,
            vec![3, 3],
            "two full batches without any time passing"
        );
        tokio::time::advance(Duration::from_millis(200)).await;
        flushed(&orders, 7).await;
        let batches = sink.batches();
        let sizes: Vec<usize> = batches.iter().map(|b| b.changes.len()).collect();
        assert_eq!(sizes, vec![3, 3, 1]);
        assert_eq!(
            batches.iter().map(|b| b.number).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_mixed_batch_keeps_every_op_and_each_listeners_order() {
        let registry = Registry::new();
        let orders = listener(&registry, "orders");
        let items = listener(&registry, "items");
        let (sink, sender, _) = start(10, 200);
        let sent = [
            (&orders, 1, Op::Insert),
            (&items, 1, Op::Insert),
            (&orders, 2, Op::Update),
            (&orders, 3, Op::Insert),
            (&items, 2, Op::Delete),
            (&orders, 4, Op::Truncate),
        ];
        for (listener, seq, op) in sent {
            sender.send(change(listener, seq, op)).await.unwrap();
        }
        drop(sender);
        flushed(&orders, 4).await;
        flushed(&items, 2).await;
        let batches = sink.batches();
        assert_eq!(
            batches.len(),
            1,
            "closing the channel flushes the last batch"
        );
        let order: Vec<(String, Op, u64)> = sent
            .iter()
            .map(|(l, seq, op)| (l.identity().to_string(), *op, *seq))
            .collect();
        assert_eq!(batches[0].changes, order, "arrival order is kept");
        let o = "orders/public.t".to_string();
        let i = "items/public.t".to_string();
        assert_eq!(
            batches[0].packets,
            vec![
                (o.clone(), Op::Insert, 2),
                (i.clone(), Op::Insert, 1),
                (o.clone(), Op::Update, 1),
                (i.clone(), Op::Delete, 1),
                (o.clone(), Op::Truncate, 1),
            ],
            "one packet per (listener, table, op), none labelled by another's op"
        );
        assert_eq!(*orders.subscribe_flushed().borrow(), 4);
        assert_eq!(*items.subscribe_flushed().borrow(), 2);
    }

    struct FailingSink;

    impl Sink for FailingSink {
        fn write_batch(&mut self, _batch: &Batch) -> Result<(), SinkError> {
            Err(SinkError {
                sink: "failing",
                source: std::io::Error::other("disk full"),
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_sink_acknowledges_nothing() {
        let registry = Registry::new();
        let orders = listener(&registry, "orders");
        let config = HandlerConfig {
            chunk_size: 1,
            timeout: Duration::from_millis(200),
            log_capacity: 10,
        };
        let (handler, sender) = Handler::new(config, vec![Box::new(FailingSink)]);
        let run = tokio::spawn(handler.run());
        sender.send(change(&orders, 1, Op::Insert)).await.unwrap();
        let error = run.await.unwrap().unwrap_err();
        assert!(error.to_string().contains("disk full"));
        assert_eq!(*orders.subscribe_flushed().borrow(), 0);
        assert_eq!(orders.snapshot().counts.total(), 0);
    }
}
