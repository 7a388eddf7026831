//! Drawing: the frame around every view (tabs, banner, key hints) and the overlays (help,
//! command palette, paste box, confirmation, demo guide). Views read the state and nothing else.

mod columns;
mod config;
pub mod diff;
mod endpoints;
mod install;
mod overview;
pub mod rows;
mod sessions;
mod stickiness;
mod story;
pub mod theme;
mod tour;

use super::keys::KEYS;
use super::state::{AppState, Confirm, Connection};
use super::view::View;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Tabs, Wrap};
use ratatui::Frame;

/// A bordered block `width` columns wide (borders included) whose title fits: the hints after
/// ` · ` give way from the last, then what is left is cut with `…`.
pub fn table_block(title: &str, width: u16) -> Block<'static> {
    // Two corners and a space either side of the title.
    let title = fit_title(title, width.saturating_sub(4));
    Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(theme::dim())
        .title(Span::styled(format!(" {title} "), theme::header()))
}

/// The columns inside a bordered block drawn on `area`.
pub fn inner_width(area: Rect) -> u16 {
    area.width.saturating_sub(2)
}

/// `title` in `room` columns: whole, else without its last ` · ` parts, else cut with `…`.
pub fn fit_title(title: &str, room: u16) -> String {
    use unicode_width::UnicodeWidthStr;
    let mut parts: Vec<&str> = title.split(" · ").collect();
    while parts.len() > 1 && parts.join(" · ").width() > room as usize {
        parts.pop();
    }
    columns::cut(&parts.join(" · "), room)
}

/// The slice of a table's rows that fits in `area` (borders and header take 3 lines), scrolled so
/// the selection shows, and the selection's index inside it.
pub fn visible(rows: usize, selected: usize, area: Rect) -> (std::ops::Range<usize>, usize) {
    let height = (area.height as usize).saturating_sub(3).max(1);
    let offset = selected
        .min(rows.saturating_sub(1))
        .saturating_sub(height - 1);
    (
        offset..(offset + height).min(rows),
        selected.saturating_sub(offset),
    )
}

/// The whole screen.
pub fn draw(frame: &mut Frame, state: &AppState) {
    let caption_height = u16::from(state.tour.is_some());
    let [header, caption, question, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(caption_height),
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, header, state);
    frame.render_widget(Paragraph::new(banner(state)), question);
    match state.view {
        View::Overview => overview::draw(frame, body, state),
        View::Endpoints => endpoints::draw(frame, body, state),
        View::Sessions => sessions::draw(frame, body, state),
        View::Config => config::draw(frame, body, state),
        View::Stickiness => stickiness::draw(frame, body, state),
        View::Install => install::draw(frame, body, state),
    }
    draw_footer(frame, footer, state);
    if let Some(panel) = &state.ui.story {
        story::draw(frame, state, panel);
    }
    if state.ui.guide {
        draw_guide(frame, state);
    }
    if let Some(selected) = state.ui.context_picker {
        draw_contexts(frame, state, selected);
    }
    if let Some(paste) = &state.ui.paste {
        let area = centered(frame.area(), 80, 12);
        let mut lines = vec![Line::from(vec![
            Span::styled("> ", theme::header()),
            Span::raw(&paste.input),
            Span::raw("▏"),
        ])];
        match &paste.result {
            None => lines.push(Line::from(Span::styled(
                "paste a cookie (value, name=value, Cookie:/Set-Cookie: line), an envelope or Mcp-Session-Id: line, or a Header-Name: value line, then Enter",
                theme::dim(),
            ))),
            Some(Ok(text)) => {
                lines.extend(text.lines().map(|l| Line::from(l.to_owned())));
                if let Some(address) = text
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("address"))
                    .map(str::trim)
                {
                    lines.push(match state.pod_of(address) {
                        Some((r, p)) if p.ready => Line::styled(
                            format!("pins pod {} ({}) — alive", p.name, r.name),
                            theme::ok(),
                        ),
                        Some((r, p)) => Line::styled(
                            format!(
                                "pins pod {} ({}) — NOT READY: the filter will rebind it",
                                p.name, r.name
                            ),
                            theme::bad(),
                        ),
                        None if state.refuses(address) => Line::styled(
                            format!(
                                "kasi's verdict: REFUSED — {address} is no pod and outside allowed_cidrs/allowed_ports (disallowed): the filter drops it"
                            ),
                            theme::bad().add_modifier(Modifier::BOLD),
                        ),
                        None => Line::styled(
                            "pins no pod kasi knows: the filter will reject or rebind it",
                            theme::warn(),
                        ),
                    });
                }
            }
            Some(Err(e)) => lines.push(Line::styled(e.clone(), theme::bad())),
        }
        overlay(
            frame,
            area,
            "Decode a session (Esc closes)",
            Paragraph::new(lines).wrap(Wrap { trim: false }),
        );
    }
    if let Some(command) = &state.ui.palette {
        let area = centered(frame.area(), 60, 3);
        overlay(
            frame,
            area,
            "Command",
            Paragraph::new(Line::from(vec![
                Span::styled(":", theme::header()),
                Span::raw(command),
                Span::raw("▏"),
            ])),
        );
    }
    if let Some(what) = state.install.confirm {
        let title = match what {
            Confirm::Apply => "Apply the bundle?",
            Confirm::Revert => "Revert?",
        };
        let lines = confirm_lines(state, what);
        // As tall as its wrapped lines, so the y/n line always shows.
        let inner = (frame.area().width.min(96).saturating_sub(2)).max(1) as usize;
        let height: usize = lines.iter().map(|l| l.width().div_ceil(inner).max(1)).sum();
        let area = centered(frame.area(), 96, height as u16 + 2);
        overlay(
            frame,
            area,
            title,
            Paragraph::new(lines).wrap(Wrap { trim: false }),
        );
    }
    diff::draw(frame, state);
    tour::draw_summary(frame, state);
    if state.ui.help {
        // As wide as the longest line needs (each column's widest cell), within the screen; the
        // description gives way first, ending in `…`.
        let widest = |column: usize| {
            KEYS.iter()
                .map(|k| [k.0, k.1, k.2][column])
                .map(unicode_width::UnicodeWidthStr::width)
                .max()
                .unwrap_or(0) as u16
        };
        let needed = widest(0) + widest(1) + widest(2) + 2 + 2;
        let width = needed.min(frame.area().width.saturating_sub(4));
        let area = centered(frame.area(), width, KEYS.len() as u16 + 4);
        let rows = KEYS
            .iter()
            .map(|(keys, what, where_)| {
                vec![
                    columns::Cell::styled(*keys, ratatui::style::Style::new()),
                    columns::Cell::styled(*what, ratatui::style::Style::new()),
                    columns::Cell::styled(*where_, ratatui::style::Style::new()),
                ]
            })
            .collect();
        let table = columns::fit(
            &[
                columns::Column::new("KEYS", 3),
                columns::Column::new("DOES", 1).cut_to(20),
                columns::Column::new("WHERE", 2),
            ],
            rows,
            width.saturating_sub(2),
            theme::header(),
        );
        overlay(frame, area, "Keys (? or Esc closes)", table);
    }
    // Last, so that no overlay hides what the audience is told.
    tour::draw_caption(frame, caption, state);
}

