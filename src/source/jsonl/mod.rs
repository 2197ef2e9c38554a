//! JSON-lines files of changes: what `cdc-tui --headless` prints and the `jsonl` sink writes,
//! read back as a source. `strategy = "follow"` reads the file from the start (or after the
//! last line flushed, saved as a byte offset) and then follows what is appended, as `tail -f`
//! does, so one capture's file can be watched from another terminal or replayed later.
//!
//! Every `change` line becomes a change with its recorded table, op, rows, position and commit
//! time; fields beyond those (`update`, and whatever a newer writer adds) are kept as
//! extensions, so they print again as they were written. Other line types (`status`, `flush`)
//! are passed over. The listener's `table` picks the changes: `*` takes every table, a name
//! ending in `.*` the tables of that schema or database, anything else that one table.
//!
//! This is also the smallest source kind in the tree: a folder, one line in `source::KINDS`,
//! and a harness in the contract suite.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::time::Instant;

use crate::change::{ChangeEvent, Op, Row, TxRef};
use crate::config::schema::DatabaseConfig;
use crate::registry::Control;
use crate::secret::DatabaseUrl;
use crate::source::kind::{check_scheme, parse_options};
use crate::source::{
    DRAIN_TIMEOUT, OptionError, PendingPositions, SourceContext, SourceError, SourceKind, Strategy,
    Wake,
};

const DEFAULT_INTERVAL_MS: u64 = 200;

/// A file of JSON lines, named by a `file://` URL.
pub struct Jsonl;

impl SourceKind for Jsonl {
    fn name(&self) -> &'static str {
        "jsonl"
    }

    fn about(&self) -> &'static str {
        "JSON-lines files of changes"
    }

    fn url_schemes(&self) -> &'static [&'static str] {
        &["file://"]
    }

    fn strategies(&self) -> &'static [&'static dyn Strategy] {
        &[&Follow]
    }

    fn check_database(
        &self,
        _database: &DatabaseConfig,
        url: &DatabaseUrl,
        _config_dir: &Path,
    ) -> Result<(), (&'static str, String)> {
        check_scheme(self, url)?;
        if file_path(url).as_os_str().is_empty() {
            return Err((
                "url",
                "name a file, as in file:///var/log/events.jsonl".into(),
            ));
        }
        Ok(())
    }

    fn check_table(&self, table: &str) -> Result<(), String> {
        if table.trim().is_empty() {
            return Err("name a table, `schema.*` or `*`".into());
        }
        Ok(())
    }

    fn list_tables<'a>(
        &'a self,
        url: &'a DatabaseUrl,
    ) -> BoxFuture<'a, Result<Vec<String>, SourceError>> {
        Box::pin(async move {
            let path = file_path(url);
            let text = tokio::fs::read_to_string(&path)
                .await
                .map_err(|error| cannot_open(&path, &error))?;
            let mut tables: Vec<String> = text
                .lines()
                .filter_map(|line| serde_json::from_str::<Line>(line).ok())
                .filter(|line| line.kind == "change")
                .filter_map(|line| line.table)
                .collect();
            tables.sort();
            tables.dedup();
            tables.insert(0, "*".to_string());
            Ok(tables)
        })
    }
}

/// The file a `file://` URL names.
fn file_path(url: &DatabaseUrl) -> PathBuf {
    let text = url.expose();
    PathBuf::from(crate::secret::percent_decode(
        text.strip_prefix("file://").unwrap_or(text),
    ))
}

fn cannot_open(path: &Path, error: &std::io::Error) -> SourceError {
    let message = format!("cannot read {}: {error}", path.display());
    match error.kind() {
        // It may be created (or come back) later.
        std::io::ErrorKind::NotFound => SourceError::transient(message),
        _ => SourceError::permanent(message),
    }
}

/// `strategy = "follow"`.
pub struct Follow;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowOptions {
    /// How often the end of the file is looked at for new lines.
    #[serde(default = "default_interval_ms")]
    interval_ms: u64,
}

fn default_interval_ms() -> u64 {
    DEFAULT_INTERVAL_MS
}

impl FollowOptions {
    fn parse(options: &toml::Table) -> Result<FollowOptions, OptionError> {
        let parsed: FollowOptions = parse_options(options)?;
        if parsed.interval_ms == 0 {
            return Err(OptionError::new("interval_ms", "must be at least 1"));
        }
        Ok(parsed)
    }
}

