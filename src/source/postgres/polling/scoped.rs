//! Polling a scope: every table matching the listener's patterns (less `exclude`) that has
//! the `cursor_column` and a primary key, all read in one REPEATABLE READ read-only
//! transaction per poll, so a poll is one consistent snapshot of the whole scope. Each table
//! is compared with its own previous state exactly as a single table is ([`super::poll_table`]):
//! a new key is an insert, a moved cursor an update, a vanished key a delete at the table's
//! poll position. Every change carries its table's label (`TableName::display_name`).
//!
//! # Tables coming and going
//!
//! Each poll lists the scope's tables and their columns in the same transaction. A table that
//! appears (made, renamed into the scope, or given the cursor column or a primary key) joins
//! with a `schema` note `joined`: the rows it holds at that poll are its baseline, not
//! inserts. One that disappears leaves with a note `left`. A table whose columns changed
//! gets a note `columns` and is read with its new shape from then on. Tables without the
//! cursor column, a primary key or the `SELECT` right are skipped, and the listener's detail
//! names them with the reason. A scope that matches no table is running with 0 tables, its
//! detail naming the tables there are.
//!
//! # Positions
//!
//! The saved position is one JSON object, table label → its cursor at the last poll whose
//! changes were all flushed (`null` for a table that had no cursor yet), saved only once the
//! changes up to it were flushed. After a restart each table listed there reports its rows
//! whose cursor reached the saved one as updates (every row, for `null`); a table not listed
//! (made while cdc-tui was not running) joins with its rows as the baseline. A table that
//! joins while running is written into the saved object at once with its baseline cursor
//! (no change of it was sent before), so a crash before the next save loses none of its
//! later changes.
//!
//! `max_tracked_rows` bounds the rows one poll compares over all the scope's tables together
//! (the memory a poll holds); the table whose rows pass it is named in the failure.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, IsolationLevel};

use super::{
    CatalogColumn, FoundChange, PollError, PollingOptions, RowState, TableShape, Unfit,
    build_shape, poll_table, rows_as_updates,
};
use crate::change::NoteKind;
use crate::registry::Control;
use crate::source::postgres::scope::Scope;
use crate::source::postgres::{TableName, classify, connect, quote_ident};
use crate::source::{DRAIN_TIMEOUT, PendingPositions, SourceContext, SourceError, Wake};

/// The saved position of a scope: each table's cursor (`None`: the table had none yet).
type Cursors = BTreeMap<String, Option<String>>;

/// How many tables a detail names before it says how many more there are.
const NAMED_IN_DETAIL: usize = 12;

/// How often a poll is tried again at once when a table changed under it (dropped, renamed
/// or altered between the listing and the read).
const CATALOG_RACE_RETRIES: usize = 3;

/// The tables this user can see, with whether it may read them: all of the database's, the
/// scope is matched here.
const LIST_SQL: &str = "SELECT c.oid, n.nspname::text, c.relname::text, \
        has_table_privilege(c.oid, 'SELECT') \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' \
     ORDER BY 2, 3";

/// The columns of the tables given by oid, in column order.
const COLUMNS_SQL: &str = "SELECT a.attrelid, a.attname::text, a.atttypid, \
        format_type(a.atttypid, a.atttypmod), array_position(i.indkey::int2[], a.attnum) \
     FROM pg_attribute a \
     LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary \
     WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY a.attrelid, a.attnum";