/// The confirmation: what the command does, the objects the server's dry run says will change,
/// and the rollout it triggers.
fn confirm_lines(state: &AppState, what: Confirm) -> Vec<Line<'_>> {
    let text = match what {
        Confirm::Apply => "Server-side apply every piece with field manager kasi. Previous values are recorded in the cluster for revert.",
        Confirm::Revert => "Restore what was there before kasi and delete what kasi created.",
    };
    let word = what.preview_kind().word();
    let mut lines = vec![Line::from(text), Line::from("")];
    match state.install.preview(what.preview_kind()) {
        None => lines.push(Line::styled(
            format!("asking the API server what {word} would change (dryRun=All)…"),
            theme::dim(),
        )),
        Some(Err(why)) => lines.push(Line::styled(
            format!("the {word} dry run failed: {why}"),
            theme::bad(),
        )),
        Some(Ok(preview)) => {
            let changing: Vec<_> = preview
                .objects
                .iter()
                .filter(|o| o.verdict.changes())
                .collect();
            if changing.is_empty() {
                lines.push(Line::from(preview.note.clone().unwrap_or_else(|| {
                    format!("{word} would change nothing: every object is as it would leave it")
                })));
            } else {
                lines.push(Line::styled(
                    format!("{} objects will change (server dry run):", changing.len()),
                    theme::header(),
                ));
            }
            for object in changing {
                let colour = match object.verdict {
                    crate::install::preview::Verdict::Created => theme::ok(),
                    crate::install::preview::Verdict::Deleted
                    | crate::install::preview::Verdict::Refused(_) => theme::bad(),
                    _ => theme::warn(),
                };
                lines.push(Line::styled(format!("  {}", object.line()), colour));
            }
            lines.push(Line::from(match &preview.rollout {
                Some(rollout) => format!("Rollout: {rollout}."),
                None => "No rollout: no pod template changes.".to_owned(),
            }));
        }
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "y = yes · n / Esc = no · d diff of the selected piece · D all diffs",
        theme::header(),
    )));
    lines
}

fn draw_header(frame: &mut Frame, area: Rect, state: &AppState) {
    use unicode_width::UnicodeWidthStr;
    let titles: Vec<String> = View::ALL
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{} {}", i + 1, v.title()))
        .collect();
    let status = match &state.connection {
        Connection::Connecting => Span::styled(" connecting… ", theme::warn()),
        Connection::Live if state.forbidden.is_empty() => {
            Span::styled(format!(" ● {} ", state.cluster.context), theme::ok())
        }
        Connection::Live => Span::styled(
            format!(
                " ● {} · {} forbidden ",
                state.cluster.context,
                state.forbidden.len()
            ),
            theme::warn(),
        ),
        Connection::Stale { since, .. } => Span::styled(
            format!(" STALE {:.0}s ", state.now - since),
            theme::alarm(true),
        ),
    };
    // Tabs padded when there is room beside the status, else tight: every title stays whole.
    let tight: u16 = titles.iter().map(|t| t.width() as u16 + 1).sum::<u16>() - 1;
    let padded = tight + 2 * titles.len() as u16;
    let (tabs_width, padding) = if padded + status.width() as u16 <= area.width {
        (padded, " ")
    } else {
        (tight, "")
    };
    let [tabs_area, status_area] =
        Layout::horizontal([Constraint::Length(tabs_width), Constraint::Fill(1)]).areas(area);
    let tabs = Tabs::new(titles.into_iter().map(Line::from))
        .select(state.view.index())
        .highlight_style(theme::header().add_modifier(Modifier::REVERSED))
        .padding(padding, padding)
        .divider("│");
    frame.render_widget(tabs, tabs_area);
    let status = Span::styled(
        columns::cut(&status.content, status_area.width),
        status.style,
    );
    frame.render_widget(
        Paragraph::new(Line::from(status)).alignment(ratatui::layout::Alignment::Right),
        status_area,
    );
}

/// The line under the tabs: what is wrong with the data, if anything (full width, because an
/// SRE must read it whole), else the question the view answers.
fn banner(state: &AppState) -> Line<'_> {
    if let Connection::Stale { since, reason } = &state.connection {
        // A credential plugin's failure names the plugin; the API server may be fine.
        let why = if reason.starts_with("credentials:") {
            reason.clone()
        } else {
            format!("the API server is unreachable ({reason})")
        };
        return Line::styled(
            format!(
                " STALE {:.0}s — {why}; showing what was last seen, retrying",
                state.now - since
            ),
            theme::alarm(true),
        );
    }
    if !state.forbidden.is_empty() {
        return Line::styled(
            format!(
                " FORBIDDEN — kasi may not {}; grant it (RBAC) to see that part, the rest is live",
                state.forbidden.join("; ")
            ),
            theme::alarm(false),
        );
    }
    Line::styled(
        state.view.question(),
        theme::dim().add_modifier(Modifier::ITALIC),
    )
}

