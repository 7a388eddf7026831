//! The one app state the terminal UI draws. Sources change it only through [`AppState::apply`]
//! with an [`Event`](super::event::Event); views only read it.

use super::view::View;
use crate::install::findings::Findings;
use std::collections::BTreeMap;

/// Seconds since the UI started: the x axis of every chart.
pub type Seconds = f64;

/// How long a chart looks back.
pub const HISTORY_SECONDS: Seconds = 300.0;

/// A sidecar whose counters show requests that log a decision, but whose log gave no decision
/// line for this long, is taken to log `wasm` below info.
pub const SILENT_AFTER: Seconds = 10.0;

/// How long `L` keeps a sidecar's `wasm` logger at info before restoring it.
pub const WASM_LOG_RAISE: Seconds = 600.0;

/// A sidecar whose `wasm` logger kasi raised to info.
#[derive(Debug, Clone, PartialEq)]
pub struct WasmLogRaise {
    /// When it goes back (seconds since start).
    pub until: Seconds,
    /// The level it had, restored when the time is up or the UI exits.
    pub previous: String,
}

/// What the admin call that raises or restores a sidecar's `wasm` logger reports.
#[derive(Debug, Clone, PartialEq)]
pub enum WasmLogChange {
    /// Now at info, for this long; `previous` is the level read first (`GET /logging`).
    Raised {
        previous: String,
        for_seconds: Seconds,
    },
    /// Back at `level`.
    Restored {
        level: String,
    },
    Failed(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterInfo {
    pub context: String,
    pub server: String,
    pub istio: Option<String>,
    pub knative: Option<String>,
    /// The UI runs against `kasi demo`'s lab: fault keys are live.
    pub lab: bool,
}

/// Whether the API is answering.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Connection {
    #[default]
    Connecting,
    Live,
    /// The last watch failed; data shown is as of `since`.
    Stale {
        since: Seconds,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum PieceStatus {
    Present,
    Missing,
    /// Differs from the bundle in these fields.
    Drifted(Vec<String>),
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PieceRow {
    pub id: String,
    pub title: String,
    pub kind: String,
    pub name: String,
    pub status: PieceStatus,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActivatorRow {
    pub pod: String,
    pub ip: String,
    pub ready: bool,
    pub sidecar_injected: bool,
    pub filter_loaded: Option<bool>,
    pub config_bytes: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub hit_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PodRow {
    pub name: String,
    pub address: String,
    pub ready: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RevisionRow {
    pub namespace: String,
    pub name: String,
    pub pods: Vec<PodRow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Pinned,
    Rebound,
    Rejected,
}

/// One live session, as decision lines and the probe reveal it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// `ip:port` the session is pinned to.
    pub address: String,
    pub authority: String,
    pub expires: Option<u64>,
    pub state: SessionState,
    pub reason: String,
    /// Which activator's sidecar (or `probe`) saw it last.
    pub seen_by: String,
    pub last_seen: Seconds,
    pub requests: u64,
}

/// One `/config_dump` reading, bytes by section.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ConfigSample {
    pub at: Seconds,
    pub listeners: u64,
    pub clusters: u64,
    pub routes: u64,
    pub endpoints: u64,
    pub secrets: u64,
    pub cluster_count: u64,
    pub listener_count: u64,
}

impl ConfigSample {
    pub fn total(&self) -> u64 {
        self.listeners + self.clusters + self.routes + self.endpoints + self.secrets
    }
}

/// The filter's counters in one sidecar (cumulative, as Envoy reports them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub cookie_routed: u64,
    pub sticky_hits: u64,
    pub rebinds: u64,
    pub header_stripped: u64,
    pub rejected: u64,
    /// Approved sessions Envoy's foreign call could not steer (should stay 0).
    pub steer_failed: u64,
    /// MCP sessions answered 404 so the client re-initializes.
    pub mcp_not_found: u64,
}

impl Counters {
    /// Requests since `earlier` that write a decision line at `log_decisions: "changes"` (the
    /// default): rejections, rebinds and new sessions (requests that carried none and get
    /// pinned). Requests steered by a session log nothing at that setting, so `cookie_routed`
    /// alone says nothing about whether lines should be arriving.
    pub fn logged_since(&self, earlier: &Counters) -> u64 {
        let d = |now: u64, then: u64| now.saturating_sub(then);
        let rejected = d(self.rejected, earlier.rejected);
        let routed = d(self.cookie_routed, earlier.cookie_routed);
        let new_sessions = d(self.requests, earlier.requests).saturating_sub(routed + rejected);
        rejected + d(self.rebinds, earlier.rebinds) + new_sessions
    }

    /// Hit rate between two readings (DESIGN.md: sticky hits ÷ requests that carried a cookie).
    pub fn hit_rate_since(&self, earlier: &Counters) -> Option<f64> {
        kasi_filter::metrics::hit_rate(
            self.sticky_hits.saturating_sub(earlier.sticky_hits),
            self.cookie_routed.saturating_sub(earlier.cookie_routed),
            self.rejected.saturating_sub(earlier.rejected),
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeState {
    pub url: String,
    /// Each probe session's cookie address and its own hit rate.
    pub pins: Vec<(String, Option<f64>)>,
    pub running: bool,
    pub sessions: usize,
    pub requests: u64,
    pub failures: u64,
    pub hit_rate: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    Apply,
    Revert,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstallState {
    pub confirm: Option<Confirm>,
    /// (done, total, what) while an apply or revert runs.
    pub progress: Option<(usize, usize, String)>,
    pub log: Vec<String>,
}

/// What the paste box (`p`) decoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PasteBox {
    pub input: String,
    pub result: Option<Result<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UiState {
    pub selected: usize,
    pub filter: String,
    pub filter_editing: bool,
    pub help: bool,
    pub palette: Option<String>,
    pub paste: Option<PasteBox>,
    /// The demo guide overlay (kasi demo starts with it open).
    pub guide: bool,
    pub message: Option<String>,
    pub quit: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppState {
    pub now: Seconds,
    pub view: View,
    pub cluster: ClusterInfo,
    pub connection: Connection,
    /// Permissions the API refused, e.g. `list pods in knative-serving`.
    pub forbidden: Vec<String>,
    pub pieces: Vec<PieceRow>,
    pub activators: Vec<ActivatorRow>,
    pub revisions: Vec<RevisionRow>,
    pub sessions: Vec<SessionRow>,
    pub config_history: BTreeMap<String, Vec<ConfigSample>>,
    pub counters: BTreeMap<String, Vec<(Seconds, Counters)>>,
    /// When an apply or revert finished, for the marks on the Config chart.
    pub install_marks: Vec<(Seconds, String)>,
    pub probe: Option<ProbeState>,
    pub install: InstallState,
    /// What in the cluster defeats kasi; `None` until first read.
    pub findings: Option<Findings>,
    /// When each sidecar's log last gave a decision line.
    pub last_decision: BTreeMap<String, Seconds>,
    /// Sidecars whose `wasm` logger kasi raised to info.
    pub wasm_log: BTreeMap<String, WasmLogRaise>,
    pub ui: UiState,
}

impl AppState {
    /// Sessions pinned to `address` right now.
    pub fn sessions_on(&self, address: &str) -> usize {
        self.sessions
            .iter()
            .filter(|s| s.address == address && s.state != SessionState::Rejected)
            .count()
    }

    /// The pod and revision an address belongs to.
    pub fn pod_of(&self, address: &str) -> Option<(&RevisionRow, &PodRow)> {
        self.revisions
            .iter()
            .find_map(|r| r.pods.iter().find(|p| p.address == address).map(|p| (r, p)))
    }

    /// The hit-rate series of one activator: one point per counter reading, each over the
    /// interval since the previous reading.
    pub fn hit_rate_series(&self, pod: &str) -> Vec<(Seconds, f64)> {
        let readings = self
            .counters
            .get(pod)
            .map(Vec::as_slice)
            .unwrap_or_default();
        readings
            .windows(2)
            .filter_map(|w| Some((w[1].0, w[1].1.hit_rate_since(&w[0].1)?)))
            .collect()
    }

    /// Hit rate of one activator over the last `seconds` (what "sticks right now" means).
    pub fn recent_hit_rate(&self, pod: &str, seconds: Seconds) -> Option<f64> {
        let readings = self.counters.get(pod)?;
        let (_, last) = readings.last()?;
        let since = self.now.max(readings.last()?.0) - seconds;
        let (_, earlier) = readings
            .iter()
            .rev()
            .find(|(t, _)| *t <= since)
            .or_else(|| readings.first())?;
        last.hit_rate_since(earlier)
    }

    /// Hit rate over the whole window shown, across activators.
    pub fn window_hit_rate(&self) -> Option<f64> {
        let (mut hits, mut routed, mut rejected) = (0, 0, 0);
        for readings in self.counters.values() {
            if let (Some((_, first)), Some((_, last))) = (readings.first(), readings.last()) {
                hits += last.sticky_hits.saturating_sub(first.sticky_hits);
                routed += last.cookie_routed.saturating_sub(first.cookie_routed);
                rejected += last.rejected.saturating_sub(first.rejected);
            }
        }
        kasi_filter::metrics::hit_rate(hits, routed, rejected)
    }

    /// Activators whose counters show, over the last [`SILENT_AFTER`], requests that write a
    /// decision line, while their log follower saw none for as long: their sidecar's `wasm`
    /// logger is below info (istio-proxy runs `--component-log-level misc:error` by default).
    /// Sidecars kasi already raised are not in it.
    pub fn silent_sidecars(&self) -> Vec<&str> {
        self.counters
            .iter()
            .filter(|(pod, _)| !self.wasm_log.contains_key(*pod))
            .filter(|(pod, readings)| {
                let Some((at, last)) = readings.last() else {
                    return false;
                };
                let window_start = readings.iter().rev().find(|(t, _)| *t <= at - SILENT_AFTER);
                let Some((_, earlier)) = window_start else {
                    return false;
                };
                let heard = self
                    .last_decision
                    .get(*pod)
                    .is_some_and(|t| self.now - t < SILENT_AFTER);
                last.logged_since(earlier) > 0 && !heard
            })
            .map(|(pod, _)| pod.as_str())
            .collect()
    }

    /// Drops samples older than the charts show.
    pub fn trim_history(&mut self) {
        let oldest = self.now - HISTORY_SECONDS;
        for samples in self.config_history.values_mut() {
            samples.retain(|s| s.at >= oldest);
        }
        for readings in self.counters.values_mut() {
            // Keep one reading before the window so the first interval has a start.
            let first_inside = readings
                .iter()
                .position(|(t, _)| *t >= oldest)
                .unwrap_or(readings.len());
            readings.drain(..first_inside.saturating_sub(1));
        }
        self.sessions.retain(|s| s.last_seen >= oldest);
        self.install_marks.retain(|(t, _)| *t >= oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_rate_is_over_the_interval_between_readings() {
        let mut state = AppState::default();
        let c = |hits, routed, rejected| Counters {
            sticky_hits: hits,
            cookie_routed: routed,
            rejected,
            ..Default::default()
        };
        state.counters.insert(
            "a".into(),
            vec![
                (0.0, c(0, 0, 0)),
                (1.0, c(9, 9, 1)),
                (2.0, c(19, 19, 1)),
                (3.0, c(19, 19, 1)),
            ],
        );
        assert_eq!(state.hit_rate_series("a"), vec![(1.0, 0.9), (2.0, 1.0)]);
        assert_eq!(state.window_hit_rate(), Some(19.0 / 20.0));
    }

    #[test]
    fn a_sidecar_is_silent_when_logged_requests_bring_no_line() {
        let c = |requests, routed, rejected| Counters {
            requests,
            cookie_routed: routed,
            rejected,
            ..Default::default()
        };
        let mut state = AppState {
            now: 30.0,
            ..Default::default()
        };
        // Sticky traffic only: nothing is logged at "changes", so silence is expected.
        state.counters.insert(
            "a".into(),
            vec![
                (10.0, c(10, 10, 0)),
                (20.0, c(20, 20, 0)),
                (30.0, c(30, 30, 0)),
            ],
        );
        assert!(state.silent_sidecars().is_empty());
        // Rejections and new sessions log a line each; none arrived.
        state.counters.insert(
            "b".into(),
            vec![
                (10.0, c(10, 5, 0)),
                (20.0, c(20, 10, 1)),
                (30.0, c(30, 15, 2)),
            ],
        );
        assert_eq!(state.silent_sidecars(), ["b"]);
        // A line 3 s ago: the logger is at info.
        state.last_decision.insert("b".into(), 27.0);
        assert!(state.silent_sidecars().is_empty());
        // A line long ago no longer counts.
        state.last_decision.insert("b".into(), 5.0);
        assert_eq!(state.silent_sidecars(), ["b"]);
        // Raised already: not offered again.
        state.wasm_log.insert(
            "b".into(),
            WasmLogRaise {
                until: 600.0,
                previous: "warning".into(),
            },
        );
        assert!(state.silent_sidecars().is_empty());
        // Less than SILENT_AFTER of readings: too early to say.
        let mut early = AppState {
            now: 5.0,
            ..Default::default()
        };
        early
            .counters
            .insert("c".into(), vec![(1.0, c(0, 0, 0)), (5.0, c(9, 0, 9))]);
        assert!(early.silent_sidecars().is_empty());
    }

    #[test]
    fn history_is_trimmed_to_the_window() {
        let mut state = AppState {
            now: 1000.0,
            ..Default::default()
        };
        state.config_history.insert(
            "a".into(),
            vec![
                ConfigSample {
                    at: 100.0,
                    ..Default::default()
                },
                ConfigSample {
                    at: 900.0,
                    ..Default::default()
                },
            ],
        );
        state.counters.insert(
            "a".into(),
            vec![
                (100.0, Counters::default()),
                (600.0, Counters::default()),
                (900.0, Counters::default()),
            ],
        );
        state.trim_history();
        assert_eq!(state.config_history["a"].len(), 1);
        assert_eq!(
            state.counters["a"].iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![600.0, 900.0]
        );
    }
}
