//! Command dispatch: turns a decoded request into a reply document.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bson::{Binary, Bson, DateTime, Document, doc, oid::ObjectId, spec::BinarySubtype};
use tokio::time::Instant;

use crate::error::{CmdResult, CommandError};
use crate::query;
use crate::server::{ConnCtx, GaugeGuard, Shared};
use crate::store::{
    Batch, BeforeChange, DEFAULT_FIRST_BATCH, FullDocument, INTERNAL_DATABASES, Scope, StartAt,
    Store, StreamSpec, UpdateOp,
};
use crate::wire::{self, Body, Message};

pub const MAX_WIRE_VERSION: i32 = 21;
pub const SERVER_VERSION: &str = "7.0.0";
const MAX_BSON_OBJECT_SIZE: i32 = 16 * 1024 * 1024;
const MAX_WRITE_BATCH_SIZE: i32 = 100_000;
/// How long a change stream getMore waits for events when the client gives no maxTimeMS.
const DEFAULT_AWAIT: Duration = Duration::from_millis(1000);
/// Upper bound on any client-requested wait, so a bogus value cannot park a task forever.
const MAX_AWAIT: Duration = Duration::from_secs(60);

/// What the connection should do after a message.
pub enum Outcome {
    Reply(Vec<u8>),
    /// The request had moreToCome set: the client expects no answer.
    NoReply,
    /// Protocol violation: close the connection.
    Close,
}

pub async fn handle_message(shared: &Shared, ctx: &ConnCtx, message: Message) -> Outcome {
    let request_id = message.header.request_id;
    match message.body {
        Body::Msg(msg) => {
            let more_to_come = msg.more_to_come();
            let reply = run_command(shared, ctx, msg.into_command()).await;
            if more_to_come {
                Outcome::NoReply
            } else {
                Outcome::Reply(wire::encode_op_msg(
                    shared.next_request_id(),
                    request_id,
                    &reply,
                ))
            }
        }
        Body::Query(query) => {
            let reply =
                run_legacy_query(shared, ctx, query.full_collection_name, query.query).await;
            Outcome::Reply(wire::encode_op_reply(
                shared.next_request_id(),
                request_id,
                &[reply],
            ))
        }
        Body::Reply(_) => Outcome::Close,
    }
}

/// OP_QUERY is only accepted for the initial handshake, as on MongoDB 5.1+.
async fn run_legacy_query(
    shared: &Shared,
    ctx: &ConnCtx,
    collection: String,
    mut query: Document,
) -> Document {
    // Old drivers wrap the command as {$query: {...}, $readPreference: ...}.
    if let Ok(inner) = query.get_document("$query") {
        query = inner.clone();
    }
    let name = query.keys().next().cloned().unwrap_or_default();
    let Some(db) = collection.strip_suffix(".$cmd") else {
        return unsupported_op_query(&name);
    };
    if !matches!(name.as_str(), "hello" | "isMaster" | "ismaster") {
        return unsupported_op_query(&name);
    }
    query.insert("$db", db);
    run_command(shared, ctx, query).await
}

fn unsupported_op_query(name: &str) -> Document {
    CommandError::new(
        352,
        "UnsupportedOpQueryCommand",
        format!("Unsupported OP_QUERY command: {name}. The client driver may require an upgrade."),
    )
    .to_document()
}

/// Runs one command and returns the full reply, `ok` and cluster time included.
pub async fn run_command(shared: &Shared, ctx: &ConnCtx, cmd: Document) -> Document {
    let result = dispatch(shared, ctx, &cmd).await;
    let mut reply = match result {
        Ok(mut body) => {
            body.insert("ok", 1.0);
            body
        }
        Err(e) => e.to_document(),
    };
    if !shared.standalone.load(Ordering::SeqCst) {
        let ts = shared.store().cluster_time();
        reply.insert(
            "$clusterTime",
            doc! {
                "clusterTime": ts,
                "signature": {
                    "hash": Binary { subtype: BinarySubtype::Generic, bytes: vec![0; 20] },
                    "keyId": 0i64,
                },
            },
        );
        reply.insert("operationTime", ts);
    }
    reply
}

