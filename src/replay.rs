//! `cdc-tui --replay FILE`: a recorded JSON-lines file (headless output, or what the jsonl sink
//! wrote) shown in the TUI with no database. A reader thread takes the file line by line and
//! feeds what the TUI reads during a capture: listeners and their states (`status` lines, or
//! `running` at a listener's first change), counters per op and per table, the log ring with
//! its transaction and message notes, and the flush timings of the recorded `flush` lines.
//!
//! The jsonl source's `follow` strategy reads the same files, but as a new capture: it stamps
//! every change with its own listener and capture time, batches and times them anew in the
//! handler and saves a position; a replay shows what was recorded, so it takes the recorded
//! identities, times and batches and shares only the change-line decoding.
//!
//! Memory is bounded whatever the file's size: the ring keeps the newest entries, a batch in
//! the making is cut at `MAX_BATCH`, and the counters are counters.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::change::{Change, Note, NoteKind, TxRef};
use crate::config::ListenerConfig;
use crate::pipeline::timings::BatchTiming;
use crate::pipeline::{FlushTimings, LogRing};
use crate::positions::PositionStore;
use crate::registry::{ListenerHandle, ListenerState, Registry};
use crate::runtime::Runtime;
use crate::tui;

/// A batch in the making (the file has no `flush` lines, or a long stretch without one) goes
/// to the ring at this many changes, or notes.
const MAX_BATCH: usize = 1000;
/// The strategy the listeners table shows for a replayed listener.
const STRATEGY: &str = "replay";

/// How far the replay got, read by the TUI's header each frame.
#[derive(Debug, Default)]
pub struct ReplayProgress {
    pub file: PathBuf,
    pub total_bytes: u64,
    pub bytes_read: AtomicU64,
    pub lines: AtomicU64,
    pub changes: AtomicU64,
    pub paused: AtomicBool,
    pub done: AtomicBool,
    /// Why the replay stopped before the end of the file.
    pub error: Mutex<Option<String>>,
    stop: AtomicBool,
    /// A paused or paced reader waits on `wake`; pausing, resuming and stopping notify it
    /// holding `gate`, which the reader holds while it looks at the switches.
    gate: Mutex<()>,
    wake: Condvar,
}

impl ReplayProgress {
    /// Pauses or resumes; true when now paused.
    pub fn toggle_pause(&self) -> bool {
        let paused = !self.paused.fetch_xor(true, Ordering::Relaxed);
        self.notify();
        paused
    }

    fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.notify();
    }

    fn notify(&self) {
        let _gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        self.wake.notify_all();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// Waits while `waiting` holds, until `due` if given, woken by pause, resume and stop.
    fn wait_while(&self, due: Option<Instant>, waiting: impl Fn(&ReplayProgress) -> bool) {
        let mut gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        while waiting(self) {
            gate = match due {
                None => self.wake.wait(gate).unwrap_or_else(PoisonError::into_inner),
                Some(due) => match due.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => {
                        self.wake
                            .wait_timeout(gate, left)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                    _ => return,
                },
            };
        }
    }

    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Runs the replay in the TUI until `q`; exit status 2 when the file cannot be read or its
/// first line is not a record.
pub fn main(path: PathBuf, speed: Option<f64>) -> ExitCode {
    if let Err(message) = check_start(&path) {
        eprintln!("cdc-tui: {message}");
        return ExitCode::from(crate::app::EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cdc-tui: cannot start the runtime: {error}");
            return ExitCode::from(crate::app::EXIT_FATAL);
        }
    };
    let outcome = runtime.block_on(run(path, speed));
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cdc-tui: {error:#}");
            ExitCode::from(crate::app::EXIT_FATAL)
        }
    }
}

/// The file opens and its first record is one.
fn check_start(path: &Path) -> Result<(), String> {
    let file =
        File::open(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|error| format!("reading {}: {error}", path.display()))?;
        number += 1;
        if read == 0 {
            return Err(format!("{}: no records in it", path.display()));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        return parse_record(&line)
            .map(drop)
            .map_err(|message| format!("{} line {number}: {message}", path.display()));
    }
}

