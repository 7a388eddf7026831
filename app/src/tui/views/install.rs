//! `6` Install: every piece's status and what differs, what in the cluster defeats kasi (findings,
//! each with its fix); `a` applies, `r` reverts.

use super::{table_block, theme};
use crate::install::findings::Severity;
use crate::tui::state::{AppState, PieceStatus};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Gauge, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

/// The findings panel's lines: each finding (severity, id, message) and its fix, then the checks
/// that could not be made.
fn findings_lines(state: &AppState) -> (String, Vec<Line<'_>>) {
    let Some(found) = &state.findings else {
        return (
            "Findings".into(),
            vec![Line::styled("checking the cluster…", theme::dim())],
        );
    };
    let errors = found.errors().count();
    let title = match (errors, found.findings.len()) {
        (0, 0) => "Findings".to_owned(),
        (0, n) => format!("Findings ({n})"),
        (_, n) => format!("Findings ({n}) · an error stops a (kasi apply --force overrides)"),
    };
    let mut lines = Vec::new();
    if found.findings.is_empty() {
        lines.push(Line::styled(
            "none: nothing known defeats kasi",
            Style::new().fg(theme::OK),
        ));
    }
    for finding in &found.findings {
        let (label, colour) = match finding.severity {
            Severity::Error => ("error  ", theme::BAD),
            Severity::Warning => ("warning", theme::WARN),
        };
        lines.push(Line::from(vec![
            Span::styled(label, Style::new().fg(colour)),
            Span::raw(" "),
            Span::styled(finding.id, theme::header()),
            Span::raw(format!(" {}", finding.message)),
        ]));
        lines.push(Line::styled(
            format!("        fix: {}", finding.fix),
            theme::dim(),
        ));
    }
    for line in &found.unchecked {
        lines.push(Line::styled(
            format!("warning {line}"),
            Style::new().fg(theme::WARN),
        ));
    }
    (title, lines)
}

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState) {
    let (findings_title, findings) = findings_lines(state);
    // As tall as its wrapped lines (plus borders), leaving the bundle table at least 6 rows.
    let width = area.width.saturating_sub(2).max(1) as usize;
    let wrapped: usize = findings
        .iter()
        .map(|l| l.width().div_ceil(width).max(1))
        .sum();
    let budget = area.height.saturating_sub(6 + 3 + 8) as usize;
    let findings_height = (wrapped + 2).min(budget.max(3)) as u16;
    let [table_area, findings_area, progress_area, log_area] = Layout::vertical([
        Constraint::Min(6),
        Constraint::Length(findings_height),
        Constraint::Length(3),
        Constraint::Length(8),
    ])
    .areas(area);
    frame.render_widget(
        Paragraph::new(findings)
            .wrap(Wrap { trim: false })
            .block(table_block(&findings_title)),
        findings_area,
    );
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
