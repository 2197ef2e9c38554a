//! Transactions on the wire: every change names its transaction and place in it, a
//! `transaction` line follows its last change, an application's logical decoding messages
//! show in place, and a table's new shape is a `schema` line with the values after it right.

mod support;

use serde_json::{Value, json};
use support::{Headless, TestDb};

fn config(db: &TestDb) -> String {
    format!(
        "[pipeline]\ntimeout_ms = 20\n\n[[database]]\nname = \"db\"\nkind = \"postgres\"\n\
         url = \"{}\"\n\n[[listener]]\nidentifier = \"app\"\ndatabase = \"db\"\n\
         table = \"public.*\"\nstrategy = \"logical\"\n",
        db.url
    )
}

const LISTENER: &str = "app/public.*";

/// The lines of these types, in order.
fn lines<'a>(seen: &'a [Value], types: &[&str]) -> Vec<&'a Value> {
    seen.iter()
        .filter(|line| types.iter().any(|kind| line["type"] == *kind))
        .collect()
}

#[tokio::test]
async fn a_multi_table_transaction_with_its_annotation_arrives_as_one_unit() {
    let db = TestDb::new("transactions").await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, status text);
             CREATE TABLE order_items (order_id int, line int, sku text, PRIMARY KEY (order_id, line));
             CREATE TABLE customers (id int PRIMARY KEY, orders int);
             INSERT INTO customers VALUES (1, 0);",
        )
        .await
        .unwrap();
    let mut cdc = Headless::start(&config(&db)).await;
    cdc.wait_for_state(LISTENER, "running").await;
    client
        .batch_execute(
            "BEGIN;
             SELECT pg_logical_emit_message(true, 'cdc-tui', 'POST /checkout req=42');
             INSERT INTO orders VALUES (57, 'new');
             INSERT INTO order_items VALUES (57, 1, 'A'), (57, 2, 'B'), (57, 3, 'C');
             UPDATE customers SET orders = orders + 1 WHERE id = 1;
             COMMIT;
             SELECT pg_logical_emit_message(false, 'cdc-tui', 'deploy 1.2.3');",
        )
        .await
        .unwrap();
    cdc.wait_for("the transaction line and the loose message", |seen| {
        !lines(seen, &["transaction"]).is_empty() && lines(seen, &["message"]).len() == 2
    })
    .await;
    let unit = lines(&cdc.seen, &["change", "message", "transaction"]);
    let kinds: Vec<&str> = unit
        .iter()
        .map(|line| line["type"].as_str().unwrap())
        .collect();
    // The loose message may come before or after the transaction: it has its own position.
    let in_tx: Vec<&&Value> = unit
        .iter()
        .filter(|line| line["type"] != "message" || line["transactional"] == true)
        .collect();
    assert_eq!(
        in_tx
            .iter()
            .map(|line| line["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [
            "message",
            "change",
            "change",
            "change",
            "change",
            "change",
            "transaction"
        ],
        "{kinds:?}"
    );
    let xid = in_tx[1]["tx"]["id"].clone();
    let commit = in_tx[1]["tx"]["position"].clone();
    assert!(
        xid.as_str().is_some_and(|id| id.parse::<u32>().is_ok()),
        "{xid}"
    );
    for (index, line) in in_tx[..6].iter().enumerate() {
        assert_eq!(
            line["tx"],
            json!({"id": xid, "position": commit, "index": index + 1}),
            "{line}"
        );
    }
    assert_eq!(in_tx[0]["prefix"], "cdc-tui");
    assert_eq!(in_tx[0]["content"], "POST /checkout req=42");
    let transaction = in_tx[6];
    assert_eq!(transaction["listener"], LISTENER);
    assert_eq!(transaction["id"], xid);
    assert_eq!(transaction["position"], commit);
    assert_eq!(transaction["changes"], 5, "changes, not messages");
    assert_eq!(
        transaction["tables"],
        json!(["public.orders", "public.order_items", "public.customers"])
    );
    assert!(transaction["commit_time"].is_string());
    let loose = unit
        .iter()
        .find(|line| line["type"] == "message" && line["transactional"] == false)
        .unwrap();
    assert_eq!(loose["content"], "deploy 1.2.3");
    assert_eq!(loose["tx"], Value::Null);
    assert!(loose["position"].as_str().is_some_and(|p| p.contains('/')));
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}

