//! The event log grouped by transaction (`t`): one row per transaction (`▸ tx 812 · 12:00:01.123
//! · 5 changes · orders +1, order_items +3` and its messages as a label), its changes under it
//! when expanded, changes without a transaction as in the plain log.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, HighlightSpacing, Paragraph, Row, Table, TableState};
use unicode_width::UnicodeWidthStr;

use crate::tui::format;
use crate::tui::frame::{FrameData, GroupedLine};
use crate::tui::render::log::{KEY_WIDTH, OP_WIDTH, TABLE_WIDTH, TIME_WIDTH, preview};
use crate::tui::render::{SELECTED_MARK, scrollbar};
use crate::tui::state::{Focus, UiState};

/// How far a transaction's changes are indented.
const INDENT: u16 = 2;

pub fn render(
    frame: &mut Frame,
    area: Rect,
    block: Block,
    state: &UiState,
    data: &FrameData,
    lines: &[GroupedLine],
) {
    let theme = data.info.theme;
    let log = data.log;
    let focused = state.focus == Focus::Log && state.popup.is_none();
    if lines.is_empty() {
        let text = if state.filter.trim().is_empty() {
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
    let changes = || {
        lines.iter().filter_map(|line| match line {
            GroupedLine::Change { change, .. } => Some(change),
            GroupedLine::Tx { .. } => None,
        })
    };
    let keys = |change: &crate::change::Change| match (&change.old_key, &change.key) {
        (Some(old), Some(new)) => format::key_change(old, new, KEY_WIDTH.1 as usize),
        _ => format::fields(change.key.as_ref(), None, KEY_WIDTH.1 as usize),
    };
    let table_width = (changes().map(|c| c.table.width()).max().unwrap_or(0) as u16)
        .clamp(TABLE_WIDTH.0, TABLE_WIDTH.1);
    let key_width = (changes().map(|c| keys(c).width()).max().unwrap_or(0) as u16)
        .clamp(KEY_WIDTH.0, KEY_WIDTH.1);
    // Members are indented under their transaction.
    let used =
        SELECTED_MARK.width() as u16 + INDENT + TIME_WIDTH + OP_WIDTH + table_width + key_width + 4;
    let preview_width = area.width.saturating_sub(used + 2) as usize;
    let tx_width = area.width.saturating_sub(SELECTED_MARK.width() as u16 + 2) as usize;

    // One column: a transaction's row runs across the change columns, which are padded here.
    let pad = |text: &str, width: u16| {
        let text = format::ellipsize(text, width as usize);
        let fill = (width as usize).saturating_sub(text.width());
        format!("{text}{} ", " ".repeat(fill))
    };
    let rows = lines.iter().map(|line| match line {
        GroupedLine::Tx {
            summary, expanded, ..
        } => {
            let fold = if *expanded { "▾ " } else { "▸ " };
            let style = if summary.committed.is_some() {
                theme.title()
            } else {
                theme.notice()
            };
            let mut text = summary.describe(data.info.zone);
            let mut label = String::new();
            for message in &summary.labels {
                label.push_str(&format!(" «{message}»"));
            }
            let room = tx_width.saturating_sub(fold.width());
            text = format::ellipsize(&text, room).into_owned();
            let label = format::ellipsize(&label, room.saturating_sub(text.width())).into_owned();
            // With several listeners, which one's transaction it is.
            let listener = if data.listeners.len() > 1 {
                let room = room.saturating_sub(text.width() + label.width());
                format::ellipsize(&format!(" · {}", summary.listener), room).into_owned()
            } else {
                String::new()
            };
            Row::new([Cell::from(Line::from(vec![
                Span::styled(fold, theme.dim()),
                Span::styled(text, style),
                Span::styled(label, theme.key()),
                Span::styled(listener, theme.dim()),
            ]))])
        }
        GroupedLine::Change { change, member, .. } => {
            let indent = if *member { "  " } else { "" };
            Row::new([Cell::from(Line::from(vec![
                Span::raw(indent),
                Span::styled(
                    pad(
                        &format::clock(&change.captured_at, data.info.zone),
                        TIME_WIDTH,
                    ),
                    theme.dim(),
                ),
                Span::styled(pad(change.op.as_str(), OP_WIDTH), theme.op(change.op)),
                Span::raw(pad(&change.table, table_width)),
                Span::styled(pad(&keys(change), key_width), theme.key()),
                Span::raw(
                    format::ellipsize(&preview(change, preview_width), preview_width).into_owned(),
                ),
            ]))])
        }
    });
    let table = Table::new(rows, [Constraint::Fill(1)])
        .block(block)
        .highlight_symbol(SELECTED_MARK)
        .highlight_spacing(HighlightSpacing::Always)
        .row_highlight_style(theme.selected(focused));
    let highlight = focused || !state.log.follow;
    let selected = lines
        .iter()
        .position(|line| highlight && Some(line.row()) == log.selected);
    frame.render_stateful_widget(table, area, &mut TableState::new().with_selected(selected));
    scrollbar(
        frame,
        area,
        theme,
        (log.in_view, log.window.rows, log.window.top),
    );
}
