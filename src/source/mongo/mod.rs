//! MongoDB change streams listener.
//!
//! One change stream per listener, opened as narrowly as its scope allows (`scope.rs`): on
//! the collection `db.collection`, on a database (`shop.*`, or names of one database), or on
//! the deployment (`*`), with the scope's exact names and the listener's `filter` as the
//! stream's `$match`. `fullDocument: updateLookup` (or the listener's `full_document`) and
//! pre-images (`fullDocumentBeforeChange: whenAvailable`) give `after` and `before`. Every
//! change carries its own table (`db.collection`). Under a database or deployment scope, a
//! collection dropped or renamed, or a database dropped, is a `schema` line, and a stream
//! invalidated by its database's drop is opened again after the invalidate; a
//! single-collection listener ends there. Changes written in a multi-document transaction
//! carry `tx` (`transaction.rs`).
//!
//! Every event's resume token is its `position`; the token of the last flushed change is saved
//! under the state dir, and a restart resumes after it. Within a run the listener resumes
//! after the last event it handed to the pipeline (`SourceContext::sent_through`), so a
//! reconnect neither loses nor repeats anything; the driver also resumes by itself on
//! resumable errors.
//!
//! A resume token the server no longer has (its oplog moved on) cannot be resumed from: the
//! listener starts from now, and says which span of time it could not capture (status reason,
//! listener detail and a warning in the log) instead of retrying forever.

mod scope;
mod stream;
mod transaction;
mod values;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use std::path::Path;

use chrono::Utc;
use futures_util::future::BoxFuture;
use mongodb::Client;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{Error as DriverError, ErrorKind as DriverErrorKind};
use mongodb::options::ClientOptions;
use tokio::time::Instant;

use serde::Deserialize;

use crate::change::{ChangeEvent, NoteKind, format_time};
use crate::config::schema::DatabaseConfig;
use crate::registry::Control;
use crate::secret::DatabaseUrl;
use crate::source::kind::{check_scheme, parse_options};
use crate::source::{
    DRAIN_TIMEOUT, OptionError, PendingPositions, SourceContext, SourceError, SourceKind, Strategy,
    Wake,
};
use scope::{Scope, Target};
use stream::{Position, Read, Reader, Start, StreamOptions, Watched};
use transaction::{TRANSACTION_IDLE, Transactions};
use values::{Decoded, Lifecycle};

/// How long the driver looks for a usable server before an operation fails, unless the URL
/// says otherwise (`serverSelectionTimeoutMS`): short, so `retrying` shows up soon.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// On a connection error, how long the listener waits for its changes in flight to be flushed
/// (to save their position) before it reports `retrying`.
const ERROR_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A quiet collection's position (the post-batch resume token) is saved at most this often.
const QUIET_SAVE_INTERVAL: Duration = Duration::from_secs(10);

/// ChangeStreamHistoryLost; ChangeStreamFatalError is what servers before 4.4 answer.
const HISTORY_LOST_CODES: [i32; 2] = [286, 280];
/// "The $changeStream stage is only supported on replica sets".
const STANDALONE_CODE: i32 = 40573;
/// What a server answers to a `$match` it cannot run: BadValue (an unknown operator),
/// FailedToParse, TypeMismatch.
const REJECTED_FILTER_CODES: [i32; 3] = [2, 9, 14];
/// A server rejecting an option it does not know (pre-images before MongoDB 6.0).
const UNKNOWN_FIELD_CODE: i32 = 40415;

/// MongoDB: change streams on a replica set.
pub struct Mongo;

impl SourceKind for Mongo {
    fn name(&self) -> &'static str {
        "mongodb"
    }

    fn about(&self) -> &'static str {
        "MongoDB change streams"
    }

    fn url_schemes(&self) -> &'static [&'static str] {
        &["mongodb://"]
    }

    fn strategies(&self) -> &'static [&'static dyn Strategy] {
        &[&ChangeStream]
    }

    fn check_database(
        &self,
        database: &DatabaseConfig,
        url: &DatabaseUrl,
        _config_dir: &Path,
    ) -> Result<(), (&'static str, String)> {
        if url.expose().starts_with("mongodb+srv://") {
            return Err((
                "url",
                "mongodb+srv:// needs DNS SRV lookups, which this build leaves out: \
                 list the hosts instead, as in mongodb://host1,host2/?replicaSet=rs0"
                    .into(),
            ));
        }
        check_scheme(self, url)?;
        if database.ca_file.is_some() {
            return Err((
                "ca_file",
                "applies to postgres; for MongoDB add tls=true&tlsCAFile=/path/to/ca.pem to \
                 the URL"
                    .into(),
            ));
        }
        Ok(())
    }

    fn check_table(&self, table: &str) -> Result<(), String> {
        Scope::parse(table, &[]).map(|_| ())
    }

    fn check_exclude(&self, exclude: &[String]) -> Result<(), String> {
        Scope::parse("*", exclude).map(|_| ())
    }

    fn table_noun(&self) -> &'static str {
        "collection"
    }

    /// The URL's database (`mongodb://h/shop`: `shop.*`), else the deployment (`*`).
    fn whole_scope(&self, url: &DatabaseUrl) -> String {
        let text = url.expose();
        let after_hosts = text
            .strip_prefix("mongodb://")
            .and_then(|rest| rest.split_once('/'))
            .map(|(_, path)| path.split('?').next().unwrap_or_default());
        match after_hosts {
            Some(db) if !db.is_empty() => format!("{}.*", crate::secret::percent_decode(db)),
            _ => "*".to_string(),
        }
    }

    fn list_tables<'a>(
        &'a self,
        url: &'a DatabaseUrl,
    ) -> BoxFuture<'a, Result<Vec<String>, SourceError>> {
        Box::pin(list_collections(url))
    }
}

