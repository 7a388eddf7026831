//! The one app state the terminal UI draws. Sources change it only through [`AppState::apply`]
//! with an [`Event`](super::event::Event); views only read it.

use super::view::View;
pub use crate::affinity::story::{Histories, PodRef};
use crate::envoy::agreement::{self, SidecarFacts};
use crate::envoy::shape::ConfigShape;
use crate::install::findings::Findings;
use crate::install::preview::{Preview, PreviewKind};
pub use crate::probe::ProbeKind;
use std::collections::BTreeMap;

/// Seconds since the UI started: the x axis of every chart.
pub type Seconds = f64;

/// How long a chart looks back.
pub const HISTORY_SECONDS: Seconds = 300.0;

/// The probe's charted hit rate is over this window: its report's own rate is cumulative since
/// the probe started, which would hide the step an apply makes.
pub const PROBE_WINDOW: Seconds = 5.0;

/// A sidecar whose counters show requests that log a decision, but whose log gave no decision
/// line for this long, is taken to log `wasm` below info.
pub const SILENT_AFTER: Seconds = 10.0;

/// How long `L` keeps a sidecar's `wasm` logger at info before restoring it.
pub const WASM_LOG_RAISE: Seconds = 600.0;

/// How long the UI waits, when it exits, for raised `wasm` loggers to be restored (one admin
/// call each, in parallel) before it gives up and says which were not.
pub const WASM_LOG_RESTORE_AT_EXIT: Seconds = 5.0;

/// What `L` did to one sidecar's `wasm` logger.
#[derive(Debug, Clone, PartialEq)]
pub enum WasmLogRaise {
    /// Asked; the admin API has not answered yet.
    Raising,
    /// At info until `until` (seconds since start), then back to `previous`, the level read
    /// first; also restored when the UI exits.
    Raised { until: Seconds, previous: String },
    /// Raising or restoring failed: the admin call's error.
    Failed(String),
}

/// What the task that raises and restores one sidecar's `wasm` logger reports.
#[derive(Debug, Clone, PartialEq)]
pub enum WasmLogChange {
    /// Now at info, for this long; `previous` is the level read first (`POST /logging`).
    Raised {
        previous: String,
        for_seconds: Seconds,
    },
    /// The logger already writes info lines (at `level`): left alone, nothing to restore.
    Unchanged {
        level: String,
    },
    /// Back at `level`.
    Restored {
        level: String,
    },
    Failed(String),
}

/// The filter's `log_decisions`, as a sidecar runs it (its pluginConfig, from config_dump).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionLogging {
    Off,
    Changes,
    All,
    /// The plugin refuses its pluginConfig, so it does not run: the filter's message.
    Refused(String),
}

impl DecisionLogging {
    /// What the filter makes of its pluginConfig bytes (its own parser).
    pub fn of_plugin_config(config: &str) -> DecisionLogging {
        use kasi_filter::config::{Config, LogDecisions};
        match Config::parse(config.as_bytes()) {
            Ok(config) => match config.log_decisions {
                LogDecisions::Off => DecisionLogging::Off,
                LogDecisions::Changes => DecisionLogging::Changes,
                LogDecisions::All => DecisionLogging::All,
            },
            Err(e) => DecisionLogging::Refused(e.to_string()),
        }
    }
}

/// Why a sidecar gives the Sessions view no decision lines. [`AppState::quiet_sidecars`] gives
/// each sidecar the first that holds, in this order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quiet {
    /// The activator pod has no istio-proxy: no filter.
    NoSidecar,
    /// kasi's filter is not loaded (or not applied) in the sidecar.
    FilterNotLoaded,
    /// The filter refuses its pluginConfig and does not run.
    ConfigRefused(String),
    /// The filter runs with `log_decisions: "off"`.
    LoggingOff,
    /// The sidecar's `wasm` logger is at this level, above info: decision lines (info) are dropped.
    WasmLevel(String),
    /// Requests that write a line went through, yet none arrived for [`SILENT_AFTER`]; the
    /// `wasm` level, when known, is at info or below.
    Silent { level: Option<String> },
    /// The filter's counters have not moved over the readings kept: no requests yet.
    NoRequests,
    /// Every request was steered by its session, which at `log_decisions: "changes"` writes no line.
    OnlySticky,
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
    /// The filter's `log_decisions` in this sidecar, read with its config_dump.
    pub decision_logging: Option<DecisionLogging>,
    /// The pod's `kasi.dev/filter-sha256` label: the module version it was rolled with.
    pub module: Option<String>,
    /// What its sidecar runs that kasi relies on, read with its config_dump.
    pub shape: Option<ConfigShape>,
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
    /// `cookie`, `envelope` (an MCP session) or `header`: the decision line's `carrier`.
    pub carrier: String,
    /// What identifies the session beyond its pod and host, as shown (a short hash, never a raw
    /// session id); `None` when the lines name none.
    pub session: Option<String>,
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