async fn dispatch(shared: &Shared, ctx: &ConnCtx, cmd: &Document) -> CmdResult<Document> {
    let Some(name) = cmd.keys().next() else {
        return Err(CommandError::failed_to_parse("empty command document"));
    };
    shared.count_command(name);
    let db = cmd.get_str("$db").map_err(|_| {
        CommandError::new(
            40571,
            "Location40571",
            "OP_MSG requests require a $db argument",
        )
    })?;
    let transaction = transaction_statement(cmd)?;
    if let Some(statement) = &transaction {
        match name.as_str() {
            "commitTransaction" | "abortTransaction" => {
                shared.store().end_transaction(
                    &statement.lsid,
                    statement.number,
                    name == "commitTransaction",
                )?;
                shared.events.notify_waiters();
                return Ok(Document::new());
            }
            "insert" | "update" | "delete" | "findAndModify" | "findandmodify" | "find"
            | "count" | "aggregate" | "getMore" | "killCursors" => {}
            other => {
                return Err(CommandError::new(
                    263,
                    "OperationNotSupportedInTransaction",
                    format!("Cannot run '{other}' in a multi-document transaction."),
                ));
            }
        }
        // A read starts (or checks) the transaction; writes run inside it below.
        let mut store = shared.store();
        store.enter_transaction(&statement.lsid, statement.number, statement.start)?;
        store.leave_transaction();
    }
    // Statements of a transaction share the session's txnNumber: they are not retries.
    let retry_key = retryable_write_key(name, cmd).filter(|_| transaction.is_none());
    if let Some(previous) = retry_key.as_ref().and_then(|k| shared.retried_write(k)) {
        return Ok(previous);
    }
    let write = match name.as_str() {
        "hello" => return hello(shared, ctx, cmd, false).await,
        "isMaster" | "ismaster" => return hello(shared, ctx, cmd, true).await,
        "getMore" => return get_more(shared, cmd).await,
        "ping" => return Ok(Document::new()),
        "buildInfo" | "buildinfo" => return Ok(build_info()),
        "getParameter" => return Ok(get_parameter(cmd)),
        "getLastError" | "getlasterror" => return Ok(doc! { "n": 0, "err": Bson::Null }),
        "endSessions" | "refreshSessions" => return Ok(Document::new()),
        "killCursors" => return Ok(kill_cursors(shared, cmd)),
        "find" => return find(shared, cmd, db),
        "count" => return count(shared, cmd, db),
        "listCollections" => return list_collections(shared, cmd, db),
        "listDatabases" => return list_databases(shared, cmd),
        "listIndexes" => return list_indexes(shared, cmd, db),
        "dbStats" => return Ok(db_stats(shared, db)),
        "whatsmyuri" => return Ok(doc! { "you": ctx.peer.to_string() }),
        "connectionStatus" => {
            return Ok(doc! {
                "authInfo": { "authenticatedUsers": [], "authenticatedUserRoles": [] },
            });
        }
        "serverStatus" => return Ok(server_status(shared)),
        "hostInfo" => return Ok(host_info()),
        "getCmdLineOpts" => return Ok(doc! { "argv": ["mongo-test-server"], "parsed": {} }),
        "replSetGetStatus" => return repl_set_get_status(shared),
        "aggregate" => return aggregate(shared, cmd, db),
        "commitTransaction" | "abortTransaction" => {
            return Err(CommandError::new(
                50768,
                "Location50768",
                format!("{name} needs lsid, txnNumber and autocommit: false"),
            ));
        }
        "insert" => statement(shared, transaction.as_ref(), |store| insert(store, cmd, db)),
        "update" => statement(shared, transaction.as_ref(), |store| update(store, cmd, db)),
        "delete" => statement(shared, transaction.as_ref(), |store| delete(store, cmd, db)),
        "findAndModify" | "findandmodify" => statement(shared, transaction.as_ref(), |store| {
            find_and_modify(store, cmd, db)
        }),
        "renameCollection" => rename_collection(shared, cmd, db),
        "create" => create(shared, cmd, db),
        "createIndexes" => create_indexes(shared, cmd, db),
        "drop" => drop_collection(shared, cmd, db),
        "dropDatabase" => {
            shared.store().drop_database(db);
            Ok(doc! { "dropped": db })
        }
        other => {
            return Err(CommandError::new(
                59,
                "CommandNotFound",
                format!("no such command: '{other}' (not implemented by mongo-test-server)"),
            ));
        }
    };
    if let (Some(key), Ok(reply)) = (retry_key, &write) {
        shared.remember_write(key, reply.clone());
    }
    // Any write may have recorded change events that waiting streams want.
    shared.events.notify_waiters();
    write
}

/// A statement of a multi-document transaction: drivers send `lsid`, `txnNumber` and
/// `autocommit: false` with each, and `startTransaction: true` with the first.
struct TransactionStatement {
    lsid: Document,
    number: i64,
    start: bool,
}

fn transaction_statement(cmd: &Document) -> CmdResult<Option<TransactionStatement>> {
    match cmd.get("autocommit") {
        None => {
            if cmd.contains_key("startTransaction") {
                return Err(CommandError::new(
                    50768,
                    "Location50768",
                    "startTransaction needs autocommit: false",
                ));
            }
            return Ok(None);
        }
        Some(Bson::Boolean(false)) => {}
        Some(_) => {
            return Err(CommandError::new(
                50768,
                "Location50768",
                "autocommit may only be false",
            ));
        }
    }
    let lsid = cmd
        .get_document("lsid")
        .map_err(|_| CommandError::new(50768, "Location50768", "a transaction needs an lsid"))?;
    let number = cmd.get("txnNumber").and_then(as_i64).ok_or_else(|| {
        CommandError::new(50768, "Location50768", "a transaction needs a txnNumber")
    })?;
    Ok(Some(TransactionStatement {
        lsid: lsid.clone(),
        number,
        start: truthy(cmd.get("startTransaction")),
    }))
}

/// Runs a write, inside its transaction when it has one (the store stays locked throughout,
/// so no other session's write lands in it).
fn statement(
    shared: &Shared,
    transaction: Option<&TransactionStatement>,
    write: impl FnOnce(&mut Store) -> CmdResult<Document>,
) -> CmdResult<Document> {
    let mut store = shared.store();
    let Some(statement) = transaction else {
        return write(&mut store);
    };
    store.enter_transaction(&statement.lsid, statement.number, false)?;
    let result = write(&mut store);
    store.leave_transaction();
    result
}

