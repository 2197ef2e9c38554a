//! `strategy = "polling"`, for users without replication rights: the PostgreSQL polling
//! strategy's semantics on MySQL.
//!
//! Every `interval_ms` one read-only transaction `WITH CONSISTENT SNAPSHOT` reads the primary
//! key and the `cursor_column` of every row, compares them with the previous poll, and reads
//! the full rows whose cursor moved. A new key is an insert, a moved cursor an update, a
//! vanished key a delete. Comparing whole states (rather than reading `cursor > last`) finds
//! a row whose transaction committed after a later-stamped row was read. The cost is one scan
//! of (key, cursor) per poll, bounded by `max_tracked_rows`.
//!
//! Results come in the text protocol, in a session on UTC, so values print as the binlog
//! strategy prints them (see [`super::value`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value as MyValue};

use crate::change::{ChangeEvent, Op, Row};
use crate::registry::Control;
use crate::secret::DatabaseUrl;
use crate::source::mysql::scope::Scope;
use crate::source::mysql::table::TableInfo;
use crate::source::mysql::value::text_to_json;
use crate::source::mysql::{classify, connect, quote_ident, quote_literal};
use crate::source::polling::{self, PollingOptions};
use crate::source::{
    DRAIN_TIMEOUT, OptionError, PendingPositions, Prompt, SourceContext, SourceError, Strategy,
    Wake,
};

/// `strategy = "polling"`.
pub struct Polling;

impl Strategy for Polling {
    fn name(&self) -> &'static str {
        "polling"
    }

    fn note(&self) -> &'static str {
        polling::NOTE
    }

    fn option_keys(&self) -> &'static [&'static str] {
        polling::OPTION_KEYS
    }

    fn prompts(&self) -> &'static [Prompt] {
        polling::PROMPTS
    }

    fn check_options(&self, options: &toml::Table) -> Result<(), OptionError> {
        PollingOptions::parse(options).map(|_| ())
    }

    fn run<'a>(&'a self, ctx: &'a mut SourceContext) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(run(ctx))
    }
}

/// The table's shape with the SQL to read it.
struct Shape {
    info: TableInfo,
    cursor: usize,
    /// `SELECT key…, cursor FROM t ORDER BY cursor`
    state_sql: String,
    /// `SELECT col… FROM t WHERE cursor >= `, completed by [`Shape::rows_sql`].
    rows_sql: String,
    rows_order: String,
    max_sql: String,
}

impl Shape {
    fn rows_sql(&self, from: &[u8]) -> String {
        format!(
            "{}{} {}",
            self.rows_sql,
            quote_literal(&String::from_utf8_lossy(from)),
            self.rows_order
        )
    }
}

/// A row's key columns as the server printed them (`None`: NULL).
type RowKey = Vec<Option<Vec<u8>>>;
/// Each row's cursor text.
type RowState = HashMap<RowKey, Option<Vec<u8>>>;
/// A change found by comparing polls: op, key, row after (none for a delete), cursor.
type FoundChange = (Op, Row, Option<Row>, String);

fn text(value: &MyValue) -> Option<Vec<u8>> {
    match value {
        MyValue::NULL => None,
        MyValue::Bytes(bytes) => Some(bytes.clone()),
        other => Some(other.as_sql(true).into_bytes()),
    }
}

