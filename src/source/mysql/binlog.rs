//! `strategy = "binlog"`: the server's row-based binary log, read as a replica with a
//! `server_id` of the listener's own.
//!
//! `mysql_common` decodes MySQL's events and each value of a row image (`rows.rs` walks the
//! images against their table map); MariaDB's own events it passes on undecoded, and this
//! module reads the one it needs: the GTID event (type 162) that opens
//! each MariaDB transaction (`domain-server-sequence`). Annotate-rows, binlog-checkpoint and
//! GTID-list events carry nothing a listener prints and are passed over.
//!
//! A transaction's changes are sent as their rows events arrive, each with `tx` (the GTID, or
//! `file:pos` of its first event where the server has no GTIDs) and its index; at its commit
//! (an XID event, a `COMMIT` query, or a DDL statement standing alone) a `transaction` note
//! follows and the position after it becomes the one to save once those changes are flushed.
//! Positions are MariaDB GTID states (`0-1-42`, one per domain) or `file:pos`, so a restart
//! resumes at a transaction's boundary, never within one.
//!
//! Rows events of tables outside the scope are skipped by their table map, before a row is
//! decoded. Column names, types and keys come from `information_schema`, read again after
//! DDL on the table's database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use mysql_async::binlog::events::{Event, EventData, OptionalMetaExtractor, RowsEventData};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn};
use serde::Deserialize;
use serde_json::Value;

use crate::change::format_time;
use crate::change::{ChangeEvent, NoteKind, Op, Row, TxRef};
use crate::registry::Control;
use crate::secret::DatabaseUrl;
use crate::source::kind::parse_options;
use crate::source::mysql::position::{GtidSet, GtidState, Position, uuid};
use crate::source::mysql::rows::{self, RowLayout};
use crate::source::mysql::scope::Scope;
use crate::source::mysql::table::{ColumnInfo, ColumnKind, TableInfo};
use crate::source::mysql::value::binlog_to_json;
use crate::source::mysql::{classify, connect, quote_literal};
use crate::source::{
    DRAIN_TIMEOUT, OptionError, PendingPositions, SourceContext, SourceError, Strategy, Wake,
};

/// `strategy = "binlog"`.
pub struct Binlog;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BinlogOptions {
    /// The replica id this listener registers with; default: one derived from its identity.
    server_id: Option<u32>,
    /// Where a listener without a saved position starts: `end` (the default), `beginning`
    /// (the oldest binlog the server still has), or a position (`binlog.000003:4`, a MariaDB
    /// GTID state, a MySQL GTID set).
    start: Option<String>,
}

/// Where a listener without a saved position starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    End,
    Beginning,
    At(Position),
}

impl BinlogOptions {
    fn parse(options: &toml::Table) -> Result<BinlogOptions, OptionError> {
        let parsed: BinlogOptions = parse_options(options)?;
        if parsed.server_id == Some(0) {
            return Err(OptionError::new(
                "server_id",
                "0 is no replica's id: use 1 to 4294967295, unique among the server's replicas",
            ));
        }
        parsed.start()?;
        Ok(parsed)
    }

    fn start(&self) -> Result<Start, OptionError> {
        match self.start.as_deref() {
            None | Some("end") => Ok(Start::End),
            Some("beginning") => Ok(Start::Beginning),
            Some(text) => Position::parse(text).map(Start::At).map_err(|error| {
                OptionError::new(
                    "start",
                    format!(
                        "{error}: use end, beginning, or a position such as binlog.000003:4, \
                         0-1-42 (MariaDB GTID) or uuid:1-42 (MySQL GTID set)"
                    ),
                )
            }),
        }
    }
}

impl Strategy for Binlog {
    fn name(&self) -> &'static str {
        "binlog"
    }

    fn note(&self) -> &'static str {
        "reads the row-based binlog as a replica"
    }

    fn option_keys(&self) -> &'static [&'static str] {
        &["server_id", "start"]
    }

    fn check_options(&self, options: &toml::Table) -> Result<(), OptionError> {
        BinlogOptions::parse(options).map(|_| ())
    }

    fn run<'a>(&'a self, ctx: &'a mut SourceContext) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(run(ctx))
    }
}

/// A replica id from the listener's identity: stable across runs, different per listener,
/// and above the small ids people give their real replicas.
fn default_server_id(identity: &str) -> u32 {
    // FNV-1a: stable across Rust versions, unlike the std hasher.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in identity.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    1_000_000 + hash % 3_000_000_000
}

/// What the server is and where its binlog ends now.
struct Server {
    mariadb: bool,
    /// MySQL with `gtid_mode = ON`: positions are GTID sets.
    mysql_gtids: bool,
    version: String,
    current: Position,
}

/// `SELECT` of one row of settings, each as text.
async fn settings(
    conn: &mut Conn,
    sql: &str,
    url: &DatabaseUrl,
) -> Result<Vec<Option<String>>, SourceError> {
    let row: Option<mysql_async::Row> = conn
        .query_first(sql)
        .await
        .map_err(|error| classify(&error, url))?;
    let row = row.ok_or_else(|| SourceError::transient(format!("{sql}: no row")))?;
    Ok((0..row.len())
        .map(|index| {
            row.get_opt::<Option<String>, usize>(index)
                .and_then(Result::ok)
                .flatten()
        })
        .collect())
}

