//! The listeners table: identity, strategy, state, counts per op, a rate sparkline and the
//! position (or why it is retrying or failed). Columns that do not fit are left out; the
//! selected listener's full state line sits on the bottom border.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Rect};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Cell, HighlightSpacing, Paragraph, Row, Table, TableState};
use unicode_width::UnicodeWidthStr;

use crate::change::Op;
use crate::registry::{ListenerSnapshot, ListenerState, TableCounts};
use crate::tui::format;
use crate::tui::frame::FrameData;
use crate::tui::lag::{self, Level};
use crate::tui::render::{SELECTED_MARK, panel};
use crate::tui::state::{Focus, UiState};
use crate::tui::theme::Theme;

/// "change_stream"
/// "retrying"
const STATE_WIDTH: u16 = 8;
/// "12.5k/s"
const RATE_TEXT_WIDTH: u16 = 7;
const RATE_MIN_WIDTH: u16 = RATE_TEXT_WIDTH + 6;
const RATE_MAX_WIDTH: u16 = RATE_TEXT_WIDTH + 25;
const IDENTITY_MIN_WIDTH: u16 = 12;
const IDENTITY_MAX_WIDTH: u16 = 40;
const INFO_MIN_WIDTH: u16 = 12;
/// "idle 12m"
const LAG_WIDTH: u16 = 8;
/// The selected listener's state line, when too long for the border, wraps onto at most this
/// many rows inside the panel (`i` shows the rest).
const STATUS_MAX_ROWS: usize = 4;
/// "trunc"
const COUNT_MIN_WIDTH: u16 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Identity(u16),
    Strategy,
    State,
    Count(Op, u16),
    Rate(u16),
    Lag,
    Info(u16),
}

/// The longest strategy name any source kind registers.
fn strategy_width() -> u16 {
    crate::source::strategy_names()
        .iter()
        .map(|name| name.len() as u16)
        .max()
        .unwrap_or(0)
}

impl Column {
    /// The columns that fit in `width`: identity, state, counts and rate always; strategy and
    /// position when there is room.
    fn fit(width: u16, listeners: &[ListenerSnapshot]) -> Vec<Column> {
        let longest_identity = listeners
            .iter()
            .map(|l| l.identity.chars().count() as u16)
            .max()
            .unwrap_or(0)
            .clamp(IDENTITY_MIN_WIDTH, IDENTITY_MAX_WIDTH);
        let count_width = listeners
            .iter()
            .flat_map(|l| l.counts.0)
            .map(|n| format::count(n).len() as u16)
            .max()
            .unwrap_or(0)
            .max(COUNT_MIN_WIDTH);
        // Each column is followed by one column of spacing.
        let fixed = (IDENTITY_MIN_WIDTH + 1)
            + (STATE_WIDTH + 1)
            + 4 * (count_width + 1)
            + (RATE_MIN_WIDTH + 1);
        let mut left = width.saturating_sub(fixed);
        let lag = left > LAG_WIDTH;
        if lag {
            left -= LAG_WIDTH + 1;
        }
        let mut grow = |wanted: u16| {
            let given = wanted.min(left);
            left -= given;
            given
        };
        let identity = IDENTITY_MIN_WIDTH + grow(longest_identity - IDENTITY_MIN_WIDTH);
        let strategy_width = strategy_width();
        let strategy = left > strategy_width;
        if strategy {
            left -= strategy_width + 1;
        }
        let info = left > INFO_MIN_WIDTH;
        let rate_growth = if info {
            (left - INFO_MIN_WIDTH - 1).min(8)
        } else {
            (RATE_MAX_WIDTH - RATE_MIN_WIDTH).min(left)
        };
        let rate = RATE_MIN_WIDTH + rate_growth;
        let info_width = left.saturating_sub(rate_growth + 1);

        let mut columns = vec![Column::Identity(identity)];
        if strategy {
            columns.push(Column::Strategy);
        }
        columns.push(Column::State);
        columns.extend(Op::ALL.map(|op| Column::Count(op, count_width)));
        columns.push(Column::Rate(rate));
        if lag {
            columns.push(Column::Lag);
        }
        if info {
            columns.push(Column::Info(info_width));
        }
        columns
    }

