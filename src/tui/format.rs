//! Text for numbers, times, JSON values and sparklines, cut to the columns there are.

use std::borrow::Cow;
use std::fmt::Write;

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::Value;

use crate::change::Row;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// `1234567` → `1,234,567` (shared with capture code, which never imports the UI).
pub use crate::units::count;

/// A rate in at most six columns: `950/s`, `12.5k/s`, `3.1M/s`.
pub fn rate(per_second: u64) -> String {
    match per_second {
        0..1_000 => format!("{per_second}/s"),
        1_000..100_000 => format!("{:.1}k/s", per_second as f64 / 1e3),
        100_000..1_000_000 => format!("{}k/s", per_second / 1_000),
        _ => format!("{:.1}M/s", per_second as f64 / 1e6),
    }
}

/// Milliseconds with the precision that matters at their size: `0.08`, `12.5`, `1340`.
pub fn millis(ms: f64) -> String {
    if ms > 0.0 && ms < 0.01 {
        "<0.01".to_string()
    } else if ms < 1.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

/// `HH:MM:SS.mmm` in the given zone.
pub fn clock(time: &DateTime<Utc>, zone: FixedOffset) -> String {
    time.with_timezone(&zone).format("%H:%M:%S%.3f").to_string()
}

/// At most `width` columns, ending in `…` when cut.
pub fn ellipsize(text: &str, width: usize) -> Cow<'_, str> {
    if text.width() <= width {
        return Cow::Borrowed(text);
    }
    if width == 0 {
        return Cow::Borrowed("");
    }
    let mut used = 0;
    let mut out = String::new();
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width - 1 {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    Cow::Owned(out)
}

/// JSON on one line.
pub fn compact(value: &Value) -> String {
    // Serializing a Value cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// A row's fields as `name=value` pairs (`id=42 sku="A-1"`) but those also in `skip` (the
/// key, already shown); values as compact JSON. Writes about `width` columns at most, so a
/// wide row costs no more than what shows.
pub fn fields(row: Option<&Row>, skip: Option<&Row>, width: usize) -> String {
    let Some(row) = row else {
        return String::new();
    };
    let skipped = |name: &str| skip.is_some_and(|skip| skip.get(name).is_some());
    let mut out = String::new();
    for (index, (name, _)) in row.iter().enumerate() {
        if out.len() > width {
            break;
        }
        if skipped(name) {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{name}={}", row.value_text(index));
    }
    out
}

/// A key that an update changed, as `id=1→100` (fields that kept their value once).
pub fn key_change(old: &Row, new: &Row, width: usize) -> String {
    let mut out = String::new();
    for (index, (name, _)) in new.iter().enumerate() {
        if out.len() > width {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        let now = new.value_text(index);
        match old.position(name).map(|at| old.value_text(at)) {
            Some(was) if was != now => {
                let _ = write!(out, "{name}={was}→{now}");
            }
            _ => {
                let _ = write!(out, "{name}={now}");
            }
        }
    }
    out
}

/// A JSON object's fields as [`fields`] shows a row's (a MongoDB update description); other
/// values as compact JSON, `null` as nothing.
pub fn value_fields(value: &Value, width: usize) -> String {
    match value {
        Value::Null => String::new(),
        Value::Object(object) => pairs(object.iter().map(|(k, v)| (k.as_str(), v)), width),
        other => compact(other),
    }
}

fn pairs<'a>(fields: impl Iterator<Item = (&'a str, &'a Value)>, width: usize) -> String {
    let mut out = String::new();
    for (name, field) in fields {
        if out.len() > width {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{name}={}", compact(field));
    }
    out
}

/// Words wrapped into lines of at most `width` columns (a longer word gets a line of its own).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.width() + 1 + word.width() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

const BARS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` values as bars scaled to the highest of them, right-aligned (time runs
/// left to right); a zero is blank, anything above zero at least the lowest bar.
pub fn sparkline(values: impl DoubleEndedIterator<Item = u64>, width: usize) -> String {
    let shown: Vec<u64> = {
        let mut last: Vec<u64> = values.rev().take(width).collect();
        last.reverse();
        last
    };
    let highest = shown.iter().copied().max().unwrap_or(0).max(1);
    let mut out = " ".repeat(width - shown.len());
    out.extend(shown.iter().map(|&value| {
        let level = if value == 0 {
            0
        } else {
            (value * 8).div_ceil(highest).clamp(1, 8)
        };
        BARS[level as usize]
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers() {
        assert_eq!(rate(950), "950/s");
        assert_eq!(rate(12_500), "12.5k/s");
        assert_eq!(rate(250_000), "250k/s");
        assert_eq!(rate(3_100_000), "3.1M/s");
        assert_eq!(millis(0.083), "0.08");
        assert_eq!(millis(0.004), "<0.01");
        assert_eq!(millis(0.0), "0.00");
        assert_eq!(millis(12.54), "12.5");
        assert_eq!(millis(1340.2), "1340");
    }

    #[test]
    fn text_is_cut_by_columns() {
        assert_eq!(ellipsize("orders", 10), "orders");
        assert_eq!(ellipsize("public.orders", 8), "public.…");
        assert_eq!(ellipsize("日本語テキスト", 5), "日本…");
        assert_eq!(ellipsize("abc", 0), "");
        assert_eq!(wrap("one two three four", 9), ["one two", "three", "four"]);
        assert_eq!(wrap("", 9), [""]);
    }

    #[test]
    fn values_and_sparklines() {
        let value = json!({"id": 42, "sku": "A-1"});
        let row = Row::from_json(value.clone());
        let key = Row::from_json(json!({"id": 42}));
        assert_eq!(fields(row.as_ref(), None, 80), "id=42 sku=\"A-1\"");
        assert_eq!(fields(row.as_ref(), key.as_ref(), 80), "sku=\"A-1\"");
        assert_eq!(fields(None, None, 80), "");
        assert_eq!(value_fields(&value, 80), "id=42 sku=\"A-1\"");
        assert_eq!(value_fields(&json!([1, 2]), 80), "[1,2]");
        assert_eq!(value_fields(&Value::Null, 80), "");
        assert_eq!(sparkline([0, 1, 4, 8].into_iter(), 6), "   ▁▄█");
        assert_eq!(sparkline([5, 5, 5].into_iter(), 2), "██");
        assert_eq!(sparkline(std::iter::empty(), 3), "   ");
    }
}
