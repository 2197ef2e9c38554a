//! The PostgreSQL side of the contract, for every strategy: the table, its writes and the
//! values PostgreSQL's types print as; a [`Strategy`] adds the listener's keys and its own
//! checks.

use std::marker::PhantomData;
use std::ops::RangeInclusive;

use chrono::{DateTime, Duration, Utc};
use pgcluster::{ClusterOptions, PgCluster};
use serde_json::{Value, json};

use super::{Harness, Server, Traits};
use crate::support::{TestDb, drop_slot};

/// The contract table: a quoted, mixed-case name with a composite key.
const TABLE: &str = r#""Shop"."Order Items""#;

/// What one PostgreSQL strategy adds to the shared table and writes.
pub trait Strategy {
    /// The `strategy` key.
    const NAME: &'static str;
    /// The listener's keys besides identifier, database, table and strategy, given a slot
    /// name of its own.
    fn listener_keys(slot: &str) -> String;
    fn traits() -> Traits;
    /// See [`Harness::check_changes`].
    fn check_changes(changes: &[&Value]);
}

enum Place {
    /// A database on the shared cluster.
    Shared(TestDb),
    /// A cluster of the test's own, to take down.
    Own(PgCluster),
}

/// A database holding the contract table, captured with strategy `S`.
pub struct Postgres<S> {
    place: Place,
    port: u16,
    /// None while the server is down.
    client: Option<tokio_postgres::Client>,
    strategy: PhantomData<S>,
}

/// The own cluster's database.
const OWN_DB: &str = "contract";

/// The columns of the contract table. `updated_at` is the polling cursor, set on every write.
const SCHEMA: &str = r#"
CREATE SCHEMA "Shop";
CREATE TABLE "Shop"."Order Items" (
    order_id   int8,
    line       int4,
    product    text NOT NULL,
    qty        int4 NOT NULL,
    price      numeric(10, 2) NOT NULL,
    paid       bool NOT NULL,
    note       text,
    meta       jsonb,
    at         timestamptz,
    weight     float8,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (order_id, line)
);
ALTER TABLE "Shop"."Order Items" REPLICA IDENTITY FULL;
"#;

impl<S> Postgres<S> {
    fn client(&self) -> &tokio_postgres::Client {
        self.client.as_ref().expect("the server is up")
    }

    fn url(&self) -> String {
        match &self.place {
            Place::Shared(db) => db.url.clone(),
            Place::Own(cluster) => cluster.url(OWN_DB),
        }
    }

    fn database(&self) -> &str {
        match &self.place {
            Place::Shared(db) => &db.name,
            Place::Own(_) => OWN_DB,
        }
    }

    async fn execute(&self, sql: &str, id: i64) {
        let changed = self.client().execute(sql, &[&id]).await.expect(sql);
        assert_eq!(changed, 1, "{sql} ({id})");
    }
}

impl<S: Strategy> Harness for Postgres<S> {
    async fn start(test: &str, server: Server) -> Self {
        let (place, client) = match server {
            Server::Up => {
                let db = TestDb::new(&format!("{}_{test}", S::NAME)).await;
                let client = db.client().await;
                (Place::Shared(db), client)
            }
            Server::Down => {
                let cluster = PgCluster::start(ClusterOptions::default())
                    .await
                    .expect("a cluster of the test's own");
                cluster.create_database(OWN_DB).await.expect("database");
                let client = cluster.connect(OWN_DB).await.expect("connect");
                (Place::Own(cluster), client)
            }
        };
        client.batch_execute(SCHEMA).await.expect("the table");
        let port = match &place {
            Place::Shared(_) => crate::support::cluster().await.port(),
            Place::Own(cluster) => cluster.port(),
        };
        let mut postgres = Postgres {
            place,
            port,
            client: Some(client),
            strategy: PhantomData,
        };
        if let (Server::Down, Place::Own(cluster)) = (server, &mut postgres.place) {
            postgres.client = None;
            cluster.stop_server().await.expect("take the server down");
        }
        postgres
    }