pub(super) async fn run(
    ctx: &mut SourceContext,
    options: PollingOptions,
    cursor_column: String,
    scope: Scope,
) -> Result<(), SourceError> {
    let mut client = connect(&ctx.url).await?;
    let saved = match ctx.load_position()? {
        None => None,
        Some(text) => Some(parse_cursors(&text).ok_or_else(|| {
            SourceError::permanent(format!(
                "the saved position of {} under {} is not a scope's (a JSON object of table \
                 to cursor): {text:?}; remove that file to start over",
                ctx.identity(),
                ctx.positions.dir().display()
            ))
        })?),
    };
    let interval = Duration::from_millis(options.interval_ms);
    let mut watch = Watch {
        scope,
        cursor_column,
        max_tracked_rows: options.max_tracked_rows,
        polled: BTreeMap::new(),
        skipped: BTreeMap::new(),
        here: Vec::new(),
        resume: saved.clone(),
        first: true,
    };
    let mut saving = Saving {
        on_disk: saved,
        pending: PendingPositions::default(),
        last_pushed: None,
    };
    let mut detail = None;

    loop {
        let poll = poll_scope(&mut client, &mut watch, ctx).await?;
        if poll.first {
            // As for one table: the baseline is fixed, and a listener paused from the start
            // sends nothing until it is resumed.
            while ctx.control() != Control::Run {
                ctx.idle_until(tokio::time::Instant::now()).await?;
            }
            ctx.set_running();
        }
        if !poll.joined.is_empty() {
            saving.add_joined(ctx, &watch, &poll.joined)?;
        }
        let now = watch.detail();
        if detail.as_ref() != Some(&now) {
            ctx.set_detail(Some(now.clone()));
            detail = Some(now);
        }
        for (table, change, detail) in poll.notes {
            let note = NoteKind::Schema {
                table: table.into(),
                change,
                detail,
            };
            if let Err(error) = ctx.note(note).await {
                return saving.finish(ctx, &watch, error).await;
            }
        }
        for (label, (op, key, after, position)) in poll.changes {
            let change = super::polled_change(label, op, key, after, position);
            if let Err(error) = ctx.emit(change).await {
                return saving.finish(ctx, &watch, error).await;
            }
        }
        saving.push(ctx.last_sent_seq(), watch.cursors());
        saving.save_flushed(ctx, &watch)?;

        let next_poll = tokio::time::Instant::now() + interval;
        loop {
            match ctx.idle_until(next_poll).await {
                Ok(Wake::Flushed) => saving.save_flushed(ctx, &watch)?,
                Ok(_) => break,
                Err(error) => return saving.finish(ctx, &watch, error).await,
            }
        }
    }
}

/// A saved scope position; `None` if the text is not one.
fn parse_cursors(text: &str) -> Option<Cursors> {
    serde_json::from_str(text).ok()
}

/// One poll, tried again at once (a few times) when a table changed between the listing and
/// its read: the next listing sees it as it is now.
async fn poll_scope(
    client: &mut Client,
    watch: &mut Watch,
    ctx: &SourceContext,
) -> Result<ScopePoll, SourceError> {
    let mut attempt = 0;
    loop {
        match watch.poll(client).await {
            Ok(read) => return Ok(watch.apply(read)),
            Err(ReadError::Sql(error)) if attempt < CATALOG_RACE_RETRIES && raced(&error) => {
                attempt += 1;
            }
            Err(ReadError::Sql(error)) => return Err(classify(&error, &ctx.url)),
            Err(ReadError::TooManyRows(table)) => {
                return Err(SourceError::permanent(format!(
                    "table {table} takes the scope {} past max_tracked_rows = {} rows (counted \
                     over all its tables); polling compares every row's key and cursor each \
                     poll: raise max_tracked_rows, exclude tables, or use strategy = \
                     \"logical\"",
                    watch.scope, watch.max_tracked_rows
                )));
            }
        }
    }
}

/// Why a poll of the scope did not finish.
enum ReadError {
    Sql(tokio_postgres::Error),
    /// The rows counted so far passed `max_tracked_rows` in this table.
    TooManyRows(String),
}

impl From<tokio_postgres::Error> for ReadError {
    fn from(error: tokio_postgres::Error) -> Self {
        ReadError::Sql(error)
    }
}

/// An error a table dropped, renamed or altered under a poll gives.
fn raced(error: &tokio_postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|code| [SqlState::UNDEFINED_TABLE, SqlState::UNDEFINED_COLUMN].contains(code))
}

/// What to report of a table at the first poll after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resume {
    /// Nothing: its rows are the baseline.
    Nothing,
    /// Its rows whose cursor reached this one, as updates.
    From(String),
    /// Every row, as updates (it had no cursor when saved).
    Everything,
}

/// A table being polled.
struct Polled {
    oid: u32,
    label: Arc<str>,
    columns: Vec<CatalogColumn>,
    shape: TableShape,
    state: RowState,
    /// The highest cursor of the last poll that found one.
    last_position: Option<String>,
}

