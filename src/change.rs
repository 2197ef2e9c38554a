//! One change model for every source: what the handler batches, the sinks write and the UI shows.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

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

/// One captured change: what a source saw ([`ChangeEvent`]), stamped by the source API with
/// the listener, its sequence number and the capture time.
#[derive(Debug, Clone)]
pub struct Change {
    /// The identity of the listener that captured it.
    pub listener: Arc<str>,
    /// The listener's own sequence number: after a flush the listener learns the highest one
    /// flushed and acknowledges the source position that belongs to it.
    pub seq: u64,
    pub captured_at: DateTime<Utc>,
    pub event: ChangeEvent,
}

/// A change as a source reads it, before it is stamped with its listener.
#[derive(Debug, Clone)]
pub struct ChangeEvent {
    pub table: Arc<str>,
    pub op: Op,
    /// The primary key (PostgreSQL) or `documentKey` (MongoDB); `None` for a truncate.
    pub key: Option<Row>,
    /// An update that changed the key: the key before it.
    pub old_key: Option<Row>,
    /// The row before the change; `None` where the source cannot give it.
    pub before: Option<Row>,
    /// The row after the change; `None` for deletes and truncates.
    pub after: Option<Row>,
    /// Fields only some sources have (MongoDB's `update` description), printed after `after`.
    pub extensions: Extensions,
    /// The source's position: an LSN, a resume token or a cursor value (shared by the changes
    /// of one transaction).
    pub position: Arc<str>,
    pub commit_time: Option<DateTime<Utc>>,
    /// The transaction it belongs to, where the source has one.
    pub tx: Option<TxRef>,
}

/// A change's (or message's) place in its transaction:
/// `{"id":"812","position":"0/1A2B3C0","index":3}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRef {
    /// The source's transaction id (PostgreSQL's xid).
    pub id: Arc<str>,
    /// The transaction's commit position.
    pub position: Arc<str>,
    /// From 1, in the transaction's order.
    pub index: u32,
}

impl Serialize for TxRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("id", &*self.id)?;
        map.serialize_entry("position", &*self.position)?;
        map.serialize_entry("index", &self.index)?;
        map.end()
    }
}

impl TxRef {
    /// A `tx` as a JSON line has it.
    pub fn from_json(value: &Value) -> Option<TxRef> {
        Some(TxRef {
            id: value.get("id")?.as_str()?.into(),
            position: value.get("position")?.as_str()?.into(),
            index: u32::try_from(value.get("index")?.as_u64()?).ok()?,
        })
    }
}

impl std::ops::Deref for Change {
    type Target = ChangeEvent;

    fn deref(&self) -> &ChangeEvent {
        &self.event
    }
}

impl std::ops::DerefMut for Change {
    fn deref_mut(&mut self) -> &mut ChangeEvent {
        &mut self.event
    }
}

/// Source-specific fields of a change, in the order the JSON line prints them; none for most
/// changes, so it costs one pointer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extensions(Option<Box<Map<String, Value>>>);

impl Extensions {
    /// Adds (or replaces) a field.
    pub fn insert(&mut self, name: &str, value: Value) {
        self.0
            .get_or_insert_with(Default::default)
            .insert(name.to_string(), value);
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.as_ref()?.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter().flat_map(|fields| fields.iter())
    }
}

/// Column names, shared by every row of one table shape.
pub type Columns = Arc<[Box<str>]>;

/// Which columns of a table shape hold JSON text to embed as written (PostgreSQL json and
/// jsonb): per column, shared by every row; `None` when no column does.
pub type RawJsonColumns = Option<Arc<[bool]>>;

/// A row image or a key: values in column order, with names shared across rows, so a change
/// costs one allocation per row (and its text values) instead of a map with its own names.
///
/// A raw JSON column's value is the database's JSON text as a string: the JSON lines embed it
/// as written (every digit of a number, a `json` value's duplicate keys and key order, any
/// depth), where parsing it into a [`Value`] would round numbers through f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    columns: Columns,
    values: Vec<Value>,
    raw_json: RawJsonColumns,
}

