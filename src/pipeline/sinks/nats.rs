//! `[sinks.nats]`: every change (its JSON line, as headless prints it) and every transaction,
//! message and schema line published to NATS JetStream, one message each, on a subject from
//! the template.
//!
//! Delivery: a batch counts as written only once JetStream acknowledged every message of it
//! (each publish's ack future is awaited), so the handler acknowledges positions to the
//! database only after that. Until then the batch is published again, with backoff: while
//! NATS is slow or unreachable the flush blocks, the handler's bounded queue fills and capture
//! waits (backpressure, no buffer of its own). Each message carries a `Nats-Msg-Id` made of the
//! listener and the change's position, so JetStream drops within its duplicate window what a
//! retry, or a capture restarted from an older position, publishes again.
//!
//! The sink is synchronous (as every sink is) and runs on the blocking pool: it drives the
//! async client with the runtime's handle. It connects and makes its stream at the start
//! ([`NatsSink::warm_up`]), not at the first change, so its state shows at once and viewers
//! find the stream before anything was captured.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use chrono::Utc;
use tokio::sync::watch;

use crate::change::{Change, Note, NoteKind};
use crate::config::schema::NatsSinkConfig;
use crate::pipeline::collate::Batch;
use crate::pipeline::sinks::{Sink, SinkError};
use crate::registry::{ListenerState, Registry};
use crate::secret::DatabaseUrl;

/// How long JetStream may take to acknowledge a publish before the batch is sent again.
const ACK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Publishes awaiting their acks at once: below the client's 5,000, so a batch larger than
/// that (chunk_size goes up to 100,000) never waits on itself.
const ACK_WINDOW: usize = 1024;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Limits of a stream this sink creates (README "Watching from anywhere").
const STREAM_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
const STREAM_MAX_BYTES: i64 = 1 << 30;
/// What JetStream remembers message ids for: resends within it are dropped.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The sink's state, for the headless status lines and the UI: `starting` until it first
/// connected and found its stream, `running` while that and publishing work, `retrying` with
/// the reason while they do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStatus {
    pub state: ListenerState,
    pub reason: Option<String>,
}

/// Checks `[sinks.nats]`; on error, the key at fault and why.
pub fn check_config(config: &NatsSinkConfig) -> Result<(), (&'static str, String)> {
    if !config.url.expose().starts_with("nats://") && !config.url.expose().starts_with("tls://") {
        return Err(("url", "a NATS URL starts with nats:// or tls://".into()));
    }
    if config.stream.is_empty()
        || config
            .stream
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err((
            "stream",
            "a stream name is a word without spaces, '.', '*', '>', '/' or '\\'".into(),
        ));
    }
    if !(1..=5).contains(&config.replicas) {
        return Err(("replicas", "must be between 1 and 5".into()));
    }
    SubjectTemplate::parse(&config.subject)
        .map(drop)
        .map_err(|message| ("subject", message))
}

/// A subject template: literal text and the placeholders filled in per message.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Database,
    Table,
    Op,
    Listener,
}

/// What a subject is made of for one message.
struct Fill<'a> {
    database: &'a str,
    table: &'a str,
    op: &'a str,
    listener: &'a str,
}

impl SubjectTemplate {
    pub fn parse(template: &str) -> Result<SubjectTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("{template:?}: a '{{' without its '}}'"))?;
            parts.push(match &rest[open + 1..open + close] {
                "database" => Part::Database,
                "table" => Part::Table,
                "op" => Part::Op,
                "listener" => Part::Listener,
                other => {
                    return Err(format!(
                        "{template:?}: unknown placeholder {{{other}}} (use {{database}}, \
                         {{table}}, {{op}} or {{listener}})"
                    ));
                }
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        let template = SubjectTemplate { parts };
        let literal = template.literal_prefix();
        if literal.is_empty()
            || literal.starts_with('.')
            || literal.contains("..")
            || literal
                .chars()
                .any(|c| c.is_whitespace() || c == '*' || c == '>')
        {
            return Err(format!(
                "{:?}: a subject starts with fixed tokens, as cdc.{{database}}.{{table}}, and \
                 has no spaces, '*' or '>'",
                template.to_string()
            ));
        }
        if template.parts.len() > 1 && !literal.ends_with('.') {
            return Err(format!(
                "{:?}: the fixed part before the first placeholder ends with '.', as in \
                 cdc.{{database}}.{{table}}",
                template.to_string()
            ));
        }
        Ok(template)
    }

    /// The text before the first placeholder.
    fn literal_prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Text(text)) => text,
            _ => "",
        }
    }

    /// The subjects a stream for this template takes: the fixed tokens and `>`.
    pub fn stream_subjects(&self) -> Vec<String> {
        match self.parts.as_slice() {
            [Part::Text(only)] => vec![only.clone()],
            _ => vec![format!("{}>", self.literal_prefix())],
        }
    }

    fn render(&self, fill: &Fill<'_>) -> String {
        let mut subject = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => subject.push_str(text),
                // A table keeps its dots: `public.orders` is two tokens, so `cdc.shop.public.*`
                // picks a schema.
                Part::Table => push_tokens(&mut subject, fill.table),
                Part::Database => push_token(&mut subject, fill.database),
                Part::Op => push_token(&mut subject, fill.op),
                Part::Listener => push_token(&mut subject, fill.listener),
            }
        }
        subject
    }
}

