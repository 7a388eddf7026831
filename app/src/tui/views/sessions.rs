//! `3` Sessions: live session cookies decoded to pod and revision, plus the paste box.

use super::{table_block, theme};
use crate::tui::state::{AppState, SessionState};
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::Text;
use ratatui::widgets::{Row, Table, TableState};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState) {
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
