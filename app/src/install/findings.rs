//! Findings: conditions in the cluster that defeat kasi, each with the fix (DESIGN.md's contract:
//! `{"id", "severity": "error" | "warning", "message", "fix"}`, ids below). `kasi status` lists
//! them, `kasi apply --dry-run` prints them before the diff, the UI's Install view shows them, and
//! `kasi apply` refuses while an `error` one holds (unless `--force`).
//!
//! Severity says whether kasi still works: `error` when installing cannot give affinity or makes
//! requests fail; `warning` when kasi works but some revisions or some requests lose it.
//!
//! [`collect`] reads the objects with kube-rs; [`evaluate`] is pure. A kind the API server does
//! not serve (404: no Istio security CRDs, no Knative Operator) means the condition is absent; a
//! read RBAC refuses (403) or that fails otherwise leaves that condition unchecked, said in one
//! line ([`Findings::unchecked`]), never an error.

use super::render::{render, FilterSource, RenderOptions};
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const STRICT_MTLS: &str = "strict-mtls";
pub const INTERNAL_TLS: &str = "internal-tls";
pub const INJECTION_DISABLED: &str = "injection-disabled";
pub const BURST_CAPACITY_OVERRIDE: &str = "burst-capacity-override";
pub const CONTAINER_CONCURRENCY: &str = "container-concurrency";
pub const KNATIVE_OPERATOR: &str = "knative-operator";
pub const PERSISTENT_SESSION_FLAG: &str = "persistent-session-flag";

/// Istio's root namespace (meshConfig.rootNamespace's default): its selector-less
/// PeerAuthentication is the mesh-wide one; istiod runs there.
pub const ISTIO_ROOT_NAMESPACE: &str = "istio-system";

/// The ports the activator dials on a revision pod: queue-proxy's http1 and h2c.
const REVISION_PORTS: [u16; 2] = [8012, 8013];

/// How many objects a message names before "and N more".
const NAMED: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub id: &'static str,
    pub severity: Severity,
    pub message: String,
    pub fix: String,
}

impl Finding {
    /// One line: `error strict-mtls: message; fix: …`.
    pub fn to_line(&self) -> String {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        format!(
            "{severity} {}: {}; fix: {}",
            self.id, self.message, self.fix
        )
    }
}

/// Every finding, and the checks that could not be made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Findings {
    pub findings: Vec<Finding>,
    /// One line per read refused or failed, e.g. `cannot check strict-mtls: kasi may not list
    /// peerauthentications.security.istio.io (403)`.
    pub unchecked: Vec<String>,
}

impl Findings {
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    /// The Findings section of `kasi status` and `kasi apply --dry-run`.
    pub fn to_text(&self) -> String {
        let mut out = String::from("Findings:\n");
        if self.findings.is_empty() {
            out.push_str("  none: nothing known defeats kasi\n");
        }
        for finding in &self.findings {
            out.push_str(&format!("  {}\n", finding.to_line()));
        }
        for line in &self.unchecked {
            out.push_str(&format!("  warning: {line}\n"));
        }
        out
    }
}

/// What the findings are computed from: objects as the API returns them (JSON). `None` for a read
/// that was refused or failed (its checks are skipped); an empty list for a kind not served.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub system_namespace: String,
    /// PeerAuthentications in every namespace.
    pub peer_authentications: Option<Vec<Value>>,
    /// The system namespace's `config-network` ConfigMap (`None`: unread; `Some(Null)`: absent).
    pub config_network: Option<Value>,
    /// The system namespace object (`Some(Null)`: it does not exist).
    pub system_namespace_object: Option<Value>,
    /// Names of the MutatingWebhookConfigurations.
    pub webhooks: Option<Vec<String>>,
    /// serving.knative.dev/v1 Revisions in every namespace.
    pub revisions: Option<Vec<Value>>,
    /// operator.knative.dev KnativeServings in the system namespace.
    pub knative_servings: Option<Vec<Value>>,
    /// Deployments in istio-system.
    pub istio_deployments: Option<Vec<Value>>,
}

/// Every condition that holds, in the contract's order.
pub fn evaluate(inputs: &Inputs) -> Vec<Finding> {
    let mut found = Vec::new();
    found.extend(strict_mtls(inputs));
    found.extend(internal_tls(inputs));
    found.extend(injection_disabled(inputs));
    found.extend(burst_capacity_override(inputs));
    found.extend(container_concurrency(inputs));
    found.extend(knative_operator(inputs));
    found.extend(persistent_session_flag(inputs));
    found
}

// ---- strict-mtls ------------------------------------------------------------------------------