/// `SELECT` of one setting, as text (empty when NULL).
async fn setting(conn: &mut Conn, sql: &str, url: &DatabaseUrl) -> Result<String, SourceError> {
    let values = settings(conn, sql, url).await?;
    Ok(values.into_iter().next().flatten().unwrap_or_default())
}

/// A MariaDB GTID state or a MySQL GTID set the server printed (`what` names the setting).
fn server_gtids(text: &str, mariadb: bool, what: &str) -> Result<Position, SourceError> {
    let position = match mariadb {
        true => GtidState::parse(text).map(Position::Gtid),
        false => GtidSet::parse(text).map(Position::GtidSet),
    };
    position.map_err(|error| SourceError::permanent(format!("{what}: {error}")))
}

/// Checks that the server writes a binlog this listener can read, with advice where not.
async fn check_server(conn: &mut Conn, url: &DatabaseUrl) -> Result<Server, SourceError> {
    let values = settings(
        conn,
        "SELECT @@version, @@log_bin, @@binlog_format, @@binlog_row_image",
        url,
    )
    .await?;
    let text = |index: usize| values.get(index).cloned().flatten().unwrap_or_default();
    let version = text(0);
    let mariadb = version.contains("MariaDB");
    if text(1) != "1" {
        return Err(SourceError::permanent(
            "the server writes no binlog (log_bin is OFF): start it with --log-bin \
             --binlog-format=ROW --server-id=1, or use strategy = \"polling\"",
        ));
    }
    let format = text(2);
    if !format.eq_ignore_ascii_case("ROW") {
        return Err(SourceError::permanent(format!(
            "binlog_format is {format}: row changes are only in a ROW binlog; set \
             binlog_format = ROW in the server's config (SET GLOBAL binlog_format = 'ROW' \
             holds until a restart), or use strategy = \"polling\""
        )));
    }
    let image = text(3);
    if !image.eq_ignore_ascii_case("FULL") {
        return Err(SourceError::permanent(format!(
            "binlog_row_image is {image}: updates and deletes would carry only some columns \
             (before without its values, after without unchanged ones); set \
             binlog_row_image = FULL"
        )));
    }
    if mariadb && setting(conn, "SELECT @@global.log_bin_compress", url).await? == "1" {
        return Err(SourceError::permanent(COMPRESSED_ADVICE));
    }
    let mysql_gtids = !mariadb
        && setting(conn, "SELECT @@global.gtid_mode", url)
            .await?
            .eq_ignore_ascii_case("ON");
    let mut server = Server {
        mariadb,
        mysql_gtids,
        version,
        current: Position::File {
            file: String::new(),
            offset: 4,
        },
    };
    server.current = current_position(conn, &server, url).await?;
    Ok(server)
}

/// Where the binlog ends now: MariaDB's GTID state, MySQL's executed GTID set, else the file
/// and offset.
async fn current_position(
    conn: &mut Conn,
    server: &Server,
    url: &DatabaseUrl,
) -> Result<Position, SourceError> {
    if server.mariadb {
        let state = setting(conn, "SELECT @@gtid_binlog_pos", url).await?;
        return server_gtids(&state, true, "@@gtid_binlog_pos");
    }
    if server.mysql_gtids {
        let set = setting(conn, "SELECT @@global.gtid_executed", url).await?;
        return server_gtids(&set, false, "@@gtid_executed");
    }
    // MySQL 8.4 renamed it SHOW BINARY LOG STATUS (and has no SHOW MASTER STATUS).
    let status: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Err(mysql_async::Error::Server(error)) if error.code == 1064 => {
            conn.query_first("SHOW BINARY LOG STATUS").await
        }
        other => other,
    }
    .map_err(|error| classify(&error, url))?;
    let status = status.ok_or_else(|| {
        SourceError::permanent(
            "SHOW MASTER STATUS shows nothing: the server writes no binlog, or the user lacks \
             REPLICATION CLIENT",
        )
    })?;
    let file: String = status.get(0).unwrap_or_default();
    let offset: u64 = status.get(1).unwrap_or(4);
    Ok(Position::File { file, offset })
}

/// The start of the oldest binlog the server still has: on MariaDB the GTID state there
/// (`BINLOG_GTID_POS`), on MySQL with GTIDs what was purged before it (`@@gtid_purged`),
/// else its first file at offset 4.
async fn oldest_position(
    conn: &mut Conn,
    server: &Server,
    url: &DatabaseUrl,
) -> Result<Position, SourceError> {
    if server.mysql_gtids {
        let set = setting(conn, "SELECT @@global.gtid_purged", url).await?;
        return server_gtids(&set, false, "@@gtid_purged");
    }
    let first: Option<mysql_async::Row> = conn
        .query_first("SHOW BINARY LOGS")
        .await
        .map_err(|error| classify(&error, url))?;
    let file: String = first
        .and_then(|row| row.get(0))
        .ok_or_else(|| SourceError::permanent("SHOW BINARY LOGS shows no binlog file"))?;
    if server.mariadb {
        let sql = format!("SELECT BINLOG_GTID_POS({}, 4)", quote_literal(&file));
        let state = setting(conn, &sql, url).await?;
        return server_gtids(&state, true, "BINLOG_GTID_POS");
    }
    Ok(Position::File { file, offset: 4 })
}