impl Row {
    /// A row of `values`, one per column of `columns`.
    pub fn new(columns: Columns, values: Vec<Value>) -> Row {
        debug_assert_eq!(columns.len(), values.len(), "one value per column");
        Row {
            columns,
            values,
            raw_json: None,
        }
    }

    /// The same row, its columns flagged in `raw_json` holding JSON text to embed as written.
    pub fn with_raw_json(mut self, raw_json: &RawJsonColumns) -> Row {
        debug_assert!(
            raw_json
                .as_ref()
                .is_none_or(|flags| flags.len() == self.values.len())
        );
        self.raw_json.clone_from(raw_json);
        self
    }

    /// The JSON text of column `index`, if it is a raw JSON column holding some.
    fn raw_json_text(&self, index: usize) -> Option<&str> {
        let flags = self.raw_json.as_ref()?;
        match (flags.get(index), self.values.get(index)) {
            (Some(true), Some(Value::String(text))) => Some(text),
            _ => None,
        }
    }

    /// Column `index`'s value as one line of text: JSON text as written, other values as
    /// compact JSON.
    pub fn value_text(&self, index: usize) -> std::borrow::Cow<'_, str> {
        match self.raw_json_text(index) {
            Some(text) => std::borrow::Cow::Borrowed(text.trim()),
            None => std::borrow::Cow::Owned(
                self.values
                    .get(index)
                    .map(|value| serde_json::to_string(value).unwrap_or_default())
                    .unwrap_or_default(),
            ),
        }
    }

    /// The index of the column `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|column| &**column == name)
    }

    /// A row from a JSON object: its fields in order.
    pub fn from_object(object: Map<String, Value>) -> Row {
        let (columns, values): (Vec<Box<str>>, Vec<Value>) = object
            .into_iter()
            .map(|(name, value)| (name.into_boxed_str(), value))
            .unzip();
        Row::new(columns.into(), values)
    }

    /// A row from JSON: `null` is no row; a value other than an object (which no source
    /// sends as a document) is kept as the one field `value`.
    pub fn from_json(value: Value) -> Option<Row> {
        match value {
            Value::Null => None,
            Value::Object(object) => Some(Row::from_object(object)),
            other => Some(Row::new(Arc::new(["value".into()]), vec![other])),
        }
    }

    /// The fields in column order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.columns.iter().map(|name| &**name).zip(&self.values)
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(self.position(name)?)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The row as a JSON object, for display: JSON text is parsed (a number past f64's
    /// precision is rounded here, never in the JSON lines).
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.iter()
                .enumerate()
                .map(|(index, (name, value))| {
                    let value = match self.raw_json_text(index) {
                        Some(text) => serde_json::from_str(text).unwrap_or_else(|_| value.clone()),
                        None => value.clone(),
                    };
                    (name.to_string(), value)
                })
                .collect(),
        )
    }
}

/// A row as the JSON lines show it: `null` for none.
pub fn row_json(row: Option<&Row>) -> Value {
    row.map_or(Value::Null, Row::to_json)
}

impl Serialize for Row {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (index, (name, value)) in self.iter().enumerate() {
            // Borrowed and checked, not copied: the text is valid JSON from the database.
            match self
                .raw_json_text(index)
                .and_then(|text| serde_json::from_str::<&RawValue>(text).ok())
            {
                Some(raw) => map.serialize_entry(name, raw)?,
                None => map.serialize_entry(name, value)?,
            }
        }
        map.end()
    }
}

impl Change {
    pub fn identity(&self) -> &str {
        &self.listener
    }

    /// Appends the headless JSON line (with its newline) to `out`.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        // Serializing into a Vec cannot fail: every value is a serde_json::Value or a string.
        let _ = serde_json::to_writer(&mut *out, self);
        out.push(b'\n');
    }
}

