//! A lab-like state for snapshot tests and the render benchmark: what the UI holds a minute into
//! `kasi demo`, after the bundle was applied at t=30 s.

use super::state::*;
use super::view::View;
use crate::envoy::shape::{ConfigShape, Passthrough};

pub fn lab_state(view: View) -> AppState {
    let hello = |i: usize| PodRow {
        name: format!(
            "hello-00001-deployment-5f7b9c8d4-{}",
            ["x7kq2", "m4pzd", "c9wtn"][i]
        ),
        address: format!("127.42.1.{}:8012", 10 + i),
        ready: i != 2,
    };
    let mut state = AppState {
        now: 60.0,
        view,
        cluster: ClusterInfo {
            context: "kasi-lab".into(),
            server: "http://127.42.0.1:38211".into(),
            istio: Some(
                "CRDs present (networking.istio.io v1, extensions.istio.io v1alpha1)".into(),
            ),
            knative: Some("serving (activator ×2)".into()),
            lab: true,
        },
        connection: Connection::Live,
        ..AppState::default()
    };
    state.pieces = [
        (
            "filter",
            "Filter module (ConfigMap)",
            "ConfigMap",
            "kasi-filter",
            PieceStatus::Present,
        ),
        (
            "injection",
            "Sidecar injection + filter mount",
            "Deployment",
            "activator",
            PieceStatus::Present,
        ),
        (
            "wasmplugin",
            "WasmPlugin (cookie → filter state)",
            "WasmPlugin",
            "kasi-affinity",
            PieceStatus::Present,
        ),
        (
            "stateful-session",
            "EnvoyFilter: stateful_session",
            "EnvoyFilter",
            "kasi-stateful-session",
            PieceStatus::Present,
        ),
        (
            "passthrough",
            "EnvoyFilter: no override host",
            "EnvoyFilter",
            "kasi-passthrough-original-dst",
            PieceStatus::Present,
        ),
        (
            "placeholder",
            "Placeholder Service",
            "Service",
            "kasi-activator-affinity",
            PieceStatus::Present,
        ),
        (
            "sidecar",
            "Sidecar (scoped egress)",
            "Sidecar",
            "kasi-activator",
            PieceStatus::Present,
        ),
        (
            "config-network",
            "mesh-compatibility-mode disabled",
            "ConfigMap",
            "config-network",
            PieceStatus::Drifted(vec!["data.mesh-compatibility-mode".into()]),
        ),
        (
            "config-autoscaler",
            "target-burst-capacity -1",
            "ConfigMap",
            "config-autoscaler",
            PieceStatus::Missing,
        ),
    ]
    .into_iter()
    .map(|(id, title, kind, name, status)| PieceRow {
        id: id.into(),
        title: title.into(),
        kind: kind.into(),
        name: name.into(),
        status,
    })
    .collect();
    state.activators = (0..2)
        .map(|i| ActivatorRow {
            pod: format!("activator-7d9f8c6b5-{}", ["q2w8r", "h6t4z"][i]),
            ip: format!("127.42.0.{}", 10 + i),
            ready: true,
            sidecar_injected: true,
            filter_loaded: Some(true),
            config_bytes: Some(140_050 + i as u64 * 12),
            memory_bytes: Some(31_457_280),
            hit_rate: Some(if i == 0 { 1.0 } else { 0.955 }),
            decision_logging: Some(DecisionLogging::Changes),
            module: Some("4f3a9c0d1e2b5a6f7c8d9e0f1a2b3c4d".into()),
            shape: Some(installed_shape()),
        })
        .collect();
    state.revisions = vec![RevisionRow {
        namespace: "default".into(),
        name: "hello-00001".into(),
        pods: (0..3).map(hello).collect(),
    }];
    state.sessions = (0..6)
        .map(|i| SessionRow {
            address: format!("127.42.1.{}:8012", 10 + i % 3),
            authority: "hello.default.example.com".into(),
            carrier: "cookie".into(),
            session: None,
            expires: None,
            state: [
                SessionState::Pinned,
                SessionState::Pinned,
                SessionState::Rebound,
                SessionState::Pinned,
                SessionState::Rejected,
                SessionState::Pinned,
            ][i],
            reason: [
                "new_session",
                "new_session",
                "dead",
                "new_session",
                "disallowed",
                "new_session",
            ][i]
                .into(),
            seen_by: state.activators[i % 2].pod.clone(),
            last_seen: 50.0 + i as f64,
            requests: 10 + i as u64,
        })
        .collect();
    for (i, activator) in state.activators.iter().enumerate() {
        let samples = (0..=12)
            .map(|t| {
                let at = t as f64 * 5.0;
                let scoped = at >= 30.0;
                let (listeners, clusters) = if scoped {
                    (40_000, 60_000)
                } else {
                    (900_000, 1_700_000)
                };
                ConfigSample {
                    at,
                    listeners: listeners + i as u64,
                    clusters,
                    routes: if scoped { 30_000 } else { 350_000 },
                    endpoints: 0,
                    secrets: 10_050,
                    cluster_count: if scoped { 4 } else { 1054 },
                    listener_count: if scoped { 3 } else { 6 },
                }
            })
            .collect();
        state.config_history.insert(activator.pod.clone(), samples);
        let readings = (0u64..=12)
            .map(|t| {
                let at = t as f64 * 5.0;
                // Before the apply a third of the requests stick; after it, all of them.
                let before = t.min(6) * 30;
                let after = t.saturating_sub(6) * 50;
                let counters = Counters {
                    requests: before * 3 + after,
                    cookie_routed: before + after,
                    sticky_hits: before / 3 + after - if i == 1 && t > 8 { 9 } else { 0 },
                    rebinds: if t > 8 { 3 } else { 0 },
                    header_stripped: 2,
                    rejected: before * 2 / 3,
                    steer_failed: 0,
                    mcp_not_found: if i == 1 { 1 } else { 0 },
                };
                (at, counters)
            })
            .collect();
        state.counters.insert(activator.pod.clone(), readings);
    }
    state.install_marks = vec![(30.0, "apply".into())];
    // The probe's rate over its last 5 s: a third of the requests stick until the apply, then,
    // once the window holds only requests after it, all of them.
    state.probe_series = (1..=60)
        .map(|t| {
            let at = t as f64;
            let after = (at - 30.0).clamp(0.0, 5.0) / 5.0;
            (at, 0.34 + 0.66 * after)
        })
        .collect();
    state.findings = Some(crate::install::findings::Findings {
        findings: vec![crate::install::findings::Finding {
            id: crate::install::findings::CONTAINER_CONCURRENCY,
            severity: crate::install::findings::Severity::Warning,
            message: "revisions with a hard containerConcurrency: default/hello-00001 (10)".into(),
            fix: "use a soft limit (containerConcurrency: 0 and autoscaling.knative.dev/target)"
                .into(),
        }],
        unchecked: Vec::new(),
    });
    for activator in &state.activators {
        state.last_decision.insert(activator.pod.clone(), 55.0);
        // The lab's Envoy runs at `-l info`.
        state
            .wasm_levels
            .insert(activator.pod.clone(), "info".into());
    }
    state.probe_targets = ProbeTargets {
        cookie: Some(ProbeTarget {
            kind: ProbeKind::Cookie,
            url: "http://127.42.0.1:41877".into(),
            resolve: Vec::new(),
        }),
        mcp: Some(ProbeTarget {
            kind: ProbeKind::Mcp,
            url: "http://mcp.default.example.com:41877/mcp".into(),
            resolve: vec!["mcp.default.example.com:41877:127.42.0.1".into()],
        }),
    };
    state.probe = Some(ProbeState {
        target: state.probe_targets.cookie.clone().unwrap_or_default(),
        running: true,
        sessions: 20,
        requests: 400,
        failures: 1,
        hit_rate: Some(0.9975),
        pins: vec![("127.42.1.10:8012".into(), Some(1.0))],
        ..ProbeState::default()
    });
    state.install.log = vec![
        "[9/9] applied ConfigMap knative-serving/config-autoscaler".into(),
        "applied 9 objects in 0.4 s".into(),
    ];
    state.install.apply_preview = Some(Ok(apply_preview()));
    state.install.revert_preview = Some(Ok(revert_preview()));
    state
}