async fn run(path: PathBuf, speed: Option<f64>) -> anyhow::Result<()> {
    let registry = Arc::new(Registry::new());
    let log = Arc::new(LogRing::new(crate::config::schema::DEFAULT_LOG_CAPACITY));
    let timings = Arc::new(FlushTimings::new());
    let runtime = Arc::new(Runtime::new(
        registry.clone(),
        Vec::new(),
        PositionStore::new(std::env::temp_dir().join("cdc-tui-replay")),
        // Nothing captures: no listener task runs in a replay.
        tokio::sync::mpsc::channel(1).0,
    ));
    let progress = Arc::new(ReplayProgress {
        total_bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
        file: path.clone(),
        ..ReplayProgress::default()
    });
    let reader = Replayer {
        registry,
        log: log.clone(),
        timings: timings.clone(),
        progress: progress.clone(),
        speed: speed.filter(|s| *s > 0.0),
        database: path.file_name().map_or_else(
            || path.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        ),
        listeners: HashMap::new(),
        batch: Vec::new(),
        notes: Vec::new(),
        seq: 0,
    };
    let thread = std::thread::Builder::new()
        .name("replay".into())
        .spawn(move || reader.run(&path))?;
    let ui = tui::UiContext {
        runtime,
        timings,
        log,
        sinks: Vec::new(),
        log_file: None,
        config_path: PathBuf::from("(none: a replay)"),
    };
    let result = tui::replay(ui, progress.clone()).await;
    progress.request_stop();
    let _ = thread.join();
    result
}

/// The reader's side: what it feeds and the batch it is making.
struct Replayer {
    registry: Arc<Registry>,
    log: Arc<LogRing>,
    timings: Arc<FlushTimings>,
    progress: Arc<ReplayProgress>,
    /// Recorded time runs this many times as fast; `None`: as fast as the file reads.
    speed: Option<f64>,
    /// The "database" the listeners table names: the file.
    database: String,
    listeners: HashMap<String, Arc<ListenerHandle>>,
    batch: Vec<Change>,
    notes: Vec<(usize, Note)>,
    seq: u64,
}

/// A line of the file, as the replay takes it.
#[derive(Debug)]
enum Record {
    Change {
        listener: String,
        captured_at: Option<DateTime<Utc>>,
        fields: Map<String, Value>,
        table: String,
    },
    Status {
        listener: String,
        state: ListenerState,
        reason: Option<String>,
    },
    Flush(BatchTiming),
    Note {
        listener: String,
        captured_at: Option<DateTime<Utc>>,
        kind: NoteKind,
    },
    /// A record the TUI has nothing to show for (`error`, `schema`, newer types).
    Other,
}

impl Replayer {
    fn run(mut self, path: &Path) {
        if let Err(message) = self.read(path) {
            *self
                .progress
                .error
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(message);
        }
        self.push_batch();
        self.progress.done.store(true, Ordering::Relaxed);
    }

