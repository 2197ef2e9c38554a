//! Where the runtime and the UI meet. Each tick `Feed` takes the registry's snapshot and checks
//! the log ring for news; each frame it copies out the flush timings and only the log rows in
//! view. The log ring's lock is held while copying and while the filter checks the entries new
//! since the last tick (each entry once), never while drawing or across an `.await`. The sinks'
//! states are copied out of their watch channels the same way, when they changed.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};

use crate::change::{Change, Note};
use crate::pipeline::{FlushTimings, LogRing, TimingsSnapshot};
use crate::registry::{ListenerSnapshot, ListenerState};
use crate::replay::ReplayProgress;
use crate::runtime::Runtime;
use crate::secret::mask_passwords;
use crate::tui::SinkWatch;
use crate::tui::add_dialog::DatabaseChoice;
use crate::tui::log_index::{AllEntries, LogIndex, PlainIndex, SCAN_BUDGET, note_of_row};
use crate::tui::rates::RateTracker;
use crate::tui::state::{LogWindow, UiState};
use crate::tui::theme::Theme;
use crate::tui::transactions::{GroupedIndex, RowRef, TxGroups, TxSummary};

/// What stays put while the UI runs.
pub struct Info {
    /// Sorted by name.
    pub databases: Vec<DatabaseChoice>,
    pub log_file: Option<PathBuf>,
    pub config_path: PathBuf,
    pub log_capacity: usize,
    /// Where positions are kept, and where `w` proposes to write.
    pub state_dir: PathBuf,
    pub theme: Theme,
    /// Times show in the local zone as of the start.
    pub zone: FixedOffset,
    /// A replay's progress (`--replay`), shown in the header.
    pub replay: Option<Arc<ReplayProgress>>,
}

/// Everything a frame draws besides the UI state. Rendering is a pure function of the two.
pub struct FrameData<'a> {
    pub info: &'a Info,
    pub listeners: &'a [ListenerSnapshot],
    pub rates: &'a RateTracker,
    pub timings: &'a TimingsSnapshot,
    pub log: &'a LogRows,
    /// The wall clock as of the last refresh (lag when idle, "ago").
    pub now: DateTime<Utc>,
    /// Why the filter text is not understood, if it is not.
    pub filter_error: Option<&'a str>,
    /// Streamed transactions pinned under the log (running, committing, rolled back).
    pub pinned: &'a [TxSummary],
    /// The sinks' states, as of the last refresh.
    pub sinks: &'a [SinkState],
}

/// A sink's state as a frame shows it: `nats: retrying — connection refused (nats://…)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkState {
    pub name: Arc<str>,
    pub state: ListenerState,
    /// Why, with any password masked.
    pub reason: Option<String>,
}

/// The log as one frame shows it.
#[derive(Default)]
pub struct LogRows {
    /// The rows in view, oldest first, with their numbers.
    pub rows: Vec<(u64, LogEntry)>,
    /// The selected entry's number.
    pub selected: Option<u64>,
    /// Where the rows are among the entries one can scroll through.
    pub window: LogWindow,
    /// Entries one can scroll through: all in the ring, or the filter's matches.
    pub in_view: usize,
    /// Entries in the ring.
    pub held: usize,
    pub evicted: u64,
    /// The filter is still checking older entries.
    pub scanning: bool,
    /// Grouped by transaction (`t`): the rows in view, in place of `rows`.
    pub grouped: Option<Vec<GroupedLine>>,
}

/// A row of the plain log: a change, or a note in place among them.
pub enum LogEntry {
    Change(Box<Change>),
    Note(Note),
}

impl LogEntry {
    pub fn change(&self) -> Option<&Change> {
        match self {
            LogEntry::Change(change) => Some(change),
            LogEntry::Note(_) => None,
        }
    }
}

/// A row of the log grouped by transaction.
pub enum GroupedLine {
    Tx {
        row: u64,
        summary: Box<TxSummary>,
        expanded: bool,
    },
    /// A change: one of an expanded transaction's (`member`), or one without a transaction.
    Change {
        row: u64,
        change: Box<Change>,
        member: bool,
    },
}

