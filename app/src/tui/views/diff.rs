//! The diff overlay (`d`, `D` in Install): what apply or revert would change, as the server's dry
//! run answered, in unified YAML diff form — `+` green, `-` red, `@@` dim — scrolled by j/k,
//! PgUp/PgDn, g/G.

use super::{centered, overlay, theme};
use crate::install::preview::{Preview, PreviewKind, Verdict};
use crate::tui::state::{AppState, DiffOverlay};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// The overlay's text, one entry a line (empty when no overlay is open).
pub fn lines(state: &AppState) -> Vec<String> {
    let Some(overlay) = &state.install.diff else {
        return Vec::new();
    };
    let word = overlay.kind.word();
    let preview = match state.install.preview(overlay.kind) {
        None => {
            let progress = state
                .install
                .previewing
                .map(|(done, total)| format!(" ({done}/{total} objects)"))
                .unwrap_or_default();
            return vec![format!(
                "asking the API server what {word} would do (dryRun=All){progress}…"
            )];
        }
        Some(Err(why)) => return vec![format!("the {word} dry run failed: {why}")],
        Some(Ok(preview)) => preview,
    };
    let text = match &overlay.piece {
        None => everything(preview),
        Some((id, kind, name)) => one_piece(preview, id, kind, name),
    };
    text.lines().map(str::to_owned).collect()
}

fn everything(preview: &Preview) -> String {
    let word = preview.kind.word();
    let mut text = preview.all_diffs();
    if text.is_empty() {
        text = preview.note.clone().unwrap_or_else(|| {
            format!("{word} would change nothing: every object is as it would leave it")
        });
        text.push('\n');
    }
    if let Some(rollout) = &preview.rollout {
        text.push_str(&format!("### then {rollout}\n"));
    }
    text
}

fn one_piece(preview: &Preview, id: &str, kind: &str, name: &str) -> String {
    let word = preview.kind.word();
    let found = preview
        .of_piece(id)
        .or_else(|| preview.of_target(kind, name));
    let Some(object) = found else {
        return format!("{word} would not touch {kind} {name}\n");
    };
    match &object.verdict {
        Verdict::Unchanged => format!("{word} would leave {} unchanged\n", object.target),
        Verdict::Refused(why) => {
            format!("the API server would refuse {}: {why}\n", object.target)
        }
        verdict => format!(
            "### {} — {}\n{}",
            object.target,
            verdict.label(),
            object.diff
        ),
    }
}

fn title(overlay: &DiffOverlay) -> String {
    let what = match &overlay.piece {
        Some((_, kind, name)) => format!("{kind} {name}"),
        None => "every object".to_owned(),
    };
    let other = match overlay.kind {
        PreviewKind::Apply => "revert",
        PreviewKind::Revert => "apply",
    };
    format!(
        "What {} would do to {what} · j/k PgUp/PgDn g/G scroll · t {other} · Esc closes",
        overlay.kind.word()
    )
}

fn styled(line: &str) -> Line<'_> {
    let style = if line.starts_with("###") {
        theme::header()
    } else if line.starts_with("+++") || line.starts_with("---") {
        Style::new().add_modifier(Modifier::BOLD)
    } else if line.starts_with('+') {
        theme::ok()
    } else if line.starts_with('-') {
        theme::bad()
    } else if line.starts_with("@@") {
        theme::dim()
    } else {
        Style::new()
    };
    Line::styled(line, style)
}

/// How many diff lines the overlay shows on a screen this tall (it leaves a line above and below,
/// and has borders).
pub fn page_height(screen_height: u16) -> usize {
    screen_height.saturating_sub(4).max(1) as usize
}

/// The largest useful scroll: the last page's first line (the last line when the screen's height
/// is unknown).
pub fn last_scroll(state: &AppState) -> usize {
    let len = lines(state).len();
    match state.ui.screen_height {
        0 => len.saturating_sub(1),
        height => len.saturating_sub(page_height(height)),
    }
}

pub fn draw(frame: &mut Frame, state: &AppState) {
    let Some(overlay_state) = &state.install.diff else {
        return;
    };
    let area = centered(
        frame.area(),
        frame.area().width.saturating_sub(4),
        frame.area().height.saturating_sub(2),
    );
    let text = lines(state);
    // Never scrolled past the last page.
    let height = page_height(frame.area().height);
    let scroll = overlay_state
        .scroll
        .min(text.len().saturating_sub(height.max(1)));
    let shown: Vec<Line> = text
        .iter()
        .skip(scroll)
        .take(height)
        .map(|l| styled(l))
        .collect();
    overlay(frame, area, &title(overlay_state), Paragraph::new(shown));
}