    fn read(&mut self, path: &Path) -> Result<(), String> {
        let file =
            File::open(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let mut line = Vec::new();
        let mut number = 0u64;
        // The first record's time, and when it was replayed.
        let mut clock: Option<(DateTime<Utc>, Instant)> = None;
        loop {
            if self.progress.stopped() {
                return Ok(());
            }
            if self.progress.is_paused() {
                self.push_batch();
                let paused_at = Instant::now();
                self.progress
                    .wait_while(None, |progress| progress.is_paused() && !progress.stopped());
                // Recorded time stands still while paused.
                if let Some((_, started)) = &mut clock {
                    *started += paused_at.elapsed();
                }
                continue;
            }
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .map_err(|error| format!("reading {}: {error}", path.display()))?;
            if read == 0 {
                return Ok(());
            }
            number += 1;
            self.progress.lines.store(number, Ordering::Relaxed);
            self.progress
                .bytes_read
                .fetch_add(read as u64, Ordering::Relaxed);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let record = parse_record(&line)
                .map_err(|message| format!("{} line {number}: {message}", path.display()))?;
            if let (Some(speed), Some(time)) = (self.speed, record.captured_at()) {
                let (first, started) = *clock.get_or_insert((time, Instant::now()));
                let recorded = (time - first).to_std().unwrap_or_default();
                let due = started + recorded.div_f64(speed);
                if due > Instant::now() {
                    // Show what came before while waiting for this one's time.
                    self.push_batch();
                    self.progress.wait_while(Some(due), |progress| {
                        !progress.is_paused() && !progress.stopped()
                    });
                }
            }
            self.take(record, number, path)?;
        }
    }

    fn listener(&mut self, identity: &str) -> Arc<ListenerHandle> {
        if let Some(handle) = self.listeners.get(identity) {
            return handle.clone();
        }
        let (identifier, table) = identity.split_once('/').unwrap_or((identity, ""));
        let config = ListenerConfig::new(identifier, &self.database, table, STRATEGY);
        let handle = self
            .registry
            .add(config)
            .or_else(|_| self.registry.get(identity))
            .expect("a listener registered once per identity");
        self.listeners.insert(identity.to_string(), handle.clone());
        handle
    }

    fn take(&mut self, record: Record, number: u64, path: &Path) -> Result<(), String> {
        match record {
            Record::Change {
                listener,
                captured_at,
                fields,
                table,
            } => {
                let handle = self.listener(&listener);
                if handle.state() == ListenerState::Starting {
                    handle.set_state(ListenerState::Running, None);
                }
                let event = crate::source::jsonl::change_record(table, fields)
                    .map_err(|message| format!("{} line {number}: {message}", path.display()))?;
                self.seq += 1;
                self.batch.push(Change {
                    listener: handle.identity_arc(),
                    seq: self.seq,
                    captured_at: captured_at.unwrap_or_else(Utc::now),
                    event,
                });
                self.progress.changes.fetch_add(1, Ordering::Relaxed);
                if self.batch.len() >= MAX_BATCH {
                    self.push_batch();
                }
            }
            Record::Status {
                listener,
                state,
                reason,
            } => self.listener(&listener).set_state(state, reason),
            Record::Flush(timing) => {
                // As the handler: timings first, then the batch to the log, so a reader that
                // sees the batch sees its timing.
                self.timings.record(timing);
                self.push_batch();
            }
            Record::Note {
                listener,
                captured_at,
                kind,
            } => {
                let listener = self.listener(&listener).identity_arc();
                self.notes.push((
                    self.batch.len(),
                    Note {
                        listener,
                        captured_at: captured_at.unwrap_or_else(Utc::now),
                        kind,
                    },
                ));
                if self.notes.len() >= MAX_BATCH {
                    self.push_batch();
                }
            }
            Record::Other => {}
        }
        Ok(())
    }

    /// Counts the batch in and moves it to the log, as the handler does after a flush.
    fn push_batch(&mut self) {
        if self.batch.is_empty() && self.notes.is_empty() {
            return;
        }
        for change in &self.batch {
            if let Some(handle) = self.listeners.get(change.identity()) {
                handle.count_flushed(change.op, 1);
                handle.count_table(&change.table, change.op, 1);
            }
        }
        self.log.extend_with_notes(
            std::mem::take(&mut self.batch),
            std::mem::take(&mut self.notes),
        );
    }
}

impl Record {
    fn captured_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Record::Change { captured_at, .. } | Record::Note { captured_at, .. } => *captured_at,
            _ => None,
        }
    }
}

