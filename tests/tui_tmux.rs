//! The real binary's TUI in a tmux pane against a throwaway cluster: the listener appears,
//! inserts are counted, `p` pauses, `?` shows help, `q` exits 0 and leaves the alternate screen;
//! a failure's whole reason reads via `i` at 80x24, `r` restarts a stopped listener on its slot
//! with nothing lost, `/id=4` finds the row, `w` writes what headless output has.

mod support;

use support::TestDb;
use support::tmux::Tmux;

fn listener_row<'a>(screen: &'a str, identity: &str) -> Option<&'a str> {
    screen.lines().find(|line| line.contains(identity))
}

#[tokio::test]
async fn the_tui_counts_inserts_pauses_helps_and_quits_cleanly() {
    let db = TestDb::new("tui_tmux").await;
    let client = orders_table(&db).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &db.url, POLLING_ORDERS);
    let tmux = Tmux::start_tui("tui", dir.path(), "", 140, 40);
    let identity = "orders/public.orders";
    wait_running(&tmux, identity).await;
    assert_eq!(
        tmux.run(&["display", "-p", "-t", "cdc", "#{alternate_on}"])
            .trim(),
        "1"
    );

    let screen = insert_orders(&client, &tmux, 123).await;
    println!("main screen during activity:\n{screen}");

    tmux.keys("p");
    tmux.wait_for("paused", |screen| {
        listener_row(screen, identity).is_some_and(|row| row.contains("paused"))
    })
    .await;

    tmux.keys("?");
    // Wait for the whole popup: a capture can catch a frame half drawn.
    let help = tmux
        .wait_for("the help screen listing quit and pause", |screen| {
            screen.contains("quit (terminal restored)")
                && screen.contains("pause / resume")
                && screen.contains("cdc-tui.log")
        })
        .await;
    assert!(help.contains("Help"), "{help}");
    tmux.keys("Escape");
    tmux.keys("q");
    assert_eq!(tmux.exit_status().await, "0", "q exits 0");
    assert_eq!(
        tmux.run(&["display", "-p", "-t", "cdc", "#{alternate_on}"])
            .trim(),
        "0",
        "the TUI left the alternate screen"
    );
    assert!(
        dir.path().join(".cdc-tui/cdc-tui.log").exists(),
        "TUI mode logs to a file"
    );
}

/// How many changes the grouped log's running transaction shows so far, if one is on screen.
fn running_so_far(screen: &str) -> Option<u64> {
    so_far(
        screen
            .lines()
            .find(|line| line.contains("changes so far"))?,
    )
}

/// The count of a running transaction's row: `tx 901 · running · 3,120 changes so far · …`.
fn so_far(row: &str) -> Option<u64> {
    let count = row.split(" · running · ").nth(1)?.split(' ').next()?;
    count.replace(',', "").parse().ok()
}

/// Reads what the FIFO holds now, up to `limit` bytes, without waiting for more.
fn read_some(fifo: &mut std::fs::File, limit: usize) -> usize {
    use std::io::Read;
    let mut buffer = vec![0; 16 * 1024];
    let mut read = 0;
    while read < limit {
        match fifo.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(error) => panic!("reading the FIFO: {error}"),
        }
    }
    read
}

