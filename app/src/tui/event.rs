//! Everything that reaches the UI arrives as an [`Event`] on one channel; [`apply`] folds it
//! into the state. Sources never touch the state themselves.

use super::state::*;
use crate::affinity::decisions::DecisionLine;
use crossterm::event::KeyEvent;

#[derive(Debug, Clone)]
pub enum Event {
    Key(KeyEvent),
    /// The clock moved (seconds since start); also the redraw cadence.
    Tick(Seconds),
    Cluster(ClusterInfo),
    Connection(Connection),
    /// The API server answered: clears a stale banner (not the initial "connecting").
    ApiReachable,
    /// A permission the API refused, e.g. `watch pods in knative-serving`.
    Forbidden(String),
    Pieces(Vec<PieceRow>),
    /// What of Istio and Knative the cluster has.
    Platform {
        istio: Option<String>,
        knative: Option<String>,
    },
    Activators(Vec<ActivatorRow>),
    Revisions(Vec<RevisionRow>),
    /// A decision line from an activator sidecar's log.
    Decision {
        sidecar: String,
        line: DecisionLine,
    },
    Config {
        sidecar: String,
        sample: ConfigSample,
        filter_loaded: bool,
        /// The loaded filter's `log_decisions` (from its pluginConfig in the same config_dump).
        decision_logging: Option<DecisionLogging>,
        /// Its revision ports' filter chain, PassthroughCluster and pluginConfig hash.
        shape: crate::envoy::shape::ConfigShape,
    },
    /// A sidecar's `wasm` logger level, read from its admin API (`POST /logging`).
    WasmLevel {
        sidecar: String,
        level: String,
    },
    Counters {
        sidecar: String,
        at: Seconds,
        counters: Counters,
        /// Envoy's `server.memory_allocated`.
        memory: Option<u64>,
    },
    Probe(ProbeState),
    InstallProgress {
        done: usize,
        total: usize,
        what: String,
    },
    InstallDone {
        what: String,
        result: Result<String, String>,
    },
    /// Objects dry-run so far, while the previews are made.
    PreviewProgress {
        done: usize,
        total: usize,
    },
    /// What apply or revert would do (the server's dry run), or why it could not be asked.
    Preview {
        kind: crate::install::preview::PreviewKind,
        result: Result<crate::install::preview::Preview, String>,
    },
    Message(String),
    /// What in the cluster defeats kasi (read every few tens of seconds).
    Findings(crate::install::findings::Findings),
    /// A sidecar's `wasm` logger was raised, left alone, restored, or the admin call failed.
    WasmLog {
        sidecar: String,
        change: WasmLogChange,
    },
    /// SIGTERM or SIGHUP: leave as if `q` was pressed, so the terminal and the lab are cleaned up.
    Shutdown,
    /// `:ctx`'s new client is built (or failed): the runtime picks it up from its slot.
    ContextReady,
}