impl std::fmt::Display for SubjectTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(text) => f.write_str(text)?,
                Part::Database => f.write_str("{database}")?,
                Part::Table => f.write_str("{table}")?,
                Part::Op => f.write_str("{op}")?,
                Part::Listener => f.write_str("{listener}")?,
            }
        }
        Ok(())
    }
}

/// A value as one subject token: what a token cannot hold becomes `_`.
fn push_token(subject: &mut String, value: &str) {
    subject.extend(value.chars().map(|c| match c {
        '.' | '*' | '>' => '_',
        c if c.is_whitespace() => '_',
        c => c,
    }));
}

/// A dotted name as tokens: empty tokens and wildcards are made `_`.
fn push_tokens(subject: &mut String, value: &str) {
    for (index, token) in value.split('.').enumerate() {
        if index > 0 {
            subject.push('.');
        }
        if token.is_empty() {
            subject.push('_');
        } else {
            push_token(subject, token.trim_matches('"'));
        }
    }
}

/// One message of a batch, ready to publish.
struct Outgoing {
    subject: String,
    /// `None` for a schema line, which has no position to tell a resend by.
    id: Option<String>,
    payload: Bytes,
}

/// Where the sink publishes.
struct Target {
    url: DatabaseUrl,
    stream: String,
    replicas: usize,
    subjects: Vec<String>,
}

/// A connection on which the stream is known to exist, once made; shared by the sink and its
/// warm-up.
type ConnectionSlot = Arc<tokio::sync::Mutex<Option<jetstream::Context>>>;

pub struct NatsSink {
    runtime: tokio::runtime::Handle,
    target: Arc<Target>,
    subject: SubjectTemplate,
    registry: Arc<Registry>,
    /// Listener identity → its database's name, for `{database}`.
    databases: HashMap<Arc<str>, Arc<str>>,
    connection: ConnectionSlot,
    status: Arc<watch::Sender<SinkStatus>>,
    /// Set at shutdown: a batch that cannot be published then is given up on (unacknowledged,
    /// so the database sends it again at the next start) instead of holding the exit forever.
    give_up: Arc<watch::Sender<bool>>,
    line: Vec<u8>,
}

impl NatsSink {
    /// A sink publishing with `config`; it connects in [`Self::warm_up`], else at its first
    /// batch. Must be made on the runtime it publishes with.
    pub fn new(config: &NatsSinkConfig, registry: Arc<Registry>) -> Result<NatsSink, String> {
        let subject = SubjectTemplate::parse(&config.subject)?;
        let (status, _) = watch::channel(SinkStatus {
            state: ListenerState::Starting,
            reason: None,
        });
        Ok(NatsSink {
            runtime: tokio::runtime::Handle::current(),
            target: Arc::new(Target {
                url: config.url.clone(),
                stream: config.stream.clone(),
                replicas: config.replicas,
                subjects: subject.stream_subjects(),
            }),
            subject,
            registry,
            databases: HashMap::new(),
            connection: ConnectionSlot::default(),
            status: Arc::new(status),
            give_up: Arc::new(watch::channel(false).0),
            line: Vec::with_capacity(1024),
        })
    }

    /// Set it at shutdown: a batch NATS does not take then fails the sink rather than wait.
    pub fn give_up_handle(&self) -> Arc<watch::Sender<bool>> {
        self.give_up.clone()
    }

    /// The sink's state as it changes.
    pub fn subscribe_status(&self) -> watch::Receiver<SinkStatus> {
        self.status.subscribe()
    }

