//! In-memory databases, the change-event history ("oplog") and cursors.
//!
//! Everything here is synchronous and lives behind one mutex in the server;
//! waiting for new events happens outside, in `commands`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, VecDeque};

use bson::{Bson, DateTime, Document, Timestamp, doc};

use crate::error::{CmdResult, CommandError};
use crate::query;

/// A document `_id` ordered with MongoDB's comparison rules, so that `1`,
/// `1i64` and `1.0` are the same key as they are for the real server.
#[derive(Debug, Clone)]
pub struct IdKey(pub Bson);

impl PartialEq for IdKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for IdKey {}
impl PartialOrd for IdKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for IdKey {
    fn cmp(&self, other: &Self) -> Ordering {
        query::compare(&self.0, &other.0)
    }
}

#[derive(Debug, Default, Clone)]
pub struct Collection {
    pub docs: BTreeMap<IdKey, Document>,
}

#[derive(Debug, Clone)]
pub enum EventKind {
    Insert {
        key: Bson,
        doc: Document,
    },
    Update {
        key: Bson,
        updated_fields: Document,
        removed_fields: Vec<String>,
        pre: Document,
        post: Document,
    },
    Replace {
        key: Bson,
        pre: Document,
        post: Document,
    },
    Delete {
        key: Bson,
        pre: Document,
    },
    Drop,
    /// `ns` is the old name.
    Rename {
        to_db: String,
        to_coll: String,
    },
    DropDatabase,
    /// For a collection stream when `coll` is set, else for a database stream.
    Invalidate,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub seq: u64,
    pub ts: Timestamp,
    pub wall: DateTime,
    pub db: String,
    pub coll: Option<String>,
    pub kind: EventKind,
    /// The multi-document transaction that wrote it: the session's `lsid` and the `txnNumber`.
    pub txn: Option<(Document, i64)>,
}

/// A multi-document transaction between its first statement and its commit or abort. Its
/// writes are applied at once (visible to other sessions before the commit, unlike the real
/// server's snapshot isolation), their events held back until the commit.
#[derive(Debug)]
struct OpenTransaction {
    lsid: Document,
    number: i64,
    events: Vec<(String, Option<String>, EventKind)>,
    /// Each collection as it was before the transaction first wrote to it, for an abort.
    undo: Vec<(String, String, Option<Collection>)>,
}

/// How a transaction statement, commit or abort fared.
#[derive(Debug, PartialEq, Eq)]
pub enum TransactionEnd {
    Committed,
    Aborted,
}

/// What a change stream watches.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    Collection { db: String, coll: String },
    Database { db: String },
    Cluster,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullDocument {
    Default,
    UpdateLookup,
    WhenAvailable,
    Required,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeforeChange {
    Off,
    WhenAvailable,
    Required,
}

#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub scope: Scope,
    pub full_document: FullDocument,
    pub before_change: BeforeChange,
    /// `$match` stages, applied to the rendered event.
    pub filters: Vec<Document>,
}

#[derive(Debug, Clone)]
pub enum StartAt {
    Now,
    ResumeAfter(Document),
    StartAfter(Document),
    OperationTime(Timestamp),
}

#[derive(Debug)]
struct ChangeCursor {
    spec: StreamSpec,
    /// Sequence number of the last event scanned (delivered or filtered out).
    pos: u64,
}

#[derive(Debug)]
enum CursorKind {
    Find(VecDeque<Document>),
    Change(ChangeCursor),
}

#[derive(Debug)]
struct Cursor {
    ns: String,
    kind: CursorKind,
}

/// One batch of a cursor, ready to be put in a reply.
#[derive(Debug)]
pub struct Batch {
    pub docs: Vec<Document>,
    /// 0 once the cursor is exhausted or closed.
    pub cursor_id: i64,
    pub ns: String,
    pub post_batch_resume_token: Option<Document>,
    pub is_change_stream: bool,
}

/// One update statement: `{q, u, multi, upsert}` (plus findAndModify's sort).
#[derive(Debug, Clone, Copy)]
pub struct UpdateOp<'a> {
    pub filter: &'a Document,
    pub update: &'a Document,
    pub multi: bool,
    pub upsert: bool,
    pub sort: Option<&'a Document>,
}

#[derive(Debug, Default)]
pub struct UpdateResult {
    pub matched: i64,
    pub modified: i64,
    pub upserted: Option<Bson>,
    /// The document as it ended up (for findAndModify).
    pub before: Option<Document>,
    pub after: Option<Document>,
}

/// Default change stream / find batch size for the first batch, like the real server.
pub const DEFAULT_FIRST_BATCH: usize = 101;
/// Cap on a getMore batch when the client gives no batchSize.
const MAX_GETMORE_BATCH: usize = 10_000;

const TOKEN_PREFIX: &str = "82";

