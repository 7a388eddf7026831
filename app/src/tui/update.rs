//! Actions change the state; what needs the outside world comes back as [`Effect`]s.

use super::action::{Action, Effect};
use super::probe;
use super::state::{AppState, Confirm, DiffOverlay, PasteBox, ProbeKind, StoryPanel, WasmLogRaise};
use super::tour;
use super::view::View;
use super::views::{diff, rows};
use crate::install::preview::PreviewKind;

/// How far `PgUp` / `PgDn` move the diff when the screen's height is unknown.
const PAGE: usize = 20;

pub fn update(state: &mut AppState, action: Action) -> Vec<Effect> {
    if state.ui.context_picker.is_some() {
        if let Some(effects) = pick_context(state, &action) {
            return effects;
        }
    }
    if action == Action::TourNext {
        // Entering a step is the keys a presenter would press, through this same path.
        return tour::advance(state)
            .into_iter()
            .flat_map(|action| update(state, action))
            .collect();
    }
    if state.ui.story.is_some() && !state.ui.help {
        if let Some(effects) = scroll_story(state, &action) {
            return effects;
        }
    }
    if state.install.diff.is_some() {
        if let Some(effects) = update_diff(state, &action) {
            return effects;
        }
    }
    let was_install = state.view == View::Install;
    let effects = update_view(state, action);
    if !was_install && state.view == View::Install {
        return effects.into_iter().chain(preview(state)).collect();
    }
    effects
}

/// The dry runs behind the "would" column, asked again each time the Install view opens (the
/// cluster may have changed), unless they are running.
pub fn preview(state: &mut AppState) -> Option<Effect> {
    if state.install.previewing.is_some() || state.install.progress.is_some() {
        return None;
    }
    state.install.previewing = Some((0, 0));
    Some(Effect::Preview)
}

/// Keys while the diff overlay is open: scrolling, switching, closing. `None`: not the overlay's.
fn update_diff(state: &mut AppState, action: &Action) -> Option<Vec<Effect>> {
    let last = diff::last_scroll(state);
    let page = match state.ui.screen_height {
        0 => PAGE,
        height => diff::page_height(height),
    };
    let overlay = state.install.diff.as_mut()?;
    overlay.scroll = overlay.scroll.min(last);
    match action {
        Action::Up => overlay.scroll = overlay.scroll.saturating_sub(1),
        Action::Down => overlay.scroll = (overlay.scroll + 1).min(last),
        Action::PageUp => overlay.scroll = overlay.scroll.saturating_sub(page),
        Action::PageDown => overlay.scroll = (overlay.scroll + page).min(last),
        Action::Top => overlay.scroll = 0,
        Action::Bottom => overlay.scroll = last,
        Action::Back => state.install.diff = None,
        Action::ToggleContext => {
            overlay.kind = other(overlay.kind);
            overlay.scroll = 0;
            state.install.context = overlay.kind;
        }
        _ => return None,
    }
    Some(Vec::new())
}

fn other(kind: PreviewKind) -> PreviewKind {
    match kind {
        PreviewKind::Apply => PreviewKind::Revert,
        PreviewKind::Revert => PreviewKind::Apply,
    }
}

