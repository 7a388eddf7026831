//! `3` Sessions: live session cookies decoded to pod and revision, plus the paste box.

use super::{table_block, theme};
use crate::tui::state::{AppState, SessionState};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Text};
use ratatui::widgets::{Paragraph, Row, Table, TableState};
use ratatui::Frame;

/// Lines above the table when decision lines are missing or the `wasm` logger is raised.
fn notice(state: &AppState) -> Vec<Line<'static>> {
    if let Some((_, first)) = state.wasm_log.iter().next() {
        let left = (first.until - state.now).max(0.0) as u64;
        let pods: Vec<&str> = state.wasm_log.keys().map(String::as_str).collect();
        return vec![Line::styled(
            format!(
                " wasm logger at info on {} for {}:{:02} more, then back to {} (also when kasi exits)",
                pods.join(", "),
                left / 60,
                left % 60,
                first.previous
            ),
            Style::new().fg(theme::OK),
        )];
    }
    let silent = state.silent_sidecars();
    if silent.is_empty() {
        return Vec::new();
    }
    vec![
        Line::styled(
            format!(
                " {}: sessions flow but no decision line for {:.0} s · L raises the wasm logger to info for {} min",
                silent.join(", "),
                crate::tui::state::SILENT_AFTER,
                crate::tui::state::WASM_LOG_RAISE as u64 / 60
            ),
            Style::new().fg(theme::WARN),
        ),
        Line::styled(
            "   why: its sidecar logs wasm below info — istio-proxy runs --component-log-level misc:error by default (kasi's bundle sets wasm:info on pods it creates)",
            theme::dim(),
        ),
    ]
}

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState) {
    let lines = notice(state);
    let area = if lines.is_empty() {
        area
    } else {
        let height = lines.len() as u16;
        let [notice_area, rest] =
            Layout::vertical([Constraint::Length(height), Constraint::Min(3)]).areas(area);
        frame.render_widget(Paragraph::new(lines), notice_area);
        rest
    };
    let sessions = super::rows::sessions(state);
    let rows = sessions.iter().map(|s| {
        let (pod, revision, alive) = match state.pod_of(&s.address) {
            Some((r, p)) => (p.name.clone(), r.name.clone(), p.ready),
            None => ("(not a known pod)".into(), "—".into(), false),
        };
        let (label, style) = match s.state {
            SessionState::Pinned => ("pinned", Style::new().fg(theme::OK)),
            SessionState::Rebound => ("rebound", Style::new().fg(theme::WARN)),
            SessionState::Rejected => ("rejected", Style::new().fg(theme::BAD)),
        };
        let expires = match s.expires {
            None => "session".to_owned(),
            Some(t) if t < kasi_filter::codec::PLAUSIBLE_UNIX_TIME => "unknown".to_owned(),
            Some(t) => humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(t),
            )
            .to_string(),
        };
        Row::new(vec![
            s.address.clone().into(),
            Text::styled(pod, theme::good(alive)),
            revision.into(),
            Text::styled(label, style),
            s.reason.clone().into(),
            expires.into(),
            s.authority.clone().into(),
            s.seen_by.clone().into(),
            format!("{:.0}s ago", (state.now - s.last_seen).max(0.0)).into(),
        ])
    });
    let header = Row::new([
        "ADDRESS", "POD", "REVISION", "STATE", "REASON", "EXPIRES", "HOST", "SEEN BY", "LAST",
    ])
    .style(theme::header());
    let title = format!("Sessions ({}) · p paste a cookie", sessions.len());
    let table = Table::new(
        rows,
        [
            Constraint::Length(17),
            Constraint::Min(26),
            Constraint::Length(12),
            Constraint::Length(9),
            Constraint::Length(11),
            Constraint::Length(8),
            Constraint::Min(0),
            Constraint::Length(25),
            Constraint::Length(7),
        ],
    )
    .header(header)
    .row_highlight_style(theme::selected())
    .block(table_block(&title));
    frame.render_stateful_widget(
        table,
        area,
        &mut TableState::default().with_selected(Some(state.ui.selected)),
    );
}
