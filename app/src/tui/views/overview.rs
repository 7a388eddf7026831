//! `1` Overview: the cluster, the install checklist, the activators' sidecars.

use super::{table_block, theme};
use crate::tui::state::{AppState, PieceStatus};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table};
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
    frame.render_widget(Paragraph::new(lines).block(table_block("Cluster")), info);

    let rows = state.pieces.iter().map(|p| {
        let (mark, style, note) = match &p.status {
            PieceStatus::Present => ("✔ present", theme::good(true), String::new()),
            PieceStatus::Missing => ("✘ missing", theme::good(false), String::new()),
            PieceStatus::Drifted(fields) => (
                "≠ drifted",
                ratatui::style::Style::new().fg(theme::WARN),
                fields.join(", "),
            ),
            PieceStatus::Unknown => ("? unknown", theme::dim(), String::new()),
        };
        Row::new(vec![
            ratatui::text::Text::styled(mark, style),
            p.title.clone().into(),
            note.into(),
        ])
    });
    let installed = state
        .pieces
        .iter()
        .filter(|p| p.status == PieceStatus::Present)
        .count();
    let title = format!("Install checklist {installed}/{}", state.pieces.len());
    let table = Table::new(
        rows,
        [
            Constraint::Length(11),
            Constraint::Percentage(60),
            Constraint::Percentage(40),
        ],
    )
    .block(table_block(&title));
    frame.render_widget(table, checklist);

    let activators = super::rows::activators(state);
    let rows = activators.iter().map(|a| {
        Row::new(vec![
            a.pod.clone().into(),
            a.ip.clone().into(),
            ratatui::text::Text::styled(theme::check(a.ready), theme::good(a.ready)),
            ratatui::text::Text::styled(
                theme::check(a.sidecar_injected),
                theme::good(a.sidecar_injected),
            ),
            match a.filter_loaded {
                Some(loaded) => {
                    ratatui::text::Text::styled(theme::check(loaded), theme::good(loaded))
                }
                None => ratatui::text::Text::styled("?", theme::dim()),
            },
            a.config_bytes.map_or("—".into(), theme::bytes).into(),
            a.memory_bytes.map_or("—".into(), theme::bytes).into(),
            match a.hit_rate {
                Some(r) => ratatui::text::Text::styled(theme::percent(Some(r)), theme::rate(r)),
                None => ratatui::text::Text::styled("—", theme::dim()),
            },
        ])
    });
    let header = Row::new([
        "POD", "IP", "READY", "SIDECAR", "FILTER", "CONFIG", "MEMORY", "HIT RATE",
    ])
    .style(theme::header());
    let table = Table::new(
        rows,
        [
            Constraint::Min(24),
            Constraint::Length(15),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(9),
        ],
    )
    .header(header)
    .row_highlight_style(theme::selected())
    .block(table_block("Activators"));
    let mut selection =
        ratatui::widgets::TableState::default().with_selected(Some(state.ui.selected));
    frame.render_stateful_widget(table, bottom, &mut selection);
}
