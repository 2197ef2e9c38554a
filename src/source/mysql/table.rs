//! A table's shape as `information_schema` gives it: column names, how each column's values
//! print (see [`super::value`]), and the primary key.

use std::sync::Arc;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::change::{Columns, RawJsonColumns};
use crate::secret::DatabaseUrl;
use crate::source::SourceError;
use crate::source::mysql::{classify, scope};

/// How a column's values print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnKind {
    /// TINYINT … BIGINT: a JSON number. The binlog says nothing of signedness (unless
    /// `binlog_row_metadata = FULL`), so an UNSIGNED column's width in bits is kept to read a
    /// value decoded as negative.
    Integer { unsigned_bits: Option<u32> },
    /// DECIMAL: a string, every digit kept.
    Decimal,
    /// FLOAT, DOUBLE: a JSON number.
    Float,
    /// DATE: `2024-01-31`.
    Date,
    /// TIME: `-838:59:59.000000`, fractional digits as declared.
    Time { fsp: u32 },
    /// DATETIME: `2024-01-31 12:00:00.123`, fractional digits as declared.
    DateTime { fsp: u32 },
    /// TIMESTAMP: as DATETIME, in UTC.
    Timestamp { fsp: u32 },
    /// YEAR: a JSON number.
    Year,
    /// CHAR, VARCHAR, TEXT in a character set.
    Text { latin1: bool },
    /// BINARY, VARBINARY, BLOB, and anything else without a character set: `\x` and hex.
    /// BINARY(n) is padded with zero bytes to n, as the server returns it (the binlog drops
    /// trailing zeros).
    Binary { pad_to: Option<usize> },
    /// BIT(n): `0101`, n digits.
    Bit { bits: u32 },
    /// ENUM: its label.
    Enum(Vec<String>),
    /// SET: its labels, comma-separated as MySQL prints them.
    Set(Vec<String>),
    /// JSON (MySQL's type, or MariaDB's LONGTEXT with a `json_valid` check): embedded as is.
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// As `information_schema` spells the type: `varchar(20)`, for schema notes.
    pub column_type: String,
    pub kind: ColumnKind,
}

/// A table's shape.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// `db.table`, as changes name it.
    pub label: Arc<str>,
    pub columns: Vec<ColumnInfo>,
    /// Indexes into `columns`, in primary-key order; empty without a primary key.
    pub key: Vec<usize>,
    pub names: Columns,
    pub key_names: Columns,
    pub raw_json: RawJsonColumns,
    pub key_raw_json: RawJsonColumns,
}

/// `information_schema.COLUMNS` of one table: name, data type, column type, character set,
/// fractional seconds.
type ColumnRow = (String, String, String, Option<String>, Option<u64>);

