//! The embedded demo: `cdc-tui --demo --headless` with no config file starts a throwaway
//! cluster, shows every op, and leaves nothing behind on SIGTERM.

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
        !postgres_running_in(&data_dir),
        "no server of the demo is left running"
    );
}

/// Whether any process's command line names this data dir.
fn postgres_running_in(data_dir: &std::path::Path) -> bool {
    let needle = data_dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .any(|cmdline| String::from_utf8_lossy(&cmdline).contains(&needle))
}
