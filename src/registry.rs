//! The listener registry: shared by the capture runtime and the UI. Listeners are added, paused,
//! resumed and stopped here; each has a state with a reason and live counters. Readers take a
//! cheap snapshot and never hold a lock while they draw.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
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

#[derive(Debug, Clone)]
struct Status {
    state: ListenerState,
    reason: Option<String>,
    since: DateTime<Utc>,
    /// Source-specific facts worth showing (a slot's retained WAL, a hint about REPLICA IDENTITY).
    detail: Option<String>,
    /// The last position the listener acknowledged or saved.
    position: Option<String>,
}

/// The shared part of one listener: every change it captures points here.
pub struct ListenerHandle {
    identity: Arc<str>,
    config: ListenerConfig,
    counters: [AtomicU64; 4],
    /// Counts per table, for a scope's per-table view (in order of first change).
    tables: Mutex<Vec<TableCounts>>,
    flushed_seq: watch::Sender<u64>,
    control: watch::Sender<Control>,
    status: Mutex<Status>,
    events: broadcast::Sender<StatusEvent>,
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
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("the listener {0} exists already")]
    Duplicate(String),
    #[error("no listener {0}")]
    Unknown(String),
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
        let handle = Arc::new(ListenerHandle {
            identity: identity.clone(),
            config,
            counters: Default::default(),
            tables: Mutex::new(Vec::new()),
            flushed_seq: watch::channel(0).0,
            control: watch::channel(initial).0,
            status: Mutex::new(Status {
                state: ListenerState::Starting,
                reason: None,
                since: Utc::now(),
                detail: None,
                position: None,
            }),
            events: self.events.clone(),
        });
        {
            let mut listeners = self.write();
            match listeners.iter().position(|l| l.identity == identity) {
                Some(at) if listeners[at].state().is_final() => listeners[at] = handle.clone(),
                Some(_) => return Err(RegistryError::Duplicate(identity.to_string())),
                None => listeners.push(handle.clone()),
            }
        }
        handle.announce();
        Ok(handle)
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
