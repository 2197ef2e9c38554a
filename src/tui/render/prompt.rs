//! Small popups that ask something: a yes/no question (stopping a listener that holds a slot),
//! and the path of the file `w` writes.

use ratatui::Frame;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use crate::tui::format;
use crate::tui::frame::FrameData;
use crate::tui::render::{centered, panel};

const WIDTH: u16 = 64;

/// A popup titled `title` with the wrapped `text`, then `last` (the answer line).
fn popup(frame: &mut Frame, title: &str, text: &str, last: Line<'_>, data: &FrameData) {
    let theme = data.info.theme;
    let width = WIDTH.min(frame.area().width.saturating_sub(4));
    let wrapped = format::wrap(text, width.saturating_sub(4) as usize);
    let height = wrapped.len() as u16 + 4;
    let area = centered(frame.area(), width, height);
    let block = panel(theme, true).title(Span::styled(format!(" {title} "), theme.title()));
    let mut lines: Vec<Line> = wrapped
        .into_iter()
        .map(|line| Line::raw(format!(" {line}")))
        .collect();
    lines.push(Line::default());
    lines.push(last);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

pub fn render_confirm(frame: &mut Frame, question: &str, data: &FrameData) {
    let theme = data.info.theme;
    let answer = Line::from(vec![
        Span::styled(" y", theme.key()),
        Span::raw(" yes   "),
        Span::styled("n", theme.key()),
        Span::raw(" no"),
    ]);
    popup(frame, "Are you sure?", question, answer, data);
}

pub fn render_export(frame: &mut Frame, path: &str, data: &FrameData) {
    let theme = data.info.theme;
    let field = Line::from(vec![
        Span::styled(" path: ", theme.label()),
        Span::raw(path.to_string()),
        Span::styled("▏", theme.key()),
    ]);
    let shown = match data.log.in_view {
        1 => "the 1 event".to_string(),
        n => format!("the {} events", format::count(n as u64)),
    };
    let text = format!(
        "Write {shown} the log shows (with the filter, if any) as JSON lines, as headless mode \
         prints them. Enter writes, Esc cancels."
    );
    popup(frame, "Write events to a file", &text, field, data);
}