/// A line as a record: a JSON object with a `type`.
fn parse_record(line: &[u8]) -> Result<Record, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
    let value: Value =
        serde_json::from_str(text).map_err(|error| format!("not a JSON-lines record ({error})"))?;
    let Value::Object(mut fields) = value else {
        return Err("not a JSON-lines record (not an object)".into());
    };
    let kind = match fields.remove("type") {
        Some(Value::String(kind)) => kind,
        _ => return Err("not a JSON-lines record (no \"type\")".into()),
    };
    let mut text = |name: &str| match fields.remove(name) {
        Some(Value::String(text)) => Some(text),
        _ => None,
    };
    let time = |text: Option<String>| {
        text.and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
            .map(|time| time.to_utc())
    };
    let listener = text("listener");
    let needs_listener = || format!("a {kind} line without a listener");
    Ok(match kind.as_str() {
        "change" => {
            let captured_at = time(text("captured_at"));
            let table = text("table").ok_or("a change without a table")?;
            Record::Change {
                listener: listener.ok_or_else(needs_listener)?,
                captured_at,
                table,
                fields,
            }
        }
        "status" => {
            let state = text("state").unwrap_or_default();
            let state = STATES
                .into_iter()
                .find(|known| known.as_str() == state)
                .ok_or_else(|| format!("unknown state {state:?}"))?;
            Record::Status {
                listener: listener.ok_or_else(needs_listener)?,
                state,
                reason: text("reason"),
            }
        }
        "flush" => {
            let number = |name: &str| fields.get(name).and_then(Value::as_f64).unwrap_or(0.0);
            let millis = |name: &str| Duration::from_secs_f64(number(name).max(0.0) / 1000.0);
            Record::Flush(BatchTiming {
                number: number("batch") as u64,
                changes: number("changes") as usize,
                waited: millis("waited_ms"),
                flush: millis("flush_ms"),
            })
        }
        "transaction" => {
            let captured_at = time(text("captured_at"));
            let id = text("id").ok_or("a transaction line without an id")?;
            let position = text("position").unwrap_or_default();
            let commit_time = time(text("commit_time"));
            let changes = fields.get("changes").and_then(Value::as_u64).unwrap_or(0);
            let discarded = fields.get("discarded").and_then(Value::as_u64).unwrap_or(0);
            let tables = fields
                .get("tables")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(Arc::from)
                .collect();
            Record::Note {
                listener: listener.ok_or_else(needs_listener)?,
                captured_at,
                kind: NoteKind::Transaction {
                    id: id.into(),
                    position: position.into(),
                    commit_time,
                    changes,
                    tables,
                    discarded,
                },
            }
        }
        "message" => {
            let captured_at = time(text("captured_at"));
            let prefix = text("prefix").unwrap_or_default();
            let content = text("content").unwrap_or_default();
            let position = text("position").unwrap_or_default();
            let transactional = fields.get("transactional").and_then(Value::as_bool);
            let tx = fields.get("tx").and_then(TxRef::from_json);
            Record::Note {
                listener: listener.ok_or_else(needs_listener)?,
                captured_at,
                kind: NoteKind::Message {
                    prefix,
                    content,
                    transactional: transactional.unwrap_or(tx.is_some()),
                    tx,
                    position,
                },
            }
        }
        _ => Record::Other,
    })
}

const STATES: [ListenerState; 6] = [
    ListenerState::Starting,
    ListenerState::Running,
    ListenerState::Paused,
    ListenerState::Retrying,
    ListenerState::Stopped,
    ListenerState::Failed,
];

#[cfg(test)]
mod tests {
    use super::*;

    type Replayed = (
        Arc<Registry>,
        Arc<LogRing>,
        Arc<FlushTimings>,
        Arc<ReplayProgress>,
    );

    fn replay(text: &str) -> Replayed {
        replay_at(text, None)
    }

    /// Replays `text` (at `speed`) on this thread, to its end.
    fn replay_at(text: &str, speed: Option<f64>) -> Replayed {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recorded.jsonl");
        std::fs::write(&path, text).unwrap();
        let registry = Arc::new(Registry::new());
        let log = Arc::new(LogRing::new(100));
        let timings = Arc::new(FlushTimings::new());
        let progress = Arc::new(ReplayProgress::default());
        Replayer {
            registry: registry.clone(),
            log: log.clone(),
            timings: timings.clone(),
            progress: progress.clone(),
            speed,
            database: "recorded.jsonl".into(),
            listeners: HashMap::new(),
            batch: Vec::new(),
            notes: Vec::new(),
            seq: 0,
        }
        .run(&path);
        (registry, log, timings, progress)
    }