#[tokio::test]
async fn a_running_transaction_grows_on_screen_then_shows_as_one_committed_row() {
    use std::os::unix::fs::OpenOptionsExt;
    let db = TestDb::new("tui_tx").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE events (id bigserial PRIMARY KEY, payload text NOT NULL)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The jsonl sink writes to a FIFO this test reads: while the test does not read, the
    // handler's flush waits, so the screen holds a transaction partly flushed (changes seen,
    // no transaction line yet) for as long as the test looks.
    let fifo = dir.path().join("events.jsonl");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    const O_NONBLOCK: i32 = 0o4000;
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    write_config(
        dir.path(),
        &db.url,
        &format!(
            "[pipeline]\nchunk_size = 50\n\n[sinks]\njsonl = \"events.jsonl\"\n\n{}",
            logical_listener("app", "public.events")
        ),
    );
    let tmux = Tmux::start_tui("tui-tx", dir.path(), "", 140, 40);
    wait_running(&tmux, "app/public.events").await;
    tmux.keys("t");
    client
        .batch_execute(
            "BEGIN;
             SELECT pg_logical_emit_message(true, 'cdc-tui', 'batch job 7');
             INSERT INTO events (payload) SELECT 'event ' || n FROM generate_series(1, 3000) n;
             COMMIT;",
        )
        .await
        .unwrap();
    let screen = tmux
        .wait_for("the transaction running", |screen| {
            running_so_far(screen).is_some()
        })
        .await;
    let first = running_so_far(&screen).unwrap();
    assert!(first < 3000, "{screen}");
    assert!(
        screen.contains("«batch job 7»"),
        "the message labels it: {screen}"
    );
    // Let a few batches more through: the same row grows.
    read_some(&mut reader, 128 * 1024);
    let screen = tmux
        .wait_for("the running transaction grown", |screen| {
            running_so_far(screen).is_some_and(|now| now > first)
        })
        .await;
    println!("a running transaction:\n{screen}");

    // Now read everything: the transaction line arrives and the row is committed.
    let drain = std::thread::spawn({
        let fifo = fifo.clone();
        move || {
            use std::io::Read;
            let mut all = Vec::new();
            std::fs::File::open(fifo)
                .unwrap()
                .read_to_end(&mut all)
                .unwrap();
            all.len()
        }
    });
    let screen = tmux
        .wait_for("the transaction committed as one row", |screen| {
            screen.lines().any(|line| {
                line.contains(" · 3,000 changes · events +3,000")
                    && line.contains("«batch job 7»")
                    && !line.contains("running")
            })
        })
        .await;
    println!("the committed transaction:\n{screen}");
    drop(reader);
    tmux.keys("q");
    assert_eq!(tmux.exit_status().await, "0", "q exits 0");
    assert!(drain.join().unwrap() > 0);
}

#[tokio::test]
async fn a_replay_of_a_recorded_headless_run_shows_the_recorded_counters() {
    let db = TestDb::new("tui_replay").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE orders (id bigserial PRIMARY KEY, item text NOT NULL)")
        .await
        .unwrap();
    let mut headless =
        support::Headless::start(&config(&db.url, &logical_listener("app", "public.orders"))).await;
    let identity = "app/public.orders";
    headless.wait_for_state(identity, "running").await;
    client
        .batch_execute(
            "INSERT INTO orders (item) SELECT 'item ' || n FROM generate_series(1, 123) n;
             UPDATE orders SET item = 'changed' WHERE id <= 7;",
        )
        .await
        .unwrap();
    headless.wait_for_changes(identity, 130).await;
    assert_eq!(headless.signal_and_wait("TERM").await, Some(0));
    headless.wait_for_state(identity, "stopped").await;
    // The recording: the run's stdout, line by line.
    let dir = tempfile::tempdir().unwrap();
    let recorded: String = headless
        .seen
        .iter()
        .map(|line| format!("{line}\n"))
        .collect();
    let batches = headless
        .seen
        .iter()
        .filter(|line| line["type"] == "flush")
        .count();
    assert!(batches > 0);
    std::fs::write(dir.path().join("recorded.jsonl"), recorded).unwrap();

    let tmux = Tmux::start_tui_with_args(
        "tui-replay",
        dir.path(),
        "",
        "--replay recorded.jsonl",
        140,
        40,
    );
    let flushes = format!("Flush {batches} batches · 130 changes");
    let screen = tmux
        .wait_for(
            "the recorded counters and flush timings, the replay done",
            |screen| {
                screen.contains("replay recorded.jsonl · 100%")
                    && screen.contains("· done")
                    && screen.contains(&flushes)
                    && listener_row(screen, identity).is_some_and(|row| {
                        let words: Vec<&str> = row.split_whitespace().collect();
                        row.contains("stopped") && words.windows(2).any(|pair| pair == ["123", "7"])
                    })
            },
        )
        .await;
    println!("the replay:\n{screen}");
    tmux.keys("t");
    tmux.wait_for("the inserts as one transaction", |screen| {
        // One simple query: one transaction.
        screen.contains(" · 130 changes · orders +123 ~7")
    })
    .await;
    tmux.keys("q");
    assert_eq!(tmux.exit_status().await, "0", "q exits 0");
}