async fn run(ctx: &mut SourceContext) -> Result<(), SourceError> {
    let options = BinlogOptions::parse(&ctx.config().options)?;
    let scope =
        Scope::parse(&ctx.config().table, &ctx.config().exclude).map_err(SourceError::permanent)?;
    let server_id = options
        .server_id
        .unwrap_or_else(|| default_server_id(ctx.identity()));
    let url = ctx.url.clone();
    let mut sql = connect(&url).await?;
    let server = check_server(&mut sql, &url).await?;
    if let Some((database, table)) = scope.exact()
        && TableInfo::read(&mut sql, &database, &table, &url)
            .await?
            .is_none()
    {
        return Err(SourceError::permanent(format!(
            "table {} does not exist (or this user cannot see it)",
            ctx.config().table
        )));
    }
    // This run's own progress first (a retry after an error): the position after the last
    // transaction it sent whole, and how many changes of the next one it sent already (a cut
    // mid-transaction); else the saved position.
    let (saved, skip) = match ctx.sent_through.clone() {
        Some(sent) => match sent.rsplit_once(SENT_WITHIN) {
            Some((position, sent)) => (Some(position.to_string()), sent.parse().unwrap_or(0)),
            None => (Some(sent), 0),
        },
        None => (ctx.load_position()?, 0),
    };
    let start = match saved {
        Some(text) => Position::parse(&text)
            .map_err(|error| SourceError::permanent(format!("the saved position: {error}")))?,
        None => match options.start()? {
            Start::End => server.current.clone(),
            Start::Beginning => oldest_position(&mut sql, &server, &url).await?,
            Start::At(position) => position,
        },
    };
    let start = match server.mariadb {
        true => start,
        false => start.for_mysql(),
    };
    if let Some(problem) = start_mismatch(&start, &server) {
        return Err(SourceError::permanent(problem));
    }
    // A retry of this run starts where it started, not at the binlog's end by then.
    if ctx.sent_through.is_none() {
        ctx.sent_through = Some(start.to_string());
    }
    let flavor = if server.mariadb { "MariaDB" } else { "MySQL" };
    let version = server
        .version
        .split('-')
        .next()
        .unwrap_or_default()
        .to_string();
    ctx.set_detail(Some(format!("server_id {server_id}; {flavor} {version}")));
    let mut reader = Reader {
        scope,
        url: url.clone(),
        sql,
        tables: HashMap::new(),
        shapes: HashMap::new(),
        file: String::new(),
        position: start.clone(),
        tx: None,
        committed: None,
        pending: PendingPositions::default(),
        skip,
    };
    let mut stream = open_stream(&url, server_id, &server, &start).await?;
    // A purged position shows on the first read: the changes since are lost, which waiting
    // will not mend, so the listener says so and goes on from the binlog's end.
    let first = stream.next().await;
    let first = match first {
        Some(Err(mysql_async::Error::Server(error))) if error.code == 1236 => {
            let message = format!(
                "the binlog at {start} is no longer on the server ({}): changes from there up to \
                 now ({}) were not captured; keep binlogs longer (binlog_expire_logs_seconds, \
                 expire_logs_days)",
                error.message,
                format_time(&Utc::now())
            );
            tracing::warn!(listener = ctx.identity(), "{message}");
            let current = current_position(&mut reader.sql, &server, &url).await?;
            reader.position = current.clone();
            reader.committed = Some(current.to_string());
            // A retry goes on from here, not into the gap again.
            ctx.sent_through = Some(current.to_string());
            stream = open_stream(&url, server_id, &server, &current).await?;
            ctx.set_detail(Some(message.clone()));
            ctx.set_running_because(message);
            stream.next().await
        }
        other => {
            ctx.set_running();
            other
        }
    };
    reader.read(ctx, stream, first).await
}

/// Why `start` does not fit the server (a GTID position where it has none of that kind).
fn start_mismatch(start: &Position, server: &Server) -> Option<String> {
    match start {
        Position::Gtid(_) if !server.mariadb => Some(format!(
            "the position {start} is a MariaDB GTID, and the server is MySQL"
        )),
        Position::GtidSet(_) if server.mariadb => Some(format!(
            "the position {start} is a MySQL GTID set, and the server is MariaDB"
        )),
        Position::GtidSet(_) if !server.mysql_gtids => Some(format!(
            "the position {start} is a GTID set, and the server runs with gtid_mode OFF: \
             set start to a file:pos, or remove the saved position under the state dir"
        )),
        _ => None,
    }
}

