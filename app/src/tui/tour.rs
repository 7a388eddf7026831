//! `kasi demo --tour`: the story told for an audience, one step per `space` (or every N seconds).
//! Steps are data: a caption read live from the state, and what entering the step does, as the
//! same [`Action`]s a person would press (so the update path, not the tour, changes the state).
//! The numbers the summary shows are measured from the state at step transitions.

use super::action::Action;
use super::state::{AppState, Confirm, ProbeKind, Seconds};
use super::view::View;
use super::views::theme;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Where a forged cookie sends traffic: the cloud metadata address, the classic SSRF target.
pub const FORGED_ADDRESS: &str = "169.254.169.254:80";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// Stickiness, the cookie probe running: sessions stick ≈ 1/pods of the time.
    Broken,
    /// Install, the all-objects diff open: what apply will change.
    Diff,
    /// Apply confirmed; Stickiness again, the hit rate climbing to 100 %.
    Install,
    /// Config: each activator's config shrank.
    Shrink,
    /// The pod holding most probe sessions stopped; Sessions with one of its sessions' story.
    PodStopped,
    /// A forged cookie pasted, and refused.
    Forged,
    /// The measured numbers.
    Summary,
}

impl Step {
    pub const ALL: [Step; 7] = [
        Step::Broken,
        Step::Diff,
        Step::Install,
        Step::Shrink,
        Step::PodStopped,
        Step::Forged,
        Step::Summary,
    ];

    /// 1-based, as the caption bar counts.
    pub fn number(self) -> usize {
        Step::ALL.iter().position(|s| *s == self).unwrap_or(0) + 1
    }

    pub fn next(self) -> Option<Step> {
        Step::ALL.get(self.number()).copied()
    }
}

/// The numbers the summary shows, each taken when the tour left (or entered) a step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TourMeasurements {
    /// Ready pods of the probed revision (the "1/pods" a broken affinity gives).
    pub pods: Option<usize>,
    /// The probe's hit rate when leaving step 1 (before kasi) and step 3 (after).
    pub hit_before: Option<f64>,
    pub hit_after: Option<f64>,
    /// The largest activator config_dump, entering step 3 (before) and leaving step 4 (after).
    pub config_before: Option<u64>,
    pub config_after: Option<u64>,
    /// The pod step 5 stopped, and how many probe sessions were pinned to it.
    pub stopped_pod: Option<String>,
    pub sessions_on_stopped: usize,
    /// The probe's cumulative failures when the pod stopped, and how many came after.
    pub failures_at_stop: Option<u64>,
    pub failures_after_stop: Option<u64>,
    /// Whether kasi refused the forged cookie (leaving step 6).
    pub forged_refused: Option<bool>,
}

impl TourMeasurements {
    /// How many times smaller the config became.
    pub fn shrink(&self) -> Option<f64> {
        shrink(self.config_before?, self.config_after?)
    }
}