/// The scope and the tables it held at the last poll.
struct Watch {
    scope: Scope,
    cursor_column: String,
    max_tracked_rows: usize,
    /// By label.
    polled: BTreeMap<String, Polled>,
    /// By label: the table's oid and why it is not polled.
    skipped: BTreeMap<String, (u32, String)>,
    /// Every table this user can see, for the detail of a scope that matches none.
    here: Vec<String>,
    /// The saved cursors, until the first poll has used them.
    resume: Option<Cursors>,
    first: bool,
}

/// What one poll read, before it is taken as the new state.
struct Read {
    here: Vec<String>,
    tables: Vec<ReadTable>,
    skipped: BTreeMap<String, (u32, String)>,
}

struct ReadTable {
    oid: u32,
    label: String,
    /// A shape built this poll (new table, or its columns changed); `None`: the one it had.
    reshaped: Option<(Vec<CatalogColumn>, TableShape)>,
    /// Its state had to start over (new, or its key changed).
    baseline: bool,
    state: RowState,
    max_cursor: Option<String>,
    changes: Vec<FoundChange>,
}

/// What a poll found, to send.
struct ScopePoll {
    first: bool,
    /// `schema` notes: table, change, detail.
    notes: Vec<(String, &'static str, String)>,
    changes: Vec<(Arc<str>, FoundChange)>,
    /// Tables that joined this poll (by label), to be saved with their baseline at once.
    joined: Vec<String>,
}

impl Watch {
    /// Lists the scope's tables and reads each polled one, all in one snapshot; changes
    /// nothing here until the transaction committed.
    async fn poll(&self, client: &mut Client) -> Result<Read, ReadError> {
        let transaction = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let listing = transaction.query(LIST_SQL, &[]).await?;
        let mut here = Vec::with_capacity(listing.len());
        let mut in_scope = Vec::new();
        for row in &listing {
            let table = TableName {
                schema: row.get(1),
                name: row.get(2),
            };
            here.push(table.display_name());
            if self.scope.matches(&table) {
                let readable: Option<bool> = row.get(3);
                in_scope.push((row.get::<_, u32>(0), table, readable.unwrap_or(false)));
            }
        }
        let oids: Vec<u32> = (in_scope.iter())
            .filter(|(_, _, readable)| *readable)
            .map(|(oid, _, _)| *oid)
            .collect();
        let mut columns: HashMap<u32, Vec<CatalogColumn>> = HashMap::new();
        if !oids.is_empty() {
            for row in transaction.query(COLUMNS_SQL, &[&oids]).await? {
                let oid: u32 = row.get(0);
                columns
                    .entry(oid)
                    .or_default()
                    .push(CatalogColumn::from_row(&row, 1));
            }
        }

        let mut read = Read {
            here,
            tables: Vec::new(),
            skipped: BTreeMap::new(),
        };
        let mut counted = 0;
        for (oid, table, readable) in in_scope {
            let label = table.display_name();
            let catalog = columns.remove(&oid).unwrap_or_default();
            let known = self.polled.get(&label).filter(|polled| polled.oid == oid);
            let fit = if !readable {
                Err("no SELECT privilege".to_string())
            } else if known.is_some_and(|polled| polled.columns == catalog) {
                Ok(None)
            } else {
                match build_shape(&table, &catalog, &self.cursor_column) {
                    Ok(shape) => Ok(Some((catalog, shape))),
                    Err(Unfit::NoPrimaryKey) => Err("no primary key".to_string()),
                    Err(Unfit::NoCursorColumn) => {
                        Err(format!("no column {}", quote_ident(&self.cursor_column)))
                    }
                }
            };
            let reshaped = match fit {
                Ok(reshaped) => reshaped,
                Err(why) => {
                    read.skipped.insert(label, (oid, why));
                    continue;
                }
            };
            let (shape, baseline) = match (&reshaped, known) {
                (Some((_, shape)), None) => (shape, true),
                (Some((_, shape)), Some(polled)) => {
                    (shape, key_names(&polled.shape) != key_names(shape))
                }
                (None, Some(polled)) => (&polled.shape, false),
                (None, None) => unreachable!("a table keeps its shape only when known"),
            };
            let previous = known.filter(|_| !baseline);
            let budget = self.max_tracked_rows.saturating_sub(counted);
            let poll = poll_table(
                transaction.client(),
                shape,
                budget,
                previous.map(|polled| &polled.state),
                previous.and_then(|polled| polled.last_position.as_deref()),
            )
            .await
            .map_err(|error| match error {
                PollError::Sql(error) => ReadError::Sql(error),
                PollError::TooManyRows => ReadError::TooManyRows(label.clone()),
            })?;
            counted += poll.state.len();
            let mut changes = poll.changes;
            if self.first {
                let sql = match self.resume_of(&label) {
                    Resume::Nothing => None,
                    Resume::From(saved) => Some(shape.rows_sql(&saved)),
                    Resume::Everything => Some(shape.all_rows_sql()),
                };
                if let Some(sql) = sql {
                    changes.extend(rows_as_updates(transaction.client(), shape, &sql).await?);
                }
            }
            read.tables.push(ReadTable {
                oid,
                label,
                reshaped,
                baseline,
                state: poll.state,
                max_cursor: poll.max_cursor,
                changes,
            });
        }
        transaction.commit().await?;
        Ok(read)
    }