/// Registers as a replica and asks for the binlog from `start`.
async fn open_stream(
    url: &DatabaseUrl,
    server_id: u32,
    server: &Server,
    start: &Position,
) -> Result<BinlogStream, SourceError> {
    let mut conn = connect(url).await?;
    if server.mariadb {
        // Capability 4: MariaDB sends its GTID events as they are (not as empty queries).
        let mut setup = "SET @mariadb_slave_capability = 4".to_string();
        if let Position::Gtid(state) = start {
            setup.push_str(&format!(
                ", @slave_connect_state = {}, @slave_gtid_strict_mode = 0, \
                 @slave_gtid_ignore_duplicates = 0",
                quote_literal(&state.to_string())
            ));
        }
        conn.query_drop(setup)
            .await
            .map_err(|error| classify(&error, url))?;
    }
    let request = BinlogStreamRequest::new(server_id);
    let request = match start {
        // MariaDB starts from @slave_connect_state when the file name is empty.
        Position::Gtid(_) => request.with_pos(4),
        // COM_BINLOG_DUMP_GTID: the server sends every transaction not in the set.
        Position::GtidSet(set) => (request.with_gtid().with_pos(4))
            .with_gtid_set(set.sids().map_err(SourceError::permanent)?),
        Position::File { file, offset } => request.with_filename(file.as_bytes()).with_pos(*offset),
    };
    conn.get_binlog_stream(request)
        .await
        .map_err(|error| match &error {
            // Registering as a replica without the privilege: MariaDB says "access denied".
            mysql_async::Error::Server(server) if [1045, 1227].contains(&server.code) => {
                SourceError::permanent(url.redact(&format!(
                    "{} (error {}): reading the binlog needs the replication privileges: GRANT \
                 REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO the user (MariaDB: \
                 REPLICATION REPLICA, BINLOG MONITOR), or use strategy = \"polling\"",
                    server.message, server.code
                )))
            }
            _ => classify(&error, url),
        })
}

/// The transaction being read.
struct Tx {
    id: Arc<str>,
    /// Its GTID, applied to the position at its commit.
    gtid: Option<TxGtid>,
    commit_time: Option<DateTime<Utc>>,
    /// A DDL statement with no COMMIT after it (MariaDB's standalone GTID flag).
    standalone: bool,
    changes: u32,
    tables: Vec<Arc<str>>,
}

/// A transaction's GTID.
enum TxGtid {
    /// MariaDB: domain, server, sequence.
    Mariadb(u32, u32, u64),
    /// MySQL: the source (`uuid` or `uuid:tag`) and the transaction's number.
    Mysql(String, u64),
}

/// MariaDB's event types that `mysql_common` does not decode.
const MARIADB_GTID_EVENT: u8 = 162;
/// MariaDB's compressed events (`log_bin_compress = ON`): QUERY_COMPRESSED_EVENT and the
/// compressed write, update and delete rows events, versions 1 and 2.
const MARIADB_COMPRESSED_EVENTS: std::ops::RangeInclusive<u8> = 165..=171;
/// Why a compressed binlog fails the listener, and what to do.
const COMPRESSED_ADVICE: &str = "the server compresses its binlog events (log_bin_compress = \
     ON), which this listener cannot decode: set log_bin_compress = OFF (SET GLOBAL \
     log_bin_compress = OFF; events written before stay compressed, so start after them), or \
     use strategy = \"polling\"";
/// MariaDB's GTID event flag: a statement without BEGIN and COMMIT (DDL).
const FL_STANDALONE: u8 = 1;
/// How often positions of transactions without changes of the scope are saved.
const SAVE_EVERY: Duration = Duration::from_secs(1);

struct Reader {
    scope: Scope,
    url: DatabaseUrl,
    /// An SQL connection beside the stream, for table shapes.
    sql: Conn,
    /// Table ids of the binlog's table maps: the table's shape, `None` outside the scope.
    tables: HashMap<u64, Option<Arc<MappedTable>>>,
    /// Shapes by `(database, table)`, dropped on DDL of their database.
    shapes: HashMap<(String, String), Arc<TableInfo>>,
    /// The binlog file being read.
    file: String,
    /// After the last whole transaction.
    position: Position,
    tx: Option<Tx>,
    /// The newest commit not yet queued in `pending` (queued when a change follows, or on a
    /// flush or tick), so transactions of other tables do not fill the queue.
    committed: Option<String>,
    pending: PendingPositions<String>,
    /// Changes of the first transaction that this run sent before a reconnect: not again.
    skip: u32,
}

/// A table of the scope as a table map describes it.
struct MappedTable {
    info: Arc<TableInfo>,
    layout: RowLayout,
}

/// Separates a position from the count of changes sent of the transaction after it, in
/// `SourceContext::sent_through` (never in a saved position).
const SENT_WITHIN: char = '+';