impl TableInfo {
    /// Reads the table's shape; `None` when it does not exist (or this user cannot see it).
    pub async fn read(
        conn: &mut Conn,
        database: &str,
        table: &str,
        url: &DatabaseUrl,
    ) -> Result<Option<TableInfo>, SourceError> {
        let rows: Vec<ColumnRow> = conn
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, \
                        DATETIME_PRECISION \
                 FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (database, table),
            )
            .await
            .map_err(|error| classify(&error, url))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let key_names: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
                 ORDER BY ORDINAL_POSITION",
                (database, table),
            )
            .await
            .map_err(|error| classify(&error, url))?;
        // MariaDB's JSON is LONGTEXT checked by json_valid(`col`); MySQL 8's view has no
        // TABLE_NAME column here, and its JSON columns say so in DATA_TYPE.
        let checks: Vec<String> = conn
            .exec(
                "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
                (database, table),
            )
            .await
            .unwrap_or_default();
        let columns = rows
            .into_iter()
            .map(|(name, data_type, column_type, charset, fsp)| {
                let json_checked = checks
                    .iter()
                    .any(|check| check.trim() == format!("json_valid({})", quote_name(&name)));
                let kind = column_kind(&data_type, &column_type, charset.as_deref(), fsp);
                let kind = if json_checked { ColumnKind::Json } else { kind };
                ColumnInfo {
                    name,
                    column_type,
                    kind,
                }
            })
            .collect();
        Ok(Some(TableInfo::new(
            scope::display_name(database, table),
            columns,
            &key_names,
        )))
    }

    pub fn new(label: String, columns: Vec<ColumnInfo>, key_names: &[String]) -> TableInfo {
        let key: Vec<usize> = key_names
            .iter()
            .filter_map(|name| columns.iter().position(|column| &column.name == name))
            .collect();
        let names: Columns = columns.iter().map(|c| c.name.as_str().into()).collect();
        let key_columns: Columns = key
            .iter()
            .map(|&i| columns[i].name.as_str().into())
            .collect();
        let json = |indexes: &mut dyn Iterator<Item = usize>| -> RawJsonColumns {
            let flags: Vec<bool> = indexes
                .map(|index| columns[index].kind == ColumnKind::Json)
                .collect();
            flags.contains(&true).then(|| flags.into())
        };
        let raw_json = json(&mut (0..columns.len()));
        let key_raw_json = json(&mut key.iter().copied());
        TableInfo {
            label: label.into(),
            columns,
            key,
            names,
            key_names: key_columns,
            raw_json,
            key_raw_json,
        }
    }

    /// `added note (varchar(20)), dropped qty`: what differs from `old`; `None` if nothing.
    pub fn differences(&self, old: &TableInfo) -> Option<String> {
        let mut parts = Vec::new();
        for column in &self.columns {
            match old.columns.iter().find(|c| c.name == column.name) {
                None => parts.push(format!("added {} ({})", column.name, column.column_type)),
                Some(before) if before.column_type != column.column_type => parts.push(format!(
                    "{} is now {} (was {})",
                    column.name, column.column_type, before.column_type
                )),
                Some(_) => {}
            }
        }
        for column in &old.columns {
            if !self.columns.iter().any(|c| c.name == column.name) {
                parts.push(format!("dropped {}", column.name));
            }
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// `` `name` `` as MariaDB writes it in a check clause.
fn quote_name(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The kind of a column from its `DATA_TYPE` and `COLUMN_TYPE`.
pub fn column_kind(
    data_type: &str,
    column_type: &str,
    charset: Option<&str>,
    fsp: Option<u64>,
) -> ColumnKind {
    let fsp = u32::try_from(fsp.unwrap_or(0)).unwrap_or(0).min(6);
    match data_type.to_ascii_lowercase().as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => {
            let bits = match data_type.to_ascii_lowercase().as_str() {
                "tinyint" => 8,
                "smallint" => 16,
                "mediumint" => 24,
                "bigint" => 64,
                _ => 32,
            };
            ColumnKind::Integer {
                unsigned_bits: column_type.contains("unsigned").then_some(bits),
            }
        }
        "decimal" | "numeric" => ColumnKind::Decimal,
        "float" | "double" | "real" => ColumnKind::Float,
        "date" => ColumnKind::Date,
        "time" => ColumnKind::Time { fsp },
        "datetime" => ColumnKind::DateTime { fsp },
        "timestamp" => ColumnKind::Timestamp { fsp },
        "year" => ColumnKind::Year,
        "bit" => ColumnKind::Bit {
            bits: type_length(column_type).unwrap_or(1),
        },
        "enum" => ColumnKind::Enum(labels(column_type)),
        "set" => ColumnKind::Set(labels(column_type)),
        "json" => ColumnKind::Json,
        "binary" => ColumnKind::Binary {
            pad_to: type_length(column_type).map(|length| length as usize),
        },
        _ => match charset {
            Some(charset) if charset != "binary" => ColumnKind::Text {
                latin1: charset.starts_with("latin1"),
            },
            _ => ColumnKind::Binary { pad_to: None },
        },
    }
}

/// `bit(5)` → 5.
fn type_length(column_type: &str) -> Option<u32> {
    let (_, rest) = column_type.split_once('(')?;
    rest.split(')').next()?.trim().parse().ok()
}

/// `enum('a','it''s')` → `a`, `it's`.
fn labels(column_type: &str) -> Vec<String> {
    let Some((_, rest)) = column_type.split_once('(') else {
        return Vec::new();
    };
    let mut labels = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut label = String::new();
        loop {
            match chars.next() {
                Some('\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                    label.push('\'');
                }
                Some('\\') => {
                    if let Some(escaped) = chars.next() {
                        label.push(escaped);
                    }
                }
                Some('\'') | None => break,
                Some(c) => label.push(c),
            }
        }
        labels.push(label);
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_and_set_labels_are_read_from_the_column_type() {
        assert_eq!(labels("enum('a','it''s','b,c')"), ["a", "it's", "b,c"]);
        assert_eq!(
            column_kind("set", "set('x','y')", Some("utf8mb4"), None),
            ColumnKind::Set(vec!["x".into(), "y".into()])
        );
        assert_eq!(
            column_kind("bit", "bit(5)", None, None),
            ColumnKind::Bit { bits: 5 }
        );
        assert_eq!(
            column_kind("varbinary", "varbinary(4)", Some("binary"), None),
            ColumnKind::Binary { pad_to: None }
        );
        assert_eq!(
            column_kind("binary", "binary(3)", Some("binary"), None),
            ColumnKind::Binary { pad_to: Some(3) }
        );
        assert_eq!(
            column_kind("bigint", "bigint(20) unsigned", None, None),
            ColumnKind::Integer {
                unsigned_bits: Some(64)
            }
        );
        assert_eq!(
            column_kind("datetime", "datetime(3)", None, Some(3)),
            ColumnKind::DateTime { fsp: 3 }
        );
    }
}
