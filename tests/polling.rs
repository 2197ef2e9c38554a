//! The polling listener end to end: the real binary, headless, against a throwaway cluster.

mod support;

use serde_json::{Value, json};
use support::{Headless, TestDb, assert_batches_account_for_changes, changes_with_op};

const SCHEMA: &str = r#"
CREATE SCHEMA "Shop";
CREATE TABLE "Shop"."Order Items" (
    order_id   int NOT NULL,
    line       int NOT NULL,
    product    text NOT NULL,
    qty        int NOT NULL,
    price      numeric(10,2) NOT NULL,
    meta       jsonb,
    gift       boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (order_id, line)
);
"#;

fn config(db: &TestDb, chunk_size: usize) -> String {
    format!(
        r#"
[pipeline]
chunk_size = {chunk_size}
timeout_ms = 50

[[database]]
name = "shop"
kind = "postgres"
url = "{url}"

[[listener]]
identifier = "items"
database = "shop"
table = '"Shop"."Order Items"'
strategy = "polling"
cursor_column = "updated_at"
interval_ms = 100
"#,
        url = db.url
    )
}

const LISTENER: &str = "items/\"Shop\".\"Order Items\"";

#[tokio::test]
async fn headless_polling_prints_exactly_the_changes_made() {
    let db = TestDb::new("polling_exact").await;
    let client = db.client().await;
    client.batch_execute(SCHEMA).await.unwrap();
    client
        .batch_execute(
            r#"INSERT INTO "Shop"."Order Items" (order_id, line, product, qty, price)
               VALUES (1, 1, 'existing', 1, 1.00)"#,
        )
        .await
        .unwrap();

    let mut cdc = Headless::start(&config(&db, 7)).await;
    cdc.wait_for_state(LISTENER, "running").await;

    for n in 1..=20 {
        client
            .execute(
                r#"INSERT INTO "Shop"."Order Items" (order_id, line, product, qty, price, meta, gift)
                   VALUES (100, $1, 'widget', $1, 12.50, '{"colour": "red", "tags": [1, 2]}', $1 % 2 = 0)"#,
                &[&n],
            )
            .await
            .unwrap();
    }
    cdc.wait_for_ops("20 inserts", &[("insert", 20)]).await;
    client
        .batch_execute(
            r#"UPDATE "Shop"."Order Items" SET qty = qty + 100, updated_at = clock_timestamp()
               WHERE order_id = 100 AND line <= 5;
               DELETE FROM "Shop"."Order Items" WHERE order_id = 100 AND line > 17;"#,
        )
        .await
        .unwrap();
    cdc.wait_for_ops("5 updates and 3 deletes", &[("update", 5), ("delete", 3)])
        .await;
    assert_eq!(
        cdc.signal_and_wait("TERM").await,
        Some(0),
        "SIGTERM exits 0"
    );

    let seen = &cdc.seen;
    assert_eq!(
        cdc.changes().len(),
        28,
        "exactly the changes made, nothing more"
    );
    let inserts = changes_with_op(seen, "insert");
    let lines: Vec<i64> = inserts
        .iter()
        .map(|c| c["key"]["line"].as_i64().unwrap())
        .collect();
    assert_eq!(
        lines,
        (1..=20).collect::<Vec<_>>(),
        "inserts in cursor order"
    );
    let first = inserts[0];
    assert_eq!(first["listener"], LISTENER);
    assert_eq!(first["table"], "\"Shop\".\"Order Items\"");
    assert_eq!(first["key"], json!({"order_id": 100, "line": 1}));
    assert_eq!(first["after"]["qty"], json!(1), "integers are numbers");
    assert_eq!(
        first["after"]["price"],
        json!("12.50"),
        "numeric is a string"
    );
    assert_eq!(
        first["after"]["meta"],
        json!({"colour": "red", "tags": [1, 2]}),
        "jsonb embedded"
    );
    assert_eq!(
        first["after"]["gift"],
        json!(false),
        "booleans are booleans"
    );
    assert!(first["after"]["updated_at"].as_str().unwrap().contains(':'));
    assert_eq!(first["before"], Value::Null);
    assert_eq!(
        first["position"], first["after"]["updated_at"],
        "position is the cursor"
    );
    assert!(first["captured_at"].as_str().unwrap().ends_with('Z'));

    let updates = changes_with_op(seen, "update");
    let mut updated: Vec<(i64, i64)> = updates
        .iter()
        .map(|c| {
            (
                c["key"]["line"].as_i64().unwrap(),
                c["after"]["qty"].as_i64().unwrap(),
            )
        })
        .collect();
    updated.sort();
    assert_eq!(updated, (1..=5).map(|n| (n, n + 100)).collect::<Vec<_>>());
    let mut deleted: Vec<Value> = changes_with_op(seen, "delete")
        .iter()
        .map(|c| c["key"].clone())
        .collect();
    deleted.sort_by_key(|k| k["line"].as_i64());
    assert_eq!(
        deleted,
        (18..=20)
            .map(|n| json!({"order_id": 100, "line": n}))
            .collect::<Vec<_>>()
    );
    assert!(
        changes_with_op(seen, "delete")
            .iter()
            .all(|c| c["after"].is_null())
    );
    assert_batches_account_for_changes(seen, 7);
    let flushed: u64 = cdc
        .flushes()
        .iter()
        .map(|f| f["changes"].as_u64().unwrap())
        .sum();
    assert_eq!(flushed, 28, "flush lines account for every change");
    assert!(
        seen.iter()
            .any(|l| l["type"] == "status" && l["state"] == "stopped"),
        "the listener reports stopped on shutdown"
    );
}