/// What a probe runs against: cookie jars or MCP clients, the URL, and curl-style `--resolve`
/// entries (the lab's MCP service is a Host behind the ingress's address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeTarget {
    pub kind: ProbeKind,
    pub url: String,
    pub resolve: Vec<String>,
}

/// The probes `s` (cookie) and `m` (MCP) start: the lab's, or the last `:probe` of each kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeTargets {
    pub cookie: Option<ProbeTarget>,
    pub mcp: Option<ProbeTarget>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeState {
    pub target: ProbeTarget,
    /// Each probe session's cookie (or envelope) address and its own hit rate.
    pub pins: Vec<(String, Option<f64>)>,
    pub running: bool,
    pub sessions: usize,
    pub requests: u64,
    pub failures: u64,
    pub hit_rate: Option<f64>,
    /// Cumulative: requests that landed on their session's pinned pod, and requests that count
    /// (each session's first only pins): the hit rate's two sides.
    pub hits: u64,
    pub counted: u64,
    /// MCP: calls answered 404, and the re-initializations they caused.
    pub not_found: u64,
    pub reinitializations: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    Apply,
    Revert,
}

impl Confirm {
    pub fn preview_kind(self) -> PreviewKind {
        match self {
            Confirm::Apply => PreviewKind::Apply,
            Confirm::Revert => PreviewKind::Revert,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstallState {
    pub confirm: Option<Confirm>,
    /// (done, total, what) while an apply or revert runs.
    pub progress: Option<(usize, usize, String)>,
    pub log: Vec<String>,
    /// What apply would do, from the server's dry run (`Err`: why there is none).
    pub apply_preview: Option<Result<Preview, String>>,
    /// What revert would do, likewise.
    pub revert_preview: Option<Result<Preview, String>>,
    /// (done, total) objects while the dry runs run.
    pub previewing: Option<(usize, usize)>,
    /// Which command the "would" column and `d` show (`t` toggles).
    pub context: PreviewKind,
    /// The diff overlay (`d`, `D`).
    pub diff: Option<DiffOverlay>,
}

impl InstallState {
    pub fn preview(&self, kind: PreviewKind) -> Option<&Result<Preview, String>> {
        match kind {
            PreviewKind::Apply => self.apply_preview.as_ref(),
            PreviewKind::Revert => self.revert_preview.as_ref(),
        }
    }
}

/// What the diff overlay shows: one piece's diff or all, of apply or revert, scrolled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffOverlay {
    pub kind: PreviewKind,
    /// The piece (`id`, kind, name); `None`: every changing object.
    pub piece: Option<(String, String, String)>,
    /// First line shown.
    pub scroll: usize,
}

/// What the paste box (`p`) decoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PasteBox {
    pub input: String,
    pub result: Option<Result<String, String>>,
}

/// The session story panel (`Enter` in Sessions): which session, and how far it is scrolled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoryPanel {
    pub authority: String,
    pub carrier: String,
    pub session: Option<String>,
    pub address: String,
    /// Steps scrolled up from the newest (0: the newest step is the last line shown).
    pub scroll_up: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UiState {
    pub selected: usize,
    pub filter: String,
    pub filter_editing: bool,
    pub help: bool,
    pub palette: Option<String>,
    pub paste: Option<PasteBox>,
    pub story: Option<StoryPanel>,
    /// `:ctx`'s list of the kubeconfig's contexts: the selected row.
    pub context_picker: Option<usize>,
    /// The demo guide overlay (kasi demo starts with it open).
    pub guide: bool,
    pub message: Option<String>,
    pub quit: bool,
    /// The terminal's height (0: unknown), so scrolling stops at the last page as drawn.
    pub screen_height: u16,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppState {
    pub now: Seconds,
    pub view: View,
    pub cluster: ClusterInfo,
    /// The kubeconfig's contexts, for `:ctx` (empty on the lab, which has one).
    pub contexts: Vec<String>,
    pub connection: Connection,
    /// Permissions the API refused, e.g. `list pods in knative-serving`.
    pub forbidden: Vec<String>,
    pub pieces: Vec<PieceRow>,
    pub activators: Vec<ActivatorRow>,
    pub revisions: Vec<RevisionRow>,
    pub sessions: Vec<SessionRow>,
    /// Every session's bounded history, for its story (`Enter` in Sessions).
    pub stories: Histories,
    pub config_history: BTreeMap<String, Vec<ConfigSample>>,
    pub counters: BTreeMap<String, Vec<(Seconds, Counters)>>,
    /// When an apply or revert finished, for the marks on the Config and Stickiness charts.
    pub install_marks: Vec<(Seconds, String)>,
    pub probe: Option<ProbeState>,
    /// The probe's hit rate over [`PROBE_WINDOW`], one point per tick that brought a report.
    pub probe_series: Vec<(Seconds, f64)>,
    /// The probe's (time, hits, counted) readings of the last [`PROBE_WINDOW`] and one before.
    pub probe_readings: Vec<(Seconds, u64, u64)>,
    pub probe_targets: ProbeTargets,
    pub install: InstallState,
    /// What in the cluster defeats kasi; `None` until first read.
    pub findings: Option<Findings>,
    /// When each sidecar's log last gave a decision line.
    pub last_decision: BTreeMap<String, Seconds>,
    /// Each sidecar's `wasm` logger level, from its admin API (read when the sidecar appears,
    /// restarts, every minute, and reported by kasi's own changes).
    pub wasm_levels: BTreeMap<String, String>,
    /// What `L` did, by sidecar: raises in flight or held, and failures.
    pub wasm_log: BTreeMap<String, WasmLogRaise>,
    /// `kasi demo --tour`: the step shown and what it measured.
    pub tour: Option<super::tour::Tour>,
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

    /// Whether kasi's filter refuses a session naming `address`: no pod kasi knows has it, and
    /// it is outside the bundle's `allowed_cidrs` / `allowed_ports` (the filter's defaults), so
    /// the filter drops it as `disallowed`.
    pub fn refuses(&self, address: &str) -> bool {
        let Ok(parsed) = address.parse::<std::net::SocketAddr>() else {
            return false;
        };
        self.pod_of(address).is_none() && !kasi_filter::config::Config::default().allows(&parsed)
    }

    /// The story history behind a session panel (or a session row).
    pub fn story_history(&self, panel: &StoryPanel) -> Option<&crate::affinity::story::History> {
        self.stories.find(
            &panel.authority,
            &panel.carrier,
            panel.session.as_deref(),
            &panel.address,
        )
    }

    /// Folds a probe report's cumulative counts into the probe's series: the rate since the
    /// reading [`PROBE_WINDOW`] ago (or the probe's first), one point per clock tick (a later
    /// report in the same tick replaces it). A new probe starts from zero: its counts fall.
    pub fn record_probe_reading(&mut self, hits: u64, counted: u64) {
        let now = self.now;
        if self
            .probe_readings
            .last()
            .is_some_and(|&(_, h, c)| c > counted || h > hits)
        {
            self.probe_readings.clear();
        }
        if self.probe_readings.is_empty() {
            // The probe counts from zero: its start is the first window's base.
            self.probe_readings.push((now - PROBE_WINDOW, 0, 0));
        }
        match self.probe_readings.last_mut() {
            Some(last) if last.0 == now => *last = (now, hits, counted),
            _ => self.probe_readings.push((now, hits, counted)),
        }
        // Keep one reading at or before the window's start: the rate's base.
        let base = self
            .probe_readings
            .iter()
            .rposition(|(t, _, _)| *t <= now - PROBE_WINDOW)
            .unwrap_or(0);
        self.probe_readings.drain(..base);
        let (_, base_hits, base_counted) = self.probe_readings[0];
        let counted_since = counted - base_counted;
        if counted_since == 0 {
            return;
        }
        let rate = (hits - base_hits) as f64 / counted_since as f64;
        match self.probe_series.last_mut() {
            Some(last) if last.0 == now => last.1 = rate,
            _ => self.probe_series.push((now, rate)),
        }
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

    /// Where the live activators' sidecars do not run the same thing, one line each (empty when
    /// they agree): module, pluginConfig, filter chain, PassthroughCluster, Sidecar scope, `wasm`
    /// log level ([`agreement::disagreements`]).
    pub fn disagreements(&self) -> Vec<String> {
        let facts: Vec<SidecarFacts<'_>> = self
            .activators
            .iter()
            .filter(|a| a.sidecar_injected)
            .map(|a| SidecarFacts {
                pod: &a.pod,
                module: a.module.as_deref(),
                shape: a.shape.as_ref(),
                clusters: self
                    .config_history
                    .get(&a.pod)
                    .and_then(|samples| samples.last())
                    .map(|s| s.cluster_count),
                wasm_level: self.wasm_levels.get(&a.pod).map(String::as_str),
            })
            .collect();
        agreement::disagreements(&facts)
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
    /// decision line (at the `log_decisions` their filter runs with), while their log follower
    /// saw none for as long: their sidecar's `wasm` logger is likely below info (istio-proxy runs
    /// `--log-level warning` by default), or their log does not reach kasi. Sidecars whose
    /// raise is in flight or held are not in it.
    pub fn silent_sidecars(&self) -> Vec<&str> {
        self.counters
            .iter()
            .filter(|(pod, _)| !self.raise_active(pod))
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
                let logged = match self.decision_logging(pod) {
                    Some(DecisionLogging::All) => last.requests.saturating_sub(earlier.requests),
                    Some(DecisionLogging::Off | DecisionLogging::Refused(_)) => 0,
                    Some(DecisionLogging::Changes) | None => last.logged_since(earlier),
                };
                logged > 0 && !heard
            })
            .map(|(pod, _)| pod.as_str())
            .collect()
    }

    fn decision_logging(&self, pod: &str) -> Option<&DecisionLogging> {
        let activator = self.activators.iter().find(|a| a.pod == pod)?;
        activator.decision_logging.as_ref()
    }

    /// Whether `pod`'s `wasm` logger is known to drop info lines (its level is above info).
    pub fn wasm_above_info(&self, pod: &str) -> bool {
        let level = self.wasm_levels.get(pod);
        level.and_then(|l| crate::envoy::admin::logs_info(l)) == Some(false)
    }

    /// A raise of `pod`'s `wasm` logger is in flight, or held and still in effect (a sidecar
    /// that restarted meanwhile is back at its own level: that raise no longer counts).
    pub fn raise_active(&self, pod: &str) -> bool {
        match self.wasm_log.get(pod) {
            Some(WasmLogRaise::Raising) => true,
            Some(WasmLogRaise::Raised { .. }) => !self.wasm_above_info(pod),
            Some(WasmLogRaise::Failed(_)) | None => false,
        }
    }

    /// Why each activator's sidecar gives no decision lines, for those where one of the
    /// [`Quiet`] cases holds: the sidecar's state (no sidecar, no filter, a refused config,
    /// `log_decisions: "off"`, the `wasm` logger above info) whenever it holds; what its traffic
    /// shows (silent, no requests, only sticky requests) when no line came from it for the
    /// window the sessions table keeps.
    pub fn quiet_sidecars(&self) -> Vec<(&str, Quiet)> {
        let mut quiet = Vec::new();
        for activator in &self.activators {
            let pod = activator.pod.as_str();
            if let Some(why) = self.quiet(activator) {
                quiet.push((pod, why));
            }
        }
        quiet
    }

    fn quiet(&self, activator: &ActivatorRow) -> Option<Quiet> {
        let pod = activator.pod.as_str();
        if !activator.sidecar_injected {
            return Some(Quiet::NoSidecar);
        }
        if activator.filter_loaded == Some(false) {
            return Some(Quiet::FilterNotLoaded);
        }
        match &activator.decision_logging {
            Some(DecisionLogging::Refused(why)) => return Some(Quiet::ConfigRefused(why.clone())),
            Some(DecisionLogging::Off) => return Some(Quiet::LoggingOff),
            _ => {}
        }
        if self.wasm_above_info(pod) && !self.raise_active(pod) {
            return Some(Quiet::WasmLevel(self.wasm_levels[pod].clone()));
        }
        if self.silent_sidecars().contains(&pod) {
            let level = self.wasm_levels.get(pod).cloned();
            return Some(Quiet::Silent { level });
        }
        let heard = self
            .last_decision
            .get(pod)
            .is_some_and(|t| self.now - t < HISTORY_SECONDS);
        if heard || activator.filter_loaded.is_none() {
            return None;
        }
        let readings = self.counters.get(pod)?;
        let ((_, first), (_, last)) = (readings.first()?, readings.last()?);
        if readings.len() < 2 {
            return None;
        }
        if last.requests == first.requests {
            return Some(Quiet::NoRequests);
        }
        let all = activator.decision_logging == Some(DecisionLogging::All);
        (!all && last.logged_since(first) == 0).then_some(Quiet::OnlySticky)
    }

    /// The sidecars `L` raises: every activator's sidecar whose `wasm` logger is above info or
    /// not read yet (the raise reads it first and leaves one at info alone), unless a raise of
    /// it is in flight or held.
    pub fn wasm_raise_targets(&self) -> Vec<&str> {
        self.activators
            .iter()
            .filter(|a| a.sidecar_injected && !self.raise_active(&a.pod))
            .filter(|a| {
                let level = self.wasm_levels.get(&a.pod);
                level.and_then(|l| crate::envoy::admin::logs_info(l)) != Some(true)
            })
            .map(|a| a.pod.as_str())
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
        self.probe_series.retain(|(t, _)| *t >= oldest);
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
            WasmLogRaise::Raised {
                until: 600.0,
                previous: "warning".into(),
            },
        );
        assert!(state.silent_sidecars().is_empty());
        state.wasm_log.clear();
        // At log_decisions "all" sticky requests log too; at "off" nothing does.
        let activator = |pod: &str, logging| ActivatorRow {
            pod: pod.into(),
            sidecar_injected: true,
            filter_loaded: Some(true),
            decision_logging: Some(logging),
            ..Default::default()
        };
        state.activators = vec![
            activator("a", DecisionLogging::All),
            activator("b", DecisionLogging::Off),
        ];
        assert_eq!(state.silent_sidecars(), ["a"]);
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

    /// Two activators with the filter loaded, logging at "changes", `wasm` at info, a line from
    /// each 5 s ago and requests of every kind in their counters: nothing to explain.
    fn logging_lab() -> AppState {
        let mut state = crate::tui::fixture::lab_state(View::Sessions);
        state.now = 60.0;
        for pod in state.activators.iter().map(|a| a.pod.clone()) {
            state.last_decision.insert(pod, 55.0);
        }
        state
    }

    #[test]
    fn quiet_sidecars_say_the_first_reason_that_holds() {
        let state = logging_lab();
        let (a, b) = (
            state.activators[0].pod.clone(),
            state.activators[1].pod.clone(),
        );
        assert_eq!(state.quiet_sidecars(), []);
        let why = |change: &dyn Fn(&mut AppState)| {
            let mut state = logging_lab();
            change(&mut state);
            state
                .quiet_sidecars()
                .into_iter()
                .map(|(pod, why)| (pod.to_owned(), why))
                .collect::<Vec<_>>()
        };
        // The sidecar's own state explains it even while lines came before.
        assert_eq!(
            why(&|s| {
                s.wasm_levels.insert(a.clone(), "warning".into());
            }),
            [(a.clone(), Quiet::WasmLevel("warning".into()))]
        );
        assert_eq!(
            why(&|s| s.activators[1].decision_logging = Some(DecisionLogging::Off)),
            [(b.clone(), Quiet::LoggingOff)]
        );
        assert_eq!(
            why(&|s| {
                s.activators[1].decision_logging =
                    Some(DecisionLogging::of_plugin_config(r#"{"log_decision":"all"}"#))
            }),
            [(
                b.clone(),
                Quiet::ConfigRefused(
                    "pluginConfig key \"log_decision\": unknown key; known keys are cookie_name, cookie_path, mcp_header, session_header, allowed_cidrs, allowed_ports, dead_host_ttl_s, log_decisions, session_keys".into()
                )
            )]
        );
        // No filter wins over the log level; no sidecar over everything.
        assert_eq!(
            why(&|s| {
                s.activators[0].filter_loaded = Some(false);
                s.wasm_levels.insert(a.clone(), "warning".into());
                s.activators[1].sidecar_injected = false;
            }),
            [
                (a.clone(), Quiet::FilterNotLoaded),
                (b.clone(), Quiet::NoSidecar)
            ]
        );
        // A raise in flight or held covers the level; one the sidecar lost (it restarted and is
        // back at warning) does not.
        let raised = |s: &mut AppState, raise: WasmLogRaise, level: &str| {
            s.wasm_log.insert(a.clone(), raise);
            s.wasm_levels.insert(a.clone(), level.into());
        };
        assert_eq!(why(&|s| raised(s, WasmLogRaise::Raising, "warning")), []);
        let held = || WasmLogRaise::Raised {
            until: 600.0,
            previous: "warning".into(),
        };
        assert_eq!(why(&|s| raised(s, held(), "info")), []);
        assert_eq!(
            why(&|s| raised(s, held(), "warning")),
            [(a.clone(), Quiet::WasmLevel("warning".into()))]
        );
        // Requests that log and no line for 10 s: silent, with the level if known.
        assert_eq!(
            why(&|s| {
                crate::tui::fixture::silence(s, &a);
                s.wasm_levels.remove(&a);
            }),
            [(a.clone(), Quiet::Silent { level: None })]
        );
        // Traffic cases only once no line came for the whole window.
        let no_lines = |s: &mut AppState| {
            s.last_decision.clear();
            s.sessions.clear();
        };
        let flat = |s: &mut AppState, pod: &str, counters: Counters| {
            s.counters
                .insert(pod.into(), vec![(0.0, counters), (60.0, counters)]);
        };
        assert_eq!(
            why(&|s| {
                no_lines(s);
                flat(s, &a, Counters::default());
                let sticky = Counters {
                    requests: 50,
                    cookie_routed: 50,
                    sticky_hits: 50,
                    ..Default::default()
                };
                s.counters
                    .insert(b.clone(), vec![(0.0, Counters::default()), (60.0, sticky)]);
            }),
            [
                (a.clone(), Quiet::NoRequests),
                (b.clone(), Quiet::OnlySticky)
            ]
        );
        // A line within the window: the traffic explains itself.
        assert_eq!(
            why(&|s| {
                flat(s, &a, Counters::default());
            }),
            []
        );
        // A single reading, or a filter not read yet: too early to say.
        assert_eq!(
            why(&|s| {
                no_lines(s);
                s.counters
                    .insert(a.clone(), vec![(60.0, Counters::default())]);
                s.activators[1].filter_loaded = None;
            }),
            []
        );
    }

    #[test]
    fn l_targets_sidecars_above_info_or_unread() {
        let mut state = logging_lab();
        let (a, b) = (
            state.activators[0].pod.clone(),
            state.activators[1].pod.clone(),
        );
        assert!(state.wasm_raise_targets().is_empty());
        state.wasm_levels.insert(a.clone(), "error".into());
        state.wasm_levels.remove(&b);
        assert_eq!(state.wasm_raise_targets(), [a.as_str(), b.as_str()]);
        state.activators[1].sidecar_injected = false;
        assert_eq!(state.wasm_raise_targets(), [a.as_str()]);
        state.wasm_log.insert(a.clone(), WasmLogRaise::Raising);
        assert!(state.wasm_raise_targets().is_empty());
    }

    #[test]
    fn decision_logging_is_what_the_filter_makes_of_its_config() {
        let of = DecisionLogging::of_plugin_config;
        assert_eq!(of(""), DecisionLogging::Changes);
        assert_eq!(of(r#"{"cookie_name":"s"}"#), DecisionLogging::Changes);
        assert_eq!(of(r#"{"log_decisions":"off"}"#), DecisionLogging::Off);
        assert_eq!(of(r#"{"log_decisions":"all"}"#), DecisionLogging::All);
        assert!(
            matches!(of(r#"{"log_decisions":"none"}"#), DecisionLogging::Refused(e) if e.contains("log_decisions"))
        );
        assert!(matches!(of("{"), DecisionLogging::Refused(_)));
    }

    #[test]
    fn the_probe_is_charted_over_its_last_window_not_since_it_started() {
        let mut state = AppState::default();
        // 20 users, one request a second each: a third stick before the apply at 10 s, all after.
        let (mut hits, mut counted) = (0, 0);
        for t in 1..=20u64 {
            state.now = t as f64;
            counted += 20;
            hits += if t <= 10 { 7 } else { 20 };
            state.record_probe_reading(hits, counted);
        }
        let at = |t: f64| state.probe_series.iter().find(|p| p.0 == t).unwrap().1;
        assert_eq!(at(1.0), 7.0 / 20.0);
        assert_eq!(at(10.0), 7.0 / 20.0);
        // Five seconds after the apply the window holds only sticky requests: 100 %, where the
        // cumulative rate is still (70 + 200) / 400.
        assert_eq!(at(15.0), 1.0);
        assert_eq!(at(20.0), 1.0);
        assert!(state.probe_readings.len() <= PROBE_WINDOW as usize + 1);
        // Two reports in one tick: one point.
        state.record_probe_reading(hits + 20, counted + 20);
        assert_eq!(state.probe_series.len(), 20);
        // A new probe starts from zero: no negative step, its own rate.
        state.now = 21.0;
        state.record_probe_reading(0, 0);
        state.now = 22.0;
        state.record_probe_reading(5, 10);
        assert_eq!(state.probe_series.last(), Some(&(22.0, 0.5)));
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
