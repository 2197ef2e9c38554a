//! PostgreSQL logical replication listener: a replication slot, a publication for the watched
//! table, and the `pgoutput` stream (protocol version 2 with streaming on PostgreSQL 14+,
//! version 1 before) decoded by our own decoder ([`super::pgoutput`]).
//!
//! # The replication client
//!
//! tokio-postgres does not speak the replication protocol, so the stream runs on a client of
//! our own ([`wire`], on `postgres-protocol`): the same TLS as the SQL connection, SCRAM, MD5
//! and plain passwords, simple replication commands, START_REPLICATION with the plugin options
//! we choose, and a status task that acknowledges only the position we give it and keeps
//! sending standby status updates while the listener is paused or backpressured, so the
//! server's `wal_sender_timeout` never ends a slow stream. A stop ends the session as the
//! protocol has it (CopyDone both ways, then Terminate).
//!
//! A temporary slot belongs to the session that created it and only that session can stream
//! it, so it is created on the streaming connection itself: `CREATE_REPLICATION_SLOT …
//! TEMPORARY LOGICAL pgoutput` runs on the authenticated session before START_REPLICATION.
//! Ordinary SQL (checks, the publication, slot lookups, the retained-WAL figure) stays on
//! tokio-postgres.
//!
//! Why not a crate: pgwire-replication 0.5 asks for protocol version 1 only and drops its
//! socket after CopyDone (the server logs a lost client); pg_walstream 0.10 retries connecting
//! on its own (our supervisor does that, showing `retrying`), runs a thread per connection,
//! and reports errors as text without their SQLSTATE, which sorting them needs.
//!
//! # Slots and publications
//!
//! Without `slot`, each connection creates a temporary slot `cdc_tui_tmp_<pid>_<n>` that
//! vanishes with the connection: changes made while the listener is disconnected are not
//! captured, and the listener says so in its detail and in its retry reason. With `slot`, the
//! slot is persistent: created when absent, reused when present, so a restart resumes from the
//! slot's `confirmed_flush_lsn` and nothing is lost (changes may be delivered again after a
//! crash, never skipped). The publication (`publication`, default `cdc_tui_<identifier>`) is
//! created `FOR TABLE` the watched table when absent; one created for a temporary slot is
//! dropped again when the listener ends. The detail shows the WAL the slot holds (and its
//! `wal_status` when that is not `reserved`), refreshed every few seconds.
//!
//! # Values
//!
//! Values are pgoutput's text (each type's output function) typed by the column types of the
//! table's Relation message ([`super::value`], the one decoding polling shares). `key` is the
//! primary key (the replica identity columns when the table has none). `before` is the old
//! row under `REPLICA IDENTITY FULL`, else null.
//! A TOASTed column that an update did not change is never reported as null: it is taken from
//! the old row when `REPLICA IDENTITY FULL` sent one, else reported as the marker
//! `{"unchanged_toast": true}`. A TRUNCATE is a `truncate` change with null key, before and
//! after.
//!
//! Generated columns are in the changes only where pgoutput sends them: never before
//! PostgreSQL 18; on 18+ stored ones when the publication has `publish_generated_columns =
//! stored` (asked for when cdc-tui creates it), virtual ones never. The detail names the
//! generated columns the changes lack, from the catalog until the table's Relation message
//! says which columns the stream sends.
//!
//! # Exactness
//!
//! Transactions reach the handler only once committed, whole and in commit order. Most come
//! so from the server (at their commit); on PostgreSQL 14+ (protocol version 2, `streaming`)
//! one larger than the server's `logical_decoding_work_mem` is sent while it runs, in blocks
//! between Stream Start and Stream Stop: its messages wait on disk ([`spool`]) until its Stream
//! Commit, then go through the same path as any transaction's, without those of rolled-back
//! subtransactions (counted: `discarded` on the running transaction and the `transaction`
//! line); a Stream Abort drops the file. The detail shows each such transaction
//! while it runs (`tx 901 · running · 180,000 changes so far · public.events`). Each change is
//! sent to the handler as it is decoded (never a whole transaction in memory), with the commit
//! LSN as its `position`. At each commit the commit's end LSN is remembered with the sequence
//! number of the transaction's last change; once the handler has flushed up to that number,
//! that LSN is acknowledged to the server (the flush position of the status updates), and not
//! before. While nothing is pending and no streamed transaction is open, the WAL end of the
//! server's keepalives is acknowledged,
//! so a slot on an idle table does not hold back WAL written for other tables. After a
//! reconnect within one run, the stream starts after the last transaction sent whole (the
//! acknowledged position stays what was flushed), and a transaction the server sends again is
//! skipped as far as it was already sent, so each change reaches the handler once per run.

mod filter;
mod rows;
mod setup;
mod spool;
mod stream;
mod wire;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use tokio::time::Instant;
use tokio_postgres::Client;

use crate::change::{ChangeEvent, NoteKind, TxRef};
use crate::registry::{Control, RunningTransaction};
use crate::secret::DatabaseUrl;
use crate::source::kind::parse_options;
use crate::source::postgres::pgoutput::{
    self, PgOutputMessage, Relation, pg_timestamp_to_unix_micros,
};
use crate::source::postgres::scope::{Scope, Shape};
use crate::source::postgres::{TableName, connect};
use crate::source::{
    DRAIN_TIMEOUT, ErrorKind, OptionError, PendingPositions, SourceContext, SourceError, Strategy,
    Wake,
};
use crate::units;

pub use setup::{format_lsn, parse_lsn};

use filter::RowFilter;
use rows::{RowChange, TableRows};
use setup::{GeneratedColumn, Server, TableInfo};
use spool::Spool;
use wire::{Connection, Event, Feedback, ReplicationStream, WireError};

/// How often the slot's retained WAL is read for the detail.
const DETAIL_REFRESH: Duration = Duration::from_secs(3);

