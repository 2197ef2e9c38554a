//! Change stream events as cdc-tui changes: which op, the key, the documents before and after,
//! the update description, and the time of the change. Values are relaxed Extended JSON.

use std::fmt;

use chrono::{DateTime, Utc};
use mongodb::bson::{Bson, Document};
use serde_json::{Map, Value};

use crate::change::{Op, Row};

/// The watched collection: `db.collection` (a database name has no dot; a collection may).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub db: String,
    pub coll: String,
}

impl Namespace {
    #[cfg(test)]
    pub fn parse(table: &str) -> Result<Namespace, String> {
        match table.split_once('.') {
            Some((db, coll)) if !db.is_empty() && !coll.is_empty() => Ok(Namespace {
                db: db.to_string(),
                coll: coll.to_string(),
            }),
            _ => Err(format!(
                "{table:?} is not \"database.collection\" as MongoDB needs"
            )),
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.db, self.coll)
    }
}

/// What happened to a collection or a database, as a database or deployment stream reports
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    Dropped(Namespace),
    Renamed {
        from: Namespace,
        to: Option<Namespace>,
    },
    DatabaseDropped(String),
    /// The stream ends here (a database stream, after its database was dropped).
    Invalidated,
}

/// The event's `db.collection` in the field `field` (`ns`, or a rename's `to`).
pub fn namespace_in(event: &Document, field: &str) -> Option<Namespace> {
    let ns = event.get_document(field).ok()?;
    Some(Namespace {
        db: ns.get_str("db").ok()?.to_string(),
        coll: ns.get_str("coll").ok()?.to_string(),
    })
}

/// The event's lifecycle meaning, if it is a drop, rename, dropDatabase or invalidate.
pub fn lifecycle(event: &Document) -> Option<Lifecycle> {
    match event.get_str("operationType").unwrap_or("") {
        "drop" => namespace_in(event, "ns").map(Lifecycle::Dropped),
        "rename" => Some(Lifecycle::Renamed {
            from: namespace_in(event, "ns")?,
            to: namespace_in(event, "to"),
        }),
        "dropDatabase" => event
            .get_document("ns")
            .ok()
            .and_then(|ns| ns.get_str("db").ok())
            .map(|db| Lifecycle::DatabaseDropped(db.to_string())),
        "invalidate" => Some(Lifecycle::Invalidated),
        _ => None,
    }
}

/// The multi-document transaction an event was written in, as text: the session id (a UUID)
/// and the `txnNumber`, `<uuid>:<n>`. Single writes have none.
pub fn transaction_id(event: &Document) -> Option<String> {
    let number = match event.get("txnNumber")? {
        Bson::Int64(number) => *number,
        Bson::Int32(number) => i64::from(*number),
        _ => return None,
    };
    let session = event.get_document("lsid").ok()?;
    let id = match session.get("id")? {
        Bson::Binary(binary) if binary.bytes.len() == 16 => {
            let hex: String = binary.bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )
        }
        other => other.clone().into_relaxed_extjson().to_string(),
    };
    Some(format!("{id}:{number}"))
}

