//! MySQL values as JSON, the same from the binlog (binary, decoded by `mysql_common`) and
//! from a polling `SELECT` (text): integers, FLOAT/DOUBLE and YEAR as numbers; DECIMAL as a
//! string with every digit; DATE/TIME/DATETIME/TIMESTAMP as MySQL prints them, with the
//! column's fractional digits (TIMESTAMP in UTC); text in its character set; binary strings
//! as `\x` and hex, as PostgreSQL prints bytea; BIT as its binary digits; ENUM and SET as
//! their labels; JSON as the JSON text itself (the row embeds it unparsed).

use std::fmt::Write as _;

use mysql_async::Value as MyValue;
use mysql_async::binlog::value::BinlogValue;
use serde_json::{Number, Value};

use crate::source::mysql::table::ColumnKind;

/// A binlog value of a column of `kind`.
pub fn binlog_to_json(value: BinlogValue<'_>, kind: &ColumnKind) -> Result<Value, String> {
    match value {
        BinlogValue::Value(value) => Ok(my_to_json(value, kind, Source::Binlog)),
        BinlogValue::Jsonb(jsonb) => {
            let json = serde_json::Value::try_from(jsonb)
                .map_err(|error| format!("a JSON value does not decode: {error}"))?;
            Ok(Value::String(json.to_string()))
        }
        BinlogValue::JsonDiff(_) => Err(
            "a partial JSON update (binlog_row_value_options = PARTIAL_JSON) carries no whole \
             value: set binlog_row_value_options = ''"
                .into(),
        ),
    }
}

/// A value read by a text-protocol `SELECT` (polling), of a column of `kind`.
pub fn text_to_json(value: MyValue, kind: &ColumnKind) -> Value {
    my_to_json(value, kind, Source::Text)
}

/// Where a value comes from: the binlog carries ENUM and SET as numbers, TIMESTAMP as
/// seconds since the epoch and BIT as bytes; a text `SELECT` prints them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Binlog,
    Text,
}

fn my_to_json(value: MyValue, kind: &ColumnKind, source: Source) -> Value {
    match value {
        MyValue::NULL => Value::Null,
        MyValue::Int(int) => match kind {
            ColumnKind::Enum(labels) => enum_label(labels, int),
            ColumnKind::Timestamp { fsp } => epoch_text(int.to_string().as_bytes(), *fsp),
            ColumnKind::Integer {
                unsigned_bits: Some(bits),
            } if int < 0 => Value::from((i128::from(int) + (1i128 << bits)) as u64),
            _ => Value::from(int),
        },
        MyValue::UInt(int) => Value::from(int),
        // The shortest text that reads back as the f32, not the f64 nearest to it.
        MyValue::Float(float) => float_number(float.to_string().parse().unwrap_or(0.0)),
        MyValue::Double(double) => float_number(double),
        MyValue::Date(year, month, day, hour, minute, second, micros) => {
            let mut text = format!("{year:04}-{month:02}-{day:02}");
            if let ColumnKind::DateTime { fsp } | ColumnKind::Timestamp { fsp } = kind {
                write!(text, " {hour:02}:{minute:02}:{second:02}").ok();
                push_fraction(&mut text, micros, *fsp);
            }
            Value::String(text)
        }
        MyValue::Time(negative, days, hours, minutes, seconds, micros) => {
            let hours = u64::from(days) * 24 + u64::from(hours);
            let sign = if negative { "-" } else { "" };
            let mut text = format!("{sign}{hours:02}:{minutes:02}:{seconds:02}");
            if let ColumnKind::Time { fsp } = kind {
                push_fraction(&mut text, micros, *fsp);
            }
            Value::String(text)
        }
        MyValue::Bytes(bytes) => bytes_to_json(bytes, kind, source),
    }
}

