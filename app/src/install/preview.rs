//! What an apply or a revert would do to each object, exactly: the live object against what the
//! API server answers to the same request sent with `dryRun=All` (see [`super::dry_run`]), both
//! stripped of what the server always rewrites, classified (created / patched N fields /
//! unchanged / deleted) and shown as a unified YAML diff. Pure: the cluster is read elsewhere.

use super::objects::ObjectRef;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Which command the preview is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PreviewKind {
    #[default]
    Apply,
    Revert,
}

impl PreviewKind {
    pub fn word(self) -> &'static str {
        match self {
            PreviewKind::Apply => "apply",
            PreviewKind::Revert => "revert",
        }
    }
}

/// What the command would do to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Created,
    Unchanged,
    /// This many leaf fields differ (added, changed or removed).
    Patched(usize),
    Deleted,
    /// The API server refused the dry run (a conflict, a validation error): its message.
    Refused(String),
}

impl Verdict {
    /// `created`, `patched (3 fields)`, `unchanged`, `deleted`, `refused: …`.
    pub fn label(&self) -> String {
        match self {
            Verdict::Created => "created".into(),
            Verdict::Unchanged => "unchanged".into(),
            Verdict::Patched(1) => "patched (1 field)".into(),
            Verdict::Patched(n) => format!("patched ({n} fields)"),
            Verdict::Deleted => "deleted".into(),
            Verdict::Refused(why) => format!("refused: {why}"),
        }
    }

    pub fn changes(&self) -> bool {
        !matches!(self, Verdict::Unchanged)
    }
}

/// One object's preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPreview {
    /// The bundle piece's id (`wasmplugin`, …); empty for objects only revert knows.
    pub piece: String,
    pub target: ObjectRef,
    pub verdict: Verdict,
    /// The unified YAML diff live → after; empty when unchanged or refused.
    pub diff: String,
}

impl ObjectPreview {
    /// `live` → `after` (`None`: absent before / gone after), both as the server answered.
    pub fn of(piece: &str, target: ObjectRef, live: Option<&Value>, after: Option<&Value>) -> Self {
        let before = live.map(comparable);
        let after = after.map(comparable);
        let verdict = classify(before.as_ref(), after.as_ref());
        let diff = if verdict.changes() {
            yaml_diff(&target, before.as_ref(), after.as_ref())
        } else {
            String::new()
        };
        ObjectPreview {
            piece: piece.to_owned(),
            target,
            verdict,
            diff,
        }
    }

    pub fn refused(piece: &str, target: ObjectRef, why: String) -> Self {
        ObjectPreview {
            piece: piece.to_owned(),
            target,
            verdict: Verdict::Refused(why),
            diff: String::new(),
        }
    }

    /// `Deployment activator: patched (3 fields)`.
    pub fn line(&self) -> String {
        format!(
            "{} {}: {}",
            self.target.kind,
            self.target.name,
            self.verdict.label()
        )
    }
}

/// Everything one command would do, in the order it would do it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Preview {
    pub kind: PreviewKind,
    pub objects: Vec<ObjectPreview>,
    /// The rollout the command triggers, e.g. "the activator Deployment rolls: 2 pods replaced
    /// one at a time"; `None` when no pod template changes.
    pub rollout: Option<String>,
    /// Why there is nothing to preview (e.g. nothing to revert).
    pub note: Option<String>,
}

impl Preview {
    pub fn changes(&self) -> usize {
        self.objects.iter().filter(|o| o.verdict.changes()).count()
    }

    pub fn of_piece(&self, piece: &str) -> Option<&ObjectPreview> {
        self.objects.iter().find(|o| o.piece == piece)
    }

    pub fn of_target(&self, kind: &str, name: &str) -> Option<&ObjectPreview> {
        self.objects
            .iter()
            .find(|o| o.target.kind == kind && o.target.name == name)
    }