/// What a source says beside its changes, printed in place among them: a table's shape that
/// changed, a table that joined or left the scope, a collection dropped or renamed.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// The identity of the listener that saw it.
    pub listener: Arc<str>,
    pub captured_at: DateTime<Utc>,
    pub kind: NoteKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NoteKind {
    /// `{"type":"schema","table":…,"change":"columns","detail":"added note text"}`; `change`
    /// is `columns`, `joined`, `left`, `dropped` or `renamed`.
    Schema {
        table: Arc<str>,
        change: &'static str,
        detail: String,
    },
    /// `{"type":"transaction","id":…,"position":…,"commit_time":…,"changes":5,"tables":[…]}`,
    /// after a transaction's last change.
    Transaction {
        id: Arc<str>,
        position: Arc<str>,
        commit_time: Option<DateTime<Utc>>,
        changes: u64,
        tables: Vec<Arc<str>>,
        /// Changes of rolled-back subtransactions (savepoints) left out, where the source saw
        /// them (PostgreSQL's streamed transactions); in the line only when there were some.
        discarded: u64,
    },
    /// An application's annotation (PostgreSQL's `pg_logical_emit_message`), in place.
    Message {
        prefix: String,
        content: String,
        transactional: bool,
        tx: Option<TxRef>,
        position: String,
    },
    /// `{"type":"error","message":…}`: a record the source could not read (a stream message
    /// that is no change event), shown in place; capture goes on.
    Error { message: String },
}

impl Note {
    /// Appends the headless JSON line (with its newline) to `out`.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        // Serializing into a Vec cannot fail: every field is a string.
        let _ = serde_json::to_writer(&mut *out, self);
        out.push(b'\n');
    }
}

impl Serialize for Note {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match &self.kind {
            NoteKind::Schema {
                table,
                change,
                detail,
            } => {
                map.serialize_entry("type", "schema")?;
                map.serialize_entry("listener", &*self.listener)?;
                map.serialize_entry("table", &**table)?;
                map.serialize_entry("change", change)?;
                map.serialize_entry("detail", detail)?;
            }
            NoteKind::Transaction {
                id,
                position,
                commit_time,
                changes,
                tables,
                discarded,
            } => {
                map.serialize_entry("type", "transaction")?;
                map.serialize_entry("listener", &*self.listener)?;
                map.serialize_entry("id", &**id)?;
                map.serialize_entry("position", &**position)?;
                map.serialize_entry("commit_time", &commit_time.as_ref().map(Millis))?;
                map.serialize_entry("changes", changes)?;
                let tables: Vec<&str> = tables.iter().map(|table| &**table).collect();
                map.serialize_entry("tables", &tables)?;
                if *discarded > 0 {
                    map.serialize_entry("discarded", discarded)?;
                }
            }
            NoteKind::Message {
                prefix,
                content,
                transactional,
                tx,
                position,
            } => {
                map.serialize_entry("type", "message")?;
                map.serialize_entry("listener", &*self.listener)?;
                map.serialize_entry("prefix", prefix)?;
                map.serialize_entry("content", content)?;
                map.serialize_entry("transactional", transactional)?;
                map.serialize_entry("tx", tx)?;
                map.serialize_entry("position", position)?;
            }
            NoteKind::Error { message } => {
                map.serialize_entry("type", "error")?;
                map.serialize_entry("listener", &*self.listener)?;
                map.serialize_entry("message", message)?;
            }
        }
        map.serialize_entry("captured_at", &Millis(&self.captured_at))?;
        map.end()
    }
}

/// RFC 3339 in UTC with milliseconds, as SPEC shows: `2026-11-25T10:00:00.123Z`.
pub fn format_time(time: &DateTime<Utc>) -> String {
    Millis(time).to_string()
}

/// A time as [`format_time`] prints it, without allocating: every change line has two.
struct Millis<'a>(&'a DateTime<Utc>);

