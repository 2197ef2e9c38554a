//! One change model for every source: what the handler batches, the sinks write and the UI shows.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::registry::ListenerHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Insert, Op::Update, Op::Delete, Op::Truncate];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Truncate => "truncate",
        }
    }

    /// A dense index, for per-op counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One captured change.
#[derive(Debug, Clone)]
pub struct Change {
    /// The listener that captured it; the handler counts and acknowledges through it.
    pub listener: Arc<ListenerHandle>,
    /// The listener's own sequence number: after a flush the listener learns the highest one
    /// flushed and acknowledges the source position that belongs to it.
    pub seq: u64,
    pub table: Arc<str>,
    pub op: Op,
    /// The primary key (PostgreSQL) or `documentKey` (MongoDB).
    pub key: Value,
    /// The row before the change; `Null` where the source cannot give it.
    pub before: Value,
    /// The row after the change; `Null` for deletes and truncates.
    pub after: Value,
    /// MongoDB updates: `{"updated": {…}, "removed": […]}`.
    pub update: Option<Value>,
    /// The source's position: an LSN, a resume token or a cursor value.
    pub position: String,
    pub commit_time: Option<DateTime<Utc>>,
    pub captured_at: DateTime<Utc>,
}

impl Change {
    pub fn identity(&self) -> &str {
        self.listener.identity()
    }

    /// Appends the headless JSON line (with its newline) to `out`.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        // Serializing into a Vec cannot fail: every value is a serde_json::Value or a string.
        let _ = serde_json::to_writer(&mut *out, self);
        out.push(b'\n');
    }
}

/// RFC 3339 in UTC with milliseconds, as SPEC shows: `2026-11-25T10:00:00.123Z`.
pub fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Serialize for Change {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", "change")?;
        map.serialize_entry("listener", self.identity())?;
        map.serialize_entry("table", &*self.table)?;
        map.serialize_entry("op", self.op.as_str())?;
        map.serialize_entry("key", &self.key)?;
        map.serialize_entry("before", &self.before)?;
        map.serialize_entry("after", &self.after)?;
        if let Some(update) = &self.update {
            map.serialize_entry("update", update)?;
        }
        map.serialize_entry("position", &self.position)?;
        map.serialize_entry("commit_time", &self.commit_time.as_ref().map(format_time))?;
        map.serialize_entry("captured_at", &format_time(&self.captured_at))?;
        map.end()
    }
}
