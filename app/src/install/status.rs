//! `kasi status`: each piece present / missing / drifted against the bundle kasi would render (with
//! the options of the last apply, else the defaults and detected CIDRs), and each activator pod:
//! sidecar injected, kasi filter loaded, sidecar config size, hit rate.
//!
//! `--json` prints [`Status`]; its field names are stable:
//! `system_namespace`, `installed` (every piece present), `pieces[]` {`id`, `title`, `kind`,
//! `namespace`, `name`, `state` ("present" | "missing" | "drifted"), `differences[]`},
//! `activators[]` {`pod`, `sidecar_injected`, `filter_loaded` (null when the sidecar could not be
//! read), `config_dump` ({`total_bytes`, `sections`: {listeners, clusters, routes, …: bytes}} or
//! null), `hit_rate` (0..1 or null), `counters` ({name: value} or null), `error` (or null)},
//! `hit_rate` (over all activators, or null), `options_source` ("last apply" | "defaults"),
//! `findings[]` {`id`, `severity` ("error" | "warning"), `message`, `fix`} (DESIGN.md; see
//! [`super::findings`]), `findings_unchecked[]` (one line per check a read refused or failed).

use super::apply;
use super::detect;
use super::diff::{diff, kasi_fields, value_at, Change};
use super::findings::{self, Finding, Findings};
use super::objects::{self, ObjectRef};
use super::record;
use super::render::{render, FilterSource, RenderOptions, MODULE_LABEL, WASM_PLUGIN};
use super::session_keys::KeyRing;
use super::{InstallError, Result, FILTER_WASM};
use crate::cluster::lean::LeanPod;
use crate::envoy::admin::Sidecar;
use crate::envoy::agreement::{self, SidecarFacts};
use crate::envoy::config_dump::ConfigSizes;
use crate::envoy::shape::ConfigShape;
use crate::envoy::stats::KasiCounters;
use kube::api::{Api, ListParams};
use kube::Client;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PieceState {
    Present,
    Missing,
    Drifted,
}

#[derive(Debug, Clone, Serialize)]
pub struct PieceStatus {
    pub id: String,
    pub title: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub state: PieceState,
    /// For a drifted piece: each field that differs, `path: live → kasi's`.
    pub differences: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActivatorStatus {
    pub pod: String,
    pub sidecar_injected: bool,
    pub filter_loaded: Option<bool>,
    pub config_dump: Option<ConfigSizes>,
    pub hit_rate: Option<f64>,
    pub counters: Option<BTreeMap<String, u64>>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub system_namespace: String,
    pub installed: bool,
    pub options_source: String,
    pub pieces: Vec<PieceStatus>,
    pub activators: Vec<ActivatorStatus>,
    pub hit_rate: Option<f64>,
    pub findings: Vec<Finding>,
    pub findings_unchecked: Vec<String>,
    /// Where the activators' sidecars do not run the same thing, one line each
    /// ([`crate::envoy::agreement`]); empty when they agree.
    pub disagreements: Vec<String>,
}

impl Status {
    /// Why the install is not whole, one line each (`kasi status --exit-code`): a piece missing
    /// or drifted, an activator without the filter loaded (or whose sidecar could not be read),
    /// an error finding. Empty: everything is in place.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for piece in &self.pieces {
            let state = match piece.state {
                PieceState::Present => continue,
                PieceState::Missing => "missing",
                PieceState::Drifted => "drifted",
            };
            problems.push(format!(
                "{} {}/{} is {state}",
                piece.kind, piece.namespace, piece.name
            ));
        }
        if self.activators.is_empty() {
            problems.push(format!(
                "no activator pod in {} (label app=activator)",
                self.system_namespace
            ));
        }
        for activator in &self.activators {
            let why = match (activator.sidecar_injected, activator.filter_loaded) {
                (false, _) => "has no istio-proxy sidecar".to_owned(),
                (true, Some(true)) => continue,
                (true, Some(false)) => "does not have kasi's filter loaded".to_owned(),
                (true, None) => format!(
                    "could not be checked for kasi's filter: {}",
                    activator.error.as_deref().unwrap_or("no config dump")
                ),
            };
            problems.push(format!("activator {} {why}", activator.pod));
        }
        for finding in &self.findings {
            if finding.severity == findings::Severity::Error {
                problems.push(finding.to_line());
            }
        }
        problems
    }
}