fn rename_collection(shared: &Shared, cmd: &Document, db: &str) -> CmdResult<Document> {
    if db != "admin" {
        return Err(CommandError::new(
            13,
            "Unauthorized",
            "renameCollection may only be run against the admin database.",
        ));
    }
    let namespace = |key: &str| -> CmdResult<(String, String)> {
        let text = cmd
            .get_str(key)
            .map_err(|_| CommandError::type_mismatch(format!("'{key}' must be a string")))?;
        match text.split_once('.') {
            Some((d, c)) if !d.is_empty() && !c.is_empty() => Ok((d.to_owned(), c.to_owned())),
            _ => Err(CommandError::invalid_namespace(format!(
                "Invalid namespace specified '{text}'"
            ))),
        }
    };
    let from = namespace("renameCollection")?;
    let to = namespace("to")?;
    shared.store().rename_collection(
        (&from.0, &from.1),
        (&to.0, &to.1),
        truthy(cmd.get("dropTarget")),
    )?;
    Ok(Document::new())
}

/// Identifies a retryable write (`lsid` + `txnNumber`, sent by drivers to a
/// replica set). A driver re-sends the same pair when the connection died
/// before the reply arrived; answering from memory instead of running the
/// write twice is what keeps fault injection from duplicating changes.
fn retryable_write_key(name: &str, cmd: &Document) -> Option<(String, i64)> {
    if !matches!(
        name,
        "insert" | "update" | "delete" | "findAndModify" | "findandmodify"
    ) {
        return None;
    }
    let lsid = cmd.get_document("lsid").ok()?;
    let txn = cmd.get("txnNumber").and_then(as_i64)?;
    Some((lsid.to_string(), txn))
}

// ----- argument helpers ------------------------------------------------

fn as_i64(v: &Bson) -> Option<i64> {
    match v {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        Bson::Double(f) if f.fract() == 0.0 && f.is_finite() => Some(*f as i64),
        _ => None,
    }
}

fn truthy(v: Option<&Bson>) -> bool {
    match v {
        None | Some(Bson::Null) => false,
        Some(Bson::Boolean(b)) => *b,
        Some(other) => as_i64(other).is_none_or(|n| n != 0),
    }
}

fn opt_i64(cmd: &Document, key: &str) -> CmdResult<Option<i64>> {
    match cmd.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(v) => as_i64(v)
            .map(Some)
            .ok_or_else(|| CommandError::type_mismatch(format!("'{key}' must be a number"))),
    }
}

fn opt_doc<'a>(cmd: &'a Document, key: &str) -> CmdResult<Option<&'a Document>> {
    match cmd.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::Document(d)) => Ok(Some(d)),
        Some(_) => Err(CommandError::type_mismatch(format!(
            "'{key}' must be an object"
        ))),
    }
}

/// The collection a command names; as MongoDB, a name it cannot have is an InvalidNamespace
/// error naming the namespace.
fn collection_arg<'a>(cmd: &'a Document, db: &str, name: &str) -> CmdResult<&'a str> {
    match cmd.get(name) {
        Some(Bson::String(s)) if s.contains(['\0', '$']) => Err(CommandError::invalid_namespace(
            format!("Invalid namespace specified '{db}.{s}'"),
        )),
        Some(Bson::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(CommandError::invalid_namespace(format!(
            "collection name for '{name}' must be a non-empty string"
        ))),
    }
}

fn doc_array<'a>(cmd: &'a Document, key: &str) -> CmdResult<Vec<&'a Document>> {
    let Some(Bson::Array(items)) = cmd.get(key) else {
        return Err(CommandError::failed_to_parse(format!(
            "'{key}' must be an array"
        )));
    };
    items
        .iter()
        .map(|b| match b {
            Bson::Document(d) => Ok(d),
            _ => Err(CommandError::type_mismatch(format!(
                "'{key}' entries must be objects"
            ))),
        })
        .collect()
}

fn batch_size(v: Option<i64>) -> CmdResult<Option<usize>> {
    match v {
        None => Ok(None),
        Some(n) if n < 0 => Err(CommandError::bad_value("batchSize must be non-negative")),
        Some(n) => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
    }
}

fn write_error_doc(index: usize, e: &CommandError) -> Document {
    let mut d = doc! { "index": index as i32, "code": e.code, "errmsg": e.errmsg.clone() };
    if e.code == 11000 {
        d.insert("keyPattern", doc! { "_id": 1 });
    }
    d
}

fn cursor_reply(batch: Batch, first: bool) -> Document {
    let key = if first { "firstBatch" } else { "nextBatch" };
    let docs: Vec<Bson> = batch.docs.into_iter().map(Bson::Document).collect();
    let mut cursor = doc! { key: docs };
    if let Some(token) = batch.post_batch_resume_token {
        cursor.insert("postBatchResumeToken", token);
    }
    // The driver reads the id strictly as a 64-bit integer.
    cursor.insert("id", batch.cursor_id);
    cursor.insert("ns", batch.ns);
    doc! { "cursor": cursor }
}

// ----- handshake and server info -----------------------------------------