/// `strategy = "change_stream"`.
pub struct ChangeStream;

/// A change stream listener's keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeStreamOptions {
    /// The `fullDocument` option of the stream.
    full_document: Option<String>,
    /// A `$match` stage (JSON, Extended JSON for BSON types) the server runs on the stream.
    filter: Option<String>,
}

impl ChangeStreamOptions {
    fn parse(options: &toml::Table) -> Result<ChangeStreamOptions, OptionError> {
        let parsed: ChangeStreamOptions = parse_options(options)?;
        stream::full_document_mode(parsed.full_document.as_deref())
            .map_err(|message| OptionError::new("full_document", message))?;
        parsed.filter()?;
        Ok(parsed)
    }

    /// The `filter` as a document.
    fn filter(&self) -> Result<Option<Document>, OptionError> {
        let Some(text) = &self.filter else {
            return Ok(None);
        };
        let bad = |why: String| {
            OptionError::new(
                "filter",
                format!(
                    "{why}: write the $match condition as a JSON object, as in \
                     '{{\"fullDocument.status\": \"paid\"}}'"
                ),
            )
        };
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|error| bad(format!("not JSON ({error})")))?;
        match Bson::try_from(json) {
            Ok(Bson::Document(filter)) => Ok(Some(filter)),
            Ok(_) => Err(bad("not an object".into())),
            Err(error) => Err(bad(format!("not BSON ({error})"))),
        }
    }
}

impl Strategy for ChangeStream {
    fn name(&self) -> &'static str {
        "change_stream"
    }

    fn note(&self) -> &'static str {
        "a MongoDB change stream"
    }

    fn option_keys(&self) -> &'static [&'static str] {
        &["full_document", "filter"]
    }

    fn check_options(&self, options: &toml::Table) -> Result<(), OptionError> {
        ChangeStreamOptions::parse(options).map(|_| ())
    }

    fn run<'a>(&'a self, ctx: &'a mut SourceContext) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(run(ctx))
    }
}

async fn run(ctx: &mut SourceContext) -> Result<(), SourceError> {
    let mut progress = Progress::default();
    let result = capture(ctx, &mut progress).await;
    // A retry within this run resumes after the last event handed on (spelled once here, not
    // for every event).
    if let Some(sent) = &progress.sent {
        ctx.sent_through = Some(sent.encode());
    }
    result
}

/// The stream's `$match`: the scope's names, and the listener's `filter` (which lifecycle
/// events always pass, so drops and renames are still seen).
fn stream_filter(names: Option<Document>, user: Option<Document>) -> Option<Document> {
    let user = user.map(|filter| {
        doc! { "$or": [{ "operationType": { "$in": scope::LIFECYCLE_EVENTS.to_vec() } }, filter] }
    });
    match (names, user) {
        (None, None) => None,
        (Some(one), None) | (None, Some(one)) => Some(one),
        (Some(names), Some(user)) => Some(doc! { "$and": [names, user] }),
    }
}

/// What the listener watches and where each filter runs, for its detail.
fn describe_watch(target: &Target, scope_in_server: Option<bool>, filter: bool) -> String {
    let mut parts = vec![match target {
        Target::Collection(namespace) => format!("collection.watch() on {namespace}"),
        Target::Database(db) => format!("db.watch() on {db}"),
        Target::Deployment => "client.watch() on the deployment".to_string(),
    }];
    match scope_in_server {
        Some(true) => parts.push("scope matched by the server ($match on ns)".into()),
        Some(false) => parts.push(
            "scope patterns matched in cdc-tui (the server's $match takes exact names)".into(),
        ),
        None => {}
    }
    if filter {
        parts.push("filter run by the server ($match)".into());
    }
    parts.join("; ")
}

/// The `schema` line for a drop or rename inside the scope, if it touches the scope.
fn lifecycle_note(scope: &Scope, lifecycle: Lifecycle) -> Option<NoteKind> {
    let (table, change, detail) = match lifecycle {
        Lifecycle::Dropped(namespace) if scope.matches(&namespace) => (
            namespace.to_string(),
            "dropped",
            "collection dropped".to_string(),
        ),
        Lifecycle::Renamed { from, to } => {
            let to_text = to
                .as_ref()
                .map_or_else(|| "another name".to_string(), ToString::to_string);
            let to_watched = to.as_ref().is_some_and(|to| scope.matches(to));
            if scope.matches(&from) {
                let still = if to_watched {
                    "still watched"
                } else {
                    "outside the scope: no longer watched"
                };
                (
                    from.to_string(),
                    "renamed",
                    format!("renamed to {to_text} ({still})"),
                )
            } else if to_watched {
                (to_text, "joined", format!("renamed from {from}"))
            } else {
                return None;
            }
        }
        Lifecycle::DatabaseDropped(db) if scope.covers_database(&db) => (
            format!("{db}.*"),
            "dropped",
            format!("database {db} dropped"),
        ),
        _ => return None,
    };
    Some(NoteKind::Schema {
        table: table.into(),
        change,
        detail,
    })
}

