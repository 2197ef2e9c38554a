//! Database and deployment change streams, `$match` after `$changeStream`, renames and
//! dropped databases, and multi-document transactions, through the official driver, as
//! MongoDB's documentation describes them (change events, `invalidate` rules, `lsid` and
//! `txnNumber` on the events of a transaction).

mod common;

use futures_util::StreamExt;
use mongo_test_server::TestServer;
use mongodb::bson::{Document, doc};
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType};
use mongodb::{Client, Collection};

use common::within;

type Events = ChangeStream<ChangeStreamEvent<Document>>;

async fn client(server: &TestServer) -> Client {
    within("client", Client::with_uri_str(server.uri()))
        .await
        .expect("client options")
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

/// `db.coll` of an event (`db` alone for a dropDatabase).
fn namespace(event: &ChangeStreamEvent<Document>) -> String {
    let ns = event.ns.as_ref().expect("ns");
    match &ns.coll {
        Some(coll) => format!("{}.{coll}", ns.db),
        None => ns.db.clone(),
    }
}

async fn insert(client: &Client, db: &str, coll: &str, document: Document) {
    within(
        "insert",
        client
            .database(db)
            .collection::<Document>(coll)
            .insert_one(document),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_and_deployment_streams_see_their_collections() {
    let server = TestServer::start().await.unwrap();
    let client = client(&server).await;
    let mut shop = within("db.watch", client.database("shop").watch())
        .await
        .unwrap();
    let mut all = within("client.watch", client.watch()).await.unwrap();
    insert(&client, "shop", "orders", doc! { "_id": 1 }).await;
    insert(&client, "shop", "customers", doc! { "_id": 2 }).await;
    insert(&client, "crm", "leads", doc! { "_id": 3 }).await;
    // Internal databases are never part of a deployment stream.
    insert(&client, "admin", "notes", doc! { "_id": 4 }).await;
    insert(&client, "shop", "orders", doc! { "_id": 5 }).await;

    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(namespace(&next_event(&mut shop).await));
    }
    assert_eq!(seen, ["shop.orders", "shop.customers", "shop.orders"]);
    assert_no_more_events(&mut shop).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(namespace(&next_event(&mut all).await));
    }
    assert_eq!(
        seen,
        ["shop.orders", "shop.customers", "crm.leads", "shop.orders"]
    );
    assert_no_more_events(&mut all).await;

    // No stream of its own on an internal database, nor a deployment stream off admin.
    let refused = within("admin.watch", client.database("admin").watch()).await;
    assert!(refused.is_err(), "{refused:?}");
    let refused = within(
        "allChangesForCluster off admin",
        client.database("shop").run_command(doc! {
            "aggregate": 1,
            "pipeline": [{ "$changeStream": { "allChangesForCluster": true } }],
            "cursor": {},
        }),
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_stages_filter_on_namespace_operation_and_document() {
    let server = TestServer::start().await.unwrap();
    let client = client(&server).await;
    let filtered = |pipeline: Vec<Document>| {
        let client = client.clone();
        async move {
            within("watch", client.watch().pipeline(pipeline))
                .await
                .unwrap()
        }
    };
    let mut by_ns = filtered(vec![doc! { "$match": {
        "ns.db": "shop", "ns.coll": { "$in": ["orders", "items"] },
    } }])
    .await;
    let mut by_op = filtered(vec![doc! { "$match": { "operationType": "delete" } }]).await;
    let mut by_doc = filtered(vec![doc! { "$match": { "fullDocument.status": "paid" } }]).await;
    let mut excluded = filtered(vec![doc! { "$match": {
        "$nor": [{ "ns.db": "shop", "ns.coll": "audit" }],
    } }])
    .await;

    // A $match the server cannot run is refused when the stream is opened.
    let refused = within(
        "a bad $match",
        client
            .watch()
            .pipeline([doc! { "$match": { "ns.db": "x", "n": { "$frobnicate": 1 } } }]),
    )
    .await;
    match refused.map(|_| ()).map_err(|error| *error.kind) {
        Err(mongodb::error::ErrorKind::Command(command)) => assert_eq!(command.code, 2),
        other => panic!("{other:?}"),
    }

    insert(
        &client,
        "shop",
        "orders",
        doc! { "_id": 1, "status": "draft" },
    )
    .await;
    insert(
        &client,
        "shop",
        "audit",
        doc! { "_id": 2, "status": "paid" },
    )
    .await;
    insert(&client, "shop", "items", doc! { "_id": 3 }).await;
    insert(&client, "crm", "orders", doc! { "_id": 4 }).await;
    within(
        "delete",
        client
            .database("shop")
            .collection::<Document>("orders")
            .delete_one(doc! { "_id": 1 }),
    )
    .await
    .unwrap();

    let ids = |events: &[ChangeStreamEvent<Document>]| -> Vec<String> {
        events
            .iter()
            .map(|event| {
                format!(
                    "{} {}",
                    namespace(event),
                    event.document_key.as_ref().unwrap().get("_id").unwrap()
                )
            })
            .collect()
    };
    let take = async |stream: &mut Events, n: usize| {
        let mut events = Vec::new();
        for _ in 0..n {
            events.push(next_event(stream).await);
        }
        assert_no_more_events(stream).await;
        events
    };
    assert_eq!(
        ids(&take(&mut by_ns, 3).await),
        ["shop.orders 1", "shop.items 3", "shop.orders 1"]
    );
    let deletes = take(&mut by_op, 1).await;
    assert_eq!(deletes[0].operation_type, OperationType::Delete);
    assert_eq!(ids(&take(&mut by_doc, 1).await), ["shop.audit 2"]);
    assert_eq!(
        ids(&take(&mut excluded, 4).await),
        [
            "shop.orders 1",
            "shop.items 3",
            "crm.orders 4",
            "shop.orders 1"
        ]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_and_dropped_databases_invalidate_only_the_streams_they_end() {
    let server = TestServer::start().await.unwrap();
    let client = client(&server).await;
    insert(&client, "shop", "orders", doc! { "_id": 1 }).await;
    insert(&client, "shop", "items", doc! { "_id": 2 }).await;
    let orders: Collection<Document> = client.database("shop").collection("orders");
    let mut on_orders = within("watch orders", orders.watch()).await.unwrap();
    let mut on_shop = within("watch shop", client.database("shop").watch())
        .await
        .unwrap();
    let mut on_all = within("watch all", client.watch()).await.unwrap();

    within(
        "rename",
        client.database("admin").run_command(doc! {
            "renameCollection": "shop.orders", "to": "shop.old_orders",
        }),
    )
    .await
    .unwrap();
    // Renaming onto an existing collection needs dropTarget.
    let refused = within(
        "rename onto items",
        client.database("admin").run_command(doc! {
            "renameCollection": "shop.old_orders", "to": "shop.items",
        }),
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
    within("drop shop", client.database("shop").drop())
        .await
        .unwrap();
    insert(&client, "shop", "orders", doc! { "_id": 3 }).await;

    let rename = next_event(&mut on_orders).await;
    assert_eq!(rename.operation_type, OperationType::Rename);
    assert_eq!(namespace(&rename), "shop.orders");
    let to = rename.to.as_ref().unwrap();
    assert_eq!(
        (to.db.as_str(), to.coll.as_deref()),
        ("shop", Some("old_orders"))
    );
    let invalidate = next_event(&mut on_orders).await;
    assert_eq!(invalidate.operation_type, OperationType::Invalidate);
    assert!(within("end", on_orders.next()).await.is_none());

    let ops = async |stream: &mut Events, n: usize| {
        let mut ops = Vec::new();
        for _ in 0..n {
            let event = next_event(stream).await;
            ops.push(match event.ns {
                Some(_) => format!("{:?} {}", event.operation_type, namespace(&event)),
                None => format!("{:?}", event.operation_type),
            });
        }
        ops
    };
    // A database stream: the rename, each collection's drop, the database's, then invalidated.
    let mut shop_ops = ops(&mut on_shop, 5).await;
    shop_ops[1..3].sort();
    assert_eq!(
        shop_ops,
        [
            "Rename shop.orders",
            "Drop shop.items",
            "Drop shop.old_orders",
            "DropDatabase shop",
            "Invalidate"
        ]
    );
    assert!(within("end", on_shop.next()).await.is_none());
    // A new stream can start after the invalidate (not resume from it).
    let after = on_shop.resume_token().unwrap();
    let refused = within(
        "resumeAfter an invalidate",
        client.database("shop").watch().resume_after(after.clone()),
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
    let mut again = within(
        "startAfter the invalidate",
        client.database("shop").watch().start_after(after),
    )
    .await
    .unwrap();
    assert_eq!(namespace(&next_event(&mut again).await), "shop.orders");

    // The deployment stream is never invalidated by these.
    let mut all_ops = ops(&mut on_all, 5).await;
    all_ops[1..3].sort();
    assert_eq!(
        all_ops,
        [
            "Rename shop.orders",
            "Drop shop.items",
            "Drop shop.old_orders",
            "DropDatabase shop",
            "Insert shop.orders"
        ]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_give_their_events_lsid_and_txn_number_at_commit() {
    let server = TestServer::start().await.unwrap();
    let client = client(&server).await;
    insert(&client, "shop", "customers", doc! { "_id": 7, "orders": 0 }).await;
    let mut stream = within("watch", client.watch()).await.unwrap();
    let shop = client.database("shop");
    let orders: Collection<Document> = shop.collection("orders");
    let customers: Collection<Document> = shop.collection("customers");

    let mut session = within("session", client.start_session()).await.unwrap();
    within("start", session.start_transaction()).await.unwrap();
    within(
        "insert in tx",
        orders
            .insert_one(doc! { "_id": 1, "customer": 7 })
            .session(&mut session),
    )
    .await
    .unwrap();
    within(
        "update in tx",
        customers
            .update_one(doc! { "_id": 7 }, doc! { "$inc": { "orders": 1 } })
            .session(&mut session),
    )
    .await
    .unwrap();
    // The transaction's writes are not in the stream before the commit.
    insert(&client, "shop", "log", doc! { "_id": "single" }).await;
    let single = next_event(&mut stream).await;
    assert_eq!(namespace(&single), "shop.log");
    assert_eq!((single.lsid.as_ref(), single.txn_number), (None, None));
    within("commit", session.commit_transaction())
        .await
        .unwrap();

    let first = next_event(&mut stream).await;
    let second = next_event(&mut stream).await;
    assert_eq!(
        (namespace(&first), first.operation_type),
        ("shop.orders".to_string(), OperationType::Insert)
    );
    assert_eq!(
        (namespace(&second), second.operation_type),
        ("shop.customers".to_string(), OperationType::Update)
    );
    let lsid = first.lsid.clone().expect("lsid on a transaction's event");
    assert_eq!(lsid.get("id"), session.id().get("id"));
    assert!(lsid.contains_key("uid"));
    assert!(first.txn_number.is_some());
    assert_eq!(
        (second.lsid.as_ref(), second.txn_number),
        (Some(&lsid), first.txn_number)
    );
    assert_eq!(first.cluster_time, second.cluster_time, "one commit time");

    // An aborted transaction leaves no events and no data.
    within("start again", session.start_transaction())
        .await
        .unwrap();
    within(
        "insert in the aborted tx",
        orders.insert_one(doc! { "_id": 2 }).session(&mut session),
    )
    .await
    .unwrap();
    within("abort", session.abort_transaction()).await.unwrap();
    assert_eq!(
        within("count", orders.count_documents(doc! {}))
            .await
            .unwrap(),
        1
    );
    // A later transaction on the session has the next txnNumber.
    within("third", session.start_transaction()).await.unwrap();
    within(
        "insert in the third tx",
        orders.insert_one(doc! { "_id": 3 }).session(&mut session),
    )
    .await
    .unwrap();
    within("commit third", session.commit_transaction())
        .await
        .unwrap();
    let third = next_event(&mut stream).await;
    assert_eq!(third.document_key, Some(doc! { "_id": 3 }));
    assert!(third.txn_number > first.txn_number);
    assert_no_more_events(&mut stream).await;
    server.shutdown().await;
}

/// The same behaviour through pymongo (`tests/pymongo_scopes.py`), when `MONGO_TEST_PYTHON`
/// names a Python that has it (`python3 -m venv v && v/bin/pip install pymongo`); skipped,
/// saying so, otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo_sees_the_same_streams_and_transactions() {
    let Ok(python) = std::env::var("MONGO_TEST_PYTHON") else {
        eprintln!("skipped: set MONGO_TEST_PYTHON to a python3 with pymongo to run it");
        return;
    };
    let server = TestServer::start().await.unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pymongo_scopes.py");
    let (uri, script) = (server.uri(), script.to_string());
    let output = within(
        "pymongo",
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(python)
                .arg(script)
                .arg(uri)
                .output()
        }),
    )
    .await
    .expect("the python task")
    .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("OK"),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    server.shutdown().await;
}
