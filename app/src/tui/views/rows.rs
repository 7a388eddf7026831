//! The rows each table shows, after the `/` filter: one place decides, so drawing, moving the
//! selection and acting on it always agree.

use crate::tui::state::{AppState, PieceRow, PodRow, RevisionRow, SessionRow};
use crate::tui::view::View;

fn matches(filter: &str, texts: &[&str]) -> bool {
    filter.is_empty()
        || texts.iter().any(|t| {
            t.to_ascii_lowercase()
                .contains(&filter.to_ascii_lowercase())
        })
}

pub fn activators(state: &AppState) -> Vec<&crate::tui::state::ActivatorRow> {
    state
        .activators
        .iter()
        .filter(|a| matches(&state.ui.filter, &[&a.pod, &a.ip]))
        .collect()
}

/// Every pod of every revision, flattened in display order.
pub fn pods(state: &AppState) -> Vec<(&RevisionRow, &PodRow)> {
    state
        .revisions
        .iter()
        .flat_map(|r| r.pods.iter().map(move |p| (r, p)))
        .filter(|(r, p)| matches(&state.ui.filter, &[&r.name, &p.name, &p.address]))
        .collect()
}

pub fn sessions(state: &AppState) -> Vec<&SessionRow> {
    let mut rows: Vec<&SessionRow> = state
        .sessions
        .iter()
        .filter(|s| {
            let pod = state
                .pod_of(&s.address)
                .map(|(_, p)| p.name.as_str())
                .unwrap_or("");
            matches(
                &state.ui.filter,
                &[
                    &s.address,
                    &s.authority,
                    pod,
                    &s.reason,
                    &s.seen_by,
                    &s.carrier,
                    s.session.as_deref().unwrap_or(""),
                ],
            )
        })
        .collect();
    rows.sort_by(|a, b| b.last_seen.total_cmp(&a.last_seen));
    rows
}

pub fn pieces(state: &AppState) -> Vec<&PieceRow> {
    state
        .pieces
        .iter()
        .filter(|p| matches(&state.ui.filter, &[&p.title, &p.kind, &p.name]))
        .collect()
}

/// Rows in the current view's table.
pub fn count(state: &AppState) -> usize {
    match state.view {
        View::Overview => activators(state).len(),
        View::Endpoints => pods(state).len(),
        View::Sessions => sessions(state).len(),
        View::Install => pieces(state).len(),
        View::Config | View::Stickiness => state.activators.len(),
    }
}

/// The pod under the selection in the Endpoints view.
pub fn selected_pod(state: &AppState) -> Option<String> {
    pods(state)
        .get(state.ui.selected)
        .map(|(_, p)| p.name.clone())
}