/// Why the capture loop ends, and how long to wait for the changes in flight to flush.
type Ending = (SourceError, Duration);

fn ending(error: SourceError) -> Ending {
    (error, DRAIN_TIMEOUT)
}

async fn capture(ctx: &mut SourceContext, progress: &mut Progress) -> Result<(), SourceError> {
    let listener = ChangeStreamOptions::parse(&ctx.config().options)?;
    let scope =
        Scope::parse(&ctx.config().table, &ctx.config().exclude).map_err(SourceError::permanent)?;
    let target = scope.target();
    let user_filter = listener.filter()?;
    let (names, complete) = scope.server_match();
    let has_filter = user_filter.is_some();
    let mut options = StreamOptions {
        full_document: stream::full_document_mode(listener.full_document.as_deref())
            .map_err(SourceError::permanent)?,
        pre_images: true,
        filter: stream_filter(names, user_filter),
    };
    let scoped = !matches!(target, Target::Collection(_));
    let detail = describe_watch(&target, scoped.then_some(complete), has_filter);
    ctx.set_detail(Some(detail.clone()));
    let client = connect(&ctx.url).await?;
    let watched = match &target {
        Target::Collection(namespace) => Watched::Collection(
            client
                .database(&namespace.db)
                .collection::<Document>(&namespace.coll),
        ),
        Target::Database(db) => Watched::Database(client.database(db)),
        Target::Deployment => Watched::Deployment(client.clone()),
    };

    // This run's own progress first (a retry after an error), else the saved position.
    let start = match ctx.sent_through.clone() {
        Some(text) => Some(Position::decode(&text).map_err(SourceError::permanent)?),
        None => saved_position(ctx)?,
    };
    let (stream, lost) =
        open_stream(ctx, &watched, &mut options, start, &detail, has_filter).await?;
    ctx.set_running();
    let initial = stream
        .resume_token()
        .as_ref()
        .and_then(stream::token_document);
    if let Some(from) = lost {
        report_gap(ctx, &from, &detail);
    }
    if let Some(token) = &initial {
        progress.caught_up(ctx, token.clone())?;
    }
    let mut listening = Listening {
        scope,
        target,
        watched,
        options,
        detail,
        tables: HashMap::new(),
        transactions: Transactions::default(),
        last_event_at: Instant::now(),
        reader: Reader::spawn(stream, initial),
    };
    loop {
        if let Err(error) = listening.step(ctx, progress).await {
            let (error, timeout) = error;
            return finish(ctx, progress, listening.reader, error, timeout).await;
        }
    }
}

/// A running listener's stream and what it knows about the events read so far.
struct Listening {
    scope: Scope,
    target: Target,
    watched: Watched,
    options: StreamOptions,
    /// The listener's detail, before any note of the moment.
    detail: String,
    /// Each collection's table name, shared by its changes.
    tables: HashMap<String, Arc<str>>,
    transactions: Transactions,
    last_event_at: Instant,
    reader: Reader,
}

impl Listening {
    /// Takes in one read (or a flush, a control, the end of a quiet transaction).
    async fn step(
        &mut self,
        ctx: &mut SourceContext,
        progress: &mut Progress,
    ) -> Result<(), Ending> {
        if ctx.control() != Control::Run {
            hold_while_paused(ctx, progress).await.map_err(ending)?;
        }
        // No deadline of its own unless a transaction may be complete: the loop wakes for
        // events, flushes and controls.
        let deadline = if self.transactions.is_open() {
            self.last_event_at + TRANSACTION_IDLE
        } else {
            Instant::now() + Duration::from_secs(3600)
        };
        // Events first: the wait (a timer and two watches) is set up only when none is ready,
        // and flushes are also taken in after every event sent.
        let read = tokio::select! {
            biased;
            read = self.reader.next() => read,
            wake = ctx.wait_until(deadline) => {
                match wake {
                    Wake::Flushed => progress.save_flushed(ctx).map_err(ending)?,
                    Wake::Deadline => self.end_transaction(ctx).await?,
                    Wake::Control => {}
                }
                return Ok(());
            }
        };
        match read {
            Read::Event(event) => {
                self.last_event_at = Instant::now();
                self.event(ctx, progress, event).await
            }
            Read::Caught(token) => {
                // An empty batch: the server has no more of any transaction.
                self.end_transaction(ctx).await?;
                progress.caught_up(ctx, token).map_err(ending)
            }
            Read::Closed => Err((
                SourceError::transient(format!(
                    "the server closed the change stream of {}",
                    ctx.config().table
                )),
                ERROR_DRAIN_TIMEOUT,
            )),
            Read::Failed(error) if is_history_lost(&error) => {
                tracing::warn!(listener = ctx.identity(), "{}", describe(&error, &ctx.url));
                self.end_transaction(ctx).await?;
                let from = match progress.sent.as_deref() {
                    Some(sent) => sent.clone(),
                    None => match ctx.sent_through.as_deref().map(Position::decode) {
                        Some(Ok(from)) => from,
                        _ => Position {
                            token: doc! {},
                            time: None,
                        },
                    },
                };
                let stream = stream::open(&self.watched, &self.options, Start::Now)
                    .await
                    .map_err(|error| (classify(&error, &ctx.url), ERROR_DRAIN_TIMEOUT))?;
                report_gap(ctx, &from, &self.detail);
                // Saved as soon as what came before is flushed, so a restart does not run
                // into the same gap again.
                progress.quiet_queued_at = None;
                let initial = stream
                    .resume_token()
                    .as_ref()
                    .and_then(stream::token_document);
                if let Some(token) = &initial {
                    progress.caught_up(ctx, token.clone()).map_err(ending)?;
                }
                self.reader = Reader::spawn(stream, initial);
                Ok(())
            }
            Read::Failed(error) => Err((classify(&error, &ctx.url), ERROR_DRAIN_TIMEOUT)),
        }
    }

