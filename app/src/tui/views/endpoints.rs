//! `2` Endpoints: revisions → pods, readiness, and the sessions pinned to each pod.

use super::columns::{self, Cell, Column};
use super::{inner_width, table_block, theme};
use crate::tui::state::AppState;
use ratatui::layout::Rect;
use ratatui::widgets::TableState;
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
    let rows = pods[window]
        .iter()
        .map(|(revision, pod)| {
            let sessions = sessions_by_address
                .get(pod.address.as_str())
                .copied()
                .unwrap_or(0);
            // A bar a person reads faster than a number: how the sessions spread over pods.
            let bar = "█".repeat((sessions * 20).div_ceil(most).min(20));
            vec![
                format!("{}/{}", revision.namespace, revision.name).into(),
                pod.name.clone().into(),
                pod.address.clone().into(),
                Cell::styled(
                    if pod.ready { "Ready" } else { "NotReady" },
                    theme::good(pod.ready),
                ),
                sessions.to_string().into(),
                Cell::styled(bar, theme::accent()),
            ]
        })
        .collect();
    let hint = if state.cluster.lab {
        " · x stop · u restore"
    } else {
        ""
    };
    let title = format!("Endpoints ({} pods){hint}", pods.len());
    let columns = [
        Column::new("REVISION", 5).cut_to(12),
        Column::new("POD", 9).cut_to(16),
        Column::new("ADDRESS", 7),
        Column::new("STATE", 8),
        Column::new("SESSIONS", 6),
        // The bar gives way before any number.
        Column::new("", 1).cut_to(4),
    ];
    let table = columns::fit(&columns, rows, inner_width(area), theme::header())
        .row_highlight_style(theme::selected())
        .block(table_block(&title, area.width));
    frame.render_stateful_widget(
        table,
        area,
        &mut TableState::default().with_selected(Some(selected)),
    );
}
