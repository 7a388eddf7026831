//! Comparing what kasi renders with what is live, field by field, over the fields kasi sets only:
//! everything else in a live object (server defaults, other managers' fields) is not kasi's business.

use serde_json::{Map, Value};

/// A field's path from the object's root, e.g. `["data", "mesh-compatibility-mode"]`.
pub type FieldPath = Vec<String>;

/// One field kasi sets whose live value differs.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    pub path: FieldPath,
    /// `None`: the field is not there.
    pub live: Option<Value>,
    pub wanted: Value,
}

impl FieldChange {
    /// One line; key material is never shown (`kasi apply --dry-run` output ends up in CI logs).
    pub fn describe(&self) -> String {
        let show = |value: &Value| {
            if is_secret(&self.path) {
                masked(value)
            } else {
                display_value(value)
            }
        };
        format!(
            "{}: {} → {}",
            display_path(&self.path),
            self.live.as_ref().map_or("(absent)".into(), show),
            show(&self.wanted)
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Create,
    Update(Vec<FieldChange>),
    Unchanged,
}

impl Change {
    pub fn word(&self) -> &'static str {
        match self {
            Change::Create => "create",
            Change::Update(_) => "change",
            Change::Unchanged => "unchanged",
        }
    }
}

/// The fields kasi sets: every leaf of the rendered object except its identity. Maps are walked;
/// lists and scalars are leaves (compared whole, as server-side apply treats un-keyed lists).
pub fn kasi_fields(rendered: &Value) -> Vec<(FieldPath, Value)> {
    let mut out = Vec::new();
    collect(rendered, &mut Vec::new(), &mut out);
    out.retain(|(path, _)| !is_identity(path));
    out
}

fn is_identity(path: &[String]) -> bool {
    matches!(
        path.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        ["apiVersion"] | ["kind"] | ["metadata", "name"] | ["metadata", "namespace"]
    )
}

fn collect(value: &Value, prefix: &mut FieldPath, out: &mut Vec<(FieldPath, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                prefix.push(key.clone());
                collect(child, prefix, out);
                prefix.pop();
            }
        }
        leaf => out.push((prefix.clone(), leaf.clone())),
    }
}

pub fn value_at<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |v, key| v.as_object()?.get(key))
}

/// Whether `live` holds everything `wanted` says: maps may have more keys (defaults), lists must
/// match item by item, scalars exactly.
pub fn covers(wanted: &Value, live: &Value) -> bool {
    match (wanted, live) {
        (Value::Object(w), Value::Object(l)) => w
            .iter()
            .all(|(k, v)| l.get(k).is_some_and(|lv| covers(v, lv))),
        (Value::Array(w), Value::Array(l)) => {
            w.len() == l.len() && w.iter().zip(l).all(|(a, b)| covers(a, b))
        }
        (w, l) => w == l,
    }
}

/// What applying `rendered` would change in `live`.
pub fn diff(rendered: &Value, live: Option<&Value>) -> Change {
    let Some(live) = live else {
        return Change::Create;
    };
    let changes: Vec<FieldChange> = kasi_fields(rendered)
        .into_iter()
        .filter_map(|(path, wanted)| {
            let current = value_at(live, &path);
            match current {
                Some(current) if covers(&wanted, current) => None,
                _ => Some(FieldChange {
                    live: current.cloned(),
                    path,
                    wanted,
                }),
            }
        })
        .collect();
    if changes.is_empty() {
        Change::Unchanged
    } else {
        Change::Update(changes)
    }
}

/// `spec.template.metadata.labels["sidecar.istio.io/inject"]`: keys that are not plain words are
/// quoted, as kubectl's JSONPath would need them.
pub fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for key in path {
        if !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(key);
        } else {
            out.push_str(&format!("[{key:?}]"));
        }
    }
    out
}

/// Fields whose values are secrets: the WasmPlugin's session keys.
fn is_secret(path: &[String]) -> bool {
    path.last().is_some_and(|key| key == "session_keys")
}

/// A secret by its shape only: how many keys, never their bytes.
fn masked(value: &Value) -> String {
    match value.as_array() {
        Some(keys) => format!("({} key(s), not shown)", keys.len()),
        None => "(not shown)".into(),
    }
}

/// A value short enough for one line: long ones (the filter's bytes) by their size.
pub fn display_value(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 72 {
        text
    } else {
        let head: String = text.chars().take(48).collect();
        format!("{head}… ({} bytes)", text.len())
    }
}