/// A revision pod's labels as Knative sets them (serving's `makeLabels`): the Revision's own
/// labels, `serving.knative.dev/revision`, and `app` (the revision's name unless set).
fn revision_pod_labels(revision: &Value) -> BTreeMap<String, String> {
    let mut labels = labels_of(revision);
    let name = name_of(revision);
    labels.insert("serving.knative.dev/revision".into(), name.clone());
    labels.entry("app".into()).or_insert(name);
    labels
}

/// The mTLS mode a revision pod gets on `port`, as istiod composes PeerAuthentications
/// (pilot/pkg/model/authentication.go `ComposePeerAuthentication`): the oldest matching
/// workload policy over the oldest namespace policy over the oldest mesh-wide policy; `UNSET`
/// (or no mode) inherits from the level above; the workload policy's `portLevelMtls` for the
/// port last. With none, PERMISSIVE. Returns the mode and the policy that decided it.
fn mtls_mode(
    policies: &[Value],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    port: u16,
) -> (String, Option<String>) {
    let oldest = |candidates: Vec<&Value>| -> Option<Value> {
        candidates
            .into_iter()
            .min_by_key(|p| (created(p), name_of(p)))
            .cloned()
    };
    let has_selector = |p: &Value| {
        p.pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
    };
    let selects = |p: &Value| {
        p.pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .is_some_and(|m| {
                m.iter()
                    .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
            })
    };
    let in_ns = |ns: &str| {
        policies
            .iter()
            .filter(move |p| namespace_of(p) == ns)
            .collect::<Vec<_>>()
    };
    let mesh = oldest(
        in_ns(ISTIO_ROOT_NAMESPACE)
            .into_iter()
            .filter(|p| !has_selector(p))
            .collect(),
    );
    let namespaced = if namespace == ISTIO_ROOT_NAMESPACE {
        None
    } else {
        oldest(
            in_ns(namespace)
                .into_iter()
                .filter(|p| !has_selector(p))
                .collect(),
        )
    };
    // The workload's own namespace first, then selector policies of the root namespace.
    let workload = oldest(
        in_ns(namespace)
            .into_iter()
            .filter(|p| has_selector(p) && selects(p))
            .collect(),
    )
    .or_else(|| {
        oldest(
            in_ns(ISTIO_ROOT_NAMESPACE)
                .into_iter()
                .filter(|p| has_selector(p) && selects(p))
                .collect(),
        )
    });
    let set_mode = |mode: Option<&Value>| {
        mode.and_then(Value::as_str)
            .map(str::to_ascii_uppercase)
            .filter(|m| m != "UNSET")
    };
    let mut mode = ("PERMISSIVE".to_owned(), None);
    for policy in [&mesh, &namespaced, &workload].into_iter().flatten() {
        if let Some(m) = set_mode(policy.pointer("/spec/mtls/mode")) {
            mode = (m, Some(key_of(policy)));
        }
    }
    if let Some(policy) = &workload {
        let port_level = policy
            .pointer("/spec/portLevelMtls")
            .and_then(|p| p.get(port.to_string()))
            .and_then(|p| p.get("mode"));
        if let Some(m) = set_mode(port_level) {
            mode = (m, Some(key_of(policy)));
        }
    }
    mode
}

/// STRICT on a revision pod's 8012/8013: the activator reaches pods through PassthroughCluster,
/// which is plain text (istiod builds it without TLS), so the pod's sidecar refuses every
/// request kasi steers. Error: installing makes requests fail.
fn strict_mtls(inputs: &Inputs) -> Option<Finding> {
    let policies = inputs.peer_authentications.as_ref()?;
    if policies.is_empty() {
        return None;
    }
    let strict_on = |namespace: &str, labels: &BTreeMap<String, String>| {
        REVISION_PORTS.iter().find_map(|port| {
            let (mode, by) = mtls_mode(policies, namespace, labels, *port);
            (mode == "STRICT").then(|| by.unwrap_or_default())
        })
    };
    let revisions = inputs.revisions.as_deref().unwrap_or_default();
    let mut hits = Vec::new();
    if revisions.is_empty() {
        // No revision yet: a mesh-wide STRICT policy will apply to the first ones.
        if let Some(by) = strict_on("", &BTreeMap::new()) {
            hits.push(format!(
                "every revision pod (mesh-wide, by PeerAuthentication {by})"
            ));
        }
    }
    for revision in revisions {
        if let Some(by) = strict_on(&namespace_of(revision), &revision_pod_labels(revision)) {
            hits.push(format!("{} (by PeerAuthentication {by})", key_of(revision)));
        }
    }
    if hits.is_empty() {
        return None;
    }
    Some(Finding {
        id: STRICT_MTLS,
        severity: Severity::Error,
        message: format!(
            "STRICT mTLS applies to revision pods on 8012/8013: {}; the activator reaches pods through PassthroughCluster, which is plain text, so their sidecars refuse every steered request",
            name_some(&hits)
        ),
        fix: "let revision pods accept plain text on 8012 and 8013: in each revision namespace a PeerAuthentication with `selector.matchLabels` naming the revisions' pods (e.g. `serving.knative.dev/service: <service>`) and `portLevelMtls: {\"8012\": {mode: PERMISSIVE}, \"8013\": {mode: PERMISSIVE}}`, or `mtls.mode: PERMISSIVE` for the namespace".into(),
    })
}