/// A config of one database and the given `[[listener]]` (and any further) tables.
fn config(url: &str, rest: &str) -> String {
    format!("[[database]]\nname = \"shop\"\nkind = \"postgres\"\nurl = \"{url}\"\n\n{rest}")
}

/// [`config`] as the dir's `cdc.toml`.
fn write_config(dir: &std::path::Path, url: &str, rest: &str) {
    std::fs::write(dir.join("cdc.toml"), config(url, rest)).unwrap();
}

/// A logical listener on the shop database.
fn logical_listener(identifier: &str, table: &str) -> String {
    format!(
        "[[listener]]\nidentifier = \"{identifier}\"\ndatabase = \"shop\"\ntable = \"{table}\"\n\
         strategy = \"logical\"\n"
    )
}

/// The screen's text with the box drawing taken out and the words run together, so text
/// wrapped over several rows of a popup reads as one line.
fn words(screen: &str) -> String {
    screen
        .replace(
            |c: char| ('\u{2500}'..='\u{259f}').contains(&c) || c == '▶',
            " ",
        )
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

const POLLING_ORDERS: &str = r#"
[[listener]]
identifier = "orders"
database = "shop"
table = "public.orders"
strategy = "polling"
cursor_column = "updated_at"
interval_ms = 100
"#;

/// Waits for the listener's row to say `running` (polling starts from the time it starts:
/// rows are inserted only once it runs).
async fn wait_running(tmux: &Tmux, identity: &str) {
    tmux.wait_for("the listener running", |screen| {
        listener_row(screen, identity).is_some_and(|row| row.contains("running"))
    })
    .await;
}

/// Inserts `count` orders and waits for the orders listener's row to count them; the screen.
async fn insert_orders(client: &tokio_postgres::Client, tmux: &Tmux, count: i64) -> String {
    client
        .execute(
            "INSERT INTO orders (item) SELECT 'item ' || n FROM generate_series(1, $1::int8) n",
            &[&count],
        )
        .await
        .unwrap();
    let total = count.to_string();
    tmux.wait_for(&format!("{count} inserts"), |screen| {
        listener_row(screen, "orders/public.orders")
            .is_some_and(|row| row.split_whitespace().any(|word| word == total))
    })
    .await
}

async fn orders_table(db: &TestDb) -> tokio_postgres::Client {
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE orders (id bigserial PRIMARY KEY, item text NOT NULL, \
             updated_at timestamptz NOT NULL DEFAULT clock_timestamp())",
        )
        .await
        .unwrap();
    client
}

#[tokio::test]
async fn a_wal_level_replica_failure_reads_in_full_with_i_at_80x24() {
    let cluster = support::wal_level_replica_cluster().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &cluster.url("replica"),
        &logical_listener("t", "public.t"),
    );
    let tmux = Tmux::start_tui("tui-replica", dir.path(), "", 80, 24);
    tmux.wait_for("the listener failed", |screen| {
        listener_row(screen, "t/public.t").is_some_and(|row| row.contains("failed"))
    })
    .await;
    tmux.keys("i");
    let reason = "the server runs with wal_level = replica, and logical replication needs \
                  wal_level = logical: run `ALTER SYSTEM SET wal_level = logical` as a superuser \
                  and restart the server (or use strategy = \"polling\")";
    let popup = tmux
        .wait_for("the whole reason in the listener detail", |screen| {
            screen.contains("Listener t/public.t") && words(screen).contains(reason)
        })
        .await;
    println!("the listener detail at 80x24:\n{popup}");
    tmux.keys("Escape");
    tmux.keys("q");
    assert_eq!(tmux.exit_status().await, "0");
    drop(tmux);
    cluster.stop().await.expect("stop the cluster");
}

