//! From pgoutput tuples to the JSON of a change: `key`, `before` and `after`, typed by the
//! column type OIDs of the table's latest Relation message. Pure, so it is tested without a
//! server.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::change::{Columns, Op, RawJsonColumns, Row};
use crate::source::postgres::pgoutput::{OldTuple, Relation, ReplicaIdentity, Tuple, TupleValue};
use crate::source::postgres::value::{is_json, text_into_json};

/// The value reported for a TOASTed column that an update did not change and whose old value
/// the server did not send (no `REPLICA IDENTITY FULL`).
pub fn unchanged_toast() -> Value {
    let mut marker = Map::with_capacity(1);
    marker.insert("unchanged_toast".to_string(), Value::Bool(true));
    Value::Object(marker)
}

/// One change of the watched table: its key and row images.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub op: Op,
    pub key: Option<Row>,
    /// An update that changed the key: the key before it.
    pub old_key: Option<Row>,
    pub before: Option<Row>,
    pub after: Option<Row>,
}

/// Why a tuple does not fit its relation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("a change arrived before the Relation message that describes its table")]
    NoRelation,
    #[error("a tuple has {found} columns, its Relation message {expected}")]
    ColumnCount { found: usize, expected: usize },
}

/// The watched table's shape: its latest Relation message and which columns form the key.
#[derive(Debug, Clone, Default)]
pub struct TableRows {
    /// The primary key's column names from the catalog, in key order (empty: none).
    primary_key: Vec<String>,
    relation: Option<Relation>,
    /// The relation's column names, shared by every row.
    columns: Columns,
    /// The key's column names, in key order, shared by every key.
    key_names: Columns,
    /// The json and jsonb columns of the relation and of the key, embedded as written.
    raw_json: RawJsonColumns,
    key_raw_json: RawJsonColumns,
    /// Indexes into the relation's columns, in key order.
    key_columns: Vec<usize>,
    /// Per column of the relation: its place in the key, if it is part of it.
    key_slot: Vec<Option<usize>>,
}

/// A row and its key.
struct KeyedRow {
    row: Row,
    key: Row,
}

impl TableRows {
    pub fn new(primary_key: Vec<String>) -> Self {
        TableRows {
            primary_key,
            ..TableRows::default()
        }
    }

    /// Takes a Relation message of the watched table (sent before its first change in a
    /// session and again after its definition changed).
    ///
    /// The key is the primary key where the old tuple carries it (identity DEFAULT, which is
    /// the primary key, or FULL, which is every column: pgoutput then flags every column as
    /// key, which is not what a user means by key). Otherwise (identity USING INDEX, or no
    /// primary key) it is the columns pgoutput flags as the replica identity.
    pub fn set_relation(&mut self, relation: Relation) {
        let by_primary_key: Option<Vec<usize>> = (!self.primary_key.is_empty()
            && relation.replica_identity != ReplicaIdentity::Index)
            .then(|| {
                self.primary_key
                    .iter()
                    .map(|name| relation.columns.iter().position(|c| &c.name == name))
                    .collect()
            })
            .flatten();
        self.key_columns = by_primary_key.unwrap_or_else(|| {
            (relation.columns.iter().enumerate())
                .filter(|(_, column)| column.is_key)
                .map(|(index, _)| index)
                .collect()
        });
        self.key_slot = vec![None; relation.columns.len()];
        for (slot, &column) in self.key_columns.iter().enumerate() {
            self.key_slot[column] = Some(slot);
        }
        let name = |index: usize| relation.columns[index].name.as_str().into();
        self.columns = (0..relation.columns.len()).map(name).collect();
        self.key_names = self.key_columns.iter().map(|&index| name(index)).collect();
        let json = |indexes: &mut dyn Iterator<Item = usize>| -> RawJsonColumns {
            let flags: Vec<bool> = indexes
                .map(|index| is_json(relation.columns[index].type_oid))
                .collect();
            flags.contains(&true).then(|| flags.into())
        };
        self.raw_json = json(&mut (0..relation.columns.len()));
        self.key_raw_json = json(&mut self.key_columns.iter().copied());
        self.relation = Some(relation);
    }

    /// The decoded tuples are consumed: their text moves into the JSON values.
    pub fn insert(&self, new: Tuple) -> Result<RowChange, RowError> {
        let after = self.row(new, None)?;
        Ok(RowChange {
            op: Op::Insert,
            key: Some(after.key),
            old_key: None,
            before: None,
            after: Some(after.row),
        })
    }

    /// An update; the old tuple is the full old row (identity FULL), the old key (identity
    /// DEFAULT or an index, sent only when the key changed), or absent.
    pub fn update(&self, old: Option<OldTuple>, new: Tuple) -> Result<RowChange, RowError> {
        let (full_old, old_key) = match old {
            Some(OldTuple::Full(tuple)) => (Some(tuple), None),
            Some(OldTuple::Key(tuple)) => (None, Some(self.row(tuple, None)?.key)),
            None => (None, None),
        };
        let after = self.row(new, full_old.as_ref())?;
        let (before, old_key) = match full_old {
            Some(tuple) => {
                let old = self.row(tuple, None)?;
                (Some(old.row), Some(old.key))
            }
            None => (None, old_key),
        };
        Ok(RowChange {
            op: Op::Update,
            old_key: old_key.filter(|old_key| *old_key != after.key),
            key: Some(after.key),
            before,
            after: Some(after.row),
        })
    }

