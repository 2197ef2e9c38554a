//! Where the runtime and the UI meet. Each tick `Feed` takes the registry's snapshot and checks
//! the log ring for news; each frame it copies out the flush timings and only the log rows in
//! view. The log ring's lock is held while copying and while the filter checks the entries new
//! since the last tick (each entry once), never while drawing or across an `.await`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, FixedOffset, Utc};

use crate::change::Change;
use crate::pipeline::{FlushTimings, LogRing, TimingsSnapshot};
use crate::registry::ListenerSnapshot;
use crate::runtime::Runtime;
use crate::tui::add_dialog::DatabaseChoice;
use crate::tui::log_index::{AllEntries, LogFilter, LogIndex, SCAN_BUDGET};
use crate::tui::rates::RateTracker;
use crate::tui::state::LogWindow;
use crate::tui::theme::Theme;

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
}

/// The log as one frame shows it.
#[derive(Default)]
pub struct LogRows {
    /// The rows in view, oldest first, with their numbers.
    pub rows: Vec<(u64, Change)>,
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
    filter: LogFilter,
    ring: AllEntries,
    /// The wall clock as of the last refresh.
    pub now: DateTime<Utc>,
}

impl Feed {
    pub fn new(runtime: Arc<Runtime>, timings: Arc<FlushTimings>, log: Arc<LogRing>) -> Self {
        Feed {
            runtime,
            timings,
            log,
            listeners: Vec::new(),
            rates: RateTracker::default(),
            timings_snapshot: TimingsSnapshot::default(),
            filter: LogFilter::default(),
            ring: AllEntries::default(),
            now: Utc::now(),
        }
    }

    /// Takes in what changed since the last look: listener states and counters, new log
    /// entries (checked against the filter), the rates once a second. True when the screen
    /// shows something new.
    pub fn refresh(&mut self, now: Instant, filter_text: &str) -> bool {
        self.now = Utc::now();
        let listeners = self.runtime.registry().snapshot();
        let mut news = listeners != self.listeners;
        self.listeners = listeners;
        news |= self.rates.sample(now, &self.listeners);

        let refilter = self.filter.set_text(filter_text);
        let filter = &mut self.filter;
        let view = self.log.view_numbered(|first, entries| {
            let matches_changed = filter.scan(first, entries, SCAN_BUDGET);
            (first, matches_changed)
        });
        let (first, matches_changed) = view.value;
        let ring = AllEntries {
            first,
            len: view.len,
        };
        if ring != self.ring {
            // The handler records a batch's timings before it adds the batch to the ring.
            self.timings_snapshot = self.timings.snapshot();
            news = true;
        }
        self.ring = ring;
        news | refilter | matches_changed
    }

    /// The entries one scrolls through.
    pub fn index(&self) -> &dyn LogIndex {
        if self.filter.is_active() {
            &self.filter
        } else {
            &self.ring
        }
    }

    /// Copies the rows of `window` out of the ring.
    pub fn rows(&self, window: LogWindow) -> LogRows {
        let index = self.index();
        let numbers: Vec<u64> = (window.top..window.top + window.rows)
            .map(|at| index.number_at(at))
            .collect();
        let copied = self.log.view_numbered(|first, entries| {
            numbers
                .iter()
                .filter_map(|&number| {
                    let at = usize::try_from(number.checked_sub(first)?).ok()?;
                    Some((number, entries.get(at)?.clone()))
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
            scanning: self.filter.is_active() && !self.filter.is_complete(self.ring.first),
        }
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
        let index = self.index();
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

    pub fn filter_error(&self) -> Option<&str> {
        self.filter.error()
    }

    pub fn timings(&self) -> &TimingsSnapshot {
        &self.timings_snapshot
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }
}
