//! The event log: newest at the bottom, one change per row (time, op, table, key and what
//! changed), the ring's fill and evictions, the filter and whether it follows the tail.

use std::collections::HashMap;

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Borders, Cell, HighlightSpacing, Paragraph, Row, Table, TableState};
use serde_json::Value;
use unicode_width::UnicodeWidthStr;

use crate::change::{Change, Note, NoteKind, Op};
use crate::tui::detail::changed_fields;
use crate::tui::format;
use crate::tui::frame::{FrameData, LogEntry};
use crate::tui::log_index::{NoteParts, highlights};
use crate::tui::render::{SELECTED_MARK, panel, scrollbar, tx_log};
use crate::tui::state::{Focus, UiState};
use crate::tui::transactions::TxSummary;

/// "10:00:01.004"
pub(super) const TIME_WIDTH: u16 = 12;
/// "truncate"
pub(super) const OP_WIDTH: u16 = 8;
pub(super) const TABLE_WIDTH: (u16, u16) = (6, 28);
pub(super) const KEY_WIDTH: (u16, u16) = (4, 24);
const LISTENER_WIDTH: (u16, u16) = (4, 16);

pub fn render(frame: &mut Frame, area: Rect, state: &UiState, data: &FrameData) {
    let theme = data.info.theme;
    let log = data.log;
    let focused = state.focus == Focus::Log && state.popup.is_none();

    let mut title = vec![
        Span::styled(" Event log ", theme.title()),
        Span::styled(
            format!(
                "{}/{} · {} evicted ",
                format::count(log.held as u64),
                format::count(data.info.log_capacity as u64),
                format::count(log.evicted)
            ),
            theme.dim(),
        ),
    ];
    if data.filter_error.is_some() {
        // The log's body says why.
        title.push(Span::styled(
            format!("· filter {:?} not understood ", state.filter.trim()),
            theme.error(),
        ));
    } else if !state.filter.trim().is_empty() {
        let matches = if log.in_view == 1 { "match" } else { "matches" };
        title.push(Span::styled(
            format!(
                "· filter {:?}: {} {matches}{} ",
                state.filter.trim(),
                format::count(log.in_view as u64),
                if log.scanning { ", searching…" } else { "" }
            ),
            theme.key(),
        ));
    }
    let follow = if state.log.follow {
        Span::styled(" following ", theme.notice())
    } else {
        Span::styled(" not following: End follows ", theme.key())
    };
    let times = Line::styled(" times: captured ", theme.dim());
    let follow = Line::from(follow).right_aligned();
    let block = panel(theme, focused).title(Line::from(title));
    let pinned = pinned_rows(data.pinned, area.height.saturating_sub(2) as usize);
    let (area, block) = if pinned == 0 {
        (area, block.title_bottom(times).title_bottom(follow))
    } else {
        // The pinned rows close the panel, under the scrolling rows.
        let [rows, below] =
            Layout::vertical([Constraint::Fill(1), Constraint::Length(pinned as u16 + 1)])
                .areas(area);
        let closing = panel(theme, focused)
            .borders(Borders::LEFT | Borders::RIGHT | Borders::BOTTOM)
            .title_bottom(times)
            .title_bottom(follow);
        render_pinned(frame, below, closing, &data.pinned[..pinned], data);
        let open = block.borders(Borders::LEFT | Borders::RIGHT | Borders::TOP);
        (rows, open)
    };

    if let Some(grouped) = &log.grouped {
        tx_log::render(frame, area, block, state, data, grouped);
        return;
    }
    if log.rows.is_empty() {
        let text = if let Some(error) = data.filter_error {
            error
        } else if state.filter.trim().is_empty() {
            "waiting for changes…"
        } else if log.scanning {
            "searching…"
        } else {
            "no event matches the filter"
        };
        let empty = Paragraph::new(text)
            .style(theme.dim())
            .alignment(Alignment::Center)
            .block(block);
        frame.render_widget(empty, area);
        return;
    }

    // A change's table and key, a note's subject and what happened, in the same columns.
    let columns: Vec<(String, String)> = log
        .rows
        .iter()
        .map(|(_, entry)| match entry {
            LogEntry::Change(change) => (
                change.table.to_string(),
                match (&change.old_key, &change.key) {
                    (Some(old), Some(new)) => format::key_change(old, new, KEY_WIDTH.1 as usize),
                    _ => format::fields(change.key.as_ref(), None, KEY_WIDTH.1 as usize),
                },
            ),
            LogEntry::Note(note) => {
                let parts = NoteParts::of(note);
                (parts.subject, parts.what)
            }
        })
        .collect();
    let widest = |widths: &mut dyn Iterator<Item = usize>| widths.max().unwrap_or(0) as u16;
    let table_width = widest(&mut columns.iter().map(|(table, _)| table.width()))
        .clamp(TABLE_WIDTH.0, TABLE_WIDTH.1);
    let key_width =
        widest(&mut columns.iter().map(|(_, key)| key.width())).clamp(KEY_WIDTH.0, KEY_WIDTH.1);
    // Two listeners on one table: say which one each row is from.
    let listener_width = ambiguous(data).then(|| {
        widest(
            &mut log
                .rows
                .iter()
                .map(|(_, entry)| entry_identifier(entry).width()),
        )
        .clamp(LISTENER_WIDTH.0, LISTENER_WIDTH.1)
    });
    let used = SELECTED_MARK.width() as u16
        + TIME_WIDTH
        + OP_WIDTH
        + table_width
        + key_width
        + listener_width.map_or(0, |width| width + 1)
        + 4;
    let preview_width = area.width.saturating_sub(used + 2) as usize;

    let marks = highlights(&state.filter);
    let mark = |text: String, base: Style| highlighted(text, &marks, base, theme.changed());
    let rows = log
        .rows
        .iter()
        .zip(&columns)
        .map(|((_, entry), (table, key))| {
            let listener = listener_width.map(|width| {
                Cell::from(Span::styled(
                    format::ellipsize(entry_identifier(entry), width as usize).into_owned(),
                    theme.label(),
                ))
            });
            let change = match entry {
                LogEntry::Change(change) => change,
                LogEntry::Note(note) => {
                    return note_row(note, listener, (table, key), preview_width, data);
                }
            };
            Row::new(listener.into_iter().chain([
                Cell::from(Span::styled(
                    format::clock(&change.captured_at, data.info.zone),
                    theme.dim(),
                )),
                Cell::from(Span::styled(change.op.as_str(), theme.op(change.op))),
                Cell::from(mark(
                    format::ellipsize(table, table_width as usize).into_owned(),
                    Style::new(),
                )),
                Cell::from(mark(
                    format::ellipsize(key, key_width as usize).into_owned(),
                    theme.key(),
                )),
                Cell::from(mark(
                    format::ellipsize(&preview(change, preview_width), preview_width).into_owned(),
                    Style::new(),
                )),
            ]))
        });
    let widths = listener_width.map(Constraint::Length).into_iter().chain([
        Constraint::Length(TIME_WIDTH),
        Constraint::Length(OP_WIDTH),
        Constraint::Length(table_width),
        Constraint::Length(key_width),
        Constraint::Fill(1),
    ]);
    let table = Table::new(rows, widths)
        .block(block)
        .highlight_symbol(SELECTED_MARK)
        // The mark's column stays, so rows do not shift when the cursor shows or hides.
        .highlight_spacing(HighlightSpacing::Always)
        .row_highlight_style(theme.selected(focused));
    // While following with the focus elsewhere, the cursor would only flicker down the rows.
    let highlight = focused || !state.log.follow;
    let selected = log
        .rows
        .iter()
        .position(|(number, _)| highlight && Some(*number) == log.selected);
    frame.render_stateful_widget(table, area, &mut TableState::new().with_selected(selected));
    scrollbar(
        frame,
        area,
        theme,
        (log.in_view, log.window.rows, log.window.top),
    );
}

