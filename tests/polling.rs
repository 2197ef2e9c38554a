//! What only polling does, end to end: the real binary, headless, against a throwaway
//! cluster. What every source does (exact changes, pause, restart, a database down, kill -9,
//! a bad table) is the contract suite's (`tests/contract.rs`, `polling::*`).

mod support;

use serde_json::Value;
use support::{Headless, TestDb, changes_of, changes_with_op, statuses};

const SCHEMA: &str = r#"
CREATE SCHEMA "Shop";
CREATE TABLE "Shop"."Order Items" (
    order_id   int NOT NULL,
    line       int NOT NULL,
    product    text NOT NULL,
    qty        int NOT NULL,
    price      numeric(10,2) NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (order_id, line)
);
"#;

/// A cdc.toml with the given `[[listener]]` tables on the test database.
fn config(db: &TestDb, listeners: &str) -> String {
    format!(
        r#"
[pipeline]
timeout_ms = 50

[[database]]
name = "shop"
kind = "postgres"
url = "{url}"

{listeners}"#,
        url = db.url
    )
}

/// A polling listener on the table; `extra` holds more `key = value` lines.
fn listener(identifier: &str, extra: &str) -> String {
    format!(
        r#"
[[listener]]
identifier = "{identifier}"
database = "shop"
table = '"Shop"."Order Items"'
strategy = "polling"
cursor_column = "updated_at"
interval_ms = 100
{extra}
"#
    )
}

const LISTENER: &str = "items/\"Shop\".\"Order Items\"";
const WITNESS: &str = "witness/\"Shop\".\"Order Items\"";

#[tokio::test]
async fn a_row_committed_late_with_an_earlier_cursor_is_not_missed() {
    let db = TestDb::new("polling_late").await;
    let setup = db.client().await;
    setup.batch_execute(SCHEMA).await.unwrap();
    let mut cdc = Headless::start(&config(&db, &listener("items", ""))).await;
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

/// Polling paused from the start fixes its baseline and sends nothing (not even what changed
/// while cdc-tui was down) until resumed; a witness listener on the same table shows the rows
/// were there to send.
#[tokio::test]
async fn a_restart_paused_sends_nothing_until_resumed() {
    let db = TestDb::new("polling_paused").await;
    let client = db.client().await;
    client.batch_execute(SCHEMA).await.unwrap();
    let insert = |order: i32| {
        format!(
            r#"INSERT INTO "Shop"."Order Items" (order_id, line, product, qty, price)
               VALUES ({order}, 1, 'p', 1, 1)"#
        )
    };
    let both = |extra: &str| {
        config(
            &db,
            &format!("{}{}", listener("items", extra), listener("witness", "")),
        )
    };
    let mut cdc = Headless::start(&both("")).await;
    cdc.wait_for_state(LISTENER, "running").await;
    cdc.wait_for_state(WITNESS, "running").await;
    client.batch_execute(&insert(1)).await.unwrap();
    client.batch_execute(&insert(2)).await.unwrap();
    cdc.wait_for_changes(LISTENER, 2).await;
    cdc.wait_for_changes(WITNESS, 2).await;
    // `stop` saves the positions.
    for listener in [LISTENER, WITNESS] {
        cdc.send_command(&format!("stop {listener}")).await;
        cdc.wait_for_state(listener, "stopped").await;
    }
    let dir = cdc.kill().await;

    client.batch_execute(&insert(3)).await.unwrap();
    std::fs::write(dir.path().join("cdc.toml"), both("paused = true")).unwrap();
    let mut cdc = Headless::start_in(dir).await;
    cdc.wait_for_state(LISTENER, "paused").await;
    client.batch_execute(&insert(4)).await.unwrap();
    let orders = |seen: &[Value], listener: &str| -> Vec<i64> {
        changes_of(seen, listener)
            .iter()
            .map(|c| c["key"]["order_id"].as_i64().unwrap())
            .collect()
    };
    cdc.wait_for(
        "the witness to take the rows written while down and paused",
        |seen| {
            [3, 4]
                .iter()
                .all(|order| orders(seen, WITNESS).contains(order))
        },
    )
    .await;
    let early = orders(&cdc.seen, LISTENER);
    assert!(early.is_empty(), "nothing sent while paused: {early:?}");
    cdc.send_command(&format!("resume {LISTENER}")).await;
    cdc.wait_for("the rows written while down and while paused", |seen| {
        [3, 4]
            .iter()
            .all(|order| orders(seen, LISTENER).contains(order))
    })
    .await;
    // Never running before it was resumed (the answer to `resume` repeats `paused`).
    let mut states: Vec<String> = statuses(&cdc.seen, LISTENER)
        .into_iter()
        .map(|(state, _)| state)
        .collect();
    states.dedup();
    assert_eq!(states[..3], ["starting", "paused", "running"], "{states:?}");
    assert!(
        !orders(&cdc.seen, LISTENER).contains(&1),
        "rows delivered and saved before the restart are not delivered again"
    );
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}

#[tokio::test]
async fn deletes_after_a_truncate_carry_the_polls_position() {
    let db = TestDb::new("polling_truncate").await;
    let client = db.client().await;
    client.batch_execute(SCHEMA).await.unwrap();
    let mut cdc = Headless::start(&config(&db, &listener("items", ""))).await;
    cdc.wait_for_state(LISTENER, "running").await;
    client
        .batch_execute(
            r#"INSERT INTO "Shop"."Order Items" (order_id, line, product, qty, price)
               SELECT 7, g, 'p', 1, 1 FROM generate_series(1, 3) g"#,
        )
        .await
        .unwrap();
    cdc.wait_for_ops("3 inserts", &[("insert", 3)]).await;
    client
        .batch_execute(r#"TRUNCATE "Shop"."Order Items""#)
        .await
        .unwrap();
    cdc.wait_for_ops("3 deletes", &[("delete", 3)]).await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));

    // The table is empty: the poll's position is the highest cursor it last held, that of
    // the last insert (inserts come in cursor order).
    let highest = changes_with_op(&cdc.seen, "insert")[2]["position"].clone();
    assert!(highest.as_str().is_some_and(|p| !p.is_empty()), "{highest}");
    let positions: Vec<&Value> = changes_with_op(&cdc.seen, "delete")
        .iter()
        .map(|c| &c["position"])
        .collect();
    assert_eq!(positions, [&highest; 3], "deletes at the poll's position");
}
