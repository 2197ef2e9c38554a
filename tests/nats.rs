//! NATS JetStream end to end, against real `nats-server -js` processes the tests start: a
//! capture (PostgreSQL logical → headless cdc-tui with `[sinks.nats]`) publishes, a viewer
//! (a second headless cdc-tui with a `nats` listener) reads the stream; faults on either side
//! (the server killed and restarted, the capture killed with -9, NATS down at start, one node
//! of a three-node cluster killed) lose and duplicate nothing at the viewer. Debezium events
//! published by nats-py (a client we did not write) show as changes.

mod support;

use std::collections::HashMap;

use serde_json::{Value, json};
use support::nats::NatsServer;
use support::{Headless, TestDb, changes_of, eventually, wait_for_inactive_slot};

const CAPTURE: &str = "shop/public.items";
const VIEWER: &str = "remote/cdc.>";

/// A table and a capture config publishing its changes to `nats_url`.
async fn capture_db(prefix: &str) -> (TestDb, tokio_postgres::Client) {
    let db = TestDb::new(prefix).await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, n int NOT NULL);
             ALTER TABLE items REPLICA IDENTITY FULL;",
        )
        .await
        .expect("the table");
    (db, client)
}

fn capture_config(db: &TestDb, nats_url: &str, extra_sink: &str) -> String {
    format!(
        "[pipeline]\nchunk_size = 20\ntimeout_ms = 20\n\n\
         [[database]]\nname = \"shop\"\nkind = \"postgres\"\nurl = \"{}\"\n\n\
         [[listener]]\nidentifier = \"shop\"\ndatabase = \"shop\"\ntable = \"public.items\"\n\
         strategy = \"logical\"\nslot = \"{}\"\n\n\
         [sinks.nats]\nurl = \"{nats_url}\"\nstream = \"CDC\"\n\
         subject = \"cdc.{{database}}.{{table}}\"\n{extra_sink}",
        db.url,
        slot_name(db),
    )
}

fn slot_name(db: &TestDb) -> String {
    format!("nats_{}", db.name)
}

fn viewer_config(nats_url: &str, listener_keys: &str) -> String {
    format!(
        "[pipeline]\ntimeout_ms = 20\n\n\
         [[database]]\nname = \"remote\"\nkind = \"nats\"\nurl = \"{nats_url}\"\n\n\
         [[listener]]\nidentifier = \"remote\"\ndatabase = \"remote\"\ntable = \"cdc.>\"\n\
         strategy = \"jetstream\"\nstream = \"CDC\"\ndeliver = \"all\"\n{listener_keys}"
    )
}

/// Inserts rows `ids`, one transaction each.
async fn insert_each(client: &tokio_postgres::Client, ids: std::ops::RangeInclusive<i32>) {
    for id in ids {
        client
            .execute("INSERT INTO items VALUES ($1, $1)", &[&id])
            .await
            .expect("insert");
    }
}

/// The viewer's inserts by row id, in arrival order.
fn inserted_ids(seen: &[Value]) -> Vec<i64> {
    changes_of(seen, VIEWER)
        .iter()
        .filter(|change| change["op"] == "insert")
        .map(|change| change["after"]["id"].as_i64().expect("an id"))
        .collect()
}

/// Sent, received, duplicates and lost of rows `1..=sent` at the viewer, printed for the
/// report and asserted exact.
fn assert_exactly_once(test: &str, sent: i64, received: &[i64]) {
    let mut times: HashMap<i64, usize> = HashMap::new();
    for id in received {
        *times.entry(*id).or_default() += 1;
    }
    let duplicates: usize = times.values().map(|n| n - 1).sum();
    let lost = (1..=sent).filter(|id| !times.contains_key(id)).count();
    eprintln!(
        "{test}: sent {sent}, received {}, duplicates {duplicates}, lost {lost}",
        received.len()
    );
    assert_eq!((duplicates, lost), (0, 0), "{test}: {received:?}");
    assert_eq!(
        received,
        (1..=sent).collect::<Vec<_>>().as_slice(),
        "{test}: in commit order"
    );
}

