//! The listener registry: shared by the capture runtime and the UI. Listeners are added, paused,
//! resumed and stopped here; each has a state with a reason and live counters. Readers take a
//! cheap snapshot and never hold a lock while they draw.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, watch};

use crate::change::Op;
use crate::config::schema::ListenerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerState {
    Starting,
    Running,
    Paused,
    Retrying,
    Stopped,
    Failed,
}

impl ListenerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerState::Starting => "starting",
            ListenerState::Running => "running",
            ListenerState::Paused => "paused",
            ListenerState::Retrying => "retrying",
            ListenerState::Stopped => "stopped",
            ListenerState::Failed => "failed",
        }
    }

    /// The state as a sentence says it: `has failed`, `is running`.
    pub fn phrase(self) -> &'static str {
        match self {
            ListenerState::Starting => "is starting",
            ListenerState::Running => "is running",
            ListenerState::Paused => "is paused",
            ListenerState::Retrying => "is retrying",
            ListenerState::Stopped => "is stopped",
            ListenerState::Failed => "has failed",
        }
    }

    /// A listener in this state has no task running any more.
    pub fn is_final(self) -> bool {
        matches!(self, ListenerState::Stopped | ListenerState::Failed)
    }
}

impl fmt::Display for ListenerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the user asked a listener to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Run,
    Pause,
    Stop,
}

/// A state change, for the headless status lines and the UI.
#[derive(Debug, Clone)]
pub struct StatusEvent {
    pub identity: Arc<str>,
    pub state: ListenerState,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// State changes kept per listener, for the UI's listener detail.
pub const HISTORY_LEN: usize = 16;

/// One entry of a listener's state history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub state: ListenerState,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// How far behind the server a listener is, as its source measures it (PostgreSQL: the WAL
/// written past what the slot has acknowledged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerLag {
    /// Bytes the server has written past the acknowledged position.
    pub bytes: Option<u64>,
    /// The slot's `wal_status` (`reserved`, `extended`, `unreserved`, `lost`).
    pub wal_status: Option<String>,
    /// Bytes that can still be written before the slot is in danger of losing WAL.
    pub safe_wal_size: Option<i64>,
}

#[derive(Debug, Clone)]
struct Status {
    state: ListenerState,
    reason: Option<String>,
    since: DateTime<Utc>,
    /// Source-specific facts worth showing (a slot's retained WAL, a hint about REPLICA IDENTITY).
    detail: Option<String>,
    /// The last position the listener acknowledged or saved.
    position: Option<String>,
    /// The last [`HISTORY_LEN`] state changes, oldest first; shared with snapshots until the
    /// next change, so a snapshot costs a pointer.
    history: Arc<VecDeque<StatusChange>>,
    /// Where the settings come from (the config file); `None` when added while running.
    config_source: Option<Arc<str>>,
    server_lag: ServerLag,
    running: Arc<[RunningTransaction]>,
    rolled_back: Arc<[RolledBack]>,
}

/// A transaction the server sends while it runs (PostgreSQL's streaming of large
/// transactions): nothing of it is delivered before its commit; these are its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningTransaction {
    /// The transaction's id (PostgreSQL: its xid).
    pub id: Arc<str>,
    /// Its changes received so far, without those of rolled-back subtransactions.
    pub changes: u64,
    /// Changes of its subtransactions that rolled back (savepoints): dropped, never delivered.
    pub discarded: u64,
    /// The tables they are of, in order of first change.
    pub tables: Vec<Arc<str>>,
}

/// A transaction the server streamed while it ran, then rolled back: its changes were dropped,
/// never delivered. The newest [`ROLLED_BACK_KEPT`] are kept, for the UI to show a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    pub transaction: RunningTransaction,
    pub at: DateTime<Utc>,
}

pub const ROLLED_BACK_KEPT: usize = 8;

