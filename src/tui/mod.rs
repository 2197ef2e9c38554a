//! The terminal UI: a header, the listeners table, the event log, flush timings and key hints.
//!
//! `run` takes the terminal (`terminal`: raw mode, alternate screen; restored on every way out,
//! panics included) and runs the event loop (`event_loop`). The pieces: `keys` (the one
//! bindings table), `state` (pure UI state) and the `effect`s it asks for, `frame` (the
//! runtime's data per frame), `render` (drawing, one module per region).

mod add_dialog;
mod clipboard;
mod detail;
mod effect;
mod event_loop;
mod format;
mod frame;
mod keys;
mod lag;
mod log_index;
mod rates;
mod render;
mod state;
mod terminal;
mod theme;
mod transactions;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{Local, Offset};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use crate::pipeline::sinks::nats::SinkStatus;
use crate::pipeline::{FlushTimings, LogRing, TimingsSnapshot};
use crate::replay::ReplayProgress;
use crate::runtime::Runtime;
use crate::tui::add_dialog::DatabaseChoice;
use crate::tui::event_loop::event_loop;
use crate::tui::frame::{Feed, FrameData, Info};
use crate::tui::render::Areas;
use crate::tui::state::UiState;
use crate::tui::terminal::{TerminalGuard, UiScope};
use crate::tui::theme::Theme;

/// What the UI reads: the runtime (registry snapshot, commands), the handler's log ring and
/// flush timings, the sinks' states, and where logs go.
pub struct UiContext {
    pub runtime: Arc<Runtime>,
    pub timings: Arc<FlushTimings>,
    pub log: Arc<LogRing>,
    /// Sinks that have a state of their own (a remote service that can be down), by name.
    pub sinks: Vec<SinkWatch>,
    pub log_file: Option<PathBuf>,
    pub config_path: PathBuf,
}

/// A sink's state as it changes (`starting`, `running`, `retrying` with the reason).
pub struct SinkWatch {
    pub name: Arc<str>,
    pub status: tokio::sync::watch::Receiver<SinkStatus>,
}

/// At most this many frames a second; also how often the runtime's state is looked at.
pub(crate) const FRAME: Duration = Duration::from_millis(33);

/// Runs the UI until `q`, Ctrl-C, SIGINT or SIGTERM. The terminal is restored however it ends.
pub async fn run(ui: UiContext) -> anyhow::Result<()> {
    run_with(ui, None).await
}

/// `run` for a replay (`--replay`): the header shows its progress and space pauses it.
pub async fn replay(ui: UiContext, progress: Arc<ReplayProgress>) -> anyhow::Result<()> {
    run_with(ui, Some(progress)).await
}

async fn run_with(ui: UiContext, replay: Option<Arc<ReplayProgress>>) -> anyhow::Result<()> {
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
        state_dir: absolute(ui.runtime.state_dir().to_path_buf()),
        theme: Theme::from_env(),
        zone: Local::now().offset().fix(),
        replay,
    };
    let mut feed = Feed::new(ui.runtime, ui.timings, ui.log);
    feed.watch_sinks(ui.sinks);
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
        let mut feed = Feed::new(ui.runtime.clone(), ui.timings, ui.log.clone());
        feed.watch_sinks(ui.sinks);
        FrameRenderer {
            info: Info {
                databases: database_choices(&ui.runtime),
                log_file: ui.log_file,
                config_path: ui.config_path,
                log_capacity: ui.log.capacity(),
                state_dir: ui.runtime.state_dir().to_path_buf(),
                theme: Theme::COLOR,
                zone: chrono::Utc.fix(),
                replay: None,
            },
            feed,
            state: UiState::default(),
        }
    }

    /// Takes in the runtime's news (listeners, counters, new log entries, flush timings) and
    /// draws one frame.
    pub fn draw<B: ratatui::backend::Backend>(
        &mut self,
        terminal: &mut Terminal<B>,
    ) -> Result<(), B::Error> {
        self.feed.refresh_view(Instant::now(), &self.state);
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

/// Rows of the scrolling regions as drawn, for paging.
pub(crate) struct Drawn {
    pub log_rows: usize,
    pub popup_rows: usize,
    /// Where the regions were, and the log position of the top row, for mouse clicks.
    pub areas: Areas,
    pub log_top: usize,
}

/// One frame: scrolls the listeners and places the log window, copies the log rows out of the
/// ring, keeps popup scrolling in bounds, and draws.
pub(crate) fn draw_frame(
    frame: &mut ratatui::Frame,
    state: &mut UiState,
    feed: &Feed,
    info: &Info,
    timings: &TimingsSnapshot,
) -> Drawn {
    let status = render::status_rows(state, &feed.listeners, frame.area().width);
    let areas = Areas::new(
        frame.area(),
        render::listeners::row_count(&feed.listeners, state),
        status,
    );
    state.place_listeners(feed.listeners.len(), areas.listener_rows());
    // Streamed transactions pinned under the log take rows of its own.
    let log_rows = areas
        .log_rows()
        .saturating_sub(render::log::pinned_rows(&feed.pinned, areas.log_rows()));
    let window = state.log.place(feed.index(), log_rows);
    let log = feed.rows(window);
    let data = FrameData {
        info,
        listeners: &feed.listeners,
        rates: &feed.rates,
        timings,
        log: &log,
        now: feed.now,
        filter_error: feed.filter_error(),
        pinned: &feed.pinned,
        sinks: &feed.sinks,
    };
    let mut popup_rows = 0;
    if let Some((content, visible)) = render::popup_scroll(frame.area(), state, &data) {
        state.clamp_popup_scroll(content, visible);
        popup_rows = visible;
    }
    render::draw(frame, state, &data);
    Drawn {
        log_rows,
        popup_rows,
        areas,
        log_top: window.top,
    }
}
