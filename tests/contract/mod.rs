//! The contract every source keeps, written once: each scenario drives the real binary
//! headless against a [`Harness`] (a source and strategy with the database it writes to), and
//! `tests/contract.rs` runs every scenario for every harness. What differs between sources
//! (the values they print, what a restart can know) is the harness's to say; the scenarios
//! hold the rest.

pub mod jsonl_follow;
pub mod mongo_change_stream;
pub mod mysql;
pub mod mysql_binlog;
pub mod mysql_polling;
pub mod nats_jetstream;
pub mod polling;
pub mod postgres;
pub mod postgres_logical;
pub mod postgres_polling;
pub mod recorded;

use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;

use serde_json::Value;

use crate::support::{
    Headless, assert_batches_account_for_changes, assert_failed_at_once, changes_of, next_tries,
    reason_of, statuses,
};

/// At most this many changes per batch: small, so that every scenario spans batches.
const CHUNK_SIZE: u64 = 5;
/// Row ids the scenarios write are below this.
const MAX_ID: i64 = 1_000;
/// The listener under test.
const LISTENER: &str = "contract";

/// Whether a scenario's server is up from the start (the database on the shared server, or a
/// server of the test's own), or down until [`Harness::up`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Up,
    Down,
}

/// What `before` holds on updates and deletes (inserts never have one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Before {
    /// Always `null` (polling; logical under the default replica identity).
    Null,
    /// The row as it was (logical under REPLICA IDENTITY FULL; MongoDB with pre-images).
    Image,
    /// The row as it was, or `null` (a real MongoDB server, whose pre-images depend on its
    /// version and settings).
    ImageOrNull,
}

/// Where sources differ in what they can deliver.
#[derive(Clone, Copy, Debug)]
pub struct Traits {
    pub before: Before,
    /// The op a restart reports for a row inserted while cdc-tui was down: `insert`, or
    /// `update` where the source cannot tell an insert from an update (polling).
    pub op_after_restart: &'static str,
    /// A restart may deliver the change at the saved position again (polling reads from the
    /// saved cursor itself, rather than risk missing a row stamped with it).
    pub repeats_saved: bool,
    /// A paused listener delivers nothing until resumed (else the pause scenario checks only
    /// that resume catches up).
    pub pause_holds: bool,
}

impl Default for Traits {
    fn default() -> Traits {
        Traits {
            before: Before::Image,
            op_after_restart: "insert",
            repeats_saved: false,
            pause_holds: true,
        }
    }
}