async fn hello(
    shared: &Shared,
    ctx: &ConnCtx,
    cmd: &Document,
    legacy: bool,
) -> CmdResult<Document> {
    // Awaitable hello (streaming SDAM monitoring): hold the reply until the
    // topology changes or maxAwaitTimeMS passes, otherwise monitors spin.
    if let (Ok(tv), Some(wait)) = (
        cmd.get_document("topologyVersion"),
        opt_i64(cmd, "maxAwaitTimeMS")?,
    ) {
        let current = *shared.topology.borrow();
        let same_process = tv.get_object_id("processId").ok() == Some(shared.process_id);
        let same_counter = tv.get("counter").and_then(as_i64) == Some(current);
        if same_process && same_counter {
            let wait = Duration::from_millis(u64::try_from(wait).unwrap_or(0)).min(MAX_AWAIT);
            let mut rx = shared.topology.subscribe();
            let _ = tokio::time::timeout(wait, rx.wait_for(|c| *c != current)).await;
        }
    }
    let standalone = shared.standalone.load(Ordering::SeqCst);
    let me = shared.host();
    let mut d = Document::new();
    d.insert(
        if legacy {
            "ismaster"
        } else {
            "isWritablePrimary"
        },
        true,
    );
    d.insert(
        "topologyVersion",
        doc! { "processId": shared.process_id, "counter": *shared.topology.borrow() },
    );
    if !standalone {
        let now = DateTime::now();
        let ts = shared.store().cluster_time();
        d.insert("hosts", vec![me.clone()]);
        d.insert("setName", "rs0");
        d.insert("setVersion", 1);
        d.insert("secondary", false);
        d.insert("primary", me.clone());
        d.insert("me", me);
        d.insert(
            "electionId",
            ObjectId::from_bytes([0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1]),
        );
        d.insert(
            "lastWrite",
            doc! {
                "opTime": { "ts": ts, "t": 1i64 },
                "lastWriteDate": now,
                "majorityOpTime": { "ts": ts, "t": 1i64 },
                "majorityWriteDate": now,
            },
        );
    }
    if truthy(cmd.get("helloOk")) {
        d.insert("helloOk", true);
    }
    d.insert("maxBsonObjectSize", MAX_BSON_OBJECT_SIZE);
    d.insert("maxMessageSizeBytes", wire::MAX_MESSAGE_LEN as i32);
    d.insert("maxWriteBatchSize", MAX_WRITE_BATCH_SIZE);
    d.insert("localTime", DateTime::now());
    d.insert("logicalSessionTimeoutMinutes", 30);
    d.insert("connectionId", ctx.id);
    d.insert("minWireVersion", 0);
    d.insert("maxWireVersion", MAX_WIRE_VERSION);
    d.insert("readOnly", false);
    Ok(d)
}

fn build_info() -> Document {
    doc! {
        "version": SERVER_VERSION,
        "gitVersion": "mongo-test-server",
        "versionArray": [7, 0, 0, 0],
        "bits": 64,
        "debug": false,
        "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
        "storageEngines": ["inMemory"],
        "modules": [],
        "javascriptEngine": "none",
    }
}

fn get_parameter(cmd: &Document) -> Document {
    let all = matches!(cmd.get("getParameter"), Some(Bson::String(s)) if s == "*");
    let mut d = Document::new();
    if all || cmd.contains_key("featureCompatibilityVersion") {
        d.insert("featureCompatibilityVersion", doc! { "version": "7.0" });
    }
    if all || cmd.contains_key("changeStreamOptions") {
        d.insert(
            "changeStreamOptions",
            doc! { "preAndPostImages": { "expireAfterSeconds": "off" } },
        );
    }
    d
}

fn server_status(shared: &Shared) -> Document {
    let uptime = shared.started.elapsed();
    let open = shared.open_connections() as i32;
    doc! {
        "host": shared.host(),
        "version": SERVER_VERSION,
        "process": "mongod",
        "pid": i64::from(std::process::id()),
        "uptime": uptime.as_secs_f64(),
        "uptimeMillis": uptime.as_millis() as i64,
        "localTime": DateTime::now(),
        "connections": { "current": open, "available": 10_000 - open },
    }
}

fn host_info() -> Document {
    doc! {
        "system": { "currentTime": DateTime::now(), "hostname": "127.0.0.1", "numCores": 1 },
        "os": { "type": std::env::consts::OS },
        "extra": {},
    }
}

fn repl_set_get_status(shared: &Shared) -> CmdResult<Document> {
    if shared.standalone.load(Ordering::SeqCst) {
        return Err(CommandError::new(
            76,
            "NoReplicationEnabled",
            "not running with --replSet",
        ));
    }
    Ok(doc! {
        "set": "rs0",
        "date": DateTime::now(),
        "myState": 1,
        "members": [{
            "_id": 0, "name": shared.host(), "health": 1.0, "state": 1,
            "stateStr": "PRIMARY", "self": true,
        }],
    })
}

// ----- CRUD ---------------------------------------------------------------

fn insert(store: &mut Store, cmd: &Document, db: &str) -> CmdResult<Document> {
    let coll = collection_arg(cmd, db, "insert")?;
    let docs = doc_array(cmd, "documents")?;
    let ordered = cmd.get("ordered").is_none_or(|v| truthy(Some(v)));
    let mut n = 0;
    let mut errors = Vec::new();
    for (i, d) in docs.into_iter().enumerate() {
        match store.insert_one(db, coll, d.clone()) {
            Ok(_) => n += 1,
            Err(e) => {
                errors.push(write_error_doc(i, &e));
                if ordered {
                    break;
                }
            }
        }
    }
    let mut reply = doc! { "n": n };
    if !errors.is_empty() {
        reply.insert("writeErrors", errors);
    }
    Ok(reply)
}