    /// The `transaction` line of the transaction read so far, if one is open.
    async fn end_transaction(&mut self, ctx: &mut SourceContext) -> Result<(), Ending> {
        match self.transactions.end() {
            Some(note) => ctx.note(note).await.map_err(ending),
            None => Ok(()),
        }
    }

    async fn event(
        &mut self,
        ctx: &mut SourceContext,
        progress: &mut Progress,
        event: Document,
    ) -> Result<(), Ending> {
        let position = Position {
            token: event.get_document("_id").cloned().map_err(|_| {
                ending(SourceError::permanent(
                    "a change event without a resume token (_id)",
                ))
            })?,
            time: values::commit_time(&event),
        };
        let namespace = match &self.target {
            Target::Collection(namespace) => namespace.clone(),
            _ => {
                if let Some(lifecycle) = values::lifecycle(&event) {
                    return self.lifecycle(ctx, progress, lifecycle, position).await;
                }
                match values::namespace_in(&event, "ns") {
                    Some(namespace) if self.scope.matches(&namespace) => namespace,
                    _ => {
                        progress.passed(ctx, position);
                        return Ok(());
                    }
                }
            }
        };
        let change = match values::decode(&event, &namespace) {
            Decoded::Change(change) => change,
            Decoded::Skip(operation) => {
                tracing::debug!(listener = ctx.identity(), "skipped a {operation} event");
                progress.passed(ctx, position);
                return Ok(());
            }
            Decoded::End(reason) => return Err(ending(SourceError::permanent(reason))),
        };
        let table = match &self.target {
            Target::Collection(_) => ctx.config().table.as_str(),
            _ => &namespace.to_string(),
        };
        let table = match self.tables.get(table) {
            Some(table) => Arc::clone(table),
            None => {
                let shared: Arc<str> = table.into();
                self.tables.insert(table.to_string(), Arc::clone(&shared));
                shared
            }
        };
        let text: Arc<str> = position.token_text().into();
        let placed = self.transactions.change(
            values::transaction_id(&event).as_deref(),
            &table,
            &text,
            position.time,
        );
        if let Some(note) = placed.ended {
            ctx.note(note).await.map_err(ending)?;
        }
        let mut event = ChangeEvent {
            table,
            op: change.op,
            key: change.key,
            old_key: None,
            before: change.before,
            after: change.after,
            extensions: Default::default(),
            position: text,
            commit_time: position.time,
            tx: placed.tx,
        };
        if let Some(update) = change.update {
            event.extensions.insert("update", update);
        }
        ctx.emit(event).await.map_err(ending)?;
        progress.passed(ctx, position);
        progress.save_flushed(ctx).map_err(ending)
    }

    /// A drop, rename or dropped database under a database or deployment scope: a `schema`
    /// line; an invalidated stream (its database dropped) is opened again after it.
    async fn lifecycle(
        &mut self,
        ctx: &mut SourceContext,
        progress: &mut Progress,
        lifecycle: Lifecycle,
        position: Position,
    ) -> Result<(), Ending> {
        self.end_transaction(ctx).await?;
        if lifecycle == Lifecycle::Invalidated {
            // Not kept as a position: a stream cannot resume after an invalidate, only start
            // after it; a restart resumes before it and comes here again.
            let token = position
                .resume_token()
                .map_err(|error| ending(SourceError::permanent(error)))?;
            let stream = stream::open(&self.watched, &self.options, Start::AfterInvalidate(token))
                .await
                .map_err(|error| (classify(&error, &ctx.url), ERROR_DRAIN_TIMEOUT))?;
            self.reader = Reader::spawn(stream, Some(position.token));
            return Ok(());
        }
        if let Some(note) = lifecycle_note(&self.scope, lifecycle) {
            ctx.note(note).await.map_err(ending)?;
        }
        progress.passed(ctx, position);
        progress.save_flushed(ctx).map_err(ending)
    }
}

