//! What the detail popup shows for one change: before and after as pretty JSON, the fields the
//! change touched marked. Laid out once when the popup opens, not per frame.

use serde_json::Value;

use crate::change::{Change, Op, row_json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Plain,
    /// Part of a field this change touched.
    Changed,
    /// Says the source gave no value here.
    Absent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonLine {
    pub text: String,
    pub mark: Mark,
}

pub struct DetailView {
    /// The entry's number in the log.
    pub number: u64,
    pub change: Change,
    /// The top-level fields the change touched.
    pub changed: Vec<String>,
    pub before: Vec<JsonLine>,
    pub after: Vec<JsonLine>,
    pub scroll: usize,
}

impl DetailView {
    pub fn new(number: u64, change: Change) -> Self {
        let changed = changed_fields(&change);
        let before = json_lines(
            &row_json(change.before.as_ref()),
            &changed,
            absent_before(change.op),
        );
        let after = json_lines(
            &row_json(change.after.as_ref()),
            &changed,
            absent_after(change.op),
        );
        let changed = changed.into_iter().map(str::to_string).collect();
        DetailView {
            number,
            change,
            changed,
            before,
            after,
            scroll: 0,
        }
    }
}

fn absent_before(op: Op) -> &'static str {
    match op {
        Op::Insert => "(none: an insert)",
        Op::Truncate => "(none: a truncate)",
        Op::Update | Op::Delete => "(not given by the source)",
    }
}

fn absent_after(op: Op) -> &'static str {
    match op {
        Op::Delete => "(none: a delete)",
        Op::Truncate => "(none: a truncate)",
        Op::Insert | Op::Update => "(not given by the source)",
    }
}

/// The top-level fields an update touched: those that differ between before and after, else
/// those the update description names (MongoDB). Empty for other ops.
pub fn changed_fields(change: &Change) -> Vec<&str> {
    if change.op != Op::Update {
        return Vec::new();
    }
    if let (Some(before), Some(after)) = (&change.before, &change.after) {
        let mut fields: Vec<&str> = after
            .iter()
            .filter(|(name, value)| before.get(name) != Some(value))
            .map(|(name, _)| name)
            .collect();
        fields.extend(
            before
                .iter()
                .map(|(name, _)| name)
                .filter(|name| after.get(name).is_none()),
        );
        return fields;
    }
    let Some(update) = change.extensions.get("update") else {
        return Vec::new();
    };
    let updated = update
        .get("updated")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|fields| fields.keys().map(String::as_str));
    let removed = update
        .get("removed")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    // A dotted path ("address.city") changes its top-level field.
    updated
        .chain(removed)
        .map(|path| path.split('.').next().unwrap_or(path))
        .collect()
}

/// Pretty JSON, one line per entry; an object's fields listed in `changed` are marked.
fn json_lines(value: &Value, changed: &[&str], absent: &str) -> Vec<JsonLine> {
    let line = |text: String, mark| JsonLine { text, mark };
    match value {
        Value::Null => vec![line(absent.to_string(), Mark::Absent)],
        Value::Object(fields) if !fields.is_empty() => {
            let mut lines = vec![line("{".to_string(), Mark::Plain)];
            for (at, (name, field)) in fields.iter().enumerate() {
                let mark = if changed.contains(&name.as_str()) {
                    Mark::Changed
                } else {
                    Mark::Plain
                };
                let comma = if at + 1 < fields.len() { "," } else { "" };
                let name = Value::String(name.clone());
                let pretty = pretty(field);
                let mut field_lines = pretty.lines().peekable();
                let mut first = true;
                while let Some(text) = field_lines.next() {
                    let end = if field_lines.peek().is_none() {
                        comma
                    } else {
                        ""
                    };
                    let text = if first {
                        format!("  {name}: {text}{end}")
                    } else {
                        format!("  {text}{end}")
                    };
                    first = false;
                    lines.push(line(text, mark));
                }
            }
            lines.push(line("}".to_string(), Mark::Plain));
            lines
        }
        other => pretty(other)
            .lines()
            .map(|text| line(text.to_string(), Mark::Plain))
            .collect(),
    }
}

fn pretty(value: &Value) -> String {
    // Serializing a Value cannot fail.
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Row;
    use crate::tui::testing::change;
    use serde_json::json;

    #[test]
    fn an_update_marks_the_fields_that_differ() {
        let mut update = change(
            Op::Update,
            "public.orders",
            json!({"id": 1}),
            json!({"id": 1, "qty": 2, "tags": ["a", "b"]}),
        );
        update.before = Row::from_json(json!({"id": 1, "qty": 1, "note": "x", "tags": ["a", "b"]}));
        assert_eq!(changed_fields(&update), ["qty", "note"]);
        let view = DetailView::new(7, update);
        let after: Vec<(&str, Mark)> = view
            .after
            .iter()
            .map(|l| (l.text.as_str(), l.mark))
            .collect();
        assert_eq!(
            after,
            [
                ("{", Mark::Plain),
                ("  \"id\": 1,", Mark::Plain),
                ("  \"qty\": 2,", Mark::Changed),
                ("  \"tags\": [", Mark::Plain),
                ("    \"a\",", Mark::Plain),
                ("    \"b\"", Mark::Plain),
                ("  ]", Mark::Plain),
                ("}", Mark::Plain),
            ]
        );
    }

    #[test]
    fn a_mongodb_update_marks_the_described_fields() {
        let mut update = change(
            Op::Update,
            "shop.carts",
            json!({"_id": 1}),
            json!({"_id": 1, "address": {"city": "Oslo"}, "total": 3}),
        );
        update.extensions.insert(
            "update",
            json!({"updated": {"address.city": "Oslo"}, "removed": ["coupon"]}),
        );
        assert_eq!(changed_fields(&update), ["address", "coupon"]);
        let view = DetailView::new(1, update);
        assert_eq!(view.before[0].mark, Mark::Absent);
    }
}
