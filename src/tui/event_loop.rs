//! The event loop: keys from crossterm's event stream, table lists from spawned tasks, a frame
//! tick and SIGINT/SIGTERM; what the UI state asks for is carried out on the runtime here.

use std::io;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossterm::event::{Event, EventStream, KeyEventKind, MouseButton, MouseEvent, MouseEventKind};
use futures_util::StreamExt;
use ratatui::layout::Rect;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use crate::registry::Control;
use crate::runtime::RuntimeError;
use crate::signals;
use crate::tui::clipboard;
use crate::tui::effect::Effect;
use crate::tui::frame::{Feed, Info};
use crate::tui::keys::{self, Action, Key};
use crate::tui::log_index::note_of_row;
use crate::tui::render::Areas;
use crate::tui::state::{Click, Focus, UiState, View};
use crate::tui::terminal::Screen;
use crate::tui::transactions::TxView;
use crate::tui::{FRAME, draw_frame};

/// Rows a wheel step scrolls the log.
const WHEEL_ROWS: usize = 3;

/// A table list that takes longer than this is reported as failed.
const LIST_TABLES_TIMEOUT: Duration = Duration::from_secs(15);

/// The UI's side of the event loop.
struct UiLoop {
    info: Info,
    feed: Feed,
    state: UiState,
    /// Where spawned tasks send table lists for the add dialog.
    answer: mpsc::UnboundedSender<TablesListed>,
    /// Sizes as last drawn, for paging, and where things were, for clicks.
    log_rows: usize,
    popup_rows: usize,
    areas: Option<Areas>,
    log_top: usize,
    /// Something changed that the screen does not show yet.
    dirty: bool,
    last_draw: Option<Instant>,
}

struct TablesListed {
    request: u64,
    listed: Result<Vec<String>, String>,
}

pub async fn event_loop(terminal: &mut Screen, info: Info, feed: Feed) -> anyhow::Result<()> {
    let mut events = EventStream::new();
    let terminated = signals::terminated();
    tokio::pin!(terminated);
    let (answer, mut answers) = mpsc::unbounded_channel();
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut app = UiLoop {
        info,
        feed,
        state: UiState::default(),
        answer,
        log_rows: 0,
        popup_rows: 0,
        areas: None,
        log_top: 0,
        dirty: true,
        last_draw: None,
    };
    loop {
        tokio::select! {
            () = &mut terminated => return Ok(()),
            event = events.next() => {
                let event = event.context("the terminal's input ended")??;
                if app.on_event(event) == Flow::Quit {
                    return Ok(());
                }
                // Input shows at once, unless a frame was drawn less than a frame ago.
                if app.last_draw.is_none_or(|at| at.elapsed() >= FRAME) {
                    app.update(terminal)?;
                }
            }
            Some(answer) = answers.recv() => {
                if let Some(dialog) = app.state.add_dialog() {
                    dialog.tables_listed(answer.request, answer.listed);
                    app.dirty = true;
                }
            }
            _ = tick.tick() => app.update(terminal)?,
        }
    }
}

