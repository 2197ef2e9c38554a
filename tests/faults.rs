//! Faults survived, each asserting what was delivered: a database down at start, a proxy
//! cutting connections mid-stream, kill -9 with a persistent slot, a state dir that cannot be
//! written, and a failing listener next to a working one.

mod support;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};

use mongo_test_server::TestServer;
use pgcluster::{ClusterOptions, PgCluster};
use rand::Rng;
use serde_json::Value;
use support::proxy::Proxy;
use support::{Headless, TestDb, drop_slot, lsn, reason_of, statuses, wait_for_inactive_slot};

fn config(url: &str, listeners: &str) -> String {
    format!(
        "[pipeline]\nchunk_size = 500\ntimeout_ms = 50\n\n\
         [[database]]\nname = \"db\"\nkind = \"postgres\"\nurl = \"{url}\"\n\n{listeners}"
    )
}

fn logical(identifier: &str, table: &str, extra: &str) -> String {
    format!(
        "[[listener]]\nidentifier = \"{identifier}\"\ndatabase = \"db\"\ntable = \"{table}\"\n\
         strategy = \"logical\"\n{extra}\n"
    )
}

/// A listener's change ids and `running` lines, scanned incrementally (`wait_for` asks
/// after every line: rescanning everything would be quadratic).
struct Ids {
    listener: String,
    scanned: usize,
    ids: Vec<i64>,
    running: usize,
}

impl Ids {
    fn new(listener: &str) -> RefCell<Ids> {
        RefCell::new(Ids {
            listener: listener.to_string(),
            scanned: 0,
            ids: Vec::new(),
            running: 0,
        })
    }

    /// Takes the new lines; returns how many changes there are now.
    fn scan(&mut self, seen: &[Value]) -> usize {
        for line in &seen[self.scanned.min(seen.len())..] {
            if line["listener"] != self.listener.as_str() {
                continue;
            }
            match line["type"].as_str() {
                Some("change") => self.ids.push(line["key"]["id"].as_i64().expect("an id")),
                Some("status") if line["state"] == "running" => self.running += 1,
                _ => {}
            }
        }
        self.scanned = seen.len();
        self.ids.len()
    }

    /// How many `running` lines there are now.
    fn running(&mut self, seen: &[Value]) -> usize {
        self.scan(seen);
        self.running
    }
}

/// Inserts ids `from..=to` in transactions of `per_tx` rows.
async fn insert_rows(
    client: &tokio_postgres::Client,
    table: &str,
    (from, to): (i32, i32),
    per_tx: i32,
) {
    let sql = format!(
        "INSERT INTO {table} SELECT g, repeat('x', 50) FROM generate_series($1::int, $2::int) g"
    );
    let mut at = from;
    while at <= to {
        let last = (at + per_tx - 1).min(to);
        client.execute(&sql, &[&at, &last]).await.expect("insert");
        at = last + 1;
    }
}

