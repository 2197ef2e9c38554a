//! The demo's workload: about `rate` row changes per second, mixing inserts, updates and
//! deletes; checkouts are multi-table transactions tagged with a logical decoding message
//! (`POST /checkout order 57`); a truncate of `scratch` every 20 s; and, on a connection of its
//! own, a batch job every 45 s (the first 3 s after the start): one transaction that writes
//! 3,000 order items in chunks over about 4 s, tagged `batch job N`, which the server streams
//! while it runs (the demo cluster's `logical_decoding_work_mem` is 64kB), so the grouped view
//! shows it in progress; every panel of the UI has something to show. The pace and the
//! truncates are [`at_rate`]'s, shared with the MariaDB shop (`mysql.rs`).

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

const TICK: Duration = Duration::from_millis(100);
const TRUNCATE_EVERY: Duration = Duration::from_secs(20);
/// The first batch job starts this soon, so the first screen shows it running.
const FIRST_BATCH_AFTER: Duration = Duration::from_secs(3);
const BATCH_EVERY: Duration = Duration::from_secs(45);
/// A batch job writes this many chunks of rows, pausing after each inside its transaction.
const BATCH_CHUNKS: u32 = 6;
const BATCH_CHUNK_ROWS: u32 = 500;
const BATCH_PAUSE: Duration = Duration::from_millis(700);
pub const STATUSES: [&str; 4] = ["paid", "packed", "shipped", "delivered"];

/// A shop the workload writes to.
pub trait Shop: Send {
    /// One random operation; returns the rows it changed.
    fn step(&mut self, rng: &mut SmallRng) -> impl Future<Output = Result<u64, String>> + Send;
    /// A few rows into `scratch`, then a truncate of it.
    fn truncate_scratch(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

/// Runs `shop`'s operations at about `rate` row changes a second, and a truncate every
/// [`TRUNCATE_EVERY`] (nothing at rate 0, which keeps the demo database still).
pub async fn at_rate(mut shop: impl Shop, rate: u32) {
    if rate == 0 {
        return;
    }
    let mut rng = SmallRng::from_os_rng();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_truncate = tokio::time::Instant::now();
    // Row changes owed: `rate` per second, spent a tick at a time.
    let mut budget = 0.0f64;
    loop {
        ticks.tick().await;
        budget += f64::from(rate) * TICK.as_secs_f64();
        while budget >= 1.0 {
            match shop.step(&mut rng).await {
                Ok(rows) => budget -= rows.max(1) as f64,
                Err(error) => {
                    tracing::warn!("demo workload: {error}");
                    budget = 0.0;
                }
            }
        }
        let now = tokio::time::Instant::now();
        if now.duration_since(last_truncate) >= TRUNCATE_EVERY {
            last_truncate = now;
            if let Err(error) = shop.truncate_scratch().await {
                tracing::warn!("demo truncate: {error}");
            }
        }
    }
}

/// The PostgreSQL shop.
pub struct PostgresShop(pub Client);

impl Shop for PostgresShop {
    async fn step(&mut self, rng: &mut SmallRng) -> Result<u64, String> {
        step(&self.0, rng).await.map_err(|error| error.to_string())
    }

    async fn truncate_scratch(&mut self) -> Result<(), String> {
        let truncate = "INSERT INTO scratch (payload) SELECT 'row ' || n FROM generate_series(1, 5) n; \
                        TRUNCATE scratch";
        (self.0.batch_execute(truncate).await).map_err(|error| error.to_string())
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

/// Runs a batch job [`FIRST_BATCH_AFTER`] the start and then every [`BATCH_EVERY`] (none at
/// rate 0, which keeps the demo database still).
pub async fn batch_jobs(client: Client, rate: u32) {
    if rate == 0 {
        return;
    }
    let mut due = tokio::time::Instant::now() + FIRST_BATCH_AFTER;
    for number in 1.. {
        tokio::time::sleep_until(due).await;
        if let Err(error) = batch_job(&client, number).await {
            tracing::warn!("demo batch job {number}: {error}");
            let _ = client.batch_execute("ROLLBACK").await;
        }
        due += BATCH_EVERY;
    }
}

/// One long transaction: a bulk order, tagged `batch job N`, whose items are written a chunk
/// at a time with a pause after each, so it runs for seconds.
async fn batch_job(client: &Client, number: u64) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "BEGIN; \
             SELECT pg_logical_emit_message(true, 'cdc-tui', 'batch job {number}'); \
             INSERT INTO orders (customer_id, status, total, notes) \
             SELECT id, 'bulk', 0, 'batch job {number}' FROM customers ORDER BY id LIMIT 1;"
        ))
        .await?;
    for chunk in 0..BATCH_CHUNKS {
        let first = chunk * BATCH_CHUNK_ROWS + 1;
        client
            .batch_execute(&format!(
                "INSERT INTO order_items (order_id, line, sku, qty, price) \
                 SELECT currval('orders_id_seq'), n, 'BULK-' || (100 + n % 900), 1, 1.00 \
                 FROM generate_series({first}, {last}) n",
                last = first + BATCH_CHUNK_ROWS - 1
            ))
            .await?;
        tokio::time::sleep(BATCH_PAUSE).await;
    }
    client.batch_execute("COMMIT").await
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Rows written and truncates made, by a shop that writes nothing.
    #[derive(Clone, Default)]
    struct Counting(Arc<Mutex<(u64, u32)>>);

    impl Shop for Counting {
        async fn step(&mut self, rng: &mut SmallRng) -> Result<u64, String> {
            // As the real shops: some operations change several rows.
            let rows = rng.random_range(1..=4);
            self.0.lock().unwrap().0 += rows;
            Ok(rows)
        }

        async fn truncate_scratch(&mut self) -> Result<(), String> {
            self.0.lock().unwrap().1 += 1;
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_workload_keeps_its_rate_and_truncates_every_20_s() {
        let shop = Counting::default();
        let seen = shop.0.clone();
        let workload = tokio::spawn(at_rate(shop, 50));
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (rows, truncates) = *seen.lock().unwrap();
        // 50 a second for 10 s, give or take a tick's worth and one operation's rows.
        assert!((490..=510).contains(&rows), "{rows} rows in 10 s");
        assert_eq!(truncates, 0);
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(seen.lock().unwrap().1, 1, "one truncate after 20 s");
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(seen.lock().unwrap().1, 2, "and another 20 s later");
        workload.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn rate_zero_writes_nothing() {
        let shop = Counting::default();
        let seen = shop.0.clone();
        at_rate(shop, 0).await;
        assert_eq!(*seen.lock().unwrap(), (0, 0));
    }
}
