//! PostgreSQL polling listener, for users without replication rights.
//!
//! Every `interval_ms` one REPEATABLE READ read-only transaction reads the primary key and the
//! `cursor_column` of every row, compares them with the previous poll, and reads the full rows
//! whose cursor moved. A new key is an insert, a moved cursor an update, a vanished key a
//! delete. Comparing whole states (rather than reading `cursor > last`) is what makes polling
//! sound: a row whose transaction commits after a later-stamped row was read still shows up
//! as a change on the next poll, whatever its cursor value. The cost is one scan of (key,
//! cursor) per poll, bounded by `max_tracked_rows` (documented in README).
//!
//! Every query runs on the simple query protocol, whose results come in text format: each
//! value as its type's output function prints it, which is what pgoutput sends, so polling and
//! logical print the same JSON for the same value ([`super::value`]). (A `col::text` cast is
//! not the output function for every type: `char(5)` loses its padding, `inet` gains a `/128`
//! mask, `bool` spells `true`.) Generated columns are ordinary columns to a `SELECT`: polling
//! reads them.
//!
//! A listener whose `table` is a scope (`public.*`, a list, `exclude`) polls every matching
//! table in one transaction per poll: see [`scoped`]. One table named exactly is polled here,
//! its position the plain cursor text.

mod scoped;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{StreamExt, pin_mut};
use serde_json::Value;
use tokio_postgres::{Client, IsolationLevel, SimpleQueryMessage, SimpleQueryRow};

use crate::change::{ChangeEvent, Columns, Op, RawJsonColumns, Row};
use crate::registry::Control;
use crate::source::polling::{self, PollingOptions};
use crate::source::postgres::scope::{Scope, Shape};
use crate::source::postgres::value::{is_json, text_to_json};
use crate::source::postgres::{TableName, classify, connect, quote_ident, quote_literal};
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

/// A column of the watched table.
#[derive(Debug, Clone)]
struct ColumnInfo {
    name: String,
    type_oid: u32,
}

/// The prepared shape of the table: columns, which are the key, and the SQL to read it.
struct TableShape {
    columns: Vec<ColumnInfo>,
    /// Indexes into `columns`, in primary-key order.
    key_columns: Vec<usize>,
    /// The names of `columns`, and of the key's, shared by every row.
    names: Columns,
    key_names: Columns,
    /// The json and jsonb columns of the table and of the key, embedded as written.
    raw_json: RawJsonColumns,
    key_raw_json: RawJsonColumns,
    cursor_column: usize,
    /// `SELECT key…, cursor FROM t ORDER BY cursor`
    state_sql: String,
    /// `SELECT col… FROM t`
    select_sql: String,
    /// `SELECT col… FROM t WHERE cursor >= `: [`TableShape::rows_sql`] adds the rest.
    rows_sql: String,
    /// The cursor column's type, as the catalog spells it.
    cursor_type: String,
    /// `ORDER BY cursor, key…`
    rows_order: String,
}

impl TableShape {
    /// `SELECT col… FROM t WHERE cursor >= '<from>'::type ORDER BY cursor, key…`: the full
    /// rows from a cursor value (its output text, read back by the type's input function).
    fn rows_sql(&self, from: &str) -> String {
        format!(
            "{}{}::{} {}",
            self.rows_sql,
            quote_literal(from),
            self.cursor_type,
            self.rows_order
        )
    }

    /// `SELECT col… FROM t ORDER BY cursor, key…`: every row in full.
    fn all_rows_sql(&self) -> String {
        format!("{} {}", self.select_sql, self.rows_order)
    }
}

/// The key columns' text joined by a separator no key text holds (PostgreSQL text cannot
/// contain NUL).
type RowKey = String;
/// Each row's cursor text; `None` for a NULL cursor.
type RowState = HashMap<RowKey, Option<String>>;

