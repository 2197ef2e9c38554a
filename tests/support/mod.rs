//! Shared test harness: one throwaway PostgreSQL cluster per test binary (stopped by its
//! watchdog when the binary exits, even after a panic), a fresh database per test, and a
//! driver for the real `cdc-tui` binary in headless mode.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod ca;
pub mod in_process;
pub mod mariadb;
pub mod mongo;
pub mod nats;
pub mod proxy;
pub mod tmux;

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pgcluster::{ClusterOptions, PgCluster};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{OnceCell, mpsc};
use tokio::time::Instant;

/// How long any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

static CLUSTER: OnceCell<PgCluster> = OnceCell::const_new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// Members of this role log in with a password (SCRAM) on the shared cluster; every other
/// role is trusted. Grant it to a role made with `PASSWORD '…'` to test passwords.
pub const PASSWORD_GROUP: &str = "password_users";

/// The cluster shared by every test of this binary.
pub async fn cluster() -> &'static PgCluster {
    CLUSTER
        .get_or_init(|| async {
            let mut options = ClusterOptions::default()
                .setting("max_replication_slots", "50")
                .setting("max_wal_senders", "50")
                .setting("wal_sender_timeout", "2s");
            options.extra_hba = vec![
                format!("host all +{PASSWORD_GROUP} 127.0.0.1/32 scram-sha-256"),
                format!("host replication +{PASSWORD_GROUP} 127.0.0.1/32 scram-sha-256"),
            ];
            let cluster = PgCluster::start(options)
                .await
                .expect("start a throwaway PostgreSQL cluster");
            cluster
                .connect("postgres")
                .await
                .expect("connect")
                .batch_execute(&format!("CREATE ROLE {PASSWORD_GROUP} NOLOGIN"))
                .await
                .expect("the password group");
            cluster
        })
        .await
}

/// A cluster of its own with `wal_level = replica` (no logical replication), whose database
/// `replica` has a table `t`; the test stops it.
pub async fn wal_level_replica_cluster() -> PgCluster {
    let cluster = PgCluster::start(ClusterOptions::default().setting("wal_level", "replica"))
        .await
        .expect("a wal_level = replica cluster");
    cluster.create_database("replica").await.expect("database");
    let client = cluster.connect("replica").await.expect("connect");
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .expect("create table");
    cluster
}

/// A URL of the shared cluster for `user` with `password` (percent-encoded here).
pub async fn url_as(user: &str, password: &str, database: &str) -> String {
    format!(
        "postgres://{user}:{}@127.0.0.1:{}/{database}",
        percent_encode(password),
        cluster().await.port()
    )
}

/// Everything but unreserved characters as `%XX`.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// A fresh database on the shared cluster.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new(prefix: &str) -> TestDb {
        let cluster = cluster().await;
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        cluster
            .create_database(&name)
            .await
            .expect("create database");
        TestDb {
            url: cluster.url(&name),
            name,
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        cluster().await.connect(&self.name).await.expect("connect")
    }
}

/// How often [`eventually`] checks its condition again.
const POLL: Duration = Duration::from_millis(20);

/// Waits for a condition with a deadline instead of sleeping for a guess: runs `probe` until it
/// answers `Ok`, and returns that. `Err` says what it found instead; the last one is shown if
/// the deadline ([`DEADLINE`]) passes. Every test that polls for something polls through here.
pub async fn eventually<T, E: Display>(what: &str, probe: impl AsyncFnMut() -> Result<T, E>) -> T {
    eventually_within(DEADLINE, what, probe).await
}

/// [`eventually`] with a deadline of `limit` from now. The deadline also bounds a probe that
/// hangs; probes run every [`POLL`] (state such as a catalog view or a screen has no signal
/// to wait on).
pub async fn eventually_within<T, E: Display>(
    limit: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let mut instead = String::from("no answer yet");
    let probing = async {
        let mut every = tokio::time::interval(POLL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match probe().await {
                Ok(value) => return value,
                Err(error) => instead = error.to_string(),
            }
        }
    };
    let answer = tokio::time::timeout(limit, probing).await;
    answer.unwrap_or_else(|_| {
        panic!("timed out after {limit:?} waiting for {what}; instead: {instead}")
    })
}

/// [`eventually`] for a plain true-or-false condition.
pub async fn wait_until<F: FnMut() -> bool>(what: &str, mut condition: F) {
    eventually(
        what,
        async || if condition() { Ok(()) } else { Err("false") },
    )
    .await;
}

/// The real binary running headless, its stdout parsed line by line.
pub struct Headless {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<Value>,
    /// Every JSON line seen so far, in order.
    pub seen: Vec<Value>,
    pub dir: tempfile::TempDir,
}