fn draw_footer(frame: &mut Frame, area: Rect, state: &AppState) {
    let line = if state.ui.filter_editing || !state.ui.filter.is_empty() {
        Line::from(vec![
            Span::styled("/", theme::header()),
            Span::raw(&state.ui.filter),
            Span::styled(
                if state.ui.filter_editing {
                    "▏"
                } else {
                    "  (Esc clears)"
                },
                theme::dim(),
            ),
        ])
    } else if let Some(message) = &state.ui.message {
        Line::from(Span::styled(message.clone(), theme::warn()))
    } else {
        let hints = "? help · : command · / filter · 1-6 views · j/k move · q quit";
        Line::from(Span::styled(hints, theme::dim()))
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_guide(frame: &mut Frame, state: &AppState) {
    let area = centered(frame.area(), 84, 13);
    let lines = vec![
        Line::from("This is the lab: Knative's activator with two real Envoy sidecars."),
        Line::from(""),
        Line::from(vec![
            Span::styled("Break affinity: ", theme::bad()),
            Span::raw("it is broken until installed — 5 Stickiness, s starts"),
        ]),
        Line::from("  a probe: sessions land on whatever pod the activator picks."),
        Line::from(vec![
            Span::styled("Fix it:         ", theme::ok()),
            Span::raw("6 Install, a, y — watch 5 go to 100 % and 4 drop."),
        ]),
        Line::from(vec![
            Span::styled("Kill a pod:     ", theme::warn()),
            Span::raw("2 Endpoints, select a pod, x — sessions rebind; u restores."),
        ]),
        Line::from(vec![
            Span::styled("Forge a cookie: ", theme::warn()),
            Span::raw("3 Sessions, p — paste any cookie and see where it pins."),
        ]),
        Line::from(""),
        Line::from(Span::styled(
            format!(
                "kubectl works too: KUBECONFIG is shown by `kasi lab`; context {}",
                state.cluster.context
            ),
            theme::dim(),
        )),
        Line::from(Span::styled(
            "h hides this guide · ? lists every key",
            theme::dim(),
        )),
    ];
    overlay(frame, area, "Demo guide", Paragraph::new(lines));
}

/// `:ctx`: the kubeconfig's contexts, the current one marked, the selected one highlighted.
fn draw_contexts(frame: &mut Frame, state: &AppState, selected: usize) {
    let widest = state
        .contexts
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0);
    let width = (widest as u16 + 8).max(48);
    let area = centered(frame.area(), width, state.contexts.len() as u16 + 4);
    let mut lines: Vec<Line> = state
        .contexts
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mark = if *name == state.cluster.context {
                "● "
            } else {
                "  "
            };
            let style = if i == selected {
                theme::selected()
            } else {
                ratatui::style::Style::new()
            };
            Line::styled(format!("{mark}{name}"), style)
        })
        .collect();
    lines.push(Line::styled(
        "Enter switches (the views start over) · Esc cancels",
        theme::dim(),
    ));
    overlay(frame, area, "Contexts", Paragraph::new(lines));
}

fn overlay(frame: &mut Frame, area: Rect, title: &str, widget: impl ratatui::widgets::Widget) {
    frame.render_widget(Clear, area);
    let block = table_block(title, area.width).border_style(theme::accent());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    frame.render_widget(widget, inner);
}

