//! `5` Stickiness: hit rate over time per activator from the filter's counters and the probe's
//! client-side rate on one chart, applies and reverts marked; the counters themselves, and the
//! probe's summary.

use super::columns::{self, Cell, Column};
use super::{inner_width, table_block, theme};
use crate::tui::state::{AppState, ProbeKind, ProbeState, PROBE_WINDOW};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, LegendPosition, Paragraph};
use ratatui::Frame;

/// The "right now" window of the counters table.
const RECENT_SECONDS: f64 = 10.0;

const COLORS: [Color; 4] = [Color::Cyan, Color::Magenta, Color::Blue, Color::Green];

/// The probe's series: white dots, one per report, so it reads as a dotted line beside the
/// filter's solid ones.
const PROBE_COLOR: Color = Color::White;

/// The chart's axis labels; the graph's left edge depends on their widths.
const Y_LABELS: [&str; 3] = ["0", "50", "100"];

/// Where an apply's or revert's label goes: the graph's columns, as ratatui's `Chart` lays them
/// out (the y labels, or the first x label less one, then the axis line).
fn mark_column(chart_area: Rect, first_x_label: usize, at: f64, bounds: [f64; 2]) -> Option<u16> {
    let inner = chart_area.inner(ratatui::layout::Margin::new(1, 1));
    let labels = Y_LABELS.iter().map(|l| l.len()).max().unwrap_or(0);
    let left_of_axis = (labels.max(first_x_label.saturating_sub(1)) as u16).min(inner.width / 3);
    let left = inner.x + left_of_axis + 1;
    let width = inner.right().checked_sub(left)?;
    let share = (at - bounds[0]) / (bounds[1] - bounds[0]);
    (0.0..=1.0)
        .contains(&share)
        .then(|| left + (share * f64::from(width.saturating_sub(1))).round() as u16)
}

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState) {
    // The counters table spans the width (ten columns); the probe's summary fits in two lines.
    let [chart_area, table_area, probe_area] = Layout::vertical([
        Constraint::Min(8),
        Constraint::Length(state.counters.len() as u16 + 3),
        Constraint::Length(4),
    ])
    .areas(area);
    let series: Vec<(String, Vec<(f64, f64)>)> = state
        .counters
        .keys()
        .map(|pod| {
            (
                pod.clone(),
                state
                    .hit_rate_series(pod)
                    .into_iter()
                    .map(|(t, r)| (t, r * 100.0))
                    .collect(),
            )
        })
        .collect();
    let probe_points: Vec<(f64, f64)> = state
        .probe_series
        .iter()
        .map(|(t, r)| (*t, r * 100.0))
        .collect();
    // Each apply and revert: a vertical line across the chart, labelled at its top.
    let marks: Vec<(&str, Vec<(f64, f64)>)> = state
        .install_marks
        .iter()
        .map(|(t, what)| (what.as_str(), vec![(*t, 0.0), (*t, 100.0)]))
        .collect();
    let mut datasets: Vec<Dataset> = marks
        .iter()
        .map(|(what, points)| {
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(mark_style(what))
                .data(points)
        })
        .collect();
    datasets.extend(series.iter().enumerate().map(|(i, (pod, points))| {
        Dataset::default()
            .name(format!("filter · {pod}"))
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme::paint(COLORS[i % COLORS.len()]))
            .data(points)
    }));
    if !probe_points.is_empty() {
        datasets.push(
            Dataset::default()
                .name(format!("probe · client side, last {PROBE_WINDOW:.0} s"))
                .marker(Marker::Dot)
                .graph_type(GraphType::Scatter)
                .style(theme::paint(PROBE_COLOR).add_modifier(Modifier::BOLD))
                .data(&probe_points),
        );
    }
    let start = (state.now - crate::tui::state::HISTORY_SECONDS).max(0.0);
    let bounds = [start, state.now.max(start + 1.0)];
    let title = format!(
        "hit rate % — filter (lines) and probe (dots) — window {}",
        theme::percent(state.window_hit_rate())
    );
    let first_x_label = format!("-{:.0}s", state.now - start);
    let chart = Chart::new(datasets)
        .block(table_block(&title, chart_area.width))
        .legend_position(Some(LegendPosition::BottomRight))
        .hidden_legend_constraints((Constraint::Ratio(2, 3), Constraint::Ratio(2, 3)))
        .x_axis(
            Axis::default()
                .bounds(bounds)
                .labels([Line::from(first_x_label.clone()), Line::from("now")])
                .style(theme::dim()),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, 100.0])
                .labels(Y_LABELS.map(Line::from))
                .style(theme::dim()),
        );
    frame.render_widget(chart, chart_area);
    for (at, what) in &state.install_marks {
        let Some(column) = mark_column(chart_area, first_x_label.len(), *at, bounds) else {
            continue;
        };
        // The label sits right of its line, or left of it at the chart's right edge.
        let width = what.len() as u16;
        let right = chart_area.right().saturating_sub(1);
        let x = if column + 1 + width <= right {
            column + 1
        } else {
            column.saturating_sub(width)
        };
        let label = Rect::new(x, chart_area.y + 1, width.min(right - x), 1);
        frame.render_widget(
            Paragraph::new(Span::styled(what.clone(), mark_style(what))),
            label,
        );
    }

    let rows = state
        .counters
        .iter()
        .map(|(pod, readings)| {
            let last = readings.last().map(|(_, c)| *c).unwrap_or_default();
            let recent = state.recent_hit_rate(pod, RECENT_SECONDS);
            vec![
                pod.clone().into(),
                match recent {
                    Some(r) => Cell::styled(theme::percent(Some(r)), theme::rate(r)),
                    None => Cell::styled("—", theme::dim()),
                },
                last.requests.to_string().into(),
                last.cookie_routed.to_string().into(),
                last.sticky_hits.to_string().into(),
                last.rebinds.to_string().into(),
                last.rejected.to_string().into(),
                last.header_stripped.to_string().into(),
                warn_if_any(last.steer_failed),
                warn_if_any(last.mcp_not_found),
            ]
        })
        .collect();
    // The counters that should stay 0 keep their place: a non-zero one is a fault to see.
    let columns = [
        Column::new("SIDECAR", 9).cut_to(16),
        Column::new("LAST 10s", 8),
        Column::new("REQUESTS", 4),
        Column::new("ROUTED", 3),
        Column::new("STICKY", 2),
        Column::new("REBINDS", 5),
        Column::new("REJECTED", 6),
        Column::new("STRIPPED", 1),
        Column::new("STEER FAILED", 7),
        Column::new("MCP 404", 6),
    ];
    let table =
        columns::fit(&columns, rows, inner_width(table_area), theme::header()).block(table_block(
            "Filter counters (since the sidecar started)",
            table_area.width,
        ));
    frame.render_widget(table, table_area);

    let probe = match &state.probe {
        None => vec![Line::from(Span::styled(
            "no probe: :probe URL, or :probe --mcp URL",
            theme::dim(),
        ))],
        Some(p) => probe_lines(p),
    };
    frame.render_widget(
        Paragraph::new(probe).block(table_block("Probe (client side)", probe_area.width)),
        probe_area,
    );
}

