//! Mistakes a user can make, each answered with a message that says what is wrong and what
//! to do. Tests elsewhere cover the rest (README's Troubleshooting table lists them all):
//! config mistakes in `src/config.rs` and `tests/cli.rs`, wal_level, the REPLICATION
//! privilege, a missing table and a slot in use in `tests/logical.rs`, a standalone MongoDB, a
//! lost resume token and a dropped collection in `tests/mongo.rs`, a database that is down in
//! `tests/polling.rs` and `tests/faults.rs`, no SELECT right and an unwritable state dir in
//! `tests/faults.rs`, TLS mistakes in `tests/tls.rs`.

mod support;

use std::process::Command;

use support::{Headless, PASSWORD_GROUP, TestDb, reason_of, statuses, url_as};

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
        cdc.wait_for_state(listener, state).await;
        let reason = reason_of(&cdc.seen, listener, state);
        eprintln!("{listener} {state}: {reason}");
        for word in *words {
            assert!(reason.contains(word), "{listener}: {word:?} in {reason:?}");
        }
    }
    for (listener, state, _) in cases {
        if *state == "failed" {
            assert!(
                statuses(&cdc.seen, listener)
                    .iter()
                    .all(|(state, _)| state != "retrying"),
                "{listener} fails at once: waiting would not help"
            );
        }
    }
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    assert!(
        !format!("{:?}{}", cdc.seen, cdc.stderr()).contains("not-the-right-one"),
        "the password is never shown"
    );
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
