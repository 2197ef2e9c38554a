//! The change stream itself: positions (resume tokens and their time), opening a stream with
//! the listener's options, and a reader task that owns the stream.
//!
//! The reader task exists because the driver's change stream cannot be read from a
//! `select!` safely while also asking it for its resume token: the task reads one batch at a
//! time (`next_if_any`), hands each event over a small bounded channel, and after an empty
//! batch hands over the post-batch resume token, so a quiet collection's position still moves
//! forward. When the listener stops receiving (paused), the channel fills and the task stops
//! reading; the cursor stays open. Dropping the `Reader` aborts the task and closes the cursor.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mongodb::bson::{self, Bson, Document};
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::ResumeToken;
use mongodb::options::{FullDocumentBeforeChangeType, FullDocumentType};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::change::format_time;

/// How long a getMore waits on the server for new events before it answers with an empty
/// batch (and a fresh post-batch resume token).
pub const MAX_AWAIT: Duration = Duration::from_secs(1);

/// Events read ahead of the listener: small, so that a pause stops reading soon.
const READ_AHEAD: usize = 64;

/// A place in the change stream: the resume token, and when it was made (the change's time,
/// or for a post-batch token the time it was read), to say how large a gap is if the token is
/// ever lost.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    pub token: Document,
    pub time: Option<DateTime<Utc>>,
}

/// Between the token and its time in a saved position.
const TIME_SEPARATOR: &str = " at ";

impl Position {
    /// The token as the `position` of a change: its `_data` hex string, or the whole token
    /// as relaxed Extended JSON when it is not that.
    pub fn token_text(&self) -> String {
        match (self.token.len(), self.token.get_str("_data")) {
            (1, Ok(data)) => data.to_string(),
            _ => Bson::Document(self.token.clone())
                .into_relaxed_extjson()
                .to_string(),
        }
    }

    /// The saved spelling: `<token> at <time>` (or the token alone), the token as its `_data`
    /// string, or else as canonical Extended JSON (which keeps every type, so the token is
    /// given back to the server exactly).
    pub fn encode(&self) -> String {
        let token = match (self.token.len(), self.token.get_str("_data")) {
            (1, Ok(data)) => data.to_string(),
            _ => Bson::Document(self.token.clone())
                .into_canonical_extjson()
                .to_string(),
        };
        match &self.time {
            Some(time) => format!("{token}{TIME_SEPARATOR}{}", format_time(time)),
            None => token,
        }
    }

    /// Reads what `encode` wrote.
    pub fn decode(text: &str) -> Result<Position, String> {
        let (token_text, time) = match text.rsplit_once(TIME_SEPARATOR) {
            Some((token, time)) => match DateTime::parse_from_rfc3339(time) {
                Ok(time) => (token, Some(time.with_timezone(&Utc))),
                Err(_) => (text, None),
            },
            None => (text, None),
        };
        let token_text = token_text.trim();
        if token_text.is_empty() {
            return Err("an empty resume token".into());
        }
        let token = if token_text.starts_with('{') {
            let json: serde_json::Value = serde_json::from_str(token_text)
                .map_err(|error| format!("a resume token that is not JSON: {error}"))?;
            match Bson::try_from(json) {
                Ok(Bson::Document(token)) => token,
                Ok(_) => return Err("a resume token that is not a document".into()),
                Err(error) => return Err(format!("a resume token that is not BSON: {error}")),
            }
        } else {
            bson::doc! { "_data": token_text }
        };
        Ok(Position { token, time })
    }

    /// The token as the driver takes it.
    pub fn resume_token(&self) -> Result<ResumeToken, String> {
        bson::from_bson(Bson::Document(self.token.clone()))
            .map_err(|error| format!("cannot use the resume token {}: {error}", self.token_text()))
    }

    /// When the token was made, for the user: the saved time, else the time a server token
    /// carries in its first bytes.
    pub fn describe_time(&self) -> String {
        match self.time.or_else(|| token_time(&self.token)) {
            Some(time) => format_time(&time),
            None => format!("the resume token {} (time unknown)", self.token_text()),
        }
    }
}

