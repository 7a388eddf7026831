//! The three PATCH body formats other than apply: JSON merge patch (RFC 7386), strategic merge
//! patch (merge patch plus item-by-item merging of keyed lists and the `$patch` directive), and JSON
//! patch (RFC 6902), as `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go` dispatches
//! them (`staging/src/k8s.io/apimachinery/pkg/util/strategicpatch/patch.go` for the strategic one).

use super::managed_fields::{item_index, list_item_elements};
use super::status::ApiError;
use serde_json::Value;

/// Which PATCH format a request's Content-Type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    StrategicMerge,
    Json,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        match media_type {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::StrategicMerge),
            "application/json-patch+json" => Ok(Self::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            other => Err(ApiError::UnsupportedMediaType {
                got: other.to_owned(),
                accepted: "application/json-patch+json, application/merge-patch+json, \
                     application/strategic-merge-patch+json, application/apply-patch+yaml"
                    .into(),
            }),
        }
    }
}

/// Applies a merge, strategic-merge or JSON patch body to `target`.
pub fn apply_patch(kind: PatchKind, target: &mut Value, body: &[u8]) -> Result<(), ApiError> {
    let bad = |e: &dyn std::fmt::Display| ApiError::BadRequest(format!("invalid patch: {e}"));
    match kind {
        PatchKind::Merge => {
            let patch: Value = serde_json::from_slice(body).map_err(|e| bad(&e))?;
            require_object(&patch)?;
            json_patch::merge(target, &patch);
        }
        PatchKind::StrategicMerge => {
            let patch: Value = serde_json::from_slice(body).map_err(|e| bad(&e))?;
            require_object(&patch)?;
            strategic_merge(target, &patch, "");
        }
        PatchKind::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body).map_err(|e| bad(&e))?;
            json_patch::patch(target, &patch).map_err(|e| bad(&e))?;
        }
        PatchKind::Apply => {
            return Err(ApiError::Internal(
                "apply patches are handled by server-side apply".into(),
            ))
        }
    }
    Ok(())
}

fn require_object(patch: &Value) -> Result<(), ApiError> {
    if patch.is_object() {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "invalid patch: the patch must be a JSON object".into(),
        ))
    }
}

fn directive(value: &Value) -> Option<&str> {
    value.get("$patch").and_then(Value::as_str)
}

/// Removes `$…` directives (`$setElementOrder/…`, `$retainKeys`, `$patch`) from a patch value.
fn without_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, v)| !key.starts_with('$') && !v.is_null())
                .map(|(key, v)| (key.clone(), without_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_directives).collect()),
        other => other.clone(),
    }
}

fn strategic_merge(target: &mut Value, patch: &Value, field_name: &str) {
    match patch {
        Value::Object(patch_map) => {
            if directive(patch) == Some("replace") || !target.is_object() {
                *target = without_directives(patch);
                return;
            }
            let Some(target_map) = target.as_object_mut() else {
                return;
            };
            for (field, value) in patch_map.iter().filter(|(key, _)| !key.starts_with('$')) {
                if value.is_null() || directive(value) == Some("delete") {
                    target_map.remove(field);
                    continue;
                }
                match target_map.get_mut(field) {
                    Some(existing) => strategic_merge(existing, value, field),
                    None => {
                        target_map.insert(field.clone(), without_directives(value));
                    }
                }
            }
        }
        Value::Array(patch_items) => {
            let keyed = target.as_array().is_some_and(|items| {
                items.is_empty() || list_item_elements(field_name, items).is_some()
            });
            let patch_elements = list_item_elements(field_name, patch_items);
            match (target.as_array_mut(), patch_elements, keyed) {
                (Some(items), Some(elements), true) => {
                    for (element, patch_item) in elements.iter().zip(patch_items) {
                        let index = item_index(items, element);
                        match (index, directive(patch_item)) {
                            (Some(index), Some("delete")) => {
                                items.remove(index);
                            }
                            (None, Some("delete")) => {}
                            (Some(index), _) => strategic_merge(&mut items[index], patch_item, ""),
                            (None, _) => items.push(without_directives(patch_item)),
                        }
                    }
                }
                _ => *target = without_directives(patch),
            }
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_by_name() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}});
        let patch = json!({"spec": {"containers": [{"name": "b", "image": "3"}, {"name": "c", "image": "4"}]}});
        apply_patch(
            PatchKind::StrategicMerge,
            &mut pod,
            patch.to_string().as_bytes(),
        )
        .unwrap();
        let images: Vec<&str> = pod["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["image"].as_str().unwrap())
            .collect();
        assert_eq!(images, ["1", "3", "4"]);
        let mut cm = json!({"data": {"a": "1"}});
        apply_patch(PatchKind::Merge, &mut cm, br#"{"data":{"a":null,"b":"2"}}"#).unwrap();
        assert_eq!(cm, json!({"data": {"b": "2"}}));
        apply_patch(
            PatchKind::Json,
            &mut cm,
            br#"[{"op":"add","path":"/data/c","value":"3"}]"#,
        )
        .unwrap();
        assert_eq!(cm["data"]["c"], "3");
        assert!(apply_patch(PatchKind::Merge, &mut cm, b"[1]").is_err());
    }
}
