//! Mistakes a user can make, each answered with a message that says what is wrong and what
//! to do. Tests elsewhere cover the rest (README's Troubleshooting table lists them all):
//! config mistakes in `src/config.rs` and `tests/cli.rs`, a missing table and a database that
//! is down for every source in `tests/contract.rs`, wal_level, the REPLICATION privilege and
//! a slot in use in `tests/logical.rs`, a standalone MongoDB, a lost resume token and a
//! dropped collection in `tests/mongo.rs`, no SELECT right and an unwritable state dir in
//! `tests/faults.rs`, TLS mistakes in `tests/tls.rs`. Server limits (replication slots, WAL
//! senders) are tested here on throwaway clusters of their own, since the shared one has room.

mod support;

use std::process::Command;

use pgcluster::{ClusterOptions, PgCluster};
use support::{Headless, PASSWORD_GROUP, TestDb, assert_failed_at_once, reason_of, url_as};

fn database(name: &str, kind: &str, url: &str) -> String {
    format!("[[database]]\nname = \"{name}\"\nkind = \"{kind}\"\nurl = \"{url}\"\n\n")
}

fn listener(identifier: &str, database: &str, table: &str, extra: &str) -> String {
    format!(
        "[[listener]]\nidentifier = \"{identifier}\"\ndatabase = \"{database}\"\n\
         table = \"{table}\"\n{extra}\n\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connection_and_table_mistake_is_answered_with_what_to_do() {
    let db = TestDb::new("bad_input").await;
    let client = db.client().await;
    let pid = std::process::id();
    let (password_role, weak_role) = (format!("pw_{pid}"), format!("weak_{pid}"));
    client
        .batch_execute(&format!(
            "CREATE ROLE {password_role} LOGIN SUPERUSER PASSWORD 'the-right-one' \
                 IN ROLE {PASSWORD_GROUP};
             CREATE ROLE {weak_role} LOGIN REPLICATION;
             CREATE TABLE owned_t (id int PRIMARY KEY);
             GRANT SELECT ON owned_t TO {weak_role};
             CREATE TABLE other_t (id int PRIMARY KEY);
             CREATE PUBLICATION other_pub FOR TABLE other_t;
             CREATE TABLE nopk_t (id int, updated_at timestamptz);
             CREATE TABLE polled_t (id int PRIMARY KEY,
                                    updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
             INSERT INTO polled_t (id) SELECT generate_series(1, 10);"
        ))
        .await
        .expect("roles and tables");
    let port = support::cluster().await.port();
    let config = [
        database("good", "postgres", &db.url),
        database(
            "wrongpw",
            "postgres",
            &url_as(&password_role, "not-the-right-one", &db.name).await,
        ),
        database(
            "nohost",
            "postgres",
            "postgres://app@no-such-host.invalid:5432/shop",
        ),
        database(
            "nodb",
            "postgres",
            &format!("postgres://postgres@127.0.0.1:{port}/no_such_db"),
        ),
        database(
            "weak",
            "postgres",
            &db.url.replacen("postgres@", &format!("{weak_role}@"), 1),
        ),
        database("badmongo", "mongodb", "mongodb://127.0.0.1:99999/"),
        listener("wrongpw", "wrongpw", "owned_t", "strategy = \"logical\""),
        listener(
            "nohost",
            "nohost",
            "orders",
            "strategy = \"polling\"\ncursor_column = \"updated_at\"",
        ),
        listener("nodb", "nodb", "orders", "strategy = \"logical\""),
        listener(
            "notowner",
            "weak",
            "owned_t",
            "strategy = \"logical\"\npublication = \"nope_pub\"",
        ),
        listener(
            "otherpub",
            "good",
            "owned_t",
            "strategy = \"logical\"\npublication = \"other_pub\"",
        ),
        listener("nopk", "good", "nopk_t", "strategy = \"logical\""),
        listener(
            "nopkpoll",
            "good",
            "nopk_t",
            "strategy = \"polling\"\ncursor_column = \"updated_at\"",
        ),
        listener(
            "nocursor",
            "good",
            "polled_t",
            "strategy = \"polling\"\ncursor_column = \"nope\"",
        ),
        listener(
            "toomany",
            "good",
            "polled_t",
            "strategy = \"polling\"\ncursor_column = \"updated_at\"\nmax_tracked_rows = 5",
        ),
        listener(
            "badmongo",
            "badmongo",
            "shop.orders",
            "strategy = \"change_stream\"",
        ),
    ]
    .concat();
    let mut cdc = Headless::start(&config).await;
    // (listener, state, what its reason must say)
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "wrongpw/owned_t",
            "failed",
            &["password authentication failed", &password_role],
        ),
        (
            "nohost/orders",
            "retrying",
            &["connecting to no-such-host.invalid:5432", "next try in"],
        ),
        (
            "nodb/orders",
            "failed",
            &["database \"no_such_db\" does not exist"],
        ),
        (
            "notowner/owned_t",
            "failed",
            &[
                "cannot create publication nope_pub for public.owned_t",
                "permission denied",
                "CREATE PUBLICATION nope_pub FOR TABLE public.owned_t",
            ],
        ),
        (
            "otherpub/owned_t",
            "failed",
            &[
                "publication other_pub exists but does not publish public.owned_t",
                "ALTER PUBLICATION other_pub ADD TABLE public.owned_t",
            ],
        ),
        (
            "nopk/nopk_t",
            "failed",
            &[
                "no primary key or replica identity",
                "REPLICA IDENTITY FULL",
            ],
        ),
        (
            "nopkpoll/nopk_t",
            "failed",
            &["has no primary key: polling needs one"],
        ),
        (
            "nocursor/polled_t",
            "failed",
            &["has no column \"nope\" (cursor_column)"],
        ),
        (
            "toomany/polled_t",
            "failed",
            &["more than max_tracked_rows = 5", "strategy = \"logical\""],
        ),
        (
            "badmongo/shop.orders",
            "failed",
            &["the MongoDB URL mongodb://127.0.0.1:99999/ is not usable"],
        ),
    ];
    for (listener, state, words) in cases {
        assert_reason(&mut cdc, listener, state, words).await;
    }
    for (listener, state, _) in cases {
        if *state == "failed" {
            assert_failed_at_once(&cdc.seen, listener);
        }
    }
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    assert!(
        !format!("{:?}{}", cdc.seen, cdc.stderr()).contains("not-the-right-one"),
        "the password is never shown"
    );
}