/// A large overlay: the screen less a margin, at most 150 columns wide.
fn overlay_area(area: Rect) -> Rect {
    centered(
        area,
        area.width.saturating_sub(6).min(150),
        area.height.saturating_sub(4),
    )
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [cell] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    cell
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::fixture::{lab_state, silence, without_decision_lines};
    use crate::tui::state::{DecisionLogging, PasteBox, WasmLogRaise};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn render(state: &AppState) -> String {
        render_at(state, 120)
    }

    fn terminal_at(state: &AppState, width: u16) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(width, 34)).expect("test terminal");
        terminal.draw(|frame| draw(frame, state)).expect("draw");
        terminal
    }

    fn render_at(state: &AppState, width: u16) -> String {
        terminal_at(state, width).backend().to_string()
    }

    #[test]
    fn every_view_renders() {
        for view in View::ALL {
            insta::assert_snapshot!(view.title().to_ascii_lowercase(), render(&lab_state(view)));
        }
    }

    /// The narrowest terminal kasi is made for and a wide one: columns give way by priority,
    /// or take the room they need.
    #[test]
    fn every_view_renders_at_80_and_200_columns() {
        for view in View::ALL {
            for width in [80, 200] {
                let name = format!("{}_{width}", view.title().to_ascii_lowercase());
                insta::assert_snapshot!(name, render_at(&lab_state(view), width));
            }
        }
    }

    /// Every title, name, state and reason the fixture has, which must never be cut at ≥ 120
    /// columns.
    fn known_strings(state: &AppState) -> Vec<String> {
        let mut known: Vec<String> = Vec::new();
        known.extend(state.pieces.iter().map(|p| p.title.clone()));
        known.extend(state.pieces.iter().map(|p| p.name.clone()));
        known.extend(state.pieces.iter().map(|p| p.kind.clone()));
        known.extend(state.activators.iter().map(|a| a.pod.clone()));
        for revision in &state.revisions {
            known.push(revision.name.clone());
            known.extend(revision.pods.iter().map(|p| p.name.clone()));
        }
        for session in &state.sessions {
            known.push(session.reason.clone());
            known.push(format!("{:?}", session.state).to_ascii_lowercase());
        }
        known.sort();
        known.dedup();
        known
    }

    /// Where `needle` starts on `screen` (by its first characters), what follows: the whole
    /// string (or another known one that starts alike), or a prefix of it then `…`; anything
    /// else is a silent cut.
    fn silent_cuts(screen: &str, needle: &str, known: &[String]) -> Vec<String> {
        let start: String = needle.chars().take(8).collect();
        let mut cuts = Vec::new();
        for line in screen.lines() {
            for (at, _) in line.match_indices(&start) {
                // Only where a cell starts, not inside another word (`data.mesh-…`).
                if !matches!(
                    line[..at].chars().last(),
                    None | Some(' ' | '│' | '/' | '(')
                ) {
                    continue;
                }
                let rest = &line[at..];
                // Another known string shown whole: one that starts alike, or one this starts with
                // (the kind `Sidecar` before the piece `Sidecar (scoped egress)`).
                if known.iter().any(|k| {
                    (k.starts_with(&start) || needle.starts_with(k.as_str()))
                        && rest.starts_with(k.as_str())
                }) {
                    continue;
                }
                let shown: String = rest
                    .chars()
                    .zip(needle.chars())
                    .take_while(|(a, b)| a == b)
                    .map(|(a, _)| a)
                    .collect();
                let alike_cut = known.iter().any(|k| {
                    k.starts_with(&start)
                        && k.char_indices()
                            .any(|(i, _)| i > 0 && rest.starts_with(&format!("{}…", &k[..i])))
                });
                if !rest[shown.len()..].starts_with('…') && !alike_cut {
                    cuts.push(format!(
                        "{needle:?} shown as {:?} in {line}",
                        &rest[..shown.len()]
                    ));
                }
            }
        }
        cuts
    }

    #[test]
    fn at_120_columns_and_more_nothing_known_is_cut() {
        for width in [120, 160, 200] {
            for view in View::ALL {
                let state = lab_state(view);
                let screen = render_at(&state, width);
                let known = known_strings(&state);
                for needle in &known {
                    let cuts = silent_cuts(&screen, needle, &known);
                    assert!(cuts.is_empty(), "{width} columns: {cuts:#?}\n{screen}");
                    let all_but_last = needle.char_indices().last().map_or(0, |(i, _)| i);
                    assert!(
                        !screen.contains(&format!("{}…", &needle[..all_but_last])),
                        "{width} columns: {needle} is cut\n{screen}"
                    );
                }
            }
        }
        // The Sessions view shows every session's state and reason, every pod by name.
        let state = lab_state(View::Sessions);
        let screen = render_at(&state, 120);
        for session in &state.sessions {
            assert!(screen.contains(&session.reason), "{screen}");
        }
        for pod in state.revisions.iter().flat_map(|r| &r.pods) {
            assert!(screen.contains(&pod.name), "{}\n{screen}", pod.name);
        }
        // The checklist names every piece whole.
        let state = lab_state(View::Overview);
        let screen = render_at(&state, 120);
        for piece in &state.pieces {
            assert!(screen.contains(&piece.title), "{}\n{screen}", piece.title);
        }
    }

    #[test]
    fn at_80_columns_every_cut_ends_in_an_ellipsis() {
        for view in View::ALL {
            let state = lab_state(view);
            let screen = render_at(&state, 80);
            let known = known_strings(&state);
            for needle in &known {
                let cuts = silent_cuts(&screen, needle, &known);
                assert!(cuts.is_empty(), "{cuts:#?}\n{screen}");
            }
        }
    }

    /// With NO_COLOR every cell is drawn without colour, and the selection still shows.
    #[test]
    fn no_color_draws_every_view_without_colour() {
        use ratatui::style::Color;
        theme::with_monochrome(true, || {
            let mut states: Vec<AppState> = View::ALL.iter().map(|&v| lab_state(v)).collect();
            let mut stale = lab_state(View::Endpoints);
            stale.connection = Connection::Stale {
                since: 48.0,
                reason: "connection refused".into(),
            };
            states.push(stale);
            for state in &states {
                let terminal = terminal_at(state, 120);
                let buffer = terminal.backend().buffer();
                for cell in buffer.content() {
                    assert_eq!(
                        (cell.fg, cell.bg),
                        (Color::Reset, Color::Reset),
                        "{:?} {cell:?}",
                        state.view
                    );
                }
                if state.view == View::Sessions {
                    // The selected row (the first) is reversed.
                    let row = (0..buffer.area.height)
                        .find(|&y| buffer[(1, y)].symbol() == "1" && buffer[(2, y)].symbol() == "2")
                        .expect("a session row");
                    assert!(buffer[(1, row)].modifier.contains(Modifier::REVERSED));
                }
            }
            insta::assert_snapshot!(
                "overview_no_color",
                format!(
                    "{:?}",
                    terminal_at(&lab_state(View::Overview), 80).backend()
                )
            );
        });
    }

    /// One activator was not rolled (an old module, no kasi on its chain) and logs at info: the
    /// Overview names each difference with its sidecars, and the Config view shows its chain.
    #[test]
    fn the_overview_names_where_activators_disagree() {
        let mut state = lab_state(View::Overview);
        let agreeing = render(&state);
        assert!(
            agreeing.contains("✔ all 2 activators run the same: module 4f3a9c0d1e2b…"),
            "{agreeing}"
        );
        let odd = &mut state.activators[1];
        odd.module = Some("1b2e00001b2e00001b2e00001b2e0000".into());
        let shape = odd.shape.as_mut().unwrap();
        for chain in shape.chains.values_mut() {
            chain.retain(|f| f != "kasi");
        }
        let pod = odd.pod.clone();
        state.wasm_levels.insert(pod.clone(), "info".into());
        let screen = render(&state);
        insta::assert_snapshot!("overview_disagreement", screen);
        assert!(screen.contains("✘ module differs"), "{screen}");
        assert!(
            screen.contains(&format!("✘ {pod}: :8012 has stateful_session without kasi")),
            "{screen}"
        );
        state.view = View::Config;
        insta::assert_snapshot!("config_disagreement", render(&state));
    }

    /// `:ctx`: the kubeconfig's contexts, the current one marked.
    #[test]
    fn the_context_list() {
        let mut state = lab_state(View::Overview);
        state.cluster.lab = false;
        state.cluster.context = "prod-eu".into();
        state.contexts = vec![
            "dev".into(),
            "prod-eu".into(),
            "arn:aws:eks:eu-west-1:123456789012:cluster/prod-us".into(),
        ];
        state.ui.context_picker = Some(2);
        let screen = render(&state);
        insta::assert_snapshot!("contexts", screen);
        assert!(screen.contains("● prod-eu"), "{screen}");
        assert!(
            screen.contains("arn:aws:eks:eu-west-1:123456789012:cluster/prod-us"),
            "{screen}"
        );
    }

    /// The MCP probe says so, with its 404s and re-initializations.
    #[test]
    fn the_mcp_probe_shows_its_404s() {
        let mut state = lab_state(View::Stickiness);
        state.probe = Some(crate::tui::state::ProbeState {
            target: state.probe_targets.mcp.clone().unwrap(),
            running: true,
            sessions: 20,
            requests: 300,
            failures: 2,
            hit_rate: Some(0.99),
            not_found: 2,
            reinitializations: 2,
            ..Default::default()
        });
        let screen = render(&state);
        insta::assert_snapshot!("stickiness_mcp", screen);
        assert!(screen.contains("MCP clients"), "{screen}");
        assert!(screen.contains("404s 2 · re-inits 2"), "{screen}");
        assert!(screen.contains("running (m stops)"), "{screen}");
    }

    /// Installing rolls the activators: the sidecars after the apply are new pods that never held
    /// the big config, and the Config view still says how much smaller they are than the ones
    /// they replaced; the replaced pods keep their line in the chart but no row.
    #[test]
    fn the_shrink_shows_across_a_rollout() {
        let mut state = lab_state(View::Config);
        let old: Vec<String> = state.activators.iter().map(|a| a.pod.clone()).collect();
        let big = state.config_history[&old[0]][0];
        let small = *state.config_history[&old[0]].last().unwrap();
        state.config_history.clear();
        for pod in &old {
            state.config_history.insert(pod.clone(), vec![big]);
        }
        for (i, activator) in state.activators.iter_mut().enumerate() {
            activator.pod = format!("activator-5b8c9d7f6-new{i}");
            state
                .config_history
                .insert(activator.pod.clone(), vec![small]);
        }
        let screen = render(&state);
        let table: String = screen
            .lines()
            .skip_while(|l| !l.contains("SIDECAR"))
            .collect::<Vec<_>>()
            .join("\n");
        let ratio = format!("{:.0}× smaller", big.total() as f64 / small.total() as f64);
        assert_eq!(table.matches(ratio.as_str()).count(), 2, "{screen}");
        assert!(table.contains("activator-5b8c9d7f6-new0"), "{screen}");
        for pod in &old {
            assert!(!table.contains(pod.as_str()), "{screen}");
        }
    }

    #[test]
    fn overlays_render() {
        let mut help = lab_state(View::Overview);
        help.ui.help = true;
        insta::assert_snapshot!("help", render(&help));

        let mut guide = lab_state(View::Stickiness);
        guide.ui.guide = true;
        insta::assert_snapshot!("guide", render(&guide));

        let mut confirm = lab_state(View::Install);
        confirm.install.confirm = Some(Confirm::Apply);
        insta::assert_snapshot!("confirm_apply", render(&confirm));
        confirm.install.confirm = Some(Confirm::Revert);
        insta::assert_snapshot!("confirm_revert", render(&confirm));
        confirm.install.revert_preview = None;
        insta::assert_snapshot!("confirm_revert_checking", render(&confirm));

        let mut paste = lab_state(View::Sessions);
        // What a browser holds once kasi signs sessions: Envoy's value, a dot, kasi's MAC.
        let value = kasi_filter::codec::encode_proto("127.42.1.12:8012".parse().unwrap(), None);
        let signed = kasi_filter::signing::SessionKeys::new([&[1u8; 32]])
            .sign(value.as_bytes(), b"hello.default.example.com", b".")
            .unwrap();
        let input = format!(
            "Cookie: kasi-session=\"{}\"",
            String::from_utf8(signed).unwrap()
        );
        let result = Some(crate::affinity::decode::decode(&input, None, None).map(|d| d.to_text()));
        paste.ui.paste = Some(PasteBox { input, result });
        insta::assert_snapshot!("paste_dead_pod", render(&paste));
    }

    /// An MCP server's own session id: whoever holds it acts in the session, so kasi never
    /// draws it.
    const MCP_ID: &str = "7f9c2ba4-e88f-4f2b-9c1d-0a3b5c7d9e11";

    #[test]
    fn mcp_sessions_show_pod_revision_and_a_hash_never_the_id() {
        use crate::affinity::decisions::DecisionLine;
        use crate::tui::event::{apply, Event};
        let mut state = lab_state(View::Sessions);
        let sidecar = state.activators[0].pod.clone();
        let line = |decision: &str, reason: &str, session: Option<&str>| Event::Decision {
            sidecar: sidecar.clone(),
            line: DecisionLine {
                decision: decision.into(),
                address: Some("127.42.1.11:8012".into()),
                authority: Some("mcp.default.example.com".into()),
                reason: reason.into(),
                expires: None,
                previous: None,
                carrier: Some("envelope".into()),
                session: session.map(str::to_owned),
                ..DecisionLine::default()
            },
        };
        // A line that names the session (hashed for the screen), then one that does not: what
        // the filter logs today. Both are MCP sessions on the same pod, kept apart from cookies.
        apply(&mut state, line("pin", "new_session", Some(MCP_ID)));
        apply(&mut state, line("routed", "envelope", Some(MCP_ID)));
        apply(&mut state, line("rebind", "dead", None));
        assert_eq!(state.sessions.len(), 8);
        let screen = render(&state);
        insta::assert_snapshot!("sessions_mcp", screen);
        let hash = crate::affinity::decode::session_hash(MCP_ID.as_bytes());
        assert!(!screen.contains(&MCP_ID[..8]), "{screen}");
        let row = screen
            .lines()
            .find(|l| l.contains(&format!("mcp {hash}")))
            .unwrap_or_else(|| panic!("{screen}"));
        assert!(row.contains("127.42.1.11:8012"), "{row}");
        assert!(row.contains("hello-00001"), "{row}");
        assert!(row.contains("pinned"), "{row}");
        assert!(
            screen
                .lines()
                .any(|l| l.contains("rebound") && l.contains("mcp  ")),
            "{screen}"
        );
        // The filter (`/`) finds MCP sessions by carrier and by hash.
        state.ui.filter = "envelope".into();
        assert_eq!(super::rows::sessions(&state).len(), 2);
        state.ui.filter = hash;
        assert_eq!(super::rows::sessions(&state).len(), 1);
    }

    /// The filter's per-activator rate and the probe's client-side rate on one chart, the apply
    /// marked where the step from ~1/pods to 100 % happens.
    #[test]
    fn the_stickiness_chart_shows_both_rates_and_the_apply() {
        let mut state = lab_state(View::Stickiness);
        state.install_marks.push((50.0, "revert".into()));
        let screen = render(&state);
        insta::assert_snapshot!("stickiness_both_rates", screen);
        for pod in state.activators.iter().map(|a| &a.pod) {
            assert!(screen.contains(&format!("filter · {pod}")), "{screen}");
        }
        assert!(screen.contains("probe · client side, last 5 s"), "{screen}");
        let top = screen
            .lines()
            .find(|l| l.contains("apply"))
            .unwrap_or_else(|| panic!("{screen}"));
        assert!(top.contains("revert"), "{top}");
        // The apply's label sits just right of the middle of the window (30 s of 60).
        let chars: Vec<char> = top.chars().collect();
        let graph = chars.iter().rposition(|c| *c == '│').unwrap_or(0);
        let axis = top[..top.find("│100│").unwrap()].chars().count() + 4;
        // The mark is the column before its label.
        let mark = top[..top.find("apply").unwrap()].chars().count() - 1;
        let middle = (axis + graph) / 2;
        assert!(
            mark.abs_diff(middle) <= 1,
            "mark {mark}, graph {axis}..{graph}: {top}"
        );
    }

    /// A session to tell the story of: what each activator logged, at the times they logged it.
    fn tell(state: &mut AppState, at: f64, sidecar: usize, line: &str) {
        use crate::affinity::decisions::DecisionLine;
        use crate::tui::event::{apply, Event};
        state.now = at;
        let sidecar = state.activators[sidecar].pod.clone();
        let line = DecisionLine::parse(&format!("kasi_affinity {line}")).expect("a decision line");
        apply(state, Event::Decision { sidecar, line });
    }

    /// Opens the story of the session row whose text contains `needle`, as `Enter` does.
    fn open_story(state: &mut AppState, needle: impl Fn(&crate::tui::state::SessionRow) -> bool) {
        state.ui.selected = super::rows::sessions(state)
            .iter()
            .position(|s| needle(s))
            .expect("the session's row");
        let effects = crate::tui::update::update(state, crate::tui::action::Action::OpenStory);
        assert!(effects.is_empty());
    }

    #[test]
    fn the_story_of_a_cookie_session_rebound_after_its_pod_died() {
        let mut state = lab_state(View::Sessions);
        state.sessions.clear();
        let h = r#""authority":"hello.default.example.com","carrier":"cookie""#;
        tell(
            &mut state,
            12.0,
            0,
            &format!(
                r#"{{"decision":"pin","address":"127.42.1.12:8012",{h},"reason":"new_session","format":"proto","expires":null}}"#
            ),
        );
        for t in 13..=20 {
            tell(
                &mut state,
                t as f64,
                0,
                &format!(
                    r#"{{"decision":"routed","address":"127.42.1.12:8012",{h},"reason":"cookie"}}"#
                ),
            );
        }
        tell(
            &mut state,
            41.0,
            0,
            r#"{"decision":"dead","address":"127.42.1.12:8012","authority":null,"reason":"connect_failure","carrier":"cookie","quarantine_s":30}"#,
        );
        // The endpoint watch sees the pod go.
        let mut revisions = state.revisions.clone();
        revisions[0].pods.remove(2);
        state.now = 43.0;
        crate::tui::event::apply(&mut state, crate::tui::event::Event::Revisions(revisions));
        tell(
            &mut state,
            47.0,
            1,
            &format!(
                r#"{{"decision":"rejected","address":"127.42.1.12:8012",{h},"reason":"dead"}}"#
            ),
        );
        tell(
            &mut state,
            47.0,
            1,
            &format!(
                r#"{{"decision":"rebind","address":"127.42.1.10:8012",{h},"reason":"dead","format":"proto","expires":null,"previous":"127.42.1.12:8012"}}"#
            ),
        );
        state.now = 60.0;
        open_story(&mut state, |s| {
            s.state == crate::tui::state::SessionState::Rebound
        });
        let screen = render(&state);
        insta::assert_snapshot!("story_cookie_rebind", screen);
        assert!(
            screen.contains("On pod hello-00001-deployment-5f7b9c8d4-x7kq2 since"),
            "{screen}"
        );
        assert!(screen.contains("8 requests routed to"), "{screen}");
        assert!(screen.contains("→ quarantined for 30 s"), "{screen}");
        assert!(screen.contains("revision's Endpoints"), "{screen}");
        assert!(
            screen.contains("rebound to pod hello-00001-deployment-5f7b9c8d4-x7kq2"),
            "{screen}"
        );
        // k scrolls to older steps; Esc closes.
        crate::tui::update::update(&mut state, crate::tui::action::Action::Up);
        assert_eq!(state.ui.story.as_ref().unwrap().scroll_up, 1);
        assert!(!render(&state).contains("rebound to pod"));
        crate::tui::update::update(&mut state, crate::tui::action::Action::Back);
        assert!(state.ui.story.is_none());
    }

    #[test]
    fn the_story_of_an_mcp_session_ends_in_a_404_and_a_reinitialization() {
        let mut state = lab_state(View::Sessions);
        state.sessions.clear();
        let h = r#""authority":"mcp.default.example.com","carrier":"envelope""#;
        tell(
            &mut state,
            20.0,
            1,
            &format!(
                r#"{{"decision":"pin","address":"127.42.1.11:8012",{h},"reason":"new_session","format":"legacy","expires":null,"session":"5e551a0d"}}"#
            ),
        );
        for t in 21..=24 {
            tell(
                &mut state,
                t as f64,
                t % 2,
                &format!(
                    r#"{{"decision":"routed","address":"127.42.1.11:8012",{h},"reason":"envelope","session":"5e551a0d"}}"#
                ),
            );
        }
        tell(
            &mut state,
            52.0,
            0,
            &format!(
                r#"{{"decision":"dead","address":"127.42.1.11:8012",{h},"reason":"connect_failure","quarantine_s":30}}"#
            ),
        );
        tell(
            &mut state,
            52.0,
            0,
            &format!(
                r#"{{"decision":"rejected","address":"127.42.1.11:8012",{h},"reason":"dead","answer":404}}"#
            ),
        );
        tell(
            &mut state,
            53.0,
            0,
            &format!(
                r#"{{"decision":"pin","address":"127.42.1.10:8012",{h},"reason":"new_session","format":"legacy","expires":null,"session":"0b0e1f2a"}}"#
            ),
        );
        state.now = 60.0;
        open_story(&mut state, |s| s.session.as_deref() == Some("5e551a0d"));
        let screen = render(&state);
        insta::assert_snapshot!("story_mcp_404", screen);
        assert!(screen.contains("MCP session 5e551a0d"), "{screen}");
        assert!(
            screen.contains("died → 404, client re-initialized"),
            "{screen}"
        );
        // The new session's story is its own, and it sticks.
        state.ui.story = None;
        open_story(&mut state, |s| s.session.as_deref() == Some("0b0e1f2a"));
        assert!(render(&state).contains("Sticking to pod hello-00001-deployment-5f7b9c8d4-x7kq2"));
    }

    #[test]
    fn the_paste_box_decodes_an_envelope() {
        let mut paste = lab_state(View::Sessions);
        let value = kasi_filter::envelope::encode_envelope("127.42.1.11:8012", MCP_ID.as_bytes());
        let signed = kasi_filter::signing::SessionKeys::new([&[1u8; 32]])
            .sign(value.as_bytes(), b"mcp.default.example.com", b";K:")
            .unwrap();
        let input = format!("Mcp-Session-Id: {}", String::from_utf8(signed).unwrap());
        let result = Some(crate::affinity::decode::decode(&input, None, None).map(|d| d.to_text()));
        paste.ui.paste = Some(PasteBox { input, result });
        let screen = render(&paste);
        insta::assert_snapshot!("paste_envelope", screen);
        assert!(screen.contains("carrier  envelope"), "{screen}");
        assert!(
            screen.contains("pins pod hello-00001-deployment-"),
            "{screen}"
        );
        let hash = crate::affinity::decode::session_hash(MCP_ID.as_bytes());
        assert!(screen.contains(&format!("session  {hash}")), "{screen}");
        assert!(!screen.contains(&MCP_ID[..8]), "{screen}");
    }

    #[test]
    fn sessions_say_why_decision_lines_are_missing() {
        let mut state = lab_state(View::Sessions);
        assert!(!render(&state).contains("decision line"));
        let (a, b) = (
            state.activators[0].pod.clone(),
            state.activators[1].pod.clone(),
        );
        // An older install: the first sidecar's wasm logger at istio-proxy's default; the
        // second has seen no request yet.
        without_decision_lines(&mut state, &a);
        without_decision_lines(&mut state, &b);
        state.wasm_levels.insert(a.clone(), "warning".into());
        let idle = state.counters[&b][0].1;
        for reading in state.counters.get_mut(&b).unwrap() {
            reading.1 = idle;
        }
        insta::assert_snapshot!("sessions_why", render(&state));
        let screen = render(&state);
        assert!(
            screen.contains(&format!(
                "wasm logs at warning on {a} (decision lines are info) · L raises it to info for 10 min"
            )),
            "{screen}"
        );
        assert!(
            screen.contains(&format!(
                "no decision lines from {b}: no requests yet (the filter's counters have not moved)"
            )),
            "{screen}"
        );
        // The filter off, or logging off, say so instead.
        state.activators[0].filter_loaded = Some(false);
        state.activators[1].decision_logging = Some(DecisionLogging::Off);
        let screen = render(&state);
        assert!(
            screen.contains(&format!(
                "no decision lines from {a}: kasi's filter is not loaded in its sidecar"
            )),
            "{screen}"
        );
        assert!(
            screen.contains(&format!(
                "no decision lines from {b}: the filter runs with log_decisions \"off\""
            )),
            "{screen}"
        );
        // Silent with the level unknown: the line offers L.
        let mut state = lab_state(View::Sessions);
        silence(&mut state, &a);
        state.wasm_levels.remove(&a);
        let screen = render(&state);
        assert!(
            screen.contains(&format!(
                "{a}: requests that write a decision line went through, yet none arrived for 10 s · L raises"
            )),
            "{screen}"
        );
    }

    #[test]
    fn sessions_show_the_raise_counting_down_and_failures_named() {
        let mut state = lab_state(View::Sessions);
        let (a, b) = (
            state.activators[0].pod.clone(),
            state.activators[1].pod.clone(),
        );
        state.wasm_log.insert(a.clone(), WasmLogRaise::Raising);
        state.wasm_log.insert(b.clone(), WasmLogRaise::Raising);
        let screen = render(&state);
        assert!(
            // By name: h6t4z before q2w8r.
            screen.contains(&format!("raising the wasm logger to info on {b}, {a}…")),
            "{screen}"
        );
        state.wasm_log.insert(
            a.clone(),
            WasmLogRaise::Raised {
                until: 60.0 + 572.0,
                previous: "warning".into(),
            },
        );
        state.wasm_log.insert(
            b.clone(),
            WasmLogRaise::Failed(format!(
                "raising to info: knative-serving/{b} admin POST /logging?wasm=info answered 503"
            )),
        );
        state.wasm_levels.insert(b.clone(), "warning".into());
        insta::assert_snapshot!("sessions_raised", render(&state));
        let screen = render(&state);
        assert!(
            screen.contains(&format!(
                "wasm logger at info on {a} for 9:32 more, then back to warning (also when kasi exits)"
            )),
            "{screen}"
        );
        assert!(
            screen.contains(&format!("wasm logger of {b}: raising to info:")),
            "{screen}"
        );
    }

    #[test]
    fn the_install_view_lists_findings_with_their_fix() {
        use crate::install::findings::{Finding, Findings, Severity};
        let mut state = lab_state(View::Install);
        state.findings = Some(Findings {
            findings: vec![Finding {
                id: "strict-mtls",
                severity: Severity::Error,
                message: "STRICT mTLS applies to revision pods".into(),
                fix: "let revision pods accept plain text on 8012 and 8013".into(),
            }],
            unchecked: vec!["cannot check knative-operator: kasi may not list knativeservings.operator.knative.dev (403)".into()],
        });
        let screen = render(&state);
        assert!(
            screen.contains("Findings (1) · an error stops a"),
            "{screen}"
        );
        assert!(
            screen.contains("error   strict-mtls STRICT mTLS applies to revision pods"),
            "{screen}"
        );
        assert!(
            screen.contains("fix: let revision pods accept plain text on 8012 and 8013"),
            "{screen}"
        );
        assert!(
            screen.contains("warning cannot check knative-operator"),
            "{screen}"
        );
        state.findings = None;
        assert!(render(&state).contains("checking the cluster"));
    }

    /// The "would" column says what the server's dry run said, per piece, for apply or revert.
    #[test]
    fn the_install_view_says_what_apply_or_revert_would_do() {
        let mut state = lab_state(View::Install);
        let screen = render(&state);
        assert!(screen.contains("APPLY WOULD"), "{screen}");
        assert!(screen.contains("patched (1 field)"), "{screen}");
        assert!(screen.contains("unchanged"), "{screen}");
        state.install.context = crate::install::preview::PreviewKind::Revert;
        insta::assert_snapshot!("install_revert_would", render(&state));
        state.install.apply_preview = Some(Err("cannot reach the Kubernetes API".into()));
        state.install.context = crate::install::preview::PreviewKind::Apply;
        assert!(render(&state).contains("dry run failed"));
        state.install.apply_preview = None;
        state.install.previewing = Some((3, 9));
        let screen = render(&state);
        assert!(screen.contains("checking…"), "{screen}");
        assert!(screen.contains("dry run 3/9"), "{screen}");
    }

    #[test]
    fn the_diff_overlay_renders() {
        use crate::install::preview::PreviewKind;
        use crate::tui::state::DiffOverlay;
        let mut state = lab_state(View::Install);
        let piece = Some((
            "config-network".to_owned(),
            "ConfigMap".to_owned(),
            "config-network".to_owned(),
        ));
        state.install.diff = Some(DiffOverlay {
            kind: PreviewKind::Apply,
            piece: piece.clone(),
            scroll: 0,
        });
        insta::assert_snapshot!("diff_one_piece", render(&state));
        state.install.diff = Some(DiffOverlay {
            kind: PreviewKind::Apply,
            piece: None,
            scroll: 0,
        });
        insta::assert_snapshot!("diff_all", render(&state));
        state.install.diff = Some(DiffOverlay {
            kind: PreviewKind::Revert,
            piece: None,
            scroll: 12,
        });
        insta::assert_snapshot!("diff_revert_scrolled", render(&state));
        state.install.diff = Some(DiffOverlay {
            kind: PreviewKind::Apply,
            piece: Some(("filter".into(), "ConfigMap".into(), "kasi-filter".into())),
            scroll: 0,
        });
        assert!(render(&state)
            .contains("apply would leave ConfigMap knative-serving/kasi-filter unchanged"));
    }

    #[test]
    fn a_stale_api_shows_a_banner() {
        let mut state = lab_state(View::Endpoints);
        state.connection = Connection::Stale {
            since: 48.0,
            reason: "connection refused".into(),
        };
        let screen = render(&state);
        assert!(
            screen.contains("STALE 12s — the API server is unreachable (connection refused)"),
            "{screen}"
        );
    }

    /// An exec credential plugin that fails (an expired SSO session) is named in one line.
    #[test]
    fn a_failing_credential_plugin_is_named() {
        let mut state = lab_state(View::Overview);
        state.connection = Connection::Stale {
            since: 48.0,
            reason: "credentials: exec plugin `aws` failed: Error when retrieving token from sso: Token has expired and refresh failed".into(),
        };
        let screen = render(&state);
        insta::assert_snapshot!("stale_credentials", screen);
        assert!(
            screen.contains("STALE 12s — credentials: exec plugin `aws` failed: Error when retrieving token from sso"),
            "{screen}"
        );
    }

    #[test]
    fn a_refused_permission_is_named_in_full() {
        let mut state = lab_state(View::Endpoints);
        state.forbidden = vec!["list/watch pods in knative-serving".into()];
        let screen = render(&state);
        assert!(
            screen.contains("FORBIDDEN — kasi may not list/watch pods in knative-serving"),
            "{screen}"
        );
        assert!(screen.contains("1 forbidden"), "{screen}");
    }
}