async fn run(ctx: &mut SourceContext) -> Result<(), SourceError> {
    let (options, cursor_column) = PollingOptions::parse(&ctx.config().options)?;
    let scope = Scope::parse(&ctx.config().table, &[]).map_err(SourceError::permanent)?;
    let (database, table) = scope.exact().ok_or_else(|| {
        SourceError::permanent(format!(
            "{}: polling watches one table (db.table), not a pattern",
            ctx.config().table
        ))
    })?;
    let url = ctx.url.clone();
    let mut conn = connect(&url).await?;
    conn.query_drop("SET time_zone = '+00:00'")
        .await
        .map_err(|error| classify(&error, &url))?;
    let shape = describe(&mut conn, &database, &table, &cursor_column, &url).await?;
    let label: Arc<str> = shape.info.label.clone();
    let interval = Duration::from_millis(options.interval_ms);

    let mut resume_after = ctx.load_position()?;
    let mut last_position = resume_after.clone();
    let mut previous: Option<RowState> = None;
    let mut pending = PendingPositions::default();
    loop {
        let poll = poll_once(
            &mut conn,
            &shape,
            options.max_tracked_rows,
            previous.as_ref(),
        )
        .await
        .map_err(|error| match error {
            PollError::Sql(error) => classify(&error, &url),
            PollError::Source(error) => error,
        })?;
        let mut changes = Vec::new();
        match &previous {
            Some(_) => changes.extend(poll.changes),
            None => {
                if let Some(saved) = resume_after.take() {
                    let rows = full_rows(&mut conn, &shape, saved.as_bytes())
                        .await
                        .map_err(|error| classify(&error, &url))?;
                    // Whether each was inserted or updated meanwhile is unknown: updates.
                    changes.extend(rows.into_iter().map(|(_, key, after, cursor)| {
                        (Op::Update, key, Some(after), cursor_text(&cursor))
                    }));
                }
                // Paused from the start: the baseline is taken, nothing sent until resumed.
                while ctx.control() != Control::Run {
                    ctx.idle_until(tokio::time::Instant::now()).await?;
                }
                ctx.set_running();
            }
        }
        previous = Some(poll.state);
        let deleted_at = poll
            .max_cursor
            .as_deref()
            .map(|max| String::from_utf8_lossy(max).into_owned())
            .or_else(|| last_position.clone())
            .unwrap_or_default();
        for (op, key, after, position) in changes {
            let position = if op == Op::Delete {
                deleted_at.clone()
            } else {
                position
            };
            let change = ChangeEvent {
                table: label.clone(),
                op,
                key: Some(key),
                old_key: None,
                before: None,
                after,
                extensions: Default::default(),
                position: position.into(),
                commit_time: None,
                tx: None,
            };
            if let Err(error) = ctx.emit(change).await {
                return finish(ctx, &mut pending, error).await;
            }
        }
        if let Some(max) = poll.max_cursor {
            let max = String::from_utf8_lossy(&max).into_owned();
            last_position = Some(max.clone());
            pending.push(ctx.last_sent_seq(), max);
        }
        save_flushed(ctx, &mut pending)?;
        let next_poll = tokio::time::Instant::now() + interval;
        loop {
            match ctx.idle_until(next_poll).await {
                Ok(Wake::Flushed) => save_flushed(ctx, &mut pending)?,
                Ok(_) => break,
                Err(error) => return finish(ctx, &mut pending, error).await,
            }
        }
    }
}

fn save_flushed(
    ctx: &SourceContext,
    pending: &mut PendingPositions<String>,
) -> Result<(), SourceError> {
    match pending.take_flushed(ctx.flushed_seq()) {
        Some(position) => ctx.save_position(&position),
        None => Ok(()),
    }
}

async fn finish(
    ctx: &mut SourceContext,
    pending: &mut PendingPositions<String>,
    error: SourceError,
) -> Result<(), SourceError> {
    if ctx.drain(DRAIN_TIMEOUT).await {
        save_flushed(ctx, pending)?;
    }
    Err(error)
}

enum PollError {
    Sql(mysql_async::Error),
    Source(SourceError),
}

impl From<mysql_async::Error> for PollError {
    fn from(error: mysql_async::Error) -> Self {
        PollError::Sql(error)
    }
}

struct Poll {
    state: RowState,
    changes: Vec<FoundChange>,
    max_cursor: Option<Vec<u8>>,
}

fn cursor_text(cursor: &Option<Vec<u8>>) -> String {
    cursor
        .as_deref()
        .map(|cursor| String::from_utf8_lossy(cursor).into_owned())
        .unwrap_or_default()
}

/// The table's state and, given the previous one, the changes since: all read in one
/// consistent snapshot.
async fn poll_once(
    conn: &mut Conn,
    shape: &Shape,
    max_tracked_rows: usize,
    previous: Option<&RowState>,
) -> Result<Poll, PollError> {
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await?;
    let result = poll_in_snapshot(conn, shape, max_tracked_rows, previous).await;
    // Read only: ending it either way leaves nothing behind.
    let ended = conn.query_drop("COMMIT").await;
    let poll = result?;
    ended?;
    Ok(poll)
}

async fn poll_in_snapshot(
    conn: &mut Conn,
    shape: &Shape,
    max_tracked_rows: usize,
    previous: Option<&RowState>,
) -> Result<Poll, PollError> {
    let rows: Vec<mysql_async::Row> = conn.query(&shape.state_sql).await?;
    if rows.len() > max_tracked_rows {
        return Err(PollError::Source(SourceError::permanent(format!(
            "the table has more than max_tracked_rows = {max_tracked_rows} rows; polling \
             compares every row's key and cursor each poll: raise max_tracked_rows or use \
             strategy = \"binlog\""
        ))));
    }
    let key_count = shape.info.key.len();
    let mut state = RowState::with_capacity(rows.len());
    let mut moved = HashSet::new();
    // Rows come in cursor order: the first moved row holds the lowest moved cursor.
    let mut low: Option<Vec<u8>> = None;
    for row in rows {
        let values = row.unwrap();
        let key: RowKey = values[..key_count].iter().map(text).collect();
        let cursor = values.get(key_count).and_then(text);
        if previous.is_some_and(|previous| previous.get(&key) != Some(&cursor)) {
            if low.is_none() {
                low.clone_from(&cursor);
            }
            moved.insert(key.clone());
        }
        state.insert(key, cursor);
    }
    let max_cursor = conn
        .query_first::<mysql_async::Row, _>(&shape.max_sql)
        .await?
        .and_then(|row| row.as_ref(0).and_then(text));
    let mut changes = Vec::new();
    if let Some(previous) = previous {
        if let Some(low) = low {
            for (key_text, key, after, cursor) in full_rows(conn, shape, &low).await? {
                if !moved.contains(&key_text) || state.get(&key_text) != Some(&cursor) {
                    continue;
                }
                let op = if previous.contains_key(&key_text) {
                    Op::Update
                } else {
                    Op::Insert
                };
                changes.push((op, key, Some(after), cursor_text(&cursor)));
            }
        }
        let mut deleted: Vec<&RowKey> = previous
            .keys()
            .filter(|key| !state.contains_key(*key))
            .collect();
        deleted.sort();
        for key_text in deleted {
            changes.push((Op::Delete, key_row(shape, key_text), None, String::new()));
        }
    }
    Ok(Poll {
        state,
        changes,
        max_cursor,
    })
}