/// One source and strategy under the contract, with the database it writes to.
///
/// The contract table has rows with integer ids; each row has a fixed set of columns that the
/// harness writes and says how the source prints ([`Harness::row`]): its key, a text, an
/// integer, a boolean, a null and, where the source has one, a numeric (PostgreSQL prints it as
/// a string). Writes are made through the database's own client, and the listener's position
/// is persistent (a slot, a saved cursor or token), so a restart resumes.
#[allow(async_fn_in_trait)] // used in generic tests only, on the test's own runtime
pub trait Harness: Sized {
    /// A fresh database (or collection) holding the contract table, empty.
    async fn start(test: &str, server: Server) -> Self;
    /// Brings a [`Server::Down`] server up, with the contract table.
    async fn up(&mut self);
    /// What the retrying reason of a [`Server::Down`] server names (`host:port`, a file) and
    /// a phrase of its error (`refused`).
    fn unreachable(&self) -> (String, &'static str);
    /// cdc.toml text (as SPEC.md spells it) with the database and one listener per
    /// `(identifier, table)`, each with a persistent position.
    fn config(&self, listeners: &[(&str, &str)]) -> String;
    /// The contract table, as a listener's `table` key spells it.
    fn table(&self) -> String;
    /// A table the source refuses (missing or invalid), and a phrase its reason holds besides
    /// the name; `None` for a source that has no table it could refuse (a file of changes
    /// takes any table name as a filter).
    fn bad_table(&self) -> Option<(String, &'static str)>;
    /// Inserts the rows `ids` (in one transaction where the source has them).
    async fn insert(&self, ids: RangeInclusive<i64>);
    /// Updates row `id` (its own transaction).
    async fn update(&self, id: i64);
    /// Deletes row `id` (its own transaction).
    async fn delete(&self, id: i64);
    /// The `key` of row `id`, as printed (key columns in key order).
    fn key(&self, id: i64) -> Value;
    /// Row `id` as printed in `after`/`before`, as inserted or once updated. A source may print
    /// more columns than these (polling's cursor column): the harness checks them itself.
    fn row(&self, id: i64, updated: bool) -> Value;
    fn traits(&self) -> Traits;
    /// The source's own fields of [`exact_changes_in_order`]'s changes (positions, commit
    /// times, update descriptions).
    fn check_changes(&self, _changes: &[&Value]) {}
    /// Removes what outlives the test (slots, servers of its own).
    async fn finish(self);
}

/// `identifier/table`.
fn identity(identifier: &str, table: &str) -> String {
    format!("{identifier}/{table}")
}

/// The whole cdc.toml: a small pipeline and the harness's database and listeners.
fn config<H: Harness>(harness: &H, listeners: &[(&str, &str)]) -> String {
    format!(
        "[pipeline]\nchunk_size = {CHUNK_SIZE}\ntimeout_ms = 20\n\n{}",
        harness.config(listeners)
    )
}

/// Row ids by their printed key.
struct Keys(HashMap<String, i64>);

impl Keys {
    fn new<H: Harness>(harness: &H) -> Keys {
        Keys(
            (1..MAX_ID)
                .map(|id| (harness.key(id).to_string(), id))
                .collect(),
        )
    }

    fn id(&self, change: &Value) -> i64 {
        *self
            .0
            .get(&change["key"].to_string())
            .unwrap_or_else(|| panic!("a change of a row no scenario wrote: {change}"))
    }

    /// The row ids of `listener`'s changes, in the order printed.
    fn ids(&self, seen: &[Value], listener: &str) -> Vec<i64> {
        changes_of(seen, listener)
            .into_iter()
            .map(|change| self.id(change))
            .collect()
    }

    /// Whether every row of `ids` has a change of `listener` in `seen`.
    fn all_seen(&self, seen: &[Value], listener: &str, ids: RangeInclusive<i64>) -> bool {
        let printed: HashSet<i64> = self.ids(seen, listener).into_iter().collect();
        ids.into_iter().all(|id| printed.contains(&id))
    }
}

/// Starts the binary on `config` and waits for each of `listeners` to run.
async fn watch(config: &str, listeners: &[&str]) -> Headless {
    let mut cdc = Headless::start(config).await;
    for listener in listeners {
        cdc.wait_for_state(listener, "running").await;
    }
    cdc
}

/// Fails unless `image` is `expected` on each of its columns (`None`: `null`).
fn assert_image(image: &Value, expected: Option<Value>, what: &str, change: &Value) {
    let Some(expected) = expected else {
        assert!(image.is_null(), "{what} is null: {change}");
        return;
    };
    let columns = expected.as_object().expect("a row is an object");
    for (column, value) in columns {
        assert_eq!(&image[column], value, "{what}.{column}: {change}");
        assert!(
            image.get(column).is_some(),
            "{what} has {column} (even when null): {change}"
        );
    }
}

/// Fails if `listener` ever went `retrying` or `failed`, or said why it is in any state.
fn assert_plain_run(seen: &[Value], listener: &str) {
    let statuses = statuses(seen, listener);
    assert!(
        statuses
            .iter()
            .all(|(state, reason)| state != "retrying" && state != "failed" && reason.is_empty()),
        "{listener}: a plain run: {statuses:?}"
    );
}

/// A change a scenario made: its op, its row and the row's images before and after it (as
/// inserted, or updated), `None` where there is none.
struct Made {
    op: &'static str,
    id: i64,
    before: Option<bool>,
    after: Option<bool>,
}

impl Made {
    fn new(op: &'static str, id: i64, before: Option<bool>, after: Option<bool>) -> Made {
        Made {
            op,
            id,
            before,
            after,
        }
    }
}

/// 1. Every insert, update and delete made, once, in the order made, with typed values; each
///    batch's flush line after its changes; SIGTERM exits 0 with the listener stopped.
pub async fn exact_changes_in_order<H: Harness>() {
    let harness = H::start("exact", Server::Up).await;
    let (table, keys, traits) = (harness.table(), Keys::new(&harness), harness.traits());
    let listener = identity(LISTENER, &table);
    let mut cdc = watch(&config(&harness, &[(LISTENER, &table)]), &[&listener]).await;

    // Each step waits until the one before it is printed: polling sees what changed between
    // two polls, not in which order.
    let mut made: Vec<Made> = Vec::new();
    harness.insert(1..=12).await;
    made.extend((1..=12).map(|id| Made::new("insert", id, None, Some(false))));
    cdc.wait_for_changes(&listener, 12).await;
    for id in 1..=4 {
        harness.update(id).await;
        made.push(Made::new("update", id, Some(false), Some(true)));
    }
    cdc.wait_for_changes(&listener, 16).await;
    for id in 10..=12 {
        harness.delete(id).await;
        made.push(Made::new("delete", id, Some(false), None));
    }
    cdc.wait_for_changes(&listener, 19).await;
    assert_eq!(
        cdc.signal_and_wait("TERM").await,
        Some(0),
        "SIGTERM exits 0"
    );

    let seen = &cdc.seen;
    let changes = changes_of(seen, &listener);
    let printed: Vec<(&str, i64)> = changes
        .iter()
        .map(|change| (change["op"].as_str().unwrap_or_default(), keys.id(change)))
        .collect();
    let expected: Vec<(&str, i64)> = made.iter().map(|made| (made.op, made.id)).collect();
    assert_eq!(
        printed, expected,
        "exactly the changes made, in the order made"
    );
    for (change, made) in changes.iter().zip(&made) {
        let image = |updated: Option<bool>| updated.map(|updated| harness.row(made.id, updated));
        assert_eq!(change["listener"], listener.as_str(), "{change}");
        assert_eq!(change["table"], table.as_str(), "{change}");
        assert_eq!(
            change["key"].to_string(),
            harness.key(made.id).to_string(),
            "the key, its columns in key order"
        );
        assert_image(&change["after"], image(made.after), "after", change);
        match traits.before {
            Before::Null => assert_image(&change["before"], None, "before", change),
            Before::Image => assert_image(&change["before"], image(made.before), "before", change),
            Before::ImageOrNull if change["before"].is_null() => {}
            Before::ImageOrNull => {
                assert_image(&change["before"], image(made.before), "before", change)
            }
        }
        assert!(
            change["captured_at"]
                .as_str()
                .is_some_and(|at| at.ends_with('Z')),
            "captured_at is a UTC time: {change}"
        );
    }
    harness.check_changes(&changes);
    assert_batches_account_for_changes(seen, CHUNK_SIZE);
    let states: Vec<String> = statuses(seen, &listener)
        .into_iter()
        .map(|(state, _)| state)
        .collect();
    assert_eq!(
        states.last().map(String::as_str),
        Some("stopped"),
        "the listener reports stopped on shutdown: {states:?}"
    );
    harness.finish().await;
}

/// 2. `pause` holds delivery (a second listener on the same table shows the writes were
///    there to deliver) and `resume` delivers every write made meanwhile, once, in order.
pub async fn pause_then_resume_catches_up<H: Harness>() {
    let harness = H::start("pause", Server::Up).await;
    let (table, keys) = (harness.table(), Keys::new(&harness));
    let (listener, witness) = (identity(LISTENER, &table), identity("witness", &table));
    let config = config(&harness, &[(LISTENER, &table), ("witness", &table)]);
    let mut cdc = watch(&config, &[&listener, &witness]).await;
    harness.insert(1..=3).await;
    cdc.wait_for("both listeners' first rows", |seen| {
        keys.all_seen(seen, &listener, 1..=3) && keys.all_seen(seen, &witness, 1..=3)
    })
    .await;

    cdc.send_command(&format!("pause {listener}")).await;
    cdc.wait_for_state(&listener, "paused").await;
    // More than a source reads ahead (MongoDB: 64 events), in steps, each taken by the witness
    // before the next is written: unpaused, the listener would have taken the first steps by
    // the time the witness has the last.
    for from in (4..=103).step_by(25) {
        harness.insert(from..=from + 24).await;
        cdc.wait_for(
            "the witness to take the rows written while paused",
            |seen| keys.all_seen(seen, &witness, 1..=from + 24),
        )
        .await;
    }
    if harness.traits().pause_holds {
        assert_eq!(
            keys.ids(&cdc.seen, &listener),
            [1, 2, 3],
            "nothing delivered while paused"
        );
    }
    cdc.send_command(&format!("resume {listener}")).await;
    cdc.wait_for("the rows written while paused", |seen| {
        keys.all_seen(seen, &listener, 1..=103)
    })
    .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    assert_eq!(
        keys.ids(&cdc.seen, &listener),
        (1..=103).collect::<Vec<_>>(),
        "each row once, in order"
    );
    assert_plain_run(&cdc.seen, &listener);
    harness.finish().await;
}

/// 3. `stop` saves the position (the kill -9 that follows proves it was saved by then); a
///    restart delivers the rows written while cdc-tui was down, once each, in order, then
///    live ones, and nothing delivered before (but what the source says it repeats).
pub async fn stop_and_restart_resume_from_the_saved_position<H: Harness>() {
    let harness = H::start("restart", Server::Up).await;
    let (table, keys, traits) = (harness.table(), Keys::new(&harness), harness.traits());
    let listener = identity(LISTENER, &table);
    let config = config(&harness, &[(LISTENER, &table)]);
    let mut cdc = watch(&config, &[&listener]).await;
    harness.insert(1..=5).await;
    cdc.wait_for_changes(&listener, 5).await;
    cdc.send_command(&format!("stop {listener}")).await;
    cdc.wait_for_state(&listener, "stopped").await;
    let saved = changes_of(&cdc.seen, &listener).last().expect("a change")["position"].clone();
    let dir = cdc.kill().await;

    harness.insert(6..=10).await;
    let mut cdc = Headless::start_in(dir).await;
    cdc.wait_for("the rows written while down", |seen| {
        keys.all_seen(seen, &listener, 6..=10)
    })
    .await;
    harness.insert(11..=11).await;
    cdc.wait_for("a live row after the catch-up", |seen| {
        keys.all_seen(seen, &listener, 11..=11)
    })
    .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));