/// The bundle status checks against: the last apply's options, else defaults with detected CIDRs.
/// Where the expected `allowed_cidrs` come from when no apply recorded them.
#[derive(Debug, Clone, Copy)]
pub enum PodIps<'a> {
    /// List the revision and activator pods (`kasi status`, once).
    List,
    /// Already known, e.g. from the UI's watchers: listing every pod of a big cluster every few
    /// seconds would cost the API server and kasi far more than the answer is worth.
    Known(&'a [IpAddr]),
}

async fn expected_options(
    client: &Client,
    ns: &str,
    ips: PodIps<'_>,
) -> Result<(RenderOptions, &'static str)> {
    if let Some(saved) = record::read(client, ns).await?.and_then(|s| s.options) {
        return Ok((saved.to_render(ns, FILTER_WASM), "last apply"));
    }
    let mut options = RenderOptions::new(FilterSource::ConfigMap {
        wasm: FILTER_WASM.to_vec(),
    });
    options.system_namespace = ns.to_owned();
    let detected = match ips {
        PodIps::List => detect::allowed_cidrs(client, ns).await?,
        PodIps::Known(ips) => detect::DetectedCidrs::from_ips(ips),
    };
    options.allowed_cidrs = detected.as_option();
    Ok((options, "defaults"))
}

/// One activator sidecar as `kasi status` read it, for the agreement check.
struct SidecarRead {
    pod: String,
    /// The pod's `kasi.dev/filter-sha256` label.
    module: Option<String>,
    shape: Option<ConfigShape>,
    clusters: Option<u64>,
}

/// The whole status: every piece, then each activator's sidecar (read through port-forwards).
pub async fn collect(client: &Client, system_namespace: &str) -> Result<Status> {
    let ns = system_namespace;
    let (piece_states, options_source) = pieces(client, ns, PodIps::List).await?;
    let pods: Api<LeanPod> = Api::namespaced(client.clone(), ns);
    let activator_pods = pods
        .list(&ListParams::default().labels("app=activator"))
        .await?;
    let mut activators = Vec::new();
    // What each sidecar runs, for the agreement check.
    let mut shapes: Vec<SidecarRead> = Vec::new();
    let mut total = KasiCounters::default();
    let mut any_counters = false;
    for pod in &activator_pods.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let injected = pod.spec.as_ref().is_some_and(|s| s.has_istio_proxy());
        let mut status = ActivatorStatus {
            pod: name.clone(),
            sidecar_injected: injected,
            filter_loaded: None,
            config_dump: None,
            hit_rate: None,
            counters: None,
            error: None,
        };
        if injected {
            let sidecar = Sidecar::new(client.clone(), ns, &name);
            let module = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MODULE_LABEL))
                .cloned();
            match sidecar.config_dump().await {
                Ok(dump) => {
                    status.filter_loaded =
                        Some(sidecar.wasm_plugin_loaded(&dump, WASM_PLUGIN).await);
                    status.config_dump = Some(dump.sizes());
                    let shape = ConfigShape::of(&dump, ns, WASM_PLUGIN);
                    let clusters = dump.count("clusters") as u64;
                    shapes.push(SidecarRead {
                        pod: name.clone(),
                        module,
                        shape: Some(shape),
                        clusters: Some(clusters),
                    });
                }
                Err(e) => {
                    status.error = Some(format!("{e:#}"));
                    shapes.push(SidecarRead {
                        pod: name.clone(),
                        module,
                        shape: None,
                        clusters: None,
                    });
                }
            }
            match sidecar.kasi_counters().await {
                Ok(counters) => {
                    status.hit_rate = counters.hit_rate();
                    total.add(&counters);
                    any_counters = true;
                    status.counters = Some(counters.counters);
                }
                Err(e) => status.error = status.error.or(Some(format!("{e:#}"))),
            }
        }
        activators.push(status);
    }
    let facts: Vec<SidecarFacts<'_>> = shapes
        .iter()
        .map(|read| SidecarFacts {
            pod: &read.pod,
            module: read.module.as_deref(),
            shape: read.shape.as_ref(),
            clusters: read.clusters,
            wasm_level: None,
        })
        .collect();
    let disagreements = agreement::disagreements(&facts);
    let found = findings::collect(client, ns).await;
    Ok(Status {
        disagreements,
        findings: found.findings,
        findings_unchecked: found.unchecked,
        system_namespace: ns.to_owned(),
        installed: piece_states.iter().all(|p| p.state == PieceState::Present),
        options_source: options_source.to_owned(),
        pieces: piece_states,
        activators,
        hit_rate: if any_counters { total.hit_rate() } else { None },
    })
}

