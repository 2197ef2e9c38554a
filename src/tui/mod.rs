//! The terminal UI: a header, the listeners table, the event log, flush timings and key hints.
//!
//! `run` owns the terminal (raw mode, alternate screen; restored on every way out, panics
//! included) and the event loop: keys from crossterm's event stream, table lists from spawned
//! tasks, a frame tick, and SIGINT/SIGTERM. The pieces: `keys` (the one bindings table),
//! `state` (pure UI state), `frame` (the runtime's data per frame), `render` (drawing).

mod add_dialog;
mod detail;
mod format;
mod frame;
mod keys;
mod log_index;
mod rates;
mod render;
mod state;
mod theme;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::future::Future;
use std::io::{self, Stdout};
use std::panic::{self, PanicHookInfo};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{Local, Offset};
use crossterm::event::{Event, EventStream, KeyEventKind};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use crate::pipeline::{FlushTimings, LogRing, TimingsSnapshot};
use crate::registry::Control;
use crate::runtime::{Command, Runtime};
use crate::signals;
use crate::tui::add_dialog::DatabaseChoice;
use crate::tui::frame::{Feed, FrameData, Info};
use crate::tui::keys::{Action, Key};
use crate::tui::render::Areas;
use crate::tui::state::{Effect, UiState, View};
use crate::tui::theme::Theme;

/// What the UI reads: the runtime (registry snapshot, commands), the handler's log ring and
/// flush timings, and where logs go.
pub struct UiContext {
    pub runtime: Arc<Runtime>,
    pub timings: Arc<FlushTimings>,
    pub log: Arc<LogRing>,
    pub log_file: Option<PathBuf>,
    pub config_path: PathBuf,
}

/// At most this many frames a second; also how often the runtime's state is looked at.
const FRAME: Duration = Duration::from_millis(33);
/// A table list that takes longer than this is reported as failed.
const LIST_TABLES_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the UI until `q`, Ctrl-C, SIGINT or SIGTERM. The terminal is restored however it ends.
pub async fn run(ui: UiContext) -> anyhow::Result<()> {
    let info = Info {
        databases: database_choices(&ui.runtime),
        // Absolute, so the help screen says where they are whatever the working directory.
        log_file: ui.log_file.map(absolute),
        config_path: if ui.config_path.exists() {
            absolute(ui.config_path)
        } else {
            ui.config_path
        },
        log_capacity: ui.log.capacity(),
        theme: Theme::from_env(),
        zone: Local::now().offset().fix(),
    };
    let feed = Feed::new(ui.runtime, ui.timings, ui.log);
    let _guard = TerminalGuard::enter().context("cannot set the terminal up")?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    UiScope(Box::pin(event_loop(&mut terminal, info, feed))).await
}

/// The databases the add dialog offers, by name.
fn database_choices(runtime: &Runtime) -> Vec<DatabaseChoice> {
    let mut databases: Vec<DatabaseChoice> = runtime
        .databases()
        .map(|d| DatabaseChoice {
            name: d.name.clone(),
            kind: d.kind,
        })
        .collect();
    databases.sort_by(|a, b| a.name.cmp(&b.name));
    databases
}

/// The main screen drawn on any ratatui backend, as the UI draws it each tick: for
/// benchmarks and previews. Colours on, times in UTC, no log file.
pub struct FrameRenderer {
    info: Info,
    feed: Feed,
    state: UiState,
}

impl FrameRenderer {
    pub fn new(ui: UiContext) -> FrameRenderer {
        FrameRenderer {
            info: Info {
                databases: database_choices(&ui.runtime),
                log_file: ui.log_file,
                config_path: ui.config_path,
                log_capacity: ui.log.capacity(),
                theme: Theme::COLOR,
                zone: chrono::Utc.fix(),
            },
            feed: Feed::new(ui.runtime, ui.timings, ui.log),
            state: UiState::default(),
        }
    }

    /// Takes in the runtime's news (listeners, counters, new log entries, flush timings) and
    /// draws one frame.
    pub fn draw<B: ratatui::backend::Backend>(
        &mut self,
        terminal: &mut Terminal<B>,
    ) -> Result<(), B::Error> {
        self.feed.refresh(Instant::now(), &self.state.filter);
        terminal.draw(|frame| {
            let timings = self.feed.timings();
            draw_frame(frame, &mut self.state, &self.feed, &self.info, timings);
        })?;
        Ok(())
    }
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// The UI's side of the event loop.
struct App {
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

async fn event_loop(terminal: &mut Screen, info: Info, feed: Feed) -> anyhow::Result<()> {
    let mut events = EventStream::new();
    let terminated = signals::terminated();
    tokio::pin!(terminated);
    let (answer, mut answers) = mpsc::unbounded_channel();
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut app = App {
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

impl App {
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
                            .unwrap_or_else(|_| Err("no answer from the database".to_string()));
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
                Err(message) => {
                    if let Some(dialog) = self.state.add_dialog() {
                        dialog.refused(message);
                    }
                }
            },
            Effect::OpenDetail(number) => match self.feed.entry(number) {
                Some(change) => self.state.show_detail(number, change),
                None => self.state.notify("that event has left the log", true, now),
            },
        }
        Flow::Continue
    }