/// Said wherever a temporary slot was lost with its connection.
const TEMPORARY_GAP: &str = concat!(
    "temporary slot: changes made while disconnected were not captured ",
    "(configure `slot` for a persistent one)"
);

/// `strategy = "logical"`.
pub struct Logical;

/// A logical listener's keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogicalOptions {
    /// A persistent slot; absent, a temporary one.
    slot: Option<String>,
    /// The publication, created for the table when absent.
    publication: Option<String>,
    /// A row filter in the publication cdc-tui creates (PostgreSQL 15+).
    #[serde(rename = "where")]
    where_clause: Option<String>,
    /// A column list in the publication cdc-tui creates (PostgreSQL 15+).
    columns: Option<Vec<String>>,
    /// The prefixes of the logical decoding messages shown; absent: every message.
    message_prefixes: Option<Vec<String>>,
}

impl LogicalOptions {
    fn parse(options: &toml::Table) -> Result<LogicalOptions, OptionError> {
        let parsed: LogicalOptions = parse_options(options)?;
        for (key, name) in [("slot", &parsed.slot), ("publication", &parsed.publication)] {
            if let Some(name) = name {
                let valid = !name.is_empty()
                    && name.len() <= 63
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !valid {
                    return Err(OptionError::new(
                        key,
                        format!("{name:?}: use 1 to 63 lower-case letters, digits and '_'"),
                    ));
                }
            }
        }
        if parsed
            .where_clause
            .as_deref()
            .is_some_and(|w| w.trim().is_empty())
        {
            return Err(OptionError::new("where", "must not be empty"));
        }
        if parsed
            .columns
            .as_ref()
            .is_some_and(|columns| columns.is_empty())
        {
            return Err(OptionError::new("columns", "list at least one column"));
        }
        Ok(parsed)
    }

    fn filter(&self) -> RowFilter {
        RowFilter {
            where_clause: self.where_clause.clone(),
            columns: self.columns.clone(),
        }
    }
}

impl Strategy for Logical {
    fn name(&self) -> &'static str {
        "logical"
    }

    fn note(&self) -> &'static str {
        "logical replication: every change, in commit order"
    }

    fn option_keys(&self) -> &'static [&'static str] {
        &[
            "slot",
            "publication",
            "where",
            "columns",
            "message_prefixes",
        ]
    }

    fn check_options(&self, options: &toml::Table) -> Result<(), OptionError> {
        LogicalOptions::parse(options).map(|_| ())
    }

    fn run<'a>(&'a self, ctx: &'a mut SourceContext) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(run(ctx))
    }
}

async fn run(ctx: &mut SourceContext) -> Result<(), SourceError> {
    let options = LogicalOptions::parse(&ctx.config().options)?;
    let config = ctx.config().clone();
    let scope = Scope::parse(&config.table, &config.exclude).map_err(SourceError::permanent)?;
    let client = connect(&ctx.url).await?;
    let server = setup::check_server(&client, &ctx.url).await?;
    let publication = options
        .publication
        .clone()
        .unwrap_or_else(|| setup::default_publication(&config.identifier));
    let filter = options.filter();
    let (target, created) = match scope.shape() {
        Shape::One(table) => {
            let info = setup::describe_table(&client, &table, &server, &ctx.url).await?;
            let created = setup::ensure_publication(
                &client,
                &publication,
                &table,
                &info,
                &filter,
                &server,
                &ctx.url,
            )
            .await?;
            let published_generated = !info.generated.is_empty()
                && setup::publishes_stored_generated(&client, &publication, &server, &ctx.url)
                    .await?;
            let target = Target::One {
                table,
                info,
                published_generated,
            };
            (target, created)
        }
        _ => {
            let tables = scope.tables(&client, &ctx.url).await?;
            let (created, skipped) = setup::ensure_scope_publication(
                &client,
                &publication,
                &scope,
                &tables,
                &filter,
                &server,
                &ctx.url,
            )
            .await?;
            let target = Target::Scope(ScopeState {
                scope,
                known: tables,
                skipped,
                filter: filter.clone(),
                elsewhere: Vec::new(),
                // Tables made later are added to a publication this listener created.
                adds_tables: created,
            });
            (target, created)
        }
    };
    // Where filters run, or what an existing publication filters.
    let filter_note = if created {
        filter.describe()
    } else {
        setup::existing_filters(&client, &publication, &server).await
    };
    let slot = match &options.slot {
        Some(name) => Slot::Persistent(name.clone()),
        None => Slot::Temporary(temporary_slot_name()),
    };
    let plan = Plan {
        client: &client,
        filter_note: filter_note.as_deref(),
        message_prefixes: options.message_prefixes.as_deref().unwrap_or_default(),
        target: &target,
        server: &server,
        publication: &publication,
        slot: &slot,
    };
    let result = stream_changes(ctx, plan).await;
    if created && matches!(slot, Slot::Temporary(_)) {
        setup::drop_publication(&client, &publication).await;
    }
    result
}

#[derive(Debug, Clone)]
enum Slot {
    Persistent(String),
    Temporary(String),
}

impl Slot {
    fn name(&self) -> &str {
        match self {
            Slot::Persistent(name) | Slot::Temporary(name) => name,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Slot::Persistent(_) => "persistent",
            Slot::Temporary(_) => "temporary",
        }
    }
}

fn temporary_slot_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "cdc_tui_tmp_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// What one connection attempt works with.
#[derive(Clone, Copy)]
struct Plan<'a> {
    client: &'a Client,
    filter_note: Option<&'a str>,
    message_prefixes: &'a [String],
    target: &'a Target,
    server: &'a Server,
    publication: &'a str,
    slot: &'a Slot,
}