fn update_view(state: &mut AppState, action: Action) -> Vec<Effect> {
    let last_row = rows::count(state).saturating_sub(1);
    let ui = &mut state.ui;
    match action {
        Action::Quit => ui.quit = true,
        Action::Show(view) => show(state, view),
        Action::NextView => show(state, state.view.next()),
        Action::PreviousView => show(state, state.view.previous()),
        Action::Up => ui.selected = ui.selected.saturating_sub(1),
        Action::Down => ui.selected = (ui.selected + 1).min(last_row),
        Action::Top => ui.selected = 0,
        Action::Bottom => ui.selected = last_row,
        Action::Back => {
            if ui.palette.take().is_none()
                && ui.paste.take().is_none()
                && ui.story.take().is_none()
                && !std::mem::take(&mut ui.help)
                && !std::mem::take(&mut ui.guide)
            {
                ui.filter_editing = false;
                ui.filter.clear();
            }
            ui.filter_editing = false;
        }
        Action::ToggleHelp => ui.help = !ui.help,
        Action::ToggleGuide => ui.guide = !ui.guide,
        Action::OpenPalette => ui.palette = Some(String::new()),
        Action::OpenFilter => {
            ui.filter_editing = true;
            ui.filter.clear();
            ui.selected = 0;
        }
        Action::OpenPaste => ui.paste = Some(PasteBox::default()),
        Action::OpenStory => {
            let panel = rows::sessions(state)
                .get(state.ui.selected)
                .map(|row| StoryPanel {
                    authority: row.authority.clone(),
                    carrier: row.carrier.clone(),
                    session: row.session.clone(),
                    address: row.address.clone(),
                    scroll_up: 0,
                });
            match panel {
                Some(panel) => state.ui.story = Some(panel),
                None => state.ui.message = Some("no session selected".into()),
            }
        }
        Action::Type(c) => {
            if let Some(text) = ui.palette.as_mut() {
                text.push(c);
            } else if let Some(paste) = ui.paste.as_mut() {
                paste.input.push(c);
                paste.result = None;
            } else if ui.filter_editing {
                ui.filter.push(c);
                ui.selected = 0;
            }
        }
        Action::Erase => {
            if let Some(text) = ui.palette.as_mut() {
                text.pop();
            } else if let Some(paste) = ui.paste.as_mut() {
                paste.input.pop();
                paste.result = None;
            } else if ui.filter_editing {
                ui.filter.pop();
            }
        }
        Action::Submit => return submit(state),
        Action::Ask(what) => {
            if state.install.progress.is_none() {
                state.install.confirm = Some(what);
            }
        }
        Action::Answer(yes) => {
            if let (true, Some(what)) = (yes, state.install.confirm.take()) {
                state.install.progress = Some((0, 0, "starting".into()));
                return vec![match what {
                    Confirm::Apply => Effect::Apply,
                    Confirm::Revert => Effect::Revert,
                }];
            }
            state.install.confirm = None;
        }
        Action::StopSelectedPod | Action::RestoreSelectedPod => {
            if !state.cluster.lab {
                ui.message = Some("stopping pods is a lab control: run `kasi demo`".into());
                return Vec::new();
            }
            if let Some(pod) = rows::selected_pod(state) {
                return vec![if action == Action::StopSelectedPod {
                    Effect::StopPod(pod)
                } else {
                    Effect::RestorePod(pod)
                }];
            }
        }
        Action::RestartSelectedSidecar => {
            if !state.cluster.lab {
                ui.message = Some("restarting a sidecar is a lab control: run `kasi demo`".into());
                return Vec::new();
            }
            if let Some(activator) = state.activators.get(state.ui.selected) {
                return vec![Effect::RestartSidecar(activator.pod.clone())];
            }
        }
        Action::RaiseWasmLog => {
            let pods: Vec<String> = state
                .wasm_raise_targets()
                .into_iter()
                .map(str::to_owned)
                .collect();
            if pods.is_empty() {
                let held = state.activators.iter().any(|a| state.raise_active(&a.pod));
                state.ui.message = Some(if held {
                    "the wasm logger is raised already where it was below info".into()
                } else {
                    "every sidecar's wasm logger writes info lines already: nothing to raise".into()
                });
                return Vec::new();
            }
            for pod in &pods {
                state.wasm_log.insert(pod.clone(), WasmLogRaise::Raising);
            }
            state.ui.message = Some(format!(
                "raising the wasm logger to info on {}",
                pods.join(", ")
            ));
            return vec![Effect::RaiseWasmLog(pods)];
        }
        Action::PageUp | Action::PageDown | Action::TourNext => {}
        Action::ShowDiff { all } => {
            let kind = state
                .install
                .confirm
                .map_or(state.install.context, Confirm::preview_kind);
            let piece = (!all)
                .then(|| rows::pieces(state).get(state.ui.selected).copied())
                .flatten()
                .map(|p| (p.id.clone(), p.kind.clone(), p.name.clone()));
            state.install.diff = Some(DiffOverlay {
                kind,
                piece,
                scroll: 0,
            });
        }
        Action::ToggleContext => state.install.context = other(state.install.context),
        Action::ToggleProbe => return toggle_probe(state, ProbeKind::Cookie),
        Action::ToggleMcpProbe => return toggle_probe(state, ProbeKind::Mcp),
    }
    Vec::new()
}