async fn run(ctx: &mut SourceContext) -> Result<(), SourceError> {
    let (options, cursor_column) = PollingOptions::parse(&ctx.config().options)?;
    let config = ctx.config();
    let scope = Scope::parse(&config.table, &config.exclude).map_err(SourceError::permanent)?;
    match scope.shape() {
        Shape::One(table) => run_one(ctx, options, cursor_column, table).await,
        _ => scoped::run(ctx, options, cursor_column, scope).await,
    }
}

/// One table named exactly: its position is the plain cursor text.
async fn run_one(
    ctx: &mut SourceContext,
    options: PollingOptions,
    cursor_column: String,
    table: TableName,
) -> Result<(), SourceError> {
    let mut client = connect(&ctx.url).await?;
    let shape = describe(&client, &table, &cursor_column, ctx).await?;
    let table_label: Arc<str> = ctx.config().table.as_str().into();
    let interval = Duration::from_millis(options.interval_ms);

    // After a restart, rows whose cursor passed the saved one changed while we were away.
    let mut resume_after = ctx.load_position()?;
    // The position of the last poll that found rows: that of a poll that finds none.
    let mut last_position = resume_after.clone();
    let mut previous: Option<RowState> = None;
    let mut pending = PendingPositions::default();

    loop {
        let poll = poll_once(
            &mut client,
            &shape,
            options.max_tracked_rows,
            previous.as_ref(),
            last_position.as_deref(),
        )
        .await;
        let poll = poll.map_err(|error| match error {
            PollError::Sql(error) => classify(&error, &ctx.url),
            PollError::TooManyRows => SourceError::permanent(format!(
                "the table has more than max_tracked_rows = {} rows; polling compares every \
                 row's key and cursor each poll: raise max_tracked_rows or use strategy = \
                 \"logical\"",
                options.max_tracked_rows
            )),
        })?;
        let mut changes = Vec::new();
        match &previous {
            Some(_) => changes.extend(poll.changes),
            None => {
                if let Some(saved) = resume_after.take() {
                    changes.extend(changed_since(&client, &shape, &saved, &ctx.url).await?);
                }
            }
        }
        if previous.is_none() {
            // A listener paused from the start has its baseline now, and sends nothing (not
            // even what changed while cdc-tui was down) until it is resumed.
            while ctx.control() != Control::Run {
                ctx.idle_until(tokio::time::Instant::now()).await?;
            }
            // Running means capturing: announced once the first poll fixed the baseline.
            ctx.set_running();
        }
        previous = Some(poll.state);
        for (op, key, after, position) in changes {
            let change = polled_change(table_label.clone(), op, key, after, position);
            if let Err(error) = ctx.emit(change).await {
                return finish(ctx, &mut pending, error).await;
            }
        }
        if let Some(max) = poll.max_cursor {
            last_position = Some(max.clone());
            pending.push(ctx.last_sent_seq(), max);
        }
        save_flushed(ctx, &mut pending)?;

        // Wait for the next poll (or a resume), saving positions as their batches flush.
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

/// Saves the newest position whose changes are all flushed.
fn save_flushed(
    ctx: &SourceContext,
    pending: &mut PendingPositions<String>,
) -> Result<(), SourceError> {
    match pending.take_flushed(ctx.flushed_seq()) {
        Some(position) => ctx.save_position(&position),
        None => Ok(()),
    }
}

/// On a stop, waits for the changes in flight to flush and saves their position.
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
    Sql(tokio_postgres::Error),
    /// The rows read passed the budget of rows a poll may compare.
    TooManyRows,
}

impl From<tokio_postgres::Error> for PollError {
    fn from(error: tokio_postgres::Error) -> Self {
        PollError::Sql(error)
    }
}

/// A change found by comparing polls: op, key, row after (none for a delete), cursor.
type FoundChange = (Op, Row, Option<Row>, String);

struct Poll {
    state: RowState,
    changes: Vec<FoundChange>,
    max_cursor: Option<String>,
}

/// One poll of one table in its own REPEATABLE READ read-only transaction.
async fn poll_once(
    client: &mut Client,
    shape: &TableShape,
    max_tracked_rows: usize,
    previous: Option<&RowState>,
    last_position: Option<&str>,
) -> Result<Poll, PollError> {
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let poll = poll_table(
        transaction.client(),
        shape,
        max_tracked_rows,
        previous,
        last_position,
    )
    .await?;
    transaction.commit().await?;
    Ok(poll)
}

/// Reads the state of the table and, given the previous state, the changes since, on a
/// client inside the caller's REPEATABLE READ transaction (one snapshot for every table the
/// caller reads in it). At most `budget` rows are compared (else `TooManyRows`). A deleted
/// row is reported at the poll's position: the highest cursor in the table, or
/// `last_position` (the last poll's) when no row is left, as after a TRUNCATE.
async fn poll_table(
    client: &Client,
    shape: &TableShape,
    budget: usize,
    previous: Option<&RowState>,
    last_position: Option<&str>,
) -> Result<Poll, PollError> {
    let mut state = RowState::with_capacity(previous.map_or(0, HashMap::len));
    let rows = client.simple_query_raw(&shape.state_sql).await?;
    pin_mut!(rows);
    let key_count = shape.key_columns.len();
    // Rows come in cursor order, so the first moved row holds the lowest moved cursor: the
    // bound for reading the moved rows in full; and the last non-NULL cursor (NULLs come
    // last) is the highest, what `max(cursor)` would say.
    let mut moved = std::collections::HashSet::new();
    let mut low: Option<String> = None;
    let mut max_cursor: Option<String> = None;
    while let Some(message) = rows.next().await {
        let SimpleQueryMessage::Row(row) = message? else {
            continue;
        };
        if state.len() >= budget {
            return Err(PollError::TooManyRows);
        }
        let mut key = String::new();
        for index in 0..key_count {
            if index > 0 {
                key.push('\0');
            }
            key.push_str(row.get(index).unwrap_or(""));
        }
        let cursor = row.get(key_count).map(str::to_owned);
        if cursor.is_some() {
            max_cursor.clone_from(&cursor);
        }
        if previous.is_some_and(|previous| previous.get(&key) != Some(&cursor)) {
            if low.is_none() {
                low.clone_from(&cursor);
            }
            moved.insert(key.clone());
        }
        state.insert(key, cursor);
    }

    let mut changes = Vec::new();
    if let Some(previous) = previous {
        if let Some(low) = low {
            let rows = text_rows(client, &shape.rows_sql(&low)).await?;
            for row in rows {
                let (key_text, key, after, cursor) = row_values(shape, &row);
                if !moved.contains(&key_text) || state.get(&key_text) != Some(&cursor) {
                    continue;
                }
                let op = if previous.contains_key(&key_text) {
                    Op::Update
                } else {
                    Op::Insert
                };
                changes.push((op, key, Some(after), cursor.unwrap_or_default()));
            }
        }
        let mut deleted: Vec<&RowKey> = previous
            .keys()
            .filter(|key| !state.contains_key(*key))
            .collect();
        deleted.sort();
        let position = max_cursor.as_deref().or(last_position).unwrap_or_default();
        for key_text in deleted {
            let key = key_row(shape, key_text);
            changes.push((Op::Delete, key, None, position.to_string()));
        }
    }
    Ok(Poll {
        state,
        changes,
        max_cursor,
    })
}

/// Rows whose cursor reached the saved one (after a restart): reported as updates, since
/// whether each was inserted or updated while we were away is unknown. Rows at the saved
/// cursor itself are included: delivered again rather than possibly missed.
async fn changed_since(
    client: &Client,
    shape: &TableShape,
    saved: &str,
    url: &crate::secret::DatabaseUrl,
) -> Result<Vec<FoundChange>, SourceError> {
    rows_as_updates(client, shape, &shape.rows_sql(saved))
        .await
        .map_err(|error| classify(&error, url))
}

/// The rows a query reads, each reported as an update at its cursor.
async fn rows_as_updates(
    client: &Client,
    shape: &TableShape,
    sql: &str,
) -> Result<Vec<FoundChange>, tokio_postgres::Error> {
    let rows = text_rows(client, sql).await?;
    Ok(rows
        .iter()
        .map(|row| row_values(shape, row))
        .map(|(_, key, after, cursor)| {
            let cursor = cursor.unwrap_or_default();
            (Op::Update, key, Some(after), cursor)
        })
        .collect())
}

/// The rows of a query, in text format (see the module's comment).
async fn text_rows(
    client: &Client,
    sql: &str,
) -> Result<Vec<SimpleQueryRow>, tokio_postgres::Error> {
    let messages = client.simple_query(sql).await?;
    Ok(messages
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect())
}

/// (key text, key, row, cursor text) of one full row.
fn row_values(shape: &TableShape, row: &SimpleQueryRow) -> (RowKey, Row, Row, Option<String>) {
    let values: Vec<Value> = (shape.columns.iter().enumerate())
        .map(|(index, column)| {
            row.get(index)
                .map_or(Value::Null, |text| text_to_json(column.type_oid, text))
        })
        .collect();
    let mut key_text = String::new();
    for (position, &index) in shape.key_columns.iter().enumerate() {
        if position > 0 {
            key_text.push('\0');
        }
        key_text.push_str(row.get(index).unwrap_or(""));
    }
    let key = shape.key_columns.iter().map(|&index| values[index].clone());
    let key =
        Row::new(Arc::clone(&shape.key_names), key.collect()).with_raw_json(&shape.key_raw_json);
    let cursor = row.get(shape.cursor_column).map(str::to_owned);
    let after = Row::new(Arc::clone(&shape.names), values).with_raw_json(&shape.raw_json);
    (key_text, key, after, cursor)
}

/// The key of a deleted row, from its key text.
fn key_row(shape: &TableShape, key_text: &str) -> Row {
    let values = (shape.key_columns.iter().zip(key_text.split('\0')))
        .map(|(&index, text)| text_to_json(shape.columns[index].type_oid, text))
        .collect();
    Row::new(Arc::clone(&shape.key_names), values).with_raw_json(&shape.key_raw_json)
}

/// A column as the catalog describes it: what a table's shape is built from, and compared
/// poll to poll (by a scope) to tell a changed table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CatalogColumn {
    name: String,
    type_oid: u32,
    /// As `format_type()` spells it, with its modifier.
    type_name: String,
    /// Its place in the primary key, from 1.
    key_position: Option<i32>,
}

