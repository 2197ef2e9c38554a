//! The MySQL side of the contract, for every strategy: the table on a throwaway MariaDB, its
//! writes and the values MySQL's types print as; a [`Strategy`] adds the listener's keys and
//! its own checks.

use std::marker::PhantomData;
use std::ops::RangeInclusive;

use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

use super::{Harness, Server, Traits};
use crate::support::mariadb::{self, MariaDb};

/// The contract table: a name with a space and a composite key.
const TABLE: &str = "`Order Items`";

/// What one MySQL strategy adds to the shared table and writes.
pub trait Strategy {
    /// The `strategy` key.
    const NAME: &'static str;
    /// The listener's keys besides identifier, database, table and strategy.
    fn listener_keys() -> String;
    fn traits() -> Traits;
    /// See [`Harness::check_changes`].
    fn check_changes(changes: &[&Value]);
}

enum Place {
    Shared(&'static MariaDb),
    /// A server of the test's own, to take down.
    Own(MariaDb),
}

/// A database holding the contract table, captured with strategy `S`.
pub struct Mysql<S> {
    place: Place,
    database: String,
    strategy: PhantomData<S>,
}

/// `updated_at` is the polling cursor, set on every write.
const SCHEMA: &str = "CREATE TABLE `Order Items` (
    order_id   BIGINT,
    line       INT,
    product    VARCHAR(100) NOT NULL,
    qty        INT NOT NULL,
    price      DECIMAL(10, 2) NOT NULL,
    paid       BOOLEAN NOT NULL,
    note       TEXT,
    meta       JSON,
    at         DATETIME(3),
    weight     DOUBLE,
    updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (order_id, line)
)";

impl<S> Mysql<S> {
    fn server(&self) -> &MariaDb {
        match &self.place {
            Place::Shared(server) => server,
            Place::Own(server) => server,
        }
    }

    async fn execute(&self, sql: &str) -> u64 {
        let mut conn = self.server().connect(&self.database).await;
        conn.query_drop(sql).await.expect(sql);
        let changed = conn.affected_rows();
        conn.disconnect().await.expect("disconnect");
        changed
    }
}

impl<S: Strategy> Harness for Mysql<S> {
    async fn start(test: &str, server: Server) -> Self {
        let place = match server {
            Server::Up => Place::Shared(mariadb::shared().await),
            Server::Down => Place::Own(MariaDb::start(&[]).await),
        };
        let server_ref = match &place {
            Place::Shared(server) => *server,
            Place::Own(server) => server,
        };
        let database = server_ref
            .create_database(&format!("contract_{}_{test}", S::NAME))
            .await;
        let mut mysql = Mysql {
            place,
            database,
            strategy: PhantomData,
        };
        mysql.execute(SCHEMA).await;
        if let Place::Own(server) = &mut mysql.place {
            server.stop_server().await;
        }
        mysql
    }

    async fn up(&mut self) {
        let Place::Own(server) = &mut self.place else {
            panic!("only a server of the test's own goes down");
        };
        server.start_server().await;
    }

    fn unreachable(&self) -> (String, &'static str) {
        (format!("127.0.0.1:{}", self.server().port()), "refused")
    }

    fn config(&self, listeners: &[(&str, &str)]) -> String {
        let mut config = format!(
            "[[database]]\nname = \"db\"\nkind = \"mysql\"\nurl = \"{}\"\n\n",
            self.server().url(&self.database)
        );
        for (identifier, table) in listeners {
            config += &format!(
                "[[listener]]\nidentifier = \"{identifier}\"\ndatabase = \"db\"\n\
                 table = '{table}'\nstrategy = \"{}\"\n{}\n\n",
                S::NAME,
                S::listener_keys()
            );
        }
        config
    }

    fn table(&self) -> String {
        format!("{}.{TABLE}", self.database)
    }

    fn bad_table(&self) -> Option<(String, &'static str)> {
        Some((
            format!("{}.`No Such Table`", self.database),
            "does not exist",
        ))
    }

    async fn insert(&self, ids: RangeInclusive<i64>) {
        let (from, to) = (*ids.start(), *ids.end());
        // A recursive CTE: MySQL has no sequence tables (MariaDB's seq_1_to_n), and its
        // recursion limit (1,000 by default) is above any one insert here.
        let numbers = format!(
            "(WITH RECURSIVE numbers (seq) AS (SELECT {from} UNION ALL \
             SELECT seq + 1 FROM numbers WHERE seq < {to}) SELECT seq FROM numbers) AS n"
        );
        let sql = format!(
            "INSERT INTO {TABLE} (order_id, line, product, qty, price, paid, note, meta, at, weight)
             SELECT seq, 1, CONCAT('item ', seq), seq, seq + 0.25, seq % 2 = 0, NULL,
                    JSON_OBJECT('id', seq, 'tags', JSON_ARRAY('a', 'b')),
                    TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq MINUTE,
                    seq + 0.5
             FROM {numbers}"
        );
        let inserted = self.execute(&sql).await;
        assert_eq!(inserted, (to - from + 1) as u64, "{sql}");
    }

    async fn update(&self, id: i64) {
        let sql = format!(
            "UPDATE {TABLE} SET qty = qty + 100, note = 'updated' WHERE order_id = {id} AND line = 1"
        );
        assert_eq!(self.execute(&sql).await, 1, "{sql}");
    }

    async fn delete(&self, id: i64) {
        let sql = format!("DELETE FROM {TABLE} WHERE order_id = {id} AND line = 1");
        assert_eq!(self.execute(&sql).await, 1, "{sql}");
    }

    fn key(&self, id: i64) -> Value {
        json!({"order_id": id, "line": 1})
    }

    fn row(&self, id: i64, updated: bool) -> Value {
        json!({
            "order_id": id,
            "line": 1,
            "product": format!("item {id}"),
            "qty": if updated { id + 100 } else { id },
            "price": format!("{id}.25"),
            "paid": i64::from(id % 2 == 0),
            "note": if updated { json!("updated") } else { Value::Null },
            "meta": {"id": id, "tags": ["a", "b"]},
            "at": format!("2024-01-01 {:02}:{:02}:00.000", id / 60, id % 60),
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
                        .is_some_and(|at| at.len() == "2024-01-01 00:00:00.000000".len()),
                    "TIMESTAMP(6) prints its six digits: {change}"
                );
            }
        }
        S::check_changes(changes);
    }

    async fn finish(self) {
        if let Place::Shared(server) = &self.place {
            server.drop_database(&self.database).await;
        }
        if let Place::Own(server) = self.place {
            server.stop().await;
        }
    }
}
