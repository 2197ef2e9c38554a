//! Sinks take each flushed batch: JSON lines on stdout (headless) and to a file (`[sinks] jsonl`).
//! Sinks are synchronous: a batch is one buffered write, so there is nothing to await. The
//! NATS sink (`[sinks.nats]`, in `nats`) drives its async client from the blocking pool.

pub mod nats;

use std::io::{self, Write};

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};

use crate::pipeline::collate::{Batch, Packet};
use crate::pipeline::timings::BatchTiming;

#[derive(Debug, thiserror::Error)]
#[error("sink {sink}: {source}")]
pub struct SinkError {
    pub sink: &'static str,
    #[source]
    pub source: io::Error,
}

pub trait Sink: Send {
    /// Writes the batch's changes in order, its notes in place among them.
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError>;

    /// Called after every sink wrote the batch, with its timing.
    fn batch_flushed(&mut self, _batch: &Batch, _timing: &BatchTiming) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Changes as JSON lines; with `report_flushes`, a `flush` line after each batch (headless).
pub struct JsonLinesSink<W: Write + Send> {
    name: &'static str,
    writer: W,
    buffer: Vec<u8>,
    report_flushes: bool,
}

impl<W: Write + Send> JsonLinesSink<W> {
    pub fn new(name: &'static str, writer: W, report_flushes: bool) -> Self {
        JsonLinesSink {
            name,
            writer,
            buffer: Vec::with_capacity(64 * 1024),
            report_flushes,
        }
    }

    /// One write and one flush for the whole buffer: lines from elsewhere (status lines on
    /// stdout) never interleave with a batch.
    fn write_buffer(&mut self) -> Result<(), SinkError> {
        let result = self
            .writer
            .write_all(&self.buffer)
            .and_then(|()| self.writer.flush());
        self.buffer.clear();
        result.map_err(|source| SinkError {
            sink: self.name,
            source,
        })
    }
}

impl<W: Write + Send> Sink for JsonLinesSink<W> {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let mut notes = batch.notes.iter().peekable();
        for (at, change) in batch.changes.iter().enumerate() {
            while let Some((_, note)) = notes.next_if(|(before, _)| *before == at) {
                note.write_json_line(&mut self.buffer);
            }
            change.write_json_line(&mut self.buffer);
        }
        for (_, note) in notes {
            note.write_json_line(&mut self.buffer);
        }
        self.write_buffer()
    }

    fn batch_flushed(&mut self, batch: &Batch, timing: &BatchTiming) -> Result<(), SinkError> {
        if !self.report_flushes {
            return Ok(());
        }
        let line = FlushLine { batch, timing };
        // Serializing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buffer, &line);
        self.buffer.push(b'\n');
        self.write_buffer()
    }
}

/// `{"type":"flush","batch":7,"changes":100,"packets":[…],"waited_ms":12.5,"flush_ms":0.8}`
struct FlushLine<'a> {
    batch: &'a Batch,
    timing: &'a BatchTiming,
}

impl Serialize for FlushLine<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(6))?;
        map.serialize_entry("type", "flush")?;
        map.serialize_entry("batch", &self.batch.number)?;
        map.serialize_entry("changes", &self.batch.changes.len())?;
        map.serialize_entry("packets", &Packets(&self.batch.packets))?;
        map.serialize_entry("waited_ms", &millis(self.timing.waited))?;
        map.serialize_entry("flush_ms", &millis(self.timing.flush))?;
        map.end()
    }
}

struct Packets<'a>(&'a [Packet]);

impl Serialize for Packets<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for packet in self.0 {
            seq.serialize_element(&serde_json::json!({
                "listener": packet.listener.identity(),
                "table": &*packet.table,
                "op": packet.op.as_str(),
                "count": packet.count,
            }))?;
        }
        seq.end()
    }
}

/// Milliseconds with three decimals: enough for a flush that takes microseconds.
fn millis(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1000.0
}