    /// What a table reports at the first poll after a restart.
    fn resume_of(&self, label: &str) -> Resume {
        match self.resume.as_ref().and_then(|saved| saved.get(label)) {
            Some(Some(cursor)) => Resume::From(cursor.clone()),
            Some(None) => Resume::Everything,
            None => Resume::Nothing,
        }
    }

    /// Takes what a poll read as the new state, and says what changed in the scope.
    fn apply(&mut self, read: Read) -> ScopePoll {
        let first = std::mem::replace(&mut self.first, false);
        let resume = self.resume.take();
        let mut notes = Vec::new();
        let mut joined = Vec::new();
        let mut changes = Vec::new();
        let mut previous = std::mem::take(&mut self.polled);
        let previous_skipped = std::mem::take(&mut self.skipped);
        let joins = format!(
            "polled by {}; the rows it holds now are its baseline, not inserts",
            quote_ident(&self.cursor_column)
        );

        for table in read.tables {
            let known = previous.remove(&table.label);
            let (polled, arrival) = match (known, table.reshaped) {
                (Some(mut polled), None) if polled.oid == table.oid => {
                    polled.state = table.state;
                    (polled, None)
                }
                (known, Some((columns, shape))) => {
                    let arrival = match &known {
                        Some(old) if old.oid == table.oid => {
                            let mut detail = describe_columns_change(&old.columns, &columns);
                            if table.baseline {
                                detail.push_str(
                                    "; its key changed: the rows it holds now are its baseline",
                                );
                            }
                            Some(("columns", detail))
                        }
                        Some(_) => {
                            notes.push((
                                table.label.clone(),
                                "left",
                                "dropped or renamed".to_string(),
                            ));
                            Some(("joined", joins.clone()))
                        }
                        None if first && resume.is_none() => None,
                        None if first
                            && resume
                                .as_ref()
                                .is_some_and(|saved| saved.contains_key(&table.label)) =>
                        {
                            None
                        }
                        None => Some(("joined", joins.clone())),
                    };
                    let last_position = match known {
                        Some(old) if old.oid == table.oid => old.last_position,
                        _ => first
                            .then(|| resume.as_ref()?.get(&table.label).cloned().flatten())
                            .flatten(),
                    };
                    let polled = Polled {
                        oid: table.oid,
                        label: table.label.as_str().into(),
                        columns,
                        shape,
                        state: table.state,
                        last_position,
                    };
                    (polled, arrival)
                }
                (_, None) => unreachable!("a table read with its old shape was known"),
            };
            let mut polled = polled;
            if let Some(max) = table.max_cursor {
                polled.last_position = Some(max);
            }
            if let Some((change, detail)) = arrival {
                if change == "joined" {
                    joined.push(table.label.clone());
                }
                notes.push((table.label.clone(), change, detail));
            }
            changes.extend(
                (table.changes.into_iter()).map(|change| (Arc::clone(&polled.label), change)),
            );
            self.polled.insert(table.label, polled);
        }
        for (label, (oid, why)) in &read.skipped {
            match (previous.remove(label), previous_skipped.get(label)) {
                (Some(old), _) if old.oid == *oid => {
                    notes.push((label.clone(), "left", format!("no longer polled: {why}")));
                }
                (Some(_), _) => {
                    notes.push((label.clone(), "left", "dropped or renamed".to_string()));
                    notes.push((label.clone(), "joined", format!("not polled: {why}")));
                }
                (None, Some((old_oid, _))) if old_oid == oid => {}
                (None, Some(_)) => {
                    notes.push((label.clone(), "left", "dropped or renamed".to_string()));
                    notes.push((label.clone(), "joined", format!("not polled: {why}")));
                }
                (None, None) if first => {}
                (None, None) => {
                    notes.push((label.clone(), "joined", format!("not polled: {why}")));
                }
            }
        }
        for label in previous.keys() {
            notes.push((label.clone(), "left", "dropped or renamed".to_string()));
        }
        for label in previous_skipped.keys() {
            if !read.skipped.contains_key(label) && !self.polled.contains_key(label) {
                notes.push((label.clone(), "left", "dropped or renamed".to_string()));
            }
        }
        self.skipped = read.skipped;
        self.here = read.here;
        ScopePoll {
            first,
            notes,
            changes,
            joined,
        }
    }