fn shrink(before: u64, after: u64) -> Option<f64> {
    (after > 0 && before > after).then(|| before as f64 / after as f64)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tour {
    /// `None`: not started yet (the lab is coming up; `space` starts).
    pub step: Option<Step>,
    /// When the current step was entered (seconds since start), for `--auto`.
    pub entered_at: Seconds,
    /// `--auto N`: advance every N seconds.
    pub auto: Option<Seconds>,
    pub measured: TourMeasurements,
}

impl Tour {
    pub fn new(auto: Option<Seconds>) -> Tour {
        Tour {
            auto,
            ..Tour::default()
        }
    }
}

/// Whether `--auto` should advance now.
pub fn due(state: &AppState) -> bool {
    let Some(tour) = &state.tour else {
        return false;
    };
    match tour.auto {
        Some(every) => tour.step != Some(Step::Summary) && state.now - tour.entered_at >= every,
        None => false,
    }
}

/// Moves to the next step: measures what leaving the current one records, and returns what
/// entering the next does, as actions for the update path. Nothing after the summary.
pub fn advance(state: &mut AppState) -> Vec<Action> {
    let Some(tour) = &state.tour else {
        return Vec::new();
    };
    let next = match tour.step {
        None => Step::Broken,
        Some(step) => match step.next() {
            Some(next) => next,
            None => {
                state.ui.message = Some("the tour is over: q quits".into());
                return Vec::new();
            }
        },
    };
    let leaving = tour.step;
    let readings = Readings::of(state);
    let actions = entering(state, next);
    let now = state.now;
    let Some(tour) = state.tour.as_mut() else {
        return Vec::new();
    };
    let m = &mut tour.measured;
    match leaving {
        Some(Step::Broken) => {
            m.hit_before = readings.hit_rate;
            m.pods = readings.pods.or(m.pods);
        }
        Some(Step::Install) => m.hit_after = readings.hit_rate,
        Some(Step::Shrink) => m.config_after = readings.config,
        Some(Step::PodStopped) => {
            m.failures_after_stop = m
                .failures_at_stop
                .zip(readings.failures)
                .map(|(at, now)| now.saturating_sub(at));
        }
        Some(Step::Forged) => m.forged_refused = Some(readings.forged_refused),
        _ => {}
    }
    match next {
        Step::Install => m.config_before = readings.config,
        Step::PodStopped => {
            m.failures_at_stop = readings.failures;
            if let Some((pod, sessions)) = &readings.busiest_pod {
                m.stopped_pod = Some(pod.clone());
                m.sessions_on_stopped = *sessions;
            }
        }
        _ => {}
    }
    tour.step = Some(next);
    tour.entered_at = now;
    actions
}

/// What the state says right now, for the measurements.
struct Readings {
    hit_rate: Option<f64>,
    pods: Option<usize>,
    config: Option<u64>,
    failures: Option<u64>,
    busiest_pod: Option<(String, usize)>,
    forged_refused: bool,
}

impl Readings {
    fn of(state: &AppState) -> Readings {
        Readings {
            hit_rate: probe_rate(state),
            pods: probed_pods(state),
            config: largest_config(state),
            failures: state.probe.as_ref().map(|p| p.failures),
            busiest_pod: busiest_pod(state).map(|(pod, _, n)| (pod, n)),
            forged_refused: forged_refused(state),
        }
    }
}

/// The probe's hit rate over its last window (what the Stickiness chart shows).
pub fn probe_rate(state: &AppState) -> Option<f64> {
    let probe = state.probe.as_ref()?;
    if probe.requests == 0 {
        return None;
    }
    state.probe_series.last().map(|(_, rate)| *rate)
}

/// Ready pods of the revision the probe's sessions are pinned in. Before kasi no cookie pins
/// anything: then the revision with most ready pods (the lab's probed `hello`).
pub fn probed_pods(state: &AppState) -> Option<usize> {
    let probe = state.probe.as_ref()?;
    let ready = |r: &super::state::RevisionRow| r.pods.iter().filter(|p| p.ready).count();
    let pinned = probe
        .pins
        .iter()
        .find_map(|(address, _)| state.pod_of(address).map(|(r, _)| r));
    match pinned {
        Some(revision) => Some(ready(revision)),
        None => state.revisions.iter().map(ready).max().filter(|n| *n > 0),
    }
}

/// The largest config_dump among the activators running now (their latest reading).
pub fn largest_config(state: &AppState) -> Option<u64> {
    state
        .activators
        .iter()
        .filter_map(|a| state.config_history.get(&a.pod)?.last())
        .map(|s| s.total())
        .filter(|total| *total > 0)
        .max()
}

/// The pod holding most of the probe's sessions: its name, address and how many.
pub fn busiest_pod(state: &AppState) -> Option<(String, String, usize)> {
    let probe = state.probe.as_ref()?;
    let mut by_address: BTreeMap<&str, usize> = BTreeMap::new();
    for (address, _) in &probe.pins {
        *by_address.entry(address.as_str()).or_default() += 1;
    }
    by_address
        .into_iter()
        .filter_map(|(address, n)| {
            let (_, pod) = state.pod_of(address)?;
            pod.ready.then(|| (pod.name.clone(), address.to_owned(), n))
        })
        // Most sessions; among equals the first address.
        .max_by(|a, b| a.2.cmp(&b.2).then(b.1.cmp(&a.1)))
}

/// The forged session the tour pastes: a well-formed cookie naming [`FORGED_ADDRESS`], unsigned.
pub fn forged_cookie() -> String {
    let address: SocketAddr = FORGED_ADDRESS.parse().expect("a valid address");
    format!(
        "Cookie: kasi-session=\"{}\"",
        kasi_filter::codec::encode_proto(address, None)
    )
}

/// Whether the paste box holds a session kasi refuses.
fn forged_refused(state: &AppState) -> bool {
    let Some(Some(Ok(text))) = state.ui.paste.as_ref().map(|p| p.result.as_ref()) else {
        return false;
    };
    pasted_address(text).is_some_and(|address| state.refuses(address))
}

/// The `address` line of the paste box's decoded text.
pub fn pasted_address(text: &str) -> Option<&str> {
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("address"))
        .map(str::trim)
}