/// `object` with `path` set to `value` (`None`: removed), creating maps on the way.
pub fn set_at(object: &mut Value, path: &[String], value: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = object;
    for key in parents {
        if !node.is_object() {
            if value.is_none() {
                return;
            }
            *node = Value::Object(Map::new());
        }
        let map = node.as_object_mut().expect("made an object above");
        if !map.contains_key(key) {
            if value.is_none() {
                return;
            }
            map.insert(key.clone(), Value::Object(Map::new()));
        }
        node = map.get_mut(key).expect("inserted above");
    }
    match (node.as_object_mut(), value) {
        (Some(map), Some(value)) => {
            map.insert(last.clone(), value);
        }
        (Some(map), None) => {
            map.remove(last);
        }
        (None, Some(value)) => *node = serde_json::json!({ last.clone(): value }),
        (None, None) => {}
    }
}

/// The RFC 7386 merge patch that turns `from` into `to` (maps by key, everything else whole).
pub fn merge_patch(from: &Value, to: &Value) -> Option<Value> {
    match (from, to) {
        (Value::Object(f), Value::Object(t)) => {
            let mut patch = Map::new();
            for key in f.keys().filter(|k| !t.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            for (key, value) in t {
                match f.get(key) {
                    Some(old) => {
                        if let Some(p) = merge_patch(old, value) {
                            patch.insert(key.clone(), p);
                        }
                    }
                    None => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        (f, t) if f == t => None,
        (_, t) => Some(t.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(p: &[&str]) -> FieldPath {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_kasi_fields_count_and_defaults_are_not_drift() {
        let rendered = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "n", "labels": {"a": "b"}},
            "spec": {"ports": [{"name": "http", "port": 8012}]}});
        let live = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "n", "labels": {"a": "b", "other": "x"},
                         "resourceVersion": "7"},
            "spec": {"clusterIP": "10.0.0.1",
                     "ports": [{"name": "http", "port": 8012, "protocol": "TCP"}]}});
        assert_eq!(diff(&rendered, Some(&live)), Change::Unchanged);
        assert_eq!(diff(&rendered, None), Change::Create);
        let mut changed = live.clone();
        changed["metadata"]["labels"]["a"] = json!("c");
        let Change::Update(changes) = diff(&rendered, Some(&changed)) else {
            panic!()
        };
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].describe(), "metadata.labels.a: \"c\" → \"b\"");
    }

    #[test]
    fn absent_fields_and_display() {
        let rendered = json!({"kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"mesh-compatibility-mode": "disabled"}});
        let live =
            json!({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"_example": "x"}});
        let Change::Update(changes) = diff(&rendered, Some(&live)) else {
            panic!()
        };
        assert_eq!(
            changes[0].describe(),
            "data.mesh-compatibility-mode: (absent) → \"disabled\""
        );
        assert_eq!(
            display_path(&path(&["spec", "labels", "sidecar.istio.io/inject"])),
            "spec.labels[\"sidecar.istio.io/inject\"]"
        );
        assert!(display_value(&json!("x".repeat(500))).contains("bytes"));
    }

    #[test]
    fn session_keys_are_never_shown() {
        let rendered = json!({"kind": "WasmPlugin", "metadata": {"name": "w"},
            "spec": {"pluginConfig": {"session_keys": ["bmV3LWtleQ==", "b2xkLWtleQ=="]}}});
        let live = json!({"kind": "WasmPlugin", "metadata": {"name": "w"},
            "spec": {"pluginConfig": {"session_keys": ["b2xkLWtleQ=="]}}});
        let Change::Update(changes) = diff(&rendered, Some(&live)) else {
            panic!()
        };
        assert_eq!(
            changes[0].describe(),
            "spec.pluginConfig.session_keys: (1 key(s), not shown) → (2 key(s), not shown)"
        );
    }

    #[test]
    fn set_and_merge_patch() {
        let mut object = json!({"data": {"a": "1"}});
        set_at(&mut object, &path(&["data", "b"]), Some(json!("2")));
        set_at(&mut object, &path(&["meta", "x", "y"]), Some(json!("3")));
        set_at(&mut object, &path(&["data", "a"]), None);
        set_at(&mut object, &path(&["nothing", "here"]), None);
        assert_eq!(
            object,
            json!({"data": {"b": "2"}, "meta": {"x": {"y": "3"}}})
        );
        let from = json!({"data": {"a": "1", "b": "2"}, "list": [1]});
        let to = json!({"data": {"b": "3"}, "list": [1]});
        assert_eq!(
            merge_patch(&from, &to),
            Some(json!({"data": {"a": null, "b": "3"}}))
        );
        assert_eq!(merge_patch(&to, &to), None);
    }
}
