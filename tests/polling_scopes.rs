//! Polling over a scope (`public.*`, lists, `exclude`): every matching table that has the
//! cursor column and a primary key, each change with its own table; tables made while running
//! join, dropped ones leave; a restart resumes every table from its saved cursor; a pattern
//! matching nothing runs with no table; `max_tracked_rows` counts over the whole scope.
//! One exact table is `tests/polling.rs`'s and the contract suite's.

mod support;

use std::collections::BTreeMap;

use cdc_tui::config::ListenerConfig;
use cdc_tui::registry::ListenerState;
use serde_json::Value;
use support::in_process::InProcess;
use support::{Headless, TestDb, assert_failed_at_once, eventually, reason_of, wait_until};

/// A cdc.toml with one polling listener `scope` over `table` (TOML: a string or a list).
fn config(db: &TestDb, table: &str, extra: &str) -> String {
    format!(
        r#"
[pipeline]
timeout_ms = 50

[[database]]
name = "shop"
kind = "postgres"
url = "{url}"

[[listener]]
identifier = "scope"
database = "shop"
table = {table}
strategy = "polling"
cursor_column = "updated_at"
interval_ms = 100
{extra}
"#,
        url = db.url
    )
}

/// A table polling can take: a key, a value, the cursor.
fn polled_table(name: &str) -> String {
    format!(
        "CREATE TABLE {name} (id int PRIMARY KEY, v text, \
         updated_at timestamptz NOT NULL DEFAULT clock_timestamp());\n"
    )
}

/// The change lines per table, as `op id` in the order printed.
fn by_table(seen: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for change in seen.iter().filter(|line| line["type"] == "change") {
        tables
            .entry(change["table"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(format!(
                "{} {}",
                change["op"].as_str().unwrap_or_default(),
                change["key"]["id"]
            ));
    }
    tables
}

fn ops(list: &[&str]) -> Vec<String> {
    list.iter().map(|op| op.to_string()).collect()
}

/// The schema lines, as (table, change, detail).
fn schema_lines(seen: &[Value]) -> Vec<(String, String, String)> {
    seen.iter()
        .filter(|line| line["type"] == "schema")
        .map(|line| {
            let text = |key: &str| line[key].as_str().unwrap_or_default().to_string();
            (text("table"), text("change"), text("detail"))
        })
        .collect()
}

const LISTENER: &str = "scope/public.*";

#[tokio::test]
async fn a_scope_polls_each_table_with_the_cursor_column_each_change_with_its_table() {
    let db = TestDb::new("pscope_tables").await;
    let client = db.client().await;
    let mut schema = polled_table("orders") + &polled_table("items");
    // In the scope, yet not pollable: no cursor column, no primary key.
    schema.push_str("CREATE TABLE logs (id int PRIMARY KEY, msg text);\n");
    schema.push_str(
        "CREATE TABLE nokey (id int, updated_at timestamptz NOT NULL DEFAULT clock_timestamp());\n",
    );
    // Outside the scope.
    schema.push_str("CREATE SCHEMA other;\n");
    schema.push_str(&polled_table("other.orders"));
    client.batch_execute(&schema).await.unwrap();
    let mut cdc = Headless::start(&config(&db, "\"public.*\"", "")).await;
    cdc.wait_for_state(LISTENER, "running").await;

    // One transaction (a multi-statement simple query): one poll sees all of it, so the
    // poll that shows the inserts of orders would show those of the skipped tables too.
    client
        .batch_execute(
            "INSERT INTO orders (id, v) VALUES (1, 'a'), (2, 'b');
             INSERT INTO items (id, v) VALUES (1, 'x');
             INSERT INTO logs VALUES (1, 'hello');
             INSERT INTO nokey (id) VALUES (1);
             INSERT INTO other.orders (id, v) VALUES (1, 'elsewhere');",
        )
        .await
        .unwrap();
    cdc.wait_for_ops("3 inserts", &[("insert", 3)]).await;
    client
        .batch_execute(
            "UPDATE orders SET v = 'c', updated_at = clock_timestamp() WHERE id = 1;
             DELETE FROM items WHERE id = 1;",
        )
        .await
        .unwrap();
    cdc.wait_for_ops("the update and the delete", &[("update", 1), ("delete", 1)])
        .await;
    client.batch_execute("TRUNCATE orders").await.unwrap();
    cdc.wait_for_ops("the truncate's deletes", &[("delete", 3)])
        .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));

    let tables = by_table(&cdc.seen);
    assert_eq!(
        tables,
        BTreeMap::from([
            ("public.items".to_string(), ops(&["insert 1", "delete 1"])),
            (
                "public.orders".to_string(),
                ops(&["insert 1", "insert 2", "update 1", "delete 1", "delete 2"])
            ),
        ]),
        "only the pollable tables of the scope, each change with its table"
    );
    let orders: Vec<&Value> = (cdc.changes().into_iter())
        .filter(|change| change["table"] == "public.orders")
        .collect();
    assert!(orders.iter().all(|change| change["listener"] == LISTENER));
    // The truncate's deletes are at the poll's position of that table: the highest cursor
    // orders last held, that of the update.
    let update = &orders[2];
    assert_eq!(orders[3]["position"], update["position"]);
    assert_eq!(orders[4]["position"], update["position"]);
    assert_eq!(update["position"], update["after"]["updated_at"]);
    assert!(
        schema_lines(&cdc.seen).is_empty(),
        "no table joined or left: {:?}",
        schema_lines(&cdc.seen)
    );
}

