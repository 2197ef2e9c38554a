//! End-to-end tests against the official MongoDB Rust driver.

mod common;

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use mongo_test_server::{TestServer, wire};
use mongodb::bson::{Bson, Document, doc};
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType, ResumeToken};
use mongodb::error::{Error, ErrorKind};
use mongodb::options::{FullDocumentBeforeChangeType, FullDocumentType};
use mongodb::{Client, Collection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{op_query_is_master, within};

type Events = ChangeStream<ChangeStreamEvent<Document>>;

/// Polls a cheap condition of the server's state (it has no signal for it) every 5 ms until it
/// holds, failing after the deadline.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        let mut every = tokio::time::interval(Duration::from_millis(5));
        while !condition() {
            every.tick().await;
        }
    })
    .await
}

async fn client(server: &TestServer) -> Client {
    within("client", Client::with_uri_str(server.uri()))
        .await
        .expect("client options")
}

/// `db.c` through `client`, and a change stream on it.
async fn watched(client: &Client) -> (Collection<Document>, Events) {
    let coll: Collection<Document> = client.database("db").collection("c");
    let stream = within("watch", coll.watch()).await.unwrap();
    (coll, stream)
}

/// `db.c` as one client writes it, and a change stream on it through another.
async fn written_and_watched(server: &TestServer) -> (Collection<Document>, Events) {
    let (_, stream) = watched(&client(server).await).await;
    let writer = client(server).await;
    (writer.database("db").collection("c"), stream)
}

async fn next_event(stream: &mut Events) -> ChangeStreamEvent<Document> {
    within("a change event", stream.next())
        .await
        .expect("change stream ended")
        .expect("change stream error")
}

/// One getMore round trip (the server waits up to 1 s) must bring nothing.
async fn assert_no_more_events(stream: &mut Events) {
    let extra = within("an empty getMore", stream.next_if_any())
        .await
        .expect("getMore failed");
    assert!(extra.is_none(), "unexpected extra event: {extra:?}");
}

fn server_code(err: &Error) -> Option<i32> {
    match err.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::InsertMany(m) => m.write_errors.as_ref()?.first().map(|w| w.code),
        _ => None,
    }
}