fn bytes_to_json(bytes: Vec<u8>, kind: &ColumnKind, source: Source) -> Value {
    match kind {
        ColumnKind::Integer { .. } => number_text(&bytes),
        ColumnKind::Float => {
            let text = String::from_utf8_lossy(&bytes);
            text.parse()
                .map_or(Value::String(text.into_owned()), float_number)
        }
        ColumnKind::Year => {
            // The binlog's YEAR is 1900 + a byte, so year 0000 arrives as 1900 (which no
            // YEAR column holds).
            let text = String::from_utf8_lossy(&bytes);
            match text.parse::<u64>() {
                Ok(1900) if source == Source::Binlog => Value::from(0),
                Ok(year) => Value::from(year),
                Err(_) => Value::String(text.into_owned()),
            }
        }
        ColumnKind::Timestamp { fsp } if source == Source::Binlog => epoch_text(&bytes, *fsp),
        ColumnKind::Text { latin1: true } if source == Source::Binlog => {
            Value::String(bytes.iter().map(|&byte| char::from(byte)).collect())
        }
        ColumnKind::Binary { pad_to } => {
            let mut bytes = bytes;
            if let Some(length) = pad_to
                && bytes.len() < *length
            {
                bytes.resize(*length, 0);
            }
            Value::String(hex(&bytes))
        }
        ColumnKind::Bit { bits } => {
            let mut value: u128 = 0;
            for byte in &bytes {
                value = (value << 8) | u128::from(*byte);
            }
            Value::String(format!("{value:0width$b}", width = *bits as usize))
        }
        ColumnKind::Enum(labels) if source == Source::Binlog => {
            enum_label(labels, i64::from(bytes.first().copied().unwrap_or(0)))
        }
        ColumnKind::Set(labels) if source == Source::Binlog => {
            let mut mask: u64 = 0;
            for (index, byte) in bytes.iter().enumerate().take(8) {
                mask |= u64::from(*byte) << (8 * index);
            }
            let chosen: Vec<&str> = (labels.iter().enumerate())
                .filter(|(index, _)| mask & (1 << index) != 0)
                .map(|(_, label)| label.as_str())
                .collect();
            Value::String(chosen.join(","))
        }
        _ => Value::String(match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
        }),
    }
}

/// A float as a JSON number (MySQL stores no NaN or infinity).
fn float_number(float: f64) -> Value {
    Number::from_f64(float).map_or(Value::Null, Value::Number)
}

/// An integer's text as a number (text-protocol results).
fn number_text(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(int) = text.parse::<i64>() {
        Value::from(int)
    } else if let Ok(int) = text.parse::<u64>() {
        Value::from(int)
    } else {
        Value::String(text.into_owned())
    }
}

/// ENUM's 1-based index as its label; 0 is the empty string MySQL stores for a bad value.
fn enum_label(labels: &[String], index: i64) -> Value {
    let label = usize::try_from(index)
        .ok()
        .and_then(|index| index.checked_sub(1))
        .and_then(|index| labels.get(index));
    Value::String(label.cloned().unwrap_or_default())
}

/// `seconds[.micros]` since the epoch (a binlog TIMESTAMP) as `2024-01-01 00:00:00.123` UTC.
fn epoch_text(bytes: &[u8], fsp: u32) -> Value {
    let text = String::from_utf8_lossy(bytes);
    let (seconds, micros) = match text.split_once('.') {
        Some((seconds, fraction)) => (seconds, format!("{fraction:0<6}")[..6].parse().unwrap_or(0)),
        None => (&*text, 0),
    };
    let Ok(seconds) = seconds.parse::<i64>() else {
        return Value::String(text.into_owned());
    };
    if seconds == 0 && micros == 0 {
        // MySQL's zero timestamp.
        let mut zero = "0000-00-00 00:00:00".to_string();
        push_fraction(&mut zero, 0, fsp);
        return Value::String(zero);
    }
    let Some(time) = chrono::DateTime::from_timestamp(seconds, micros * 1000) else {
        return Value::String(text.into_owned());
    };
    let mut formatted = time.format("%Y-%m-%d %H:%M:%S").to_string();
    push_fraction(&mut formatted, micros, fsp);
    Value::String(formatted)
}

