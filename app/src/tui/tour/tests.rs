use super::*;
use crate::tui::action::Effect;
use crate::tui::fixture::lab_state;
use crate::tui::state::{ProbeState, SessionRow, SessionState};
use crate::tui::update::update;

/// The fixture's lab with the tour on and not started; the probe not started either.
fn touring() -> AppState {
    let mut state = lab_state(View::Overview);
    state.tour = Some(Tour::new(None));
    state.probe = Some(ProbeState {
        target: state.probe_targets.cookie.clone().unwrap(),
        ..ProbeState::default()
    });
    state
}

fn next(state: &mut AppState) -> Vec<Effect> {
    update(state, Action::TourNext)
}

fn step(state: &AppState) -> Option<Step> {
    state.tour.as_ref().unwrap().step
}

#[test]
fn steps_follow_the_story_in_order() {
    let mut step = Some(Step::Broken);
    let mut seen = Vec::new();
    while let Some(s) = step {
        seen.push(s.number());
        step = s.next();
    }
    assert_eq!(seen, [1, 2, 3, 4, 5, 6, 7]);
}

#[test]
fn the_tour_presses_the_keys_a_presenter_would() {
    let mut state = touring();
    assert!(caption(&state).contains("2 activators, 3 pods"));

    // 1: Stickiness, the cookie probe started.
    let effects = next(&mut state);
    assert_eq!(step(&state), Some(Step::Broken));
    assert_eq!(state.view, View::Stickiness);
    assert_eq!(
        effects,
        vec![Effect::StartProbe(
            state.probe_targets.cookie.clone().unwrap()
        )]
    );
    // The probe reports: a third of its sessions stick, pinned across the ready pods.
    state.probe = Some(ProbeState {
        target: state.probe_targets.cookie.clone().unwrap(),
        running: true,
        sessions: 3,
        requests: 90,
        failures: 2,
        pins: vec![
            ("127.42.1.10:8012".into(), None),
            ("127.42.1.11:8012".into(), None),
            ("127.42.1.11:8012".into(), None),
        ],
        ..ProbeState::default()
    });
    state.probe_series = vec![(60.0, 0.5)];
    let text = caption(&state);
    assert!(text.contains("stick 50 %"), "{text}");
    assert!(text.contains("≈ 1/2"), "{text}");

    // 2: the all-objects diff on the Install view (its dry runs asked again).
    let effects = next(&mut state);
    assert_eq!(state.view, View::Install);
    assert_eq!(state.install.diff.as_ref().unwrap().piece, None);
    assert_eq!(effects, vec![Effect::Preview]);
    let m = &state.tour.as_ref().unwrap().measured;
    assert_eq!((m.hit_before, m.pods), (Some(0.5), Some(2)));
    assert_eq!(
        caption(&state),
        "what kasi apply will change (server dry run)"
    );

    // 3: the diff closes, a, y: the apply runs; Stickiness shows it.
    state.install.previewing = None;
    // The fixture's sidecars run the scoped config already: give them the unscoped one back.
    for samples in state.config_history.values_mut() {
        let mut big = *samples.first().unwrap();
        big.at = 60.0;
        samples.push(big);
    }
    let effects = next(&mut state);
    assert!(effects.contains(&Effect::Apply), "{effects:?}");
    assert!(state.install.diff.is_none());
    assert_eq!(state.view, View::Stickiness);
    assert!(caption(&state).starts_with("kasi apply: 0/0 starting"));
    let before = state.tour.as_ref().unwrap().measured.config_before.unwrap();
    assert!(before > 1_000_000, "{before}");
    state.install.progress = None;
    state.probe_series.push((70.0, 1.0));
    assert!(
        caption(&state).contains("stick 100 %"),
        "{}",
        caption(&state)
    );

    // 4: Config; the sidecars now run the scoped config.
    next(&mut state);
    assert_eq!(state.view, View::Config);
    for samples in state.config_history.values_mut() {
        let mut small = *samples.last().unwrap();
        small.listeners = 40_000;
        small.clusters = 60_000;
        small.routes = 30_000;
        small.secrets = 10_000;
        samples.push(small);
    }
    let text = caption(&state);
    assert!(text.contains("× smaller"), "{text}");
    assert_eq!(state.tour.as_ref().unwrap().measured.hit_after, Some(1.0));

    // 5: the pod with most probe sessions (…11, the second pod) stopped; its session's story.
    state.sessions.push(SessionRow {
        address: "127.42.1.11:8012".into(),
        authority: "hello.default.example.com".into(),
        carrier: "cookie".into(),
        session: None,
        expires: None,
        state: SessionState::Pinned,
        reason: "new".into(),
        seen_by: "probe".into(),
        last_seen: 59.0,
        requests: 3,
    });
    let effects = next(&mut state);
    assert_eq!(
        effects,
        vec![Effect::StopPod(
            "hello-00001-deployment-5f7b9c8d4-m4pzd".into()
        )]
    );
    assert_eq!(state.view, View::Sessions);
    assert_eq!(
        state.ui.story.as_ref().map(|s| s.address.as_str()),
        Some("127.42.1.11:8012")
    );
    let m = &state.tour.as_ref().unwrap().measured;
    assert_eq!(m.sessions_on_stopped, 2);
    assert_eq!(m.failures_at_stop, Some(2));
    assert!(m.config_after.unwrap() < 200_000);
    state.probe.as_mut().unwrap().failures = 4;
    let text = caption(&state);
    assert!(text.contains("its 2 sessions rebind"), "{text}");
    assert!(text.contains("2 failed so far"), "{text}");

    // 6: the forged cookie in the paste box, refused.
    next(&mut state);
    assert!(state.ui.story.is_none());
    let paste = state.ui.paste.as_ref().expect("the paste box is open");
    assert_eq!(paste.input, forged_cookie());
    assert!(matches!(&paste.result, Some(Ok(text)) if text.contains(FORGED_ADDRESS)));
    assert!(caption(&state).ends_with("kasi's verdict: refused"));
    assert_eq!(
        state.tour.as_ref().unwrap().measured.failures_after_stop,
        Some(2)
    );

    // 7: the summary; the paste box closed.
    next(&mut state);
    assert_eq!(step(&state), Some(Step::Summary));
    assert!(state.ui.paste.is_none());
    let m = state.tour.as_ref().unwrap().measured.clone();
    assert_eq!(m.forged_refused, Some(true));
    let lines = summary(&m);
    assert!(lines[0]
        .1
        .contains("50 % (≈ 1/2) before kasi → 100 % after"));
    assert!(lines[1].1.contains("× smaller"), "{:?}", lines[1]);
    assert!(lines[2].1.contains("2 sessions rebound, 2 failed requests"));
    assert_eq!(lines[3].1, "169.254.169.254:80: refused");

    // Past the end nothing happens but a word.
    assert_eq!(next(&mut state), vec![]);
    assert_eq!(step(&state), Some(Step::Summary));
    assert!(state.ui.message.as_deref().unwrap().contains("q quits"));
}