/// What entering `step` does: the keys a presenter would press, as actions.
fn entering(state: &AppState, step: Step) -> Vec<Action> {
    let mut actions = vec![Action::Show(step_view(step))];
    match step {
        Step::Broken => {
            let running = state
                .probe
                .as_ref()
                .is_some_and(|p| p.running && p.target.kind == ProbeKind::Cookie);
            if !running {
                actions.push(Action::ToggleProbe);
            }
        }
        Step::Diff => actions.push(Action::ShowDiff { all: true }),
        Step::Install => {
            // The diff of step 2 closes first (Back), then `a`, `y` on the Install view.
            actions = vec![
                Action::Back,
                Action::Show(View::Install),
                Action::Ask(Confirm::Apply),
                Action::Answer(true),
                Action::Show(View::Stickiness),
            ];
        }
        Step::Shrink => {}
        Step::PodStopped => {
            let Some((pod, address, _)) = busiest_pod(state) else {
                return vec![Action::Show(View::Sessions)];
            };
            // Endpoints lists every revision's pods in order; the view opens unfiltered.
            let row = state
                .revisions
                .iter()
                .flat_map(|r| r.pods.iter())
                .position(|p| p.name == pod)
                .unwrap_or(0);
            actions.push(Action::Top);
            actions.extend(std::iter::repeat_n(Action::Down, row));
            actions.push(Action::StopSelectedPod);
            actions.push(Action::Show(View::Sessions));
            if let Some(row) = session_row(state, &address) {
                actions.push(Action::Top);
                actions.extend(std::iter::repeat_n(Action::Down, row));
                actions.push(Action::OpenStory);
            }
        }
        Step::Forged => {
            actions.push(Action::OpenPaste);
            actions.extend(forged_cookie().chars().map(Action::Type));
            actions.push(Action::Submit);
        }
        Step::Summary => actions = vec![Action::Back],
    }
    actions
}

fn step_view(step: Step) -> View {
    match step {
        Step::Broken | Step::Install => View::Stickiness,
        Step::Diff => View::Install,
        Step::Shrink => View::Config,
        Step::PodStopped => View::Endpoints,
        Step::Forged | Step::Summary => View::Sessions,
    }
}

/// The Sessions view's row (unfiltered, newest first) of a cookie session pinned to `address`
/// that an activator logged: the probe's own rows have no decision lines, hence no story.
fn session_row(state: &AppState, address: &str) -> Option<usize> {
    let mut sessions: Vec<_> = state.sessions.iter().collect();
    sessions.sort_by(|a, b| b.last_seen.total_cmp(&a.last_seen));
    let logged = |s: &&&crate::tui::state::SessionRow| s.address == address && s.seen_by != "probe";
    sessions
        .iter()
        .position(|s| logged(&s) && s.carrier == "cookie")
        .or_else(|| sessions.iter().position(|s| logged(&s)))
        .or_else(|| sessions.iter().position(|s| s.address == address))
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or("—".into(), |r| format!("{:.0} %", r * 100.0))
}

