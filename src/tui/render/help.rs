//! The help screen: where the logs and the config are, then every key binding by context,
//! straight from the bindings table.

use ratatui::Frame;
use ratatui::layout::{Margin, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use crate::tui::format;
use crate::tui::frame::FrameData;
use crate::tui::keys::{self, BINDINGS, Context};
use crate::tui::render::{centered, panel, scrollbar};

const KEYS_WIDTH: usize = 16;

fn area(screen: Rect) -> Rect {
    centered(
        screen,
        100.min(screen.width.saturating_sub(4)),
        screen.height.saturating_sub(2),
    )
}

pub fn scroll_extent(screen: Rect, data: &FrameData) -> (usize, usize) {
    let inner = area(screen).inner(Margin::new(1, 1));
    (
        lines(data, inner.width as usize).len(),
        inner.height as usize,
    )
}

pub fn render(frame: &mut Frame, scroll: usize, data: &FrameData) {
    let theme = data.info.theme;
    let area = area(frame.area());
    let block = panel(theme, true).title(Span::styled(" Help ", theme.title()));
    let inner = block.inner(area);
    let lines = lines(data, inner.width as usize);
    let extent = (lines.len(), inner.height as usize, scroll);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .scroll((scroll.min(u16::MAX as usize) as u16, 0)),
        area,
    );
    scrollbar(frame, area, theme, extent);
}

fn lines<'a>(data: &FrameData, width: usize) -> Vec<Line<'a>> {
    let theme = data.info.theme;
    let info = data.info;
    let log_file = info
        .log_file
        .as_ref()
        .map_or_else(|| "(none)".to_string(), |path| path.display().to_string());
    let fact = |label: &'static str, value: String| {
        Line::from(vec![
            Span::styled(format!(" {label:<KEYS_WIDTH$}"), theme.label()),
            Span::raw(value),
        ])
    };
    let mut lines = vec![
        Line::styled(
            format!(
                " cdc-tui {}: watch database change data capture live",
                env!("CARGO_PKG_VERSION")
            ),
            theme.title(),
        ),
        fact("log file", log_file),
        fact("config", info.config_path.display().to_string()),
    ];
    let description_width = width.saturating_sub(KEYS_WIDTH + 3).max(10);
    for context in Context::ALL {
        let mut bindings = BINDINGS.iter().filter(|b| b.context == context).peekable();
        if bindings.peek().is_none() {
            continue;
        }
        lines.push(Line::default());
        lines.push(Line::styled(format!(" {}", context.title()), theme.title()));
        for binding in bindings {
            let wrapped = format::wrap(binding.description, description_width);
            for (at, text) in wrapped.into_iter().enumerate() {
                let keys = if at == 0 {
                    keys::keys_label(binding)
                } else {
                    String::new()
                };
                lines.push(Line::from(vec![
                    Span::styled(format!("   {keys:<KEYS_WIDTH$}"), theme.key()),
                    Span::raw(text),
                ]));
            }
        }
    }
    lines
}