fn update(store: &mut Store, cmd: &Document, db: &str) -> CmdResult<Document> {
    let coll = collection_arg(cmd, db, "update")?;
    let statements = doc_array(cmd, "updates")?;
    let ordered = cmd.get("ordered").is_none_or(|v| truthy(Some(v)));
    let (mut n, mut modified) = (0i64, 0i64);
    let mut upserted = Vec::new();
    let mut errors = Vec::new();
    for (i, stmt) in statements.into_iter().enumerate() {
        let result = (|| {
            let filter = opt_doc(stmt, "q")?.cloned().unwrap_or_default();
            let update = match stmt.get("u") {
                Some(Bson::Document(u)) => u,
                Some(Bson::Array(_)) => {
                    return Err(CommandError::failed_to_parse(
                        "pipeline-style updates are not supported by mongo-test-server",
                    ));
                }
                _ => return Err(CommandError::failed_to_parse("update statement needs 'u'")),
            };
            store.update(
                db,
                coll,
                &UpdateOp {
                    filter: &filter,
                    update,
                    multi: truthy(stmt.get("multi")),
                    upsert: truthy(stmt.get("upsert")),
                    sort: None,
                },
            )
        })();
        match result {
            Ok(r) => {
                if let Some(id) = r.upserted {
                    n += 1;
                    upserted.push(doc! { "index": i as i32, "_id": id });
                } else {
                    n += r.matched;
                    modified += r.modified;
                }
            }
            Err(e) => {
                errors.push(write_error_doc(i, &e));
                if ordered {
                    break;
                }
            }
        }
    }
    let mut reply = doc! { "n": n as i32, "nModified": modified as i32 };
    if !upserted.is_empty() {
        reply.insert("upserted", upserted);
    }
    if !errors.is_empty() {
        reply.insert("writeErrors", errors);
    }
    Ok(reply)
}

fn delete(store: &mut Store, cmd: &Document, db: &str) -> CmdResult<Document> {
    let coll = collection_arg(cmd, db, "delete")?;
    let statements = doc_array(cmd, "deletes")?;
    let ordered = cmd.get("ordered").is_none_or(|v| truthy(Some(v)));
    let mut n = 0usize;
    let mut errors = Vec::new();
    for (i, stmt) in statements.into_iter().enumerate() {
        let result = (|| {
            let filter = opt_doc(stmt, "q")?.cloned().unwrap_or_default();
            let only_one = match opt_i64(stmt, "limit")? {
                Some(0) | None => false,
                Some(1) => true,
                Some(_) => {
                    return Err(CommandError::failed_to_parse("delete limit must be 0 or 1"));
                }
            };
            store.delete(db, coll, &filter, only_one, None)
        })();
        match result {
            Ok(deleted) => n += deleted.len(),
            Err(e) => {
                errors.push(write_error_doc(i, &e));
                if ordered {
                    break;
                }
            }
        }
    }
    let mut reply = doc! { "n": n as i32 };
    if !errors.is_empty() {
        reply.insert("writeErrors", errors);
    }
    Ok(reply)
}

fn find_and_modify(store: &mut Store, cmd: &Document, db: &str) -> CmdResult<Document> {
    let name = if cmd.contains_key("findAndModify") {
        "findAndModify"
    } else {
        "findandmodify"
    };
    let coll = collection_arg(cmd, db, name)?;
    let filter = opt_doc(cmd, "query")?.cloned().unwrap_or_default();
    let sort = opt_doc(cmd, "sort")?;
    let fields = opt_doc(cmd, "fields")?;
    let (value, last_error) = if truthy(cmd.get("remove")) {
        let deleted = store.delete(db, coll, &filter, true, sort)?;
        let n = deleted.len() as i32;
        (deleted.into_iter().next(), doc! { "n": n })
    } else {
        let update = match cmd.get("update") {
            Some(Bson::Document(u)) => u,
            Some(Bson::Array(_)) => {
                return Err(CommandError::failed_to_parse(
                    "pipeline-style updates are not supported by mongo-test-server",
                ));
            }
            _ => {
                return Err(CommandError::failed_to_parse(
                    "Either an update or remove=true must be specified",
                ));
            }
        };
        let r = store.update(
            db,
            coll,
            &UpdateOp {
                filter: &filter,
                update,
                multi: false,
                upsert: truthy(cmd.get("upsert")),
                sort,
            },
        )?;
        let want_new = truthy(cmd.get("new"));
        let value = if r.upserted.is_some() {
            if want_new { r.after } else { None }
        } else if want_new {
            r.after
        } else {
            r.before
        };
        let mut last = doc! {
            "n": if r.upserted.is_some() { 1 } else { r.matched as i32 },
            "updatedExisting": r.matched > 0,
        };
        if let Some(id) = r.upserted {
            last.insert("upserted", id);
        }
        (value, last)
    };
    let value = value.map(|v| match fields {
        Some(p) => query::project(&v, p),
        None => v,
    });
    Ok(doc! { "lastErrorObject": last_error, "value": value.map_or(Bson::Null, Bson::Document) })
}

/// Filter, sort, skip, limit and projection shared by find and count.
fn query_docs(
    shared: &Shared,
    db: &str,
    coll: &str,
    filter: &Document,
    sort: Option<&Document>,
    skip: Option<i64>,
    limit: Option<i64>,
) -> CmdResult<Vec<Document>> {
    let mut docs = shared.store().find(db, coll, filter)?;
    if let Some(sort) = sort {
        query::sort_documents(&mut docs, sort)?;
    }
    let skip = usize::try_from(skip.unwrap_or(0).max(0)).unwrap_or(usize::MAX);
    docs.drain(..skip.min(docs.len()));
    if let Some(limit) = limit.filter(|l| *l != 0) {
        docs.truncate(usize::try_from(limit.unsigned_abs()).unwrap_or(usize::MAX));
    }
    Ok(docs)
}

