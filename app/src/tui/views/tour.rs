//! `kasi demo --tour`: the caption bar over the views, and the summary screen at the end.

use super::theme;
use crate::tui::state::AppState;
use crate::tui::tour::{self, Step};
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// One reversed line: where the tour is, what the screen shows, and how to go on.
pub fn draw_caption(frame: &mut Frame, area: Rect, state: &AppState) {
    let Some(tour) = &state.tour else {
        return;
    };
    let bar = theme::accent().add_modifier(Modifier::REVERSED | Modifier::BOLD);
    let (position, next) = match tour.step {
        None => ("kasi tour".to_owned(), "space starts"),
        Some(Step::Summary) => (
            format!("step {0}/{0}", Step::ALL.len()),
            "q quits (the lab stops)",
        ),
        Some(step) => (
            format!("step {}/{}", step.number(), Step::ALL.len()),
            if tour.auto.is_some() {
                "space next (auto)"
            } else {
                "space next"
            },
        ),
    };
    let line = Line::from(vec![
        Span::styled(format!(" {position} · "), bar),
        Span::styled(tour::caption(state), bar),
        Span::styled(format!(" · {next} "), bar),
    ]);
    frame.render_widget(ratatui::widgets::Clear, area);
    frame.render_widget(Paragraph::new(line).style(bar), area);
}

/// The last step: the measured numbers, over the views.
pub fn draw_summary(frame: &mut Frame, state: &AppState) {
    let Some(tour) = &state.tour else {
        return;
    };
    if tour.step != Some(Step::Summary) {
        return;
    }
    let rows = tour::summary(&tour.measured);
    let mut lines = vec![Line::from("")];
    for (what, measured) in rows {
        lines.push(Line::from(vec![
            Span::styled(format!("  {what:<18}"), theme::header()),
            Span::raw(measured),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::styled(
        "  measured on this lab by kasi's probe and the sidecars' config_dump · q quits",
        theme::dim(),
    ));
    let width = lines.iter().map(Line::width).max().unwrap_or(40) as u16 + 4;
    let area = super::centered(frame.area(), width.max(60), lines.len() as u16 + 2);
    super::overlay(frame, area, "The tour, measured", Paragraph::new(lines));
}