/// The saved position of this listener, if any.
fn saved_position(ctx: &SourceContext) -> Result<Option<Position>, SourceError> {
    let saved = ctx.load_position()?;
    saved
        .map(|text| {
            Position::decode(&text).map_err(|error| {
                SourceError::permanent(format!(
                    "the saved position of {} under {} is not usable ({error}); remove its file \
                     there to start from now",
                    ctx.identity(),
                    ctx.positions.dir().display()
                ))
            })
        })
        .transpose()
}

/// Opens the stream after `start` (or from now). A start the server no longer has is
/// replaced by now, and handed back as the start of the gap.
async fn open_stream(
    ctx: &SourceContext,
    watched: &Watched,
    options: &mut StreamOptions,
    start: Option<Position>,
    detail: &str,
    has_filter: bool,
) -> Result<
    (
        mongodb::change_stream::ChangeStream<Document>,
        Option<Position>,
    ),
    SourceError,
> {
    let token = start
        .as_ref()
        .map(Position::resume_token)
        .transpose()
        .map_err(SourceError::permanent)?;
    let at = |token: &Option<_>| match token {
        Some(token) => Start::After(Clone::clone(token)),
        None => Start::Now,
    };
    let opened = match stream::open(watched, options, at(&token)).await {
        Err(error) if options.pre_images && rejects_pre_images(&error) => {
            options.pre_images = false;
            let note = "this server has no pre-images (MongoDB 6.0 or later gives them): \
                        before is null";
            tracing::warn!(listener = ctx.identity(), "{note}");
            ctx.set_detail(Some(format!("{detail}; {note}")));
            stream::open(watched, options, at(&token)).await
        }
        opened => opened,
    };
    match opened {
        Ok(stream) => Ok((stream, None)),
        Err(error) if start.is_some() && is_history_lost(&error) => {
            tracing::warn!(
                listener = ctx.identity(),
                "cannot resume: {}",
                describe(&error, &ctx.url)
            );
            let stream = stream::open(watched, options, Start::Now)
                .await
                .map_err(|error| classify(&error, &ctx.url))?;
            Ok((stream, start))
        }
        Err(error) if has_filter && rejects_filter(&error) => Err(SourceError::permanent(format!(
            "{}; check the listener's filter (the server runs it as the change stream's \
                 $match)",
            describe(&error, &ctx.url)
        ))),
        Err(error) => Err(classify(&error, &ctx.url)),
    }
}

/// Says, everywhere the user looks, that the changes since `from` up to now were lost.
fn report_gap(ctx: &mut SourceContext, from: &Position, detail: &str) {
    let message = format!(
        "resume token no longer in the oplog: changes between {} and now ({}) were not captured",
        from.describe_time(),
        format_time(&Utc::now())
    );
    tracing::warn!(listener = ctx.identity(), "{message}");
    ctx.set_detail(Some(format!("{detail}; {message}")));
    ctx.set_running_because(message);
}

/// Positions on their way to being saved.
#[derive(Default)]
struct Progress {
    pending: PendingPositions<Arc<Position>>,
    /// The newest position handed on: an event's, or a post-batch token.
    sent: Option<Arc<Position>>,
    /// The last position saved, as saved.
    saved: Option<String>,
    /// When a quiet stream's position was last queued for saving.
    quiet_queued_at: Option<Instant>,
}

impl Progress {
    /// Everything up to `position` was handed to the pipeline.
    fn passed(&mut self, ctx: &SourceContext, position: Position) {
        let position = Arc::new(position);
        self.sent = Some(Arc::clone(&position));
        self.pending.push(ctx.last_sent_seq(), position);
    }

    /// The stream has nothing more up to `token` (a post-batch resume token).
    fn caught_up(&mut self, ctx: &SourceContext, token: Document) -> Result<(), SourceError> {
        let position = Arc::new(Position {
            token,
            time: Some(Utc::now()),
        });
        self.sent = Some(Arc::clone(&position));
        // The first one at once (a fresh start is kept), then now and then: a quiet
        // collection's saved token stays recent enough to be in the oplog.
        let due = self
            .quiet_queued_at
            .is_none_or(|at| at.elapsed() >= QUIET_SAVE_INTERVAL);
        if due {
            self.quiet_queued_at = Some(Instant::now());
            self.pending.push(ctx.last_sent_seq(), position);
            self.save_flushed(ctx)?;
        }
        Ok(())
    }

    /// Saves the newest position whose changes are all flushed.
    fn save_flushed(&mut self, ctx: &SourceContext) -> Result<(), SourceError> {
        let Some(position) = self.pending.take_flushed(ctx.flushed_seq()) else {
            return Ok(());
        };
        let saved = position.encode();
        if self.saved.as_ref() != Some(&saved) {
            ctx.save_position(&saved)?;
            // Show the token alone, as changes show their position.
            ctx.set_position(position.token_text());
            self.saved = Some(saved);
        }
        Ok(())
    }
}

/// While paused the stream is not read (the reader stops once its few read-ahead events are
/// waiting), but flushed positions are still saved.
async fn hold_while_paused(
    ctx: &mut SourceContext,
    progress: &mut Progress,
) -> Result<(), SourceError> {
    loop {
        let far = Instant::now() + Duration::from_secs(3600);
        match ctx.while_paused(far).await? {
            None => return Ok(()),
            Some(Wake::Flushed) => progress.save_flushed(ctx)?,
            Some(Wake::Deadline | Wake::Control) => {}
        }
    }
}

