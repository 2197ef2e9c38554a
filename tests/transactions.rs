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