/// Each piece of the bundle: present, missing or drifted (with its differences) against what
/// kasi would apply now; and where the expected options came from.
pub async fn pieces(
    client: &Client,
    ns: &str,
    ips: PodIps<'_>,
) -> Result<(Vec<PieceStatus>, &'static str)> {
    let (mut options, options_source) = expected_options(client, ns, ips).await?;
    // The keys are compared as `kasi apply` would keep them: the live ones. With none live, any
    // fresh key shows the WasmPlugin as lacking `session_keys` (never the key itself).
    let skeleton = render(&options).map_err(|e| InstallError::BadInput(format!("{e:#}")))?;
    let live_keys = match apply::live_keys(client, &skeleton).await {
        Ok(keys) => keys,
        // No WasmPlugin CRD, or live keys that do not parse: the loop below reports the piece as
        // missing or drifted, which is the answer status owes.
        Err(InstallError::Cluster(_)) => None,
        Err(e) => return Err(e),
    };
    options.session_keys = Some(live_keys.unwrap_or_else(KeyRing::generate));
    let pieces = render(&options).map_err(|e| InstallError::BadInput(format!("{e:#}")))?;
    let mut piece_states = Vec::new();
    for piece in &pieces {
        let target = ObjectRef::of(&piece.object);
        // A kind whose CRD is missing reads as a missing piece, not an error.
        let live = match objects::get(client, &target).await {
            Ok(live) => live,
            Err(_) if !target.group().is_empty() && target.group() != "apps" => None,
            Err(e) => return Err(e),
        };
        let (state, differences) = match diff(&piece.object, live.as_ref()) {
            Change::Create => (PieceState::Missing, Vec::new()),
            Change::Unchanged => (PieceState::Present, Vec::new()),
            Change::Update(changes) => {
                let none_there = live.as_ref().is_some_and(|live| {
                    kasi_fields(&piece.object)
                        .iter()
                        .filter(|(p, _)| p.first().map(String::as_str) != Some("metadata"))
                        .all(|(p, _)| value_at(live, p).is_none())
                });
                let state = if none_there {
                    PieceState::Missing
                } else {
                    PieceState::Drifted
                };
                (state, changes.iter().map(|c| c.describe()).collect())
            }
        };
        piece_states.push(PieceStatus {
            id: piece.id.to_owned(),
            title: piece.title.to_owned(),
            kind: target.kind.clone(),
            namespace: target.namespace.clone(),
            name: target.name.clone(),
            state,
            differences,
        });
    }

    Ok((piece_states, options_source))
}

