//! The PostgreSQL logical replication listener against throwaway clusters: end to end through
//! the real binary (headless), and in-process where a test must control flushing.

mod support;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use cdc_tui::config::ListenerConfig;
use cdc_tui::pipeline::{Batch, Handler, HandlerConfig, Sink, SinkError};
use cdc_tui::positions::PositionStore;
use cdc_tui::registry::{ListenerState, Registry};
use cdc_tui::secret::DatabaseUrl;
use cdc_tui::source::{SourceContext, run_listener};
use pgcluster::{ClusterOptions, PgCluster};
use serde_json::{Value, json};
use support::{
    DEADLINE, Headless, TestDb, assert_batches_account_for_changes, changes_of, drop_slot,
    eventually, lsn, reason_of, wait_until,
};
use tokio::time::Instant;

const CHUNK_SIZE: u64 = 500;

/// A cdc.toml with one database and the given listener tables.
fn config(url: &str, listeners: &str) -> String {
    format!(
        "[pipeline]\nchunk_size = {CHUNK_SIZE}\ntimeout_ms = 50\n\n\
         [[database]]\nname = \"db\"\nkind = \"postgres\"\nurl = \"{url}\"\n\n{listeners}"
    )
}

/// One `[[listener]]` table; `extra` holds more `key = value` lines.
fn listener(identifier: &str, table: &str, extra: &str) -> String {
    format!(
        "[[listener]]\nidentifier = \"{identifier}\"\ndatabase = \"db\"\ntable = '{table}'\n\
         strategy = \"logical\"\n{extra}\n"
    )
}

fn count_changes(seen: &[Value], listener: &str) -> usize {
    changes_of(seen, listener).len()
}

/// A listener's insert ids seen so far, for `wait_for` conditions: `wait_for` asks after every
/// line, so each call only looks at the lines that are new since the last one (rescanning all
/// of them would be quadratic).
struct Inserts {
    listener: String,
    scanned: Cell<usize>,
    ids: RefCell<Vec<i64>>,
}

impl Inserts {
    fn new(listener: &str) -> Inserts {
        Inserts {
            listener: listener.to_string(),
            scanned: Cell::new(0),
            ids: RefCell::new(Vec::new()),
        }
    }

    /// Takes the new lines of `seen`; returns how many inserts there are now.
    fn scan(&self, seen: &[Value]) -> usize {
        let mut ids = self.ids.borrow_mut();
        for line in seen.get(self.scanned.get()..).unwrap_or_default() {
            if line["type"] == "change"
                && line["listener"] == self.listener.as_str()
                && line["op"] == "insert"
            {
                ids.push(line["key"]["id"].as_i64().expect("id key"));
            }
        }
        self.scanned.set(seen.len());
        ids.len()
    }

    fn last(&self) -> Option<i64> {
        self.ids.borrow().last().copied()
    }

    fn ids(&self) -> Vec<i64> {
        self.ids.borrow().clone()
    }
}

