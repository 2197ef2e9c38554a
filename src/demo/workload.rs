//! The demo's workload: about `rate` row changes per second, mixing inserts, updates and
//! deletes; checkouts are multi-table transactions tagged with a logical decoding message
//! (`POST /checkout order 57`); a 1,000-row transaction every 30 s and a truncate of `scratch`
//! every 20 s, so every panel of the UI has something to show.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

const TICK: Duration = Duration::from_millis(100);
const BURST_EVERY: Duration = Duration::from_secs(30);
const TRUNCATE_EVERY: Duration = Duration::from_secs(20);
const BURST_ROWS: i32 = 1000;
const STATUSES: [&str; 4] = ["paid", "packed", "shipped", "delivered"];

pub async fn run(client: Client, rate: u32) {
    if rate == 0 {
        return;
    }
    let mut rng = SmallRng::from_os_rng();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = tokio::time::Instant::now();
    let (mut last_burst, mut last_truncate) = (started, started);
    // Row changes owed: `rate` per second, spent a tick at a time.
    let mut budget = 0.0f64;
    loop {
        ticks.tick().await;
        budget += f64::from(rate) * TICK.as_secs_f64();
        while budget >= 1.0 {
            match step(&client, &mut rng).await {
                Ok(rows) => budget -= rows.max(1) as f64,
                Err(error) => {
                    tracing::warn!("demo workload: {error}");
                    budget = 0.0;
                }
            }
        }
        let now = tokio::time::Instant::now();
        if now.duration_since(last_burst) >= BURST_EVERY {
            last_burst = now;
            if let Err(error) = burst(&client, &mut rng).await {
                tracing::warn!("demo burst: {error}");
            }
        }
        if now.duration_since(last_truncate) >= TRUNCATE_EVERY {
            last_truncate = now;
            let truncate = "INSERT INTO scratch (payload) SELECT 'row ' || n FROM generate_series(1, 5) n; \
                            TRUNCATE scratch";
            if let Err(error) = client.batch_execute(truncate).await {
                tracing::warn!("demo truncate: {error}");
            }
        }
    }
}

/// One random operation; returns the rows it changed.
async fn step(client: &Client, rng: &mut SmallRng) -> Result<u64, tokio_postgres::Error> {
    match rng.random_range(0..100) {
        0..35 => new_order(client, rng).await,
        35..55 => {
            let status = STATUSES[rng.random_range(0..STATUSES.len())];
            client
                .execute(
                    "UPDATE orders SET status = $1 WHERE id = \
                     (SELECT id FROM orders ORDER BY random() LIMIT 1)",
                    &[&status],
                )
                .await
        }
        55..70 => {
            client
                .execute(
                    "UPDATE order_items SET qty = qty + 1 WHERE (order_id, line) = \
                     (SELECT order_id, line FROM order_items ORDER BY random() LIMIT 1)",
                    &[],
                )
                .await
        }
        70..80 => {
            let visits: i64 = rng.random_range(1..500);
            client
                .execute(
                    "UPDATE customers SET profile = jsonb_set(profile, '{visits}', to_jsonb($1::int8)) \
                     WHERE id = (SELECT id FROM customers ORDER BY random() LIMIT 1)",
                    &[&visits],
                )
                .await
        }
        80..88 => {
            let n: i64 = rng.random_range(1000..1_000_000);
            client
                .execute(
                    "INSERT INTO customers (name, email, profile) \
                     VALUES ('Customer ' || $1::int8, 'c' || $1::int8 || '@example.com', \
                             jsonb_build_object('newsletter', $1::int8 % 2 = 0))",
                    &[&n],
                )
                .await
        }
        88..94 => {
            client
                .execute(
                    "DELETE FROM order_items WHERE (order_id, line) = \
                     (SELECT order_id, line FROM order_items ORDER BY random() LIMIT 1)",
                    &[],
                )
                .await
        }
        _ => {
            // Deleting an order cascades to its items; keep the shop from emptying.
            client
                .execute(
                    "DELETE FROM orders WHERE id = (SELECT id FROM orders ORDER BY id LIMIT 1) \
                     AND (SELECT count(*) FROM orders) > 20",
                    &[],
                )
                .await
        }
    }
}

/// A checkout: one transaction with the order, its items and the customer's order count,
/// tagged by a logical decoding message as an app would tag its request. One order in ten
/// carries notes large enough to be TOASTed.
async fn new_order(client: &Client, rng: &mut SmallRng) -> Result<u64, tokio_postgres::Error> {
    let items: u64 = rng.random_range(1..4);
    let large_notes = rng.random_bool(0.1);
    let total: f64 = rng.random_range(5.0..500.0);
    client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO orders (customer_id, total, notes)
             SELECT id, round({total:.2}, 2),
                    CASE WHEN {large_notes} THEN (SELECT string_agg(md5(random()::text), '')
                                                  FROM generate_series(1, 200))
                         ELSE 'leave at the door' END
             FROM customers ORDER BY random() LIMIT 1;
             SELECT pg_logical_emit_message(true, 'cdc-tui',
                                            'POST /checkout order ' || currval('orders_id_seq'));
             INSERT INTO order_items (order_id, line, sku, qty, price)
             SELECT currval('orders_id_seq'), n, 'SKU-' || (100 + (random() * 900)::int),
                    1 + (random() * 4)::int, round((random() * 100)::numeric, 2)
             FROM generate_series(1, {items}) n;
             UPDATE customers
             SET profile = jsonb_set(profile, '{{orders}}',
                                     to_jsonb(coalesce((profile->>'orders')::int, 0) + 1))
             WHERE id = (SELECT customer_id FROM orders WHERE id = currval('orders_id_seq'));
             COMMIT;"
        ))
        .await?;
    Ok(2 + items)
}

/// A 1,000-row transaction: one order with a thousand items.
async fn burst(client: &Client, rng: &mut SmallRng) -> Result<(), tokio_postgres::Error> {
    let sku = rng.random_range(100..999);
    client
        .batch_execute(&format!(
            "BEGIN; \
             WITH o AS (INSERT INTO orders (customer_id, status, total, notes) \
                        SELECT id, 'bulk', 0, 'bulk order' FROM customers LIMIT 1 RETURNING id) \
             INSERT INTO order_items (order_id, line, sku, qty, price) \
             SELECT o.id, n, 'BULK-{sku}', 1, 1.00 FROM o, generate_series(1, {BURST_ROWS}) n; \
             COMMIT;"
        ))
        .await
}
