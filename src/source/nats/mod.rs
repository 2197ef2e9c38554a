//! NATS JetStream as a source: `kind = "nats"`, `strategy = "jetstream"` reads a stream that
//! cdc-tui's nats sink (or Debezium Server's NATS JetStream sink) writes, so a capture beside a
//! database can be watched from anywhere.
//!
//! The listener's `table` is a subject filter (`cdc.>`, `cdc.shop.*`); `stream` names the
//! stream (looked up by the subject when absent); `deliver` says where a new consumer starts
//! (`new`, `all`, or an RFC 3339 time). With `consumer` the listener uses that durable
//! consumer: JetStream remembers how far it got, and a message is acknowledged (AckPolicy
//! All: the newest flushed one acknowledges the ones before it) only after its change was
//! flushed, so a restart resumes without a gap. Without it an ordered consumer reads what it
//! is given and acknowledges nothing; a retry within the run starts after the last message
//! sent.
//!
//! Each message is decoded by `decode`: cdc-tui's own lines or Debezium's envelope, detected
//! per message or forced by `format`. The `position` of every change is the stream sequence;
//! where the record came from (its listener and position) is kept as `origin`.

mod decode;

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde::Deserialize;
use tokio::time::Instant;

use crate::config::schema::DatabaseConfig;
use crate::registry::Control;
use crate::secret::DatabaseUrl;
use crate::source::kind::{check_scheme, parse_options};
use crate::source::{
    DRAIN_TIMEOUT, ErrorKind, OptionError, PendingPositions, SourceContext, SourceError,
    SourceKind, Strategy, Wake,
};

pub use decode::Format;
use decode::{Decoded, Decoder};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A durable consumer's messages wait this long for their flush before JetStream sends them
/// again (a resend is recognised by its sequence and skipped).
const ACK_WAIT: Duration = Duration::from_secs(60);
/// Messages a durable consumer hands out before one is acknowledged: the queue's bound.
const MAX_ACK_PENDING: i64 = 10_000;

/// NATS JetStream, named by a `nats://` (or `tls://`) URL.
pub struct Nats;

impl SourceKind for Nats {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn about(&self) -> &'static str {
        "NATS JetStream streams of changes"
    }

    fn url_schemes(&self) -> &'static [&'static str] {
        &["nats://", "tls://"]
    }

    fn strategies(&self) -> &'static [&'static dyn Strategy] {
        &[&JetStream]
    }

    fn check_database(
        &self,
        _database: &DatabaseConfig,
        url: &DatabaseUrl,
        _config_dir: &Path,
    ) -> Result<(), (&'static str, String)> {
        check_scheme(self, url)
    }

    fn check_table(&self, table: &str) -> Result<(), String> {
        check_subject_filter(table)
    }

    fn whole_scope(&self, _url: &DatabaseUrl) -> String {
        ">".to_string()
    }

    fn table_noun(&self) -> &'static str {
        "subject"
    }

    fn list_tables<'a>(
        &'a self,
        url: &'a DatabaseUrl,
    ) -> BoxFuture<'a, Result<Vec<String>, SourceError>> {
        Box::pin(async move {
            let jetstream = connect(url).await?;
            let mut streams = jetstream.streams();
            let mut subjects = Vec::new();
            while let Some(info) = streams.next().await {
                let info = info.map_err(|error| {
                    SourceError::transient(format!("{}: listing streams: {error}", url.masked()))
                })?;
                subjects.extend(info.config.subjects);
            }
            subjects.sort();
            subjects.dedup();
            Ok(subjects)
        })
    }
}

/// A subject filter: dot-separated tokens, `*` for one token, `>` for the rest.
fn check_subject_filter(filter: &str) -> Result<(), String> {
    let tokens: Vec<&str> = filter.split('.').collect();
    for (index, token) in tokens.iter().enumerate() {
        let valid = !token.is_empty()
            && !token.chars().any(char::is_whitespace)
            && (token.len() == 1 || !token.contains(['*', '>']))
            && (*token != ">" || index == tokens.len() - 1);
        if !valid {
            return Err(format!(
                "{filter:?} is not a subject filter (tokens separated by '.', `*` for one \
                 token, `>` for the rest: cdc.>, cdc.shop.*)"
            ));
        }
    }
    Ok(())
}

