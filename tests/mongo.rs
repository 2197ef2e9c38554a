//! What only change streams do, end to end: writes with the official driver, reads with the
//! real binary running headless. The server under test is the wire-protocol TestServer (one
//! per test), or a real replica set when `CDC_TEST_MONGO_URI` is set (each test then uses its
//! own database; the fault-injection tests need TestServer and are skipped there). What every
//! source does (exact changes, pause, restart, a server down, kill -9, a bad collection) is the
//! contract suite's (`tests/contract.rs`, `change_stream::*`).

mod support;

use cdc_tui::secret::DatabaseUrl;
use mongodb::bson::{Document, doc};
use serde_json::Value;
use support::mongo::Mongo;
use support::{
    Headless, assert_batches_account_for_changes, assert_failed_at_once, changes_with_op,
    reason_of, statuses,
};

impl Mongo {
    fn listener(&self) -> String {
        format!("orders/{}", self.table())
    }

    fn config(&self) -> String {
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
identifier = "orders"
database = "docs"
table = "{table}"
strategy = "change_stream"
"#,
            uri = self.uri,
            table = self.table()
        )
    }

    /// The binary running headless on [`Mongo::config`], once its listener runs.
    async fn watch(&self) -> Headless {
        let mut cdc = Headless::start(&self.config()).await;
        cdc.wait_for_state(&self.listener(), "running").await;
        cdc
    }

    async fn insert(&self, ids: impl IntoIterator<Item = i32>) {
        for id in ids {
            self.orders()
                .insert_one(doc! {
                    "_id": id,
                    "item": format!("item {id}"),
                    "qty": id,
                    "price": 2.5,
                    "tags": ["a", "b"],
                    "note": "fragile",
                })
                .await
                .expect("insert");
        }
    }
}

fn ids_of(changes: &[&Value]) -> Vec<i64> {
    changes
        .iter()
        .map(|c| c["key"]["_id"].as_i64().expect("integer _id"))
        .collect()
}

/// Fails if `listener` ever went `retrying` or `failed`: it got over a lost history without
/// a retry loop.
fn assert_no_retry_loop(seen: &[Value], listener: &str) {
    assert!(
        statuses(seen, listener)
            .iter()
            .all(|(state, _)| state != "retrying" && state != "failed"),
        "no retry loop: {:?}",
        statuses(seen, listener)
    );
}

/// The position saved in the state dir (token and time, as the listener spells it).
fn saved_position(cdc: &Headless) -> Option<String> {
    let entries = std::fs::read_dir(cdc.path().join(".cdc-tui")).ok()?;
    for entry in entries.flatten() {
        if entry.path().extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(entry.path()).ok()?;
            let saved: Value = serde_json::from_str(&text).ok()?;
            return saved["position"].as_str().map(str::to_string);
        }
    }
    None
}