/// What one change stream event means for the listener. (Short-lived: one per event, never
/// stored, so the size of `Change` does not matter.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A change of a document.
    Change(DocumentChange),
    /// The stream cannot go on (the collection was dropped or renamed, the database dropped, or
    /// the server invalidated the stream): why, for the user.
    End(String),
    /// An event that changes no document (say, an index build reported with expanded events):
    /// its position still counts, its content is not shown.
    Skip(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DocumentChange {
    pub op: Op,
    pub key: Option<Row>,
    pub before: Option<Row>,
    pub after: Option<Row>,
    pub update: Option<Value>,
}

/// Reads one change stream event of the collection `namespace`.
pub fn decode(event: &Document, namespace: &Namespace) -> Decoded {
    let operation = event.get_str("operationType").unwrap_or("");
    let op = match operation {
        "insert" => Op::Insert,
        // A replacement is an update whose new document is complete; it has no update
        // description.
        "update" | "replace" => Op::Update,
        "delete" => Op::Delete,
        "drop" => {
            return Decoded::End(format!(
                "the collection {namespace} was dropped: the change stream ended"
            ));
        }
        "rename" => {
            let to = event
                .get_document("to")
                .ok()
                .and_then(|to| {
                    Some(format!(
                        "{}.{}",
                        to.get_str("db").ok()?,
                        to.get_str("coll").ok()?
                    ))
                })
                .unwrap_or_else(|| "another name".to_string());
            return Decoded::End(format!(
                "the collection {namespace} was renamed to {to}: the change stream ended"
            ));
        }
        "dropDatabase" => {
            return Decoded::End(format!(
                "the database {} was dropped: the change stream ended",
                namespace.db
            ));
        }
        "invalidate" => {
            return Decoded::End(format!(
                "the server invalidated the change stream of {namespace}: the change stream ended"
            ));
        }
        other => return Decoded::Skip(other.to_string()),
    };
    let document = |field: &str| match event.get(field)? {
        Bson::Document(document) => Some(document_row(document)),
        other => Row::from_json(other.clone().into_relaxed_extjson()),
    };
    let after = match op {
        Op::Delete => None,
        _ => document("fullDocument"),
    };
    let before = match op {
        Op::Insert => None,
        _ => document("fullDocumentBeforeChange"),
    };
    let update = (operation == "update").then(|| update_description(event));
    Decoded::Change(DocumentChange {
        op,
        key: document("documentKey"),
        before,
        after,
        update,
    })
}

/// A document's top-level fields as a row, each value relaxed Extended JSON.
fn document_row(document: &Document) -> Row {
    let (columns, values): (Vec<Box<str>>, Vec<Value>) = document
        .iter()
        .map(|(name, value)| (name.as_str().into(), value.clone().into_relaxed_extjson()))
        .unzip();
    Row::new(columns.into(), values)
}

/// `{"updated": {…}, "removed": […]}` from the event's update description, plus
/// `"truncated": [{"field": …, "newSize": …}]` when arrays were shortened.
fn update_description(event: &Document) -> Value {
    let description = event.get_document("updateDescription").ok();
    let part = |field: &str, empty: Value| {
        description
            .and_then(|description| description.get(field))
            .cloned()
            .map_or(empty, Bson::into_relaxed_extjson)
    };
    let mut update = Map::new();
    update.insert(
        "updated".into(),
        part("updatedFields", Value::Object(Map::new())),
    );
    update.insert(
        "removed".into(),
        part("removedFields", Value::Array(Vec::new())),
    );
    let truncated = part("truncatedArrays", Value::Array(Vec::new()));
    if truncated
        .as_array()
        .is_some_and(|arrays| !arrays.is_empty())
    {
        update.insert("truncated".into(), truncated);
    }
    Value::Object(update)
}

/// When the change happened: `wallTime` (milliseconds, MongoDB 6.0+) when present, else the
/// seconds of `clusterTime`.
pub fn commit_time(event: &Document) -> Option<DateTime<Utc>> {
    if let Ok(wall) = event.get_datetime("wallTime") {
        return DateTime::from_timestamp_millis(wall.timestamp_millis());
    }
    let cluster = event.get_timestamp("clusterTime").ok()?;
    DateTime::from_timestamp(i64::from(cluster.time), 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::row_json;
    use mongodb::bson::{DateTime as BsonDateTime, Timestamp, doc, oid::ObjectId};
    use serde_json::json;

    fn orders() -> Namespace {
        Namespace::parse("shop.orders").unwrap()
    }

    #[test]
    fn namespaces_split_at_the_first_dot() {
        assert_eq!(
            Namespace::parse("shop.orders.archive").unwrap(),
            Namespace {
                db: "shop".into(),
                coll: "orders.archive".into()
            }
        );
        assert!(Namespace::parse("orders").is_err());
        assert!(Namespace::parse(".orders").is_err());
        assert!(Namespace::parse("shop.").is_err());
    }

    #[test]
    fn an_update_carries_its_description_and_images_as_relaxed_json() {
        let id = ObjectId::parse_str("65f0a1b2c3d4e5f601234567").unwrap();
        let event = doc! {
            "_id": { "_data": "82AB" },
            "operationType": "update",
            "clusterTime": Timestamp { time: 1_700_000_000, increment: 3 },
            "wallTime": BsonDateTime::from_millis(1_700_000_000_123),
            "ns": { "db": "shop", "coll": "orders" },
            "documentKey": { "_id": id },
            "updateDescription": {
                "updatedFields": { "qty": 2_i64, "price": 9.5, "at": BsonDateTime::from_millis(0) },
                "removedFields": ["note"],
                "truncatedArrays": [],
            },
            "fullDocument": { "_id": id, "qty": 2_i64, "price": 9.5 },
            "fullDocumentBeforeChange": { "_id": id, "qty": 1_i64, "note": "x" },
        };
        let Decoded::Change(change) = decode(&event, &orders()) else {
            panic!("an update is a change");
        };
        assert_eq!(change.op, Op::Update);
        assert_eq!(
            row_json(change.key.as_ref()),
            json!({"_id": {"$oid": "65f0a1b2c3d4e5f601234567"}})
        );
        assert_eq!(
            row_json(change.after.as_ref())["qty"],
            json!(2),
            "int64 is a plain number in relaxed JSON"
        );
        assert_eq!(row_json(change.before.as_ref())["note"], json!("x"));
        assert_eq!(
            change.update,
            Some(json!({
                "updated": {"qty": 2, "price": 9.5, "at": {"$date": "1970-01-01T00:00:00Z"}},
                "removed": ["note"],
            }))
        );
        assert_eq!(
            commit_time(&event).unwrap().timestamp_millis(),
            1_700_000_000_123,
            "wallTime wins"
        );
    }

    #[test]
    fn inserts_replaces_and_deletes() {
        let insert = doc! {
            "operationType": "insert",
            "documentKey": { "_id": 1 },
            "fullDocument": { "_id": 1, "n": "a" },
            "clusterTime": Timestamp { time: 1_700_000_000, increment: 1 },
        };
        let Decoded::Change(change) = decode(&insert, &orders()) else {
            panic!()
        };
        assert_eq!(
            (
                change.op,
                row_json(change.key.as_ref()),
                row_json(change.before.as_ref()),
                row_json(change.after.as_ref()),
                change.update
            ),
            (
                Op::Insert,
                json!({"_id": 1}),
                Value::Null,
                json!({"_id": 1, "n": "a"}),
                None
            )
        );
        assert_eq!(commit_time(&insert).unwrap().timestamp(), 1_700_000_000);

        let replace = doc! {
            "operationType": "replace",
            "documentKey": { "_id": 1 },
            "fullDocument": { "_id": 1, "n": "b" },
        };
        let Decoded::Change(change) = decode(&replace, &orders()) else {
            panic!()
        };
        assert_eq!((change.op, change.update), (Op::Update, None));
        assert_eq!(change.before, None, "no pre-image, no before");

        let delete = doc! {
            "operationType": "delete",
            "documentKey": { "_id": 1 },
            "fullDocumentBeforeChange": { "_id": 1, "n": "b" },
        };
        let Decoded::Change(change) = decode(&delete, &orders()) else {
            panic!()
        };
        assert_eq!(change.op, Op::Delete);
        assert_eq!(change.after, None);
        assert_eq!(
            row_json(change.before.as_ref()),
            json!({"_id": 1, "n": "b"})
        );
        assert_eq!(commit_time(&delete), None);
    }

    #[test]
    fn the_end_of_the_collection_ends_the_stream() {
        let end = |event: Document| match decode(&event, &orders()) {
            Decoded::End(reason) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            end(doc! { "operationType": "drop" }),
            "the collection shop.orders was dropped: the change stream ended"
        );
        assert_eq!(
            end(doc! { "operationType": "rename", "to": { "db": "shop", "coll": "old" } }),
            "the collection shop.orders was renamed to shop.old: the change stream ended"
        );
        assert!(
            end(doc! { "operationType": "dropDatabase" }).contains("database shop was dropped")
        );
        assert!(end(doc! { "operationType": "invalidate" }).contains("invalidated"));
        assert_eq!(
            decode(&doc! { "operationType": "createIndexes" }, &orders()),
            Decoded::Skip("createIndexes".into())
        );
    }

    #[test]
    fn lifecycle_events_and_transactions_are_read() {
        assert_eq!(
            lifecycle(&doc! {
                "operationType": "rename",
                "ns": { "db": "shop", "coll": "a" },
                "to": { "db": "shop", "coll": "b" },
            }),
            Some(Lifecycle::Renamed {
                from: Namespace::parse("shop.a").unwrap(),
                to: Some(Namespace::parse("shop.b").unwrap()),
            })
        );
        assert_eq!(
            lifecycle(&doc! { "operationType": "dropDatabase", "ns": { "db": "shop" } }),
            Some(Lifecycle::DatabaseDropped("shop".into()))
        );
        assert_eq!(lifecycle(&doc! { "operationType": "insert" }), None);
        let uuid = mongodb::bson::Binary {
            subtype: mongodb::bson::spec::BinarySubtype::Uuid,
            bytes: (0..16).collect(),
        };
        assert_eq!(
            transaction_id(&doc! { "lsid": { "id": uuid, "uid": 0 }, "txnNumber": 3_i64 }),
            Some("00010203-0405-0607-0809-0a0b0c0d0e0f:3".into())
        );
        assert_eq!(transaction_id(&doc! { "operationType": "insert" }), None);
    }

    #[test]
    fn truncated_arrays_are_reported_when_present() {
        let event = doc! {
            "operationType": "update",
            "documentKey": { "_id": 1 },
            "updateDescription": {
                "updatedFields": {},
                "removedFields": [],
                "truncatedArrays": [{ "field": "tags", "newSize": 1 }],
            },
        };
        let Decoded::Change(change) = decode(&event, &orders()) else {
            panic!()
        };
        assert_eq!(
            change.update,
            Some(
                json!({"updated": {}, "removed": [], "truncated": [{"field": "tags", "newSize": 1}]})
            )
        );
        assert_eq!(change.after, None, "fullDocument absent: after is null");
    }
}
