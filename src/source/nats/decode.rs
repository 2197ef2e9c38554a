//! Stream messages as changes: cdc-tui's own JSON lines (what the nats sink publishes) and
//! Debezium's change event envelope (`before`, `after`, `source`, `op`, `ts_ms`, with or without
//! the `schema`/`payload` wrapper), plus Debezium's transaction metadata events.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::change::{ChangeEvent, NoteKind, Op, Row, TxRef};

/// Which records a listener reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Format {
    #[serde(rename = "cdc-tui")]
    CdcTui,
    #[serde(rename = "debezium")]
    Debezium,
}

/// What one message is.
#[derive(Debug)]
pub enum Decoded {
    Change(Box<ChangeEvent>),
    Note(NoteKind),
    /// A line with nothing to show (a capture's status or flush line, a tombstone, a
    /// transaction's BEGIN).
    Skip,
    /// Neither format: shown as an error line.
    Error(String),
}

/// Decodes messages in stream order; it keeps the place of each change in a Debezium
/// transaction that names only its id (`source.txId`).
pub struct Decoder {
    format: Option<Format>,
    /// The transaction id of the last Debezium change and how many of it were seen.
    debezium_tx: Option<(Arc<str>, u32)>,
}

impl Decoder {
    pub fn new(format: Option<Format>) -> Decoder {
        Decoder {
            format,
            debezium_tx: None,
        }
    }

    /// The message at stream `sequence`, published at `published`; `Err` says why it is not
    /// a record of the format.
    pub fn decode(
        &mut self,
        payload: &[u8],
        sequence: u64,
        published: Option<DateTime<Utc>>,
    ) -> Result<Decoded, String> {
        if payload.is_empty() {
            // Debezium's tombstone after a delete (for Kafka's compaction).
            return Ok(Decoded::Skip);
        }
        let value: Value =
            serde_json::from_slice(payload).map_err(|error| format!("not JSON ({error})"))?;
        let Value::Object(mut record) = value else {
            return Err("not a JSON object".into());
        };
        let format = match self.format {
            Some(format) => format,
            None if record.get("type").is_some_and(Value::is_string) => Format::CdcTui,
            None => Format::Debezium,
        };
        let position: Arc<str> = sequence.to_string().into();
        match format {
            Format::CdcTui => cdc_tui(record, position),
            Format::Debezium => {
                // The JSON converter with schemas enabled wraps the event.
                if record.contains_key("schema")
                    && let Some(Value::Object(payload)) = record.remove("payload")
                {
                    record = payload;
                }
                self.debezium(record, position, published)
            }
        }
    }

    fn debezium(
        &mut self,
        mut record: Map<String, Value>,
        position: Arc<str>,
        published: Option<DateTime<Utc>>,
    ) -> Result<Decoded, String> {
        if let Some(Value::String(status)) = record.get("status") {
            return debezium_transaction(status.clone(), &record);
        }
        let op = match record.get("op").and_then(Value::as_str) {
            Some("c" | "r") => Op::Insert,
            Some("u") => Op::Update,
            Some("d") => Op::Delete,
            Some("t") => Op::Truncate,
            Some(other) => return Err(format!("a Debezium event with an unknown op {other:?}")),
            None => {
                return Err("neither a cdc-tui line (type) nor a Debezium event (op)".into());
            }
        };
        let snapshot = record.get("op").and_then(Value::as_str) == Some("r");
        let source = match record.remove("source") {
            Some(Value::Object(source)) => source,
            _ => return Err("a Debezium event without its source block".into()),
        };
        let text = |name: &str| source.get(name).and_then(Value::as_str);
        let table = match (
            text("schema"),
            text("db"),
            text("table").or(text("collection")),
        ) {
            (Some(schema), _, Some(table)) => format!("{schema}.{table}"),
            (None, Some(db), Some(table)) => format!("{db}.{table}"),
            _ => return Err("a Debezium source block without its table".into()),
        };
        let before = debezium_row(record.remove("before"));
        let after = debezium_row(record.remove("after"));
        let key = [&after, &before]
            .into_iter()
            .flatten()
            .find_map(|row| {
                ["id", "_id"]
                    .into_iter()
                    .find_map(|name| row.get(name).map(|value| json!({ name: value })))
            })
            .and_then(Row::from_json);
        let commit_time = source
            .get("ts_ms")
            .or(record.get("ts_ms"))
            .and_then(Value::as_i64)
            .and_then(DateTime::from_timestamp_millis)
            .or(published);
        let tx = match record.get("transaction") {
            Some(Value::Object(block)) => debezium_tx_block(block),
            _ => self.tx_of_source(&source),
        };
        let mut event = ChangeEvent {
            table: table.into(),
            op,
            key,
            old_key: None,
            before,
            after,
            extensions: Default::default(),
            position,
            commit_time,
            tx,
        };
        if snapshot {
            event.extensions.insert("snapshot", Value::Bool(true));
        }
        event
            .extensions
            .insert("origin", json!({"format": "debezium", "source": source}));
        Ok(Decoded::Change(Box::new(event)))
    }