pub fn apply(state: &mut AppState, event: Event) {
    match event {
        Event::Key(_) => {}
        Event::Tick(now) => {
            state.now = now;
            state.trim_history();
        }
        Event::Cluster(info) => state.cluster = info,
        Event::Connection(connection) => {
            // Keep the time a staleness started, not the time of the latest failure.
            if let (Connection::Stale { since, .. }, Connection::Stale { reason, .. }) =
                (&state.connection, &connection)
            {
                state.connection = Connection::Stale {
                    since: *since,
                    reason: reason.clone(),
                };
            } else {
                state.connection = connection;
            }
        }
        Event::ApiReachable => {
            if matches!(state.connection, Connection::Stale { .. }) {
                state.connection = Connection::Live;
            }
        }
        Event::Forbidden(what) => {
            if !state.forbidden.contains(&what) {
                state.forbidden.push(what);
            }
        }
        Event::Pieces(pieces) => state.pieces = pieces,
        Event::Platform { istio, knative } => {
            state.cluster.istio = istio;
            state.cluster.knative = knative;
        }
        Event::Activators(mut activators) => {
            // The pod watcher knows pods; readings of their sidecars stay until the next ones.
            for row in &mut activators {
                if let Some(old) = state.activators.iter().find(|a| a.pod == row.pod) {
                    row.filter_loaded = row.filter_loaded.or(old.filter_loaded);
                    row.config_bytes = row.config_bytes.or(old.config_bytes);
                    row.memory_bytes = row.memory_bytes.or(old.memory_bytes);
                    row.hit_rate = row.hit_rate.or(old.hit_rate);
                    row.decision_logging =
                        row.decision_logging.take().or(old.decision_logging.clone());
                    row.shape = row.shape.take().or(old.shape.clone());
                }
            }
            state
                .wasm_levels
                .retain(|pod, _| activators.iter().any(|a| &a.pod == pod));
            state.activators = activators;
        }
        Event::Revisions(revisions) => {
            record_endpoint_changes(state, &revisions);
            state.revisions = revisions;
        }
        Event::Decision { sidecar, line } => record_decision(state, sidecar, line),
        Event::Config {
            sidecar,
            sample,
            filter_loaded,
            decision_logging,
            shape,
        } => {
            if let Some(activator) = state.activators.iter_mut().find(|a| a.pod == sidecar) {
                activator.config_bytes = Some(sample.total());
                activator.filter_loaded = Some(filter_loaded);
                activator.decision_logging = decision_logging;
                activator.shape = Some(shape);
            }
            state
                .config_history
                .entry(sidecar)
                .or_default()
                .push(sample);
        }
        Event::Counters {
            sidecar,
            at,
            counters,
            memory,
        } => {
            state
                .counters
                .entry(sidecar.clone())
                .or_default()
                .push((at, counters));
            let rate = state.hit_rate_series(&sidecar).last().map(|(_, r)| *r);
            if let Some(activator) = state.activators.iter_mut().find(|a| a.pod == sidecar) {
                activator.hit_rate = rate.or(activator.hit_rate);
                activator.memory_bytes = memory.or(activator.memory_bytes);
            }
        }
        Event::Probe(probe) => {
            record_probe_sessions(state, &probe);
            state.record_probe_reading(probe.hits, probe.counted);
            state.probe = Some(probe);
        }
        Event::InstallProgress { done, total, what } => {
            state.install.log.push(what.clone());
            state.install.progress = Some((done, total, what));
        }
        Event::InstallDone { what, result } => {
            state.install.progress = None;
            match result {
                Ok(summary) => {
                    state.install.log.push(summary);
                    state.install_marks.push((state.now, what));
                }
                Err(e) => {
                    state.install.log.push(format!("{what} failed: {e}"));
                    state.ui.message = Some(format!("{what} failed: {e}"));
                }
            }
        }
        Event::PreviewProgress { done, total } => state.install.previewing = Some((done, total)),
        Event::Preview { kind, result } => {
            match kind {
                crate::install::preview::PreviewKind::Apply => {
                    state.install.apply_preview = Some(result)
                }
                // Revert's comes last: the previews are done.
                crate::install::preview::PreviewKind::Revert => {
                    state.install.revert_preview = Some(result);
                    state.install.previewing = None;
                }
            }
        }
        Event::Message(message) => state.ui.message = Some(message),
        Event::Findings(findings) => state.findings = Some(findings),
        Event::WasmLevel { sidecar, level } => {
            state.wasm_levels.insert(sidecar, level);
        }
        Event::WasmLog { sidecar, change } => record_wasm_log(state, sidecar, change),
        Event::Shutdown => state.ui.quit = true,
        // Handled by the runtime, which holds the clients.
        Event::ContextReady => {}
    }
}

/// Keeps what `L` did to one sidecar, and the level its `wasm` logger is at now.
fn record_wasm_log(state: &mut AppState, sidecar: String, change: WasmLogChange) {
    match change {
        WasmLogChange::Raised {
            previous,
            for_seconds,
        } => {
            state.wasm_levels.insert(sidecar.clone(), "info".into());
            let until = state.now + for_seconds;
            state
                .wasm_log
                .insert(sidecar, WasmLogRaise::Raised { until, previous });
        }
        WasmLogChange::Unchanged { level } => {
            state.wasm_log.remove(&sidecar);
            let prefix =
                format!("wasm logger already at {level} (info lines included), left alone: ");
            name_in_message(state, &prefix, &sidecar);
            state.wasm_levels.insert(sidecar, level);
        }
        WasmLogChange::Restored { level } => {
            state.wasm_log.remove(&sidecar);
            name_in_message(state, &format!("wasm logger back at {level} on "), &sidecar);
            state.wasm_levels.insert(sidecar, level);
        }
        WasmLogChange::Failed(error) => {
            state.wasm_log.insert(sidecar, WasmLogRaise::Failed(error));
        }
    }
}

/// Shows `prefix` + `pod` in the footer; raises made together report together, so a message
/// with the same prefix already there gets the pod appended instead.
fn name_in_message(state: &mut AppState, prefix: &str, pod: &str) {
    state.ui.message = Some(match state.ui.message.take() {
        Some(earlier) if earlier.starts_with(prefix) => format!("{earlier}, {pod}"),
        _ => format!("{prefix}{pod}"),
    });
}

