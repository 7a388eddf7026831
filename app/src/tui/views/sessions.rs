//! `3` Sessions: live sessions (cookies, MCP envelopes, header mode) decoded to pod and revision,
//! plus the paste box. An MCP session shows a short hash of its id, never the id.

use super::columns::{self, Cell, Column};
use super::{inner_width, table_block, theme};
use crate::tui::state::{
    AppState, Quiet, Seconds, SessionRow, SessionState, WasmLogRaise, SILENT_AFTER, WASM_LOG_RAISE,
};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, TableState};
use ratatui::Frame;
use std::collections::BTreeMap;

/// What `L` is doing (raises in flight, held with their countdown, failures), then why
/// decision lines are missing, one line per case naming its sidecars: the text and its style.
fn notice(state: &AppState) -> Vec<(String, Style)> {
    let mut lines = Vec::new();
    let mut raising = Vec::new();
    // Raises held, by the level each goes back to: (pods, seconds left of the soonest).
    let mut held: BTreeMap<&str, (Vec<&str>, Seconds)> = BTreeMap::new();
    let mut failed = Vec::new();
    for (pod, raise) in &state.wasm_log {
        match raise {
            WasmLogRaise::Raising => raising.push(pod.as_str()),
            WasmLogRaise::Raised { until, previous } if state.raise_active(pod) => {
                let (pods, left) = held.entry(previous).or_insert((Vec::new(), Seconds::MAX));
                pods.push(pod);
                *left = left.min(until - state.now);
            }
            WasmLogRaise::Raised { .. } => {}
            WasmLogRaise::Failed(error) => failed.push((pod.as_str(), error.as_str())),
        }
    }
    if !raising.is_empty() {
        let text = format!(
            " raising the wasm logger to info on {}…",
            raising.join(", ")
        );
        lines.push((text, theme::dim()));
    }
    for (previous, (pods, left)) in held {
        let left = left.max(0.0) as u64;
        let text = format!(
            " wasm logger at info on {} for {}:{:02} more, then back to {previous} (also when kasi exits)",
            pods.join(", "),
            left / 60,
            left % 60,
        );
        lines.push((text, theme::ok()));
    }
    for (pod, error) in failed {
        let text = format!(" wasm logger of {pod}: {error} · L tries again");
        lines.push((text, theme::bad()));
    }
    let mut cases: BTreeMap<Quiet, Vec<&str>> = BTreeMap::new();
    for (pod, why) in state.quiet_sidecars() {
        cases.entry(why).or_default().push(pod);
    }
    let raise_for = WASM_LOG_RAISE as u64 / 60;
    let mut wasm_level = false;
    for (why, pods) in cases {
        let pods = pods.join(", ");
        let none_from = format!(" no decision lines from {pods}:");
        let (text, style) = match why {
            Quiet::NoSidecar => (
                format!("{none_from} no istio-proxy sidecar, so no filter"),
                theme::bad(),
            ),
            Quiet::FilterNotLoaded => (
                format!("{none_from} kasi's filter is not loaded in its sidecar (1 Overview, 6 Install)"),
                theme::bad(),
            ),
            Quiet::ConfigRefused(error) => (
                format!("{none_from} the filter refuses its pluginConfig and does not run: {error}"),
                theme::bad(),
            ),
            Quiet::LoggingOff => (
                format!("{none_from} the filter runs with log_decisions \"off\" (the WasmPlugin's pluginConfig)"),
                theme::warn(),
            ),
            Quiet::WasmLevel(level) => {
                wasm_level = true;
                (
                    format!(" wasm logs at {level} on {pods} (decision lines are info) · L raises it to info for {raise_for} min"),
                    theme::warn(),
                )
            }
            Quiet::Silent { level: None } => (
                format!(" {pods}: requests that write a decision line went through, yet none arrived for {SILENT_AFTER:.0} s · L raises the wasm logger to info for {raise_for} min"),
                theme::warn(),
            ),
            Quiet::Silent { level: Some(level) } => (
                format!(" {pods}: requests that write a decision line went through, yet none arrived for {SILENT_AFTER:.0} s though wasm logs at {level}: is its istio-proxy log readable?"),
                theme::warn(),
            ),
            Quiet::NoRequests => (
                format!("{none_from} no requests yet (the filter's counters have not moved)"),
                theme::dim(),
            ),
            Quiet::OnlySticky => (
                format!("{none_from} every request stayed on its pinned pod, which log_decisions \"changes\" does not log"),
                theme::dim(),
            ),
        };
        lines.push((text, style));
    }
    if wasm_level {
        lines.push((
            "   for good: istio-proxy starts Envoy at --log-level warning; kasi's bundle gives activator pods the annotation sidecar.istio.io/componentLogLevel: \"misc:error,wasm:info\" when they are created".into(),
            theme::dim(),
        ));
    }
    lines
}