/// Stops reading, waits (up to `timeout`) for the changes in flight to flush, saves their
/// position, and ends the run with `error`.
async fn finish(
    ctx: &mut SourceContext,
    progress: &mut Progress,
    reader: Reader,
    error: SourceError,
    timeout: Duration,
) -> Result<(), SourceError> {
    drop(reader);
    ctx.drain(timeout).await;
    progress.save_flushed(ctx)?;
    Err(error)
}

/// A client for `url`, with short timeouts unless the URL sets its own.
async fn connect(url: &DatabaseUrl) -> Result<Client, SourceError> {
    let mut options = ClientOptions::parse(url.expose()).await.map_err(|error| {
        SourceError::permanent(format!(
            "the MongoDB URL {} is not usable: {}",
            url.masked(),
            describe(&error, url)
        ))
    })?;
    options
        .app_name
        .get_or_insert_with(|| "cdc-tui".to_string());
    options
        .server_selection_timeout
        .get_or_insert(SERVER_SELECTION_TIMEOUT);
    options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
    // The driver's retry of a failed resume (an `aggregate` retried as a retryable read) is
    // built without the resume token, so it would start from now and lose what happened in
    // between: no retried reads; the listener resumes from its own token instead.
    options.retry_reads = Some(false);
    Client::with_options(options).map_err(|error| classify(&error, url))
}

/// The collections of every database, as `db.collection`.
pub async fn list_collections(url: &DatabaseUrl) -> Result<Vec<String>, SourceError> {
    let client = connect(url).await?;
    let databases = client
        .list_database_names()
        .authorized_databases(true)
        .await
        .map_err(|error| classify(&error, url))?;
    let mut collections = Vec::new();
    for db in databases {
        if matches!(db.as_str(), "admin" | "local" | "config") {
            continue;
        }
        let names = client
            .database(&db)
            .list_collection_names()
            .filter(doc! { "type": "collection" })
            .await
            .map_err(|error| classify(&error, url))?;
        collections.extend(
            names
                .into_iter()
                .filter(|name| !name.starts_with("system."))
                .map(|name| format!("{db}.{name}")),
        );
    }
    collections.sort();
    Ok(collections)
}

fn server_code(error: &DriverError) -> Option<i32> {
    match &*error.kind {
        DriverErrorKind::Command(command) => Some(command.code),
        _ => None,
    }
}

fn is_history_lost(error: &DriverError) -> bool {
    server_code(error).is_some_and(|code| HISTORY_LOST_CODES.contains(&code))
}

fn rejects_filter(error: &DriverError) -> bool {
    server_code(error).is_some_and(|code| REJECTED_FILTER_CODES.contains(&code))
}

fn rejects_pre_images(error: &DriverError) -> bool {
    match &*error.kind {
        DriverErrorKind::Command(command) => {
            command.code == UNKNOWN_FIELD_CODE
                || command.message.contains("fullDocumentBeforeChange")
        }
        _ => false,
    }
}

/// The driver's error in a line, without the password.
fn describe(error: &DriverError, url: &DatabaseUrl) -> String {
    let text = match &*error.kind {
        DriverErrorKind::Command(command) => format!(
            "{} (code {} {})",
            command.message, command.code, command.code_name
        ),
        kind => tidy(&kind.to_string()),
    };
    redact(url, &text)
}

/// The driver nests whole errors in a server selection error's topology, each with its debug
/// furniture (`Kind: `, `labels: {…}`, `source: None`, `server response: None`): keeps the
/// words, drops the furniture.
fn tidy(text: &str) -> String {
    let mut text = text
        .replace("Kind: ", "")
        .replace(", source: None", "")
        .replace(", server response: None", "");
    while let Some(start) = text.find(", labels: {") {
        let Some(length) = text[start..].find('}') else {
            break;
        };
        text.replace_range(start..=start + length, "");
    }
    text
}

/// Removes the URL's password from `text`, as written in the URL and percent-decoded (the
/// driver works with the decoded one).
fn redact(url: &DatabaseUrl, text: &str) -> String {
    url.redact(text)
}

/// Sorts a driver error into waiting-may-help or not, in words the user can act on.
fn classify(error: &DriverError, url: &DatabaseUrl) -> SourceError {
    let text = describe(error, url);
    match &*error.kind {
        DriverErrorKind::Command(command) => match command.code {
            STANDALONE_CODE => SourceError::permanent(format!(
                "change streams need a replica set, and this MongoDB server is a standalone \
                 ({text}). A standalone becomes a single-node replica set like this: restart \
                 mongod with --replSet rs0 (or replication.replSetName: rs0 in mongod.conf), \
                 run rs.initiate() once in mongosh, then connect with ?replicaSet=rs0 (or \
                 ?directConnection=true) in the URL"
            )),
            260 => SourceError::permanent(format!(
                "the server does not accept the resume token ({text}); remove the listener's \
                 saved position under the state dir to start from now"
            )),
            // Unauthorized, AuthenticationFailed, BadValue, FailedToParse, TypeMismatch,
            // InvalidOptions, InvalidNamespace, unknown field, CommandNotSupported.
            13 | 18 | 2 | 9 | 14 | 72 | 73 | UNKNOWN_FIELD_CODE | 115 => {
                SourceError::permanent(text)
            }
            _ => SourceError::transient(text),
        },
        DriverErrorKind::Authentication { .. }
        | DriverErrorKind::InvalidArgument { .. }
        | DriverErrorKind::InvalidTlsConfig { .. }
        | DriverErrorKind::IncompatibleServer { .. } => SourceError::permanent(text),
        DriverErrorKind::ServerSelection { .. } => connection_error(text, url, true),
        DriverErrorKind::Io(_) => connection_error(text, url, false),
        _ => SourceError::transient(text),
    }
}