#[tokio::test]
async fn r_brings_a_stopped_listener_back_on_its_slot_with_nothing_lost() {
    let db = TestDb::new("tui_restart").await;
    let client = orders_table(&db).await;
    let slot = format!("tui_restart_{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &db.url,
        &format!(
            "[sinks]\njsonl = \"sink.jsonl\"\n\n[[listener]]\nidentifier = \"orders\"\n\
             database = \"shop\"\ntable = \"public.orders\"\nstrategy = \"logical\"\n\
             slot = \"{slot}\"\npublication = \"{slot}\"\n"
        ),
    );
    let tmux = Tmux::start_tui("tui-restart", dir.path(), "", 140, 40);
    let identity = "orders/public.orders";
    let row_has = |screen: &str, word: &str| {
        listener_row(screen, identity).is_some_and(|row| row.split_whitespace().any(|w| w == word))
    };
    tmux.wait_for("running", |screen| row_has(screen, "running"))
        .await;
    let insert = async |from: i64, to: i64| {
        client
            .execute(
                "INSERT INTO orders (id, item) SELECT n, 'item ' || n FROM generate_series($1::int8, $2::int8) n",
                &[&from, &to],
            )
            .await
            .unwrap();
    };
    insert(1, 5).await;
    tmux.wait_for("5 inserts", |screen| row_has(screen, "5"))
        .await;

    // The slot is persistent: s asks first.
    tmux.keys("s");
    tmux.wait_for("the confirmation", |screen| {
        words(screen).contains("persistent slot keeps holding WAL")
    })
    .await;
    tmux.keys("y");
    tmux.wait_for("stopped", |screen| row_has(screen, "stopped"))
        .await;
    support::wait_for_inactive_slot(&client, &slot).await;
    insert(6, 12).await;

    tmux.keys("r");
    let screen = tmux
        .wait_for(
            "running again with the 7 rows written while stopped",
            |screen| row_has(screen, "running") && row_has(screen, "7"),
        )
        .await;
    println!("after r:\n{screen}");
    let slots: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND NOT temporary",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 1, "the same persistent slot");
    let sink = dir.path().join("sink.jsonl");
    let ids = support::eventually("every row in the sink", async || {
        let text = std::fs::read_to_string(&sink).map_err(|e| e.to_string())?;
        let ids: std::collections::BTreeSet<i64> = text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| line["type"] == "change")
            .filter_map(|line| line["key"]["id"].as_i64())
            .collect();
        if ids.len() == 12 {
            Ok(ids)
        } else {
            Err(format!("{ids:?}"))
        }
    })
    .await;
    assert_eq!(ids, (1..=12).collect(), "nothing lost across the stop");
    tmux.keys("q");
    assert_eq!(tmux.exit_status().await, "0");
    support::drop_slot(&client, &slot).await;
}

#[tokio::test]
async fn a_column_filter_finds_the_row() {
    let db = TestDb::new("tui_filter").await;
    let client = orders_table(&db).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &db.url, POLLING_ORDERS);
    let tmux = Tmux::start_tui("tui-filter", dir.path(), "", 120, 30);
    wait_running(&tmux, "orders/public.orders").await;
    insert_orders(&client, &tmux, 40).await;
    tmux.keys("/");
    tmux.keys("id=4");
    tmux.keys("Enter");
    // One match (equals, not contains: not 40 nor 14), and the whole frame drawn: one row.
    tmux.wait_for("one match, the row with id 4", |screen| {
        let rows: Vec<&str> = screen
            .lines()
            .filter(|line| line.contains("insert   public.orders"))
            .collect();
        screen.contains("filter \"id=4\": 1 match") && rows.len() == 1 && rows[0].contains(" id=4 ")
    })
    .await;
    tmux.keys("q");
    assert_eq!(tmux.exit_status().await, "0");
}

