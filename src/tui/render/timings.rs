//! Flush timings: batches, changes per batch, how long batches waited and how long the sinks
//! took (p50/p95/p99/max), with the recent batches as sparklines. A three-row strip when short,
//! a table over taller charts in the side panel.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};

use crate::pipeline::timings::{BatchTiming, Percentiles};
use crate::tui::format;
use crate::tui::frame::FrameData;
use crate::tui::render::panel;
use crate::tui::theme::Theme;

/// Below this inner height the panel is the strip: one row per measure.
const TABLE_FROM_HEIGHT: u16 = 8;
const LABEL_WIDTH: usize = 10;
const VALUE_WIDTH: usize = 6;

/// One measure: its label, percentiles as text, and its recent values.
struct Measure {
    label: &'static str,
    percentiles: [String; 4],
    recent: Vec<u64>,
}

fn measures(data: &FrameData) -> [Measure; 3] {
    let timings = data.timings;
    let ms = |p: &Percentiles| [p.p50, p.p95, p.p99, p.max].map(format::millis);
    let micros = |pick: fn(&BatchTiming) -> std::time::Duration| {
        timings
            .recent
            .iter()
            .map(|b| pick(b).as_micros() as u64)
            .collect()
    };
    let sizes = &timings.batch_size;
    [
        Measure {
            label: "batch size",
            percentiles: [sizes.p50, sizes.p95, sizes.p99, sizes.max]
                .map(|v| format::count(v as u64)),
            recent: timings.recent.iter().map(|b| b.changes as u64).collect(),
        },
        Measure {
            label: "waited ms",
            percentiles: ms(&timings.waited_ms),
            recent: micros(|b| b.waited),
        },
        Measure {
            label: "flush ms",
            percentiles: ms(&timings.flush_ms),
            recent: micros(|b| b.flush),
        },
    ]
}

pub fn render(frame: &mut Frame, area: Rect, data: &FrameData) {
    let theme = data.info.theme;
    let timings = data.timings;
    let block = panel(theme, false).title(Line::from(vec![
        Span::styled(" Flush ", theme.title()),
        Span::styled(
            format!(
                "{} batches · {} changes ",
                format::count(timings.batches),
                format::count(timings.changes)
            ),
            theme.dim(),
        ),
    ]));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if timings.batches == 0 {
        frame.render_widget(
            Paragraph::new("no batch flushed yet").style(theme.dim()),
            inner,
        );
        return;
    }
    let measures = measures(data);
    if inner.height < TABLE_FROM_HEIGHT {
        render_strip(frame, inner, &measures, theme);
    } else {
        render_table(frame, inner, &measures, theme);
    }
}

/// `batch size  p50    100  p95    100  p99    100  max    100  ▁▂▅▇`
fn render_strip(frame: &mut Frame, area: Rect, measures: &[Measure], theme: Theme) {
    const NAMES: [&str; 4] = ["p50", "p95", "p99", "max"];
    let values_width = LABEL_WIDTH + NAMES.len() * (VALUE_WIDTH + 6);
    let bars = (area.width as usize).saturating_sub(values_width + 1);
    let lines: Vec<Line> = measures
        .iter()
        .map(|measure| {
            let mut spans = vec![Span::styled(
                format!("{:<LABEL_WIDTH$}", measure.label),
                theme.label(),
            )];
            for (name, value) in NAMES.iter().zip(&measure.percentiles) {
                spans.push(Span::styled(format!("  {name} "), theme.dim()));
                spans.push(Span::styled(
                    format!("{value:>VALUE_WIDTH$}"),
                    theme.number(),
                ));
            }
            spans.push(Span::raw(" "));
            spans.push(Span::styled(
                format::sparkline(measure.recent.iter().copied(), bars),
                theme.sparkline(),
            ));
            Line::from(spans)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), area);
}

/// The percentiles as a table, then a chart of recent batches per measure.
fn render_table(frame: &mut Frame, area: Rect, measures: &[Measure], theme: Theme) {
    let [table, charts] =
        Layout::vertical([Constraint::Length(5), Constraint::Fill(1)]).areas(area);
    let mut lines = vec![Line::styled(
        format!(
            "{:LABEL_WIDTH$}{:>w$}{:>w$}{:>w$}{:>w$}",
            "",
            "p50",
            "p95",
            "p99",
            "max",
            w = VALUE_WIDTH + 1
        ),
        theme.dim(),
    )];
    lines.extend(measures.iter().map(|measure| {
        let mut spans = vec![Span::styled(
            format!("{:<LABEL_WIDTH$}", measure.label),
            theme.label(),
        )];
        spans.extend(measure.percentiles.iter().map(|value| {
            Span::styled(format!("{value:>w$}", w = VALUE_WIDTH + 1), theme.number())
        }));
        Line::from(spans)
    }));
    frame.render_widget(Paragraph::new(lines), table);

    // Each measure: a label row and its chart, sharing the height that is left.
    let rows = Layout::vertical([Constraint::Fill(1); 3]).split(charts);
    for (measure, &row) in measures.iter().zip(rows.iter()) {
        let [label, chart] =
            Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(row);
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(measure.label, theme.label()),
                Span::styled(
                    format!(
                        ", last {} batches",
                        measure.recent.len().min(chart.width as usize)
                    ),
                    theme.dim(),
                ),
            ])),
            label,
        );
        let shown = measure.recent.len().saturating_sub(chart.width as usize);
        frame.render_widget(
            Sparkline::default()
                .data(&measure.recent[shown..])
                .style(theme.sparkline()),
            chart,
        );
    }
}
