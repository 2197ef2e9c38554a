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