/// The probe's own sessions join the table, seen by `probe`, one row per pinned address.
fn record_probe_sessions(state: &mut AppState, probe: &ProbeState) {
    let now = state.now;
    state.sessions.retain(|s| s.seen_by != "probe");
    let mut by_address: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (address, _) in &probe.pins {
        *by_address.entry(address).or_default() += 1;
    }
    for (address, sessions) in by_address {
        state.sessions.push(SessionRow {
            address: address.to_owned(),
            authority: probe.target.url.clone(),
            carrier: match probe.target.kind {
                ProbeKind::Cookie => "cookie",
                ProbeKind::Mcp => "envelope",
            }
            .into(),
            session: None,
            expires: None,
            state: SessionState::Pinned,
            reason: format!("probe ×{sessions}"),
            seen_by: "probe".into(),
            last_seen: now,
            requests: probe.requests,
        });
    }
}

/// The pod an address belongs to, named for a story.
fn pod_ref(revisions: &[RevisionRow], address: &str) -> Option<PodRef> {
    revisions.iter().find_map(|r| {
        r.pods
            .iter()
            .find(|p| p.address == address)
            .map(|p| PodRef {
                name: p.name.clone(),
                revision: r.name.clone(),
            })
    })
}

/// Pods that left their revision's Endpoints, or stopped being ready, join the stories of the
/// sessions pinned to them.
fn record_endpoint_changes(state: &mut AppState, revisions: &[RevisionRow]) {
    if state.stories.is_empty() {
        return;
    }
    let now: std::collections::HashMap<&str, bool> = revisions
        .iter()
        .flat_map(|r| r.pods.iter().map(|p| (p.address.as_str(), p.ready)))
        .collect();
    for revision in &state.revisions {
        for pod in &revision.pods {
            let removed = match now.get(pod.address.as_str()) {
                None => true,
                Some(false) if pod.ready => false,
                Some(_) => continue,
            };
            let named = PodRef {
                name: pod.name.clone(),
                revision: revision.name.clone(),
            };
            state
                .stories
                .record_endpoint(state.now, &pod.address, named, removed);
        }
    }
}

