//! The add-a-listener dialog: the choices made so far, then the current step's list or field,
//! then what went wrong, if anything.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, List, ListState, Paragraph};

use crate::tui::add_dialog::{AddDialog, Step, Tables};
use crate::tui::frame::FrameData;
use crate::tui::render::{SELECTED_MARK, centered, panel};
use crate::tui::theme::Theme;

const WIDTH: u16 = 72;
const HEIGHT: u16 = 20;
const LABEL_WIDTH: usize = 10;

pub fn render(frame: &mut Frame, dialog: &AddDialog, data: &FrameData) {
    let theme = data.info.theme;
    let area = centered(frame.area(), WIDTH, HEIGHT);
    let block = panel(theme, true).title(Span::styled(" Add a listener ", theme.title()));
    let inner = block.inner(area);
    frame.render_widget(Clear, area);
    frame.render_widget(block, area);

    let [choices, _, body, error] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(2),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(choice_lines(dialog, theme)), choices);
    if let Some(message) = &dialog.error {
        frame.render_widget(
            Paragraph::new(Line::styled(message.as_str(), theme.error()))
                .wrap(ratatui::widgets::Wrap { trim: true }),
            error,
        );
    }

    let field = |label: &str, text: &str| {
        Line::from(vec![
            Span::styled(format!("{label}: "), theme.label()),
            Span::raw(text.to_string()),
            Span::styled("▏", theme.key()),
        ])
    };
    match dialog.step {
        Step::Database => {
            if dialog.databases.is_empty() {
                let note = "no databases: add a [[database]] to the config file";
                frame.render_widget(Paragraph::new(note).style(theme.dim()), body);
                return;
            }
            let items = dialog
                .databases
                .iter()
                .map(|d| format!("{:<24} {}", d.name, d.kind.name()));
            render_list(frame, body, items, Some(dialog.database), theme);
        }
        Step::Table => {
            let [filter, list] =
                Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(body);
            frame.render_widget(field("table", &dialog.table_filter), filter);
            let database = dialog.database().map_or("", |d| d.name.as_str());
            let note = match &dialog.tables {
                Tables::Loading => Some(format!("reading the tables of {database}…")),
                Tables::Failed(message) => Some(format!(
                    "cannot list the tables: {message}\ntype the table's name and press Enter"
                )),
                Tables::Loaded(_) => None,
            };
            let matching = dialog.matching_tables();
            let note = note.or_else(|| {
                dialog.typed_scope().map(|scope| {
                    format!(
                        "Enter watches the scope {scope}: the {} tables below now, and those \
                         that come later",
                        matching.len()
                    )
                })
            });
            if dialog.typed_scope().is_some() && !matching.is_empty() {
                let [note_area, rest] =
                    Layout::vertical([Constraint::Length(2), Constraint::Fill(1)]).areas(list);
                frame.render_widget(
                    Paragraph::new(note.unwrap_or_default())
                        .style(theme.dim())
                        .wrap(ratatui::widgets::Wrap { trim: true }),
                    note_area,
                );
                let items = matching.iter().map(|t| t.to_string());
                render_list(frame, rest, items, None, theme);
                return;
            }
            match note {
                Some(note) => frame.render_widget(
                    Paragraph::new(note)
                        .style(theme.dim())
                        .wrap(ratatui::widgets::Wrap { trim: true }),
                    list,
                ),
                None if matching.is_empty() => frame.render_widget(
                    Paragraph::new(format!(
                        "no table matches: Enter takes {:?} as typed (a scope like public.* \
                         watches every table it matches)",
                        dialog.table_filter
                    ))
                    .wrap(ratatui::widgets::Wrap { trim: true })
                    .style(theme.dim()),
                    list,
                ),
                None => render_list(
                    frame,
                    list,
                    matching.iter().map(|t| t.to_string()),
                    Some(dialog.table_selected),
                    theme,
                ),
            }
        }
        Step::Strategy => {
            let items = dialog
                .strategies()
                .iter()
                .map(|s| format!("{:<14} {}", s.name(), s.note()));
            render_list(frame, body, items, Some(dialog.strategy), theme);
        }
        Step::Option(at) => {
            let Some(prompt) = dialog.prompts().get(at) else {
                return;
            };
            let value = dialog.options.get(at).map_or("", String::as_str);
            let last = at + 1 == dialog.prompts().len();
            let lines = vec![
                field(&prompt.key.replace('_', " "), value),
                Line::default(),
                Line::styled(prompt.help, theme.dim()),
                Line::styled(
                    if last {
                        "Enter adds the listener"
                    } else {
                        "Enter goes on"
                    },
                    theme.dim(),
                ),
            ];
            frame.render_widget(Paragraph::new(lines), body);
        }
    }
}

/// The steps so far: done ones with their choice, the current one highlighted, later ones dim.
fn choice_lines(dialog: &AddDialog, theme: Theme) -> Vec<Line<'static>> {
    let strategy = dialog.chosen_strategy();
    let mut steps = vec![
        (
            Step::Database,
            "database",
            dialog
                .database()
                .map(|d| format!("{} ({})", d.name, d.kind.name())),
        ),
        (Step::Table, "table", Some(dialog.table.clone())),
        (
            Step::Strategy,
            "strategy",
            strategy.map(|s| s.name().to_string()),
        ),
    ];
    for (at, prompt) in dialog.prompts().iter().enumerate() {
        steps.push((
            Step::Option(at),
            prompt.label,
            dialog.options.get(at).cloned(),
        ));
    }
    let current = steps
        .iter()
        .position(|(step, ..)| *step == dialog.step)
        .unwrap_or(0);
    steps
        .into_iter()
        .enumerate()
        .map(|(at, (_, label, choice))| {
            let label = format!("{label:<LABEL_WIDTH$}");
            if at < current {
                Line::from(vec![
                    Span::styled(label, theme.label()),
                    Span::raw(choice.unwrap_or_default()),
                ])
            } else if at == current {
                Line::from(vec![
                    Span::styled(label, theme.key()),
                    Span::styled("◀ choose", theme.key()),
                ])
            } else {
                Line::styled(label, theme.dim())
            }
        })
        .collect()
}

fn render_list(
    frame: &mut Frame,
    area: ratatui::layout::Rect,
    items: impl Iterator<Item = String>,
    selected: Option<usize>,
    theme: Theme,
) {
    let list = List::new(items)
        .highlight_symbol(SELECTED_MARK)
        .highlight_style(theme.selected(true));
    let mut state = ListState::default().with_selected(selected);
    frame.render_stateful_widget(list, area, &mut state);
}
