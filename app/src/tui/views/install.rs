//! `6` Install: every piece's status and what differs; `a` applies, `r` reverts.

use super::{table_block, theme};
use crate::tui::state::{AppState, PieceStatus};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Text};
use ratatui::widgets::{Gauge, Paragraph, Row, Table, TableState};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState) {
    let [table_area, progress_area, log_area] = Layout::vertical([
        Constraint::Min(6),
        Constraint::Length(3),
        Constraint::Length(8),
    ])
    .areas(area);
    let pieces = super::rows::pieces(state);
    let rows = pieces.iter().enumerate().map(|(i, p)| {
        let (status, style, detail) = match &p.status {
            PieceStatus::Present => ("present", theme::good(true), "unchanged".to_owned()),
            PieceStatus::Missing => ("missing", theme::good(false), "will be created".to_owned()),
            PieceStatus::Drifted(fields) => (
                "drifted",
                Style::new().fg(theme::WARN),
                format!("will change {}", fields.join(", ")),
            ),
            PieceStatus::Unknown => ("unknown", theme::dim(), "not readable".to_owned()),
        };
        Row::new(vec![
            format!("{}", i + 1).into(),
            p.kind.clone().into(),
            p.name.clone().into(),
            p.title.clone().into(),
            Text::styled(status, style),
            detail.into(),
        ])
    });
    let header =
        Row::new(["#", "KIND", "NAME", "PIECE", "STATUS", "APPLY WOULD"]).style(theme::header());
    let table = Table::new(
        rows,
        [
            Constraint::Length(2),
            Constraint::Length(14),
            Constraint::Length(30),
            Constraint::Min(30),
            Constraint::Length(8),
            Constraint::Min(20),
        ],
    )
    .header(header)
    .row_highlight_style(theme::selected())
    .block(table_block("Bundle · a apply · r revert"));
    frame.render_stateful_widget(
        table,
        table_area,
        &mut TableState::default().with_selected(Some(state.ui.selected)),
    );

    let (ratio, label) = match &state.install.progress {
        Some((done, total, what)) if *total > 0 => (
            *done as f64 / *total as f64,
            format!("{done}/{total} {what}"),
        ),
        Some((_, _, what)) => (0.0, what.clone()),
        None => (0.0, "idle".to_owned()),
    };
    let gauge = Gauge::default()
        .block(table_block("Progress"))
        .ratio(ratio.clamp(0.0, 1.0))
        .label(label)
        .gauge_style(Style::new().fg(theme::ACCENT));
    frame.render_widget(gauge, progress_area);

    let lines: Vec<Line> = state
        .install
        .log
        .iter()
        .rev()
        .take(6)
        .rev()
        .map(|l| Line::from(l.as_str()))
        .collect();
    frame.render_widget(Paragraph::new(lines).block(table_block("Log")), log_area);
}