/// Aligned columns, like kubectl's tables.
pub fn to_text(status: &Status) -> String {
    let mut out = String::new();
    let rows: Vec<[String; 3]> = status
        .pieces
        .iter()
        .map(|p| {
            [
                format!("{:?}", p.state).to_uppercase(),
                format!("{}/{}", p.kind, p.name),
                p.title.clone(),
            ]
        })
        .collect();
    out.push_str(&table(&["STATE", "OBJECT", "PIECE"], &rows));
    for piece in status.pieces.iter().filter(|p| !p.differences.is_empty()) {
        out.push_str(&format!(
            "{} {}/{} differs:\n",
            piece.id, piece.kind, piece.name
        ));
        for difference in &piece.differences {
            out.push_str(&format!("  {difference}\n"));
        }
    }
    out.push('\n');
    let found = Findings {
        findings: status.findings.clone(),
        unchecked: status.findings_unchecked.clone(),
    };
    out.push_str(&found.to_text());
    out.push('\n');
    let rows: Vec<[String; 5]> = status
        .activators
        .iter()
        .map(|a| {
            [
                a.pod.clone(),
                yes_no(Some(a.sidecar_injected)),
                yes_no(a.filter_loaded),
                a.config_dump
                    .as_ref()
                    .map_or("-".into(), |d| human_bytes(d.total_bytes)),
                percent(a.hit_rate),
            ]
        })
        .collect();
    out.push_str(&table(
        &["ACTIVATOR", "SIDECAR", "FILTER", "CONFIG", "HIT RATE"],
        &rows,
    ));
    for activator in status.activators.iter() {
        if let Some(error) = &activator.error {
            out.push_str(&format!("{}: {error}\n", activator.pod));
        }
    }
    let sidecars = status
        .activators
        .iter()
        .filter(|a| a.config_dump.is_some())
        .count();
    if status.disagreements.is_empty() {
        if sidecars > 1 {
            out.push_str(&format!(
                "the {sidecars} activator sidecars agree (module, pluginConfig, filter chain, PassthroughCluster, Sidecar scope)\n"
            ));
        }
    } else {
        out.push_str("the activators disagree:\n");
        for line in &status.disagreements {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out.push_str(&format!(
        "\ninstalled: {}   hit rate: {}   (bundle options: {})\n",
        yes_no(Some(status.installed)),
        percent(status.hit_rate),
        status.options_source
    ));
    out
}

fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}   ", w = *w));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn yes_no(value: Option<bool>) -> String {
    match value {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => "-".into(),
    }
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or("-".into(), |r| format!("{:.1}%", r * 100.0))
}