/// Resume token for "just after event `seq`". Fixed-width upper-case hex so
/// that tokens compare as strings in sequence order, like real `_data` values.
pub fn resume_token(seq: u64) -> Document {
    doc! { "_data": format!("{TOKEN_PREFIX}{seq:016X}") }
}

/// Marks the token of an invalidate event itself (the real server's `fromInvalidate`): only
/// `startAfter` takes it. Post-batch tokens never carry it, even at an invalidate that the
/// stream does not see (a collection's, in a database stream).
const FROM_INVALIDATE: &str = "01";

fn invalidate_token(seq: u64) -> Document {
    doc! { "_data": format!("{TOKEN_PREFIX}{seq:016X}{FROM_INVALIDATE}") }
}

/// The sequence number a token stands after, and whether it is an invalidate's own token.
fn parse_resume_token(token: &Document) -> CmdResult<(u64, bool)> {
    let invalid = || {
        CommandError::new(
            260,
            "InvalidResumeToken",
            format!("invalid resume token (not issued by mongo-test-server): {token}"),
        )
    };
    let data = token.get_str("_data").map_err(|_| invalid())?;
    let hex = data.strip_prefix(TOKEN_PREFIX).ok_or_else(invalid)?;
    let (hex, from_invalidate) = match hex.len() {
        16 => (hex, false),
        18 if hex.ends_with(FROM_INVALIDATE) => (&hex[..16], true),
        _ => return Err(invalid()),
    };
    let seq = u64::from_str_radix(hex, 16).map_err(|_| invalid())?;
    Ok((seq, from_invalidate))
}

#[derive(Debug)]
pub struct Store {
    dbs: BTreeMap<String, BTreeMap<String, Collection>>,
    events: Vec<Event>,
    /// Last sequence number handed out (an event's or a synthetic position).
    seq: u64,
    /// Positions at or below this were forgotten (0: nothing was).
    lost_upto: u64,
    /// Cluster time of the last forgotten event.
    lost_ts: Option<Timestamp>,
    last_ts: Timestamp,
    cursors: HashMap<i64, Cursor>,
    next_cursor_id: i64,
    /// Open transactions by session (`lsid` as text).
    transactions: HashMap<String, OpenTransaction>,
    /// The last transaction each session ended, and how, so a retried commit or abort is
    /// answered as the first was.
    ended: HashMap<String, (i64, TransactionEnd)>,
    /// The session whose transaction the running statement belongs to.
    active: Option<String>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub fn new() -> Self {
        Store {
            dbs: BTreeMap::new(),
            events: Vec::new(),
            seq: 0,
            lost_upto: 0,
            lost_ts: None,
            last_ts: Timestamp {
                time: now_secs(),
                increment: 1,
            },
            cursors: HashMap::new(),
            // Start well away from 0, which means "no cursor" on the wire.
            next_cursor_id: 7_000_000_001,
            transactions: HashMap::new(),
            ended: HashMap::new(),
            active: None,
        }
    }

    /// The latest cluster time, reported as `operationTime`/`$clusterTime`.
    pub fn cluster_time(&self) -> Timestamp {
        self.last_ts
    }

    fn tick(&mut self) -> Timestamp {
        let now = now_secs();
        self.last_ts = if now > self.last_ts.time {
            Timestamp {
                time: now,
                increment: 1,
            }
        } else {
            Timestamp {
                time: self.last_ts.time,
                increment: self.last_ts.increment.wrapping_add(1),
            }
        };
        self.last_ts
    }

    fn record(&mut self, db: &str, coll: Option<&str>, kind: EventKind) {
        if let Some(open) = self
            .active
            .as_ref()
            .and_then(|session| self.transactions.get_mut(session))
        {
            open.events
                .push((db.to_owned(), coll.map(str::to_owned), kind));
            return;
        }
        let ts = self.tick();
        self.seq += 1;
        self.events.push(Event {
            seq: self.seq,
            ts,
            wall: DateTime::now(),
            db: db.to_owned(),
            coll: coll.map(str::to_owned),
            kind,
            txn: None,
        });
    }

    // ----- transactions ------------------------------------------------

    /// Runs the statements that follow as part of `lsid`'s transaction `number`, starting it
    /// when `start` (which aborts one the session left open, as a newer txnNumber does on the
    /// real server). `None` ends that.
    pub fn enter_transaction(
        &mut self,
        lsid: &Document,
        number: i64,
        start: bool,
    ) -> CmdResult<()> {
        let session = lsid.to_string();
        if start {
            if let Some(open) = self.transactions.get(&session)
                && open.number >= number
            {
                return Err(CommandError::new(
                    225,
                    "TransactionTooOld",
                    format!(
                        "txnNumber {number} is not newer than the session's {}",
                        open.number
                    ),
                ));
            }
            self.abort_open(&session);
            self.transactions.insert(
                session.clone(),
                OpenTransaction {
                    lsid: lsid.clone(),
                    number,
                    events: Vec::new(),
                    undo: Vec::new(),
                },
            );
        } else if self
            .transactions
            .get(&session)
            .is_none_or(|open| open.number != number)
        {
            return Err(no_such_transaction(number));
        }
        self.active = Some(session);
        Ok(())
    }