impl Status {
    fn record(&mut self) {
        let history = Arc::make_mut(&mut self.history);
        if history.len() == HISTORY_LEN {
            history.pop_front();
        }
        history.push_back(StatusChange {
            state: self.state,
            reason: self.reason.clone(),
            at: self.since,
        });
    }
}

/// Microseconds since the epoch in an atomic, `i64::MIN` for none: written for every change,
/// so no lock.
struct AtomicTime(AtomicI64);

impl Default for AtomicTime {
    fn default() -> Self {
        AtomicTime(AtomicI64::new(i64::MIN))
    }
}

impl AtomicTime {
    fn store(&self, time: &DateTime<Utc>) {
        self.0.store(time.timestamp_micros(), Ordering::Relaxed);
    }

    fn load(&self) -> Option<DateTime<Utc>> {
        match self.0.load(Ordering::Relaxed) {
            i64::MIN => None,
            micros => DateTime::from_timestamp_micros(micros),
        }
    }
}

/// The shared part of one listener: every change it captures points here.
pub struct ListenerHandle {
    identity: Arc<str>,
    config: Arc<ListenerConfig>,
    counters: [AtomicU64; 4],
    /// Counts per table, for a scope's per-table view (in order of first change).
    tables: Mutex<Vec<TableCounts>>,
    flushed_seq: watch::Sender<u64>,
    control: watch::Sender<Control>,
    status: Mutex<Status>,
    events: broadcast::Sender<StatusEvent>,
    /// The newest captured change's commit time and capture time, for the time lag.
    last_commit: AtomicTime,
    last_capture: AtomicTime,
    /// A transaction's changes are being captured (stopping now cuts it in the middle).
    in_transaction: AtomicBool,
}