/// A connection error (a TLS handshake's among them), found while selecting a server (so
/// before any connection got going) or on a connection in use.
fn connection_error(text: String, url: &DatabaseUrl, at_selection: bool) -> SourceError {
    match refused_certificate(&text) {
        // A certificate that does not check out will not on the next try either (as for
        // PostgreSQL).
        Some(reason) => SourceError::permanent(reason),
        None if at_selection => SourceError::transient(with_plaintext_hint(text, url)),
        None => SourceError::transient(text),
    }
}

/// What rustls says about a server certificate it refused. The driver keeps only the text of
/// connection errors inside a server selection error, so the text is all there is to go on.
const REFUSED_CERTIFICATE: &str = "invalid peer certificate: ";

/// A refused server certificate in words the user can act on (with the driver's text, which
/// names the server), or None when `text` is about something else.
fn refused_certificate(text: &str) -> Option<String> {
    let start = text.find(REFUSED_CERTIFICATE)? + REFUSED_CERTIFICATE.len();
    let rest = &text[start..];
    // The detail ends where the driver's topology furniture resumes.
    let detail = rest[..rest.find(" }").unwrap_or(rest.len())].trim_end();
    let what = if detail.contains("NotValidForName") || detail.contains("not valid for name") {
        "is not issued for the host in the URL ({detail}): connect with a host name the \
         certificate names"
    } else if detail.contains("xpired") {
        "has expired ({detail})"
    } else {
        "is not trusted ({detail}): tlsCAFile=/path/ca.pem in the URL must name the CA (PEM) \
         that signed it"
    };
    Some(format!(
        "TLS: the server's certificate {}; the driver said: {text}",
        what.replace("{detail}", detail)
    ))
}

/// A server that requires TLS closes a plaintext connection during the handshake, which the
/// driver reports as a bare end of file (or reset): when the URL does not ask for TLS, says
/// that this may be why.
fn with_plaintext_hint(text: String, url: &DatabaseUrl) -> String {
    let closed = text.contains("unexpected end of file") || text.contains("Connection reset");
    if !closed || url_asks_for_tls(url.expose()) {
        return text;
    }
    format!(
        "{text}; the server closed the connection during the handshake: if it requires TLS, \
         add tls=true to the URL (with tlsCAFile=/path/ca.pem for a private CA)"
    )
}

