//! Passwords are never shown: not in status reasons, logs (at debug level, every crate's),
//! JSON output, the TUI's screen or its log file. The real binary runs with URLs holding a
//! distinctive password: against a role with that password, a role with another one, a closed
//! port (PostgreSQL and MongoDB), and as a `password=` query parameter; everything it wrote is
//! searched for the password, plain and percent-encoded.

mod support;

use support::tmux::Tmux;
use support::{Headless, PASSWORD_GROUP, TestDb, percent_encode, url_as};

/// Distinctive, with characters a URL must encode.
const PASSWORD: &str = "Zq7!sw@rd/f1sh%k9#xy";

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

fn assert_no_password(what: &str, text: &str) {
    for form in [PASSWORD.to_string(), percent_encode(PASSWORD)] {
        assert!(
            !text.contains(&form),
            "{what} shows the password ({form}):\n{text}"
        );
    }
    // Long enough pieces of it, however it was cut up.
    for piece in ["Zq7!sw", "rd/f1sh", "f1sh%k9", "Zq7%21sw"] {
        assert!(
            !text.contains(piece),
            "{what} shows part of the password ({piece})"
        );
    }
}

/// Roles with the password and with another one, a table, and the config using them.
async fn setup(test: &str) -> (TestDb, String) {
    let db = TestDb::new(test).await;
    let pid = std::process::id();
    let (right, wrong) = (format!("sec_{test}_{pid}"), format!("other_{test}_{pid}"));
    db.client()
        .await
        .batch_execute(&format!(
            "CREATE ROLE {right} LOGIN SUPERUSER PASSWORD '{PASSWORD}' IN ROLE {PASSWORD_GROUP};
             CREATE ROLE {wrong} LOGIN SUPERUSER PASSWORD 'something-else' \
                 IN ROLE {PASSWORD_GROUP};
             CREATE TABLE s_t (id int PRIMARY KEY,
                               updated_at timestamptz NOT NULL DEFAULT clock_timestamp());"
        ))
        .await
        .expect("roles and table");
    let closed = closed_port();
    let encoded = percent_encode(PASSWORD);
    let config = format!(
        r#"
[[database]]
name = "right"
kind = "postgres"
url = "{right_url}"

[[database]]
name = "wrong"
kind = "postgres"
url = "{wrong_url}"

[[database]]
name = "closed"
kind = "postgres"
url = "postgres://{right}:{encoded}@127.0.0.1:{closed}/{name}"

[[database]]
name = "param"
kind = "postgres"
url = "postgres://{right}@127.0.0.1:{closed}/{name}?password={encoded}"

[[database]]
name = "mongo"
kind = "mongodb"
url = "mongodb://{right}:{encoded}@127.0.0.1:{closed}/?serverSelectionTimeoutMS=300"

[[listener]]
identifier = "logical"
database = "right"
table = "s_t"
strategy = "logical"

[[listener]]
identifier = "polling"
database = "right"
table = "s_t"
strategy = "polling"
cursor_column = "updated_at"
interval_ms = 100

[[listener]]
identifier = "wrong"
database = "wrong"
table = "s_t"
strategy = "logical"

[[listener]]
identifier = "closed"
database = "closed"
table = "s_t"
strategy = "logical"

[[listener]]
identifier = "param"
database = "param"
table = "s_t"
strategy = "polling"
cursor_column = "updated_at"

[[listener]]
identifier = "mongo"
database = "mongo"
table = "shop.orders"
strategy = "change_stream"
"#,
        right_url = url_as(&right, PASSWORD, &db.name).await,
        wrong_url = url_as(&wrong, PASSWORD, &db.name).await,
        name = db.name,
    );
    (db, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_in_json_output_or_debug_logs() {
    let (db, config) = setup("headless").await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("cdc.toml"), &config).expect("config");
    let mut cdc = Headless::start_in_with_env(dir, &[("CDC_TUI_LOG", "debug")]).await;
    for listener in ["logical/s_t", "polling/s_t"] {
        cdc.wait_for_state(listener, "running").await;
    }
    cdc.wait_for_state("wrong/s_t", "failed").await;
    db.client()
        .await
        .batch_execute("INSERT INTO s_t (id) SELECT generate_series(1, 5)")
        .await
        .expect("insert");
    cdc.wait_for("the inserts, and every failure retried twice", |seen| {
        let changes = seen.iter().filter(|l| l["type"] == "change").count();
        let retried = |listener: &str| {
            seen.iter()
                .filter(|l| l["listener"] == listener && l["state"] == "retrying")
                .count()
                >= 2
        };
        changes == 10
            && retried("closed/s_t")
            && retried("param/s_t")
            && retried("mongo/shop.orders")
    })
    .await;
    // Commands echo nothing secret either.
    cdc.send_command(&format!("pause {PASSWORD}")).await;
    cdc.wait_for("the answer", |seen| {
        seen.iter().any(|line| line["type"] == "error")
    })
    .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    let reasons: Vec<String> = cdc
        .seen
        .iter()
        .filter_map(|line| line["reason"].as_str().map(str::to_string))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|reason| reason.contains("password authentication failed")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|reason| reason.contains("refused")),
        "{reasons:?}"
    );
    let stdout: String = cdc
        .seen
        .iter()
        .filter(|line| line["type"] != "error")
        .map(|line| format!("{line}\n"))
        .collect();
    assert_no_password("stdout", &stdout);
    let stderr = cdc.stderr();
    assert!(
        stderr.contains("DEBUG"),
        "the logs ran at debug level: {stderr}"
    );
    assert_no_password("the logs (stderr)", &stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_on_the_tui_screen_or_in_its_log_file() {
    let (_db, config) = setup("tui").await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("cdc.toml"), &config).expect("config");
    let tmux = Tmux::start_tui("secrets", dir.path(), "CDC_TUI_LOG=debug", 160, 45);
    let mut screens = vec![
        tmux.wait_for("the failures on screen", |screen| {
            screen.contains("failed") && screen.contains("retrying")
        })
        .await,
    ];
    // The add dialog reads tables from each database, and shows why it cannot.
    // Every database, as the dialog lists them (by name).
    let databases = [
        ("closed", "postgres"),
        ("mongo", "mongodb"),
        ("param", "postgres"),
        ("right", "postgres"),
        ("wrong", "postgres"),
    ];
    for (at, (name, kind)) in databases.into_iter().enumerate() {
        tmux.keys("a");
        for _ in 0..at {
            tmux.keys("Down");
        }
        // The list as the dialog draws it: `{name:<24} {kind}`, the chosen one marked.
        let choice = format!("▶ {name:<24} {kind}");
        screens.push(
            tmux.wait_for(&format!("{name} chosen in the add dialog"), |screen| {
                screen.contains("database  ◀ choose") && screen.contains(&choice)
            })
            .await,
        );
        tmux.keys("Enter");
        let chosen = format!("database  {name} ({kind})");
        screens.push(
            tmux.wait_for(&format!("the tables of {name}, or why not"), |screen| {
                screen.contains(&chosen)
                    && (screen.contains("▶ public.s_t")
                        || screen.contains("cannot list the tables"))
            })
            .await,
        );
        tmux.keys("Escape");
        // The next `a` must not follow Escape at once: a terminal reads the two as Alt-a.
        tmux.wait_for("the add dialog closed", |screen| {
            !screen.contains("Add a listener")
        })
        .await;
    }
    // The state line of each listener (the selected one's, on the table's bottom border,
    // thick while the table has the focus, or wrapped inside the table when too long).
    let listeners = [
        "logical/s_t",
        "polling/s_t",
        "wrong/s_t",
        "closed/s_t",
        "param/s_t",
        "mongo/shop.orders",
    ];
    for at in 1..=listeners.len() {
        tmux.keys("Down");
        let listener = listeners[at % listeners.len()];
        let selected = format!("▶ {listener}");
        let state_line = format!(" {listener} ");
        screens.push(
            tmux.wait_for(&format!("{listener} selected"), |screen| {
                screen.contains(&selected)
                    && screen.lines().any(|line| {
                        (line.starts_with(['╰', '┗']) && line.contains(&state_line))
                            || line.starts_with(&format!("┃{state_line}"))
                            || line.starts_with(&format!("│{state_line}"))
                    })
            })
            .await,
        );
    }
    // And the help.
    tmux.keys("?");
    screens.push(tmux.wait_for("help", |s| s.contains("cdc-tui.log")).await);
    tmux.keys("Escape");
    tmux.keys("q");
    tmux.exit_status().await;
    if std::env::var_os("SHOW_SCREENS").is_some() {
        for screen in &screens {
            eprintln!("{screen}");
        }
    }
    for screen in &screens {
        assert_no_password("the TUI", screen);
    }
    let log = std::fs::read_to_string(dir.path().join(".cdc-tui/cdc-tui.log")).expect("log file");
    assert!(
        log.contains("password authentication failed"),
        "the log file has the failure: {log}"
    );
    assert_no_password("the TUI's log file", &log);
}

