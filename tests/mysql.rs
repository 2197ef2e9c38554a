//! MySQL `binlog` behaviour beyond the contract, on throwaway MariaDB servers: how each type
//! prints, ALTER TABLE mid-stream, scopes and zero-config, a purged binlog, and the settings
//! and privileges that fail with advice.

mod support;

use mysql_async::prelude::Queryable;
use rand::Rng;
use serde_json::{Value, json};
use support::mariadb::{self, MariaDb};
use support::proxy::Proxy;
use support::{Headless, changes_of, reason_of};

/// A cdc.toml with one binlog listener on `table` of `url`'s database.
fn config(url: &str, table: &str, extra: &str) -> String {
    format!(
        "[pipeline]\nchunk_size = 10\ntimeout_ms = 20\n\n\
         [[database]]\nname = \"db\"\nkind = \"mysql\"\nurl = \"{url}\"\n\n\
         [[listener]]\nidentifier = \"l\"\ndatabase = \"db\"\ntable = '{table}'\n\
         strategy = \"binlog\"\n{extra}\n"
    )
}

async fn execute(server: &MariaDb, database: &str, sql: &str) {
    let mut conn = server.connect(database).await;
    conn.query_drop(sql).await.expect(sql);
    conn.disconnect().await.expect("disconnect");
}

/// A new database of `server` with a table `t` of `columns`, watched by a headless cdc-tui
/// with the binlog listener `l`: the database, the listener's identity, and cdc-tui.
async fn watch_new_table(
    server: &MariaDb,
    prefix: &str,
    columns: &str,
) -> (String, String, Headless) {
    let db = server.create_database(prefix).await;
    execute(server, &db, &format!("CREATE TABLE t ({columns})")).await;
    let table = format!("{db}.t");
    let cdc = Headless::start(&config(&server.url(&db), &table, "")).await;
    (db, format!("l/{table}"), cdc)
}