    pub fn leave_transaction(&mut self) {
        self.active = None;
    }

    /// `commitTransaction` (`commit`) or `abortTransaction` of `lsid`'s transaction `number`.
    pub fn end_transaction(&mut self, lsid: &Document, number: i64, commit: bool) -> CmdResult<()> {
        let session = lsid.to_string();
        let wanted = if commit {
            TransactionEnd::Committed
        } else {
            TransactionEnd::Aborted
        };
        match self.transactions.get(&session) {
            Some(open) if open.number == number => {}
            _ => {
                return match self.ended.get(&session) {
                    Some((ended, how)) if *ended == number && *how == wanted => Ok(()),
                    Some((ended, TransactionEnd::Aborted)) if *ended == number => {
                        Err(no_such_transaction(number))
                    }
                    Some((ended, TransactionEnd::Committed)) if *ended == number => {
                        Err(CommandError::new(
                            256,
                            "TransactionCommitted",
                            format!("transaction {number} has been committed"),
                        ))
                    }
                    _ => Err(no_such_transaction(number)),
                };
            }
        }
        if !commit {
            self.abort_open(&session);
            return Ok(());
        }
        let Some(open) = self.transactions.remove(&session) else {
            return Err(no_such_transaction(number));
        };
        // One commit time for all of them, as the real server gives a transaction's events.
        let ts = self.tick();
        let wall = DateTime::now();
        for (db, coll, kind) in open.events {
            self.seq += 1;
            self.events.push(Event {
                seq: self.seq,
                ts,
                wall,
                db,
                coll,
                kind,
                txn: Some((open.lsid.clone(), open.number)),
            });
        }
        self.ended
            .insert(session, (number, TransactionEnd::Committed));
        Ok(())
    }

    /// Puts back what the session's open transaction changed, and forgets its events.
    fn abort_open(&mut self, session: &str) {
        let Some(open) = self.transactions.remove(session) else {
            return;
        };
        for (db, coll, before) in open.undo.into_iter().rev() {
            let colls = self.dbs.entry(db.clone()).or_default();
            match before {
                Some(before) => {
                    colls.insert(coll, before);
                }
                None => {
                    colls.remove(&coll);
                }
            }
            if self.dbs.get(&db).is_some_and(BTreeMap::is_empty) {
                self.dbs.remove(&db);
            }
        }
        self.ended
            .insert(session.to_owned(), (open.number, TransactionEnd::Aborted));
    }

    /// Keeps `db.coll` as it is now for an abort, the first time the running transaction
    /// writes to it.
    fn before_write(&mut self, db: &str, coll: &str) {
        let Some(session) = &self.active else {
            return;
        };
        let before = self.dbs.get(db).and_then(|d| d.get(coll)).cloned();
        let Some(open) = self.transactions.get_mut(session) else {
            return;
        };
        if !open.undo.iter().any(|(d, c, _)| d == db && c == coll) {
            open.undo.push((db.to_owned(), coll.to_owned(), before));
        }
    }

    /// Fault injection: forget every event so far. Resuming from any earlier
    /// position then fails with ChangeStreamHistoryLost.
    pub fn forget_history(&mut self) {
        self.events.clear();
        self.lost_upto = self.seq;
        self.lost_ts = Some(self.last_ts);
        // A fresh position past the lost ones, so streams opened (or caught
        // up) from now on get a post-batch token that is still resumable.
        self.seq += 1;
    }

    pub fn event_count(&self) -> usize {
        self.events.len()
    }

    // ----- collections -------------------------------------------------

    fn coll(&self, db: &str, coll: &str) -> Option<&Collection> {
        self.dbs.get(db).and_then(|d| d.get(coll))
    }

    fn coll_mut(&mut self, db: &str, coll: &str) -> &mut Collection {
        self.dbs
            .entry(db.to_owned())
            .or_default()
            .entry(coll.to_owned())
            .or_default()
    }

    pub fn database_names(&self) -> Vec<String> {
        self.dbs
            .iter()
            .filter(|(_, colls)| !colls.is_empty())
            .map(|(name, _)| name.clone())
            .collect()
    }