    let changes = changes_of(&cdc.seen, &listener);
    let (again, new): (Vec<&Value>, Vec<&Value>) =
        changes.iter().partition(|change| keys.id(change) <= 5);
    if traits.repeats_saved {
        assert!(
            again.iter().all(|change| change["position"] == saved),
            "only the change at the saved position {saved} comes again: {again:?}"
        );
    } else {
        assert!(
            again.is_empty(),
            "nothing delivered before the stop comes again: {again:?}"
        );
    }
    assert_eq!(
        changes[..again.len()],
        again[..],
        "what comes again comes first"
    );
    let new: Vec<(i64, &str)> = new
        .iter()
        .map(|change| (keys.id(change), change["op"].as_str().unwrap_or_default()))
        .collect();
    let expected: Vec<(i64, &str)> = (6..=10)
        .map(|id| (id, traits.op_after_restart))
        .chain([(11, "insert")])
        .collect();
    assert_eq!(
        new, expected,
        "every row written while down, once, in order, then the live one"
    );
    assert_plain_run(&cdc.seen, &listener);
    harness.finish().await;
}

/// 4. A server down at start: the listener retries with growing waits and a reason naming
///    the server, and captures once the server is up.
pub async fn a_database_down_at_start_is_retried_then_captured<H: Harness>() {
    let mut harness = H::start("down", Server::Down).await;
    let (table, keys) = (harness.table(), Keys::new(&harness));
    let listener = identity(LISTENER, &table);
    let mut cdc = Headless::start(&config(&harness, &[(LISTENER, &table)])).await;
    cdc.wait_for("three retries", |seen| {
        next_tries(seen, &listener).len() >= 3
    })
    .await;
    let reason = reason_of(&cdc.seen, &listener, "retrying");
    eprintln!("retrying: {reason}");
    let (server, error) = harness.unreachable();
    assert!(
        reason.contains(&server) && reason.contains(error) && reason.contains("next try in"),
        "the reason names the server, its error and when it is tried again: {reason}"
    );
    harness.up().await;
    cdc.wait_for_state(&listener, "running").await;
    let waits = next_tries(&cdc.seen, &listener);
    assert_eq!(&waits[..3], &[0.5, 1.0, 2.0], "capped exponential backoff");
    assert!(waits.windows(2).all(|pair| pair[1] >= pair[0]), "{waits:?}");

    harness.insert(1..=20).await;
    cdc.wait_for("the rows written once it was up", |seen| {
        keys.all_seen(seen, &listener, 1..=20)
    })
    .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    assert_eq!(keys.ids(&cdc.seen, &listener), (1..=20).collect::<Vec<_>>());
    harness.finish().await;
}