/// MongoDB's `_data` starts with the cluster time: a type byte 0x82 then the timestamp's
/// seconds and increment, big-endian. Anything implausible is not trusted.
fn token_time(token: &Document) -> Option<DateTime<Utc>> {
    let data = token.get_str("_data").ok()?;
    let seconds = data
        .strip_prefix("82")
        .and_then(|rest| rest.get(..8))
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())?;
    // 2009-02-13 (MongoDB's first release) up to a day from now.
    let plausible = 1_234_567_890..=Utc::now().timestamp() + 86_400;
    plausible
        .contains(&i64::from(seconds))
        .then(|| DateTime::from_timestamp(i64::from(seconds), 0))
        .flatten()
}

/// The driver's token as a document.
pub fn token_document(token: &ResumeToken) -> Option<Document> {
    match bson::to_bson(token) {
        Ok(Bson::Document(token)) => Some(token),
        _ => None,
    }
}

/// The `fullDocument` option from the listener's `full_document` key; `None` is the server's
/// default (no document for updates).
pub fn full_document_mode(configured: Option<&str>) -> Result<Option<FullDocumentType>, String> {
    match configured.unwrap_or("updateLookup") {
        "default" => Ok(None),
        "updateLookup" => Ok(Some(FullDocumentType::UpdateLookup)),
        "whenAvailable" => Ok(Some(FullDocumentType::WhenAvailable)),
        "required" => Ok(Some(FullDocumentType::Required)),
        other => Err(format!(
            "full_document = {other:?}: use one of default, updateLookup, whenAvailable, required"
        )),
    }
}

/// How to open the listener's stream.
pub struct StreamOptions {
    pub full_document: Option<FullDocumentType>,
    /// Ask for pre-images (`fullDocumentBeforeChange: whenAvailable`); turned off for servers
    /// older than 6.0, which reject the option.
    pub pre_images: bool,
    /// The `$match` stage after `$changeStream`, if any.
    pub filter: Option<Document>,
}

/// What a stream is opened on.
pub enum Watched {
    Collection(mongodb::Collection<Document>),
    Database(mongodb::Database),
    Deployment(mongodb::Client),
}

/// Where a stream starts.
pub enum Start {
    Now,
    /// After this event (`resumeAfter`).
    After(ResumeToken),
    /// After an invalidate, which ended the stream before (`startAfter`).
    AfterInvalidate(ResumeToken),
}

/// Opens a change stream on `watched` at `start`.
pub async fn open(
    watched: &Watched,
    options: &StreamOptions,
    start: Start,
) -> mongodb::error::Result<ChangeStream<Document>> {
    let mut watch = match watched {
        Watched::Collection(collection) => collection.watch(),
        Watched::Database(database) => database.watch(),
        Watched::Deployment(client) => client.watch(),
    }
    .max_await_time(MAX_AWAIT);
    watch = match start {
        Start::Now => watch,
        Start::After(token) => watch.resume_after(token),
        Start::AfterInvalidate(token) => watch.start_after(token),
    };
    if let Some(mode) = &options.full_document {
        watch = watch.full_document(mode.clone());
    }
    if options.pre_images {
        watch = watch.full_document_before_change(FullDocumentBeforeChangeType::WhenAvailable);
    }
    if let Some(filter) = &options.filter {
        watch = watch.pipeline([bson::doc! { "$match": filter.clone() }]);
    }
    Ok(watch.await?.with_type::<Document>())
}

/// What the reader task hands over.
#[derive(Debug)]
pub enum Read {
    /// One change event, raw.
    Event(Document),
    /// No events up to this (post-batch) resume token.
    Caught(Document),
    /// The server closed the cursor without an event saying why.
    Closed,
    Failed(mongodb::error::Error),
}