    pub fn collection_names(&self, db: &str) -> Vec<String> {
        self.dbs
            .get(db)
            .map(|d| d.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn collection_len(&self, db: &str, coll: &str) -> usize {
        self.coll(db, coll).map_or(0, |c| c.docs.len())
    }

    pub fn create_collection(&mut self, db: &str, coll: &str) {
        self.coll_mut(db, coll);
    }

    /// Drops a collection; returns whether it existed.
    pub fn drop_collection(&mut self, db: &str, coll: &str) -> bool {
        let existed = self.dbs.get_mut(db).and_then(|d| d.remove(coll)).is_some();
        if existed {
            if self.dbs.get(db).is_some_and(|d| d.is_empty()) {
                self.dbs.remove(db);
            }
            self.record(db, Some(coll), EventKind::Drop);
            self.record(db, Some(coll), EventKind::Invalidate);
        }
        existed
    }

    /// `renameCollection`: `from` becomes `to` (which `drop_target` replaces when it exists).
    pub fn rename_collection(
        &mut self,
        from: (&str, &str),
        to: (&str, &str),
        drop_target: bool,
    ) -> CmdResult<()> {
        if self.coll(from.0, from.1).is_none() {
            return Err(CommandError::new(
                26,
                "NamespaceNotFound",
                format!("Source collection {}.{} does not exist", from.0, from.1),
            ));
        }
        if from == to {
            return Err(CommandError::new(
                20,
                "IllegalOperation",
                "Can't rename a collection to itself",
            ));
        }
        if self.coll(to.0, to.1).is_some() && !drop_target {
            return Err(CommandError::new(
                48,
                "NamespaceExists",
                format!("Target namespace {}.{} exists", to.0, to.1),
            ));
        }
        let moved = self
            .dbs
            .get_mut(from.0)
            .and_then(|d| d.remove(from.1))
            .unwrap_or_default();
        if self.dbs.get(from.0).is_some_and(BTreeMap::is_empty) {
            self.dbs.remove(from.0);
        }
        // The replaced target gets no event of its own: the real server emits only the
        // rename (SERVER-53478).
        *self.coll_mut(to.0, to.1) = moved;
        self.record(
            from.0,
            Some(from.1),
            EventKind::Rename {
                to_db: to.0.to_owned(),
                to_coll: to.1.to_owned(),
            },
        );
        self.record(from.0, Some(from.1), EventKind::Invalidate);
        Ok(())
    }

    pub fn drop_database(&mut self, db: &str) {
        let Some(colls) = self.dbs.remove(db) else {
            return;
        };
        for name in colls.keys() {
            self.record(db, Some(name), EventKind::Drop);
            self.record(db, Some(name), EventKind::Invalidate);
        }
        self.record(db, None, EventKind::DropDatabase);
        self.record(db, None, EventKind::Invalidate);
    }

    // ----- CRUD --------------------------------------------------------

    pub fn find(&self, db: &str, coll: &str, filter: &Document) -> CmdResult<Vec<Document>> {
        let mut out = Vec::new();
        if let Some(c) = self.coll(db, coll) {
            for doc in c.docs.values() {
                if query::matches(doc, filter)? {
                    out.push(doc.clone());
                }
            }
        }
        Ok(out)
    }

    fn matching_keys(
        &self,
        db: &str,
        coll: &str,
        filter: &Document,
        sort: Option<&Document>,
        only_first: bool,
    ) -> CmdResult<Vec<IdKey>> {
        let Some(c) = self.coll(db, coll) else {
            return Ok(Vec::new());
        };
        if let Some(sort) = sort.filter(|s| !s.is_empty()) {
            let mut docs = self.find(db, coll, filter)?;
            query::sort_documents(&mut docs, sort)?;
            let keys = docs
                .iter()
                .map(|d| IdKey(d.get("_id").cloned().unwrap_or(Bson::Null)));
            return Ok(if only_first {
                keys.take(1).collect()
            } else {
                keys.collect()
            });
        }
        // Fast path for the common `{_id: value}` filter.
        if filter.len() == 1
            && let Some(id) = filter.get("_id")
            && !matches!(id, Bson::Document(d) if d.keys().any(|k| k.starts_with('$')))
            && !matches!(id, Bson::Array(_) | Bson::Null)
        {
            let key = IdKey(id.clone());
            return Ok(c
                .docs
                .contains_key(&key)
                .then_some(key)
                .into_iter()
                .collect());
        }
        let mut keys = Vec::new();
        for (k, doc) in &c.docs {
            if query::matches(doc, filter)? {
                keys.push(k.clone());
                if only_first {
                    break;
                }
            }
        }
        Ok(keys)
    }

    fn duplicate_key(db: &str, coll: &str, id: &Bson) -> CommandError {
        CommandError::new(
            11000,
            "DuplicateKey",
            format!(
                "E11000 duplicate key error collection: {db}.{coll} index: _id_ dup key: {{ _id: {id} }}"
            ),
        )
    }

    /// Inserts one document (an `_id` is generated when missing).
    pub fn insert_one(&mut self, db: &str, coll: &str, doc: Document) -> CmdResult<Bson> {
        let doc = query::with_id_first(doc);
        let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
        if matches!(id, Bson::Array(_)) {
            return Err(CommandError::new(
                53,
                "InvalidIdField",
                "The '_id' value cannot be of type array",
            ));
        }
        let key = IdKey(id.clone());
        self.before_write(db, coll);
        let c = self.coll_mut(db, coll);
        if c.docs.contains_key(&key) {
            return Err(Self::duplicate_key(db, coll, &id));
        }
        c.docs.insert(key, doc.clone());
        self.record(
            db,
            Some(coll),
            EventKind::Insert {
                key: id.clone(),
                doc,
            },
        );
        Ok(id)
    }

    /// Runs one update statement (`q`, `u`, `multi`, `upsert`).
    pub fn update(&mut self, db: &str, coll: &str, op: &UpdateOp<'_>) -> CmdResult<UpdateResult> {
        let UpdateOp {
            filter,
            update,
            multi,
            upsert,
            sort,
        } = *op;
        let is_ops = query::is_operator_update(update);
        if !is_ops && multi {
            return Err(CommandError::failed_to_parse(
                "multi update is not supported for replacement-style update",
            ));
        }
        let keys = self.matching_keys(db, coll, filter, sort, !multi)?;
        let mut result = UpdateResult::default();
        if keys.is_empty() {
            if !upsert {
                return Ok(result);
            }
            let seed = query::upsert_seed(filter)?;
            let new = if is_ops {
                query::apply_update(&seed, update, true)?.doc
            } else {
                let mut d = Document::new();
                if let Some(id) = seed.get("_id").or_else(|| update.get("_id")) {
                    d.insert("_id", id.clone());
                }
                d.extend(update.clone());
                d
            };
            let new = query::with_id_first(new);
            let id = self.insert_one(db, coll, new.clone())?;
            result.upserted = Some(id);
            result.after = Some(new);
            return Ok(result);
        }
        for key in keys {
            let Some(old) = self.coll(db, coll).and_then(|c| c.docs.get(&key)).cloned() else {
                continue;
            };
            result.matched += 1;
            let id = old.get("_id").cloned().unwrap_or(Bson::Null);
            let (new, kind) = if is_ops {
                let outcome = query::apply_update(&old, update, false)?;
                let kind = EventKind::Update {
                    key: id.clone(),
                    updated_fields: outcome.updated_fields,
                    removed_fields: outcome.removed_fields,
                    pre: old.clone(),
                    post: outcome.doc.clone(),
                };
                (outcome.doc, kind)
            } else {
                if let Some(new_id) = update.get("_id")
                    && !query::values_equal(new_id, &id)
                {
                    return Err(CommandError::new(
                        66,
                        "ImmutableField",
                        "After applying the update, the (immutable) field '_id' was found to \
                         have been altered",
                    ));
                }
                let mut new = doc! { "_id": id.clone() };
                for (k, v) in update {
                    if k != "_id" {
                        new.insert(k.clone(), v.clone());
                    }
                }
                let kind = EventKind::Replace {
                    key: id.clone(),
                    pre: old.clone(),
                    post: new.clone(),
                };
                (new, kind)
            };
            if result.before.is_none() {
                result.before = Some(old.clone());
                result.after = Some(new.clone());
            }
            // A no-op update changes nothing and, as on the real server, logs nothing.
            if new == old {
                continue;
            }
            result.modified += 1;
            self.before_write(db, coll);
            self.coll_mut(db, coll).docs.insert(key, new);
            self.record(db, Some(coll), kind);
        }
        Ok(result)
    }

    /// Deletes matching documents; returns the deleted documents.
    pub fn delete(
        &mut self,
        db: &str,
        coll: &str,
        filter: &Document,
        only_one: bool,
        sort: Option<&Document>,
    ) -> CmdResult<Vec<Document>> {
        let keys = self.matching_keys(db, coll, filter, sort, only_one)?;
        let mut deleted = Vec::new();
        for key in keys {
            self.before_write(db, coll);
            let Some(old) = self
                .dbs
                .get_mut(db)
                .and_then(|d| d.get_mut(coll))
                .and_then(|c| c.docs.remove(&key))
            else {
                continue;
            };
            self.record(
                db,
                Some(coll),
                EventKind::Delete {
                    key: key.0,
                    pre: old.clone(),
                },
            );
            deleted.push(old);
        }
        Ok(deleted)
    }

    // ----- cursors -----------------------------------------------------

    fn new_cursor_id(&mut self) -> i64 {
        let id = self.next_cursor_id;
        self.next_cursor_id += 1;
        id
    }

    /// Returns the first batch of a query result, keeping the rest in a cursor.
    pub fn open_find_cursor(
        &mut self,
        ns: String,
        docs: Vec<Document>,
        first_batch: usize,
        single_batch: bool,
    ) -> Batch {
        let mut rest: VecDeque<Document> = docs.into();
        let first: Vec<Document> = rest.drain(..first_batch.min(rest.len())).collect();
        let cursor_id = if rest.is_empty() || single_batch {
            0
        } else {
            let id = self.new_cursor_id();
            self.cursors.insert(
                id,
                Cursor {
                    ns: ns.clone(),
                    kind: CursorKind::Find(rest),
                },
            );
            id
        };
        Batch {
            docs: first,
            cursor_id,
            ns,
            post_batch_resume_token: None,
            is_change_stream: false,
        }
    }

    pub fn kill_cursor(&mut self, id: i64) -> bool {
        self.cursors.remove(&id).is_some()
    }

    fn resolve_start(&self, start: &StartAt) -> CmdResult<u64> {
        let first_position = if self.lost_upto > 0 {
            self.lost_upto + 1
        } else {
            0
        };
        match start {
            StartAt::Now => Ok(self.seq),
            StartAt::ResumeAfter(token) | StartAt::StartAfter(token) => {
                let (seq, from_invalidate) = parse_resume_token(token)?;
                if self.lost_upto > 0 && seq <= self.lost_upto {
                    return Err(CommandError::history_lost());
                }
                if matches!(start, StartAt::ResumeAfter(_)) && from_invalidate {
                    return Err(CommandError::new(
                        260,
                        "InvalidResumeToken",
                        "Attempting to resume a change stream using 'resumeAfter' is not allowed \
                         from an invalidate notification; use 'startAfter'",
                    ));
                }
                Ok(seq)
            }
            StartAt::OperationTime(ts) => {
                if self
                    .lost_ts
                    .is_some_and(|lost| (ts.time, ts.increment) <= (lost.time, lost.increment))
                {
                    return Err(CommandError::history_lost());
                }
                let before = self
                    .events
                    .iter()
                    .take_while(|e| (e.ts.time, e.ts.increment) < (ts.time, ts.increment))
                    .last();
                Ok(before.map_or(first_position, |e| e.seq))
            }
        }
    }

    /// Opens a change stream and returns its first batch (without waiting).
    pub fn open_change_stream(
        &mut self,
        ns: String,
        spec: StreamSpec,
        start: StartAt,
        batch_size: usize,
    ) -> CmdResult<Batch> {
        let pos = self.resolve_start(&start)?;
        let id = self.new_cursor_id();
        self.cursors.insert(
            id,
            Cursor {
                ns,
                kind: CursorKind::Change(ChangeCursor { spec, pos }),
            },
        );
        self.next_batch(id, Some(batch_size))
    }

    /// The next batch of a cursor, without waiting. Change stream batches may
    /// be empty; the caller decides whether to wait and retry.
    pub fn next_batch(&mut self, id: i64, batch_size: Option<usize>) -> CmdResult<Batch> {
        let mut cursor = self
            .cursors
            .remove(&id)
            .ok_or_else(|| CommandError::cursor_not_found(id))?;
        match &mut cursor.kind {
            CursorKind::Find(rest) => {
                let n = batch_size.unwrap_or(usize::MAX).min(rest.len());
                let docs: Vec<Document> = rest.drain(..n).collect();
                let exhausted = rest.is_empty();
                let ns = cursor.ns.clone();
                if !exhausted {
                    self.cursors.insert(id, cursor);
                }
                Ok(Batch {
                    docs,
                    cursor_id: if exhausted { 0 } else { id },
                    ns,
                    post_batch_resume_token: None,
                    is_change_stream: false,
                })
            }
            CursorKind::Change(cs) => {
                // A cursor that had not yet seen events which are now forgotten
                // cannot continue without a gap.
                if cs.pos < self.lost_upto {
                    return Err(CommandError::history_lost());
                }
                let limit = batch_size.unwrap_or(MAX_GETMORE_BATCH).max(1);
                let (docs, pos, closed) = self.scan(cs, limit)?;
                cs.pos = pos;
                let ns = cursor.ns.clone();
                if !closed {
                    self.cursors.insert(id, cursor);
                }
                Ok(Batch {
                    docs,
                    cursor_id: if closed { 0 } else { id },
                    ns,
                    // A stream ended by its invalidate is continued after it (startAfter).
                    post_batch_resume_token: Some(if closed {
                        invalidate_token(pos)
                    } else {
                        resume_token(pos)
                    }),
                    is_change_stream: true,
                })
            }
        }
    }

    /// Collects up to `limit` events after the cursor's position. Returns the
    /// events, the new position and whether an invalidate closed the stream.
    fn scan(&self, cs: &ChangeCursor, limit: usize) -> CmdResult<(Vec<Document>, u64, bool)> {
        let mut pos = cs.pos.max(self.lost_upto);
        let start = self.events.partition_point(|e| e.seq <= pos);
        let mut docs = Vec::new();
        for ev in &self.events[start..] {
            if docs.len() >= limit {
                return Ok((docs, pos, false));
            }
            pos = ev.seq;
            if let Some(rendered) = self.render(ev, &cs.spec)? {
                docs.push(rendered);
                if matches!(ev.kind, EventKind::Invalidate) {
                    return Ok((docs, pos, true));
                }
            }
        }
        Ok((docs, self.seq.max(pos), false))
    }

    fn visible(ev: &Event, scope: &Scope) -> bool {
        match scope {
            Scope::Collection { db, coll } => ev.db == *db && ev.coll.as_deref() == Some(coll),
            Scope::Database { db } => {
                ev.db == *db && !(matches!(ev.kind, EventKind::Invalidate) && ev.coll.is_some())
            }
            Scope::Cluster => {
                !matches!(ev.kind, EventKind::Invalidate)
                    && !INTERNAL_DATABASES.contains(&ev.db.as_str())
            }
        }
    }

    /// The event as a change stream document for this stream, or None when
    /// the stream does not see it.
    fn render(&self, ev: &Event, spec: &StreamSpec) -> CmdResult<Option<Document>> {
        if !Self::visible(ev, &spec.scope) {
            return Ok(None);
        }
        let op = match &ev.kind {
            EventKind::Insert { .. } => "insert",
            EventKind::Update { .. } => "update",
            EventKind::Replace { .. } => "replace",
            EventKind::Delete { .. } => "delete",
            EventKind::Drop => "drop",
            EventKind::Rename { .. } => "rename",
            EventKind::DropDatabase => "dropDatabase",
            EventKind::Invalidate => "invalidate",
        };
        let mut d = doc! {
            "_id": match ev.kind {
                EventKind::Invalidate => invalidate_token(ev.seq),
                _ => resume_token(ev.seq),
            },
            "operationType": op,
            "clusterTime": ev.ts,
            "wallTime": ev.wall,
        };
        let coll = ev.coll.clone().unwrap_or_default();
        let full_document = match &ev.kind {
            EventKind::Insert { doc, .. } => Some(Bson::Document(doc.clone())),
            EventKind::Replace { post, .. } => Some(Bson::Document(post.clone())),
            EventKind::Update { key, post, .. } => match spec.full_document {
                FullDocument::Default => None,
                FullDocument::UpdateLookup => Some(
                    self.coll(&ev.db, &coll)
                        .and_then(|c| c.docs.get(&IdKey(key.clone())))
                        .cloned()
                        .map_or(Bson::Null, Bson::Document),
                ),
                FullDocument::WhenAvailable | FullDocument::Required => {
                    Some(Bson::Document(post.clone()))
                }
            },
            _ => None,
        };
        if let Some(fd) = full_document {
            d.insert("fullDocument", fd);
        }
        match &ev.kind {
            EventKind::Invalidate => {}
            EventKind::DropDatabase => {
                d.insert("ns", doc! { "db": ev.db.clone() });
            }
            _ => {
                d.insert("ns", doc! { "db": ev.db.clone(), "coll": coll });
            }
        }
        let key = match &ev.kind {
            EventKind::Insert { key, .. }
            | EventKind::Update { key, .. }
            | EventKind::Replace { key, .. }
            | EventKind::Delete { key, .. } => Some(key),
            _ => None,
        };
        if let Some(key) = key {
            d.insert("documentKey", doc! { "_id": key.clone() });
        }
        if let Some((lsid, number)) = &ev.txn {
            let mut session = doc! {};
            if let Some(id) = lsid.get("id") {
                session.insert("id", id.clone());
            }
            session.insert(
                "uid",
                bson::Binary {
                    subtype: bson::spec::BinarySubtype::Generic,
                    bytes: ANONYMOUS_UID.to_vec(),
                },
            );
            d.insert("lsid", session);
            d.insert("txnNumber", *number);
        }
        if let EventKind::Rename { to_db, to_coll } = &ev.kind {
            d.insert("to", doc! { "db": to_db.clone(), "coll": to_coll.clone() });
        }
        if let EventKind::Update {
            updated_fields,
            removed_fields,
            ..
        } = &ev.kind
        {
            d.insert(
                "updateDescription",
                doc! {
                    "updatedFields": updated_fields.clone(),
                    "removedFields": removed_fields.clone(),
                    "truncatedArrays": [],
                },
            );
        }
        let pre = match &ev.kind {
            EventKind::Update { pre, .. }
            | EventKind::Replace { pre, .. }
            | EventKind::Delete { pre, .. } => Some(pre),
            _ => None,
        };
        if let (Some(pre), BeforeChange::WhenAvailable | BeforeChange::Required) =
            (pre, spec.before_change)
        {
            d.insert("fullDocumentBeforeChange", pre.clone());
        }
        for filter in &spec.filters {
            if !query::matches(&d, filter)? {
                return Ok(None);
            }
        }
        Ok(Some(d))
    }
}

fn no_such_transaction(number: i64) -> CommandError {
    CommandError {
        labels: vec!["TransientTransactionError"],
        ..CommandError::new(
            251,
            "NoSuchTransaction",
            format!("Transaction with txnNumber {number} has been aborted or never started."),
        )
    }
}

/// The databases a deployment-wide stream leaves out, and no stream may be opened on.
pub const INTERNAL_DATABASES: [&str; 3] = ["admin", "config", "local"];

/// The session's `uid` in a change event: SHA-256 of the user name, here always the empty one.
const ANONYMOUS_UID: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

fn now_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coll_stream() -> StreamSpec {
        StreamSpec {
            scope: Scope::Collection {
                db: "d".into(),
                coll: "c".into(),
            },
            full_document: FullDocument::Default,
            before_change: BeforeChange::Off,
            filters: vec![],
        }
    }

    #[test]
    fn tokens_order_and_round_trip() {
        assert!(
            resume_token(9).get_str("_data").unwrap() < resume_token(10).get_str("_data").unwrap()
        );
        assert_eq!(
            parse_resume_token(&resume_token(12345)).unwrap(),
            (12345, false)
        );
        assert_eq!(
            parse_resume_token(&invalidate_token(12345)).unwrap(),
            (12345, true)
        );
        assert_eq!(
            parse_resume_token(&doc! { "_data": "zz" })
                .unwrap_err()
                .code,
            260
        );
    }

    #[test]
    fn stream_sees_events_and_invalidate_closes_it() {
        let mut s = Store::new();
        let first = s
            .open_change_stream("d.c".into(), coll_stream(), StartAt::Now, 101)
            .unwrap();
        assert!(first.docs.is_empty());
        s.insert_one("d", "c", doc! { "_id": 1 }).unwrap();
        s.insert_one("d", "other", doc! { "_id": 1 }).unwrap();
        s.drop_collection("d", "c");
        let b = s.next_batch(first.cursor_id, None).unwrap();
        let ops: Vec<&str> = b
            .docs
            .iter()
            .map(|d| d.get_str("operationType").unwrap())
            .collect();
        assert_eq!(ops, ["insert", "drop", "invalidate"]);
        assert_eq!(b.cursor_id, 0);
        assert_eq!(s.next_batch(first.cursor_id, None).unwrap_err().code, 43);
    }

    #[test]
    fn a_database_stream_resumes_past_a_collections_invalidate_it_does_not_see() {
        let mut s = Store::new();
        s.insert_one("d", "c", doc! { "_id": 1 }).unwrap();
        let db_stream = || StreamSpec {
            scope: Scope::Database { db: "d".into() },
            ..coll_stream()
        };
        let first = s
            .open_change_stream("d.$cmd.aggregate".into(), db_stream(), StartAt::Now, 101)
            .unwrap();
        s.drop_collection("d", "c");
        let batch = s.next_batch(first.cursor_id, None).unwrap();
        assert_eq!(
            batch.docs.len(),
            1,
            "the drop, not the collection's invalidate"
        );
        let token = batch.post_batch_resume_token.unwrap();
        s.insert_one("d", "e", doc! { "_id": 2 }).unwrap();
        let resumed = s
            .open_change_stream(
                "d.$cmd.aggregate".into(),
                db_stream(),
                StartAt::ResumeAfter(token),
                101,
            )
            .unwrap();
        assert_eq!(resumed.docs.len(), 1);
    }

    #[test]
    fn forgotten_history_is_lost_but_new_positions_resume() {
        let mut s = Store::new();
        s.insert_one("d", "c", doc! { "_id": 1 }).unwrap();
        let old = resume_token(1);
        s.forget_history();
        let err = s
            .open_change_stream("d.c".into(), coll_stream(), StartAt::ResumeAfter(old), 101)
            .unwrap_err();
        assert_eq!(err.code, 286);
        let fresh = s
            .open_change_stream("d.c".into(), coll_stream(), StartAt::Now, 101)
            .unwrap();
        let token = fresh.post_batch_resume_token.unwrap();
        s.insert_one("d", "c", doc! { "_id": 2 }).unwrap();
        let resumed = s
            .open_change_stream(
                "d.c".into(),
                coll_stream(),
                StartAt::ResumeAfter(token),
                101,
            )
            .unwrap();
        assert_eq!(resumed.docs.len(), 1);
    }
}