#[tokio::test]
async fn a_row_committed_late_with_an_earlier_cursor_is_not_missed() {
    let db = TestDb::new("polling_late").await;
    let setup = db.client().await;
    setup.batch_execute(SCHEMA).await.unwrap();
    let mut cdc = Headless::start(&config(&db, 100)).await;
    cdc.wait_for_state(LISTENER, "running").await;

    // A transaction stamps its row (updated_at = its start) but commits only after a later
    // stamped row was committed and captured.
    let mut slow = db.client().await;
    let slow_tx = slow.transaction().await.unwrap();
    slow_tx
        .execute(
            r#"INSERT INTO "Shop"."Order Items" (order_id, line, product, qty, price, updated_at)
               VALUES (1, 1, 'slow', 1, 1, now())"#,
            &[],
        )
        .await
        .unwrap();
    setup
        .execute(
            r#"INSERT INTO "Shop"."Order Items" (order_id, line, product, qty, price)
               VALUES (2, 1, 'fast', 1, 1)"#,
            &[],
        )
        .await
        .unwrap();
    cdc.wait_for_ops("the fast row", &[("insert", 1)]).await;
    slow_tx.commit().await.unwrap();
    cdc.wait_for_ops("the slow row", &[("insert", 2)]).await;
    let products: Vec<&str> = changes_with_op(&cdc.seen, "insert")
        .iter()
        .map(|c| c["after"]["product"].as_str().unwrap())
        .collect();
    assert_eq!(products, ["fast", "slow"]);
    assert!(
        changes_with_op(&cdc.seen, "insert")[1]["after"]["updated_at"].as_str()
            < changes_with_op(&cdc.seen, "insert")[0]["after"]["updated_at"].as_str(),
        "the slow row's cursor is earlier than the one already read"
    );
    assert_eq!(cdc.signal_and_wait("INT").await, Some(0), "SIGINT exits 0");
}

