//! The listener keys every polling strategy takes (PostgreSQL's and MySQL's `polling`):
//! `cursor_column`, `interval_ms` and `max_tracked_rows`, checked alike and offered alike in
//! the add dialog.

use serde::Deserialize;

use crate::source::kind::parse_options;
use crate::source::{OptionError, Prompt};

pub const DEFAULT_INTERVAL_MS: u64 = 500;
pub const DEFAULT_MAX_TRACKED_ROWS: usize = 200_000;

/// The keys, for `Strategy::option_keys`.
pub const OPTION_KEYS: &[&str] = &["cursor_column", "interval_ms", "max_tracked_rows"];

/// What the add dialog asks, for `Strategy::prompts`.
pub const PROMPTS: &[Prompt] = &[Prompt {
    key: "cursor_column",
    label: "cursor",
    default: "updated_at",
    help: "a column that increases on every insert and update",
}];

/// The strategy's note, for `Strategy::note`.
pub const NOTE: &str = "queries the table by a cursor column";

/// A polling listener's keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollingOptions {
    /// A column that increases on insert and update.
    cursor_column: Option<String>,
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// The most rows a poll compares to find updates and deletes.
    #[serde(default = "default_max_tracked_rows")]
    pub max_tracked_rows: usize,
}

fn default_interval_ms() -> u64 {
    DEFAULT_INTERVAL_MS
}

fn default_max_tracked_rows() -> usize {
    DEFAULT_MAX_TRACKED_ROWS
}

impl PollingOptions {
    /// The keys and the cursor column, which is required.
    pub fn parse(options: &toml::Table) -> Result<(PollingOptions, String), OptionError> {
        let parsed: PollingOptions = parse_options(options)?;
        let cursor_column = match &parsed.cursor_column {
            None => {
                return Err(OptionError::new(
                    "cursor_column",
                    "polling needs a cursor_column that increases on insert and update",
                ));
            }
            Some(column) if column.is_empty() => {
                return Err(OptionError::new("cursor_column", "must not be empty"));
            }
            Some(column) => column.clone(),
        };
        if parsed.interval_ms == 0 {
            return Err(OptionError::new("interval_ms", "must be at least 1"));
        }
        if parsed.max_tracked_rows == 0 {
            return Err(OptionError::new("max_tracked_rows", "must be at least 1"));
        }
        Ok((parsed, cursor_column))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(PollingOptions, String), OptionError> {
        PollingOptions::parse(&toml::from_str(text).unwrap())
    }

    #[test]
    fn the_cursor_is_required_and_numbers_positive() {
        let (options, cursor) = parse("cursor_column = \"updated_at\"").unwrap();
        assert_eq!(cursor, "updated_at");
        assert_eq!(options.interval_ms, DEFAULT_INTERVAL_MS);
        assert_eq!(options.max_tracked_rows, DEFAULT_MAX_TRACKED_ROWS);
        for (text, key) in [
            ("", "cursor_column"),
            ("cursor_column = \"\"", "cursor_column"),
            ("cursor_column = \"u\"\ninterval_ms = 0", "interval_ms"),
            (
                "cursor_column = \"u\"\nmax_tracked_rows = 0",
                "max_tracked_rows",
            ),
        ] {
            assert_eq!(parse(text).unwrap_err().key, key, "{text:?}");
        }
    }
}