impl Headless {
    /// Writes `cdc.toml` with `config` into a fresh dir and starts `cdc-tui --headless` there.
    pub async fn start(config: &str) -> Headless {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("cdc.toml"), config).expect("write config");
        Self::start_in(dir).await
    }

    /// Starts the binary in an existing dir (a restart keeps the state dir).
    pub async fn start_in(dir: tempfile::TempDir) -> Headless {
        Self::start_in_with_env(dir, &[]).await
    }

    /// As [`Headless::start_in`], with environment variables set for the binary.
    pub async fn start_in_with_env(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Headless {
        let config = dir.path().join("cdc.toml");
        Self::spawn(
            dir,
            &[
                "--headless",
                "--config",
                config.to_str().expect("utf-8 path"),
            ],
            env,
        )
        .await
    }

    /// Starts the binary in a fresh empty dir with these arguments.
    pub async fn start_with_args(args: &[&str]) -> Headless {
        Self::spawn(tempfile::tempdir().expect("temp dir"), args, &[]).await
    }

    /// The binary's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("cdc-tui runs")
    }

    async fn spawn(dir: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Headless {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("stderr.log"))
            .expect("stderr log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_cdc-tui"))
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn cdc-tui");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        let (sender, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let value: Value = match serde_json::from_str(&line) {
                    Ok(value) => value,
                    // Valid JSON that serde_json does not read by default (a 200-level json
                    // value, 1e400): kept whole, for a test that reads its text.
                    Err(error)
                        if ["recursion limit", "number out of range"]
                            .iter()
                            .any(|limit| error.to_string().contains(limit)) =>
                    {
                        serde_json::json!({"type": "beyond_serde_json", "line": line})
                    }
                    Err(error) => panic!("stdout line is not JSON ({error}): {line}"),
                };
                if sender.send(value).is_err() {
                    return;
                }
            }
        });
        Headless {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            dir,
        }
    }

    /// What the binary wrote to stderr (its logs, in headless mode).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Reads lines until `condition` holds over everything seen, or fails at the deadline.
    pub async fn wait_for(&mut self, what: &str, condition: impl Fn(&[Value]) -> bool) {
        self.wait_for_within(DEADLINE, what, condition).await
    }

    /// [`Self::wait_for`] with a deadline of its own, for workloads that take long on a
    /// busy machine.
    pub async fn wait_for_within(
        &mut self,
        within: Duration,
        what: &str,
        condition: impl Fn(&[Value]) -> bool,
    ) {
        let deadline = Instant::now() + within;
        while !condition(&self.seen) {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => self.seen.push(line),
                Ok(None) => panic!(
                    "cdc-tui ended while waiting for {what}; saw {:#?}",
                    self.seen
                ),
                Err(_) => panic!("timed out waiting for {what}; saw {:#?}", self.seen),
            }
        }
    }

    /// Waits until at least `count` changes of each `op` have been printed.
    pub async fn wait_for_ops(&mut self, what: &str, counts: &[(&str, usize)]) {
        self.wait_for(what, |seen| {
            counts
                .iter()
                .all(|(op, count)| changes_with_op(seen, op).len() >= *count)
        })
        .await;
    }

    /// Waits until `listener` has printed at least `count` changes.
    pub async fn wait_for_changes(&mut self, listener: &str, count: usize) {
        self.wait_for(&format!("{count} changes of {listener}"), |seen| {
            changes_of(seen, listener).len() >= count
        })
        .await;
    }

    /// Waits for a status line of `listener` in `state`.
    pub async fn wait_for_state(&mut self, listener: &str, state: &str) {
        self.wait_for(&format!("{listener} {state}"), |seen| {
            seen.iter().any(|line| {
                line["type"] == "status" && line["listener"] == listener && line["state"] == state
            })
        })
        .await;
    }

    pub async fn send_command(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("write command");
        stdin.flush().await.expect("flush command");
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`) and returns the exit code, reading the rest of
    /// stdout into `seen`.
    pub async fn signal_and_wait(&mut self, signal: &str) -> Option<i32> {
        let pid = self.child.id().expect("child pid");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        self.wait_for_exit(&format!("cdc-tui to exit after SIG{signal}"))
            .await
    }

    /// Closes the binary's stdin (end of input). Until then it stays open: a test that never
    /// calls this runs with stdin open, as a terminal would leave it.
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Waits (up to [`DEADLINE`]) for the binary to exit by itself, reads the rest of stdout
    /// into `seen`, and returns the exit code.
    pub async fn wait_for_exit(&mut self, what: &str) -> Option<i32> {
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}; saw {:#?}", self.seen))
            .expect("wait");
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(5), self.lines.recv()).await
        {
            self.seen.push(line);
        }
        status.code()
    }

    /// Stops the process (SIGKILL) and hands back its dir, for a restart.
    pub async fn kill(mut self) -> tempfile::TempDir {
        self.signal_and_wait("KILL").await;
        self.dir
    }

    pub fn changes(&self) -> Vec<&Value> {
        self.seen.iter().filter(|l| l["type"] == "change").collect()
    }

    pub fn flushes(&self) -> Vec<&Value> {
        self.seen.iter().filter(|l| l["type"] == "flush").collect()
    }
}

/// The status lines of `listener`, as (state, reason or "").
pub fn statuses(seen: &[Value], listener: &str) -> Vec<(String, String)> {
    seen.iter()
        .filter(|line| line["type"] == "status" && line["listener"] == listener)
        .map(|line| {
            (
                line["state"].as_str().unwrap_or_default().to_string(),
                line["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The reason of the first status line of `listener` in `state`.
pub fn reason_of(seen: &[Value], listener: &str, state: &str) -> String {
    statuses(seen, listener)
        .into_iter()
        .find(|(s, _)| s == state)
        .map(|(_, reason)| reason)
        .unwrap_or_else(|| panic!("no {state} line of {listener}"))
}

/// Fails unless `listener` never reported `retrying`: a mistake that waiting would not fix
/// fails the listener at once.
pub fn assert_failed_at_once(seen: &[Value], listener: &str) {
    let statuses = statuses(seen, listener);
    assert!(
        statuses.iter().all(|(state, _)| state != "retrying"),
        "{listener} fails at once: waiting would not help; {statuses:?}"
    );
}

/// The change lines of one listener.
pub fn changes_of<'a>(seen: &'a [Value], listener: &str) -> Vec<&'a Value> {
    seen.iter()
        .filter(|line| line["type"] == "change" && line["listener"] == listener)
        .collect()
}

/// The seconds of every "next try in N s" of `listener`'s retrying lines.
pub fn next_tries(seen: &[Value], listener: &str) -> Vec<f64> {
    statuses(seen, listener)
        .iter()
        .filter(|(state, _)| state == "retrying")
        .map(|(_, reason)| {
            let (_, after) = reason.rsplit_once("next try in ").expect("next try in");
            after.trim_end_matches(" s)").parse().expect("seconds")
        })
        .collect()
}

/// The change lines of one `op` (`insert`, `update`, `delete`, `truncate`).
pub fn changes_with_op<'a>(seen: &'a [Value], op: &str) -> Vec<&'a Value> {
    seen.iter()
        .filter(|line| line["type"] == "change" && line["op"] == op)
        .collect()
}

/// An LSN (`16/B374D848`) as a number, to compare positions.
pub fn lsn(text: &str) -> u64 {
    let (high, low) = text.split_once('/').expect("an LSN");
    u64::from_str_radix(high, 16).expect("hex") << 32 | u64::from_str_radix(low, 16).expect("hex")
}

/// Waits until no walsender holds the replication slot; returns its confirmed_flush_lsn.
pub async fn wait_for_inactive_slot(client: &tokio_postgres::Client, slot: &str) -> u64 {
    eventually(&format!("slot {slot} inactive"), async || {
        let row = client
            .query_one(
                "SELECT active, confirmed_flush_lsn::text FROM pg_replication_slots \
                 WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .expect("the slot");
        if row.get::<_, bool>(0) {
            Err("active")
        } else {
            Ok(lsn(row.get(1)))
        }
    })
    .await
}

/// Drops a persistent slot once no walsender holds it.
pub async fn drop_slot(client: &tokio_postgres::Client, slot: &str) {
    wait_for_inactive_slot(client, slot).await;
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .expect("drop the slot");
}

/// Checks the headless stream's framing: every flush line counts exactly the change lines
/// printed since the previous flush line, and no batch exceeds `chunk_size`.
pub fn assert_batches_account_for_changes(seen: &[Value], chunk_size: u64) {
    let mut since_flush = 0u64;
    for line in seen {
        match line["type"].as_str() {
            Some("change") => since_flush += 1,
            Some("flush") => {
                let changes = line["changes"].as_u64().expect("flush.changes");
                assert_eq!(
                    changes, since_flush,
                    "flush line counts its changes: {line}"
                );
                assert!(changes <= chunk_size, "batch over chunk_size: {line}");
                let packets: u64 = line["packets"]
                    .as_array()
                    .expect("packets")
                    .iter()
                    .map(|p| p["count"].as_u64().expect("count"))
                    .sum();
                assert_eq!(packets, changes, "packets add up: {line}");
                since_flush = 0;
            }
            _ => {}
        }
    }
    assert_eq!(since_flush, 0, "every change is followed by its flush line");
}

/// A path inside the test's dir.
pub fn in_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