    /// Connects and finds or makes the stream, trying again with backoff until that worked
    /// (or a batch connected first, or shutdown came): spawn it at the start.
    pub fn warm_up(&self) -> impl Future<Output = ()> + Send + 'static {
        let (target, slot) = (self.target.clone(), self.connection.clone());
        let (status, give_up) = (self.status.clone(), self.give_up.clone());
        async move {
            let attempt = || async {
                let mut connection = slot.lock().await;
                if connection.is_none() {
                    *connection = Some(connect(&target).await?);
                }
                Ok(())
            };
            // At shutdown the sink gives up; so does this, quietly.
            let _ = until_it_works(&status, &give_up, attempt).await;
        }
    }

    fn database_of(&mut self, listener: &Arc<str>) -> Arc<str> {
        if let Some(database) = self.databases.get(listener) {
            return database.clone();
        }
        let database: Arc<str> = match self.registry.get(listener) {
            Ok(handle) => handle.config().database.as_str().into(),
            // A listener removed since: its identifier stands in.
            Err(_) => listener.split('/').next().unwrap_or_default().into(),
        };
        self.databases.insert(listener.clone(), database.clone());
        database
    }

    fn change_message(&mut self, change: &Change) -> Outgoing {
        let database = self.database_of(&change.listener);
        let subject = self.subject.render(&Fill {
            database: &database,
            table: &change.table,
            op: change.op.as_str(),
            listener: change.identity(),
        });
        self.line.clear();
        change.write_json_line(&mut self.line);
        Outgoing {
            subject,
            id: Some(change_id(change)),
            payload: Bytes::copy_from_slice(trim_newline(&self.line)),
        }
    }

    /// `None` for an error line: it is about this capture's input, not a change to pass on.
    fn note_message(&mut self, note: &Note) -> Option<Outgoing> {
        let database = self.database_of(&note.listener);
        let (table, op, id): (&str, &str, Option<String>) = match &note.kind {
            NoteKind::Error { .. } => return None,
            NoteKind::Schema { table, .. } => (table, "schema", None),
            NoteKind::Transaction { id, position, .. } => (
                "_transaction",
                "transaction",
                Some(format!("{}|tx|{id}|{position}", note.listener)),
            ),
            NoteKind::Message { position, tx, .. } => (
                "_message",
                "message",
                Some(format!(
                    "{}|message|{position}|{}",
                    note.listener,
                    tx.as_ref().map_or(0, |tx| tx.index)
                )),
            ),
        };
        let subject = self.subject.render(&Fill {
            database: &database,
            table,
            op,
            listener: &note.listener,
        });
        self.line.clear();
        note.write_json_line(&mut self.line);
        Some(Outgoing {
            subject,
            id,
            payload: Bytes::copy_from_slice(trim_newline(&self.line)),
        })
    }

    /// The batch's lines as messages, in the order headless prints them.
    fn messages(&mut self, batch: &Batch) -> Vec<Outgoing> {
        let mut messages = Vec::with_capacity(batch.changes.len() + batch.notes.len());
        let mut notes = batch.notes.iter().peekable();
        for (at, change) in batch.changes.iter().enumerate() {
            while let Some((_, note)) = notes.next_if(|(before, _)| *before == at) {
                messages.extend(self.note_message(note));
            }
            messages.push(self.change_message(change));
        }
        for (_, note) in notes {
            messages.extend(self.note_message(note));
        }
        messages
    }

    /// Publishes every message and waits for JetStream's acknowledgement of each, trying
    /// again (the whole batch: resends are dropped by their ids) until it worked.
    /// At shutdown, the last failure is returned instead.
    async fn publish_until_acknowledged(&self, messages: &[Outgoing]) -> Result<(), String> {
        let (target, slot) = (&*self.target, &self.connection);
        let attempt = move || async move {
            (publish(target, slot, messages).await)
                .map_err(|reason| format!("{reason} ({} messages waiting)", messages.len()))
        };
        until_it_works(&self.status, &self.give_up, attempt).await
    }
}

