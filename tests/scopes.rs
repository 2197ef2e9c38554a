//! Whole databases in one command: `cdc-tui --headless postgres://…` with no config watches
//! every table on one slot and one publication, takes tables made later, and leaves nothing
//! behind.

mod support;

use std::collections::BTreeMap;

use pgcluster::{ClusterOptions, PgCluster};
use serde_json::Value;
use support::{Headless, eventually};

const TABLES: usize = 25;

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// The changes per table, as `op id` strings in the order printed.
fn by_table(seen: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for change in seen.iter().filter(|line| line["type"] == "change") {
        let id = match (&change["key"]["id"], &change["op"]) {
            (Value::Number(id), _) => id.to_string(),
            _ => "-".to_string(),
        };
        tables
            .entry(change["table"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(format!(
                "{} {id}",
                change["op"].as_str().unwrap_or_default()
            ));
    }
    tables
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_watches_every_table_on_one_slot_and_leaves_nothing_behind() {
    let cluster = PgCluster::start(
        ClusterOptions::default()
            .setting("max_replication_slots", "10")
            .setting("max_wal_senders", "10"),
    )
    .await
    .expect("a throwaway cluster");
    cluster.create_database("app").await.unwrap();
    let client = cluster.connect("app").await.unwrap();
    let mut schema = String::new();
    for n in 1..=TABLES {
        schema.push_str(&format!(
            "CREATE TABLE t{n:02} (id int PRIMARY KEY, v text);\n"
        ));
    }
    client.batch_execute(&schema).await.unwrap();

    let url = cluster.url("app");
    let mut cdc = Headless::start_with_args(&["--headless", &url]).await;
    cdc.wait_for_state("app/*.*", "running").await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM pg_replication_slots").await,
        1,
        "one slot for the whole database"
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM pg_publication_tables WHERE pubname = 'cdc_tui_app'"
        )
        .await,
        TABLES as i64,
        "one publication for every table"
    );

    for n in 1..=TABLES {
        client
            .batch_execute(&format!(
                "INSERT INTO t{n:02} VALUES (1, 'a'), (2, 'b');
                 UPDATE t{n:02} SET v = 'c' WHERE id = 1;
                 DELETE FROM t{n:02} WHERE id = 2;
                 TRUNCATE t{n:02};"
            ))
            .await
            .unwrap();
    }
    // A table made while it runs joins the scope.
    client
        .batch_execute("CREATE TABLE late (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    cdc.wait_for("the late table joining", |seen| {
        seen.iter().any(|line| {
            line["type"] == "schema" && line["table"] == "public.late" && line["change"] == "joined"
        })
    })
    .await;
    client
        .batch_execute("INSERT INTO late VALUES (7, 'x')")
        .await
        .unwrap();
    cdc.wait_for("every change", |seen| {
        by_table(seen)
            .get("public.late")
            .is_some_and(|late| !late.is_empty())
    })
    .await;

    let tables = by_table(&cdc.seen);
    for n in 1..=TABLES {
        assert_eq!(
            tables.get(&format!("public.t{n:02}")).map(Vec::as_slice),
            Some(
                ["insert 1", "insert 2", "update 1", "delete 2", "truncate -"]
                    .map(String::from)
                    .as_slice()
            ),
            "t{n:02}"
        );
    }
    assert_eq!(tables["public.late"], ["insert 7"]);
    assert_eq!(tables.len(), TABLES + 1, "{:?}", tables.keys());

    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    eventually("the temporary slot gone", async || {
        match count(&client, "SELECT count(*) FROM pg_replication_slots").await {
            0 => Ok(()),
            slots => Err(format!("{slots} slots")),
        }
    })
    .await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM pg_publication").await,
        0,
        "the publication it made is dropped"
    );
    cluster.stop().await.expect("stop the cluster");
}

#[tokio::test]
async fn where_and_columns_run_in_the_publication_and_never_break_the_applications_writes() {
    let db = support::TestDb::new("scope_filters").await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, status text, total int, secret text)",
        )
        .await
        .unwrap();
    let listener = |identifier: &str, extra: &str| {
        format!(
            "[[listener]]\nidentifier = \"{identifier}\"\ndatabase = \"db\"\n\
             table = \"public.orders\"\nstrategy = \"logical\"\n{extra}\n\n"
        )
    };
    let config = format!(
        "[pipeline]\ntimeout_ms = 20\n\n[[database]]\nname = \"db\"\nkind = \"postgres\"\n\
         url = \"{}\"\n\n{}{}{}",
        db.url,
        listener(
            "kept",
            "where = \"id > 10\"\ncolumns = [\"id\", \"status\"]"
        ),
        listener("unsafe_where", "where = \"status <> 'draft'\""),
        listener("unsafe_columns", "columns = [\"status\"]"),
    ) + "[[listener]]\nidentifier = \"ghost\"\ndatabase = \"db\"\ntable = \"public.ordrs*\"\n\
         strategy = \"logical\"\n";
    let mut cdc = Headless::start(&config).await;
    cdc.wait_for_state("kept/public.orders", "running").await;
    // A pattern that matches nothing runs (and says so in its detail): no failure loop.
    cdc.wait_for_state("ghost/public.ordrs*", "running").await;
    for (listener, says) in [
        (
            "unsafe_where/public.orders",
            "uses status, outside public.orders's replica identity",
        ),
        (
            "unsafe_columns/public.orders",
            "leaves out id of public.orders's replica identity",
        ),
    ] {
        cdc.wait_for_state(listener, "failed").await;
        let reason = support::reason_of(&cdc.seen, listener, "failed");
        assert!(reason.contains(says), "{listener}: {reason}");
        assert!(
            reason.contains("REPLICA IDENTITY FULL"),
            "{listener}: {reason}"
        );
    }
    let published = client
        .query(
            "SELECT pubname::text, rowfilter, attnames::text[] FROM pg_publication_tables \
             WHERE tablename = 'orders' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let published: Vec<(String, Option<String>, Vec<String>)> = published
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        published,
        [(
            "cdc_tui_kept".to_string(),
            Some("(id > 10)".to_string()),
            vec!["id".to_string(), "status".to_string()]
        )],
        "only the safe filter became a publication"
    );

    client
        .batch_execute(
            "INSERT INTO orders VALUES (5, 'draft', 1, 's'), (15, 'paid', 2, 's');
             UPDATE orders SET status = 'sent', total = 3 WHERE id IN (5, 15);
             DELETE FROM orders WHERE id = 5;",
        )
        .await
        .expect("the application's writes go through whatever the filters");
    cdc.wait_for_ops(
        "the kept row's insert and update",
        &[("insert", 1), ("update", 1)],
    )
    .await;
    let changes = cdc.changes();
    assert!(
        changes.iter().all(|change| change["key"]["id"] == 15),
        "rows outside the filter are never sent: {changes:#?}"
    );
    let after = &changes[1]["after"];
    assert_eq!(
        after,
        &serde_json::json!({"id": 15, "status": "sent"}),
        "only the listed columns"
    );
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}