    pub fn delete(&self, old: OldTuple) -> Result<RowChange, RowError> {
        let full = matches!(old, OldTuple::Full(_));
        let old_row = self.row(old.into_tuple(), None)?;
        Ok(RowChange {
            op: Op::Delete,
            key: Some(old_row.key),
            old_key: None,
            before: full.then_some(old_row.row),
            after: None,
        })
    }

    pub fn truncate() -> RowChange {
        RowChange {
            op: Op::Truncate,
            key: None,
            old_key: None,
            before: None,
            after: None,
        }
    }

    /// A row in column order, and its key. An unchanged TOASTed value is taken from `old` (a
    /// full old row) when it has it, else reported with the marker.
    fn row(&self, tuple: Tuple, old: Option<&Tuple>) -> Result<KeyedRow, RowError> {
        let relation = self.relation.as_ref().ok_or(RowError::NoRelation)?;
        if tuple.0.len() != relation.columns.len() {
            return Err(RowError::ColumnCount {
                found: tuple.0.len(),
                expected: relation.columns.len(),
            });
        }
        let mut values = Vec::with_capacity(relation.columns.len());
        let mut key = vec![Value::Null; self.key_columns.len()];
        let columns = relation.columns.iter().zip(&self.key_slot);
        for (index, ((column, slot), value)) in columns.zip(tuple.0).enumerate() {
            let json = match value {
                TupleValue::UnchangedToast => match old.and_then(|old| old.0.get(index)) {
                    Some(
                        old @ (TupleValue::Text(_) | TupleValue::Binary(_) | TupleValue::Null),
                    ) => value_json(column.type_oid, old.clone()),
                    _ => unchanged_toast(),
                },
                value => value_json(column.type_oid, value),
            };
            if let Some(slot) = slot {
                key[*slot] = json.clone();
            }
            values.push(json);
        }
        Ok(KeyedRow {
            row: Row::new(Arc::clone(&self.columns), values).with_raw_json(&self.raw_json),
            key: Row::new(Arc::clone(&self.key_names), key).with_raw_json(&self.key_raw_json),
        })
    }
}