/// Pinned rows at most: the newest streamed transactions beyond are left out.
const PINNED_MAX: usize = 3;

/// Rows the pinned streamed transactions take out of `log_rows`: one each, never more than
/// half of them.
pub fn pinned_rows(pinned: &[TxSummary], log_rows: usize) -> usize {
    pinned.len().min(PINNED_MAX).min(log_rows / 2)
}

/// Streamed transactions under the log's rows, in the grouped view's shape: `⏵ tx 901 ·
/// running · 180,000 changes so far · public.events`, a rolled-back one in the warning style.
fn render_pinned(
    frame: &mut Frame,
    area: Rect,
    block: ratatui::widgets::Block,
    pinned: &[TxSummary],
    data: &FrameData,
) {
    let theme = data.info.theme;
    let width = block.inner(area).width as usize;
    let lines: Vec<Line> = pinned
        .iter()
        .map(|summary| {
            let style = if summary.rolled_back {
                theme.warning()
            } else {
                theme.notice()
            };
            let mut text = summary.describe(data.info.zone);
            if data.listeners.len() > 1 {
                text.push_str(&format!(" · {}", summary.listener));
            }
            let room = width.saturating_sub(SELECTED_MARK.width() + 2);
            Line::from(vec![
                Span::raw(" ".repeat(SELECTED_MARK.width())),
                Span::styled("⏵ ", theme.dim()),
                Span::styled(format::ellipsize(&text, room).into_owned(), style),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// `text` in `base` style, the parts equal (ignoring ASCII case) to one of `marks` in `mark`.
fn highlighted(text: String, marks: &[String], base: Style, mark: Style) -> Line<'static> {
    if marks.is_empty() {
        return Line::from(Span::styled(text, base));
    }
    let mut spans = Vec::new();
    let (mut plain_from, mut at) = (0, 0);
    while at < text.len() {
        let found = marks.iter().find(|needle| {
            text.get(at..at + needle.len())
                .is_some_and(|part| part.eq_ignore_ascii_case(needle))
        });
        match found {
            Some(needle) => {
                if plain_from < at {
                    spans.push(Span::styled(text[plain_from..at].to_string(), base));
                }
                spans.push(Span::styled(text[at..at + needle.len()].to_string(), mark));
                at += needle.len();
                plain_from = at;
            }
            None => at += text[at..].chars().next().map_or(1, char::len_utf8),
        }
    }
    if plain_from < text.len() {
        spans.push(Span::styled(text[plain_from..].to_string(), base));
    }
    Line::from(spans)
}

/// A note's row, in the change columns: when, its kind where a change has its op (styled
/// apart: an error as one), subject and what happened, then its text.
fn note_row<'a>(
    note: &Note,
    listener: Option<Cell<'a>>,
    (subject, what): (&str, &str),
    text_width: usize,
    data: &FrameData,
) -> Row<'a> {
    let theme = data.info.theme;
    let parts = NoteParts::of(note);
    let style = match note.kind {
        NoteKind::Error { .. } => theme.error(),
        _ => theme.notice(),
    };
    Row::new(listener.into_iter().chain([
        Cell::from(Span::styled(
            format::clock(&note.captured_at, data.info.zone),
            theme.dim(),
        )),
        Cell::from(Span::styled(parts.kind, style)),
        Cell::from(Span::styled(subject.to_string(), style)),
        Cell::from(Span::styled(what.to_string(), style)),
        Cell::from(Span::styled(
            format::ellipsize(&parts.text, text_width).into_owned(),
            style,
        )),
    ]))
}

/// The listener's identifier: its identity up to the `/` (`orders` of `orders/public.orders`).
fn identifier(identity: &str) -> &str {
    identity.split_once('/').map_or(identity, |(name, _)| name)
}

fn entry_identifier(entry: &LogEntry) -> &str {
    match entry {
        LogEntry::Change(change) => identifier(change.identity()),
        LogEntry::Note(note) => identifier(&note.listener),
    }
}

/// Whether a table in view has changes from more than one listener, going by the rows in
/// view and each listener's tables.
fn ambiguous(data: &FrameData) -> bool {
    let mut first_listener: HashMap<&str, &str> = HashMap::new();
    let from_listeners = data.listeners.iter().flat_map(|listener| {
        let tables = listener.tables.iter().map(|counts| &*counts.table);
        tables.map(move |table| (table, &*listener.identity))
    });
    let from_rows = data
        .log
        .rows
        .iter()
        .filter_map(|(_, entry)| entry.change())
        .map(|change| (&*change.table, change.identity()));
    let mut shared: Vec<&str> = Vec::new();
    for (table, identity) in from_listeners.chain(from_rows) {
        let first = *first_listener.entry(table).or_insert(identity);
        if first != identity {
            shared.push(table);
        }
    }
    data.log
        .rows
        .iter()
        .filter_map(|(_, entry)| entry.change())
        .any(|change| shared.contains(&&*change.table))
}

/// What a change did, in about `width` columns: the fields an update changed (old → new), an
/// insert's row, a delete's old row.
pub(super) fn preview(change: &Change, width: usize) -> String {
    match change.op {
        Op::Insert => format::fields(change.after.as_ref(), change.key.as_ref(), width),
        Op::Delete => format::fields(change.before.as_ref(), change.key.as_ref(), width),
        Op::Truncate => String::new(),
        Op::Update => match (
            &change.before,
            &change.after,
            change.extensions.get("update"),
        ) {
            (Some(before), Some(after), _) => {
                let mut out = String::new();
                for name in changed_fields(change) {
                    if out.len() > width {
                        break;
                    }
                    let value = |row: &crate::change::Row| {
                        row.get(name)
                            .map_or_else(|| "∅".to_string(), format::compact)
                    };
                    if !out.is_empty() {
                        out.push(' ');
                    }
                    out.push_str(&format!("{name}: {}→{}", value(before), value(after)));
                }
                out
            }
            (_, _, Some(update)) => {
                let mut out = String::new();
                if let Some(updated) = update.get("updated").filter(|u| !is_empty(u)) {
                    out.push_str("set ");
                    out.push_str(&format::value_fields(updated, width));
                }
                if let Some(removed) = update.get("removed").filter(|r| !is_empty(r)) {
                    if !out.is_empty() {
                        out.push(' ');
                    }
                    out.push_str("unset ");
                    out.push_str(&format::compact(removed));
                }
                out
            }
            (_, after, None) => format::fields(after.as_ref(), change.key.as_ref(), width),
        },
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Object(fields) => fields.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Null => true,
        _ => false,
    }
}
