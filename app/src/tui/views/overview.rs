//! `1` Overview: the cluster, the install checklist, the activators' sidecars.

use super::columns::{self, Cell, Column};
use super::{inner_width, table_block, theme};
use crate::tui::state::{AppState, PieceStatus};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState) {
    let [top, bottom] = Layout::vertical([
        Constraint::Length(state.pieces.len() as u16 + 5),
        Constraint::Min(5),
    ])
    .areas(area);
    let [info, checklist] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(top);

    let cluster = &state.cluster;
    let value = |v: &Option<String>| v.clone().unwrap_or_else(|| "not detected".into());
    let lines = vec![
        Line::from(vec![
            Span::styled("context   ", theme::dim()),
            Span::raw(&cluster.context),
        ]),
        Line::from(vec![
            Span::styled("server    ", theme::dim()),
            Span::raw(&cluster.server),
        ]),
        Line::from(vec![
            Span::styled("istio     ", theme::dim()),
            Span::raw(value(&cluster.istio)),
        ]),
        Line::from(vec![
            Span::styled("knative   ", theme::dim()),
            Span::raw(value(&cluster.knative)),
        ]),
        Line::from(vec![
            Span::styled("hit rate  ", theme::dim()),
            match state.window_hit_rate() {
                Some(r) => Span::styled(theme::percent(Some(r)), theme::rate(r)),
                None => Span::styled("no session traffic yet", theme::dim()),
            },
        ]),
    ];
    // Wrapped: a long version string is read whole.
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .block(table_block("Cluster", info.width)),
        info,
    );

    let rows = state
        .pieces
        .iter()
        .map(|p| {
            let (mark, style, note) = match &p.status {
                PieceStatus::Present => ("✔ present", theme::good(true), String::new()),
                PieceStatus::Missing => ("✘ missing", theme::good(false), String::new()),
                PieceStatus::Drifted(fields) => ("≠ drifted", theme::warn(), fields.join(", ")),
                PieceStatus::Unknown => ("? unknown", theme::dim(), String::new()),
            };
            vec![
                Cell::styled(mark, style),
                p.title.clone().into(),
                Cell::styled(note, theme::dim()),
            ]
        })
        .collect();
    let installed = state
        .pieces
        .iter()
        .filter(|p| p.status == PieceStatus::Present)
        .count();
    let title = format!("Install checklist {installed}/{}", state.pieces.len());
    let columns = [
        Column::new("STATUS", 3),
        Column::new("PIECE", 2).cut_to(20),
        // What drifted: the Install view and the diff say it in full.
        Column::new("DRIFTED", 1).cut_to(8),
    ];
    let table = columns::fit(&columns, rows, inner_width(checklist), theme::header())
        .block(table_block(&title, checklist.width));
    frame.render_widget(table, checklist);

    let agreement = Paragraph::new(agreement_lines(state))
        .wrap(ratatui::widgets::Wrap { trim: false })
        .block(table_block("Do the activators agree?", bottom.width));
    // Wrapped, borders included: a difference is never cut.
    let height = agreement.line_count(bottom.width) as u16;
    let [bottom, agreement_area] =
        Layout::vertical([Constraint::Min(5), Constraint::Length(height)]).areas(bottom);
    frame.render_widget(agreement, agreement_area);

    let activators = super::rows::activators(state);
    let rows = activators
        .iter()
        .map(|a| {
            let check = |yes: bool| Cell::styled(theme::check(yes), theme::good(yes));
            vec![
                a.pod.clone().into(),
                a.ip.clone().into(),
                check(a.ready),
                check(a.sidecar_injected),
                a.filter_loaded
                    .map_or_else(|| Cell::styled("?", theme::dim()), check),
                a.config_bytes.map_or("—".into(), theme::bytes).into(),
                a.memory_bytes.map_or("—".into(), theme::bytes).into(),
                match a.hit_rate {
                    Some(r) => Cell::styled(theme::percent(Some(r)), theme::rate(r)),
                    None => Cell::styled("—", theme::dim()),
                },
            ]
        })
        .collect();
    let columns = [
        Column::new("POD", 9).cut_to(16),
        Column::new("IP", 3),
        Column::new("READY", 8),
        Column::new("SIDECAR", 7),
        Column::new("FILTER", 7),
        Column::new("CONFIG", 5),
        Column::new("MEMORY", 2),
        Column::new("HIT RATE", 6),
    ];
    let table = columns::fit(&columns, rows, inner_width(bottom), theme::header())
        .row_highlight_style(theme::selected())
        .block(table_block("Activators", bottom.width));
    let mut selection =
        ratatui::widgets::TableState::default().with_selected(Some(state.ui.selected));
    frame.render_stateful_widget(table, bottom, &mut selection);
}

/// One line when the activators' sidecars agree (what they all run), else one line per
/// difference naming the sidecars it concerns.
fn agreement_lines(state: &AppState) -> Vec<Line<'static>> {
    let injected: Vec<_> = state
        .activators
        .iter()
        .filter(|a| a.sidecar_injected)
        .collect();
    if injected.is_empty() {
        return vec![Line::styled(
            " no activator sidecar to compare yet",
            theme::dim(),
        )];
    }
    let differences = state.disagreements();
    if differences.is_empty() {
        let first = injected[0];
        let mut what = Vec::new();
        if let Some(module) = &first.module {
            what.push(format!("module {module:.12}…"));
        }
        if let Some(shape) = &first.shape {
            if let Some(chain) = shape.chains.get(&8012) {
                what.push(format!(":8012 {}", crate::envoy::shape::chain_text(chain)));
            }
            if let Some(passthrough) = &shape.passthrough {
                what.push(format!("PassthroughCluster {}", passthrough.describe()));
            }
        }
        if let Some(level) = state.wasm_levels.get(&first.pod) {
            what.push(format!("wasm {level}"));
        }
        let all = if injected.len() == 1 {
            "the one activator runs".to_owned()
        } else {
            format!("all {} activators run", injected.len())
        };
        let text = if what.is_empty() {
            format!(" ✔ {all} the same (nothing read from their sidecars yet)")
        } else {
            format!(" ✔ {all} the same: {}", what.join(" · "))
        };
        return vec![Line::styled(text, theme::good(true))];
    }
    differences
        .into_iter()
        .map(|d| Line::styled(format!(" ✘ {d}"), theme::good(false)))
        .collect()
}