    fn width(self) -> Constraint {
        match self {
            Column::Identity(width) | Column::Count(_, width) | Column::Rate(width) => {
                Constraint::Length(width)
            }
            Column::Strategy => Constraint::Length(strategy_width()),
            Column::State => Constraint::Length(STATE_WIDTH),
            Column::Lag => Constraint::Length(LAG_WIDTH),
            Column::Info(_) => Constraint::Fill(1),
        }
    }

    fn heading(self) -> Text<'static> {
        match self {
            Column::Identity(_) => Text::from("listener"),
            Column::Strategy => Text::from("strategy"),
            Column::State => Text::from("state"),
            Column::Count(op, _) => Text::from(match op {
                Op::Insert => "ins",
                Op::Update => "upd",
                Op::Delete => "del",
                Op::Truncate => "trunc",
            })
            .right_aligned(),
            Column::Rate(_) => Text::from("changes/s").right_aligned(),
            Column::Lag => Text::from("lag").right_aligned(),
            Column::Info(_) => Text::from("position"),
        }
    }

    fn cell<'a>(self, listener: &'a ListenerSnapshot, data: &FrameData) -> Cell<'a> {
        let theme = data.info.theme;
        match self {
            Column::Identity(width) => {
                Cell::from(format::ellipsize(&listener.identity, width as usize))
            }
            Column::Strategy => Cell::from(listener.strategy.as_str()),
            Column::State => Cell::from(Span::styled(
                listener.state.as_str(),
                theme.state(listener.state),
            )),
            Column::Count(op, _) => {
                Cell::from(Text::from(format::count(listener.counts.get(op))).right_aligned())
            }
            Column::Rate(width) => {
                let rates = data.rates.listener(&listener.identity);
                let rate = rates.and_then(|r| r.back().copied()).unwrap_or(0);
                let bars = (width - RATE_TEXT_WIDTH - 1) as usize;
                let spark = format::sparkline(rates.into_iter().flatten().copied(), bars);
                Cell::from(Line::from(vec![
                    Span::styled(spark, theme.sparkline()),
                    Span::raw(format!(" {:>7}", format::rate(rate))),
                ]))
            }
            // A listener that ended is behind by nothing it could catch up on.
            Column::Lag if listener.state.is_final() => {
                Cell::from(Text::styled("-", theme.dim()).right_aligned())
            }
            Column::Lag => {
                let (text, level) = lag::compact(&listener.lag, data.now);
                Cell::from(Text::styled(text, level_style(theme, level)).right_aligned())
            }
            Column::Info(width) => Cell::from(info(listener, theme, width as usize)),
        }
    }

    /// The cell of one table of an expanded listener: counts, rate and last change per table.
    fn table_cell<'a>(
        self,
        listener: &ListenerSnapshot,
        table: &'a TableCounts,
        data: &FrameData,
    ) -> Cell<'a> {
        let theme = data.info.theme;
        match self {
            Column::Identity(width) => Cell::from(Span::styled(
                format::ellipsize(&format!("  └ {}", table.table), width as usize).into_owned(),
                theme.dim(),
            )),
            Column::Strategy | Column::State | Column::Lag => Cell::from(""),
            Column::Count(op, _) => {
                Cell::from(Text::from(format::count(table.counts.get(op))).right_aligned())
            }
            Column::Rate(width) => {
                let rates = data.rates.table(&listener.identity, &table.table);
                let rate = rates.and_then(|r| r.back().copied()).unwrap_or(0);
                let bars = (width - RATE_TEXT_WIDTH - 1) as usize;
                let spark = format::sparkline(rates.into_iter().flatten().copied(), bars);
                Cell::from(Line::from(vec![
                    Span::styled(spark, theme.sparkline()),
                    Span::raw(format!(" {:>7}", format::rate(rate))),
                ]))
            }
            Column::Info(_) => Cell::from(Span::styled(
                match &table.last_change {
                    Some(time) => format!("last change {}", format::clock(time, data.info.zone)),
                    None => "no change yet".to_string(),
                },
                theme.dim(),
            )),
        }
    }
}