    /// Each polled table's cursor now.
    fn cursors(&self) -> Cursors {
        (self.polled.iter())
            .map(|(label, polled)| (label.clone(), polled.last_position.clone()))
            .collect()
    }

    /// The listener's detail: the tables polled, those skipped and why, or that none match.
    fn detail(&self) -> String {
        if self.polled.is_empty() && self.skipped.is_empty() {
            return if self.here.is_empty() {
                format!(
                    "no table matches {}; this user sees no table in the database",
                    self.scope
                )
            } else {
                format!(
                    "no table matches {}; tables here: {}",
                    self.scope,
                    name_some(self.here.iter().map(String::as_str))
                )
            };
        }
        let count = self.polled.len();
        let mut detail = format!(
            "{count} table{} of {} polled by {}",
            if count == 1 { "" } else { "s" },
            self.scope,
            quote_ident(&self.cursor_column)
        );
        if count > 0 {
            detail.push_str(": ");
            detail.push_str(&name_some(self.polled.keys().map(String::as_str)));
        }
        if !self.skipped.is_empty() {
            let skipped: Vec<String> = (self.skipped.iter())
                .map(|(label, (_, why))| format!("{label} ({why})"))
                .collect();
            detail.push_str("; skipped: ");
            detail.push_str(&name_some(skipped.iter().map(String::as_str)));
        }
        detail
    }
}

/// The key column names of a shape, in key order.
fn key_names(shape: &TableShape) -> Vec<&str> {
    (shape.key_columns.iter())
        .map(|&index| shape.columns[index].name.as_str())
        .collect()
}

/// `a, b, c` and, past [`NAMED_IN_DETAIL`], `… and 7 more`.
fn name_some<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> String {
    let total = names.len();
    let mut text = names.take(NAMED_IN_DETAIL).collect::<Vec<_>>().join(", ");
    if total > NAMED_IN_DETAIL {
        text.push_str(&format!(" and {} more", total - NAMED_IN_DETAIL));
    }
    text
}

/// `added note (text), dropped qty`: what differs between two column lists of a table.
fn describe_columns_change(before: &[CatalogColumn], after: &[CatalogColumn]) -> String {
    let mut parts = Vec::new();
    for column in after {
        match before.iter().find(|old| old.name == column.name) {
            None => parts.push(format!("added {} ({})", column.name, column.type_name)),
            Some(old) if old.type_name != column.type_name => parts.push(format!(
                "retyped {} ({} to {})",
                column.name, old.type_name, column.type_name
            )),
            Some(old) if old.key_position != column.key_position => {
                parts.push(format!("key changed at {}", column.name));
            }
            Some(_) => {}
        }
    }
    for old in before {
        if !after.iter().any(|column| column.name == old.name) {
            parts.push(format!("dropped {}", old.name));
        }
    }
    if parts.is_empty() {
        parts.push("columns reordered".to_string());
    }
    parts.join(", ")
}

/// The scope's saved position: what is on disk, and the cursors waiting for their changes to
/// be flushed.
struct Saving {
    on_disk: Option<Cursors>,
    pending: PendingPositions<Cursors>,
    last_pushed: Option<Cursors>,
}

impl Saving {
    /// `cursors` may be saved once changes up to `seq` are flushed (queued only if new).
    fn push(&mut self, seq: u64, cursors: Cursors) {
        if self.last_pushed.as_ref() != Some(&cursors) {
            self.pending.push(seq, cursors.clone());
            self.last_pushed = Some(cursors);
        }
    }