#[test]
fn a_running_probe_is_not_toggled_off() {
    let mut state = touring();
    state.probe.as_mut().unwrap().running = true;
    assert_eq!(next(&mut state), vec![]);
    assert!(state.probe.as_ref().unwrap().running);
}

#[test]
fn auto_advances_on_the_clock_and_stops_at_the_summary() {
    let mut state = touring();
    assert!(!due(&state));
    state.tour.as_mut().unwrap().auto = Some(10.0);
    state.now = 9.0;
    assert!(!due(&state));
    state.now = 10.0;
    assert!(due(&state));
    next(&mut state);
    assert!(!due(&state), "the clock restarts at each step");
    state.now = 20.0;
    assert!(due(&state));
    state.tour.as_mut().unwrap().step = Some(Step::Summary);
    state.now = 100.0;
    assert!(!due(&state));
}

#[test]
fn unmeasured_numbers_show_as_dashes() {
    let lines = summary(&TourMeasurements::default());
    assert!(lines.iter().skip(1).all(|(_, v)| v == "—"), "{lines:?}");
    assert_eq!(lines[0].1, "— before kasi → — after");
}

#[test]
fn the_busiest_pod_is_a_ready_one_holding_most_sessions() {
    let mut state = touring();
    let probe = state.probe.as_mut().unwrap();
    probe.pins = vec![
        ("127.42.1.12:8012".into(), None),
        ("127.42.1.12:8012".into(), None),
        ("127.42.1.12:8012".into(), None),
        ("127.42.1.10:8012".into(), None),
        ("127.42.1.11:8012".into(), None),
    ];
    // …12 is not ready; …10 and …11 tie: the first address.
    assert_eq!(
        busiest_pod(&state),
        Some((
            "hello-00001-deployment-5f7b9c8d4-x7kq2".into(),
            "127.42.1.10:8012".into(),
            1
        ))
    );
    state.probe.as_mut().unwrap().pins.clear();
    assert_eq!(busiest_pod(&state), None);
}