/// Appends `.` and the first `fsp` digits of `micros`, as MySQL prints a column of that
/// precision.
fn push_fraction(text: &mut String, micros: u32, fsp: u32) {
    if fsp == 0 {
        return;
    }
    let digits = format!("{micros:06}");
    text.push('.');
    text.push_str(&digits[..fsp.min(6) as usize]);
}

/// `\x0102ff`, as PostgreSQL prints bytea.
pub fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(2 + bytes.len() * 2);
    text.push_str("\\x");
    for byte in bytes {
        write!(text, "{byte:02x}").ok();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binlog(value: MyValue, kind: &ColumnKind) -> Value {
        binlog_to_json(BinlogValue::Value(value), kind).unwrap()
    }

    #[test]
    fn times_keep_the_columns_fractional_digits() {
        let datetime = ColumnKind::DateTime { fsp: 3 };
        assert_eq!(
            binlog(MyValue::Date(2024, 1, 31, 12, 5, 9, 123_456), &datetime),
            "2024-01-31 12:05:09.123"
        );
        assert_eq!(
            binlog(MyValue::Date(2024, 1, 31, 0, 0, 0, 0), &ColumnKind::Date),
            "2024-01-31"
        );
        assert_eq!(
            binlog(
                MyValue::Time(true, 1, 2, 3, 4, 500_000),
                &ColumnKind::Time { fsp: 6 }
            ),
            "-26:03:04.500000"
        );
        let timestamp = ColumnKind::Timestamp { fsp: 6 };
        assert_eq!(
            binlog(MyValue::Bytes(b"1704067200.000042".to_vec()), &timestamp),
            "2024-01-01 00:00:00.000042"
        );
        assert_eq!(
            binlog(
                MyValue::Bytes(b"1704067200".to_vec()),
                &ColumnKind::Timestamp { fsp: 0 }
            ),
            "2024-01-01 00:00:00"
        );
    }

    #[test]
    fn labels_bits_and_bytes_print_as_mysql_shows_them() {
        let labels = vec!["small".to_string(), "large".to_string()];
        assert_eq!(
            binlog(MyValue::Int(2), &ColumnKind::Enum(labels.clone())),
            "large"
        );
        assert_eq!(
            binlog(MyValue::Bytes(vec![0b11]), &ColumnKind::Set(labels.clone())),
            "small,large"
        );
        assert_eq!(
            text_to_json(MyValue::Bytes(b"small".to_vec()), &ColumnKind::Enum(labels)),
            "small"
        );
        assert_eq!(
            binlog(MyValue::Bytes(vec![0b101]), &ColumnKind::Bit { bits: 5 }),
            "00101"
        );
        assert_eq!(
            binlog(
                MyValue::Bytes(vec![0, 255]),
                &ColumnKind::Binary { pad_to: None }
            ),
            "\\x00ff"
        );
        assert_eq!(
            binlog(
                MyValue::Bytes(vec![1]),
                &ColumnKind::Binary { pad_to: Some(2) }
            ),
            "\\x0100"
        );
        let unsigned = ColumnKind::Integer {
            unsigned_bits: Some(64),
        };
        assert_eq!(binlog(MyValue::Int(-1), &unsigned), u64::MAX);
        let small = ColumnKind::Integer {
            unsigned_bits: Some(8),
        };
        assert_eq!(binlog(MyValue::Int(-1), &small), 255);
        assert_eq!(
            binlog(
                MyValue::Bytes(vec![0xe9]),
                &ColumnKind::Text { latin1: true }
            ),
            "é"
        );
        assert_eq!(binlog(MyValue::Float(0.1), &ColumnKind::Float), 0.1);
        assert_eq!(
            binlog(MyValue::Bytes(b"1900".to_vec()), &ColumnKind::Year),
            0
        );
        assert_eq!(
            text_to_json(
                MyValue::Bytes(b"18446744073709551615".to_vec()),
                &ColumnKind::Integer {
                    unsigned_bits: None
                }
            ),
            u64::MAX
        );
    }
}