#[tokio::test]
async fn a_new_column_mid_stream_is_a_schema_line_and_values_stay_right() {
    let db = TestDb::new("schema_change").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, qty int)")
        .await
        .unwrap();
    let mut cdc = Headless::start(&config(&db)).await;
    cdc.wait_for_state(LISTENER, "running").await;
    client
        .batch_execute(
            "INSERT INTO orders VALUES (1, 2);
             ALTER TABLE orders ADD COLUMN note text DEFAULT 'none';
             INSERT INTO orders VALUES (2, 3, 'gift');
             ALTER TABLE orders DROP COLUMN qty;
             UPDATE orders SET note = 'sent' WHERE id = 1;",
        )
        .await
        .unwrap();
    cdc.wait_for_ops(
        "two inserts and the update",
        &[("insert", 2), ("update", 1)],
    )
    .await;
    let unit = lines(&cdc.seen, &["change", "schema"]);
    let shown: Vec<Value> = unit
        .iter()
        .map(|line| match line["type"].as_str() {
            Some("schema") => json!(["schema", line["change"], line["detail"]]),
            _ => json!([line["op"], line["after"]]),
        })
        .collect();
    assert_eq!(
        shown,
        [
            json!(["insert", {"id": 1, "qty": 2}]),
            json!(["schema", "columns", "added note (type 25)"]),
            json!(["insert", {"id": 2, "qty": 3, "note": "gift"}]),
            json!(["schema", "columns", "dropped qty"]),
            json!(["update", {"id": 1, "note": "sent"}]),
        ]
    );
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}

/// A cdc.toml watching `public.events` on a persistent slot, with the walsender's
/// `logical_decoding_work_mem` at its minimum (64kB) so a transaction of a few thousand rows
/// is streamed while it runs (protocol version 2).
fn streaming_config(db: &TestDb, slot: &str) -> String {
    format!(
        "[pipeline]\ntimeout_ms = 20\n\n[[database]]\nname = \"db\"\nkind = \"postgres\"\n\
         url = \"{}?options=-c%20logical_decoding_work_mem%3D64kB\"\n\n[[listener]]\n\
         identifier = \"big\"\ndatabase = \"db\"\ntable = \"public.events\"\n\
         strategy = \"logical\"\nslot = \"{slot}\"\n",
        db.url
    )
}

const BIG: &str = "big/public.events";

