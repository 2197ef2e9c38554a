//! The demo's MariaDB (`[demo] mysql = true`): a throwaway server (`crates/mariadb-cluster`)
//! with a database `demo_mysql` holding the same shop as the PostgreSQL demo
//! (`assets/demo_schema_mysql.sql`) and the same workload at the same rate: checkouts as
//! multi-table transactions, status and quantity updates, JSON edits, new customers, deletes,
//! a truncate every 20 s. MariaDB has no logical decoding messages, so its checkouts carry no
//! label, and no streaming of running transactions, so it has no batch job.

use std::path::PathBuf;

use mariadb_cluster::{MariaDb, ServerError};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use rand::Rng;
use rand::rngs::SmallRng;

use crate::config::DEMO_MYSQL_DATABASE;
use crate::demo::workload::{STATUSES, Shop};

const SCHEMA: &str = include_str!("../../assets/demo_schema_mysql.sql");

/// Starts the server, creates the shop and returns it with a connection for the workload.
pub async fn start() -> Result<(MariaDb, MysqlShop), ServerError> {
    let server = MariaDb::start(&[]).await?;
    let sql = |what| move |source| ServerError::Sql { what, source };
    let mut root = server.root().await?;
    (root
        .query_drop(format!("CREATE DATABASE {DEMO_MYSQL_DATABASE}"))
        .await)
        .map_err(sql("create the demo database"))?;
    root.disconnect().await.map_err(sql("disconnect"))?;
    let mut conn = server.connect(Some(DEMO_MYSQL_DATABASE)).await?;
    (conn.query_drop(SCHEMA).await).map_err(sql("create the demo schema"))?;
    Ok((server, MysqlShop(conn)))
}

/// Where the demo's MariaDB listeners keep their positions: inside its throwaway directory.
pub fn state_dir(server: &MariaDb) -> PathBuf {
    server.dir().join("cdc-tui-state")
}

/// The MariaDB shop.
pub struct MysqlShop(Conn);

impl MysqlShop {
    /// Runs `sql`; returns the rows the last statement changed.
    async fn run(&mut self, sql: String) -> Result<u64, String> {
        self.0
            .query_drop(sql)
            .await
            .map_err(|error| error.to_string())?;
        Ok(self.0.affected_rows())
    }
}

impl Shop for MysqlShop {
    async fn step(&mut self, rng: &mut SmallRng) -> Result<u64, String> {
        let sql = match rng.random_range(0..100) {
            0..35 => return self.new_order(rng).await,
            35..55 => format!(
                "UPDATE orders SET status = '{}' ORDER BY RAND() LIMIT 1",
                STATUSES[rng.random_range(0..STATUSES.len())]
            ),
            55..70 => "UPDATE order_items SET qty = qty + 1 ORDER BY RAND() LIMIT 1".into(),
            70..80 => format!(
                "UPDATE customers SET profile = JSON_SET(profile, '$.visits', {}) \
                 ORDER BY RAND() LIMIT 1",
                rng.random_range(1..500)
            ),
            80..88 => {
                let n: u32 = rng.random_range(1000..1_000_000);
                format!(
                    "INSERT INTO customers (name, email, profile) \
                     VALUES ('Customer {n}', 'c{n}@example.com', \
                             JSON_OBJECT('newsletter', {}))",
                    n.is_multiple_of(2)
                )
            }
            88..94 => "DELETE FROM order_items ORDER BY RAND() LIMIT 1".into(),
            // The oldest order and its items, keeping the shop from emptying.
            _ => "BEGIN; \
                  SET @gone = (SELECT IF(COUNT(*) > 20, MIN(id), NULL) FROM orders); \
                  DELETE FROM order_items WHERE order_id = @gone; \
                  DELETE FROM orders WHERE id = @gone; \
                  COMMIT"
                .into(),
        };
        self.run(sql).await
    }

    async fn truncate_scratch(&mut self) -> Result<(), String> {
        let sql = "INSERT INTO scratch (payload) VALUES ('row 1'), ('row 2'), ('row 3'); \
                   TRUNCATE scratch";
        self.run(sql.into()).await.map(|_| ())
    }
}

impl MysqlShop {
    /// A checkout: one transaction with the order, its items and the customer's order count;
    /// one order in ten carries long notes.
    async fn new_order(&mut self, rng: &mut SmallRng) -> Result<u64, String> {
        let items: u64 = rng.random_range(1..4);
        let notes = match rng.random_bool(0.1) {
            true => "REPEAT(MD5(RAND()), 200)",
            false => "'leave at the door'",
        };
        let total: f64 = rng.random_range(5.0..500.0);
        let lines: Vec<String> = (1..=items)
            .map(|line| {
                format!(
                    "(@order, {line}, 'SKU-{}', {}, {:.2})",
                    rng.random_range(100..1000),
                    rng.random_range(1..6),
                    rng.random_range(1.0..100.0)
                )
            })
            .collect();
        self.run(format!(
            "BEGIN;
             INSERT INTO orders (customer_id, total, notes)
             SELECT id, {total:.2}, {notes} FROM customers ORDER BY RAND() LIMIT 1;
             SET @order = LAST_INSERT_ID();
             INSERT INTO order_items (order_id, line, sku, qty, price) VALUES {};
             UPDATE customers
             SET profile = JSON_SET(profile, '$.orders',
                                    COALESCE(JSON_VALUE(profile, '$.orders'), 0) + 1)
             WHERE id = (SELECT customer_id FROM orders WHERE id = @order);
             COMMIT",
            lines.join(", ")
        ))
        .await?;
        Ok(2 + items)
    }
}