#[tokio::test]
async fn a_list_with_exclude_polls_only_its_tables() {
    let db = TestDb::new("pscope_list").await;
    let client = db.client().await;
    let schema = polled_table("orders")
        + &polled_table("items")
        + "CREATE SCHEMA sales;\n"
        + &polled_table("sales.invoices")
        + &polled_table("sales.audit_log");
    client.batch_execute(&schema).await.unwrap();
    let table = r#"["public.orders", "sales.*"]"#;
    let mut cdc = Headless::start(&config(&db, table, r#"exclude = ["sales.audit_*"]"#)).await;
    let identity = "scope/public.orders, sales.*";
    cdc.wait_for_state(identity, "running").await;
    client
        .batch_execute(
            "INSERT INTO orders (id) VALUES (1); INSERT INTO items (id) VALUES (1);
             INSERT INTO sales.invoices (id) VALUES (1);
             INSERT INTO sales.audit_log (id) VALUES (1);",
        )
        .await
        .unwrap();
    cdc.wait_for_ops("2 inserts", &[("insert", 2)]).await;
    // A later write to a table in the scope: every earlier poll has passed the first one.
    client
        .batch_execute("INSERT INTO orders (id) VALUES (2)")
        .await
        .unwrap();
    cdc.wait_for_ops("the third insert", &[("insert", 3)]).await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    assert_eq!(
        by_table(&cdc.seen),
        BTreeMap::from([
            ("public.orders".to_string(), ops(&["insert 1", "insert 2"])),
            ("sales.invoices".to_string(), ops(&["insert 1"])),
        ])
    );
}

#[tokio::test]
async fn a_table_made_while_running_joins_with_its_rows_as_baseline_and_a_dropped_one_leaves() {
    let db = TestDb::new("pscope_join").await;
    let client = db.client().await;
    client
        .batch_execute(&(polled_table("orders") + &polled_table("gone")))
        .await
        .unwrap();
    let mut cdc = Headless::start(&config(&db, "\"public.*\"", "")).await;
    cdc.wait_for_state(LISTENER, "running").await;

    // Made with a row in one transaction: that row is the table's baseline, not an insert.
    client
        .batch_execute(&format!(
            "{} INSERT INTO late (id, v) VALUES (1, 'there before');
             CREATE TABLE late_log (id int PRIMARY KEY, msg text);",
            polled_table("late")
        ))
        .await
        .unwrap();
    cdc.wait_for("public.late joining", |seen| {
        schema_lines(seen)
            .iter()
            .any(|(table, change, _)| table == "public.late" && change == "joined")
    })
    .await;
    client
        .batch_execute(
            "INSERT INTO late (id, v) VALUES (2, 'after');
             UPDATE late SET v = 'moved', updated_at = clock_timestamp() WHERE id = 1;
             INSERT INTO orders (id) VALUES (5);
             DROP TABLE gone;",
        )
        .await
        .unwrap();
    cdc.wait_for(
        "public.gone leaving and the changes after the join",
        |seen| {
            let left = schema_lines(seen)
                .iter()
                .any(|(table, change, _)| table == "public.gone" && change == "left");
            left && by_table(seen)
                .get("public.late")
                .is_some_and(|l| l.len() >= 2)
        },
    )
    .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));

    let tables = by_table(&cdc.seen);
    assert_eq!(
        tables["public.late"],
        ops(&["insert 2", "update 1"]),
        "row 1 was there when the table joined: its update is a change, its insert was not"
    );
    assert_eq!(tables["public.orders"], ops(&["insert 5"]));
    assert!(!tables.contains_key("public.gone"));

    let lines = schema_lines(&cdc.seen);
    let note = |table: &str, change: &str| {
        lines
            .iter()
            .find(|(t, c, _)| t == table && c == change)
            .map(|(_, _, detail)| detail.clone())
            .unwrap_or_else(|| panic!("no {change} line for {table}: {lines:?}"))
    };
    assert_eq!(
        note("public.late", "joined"),
        "polled by \"updated_at\"; the rows it holds now are its baseline, not inserts"
    );
    assert_eq!(
        note("public.late_log", "joined"),
        "not polled: no column \"updated_at\""
    );
    assert_eq!(note("public.gone", "left"), "dropped or renamed");
    assert_eq!(lines.len(), 3, "{lines:?}");
    // The join is announced before the table's first change.
    let at = |predicate: &dyn Fn(&Value) -> bool| cdc.seen.iter().position(predicate).unwrap();
    let joined = at(&|line| line["type"] == "schema" && line["table"] == "public.late");
    let first_change = at(&|line| line["type"] == "change" && line["table"] == "public.late");
    assert!(joined < first_change);
}

