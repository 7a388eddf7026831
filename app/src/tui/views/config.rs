//! `4` Config: each sidecar's config_dump size over time, by section, with applies marked.

use super::columns::{self, Cell, Column};
use super::{inner_width, table_block, theme};
use crate::tui::state::AppState;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::Line;
use ratatui::widgets::{Axis, Chart, Dataset, GraphType};
use ratatui::Frame;

const COLORS: [Color; 4] = [Color::Cyan, Color::Magenta, Color::Yellow, Color::Green];

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState) {
    let live: Vec<&str> = state.activators.iter().map(|a| a.pod.as_str()).collect();
    let shown = |pod: &str| live.is_empty() || live.contains(&pod);
    let rows_shown = state.config_history.keys().filter(|p| shown(p)).count();
    // Wrapped, borders included: a chain is read whole on a narrow terminal too.
    let chains = ratatui::widgets::Paragraph::new(chain_lines(state))
        .wrap(ratatui::widgets::Wrap { trim: false })
        .block(table_block(
            "HTTP filters on the revision ports, in chain order",
            area.width,
        ));
    let chains_height = chains.line_count(area.width) as u16;
    let [chart_area, table_area, chain_area] = Layout::vertical([
        Constraint::Min(8),
        Constraint::Length(rows_shown as u16 + 3),
        Constraint::Length(chains_height),
    ])
    .areas(area);
    frame.render_widget(chains, chain_area);
    let series: Vec<(String, Vec<(f64, f64)>)> = state
        .config_history
        .iter()
        .map(|(pod, samples)| {
            (
                pod.clone(),
                samples
                    .iter()
                    .map(|s| (s.at, s.total() as f64 / 1e3))
                    .collect(),
            )
        })
        .collect();
    let top = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(1.0, f64::max)
        * 1.1;
    let start = (state.now - crate::tui::state::HISTORY_SECONDS).max(0.0);
    let marks: Vec<(String, Vec<(f64, f64)>)> = state
        .install_marks
        .iter()
        .map(|(t, what)| {
            (
                what.clone(),
                (0..=20).map(|i| (*t, top * i as f64 / 20.0)).collect(),
            )
        })
        .collect();
    let mut datasets: Vec<Dataset> = series
        .iter()
        .enumerate()
        .map(|(i, (pod, points))| {
            Dataset::default()
                .name(pod.clone())
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(theme::paint(COLORS[i % COLORS.len()]))
                .data(points)
        })
        .collect();
    datasets.extend(marks.iter().map(|(what, points)| {
        Dataset::default()
            .name(what.clone())
            .marker(Marker::Dot)
            .style(theme::warn())
            .data(points)
    }));
    let chart = Chart::new(datasets)
        .block(table_block(
            "config_dump size (kB) — the Sidecar's shrink shows as a drop",
            chart_area.width,
        ))
        .x_axis(
            Axis::default()
                .bounds([start, state.now.max(start + 1.0)])
                .labels([
                    Line::from(format!("-{:.0}s", state.now - start)),
                    Line::from("now"),
                ])
                .style(theme::dim()),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, top])
                .labels([Line::from("0"), Line::from(format!("{top:.0}"))])
                .style(theme::dim()),
        );
    frame.render_widget(chart, chart_area);

    // Installing rolls the activators, so the sidecars after the apply are new pods that never
    // held the big config: "since start" compares each with the biggest config any activator had
    // when kasi first saw it. Pods that are gone keep their line in the chart, not a row.
    let baseline = state
        .config_history
        .values()
        .filter_map(|samples| samples.first())
        .map(|s| s.total())
        .max()
        .unwrap_or(0);
    let rows = state
        .config_history
        .iter()
        .filter(|(pod, _)| shown(pod))
        .map(|(pod, samples)| {
            let last = samples.last().copied().unwrap_or_default();
            let change = if baseline > 0 && last.total() > 0 && last.total() < baseline {
                format!(
                    "{:.0}× smaller",
                    baseline as f64 / last.total().max(1) as f64
                )
            } else {
                String::new()
            };
            vec![
                pod.clone().into(),
                theme::bytes(last.total()).into(),
                format!("{} ({})", theme::bytes(last.listeners), last.listener_count).into(),
                format!("{} ({})", theme::bytes(last.clusters), last.cluster_count).into(),
                theme::bytes(last.routes).into(),
                theme::bytes(last.endpoints).into(),
                theme::bytes(last.secrets).into(),
                Cell::styled(change, theme::ok()),
            ]
        })
        .collect();
    let columns = [
        Column::new("SIDECAR", 9).cut_to(16),
        Column::new("TOTAL", 8),
        Column::new("LISTENERS", 5),
        Column::new("CLUSTERS", 6),
        Column::new("ROUTES", 3),
        Column::new("ENDPOINTS", 2),
        Column::new("SECRETS", 1),
        Column::new("SINCE START", 7),
    ];
    let table = columns::fit(&columns, rows, inner_width(table_area), theme::header())
        .block(table_block("By section", table_area.width));
    frame.render_widget(table, table_area);
}

/// Per sidecar and revision port, its HTTP filter chain as its config_dump lists it: kasi must
/// come before the `stateful_session`s, and they before the router.
fn chain_lines(state: &AppState) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for activator in state.activators.iter().filter(|a| a.sidecar_injected) {
        let Some(shape) = &activator.shape else {
            lines.push(Line::styled(
                format!(" {:<28} not read yet", activator.pod),
                theme::dim(),
            ));
            continue;
        };
        if shape.chains.is_empty() {
            lines.push(Line::styled(
                format!(" {:<28} no listener on 8012 or 8013", activator.pod),
                theme::dim(),
            ));
        }
        let wrong = !shape.problems().is_empty();
        for (port, chain) in &shape.chains {
            let mut spans = vec![ratatui::text::Span::styled(
                format!(" {:<28} :{port}  ", activator.pod),
                theme::dim(),
            )];
            for (i, filter) in chain.iter().enumerate() {
                if i > 0 {
                    spans.push(ratatui::text::Span::styled(" → ", theme::dim()));
                }
                let ours = filter == "kasi" || filter.starts_with("session:") || filter == "router";
                let style = match (ours, wrong) {
                    (true, true) => theme::bad(),
                    (true, false) => theme::ok(),
                    (false, _) => Style::new(),
                };
                spans.push(ratatui::text::Span::styled(filter.clone(), style));
            }
            lines.push(Line::from(spans));
        }
    }
    if lines.is_empty() {
        lines.push(Line::styled(" no activator sidecar yet", theme::dim()));
    }
    lines
}