async fn connect(url: &DatabaseUrl) -> Result<jetstream::Context, SourceError> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(CONNECT_TIMEOUT)
        .name("cdc-tui")
        .connect(server_list(url))
        .await
        .map_err(|error| {
            SourceError::transient(format!("cannot connect to {}: {error}", url.masked()))
        })?;
    Ok(jetstream::new(client))
}

/// The servers a URL names: one, or several separated by commas (members of a cluster, tried
/// in turn).
pub(crate) fn server_list(url: &DatabaseUrl) -> Vec<&str> {
    url.expose().split(',').map(str::trim).collect()
}

/// `strategy = "jetstream"`.
pub struct JetStream;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JetStreamOptions {
    /// The stream; when absent, the one that takes the subject filter.
    #[serde(default)]
    stream: Option<String>,
    /// A durable consumer's name: resume across restarts.
    #[serde(default)]
    consumer: Option<String>,
    /// `new` (the default), `all`, or an RFC 3339 time.
    #[serde(default)]
    deliver: Option<String>,
    /// `cdc-tui` or `debezium`; absent: detected per message.
    #[serde(default)]
    format: Option<Format>,
}

/// Where a new consumer starts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Deliver {
    New,
    All,
    From(DateTime<Utc>),
}

impl JetStreamOptions {
    fn parse(options: &toml::Table) -> Result<JetStreamOptions, OptionError> {
        let parsed: JetStreamOptions = parse_options(options)?;
        parsed.deliver()?;
        if let Some(name) = &parsed.consumer
            && (name.is_empty() || name.contains(['.', '*', '>', ' ', '/', '\\']))
        {
            return Err(OptionError::new(
                "consumer",
                "a consumer name is a word without spaces, '.', '*', '>', '/' or '\\'",
            ));
        }
        Ok(parsed)
    }

    fn deliver(&self) -> Result<Deliver, OptionError> {
        match self.deliver.as_deref() {
            None | Some("new") => Ok(Deliver::New),
            Some("all") => Ok(Deliver::All),
            Some(time) => DateTime::parse_from_rfc3339(time)
                .map(|time| Deliver::From(time.to_utc()))
                .map_err(|_| {
                    OptionError::new(
                        "deliver",
                        format!("{time:?}: use new, all, or a time such as 2026-11-25T10:00:00Z"),
                    )
                }),
        }
    }
}

impl Strategy for JetStream {
    fn name(&self) -> &'static str {
        "jetstream"
    }

    fn note(&self) -> &'static str {
        "reads changes cdc-tui or Debezium published to a JetStream stream"
    }

    fn option_keys(&self) -> &'static [&'static str] {
        &["stream", "consumer", "deliver", "format"]
    }

    fn check_options(&self, options: &toml::Table) -> Result<(), OptionError> {
        JetStreamOptions::parse(options).map(drop)
    }

    fn run<'a>(&'a self, ctx: &'a mut SourceContext) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(read_stream(ctx))
    }
}

type Messages = BoxStream<'static, Result<jetstream::Message, String>>;

