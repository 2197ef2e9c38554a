//! The real binary's TUI in a tmux pane against a throwaway cluster: the listener appears,
//! inserts are counted, `p` pauses, `?` shows help, `q` exits 0 and leaves the alternate screen.

mod support;

use std::path::Path;
use std::process::Command;

use support::TestDb;

/// A tmux server of its own (its own socket), killed when the test ends however it ends.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        Tmux {
            socket: format!("cdc-tui-test-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs (apt-get install tmux)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "cdc"])
    }

    fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "cdc", keys]);
    }

    /// Waits until the screen satisfies `condition`, or fails with the screen shown.
    async fn wait_for(&self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        support::eventually(what, async || {
            let screen = self.screen();
            if condition(&screen) {
                Ok(screen)
            } else {
                Err(format!("the screen:\n{screen}"))
            }
        })
        .await
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

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
    let exit_file = dir.path().join("exit-status");
    let command = format!(
        // `cat` keeps the pane open after the TUI exits, to look at the terminal it left.
        "cd {dir} && {binary}; echo $? > {exit}; cat",
        dir = dir.path().display(),
        binary = env!("CARGO_BIN_EXE_cdc-tui"),
        exit = exit_file.display()
    );
    let tmux = Tmux::new();
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "cdc",
        "-x",
        "140",
        "-y",
        "40",
        "sh",
        "-c",
        &command,
    ]);
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
    wait_for_file(&exit_file).await;
    assert_eq!(
        std::fs::read_to_string(&exit_file).unwrap().trim(),
        "0",
        "q exits 0"
    );
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

async fn wait_for_file(path: &Path) {
    support::wait_until("the exit status", || {
        std::fs::read_to_string(path).is_ok_and(|text| text.ends_with('\n'))
    })
    .await;
}