/// `s` stops whatever probe runs, else starts the cookie one; `m` stops a running MCP probe, else
/// starts one (a running cookie probe gives way: one probe at a time).
fn toggle_probe(state: &mut AppState, kind: ProbeKind) -> Vec<Effect> {
    if let Some(probe) = state.probe.as_mut() {
        if probe.running && (kind == ProbeKind::Cookie || probe.target.kind == kind) {
            // The last report stays on screen, marked stopped.
            probe.running = false;
            return vec![Effect::StopProbe];
        }
    }
    let target = match kind {
        ProbeKind::Cookie => &state.probe_targets.cookie,
        ProbeKind::Mcp => &state.probe_targets.mcp,
    };
    match target {
        Some(target) => vec![Effect::StartProbe(target.clone())],
        None => {
            state.ui.message = Some(match kind {
                ProbeKind::Cookie => "no probe URL: use `:probe URL`".into(),
                ProbeKind::Mcp => "no MCP probe URL: use `:probe --mcp URL`".into(),
            });
            Vec::new()
        }
    }
}

/// While a story is open, moving scrolls it (k older, j newer); `None` for other actions.
fn scroll_story(state: &mut AppState, action: &Action) -> Option<Vec<Effect>> {
    let panel = state.ui.story.as_ref()?;
    let steps = state.story_history(panel).map_or(0, |h| h.happenings.len());
    let oldest = steps.saturating_sub(1);
    let panel = state.ui.story.as_mut()?;
    panel.scroll_up = match action {
        Action::Up => (panel.scroll_up + 1).min(oldest),
        Action::Down => panel.scroll_up.saturating_sub(1),
        Action::Top => oldest,
        Action::Bottom => 0,
        _ => return None,
    };
    Some(Vec::new())
}

/// Keys while `:ctx`'s list is open. `None`: not the list's.
fn pick_context(state: &mut AppState, action: &Action) -> Option<Vec<Effect>> {
    let selected = state.ui.context_picker.as_mut()?;
    let last = state.contexts.len().saturating_sub(1);
    match action {
        Action::Up => *selected = selected.saturating_sub(1),
        Action::Down => *selected = (*selected + 1).min(last),
        Action::Back => state.ui.context_picker = None,
        Action::Submit => {
            let index = state.ui.context_picker.take()?;
            let name = state.contexts.get(index)?.clone();
            return Some(switch_context(state, name));
        }
        _ => return None,
    }
    Some(Vec::new())
}

fn switch_context(state: &mut AppState, name: String) -> Vec<Effect> {
    if name == state.cluster.context {
        state.ui.message = Some(format!("already on context {name}"));
        return Vec::new();
    }
    state.ui.message = Some(format!("switching to context {name}…"));
    vec![Effect::SwitchContext(name)]
}

/// `:ctx` opens the list of the kubeconfig's contexts (the current one selected); `:ctx NAME`
/// switches at once.
fn context_command(state: &mut AppState, name: &str) -> Vec<Effect> {
    if state.contexts.is_empty() {
        state.ui.message = Some(if state.cluster.lab {
            "the lab has one context; `kasi --kubeconfig FILE` opens another cluster".into()
        } else {
            "no kubeconfig contexts to switch to".into()
        });
        return Vec::new();
    }
    if name.is_empty() {
        let current = state
            .contexts
            .iter()
            .position(|c| *c == state.cluster.context)
            .unwrap_or(0);
        state.ui.context_picker = Some(current);
        return Vec::new();
    }
    if !state.contexts.iter().any(|c| c == name) {
        state.ui.message = Some(format!(
            "no context {name:?} in the kubeconfig; it has {}",
            state.contexts.join(", ")
        ));
        return Vec::new();
    }
    switch_context(state, name.to_owned())
}