/// Rows the listeners table has: a listener's, and one per table of an expanded listener.
pub fn row_count(listeners: &[ListenerSnapshot], state: &UiState) -> usize {
    listeners
        .iter()
        .map(|l| 1 + expanded_tables(l, state).len())
        .sum()
}

fn expanded_tables<'a>(listener: &'a ListenerSnapshot, state: &UiState) -> &'a [TableCounts] {
    if state.expanded_listeners.contains(&listener.identity) {
        &listener.tables
    } else {
        &[]
    }
}

/// The table in `area`, the selected listener's state line wrapped onto its last
/// `status_rows` rows when it does not fit on the border.
pub fn render(frame: &mut Frame, area: Rect, status_rows: u16, state: &UiState, data: &FrameData) {
    let theme = data.info.theme;
    let focused = state.focus == Focus::Listeners && state.popup.is_none();
    let listeners = data.listeners;
    let mut block = panel(theme, focused).title(Line::from(vec![
        Span::styled(" Listeners ", theme.title()),
        Span::styled(summary(listeners), theme.dim()),
    ]));
    let Some(selected) = state.selected_listener(listeners) else {
        let empty = Paragraph::new("no listeners: press a to add one")
            .style(theme.dim())
            .alignment(Alignment::Center)
            .block(block);
        frame.render_widget(empty, area);
        return;
    };
    let status = status_text(selected);
    let style = status_style(selected, theme);
    let mut wrapped = self::status_rows(selected, area.width);
    wrapped.truncate(status_rows as usize);
    block = if wrapped.is_empty() {
        let room = area.width.saturating_sub(4) as usize;
        let line = format::ellipsize(&status, room);
        block.title_bottom(Line::styled(format!(" {line} "), style))
    } else {
        block.title_bottom(Line::styled(" i: all of it ", theme.dim()).right_aligned())
    };
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut table_area = inner;
    if !wrapped.is_empty() {
        // Too long for the border: the table gives rows to the whole line, `i` the rest.
        let rows = wrapped.len() as u16;
        let status_area = Rect {
            x: inner.x + 1,
            y: inner.bottom().saturating_sub(rows),
            width: inner.width.saturating_sub(2),
            height: rows.min(inner.height),
        };
        frame.render_widget(
            Paragraph::new(
                wrapped
                    .into_iter()
                    .map(|line| Line::styled(line, style))
                    .collect::<Vec<_>>(),
            ),
            status_area,
        );
        table_area.height = table_area.height.saturating_sub(rows);
    }

    let mark = SELECTED_MARK.width() as u16;
    let columns = Column::fit(area.width.saturating_sub(2 + mark), listeners);
    let header = Row::new(columns.iter().map(|c| Cell::from(c.heading()))).style(theme.label());
    // The row of listener `at`, counting the table rows of expanded listeners above it.
    let row_of = |at: usize| {
        listeners[..at]
            .iter()
            .map(|l| 1 + expanded_tables(l, state).len())
            .sum::<usize>()
    };
    let rows = listeners.iter().flat_map(|listener| {
        let tables = expanded_tables(listener, state)
            .iter()
            .map(|table| Row::new(columns.iter().map(|c| c.table_cell(listener, table, data))));
        std::iter::once(Row::new(columns.iter().map(|c| c.cell(listener, data)))).chain(tables)
    });
    let table = Table::new(rows, columns.iter().map(|c| c.width()))
        .header(header)
        .highlight_symbol(SELECTED_MARK)
        .highlight_spacing(HighlightSpacing::Always)
        .row_highlight_style(theme.selected(focused));
    let mut table_state = TableState::default()
        .with_offset(row_of(state.listeners_top.min(listeners.len() - 1)))
        .with_selected(row_of(state.selected_listener.min(listeners.len() - 1)));
    frame.render_stateful_widget(table, table_area, &mut table_state);
}