#[cfg(test)]
mod tour_tests {
    use super::*;
    use crate::tui::fixture::lab_state;
    use crate::tui::state::PasteBox;
    use crate::tui::tour::{forged_cookie, Step, Tour, TourMeasurements};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn render(state: &AppState) -> String {
        let mut terminal = Terminal::new(TestBackend::new(120, 34)).expect("test terminal");
        terminal.draw(|frame| draw(frame, state)).expect("draw");
        terminal.backend().to_string()
    }

    fn at(view: View, step: Option<Step>) -> AppState {
        let mut state = lab_state(view);
        state.tour = Some(Tour {
            step,
            ..Tour::default()
        });
        state
    }

    #[test]
    fn the_caption_bar_tells_each_step() {
        let screen = render(&at(View::Overview, None));
        assert!(
            screen.contains("kasi tour · the lab: 2 activators"),
            "{screen}"
        );
        insta::assert_snapshot!("tour_start", screen);

        let screen = render(&at(View::Stickiness, Some(Step::Broken)));
        assert!(screen.contains("step 1/7"), "{screen}");
        assert!(screen.contains("stick 100 %"), "{screen}");
        insta::assert_snapshot!("tour_broken", screen);

        let mut installing = at(View::Stickiness, Some(Step::Install));
        installing.install.progress = Some((3, 9, "applying WasmPlugin kasi-affinity".into()));
        let screen = render(&installing);
        assert!(
            screen.contains("kasi apply: 3/9 applying WasmPlugin"),
            "{screen}"
        );
        insta::assert_snapshot!("tour_installing", screen);

        let mut forged = at(View::Sessions, Some(Step::Forged));
        let input = forged_cookie();
        let result = Some(crate::affinity::decode::decode(&input, None, None).map(|d| d.to_text()));
        forged.ui.paste = Some(PasteBox { input, result });
        let screen = render(&forged);
        assert!(screen.contains("kasi's verdict: refused"), "{screen}");
        assert!(screen.contains("REFUSED — 169.254.169.254:80"), "{screen}");
        insta::assert_snapshot!("tour_forged", screen);
    }

    #[test]
    fn the_summary_lists_the_measured_numbers() {
        let mut state = at(View::Sessions, Some(Step::Summary));
        state.tour.as_mut().unwrap().measured = TourMeasurements {
            pods: Some(3),
            hit_before: Some(0.34),
            hit_after: Some(1.0),
            config_before: Some(2_960_050),
            config_after: Some(140_050),
            stopped_pod: Some("hello-00001-deployment-5f7b9c8d4-x7kq2".into()),
            sessions_on_stopped: 7,
            failures_at_stop: Some(1),
            failures_after_stop: Some(7),
            forged_refused: Some(true),
        };
        let screen = render(&state);
        for expected in [
            "The tour, measured",
            "34 % (≈ 1/3) before kasi → 100 % after",
            "3.0 MB → 140 kB  (21× smaller)",
            "7 sessions rebound, 7 failed requests",
            "169.254.169.254:80: refused",
            "step 7/7",
        ] {
            assert!(screen.contains(expected), "{expected}: {screen}");
        }
        insta::assert_snapshot!("tour_summary", screen);
    }
}