fn show(state: &mut AppState, view: View) {
    state.ui.story = None;
    if state.view != view {
        state.view = view;
        state.ui.selected = 0;
        state.ui.filter.clear();
        state.ui.filter_editing = false;
    }
}

fn submit(state: &mut AppState) -> Vec<Effect> {
    if let Some(command) = state.ui.palette.take() {
        return run_command(state, command.trim());
    }
    if let Some(paste) = state.ui.paste.as_mut() {
        paste.result =
            Some(crate::affinity::decode::decode(&paste.input, None, None).map(|d| d.to_text()));
        return Vec::new();
    }
    state.ui.filter_editing = false;
    Vec::new()
}

fn run_command(state: &mut AppState, command: &str) -> Vec<Effect> {
    let (verb, argument) = command
        .split_once(' ')
        .map_or((command, ""), |(v, a)| (v, a.trim()));
    match verb {
        "q" | "quit" | "exit" => state.ui.quit = true,
        "help" => state.ui.help = true,
        "apply" => return update(state, Action::Ask(Confirm::Apply)),
        "revert" => return update(state, Action::Ask(Confirm::Revert)),
        "ctx" | "context" | "contexts" => return context_command(state, argument),
        "probe" => match probe::parse_command(argument) {
            Ok(target) => {
                show(state, View::Stickiness);
                // `s` / `m` start this one again later.
                match target.kind {
                    ProbeKind::Cookie => state.probe_targets.cookie = Some(target.clone()),
                    ProbeKind::Mcp => state.probe_targets.mcp = Some(target.clone()),
                }
                return vec![Effect::StartProbe(target)];
            }
            Err(e) => state.ui.message = Some(format!(":probe: {e}")),
        },
        other => match View::from_name(other) {
            Some(view) => show(state, view),
            None => state.ui.message = Some(format!("unknown command {other:?}: try :help")),
        },
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::fixture::lab_state;
    use crate::tui::keys::action;
    use crate::tui::state::{ProbeState, ProbeTarget};
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    fn press(state: &mut AppState, keys: &str) -> Vec<Effect> {
        let mut effects = Vec::new();
        for c in keys.chars() {
            let code = match c {
                '\t' => KeyCode::Tab,
                '\n' => KeyCode::Enter,
                '\x1b' => KeyCode::Esc,
                c => KeyCode::Char(c),
            };
            if let Some(a) = action(state, KeyEvent::new(code, KeyModifiers::NONE)) {
                effects.extend(update(state, a));
            }
        }
        effects
    }

    #[test]
    fn opening_install_asks_the_dry_runs_once() {
        let mut state = lab_state(View::Overview);
        assert_eq!(press(&mut state, "6"), vec![Effect::Preview]);
        assert_eq!(state.install.previewing, Some((0, 0)));
        // Still running: not asked twice.
        assert_eq!(press(&mut state, "16"), vec![]);
    }

    #[test]
    fn d_opens_the_selected_pieces_diff_and_scrolls_it() {
        let mut state = lab_state(View::Install);
        press(&mut state, "j");
        press(&mut state, "d");
        let overlay = state.install.diff.clone().expect("the diff is open");
        assert_eq!(overlay.kind, PreviewKind::Apply);
        assert_eq!(
            overlay.piece,
            Some(("injection".into(), "Deployment".into(), "activator".into()))
        );
        let lines = diff::lines(&state);
        press(&mut state, "jjj");
        assert_eq!(state.install.diff.as_ref().unwrap().scroll, 3);
        // j moves the diff, not the table.
        assert_eq!(state.ui.selected, 1);
        press(&mut state, "G");
        assert_eq!(state.install.diff.as_ref().unwrap().scroll, lines.len() - 1);
        press(&mut state, "g");
        assert_eq!(state.install.diff.as_ref().unwrap().scroll, 0);
        // On a known screen G stops at the last page, and k moves up from there at once.
        state.ui.screen_height = 10;
        press(&mut state, "G");
        let last_page = lines.len() - diff::page_height(10);
        assert_eq!(state.install.diff.as_ref().unwrap().scroll, last_page);
        press(&mut state, "k");
        assert_eq!(state.install.diff.as_ref().unwrap().scroll, last_page - 1);
        state.ui.screen_height = 0;
        // t shows what revert would do instead.
        press(&mut state, "t");
        assert_eq!(
            state.install.diff.as_ref().unwrap().kind,
            PreviewKind::Revert
        );
        assert_eq!(state.install.context, PreviewKind::Revert);
        press(&mut state, "\x1b");
        assert_eq!(state.install.diff, None);
        press(&mut state, "D");
        assert_eq!(state.install.diff.as_ref().unwrap().piece, None);
    }

    #[test]
    fn the_confirmations_diff_is_of_its_command() {
        let mut state = lab_state(View::Install);
        press(&mut state, "r");
        press(&mut state, "D");
        assert_eq!(
            state.install.diff.as_ref().unwrap().kind,
            PreviewKind::Revert
        );
        // Esc closes the diff, then the question is still asked.
        press(&mut state, "\x1b");
        assert_eq!(state.install.confirm, Some(Confirm::Revert));
        assert_eq!(press(&mut state, "y"), vec![Effect::Revert]);
    }

    #[test]
    fn number_keys_and_tab_switch_views() {
        let mut state = lab_state(View::Overview);
        press(&mut state, "3");
        assert_eq!(state.view, View::Sessions);
        press(&mut state, "\t\t\t\t");
        assert_eq!(state.view, View::Overview);
        press(&mut state, ":stick\n");
        assert_eq!(state.view, View::Stickiness);
    }

    #[test]
    fn selection_stays_inside_the_table_and_the_filter_narrows_it() {
        let mut state = lab_state(View::Endpoints);
        press(&mut state, "jjjjjjj");
        assert_eq!(state.ui.selected, 2);
        press(&mut state, "k/c9w\n");
        assert_eq!(rows::pods(&state).len(), 1);
        assert_eq!(state.ui.selected, 0);
        press(&mut state, "\x1b");
        assert_eq!(rows::pods(&state).len(), 3);
    }

    #[test]
    fn lab_keys_become_effects_on_the_selected_row() {
        let mut state = lab_state(View::Endpoints);
        assert_eq!(
            press(&mut state, "jx"),
            vec![Effect::StopPod(
                "hello-00001-deployment-5f7b9c8d4-m4pzd".into()
            )]
        );
        assert_eq!(
            press(&mut state, "u"),
            vec![Effect::RestorePod(
                "hello-00001-deployment-5f7b9c8d4-m4pzd".into()
            )]
        );
        press(&mut state, "1");
        assert_eq!(
            press(&mut state, "jR"),
            vec![Effect::RestartSidecar("activator-7d9f8c6b5-h6t4z".into())]
        );
        state.cluster.lab = false;
        assert_eq!(press(&mut state, "R"), vec![]);
        assert!(state
            .ui
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("kasi demo"));
    }

    #[test]
    fn s_and_m_start_and_stop_the_cookie_and_mcp_probes() {
        let mut state = lab_state(View::Stickiness);
        let cookie = state.probe_targets.cookie.clone().unwrap();
        let mcp = state.probe_targets.mcp.clone().unwrap();
        // The fixture's cookie probe runs: `s` stops it, and it stays on screen, stopped.
        assert_eq!(press(&mut state, "s"), vec![Effect::StopProbe]);
        assert!(!state.probe.as_ref().unwrap().running);
        assert_eq!(
            press(&mut state, "s"),
            vec![Effect::StartProbe(cookie.clone())]
        );
        state.probe.as_mut().unwrap().running = true;
        // `m` replaces a running cookie probe rather than stopping it…
        assert_eq!(
            press(&mut state, "m"),
            vec![Effect::StartProbe(mcp.clone())]
        );
        state.probe = Some(ProbeState {
            target: mcp.clone(),
            running: true,
            ..ProbeState::default()
        });
        // …and stops a running MCP probe, as `s` does.
        assert_eq!(press(&mut state, "m"), vec![Effect::StopProbe]);
        state.probe.as_mut().unwrap().running = true;
        assert_eq!(press(&mut state, "s"), vec![Effect::StopProbe]);
        // Without the lab's MCP service, `m` says how to name one.
        state.probe_targets.mcp = None;
        assert_eq!(press(&mut state, "m"), vec![]);
        assert!(state
            .ui
            .message
            .as_deref()
            .unwrap()
            .contains(":probe --mcp URL"));
        // Elsewhere `m` is no key.
        press(&mut state, "1");
        assert_eq!(press(&mut state, "m"), vec![]);
    }

    #[test]
    fn ctx_lists_the_contexts_and_switches_to_the_one_picked() {
        let mut state = lab_state(View::Overview);
        // The lab has one context.
        assert!(press(&mut state, ":ctx\n").is_empty());
        assert!(state.ui.context_picker.is_none());
        assert!(state.ui.message.as_deref().unwrap().contains("one context"));

        state.cluster.lab = false;
        state.cluster.context = "prod-eu".into();
        state.contexts = vec!["dev".into(), "prod-eu".into(), "prod-us".into()];
        assert!(press(&mut state, ":ctx\n").is_empty());
        assert_eq!(
            state.ui.context_picker,
            Some(1),
            "the current one is selected"
        );
        assert_eq!(
            press(&mut state, "j\n"),
            vec![Effect::SwitchContext("prod-us".into())]
        );
        assert_eq!(state.ui.context_picker, None);
        press(&mut state, ":ctx\nkk\x1b");
        assert_eq!(state.ui.context_picker, None, "Esc cancels");

        assert_eq!(
            press(&mut state, ":ctx dev\n"),
            vec![Effect::SwitchContext("dev".into())]
        );
        assert!(press(&mut state, ":ctx prod-eu\n").is_empty());
        assert_eq!(
            state.ui.message.as_deref(),
            Some("already on context prod-eu")
        );
        assert!(press(&mut state, ":ctx staging\n").is_empty());
        assert_eq!(
            state.ui.message.as_deref(),
            Some("no context \"staging\" in the kubeconfig; it has dev, prod-eu, prod-us")
        );
    }

    #[test]
    fn the_probe_command_starts_either_kind_and_remembers_it() {
        let mut state = lab_state(View::Overview);
        let effects = press(
            &mut state,
            ":probe --mcp --resolve m.example:80:127.0.0.1 http://m.example/mcp\n",
        );
        let mcp = ProbeTarget {
            kind: ProbeKind::Mcp,
            url: "http://m.example/mcp".into(),
            resolve: vec!["m.example:80:127.0.0.1".into()],
        };
        assert_eq!(effects, vec![Effect::StartProbe(mcp.clone())]);
        assert_eq!(state.view, View::Stickiness);
        assert_eq!(state.probe_targets.mcp, Some(mcp));
        let effects = press(&mut state, ":probe https://gw.example/\n");
        let cookie = ProbeTarget {
            kind: ProbeKind::Cookie,
            url: "https://gw.example/".into(),
            resolve: vec![],
        };
        assert_eq!(effects, vec![Effect::StartProbe(cookie.clone())]);
        assert_eq!(state.probe_targets.cookie, Some(cookie));
        assert_eq!(press(&mut state, ":probe --mcp\n"), vec![]);
        assert!(state.ui.message.as_deref().unwrap().contains("no URL"));
    }

    #[test]
    fn apply_and_revert_ask_first() {
        let mut state = lab_state(View::Install);
        assert_eq!(press(&mut state, "a"), vec![]);
        assert_eq!(state.install.confirm, Some(Confirm::Apply));
        assert_eq!(
            press(&mut state, "q"),
            vec![],
            "other keys do nothing while asking"
        );
        assert!(!state.ui.quit);
        assert_eq!(press(&mut state, "n"), vec![]);
        assert_eq!(state.install.confirm, None);
        assert_eq!(press(&mut state, "ay"), vec![Effect::Apply]);
        state.install.progress = None;
        assert_eq!(press(&mut state, "ry"), vec![Effect::Revert]);
    }

    #[test]
    fn l_raises_every_sidecar_above_info_once() {
        let mut state = lab_state(View::Sessions);
        let pods: Vec<String> = state.activators.iter().map(|a| a.pod.clone()).collect();
        // The lab's sidecars log at info: nothing to raise.
        assert_eq!(press(&mut state, "L"), vec![]);
        assert!(state
            .ui
            .message
            .as_deref()
            .unwrap()
            .contains("nothing to raise"));
        // Levels not read yet: L raises both (the raise reads each level first).
        state.wasm_levels.clear();
        assert_eq!(
            press(&mut state, "L"),
            vec![Effect::RaiseWasmLog(pods.clone())]
        );
        assert!(state.wasm_log.values().all(|r| *r == WasmLogRaise::Raising));
        assert!(state.ui.message.as_deref().unwrap().contains(&pods[1]));
        // In flight: pressing again does not start a second raise.
        assert_eq!(press(&mut state, "L"), vec![]);
        assert!(state
            .ui
            .message
            .as_deref()
            .unwrap()
            .contains("raised already"));
        // Levels read: only the one above info is raised.
        state.wasm_log.clear();
        state.wasm_levels.insert(pods[0].clone(), "warning".into());
        state.wasm_levels.insert(pods[1].clone(), "info".into());
        assert_eq!(
            press(&mut state, "L"),
            vec![Effect::RaiseWasmLog(vec![pods[0].clone()])]
        );
        // Held and in effect: nothing to raise.
        state.wasm_log.insert(
            pods[0].clone(),
            WasmLogRaise::Raised {
                until: 660.0,
                previous: "warning".into(),
            },
        );
        state.wasm_levels.insert(pods[0].clone(), "info".into());
        assert_eq!(press(&mut state, "L"), vec![]);
        // The sidecar restarted during the raise: back at warning, L raises it again.
        state.wasm_levels.insert(pods[0].clone(), "warning".into());
        assert_eq!(
            press(&mut state, "L"),
            vec![Effect::RaiseWasmLog(vec![pods[0].clone()])]
        );
        // A failed raise can be retried.
        state
            .wasm_log
            .insert(pods[0].clone(), WasmLogRaise::Failed("503".into()));
        assert_eq!(
            press(&mut state, "L"),
            vec![Effect::RaiseWasmLog(vec![pods[0].clone()])]
        );
        // Every sidecar at info or below: nothing to do, and the message says so.
        state.wasm_log.clear();
        state.wasm_levels.insert(pods[0].clone(), "debug".into());
        assert_eq!(press(&mut state, "L"), vec![]);
        assert!(state
            .ui
            .message
            .as_deref()
            .unwrap()
            .contains("nothing to raise"));
        // Elsewhere L does nothing.
        let mut state = lab_state(View::Overview);
        assert_eq!(press(&mut state, "L"), vec![]);
        assert!(state.wasm_log.is_empty());
    }

    #[test]
    fn enter_opens_the_selected_sessions_story_and_esc_closes_it() {
        let mut state = lab_state(View::Sessions);
        press(&mut state, "j\n");
        let row = rows::sessions(&state)[1].clone();
        let panel = state.ui.story.clone().expect("the story is open");
        assert_eq!((panel.address, panel.scroll_up), (row.address, 0));
        // While it is open, j/k scroll it (nothing to scroll here) and leave the table alone.
        press(&mut state, "kk");
        assert_eq!(state.ui.selected, 1);
        press(&mut state, "\x1b");
        assert!(state.ui.story.is_none());
        press(&mut state, "k");
        assert_eq!(state.ui.selected, 0);
        // Enter elsewhere opens nothing.
        press(&mut state, "1\n");
        assert!(state.ui.story.is_none());
    }

    #[test]
    fn help_paste_and_quit() {
        let mut state = lab_state(View::Sessions);
        press(&mut state, "?");
        assert!(state.ui.help);
        press(&mut state, "?");
        assert!(!state.ui.help);
        press(&mut state, "pMS4yLjMuNDo4MA==\n");
        let result = state
            .ui
            .paste
            .as_ref()
            .and_then(|p| p.result.clone())
            .unwrap();
        assert!(result.unwrap().contains("1.2.3.4:80"));
        press(&mut state, "\x1bq");
        assert!(state.ui.quit);
    }
}