/// The saved position: one JSON object, table label → cursor (or null).
fn saved_cursors(dir: &std::path::Path, identity: &str) -> BTreeMap<String, Option<String>> {
    let state = dir.join(".cdc-tui");
    for entry in std::fs::read_dir(&state).expect("the state dir") {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        let Ok(saved) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if saved["listener"] == identity {
            let position = saved["position"].as_str().expect("a position string");
            return serde_json::from_str(position).expect("a JSON object of table to cursor");
        }
    }
    panic!("no saved position of {identity} under {}", state.display());
}

#[tokio::test]
async fn a_restart_resumes_every_table_from_its_saved_cursor() {
    let db = TestDb::new("pscope_restart").await;
    let client = db.client().await;
    client
        .batch_execute(&(polled_table("a") + &polled_table("b") + &polled_table("empty")))
        .await
        .unwrap();
    let mut cdc = Headless::start(&config(&db, "\"public.*\"", "")).await;
    cdc.wait_for_state(LISTENER, "running").await;
    client
        .batch_execute("INSERT INTO a (id) VALUES (1), (2); INSERT INTO b (id) VALUES (1);")
        .await
        .unwrap();
    cdc.wait_for_ops("3 inserts", &[("insert", 3)]).await;
    // `stop` waits for the flush and saves the cursors.
    cdc.send_command(&format!("stop {LISTENER}")).await;
    cdc.wait_for_state(LISTENER, "stopped").await;
    let first_run = by_table(&cdc.seen);
    let position_of = |table: &str, id: i64| {
        (cdc.changes().into_iter())
            .find(|change| change["table"] == table && change["key"]["id"] == id)
            .map(|change| change["position"].as_str().unwrap().to_string())
    };
    let expected = BTreeMap::from([
        ("public.a".to_string(), position_of("public.a", 2)),
        ("public.b".to_string(), position_of("public.b", 1)),
        ("public.empty".to_string(), None),
    ]);
    assert_eq!(saved_cursors(cdc.path(), LISTENER), expected);
    let dir = cdc.kill().await;

    // While cdc-tui is down: a new row, an update, the first row of the table that was empty.
    client
        .batch_execute(
            "INSERT INTO a (id) VALUES (3);
             UPDATE b SET v = 'down', updated_at = clock_timestamp() WHERE id = 1;
             INSERT INTO empty (id) VALUES (1);",
        )
        .await
        .unwrap();
    let mut cdc = Headless::start_in(dir).await;
    cdc.wait_for("every change made while down", |seen| {
        let tables = by_table(seen);
        let has = |table: &str, change: &str| {
            tables
                .get(table)
                .is_some_and(|changes| changes.iter().any(|c| c == change))
        };
        has("public.a", "update 3")
            && has("public.b", "update 1")
            && has("public.empty", "update 1")
    })
    .await;
    // And nothing more arrives for them: a later write is the next change.
    client
        .batch_execute("INSERT INTO b (id) VALUES (2)")
        .await
        .unwrap();
    cdc.wait_for_ops("the insert after the restart", &[("insert", 1)])
        .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));

    let second_run = by_table(&cdc.seen);
    // Rows at a saved cursor itself are delivered again (rather than possibly missed): a's
    // row 2 may come again, its row 1 may not.
    let a = &second_run["public.a"];
    assert!(
        a == &ops(&["update 3"]) || a == &ops(&["update 2", "update 3"]),
        "public.a after the restart: {a:?}"
    );
    assert_eq!(second_run["public.b"], ops(&["update 1", "insert 2"]));
    assert_eq!(second_run["public.empty"], ops(&["update 1"]));
    assert_eq!(second_run.len(), 3, "{second_run:?}");
    assert_eq!(
        first_run,
        BTreeMap::from([
            ("public.a".to_string(), ops(&["insert 1", "insert 2"])),
            ("public.b".to_string(), ops(&["insert 1"])),
        ])
    );
    assert!(schema_lines(&cdc.seen).is_empty(), "every table was known");
}

