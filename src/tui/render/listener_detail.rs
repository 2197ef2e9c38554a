//! The listener detail popup (after `i`): its state with the whole reason, scope and tables,
//! settings (slot, publication, cursor), position, what the source says, lag, where its
//! settings come from, counts, and its recent state changes, every line wrapped to the width.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Margin, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::registry::ListenerSnapshot;
use crate::tui::format;
use crate::tui::frame::FrameData;
use crate::tui::lag::{self, duration};
use crate::tui::render::listeners::level_style;
use crate::tui::render::{centered, clear_around, panel, scrollbar};

/// "10:00:01.004", the history's times.
const LABEL_WIDTH: usize = 12;

fn area(screen: Rect, listener: &ListenerSnapshot, data: &FrameData) -> Rect {
    let width = screen.width.saturating_sub(4).min(110);
    let content = lines(listener, data, width.saturating_sub(2) as usize).len();
    let height = u16::try_from(content + 2).unwrap_or(u16::MAX);
    centered(screen, width, height.min(screen.height.saturating_sub(2)))
}

/// The listener the popup shows, if it is still there.
fn listener<'a>(identity: &str, data: &FrameData<'a>) -> Option<&'a ListenerSnapshot> {
    data.listeners.iter().find(|l| &*l.identity == identity)
}

pub fn scroll_extent(screen: Rect, identity: &str, data: &FrameData) -> (usize, usize) {
    let Some(listener) = listener(identity, data) else {
        return (0, 0);
    };
    let inner = area(screen, listener, data).inner(Margin::new(1, 1));
    (
        lines(listener, data, inner.width as usize).len(),
        inner.height as usize,
    )
}

pub fn render(frame: &mut Frame, identity: &str, scroll: usize, data: &FrameData) {
    let theme = data.info.theme;
    let Some(listener) = listener(identity, data) else {
        return;
    };
    let area = area(frame.area(), listener, data);
    let block = panel(theme, true).title(Line::from(vec![
        Span::styled(format!(" Listener {} ", listener.identity), theme.title()),
        Span::styled(format!("{} ", listener.state), theme.state(listener.state)),
    ]));
    let inner = block.inner(area);
    let lines = lines(listener, data, inner.width as usize);
    let extent = (lines.len(), inner.height as usize, scroll);
    clear_around(frame, area);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .scroll((scroll.min(u16::MAX as usize) as u16, 0)),
        area,
    );
    scrollbar(frame, area, theme, extent);
}

/// `10:00:01.004 (3m ago)`.
fn when(time: &DateTime<Utc>, data: &FrameData) -> String {
    let ago = data.now - *time;
    format!(
        "{} ({} ago)",
        time.with_timezone(&data.info.zone)
            .format("%Y-%m-%d %H:%M:%S%.3f"),
        duration(ago)
    )
}

fn lines(listener: &ListenerSnapshot, data: &FrameData, width: usize) -> Vec<Line<'static>> {
    let theme = data.info.theme;
    let room = width.saturating_sub(LABEL_WIDTH + 2).max(10);
    let mut lines = Vec::new();
    // A fact: its label on the first line, the text wrapped under the text column.
    let fact = |lines: &mut Vec<Line<'static>>, label: &str, text: &str, style: Style| {
        for (at, part) in format::wrap(text, room).into_iter().enumerate() {
            let label = if at == 0 { label } else { "" };
            lines.push(Line::from(vec![
                Span::styled(format!(" {label:<LABEL_WIDTH$} "), theme.label()),
                Span::styled(part, style),
            ]));
        }
    };
    let state_style = theme.state(listener.state);
    fact(
        &mut lines,
        "state",
        &format!("{} since {}", listener.state, when(&listener.since, data)),
        state_style,
    );
    if let Some(reason) = &listener.reason {
        fact(&mut lines, "reason", reason, state_style);
    }
    let config = &listener.config;
    fact(
        &mut lines,
        "source",
        &format!("{} · strategy {}", listener.database, listener.strategy),
        Style::new(),
    );
    let mut scope = listener.table.clone();
    if !config.exclude.is_empty() {
        scope.push_str(&format!(" (except {})", config.exclude.join(", ")));
    }
    fact(&mut lines, "scope", &scope, Style::new());
    if listener.tables.len() > 1
        || listener
            .tables
            .first()
            .is_some_and(|t| *t.table != *listener.table)
    {
        let tables: Vec<String> = listener
            .tables
            .iter()
            .map(|t| format!("{} ({})", t.table, format::count(t.counts.total())))
            .collect();
        fact(&mut lines, "tables", &tables.join(", "), Style::new());
    }
    let settings: Vec<String> = config
        .options
        .iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(text) => text.clone(),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => format!("{other:?}"),
            };
            format!("{key} = {text}")
        })
        .collect();
    fact(
        &mut lines,
        "settings",
        &if settings.is_empty() {
            "the strategy's defaults".to_string()
        } else {
            settings.join(" · ")
        },
        Style::new(),
    );
    fact(
        &mut lines,
        "position",
        listener.position.as_deref().unwrap_or("none yet"),
        Style::new(),
    );
    if let Some(detail) = &listener.detail {
        for part in detail.split("; ") {
            fact(&mut lines, "source says", part, theme.dim());
        }
    }
    for (at, (text, level)) in lag::described(&listener.lag, data.now)
        .into_iter()
        .enumerate()
    {
        fact(
            &mut lines,
            if at == 0 { "lag" } else { "" },
            &text,
            level_style(theme, level),
        );
    }
    let counts = listener.counts;
    fact(
        &mut lines,
        "counts",
        &format!(
            "{} inserts · {} updates · {} deletes · {} truncates",
            format::count(counts.0[0]),
            format::count(counts.0[1]),
            format::count(counts.0[2]),
            format::count(counts.0[3])
        ),
        Style::new(),
    );
    fact(
        &mut lines,
        "config",
        listener
            .config_source
            .as_deref()
            .unwrap_or("added while running (a)"),
        Style::new(),
    );
    lines.push(Line::default());
    lines.push(Line::styled(" history (newest first)", theme.title()));
    for change in listener.history.iter().rev() {
        let clock = format::clock(&change.at, data.info.zone);
        let text = match &change.reason {
            Some(reason) => format!("{}: {reason}", change.state),
            None => change.state.to_string(),
        };
        fact(&mut lines, &clock, &text, theme.state(change.state));
    }
    lines
}
