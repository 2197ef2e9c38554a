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
