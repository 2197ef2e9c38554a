//! The detail popup of one change: its facts, then before and after as pretty JSON side by
//! side (stacked when narrow), the fields the change touched highlighted.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Margin, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::change::row_json;
use crate::tui::detail::{DetailView, JsonLine, Mark};
use crate::tui::format;
use crate::tui::frame::FrameData;
use crate::tui::render::{centered, clear_around, panel, scrollbar};
use crate::tui::theme::Theme;

/// Below this inner width, before and after are stacked.
const SIDE_BY_SIDE_FROM: u16 = 80;
const LABEL_WIDTH: usize = 10;

/// As tall as the content needs, at most the screen less a row above and below.
fn area(screen: Rect, view: &DetailView) -> Rect {
    let width = screen.width.saturating_sub(4);
    let side_by_side = width.saturating_sub(2) >= SIDE_BY_SIDE_FROM;
    let wanted =
        2 + fact_count(view) + usize::from(side_by_side) + content_rows(view, side_by_side);
    let height = u16::try_from(wanted).unwrap_or(u16::MAX);
    centered(screen, width, height.min(screen.height.saturating_sub(2)))
}

/// The facts, the heading row (side by side only) and the scrolling body.
fn regions(inner: Rect, view: &DetailView) -> (Rect, Option<Rect>, Rect) {
    let facts = fact_count(view) as u16;
    if inner.width >= SIDE_BY_SIDE_FROM {
        let [facts, headings, body] = Layout::vertical([
            Constraint::Length(facts),
            Constraint::Length(1),
            Constraint::Fill(1),
        ])
        .areas(inner);
        (facts, Some(headings), body)
    } else {
        let [facts, body] =
            Layout::vertical([Constraint::Length(facts), Constraint::Fill(1)]).areas(inner);
        (facts, None, body)
    }
}

pub fn scroll_extent(screen: Rect, view: &DetailView) -> (usize, usize) {
    let inner = area(screen, view).inner(Margin::new(1, 1));
    let (_, headings, body) = regions(inner, view);
    (content_rows(view, headings.is_some()), body.height as usize)
}

fn content_rows(view: &DetailView, side_by_side: bool) -> usize {
    if side_by_side {
        view.before.len().max(view.after.len())
    } else {
        // Both headings and the blank line between.
        view.before.len() + view.after.len() + 3
    }
}

pub fn render(frame: &mut Frame, view: &DetailView, data: &FrameData) {
    let theme = data.info.theme;
    let change = &view.change;
    let area = area(frame.area(), view);
    let block = panel(theme, true).title(Line::from(vec![
        // Counted from 1, as people count.
        Span::styled(format!(" Event #{} ", view.number + 1), theme.title()),
        Span::styled(change.op.as_str(), theme.op(change.op)),
        Span::raw(format!(" {} ", change.table)),
    ]));
    let inner = block.inner(area);
    clear_around(frame, area);
    frame.render_widget(block, area);

    let (facts_area, headings, body) = regions(inner, view);
    let width = inner.width as usize;
    frame.render_widget(Paragraph::new(facts(view, data, width)), facts_area);

    let scroll = (view.scroll.min(u16::MAX as usize) as u16, 0);
    let heading = |text: &'static str| Line::styled(text, theme.label());
    match headings {
        Some(headings) => {
            let halves = Layout::horizontal([Constraint::Fill(1); 2]).spacing(1);
            let [before_heading, after_heading] = headings.layout(&halves);
            frame.render_widget(heading("before"), before_heading);
            frame.render_widget(heading("after"), after_heading);
            let [before, after] = body.layout(&halves);
            frame.render_widget(
                Paragraph::new(json(&view.before, theme)).scroll(scroll),
                before,
            );
            frame.render_widget(
                Paragraph::new(json(&view.after, theme)).scroll(scroll),
                after,
            );
        }
        None => {
            let mut lines = vec![heading("before")];
            lines.extend(json(&view.before, theme));
            lines.push(Line::default());
            lines.push(heading("after"));
            lines.extend(json(&view.after, theme));
            frame.render_widget(Paragraph::new(lines).scroll(scroll), body);
        }
    }
    let content = content_rows(view, headings.is_some());
    scrollbar(
        frame,
        area,
        theme,
        (content, body.height as usize, view.scroll),
    );
}

/// Facts shown above before and after: listener, key, position, times, a MongoDB update
/// description, and what changed.
fn fact_count(view: &DetailView) -> usize {
    4 + usize::from(view.change.extensions.get("update").is_some())
        + usize::from(!view.changed.is_empty())
}

fn facts<'a>(view: &'a DetailView, data: &FrameData, width: usize) -> Vec<Line<'a>> {
    let theme = data.info.theme;
    let change = &view.change;
    let room = width.saturating_sub(LABEL_WIDTH + 1);
    let fact = |label: &'static str, value: String| {
        Line::from(vec![
            Span::styled(format!("{label:<LABEL_WIDTH$} "), theme.label()),
            Span::raw(format::ellipsize(&value, room).into_owned()),
        ])
    };
    let time = |time: &DateTime<Utc>| {
        time.with_timezone(&data.info.zone)
            .format("%Y-%m-%d %H:%M:%S%.3f")
            .to_string()
    };
    let committed = change
        .commit_time
        .as_ref()
        .map_or_else(|| "-".to_string(), time);
    let captured = time(&change.captured_at);
    // The capture's date is the commit's, nearly always: say it once.
    let captured = match captured.split_once(' ') {
        Some((date, clock)) if committed.starts_with(date) => clock.to_string(),
        _ => captured,
    };
    let mut lines = vec![
        fact("listener", change.identity().to_string()),
        fact(
            "key",
            match (&change.old_key, &change.key) {
                (Some(old), Some(new)) => format::key_change(old, new, usize::MAX),
                _ => format::compact(&row_json(change.key.as_ref())),
            },
        ),
        fact("position", change.position.to_string()),
        fact(
            "time",
            format!("committed {committed} · captured {captured}"),
        ),
    ];
    if let Some(update) = change.extensions.get("update") {
        lines.push(fact("update", format::compact(update)));
    }
    if !view.changed.is_empty() {
        lines.push(Line::from(vec![
            Span::styled(format!("{:<LABEL_WIDTH$} ", "changed"), theme.label()),
            Span::styled(view.changed.join(", "), theme.changed()),
        ]));
    }
    lines
}

fn json(lines: &[JsonLine], theme: Theme) -> Vec<Line<'_>> {
    lines
        .iter()
        .map(|line| match line.mark {
            Mark::Plain => Line::raw(format!("  {}", line.text)),
            Mark::Changed => Line::styled(format!("▌ {}", line.text), theme.changed()),
            Mark::Absent => Line::styled(format!("  {}", line.text), theme.dim()),
        })
        .collect()
}