/// The caption of the current step, read live from the state.
pub fn caption(state: &AppState) -> String {
    let Some(tour) = &state.tour else {
        return String::new();
    };
    let m = &tour.measured;
    let Some(step) = tour.step else {
        let pods: usize = state.revisions.iter().map(|r| r.pods.len()).sum();
        return format!(
            "the lab: {} activators, {pods} pods — the story of session affinity in {} steps",
            state.activators.len(),
            Step::ALL.len()
        );
    };
    match step {
        Step::Broken => match probe_rate(state) {
            Some(rate) => format!(
                "affinity broken: the probe's sessions stick {} of the time{}",
                percent(Some(rate)),
                probed_pods(state)
                    .map(|n| format!(" (≈ 1/{n}: {n} pods, the activator picks any)"))
                    .unwrap_or_default()
            ),
            None => "affinity broken? a cookie probe starts: 20 users with cookie jars…".into(),
        },
        Step::Diff => "what kasi apply will change (server dry run)".into(),
        Step::Install => match &state.install.progress {
            Some((done, total, what)) => format!("kasi apply: {done}/{total} {what}"),
            None => format!(
                "installed: the probe's sessions stick {} (live; the chart marks the apply)",
                percent(probe_rate(state))
            ),
        },
        Step::Shrink => {
            let now = largest_config(state);
            match m.config_before.zip(now).and_then(|(b, a)| shrink(b, a)) {
                Some(times) => format!(
                    "each activator's config {times:.0}× smaller ({} → {}): it only knows its revisions",
                    theme::bytes(m.config_before.unwrap_or(0)),
                    theme::bytes(now.unwrap_or(0))
                ),
                None => "each activator's config shrinks once the scoped Sidecar rolls out…".into(),
            }
        }
        Step::PodStopped => {
            let failures = m
                .failures_at_stop
                .zip(state.probe.as_ref().map(|p| p.failures))
                .map_or(0, |(at, now)| now.saturating_sub(at));
            format!(
                "{} stopped: its {} sessions rebind with one failure each — {failures} failed so far",
                m.stopped_pod.as_deref().unwrap_or("a pod"),
                m.sessions_on_stopped
            )
        }
        Step::Forged => format!(
            "a forged cookie naming {FORGED_ADDRESS} (cloud metadata) — kasi's verdict: {}",
            if forged_refused(state) {
                "refused"
            } else {
                "…"
            }
        ),
        Step::Summary => "what the tour measured".into(),
    }
}

/// The summary screen's lines: (what, measured).
pub fn summary(m: &TourMeasurements) -> Vec<(&'static str, String)> {
    let pods = m.pods.map(|n| format!(" (≈ 1/{n})")).unwrap_or_default();
    let config = match (m.config_before, m.config_after) {
        (Some(before), Some(after)) => format!(
            "{} → {}{}",
            theme::bytes(before),
            theme::bytes(after),
            m.shrink()
                .map(|x| format!("  ({x:.0}× smaller)"))
                .unwrap_or_default()
        ),
        _ => "—".into(),
    };
    let stopped = match (&m.stopped_pod, m.failures_after_stop) {
        (Some(pod), Some(failures)) => format!(
            "{pod}: {} sessions rebound, {failures} failed requests",
            m.sessions_on_stopped
        ),
        (Some(pod), None) => format!("{pod}: {} sessions", m.sessions_on_stopped),
        _ => "—".into(),
    };
    let forged = match m.forged_refused {
        Some(true) => format!("{FORGED_ADDRESS}: refused"),
        Some(false) => format!("{FORGED_ADDRESS}: NOT refused"),
        None => "—".into(),
    };
    vec![
        (
            "hit rate",
            format!(
                "{}{pods} before kasi → {} after",
                percent(m.hit_before),
                percent(m.hit_after)
            ),
        ),
        ("activator config", config),
        ("pod stopped", stopped),
        ("forged cookie", forged),
    ]
}

#[cfg(test)]
mod tests;