/// `tls=true` or `ssl=true` (the driver's two names, any case) in the URL's options.
fn url_asks_for_tls(url: &str) -> bool {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    query.split('&').any(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key.eq_ignore_ascii_case("tls") || key.eq_ignore_ascii_case("ssl"))
            && value.eq_ignore_ascii_case("true")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_is_a_json_object_and_lifecycle_events_pass_it() {
        let options = |filter: &str| {
            let mut table = toml::Table::new();
            table.insert("filter".into(), toml::Value::String(filter.into()));
            ChangeStreamOptions::parse(&table)
        };
        let parsed = options(r#"{"fullDocument.owner": {"$oid": "65f0a1b2c3d4e5f601234567"}}"#)
            .unwrap()
            .filter()
            .unwrap()
            .unwrap();
        assert!(
            parsed.get_object_id("fullDocument.owner").is_ok(),
            "{parsed}"
        );
        for bad in ["status = paid", "[1]", "{\"a\": "] {
            let error = options(bad).unwrap_err();
            assert_eq!(error.key, "filter");
            assert!(error.message.contains("JSON object"), "{}", error.message);
        }
        let user = doc! { "fullDocument.status": "paid" };
        assert_eq!(
            stream_filter(Some(doc! { "ns.db": "shop" }), Some(user.clone())),
            Some(doc! { "$and": [
                { "ns.db": "shop" },
                { "$or": [
                    { "operationType": { "$in": ["drop", "rename", "dropDatabase", "invalidate"] } },
                    user,
                ] },
            ] })
        );
        assert_eq!(stream_filter(None, None), None);
    }

    #[test]
    fn a_url_names_the_database_to_watch_or_the_deployment() {
        let scope = |url: &str| Mongo.whole_scope(&DatabaseUrl::new(url));
        assert_eq!(scope("mongodb://h:27017/shop?replicaSet=rs0"), "shop.*");
        assert_eq!(scope("mongodb://a,b/my%2Dshop"), "my-shop.*");
        assert_eq!(scope("mongodb://h:27017/?directConnection=true"), "*");
        assert_eq!(scope("mongodb://h:27017"), "*");
    }

    #[test]
    fn the_detail_says_where_each_filter_runs() {
        assert_eq!(
            describe_watch(&Target::Database("shop".into()), Some(true), true),
            "db.watch() on shop; scope matched by the server ($match on ns); filter run by the \
             server ($match)"
        );
        assert_eq!(
            describe_watch(&Target::Deployment, Some(false), false),
            "client.watch() on the deployment; scope patterns matched in cdc-tui (the server's \
             $match takes exact names)"
        );
    }

    #[test]
    fn passwords_are_redacted_as_written_and_decoded() {
        let url = DatabaseUrl::new("mongodb://app:p%40ss@db:27017/?replicaSet=rs0");
        assert_eq!(
            redact(&url, "auth failed for app:p@ss via mongodb://app:p%40ss@db"),
            "auth failed for app:*** via mongodb://app:***@db"
        );
    }

    fn transient(error: &SourceError) -> bool {
        matches!(error.kind, crate::source::ErrorKind::Transient)
    }

    /// A server selection error's text as `describe` leaves it, around one server's error.
    fn selection_text(server_error: &str) -> String {
        format!(
            "Server selection timeout: No available servers. Topology: {{ Type: Single, Servers: \
             [ {{ Address: 127.0.0.1:27017, Type: Unknown, Error: {server_error} }} ] }}"
        )
    }

    #[test]
    fn refused_certificates_fail_saying_what_to_do() {
        let url = DatabaseUrl::new("mongodb://127.0.0.1:27017/?tls=true&tlsCAFile=/ca.pem");
        let error = connection_error(
            selection_text("I/O error: invalid peer certificate: UnknownIssuer"),
            &url,
            true,
        );
        assert!(!transient(&error));
        assert!(
            error.message.starts_with(
                "TLS: the server's certificate is not trusted (UnknownIssuer): \
                 tlsCAFile=/path/ca.pem in the URL must name the CA (PEM) that signed it; the \
                 driver said: Server selection timeout"
            ) && error.message.contains("127.0.0.1:27017"),
            "{}",
            error.message
        );
        let error = connection_error(
            selection_text(
                "I/O error: invalid peer certificate: certificate not valid for name \
                 \"127.0.0.1\"; certificate is only valid for DnsName(\"db.example\")",
            ),
            &url,
            true,
        );
        assert!(!transient(&error));
        assert!(
            error.message.starts_with(
                "TLS: the server's certificate is not issued for the host in the URL \
                 (certificate not valid for name \"127.0.0.1\"; certificate is only valid for \
                 DnsName(\"db.example\")): connect with a host name the certificate names;"
            ),
            "{}",
            error.message
        );
        // The driver's own I/O error (not nested in a server selection) is read the same way.
        let io = DriverError::from(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        ));
        assert!(!transient(&classify(&io, &url)));
        // Other connection errors under TLS keep waiting, without a hint.
        let error = connection_error(
            selection_text("I/O error: unexpected end of file"),
            &url,
            true,
        );
        assert!(transient(&error));
        assert!(!error.message.contains("tls=true"), "{}", error.message);
    }

    #[test]
    fn a_plaintext_connection_closed_at_once_suggests_tls() {
        let eof = selection_text("I/O error: unexpected end of file");
        for plain in [
            "mongodb://127.0.0.1:27017/?directConnection=true",
            "mongodb://127.0.0.1:27017/?tls=false",
        ] {
            let error = connection_error(eof.clone(), &DatabaseUrl::new(plain), true);
            assert!(transient(&error));
            assert!(
                error.message.ends_with(
                    "the server closed the connection during the handshake: if it requires \
                     TLS, add tls=true to the URL (with tlsCAFile=/path/ca.pem for a private CA)"
                ),
                "{}",
                error.message
            );
        }
        for tls in ["mongodb://h/?TLS=true", "mongodb://h/?a=1&ssl=TRUE"] {
            assert!(url_asks_for_tls(tls), "{tls}");
        }
        let plain = DatabaseUrl::new("mongodb://127.0.0.1:27017/");
        // A connection in use that drops is not a refused plaintext one.
        let dropped = connection_error("I/O error: unexpected end of file".into(), &plain, false);
        assert_eq!(dropped.message, "I/O error: unexpected end of file");
        let refused = selection_text("I/O error: Connection refused (os error 111)");
        assert!(
            !connection_error(refused, &plain, true)
                .message
                .contains("tls=true")
        );
    }

    #[test]
    fn server_selection_errors_keep_their_words_only() {
        let text = "Server selection timeout: No available servers. Topology: { Type: Single, \
                    Servers: [ { Address: 127.0.0.1:1, Type: Unknown, Error: Kind: I/O error: \
                    Connection refused (os error 111), labels: {\"RetryableError\", \
                    \"SystemOverloadedError\"}, source: None, server response: None } ] }";
        assert_eq!(
            tidy(text),
            "Server selection timeout: No available servers. Topology: { Type: Single, \
             Servers: [ { Address: 127.0.0.1:1, Type: Unknown, Error: I/O error: Connection \
             refused (os error 111) } ] }"
        );
    }
}