/// The probe in two lines: what it runs against and whether it runs, then its counts (MCP's
/// 404s and re-initializations too).
fn probe_lines(p: &ProbeState) -> Vec<Line<'_>> {
    let (kind, key) = match p.target.kind {
        ProbeKind::Cookie => ("cookie jars", 's'),
        ProbeKind::Mcp => ("MCP clients", 'm'),
    };
    let mut counts = vec![
        Span::raw(format!(
            "sessions {} · requests {} · failures {} · ",
            p.sessions, p.requests, p.failures
        )),
        Span::styled("hit rate ", theme::dim()),
        match p.hit_rate {
            Some(r) => Span::styled(theme::percent(Some(r)), theme::rate(r)),
            None => Span::styled("—", theme::dim()),
        },
    ];
    if p.target.kind == ProbeKind::Mcp {
        counts.push(Span::raw(" · 404s "));
        counts.push(if p.not_found == 0 {
            Span::raw("0")
        } else {
            Span::styled(p.not_found.to_string(), theme::good(false))
        });
        counts.push(Span::raw(format!(" · re-inits {}", p.reinitializations)));
    }
    vec![
        Line::from(vec![
            Span::styled(format!("{kind} "), theme::dim()),
            Span::raw(&p.target.url),
            Span::raw("  "),
            Span::styled(
                if p.running {
                    format!("running ({key} stops)")
                } else {
                    format!("stopped ({key} starts)")
                },
                theme::good(p.running),
            ),
        ]),
        Line::from(counts),
    ]
}

fn mark_style(what: &str) -> Style {
    if what == "revert" {
        theme::bad()
    } else {
        theme::warn()
    }
}

/// A counter that should stay 0: shown as a warning when it is not.
fn warn_if_any(value: u64) -> Cell {
    if value == 0 {
        "0".into()
    } else {
        Cell::styled(value.to_string(), theme::good(false))
    }
}
