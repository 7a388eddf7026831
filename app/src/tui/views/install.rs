//! `6` Install: every piece's status and what differs, what in the cluster defeats kasi (findings,
//! each with its fix), and what apply (or, after `t`, revert) would do to each piece as the API
//! server's dry run answered; `a` applies, `r` reverts, `d` / `D` show the diff.

use super::columns::{self, Cell, Column};
use super::{inner_width, table_block, theme};
use crate::install::findings::Severity;
use crate::install::preview::{PreviewKind, Verdict};
use crate::tui::state::{AppState, PieceRow, PieceStatus};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Gauge, Paragraph, TableState, Wrap};
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
            theme::ok(),
        ));
    }
    for finding in &found.findings {
        let (label, colour) = match finding.severity {
            Severity::Error => ("error  ", theme::bad()),
            Severity::Warning => ("warning", theme::warn()),
        };
        lines.push(Line::from(vec![
            Span::styled(label, colour),
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
        lines.push(Line::styled(format!("warning {line}"), theme::warn()));
    }
    (title, lines)
}

/// The "would" cell: what the server's dry run says the command would do to this piece.
fn would(state: &AppState, piece: &PieceRow) -> (String, Style) {
    let kind = state.install.context;
    match state.install.preview(kind) {
        None => ("checking…".into(), theme::dim()),
        Some(Err(_)) => ("dry run failed".into(), theme::bad()),
        Some(Ok(preview)) => {
            let found = preview
                .of_piece(&piece.id)
                .or_else(|| preview.of_target(&piece.kind, &piece.name));
            match found.map(|o| &o.verdict) {
                None => ("untouched".into(), theme::dim()),
                Some(verdict) => {
                    let style = match verdict {
                        Verdict::Created => theme::ok(),
                        Verdict::Unchanged => theme::dim(),
                        Verdict::Patched(_) => theme::warn(),
                        Verdict::Deleted | Verdict::Refused(_) => theme::bad(),
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
            .block(table_block(&findings_title, findings_area.width)),
        findings_area,
    );
    let pieces = super::rows::pieces(state);
    let rows = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (status, style) = match &p.status {
                PieceStatus::Present => ("present", theme::good(true)),
                PieceStatus::Missing => ("missing", theme::good(false)),
                PieceStatus::Drifted(_) => ("drifted", theme::warn()),
                PieceStatus::Unknown => ("unknown", theme::dim()),
            };
            let (would, would_style) = would(state, p);
            vec![
                format!("{}", i + 1).into(),
                p.kind.clone().into(),
                p.name.clone().into(),
                p.title.clone().into(),
                Cell::styled(status, style),
                Cell::styled(would, would_style),
            ]
        })
        .collect();
    let context = state.install.context.word();
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
    let columns = [
        Column::new("#", 4),
        // What it is, its state and what the command would do first; kind and name give way.
        Column::new("KIND", 2),
        Column::new("NAME", 3).cut_to(14),
        Column::new("PIECE", 8).cut_to(20),
        Column::new("STATUS", 9),
        Column::new(format!("{} WOULD", context.to_ascii_uppercase()), 7).cut_to(12),
    ];
    let table = columns::fit(&columns, rows, inner_width(table_area), theme::header())
        .row_highlight_style(theme::selected())
        .block(table_block(&title, table_area.width));
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
        .block(table_block("Progress", progress_area.width))
        .ratio(ratio.clamp(0.0, 1.0))
        .label(label)
        .gauge_style(theme::accent());
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
    frame.render_widget(
        Paragraph::new(lines).block(table_block("Log", log_area.width)),
        log_area,
    );
}