impl fmt::Debug for ListenerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerHandle")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl ListenerHandle {
    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn identity_arc(&self) -> Arc<str> {
        self.identity.clone()
    }

    pub fn config(&self) -> &ListenerConfig {
        &self.config
    }

    /// Called by the handler after a batch holding `count` changes of `op` was flushed.
    pub fn count_flushed(&self, op: Op, count: u64) {
        self.counters[op.index()].fetch_add(count, Ordering::Relaxed);
    }

    /// Called by the handler after a batch holding `count` changes of `op` to `table` was
    /// flushed (besides [`ListenerHandle::count_flushed`]).
    pub fn count_table(&self, table: &Arc<str>, op: Op, count: u64) {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let at = match tables.iter().position(|counts| counts.table == *table) {
            Some(at) => at,
            None => {
                tables.push(TableCounts {
                    table: Arc::clone(table),
                    counts: OpCounts::default(),
                    last_change: None,
                });
                tables.len() - 1
            }
        };
        let counts = &mut tables[at];
        counts.counts.0[op.index()] += count;
        counts.last_change = Some(Utc::now());
    }

    /// Called by the handler after a flush: every change up to `seq` reached the sinks.
    pub fn acknowledge_flushed(&self, seq: u64) {
        self.flushed_seq.send_if_modified(|flushed| {
            let advanced = seq > *flushed;
            if advanced {
                *flushed = seq;
            }
            advanced
        });
    }

    /// The listener's view of its flushed sequence numbers.
    pub fn subscribe_flushed(&self) -> watch::Receiver<u64> {
        self.flushed_seq.subscribe()
    }

    pub fn subscribe_control(&self) -> watch::Receiver<Control> {
        self.control.subscribe()
    }

    pub fn control(&self) -> Control {
        *self.control.borrow()
    }

    pub fn state(&self) -> ListenerState {
        self.lock_status().state
    }

    /// Sets the state; a change of state or reason is announced.
    pub fn set_state(&self, state: ListenerState, reason: Option<String>) {
        {
            let mut status = self.lock_status();
            if status.state == state && status.reason == reason {
                return;
            }
            status.state = state;
            status.reason = reason;
            status.since = Utc::now();
            status.record();
        }
        self.announce();
    }

    /// Sends the current state to status subscribers.
    fn announce(&self) {
        let event = {
            let status = self.lock_status();
            StatusEvent {
                identity: self.identity.clone(),
                state: status.state,
                reason: status.reason.clone(),
                at: status.since,
            }
        };
        // No subscriber is fine: nobody is printing status lines.
        let _ = self.events.send(event);
    }

    pub fn set_detail(&self, detail: Option<String>) {
        self.lock_status().detail = detail;
    }

    pub fn set_position(&self, position: String) {
        self.lock_status().position = Some(position);
    }

    /// Says where the listener's settings come from (shown in the UI's listener detail).
    pub fn set_config_source(&self, source: &str) {
        self.lock_status().config_source = Some(source.into());
    }

    /// Called for every captured change that has a commit time.
    pub fn note_captured(&self, commit_time: &DateTime<Utc>, captured_at: &DateTime<Utc>) {
        self.last_commit.store(commit_time);
        self.last_capture.store(captured_at);
    }

    pub fn set_server_lag(&self, lag: ServerLag) {
        self.lock_status().server_lag = lag;
    }

    pub fn set_in_transaction(&self, open: bool) {
        self.in_transaction.store(open, Ordering::Relaxed);
    }

    pub fn set_running_transactions(&self, running: Vec<RunningTransaction>) {
        self.lock_status().running = running.into();
    }

    /// A streamed transaction rolled back, with its counters as it ended.
    pub fn note_rolled_back(&self, transaction: RunningTransaction) {
        let mut status = self.lock_status();
        let skip = (status.rolled_back.len() + 1).saturating_sub(ROLLED_BACK_KEPT);
        let mut kept: Vec<RolledBack> = status.rolled_back.iter().skip(skip).cloned().collect();
        kept.push(RolledBack {
            transaction,
            at: Utc::now(),
        });
        status.rolled_back = kept.into();
    }

    pub fn snapshot(&self) -> ListenerSnapshot {
        let status = self.lock_status().clone();
        ListenerSnapshot {
            identity: self.identity.clone(),
            database: self.config.database.clone(),
            table: self.config.table.clone(),
            strategy: self.config.strategy.clone(),
            state: status.state,
            reason: status.reason,
            since: status.since,
            detail: status.detail,
            position: status.position,
            history: status.history,
            config_source: status.config_source,
            lag: Lag {
                last_commit: self.last_commit.load(),
                last_capture: self.last_capture.load(),
                server: status.server_lag,
            },
            in_transaction: self.in_transaction.load(Ordering::Relaxed),
            running: status.running,
            rolled_back: status.rolled_back,
            config: self.config.clone(),
            counts: OpCounts(self.counters.each_ref().map(|c| c.load(Ordering::Relaxed))),
            tables: self
                .tables
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    fn lock_status(&self) -> MutexGuard<'_, Status> {
        // A panic while holding this lock cannot leave a Status half-written: every write is
        // one field assignment, so the poisoned value is still consistent.
        self.status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Counts per op: insert, update, delete, truncate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts(pub [u64; 4]);

impl OpCounts {
    pub fn get(&self, op: Op) -> u64 {
        self.0[op.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// One table's counts within a listener.
#[derive(Debug, Clone, PartialEq)]
pub struct TableCounts {
    pub table: Arc<str>,
    pub counts: OpCounts,
    /// When a change of it was last flushed.
    pub last_change: Option<DateTime<Utc>>,
}

/// One listener as readers see it at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerSnapshot {
    pub identity: Arc<str>,
    pub database: String,
    pub table: String,
    pub strategy: String,
    pub state: ListenerState,
    pub reason: Option<String>,
    pub since: DateTime<Utc>,
    pub detail: Option<String>,
    pub position: Option<String>,
    pub counts: OpCounts,
    /// Per table, in order of first change (one entry for a single-table listener).
    pub tables: Vec<TableCounts>,
    /// The last state changes, oldest first.
    pub history: Arc<VecDeque<StatusChange>>,
    /// Where the settings come from (the config file); `None` when added while running.
    pub config_source: Option<Arc<str>>,
    pub lag: Lag,
    pub in_transaction: bool,
    /// Transactions received while they run, not committed yet (oldest first).
    pub running: Arc<[RunningTransaction]>,
    /// Streamed transactions that rolled back lately, oldest first.
    pub rolled_back: Arc<[RolledBack]>,
    /// The listener's settings (its strategy's options: slot, publication, cursor column…).
    pub config: Arc<ListenerConfig>,
}

impl ListenerSnapshot {
    /// Whether the listener keeps a position on the server (a `slot` option): stopping it
    /// leaves the slot holding WAL.
    pub fn holds_persistent_slot(&self) -> bool {
        self.config.options.contains_key("slot")
    }
}

/// How far behind a listener is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lag {
    /// The newest captured change's commit time, and when it was captured.
    pub last_commit: Option<DateTime<Utc>>,
    pub last_capture: Option<DateTime<Utc>>,
    pub server: ServerLag,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("the listener {0} exists already")]
    Duplicate(String),
    #[error("no listener {0}")]
    Unknown(String),
    #[error("{identity} {}: only a stopped or failed listener can be removed", state.phrase())]
    NotEnded {
        identity: String,
        state: ListenerState,
    },
}

/// All listeners, in the order they were added.
pub struct Registry {
    listeners: RwLock<Vec<Arc<ListenerHandle>>>,
    events: broadcast::Sender<StatusEvent>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

/// Status events kept for a slow reader before it misses some (it can re-read the snapshot).
const STATUS_EVENT_CAPACITY: usize = 1024;

impl Registry {
    pub fn new() -> Self {
        Registry {
            listeners: RwLock::new(Vec::new()),
            events: broadcast::channel(STATUS_EVENT_CAPACITY).0,
        }
    }

    /// Every state change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<StatusEvent> {
        self.events.subscribe()
    }

    /// Registers a listener in state `starting` (or `paused` when configured so). A stopped or
    /// failed listener of the same identity is replaced, so a user can add it again.
    pub fn add(&self, config: ListenerConfig) -> Result<Arc<ListenerHandle>, RegistryError> {
        let identity: Arc<str> = config.identity().into();
        let initial = if config.paused {
            Control::Pause
        } else {
            Control::Run
        };
        let mut status = Status {
            state: ListenerState::Starting,
            reason: None,
            since: Utc::now(),
            detail: None,
            position: None,
            history: Arc::default(),
            config_source: None,
            server_lag: ServerLag::default(),
            running: Arc::new([]),
            rolled_back: Arc::new([]),
        };
        let handle = {
            let mut listeners = self.write();
            let existing = listeners.iter().position(|l| l.identity == identity);
            if let Some(at) = existing {
                let previous = listeners[at].lock_status();
                if !previous.state.is_final() {
                    return Err(RegistryError::Duplicate(identity.to_string()));
                }
                // The same listener again: its history and where it came from go on.
                status.history = previous.history.clone();
                status.config_source = previous.config_source.clone();
            }
            status.record();
            let handle = Arc::new(ListenerHandle {
                identity: identity.clone(),
                config: Arc::new(config),
                counters: Default::default(),
                tables: Mutex::new(Vec::new()),
                flushed_seq: watch::channel(0).0,
                control: watch::channel(initial).0,
                status: Mutex::new(status),
                events: self.events.clone(),
                last_commit: AtomicTime::default(),
                last_capture: AtomicTime::default(),
                in_transaction: AtomicBool::new(false),
            });
            match existing {
                Some(at) => listeners[at] = handle.clone(),
                None => listeners.push(handle.clone()),
            }
            handle
        };
        handle.announce();
        Ok(handle)
    }

    /// Takes a stopped or failed listener out of the registry; one that still runs is refused.
    pub fn remove(&self, identity: &str) -> Result<Arc<ListenerHandle>, RegistryError> {
        let mut listeners = self.write();
        let at = listeners
            .iter()
            .position(|l| &*l.identity == identity)
            .ok_or_else(|| RegistryError::Unknown(identity.to_string()))?;
        let state = listeners[at].state();
        if !state.is_final() {
            return Err(RegistryError::NotEnded {
                identity: identity.to_string(),
                state,
            });
        }
        Ok(listeners.remove(at))
    }

    pub fn get(&self, identity: &str) -> Result<Arc<ListenerHandle>, RegistryError> {
        self.read()
            .iter()
            .find(|l| &*l.identity == identity)
            .cloned()
            .ok_or_else(|| RegistryError::Unknown(identity.to_string()))
    }

    pub fn handles(&self) -> Vec<Arc<ListenerHandle>> {
        self.read().clone()
    }

    pub fn pause(&self, identity: &str) -> Result<Arc<ListenerHandle>, RegistryError> {
        self.send_control(identity, Control::Pause)
    }

    pub fn resume(&self, identity: &str) -> Result<Arc<ListenerHandle>, RegistryError> {
        self.send_control(identity, Control::Run)
    }

    pub fn stop(&self, identity: &str) -> Result<Arc<ListenerHandle>, RegistryError> {
        self.send_control(identity, Control::Stop)
    }

    /// Asks every listener to stop (shutdown).
    pub fn stop_all(&self) {
        for handle in self.handles() {
            handle.control.send_replace(Control::Stop);
        }
    }

    fn send_control(
        &self,
        identity: &str,
        control: Control,
    ) -> Result<Arc<ListenerHandle>, RegistryError> {
        let handle = self.get(identity)?;
        // A stopped listener stays stopped: its task has ended.
        if handle.control() != Control::Stop {
            handle.control.send_replace(control);
        }
        Ok(handle)
    }

    /// A copy of every listener's state and counters, for one frame or one status answer.
    pub fn snapshot(&self) -> Vec<ListenerSnapshot> {
        self.read().iter().map(|l| l.snapshot()).collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<ListenerHandle>>> {
        self.listeners.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<ListenerHandle>>> {
        self.listeners.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(identifier: &str) -> ListenerConfig {
        ListenerConfig::new(identifier, "shop", "public.orders", "polling")
    }

    #[test]
    fn the_newest_rolled_back_transactions_are_kept_in_the_snapshot() {
        let registry = Registry::new();
        let handle = registry.add(listener("orders")).unwrap();
        for id in 0..ROLLED_BACK_KEPT + 2 {
            handle.note_rolled_back(RunningTransaction {
                id: id.to_string().into(),
                changes: id as u64,
                discarded: 0,
                tables: vec!["public.orders".into()],
            });
        }
        let kept: Vec<String> = (handle.snapshot().rolled_back.iter())
            .map(|ended| ended.transaction.id.to_string())
            .collect();
        let newest: Vec<String> = (2..ROLLED_BACK_KEPT + 2).map(|id| id.to_string()).collect();
        assert_eq!(kept, newest, "oldest first, the oldest two gone");
    }

    #[test]
    fn add_pause_resume_stop_and_announce_each_state() {
        let registry = Registry::new();
        let mut events = registry.subscribe();
        let handle = registry.add(listener("orders")).unwrap();
        assert_eq!(handle.identity(), "orders/public.orders");
        assert_eq!(
            registry.add(listener("orders")).unwrap_err(),
            RegistryError::Duplicate("orders/public.orders".into())
        );

        let mut control = handle.subscribe_control();
        registry.pause("orders/public.orders").unwrap();
        assert_eq!(*control.borrow_and_update(), Control::Pause);
        registry.resume("orders/public.orders").unwrap();
        assert_eq!(*control.borrow_and_update(), Control::Run);
        registry.stop("orders/public.orders").unwrap();
        registry.resume("orders/public.orders").unwrap();
        assert_eq!(*control.borrow_and_update(), Control::Stop, "stop is final");
        assert!(registry.pause("nope/x").is_err());

        handle.set_state(ListenerState::Retrying, Some("connection refused".into()));
        handle.set_state(ListenerState::Retrying, Some("connection refused".into()));
        handle.set_state(ListenerState::Stopped, None);
        let states: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| (e.state, e.reason))
            .collect();
        assert_eq!(
            states,
            vec![
                (ListenerState::Starting, None),
                (ListenerState::Retrying, Some("connection refused".into())),
                (ListenerState::Stopped, None),
            ],
            "a repeated state is announced once"
        );

        // A stopped listener can be added again.
        let again = registry.add(listener("orders")).unwrap();
        assert_eq!(again.state(), ListenerState::Starting);
        assert_eq!(registry.snapshot().len(), 1);
    }

    #[test]
    fn the_history_keeps_the_last_changes_and_goes_on_after_a_restart() {
        let registry = Registry::new();
        let handle = registry.add(listener("orders")).unwrap();
        handle.set_config_source("/srv/cdc.toml");
        for n in 0..30 {
            handle.set_state(ListenerState::Retrying, Some(format!("try {n}")));
        }
        let history = handle.snapshot().history;
        assert_eq!(history.len(), HISTORY_LEN);
        assert_eq!(history.back().unwrap().reason.as_deref(), Some("try 29"));
        assert_eq!(
            registry.remove("orders/public.orders").unwrap_err(),
            RegistryError::NotEnded {
                identity: "orders/public.orders".into(),
                state: ListenerState::Retrying
            }
        );
        handle.set_state(ListenerState::Failed, Some("gave up".into()));
        let again = registry.add(listener("orders")).unwrap().snapshot();
        assert_eq!(again.config_source.as_deref(), Some("/srv/cdc.toml"));
        let last: Vec<ListenerState> = again
            .history
            .iter()
            .rev()
            .take(2)
            .map(|c| c.state)
            .collect();
        assert_eq!(last, [ListenerState::Starting, ListenerState::Failed]);
        assert!(
            registry.remove("orders/public.orders").is_err(),
            "starting again"
        );
        registry
            .get("orders/public.orders")
            .unwrap()
            .set_state(ListenerState::Stopped, None);
        registry.remove("orders/public.orders").unwrap();
        assert!(registry.snapshot().is_empty());
    }

    #[test]
    fn counters_and_acknowledgements_show_in_the_snapshot() {
        let registry = Registry::new();
        let handle = registry.add(listener("orders")).unwrap();
        let mut flushed = handle.subscribe_flushed();
        handle.count_flushed(Op::Insert, 3);
        handle.count_flushed(Op::Delete, 1);
        handle.acknowledge_flushed(7);
        handle.acknowledge_flushed(5);
        assert_eq!(
            *flushed.borrow_and_update(),
            7,
            "acknowledgements never go back"
        );
        let snapshot = &registry.snapshot()[0];
        assert_eq!(snapshot.counts, OpCounts([3, 0, 1, 0]));
        assert_eq!(snapshot.counts.total(), 4);
    }

    #[test]
    fn a_scope_counts_each_table() {
        let registry = Registry::new();
        let handle = registry.add(listener("shop")).unwrap();
        let (orders, items): (Arc<str>, Arc<str>) = ("public.orders".into(), "public.items".into());
        handle.count_table(&orders, Op::Insert, 2);
        handle.count_table(&items, Op::Delete, 1);
        handle.count_table(&orders, Op::Update, 5);
        let tables: Vec<(String, OpCounts)> = registry.snapshot()[0]
            .tables
            .iter()
            .map(|table| (table.table.to_string(), table.counts))
            .collect();
        assert_eq!(
            tables,
            [
                ("public.orders".to_string(), OpCounts([2, 5, 0, 0])),
                ("public.items".to_string(), OpCounts([0, 0, 1, 0])),
            ]
        );
        assert!(
            registry.snapshot()[0]
                .tables
                .iter()
                .all(|t| t.last_change.is_some())
        );
    }
}