fn value_json(type_oid: u32, value: TupleValue) -> Value {
    match value {
        TupleValue::Null => Value::Null,
        TupleValue::Text(text) => text_into_json(type_oid, text),
        // Not requested (the stream asks for text), but never dropped: bytea-like hex.
        TupleValue::Binary(bytes) => {
            let mut hex = String::with_capacity(2 + bytes.len() * 2);
            hex.push_str("\\x");
            for byte in bytes {
                hex.push_str(&format!("{byte:02x}"));
            }
            Value::String(hex)
        }
        TupleValue::UnchangedToast => unchanged_toast(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::change::row_json;
    use crate::source::postgres::pgoutput::Column;
    use crate::source::postgres::value::oid;

    fn column(name: &str, type_oid: u32, is_key: bool) -> Column {
        Column {
            is_key,
            name: name.into(),
            type_oid,
            type_modifier: -1,
        }
    }

    fn relation(identity: ReplicaIdentity) -> Relation {
        let full = identity == ReplicaIdentity::Full;
        Relation {
            oid: 16384,
            namespace: "Shop".into(),
            name: "Order Items".into(),
            replica_identity: identity,
            columns: vec![
                column("line", oid::INT4, true),
                column("note", oid::TEXT, full),
                column("order_id", oid::INT8, true),
                column("paid", oid::BOOL, full),
            ],
        }
    }

    fn text(value: &str) -> TupleValue {
        TupleValue::Text(value.into())
    }

    fn rows(identity: ReplicaIdentity) -> TableRows {
        let mut rows = TableRows::new(vec!["order_id".into(), "line".into()]);
        rows.set_relation(relation(identity));
        rows
    }

    #[test]
    fn insert_types_values_and_keys_by_primary_key_order() {
        let rows = rows(ReplicaIdentity::Default);
        let change = rows
            .insert(Tuple(vec![
                text("2"),
                TupleValue::Null,
                text("7"),
                text("t"),
            ]))
            .unwrap();
        assert_eq!(change.op, Op::Insert);
        assert_eq!(
            serde_json::to_string(&change.key).unwrap(),
            r#"{"order_id":7,"line":2}"#
        );
        assert_eq!(
            row_json(change.after.as_ref()),
            json!({"line": 2, "note": null, "order_id": 7, "paid": true})
        );
        assert_eq!(change.before, None);
    }

    #[test]
    fn unchanged_toast_is_filled_from_a_full_old_row_or_marked() {
        let new = Tuple(vec![
            text("1"),
            TupleValue::UnchangedToast,
            text("9"),
            text("f"),
        ]);
        let default = rows(ReplicaIdentity::Default)
            .update(None, new.clone())
            .unwrap();
        assert_eq!(
            row_json(default.after.as_ref())["note"],
            json!({"unchanged_toast": true})
        );
        assert_eq!(default.before, None);

        let old = OldTuple::Full(Tuple(vec![
            text("1"),
            text("long text"),
            text("9"),
            text("t"),
        ]));
        let full = rows(ReplicaIdentity::Full).update(Some(old), new).unwrap();
        assert_eq!(row_json(full.after.as_ref())["note"], json!("long text"));
        assert_eq!(
            row_json(full.before.as_ref()),
            json!({"line": 1, "note": "long text", "order_id": 9, "paid": true})
        );
        // FULL flags every column as key; the key stays the primary key.
        assert_eq!(
            row_json(full.key.as_ref()),
            json!({"order_id": 9, "line": 1})
        );
    }

    #[test]
    fn a_key_changing_update_carries_the_old_key_under_every_identity() {
        let new = || Tuple(vec![text("1"), text("n"), text("100"), text("t")]);
        // DEFAULT: the server sends the old key only when the key changed.
        let old_key = OldTuple::Key(Tuple(vec![
            text("1"),
            TupleValue::Null,
            text("7"),
            TupleValue::Null,
        ]));
        let change = rows(ReplicaIdentity::Default)
            .update(Some(old_key), new())
            .unwrap();
        assert_eq!(
            row_json(change.old_key.as_ref()),
            json!({"order_id": 7, "line": 1})
        );
        assert_eq!(
            row_json(change.key.as_ref()),
            json!({"order_id": 100, "line": 1})
        );
        assert_eq!(change.before, None);
        let change = rows(ReplicaIdentity::Default).update(None, new()).unwrap();
        assert_eq!(change.old_key, None, "no old tuple: the key did not change");

        // FULL: the old row always comes; the old key only when it differs.
        let full_old = |order_id: &str| {
            OldTuple::Full(Tuple(vec![text("1"), text("o"), text(order_id), text("f")]))
        };
        let rows = rows(ReplicaIdentity::Full);
        let change = rows.update(Some(full_old("7")), new()).unwrap();
        assert_eq!(
            row_json(change.old_key.as_ref()),
            json!({"order_id": 7, "line": 1})
        );
        let change = rows.update(Some(full_old("100")), new()).unwrap();
        assert_eq!(change.old_key, None, "the same key");
        assert!(change.before.is_some());
    }

    #[test]
    fn json_columns_keep_their_text() {
        let mut rows = TableRows::new(vec!["id".into()]);
        rows.set_relation(Relation {
            oid: 1,
            namespace: "public".into(),
            name: "docs".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![
                column("id", oid::INT4, true),
                column("doc", oid::JSON, false),
                column("b", oid::JSONB, false),
            ],
        });
        let change = rows
            .insert(Tuple(vec![
                text("1"),
                text(r#"{"n": 123456789012345678901234567890, "n": 0.1000000000000000000001}"#),
                TupleValue::Null,
            ]))
            .unwrap();
        assert_eq!(
            serde_json::to_string(&change.after).unwrap(),
            r#"{"id":1,"doc":{"n": 123456789012345678901234567890, "n": 0.1000000000000000000001},"b":null}"#
        );
    }

    #[test]
    fn delete_keys_from_the_old_tuple() {
        let key_only = OldTuple::Key(Tuple(vec![
            text("3"),
            TupleValue::Null,
            text("4"),
            TupleValue::Null,
        ]));
        let change = rows(ReplicaIdentity::Default).delete(key_only).unwrap();
        assert_eq!(
            row_json(change.key.as_ref()),
            json!({"order_id": 4, "line": 3})
        );
        assert_eq!(change.before, None);
        assert_eq!(change.after, None);

        let full = OldTuple::Full(Tuple(vec![text("3"), text("x"), text("4"), text("t")]));
        let change = rows(ReplicaIdentity::Full).delete(full).unwrap();
        assert_eq!(
            row_json(change.before.as_ref()),
            json!({"line": 3, "note": "x", "order_id": 4, "paid": true})
        );
    }

    #[test]
    fn without_a_primary_key_the_flagged_columns_are_the_key() {
        let mut rows = TableRows::new(Vec::new());
        rows.set_relation(relation(ReplicaIdentity::Index));
        let change = rows
            .insert(Tuple(vec![text("1"), text("n"), text("2"), text("t")]))
            .unwrap();
        assert_eq!(
            row_json(change.key.as_ref()),
            json!({"line": 1, "order_id": 2})
        );
    }

    #[test]
    fn mismatched_tuples_are_errors() {
        assert_eq!(
            TableRows::new(Vec::new())
                .insert(Tuple(vec![text("1")]))
                .unwrap_err(),
            RowError::NoRelation
        );
        assert_eq!(
            rows(ReplicaIdentity::Default)
                .insert(Tuple(vec![text("1")]))
                .unwrap_err(),
            RowError::ColumnCount {
                found: 1,
                expected: 4
            }
        );
    }
}