/// The task reading one change stream. Dropping it stops the task and closes the cursor.
pub struct Reader {
    reads: mpsc::Receiver<Read>,
    task: JoinHandle<()>,
}

impl Reader {
    /// Starts reading `stream`; `last` is the token already known (not handed over again).
    pub fn spawn(stream: ChangeStream<Document>, last: Option<Document>) -> Reader {
        let (sender, reads) = mpsc::channel(READ_AHEAD);
        let task = tokio::spawn(read_stream(stream, last, sender));
        Reader { reads, task }
    }

    /// The next read; `Closed` if the task ended without saying why.
    pub async fn next(&mut self) -> Read {
        self.reads.recv().await.unwrap_or(Read::Closed)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_stream(
    mut stream: ChangeStream<Document>,
    mut last: Option<Document>,
    sender: mpsc::Sender<Read>,
) {
    loop {
        let read = match stream.next_if_any().await {
            Ok(Some(event)) => {
                last = event.get_document("_id").ok().cloned();
                Read::Event(event)
            }
            Ok(None) if !stream.is_alive() => Read::Closed,
            Ok(None) => {
                let token = stream.resume_token().as_ref().and_then(token_document);
                match token {
                    Some(token) if last.as_ref() != Some(&token) => {
                        last = Some(token.clone());
                        Read::Caught(token)
                    }
                    _ => continue,
                }
            }
            Err(error) => Read::Failed(error),
        };
        let ends = matches!(read, Read::Closed | Read::Failed(_));
        if sender.send(read).await.is_err() || ends {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn positions_round_trip_through_their_saved_spelling() {
        let time = DateTime::parse_from_rfc3339("2026-11-25T10:00:01.250Z")
            .unwrap()
            .with_timezone(&Utc);
        let hex = Position {
            token: doc! { "_data": "8200000000000000051" },
            time: Some(time),
        };
        assert_eq!(hex.token_text(), "8200000000000000051");
        assert_eq!(
            hex.encode(),
            "8200000000000000051 at 2026-11-25T10:00:01.250Z"
        );
        assert_eq!(Position::decode(&hex.encode()).unwrap(), hex);

        let other = Position {
            // Servers of 3.6 gave binary tokens.
            token: doc! {
                "_data": bson::Binary {
                    subtype: bson::spec::BinarySubtype::Generic,
                    bytes: vec![0x82, 1, 2],
                },
                "n": 5_i64,
            },
            time: None,
        };
        let text = other.encode();
        assert!(text.starts_with('{'), "{text}");
        assert_eq!(Position::decode(&text).unwrap(), other);
        assert!(Position::decode("").is_err());
        assert!(Position::decode("{oops").is_err());
    }

    #[test]
    fn positions_convert_to_driver_tokens_and_back() {
        let position = Position::decode("826A1B2C3D000000012B0429296E1404").unwrap();
        let token = position.resume_token().unwrap();
        assert_eq!(token_document(&token), Some(position.token.clone()));
    }

    #[test]
    fn the_time_of_a_server_token_is_read_when_no_time_was_saved() {
        // 0x6A1B2C3D seconds: 2026-05-30.
        let real = Position::decode("826A1B2C3D000000012B0429296E1404").unwrap();
        assert_eq!(
            real.describe_time(),
            format_time(&DateTime::from_timestamp(0x6A1B_2C3D, 0).unwrap())
        );
        let small = Position::decode("820000000000000005").unwrap();
        assert_eq!(
            small.describe_time(),
            "the resume token 820000000000000005 (time unknown)"
        );
    }

    #[test]
    fn full_document_modes() {
        assert!(matches!(
            full_document_mode(None),
            Ok(Some(FullDocumentType::UpdateLookup))
        ));
        assert!(matches!(full_document_mode(Some("default")), Ok(None)));
        assert!(matches!(
            full_document_mode(Some("required")),
            Ok(Some(FullDocumentType::Required))
        ));
        assert!(full_document_mode(Some("always")).is_err());
    }
}