impl GroupedLine {
    pub fn row(&self) -> u64 {
        match self {
            GroupedLine::Tx { row, .. } | GroupedLine::Change { row, .. } => *row,
        }
    }
}

/// The log grouped by transaction, as the UI state asks for it.
#[derive(Default)]
struct Grouping {
    on: bool,
    expanded: HashSet<u64>,
    index: GroupedIndex,
}

/// The UI's reader of the runtime's shared state.
pub struct Feed {
    runtime: Arc<Runtime>,
    timings: Arc<FlushTimings>,
    log: Arc<LogRing>,
    pub listeners: Vec<ListenerSnapshot>,
    pub rates: RateTracker,
    /// Taken again only after a batch was flushed: percentiles cost a walk of the histograms.
    timings_snapshot: TimingsSnapshot,
    plain: PlainIndex,
    groups: TxGroups,
    grouping: Grouping,
    /// Streamed transactions seen running (by listener and id), and when last seen so.
    streamed: HashMap<(Arc<str>, Arc<str>), (TxSummary, Instant)>,
    /// Streamed transactions pinned under the log: see `pin_streamed`.
    pub pinned: Vec<TxSummary>,
    sink_watches: Vec<SinkWatch>,
    /// The sinks' states, copied out of their watch channels each refresh.
    pub sinks: Vec<SinkState>,
    /// The wall clock as of the last refresh.
    pub now: DateTime<Utc>,
}

/// A streamed transaction that committed stays pinned until its changes reach the log (a big
/// one takes a while to replay and flush), at most this long.
const COMMIT_SHOWN: Duration = Duration::from_secs(30);
/// How long a rolled-back streamed transaction stays pinned.
const ROLLBACK_SHOWN: TimeDelta = TimeDelta::seconds(10);

impl Feed {
    pub fn new(runtime: Arc<Runtime>, timings: Arc<FlushTimings>, log: Arc<LogRing>) -> Self {
        Feed {
            runtime,
            timings,
            log,
            listeners: Vec::new(),
            rates: RateTracker::default(),
            timings_snapshot: TimingsSnapshot::default(),
            plain: PlainIndex::default(),
            groups: TxGroups::default(),
            grouping: Grouping::default(),
            streamed: HashMap::new(),
            pinned: Vec::new(),
            sink_watches: Vec::new(),
            sinks: Vec::new(),
            now: Utc::now(),
        }
    }

    /// Shows these sinks' states too.
    pub fn watch_sinks(&mut self, sinks: Vec<SinkWatch>) {
        self.sink_watches = sinks;
        self.sinks.clear();
        self.refresh_sinks();
    }

    /// Copies each sink's state out of its channel when it changed (the channel's read lock is
    /// held only for the copy). True when one changed.
    fn refresh_sinks(&mut self) -> bool {
        let mut changed = false;
        for (at, watch) in self.sink_watches.iter_mut().enumerate() {
            if self.sinks.len() > at && !watch.status.has_changed().unwrap_or(false) {
                continue;
            }
            let status = watch.status.borrow_and_update().clone();
            let state = SinkState {
                name: watch.name.clone(),
                state: status.state,
                reason: status.reason.as_deref().map(mask_passwords),
            };
            match self.sinks.get_mut(at) {
                Some(shown) if *shown == state => {}
                Some(shown) => {
                    *shown = state;
                    changed = true;
                }
                None => {
                    self.sinks.push(state);
                    changed = true;
                }
            }
        }
        changed
    }

    /// `refresh` with everything the UI state asks of the log: the filter, and whether it is
    /// grouped by transaction with which transactions expanded.
    pub fn refresh_view(&mut self, now: Instant, state: &UiState) -> bool {
        let regroup = state.grouped != self.grouping.on
            || (state.grouped && state.expanded_tx != self.grouping.expanded);
        if regroup {
            self.grouping.on = state.grouped;
            self.grouping.expanded.clone_from(&state.expanded_tx);
        }
        self.refresh_with(now, &state.filter, regroup)
    }

    /// Takes in what changed since the last look: listener states and counters, new log
    /// entries (checked against the filter), the rates once a second. True when the screen
    /// shows something new.
    pub fn refresh(&mut self, now: Instant, filter_text: &str) -> bool {
        self.refresh_with(now, filter_text, false)
    }