fn states_of(seen: &[Value], listener: &str) -> Vec<String> {
    seen.iter()
        .filter(|line| line["type"] == "status" && line["listener"] == listener)
        .map(|line| line["state"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The `id` of every insert of `listener`.
fn inserted_ids(seen: &[Value], listener: &str) -> Vec<i64> {
    changes_of(seen, listener)
        .into_iter()
        .filter(|change| change["op"] == "insert")
        .map(|change| change["key"]["id"].as_i64().expect("id key"))
        .collect()
}

/// The temporary or persistent slot of a database: (name, active pid, temporary).
async fn slots_of(client: &tokio_postgres::Client) -> Vec<(String, Option<i32>, bool)> {
    client
        .query(
            "SELECT slot_name::text, active_pid, temporary FROM pg_replication_slots \
             WHERE database = current_database() ORDER BY 1",
            &[],
        )
        .await
        .expect("slots")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

async fn publications(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query("SELECT pubname::text FROM pg_publication ORDER BY 1", &[])
        .await
        .expect("publications")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn walsender_alive(client: &tokio_postgres::Client, pid: i32) -> bool {
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_replication WHERE pid = $1",
            &[&pid],
        )
        .await
        .expect("pg_stat_replication");
    row.get::<_, i64>(0) == 1
}

/// The pid of the one walsender streaming a slot of this database, once there is one.
async fn walsender_pid(client: &tokio_postgres::Client) -> i32 {
    eventually("one active slot", async || {
        match slots_of(client).await.as_slice() {
            [(_, Some(pid), _)] => Ok(*pid),
            slots => Err(format!("{slots:?}")),
        }
    })
    .await
}

/// Positions are commit LSNs: one per transaction, never going back, across a transaction of
/// 2,000 rows and 70 small ones (the typed values and `before` images are the contract
/// suite's, `tests/contract.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_are_commit_lsns_one_per_transaction() {
    let db = TestDb::new("logical_mixed").await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE mixed (order_id int8, line int4, qty int4, note text,
                                 PRIMARY KEY (order_id, line))",
        )
        .await
        .expect("create table");
    let identity = "mixed/public.mixed";
    let mut headless =
        Headless::start(&config(&db.url, &listener("mixed", "public.mixed", ""))).await;
    headless.wait_for_state(identity, "running").await;
    let started = Instant::now();

    client
        .batch_execute(
            "INSERT INTO mixed SELECT (g - 1) / 10 + 1, (g - 1) % 10 + 1, g, 'n' || g
             FROM generate_series(1, 2000) AS g",
        )
        .await
        .expect("insert");
    // 500 updates in 50 transactions, 200 deletes in 20.
    for order in 1..=50_i64 {
        client
            .execute(
                "UPDATE mixed SET qty = qty + 100, note = 'updated' WHERE order_id = $1",
                &[&order],
            )
            .await
            .expect("update");
    }
    for order in 101..=120_i64 {
        client
            .execute("DELETE FROM mixed WHERE order_id = $1", &[&order])
            .await
            .expect("delete");
    }
    headless
        .wait_for("the last delete", |seen| {
            seen.last().is_some_and(|line| {
                line["op"] == "delete" && line["key"] == json!({"order_id": 120, "line": 10})
            })
        })
        .await;
    let captured = started.elapsed();
    assert_eq!(headless.signal_and_wait("TERM").await, Some(0));

    let changes = changes_of(&headless.seen, identity);
    assert_eq!(changes.len(), 2700, "2,000 + 500 + 200 changes, no more");
    let mut counts: HashMap<(String, i64, i64), usize> = HashMap::new();
    for change in &changes {
        let key = &change["key"];
        let entry = (
            change["op"].as_str().unwrap().to_string(),
            key["order_id"].as_i64().unwrap(),
            key["line"].as_i64().unwrap(),
        );
        *counts.entry(entry).or_default() += 1;
    }
    assert!(counts.values().all(|&n| n == 1), "a change came twice");
    let ops: Vec<&str> = changes.iter().map(|c| c["op"].as_str().unwrap()).collect();
    assert!(ops[..2000].iter().all(|&op| op == "insert"));
    assert!(ops[2000..2500].iter().all(|&op| op == "update"));
    assert!(ops[2500..].iter().all(|&op| op == "delete"));

    // Commit order: positions (commit LSNs) never go back; one transaction, one position.
    let positions: Vec<u64> = changes
        .iter()
        .map(|c| lsn(c["position"].as_str().unwrap()))
        .collect();
    assert!(positions.windows(2).all(|pair| pair[0] <= pair[1]));
    let distinct: HashSet<u64> = positions.iter().copied().collect();
    assert_eq!(distinct.len(), 1 + 50 + 20, "one position per transaction");
    assert!(changes.iter().all(|c| c["commit_time"].is_string()));
    assert_batches_account_for_changes(&headless.seen, CHUNK_SIZE);
    eprintln!("mixed workload: 2,700 changes captured in {captured:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_toast_is_never_null_and_truncate_is_captured() {
    let db = TestDb::new("logical_toast").await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE toast_default (id int PRIMARY KEY, big text, n int);
             CREATE TABLE toast_full (id int PRIMARY KEY, big text, n int);
             ALTER TABLE toast_full REPLICA IDENTITY FULL;",
        )
        .await
        .expect("create tables");
    let (plain, full) = ("plain/public.toast_default", "full/public.toast_full");
    let mut headless = Headless::start(&config(
        &db.url,
        &format!(
            "{}{}",
            listener("plain", "public.toast_default", ""),
            listener("full", "public.toast_full", "")
        ),
    ))
    .await;
    headless.wait_for_state(plain, "running").await;
    headless.wait_for_state(full, "running").await;

    // 100 kB of md5 hex: random enough not to compress, so it is stored out of line.
    let big: String = client
        .query_one(
            "SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 3200)",
            &[],
        )
        .await
        .expect("random text")
        .get(0);
    assert_eq!(big.len(), 102_400);
    for table in ["toast_default", "toast_full"] {
        client
            .execute(&format!("INSERT INTO {table} VALUES (1, $1, 0)"), &[&big])
            .await
            .expect("insert");
        client
            .batch_execute(&format!("UPDATE {table} SET n = 1 WHERE id = 1"))
            .await
            .expect("update");
    }
    let toasted: i64 = client
        .query_one(
            "SELECT pg_column_size(big) FROM toast_default WHERE id = 1",
            &[],
        )
        .await
        .expect("column size")
        .get::<_, i32>(0)
        .into();
    assert!(
        toasted > 2_000,
        "the value is stored out of line ({toasted} bytes)"
    );
    client
        .batch_execute("TRUNCATE toast_default")
        .await
        .expect("truncate");
    headless
        .wait_for("the truncate", |seen| {
            changes_of(seen, plain)
                .iter()
                .any(|change| change["op"] == "truncate")
                && count_changes(seen, full) >= 2
        })
        .await;

    let plain_changes = changes_of(&headless.seen, plain);
    let ops: Vec<&str> = plain_changes
        .iter()
        .map(|c| c["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["insert", "update", "truncate"]);
    assert_eq!(plain_changes[0]["after"]["big"], big.as_str());
    let update = plain_changes[1];
    assert_eq!(update["after"]["n"], 1);
    assert_eq!(
        update["after"]["big"],
        json!({"unchanged_toast": true}),
        "REPLICA IDENTITY DEFAULT: the documented marker"
    );
    assert_eq!(update["before"], Value::Null);
    let truncate = plain_changes[2];
    assert_eq!(truncate["table"], "public.toast_default");
    assert_eq!(
        (&truncate["key"], &truncate["before"], &truncate["after"]),
        (&Value::Null, &Value::Null, &Value::Null)
    );

    let full_changes = changes_of(&headless.seen, full);
    assert_eq!(full_changes.len(), 2);
    let update = full_changes[1];
    assert_eq!(update["op"], "update");
    assert_eq!(
        update["after"]["big"],
        big.as_str(),
        "REPLICA IDENTITY FULL: taken from the old row"
    );
    assert_eq!(update["before"]["big"], big.as_str());
    assert_eq!(update["before"]["n"], 0);
    assert_eq!(headless.signal_and_wait("TERM").await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_outlasts_the_wal_sender_timeout_without_losing_anything() {
    let db = TestDb::new("logical_pause").await;
    let client = db.client().await;
    let timeout: String = client
        .query_one("SHOW wal_sender_timeout", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(timeout, "2s", "the shared cluster's wal_sender_timeout");
    client
        .batch_execute("CREATE TABLE paused_t (id int PRIMARY KEY, v text)")
        .await
        .expect("create table");
    let identity = "paused/public.paused_t";
    let mut headless =
        Headless::start(&config(&db.url, &listener("paused", "public.paused_t", ""))).await;
    headless.wait_for_state(identity, "running").await;
    let inserts = Inserts::new(identity);
    let pid = walsender_pid(&client).await;
    let slots = slots_of(&client).await;
    assert!(
        slots[0].0.starts_with("cdc_tui_tmp_") && slots[0].2,
        "a temporary slot, held by the streaming walsender: {slots:?}"
    );
    assert!(walsender_alive(&client, pid).await);

    client
        .batch_execute("INSERT INTO paused_t SELECT g, 'before' FROM generate_series(1, 10) g")
        .await
        .expect("insert");
    headless
        .wait_for("the first rows", |seen| inserts.scan(seen) >= 10)
        .await;
    headless.send_command(&format!("pause {identity}")).await;
    headless.wait_for_state(identity, "paused").await;

    // Written while paused: more than the client buffers, in 50 transactions.
    for batch in 0..50 {
        let from = 11 + batch * 100;
        client
            .execute(
                "INSERT INTO paused_t SELECT g, 'paused' FROM generate_series($1::int, $1::int + 99) g",
                &[&from],
            )
            .await
            .expect("insert while paused");
    }
    // Stay paused past the 2 s wal_sender_timeout: until the same walsender, alive all along,
    // has heard a status update sent 3.5 s from now (a silent client is dropped after 2 s).
    let until: String = client
        .query_one("SELECT (clock_timestamp() + interval '3.5 s')::text", &[])
        .await
        .expect("the server's clock")
        .get(0);
    eventually("a status update 3.5 s into the pause", async || {
        let row = client
            .query_opt(
                "SELECT reply_time::text, reply_time >= $1::text::timestamptz \
                 FROM pg_stat_replication WHERE pid = $2",
                &[&until, &pid],
            )
            .await
            .expect("pg_stat_replication")
            .expect("the walsender stays while paused");
        match row.get::<_, Option<bool>>(1) {
            Some(true) => Ok(()),
            _ => Err(format!(
                "the last status update was sent at {:?}",
                row.get::<_, Option<String>>(0)
            )),
        }
    })
    .await;
    assert_eq!(
        count_changes(&headless.seen, identity),
        10,
        "nothing is taken while paused"
    );
    headless.send_command(&format!("resume {identity}")).await;
    headless
        .wait_for("every row", |seen| inserts.scan(seen) >= 5_010)
        .await;
    assert!(walsender_alive(&client, pid).await, "no reconnect");
    assert_eq!(walsender_pid(&client).await, pid);
    assert_eq!(headless.signal_and_wait("TERM").await, Some(0));

    let ids = inserted_ids(&headless.seen, identity);
    assert_eq!(ids, (1..=5_010).collect::<Vec<_>>(), "each once, in order");
    let states = states_of(&headless.seen, identity);
    assert!(
        !states.iter().any(|s| s == "retrying" || s == "failed"),
        "{states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_slot_reports_its_gap_and_a_clean_exit_leaves_nothing_behind() {
    let db = TestDb::new("logical_exit").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE exit_t (id int PRIMARY KEY)")
        .await
        .expect("create table");
    let identity = "exiting/public.exit_t";
    let mut headless =
        Headless::start(&config(&db.url, &listener("exiting", "public.exit_t", ""))).await;
    headless.wait_for_state(identity, "running").await;
    let pid = walsender_pid(&client).await;
    assert_eq!(publications(&client).await, ["cdc_tui_exiting"]);

    // A lost connection loses a temporary slot, and the listener says so.
    client
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .expect("terminate the walsender");
    headless.wait_for_state(identity, "retrying").await;
    let reason = reason_of(&headless.seen, identity, "retrying");
    assert!(
        reason.contains("temporary slot: changes made while disconnected were not captured"),
        "{reason}"
    );
    headless
        .wait_for("running again", |seen| {
            seen.last().is_some_and(|line| line["state"] == "running")
        })
        .await;
    assert_ne!(walsender_pid(&client).await, pid, "a new slot");

    assert_eq!(headless.signal_and_wait("TERM").await, Some(0));
    eventually("the temporary slot gone", async || {
        match slots_of(&client).await.as_slice() {
            [] => Ok(()),
            slots => Err(format!("{slots:?}")),
        }
    })
    .await;
    assert!(
        publications(&client).await.is_empty(),
        "the publication created for a temporary slot is dropped"
    );
    let states = states_of(&headless.seen, identity);
    assert_eq!(states.last().map(String::as_str), Some("stopped"));
}

/// What the server logs when a client goes away without ending its session: a socket closed
/// under a walsender that was still sending, or closed without Terminate.
const LOST_CLIENT: [&str; 4] = [
    "could not send data to client",
    "connection to client lost",
    "unexpected EOF",
    "could not receive data from client",
];

/// SIGTERM ends the replication session as the protocol has it (CopyDone both ways, then
/// Terminate), even while the server is sending a large transaction: the server's log has no
/// line about a lost client for any session of the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_replication_session_cleanly() {
    let db = TestDb::new("logical_clean_end").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE clean_t (id int PRIMARY KEY, pad text)")
        .await
        .expect("create table");
    let identity = "clean/public.clean_t";
    let mut headless =
        Headless::start(&config(&db.url, &listener("clean", "public.clean_t", ""))).await;
    headless.wait_for_state(identity, "running").await;
    walsender_pid(&client).await;
    // Every session of the run: the SQL connection and the walsender.
    let sessions: Vec<i32> = client
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_activity")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(sessions.len() >= 2, "{sessions:?}");
    client
        .batch_execute(
            "INSERT INTO clean_t SELECT i, repeat('x', 200) FROM generate_series(1, 50000) i",
        )
        .await
        .expect("insert");
    // Stopped while the server is still sending the transaction.
    headless.wait_for_changes(identity, 1).await;
    assert_eq!(headless.signal_and_wait("TERM").await, Some(0));
    eventually("the run's sessions ended", async || {
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
                &[&sessions],
            )
            .await
            .expect("pg_stat_activity");
        match row.get::<_, i64>(0) {
            0 => Ok(()),
            left => Err(format!("{left} still there")),
        }
    })
    .await;
    let log = std::fs::read_to_string(support::cluster().await.log_path()).expect("server log");
    let of_the_run: Vec<&str> = (log.lines())
        .filter(|line| {
            (sessions.iter()).any(|pid| line.contains(&format!("[{pid}]")))
                && LOST_CLIENT.iter().any(|said| line.contains(said))
        })
        .collect();
    assert!(of_the_run.is_empty(), "{of_the_run:#?}");
    let states = states_of(&headless.seen, identity);
    assert_eq!(states.last().map(String::as_str), Some("stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_in_use_is_retried_until_it_is_released() {
    let db = TestDb::new("logical_busy").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE busy_t (id int PRIMARY KEY)")
        .await
        .expect("create table");
    let slot = format!("cdc_tui_busy_{}", std::process::id());
    let identity = "busy/public.busy_t";
    let config = config(
        &db.url,
        &listener("busy", "public.busy_t", &format!("slot = \"{slot}\"")),
    );
    let mut holder = Headless::start(&config).await;
    holder.wait_for_state(identity, "running").await;
    let mut waiter = Headless::start(&config).await;
    waiter.wait_for_state(identity, "retrying").await;
    let reason = reason_of(&waiter.seen, identity, "retrying");
    assert!(
        reason.contains(&slot) && reason.contains("in use by another process"),
        "{reason}"
    );
    assert_eq!(holder.signal_and_wait("TERM").await, Some(0));
    waiter.wait_for_state(identity, "running").await;
    client
        .batch_execute("INSERT INTO busy_t VALUES (1)")
        .await
        .expect("insert");
    waiter
        .wait_for("the row", |seen| count_changes(seen, identity) == 1)
        .await;
    assert_eq!(waiter.signal_and_wait("TERM").await, Some(0));
    drop_slot(&client, &slot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_loss_and_server_restart_lose_nothing() {
    let mut cluster =
        PgCluster::start(ClusterOptions::default().setting("wal_sender_timeout", "2s"))
            .await
            .expect("a dedicated cluster");
    cluster.create_database("restart").await.expect("database");
    let url = cluster.url("restart");
    let client = cluster.connect("restart").await.expect("connect");
    client
        .batch_execute("CREATE TABLE restart_t (id int PRIMARY KEY, v text)")
        .await
        .expect("create table");
    let identity = "restart/public.restart_t";
    let mut headless = Headless::start(&config(
        &url,
        &listener("restart", "public.restart_t", "slot = \"cdc_tui_restart\""),
    ))
    .await;
    headless.wait_for_state(identity, "running").await;
    let inserts = Inserts::new(identity);

    let insert = async |client: &tokio_postgres::Client, from: i32, to: i32, per_tx: i32| {
        let mut at = from;
        while at <= to {
            let last = (at + per_tx - 1).min(to);
            client
                .execute(
                    "INSERT INTO restart_t SELECT g, repeat('r', 100) \
                     FROM generate_series($1::int, $2::int) g",
                    &[&at, &last],
                )
                .await
                .expect("insert");
            at = last + 1;
        }
    };
    // The connection is cut mid-stream: the walsender is terminated with rows still to send.
    insert(&client, 1, 20_000, 1_000).await;
    headless
        .wait_for("some rows", |seen| inserts.scan(seen) >= 1_000)
        .await;
    let pid = walsender_pid(&client).await;
    client
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .expect("terminate the walsender");
    headless.wait_for_state(identity, "retrying").await;

    // The server restarts mid-stream.
    insert(&client, 20_001, 30_000, 1_000).await;
    headless
        .wait_for("more rows", |seen| inserts.scan(seen) >= 21_000)
        .await;
    cluster.restart().await.expect("restart");
    let client = cluster.connect("restart").await.expect("reconnect");
    insert(&client, 30_001, 31_000, 100).await;
    headless
        .wait_for("every row", |seen| {
            inserts.scan(seen) >= 31_000 && inserts.last() == Some(31_000)
        })
        .await;
    assert_eq!(headless.signal_and_wait("TERM").await, Some(0));

    inserts.scan(&headless.seen);
    let ids = inserts.ids();
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for id in &ids {
        *counts.entry(*id).or_default() += 1;
    }
    assert_eq!(counts.len(), 31_000, "every row");
    assert!(
        counts.values().all(|&n| n == 1),
        "each once per run, also across reconnects"
    );
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "commit order");
    let states = states_of(&headless.seen, identity);
    assert!(states.iter().any(|s| s == "retrying"), "{states:?}");
    assert_eq!(states.last().map(String::as_str), Some("stopped"));
    cluster.stop().await.expect("stop the cluster");
}

/// A sink that reports each batch's changes, then blocks until the test lets it go.
struct GatedSink {
    batches: tokio::sync::mpsc::UnboundedSender<Vec<String>>,
    release: std_mpsc::Receiver<()>,
}

impl Sink for GatedSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let positions = batch
            .changes
            .iter()
            .map(|c| c.position.to_string())
            .collect();
        let _ = self.batches.send(positions);
        // A closed gate (the test ended) lets everything through.
        let _ = self.release.recv();
        Ok(())
    }
}

async fn slot_flush(client: &tokio_postgres::Client) -> (u64, u64, Option<String>) {
    let row = client
        .query_one(
            "SELECT s.confirmed_flush_lsn::text, r.flush_lsn::text, r.reply_time::text \
             FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid \
             WHERE s.database = current_database()",
            &[],
        )
        .await
        .expect("slot and walsender");
    let confirmed: String = row.get(0);
    let reported: Option<String> = row.get(1);
    (
        lsn(&confirmed),
        reported.as_deref().map_or(0, lsn),
        row.get(2),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_flush_never_passes_an_unflushed_commit() {
    let db = TestDb::new("logical_gate").await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE gated (id int PRIMARY KEY, v text);
             CREATE TABLE elsewhere (id serial PRIMARY KEY);",
        )
        .await
        .expect("create tables");

    let (batches_tx, mut batches) = tokio::sync::mpsc::unbounded_channel();
    let (release, release_rx) = std_mpsc::channel();
    let (handler, changes) = Handler::new(
        HandlerConfig {
            chunk_size: 100,
            timeout: Duration::from_millis(20),
            log_capacity: 100,
        },
        vec![Box::new(GatedSink {
            batches: batches_tx,
            release: release_rx,
        })],
    );
    // The handler blocks in the sink: it gets a thread and a runtime of its own.
    let handler_thread = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("handler runtime")
            .block_on(handler.run())
    });
    let registry = Registry::new();
    let handle = registry
        .add(ListenerConfig::new(
            "gated",
            "db",
            "public.gated",
            "logical",
        ))
        .expect("add");
    let state_dir = tempfile::tempdir().expect("state dir");
    let ctx = SourceContext::new(
        handle.clone(),
        DatabaseUrl::new(db.url.clone()),
        PositionStore::new(state_dir.path()),
        changes,
    );
    let logical = cdc_tui::source::strategy("postgres", "logical").expect("registered");
    let listener = tokio::spawn(run_listener(ctx, logical));
    wait_until("running", || handle.state() == ListenerState::Running).await;

    let before: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("wal lsn")
        .get(0);
    let before = lsn(&before);
    client
        .batch_execute("INSERT INTO gated SELECT g, 'x' FROM generate_series(1, 3) g")
        .await
        .expect("insert");
    let positions = tokio::time::timeout(DEADLINE, batches.recv())
        .await
        .expect("a batch in time")
        .expect("a batch");
    assert_eq!(positions.len(), 3);
    let commit = lsn(&positions[0]);
    assert!(commit > before);

    // The sink holds the batch. Other tables keep writing (keepalives with a newer WAL end
    // arrive); the server must hear status updates and still see nothing acknowledged past
    // the held transaction's commit: the server sends again every transaction whose commit
    // is at or after confirmed_flush_lsn, so that is the line. (A keepalive acknowledged
    // while the server was still reading the transaction's WAL, before its commit, may lie
    // past its first change: that loses nothing, and PostgreSQL's own subscriber does the
    // same.)
    let mut replies = HashSet::new();
    eventually("4 status updates while the batch is held", async || {
        client
            .batch_execute("INSERT INTO elsewhere DEFAULT VALUES")
            .await
            .expect("write elsewhere");
        let (confirmed, reported, reply_time) = slot_flush(&client).await;
        assert!(
            confirmed <= commit && reported <= commit,
            "acknowledged {confirmed:X} / {reported:X} past the commit at {commit:X} before \
             the flush"
        );
        replies.extend(reply_time);
        if replies.len() >= 4 {
            Ok(())
        } else {
            Err(format!("{} distinct reply times", replies.len()))
        }
    })
    .await;
    let detail = handle.snapshot().detail.unwrap_or_default();
    assert!(
        detail.contains(" WAL held by temporary slot cdc_tui_"),
        "{detail}"
    );
    assert!(detail.contains("REPLICA IDENTITY DEFAULT"), "{detail}");
    // The WAL written past what the slot confirmed is the listener's lag in bytes (read with
    // the detail, every few seconds), beside its commit-to-capture time.
    let lag = eventually("the lag in bytes while the batch is held", async || {
        client
            .batch_execute("INSERT INTO elsewhere DEFAULT VALUES")
            .await
            .expect("write elsewhere");
        let lag = handle.snapshot().lag;
        match lag.server.bytes {
            Some(bytes) if bytes > 0 => Ok(lag),
            _ => Err(format!("{lag:?}")),
        }
    })
    .await;
    assert_eq!(lag.server.wal_status.as_deref(), Some("reserved"));
    assert!(
        lag.last_commit.is_some() && lag.last_capture.is_some(),
        "{lag:?}"
    );
    assert!(!handle.snapshot().in_transaction, "between transactions");

    // Released: the acknowledgement moves past the transaction.
    for _ in 0..100 {
        release.send(()).expect("release");
    }
    eventually("the flush acknowledged", async || {
        let (confirmed, _, _) = slot_flush(&client).await;
        if confirmed > commit {
            Ok(())
        } else {
            Err(format!("confirmed_flush_lsn {confirmed:X}"))
        }
    })
    .await;
    assert_eq!(
        handle
            .snapshot()
            .position
            .as_deref()
            .map(lsn)
            .map(|p| p > commit),
        Some(true)
    );

    registry.stop(handle.identity()).expect("stop");
    tokio::time::timeout(DEADLINE, listener)
        .await
        .expect("the listener stops")
        .expect("listener task");
    assert_eq!(handle.state(), ListenerState::Stopped);
    drop(release);
    drop(registry);
    drop(handle);
    let _ = handler_thread.join();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_level_replica_fails_saying_how_to_fix_it() {
    let cluster = support::wal_level_replica_cluster().await;
    let identity = "replica/public.t";
    let mut headless = Headless::start(&config(
        &cluster.url("replica"),
        &listener("replica", "public.t", ""),
    ))
    .await;
    headless.wait_for_state(identity, "failed").await;
    let reason = reason_of(&headless.seen, identity, "failed");
    assert!(reason.contains("wal_level = replica"), "{reason}");
    assert!(
        reason.contains("ALTER SYSTEM SET wal_level = logical") && reason.contains("restart"),
        "{reason}"
    );
    assert_eq!(headless.signal_and_wait("TERM").await, Some(0));
    cluster.stop().await.expect("stop the cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_replication_fails_saying_how_to_fix_it() {
    let db = TestDb::new("logical_norepl").await;
    let client = db.client().await;
    let role = format!("norepl_{}", std::process::id());
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN NOREPLICATION;
             CREATE TABLE guarded (id int PRIMARY KEY);
             GRANT SELECT ON guarded TO {role};
             CREATE PUBLICATION guarded_pub FOR TABLE guarded;"
        ))
        .await
        .expect("role, table and publication");
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(url, db.url, "the test url names the user: {}", db.url);
    let identity = "guarded/public.guarded";
    let mut headless = Headless::start(&config(
        &url,
        &listener("guarded", "public.guarded", "publication = \"guarded_pub\""),
    ))
    .await;
    headless.wait_for_state(identity, "failed").await;
    let reason = reason_of(&headless.seen, identity, "failed");
    assert!(
        reason.contains("REPLICATION privilege") && reason.contains("WITH REPLICATION"),
        "{reason}"
    );
    assert_eq!(headless.signal_and_wait("TERM").await, Some(0));
}

/// The peak resident memory (VmHWM, KiB) of the binary running with the config in `dir`.
fn peak_rss_kib(dir: &std::path::Path) -> u64 {
    let config = dir.join("cdc.toml");
    let config = config.to_string_lossy();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let path = entry.expect("entry").path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmdline).contains(config.as_ref()) {
            continue;
        }
        let status = std::fs::read_to_string(path.join("status")).expect("status");
        return status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
    }
    panic!("no process runs {config}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200k_row_transaction_streams_through_bounded_memory() {
    let db = TestDb::new("logical_big").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE big_tx (id int PRIMARY KEY, v text)")
        .await
        .expect("create table");
    let identity = "big/public.big_tx";
    let mut headless =
        Headless::start(&config(&db.url, &listener("big", "public.big_tx", ""))).await;
    headless.wait_for_state(identity, "running").await;
    let idle = peak_rss_kib(headless.path());
    let started = Instant::now();
    client
        .batch_execute(
            "INSERT INTO big_tx SELECT g, repeat('v', 100) FROM generate_series(1, 200000) g",
        )
        .await
        .expect("insert 200k rows");
    let inserts = Inserts::new(identity);
    // 200,000 lines through a debug binary: about 15 s on a quiet machine, more under load.
    headless
        .wait_for_within(Duration::from_secs(120), "the last row", |seen| {
            seen.last().is_some_and(|line| line["key"]["id"] == 200_000)
        })
        .await;
    let elapsed = started.elapsed();
    let peak = peak_rss_kib(headless.path());
    assert_eq!(inserts.scan(&headless.seen), 200_000);
    assert_eq!(headless.signal_and_wait("TERM").await, Some(0));
    let changes = changes_of(&headless.seen, identity);
    eprintln!(
        "200k-row transaction: {elapsed:?}, peak RSS {idle} KiB idle, {peak} KiB after; commit {} first {} last {}",
        changes[0]["commit_time"], changes[0]["captured_at"], changes[199_999]["captured_at"]
    );
    // Held at once, the transaction's 200,000 changes would take over 100 MB; streamed, the
    // binary holds a few thousand at a time.
    assert!(
        peak < idle + 64 * 1024,
        "peak RSS grew from {idle} KiB to {peak} KiB"
    );
}