fn find(shared: &Shared, cmd: &Document, db: &str) -> CmdResult<Document> {
    let coll = collection_arg(cmd, db, "find")?;
    let filter = opt_doc(cmd, "filter")?.cloned().unwrap_or_default();
    let limit = opt_i64(cmd, "limit")?;
    let mut docs = query_docs(
        shared,
        db,
        coll,
        &filter,
        opt_doc(cmd, "sort")?,
        opt_i64(cmd, "skip")?,
        limit,
    )?;
    if let Some(p) = opt_doc(cmd, "projection")?.filter(|p| !p.is_empty()) {
        docs = docs.iter().map(|d| query::project(d, p)).collect();
    }
    let single = truthy(cmd.get("singleBatch")) || limit.is_some_and(|l| l < 0);
    let first = batch_size(opt_i64(cmd, "batchSize")?)?.unwrap_or(DEFAULT_FIRST_BATCH);
    let batch = shared
        .store()
        .open_find_cursor(format!("{db}.{coll}"), docs, first, single);
    Ok(cursor_reply(batch, true))
}

fn count(shared: &Shared, cmd: &Document, db: &str) -> CmdResult<Document> {
    let coll = collection_arg(cmd, db, "count")?;
    let filter = opt_doc(cmd, "query")?.cloned().unwrap_or_default();
    let docs = query_docs(
        shared,
        db,
        coll,
        &filter,
        None,
        opt_i64(cmd, "skip")?,
        opt_i64(cmd, "limit")?,
    )?;
    Ok(doc! { "n": docs.len() as i32 })
}