/// Greedy word wrap to `width` columns, keeping the text's indent; continuation lines are
/// indented two more.
pub(super) fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(20);
    let words = text.trim_start();
    let indent = text.len() - words.len();
    let mut lines = Vec::new();
    let mut line = text[..indent].to_owned();
    let mut empty = true;
    for word in words.split(' ') {
        if !empty && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::replace(&mut line, " ".repeat(indent + 2)));
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    lines.push(line);
    lines
}

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState) {
    let lines: Vec<Line> = notice(state)
        .into_iter()
        .flat_map(|(text, style)| {
            wrap(&text, area.width as usize)
                .into_iter()
                .map(move |l| Line::styled(l, style))
        })
        // The table keeps at least half the view.
        .take((area.height / 2) as usize)
        .collect();
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
    let rows = sessions
        .iter()
        .map(|s| {
            let (pod, revision, alive) = match state.pod_of(&s.address) {
                Some((r, p)) => (p.name.clone(), r.name.clone(), p.ready),
                None => ("(not a known pod)".into(), "—".into(), false),
            };
            let (label, style) = match s.state {
                SessionState::Pinned => ("pinned", theme::ok()),
                SessionState::Rebound => ("rebound", theme::warn()),
                SessionState::Rejected => ("rejected", theme::bad()),
            };
            vec![
                s.address.clone().into(),
                Cell::styled(pod, theme::good(alive)),
                revision.into(),
                Cell::styled(label, style),
                s.reason.clone().into(),
                session_cell(s).into(),
                s.authority.clone().into(),
                s.seen_by.clone().into(),
                format!("{:.0}s ago", (state.now - s.last_seen).max(0.0)).into(),
            ]
        })
        .collect();
    let title = format!(
        "Sessions ({}) · Enter its story · p paste a cookie or Mcp-Session-Id · L wasm logs to info",
        sessions.len()
    );
    // The pod, its state and why come first; the host and the sidecar that saw it give way.
    let columns = [
        Column::new("ADDRESS", 7),
        Column::new("POD", 9).cut_to(16),
        // The pod's name says its revision already.
        Column::new("REVISION", 1),
        Column::new("STATE", 8),
        Column::new("REASON", 6),
        Column::new("SESSION", 5),
        Column::new("HOST", 2),
        Column::new("SEEN BY", 3),
        Column::new("LAST", 4),
    ];
    let table = columns::fit(&columns, rows, inner_width(area), theme::header())
        .row_highlight_style(theme::selected())
        .block(table_block(&title, area.width));
    frame.render_stateful_widget(
        table,
        area,
        &mut TableState::default().with_selected(Some(state.ui.selected)),
    );
}

/// The SESSION cell: which carrier, and what tells the session apart. A cookie says when it
/// expires (`cookie` without a TTL, `cookie ?` when Envoy wrote its monotonic clock, else the
/// UTC time); an MCP session (`envelope`) its short hash; header mode just `header`.
fn session_cell(s: &SessionRow) -> String {
    match s.carrier.as_str() {
        "envelope" => match &s.session {
            Some(hash) => format!("mcp {hash}"),
            None => "mcp".to_owned(),
        },
        "header" => "header".to_owned(),
        _ => match s.expires {
            None => "cookie".to_owned(),
            Some(t) if t < kasi_filter::codec::PLAUSIBLE_UNIX_TIME => "cookie ?".to_owned(),
            Some(t) => {
                let time = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(t),
                )
                .to_string();
                // `2026-01-02T03:04:05Z`: the time of day is what tells sessions apart.
                format!("cookie {}", time.get(11..16).unwrap_or(&time))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn long_lines_wrap_at_words_with_an_indent() {
        assert_eq!(wrap(" short", 80), [" short"]);
        assert_eq!(
            wrap(" one two three four five six", 20),
            [" one two three four", "   five six"]
        );
        // A word longer than the width stays whole.
        assert_eq!(wrap(&format!(" {}", "x".repeat(30)), 20).len(), 1);
    }
}
