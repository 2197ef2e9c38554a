//! The embedded demo: `cdc-tui --demo --headless` with no config file starts a throwaway
//! cluster, shows every op, and leaves nothing behind on SIGTERM; with `[demo] mysql = true`
//! a throwaway MariaDB beside it does the same.

mod support;

use std::path::PathBuf;

use support::Headless;

#[tokio::test]
async fn the_demo_shows_every_op_and_cleans_up_on_sigterm() {
    let mut cdc = Headless::start_with_args(&["--demo", "--headless"]).await;
    cdc.wait_for("inserts, updates and deletes", |seen| {
        ["insert", "update", "delete"].iter().all(|op| {
            seen.iter()
                .any(|line| line["type"] == "change" && line["op"] == *op)
        })
    })
    .await;
    let stderr = cdc.stderr();
    let data_dir: PathBuf = stderr
        .lines()
        .find_map(|line| line.split("data_dir=").nth(1))
        .map(|dir| PathBuf::from(dir.trim()))
        .expect("the demo logs its data dir");
    assert!(data_dir.exists());
    let listeners: Vec<&str> = cdc
        .seen
        .iter()
        .filter(|line| line["type"] == "status" && line["state"] == "running")
        .filter_map(|line| line["listener"].as_str())
        .collect();
    for expected in ["shop/public.*", "customers/public.customers"] {
        assert!(
            listeners.contains(&expected),
            "{expected} runs: {listeners:?}"
        );
    }

    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    assert!(
        !data_dir.exists() && !data_dir.parent().unwrap().exists(),
        "the demo's cluster directory is removed"
    );
    assert!(
        !a_process_names(&data_dir),
        "no server of the demo is left running"
    );
}

/// Whether any process's command line names this directory.
fn a_process_names(dir: &std::path::Path) -> bool {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .any(|cmdline| String::from_utf8_lossy(&cmdline).contains(&needle))
}

/// The demo's batch job is one long transaction the server streams while it runs: a `status`
/// answer shows it running (with its changes so far), and then its changes arrive once, whole,
/// with one transaction id, its tag in place and one transaction line.
#[tokio::test]
async fn the_demos_batch_job_shows_running_then_arrives_as_one_transaction() {
    const LISTENER: &str = "shop/public.*";
    let mut cdc = Headless::start_with_args(&["--demo", "--headless"]).await;
    cdc.wait_for_state(LISTENER, "running").await;
    let statuses = |seen: &[serde_json::Value]| {
        seen.iter()
            .filter(|line| line["type"] == "status" && line["listener"] == LISTENER)
            .count()
    };
    // The running transactions are state with no signal of their own: ask every 50 ms.
    let deadline = tokio::time::Instant::now() + support::DEADLINE;
    let mut every = tokio::time::interval(std::time::Duration::from_millis(50));
    let running = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no status answer showed a running transaction"
        );
        every.tick().await;
        let answered = statuses(&cdc.seen) + 1;
        cdc.send_command(&format!("status {LISTENER}")).await;
        cdc.wait_for("the status answer", |seen| statuses(seen) >= answered)
            .await;
        let last = cdc
            .seen
            .iter()
            .rev()
            .find(|line| line["type"] == "status" && line["listener"] == LISTENER)
            .expect("answered");
        if let Some(tx) = last["running"]
            .as_array()
            .and_then(|running| running.first())
        {
            break tx.clone();
        }
    };
    let id = running["id"].as_str().expect("an id").to_string();
    assert!(running["changes"].as_u64().unwrap() > 0, "{running}");
    assert!(
        !cdc.seen.iter().any(|line| line["tx"]["id"] == id.as_str()),
        "nothing of it is printed while it runs"
    );

    cdc.wait_for("the batch job's transaction line", |seen| {
        seen.iter()
            .any(|line| line["type"] == "transaction" && line["id"] == id.as_str())
    })
    .await;
    let of_it: Vec<&serde_json::Value> = (cdc.seen.iter())
        .filter(|line| line["tx"]["id"] == id.as_str())
        .collect();
    assert_eq!(of_it[0]["type"], "message");
    let tag = of_it[0]["content"].as_str().unwrap();
    assert!(tag.starts_with("batch job "), "{tag}");
    let changes: Vec<&&serde_json::Value> = of_it
        .iter()
        .filter(|line| line["type"] == "change")
        .collect();
    assert_eq!(changes.len(), 3001, "a bulk order and its 3,000 items");
    let indexes: Vec<u64> = of_it
        .iter()
        .map(|line| line["tx"]["index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        indexes,
        (1..=3002).collect::<Vec<_>>(),
        "in order, once each"
    );
    let transaction = (cdc.seen.iter())
        .find(|line| line["type"] == "transaction" && line["id"] == id.as_str())
        .unwrap();
    assert_eq!(transaction["changes"], 3001);
    assert_eq!(
        transaction["tables"],
        serde_json::json!(["public.orders", "public.order_items"])
    );
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
}

/// `[demo] mysql = true`: a throwaway MariaDB beside the cluster holds the same shop, watched by
/// the listener the demo adds: every op arrives, a checkout as one transaction of three
/// tables; on SIGTERM the server is gone with its directory.
#[tokio::test]
async fn the_demos_mariadb_shows_the_same_shop_and_cleans_up_on_sigterm() {
    const LISTENER: &str = "shop_mysql/demo_mysql.*";
    let mut cdc = Headless::start("[demo]\nenabled = true\nmysql = true\n").await;
    cdc.wait_for("inserts, updates and deletes of the MariaDB shop", |seen| {
        ["insert", "update", "delete"].iter().all(|op| {
            seen.iter().any(|line| {
                line["type"] == "change" && line["listener"] == LISTENER && line["op"] == *op
            })
        })
    })
    .await;
    let checkout = serde_json::json!([
        "demo_mysql.orders",
        "demo_mysql.order_items",
        "demo_mysql.customers"
    ]);
    cdc.wait_for("a checkout as one transaction", |seen| {
        seen.iter().any(|line| {
            line["type"] == "transaction"
                && line["listener"] == LISTENER
                && line["tables"] == checkout
        })
    })
    .await;
    let stderr = cdc.stderr();
    let dir: PathBuf = stderr
        .lines()
        .filter(|line| line.contains("MariaDB server started"))
        .find_map(|line| line.split(" dir=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(PathBuf::from)
        .expect("the demo logs its MariaDB's directory");
    assert!(dir.exists());

    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    assert!(!dir.exists(), "the MariaDB's directory is removed");
    assert!(
        !a_process_names(&dir),
        "no MariaDB of the demo is left running"
    );
}