/// Folds one decision into the session table: a session is known by the pod it is pinned to, the
/// host it talks to and its carrier, as seen by one sidecar, and by its (hashed) identity when the
/// line names one (the filter logs no cookie identity).
fn record_decision(state: &mut AppState, sidecar: String, line: DecisionLine) {
    // Any line proves the sidecar's `wasm` logger is at info.
    state.last_decision.insert(sidecar.clone(), state.now);
    let revisions = &state.revisions;
    state
        .stories
        .record_decision(state.now, &sidecar, line.clone(), |address| {
            pod_ref(revisions, address)
        });
    let (session_state, address) = match line.decision.as_str() {
        "pin" | "routed" => (SessionState::Pinned, line.address),
        "rebind" => (SessionState::Rebound, line.address),
        "rejected" => (SessionState::Rejected, line.address),
        // "dead" and "stripped" describe an address or a header, not a session.
        _ => return,
    };
    let Some(address) = address else { return };
    let authority = line.authority.unwrap_or_default();
    let carrier = line.carrier.unwrap_or_else(|| "cookie".into());
    let session = line
        .session
        .as_deref()
        .map(crate::affinity::decode::shown_session);
    let now = state.now;
    match state.sessions.iter_mut().find(|s| {
        s.address == address
            && s.authority == authority
            && s.seen_by == sidecar
            && s.carrier == carrier
            && s.session == session
    }) {
        Some(session) => {
            if line.decision != "routed" || session.state == SessionState::Rejected {
                session.state = session_state;
                session.reason = line.reason;
            }
            session.last_seen = now;
            session.requests += 1;
            session.expires = line.expires.or(session.expires);
        }
        None => state.sessions.push(SessionRow {
            address,
            authority,
            carrier,
            session,
            expires: line.expires,
            state: session_state,
            reason: line.reason,
            seen_by: sidecar,
            last_seen: now,
            requests: 1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(kind: &str, address: &str, reason: &str) -> Event {
        Event::Decision {
            sidecar: "activator-a".into(),
            line: DecisionLine {
                decision: kind.into(),
                address: Some(address.into()),
                authority: Some("hello".into()),
                reason: reason.into(),
                expires: None,
                previous: None,
                carrier: None,
                session: None,
                ..DecisionLine::default()
            },
        }
    }

    #[test]
    fn decisions_become_sessions() {
        let mut state = AppState::default();
        apply(&mut state, decision("pin", "10.0.0.1:8012", "new_session"));
        apply(&mut state, decision("routed", "10.0.0.1:8012", "cookie"));
        apply(&mut state, decision("rebind", "10.0.0.2:8012", "dead"));
        apply(
            &mut state,
            decision("dead", "10.0.0.1:8012", "connect_failure"),
        );
        assert_eq!(state.sessions.len(), 2);
        assert_eq!(state.sessions[0].requests, 2);
        assert_eq!(state.sessions[0].state, SessionState::Pinned);
        assert_eq!(state.sessions[1].state, SessionState::Rebound);
        assert_eq!(state.sessions_on("10.0.0.2:8012"), 1);
    }

    #[test]
    fn decisions_and_endpoint_changes_make_stories() {
        let mut state = crate::tui::fixture::lab_state(crate::tui::view::View::Sessions);
        state.stories = Default::default();
        let x = state.revisions[0].pods[0].address.clone();
        apply(&mut state, decision("pin", &x, "new_session"));
        // The pod leaves the Endpoints; the others stay as they were.
        let mut revisions = state.revisions.clone();
        revisions[0].pods.remove(0);
        apply(&mut state, Event::Revisions(revisions));
        let history = state.stories.find("hello", "cookie", None, &x).unwrap();
        let story = crate::affinity::story::story(history, state.now);
        let whats: Vec<&str> = story.steps.iter().map(|s| s.what.as_str()).collect();
        assert_eq!(
            whats,
            [
                "pinned to pod hello-00001-deployment-5f7b9c8d4-x7kq2",
                "pod hello-00001-deployment-5f7b9c8d4-x7kq2 left the revision's Endpoints",
            ]
        );
    }

    #[test]
    fn wasm_log_raises_are_kept_until_restored_and_levels_follow() {
        let mut state = AppState {
            now: 20.0,
            ..Default::default()
        };
        let report = |pod: &str, change| Event::WasmLog {
            sidecar: pod.into(),
            change,
        };
        for pod in ["activator-a", "activator-b"] {
            apply(
                &mut state,
                Event::WasmLevel {
                    sidecar: pod.into(),
                    level: "warning".into(),
                },
            );
            apply(
                &mut state,
                report(
                    pod,
                    WasmLogChange::Raised {
                        previous: "warning".into(),
                        for_seconds: 600.0,
                    },
                ),
            );
        }
        assert_eq!(
            state.wasm_log["activator-a"],
            WasmLogRaise::Raised {
                until: 620.0,
                previous: "warning".into()
            }
        );
        assert_eq!(state.wasm_levels["activator-a"], "info");
        for pod in ["activator-a", "activator-b"] {
            let level = "warning".into();
            apply(&mut state, report(pod, WasmLogChange::Restored { level }));
        }
        assert!(state.wasm_log.is_empty());
        assert_eq!(state.wasm_levels["activator-b"], "warning");
        assert_eq!(
            state.ui.message.as_deref(),
            Some("wasm logger back at warning on activator-a, activator-b")
        );
        // A failure is kept, named, until the next raise.
        let failed = WasmLogChange::Failed("admin POST /logging answered 503".into());
        apply(&mut state, report("activator-a", failed));
        assert!(
            matches!(&state.wasm_log["activator-a"], WasmLogRaise::Failed(e) if e.contains("503"))
        );
        // One at info already is left alone.
        let level = "debug".into();
        apply(
            &mut state,
            report("activator-b", WasmLogChange::Unchanged { level }),
        );
        assert_eq!(state.wasm_levels["activator-b"], "debug");
        assert!(!state.wasm_log.contains_key("activator-b"));
        apply(&mut state, decision("pin", "10.0.0.1:8012", "new_session"));
        assert_eq!(state.last_decision["activator-a"], 20.0);
        // Levels of pods that left are dropped.
        apply(
            &mut state,
            Event::Activators(vec![ActivatorRow {
                pod: "activator-b".into(),
                ..Default::default()
            }]),
        );
        assert_eq!(
            state.wasm_levels.keys().collect::<Vec<_>>(),
            ["activator-b"]
        );
    }

    #[test]
    fn staleness_keeps_its_start() {
        let mut state = AppState::default();
        apply(
            &mut state,
            Event::Connection(Connection::Stale {
                since: 5.0,
                reason: "a".into(),
            }),
        );
        apply(
            &mut state,
            Event::Connection(Connection::Stale {
                since: 9.0,
                reason: "b".into(),
            }),
        );
        assert_eq!(
            state.connection,
            Connection::Stale {
                since: 5.0,
                reason: "b".into()
            }
        );
        apply(&mut state, Event::Connection(Connection::Live));
        assert_eq!(state.connection, Connection::Live);
    }

    #[test]
    fn install_progress_and_result_are_logged() {
        let mut state = AppState {
            now: 12.0,
            ..Default::default()
        };
        apply(
            &mut state,
            Event::InstallProgress {
                done: 1,
                total: 9,
                what: "applied ConfigMap kasi-filter".into(),
            },
        );
        assert_eq!(
            state.install.progress,
            Some((1, 9, "applied ConfigMap kasi-filter".into()))
        );
        apply(
            &mut state,
            Event::InstallDone {
                what: "apply".into(),
                result: Ok("applied 9 objects".into()),
            },
        );
        assert_eq!(state.install.progress, None);
        assert_eq!(state.install_marks, vec![(12.0, "apply".into())]);
    }
}