impl CatalogColumn {
    /// From a row of `name, type oid, format_type, array_position(indkey, attnum)` at `from`.
    fn from_row(row: &tokio_postgres::Row, from: usize) -> CatalogColumn {
        CatalogColumn {
            name: row.get(from),
            type_oid: row.get(from + 1),
            type_name: row.get(from + 2),
            key_position: row.get(from + 3),
        }
    }
}

/// Why a table cannot be polled.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unfit {
    NoPrimaryKey,
    NoCursorColumn,
}

/// Reads the table's columns and primary key from the catalog and prepares the SQL.
async fn describe(
    client: &Client,
    table: &TableName,
    cursor_column: &str,
    ctx: &SourceContext,
) -> Result<TableShape, SourceError> {
    let rows = client
        .query(
            "SELECT a.attname, a.atttypid, format_type(a.atttypid, a.atttypmod), \
                    array_position(i.indkey::int2[], a.attnum) \
             FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(|error| classify(&error, &ctx.url))?;
    if rows.is_empty() {
        return Err(SourceError::permanent(format!(
            "table {} does not exist (or this user cannot see it)",
            table.display_name()
        )));
    }
    let columns: Vec<CatalogColumn> = rows
        .iter()
        .map(|row| CatalogColumn::from_row(row, 0))
        .collect();
    build_shape(table, &columns, cursor_column).map_err(|unfit| match unfit {
        Unfit::NoPrimaryKey => SourceError::permanent(format!(
            "table {table} has no primary key: polling needs one to tell updates and deletes"
        )),
        Unfit::NoCursorColumn => SourceError::permanent(format!(
            "table {table} has no column {} (cursor_column)",
            quote_ident(cursor_column)
        )),
    })
}

/// The shape of a table from its catalog columns (in column order), with the SQL to read it.
fn build_shape(
    table: &TableName,
    catalog: &[CatalogColumn],
    cursor_column: &str,
) -> Result<TableShape, Unfit> {
    let mut columns = Vec::with_capacity(catalog.len());
    let mut keyed = Vec::new();
    let mut cursor = None;
    for (index, column) in catalog.iter().enumerate() {
        if let Some(position) = column.key_position {
            keyed.push((position, index));
        }
        if column.name == cursor_column {
            cursor = Some((index, column.type_name.clone()));
        }
        columns.push(ColumnInfo {
            name: column.name.clone(),
            type_oid: column.type_oid,
        });
    }
    keyed.sort();
    let key_columns: Vec<usize> = keyed.into_iter().map(|(_, index)| index).collect();
    if key_columns.is_empty() {
        return Err(Unfit::NoPrimaryKey);
    }
    let (cursor_index, cursor_type) = cursor.ok_or(Unfit::NoCursorColumn)?;

    let quoted = table.quoted();
    let cursor_sql = quote_ident(cursor_column);
    // The columns themselves, no casts: the text-format results are their output text.
    let column_list = |indexes: &mut dyn Iterator<Item = usize>| {
        let mut list = String::new();
        for (n, index) in indexes.enumerate() {
            if n > 0 {
                list.push_str(", ");
            }
            list.push_str(&quote_ident(&columns[index].name));
        }
        list
    };
    let state_sql = format!(
        "SELECT {}, {cursor_sql} FROM {quoted} ORDER BY {cursor_sql} NULLS LAST",
        column_list(&mut key_columns.iter().copied())
    );
    let key_order = key_columns
        .iter()
        .map(|&index| quote_ident(&columns[index].name))
        .collect::<Vec<_>>()
        .join(", ");
    let select_sql = format!(
        "SELECT {} FROM {quoted}",
        column_list(&mut (0..columns.len()))
    );
    // `cursor_type` comes from format_type(), the catalog's own spelling of the type.
    let rows_sql = format!("{select_sql} WHERE {cursor_sql} >= ");
    let rows_order = format!("ORDER BY {cursor_sql}, {key_order}");
    let names = columns.iter().map(|c| c.name.as_str().into()).collect();
    let key_names = key_columns
        .iter()
        .map(|&index| columns[index].name.as_str().into())
        .collect();
    let json = |indexes: &mut dyn Iterator<Item = usize>| -> RawJsonColumns {
        let flags: Vec<bool> = indexes
            .map(|index| is_json(columns[index].type_oid))
            .collect();
        flags.contains(&true).then(|| flags.into())
    };
    let raw_json = json(&mut (0..columns.len()));
    let key_raw_json = json(&mut key_columns.iter().copied());
    Ok(TableShape {
        columns,
        key_columns,
        names,
        key_names,
        raw_json,
        key_raw_json,
        cursor_column: cursor_index,
        state_sql,
        select_sql,
        rows_sql,
        cursor_type,
        rows_order,
    })
}

/// A change found by comparing two polls: polling sees no transactions, no commit time and no
/// before image (it knows only the state at each poll).
fn polled_change(
    table: Arc<str>,
    op: Op,
    key: Row,
    after: Option<Row>,
    position: String,
) -> ChangeEvent {
    ChangeEvent {
        table,
        op,
        key: Some(key),
        old_key: None,
        before: None,
        after,
        extensions: Default::default(),
        position: position.into(),
        commit_time: None,
        tx: None,
    }
}