/// What the listener watches.
enum Target {
    /// One table, named exactly.
    One {
        table: TableName,
        info: TableInfo,
        /// The publication sends stored generated columns (PostgreSQL 18+).
        published_generated: bool,
    },
    /// The tables of a scope, each taken as its Relation message arrives.
    Scope(ScopeState),
}

/// A scope and the tables it held when last looked at.
#[derive(Clone)]
struct ScopeState {
    scope: Scope,
    known: Vec<TableName>,
    /// Tables of the scope left out of the publication, and why.
    skipped: Vec<setup::Skipped>,
    /// Tables made later are added to the publication (one this listener created).
    adds_tables: bool,
    /// The row filter and column list they are added with.
    filter: RowFilter,
    /// While no table matches: some of the tables there are, to say so.
    elsewhere: Vec<String>,
}

/// A table the session takes changes of.
struct Watched {
    name: TableName,
    label: Arc<str>,
    rows: TableRows,
    identity_hint: Option<String>,
    generated: Vec<GeneratedColumn>,
    generated_hint: Option<String>,
    /// The columns (name, type) of its last Relation message, to tell a change of shape.
    columns: Option<Vec<(String, u32)>>,
}

impl Watched {
    fn new(
        name: TableName,
        label: Arc<str>,
        info: &TableInfo,
        generated_hint: Option<String>,
    ) -> Self {
        Watched {
            identity_hint: setup::identity_hint(info.identity, &name),
            rows: TableRows::new(info.primary_key.clone()),
            generated: info.generated.clone(),
            generated_hint,
            columns: None,
            name,
            label,
        }
    }

    /// Takes a Relation message of this table; says what changed since the last one.
    fn relation(
        &mut self,
        relation: Relation,
        version_num: i32,
        publication: &str,
    ) -> Option<String> {
        self.identity_hint = setup::identity_hint(relation.replica_identity, &self.name);
        // The columns the stream really sends.
        let unsent: Vec<_> = (self.generated.iter())
            .filter(|column| !relation.columns.iter().any(|c| c.name == column.name))
            .collect();
        self.generated_hint = setup::generated_hint(&unsent, version_num, publication);
        let columns: Vec<(String, u32)> = (relation.columns.iter())
            .map(|column| (column.name.clone(), column.type_oid))
            .collect();
        let change = self
            .columns
            .as_ref()
            .filter(|before| **before != columns)
            .map(|before| describe_columns_change(before, &columns));
        self.columns = Some(columns);
        self.rows.set_relation(relation);
        change
    }
}

/// Some of the tables of the database (at most 10, then `…`), to say what a scope could match.
async fn tables_here(client: &Client, url: &DatabaseUrl) -> Vec<String> {
    let Ok(every) = Scope::parse("*.*", &[]) else {
        return Vec::new();
    };
    let tables = every.tables(client, url).await.unwrap_or_default();
    let mut names: Vec<String> = tables
        .iter()
        .take(10)
        .map(TableName::display_name)
        .collect();
    if tables.len() > 10 {
        names.push("…".to_string());
    }
    names
}

/// `added note (type 25), dropped qty`: what differs between two shapes of a table.
fn describe_columns_change(before: &[(String, u32)], after: &[(String, u32)]) -> String {
    let mut parts = Vec::new();
    for (name, type_oid) in after {
        match before.iter().find(|(old, _)| old == name) {
            None => parts.push(format!("added {name} (type {type_oid})")),
            Some((_, old_type)) if old_type != type_oid => {
                parts.push(format!("retyped {name} (type {old_type} to {type_oid})"));
            }
            Some(_) => {}
        }
    }
    for (name, _) in before {
        if !after.iter().any(|(new, _)| new == name) {
            parts.push(format!("dropped {name}"));
        }
    }
    if parts.is_empty() {
        parts.push("columns reordered".to_string());
    }
    parts.join(", ")
}