fn object(kind: &str, name: &str, body: serde_json::Value) -> serde_json::Value {
    let api_version = match kind {
        "Deployment" => "apps/v1",
        "WasmPlugin" => "extensions.istio.io/v1alpha1",
        "ConfigMap" | "Service" => "v1",
        _ => "networking.istio.io/v1",
    };
    let mut object = serde_json::json!({"apiVersion": api_version, "kind": kind,
        "metadata": {"name": name, "namespace": "knative-serving", "resourceVersion": "812"}});
    if let (Some(target), Some(extra)) = (object.as_object_mut(), body.as_object()) {
        target.extend(extra.clone());
    }
    object
}

fn activator(log_level: &str, label: Option<&str>) -> serde_json::Value {
    let mut labels = serde_json::json!({"app": "activator"});
    if let Some(sha) = label {
        labels["kasi.dev/filter-sha256"] = sha.into();
    }
    object(
        "Deployment",
        "activator",
        serde_json::json!({"spec": {"replicas": 2,
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": labels,
                "annotations": {"sidecar.istio.io/componentLogLevel": log_level}},
                "spec": {"containers": [{"name": "activator", "image": "activator:1.16"}]}}}}),
    )
}

fn piece_preview(
    piece: &str,
    live: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> crate::install::preview::ObjectPreview {
    let target = crate::install::objects::ObjectRef::of(live.as_ref().or(after.as_ref()).unwrap());
    crate::install::preview::ObjectPreview::of(piece, target, live.as_ref(), after.as_ref())
}

/// The fixture's cluster a minute after an apply, with `config-network` and `config-autoscaler`
/// edited by hand since, and the activator's sidecar log level changed: what apply would do.
pub fn apply_preview() -> crate::install::preview::Preview {
    use crate::install::preview::{self, Preview, PreviewKind};
    use serde_json::json;
    let same = |piece: &str, kind: &str, name: &str| {
        let live = object(kind, name, json!({"spec": {"x": 1}}));
        piece_preview(piece, Some(live.clone()), Some(live))
    };
    let sha = "9c1e0d";
    let live_activator = activator("misc:error", Some(sha));
    let after_activator = activator("misc:error,wasm:info", Some(sha));
    Preview {
        kind: PreviewKind::Apply,
        rollout: preview::rollout(Some(&live_activator), Some(&after_activator)),
        objects: vec![
            same("filter", "ConfigMap", "kasi-filter"),
            piece_preview("injection", Some(live_activator), Some(after_activator)),
            same("wasmplugin", "WasmPlugin", "kasi-affinity"),
            same("stateful-session", "EnvoyFilter", "kasi-stateful-session"),
            same(
                "passthrough",
                "EnvoyFilter",
                "kasi-passthrough-original-dst",
            ),
            same("placeholder", "Service", "kasi-activator-affinity"),
            same("sidecar", "Sidecar", "kasi-activator"),
            piece_preview(
                "config-network",
                Some(object(
                    "ConfigMap",
                    "config-network",
                    json!({"data": {"ingress-class": "istio.ingress.networking.knative.dev", "mesh-compatibility-mode": "auto"}}),
                )),
                Some(object(
                    "ConfigMap",
                    "config-network",
                    json!({"data": {"ingress-class": "istio.ingress.networking.knative.dev", "mesh-compatibility-mode": "disabled"}}),
                )),
            ),
            piece_preview(
                "config-autoscaler",
                Some(object(
                    "ConfigMap",
                    "config-autoscaler",
                    json!({"data": {"container-concurrency-target-default": "100"}}),
                )),
                Some(object(
                    "ConfigMap",
                    "config-autoscaler",
                    json!({"data": {"container-concurrency-target-default": "100", "target-burst-capacity": "-1"}}),
                )),
            ),
        ],
        note: None,
    }
}

/// What revert would do to the same cluster: restore three objects, delete kasi's six and the
/// record.
pub fn revert_preview() -> crate::install::preview::Preview {
    use crate::install::preview::{self, Preview, PreviewKind};
    use serde_json::json;
    let live_activator = activator("misc:error,wasm:info", Some("9c1e0d"));
    let after_activator = activator("misc:error", None);
    let gone = |piece: &str, kind: &str, name: &str| {
        piece_preview(
            piece,
            Some(object(kind, name, json!({"spec": {"x": 1}}))),
            None,
        )
    };
    Preview {
        kind: PreviewKind::Revert,
        rollout: preview::rollout(Some(&live_activator), Some(&after_activator)),
        objects: vec![
            piece_preview(
                "config-network",
                Some(object(
                    "ConfigMap",
                    "config-network",
                    json!({"data": {"mesh-compatibility-mode": "disabled"}}),
                )),
                Some(object(
                    "ConfigMap",
                    "config-network",
                    json!({"data": {"mesh-compatibility-mode": "auto"}}),
                )),
            ),
            piece_preview(
                "config-autoscaler",
                Some(object(
                    "ConfigMap",
                    "config-autoscaler",
                    json!({"data": {"target-burst-capacity": "-1"}}),
                )),
                Some(object(
                    "ConfigMap",
                    "config-autoscaler",
                    json!({"data": {}}),
                )),
            ),
            piece_preview("injection", Some(live_activator), Some(after_activator)),
            gone("sidecar", "Sidecar", "kasi-activator"),
            gone("placeholder", "Service", "kasi-activator-affinity"),
            gone(
                "passthrough",
                "EnvoyFilter",
                "kasi-passthrough-original-dst",
            ),
            gone("stateful-session", "EnvoyFilter", "kasi-stateful-session"),
            gone("wasmplugin", "WasmPlugin", "kasi-affinity"),
            gone("filter", "ConfigMap", "kasi-filter"),
            gone("", "ConfigMap", "kasi-revert"),
        ],
        note: None,
    }
}

/// Makes `pod`'s sidecar a silent one: five more requests, all rejected, by `now` = 65 s, and no
/// decision line for them.
pub fn silence(state: &mut AppState, pod: &str) {
    let readings = state
        .counters
        .get_mut(pod)
        .expect("the pod has counter readings");
    let (_, mut last) = *readings.last().expect("a reading");
    last.requests += 5;
    last.rejected += 5;
    readings.push((65.0, last));
    state.now = 65.0;
}

/// Takes `pod`'s decision lines away: the sessions it saw and when it last logged one.
pub fn without_decision_lines(state: &mut AppState, pod: &str) {
    state.sessions.retain(|s| s.seen_by != pod);
    state.last_decision.remove(pod);
}

/// What a sidecar runs after `kasi apply`: kasi first on both revision ports, then Istio's own
/// filters, the cookie and envelope `stateful_session`s, the router.
pub fn installed_shape() -> ConfigShape {
    let chain: Vec<String> = [
        "kasi",
        "grpc_stats",
        "fault",
        "cors",
        "session:cookie",
        "session:envelope",
        "router",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    ConfigShape {
        chains: [(8012, chain.clone()), (8013, chain)].into(),
        passthrough: Some(Passthrough {
            override_host_statuses: vec!["DRAINING".into()],
            use_http_header: false,
        }),
        plugin_config: Some("1a2b3c4d".into()),
    }
}