async fn read_stream(ctx: &mut SourceContext) -> Result<(), SourceError> {
    let options = JetStreamOptions::parse(&ctx.config().options)?;
    let filter = ctx.config().table.clone();
    let url = ctx.url.clone();
    let jetstream = connect(&url).await?;
    let stream_name = match &options.stream {
        Some(name) => name.clone(),
        None => jetstream
            .stream_by_subject(filter.clone())
            .await
            .map_err(|error| {
                SourceError::transient(format!(
                    "{}: no stream takes {filter} yet ({error}); name it with stream = \"…\"",
                    url.masked()
                ))
            })?,
    };
    let stream = jetstream.get_stream(&stream_name).await.map_err(|error| {
        SourceError::transient(format!("{}: stream {stream_name}: {error}", url.masked()))
    })?;
    // After a retry within this run: on from the message after the last one sent.
    let sent_through: Option<u64> = ctx.sent_through.as_deref().and_then(|s| s.parse().ok());
    let deliver = match (sent_through, options.deliver()?) {
        (Some(sequence), _) => consumer::DeliverPolicy::ByStartSequence {
            start_sequence: sequence + 1,
        },
        (None, Deliver::New) => consumer::DeliverPolicy::New,
        (None, Deliver::All) => consumer::DeliverPolicy::All,
        (None, Deliver::From(time)) => consumer::DeliverPolicy::ByStartTime {
            start_time: to_offset_time(time),
        },
    };
    let consumer_error = |error: &dyn std::fmt::Display| {
        SourceError::transient(format!(
            "{}: a consumer of {stream_name} on {filter}: {error}",
            url.masked()
        ))
    };
    let durable = options.consumer.is_some();
    let mut messages: Messages = match &options.consumer {
        Some(name) => {
            let durable_config = |deliver_policy| consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: filter.clone(),
                deliver_policy,
                ack_policy: consumer::AckPolicy::All,
                ack_wait: ACK_WAIT,
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            };
            let mut consumer = stream
                .get_or_create_consumer(name, durable_config(deliver))
                .await
                .map_err(|error| consumer_error(&error))?;
            let info = consumer
                .info()
                .await
                .map_err(|error| consumer_error(&error))?;
            if info.num_ack_pending > 0 {
                // A run that ended without acknowledging what it was handed (killed, or a
                // lost connection): JetStream would send that again only after ack_wait, and
                // after newer messages. Started again at the first unacknowledged message, the
                // consumer hands everything over in order.
                let start_sequence = info.ack_floor.stream_sequence + 1;
                stream
                    .delete_consumer(name)
                    .await
                    .map_err(|error| consumer_error(&error))?;
                consumer = stream
                    .create_consumer(durable_config(consumer::DeliverPolicy::ByStartSequence {
                        start_sequence,
                    }))
                    .await
                    .map_err(|error| consumer_error(&error))?;
            }
            let stream = consumer
                .messages()
                .await
                .map_err(|error| consumer_error(&error))?;
            stream.map(|item| item.map_err(|e| e.to_string())).boxed()
        }
        None => {
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: filter.clone(),
                    deliver_policy: deliver,
                    ..Default::default()
                })
                .await
                .map_err(|error| consumer_error(&error))?;
            let stream = consumer
                .messages()
                .await
                .map_err(|error| consumer_error(&error))?;
            stream.map(|item| item.map_err(|e| e.to_string())).boxed()
        }
    };
    ctx.set_detail(Some(format!(
        "stream {stream_name}, {}",
        match &options.consumer {
            Some(name) => format!("durable consumer {name} (acknowledged after each flush)"),
            None => "ordered ephemeral consumer".to_string(),
        }
    )));
    ctx.set_running();
    let mut pending = PendingPositions::default();
    let reading = Reading {
        decoder: Decoder::new(options.format),
        stream_name: &stream_name,
        url: &url,
        durable,
    };
    let result = reading.consume(ctx, &mut messages, &mut pending).await;
    // Stopped: what was sent is acknowledged once flushed, so the durable consumer resumes
    // after it.
    if durable
        && result
            .as_ref()
            .is_err_and(|error| error.kind == ErrorKind::Stopped)
        && ctx.drain(DRAIN_TIMEOUT).await
    {
        acknowledge_flushed(ctx, &mut pending).await?;
        // The ack is on its way only once the client's buffer is written out.
        jetstream.client().flush().await.map_err(|error| {
            SourceError::transient(format!("{}: acknowledging: {error}", url.masked()))
        })?;
    }
    result
}

/// Stream sequences waiting for their flush, with what acknowledges them (durable consumers).
type Pending = PendingPositions<(u64, Option<jetstream::message::Acker>)>;

/// A consumer being read.
struct Reading<'a> {
    decoder: Decoder,
    stream_name: &'a str,
    url: &'a DatabaseUrl,
    durable: bool,
}

