//! `6` Install: every piece's status and what differs, what in the cluster defeats kasi (findings,
//! each with its fix), and what apply (or, after `t`, revert) would do to each piece as the API
//! server's dry run answered; `a` applies, `r` reverts, `d` / `D` show the diff.

use super::{table_block, theme};
use crate::install::findings::Severity;
use crate::install::preview::{PreviewKind, Verdict};
use crate::tui::state::{AppState, PieceRow, PieceStatus};
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

/// The "would" cell: what the server's dry run says the command would do to this piece.
fn would(state: &AppState, piece: &PieceRow) -> (String, Style) {
    let kind = state.install.context;
    match state.install.preview(kind) {
        None => ("checking…".into(), theme::dim()),
        Some(Err(_)) => ("dry run failed".into(), Style::new().fg(theme::BAD)),
        Some(Ok(preview)) => {
            let found = preview
                .of_piece(&piece.id)
                .or_else(|| preview.of_target(&piece.kind, &piece.name));
            match found.map(|o| &o.verdict) {
                None => ("untouched".into(), theme::dim()),
                Some(verdict) => {
                    let style = match verdict {
                        Verdict::Created => Style::new().fg(theme::OK),
                        Verdict::Unchanged => theme::dim(),
                        Verdict::Patched(_) => Style::new().fg(theme::WARN),
                        Verdict::Deleted | Verdict::Refused(_) => Style::new().fg(theme::BAD),
                    };
                    (verdict.label(), style)
                }
            }
        }
    }
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
        let (status, style) = match &p.status {
            PieceStatus::Present => ("present", theme::good(true)),
            PieceStatus::Missing => ("missing", theme::good(false)),
            PieceStatus::Drifted(_) => ("drifted", Style::new().fg(theme::WARN)),
            PieceStatus::Unknown => ("unknown", theme::dim()),
        };
        let (would, would_style) = would(state, p);
        Row::new(vec![
            format!("{}", i + 1).into(),
            p.kind.clone().into(),
            p.name.clone().into(),
            p.title.clone().into(),
            Text::styled(status, style),
            Text::styled(would, would_style),
        ])
    });
    let context = state.install.context.word();
    let header = Row::new([
        "#".to_owned(),
        "KIND".into(),
        "NAME".into(),
        "PIECE".into(),
        "STATUS".into(),
        format!("{} WOULD", context.to_ascii_uppercase()),
    ])
    .style(theme::header());
    let checking = state
        .install
        .previewing
        .map(|(done, total)| format!(" · dry run {done}/{total}…"))
        .unwrap_or_default();
    let title = format!(
        "Bundle · a apply · r revert · d diff · D all diffs · t {} · {context} would{checking}",
        match state.install.context {
            PreviewKind::Apply => "show revert",
            PreviewKind::Revert => "show apply",
        }
    );
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
    .block(table_block(&title));
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