#[tokio::test]
async fn w_writes_the_lines_headless_output_has_for_the_same_events() {
    let db = TestDb::new("tui_export").await;
    let client = orders_table(&db).await;
    let dir = tempfile::tempdir().unwrap();
    // The jsonl sink writes what headless mode prints, for the same run's events.
    write_config(
        dir.path(),
        &db.url,
        &format!("[sinks]\njsonl = \"sink.jsonl\"\n{POLLING_ORDERS}"),
    );
    let tmux = Tmux::start_tui("tui-export", dir.path(), "", 140, 40);
    wait_running(&tmux, "orders/public.orders").await;
    insert_orders(&client, &tmux, 6).await;
    tmux.keys("w");
    tmux.wait_for("the path asked", |screen| {
        screen.contains("Write events to a file")
    })
    .await;
    tmux.keys("Enter");
    let screen = tmux
        .wait_for("the file written", |screen| {
            screen.contains("wrote 6 events to")
        })
        .await;
    let state_dir = dir.path().join(".cdc-tui");
    let written = std::fs::read_dir(&state_dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("events-") && name.ends_with(".jsonl"))
        })
        .unwrap_or_else(|| panic!("no events-*.jsonl in {}: {screen}", state_dir.display()));
    let exported = std::fs::read_to_string(&written).unwrap();
    let sink = std::fs::read_to_string(dir.path().join("sink.jsonl")).unwrap();
    let sink_changes: Vec<&str> = sink
        .lines()
        .filter(|line| line.starts_with(r#"{"type":"change""#))
        .collect();
    assert_eq!(exported.lines().collect::<Vec<_>>(), sink_changes);
    assert_eq!(sink_changes.len(), 6);
    tmux.keys("q");
    assert_eq!(tmux.exit_status().await, "0");
}

/// The count of the streamed transaction pinned under the log while it runs (`⏵ tx 901 ·
/// running · 3,120 changes so far · public.events`), if one is on screen.
fn streamed_so_far(screen: &str) -> Option<u64> {
    so_far(screen.lines().find(|line| line.contains("⏵ tx"))?)
}

/// The listener row's insert count.
fn inserts(screen: &str, identity: &str) -> Option<u64> {
    let row = listener_row(screen, identity)?;
    let words: Vec<&str> = row.split_whitespace().collect();
    let state = words.iter().position(|word| *word == "running")?;
    words.get(state + 1)?.replace(',', "").parse().ok()
}

/// A TUI on `public.events` whose walsender streams transactions over 64kB while they run,
/// the grouped view on; and a client of its own for the long transaction.
async fn streaming_tui(
    label: &str,
) -> (
    TestDb,
    tempfile::TempDir,
    Tmux,
    tokio_postgres::Client,
    tokio_postgres::Client,
) {
    let db = TestDb::new(label).await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE events (id int PRIMARY KEY, pad text)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}?options=-c%20logical_decoding_work_mem%3D64kB", db.url);
    write_config(dir.path(), &url, &logical_listener("big", "public.events"));
    let tmux = Tmux::start_tui(label, dir.path(), "", 140, 40);
    wait_running(&tmux, "big/public.events").await;
    tmux.keys("t");
    let long = db.client().await;
    (db, dir, tmux, client, long)
}