/// 5. kill -9 while changes are in flight loses nothing: every row written arrives at least
///    once across the two runs, once within each, and the second run in order.
pub async fn kill_9_loses_nothing<H: Harness>() {
    const STEP: i64 = 10;
    let harness = H::start("kill", Server::Up).await;
    let (table, keys) = (harness.table(), Keys::new(&harness));
    let listener = identity(LISTENER, &table);
    let mut cdc = watch(&config(&harness, &[(LISTENER, &table)]), &[&listener]).await;
    // The writes run in step with what cdc-tui prints, three transactions ahead of it, so the
    // kill lands while changes are in flight; more are written while it is down.
    let mut written = 0;
    while changes_of(&cdc.seen, &listener).len() < 100 {
        harness.insert(written + 1..=written + STEP).await;
        written += STEP;
        let behind = (written - 3 * STEP).max(0) as usize;
        cdc.wait_for_changes(&listener, behind).await;
    }
    cdc.signal_and_wait("KILL").await;
    let first = keys.ids(&cdc.seen, &listener);
    harness.insert(written + 1..=written + 50).await;
    written += 50;

    let mut cdc = Headless::start_in(cdc.dir).await;
    let missing = |seen: &[Value]| -> Vec<i64> {
        let printed: HashSet<i64> = first
            .iter()
            .copied()
            .chain(keys.ids(seen, &listener))
            .collect();
        (1..=written).filter(|id| !printed.contains(id)).collect()
    };
    cdc.wait_for("every row, across both runs", |seen| {
        missing(seen).is_empty()
    })
    .await;
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    let second = keys.ids(&cdc.seen, &listener);
    eprintln!(
        "kill -9: {written} rows, {} in the first run, {} in the second",
        first.len(),
        second.len()
    );
    assert!(
        (first.len() as i64) < written,
        "the kill came before the end"
    );
    for (run, ids) in [("first", &first), ("second", &second)] {
        assert!(
            ids.windows(2).all(|pair| pair[0] < pair[1]),
            "the {run} run delivers each row once, in order: {ids:?}"
        );
    }
    harness.finish().await;
}

/// 6. A table the source refuses fails the listener at once, with a reason naming it.
pub async fn a_bad_table_fails_naming_it<H: Harness>() {
    let harness = H::start("bad", Server::Up).await;
    let Some((table, phrase)) = harness.bad_table() else {
        eprintln!("this source refuses no table");
        return harness.finish().await;
    };
    let listener = identity("bad", &table);
    let mut cdc = Headless::start(&config(&harness, &[("bad", &table)])).await;
    cdc.wait_for_state(&listener, "failed").await;
    let reason = reason_of(&cdc.seen, &listener, "failed");
    eprintln!("failed: {reason}");
    assert!(
        reason.contains(&table) && reason.contains(phrase),
        "the reason names {table} and says {phrase:?}: {reason}"
    );
    assert_failed_at_once(&cdc.seen, &listener);
    assert!(cdc.changes().is_empty());
    assert_eq!(cdc.signal_and_wait("TERM").await, Some(0));
    harness.finish().await;
}