/// Waits until the position of the last change printed is saved (so a kill loses nothing
/// and repeats nothing).
async fn wait_for_saved_last_change(cdc: &Headless) {
    let last = cdc.changes().last().expect("a change")["position"]
        .as_str()
        .expect("position")
        .to_string();
    support::wait_until("the last change's position saved", || {
        saved_position(cdc).is_some_and(|saved| saved.starts_with(&last))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_resume_token_restarts_from_now_and_reports_the_gap() {
    let mongo = Mongo::start("history").await;
    let Some(server) =
        mongo.test_server("a_lost_resume_token_restarts_from_now_and_reports_the_gap")
    else {
        return;
    };
    let listener = mongo.listener();
    let mut cdc = mongo.watch().await;
    mongo.insert(1..=5).await;
    cdc.wait_for_ops("5 inserts", &[("insert", 5)]).await;
    wait_for_saved_last_change(&cdc).await;
    let last_commit_time = cdc.changes().last().unwrap()["commit_time"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = cdc.kill().await;

    // Made while down, then gone from the server's history.
    mongo.insert(6..=12).await;
    server.forget_history();
    let aggregates_before = server.command_count("aggregate");
    let mut cdc = Headless::start_in(dir).await;
    cdc.wait_for("the gap reported", |seen| {
        statuses(seen, &listener).iter().any(|(state, reason)| {
            state == "running" && reason.contains("resume token no longer in the oplog")
        })
    })
    .await;
    let (_, reason) = statuses(&cdc.seen, &listener)
        .into_iter()
        .find(|(_, reason)| !reason.is_empty())
        .unwrap();
    eprintln!("the gap: {reason}");
    assert!(
        reason.contains(&format!("changes between {last_commit_time} and now"))
            && reason.contains("were not captured"),
        "the gap starts at the last saved change: {reason}"
    );

    // It continues from now.
    mongo.insert(13..=15).await;
    cdc.wait_for_ops("the inserts after the gap", &[("insert", 3)])
        .await;
    assert_eq!(ids_of(&changes_with_op(&cdc.seen, "insert")), [13, 14, 15]);
    assert_no_retry_loop(&cdc.seen, &listener);
    assert!(
        server.command_count("aggregate") - aggregates_before <= 2,
        "one failed resume, one start from now"
    );

    // The new position is saved: the next restart resumes without a gap.
    wait_for_saved_last_change(&cdc).await;
    let dir = cdc.kill().await;
    mongo.insert([16]).await;
    let mut cdc = Headless::start_in(dir).await;
    cdc.wait_for_ops("the insert made while down again", &[("insert", 1)])
        .await;
    assert_eq!(ids_of(&changes_with_op(&cdc.seen, "insert")), [16]);
    assert!(
        statuses(&cdc.seen, &listener)
            .iter()
            .all(|(_, reason)| reason.is_empty()),
        "no gap this time: {:?}",
        statuses(&cdc.seen, &listener)
    );
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_stream_whose_history_is_lost_continues_from_now() {
    let mongo = Mongo::start("behind").await;
    let Some(server) =
        mongo.test_server("a_paused_stream_whose_history_is_lost_continues_from_now")
    else {
        return;
    };
    let listener = mongo.listener();
    let mut cdc = mongo.watch().await;
    cdc.send_command(&format!("pause {listener}")).await;
    cdc.wait_for_state(&listener, "paused").await;
    // The paused listener reads a few of these ahead and then stops reading: its cursor
    // stays behind the rest, which the server then forgets.
    mongo.insert(1..=200).await;
    server.forget_history();
    cdc.send_command(&format!("resume {listener}")).await;
    cdc.wait_for("the gap reported", |seen| {
        statuses(seen, &listener)
            .iter()
            .any(|(_, reason)| reason.contains("resume token no longer in the oplog"))
    })
    .await;
    mongo.insert(201..=205).await;
    cdc.wait_for("the inserts after the gap", |seen| {
        seen.iter()
            .any(|l| l["type"] == "change" && l["key"]["_id"] == 205)
    })
    .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    let ids = ids_of(&changes_with_op(&cdc.seen, "insert"));
    let read_ahead = ids.len() - 5;
    eprintln!("read ahead while paused, before the gap: {read_ahead}");
    assert!(read_ahead < 200, "some changes were lost: {ids:?}");
    let expected: Vec<i64> = (1..=read_ahead as i64).chain(201..=205).collect();
    assert_eq!(
        ids, expected,
        "what was read before the gap, then what came after"
    );
    assert_no_retry_loop(&cdc.seen, &listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_lose_nothing_and_repeat_nothing() {
    let mongo = Mongo::start("drops").await;
    let Some(server) = mongo.test_server("dropped_connections_lose_nothing_and_repeat_nothing")
    else {
        return;
    };
    let mut cdc = mongo.watch().await;
    mongo.insert(1..=30).await;
    cdc.wait_for_ops("30 inserts", &[("insert", 30)]).await;

    // Once while the listener waits in a getMore, once in the middle of a write burst.
    support::wait_until("the listener waiting for events", || {
        server.waiting_change_streams() > 0
    })
    .await;
    let aggregates_before = server.command_count("aggregate");
    server.drop_all_connections();
    mongo.insert(31..=60).await;
    server.drop_all_connections();
    mongo.insert(61..=90).await;
    cdc.wait_for_ops("90 inserts", &[("insert", 90)]).await;
    mongo.insert([91]).await;
    cdc.wait_for_ops("a last insert", &[("insert", 91)]).await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    assert_eq!(
        ids_of(&changes_with_op(&cdc.seen, "insert")),
        (1..=91).collect::<Vec<_>>(),
        "each change exactly once, in order"
    );
    assert_batches_account_for_changes(&cdc.seen, 40);
    assert!(
        server.command_count("aggregate") > aggregates_before,
        "the change stream was cut and resumed"
    );
}

/// Inserts `id` until the server has it: a write cut off by a dropped connection may or may
/// not have happened, and a duplicate key says it did.
async fn insert_surely(orders: &mongodb::Collection<Document>, id: i32) {
    let deadline = tokio::time::Instant::now() + support::DEADLINE;
    loop {
        match orders.insert_one(doc! { "_id": id }).await {
            Ok(_) => return,
            Err(error)
                if error.to_string().contains("E11000") || error.to_string().contains("11000") =>
            {
                return;
            }
            Err(error) => assert!(
                tokio::time::Instant::now() < deadline,
                "insert {id}: {error}"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_dropped_connections_loses_nothing_and_repeats_nothing() {
    let mongo = Mongo::start("storm").await;
    let Some(server) =
        mongo.test_server("a_storm_of_dropped_connections_loses_nothing_and_repeats_nothing")
    else {
        return;
    };
    let listener = mongo.listener();
    let mut cdc = mongo.watch().await;

    // Every connection cut after each of 60 writes, while the listener reads the one before:
    // the driver's own resume fails too, so the listener reconnects from what it last handed
    // on, many times over.
    let orders = mongo.orders();
    let mut cuts = 0;
    for id in 1..=60 {
        insert_surely(&orders, id).await;
        server.drop_all_connections();
        cuts += 1;
    }
    mongo.insert(61..=70).await;
    cdc.wait_for_ops("70 inserts", &[("insert", 70)]).await;
    // A last one after the listener is running again, to catch any late duplicate.
    cdc.wait_for_state(&listener, "running").await;
    mongo.insert([71]).await;
    cdc.wait_for("the last insert", |seen| {
        seen.iter()
            .any(|l| l["type"] == "change" && l["key"]["_id"] == 71)
    })
    .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    assert_eq!(
        ids_of(&changes_with_op(&cdc.seen, "insert")),
        (1..=71).collect::<Vec<_>>(),
        "each change exactly once, in order; states: {:?}",
        statuses(&cdc.seen, &listener)
    );
    eprintln!(
        "storm: {cuts} cuts, states {:?}",
        statuses(&cdc.seen, &listener)
            .iter()
            .map(|(state, _)| state.as_str())
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_server_fails_with_the_replica_set_advice() {
    let mongo = Mongo::start("standalone").await;
    let Some(server) = mongo.test_server("a_standalone_server_fails_with_the_replica_set_advice")
    else {
        return;
    };
    server.set_standalone(true);
    let listener = mongo.listener();
    let mut cdc = Headless::start(&mongo.config()).await;
    cdc.wait_for_state(&listener, "failed").await;
    let reason = reason_of(&cdc.seen, &listener, "failed");
    eprintln!("failed: {reason}");
    assert!(
        reason.contains("change streams need a replica set")
            && reason.contains("--replSet")
            && reason.contains("rs.initiate()")
            && reason.contains("40573"),
        "{reason}"
    );
    assert_failed_at_once(&cdc.seen, &listener);
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_collection_fails_the_listener() {
    let mongo = Mongo::start("dropped").await;
    let listener = mongo.listener();
    let mut cdc = mongo.watch().await;
    mongo.insert(1..=3).await;
    cdc.wait_for_ops("3 inserts", &[("insert", 3)]).await;

    mongo.orders().drop().await.expect("drop the collection");
    cdc.wait_for_state(&listener, "failed").await;
    assert_eq!(
        reason_of(&cdc.seen, &listener, "failed"),
        format!(
            "the collection {} was dropped: the change stream ended",
            mongo.table()
        )
    );
    assert_eq!(cdc.changes().len(), 3, "a drop is not a change");
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_of_every_user_database_are_listed() {
    let mongo = Mongo::start("list").await;
    let other = format!("{}_other", mongo.db);
    mongo.insert([1]).await;
    mongo
        .client
        .database(&mongo.db)
        .collection::<Document>("items")
        .insert_one(doc! { "_id": 1 })
        .await
        .unwrap();
    mongo
        .client
        .database(&other)
        .collection::<Document>("stock")
        .insert_one(doc! { "_id": 1 })
        .await
        .unwrap();
    let listed = cdc_tui::source::mongo::list_collections(&DatabaseUrl::new(mongo.uri.clone()))
        .await
        .expect("list collections");
    for expected in [
        format!("{}.items", mongo.db),
        format!("{}.orders", mongo.db),
        format!("{other}.stock"),
    ] {
        assert!(listed.contains(&expected), "{expected} in {listed:?}");
    }
    assert!(
        listed.iter().all(|name| !name.starts_with("admin.")
            && !name.starts_with("local.")
            && !name.starts_with("config.")
            && !name.contains(".system.")),
        "{listed:?}"
    );
}
