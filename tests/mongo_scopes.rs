//! MongoDB scopes, filters and transactions, end to end: writes with the official driver,
//! reads with the real binary running headless. The server is the wire-protocol TestServer
//! (one per test), or a real replica set when `CDC_TEST_MONGO_URI` is set (each test then uses
//! databases of its own, and only their changes are looked at).

mod support;

use mongodb::bson::{Document, doc};
use serde_json::Value;
use support::mongo::Mongo;
use support::{Headless, assert_failed_at_once, changes_of, reason_of};

impl Mongo {
    /// A config with one change stream listener `app` on `table`, and its own extra keys.
    fn scope_config(&self, table: &str, extra: &str) -> String {
        format!(
            r#"
[pipeline]
chunk_size = 40
timeout_ms = 50

[[database]]
name = "docs"
kind = "mongodb"
url = "{uri}"

[[listener]]
identifier = "app"
database = "docs"
table = "{table}"
strategy = "change_stream"
{extra}
"#,
            uri = self.uri,
        )
    }

    async fn put(&self, db: &str, coll: &str, document: Document) {
        self.client
            .database(db)
            .collection::<Document>(coll)
            .insert_one(document)
            .await
            .expect("insert");
    }

    /// A second database of this test's.
    fn other_db(&self) -> String {
        format!("{}_other", self.db)
    }
}

/// `(table, _id)` of each change of `listener` whose table is in one of `databases`.
fn tables_and_ids(seen: &[Value], listener: &str, databases: &[&str]) -> Vec<(String, Value)> {
    changes_of(seen, listener)
        .into_iter()
        .filter(|change| {
            let table = change["table"].as_str().unwrap_or_default();
            databases.iter().any(|db| {
                table
                    .strip_prefix(db)
                    .is_some_and(|rest| rest.starts_with('.'))
            })
        })
        .map(|change| {
            (
                change["table"].as_str().unwrap().to_string(),
                change["key"]["_id"].clone(),
            )
        })
        .collect()
}

fn lines_of<'a>(seen: &'a [Value], kind: &str) -> Vec<&'a Value> {
    seen.iter().filter(|line| line["type"] == kind).collect()
}