impl Strategy for Follow {
    fn name(&self) -> &'static str {
        "follow"
    }

    fn note(&self) -> &'static str {
        "reads the file, then what is appended to it"
    }

    fn option_keys(&self) -> &'static [&'static str] {
        &["interval_ms"]
    }

    fn check_options(&self, options: &toml::Table) -> Result<(), OptionError> {
        FollowOptions::parse(options).map(|_| ())
    }

    fn run<'a>(&'a self, ctx: &'a mut SourceContext) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(follow(ctx))
    }
}

/// One line of the file, as far as this source reads it.
#[derive(Debug, Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    table: Option<String>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Which tables the listener takes.
enum TableFilter {
    All,
    Prefix(String),
    One(String),
}

impl TableFilter {
    fn new(table: &str) -> TableFilter {
        match table.strip_suffix('*') {
            Some("") => TableFilter::All,
            Some(prefix) if prefix.ends_with('.') => TableFilter::Prefix(prefix.to_string()),
            _ => TableFilter::One(table.to_string()),
        }
    }

    fn takes(&self, table: &str) -> bool {
        match self {
            TableFilter::All => true,
            TableFilter::Prefix(prefix) => table.starts_with(prefix.as_str()),
            TableFilter::One(name) => table == name,
        }
    }
}

async fn follow(ctx: &mut SourceContext) -> Result<(), SourceError> {
    let options = FollowOptions::parse(&ctx.config().options)?;
    let interval = Duration::from_millis(options.interval_ms);
    let filter = TableFilter::new(&ctx.config().table);
    let path = file_path(&ctx.url);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|error| cannot_open(&path, &error))?;
    let saved = ctx.load_position()?;
    let mut offset: u64 = match saved.as_deref().map(str::parse) {
        None => 0,
        Some(Ok(offset)) => offset,
        Some(Err(_)) => {
            return Err(SourceError::permanent(format!(
                "the saved position {saved:?} is not a byte offset: remove it under {} to read \
                 {} from the start",
                ctx.positions.dir().display(),
                path.display()
            )));
        }
    };
    let length = file
        .metadata()
        .await
        .map_err(|error| cannot_open(&path, &error))?
        .len();
    if length < offset {
        ctx.set_detail(Some(format!(
            "{} is shorter than when it was last read: read again from the start",
            path.display()
        )));
        offset = 0;
    }
    let mut reader = BufReader::new(file);
    reader
        .seek(SeekFrom::Start(offset))
        .await
        .map_err(|error| cannot_open(&path, &error))?;
    let mut pending = PendingPositions::default();
    let mut number = 0u64;
    let mut line = Vec::new();
    ctx.set_running();
    loop {
        if ctx.control() == Control::Pause {
            while ctx.control() == Control::Pause {
                if let Err(error) = ctx.idle_until(Instant::now()).await {
                    return finish(ctx, &mut pending, error).await;
                }
                save_flushed(ctx, &mut pending)?;
            }
            ctx.set_running();
        }
        line.clear();
        let read = reader.read_until(b'\n', &mut line).await.map_err(|error| {
            SourceError::transient(format!("reading {}: {error}", path.display()))
        })?;
        if read == 0 || line.last() != Some(&b'\n') {
            // At the end, or a line still being written: look again after a while.
            if read > 0 {
                reader
                    .seek(SeekFrom::Start(offset))
                    .await
                    .map_err(|error| cannot_open(&path, &error))?;
            }
            let next = Instant::now() + interval;
            loop {
                match ctx.idle_until(next).await {
                    Ok(Wake::Flushed) => save_flushed(ctx, &mut pending)?,
                    Ok(_) => break,
                    Err(error) => return finish(ctx, &mut pending, error).await,
                }
            }
            continue;
        }
        offset += read as u64;
        number += 1;
        let Some(event) = decode(&line, &filter).map_err(|message| {
            SourceError::permanent(format!("{} line {number}: {message}", path.display()))
        })?
        else {
            continue;
        };
        if let Err(error) = ctx.emit(event).await {
            return finish(ctx, &mut pending, error).await;
        }
        pending.push(ctx.last_sent_seq(), offset);
        save_flushed(ctx, &mut pending)?;
    }
}

/// On a stop the lines sent are given a moment to be flushed, and what was is saved: a stop
/// must not leave the offset of a flush the listener had not yet been told of unsaved.
async fn finish(
    ctx: &mut SourceContext,
    pending: &mut PendingPositions<u64>,
    error: SourceError,
) -> Result<(), SourceError> {
    ctx.drain(DRAIN_TIMEOUT).await;
    save_flushed(ctx, pending)?;
    Err(error)
}

