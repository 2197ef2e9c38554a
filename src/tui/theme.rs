//! Styles. With `NO_COLOR` set (and not empty, see no-color.org) the UI uses no colour at all,
//! only bold, reverse, underline and dim.

use ratatui::style::{Color, Modifier, Style};

use crate::change::Op;
use crate::registry::ListenerState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    color: bool,
}

impl Theme {
    pub const COLOR: Theme = Theme { color: true };
    pub const NO_COLOR: Theme = Theme { color: false };

    pub fn from_env() -> Theme {
        match std::env::var_os("NO_COLOR") {
            Some(value) if !value.is_empty() => Theme::NO_COLOR,
            _ => Theme::COLOR,
        }
    }

    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    pub fn op(self, op: Op) -> Style {
        let color = match op {
            Op::Insert => Color::Green,
            Op::Update => Color::Yellow,
            Op::Delete => Color::Red,
            Op::Truncate => Color::Magenta,
        };
        self.fg(color)
    }

    pub fn state(self, state: ListenerState) -> Style {
        match state {
            ListenerState::Starting => self.fg(Color::Cyan),
            ListenerState::Running => self.fg(Color::Green),
            ListenerState::Paused => self.fg(Color::Yellow),
            ListenerState::Retrying => self.fg(Color::Magenta).add_modifier(Modifier::BOLD),
            ListenerState::Stopped => self.dim(),
            ListenerState::Failed => self.fg(Color::Red).add_modifier(Modifier::BOLD),
        }
    }

    pub fn title(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    pub fn dim(self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }

    /// Column headings and field names.
    pub fn label(self) -> Style {
        self.fg(Color::LightBlue).add_modifier(Modifier::BOLD)
    }

    pub fn key(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn number(self) -> Style {
        self.fg(Color::Cyan)
    }

    pub fn sparkline(self) -> Style {
        self.fg(Color::Cyan)
    }

    pub fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    /// A figure past its warning threshold.
    pub fn warning(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    pub fn notice(self) -> Style {
        self.fg(Color::Green)
    }

    /// A field the change touched, in the detail view.
    pub fn changed(self) -> Style {
        if self.color {
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        }
    }

    /// The selected row: reversed when its panel has the focus, else only bold.
    pub fn selected(self, focused: bool) -> Style {
        if focused {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        }
    }

    pub fn border(self, focused: bool) -> Style {
        if focused {
            self.fg(Color::Cyan)
        } else {
            self.dim()
        }
    }
}