    /// One line per object (`  patched (2 fields)  ConfigMap knative-serving/config-network`),
    /// the rollout, and with `with_diff` every object's diff after its line.
    pub fn to_text(&self, with_diff: bool) -> String {
        let mut out = format!(
            "server dry run of {} (dryRun=All, the API server's answer against the live objects):\n",
            self.kind.word()
        );
        if let Some(note) = &self.note {
            out.push_str(&format!("  {note}\n"));
        }
        let width = self
            .objects
            .iter()
            .map(|o| o.verdict.label().len())
            .filter(|&n| n <= 24)
            .max()
            .unwrap_or(0);
        for object in &self.objects {
            out.push_str(&format!(
                "  {:<width$}  {}\n",
                object.verdict.label(),
                object.target
            ));
            if with_diff && !object.diff.is_empty() {
                out.push_str(&object.diff);
            }
        }
        if let Some(rollout) = &self.rollout {
            out.push_str(&format!("  then {rollout}\n"));
        }
        out
    }

    /// Every changing object's diff, each under a header line.
    pub fn all_diffs(&self) -> String {
        let mut out = String::new();
        for object in self.objects.iter().filter(|o| o.verdict.changes()) {
            out.push_str(&format!(
                "### {} — {}\n",
                object.target,
                object.verdict.label()
            ));
            out.push_str(&object.diff);
        }
        out
    }
}

/// Metadata the API server sets on every write: never kasi's change.
const SERVER_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
];

/// Longer strings (the filter's bytes) are shown by size and digest.
const LONGEST_SHOWN: usize = 160;

/// `object` without what the server always changes, secrets and huge values replaced by their
/// digest (a changed key or module still shows as a changed line, never its bytes).
pub fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
        if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for key in SERVER_METADATA {
                metadata.remove(*key);
            }
        }
    }
    conceal(&mut object, false);
    object
}

fn conceal(value: &mut Value, secret: bool) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                conceal(child, secret || key == "session_keys");
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| conceal(v, secret)),
        Value::String(text) if secret => {
            *text = format!("(key sha256 {}, not shown)", digest(text))
        }
        Value::String(text) if text.len() > LONGEST_SHOWN => {
            *text = format!("({} bytes, sha256 {})", text.len(), digest(text));
        }
        _ => {}
    }
}

fn digest(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    hash.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// What `before` → `after` is, both already [`comparable`].
pub fn classify(before: Option<&Value>, after: Option<&Value>) -> Verdict {
    match (before, after) {
        (None, None) => Verdict::Unchanged,
        (None, Some(_)) => Verdict::Created,
        (Some(_), None) => Verdict::Deleted,
        (Some(b), Some(a)) => match changed_leaves(Some(b), Some(a)) {
            0 => Verdict::Unchanged,
            n => Verdict::Patched(n),
        },
    }
}

/// How many leaf fields differ: maps by key, lists by position; a field added or removed counts
/// its leaves.
pub fn changed_leaves(before: Option<&Value>, after: Option<&Value>) -> usize {
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .map(|k| changed_leaves(b.get(k), a.get(k)))
                .sum()
        }
        (Some(Value::Array(b)), Some(Value::Array(a))) => (0..b.len().max(a.len()))
            .map(|i| changed_leaves(b.get(i), a.get(i)))
            .sum(),
        (Some(b), Some(a)) if b == a => 0,
        (b, a) => leaves(b).max(leaves(a)),
    }
}

fn leaves(value: Option<&Value>) -> usize {
    match value {
        None => 0,
        Some(Value::Object(map)) if !map.is_empty() => map.values().map(|v| leaves(Some(v))).sum(),
        Some(Value::Array(items)) if !items.is_empty() => {
            items.iter().map(|v| leaves(Some(v))).sum()
        }
        Some(_) => 1,
    }
}