/// A lag figure's style: plain, or the warning or error colour past its thresholds.
pub fn level_style(theme: Theme, level: Level) -> ratatui::style::Style {
    match level {
        Level::Normal => ratatui::style::Style::new(),
        Level::Warn => theme.warning(),
        Level::Bad => theme.error(),
    }
}

/// The last column: why a listener is retrying or failed, else its position and detail; cut
/// with an ellipsis to `width`, so a cut name does not look whole.
fn info(listener: &ListenerSnapshot, theme: Theme, width: usize) -> Line<'static> {
    if let Some(reason) = &listener.reason {
        return Line::styled(
            format::ellipsize(reason, width).into_owned(),
            theme.state(listener.state),
        );
    }
    let position = listener.position.as_deref().unwrap_or("");
    let detail = listener.detail.as_deref().unwrap_or("");
    let separator = if position.is_empty() || detail.is_empty() {
        ""
    } else {
        " · "
    };
    let full = format!("{position}{separator}{detail}");
    let cut = format::ellipsize(&full, width);
    // The position plain, the rest (the source's detail) dim.
    let split = position.len().min(cut.len());
    let (position, rest) = cut.split_at(if cut.is_char_boundary(split) {
        split
    } else {
        0
    });
    Line::from(vec![
        Span::raw(position.to_string()),
        Span::styled(rest.to_string(), theme.dim()),
    ])
}

/// The selected listener in full: state, reason, strategy, position, detail.
fn status_text(listener: &ListenerSnapshot) -> String {
    let mut text = format!("{} {}", listener.identity, listener.state);
    if let Some(reason) = &listener.reason {
        text.push_str(": ");
        text.push_str(reason);
    }
    text.push_str(&format!(
        " · {} on {}",
        listener.strategy, listener.database
    ));
    if let Some(position) = &listener.position {
        text.push_str(&format!(" · at {position}"));
    }
    if let Some(detail) = &listener.detail {
        text.push_str(&format!(" · {detail}"));
    }
    text
}

fn status_style(listener: &ListenerSnapshot, theme: Theme) -> ratatui::style::Style {
    match listener.state {
        ListenerState::Retrying | ListenerState::Failed => theme.state(listener.state),
        _ => theme.dim(),
    }
}

/// The state line wrapped to a panel `width` wide, when it does not fit on the border (else
/// none): at most [`STATUS_MAX_ROWS`], the last one ending in `…` when cut.
pub fn status_rows(listener: &ListenerSnapshot, width: u16) -> Vec<String> {
    let text = status_text(listener);
    let border_room = width.saturating_sub(4) as usize;
    if text.width() <= border_room {
        return Vec::new();
    }
    let room = width.saturating_sub(4) as usize;
    let mut lines = format::wrap(&text, room);
    if lines.len() > STATUS_MAX_ROWS {
        lines.truncate(STATUS_MAX_ROWS);
        let last = &mut lines[STATUS_MAX_ROWS - 1];
        *last = format::ellipsize(&format!("{last} …"), room).into_owned();
        if !last.ends_with('…') {
            last.push('…');
        }
    }
    lines
}

/// "3 running · 1 paused" for the title.
fn summary(listeners: &[ListenerSnapshot]) -> String {
    const STATES: [ListenerState; 6] = [
        ListenerState::Running,
        ListenerState::Starting,
        ListenerState::Paused,
        ListenerState::Retrying,
        ListenerState::Failed,
        ListenerState::Stopped,
    ];
    let parts: Vec<String> = STATES
        .iter()
        .filter_map(|&state| {
            let count = listeners.iter().filter(|l| l.state == state).count();
            (count > 0).then(|| format!("{count} {state}"))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("{} ", parts.join(" · "))
    }
}