/// Runs `attempt` until it works, with backoff, the sink's state saying `retrying` and why
/// meanwhile and `running` after. Once `give_up` is set, the last failure is returned instead.
async fn until_it_works<Attempt, Done>(
    status: &watch::Sender<SinkStatus>,
    give_up: &watch::Sender<bool>,
    mut attempt: Attempt,
) -> Result<(), String>
where
    Attempt: FnMut() -> Done,
    Done: Future<Output = Result<(), String>>,
{
    let set_status = |state, reason| {
        let status_now = SinkStatus { state, reason };
        status.send_if_modified(|current| {
            let changed = *current != status_now;
            *current = status_now;
            changed
        });
    };
    let mut backoff = FIRST_BACKOFF;
    let mut give_up = give_up.subscribe();
    loop {
        match attempt().await {
            Ok(()) => {
                set_status(ListenerState::Running, None);
                return Ok(());
            }
            Err(reason) if *give_up.borrow() => return Err(reason),
            Err(reason) => {
                tracing::warn!("nats sink: {reason}; trying again in {backoff:?}");
                set_status(ListenerState::Retrying, Some(reason));
                // Shutdown cuts the wait short for one last try.
                let _ = tokio::time::timeout(backoff, give_up.wait_for(|given| *given)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// A connection to `target` on which its stream exists (made when absent).
async fn connect(target: &Target) -> Result<jetstream::Context, String> {
    let url = target.url.masked();
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(CONNECT_TIMEOUT)
        .name("cdc-tui")
        .connect(crate::source::nats::server_list(&target.url))
        .await
        .map_err(|error| format!("cannot connect to {url}: {error}"))?;
    let jetstream = jetstream::ContextBuilder::new()
        .timeout(ACK_TIMEOUT)
        .build(client);
    let config = stream::Config {
        name: target.stream.clone(),
        subjects: target.subjects.clone(),
        storage: stream::StorageType::File,
        max_age: STREAM_MAX_AGE,
        max_bytes: STREAM_MAX_BYTES,
        discard: stream::DiscardPolicy::Old,
        duplicate_window: DUPLICATE_WINDOW,
        num_replicas: target.replicas,
        ..Default::default()
    };
    jetstream
        .get_or_create_stream(config)
        .await
        .map_err(|error| {
            format!(
                "{url}: cannot find or create the stream {}: {error}",
                target.stream
            )
        })?;
    Ok(jetstream)
}

async fn publish(
    target: &Target,
    slot: &ConnectionSlot,
    messages: &[Outgoing],
) -> Result<(), String> {
    let url = target.url.masked();
    let mut connection = slot.lock().await;
    if connection.is_none() {
        *connection = Some(connect(target).await?);
    }
    let Some(jetstream) = connection.as_ref() else {
        unreachable!("connected above");
    };
    // In windows: the client holds at most so many acks pending (a publish past them
    // would wait for an ack this loop has not awaited yet).
    for window in messages.chunks(ACK_WINDOW) {
        let mut acks = Vec::with_capacity(window.len());
        for message in window {
            let mut publish =
                jetstream::message::PublishMessage::build().payload(message.payload.clone());
            if let Some(id) = &message.id {
                publish = publish.message_id(id);
            }
            let ack = jetstream
                .send_publish(message.subject.clone(), publish)
                .await
                .map_err(|error| format!("{url}: publishing to {}: {error}", message.subject))?;
            acks.push((ack, &message.subject));
        }
        for (ack, subject) in acks {
            ack.await.map_err(|error| {
                format!("{url}: JetStream did not acknowledge a publish to {subject}: {error}")
            })?;
        }
    }
    Ok(())
}

/// The message id of a change: its listener and position, and (as one position may be shared
/// by the changes of a transaction) its place in the transaction, else its key.
fn change_id(change: &Change) -> String {
    let mut id = format!("{}|{}|", change.identity(), change.position);
    match (&change.tx, &change.key) {
        (Some(tx), _) => id.push_str(&tx.index.to_string()),
        (None, Some(key)) => id.push_str(&serde_json::to_string(key).unwrap_or_default()),
        (None, None) => id.push_str(change.op.as_str()),
    }
    id
}

fn trim_newline(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

impl Sink for NatsSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let messages = self.messages(batch);
        if messages.is_empty() {
            return Ok(());
        }
        let runtime = self.runtime.clone();
        runtime
            .block_on(self.publish_until_acknowledged(&messages))
            .map_err(|reason| SinkError {
                sink: "nats",
                source: std::io::Error::other(format!(
                    "{reason}; not published at shutdown (their positions were not \
                     acknowledged: the next start sends them again)"
                )),
            })
    }
}

/// A sink status as the headless status line prints it.
pub fn status_line(status: &SinkStatus) -> serde_json::Value {
    serde_json::json!({
        "type": "status",
        "sink": "nats",
        "state": status.state.as_str(),
        "reason": status.reason,
        "at": crate::change::format_time(&Utc::now()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill<'a>(table: &'a str) -> Fill<'a> {
        Fill {
            database: "shop",
            table,
            op: "insert",
            listener: "app/public.*",
        }
    }

    #[test]
    fn subjects_are_filled_in_token_by_token() {
        let template = SubjectTemplate::parse("cdc.{database}.{table}").unwrap();
        assert_eq!(
            template.render(&fill("public.orders")),
            "cdc.shop.public.orders"
        );
        assert_eq!(
            template.render(&fill("\"Shop\".\"Order Items\"")),
            "cdc.shop.Shop.Order_Items"
        );
        assert_eq!(template.stream_subjects(), ["cdc.>"]);
        let by_listener = SubjectTemplate::parse("x.{listener}.{op}").unwrap();
        assert_eq!(
            by_listener.render(&fill("t")),
            "x.app/public_*.insert".replace('*', "_")
        );
        assert_eq!(
            SubjectTemplate::parse("changes").unwrap().stream_subjects(),
            ["changes"]
        );
        for bad in [
            "{table}",
            "cdc.{nope}",
            "cdc.{table",
            "cdc{table}",
            "cdc.*.{table}",
            "",
        ] {
            assert!(SubjectTemplate::parse(bad).is_err(), "{bad}");
        }
    }
}