    /// Stops, pauses or resumes a listener; one that ended already says so.
    fn control(&mut self, identity: &str, stop: bool, now: Instant) {
        let runtime = self.feed.runtime();
        let outcome = runtime
            .registry()
            .get(identity)
            .map_err(|error| error.to_string())
            .and_then(|handle| {
                let state = handle.state();
                if state.is_final() {
                    return Err(format!("{identity} is {state}: press a to add it again"));
                }
                let (command, doing) = if stop {
                    (Command::Stop(identity.to_string()), "stopping")
                } else if handle.control() == Control::Pause {
                    (Command::Resume(identity.to_string()), "resuming")
                } else {
                    (Command::Pause(identity.to_string()), "pausing")
                };
                runtime.execute(command)?;
                Ok(format!("{doing} {identity}"))
            });
        self.note(outcome, now);
    }

    fn note(&mut self, outcome: Result<String, String>, now: Instant) {
        match outcome {
            Ok(text) => self.state.notify(text, false, now),
            Err(text) => self.state.notify(text, true, now),
        }
    }

    /// Takes in the runtime's news and draws when the screen would change.
    fn update(&mut self, terminal: &mut Screen) -> io::Result<()> {
        let now = Instant::now();
        let news = self.feed.refresh(now, &self.state.filter);
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

/// Rows of the scrolling regions as drawn, for paging.
struct Drawn {
    log_rows: usize,
    popup_rows: usize,
}

/// One frame: scrolls the listeners and places the log window, copies the log rows out of the
/// ring, keeps popup scrolling in bounds, and draws.
fn draw_frame(
    frame: &mut ratatui::Frame,
    state: &mut UiState,
    feed: &Feed,
    info: &Info,
    timings: &TimingsSnapshot,
) -> Drawn {
    let areas = Areas::new(frame.area(), feed.listeners.len());
    state.place_listeners(feed.listeners.len(), areas.listener_rows());
    let window = state.log.place(feed.index(), areas.log_rows());
    let log = feed.rows(window);
    let data = FrameData {
        info,
        listeners: &feed.listeners,
        rates: &feed.rates,
        timings,
        log: &log,
    };
    let mut popup_rows = 0;
    if let Some((content, visible)) = render::popup_scroll(frame.area(), state, &data) {
        state.clamp_popup_scroll(content, visible);
        popup_rows = visible;
    }
    render::draw(frame, state, &data);
    Drawn {
        log_rows: areas.log_rows(),
        popup_rows,
    }
}

type Screen = Terminal<CrosstermBackend<Stdout>>;

/// Whether the terminal is in raw mode on the alternate screen, so restoring happens once.
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set while this thread runs the UI's code: a panic there must restore the terminal
    /// before its message is printed, or the message vanishes with the alternate screen.
    static IN_UI: Cell<bool> = const { Cell::new(false) };
}

type PanicHook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Raw mode, the alternate screen and a panic hook that leaves them; dropping the guard
/// restores the terminal and the previous panic hook.
struct TerminalGuard {
    previous_hook: Arc<PanicHook>,
}

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        let previous_hook: Arc<PanicHook> = Arc::new(panic::take_hook());
        let hook = previous_hook.clone();
        panic::set_hook(Box::new(move |info| {
            if IN_UI.get() {
                restore_terminal();
                hook(info);
            } else {
                // A listener task's panic: keep it off the screen (the log file has it) and
                // let the UI carry on.
                tracing::error!("{info}");
            }
        }));
        let guard = TerminalGuard { previous_hook };
        terminal::enable_raw_mode()?;
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        crossterm::execute!(io::stdout(), EnterAlternateScreen)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
        // The hook cannot be changed while unwinding; ours stays and restores nothing more.
        if !std::thread::panicking() {
            let previous = self.previous_hook.clone();
            drop(panic::take_hook());
            panic::set_hook(Box::new(move |info| previous(info)));
        }
    }
}

/// Leaves raw mode and the alternate screen and shows the cursor; once, however often called.
fn restore_terminal() {
    if TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        // Nothing more can be done if the terminal refuses: these are best effort.
        let _ = terminal::disable_raw_mode();
        let _ = crossterm::execute!(io::stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
    }
}

/// Marks the thread as running UI code while the UI's future is polled (see `IN_UI`).
struct UiScope<F>(Pin<Box<F>>);

impl<F: Future> Future for UiScope<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        /// Puts the flag back however the poll ends, unwinding included.
        struct Restore(bool);
        impl Drop for Restore {
            fn drop(&mut self) {
                IN_UI.set(self.0);
            }
        }
        let _restore = Restore(IN_UI.replace(true));
        self.0.as_mut().poll(cx)
    }
}