/// A throwaway cluster of its own with `settings`, a database `limits` on it and a table
/// `public.t` there.
async fn limited_cluster(settings: &[(&str, &str)]) -> (PgCluster, tokio_postgres::Client) {
    let options = settings
        .iter()
        .fold(ClusterOptions::default(), |options, (name, value)| {
            options.setting(*name, *value)
        });
    let cluster = PgCluster::start(options)
        .await
        .expect("start a throwaway PostgreSQL cluster with its own limits");
    cluster.create_database("limits").await.expect("database");
    let client = cluster.connect("limits").await.expect("connect");
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .expect("table");
    (cluster, client)
}

/// Waits for `listener` in `state` and checks that its reason holds every one of `words`.
async fn assert_reason(cdc: &mut Headless, listener: &str, state: &str, words: &[&str]) {
    cdc.wait_for_state(listener, state).await;
    let reason = reason_of(&cdc.seen, listener, state);
    eprintln!("{listener} {state}: {reason}");
    for word in words {
        assert!(reason.contains(word), "{listener}: {word:?} in {reason:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_replication_slots_fails_saying_to_drop_one_or_raise_the_limit() {
    let (mut cluster, client) = limited_cluster(&[("max_replication_slots", "1")]).await;
    // A slot nobody reads takes the only one.
    client
        .batch_execute("SELECT pg_create_logical_replication_slot('abandoned', 'pgoutput')")
        .await
        .expect("the abandoned slot");
    let url = cluster.url("limits");
    let config = [
        database("limited", "postgres", &url),
        listener("full", "limited", "t", "strategy = \"logical\""),
    ]
    .concat();
    let mut cdc = Headless::start(&config).await;
    let drop_unused =
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active";
    assert_reason(
        &mut cdc,
        "full/t",
        "failed",
        &[
            "all replication slots are in use",
            "every replication slot is taken",
            drop_unused,
            "raise max_replication_slots and restart the server",
        ],
    )
    .await;
    assert_failed_at_once(&cdc.seen, "full/t");
    // What it says to do works: with the unused slot dropped, the same table is captured.
    client.batch_execute(drop_unused).await.expect("drop it");
    cdc.send_command("add limited public.t logical").await;
    cdc.wait_for_state("limited/public.t", "running").await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));

    // With max_replication_slots = 0 there is no slot to free: the limit must be raised.
    client
        .batch_execute("ALTER SYSTEM SET max_replication_slots = 0")
        .await
        .expect("no slots at all");
    cluster.restart().await.expect("restart with no slots");
    let mut cdc = Headless::start(&config).await;
    assert_reason(
        &mut cdc,
        "full/t",
        "failed",
        &[
            "replication slots can only be used if max_replication_slots > 0",
            "set max_replication_slots",
            "restart the server",
        ],
    )
    .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    cluster.stop().await.expect("stop the cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_free_wal_sender_is_waited_for_and_none_at_all_fails_saying_to_raise_the_limit() {
    let (mut cluster, client) = limited_cluster(&[("max_wal_senders", "1")]).await;
    let url = cluster.url("limits");
    let config = |identifier: &str| {
        [
            database("limited", "postgres", &url),
            listener(identifier, "limited", "t", "strategy = \"logical\""),
        ]
        .concat()
    };
    // The first consumer takes the only WAL sender ...
    let mut holder = Headless::start(&config("holder")).await;
    holder.wait_for_state("holder/t", "running").await;
    // ... so the second waits for it, saying why and what would help.
    let mut waiter = Headless::start(&config("waiter")).await;
    assert_reason(
        &mut waiter,
        "waiter/t",
        "retrying",
        &[
            "number of requested standby connections exceeds max_wal_senders (currently 1)",
            "every WAL sender is taken",
            "raise max_wal_senders",
            "next try in",
        ],
    )
    .await;
    // Waiting helps: once the first lets go, the second runs and captures.
    assert_eq!(holder.signal_and_wait("TERM").await, Some(0));
    waiter.wait_for_state("waiter/t", "running").await;
    client
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .expect("insert");
    waiter
        .wait_for("the row", |seen| {
            seen.iter()
                .any(|line| line["type"] == "change" && line["listener"] == "waiter/t")
        })
        .await;
    assert_eq!(waiter.signal_and_wait("TERM").await, Some(0));

    // With max_wal_senders = 0 waiting never helps: it fails, saying to raise the limit.
    client
        .batch_execute("ALTER SYSTEM SET max_wal_senders = 0")
        .await
        .expect("no WAL senders at all");
    cluster
        .restart()
        .await
        .expect("restart with no WAL senders");
    let mut cdc = Headless::start(&config("none")).await;
    assert_reason(
        &mut cdc,
        "none/t",
        "failed",
        &[
            "exceeds max_wal_senders (currently 0)",
            "the server allows no replication connections",
            "set max_wal_senders",
            "restart the server",
        ],
    )
    .await;
    assert_failed_at_once(&cdc.seen, "none/t");
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    cluster.stop().await.expect("stop the cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stdin_commands_are_answered_with_an_error_line() {
    let db = TestDb::new("bad_commands").await;
    db.client()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .expect("table");
    let mut cdc = Headless::start(&database("good", "postgres", &db.url)).await;
    let commands = [
        ("frobnicate x", "unknown command: frobnicate"),
        ("pause", "usage: pause <identity>"),
        ("pause nobody/public.t", "nobody/public.t"),
        (
            "add nowhere public.t logical",
            "no database named \"nowhere\"",
        ),
        ("add good public.t sideways", "unknown strategy: sideways"),
        (
            "add good public.t polling",
            "cursor_column: polling needs a cursor_column",
        ),
        (
            "add good a.b.c logical",
            "table: \"a.b.c\": use table or schema.table",
        ),
    ];
    for (command, _) in commands {
        cdc.send_command(command).await;
    }
    cdc.wait_for("an answer to every command", |seen| {
        seen.iter().filter(|line| line["type"] == "error").count() == commands.len()
    })
    .await;
    let errors: Vec<&str> = cdc
        .seen
        .iter()
        .filter(|line| line["type"] == "error")
        .map(|line| line["message"].as_str().expect("message"))
        .collect();
    for ((command, expected), error) in commands.iter().zip(&errors) {
        assert!(error.contains(expected), "{command}: {error}");
    }
    // Still listening: a good command after the bad ones works.
    cdc.send_command("add good public.t logical").await;
    cdc.wait_for_state("good/public.t", "running").await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}

#[test]
fn an_unusable_url_is_a_config_error_naming_the_line_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (
            "postgres://app:s3cret@127.0.0.1:notaport/shop",
            "cdc.toml:4: database[0].url: the database url is not usable: invalid connection \
             string: invalid value for option `port`",
        ),
        (
            "postgres://app:s3cret@127.0.0.1/shop?sslmode=always",
            "cdc.toml:4: database[0].url: sslmode=always is not a mode",
        ),
        (
            "postgres://app:s3cret@127.0.0.1/shop?sslmode=verify-full&sslrootcert=",
            "cdc.toml:4: database[0].url: sslrootcert is empty",
        ),
        (
            "postgres://app:s3cret@127.0.0.1/shop?colour=red",
            "cdc.toml:4: database[0].url: the database url is not usable: invalid connection \
             string: unknown option `colour`",
        ),
    ];
    for (url, expected) in cases {
        std::fs::write(
            dir.path().join("cdc.toml"),
            format!("[[database]]\nname = \"shop\"\nkind = \"postgres\"\nurl = \"{url}\"\n"),
        )
        .expect("config");
        let output = Command::new(env!("CARGO_BIN_EXE_cdc-tui"))
            .arg("--check-config")
            .current_dir(dir.path())
            .output()
            .expect("run cdc-tui");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains(expected), "{url}: {stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
}

#[test]
fn a_url_cut_at_the_wrong_place_is_a_config_error_saying_how_to_encode_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The password `p@ss/w:rd` as written: a parser takes `ss` for the host.
    let cases = [
        (
            "postgres",
            "postgres://cdc:p@ss/w:rd@127.0.0.1:5432/shop",
            "cdc.toml:9: database[1].url: the password contains '@', '/' and ':': write them \
             as %40, %2F and %3A",
        ),
        (
            "mongodb",
            "mongodb://cdc:p@ss/w:rd@127.0.0.1:27017/?replicaSet=rs0",
            "cdc.toml:9: database[1].url: the password contains '@', '/' and ':': write them \
             as %40, %2F and %3A",
        ),
        (
            "postgres",
            "postgres://cdc:no#pe@127.0.0.1/shop",
            "cdc.toml:9: database[1].url: the password contains '#': write it as %23",
        ),
    ];
    for (kind, url, expected) in cases {
        std::fs::write(
            dir.path().join("cdc.toml"),
            format!(
                "{}[[database]]\nname = \"shop\"\nkind = \"{kind}\"\nurl = \"{url}\"\n",
                database("fine", "postgres", "postgres://cdc:p%40ss%2Fw%3Ard@db/shop")
            ),
        )
        .expect("config");
        let output = Command::new(env!("CARGO_BIN_EXE_cdc-tui"))
            .arg("--check-config")
            .current_dir(dir.path())
            .output()
            .expect("run cdc-tui");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains(expected), "{url}: {stderr}");
        assert!(output.stdout.is_empty(), "{url}");
        for secret in ["p@ss", "w:rd", "no#pe"] {
            assert!(!stderr.contains(secret), "{stderr}");
        }
    }
}