async fn get_more(shared: &Shared, cmd: &Document) -> CmdResult<Document> {
    let id = cmd
        .get("getMore")
        .and_then(as_i64)
        .ok_or_else(|| CommandError::type_mismatch("getMore cursor id must be a 64-bit integer"))?;
    let size = batch_size(opt_i64(cmd, "batchSize")?)?.filter(|n| *n > 0);
    let wait = match opt_i64(cmd, "maxTimeMS")? {
        Some(ms) => Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
        None => DEFAULT_AWAIT,
    };
    let deadline = Instant::now() + wait.min(MAX_AWAIT);
    loop {
        // Register interest before looking, so an event recorded between the
        // check and the wait still wakes us.
        let notified = shared.events.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let batch = shared.store().next_batch(id, size)?;
        let keep_waiting = batch.is_change_stream
            && batch.docs.is_empty()
            && batch.cursor_id != 0
            && Instant::now() < deadline;
        if !keep_waiting {
            return Ok(cursor_reply(batch, false));
        }
        // On timeout, loop once more: that final look returns the (empty)
        // batch with a fresh postBatchResumeToken.
        let _waiting = GaugeGuard::new(&shared.waiting_streams);
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

fn kill_cursors(shared: &Shared, cmd: &Document) -> Document {
    let mut killed = Vec::new();
    let mut not_found = Vec::new();
    if let Some(Bson::Array(ids)) = cmd.get("cursors") {
        let mut store = shared.store();
        for id in ids.iter().filter_map(as_i64) {
            if store.kill_cursor(id) {
                killed.push(id);
            } else {
                not_found.push(id);
            }
        }
    }
    doc! {
        "cursorsKilled": killed,
        "cursorsNotFound": not_found,
        "cursorsAlive": [],
        "cursorsUnknown": [],
    }
}

// ----- namespaces -----------------------------------------------------------

fn list_collections(shared: &Shared, cmd: &Document, db: &str) -> CmdResult<Document> {
    let filter = opt_doc(cmd, "filter")?.cloned().unwrap_or_default();
    let name_only = truthy(cmd.get("nameOnly"));
    let mut entries = Vec::new();
    for name in shared.store().collection_names(db) {
        let full = doc! {
            "name": name.clone(),
            "type": "collection",
            "options": {},
            "info": { "readOnly": false },
            "idIndex": { "v": 2, "key": { "_id": 1 }, "name": "_id_" },
        };
        if query::matches(&full, &filter)? {
            entries.push(if name_only {
                doc! { "name": name, "type": "collection" }
            } else {
                full
            });
        }
    }
    let batch = Batch {
        docs: entries,
        cursor_id: 0,
        ns: format!("{db}.$cmd.listCollections"),
        post_batch_resume_token: None,
        is_change_stream: false,
    };
    Ok(cursor_reply(batch, true))
}

fn list_databases(shared: &Shared, cmd: &Document) -> CmdResult<Document> {
    let filter = opt_doc(cmd, "filter")?.cloned().unwrap_or_default();
    let name_only = truthy(cmd.get("nameOnly"));
    let mut dbs = Vec::new();
    for name in shared.store().database_names() {
        let entry = if name_only {
            doc! { "name": name }
        } else {
            doc! { "name": name, "sizeOnDisk": 8192i64, "empty": false }
        };
        if query::matches(&entry, &filter)? {
            dbs.push(entry);
        }
    }
    let mut reply = doc! { "databases": dbs };
    if !name_only {
        reply.insert("totalSize", 0i64);
        reply.insert("totalSizeMb", 0i64);
    }
    Ok(reply)
}

fn list_indexes(shared: &Shared, cmd: &Document, db: &str) -> CmdResult<Document> {
    let coll = collection_arg(cmd, db, "listIndexes")?;
    if !shared
        .store()
        .collection_names(db)
        .iter()
        .any(|c| c == coll)
    {
        return Err(CommandError::new(
            26,
            "NamespaceNotFound",
            format!("ns does not exist: {db}.{coll}"),
        ));
    }
    let batch = Batch {
        docs: vec![doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" }],
        cursor_id: 0,
        ns: format!("{db}.{coll}"),
        post_batch_resume_token: None,
        is_change_stream: false,
    };
    Ok(cursor_reply(batch, true))
}

fn db_stats(shared: &Shared, db: &str) -> Document {
    let store = shared.store();
    let names = store.collection_names(db);
    let objects: usize = names.iter().map(|c| store.collection_len(db, c)).sum();
    doc! { "db": db, "collections": names.len() as i32, "views": 0, "objects": objects as i64 }
}

fn create(shared: &Shared, cmd: &Document, db: &str) -> CmdResult<Document> {
    let coll = collection_arg(cmd, db, "create")?;
    // MongoDB 7 treats re-creating an existing collection with the same options as success.
    shared.store().create_collection(db, coll);
    Ok(Document::new())
}

fn create_indexes(shared: &Shared, cmd: &Document, db: &str) -> CmdResult<Document> {
    let coll = collection_arg(cmd, db, "createIndexes")?;
    let mut store = shared.store();
    let existed = store.collection_names(db).iter().any(|c| c == coll);
    store.create_collection(db, coll);
    Ok(doc! {
        "numIndexesBefore": 1,
        "numIndexesAfter": 1,
        "createdCollectionAutomatically": !existed,
        "note": "secondary indexes are accepted and ignored by mongo-test-server",
    })
}

fn drop_collection(shared: &Shared, cmd: &Document, db: &str) -> CmdResult<Document> {
    let coll = collection_arg(cmd, db, "drop")?;
    if shared.store().drop_collection(db, coll) {
        Ok(doc! { "nIndexesWas": 1, "ns": format!("{db}.{coll}") })
    } else {
        Ok(Document::new())
    }
}

// ----- aggregate ----------------------------------------------------------

fn aggregate(shared: &Shared, cmd: &Document, db: &str) -> CmdResult<Document> {
    let target = match cmd.get("aggregate") {
        Some(Bson::String(_)) => Some(collection_arg(cmd, db, "aggregate")?),
        Some(v) if as_i64(v) == Some(1) => None,
        _ => {
            return Err(CommandError::failed_to_parse(
                "aggregate must be a collection name or 1",
            ));
        }
    };
    let stages = doc_array(cmd, "pipeline")?;
    let cursor_opts = opt_doc(cmd, "cursor")?;
    let first = match cursor_opts {
        Some(c) => batch_size(opt_i64(c, "batchSize")?)?.unwrap_or(DEFAULT_FIRST_BATCH),
        None if truthy(cmd.get("explain")) => DEFAULT_FIRST_BATCH,
        None => {
            return Err(CommandError::failed_to_parse(
                "The 'cursor' option is required, except for aggregate with the explain argument",
            ));
        }
    };
    if let Some(spec) = stages
        .first()
        .and_then(|s| s.get_document("$changeStream").ok())
    {
        return change_stream(shared, db, target, spec, &stages[1..], first);
    }
    let Some(coll) = target else {
        return Err(CommandError::bad_value(
            "mongo-test-server only supports database-level aggregate with $changeStream",
        ));
    };
    let mut docs = shared.store().find(db, coll, &Document::new())?;
    for stage in stages {
        docs = apply_stage(docs, stage)?;
    }
    let batch = shared
        .store()
        .open_find_cursor(format!("{db}.{coll}"), docs, first, false);
    Ok(cursor_reply(batch, true))
}

/// The few ordinary pipeline stages supported (enough for countDocuments).
fn apply_stage(mut docs: Vec<Document>, stage: &Document) -> CmdResult<Vec<Document>> {
    let Some((name, arg)) = stage.iter().next() else {
        return Err(CommandError::bad_value("empty pipeline stage"));
    };
    let arg_doc = || match arg {
        Bson::Document(d) => Ok(d),
        _ => Err(CommandError::failed_to_parse(format!(
            "{name} needs an object"
        ))),
    };
    let arg_num = || {
        as_i64(arg)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                CommandError::failed_to_parse(format!("{name} needs a non-negative number"))
            })
    };
    match name.as_str() {
        "$match" => {
            let filter = arg_doc()?;
            let mut out = Vec::new();
            for d in docs {
                if query::matches(&d, filter)? {
                    out.push(d);
                }
            }
            Ok(out)
        }
        "$sort" => {
            query::sort_documents(&mut docs, arg_doc()?)?;
            Ok(docs)
        }
        "$skip" => {
            let n = arg_num()?;
            docs.drain(..n.min(docs.len()));
            Ok(docs)
        }
        "$limit" => {
            docs.truncate(arg_num()?);
            Ok(docs)
        }
        "$project" => {
            let p = arg_doc()?;
            Ok(docs.iter().map(|d| query::project(d, p)).collect())
        }
        "$count" => match arg {
            Bson::String(field) if !docs.is_empty() => {
                Ok(vec![doc! { field.clone(): docs.len() as i32 }])
            }
            Bson::String(_) => Ok(Vec::new()),
            _ => Err(CommandError::failed_to_parse("$count needs a field name")),
        },
        "$group" => group_constant(docs, arg_doc()?),
        other => Err(CommandError::bad_value(format!(
            "pipeline stage {other} is not supported by mongo-test-server"
        ))),
    }
}

/// `$group` with a constant `_id` and `{$sum: <number>}` accumulators, the
/// shape countDocuments sends.
fn group_constant(docs: Vec<Document>, spec: &Document) -> CmdResult<Vec<Document>> {
    let unsupported = || {
        CommandError::bad_value("only $group with a constant _id and $sum of a number is supported")
    };
    let id = spec.get("_id").cloned().unwrap_or(Bson::Null);
    if matches!(&id, Bson::String(s) if s.starts_with('$')) || matches!(id, Bson::Document(_)) {
        return Err(unsupported());
    }
    if docs.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = doc! { "_id": id };
    for (field, acc) in spec.iter().filter(|(k, _)| *k != "_id") {
        let Some(per_doc) = acc
            .as_document()
            .and_then(|a| a.get("$sum"))
            .and_then(as_i64)
        else {
            return Err(unsupported());
        };
        let total = per_doc.saturating_mul(docs.len() as i64);
        match i32::try_from(total) {
            Ok(t) => out.insert(field.clone(), t),
            Err(_) => out.insert(field.clone(), total),
        };
    }
    Ok(vec![out])
}

fn change_stream(
    shared: &Shared,
    db: &str,
    target: Option<&str>,
    spec: &Document,
    rest: &[&Document],
    first: usize,
) -> CmdResult<Document> {
    if shared.standalone.load(Ordering::SeqCst) {
        return Err(CommandError::new(
            40573,
            "Location40573",
            "The $changeStream stage is only supported on replica sets",
        ));
    }
    let all_for_cluster = truthy(spec.get("allChangesForCluster"));
    if !all_for_cluster && INTERNAL_DATABASES.contains(&db) {
        return Err(CommandError::invalid_namespace(format!(
            "$changeStream may not be opened on the internal {db} database"
        )));
    }
    let (scope, ns) = match (target, all_for_cluster) {
        (Some(coll), false) => (
            Scope::Collection {
                db: db.to_owned(),
                coll: coll.to_owned(),
            },
            format!("{db}.{coll}"),
        ),
        (None, false) => (
            Scope::Database { db: db.to_owned() },
            format!("{db}.$cmd.aggregate"),
        ),
        (None, true) if db == "admin" => (Scope::Cluster, "admin.$cmd.aggregate".to_owned()),
        _ => {
            return Err(CommandError::bad_value(
                "allChangesForCluster requires aggregate: 1 on the admin database",
            ));
        }
    };
    let full_document = match spec.get("fullDocument") {
        None | Some(Bson::Null) => FullDocument::Default,
        Some(Bson::String(s)) => match s.as_str() {
            "default" => FullDocument::Default,
            "updateLookup" => FullDocument::UpdateLookup,
            "whenAvailable" => FullDocument::WhenAvailable,
            "required" => FullDocument::Required,
            other => {
                return Err(CommandError::bad_value(format!(
                    "unknown fullDocument value '{other}'"
                )));
            }
        },
        Some(_) => return Err(CommandError::type_mismatch("fullDocument must be a string")),
    };
    let before_change = match spec.get("fullDocumentBeforeChange") {
        None | Some(Bson::Null) => BeforeChange::Off,
        Some(Bson::String(s)) => match s.as_str() {
            "off" => BeforeChange::Off,
            "whenAvailable" => BeforeChange::WhenAvailable,
            "required" => BeforeChange::Required,
            other => {
                return Err(CommandError::bad_value(format!(
                    "unknown fullDocumentBeforeChange value '{other}'"
                )));
            }
        },
        Some(_) => {
            return Err(CommandError::type_mismatch(
                "fullDocumentBeforeChange must be a string",
            ));
        }
    };
    let mut starts = Vec::new();
    if let Some(t) = opt_doc(spec, "resumeAfter")? {
        starts.push(StartAt::ResumeAfter(t.clone()));
    }
    if let Some(t) = opt_doc(spec, "startAfter")? {
        starts.push(StartAt::StartAfter(t.clone()));
    }
    match spec.get("startAtOperationTime") {
        None | Some(Bson::Null) => {}
        Some(Bson::Timestamp(ts)) => starts.push(StartAt::OperationTime(*ts)),
        Some(_) => {
            return Err(CommandError::type_mismatch(
                "startAtOperationTime must be a timestamp",
            ));
        }
    }
    if starts.len() > 1 {
        return Err(CommandError::new(
            40674,
            "Location40674",
            "Only one type of resume option is allowed, but multiple were found.",
        ));
    }
    let start = starts.pop().unwrap_or(StartAt::Now);
    // Only $match is honoured after $changeStream; other stages (projections
    // and the like) are ignored so that real-world pipelines still run.
    let filters: Vec<Document> = rest
        .iter()
        .filter_map(|stage| stage.get_document("$match").ok().cloned())
        .collect();
    for filter in &filters {
        query::check_filter(filter)?;
    }
    let stream = StreamSpec {
        scope,
        full_document,
        before_change,
        filters,
    };
    let batch = shared
        .store()
        .open_change_stream(ns, stream, start, first)?;
    Ok(cursor_reply(batch, true))
}