impl Reader {
    async fn read(
        &mut self,
        ctx: &mut SourceContext,
        mut stream: BinlogStream,
        first: Option<Result<Event, mysql_async::Error>>,
    ) -> Result<(), SourceError> {
        let mut next = first;
        let mut tick = tokio::time::Instant::now() + SAVE_EVERY;
        loop {
            let event = match next.take() {
                Some(event) => event,
                None => return Err(SourceError::transient("the server ended the binlog stream")),
            };
            let event = event.map_err(|error| self.stream_error(&error))?;
            if let Err(error) = self.event(ctx, event).await {
                return self.finish(ctx, error).await;
            }
            loop {
                match ctx.control() {
                    Control::Stop => return self.finish(ctx, SourceError::stopped()).await,
                    Control::Pause => match ctx.while_paused(tick).await {
                        Ok(_) => {
                            self.acknowledge(ctx)?;
                            tick = tokio::time::Instant::now() + SAVE_EVERY;
                            continue;
                        }
                        Err(error) => return self.finish(ctx, error).await,
                    },
                    Control::Run => {}
                }
                tokio::select! {
                    biased;
                    wake = ctx.wait_until(tick) => {
                        if wake != Wake::Control {
                            self.acknowledge(ctx)?;
                        }
                        if wake == Wake::Deadline {
                            tick = tokio::time::Instant::now() + SAVE_EVERY;
                        }
                    }
                    event = stream.next() => {
                        next = event;
                        break;
                    }
                }
            }
        }
    }

    fn stream_error(&self, error: &mysql_async::Error) -> SourceError {
        let mut sorted = classify(error, &self.url);
        if let mysql_async::Error::Server(server) = error
            && server.code == 1236
        {
            sorted = SourceError::transient(format!(
                "the server stopped the binlog stream: {}",
                sorted.message
            ));
        }
        sorted
    }

    /// Queues the newest commit and saves the newest position whose changes are flushed.
    fn acknowledge(&mut self, ctx: &SourceContext) -> Result<(), SourceError> {
        if let Some(position) = self.committed.take() {
            self.pending.push(ctx.last_sent_seq(), position);
        }
        match self.pending.take_flushed(ctx.flushed_seq()) {
            Some(position) => ctx.save_position(&position),
            None => Ok(()),
        }
    }

    /// On a stop or failure, waits for the changes in flight to flush and saves their position.
    async fn finish(
        &mut self,
        ctx: &mut SourceContext,
        error: SourceError,
    ) -> Result<(), SourceError> {
        if ctx.drain(DRAIN_TIMEOUT).await {
            self.acknowledge(ctx)?;
        }
        Err(error)
    }