/// The status lines, as (listener, state), in order.
fn status_lines(seen: &[serde_json::Value]) -> Vec<(String, String)> {
    seen.iter()
        .filter(|line| line["type"] == "status")
        .map(|line| {
            (
                line["listener"].as_str().unwrap_or_default().to_string(),
                line["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_stdin_closed_a_failed_listener_ends_headless_with_exit_1() {
    let db = TestDb::new("ends_failed").await;
    let config = format!(
        "{}{}{}",
        database("shop", "postgres", &db.url),
        listener(
            "missing",
            "shop",
            "public.no_such_table",
            "strategy = \"logical\""
        ),
        listener(
            "gone",
            "shop",
            "public.no_such_table",
            "strategy = \"polling\"\ncursor_column = \"updated_at\""
        ),
    );
    // As `cdc-tui --headless < /dev/null | jq`: nothing will ever come on stdin.
    let mut cdc = Headless::start(&config).await;
    cdc.close_stdin();
    let code = cdc.wait_for_exit("cdc-tui to end by itself").await;
    assert_eq!(code, Some(1), "{}", cdc.stderr());
    let statuses = status_lines(&cdc.seen);
    for identity in ["missing/public.no_such_table", "gone/public.no_such_table"] {
        let last = statuses
            .iter()
            .rev()
            .find(|(listener, _)| listener == identity);
        assert_eq!(
            last.map(|(_, state)| state.as_str()),
            Some("failed"),
            "{statuses:?}"
        );
    }
    assert!(
        cdc.stderr().contains(
            "stdin is closed and no listener can go on: missing/public.no_such_table failed: table"
        ),
        "{}",
        cdc.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_stdin_closed_headless_runs_on_while_a_listener_can_deliver() {
    let db = TestDb::new("ends_not").await;
    db.client()
        .await
        .batch_execute("CREATE TABLE alive_t (id int PRIMARY KEY)")
        .await
        .expect("table");
    let config = format!(
        "[pipeline]\ntimeout_ms = 0\n\n{}{}{}",
        database("shop", "postgres", &db.url),
        listener(
            "missing",
            "shop",
            "public.no_such_table",
            "strategy = \"logical\""
        ),
        listener("alive", "shop", "public.alive_t", "strategy = \"logical\""),
    );
    let mut cdc = Headless::start(&config).await;
    cdc.close_stdin();
    cdc.wait_for_state("missing/public.no_such_table", "failed")
        .await;
    cdc.wait_for_state("alive/public.alive_t", "running").await;
    // One listener failed and stdin is at its end, yet the other still captures.
    db.client()
        .await
        .batch_execute("INSERT INTO alive_t VALUES (1)")
        .await
        .expect("insert");
    cdc.wait_for("the insert", |seen| {
        seen.iter().any(|line| line["type"] == "change")
    })
    .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_every_listener_then_closing_stdin_exits_0() {
    let db = TestDb::new("ends_stopped").await;
    db.client()
        .await
        .batch_execute(
            "CREATE TABLE stop_t (id int PRIMARY KEY, updated_at timestamptz DEFAULT now())",
        )
        .await
        .expect("table");
    let config = format!(
        "{}{}{}",
        database("shop", "postgres", &db.url),
        listener("logical", "shop", "public.stop_t", "strategy = \"logical\""),
        listener(
            "polling",
            "shop",
            "public.stop_t",
            "strategy = \"polling\"\ncursor_column = \"updated_at\""
        ),
    );
    let mut cdc = Headless::start(&config).await;
    let identities = ["logical/public.stop_t", "polling/public.stop_t"];
    for identity in identities {
        cdc.wait_for_state(identity, "running").await;
        cdc.send_command(&format!("stop {identity}")).await;
    }
    cdc.close_stdin();
    let code = cdc.wait_for_exit("cdc-tui to end by itself").await;
    assert_eq!(code, Some(0), "{}", cdc.stderr());
    let statuses = status_lines(&cdc.seen);
    for identity in identities {
        let last = statuses
            .iter()
            .rev()
            .find(|(listener, _)| listener == identity);
        assert_eq!(
            last.map(|(_, state)| state.as_str()),
            Some("stopped"),
            "{statuses:?}"
        );
    }
}