    /// Saves the newest cursors whose changes are all flushed, as the tables polled now have
    /// them: a table that joined after those cursors were taken keeps what was saved for it.
    fn save_flushed(&mut self, ctx: &SourceContext, watch: &Watch) -> Result<(), SourceError> {
        let Some(mut cursors) = self.pending.take_flushed(ctx.flushed_seq()) else {
            return Ok(());
        };
        cursors.retain(|label, _| watch.polled.contains_key(label));
        if let Some(on_disk) = &self.on_disk {
            for label in watch.polled.keys() {
                if !cursors.contains_key(label)
                    && let Some(cursor) = on_disk.get(label)
                {
                    cursors.insert(label.clone(), cursor.clone());
                }
            }
        }
        self.save(ctx, cursors)
    }

    /// Tables that joined: saved at once with their baseline cursor (none of their changes
    /// was sent yet), beside what is saved for the others.
    fn add_joined(
        &mut self,
        ctx: &SourceContext,
        watch: &Watch,
        joined: &[String],
    ) -> Result<(), SourceError> {
        let mut cursors = self.on_disk.clone().unwrap_or_default();
        cursors.retain(|label, _| watch.polled.contains_key(label));
        for label in joined {
            if let Some(polled) = watch.polled.get(label) {
                cursors.insert(label.clone(), polled.last_position.clone());
            }
        }
        self.save(ctx, cursors)
    }

    fn save(&mut self, ctx: &SourceContext, cursors: Cursors) -> Result<(), SourceError> {
        if self.on_disk.as_ref() == Some(&cursors) {
            return Ok(());
        }
        let text = serde_json::to_string(&cursors)
            .map_err(|error| SourceError::permanent(format!("the position: {error}")))?;
        ctx.save_position(&text)?;
        self.on_disk = Some(cursors);
        Ok(())
    }

    /// On a stop, waits for the changes in flight to flush and saves their cursors.
    async fn finish(
        &mut self,
        ctx: &mut SourceContext,
        watch: &Watch,
        error: SourceError,
    ) -> Result<(), SourceError> {
        if ctx.drain(DRAIN_TIMEOUT).await {
            self.save_flushed(ctx, watch)?;
        }
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_cursors_are_a_json_object_of_table_to_cursor() {
        let cursors: Cursors = [
            (
                "public.a".to_string(),
                Some("2024-05-01 12:00:00+00".to_string()),
            ),
            ("\"Shop\".\"Order Items\"".to_string(), None),
        ]
        .into_iter()
        .collect();
        let text = serde_json::to_string(&cursors).unwrap();
        assert_eq!(
            text,
            r#"{"\"Shop\".\"Order Items\"":null,"public.a":"2024-05-01 12:00:00+00"}"#
        );
        assert_eq!(parse_cursors(&text), Some(cursors));
        // A single table's plain cursor is not a scope's.
        assert_eq!(parse_cursors("2024-05-01 12:00:00+00"), None);
        assert_eq!(parse_cursors("42"), None);
    }

    #[test]
    fn details_name_a_few_tables_then_count_the_rest() {
        let names: Vec<String> = (1..=14).map(|n| format!("public.t{n}")).collect();
        let text = name_some(names.iter().map(String::as_str));
        assert!(text.starts_with("public.t1, public.t2, "), "{text}");
        assert!(text.ends_with("public.t12 and 2 more"), "{text}");
        assert_eq!(name_some(["a", "b"].into_iter()), "a, b");
    }
}