/// Opens the replication session (creating the slot on it when needed), then streams until an
/// error or a stop.
async fn stream_changes(ctx: &mut SourceContext, plan: Plan<'_>) -> Result<(), SourceError> {
    // A transaction a lost connection cut is streamed again whole.
    ctx.set_in_transaction(false);
    let slot = plan.slot;
    let status_interval = stream::status_interval(plan.server.wal_sender_timeout);
    let config = stream::replication_config(&ctx.url, slot.name())?;
    let existing = match slot {
        Slot::Persistent(name) => {
            setup::find_slot(plan.client, name, plan.server, &ctx.url).await?
        }
        Slot::Temporary(_) => None,
    };
    let reconnected = ctx.sent_through.is_some();
    let sent_before = ctx.sent_through.as_deref().and_then(SentThrough::parse);
    // 0: from the slot's own position.
    let mut start_from = 0;
    if let (Some(existing), Some(sent)) = (&existing, sent_before)
        && sent.resume_lsn > existing.confirmed_flush
    {
        // What this run sent whole is not streamed again (a reconnect after a short-lived
        // connection would otherwise replay the same unacknowledged stretch each time), yet
        // only what was flushed is acknowledged.
        start_from = sent.resume_lsn;
    }
    let wire_error = |error: &WireError, url: &DatabaseUrl| {
        stream::wire_error(error, slot.name(), &plan.server.user, url)
    };
    let mut connection = ctx
        .unless_stopped(Connection::connect(&config))
        .await?
        .map_err(|error| wire_error(&error, &ctx.url))?;
    let start = match existing {
        Some(existing) => existing.confirmed_flush,
        None => {
            ctx.set_detail(Some(format!(
                "creating {} slot {}: waiting for the transactions running now to end",
                slot.kind(),
                slot.name()
            )));
            let temporary = matches!(slot, Slot::Temporary(_));
            let url = ctx.url.clone();
            ctx.unless_stopped(stream::create_slot(
                &mut connection,
                slot.name(),
                temporary,
                &plan.server.user,
                &url,
            ))
            .await??
        }
    };
    // Until something is flushed, the slot's own position is what we acknowledge.
    let feedback = Feedback {
        applied: start,
        ack_interval: stream::ACK_INTERVAL.min(status_interval),
        status_interval,
    };
    let command = stream::start_command(
        slot.name(),
        start_from,
        plan.publication,
        plan.server.version_num,
    );
    let repl = ctx
        .unless_stopped(connection.start_replication(&command, feedback))
        .await?
        .map_err(|error| wire_error(&error, &ctx.url))?;

    let mut watched = HashMap::new();
    let scope = match plan.target {
        Target::One {
            table,
            info,
            published_generated,
        } => {
            // Until a Relation message says which columns the stream sends: what the server
            // version and the publication promise.
            let unsent: Vec<_> = (info.generated.iter())
                .filter(|column| !(column.stored && *published_generated))
                .collect();
            let hint = setup::generated_hint(&unsent, plan.server.version_num, plan.publication);
            let label: Arc<str> = ctx.config().table.as_str().into();
            watched.insert(info.oid, Watched::new(table.clone(), label, info, hint));
            None
        }
        Target::Scope(scope) => Some(scope.clone()),
    };
    // Spools a crashed run left: the server sends those transactions again.
    let spool_dir = spool_dir(ctx);
    spool::clear(&spool_dir).map_err(|error| {
        SourceError::permanent(format!(
            "cannot clear {} (streamed transactions wait there): {error}",
            spool_dir.display()
        ))
    })?;
    let mut session = Session {
        client: plan.client,
        repl,
        slot,
        user: plan.server.user.clone(),
        watched,
        ignored: HashSet::new(),
        scope,
        filter_note: plan.filter_note.map(str::to_string),
        message_prefixes: plan.message_prefixes.to_vec(),
        server: plan.server,
        tx: None,
        pending: PendingPositions::default(),
        acked: start,
        sent_before,
        sent: sent_before.unwrap_or_default(),
        publication: plan.publication,
        gap: reconnected && matches!(slot, Slot::Temporary(_)),
        usage: String::new(),
        next_refresh: Instant::now(),
        stream_open: None,
        streamed: BTreeMap::new(),
        spool_dir,
    };
    // The detail first, so that a listener shown running has its current detail.
    session.refresh(ctx).await?;
    ctx.set_running();
    let streamed = session.stream(ctx).await;
    ctx.sent_through = Some(session.sent.to_string());
    match streamed {
        Err(error) if error.kind == ErrorKind::Stopped => session.finish(ctx, error).await,
        Err(mut error) => {
            // Ended as the protocol has it where the connection still works.
            let _ = session
                .repl
                .close(Instant::now() + Duration::from_millis(500))
                .await;
            if error.kind == ErrorKind::Transient && matches!(slot, Slot::Temporary(_)) {
                error.message.push_str(&format!("; {TEMPORARY_GAP}"));
            }
            Err(error)
        }
        Ok(()) => session.finish(ctx, SourceError::stopped()).await,
    }
}

/// Where a listener's streamed transactions wait: `streaming/<identity>` in the state dir.
fn spool_dir(ctx: &SourceContext) -> PathBuf {
    let name: String = (ctx.identity().chars())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    ctx.positions.dir().join("streaming").join(name)
}

/// How far this run's changes were sent: the commit LSN of the last transaction with a
/// change sent and how many of its changes were, and the end LSN of the last commit received
/// whole. Kept in `SourceContext::sent_through` as `X/Y#N#X/Y` across reconnects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SentThrough {
    commit_lsn: u64,
    count: u64,
    resume_lsn: u64,
}

impl SentThrough {
    fn parse(text: &str) -> Option<SentThrough> {
        let mut parts = text.split('#');
        let sent = SentThrough {
            commit_lsn: parse_lsn(parts.next()?)?,
            count: parts.next()?.parse().ok()?,
            resume_lsn: parse_lsn(parts.next()?)?,
        };
        parts.next().is_none().then_some(sent)
    }
}

impl std::fmt::Display for SentThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}#{}#{}",
            format_lsn(self.commit_lsn),
            self.count,
            format_lsn(self.resume_lsn)
        )
    }
}

/// The transaction being received.
struct Transaction {
    commit_lsn: u64,
    /// The commit's LSN as text, shared by its changes.
    position: Arc<str>,
    /// Its xid as text, shared by its changes.
    xid: Arc<str>,
    /// The tables its changes sent in this session were of, in order of first change.
    tables: Vec<Arc<str>>,
    /// Its changes so far (messages not counted).
    changes: u64,
    /// Changes of its rolled-back subtransactions, left out (streamed transactions only).
    discarded: u64,
    commit_time: Option<DateTime<Utc>>,
    /// Changes of the watched table seen so far in it.
    seen: u64,
    /// How many of its changes were sent before a reconnect (they are skipped now).
    skip: u64,
}

enum Next {
    Event(Result<Option<Event>, WireError>),
    Wake(Wake),
}

/// One streaming replication session.
struct Session<'a> {
    client: &'a Client,
    repl: ReplicationStream,
    slot: &'a Slot,
    user: String,
    /// The tables whose changes are taken, by relation OID.
    watched: HashMap<u32, Watched>,
    /// Relations seen that the scope leaves out.
    ignored: HashSet<u32>,
    /// A scope's patterns and its tables as last listed; `None` for one table.
    scope: Option<ScopeState>,
    /// Where the publication's filters run, for the detail.
    filter_note: Option<String>,
    /// The logical decoding messages taken, by prefix; empty: all.
    message_prefixes: Vec<String>,
    server: &'a Server,
    tx: Option<Transaction>,
    /// Commit end LSNs waiting for their changes to be flushed.
    pending: PendingPositions<u64>,
    /// The LSN acknowledged to the server.
    acked: u64,
    /// What earlier sessions of this run sent.
    sent_before: Option<SentThrough>,
    /// What this run has sent so far (handed on to the next session when this one ends).
    sent: SentThrough,
    publication: &'a str,
    /// A temporary slot was lost with an earlier connection of this run.
    gap: bool,
    usage: String,
    next_refresh: Instant,
    /// The transaction whose streamed block is being received (between Stream Start and Stop).
    stream_open: Option<u32>,
    /// Streamed transactions not ended yet, by xid, their changes on disk.
    streamed: BTreeMap<u32, Spool>,
    spool_dir: PathBuf,
}