    /// `source.txId` (PostgreSQL), `source.gtid` (MySQL): the changes of one id in a row count
    /// from 1.
    fn tx_of_source(&mut self, source: &Map<String, Value>) -> Option<TxRef> {
        let id: Arc<str> = match source.get("txId").or(source.get("gtid")) {
            Some(Value::String(id)) => id.as_str().into(),
            Some(Value::Number(id)) => id.to_string().into(),
            _ => {
                self.debezium_tx = None;
                return None;
            }
        };
        let index = match &mut self.debezium_tx {
            Some((last, count)) if *last == id => {
                *count += 1;
                *count
            }
            _ => 1,
        };
        self.debezium_tx = Some((id.clone(), index));
        let position = source
            .get("lsn")
            .or(source.get("pos"))
            .map_or_else(|| id.to_string(), value_text);
        Some(TxRef {
            id,
            position: position.into(),
            index,
        })
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A row image: an object, or (MongoDB's connector) Extended JSON as a string.
fn debezium_row(value: Option<Value>) -> Option<Row> {
    match value? {
        Value::String(text) => match serde_json::from_str::<Value>(&text) {
            Ok(document @ Value::Object(_)) => Row::from_json(document),
            _ => Row::from_json(Value::String(text)),
        },
        other => Row::from_json(other),
    }
}

/// The `transaction` block: `{"id":"571:53195832","total_order":1,"data_collection_order":1}`.
fn debezium_tx_block(block: &Map<String, Value>) -> Option<TxRef> {
    let id: Arc<str> = value_text(block.get("id")?).into();
    Some(TxRef {
        position: id.clone(),
        index: u32::try_from(block.get("total_order")?.as_u64()?).ok()?,
        id,
    })
}

/// A transaction metadata event: its END is the transaction line; BEGIN says nothing yet.
fn debezium_transaction(status: String, record: &Map<String, Value>) -> Result<Decoded, String> {
    if status != "END" {
        return Ok(Decoded::Skip);
    }
    let id: Arc<str> = record
        .get("id")
        .map(value_text)
        .ok_or("a Debezium transaction event without its id")?
        .into();
    let tables = record
        .get("data_collections")
        .and_then(Value::as_array)
        .map(|collections| {
            collections
                .iter()
                .filter_map(|collection| collection.get("data_collection")?.as_str())
                .map(Arc::from)
                .collect()
        })
        .unwrap_or_default();
    Ok(Decoded::Note(NoteKind::Transaction {
        position: id.clone(),
        id,
        commit_time: record
            .get("ts_ms")
            .and_then(Value::as_i64)
            .and_then(DateTime::from_timestamp_millis),
        changes: record
            .get("event_count")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        tables,
        discarded: 0,
    }))
}

/// One of cdc-tui's lines: changes and notes; status and flush lines are skipped.
fn cdc_tui(mut record: Map<String, Value>, position: Arc<str>) -> Result<Decoded, String> {
    let kind = match record.remove("type") {
        Some(Value::String(kind)) => kind,
        _ => return Err("a cdc-tui line without its type".into()),
    };
    let text = |record: &mut Map<String, Value>, name: &str| match record.remove(name) {
        Some(Value::String(text)) => Some(text),
        _ => None,
    };
    let origin_listener = text(&mut record, "listener");
    match kind.as_str() {
        "change" => {
            let table = text(&mut record, "table").ok_or("a change without a table")?;
            let mut event = crate::source::jsonl::change_record(table, record)?;
            event.extensions.insert(
                "origin",
                json!({"listener": origin_listener, "position": &*event.position}),
            );
            event.position = position;
            Ok(Decoded::Change(Box::new(event)))
        }
        "transaction" => Ok(Decoded::Note(NoteKind::Transaction {
            id: text(&mut record, "id")
                .ok_or("a transaction line without its id")?
                .into(),
            position: text(&mut record, "position").unwrap_or_default().into(),
            commit_time: text(&mut record, "commit_time")
                .and_then(|time| DateTime::parse_from_rfc3339(&time).ok())
                .map(|time| time.to_utc()),
            changes: record.get("changes").and_then(Value::as_u64).unwrap_or(0),
            tables: record
                .get("tables")
                .and_then(Value::as_array)
                .map(|tables| {
                    tables
                        .iter()
                        .filter_map(Value::as_str)
                        .map(Arc::from)
                        .collect()
                })
                .unwrap_or_default(),
            discarded: record.get("discarded").and_then(Value::as_u64).unwrap_or(0),
        })),
        "message" => Ok(Decoded::Note(NoteKind::Message {
            prefix: text(&mut record, "prefix").unwrap_or_default(),
            content: text(&mut record, "content").unwrap_or_default(),
            transactional: record
                .get("transactional")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            tx: record.get("tx").and_then(TxRef::from_json),
            position: text(&mut record, "position").unwrap_or_default(),
        })),
        "schema" => Ok(Decoded::Note(NoteKind::Schema {
            table: text(&mut record, "table").unwrap_or_default().into(),
            change: schema_change(text(&mut record, "change").as_deref()),
            detail: text(&mut record, "detail").unwrap_or_default(),
        })),
        "status" | "flush" | "error" => Ok(Decoded::Skip),
        other => Err(format!("a cdc-tui line of unknown type {other:?}")),
    }
}

/// A schema line's `change`, as one of the names the notes use.
fn schema_change(change: Option<&str>) -> &'static str {
    ["columns", "joined", "left", "dropped", "renamed"]
        .into_iter()
        .find(|known| Some(*known) == change)
        .unwrap_or("columns")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(format: Option<Format>, payload: &Value) -> Decoded {
        Decoder::new(format)
            .decode(payload.to_string().as_bytes(), 7, None)
            .unwrap()
    }

    fn change(decoded: Decoded) -> ChangeEvent {
        match decoded {
            Decoded::Change(event) => *event,
            other => panic!("not a change: {other:?}"),
        }
    }

    #[test]
    fn cdc_tui_lines_keep_their_fields_with_the_stream_sequence_as_position() {
        let line = json!({
            "type": "change", "listener": "o/public.orders", "table": "public.orders",
            "op": "update", "key": {"id": 1}, "before": {"id": 1, "n": 1},
            "after": {"id": 1, "n": 2}, "position": "0/16B3748",
            "tx": {"id": "812", "position": "0/16B3800", "index": 2},
            "commit_time": "2026-11-25T10:00:01.000Z", "captured_at": "2026-11-25T10:00:01.004Z"
        });
        let event = change(decode(None, &line));
        assert_eq!(event.op, Op::Update);
        assert_eq!(&*event.position, "7");
        assert_eq!(
            event.extensions.get("origin"),
            Some(&json!({"listener": "o/public.orders", "position": "0/16B3748"}))
        );
        assert_eq!(event.tx.unwrap().index, 2);
        let flush = json!({"type": "flush", "batch": 1});
        assert!(matches!(decode(None, &flush), Decoded::Skip));
        let transaction = json!({"type": "transaction", "id": "812", "position": "0/1",
            "commit_time": null, "changes": 2, "tables": ["public.orders"], "discarded": 3});
        assert!(matches!(
            decode(None, &transaction),
            Decoded::Note(NoteKind::Transaction {
                changes: 2,
                discarded: 3,
                ..
            })
        ));
    }

    /// From Debezium's PostgreSQL connector documentation: an update with the schema wrapper
    /// (schema shortened) and REPLICA IDENTITY FULL.
    #[test]
    fn debezium_envelopes_with_and_without_the_schema_wrapper() {
        let payload = json!({
            "before": {"id": 1, "first_name": "Anne"},
            "after": {"id": 1, "first_name": "Anne Marie"},
            "source": {"version": "2.5.0.Final", "connector": "postgresql", "name": "PostgreSQL_server",
                "ts_ms": 1559033904863i64, "snapshot": "false", "db": "postgres", "schema": "public",
                "table": "customers", "txId": 556, "lsn": 24023128, "xmin": null},
            "op": "u", "ts_ms": 1465584025523i64
        });
        let wrapped = json!({"schema": {"type": "struct", "fields": []}, "payload": payload});
        for record in [&payload, &wrapped] {
            let event = change(decode(None, record));
            assert_eq!(&*event.table, "public.customers");
            assert_eq!(event.op, Op::Update);
            assert_eq!(event.key.unwrap().get("id"), Some(&json!(1)));
            assert_eq!(
                event.after.unwrap().get("first_name"),
                Some(&json!("Anne Marie"))
            );
            let tx = event.tx.unwrap();
            assert_eq!((&*tx.id, tx.index), ("556", 1));
            assert_eq!(event.commit_time.unwrap().timestamp_millis(), 1559033904863);
        }
        let mut mongo = json!({
            "after": "{\"_id\": {\"$oid\": \"6482b1\"}, \"name\": \"x\"}",
            "source": {"connector": "mongodb", "db": "inventory", "collection": "customers", "ts_ms": 1},
            "op": "c",
        });
        let event = change(decode(Some(Format::Debezium), &mongo));
        assert_eq!(&*event.table, "inventory.customers");
        assert_eq!(
            event.key.unwrap().get("_id"),
            Some(&json!({"$oid": "6482b1"}))
        );
        mongo["op"] = json!("x");
        assert!(
            Decoder::new(None)
                .decode(mongo.to_string().as_bytes(), 1, None)
                .is_err()
        );
        let end = json!({"status": "END", "id": "571:53195832", "event_count": 2,
            "data_collections": [{"data_collection": "s1.a", "event_count": 1}]});
        assert!(matches!(
            decode(None, &end),
            Decoded::Note(NoteKind::Transaction { changes: 2, .. })
        ));
        assert!(Decoder::new(None).decode(b"hello", 1, None).is_err());
        assert!(Decoder::new(None).decode(b"[1]", 1, None).is_err());
        assert!(matches!(
            Decoder::new(None).decode(b"", 1, None).unwrap(),
            Decoded::Skip
        ));
    }
}