impl Reading<'_> {
    async fn consume(
        mut self,
        ctx: &mut SourceContext,
        messages: &mut Messages,
        pending: &mut Pending,
    ) -> Result<(), SourceError> {
        let Reading {
            stream_name,
            url,
            durable,
            ..
        } = self;
        loop {
            if ctx.control() == Control::Pause {
                while ctx.control() == Control::Pause {
                    ctx.idle_until(Instant::now()).await?;
                    acknowledge_flushed(ctx, pending).await?;
                }
                ctx.set_running();
            }
            let next = tokio::select! {
                next = messages.next() => next,
                wake = ctx.wait_until(Instant::now() + Duration::from_secs(3600)) => {
                    match wake {
                        Wake::Flushed => acknowledge_flushed(ctx, pending).await?,
                        Wake::Control if ctx.control() == Control::Stop => {
                            return Err(SourceError::stopped());
                        }
                        Wake::Control | Wake::Deadline => {}
                    }
                    continue;
                }
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    return Err(SourceError::transient(format!(
                        "{}: reading {stream_name}: {error}",
                        url.masked()
                    )));
                }
                None => {
                    return Err(SourceError::transient(format!(
                        "{}: the consumer of {stream_name} ended",
                        url.masked()
                    )));
                }
            };
            let (sequence, published) = {
                let info = message.info().map_err(|error| {
                    SourceError::transient(format!("a message without JetStream metadata: {error}"))
                })?;
                (info.stream_sequence, from_offset_time(info.published))
            };
            let (message, acker) = message.split();
            // A durable consumer's resend of what this run already sent.
            if sent_through_at_least(ctx, sequence) {
                continue;
            }
            let decoded = self.decoder.decode(&message.payload, sequence, published);
            let decoded = decoded.unwrap_or_else(|why| {
                Decoded::Error(format!(
                    "subject {} sequence {sequence}: {why}",
                    message.subject
                ))
            });
            match decoded {
                Decoded::Change(event) => ctx.emit(*event).await?,
                Decoded::Note(kind) => ctx.note(kind).await?,
                Decoded::Error(text) => {
                    ctx.set_detail(Some(text.clone()));
                    ctx.note(crate::change::NoteKind::Error { message: text })
                        .await?;
                }
                Decoded::Skip => {}
            }
            ctx.sent_through = Some(sequence.to_string());
            pending.push(ctx.last_sent_seq(), (sequence, durable.then_some(acker)));
            acknowledge_flushed(ctx, pending).await?;
        }
    }
}

fn sent_through_at_least(ctx: &SourceContext, sequence: u64) -> bool {
    ctx.sent_through
        .as_deref()
        .and_then(|s| s.parse::<u64>().ok())
        .is_some_and(|through| sequence <= through)
}

/// Acknowledges (AckPolicy All) the newest message whose change was flushed, and shows its
/// sequence as the listener's position. A message that carried no change (a skipped line) is
/// released with the next flush after it.
async fn acknowledge_flushed(
    ctx: &SourceContext,
    pending: &mut Pending,
) -> Result<(), SourceError> {
    let Some((sequence, acker)) = pending.take_flushed(ctx.flushed_seq()) else {
        return Ok(());
    };
    if let Some(acker) = acker {
        acker.ack().await.map_err(|error| {
            SourceError::transient(format!("acknowledging sequence {sequence}: {error}"))
        })?;
    }
    ctx.set_position(sequence.to_string());
    Ok(())
}

fn to_offset_time(time: DateTime<Utc>) -> time::OffsetDateTime {
    let nanos =
        i128::from(time.timestamp()) * 1_000_000_000 + i128::from(time.timestamp_subsec_nanos());
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn from_offset_time(time: time::OffsetDateTime) -> Option<DateTime<Utc>> {
    let nanos = time.unix_timestamp_nanos();
    let seconds = i64::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
    DateTime::from_timestamp(seconds, nanos.rem_euclid(1_000_000_000) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_filters_and_options_are_checked() {
        for good in ["cdc.>", "cdc.shop.*", ">", "cdc.shop.public.orders"] {
            assert_eq!(check_subject_filter(good), Ok(()), "{good}");
        }
        for bad in ["", "cdc.", "cdc..x", "cdc.>.x", "cdc.sh*p", "a b"] {
            assert!(check_subject_filter(bad).is_err(), "{bad}");
        }
        let parse = |text: &str| JetStreamOptions::parse(&toml::from_str(text).unwrap());
        assert_eq!(parse("").unwrap().deliver().unwrap(), Deliver::New);
        assert_eq!(
            parse("deliver = \"all\"").unwrap().deliver().unwrap(),
            Deliver::All
        );
        assert!(matches!(
            parse("deliver = \"2026-11-25T10:00:00Z\"")
                .unwrap()
                .deliver()
                .unwrap(),
            Deliver::From(_)
        ));
        assert_eq!(parse("deliver = \"yesterday\"").unwrap_err().key, "deliver");
        assert_eq!(parse("consumer = \"a.b\"").unwrap_err().key, "consumer");
        assert_eq!(parse("format = \"avro\"").unwrap_err().key, "format");
        assert_eq!(parse("colour = 1").unwrap_err().key, "colour");
    }

    #[test]
    fn times_cross_between_chrono_and_time() {
        let time = DateTime::parse_from_rfc3339("2026-11-25T10:00:01.004Z")
            .unwrap()
            .to_utc();
        assert_eq!(from_offset_time(to_offset_time(time)), Some(time));
    }
}