    async fn up(&mut self) {
        let Place::Own(cluster) = &mut self.place else {
            panic!("only a server of the test's own goes down");
        };
        cluster.start_server().await.expect("the server comes up");
        self.client = Some(cluster.connect(OWN_DB).await.expect("connect"));
    }

    fn unreachable(&self) -> (String, &'static str) {
        (format!("127.0.0.1:{}", self.port), "refused")
    }

    fn config(&self, listeners: &[(&str, &str)]) -> String {
        let mut config = format!(
            "[[database]]\nname = \"db\"\nkind = \"postgres\"\nurl = \"{}\"\n\n",
            self.url()
        );
        for (identifier, table) in listeners {
            config += &format!(
                "[[listener]]\nidentifier = \"{identifier}\"\ndatabase = \"db\"\n\
                 table = '{table}'\nstrategy = \"{}\"\n{}\n\n",
                S::NAME,
                S::listener_keys(&format!("{}_{identifier}", self.database()))
            );
        }
        config
    }

    fn table(&self) -> String {
        TABLE.to_string()
    }

    fn bad_table(&self) -> Option<(String, &'static str)> {
        Some((r#""Sales"."No Such Table""#.to_string(), "does not exist"))
    }

    async fn insert(&self, ids: RangeInclusive<i64>) {
        let sql = format!(
            "INSERT INTO {TABLE} (order_id, line, product, qty, price, paid, note, meta, at, weight)
             SELECT g, 1, 'item ' || g, g, g + 0.25, g % 2 = 0, NULL,
                    jsonb_build_object('id', g, 'tags', jsonb_build_array('a', 'b')),
                    timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute',
                    (g + 0.5)::float8
             FROM generate_series($1::int8, $2::int8) AS g"
        );
        let (from, to) = (*ids.start(), *ids.end());
        self.client()
            .execute(&sql, &[&from, &to])
            .await
            .expect("insert");
    }

    async fn update(&self, id: i64) {
        self.execute(
            &format!(
                "UPDATE {TABLE} SET qty = qty + 100, note = 'updated', \
                 updated_at = clock_timestamp() WHERE order_id = $1 AND line = 1"
            ),
            id,
        )
        .await;
    }

    async fn delete(&self, id: i64) {
        self.execute(
            &format!("DELETE FROM {TABLE} WHERE order_id = $1 AND line = 1"),
            id,
        )
        .await;
    }

    fn key(&self, id: i64) -> Value {
        json!({"order_id": id, "line": 1})
    }

    fn row(&self, id: i64, updated: bool) -> Value {
        let at = DateTime::<Utc>::from_timestamp(1_704_067_200, 0).expect("2024-01-01")
            + Duration::minutes(id);
        json!({
            "order_id": id,
            "line": 1,
            "product": format!("item {id}"),
            "qty": if updated { id + 100 } else { id },
            "price": format!("{id}.25"),
            "paid": id % 2 == 0,
            "note": if updated { json!("updated") } else { Value::Null },
            "meta": {"id": id, "tags": ["a", "b"]},
            "at": at.format("%Y-%m-%d %H:%M:%S+00").to_string(),
            "weight": id as f64 + 0.5,
        })
    }

    fn traits(&self) -> Traits {
        S::traits()
    }

    fn check_changes(&self, changes: &[&Value]) {
        for change in changes {
            if change["op"] != "delete" {
                assert!(
                    change["after"]["updated_at"]
                        .as_str()
                        .is_some_and(|at| at.contains(':')),
                    "timestamps are strings: {change}"
                );
            }
        }
        S::check_changes(changes);
    }

    async fn finish(self) {
        if let Some(client) = &self.client {
            let slots = client
                .query(
                    "SELECT slot_name::text FROM pg_replication_slots \
                     WHERE database = current_database()",
                    &[],
                )
                .await
                .expect("slots");
            for slot in slots {
                drop_slot(client, slot.get(0)).await;
            }
        }
        if let Place::Own(cluster) = self.place {
            cluster.stop().await.expect("stop the cluster");
        }
    }
}