    async fn event(&mut self, ctx: &mut SourceContext, event: Event) -> Result<(), SourceError> {
        let header = event.header();
        let time = DateTime::from_timestamp(i64::from(header.timestamp()), 0);
        let end = u64::from(header.log_pos());
        if header.event_type_raw() == MARIADB_GTID_EVENT {
            let data = event.data();
            if data.len() >= 13 {
                let sequence = u64::from_le_bytes(data[0..8].try_into().unwrap_or_default());
                let domain = u32::from_le_bytes(data[8..12].try_into().unwrap_or_default());
                let server = header.server_id();
                self.tx = Some(Tx {
                    id: format!("{domain}-{server}-{sequence}").into(),
                    gtid: Some(TxGtid::Mariadb(domain, server, sequence)),
                    commit_time: time,
                    standalone: data[12] & FL_STANDALONE != 0,
                    changes: 0,
                    tables: Vec::new(),
                });
            }
            return Ok(());
        }
        if MARIADB_COMPRESSED_EVENTS.contains(&header.event_type_raw()) {
            return Err(SourceError::permanent(format!(
                "a compressed event at {}:{end}: {COMPRESSED_ADVICE}",
                self.file
            )));
        }
        let data = event.read_data().map_err(|error| {
            SourceError::transient(format!("a binlog event does not decode: {error}"))
        })?;
        match data {
            Some(EventData::RotateEvent(rotate)) => {
                self.file = rotate.name().into_owned();
                if let Position::File { .. } = self.position {
                    self.position = Position::File {
                        file: self.file.clone(),
                        offset: rotate.position(),
                    };
                }
            }
            Some(EventData::GtidEvent(gtid)) => {
                let source = match gtid.tag() {
                    Some(tag) => format!("{}:{tag}", uuid(&gtid.sid())),
                    None => uuid(&gtid.sid()),
                };
                self.tx = Some(Tx {
                    id: format!("{source}:{}", gtid.gno()).into(),
                    gtid: Some(TxGtid::Mysql(source, gtid.gno())),
                    commit_time: time,
                    standalone: false,
                    changes: 0,
                    tables: Vec::new(),
                });
            }
            Some(EventData::QueryEvent(query)) => {
                let text = query.query();
                let statement = text.trim();
                if statement.eq_ignore_ascii_case("BEGIN") {
                    if self.tx.is_none() {
                        let start = end.saturating_sub(u64::from(header.event_size()));
                        self.tx = Some(Tx {
                            id: format!("{}:{start}", self.file).into(),
                            gtid: None,
                            commit_time: time,
                            standalone: false,
                            changes: 0,
                            tables: Vec::new(),
                        });
                    }
                } else if statement.eq_ignore_ascii_case("COMMIT") {
                    self.commit(ctx, end).await?;
                } else {
                    let database = query.schema().into_owned();
                    self.statement(ctx, &database, statement).await?;
                    if self.tx.as_ref().is_none_or(|tx| tx.standalone) {
                        self.commit(ctx, end).await?;
                    }
                }
            }
            Some(EventData::XidEvent(_)) => self.commit(ctx, end).await?,
            Some(EventData::TableMapEvent(map)) => {
                let id = map.table_id();
                let database = map.database_name().into_owned();
                let table = map.table_name().into_owned();
                let info = if self.scope.matches(&database, &table) {
                    let fallback = (0..map.columns_count() as usize)
                        .map(|index| map.get_column_type(index).ok().flatten())
                        .collect();
                    // binlog_row_metadata = FULL: the names as they were when written.
                    let names = OptionalMetaExtractor::new(map.iter_optional_meta())
                        .map(|meta| {
                            (meta.iter_column_name())
                                .filter_map(Result::ok)
                                .map(|name| name.name().into_owned())
                                .collect()
                        })
                        .unwrap_or_default();
                    let info = self.shape(ctx, &database, &table, fallback, names).await?;
                    let layout = RowLayout::of(&map).map_err(|error| {
                        SourceError::permanent(format!(
                            "the table map of {} does not decode: {error}",
                            info.label
                        ))
                    })?;
                    Some(Arc::new(MappedTable { info, layout }))
                } else {
                    None
                };
                self.tables.insert(id, info);
            }
            Some(EventData::RowsEvent(rows)) => {
                // Filtered by the table map: rows of other tables are never decoded.
                let Some(Some(mapped)) = self.tables.get(&rows.table_id()).cloned() else {
                    return Ok(());
                };
                let info = &mapped.info;
                let op = match rows {
                    RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_) => {
                        Op::Insert
                    }
                    RowsEventData::UpdateRowsEvent(_)
                    | RowsEventData::UpdateRowsEventV1(_)
                    | RowsEventData::PartialUpdateRowsEvent(_) => Op::Update,
                    RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_) => {
                        Op::Delete
                    }
                };
                for images in rows::images(&mapped.layout, &rows) {
                    let (before, after) = images.map_err(|error| {
                        SourceError::permanent(format!(
                            "a row of {} does not decode: {error}",
                            info.label
                        ))
                    })?;
                    let before = before.map(|values| row(values, info)).transpose()?;
                    let after = after.map(|values| row(values, info)).transpose()?;
                    self.emit(ctx, info, op, before, after).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The shape of a table of the scope, read again when the binlog's column count differs
    /// from what is known (an ALTER TABLE whose statement this listener did not see). Where
    /// `information_schema` no longer fits the rows (the table changed again since they were
    /// written), the binlog's own types with the names its table map carries (under
    /// `binlog_row_metadata = FULL`), else positional names.
    async fn shape(
        &mut self,
        ctx: &mut SourceContext,
        database: &str,
        table: &str,
        binlog_types: Vec<Option<mysql_async::consts::ColumnType>>,
        binlog_names: Vec<String>,
    ) -> Result<Arc<TableInfo>, SourceError> {
        let name = (database.to_string(), table.to_string());
        let columns = binlog_types.len();
        if let Some(info) = self.shapes.get(&name)
            && info.columns.len() == columns
        {
            return Ok(info.clone());
        }
        let info = match TableInfo::read(&mut self.sql, database, table, &self.url).await? {
            Some(info) if info.columns.len() == columns => info,
            _ => {
                let names_fit = binlog_names.len() == columns;
                let columns = (binlog_types.into_iter().enumerate())
                    .map(|(index, column_type)| ColumnInfo {
                        name: match names_fit {
                            true => binlog_names[index].clone(),
                            false => format!("col_{}", index + 1),
                        },
                        column_type: String::new(),
                        kind: column_type
                            .map_or(ColumnKind::Binary { pad_to: None }, kind_of_binlog_type),
                    })
                    .collect();
                let label = crate::source::mysql::scope::display_name(database, table);
                // Not kept: the next table map looks again.
                return Ok(Arc::new(TableInfo::new(label, columns, &[])));
            }
        };
        let info = Arc::new(info);
        if let Some(old) = self.shapes.insert(name, info.clone())
            && let Some(detail) = info.differences(&old)
        {
            ctx.note(NoteKind::Schema {
                table: info.label.clone(),
                change: "columns",
                detail,
            })
            .await?;
        }
        Ok(info)
    }

    /// A statement other than BEGIN and COMMIT: DDL, or a TRUNCATE.
    async fn statement(
        &mut self,
        ctx: &mut SourceContext,
        default_database: &str,
        statement: &str,
    ) -> Result<(), SourceError> {
        let words: Vec<&str> = statement.split_whitespace().take(4).collect();
        let verb = words
            .first()
            .map(|w| w.to_ascii_uppercase())
            .unwrap_or_default();
        if !["ALTER", "CREATE", "DROP", "RENAME", "TRUNCATE"].contains(&verb.as_str()) {
            return Ok(());
        }
        // Shapes of the database may have changed: read again at the next table map.
        self.tables.clear();
        if verb == "TRUNCATE" {
            let name = match words.get(1) {
                Some(word) if word.eq_ignore_ascii_case("TABLE") => words.get(2),
                other => other,
            };
            let Some(name) = name else { return Ok(()) };
            let (database, table) = split_name(name, default_database);
            if self.scope.matches(&database, &table) {
                let label: Arc<str> =
                    crate::source::mysql::scope::display_name(&database, &table).into();
                self.emit_truncate(ctx, label).await?;
            }
            return Ok(());
        }
        if verb == "ALTER"
            && words
                .get(1)
                .is_some_and(|w| w.eq_ignore_ascii_case("TABLE"))
            && let Some(name) = words.get(2)
        {
            let (database, table) = split_name(name, default_database);
            let key = (database.clone(), table.clone());
            if self.scope.matches(&database, &table)
                && let Some(old) = self.shapes.get(&key).cloned()
            {
                if let Some(new) =
                    TableInfo::read(&mut self.sql, &database, &table, &self.url).await?
                {
                    let new = Arc::new(new);
                    self.shapes.insert(key, new.clone());
                    if let Some(detail) = new.differences(&old) {
                        ctx.note(NoteKind::Schema {
                            table: new.label.clone(),
                            change: "columns",
                            detail,
                        })
                        .await?;
                    }
                }
                return Ok(());
            }
        }
        self.shapes
            .retain(|(database, _), _| database != default_database);
        Ok(())
    }

    async fn emit_truncate(
        &mut self,
        ctx: &mut SourceContext,
        label: Arc<str>,
    ) -> Result<(), SourceError> {
        self.send(
            ctx,
            ChangeEvent {
                table: label,
                op: Op::Truncate,
                key: None,
                old_key: None,
                before: None,
                after: None,
                extensions: Default::default(),
                position: "".into(),
                commit_time: None,
                tx: None,
            },
        )
        .await
    }

    /// Sends a change with its place in the transaction (unless this run sent it before a
    /// reconnect), and notes how far the run got.
    async fn send(
        &mut self,
        ctx: &mut SourceContext,
        mut change: ChangeEvent,
    ) -> Result<(), SourceError> {
        self.queue_committed(ctx);
        let (tx, commit_time) = self.next_in_tx(&change.table);
        if self.skip > 0 {
            self.skip -= 1;
            return Ok(());
        }
        change.position = tx.as_ref().map_or_else(
            || self.position.to_string().into(),
            |tx| tx.position.clone(),
        );
        change.commit_time = commit_time;
        let index = tx.as_ref().map(|tx| tx.index);
        change.tx = tx;
        ctx.emit(change).await?;
        if let Some(index) = index {
            ctx.sent_through = Some(format!("{}{SENT_WITHIN}{index}", self.position));
        }
        Ok(())
    }

    /// The `tx` of the transaction's next change, and its commit time.
    fn next_in_tx(&mut self, label: &Arc<str>) -> (Option<TxRef>, Option<DateTime<Utc>>) {
        let Some(tx) = self.tx.as_mut() else {
            return (None, None);
        };
        tx.changes += 1;
        if !tx.tables.contains(label) {
            tx.tables.push(label.clone());
        }
        (
            Some(TxRef {
                id: tx.id.clone(),
                position: tx.id.clone(),
                index: tx.changes,
            }),
            tx.commit_time,
        )
    }

    /// Queues the last commit's position before a change of a later transaction is sent.
    fn queue_committed(&mut self, ctx: &SourceContext) {
        if let Some(position) = self.committed.take() {
            self.pending.push(ctx.last_sent_seq(), position);
        }
    }

    async fn emit(
        &mut self,
        ctx: &mut SourceContext,
        info: &TableInfo,
        op: Op,
        before: Option<Row>,
        after: Option<Row>,
    ) -> Result<(), SourceError> {
        let key_of = |row: &Row| -> Row {
            if info.key.is_empty() {
                return row.clone();
            }
            let values: Vec<Value> = info
                .key
                .iter()
                .map(|&index| {
                    row.iter()
                        .nth(index)
                        .map_or(Value::Null, |(_, v)| v.clone())
                })
                .collect();
            Row::new(info.key_names.clone(), values).with_raw_json(&info.key_raw_json)
        };
        let key = after.as_ref().or(before.as_ref()).map(key_of);
        let old_key = match (&before, &key) {
            (Some(before), Some(key)) if op == Op::Update => {
                let old = key_of(before);
                (old != *key).then_some(old)
            }
            _ => None,
        };
        self.send(
            ctx,
            ChangeEvent {
                table: info.label.clone(),
                op,
                key,
                old_key,
                before,
                after,
                extensions: Default::default(),
                position: "".into(),
                commit_time: None,
                tx: None,
            },
        )
        .await
    }

    /// The end of a transaction: its note, and the position after it to save once flushed.
    async fn commit(&mut self, ctx: &mut SourceContext, end: u64) -> Result<(), SourceError> {
        let tx = self.tx.take();
        match (
            &mut self.position,
            tx.as_ref().and_then(|tx| tx.gtid.as_ref()),
        ) {
            (Position::Gtid(state), Some(&TxGtid::Mariadb(domain, server, sequence))) => {
                state.0.insert(domain, (server, sequence));
            }
            (Position::GtidSet(set), Some(TxGtid::Mysql(source, number))) => {
                set.add(source, *number);
            }
            (Position::File { file, offset }, _) => {
                file.clone_from(&self.file);
                *offset = end;
            }
            (Position::Gtid(_) | Position::GtidSet(_), _) => {}
        }
        if let Some(tx) = tx
            && tx.changes > 0
        {
            ctx.note(NoteKind::Transaction {
                id: tx.id.clone(),
                position: tx.id,
                commit_time: tx.commit_time,
                changes: u64::from(tx.changes),
                tables: tx.tables,
                discarded: 0,
            })
            .await?;
        }
        let position = self.position.to_string();
        ctx.sent_through = Some(position.clone());
        self.committed = Some(position);
        Ok(())
    }
}

/// A row image as a row of the table's columns.
fn row(image: rows::Image<'_>, info: &TableInfo) -> Result<Row, SourceError> {
    let mut values = Vec::with_capacity(info.columns.len());
    let mut image = image.into_iter();
    for column in &info.columns {
        let value = match image.next().flatten() {
            Some(value) => binlog_to_json(value, &column.kind).map_err(|error| {
                SourceError::permanent(format!("{}.{}: {error}", info.label, column.name))
            })?,
            None => Value::Null,
        };
        values.push(value);
    }
    Ok(Row::new(info.names.clone(), values).with_raw_json(&info.raw_json))
}

/// How a column prints when only the binlog's type is known.
fn kind_of_binlog_type(column_type: mysql_async::consts::ColumnType) -> ColumnKind {
    use mysql_async::consts::ColumnType::*;
    match column_type {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG
        | MYSQL_TYPE_LONGLONG => ColumnKind::Integer {
            unsigned_bits: None,
        },
        MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL => ColumnKind::Decimal,
        MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => ColumnKind::Float,
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => ColumnKind::Date,
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => ColumnKind::Time { fsp: 6 },
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => ColumnKind::DateTime { fsp: 6 },
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => ColumnKind::Timestamp { fsp: 6 },
        MYSQL_TYPE_YEAR => ColumnKind::Year,
        MYSQL_TYPE_JSON => ColumnKind::Json,
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING | MYSQL_TYPE_STRING => {
            ColumnKind::Text { latin1: false }
        }
        _ => ColumnKind::Binary { pad_to: None },
    }
}

/// `` `db`.`t` ``, `db.t` or `t` (in `default_database`) from a statement.
fn split_name(name: &str, default_database: &str) -> (String, String) {
    let name = name.trim_end_matches([';', '(']);
    let unquote = |part: &str| part.trim_matches('`').replace("``", "`");
    match name.split_once("`.`").or_else(|| name.split_once('.')) {
        Some((database, table)) => (unquote(database), unquote(table)),
        None => (default_database.to_string(), unquote(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_takes_end_beginning_or_a_position() {
        let parse = |text: &str| BinlogOptions::parse(&toml::from_str(text).unwrap());
        let start = |text: &str| parse(text).unwrap().start().unwrap();
        assert_eq!(start(""), Start::End);
        assert_eq!(start("start = \"end\""), Start::End);
        assert_eq!(start("start = \"beginning\""), Start::Beginning);
        assert_eq!(
            start("start = \"binlog.000002:4\""),
            Start::At(Position::File {
                file: "binlog.000002".into(),
                offset: 4
            })
        );
        assert_eq!(
            start("start = \"0-1-42\""),
            Start::At(Position::parse("0-1-42").unwrap())
        );
        let error = parse("start = \"yesterday\"").unwrap_err();
        assert_eq!(error.key, "start");
        assert!(error.message.contains("beginning"), "{}", error.message);
    }

    #[test]
    fn server_ids_differ_per_listener_and_stay_put() {
        let a = default_server_id("orders/shop.orders");
        assert_eq!(a, default_server_id("orders/shop.orders"));
        assert_ne!(a, default_server_id("items/shop.items"));
        assert!(a >= 1_000_000);
    }

    #[test]
    fn statement_names_split_into_database_and_table() {
        assert_eq!(split_name("`a b`.`c`", "d"), ("a b".into(), "c".into()));
        assert_eq!(
            split_name("shop.orders;", "d"),
            ("shop".into(), "orders".into())
        );
        assert_eq!(
            split_name("orders", "shop"),
            ("shop".into(), "orders".into())
        );
    }
}