    #[test]
    fn a_headless_recording_gives_listeners_counters_log_notes_and_timings() {
        let text = r#"{"type":"status","listener":"app/public.*","state":"running","reason":null,"at":"2026-11-25T10:00:00.000Z"}
{"type":"change","listener":"app/public.*","table":"public.orders","op":"insert","key":{"id":1},"before":null,"after":{"id":1},"position":"0/1","commit_time":"2026-11-25T10:00:01.000Z","tx":{"id":"812","position":"0/9","index":1},"captured_at":"2026-11-25T10:00:01.004Z"}
{"type":"change","listener":"app/public.*","table":"public.items","op":"delete","key":{"id":2},"before":null,"after":null,"position":"0/2","commit_time":"2026-11-25T10:00:01.000Z","tx":{"id":"812","position":"0/9","index":2},"captured_at":"2026-11-25T10:00:01.004Z"}
{"type":"transaction","listener":"app/public.*","id":"812","position":"0/9","commit_time":"2026-11-25T10:00:01.000Z","changes":2,"tables":["public.orders","public.items"],"discarded":3,"captured_at":"2026-11-25T10:00:01.004Z"}
{"type":"flush","batch":1,"changes":2,"packets":[],"waited_ms":12.5,"flush_ms":0.8}

{"type":"status","listener":"app/public.*","state":"stopped","reason":null,"at":"2026-11-25T10:00:02.000Z"}
"#;
        let (registry, log, timings, progress) = replay(text);
        assert_eq!(progress.error(), None);
        let listeners = registry.snapshot();
        assert_eq!(listeners.len(), 1);
        assert_eq!(&*listeners[0].identity, "app/public.*");
        assert_eq!(listeners[0].state, ListenerState::Stopped);
        assert_eq!(listeners[0].counts.total(), 2);
        assert_eq!(listeners[0].tables.len(), 2);
        let snapshot = timings.snapshot();
        assert_eq!((snapshot.batches, snapshot.changes), (1, 2));
        let view = log.view_with_notes(|_, entries, notes| {
            (
                entries.iter().map(|c| c.captured_at).collect::<Vec<_>>(),
                notes.notes.len(),
                notes.notes.iter().find_map(|n| match n.note.kind {
                    NoteKind::Transaction { discarded, .. } => Some(discarded),
                    _ => None,
                }),
            )
        });
        assert_eq!(view.value.0.len(), 2);
        assert_eq!(
            view.value.0[0].to_rfc3339(),
            "2026-11-25T10:00:01.004+00:00"
        );
        assert_eq!(view.value.1, 1, "the transaction note");
        assert_eq!(
            view.value.2,
            Some(3),
            "with its savepoints' discarded changes"
        );
    }

    #[test]
    fn a_line_that_is_not_a_record_stops_the_replay_naming_its_line() {
        let (registry, _, _, progress) = replay(
            "{\"type\":\"change\",\"listener\":\"a/t\",\"table\":\"t\",\"op\":\"insert\"}\nnot json\n",
        );
        let error = progress.error().unwrap();
        assert!(error.contains("line 2: not a JSON-lines record"), "{error}");
        assert_eq!(
            registry.snapshot()[0].counts.total(),
            1,
            "what came before is shown"
        );
        let (_, _, _, progress) = replay("{\"no\":\"type\"}\n");
        assert!(progress.error().unwrap().contains("line 1:"));
    }

    #[test]
    fn a_speed_replays_the_recorded_gaps_scaled() {
        let change = |millis: u32| {
            format!(
                "{{\"type\":\"change\",\"listener\":\"a/t\",\"table\":\"t\",\"op\":\"insert\",\"captured_at\":\"2026-11-25T10:00:00.{millis:03}Z\"}}\n"
            )
        };
        let text = change(0) + &change(600);
        let started = Instant::now();
        let (registry, ..) = replay_at(&text, Some(2.0));
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "600 ms recorded at speed 2: {:?}",
            started.elapsed()
        );
        assert_eq!(registry.snapshot()[0].counts.total(), 2);
    }
}
