//! The real binary's TUI in a tmux pane against a throwaway cluster: the listener appears,
//! inserts are counted, `p` pauses, `?` shows help, `q` exits 0 and leaves the alternate screen.

mod support;

use support::TestDb;
use support::tmux::Tmux;

fn listener_row<'a>(screen: &'a str, identity: &str) -> Option<&'a str> {
    screen.lines().find(|line| line.contains(identity))
}

#[tokio::test]
async fn the_tui_counts_inserts_pauses_helps_and_quits_cleanly() {
    let db = TestDb::new("tui_tmux").await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE orders (id bigserial PRIMARY KEY, item text NOT NULL, \
             updated_at timestamptz NOT NULL DEFAULT clock_timestamp())",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cdc.toml"),
        format!(
            r#"
[[database]]
name = "shop"
kind = "postgres"
url = "{url}"

[[listener]]
identifier = "orders"
database = "shop"
table = "public.orders"
strategy = "polling"
cursor_column = "updated_at"
interval_ms = 100
"#,
            url = db.url
        ),
    )
    .unwrap();
    let tmux = Tmux::start_tui("tui", dir.path(), "", 140, 40);
    let identity = "orders/public.orders";
    tmux.wait_for("the listener running", |screen| {
        listener_row(screen, identity).is_some_and(|row| row.contains("running"))
    })
    .await;
    assert_eq!(
        tmux.run(&["display", "-p", "-t", "cdc", "#{alternate_on}"])
            .trim(),
        "1"
    );

    client
        .execute(
            "INSERT INTO orders (item) SELECT 'item ' || n FROM generate_series(1, 123) n",
            &[],
        )
        .await
        .unwrap();
    let screen = tmux
        .wait_for("123 inserts", |screen| {
            listener_row(screen, identity)
                .is_some_and(|row| row.split_whitespace().any(|word| word == "123"))
        })
        .await;
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
    let line = screen
        .lines()
        .find(|line| line.contains("changes so far"))?;
    let count = line.split(" · running · ").nth(1)?.split(' ').next()?;
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
    std::fs::write(
        dir.path().join("cdc.toml"),
        format!(
            r#"
[pipeline]
chunk_size = 50

[sinks]
jsonl = "events.jsonl"

[[database]]
name = "shop"
kind = "postgres"
url = "{url}"

[[listener]]
identifier = "app"
database = "shop"
table = "public.events"
strategy = "logical"
"#,
            url = db.url
        ),
    )
    .unwrap();
    let tmux = Tmux::start_tui("tui-tx", dir.path(), "", 140, 40);
    tmux.wait_for("the listener running", |screen| {
        listener_row(screen, "app/public.events").is_some_and(|row| row.contains("running"))
    })
    .await;
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
    let mut headless = support::Headless::start(&format!(
        r#"
[[database]]
name = "shop"
kind = "postgres"
url = "{url}"

[[listener]]
identifier = "app"
database = "shop"
table = "public.orders"
strategy = "logical"
"#,
        url = db.url
    ))
    .await;
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
    let screen = tmux
        .wait_for("the recorded counters, the replay done", |screen| {
            screen.contains("replay recorded.jsonl · 100%")
                && screen.contains("· done")
                && listener_row(screen, identity).is_some_and(|row| {
                    let words: Vec<&str> = row.split_whitespace().collect();
                    row.contains("stopped") && words.windows(2).any(|pair| pair == ["123", "7"])
                })
        })
        .await;
    println!("the replay:\n{screen}");
    assert!(
        screen.contains(&format!("Flush {batches} batches · 130 changes")),
        "the recorded flush timings: {screen}"
    );
    tmux.keys("t");
    tmux.wait_for("the inserts as one transaction", |screen| {
        // One simple query: one transaction.
        screen.contains(" · 130 changes · orders +123 ~7")
    })
    .await;
    tmux.keys("q");
    assert_eq!(tmux.exit_status().await, "0", "q exits 0");
}