fn key_of(event: &ChangeStreamEvent<Document>) -> Bson {
    event
        .document_key
        .as_ref()
        .and_then(|k| k.get("_id"))
        .cloned()
        .expect("documentKey._id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_round_trip() {
    let server = TestServer::start().await.unwrap();
    let client = client(&server).await;
    let coll: Collection<Document> = client.database("app").collection("items");

    let docs: Vec<Document> = (0..100)
        .map(|i| doc! { "_id": i, "n": i, "even": i % 2 == 0, "tag": "t" })
        .collect();
    let inserted = within("insert_many", coll.insert_many(docs)).await.unwrap();
    assert_eq!(inserted.inserted_ids.len(), 100);

    // Documents without _id get an ObjectId.
    let auto = within("insert_one", coll.insert_one(doc! { "auto": true }))
        .await
        .unwrap();
    assert!(matches!(auto.inserted_id, Bson::ObjectId(_)));

    // Duplicate _id is a write error with code 11000.
    let dup = within("dup insert", coll.insert_one(doc! { "_id": 5 }))
        .await
        .unwrap_err();
    assert_eq!(server_code(&dup), Some(11000), "{dup:?}");

    let evens: Vec<Document> = within("find", async {
        coll.find(doc! { "even": true })
            .sort(doc! { "n": -1 })
            .limit(3)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    })
    .await;
    let ns: Vec<i32> = evens.iter().map(|d| d.get_i32("n").unwrap()).collect();
    assert_eq!(ns, [98, 96, 94]);

    // Small batches force several getMores on a real cursor.
    let all: Vec<Document> = within("batched find", async {
        coll.find(doc! { "tag": "t" })
            .batch_size(7)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    })
    .await;
    assert_eq!(all.len(), 100);

    let updated = within("update_one", coll.update_one(
        doc! { "_id": 1 },
        doc! { "$set": { "name": "one", "nested.x": 1 }, "$unset": { "tag": "" }, "$inc": { "n": 10 } },
    ))
    .await
    .unwrap();
    assert_eq!((updated.matched_count, updated.modified_count), (1, 1));
    let one = within("find_one", coll.find_one(doc! { "_id": 1 }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        one,
        doc! { "_id": 1, "n": 11, "even": false, "name": "one", "nested": { "x": 1 } }
    );

    let many = within(
        "update_many",
        coll.update_many(doc! { "even": true }, doc! { "$set": { "flag": 1 } }),
    )
    .await
    .unwrap();
    assert_eq!(many.modified_count, 50);

    let replaced = within(
        "replace_one",
        coll.replace_one(doc! { "_id": 2 }, doc! { "replaced": true }),
    )
    .await
    .unwrap();
    assert_eq!(replaced.modified_count, 1);
    let two = within("find_one", coll.find_one(doc! { "_id": 2 }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(two, doc! { "_id": 2, "replaced": true });

    let upsert = within(
        "upsert",
        coll.update_one(doc! { "_id": 500 }, doc! { "$set": { "new": true } })
            .upsert(true),
    )
    .await
    .unwrap();
    assert_eq!(upsert.upserted_id, Some(Bson::Int32(500)));

    let deleted = within("delete_one", coll.delete_one(doc! { "_id": 3 }))
        .await
        .unwrap();
    assert_eq!(deleted.deleted_count, 1);
    let deleted = within(
        "delete_many",
        coll.delete_many(doc! { "n": { "$gte": 90, "$lt": 95 } }),
    )
    .await
    .unwrap();
    assert_eq!(deleted.deleted_count, 5);

    let count = within("count_documents", coll.count_documents(doc! {}))
        .await
        .unwrap();
    assert_eq!(count, 100 + 1 + 1 - 1 - 5);
    let estimate = within("estimated_document_count", coll.estimated_document_count())
        .await
        .unwrap();
    assert_eq!(estimate, count);

    let found = within(
        "find_one_and_update",
        coll.find_one_and_update(doc! { "_id": 4 }, doc! { "$set": { "fam": 1 } }),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        !found.contains_key("fam"),
        "returns the document before the update"
    );

    let names = within(
        "list_collection_names",
        client.database("app").list_collection_names(),
    )
    .await
    .unwrap();
    assert_eq!(names, ["items"]);
    let dbs = within("list_database_names", client.list_database_names())
        .await
        .unwrap();
    assert!(dbs.contains(&"app".to_owned()));

    // Unknown commands fail with CommandNotFound.
    let err = within(
        "unknown command",
        client.database("app").run_command(doc! { "frobnicate": 1 }),
    )
    .await
    .unwrap_err();
    assert_eq!(server_code(&err), Some(59));

    // getMore on an unknown cursor: CursorNotFound.
    let err = within(
        "bad getMore",
        client
            .database("app")
            .run_command(doc! { "getMore": 424242i64, "collection": "items" }),
    )
    .await
    .unwrap_err();
    assert_eq!(server_code(&err), Some(43));

    // A collection name MongoDB does not allow: InvalidNamespace, naming the namespace.
    let bad: Collection<Document> = client.database("app").collection("bad$name");
    let err = within("watch a bad name", bad.watch()).await.unwrap_err();
    assert_eq!(server_code(&err), Some(73), "{err:?}");
    assert!(
        err.to_string()
            .contains("Invalid namespace specified 'app.bad$name'"),
        "{err}"
    );

    within("drop", coll.drop()).await.unwrap();
    let names = within(
        "list_collection_names",
        client.database("app").list_collection_names(),
    )
    .await
    .unwrap();
    assert!(names.is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_stream_delivers_exactly_the_events_of_another_client() {
    let server = TestServer::start().await.unwrap();
    let watcher = client(&server).await;
    let writer = client(&server).await;
    let watched: Collection<Document> = watcher.database("shop").collection("orders");
    let coll: Collection<Document> = writer.database("shop").collection("orders");

    let mut stream = within(
        "watch",
        watched
            .watch()
            .full_document(FullDocumentType::UpdateLookup)
            .full_document_before_change(FullDocumentBeforeChangeType::WhenAvailable),
    )
    .await
    .unwrap();

    // Noise in another collection must not show up.
    within(
        "noise",
        writer
            .database("shop")
            .collection::<Document>("other")
            .insert_one(doc! { "x": 1 }),
    )
    .await
    .unwrap();
    within(
        "insert_many",
        coll.insert_many([
            doc! { "_id": 1, "item": "apple", "qty": 5, "note": "fresh" },
            doc! { "_id": 2, "item": "pear", "qty": 1 },
        ]),
    )
    .await
    .unwrap();
    within(
        "update",
        coll.update_one(
            doc! { "_id": 1 },
            doc! { "$set": { "qty": 6, "status": "paid" }, "$unset": { "note": "" } },
        ),
    )
    .await
    .unwrap();
    within(
        "replace",
        coll.replace_one(doc! { "_id": 2 }, doc! { "item": "plum", "qty": 3 }),
    )
    .await
    .unwrap();
    within("delete", coll.delete_one(doc! { "_id": 1 }))
        .await
        .unwrap();

    let e = next_event(&mut stream).await;
    assert_eq!(e.operation_type, OperationType::Insert);
    assert_eq!(key_of(&e), Bson::Int32(1));
    assert_eq!(
        e.full_document,
        Some(doc! { "_id": 1, "item": "apple", "qty": 5, "note": "fresh" })
    );
    let ns = e.ns.as_ref().unwrap();
    assert_eq!(
        (ns.db.as_str(), ns.coll.as_deref()),
        ("shop", Some("orders"))
    );
    assert!(e.cluster_time.is_some() && e.wall_time.is_some());
    let first_time = e.cluster_time.unwrap();

    let e = next_event(&mut stream).await;
    assert_eq!(e.operation_type, OperationType::Insert);
    assert_eq!(key_of(&e), Bson::Int32(2));

    let e = next_event(&mut stream).await;
    assert_eq!(e.operation_type, OperationType::Update);
    assert_eq!(key_of(&e), Bson::Int32(1));
    let desc = e.update_description.as_ref().unwrap();
    assert_eq!(desc.updated_fields, doc! { "qty": 6, "status": "paid" });
    assert_eq!(desc.removed_fields, ["note"]);
    // updateLookup happens when the event is read: the document is gone by then.
    assert_eq!(e.full_document, None);
    assert_eq!(
        e.full_document_before_change,
        Some(doc! { "_id": 1, "item": "apple", "qty": 5, "note": "fresh" })
    );
    assert!(e.cluster_time.unwrap() > first_time);

    let e = next_event(&mut stream).await;
    assert_eq!(e.operation_type, OperationType::Replace);
    assert_eq!(key_of(&e), Bson::Int32(2));
    assert_eq!(
        e.full_document,
        Some(doc! { "_id": 2, "item": "plum", "qty": 3 })
    );
    assert_eq!(
        e.full_document_before_change,
        Some(doc! { "_id": 2, "item": "pear", "qty": 1 })
    );

    let e = next_event(&mut stream).await;
    assert_eq!(e.operation_type, OperationType::Delete);
    assert_eq!(key_of(&e), Bson::Int32(1));
    assert_eq!(e.full_document, None);
    assert_eq!(
        e.full_document_before_change,
        Some(doc! { "_id": 1, "item": "apple", "qty": 6, "status": "paid" })
    );

    assert_no_more_events(&mut stream).await;

    // updateLookup returns the current document while it exists.
    within("insert", coll.insert_one(doc! { "_id": 3, "qty": 1 }))
        .await
        .unwrap();
    within(
        "update",
        coll.update_one(doc! { "_id": 3 }, doc! { "$inc": { "qty": 1 } }),
    )
    .await
    .unwrap();
    let _insert = next_event(&mut stream).await;
    let e = next_event(&mut stream).await;
    assert_eq!(e.full_document, Some(doc! { "_id": 3, "qty": 2 }));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_middle_token_gives_exactly_the_rest() {
    let server = TestServer::start().await.unwrap();
    let (coll, mut stream) = watched(&client(&server).await).await;
    let docs: Vec<Document> = (0..10).map(|i| doc! { "_id": i }).collect();
    within("insert_many", coll.insert_many(docs)).await.unwrap();

    let mut tokens: Vec<ResumeToken> = Vec::new();
    for i in 0..10 {
        let e = next_event(&mut stream).await;
        assert_eq!(key_of(&e), Bson::Int32(i));
        tokens.push(e.id.clone());
    }
    drop(stream);

    let mut resumed = within("resume", coll.watch().resume_after(tokens[4].clone()))
        .await
        .unwrap();
    for i in 5..10 {
        let e = next_event(&mut resumed).await;
        assert_eq!(key_of(&e), Bson::Int32(i));
        assert_eq!(e.id, tokens[i as usize]);
    }
    assert_no_more_events(&mut resumed).await;

    // start_after behaves the same for ordinary events.
    let mut started = within("start_after", coll.watch().start_after(tokens[8].clone()))
        .await
        .unwrap();
    assert_eq!(key_of(&next_event(&mut started).await), Bson::Int32(9));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_history_fails_resume_with_code_286() {
    let server = TestServer::start().await.unwrap();
    let (coll, mut stream) = watched(&client(&server).await).await;
    within("insert", coll.insert_one(doc! { "_id": 1 }))
        .await
        .unwrap();
    let token = next_event(&mut stream).await.id;
    drop(stream);

    server.forget_history();
    assert_eq!(server.event_count(), 0);
    let err = within("resume", coll.watch().resume_after(token))
        .await
        .unwrap_err();
    assert_eq!(server_code(&err), Some(286), "{err:?}");
    match err.kind.as_ref() {
        ErrorKind::Command(c) => assert_eq!(c.code_name, "ChangeStreamHistoryLost"),
        other => panic!("unexpected error kind {other:?}"),
    }
    assert!(err.contains_label("NonResumableChangeStreamError"));

    // A fresh stream works and sees new events.
    let mut fresh = within("watch", coll.watch()).await.unwrap();
    within("insert", coll.insert_one(doc! { "_id": 2 }))
        .await
        .unwrap();
    assert_eq!(key_of(&next_event(&mut fresh).await), Bson::Int32(2));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_are_resumed_without_loss_or_duplicates() {
    let server = TestServer::start().await.unwrap();
    let (coll, mut stream) = written_and_watched(&server).await;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut keys = Vec::new();
        while keys.len() < 30 {
            let e = next_event(&mut stream).await;
            keys.push(key_of(&e));
            tx.send(keys.len()).unwrap();
        }
        assert_no_more_events(&mut stream).await;
        keys
    });

    let mut next_id = 0;
    for round in 0..3 {
        for _ in 0..10 {
            within("insert", coll.insert_one(doc! { "_id": next_id }))
                .await
                .unwrap();
            next_id += 1;
        }
        // Wait until the reader has everything so far and is parked in a
        // waiting getMore, which is exactly where the fault hits.
        within("reader to catch up", async {
            while let Some(n) = rx.recv().await {
                if n == (round + 1) * 10 {
                    break;
                }
            }
        })
        .await;
        wait_until("a parked getMore", || server.waiting_change_streams() > 0).await;
        server.drop_all_connections();
    }

    let keys = within("reader", reader).await.unwrap();
    let expected: Vec<Bson> = (0..30).map(Bson::Int32).collect();
    assert_eq!(keys, expected);
    // The driver really did reconnect and re-open the stream.
    assert!(
        server.command_count("aggregate") >= 4,
        "each drop must cause a resume"
    );
    assert!(server.connections_accepted() > 6);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_mid_write_burst_loses_nothing() {
    let server = TestServer::start().await.unwrap();
    let (coll, mut stream) = written_and_watched(&server).await;

    let docs: Vec<Document> = (0..20).map(|i| doc! { "_id": i }).collect();
    within("insert_many", coll.insert_many(docs)).await.unwrap();
    let mut keys = Vec::new();
    for _ in 0..5 {
        keys.push(key_of(&next_event(&mut stream).await));
    }
    // The rest of the batch is already in the driver. Whether its next
    // getMore fails (and the stream resumes from the cached token) or the
    // driver has already replaced its pooled connections, nothing may be
    // lost or repeated.
    server.drop_all_connections();
    let docs: Vec<Document> = (20..40).map(|i| doc! { "_id": i }).collect();
    within("insert_many after drop", coll.insert_many(docs))
        .await
        .unwrap();
    while keys.len() < 40 {
        keys.push(key_of(&next_event(&mut stream).await));
    }
    assert_no_more_events(&mut stream).await;
    assert_eq!(keys, (0..40).map(Bson::Int32).collect::<Vec<_>>());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_mode_rejects_change_streams() {
    let server = TestServer::start().await.unwrap();
    server.set_standalone(true);
    let client = client(&server).await;
    let coll: Collection<Document> = client.database("db").collection("c");
    within("insert", coll.insert_one(doc! { "_id": 1 }))
        .await
        .unwrap();
    let err = within("watch", coll.watch()).await.unwrap_err();
    assert_eq!(server_code(&err), Some(40573), "{err:?}");
    assert!(
        err.to_string().contains("only supported on replica sets"),
        "{err}"
    );

    // Back to a replica set: a new client can watch again.
    server.set_standalone(false);
    let client = self::client(&server).await;
    let coll: Collection<Document> = client.database("db").collection("c");
    within("watch", coll.watch()).await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_drop_emits_drop_then_invalidate() {
    let server = TestServer::start().await.unwrap();
    let client = client(&server).await;
    let db = client.database("db");
    let coll: Collection<Document> = db.collection("c");
    let mut coll_stream = within("watch", coll.watch()).await.unwrap();
    let mut db_stream = within("watch db", db.watch()).await.unwrap();
    within("insert", coll.insert_one(doc! { "_id": 1 }))
        .await
        .unwrap();
    within("drop", coll.drop()).await.unwrap();

    let ops: Vec<OperationType> = vec![
        next_event(&mut coll_stream).await.operation_type,
        next_event(&mut coll_stream).await.operation_type,
        next_event(&mut coll_stream).await.operation_type,
    ];
    assert_eq!(
        ops,
        [
            OperationType::Insert,
            OperationType::Drop,
            OperationType::Invalidate
        ]
    );
    let end = within("end of stream", coll_stream.next()).await;
    assert!(end.is_none(), "stream must end after invalidate: {end:?}");

    // A database stream sees the drop but is not invalidated by it.
    assert_eq!(
        next_event(&mut db_stream).await.operation_type,
        OperationType::Insert
    );
    assert_eq!(
        next_event(&mut db_stream).await.operation_type,
        OperationType::Drop
    );
    within(
        "insert",
        db.collection::<Document>("d").insert_one(doc! { "_id": 2 }),
    )
    .await
    .unwrap();
    let e = next_event(&mut db_stream).await;
    assert_eq!(e.operation_type, OperationType::Insert);
    assert_eq!(e.ns.unwrap().coll.as_deref(), Some("d"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_set_discovery_uri_works() {
    let server = TestServer::start().await.unwrap();
    let client = within("client", Client::with_uri_str(server.replica_set_uri()))
        .await
        .unwrap();
    let hello = within(
        "hello",
        client.database("admin").run_command(doc! { "hello": 1 }),
    )
    .await
    .unwrap();
    assert_eq!(hello.get_str("setName").unwrap(), "rs0");
    assert!(hello.get_bool("isWritablePrimary").unwrap());
    assert_eq!(hello.get_i32("maxWireVersion").unwrap(), 21);
    assert_eq!(
        hello.get_array("hosts").unwrap(),
        &vec![Bson::from(server.host())]
    );
    let coll: Collection<Document> = client.database("db").collection("c");
    within("insert", coll.insert_one(doc! { "_id": 1 }))
        .await
        .unwrap();
    let mut stream = within("watch", coll.watch()).await.unwrap();
    within("insert", coll.insert_one(doc! { "_id": 2 }))
        .await
        .unwrap();
    assert_eq!(key_of(&next_event(&mut stream).await), Bson::Int32(2));
    server.shutdown().await;
}

// ----- raw wire tests ---------------------------------------------------

fn le_i32(b: &[u8]) -> i32 {
    i32::from_le_bytes(b[..4].try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_op_query_is_master_gets_op_reply() {
    let server = TestServer::start().await.unwrap();
    let mut sock = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    sock.write_all(&op_query_is_master(77)).await.unwrap();

    let mut header = [0u8; 16];
    within("reply header", sock.read_exact(&mut header))
        .await
        .unwrap();
    let len = le_i32(&header[0..]) as usize;
    assert_eq!(le_i32(&header[8..]), 77, "responseTo");
    assert_eq!(le_i32(&header[12..]), 1, "opCode OP_REPLY");
    let mut rest = vec![0u8; len - 16];
    within("reply body", sock.read_exact(&mut rest))
        .await
        .unwrap();
    // responseFlags(4) cursorID(8) startingFrom(4) numberReturned(4) documents
    assert_eq!(le_i32(&rest[0..]), 0, "responseFlags");
    assert_eq!(
        i64::from_le_bytes(rest[4..12].try_into().unwrap()),
        0,
        "cursorID"
    );
    assert_eq!(le_i32(&rest[16..]), 1, "numberReturned");
    let reply = Document::from_reader(&rest[20..]).unwrap();
    assert!(reply.get_bool("ismaster").unwrap());
    assert!(reply.get_bool("helloOk").unwrap());
    assert_eq!(reply.get_str("setName").unwrap(), "rs0");
    assert_eq!(reply.get_i32("maxWireVersion").unwrap(), 21);
    assert_eq!(reply.get_f64("ok").unwrap(), 1.0);
    assert!(!reply.contains_key("compression"));
    server.shutdown().await;
}

/// Reads until EOF; the server must close the connection.
async fn expect_closed(sock: &mut TcpStream) {
    let mut buf = [0u8; 64];
    loop {
        match within("connection close", sock.read(&mut buf)).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_messages_close_the_connection() {
    let server = TestServer::start().await.unwrap();

    let mut oversized = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    oversized.write_all(&i32::MAX.to_le_bytes()).await.unwrap();
    expect_closed(&mut oversized).await;

    let mut tiny = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    tiny.write_all(&[4, 0, 0, 0]).await.unwrap();
    expect_closed(&mut tiny).await;

    let mut garbage = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    let mut junk = vec![0xABu8; 64];
    junk[..4].copy_from_slice(&64i32.to_le_bytes());
    garbage.write_all(&junk).await.unwrap();
    expect_closed(&mut garbage).await;

    // The server is still healthy for well-behaved clients.
    let mut ok = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    ok.write_all(&op_query_is_master(1)).await.unwrap();
    let mut header = [0u8; 16];
    within("reply", ok.read_exact(&mut header)).await.unwrap();
    assert_eq!(le_i32(&header[12..]), 1);
    server.shutdown().await;
}

#[test]
fn run_cli_rejects_bad_arguments() {
    let err = mongo_test_server::run_cli(["--bogus"]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let err = mongo_test_server::run_cli(["--port", "notaport"]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

/// Sends one OP_MSG and reads back the reply body.
async fn raw_command(sock: &mut TcpStream, request_id: i32, body: Document) -> Document {
    sock.write_all(&wire::encode_op_msg(request_id, 0, &body))
        .await
        .unwrap();
    read_reply(sock, request_id).await
}

async fn read_reply(sock: &mut TcpStream, request_id: i32) -> Document {
    let mut len = [0u8; 4];
    within("reply length", sock.read_exact(&mut len))
        .await
        .unwrap();
    let mut frame = vec![0u8; le_i32(&len) as usize];
    frame[..4].copy_from_slice(&len);
    within("reply", sock.read_exact(&mut frame[4..]))
        .await
        .unwrap();
    let msg = wire::parse_message(&frame).unwrap();
    assert_eq!(msg.header.response_to, request_id);
    match msg.body {
        wire::Body::Msg(m) => m.body,
        other => panic!("expected OP_MSG, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_write_is_answered_without_running_twice() {
    let server = TestServer::start().await.unwrap();
    let mut sock = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    let lsid = doc! { "id": mongodb::bson::Binary {
        subtype: mongodb::bson::spec::BinarySubtype::Uuid,
        bytes: vec![7; 16],
    } };
    let insert = doc! {
        "insert": "c", "documents": [{ "_id": 1 }], "$db": "db",
        "lsid": lsid.clone(), "txnNumber": 1i64,
    };
    let first = raw_command(&mut sock, 1, insert.clone()).await;
    let again = raw_command(&mut sock, 2, insert).await;
    assert_eq!(first.get_i32("n"), Ok(1));
    assert_eq!(again.get_i32("n"), Ok(1), "{again}");
    assert!(!again.contains_key("writeErrors"), "{again}");
    assert_eq!(server.event_count(), 1);

    // A new txnNumber is a new write: now it is a duplicate key.
    let next = doc! {
        "insert": "c", "documents": [{ "_id": 1 }], "$db": "db",
        "lsid": lsid, "txnNumber": 2i64,
    };
    let dup = raw_command(&mut sock, 3, next).await;
    let errors = dup.get_array("writeErrors").unwrap();
    assert_eq!(errors[0].as_document().unwrap().get_i32("code"), Ok(11000));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_to_come_requests_get_no_reply() {
    let server = TestServer::start().await.unwrap();
    let mut sock = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    let mut unacknowledged = wire::encode_op_msg(
        10,
        0,
        &doc! { "insert": "c", "documents": [{ "_id": 1 }], "$db": "db", "writeConcern": { "w": 0 } },
    );
    unacknowledged[16..20].copy_from_slice(&wire::FLAG_MORE_TO_COME.to_le_bytes());
    sock.write_all(&unacknowledged).await.unwrap();
    // The next reply on the socket answers the ping, not the insert.
    let count = raw_command(&mut sock, 11, doc! { "count": "c", "$db": "db" }).await;
    assert_eq!(count.get_i32("n"), Ok(1));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_connection_drops_are_neither_lost_nor_duplicated() {
    const N: i32 = 200;
    let server = std::sync::Arc::new(TestServer::start().await.unwrap());
    let (coll, mut stream) = written_and_watched(&server).await;

    let faults = {
        let server = server.clone();
        tokio::spawn(async move {
            for round in 1..=6u64 {
                let target = round * u64::from(N as u32) / 7;
                wait_until("inserts to progress", || {
                    server.command_count("insert") >= target
                })
                .await;
                server.drop_all_connections();
            }
        })
    };
    let writes = tokio::spawn(async move {
        for i in 0..N {
            coll.insert_one(doc! { "_id": i }).await.unwrap();
        }
    });

    let mut keys = Vec::new();
    while keys.len() < N as usize {
        keys.push(key_of(&next_event(&mut stream).await));
    }
    within("writer", writes).await.unwrap();
    within("faults", faults).await.unwrap();
    assert_no_more_events(&mut stream).await;
    assert_eq!(keys, (0..N).map(Bson::Int32).collect::<Vec<_>>());
    assert!(server.connections_accepted() > 6);
}