fn human_bytes(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_aligned() {
        let status = Status {
            system_namespace: "knative-serving".into(),
            installed: false,
            options_source: "defaults".into(),
            pieces: vec![PieceStatus {
                id: "sidecar".into(),
                title: "Sidecar".into(),
                kind: "Sidecar".into(),
                namespace: "knative-serving".into(),
                name: "kasi-activator".into(),
                state: PieceState::Drifted,
                differences: vec!["spec.x: 1 → 2".into()],
            }],
            activators: vec![ActivatorStatus {
                pod: "activator-1".into(),
                sidecar_injected: true,
                filter_loaded: Some(true),
                config_dump: Some(ConfigSizes {
                    total_bytes: 3 << 20,
                    sections: BTreeMap::new(),
                }),
                hit_rate: Some(1.0),
                counters: None,
                error: None,
            }],
            hit_rate: Some(0.5),
            findings: vec![Finding {
                id: findings::CONTAINER_CONCURRENCY,
                severity: findings::Severity::Warning,
                message: "revisions with a hard containerConcurrency: default/a-00001 (1)".into(),
                fix: "use a soft limit".into(),
            }],
            findings_unchecked: vec!["cannot check knative-operator: kasi may not list knativeservings.operator.knative.dev (403)".into()],
            disagreements: vec![":8012 filter chain differs: a: kasi → router; b: router".into()],
        };
        // A drifted piece is not whole; a warning is not a problem.
        assert_eq!(
            status.problems(),
            vec!["Sidecar knative-serving/kasi-activator is drifted"]
        );
        let text = to_text(&status);
        assert!(text.contains("Findings:\n  warning container-concurrency: revisions with a hard containerConcurrency: default/a-00001 (1); fix: use a soft limit\n"), "{text}");
        assert!(
            text.contains("  warning: cannot check knative-operator"),
            "{text}"
        );
        assert!(text.contains("STATE     OBJECT"), "{text}");
        assert!(text.contains("DRIFTED   Sidecar/kasi-activator"), "{text}");
        assert!(text.contains("3.0 MiB"), "{text}");
        assert!(text.contains("hit rate: 50.0%"), "{text}");
        assert!(
            text.contains("the activators disagree:\n  :8012 filter chain differs: a: kasi → router; b: router\n"),
            "{text}"
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["pieces"][0]["state"], "drifted");
        assert_eq!(json["activators"][0]["config_dump"]["total_bytes"], 3 << 20);
        assert_eq!(
            json["findings"],
            serde_json::json!([{"id": "container-concurrency", "severity": "warning",
                "message": "revisions with a hard containerConcurrency: default/a-00001 (1)",
                "fix": "use a soft limit"}])
        );
        assert_eq!(json["findings_unchecked"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn exit_code_problems_name_each_piece_activator_and_error() {
        let activator = |pod: &str, injected: bool, loaded: Option<bool>| ActivatorStatus {
            pod: pod.into(),
            sidecar_injected: injected,
            filter_loaded: loaded,
            config_dump: None,
            hit_rate: None,
            counters: None,
            error: (loaded.is_none() && injected).then(|| "admin port refused".into()),
        };
        let piece = |name: &str, state: PieceState| PieceStatus {
            id: name.into(),
            title: name.into(),
            kind: "EnvoyFilter".into(),
            namespace: "knative-serving".into(),
            name: name.into(),
            state,
            differences: Vec::new(),
        };
        let mut status = Status {
            system_namespace: "knative-serving".into(),
            installed: true,
            options_source: "last apply".into(),
            pieces: vec![
                piece("kasi-a", PieceState::Present),
                piece("kasi-b", PieceState::Missing),
            ],
            activators: vec![
                activator("activator-1", true, Some(true)),
                activator("activator-2", true, Some(false)),
                activator("activator-3", true, None),
                activator("activator-4", false, None),
            ],
            hit_rate: None,
            findings: vec![Finding {
                id: findings::CONTAINER_CONCURRENCY,
                severity: findings::Severity::Error,
                message: "m".into(),
                fix: "f".into(),
            }],
            findings_unchecked: Vec::new(),
            disagreements: Vec::new(),
        };
        assert_eq!(
            status.problems(),
            vec![
                "EnvoyFilter knative-serving/kasi-b is missing",
                "activator activator-2 does not have kasi's filter loaded",
                "activator activator-3 could not be checked for kasi's filter: admin port refused",
                "activator activator-4 has no istio-proxy sidecar",
                "error container-concurrency: m; fix: f",
            ]
        );
        status.pieces.truncate(1);
        status.activators.truncate(1);
        status.findings.clear();
        assert!(status.problems().is_empty());
        status.activators.clear();
        assert_eq!(
            status.problems(),
            vec!["no activator pod in knative-serving (label app=activator)"]
        );
    }

    /// The activator pods `kasi status` reads: istio-proxy found classic or native.
    #[test]
    fn sidecars_are_found_in_either_layout() {
        for spec in [
            serde_json::json!({"containers": [{"name": "activator"}, {"name": "istio-proxy"}]}),
            serde_json::json!({"initContainers": [{"name": "istio-proxy", "restartPolicy": "Always"}],
                "containers": [{"name": "activator"}]}),
        ] {
            let pod: LeanPod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "activator-1"}, "spec": spec}))
            .unwrap();
            assert!(pod.spec.as_ref().is_some_and(|s| s.has_istio_proxy()));
        }
    }
}