#[tokio::test]
async fn a_scope_past_max_tracked_rows_fails_naming_the_table() {
    let db = TestDb::new("pscope_limit").await;
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "{}{}INSERT INTO a (id) SELECT generate_series(1, 3);
             INSERT INTO b (id) SELECT generate_series(1, 3);",
            polled_table("a"),
            polled_table("b")
        ))
        .await
        .unwrap();
    let mut cdc = Headless::start(&config(&db, "\"public.*\"", "max_tracked_rows = 5")).await;
    cdc.wait_for_state(LISTENER, "failed").await;
    let reason = reason_of(&cdc.seen, LISTENER, "failed");
    assert!(
        reason.starts_with(
            "table public.b takes the scope public.* past max_tracked_rows = 5 rows \
             (counted over all its tables)"
        ),
        "{reason}"
    );
    assert_failed_at_once(&cdc.seen, LISTENER);
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}

/// In-process, to read the listeners' details (headless prints none): the skipped tables are
/// named with their reason; a pattern that matches nothing is running with no table, and takes
/// a matching table made later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detail_names_skipped_tables_and_a_pattern_that_matches_nothing() {
    let db = TestDb::new("pscope_detail").await;
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "{}{}CREATE TABLE logs (id int PRIMARY KEY, msg text);
             CREATE TABLE nokey (id int, updated_at timestamptz);",
            polled_table("orders"),
            polled_table("items")
        ))
        .await
        .unwrap();

    let mut run = InProcess::new();
    let mut handles = Vec::new();
    for (identifier, table) in [("all", "public.*"), ("typo", "public.ordrs*")] {
        let mut config = ListenerConfig::new(identifier, "db", table, "polling")
            .with_option("cursor_column", "updated_at");
        config
            .options
            .insert("interval_ms".into(), toml::Value::Integer(100));
        handles.push(run.start(config, "postgres", &db.url));
    }
    let (all, typo) = (&handles[0], &handles[1]);
    let detail =
        |handle: &cdc_tui::registry::ListenerHandle| handle.snapshot().detail.unwrap_or_default();
    wait_until("both running", || {
        all.state() == ListenerState::Running && typo.state() == ListenerState::Running
    })
    .await;
    eventually("the details", async || {
        let (a, t) = (detail(all), detail(typo));
        if a.is_empty() || t.is_empty() {
            Err(format!("{a:?} / {t:?}"))
        } else {
            Ok(())
        }
    })
    .await;
    assert_eq!(
        detail(all),
        "2 tables of public.* polled by \"updated_at\": public.items, public.orders; \
         skipped: public.logs (no column \"updated_at\"), public.nokey (no primary key)"
    );
    assert_eq!(
        detail(typo),
        "no table matches public.ordrs*; tables here: public.items, public.logs, \
         public.nokey, public.orders"
    );

    // Not a dead end: a matching table made later is polled.
    client
        .batch_execute(&polled_table("ordrs_new"))
        .await
        .unwrap();
    // Both must poll it before the insert: a table's rows when it joins are its baseline.
    eventually("the new table in both details", async || {
        let (a, t) = (detail(all), detail(typo));
        if t == "1 table of public.ordrs* polled by \"updated_at\": public.ordrs_new"
            && a.contains("public.ordrs_new")
        {
            Ok(())
        } else {
            Err(format!("{a:?} / {t:?}"))
        }
    })
    .await;
    client
        .batch_execute("INSERT INTO ordrs_new (id) VALUES (7)")
        .await
        .unwrap();
    let tables = eventually("the insert, by both listeners", async || {
        let mut found: Vec<(String, String)> = (run.lines().iter())
            .map(|line| {
                (
                    line["listener"].as_str().unwrap_or_default().to_string(),
                    line["table"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        found.sort();
        if found.len() >= 2 {
            Ok(found)
        } else {
            Err(format!("{found:?}"))
        }
    })
    .await;
    assert_eq!(
        tables,
        [
            ("all/public.*".to_string(), "public.ordrs_new".to_string()),
            (
                "typo/public.ordrs*".to_string(),
                "public.ordrs_new".to_string()
            ),
        ]
    );

    run.finish().await;
}