    fn refresh_with(&mut self, now: Instant, filter_text: &str, regroup: bool) -> bool {
        self.now = Utc::now();
        let listeners = self.runtime.registry().snapshot();
        let mut news = listeners != self.listeners;
        self.listeners = listeners;
        news |= self.rates.sample(now, &self.listeners);

        let refilter = self.plain.filter.set_text(filter_text);
        let plain = &mut self.plain;
        let groups = &mut self.groups;
        let view = self.log.view_with_notes(|first, entries, notes| {
            let matches_changed = plain.filter.scan(first, entries, SCAN_BUDGET)
                | plain.take_notes(first, &notes, refilter);
            let groups_changed = groups.update(first, entries, notes);
            (first, matches_changed, groups_changed)
        });
        let (first, matches_changed, groups_changed) = view.value;
        let regroup =
            regroup || ((groups_changed || matches_changed || refilter) && self.grouping.on);
        if regroup {
            self.grouping.index = self
                .groups
                .index(&self.grouping.expanded, &self.plain.filter);
        }
        news |= self.pin_streamed(now);
        news |= self.refresh_sinks();
        let ring = AllEntries {
            first,
            len: view.len,
        };
        if ring != self.plain.ring {
            // The handler records a batch's timings before it adds the batch to the ring.
            self.timings_snapshot = self.timings.snapshot();
            news = true;
        }
        self.plain.ring = ring;
        news | refilter | matches_changed | regroup
    }

    /// The transactions the server streams while they run (PostgreSQL's streaming of large
    /// transactions), which have no change in the log before their commit: those running,
    /// those committed whose changes have not reached the log yet (they then show as the
    /// log's own transaction), and those rolled back in the last seconds. True when they
    /// changed.
    fn pin_streamed(&mut self, now: Instant) -> bool {
        let mut pinned = Vec::new();
        for listener in &self.listeners {
            for transaction in listener.running.iter() {
                let key = (listener.identity.clone(), transaction.id.clone());
                let since = self
                    .streamed
                    .get(&key)
                    .map_or(self.now, |(s, _)| s.first_captured);
                let summary = TxSummary::streamed(&listener.identity, transaction, since, false);
                pinned.push(summary.clone());
                self.streamed.insert(key, (summary, now));
            }
        }
        let running = pinned.len();
        let listeners = &self.listeners;
        let groups = &self.groups;
        self.streamed.retain(|(identity, id), (summary, seen)| {
            if pinned[..running]
                .iter()
                .any(|p| p.listener == *identity && p.id == *id)
            {
                return true;
            }
            let listener = listeners.iter().find(|l| l.identity == *identity);
            let rolled_back = listener.is_none_or(|listener| {
                (listener.rolled_back.iter()).any(|ended| ended.transaction.id == *id)
            });
            let delivered = summary.changes == 0 || groups.holds(identity, id);
            if rolled_back || delivered || now.duration_since(*seen) > COMMIT_SHOWN {
                return false;
            }
            pinned.push(summary.clone());
            true
        });
        for listener in &self.listeners {
            for ended in listener.rolled_back.iter() {
                if self.now - ended.at < ROLLBACK_SHOWN {
                    let summary =
                        TxSummary::streamed(&listener.identity, &ended.transaction, ended.at, true);
                    pinned.push(summary);
                }
            }
        }
        let changed = pinned != self.pinned;
        self.pinned = pinned;
        changed
    }

    /// The entries one scrolls through.
    pub fn index(&self) -> &dyn LogIndex {
        if self.grouping.on {
            &self.grouping.index
        } else {
            &self.plain
        }
    }