#[tokio::test]
async fn a_restart_continues_from_the_saved_cursor_and_pause_catches_up() {
    let db = TestDb::new("polling_restart").await;
    let client = db.client().await;
    client.batch_execute(SCHEMA).await.unwrap();
    let insert = |order: i32| {
        format!(
            r#"INSERT INTO "Shop"."Order Items" (order_id, line, product, qty, price)
               VALUES ({order}, 1, 'p', 1, 1)"#
        )
    };
    let mut cdc = Headless::start(&config(&db, 100)).await;
    cdc.wait_for_state(LISTENER, "running").await;

    // Pause keeps the position; resume catches up.
    cdc.send_command(&format!("pause {LISTENER}")).await;
    cdc.wait_for_state(LISTENER, "paused").await;
    client.batch_execute(&insert(1)).await.unwrap();
    client.batch_execute(&insert(2)).await.unwrap();
    cdc.send_command(&format!("resume {LISTENER}")).await;
    cdc.wait_for_ops("the rows written while paused", &[("insert", 2)])
        .await;
    cdc.send_command("frobnicate now").await;
    cdc.wait_for("an error line", |seen| {
        seen.iter()
            .any(|l| l["type"] == "error" && l["message"] == "unknown command: frobnicate")
    })
    .await;
    // Wait until the position of those rows is saved (after their flush), then stop hard.
    let last_position = changes_with_op(&cdc.seen, "insert")[1]["position"]
        .as_str()
        .unwrap()
        .to_string();
    let positions = cdc_tui::positions::PositionStore::new(cdc.path().join(".cdc-tui"));
    support::wait_until("the position of the flushed rows to be saved", || {
        positions.load(LISTENER).ok().flatten().as_deref() == Some(last_position.as_str())
    })
    .await;
    let dir = cdc.kill().await;

    client.batch_execute(&insert(3)).await.unwrap();
    // Restarted paused: the row written while down waits (the baseline is fixed at start, so
    // a row written while paused comes too) until it is resumed.
    let paused = format!("{}paused = true\n", config(&db, 100));
    std::fs::write(dir.path().join("cdc.toml"), paused).unwrap();
    let mut cdc = Headless::start_in(dir).await;
    cdc.wait_for_state(LISTENER, "paused").await;
    client.batch_execute(&insert(4)).await.unwrap();
    assert!(cdc.changes().is_empty(), "nothing sent while paused");
    cdc.send_command(&format!("resume {LISTENER}")).await;
    cdc.wait_for("the rows written while down and while paused", |seen| {
        [3, 4].iter().all(|order| {
            seen.iter()
                .any(|l| l["type"] == "change" && l["key"]["order_id"] == *order)
        })
    })
    .await;
    // Never running before it was resumed (the answer to `resume` repeats `paused`).
    let mut states: Vec<String> = support::statuses(&cdc.seen, LISTENER)
        .into_iter()
        .map(|(state, _)| state)
        .collect();
    states.dedup();
    assert_eq!(states[..3], ["starting", "paused", "running"], "{states:?}");
    assert!(
        cdc.changes().iter().all(|c| c["key"]["order_id"] != 1),
        "rows delivered and saved before the restart are not delivered again"
    );
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}

#[tokio::test]
async fn an_unreachable_database_shows_retrying_with_the_reason() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        r#"
[[database]]
name = "down"
kind = "postgres"
url = "postgres://app:hunter2@127.0.0.1:{closed_port}/shop"

[[listener]]
identifier = "orders"
database = "down"
table = "public.orders"
strategy = "polling"
cursor_column = "updated_at"
"#
    );
    let mut cdc = Headless::start(&config).await;
    cdc.wait_for_state("orders/public.orders", "retrying").await;
    let retrying = cdc
        .seen
        .iter()
        .find(|l| l["state"] == "retrying")
        .unwrap()
        .clone();
    let reason = retrying["reason"].as_str().unwrap();
    assert!(reason.contains("refused"), "{reason}");
    assert!(reason.contains("next try in"), "{reason}");
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    let everything = format!("{:?}{}", cdc.seen, cdc.stderr());
    assert!(
        !everything.contains("hunter2"),
        "the password is never printed"
    );
}
