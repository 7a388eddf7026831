//! `5` Stickiness: hit rate over time per activator from the filter's counters, the counters
//! themselves, and the probe's client-side view.

use super::{table_block, theme};
use crate::tui::state::{AppState, ProbeKind, ProbeState};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Paragraph, Row, Table};
use ratatui::Frame;

/// The "right now" window of the counters table.
const RECENT_SECONDS: f64 = 10.0;

const COLORS: [Color; 4] = [Color::Cyan, Color::Magenta, Color::Yellow, Color::Green];

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
    let datasets = series
        .iter()
        .enumerate()
        .map(|(i, (pod, points))| {
            Dataset::default()
                .name(pod.clone())
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(COLORS[i % COLORS.len()]))
                .data(points)
        })
        .collect();
    let start = (state.now - crate::tui::state::HISTORY_SECONDS).max(0.0);
    let title = format!(
        "hit rate % — window {}",
        theme::percent(state.window_hit_rate())
    );
    let chart = Chart::new(datasets)
        .block(table_block(&title))
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
                .bounds([0.0, 100.0])
                .labels([Line::from("0"), Line::from("50"), Line::from("100")])
                .style(theme::dim()),
        );
    frame.render_widget(chart, chart_area);

    let rows = state.counters.iter().map(|(pod, readings)| {
        let last = readings.last().map(|(_, c)| *c).unwrap_or_default();
        let recent = state.recent_hit_rate(pod, RECENT_SECONDS);
        Row::new(vec![
            pod.clone().into(),
            match recent {
                Some(r) => Text::styled(theme::percent(Some(r)), theme::rate(r)),
                None => Text::styled("—", theme::dim()),
            },
            last.requests.to_string().into(),
            last.cookie_routed.to_string().into(),
            last.sticky_hits.to_string().into(),
            last.rebinds.to_string().into(),
            last.rejected.to_string().into(),
            last.header_stripped.to_string().into(),
            warn_if_any(last.steer_failed),
            warn_if_any(last.mcp_not_found),
        ])
    });
    let header = Row::new([
        "SIDECAR",
        "LAST 10s",
        "REQUESTS",
        "ROUTED",
        "STICKY",
        "REBINDS",
        "REJECTED",
        "STRIPPED",
        "STEER FAILED",
        "MCP 404",
    ])
    .style(theme::header());
    let table = Table::new(
        rows,
        [
            Constraint::Min(24),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(13),
            Constraint::Length(8),
        ],
    )
    .header(header)
    .block(table_block("Filter counters (since the sidecar started)"));
    frame.render_widget(table, table_area);

    let probe = match &state.probe {
        None => vec![Line::from(Span::styled(
            "no probe: :probe URL, or :probe --mcp URL",
            theme::dim(),
        ))],
        Some(p) => probe_lines(p),
    };
    frame.render_widget(
        Paragraph::new(probe).block(table_block("Probe (client side)")),
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

/// A counter that should stay 0: shown as a warning when it is not.
fn warn_if_any(value: u64) -> Text<'static> {
    if value == 0 {
        Text::raw("0")
    } else {
        Text::styled(value.to_string(), theme::good(false))
    }
}