    /// Copies the rows of `window` out of the ring.
    pub fn rows(&self, window: LogWindow) -> LogRows {
        let index = self.index();
        if self.grouping.on {
            return self.grouped_rows(window);
        }
        let numbers: Vec<u64> = (window.top..window.top + window.rows)
            .map(|at| index.number_at(at))
            .collect();
        let copied = self.log.view_with_notes(|first, entries, notes| {
            numbers
                .iter()
                .filter_map(|&number| {
                    let entry = match note_of_row(number) {
                        Some(note) => LogEntry::Note(notes.get(note)?.clone()),
                        None => {
                            let at = usize::try_from(number.checked_sub(first)?).ok()?;
                            LogEntry::Change(Box::new(entries.get(at)?.clone()))
                        }
                    };
                    Some((number, entry))
                })
                .collect()
        });
        LogRows {
            rows: copied.value,
            selected: window.selected.map(|at| index.number_at(at)),
            window,
            in_view: index.len(),
            held: copied.len,
            evicted: copied.pushed - copied.len as u64,
            scanning: self.scanning(),
            grouped: None,
        }
    }

    fn grouped_rows(&self, window: LogWindow) -> LogRows {
        let index = &self.grouping.index;
        let rows: Vec<u64> = (window.top..window.top + window.rows)
            .map(|at| index.number_at(at))
            .collect();
        let copied = self.log.view_numbered(|first, entries| {
            rows.iter()
                .filter_map(|&row| match RowRef::of(row) {
                    RowRef::Tx(anchor) => {
                        let (summary, _) = self.groups.transaction(anchor)?;
                        Some(GroupedLine::Tx {
                            row,
                            summary: Box::new(summary.clone()),
                            expanded: self.grouping.expanded.contains(&anchor),
                        })
                    }
                    RowRef::Change(number) => {
                        let at = usize::try_from(number.checked_sub(first)?).ok()?;
                        let change = Box::new(entries.get(at)?.clone());
                        Some(GroupedLine::Change {
                            row,
                            member: change.tx.is_some(),
                            change,
                        })
                    }
                })
                .collect()
        });
        LogRows {
            rows: Vec::new(),
            selected: window.selected.map(|at| index.number_at(at)),
            window,
            in_view: index.len(),
            held: copied.len,
            evicted: copied.pushed - copied.len as u64,
            scanning: self.scanning(),
            grouped: Some(copied.value),
        }
    }

    /// A transaction with its changes still in the log, for its detail.
    pub fn transaction(&self, anchor: u64) -> Option<(TxSummary, Vec<Change>)> {
        let (summary, members) = self.groups.transaction(anchor)?;
        let changes = self
            .log
            .view_numbered(|first, entries| {
                members
                    .iter()
                    .filter_map(|&number| {
                        let at = usize::try_from(number.checked_sub(first)?).ok()?;
                        entries.get(at).cloned()
                    })
                    .collect()
            })
            .value;
        Some((summary.clone(), changes))
    }

    /// One entry, for the detail view; `None` once it has left the ring.
    pub fn entry(&self, number: u64) -> Option<Change> {
        self.log
            .view_numbered(|first, entries| {
                let at = usize::try_from(number.checked_sub(first)?).ok()?;
                entries.get(at).cloned()
            })
            .value
    }

    /// The entries the filter shows (all, without a filter), oldest first, as the JSON lines
    /// headless mode prints; and how many.
    pub fn json_lines(&self) -> (Vec<u8>, usize) {
        // Grouped or not, the changes the filter shows.
        let index = self.plain.changes();
        let numbers: Vec<u64> = (0..index.len()).map(|at| index.number_at(at)).collect();
        self.log
            .view_numbered(|first, entries| {
                let mut out = Vec::new();
                let mut written = 0;
                for &number in &numbers {
                    let at = number
                        .checked_sub(first)
                        .and_then(|at| usize::try_from(at).ok());
                    if let Some(change) = at.and_then(|at| entries.get(at)) {
                        change.write_json_line(&mut out);
                        written += 1;
                    }
                }
                (out, written)
            })
            .value
    }

    /// The filter is still checking older entries.
    fn scanning(&self) -> bool {
        let filter = &self.plain.filter;
        filter.is_active() && !filter.is_complete(self.plain.ring.first)
    }

    /// One note, for its detail; `None` once it has left the ring.
    pub fn note(&self, number: u64) -> Option<Note> {
        self.log
            .view_with_notes(|_, _, notes| notes.get(number).cloned())
            .value
    }

    pub fn filter_error(&self) -> Option<&str> {
        self.plain.filter.error()
    }

    pub fn timings(&self) -> &TimingsSnapshot {
        &self.timings_snapshot
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }
}