/// The schema notes of the listener `listener`.
fn schema_notes<'a>(seen: &'a [Value], listener: &str) -> Vec<&'a Value> {
    seen.iter()
        .filter(|line| line["type"] == "schema" && line["listener"] == listener)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_prints_as_the_readme_says() {
    let server = mariadb::shared().await;
    let db = server.create_database("types").await;
    execute(
        server,
        &db,
        "CREATE TABLE t (
            id INT UNSIGNED PRIMARY KEY,
            tiny TINYINT, big BIGINT, ubig BIGINT UNSIGNED,
            dec_col DECIMAL(20, 6), f FLOAT, d DOUBLE,
            day DATE, tm TIME(3), dt DATETIME(6), ts TIMESTAMP(2) NULL, yr YEAR,
            c CHAR(5), vc VARCHAR(20), txt TEXT, latin VARCHAR(10) CHARACTER SET latin1,
            bin BINARY(3), vbin VARBINARY(8), blb BLOB,
            bits BIT(10), e ENUM('small', 'large'), s SET('red', 'green', 'blue'),
            j JSON,
            gen INT AS (id * 2) STORED,
            vgen INT AS (id * 3) VIRTUAL
        )",
    )
    .await;
    let table = format!("{db}.t");
    let listener = format!("l/{table}");
    let mut cdc = Headless::start(&config(&server.url(&db), &table, "")).await;
    cdc.wait_for_state(&listener, "running").await;
    execute(
        server,
        &db,
        "INSERT INTO t (id, tiny, big, ubig, dec_col, f, d, day, tm, dt, ts, yr, c, vc, txt, \
         latin, bin, vbin, blb, bits, e, s, j) VALUES (1, -128, -9223372036854775808, \
         18446744073709551615, 12345678901234.123456, 0.1, 2.5e300, '2024-02-29', \
         '-838:59:58.125', '2024-01-31 23:59:59.000001', '2038-01-19 03:14:07.99', 2024, \
         'ab', 'héllo', 'ünïcode ✓', 'café', x'0102', x'00ff', x'deadbeef', b'1000000001', \
         'large', 'red,blue', '{\"n\": 1.50, \"a\": [1, 2], \"s\": \"x\"}')",
    )
    .await;
    execute(server, &db, "UPDATE t SET e = 'small', s = '' WHERE id = 1").await;
    execute(server, &db, "DELETE FROM t WHERE id = 1").await;
    cdc.wait_for_changes(&listener, 3).await;
    let changes = changes_of(&cdc.seen, &listener);
    let after = &changes[0]["after"];
    let expected = json!({
        "id": 1, "tiny": -128, "big": i64::MIN, "ubig": u64::MAX,
        "dec_col": "12345678901234.123456", "f": 0.1, "d": 2.5e300,
        "day": "2024-02-29", "tm": "-838:59:58.125", "dt": "2024-01-31 23:59:59.000001",
        "ts": "2038-01-19 03:14:07.99", "yr": 2024,
        "c": "ab", "vc": "héllo", "txt": "ünïcode ✓", "latin": "café",
        "bin": "\\x010200", "vbin": "\\x00ff", "blb": "\\xdeadbeef",
        "bits": "1000000001", "e": "large", "s": "red,blue",
        "j": {"n": 1.50, "a": [1, 2], "s": "x"},
        "gen": 2,
        "vgen": 3,
    });
    for (column, value) in expected.as_object().expect("an object") {
        assert_eq!(&after[column], value, "{column}: {after}");
    }
    assert_eq!(changes[1]["op"], "update");
    assert_eq!(changes[1]["before"]["e"], "large");
    assert_eq!(changes[1]["after"]["e"], "small");
    assert_eq!(changes[1]["after"]["s"], "");
    assert_eq!(changes[2]["op"], "delete");
    assert_eq!(changes[2]["key"], json!({"id": 1}));
    assert_eq!(changes[2]["before"]["vc"], "héllo");
    assert!(changes[2]["after"].is_null());
    cdc.signal_and_wait("TERM").await;
    server.drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_table_mid_stream_shows_the_new_columns_with_a_schema_note() {
    let server = mariadb::shared().await;
    let db = server.create_database("alter").await;
    execute(
        server,
        &db,
        "CREATE TABLE t (id INT PRIMARY KEY, qty INT, note VARCHAR(10))",
    )
    .await;
    let table = format!("{db}.t");
    let listener = format!("l/{table}");
    let mut cdc = Headless::start(&config(&server.url(&db), &table, "")).await;
    cdc.wait_for_state(&listener, "running").await;
    execute(server, &db, "INSERT INTO t VALUES (1, 10, 'a')").await;
    cdc.wait_for_changes(&listener, 1).await;
    execute(
        server,
        &db,
        "ALTER TABLE t ADD COLUMN price DECIMAL(6, 2) DEFAULT 1.50, DROP COLUMN note",
    )
    .await;
    execute(server, &db, "INSERT INTO t (id, qty) VALUES (2, 20)").await;
    execute(server, &db, "UPDATE t SET id = 3 WHERE id = 2").await;
    cdc.wait_for_changes(&listener, 3).await;
    let changes = changes_of(&cdc.seen, &listener);
    assert_eq!(
        changes[0]["after"],
        json!({"id": 1, "qty": 10, "note": "a"})
    );
    assert_eq!(
        changes[1]["after"],
        json!({"id": 2, "qty": 20, "price": "1.50"})
    );
    assert_eq!(changes[2]["key"], json!({"id": 3}));
    assert_eq!(changes[2]["old_key"], json!({"id": 2}), "the key changed");
    let notes = schema_notes(&cdc.seen, &listener);
    assert_eq!(notes.len(), 1, "one schema note: {notes:?}");
    assert_eq!(notes[0]["table"], table.as_str());
    assert_eq!(
        notes[0]["detail"],
        "added price (decimal(6,2)), dropped note"
    );
    // The note comes between the changes before and after the ALTER.
    let index = |line: &Value| cdc.seen.iter().position(|seen| seen == line);
    assert!(index(changes[0]) < index(notes[0]) && index(notes[0]) < index(changes[1]));
    cdc.signal_and_wait("TERM").await;
    server.drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_takes_its_tables_and_transactions_carry_their_gtid() {
    let server = mariadb::shared().await;
    let db = server.create_database("scope").await;
    let other = server.create_database("scope_other").await;
    for table in ["orders", "items", "audit_log"] {
        execute(
            server,
            &db,
            &format!("CREATE TABLE {table} (id INT PRIMARY KEY, v TEXT)"),
        )
        .await;
    }
    execute(server, &other, "CREATE TABLE orders (id INT PRIMARY KEY)").await;
    let scope = format!("{db}.*");
    let listener = format!("l/{scope}");
    let extra = format!("exclude = [\"{db}.audit_*\"]");
    let mut cdc = Headless::start(&config(&server.url(&db), &scope, &extra)).await;
    cdc.wait_for_state(&listener, "running").await;
    execute(
        server,
        &db,
        "BEGIN; INSERT INTO orders VALUES (1, 'o'); INSERT INTO audit_log VALUES (1, 'a'); \
         INSERT INTO items VALUES (1, 'i'), (2, 'j'); COMMIT",
    )
    .await;
    execute(server, &other, "INSERT INTO orders VALUES (7)").await;
    execute(server, &db, "TRUNCATE TABLE items").await;
    cdc.wait_for_changes(&listener, 4).await;
    let changes = changes_of(&cdc.seen, &listener);
    let tables: Vec<&str> = changes
        .iter()
        .map(|c| c["table"].as_str().unwrap_or_default())
        .collect();
    let (orders, items) = (format!("{db}.orders"), format!("{db}.items"));
    assert_eq!(tables, [&orders, &items, &items, &items]);
    assert_eq!(changes[3]["op"], "truncate");
    let tx = &changes[0]["tx"];
    assert_eq!(changes[1]["tx"]["id"], tx["id"], "one transaction");
    let indexes: Vec<&Value> = changes[..3].iter().map(|c| &c["tx"]["index"]).collect();
    assert_eq!(indexes, [1, 2, 3]);
    let note = cdc
        .seen
        .iter()
        .find(|line| line["type"] == "transaction" && line["listener"] == listener.as_str())
        .expect("a transaction note");
    assert_eq!(note["id"], tx["id"]);
    assert_eq!(note["changes"], 3);
    assert_eq!(note["tables"], json!([orders, items]));
    cdc.signal_and_wait("TERM").await;
    server.drop_database(&db).await;
    server.drop_database(&other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_alone_watches_its_database() {
    let server = mariadb::shared().await;
    let db = server.create_database("zeroconf").await;
    execute(server, &db, "CREATE TABLE t (id INT PRIMARY KEY)").await;
    let url = server.url(&db);
    let mut cdc = Headless::start_with_args(&["--headless", &url]).await;
    let listener = format!("{db}/{db}.*");
    cdc.wait_for("the listener running", |seen| {
        seen.iter()
            .any(|line| line["type"] == "status" && line["state"] == "running")
    })
    .await;
    execute(server, &db, "INSERT INTO t VALUES (5)").await;
    cdc.wait_for("the insert", |seen| {
        seen.iter().any(|line| line["op"] == "insert")
    })
    .await;
    let change = cdc
        .seen
        .iter()
        .find(|line| line["op"] == "insert")
        .expect("the insert");
    assert_eq!(change["table"], format!("{db}.t"), "{listener}: {change}");
    assert_eq!(change["after"], json!({"id": 5}));
    cdc.signal_and_wait("TERM").await;
    server.drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binlog_without_full_row_images_fails_with_advice() {
    let cases = [
        (
            "--binlog-format=STATEMENT",
            ["binlog_format is STATEMENT", "binlog_format = ROW"],
        ),
        (
            "--binlog-row-image=MINIMAL",
            ["binlog_row_image is MINIMAL", "only some columns"],
        ),
        ("--skip-log-bin", ["log_bin is OFF", "--log-bin"]),
    ];
    for (option, phrases) in cases {
        let server = MariaDb::start(&[option]).await;
        let (_, listener, mut cdc) =
            watch_new_table(&server, "settings", "id INT PRIMARY KEY").await;
        cdc.wait_for_state(&listener, "failed").await;
        let reason = reason_of(&cdc.seen, &listener, "failed");
        for phrase in phrases {
            assert!(reason.contains(phrase), "{option}: {reason}");
        }
        support::assert_failed_at_once(&cdc.seen, &listener);
        cdc.signal_and_wait("TERM").await;
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_binlog_fails_the_listener_with_advice() {
    let server = MariaDb::start(&[]).await;
    let (db, listener, mut cdc) =
        watch_new_table(&server, "compressed", "id INT PRIMARY KEY, v TEXT").await;
    cdc.wait_for_state(&listener, "running").await;
    execute(&server, &db, "INSERT INTO t VALUES (1, 'plain')").await;
    cdc.wait_for_changes(&listener, 1).await;
    // Switched on while the listener reads: MariaDB compresses events longer than
    // log_bin_compress_min_len (256 bytes), so the next rows event is compressed.
    let mut root = server.root().await;
    root.query_drop("SET GLOBAL log_bin_compress = ON")
        .await
        .expect("compress");
    root.disconnect().await.expect("disconnect");
    execute(&server, &db, "INSERT INTO t VALUES (2, REPEAT('x', 2000))").await;
    cdc.wait_for_state(&listener, "failed").await;
    let reason = reason_of(&cdc.seen, &listener, "failed");
    assert!(
        reason.contains("a compressed event") && reason.contains("log_bin_compress = OFF"),
        "{reason}"
    );
    assert_eq!(changes_of(&cdc.seen, &listener).len(), 1, "nothing made up");
    cdc.signal_and_wait("TERM").await;

    // A new run on the compressing server fails at once, before reading.
    let table = format!("{db}.t");
    let mut cdc = Headless::start(&config(&server.url(&db), &table, "")).await;
    cdc.wait_for_state(&listener, "failed").await;
    let reason = reason_of(&cdc.seen, &listener, "failed");
    assert!(reason.starts_with("the server compresses"), "{reason}");
    support::assert_failed_at_once(&cdc.seen, &listener);
    cdc.signal_and_wait("TERM").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_replication_rights_fails_with_advice() {
    let server = mariadb::shared().await;
    let db = server.create_database("noreplication").await;
    execute(server, &db, "CREATE TABLE t (id INT PRIMARY KEY)").await;
    let mut root = server.root().await;
    root.query_drop(format!(
        "DROP USER IF EXISTS 'reader'@'%'; CREATE USER 'reader'@'%' IDENTIFIED BY 'r p@ss'; \
         GRANT SELECT ON `{db}`.* TO 'reader'@'%'"
    ))
    .await
    .expect("the reader");
    root.disconnect().await.expect("disconnect");
    let table = format!("{db}.t");
    let listener = format!("l/{table}");
    let url = server.url_as("reader", "r p@ss", &db);
    let mut cdc = Headless::start(&config(&url, &table, "")).await;
    cdc.wait_for_state(&listener, "failed").await;
    let reason = reason_of(&cdc.seen, &listener, "failed");
    assert!(reason.contains("REPLICATION"), "{reason}");
    assert!(reason.contains("GRANT"), "says what to grant: {reason}");
    assert!(!reason.contains("r p@ss"), "no password: {reason}");
    support::assert_failed_at_once(&cdc.seen, &listener);
    cdc.signal_and_wait("TERM").await;
    server.drop_database(&db).await;
}

/// Starts a new binlog and purges every older one.
async fn purge_all_but_a_new_binlog(server: &MariaDb) {
    let mut root = server.root().await;
    root.query_drop("FLUSH BINARY LOGS").await.expect("flush");
    // MariaDB keeps a binlog until InnoDB no longer needs it for crash recovery: purge until
    // only the newest is left.
    support::eventually("the old binlogs purged", async || {
        let logs: Vec<mysql_async::Row> = root.query("SHOW BINARY LOGS").await?;
        let newest: String = logs.last().and_then(|row| row.get(0)).unwrap_or_default();
        root.query_drop(format!("PURGE BINARY LOGS TO '{newest}'"))
            .await?;
        let left: Vec<mysql_async::Row> = root.query("SHOW BINARY LOGS").await?;
        if left.len() == 1 {
            Ok(())
        } else {
            Err(mysql_async::Error::Other(
                format!("{} binlogs left", left.len()).into(),
            ))
        }
    })
    .await;
    root.disconnect().await.expect("disconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_starts_where_start_says() {
    let server = MariaDb::start(&[]).await;
    let db = server.create_database("start").await;
    execute(&server, &db, "CREATE TABLE t (id INT PRIMARY KEY)").await;
    execute(&server, &db, "INSERT INTO t VALUES (1)").await;
    // The oldest binlog left starts after insert 1.
    purge_all_but_a_new_binlog(&server).await;
    execute(&server, &db, "INSERT INTO t VALUES (2)").await;
    let mut conn = server.connect(&db).await;
    let after_2: String = conn
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .expect("the GTID position")
        .expect("a row");
    conn.disconnect().await.expect("disconnect");
    execute(&server, &db, "INSERT INTO t VALUES (3)").await;
    let table = format!("{db}.t");
    let mut text = config(&server.url(&db), &table, "start = \"beginning\"");
    for (identifier, start) in [("e", "end"), ("p", after_2.as_str())] {
        text += &format!(
            "[[listener]]\nidentifier = \"{identifier}\"\ndatabase = \"db\"\n\
             table = '{table}'\nstrategy = \"binlog\"\nstart = \"{start}\"\n\n"
        );
    }
    let mut cdc = Headless::start(&text).await;
    let listeners = ["l", "e", "p"].map(|identifier| format!("{identifier}/{table}"));
    for listener in &listeners {
        cdc.wait_for_state(listener, "running").await;
    }
    execute(&server, &db, "INSERT INTO t VALUES (4)").await;
    let expected: [&[i64]; 3] = [&[2, 3, 4], &[4], &[3, 4]];
    for (listener, ids) in listeners.iter().zip(expected) {
        cdc.wait_for_changes(listener, ids.len()).await;
    }
    for (listener, ids) in listeners.iter().zip(expected) {
        let seen: Vec<&Value> = changes_of(&cdc.seen, listener)
            .iter()
            .map(|change| &change["key"]["id"])
            .collect();
        assert_eq!(seen, ids, "{listener}");
    }
    cdc.signal_and_wait("TERM").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_binlog_is_reported_as_a_gap_and_capture_goes_on() {
    let server = MariaDb::start(&[]).await;
    let (db, listener, mut cdc) = watch_new_table(&server, "purged", "id INT PRIMARY KEY").await;
    cdc.wait_for_state(&listener, "running").await;
    execute(&server, &db, "INSERT INTO t VALUES (1)").await;
    cdc.wait_for_changes(&listener, 1).await;
    cdc.signal_and_wait("TERM").await;
    let dir = cdc.dir;

    // Written while cdc-tui is away, then purged with the binlog that holds them.
    execute(&server, &db, "INSERT INTO t VALUES (2)").await;
    purge_all_but_a_new_binlog(&server).await;

    let mut cdc = Headless::start_in(dir).await;
    cdc.wait_for_state(&listener, "running").await;
    execute(&server, &db, "INSERT INTO t VALUES (3)").await;
    cdc.wait_for_changes(&listener, 1).await;
    let reason = reason_of(&cdc.seen, &listener, "running");
    assert!(
        reason.contains("no longer on the server") && reason.contains("not captured"),
        "{reason}"
    );
    let changes = changes_of(&cdc.seen, &listener);
    assert_eq!(changes[0]["key"], json!({"id": 3}), "capture goes on");
    cdc.signal_and_wait("TERM").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_is_retried_and_resumes_where_it_was() {
    let mut server = MariaDb::start(&[]).await;
    let (db, listener, mut cdc) = watch_new_table(&server, "restart", "id INT PRIMARY KEY").await;
    cdc.wait_for_state(&listener, "running").await;
    execute(&server, &db, "INSERT INTO t VALUES (1)").await;
    cdc.wait_for_changes(&listener, 1).await;
    server.kill_server();
    cdc.wait_for_state(&listener, "retrying").await;
    server.start_server().await;
    execute(&server, &db, "INSERT INTO t VALUES (2)").await;
    cdc.wait_for_changes(&listener, 2).await;
    let ids: Vec<&Value> = changes_of(&cdc.seen, &listener)
        .iter()
        .map(|change| &change["key"]["id"])
        .collect();
    assert_eq!(ids, [1, 2], "each once");
    cdc.signal_and_wait("TERM").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_mid_transaction_lose_and_repeat_nothing() {
    const ROWS: i64 = 2_000;
    const CUTS: i64 = 5;
    if mariadb::shared_is_external() {
        // The fault proxy forwards to 127.0.0.1 only, and the rows come from MariaDB's
        // sequence tables.
        eprintln!(
            "skipped: {} names an external server",
            mariadb::EXTERNAL_URL
        );
        return;
    }
    let server = mariadb::shared().await;
    let db = server.create_database("cut").await;
    execute(server, &db, "CREATE TABLE t (id INT PRIMARY KEY, v TEXT)").await;
    let proxy = Proxy::start(server.port()).await;
    let url = format!(
        "mysql://{}:{}@127.0.0.1:{}/{db}",
        mariadb::USER,
        mariadb::PASSWORD,
        proxy.port()
    );
    let table = format!("{db}.t");
    let listener = format!("l/{table}");
    let mut cdc = Headless::start(&config(&url, &table, "")).await;
    cdc.wait_for_state(&listener, "running").await;
    // Counted as lines come, not by scanning every line seen for each new one.
    let runs = Counter::new(|line| {
        line["type"] == "status"
            && line["listener"] == listener.as_str()
            && line["state"] == "running"
    });
    let changes =
        Counter::new(|line| line["type"] == "change" && line["listener"] == listener.as_str());
    let mut rng = rand::rng();
    for cut in 0..CUTS {
        // One transaction of 2,000 rows (about 130 KB of binlog), cut after 1 to 60 KB of it.
        let springs = proxy.cut_after(rng.random_range(1_000..60_000));
        let (from, to) = (cut * ROWS + 1, (cut + 1) * ROWS);
        execute(
            server,
            &db,
            &format!("INSERT INTO t SELECT seq, REPEAT('x', 40) FROM seq_{from}_to_{to}"),
        )
        .await;
        tokio::time::timeout(support::DEADLINE, springs)
            .await
            .expect("the cut sprang")
            .expect("the proxy");
        cdc.wait_for("running again after the cut", |seen| {
            runs.count(seen) > cut as usize + 1
        })
        .await;
    }
    let total = (ROWS * CUTS) as usize;
    cdc.wait_for("every row", |seen| changes.count(seen) >= total)
        .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    let ids: Vec<i64> = changes_of(&cdc.seen, &listener)
        .iter()
        .map(|change| change["key"]["id"].as_i64().expect("an id"))
        .collect();
    assert_eq!(
        ids,
        (1..=ROWS * CUTS).collect::<Vec<_>>(),
        "each row once, in commit order"
    );
    let indexes: Vec<u64> = changes_of(&cdc.seen, &listener)[..ROWS as usize]
        .iter()
        .map(|change| change["tx"]["index"].as_u64().expect("an index"))
        .collect();
    assert_eq!(indexes, (1..=ROWS as u64).collect::<Vec<_>>());
    drop(proxy);
    server.drop_database(&db).await;
}

/// Counts the lines that match, scanning only those not seen before.
struct Counter<F> {
    matches: F,
    scanned: std::cell::Cell<(usize, usize)>,
}

impl<F: Fn(&Value) -> bool> Counter<F> {
    fn new(matches: F) -> Self {
        Counter {
            matches,
            scanned: std::cell::Cell::new((0, 0)),
        }
    }

    fn count(&self, seen: &[Value]) -> usize {
        let (lines, mut count) = self.scanned.get();
        count += seen[lines..]
            .iter()
            .filter(|line| (self.matches)(line))
            .count();
        self.scanned.set((seen.len(), count));
        count
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_before_a_later_alter_keep_their_columns() {
    // binlog_row_metadata = FULL carries the names the rows were written with, and which
    // integers are unsigned; without it, rows whose shape information_schema no longer
    // describes get positional names (and an unsigned value above the signed range would
    // print as negative, so that case writes a small one).
    let cases = [
        (
            "--binlog-row-metadata=FULL",
            ["id", "qty"],
            u64::from(u32::MAX),
        ),
        ("--binlog-row-metadata=MINIMAL", ["col_1", "col_2"], 20),
    ];
    for (option, names, qty) in cases {
        let server = MariaDb::start(&[option]).await;
        let (db, listener, mut cdc) =
            watch_new_table(&server, "history", "id INT PRIMARY KEY, qty INT UNSIGNED").await;
        cdc.wait_for_state(&listener, "running").await;
        execute(&server, &db, "INSERT INTO t VALUES (1, 10)").await;
        cdc.wait_for_changes(&listener, 1).await;
        assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
        let dir = cdc.dir;

        execute(&server, &db, &format!("INSERT INTO t VALUES (2, {qty})")).await;
        execute(&server, &db, "ALTER TABLE t ADD COLUMN note TEXT").await;
        execute(&server, &db, "INSERT INTO t VALUES (3, 30, 'x')").await;
        let mut cdc = Headless::start_in(dir).await;
        cdc.wait_for_changes(&listener, 2).await;
        let changes = changes_of(&cdc.seen, &listener);
        let mut old = serde_json::Map::new();
        old.insert(names[0].into(), json!(2));
        old.insert(names[1].into(), json!(qty));
        assert_eq!(changes[0]["after"], Value::Object(old), "{option}");
        assert_eq!(
            changes[1]["after"],
            json!({"id": 3, "qty": 30, "note": "x"}),
            "{option}"
        );
        cdc.signal_and_wait("TERM").await;
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_servers_ca_captures_and_another_ca_fails_at_once() {
    let ca = support::ca::Ca::new("cdc-tui MariaDB test CA");
    let (certificate, key) = ca.server(&["127.0.0.1", "localhost"]);
    let files = tempfile::tempdir().expect("a temp dir");
    // The server runs as `mysql` under root: it must be able to read the files.
    std::fs::set_permissions(
        files.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let ca_file = ca.write_pem(files.path(), "ca.pem");
    let cert_file = files.path().join("server.pem");
    let key_file = files.path().join("server-key.pem");
    std::fs::write(&cert_file, certificate).expect("write the certificate");
    std::fs::write(&key_file, key).expect("write the key");
    let server = MariaDb::start(&[
        &format!("--ssl-ca={ca_file}"),
        &format!("--ssl-cert={}", cert_file.display()),
        &format!("--ssl-key={}", key_file.display()),
    ])
    .await;
    let db = server.create_database("tls").await;
    execute(&server, &db, "CREATE TABLE t (id INT PRIMARY KEY)").await;
    let table = format!("{db}.t");
    let listener = format!("l/{table}");
    let url = format!(
        "{}?ssl-mode=VERIFY_IDENTITY&ssl-ca={}",
        server.url(&db),
        support::percent_encode(&ca_file)
    );
    let mut cdc = Headless::start(&config(&url, &table, "")).await;
    cdc.wait_for_state(&listener, "running").await;
    execute(&server, &db, "INSERT INTO t VALUES (1)").await;
    cdc.wait_for_changes(&listener, 1).await;
    cdc.signal_and_wait("TERM").await;

    let other = support::ca::Ca::new("another CA");
    let other_file = other.write_pem(files.path(), "other.pem");
    let url = format!(
        "{}?ssl-mode=VERIFY_CA&ssl-ca={}",
        server.url(&db),
        support::percent_encode(&other_file)
    );
    let mut cdc = Headless::start(&config(&url, &table, "")).await;
    cdc.wait_for_state(&listener, "failed").await;
    let reason = reason_of(&cdc.seen, &listener, "failed");
    assert!(reason.contains("TLS"), "{reason}");
    support::assert_failed_at_once(&cdc.seen, &listener);
    cdc.signal_and_wait("TERM").await;
    server.stop().await;
}
