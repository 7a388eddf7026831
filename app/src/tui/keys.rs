//! Keys, k9s/kubectl style, become [`Action`]s; which keys mean what depends on what is open.

use super::action::Action;
use super::state::{AppState, Confirm};
use super::view::View;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Every key, for the help overlay: (keys, what they do, where).
pub const KEYS: &[(&str, &str, &str)] = &[
    ("1-6 / Tab / Shift-Tab", "switch view", "everywhere"),
    ("j k / ↓ ↑", "move the selection", "tables"),
    ("g / G", "first / last row", "tables"),
    ("/", "filter the current table", "tables"),
    (
        ":",
        "command palette: :sessions :apply :probe :ctx :q …",
        "everywhere",
    ),
    (
        ":ctx [NAME]",
        "switch kubeconfig context (a list without NAME)",
        "everywhere",
    ),
    (
        "Esc",
        "back: close the overlay, clear the filter",
        "everywhere",
    ),
    ("?", "this help", "everywhere"),
    (
        "p",
        "paste a cookie or Mcp-Session-Id line to decode",
        "Sessions",
    ),
    (
        "Enter",
        "the selected session's story: why it is where it is (j/k scroll)",
        "Sessions",
    ),
    (
        "L",
        "raise wasm logs to info for 10 min, then restore",
        "Sessions",
    ),
    (
        "s",
        "start / stop a cookie probe on the lab's ingress",
        "Stickiness",
    ),
    (
        "m",
        "start / stop an MCP probe on the lab's MCP service",
        "Stickiness",
    ),
    (
        "a / r",
        "apply / revert the bundle (asks y/n first)",
        "Install",
    ),
    (
        "d / D",
        "diff of the selected piece / of all (server dry run)",
        "Install",
    ),
    (
        "t",
        "show what revert would do instead of apply, or back",
        "Install",
    ),
    (
        "j k PgUp PgDn g G",
        "scroll the diff; Esc closes it",
        "diff",
    ),
    (
        "x / u",
        "stop / restore the selected pod (lab only)",
        "Endpoints",
    ),
    (
        "R",
        "restart the selected activator's sidecar (lab only)",
        "Overview",
    ),
    ("h", "show / hide the demo guide", "kasi demo"),
    ("space / n", "the tour's next step", "demo --tour"),
    ("q / Ctrl-C", "quit", "everywhere"),
];

pub fn action(state: &AppState, key: KeyEvent) -> Option<Action> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    if state.tour.is_some() && state.ui.palette.is_none() && !state.ui.filter_editing {
        // The tour opens overlays (the diff, the paste box) itself: its keys win over theirs.
        match key.code {
            KeyCode::Char(' ') | KeyCode::Char('n') => return Some(Action::TourNext),
            KeyCode::Char('q') => return Some(Action::Quit),
            _ => {}
        }
    }
    if state.install.diff.is_some() {
        return match key.code {
            KeyCode::Char('j') | KeyCode::Down => Some(Action::Down),
            KeyCode::Char('k') | KeyCode::Up => Some(Action::Up),
            KeyCode::PageDown | KeyCode::Char(' ') => Some(Action::PageDown),
            KeyCode::PageUp => Some(Action::PageUp),
            KeyCode::Char('g') | KeyCode::Home => Some(Action::Top),
            KeyCode::Char('G') | KeyCode::End => Some(Action::Bottom),
            KeyCode::Char('d') => Some(Action::ShowDiff { all: false }),
            KeyCode::Char('D') => Some(Action::ShowDiff { all: true }),
            KeyCode::Char('t') if state.install.confirm.is_none() => Some(Action::ToggleContext),
            KeyCode::Esc | KeyCode::Char('q') => Some(Action::Back),
            _ => None,
        };
    }
    if state.install.confirm.is_some() {
        return match key.code {
            KeyCode::Char('d') => Some(Action::ShowDiff { all: false }),
            KeyCode::Char('D') => Some(Action::ShowDiff { all: true }),
            KeyCode::Char('y') | KeyCode::Char('Y') => Some(Action::Answer(true)),
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => Some(Action::Answer(false)),
            _ => None,
        };
    }
    let typing = state.ui.palette.is_some() || state.ui.filter_editing || state.ui.paste.is_some();
    if typing {
        return match key.code {
            KeyCode::Esc => Some(Action::Back),
            KeyCode::Enter => Some(Action::Submit),
            KeyCode::Backspace => Some(Action::Erase),
            KeyCode::Char(c) => Some(Action::Type(c)),
            _ => None,
        };
    }
    if state.ui.context_picker.is_some() {
        return match key.code {
            KeyCode::Char('j') | KeyCode::Down => Some(Action::Down),
            KeyCode::Char('k') | KeyCode::Up => Some(Action::Up),
            KeyCode::Enter => Some(Action::Submit),
            KeyCode::Esc | KeyCode::Char('q') => Some(Action::Back),
            _ => None,
        };
    }
    if state.ui.help {
        return match key.code {
            KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') => Some(Action::ToggleHelp),
            _ => None,
        };
    }
    if state.ui.story.is_some() {
        return match key.code {
            KeyCode::Esc | KeyCode::Char('q') | KeyCode::Enter => Some(Action::Back),
            KeyCode::Char('j') | KeyCode::Down => Some(Action::Down),
            KeyCode::Char('k') | KeyCode::Up => Some(Action::Up),
            KeyCode::Char('g') | KeyCode::Home => Some(Action::Top),
            KeyCode::Char('G') | KeyCode::End => Some(Action::Bottom),
            KeyCode::Char('?') => Some(Action::ToggleHelp),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Tab => Action::NextView,
        KeyCode::BackTab => Action::PreviousView,
        KeyCode::Char(d @ '1'..='6') => Action::Show(View::from_digit(d)?),
        KeyCode::Char('j') | KeyCode::Down => Action::Down,
        KeyCode::Char('k') | KeyCode::Up => Action::Up,
        KeyCode::Char('g') | KeyCode::Home => Action::Top,
        KeyCode::Char('G') | KeyCode::End => Action::Bottom,
        KeyCode::Esc => Action::Back,
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Char(':') => Action::OpenPalette,
        KeyCode::Char('/') => Action::OpenFilter,
        KeyCode::Char('h') => Action::ToggleGuide,
        KeyCode::Char('p') if state.view == View::Sessions => Action::OpenPaste,
        KeyCode::Enter if state.view == View::Sessions => Action::OpenStory,
        KeyCode::Char('L') if state.view == View::Sessions => Action::RaiseWasmLog,
        KeyCode::Char('s') if state.view == View::Stickiness => Action::ToggleProbe,
        KeyCode::Char('m') if state.view == View::Stickiness => Action::ToggleMcpProbe,
        KeyCode::Char('a') if state.view == View::Install => Action::Ask(Confirm::Apply),
        KeyCode::Char('r') if state.view == View::Install => Action::Ask(Confirm::Revert),
        KeyCode::Char('d') if state.view == View::Install => Action::ShowDiff { all: false },
        KeyCode::Char('D') if state.view == View::Install => Action::ShowDiff { all: true },
        KeyCode::Char('t') if state.view == View::Install => Action::ToggleContext,
        KeyCode::Char('x') if state.view == View::Endpoints => Action::StopSelectedPod,
        KeyCode::Char('u') if state.view == View::Endpoints => Action::RestoreSelectedPod,
        KeyCode::Char('R') if state.view == View::Overview => Action::RestartSelectedSidecar,
        _ => return None,
    })
}
