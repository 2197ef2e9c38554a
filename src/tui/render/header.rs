//! The top line: the databases, the sinks' states (`nats: running`, `nats: retrying —
//! connection refused (nats://127.0.0.1:4222)`), the changes so far and the changes per
//! second.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use std::sync::atomic::Ordering;

use crate::replay::ReplayProgress;
use crate::tui::format;
use crate::tui::frame::FrameData;
use unicode_width::UnicodeWidthStr;

/// Seconds of total rate the header's sparkline shows.
const RATE_HISTORY: usize = 20;

pub fn render(frame: &mut Frame, area: Rect, data: &FrameData) {
    let theme = data.info.theme;
    let rates = data.rates.total();
    let rate = rates.back().copied().unwrap_or(0);
    let right = Line::from(vec![
        Span::styled(format::count(data.timings.changes), theme.number()),
        Span::raw(" changes  "),
        Span::styled(format::rate(rate), theme.number()),
        Span::raw(" "),
        Span::styled(
            format::sparkline(rates.iter().copied(), RATE_HISTORY),
            theme.sparkline(),
        ),
        Span::raw(" "),
    ]);

    let badge = Span::styled(" cdc-tui ", theme.title().add_modifier(Modifier::REVERSED));
    let databases = if let Some(replay) = &data.info.replay {
        replay_status(replay)
    } else if data.info.databases.is_empty() {
        "no databases".to_string()
    } else {
        data.info
            .databases
            .iter()
            .map(|d| format!("{} ({})", d.name, d.kind.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let room = (area.width as usize).saturating_sub(right.width() + badge.width() + 3);
    // The sinks' states come first: a sink retrying is news, the databases are not.
    let sinks: Vec<(String, ratatui::style::Style)> = data
        .sinks
        .iter()
        .map(|sink| {
            let mut text = format!("{}: {}", sink.name, sink.state.as_str());
            if let Some(reason) = &sink.reason {
                text.push_str(&format!(" — {reason}"));
            }
            (text, theme.state(sink.state))
        })
        .collect();
    let sinks_width: usize = sinks.iter().map(|(text, _)| text.width() + 3).sum();
    // The databases keep a few columns, enough to tell which.
    let databases_room = room - sinks_width.min(room.saturating_sub(6));
    let databases = format::ellipsize(&databases, databases_room).into_owned();
    let mut left = vec![
        badge,
        Span::raw(" "),
        Span::styled(databases.clone(), theme.label()),
    ];
    let mut rest = room.saturating_sub(databases.width());
    for (text, style) in sinks {
        if rest < 4 {
            break;
        }
        left.push(Span::styled(" · ", theme.dim()));
        let text = format::ellipsize(&text, rest - 3).into_owned();
        rest = rest.saturating_sub(text.width() + 3);
        left.push(Span::styled(text, style));
    }
    let left = Line::from(left);
    frame.render_widget(Paragraph::new(left), area);
    frame.render_widget(Paragraph::new(right).right_aligned(), area);
}

/// `replay events.jsonl · 45% · line 1,234 · 5,000 changes`, then `paused`, `done` or why it
/// stopped.
fn replay_status(replay: &ReplayProgress) -> String {
    let name = replay.file.file_name().map_or_else(
        || replay.file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let read = replay.bytes_read.load(Ordering::Relaxed);
    let percent = (read * 100).checked_div(replay.total_bytes).unwrap_or(100);
    let mut text = format!(
        "replay {name} · {percent}% · line {} · {} changes",
        format::count(replay.lines.load(Ordering::Relaxed)),
        format::count(replay.changes.load(Ordering::Relaxed))
    );
    if let Some(error) = replay.error() {
        text = format!("replay {name} stopped: {error}");
    } else if replay.done.load(Ordering::Relaxed) {
        text.push_str(" · done");
    } else if replay.paused.load(Ordering::Relaxed) {
        text.push_str(" · paused (space resumes)");
    }
    text
}