impl Millis<'_> {
    /// `2026-11-25T10:00:00.123Z`; `None` for a year chrono prints with a sign.
    fn ascii(&self) -> Option<[u8; 24]> {
        /// Writes `value` into `digits`, zero-padded.
        fn put(digits: &mut [u8], mut value: u32) {
            for digit in digits.iter_mut().rev() {
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        let time = self.0;
        let year = u32::try_from(time.year())
            .ok()
            .filter(|year| *year <= 9999)?;
        // chrono keeps a leap second as a nanosecond count past one second.
        let (second, nanos) = match time.nanosecond() {
            nanos if nanos >= 1_000_000_000 => (60, nanos - 1_000_000_000),
            nanos => (time.second(), nanos),
        };
        let mut text = *b"0000-00-00T00:00:00.000Z";
        put(&mut text[0..4], year);
        put(&mut text[5..7], time.month());
        put(&mut text[8..10], time.day());
        put(&mut text[11..13], time.hour());
        put(&mut text[14..16], time.minute());
        put(&mut text[17..19], second);
        put(&mut text[20..23], nanos / 1_000_000);
        Some(text)
    }
}

impl fmt::Display for Millis<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ascii() {
            Some(text) => f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?),
            None => f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true)),
        }
    }
}

impl Serialize for Millis<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.ascii() {
            Some(text) => serializer.serialize_str(std::str::from_utf8(&text).unwrap_or_default()),
            None => serializer.collect_str(self),
        }
    }
}

