//! The bottom line: the filter being typed, or the last action's note, then the key hints of
//! the current mode (from the bindings table), "q quit ? help" kept at the right.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::tui::format;
use crate::tui::frame::FrameData;
use crate::tui::keys::{self, Context, Hint};
use crate::tui::state::{Mode, UiState};
use crate::tui::theme::Theme;

pub fn render(frame: &mut Frame, area: Rect, state: &UiState, data: &FrameData) {
    let theme = data.info.theme;
    let contexts = state.mode().contexts();
    let (screen, local): (Vec<Context>, Vec<Context>) = contexts
        .iter()
        .partition(|c| matches!(c, Context::Screen | Context::Global));
    let right = hint_spans(&keys::hints(&screen), theme, usize::MAX);
    let right_width: usize = right.iter().map(Span::width).sum();
    let width = area.width as usize;

    // A dialog's keys show instead of an older note, so it always says how to use it.
    let dialog = matches!(
        state.mode(),
        Mode::AddDialog | Mode::Confirm | Mode::ExportPath
    );
    let message = state.message.as_ref().filter(|_| !dialog);
    let mut left = Vec::new();
    if state.mode() == Mode::Filter {
        left.push(Span::styled("/", theme.key()));
        left.push(Span::raw(state.filter.clone()));
        left.push(Span::styled("▏", theme.key()));
    } else if let Some(message) = message {
        let style = if message.is_error {
            theme.error()
        } else {
            theme.notice()
        };
        let room = width.saturating_sub(right_width + 2);
        left.push(Span::styled(
            format::ellipsize(&message.text, room).into_owned(),
            style,
        ));
    }
    let used: usize = left.iter().map(Span::width).sum::<usize>() + usize::from(!left.is_empty());
    let room = width.saturating_sub(used + right_width);
    if !left.is_empty() {
        left.push(Span::raw(" "));
    }
    if message.is_none() || state.mode() == Mode::Filter {
        left.extend(hint_spans(&keys::hints(&local), theme, room));
    }
    frame.render_widget(Paragraph::new(Line::from(left)), area);
    frame.render_widget(Paragraph::new(Line::from(right)).right_aligned(), area);
}

/// Hints as "key label" pairs, as many as fit in `room` columns.
fn hint_spans(hints: &[Hint], theme: Theme, room: usize) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    let mut used = 0;
    for hint in hints {
        let width = hint.keys.chars().count() + hint.label.len() + 3;
        if used + width > room {
            break;
        }
        used += width;
        spans.push(Span::styled(format!(" {}", hint.keys), theme.key()));
        spans.push(Span::styled(format!(" {} ", hint.label), theme.dim()));
    }
    spans
}