/// How many times the slot's transactions were streamed (sent while they ran).
async fn streamed_count(client: &tokio_postgres::Client, slot: &str) -> i64 {
    client
        .query_one(
            "SELECT coalesce(max(stream_count), 0) FROM pg_stat_replication_slots \
             WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .expect("pg_stat_replication_slots")
        .get(0)
}

/// The insert ids of the listener's changes, in order.
fn insert_ids(seen: &[Value]) -> Vec<i64> {
    seen.iter()
        .filter(|line| line["type"] == "change" && line["op"] == "insert")
        .map(|line| line["key"]["id"].as_i64().expect("an id"))
        .collect()
}

/// The spool files under a dir (streamed transactions waiting for their end).
fn spools(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "spool") {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_transactions_arrive_whole_at_commit_and_rollbacks_never() {
    let db = TestDb::new("streamed").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE events (id int PRIMARY KEY, pad text)")
        .await
        .unwrap();
    let mut cdc = Headless::start(&streaming_config(&db, "streamed_s")).await;
    cdc.wait_for_state(BIG, "running").await;
    client
        .batch_execute(
            "BEGIN;
             INSERT INTO events SELECT i, repeat('x', 100) FROM generate_series(1, 3000) i;
             SAVEPOINT a;
             INSERT INTO events SELECT i, repeat('r', 100) FROM generate_series(100001, 101000) i;
             ROLLBACK TO a;
             INSERT INTO events SELECT i, repeat('y', 100) FROM generate_series(3001, 6000) i;
             COMMIT;
             BEGIN;
             INSERT INTO events SELECT i, repeat('z', 100) FROM generate_series(200001, 206000) i;
             ROLLBACK;
             INSERT INTO events VALUES (7000, 'after');",
        )
        .await
        .unwrap();
    cdc.wait_for("the row after, and its transaction line", |seen| {
        lines(seen, &["transaction"]).len() == 2
    })
    .await;
    assert!(
        streamed_count(&client, "streamed_s").await > 0,
        "the transactions were streamed while they ran"
    );
    // Once, whole, in order; nothing of the rolled-back transaction or savepoint.
    let expected: Vec<i64> = (1..=6000).chain([7000]).collect();
    assert_eq!(insert_ids(&cdc.seen), expected);
    let changes: Vec<&Value> = (cdc.seen.iter())
        .filter(|line| line["type"] == "change")
        .collect();
    let tx = &changes[0]["tx"];
    for (at, change) in changes[..6000].iter().enumerate() {
        assert_eq!(change["tx"]["id"], tx["id"]);
        assert_eq!(change["tx"]["index"], json!(at + 1));
        assert_eq!(change["position"], tx["position"]);
    }
    let transactions = lines(&cdc.seen, &["transaction"]);
    assert_eq!(transactions.len(), 2, "{transactions:#?}");
    assert_eq!(transactions[0]["changes"], 6000);
    // The savepoint's changes the server had streamed before its rollback were counted as
    // they were dropped (those still in the server's memory then were never sent).
    let discarded = transactions[0]["discarded"]
        .as_u64()
        .expect("a discarded count");
    assert!((1..=1000).contains(&discarded), "{:#}", transactions[0]);
    assert_eq!(
        transactions[1].get("discarded"),
        None,
        "only where some were: {:#}",
        transactions[1]
    );
    assert!(
        spools(cdc.path()).is_empty(),
        "no spool left after the ends"
    );
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    support::drop_slot(&client, "streamed_s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_a_streamed_transaction_is_open_loses_nothing() {
    let db = TestDb::new("streamed_kill").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE events (id int PRIMARY KEY, pad text)")
        .await
        .unwrap();
    let mut cdc = Headless::start(&streaming_config(&db, "streamed_k")).await;
    cdc.wait_for_state(BIG, "running").await;
    let writer = db.client().await;
    writer
        .batch_execute(
            "BEGIN;
             INSERT INTO events SELECT i, repeat('x', 100) FROM generate_series(1, 5000) i;",
        )
        .await
        .unwrap();
    support::eventually(
        "the open transaction streamed",
        async || match streamed_count(&client, "streamed_k").await {
            0 => Err("not yet"),
            _ => Ok(()),
        },
    )
    .await;
    support::eventually("its spool on disk", async || {
        if spools(cdc.path()).is_empty() {
            Err("none")
        } else {
            Ok(())
        }
    })
    .await;
    let dir = cdc.kill().await;
    writer.batch_execute("COMMIT").await.unwrap();
    let mut cdc = Headless::start_in(dir).await;
    cdc.wait_for("the committed transaction", |seen| {
        insert_ids(seen).len() >= 5000
    })
    .await;
    assert_eq!(insert_ids(&cdc.seen), (1..=5000).collect::<Vec<i64>>());
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    support::drop_slot(&client, "streamed_k").await;
}

/// While a streamed transaction runs, the registry's snapshot (what the TUI draws) counts it,
/// and no change of it is flushed; at its commit it leaves the snapshot and its changes come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_transaction_shows_in_the_snapshot_and_nothing_of_it_is_flushed() {
    let db = TestDb::new("streamed_running").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE events (id int PRIMARY KEY, pad text)")
        .await
        .unwrap();
    let mut run = support::in_process::InProcess::new();
    let handle = run.start(
        cdc_tui::config::ListenerConfig::new("running", "db", "public.events", "logical"),
        "postgres",
        &format!("{}?options=-c%20logical_decoding_work_mem%3D64kB", db.url),
    );
    support::wait_until("running", || {
        handle.state() == cdc_tui::registry::ListenerState::Running
    })
    .await;
    let writer = db.client().await;
    writer.batch_execute("BEGIN").await.unwrap();
    let xid: String = writer
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .unwrap()
        .get(0);
    writer
        .batch_execute(
            "INSERT INTO events SELECT i, repeat('x', 100) FROM generate_series(1, 5000) i",
        )
        .await
        .unwrap();
    let running =
        support::eventually(
            "the running transaction in the snapshot",
            async || match handle.snapshot().running.first() {
                Some(running) if running.changes >= 1000 => Ok(running.clone()),
                other => Err(format!("{other:?}")),
            },
        )
        .await;
    assert_eq!(running.id.as_ref(), xid);
    assert_eq!(
        running.tables,
        [std::sync::Arc::<str>::from("public.events")]
    );
    let detail = handle.snapshot().detail.unwrap_or_default();
    assert!(
        detail.contains(&format!("tx {xid} · running · ")) && detail.contains("changes so far"),
        "{detail}"
    );
    assert!(run.lines().is_empty(), "nothing of it before its commit");
    // A savepoint rolled back while it runs: what the server had streamed of it is counted
    // as discarded (and no longer as the transaction's).
    writer
        .batch_execute(
            "SAVEPOINT a;
             INSERT INTO events SELECT i, repeat('r', 100) FROM generate_series(100001, 101000) i;
             ROLLBACK TO a;",
        )
        .await
        .unwrap();
    let after = support::eventually("the savepoint's changes discarded", async || {
        match handle.snapshot().running.first() {
            Some(running) if running.discarded > 0 => Ok(running.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(after.discarded <= 1000, "{after:?}");
    assert!(
        after.changes <= 5000,
        "the savepoint's not counted: {after:?}"
    );
    let detail = handle.snapshot().detail.unwrap_or_default();
    assert!(
        detail.contains(" discarded (rolled-back savepoint)"),
        "{detail}"
    );
    writer.batch_execute("COMMIT").await.unwrap();
    support::eventually("its 5,000 changes", async || match run.lines().len() {
        5000 => Ok(()),
        other => Err(other),
    })
    .await;
    assert!(handle.snapshot().running.is_empty());
    run.finish().await;
}