// ---- internal-tls -----------------------------------------------------------------------------

/// Knative's system-internal TLS: the activator dials pods over TLS on 8112, so no HTTP filter of
/// the activator's sidecar sees a request and no session is read or steered. Error: kasi cannot
/// work at all.
fn internal_tls(inputs: &Inputs) -> Option<Finding> {
    let data = inputs.config_network.as_ref()?.get("data")?;
    let value = |key: &str| data.get(key).and_then(Value::as_str).map(str::trim);
    let (key, on) = if let Some(v) = value("system-internal-tls") {
        ("system-internal-tls", v.eq_ignore_ascii_case("enabled"))
    } else if let Some(v) = value("internal-encryption") {
        ("internal-encryption", v.eq_ignore_ascii_case("true"))
    } else {
        return None;
    };
    on.then(|| Finding {
        id: INTERNAL_TLS,
        severity: Severity::Error,
        message: format!(
            "config-network {key} is on: the activator dials revision pods over TLS on 8112, so no HTTP filter in its sidecar sees a request and no session is steered"
        ),
        fix: format!(
            "turn it off and let Istio's mTLS encrypt instead: kubectl -n {ns} patch configmap config-network --type merge -p '{{\"data\":{{\"{key}\":\"{off}\"}}}}', then restart the activator",
            ns = inputs.system_namespace,
            off = if key == "system-internal-tls" { "disabled" } else { "false" }
        ),
    })
}

// ---- injection-disabled -----------------------------------------------------------------------

/// The activator gets no sidecar: no filter, no `stateful_session`, nothing of kasi runs. Error.
fn injection_disabled(inputs: &Inputs) -> Option<Finding> {
    let ns = &inputs.system_namespace;
    let namespace = inputs.system_namespace_object.as_ref()?;
    if namespace.is_null() {
        return None;
    }
    let labels = labels_of(namespace);
    let fix_label = format!(
        "kubectl label namespace {ns} istio-injection=enabled --overwrite (or istio.io/rev=<revision> for a revisioned Istio), then restart the activator"
    );
    if labels.get("istio-injection").map(String::as_str) == Some("disabled") {
        return Some(Finding {
            id: INJECTION_DISABLED,
            severity: Severity::Error,
            message: format!(
                "namespace {ns} is labelled istio-injection=disabled: the activator gets no sidecar, so nothing of kasi runs"
            ),
            fix: fix_label,
        });
    }
    let labelled = labels.get("istio-injection").map(String::as_str) == Some("enabled")
        || labels.contains_key("istio.io/rev");
    let injector = inputs
        .webhooks
        .as_ref()?
        .iter()
        .any(|name| name.starts_with("istio-sidecar-injector"));
    (!labelled && !injector).then(|| Finding {
        id: INJECTION_DISABLED,
        severity: Severity::Error,
        message: format!(
            "namespace {ns} is not labelled for injection and no Istio sidecar injector (MutatingWebhookConfiguration istio-sidecar-injector*) is installed: the activator gets no sidecar"
        ),
        fix: format!("install Istio's sidecar injector, then {fix_label}"),
    })
}

// ---- burst-capacity-override ------------------------------------------------------------------

/// A revision's own `target-burst-capacity` other than -1 takes it out of the activator's path
/// whenever it has spare capacity: its requests skip the activator and its sessions are not
/// sticky. Warning: kasi works for every other revision, and applying harms none.
fn burst_capacity_override(inputs: &Inputs) -> Option<Finding> {
    const KEY: &str = "autoscaling.knative.dev/target-burst-capacity";
    let revisions = inputs.revisions.as_ref()?;
    let hits: Vec<String> = revisions
        .iter()
        .filter_map(|r| {
            let value = r.pointer("/metadata/annotations")?.get(KEY)?.as_str()?;
            // Knative parses a float; -1 means unlimited (always in the activator's path).
            let unlimited = value
                .trim()
                .parse::<f64>()
                .is_ok_and(|v| (v + 1.0).abs() < f64::EPSILON);
            (!unlimited).then(|| format!("{} ({value})", key_of(r)))
        })
        .collect();
    (!hits.is_empty()).then(|| Finding {
        id: BURST_CAPACITY_OVERRIDE,
        severity: Severity::Warning,
        message: format!(
            "revisions set their own target-burst-capacity: {}; with spare capacity they leave the activator's path and their sessions are not sticky",
            name_some(&hits)
        ),
        fix: format!(
            "remove the annotation {KEY} from each Service's template (spec.template.metadata.annotations) or set it to \"-1\""
        ),
    })
}

