//! Change lines as a cdc-tui capture prints them, for the harnesses whose "database" is another
//! capture's output (a followed JSON-lines file, a JetStream stream).

use std::collections::HashSet;
use std::sync::Mutex;

use serde_json::{Value, json};

/// The table the recorded changes are of.
pub const TABLE: &str = "shop.orders";
/// The capture's commit time on every line.
pub const COMMIT_TIME: &str = "2026-11-25T10:00:01.000Z";

/// Makes change lines with the rows the contract expects.
#[derive(Default)]
pub struct RecordedChanges {
    /// Rows updated so far: their delete's `before` is the updated row.
    updated: Mutex<HashSet<i64>>,
}

impl RecordedChanges {
    /// The change line of `op` on row `id` at `position`.
    pub fn line(&self, op: &str, id: i64, position: String) -> Value {
        let mut updated = self.updated.lock().expect("not poisoned");
        let (before, after) = match op {
            "insert" => (Value::Null, row(id, false)),
            "update" => {
                updated.insert(id);
                (row(id, false), row(id, true))
            }
            _ => (row(id, updated.contains(&id)), Value::Null),
        };
        json!({
            "type": "change", "listener": "shop/shop.orders", "table": TABLE, "op": op,
            "key": key(id), "before": before, "after": after, "position": position,
            "commit_time": COMMIT_TIME, "captured_at": "2026-11-25T10:00:01.004Z",
        })
    }
}

pub fn key(id: i64) -> Value {
    json!({"id": id})
}

pub fn row(id: i64, updated: bool) -> Value {
    json!({
        "id": id,
        "product": format!("item {id}"),
        "qty": if updated { id + 100 } else { id },
        "paid": id % 2 == 0,
        "note": null,
        "price": format!("{id}.25"),
    })
}