/// `(table, change)` of each schema line.
fn schema_lines(seen: &[Value]) -> Vec<(String, String)> {
    lines_of(seen, "schema")
        .into_iter()
        .map(|line| {
            (
                line["table"].as_str().unwrap().to_string(),
                line["change"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_scope_takes_every_collection_and_outlives_drops_and_renames() {
    let mongo = Mongo::start("dbscope").await;
    let db = mongo.db.clone();
    let other = mongo.other_db();
    let config = mongo.scope_config(&format!("{db}.*"), &format!("exclude = [\"{db}.audit\"]"));
    let listener = format!("app/{db}.*");
    let mut cdc = Headless::start(&config).await;
    cdc.wait_for_state(&listener, "running").await;

    mongo.put(&db, "orders", doc! { "_id": 1 }).await;
    mongo.put(&db, "items", doc! { "_id": 2 }).await;
    mongo.put(&db, "audit", doc! { "_id": 3 }).await;
    mongo.put(&other, "leads", doc! { "_id": 4 }).await;
    mongo.put(&db, "orders", doc! { "_id": 5 }).await;
    cdc.wait_for_changes(&listener, 3).await;

    // Drop one collection and rename another: schema lines, and the listener goes on.
    mongo
        .client
        .database(&db)
        .collection::<Document>("items")
        .drop()
        .await
        .expect("drop items");
    mongo
        .client
        .database("admin")
        .run_command(doc! {
            "renameCollection": format!("{db}.orders"),
            "to": format!("{db}.orders_2025"),
        })
        .await
        .expect("rename orders");
    mongo.put(&db, "orders_2025", doc! { "_id": 6 }).await;
    mongo.put(&db, "payments", doc! { "_id": 7 }).await;
    cdc.wait_for_changes(&listener, 5).await;
    // The database dropped and written again: the stream is opened again after its end.
    mongo.client.database(&db).drop().await.expect("drop db");
    mongo.put(&db, "orders", doc! { "_id": 8 }).await;
    cdc.wait_for_changes(&listener, 6).await;

    assert_eq!(
        tables_and_ids(&cdc.seen, &listener, &[&db, &other]),
        [
            (format!("{db}.orders"), Value::from(1)),
            (format!("{db}.items"), Value::from(2)),
            (format!("{db}.orders"), Value::from(5)),
            (format!("{db}.orders_2025"), Value::from(6)),
            (format!("{db}.payments"), Value::from(7)),
            (format!("{db}.orders"), Value::from(8)),
        ],
        "excluded and other databases' collections are left out"
    );
    let mut schema = schema_lines(&cdc.seen);
    // The database's drop drops its collections first, in an order of the server's.
    let last = schema.len().saturating_sub(1);
    schema[2.min(last)..last].sort();
    assert_eq!(
        schema,
        [
            (format!("{db}.items"), "dropped".to_string()),
            (format!("{db}.orders"), "renamed".to_string()),
            (format!("{db}.orders_2025"), "dropped".to_string()),
            (format!("{db}.payments"), "dropped".to_string()),
            (format!("{db}.*"), "dropped".to_string()),
        ]
    );
    let renamed = lines_of(&cdc.seen, "schema")[1];
    assert_eq!(
        renamed["detail"],
        format!("renamed to {db}.orders_2025 (still watched)")
    );
    assert!(
        support::statuses(&cdc.seen, &listener)
            .iter()
            .all(|(state, _)| state == "starting" || state == "running"),
        "{:?}",
        support::statuses(&cdc.seen, &listener)
    );
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_scope_takes_every_database() {
    let mongo = Mongo::start("deployment").await;
    let (db, other) = (mongo.db.clone(), mongo.other_db());
    let config = mongo.scope_config("*", &format!("exclude = [\"{other}.secret\"]"));
    let listener = "app/*";
    let mut cdc = Headless::start(&config).await;
    cdc.wait_for_state(listener, "running").await;
    mongo.put(&db, "orders", doc! { "_id": 1 }).await;
    mongo.put(&other, "secret", doc! { "_id": 2 }).await;
    mongo.put(&other, "leads", doc! { "_id": 3 }).await;
    cdc.wait_for("both databases' changes", |seen| {
        tables_and_ids(seen, listener, &[&db, &other]).len() >= 2
    })
    .await;
    assert_eq!(
        tables_and_ids(&cdc.seen, listener, &[&db, &other]),
        [
            (format!("{db}.orders"), Value::from(1)),
            (format!("{other}.leads"), Value::from(3)),
        ]
    );
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_with_a_database_watches_that_database_without_a_config() {
    let mongo = Mongo::start("urlmode").await;
    let (db, other) = (mongo.db.clone(), mongo.other_db());
    // The database goes in the URL's path: mongodb://hosts/db?options.
    let rest = mongo
        .uri
        .strip_prefix("mongodb://")
        .expect("a mongodb:// URI");
    let (rest, options) = rest.split_once('?').unwrap_or((rest, ""));
    let hosts = rest.split('/').next().unwrap_or(rest);
    let url = format!("mongodb://{hosts}/{db}?{options}");
    let listener = format!("{db}/{db}.*");
    let mut cdc = Headless::start_with_args(&["--headless", &url]).await;
    cdc.wait_for_state(&listener, "running").await;
    mongo.put(&other, "orders", doc! { "_id": 1 }).await;
    mongo.put(&db, "orders", doc! { "_id": 2 }).await;
    mongo.put(&db, "customers", doc! { "_id": 3 }).await;
    cdc.wait_for_changes(&listener, 2).await;
    assert_eq!(
        tables_and_ids(&cdc.seen, &listener, &[&db, &other]),
        [
            (format!("{db}.orders"), Value::from(2)),
            (format!("{db}.customers"), Value::from(3)),
        ]
    );
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_runs_as_the_streams_match_and_drops_what_it_should() {
    let mongo = Mongo::start("filter").await;
    let db = mongo.db.clone();
    let config = mongo.scope_config(
        &format!("{db}.*"),
        r#"filter = '{"$or": [{"fullDocument.status": "paid"}, {"operationType": "delete"}]}'"#,
    );
    let listener = format!("app/{db}.*");
    let mut cdc = Headless::start(&config).await;
    cdc.wait_for_state(&listener, "running").await;
    let aggregates = mongo.server.as_ref().map(|s| s.command_count("aggregate"));
    mongo
        .put(&db, "orders", doc! { "_id": 1, "status": "draft" })
        .await;
    mongo
        .put(&db, "orders", doc! { "_id": 2, "status": "paid" })
        .await;
    mongo
        .put(&db, "items", doc! { "_id": 3, "status": "paid" })
        .await;
    mongo
        .client
        .database(&db)
        .collection::<Document>("orders")
        .delete_one(doc! { "_id": 1 })
        .await
        .expect("delete");
    // A drop is seen whatever the filter says.
    mongo
        .client
        .database(&db)
        .collection::<Document>("items")
        .drop()
        .await
        .expect("drop");
    mongo
        .put(&db, "orders", doc! { "_id": 4, "status": "paid" })
        .await;
    cdc.wait_for_changes(&listener, 4).await;
    let changes: Vec<(String, String, Value)> = changes_of(&cdc.seen, &listener)
        .iter()
        .map(|c| {
            (
                c["table"].as_str().unwrap().to_string(),
                c["op"].as_str().unwrap().to_string(),
                c["key"]["_id"].clone(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (format!("{db}.orders"), "insert".into(), Value::from(2)),
            (format!("{db}.items"), "insert".into(), Value::from(3)),
            (format!("{db}.orders"), "delete".into(), Value::from(1)),
            (format!("{db}.orders"), "insert".into(), Value::from(4)),
        ]
    );
    assert_eq!(
        schema_lines(&cdc.seen),
        [(format!("{db}.items"), "dropped".to_string())]
    );
    if let (Some(server), Some(before)) = (&mongo.server, aggregates) {
        assert_eq!(
            server.command_count("aggregate"),
            before,
            "one stream, opened once"
        );
    }
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactions_changes_share_tx_and_are_followed_by_one_transaction_line() {
    let mongo = Mongo::start("transaction").await;
    let db = mongo.db.clone();
    // A real server creates no collection inside a transaction before 4.4: make them first.
    mongo
        .put(&db, "customers", doc! { "_id": 7, "orders": 0 })
        .await;
    mongo.put(&db, "items", doc! { "_id": "seed" }).await;
    let config = mongo.scope_config(&format!("{db}.*"), "");
    let listener = format!("app/{db}.*");
    let mut cdc = Headless::start(&config).await;
    cdc.wait_for_state(&listener, "running").await;

    let shop = mongo.client.database(&db);
    let mut session = mongo.client.start_session().await.expect("session");
    session.start_transaction().await.expect("start");
    shop.collection::<Document>("orders")
        .insert_one(doc! { "_id": 1, "customer": 7 })
        .session(&mut session)
        .await
        .expect("insert order");
    shop.collection::<Document>("items")
        .insert_many([doc! { "_id": 10 }, doc! { "_id": 11 }])
        .session(&mut session)
        .await
        .expect("insert items");
    shop.collection::<Document>("customers")
        .update_one(doc! { "_id": 7 }, doc! { "$inc": { "orders": 1 } })
        .session(&mut session)
        .await
        .expect("update customer");
    session.commit_transaction().await.expect("commit");
    // A single write right after: its own change, no tx, not delayed by the transaction.
    mongo.put(&db, "orders", doc! { "_id": 2 }).await;
    cdc.wait_for_changes(&listener, 5).await;
    cdc.wait_for("the transaction line", |seen| {
        !lines_of(seen, "transaction").is_empty()
    })
    .await;

    let changes = changes_of(&cdc.seen, &listener);
    let in_tx = &changes[..4];
    let tx_id = in_tx[0]["tx"]["id"].clone();
    assert!(tx_id.is_string(), "{:?}", in_tx[0]);
    for (index, change) in in_tx.iter().enumerate() {
        assert_eq!(change["tx"]["id"], tx_id, "{change:?}");
        assert_eq!(change["tx"]["index"], index + 1, "{change:?}");
        assert_eq!(change["tx"]["position"], in_tx[0]["position"], "{change:?}");
    }
    assert!(
        changes[4].get("tx").is_none_or(Value::is_null),
        "a single write has no tx: {:?}",
        changes[4]
    );
    let transactions = lines_of(&cdc.seen, "transaction");
    assert_eq!(transactions.len(), 1, "{transactions:?}");
    let line = transactions[0];
    assert_eq!(line["id"], tx_id);
    assert_eq!(line["changes"], 4);
    assert_eq!(line["position"], in_tx[0]["position"]);
    assert_eq!(
        line["tables"],
        serde_json::json!([
            format!("{db}.orders"),
            format!("{db}.items"),
            format!("{db}.customers")
        ])
    );
    // In place: after the transaction's last change, before the next write's.
    let at = |wanted: &Value| cdc.seen.iter().position(|line| line == wanted).unwrap();
    assert!(at(in_tx[3]) < at(line) && at(line) < at(changes[4]));

    // A transaction with nothing after it still gets its line once the stream is quiet.
    session.start_transaction().await.expect("start the last");
    shop.collection::<Document>("orders")
        .insert_one(doc! { "_id": 3 })
        .session(&mut session)
        .await
        .expect("insert in the last");
    shop.collection::<Document>("orders")
        .delete_one(doc! { "_id": 2 })
        .session(&mut session)
        .await
        .expect("delete in the last");
    session.commit_transaction().await.expect("commit the last");
    cdc.wait_for("the last transaction's line", |seen| {
        lines_of(seen, "transaction").len() == 2
    })
    .await;
    let last = lines_of(&cdc.seen, "transaction")[1].clone();
    assert_eq!(last["changes"], 2);
    assert_ne!(last["id"], tx_id, "another txnNumber of the same session");
    let changes = changes_of(&cdc.seen, &listener);
    assert_eq!(changes.len(), 7);
    assert_eq!(
        (
            changes[5]["tx"]["index"].clone(),
            changes[6]["tx"]["index"].clone()
        ),
        (Value::from(1), Value::from(2))
    );
    assert_eq!(changes[6]["tx"]["id"], last["id"]);
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_the_server_rejects_fails_the_listener_with_its_words() {
    let mongo = Mongo::start("badfilter").await;
    let db = mongo.db.clone();
    let config = mongo.scope_config(
        &format!("{db}.*"),
        r#"filter = '{"fullDocument.qty": {"$frobnicate": 1}}'"#,
    );
    let listener = format!("app/{db}.*");
    let mut cdc = Headless::start(&config).await;
    cdc.wait_for_state(&listener, "failed").await;
    assert_failed_at_once(&cdc.seen, &listener);
    let reason = reason_of(&cdc.seen, &listener, "failed");
    assert!(
        reason.contains("$frobnicate")
            && reason.ends_with(
                "check the listener's filter (the server runs it as the change stream's $match)"
            ),
        "{reason}"
    );
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}

/// The position saved in the state dir (token and time, as the listener spells it).
fn saved_position(cdc: &Headless) -> Option<String> {
    let entries = std::fs::read_dir(cdc.path().join(".cdc-tui")).ok()?;
    // The .json file only: a .tmp beside it is a save not yet in place.
    entries.flatten().find_map(|entry| {
        if entry.path().extension().is_none_or(|e| e != "json") {
            return None;
        }
        let text = std::fs::read_to_string(entry.path()).ok()?;
        let saved: Value = serde_json::from_str(&text).ok()?;
        saved["position"].as_str().map(str::to_string)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_scope_resumes_after_a_kill_losing_and_repeating_nothing() {
    let mongo = Mongo::start("dbresume").await;
    let db = mongo.db.clone();
    let listener = format!("app/{db}.*");
    let mut cdc = Headless::start(&mongo.scope_config(&format!("{db}.*"), "")).await;
    cdc.wait_for_state(&listener, "running").await;
    mongo.put(&db, "orders", doc! { "_id": 1 }).await;
    mongo.put(&db, "items", doc! { "_id": 2 }).await;
    cdc.wait_for_changes(&listener, 2).await;
    let last = cdc.changes().last().unwrap()["position"]
        .as_str()
        .unwrap()
        .to_string();
    support::wait_until("the last change's position saved", || {
        saved_position(&cdc).is_some_and(|saved| saved.starts_with(&last))
    })
    .await;
    let dir = cdc.kill().await;

    // Written while it is down, to both collections.
    mongo.put(&db, "items", doc! { "_id": 3 }).await;
    mongo.put(&db, "orders", doc! { "_id": 4 }).await;
    let mut cdc = Headless::start_in(dir).await;
    cdc.wait_for_changes(&listener, 2).await;
    mongo.put(&db, "orders", doc! { "_id": 5 }).await;
    cdc.wait_for_changes(&listener, 3).await;
    assert_eq!(
        tables_and_ids(&cdc.seen, &listener, &[&db]),
        [
            (format!("{db}.items"), Value::from(3)),
            (format!("{db}.orders"), Value::from(4)),
            (format!("{db}.orders"), Value::from(5)),
        ]
    );
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}