/// The messages in stream `CDC` on `url`, counted by JetStream itself.
async fn stream_messages(url: &str) -> u64 {
    let client = async_nats::connect(url).await.expect("connect");
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream.get_stream("CDC").await.expect("the stream");
    stream.info().await.expect("stream info").state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_to_jetstream_to_a_viewer_exactly_in_order() {
    let nats = NatsServer::start().await;
    let (db, client) = capture_db("nats_e2e").await;
    let mut capture = Headless::start(&capture_config(&db, &nats.url(), "")).await;
    capture.wait_for_state(CAPTURE, "running").await;
    client
        .batch_execute(
            "INSERT INTO items SELECT g, g FROM generate_series(1, 30) g;
             UPDATE items SET n = n + 100 WHERE id <= 5;
             DELETE FROM items WHERE id > 25;",
        )
        .await
        .unwrap();
    capture.wait_for_changes(CAPTURE, 40).await;
    capture
        .wait_for("the transaction line and the sink running", |seen| {
            seen.iter().any(|line| line["type"] == "transaction")
                && seen
                    .iter()
                    .any(|line| line["sink"] == "nats" && line["state"] == "running")
        })
        .await;

    let mut viewer = Headless::start(&viewer_config(&nats.url(), "")).await;
    viewer.wait_for_changes(VIEWER, 40).await;
    viewer
        .wait_for("the transaction line", |seen| {
            seen.iter().any(|line| line["type"] == "transaction")
        })
        .await;
    let sent = changes_of(&capture.seen, CAPTURE);
    let received = changes_of(&viewer.seen, VIEWER);
    assert_eq!(received.len(), sent.len(), "exactly the changes");
    for (at, (sent, received)) in sent.iter().zip(&received).enumerate() {
        for field in ["table", "op", "key", "before", "after", "tx", "commit_time"] {
            assert_eq!(sent[field], received[field], "change {at}: {field}");
        }
        assert_eq!(received["origin"]["listener"], CAPTURE);
        assert_eq!(received["origin"]["position"], sent["position"]);
        assert_eq!(
            received["position"],
            (at + 1).to_string(),
            "the stream sequence"
        );
    }
    let transactions = |seen: &[Value]| -> Vec<Value> {
        seen.iter()
            .filter(|line| line["type"] == "transaction")
            .map(|line| json!([line["id"], line["changes"], line["tables"]]))
            .collect()
    };
    assert_eq!(transactions(&viewer.seen), transactions(&capture.seen));
    drop(viewer);
    capture.signal_and_wait("TERM").await;
    support::drop_slot(&client, &slot_name(&db)).await;
}

/// The sink connects and makes its stream at the start: its state shows before any change,
/// and a viewer started before anything was captured runs at once and sees what comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_makes_its_stream_at_the_start_so_a_viewer_may_come_first() {
    let nats = NatsServer::start().await;
    let (db, client) = capture_db("nats_early").await;
    let mut capture = Headless::start(&capture_config(&db, &nats.url(), "")).await;
    capture.wait_for_state(CAPTURE, "running").await;
    capture
        .wait_for("the sink running before any change", |seen| {
            seen.iter()
                .any(|line| line["sink"] == "nats" && line["state"] == "running")
        })
        .await;
    assert!(changes_of(&capture.seen, CAPTURE).is_empty());
    assert_eq!(stream_messages(&nats.url()).await, 0, "the stream, empty");

    let mut viewer = Headless::start(&viewer_config(&nats.url(), "")).await;
    viewer.wait_for_state(VIEWER, "running").await;
    let retried = viewer
        .seen
        .iter()
        .any(|line| line["listener"] == VIEWER && line["state"] == "retrying");
    assert!(
        !retried,
        "the viewer found the stream at once: {:#?}",
        viewer.seen
    );
    insert_each(&client, 1..=3).await;
    viewer.wait_for_changes(VIEWER, 3).await;
    assert_exactly_once("the_sink_makes_its_stream", 3, &inserted_ids(&viewer.seen));
    drop(viewer);
    capture.signal_and_wait("TERM").await;
    support::drop_slot(&client, &slot_name(&db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_and_restarted_mid_stream_loses_and_duplicates_nothing() {
    let mut nats = NatsServer::start().await;
    let (db, client) = capture_db("nats_restart").await;
    let mut capture = Headless::start(&capture_config(&db, &nats.url(), "")).await;
    capture.wait_for_state(CAPTURE, "running").await;
    insert_each(&client, 1..=100).await;
    // The stream exists once the first batch was published.
    capture.wait_for_changes(CAPTURE, 1).await;
    let mut viewer = Headless::start(&viewer_config(&nats.url(), "consumer = \"viewer\"")).await;
    viewer.wait_for_changes(VIEWER, 50).await;
    nats.kill();
    insert_each(&client, 101..=200).await;
    capture
        .wait_for("the sink retrying", |seen| {
            seen.iter()
                .any(|line| line["sink"] == "nats" && line["state"] == "retrying")
        })
        .await;
    nats.restart().await;
    insert_each(&client, 201..=300).await;
    viewer.wait_for_changes(VIEWER, 300).await;
    assert_exactly_once(
        "nats_killed_and_restarted",
        300,
        &inserted_ids(&viewer.seen),
    );
    assert_eq!(
        stream_messages(&nats.url()).await,
        300 * 2,
        "each change and its transaction line once in the stream"
    );
    drop(viewer);
    capture.signal_and_wait("TERM").await;
    support::drop_slot(&client, &slot_name(&db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_killed_with_9_and_restarted_duplicates_nothing() {
    let nats = NatsServer::start().await;
    let (db, client) = capture_db("nats_kill9").await;
    let capture = Headless::start(&capture_config(&db, &nats.url(), "")).await;
    let mut capture = capture;
    capture.wait_for_state(CAPTURE, "running").await;
    insert_each(&client, 1..=150).await;
    capture.wait_for_changes(CAPTURE, 60).await;
    let dir = capture.kill().await;
    wait_for_inactive_slot(&client, &slot_name(&db)).await;
    insert_each(&client, 151..=200).await;
    let mut capture = Headless::start_in(dir).await;
    // The restart sends again what was flushed but not yet confirmed to PostgreSQL.
    capture
        .wait_for("row 200 captured again", |seen| {
            changes_of(seen, CAPTURE)
                .iter()
                .any(|change| change["after"]["id"] == 200)
        })
        .await;
    let mut viewer = Headless::start(&viewer_config(&nats.url(), "")).await;
    viewer.wait_for_changes(VIEWER, 200).await;
    assert_exactly_once("capture_killed_9", 200, &inserted_ids(&viewer.seen));
    assert_eq!(stream_messages(&nats.url()).await, 400);
    drop(viewer);
    capture.signal_and_wait("TERM").await;
    support::drop_slot(&client, &slot_name(&db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_at_start_holds_capture_and_acknowledges_nothing() {
    let mut nats = NatsServer::down();
    let (db, client) = capture_db("nats_down").await;
    let mut capture = Headless::start(&capture_config(&db, &nats.url(), "")).await;
    capture.wait_for_state(CAPTURE, "running").await;
    let start = current_lsn(&client).await;
    insert_each(&client, 1..=20).await;
    capture
        .wait_for(
            "the sink retrying with the batch, naming the server",
            |seen| {
                seen.iter().any(|line| {
                    line["sink"] == "nats"
                        && line["state"] == "retrying"
                        && line["reason"].as_str().is_some_and(|reason| {
                            reason.contains(&nats.port.to_string()) && reason.contains("waiting")
                        })
                })
            },
        )
        .await;
    // Capture waits: its first batch is not flushed, so PostgreSQL is told nothing.
    let confirmed = confirmed_lsn(&client, &slot_name(&db)).await;
    assert!(
        confirmed <= start,
        "nothing acknowledged while NATS is down"
    );
    assert!(
        capture.flushes().is_empty(),
        "no batch flushed while NATS is down"
    );

    nats.restart().await;
    let mut viewer = Headless::start(&viewer_config(&nats.url(), "")).await;
    viewer.wait_for_changes(VIEWER, 20).await;
    assert_exactly_once("nats_down_at_start", 20, &inserted_ids(&viewer.seen));
    eventually("the slot confirmed past the inserts", async || {
        let confirmed = confirmed_lsn(&client, &slot_name(&db)).await;
        if confirmed > start {
            Ok(())
        } else {
            Err("not yet")
        }
    })
    .await;
    drop(viewer);
    capture.signal_and_wait("TERM").await;
    support::drop_slot(&client, &slot_name(&db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_keeps_delivering_when_one_node_is_killed() {
    let mut nodes = NatsServer::cluster().await;
    let urls = nodes
        .iter()
        .map(NatsServer::url)
        .collect::<Vec<_>>()
        .join(",");
    // The cluster elects its meta leader a moment after the nodes accept connections.
    eventually("JetStream ready on the cluster", async || {
        let client = async_nats::connect(nodes[0].url())
            .await
            .map_err(|e| e.to_string())?;
        let answer = client
            .request("$JS.API.INFO", "".into())
            .await
            .map_err(|e| e.to_string())?;
        let answer = String::from_utf8_lossy(&answer.payload).into_owned();
        if answer.contains("\"error\"") {
            Err(answer)
        } else {
            Ok(())
        }
    })
    .await;
    let (db, client) = capture_db("nats_cluster").await;
    let mut capture = Headless::start(&capture_config(&db, &urls, "replicas = 3\n")).await;
    capture.wait_for_state(CAPTURE, "running").await;
    insert_each(&client, 1..=100).await;
    capture.wait_for_changes(CAPTURE, 1).await;
    let mut viewer = Headless::start(&viewer_config(&urls, "consumer = \"viewer\"")).await;
    viewer.wait_for_changes(VIEWER, 100).await;
    nodes[0].kill();
    insert_each(&client, 101..=200).await;
    viewer.wait_for_changes(VIEWER, 200).await;
    assert_exactly_once("cluster_node_killed", 200, &inserted_ids(&viewer.seen));
    drop(viewer);
    capture.signal_and_wait("TERM").await;
    support::drop_slot(&client, &slot_name(&db)).await;
}

async fn current_lsn(client: &tokio_postgres::Client) -> u64 {
    let row = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap();
    support::lsn(row.get(0))
}

async fn confirmed_lsn(client: &tokio_postgres::Client, slot: &str) -> u64 {
    let row = client
        .query_one(
            "SELECT coalesce(confirmed_flush_lsn, '0/0')::text FROM pg_replication_slots \
             WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap();
    support::lsn(row.get(0))
}

/// Debezium's envelope published by nats-py (a client we did not write): the viewer shows the
/// changes with their tables, ops and rows, and a message that is no change event as an error
/// line naming its subject and sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_events_published_by_nats_py_show_as_changes() {
    let Some(python) = support::nats::nats_py().await else {
        eprintln!("skipped: nats-py could not be installed (no package registry reachable)");
        return;
    };
    let nats = NatsServer::start().await;
    let script = r#"
import asyncio, json, sys
import nats

async def main():
    nc = await nats.connect(sys.argv[1])
    js = nc.jetstream()
    await js.add_stream(name="DBZ", subjects=["dbserver1.>"])
    source = {"connector": "postgresql", "name": "dbserver1", "db": "inventory",
              "schema": "public", "table": "customers", "txId": 771, "lsn": 33227720,
              "ts_ms": 1764064801000}
    events = [
        {"before": None, "after": {"id": 1001, "email": "sally@example.com"}, "source": source, "op": "c", "ts_ms": 1764064801004},
        {"before": {"id": 1001, "email": "sally@example.com"}, "after": {"id": 1001, "email": "sally.t@example.com"}, "source": source, "op": "u", "ts_ms": 1764064801005},
    ]
    wrapped = {"schema": {"type": "struct", "optional": False, "name": "dbserver1.public.customers.Envelope"},
               "payload": {"before": {"id": 1001, "email": "sally.t@example.com"}, "after": None, "source": dict(source, txId=772), "op": "d", "ts_ms": 1764064801006}}
    for event in events + [wrapped]:
        await js.publish("dbserver1.public.customers", json.dumps(event).encode())
    await js.publish("dbserver1.public.junk", b"not an event")
    await nc.close()

asyncio.run(main())
"#;
    let status = tokio::process::Command::new(&python)
        .args(["-c", script, &nats.url()])
        .status()
        .await
        .expect("run python");
    assert!(status.success(), "the nats-py publisher ran");
    let config = format!(
        "[pipeline]\ntimeout_ms = 20\n\n\
         [[database]]\nname = \"dbz\"\nkind = \"nats\"\nurl = \"{}\"\n\n\
         [[listener]]\nidentifier = \"dbz\"\ndatabase = \"dbz\"\ntable = \"dbserver1.>\"\n\
         strategy = \"jetstream\"\ndeliver = \"all\"\n",
        nats.url()
    );
    let mut viewer = Headless::start(&config).await;
    let listener = "dbz/dbserver1.>";
    viewer
        .wait_for("three changes and the error line", |seen| {
            changes_of(seen, listener).len() == 3 && seen.iter().any(|line| line["type"] == "error")
        })
        .await;
    let changes = changes_of(&viewer.seen, listener);
    let ops: Vec<&str> = changes.iter().map(|c| c["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["insert", "update", "delete"]);
    assert!(changes.iter().all(|c| c["table"] == "public.customers"));
    assert_eq!(changes[0]["key"], json!({"id": 1001}));
    assert_eq!(changes[1]["after"]["email"], "sally.t@example.com");
    assert_eq!(changes[1]["before"]["email"], "sally@example.com");
    assert_eq!(changes[2]["after"], Value::Null);
    assert_eq!(changes[0]["tx"]["id"], "771");
    assert_eq!(changes[1]["tx"]["index"], 2);
    assert_eq!(changes[2]["tx"]["id"], "772");
    assert_eq!(changes[0]["commit_time"], "2025-11-25T10:00:01.000Z");
    let error = viewer
        .seen
        .iter()
        .find(|line| line["type"] == "error")
        .unwrap();
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("dbserver1.public.junk") && message.contains("sequence 4"),
        "{message}"
    );
    assert!(
        viewer.seen.iter().any(|line| line["type"] == "status"
            && line["listener"] == listener
            && line["state"] == "running"),
        "the listener runs on past the bad message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_nats_is_down_exits_and_acknowledges_nothing() {
    let nats = NatsServer::down();
    let (db, client) = capture_db("nats_down_stop").await;
    let mut capture = Headless::start(&capture_config(&db, &nats.url(), "")).await;
    capture.wait_for_state(CAPTURE, "running").await;
    let start = current_lsn(&client).await;
    insert_each(&client, 1..=5).await;
    // The sink retries from the start; a batch it holds says so.
    capture
        .wait_for("the sink retrying with the batch", |seen| {
            seen.iter().any(|line| {
                line["sink"] == "nats"
                    && line["state"] == "retrying"
                    && (line["reason"].as_str()).is_some_and(|reason| reason.contains("waiting"))
            })
        })
        .await;
    assert_eq!(
        capture.signal_and_wait("TERM").await,
        Some(1),
        "unpublished changes are a failed exit"
    );
    assert!(
        capture.stderr().contains("not published at shutdown"),
        "{}",
        capture.stderr()
    );
    assert!(confirmed_lsn(&client, &slot_name(&db)).await <= start);
    support::drop_slot(&client, &slot_name(&db)).await;
}

/// A batch of more messages than the client lets wait for their acks at once (5,000) is
/// published whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_the_clients_pending_acks_is_published() {
    let nats = NatsServer::start().await;
    let (db, client) = capture_db("nats_big_batch").await;
    let config = capture_config(&db, &nats.url(), "").replace(
        "chunk_size = 20\ntimeout_ms = 20",
        "chunk_size = 8000\ntimeout_ms = 500",
    );
    let mut capture = Headless::start(&config).await;
    capture.wait_for_state(CAPTURE, "running").await;
    client
        .batch_execute("INSERT INTO items SELECT g, g FROM generate_series(1, 6000) g")
        .await
        .unwrap();
    capture
        .wait_for("a flush of more than 5,000 changes", |seen| {
            seen.iter().any(|line| {
                line["type"] == "flush" && line["changes"].as_u64().is_some_and(|n| n > 5000)
            })
        })
        .await;
    eventually(
        "every change in the stream",
        async || match stream_messages(&nats.url()).await {
            6001 => Ok(()),
            other => Err(format!("{other} messages")),
        },
    )
    .await;
    capture.signal_and_wait("TERM").await;
    support::drop_slot(&client, &slot_name(&db)).await;
}

/// A viewer's TUI (in tmux) shows the remote capture's counters: the same inserts, updates and
/// deletes per op as the capture printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_tui_shows_the_captures_counters() {
    let nats = NatsServer::start().await;
    let (db, client) = capture_db("nats_tui").await;
    let mut capture = Headless::start(&capture_config(&db, &nats.url(), "")).await;
    capture.wait_for_state(CAPTURE, "running").await;
    client
        .batch_execute(
            "INSERT INTO items SELECT g, g FROM generate_series(1, 123) g;
             UPDATE items SET n = 0 WHERE id <= 7;
             DELETE FROM items WHERE id > 119;",
        )
        .await
        .unwrap();
    capture.wait_for_changes(CAPTURE, 134).await;
    let count = |op: &str| {
        changes_of(&capture.seen, CAPTURE)
            .iter()
            .filter(|change| change["op"] == op)
            .count()
            .to_string()
    };
    let counts = [count("insert"), count("update"), count("delete")];
    assert_eq!(counts, ["123", "7", "4"]);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cdc.toml"), viewer_config(&nats.url(), "")).unwrap();
    let tmux = support::tmux::Tmux::start_tui("nats", dir.path(), "", 160, 40);
    let screen = tmux
        .wait_for("the remote capture's counters", |screen| {
            screen.lines().any(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                line.contains(VIEWER) && counts.iter().all(|count| words.contains(&count.as_str()))
            })
        })
        .await;
    println!("viewer TUI:\n{screen}");
    tmux.keys("q");
    assert_eq!(tmux.exit_status().await.trim(), "0");
    capture.signal_and_wait("TERM").await;
    support::drop_slot(&client, &slot_name(&db)).await;
}

/// A capturing TUI (in tmux) with `[sinks.nats]` shows the sink's state in its header:
/// `running` once a batch was published, `retrying` with the reason while the server is
/// killed, `running` again after it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capturing_tui_shows_the_sink_retrying_while_nats_is_down_then_running() {
    let mut nats = NatsServer::start().await;
    let (db, client) = capture_db("nats_tui_sink").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cdc.toml"),
        capture_config(&db, &nats.url(), ""),
    )
    .unwrap();
    let tmux = support::tmux::Tmux::start_tui("nats-sink", dir.path(), "", 160, 40);
    let header = |screen: &str| screen.lines().next().unwrap_or_default().to_string();
    tmux.wait_for("the listener running", |screen| {
        screen
            .lines()
            .any(|line| line.contains(CAPTURE) && line.contains("running"))
    })
    .await;
    insert_each(&client, 1..=3).await;
    tmux.wait_for("the sink running", |screen| {
        header(screen).contains("nats: running")
    })
    .await;

    nats.kill();
    insert_each(&client, 4..=6).await;
    let screen = tmux
        .wait_for("the sink retrying, with the reason", |screen| {
            header(screen).contains("nats: retrying — ")
        })
        .await;
    println!("NATS down:\n{screen}");
    assert!(
        header(&screen).contains(&format!("nats://127.0.0.1:{}", nats.port)),
        "the reason names the server: {}",
        header(&screen)
    );

    nats.restart().await;
    tmux.wait_for("the sink running again", |screen| {
        header(screen).contains("nats: running")
    })
    .await;
    tmux.keys("q");
    assert_eq!(tmux.exit_status().await.trim(), "0");
    support::drop_slot(&client, &slot_name(&db)).await;
}

/// A viewer TUI (in tmux) shows a stream message that is no change event as an error row in
/// place, with its subject, sequence and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_tui_shows_an_undecodable_message_as_an_error_row() {
    let nats = NatsServer::start().await;
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let jetstream = async_nats::jetstream::new(client);
    jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: "CDC".into(),
            subjects: vec!["cdc.>".into()],
            ..Default::default()
        })
        .await
        .expect("the stream");
    jetstream
        .publish("cdc.shop.junk", "not an event".into())
        .await
        .expect("publish")
        .await
        .expect("acknowledged");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cdc.toml"), viewer_config(&nats.url(), "")).unwrap();
    let tmux = support::tmux::Tmux::start_tui("nats-error", dir.path(), "", 160, 40);
    let screen = tmux
        .wait_for("the error row", |screen| {
            screen.lines().any(|line| {
                line.contains(" error ") && line.contains("subject cdc.shop.junk sequence 1:")
            })
        })
        .await;
    println!("an error row:\n{screen}");
    tmux.keys("q");
    assert_eq!(tmux.exit_status().await.trim(), "0");
}