fn save_flushed(
    ctx: &SourceContext,
    pending: &mut PendingPositions<u64>,
) -> Result<(), SourceError> {
    match pending.take_flushed(ctx.flushed_seq()) {
        Some(offset) => ctx.save_position(&offset.to_string()),
        None => Ok(()),
    }
}

/// The change a line records, if it is one this listener takes.
fn decode(line: &[u8], filter: &TableFilter) -> Result<Option<ChangeEvent>, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let Line { kind, table, rest } =
        serde_json::from_str(text).map_err(|error| format!("not a JSON line record ({error})"))?;
    if kind != "change" {
        return Ok(None);
    }
    let table = table.ok_or("a change without a table")?;
    if !filter.takes(&table) {
        return Ok(None);
    }
    change_record(table, rest).map(Some)
}

/// A `change` line's fields (beyond `type` and `table`) as the change it records; fields
/// beyond the known ones are kept as extensions. Also read by the `nats` kind, whose messages
/// are these lines.
pub(crate) fn change_record(
    table: String,
    mut rest: Map<String, Value>,
) -> Result<ChangeEvent, String> {
    let op = match rest.remove("op") {
        Some(Value::String(op)) => Op::ALL
            .into_iter()
            .find(|known| known.as_str() == op)
            .ok_or_else(|| format!("unknown op {op:?}"))?,
        _ => return Err("a change without an op".into()),
    };
    let row = |value: Option<Value>| value.and_then(Row::from_json);
    let time = |value: Option<Value>| match value {
        Some(Value::String(text)) => DateTime::parse_from_rfc3339(&text)
            .ok()
            .map(|time| time.to_utc()),
        _ => None,
    };
    let position: Arc<str> = match rest.remove("position") {
        Some(Value::String(position)) => position.into(),
        Some(other) => other.to_string().into(),
        None => "".into(),
    };
    let key = row(rest.remove("key"));
    let old_key = row(rest.remove("old_key"));
    let before = row(rest.remove("before"));
    let after = row(rest.remove("after"));
    let commit_time: Option<DateTime<Utc>> = time(rest.remove("commit_time"));
    let tx = rest.remove("tx").as_ref().and_then(TxRef::from_json);
    // Stamped again by this listener.
    for stamped in ["listener", "captured_at"] {
        rest.remove(stamped);
    }
    let mut event = ChangeEvent {
        table: table.into(),
        op,
        key,
        old_key,
        before,
        after,
        extensions: Default::default(),
        position,
        commit_time,
        tx,
    };
    for (name, value) in rest {
        event.extensions.insert(&name, value);
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn change_lines_are_read_back_whole_and_other_lines_passed_over() {
        let line = json!({
            "type": "change", "listener": "o/shop.orders", "table": "shop.orders",
            "op": "update", "key": {"_id": 1}, "before": null, "after": {"_id": 1, "n": 2},
            "update": {"updated": {"n": 2}, "removed": []}, "position": "tok",
            "commit_time": "2026-11-25T10:00:01.000Z", "captured_at": "2026-11-25T10:00:01.004Z"
        })
        .to_string();
        let event = decode(line.as_bytes(), &TableFilter::new("*"))
            .unwrap()
            .unwrap();
        assert_eq!(event.op, Op::Update);
        assert_eq!(&*event.table, "shop.orders");
        assert_eq!(event.before, None);
        assert_eq!(event.after.unwrap().get("n"), Some(&json!(2)));
        assert_eq!(&*event.position, "tok");
        assert_eq!(
            event.extensions.get("update"),
            Some(&json!({"updated": {"n": 2}, "removed": []}))
        );
        assert!(event.commit_time.is_some());

        let flush = br#"{"type":"flush","batch":1,"changes":1}"#;
        assert!(decode(flush, &TableFilter::new("*")).unwrap().is_none());
        assert!(
            decode(line.as_bytes(), &TableFilter::new("public.*"))
                .unwrap()
                .is_none()
        );
        assert!(
            decode(line.as_bytes(), &TableFilter::new("shop.*"))
                .unwrap()
                .is_some()
        );
        assert!(decode(b"not json", &TableFilter::new("*")).is_err());
        assert!(
            decode(
                br#"{"type":"change","table":"t","op":"upsert"}"#,
                &TableFilter::new("*")
            )
            .unwrap_err()
            .contains("unknown op")
        );
    }

    #[test]
    fn file_urls_name_their_path() {
        assert_eq!(
            file_path(&DatabaseUrl::new("file:///tmp/my%20events.jsonl")),
            PathBuf::from("/tmp/my events.jsonl")
        );
    }
}