impl Serialize for Change {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", "change")?;
        map.serialize_entry("listener", self.identity())?;
        map.serialize_entry("table", &*self.table)?;
        map.serialize_entry("op", self.op.as_str())?;
        map.serialize_entry("key", &self.key)?;
        if let Some(old_key) = &self.old_key {
            map.serialize_entry("old_key", old_key)?;
        }
        map.serialize_entry("before", &self.before)?;
        map.serialize_entry("after", &self.after)?;
        for (name, value) in self.extensions.iter() {
            map.serialize_entry(name, value)?;
        }
        map.serialize_entry("position", &*self.position)?;
        if let Some(tx) = &self.tx {
            map.serialize_entry("tx", tx)?;
        }
        map.serialize_entry("commit_time", &self.commit_time.as_ref().map(Millis))?;
        map.serialize_entry("captured_at", &Millis(&self.captured_at))?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};
    use serde_json::json;

    use super::*;

    #[test]
    fn a_change_line_keeps_column_order_and_prints_absent_rows_as_null() {
        let columns: Columns = ["zeta".into(), "alpha".into(), "mid".into()].into();
        let change = Change {
            listener: "orders/public.orders".into(),
            seq: 1,
            captured_at: Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 1).unwrap(),
            event: ChangeEvent {
                table: "public.orders".into(),
                op: Op::Delete,
                key: Some(Row::new(["zeta".into()].into(), vec![json!(7)])),
                old_key: None,
                before: Some(Row::new(
                    columns,
                    vec![json!(7), json!("a\"b"), Value::Null],
                )),
                after: None,
                extensions: Extensions::default(),
                position: "0/16B3748".into(),
                commit_time: None,
                tx: None,
            },
        };
        let mut line = Vec::new();
        change.write_json_line(&mut line);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            concat!(
                r#"{"type":"change","listener":"orders/public.orders","table":"public.orders","#,
                r#""op":"delete","key":{"zeta":7},"before":{"zeta":7,"alpha":"a\"b","mid":null},"#,
                r#""after":null,"position":"0/16B3748","commit_time":null,"#,
                r#""captured_at":"2026-11-25T10:00:01.000Z"}"#,
                "\n"
            )
        );
        let before = change.before.as_ref().unwrap();
        assert_eq!(before.get("alpha"), Some(&json!("a\"b")));
        assert_eq!(before.get("nope"), None);
        assert_eq!(
            Row::from_json(before.to_json()).as_ref(),
            Some(before),
            "to_json and from_json are inverses"
        );
        assert_eq!(row_json(None), Value::Null);
        assert_eq!(Row::from_json(Value::Null), None);
    }

    #[test]
    fn json_text_is_embedded_as_written_and_an_old_key_printed_when_the_key_changed() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let texts = [
            "123456789012345678901234567890",
            "0.1000000000000000000001",
            r#"{"a": 1, "a": 2, "b": [1e400, -0.0]}"#,
            "null",
            deep.as_str(),
        ];
        let columns: Columns = ["id".into(), "doc".into()].into();
        let raw: RawJsonColumns = Some([false, true].into());
        for text in texts {
            let after =
                Row::new(columns.clone(), vec![json!(100), json!(text)]).with_raw_json(&raw);
            let change = Change {
                listener: "t/public.t".into(),
                seq: 1,
                captured_at: Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 1).unwrap(),
                event: ChangeEvent {
                    table: "public.t".into(),
                    op: Op::Update,
                    key: Some(Row::new(["id".into()].into(), vec![json!(100)])),
                    old_key: Some(Row::new(["id".into()].into(), vec![json!(1)])),
                    before: None,
                    after: Some(after.clone()),
                    extensions: Extensions::default(),
                    position: "0/1".into(),
                    commit_time: None,
                    tx: None,
                },
            };
            let mut line = Vec::new();
            change.write_json_line(&mut line);
            let line = String::from_utf8(line).unwrap();
            assert!(
                line.contains(&format!(r#""after":{{"id":100,"doc":{text}}}"#)),
                "{text} is embedded as written: {line}"
            );
            assert!(
                line.contains(r#""key":{"id":100},"old_key":{"id":1},"#),
                "{line}"
            );
            assert_eq!(after.value_text(1), text, "shown as written");
        }
        let plain = Row::new(columns, vec![json!(1), json!("{}")]);
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            r#"{"id":1,"doc":"{}"}"#
        );
    }

    #[test]
    fn a_schema_note_prints_as_spec_shows_it() {
        let note = Note {
            listener: "app/public.*".into(),
            captured_at: Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 1).unwrap(),
            kind: NoteKind::Schema {
                table: "public.orders".into(),
                change: "columns",
                detail: "added note text".into(),
            },
        };
        let mut line = Vec::new();
        note.write_json_line(&mut line);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            concat!(
                r#"{"type":"schema","listener":"app/public.*","table":"public.orders","#,
                r#""change":"columns","detail":"added note text","#,
                r#""captured_at":"2026-11-25T10:00:01.000Z"}"#,
                "\n"
            )
        );
    }

    #[test]
    fn a_transaction_note_says_discarded_only_when_savepoints_dropped_changes() {
        let line = |discarded| {
            let note = Note {
                listener: "app/public.*".into(),
                captured_at: Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 1).unwrap(),
                kind: NoteKind::Transaction {
                    id: "901".into(),
                    position: "0/1A2B3C0".into(),
                    commit_time: None,
                    changes: 5,
                    tables: vec!["public.events".into()],
                    discarded,
                },
            };
            let mut line = Vec::new();
            note.write_json_line(&mut line);
            String::from_utf8(line).unwrap()
        };
        let head = r#"{"type":"transaction","listener":"app/public.*","id":"901","position":"0/1A2B3C0","commit_time":null,"changes":5,"tables":["public.events"]"#;
        let captured = r#""captured_at":"2026-11-25T10:00:01.000Z"}"#;
        assert_eq!(line(0), format!("{head},{captured}\n"));
        assert_eq!(line(120), format!("{head},\"discarded\":120,{captured}\n"));
    }

    #[test]
    fn times_print_as_chrono_does_with_milliseconds() {
        let times = [
            Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 1).unwrap(),
            Utc.timestamp_opt(1_764_064_801, 4_999_999).unwrap(),
            Utc.timestamp_opt(0, 999_999_999).unwrap(),
            NaiveDate::from_ymd_opt(2016, 12, 31)
                .and_then(|d| d.and_hms_milli_opt(23, 59, 59, 1_500))
                .unwrap()
                .and_utc(),
            NaiveDate::from_ymd_opt(12_345, 1, 2)
                .and_then(|d| d.and_hms_opt(3, 4, 5))
                .unwrap()
                .and_utc(),
        ];
        for time in times {
            assert_eq!(
                format_time(&time),
                time.to_rfc3339_opts(SecondsFormat::Millis, true)
            );
        }
        assert_eq!(
            format_time(&times[1]),
            "2025-11-25T10:00:01.004Z",
            "milliseconds are truncated"
        );
    }
}