/// The full rows from a cursor value on: (key text, key, row, cursor text) of each.
async fn full_rows(
    conn: &mut Conn,
    shape: &Shape,
    from: &[u8],
) -> Result<Vec<(RowKey, Row, Row, Option<Vec<u8>>)>, mysql_async::Error> {
    let rows: Vec<mysql_async::Row> = conn.query(shape.rows_sql(from)).await?;
    let info = &shape.info;
    Ok(rows
        .into_iter()
        .map(|row| {
            let raw = row.unwrap();
            let key_text: RowKey = info.key.iter().map(|&index| text(&raw[index])).collect();
            let cursor = text(&raw[shape.cursor]);
            let values: Vec<serde_json::Value> = (raw.into_iter().zip(&info.columns))
                .map(|(value, column)| text_to_json(value, &column.kind))
                .collect();
            let key = info
                .key
                .iter()
                .map(|&index| values[index].clone())
                .collect();
            let key = Row::new(info.key_names.clone(), key).with_raw_json(&info.key_raw_json);
            let after = Row::new(info.names.clone(), values).with_raw_json(&info.raw_json);
            (key_text, key, after, cursor)
        })
        .collect())
}

/// The key of a deleted row, from its key text.
fn key_row(shape: &Shape, key_text: &RowKey) -> Row {
    let info = &shape.info;
    let values = (info.key.iter().zip(key_text))
        .map(|(&index, text)| {
            let value = text.clone().map_or(MyValue::NULL, MyValue::Bytes);
            text_to_json(value, &info.columns[index].kind)
        })
        .collect();
    Row::new(info.key_names.clone(), values).with_raw_json(&info.key_raw_json)
}

async fn describe(
    conn: &mut Conn,
    database: &str,
    table: &str,
    cursor_column: &str,
    url: &DatabaseUrl,
) -> Result<Shape, SourceError> {
    let label = crate::source::mysql::scope::display_name(database, table);
    let info = TableInfo::read(conn, database, table, url)
        .await?
        .ok_or_else(|| {
            SourceError::permanent(format!(
                "table {label} does not exist (or this user cannot see it)"
            ))
        })?;
    if info.key.is_empty() {
        return Err(SourceError::permanent(format!(
            "table {label} has no primary key: polling needs one to tell updates and deletes"
        )));
    }
    let cursor = (info.columns.iter())
        .position(|column| column.name == cursor_column)
        .ok_or_else(|| {
            SourceError::permanent(format!(
                "table {label} has no column {} (cursor_column)",
                quote_ident(cursor_column)
            ))
        })?;
    let quoted = format!("{}.{}", quote_ident(database), quote_ident(table));
    let cursor_sql = quote_ident(cursor_column);
    let list = |indexes: &mut dyn Iterator<Item = usize>| {
        indexes
            .map(|index| quote_ident(&info.columns[index].name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let key_list = list(&mut info.key.iter().copied());
    // NULL cursors sort first in MySQL; `IS NULL` puts them last, as PostgreSQL's NULLS LAST.
    let state_sql = format!(
        "SELECT {key_list}, {cursor_sql} FROM {quoted} ORDER BY {cursor_sql} IS NULL, {cursor_sql}"
    );
    let rows_sql = format!(
        "SELECT {} FROM {quoted} WHERE {cursor_sql} >= ",
        list(&mut (0..info.columns.len()))
    );
    let rows_order = format!("ORDER BY {cursor_sql}, {key_list}");
    let max_sql = format!("SELECT MAX({cursor_sql}) FROM {quoted}");
    Ok(Shape {
        info,
        cursor,
        state_sql,
        rows_sql,
        rows_order,
        max_sql,
    })
}