async fn insert_in(client: &tokio_postgres::Client, from: i32, to: i32) {
    client
        .execute(
            "INSERT INTO events SELECT i, repeat('x', 100) FROM generate_series($1::int, $2::int) i",
            &[&from, &to],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_transaction_shows_running_grows_then_becomes_its_committed_row() {
    let (_db, _dir, tmux, _client, long) = streaming_tui("tui-streamed").await;
    long.batch_execute("BEGIN").await.unwrap();
    insert_in(&long, 1, 3000).await;
    // Open, on the server: what shows was streamed while it runs.
    let screen = tmux
        .wait_for("the open transaction pinned as running", |screen| {
            streamed_so_far(screen).is_some()
        })
        .await;
    let first = streamed_so_far(&screen).unwrap();
    assert!(first <= 3000, "{screen}");
    assert!(screen.contains("public.events"), "its table: {screen}");
    assert_eq!(
        inserts(&screen, "big/public.events"),
        Some(0),
        "nothing delivered: {screen}"
    );
    println!("a streamed transaction running:\n{screen}");

    insert_in(&long, 3001, 6000).await;
    tmux.wait_for("the running count grown", |screen| {
        streamed_so_far(screen).is_some_and(|now| now > first)
    })
    .await;

    long.batch_execute("COMMIT").await.unwrap();
    let screen = tmux
        .wait_for(
            "one committed row with every change, nothing pinned",
            |screen| {
                let committed = screen.lines().any(|line| {
                    line.contains(" · 6,000 changes · events +6,000") && !line.contains("running")
                });
                committed && !screen.contains("⏵ tx")
            },
        )
        .await;
    assert_eq!(
        inserts(&screen, "big/public.events"),
        Some(6000),
        "{screen}"
    );
    println!("committed:\n{screen}");
    tmux.keys("q");
    assert_eq!(tmux.exit_status().await, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_transaction_rolled_back_leaves_no_change_and_its_row_goes() {
    let (_db, _dir, tmux, client, long) = streaming_tui("tui-streamed-rollback").await;
    long.batch_execute("BEGIN").await.unwrap();
    insert_in(&long, 1, 3000).await;
    tmux.wait_for("the open transaction pinned as running", |screen| {
        streamed_so_far(screen).is_some()
    })
    .await;
    long.batch_execute("ROLLBACK").await.unwrap();
    let screen = tmux
        .wait_for("the transaction shown rolled back", |screen| {
            streamed_so_far(screen).is_none()
                && screen
                    .lines()
                    .any(|line| line.contains("⏵ tx") && line.contains(" · rolled back · "))
        })
        .await;
    println!("rolled back:\n{screen}");
    // A row written after it is the only change that arrives.
    client
        .execute("INSERT INTO events VALUES (9999, 'after')", &[])
        .await
        .unwrap();
    let screen = tmux
        .wait_for(
            "the row written after it, and the rolled-back row gone",
            |screen| inserts(screen, "big/public.events") == Some(1) && !screen.contains("⏵ tx"),
        )
        .await;
    assert!(!screen.contains("events +3,000"), "{screen}");
    tmux.keys("q");
    assert_eq!(tmux.exit_status().await, "0");
}

#[tokio::test]
async fn a_new_column_shows_as_a_schema_row_in_place_and_enter_shows_it_whole() {
    let db = TestDb::new("tui_schema").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, qty int)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &db.url, &logical_listener("app", "public.*"));
    let tmux = Tmux::start_tui("tui-schema", dir.path(), "", 140, 40);
    wait_running(&tmux, "app/public.*").await;
    client
        .batch_execute(
            "INSERT INTO orders VALUES (1, 2);
             ALTER TABLE orders ADD COLUMN note text;
             INSERT INTO orders VALUES (2, 3, 'gift');",
        )
        .await
        .unwrap();
    let row_of = |screen: &str, needle: &str| screen.lines().position(|line| line.contains(needle));
    let screen = tmux
        .wait_for("the schema row between the inserts", |screen| {
            let schema = row_of(
                screen,
                "schema   public.orders columns added note (type 25)",
            );
            let first = row_of(screen, "insert   public.orders id=1");
            let second = row_of(screen, "insert   public.orders id=2");
            matches!((first, schema, second), (Some(a), Some(b), Some(c)) if a < b && b < c)
        })
        .await;
    println!("a schema row:\n{screen}");
    // The cursor up from the newest row onto the schema row; Enter shows all of it.
    tmux.keys("Tab");
    tmux.keys("Up");
    tmux.keys("Enter");
    tmux.wait_for("the note's popup", |screen| {
        let text = words(screen);
        text.contains("Schema change public.orders")
            && text.contains("change columns")
            && text.contains("added note (type 25)")
    })
    .await;
    tmux.keys("Escape");
    tmux.keys("q");
    assert_eq!(tmux.exit_status().await, "0");
}