/// Passwords that are also ordinary text: masking them wherever their text appears would
/// garble messages, and they must still never be shown where a password stands. Each: (name,
/// the password of a role named `name`, given to `name_bad` whose password is another one).
fn common_passwords(pid: u32) -> Vec<(String, String)> {
    let same = format!("same_{pid}");
    vec![
        (format!("one_{pid}"), "o".to_string()),
        (format!("word_{pid}"), "password".to_string()),
        (format!("postgres_{pid}"), "postgres".to_string()),
        (same.clone(), same),
        (format!("encoded_{pid}"), "p@ss/w:rd".to_string()),
    ]
}

/// The password of `user` in these URLs: the user's own name for the user-equals-password case.
fn password_in_url(user: &str, password: &str, same: &str) -> String {
    if password == same {
        user.to_string()
    } else {
        password.to_string()
    }
}

/// No password shown where one stands, and every mask where a password stood (after the `:`
/// of a userinfo, or a setting's `=` or quote), never inside a word.
fn assert_not_shown(what: &str, text: &str, user: &str, password: &str) {
    let encoded = percent_encode(password);
    for shown in [
        format!("{user}:{password}"),
        format!("{user}:{encoded}"),
        format!("password={password}"),
        format!("password={encoded}"),
        format!("password: \"{password}\""),
    ] {
        assert!(!text.contains(&shown), "{what} shows {shown}:\n{text}");
    }
    for (at, _) in text.match_indices("***") {
        let before = text[..at].chars().next_back();
        assert!(
            matches!(before, Some(':' | '=' | '"' | '\'' | '[')),
            "{what} masks something that is no password: …{}…",
            &text[at.saturating_sub(30)..(at + 30).min(text.len())]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_and_common_passwords_neither_leak_nor_garble_messages() {
    let db = TestDb::new("common").await;
    let pid = std::process::id();
    let cases = common_passwords(pid);
    let same = format!("same_{pid}");
    let closed = closed_port();
    let mut roles = String::new();
    let mut config = String::new();
    for (user, password) in &cases {
        let bad = format!("{user}_bad");
        let bad_password = password_in_url(&bad, password, &same);
        roles.push_str(&format!(
            "CREATE ROLE {user} LOGIN SUPERUSER PASSWORD '{password}' IN ROLE {PASSWORD_GROUP};
             CREATE ROLE {bad} LOGIN SUPERUSER PASSWORD 'something-else' IN ROLE {PASSWORD_GROUP};"
        ));
        config.push_str(&format!(
            r#"
[[database]]
name = "{user}"
kind = "postgres"
url = "{right}"

[[database]]
name = "{bad}"
kind = "postgres"
url = "{wrong}"

[[database]]
name = "{user}_mongo"
kind = "mongodb"
url = "mongodb://{user}:{encoded}@127.0.0.1:{closed}/?serverSelectionTimeoutMS=300"

[[listener]]
identifier = "{user}"
database = "{user}"
table = "c_t"
strategy = "logical"

[[listener]]
identifier = "{bad}"
database = "{bad}"
table = "c_t"
strategy = "logical"

[[listener]]
identifier = "{user}_mongo"
database = "{user}_mongo"
table = "shop.orders"
strategy = "change_stream"
"#,
            right = url_as(user, password, &db.name).await,
            wrong = url_as(&bad, &bad_password, &db.name).await,
            encoded = percent_encode(password),
        ));
    }
    let client = db.client().await;
    client
        .batch_execute(&format!("{roles} CREATE TABLE c_t (id int PRIMARY KEY);"))
        .await
        .expect("roles and table");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("cdc.toml"), &config).expect("config");
    let mut cdc = Headless::start_in_with_env(dir, &[("CDC_TUI_LOG", "debug")]).await;
    for (user, _) in &cases {
        cdc.wait_for_state(&format!("{user}/c_t"), "running").await;
        cdc.wait_for_state(&format!("{user}_bad/c_t"), "failed")
            .await;
        cdc.wait_for_state(&format!("{user}_mongo/shop.orders"), "retrying")
            .await;
    }
    client
        .batch_execute("INSERT INTO c_t VALUES (1)")
        .await
        .expect("insert");
    cdc.wait_for(
        "the insert on every listener with the right password",
        |seen| seen.iter().filter(|line| line["type"] == "change").count() == cases.len(),
    )
    .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));

    let stdout: String = cdc.seen.iter().map(|line| format!("{line}\n")).collect();
    let stderr = cdc.stderr();
    for (user, password) in &cases {
        let bad = format!("{user}_bad");
        // The server's words, whole: a password `o`, `password` or the user's own name
        // takes nothing out of them.
        let failed = support::reason_of(&cdc.seen, &format!("{bad}/c_t"), "failed");
        let expected = format!("FATAL: password authentication failed for user \"{bad}\"");
        assert_eq!(failed, expected);
        assert!(stderr.contains(&expected), "the log has it whole too");
        let retrying =
            support::reason_of(&cdc.seen, &format!("{user}_mongo/shop.orders"), "retrying");
        assert!(
            retrying.contains("Server selection timeout: No available servers")
                && retrying.contains("Connection refused"),
            "{retrying}"
        );
        let bad_password = password_in_url(&bad, password, &same);
        for (what, text) in [("stdout", &stdout), ("the logs (stderr)", &stderr)] {
            assert_not_shown(what, text, user, password);
            assert_not_shown(what, text, &bad, &bad_password);
        }
    }
    // The URL-encoded one is distinctive enough to be looked for anywhere, in pieces too.
    for (what, text) in [("stdout", &stdout), ("the logs (stderr)", &stderr)] {
        for piece in [
            "p@ss/w:rd",
            "p%40ss%2Fw%3Ard",
            "ss/w:rd",
            "p@ss/",
            "%2Fw%3Ard",
        ] {
            assert!(!text.contains(piece), "{what} shows {piece}");
        }
    }
}