// ---- container-concurrency --------------------------------------------------------------------

/// A hard `containerConcurrency`: a pinned pod whose queue is full answers 503 "pending request
/// queue full" instead of the activator picking another pod. Warning (DESIGN.md): kasi works;
/// only load beyond one pod's limit on one session's pod fails.
fn container_concurrency(inputs: &Inputs) -> Option<Finding> {
    let revisions = inputs.revisions.as_ref()?;
    let hits: Vec<String> = revisions
        .iter()
        .filter_map(|r| {
            let limit = r.pointer("/spec/containerConcurrency")?.as_i64()?;
            (limit > 0).then(|| format!("{} ({limit})", key_of(r)))
        })
        .collect();
    (!hits.is_empty()).then(|| Finding {
        id: CONTAINER_CONCURRENCY,
        severity: Severity::Warning,
        message: format!(
            "revisions with a hard containerConcurrency: {}; a pinned pod over its limit answers 503 \"pending request queue full\" instead of another pod serving",
            name_some(&hits)
        ),
        fix: "use a soft limit instead (spec.template.spec.containerConcurrency: 0 and the annotation autoscaling.knative.dev/target), or size the limit for the heaviest session".into(),
    })
}

// ---- knative-operator -------------------------------------------------------------------------

/// A KnativeServing manages the system namespace: the Operator reconciles config-network,
/// config-autoscaler and the activator Deployment back to its spec, undoing kasi's changes; a
/// pod template without the filter's mount while the WasmPlugin stays makes the sidecar reject
/// every request. Error until the spec carries kasi's changes.
fn knative_operator(inputs: &Inputs) -> Option<Finding> {
    let servings = inputs.knative_servings.as_ref()?;
    let serving = servings.first()?;
    Some(Finding {
        id: KNATIVE_OPERATOR,
        severity: Severity::Error,
        message: format!(
            "KnativeServing {} manages {}: the Knative Operator reconciles config-network, config-autoscaler and the activator Deployment back to its spec, undoing kasi's changes",
            key_of(serving),
            inputs.system_namespace
        ),
        fix: format!(
            "put kasi's changes into the KnativeServing (merge with any spec.workloads entries it has): kubectl -n {} patch knativeserving {} --type merge -p '{}'",
            namespace_of(serving),
            name_of(serving),
            operator_patch(&inputs.system_namespace)
        ),
    })
}

/// The KnativeServing patch that carries the bundle's ConfigMap keys and activator pod template
/// changes, rendered from the bundle itself so the two never disagree.
pub fn operator_patch(system_namespace: &str) -> String {
    let mut options = RenderOptions::new(FilterSource::ConfigMap { wasm: Vec::new() });
    options.system_namespace = system_namespace.to_owned();
    let pieces = render(&options).unwrap_or_default();
    let piece = |id: &str| pieces.iter().find(|p| p.id == id).map(|p| &p.object);
    let data = |id: &str| piece(id).map_or(json!({}), |o| o["data"].clone());
    let template = piece("injection").map_or(json!({}), |o| o["spec"]["template"].clone());
    let patch = json!({"spec": {
        "config": {"network": data("config-network"), "autoscaler": data("config-autoscaler")},
        "workloads": [{
            "name": "activator",
            "labels": template["metadata"]["labels"],
            "annotations": template["metadata"]["annotations"],
        }],
    }});
    patch.to_string()
}

// ---- persistent-session-flag ------------------------------------------------------------------

/// istiod's `PILOT_ENABLE_PERSISTENT_SESSION_FILTER` adds its own `stateful_session` filter to
/// every HTTP filter chain, next to kasi's: for a Service labelled `istio.io/persistent-session`
/// it reads a second cookie whose override host kasi never approved. Warning: kasi's filter still
/// runs first and its sessions still stick; the flag's own sessions escape kasi's checks.
fn persistent_session_flag(inputs: &Inputs) -> Option<Finding> {
    let deployments = inputs.istio_deployments.as_ref()?;
    let istiod = deployments.iter().find(|d| {
        let containers = d
            .pointer("/spec/template/spec/containers")
            .and_then(Value::as_array);
        containers.into_iter().flatten().any(|c| {
            c["env"].as_array().into_iter().flatten().any(|e| {
                e["name"] == "PILOT_ENABLE_PERSISTENT_SESSION_FILTER"
                    && e["value"].as_str().is_some_and(go_true)
            })
        })
    })?;
    Some(Finding {
        id: PERSISTENT_SESSION_FLAG,
        severity: Severity::Warning,
        message: format!(
            "istiod ({}) runs with PILOT_ENABLE_PERSISTENT_SESSION_FILTER=true: a second stateful_session filter in every HTTP chain, whose sessions kasi does not check",
            key_of(istiod)
        ),
        fix: format!(
            "unset it: kubectl -n {} set env deployment/{} PILOT_ENABLE_PERSISTENT_SESSION_FILTER- (or drop it from values.pilot.env of the Istio install)",
            namespace_of(istiod),
            name_of(istiod)
        ),
    })
}

