//! Drawing: one function per region of the screen, each a pure function of the UI state and
//! the frame's data.

mod add_dialog;
mod detail;
mod footer;
mod header;
mod help;
mod listener_detail;
pub(crate) mod listeners;
pub(crate) mod log;
mod prompt;
mod timings;
mod tx_detail;
mod tx_log;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Margin, Rect};
use ratatui::widgets::{Block, BorderType, Scrollbar, ScrollbarOrientation, ScrollbarState};

use crate::registry::ListenerSnapshot;
use crate::tui::frame::FrameData;
use crate::tui::state::{Popup, UiState};
use crate::tui::theme::Theme;

/// From this width on, the flush timings sit beside the log instead of above it.
const SIDE_PANEL_FROM: u16 = 140;
const SIDE_PANEL_WIDTH: u16 = 44;
/// The timings strip: three rows and borders.
const STRIP_HEIGHT: u16 = 5;
/// The log keeps at least this many rows before the strip is given up.
const LOG_MIN_HEIGHT: u16 = 6;

/// Where each region goes on a screen of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub header: Rect,
    pub listeners: Rect,
    pub timings: Option<Rect>,
    pub log: Rect,
    pub footer: Rect,
    /// Rows the selected listener's wrapped state line takes in the listeners panel.
    pub status_rows: u16,
}

impl Areas {
    /// The regions, for `listener_count` listeners, the selected one's state line wrapped
    /// onto `status_rows` rows.
    pub fn new(area: Rect, listener_count: usize, status_rows: usize) -> Areas {
        let [header, body, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(1),
        ])
        .areas(area);
        // Borders and the heading row, at most two fifths of the body.
        let wanted = (listener_count.max(1) as u16).saturating_add(3);
        let base = wanted.min((body.height * 2 / 5).max(4));
        // The wrapped state line grows the panel, as far as the log keeps its rows.
        let status_rows =
            (status_rows as u16).min(body.height.saturating_sub(base + LOG_MIN_HEIGHT));
        let listeners_height = base + status_rows;
        let [listeners, rest] =
            Layout::vertical([Constraint::Length(listeners_height), Constraint::Fill(1)])
                .areas(body);
        let (timings, log) = if area.width >= SIDE_PANEL_FROM {
            let [log, timings] =
                Layout::horizontal([Constraint::Fill(1), Constraint::Length(SIDE_PANEL_WIDTH)])
                    .areas(rest);
            (Some(timings), log)
        } else if rest.height >= STRIP_HEIGHT + LOG_MIN_HEIGHT {
            let [timings, log] =
                Layout::vertical([Constraint::Length(STRIP_HEIGHT), Constraint::Fill(1)])
                    .areas(rest);
            (Some(timings), log)
        } else {
            (None, rest)
        };
        Areas {
            header,
            listeners,
            timings,
            log,
            footer,
            status_rows,
        }
    }

    /// Event rows the log shows (inside its borders).
    pub fn log_rows(&self) -> usize {
        self.log.height.saturating_sub(2) as usize
    }

    /// Listener rows the table shows (inside its borders, under the headings).
    pub fn listener_rows(&self) -> usize {
        self.listeners.height.saturating_sub(3 + self.status_rows) as usize
    }
}

/// Rows the selected listener's state line needs in the listeners panel on a screen this wide.
pub fn status_rows(state: &UiState, listeners: &[ListenerSnapshot], width: u16) -> usize {
    state
        .selected_listener(listeners)
        .map_or(0, |listener| listeners::status_rows(listener, width).len())
}

pub fn draw(frame: &mut Frame, state: &UiState, data: &FrameData) {
    let area = frame.area();
    let status = status_rows(state, data.listeners, area.width);
    let areas = Areas::new(area, listeners::row_count(data.listeners, state), status);
    header::render(frame, areas.header, data);
    listeners::render(frame, areas.listeners, areas.status_rows, state, data);
    if let Some(area) = areas.timings {
        timings::render(frame, area, data);
    }
    log::render(frame, areas.log, state, data);
    footer::render(frame, areas.footer, state, data);
    match &state.popup {
        Some(Popup::Help { scroll }) => help::render(frame, *scroll, data),
        Some(Popup::Detail(view)) => detail::render(frame, view, data),
        Some(Popup::Transaction(view) | Popup::Note(view)) => tx_detail::render(frame, view, data),
        Some(Popup::Add(dialog)) => add_dialog::render(frame, dialog, data),
        Some(Popup::Listener { identity, scroll }) => {
            listener_detail::render(frame, identity, *scroll, data)
        }
        Some(Popup::Confirm { question, .. }) => prompt::render_confirm(frame, question, data),
        Some(Popup::Export { path }) => prompt::render_export(frame, path, data),
        None => {}
    }
}

/// The scrolling popup's content rows and visible rows, on a screen of this size (for
/// clamping and paging its scroll).
pub fn popup_scroll(area: Rect, state: &UiState, data: &FrameData) -> Option<(usize, usize)> {
    match &state.popup {
        Some(Popup::Help { .. }) => Some(help::scroll_extent(area, data)),
        Some(Popup::Detail(view)) => Some(detail::scroll_extent(area, view)),
        Some(Popup::Transaction(view) | Popup::Note(view)) => {
            Some(tx_detail::scroll_extent(area, view))
        }
        Some(Popup::Listener { identity, .. }) => {
            Some(listener_detail::scroll_extent(area, identity, data))
        }
        Some(Popup::Add(_) | Popup::Confirm { .. } | Popup::Export { .. }) | None => None,
    }
}

/// A bordered panel, its border brighter when focused.
fn panel<'a>(theme: Theme, focused: bool) -> Block<'a> {
    Block::bordered()
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Rounded
        })
        .border_style(theme.border(focused))
}

/// A scrollbar on the right border of `area`, when `content` rows do not fit in `visible`.
fn scrollbar(
    frame: &mut Frame,
    area: Rect,
    theme: Theme,
    (content, visible, top): (usize, usize, usize),
) {
    if content <= visible {
        return;
    }
    let mut state = ScrollbarState::new(content - visible).position(top);
    let bar = Scrollbar::new(ScrollbarOrientation::VerticalRight)
        .begin_symbol(None)
        .end_symbol(None)
        .style(theme.dim());
    frame.render_stateful_widget(bar, area.inner(Margin::new(0, 1)), &mut state);
}

/// Marks the selected row of tables and lists, so it shows without colour too.
const SELECTED_MARK: &str = "▶ ";

/// Clears a wide popup's area and a column either side, so nothing of the panels below shows
/// between their borders and the popup's.
fn clear_around(frame: &mut Frame, area: Rect) {
    let around = area.outer(Margin::new(1, 0)).intersection(frame.area());
    frame.render_widget(ratatui::widgets::Clear, around);
}

/// A centered popup area of at most `width` x `height`.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}