/// What actions need to know, as the screen was last drawn (`log_rows`, `popup_rows`).
fn view<'a>(feed: &'a Feed, info: &'a Info, log_rows: usize, popup_rows: usize) -> View<'a> {
    View {
        listeners: &feed.listeners,
        log: feed.index(),
        databases: &info.databases,
        log_rows,
        popup_rows,
        export_path: info.state_dir.join(format!(
            "events-{}.jsonl",
            chrono::Local::now().format("%Y%m%d-%H%M%S")
        )),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

impl UiLoop {
    fn on_event(&mut self, event: Event) -> Flow {
        let key = match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => key,
            Event::Resize(..) => {
                self.dirty = true;
                return Flow::Continue;
            }
            Event::Mouse(mouse) => {
                self.on_mouse(mouse);
                return Flow::Continue;
            }
            _ => return Flow::Continue,
        };
        let Some(key) = Key::from_event(key) else {
            return Flow::Continue;
        };
        let Some(binding) = keys::binding_for(key, self.state.mode().contexts()) else {
            return Flow::Continue;
        };
        self.dirty = true;
        if binding.action == Action::Type {
            if let Key::Char(c) = key {
                self.state.type_char(c);
            }
            return Flow::Continue;
        }
        let view = view(&self.feed, &self.info, self.log_rows, self.popup_rows);
        match self.state.apply(binding.action, &view) {
            Some(effect) => self.carry_out(effect),
            None => Flow::Continue,
        }
    }

    /// The wheel scrolls the log (or the open popup); a click selects a listener or an event.
    fn on_mouse(&mut self, mouse: MouseEvent) {
        let view = view(&self.feed, &self.info, self.log_rows, self.popup_rows);
        let scroll = match mouse.kind {
            MouseEventKind::ScrollUp => Some(Action::Up),
            MouseEventKind::ScrollDown => Some(Action::Down),
            _ => None,
        };
        if let Some(action) = scroll {
            if self.state.popup.is_none() {
                self.state.focus = Focus::Log;
            }
            for _ in 0..WHEEL_ROWS {
                self.state.apply(action, &view);
            }
            self.dirty = true;
            return;
        }
        let (MouseEventKind::Down(MouseButton::Left), Some(areas)) = (mouse.kind, self.areas)
        else {
            return;
        };
        let (column, row) = (mouse.column, mouse.row);
        let inside = |area: Rect| area.contains(ratatui::layout::Position::new(column, row));
        // Inside the borders, under the listeners' headings.
        let target = if inside(areas.listeners) && row >= areas.listeners.y + 2 {
            Some(Click::Listener(usize::from(row - areas.listeners.y - 2)))
        } else if inside(areas.log)
            && row > areas.log.y
            // Not on the pinned rows under the log's window.
            && usize::from(row - areas.log.y) <= self.log_rows
        {
            Some(Click::Log(
                self.log_top + usize::from(row - areas.log.y - 1),
            ))
        } else {
            None
        };
        if let Some(target) = target {
            self.state.click(target, &view);
            self.dirty = true;
        }
    }

    /// Does what the UI state asked of the runtime; outcomes come back as footer notes or
    /// dialog errors, never as a crash.
    fn carry_out(&mut self, effect: Effect) -> Flow {
        let now = Instant::now();
        let runtime = self.feed.runtime().clone();
        match effect {
            Effect::Quit => return Flow::Quit,
            Effect::TogglePause(identity) => self.control(&identity, false, now),
            Effect::Stop(identity) => self.control(&identity, true, now),
            Effect::ListTables { request, database } => {
                let answer = self.answer.clone();
                tokio::spawn(async move {
                    let listed =
                        tokio::time::timeout(LIST_TABLES_TIMEOUT, runtime.list_tables(&database))
                            .await
                            .unwrap_or_else(|_| {
                                Err(RuntimeError::Database("no answer in time".to_string()))
                            })
                            .map_err(|error| error.to_string());
                    // The UI may have ended meanwhile; then nobody needs the answer.
                    let _ = answer.send(TablesListed { request, listed });
                });
            }
            Effect::Add(command) => match runtime.execute(command) {
                Ok(handle) => {
                    self.state.popup = None;
                    self.feed.refresh(now, &self.state.filter);
                    self.state
                        .select_listener(handle.identity(), &self.feed.listeners);
                    self.state
                        .notify(format!("added {}", handle.identity()), false, now);
                }
                Err(error) => {
                    if let Some(dialog) = self.state.add_dialog() {
                        dialog.refused(error.to_string());
                    }
                }
            },
            Effect::OpenDetail(row) => match note_of_row(row) {
                Some(number) => match self.feed.note(number) {
                    Some(note) => self
                        .state
                        .show_note(TxView::of_note(row, &note, self.info.zone)),
                    None => self.state.notify("that note has left the log", true, now),
                },
                None => match self.feed.entry(row) {
                    Some(change) => self.state.show_detail(row, change),
                    None => self.state.notify("that event has left the log", true, now),
                },
            },
            Effect::PauseReplay => match &self.info.replay {
                Some(replay) => {
                    let text = if replay.toggle_pause() {
                        "replay paused: space resumes"
                    } else {
                        "replay resumed"
                    };
                    self.state.notify(text, false, now);
                }
                None => {
                    self.state
                        .notify("space pauses a replay (cdc-tui --replay FILE)", true, now)
                }
            },
            Effect::OpenTransaction(anchor) => match self.feed.transaction(anchor) {
                Some((summary, changes)) => self.state.show_transaction(TxView::new(
                    anchor,
                    &summary,
                    &changes,
                    self.info.zone,
                )),
                None => self
                    .state
                    .notify("that transaction has left the log", true, now),
            },
            Effect::Restart(identity) => {
                // An open listener detail stays: it shows the restart's states as they come.
                let outcome = runtime
                    .restart(&identity)
                    .map(|handle| format!("restarting {}", handle.identity()));
                self.note(outcome, now);
            }
            Effect::Remove(identity) => {
                let outcome = runtime
                    .remove(&identity)
                    .map(|handle| format!("removed {}", handle.identity()));
                self.note(outcome, now);
            }
            Effect::Copy(row) => match self.copy_line(row) {
                Some((line, what)) => {
                    let json = String::from_utf8_lossy(&line);
                    match clipboard::copy(json.trim_end()) {
                        Ok(()) => {
                            self.state
                                .notify(format!("copied {what} as JSON (OSC 52)"), false, now)
                        }
                        Err(error) => self
                            .state
                            .notify(format!("cannot copy: {error}"), true, now),
                    }
                }
                None => self.state.notify("that event has left the log", true, now),
            },
            Effect::CopyTransaction(anchor) => match self.feed.transaction(anchor) {
                Some((summary, changes)) => {
                    let mut lines = Vec::new();
                    for change in &changes {
                        change.write_json_line(&mut lines);
                    }
                    let json = String::from_utf8_lossy(&lines);
                    match clipboard::copy(json.trim_end()) {
                        Ok(()) => self.state.notify(
                            format!(
                                "copied tx {} ({} changes) as JSON lines (OSC 52)",
                                summary.id,
                                changes.len()
                            ),
                            false,
                            now,
                        ),
                        Err(error) => self
                            .state
                            .notify(format!("cannot copy: {error}"), true, now),
                    }
                }
                None => self
                    .state
                    .notify("that transaction has left the log", true, now),
            },
            Effect::Export(path) => {
                let (lines, count) = self.feed.json_lines();
                let written = path
                    .parent()
                    .filter(|dir| !dir.as_os_str().is_empty())
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(&path, lines));
                match written {
                    Ok(()) => self.state.notify(
                        format!("wrote {count} events to {}", path.display()),
                        false,
                        now,
                    ),
                    Err(error) => self.state.notify(
                        format!("cannot write {}: {error}", path.display()),
                        true,
                        now,
                    ),
                }
            }
        }
        Flow::Continue
    }

    /// Stops, pauses or resumes a listener; one that ended already says so.
    fn control(&mut self, identity: &str, stop: bool, now: Instant) {
        let runtime = self.feed.runtime();
        let outcome = if stop {
            runtime.stop_running(identity).map(|_| "stopping")
        } else {
            runtime.toggle_pause(identity).map(|asked| match asked {
                Control::Pause => "pausing",
                Control::Run | Control::Stop => "resuming",
            })
        };
        self.note(outcome.map(|doing| format!("{doing} {identity}")), now);
    }

    /// The JSON line of log row `row` (a change, or a note of the plain log), and what it is.
    fn copy_line(&self, row: u64) -> Option<(Vec<u8>, String)> {
        let mut line = Vec::new();
        match note_of_row(row) {
            Some(number) => {
                let note = self.feed.note(number)?;
                note.write_json_line(&mut line);
                Some((line, "the note".to_string()))
            }
            None => {
                self.feed.entry(row)?.write_json_line(&mut line);
                Some((line, format!("event #{}", row + 1)))
            }
        }
    }

    fn note(&mut self, outcome: Result<String, RuntimeError>, now: Instant) {
        match outcome {
            Ok(text) => self.state.notify(text, false, now),
            Err(RuntimeError::Ended { identity, state }) => self.state.notify(
                format!("{identity} {}: press r to restart it", state.phrase()),
                true,
                now,
            ),
            Err(error) => self.state.notify(error.to_string(), true, now),
        }
    }

    /// Takes in the runtime's news and draws when the screen would change.
    fn update(&mut self, terminal: &mut Screen) -> io::Result<()> {
        let now = Instant::now();
        let news = self.feed.refresh_view(now, &self.state);
        let expired = self.state.expire_message(now);
        if news || expired || self.dirty {
            self.draw(terminal)?;
        }
        Ok(())
    }

    fn draw(&mut self, terminal: &mut Screen) -> io::Result<()> {
        terminal.draw(|frame| {
            let timings = self.feed.timings();
            let drawn = draw_frame(frame, &mut self.state, &self.feed, &self.info, timings);
            self.log_rows = drawn.log_rows;
            self.popup_rows = drawn.popup_rows;
            self.areas = Some(drawn.areas);
            self.log_top = drawn.log_top;
        })?;
        self.dirty = false;
        self.last_draw = Some(Instant::now());
        Ok(())
    }
}
