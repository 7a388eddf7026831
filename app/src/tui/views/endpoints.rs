//! `2` Endpoints: revisions → pods, readiness, and the sessions pinned to each pod.

use super::{table_block, theme};
use crate::tui::state::AppState;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Text;
use ratatui::widgets::{Row, Table, TableState};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState) {
    let pods = super::rows::pods(state);
    let mut sessions_by_address: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::new();
    for session in state
        .sessions
        .iter()
        .filter(|s| s.state != crate::tui::state::SessionState::Rejected)
    {
        *sessions_by_address
            .entry(session.address.as_str())
            .or_default() += 1;
    }
    let most = sessions_by_address
        .values()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    // Only the rows that fit are built: a cluster can have thousands of pods.
    let (window, selected) = super::visible(pods.len(), state.ui.selected, area);
    let rows = pods[window].iter().map(|(revision, pod)| {
        let sessions = sessions_by_address
            .get(pod.address.as_str())
            .copied()
            .unwrap_or(0);
        // A bar a person reads faster than a number: how the sessions spread over pods.
        let bar = "█".repeat((sessions * 20).div_ceil(most).min(20));
        Row::new(vec![
            format!("{}/{}", revision.namespace, revision.name).into(),
            pod.name.clone().into(),
            pod.address.clone().into(),
            Text::styled(
                if pod.ready { "Ready" } else { "NotReady" },
                theme::good(pod.ready),
            ),
            sessions.to_string().into(),
            Text::styled(bar, ratatui::style::Style::new().fg(theme::ACCENT)),
        ])
    });
    let header =
        Row::new(["REVISION", "POD", "ADDRESS", "STATE", "SESSIONS", ""]).style(theme::header());
    let hint = if state.cluster.lab {
        " · x stop · u restore"
    } else {
        ""
    };
    let title = format!("Endpoints ({} pods){hint}", pods.len());
    let table = Table::new(
        rows,
        [
            Constraint::Min(20),
            Constraint::Min(30),
            Constraint::Length(20),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(21),
        ],
    )
    .header(header)
    .row_highlight_style(theme::selected())
    .block(table_block(&title));
    frame.render_stateful_widget(
        table,
        area,
        &mut TableState::default().with_selected(Some(selected)),
    );
}