/// The seconds of every "next try in N s" of `listener`'s retrying lines.
fn next_tries(seen: &[Value], listener: &str) -> Vec<f64> {
    statuses(seen, listener)
        .iter()
        .filter(|(state, _)| state == "retrying")
        .map(|(_, reason)| {
            let (_, after) = reason.rsplit_once("next try in ").expect("next try in");
            after.trim_end_matches(" s)").parse().expect("seconds")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_down_at_start_is_retried_with_growing_waits_then_captured() {
    let mut cluster = PgCluster::start(ClusterOptions::default())
        .await
        .expect("a dedicated cluster");
    cluster.create_database("late").await.expect("database");
    cluster
        .connect("late")
        .await
        .expect("connect")
        .batch_execute("CREATE TABLE late_t (id int PRIMARY KEY, v text)")
        .await
        .expect("table");
    cluster.stop_server().await.expect("take the server down");

    let identity = "late/public.late_t";
    let mut cdc = Headless::start(&config(
        &cluster.url("late"),
        &logical("late", "public.late_t", ""),
    ))
    .await;
    cdc.wait_for("three retries", |seen| {
        next_tries(seen, identity).len() >= 3
    })
    .await;
    let reason = reason_of(&cdc.seen, identity, "retrying");
    assert!(
        reason.contains(&format!("127.0.0.1:{}", cluster.port())) && reason.contains("refused"),
        "the reason names the server and the error: {reason}"
    );
    cluster.start_server().await.expect("the server comes up");
    cdc.wait_for_state(identity, "running").await;
    let waits = next_tries(&cdc.seen, identity);
    assert_eq!(&waits[..3], &[0.5, 1.0, 2.0], "capped exponential backoff");
    assert!(waits.windows(2).all(|pair| pair[1] >= pair[0]), "{waits:?}");

    let client = cluster.connect("late").await.expect("connect");
    insert_rows(&client, "late_t", (1, 100), 10).await;
    let ids = Ids::new(identity);
    cdc.wait_for("the 100 rows made after it came up", |seen| {
        ids.borrow_mut().scan(seen) >= 100
    })
    .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    ids.borrow_mut().scan(&cdc.seen);
    assert_eq!(ids.borrow().ids, (1..=100).collect::<Vec<_>>());
    cluster.stop().await.expect("stop the cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_mid_stream_ten_times_lose_and_repeat_nothing() {
    const BATCH: i32 = 2_000;
    const CUTS: i32 = 10;
    const ROWS: i32 = BATCH * CUTS;
    let db = TestDb::new("faults_proxy").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE cut_t (id int PRIMARY KEY, v text)")
        .await
        .expect("table");
    let proxy = Proxy::start(support::cluster().await.port()).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port(), db.name);
    let slot = format!("cdc_tui_cut_{}", std::process::id());
    let identity = "cut/public.cut_t";
    let mut cdc = Headless::start(&config(
        &url,
        &logical("cut", "public.cut_t", &format!("slot = \"{slot}\"")),
    ))
    .await;
    cdc.wait_for_state(identity, "running").await;

    // Each round writes a batch of 2,000 rows (about 200 KB of pgoutput), straight to the
    // server, with a cut armed to spring after 1 to 100 KB more from the server: the cut lands
    // at a random byte of the batch's stream, mid-message, while rows flow.
    let ids = Ids::new(identity);
    let mut rng = rand::rng();
    let mut delivered_at_reconnect = Vec::new();
    for cut in 0..CUTS {
        let written = (cut + 1) * BATCH;
        let springs = proxy.cut_after(rng.random_range(1_000..100_000));
        insert_rows(&client, "cut_t", (written - BATCH + 1, written), 50).await;
        let connections = tokio::time::timeout(support::DEADLINE, springs)
            .await
            .expect("the cut sprang")
            .expect("the proxy");
        assert!(
            connections >= 2,
            "cut {cut}: the SQL and the replication connection"
        );
        cdc.wait_for("running again after the cut", |seen| {
            ids.borrow_mut().running(seen) > cut as usize + 1
        })
        .await;
        // What came before the new connection came before the cut.
        let delivered = ids.borrow_mut().scan(&cdc.seen);
        assert!(
            delivered < written as usize,
            "cut {cut} came mid-batch: {delivered} of {written} rows delivered before reconnecting"
        );
        delivered_at_reconnect.push(delivered);
    }
    cdc.wait_for("every row", |seen| {
        ids.borrow_mut().scan(seen) >= ROWS as usize
    })
    .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    ids.borrow_mut().scan(&cdc.seen);

    let ids = ids.into_inner().ids;
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for id in &ids {
        *counts.entry(*id).or_default() += 1;
    }
    assert_eq!(counts.len(), ROWS as usize, "nothing lost");
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "each change once per run, across reconnects: {repeated:?}"
    );
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "commit order");
    // A reconnect starts after what the run sent whole, not at the slot's older acknowledged
    // position: connections cut within milliseconds still make progress each time.
    let grew = delivered_at_reconnect
        .windows(2)
        .filter(|pair| pair[0] < pair[1])
        .count();
    assert!(
        grew >= CUTS as usize / 2,
        "rows delivered when reconnected: {delivered_at_reconnect:?}"
    );
    let states: Vec<String> = statuses(&cdc.seen, identity)
        .into_iter()
        .map(|(state, _)| state)
        .collect();
    assert!(
        states.iter().filter(|state| *state == "retrying").count() >= CUTS as usize,
        "{states:?}"
    );
    let before_stop = &states[states.len() - 2];
    assert_eq!(before_stop, "running", "recovered: {states:?}");
    eprintln!("rows delivered when reconnected: {delivered_at_reconnect:?}; states {states:?}");
    drop(proxy);
    drop_slot(&client, &slot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_acknowledges_nothing_past_the_last_flush_and_loses_nothing() {
    const ROWS: i64 = 10_000;
    let db = TestDb::new("faults_kill").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE kill_t (id int PRIMARY KEY, v text)")
        .await
        .expect("table");
    let slot = format!("cdc_tui_kill9_{}", std::process::id());
    let identity = "kill/public.kill_t";
    let mut cdc = Headless::start(&config(
        &db.url,
        &logical("kill", "public.kill_t", &format!("slot = \"{slot}\"")),
    ))
    .await;
    cdc.wait_for_state(identity, "running").await;
    // The workload runs in step with what cdc-tui prints, five 100-row transactions ahead of
    // it, so the kill lands while changes are in flight; the rest is written while it is down.
    let ids = Ids::new(identity);
    let mut written = 0;
    while ids.borrow_mut().scan(&cdc.seen) < 1_500 {
        insert_rows(&client, "kill_t", (written + 1, written + 100), 100).await;
        written += 100;
        let behind = (written - 500).max(0) as usize;
        cdc.wait_for("the rows five transactions back", |seen| {
            ids.borrow_mut().scan(seen) >= behind
        })
        .await;
    }
    cdc.signal_and_wait("KILL").await;
    let confirmed = wait_for_inactive_slot(&client, &slot).await;

    // What the first run flushed: the changes printed before its last flush line.
    let first = cdc.seen.clone();
    let last_flush = first
        .iter()
        .rposition(|line| line["type"] == "flush")
        .expect("a flush line");
    let last_flushed = first[..last_flush]
        .iter()
        .rev()
        .find(|line| line["type"] == "change")
        .map(|line| lsn(line["position"].as_str().expect("position")))
        .expect("a flushed change");
    let first_ids: HashSet<i64> = first
        .iter()
        .filter(|line| line["type"] == "change")
        .map(|line| line["key"]["id"].as_i64().expect("id"))
        .collect();
    assert!(
        (first_ids.len() as i64) < ROWS,
        "the kill came mid-stream ({} rows)",
        first_ids.len()
    );

    insert_rows(&client, "kill_t", (written + 1, ROWS as i32), 100).await;
    let mut restarted = Headless::start_in(cdc.dir).await;
    let missing = RefCell::new(
        (1..=ROWS)
            .filter(|id| !first_ids.contains(id))
            .collect::<HashSet<_>>(),
    );
    let scanned = RefCell::new(0);
    restarted
        .wait_for("every row, across both runs", |seen| {
            let mut missing = missing.borrow_mut();
            for line in &seen[*scanned.borrow()..] {
                if line["type"] == "change" {
                    missing.remove(&line["key"]["id"].as_i64().expect("id"));
                }
            }
            *scanned.borrow_mut() = seen.len();
            missing.is_empty()
        })
        .await;
    assert_eq!(restarted.signal_and_wait("TERM").await, Some(0));

    // The commit that follows the last flushed change: the slot must not be past it (the
    // server sends every transaction committed at or after confirmed_flush_lsn again).
    let next_commit = first
        .iter()
        .chain(restarted.seen.iter())
        .filter(|line| line["type"] == "change")
        .map(|line| lsn(line["position"].as_str().expect("position")))
        .filter(|&position| position > last_flushed)
        .min()
        .expect("a commit after the last flushed change");
    assert!(
        confirmed <= next_commit,
        "confirmed_flush_lsn {confirmed:X} passed the next commit {next_commit:X} after the \
         last flushed change {last_flushed:X}"
    );
    // The second run starts where the slot was acknowledged: nothing flushed and
    // acknowledged is sent again.
    let resent = restarted
        .seen
        .iter()
        .filter(|line| line["type"] == "change")
        .filter(|line| lsn(line["position"].as_str().expect("position")) < confirmed)
        .count();
    assert_eq!(
        resent, 0,
        "a change acknowledged before the kill came again"
    );
    eprintln!(
        "kill -9: first run {} rows, last flushed commit {last_flushed:X}, confirmed \
         {confirmed:X}, next commit {next_commit:X}",
        first_ids.len()
    );
    drop_slot(&client, &slot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_state_dir_fails_polling_and_change_streams_loudly() {
    let db = TestDb::new("faults_state").await;
    db.client()
        .await
        .batch_execute(
            "CREATE TABLE polled (id int PRIMARY KEY, \
                                  updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
             INSERT INTO polled (id) SELECT generate_series(1, 10);",
        )
        .await
        .expect("table");
    let mongo = TestServer::start().await.expect("a MongoDB test server");
    // Tests run as root, whom permissions do not stop. A state dir under a regular file
    // cannot even be read (ENOTDIR); one under /proc/self reads as empty, and cannot be
    // created (the listeners get as far as saving).
    for (state, read_fails) in [("blocker/state", true), ("/proc/self/cdc-state", false)] {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("blocker"), b"a file, not a dir").expect("blocker");
        let state_dir = dir.path().join(state);
        std::fs::write(
            dir.path().join("cdc.toml"),
            format!(
                r#"
[state]
dir = "{state}"

[[database]]
name = "pg"
kind = "postgres"
url = "{pg}"

[[database]]
name = "docs"
kind = "mongodb"
url = "{mongo}"

[[listener]]
identifier = "polled"
database = "pg"
table = "public.polled"
strategy = "polling"
cursor_column = "updated_at"
interval_ms = 100

[[listener]]
identifier = "orders"
database = "docs"
table = "shop.orders"
strategy = "change_stream"
"#,
                pg = db.url,
                mongo = mongo.uri()
            ),
        )
        .expect("config");
        let mut cdc = Headless::start_in(dir).await;
        let expected = if read_fails {
            "cannot read the saved position under"
        } else {
            "cannot save the position under"
        };
        for listener in ["polled/public.polled", "orders/shop.orders"] {
            cdc.wait_for_state(listener, "failed").await;
            let reason = reason_of(&cdc.seen, listener, "failed");
            assert!(
                reason.contains(expected) && reason.contains(&state_dir.display().to_string()),
                "{listener}: {reason}"
            );
            assert!(
                statuses(&cdc.seen, listener)
                    .iter()
                    .all(|(state, _)| state != "running" || !read_fails),
                "{listener} never ran without a readable state dir"
            );
        }
        assert!(cdc.changes().is_empty(), "nothing delivered to be lost");
        assert!(!state_dir.exists(), "nothing saved");
        assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
        assert!(
            cdc.stderr().contains(&state_dir.display().to_string()),
            "logged too: {}",
            cdc.stderr()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_listeners_never_stop_the_others() {
    let db = TestDb::new("faults_others").await;
    let client = db.client().await;
    let role = format!("noright_{}", std::process::id());
    client
        .batch_execute(&format!(
            "CREATE TABLE good_t (id int PRIMARY KEY, v text);
             CREATE TABLE secret_t (id int PRIMARY KEY, updated_at timestamptz);
             CREATE ROLE {role} LOGIN;"
        ))
        .await
        .expect("tables and role");
    let unprivileged = db.url.replacen("postgres@", &format!("{role}@"), 1);
    let config = format!(
        "{}\n[[database]]\nname = \"weak\"\nkind = \"postgres\"\nurl = \"{unprivileged}\"\n\n\
         {}{}[[listener]]\nidentifier = \"secret\"\ndatabase = \"weak\"\n\
         table = \"public.secret_t\"\nstrategy = \"polling\"\ncursor_column = \"updated_at\"\n",
        config(&db.url, ""),
        logical("missing", "public.no_such_table", ""),
        logical("good", "public.good_t", ""),
    );
    let mut cdc = Headless::start(&config).await;
    cdc.wait_for_state("good/public.good_t", "running").await;
    cdc.wait_for_state("missing/public.no_such_table", "failed")
        .await;
    cdc.wait_for_state("secret/public.secret_t", "failed").await;
    insert_rows(&client, "good_t", (1, 1_000), 100).await;
    let ids = Ids::new("good/public.good_t");
    cdc.wait_for("every row of the working listener", |seen| {
        ids.borrow_mut().scan(seen) >= 1_000
    })
    .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    ids.borrow_mut().scan(&cdc.seen);
    assert_eq!(ids.borrow().ids, (1..=1_000).collect::<Vec<_>>());
    let missing = reason_of(&cdc.seen, "missing/public.no_such_table", "failed");
    assert!(missing.contains("does not exist"), "{missing}");
    let denied = reason_of(&cdc.seen, "secret/public.secret_t", "failed");
    assert!(denied.contains("permission denied"), "{denied}");
    let good: Vec<String> = statuses(&cdc.seen, "good/public.good_t")
        .into_iter()
        .map(|(state, _)| state)
        .collect();
    assert_eq!(good, ["starting", "running", "stopped"], "undisturbed");
}
