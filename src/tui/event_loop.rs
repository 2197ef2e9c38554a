//! The event loop: keys from crossterm's event stream, table lists from spawned tasks, a frame
//! tick and SIGINT/SIGTERM; what the UI state asks for is carried out on the runtime here.

use std::io;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossterm::event::{Event, EventStream, KeyEventKind};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use crate::registry::Control;
use crate::runtime::RuntimeError;
use crate::signals;
use crate::tui::effect::Effect;
use crate::tui::frame::{Feed, Info};
use crate::tui::keys::{self, Action, Key};
use crate::tui::state::{UiState, View};
use crate::tui::terminal::Screen;
use crate::tui::transactions::TxView;
use crate::tui::{FRAME, draw_frame};

/// A table list that takes longer than this is reported as failed.
const LIST_TABLES_TIMEOUT: Duration = Duration::from_secs(15);

/// The UI's side of the event loop.
struct UiLoop {
    info: Info,
    feed: Feed,
    state: UiState,
    /// Where spawned tasks send table lists for the add dialog.
    answer: mpsc::UnboundedSender<TablesListed>,
    /// Sizes as last drawn, for paging.
    log_rows: usize,
    popup_rows: usize,
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
        let view = View {
            listeners: &self.feed.listeners,
            log: self.feed.index(),
            databases: &self.info.databases,
            log_rows: self.log_rows,
            popup_rows: self.popup_rows,
        };
        match self.state.apply(binding.action, &view) {
            Some(effect) => self.carry_out(effect),
            None => Flow::Continue,
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
            Effect::OpenDetail(number) => match self.feed.entry(number) {
                Some(change) => self.state.show_detail(number, change),
                None => self.state.notify("that event has left the log", true, now),
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
                Some((summary, changes)) => {
                    self.state
                        .show_transaction(TxView::new(&summary, &changes, self.info.zone))
                }
                None => self
                    .state
                    .notify("that transaction has left the log", true, now),
            },
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

    fn note(&mut self, outcome: Result<String, RuntimeError>, now: Instant) {
        match outcome {
            Ok(text) => self.state.notify(text, false, now),
            Err(RuntimeError::Ended { identity, state }) => self.state.notify(
                format!("{identity} is {state}: press a to add it again"),
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
        })?;
        self.dirty = false;
        self.last_draw = Some(Instant::now());
        Ok(())
    }
}
