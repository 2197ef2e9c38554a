//! The popup of a whole transaction: its facts (listener, commit, tables, messages), then
//! every change with what it did to its row, changed fields highlighted. A note of the plain
//! log (schema change, error, message) shows the same way: facts, then its text.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Margin, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use crate::tui::format;
use crate::tui::frame::FrameData;
use crate::tui::render::{centered, panel, scrollbar};
use crate::tui::theme::Theme;
use crate::tui::transactions::{TxLine, TxView};

const LABEL_WIDTH: usize = 10;

/// As tall as the content needs, at most the screen less a row above and below.
fn area(screen: Rect, view: &TxView) -> Rect {
    let wanted = 2 + view.facts.len() + 1 + view.lines.len();
    let height = u16::try_from(wanted).unwrap_or(u16::MAX);
    centered(
        screen,
        screen.width.saturating_sub(4),
        height.min(screen.height.saturating_sub(2)),
    )
}

/// The facts and, under a blank row, the scrolling changes.
fn regions(inner: Rect, view: &TxView) -> (Rect, Rect) {
    let [facts, _, body] = Layout::vertical([
        Constraint::Length(view.facts.len() as u16),
        Constraint::Length(1),
        Constraint::Fill(1),
    ])
    .areas(inner);
    (facts, body)
}

pub fn scroll_extent(screen: Rect, view: &TxView) -> (usize, usize) {
    let (_, body) = regions(area(screen, view).inner(Margin::new(1, 1)), view);
    (view.lines.len(), body.height as usize)
}

pub fn render(frame: &mut Frame, view: &TxView, data: &FrameData) {
    let theme = data.info.theme;
    let area = area(frame.area(), view);
    let block = panel(theme, true).title(Line::styled(format!(" {} ", view.title), theme.title()));
    let inner = block.inner(area);
    frame.render_widget(Clear, area);
    frame.render_widget(block, area);
    let (facts, body) = regions(inner, view);
    let room = (inner.width as usize).saturating_sub(LABEL_WIDTH + 1);
    let fact_lines: Vec<Line> = view
        .facts
        .iter()
        .map(|(label, value)| {
            Line::from(vec![
                Span::styled(format!("{label:<LABEL_WIDTH$} "), theme.label()),
                Span::raw(format::ellipsize(value, room).into_owned()),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(fact_lines), facts);
    let width = inner.width as usize;
    let lines: Vec<Line> = view
        .lines
        .iter()
        .skip(view.scroll)
        .take(body.height as usize)
        .map(|line| tx_line(line, theme, width))
        .collect();
    frame.render_widget(Paragraph::new(lines), body);
    scrollbar(
        frame,
        area,
        theme,
        (view.lines.len(), body.height as usize, view.scroll),
    );
}

fn tx_line(line: &TxLine, theme: Theme, width: usize) -> Line<'_> {
    match line {
        TxLine::Change { index, op, text } => Line::from(vec![
            Span::styled(format!("{index:>4} "), theme.dim()),
            Span::styled(format!("{:<8} ", op.as_str()), theme.op(*op)),
            Span::raw(format::ellipsize(text, width.saturating_sub(14)).into_owned()),
        ]),
        TxLine::Field { sign, text } => {
            let text = format::ellipsize(text, width.saturating_sub(8)).into_owned();
            let style = match sign {
                '~' => theme.changed(),
                ' ' => theme.dim(),
                _ => Default::default(),
            };
            Line::from(vec![
                Span::styled(format!("       {sign} "), theme.dim()),
                Span::styled(text, style),
            ])
        }
        TxLine::Blank => Line::default(),
    }
}