/// Go's `strconv.ParseBool` truths, which istiod's env parsing uses.
fn go_true(value: &str) -> bool {
    matches!(value.trim(), "1" | "t" | "T" | "true" | "TRUE" | "True")
}

// ---- helpers ----------------------------------------------------------------------------------

fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

fn name_of(object: &Value) -> String {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn namespace_of(object: &Value) -> String {
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn created(object: &Value) -> String {
    object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn key_of(object: &Value) -> String {
    format!("{}/{}", namespace_of(object), name_of(object))
}

/// `a, b, c, d, e and 3 more`.
fn name_some(items: &[String]) -> String {
    let shown = items
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    match items.len().saturating_sub(NAMED) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

// ---- reading the cluster ----------------------------------------------------------------------

/// How one read went.
enum Read<T> {
    Got(T),
    /// The API server does not serve the kind (404): the condition is absent.
    NotServed,
    /// Refused (403) or failed: the line says which and why.
    Unchecked(String),
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn what(resource: &ApiResource) -> String {
    if resource.group.is_empty() {
        resource.plural.clone()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

fn unchecked(ids: &str, verb: &str, resource: &ApiResource, error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if status.code == 403 => format!(
            "cannot check {ids}: kasi may not {verb} {} (403)",
            what(resource)
        ),
        other => format!(
            "cannot check {ids}: {verb} {} failed: {}",
            what(resource),
            super::objects::describe(other)
        ),
    }
}

/// Lists `resource` (in `namespace`, or everywhere), each item as JSON.
async fn list(
    client: &Client,
    resource: &ApiResource,
    namespace: Option<&str>,
    ids: &str,
) -> Read<Vec<Value>> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    match api.list(&ListParams::default()).await {
        Ok(list) => Read::Got(
            list.items
                .into_iter()
                .filter_map(|o| serde_json::to_value(o).ok())
                .collect(),
        ),
        Err(kube::Error::Api(status)) if status.code == 404 => Read::NotServed,
        Err(e) => Read::Unchecked(unchecked(ids, "list", resource, &e)),
    }
}

/// The first version the server serves of a kind (e.g. security.istio.io v1, else v1beta1).
async fn list_versions(
    client: &Client,
    resources: &[ApiResource],
    namespace: Option<&str>,
    ids: &str,
    unchecked: &mut Vec<String>,
) -> Option<Vec<Value>> {
    for resource in resources {
        match list(client, resource, namespace, ids).await {
            Read::Got(items) => return Some(items),
            Read::NotServed => continue,
            Read::Unchecked(line) => {
                unchecked.push(line);
                return None;
            }
        }
    }
    Some(Vec::new())
}

/// GETs one object; `Some(Null)` when it (or its kind) does not exist.
async fn get(
    client: &Client,
    resource: &ApiResource,
    namespace: Option<&str>,
    name: &str,
    ids: &str,
    unchecked_lines: &mut Vec<String>,
) -> Option<Value> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    match api.get_opt(name).await {
        Ok(Some(object)) => Some(serde_json::to_value(object).unwrap_or(Value::Null)),
        Ok(None) => Some(Value::Null),
        Err(kube::Error::Api(status)) if status.code == 404 => Some(Value::Null),
        Err(e) => {
            unchecked_lines.push(unchecked(ids, "get", resource, &e));
            None
        }
    }
}

/// Reads what every check needs and evaluates them.
pub async fn collect(client: &Client, system_namespace: &str) -> Findings {
    let ns = system_namespace;
    let mut lines = Vec::new();
    let peer_authentications = list_versions(
        client,
        &[
            resource(
                "security.istio.io",
                "v1",
                "PeerAuthentication",
                "peerauthentications",
            ),
            resource(
                "security.istio.io",
                "v1beta1",
                "PeerAuthentication",
                "peerauthentications",
            ),
        ],
        None,
        STRICT_MTLS,
        &mut lines,
    )
    .await;
    let config_network = get(
        client,
        &resource("", "v1", "ConfigMap", "configmaps"),
        Some(ns),
        "config-network",
        INTERNAL_TLS,
        &mut lines,
    )
    .await;
    let system_namespace_object = get(
        client,
        &resource("", "v1", "Namespace", "namespaces"),
        None,
        ns,
        INJECTION_DISABLED,
        &mut lines,
    )
    .await;
    let webhooks = list_versions(
        client,
        &[resource(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
        )],
        None,
        INJECTION_DISABLED,
        &mut lines,
    )
    .await
    .map(|items| items.iter().map(name_of).collect());
    let revisions = list_versions(
        client,
        &[resource(
            "serving.knative.dev",
            "v1",
            "Revision",
            "revisions",
        )],
        None,
        &format!("{STRICT_MTLS}, {BURST_CAPACITY_OVERRIDE}, {CONTAINER_CONCURRENCY}"),
        &mut lines,
    )
    .await;
    let knative_servings = list_versions(
        client,
        &[
            resource(
                "operator.knative.dev",
                "v1beta1",
                "KnativeServing",
                "knativeservings",
            ),
            resource(
                "operator.knative.dev",
                "v1alpha1",
                "KnativeServing",
                "knativeservings",
            ),
        ],
        Some(ns),
        KNATIVE_OPERATOR,
        &mut lines,
    )
    .await;
    let istio_deployments = list_versions(
        client,
        &[resource("apps", "v1", "Deployment", "deployments")],
        Some(ISTIO_ROOT_NAMESPACE),
        PERSISTENT_SESSION_FLAG,
        &mut lines,
    )
    .await
    .map(|items| {
        items
            .into_iter()
            .filter(|d| name_of(d).starts_with("istiod"))
            .collect()
    });
    let inputs = Inputs {
        system_namespace: ns.to_owned(),
        peer_authentications,
        config_network,
        system_namespace_object,
        webhooks,
        revisions,
        knative_servings,
        istio_deployments,
    };
    Findings {
        findings: evaluate(&inputs),
        unchecked: lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster where nothing defeats kasi: injection on, no policies, no flags.
    fn clean() -> Inputs {
        Inputs {
            system_namespace: "knative-serving".into(),
            peer_authentications: Some(Vec::new()),
            config_network: Some(json!({"data": {"mesh-compatibility-mode": "disabled"}})),
            system_namespace_object: Some(json!({"metadata": {"name": "knative-serving",
                "labels": {"istio-injection": "enabled"}}})),
            webhooks: Some(vec!["istio-sidecar-injector".into()]),
            revisions: Some(vec![revision(
                "default",
                "hello-00001",
                json!({}),
                json!({}),
            )]),
            knative_servings: Some(Vec::new()),
            istio_deployments: Some(vec![istiod(&[("PILOT_TRACE_SAMPLING", "1")])]),
        }
    }

    fn revision(ns: &str, name: &str, annotations: Value, spec: Value) -> Value {
        json!({"apiVersion": "serving.knative.dev/v1", "kind": "Revision",
            "metadata": {"name": name, "namespace": ns, "annotations": annotations,
                "labels": {"serving.knative.dev/service": name.split('-').next().unwrap()}},
            "spec": spec})
    }

    fn istiod(env: &[(&str, &str)]) -> Value {
        let env: Vec<Value> = env
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect();
        json!({"metadata": {"name": "istiod", "namespace": "istio-system"},
            "spec": {"template": {"spec": {"containers": [{"name": "discovery", "env": env}]}}}})
    }

    fn peer(ns: &str, name: &str, created: &str, spec: Value) -> Value {
        json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created}, "spec": spec})
    }

    fn ids(inputs: &Inputs) -> Vec<&'static str> {
        evaluate(inputs).iter().map(|f| f.id).collect()
    }

    #[test]
    fn a_clean_cluster_has_no_findings() {
        assert_eq!(ids(&clean()), Vec::<&str>::new());
        // Nothing readable: nothing to say (the unchecked lines say it).
        assert_eq!(ids(&Inputs::default()), Vec::<&str>::new());
    }

    #[test]
    fn strict_mtls_fires_for_mesh_namespace_and_workload_policies() {
        let strict = json!({"mtls": {"mode": "STRICT"}});
        let permissive = json!({"mtls": {"mode": "PERMISSIVE"}});
        let cases = [
            // Mesh-wide STRICT.
            (
                vec![peer("istio-system", "default", "1", strict.clone())],
                true,
            ),
            // Namespace STRICT.
            (vec![peer("default", "ns", "1", strict.clone())], true),
            // Another namespace's STRICT does not apply.
            (vec![peer("other", "ns", "1", strict.clone())], false),
            // Workload STRICT on the revision's pods.
            (
                vec![peer(
                    "default",
                    "wl",
                    "1",
                    json!({"selector": {"matchLabels":
                    {"serving.knative.dev/service": "hello"}}, "mtls": {"mode": "STRICT"}}),
                )],
                true,
            ),
            // A workload selector for other pods does not apply.
            (
                vec![peer(
                    "default",
                    "wl",
                    "1",
                    json!({"selector": {"matchLabels":
                    {"app": "other"}}, "mtls": {"mode": "STRICT"}}),
                )],
                false,
            ),
            // Mesh STRICT, the namespace overrides with PERMISSIVE.
            (
                vec![
                    peer("istio-system", "default", "1", strict.clone()),
                    peer("default", "ns", "2", permissive.clone()),
                ],
                false,
            ),
            // Namespace STRICT, the workload's ports 8012/8013 PERMISSIVE: the documented fix.
            (
                vec![
                    peer("default", "ns", "1", strict.clone()),
                    peer(
                        "default",
                        "wl",
                        "2",
                        json!({"selector": {"matchLabels":
                        {"serving.knative.dev/service": "hello"}},
                        "portLevelMtls": {"8012": {"mode": "PERMISSIVE"}, "8013": {"mode": "PERMISSIVE"}}}),
                    ),
                ],
                false,
            ),
            // UNSET inherits the mesh's STRICT.
            (
                vec![
                    peer("istio-system", "default", "1", strict.clone()),
                    peer("default", "ns", "2", json!({"mtls": {"mode": "UNSET"}})),
                ],
                true,
            ),
            // Only the oldest namespace policy counts.
            (
                vec![
                    peer("default", "b-new", "2024-02-01T00:00:00Z", strict.clone()),
                    peer(
                        "default",
                        "a-old",
                        "2024-01-01T00:00:00Z",
                        permissive.clone(),
                    ),
                ],
                false,
            ),
            (vec![peer("default", "ns", "1", permissive.clone())], false),
        ];
        for (policies, fires) in cases {
            let mut inputs = clean();
            inputs.peer_authentications = Some(policies.clone());
            let found = evaluate(&inputs);
            assert_eq!(
                found.iter().any(|f| f.id == STRICT_MTLS),
                fires,
                "{policies:#?}"
            );
            if fires {
                assert_eq!(found[0].severity, Severity::Error);
                assert!(
                    found[0].message.contains("default/hello-00001"),
                    "{found:?}"
                );
            }
        }
        // Without revisions, a mesh-wide STRICT still reaches the first ones.
        let mut inputs = clean();
        inputs.revisions = Some(Vec::new());
        inputs.peer_authentications = Some(vec![peer("istio-system", "default", "1", strict)]);
        assert_eq!(ids(&inputs), [STRICT_MTLS]);
        // Istio's security CRDs not served: no policies, no finding.
        inputs.peer_authentications = Some(Vec::new());
        assert_eq!(ids(&inputs), Vec::<&str>::new());
    }

    #[test]
    fn internal_tls_fires_on_either_key() {
        for (data, fires) in [
            (json!({"system-internal-tls": "enabled"}), true),
            (json!({"system-internal-tls": "Enabled"}), true),
            (json!({"internal-encryption": "true"}), true),
            (json!({"system-internal-tls": "disabled"}), false),
            (json!({"internal-encryption": "false"}), false),
            // The newer key wins over the older one.
            (
                json!({"system-internal-tls": "disabled", "internal-encryption": "true"}),
                false,
            ),
            (json!({}), false),
        ] {
            let mut inputs = clean();
            inputs.config_network = Some(json!({"data": data}));
            let expected: &[&str] = if fires { &[INTERNAL_TLS] } else { &[] };
            assert_eq!(ids(&inputs), expected, "{data}");
        }
        let mut inputs = clean();
        inputs.config_network = Some(Value::Null);
        assert!(ids(&inputs).is_empty());
    }

    #[test]
    fn injection_disabled_fires_when_the_activator_gets_no_sidecar() {
        let with = |labels: Value, webhooks: &[&str]| {
            let mut inputs = clean();
            inputs.system_namespace_object =
                Some(json!({"metadata": {"name": "knative-serving", "labels": labels}}));
            inputs.webhooks = Some(webhooks.iter().map(|w| w.to_string()).collect());
            ids(&inputs)
        };
        let injector = ["istio-sidecar-injector"];
        let revisioned = ["istio-sidecar-injector-1-24"];
        assert_eq!(
            with(json!({"istio-injection": "disabled"}), &injector),
            [INJECTION_DISABLED]
        );
        assert_eq!(with(json!({}), &[]), [INJECTION_DISABLED]);
        assert_eq!(with(json!({}), &["other-webhook"]), [INJECTION_DISABLED]);
        assert!(with(json!({"istio-injection": "enabled"}), &injector).is_empty());
        assert!(with(json!({"istio.io/rev": "1-24"}), &revisioned).is_empty());
        // kasi's own pod label is injected by Istio's object-selector webhook.
        assert!(with(json!({}), &revisioned).is_empty());
        // Labelled, webhooks unreadable (or not served): trust the label.
        assert!(with(json!({"istio-injection": "enabled"}), &[]).is_empty());
    }

    #[test]
    fn burst_capacity_override_names_the_revisions() {
        let mut inputs = clean();
        let key = "autoscaling.knative.dev/target-burst-capacity";
        inputs.revisions = Some(vec![
            revision("default", "a-00001", json!({key: "200"}), json!({})),
            revision("default", "b-00001", json!({key: "-1"}), json!({})),
            revision("shop", "c-00002", json!({key: "0"}), json!({})),
            revision("default", "d-00001", json!({}), json!({})),
        ]);
        let found = evaluate(&inputs);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].id, BURST_CAPACITY_OVERRIDE);
        assert_eq!(found[0].severity, Severity::Warning);
        assert!(found[0].message.contains("default/a-00001 (200)"));
        assert!(found[0].message.contains("shop/c-00002 (0)"));
        assert!(!found[0].message.contains("b-00001"));
        assert!(!found[0].message.contains("d-00001"));
    }

    #[test]
    fn container_concurrency_fires_only_for_hard_limits() {
        let mut inputs = clean();
        inputs.revisions = Some(vec![
            revision(
                "default",
                "a-00001",
                json!({}),
                json!({"containerConcurrency": 0}),
            ),
            revision("default", "b-00001", json!({}), json!({})),
        ]);
        assert!(ids(&inputs).is_empty());
        inputs.revisions.as_mut().unwrap().push(revision(
            "default",
            "c-00001",
            json!({}),
            json!({"containerConcurrency": 10}),
        ));
        let found = evaluate(&inputs);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, CONTAINER_CONCURRENCY);
        assert_eq!(found[0].severity, Severity::Warning);
        assert!(found[0].message.contains("default/c-00001 (10)"));
    }

    #[test]
    fn knative_operator_fires_with_the_spec_patch() {
        let mut inputs = clean();
        inputs.knative_servings = Some(vec![json!({"metadata":
            {"name": "knative-serving", "namespace": "knative-serving"}})]);
        let found = evaluate(&inputs);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, KNATIVE_OPERATOR);
        assert_eq!(found[0].severity, Severity::Error);
        let patch = operator_patch("knative-serving");
        assert!(found[0].fix.contains(&patch));
        let patch: Value = serde_json::from_str(&patch).unwrap();
        assert_eq!(
            patch["spec"]["config"]["network"]["mesh-compatibility-mode"],
            "disabled"
        );
        assert_eq!(
            patch["spec"]["config"]["autoscaler"]["target-burst-capacity"],
            "-1"
        );
        let workload = &patch["spec"]["workloads"][0];
        assert_eq!(workload["name"], "activator");
        assert_eq!(workload["labels"]["sidecar.istio.io/inject"], "true");
        assert_eq!(
            workload["annotations"]["sidecar.istio.io/componentLogLevel"],
            "misc:error,wasm:info"
        );
        assert!(workload["annotations"]["sidecar.istio.io/userVolume"].is_string());
    }

    #[test]
    fn persistent_session_flag_fires_only_when_true() {
        for (value, fires) in [
            ("true", true),
            ("1", true),
            ("True", true),
            ("false", false),
        ] {
            let mut inputs = clean();
            inputs.istio_deployments = Some(vec![istiod(&[
                ("PILOT_TRACE_SAMPLING", "1"),
                ("PILOT_ENABLE_PERSISTENT_SESSION_FILTER", value),
            ])]);
            let expected: &[&str] = if fires {
                &[PERSISTENT_SESSION_FLAG]
            } else {
                &[]
            };
            assert_eq!(ids(&inputs), expected, "{value}");
        }
    }

    #[test]
    fn findings_follow_the_contract() {
        let finding = Finding {
            id: STRICT_MTLS,
            severity: Severity::Error,
            message: "m".into(),
            fix: "f".into(),
        };
        assert_eq!(
            serde_json::to_value(&finding).unwrap(),
            json!({"id": "strict-mtls", "severity": "error", "message": "m", "fix": "f"})
        );
        assert_eq!(finding.to_line(), "error strict-mtls: m; fix: f");
        let findings = Findings {
            findings: vec![finding],
            unchecked: vec!["cannot check knative-operator: kasi may not list knativeservings.operator.knative.dev (403)".into()],
        };
        let text = findings.to_text();
        assert!(
            text.starts_with("Findings:\n  error strict-mtls: m; fix: f\n"),
            "{text}"
        );
        assert!(
            text.contains("  warning: cannot check knative-operator"),
            "{text}"
        );
        assert_eq!(findings.errors().count(), 1);
    }
}