/// The unified diff of the two objects' YAML (`--- live`, `+++ after`, 3 lines of context).
pub fn yaml_diff(target: &ObjectRef, before: Option<&Value>, after: Option<&Value>) -> String {
    let yaml = |value: Option<&Value>| {
        value.map_or(String::new(), |v| {
            serde_yaml_ng::to_string(v).unwrap_or_else(|e| format!("# not YAML: {e}\n"))
        })
    };
    let (old, new) = (yaml(before), yaml(after));
    let diff = similar::TextDiff::from_lines(&old, &new);
    let mut text = diff
        .unified_diff()
        .context_radius(3)
        .header(&format!("live {target}"), &format!("after {target}"))
        .to_string();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// The rollout a change of this Deployment triggers, if its pod template changes: how many pods
/// are replaced and how many at a time (from `replicas` and the strategy, Kubernetes' defaults
/// where unset), or just that it rolls when the replicas are unknown.
pub fn rollout(before: Option<&Value>, after: Option<&Value>) -> Option<String> {
    let (before, after) = (before?, after?);
    if after["kind"] != "Deployment" {
        return None;
    }
    let template = |v: &Value| comparable(v).pointer("/spec/template").cloned();
    if template(before) == template(after) {
        return None;
    }
    let name = after["metadata"]["name"].as_str().unwrap_or("activator");
    Some(describe_rollout(name, after))
}

fn describe_rollout(name: &str, deployment: &Value) -> String {
    let Some(replicas) = deployment.pointer("/spec/replicas").and_then(Value::as_i64) else {
        return format!("the {name} Deployment rolls out");
    };
    let pods = if replicas == 1 { "pod" } else { "pods" };
    let strategy = &deployment["spec"]["strategy"];
    if strategy["type"] == "Recreate" {
        return format!(
            "the {name} Deployment rolls: {replicas} {pods} replaced all at once (Recreate)"
        );
    }
    let rolling = &strategy["rollingUpdate"];
    let surge = pod_count(&rolling["maxSurge"], replicas, true);
    let mut unavailable = pod_count(&rolling["maxUnavailable"], replicas, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    let pace = match surge + unavailable {
        0 | 1 => "one at a time".to_owned(),
        n => format!("up to {} at a time", n.min(replicas.max(1))),
    };
    format!(
        "the {name} Deployment rolls: {replicas} {pods} replaced {pace} (maxSurge {surge}, maxUnavailable {unavailable})"
    )
}

/// `maxSurge` / `maxUnavailable` as pods: an int, or a percentage rounded up (surge) or down
/// (unavailable) as the Deployment controller does; unset is 25 %.
fn pod_count(value: &Value, replicas: i64, round_up: bool) -> i64 {
    let percent = match value {
        Value::Number(n) => return n.as_i64().unwrap_or(0).max(0),
        Value::String(text) => text.trim_end_matches('%').parse::<i64>().unwrap_or(25),
        _ => 25,
    };
    let scaled = percent * replicas;
    if round_up {
        (scaled + 99) / 100
    } else {
        scaled / 100
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(kind: &str, name: &str) -> ObjectRef {
        ObjectRef {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: "knative-serving".into(),
            name: name.into(),
        }
    }

    fn config_network(extra: Value) -> Value {
        let mut object = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "config-network", "namespace": "knative-serving",
                "resourceVersion": "41", "uid": "u-1", "creationTimestamp": "2024-01-01T00:00:00Z",
                "managedFields": [{"manager": "knative"}]},
            "data": {"_example": "x"}});
        if let Some(map) = extra.as_object() {
            for (k, v) in map {
                object["data"][k] = v.clone();
            }
        }
        object
    }

    #[test]
    fn created_when_nothing_is_live() {
        let after = config_network(json!({}));
        let preview = ObjectPreview::of("p", target("ConfigMap", "c"), None, Some(&after));
        assert_eq!(preview.verdict, Verdict::Created);
        assert!(
            preview.diff.contains("+kind: ConfigMap"),
            "{}",
            preview.diff
        );
        assert!(
            !preview.diff.contains("resourceVersion"),
            "{}",
            preview.diff
        );
    }

    #[test]
    fn server_set_fields_are_not_changes() {
        let live = config_network(json!({}));
        let mut after = live.clone();
        after["metadata"]["resourceVersion"] = json!("42");
        after["metadata"]["generation"] = json!(2);
        after["metadata"]["managedFields"] = json!([{"manager": "knative"}, {"manager": "kasi"}]);
        after["status"] = json!({"observedGeneration": 2});
        let preview = ObjectPreview::of("p", target("ConfigMap", "c"), Some(&live), Some(&after));
        assert_eq!(preview.verdict, Verdict::Unchanged);
        assert_eq!(preview.diff, "");
    }

    #[test]
    fn patched_counts_changed_leaves_and_diffs_them() {
        let live = config_network(json!({"a": "1"}));
        let after = config_network(json!({"a": "2", "mesh-compatibility-mode": "disabled"}));
        let preview = ObjectPreview::of(
            "config-network",
            target("ConfigMap", "config-network"),
            Some(&live),
            Some(&after),
        );
        assert_eq!(preview.verdict, Verdict::Patched(2));
        assert_eq!(preview.verdict.label(), "patched (2 fields)");
        assert!(
            preview.diff.starts_with("--- live ConfigMap"),
            "{}",
            preview.diff
        );
        assert!(preview.diff.contains("-  a: '1'"), "{}", preview.diff);
        assert!(preview.diff.contains("+  a: '2'"), "{}", preview.diff);
        assert!(
            preview
                .diff
                .contains("+  mesh-compatibility-mode: disabled"),
            "{}",
            preview.diff
        );
        assert!(preview.diff.contains("@@"), "{}", preview.diff);
        assert_eq!(
            changed_leaves(
                Some(&json!({"l": [1, 2]})),
                Some(&json!({"l": [1, 3, {"x": 1, "y": 2}]}))
            ),
            3
        );
    }

    #[test]
    fn deleted_and_secrets_and_big_values_hidden() {
        let live = json!({"kind": "WasmPlugin", "metadata": {"name": "w"},
            "spec": {"pluginConfig": {"session_keys": ["c2VjcmV0LWtleQ=="]},
                     "blob": "x".repeat(500)}});
        let preview = ObjectPreview::of("w", target("WasmPlugin", "w"), Some(&live), None);
        assert_eq!(preview.verdict, Verdict::Deleted);
        assert!(
            !preview.diff.contains("c2VjcmV0LWtleQ=="),
            "{}",
            preview.diff
        );
        assert!(preview.diff.contains("not shown"), "{}", preview.diff);
        assert!(
            preview.diff.contains("(500 bytes, sha256"),
            "{}",
            preview.diff
        );
    }

    #[test]
    fn rollout_from_replicas_and_strategy() {
        let deployment = |replicas: Value, strategy: Value, annotation: &str| {
            json!({"kind": "Deployment", "metadata": {"name": "activator"},
                "spec": {"replicas": replicas, "strategy": strategy,
                    "template": {"metadata": {"annotations": {"a": annotation}}}}})
        };
        let live = deployment(json!(2), json!({}), "1");
        assert_eq!(rollout(Some(&live), Some(&live)), None);
        let after = deployment(json!(2), json!({}), "2");
        assert_eq!(
            rollout(Some(&live), Some(&after)).unwrap(),
            "the activator Deployment rolls: 2 pods replaced one at a time (maxSurge 1, maxUnavailable 0)"
        );
        let wide = deployment(
            json!(10),
            json!({"rollingUpdate": {"maxSurge": 2, "maxUnavailable": "10%"}}),
            "2",
        );
        assert!(rollout(Some(&live), Some(&wide))
            .unwrap()
            .contains("10 pods replaced up to 3 at a time"));
        let recreate = deployment(json!(3), json!({"type": "Recreate"}), "2");
        assert!(rollout(Some(&live), Some(&recreate))
            .unwrap()
            .contains("all at once"));
        let unknown = deployment(Value::Null, json!({}), "2");
        assert_eq!(
            rollout(Some(&live), Some(&unknown)).unwrap(),
            "the activator Deployment rolls out"
        );
    }
}
