//! The session story panel (`Enter` in Sessions): one sentence on why the session is where it
//! is, then its timeline, newest last, scrolled with j/k.

use super::{overlay_area, table_block, theme};
use crate::affinity::story::{story, Tone};
use crate::tui::state::{AppState, Seconds, StoryPanel};
use ratatui::layout::{Constraint, Layout};
use ratatui::text::{Line, Text};
use ratatui::widgets::{Clear, Paragraph, Row, Table};
use ratatui::Frame;

/// `12:34 (-300s)`.
const WHEN: u16 = 13;
/// The widest SEEN BY and REASON cells take, at most: beyond, a cell is cut with `…` so that
/// WHAT (which wraps, never cut) keeps room.
const SEEN_BY_MAX: u16 = 40;
const REASON_MAX: u16 = 24;

/// `1:02 (-18s)`: when, on the UI's clock, and how long ago.
fn when(at: Seconds, now: Seconds) -> String {
    let at_whole = at.max(0.0) as u64;
    format!(
        "{}:{:02} (-{:.0}s)",
        at_whole / 60,
        at_whole % 60,
        (now - at).max(0.0)
    )
}

/// Who the session is, for the panel's title.
fn identity(panel: &StoryPanel) -> String {
    let who = match (panel.carrier.as_str(), &panel.session) {
        ("envelope", Some(hash)) => format!("MCP session {hash}"),
        ("envelope", None) => "MCP session".to_owned(),
        ("header", _) => "header-mode session".to_owned(),
        _ => format!("cookie sessions on {}", panel.address),
    };
    format!("{who} · {}", panel.authority)
}

pub fn draw(frame: &mut Frame, state: &AppState, panel: &StoryPanel) {
    let area = overlay_area(frame.area());
    frame.render_widget(Clear, area);
    let Some(history) = state.story_history(panel) else {
        let block =
            table_block("Session story (Esc closes)", area.width).border_style(theme::accent());
        let text = Paragraph::new(vec![
            Line::from(identity(panel)),
            Line::styled(
                "No decision line names this session: kasi keeps stories of what activators log (the probe's own rows come from its client side).",
                theme::dim(),
            ),
        ])
        .wrap(ratatui::widgets::Wrap { trim: true })
        .block(block);
        frame.render_widget(text, area);
        return;
    };
    let story = story(history, state.now);
    let total = story.steps.len();
    let end = total - panel.scroll_up.min(total.saturating_sub(1));
    let title = format!(
        "Session story · {} · steps {}–{end} of {total} (j/k scroll · Esc closes)",
        identity(panel),
        (end > 0) as usize
    );
    let block = table_block(&title, area.width).border_style(theme::accent());
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let style = match story.tone {
        Tone::Sticking => theme::ok(),
        Tone::Moved => theme::warn(),
        Tone::NotSticking => theme::bad(),
    };
    let headline: Vec<Line> = super::sessions::wrap(&story.headline, inner.width as usize)
        .into_iter()
        .map(|l| Line::styled(l, style))
        .collect();
    let [headline_area, _, steps_area] = Layout::vertical([
        Constraint::Length(headline.len() as u16),
        Constraint::Length(1),
        Constraint::Min(2),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(headline), headline_area);

    // SEEN BY and REASON as wide as their widest cell (within a cap, then cut with `…`); long
    // steps wrap in their WHAT cell; the newest steps up to `end` that fit are shown.
    let widest = |cell: fn(&crate::affinity::story::Step) -> &str, header: &str, cap: u16| {
        story
            .steps
            .iter()
            .map(|s| unicode_width::UnicodeWidthStr::width(cell(s)))
            .chain([header.len()])
            .max()
            .unwrap_or(0)
            .min(cap as usize) as u16
    };
    let seen_by = widest(|s| &s.source, "SEEN BY", SEEN_BY_MAX);
    let reason = widest(|s| &s.reason, "REASON", REASON_MAX);
    let what_width = steps_area.width.saturating_sub(WHEN + seen_by + reason + 3) as usize;
    let mut height = (steps_area.height as usize).saturating_sub(1);
    let mut rows = Vec::new();
    for step in story.steps[..end].iter().rev() {
        let what = super::sessions::wrap(&step.what, what_width);
        if what.len() > height {
            break;
        }
        height -= what.len();
        rows.push(
            Row::new(vec![
                Text::from(when(step.at, state.now)),
                Text::from(super::columns::cut(&step.source, seen_by)),
                Text::from(what.join("\n")),
                Text::from(super::columns::cut(&step.reason, reason)),
            ])
            .height(what.len() as u16),
        );
    }
    rows.reverse();
    let table = Table::new(
        rows,
        [
            Constraint::Length(WHEN),
            Constraint::Length(seen_by),
            Constraint::Min(20),
            Constraint::Length(reason),
        ],
    )
    .header(Row::new(["WHEN", "SEEN BY", "WHAT", "REASON"]).style(theme::header()));
    frame.render_widget(table, steps_area);
}