impl Session<'_> {
    async fn stream(&mut self, ctx: &mut SourceContext) -> Result<(), SourceError> {
        loop {
            if ctx.control() != Control::Run {
                self.pause(ctx).await?;
            }
            if Instant::now() >= self.next_refresh {
                self.refresh(ctx).await?;
            }
            let next = tokio::select! {
                biased;
                event = self.repl.recv() => Next::Event(event),
                wake = ctx.wait_until(self.next_refresh) => Next::Wake(wake),
            };
            match next {
                Next::Event(Ok(Some(event))) => self.event(ctx, event).await?,
                Next::Event(Ok(None)) => {
                    return Err(SourceError::transient(
                        "the server ended the replication stream",
                    ));
                }
                Next::Event(Err(error)) => {
                    return Err(stream::wire_error(
                        &error,
                        self.slot.name(),
                        &self.user,
                        &ctx.url,
                    ));
                }
                Next::Wake(Wake::Flushed) => self.acknowledge(ctx),
                Next::Wake(Wake::Deadline | Wake::Control) => {}
            }
        }
    }

    /// While paused no change is taken (the socket's buffers fill and the server waits), yet
    /// the session stays alive: the status task keeps sending status updates, and flushes of
    /// changes taken before the pause are still acknowledged.
    async fn pause(&mut self, ctx: &mut SourceContext) -> Result<(), SourceError> {
        loop {
            match ctx.while_paused(self.next_refresh).await? {
                None => return Ok(()),
                Some(Wake::Flushed) => self.acknowledge(ctx),
                Some(Wake::Deadline) => self.refresh(ctx).await?,
                Some(Wake::Control) => {}
            }
        }
    }

    async fn event(&mut self, ctx: &mut SourceContext, event: Event) -> Result<(), SourceError> {
        match event {
            Event::Data(data) => {
                let (xid, message) = pgoutput::decode_in(&data, self.stream_open.is_some())
                    .map_err(|error| SourceError::permanent(error.to_string()))?;
                match (self.stream_open, xid, message) {
                    (Some(top), Some(xid), message) => self.spool(top, xid, &data, &message),
                    (_, _, PgOutputMessage::StreamStart { xid, .. }) => {
                        self.stream_open = Some(xid);
                        if !self.streamed.contains_key(&xid) {
                            let spool = Spool::create(&self.spool_dir, xid)
                                .map_err(|error| self.spool_error(xid, &error))?;
                            self.streamed.insert(xid, spool);
                        }
                        Ok(())
                    }
                    (_, _, PgOutputMessage::StreamStop) => {
                        self.stream_open = None;
                        self.publish_detail(ctx);
                        Ok(())
                    }
                    (_, _, PgOutputMessage::StreamCommit(commit)) => {
                        self.stream_commit(ctx, commit).await
                    }
                    (_, _, PgOutputMessage::StreamAbort { xid, subxid }) => {
                        if xid == subxid {
                            // The file goes with it.
                            if let Some(spool) = self.streamed.remove(&xid) {
                                ctx.note_rolled_back(RunningTransaction {
                                    id: xid.to_string().into(),
                                    changes: spool.changes,
                                    discarded: spool.discarded,
                                    tables: spool.tables.clone(),
                                });
                            }
                            self.publish_detail(ctx);
                        } else if let Some(spool) = self.streamed.get_mut(&xid) {
                            spool.abort_subtransaction(subxid);
                            self.publish_detail(ctx);
                        }
                        Ok(())
                    }
                    (_, _, message) => self.message(ctx, message).await,
                }
            }
            Event::KeepAlive { wal_end } => {
                self.acknowledge(ctx);
                // Nothing open and everything flushed: no change of ours lies before the
                // server's WAL end, so the slot need not keep it.
                if self.tx.is_none()
                    && self.streamed.is_empty()
                    && self.pending.is_empty()
                    && ctx.flushed_seq() >= ctx.last_sent_seq()
                {
                    self.ack(ctx, wal_end);
                }
                Ok(())
            }
        }
    }

    async fn message(
        &mut self,
        ctx: &mut SourceContext,
        message: PgOutputMessage,
    ) -> Result<(), SourceError> {
        let (label, change) = match message {
            PgOutputMessage::Relation(relation) => return self.relation(ctx, relation).await,
            PgOutputMessage::Insert(insert) => match self.watched.get(&insert.relation_oid) {
                Some(table) => (table.label.clone(), table.rows.insert(insert.new)),
                None => return Ok(()),
            },
            PgOutputMessage::Update(update) => match self.watched.get(&update.relation_oid) {
                Some(table) => (
                    table.label.clone(),
                    table.rows.update(update.old, update.new),
                ),
                None => return Ok(()),
            },
            PgOutputMessage::Delete(delete) => match self.watched.get(&delete.relation_oid) {
                Some(table) => (table.label.clone(), table.rows.delete(delete.old)),
                None => return Ok(()),
            },
            PgOutputMessage::Truncate(truncate) => {
                let labels: Vec<Arc<str>> = (truncate.relation_oids.iter())
                    .filter_map(|oid| self.watched.get(oid))
                    .map(|table| table.label.clone())
                    .collect();
                for label in labels {
                    self.emit(ctx, label, TableRows::truncate()).await?;
                }
                return Ok(());
            }
            PgOutputMessage::Begin(begin) => {
                self.begin(ctx, begin.final_lsn, begin.xid, begin.commit_time);
                return Ok(());
            }
            PgOutputMessage::Commit(commit) => return self.commit(ctx, commit.end_lsn).await,
            PgOutputMessage::Message(message) => {
                return self
                    .annotation(
                        ctx,
                        message.transactional,
                        message.lsn,
                        message.prefix,
                        &message.content,
                    )
                    .await;
            }
            // Types, origins.
            PgOutputMessage::Type(_) | PgOutputMessage::Origin(_) => return Ok(()),
            // Taken by `event`; a spool holds none.
            PgOutputMessage::StreamStart { .. }
            | PgOutputMessage::StreamStop
            | PgOutputMessage::StreamCommit(_)
            | PgOutputMessage::StreamAbort { .. } => {
                return Err(SourceError::permanent(
                    "pgoutput: a stream message inside a streamed transaction",
                ));
            }
        };
        let change = change.map_err(|error| {
            SourceError::permanent(format!(
                "pgoutput: a change of {label} does not fit: {error}"
            ))
        })?;
        self.emit(ctx, label, change).await
    }

    /// A Relation message: a watched table's (new) shape, or a table of the scope met for the
    /// first time in this session; tables the scope leaves out are passed over.
    async fn relation(
        &mut self,
        ctx: &mut SourceContext,
        relation: Relation,
    ) -> Result<(), SourceError> {
        let oid = relation.oid;
        if let Some(table) = self.watched.get_mut(&oid) {
            let changed = table.relation(relation, self.server.version_num, self.publication);
            let label = table.label.clone();
            self.publish_detail(ctx);
            if let Some(detail) = changed {
                ctx.note(NoteKind::Schema {
                    table: label,
                    change: "columns",
                    detail,
                })
                .await?;
            }
            return Ok(());
        }
        let name = TableName {
            schema: relation.namespace.clone(),
            name: relation.name.clone(),
        };
        let in_scope = self
            .scope
            .as_ref()
            .is_some_and(|scope| scope.scope.matches(&name));
        if !in_scope || self.ignored.contains(&oid) {
            self.ignored.insert(oid);
            return Ok(());
        }
        // Its key and generated columns from the catalog; a table renamed or dropped since
        // is taken with what the message says.
        let info = setup::describe_table(self.client, &name, self.server, &ctx.url)
            .await
            .unwrap_or(TableInfo {
                oid,
                identity: relation.replica_identity,
                primary_key: Vec::new(),
                generated: Vec::new(),
            });
        let label: Arc<str> = name.display_name().into();
        let mut table = Watched::new(name, label, &info, None);
        table.relation(relation, self.server.version_num, self.publication);
        self.watched.insert(oid, table);
        self.publish_detail(ctx);
        Ok(())
    }

    /// Looks again at which tables a scope holds: one made since joins (added to the
    /// publication where this listener manages it), one gone leaves; each is a `schema` line.
    async fn rescan_scope(&mut self, ctx: &mut SourceContext) -> Result<(), SourceError> {
        let Some(scope) = self.scope.as_mut() else {
            return Ok(());
        };
        let Ok(now) = scope.scope.tables(self.client, &ctx.url).await else {
            // Looked at again at the next refresh.
            return Ok(());
        };
        let mut notes = Vec::new();
        for table in now.iter().filter(|table| !scope.known.contains(table)) {
            let detail = if scope.adds_tables {
                let version = self.server.version_num;
                match setup::add_to_publication(
                    self.client,
                    self.publication,
                    table,
                    &scope.filter,
                    version,
                    &ctx.url,
                )
                .await
                {
                    Ok(()) => format!("added to publication {}", self.publication),
                    Err(why) => {
                        scope.skipped.push(setup::Skipped {
                            table: table.clone(),
                            why: "could not be added to the publication",
                        });
                        format!("left out of publication {}: {why}", self.publication)
                    }
                }
            } else {
                format!("captured if publication {} publishes it", self.publication)
            };
            notes.push((table.display_name(), "joined", detail));
        }
        for table in scope.known.iter().filter(|table| !now.contains(table)) {
            notes.push((
                table.display_name(),
                "left",
                "dropped or renamed".to_string(),
            ));
        }
        scope.known = now;
        scope.elsewhere = if scope.known.is_empty() {
            tables_here(self.client, &ctx.url).await
        } else {
            Vec::new()
        };
        for (table, change, detail) in notes {
            ctx.note(NoteKind::Schema {
                table: table.into(),
                change,
                detail,
            })
            .await?;
        }
        Ok(())
    }

    /// Keeps one message of the streamed transaction `top` (from its subtransaction `xid`) on
    /// disk until the transaction ends, counting its changes for the detail.
    fn spool(
        &mut self,
        top: u32,
        xid: u32,
        payload: &[u8],
        message: &PgOutputMessage,
    ) -> Result<(), SourceError> {
        let oids: &[u32] = match message {
            PgOutputMessage::Insert(insert) => &[insert.relation_oid],
            PgOutputMessage::Update(update) => &[update.relation_oid],
            PgOutputMessage::Delete(delete) => &[delete.relation_oid],
            PgOutputMessage::Truncate(truncate) => &truncate.relation_oids,
            _ => &[],
        };
        let labels: Vec<Arc<str>> = (oids.iter())
            .filter_map(|oid| self.watched.get(oid))
            .map(|table| table.label.clone())
            .collect();
        let Some(spool) = self.streamed.get_mut(&top) else {
            return Err(SourceError::permanent(format!(
                "pgoutput: a change of streamed transaction {top} outside its stream"
            )));
        };
        if let Err(error) = spool.push(xid, payload, oids.len() as u64) {
            return Err(self.spool_error(top, &error));
        }
        for label in labels {
            if !spool.tables.contains(&label) {
                spool.tables.push(label);
            }
        }
        if spool.bytes > spool::SPOOL_LIMIT {
            return Err(SourceError::permanent(format!(
                "transaction {top} streamed more than {} of changes while it runs; they wait in \
                 {} until it commits, and cdc-tui stops here rather than fill the disk",
                units::bytes(spool::SPOOL_LIMIT),
                self.spool_dir.display()
            )));
        }
        Ok(())
    }

    fn spool_error(&self, xid: u32, error: &std::io::Error) -> SourceError {
        SourceError::permanent(format!(
            "cannot keep streamed transaction {xid} in {}: {error}",
            self.spool_dir.display()
        ))
    }

    /// A streamed transaction committed: its changes, read back from disk in order (those of
    /// rolled-back subtransactions left out), go to the handler as any transaction's.
    async fn stream_commit(
        &mut self,
        ctx: &mut SourceContext,
        commit: pgoutput::StreamCommit,
    ) -> Result<(), SourceError> {
        let Some(spool) = self.streamed.remove(&commit.xid) else {
            return Err(SourceError::transient(format!(
                "pgoutput: streamed transaction {} committed without its changes; starting \
                 again",
                commit.xid
            )));
        };
        self.publish_detail(ctx);
        let discarded = spool.discarded;
        let mut replay = spool
            .replay()
            .map_err(|error| self.spool_error(commit.xid, &error))?;
        self.begin(ctx, commit.commit_lsn, commit.xid, commit.commit_time);
        if let Some(tx) = &mut self.tx {
            tx.discarded = discarded;
        }
        loop {
            let payload = match replay.next_message() {
                Ok(Some(payload)) => payload,
                Ok(None) => break,
                Err(error) => return Err(self.spool_error(commit.xid, &error)),
            };
            let (_, message) = pgoutput::decode_in(&payload, true)
                .map_err(|error| SourceError::permanent(error.to_string()))?;
            self.message(ctx, message).await?;
        }
        drop(replay);
        self.commit(ctx, commit.end_lsn).await
    }

    fn begin(&mut self, ctx: &SourceContext, commit_lsn: u64, xid: u32, commit_time: i64) {
        ctx.set_in_transaction(true);
        let skip = match self.sent_before {
            Some(sent) if commit_lsn < sent.commit_lsn => u64::MAX,
            Some(sent) if commit_lsn == sent.commit_lsn => sent.count,
            _ => 0,
        };
        self.tx = Some(Transaction {
            commit_lsn,
            position: format_lsn(commit_lsn).into(),
            xid: xid.to_string().into(),
            tables: Vec::new(),
            changes: 0,
            discarded: 0,
            commit_time: DateTime::from_timestamp_micros(pg_timestamp_to_unix_micros(commit_time)),
            seen: 0,
            skip,
        });
    }

    /// The end of a transaction: its `transaction` line after its last change (when this
    /// session sent any of it), and its position queued for acknowledgement.
    async fn commit(&mut self, ctx: &mut SourceContext, end_lsn: u64) -> Result<(), SourceError> {
        ctx.set_in_transaction(false);
        if let Some(tx) = self.tx.take()
            && !tx.tables.is_empty()
        {
            ctx.note(NoteKind::Transaction {
                id: tx.xid,
                position: tx.position,
                commit_time: tx.commit_time,
                changes: tx.changes,
                tables: tx.tables,
                discarded: tx.discarded,
            })
            .await?;
        }
        // Every change of the transaction was sent (or had been, before a reconnect).
        self.sent.resume_lsn = end_lsn;
        self.pending.push(ctx.last_sent_seq(), end_lsn);
        self.acknowledge(ctx);
        Ok(())
    }

    /// A logical decoding message: in place in its transaction (taking its place in the
    /// transaction's order), or at its position when it is not transactional.
    async fn annotation(
        &mut self,
        ctx: &mut SourceContext,
        transactional: bool,
        lsn: u64,
        prefix: String,
        content: &[u8],
    ) -> Result<(), SourceError> {
        if !self.message_prefixes.is_empty() && !self.message_prefixes.contains(&prefix) {
            return Ok(());
        }
        let tx = match self.tx.as_mut() {
            Some(tx) if transactional => {
                tx.seen += 1;
                if tx.seen <= tx.skip {
                    return Ok(());
                }
                self.sent.commit_lsn = tx.commit_lsn;
                self.sent.count = tx.seen;
                Some(TxRef {
                    id: Arc::clone(&tx.xid),
                    position: Arc::clone(&tx.position),
                    index: u32::try_from(tx.seen).unwrap_or(u32::MAX),
                })
            }
            _ => None,
        };
        ctx.note(NoteKind::Message {
            prefix,
            content: String::from_utf8_lossy(content).into_owned(),
            transactional,
            tx,
            position: format_lsn(lsn),
        })
        .await
    }

    /// Sends one change of the table `label` to the handler, waiting while its queue is full.
    async fn emit(
        &mut self,
        ctx: &mut SourceContext,
        label: Arc<str>,
        row: RowChange,
    ) -> Result<(), SourceError> {
        let Some(tx) = self.tx.as_mut() else {
            return Err(SourceError::permanent(
                "pgoutput: a change arrived outside a transaction",
            ));
        };
        tx.seen += 1;
        tx.changes += 1;
        if tx.seen <= tx.skip {
            return Ok(());
        }
        if !tx.tables.contains(&label) {
            tx.tables.push(Arc::clone(&label));
        }
        let change = ChangeEvent {
            table: label,
            op: row.op,
            key: row.key,
            old_key: row.old_key,
            before: row.before,
            after: row.after,
            extensions: Default::default(),
            position: Arc::clone(&tx.position),
            commit_time: tx.commit_time,
            tx: Some(TxRef {
                id: Arc::clone(&tx.xid),
                position: Arc::clone(&tx.position),
                index: u32::try_from(tx.seen).unwrap_or(u32::MAX),
            }),
        };
        ctx.emit(change).await?;
        self.sent.commit_lsn = tx.commit_lsn;
        self.sent.count = tx.seen;
        Ok(())
    }

    /// Acknowledges the newest commit whose changes are all flushed.
    fn acknowledge(&mut self, ctx: &SourceContext) {
        if let Some(lsn) = self.pending.take_flushed(ctx.flushed_seq()) {
            self.ack(ctx, lsn);
        }
    }

    fn ack(&mut self, ctx: &SourceContext, lsn: u64) {
        if lsn > self.acked {
            self.acked = lsn;
            self.repl.acknowledge(lsn);
            ctx.set_position(format_lsn(lsn));
        }
    }

    /// Every few seconds: the slot's retained WAL for the detail, and a scope's tables.
    async fn refresh(&mut self, ctx: &mut SourceContext) -> Result<(), SourceError> {
        self.rescan_scope(ctx).await?;
        self.refresh_detail(ctx).await;
        Ok(())
    }

    async fn refresh_detail(&mut self, ctx: &SourceContext) {
        self.next_refresh = Instant::now() + DETAIL_REFRESH;
        let (name, kind) = (self.slot.name(), self.slot.kind());
        self.usage = match setup::slot_usage(self.client, name).await {
            Ok(Some(usage)) => {
                ctx.set_server_lag(usage.lag());
                usage.describe(kind, name)
            }
            Ok(None) => format!("{kind} slot {name} is gone"),
            Err(error) => format!(
                "{kind} slot {name}: cannot read the WAL it holds: {}",
                ctx.url.redact(&error)
            ),
        };
        self.publish_detail(ctx);
    }

    fn publish_detail(&self, ctx: &SourceContext) {
        let mut parts = vec![self.usage.clone()];
        parts.extend(self.filter_note.clone());
        match &self.scope {
            None => {
                for table in self.watched.values() {
                    parts.extend(table.identity_hint.clone());
                    parts.extend(table.generated_hint.clone());
                }
            }
            Some(scope) if scope.known.is_empty() => parts.push(format!(
                "no table matches {}; tables here: {}",
                scope.scope,
                if scope.elsewhere.is_empty() {
                    "none".to_string()
                } else {
                    scope.elsewhere.join(", ")
                }
            )),
            Some(scope) => {
                parts.push(format!(
                    "{} tables of {} via publication {}",
                    scope.known.len(),
                    scope.scope,
                    self.publication
                ));
                if !scope.skipped.is_empty() {
                    parts.push(format!(
                        "left out: {}",
                        setup::describe_skipped(&scope.skipped)
                    ));
                }
                let without_before = (self.watched.values())
                    .filter(|table| table.identity_hint.is_some())
                    .count();
                if without_before > 0 {
                    parts.push(format!(
                        "before images are null for {without_before} tables without REPLICA \
                         IDENTITY FULL"
                    ));
                }
                parts.extend(
                    self.watched
                        .values()
                        .filter_map(|table| table.generated_hint.clone()),
                );
            }
        }

        let mut running = Vec::new();
        for (xid, spool) in &self.streamed {
            let mut line = format!(
                "tx {xid} · running · {} changes so far",
                units::count(spool.changes)
            );
            if spool.discarded > 0 {
                line.push_str(&format!(
                    " · {} discarded (rolled-back savepoint)",
                    units::count(spool.discarded)
                ));
            }
            if !spool.tables.is_empty() {
                line.push_str(&format!(" · {}", spool.tables.join(", ")));
            }
            parts.push(line);
            running.push(RunningTransaction {
                id: xid.to_string().into(),
                changes: spool.changes,
                discarded: spool.discarded,
                tables: spool.tables.clone(),
            });
        }
        ctx.set_running_transactions(running);
        if self.gap {
            parts.push(TEMPORARY_GAP.to_string());
        }
        parts.retain(|part| !part.is_empty());
        ctx.set_detail(Some(parts.join("; ")));
    }

    /// On a stop: waits (bounded) for the changes sent to be flushed, acknowledges them, and
    /// ends the session (a last status update with that position, CopyDone both ways, then
    /// Terminate; a temporary slot goes with the session).
    async fn finish(
        mut self,
        ctx: &mut SourceContext,
        error: SourceError,
    ) -> Result<(), SourceError> {
        // Everything here fits in about a second more than the drain, well inside the time a
        // stopping source is given.
        if !ctx.drain(DRAIN_TIMEOUT).await {
            tracing::warn!(
                listener = ctx.identity(),
                "stopping before every change was flushed: they are sent again next time \
                 (persistent slot) or lost (temporary slot)"
            );
        }
        self.acknowledge(ctx);
        if let Err(why) = self
            .repl
            .close(Instant::now() + Duration::from_secs(1))
            .await
        {
            tracing::warn!(
                listener = ctx.identity(),
                "the replication session did not end cleanly: {}",
                ctx.url.redact(&why.to_string())
            );
        }
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_through_round_trips() {
        let sent = SentThrough {
            commit_lsn: 0x16B_3748,
            count: 12,
            resume_lsn: 0x16B_3790,
        };
        assert_eq!(sent.to_string(), "0/16B3748#12#0/16B3790");
        assert_eq!(SentThrough::parse("0/16B3748#12#0/16B3790"), Some(sent));
        assert_eq!(SentThrough::parse("0/16B3748#12"), None);
        assert_eq!(SentThrough::parse("0/16B3748#12#0/1#3"), None);
        assert_eq!(SentThrough::parse("junk"), None);
    }

    #[test]
    fn temporary_slot_names_are_unique_and_plain() {
        let (a, b) = (temporary_slot_name(), temporary_slot_name());
        assert_ne!(a, b);
        assert!(a.starts_with("cdc_tui_tmp_"));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
    }
}
